"""Clients of the standalone services: each implements its role's Protocol over the service protocol.

``RemoteSTT``, ``RemoteLLM``, ``RemoteTTS`` and ``RemoteFace`` can replace an in-process provider in
:class:`facecast.pipeline.Services` unchanged. Each request takes a pooled connection (opening one when none
is idle), sends a ``ping`` every ``heartbeat_interval`` and fails with :class:`RemoteError` when the peer is
silent for ``heartbeat_timeout`` (dead or hung), when output stalls for ``stall_timeout`` after the input is
complete, when the whole request exceeds ``request_timeout``, or when the server answers garbage. Closing a
role's stream early sends ``cancel`` and a ``ping``; ``aclose()`` returns at the ``pong`` (at most
``heartbeat_timeout`` later), when the server has read the ``cancel`` (so its work is cancelled) and what it
sent before has been dropped: the work has stopped, as with an in-process provider, and the pooled connection
holds nothing of the request. A remote ``bad_input`` error is raised as :class:`InputError`
(retrying it elsewhere would not help).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.protocol import State

from ..aio import closing
from ..audio import resample_stream
from ..errors import InputError, ServiceError
from ..protocol import service as sp
from ..types import AudioChunk, ChatMessage, FaceFrames, SpeechChunk, Transcript

__all__ = [
    "ClientOptions",
    "RemoteError",
    "Endpoint",
    "RemoteSTT",
    "RemoteLLM",
    "RemoteTTS",
    "RemoteFace",
    "make_remote",
]

log = logging.getLogger(__name__)

_DONE = object()
_MAX_SAMPLES = 65536
"""Samples per audio frame sent (256 KiB of float32, well under the 1 MiB frame limit)."""


@dataclass(frozen=True, slots=True)
class ClientOptions:
    token: str = ""
    """Access token sent as ``Authorization: Bearer``."""
    connect_timeout: float = 1.0
    heartbeat_interval: float = 0.25
    heartbeat_timeout: float = 1.0
    """A peer silent this long (no message, not even ``pong``) is dead or hung."""
    stall_timeout: float = 10.0
    """Longest wait for output once the input is complete (per-request deadline between outputs)."""
    request_timeout: float = 300.0
    quick_close: float = 0.3
    """A connection that closes within this many seconds of opening, with no output, 'connects then closes'."""
    pool_size: int = 4
    """Idle connections kept per endpoint."""


class RemoteError(ServiceError):
    """A remote service failed: unreachable, closed, hung, too slow, or answering garbage.

    ``quick_close`` is set when the connection closed at once after opening ("connects then closes").
    """

    def __init__(self, url: str, reason: str, *, quick_close: bool = False, output: bool = False) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.quick_close = quick_close
        self.output = output


@dataclass(slots=True)
class _Conn:
    ws: ClientConnection
    opened: float
    rate: int


@dataclass(slots=True)
class _Call:
    """State shared by one request's reader, writer and heartbeat tasks."""

    ident: int
    out: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    input_done: float | None = None
    last_seen: float = field(default_factory=time.monotonic)
    outputs: int = 0
    last_output: float = 0.0
    finished: bool = False
    cancelled: bool = False
    """Set with the ``cancel``: the reader then drops everything up to the ``pong`` of the ping sent after it."""
    clean: bool = False
    """That ``pong`` came: the server has read the ``cancel`` and the connection holds nothing of the request."""
    reader_done: asyncio.Event = field(default_factory=asyncio.Event)


