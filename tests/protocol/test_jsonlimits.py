"""JSON from untrusted peers (facecast.protocol.jsonlimits) and the engine codec's use of it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from facecast.protocol import engine as proto
from facecast.protocol import jsonlimits


@pytest.mark.parametrize(
    "text",
    [
        "[" * 60_000,
        '{"a":' * 30_000 + "1" + "}" * 30_000,
        "[" * 40 + "]" * 40,
        '"\\ud800"',
        '{"\\udc00": 1}',
        '["ok", "\\ud83d"]',
        "NaN",
        '{"x": -Infinity}',
        b'{"x": "\xff"}',
        "",
        "{",
    ],
)
def test_refused_as_bad_json(text: str | bytes) -> None:
    with pytest.raises(jsonlimits.JsonLimitError) as refused:
        jsonlimits.loads(text, 1 << 20)
    assert refused.value.code == "bad_json"


def test_limit_counts_utf8_bytes_not_characters() -> None:
    text = json.dumps({"type": "ping", "id": "\u20ac" * 27_000}, ensure_ascii=False)  # 27 K chars, 81 KB
    assert len(text) < proto.MAX_TEXT_FRAME < jsonlimits.utf8_length(text)
    with pytest.raises(jsonlimits.JsonLimitError) as refused:
        jsonlimits.loads(text, proto.MAX_TEXT_FRAME)
    assert refused.value.code == "too_large"
    assert jsonlimits.utf8_length("\U0001f600") == 4 and jsonlimits.utf8_length(b"abc") == 3
    assert jsonlimits.loads("[" * 10 + "]" * 10, 100) == [[[[[[[[[[]]]]]]]]]]


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )
)
def test_round_trip_of_ordinary_json(value: object) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert jsonlimits.loads(text, 1 << 20) == value


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("[" * 60_000, "bad_json"),
        ('{"type": "ping", "id": "\\ud800"}', "bad_json"),
        ('{"type": "text", "text": "a\\udfffb"}', "bad_json"),
        ('{"type": "hello", "subject": "\\ud800"}', "bad_json"),
        ('{"type": "hello", "subject": "Ada\\u0000"}', "bad_message"),
        ('{"type": "hello", "subject": "Ada\\u001b[2J"}', "bad_message"),
        ('{"type": "text", "text": "hi\\u0000"}', "bad_message"),
        (json.dumps({"type": "text", "text": "\u20ac" * 27_000}, ensure_ascii=False), "too_large"),
    ],
)
def test_engine_decoder_refuses_with_an_error_code(message: str, code: str) -> None:
    with pytest.raises(proto.ProtocolError) as refused:
        proto.decode_client_text(message)
    assert refused.value.code == code


def test_engine_decoder_keeps_ordinary_text() -> None:
    assert proto.decode_client_text(
        '{"type": "text", "text": "line one\\nline two\\t\\u00e9 \\ud83d\\ude00"}'
    ) == proto.UserText("line one\nline two\t\u00e9 \U0001f600")
    assert proto.decode_client_text('{"type": "hello", "subject": "Ad\\u00e1"}').subject == "Ad\u00e1"  # type: ignore[union-attr]


def test_server_messages_are_always_encodable() -> None:
    text = proto.encode_server("transcript", text="caf\u00e9 \ud800")  # a lone surrogate from elsewhere
    text.encode("utf-8")
    assert json.loads(text)["text"] == "caf\u00e9 \ud800"
    assert proto.encode_server("pong", id="\u00e9") == '{"type":"pong","id":"\u00e9"}'  # unchanged otherwise
