"""Scale on this machine: 1, 2, 4, 8, 16 concurrent conversations against one server.

Each conversation is an engine-sim client doing typed turns (echo LLM, espeak, phonetic face, Live Link
off) and playing its replies on a real-time clock; all the clients share one child process, like one engine
with many characters, so the server process has its loop to itself. Reported: text -> playback start
latency, audio frames that arrived after they were due to play (the point where real time breaks), and
resident memory per session.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from ..config import Settings
from ..engine.sim import SimConfig
from ..server import BackgroundServer
from ..services import Services
from .engines import Script, Turn, run_engines
from .report import Table, percentiles

__all__ = ["scale", "rss_mb"]

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
