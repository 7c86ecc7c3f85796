"""Engine WebSocket protocol v1: sans-I/O codec (no sockets, no asyncio). Specified in docs/protocol.md.

Text frames carry JSON objects with a ``type``; binary frames carry audio and face data behind a fixed
16-byte little-endian header, so an Unreal C++/Blueprint client needs no serialization library:

=========  ======  ==========================================================================
offset     type    field
=========  ======  ==========================================================================
0          u8      kind: 1 = microphone PCM (up), 2 = reply audio (down), 3 = face frames (down)
1          u8      protocol version (1)
2          u16     flags (0; reserved)
4          u32     utterance id (0 for microphone audio)
8          ...     kind 1/2: u64 sample offset (per channel) of the first sample, then PCM16 samples
8          ...     kind 3: u32 first frame index, u16 frame count, u16 values per frame (68), then
                   count x values float32
=========  ======  ==========================================================================
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..actions import Action, actions_from_json
from ..errors import ConfigError, FacecastError
from ..types import FACE_WIDTH, Float32Array
from . import jsonlimits

__all__ = [
    "VERSION",
    "MAX_TEXT_FRAME",
    "MAX_BINARY_FRAME",
    "MAX_WIRE_FRAME",
    "MAX_TYPED_TEXT",
    "ProtocolError",
    "AudioFormat",
    "Hello",
    "UserText",
    "EndOfSpeech",
    "PlaybackStarted",
    "PlaybackFinished",
    "Interrupt",
    "Ping",
    "Bye",
    "GameContext",
    "ActionResult",
    "MAX_ACTION_RESULT",
    "MAX_FACT_NAME",
    "ClientMessage",
    "MicAudio",
    "AudioPacket",
    "FacePacket",
    "BinaryPacket",
    "decode_client_text",
    "encode_server",
    "encode_client",
    "decode_server_text",
    "encode_audio",
    "encode_mic",
    "encode_face",
    "decode_binary",
    "WORKFLOWS",
    "SESSION_ID",
    "LiveLinkInfo",
    "Welcome",
    "TranscriptUpdate",
    "UtteranceStart",
    "ReplyText",
    "EmotionChange",
    "UtteranceEnd",
    "ClearBuffer",
    "ActionMessage",
    "Timing",
    "ErrorMessage",
    "Pong",
    "Notice",
    "ServerMessage",
    "encode_message",
    "decode_server",
]

VERSION = 1
HEADER = struct.Struct("<BBHIQ")
FACE_HEADER = struct.Struct("<BBHIIHH")
KIND_MIC, KIND_AUDIO, KIND_FACE = 1, 2, 3
MAX_TEXT_FRAME = 64 * 1024
"""Largest JSON text frame accepted, in UTF-8 bytes (not characters)."""
MAX_BINARY_FRAME = 1024 * 1024
"""Largest binary frame accepted, in bytes (about 5 s of 48 kHz stereo PCM16)."""
MAX_WIRE_FRAME = 4 * MAX_BINARY_FRAME
"""Largest frame the WebSocket layer reads at all: a larger one closes the connection (1009). Frames between
the limits above and this one are read and refused with ``too_large``; the connection stays open."""
MAX_TYPED_TEXT = 4000
"""Longest typed user text, in characters."""
MAX_FACT_NAME = 64
"""Longest name of a ``context`` fact, in UTF-8 bytes. (How many facts a session holds, and how many bytes in
all, is bounded where they are kept: :mod:`facecast.llm.facts`.)"""
WORKFLOWS = ("conversation", "say", "puppet", "lipsync")
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
"""A session id (``welcome.session``, ``hello.resume``): 16 to 64 URL-safe base64 characters."""
RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)


class ProtocolError(FacecastError, ValueError):
    """A message that breaks the protocol (of the engine link or of a standalone service). ``code`` (per
    instance: ``bad_message``, ``too_large``, ``bad_version``...) goes into the ``error`` message sent back."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- JSON messages ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudioFormat:
    rate: int = 24000
    channels: int = 1


