"""One face timeline per session: the socket, Live Link and the recorder show the same face, and sessions do
not blink in lockstep. Plus the playback gate's ordering rules, sans-I/O (no sleeps, no event loop)."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
from tests.engine.test_session import Recorder
from tests.fakes import FakeFace, FakeLLM, FakeSTT, FakeTTS, SinkOutput

from facecast.engine.ackgate import Abandon, AckGate, Refuse, Show, Started
from facecast.engine.outputs import LiveLinkOutput
from facecast.engine.session import EngineSession, SessionConfig
from facecast.engine.timeline import FaceTimeline
from facecast.face.arkit import INDEX
from facecast.face.layers import Emotion
from facecast.protocol import engine as proto
from facecast.protocol.livelink import CURVE_COUNT, decode_frame
from facecast.services import Services
from facecast.types import FaceFrames


def services() -> Services:
    return Services(FakeSTT(), FakeLLM(), FakeTTS(rate=16000), FakeFace())


class _CaptureSender:
    """Stands in for LiveLinkSender: keeps every packet."""

    targets = ()

    def __init__(self) -> None:
        self.packets: list[bytes] = []

    async def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def send(self, packet: bytes) -> None:
        self.packets.append(packet)


class _Anchors:
    """A sink that notes where each utterance's playback started."""

    def __init__(self) -> None:
        self.anchors: dict[int, float] = {}

    def on_event(self, event: object) -> None:
        return None

    def on_playback_started(self, utterance: int, monotonic_time: float) -> None:
        self.anchors[utterance] = monotonic_time

    def on_clear(self, utterance: int) -> None:
        return None


async def test_socket_and_live_link_show_the_same_face() -> None:
    """Blinks, gaze and head of an utterance agree between the WebSocket and Live Link (the server's
    ``LiveLinkOutput`` attached to the session, as ``facecast run`` does)."""
    sender = _CaptureSender()
    anchors = _Anchors()
    async with LiveLinkOutput(sender, subject="Timeline") as output:  # type: ignore[arg-type]
        rec = Recorder()
        session = EngineSession(services(), rec, SessionConfig(lead=0.0), outputs=[output, SinkOutput(lambda: anchors)])
        await session.handle_text(json.dumps({"type": "hello", "workflow": "say"}))
        await session.handle_text(json.dumps({"type": "text", "text": "Hello there, friend."}))
        await rec.wait_audio()
        start = await rec.wait_for("utterance_start")
        await session.handle_text(json.dumps({"type": "playback_started", "utterance": start["utterance"]}))
        end = await rec.wait_for("utterance_end")
        anchor = anchors.anchors[start["utterance"]]
        await asyncio.sleep(max(0.0, anchor + end["frames"] / 60 + 0.1 - time.monotonic()))  # Live Link plays it
        epoch = output.pacer.epoch
        await session.close()
    assert epoch is not None
    socket = np.concatenate([m.values for m in rec.sent if isinstance(m, proto.FacePacket)])
    assert len(socket) == end["frames"]
    compared = exact = 0
    for data in sender.packets:
        frame = decode_frame(data)
        offset = (epoch + (frame.frame_number + frame.sub_frame) / 60 - anchor) * 60
        index = round(offset)
        if not 0 <= index < len(socket) or abs(offset - index) > 1e-3:
            continue  # the idle face before or after the utterance, on the pacer's own grid
        curves = frame.values[:CURVE_COUNT]
        compared += 1
        if np.allclose(curves, socket[index, :CURVE_COUNT], atol=1e-6):
            exact += 1
        else:  # an underrun (the frame was not there yet) holds an earlier frame; never another face
            assert any(np.allclose(curves, socket[k, :CURVE_COUNT], atol=1e-6) for k in range(index)), index
    assert compared > 0 and exact >= compared // 2


async def _eyes_of_one_session(config: SessionConfig) -> np.ndarray:
    rec = Recorder()
    session = EngineSession(services(), rec, config, clock=lambda: 100.0)  # both sessions on the same clock
    await session.handle_text(json.dumps({"type": "hello", "workflow": "say", "acks": False}))
    await session.handle_text(json.dumps({"type": "text", "text": "A long enough line to see the eyes move."}))
    await rec.wait_for("utterance_end")
    await session.close()
    values = np.concatenate([m.values for m in rec.sent if isinstance(m, proto.FacePacket)])
    return values[:, : INDEX["EyeWideRight"] + 1]


async def test_two_sessions_do_not_blink_in_lockstep() -> None:
    first = await _eyes_of_one_session(SessionConfig(lead=0.0))
    second = await _eyes_of_one_session(SessionConfig(lead=0.0))
    assert first.shape == second.shape
    assert not np.allclose(first, second)
    # ...and a fixed seed still reproduces a session exactly
    again = [await _eyes_of_one_session(SessionConfig(lead=0.0, seed=5)) for _ in range(2)]
    np.testing.assert_array_equal(again[0], again[1])


