"""Streaming sentence splitter: LLM tokens in, speakable pieces out, as early as possible.

A piece ends at ``.``, ``!``, ``?`` (with any closing quotes/brackets) followed by white space, or at a
line break. These do NOT end a piece: abbreviations (``Dr.``, ``e.g.``, single initials), decimals
(``3.14``), ellipses (``...``, ``…``), and dots inside URLs, file names or e-mail addresses (no white space
follows them). To start speaking sooner, the FIRST piece of a reply may also end at a clause break
(``,``, ``;``, ``:``, dash) once it holds at least ``first_clause_words`` words. And so that the voice
never runs dry while the language model is slow, :func:`split_sentences` given the playback's runway releases
the words it holds at a word boundary (at least ``starving_words``) when less than ``starving_ms`` of the
reply's audio is left to play and the next token has not come.

Stage directions between asterisks (``*smiles*``) are removed and never spoken, as are Markdown
decorations (``#``, backticks, bullet markers) and emoji. A web address is said as its host
(``https://www.example.com/a?b=1`` -> ``example.com``), or as "a link" when the host is an address or
too long to say; a Markdown link ``[text](url)`` is said as its text. Emotion tags like ``[happy]`` pass
through the splitter untouched; :func:`parse_emotion_tags` then takes them out of each piece (the pipeline
turns them into emotion events, which the face's animation layer shows).
"""

from __future__ import annotations

import asyncio
import enum
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass

from .face.arkit import INDEX

__all__ = ["SplitterConfig", "SentenceSplitter", "split_sentences", "Emotion", "parse_emotion_tags"]

_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st vs etc e.g i.e eg ie no nos fig approx dept est inc ltd co corp
    mt ft jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun a.m p.m am pm
    u.s u.k cf al ca""".split()
)
_CLOSERS = "\"')]}’”»"
_TERMINATORS = ".!?…"
_CLAUSE = ",;:—–"
_WORD_BEFORE = re.compile(r"([\w.]+)$")
_SPACES = re.compile(r"\s+")
_MARKDOWN = re.compile(r"^\s*(?:#{1,6}\s+|[-+•]\s+|\d+\.\s+(?=\D))|`+")
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u231a\u231b\u23e9-\u23fa\ufe0e\ufe0f\u200d\u20e3"
    "\U000e0020-\U000e007f]+"
)
"""Emoji (pictographs, dingbats, flags' regional letters, skin tones) and their joiners and selectors."""
_MARKDOWN_LINK = re.compile(r"\[([^\]\n]+)\]\((?:https?://|www\.)[^)\s]*\)")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"]+", re.IGNORECASE)
_URL_TAIL = ".,;:!?)]}'’”\""
_SAYABLE_HOST = re.compile(r"^(?:[a-z0-9-]+\.){1,3}[a-z]{2,}$")
_MAX_HOST_CHARS = 30
_SPACE_BEFORE_MARK = re.compile(r"\s+([.,!?;:…])")


@dataclass(frozen=True, slots=True)
class SplitterConfig:
    first_clause_words: int = 4
    """The first piece may end at a clause break once it has this many words (0 disables)."""
    max_chars: int = 240
    """A piece longer than this is cut at its last clause break or space, so no piece waits forever."""
    starving_ms: int = 400
    """With a runway (:func:`split_sentences`): when less audio than this is left to play, the words held so
    far are spoken without waiting for the end of the sentence (0 disables)."""
    starving_words: int = 3
    """The fewest whole words released that way."""


