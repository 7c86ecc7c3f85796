"""What the OpenAI-compatible audio providers share: the API key, one HTTP client per event loop, and turning
every failure of a request into an error a user can act on.

Used by :mod:`facecast.stt.openai_stt` (``POST {base}/audio/transcriptions``) and :mod:`facecast.tts.openai_tts`
(``POST {base}/audio/speech``). Keys come from the provider's option or the environment and are never logged
nor put in a message.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Mapping
from typing import NoReturn
from urllib.parse import urlsplit

import httpx

from .errors import BusyError, ConfigError, ServiceError

__all__ = [
    "OPENAI_URL",
    "RETRY_AFTER_MAX_S",
    "resolve_key",
    "check_base_url",
    "LoopClient",
    "raise_for_status",
    "transport_error",
    "retry_after",
    "waited_to_retry",
    "probe",
]

OPENAI_URL = "https://api.openai.com/v1"
"""The API root of OpenAI itself: the only one for which a missing key is a configuration error."""

RETRY_AFTER_MAX_S = 1.0
"""A 429 answer whose ``Retry-After`` is at most this many seconds is retried once after that wait; a longer
one is a :class:`BusyError` at once (a failover list then moves on, the player is not kept waiting)."""

_DETAIL_CHARS = 200


def check_base_url(url: str, what: str) -> str:
    """``url`` without its trailing slash; :class:`ConfigError` unless it is an ``http(s)://`` URL with a host."""
    text = url.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"the {what} URL must start with http:// or https:// and name a host, got {url!r}")
    return text


def resolve_key(explicit: str, env: tuple[str, ...], base_url: str, what: str) -> str:
    """The key to send: ``explicit``, else the first variable of ``env`` that is set, else ``""`` (no
    ``Authorization`` header: local servers need none). Raises :class:`ConfigError` when no key is found for
    api.openai.com itself (naming the variables, never a value)."""
    if explicit:
        return explicit
    for name in env:
        if value := os.environ.get(name, "").strip():
            return value
    if urlsplit(base_url).hostname == "api.openai.com":
        raise ConfigError(f"the {what} at api.openai.com needs an API key: set {' or '.join(env)}")
    return ""


class LoopClient:
    """An :class:`httpx.AsyncClient` for the running event loop (made on first use, remade when a provider is
    used from another loop: a pooled connection belongs to the loop that opened it)."""

    def __init__(self, key: str, timeout: float) -> None:
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop or self._client.is_closed:
            self._client = httpx.AsyncClient(headers=self._headers, timeout=self._timeout)
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        """Close the pooled connections (of the current loop's client)."""
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()

    def __repr__(self) -> str:  # the key never appears
        return f"LoopClient(auth={'yes' if self._headers else 'no'})"


def retry_after(response: httpx.Response) -> float | None:
    """The seconds of a ``Retry-After: N`` header (None when absent or not a number of seconds)."""
    value = response.headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds)


async def waited_to_retry(response: httpx.Response, attempt: int) -> bool:
    """True, after waiting, when the first ``attempt`` (0) got a 429 whose ``Retry-After`` is at most
    :data:`RETRY_AFTER_MAX_S`: the caller sends the request once more. False at once otherwise."""
    wait = retry_after(response) if response.status_code == 429 else None
    if attempt == 0 and wait is not None and wait <= RETRY_AFTER_MAX_S:
        await asyncio.sleep(wait)
        return True
    return False


async def probe(client: httpx.AsyncClient, base_url: str, where: str, timeout: float, key_env: tuple[str, ...]) -> None:
    """Raise :class:`ServiceError` while the server at ``base_url`` cannot be reached (any HTTP answer to
    ``GET {base_url}/models`` counts as up) or refuses the key. Used by the failover wrapper to learn that a
    failed member is back."""
    try:
        response = await client.get(f"{base_url}/models")
    except httpx.HTTPError as err:
        transport_error(err, where, timeout, False)
    if response.status_code in (401, 403):
        raise_for_status(response, response.content, where, key_env)


def _detail(body: bytes) -> str:
    """The server's own words for an error: ``error.message`` / ``detail`` of a JSON body, else its text."""
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    message: object = None
    if isinstance(data, Mapping):
        inner = data.get("error", data)
        message = inner.get("message") or inner.get("detail") if isinstance(inner, Mapping) else inner
        if message is None:
            message = data.get("detail")
    message = message if isinstance(message, str) else text
    short = " ".join(message.split())
    return (short if len(short) <= _DETAIL_CHARS else short[: _DETAIL_CHARS - 3] + "...") or "no details"


def raise_for_status(response: httpx.Response, body: bytes, where: str, key_env: tuple[str, ...]) -> None:
    """Nothing for a 2xx answer; else :class:`BusyError` for 429 (with its ``Retry-After``) and
    :class:`ServiceError` for any other status, naming the key problem for 401/403 (never the key)."""
    status = response.status_code
    if 200 <= status < 300:
        return
    detail = _detail(body)
    if status in (401, 403):
        raise ServiceError(
            f"the {where} refused the API key (HTTP {status}): {detail}; set {' or '.join(key_env)} to a key it accepts"
        )
    if status == 429:
        wait = retry_after(response)
        after = f"; it asks to retry after {wait:g} s" if wait is not None else ""
        raise BusyError(f"the {where} is rate limiting requests (HTTP 429): {detail}{after}", round(wait or 1))
    if status == 404:
        raise ServiceError(
            f"the {where} answered HTTP 404: {detail}; check that the URL is the API root (it usually ends in /v1)"
        )
    raise ServiceError(f"the {where} failed with HTTP {status}: {detail}")


def transport_error(err: httpx.HTTPError, where: str, timeout: float, started: bool) -> NoReturn:
    """Raise the :class:`ServiceError` for a failure of the connection itself (refused, timed out, closed)."""
    if isinstance(err, httpx.TimeoutException):
        if started:
            raise ServiceError(f"the {where} went silent for {timeout:g} s in the middle of its answer") from err
        raise ServiceError(f"the {where} did not answer within {timeout:g} s (raise its timeout option)") from err
    if isinstance(err, httpx.ConnectError):
        raise ServiceError(f"cannot reach the {where}: {_reason(err)}; is the server running?") from err
    if isinstance(err, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        what = "in the middle of its answer" if started else "before answering"
        raise ServiceError(f"the {where} closed the connection {what}") from err
    raise ServiceError(f"the {where} failed: {type(err).__name__}: {err}") from err


def _reason(err: BaseException) -> str:
    """The operating system's reason in ``err``'s cause chain (refused, host not found...), else its text."""
    seen: set[int] = set()
    found: BaseException | None = err
    while found is not None and id(found) not in seen:
        seen.add(id(found))
        if isinstance(found, ConnectionRefusedError):
            return "connection refused"
        if isinstance(found, socket.gaierror):
            return "host name not found"
        if isinstance(found, OSError) and found.strerror:
            return found.strerror.lower()
        found = found.__cause__ or found.__context__
    return str(err) or type(err).__name__
