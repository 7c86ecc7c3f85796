"""Remote services: latency a standalone service adds per hop, and recovery time after a kill -9."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..aio import aclose
from ..llm import EchoLLM
from ..remote.client import ClientOptions, RemoteLLM, RemoteTTS
from ..remote.failover import FailoverOptions, FailoverTTS
from ..tts.espeak import EspeakTTS
from ..types import ChatMessage
from .report import Table, percentiles

__all__ = ["remote_overhead"]

_TEXT = "Hello there."
_WARM_UP = 10
"""Runs of each side before the measured ones (connections pooled, espeak-ng voices loaded on both sides)."""


def _start(role: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        # The same light providers as the in-process side, so the difference is the hop alone.
        [sys.executable, "-m", "facecast.cli", "serve", role, "--port", "0", "--stt", "pocketsphinx", "--llm", "echo"]
        + ["--tts", "espeak"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"listening on (ws://\S+)", line)
        if match:
            return proc, match.group(1)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"facecast serve {role} did not start")


def _stop(procs: Sequence[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


async def _first_token_ms(llm: Any, runs: int) -> list[float]:
    out: list[float] = []
    messages = [ChatMessage("user", "hi")]
    for _ in range(runs):
        started = time.perf_counter()
        stream = llm.stream(messages)
        await anext(stream)
        out.append((time.perf_counter() - started) * 1000)
        await aclose(stream)
    return out


async def _first_audio_ms(tts: Any, runs: int) -> list[float]:
    out: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        stream = tts.synthesize(_TEXT)
        await anext(stream)
        out.append((time.perf_counter() - started) * 1000)
        await aclose(stream)
    return out


async def _added_ms(
    local: Any,
    remote: Any,
    first: Callable[[Any, int], Awaitable[list[float]]],
    runs: int,
    raw: dict[str, list[float]],
    name: str,
) -> None:
    """``runs`` first-output times of each side, interleaved (local/remote, then remote/local: the slow drifts
    of a shared machine hit both alike) after the same warm-up; ``raw[name + "_added_ms"]`` gets remote minus
    local, quantile by quantile (sorted pairs).

    Back to back, and fair to both: each side's ``aclose()`` returns once its work has stopped (in-process:
    the synthesis; remote: the server has read the ``cancel``), so neither is charged for the other's last run.
    """
    local_ms: list[float] = []
    remote_ms: list[float] = []
    for side in (local, remote) * _WARM_UP:
        await first(side, 1)
    for run in range(runs):
        for side in (local, remote) if run % 2 == 0 else (remote, local):
            (local_ms if side is local else remote_ms).extend(await first(side, 1))
    raw[f"{name}_local_ms"], raw[f"{name}_remote_ms"] = local_ms, remote_ms
    raw[f"{name}_added_ms"] = [r - lo for r, lo in zip(sorted(remote_ms), sorted(local_ms), strict=True)]


async def remote_overhead(runs: int = 200, kills: int = 5) -> tuple[Table, dict[str, list[float]]]:
    """Added latency of a remote service over in-process (first token / first audio, per hop), and the time
    from a kill -9 of the primary TTS to the first audio from the backup."""
    procs: list[subprocess.Popen[str]] = []
    raw: dict[str, list[float]] = {}
    try:
        llm_proc, llm_url = _start("llm")
        tts_proc, tts_url = _start("tts")
        procs += [llm_proc, tts_proc]
        remote_llm, remote_tts = RemoteLLM(llm_url), RemoteTTS(tts_url)
        try:
            await _added_ms(EchoLLM(), remote_llm, _first_token_ms, runs, raw, "llm")
            await _added_ms(EspeakTTS(), remote_tts, _first_audio_ms, runs, raw, "tts")
        finally:
            await remote_llm.aclose()
            await remote_tts.aclose()
        recover: list[float] = []
        for _ in range(kills):
            primary, primary_url = _start("tts")
            procs.append(primary)
            options = FailoverOptions(ClientOptions(heartbeat_interval=0.1, heartbeat_timeout=1.0))
            tts = FailoverTTS([RemoteTTS(primary_url, options.client), RemoteTTS(tts_url, options.client)], options)
            try:
                await _first_audio_ms(tts, 2)  # warm: pooled connections to the primary
                primary.send_signal(signal.SIGKILL)
                primary.wait(10)
                killed = time.perf_counter()
                stream = tts.synthesize(_TEXT)
                await anext(stream)
                recover.append((time.perf_counter() - killed) * 1000)
                await aclose(stream)
            finally:
                await tts.aclose()
        raw["kill_to_backup_audio_ms"] = recover
    finally:
        _stop(procs)
    table = Table(
        "Remote services (loopback WebSocket, one hop)",
        ["measure", "p50 ms", "p99 ms", "runs"],
        note="added = remote first output minus in-process first output (sorted pairs, runs "
        "interleaved); targets: under 2 ms per hop p99, under 300 ms to recover",
    )
    for name, label in (
        ("llm_added_ms", "LLM first token, added"),
        ("tts_added_ms", "TTS first audio, added"),
        ("kill_to_backup_audio_ms", "kill -9 -> first backup audio"),
    ):
        p50, p99 = percentiles(raw[name], (50, 99))
        table.add(label, p50, p99, len(raw[name]))
    return table, raw


if __name__ == "__main__":  # pragma: no cover
    table, _ = asyncio.run(remote_overhead())
    print(table.text())