class SentenceSplitter:
    """Feed text pieces with :meth:`push`; each call returns the speakable pieces completed so far.

    Call :meth:`flush` at the end of the stream to get the remainder. One instance per reply.
    """

    def __init__(self, config: SplitterConfig | None = None) -> None:
        self._config = config or SplitterConfig()
        self._buf = ""
        self._in_stage = False
        self._stage_pending = False  # saw '*' at the end of the input: open or literal not decided yet
        self._emitted = 0
        self._line_start = True

    def push(self, text: str) -> list[str]:
        self._buf += self._strip_stage(text)
        return self._drain(final=False)

    def holds_words(self, count: int) -> bool:
        """Whether :meth:`release` would give a piece of at least ``count`` whole words now."""
        if self._in_stage or self._stage_pending:
            return False
        cut = max(self._buf.rfind(" "), self._buf.rfind("\n"))
        if cut <= 0:
            return False
        head = self._buf[:cut]
        if head.count("[") > head.count("]") or head.count("(") > head.count(")"):
            return False  # inside a tag ("[ happy ]") or a link: wait for its end
        return len(head.split()) >= count

    def release(self, min_words: int) -> str | None:
        """The whole words held (at least ``min_words``, outside a stage direction) as a piece, cut at the last
        space; the rest stays. None when there are fewer or a stage direction is open."""
        if not self.holds_words(min_words):
            return None
        cut = max(self._buf.rfind(" "), self._buf.rfind("\n"))
        pieces: list[str] = []
        self._add(pieces, self._buf[:cut])
        self._buf = self._buf[cut:]
        return pieces[0] if pieces else None

    def flush(self) -> list[str]:
        if self._stage_pending:
            self._stage_pending = False
        self._in_stage = False
        return self._drain(final=True)

    # -- stage directions -------------------------------------------------------------------------
    def _strip_stage(self, text: str) -> str:
        out: list[str] = []
        if self._stage_pending:
            text = "*" + text
            self._stage_pending = False
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "*":
                if i + 1 == len(text):
                    self._stage_pending = True  # decide when the next piece arrives
                    break
                nxt = text[i + 1]
                if nxt == "*":  # Markdown bold '**': drop the marker, keep the words
                    i += 2
                    continue
                if self._in_stage:
                    self._in_stage = False
                elif not nxt.isspace():
                    self._in_stage = True
                i += 1
                continue
            if not self._in_stage:
                out.append(ch)
            i += 1
        return "".join(out)

    # -- boundaries -------------------------------------------------------------------------------
    def _drain(self, final: bool) -> list[str]:
        pieces: list[str] = []
        start = 0
        while (cut := self._find_cut(start, final)) is not None:
            self._add(pieces, self._buf[start:cut])
            start = cut
        self._buf = self._buf[start:]  # one copy per push, however many pieces it held
        if final:
            self._add(pieces, self._buf)
            self._buf = ""
        return pieces

    def _add(self, pieces: list[str], raw: str) -> None:
        text = _clean(raw)
        if text and any(c.isalnum() for c in text):
            pieces.append(text)
            self._emitted += 1
        # a piece of lone punctuation ("...", "!") has nothing to speak and is dropped

    def _find_cut(self, start: int, final: bool) -> int | None:
        """End index of the first complete piece in ``self._buf[start:]``, or None."""
        buf = self._buf
        n = len(buf)
        limit = start + self._config.max_chars
        i = start
        while i < n and i <= limit:
            ch = buf[i]
            if ch == "\n":
                if buf[start:i].strip():
                    return i + 1
            elif ch in _TERMINATORS:
                j = i
                while j < n and buf[j] in _TERMINATORS:
                    j += 1
                while j < n and buf[j] in _CLOSERS:
                    j += 1
                if j == n and not final:
                    return None  # need the next character to decide
                if (j == n or buf[j].isspace()) and self._ends_sentence(buf, i, j):
                    return j
                i = j
                continue
            elif ch in _CLAUSE and self._emitted == 0 and self._config.first_clause_words:
                words = len(buf[start:i].split())
                if words >= self._config.first_clause_words and (i + 1 < n and buf[i + 1].isspace()):
                    return i + 1
            i += 1
        if n - start > self._config.max_chars:
            return start + _soft_cut(buf[start:limit], self._config.max_chars)
        return None

    @staticmethod
    def _ends_sentence(buf: str, start: int, end: int) -> bool:
        run = buf[start:end].rstrip(_CLOSERS)
        if run in ("...", "…") or run.startswith("..") and set(run) == {"."}:
            return False  # an ellipsis continues the sentence
        if run != ".":
            return True  # '!' '?' '?!' etc.
        match = _WORD_BEFORE.search(buf[max(0, start - 64) : start])
        if not match:
            return True
        word = match.group(1)
        lower = word.lower().rstrip(".")
        if lower in _ABBREVIATIONS:
            return False
        if len(word) == 1 and word.isalpha() and word.isupper():
            return False  # an initial: "J. Smith"
        if "." in word and all(len(p) <= 1 for p in word.split(".")):
            return False  # "U.S." style
        return True


def _soft_cut(buf: str, limit: int) -> int:
    head = buf[:limit]
    for marks in (_CLAUSE, " "):
        pos = max(head.rfind(m) for m in marks)
        if pos > limit // 3:
            return pos + 1
    return limit


def _clean(raw: str) -> str:
    lines = [_MARKDOWN.sub("", line) for line in raw.splitlines()]
    text = _MARKDOWN_LINK.sub(r"\1", " ".join(lines))
    without_emoji = _EMOJI.sub(" ", text)
    if without_emoji != text:
        without_emoji = _SPACE_BEFORE_MARK.sub(r"\1", without_emoji)  # "nice 😀." -> "nice."
    return _SPACES.sub(" ", _URL.sub(_say_url, without_emoji)).strip()


def _say_url(match: re.Match[str]) -> str:
    """A web address as words: its host without ``www.``, or "a link"; trailing punctuation is kept."""
    url = match.group(0)
    core = url.rstrip(_URL_TAIL)
    tail = url[len(core) :]
    rest = re.sub(r"^(?:https?://)", "", core, flags=re.IGNORECASE)
    host = re.split(r"[/?#:]", rest.rpartition("@")[2] if "@" in rest.split("/", 1)[0] else rest, maxsplit=1)[0]
    host = host.lower().removeprefix("www.")
    spoken = host if _SAYABLE_HOST.match(host) and len(host) <= _MAX_HOST_CHARS else "a link"
    return spoken + tail