@dataclass(frozen=True, slots=True)
class Hello:
    version: int = VERSION
    audio: AudioFormat = field(default_factory=AudioFormat)
    """Format the client wants reply audio in."""
    mic: AudioFormat = field(default_factory=lambda: AudioFormat(16000, 1))
    """Format of the microphone PCM the client will send."""
    face: bool = True
    """Whether face frames are wanted over the socket (Live Link UDP is separate)."""
    subject: str = ""
    """Live Link subject name for this session ('' = the server's default)."""
    workflow: str = "conversation"
    acks: bool = True
    """Whether the client sends ``playback_started`` (face frames wait for it)."""
    turns: str = "server"
    """``server``: the server detects the player's turns (VAD); ``client``: push-to-talk, ``end_of_speech``."""
    character: str = ""
    """A character defined in the server's config, by name ('' = the server's default character)."""
    actions: tuple[Action, ...] = ()
    """What the character may do in the game (:mod:`facecast.actions`), offered to its language model."""
    resume: str = ""
    """The id of a session to resume (its ``welcome.session``); '' = a new session."""


@dataclass(frozen=True, slots=True)
class UserText:
    text: str


@dataclass(frozen=True, slots=True)
class EndOfSpeech:
    """Push-to-talk: the microphone audio sent since the last turn is a complete utterance."""


@dataclass(frozen=True, slots=True)
class PlaybackStarted:
    utterance: int
    at: float | None = None
    """Optional client clock time (seconds) when playback started; informational."""


@dataclass(frozen=True, slots=True)
class PlaybackFinished:
    utterance: int
    position: int
    """Samples of the utterance (at the client's output rate) actually played."""
    interrupted: bool = False


@dataclass(frozen=True, slots=True)
class Interrupt:
    """Stop the current reply now (the client's own barge-in button)."""


@dataclass(frozen=True, slots=True)
class Ping:
    id: int | str | None = None


@dataclass(frozen=True, slots=True)
class Bye:
    """Clean close: the server finishes nothing further and closes the socket."""


@dataclass(frozen=True, slots=True)
class GameContext:
    """What is true now in the game (``context``): each of ``facts`` is set to its text, or removed (None);
    with ``replace`` the facts it does not name are removed too. Numbers and booleans arrive as their JSON
    text (``12``, ``true``)."""

    facts: dict[str, str | None]
    replace: bool = False


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The engine's answer to an ``action``: whether it happened, and what came of it (any JSON, small);
    the character's language model is told on the next turn."""

    id: str
    ok: bool = True
    result: Any = None


MAX_ACTION_RESULT = 2048
"""Bytes of an ``action_result``'s ``result`` as JSON."""

ClientMessage = (
    Hello
    | UserText
    | EndOfSpeech
    | PlaybackStarted
    | PlaybackFinished
    | Interrupt
    | Ping
    | Bye
    | GameContext
    | ActionResult
)


def _obj(text: str | bytes) -> dict[str, Any]:
    try:
        data = jsonlimits.loads(text, MAX_TEXT_FRAME)
    except jsonlimits.JsonLimitError as exc:
        raise ProtocolError(exc.code, f"text message refused: {exc.message}") from None
    if not isinstance(data, dict):
        raise ProtocolError("bad_message", "message must be a JSON object")
    if not isinstance(data.get("type"), str):
        raise ProtocolError("bad_message", "message needs a string 'type'")
    return data


