"""Scale on this machine: 1, 2, 4, 8, 16 concurrent conversations against one server.

Each conversation is an engine-sim client doing typed turns (echo LLM, espeak, phonetic face, Live Link
off) and playing its replies on a real-time clock; all the clients share one child process, like one engine
with many characters, so the server process has its loop to itself. Reported: text -> playback start
latency, audio frames that arrived after they were due to play (the point where real time breaks), and
resident memory per session.

``facecast bench --scale`` (group ``pools``, on request; the ``scale`` extra): the TTS pool on a real two-node
Ray cluster on loopback (:class:`facecast.scale.localcluster.RayCluster`, deployed by ``facecast serve --ray``
at fixed replica counts): the pool hop against a plain ``facecast serve tts`` (:mod:`.pools_bench`'s
measurement), conversations held in real time through a controller per replica count, and the time from
SIGKILL of the serving replica to the next audio (:func:`pools_scale`).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..config import Settings
from ..engine.sim import SimConfig, TurnReport
from ..remote.failover import FailoverEvent, FailoverOptions
from ..scale.localcluster import RayCluster, free_port
from ..server import BackgroundServer
from ..services import Services, build_services, make_role
from .engines import Script, Turn, run_engines
from .pools_bench import _plain_server, measure
from .report import Table, percentiles

__all__ = [
    "scale",
    "rss_mb",
    "PoolsConfig",
    "QUICK_POOLS",
    "late_chunks",
    "held_in_real_time",
    "first_audio_ms",
    "pools_tables",
    "pools_scale",
]

LINES = [
    "Good morning, how are you today?",
    "Where can I buy some fresh bread?",
    "Tell me about the old lighthouse.",
    "What is the weather like at sea?",
]


def rss_mb() -> float:
    """Resident memory of this process (the server; engine-sim runs in a child process), in MiB."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _script(url: str, turns: int, k: int) -> Script:
    return Script(
        SimConfig(url=url, subject=f"Scale{k}"),
        tuple(Turn(LINES[(k + t) % len(LINES)]) for t in range(turns)),
        timeout=120,
    )


async def scale(services: Services, counts: tuple[int, ...], turns: int) -> tuple[Table, dict[str, object]]:
    table = Table(
        f"Concurrent conversations ({turns} typed turns each, one server process)",
        ["conversations", "latency p50 ms", "p95 ms", "p99 ms", "late audio frames", "MiB per session"],
        note="Latency: typed text -> playback start (includes engine-sim's 50 ms start buffer). "
        "Late audio frames: reply audio that arrived after it was due to play; real time "
        "breaks where this becomes non-zero. MiB per session: peak resident memory of the "
        "server process while they talk, above the idle server, per conversation "
        "(sessions reuse memory the warmed-up process already holds, so growth is a fraction of "
        "a MiB).",
    )
    raw: dict[str, object] = {}
    async with BackgroundServer(replace(Settings(), livelink=("off",)), services) as server:
        await run_engines([_script(server.ws_url, 1, 0)])  # warm-up
        for count in counts:
            before = peak = rss_mb()

            async def sample() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, rss_mb())
                    await asyncio.sleep(0.05)

            sampler = asyncio.create_task(sample())
            try:
                results = await run_engines([_script(server.ws_url, turns, k) for k in range(count)])
            finally:
                sampler.cancel()
                await asyncio.gather(sampler, return_exceptions=True)
            after = peak
            reports = [report for conversation in results for report in conversation]
            latencies = [report.response_latency * 1000 for report in reports]
            late = sum(utt.underruns for report in reports for utt in report.utterances)
            table.add(count, *percentiles(latencies), late, max(0.0, after - before) / count)
            raw[f"conversations_{count}"] = {
                "latency_ms": latencies,
                "late_audio_frames": late,
                "rss_delta_mb": after - before,
            }
    return table, raw


# --- facecast bench --scale: model pools on a real local Ray cluster (group "pools", on request) -------------

