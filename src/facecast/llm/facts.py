"""What is true now in the game: named facts the engine sets (``context`` messages, docs/protocol.md), rendered
into the system prompt of the character's next turn.

The history keeps what was said; the facts keep what is true now. They are never appended to the history
(so they are never trimmed with old turns, and never mistaken for something the player said): each turn's
prompt shows the facts as they are when the turn starts. Pure bookkeeping, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["Facts", "MAX_FACTS", "MAX_FACTS_BYTES", "FACTS_HEADING"]

MAX_FACTS = 64
"""The most facts a conversation holds at once."""
MAX_FACTS_BYTES = 4096
"""The most UTF-8 bytes of fact names and values a conversation holds at once (about a thousand tokens)."""
FACTS_HEADING = "What is true now:"
"""Opens the facts' paragraph of the system prompt."""


class Facts:
    """Named facts (name -> text), bounded by ``max_facts`` and ``max_bytes`` (UTF-8 bytes of the names and
    values together). Not thread-safe; one per conversation."""

    def __init__(self, max_facts: int = MAX_FACTS, max_bytes: int = MAX_FACTS_BYTES) -> None:
        self.max_facts = max_facts
        self.max_bytes = max_bytes
        self._facts: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._facts)

    def as_dict(self) -> dict[str, str]:
        """The facts, in the order they were first set (a copy)."""
        return dict(self._facts)

    @property
    def size(self) -> int:
        """UTF-8 bytes of the names and values held."""
        return _size(self._facts)

    def update(self, changes: Mapping[str, str | None], *, replace: bool = False) -> None:
        """Set each fact of ``changes`` to its value; a None or empty value removes the fact (a fact that is
        not held is ignored). With ``replace`` every fact not named in ``changes`` is removed first.

        All or nothing: raises ValueError, changing nothing, when the result would hold more than
        ``max_facts`` facts or ``max_bytes`` bytes, or a name is empty.
        """
        facts = {} if replace else dict(self._facts)
        for name, value in changes.items():
            if not name.strip():
                raise ValueError("a fact needs a name (nothing was changed)")
            text = (value or "").strip()
            if text:
                facts[name] = text
            else:
                facts.pop(name, None)
        if len(facts) > self.max_facts:
            raise ValueError(
                f"the context would hold {len(facts)} facts; the limit is {self.max_facts} (nothing was changed)"
            )
        size = _size(facts)
        if size > self.max_bytes:
            raise ValueError(
                f"the context would hold {size} bytes of fact names and values; the limit is {self.max_bytes} "
                "(nothing was changed)"
            )
        self._facts = facts

    def clear(self) -> None:
        """Forget every fact."""
        self._facts = {}

    def render(self) -> str:
        """The facts as one line (``What is true now: location: tavern; time_of_day: night.``), or '' when
        there are none."""
        if not self._facts:
            return ""
        return f"{FACTS_HEADING} " + "; ".join(f"{name}: {value}" for name, value in self._facts.items()) + "."


def _size(facts: Mapping[str, str]) -> int:
    return sum(
        len(name.encode("utf-8", "surrogatepass")) + len(value.encode("utf-8", "surrogatepass"))
        for name, value in facts.items()
    )
