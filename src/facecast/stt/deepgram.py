"""Deepgram live streaming speech-to-text over its WebSocket API (``wss://api.deepgram.com/v1/listen``).

Written from Deepgram's public reference ("Live Audio" ``/v1/listen`` streaming API, and its pages on
Finalize, CloseStream, KeepAlive, Utterance End and the WebSocket DATA/NET errors); no SDK is used. What
this client follows:

* The handshake: ``GET /v1/listen?model=nova-3&language=en&encoding=linear16&sample_rate=16000&channels=1
  &interim_results=true&punctuate=true&smart_format=true&endpointing=MS`` with the header ``Authorization:
  Token KEY``. A refused upgrade is an HTTP status (401 bad key, 402/403 no access, 429 too many requests or
  connections, 5xx); the reason is in the ``dg-error`` header and the JSON body.
* Audio goes up as binary frames of raw little-endian PCM16 mono at 16 kHz (input of any rate is
  resampled); never an empty frame (the service reads one as the deprecated "close"). While no audio
  arrives, ``{"type": "KeepAlive"}`` is sent every ``keepalive_interval`` seconds (the service closes a
  connection that sends nothing for about 10 s: 1011 ``NET-0001``). When the input ends, ``{"type":
  "Finalize"}`` flushes the audio buffered on the server and ``{"type": "CloseStream"}`` asks it to send what
  is left, a ``Metadata`` summary, and close.
* Down come JSON text frames: ``Results`` (``channel.alternatives[0].transcript`` and ``words`` with
  ``start``/``end``, ``start``/``duration`` of the segment, ``is_final``, ``speech_final``,
  ``from_finalize``), ``Metadata``, ``UtteranceEnd`` (``last_word_end``), ``SpeechStarted``
  (``timestamp``). An interim result (``is_final`` false) is replaced by the next one for the same audio;
  a final one (``is_final`` true) is never revised, so the transcript so far is the final segments in
  order plus the latest interim one.
* Errors during the stream arrive as a close frame whose code and reason say why (1008 ``DATA-0000``: the
  audio cannot be decoded; 1011 ``NET-0000``/``NET-0001``: a timeout on the service's or the client's side).

What :meth:`DeepgramSTT.transcribe` yields: a partial transcript (final segments + the current interim)
whenever it changes, and exactly one final transcript, the final segments joined, once the input has ended
and the service has answered the Finalize (a ``from_finalize`` result), sent its ``Metadata`` or closed
normally, whichever comes first, but no later than ``final_timeout`` after the input ended. Every failure
(refused, rate limited, unreachable, a hung connect, a stall, garbage, a close mid-stream) is a
:class:`~facecast.errors.ServiceError`, so a failover list (``--stt deepgram,pocketsphinx``) replays the
player's audio to its next member. The API key comes from the options (TOML / ``--set``) or the environment
and is never logged or put in an error message.

Tested here only against ``tests/servers/deepgram_server.py``, an implementation of the documented protocol
for tests (not the service): Deepgram itself cannot be reached from the test machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import urlencode, urlsplit

import numpy as np

from ..aio import aclose
from ..audio import float_to_pcm16
from ..errors import ConfigError, ServiceError
from ..types import AudioChunk, Transcript
from .input16k import RATE as DEEPGRAM_RATE
from .input16k import To16k

__all__ = [
    "DeepgramOptions",
    "DeepgramSTT",
    "Results",
    "Metadata",
    "UtteranceEnd",
    "SpeechStarted",
    "Word",
    "parse_message",
    "listen_url",
    "TranscriptAssembler",
    "resolve_key",
    "DEEPGRAM_RATE",
    "KEY_ENV",
]

KEY_ENV = ("FACECAST_STT_DEEPGRAM_API_KEY", "DEEPGRAM_API_KEY")
"""Environment variables read, in this order, when the options carry no key."""

DEFAULT_URL = "wss://api.deepgram.com/v1/listen"
_FRAME_SAMPLES = DEEPGRAM_RATE // 20  # 50 ms per binary frame (Deepgram suggests 20-100 ms)


# -- messages (sans-I/O) ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Word:
    word: str
    start: float
    end: float
    confidence: float = 0.0
    punctuated_word: str = ""


@dataclass(frozen=True, slots=True)
class Results:
    """One ``Results`` message: the transcript of the audio from ``start`` for ``duration`` seconds."""

    transcript: str
    words: tuple[Word, ...]
    start: float
    duration: float
    is_final: bool
    speech_final: bool
    from_finalize: bool


@dataclass(frozen=True, slots=True)
class Metadata:
    request_id: str
    duration: float


@dataclass(frozen=True, slots=True)
class UtteranceEnd:
    last_word_end: float


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    timestamp: float


Message: TypeAlias = Results | Metadata | UtteranceEnd | SpeechStarted


def _number(obj: Mapping[str, Any], key: str, default: float | None = None) -> float:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ServiceError(f"deepgram sent a malformed message: {key!r} is not a number")
    return float(value)


def _flag(obj: Mapping[str, Any], key: str) -> bool:
    value = obj.get(key, False)
    if not isinstance(value, bool):
        raise ServiceError(f"deepgram sent a malformed message: {key!r} is not true/false")
    return value


def _results(data: Mapping[str, Any]) -> Results:
    channel = data.get("channel")
    alternatives = channel.get("alternatives") if isinstance(channel, dict) else None
    if not isinstance(alternatives, list):
        raise ServiceError("deepgram sent a malformed message: Results without channel.alternatives")
    best = alternatives[0] if alternatives else {"transcript": "", "words": []}
    if not isinstance(best, dict) or not isinstance(best.get("transcript", ""), str):
        raise ServiceError("deepgram sent a malformed message: alternative without a transcript")
    words = best.get("words", [])
    if not isinstance(words, list) or not all(isinstance(w, dict) for w in words):
        raise ServiceError("deepgram sent a malformed message: words is not a list of objects")
    return Results(
        transcript=str(best.get("transcript", "")),
        words=tuple(
            Word(
                str(w.get("word", "")),
                _number(w, "start", 0.0),
                _number(w, "end", 0.0),
                _number(w, "confidence", 0.0),
                str(w.get("punctuated_word", "")),
            )
            for w in words
        ),
        start=_number(data, "start", 0.0),
        duration=_number(data, "duration", 0.0),
        is_final=_flag(data, "is_final"),
        speech_final=_flag(data, "speech_final"),
        from_finalize=_flag(data, "from_finalize"),
    )


def parse_message(frame: str | bytes) -> Message | None:
    """One frame from the service as a message; None for a message type this client does not use.

    Raises :class:`ServiceError` for anything that is not the documented JSON (a binary frame, text that
    is not a JSON object, a known type with missing or mistyped fields).
    """
    if not isinstance(frame, str):
        raise ServiceError(f"deepgram sent a binary frame of {len(frame)} bytes where JSON text was expected")
    try:
        data = json.loads(frame)
    except ValueError:
        raise ServiceError(f"deepgram sent text that is not JSON: {frame[:80]!r}") from None
    if not isinstance(data, dict):
        raise ServiceError("deepgram sent JSON that is not an object")
    kind = data.get("type")
    if kind == "Results":
        return _results(data)
    if kind == "Metadata":
        return Metadata(str(data.get("request_id", "")), _number(data, "duration", 0.0))
    if kind == "UtteranceEnd":
        return UtteranceEnd(_number(data, "last_word_end", 0.0))
    if kind == "SpeechStarted":
        return SpeechStarted(_number(data, "timestamp", 0.0))
    if isinstance(kind, str):
        return None  # a newer message type: ignored, as the reference asks of clients
    raise ServiceError("deepgram sent JSON without a message type")


class TranscriptAssembler:
    """The transcript so far from a sequence of ``Results``: final segments in order, plus the latest
    interim one (which the next result for the same audio replaces)."""

    def __init__(self) -> None:
        self.finals: list[str] = []
        self.interim = ""
        self.finalized = False
        """A ``from_finalize`` result has arrived: the audio sent before the Finalize is all decoded."""

    def add(self, result: Results) -> None:
        if result.is_final:
            if result.transcript.strip():
                self.finals.append(result.transcript.strip())
            self.interim = ""
            self.finalized = self.finalized or result.from_finalize
        else:
            self.interim = result.transcript.strip()

    @property
    def text(self) -> str:
        """Final segments and the current interim one, joined by spaces."""
        return " ".join([*self.finals, self.interim] if self.interim else self.finals)

    @property
    def final_text(self) -> str:
        return " ".join(self.finals)


# -- options ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeepgramOptions:
    """Options of the ``deepgram`` speech-to-text (``[stt.deepgram]`` in TOML, ``FACECAST_STT_DEEPGRAM_*``).

    ``api_key``: empty reads ``$FACECAST_STT_DEEPGRAM_API_KEY``, then ``$DEEPGRAM_API_KEY`` (never logged).
    ``base_url``: the ``/v1/listen`` WebSocket URL (``--stt deepgram:URL`` wins; a self-hosted Deepgram, or a
    local test server). ``model``, ``language``: Deepgram's model and BCP-47 language. ``endpointing_ms``:
    the silence after which Deepgram finalizes a segment (its ``endpointing``). ``keyterms``: words to
    boost (Nova-3 ``keyterm``; names, jargon). ``connect_timeout``: the most the WebSocket handshake may
    take. ``final_timeout``: the most the final transcript may take after the input ended (a stalled
    connection is given up then). ``keepalive_interval``: how often a ``KeepAlive`` is sent while no audio
    arrives.
    """

    api_key: str = field(default="", repr=False)
    base_url: str = DEFAULT_URL
    model: str = "nova-3"
    language: str = "en"
    endpointing_ms: int = 300
    keyterms: tuple[str, ...] = ()
    connect_timeout: float = 5.0
    final_timeout: float = 5.0
    keepalive_interval: float = 3.0

    def __post_init__(self) -> None:
        scheme = urlsplit(self.base_url).scheme
        if scheme not in ("ws", "wss"):
            raise ConfigError(f"the deepgram base_url must be a ws:// or wss:// URL, got {self.base_url!r}")
        if self.endpointing_ms < 0:
            raise ConfigError("deepgram endpointing_ms must not be negative")
        if min(self.connect_timeout, self.final_timeout, self.keepalive_interval) <= 0:
            raise ConfigError("deepgram connect_timeout, final_timeout and keepalive_interval must be positive")


def resolve_key(explicit: str = "", environ: Mapping[str, str] | None = None) -> str:
    """The API key: ``explicit``, else the first of :data:`KEY_ENV` set; raises :class:`ConfigError` if none."""
    if explicit.strip():
        return explicit.strip()
    env = os.environ if environ is None else environ
    for name in KEY_ENV:
        if env.get(name, "").strip():
            return env[name].strip()
    raise ConfigError(
        "--stt deepgram needs an API key: set DEEPGRAM_API_KEY (or FACECAST_STT_DEEPGRAM_API_KEY, or api_key "
        "in [stt.deepgram] of the config file)"
    )


def listen_url(options: DeepgramOptions) -> str:
    """The handshake URL: ``base_url`` with the streaming query parameters (no key: it goes in a header)."""
    params: list[tuple[str, str]] = [
        ("model", options.model),
        ("language", options.language),
        ("encoding", "linear16"),
        ("sample_rate", str(DEEPGRAM_RATE)),
        ("channels", "1"),
        ("interim_results", "true"),
        ("punctuate", "true"),
        ("smart_format", "true"),
        ("endpointing", str(options.endpointing_ms) if options.endpointing_ms else "false"),
    ]
    params += [("keyterm", term) for term in options.keyterms]
    sep = "&" if urlsplit(options.base_url).query else "?"
    return options.base_url + sep + urlencode(params)


# -- the client -------------------------------------------------------------------------------------------
class _InputEnded:
    """The pump sent Finalize and CloseStream: the final is due within ``final_timeout``."""


_Event: TypeAlias = Message | None | _InputEnded | BaseException


class DeepgramSTT:
    """Deepgram live streaming speech-to-text; implements :class:`facecast.roles.SpeechToText`.

    Construction checks the options and finds the key (:class:`ConfigError` when there is none) but opens
    no connection; each :meth:`transcribe` opens its own WebSocket when its first audio arrives.
    """

    failover_name = "deepgram"

    def __init__(self, options: DeepgramOptions | None = None) -> None:
        self._options = options or DeepgramOptions()
        self._key = resolve_key(self._options.api_key)

    @property
    def options(self) -> DeepgramOptions:
        return self._options

    def __repr__(self) -> str:
        return f"DeepgramSTT({self._options.model}, {self._options.base_url})"

    async def _connect(self) -> Any:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidHandshake, InvalidStatus

        opts = self._options
        try:
            return await connect(
                listen_url(opts),
                additional_headers={"Authorization": f"Token {self._key}"},
                open_timeout=opts.connect_timeout,
                close_timeout=1.0,
                ping_interval=None,  # the service keeps the connection alive with KeepAlive messages
                max_size=2**22,
                proxy=None,
            )
        except InvalidStatus as exc:
            raise ServiceError(_refusal(exc.response)) from None
        except TimeoutError:
            raise ServiceError(f"deepgram did not answer the connection within {opts.connect_timeout:g} s") from None
        except (OSError, InvalidHandshake) as exc:
            raise ServiceError(f"cannot connect to deepgram at {opts.base_url}: {exc}") from None

    async def probe(self) -> None:
        """Open a connection and close it at once (a failover list uses this to see that the service is
        back); raises :class:`ServiceError` while it refuses or cannot be reached."""
        ws = await self._connect()
        try:
            await ws.send(json.dumps({"type": "CloseStream"}))
        finally:
            await ws.close()

    async def transcribe(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcript]:
        """Stream ``audio`` to Deepgram; yield partial transcripts as they change, then exactly one final.

        Chunks may have any rate from 1 kHz to 384 kHz (all chunks of one stream the same rate) and be mono
        or frames x channels. No audio at all gives an empty final without connecting. Raises
        :class:`InputError` for a chunk that is not audio, a rate out of range or a stream that changes
        rate, and :class:`ServiceError` when the service refuses (bad key, rate limit), cannot be reached,
        stalls, sends garbage or closes before the final. Closing this iterator closes the connection and
        ``audio`` and leaves no task behind.
        """
        source = aiter(audio)
        try:
            first = await anext(source, None)
            if first is None:
                yield Transcript("", True)
                return
            encoder = _Encoder(first)
            ws = await self._connect()
            events: asyncio.Queue[_Event] = asyncio.Queue()
            tasks = [
                asyncio.create_task(self._read(ws, events)),
                asyncio.create_task(self._pump(ws, encoder, first, source, events)),
            ]
            try:
                async for transcript in self._results(events):
                    yield transcript
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 2.0)
        finally:
            await aclose(source)

    async def _results(self, events: asyncio.Queue[_Event]) -> AsyncIterator[Transcript]:
        assembler = TranscriptAssembler()
        said = ""
        deadline: float | None = None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                event = await asyncio.wait_for(events.get(), timeout)
            except TimeoutError:
                raise ServiceError(
                    f"deepgram sent no final transcript within {self._options.final_timeout:g} s of the end of "
                    "the audio (stalled)"
                ) from None
            if isinstance(event, BaseException):
                raise event
            if isinstance(event, _InputEnded):
                deadline = time.monotonic() + self._options.final_timeout
                continue
            if event is None:  # closed normally (1000): only valid once the input has ended
                if deadline is None:
                    raise ServiceError("deepgram closed the connection before the audio ended")
                break
            if isinstance(event, Metadata) and deadline is not None:
                break  # the CloseStream summary: every result has been sent
            if isinstance(event, Results):
                assembler.add(event)
                if assembler.finalized and deadline is not None:
                    break
                if assembler.text and assembler.text != said:
                    said = assembler.text
                    yield Transcript(said, False)
        yield Transcript(assembler.final_text, True)

    async def _read(self, ws: Any, events: asyncio.Queue[_Event]) -> None:
        """Parse every frame from the service into ``events``; a normal close is ``None``, anything else an
        error."""
        from websockets.exceptions import ConnectionClosed

        try:
            async for frame in ws:
                message = parse_message(frame)
                if message is not None:
                    events.put_nowait(message)
        except ConnectionClosed:
            pass
        except ServiceError as exc:
            events.put_nowait(exc)
            return
        except Exception as exc:  # anything else the connection raises is the service failing
            events.put_nowait(ServiceError(f"deepgram connection failed: {exc!r}"))
            return
        code = ws.close_code
        reason = ws.close_reason or ""
        if code == 1000:
            events.put_nowait(None)
        else:
            shown = f" {reason}" if reason else ""
            events.put_nowait(ServiceError(f"deepgram closed the connection: {code or 'no close frame'}{shown}"))

    async def _pump(
        self, ws: Any, encoder: _Encoder, first: AudioChunk, source: AsyncIterator[AudioChunk], events: Any
    ) -> None:
        """Send the audio as it arrives (KeepAlive while none does), then Finalize and CloseStream."""
        from websockets.exceptions import ConnectionClosed

        last_sent = time.monotonic()

        async def send(frame: str | bytes) -> None:
            nonlocal last_sent
            await ws.send(frame)
            last_sent = time.monotonic()

        async def keepalive() -> None:
            interval = self._options.keepalive_interval
            while True:
                await asyncio.sleep(max(0.0, last_sent + interval - time.monotonic()))
                if time.monotonic() - last_sent >= interval:
                    await send('{"type": "KeepAlive"}')

        keeper = asyncio.create_task(keepalive())
        try:
            chunk: AudioChunk | None = first
            while chunk is not None:
                for frame in encoder.encode(chunk):
                    await send(frame)
                chunk = await anext(source, None)
            for frame in encoder.flush():
                await send(frame)
            keeper.cancel()
            await send(json.dumps({"type": "Finalize"}))
            await send(json.dumps({"type": "CloseStream"}))
            events.put_nowait(_InputEnded())
        except ConnectionClosed:
            pass  # the reader reports why
        except Exception as exc:  # bad input, or the caller's audio source failed: the consumer raises it
            events.put_nowait(exc)
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)


def _refusal(response: Any) -> str:
    """The error text for a refused upgrade: status, the service's reason, and what it means."""
    status = int(getattr(response, "status_code", 0))
    headers = getattr(response, "headers", {}) or {}
    reason = str(headers.get("dg-error", "")).strip()
    if not reason:
        body = bytes(getattr(response, "body", b"") or b"")
        try:
            data = json.loads(body)
            reason = str(data.get("err_msg") or data.get("message") or "") if isinstance(data, dict) else ""
        except ValueError:
            reason = body[:120].decode("utf-8", "replace")
    meaning = {
        401: "the API key was refused",
        402: "the account has no credit left",
        403: "the API key may not use this model or feature",
        429: "rate limited: too many requests or concurrent connections",
    }.get(status, "the service refused the connection")
    return f"deepgram: {meaning} (HTTP {status}{': ' + reason if reason else ''})"


class _Encoder:
    """Audio chunks -> 16 kHz PCM16 frames of :data:`_FRAME_SAMPLES` (never an empty frame)."""

    def __init__(self, first: AudioChunk) -> None:
        self._input = To16k()
        self._pending = self._input.process(first)  # checks the first chunk before anything connects
        self._first: AudioChunk | None = first

    def encode(self, chunk: AudioChunk) -> list[bytes]:
        if chunk is self._first:
            self._first = None  # already converted by the constructor
        else:
            self._pending = np.concatenate([self._pending, self._input.process(chunk)])
        frames = []
        while len(self._pending) >= _FRAME_SAMPLES:
            frames.append(float_to_pcm16(self._pending[:_FRAME_SAMPLES]))
            self._pending = self._pending[_FRAME_SAMPLES:]
        return frames

    def flush(self) -> list[bytes]:
        rest = np.concatenate([self._pending, self._input.flush()])
        self._pending = np.zeros(0, np.float32)
        return [float_to_pcm16(rest)] if len(rest) else []