class Endpoint:
    """One service URL for one role: a small connection pool and the request exchange."""

    def __init__(self, url: str, role: sp.Role, options: ClientOptions | None = None) -> None:
        self.url = url
        self.role = role
        self.options = options or ClientOptions()
        self._idle: list[_Conn] = []
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"Endpoint({self.url!r}, {self.role!r})"

    async def _open(self) -> _Conn:
        opts = self.options
        headers = {"Authorization": f"Bearer {opts.token}"} if opts.token else None
        started = time.monotonic()
        try:
            ws = await connect(
                self.url,
                additional_headers=headers,
                open_timeout=opts.connect_timeout,
                max_size=4 * sp.MAX_BINARY_FRAME,
                compression=None,
                ping_interval=None,
                close_timeout=0.2,
            )
        except InvalidStatus as exc:
            raise RemoteError(self.url, f"refused the connection (HTTP {exc.response.status_code})") from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise RemoteError(self.url, f"cannot connect: {exc or type(exc).__name__}") from None
        try:
            await ws.send(sp.encode(sp.Hello(self.role)))
            raw = await asyncio.wait_for(ws.recv(), opts.heartbeat_timeout)
            welcome = sp.decode_server(raw) if isinstance(raw, str) else None
        except ConnectionClosed:
            await ws.close()
            quick = time.monotonic() - started < opts.quick_close + opts.connect_timeout
            raise RemoteError(self.url, "connected then closed at once", quick_close=quick) from None
        except (TimeoutError, sp.ProtocolError) as exc:
            await ws.close()
            raise RemoteError(self.url, f"no valid welcome: {exc or 'timed out'}") from None
        if not isinstance(welcome, sp.Welcome):
            await ws.close()
            raise RemoteError(self.url, f"answered {welcome!r} instead of a welcome (is it a {self.role} service?)")
        return _Conn(ws, time.monotonic(), welcome.rate)

    async def _acquire(self) -> _Conn:
        while self._idle:
            conn = self._idle.pop()
            if conn.ws.state is State.OPEN:
                return conn
            await conn.ws.close()
        return await self._open()

    async def _release(self, conn: _Conn) -> None:
        if conn.ws.state is State.OPEN and len(self._idle) < self.options.pool_size:
            self._idle.append(conn)
        else:
            await conn.ws.close()

    async def probe(self) -> float:
        """Open (or reuse) a connection and time a ping round trip; raises :class:`RemoteError` on failure."""
        conn = await self._acquire()
        started = time.monotonic()
        try:
            await conn.ws.send(sp.encode(sp.Ping(0)))
            while True:
                raw = await asyncio.wait_for(conn.ws.recv(), self.options.heartbeat_timeout)
                if isinstance(raw, str) and isinstance(sp.decode_server(raw), sp.Pong):
                    break
        except (ConnectionClosed, TimeoutError, sp.ProtocolError) as exc:
            await conn.ws.close()
            raise RemoteError(
                self.url,
                f"probe failed: {exc or 'timed out'}",
                quick_close=time.monotonic() - conn.opened < self.options.quick_close,
            ) from None
        await self._release(conn)
        return time.monotonic() - started

    async def welcome_rate(self) -> int:
        """The rate the service announced in its ``welcome`` (its TTS's own rate; 0 for other roles); raises
        :class:`RemoteError` when it cannot be reached."""
        conn = await self._acquire()
        await self._release(conn)
        return conn.rate

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.ws.close()

    async def request(
        self,
        start: Callable[[int], sp.ClientMessage],
        inputs: Callable[[int], AsyncIterator[str | bytes]] | None = None,
    ) -> AsyncIterator[Any]:
        """Run one request: send ``start(id)``, stream ``inputs(id)`` then ``end``, yield the server's messages.

        Yields decoded messages for this request (not ``done``, ``pong``); raises :class:`RemoteError` or
        :class:`InputError` as described in the module docstring; an exception from ``inputs`` is re-raised.
        """
        conn = await self._acquire()
        call = _Call(next(self._ids))
        writer: asyncio.Task[None] | None = None
        try:
            await conn.ws.send(sp.encode(start(call.ident)))
        except ConnectionClosed:
            await conn.ws.close()
            raise RemoteError(
                self.url,
                "closed before the request was sent",
                quick_close=time.monotonic() - conn.opened < self.options.quick_close,
            ) from None
        if inputs is None:
            call.input_done = time.monotonic()
        else:
            writer = asyncio.create_task(self._write(conn, call, inputs(call.ident)))
        tasks = [asyncio.create_task(self._read(conn, call)), asyncio.create_task(self._watch(conn, call))]
        try:
            while True:
                # A plain get: asyncio.wait_for (3.10/3.11) would cost a task per item and can swallow the
                # caller's cancellation when the item is already there; the deadlines are _watch's job.
                item = await call.out.get()
                if item is _DONE:
                    call.finished = True
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            reusable = False
            try:
                if writer is not None:
                    writer.cancel()  # no more input after the cancel
                    await asyncio.gather(writer, return_exceptions=True)
                reusable = call.finished or await self._cancel(conn, call)
            finally:  # even when the caller is cancelled again while it waits for the pong
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                if reusable:
                    await self._release(conn)
                else:
                    await conn.ws.close()

    async def _cancel(self, conn: _Conn, call: _Call) -> bool:
        """Send ``cancel`` then ``ping``, and wait for the reader to see the ``pong`` (at most ``heartbeat_timeout``).

        The server reads in order and answers a ping at once, so by then it has cancelled the request's work,
        and the reader has dropped all it sent for the request. Returns whether the connection is clean for
        another request (when it is not, it is closed rather than pooled).
        """
        call.cancelled = True
        try:
            await conn.ws.send(sp.encode(sp.Cancel(call.ident)))
            await conn.ws.send(sp.encode(sp.Ping(call.ident)))  # the heartbeat's pings have id 0
            await asyncio.wait_for(call.reader_done.wait(), self.options.heartbeat_timeout)
        except (ConnectionClosed, TimeoutError):
            return False
        return call.clean

    async def _write(self, conn: _Conn, call: _Call, inputs: AsyncIterator[str | bytes]) -> None:
        try:
            async for data in inputs:
                await conn.ws.send(data)
            await conn.ws.send(sp.encode(sp.End(call.ident)))
            call.input_done = time.monotonic()
        except ConnectionClosed:
            call.out.put_nowait(self._lost(conn, call))
        except Exception as exc:  # noqa: BLE001 - the caller's input failed: hand it over as is
            call.out.put_nowait(exc)

    def _lost(self, conn: _Conn, call: _Call) -> RemoteError:
        quick = call.outputs == 0 and time.monotonic() - conn.opened < self.options.quick_close
        return RemoteError(self.url, "connection lost", quick_close=quick, output=call.outputs > 0)

    async def _watch(self, conn: _Conn, call: _Call) -> None:
        """Send ``ping`` every ``heartbeat_interval`` and enforce the request's deadlines (module docstring).

        It sleeps until the earliest deadline known; deadlines only move later while it sleeps (the reader
        updates ``last_seen``), and an input completing meanwhile has its deadline ``stall_timeout`` ahead,
        so waking at ``stall_timeout`` at the latest never misses one.
        """
        opts = self.options
        now = time.monotonic()
        next_ping, give_up = now + opts.heartbeat_interval, now + opts.request_timeout
        try:
            while True:
                now = time.monotonic()
                if now >= give_up:
                    call.out.put_nowait(RemoteError(self.url, f"request took over {opts.request_timeout} s"))
                    return
                silent = call.last_seen + opts.heartbeat_timeout
                if now >= silent:
                    raise RemoteError(
                        self.url, f"no answer for {opts.heartbeat_timeout} s (dead or hung)", output=call.outputs > 0
                    )
                if call.input_done is None:
                    stall = now + opts.stall_timeout
                else:
                    stall = max(call.input_done, call.last_output) + opts.stall_timeout
                    if now >= stall:
                        raise RemoteError(self.url, f"no output for {opts.stall_timeout} s", output=call.outputs > 0)
                if now >= next_ping:
                    next_ping = now + opts.heartbeat_interval
                    await conn.ws.send(sp.encode(sp.Ping(0)))
                    continue
                await asyncio.sleep(max(0.001, min(next_ping, silent, stall, give_up) - now))
        except ConnectionClosed:
            pass
        except RemoteError as exc:
            call.out.put_nowait(exc)  # first, so that it and not the reader's "connection lost" is reported
            await conn.ws.close()

    async def _read(self, conn: _Conn, call: _Call) -> None:
        """Hand the request's output to the consumer; ``recv`` has no timeout here (see :meth:`_watch`)."""
        try:
            while True:
                raw = await conn.ws.recv()
                call.last_seen = time.monotonic()
                if call.cancelled:  # only the pong that follows the cancel matters now
                    if isinstance(raw, str) and '"pong"' in raw:
                        try:
                            call.clean = sp.decode_server(raw) == sp.Pong(call.ident)
                        except sp.ProtocolError:
                            return  # garbage: not clean
                        if call.clean:
                            return
                    continue
                try:
                    message = sp.decode_server(raw) if isinstance(raw, str) else sp.decode_binary(raw)
                except sp.ProtocolError as exc:
                    raise RemoteError(self.url, f"answered garbage: {exc.message}", output=call.outputs > 0) from None
                if isinstance(message, sp.Pong | sp.Welcome):
                    continue
                if isinstance(message, sp.Ping):
                    await conn.ws.send(sp.encode(sp.Pong(message.id)))
                    continue
                if isinstance(message, sp.Error):
                    if message.id in (0, call.ident):
                        if message.code == InputError.code:
                            raise InputError(message.message)
                        raise RemoteError(self.url, f"error {message.code}: {message.message}", output=call.outputs > 0)
                    continue
                if message.id != call.ident:
                    continue  # not this request's (a pooled connection is drained after a cancel: defensive)
                if isinstance(message, sp.Done):
                    call.finished = True  # the server is done with it: nothing to cancel, even if not read yet
                    call.out.put_nowait(_DONE)
                    return
                call.outputs += 1
                call.last_output = call.last_seen
                call.out.put_nowait(message)
                if not isinstance(message, sp.Timing):  # a timing goes with the frame after it
                    # let the consumer take it before the frames already buffered behind it are decoded
                    await asyncio.sleep(0)
        except ConnectionClosed:
            call.out.put_nowait(self._lost(conn, call))
        except (RemoteError, InputError) as exc:
            call.out.put_nowait(exc)  # first: the writer's "connection lost" once this closes it is not the cause
            await conn.ws.close()
        finally:
            call.reader_done.set()


