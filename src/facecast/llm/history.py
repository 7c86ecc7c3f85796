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

What is true now in the game (:class:`~facecast.llm.facts.Facts`, set by the engine's ``context`` messages) is
kept beside the turns, in :attr:`ChatHistory.facts`: never in them, never trimmed with them. Each call of
:meth:`ChatHistory.messages` renders the facts as they are then in front of the final user message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ConfigError
from ..types import ChatMessage
from .facts import Facts

__all__ = [
    "ChatHistory",
    "HistoryLimits",
    "DEFAULT_PERSONA",
    "SPEAKING_RULES",
    "EMOTION_TAGS_RULE",
    "RULES",
    "persona_prompt",
]

_DEFAULT_CHARACTER = (
    "You are Bram, the gruff but kind blacksmith of Oakvale, a small village. A traveller has stopped at your "
    "forge to talk. You are a real person, not an AI."
)
"""The built-in character. A concrete person with a name, a trade and a place: told only that it is "a character
in a video game", the embedded 0.5B model introduced itself as "an AI named ChatGPT". Told what it is not
(computers, code, the modern world), it said so unasked ("You're right, I'm not a computer or code person"):
a small model repeats what its prompt names, so the persona names only what the character is. It is the
persona the language models are measured with (:mod:`facecast.bench.llm_bench`)."""

SPEAKING_RULES = (
    "Answer in one to three short spoken sentences of plain words: no lists, no markdown, no emoji, no stage "
    "directions."
)
"""What every persona is told unless its rules are off: short spoken answers suit speech synthesis and lip
sync, and markup would be read out or dropped."""

EMOTION_TAGS_RULE = (
    "To show a feeling, you may start a sentence with one tag: [happy], [sad], [angry], [surprised], "
    "[fearful] or [disgusted]."
)
"""Added with rules ``tags``: the emotion tags the face understands (:mod:`facecast.text`). Not in the
default rules: the embedded 0.5B model, told about them, answers some lines with nothing but a tag."""

DEFAULT_PERSONA = f"{_DEFAULT_CHARACTER} {SPEAKING_RULES}"
"""The system prompt used when none is given."""

RULES = ("on", "tags", "off")
"""Speaking rules a persona gets: ``on`` (:data:`SPEAKING_RULES`), ``tags`` (also :data:`EMOTION_TAGS_RULE`),
``off`` (the persona as written)."""


def persona_prompt(persona: str = "", rules: str = "on") -> str:
    """The system prompt of a character: ``persona`` (empty: the built-in one) with the speaking ``rules``
    (one of :data:`RULES`) after it, unless it already contains them. Raises ConfigError for other rules."""
    if rules not in RULES:
        raise ConfigError(f"speaking rules must be one of {', '.join(RULES)}, got {rules!r}")
    base = persona.strip() or _DEFAULT_CHARACTER
    parts = [base]
    if rules != "off" and SPEAKING_RULES not in base:
        parts.append(SPEAKING_RULES)
    if rules == "tags" and EMOTION_TAGS_RULE not in base:
        parts.append(EMOTION_TAGS_RULE)
    if not persona.strip():
        return " ".join(parts)  # the built-in persona: exactly DEFAULT_PERSONA with the default rules
    return "\n\n".join(parts)


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
        self.facts = Facts()
        """What is true now (the engine's ``context``): rendered with the final user message, not a turn."""
        self.instructions = ""
        """More of the system prompt, after the persona: what the session adds (the actions it may take)."""
        self.results: list[str] = []
        """What the character's actions did since the player last spoke (the engine's ``action_result``):
        told to the model with the next user message, then forgotten (at most :data:`MAX_RESULTS`)."""

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

        The :attr:`facts` go in front of the final user message, in brackets (``[What is true now: location:
        tavern.]``), not into the system prompt: the persona and the earlier turns stay a fixed prefix, so a
        local model answers a turn after a context change from its prompt cache instead of evaluating the
        whole conversation again. Without a final user message they follow the system prompt.

        Does not change the history. ``user_text`` counts towards the limits and is never dropped; if the
        history already ends with a user message, ``user_text`` is merged into it.
        """
        entries = self._entries
        if user_text is not None and user_text.strip():
            entries = _trim(_appended(entries, ChatMessage("user", user_text.strip())), self._limits)
        facts = " ".join(part for part in (self.facts.render(), _results(self.results)) if part)
        system = "\n\n".join(part for part in (self.system_prompt, self.instructions) if part.strip())
        if facts and entries and entries[-1].role == "user":
            entries = [*entries[:-1], ChatMessage("user", f"[{facts}]\n{entries[-1].content}")]
        elif facts:
            system = "\n\n".join(part for part in (system, facts) if part.strip())
        out: list[ChatMessage] = []
        if system.strip():
            out.append(ChatMessage("system", system))
        out.extend(entries)
        return out

    def add_user(self, text: str) -> None:
        """Remember what the user said (whitespace-only text is ignored). The action results told with it
        are forgotten."""
        self._add(ChatMessage("user", text.strip()))
        self.results = []

    def add_result(self, text: str) -> None:
        """What one of the character's actions did (``give_item {"item": "key"}: done``), for the next turn."""
        self.results = [*self.results, text][-MAX_RESULTS:]

    def add_assistant(self, heard_text: str) -> None:
        """Remember the part of the character's reply that the user actually heard.

        Pass the full reply when it was spoken to the end, or only the words spoken before a barge-in.
        Empty (or whitespace-only) ``heard_text`` adds nothing: the user heard nothing.
        """
        self._add(ChatMessage("assistant", heard_text.strip()))

    def clear(self) -> None:
        """Forget every turn; the system prompt and the facts stay."""
        self._entries = []

    def _add(self, message: ChatMessage) -> None:
        if message.content:
            self._entries = _trim(_appended(self._entries, message), self._limits)


MAX_RESULTS = 8
"""Action results kept for the next turn."""


def _results(results: Sequence[str]) -> str:
    return f"What your actions did: {'; '.join(results)}." if results else ""


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
