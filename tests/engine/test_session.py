"""The engine session's protocol logic, over an in-memory transport with fake roles (fast)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import numpy as np
from tests.fakes import FakeFace, FakeLLM, FakeSTT, FakeTTS

from facecast.engine.session import EngineSession, SessionConfig
from facecast.llm.echo import EchoLLM
from facecast.protocol import engine as proto
from facecast.services import Services


class Recorder:
    """Transport that records what the server sends, in order."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.changed = asyncio.Event()

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))
        self.changed.set()

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(proto.decode_binary(data))
        self.changed.set()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if isinstance(m, dict) and m["type"] == kind]

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 10.0) -> dict[str, Any]:
        async def until() -> dict[str, Any]:
            while len(self.of_type(kind)) < count:
                self.changed.clear()
                await self.changed.wait()
            return self.of_type(kind)[count - 1]

        return await asyncio.wait_for(until(), timeout)

    async def wait_audio(self, timeout: float = 10.0) -> None:
        async def until() -> None:
            while not any(isinstance(m, proto.AudioPacket) for m in self.sent):
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)


def make(llm: Any = None, stt: Any = None, config: SessionConfig | None = None) -> tuple[EngineSession, Recorder]:
    rec = Recorder()
    services = Services(stt or FakeSTT(), llm or FakeLLM(), FakeTTS(rate=16000), FakeFace())
    return EngineSession(services, rec, config), rec


HELLO = json.dumps({"type": "hello", "version": 1, "audio": {"rate": 24000, "channels": 1}})


async def test_hello_gets_welcome_with_formats() -> None:
    session, rec = make()
    await session.handle_text(HELLO)
    welcome = rec.of_type("welcome")[0]
    assert welcome["version"] == 1 and welcome["audio"] == {"rate": 24000, "channels": 1}
    assert welcome["acks"] is True and welcome["face"]["width"] == 68
    await session.close()


async def test_messages_before_hello_are_refused_and_session_survives() -> None:
    session, rec = make()
    await session.handle_text(json.dumps({"type": "text", "text": "hi"}))
    await session.handle_bytes(proto.encode_mic(0, b"\x00\x00"))
    assert [m["code"] for m in rec.of_type("error")] == ["no_hello", "no_hello"]
    await session.handle_text(HELLO)
    assert rec.of_type("welcome")
    await session.close()


