"""A reply started on a guess of what the player said, before the turn is over.

At a pause the listener may already have the turn's transcript (:class:`~facecast.engine.listen.Listener`'s
guesses). :class:`Speculation` starts the LLM on it at once and keeps what it streams; when the endpoint
then confirms the same text for the same conversation, the reply takes over the stream
(:meth:`Speculation.adopt`) and its first sentence is often ready already. If the player goes on, or the
final transcript or the conversation differ, it is cancelled and nothing of it is seen: nothing is sent,
spoken or added to the history before :meth:`~Speculation.adopt`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence

from ..actions import Action
from ..aio import aclose
from ..errors import FacecastError
from ..pipeline import open_reply
from ..roles import LanguageModel
from ..types import ChatMessage

__all__ = ["Speculation"]

log = logging.getLogger(__name__)

_END = object()


class Speculation:
    """The LLM's reply to ``messages`` (for the player's ``text``), streamed into a buffer from now on."""

    def __init__(
        self,
        llm: LanguageModel,
        text: str,
        messages: Sequence[ChatMessage],
        clock: Callable[[], float],
        actions: Sequence[Action] = (),
    ) -> None:
        self.text = text
        self.messages = tuple(messages)
        self.started = clock()
        """When the LLM was asked (``clock`` time)."""
        self.first_token: float | None = None
        """When the first piece arrived (``clock`` time), or None."""
        self._clock = clock
        self._llm = llm
        self._actions = tuple(actions)
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._task = asyncio.create_task(self._run())
        self._adopted = False

    def matches(self, text: str, messages: Sequence[ChatMessage]) -> bool:
        """Whether this speculation answers exactly ``messages`` (the same words, the same conversation)."""
        return not self._adopted and self.text == text and self.messages == tuple(messages)

    async def _run(self) -> None:
        stream = open_reply(self._llm, self.messages, self._actions)
        try:
            async for piece in stream:
                if self.first_token is None:
                    self.first_token = self._clock()
                self._queue.put_nowait(piece)
        except FacecastError as exc:  # handed to the reply if it is adopted
            self._queue.put_nowait(exc)
        except Exception:  # a bug: the reply (if adopted) ends with what came before it
            log.exception("speculative reply failed")
        finally:
            await aclose(stream)
            self._queue.put_nowait(_END)

    async def adopt(self) -> AsyncIterator[str]:
        """The reply's pieces: those already streamed, then the rest as they come. Closing it cancels the LLM.
        Only one caller may adopt a speculation."""
        if self._adopted:
            raise RuntimeError("a speculation is adopted once")
        self._adopted = True
        try:
            while (item := await self._queue.get()) is not _END:
                if isinstance(item, FacecastError):
                    raise item
                assert isinstance(item, str)
                yield item
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Stop the LLM; nothing more is streamed (the stream closes in its task). Safe to call more than once."""
        if not self._task.done():
            self._task.cancel()
