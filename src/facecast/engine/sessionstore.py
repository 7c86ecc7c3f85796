"""Where resumable sessions are kept (the ``session_store`` setting): the :class:`SessionStore` role and its two
implementations.

- ``memory`` (:class:`MemoryStore`, the default): in this process. A client that reconnects to the same
  ``facecast run`` resumes its session; a restart forgets every session.
- ``redis://HOST:PORT/DB`` or ``rediss://...`` (TLS) (:class:`RedisStore`): a Redis or Valkey server shared by
  several controllers, so a client resumes on any of them. Needs the ``scale`` extra (the ``redis`` client).

A store keeps opaque records (bytes) under string keys, each with a time to live; it knows nothing of what they
hold (:mod:`facecast.engine.sessionstate`). Its errors are :class:`StoreError`; callers bound its calls in time
and carry on without it (:mod:`facecast.engine.resume`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from ..auth import redact_url
from ..errors import ConfigError, FacecastError

__all__ = ["SessionStore", "MemoryStore", "RedisStore", "StoreError", "open_store", "check_store_spec"]

_SCHEMES = ("redis://", "rediss://")


class StoreError(FacecastError):
    """The session store failed (unreachable, refused the request...)."""

    code = "store_unavailable"


class SessionStore(Protocol):
    """Records by key, each kept ``ttl_s`` seconds after it was last put."""

    async def get(self, key: str) -> bytes | None:
        """The record under ``key``, or None when there is none (never put, deleted, or expired)."""
        ...

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        """Keep ``value`` under ``key`` (replacing any record) for ``ttl_s`` seconds from now."""
        ...

    async def delete(self, key: str) -> None:
        """Forget the record under ``key`` (none: nothing happens)."""
        ...


class MemoryStore:
    """A :class:`SessionStore` in this process's memory, bounded: at most ``max_records`` records and
    ``max_bytes`` of them in all (past either, the oldest written goes first). Records expire in the order they
    were written, which is exact when every record gets the same TTL (the server's ``session_ttl_s``).
    ``clock`` gives seconds (monotonic)."""

    def __init__(
        self, max_records: int = 10_000, clock: Callable[[], float] = time.monotonic, max_bytes: int = 64 << 20
    ) -> None:
        self._records: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max = max_records
        self._max_bytes = max_bytes
        self._bytes = 0
        self._clock = clock

    def __len__(self) -> int:
        self._expire()
        return len(self._records)

    @property
    def size(self) -> int:
        """Bytes held by the records."""
        return self._bytes

    async def get(self, key: str) -> bytes | None:
        self._expire()
        found = self._records.get(key)
        return None if found is None else found[1]

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        self._drop(key)
        self._records[key] = (self._clock() + ttl_s, bytes(value))
        self._bytes += len(value)
        while len(self._records) > self._max or self._bytes > self._max_bytes:
            self._drop(next(iter(self._records)))
        self._expire()

    async def delete(self, key: str) -> None:
        self._drop(key)

    def _drop(self, key: str) -> None:
        found = self._records.pop(key, None)
        if found is not None:
            self._bytes -= len(found[1])

    def _expire(self) -> None:
        now = self._clock()
        while self._records:
            key, (until, _) = next(iter(self._records.items()))
            if until > now:
                break
            self._drop(key)


class RedisStore:
    """A :class:`SessionStore` on a Redis or Valkey server (``redis://[USER:PASSWORD@]HOST:PORT/DB``,
    ``rediss://`` for TLS), through the ``redis`` client's asyncio API. Each call gives up after ``timeout_s``
    (connecting included) and raises :class:`StoreError`, whose message never holds the URL's credentials."""

    def __init__(self, url: str, timeout_s: float = 1.0) -> None:
        try:
            from redis import asyncio as aioredis
            from redis.exceptions import RedisError
        except ImportError:
            raise ConfigError(
                "session_store = redis://... needs the redis client: pip install 'facecast[scale]'"
            ) from None
        self.url = redact_url(url)
        """The URL without credentials (for logs and errors)."""
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError)
        try:
            self._client: Any = aioredis.from_url(
                url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
            )
        except ValueError as exc:
            raise ConfigError(f"session_store {self.url}: {_clean(str(exc), url)}") from None

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._client.get(key)
        except self._errors as exc:
            raise self._failed("get", exc) from None
        return None if value is None else bytes(value)

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        try:
            await self._client.set(key, value, px=max(1, round(ttl_s * 1000)))
        except self._errors as exc:
            raise self._failed("put", exc) from None

    async def delete(self, key: str) -> None:
        try:
            await self._client.delete(key)
        except self._errors as exc:
            raise self._failed("delete", exc) from None

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._client.aclose()

    def _failed(self, what: str, exc: BaseException) -> StoreError:
        return StoreError(f"session store {self.url}: {what} failed: {type(exc).__name__}: {exc}")


def _clean(text: str, url: str) -> str:
    return text.replace(url, redact_url(url))


def check_store_spec(spec: str) -> None:
    """Raise :class:`ConfigError` unless ``spec`` is ``memory`` or a ``redis://`` / ``rediss://`` URL."""
    if spec != "memory" and not (spec.startswith(_SCHEMES) and len(spec) > len("rediss://")):
        raise ConfigError(
            "session_store must be 'memory' or a redis://HOST:PORT/DB URL (rediss:// for TLS), "
            f"got {redact_url(spec)!r}"
        )


def open_store(spec: str, timeout_s: float = 1.0) -> SessionStore:
    """The store ``spec`` names (see :func:`check_store_spec`); raises :class:`ConfigError` for a bad spec, or a
    Redis URL without the ``scale`` extra installed. Opening connects nothing: a Redis server is reached at the
    first call."""
    check_store_spec(spec)
    if spec == "memory":
        return MemoryStore()
    return RedisStore(spec, timeout_s)
