"""``facecast serve ROLE``: one role (STT, LLM, TTS or face) as a standalone WebSocket server.

The server speaks the service protocol (:mod:`facecast.protocol.service`, docs/protocol.md) and wraps any
local implementation of the role. Every message is validated; a bad one is answered with an ``error`` and
the connection keeps serving. A connection may run several requests at once (each its own task); ``cancel``
or the connection closing cancels a request's task, which closes the role's stream, so the work stops. A
request's audio waiting for the role is bounded (:data:`~facecast.limits.MAX_BUFFERED_SAMPLES`; past it the
request gets ``too_large`` and is stopped); an STT wrapped by :func:`~facecast.limits.limit_role` refuses
requests past ``max_recognisers`` with ``busy``. The per-connection session runs over a
:class:`~facecast.remote.connection.ServiceSocket` (:func:`serve_socket`), so the Ray Serve pools
(:mod:`facecast.scale`) serve exactly this protocol behind an ASGI WebSocket.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from ..aio import closing
from ..auth import AccessPolicy, check_token_rule, header
from ..errors import ConfigError, FacecastError
from ..limits import MAX_BUFFERED_SAMPLES
from ..protocol import service as sp
from ..roles import FaceAnimator, LanguageModel, SpeechToText, TextToSpeech
from ..tts.resampled import speech_at
from ..types import AudioChunk, SpeechChunk
from .connection import ServiceSocket, SocketClosed, WebsocketsSocket

__all__ = [
    "DEFAULT_PORTS",
    "MAX_REQUESTS",
    "WS_MAX_SIZE",
    "ServiceServer",
    "handshake_refusal",
    "serve_socket",
    "start_server",
    "check_token_rule",
    "token_matches",
    "run_forever",
]

log = logging.getLogger(__name__)

DEFAULT_PORTS: dict[str, int] = {"stt": 8766, "llm": 8767, "tts": 8768, "face": 8769}
MAX_REQUESTS = 8
"""Requests one connection may run at the same time."""
WS_MAX_SIZE = 4 * sp.MAX_BINARY_FRAME
"""Frames up to this size are read and, when over the protocol's limits, answered with ``too_large``;
larger ones close the connection (code 1009) before they are buffered."""
_END = object()
RoleImpl = SpeechToText | LanguageModel | TextToSpeech | FaceAnimator
_ROLE_TYPES: dict[str, type] = {"stt": SpeechToText, "llm": LanguageModel, "tts": TextToSpeech, "face": FaceAnimator}


def token_matches(request: Request, token: str) -> bool:
    """Whether ``request`` carries ``token`` (see :mod:`facecast.auth`), compared in constant time."""
    return AccessPolicy(token=token).token_ok(request.headers, urlsplit(request.path).query)


def handshake_refusal(
    policy: AccessPolicy, headers: Mapping[str, str], query: bytes | str
) -> tuple[HTTPStatus, str] | None:
    """The HTTP status and text that refuse a service handshake under ``policy`` (:mod:`facecast.auth`): 421
    for a Host that is not accepted, 403 for a browser Origin that is not allowed, 401 without the token;
    ``None`` to go on. Pure (logs only), so every WebSocket server of the service protocol applies it."""
    host = header(headers, "Host")
    origin = header(headers, "Origin")
    if not policy.host_ok(host):
        log.warning("refused a connection: Host %r is not accepted (allowed_hosts)", host)
        return HTTPStatus.MISDIRECTED_REQUEST, "this Host is not served here\n"
    if not policy.origin_ok(origin, host):
        log.warning("refused a connection: Origin %r is not allowed (allowed_origins)", origin)
        return HTTPStatus.FORBIDDEN, "this Origin may not use the service\n"
    if not policy.token_ok(headers, query):
        return HTTPStatus.UNAUTHORIZED, "a valid access token is required\n"
    return None


def _refusal(policy: AccessPolicy, connection: ServerConnection, request: Request) -> Response | None:
    refused = handshake_refusal(policy, request.headers, urlsplit(request.path).query)
    return None if refused is None else connection.respond(*refused)


@dataclass(slots=True)
class _Request:
    message: sp.Transcribe | sp.Chat | sp.Synthesize | sp.Animate
    inputs: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    timing: sp.Timing | None = None
    ended: bool = False
    task: asyncio.Task[None] | None = None
    waiting: int = 0
    """Audio samples received and not yet taken by the role (at most :data:`MAX_BUFFERED_SAMPLES`)."""


async def _queued(request: _Request) -> AsyncIterator[Any]:
    while (item := await request.inputs.get()) is not _END:
        request.waiting -= len(item.pcm if isinstance(item, AudioChunk) else item.audio.pcm)
        yield item


class _Session:
    """One client connection: reads and validates messages, runs requests, answers pings."""

    def __init__(self, ws: ServiceSocket, role: sp.Role, impl: RoleImpl) -> None:
        self.ws = ws
        self.role = role
        self.impl = impl
        # checked once: isinstance() against a runtime Protocol costs tens of microseconds (3.11), per request
        self.serves = isinstance(impl, _ROLE_TYPES[role])
        self.hello = False
        self.requests: dict[int, _Request] = {}

    async def send(self, message: sp.Message | bytes) -> None:
        await self.ws.send(message if isinstance(message, bytes) else sp.encode(message))

    async def error(self, code: str, message: str, request: int = 0) -> None:
        await self.send(sp.Error(code, message, request))

    async def run(self) -> None:
        try:
            while True:
                raw = await self.ws.receive()
                try:
                    if isinstance(raw, str):
                        await self.on_text(sp.decode_client(raw))
                    else:
                        await self.on_binary(sp.decode_binary(raw))
                except sp.ProtocolError as exc:
                    await self.error(exc.code, exc.message)
        except SocketClosed:
            pass
        finally:
            tasks = [r.task for r in self.requests.values() if r.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def on_text(self, message: sp.ClientMessage) -> None:
        if isinstance(message, sp.Ping):
            await self.send(sp.Pong(message.id))
        elif isinstance(message, sp.Pong):
            pass
        elif isinstance(message, sp.Hello):
            if message.role != self.role:
                await self.error("wrong_role", f"this server serves {self.role}, not {message.role}")
                return
            self.hello = True
            rate = self.impl.sample_rate if isinstance(self.impl, TextToSpeech) else 0
            await self.send(sp.Welcome(self.role, rate))
        elif not self.hello:
            await self.error("no_hello", "send hello first")
        elif isinstance(message, sp.Transcribe | sp.Chat | sp.Synthesize | sp.Animate):
            await self.start(message)
        elif isinstance(message, sp.Cancel):
            request = self.requests.pop(message.id, None)
            if request is not None and request.task is not None:
                request.task.cancel()
        else:
            request = self.requests.get(message.id)
            if request is None or request.ended:
                await self.error("unknown_request", f"no open request {message.id}", message.id)
            elif isinstance(message, sp.End):
                request.ended = True
                request.inputs.put_nowait(_END)
            elif self.role != "face":
                await self.error("bad_direction", "timing is sent to the face service only", message.id)
            else:
                request.timing = message

    async def start(self, message: sp.Transcribe | sp.Chat | sp.Synthesize | sp.Animate) -> None:
        wanted = {"stt": sp.Transcribe, "llm": sp.Chat, "tts": sp.Synthesize, "face": sp.Animate}[self.role]
        if not isinstance(message, wanted):
            await self.error("wrong_role", f"this server serves {self.role}", message.id)
        elif message.id in self.requests:
            await self.error("duplicate_id", f"request {message.id} is already running", message.id)
        elif len(self.requests) >= MAX_REQUESTS:
            await self.error("busy", f"at most {MAX_REQUESTS} requests at a time per connection", message.id)
        else:
            request = _Request(message)
            self.requests[message.id] = request
            request.task = asyncio.create_task(self.serve_request(request))

    async def on_binary(self, frame: sp.AudioFrame | sp.FaceFrame) -> None:
        if not self.hello:
            await self.error("no_hello", "send hello first", frame.id)
            return
        if isinstance(frame, sp.FaceFrame) or self.role in ("llm", "tts"):
            await self.error("bad_direction", f"the {self.role} service takes no binary input of this kind", frame.id)
            return
        request = self.requests.get(frame.id)
        if request is None or request.ended:
            await self.error("unknown_request", f"no open request {frame.id}", frame.id)
            return
        rate = request.message.rate  # type: ignore[union-attr]  # stt/face requests carry a rate
        if frame.chunk.rate != rate:
            await self.error("bad_audio_format", f"audio at {frame.chunk.rate} Hz in a {rate} Hz request", frame.id)
            return
        count = len(frame.chunk.pcm)
        if request.waiting + count > MAX_BUFFERED_SAMPLES:
            await self.overflow(request)
            return
        request.waiting += count
        if self.role == "stt":
            request.inputs.put_nowait(frame.chunk)
        else:
            timing, request.timing = request.timing, None
            request.inputs.put_nowait(
                SpeechChunk(frame.chunk, timing.phonemes if timing else (), timing.words if timing else ())
            )

    async def overflow(self, request: _Request) -> None:
        """The client sent audio faster than the role takes it, past the bound: the request is stopped."""
        ident = request.message.id
        request.ended = True  # its later frames are answered unknown_request
        if request.task is not None:
            request.task.cancel()
        if self.requests.get(ident) is request:
            del self.requests[ident]
        seconds = MAX_BUFFERED_SAMPLES / request.message.rate  # type: ignore[union-attr]  # stt/face requests
        await self.error(
            "too_large", f"over {seconds:.0f} s of audio are waiting for the {self.role}; request stopped", ident
        )

    async def serve_request(self, request: _Request) -> None:
        ident = request.message.id
        try:
            await self.produce(request)
            await self.send(sp.Done(ident))
        except asyncio.CancelledError:
            raise
        except SocketClosed:
            pass
        except FacecastError as exc:
            with suppress(SocketClosed):
                await self.error(exc.code, str(exc), ident)
        except Exception as exc:  # noqa: BLE001 - a failing provider must not stop the server
            log.exception("request %d failed", ident)
            with suppress(SocketClosed):
                await self.error("service_unavailable", f"{type(exc).__name__}: {exc}", ident)
        finally:
            if self.requests.get(ident) is request:
                del self.requests[ident]

    async def produce(self, request: _Request) -> None:
        message, impl = request.message, self.impl
        ident = message.id
        if not self.serves:  # pragma: no cover - start_server() was given an implementation of another role
            raise ConfigError(f"{type(impl).__name__} cannot serve {type(message).__name__}")
        # start() admits only the role's own request, and impl implements the role (self.serves)
        if isinstance(message, sp.Transcribe):
            async with closing(cast(SpeechToText, impl).transcribe(_queued(request))) as transcripts:
                async for text in transcripts:
                    await self.send(sp.transcript(ident, text))
        elif isinstance(message, sp.Chat):
            async with closing(cast(LanguageModel, impl).stream(message.messages)) as tokens:
                async for token in tokens:
                    if token:
                        await self.send(sp.Token(ident, token))
        elif isinstance(message, sp.Synthesize):
            async with closing(speech_at(cast(TextToSpeech, impl), message.text, message.rate)) as speech:
                async for chunk in speech:
                    if chunk.phonemes or chunk.words:
                        await self.send(sp.Timing(ident, chunk.phonemes, chunk.words))
                    for start in range(0, len(chunk.audio.pcm), 65536):
                        piece = chunk.audio.pcm[start : start + 65536]
                        await self.send(
                            sp.encode_audio(ident, AudioChunk(piece, chunk.audio.rate, chunk.audio.offset + start))
                        )
        else:
            async with closing(cast(FaceAnimator, impl).animate(_queued(request))) as blocks:
                async for block in blocks:
                    for start in range(0, len(block.values), 1000):
                        values = block.values[start : start + 1000]
                        await self.send(sp.encode_face(ident, type(block)(block.start + start, values)))


async def serve_socket(ws: ServiceSocket, role: sp.Role, impl: RoleImpl) -> None:
    """Serve one accepted connection ``ws`` as ``role`` with ``impl`` until it closes; its requests' tasks are
    cancelled and awaited before this returns. The caller has applied the access rules and accepted it."""
    await _Session(ws, role, impl).run()


class ServiceServer:
    """A running service server; ``async with`` it or call :meth:`close`."""

    def __init__(self, server: Server, role: sp.Role) -> None:
        self.server = server
        self.role = role

    @property
    def port(self) -> int:
        return int(next(iter(self.server.sockets)).getsockname()[1])

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def __aenter__(self) -> ServiceServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def start_server(
    role: sp.Role,
    impl: RoleImpl,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str = "",
    allowed_hosts: tuple[str, ...] = (),
    allowed_origins: tuple[str, ...] = (),
) -> ServiceServer:
    """Listen on ``host:port`` (0 = a free port) and serve ``impl`` as ``role`` until closed.

    Every handshake passes the Host, Origin and token rules of :mod:`facecast.auth` (``allowed_hosts`` and
    ``allowed_origins`` as in the settings of the same names) or is refused with HTTP 421, 403 or 401.
    Raises :class:`ConfigError` when ``host`` is not loopback and ``token`` is empty or weak, or the port is
    taken.
    """
    check_token_rule(host, token)
    policy = AccessPolicy(token, host, tuple(allowed_hosts), tuple(allowed_origins))

    def authorize(connection: ServerConnection, request: Request) -> Response | None:
        return _refusal(policy, connection, request)

    async def handler(ws: ServerConnection) -> None:
        await _Session(WebsocketsSocket(ws), role, impl).run()

    try:
        server = await serve(
            handler,
            host,
            port,
            process_request=authorize,
            max_size=WS_MAX_SIZE,
            compression=None,
            ping_interval=10,
            ping_timeout=10,
        )
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return ServiceServer(server, role)


async def run_forever(
    role: sp.Role,
    build: Callable[[], RoleImpl],
    host: str,
    port: int,
    token: str,
    ready: Callable[[int], Awaitable[None] | None] | None = None,
    allowed_hosts: tuple[str, ...] = (),
    allowed_origins: tuple[str, ...] = (),
) -> None:
    """Build the role, load its model (``warm_up()`` when it has one), serve it and print
    ``facecast serve ROLE: listening on ws://HOST:PORT`` (flushed)."""
    impl = build()
    warm = getattr(impl, "warm_up", None)
    if warm is not None:
        # PocketSphinx holds the GIL while it loads (~0.5 s): on the first request that would stall the event
        # loop, heartbeats included, and a failover client would declare a just-(re)started service hung.
        result = warm()
        if asyncio.iscoroutine(result):
            await result
    async with await start_server(role, impl, host, port, token, allowed_hosts, allowed_origins) as server:
        print(f"facecast serve {role}: listening on ws://{host}:{server.port}", flush=True)
        sys.stdout.flush()
        if ready is not None:
            result = ready(server.port)
            if result is not None:
                await result
        await asyncio.Future()
