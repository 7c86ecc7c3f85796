"""What the player actually heard of a reply, from the engine's playback position (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ReplyText"]


@dataclass(slots=True)
class ReplyText:
    """The sentences of one utterance with the sample (at ``rate``) where each one's audio starts."""

    rate: int
    sentences: list[tuple[int, str]] = field(default_factory=list)
    total: int | None = None
    """Samples of the whole utterance, once it has ended."""

    def add(self, start: int, text: str) -> None:
        self.sentences.append((start, text))

    def full(self) -> str:
        return " ".join(text for _, text in self.sentences)

    def heard(self, position: int) -> str:
        """The text spoken before sample ``position``: whole sentences, then the words of the sentence
        that was cut, in proportion to how much of its audio was played."""
        out: list[str] = []
        for i, (start, text) in enumerate(self.sentences):
            if position <= start:
                break
            if i + 1 < len(self.sentences):
                end = self.sentences[i + 1][0]
            elif self.total is not None:
                end = self.total
            else:
                end = start + max(1, len(text)) * self.rate // 14  # about 14 characters per second
            if position >= end:
                out.append(text)
                continue
            words = text.split()
            keep = int(len(words) * (position - start) / max(1, end - start))
            if keep:
                out.append(" ".join(words[:keep]))
            break
        return " ".join(out)
