"""engine-sim clients in a process of their own, for benchmarks.

A real engine is another process (usually another machine): its audio clock, its acknowledgements and its
Live Link socket do not wait for the server's event loop or its GIL (pocketsphinx holds the GIL while it
decodes). Benchmarks that time the engine's side therefore run their engine-sim clients here, in one child
process (one event loop for all of them, like one engine with several characters), while the server keeps
the parent's loop to itself. Times are ``time.monotonic()``, which is one clock for every process on Linux.
"""

from __future__ import annotations

import asyncio
import pickle
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..engine.sim import EngineSim, SimConfig, TurnReport
from ..types import Float32Array

__all__ = ["Turn", "Script", "run_engines"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One turn of a script: typed ``text``, or ``pcm`` at ``rate`` streamed as the microphone in real time."""

    text: str = ""
    pcm: Float32Array | None = None
    rate: int = 0


@dataclass(frozen=True, slots=True)
class Script:
    """One engine client: its config and the turns it takes, one after the other."""

    config: SimConfig
    turns: tuple[Turn, ...]
    timeout: float = 60.0


async def _session(script: Script) -> list[TurnReport]:
    reports: list[TurnReport] = []
    async with EngineSim(script.config) as sim:
        for turn in script.turns:
            if turn.pcm is not None:
                report = await sim.say_audio(turn.pcm, turn.rate, timeout=script.timeout)
            else:
                report = await sim.say_text(turn.text, timeout=script.timeout)
            for utt in report.utterances:  # the media is large and no benchmark reads it
                utt.audio.clear()
                utt.face.clear()
            reports.append(report)
    return reports


async def _all(scripts: list[Script]) -> list[list[TurnReport]]:
    return list(await asyncio.gather(*[_session(s) for s in scripts]))


def _child() -> None:
    """The child's side: read the pickled scripts on stdin, write the pickled outcome on stdout."""
    scripts = pickle.load(sys.stdin.buffer)
    try:
        result: Any = ("ok", asyncio.run(_all(scripts)))
    except BaseException:  # noqa: BLE001 - every failure goes back to the parent, as text
        result = ("error", traceback.format_exc())
    sys.stdout.buffer.write(pickle.dumps(result))
    sys.stdout.buffer.flush()


async def run_engines(scripts: Sequence[Script]) -> list[list[TurnReport]]:
    """Run every script concurrently in one child process; returns each script's turn reports, in order.

    The caller's event loop keeps running (the server in it keeps serving) while the child works.
    """
    return list(await run_child("facecast.bench.engines", list(scripts), "engine-sim"))


async def run_child(module: str, payload: Any, what: str, limit: float | None = None) -> Any:
    """Run ``python -m module`` with the pickled ``payload`` on its stdin and return the value of its pickled
    ``("ok", value)`` report; raises RuntimeError naming ``what`` for ``("error", traceback)`` or a child that
    died, and TimeoutError (the child killed) after ``limit`` seconds."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(pickle.dumps(payload)), limit)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    try:
        status, value = pickle.loads(out)
    except Exception as exc:  # noqa: BLE001 - a child that died leaves no (or half a) report
        raise RuntimeError(f"the {what} process died without a report (exit {process.returncode})") from exc
    if status != "ok":
        raise RuntimeError(f"the {what} process failed:\n{value}")
    return value


if __name__ == "__main__":
    _child()