def _int(data: dict[str, Any], key: str, lo: int, hi: int, default: int | None = None) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ProtocolError("bad_message", f"'{key}' must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _format(data: dict[str, Any], key: str, default: AudioFormat) -> AudioFormat:
    raw = data.get(key)
    if raw is None:
        return default
    if not isinstance(raw, dict):
        raise ProtocolError("bad_message", f"'{key}' must be an object {{rate, channels}}")
    rate = _int(raw, "rate", 1, 10**6, default.rate)
    if rate not in RATES:
        raise ProtocolError("bad_audio_format", f"{key}.rate {rate} is not supported; use one of {RATES}")
    return AudioFormat(rate, _int(raw, "channels", 1, 2, default.channels))


def _hello(data: dict[str, Any]) -> Hello:
    version = _int(data, "version", 0, 2**31, VERSION)
    if version != VERSION:
        raise ProtocolError("bad_version", f"protocol version {version} is not supported; this server speaks {VERSION}")
    subject = data.get("subject", "")
    if not isinstance(subject, str) or len(subject.encode()) > 256 or jsonlimits.has_control_chars(subject):
        raise ProtocolError(
            "bad_message", "'subject' must be a string of at most 256 bytes, without control characters"
        )
    workflow = data.get("workflow", "conversation")
    if workflow not in WORKFLOWS:
        raise ProtocolError("bad_message", f"'workflow' must be one of {WORKFLOWS}, got {workflow!r}")
    flags = {}
    for key in ("face", "acks"):
        flags[key] = data.get(key, True)
        if not isinstance(flags[key], bool):
            raise ProtocolError("bad_message", f"'{key}' must be true or false")
    turns = data.get("turns", "server")
    if turns not in ("server", "client"):
        raise ProtocolError("bad_message", f"'turns' must be 'server' or 'client', got {turns!r}")
    character = data.get("character", "")
    if not isinstance(character, str) or len(character.encode()) > 256 or jsonlimits.has_control_chars(character):
        raise ProtocolError(
            "bad_message", "'character' must be a string of at most 256 bytes, without control characters"
        )
    try:
        actions = actions_from_json(data.get("actions", []), "'actions'")
    except ConfigError as exc:
        raise ProtocolError("bad_message", str(exc)) from None
    resume = data.get("resume", "")
    if not isinstance(resume, str) or (resume and not SESSION_ID.match(resume)):
        raise ProtocolError(
            "bad_message", "'resume' must be a session id from a 'welcome' (16 to 64 letters, digits, '-' or '_')"
        )
    return Hello(
        version,
        _format(data, "audio", AudioFormat()),
        _format(data, "mic", AudioFormat(16000, 1)),
        flags["face"],
        subject,
        workflow,
        flags["acks"],
        turns,
        character,
        actions,
        resume,
    )


def _user_text(data: dict[str, Any]) -> UserText:
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ProtocolError("bad_message", "'text' must be a non-empty string")
    if len(text) > MAX_TYPED_TEXT:
        raise ProtocolError("too_large", f"'text' has {len(text)} characters; the limit is {MAX_TYPED_TEXT}")
    if jsonlimits.has_control_chars(text, allow="\t\n\r"):
        raise ProtocolError("bad_message", "'text' holds control characters (NUL, ESC...)")
    return UserText(text)


def _fact_text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):  # finite: NaN and Infinity are refused as bad_json
        return json.dumps(value)
    if not isinstance(value, str):
        raise ProtocolError("bad_message", f"fact {name!r}: the value must be a string, a number, true/false or null")
    if jsonlimits.has_control_chars(value):
        raise ProtocolError("bad_message", f"fact {name!r}: the value holds control characters (newline, NUL...)")
    return value


def _context(data: dict[str, Any]) -> GameContext:
    facts = data.get("facts")
    if not isinstance(facts, dict):
        raise ProtocolError("bad_message", "'facts' must be an object of fact name -> value (null removes a fact)")
    replace = data.get("replace", False)
    if not isinstance(replace, bool):
        raise ProtocolError("bad_message", "'replace' must be true or false")
    found: dict[str, str | None] = {}
    for name, value in facts.items():
        if not name.strip() or len(name.encode()) > MAX_FACT_NAME or jsonlimits.has_control_chars(name):
            raise ProtocolError(
                "bad_message",
                f"fact name {name[:80]!r}: names are 1 to {MAX_FACT_NAME} bytes, without control characters",
            )
        found[name] = _fact_text(name, value)
    return GameContext(found, replace)