async def _mono_chunks(audio: AsyncIterable[AudioChunk]) -> AsyncIterator[AudioChunk]:
    """The input audio at a rate the protocol accepts (others are resampled to 16 kHz), mono."""
    iterator = aiter(audio)
    try:
        first = await anext(iterator)
    except StopAsyncIteration:
        return

    async def chain() -> AsyncIterator[AudioChunk]:
        yield first
        async for chunk in iterator:
            yield chunk

    stream: AsyncIterator[AudioChunk] = chain()
    if first.rate not in sp.RATES:
        stream = resample_stream(stream, 16000)
    async for chunk in stream:
        pcm = np.asarray(chunk.pcm, np.float32)
        if pcm.ndim > 1:
            pcm = pcm.mean(axis=1).astype(np.float32)
        yield AudioChunk(np.clip(pcm, -1.0, 1.0), chunk.rate, chunk.offset)


def _frames(ident: int, chunk: AudioChunk) -> list[bytes]:
    return [
        sp.encode_audio(ident, AudioChunk(chunk.pcm[i : i + _MAX_SAMPLES], chunk.rate, chunk.offset + i))
        for i in range(0, max(1, len(chunk.pcm)), _MAX_SAMPLES)
    ]


class _Peeked:
    """An audio stream whose first chunk was read ahead to learn its rate."""

    def __init__(self, first: Any, rest: AsyncIterator[Any]) -> None:
        self.first = first
        self.rest = rest

    async def all(self) -> AsyncIterator[Any]:
        yield self.first
        async for item in self.rest:
            yield item