_STORY = (
    "The lighthouse keeper counted the boats coming home before the storm. The gulls went quiet over the "
    "harbour. The market closed early, and the old stone bridge shook in the wind. Down by the water the "
    "fishermen pulled their nets in, one by one. Nobody in the village slept much that night. In the morning "
    "the sea was calm again, and every boat was home."
)
REPLY = f"{_STORY} {_STORY}"
"""What the recovery measurement synthesises: twelve sentences (about 20 s of speech), so the serving replica
is still at work when its first audio arrives."""


@dataclass(frozen=True, slots=True)
class PoolsConfig:
    """What ``facecast bench --scale`` runs: the pool's provider, the fixed replica counts, the conversation
    counts tried per replica count (stopping at the first that is not held), the pool-hop requests, the kills."""

    tts: str = "hibari"
    replicas: tuple[int, ...] = (1, 2, 4)
    conversations: tuple[int, ...] = (1, 2, 4, 8)
    turns: int = 2
    hop_requests: int = 20
    kills: int = 5
    replica_cpus: float = 0.5


QUICK_POOLS = PoolsConfig(replicas=(1, 2), conversations=(1, 2), turns=1, hop_requests=6, kills=2)


def late_chunks(arrivals: Sequence[tuple[float, int]], rate: int, start_buffer: float = 0.05) -> int:
    """Chunks of one reply that arrived after they were due on the playback clock: ``arrivals`` is each
    chunk's (arrival time in seconds, samples), in order; playback starts ``start_buffer`` after the first
    arrival (engine-sim's jitter buffer) and a chunk is due when the samples before it have played."""
    if not arrivals:
        return 0
    start = arrivals[0][0] + start_buffer
    late, offset = 0, 0
    for arrived, samples in arrivals:
        if arrived > start + offset / rate:
            late += 1
        offset += samples
    return late


def held_in_real_time(conversation: Sequence[TurnReport]) -> bool:
    """Whether a conversation was held in real time: every turn got a complete reply (ended, with audio, no
    error) and none of its audio arrived after it was due to play (no underrun on the playback clock)."""
    return bool(conversation) and all(
        not turn.errors
        and turn.utterances
        and all(u.ended and u.samples > 0 and u.underruns == 0 for u in turn.utterances)
        for turn in conversation
    )


def first_audio_ms(conversations: Sequence[Sequence[TurnReport]]) -> list[float]:
    """Typed text -> first reply audio at the engine, ms, for every turn that got audio."""
    return [
        1000 * (turn.utterances[0].first_audio - turn.speech_end)
        for conversation in conversations
        for turn in conversation
        if turn.utterances and turn.utterances[0].samples
    ]


def pools_tables(raw: Mapping[str, Any]) -> list[Table]:
    """The three tables of ``facecast bench --scale`` from its raw numbers (see :func:`pools_scale`)."""
    tts, load = raw["tts"], raw.get("load", "")
    hop = Table(
        f"Pool hop: TTS ({tts}) through a Ray Serve pool (1 replica) vs a plain facecast serve tts",
        ["service", "first audio p50 ms", "p99 ms", "whole sentence p50 ms", "p99 ms", "requests"],
        note="One warm connection each, requests interleaved in rounds, same sentence; the added latency is "
        "the pool's row minus the plain row. " + load,
    )
    for name in ("plain ws://", "Ray Serve pool"):
        firsts, totals = raw["hop"][name]
        p_first, p_total = percentiles(firsts, (50, 99)), percentiles(totals, (50, 99))
        hop.add(name, *p_first, *p_total, len(firsts))
    held = Table(
        f"Conversations held in real time vs TTS replicas ({tts}; fixed replicas, min = max)",
        ["replicas", "conversations held", "tried", "first audio p50 ms", "p99 ms", "load average (1 min)"],
        note="Each conversation is an engine-sim client taking typed turns through one controller (echo LLM, "
        "phonetic face) whose TTS is the pool; held: every reply complete with no audio late on the playback "
        "clock (50 ms start buffer). Conversation counts double until one is not held; first audio (typed "
        "text -> first reply audio at the engine) at the largest count held (at the first count if none). " + load,
    )
    for replicas, row in raw["replicas"].items():
        runs = row["runs"]
        best = max((k for k, run in runs.items() if run["held"] == int(k)), key=int, default=None)
        shown = runs[best] if best is not None else next(iter(runs.values()))
        first = percentiles(shown["first_audio_ms"], (50, 99))
        held.add(replicas, int(best) if best else 0, ", ".join(runs), *first, row.get("load_1min", float("nan")))
    kills = raw["recovery"]
    recovery = Table(
        f"Recovery after SIGKILL of the replica serving a reply ({kills['replicas']} replicas)",
        ["kills", "interrupted", "recovered", "recovery p50 ms", "max ms", "late chunks after the kill"],
        note="Time from SIGKILL of the replica that was synthesising the reply (the one that used CPU since "
        "the request started) to the next audio chunk at the controller's TTS client (the failover wrapper, "
        "continuing after the samples delivered); late chunks: on a playback clock started 50 ms after the "
        "first chunk; a reply the failover client gave up on counts as interrupted, not recovered (raw: "
        "failed). " + load,
    )
    times = kills["recovery_ms"]
    recovered, lost = len(times), len(kills.get("failed", ()))
    total = recovered + lost + int(kills.get("not_interrupted", 0))
    worst = max(times) if times else float("nan")
    recovery.add(total, recovered + lost, recovered, percentiles(times, (50,))[0], worst, kills["late"])
    return [hop, held, recovery]


