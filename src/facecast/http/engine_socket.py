"""The connection side of the engine WebSocket: the limits one client cannot get past.

- **Out**: :class:`WebSocketTransport` writes one frame at a time (the session's tasks wait their turn, one
  frame each; the socket's own buffer is bounded by asyncio's high-water mark). A frame that cannot be
  handed to the client within ``send_timeout_s`` (it stopped reading: its receive window and the buffers are
  full) resets the connection at once (:mod:`facecast.http.wsprotocol`) and ends the session.
- **In**: :func:`pump` feeds the client's frames to the session, at most ``max_messages_per_s`` (a token
  bucket with two seconds of burst): the others are dropped with one ``error`` ``rate_limited`` a second at
  most, and the loop yields to the other sessions. Nothing received for ``idle_timeout_s``: ``error``
  ``idle_timeout`` and the socket is closed with :data:`WS_IDLE_TIMEOUT`.
- **Admission**: :func:`refuse_busy` answers a connection over ``max_sessions`` with ``error`` ``busy`` and
  closes it with :data:`WS_TRY_AGAIN_LATER`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ..config import Settings
from ..engine.session import EngineSession
from ..limits import TokenBucket
from ..protocol import engine as proto
from .wsprotocol import abort_of

__all__ = [
    "TransportClosed",
    "SocketLimits",
    "WebSocketTransport",
    "pump",
    "refuse_busy",
    "WS_IDLE_TIMEOUT",
    "WS_TRY_AGAIN_LATER",
]

log = logging.getLogger(__name__)

WS_IDLE_TIMEOUT = 4408
"""Close code after ``idle_timeout_s`` without a message from the client (docs/protocol.md)."""
WS_TRY_AGAIN_LATER = 1013
"""Close code (RFC 6455 "Try Again Later") for a connection over ``max_sessions``."""


class TransportClosed(ConnectionError):
    """The client went away (or was disconnected) while the server was sending to it."""


@dataclass(frozen=True, slots=True)
class SocketLimits:
    """Per-connection limits (the settings of the same names; 0 turns one off)."""

    max_messages_per_s: float = 200.0
    idle_timeout_s: float = 300.0
    send_timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SocketLimits:
        return cls(settings.max_messages_per_s, settings.idle_timeout_s, settings.send_timeout_s)


class WebSocketTransport:
    """A session's :class:`~facecast.engine.context.Transport` over a Starlette WebSocket; raises
    :class:`TransportClosed` once the client is gone, or after resetting a client that did not take a frame
    within ``send_timeout`` seconds (None: wait forever)."""

    def __init__(self, ws: WebSocket, send_timeout: float | None) -> None:
        self._ws = ws
        self._lock = asyncio.Lock()
        self._timeout = send_timeout if send_timeout else None
        self._abort = abort_of(ws.scope)
        self.aborted = False
        """The connection was reset because the client stopped reading."""

    async def send_text(self, text: str) -> None:
        await self._send({"type": "websocket.send", "text": text})

    async def send_bytes(self, data: bytes) -> None:
        await self._send({"type": "websocket.send", "bytes": data})

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send the close frame (within the send timeout, else the connection is reset); never raises."""
        if not self.aborted and self._ws.application_state == WebSocketState.CONNECTED:
            with suppress(TransportClosed):
                await self._send({"type": "websocket.close", "code": code, "reason": reason})

    async def _send(self, message: dict[str, Any]) -> None:
        if self.aborted or self._ws.application_state != WebSocketState.CONNECTED:
            raise TransportClosed("the client has disconnected")
        try:
            if self._timeout is None:
                await self._write(message)
            elif self._abort is None:  # not served by ReapingWebSocketProtocol: give up on the frame only
                await asyncio.wait_for(self._write(message), self._timeout)
            else:  # a timer, not wait_for: no task per frame
                timer = asyncio.get_running_loop().call_later(self._timeout, self.stalled)
                try:
                    await self._write(message)
                finally:
                    timer.cancel()
        except asyncio.TimeoutError:
            self.stalled()
            raise TransportClosed("the client stopped reading") from None
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise TransportClosed("the client has disconnected") from exc

    async def _write(self, message: dict[str, Any]) -> None:
        async with self._lock:
            await self._ws.send(message)

    def stalled(self) -> None:
        """The client did not take a frame in time: reset the connection (the blocked send then raises)."""
        if self.aborted:
            return
        self.aborted = True
        log.warning(
            "engine client %s took no frame for %g s (it stopped reading): connection aborted",
            _client(self._ws),
            self._timeout,
        )
        if self._abort is not None:
            self._abort()


def _client(ws: WebSocket) -> str:
    client = ws.client
    return f"{client.host}:{client.port}" if client else "?"


async def refuse_busy(ws: WebSocket, transport: WebSocketTransport, limit: int) -> None:
    """Answer a connection over ``max_sessions``: ``error`` ``busy``, then close with 1013 (try again later)."""
    log.warning("engine client %s refused: %d sessions already (max_sessions)", _client(ws), limit)
    message = f"this server already serves {limit} sessions (max_sessions); try again later"
    with suppress(TransportClosed):
        await transport.send_text(proto.encode_message(proto.ErrorMessage("busy", message)))
    await transport.close(WS_TRY_AGAIN_LATER, "server busy")


async def pump(ws: WebSocket, session: EngineSession, transport: WebSocketTransport, limits: SocketLimits) -> None:
    """Hand the client's frames to ``session`` until the client leaves, says ``bye``, stays silent for
    ``idle_timeout_s`` or is reset (see the module docstring). Raises nothing for a client that went away."""
    loop = asyncio.get_running_loop()
    bucket = TokenBucket(limits.max_messages_per_s, clock=loop.time) if limits.max_messages_per_s > 0 else None
    last = [loop.time()]
    watch = (
        asyncio.create_task(_watch_idle(session, transport, limits.idle_timeout_s, last, loop.time))
        if limits.idle_timeout_s > 0
        else None
    )
    try:
        while not session.closed.is_set():
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            last[0] = loop.time()
            if bucket is not None and not bucket.take():
                dropped = bucket.report()
                if dropped:
                    await session.send_error(
                        "rate_limited",
                        f"more than {limits.max_messages_per_s:g} messages a second: {dropped} dropped "
                        "(max_messages_per_s)",
                    )
                await asyncio.sleep(0)  # a flood must not keep the other sessions waiting
                continue
            if message.get("text") is not None:
                await session.handle_text(message["text"])
            elif message.get("bytes") is not None:
                await session.handle_bytes(message["bytes"])
    except (WebSocketDisconnect, TransportClosed):
        pass
    finally:
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)


async def _watch_idle(
    session: EngineSession, transport: WebSocketTransport, idle: float, last: list[float], now: Callable[[], float]
) -> None:
    while True:  # sleeps until the deadline the latest frame set (not woken by each frame: they are many)
        remaining = last[0] + idle - now()
        if remaining <= 0:
            break
        await asyncio.sleep(remaining)
    log.info("engine session closed: nothing received for %g s (idle_timeout_s)", idle)
    await session.send_error("idle_timeout", f"nothing received for {idle:g} s (idle_timeout_s); closing")
    await transport.close(WS_IDLE_TIMEOUT, "idle timeout")
