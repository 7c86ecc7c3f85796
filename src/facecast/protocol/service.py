"""Service protocol v1: sans-I/O codec for the standalone STT/LLM/TTS/face servers (``facecast serve``).

Specified in docs/protocol.md ("Service protocol"). Text frames carry one JSON object with a string ``type``;
binary frames carry audio (float32) and face frames behind fixed little-endian headers:

audio (kind 1), 24-byte header, then ``count`` float32 samples (mono, in [-1, 1]):

=========  ======  ==============================================================
offset     type    field
=========  ======  ==============================================================
0          u8      kind = 1
1          u8      protocol version (1)
2          u16     flags (0; reserved)
4          u32     request id
8          u64     sample offset of the first sample, from the stream's start
16         u32     sample rate (Hz)
20         u32     sample count
=========  ======  ==============================================================

face (kind 2), 16-byte header, then ``count`` x ``width`` float32 (width 68):
``u8 kind=2, u8 version, u16 flags, u32 request id, u32 first frame index, u16 count, u16 width``.

Every decoder raises :class:`ProtocolError` (with a stable ``code``) for anything malformed; nothing here
does I/O, so the same functions serve the servers, the clients and the fuzz tests.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..types import ALPHABETS, FACE_WIDTH, AudioChunk, ChatMessage, FaceFrames, Phoneme, Transcript, Word
from .engine import ProtocolError

__all__ = [
    "VERSION",
    "ROLES",
    "RATES",
    "MAX_TEXT_FRAME",
    "MAX_BINARY_FRAME",
    "MAX_SPEAK_TEXT",
    "MAX_TIMING_ITEMS",
    "AUDIO_HEADER",
    "FACE_HEADER",
    "ProtocolError",
    "Role",
    "Hello",
    "Welcome",
    "Transcribe",
    "Chat",
    "Synthesize",
    "Animate",
    "Timing",
    "End",
    "Cancel",
    "Ping",
    "Pong",
    "TranscriptOut",
    "Token",
    "Done",
    "Error",
    "ClientMessage",
    "ServerMessage",
    "Message",
    "AudioFrame",
    "FaceFrame",
    "encode",
    "decode_client",
    "decode_server",
    "encode_audio",
    "encode_face",
    "decode_binary",
    "transcript",
]

VERSION = 1
Role = Literal["stt", "llm", "tts", "face"]
ROLES: tuple[Role, ...] = ("stt", "llm", "tts", "face")
RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
"""Sample rates accepted in requests and audio frames."""
MAX_TEXT_FRAME = 256 * 1024
"""Largest JSON text frame, in bytes (a long chat history fits)."""
MAX_BINARY_FRAME = 1024 * 1024
"""Largest binary frame, in bytes (about 5 s of 48 kHz float32 audio)."""
MAX_SPEAK_TEXT = 10_000
"""Longest text one ``synthesize`` request may speak, in characters."""
MAX_TIMING_ITEMS = 4096
"""Most phonemes (and most words) in one ``timing`` message."""
MAX_ID = 2**32 - 1
AUDIO_HEADER = struct.Struct("<BBHIQII")
FACE_HEADER = struct.Struct("<BBHIIHH")
KIND_AUDIO, KIND_FACE = 1, 2


# -- messages -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """First client message: the role the client expects this server to serve."""

    role: Role
    version: int = VERSION


@dataclass(frozen=True, slots=True)
class Welcome:
    """Answer to ``hello``. ``rate`` is the TTS's native rate (0 for other roles)."""

    role: Role
    rate: int = 0
    version: int = VERSION


@dataclass(frozen=True, slots=True)
class Transcribe:
    """STT request; the client then streams audio frames at ``rate`` with this ``id`` and sends ``end``."""

    id: int
    rate: int


@dataclass(frozen=True, slots=True)
class Chat:
    """LLM request; the server streams ``token`` messages then ``done``."""

    id: int
    messages: tuple[ChatMessage, ...]


@dataclass(frozen=True, slots=True)
class Synthesize:
    """TTS request: speak ``text`` with audio at ``rate``; ``timing`` precedes the audio frame it belongs to."""

    id: int
    text: str
    rate: int


@dataclass(frozen=True, slots=True)
class Animate:
    """Face request; the client streams ``timing`` + audio frames at ``rate``, then ``end``."""

    id: int
    rate: int


@dataclass(frozen=True, slots=True)
class Timing:
    """Phonemes and words that start inside the next audio frame of request ``id`` (either direction)."""

    id: int
    phonemes: tuple[Phoneme, ...] = ()
    words: tuple[Word, ...] = ()


