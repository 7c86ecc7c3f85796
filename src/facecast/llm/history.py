"""The conversation a character remembers: a persona (system prompt) plus recent user/assistant turns.

Pure bookkeeping, no I/O. Two rules keep it honest and acceptable to every chat template:

- The assistant entry is what the user actually HEARD. On barge-in the controller passes only the text
  spoken before the interruption; a reply of which nothing was heard (empty ``heard_text``) adds nothing,
  so the model is never told it said something the user did not hear. No marker is inserted: a model
  shown markers tends to repeat them aloud.
- Roles alternate. Two user entries in a row (the user spoke again before hearing any answer) are merged
  into one message, as are two assistant entries; many chat templates reject consecutive same-role turns.

Bounds: at most ``max_turns`` turns (a turn is one user message and the answer that followed it) and at
most ``max_chars`` characters of turn text (the system prompt is not counted and is always kept). The
oldest entries go first, and a history that was cut resumes at a user message (an uncut one may open
with the character's greeting). The newest entry is never dropped, even when it alone exceeds
``max_chars``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ConfigError
from ..types import ChatMessage

__all__ = ["ChatHistory", "HistoryLimits", "DEFAULT_PERSONA"]

DEFAULT_PERSONA = (
    "You are a friendly character in a video game, talking with the player out loud. Answer in one to "
    "three short spoken sentences of plain words: no lists, no markdown, no emoji, no stage directions."
)
"""The system prompt used when none is given: short spoken answers suit speech synthesis and lip sync."""


@dataclass(frozen=True, slots=True)
class HistoryLimits:
    """How much conversation is kept: ``max_turns`` user messages (each with its answer) and
    ``max_chars`` characters of message text, both at least 1."""

    max_turns: int = 12
    max_chars: int = 6000

    def __post_init__(self) -> None:
        if self.max_turns < 1 or self.max_chars < 1:
            raise ConfigError(
                f"history limits must be at least 1, got max_turns={self.max_turns}, max_chars={self.max_chars}"
            )


class ChatHistory:
    """A persona plus a bounded rolling history of user/assistant turns.

    Typical turn: ``history.messages(user_text)`` -> the LLM; then ``history.add_user(user_text)`` and,
    once the reply has been spoken (or interrupted), ``history.add_assistant(heard_text)``. Not
    thread-safe; one history per conversation.
    """

    def __init__(self, system_prompt: str = DEFAULT_PERSONA, limits: HistoryLimits | None = None) -> None:
        self.system_prompt = system_prompt
        self._limits = limits or HistoryLimits()
        self._entries: list[ChatMessage] = []

    @property
    def limits(self) -> HistoryLimits:
        return self._limits

    @property
    def turns(self) -> tuple[ChatMessage, ...]:
        """The remembered user/assistant messages, oldest first (no system prompt)."""
        return tuple(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def messages(self, user_text: str | None = None) -> list[ChatMessage]:
        """The messages to send to the model: the system prompt (if not empty), the remembered turns, and
        ``user_text`` as the final user message when given.

        Does not change the history. ``user_text`` counts towards the limits and is never dropped; if the
        history already ends with a user message, ``user_text`` is merged into it.
        """
        entries = self._entries
        if user_text is not None and user_text.strip():
            entries = _trim(_appended(entries, ChatMessage("user", user_text.strip())), self._limits)
        out: list[ChatMessage] = []
        if self.system_prompt.strip():
            out.append(ChatMessage("system", self.system_prompt))
        out.extend(entries)
        return out

    def add_user(self, text: str) -> None:
        """Remember what the user said (whitespace-only text is ignored)."""
        self._add(ChatMessage("user", text.strip()))

    def add_assistant(self, heard_text: str) -> None:
        """Remember the part of the character's reply that the user actually heard.

        Pass the full reply when it was spoken to the end, or only the words spoken before a barge-in.
        Empty (or whitespace-only) ``heard_text`` adds nothing: the user heard nothing.
        """
        self._add(ChatMessage("assistant", heard_text.strip()))

    def clear(self) -> None:
        """Forget every turn; the system prompt stays."""
        self._entries = []

    def _add(self, message: ChatMessage) -> None:
        if message.content:
            self._entries = _trim(_appended(self._entries, message), self._limits)


def _appended(entries: Sequence[ChatMessage], message: ChatMessage) -> list[ChatMessage]:
    out = list(entries)
    if out and out[-1].role == message.role:
        out[-1] = ChatMessage(message.role, f"{out[-1].content} {message.content}")
    else:
        out.append(message)
    return out


def _trim(entries: list[ChatMessage], limits: HistoryLimits) -> list[ChatMessage]:
    users = sum(1 for m in entries if m.role == "user")
    chars = sum(len(m.content) for m in entries)
    start = 0
    while len(entries) - start > 1 and (users > limits.max_turns or chars > limits.max_chars):
        dropped = entries[start]
        start += 1
        chars -= len(dropped.content)
        users -= dropped.role == "user"
    # A cut history resumes at a user message: an answer without its question confuses models and
    # breaks templates that want user first. (An uncut history may open with the character's greeting.)
    while start and len(entries) - start > 1 and entries[start].role != "user":
        start += 1
    return entries[start:]
