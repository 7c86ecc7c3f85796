"""Live Link output: UDP targets, the datagram sender, and the 60 fps pacer.

Unreal applies a Live Link Face frame when its datagram ARRIVES (REFERENCE.md section 2), so the moment each
packet leaves is the animation's timing. The pacer therefore sends every frame at its due wall-clock time on
an ABSOLUTE schedule: frame ``i`` of an utterance is due at ``anchor + i / 60``, where ``anchor`` is the
engine's playback start on the pacer's clock. Nothing accumulates, so there is no drift however long it runs.

- Late frames are skipped, never bunched: when the pacer wakes more than a frame late it jumps to the frame
  that is due now and counts the ones it passed over.
- The character never freezes: between utterances each subject keeps streaming its composer's idle face
  on the same 60 fps grid (the grid of the last anchor, or of the pacer's start).
- One loop drives any number of subjects; subjects whose schedules coincide are sent in the same wake-up.
- The clock (``now`` and ``sleep_until``) is injected: :class:`MonotonicClock` for real time, with a sleep
  accurate to a few microseconds; :class:`VirtualClock` for tests and simulations.

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

import asyncio
import math
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import numpy as np

from ..errors import ConfigError
from ..face.arkit import INDEX
from ..protocol.livelink import DEFAULT_PORT, encode_frame, packet_size
from ..types import FACE_WIDTH, FPS, FaceFrames, Float32Array

__all__ = [
    "LiveLinkTarget",
    "parse_targets",
    "LiveLinkSubject",
    "Clock",
    "MonotonicClock",
    "VirtualClock",
    "DatagramSink",
    "LiveLinkSender",
    "FaceComposer",
    "PassthroughComposer",
    "UtterancePlayback",
    "SubjectChannel",
    "SubjectStats",
    "TickReport",
    "LiveLinkPacer",
]

_FRAME = 1.0 / FPS
_EPS = 1e-9


# ----------------------------------------------------------------------------------------------- targets


@dataclass(frozen=True, slots=True)
class LiveLinkTarget:
    """Where Live Link datagrams go: a host name or IP address and a UDP port."""

    host: str
    port: int = DEFAULT_PORT

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("Live Link target host must not be empty")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"Live Link target port must be 1-65535, got {self.port}")

    @classmethod
    def parse(cls, text: str) -> LiveLinkTarget:
        """Parse ``HOST:PORT``, ``[IPV6]:PORT``, or a bare ``HOST`` / IPv6 address (port 11111).

        Raises ValueError for an empty host, a port that is not a number in 1-65535, or unbalanced brackets.
        """
        spec = text.strip()
        if spec.startswith("["):
            host, sep, rest = spec[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise ValueError(f"bad Live Link target {text!r}: expected [IPV6]:PORT")
            port_text = rest[1:] if rest else None
        elif spec.count(":") == 1:
            host, _, port_text = spec.partition(":")
        else:  # a bare host name, IPv4 address, or unbracketed IPv6 address
            host, port_text = spec, None
        if port_text is None:
            return cls(host)
        if not port_text.isdecimal():
            raise ValueError(f"bad Live Link target {text!r}: port {port_text!r} is not a number")
        return cls(host, int(port_text))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_targets(specs: Iterable[str]) -> tuple[LiveLinkTarget, ...]:
    """Parse repeated ``--livelink`` values; any ``off`` (case-insensitive) means no Live Link output at all.

    Duplicates are removed, keeping the first. Raises ValueError as :meth:`LiveLinkTarget.parse` does.
    """
    items = [spec.strip() for spec in specs]
    if any(item.lower() == "off" for item in items):
        return ()
    return tuple(dict.fromkeys(LiveLinkTarget.parse(item) for item in items))


@dataclass(frozen=True, slots=True)
class LiveLinkSubject:
    """A Live Link subject as Unreal lists it: ``name``, from the device ``device_id``.

    Unreal keeps ONE subject per device id (a new subject name for a device replaces the old one), so each
    subject needs its own device id; the default is ``"facecast:" + name``. Raises ValueError for names the
    Live Link codec refuses (empty, NUL, too long).
    """

    name: str
    device_id: str = ""

    def __post_init__(self) -> None:
        if not self.device_id:
            object.__setattr__(self, "device_id", f"facecast:{self.name}")
        packet_size(self.device_id, self.name)  # validates both names


# -------------------------------------------------------------------------------------------------- clocks


class Clock(Protocol):
    """A monotonic time source in seconds and a way to wait for a moment on it."""

    def now(self) -> float: ...

    async def sleep_until(self, deadline: float) -> None:
        """Return at ``deadline`` or later (at once if it has passed)."""
        ...


class MonotonicClock:
    """``time.monotonic`` with a precise sleep.

    asyncio's timers wake up to ~1 ms late (epoll rounds its timeout up to whole milliseconds), so
    :meth:`sleep_until` sleeps with asyncio until ``spin`` seconds before the deadline, then yields to the
    event loop (``asyncio.sleep(0)``) until the deadline passes. Other tasks keep running during the spin;
    it costs a few percent of one core at 60 wake-ups per second with the default 1.5 ms.
    """

    def __init__(self, spin: float = 0.0015) -> None:
        if spin < 0:
            raise ValueError("spin must be >= 0")
        self._spin = spin

    def now(self) -> float:
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining > self._spin:
            await asyncio.sleep(remaining - self._spin)
        # A deliberate yield-spin for the last stretch: no timer can wake us with sub-millisecond accuracy.
        while time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0)


class VirtualClock:
    """A clock that only moves when told to: :meth:`sleep_until` jumps straight to the deadline.

    For tests and simulations. :meth:`advance` moves time forward, e.g. from inside a callback to simulate
    a stall; ``sleep_until`` still yields to the event loop once so other tasks run.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a virtual clock cannot go backwards")
        self._now += seconds

    async def sleep_until(self, deadline: float) -> None:
        self._now = max(self._now, deadline)
        await asyncio.sleep(0)


