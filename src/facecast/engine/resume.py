"""Resumable sessions (docs/protocol.md, "Resuming a session"): one :class:`SessionKeeper` per server keeps the
sessions' state in its :class:`~facecast.engine.sessionstore.SessionStore`; one :class:`StateWriter` per live
session writes it.

- **Writes** happen off the session's own path: a change (a turn ended, a reply was heard, a ``context`` or an
  ``action_result`` arrived) only marks the state dirty; the writer's task takes one snapshot and writes it,
  one write at a time, coalescing the changes made meanwhile. It also rewrites the state every third of
  ``session_ttl_s`` while the session lives, so a connected session never expires.
- **The store is down or slow**: every call is bounded (:data:`STORE_TIMEOUT_S`); a failed one is counted
  (``facecast_session_store_errors_total``), logged as a warning once until the store works again, and the
  conversation goes on without it. A resume the store cannot answer is refused with ``resume_failed``.
- **One live connection per session**: resuming a session that is live takes it over. In this process the
  older connection is told (``error`` ``session_taken_over``) and closed (code :data:`CLOSE_TAKEN_OVER`) at
  once; on another controller sharing the store, at its next write, when it finds the newer owner's record.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass

from ..errors import FacecastError
from ..metrics import Metrics
from .sessionstate import SessionState, StateError, decode_state, encode_state
from .sessionstore import SessionStore, StoreError

__all__ = [
    "CLOSE_TAKEN_OVER",
    "KEY_PREFIX",
    "STORE_TIMEOUT_S",
    "ResumeFailed",
    "Saved",
    "SessionKeeper",
    "StateWriter",
]

log = logging.getLogger(__name__)

KEY_PREFIX = "facecast:session:"
"""Store key of a session: this prefix and its id."""
STORE_TIMEOUT_S = 1.0
"""Longest a store call may take before it counts as failed."""
CLOSE_TAKEN_OVER = 4409
"""WebSocket close code of a connection whose session another connection resumed."""


class ResumeFailed(FacecastError):
    """A ``hello.resume`` that cannot be honoured (unknown or expired id, store unavailable): nothing changed."""

    code = "resume_failed"


class Saved(enum.Enum):
    OK = "ok"
    FAILED = "failed"
    """Not written (the store failed, or the state is too large): the conversation goes on."""
    TAKEN = "taken"
    """Not written: a newer connection holds the session."""


@dataclass(frozen=True, slots=True)
class _Live:
    owner: str
    evict: Callable[[], Awaitable[None]]


class SessionKeeper:
    """The server's sessions in ``store``, each kept ``ttl_s`` seconds after its last write; failures are
    counted in ``metrics``. ``timeout_s`` bounds each store call."""

    def __init__(
        self, store: SessionStore, ttl_s: float, metrics: Metrics | None = None, timeout_s: float = STORE_TIMEOUT_S
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._metrics = metrics
        self._timeout = timeout_s
        self._live: dict[str, _Live] = {}
        self._down = False

    async def load(self, session_id: str) -> SessionState:
        """The stored state of ``session_id``. Raises :class:`ResumeFailed` (saying why) when there is none, it
        cannot be read, or the store does not answer in time."""
        try:
            data = await asyncio.wait_for(self.store.get(KEY_PREFIX + session_id), self._timeout)
        except (StoreError, asyncio.TimeoutError) as exc:
            self._failed("load", exc)
            raise ResumeFailed(
                "the session store is unavailable, so the session cannot be resumed now; "
                "start a new session (a hello without 'resume') or try again"
            ) from None
        self._working()
        if data is None:
            raise ResumeFailed(
                "no such session here: unknown to this server's session store, or expired (session_ttl_s), "
                "or ended with 'bye'; start a new session (a hello without 'resume')"
            )
        try:
            return decode_state(data)
        except StateError as exc:
            log.warning("stored session %s… is unreadable: %s", session_id[:6], exc)
            raise ResumeFailed(
                "the stored session could not be read (written by another version?); start a new session"
            ) from None

    async def attach(self, session_id: str, owner: str, evict: Callable[[], Awaitable[None]]) -> None:
        """``owner`` (a connection) now holds ``session_id`` in this process; the connection that held it before
        is evicted (``evict`` of that one is awaited)."""
        previous = self._live.get(session_id)
        self._live[session_id] = _Live(owner, evict)
        if previous is not None and previous.owner != owner:
            log.info("session %s… taken over by a newer connection", session_id[:6])
            await previous.evict()

    def detach(self, session_id: str, owner: str) -> None:
        """``owner`` no longer holds ``session_id`` (its connection ended); another owner's hold stays."""
        live = self._live.get(session_id)
        if live is not None and live.owner == owner:
            del self._live[session_id]

    def holds(self, session_id: str, owner: str) -> bool:
        """Whether ``owner`` holds ``session_id`` in this process."""
        live = self._live.get(session_id)
        return live is not None and live.owner == owner

    async def save(self, session_id: str, state: SessionState, *, claim: bool = False) -> Saved:
        """Write ``state`` (its ``owner`` writing), refreshing its time to live. Unless ``claim``, a stored record
        of another owner is left alone (:attr:`Saved.TAKEN`): a newer connection resumed the session. Never
        raises for the store's failures (:attr:`Saved.FAILED`)."""
        live = self._live.get(session_id)
        if live is not None and live.owner != state.owner:
            return Saved.TAKEN
        try:
            data = encode_state(state)
        except StateError as exc:
            self._failed("save", exc)
            return Saved.FAILED
        try:
            outcome = await asyncio.wait_for(
                self._write(KEY_PREFIX + session_id, data, state.owner, claim), self._timeout
            )
        except (StoreError, asyncio.TimeoutError) as exc:
            self._failed("save", exc)
            return Saved.FAILED
        self._working()
        return outcome

    async def _write(self, key: str, data: bytes, owner: str, claim: bool) -> Saved:
        if not claim:
            stored = await self.store.get(key)
            if stored is not None and _owner(stored) not in ("", owner):
                return Saved.TAKEN
        await self.store.put(key, data, self.ttl_s)
        return Saved.OK

    async def forget(self, session_id: str, owner: str) -> None:
        """Delete the stored session (``bye``), if ``owner`` still holds it here. Best effort, bounded."""
        if not self.holds(session_id, owner):
            return
        try:
            await asyncio.wait_for(self.store.delete(KEY_PREFIX + session_id), self._timeout)
        except (StoreError, asyncio.TimeoutError) as exc:
            self._failed("delete", exc)
        else:
            self._working()

    async def aclose(self) -> None:
        """Release the store's connections (a store with an ``aclose``)."""
        close = getattr(self.store, "aclose", None)
        if close is not None:
            with suppress(Exception):
                await close()

    def _failed(self, operation: str, exc: BaseException) -> None:
        if self._metrics is not None:
            self._metrics.session_store_errors.labels(operation).inc()
        why = str(exc) or f"no answer within {self._timeout:g} s"
        if isinstance(exc, StateError):
            log.warning("session state not written: %s", why)
        elif not self._down:
            self._down = True
            log.warning(
                "session store %s failed (%s); conversations go on, but cannot be resumed until it works again "
                "(facecast_session_store_errors_total counts the failures)",
                operation,
                why,
            )
        else:
            log.debug("session store %s failed: %s", operation, why)

    def _working(self) -> None:
        if self._down:
            self._down = False
            log.warning("session store works again")


