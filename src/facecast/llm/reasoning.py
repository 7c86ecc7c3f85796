"""Hidden reasoning: text a model writes inside ``<think>...</think>`` is never spoken, animated or remembered.

Reasoning models (Qwen3, DeepSeek-R1 and their GGUFs, many OpenAI-compatible servers) stream their thoughts
in the reply text between these tags. :class:`ReasoningFilter` drops them as the text streams, whichever
pieces the tags are split across; what the model says after ``</think>`` goes on. A reply that opens with
``</think>`` alone (templates that start the thought in the prompt) drops everything before it. Providers'
separate reasoning fields (``reasoning_content``) never reach the reply text at all.

Pure; one instance per reply.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

__all__ = ["ReasoningFilter", "without_reasoning"]

_OPEN = "<think>"
_CLOSE = "</think>"
_MAX_HELD = 4096
"""Text held while the start of a reply might still turn out to be an unopened thought ending in ``</think>``."""


class ReasoningFilter:
    """:meth:`feed` each piece of a reply, then :meth:`flush`; the joined returns are the reply without its
    reasoning. :attr:`reasoning` holds what was dropped (for logs)."""

    def __init__(self) -> None:
        self._buf = ""
        self._thinking = False
        self._started = False  # some text was passed on: a later lone </think> is just text
        self.reasoning = ""

    def feed(self, piece: str) -> str:
        self._buf += piece
        out: list[str] = []
        while self._buf:
            if self._thinking:
                end = self._buf.find(_CLOSE)
                if end < 0:
                    keep = _partial(self._buf, _CLOSE)
                    self.reasoning += self._buf[: len(self._buf) - keep]
                    self._buf = self._buf[len(self._buf) - keep :]
                    break
                self.reasoning += self._buf[:end]
                self._buf = self._buf[end + len(_CLOSE) :].lstrip()
                self._thinking = False
                continue
            start = self._buf.find(_OPEN)
            if not self._started:
                close = self._buf.find(_CLOSE)
                if close >= 0 and (start < 0 or close < start):  # the thought began in the prompt
                    self.reasoning += self._buf[:close]
                    self._buf = self._buf[close + len(_CLOSE) :].lstrip()
                    self._started = True
                    continue
                if start < 0 and len(self._buf) < _MAX_HELD and not self._buf.strip():
                    break  # only white space so far: wait to see what the reply opens with
            if start >= 0:
                out.append(self._buf[:start])
                self._buf = self._buf[start + len(_OPEN) :]
                self._thinking = True
                self._started = self._started or bool("".join(out).strip())
                continue
            keep = _partial(self._buf, _OPEN)
            out.append(self._buf[: len(self._buf) - keep])
            self._buf = self._buf[len(self._buf) - keep :]
            self._started = self._started or bool("".join(out).strip())
            break
        return "".join(out)

    def flush(self) -> str:
        """The end of the reply: an unclosed thought is dropped; a held partial tag is text after all."""
        rest, self._buf = self._buf, ""
        if self._thinking:
            self.reasoning += rest
            return ""
        return rest


def _partial(text: str, tag: str) -> int:
    """How many characters at the end of ``text`` could be the start of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


async def without_reasoning(pieces: AsyncIterable[str]) -> AsyncIterator[str]:
    """``pieces`` without the reasoning in them (see :class:`ReasoningFilter`)."""
    filt = ReasoningFilter()
    async for piece in pieces:
        if text := filt.feed(piece):
            yield text
    if tail := filt.flush():
        yield tail