# -------------------------------------------------------------------------------------------------- sender


class DatagramSink(Protocol):
    """Where the pacer puts each encoded packet; must not block."""

    def send(self, packet: bytes) -> None: ...


class _SenderProtocol(asyncio.DatagramProtocol):
    def __init__(self, sender: LiveLinkSender) -> None:
        self._sender = sender

    def error_received(self, exc: Exception) -> None:
        self._sender._errors += 1


class LiveLinkSender:
    """Sends every packet, as one datagram, to each of its targets over UDP.

    Use ``async with LiveLinkSender(targets) as sender`` (or :meth:`open` then :meth:`close`). Host names are
    resolved once, on open, preferring IPv4 when a name has both (Unreal's Live Link source listens on IPv4).
    A send error (e.g. nothing listening, network down) is counted in :attr:`errors`, never raised: Live Link
    is fire-and-forget. :meth:`open` raises :class:`~facecast.errors.ConfigError` for a host that does not
    resolve.
    """

    def __init__(self, targets: Sequence[LiveLinkTarget]) -> None:
        self.targets = tuple(targets)
        self._routes: list[tuple[asyncio.DatagramTransport, tuple[object, ...]]] = []
        self._transports: list[asyncio.DatagramTransport] = []
        self._sent = 0
        self._errors = 0

    @property
    def sent(self) -> int:
        """Datagrams handed to the operating system so far (one per packet per target)."""
        return self._sent

    @property
    def errors(self) -> int:
        """Send errors reported by the operating system so far."""
        return self._errors

    async def open(self) -> None:
        if self._transports:
            return
        loop = asyncio.get_running_loop()
        resolved: list[tuple[socket.AddressFamily, tuple[object, ...]]] = []
        for target in self.targets:
            try:
                infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_DGRAM)
            except OSError as exc:
                raise ConfigError(f"Live Link target {target} does not resolve: {exc}") from exc
            if not infos:
                raise ConfigError(f"Live Link target {target} does not resolve")
            ipv4 = [info for info in infos if info[0] == socket.AF_INET]
            chosen = (ipv4 or infos)[0]
            resolved.append((chosen[0], tuple(chosen[4])))
        by_family: dict[socket.AddressFamily, asyncio.DatagramTransport] = {}
        try:
            for family, address in resolved:
                if family not in by_family:
                    transport, _ = await loop.create_datagram_endpoint(lambda: _SenderProtocol(self), family=family)
                    by_family[family] = transport
                    self._transports.append(transport)
                self._routes.append((by_family[family], address))
        except BaseException:
            self.close()
            raise

    def send(self, packet: bytes) -> None:
        """Send ``packet`` to every target; a no-op before :meth:`open` or after :meth:`close`."""
        for transport, address in self._routes:
            transport.sendto(packet, address)
            self._sent += 1

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        self._transports.clear()
        self._routes.clear()

    async def __aenter__(self) -> LiveLinkSender:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# ------------------------------------------------------------------------------------------ what is shown