async def test_no_face_frame_before_playback_started_then_all_after() -> None:
    session, rec = make()
    await session.handle_text(HELLO)
    await session.handle_text(json.dumps({"type": "text", "text": "hello"}))
    start = await rec.wait_for("utterance_start")
    await rec.wait_audio()
    await asyncio.sleep(0.2)  # the whole reply is synthesised by now, but it must wait for the ack
    assert not any(isinstance(m, proto.FacePacket) for m in rec.sent)
    assert not rec.of_type("utterance_end")
    ack_index = len(rec.sent)
    await session.handle_text(json.dumps({"type": "playback_started", "utterance": start["utterance"]}))
    end = await rec.wait_for("utterance_end")
    face = [m for m in rec.sent if isinstance(m, proto.FacePacket)]
    assert face and all(rec.sent.index(m) >= ack_index for m in face)
    audio = [m for m in rec.sent if isinstance(m, proto.AudioPacket)]
    # audio and face of the utterance cover the same time span, both contiguous
    samples = sum(len(m.pcm) // 2 for m in audio)
    assert [m.offset for m in audio] == list(np.cumsum([0] + [len(m.pcm) // 2 for m in audio[:-1]]))
    assert end["samples"] == samples
    frames = sum(len(m.values) for m in face)
    assert frames == end["frames"] == -(-samples * 60 // 24000)
    after = rec.sent[rec.sent.index(end) + 1 :]
    assert all(isinstance(m, dict) and m["type"] == "timing" for m in after)  # nothing of the utterance after it
    timing = (await rec.wait_for("timing"))["stages"]
    assert 0 <= timing["first_sentence"] <= timing["tts_first_chunk"] <= timing["engine_ack"]
    await session.close()


class Stamped(Recorder):
    """Also notes, for every audio packet, when it was sent and how many seconds of audio were sent by then."""

    def __init__(self) -> None:
        super().__init__()
        self.audio: list[tuple[float, float]] = []
        self.samples = 0

    async def send_bytes(self, data: bytes) -> None:
        await super().send_bytes(data)
        packet = self.sent[-1]
        if isinstance(packet, proto.AudioPacket):
            self.samples += len(packet.pcm) // 2
            self.audio.append((time.monotonic(), self.seconds))

    @property
    def seconds(self) -> float:
        return self.samples / 24000


async def test_reply_audio_is_made_at_most_lead_ahead_of_playback() -> None:
    reply = "One two three four five six seven eight nine ten eleven twelve."  # 3.15 s of fake speech
    for lead in (0.3, 0.0):
        rec = Stamped()
        services = Services(FakeSTT(), FakeLLM(reply), FakeTTS(rate=16000), FakeFace())
        session = EngineSession(services, rec, SessionConfig(lead=lead))
        await session.handle_text(HELLO)
        await session.handle_text(json.dumps({"type": "text", "text": "count"}))
        start = await rec.wait_for("utterance_start")
        await rec.wait_audio()
        await asyncio.sleep(0.3)
        if lead == 0:  # no pacing: the whole reply went out before playback started
            assert rec.samples == len(reply) * 1200
            await session.close()
            continue
        assert lead <= rec.seconds <= lead + 0.02  # up to the lead (and the 20 ms chunk that crossed it)
        acked = time.monotonic()
        await session.handle_text(json.dumps({"type": "playback_started", "utterance": start["utterance"]}))
        end = await rec.wait_for("utterance_end", timeout=20)
        assert end["samples"] == rec.samples == len(reply) * 1200  # all of it, in the end
        for sent_at, seconds in rec.audio:  # never more than the lead ahead of what has played
            assert seconds <= lead + max(0.0, sent_at - acked) + 0.02
        await session.close()


async def test_lost_ack_abandons_the_utterance_and_the_next_turn_works() -> None:
    session, rec = make(config=SessionConfig(ack_timeout=0.2))
    await session.handle_text(HELLO)
    await session.handle_text(json.dumps({"type": "text", "text": "hello"}))
    await rec.wait_for("clear_buffer")
    error = rec.of_type("error")[0]
    assert error["code"] == "ack_timeout"
    assert not any(isinstance(m, proto.FacePacket) for m in rec.sent)
    await session.handle_text(json.dumps({"type": "text", "text": "again"}))
    second = await rec.wait_for("utterance_start", 2)
    while sum(isinstance(m, proto.AudioPacket) and m.utterance == second["utterance"] for m in rec.sent) == 0:
        rec.changed.clear()
        await asyncio.wait_for(rec.changed.wait(), 10)
    await session.handle_text(json.dumps({"type": "playback_started", "utterance": second["utterance"]}))
    await rec.wait_for("utterance_end")
    await session.close()


async def test_client_without_acks_gets_face_frames_directly() -> None:
    session, rec = make()
    await session.handle_text(json.dumps({"type": "hello", "acks": False, "audio": {"rate": 16000}}))
    await session.handle_text(json.dumps({"type": "text", "text": "hello"}))
    await rec.wait_for("utterance_end")
    assert any(isinstance(m, proto.FacePacket) for m in rec.sent)
    await session.close()


async def test_malformed_and_out_of_order_messages_get_errors() -> None:
    session, rec = make()
    await session.handle_text(HELLO)
    await session.handle_text("{not json")
    await session.handle_text(HELLO)
    await session.handle_text(json.dumps({"type": "playback_started", "utterance": 99}))
    await session.handle_bytes(b"\x09" * 20)
    await session.handle_bytes(proto.encode_audio(1, 0, b"\x00\x00"))
    await session.handle_bytes(proto.encode_mic(0, b"\x00\x00")[:-1])  # odd PCM length
    codes = [m["code"] for m in rec.of_type("error")]
    assert codes == ["bad_json", "out_of_order", "out_of_order", "bad_version", "bad_direction", "bad_binary"]
    await session.handle_text(json.dumps({"type": "ping", "id": 7}))
    assert rec.of_type("pong")[0]["id"] == 7
    await session.close()


async def test_push_to_talk_speech_is_transcribed_and_answered() -> None:
    stt = FakeSTT("what time is it")
    session, rec = make(llm=EchoLLM(), stt=stt, config=SessionConfig())
    await session.handle_text(json.dumps({"type": "hello", "mic": {"rate": 16000, "channels": 2}, "turns": "client"}))
    pcm = (np.zeros(3200 * 2, dtype="<i2")).tobytes()  # 0.2 s of stereo silence
    for i in range(5):
        await session.handle_bytes(proto.encode_mic(i * 3200, pcm))
    await session.handle_text(json.dumps({"type": "end_of_speech"}))
    transcript = await rec.wait_for("transcript")
    assert transcript == {"type": "transcript", "text": "what time is it", "final": True}
    start = await rec.wait_for("utterance_start")
    await rec.wait_audio()
    await session.handle_text(json.dumps({"type": "playback_started", "utterance": start["utterance"]}))
    end = await rec.wait_for("utterance_end")
    assert "what time is it" in end["text"].lower()
    # stereo mixed down to mono, every frame arrived once, then 200 ms of silence at the release of the button
    assert stt.samples == 5 * 3200 + 3200
    await session.close()


async def test_interrupt_clears_buffer_and_stops_the_reply() -> None:
    session, rec = make(llm=FakeLLM("One. Two. Three. Four. Five. Six.", delay=0.05))
    await session.handle_text(HELLO)
    await session.handle_text(json.dumps({"type": "text", "text": "count"}))
    start = await rec.wait_for("utterance_start")
    await session.handle_text(json.dumps({"type": "interrupt"}))
    clear = await rec.wait_for("clear_buffer")
    assert clear["utterance"] == start["utterance"]
    count = len(rec.sent)
    await asyncio.sleep(0.3)
    assert len(rec.sent) == count  # nothing of that reply after clear_buffer
    await session.close()


async def test_close_mid_utterance_leaves_nothing_running() -> None:
    session, rec = make(llm=FakeLLM("One. Two. Three. Four.", delay=0.05))
    await session.handle_text(HELLO)
    await session.handle_text(json.dumps({"type": "text", "text": "count"}))
    await rec.wait_for("utterance_start")
    await session.close()
    # the autouse fixture fails the test if any task of the session is still alive


def make_audio_face(workflow: str) -> tuple[EngineSession, Recorder]:
    rec = Recorder()
    services = Services(FakeSTT(), FakeLLM(), FakeTTS(rate=16000), FakeFace(), audio_face=FakeFace())
    return EngineSession(services, rec), rec


async def test_puppet_streams_face_frames_while_the_audio_is_still_coming() -> None:
    session, rec = make_audio_face("puppet")
    await session.handle_text(json.dumps({"type": "hello", "workflow": "puppet", "mic": {"rate": 16000}}))
    tone = (0.3 * np.sin(np.arange(320) / 3)).astype(np.float32)
    pcm = (tone * 32767).astype("<i2").tobytes()
    for i in range(50):  # one second, 20 ms at a time
        await session.handle_bytes(proto.encode_mic(i * 320, pcm))
    start = await rec.wait_for("utterance_start")
    while sum(len(m.values) for m in rec.sent if isinstance(m, proto.FacePacket)) < 55:
        rec.changed.clear()
        await asyncio.wait_for(rec.changed.wait(), 10)
    assert not rec.of_type("utterance_end")  # live: frames came before the stream ended
    await session.handle_text(json.dumps({"type": "end_of_speech"}))
    end = await rec.wait_for("utterance_end")
    face = [m for m in rec.sent if isinstance(m, proto.FacePacket)]
    assert all(m.utterance == start["utterance"] for m in face)
    assert sum(len(m.values) for m in face) == end["frames"] == 60
    assert not any(isinstance(m, proto.AudioPacket) for m in rec.sent)  # no audio comes back
    await session.close()


async def test_lipsync_answers_each_segment_with_its_frames() -> None:
    session, rec = make_audio_face("lipsync")
    await session.handle_text(json.dumps({"type": "hello", "workflow": "lipsync", "mic": {"rate": 16000}}))
    pcm = np.zeros(800, "<i2").tobytes()  # 50 ms
    for segment in range(2):
        for i in range(10):
            await session.handle_bytes(proto.encode_mic(i * 800, pcm))
        await session.handle_text(json.dumps({"type": "end_of_speech"}))
        end = await rec.wait_for("utterance_end", segment + 1)
        assert end["frames"] == 30
    starts = [m["utterance"] for m in rec.of_type("utterance_start")]
    assert len(set(starts)) == 2
    await session.close()


async def test_audio_workflows_need_an_audio_driven_model() -> None:
    session, rec = make()
    await session.handle_text(json.dumps({"type": "hello", "workflow": "puppet"}))
    assert rec.of_type("error")[0]["code"] == "bad_config"
    assert not rec.of_type("welcome")
    await session.close()
