"""Per-process limits that keep one client (or a crowd of them) from taking the whole server.

- :class:`Slots`: a counting semaphore whose waiters give up after a bounded wait (no unbounded queue).
- :class:`LimitedSTT`: a speech-to-text (the :class:`~facecast.roles.SpeechToText` role) that runs at most
  ``slots`` recognition streams at once; :func:`limit_services` / :func:`limit_role` put it around the
  server's STT (``max_recognisers``).
- :class:`TokenBucket`: the per-connection message rate limit (``max_messages_per_s``), on an injectable
  clock.
- :data:`MAX_BUFFERED_SAMPLES`: how much client audio one stream may have waiting for its model.

The settings are documented in :class:`facecast.config.Settings` and README.md ("Limits").
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .aio import closing
from .errors import BusyError
from .roles import SpeechToText
from .types import AudioChunk, Transcript

if TYPE_CHECKING:
    from .config import Settings
    from .services import Services

__all__ = [
    "MAX_BUFFERED_SAMPLES",
    "RECOGNISER_WAIT_S",
    "Slots",
    "LimitedSTT",
    "TokenBucket",
    "limit_services",
    "limit_role",
]

MAX_BUFFERED_SAMPLES = 4 * 2**20
"""Client audio samples one stream may have received and not yet handed to its model: a lip-sync or puppet
stream of an engine session, an STT or face request of a service (16 MiB of float32: 4.4 minutes at 16 kHz,
87 s at 48 kHz, at least eight of the largest binary frames). A client sending faster than the model
keeps up past this gets an error (``too_large``) and that stream is stopped."""

RECOGNISER_WAIT_S = 1.0
"""How long a speech-to-text stream waits for a free recogniser before it is refused with ``busy``."""


class Slots:
    """``size`` slots; :meth:`take` waits at most ``wait`` seconds for one (first come, first served).

    Unlike ``asyncio.wait_for(semaphore.acquire(), wait)`` a slot is never lost when the wait ends or the
    waiter is cancelled just as a slot is handed over. Use from one event loop.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a Slots needs at least one slot")
        self.size = size
        self._free = size
        self._waiters: deque[asyncio.Future[bool]] = deque()

    @property
    def in_use(self) -> int:
        return self.size - self._free

    async def take(self, wait: float = 0.0) -> bool:
        """Take a slot: True at once when one is free, else after waiting up to ``wait`` seconds for one
        (False: none came; nothing to give back). A caller given True must :meth:`give` it back."""
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        if wait <= 0:
            return False
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(wait, _expire, waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self.give()  # handed over just as the waiter was cancelled: pass it on
            raise
        finally:
            timer.cancel()

    def give(self) -> None:
        """Give a slot back: to the longest waiter, else to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)
                return
        self._free = min(self.size, self._free + 1)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class LimitedSTT:
    """``inner`` with at most ``slots`` streams decoding at once (a :class:`~facecast.roles.SpeechToText`).

    A stream takes its slot when its first transcript is asked for and gives it back when it ends, fails or
    is closed. With every slot taken it waits up to ``wait`` seconds, then raises :class:`BusyError`
    (``busy``: an engine turn reports it to the client and the session goes on; HTTP answers 503 with
    ``Retry-After``; a service answers the request with ``busy``, so a failover client tries the next).
    Other attributes (``warm_up``, ``aclose``...) are the inner implementation's.
    """

    def __init__(self, inner: SpeechToText, slots: int, wait: float = RECOGNISER_WAIT_S) -> None:
        self.inner = inner
        self.slots = Slots(slots)
        self.wait = wait

    async def transcribe(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcript]:
        if not await self.slots.take(self.wait):
            raise BusyError(
                f"all {self.slots.size} speech recognisers of this server are in use (max_recognisers); "
                "try again shortly"
            )
        try:
            async with closing(self.inner.transcribe(audio)) as results:
                async for result in results:
                    yield result
        finally:
            self.slots.give()

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (copying, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


def limit_services(services: Services, settings: Settings) -> Services:
    """``services`` with the STT limited to ``settings.max_recognisers`` streams (as is when 0, or when it is
    limited already)."""
    if settings.max_recognisers <= 0 or isinstance(services.stt, LimitedSTT):
        return services
    return replace(services, stt=LimitedSTT(services.stt, settings.max_recognisers))


def limit_role(role: str, impl: Any, settings: Settings) -> Any:
    """A service's role implementation (``facecast serve ROLE``) with the process limits of ``settings``:
    an STT runs at most ``max_recognisers`` requests at once and refuses more at once with ``busy`` (the
    failover client then tries its next service instead of waiting here)."""
    if role == "stt" and settings.max_recognisers > 0 and not isinstance(impl, LimitedSTT):
        return LimitedSTT(impl, settings.max_recognisers, wait=0.0)
    return impl


class TokenBucket:
    """``rate`` tokens a second, up to ``burst`` saved (default: two seconds' worth); :meth:`take` spends one.

    :meth:`report` says whether a refusal should be reported now: at most once per ``report_every``
    seconds, so a flood costs one error message a second, not one per frame.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] | None = None,
        report_every: float = 1.0,
    ) -> None:
        if rate <= 0:
            raise ValueError("a TokenBucket needs a positive rate")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else 2 * rate)
        self._clock = clock or asyncio.get_running_loop().time
        self._tokens = self.burst
        self._at = self._clock()
        self._report_every = report_every
        self._reported = -float("inf")
        self.refused = 0
        """Refusals since the last reported one."""

    def take(self) -> bool:
        """Spend a token: False (and nothing spent) when none is left."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.refused += 1
        return False

    def report(self) -> int:
        """After a refusal: how many refusals to report now (0: one was reported less than ``report_every``
        seconds ago; stay quiet)."""
        now = self._clock()
        if now - self._reported < self._report_every:
            return 0
        self._reported = now
        count, self.refused = self.refused, 0
        return count