class FaceComposer(Protocol):
    """Makes the face to send for the frame due at ``t``: a time on the pacer's clock (the same clock as
    utterance anchors, so a composer can schedule things with anchor-based times), non-decreasing per subject.

    ``mouth`` is the utterance's frame due now (68 values), or None between utterances. Returns 68 values.
    :class:`facecast.face.layers.AnimationLayer` is one (idle blinks, eyes, head, emotion, blending).
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
    """One utterance's frames, played on a subject from its anchor. Made by :meth:`SubjectChannel.play`.

    Push the utterance's frames in order as they are produced (frame 0 is due at the anchor) and call
    :meth:`finish` after the last: the subject then returns to its idle face. Until then, a frame that is
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
        """No more frames will come: after the last one, the subject goes back to its idle face."""
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
class SubjectStats:
    """Counters of one subject: packets sent, scheduled frames skipped because the pacer was late, and
    underruns (an utterance frame was due before it was pushed)."""

    sent: int
    skipped: int
    underruns: int


@dataclass(frozen=True, slots=True)
class TickReport:
    """One wake-up of the pacer: when it was due, when it woke, when its last packet was sent, how many."""

    due: float
    woke: float
    done: float
    packets: int


class SubjectChannel:
    """One subject's schedule and its utterances. Made by :meth:`LiveLinkPacer.add_subject`."""

    def __init__(self, subject: LiveLinkSubject, composer: FaceComposer) -> None:
        self.subject = subject
        self._composer = composer
        self._anchor = 0.0  # the grid: tick k is due at _anchor + k / FPS
        self._tick = 0
        self._attached = False
        self._current: UtterancePlayback | None = None
        self._pending: UtterancePlayback | None = None
        self._last_due: float | None = None
        self._last_mouth: Float32Array | None = None
        self._sent = self._skipped = self._underruns = 0

    @property
    def stats(self) -> SubjectStats:
        return SubjectStats(self._sent, self._skipped, self._underruns)

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
        return playback

    def clear(self) -> None:
        """Barge-in: drop the playing and waiting utterances; the idle face follows from the next frame."""
        for playback in (self._current, self._pending):
            if playback is not None:
                playback._cancelled = True
        self._current = self._pending = None
        self._last_mouth = None

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

    def _next_due(self) -> float:
        due = self._anchor + self._tick * _FRAME
        pending = self._pending
        if pending is not None and pending.anchor <= due:
            self._switch(pending)
            due = self._anchor + self._tick * _FRAME
        return due

    def _send(self, now: float, epoch: float, sink: DatagramSink) -> None:
        pending = self._pending
        if pending is not None and pending.anchor <= now:
            self._switch(pending)
        tick = self._tick
        current_tick = math.floor((now - self._anchor) * FPS + _EPS)
        if current_tick > tick:  # more than a frame behind: jump to the frame due now, never bunch
            self._skipped += current_tick - tick
            tick = current_tick
        due = self._anchor + tick * _FRAME
        mouth: Float32Array | None = None
        current = self._current
        if current is not None:
            mouth = current._frame(tick)
            if mouth is not None:
                self._last_mouth = mouth
            elif current._over(tick):
                self._current = None
                self._last_mouth = None
            else:
                self._underruns += 1
                mouth = self._last_mouth
        values = self._composer.frame(due, mouth)
        position = max(due - epoch, 0.0) * FPS  # negative only for an anchor before the pacer's start
        number = round(position)
        if abs(position - number) < 1e-6:
            sub_frame = 0.0
        else:
            number = math.floor(position)
            sub_frame = position - number
        sink.send(encode_frame(self.subject.device_id, self.subject.name, number % 2**31, values, sub_frame=sub_frame))
        self._last_due = due
        self._tick = tick + 1
        self._sent += 1


