"""Scale on this machine: 1, 2, 4, 8, 16 concurrent conversations against one server.

Each conversation is an engine-sim client doing typed turns (echo LLM, espeak, phonetic face, Live Link off)
and playing its replies on a real-time clock. Reported: text -> playback start latency, audio frames that
arrived after they were due to play (the point where real time breaks), and resident memory per session.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from ..config import Settings
from ..engine.sim import EngineSim, SimConfig
from ..pipeline import Services
from ..server import BackgroundServer
from .report import Table, percentiles

__all__ = ["scale", "rss_mb"]

LINES = ["Good morning, how are you today?", "Where can I buy some fresh bread?",
         "Tell me about the old lighthouse.", "What is the weather like at sea?"]


def rss_mb() -> float:
    """Resident memory of this process (server and clients together), in MiB."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def _conversation(url: str, turns: int, k: int) -> tuple[list[float], int, int]:
    latencies: list[float] = []
    underruns = frames = 0
    async with EngineSim(SimConfig(url=url, subject=f"Scale{k}")) as sim:
        for t in range(turns):
            report = await sim.say_text(LINES[(k + t) % len(LINES)], timeout=120)
            latencies.append(report.response_latency * 1000)
            for utt in report.utterances:
                underruns += utt.underruns
                frames += utt.samples
    return latencies, underruns, frames


async def scale(services: Services, counts: tuple[int, ...], turns: int) -> tuple[Table, dict[str, object]]:
    table = Table(f"Concurrent conversations ({turns} typed turns each, one server process)",
                  ["conversations", "latency p50 ms", "p95 ms", "p99 ms", "late audio frames", "MiB per session"],
                  note="Latency: typed text -> playback start (includes engine-sim's 50 ms start buffer). "
                       "Late audio frames: reply audio that arrived after it was due to play; real time "
                       "breaks where this becomes non-zero. MiB per session: peak resident memory of the "
                       "process (server and clients) while they talk, above the idle server, per conversation "
                       "(sessions reuse memory the warmed-up process already holds, so growth is a fraction of "
                       "a MiB).")
    raw: dict[str, object] = {}
    async with BackgroundServer(replace(Settings(), livelink=("off",)), services) as server:
        await _conversation(server.ws_url, 1, 0)  # warm-up
        for count in counts:
            before = peak = rss_mb()

            async def sample() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, rss_mb())
                    await asyncio.sleep(0.05)

            sampler = asyncio.create_task(sample())
            try:
                results = await asyncio.gather(*[_conversation(server.ws_url, turns, k) for k in range(count)])
            finally:
                sampler.cancel()
                await asyncio.gather(sampler, return_exceptions=True)
            after = peak
            latencies = [x for r in results for x in r[0]]
            late = sum(r[1] for r in results)
            table.add(count, *percentiles(latencies), late, max(0.0, after - before) / count)
            raw[f"conversations_{count}"] = {"latency_ms": latencies, "late_audio_frames": late,
                                             "rss_delta_mb": after - before}
    return table, raw
