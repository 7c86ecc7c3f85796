"""One realtime-model WebSocket, driven by a provider's sans-I/O codec: the ``realtime`` role's connection.

:func:`open_connection` connects, sends the codec's setup and waits for the model to accept it, turning
every way that can fail into a :class:`RealtimeUnavailable` with a code the workflow can act on (the
failover to the classic pipeline). The key travels only in the handshake (a header or the URL's query) and
never appears in a message or a log line: errors name the host only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ..errors import ServiceError
from .events import RealtimeCommand, RealtimeEvent, RealtimeFailure, RealtimeSetup, SessionReady

__all__ = ["Codec", "RealtimeUnavailable", "SocketConnection", "open_connection"]

log = logging.getLogger(__name__)

MAX_MESSAGE = 16 * 1024 * 1024
"""Largest message accepted from the API (audio deltas are base64 in JSON)."""


class Codec(Protocol):
    """A provider's wire format (see :mod:`.openai_codec`, :mod:`.gemini_codec`)."""

    input_rate: int

    def setup(self, setup: RealtimeSetup) -> list[dict[str, Any]]: ...

    def encode(self, command: RealtimeCommand) -> list[dict[str, Any]]: ...

    def decode(self, message: Any) -> list[RealtimeEvent]: ...


class RealtimeUnavailable(ServiceError):
    """The realtime model could not be used: ``code`` is ``unauthorized`` (key refused), ``rate_limited``
    or ``service_unavailable`` (down, dropped, stalled); the message never holds the key."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class SocketConnection:
    """The open session. ``input_rate``: the rate :class:`~.events.AppendAudio` must carry."""

    def __init__(self, ws: ClientConnection, codec: Codec, host: str) -> None:
        self._ws = ws
        self._codec = codec
        self._host = host
        self.input_rate = codec.input_rate

    async def send(self, command: RealtimeCommand) -> None:
        """Send one command; raises :class:`RealtimeUnavailable` once the socket is closed."""
        try:
            for message in self._codec.encode(command):
                await self._ws.send(json.dumps(message, ensure_ascii=False))
        except ConnectionClosed as exc:
            raise RealtimeUnavailable("service_unavailable", _closed(self._host, exc)) from None

    async def events(self) -> AsyncIterator[RealtimeEvent]:
        """The model's events until the socket closes; a close is the last event, a fatal
        :class:`~.events.RealtimeFailure` saying why (its code from the close code)."""
        try:
            async for raw in self._ws:
                for event in _decode(self._codec, raw):
                    yield event
        except ConnectionClosed as exc:
            yield RealtimeFailure(_close_code(exc), _closed(self._host, exc), fatal=True)
            return
        close = self._ws.close_code
        yield RealtimeFailure(
            "service_unavailable" if close in (None, 1000) else _code_of(close, self._ws.close_reason or ""),
            f"the realtime API at {self._host} closed the session ({close} {self._ws.close_reason or ''})".strip(),
            fatal=True,
        )

    async def close(self) -> None:
        await self._ws.close()


def _decode(codec: Codec, raw: str | bytes) -> list[RealtimeEvent]:
    try:
        message = json.loads(raw)
    except ValueError:
        return [RealtimeFailure("service_unavailable", "the realtime API sent a message that is not JSON")]
    return codec.decode(message)


def _code_of(close: int | None, reason: str) -> str:
    lowered = reason.lower()
    if close in (1008, 4001, 4003) or "api key" in lowered or "unauth" in lowered or "permission" in lowered:
        return "unauthorized"
    if close == 1013 or "quota" in lowered or "rate" in lowered or "resource_exhausted" in lowered:
        return "rate_limited"
    return "service_unavailable"


def _close_code(exc: ConnectionClosed) -> str:
    frame = exc.rcvd
    return _code_of(frame.code, frame.reason) if frame is not None else "service_unavailable"


def _closed(host: str, exc: ConnectionClosed) -> str:
    frame = exc.rcvd
    if frame is None:
        return f"the connection to the realtime API at {host} dropped"
    return f"the realtime API at {host} closed the session ({frame.code} {frame.reason[:200]})".strip()


async def open_connection(
    url: str, headers: Mapping[str, str], codec: Codec, setup: RealtimeSetup, timeout: float
) -> SocketConnection:
    """Connect to ``url``, send the setup and wait for the model to accept it, all within ``timeout`` s.

    Raises :class:`RealtimeUnavailable`: ``unauthorized`` (HTTP 401/403 or a close/error saying so),
    ``rate_limited`` (HTTP 429, a quota error), ``service_unavailable`` (refused, dropped, silent).
    """
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if parts.port:
        host = f"{host}:{parts.port}"
    try:
        async with asyncio.timeout(timeout):
            ws = await connect(url, additional_headers=dict(headers), max_size=MAX_MESSAGE, compression=None)
            conn = SocketConnection(ws, codec, host)
            try:
                try:
                    for message in codec.setup(setup):
                        await ws.send(json.dumps(message, ensure_ascii=False))
                except ConnectionClosed:
                    pass  # closed at once (a refused key...): the events below say why
                async for event in conn.events():
                    if isinstance(event, SessionReady):
                        return conn
                    if isinstance(event, RealtimeFailure) and event.fatal:
                        raise RealtimeUnavailable(event.code, event.message)
            except BaseException:
                await ws.close()
                raise
    except InvalidStatus as exc:
        status = exc.response.status_code
        code = {401: "unauthorized", 403: "unauthorized", 429: "rate_limited"}.get(status, "service_unavailable")
        what = {"unauthorized": "refused the key", "rate_limited": "is rate limiting this key"}.get(code, "refused")
        raise RealtimeUnavailable(code, f"the realtime API at {host} {what} (HTTP {status})") from None
    except TimeoutError:
        raise RealtimeUnavailable(
            "service_unavailable", f"the realtime API at {host} did not accept the session within {timeout:g} s"
        ) from None
    except (OSError, InvalidHandshake) as exc:
        raise RealtimeUnavailable(
            "service_unavailable", f"the realtime API at {host} cannot be reached ({type(exc).__name__})"
        ) from None
    raise RealtimeUnavailable("service_unavailable", f"the realtime API at {host} closed before the session began")
