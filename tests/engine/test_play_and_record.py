"""`facecast play` over a real UDP socket, and the session recorder."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import numpy as np

from facecast.engine.ackgate import AckGate, Show
from facecast.engine.livelink import LiveLinkTarget, VirtualClock
from facecast.engine.outputs import RecorderSink
from facecast.engine.play import play, to_60fps
from facecast.engine.timeline import FaceTimeline
from facecast.events import AudioOut, FaceOut, UtteranceEnded, UtteranceStarted
from facecast.face.arkit import INDEX
from facecast.face.layers import Emotion
from facecast.face.takes import write_livelink_app_csv
from facecast.protocol.livelink import decode_frame
from facecast.takefolder import read_session, write_session
from facecast.types import AudioChunk, FaceFrames


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def _drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out


async def test_play_sends_every_frame_of_a_session_in_order(tmp_path: Path) -> None:
    """On a virtual clock (so machine load cannot make frames late), over a real UDP socket."""
    rate = 16000
    frames = np.zeros((30, 68), np.float32)
    frames[:, INDEX["JawOpen"]] = np.linspace(0, 1, 30)  # a ramp we can recognise on the wire
    write_session(tmp_path, np.zeros(rate // 2, np.float32), rate, frames)
    sock = _udp()
    try:
        target = (LiveLinkTarget("127.0.0.1", sock.getsockname()[1]),)
        result = await play(tmp_path, target, subject="Player", clock=VirtualClock(100.0))
        await asyncio.sleep(0.05)
        packets = [decode_frame(p) for p in _drain(sock)]
    finally:
        sock.close()
    assert result.frames == 30 and result.skipped == 0
    jaw = [p.values[INDEX["JawOpen"]] for p in packets if p.subject == "Player"]
    ramp = [v for v in jaw if v > 0]
    assert len(ramp) == 29  # frame 0 of the ramp is 0.0, indistinguishable from the rest pose
    np.testing.assert_allclose(ramp, np.linspace(0, 1, 30)[1:], atol=1e-6)


async def test_play_accepts_a_live_link_face_app_csv_at_30_fps(tmp_path: Path) -> None:
    values = np.zeros((60, 68), np.float32)  # 2 s: long enough for the reader to detect 30 fps
    values[:, INDEX["JawLeft"]] = 0.25
    csv = tmp_path / "take.csv"
    write_livelink_app_csv(csv, values, fps=30)
    sock = _udp()
    try:
        result = await play(csv, (LiveLinkTarget("127.0.0.1", sock.getsockname()[1]),), clock=VirtualClock(5.0))
        await asyncio.sleep(0.05)
        packets = [decode_frame(p) for p in _drain(sock)]
    finally:
        sock.close()
    assert result.frames == 120 and result.skipped == 0  # the same two seconds at 60 fps
    assert sum(1 for p in packets if abs(p.values[INDEX["JawLeft"]] - 0.25) < 1e-6) == 120


def test_to_60fps_keeps_the_timeline() -> None:
    values = np.arange(30, dtype=np.float32)[:, None] * np.ones((1, 68), np.float32)
    out = to_60fps(values, 30)
    assert out.shape == (60, 68)
    np.testing.assert_allclose(out[::2, 0], values[:, 0])


def test_recorder_keeps_each_utterance_as_a_session_folder(tmp_path: Path) -> None:
    """The recorder keeps the frames a session releases: its face timeline applied (here, the emotion)."""
    recorder = RecorderSink(tmp_path)
    timeline = FaceTimeline(seed=1)
    rate = 16000
    for utterance in (1, 2):
        gate = AckGate(utterance, rate, timeline, acks=False, ack_timeout=2.0)
        recorder.on_event(UtteranceStarted(utterance, rate))
        gate.emotion(0, Emotion.HAPPY)
        for k in range(10):
            recorder.on_event(AudioOut(utterance, AudioChunk(np.full(1600, 0.1, np.float32), rate, k * 1600)))
        gate.audio_sent(float(utterance * 10))
        mouth = np.zeros((60, 68), np.float32)
        mouth[:, INDEX["JawOpen"]] = 0.5
        for command in gate.face(FaceFrames(0, mouth)):
            assert isinstance(command, Show)
            recorder.on_event(FaceOut(utterance, command.frames))
        recorder.on_event(UtteranceEnded(utterance, 16000, 60, "hi"))
    recorder.close()
    assert len(recorder.folders) == 2
    for folder in recorder.folders:
        session = read_session(folder)
        assert session.warning is None and session.rate == rate and len(session.audio) == 16000
        assert session.values.shape == (60, 68)
        assert session.values[-1, INDEX["Happy"]] > 0.5  # the recorded face shows the emotion
        assert session.values[30, INDEX["JawOpen"]] > 0.4


def test_recorder_keeps_an_interrupted_utterance_trimmed(tmp_path: Path) -> None:
    recorder = RecorderSink(tmp_path)
    recorder.on_event(UtteranceStarted(1, 16000))
    recorder.on_event(AudioOut(1, AudioChunk(np.zeros(8000, np.float32), 16000, 0)))
    recorder.on_event(FaceOut(1, FaceFrames(0, np.zeros((20, 68), np.float32))))
    recorder.on_clear(1)
    [folder] = recorder.folders
    session = read_session(folder)
    assert session.warning is None and len(session.audio) == 8000 and len(session.values) == 30


async def test_play_on_the_real_clock_accounts_for_every_frame(tmp_path: Path) -> None:
    """On the real clock a loaded machine may skip late frames (never bunch them): sent + skipped covers all."""
    write_session(tmp_path, np.zeros(8000, np.float32), 16000, np.zeros((30, 68), np.float32))
    sock = _udp()
    try:
        result = await play(tmp_path, (LiveLinkTarget("127.0.0.1", sock.getsockname()[1]),))
    finally:
        sock.close()
    assert result.frames == 30 and result.sent + result.skipped >= 30
