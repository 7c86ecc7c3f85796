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
import struct
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..types import FACE_WIDTH, Float32Array

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
]

VERSION = 1
HEADER = struct.Struct("<BBHIQ")
FACE_HEADER = struct.Struct("<BBHIIHH")
KIND_MIC, KIND_AUDIO, KIND_FACE = 1, 2, 3
MAX_TEXT_FRAME = 64 * 1024
"""Largest JSON text frame accepted, in bytes."""
MAX_BINARY_FRAME = 1024 * 1024
"""Largest binary frame accepted, in bytes (about 5 s of 48 kHz stereo PCM16)."""
MAX_WIRE_FRAME = 4 * MAX_BINARY_FRAME
"""Largest frame the WebSocket layer reads at all: a larger one closes the connection (1009). Frames between
the limits above and this one are read and refused with ``too_large``; the connection stays open."""
MAX_TYPED_TEXT = 4000
"""Longest typed user text, in characters."""
WORKFLOWS = ("conversation", "say", "puppet", "lipsync")
RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)


class ProtocolError(ValueError):
    """A message that breaks the protocol. ``code`` goes into the ``error`` message sent back."""

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


ClientMessage = Hello | UserText | EndOfSpeech | PlaybackStarted | PlaybackFinished | Interrupt | Ping | Bye


def _obj(text: str | bytes) -> dict[str, Any]:
    if len(text) > MAX_TEXT_FRAME:
        raise ProtocolError("too_large", f"text message of {len(text)} bytes exceeds {MAX_TEXT_FRAME}")
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad_json", f"message is not valid JSON: {exc}") from None
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
    if not isinstance(subject, str) or len(subject.encode()) > 256:
        raise ProtocolError("bad_message", "'subject' must be a string of at most 256 bytes")
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
    return Hello(version, _format(data, "audio", AudioFormat()), _format(data, "mic", AudioFormat(16000, 1)),
                 flags["face"], subject, workflow, flags["acks"], turns)


def _user_text(data: dict[str, Any]) -> UserText:
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ProtocolError("bad_message", "'text' must be a non-empty string")
    if len(text) > MAX_TYPED_TEXT:
        raise ProtocolError("too_large", f"'text' has {len(text)} characters; the limit is {MAX_TYPED_TEXT}")
    return UserText(text)


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
    raise ProtocolError("unknown_type", f"unknown message type {kind!r}")


def encode_server(kind: str, **fields: Any) -> str:
    """Serialise a server message: ``encode_server("utterance_start", utterance=3, rate=24000)``."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":"), ensure_ascii=False)


def encode_client(message: ClientMessage) -> str:
    """Serialise a client message (used by ``facecast engine-sim`` and tests)."""
    names = {Hello: "hello", UserText: "text", EndOfSpeech: "end_of_speech", PlaybackStarted: "playback_started",
             PlaybackFinished: "playback_finished", Interrupt: "interrupt", Ping: "ping", Bye: "bye"}
    body = {k: v for k, v in asdict(message).items() if v is not None}
    return json.dumps({"type": names[type(message)], **body}, separators=(",", ":"), ensure_ascii=False)


def decode_server_text(text: str | bytes) -> dict[str, Any]:
    """Parse a server JSON message (client side). Raises :class:`ProtocolError` when malformed."""
    return _obj(text)


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
