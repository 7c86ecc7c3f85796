"""uvicorn's keepalive really lets go of a client that stopped reading (facecast.http.wsprotocol): with the
stock protocol the ping timeout only starts a graceful close, which waits forever for the full buffer to
drain, so the app's ``send`` stays blocked and the connection stays open."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn

from facecast.http.wsprotocol import ABORT_EXTENSION, ReapingWebSocketProtocol

pytestmark = pytest.mark.timeout(60)


class Pusher:
    """An ASGI app that accepts a WebSocket and sends 64 KB frames until sending fails."""

    def __init__(self) -> None:
        self.failed = asyncio.Event()
        self.sent = 0
        self.had_abort = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert (await receive())["type"] == "websocket.connect"
        self.had_abort = ABORT_EXTENSION in scope.get("extensions", {})
        await send({"type": "websocket.accept"})
        try:
            while True:
                await send({"type": "websocket.send", "bytes": bytes(65536)})
                self.sent += 1
        except OSError:  # uvicorn's ClientDisconnected
            self.failed.set()


@asynccontextmanager
async def serving(app: Pusher) -> AsyncIterator[int]:
    """uvicorn with the reaping protocol and a fast keepalive (ping every 0.2 s, 0.3 s to answer)."""
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host="127.0.0.1",
        port=0,
        log_level="warning",
        ws=ReapingWebSocketProtocol,
        ws_ping_interval=0.2,
        ws_ping_timeout=0.3,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done()
        await asyncio.sleep(0.01)
    try:
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        await task


async def silent_client(port: int) -> socket.socket:
    """A client that completes the WebSocket handshake and never reads (nor answers pings) again."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    return sock


async def test_an_unanswered_keepalive_ping_resets_a_client_that_stopped_reading() -> None:
    app = Pusher()
    async with serving(app) as port:
        sock = await silent_client(port)
        try:
            await asyncio.wait_for(app.failed.wait(), 30)  # stock uvicorn: blocked in send() for good
        finally:
            sock.close()
        assert app.had_abort and app.sent > 0
