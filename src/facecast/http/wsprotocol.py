"""uvicorn's WebSocket protocol (``websockets-sansio``), made to let go of clients that stopped reading.

uvicorn ends a connection with ``transport.close()``, which asyncio carries out only once the write buffer
has been flushed: a client that never reads again (its receive window full) keeps the connection, its
buffer and its session forever, keepalive timeout or not. This protocol aborts instead (the buffer is
dropped, the connection reset) where waiting for the client cannot end:

- the keepalive ping is not answered within ``ws_ping_timeout``;
- the closing handshake is not completed within the close timeout (10 s) after the server's close frame;
- the app asks for it: every WebSocket scope carries the extension :data:`ABORT_EXTENSION`, ``{"abort":
  callable}``, which the engine socket calls when a frame cannot be sent within ``send_timeout_s``
  (:func:`abort_of` finds it).

Pass the class to uvicorn: ``uvicorn.Config(app, ws=ReapingWebSocketProtocol, ...)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

__all__ = ["ReapingWebSocketProtocol", "ABORT_EXTENSION", "abort_of"]

log = logging.getLogger(__name__)

ABORT_EXTENSION = "facecast.abort"
"""The scope extension (``scope["extensions"][ABORT_EXTENSION]["abort"]``) that resets the connection."""


def abort_of(scope: Mapping[str, Any]) -> Callable[[], None] | None:
    """The scope's abort callable, or None when the server is not run with :class:`ReapingWebSocketProtocol`."""
    extension = (scope.get("extensions") or {}).get(ABORT_EXTENSION)
    abort = extension.get("abort") if isinstance(extension, dict) else None
    return abort if callable(abort) else None


class ReapingWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol that aborts the connection where closing it would wait forever."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # set only when the handshake is going ahead
        if scope is not None:
            scope["extensions"][ABORT_EXTENSION] = {"abort": self.abort}

    def abort(self) -> None:
        """Reset the connection now: buffered output is dropped, a blocked ``send`` raises, the app receives
        ``websocket.disconnect``."""
        if self.transport is not None and not self.disconnected:
            self.stop_keepalive()
            self.transport.abort()

    def send_receive_event_to_app(self) -> None:
        """As uvicorn's, but a text message that is not UTF-8 closes the connection (1007) with one log line,
        not an ERROR with a traceback: a hostile client could fill the log with them."""
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                b"".join(self.frames).decode()
            except UnicodeDecodeError:
                self.frames = []
                log.info("WebSocket client %s sent text that is not UTF-8: connection closed (1007)", self.client)
                self.conn.send_close(1007)
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()  # sends a close frame (if there is room) and closes gracefully...
        if not self.disconnected:
            log.info("WebSocket client %s did not answer the keepalive ping: connection aborted", self.client)
            self.abort()  # ...which never completes while the client does not read

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message.get("type") == "websocket.close" and self.close_timer is not None:
            self.close_timer.cancel()  # the close handshake gets its time, then the connection is reset
            self.close_timer = self.loop.call_later(self.close_timeout, self.abort)
