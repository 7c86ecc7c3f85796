"""The offline stand-in language model: it repeats what it heard.

Facecast runs with no network and no model download, so when no LLM is configured the character answers
``You said: <what the user said>.``: enough to test the whole speech -> face loop, and an obvious cue that
a real model is not set up (:data:`NO_LLM_HINT` tells the user how).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence

from ..types import ChatMessage

__all__ = ["EchoLLM", "NO_LLM_HINT", "echo_reply", "split_words"]

NO_LLM_HINT = (
    "The echo model is chosen, so the character repeats what it hears. To give it a real one:\n"
    "  - the embedded chat model (the default): --llm local (or local:smollm2, local:/path/to/model.gguf)\n"
    "  - a .gguf file through llama-cpp-python: pip install 'facecast[llamacpp]', then --llm gguf:/path/model.gguf\n"
    "  - Ollama:            --llm http://localhost:11434/v1 --llm-model llama3.2\n"
    "  - llama.cpp server:  --llm http://localhost:8080/v1\n"
    "  - any OpenAI-compatible server (vLLM, LM Studio, OpenAI): --llm <base URL> --llm-model <name>\n"
    "    (API key from FACECAST_LLM_KEY or OPENAI_API_KEY)\n"
    "The same settings can come from the FACECAST_LLM and FACECAST_LLM_MODEL environment variables."
)
"""Help text shown when the echo stand-in answers: how to configure a real language model."""

_NOTHING_HEARD = "I did not hear anything."
_WORD = re.compile(r"\s*\S+")
_NOTES = re.compile(r"^\[(?:What is true now|What your actions did):[^\n]*\]\n")
"""The bracketed line :meth:`facecast.llm.history.ChatHistory.messages` puts before the player's words."""


def echo_reply(messages: Sequence[ChatMessage], prefix: str = "You said: ") -> str:
    """The full reply :class:`EchoLLM` gives to ``messages``.

    It is ``prefix`` + the last user message (without the game context line in front of it) with its
    whitespace collapsed, ending in a full stop unless
    it already ends in ``.``, ``!`` or ``?``; ``"I did not hear anything."`` when there is no user message
    with text.
    """
    heard = next((m.content for m in reversed(messages) if m.role == "user" and m.content.strip()), "")
    heard = _NOTES.sub("", heard)  # the game context and action results in front of it are not what was said
    text = " ".join(heard.split())
    if not text:
        return _NOTHING_HEARD
    if text[-1] not in ".!?":
        text += "."
    return prefix + text


def split_words(text: str) -> list[str]:
    """Cut ``text`` into word pieces that keep their leading whitespace: ``"".join(pieces)`` is ``text``
    without trailing whitespace."""
    return _WORD.findall(text)


class EchoLLM:
    """A deterministic :class:`facecast.roles.LanguageModel` that needs nothing installed.

    :meth:`stream` yields :func:`echo_reply` word by word (``"You"``, ``" said:"``, ``" hello."``...), letting
    the event loop run between pieces so a consumer can cancel it like a real model. It never raises.
    """

    def __init__(self, prefix: str = "You said: ") -> None:
        self._prefix = prefix

    def __repr__(self) -> str:
        return "EchoLLM()"

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        """Yield the echo reply to ``messages`` one word at a time, spaces kept so the pieces join back."""
        for piece in split_words(echo_reply(messages, self._prefix)):
            await asyncio.sleep(0)
            yield piece

    async def complete(self, messages: Sequence[ChatMessage]) -> str:
        """The whole echo reply at once (same text as joining :meth:`stream`)."""
        return echo_reply(messages, self._prefix)
