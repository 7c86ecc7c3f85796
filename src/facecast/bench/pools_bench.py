"""The pool hop: TTS latency through a Ray Serve pool (``facecast serve --ray``) versus a plain ``facecast
serve tts`` on this machine, same provider, same sentence, one warm connection each, requests interleaved.

    python -m facecast.bench.pools_bench ws://127.0.0.1:8000/tts [--tts espeak] [--requests 20]

The pool must already run (docs/scaling.md); the plain server is started here. Prints time to the first
audio chunk and to the whole sentence, p50/p95, for both. Needs no Ray in this process (WebSocket clients).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence

import numpy as np

from ..remote.client import ClientOptions, RemoteTTS

__all__ = ["main", "measure"]

SENTENCE = "The lighthouse keeper counted the boats coming home before the storm."


async def measure(url: str, requests: int, warm: int = 3) -> tuple[list[float], list[float]]:
    """Seconds to the first audio chunk and to the last, per request, over one pooled connection."""
    tts = RemoteTTS(url, ClientOptions(), 22050)
    firsts: list[float] = []
    totals: list[float] = []
    try:
        for index in range(warm + requests):
            started = time.perf_counter()
            first = 0.0
            async for _ in tts.synthesize(SENTENCE):
                first = first or time.perf_counter() - started
            if index >= warm:
                firsts.append(first)
                totals.append(time.perf_counter() - started)
    finally:
        await tts.aclose()
    return firsts, totals


def _plain_server(tts: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("FACECAST_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "facecast.cli", "serve", "tts", "--tts", tts, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"listening on (ws://\S+)", line)
        if match:
            return proc, match.group(1)
    proc.wait()
    raise RuntimeError("facecast serve tts did not start")


def _ms(values: Sequence[float], q: float) -> str:
    return f"{1000 * float(np.percentile(values, q)):.1f}"


async def _run(pool_url: str, tts: str, requests: int, rounds: int) -> None:
    proc, plain_url = _plain_server(tts)
    results: dict[str, tuple[list[float], list[float]]] = {"plain ws://": ([], []), "Ray Serve pool": ([], [])}
    try:
        for _ in range(rounds):  # interleaved, so load on the machine hits both alike
            for name, url in (("plain ws://", plain_url), ("Ray Serve pool", pool_url)):
                firsts, totals = await measure(url, requests // rounds)
                results[name][0].extend(firsts)
                results[name][1].extend(totals)
    finally:
        proc.terminate()
        proc.wait()
    print(f"TTS ({tts}), {requests} requests each, one warm connection, sentence of {len(SENTENCE)} characters")
    print("| service | first audio p50 ms | p95 ms | whole sentence p50 ms | p95 ms |")
    print("|---|---|---|---|---|")
    for name, (firsts, totals) in results.items():
        print(f"| {name} | {_ms(firsts, 50)} | {_ms(firsts, 95)} | {_ms(totals, 50)} | {_ms(totals, 95)} |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facecast.bench.pools_bench", description=__doc__)
    parser.add_argument("pool_url", help="the pool's URL, e.g. ws://127.0.0.1:8000/tts")
    parser.add_argument("--tts", default="espeak", help="the provider the pool runs (the plain server runs it too)")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    asyncio.run(_run(args.pool_url, args.tts, args.requests, args.rounds))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
