"""Who has the floor: the character does not start a reply while the player is speaking.

A turn that ended too soon (the player paused mid-thought and the endpoint came first) already has its reply
on the way when the player goes on. That reply must not start over them. The :class:`~facecast.engine.listen.
Listener` holds the floor for the player from the start of each of their turns until that turn is settled
(its transcript went to the reply, or it held no words); :class:`~facecast.engine.replies.Replies` waits for
the floor before it sends anything of a reply (:meth:`Floor.wait`). Then one of three things happens:

- the player speaks on for ``barge_in_ms``: the barge-in cancels the waiting reply, of which the client saw
  nothing, and the new turn is answered; the history merges the two halves into one player message
  (:meth:`facecast.llm.history.ChatHistory.messages`), so the answer is to the whole thought;
- the new turn ends with words before that: its reply replaces the waiting one, the same way;
- it was a cough or a knock (no words): the waiting reply goes out, that much later.

A reply that already started is not held (barge-in handles the player speaking over it), and a reply waits
at most ``limit`` seconds (a stuck turn must not silence the character).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["Floor", "HOLD_LIMIT"]

HOLD_LIMIT = 3.0
"""Seconds a reply waits for the player at most: longer than any turn that is not speech (a noise ends at
the longest wait of the smart detector, 2.5 s), shorter than a stuck character seems."""


class Floor:
    """The player's open turns (any object identifies one); :meth:`wait` returns when there is none."""

    def __init__(self, limit: float = HOLD_LIMIT, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._holders: set[object] = set()
        self._free = asyncio.Event()
        self._free.set()

    @property
    def player(self) -> bool:
        """Whether the player has the floor now."""
        return bool(self._holders)

    def take(self, turn: object) -> None:
        """The player's ``turn`` began."""
        self._holders.add(turn)
        self._free.clear()

    def give(self, turn: object) -> None:
        """The player's ``turn`` is settled (answered, dropped, or no words); unknown turns are ignored."""
        self._holders.discard(turn)
        if not self._holders:
            self._free.set()

    async def wait(self) -> float:
        """Wait until the player does not have the floor (at most :attr:`limit` seconds); the seconds waited."""
        if not self._holders:
            return 0.0
        began = self._clock()
        try:
            await asyncio.wait_for(self._free.wait(), self.limit)
        except TimeoutError:
            pass
        return self._clock() - began
