"""Reading a stream one item at a time with a deadline per item, and abandoning it without waiting for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Generic, TypeVar

from ..aio import aclose

__all__ = ["Puller"]

T = TypeVar("T")
_END = object()


class Puller(Generic[T]):
    """Pulls a stream one item at a time, on request, in a task of its own: a wait for an item can then have a
    deadline without cancelling the caller, and a stalled stream can be abandoned and closed in the background.

    The stream runs in that one task for its whole life (nothing in it changes task between items), and only
    when asked, so a caller pacing its reads paces the stream as when it iterates the stream itself.
    """

    def __init__(self, stream: AsyncIterator[T]) -> None:
        self._stream = stream
        self._asks: asyncio.Queue[asyncio.Future[Any]] = asyncio.Queue()
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            while True:
                answer = await self._asks.get()
                try:
                    item: Any = await anext(self._stream)
                except StopAsyncIteration:
                    item = _END
                except Exception as exc:  # noqa: BLE001 - handed to the caller waiting for this item
                    if not answer.done():
                        answer.set_exception(exc)
                    return
                if answer.done():  # the caller gave up on it
                    return
                answer.set_result(item)
                if item is _END:
                    return
        finally:
            await aclose(self._stream)

    async def next(self, timeout: float | None) -> T:
        """The next item; raises ``StopAsyncIteration`` at the end, what the stream raised, or ``TimeoutError``
        when none came within ``timeout`` seconds (None: no limit)."""
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._asks.put_nowait(answer)
        try:
            done, _ = await asyncio.wait({answer}, timeout=timeout)
        finally:
            if not answer.done():
                answer.cancel()
        if not done:
            raise TimeoutError
        item = answer.result()
        if item is _END:
            raise StopAsyncIteration
        result: T = item
        return result

    async def aclose(self) -> None:
        """Stop the stream and wait until it is closed."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
