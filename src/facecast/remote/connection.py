"""The one thing a service session needs from a WebSocket library: send, receive, close.

The service protocol's per-connection logic (:mod:`facecast.remote.server`) runs over any
:class:`ServiceSocket`; an adapter per library turns that library's "the peer is gone" into
:class:`SocketClosed`. :class:`WebsocketsSocket` adapts the ``websockets`` server (``facecast serve ROLE``);
:class:`facecast.scale.wsadapter.StarletteSocket` adapts an ASGI/Starlette WebSocket (the Ray Serve pools).
"""

from __future__ import annotations

from typing import Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

__all__ = ["ServiceSocket", "SocketClosed", "WebsocketsSocket"]


class SocketClosed(Exception):
    """The connection is closed (by the peer, the network or this side): nothing more can be sent or read."""


class ServiceSocket(Protocol):
    """An accepted WebSocket connection carrying the service protocol."""

    async def send(self, message: str | bytes) -> None:
        """Send one text (``str``) or binary (``bytes``) message; raises :class:`SocketClosed`."""
        ...

    async def receive(self) -> str | bytes:
        """The next message, text as ``str``, binary as ``bytes``; raises :class:`SocketClosed` when closed."""
        ...

    async def close(self) -> None:
        """Close the connection (normal closure); closing a closed connection does nothing."""
        ...


class WebsocketsSocket:
    """:class:`ServiceSocket` over a ``websockets`` server connection."""

    __slots__ = ("ws",)

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws

    async def send(self, message: str | bytes) -> None:
        try:
            await self.ws.send(message)
        except ConnectionClosed:
            raise SocketClosed from None

    async def receive(self) -> str | bytes:
        try:
            return await self.ws.recv()
        except ConnectionClosed:
            raise SocketClosed from None

    async def close(self) -> None:
        await self.ws.close()
