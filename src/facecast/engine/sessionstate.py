"""What a resumable engine session keeps in its session store, and its stored form (docs/protocol.md, "Resuming
a session"). Pure: no I/O, no asyncio.

A :class:`SessionState` is what a controller needs to carry a conversation on after its client reconnects,
to it or to any controller sharing the store: the hello that opened the session (character, workflow, turns,
audio, actions), the history of what the player HEARD, the game context facts, the action results not yet
told to the model, the actions sent and not yet answered, and the next utterance id (ids never repeat in a
session). Models, audio and the face timeline are not kept: they are the controller's.

The stored form is versioned JSON (:data:`FORMAT`), at most :data:`MAX_STATE_BYTES`: :func:`encode_state`
refuses a larger state and :func:`decode_state` a larger record, as it refuses any record that does not hold a
valid state (:class:`StateError`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..actions import ActionCall
from ..protocol import engine as proto
from ..protocol import jsonlimits
from ..types import ChatMessage

__all__ = [
    "FORMAT",
    "MAX_STATE_BYTES",
    "SESSION_ID",
    "SessionState",
    "StateError",
    "UtteranceCounter",
    "decode_state",
    "encode_state",
    "new_session_id",
]

FORMAT = 1
"""Version of the stored form; a record of another version is refused (a fresh session starts instead)."""
MAX_STATE_BYTES = 512 * 1024
"""Largest stored state, in bytes of JSON. The bounds of what it holds keep a real session far below it (history
6,000 characters, facts 4 KiB, 32 declared actions of 4 KiB, 64 pending calls, 8 results of 2 KiB)."""
SESSION_ID = proto.SESSION_ID
"""What a session id looks like on the wire (:func:`new_session_id` makes 22 characters: 128 random bits)."""
_MAX_PENDING = 64


class StateError(ValueError):
    """A state that cannot be stored (too large), or a stored record that is not a valid state."""


def new_session_id() -> str:
    """A fresh session id: 128 random bits, URL-safe base64 (22 characters), unguessable."""
    return secrets.token_urlsafe(16)


class UtteranceCounter:
    """The session's utterance ids (an iterator of int from ``start``); :attr:`next_value` is the one it gives next."""

    def __init__(self, start: int = 1) -> None:
        self.next_value = start

    def __iter__(self) -> UtteranceCounter:
        return self

    def __next__(self) -> int:
        value = self.next_value
        self.next_value += 1
        return value


@dataclass(frozen=True, slots=True)
class SessionState:
    """One session's conversation, as stored. ``owner`` names the connection that last wrote it (a random token):
    a controller that finds another owner's record knows a newer connection took the session over."""

    hello: proto.Hello
    """The hello that opened the session (its ``resume`` field empty)."""
    character: str
    """The name of the session's character (the server's default one when the hello named none)."""
    turns: tuple[ChatMessage, ...] = ()
    """What was said and heard, oldest first (:attr:`facecast.llm.history.ChatHistory.turns`)."""
    facts: Mapping[str, str] = field(default_factory=dict)
    results: tuple[str, ...] = ()
    """Action results not yet told to the model."""
    pending: Mapping[str, ActionCall] = field(default_factory=dict)
    """Actions sent to the client and not yet answered with ``action_result``, by id."""
    next_utterance: int = 1
    owner: str = ""


def encode_state(state: SessionState) -> bytes:
    """The stored form of ``state``. Raises :class:`StateError` when it is over :data:`MAX_STATE_BYTES`."""
    body = {
        "format": FORMAT,
        "owner": state.owner,
        "character": state.character,
        "hello": json.loads(proto.encode_message(state.hello)),
        "next_utterance": state.next_utterance,
        "turns": [{"role": m.role, "content": m.content} for m in state.turns],
        "facts": dict(state.facts),
        "results": list(state.results),
        "pending": [{"id": k, "name": c.name, "arguments": c.arguments} for k, c in state.pending.items()],
    }
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    if len(data) > MAX_STATE_BYTES:
        raise StateError(f"the session state is {len(data)} bytes; the limit is {MAX_STATE_BYTES}")
    return data


def decode_state(data: bytes) -> SessionState:
    """The state a stored record holds. Raises :class:`StateError` saying what is wrong with it."""
    if len(data) > MAX_STATE_BYTES:
        raise StateError(f"the stored state is {len(data)} bytes; the limit is {MAX_STATE_BYTES}")
    try:
        body = jsonlimits.loads(data, MAX_STATE_BYTES)
    except jsonlimits.JsonLimitError as exc:
        raise StateError(f"the stored state is not valid JSON: {exc.message}") from None
    if not isinstance(body, dict):
        raise StateError("the stored state is not a JSON object")
    if body.get("format") != FORMAT:
        raise StateError(f"the stored state has format {body.get('format')!r}; this server reads {FORMAT}")
    hello_raw = body.get("hello")
    if not isinstance(hello_raw, dict) or hello_raw.get("type") != "hello" or "resume" in hello_raw:
        raise StateError("the stored state's 'hello' is not a hello")
    try:
        hello = proto.decode_client_text(json.dumps(hello_raw))
    except proto.ProtocolError as exc:
        raise StateError(f"the stored hello is refused: {exc.message}") from None
    assert isinstance(hello, proto.Hello)
    return SessionState(
        hello,
        _text(body, "character"),
        tuple(_turn(item) for item in _list(body, "turns")),
        _facts(body.get("facts")),
        tuple(_string(item, "results") for item in _list(body, "results")),
        _pending(_list(body, "pending")),
        _count(body.get("next_utterance")),
        _text(body, "owner"),
    )


def _text(body: Mapping[str, Any], key: str) -> str:
    return _string(body.get(key), key)


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise StateError(f"the stored state's {what!r} must hold strings")
    return value


def _list(body: Mapping[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    if not isinstance(value, list):
        raise StateError(f"the stored state's {key!r} must be a list")
    return value


def _turn(item: Any) -> ChatMessage:
    if not isinstance(item, dict) or item.get("role") not in ("user", "assistant"):
        raise StateError("each stored turn must be {role: user|assistant, content}")
    return ChatMessage(item["role"], _string(item.get("content"), "turns"))


def _facts(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise StateError("the stored state's 'facts' must be an object of strings")
    return dict(value)


def _pending(items: list[Any]) -> dict[str, ActionCall]:
    if len(items) > _MAX_PENDING:
        raise StateError(f"the stored state holds {len(items)} pending actions; the limit is {_MAX_PENDING}")
    found: dict[str, ActionCall] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("arguments"), dict):
            raise StateError("each stored pending action must be {id, name, arguments: {...}}")
        found[_string(item.get("id"), "pending")] = ActionCall(_string(item.get("name"), "pending"), item["arguments"])
    return found


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**32:
        raise StateError(f"the stored state's 'next_utterance' must be an utterance id, got {value!r}")
    return value
