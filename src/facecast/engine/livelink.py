"""Live Link output: Live Link Face subjects on the shared 60 fps pacer.

Live Link is one encoder (:class:`LiveLinkEncoder`, per subject, from :mod:`facecast.engine.livelink_udp`)
on the generic :class:`~facecast.engine.pacer.FramePacer`, which owns all the timing: every frame is sent at
its due wall-clock time on an absolute schedule (frame ``i`` of an utterance at ``anchor + i / 60``), packets
are computed a frame ahead and handed to the sender when due, late frames are skipped (never bunched), the
idle face streams between utterances, and a pacer without subjects sleeps. Unreal applies a Live Link Face
frame when its datagram ARRIVES, so that schedule is the animation's timing. :class:`LiveLinkPacer` adds only
what is Live Link's own: channels named by :class:`LiveLinkSubject`, whose names and device ids must differ.

This module also exports the pacer's and the clock's names, so a Live Link user needs one import.

Typical use::

    async with LiveLinkSender(parse_targets(["127.0.0.1:11111"])) as sender:
        pacer = LiveLinkPacer(sender)
        face = pacer.add_subject(LiveLinkSubject("Facecast"), AnimationLayer(seed=1))
        runner = asyncio.create_task(pacer.run())
        ...
        playback = face.play(anchor)  # anchor: the engine's playback start, on pacer.clock
        async for frames in animator.animate(speech):
            playback.push(frames)
        playback.finish()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from .clock import Clock, MonotonicClock, VirtualClock
from .livelink_udp import LiveLinkEncoder, LiveLinkSender, LiveLinkSubject, LiveLinkTarget, parse_targets
from .pacer import (
    ChannelStats,
    FaceComposer,
    FrameChannel,
    FramePacer,
    PacketSink,
    PassthroughComposer,
    TickReport,
    UtterancePlayback,
)

__all__ = [
    "LiveLinkTarget",
    "parse_targets",
    "LiveLinkSubject",
    "LiveLinkEncoder",
    "Clock",
    "MonotonicClock",
    "VirtualClock",
    "PacketSink",
    "LiveLinkSender",
    "FaceComposer",
    "PassthroughComposer",
    "UtterancePlayback",
    "SubjectChannel",
    "SubjectStats",
    "TickReport",
    "LiveLinkPacer",
]

SubjectChannel: TypeAlias = FrameChannel[LiveLinkEncoder]
"""A Live Link subject's channel on the pacer (``channel.encoder.subject`` is its :class:`LiveLinkSubject`)."""

SubjectStats: TypeAlias = ChannelStats
"""A subject's counters: the pacer's :class:`~facecast.engine.pacer.ChannelStats`."""


class LiveLinkPacer:
    """A :class:`~facecast.engine.pacer.FramePacer` whose channels are Live Link subjects.

    ``sink`` is usually a :class:`LiveLinkSender`; ``clock`` and ``on_tick`` are the pacer's (see
    :class:`~facecast.engine.pacer.FramePacer`). :attr:`frames` is that pacer, should another output want to
    share its clock and loop.
    """

    def __init__(
        self,
        sink: PacketSink,
        *,
        clock: Clock | None = None,
        on_tick: Callable[[TickReport], None] | None = None,
    ) -> None:
        self.frames = FramePacer(sink, clock=clock, on_tick=on_tick)
        self._subjects: dict[str, SubjectChannel] = {}

    @property
    def clock(self) -> Clock:
        return self.frames.clock

    @property
    def epoch(self) -> float | None:
        """Clock time of Live Link frame number 0, set by the first :meth:`run`; None before."""
        return self.frames.epoch

    @property
    def subjects(self) -> tuple[SubjectChannel, ...]:
        return tuple(self._subjects.values())

    def add_subject(self, subject: LiveLinkSubject, composer: FaceComposer | None = None) -> SubjectChannel:
        """Start streaming ``subject`` (its idle face from ``composer`` until it plays an utterance).

        Raises ValueError if another subject already uses the name or the device id (Unreal would show only
        one of them).
        """
        for other in self._subjects.values():
            taken = other.encoder.subject
            if subject.name == taken.name or subject.device_id == taken.device_id:
                raise ValueError(f"subject {subject} clashes with {taken}: names and device ids must differ")
        channel = self.frames.add(subject.name, LiveLinkEncoder(subject), composer)
        self._subjects[subject.name] = channel
        return channel

    def remove_subject(self, name: str) -> None:
        """Stop streaming the subject called ``name`` (KeyError if there is none)."""
        del self._subjects[name]
        self.frames.remove(name)

    async def run(self, *, until: float | None = None) -> None:
        """Send every subject's frames until cancelled, or until the next frame would be due after ``until``
        (see :meth:`~facecast.engine.pacer.FramePacer.run`)."""
        await self.frames.run(until=until)
