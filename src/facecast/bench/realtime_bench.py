"""Speech-to-speech models (``--realtime``) through the local protocol servers: latency, face sync, barge-in.

Each provider (OpenAI Realtime, Gemini Live) runs against the repository's protocol server for its API
(``tests/servers/openai_realtime_server.py``, ``tests/servers/gemini_live_server.py``: implementations of the
documented protocols for tests, not the services; they hear the player with PocketSphinx and answer with
espeak-ng). A real Facecast server (uvicorn) with ``--realtime`` talks to it, and engine-sim is the engine,
streaming the player (the hibari voice) in real time and playing the answers on a real-time clock.

What the rows mean: the latency runs from the player's last voiced sample to the engine's playback start,
so it includes the model's VAD silence (500 ms, the servers' ``silence_duration_ms``) and the servers' own
recognition and synthesis: it measures Facecast's path (socket, resampling, audio-driven face, ack gate)
around a stand-in model, never a service's latency. Face sync: socket face frames that arrived after their
audio was due. Barge-in: the player speaks 1.5 s into a long answer; the error is the truncation's
``audio_end_ms`` (OpenAI) minus what engine-sim reports it played.

The protocol servers live in the source checkout; an installed package without it reports the table as skipped.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .report import Table, percentiles

__all__ = ["realtime_table"]

REPO = Path(__file__).resolve().parents[3]
MIC = 16000
PHRASES = ("Hello there, how are you today?", "What is the weather like?", "Tell me about the road home.")
LONG = "That reminds me of a long story about the hills, the rivers and the road that runs between them all day."


def _servers_available() -> bool:
    if not (REPO / "tests" / "servers" / "openai_realtime_server.py").is_file():
        return False
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return True


async def _speech(text: str, tts: Any) -> np.ndarray:
    from ..audio import resample

    chunks = [c.audio async for c in tts.synthesize(text)]
    speech = resample(np.concatenate([c.pcm for c in chunks]), chunks[0].rate, MIC)
    pad = np.zeros(MIC * 2 // 5, np.float32)
    return np.concatenate([pad, speech, np.zeros(MIC * 6 // 5, np.float32)]).astype(np.float32)


async def realtime_table(quick: bool) -> tuple[Table, dict[str, Any]]:
    """One row per provider: ``quick`` runs 2 turns each, else 6, then one barge-in."""
    table = Table(
        "Speech-to-speech models (--realtime) through their protocol servers (engine-sim, real time)",
        [
            "model (protocol server)",
            "turns",
            "latency p50 ms",
            "p90 ms",
            "face late",
            "face before ack",
            "barge-in cut ms",
            "truncate error ms",
        ],
        note="Protocol servers, not the services: latency includes their 500 ms VAD silence, PocketSphinx and "
        "espeak-ng. 'face late': socket face frames that arrived after their audio was due (of all frames). "
        "'truncate error': audio_end_ms sent to the model minus engine-sim's played position (OpenAI only; "
        "Gemini has no truncate event, its server stops by itself).",
    )
    raw: dict[str, Any] = {}
    if not _servers_available():
        table.note += " Skipped: run from a source checkout (tests/servers)."
        return table, raw
    from ..services import make_tts

    voice = make_tts("hibari")
    phrases = [await _speech(p, voice) for p in PHRASES]
    turns = 2 if quick else 6
    for name in ("openai", "gemini"):
        raw[name] = row = await _provider(name, phrases, turns)
        late = f"{row['face_late']}/{row['face_frames']}"
        cut = row.get("cut_ms", float("nan"))
        error = row.get("truncate_error_ms", float("nan"))
        p50, p90 = percentiles(row["latency_ms"], (50, 90))
        table.add(f"{name} (protocol server)", turns, p50, p90, late, row["face_before_ack"], cut, error)
    return table, raw


async def _provider(name: str, phrases: list[np.ndarray], turns: int) -> dict[str, Any]:
    from tests.servers.gemini_live_server import GeminiLiveServer, GeminiServerConfig
    from tests.servers.openai_realtime_server import OpenAIRealtimeServer, RealtimeServerConfig

    from ..config import Settings
    from ..engine.sim import EngineSim, SimConfig
    from ..face.learned import LearnedAnimator
    from ..face.phonetic import PhoneticAnimator
    from ..llm.echo import EchoLLM
    from ..realtime.gemini import GeminiLive, GeminiLiveOptions
    from ..realtime.openai import OpenAIRealtime, OpenAIRealtimeOptions
    from ..server import BackgroundServer
    from ..services import Services, make_stt, make_tts

    key = "bench-key"
    api: Any = (
        OpenAIRealtimeServer(RealtimeServerConfig(api_key=key, reply_suffix=""))
        if name == "openai"
        else GeminiLiveServer(GeminiServerConfig(api_key=key))
    )
    row: dict[str, Any] = {"latency_ms": [], "face_late": 0, "face_frames": 0, "face_before_ack": 0}
    async with api:
        model: Any = (
            OpenAIRealtime(OpenAIRealtimeOptions(api_key=key, url=api.url))
            if name == "openai"
            else GeminiLive(GeminiLiveOptions(api_key=key, url=api.url))
        )
        services = Services(
            make_stt("pocketsphinx"),
            EchoLLM(),
            make_tts("espeak"),
            PhoneticAnimator(),
            LearnedAnimator(),
            realtime=model,
        )
        settings = replace(
            Settings(), stt="pocketsphinx", llm="echo", tts="espeak", face="phonetic", livelink=("off",), realtime=name
        )
        async with BackgroundServer(settings, services) as server:
            async with EngineSim(SimConfig(url=server.ws_url, hold_mic=True)) as sim:
                for i in range(turns):
                    report = await sim.say_audio(phrases[i % len(phrases)], MIC, timeout=60)
                    if report.utterances and report.utterances[0].samples:
                        row["latency_ms"].append(report.response_latency * 1000)
                    for utt in report.utterances:
                        row["face_late"] += sum(1 for late in utt.face_late if late > 0)
                        row["face_frames"] += utt.face_frames
                        row["face_before_ack"] += utt.face_before_ack
            api.config.reply_suffix = LONG
            async with EngineSim(SimConfig(url=server.ws_url)) as sim:
                cut = await _barge_in(sim, phrases[0], phrases[1])
        if cut is not None:
            row["cut_ms"] = cut
            truncates = [t for c in api.connections for t in getattr(c, "truncates", [])]
            if truncates:
                row["truncate_error_ms"] = truncates[-1]["audio_end_ms"] - cut
    return row


async def _barge_in(sim: Any, first: np.ndarray, second: np.ndarray, after: float = 1.5) -> float | None:
    """Say ``first``, then ``second`` ``after`` s into the answer's playback; engine-sim's played ms of the
    cut answer (None when nothing was cut)."""
    from ..engine.sim import TurnReport

    report = TurnReport()
    done = asyncio.Event()
    silence = np.zeros(MIC // 50, np.float32)

    async def quiet() -> None:
        await sim.stream_mic(silence, MIC)
        await asyncio.sleep(0.02)

    async def microphone() -> None:
        await sim.stream_mic(first, MIC)
        while not (report.utterances and report.utterances[0].acked_at):
            await quiet()
        until = report.utterances[0].acked_at + after
        while time.monotonic() < until:
            await quiet()
        await sim.stream_mic(second, MIC)
        while not done.is_set():
            await quiet()

    played: dict[int, int] = {}
    ws = sim.ws
    send = ws.send

    async def watched(message: Any) -> None:  # engine-sim's playback_finished: what it played of each answer
        if isinstance(message, str) and '"playback_finished"' in message:
            sent = json.loads(message)
            played[int(sent["utterance"])] = int(sent["position"])
        await send(message)

    ws.send = watched  # a probe on this bench's own connection (sim is Any here)
    mic = asyncio.create_task(microphone())
    try:
        report = await sim.receive_reply(report, 60)
    finally:
        done.set()
        mic.cancel()
        await asyncio.gather(mic, return_exceptions=True)
        ws.send = send
    cut = next((u for u in report.utterances if u.cleared), None)
    if cut is None or cut.utterance not in played:
        return None
    return float(played[cut.utterance] / sim.config.rate * 1000)
