"""What the WebSocket cloud voices (:mod:`.elevenlabs`, :mod:`.cartesia`) share: their API key, opening the
socket with clear errors, sending and reading JSON frames (with a stall timeout), decoding base64 PCM, and
holding audio back until the words that start in it are complete (the :class:`~facecast.types.SpeechChunk`
timing contract).

Errors name the service and what happened, never the key: a refused key (HTTP 401/403) and other refusals are
:class:`ServiceError`, a rate limit or connection limit (HTTP 429) is :class:`BusyError` (a failover list moves
on), and so are an unreachable host, a stall, a garbage frame and a connection closed before the end.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from ..errors import BusyError, ConfigError, ServiceError
from ..types import AudioChunk, Float32Array, SpeechChunk, Word

__all__ = ["api_key", "open_socket", "send_json", "receive_json", "decode_pcm", "WordHold", "MAX_FRAME"]

MAX_FRAME = 16 * 1024 * 1024
"""Largest frame accepted from a service (a few seconds of base64 PCM fit many times over)."""


def api_key(given: str, variables: Sequence[str], provider: str) -> str:
    """``given``, else the first of the environment ``variables`` that is set (stripped); :class:`ConfigError`
    naming them and the ``[tts.PROVIDER]`` option when there is none. ``variables``: Facecast's own first, then
    the service's usual one."""
    key = given or next((os.environ[v] for v in variables if os.environ.get(v)), "")
    if not key.strip():
        raise ConfigError(
            f"--tts {provider} needs an API key: set {variables[-1]} (or {', '.join(variables[:-1])}, "
            f"or api_key in [tts.{provider}])"
        )
    return key.strip()


async def open_socket(url: str, headers: Mapping[str, str], timeout: float, service: str) -> ClientConnection:
    """Connect to ``url`` presenting ``headers``; raises :class:`ServiceError` (:class:`BusyError` for HTTP 429)
    saying why, without the headers (they hold the key)."""
    try:
        return await connect(
            url,
            additional_headers=dict(headers),
            open_timeout=timeout,
            max_size=MAX_FRAME,
            ping_interval=None,  # the services do not promise to answer pings; stalls are caught per frame
            close_timeout=1.0,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in (401, 403):
            raise ServiceError(f"{service} rejected the API key (HTTP {status}): check the key") from None
        if status == 429:
            raise BusyError(f"{service} is rate limiting or at its connection limit (HTTP 429)") from None
        raise ServiceError(f"{service} refused the connection (HTTP {status})") from None
    except InvalidURI as exc:
        raise ServiceError(f"{service}: invalid URL {exc.uri!r}") from None
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise ServiceError(f"cannot reach {service}: {type(exc).__name__}: {exc}") from None


async def send_json(ws: ClientConnection, message: object, service: str) -> None:
    """Send ``message`` as a JSON text frame; :class:`ServiceError` when the service has closed on us."""
    try:
        await ws.send(json.dumps(message))
    except Exception as exc:  # the service closed on us while we were still talking
        raise ServiceError(f"{service} closed the connection: {type(exc).__name__}") from None


async def receive_json(ws: ClientConnection, timeout: float, service: str) -> dict[str, Any]:
    """The next frame as a JSON object. :class:`ServiceError` when nothing comes within ``timeout`` s, the
    connection closes, or the frame is not a JSON object."""
    try:
        frame = await asyncio.wait_for(ws.recv(), timeout)
    except TimeoutError:
        raise ServiceError(f"{service} sent nothing for {timeout:g} s (stalled)") from None
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else 1006
        reason = exc.rcvd.reason if exc.rcvd is not None else ""
        raise ServiceError(
            f"{service} closed the connection before the end of the speech (code {code}{': ' if reason else ''}"
            f"{reason[:200]})"
        ) from None
    if isinstance(frame, bytes):
        raise ServiceError(f"{service} sent a binary frame where JSON was expected ({len(frame)} bytes)")
    try:
        message = json.loads(frame)
    except ValueError:
        raise ServiceError(f"{service} sent a frame that is not JSON: {frame[:80]!r}") from None
    if not isinstance(message, dict):
        raise ServiceError(f"{service} sent JSON that is not an object: {frame[:80]!r}")
    return message


def decode_pcm(data: object, encoding: str, service: str) -> Float32Array:
    """Base64 ``data`` of mono ``pcm_s16le`` or ``pcm_f32le`` as float32 in [-1, 1]; :class:`ServiceError`
    if it is not."""
    if not isinstance(data, str):
        raise ServiceError(f"{service} sent audio that is not a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ServiceError(f"{service} sent audio that is not valid base64") from None
    width = 4 if encoding == "pcm_f32le" else 2
    if len(raw) % width:
        raise ServiceError(f"{service} sent {len(raw)} bytes of {encoding}: not whole samples")
    if width == 4:
        pcm = np.frombuffer(raw, "<f4").astype(np.float32)
        if not np.all(np.isfinite(pcm)):
            raise ServiceError(f"{service} sent audio with non-finite samples")
        return np.clip(pcm, -1.0, 1.0)
    return (np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0).astype(np.float32)


class WordHold:
    """Audio chunks held until the words starting in them are known and complete (sans-I/O).

    Add audio with :meth:`audio` (returns its offset), complete words with :meth:`words`, and say with
    :meth:`known` up to which sample no further word can start (the open word's start, or the end of the
    timing received). :meth:`release` gives the chunks that can go out now, each carrying the words that start
    inside it; ``final=True`` gives the rest, with word ends clamped to the end of the audio. A word's start is
    clamped to its chunk; a word starting past the end of the audio is dropped.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.received = 0
        self._chunks: deque[AudioChunk] = deque()
        self._words: deque[Word] = deque()
        self._known = 0

    def audio(self, pcm: Float32Array) -> int:
        offset = self.received
        if len(pcm):
            self._chunks.append(AudioChunk(np.ascontiguousarray(pcm, np.float32), self.rate, offset))
            self.received += len(pcm)
        return offset

    def words(self, words: list[Word]) -> None:
        for word in words:
            start = max(0, word.start)
            self._words.append(Word(word.text, start, max(start, word.end)))

    def known(self, sample: int) -> None:
        self._known = max(self._known, sample)

    def release(self, final: bool = False) -> list[SpeechChunk]:
        out: list[SpeechChunk] = []
        while self._chunks and (final or self._known >= self._chunks[0].end):
            head = self._chunks.popleft()
            inside: list[Word] = []
            while self._words and self._words[0].start < head.end:
                word = self._words.popleft()
                start = max(word.start, head.offset)
                end = min(word.end, self.received) if final else word.end  # later audio may still cover it
                inside.append(Word(word.text, start, max(start, end)))
            out.append(SpeechChunk(head, (), tuple(inside)))
        if final:
            self._words.clear()
        return out
