"""Live Link targets, sender and pacer: schedule on a virtual clock, and real UDP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import math
import random
import socket
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from facecast.engine.livelink import (
    LiveLinkPacer,
    LiveLinkSender,
    LiveLinkSubject,
    LiveLinkTarget,
    MonotonicClock,
    PassthroughComposer,
    SubjectStats,
    TickReport,
    VirtualClock,
    parse_targets,
)
from facecast.engine.livelink_udp import LiveLinkEncoder
from facecast.face.arkit import INDEX
from facecast.face.layers import AnimationLayer, Emotion
from facecast.protocol.livelink import encode_frame
from facecast.types import FACE_WIDTH, FPS, FaceFrames, Float32Array

JAW = INDEX["JawOpen"]


def unreal_parse(packet: bytes) -> dict[str, Any] | None:
    """Read a packet the way Unreal's ARKit Live Link source does (None = dropped); independent of the codec."""
    if len(packet) < 270 or packet[0] != 6:
        return None
    pos = 1
    names = []
    for _ in range(2):
        (length,) = struct.unpack_from(">i", packet, pos)
        names.append(packet[pos + 4 : pos + 4 + length].decode("utf-8"))
        pos += 4 + length
    frame_number, sub_frame, numerator, denominator, count = struct.unpack_from(">ifiiB", packet, pos)
    pos += 17
    if count != 61 or len(packet) - pos != 61 * 4:
        return None
    values = struct.unpack_from(">61f", packet, pos)
    return {
        "device": names[0],
        "subject": names[1],
        "frame": frame_number,
        "sub": sub_frame,
        "rate": (numerator, denominator),
        "values": values,
    }


class RecordingSink:
    """Keeps every packet with the clock time it was sent at."""

    def __init__(self, clock: VirtualClock | MonotonicClock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, dict[str, Any]]] = []

    def send(self, packet: bytes) -> None:
        parsed = unreal_parse(packet)
        assert parsed is not None
        self.sent.append((self.clock.now(), parsed))

    def of(self, subject: str) -> list[tuple[float, dict[str, Any]]]:
        return [item for item in self.sent if item[1]["subject"] == subject]