async def _peek(stream: AsyncIterator[Any]) -> _Peeked | None:
    try:
        return _Peeked(await anext(stream), stream)
    except StopAsyncIteration:
        return None


class RemoteSTT:
    """:class:`facecast.roles.SpeechToText` served by ``facecast serve stt`` at ``url``."""

    def __init__(self, url: str, options: ClientOptions | None = None) -> None:
        self.endpoint = Endpoint(url, "stt", options)

    async def transcribe(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcript]:
        peeked = await _peek(_mono_chunks(audio))
        if peeked is None:
            yield Transcript("", True)
            return
        rate = peeked.first.rate

        async def send(ident: int) -> AsyncIterator[bytes]:
            async for chunk in peeked.all():
                if chunk.rate != rate:
                    raise InputError(f"audio stream changed rate from {rate} to {chunk.rate} Hz")
                for frame in _frames(ident, chunk):
                    yield frame

        async with closing(self.endpoint.request(lambda i: sp.Transcribe(i, rate), send)) as replies:
            async for message in replies:
                if isinstance(message, sp.TranscriptOut):
                    yield Transcript(message.text, message.final)

    async def aclose(self) -> None:
        await self.endpoint.aclose()


class RemoteLLM:
    """:class:`facecast.roles.LanguageModel` served by ``facecast serve llm`` at ``url``."""

    def __init__(self, url: str, options: ClientOptions | None = None) -> None:
        self.endpoint = Endpoint(url, "llm", options)

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        history = tuple(messages)
        async with closing(self.endpoint.request(lambda i: sp.Chat(i, history))) as replies:
            async for message in replies:
                if isinstance(message, sp.Token):
                    yield message.text

    async def aclose(self) -> None:
        await self.endpoint.aclose()


