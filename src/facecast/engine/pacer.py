"""The 60 fps pacer shared by every paced output: WHEN each frame's packet leaves, for any wire format.

An output is an encoder (:class:`FrameEncoder`: frame values -> packet bytes) plus a :class:`PacketSink`
(where packets go, e.g. a UDP sender); the pacer owns all the timing. Live Link (:mod:`facecast.engine.livelink`)
is the first; a VMC/OSC output is another encoder on the same :class:`FramePacer`.

A receiver such as Unreal applies a frame when its datagram ARRIVES, so the moment each packet leaves is the
animation's timing. The pacer therefore sends every frame at its due time on an ABSOLUTE schedule: frame
``i`` of an utterance is due at ``anchor + i / 60``, where ``anchor`` is the engine's playback start on the
pacer's clock. Nothing accumulates, so there is no drift however long it runs.

- Late frames are skipped, never bunched: when the pacer wakes more than a frame late it jumps to the frame
  that is due now and counts the ones it passed over.
- The character never freezes: between utterances each channel keeps streaming its composer's idle face
  on the same 60 fps grid (the grid of the last anchor, or of the pacer's start).
- One loop drives any number of channels; channels whose schedules coincide are sent in the same wake-up.
  With no channel at all it sleeps until one is added: no timer wake-ups, no spinning.
- Compute ahead, send on time: right after a wake-up's sends, the pacer computes every channel's NEXT packet
  (composer and encoder), so at the due time it only hands ready bytes to the sink, back to back, and each
  channel's packets leave at the same offset in every wake-up. A packet computed ahead is discarded, and
  computed again when it is due, if it went stale: a stall made its frame late, a new utterance starts
  before it, or the utterance it shows was cleared. Utterance frames that were not pushed yet are computed
  when due, so they use the newest data.
- The clock (``now`` and ``sleep_until``) is injected (:mod:`facecast.engine.clock`): real time, or a
  virtual clock for tests and simulations.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from ..face.arkit import INDEX
from ..types import FACE_WIDTH, FPS, FaceFrames, Float32Array
from .clock import Clock, MonotonicClock

__all__ = [
    "FrameEncoder",
    "PacketSink",
    "FaceComposer",
    "PassthroughComposer",
    "UtterancePlayback",
    "ChannelStats",
    "TickReport",
    "FrameChannel",
    "FramePacer",
]

_FRAME = 1.0 / FPS
_EPS = 1e-9
_PREPARE_MARGIN = 0.001  # stop computing ahead this long before the next frame is due (the rest waits for it)
_PREPARE_SLICE = 0.0005  # while computing ahead, let the event loop's other tasks run this often


class FrameEncoder(Protocol):
    """Turns one frame into one packet of an output's wire format (Live Link Face, VMC/OSC...).

    ``number`` is the frame's number on the pacer's 60 fps face clock, in [0, 2**31); ``sub_frame`` in [0, 1)
    is how far past that frame the due time lies; ``values`` are the 68 face values. Must be pure and fast
    (the pacer calls it 60 times a second per channel, on the event loop) and must not raise for finite values.
    """

    def encode(self, number: int, sub_frame: float, values: Float32Array) -> bytes: ...


class PacketSink(Protocol):
    """Where the pacer puts each encoded packet; must not block."""

    def send(self, packet: bytes) -> None: ...


E = TypeVar("E", bound=FrameEncoder)


class FaceComposer(Protocol):
    """Makes the face to send for the frame due at ``t``: a time on the pacer's clock (the same clock as
    utterance anchors, so a composer can schedule things with anchor-based times).

    ``mouth`` is the utterance's frame due then (68 values), or None between utterances. Returns 68 values.
    :class:`facecast.face.layers.AnimationLayer` is one (idle blinks, eyes, head, emotion, blending).

    The pacer calls it about a frame BEFORE ``t`` (it computes ahead), once per frame, with ``t`` increasing
    per channel, except after a frame computed ahead was discarded (see the module's docstring): the frame
    computed instead is for a time up to a frame EARLIER than the discarded one, or for the same time, or,
    after a stall, later. A composer must accept that; ``AnimationLayer`` treats an earlier time as the
    previous call's. Something changed between the call and the due time (an emotion set for "now") shows
    from the next frame.
    """

    def frame(self, t: float, mouth: Float32Array | None) -> Float32Array: ...


class PassthroughComposer:
    """Sends utterance frames unchanged and, between utterances, a still rest face (Neutral emotion 1)."""

    def __init__(self) -> None:
        rest = np.zeros(FACE_WIDTH, np.float32)
        rest[INDEX["Neutral"]] = 1.0
        self._rest = rest

    def frame(self, t: float, mouth: Float32Array | None) -> Float32Array:
        return self._rest if mouth is None else mouth


class UtterancePlayback:
    """One utterance's frames, played on a channel from its anchor. Made by :meth:`FrameChannel.play`.

    Push the utterance's frames in order as they are produced (frame 0 is due at the anchor) and call
    :meth:`finish` after the last: the channel then returns to its idle face. Until then, a frame that is
    due but not yet pushed is an underrun: the previous frame is held. Pushing to a playback that was
    replaced or cleared does nothing, so a producer racing a barge-in needs no lock.
    """

    def __init__(self, anchor: float) -> None:
        self.anchor = anchor
        self._chunks: deque[FaceFrames] = deque()
        self._pushed = 0
        self._finished = False
        self._cancelled = False

    @property
    def frames_pushed(self) -> int:
        """How many frames were pushed so far (the ``start`` the next push must have)."""
        return self._pushed

    @property
    def cancelled(self) -> bool:
        """True once the playback was cleared or replaced by a newer one."""
        return self._cancelled

    def push(self, frames: FaceFrames) -> None:
        """Append the next frames. Raises ValueError unless ``frames.start`` continues the previous push and
        each frame has 68 values; RuntimeError after :meth:`finish`."""
        if self._finished:
            raise RuntimeError("push after finish()")
        if frames.values.ndim != 2 or frames.values.shape[1] != FACE_WIDTH:
            raise ValueError(f"face frames must be n x {FACE_WIDTH}, got {frames.values.shape}")
        if frames.start != self._pushed:
            raise ValueError(f"frames start at {frames.start}, expected {self._pushed} (frames must be contiguous)")
        self._pushed = frames.end
        if not self._cancelled and len(frames.values) > 0:
            self._chunks.append(frames)

    def finish(self) -> None:
        """No more frames will come: after the last one, the channel goes back to its idle face."""
        self._finished = True

    def _frame(self, index: int) -> Float32Array | None:
        """Frame ``index``, dropping earlier chunks; None when it has not been pushed (yet)."""
        chunks = self._chunks
        while chunks and chunks[0].end <= index:
            chunks.popleft()
        if chunks and chunks[0].start <= index:
            row: Float32Array = chunks[0].values[index - chunks[0].start]
            return row
        return None

    def _over(self, index: int) -> bool:
        return self._cancelled or (self._finished and index >= self._pushed)


@dataclass(frozen=True, slots=True)
class ChannelStats:
    """Counters of one channel: packets sent, scheduled frames skipped because the pacer was late, underruns
    (an utterance frame was due before it was pushed), and packets computed ahead then discarded as stale."""

    sent: int
    skipped: int
    underruns: int
    discarded: int = 0


@dataclass(frozen=True, slots=True)
class TickReport:
    """One wake-up of the pacer: when it was due, when it woke, when its last packet was sent, how many, and
    how many of them had to be computed then (not ahead)."""

    due: float
    woke: float
    done: float
    packets: int
    computed: int = 0


@dataclass(frozen=True, slots=True)
class _Ahead:
    """A channel's next packet, computed before it is due: ``tick`` of the current grid, due at ``due``."""

    tick: int
    due: float
    mouth: Float32Array | None
    packet: bytes


class FrameChannel(Generic[E]):
    """One channel's schedule and its utterances (a Live Link subject, a VMC performer...): what it shows
    (its ``composer``) and how its frames become packets (its ``encoder``). Made by :meth:`FramePacer.add`."""

    def __init__(self, name: str, encoder: E, composer: FaceComposer) -> None:
        self.name = name
        self.encoder = encoder
        self._composer = composer
        self._anchor = 0.0  # the grid: tick k is due at _anchor + k / FPS
        self._tick = 0
        self._attached = False
        self._current: UtterancePlayback | None = None
        self._pending: UtterancePlayback | None = None
        self._ahead: _Ahead | None = None
        self._last_due: float | None = None
        self._last_mouth: Float32Array | None = None
        self._sent = self._skipped = self._underruns = self._discarded = 0

    @property
    def stats(self) -> ChannelStats:
        return ChannelStats(self._sent, self._skipped, self._underruns, self._discarded)

    @property
    def composer(self) -> FaceComposer:
        """What makes each frame (the idle face between utterances); replaceable at any time."""
        return self._composer

    @composer.setter
    def composer(self, composer: FaceComposer) -> None:
        self._composer = composer
        if self._ahead is not None:
            self._discard()  # computed by the previous composer

    @property
    def speaking(self) -> bool:
        """True while an utterance is playing or waiting for its anchor."""
        return self._current is not None or self._pending is not None

    def play(self, anchor: float) -> UtterancePlayback:
        """Start an utterance whose frame 0 is due at ``anchor`` (a time on the pacer's clock).

        The current utterance, if any, plays on until ``anchor``; an earlier utterance still waiting for
        its anchor is replaced. An anchor in the past is honoured: the frames already due are skipped.
        """
        if self._pending is not None:
            self._pending._cancelled = True
        playback = UtterancePlayback(anchor)
        self._pending = playback
        if self._ahead is not None and anchor <= self._ahead.due:
            self._discard()  # the packet computed ahead shows what this utterance replaces
        return playback

    def clear(self) -> None:
        """Barge-in: drop the playing and waiting utterances; the idle face follows from the next frame."""
        for playback in (self._current, self._pending):
            if playback is not None:
                playback._cancelled = True
        self._current = self._pending = None
        self._last_mouth = None
        if self._ahead is not None and self._ahead.mouth is not None:
            self._discard()

    def _discard(self) -> None:
        self._ahead = None
        self._discarded += 1

    def _attach(self, epoch: float, now: float) -> None:
        if not self._attached:
            self._attached = True
            self._anchor = epoch
            self._tick = max(0, math.ceil((now - epoch) * FPS - _EPS))

    def _switch(self, playback: UtterancePlayback) -> None:
        """Move onto ``playback``'s grid, continuing after the last frame sent."""
        if self._current is not None:
            self._current._cancelled = True
        self._current, self._pending = playback, None
        self._anchor = playback.anchor
        self._tick = 0
        if self._last_due is not None and playback.anchor <= self._last_due:
            self._tick = math.floor((self._last_due - playback.anchor) * FPS + _EPS) + 1
            self._skipped += self._tick
        if self._ahead is not None:
            self._discard()

    def _next_due(self) -> float:
        due = self._anchor + self._tick * _FRAME
        pending = self._pending
        if pending is not None and pending.anchor <= due:
            self._switch(pending)
            due = self._anchor + self._tick * _FRAME
        return due

    def _mouth(self, tick: int, *, ahead: bool) -> tuple[bool, Float32Array | None]:
        """(known, utterance frame due at ``tick`` or None for the idle face). Unknown only ``ahead`` of an
        underrun: the frame is not pushed yet, and may be by the time it is due."""
        current = self._current
        if current is None:
            return True, None
        mouth = current._frame(tick)
        if mouth is not None:
            return True, mouth
        if current._over(tick):
            self._current = None
            self._last_mouth = None
            return True, None
        if ahead:
            return False, None
        self._underruns += 1
        return True, self._last_mouth

    def _compose(self, tick: int, due: float, mouth: Float32Array | None, epoch: float) -> bytes:
        values = self._composer.frame(due, mouth)
        position = max(due - epoch, 0.0) * FPS  # negative only for an anchor before the pacer's start
        number = round(position)
        if abs(position - number) < 1e-6:
            sub_frame = 0.0
        else:
            number = math.floor(position)
            sub_frame = position - number
        return self.encoder.encode(number % 2**31, sub_frame, values)

    def _prepare(self, epoch: float) -> None:
        """Compute the next packet ahead of its due time, unless it is computed already or depends on an
        utterance frame that was not pushed yet."""
        if self._ahead is not None:
            return
        due = self._next_due()
        known, mouth = self._mouth(self._tick, ahead=True)
        if known:
            packet = self._compose(self._tick, due, mouth, epoch)
            self._ahead = _Ahead(self._tick, due, mouth, packet)

    def _send_ahead(self, now: float, sink: PacketSink) -> bool:
        """Send the packet computed ahead for the frame that is due (the caller checked that one is), unless
        there is none, or it is stale: more than a frame late, or a new utterance has started since."""
        ahead = self._ahead
        pending = self._pending
        if ahead is None or (pending is not None and pending.anchor <= now) or self._late(now):
            return False
        sink.send(ahead.packet)
        self._done(ahead.tick, ahead.due, ahead.mouth)
        return True

    def _send(self, now: float, epoch: float, sink: PacketSink) -> None:
        """Compute and send the frame due at ``now`` (jumping over frames that are more than a frame late)."""
        pending = self._pending
        if pending is not None and pending.anchor <= now:
            self._switch(pending)
        tick = self._tick
        current_tick = math.floor((now - self._anchor) * FPS + _EPS)
        if current_tick > tick:  # more than a frame behind: jump to the frame due now, never bunch
            self._skipped += current_tick - tick
            tick = current_tick
        if self._ahead is not None:
            self._discard()  # made for a frame that was skipped
        due = self._anchor + tick * _FRAME
        _, mouth = self._mouth(tick, ahead=False)
        sink.send(self._compose(tick, due, mouth, epoch))
        self._done(tick, due, mouth)

    def _late(self, now: float) -> bool:
        """Whether the next frame is more than a frame behind ``now``."""
        return math.floor((now - self._anchor) * FPS + _EPS) > self._tick

    def _done(self, tick: int, due: float, mouth: Float32Array | None) -> None:
        if mouth is not None:
            self._last_mouth = mouth
        self._ahead = None
        self._last_due = due
        self._tick = tick + 1
        self._sent += 1


class FramePacer:
    """Sends each channel's frames at their due time from one loop: utterance frames, or the idle face.

    ``sink`` gets every packet (for Live Link a :class:`~facecast.engine.livelink.LiveLinkSender`); ``clock``
    defaults to :class:`~facecast.engine.clock.MonotonicClock`.
    ``on_tick``, if given, is called after every wake-up with a :class:`TickReport` (for jitter measurement;
    keep it cheap). Composers get each frame's due time on ``clock``; each packet's frame number and
    sub-frame encode the same time, counted from :attr:`epoch` (the first :meth:`run`), at 60 fps.
    """

    def __init__(
        self,
        sink: PacketSink,
        *,
        clock: Clock | None = None,
        on_tick: Callable[[TickReport], None] | None = None,
    ) -> None:
        self.sink = sink
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self._on_tick = on_tick
        self._channels: dict[str, FrameChannel[Any]] = {}
        self._epoch: float | None = None
        self._running = False
        self._added = asyncio.Event()  # set when a channel is added: wakes a pacer that has none

    @property
    def channels(self) -> tuple[FrameChannel[Any], ...]:
        return tuple(self._channels.values())

    @property
    def epoch(self) -> float | None:
        """Clock time of face time 0 (frame number 0), set by the first :meth:`run`; None before."""
        return self._epoch

    def add(self, name: str, encoder: E, composer: FaceComposer | None = None) -> FrameChannel[E]:
        """Start streaming a channel called ``name`` whose frames ``encoder`` turns into packets (its idle
        face, from ``composer``, until it plays an utterance; default :class:`PassthroughComposer`).

        Raises ValueError if a channel already has that name.
        """
        if name in self._channels:
            raise ValueError(f"a channel named {name!r} is already streaming: names must differ")
        channel = FrameChannel(name, encoder, composer if composer is not None else PassthroughComposer())
        self._channels[name] = channel
        self._added.set()
        if self._epoch is not None:
            channel._attach(self._epoch, self.clock.now())
        return channel

    def remove(self, name: str) -> None:
        """Stop streaming the channel called ``name`` (KeyError if there is none)."""
        del self._channels[name]

    async def run(self, *, until: float | None = None) -> None:
        """Send frames until cancelled, or until the next frame would be due after ``until`` (clock time).

        May be called again after it returns; the schedule and the face clock carry on. Raises RuntimeError
        if already running. Exceptions from a composer propagate (a bug there must not be hidden).
        """
        if self._running:
            raise RuntimeError("the pacer is already running")
        self._running = True
        try:
            clock = self.clock
            now = clock.now()
            if self._epoch is None:
                self._epoch = now
            epoch = self._epoch
            for channel in self._channels.values():
                channel._attach(epoch, now)
            while True:
                channels = list(self._channels.values())
                if not channels:  # nothing to send: sleep until a channel is added (no wake-ups, no spinning)
                    if not await self._wait_for_channel(until):
                        return
                    continue
                due = min(channel._next_due() for channel in channels)
                if until is not None and due > until:
                    return
                await self._prepare(channels, epoch, due - _PREPARE_MARGIN, until)
                await clock.sleep_until(due)
                woke = clock.now()
                # The packets computed ahead first, back to back; then those that must be computed now.
                packets = 0
                computed: list[FrameChannel[Any]] = []
                for channel in list(self._channels.values()):
                    if channel._next_due() <= woke:
                        packets += 1
                        if not channel._send_ahead(woke, self.sink):
                            computed.append(channel)
                for channel in computed:
                    channel._send(woke, epoch, self.sink)
                if self._on_tick is not None:
                    self._on_tick(TickReport(due, woke, clock.now(), packets, len(computed)))
        finally:
            self._running = False

    async def _wait_for_channel(self, until: float | None) -> bool:
        """Wait for :meth:`add` (True), or until the clock reaches ``until`` without a channel (False)."""
        self._added.clear()
        if until is None:
            await self._added.wait()
            return True
        added = asyncio.ensure_future(self._added.wait())
        deadline = asyncio.ensure_future(self.clock.sleep_until(until))
        try:
            await asyncio.wait((added, deadline), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (added, deadline):
                task.cancel()
            await asyncio.gather(added, deadline, return_exceptions=True)
        return bool(self._channels)

    async def _prepare(self, channels: list[FrameChannel[Any]], epoch: float, stop: float, until: float | None) -> None:
        """Compute each channel's next packet ahead (see the module's docstring), letting the event loop run
        other tasks every ``_PREPARE_SLICE``; leave the rest to their due time once the clock passes ``stop``."""
        clock = self.clock
        slice_end = clock.now() + _PREPARE_SLICE
        for channel in channels:
            if self._channels.get(channel.name) is not channel:
                continue  # removed meanwhile
            if until is None or channel._next_due() <= until:
                channel._prepare(epoch)
            now = clock.now()
            if now >= slice_end:
                if now >= stop:
                    return
                await asyncio.sleep(0)
                slice_end = clock.now() + _PREPARE_SLICE
