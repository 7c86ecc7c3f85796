"""Streaming clean-up that keeps a local model's reply speakable, and ends it after a few sentences.

Small local models do not always obey "plain spoken words": they add ``**bold**``, ``*waves*`` stage
directions, emoji, headings, backticks or line breaks, and some ramble for a paragraph. :class:`SpeakableFilter`
takes the model's text pieces in order and returns, per piece, the part that is safe to speak, as early as
it can (it holds back at most a pending ``*`` or one space); it reports :attr:`SpeakableFilter.done` once
``max_sentences`` sentences are complete so the caller can stop generation there.

Rules: ``**`` markers are dropped (their words kept); ``*text*`` (an asterisk followed by a non-space) is a
stage direction and dropped whole, as is text in parentheses (``(smiling)``); a lone ``*``, backticks, ``#``,
``_`` and emoji are dropped; line breaks and runs of white space become one space, with no space left before
punctuation; leading and trailing space is never emitted. A JSON object (``{...}``, an action call for
:mod:`facecast.actions`) passes through verbatim. Emotion tags like ``[happy]`` pass through
(``facecast.face.layers`` handles them). A sentence ends at ``.``, ``!``, ``?``
(with closing quotes/brackets) followed by white space, except after an ellipsis or a common abbreviation
(``Dr.``, ``Mr.``, ``e.g.``, single initials), matching :mod:`facecast.text`.

Pure and synchronous; one instance per reply; not thread-safe.
"""

from __future__ import annotations

import re

__all__ = ["SpeakableFilter", "make_speakable", "is_emoji"]