# -- the playback gate, sans-I/O ------------------------------------------------------------------


def _frames(start: int, count: int) -> FaceFrames:
    values = np.zeros((count, 68), np.float32)
    values[:, INDEX["JawOpen"]] = 0.4
    return FaceFrames(start, values)


def test_gate_holds_the_face_until_the_ack_then_releases_in_order() -> None:
    gate = AckGate(1, 16000, FaceTimeline(1), acks=True, ack_timeout=2.0)
    assert gate.face(_frames(0, 3)) == [] and gate.face(_frames(3, 2)) == []
    assert gate.audio_sent(10.0) == [] and gate.deadline == 12.0
    commands = gate.ack(10.5)
    assert commands[0] == Started(1, 10.5)
    assert [c.frames.start for c in commands[1:] if isinstance(c, Show)] == [0, 3]
    [later] = gate.face(_frames(5, 1))
    assert isinstance(later, Show) and later.frames.start == 5
    assert gate.ack(10.6) == [] and gate.deadline is None  # a repeated ack changes nothing


def test_gate_refuses_an_ack_before_any_audio() -> None:
    gate = AckGate(1, 16000, FaceTimeline(1), acks=True, ack_timeout=2.0)
    gate.face(_frames(0, 2))
    [refused] = gate.ack(1.0)
    assert isinstance(refused, Refuse) and refused.code == "out_of_order"
    gate.audio_sent(2.0)
    assert isinstance(gate.ack(2.1)[0], Started)


def test_gate_abandons_without_ack_and_shows_nothing_after() -> None:
    gate = AckGate(4, 16000, FaceTimeline(1), acks=True, ack_timeout=2.0)
    gate.face(_frames(0, 2))
    gate.audio_sent(5.0)
    assert gate.expire(6.9) == []
    assert gate.expire(7.0) == [Abandon(4)]
    assert gate.ack(7.1) == [] and gate.face(_frames(2, 1)) == [] and gate.expire(9.0) == []


def test_gate_without_acks_starts_at_the_first_audio() -> None:
    gate = AckGate(2, 16000, FaceTimeline(1), acks=False, ack_timeout=2.0)
    assert gate.face(_frames(0, 1)) == []
    commands = gate.audio_sent(3.0)
    assert commands[0] == Started(2, 3.0) and isinstance(commands[1], Show)
    assert gate.deadline is None and gate.expire(100.0) == []


def test_gate_schedules_emotions_on_the_playback_clock_even_after_the_ack() -> None:
    timeline = FaceTimeline(1)
    gate = AckGate(1, 16000, timeline, acks=True, ack_timeout=2.0)
    gate.audio_sent(0.0)
    gate.ack(0.0)
    gate.emotion(16000, Emotion.HAPPY)  # from 1 s into the utterance
    shown = [c for c in gate.face(_frames(0, 120)) if isinstance(c, Show)]
    happy = shown[0].frames.values[:, INDEX["Happy"]]
    assert happy[50] < 0.01 and happy[-1] > 0.5


def test_rewind_continues_the_idle_face_from_now_not_from_the_future() -> None:
    timeline = FaceTimeline(3)
    timeline.shown(0.0, _frames(0, 30).values)
    timeline.shown(0.5, _frames(30, 30).values)  # layered ahead of the clock
    timeline.shown(1.0, _frames(60, 30).values)
    timeline.rewind(0.6)  # cleared at 0.6 s: the blocks from 1.0 s never showed
    reference = FaceTimeline(3)
    reference.shown(0.0, _frames(0, 30).values)
    reference.shown(0.5, _frames(30, 30).values)
    np.testing.assert_array_equal(timeline.frame(0.7, None), reference.frame(0.7, None))


# -- the pacer without subjects ------------------------------------------------------------------


async def test_a_pacer_without_subjects_sleeps_until_one_is_added() -> None:
    from facecast.engine.livelink import LiveLinkPacer, LiveLinkSubject, VirtualClock

    clock = VirtualClock(10.0)
    ticks: list[object] = []
    sink = _CaptureSender()
    pacer = LiveLinkPacer(sink, clock=clock, on_tick=ticks.append)
    runner = asyncio.create_task(pacer.run())
    try:
        for _ in range(200):  # a spinning pacer would wake (and move the virtual clock) on every turn
            await asyncio.sleep(0)
        assert ticks == [] and clock.now() == 10.0
        pacer.add_subject(LiveLinkSubject("Late"))
        for _ in range(20):
            await asyncio.sleep(0)
        assert ticks and sink.packets
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    # ...and with ``until`` and no subject, it returns at that time
    empty = LiveLinkPacer(_CaptureSender(), clock=VirtualClock(0.0))
    await empty.run(until=1.0)
    assert empty.clock.now() == 1.0
