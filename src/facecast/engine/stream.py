"""One avatar's face stream on its own pacer, driven by whichever session is newest: the shared part of the
outputs that feed a single avatar (VMC receivers, VTube Studio), whatever their encoder and sink.

Live Link names a subject per session; a VTuber app shows ONE avatar, so these outputs keep one channel
(:class:`~facecast.engine.pacer.FrameChannel`) on a :class:`~facecast.engine.pacer.FramePacer`, on the same
absolute 60 fps schedule as Live Link (utterance frame ``i`` at ``playback start + i / 60``):

- the newest live session drives it: its face timeline is the channel's composer (its idle face between
  utterances) and its utterances play through a :class:`~facecast.engine.outputs.PacedSink`; the sinks of
  older sessions are quiet meanwhile, and the previous live session drives it again when the newest ends;
- with no live session left, the stream shows the last one's idle face for ``linger`` seconds (a reconnect
  within that time continues it), then stops; the pacer then sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..events import UtteranceEvent
from .clock import Clock
from .outputs import PacedSink
from .pacer import FrameChannel, FrameEncoder, FramePacer, PacketSink, TickReport
from .timeline import FaceTimeline

__all__ = ["AvatarStream", "StreamSink"]


class StreamSink:
    """A session's sink on an :class:`AvatarStream`: passes the session's utterances to the stream while the
    session drives it, and nothing otherwise. ``close()`` when the session ends."""

    def __init__(self, stream: AvatarStream, timeline: FaceTimeline, info: dict[str, object]) -> None:
        self._stream = stream
        self.timeline = timeline
        self._info = info
        self.paced: PacedSink | None = None

    @property
    def driving(self) -> bool:
        """True while this session's face is the one streamed."""
        return self._stream.driver is self

    def status(self) -> dict[str, object]:
        """The output's ``info`` and whether this session drives the stream. (Not ``describe()``: the session's
        ``welcome`` reads the first sink description as the Live Link subject.)"""
        return {**self._info, "driving": self.driving}

    def on_event(self, event: UtteranceEvent) -> None:
        if self.paced is not None and self.driving:
            self.paced.on_event(event)

    def on_playback_started(self, utterance: int, monotonic_time: float) -> None:
        if self.paced is not None and self.driving:
            self.paced.on_playback_started(utterance, monotonic_time)

    def on_clear(self, utterance: int) -> None:
        if self.paced is not None and self.driving:
            self.paced.on_clear(utterance)

    def close(self) -> None:
        self._stream._release(self)


class AvatarStream:
    """See the module. ``encoder`` turns each frame into a packet for ``sink`` (both the pacer's);
    ``clock`` and ``on_tick`` are the pacer's (virtual time in tests, jitter in benchmarks). Run it with
    :meth:`run` for the output's lifetime; call from the event loop only."""

    def __init__(
        self,
        name: str,
        encoder: FrameEncoder,
        sink: PacketSink,
        *,
        linger: float = 30.0,
        clock: Clock | None = None,
        on_tick: Callable[[TickReport], None] | None = None,
    ) -> None:
        self.name = name
        self.encoder = encoder
        self.linger = linger
        self.pacer = FramePacer(sink, clock=clock, on_tick=on_tick)
        self._sessions: list[StreamSink] = []
        self._channel: FrameChannel[Any] | None = None
        self._expiry: asyncio.TimerHandle | None = None

    @property
    def channel(self) -> FrameChannel[Any] | None:
        """The stream's channel while it streams (a session drives it, or it lingers), else None."""
        return self._channel

    @property
    def driver(self) -> StreamSink | None:
        """The sink of the session whose face is streamed (the newest live one), or None."""
        return self._sessions[-1] if self._sessions else None

    async def run(self) -> None:
        """Stream until cancelled (see :meth:`FramePacer.run`)."""
        await self.pacer.run()

    def attach(self, timeline: FaceTimeline, info: dict[str, object]) -> StreamSink:
        """A new session, showing ``timeline``, drives the stream from now (an utterance of the previous driver
        stops). ``info`` is what the sink's ``describe()`` reports, with ``driving``."""
        sink = StreamSink(self, timeline, info)
        channel = self._drive(timeline)
        sink.paced = PacedSink(channel, sink.status)
        self._sessions.append(sink)
        return sink

    def close(self) -> None:
        """Cancel a pending linger expiry (the output is shutting down)."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def _drive(self, timeline: FaceTimeline) -> FrameChannel[Any]:
        self.close()
        if self._channel is None:
            self._channel = self.pacer.add(self.name, self.encoder, timeline)
        else:
            self._channel.clear()
            self._channel.composer = timeline
        return self._channel

    def _release(self, sink: StreamSink) -> None:
        if sink not in self._sessions:
            return
        was_driving = sink.driving
        self._sessions.remove(sink)
        if not was_driving or self._channel is None:
            return
        if self._sessions:  # the previous live session drives it again
            self._drive(self._sessions[-1].timeline)
            return
        self._channel.clear()
        sink.timeline.rewind(self.pacer.clock.now())
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if self.linger <= 0 or loop is None:
            self._stop()
        else:
            self._expiry = loop.call_later(self.linger, self._stop)

    def _stop(self) -> None:
        self._expiry = None
        if self._channel is not None and not self._sessions:
            self.pacer.remove(self.name)
            self._channel = None
