"""Service protocol codec: golden bytes, validation, and Hypothesis round-trips and fuzzing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facecast.protocol import service as sp
from facecast.types import AudioChunk, ChatMessage, FaceFrames, Phoneme, Word


def test_audio_golden_bytes() -> None:
    chunk = AudioChunk(np.array([0.0, 0.5, -1.0], np.float32), 16000, 7)
    data = sp.encode_audio(3, chunk)
    assert data == (
        bytes([1, 1, 0, 0])
        + (3).to_bytes(4, "little")
        + (7).to_bytes(8, "little")
        + (16000).to_bytes(4, "little")
        + (3).to_bytes(4, "little")
        + bytes.fromhex("000000000000003f000080bf")
    )
    frame = sp.decode_binary(data)
    assert isinstance(frame, sp.AudioFrame)
    assert (frame.id, frame.chunk.offset, frame.chunk.rate) == (3, 7, 16000)
    assert frame.chunk.pcm.tolist() == [0.0, 0.5, -1.0]


def test_face_golden_bytes() -> None:
    values = np.zeros((2, 68), np.float32)
    values[1, 0] = 1.0
    data = sp.encode_face(9, FaceFrames(5, values))
    assert data[:16] == bytes([2, 1, 0, 0, 9, 0, 0, 0, 5, 0, 0, 0, 2, 0, 68, 0])
    assert len(data) == 16 + 2 * 68 * 4
    assert data[16 + 68 * 4 : 16 + 68 * 4 + 4] == bytes.fromhex("0000803f")
    frame = sp.decode_binary(data)
    assert isinstance(frame, sp.FaceFrame)
    assert frame.frames.start == 5 and np.array_equal(frame.frames.values, values)


def test_json_golden() -> None:
    assert sp.encode(sp.Synthesize(4, "Hé", 22050)) == '{"type":"synthesize","id":4,"text":"Hé","rate":22050}'
    assert sp.encode(sp.Timing(2, (Phoneme("aI", 0, 10),), (Word("hi", 0, 10),))) == (
        '{"type":"timing","id":2,"phonemes":[["aI",0,10]],"words":[["hi",0,10]]}'
    )
    assert sp.encode(sp.Error("bad_json", "nope")) == '{"type":"error","code":"bad_json","message":"nope","id":0}'
    chat = sp.decode_client('{"type":"chat","id":1,"messages":[{"role":"user","content":"hi"}]}')
    assert chat == sp.Chat(1, (ChatMessage("user", "hi"),))


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xff\xfe", "bad_utf8"),
        ('{"type":"synthesize","id":1,"text":"\\ud800","rate":16000}', "bad_utf8"),
        ("[1]", "bad_message"),
        ("{", "bad_json"),
        ('{"type":"ping","id":NaN}', "bad_json"),
        ('{"type":"nope"}', "unknown_type"),
        ('{"type":"hello","role":"stt","version":2}', "bad_version"),
        ('{"type":"hello","role":"x"}', "bad_message"),
        ('{"type":"transcribe","id":1,"rate":12345}', "bad_audio_format"),
        ('{"type":"transcribe","id":0,"rate":16000}', "bad_message"),
        ('{"type":"transcribe","id":true,"rate":16000}', "bad_message"),
        ('{"type":"synthesize","id":1,"text":"  ","rate":16000}', "bad_message"),
        ('{"type":"synthesize","id":1,"text":"' + "a" * 10_001 + '","rate":16000}', "too_large"),
        ('{"type":"chat","id":1,"messages":[]}', "bad_message"),
        ('{"type":"chat","id":1,"messages":[{"role":"tool","content":"x"}]}', "bad_message"),
        ('{"type":"timing","id":1,"phonemes":[["a",5,1]]}', "bad_message"),
        ('{"type":"timing","id":1,"phonemes":[["a",0]]}', "bad_message"),
        (" " * (sp.MAX_TEXT_FRAME + 1), "too_large"),
        ("\u00e9" * (sp.MAX_TEXT_FRAME // 2 + 1), "too_large"),  # the limit counts UTF-8 bytes, not characters
    ],
)
def test_bad_client_text(data: str | bytes, code: str) -> None:
    with pytest.raises(sp.ProtocolError) as info:
        sp.decode_client(data)
    assert info.value.code == code


def test_bad_binary() -> None:
    good = sp.encode_audio(1, AudioChunk(np.zeros(4, np.float32), 16000))
    cases = {
        good[:10]: "bad_binary",
        good[:-1]: "bad_binary",
        bytes([1, 2]) + good[2:]: "bad_version",
        bytes([7]) + good[1:]: "bad_binary",
        good[:16] + (12345).to_bytes(4, "little") + good[20:]: "bad_audio_format",
        sp.encode_audio(1, AudioChunk(np.array([np.nan], np.float32), 16000)): "bad_binary",
        sp.encode_audio(1, AudioChunk(np.array([2.0], np.float32), 16000)): "bad_binary",
        sp.encode_audio(0, AudioChunk(np.zeros(1, np.float32), 16000)): "bad_binary",
        b"\x01\x01" + b"\x00" * (sp.MAX_BINARY_FRAME): "too_large",
    }
    for data, code in cases.items():
        with pytest.raises(sp.ProtocolError) as info:
            sp.decode_binary(data)
        assert info.value.code == code, data[:24]


_ids = st.integers(1, 2**32 - 1)
_spans = st.tuples(st.text(max_size=8), st.integers(0, 10**6), st.integers(0, 10**6)).map(
    lambda t: (t[0], min(t[1], t[2]), max(t[1], t[2]))
)


def _clean(s: str) -> bool:
    try:
        s.encode()
    except UnicodeEncodeError:
        return False
    return True


_utf8 = st.text(max_size=40).filter(_clean)
_client = st.one_of(
    st.builds(sp.Hello, st.sampled_from(sp.ROLES)),
    st.builds(sp.Transcribe, _ids, st.sampled_from(sp.RATES)),
    st.builds(sp.Synthesize, _ids, _utf8.filter(str.strip), st.sampled_from(sp.RATES)),
    st.builds(sp.Animate, _ids, st.sampled_from(sp.RATES)),
    st.builds(
        sp.Chat,
        _ids,
        st.lists(
            st.builds(ChatMessage, st.sampled_from(["system", "user", "assistant"]), _utf8), min_size=1, max_size=4
        ).map(tuple),
    ),
    st.builds(
        sp.Timing,
        _ids,
        st.lists(_spans.filter(lambda t: _clean(t[0])).map(lambda t: Phoneme(*t)), max_size=4).map(tuple),
        st.lists(_spans.filter(lambda t: _clean(t[0])).map(lambda t: Word(*t)), max_size=4).map(tuple),
    ),
    st.builds(sp.End, _ids),
    st.builds(sp.Cancel, _ids),
    st.builds(sp.Ping, _ids),
    st.builds(sp.Pong, _ids),
)
_server = st.one_of(
    st.builds(sp.Welcome, st.sampled_from(sp.ROLES), st.integers(0, 48000)),
    st.builds(sp.TranscriptOut, _ids, _utf8, st.booleans()),
    st.builds(sp.Token, _ids, _utf8),
    st.builds(sp.Done, _ids),
    st.builds(sp.Error, _utf8.filter(str.strip).map(lambda s: s[:64]), _utf8, st.integers(0, 2**32 - 1)),
)


@settings(max_examples=150, deadline=None)
@given(_client)
def test_client_roundtrip(message: sp.ClientMessage) -> None:
    assert sp.decode_client(sp.encode(message)) == message
    assert sp.decode_client(sp.encode(message).encode()) == message


@settings(max_examples=100, deadline=None)
@given(_server)
def test_server_roundtrip(message: sp.ServerMessage) -> None:
    assert sp.decode_server(sp.encode(message)) == message


@settings(max_examples=100, deadline=None)
@given(_ids, st.integers(0, 2**40), st.sampled_from(sp.RATES), st.lists(st.floats(-1, 1, width=32), max_size=64))
def test_audio_roundtrip(request: int, offset: int, rate: int, samples: list[float]) -> None:
    pcm = np.array(samples, np.float32)
    frame = sp.decode_binary(sp.encode_audio(request, AudioChunk(pcm, rate, offset)))
    assert isinstance(frame, sp.AudioFrame)
    assert (frame.id, frame.chunk.offset, frame.chunk.rate) == (request, offset, rate)
    assert np.array_equal(frame.chunk.pcm, pcm)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_binary_only_protocol_errors(data: bytes) -> None:
    try:
        sp.decode_binary(data)
    except sp.ProtocolError as exc:
        assert exc.code in ("bad_binary", "bad_version", "bad_audio_format", "too_large")


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200),
        st.dictionaries(
            st.sampled_from(["type", "id", "rate", "text", "messages", "phonemes", "role"]),
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(),
                st.text(max_size=5),
                st.lists(st.integers(), max_size=3),
                st.sampled_from(["hello", "chat", "timing", "synthesize", "end"]),
            ),
        ).map(json.dumps),
    )
)
def test_fuzz_text_only_protocol_errors(data: str | bytes) -> None:
    for decode in (sp.decode_client, sp.decode_server):
        try:
            decode(data)
        except sp.ProtocolError as exc:
            assert exc.code in (
                "bad_json",
                "bad_message",
                "unknown_type",
                "bad_version",
                "bad_audio_format",
                "too_large",
                "bad_utf8",
            )