def decode_client_text(text: str | bytes) -> ClientMessage:
    """Parse one JSON text frame from a client. Raises :class:`ProtocolError` for anything malformed."""
    data = _obj(text)
    kind = data["type"]
    if kind == "hello":
        return _hello(data)
    if kind == "text":
        return _user_text(data)
    if kind == "end_of_speech":
        return EndOfSpeech()
    if kind == "playback_started":
        at = data.get("at")
        if at is not None and (isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at)):
            raise ProtocolError("bad_message", "'at' must be a number")
        return PlaybackStarted(_int(data, "utterance", 0, 2**32 - 1), None if at is None else float(at))
    if kind == "playback_finished":
        interrupted = data.get("interrupted", False)
        if not isinstance(interrupted, bool):
            raise ProtocolError("bad_message", "'interrupted' must be true or false")
        return PlaybackFinished(
            _int(data, "utterance", 0, 2**32 - 1), _int(data, "position", 0, 2**63 - 1), interrupted
        )
    if kind == "interrupt":
        return Interrupt()
    if kind == "ping":
        ident = data.get("id")
        if ident is not None and (isinstance(ident, bool) or not isinstance(ident, int | str)):
            raise ProtocolError("bad_message", "'id' must be a number or a string")
        return Ping(ident)
    if kind == "bye":
        return Bye()
    if kind == "context":
        return _context(data)
    if kind == "action_result":
        return _action_result(data)
    raise ProtocolError("unknown_type", f"unknown message type {kind!r}")


def _action_result(data: dict[str, Any]) -> ActionResult:
    ident, ok = data.get("id"), data.get("ok", True)
    if not isinstance(ident, str) or not ident or len(ident) > 64:
        raise ProtocolError("bad_message", "'id' must be the id of an action the server sent")
    if not isinstance(ok, bool):
        raise ProtocolError("bad_message", "'ok' must be true or false")
    result = data.get("result")
    if len(json.dumps(result, ensure_ascii=False).encode("utf-8", "surrogatepass")) > MAX_ACTION_RESULT:
        raise ProtocolError("too_large", f"'result' is over {MAX_ACTION_RESULT} bytes as JSON")
    return ActionResult(ident, ok, result)


def encode_server(kind: str, **fields: Any) -> str:
    """Serialise a server message: ``encode_server("utterance_start", utterance=3, rate=24000)``.

    The result is always sendable as a WebSocket text frame: a lone surrogate in a field (text that came
    from elsewhere) is escaped as ``\\udXXX`` rather than making the frame unencodable."""
    text = json.dumps({"type": kind, **fields}, separators=(",", ":"), ensure_ascii=False)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps({"type": kind, **fields}, separators=(",", ":"))
    return text


def encode_client(message: ClientMessage) -> str:
    """Serialise a client message (used by ``facecast engine-sim`` and tests); :func:`encode_message` too."""
    return encode_message(message)


def decode_server_text(text: str | bytes) -> dict[str, Any]:
    """Parse a server JSON message into its raw object (client side). Raises :class:`ProtocolError` when
    malformed. :func:`decode_server` gives the typed message."""
    return _obj(text)


# -- server -> client JSON messages (docs/protocol.md, "Server -> client") --------------------------


@dataclass(frozen=True, slots=True)
class LiveLinkInfo:
    """The Live Link subject a session drives; ``epoch`` is the server's monotonic time of frame number 0."""

    subject: str
    device_id: str
    epoch: float | None = None


@dataclass(frozen=True, slots=True)
class Welcome:
    """The session is accepted. ``face`` says whether face frames come over the socket (always 60 x 68)."""

    audio: AudioFormat
    face: bool
    acks: bool
    ack_timeout: float
    workflow: str
    turns: str
    livelink: LiveLinkInfo | None = None
    version: int = VERSION
    session: str = ""
    """The session's id, for a later ``hello.resume`` ('' = a server that keeps no sessions: not sent)."""
    resumed: bool = False
    """Whether this session continues a stored one (sent with ``session``)."""