class RecordingComposer:
    """Passes the mouth through (or a rest face), recording the face time and which utterance frame it got."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, int | None]] = []

    def frame(self, t: float, mouth: Float32Array | None) -> Float32Array:
        index = None if mouth is None else round(float(mouth[JAW]) * 1000)
        self.calls.append((t, index))
        out = np.zeros(FACE_WIDTH, np.float32) if mouth is None else mouth.copy()
        out[INDEX["HeadYaw"]] = t / 1000  # lets a test see which face time a packet carries
        return out


def numbered_frames(count: int, start: int = 0) -> FaceFrames:
    """Frames whose JawOpen encodes their own utterance index (index / 1000)."""
    values = np.zeros((count, FACE_WIDTH), np.float32)
    values[:, JAW] = np.arange(start, start + count) / 1000
    return FaceFrames(start, values)


class JitteryClock(VirtualClock):
    """A virtual clock whose sleeps overshoot by a random 0-4 ms, plus chosen stalls at given deadlines."""

    def __init__(self, seed: int = 1, stalls: dict[int, float] | None = None) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.stalls = stalls or {}
        self.sleeps = 0

    async def sleep_until(self, deadline: float) -> None:
        await super().sleep_until(deadline)
        self.advance(self.rng.uniform(0.0, 0.004) + self.stalls.get(self.sleeps, 0.0))
        self.sleeps += 1


# ------------------------------------------------------------------------------------------------ targets


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:11111", "127.0.0.1", 11111),
        ("unreal-box:9000", "unreal-box", 9000),
        ("localhost", "localhost", 11111),
        ("[::1]:9001", "::1", 9001),
        ("[fe80::1]", "fe80::1", 11111),
        ("::1", "::1", 11111),
        (" 10.0.0.2:1 ", "10.0.0.2", 1),
    ],
)
def test_target_parse(text: str, host: str, port: int) -> None:
    target = LiveLinkTarget.parse(text)
    assert (target.host, target.port) == (host, port)
    assert LiveLinkTarget.parse(str(target)) == target


@pytest.mark.parametrize("text", ["", ":11111", "host:", "host:abc", "host:0", "host:65536", "[::1", "[::1]x"])
def test_target_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        LiveLinkTarget.parse(text)


def test_parse_targets_off_and_duplicates() -> None:
    assert parse_targets(["a:1", "b:2", "a:1"]) == (LiveLinkTarget("a", 1), LiveLinkTarget("b", 2))
    assert parse_targets(["a:1", "OFF"]) == ()


def test_subject_device_id_defaults_per_subject_and_names_are_validated() -> None:
    assert LiveLinkSubject("Ana").device_id != LiveLinkSubject("Bo").device_id
    assert LiveLinkSubject("Ana", "phone").device_id == "phone"
    with pytest.raises(ValueError):
        LiveLinkSubject("")
    pacer = LiveLinkPacer(RecordingSink(VirtualClock()), clock=VirtualClock())
    pacer.add_subject(LiveLinkSubject("Ana", "dev"))
    with pytest.raises(ValueError, match="device ids must differ"):
        pacer.add_subject(LiveLinkSubject("Bo", "dev"))  # Unreal keeps one subject per device id


# ---------------------------------------------------------------------------------- schedule (virtual)


async def test_absolute_schedule_has_no_drift_over_10000_frames() -> None:
    clock = JitteryClock()
    sink = RecordingSink(clock)
    pacer = LiveLinkPacer(sink, clock=clock)
    pacer.add_subject(LiveLinkSubject("face"))
    await pacer.run(until=9999 / FPS)
    assert len(sink.sent) == 10_000
    for i, (sent_at, packet) in enumerate(sink.sent):
        # Every sleep overshoots by up to 4 ms, yet frame i still leaves within 4 ms of i / 60: nothing adds up.
        assert 0.0 <= sent_at - i / FPS <= 0.004 + 1e-9
        assert (packet["frame"], packet["sub"]) == (i, 0.0)
        assert packet["rate"] == (60, 1)


async def test_late_frames_are_skipped_not_bunched() -> None:
    clock = JitteryClock(stalls={50: 0.1})  # the 51st sleep oversleeps by a further 100 ms
    sink = RecordingSink(clock)
    composer = RecordingComposer()
    pacer = LiveLinkPacer(sink, clock=clock)
    channel = pacer.add_subject(LiveLinkSubject("face"), composer)
    playback = channel.play(0.0)
    playback.push(numbered_frames(200))
    playback.finish()
    await pacer.run(until=119 / FPS)
    frames = [packet["frame"] for _, packet in sink.sent]
    skipped = channel.stats.skipped
    assert skipped in (6, 7)  # 100-104 ms late: frames 50..55(56) were due while stalled
    assert frames == list(range(50)) + list(range(50 + skipped, 120))
    # The utterance frame shown after the stall is the one due then (the audio kept playing)...
    assert [round(packet["values"][JAW] * 1000) for _, packet in sink.sent] == frames
    # ...computed again when due: frame 50 had been computed ahead, and was discarded as stale.
    assert [index for _, index in composer.calls] == frames[:50] + [50] + frames[50:]
    assert channel.stats.discarded == 1
    # ...and packets never bunch: consecutive sends stay about one frame apart.
    times = [sent_at for sent_at, _ in sink.sent]
    gaps = np.diff(times)
    assert gaps.min() > 1 / FPS - 0.0041
    assert channel.stats.sent == len(frames)


async def test_idle_face_streams_between_utterances_and_utterance_frames_hit_their_anchor() -> None:
    clock = VirtualClock()
    sink = RecordingSink(clock)
    composer = RecordingComposer()
    pacer = LiveLinkPacer(sink, clock=clock)
    channel = pacer.add_subject(LiveLinkSubject("face"), composer)
    anchor = 1.005  # off the pacer's grid: the utterance brings its own
    playback = channel.play(anchor)
    playback.push(numbered_frames(10))
    playback.push(numbered_frames(20, start=10))
    playback.finish()
    await pacer.run(until=3.0)
    assert not channel.speaking
    speech = [(t, i) for t, i in composer.calls if i is not None]
    assert [i for _, i in speech] == list(range(30))
    for t, i in speech:
        assert t == pytest.approx(anchor + i / FPS, abs=1e-9)
    idle_before = [t for t, i in composer.calls if i is None and t < anchor]
    idle_after = [t for t, i in composer.calls if i is None and t > anchor]
    assert len(idle_before) == 61  # 0 .. 60/60 on the pacer's grid, then the utterance takes over
    assert idle_after and idle_after[0] == pytest.approx(anchor + 30 / FPS)
    assert idle_after[-1] <= 3.0
    # Never a gap: the character never freezes, and the idle frames continue on the utterance's grid.
    gaps = np.diff([t for t, _ in composer.calls])
    assert gaps.max() <= 1 / FPS + 1e-9
    assert gaps.min() > 0
    # Frame time on the wire is the face time: frame + sub-frame = t * 60 (sub-frames for the off-grid anchor).
    for _, packet in sink.sent:
        wire_t = (packet["frame"] + packet["sub"]) / FPS
        assert wire_t == pytest.approx(packet["values"][INDEX["HeadYaw"]] * 1000, abs=1e-3)


async def test_underrun_holds_the_last_frame_and_keeps_sync() -> None:
    clock = VirtualClock()
    composer = RecordingComposer()
    pacer = LiveLinkPacer(RecordingSink(clock), clock=clock)
    channel = pacer.add_subject(LiveLinkSubject("face"), composer)
    playback = channel.play(0.0)
    playback.push(numbered_frames(10))
    await pacer.run(until=14 / FPS)  # frames 10..14 are due but not produced yet
    assert [i for _, i in composer.calls] == list(range(10)) + [9] * 5
    assert channel.stats.underruns == 5
    playback.push(numbered_frames(40, start=10))
    playback.finish()
    await pacer.run(until=20 / FPS)
    assert [i for _, i in composer.calls[15:]] == list(range(15, 21))  # back in sync with the audio clock


async def test_clear_returns_to_idle_at_once_and_ignores_late_pushes() -> None:
    clock = VirtualClock()
    composer = RecordingComposer()
    pacer = LiveLinkPacer(RecordingSink(clock), clock=clock)
    channel = pacer.add_subject(LiveLinkSubject("face"), composer)
    playback = channel.play(0.0)
    playback.push(numbered_frames(100))
    await pacer.run(until=9 / FPS)
    channel.clear()
    playback.push(numbered_frames(10, start=100))  # a producer that lost the race: ignored
    playback.push(numbered_frames(10, start=110))
    assert playback.cancelled and not channel.speaking
    await pacer.run(until=19 / FPS)
    assert [i for _, i in composer.calls] == list(range(10)) + [None] * 10


async def test_anchor_in_the_past_skips_what_was_already_heard() -> None:
    clock = VirtualClock()
    composer = RecordingComposer()
    pacer = LiveLinkPacer(RecordingSink(clock), clock=clock)
    channel = pacer.add_subject(LiveLinkSubject("face"), composer)
    await pacer.run(until=2.0)
    playback = channel.play(clock.now() - 0.5)  # the playback-start ack arrived half a second late
    playback.push(numbered_frames(100))
    playback.finish()
    await pacer.run(until=2.0 + 10 / FPS)
    shown = [i for _, i in composer.calls if i is not None]
    assert shown[0] == 31  # 0.5 s = 30 frames already heard, the next one is 31
    assert shown == list(range(31, 31 + len(shown)))
    assert channel.stats.skipped == 31


async def test_a_new_utterance_takes_over_at_its_anchor() -> None:
    clock = VirtualClock()
    composer = RecordingComposer()
    pacer = LiveLinkPacer(RecordingSink(clock), clock=clock)
    channel = pacer.add_subject(LiveLinkSubject("face"), composer)
    first = channel.play(0.0)
    first.push(numbered_frames(100))
    await pacer.run(until=5 / FPS)
    second = channel.play(10 / FPS)  # while the first plays: it takes over at its anchor
    second.push(FaceFrames(0, numbered_frames(5).values + 0.5))  # JawOpen 0.5xx: indices 500..504
    second.finish()
    await pacer.run(until=20 / FPS)
    shown = [i for _, i in composer.calls]
    assert shown[:10] == list(range(10))
    assert shown[10:15] == [500, 501, 502, 503, 504]
    assert shown[15:] == [None] * 6
    assert first.cancelled


async def test_a_second_play_before_the_first_anchor_replaces_it() -> None:
    clock = VirtualClock()
    composer = RecordingComposer()
    pacer = LiveLinkPacer(RecordingSink(clock), clock=clock)
    channel = pacer.add_subject(LiveLinkSubject("face"), composer)
    first = channel.play(0.1)
    first.push(numbered_frames(10))
    second = channel.play(0.2)
    second.push(numbered_frames(3))
    second.finish()
    await pacer.run(until=0.5)
    assert first.cancelled
    assert [i for _, i in composer.calls if i is not None] == [0, 1, 2]
    assert [t for t, i in composer.calls if i == 0] == [pytest.approx(0.2)]


def test_push_validation() -> None:
    channel = LiveLinkPacer(RecordingSink(VirtualClock())).add_subject(LiveLinkSubject("face"))
    playback = channel.play(0.0)
    playback.push(numbered_frames(5))
    with pytest.raises(ValueError, match="contiguous"):
        playback.push(numbered_frames(5, start=6))
    with pytest.raises(ValueError, match="68"):
        playback.push(FaceFrames(5, np.zeros((3, 61), np.float32)))
    playback.finish()
    with pytest.raises(RuntimeError):
        playback.push(numbered_frames(5, start=5))


async def test_one_loop_drives_many_subjects() -> None:
    clock = VirtualClock()
    sink = RecordingSink(clock)
    ticks: list[TickReport] = []
    pacer = LiveLinkPacer(sink, clock=clock, on_tick=ticks.append)
    names = [f"face-{k}" for k in range(100)]
    for name in names:
        pacer.add_subject(LiveLinkSubject(name))
    await pacer.run(until=59 / FPS)
    assert len(ticks) == 60 and all(tick.packets == 100 for tick in ticks)  # one wake-up per frame
    for name in names:
        assert [packet["frame"] for _, packet in sink.of(name)] == list(range(60))
    assert len({packet["device"] for _, packet in sink.sent}) == 100


async def test_subjects_on_different_anchors_each_keep_their_own_schedule() -> None:
    clock = VirtualClock()
    sink = RecordingSink(clock)
    pacer = LiveLinkPacer(sink, clock=clock)
    a = pacer.add_subject(LiveLinkSubject("a"), RecordingComposer())
    pacer.add_subject(LiveLinkSubject("b"), RecordingComposer())
    playback = a.play(0.5 + 0.004)
    playback.push(numbered_frames(60))
    playback.finish()
    await pacer.run(until=2.0)
    b_times = [t for t, _ in sink.of("b")]
    assert b_times == pytest.approx([k / FPS for k in range(121)])  # b stays on the pacer's grid
    speech = [(t, round(p["values"][JAW] * 1000)) for t, p in sink.of("a") if p["values"][JAW] > 0]
    assert [i for _, i in speech] == list(range(1, 60))
    for t, i in speech:
        assert t == pytest.approx(0.504 + i / FPS)  # a follows its utterance's anchor
    a_after = [t for t, _ in sink.of("a") if t > 0.504 + 59 / FPS]
    assert np.diff(a_after) == pytest.approx(np.full(len(a_after) - 1, 1 / FPS))


# ------------------------------------------------------------------------------- compute ahead, send on time


class HookClock(VirtualClock):
    """A virtual clock that runs ``hooks[n]`` during its n-th sleep: after the pacer computed its packets ahead,
    before they are due. A hook may advance the clock."""

    def __init__(self, hooks: dict[int, Callable[[], None]]) -> None:
        super().__init__()
        self.hooks = hooks
        self.sleeps = 0

    async def sleep_until(self, deadline: float) -> None:
        hook = self.hooks.get(self.sleeps)
        self.sleeps += 1
        if hook is not None:
            hook()
        await super().sleep_until(deadline)


class TimedComposer(RecordingComposer):
    """Records when (on the clock) each frame is computed, and can make computing take clock time."""

    def __init__(self, clock: VirtualClock, cost: float = 0.0) -> None:
        super().__init__()
        self.clock = clock
        self.cost = cost
        self.computed_at: list[float] = []

    def frame(self, t: float, mouth: Float32Array | None) -> Float32Array:
        self.computed_at.append(self.clock.now())
        self.clock.advance(self.cost)
        return super().frame(t, mouth)


def jaws(sink: RecordingSink, subject: str = "face") -> list[int | None]:
    """Which utterance frame each packet showed (None: the idle face), from the packets themselves."""
    return [round(p["values"][JAW] * 1000) if p["values"][JAW] > 0 else None for _, p in sink.of(subject)]


async def test_frames_are_computed_a_frame_ahead_and_only_sent_when_due() -> None:
    clock = VirtualClock()
    sink = RecordingSink(clock)
    ticks: list[TickReport] = []
    pacer = LiveLinkPacer(sink, clock=clock, on_tick=ticks.append)
    composers = [TimedComposer(clock) for _ in range(3)]
    channels = [pacer.add_subject(LiveLinkSubject(f"face-{k}"), c) for k, c in enumerate(composers)]
    playback = channels[0].play(0.0)
    playback.push(numbered_frames(40))
    playback.finish()
    await pacer.run(until=59 / FPS)
    assert all(tick.computed == 0 and tick.packets == 3 for tick in ticks)  # every wake-up only sent
    for composer in composers:
        # Frame k is computed right after frame k - 1 was sent (frame 0 before the first wake-up)...
        assert [t for t, _ in composer.calls] == pytest.approx([k / FPS for k in range(60)])
        assert composer.computed_at == pytest.approx([0.0] + [k / FPS for k in range(59)])
    # ...and sent at its due time, with the utterance frame due then.
    assert [t for t, _ in sink.of("face-0")] == pytest.approx([k / FPS for k in range(60)])
    assert jaws(sink, "face-0") == [None, *range(1, 40), *[None] * 20]  # frame 0 has JawOpen 0
    assert all(channel.stats.discarded == 0 for channel in channels)
    assert not channels[0].speaking


async def test_an_utterance_starting_before_a_frame_computed_ahead_replaces_it() -> None:
    anchor = 30 / FPS - 0.004  # the playback ack came in after the idle frame 30 was computed
    holder: dict[str, Any] = {}

    def ack() -> None:
        holder["playback"] = playback = channel.play(anchor)
        playback.push(numbered_frames(10))
        playback.finish()

    clock = HookClock({30: ack})
    sink = RecordingSink(clock)
    composer = TimedComposer(clock)
    pacer = LiveLinkPacer(sink, clock=clock)
    channel = pacer.add_subject(LiveLinkSubject("face"), composer)
    await pacer.run(until=50 / FPS)
    assert channel.stats.discarded == 1
    # The idle frame computed ahead for 30/60 was never sent: the utterance's frame 0 took its place, at the
    # same wake-up, and the utterance's own grid followed.
    sent = [t for t, _ in sink.of("face")]
    assert sent[:30] == pytest.approx([k / FPS for k in range(30)])
    assert sent[30:40] == pytest.approx([30 / FPS] + [anchor + k / FPS for k in range(1, 10)])
    assert [i for _, i in composer.calls][30:41] == [None, *range(10)]  # computed, discarded, then frame 0
    assert [t for t, _ in composer.calls][31] == pytest.approx(anchor)
    assert jaws(sink)[30:41] == [None, *range(1, 10), None]
    assert [p["frame"] for _, p in sink.of("face")][29:32] == [29, 29, 30]  # 29 + 0.76, then 30 + 0.76
    assert channel.stats.skipped == 0


async def test_clear_discards_an_utterance_frame_computed_ahead_but_not_an_idle_one() -> None:
    clock = HookClock({})
    sink = RecordingSink(clock)
    pacer = LiveLinkPacer(sink, clock=clock)
    channel = pacer.add_subject(LiveLinkSubject("face"), RecordingComposer())
    clock.hooks = {10: channel.clear, 20: channel.clear}  # barge-in, then a clear with nothing to clear
    playback = channel.play(0.0)
    playback.push(numbered_frames(100))
    await pacer.run(until=29 / FPS)
    assert jaws(sink) == [None, *range(1, 10), *[None] * 20]  # the idle face from the frame after the clear
    assert channel.stats.discarded == 1


async def test_an_utterance_frame_not_pushed_in_time_to_compute_ahead_uses_the_newest_data() -> None:
    holder: dict[str, Any] = {}
    clock = HookClock({12: lambda: holder["playback"].push(numbered_frames(20, start=10))})
    sink = RecordingSink(clock)
    ticks: list[TickReport] = []
    pacer = LiveLinkPacer(sink, clock=clock, on_tick=ticks.append)
    channel = pacer.add_subject(LiveLinkSubject("face"), RecordingComposer())
    holder["playback"] = playback = channel.play(0.0)
    playback.push(numbered_frames(10))
    await pacer.run(until=20 / FPS)
    # Frames 10-12 were late (held frame 9); frame 12 arrived during the wait for its due time: it is shown.
    assert jaws(sink) == [None, *range(1, 10), 9, 9, *range(12, 21)]
    assert channel.stats.underruns == 2
    assert [tick.computed for tick in ticks][9:14] == [0, 1, 1, 1, 0]  # computed when due, then ahead again


async def test_computing_ahead_gives_way_when_the_next_frame_is_near_and_nothing_is_lost() -> None:
    clock = VirtualClock()
    sink = RecordingSink(clock)
    ticks: list[TickReport] = []
    pacer = LiveLinkPacer(sink, clock=clock, on_tick=ticks.append)
    channels = [pacer.add_subject(LiveLinkSubject(f"face-{k}"), TimedComposer(clock, 0.0015)) for k in range(8)]
    await pacer.run(until=59 / FPS)  # 8 x 1.5 ms = 12 ms of computing per 16.7 ms frame
    assert ticks[0].computed > 0  # nothing could be computed ahead of the first frame, due at once...
    assert all(tick.computed == 0 for tick in ticks[10:])  # ...but the pacer soon computes everything ahead
    assert all(tick.woke - tick.due < 1 / FPS for tick in ticks)
    for k, channel in enumerate(channels):
        assert channel.stats == SubjectStats(60, 0, 0, 0)
        assert [p["frame"] for _, p in sink.of(f"face-{k}")] == list(range(60))


async def test_the_animation_layer_takes_over_a_discarded_frame_smoothly() -> None:
    anchor = 60 / FPS - 0.009
    holder: dict[str, Any] = {}

    def ack() -> None:
        speech = np.zeros((60, FACE_WIDTH), np.float32)
        speech[:, JAW] = 0.5
        holder["playback"] = playback = channel.play(anchor)
        playback.push(FaceFrames(0, speech))
        playback.finish()

    clock = HookClock({60: ack})
    sink = RecordingSink(clock)
    pacer = LiveLinkPacer(sink, clock=clock)
    channel = pacer.add_subject(LiveLinkSubject("face"), AnimationLayer(seed=4))
    await pacer.run(until=3.0)
    assert channel.stats.discarded == 1
    values = np.array([p["values"] for _, p in sink.sent])
    assert np.isfinite(values).all()
    assert np.abs(np.diff(values[:, JAW])).max() < 0.12  # blended in and out, no pop
    head = values[:, INDEX["HeadYaw"]]
    assert np.abs(np.diff(head)).max() < 0.5 / 180  # the head never jumps, across the discard either


@given(
    values=st.lists(
        st.floats(width=32) | st.sampled_from([math.nan, math.inf, -math.inf, 3e38, -3e38]),
        min_size=61,
        max_size=61,
    ),
    wide=st.booleans(),
    number=st.integers(0, 2**31 - 1),
    sub_frame=st.floats(0.0, 1.0, exclude_max=True),
    double=st.booleans(),
)
def test_the_pacers_encoder_matches_the_codec_byte_for_byte(
    values: list[float], wide: bool, number: int, sub_frame: float, double: bool
) -> None:
    array = np.array(values + [0.5] * 7 if wide else values, np.float64 if double else np.float32)
    subject = LiveLinkSubject("Gesicht-Ö", "dev:é")
    expected = encode_frame(subject.device_id, subject.name, number, array, sub_frame=sub_frame)
    assert LiveLinkEncoder(subject).encode(number, sub_frame, array) == expected


# --------------------------------------------------------------------------------------------- real UDP


class Receiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.packets.append(data)


async def _receiver(host: str, family: int = socket.AF_INET) -> tuple[asyncio.DatagramTransport, Receiver, int]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Receiver, local_addr=(host, 0), family=family)
    port = transport.get_extra_info("sockname")[1]
    return transport, protocol, port


async def _drain(receivers: list[Receiver], expected: int) -> None:
    """Let the event loop read what is already in the sockets (bounded wait, not a timing assertion)."""
    for _ in range(200):
        if all(len(r.packets) >= expected for r in receivers):
            return
        await asyncio.sleep(0.005)


async def test_real_udp_to_two_receivers_with_non_ascii_subjects() -> None:
    first, got1, port1 = await _receiver("127.0.0.1")
    second, got2, port2 = await _receiver("127.0.0.1")
    try:
        targets = parse_targets([f"127.0.0.1:{port1}", f"127.0.0.1:{port2}"])
        async with LiveLinkSender(targets) as sender:
            pacer = LiveLinkPacer(sender, clock=MonotonicClock())
            other = pacer.add_subject(LiveLinkSubject("Gesicht-Ö"))
            channel = pacer.add_subject(LiveLinkSubject("顔"))
            playback = channel.play(pacer.clock.now() + 0.05)
            playback.push(numbered_frames(6))
            playback.finish()
            await pacer.run(until=pacer.clock.now() + 0.25)
            sent = other.stats.sent + channel.stats.sent
            await _drain([got1, got2], sent)
        assert sender.sent == 2 * sent and sender.errors == 0
    finally:
        first.close()
        second.close()
    assert len(got1.packets) == sent and got1.packets == got2.packets  # every datagram, to both targets
    parsed = [unreal_parse(packet) for packet in got1.packets]
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for p in parsed:
        assert p is not None  # Unreal's rules accept every packet, non-ASCII names included
        by_subject.setdefault(p["subject"], []).append(p)
    assert set(by_subject) == {"Gesicht-Ö", "顔"}
    assert len(by_subject["顔"]) == channel.stats.sent
    for subject, packets in by_subject.items():
        assert {p["device"] for p in packets} == {f"facecast:{subject}"}
        times = [p["frame"] + p["sub"] for p in packets]
        assert times == sorted(times) and len(set(times)) == len(times)
    # Utterance frames 1..5 (frame 0 has JawOpen 0) arrive in order, once each; a heavily loaded machine
    # may make the pacer skip some, and then it says so.
    jaws = [round(p["values"][JAW] * 1000) for p in by_subject["顔"] if p["values"][JAW] > 0]
    assert jaws == sorted(set(jaws)) and set(jaws) <= {1, 2, 3, 4, 5}
    assert len(jaws) >= 5 - channel.stats.skipped


async def test_real_udp_over_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        transport, got, port = await _receiver("::1", socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback")
    try:
        async with LiveLinkSender([LiveLinkTarget.parse(f"[::1]:{port}")]) as sender:
            sender.send(b"x" * 300)
            await asyncio.sleep(0.05)
    finally:
        transport.close()
    assert got.packets == [b"x" * 300]


async def test_sending_to_nobody_does_not_raise() -> None:
    transport, _, port = await _receiver("127.0.0.1")
    transport.close()  # the port is now closed
    async with LiveLinkSender([LiveLinkTarget("127.0.0.1", port)]) as sender:
        for _ in range(3):
            sender.send(b"y" * 300)
            await asyncio.sleep(0.005)
    sender.send(b"after close")  # a no-op


async def test_monotonic_clock_never_returns_before_the_deadline() -> None:
    clock = MonotonicClock()
    for k in range(5):
        deadline = clock.now() + k * 0.003
        await clock.sleep_until(deadline)
        assert clock.now() >= deadline


def test_passthrough_rest_face_is_neutral() -> None:
    rest = PassthroughComposer().frame(0.0, None)
    assert rest[INDEX["Neutral"]] == 1.0 and math.isclose(float(rest.sum()), 1.0)


async def test_the_animation_layer_drives_the_idle_face_and_the_utterance() -> None:
    clock = VirtualClock()
    sink = RecordingSink(clock)
    pacer = LiveLinkPacer(sink, clock=clock)
    channel = pacer.add_subject(LiveLinkSubject("face"), AnimationLayer(seed=1))
    playback = channel.play(1.0)
    speech = np.zeros((60, FACE_WIDTH), np.float32)
    speech[:, JAW] = 0.5
    playback.push(FaceFrames(0, speech))
    playback.finish()
    await pacer.run(until=3.0)
    jaw = np.array([packet["values"][JAW] for _, packet in sink.sent])
    assert len(jaw) == 181  # 60 fps throughout, idle included
    assert jaw[:60].max() == 0.0 and jaw[75:120].min() == pytest.approx(0.5, abs=1e-6)
    assert np.abs(np.diff(jaw)).max() < 0.12  # blended in and out, no pop
    head = np.array([packet["values"][INDEX["HeadYaw"]] for _, packet in sink.sent])
    assert (np.diff(head) != 0).all()  # alive between utterances too


async def test_composers_see_the_pacer_clock_and_the_wire_counts_from_the_epoch() -> None:
    clock = VirtualClock(start=1000.0)
    sink = RecordingSink(clock)
    pacer = LiveLinkPacer(sink, clock=clock)
    layer = AnimationLayer(seed=2)
    composer = RecordingComposer()
    channel = pacer.add_subject(LiveLinkSubject("face"), layer)
    pacer.add_subject(LiveLinkSubject("probe"), composer)
    anchor = 1001.0
    playback = channel.play(anchor)
    playback.push(numbered_frames(120))
    playback.finish()
    layer.set_emotion(Emotion.HAPPY, at=anchor + 0.5)  # scheduled with an anchor-based time, as a sink does
    await pacer.run(until=1003.0)
    assert pacer.epoch == 1000.0
    assert composer.calls[0][0] == 1000.0 and composer.calls[-1][0] == pytest.approx(1003.0)
    face = [(t, packet) for t, packet in sink.of("face")]
    assert [p["frame"] for _, p in face[:3]] == [0, 1, 2]  # frame numbers count from the epoch
    assert len(face) == 181
    # The Happy channel is not on the wire (61 curves), but the smile it drives is.
    smile = {round(t, 4): p["values"][INDEX["MouthSmileLeft"]] for t, p in face}
    assert max(v for t, v in smile.items() if t < anchor + 0.5) == 0.0
    assert smile[round(anchor + 1.5, 4)] > 0.3
