"""Honest engine clients for the soak benchmark (:mod:`.soak_bench`): conversations that play every reply in
real time, and what became of each turn.

Each conversation is an engine-sim client (:class:`facecast.engine.sim.EngineSim`) that acks and plays every
reply like an engine. Even-numbered ones type their turns (a line of :data:`LINES` and the turn's number, so
each echo reply is unique); odd-numbered ones speak them, streaming real recorded speech
(:func:`.turns_bench.real_questions`; espeak-spoken questions when the recordings cannot be fetched) as a live
microphone, the server finding the end of each turn. Each turn must be answered by exactly one reply
utterance (counted by utterance ids; a typed turn's reply must also be the echo of that turn). A dropped or
refused connection is counted by why (:func:`why`) and the conversation starts over on a new one.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from ..engine.sim import EngineSim, SimConfig, TurnReport
from ..llm.echo import echo_reply
from ..types import ChatMessage, Float32Array

__all__ = ["LINES", "TurnRecord", "SessionResult", "run_honest", "why"]

LINES = (
    "Good morning, how are you today?",
    "Where can I buy some fresh bread?",
    "Tell me about the old lighthouse.",
    "What is the weather like at sea?",
)
_TURN_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """One honest turn: when it started (s from the start), what came back and how long it took."""

    session: int
    kind: str
    """``typed`` or ``spoken``."""
    at: float
    outcome: str
    """``ok``; ``lost`` (no reply), ``no_speech`` (the STT heard nothing), ``timeout``, ``error CODE``,
    ``cleared``: no reply on a live connection; ``cut``: the connection dropped during the turn;
    ``duplicated`` (more than one reply), ``wrong`` (a reply to another turn)."""
    latency_ms: float = math.nan
    underruns: int = 0
    discontinuities: int = 0


@dataclass(slots=True)
class SessionResult:
    session: int
    kind: str
    turns: list[TurnRecord] = field(default_factory=list)
    connects: int = 0
    strays: int = 0
    """Reply utterances that started after the session's last turn was answered (duplicates)."""
    failures: dict[str, int] = field(default_factory=dict)
    """Connections refused or dropped, by why (:func:`why`)."""
    speech: str = ""


def _questions() -> tuple[list[tuple[Float32Array, int]], str]:
    from ..errors import FacecastError
    from .turns_bench import real_questions

    try:
        questions = real_questions()
    except (FacecastError, OSError):
        questions = []
    if questions:
        return questions, "real recorded speech (read and conversational clips)"
    from .turns_bench import spoken_questions

    return asyncio.run(spoken_questions()), "espeak-spoken questions"


def _record(session: int, kind: str, at: float, report: TurnReport, expected: str | None, seen: set[int]) -> TurnRecord:
    utterances = report.utterances
    ids = [u.utterance for u in utterances]
    codes = [str(e.get("code")) for e in report.errors]
    underruns = sum(u.underruns for u in utterances)
    discontinuities = sum(u.discontinuities for u in utterances)
    if len(ids) > 1 or any(i in seen for i in ids):
        outcome = "duplicated"
    elif not ids:
        outcome = "no_speech" if "no_speech" in codes else f"error {codes[0]}" if codes else "lost"
    elif utterances[0].cleared:
        outcome = "cleared"
    elif expected is not None and utterances[0].text != expected:
        outcome = "wrong"
    else:
        outcome = "ok"
    seen.update(ids)
    latency = report.response_latency * 1000 if outcome == "ok" else math.nan
    return TurnRecord(session, kind, at, outcome, latency, underruns, discontinuities)


async def _strays(sim: EngineSim, wait: float) -> int:
    """Reply utterances that start within ``wait`` seconds (none should: every turn was answered)."""
    count, give_up = 0, time.monotonic() + wait
    while (left := give_up - time.monotonic()) > 0:
        try:
            message = await asyncio.wait_for(sim.ws.recv(), left)
        except TimeoutError:
            break
        if isinstance(message, str) and '"utterance_start"' in message:
            count += 1
    return count


def why(exc: BaseException) -> str:
    """A dropped or refused honest connection, in a few words."""
    if isinstance(exc, ConnectionClosed):
        if exc.rcvd is not None:
            return f"closed by the server ({exc.rcvd.code} {exc.rcvd.reason})".replace(" )", ")")
        if exc.sent is not None and exc.sent.code == 1011:
            return "the server answered no ping for 20 s"
        return "connection lost"
    if isinstance(exc, TimeoutError):
        return "no WebSocket handshake within 10 s"
    if isinstance(exc, InvalidStatus):
        return f"refused (HTTP {exc.response.status_code})"
    code = re.search(r'"code":\s*"(\w+)"', str(exc))
    if code:
        return f"session refused ({code.group(1)})"
    return f"{type(exc).__name__}: {exc}"[:60]


async def _conversation(
    session: int, url: str, started: float, until: float, questions: list[tuple[Float32Array, int]]
) -> SessionResult:
    kind = "spoken" if session % 2 else "typed"
    result = SessionResult(session, kind)
    seen: set[int] = set()
    turn = 0
    while time.monotonic() < until:
        at: float | None = None  # when the turn in progress started
        try:
            async with EngineSim(SimConfig(url=url, subject=f"Soak{session}", hold_mic=True)) as sim:
                result.connects += 1
                seen.clear()  # utterance ids count from 1 in each session
                while time.monotonic() < until:
                    at = time.monotonic() - started
                    expected: str | None = None
                    try:
                        if kind == "spoken":
                            pcm, rate = questions[(session + turn) % len(questions)]
                            report = await sim.say_audio(pcm, rate, timeout=_TURN_TIMEOUT)
                        else:
                            line = f"{LINES[(session + turn) % len(LINES)]} Turn {turn}."
                            expected = echo_reply([ChatMessage("user", line)])
                            report = await sim.say_text(line, timeout=_TURN_TIMEOUT)
                    except TimeoutError:
                        result.turns.append(TurnRecord(session, kind, at, "timeout"))
                        at = None
                        break  # start over on a new connection: a late reply must not count for the next turn
                    finally:
                        turn += 1
                    result.turns.append(_record(session, kind, at, report, expected, seen))
                    at = None
                    for utt in report.utterances:  # the media is large and nothing here reads it
                        utt.audio.clear()
                        utt.face.clear()
                else:
                    result.strays += await _strays(sim, 1.0)
        except (OSError, ConnectionError, WebSocketException) as exc:
            reason = why(exc)
            result.failures[reason] = result.failures.get(reason, 0) + 1
            if at is not None:
                result.turns.append(TurnRecord(session, kind, at, "cut"))
            await asyncio.sleep(1.0)
    return result


async def run_honest(url: str, count: int, started: float, until: float) -> list[SessionResult]:
    """Run ``count`` conversations against the engine WebSocket at ``url`` until the monotonic time ``until``
    (turn times are counted from ``started``); even-numbered ones type, odd-numbered ones speak."""
    questions, speech = await asyncio.to_thread(_questions)
    results = await asyncio.gather(*(_conversation(k, url, started, until, questions) for k in range(count)))
    for result in results:
        result.speech = speech
    return list(results)
