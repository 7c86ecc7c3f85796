"""Text-to-speech through any OpenAI-compatible ``POST {base}/audio/speech`` API: OpenAI itself (``tts-1``,
``gpt-4o-mini-tts``), Kokoro-FastAPI, speaches, LocalAI.

The request is JSON (``model``, ``input``, ``voice``, ``response_format``, ``speed``) and the answer's body is
read as it streams: each piece of audio is yielded as soon as it arrives (time to first audio is the
server's, plus one network hop). ``response_format="pcm"`` (the default) is raw 16-bit little-endian mono at
``sample_rate`` (OpenAI: 24 kHz); ``"wav"`` is for servers without raw PCM: its header is parsed (16-bit
PCM only; anything else is a clear :class:`~facecast.errors.ServiceError`) and audio at another rate than
``sample_rate`` is resampled to it.

Timing. The plain API returns audio only, so the provider declares no timing and the audio-driven face
animates it. With ``timestamps=True`` it asks Kokoro-FastAPI's ``POST {root}/dev/captioned_speech``
(``root`` is the URL without its ``/v1``) for newline-delimited JSON objects each holding base64 audio and
``timestamps`` (``word``, ``start_time``, ``end_time`` in seconds from the start of the speech): the words
come out as :attr:`~facecast.types.SpeechChunk.words`, each in the chunk where it starts.

Failures (refused, wrong key, rate limited, silent for ``timeout``, text instead of audio, a body that ends
before it is complete) are :class:`~facecast.errors.ServiceError`; after some audio was yielded the error
comes after it, and the failover wrapper (``--tts openai:URL,espeak``) finishes the sentence with its next
member after the samples already delivered.

Checked here only against ``tests/servers/openai_audio.py``, a local server implementing the documented API
around the embedded hibari voice; not against OpenAI, Kokoro-FastAPI or the other servers themselves.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import numpy as np

from ..audio import Resampler
from ..errors import ConfigError, InputError, ServiceError
from ..openai_http import (
    OPENAI_URL,
    LoopClient,
    check_base_url,
    probe,
    raise_for_status,
    resolve_key,
    transport_error,
    waited_to_retry,
)
from ..types import AudioChunk, Float32Array, SpeechChunk, Word

__all__ = ["OpenAITTSOptions", "OpenAITTS", "PcmDecoder", "WavDecoder", "KEY_ENV", "MAX_TEXT_CHARS"]

KEY_ENV = ("FACECAST_TTS_KEY", "OPENAI_API_KEY")
"""Where the key is read from when the ``api_key`` option is empty, in this order."""

MAX_TEXT_CHARS = 4096
"""Longest text one request may carry (OpenAI's documented limit)."""

_TEXT_TYPES = ("application/json", "text/")


@dataclass(frozen=True, slots=True)
class OpenAITTSOptions:
    """Settings of :class:`OpenAITTS`.

    ``base_url``: the API root (``--tts openai:URL`` sets it; default api.openai.com). ``model``: OpenAI
    ``tts-1`` or ``gpt-4o-mini-tts``; Kokoro-FastAPI ``kokoro``. ``voice``: the server's voice name (empty:
    ``--voice``, else ``alloy``). ``api_key``: empty reads ``FACECAST_TTS_KEY``, then ``OPENAI_API_KEY``;
    required only by api.openai.com; never logged. ``response_format``: ``pcm`` (raw 16-bit mono at
    ``sample_rate``) or ``wav``. ``sample_rate``: the rate of the PCM the server sends (OpenAI 24000), and the
    rate of every chunk yielded. ``speed``: 0.25-4.0 (1.0: from ``--speech-rate``). ``timeout``: seconds for
    the connection and for each wait on the server. ``timestamps``: word timing from Kokoro-FastAPI's
    ``/dev/captioned_speech``.
    """

    base_url: str = OPENAI_URL
    model: str = "tts-1"
    voice: str = ""
    api_key: str = ""
    response_format: Literal["pcm", "wav"] = "pcm"
    sample_rate: int = 24_000
    speed: float = 1.0
    timeout: float = 30.0
    timestamps: bool = False

    def __post_init__(self) -> None:
        if self.response_format not in ("pcm", "wav"):
            raise ConfigError(f"tts.openai response_format must be 'pcm' or 'wav', got {self.response_format!r}")
        if not 8_000 <= self.sample_rate <= 192_000:
            raise ConfigError(f"tts.openai sample_rate must be from 8000 to 192000 Hz, got {self.sample_rate}")
        if not 0.25 <= self.speed <= 4.0:
            raise ConfigError(f"tts.openai speed must be from 0.25 to 4.0, got {self.speed}")
        if self.timeout <= 0:
            raise ConfigError(f"tts.openai timeout must be positive, got {self.timeout}")
        if not self.model.strip():
            raise ConfigError("tts.openai model must not be empty")


class PcmDecoder:
    """Raw little-endian 16-bit bytes of ``channels`` interleaved channels, fed in any pieces, as float32 mono
    samples (a partial frame waits for the rest of it). Pure."""

    rate: int | None = None

    def __init__(self, channels: int = 1) -> None:
        self._frame = 2 * channels
        self._channels = channels
        self._carry = b""

    def feed(self, data: bytes) -> Float32Array:
        data = self._carry + data
        whole = len(data) - len(data) % self._frame
        self._carry = data[whole:]
        samples = np.frombuffer(data[:whole], "<i2").astype(np.float32) / 32768.0
        if self._channels > 1:
            samples = samples.reshape(-1, self._channels).mean(axis=1)
        out: Float32Array = samples.astype(np.float32, copy=False)
        return out


class WavDecoder:
    """A WAV file, fed in any pieces, as float32 mono samples; :attr:`rate` is known once the header is in.

    Accepts 16-bit PCM (format 1, or WAVE_FORMAT_EXTENSIBLE with the PCM sub-format), any channel count (mixed
    down), a data size of 0 or 0xFFFFFFFF (streamed: until the body ends). Raises :class:`ServiceError` for
    anything else (not RIFF/WAVE, float or compressed audio, another sample width). Pure."""

    def __init__(self) -> None:
        self._buf = b""
        self._header_done = False
        self._pcm = PcmDecoder()
        self.rate: int | None = None

    def feed(self, data: bytes) -> Float32Array:
        if self._header_done:
            return self._samples(data)
        self._buf += data
        body = self._parse_header()
        if body is None:
            if len(self._buf) > 1 << 20:
                raise ServiceError("the WAV header is longer than 1 MB: not a WAV stream")
            return np.zeros(0, np.float32)
        return self._samples(body)

    def _samples(self, data: bytes) -> Float32Array:
        return self._pcm.feed(data)

    def _parse_header(self) -> bytes | None:
        buf = self._buf
        if len(buf) < 12:
            if not b"RIFF".startswith(buf[:4]):
                raise ServiceError(f"the server's audio is not a WAV file (it starts {buf[:4]!r})")
            return None
        if buf[:4] != b"RIFF" or buf[8:12] != b"WAVE":
            raise ServiceError(f"the server's audio is not a WAV file (it starts {buf[:12]!r})")
        pos = 12
        while True:
            if len(buf) < pos + 8:
                return None
            kind, size = buf[pos : pos + 4], struct.unpack("<I", buf[pos + 4 : pos + 8])[0]
            if kind == b"data":
                if self.rate is None:
                    raise ServiceError("the server's WAV has no 'fmt ' chunk before its data")
                self._header_done = True
                body, self._buf = buf[pos + 8 :], b""
                return body
            if len(buf) < pos + 8 + size:
                return None
            if kind == b"fmt ":
                self._format(buf[pos + 8 : pos + 8 + size])
            pos += 8 + size + (size & 1)

    def _format(self, fmt: bytes) -> None:
        if len(fmt) < 16:
            raise ServiceError("the server's WAV has a truncated 'fmt ' chunk")
        tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
        if tag == 0xFFFE and len(fmt) >= 26:
            tag = struct.unpack("<H", fmt[24:26])[0]  # the sub-format GUID starts with the format tag
        if tag != 1 or bits != 16:
            kind = {3: "32-bit float", 6: "A-law", 7: "mu-law", 0x55: "MP3"}.get(tag, f"format {tag}")
            raise ServiceError(
                f"the server's WAV is {kind if tag != 1 else f'{bits}-bit PCM'}, not 16-bit PCM; "
                "use response_format 'pcm' or a server setting for 16-bit WAV"
            )
        if not 1 <= channels <= 64 or not 1_000 <= rate <= 384_000:
            raise ServiceError(f"the server's WAV declares {channels} channels at {rate} Hz")
        self._pcm, self.rate = PcmDecoder(channels), rate


class _Words:
    """Word spans waiting for the audio they start in (sample positions at the output rate)."""

    def __init__(self, rate: int) -> None:
        self._rate = rate
        self._pending: list[Word] = []

    def add(self, stamps: object) -> None:
        if not isinstance(stamps, list):
            return
        for stamp in stamps:
            if not isinstance(stamp, dict):
                continue
            text, start, end = stamp.get("word"), stamp.get("start_time"), stamp.get("end_time")
            if not isinstance(text, str) or not isinstance(start, int | float) or not isinstance(end, int | float):
                raise ServiceError(f"the server sent a word timestamp without word/start_time/end_time: {stamp!r}")
            first = max(0, round(float(start) * self._rate))
            self._pending.append(Word(text.strip(), first, max(first, round(float(end) * self._rate))))
        self._pending.sort(key=lambda w: w.start)

    def take(self, offset: int, end: int) -> tuple[Word, ...]:
        """The words starting before ``end`` (one that started before ``offset`` is moved to it)."""
        ready = [w for w in self._pending if w.start < end]
        self._pending = self._pending[len(ready) :]
        return tuple(w if w.start >= offset else Word(w.text, offset, max(offset, w.end)) for w in ready)


class OpenAITTS:
    """A :class:`facecast.roles.TextToSpeech` over an OpenAI-compatible speech server.

    Construction checks the URL and the key (:class:`ConfigError` for api.openai.com without one) and does no
    I/O. Call :meth:`aclose` to release the pooled connection.
    """

    def __init__(self, options: OpenAITTSOptions | None = None) -> None:
        self._options = opts = options or OpenAITTSOptions()
        self._url = check_base_url(opts.base_url, "text-to-speech")
        self._where = f"text-to-speech server at {self._url}"
        self._http = LoopClient(resolve_key(opts.api_key, KEY_ENV, self._url, "text-to-speech"), opts.timeout)

    @property
    def sample_rate(self) -> int:
        return self._options.sample_rate

    @property
    def options(self) -> OpenAITTSOptions:
        return self._options

    @property
    def failover_name(self) -> str:
        return f"openai:{self._url}"

    def __repr__(self) -> str:
        return f"OpenAITTS({self._url!r}, model={self._options.model!r}, voice={self._voice!r})"

    @property
    def _voice(self) -> str:
        return self._options.voice or "alloy"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def probe(self) -> None:
        """Raise :class:`ServiceError` while the server cannot be reached or refuses the key (failover)."""
        await probe(self._http.get(), self._url, self._where, self._options.timeout, KEY_ENV)

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        """Speak ``text``, yielding each piece of audio as it arrives (offsets from 0 at ``sample_rate``).

        Raises :class:`InputError` for empty text or more than :data:`MAX_TEXT_CHARS` characters, and
        :class:`ServiceError` (:class:`BusyError` for a rate limit) as described in the module docstring.
        Closing the iterator early closes the HTTP response, which tells the server to stop.
        """
        if not isinstance(text, str) or not text.strip():
            raise InputError("nothing to say: the text is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise InputError(f"text of {len(text)} characters; one request takes at most {MAX_TEXT_CHARS}")
        opts = self._options
        payload: dict[str, Any] = {
            "model": opts.model,
            "input": text,
            "voice": self._voice,
            "response_format": opts.response_format,
            "speed": opts.speed,
        }
        if opts.timestamps:
            url = _root(self._url) + "/dev/captioned_speech"
            payload |= {"stream": True, "return_timestamps": True}
        else:
            url = f"{self._url}/audio/speech"
        started = False
        for attempt in range(2):
            try:
                async with self._http.get().stream("POST", url, json=payload) as response:
                    if response.status_code >= 300:
                        body = await response.aread()
                        if await waited_to_retry(response, attempt):
                            continue
                        raise_for_status(response, body, self._where, KEY_ENV)
                    kind = response.headers.get("content-type", "").lower()
                    if not opts.timestamps and kind.startswith(_TEXT_TYPES):
                        sample = " ".join((await response.aread())[:80].decode("utf-8", "replace").split())
                        raise ServiceError(f"the {self._where} sent text instead of audio ({kind}: {sample!r})")
                    pieces = _captioned(response, self._where) if opts.timestamps else _plain(response)
                    offset = 0
                    async for chunk in self._chunks(pieces):
                        started = True
                        offset = chunk.audio.end
                        yield chunk
                    if not offset:
                        raise ServiceError(f"the {self._where} answered without any audio")
                    return
            except httpx.HTTPError as err:
                transport_error(err, self._where, opts.timeout, started)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _chunks(self, pieces: AsyncIterator[tuple[bytes, object]]) -> AsyncIterator[SpeechChunk]:
        """Decode ``(audio bytes, timestamps)`` pieces into contiguous speech chunks at ``sample_rate``."""
        opts = self._options
        rate = opts.sample_rate
        decoder: PcmDecoder | WavDecoder = WavDecoder() if opts.response_format == "wav" else PcmDecoder()
        resampler: Resampler | None = None
        words = _Words(rate)
        offset = 0
        async for data, stamps in pieces:
            if opts.response_format == "wav" and data.startswith(b"RIFF") and decoder.rate is not None:
                decoder = WavDecoder()  # a server that sends each piece as a whole WAV file
            samples = decoder.feed(data)
            if decoder.rate is not None and decoder.rate != rate:
                if resampler is None or resampler.in_rate != decoder.rate:
                    resampler = Resampler(decoder.rate, rate)
                samples = resampler.process(samples)
            words.add(stamps)
            if len(samples):
                pcm = np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)
                yield SpeechChunk(AudioChunk(pcm, rate, offset), words=words.take(offset, offset + len(pcm)))
                offset += len(pcm)
        if resampler is not None and len(tail := resampler.flush()):
            pcm = np.clip(tail, -1.0, 1.0).astype(np.float32, copy=False)
            yield SpeechChunk(AudioChunk(pcm, rate, offset), words=words.take(offset, offset + len(pcm)))


async def _plain(response: httpx.Response) -> AsyncIterator[tuple[bytes, object]]:
    async for data in response.aiter_bytes():
        yield data, None


async def _captioned(response: httpx.Response, where: str) -> AsyncIterator[tuple[bytes, object]]:
    """Kokoro-FastAPI's captioned speech: JSON objects (one per line when streamed, or one for the whole)."""
    async for line in response.aiter_lines():
        if not line.strip():
            continue
        for data, stamps in _captioned_items(line, where):
            yield data, stamps


def _captioned_items(line: str, where: str) -> Iterable[tuple[bytes, object]]:
    try:
        item = json.loads(line)
        audio = item.get("audio") if isinstance(item, dict) else None
        if not isinstance(audio, str):
            raise ValueError("no 'audio' string")
        data = base64.b64decode(audio, validate=True)
    except (ValueError, binascii.Error) as exc:
        sample = " ".join(line[:80].split())
        raise ServiceError(
            f"the {where} sent something that is not captioned speech ({sample!r}: {exc}); does it serve "
            "Kokoro-FastAPI's /dev/captioned_speech? (else set timestamps = false)"
        ) from None
    return [(data, item.get("timestamps"))]


def _root(url: str) -> str:
    """The server root of an API root: ``http://host:8880/v1`` -> ``http://host:8880``."""
    return url[: -len("/v1")] if url.endswith("/v1") else url