class RemoteTTS:
    """:class:`facecast.roles.TextToSpeech` served by ``facecast serve tts``; audio comes at ``rate``
    (the server resamples when its voice has another rate)."""

    def __init__(self, url: str, options: ClientOptions | None = None, rate: int = 22050) -> None:
        if rate not in sp.RATES:
            raise InputError(f"TTS rate {rate} is not supported; use one of {sp.RATES}")
        self.endpoint = Endpoint(url, "tts", options)
        self._rate = rate

    @property
    def sample_rate(self) -> int:
        return self._rate

    async def warm_up(self) -> None:
        """Connect once and adopt the service's own rate from its ``welcome``, so its audio is not resampled
        (a server calls this at startup, before any request). A service that cannot be reached keeps the rate
        given at construction (failover copes with it later)."""
        try:
            rate = await self.endpoint.welcome_rate()
        except ServiceError as exc:
            log.warning("%s: cannot learn the TTS rate now (%s); using %d Hz", self.endpoint.url, exc, self._rate)
            return
        if rate in sp.RATES:
            self._rate = rate

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        if not text.strip():
            raise InputError("nothing to say: the text is empty")
        if len(text) > sp.MAX_SPEAK_TEXT:
            raise InputError(f"text of {len(text)} characters is over the {sp.MAX_SPEAK_TEXT} limit")
        timing: sp.Timing | None = None
        async with closing(self.endpoint.request(lambda i: sp.Synthesize(i, text, self._rate))) as replies:
            async for message in replies:
                if isinstance(message, sp.Timing):
                    timing = message
                elif isinstance(message, sp.AudioFrame):
                    yield SpeechChunk(message.chunk, timing.phonemes if timing else (), timing.words if timing else ())
                    timing = None

    async def aclose(self) -> None:
        await self.endpoint.aclose()


class RemoteFace:
    """:class:`facecast.roles.FaceAnimator` served by ``facecast serve face`` at ``url``."""

    def __init__(self, url: str, options: ClientOptions | None = None) -> None:
        self.endpoint = Endpoint(url, "face", options)

    async def animate(self, speech: AsyncIterable[SpeechChunk]) -> AsyncIterator[FaceFrames]:
        peeked = await _peek(aiter(speech))
        if peeked is None:
            return
        rate = peeked.first.audio.rate
        if rate not in sp.RATES:
            raise InputError(f"face service audio must be at one of {sp.RATES} Hz, got {rate}")

        async def send(ident: int) -> AsyncIterator[str | bytes]:
            async for chunk in peeked.all():
                if chunk.audio.rate != rate:
                    raise InputError(f"speech stream changed rate from {rate} to {chunk.audio.rate} Hz")
                if chunk.phonemes or chunk.words:
                    yield sp.encode(sp.Timing(ident, chunk.phonemes, chunk.words))
                pcm = np.clip(np.asarray(chunk.audio.pcm, np.float32), -1.0, 1.0)
                for frame in _frames(ident, AudioChunk(pcm, rate, chunk.audio.offset)):
                    yield frame  # a timing message belongs to the first frame after it

        async with closing(self.endpoint.request(lambda i: sp.Animate(i, rate), send)) as replies:
            async for message in replies:
                if isinstance(message, sp.FaceFrame):
                    yield message.frames

    async def aclose(self) -> None:
        await self.endpoint.aclose()


def make_remote(role: sp.Role, url: str, options: ClientOptions | None = None, rate: int = 22050) -> Any:
    """The client of ``role`` at ``url``."""
    if role == "stt":
        return RemoteSTT(url, options)
    if role == "llm":
        return RemoteLLM(url, options)
    if role == "tts":
        return RemoteTTS(url, options, rate)
    return RemoteFace(url, options)