@dataclass(frozen=True, slots=True)
class TranscriptUpdate:
    text: str
    final: bool
    typed: bool = False
    """True for text the client typed (the field is sent only when true)."""


@dataclass(frozen=True, slots=True)
class UtteranceStart:
    utterance: int
    rate: int
    channels: int = 1


@dataclass(frozen=True, slots=True)
class ReplyText:
    utterance: int
    text: str
    at: int
    """Sample offset (client rate) where this text's audio starts."""


@dataclass(frozen=True, slots=True)
class EmotionChange:
    utterance: int
    emotion: str


@dataclass(frozen=True, slots=True)
class UtteranceEnd:
    utterance: int
    samples: int
    frames: int
    text: str = ""


@dataclass(frozen=True, slots=True)
class ActionMessage:
    """The character acts: at sample ``at`` of utterance ``utterance`` (the client's rate; its audio up to
    there is the words before the action), call ``name`` with ``arguments``. Answer with ``action_result``."""

    utterance: int
    id: str
    at: int
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ClearBuffer:
    utterance: int
    reason: str | None = None
    """``barge_in``, ``interrupt``, ``new_turn``; None (not sent) for an abandoned utterance."""


@dataclass(frozen=True, slots=True)
class Timing:
    utterance: int
    stages: dict[str, float]
    """Milliseconds from the end of the player's speech, per stage (a fresh dict per message; never shared)."""
    speech_end_sample: int | None = None
    """Since 1.5: the microphone sample (the client's mic rate, counted from the first microphone sample of the
    session) at which the server's VAD judged the speech ended; absent for typed text and ``end_of_speech``."""


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Pong:
    id: int | str | None = None


@dataclass(frozen=True, slots=True)
class Notice:
    """Any other server event (``failover``, and types a newer server adds): its ``type`` and fields."""

    type: str
    fields: dict[str, Any]


ServerMessage = (
    Welcome
    | TranscriptUpdate
    | UtteranceStart
    | ReplyText
    | EmotionChange
    | UtteranceEnd
    | ClearBuffer
    | ActionMessage
    | Timing
    | ErrorMessage
    | Pong
    | Notice
)

_NAMES: dict[type, str] = {
    Hello: "hello", UserText: "text", EndOfSpeech: "end_of_speech", PlaybackStarted: "playback_started",
    PlaybackFinished: "playback_finished", Interrupt: "interrupt", Ping: "ping", Bye: "bye", GameContext: "context",
    Welcome: "welcome", TranscriptUpdate: "transcript", UtteranceStart: "utterance_start", ReplyText: "reply_text",
    EmotionChange: "emotion", UtteranceEnd: "utterance_end", ClearBuffer: "clear_buffer", Timing: "timing",
    ErrorMessage: "error", Pong: "pong", ActionResult: "action_result", ActionMessage: "action",
}  # fmt: skip
_KEEP_NONE = (Pong,)  # ``{"type": "pong", "id": null}`` answers a ping without an id


def _body(message: ClientMessage | ServerMessage) -> dict[str, Any]:
    if isinstance(message, Notice):
        return dict(message.fields)
    if isinstance(message, Welcome):
        body: dict[str, Any] = {
            "version": message.version, "audio": asdict(message.audio),
            "face": {"fps": 60, "width": FACE_WIDTH, "enabled": message.face}, "acks": message.acks,
            "ack_timeout": message.ack_timeout, "workflow": message.workflow, "turns": message.turns,
        }  # fmt: skip
        if message.livelink is not None:
            body["livelink"] = asdict(message.livelink)
        if message.session:
            body["session"], body["resumed"] = message.session, message.resumed
        return body
    body = asdict(message)
    if isinstance(message, TranscriptUpdate) and not message.typed:
        del body["typed"]
    if isinstance(message, GameContext) and not message.replace:
        del body["replace"]
    if isinstance(message, Hello) and not message.character:
        del body["character"]  # optional: a hello without it is the version-1 hello byte for byte
    if isinstance(message, Hello) and not message.resume:
        del body["resume"]
    if isinstance(message, Hello):
        if message.actions:
            body["actions"] = [_declaration(a) for a in message.actions]
        else:
            del body["actions"]
    if isinstance(message, ActionResult) and message.result is None:
        del body["result"]
    if not isinstance(message, _KEEP_NONE):
        body = {k: v for k, v in body.items() if v is not None}
    return body


