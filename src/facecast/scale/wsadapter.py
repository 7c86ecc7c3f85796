"""The service protocol as an ASGI application: what a Ray Serve pool replica (or any ASGI server) runs.

:class:`ServiceApp` serves one role at the root of its mount (``/tts`` and ``/tts/`` when mounted at
``/tts``), exactly as ``facecast serve ROLE`` does: the same per-connection session
(:func:`facecast.remote.server.serve_socket`) over :class:`StarletteSocket`, and the same Host, Origin and
token rules (:func:`facecast.remote.server.handshake_refusal`), answered as HTTP 421, 403 or 401 before the
WebSocket opens (the ASGI ``websocket.http.response`` extension, which uvicorn and Ray Serve's proxy offer;
without it the handshake is refused with HTTP 403). Plain HTTP requests get 426 (upgrade required) at the
root and 404 elsewhere.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..auth import AccessPolicy, redact_query
from ..protocol import service as sp
from ..remote.connection import SocketClosed
from ..remote.server import RoleImpl, handshake_refusal, serve_socket

__all__ = ["ServiceApp", "StarletteSocket"]

log = logging.getLogger(__name__)


class StarletteSocket:
    """:class:`~facecast.remote.connection.ServiceSocket` over an accepted Starlette (ASGI) WebSocket."""

    __slots__ = ("ws",)

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def send(self, message: str | bytes) -> None:
        try:
            if isinstance(message, str):
                await self.ws.send_text(message)
            else:
                await self.ws.send_bytes(message)
        except (WebSocketDisconnect, RuntimeError, OSError):  # gone, or closed: Starlette's RuntimeError
            raise SocketClosed from None

    async def receive(self) -> str | bytes:
        try:
            message = await self.ws.receive()
        except (WebSocketDisconnect, RuntimeError, OSError):
            raise SocketClosed from None
        if message["type"] == "websocket.disconnect":
            raise SocketClosed
        text = message.get("text")
        if text is not None:
            return str(text)
        return bytes(message.get("bytes") or b"")

    async def close(self) -> None:
        try:
            await self.ws.close()
        except (RuntimeError, OSError):
            pass  # already closed


class ServiceApp:
    """ASGI application serving ``impl`` as ``role`` under ``policy`` (see the module docstring)."""

    def __init__(self, role: sp.Role, impl: RoleImpl, policy: AccessPolicy) -> None:
        self.role = role
        self.impl = impl
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
        elif kind == "http":
            status = HTTPStatus.UPGRADE_REQUIRED if _at_root(scope) else HTTPStatus.NOT_FOUND
            text = f"the facecast {self.role} service: connect with a WebSocket\n" if _at_root(scope) else ""
            await _respond(send, status, text, "http.response")
        elif kind == "websocket":
            await self.websocket(scope, receive, send)

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        query: bytes = scope.get("query_string", b"")
        scope["query_string"] = redact_query(query)  # nothing after this point can log the token
        refused = (
            handshake_refusal(self.policy, Headers(scope=scope), query)
            if _at_root(scope)
            else (HTTPStatus.NOT_FOUND, "no service here: connect to the pool's root path\n")
        )
        if refused is not None:
            if (await receive())["type"] != "websocket.connect":
                return
            if "websocket.http.response" in scope.get("extensions", {}):
                await _respond(send, refused[0], refused[1], "websocket.http.response")
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        ws = WebSocket(scope, receive, send)
        await ws.accept()
        socket = StarletteSocket(ws)
        try:
            await serve_socket(socket, self.role, self.impl)
        finally:
            await socket.close()


def _at_root(scope: Scope) -> bool:
    """Whether the request is for the mount's root (``""`` or ``"/"`` below ``root_path``)."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path in ("", "/")


async def _respond(send: Send, status: HTTPStatus, text: str, prefix: str) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": f"{prefix}.start", "status": int(status), "headers": headers})
    await send({"type": f"{prefix}.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message: dict[str, Any] = dict(await receive())
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
