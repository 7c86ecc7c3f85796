"""What a session feeds besides its WebSocket: the :class:`UtteranceSink` and :class:`Output` roles.

An :class:`Output` lives as long as the server (a Live Link sender and its pacer, a recording folder...);
for each engine session it is asked to :meth:`~Output.attach` and returns that session's
:class:`UtteranceSink`. The session then feeds every sink the same stream:

- the utterance's pipeline events as they happen (:class:`~facecast.events.UtteranceStarted`, ``AudioOut``,
  ``SentenceOut``, ``EmotionOut``), in order;
- ``on_playback_started(utterance, t)`` when the engine starts playing it (``t`` on ``time.monotonic``);
- its face as :class:`~facecast.events.FaceOut` events carrying FINAL frames (the session's face timeline
  applied: the very values the WebSocket sends), in order, only after ``on_playback_started``;
- ``UtteranceEnded`` after the last of those frames, or ``on_clear(utterance)`` if it was interrupted or
  abandoned.

A sink's own failures are its own (:class:`SinkGroup` switches a failing sink off for the session). A sink
may also have ``describe()`` (what the client's ``welcome`` reports about it, e.g. the Live Link subject)
and ``close()`` (the session ended; may return an awaitable, which the session awaits).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..characters import Character
from ..errors import FacecastError
from ..events import UtteranceEvent
from ..protocol import engine as proto
from .timeline import FaceTimeline

__all__ = ["UtteranceSink", "SessionInfo", "Output", "OutputRefused", "SinkGroup", "attach_outputs"]

log = logging.getLogger(__name__)


class UtteranceSink(Protocol):
    """One session's feed into an output (see the module docstring for what arrives when)."""

    def on_event(self, event: UtteranceEvent) -> None: ...

    def on_playback_started(self, utterance: int, monotonic_time: float) -> None:
        """The client started playing ``utterance`` at ``monotonic_time`` (``time.monotonic`` clock)."""
        ...

    def on_clear(self, utterance: int) -> None:
        """``utterance`` was interrupted or abandoned: drop what is left of it."""
        ...


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What an output learns about a new session: its ``hello``, its face ``timeline`` (the composer a
    paced output uses for the idle face between utterances, so idle and speech come from one layer) and its
    ``character`` (e.g. its Live Link subject, when the hello names none)."""

    hello: proto.Hello
    timeline: FaceTimeline
    character: Character | None = None


class Output(Protocol):
    """A server-wide output: Live Link, the recorder, a future VMC/OSC sender.

    :meth:`run` is its lifetime (open sockets or folders, run a pacer; release everything when cancelled);
    :meth:`attach` is called once per session, while it runs, and must not block. An output that must be able
    to refuse to start may also be an async context manager (entered instead of running :meth:`run`, see
    :func:`facecast.engine.outputs.run_outputs`).
    """

    async def run(self) -> None:
        """Run until cancelled. Raises :class:`~facecast.errors.ConfigError` if it cannot start."""
        ...

    def attach(self, session: SessionInfo) -> UtteranceSink:
        """The sink for a new session (it may have ``describe()`` and ``close()``, see the module). May refuse
        the session by raising a :class:`~facecast.errors.FacecastError` (e.g. :class:`OutputRefused`: a
        Live Link subject that another session drives): the hello is answered with that error's ``code`` and
        message, and the session changes nothing (no other output keeps a sink for it)."""
        ...

    def describe(self) -> dict[str, object]:
        """What this output is and where it goes (for logs and ``/health``); no secrets."""
        ...


class SinkGroup:
    """Fans each call out to every sink; a sink whose call raises is logged and switched off for the rest of
    the session, so an output (a recorder on a full disk, a broken Live Link target) never costs the client
    its reply. Nothing of the failure is sent to the client."""

    def __init__(self, sinks: Iterable[UtteranceSink] = ()) -> None:
        self._sinks = list(sinks)
        self._failed: set[int] = set()

    def __len__(self) -> int:
        return len(self._sinks)

    def add(self, sink: UtteranceSink) -> None:
        """Feed ``sink`` too, from the next call."""
        self._sinks.append(sink)

    def _call(self, name: str, *args: Any) -> None:
        for index, sink in enumerate(self._sinks):
            if index in self._failed:
                continue
            try:
                getattr(sink, name)(*args)
            except Exception:
                self._failed.add(index)
                log.exception("output %s failed and is switched off for this session", type(sink).__name__)

    def on_event(self, event: UtteranceEvent) -> None:
        self._call("on_event", event)

    def on_playback_started(self, utterance: int, monotonic_time: float) -> None:
        self._call("on_playback_started", utterance, monotonic_time)

    def on_clear(self, utterance: int) -> None:
        self._call("on_clear", utterance)

    def descriptions(self) -> list[dict[str, object]]:
        """``describe()`` of the sinks that have one (failures are logged and skipped)."""
        found = []
        for sink in self._sinks:
            describe = getattr(sink, "describe", None)
            if describe is None:
                continue
            try:
                found.append(describe())
            except Exception:
                log.exception("output %s could not describe itself", type(sink).__name__)
        return found

    async def close(self) -> None:
        """Close every sink, failed ones too (a failed sink still releases what it holds, e.g. a subject)."""
        sinks, self._sinks = self._sinks, []
        for sink in sinks:
            close = getattr(sink, "close", None)
            if close is None:
                continue
            try:
                result = close()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("output %s failed to close", type(sink).__name__)


class OutputRefused(FacecastError):
    """An output refused a session (see :meth:`Output.attach`) for a reason that may pass by itself in a moment:
    :func:`attach_outputs` tries again a few times before giving up. Subclasses set ``code``."""


RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4)
"""Seconds :func:`attach_outputs` waits before each new try after an :class:`OutputRefused`."""


async def attach_outputs(group: SinkGroup, outputs: Sequence[Output], session: SessionInfo) -> None:
    """Attach ``session`` to every output, adding each sink to ``group`` (all or nothing).

    An output that raises :class:`OutputRefused` (e.g. a Live Link subject whose previous session ended a
    moment ago, but whose closing the server has not processed yet: a fast reconnect) is tried again after
    each of :data:`RETRY_DELAYS`; the sinks attached so far are closed before each wait. Raises the last
    refusal, or any other :class:`~facecast.errors.FacecastError` at once, with ``group`` empty.
    """
    for delay in (*RETRY_DELAYS, None):
        try:
            for output in outputs:
                group.add(output.attach(session))
            return
        except OutputRefused:
            await group.close()
            if delay is None:
                raise
            await asyncio.sleep(delay)
        except FacecastError:
            await group.close()
            raise