def _uptime() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _deploy(cluster: RayCluster, port: int, tts: str, replicas: int, cpus: float) -> tuple[subprocess.Popen[str], str]:
    """``facecast serve --ray`` deploying the TTS pool with exactly ``replicas`` replicas; its URL once ready.
    ``port``: the cluster's Serve HTTP port, the same for every deployment (Serve keeps the proxy it started
    first and its port)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("FACECAST_TOKEN", None)
    args = [
        *(sys.executable, "-m", "facecast.cli", "serve", "--ray", "--roles", "tts", "--tts", tts),
        *("--ray-address", cluster.address, "--http-port", str(port)),
        *("--min-replicas", str(replicas), "--max-replicas", str(replicas), "--pool", f"tts.num_cpus={cpus}"),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    url, output = "", []
    for line in proc.stdout:
        output.append(line)
        match = re.search(r"tts pool at (ws://\S+)", line)
        url = match.group(1) if match else url
        if "ready in" in line and url:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe drained
            return proc, url
    proc.wait()
    raise RuntimeError("facecast serve --ray did not start:\n" + "".join(output)[-3000:])


def _undeploy(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)  # the command deletes its application
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _hop(pool_url: str, tts: str, requests: int, rounds: int = 2) -> dict[str, tuple[list[float], list[float]]]:
    """pools_bench's measurement: first-audio and whole-sentence ms, the plain server vs the pool."""
    proc, plain_url = _plain_server(tts)
    results: dict[str, tuple[list[float], list[float]]] = {"plain ws://": ([], []), "Ray Serve pool": ([], [])}
    try:
        for _ in range(rounds):  # interleaved, so load on the machine hits both alike
            for name, url in (("plain ws://", plain_url), ("Ray Serve pool", pool_url)):
                firsts, totals = await measure(url, max(1, requests // rounds))
                results[name][0].extend(1000 * f for f in firsts)
                results[name][1].extend(1000 * t for t in totals)
    finally:
        proc.terminate()
        proc.wait()
    return results


async def _conversations(pool_url: str, config: PoolsConfig) -> dict[str, dict[str, Any]]:
    """K simultaneous typed conversations through one controller on the pool, K doubling until one is lost."""
    settings = replace(
        Settings(), stt="pocketsphinx", llm="echo", tts=pool_url, face="phonetic", livelink=("off",), speculate=False
    )
    runs: dict[str, dict[str, Any]] = {}
    async with BackgroundServer(settings, build_services(settings)) as server:
        await run_engines([_script(server.ws_url, 1, 0)])  # warm-up: the controller's pool connection, the replicas
        for count in config.conversations:
            results = await run_engines([_script(server.ws_url, config.turns, k) for k in range(count)])
            held = sum(held_in_real_time(c) for c in results)
            late = sum(u.underruns for c in results for turn in c for u in turn.utterances)
            runs[str(count)] = {"held": held, "late_frames": late, "first_audio_ms": first_audio_ms(results)}
            if held < count:
                break
    return runs


def _cpu_ns(pid: int) -> int:
    try:
        return sum(
            int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
            for tid in os.listdir(f"/proc/{pid}/task")
        )
    except OSError:
        return 0


async def _recovery(cluster: RayCluster, pool_url: str, config: PoolsConfig, replicas: int) -> dict[str, Any]:
    """SIGKILL the replica serving a reply at its first audio; ms from the kill to the first chunk the
    controller's failover client yields after it moved the request (a kill after the replica had sent the
    whole reply interrupts nothing: counted, not timed)."""
    times: list[float] = []
    failed: list[str] = []
    late = missed = 0
    for _ in range(config.kills):
        give_up = time.monotonic() + 120
        while len(cluster.replica_pids("tts")) < replicas:  # Serve restarts the killed one: wait for it
            if time.monotonic() > give_up:
                raise RuntimeError("the pool did not replace the killed replica within 120 s")
            await asyncio.sleep(0.25)
        events: list[FailoverEvent] = []
        tts = make_role("tts", pool_url, failover=FailoverOptions(on_event=events.append))
        try:
            async for _ in tts.synthesize("Warm up."):  # the connection, so the request starts at once
                pass
            pids = cluster.replica_pids("tts")
            before = {pid: _cpu_ns(pid) for pid in pids}
            killed_at = 0.0
            arrivals: list[tuple[float, int]] = []
            timed = False
            try:
                async for chunk in tts.synthesize(REPLY):
                    now = time.monotonic()
                    if not killed_at:
                        victim = max(pids, key=lambda pid: _cpu_ns(pid) - before[pid])
                        os.kill(victim, signal.SIGKILL)
                        killed_at = time.monotonic()
                    elif events and not timed:
                        times.append(1000 * (now - killed_at))
                        timed = True
                    arrivals.append((now, len(chunk.audio.pcm)))
            except Exception as exc:  # noqa: BLE001 - a reply lost to the kill is a result, reported
                failed.append(f"{1000 * (time.monotonic() - killed_at):.0f} ms after the kill: {exc}")
                continue
            missed += not timed
            late += late_chunks(arrivals, tts.sample_rate)
        finally:
            await tts.aclose()
    return {"replicas": replicas, "recovery_ms": times, "late": late, "not_interrupted": missed, "failed": failed}


async def pools_scale(config: PoolsConfig = PoolsConfig()) -> tuple[list[Table], dict[str, Any]]:
    """``facecast bench --scale``: start a two-node Ray cluster on loopback (:mod:`facecast.scale.localcluster`),
    deploy the TTS pool at each replica count and measure the pool hop (at the first count), conversations held
    in real time (each count) and recovery after a replica kill (the first count of 2 or more); stop it all."""
    from ..scale.ray_pools import require_serve

    require_serve()  # a clear error without the scale extra
    raw: dict[str, Any] = {"tts": config.tts, "config": asdict(config), "replicas": {}}
    cluster = await asyncio.to_thread(RayCluster(head_cpus=2, worker_cpus=2).start)
    port = free_port()
    try:
        for replicas in config.replicas:
            proc, url = await asyncio.to_thread(_deploy, cluster, port, config.tts, replicas, config.replica_cpus)
            try:
                if "hop" not in raw:
                    raw["hop"] = await _hop(url, config.tts, config.hop_requests)
                raw["replicas"][str(replicas)] = {
                    "runs": await _conversations(url, config),
                    "load_1min": os.getloadavg()[0],
                }
                if replicas >= 2 and "recovery" not in raw:  # after the conversations: it kills
                    raw["recovery"] = await _recovery(cluster, url, config, replicas)
            finally:
                await asyncio.to_thread(_undeploy, proc)
    finally:
        await asyncio.to_thread(cluster.stop)
    raw.setdefault("recovery", {"replicas": 0, "recovery_ms": [], "late": 0, "not_interrupted": 0, "failed": []})
    raw["load"] = f"Machine {_uptime()} at the end (uptime)."
    return pools_tables(raw), raw
