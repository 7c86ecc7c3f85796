"""Small asyncio helpers shared by the stages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

__all__ = ["aclose", "closing"]

T = TypeVar("T")


async def aclose(iterator: AsyncIterator[Any]) -> None:
    """Close an async iterator if it can be closed (async generators can; plain iterators need not)."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


@asynccontextmanager
async def closing(iterator: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """``async with closing(stream) as s:`` closes ``stream`` on exit, even when the loop breaks early.

    Unlike :func:`contextlib.aclosing` it accepts any ``AsyncIterator`` (a role's stream is typed as one).
    """
    try:
        yield iterator
    finally:
        await aclose(iterator)
