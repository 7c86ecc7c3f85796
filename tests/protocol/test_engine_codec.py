from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from facecast.protocol import engine as proto


def test_audio_frame_golden_bytes() -> None:
    data = proto.encode_audio(7, 48000, b"\x01\x00\xff\x7f")
    assert data == bytes([2, 1, 0, 0, 7, 0, 0, 0]) + (48000).to_bytes(8, "little") + b"\x01\x00\xff\x7f"
    packet = proto.decode_binary(data)
    assert isinstance(packet, proto.AudioPacket)
    assert (packet.utterance, packet.offset, packet.pcm) == (7, 48000, b"\x01\x00\xff\x7f")


def test_mic_frame_golden_bytes() -> None:
    data = proto.encode_mic(320, b"\x00\x80")
    assert data == bytes([1, 1, 0, 0, 0, 0, 0, 0]) + (320).to_bytes(8, "little") + b"\x00\x80"
    packet = proto.decode_binary(data)
    assert isinstance(packet, proto.MicAudio) and packet.offset == 320 and packet.pcm == b"\x00\x80"


def test_face_frame_golden_bytes() -> None:
    values = np.zeros((2, 68), np.float32)
    values[0, 17] = 1.0  # JawOpen
    values[1, 18] = 0.5  # MouthClose
    data = proto.encode_face(3, 120, values)
    header = bytes([3, 1, 0, 0, 3, 0, 0, 0]) + (120).to_bytes(4, "little") + (2).to_bytes(2, "little")
    header += (68).to_bytes(2, "little")
    assert data[:16] == header
    assert len(data) == 16 + 2 * 68 * 4
    assert struct.unpack_from("<f", data, 16 + 17 * 4)[0] == 1.0
    assert struct.unpack_from("<f", data, 16 + 68 * 4 + 18 * 4)[0] == 0.5
    packet = proto.decode_binary(data)
    assert isinstance(packet, proto.FacePacket)
    assert packet.utterance == 3 and packet.start == 120
    np.testing.assert_array_equal(packet.values, values)


@given(
    st.integers(0, 2**32 - 1), st.integers(0, 2**63 - 1), st.binary(max_size=4000).map(lambda b: b[: len(b) // 2 * 2])
)
def test_audio_roundtrip(utterance: int, offset: int, pcm: bytes) -> None:
    packet = proto.decode_binary(proto.encode_audio(utterance, offset, pcm))
    assert isinstance(packet, proto.AudioPacket)
    assert (packet.utterance, packet.offset, packet.pcm) == (utterance, offset, pcm)


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 30), st.integers(0, 2**31))
def test_face_roundtrip(utterance: int, start: int, count: int, seed: int) -> None:
    values = np.random.default_rng(seed).random((count, 68), dtype=np.float32)
    packet = proto.decode_binary(proto.encode_face(utterance, start, values))
    assert isinstance(packet, proto.FacePacket)
    np.testing.assert_array_equal(packet.values, values)


@given(st.binary(max_size=200))
def test_garbage_binary_is_rejected_cleanly(data: bytes) -> None:
    try:
        proto.decode_binary(data)
    except proto.ProtocolError as exc:
        assert exc.code and exc.message


@given(st.text(max_size=200) | st.binary(max_size=200))
def test_garbage_text_is_rejected_cleanly(data: str | bytes) -> None:
    try:
        proto.decode_client_text(data)
    except proto.ProtocolError as exc:
        assert exc.code and exc.message


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{", "bad_json"),
        ("[]", "bad_message"),
        ('{"type": 5}', "bad_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "hello", "version": 9}', "bad_version"),
        ('{"type": "hello", "audio": {"rate": 12345}}', "bad_audio_format"),
        ('{"type": "hello", "mic": {"rate": 16000, "channels": 3}}', "bad_message"),
        ('{"type": "hello", "workflow": "karaoke"}', "bad_message"),
        ('{"type": "text", "text": "   "}', "bad_message"),
        ('{"type": "playback_started"}', "bad_message"),
        ('{"type": "playback_started", "utterance": true}', "bad_message"),
        ('{"type": "playback_finished", "utterance": 1, "position": -5}', "bad_message"),
    ],
)
def test_malformed_client_messages(raw: str, code: str) -> None:
    with pytest.raises(proto.ProtocolError) as info:
        proto.decode_client_text(raw)
    assert info.value.code == code