def _owner(data: bytes) -> str:
    try:
        return decode_state(data).owner
    except StateError:
        return ""  # an unreadable record belongs to no one: it is overwritten


class StateWriter:
    """Writes one live session's state (see the module docstring) from ``snapshot()``; starts at once with a
    write that claims the session. ``on_taken`` is called (once) when a newer connection took it over."""

    def __init__(
        self,
        keeper: SessionKeeper,
        session_id: str,
        snapshot: Callable[[], SessionState],
        on_taken: Callable[[], None],
    ) -> None:
        self._keeper = keeper
        self._id = session_id
        self._snapshot = snapshot
        self._on_taken = on_taken
        self._dirty = asyncio.Event()
        self._dirty.set()
        self.taken = False
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._run())

    def changed(self) -> None:
        """The state changed: write it soon (returns at once)."""
        self._dirty.set()

    async def _run(self) -> None:
        claim = True
        refresh = max(1.0, self._keeper.ttl_s / 3)
        # Checked, not only cancelled: on Python 3.11 ``wait_for`` swallows a cancel that arrives as its inner
        # await finishes (the first claiming write, a change), and the writer, with its session, lived forever.
        while not self._stopping:
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), refresh)
            if self._stopping:
                return
            self._dirty.clear()
            outcome = await self._keeper.save(self._id, self._snapshot(), claim=claim)
            if outcome is Saved.TAKEN:
                self.taken = True
                self._on_taken()
                return
            if outcome is Saved.OK:
                claim = False

    async def aclose(self, *, final: bool = True) -> None:
        """Stop writing; with ``final`` write the state once more first (unless the session was taken over)."""
        self._stopping = True
        task = self._task
        if task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if final and not self.taken:
            await self._keeper.save(self._id, self._snapshot())
