"""The access rules of :mod:`facecast.auth` as one ASGI middleware in front of every route of the app.

For each HTTP request and WebSocket handshake, in order:

1. the token is removed from the query string (``?token=...`` becomes ``?token=REDACTED``) in the request's
   scope itself, after it was read, so neither uvicorn's access log nor a route ever sees it;
2. a ``Host`` that is not accepted is refused: HTTP 421 ``bad_host``; a WebSocket is refused before it opens
   (the client sees HTTP 403);
3. an ``Origin`` that is not trusted is refused: HTTP 403 ``bad_origin``; a WebSocket likewise before it opens;
4. without the token (when one is set), every path but the page (``/`` and ``/web/...``) is refused: HTTP
   401 ``unauthorized`` with ``WWW-Authenticate: Bearer``; a WebSocket is accepted and closed at once with
   code 4401, so the page can tell the user to supply the token.

HTTP refusals are JSON ``{"status": "error", "code", "message"}``, like the NeuroSync endpoints' errors.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..auth import AccessPolicy, header, redact_query

__all__ = ["AccessMiddleware", "is_public_path", "WS_UNAUTHORIZED", "DRAIN_LIMIT"]

log = logging.getLogger(__name__)

WS_UNAUTHORIZED = 4401
"""WebSocket close code for a missing or wrong token (docs/protocol.md)."""

DRAIN_LIMIT = 8 << 20
"""A refused request's body is read and dropped up to this size, so that a client still uploading reads the
refusal instead of a reset connection; a larger declared body is not read."""


def is_public_path(path: str) -> bool:
    """The paths served without the token: the browser page (``/``) and its static files (``/web/...``).
    The page's data (the engine socket, ``/health``, ``/metrics``, the API and its docs) needs the token."""
    return path == "/" or path.startswith("/web/")


class AccessMiddleware:
    """Pure ASGI middleware applying ``policy`` (see the module docstring); ``public`` names token-free paths."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy, public: Callable[[str], bool] = is_public_path) -> None:
        self.app = app
        self.policy = policy
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        query: bytes = scope.get("query_string", b"")
        scope["query_string"] = redact_query(query)  # in place: uvicorn logs from this same scope
        headers = Headers(scope=scope)
        host = header(headers, "host")
        origin = header(headers, "origin")
        path = scope.get("path", "")
        if not self.policy.host_ok(host):
            log.warning("refused %s %s: Host %r is not accepted (allowed_hosts)", kind, path, host)
            await self._refuse(
                scope,
                receive,
                send,
                421,
                "bad_host",
                f"Host {host!r} is not served here; add it to the setting allowed_hosts",
            )
            return
        if not self.policy.origin_ok(origin, host):
            log.warning("refused %s %s: Origin %r is not allowed (allowed_origins)", kind, path, origin)
            await self._refuse(
                scope,
                receive,
                send,
                403,
                "bad_origin",
                f"Origin {origin!r} may not use this server; add it to the setting allowed_origins",
            )
            return
        if not self.public(path) and not self.policy.token_ok(headers, query):
            await self._refuse(scope, receive, send, 401, "unauthorized", "missing or wrong access token")
            return
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str) -> None:
        if scope["type"] == "websocket":
            first = await receive()
            if first["type"] != "websocket.connect":
                return
            if status == 401:  # opened then closed with the documented code, so a page can ask for the token
                await send({"type": "websocket.accept"})
                await send({"type": "websocket.close", "code": WS_UNAUTHORIZED, "reason": message[:120]})
            else:  # never opened: the handshake answers HTTP 403
                await send({"type": "websocket.close", "code": 1008})
            return
        await _drain(scope, receive)
        body = json.dumps({"status": "error", "code": code, "message": message}).encode()
        response_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status == 401:
            response_headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})


async def _drain(scope: Scope, receive: Receive) -> None:
    declared = Headers(scope=scope).get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > DRAIN_LIMIT):
        return
    seen = 0
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False) or seen > DRAIN_LIMIT:
            return