class LiveLinkPacer:
    """Sends each subject's frames at their due time from one loop: utterance frames, or the idle face.

    ``sink`` is usually a :class:`LiveLinkSender`; ``clock`` defaults to :class:`MonotonicClock`.
    ``on_tick``, if given, is called after every wake-up with a :class:`TickReport` (for jitter measurement;
    keep it cheap). Composers get each frame's due time on ``clock``; each packet's frame number and
    sub-frame encode the same time, counted from :attr:`epoch` (the first :meth:`run`), at 60 fps.
    """

    def __init__(
        self,
        sink: DatagramSink,
        *,
        clock: Clock | None = None,
        on_tick: Callable[[TickReport], None] | None = None,
    ) -> None:
        self.sink = sink
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self._on_tick = on_tick
        self._channels: dict[str, SubjectChannel] = {}
        self._epoch: float | None = None
        self._running = False
        self._idle_tick = 0

    @property
    def subjects(self) -> tuple[SubjectChannel, ...]:
        return tuple(self._channels.values())

    @property
    def epoch(self) -> float | None:
        """Clock time of face time 0 (frame number 0), set by the first :meth:`run`; None before."""
        return self._epoch

    def add_subject(self, subject: LiveLinkSubject, composer: FaceComposer | None = None) -> SubjectChannel:
        """Start streaming ``subject`` (its idle face until it plays an utterance).

        Raises ValueError if another subject already uses the name or the device id (Unreal would show only
        one of them).
        """
        for other in self._channels.values():
            if subject.name == other.subject.name or subject.device_id == other.subject.device_id:
                raise ValueError(f"subject {subject} clashes with {other.subject}: names and device ids must differ")
        channel = SubjectChannel(subject, composer if composer is not None else PassthroughComposer())
        self._channels[subject.name] = channel
        if self._epoch is not None:
            channel._attach(self._epoch, self.clock.now())
        return channel

    def remove_subject(self, name: str) -> None:
        """Stop streaming the subject called ``name`` (KeyError if there is none)."""
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
                if channels:
                    due = min(channel._next_due() for channel in channels)
                else:  # nothing to send: keep time on the pacer's own grid
                    self._idle_tick = max(self._idle_tick, math.ceil((clock.now() - epoch) * FPS - _EPS))
                    due = epoch + self._idle_tick * _FRAME
                    self._idle_tick += 1
                if until is not None and due > until:
                    return
                await clock.sleep_until(due)
                woke = clock.now()
                packets = 0
                for channel in list(self._channels.values()):
                    if channel._next_due() <= woke:
                        channel._send(woke, epoch, self.sink)
                        packets += 1
                if self._on_tick is not None:
                    self._on_tick(TickReport(due, woke, clock.now(), packets))
        finally:
            self._running = False