_TERMINATORS = ".!?…"
_CLOSERS = "\"')]}’”»"
_DROP = "`#_~|<>"
_NO_SPACE_BEFORE = ".,!?;:…"
_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st vs etc e.g i.e eg ie no fig approx mt ft a.m p.m u.s u.k cf""".split()
)
_WORD_BEFORE = re.compile(r"([\w.]+)$")
_EMOJI_RANGES = (
    (0x1F000, 0x1FAFF),  # pictographs, emoticons, transport, supplemental symbols, flags
    (0x2600, 0x27BF),  # miscellaneous symbols and dingbats
    (0x2B00, 0x2BFF),  # arrows and stars often used as emoji
    (0x2190, 0x21FF),  # arrows
    (0xFE00, 0xFE0F),  # variation selectors
    (0x200D, 0x200D),  # zero-width joiner
    (0xE0020, 0xE007F),  # tag characters (flag sequences)
)


def is_emoji(ch: str) -> bool:
    """Whether the single character ``ch`` is an emoji or pictograph (never spoken)."""
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in _EMOJI_RANGES)


class SpeakableFilter:
    """Feed the model's pieces to :meth:`feed`, then call :meth:`flush` once; join the returns for the reply.

    ``max_sentences`` (at least 1) complete sentences end the reply: afterwards :attr:`done` is true and
    :meth:`feed` returns ``""`` for anything else.
    """

    def __init__(self, max_sentences: int = 3) -> None:
        if max_sentences < 1:
            raise ValueError(f"max_sentences must be at least 1, got {max_sentences}")
        self._max = max_sentences
        self._sentences = 0
        self._done = False
        self._star_pending = False  # saw '*' at the end of a piece: bold marker, stage or literal not decided
        self._in_stage = False
        self._paren = 0  # depth of '(' ... ')': small models put stage directions there too
        self._space_pending = False
        self._text = ""  # everything emitted so far (for sentence decisions)
        self._json = 0  # depth of a JSON object passed through verbatim (an action call; facecast.actions)
        self._json_string = False
        self._json_escape = False

    @property
    def done(self) -> bool:
        """True once ``max_sentences`` sentences are complete: stop generating."""
        return self._done

    @property
    def sentences(self) -> int:
        """How many sentences were completed so far."""
        return self._sentences

    @property
    def text(self) -> str:
        """The speakable text emitted so far."""
        return self._text

    def feed(self, piece: str) -> str:
        """The speakable part of ``piece`` that can be emitted now (possibly ``""``)."""
        if self._done:
            return ""
        if self._star_pending:
            piece = "*" + piece
            self._star_pending = False
        out: list[str] = []
        i = 0
        n = len(piece)
        while i < n and not self._done:
            ch = piece[i]
            if self._json:  # inside a JSON object: verbatim, for the action extractor downstream
                out.append(ch)
                i += 1
                self._json_step(ch)
                continue
            if ch == "{" and not self._in_stage and not self._paren:
                if self._space_pending and (self._text or out):
                    out.append(" ")
                self._space_pending = False
                out.append(ch)
                i += 1
                self._json = 1
                continue
            if ch == "*":
                if i + 1 == n:
                    self._star_pending = True
                    break
                nxt = piece[i + 1]
                if nxt == "*":
                    i += 2  # Markdown bold: drop the marker, keep the words
                    continue
                if self._in_stage:
                    self._in_stage = False
                elif not nxt.isspace():
                    self._in_stage = True
                i += 1
                continue
            i += 1
            if ch == "(" and not self._in_stage:
                self._paren += 1
                continue
            if ch == ")" and self._paren:
                self._paren -= 1
                continue
            if self._in_stage or self._paren or ch in _DROP or is_emoji(ch):
                continue
            if ch.isspace():
                if self._text or out:
                    self._space_pending = True
                continue
            if self._space_pending and ch in _NO_SPACE_BEFORE:
                self._space_pending = False  # "Bram (smiling)." -> "Bram."
            if self._space_pending:
                self._space_pending = False
                if self._sentence_ended("".join(out)):
                    self._sentences += 1
                    if self._sentences >= self._max:
                        self._done = True
                        break
                out.append(" ")
            out.append(ch)
        emitted = "".join(out)
        self._text += emitted
        return emitted

    def _json_step(self, ch: str) -> None:
        if self._json_string:
            if self._json_escape:
                self._json_escape = False
            elif ch == "\\":
                self._json_escape = True
            elif ch == '"':
                self._json_string = False
        elif ch == '"':
            self._json_string = True
        elif ch == "{":
            self._json += 1
        elif ch == "}":
            self._json -= 1
            if not self._json:
                self._space_pending = True  # the words after a call are a new phrase

    def flush(self) -> str:
        """The end of the reply: drops a pending ``*`` and counts a final unterminated sentence."""
        self._star_pending = False
        self._in_stage = False
        self._paren = 0
        self._space_pending = False
        if not self._done and self._text and self._sentence_ended(""):
            self._sentences += 1
        elif not self._done and any(c.isalnum() for c in self._text):
            self._sentences += 1
        self._done = True
        return ""

    def _sentence_ended(self, tail: str) -> bool:
        """Whether the emitted text (plus ``tail``) ends a sentence, given that white space follows it."""
        text = (self._text + tail)[-80:]
        stripped = text.rstrip(_CLOSERS)
        end = len(stripped)
        start = end
        while start > 0 and stripped[start - 1] in _TERMINATORS:
            start -= 1
        run = stripped[start:end]
        if not run:
            return False
        if run in ("…",) or (len(run) >= 2 and set(run) == {"."}):
            return False  # an ellipsis continues the sentence
        if run != ".":
            return True
        match = _WORD_BEFORE.search(stripped[:start])
        if not match:
            return True
        word = match.group(1)
        lower = word.lower().rstrip(".")
        if lower in _ABBREVIATIONS:
            return False
        if len(word) == 1 and word.isalpha() and word.isupper():
            return False  # an initial: "J. Smith"
        return not ("." in word and all(len(p) <= 1 for p in word.split(".")))


def make_speakable(text: str, max_sentences: int = 3) -> str:
    """``text`` cleaned as :class:`SpeakableFilter` would stream it (a whole reply at once)."""
    filt = SpeakableFilter(max_sentences)
    return filt.feed(text) + filt.flush()