@dataclass(frozen=True, slots=True)
class End:
    """The client's input stream for request ``id`` is complete."""

    id: int


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop request ``id`` now; the server stops its work and sends nothing more for it."""

    id: int


@dataclass(frozen=True, slots=True)
class Ping:
    """Heartbeat; the peer answers ``pong`` with the same ``id`` at once, even while busy."""

    id: int = 0


@dataclass(frozen=True, slots=True)
class Pong:
    id: int = 0


@dataclass(frozen=True, slots=True)
class TranscriptOut:
    id: int
    text: str
    final: bool


@dataclass(frozen=True, slots=True)
class Token:
    id: int
    text: str


@dataclass(frozen=True, slots=True)
class Done:
    """Request ``id`` finished normally; no more output follows for it."""

    id: int


@dataclass(frozen=True, slots=True)
class Error:
    """A bad message (``id`` 0 when not tied to a request) or a failed request (which then ends)."""

    code: str
    message: str
    id: int = 0


ClientMessage = Hello | Transcribe | Chat | Synthesize | Animate | Timing | End | Cancel | Ping | Pong
ServerMessage = Welcome | TranscriptOut | Token | Timing | Done | Error | Ping | Pong
Message = ClientMessage | ServerMessage

_NAMES: dict[type, str] = {
    Hello: "hello",
    Welcome: "welcome",
    Transcribe: "transcribe",
    Chat: "chat",
    Synthesize: "synthesize",
    Animate: "animate",
    Timing: "timing",
    End: "end",
    Cancel: "cancel",
    Ping: "ping",
    Pong: "pong",
    TranscriptOut: "transcript",
    Token: "token",
    Done: "done",
    Error: "error",
}


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
"""One encoder for every message: ``json.dumps`` with options would build a new one per call."""


def encode(message: Message) -> str:
    """Serialise any JSON message of either direction (compact, UTF-8 kept as is)."""
    body: dict[str, Any] = {"type": _NAMES[type(message)]}
    if isinstance(message, Chat):
        body["id"] = message.id
        body["messages"] = [{"role": m.role, "content": m.content} for m in message.messages]
    elif isinstance(message, Timing):
        body["id"] = message.id
        body["phonemes"] = [[p.symbol, p.start, p.end] for p in message.phonemes]
        alphabets = {p.alphabet for p in message.phonemes}
        if alphabets - {"espeak"}:
            if len(alphabets) > 1:
                raise ValueError(f"one timing message carries phonemes of one alphabet, got {sorted(alphabets)}")
            body["alphabet"] = alphabets.pop()
        body["words"] = [[w.text, w.start, w.end] for w in message.words]
    else:
        for name in message.__slots__:  # every message is a slots dataclass
            body[name] = getattr(message, name)
    return _ENCODER.encode(body)


# -- decoding -----------------------------------------------------------------------------------


def _bad(message: str, code: str = "bad_message") -> ProtocolError:
    return ProtocolError(code, message)


def _object(data: str | bytes) -> dict[str, Any]:
    size = len(data)
    if isinstance(data, str) and size * 4 > MAX_TEXT_FRAME and not data.isascii():  # the limit is in bytes
        size = len(data.encode("utf-8", "surrogatepass"))
    if size > MAX_TEXT_FRAME:
        raise _bad(f"text message of {size} bytes exceeds {MAX_TEXT_FRAME}", "too_large")
    if isinstance(data, bytes | bytearray):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _bad(f"text message is not UTF-8: {exc.reason}", "bad_utf8") from None
    try:
        obj = _DECODER.decode(data)
    except ProtocolError:
        raise
    except (ValueError, RecursionError) as exc:
        raise _bad(f"message is not valid JSON: {exc}", "bad_json") from None
    if not isinstance(obj, dict):
        raise _bad("message must be a JSON object")
    if not isinstance(obj.get("type"), str):
        raise _bad("message needs a string 'type'")
    return obj


def _no_constant(name: str) -> Any:
    raise _bad(f"{name} is not valid JSON", "bad_json")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)
"""One decoder for every message: ``json.loads`` with options would build a new one per call."""


def _int(obj: dict[str, Any], key: str, lo: int, hi: int, default: int | None = None) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _bad(f"'{key}' must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _id(obj: dict[str, Any]) -> int:
    return _int(obj, "id", 1, MAX_ID)


def _str(obj: dict[str, Any], key: str, limit: int, *, empty: bool = True) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise _bad(f"'{key}' must be a string")
    _utf8(value, key)
    if len(value) > limit:
        raise _bad(f"'{key}' has {len(value)} characters; the limit is {limit}", "too_large")
    if not empty and not value.strip():
        raise _bad(f"'{key}' must not be empty")
    return value


def _utf8(value: str, what: str) -> None:
    if not _is_utf8(value):
        raise _bad(f"'{what}' is not valid UTF-8 (lone surrogate)", "bad_utf8")


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _rate(obj: dict[str, Any]) -> int:
    rate = _int(obj, "rate", 1, 10**6)
    if rate not in RATES:
        raise _bad(f"rate {rate} Hz is not supported; use one of {RATES}", "bad_audio_format")
    return rate


def _role(obj: dict[str, Any], key: str = "role") -> Role:
    role = obj.get(key)
    for known in ROLES:
        if role == known:
            return known
    raise _bad(f"'{key}' must be one of {ROLES}, got {role!r}")


def _version(obj: dict[str, Any]) -> int:
    version = _int(obj, "version", 0, MAX_ID, VERSION)
    if version != VERSION:
        raise _bad(f"protocol version {version} is not supported; this side speaks {VERSION}", "bad_version")
    return version


def _spans(obj: dict[str, Any], key: str, limit: int) -> list[tuple[str, int, int]]:
    raw = obj.get(key, [])
    if not isinstance(raw, list) or len(raw) > MAX_TIMING_ITEMS:
        raise _bad(f"'{key}' must be a list of at most {MAX_TIMING_ITEMS} [text, start, end] items")
    out: list[tuple[str, int, int]] = []
    for item in raw:
        if type(item) is list and len(item) == 3:  # the common, well-formed item, checked in one expression
            text, start, end = item
            if (
                type(text) is str
                and type(start) is int
                and type(end) is int
                and 0 <= start <= end <= 2**53
                and len(text) <= limit
                and (text.isascii() or _is_utf8(text))
            ):
                out.append((text, start, end))
                continue
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)):
            raise _bad(f"each of '{key}' must be [text, start, end]")
        span = dict(zip(("t", "start", "end"), item, strict=True))
        start, end = _int(span, "start", 0, 2**53), _int(span, "end", 0, 2**53)
        if end < start or len(item[0]) > limit:
            raise _bad(f"bad {key} item {item!r}: end before start, or text over {limit} characters")
        _utf8(item[0], key)
        out.append((item[0], start, end))
    return out


def _timing(obj: dict[str, Any]) -> Timing:
    alphabet = obj.get("alphabet", "espeak")
    if alphabet not in ALPHABETS:
        raise _bad(f"'alphabet' must be one of {ALPHABETS}, got {alphabet!r}")
    phonemes = tuple(Phoneme(s[0], s[1], s[2], alphabet) for s in _spans(obj, "phonemes", 16))
    words = tuple(Word(*s) for s in _spans(obj, "words", 256))
    return Timing(_id(obj), phonemes, words)


def _chat(obj: dict[str, Any]) -> Chat:
    raw = obj.get("messages")
    if not isinstance(raw, list) or not raw or len(raw) > 1000:
        raise _bad("'messages' must be a non-empty list of at most 1000 {role, content} objects")
    messages: list[ChatMessage] = []
    for item in raw:
        if not isinstance(item, dict):
            raise _bad("each message must be an object {role, content}")
        role = item.get("role")
        content = _str(item, "content", MAX_TEXT_FRAME)
        if role == "system" or role == "user" or role == "assistant":
            messages.append(ChatMessage(role, content))
        else:
            raise _bad(f"message role must be system, user or assistant, got {role!r}")
    return Chat(_id(obj), tuple(messages))


def decode_client(data: str | bytes) -> ClientMessage:
    """Parse a JSON frame sent by a client (server side). Raises :class:`ProtocolError` when malformed."""
    obj = _object(data)
    kind = obj["type"]
    if kind == "hello":
        return Hello(_role(obj), _version(obj))
    if kind == "transcribe":
        return Transcribe(_id(obj), _rate(obj))
    if kind == "chat":
        return _chat(obj)
    if kind == "synthesize":
        return Synthesize(_id(obj), _str(obj, "text", MAX_SPEAK_TEXT, empty=False), _rate(obj))
    if kind == "animate":
        return Animate(_id(obj), _rate(obj))
    if kind == "timing":
        return _timing(obj)
    if kind == "end":
        return End(_id(obj))
    if kind == "cancel":
        return Cancel(_id(obj))
    if kind == "ping":
        return Ping(_int(obj, "id", 0, MAX_ID, 0))
    if kind == "pong":
        return Pong(_int(obj, "id", 0, MAX_ID, 0))
    raise _bad(f"unknown message type {kind!r}", "unknown_type")


def decode_server(data: str | bytes) -> ServerMessage:
    """Parse a JSON frame sent by a server (client side). Raises :class:`ProtocolError` when malformed."""
    obj = _object(data)
    kind = obj["type"]
    if kind == "welcome":
        _version(obj)
        return Welcome(_role(obj), _int(obj, "rate", 0, 10**6, 0))
    if kind == "transcript":
        final = obj.get("final")
        if not isinstance(final, bool):
            raise _bad("'final' must be true or false")
        return TranscriptOut(_id(obj), _str(obj, "text", MAX_TEXT_FRAME), final)
    if kind == "token":
        return Token(_id(obj), _str(obj, "text", MAX_TEXT_FRAME))
    if kind == "timing":
        return _timing(obj)
    if kind == "done":
        return Done(_id(obj))
    if kind == "error":
        code = _str(obj, "code", 64, empty=False)
        return Error(code, _str(obj, "message", 4096), _int(obj, "id", 0, MAX_ID, 0))
    if kind == "ping":
        return Ping(_int(obj, "id", 0, MAX_ID, 0))
    if kind == "pong":
        return Pong(_int(obj, "id", 0, MAX_ID, 0))
    raise _bad(f"unknown message type {kind!r}", "unknown_type")


# -- binary frames ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class AudioFrame:
    id: int
    chunk: AudioChunk


@dataclass(frozen=True, slots=True, eq=False)
class FaceFrame:
    id: int
    frames: FaceFrames


def encode_audio(request: int, chunk: AudioChunk) -> bytes:
    """An audio frame of request ``request``; ``chunk.pcm`` is sent as float32 little-endian."""
    pcm = np.ascontiguousarray(chunk.pcm, dtype="<f4")
    if pcm.ndim != 1:
        raise ValueError("audio must be mono (one dimension)")
    return AUDIO_HEADER.pack(KIND_AUDIO, VERSION, 0, request, chunk.offset, chunk.rate, len(pcm)) + pcm.tobytes()


def encode_face(request: int, frames: FaceFrames) -> bytes:
    """A face frame block of request ``request`` (count x 68 float32, count < 65536)."""
    values = np.ascontiguousarray(frames.values, dtype="<f4")
    if values.ndim != 2 or values.shape[0] > 0xFFFF or values.shape[1] != FACE_WIDTH:
        raise ValueError(f"face values must be count x {FACE_WIDTH} with count < 65536, got {values.shape}")
    header = FACE_HEADER.pack(KIND_FACE, VERSION, 0, request, frames.start, values.shape[0], FACE_WIDTH)
    return header + values.tobytes()


def decode_binary(data: bytes) -> AudioFrame | FaceFrame:
    """Parse a binary frame of either direction. Raises :class:`ProtocolError` when malformed.

    Audio must be finite and in [-1, 1] at a rate of :data:`RATES`; face values must be finite.
    """
    if len(data) > MAX_BINARY_FRAME:
        raise _bad(f"binary message of {len(data)} bytes exceeds {MAX_BINARY_FRAME}", "too_large")
    if len(data) < FACE_HEADER.size:
        raise _bad(f"binary message of {len(data)} bytes is shorter than its header", "bad_binary")
    kind, version = data[0], data[1]
    if version != VERSION:
        raise _bad(f"binary message has version {version}, expected {VERSION}", "bad_version")
    if kind == KIND_AUDIO:
        if len(data) < AUDIO_HEADER.size:
            raise _bad("audio message is shorter than its 24-byte header", "bad_binary")
        _, _, _, request, offset, rate, count = AUDIO_HEADER.unpack_from(data)
        if len(data) != AUDIO_HEADER.size + 4 * count:
            raise _bad(f"audio message of {len(data)} bytes does not hold {count} samples", "bad_binary")
        if rate not in RATES:
            raise _bad(f"audio rate {rate} Hz is not supported; use one of {RATES}", "bad_audio_format")
        pcm = np.frombuffer(data, "<f4", offset=AUDIO_HEADER.size).astype(np.float32)
        # one pass for both checks: the maximum is NaN when any sample is, and NaN <= 1 is false
        if count and not float(np.abs(pcm).max()) <= 1.0:
            raise _bad("audio samples must be finite and within [-1, 1]", "bad_binary")
        if request == 0:
            raise _bad("audio message needs a request id", "bad_binary")
        return AudioFrame(request, AudioChunk(pcm, rate, offset))
    if kind == KIND_FACE:
        _, _, _, request, start, count, width = FACE_HEADER.unpack_from(data)
        expected = FACE_HEADER.size + count * width * 4
        if width != FACE_WIDTH or len(data) != expected or request == 0:
            raise _bad(
                f"face message: width {width} (want {FACE_WIDTH}), {len(data)} bytes (want {expected}), "
                f"request {request}",
                "bad_binary",
            )
        values = np.frombuffer(data, "<f4", offset=FACE_HEADER.size).reshape(count, width).astype(np.float32)
        if not np.isfinite(values).all():
            raise _bad("face values must be finite", "bad_binary")
        return FaceFrame(request, FaceFrames(start, values))
    raise _bad(f"unknown binary message kind {kind}", "bad_binary")


def transcript(request: int, value: Transcript) -> TranscriptOut:
    """The ``transcript`` message for ``value`` (a small helper for servers)."""
    return TranscriptOut(request, value.text, value.final)
