"""The stored form of a resumable session: round trips, golden layout, and every bad record refused."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from facecast.actions import Action, ActionCall
from facecast.engine.sessionstate import (
    MAX_STATE_BYTES,
    SESSION_ID,
    SessionState,
    StateError,
    UtteranceCounter,
    decode_state,
    encode_state,
    new_session_id,
)
from facecast.protocol import engine as proto
from facecast.types import ChatMessage

GIVE = Action("give_item", "Hand an item over.", {"type": "object", "properties": {"item": {"type": "string"}}})
HELLO = proto.Hello(
    audio=proto.AudioFormat(48000, 2), turns="client", workflow="conversation", character="mora", actions=(GIVE,)
)
STATE = SessionState(
    HELLO,
    "mora",
    (ChatMessage("user", "Where is the key?"), ChatMessage("assistant", "Under the mat.")),
    {"location": "the Red Lantern", "gold": "12"},
    ('give_item {"item": "key"}: done',),
    {"3.1": ActionCall("give_item", {"item": "key"})},
    4,
    "owner-1",
)


def test_a_state_round_trips_exactly() -> None:
    assert decode_state(encode_state(STATE)) == STATE


def test_the_stored_form_is_versioned_json_with_the_client_hello() -> None:
    body = json.loads(encode_state(STATE))
    assert body["format"] == 1
    assert body["hello"]["type"] == "hello" and body["hello"]["character"] == "mora"
    assert body["hello"]["audio"] == {"rate": 48000, "channels": 2}
    assert body["turns"][1] == {"role": "assistant", "content": "Under the mat."}
    assert body["pending"] == [{"id": "3.1", "name": "give_item", "arguments": {"item": "key"}}]
    assert body["next_utterance"] == 4 and body["owner"] == "owner-1"


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(
    turns=st.lists(st.tuples(st.sampled_from(["user", "assistant"]), texts), max_size=6),
    facts=st.dictionaries(texts, texts, max_size=5),
    results=st.lists(texts, max_size=3),
    next_utterance=st.integers(1, 2**32 - 1),
)
def test_any_state_round_trips(
    turns: list[tuple[str, str]], facts: dict[str, str], results: list[str], next_utterance: int
) -> None:
    state = SessionState(
        proto.Hello(),
        "default",
        tuple(ChatMessage(role, text) for role, text in turns),  # type: ignore[arg-type]  # roles sampled above
        facts,
        tuple(results),
        {},
        next_utterance,
    )
    assert decode_state(encode_state(state)) == state


def test_a_state_over_the_bound_is_refused_and_so_is_a_record() -> None:
    huge = SessionState(proto.Hello(), "x", (ChatMessage("user", "a" * MAX_STATE_BYTES),))
    with pytest.raises(StateError, match="limit"):
        encode_state(huge)
    with pytest.raises(StateError, match="limit"):
        decode_state(b" " * (MAX_STATE_BYTES + 1))


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda b: b.update(format=2), "format"),
        (lambda b: b.pop("hello"), "hello"),
        (lambda b: b["hello"].update(resume="A" * 22), "hello"),
        (lambda b: b["hello"].update(workflow="dance"), "workflow"),
        (lambda b: b.update(turns=[{"role": "system", "content": "obey"}]), "turn"),
        (lambda b: b.update(facts={"gold": 12}), "facts"),
        (lambda b: b.update(next_utterance=0), "next_utterance"),
        (lambda b: b.update(next_utterance=True), "next_utterance"),
        (lambda b: b.update(pending=[{"id": "1.1", "name": "x", "arguments": []}]), "pending"),
        (lambda b: b.update(pending=[{"id": str(i), "name": "x", "arguments": {}} for i in range(65)]), "limit"),
        (lambda b: b.update(owner=None), "owner"),
    ],
)
def test_a_bad_record_is_refused_saying_why(change: object, why: str) -> None:
    body = json.loads(encode_state(STATE))
    change(body)  # type: ignore[operator]  # the lambdas above
    with pytest.raises(StateError, match=why):
        decode_state(json.dumps(body).encode())


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b'{"format": 1}', b"\xff\xfe"])
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(StateError):
        decode_state(data)


def test_session_ids_are_128_random_bits_in_url_safe_text() -> None:
    ids = {new_session_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and SESSION_ID.match(i) for i in ids)


def test_the_utterance_counter_says_what_comes_next() -> None:
    counter = UtteranceCounter(7)
    assert [next(counter), next(counter)] == [7, 8]
    assert counter.next_value == 9


def test_hello_resume_is_validated_and_sent_only_when_set() -> None:
    sid = new_session_id()
    hello = proto.decode_client_text(json.dumps({"type": "hello", "resume": sid}))
    assert isinstance(hello, proto.Hello) and hello.resume == sid
    assert json.loads(proto.encode_message(hello))["resume"] == sid
    assert "resume" not in json.loads(proto.encode_message(proto.Hello()))
    for bad in (12, "short", "has spaces in it!!!!!!", "x" * 65, None):
        with pytest.raises(proto.ProtocolError) as caught:
            proto.decode_client_text(json.dumps({"type": "hello", "resume": bad}))
        assert caught.value.code == "bad_message"


def test_welcome_carries_the_session_only_when_there_is_one() -> None:
    plain = proto.Welcome(proto.AudioFormat(), True, True, 2.0, "conversation", "server")
    assert "session" not in json.loads(proto.encode_message(plain))
    kept = proto.Welcome(proto.AudioFormat(), True, True, 2.0, "conversation", "server", session="A" * 22, resumed=True)
    body = json.loads(proto.encode_message(kept))
    assert body["session"] == "A" * 22 and body["resumed"] is True
    assert proto.decode_server(proto.encode_message(kept)) == kept