async def split_sentences(
    tokens: AsyncIterable[str], config: SplitterConfig | None = None, runway: Callable[[], float] | None = None
) -> AsyncIterator[str]:
    """Yield speakable pieces of a token stream as soon as each is complete.

    ``runway``: seconds of the reply's audio made so far that the listener has not heard yet (``inf`` before
    playback starts). While the next token is awaited and the runway falls under ``starving_ms``, the words
    held (at least ``starving_words``) are yielded at once (:meth:`SentenceSplitter.release`)."""
    cfg = config or SplitterConfig()
    splitter = SentenceSplitter(cfg)
    if runway is None or cfg.starving_ms <= 0:
        async for token in tokens:
            for piece in splitter.push(token):
                yield piece
        for piece in splitter.flush():
            yield piece
        return
    source = aiter(tokens)
    starving = cfg.starving_ms / 1000
    pending: asyncio.Future[str] | None = None
    try:
        while True:
            timeout = None
            if splitter.holds_words(cfg.starving_words):
                left = runway() - starving
                if left <= 0 and (released := splitter.release(cfg.starving_words)):
                    yield released  # the runway is short and the model is still writing: say what it has said
                    continue
                if 0 < left < float("inf"):
                    timeout = left
            if pending is None and timeout is None:  # nothing to watch: the next token, in this task
                try:
                    token = await anext(source)
                except StopAsyncIteration:
                    break
            else:
                if pending is None:
                    pending = asyncio.ensure_future(anext(source))
                done, _ = await asyncio.wait({pending}, timeout=timeout)
                if not done:
                    continue  # the runway got short while the next token was awaited
                finished, pending = pending, None
                try:
                    token = finished.result()
                except StopAsyncIteration:
                    break
            for piece in splitter.push(token):
                yield piece
        for piece in splitter.flush():
            yield piece
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        closer = getattr(source, "aclose", None)
        if closer is not None:
            await closer()


# ---------------------------------------------------------------------------------------- emotion tags


class Emotion(enum.Enum):
    """The 7 emotions of a face frame (NeuroSync's channels 61-67)."""

    ANGRY = "angry"
    DISGUSTED = "disgusted"
    FEARFUL = "fearful"
    HAPPY = "happy"
    NEUTRAL = "neutral"
    SAD = "sad"
    SURPRISED = "surprised"

    @property
    def channel(self) -> int:
        """This emotion's index in a 68-value face frame."""
        return INDEX[self.value.capitalize()]


_TAG_WORDS: dict[str, Emotion] = {
    "happy": Emotion.HAPPY, "joy": Emotion.HAPPY, "joyful": Emotion.HAPPY,
    "sad": Emotion.SAD, "sadness": Emotion.SAD,
    "angry": Emotion.ANGRY, "anger": Emotion.ANGRY,
    "surprised": Emotion.SURPRISED, "surprise": Emotion.SURPRISED,
    "fearful": Emotion.FEARFUL, "fear": Emotion.FEARFUL, "scared": Emotion.FEARFUL, "afraid": Emotion.FEARFUL,
    "disgusted": Emotion.DISGUSTED, "disgust": Emotion.DISGUSTED,
    "neutral": Emotion.NEUTRAL, "calm": Emotion.NEUTRAL,
}  # fmt: skip
_TAG = re.compile(r"\[\s*(" + "|".join(_TAG_WORDS) + r")\s*\]", re.IGNORECASE)


def parse_emotion_tags(text: str) -> tuple[str, list[tuple[int, Emotion]]]:
    """Remove emotion tags from ``text``: returns the clean text and ``(position, emotion)`` in order.

    A tag is an emotion word in square brackets, case-insensitive, spaces allowed inside: ``[happy]``,
    ``[ Sad ]``; the 7 emotion names and a few synonyms (joy, sadness, anger, surprise, fear, scared, afraid,
    disgust, calm) are known. Any other bracketed text (``[laughs]``, ``[1]``) is left in place. ``position``
    is where the tag stood in the clean text (the index of the character that follows it), so the emotion
    starts with the word after the tag. Removing a tag also removes one of the spaces around it so no double
    or trailing space is left.
    """
    clean = ""
    events: list[tuple[int, Emotion]] = []
    pos = 0
    for match in _TAG.finditer(text):
        clean += text[pos : match.start()]
        pos = match.end()
        gap_before = not clean or clean[-1].isspace()
        after = text[pos : pos + 1]
        if gap_before and after.isspace():
            pos += 1  # "a [happy] b" -> "a b"
        elif gap_before and not after and clean:
            clean = clean[:-1]  # "well [happy]" -> "well"
        events.append((len(clean), _TAG_WORDS[match.group(1).lower()]))
    clean += text[pos:]
    return clean, [(min(at, len(clean)), emotion) for at, emotion in events]
