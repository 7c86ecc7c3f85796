"""Streaming versus NeuroSync's flow, side by side on the same replies, through the same server.

NeuroSync's shape: the whole reply is synthesised, written as a WAV, POSTed to ``/audio_to_blendshapes``,
the JSON parsed, and only then do the audio and the face start. Facecast's: the reply streams sentence by
sentence over the engine WebSocket and the engine starts playing the first audio chunk (engine-sim, with
its 50 ms start buffer), face frames following the playback ack. Both use the same TTS and the same
learned audio-to-face model on the same machine, so the difference is the flow, not the models (NeuroSync's
own 235 M-parameter model would make its flow slower still, see the face speed table).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import httpx

from ..config import Settings
from ..engine.sim import EngineSim, SimConfig, TurnReport
from ..server import BackgroundServer
from ..services import Services
from .pipeline_bench import REPLIES
from .report import Table, percentiles

__all__ = ["streaming_vs_neurosync"]


async def _facecast(sim: EngineSim, text: str) -> tuple[float, float]:
    report = TurnReport(speech_end=time.monotonic())
    await sim.ws.send(json.dumps({"type": "text", "text": text}))
    report = await sim.receive_reply(report, timeout=120)
    utt = report.utterances[0]
    first_face = utt.acked_at  # face frames are released at the ack; frame 0 shows with the first audio
    return (utt.first_audio - report.speech_end) * 1000, (first_face - report.speech_end) * 1000


async def _neurosync(client: httpx.AsyncClient, base: str, text: str) -> tuple[float, float]:
    start = time.monotonic()
    speech = await client.post(f"{base}/generate_speech", json={"text": text})
    speech.raise_for_status()
    face = await client.post(
        f"{base}/audio_to_blendshapes", content=speech.content, headers={"Content-Type": "application/octet-stream"}
    )
    face.raise_for_status()
    frames = face.json()["blendshapes"]
    assert frames, "no blendshapes"
    done = (time.monotonic() - start) * 1000
    return done, done  # audio and face both start once the blendshapes are back


async def streaming_vs_neurosync(
    services: Services, runs: int, counts: tuple[int, ...] = (1, 3, 10)
) -> tuple[Table, dict[str, object]]:
    """Both flows on replies of each of ``counts`` sentences, ``runs`` times each (a Facecast reply is received
    whole, in real time: 10 sentences take about 30 s a run)."""
    table = Table(
        "Streaming vs NeuroSync's flow (same server, same TTS and face model; echo LLM)",
        ["reply", "flow", "first audio p50 ms", "p95", "first face p50 ms", "p95", "audio speed-up"],
        note="From the reply text being available to the first audio / face frame at the engine. "
        "Speed-up: NeuroSync flow p50 / Facecast p50 for the first audio.",
    )
    raw: dict[str, object] = {}
    async with BackgroundServer(replace(Settings(), livelink=("off",)), services) as server:
        sim_config = SimConfig(url=server.ws_url, play_out=False)
        async with EngineSim(sim_config) as sim, httpx.AsyncClient(timeout=120) as client:
            await _facecast(sim, REPLIES[1])  # warm-up both paths
            await _neurosync(client, server.http_url, REPLIES[1])
            for n in counts:
                text = REPLIES[n]
                ours = [await _facecast(sim, text) for _ in range(runs)]
                theirs = [await _neurosync(client, server.http_url, text) for _ in range(runs)]
                fa, ff = [a for a, _ in ours], [f for _, f in ours]
                na, nf = [a for a, _ in theirs], [f for _, f in theirs]
                ratio = percentiles(na, (50,))[0] / max(1e-9, percentiles(fa, (50,))[0])
                table.add(
                    f"{n} sentence(s)",
                    "Facecast (streamed)",
                    *percentiles(fa, (50, 95)),
                    *percentiles(ff, (50, 95)),
                    f"{ratio:.1f}x",
                )
                table.add("", "NeuroSync flow", *percentiles(na, (50, 95)), *percentiles(nf, (50, 95)), "")
                raw[f"sentences_{n}"] = {
                    "facecast_audio_ms": fa,
                    "facecast_face_ms": ff,
                    "neurosync_audio_ms": na,
                    "neurosync_face_ms": nf,
                }
    return table, raw