def _declaration(action: Action) -> dict[str, Any]:
    out: dict[str, Any] = {"name": action.name, "description": action.description}
    if action.parameters is not None:
        out["parameters"] = dict(action.parameters)
    return out


def encode_message(message: ClientMessage | ServerMessage) -> str:
    """Serialise any JSON message of either direction to the text frame docs/protocol.md specifies."""
    kind = message.type if isinstance(message, Notice) else _NAMES[type(message)]
    return encode_server(kind, **_body(message))


def _str(data: dict[str, Any], key: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ProtocolError("bad_message", f"'{key}' must be a string, got {value!r}")
    return value


def _bool(data: dict[str, Any], key: str, default: bool | None = None) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ProtocolError("bad_message", f"'{key}' must be true or false, got {value!r}")
    return value


def _welcome(data: dict[str, Any]) -> Welcome:
    face = data.get("face")
    if not isinstance(face, dict):
        raise ProtocolError("bad_message", "'face' must be an object {fps, width, enabled}")
    timeout = data.get("ack_timeout")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ProtocolError("bad_message", "'ack_timeout' must be a number")
    info = data.get("livelink")
    livelink = None
    if isinstance(info, dict):
        epoch = info.get("epoch")
        livelink = LiveLinkInfo(
            _str(info, "subject"), _str(info, "device_id"), float(epoch) if isinstance(epoch, int | float) else None
        )
    return Welcome(
        _format(data, "audio", AudioFormat()),
        _bool(face, "enabled"),
        _bool(data, "acks"),
        float(timeout),
        _str(data, "workflow"),
        _str(data, "turns"),
        livelink,
        _int(data, "version", 0, 2**31),
        _str(data, "session", ""),
        _bool(data, "resumed", False),
    )


def _utt(data: dict[str, Any]) -> int:
    return _int(data, "utterance", 0, 2**32 - 1)


def decode_server(text: str | bytes) -> ServerMessage:
    """Parse one server JSON text frame into its typed message (client side: engine-sim, tests).

    A type this client does not know comes back as :class:`Notice` (clients must ignore unknown types).
    Raises :class:`ProtocolError` for a frame that is not a JSON object, or a known type with bad fields."""
    data = _obj(text)
    kind = data.pop("type")
    if kind == "welcome":
        return _welcome(data)
    if kind == "transcript":
        return TranscriptUpdate(_str(data, "text"), _bool(data, "final"), _bool(data, "typed", False))
    if kind == "utterance_start":
        return UtteranceStart(_utt(data), _int(data, "rate", 1, 10**6), _int(data, "channels", 1, 2, 1))
    if kind == "reply_text":
        return ReplyText(_utt(data), _str(data, "text"), _int(data, "at", 0, 2**63 - 1))
    if kind == "emotion":
        return EmotionChange(_utt(data), _str(data, "emotion"))
    if kind == "utterance_end":
        return UtteranceEnd(
            _utt(data), _int(data, "samples", 0, 2**63 - 1), _int(data, "frames", 0, 2**63 - 1), _str(data, "text", "")
        )
    if kind == "clear_buffer":
        reason = data.get("reason")
        return ClearBuffer(_utt(data), None if reason is None else _str(data, "reason"))
    if kind == "timing":
        stages = data.get("stages")
        if not isinstance(stages, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in stages.values()
        ):
            raise ProtocolError("bad_message", "'stages' must be an object of numbers")
        sample = data.get("speech_end_sample")
        return Timing(
            _utt(data),
            {str(k): float(v) for k, v in stages.items()},
            None if sample is None else _int(data, "speech_end_sample", 0, 2**63 - 1),
        )
    if kind == "action":
        arguments = data.get("arguments")
        if not isinstance(arguments, dict):
            raise ProtocolError("bad_message", "'arguments' must be an object")
        return ActionMessage(
            _utt(data), _str(data, "id"), _int(data, "at", 0, 2**63 - 1), _str(data, "name"), arguments
        )
    if kind == "error":
        return ErrorMessage(_str(data, "code"), _str(data, "message", ""))
    if kind == "pong":
        ident = data.get("id")
        return Pong(ident if isinstance(ident, int | str) and not isinstance(ident, bool) else None)
    return Notice(kind, data)


# -- binary frames ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class MicAudio:
    offset: int
    pcm: bytes
    """Interleaved PCM16 little-endian, in the format the hello declared."""


@dataclass(frozen=True, slots=True, eq=False)
class AudioPacket:
    utterance: int
    offset: int
    pcm: bytes


@dataclass(frozen=True, slots=True, eq=False)
class FacePacket:
    utterance: int
    start: int
    values: Float32Array
    """count x width float32 frames."""


BinaryPacket = MicAudio | AudioPacket | FacePacket


def _audio(kind: int, utterance: int, offset: int, pcm: bytes) -> bytes:
    if len(pcm) % 2:
        raise ValueError("PCM16 payload must have an even number of bytes")
    return HEADER.pack(kind, VERSION, 0, utterance, offset) + pcm


def encode_audio(utterance: int, offset: int, pcm: bytes) -> bytes:
    """A reply audio frame (server -> client): PCM16 in the client's hello format."""
    return _audio(KIND_AUDIO, utterance, offset, pcm)


def encode_mic(offset: int, pcm: bytes) -> bytes:
    """A microphone frame (client -> server)."""
    return _audio(KIND_MIC, 0, offset, pcm)


def encode_face(utterance: int, start: int, values: np.ndarray) -> bytes:
    """Face frames (server -> client): ``values`` is count x 68."""
    arr = np.ascontiguousarray(values, dtype="<f4")
    if arr.ndim != 2 or arr.shape[0] > 0xFFFF:
        raise ValueError(f"face values must be count x width with count < 65536, got {arr.shape}")
    return FACE_HEADER.pack(KIND_FACE, VERSION, 0, utterance, start, arr.shape[0], arr.shape[1]) + arr.tobytes()


def decode_binary(data: bytes) -> BinaryPacket:
    """Parse a binary frame of either direction. Raises :class:`ProtocolError` when malformed."""
    if len(data) > MAX_BINARY_FRAME:
        raise ProtocolError("too_large", f"binary message of {len(data)} bytes exceeds {MAX_BINARY_FRAME}")
    if len(data) < HEADER.size:
        raise ProtocolError("bad_binary", f"binary message of {len(data)} bytes is shorter than the 16-byte header")
    kind, version = data[0], data[1]
    if version != VERSION:
        raise ProtocolError("bad_version", f"binary message has version {version}, expected {VERSION}")
    if kind in (KIND_MIC, KIND_AUDIO):
        _, _, _, utterance, offset = HEADER.unpack_from(data)
        payload = bytes(data[HEADER.size :])
        if len(payload) % 2:
            raise ProtocolError("bad_binary", "PCM16 payload has an odd number of bytes")
        if kind == KIND_MIC:
            return MicAudio(offset, payload)
        return AudioPacket(utterance, offset, payload)
    if kind == KIND_FACE:
        _, _, _, utterance, start, count, width = FACE_HEADER.unpack_from(data)
        expected = FACE_HEADER.size + count * width * 4
        if width != FACE_WIDTH or len(data) != expected:
            raise ProtocolError(
                "bad_binary", f"face message: width {width} (want {FACE_WIDTH}), {len(data)} bytes (want {expected})"
            )
        values = np.frombuffer(data, dtype="<f4", offset=FACE_HEADER.size).reshape(count, width).astype(np.float32)
        return FacePacket(utterance, start, values)
    raise ProtocolError("bad_binary", f"unknown binary message kind {kind}")