def test_oversized_messages_are_rejected_before_parsing() -> None:
    with pytest.raises(proto.ProtocolError, match="exceeds"):
        proto.decode_client_text('{"type":"text","text":"' + "a" * proto.MAX_TEXT_FRAME + '"}')
    with pytest.raises(proto.ProtocolError, match="exceeds"):
        proto.decode_binary(proto.encode_mic(0, b"\x00" * proto.MAX_BINARY_FRAME))
    with pytest.raises(proto.ProtocolError, match="limit"):
        proto.decode_client_text(json.dumps({"type": "text", "text": "a" * (proto.MAX_TYPED_TEXT + 1)}))


def test_face_frame_with_wrong_length_is_rejected() -> None:
    data = proto.encode_face(1, 0, np.zeros((2, 68), np.float32))
    with pytest.raises(proto.ProtocolError, match="bytes"):
        proto.decode_binary(data[:-4])


@pytest.mark.parametrize(
    "message",
    [
        proto.Hello(
            audio=proto.AudioFormat(48000, 2),
            mic=proto.AudioFormat(44100, 1),
            face=False,
            subject="Gesicht-Ö",
            workflow="say",
        ),
        proto.UserText("hello there"),
        proto.EndOfSpeech(),
        proto.PlaybackStarted(4, 12.5),
        proto.PlaybackFinished(4, 24000, True),
        proto.Interrupt(),
        proto.Ping(3),
        proto.Bye(),
    ],
)
def test_client_messages_roundtrip(message: proto.ClientMessage) -> None:
    assert proto.decode_client_text(proto.encode_client(message)) == message


# -- typed server messages ------------------------------------------------------------------------


def test_server_messages_golden_and_round_trip() -> None:
    welcome = proto.Welcome(
        proto.AudioFormat(24000, 1),
        True,
        True,
        2.0,
        "conversation",
        "server",
        proto.LiveLinkInfo("Facecast", "Facecast:Facecast", 12.5),
    )
    assert json.loads(proto.encode_message(welcome)) == {
        "type": "welcome", "version": 1, "audio": {"rate": 24000, "channels": 1},
        "face": {"fps": 60, "width": 68, "enabled": True}, "acks": True, "ack_timeout": 2.0,
        "workflow": "conversation", "turns": "server",
        "livelink": {"subject": "Facecast", "device_id": "Facecast:Facecast", "epoch": 12.5},
    }  # fmt: skip
    assert proto.encode_message(proto.ClearBuffer(3)) == '{"type":"clear_buffer","utterance":3}'
    assert proto.encode_message(proto.TranscriptUpdate("hi", True)) == '{"type":"transcript","text":"hi","final":true}'
    assert proto.encode_message(proto.Pong()) == '{"type":"pong","id":null}'
    # 1.5: the VAD's end of speech as a microphone sample, only when the server knows it
    assert "speech_end_sample" not in proto.encode_message(proto.Timing(1, {"engine_ack": 1.0}))
    messages: list[proto.ServerMessage] = [
        welcome, proto.TranscriptUpdate("hi", True, typed=True), proto.UtteranceStart(1, 24000),
        proto.ReplyText(1, "Hello.", 0), proto.EmotionChange(1, "happy"), proto.UtteranceEnd(1, 480, 2, "Hello."),
        proto.ClearBuffer(1, "barge_in"), proto.Timing(1, {"engine_ack": 120.5}), proto.ErrorMessage("x", "y"),
        proto.Timing(2, {"endpoint": 300.0}, speech_end_sample=48_320), proto.Pong("a"),
        proto.Notice("failover", {"role": "tts", "event": "failover"}),
    ]  # fmt: skip
    for message in messages:
        assert proto.decode_server(proto.encode_message(message)) == message


def test_bad_server_messages_are_refused() -> None:
    for text in (
        '{"type":"utterance_start","utterance":-1,"rate":24000}',
        '{"type":"timing","utterance":1}',
        '{"type":"timing","utterance":1,"stages":{},"speech_end_sample":-5}',
        '{"type":"timing","utterance":1,"stages":{},"speech_end_sample":"12"}',
        '{"type":"welcome"}',
        "[]",
    ):
        with pytest.raises(proto.ProtocolError):
            proto.decode_server(text)


def test_protocol_errors_are_facecast_errors_with_their_own_code() -> None:
    from facecast.errors import FacecastError

    with pytest.raises(FacecastError) as info:
        proto.decode_client_text('{"type": "nonsense"}')
    assert isinstance(info.value, proto.ProtocolError) and isinstance(info.value, ValueError)
    assert info.value.code == "unknown_type" and proto.ProtocolError("too_large", "x").code == "too_large"
