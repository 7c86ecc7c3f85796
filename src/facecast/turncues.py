"""Whether a transcript reads as a finished sentence: the text's side of end-of-turn detection.

At a pause the listener already has the turn decoded (speculative speech-to-text), and the words the
player stopped on say a lot: "I'd like to buy the" and "I need bread, milk, and" are not finished,
whatever the voice did. :class:`TextTurnCue` reads one transcript and answers

* ``"incomplete"``: it stops on a word a sentence does not end on (an article, a possessive, a
  conjunction, "of"/"than", a filler such as "um"; a preposition or an auxiliary unless the rest of the
  sentence lets it end there, see below), or on a comma, a colon, a semicolon, a dash or an ellipsis; or a
  recogniser that punctuates left a sentence of three words or more without a full stop, question or
  exclamation mark (a one- or two-word answer, "Yes", "Okay", often comes without one: unsure);
* ``"complete"``: a punctuated transcript that ends in ``.``, ``?`` or ``!`` on a word that may end a
  sentence;
* ``"unsure"``: anything else: no words, text without punctuation and capitals (pocketsphinx and Vosk
  write none, so there the missing full stop says nothing), or a language other than English (the word
  lists are English; only ``language="en"`` is judged).

A preposition at the end ("to", "for", "with", "from", "at", "about", "by") is incomplete unless the
transcript is a question ("Who are you talking to?"). An auxiliary or modal at the end ("is", "can",
"would", "have") is incomplete unless it follows a subject pronoun, "there" or "not" ("Yes, it is.",
"I can.", "No, I don't."): "The sword is" is unfinished, "I think it is." is an answer. Words that are
often phrasal-verb particles ("in", "on", "up", "out", "over") are not judged.

Pure and cheap (a few microseconds): the detector (:mod:`facecast.turns`) calls it when the pause's
transcript arrives.
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = ["Cue", "TextTurnCue", "judge"]

Cue = Literal["complete", "incomplete", "unsure"]

_ARTICLES = frozenset({"a", "an", "the"})
_POSSESSIVES = frozenset({"my", "your", "our", "their", "its", "whose"})
_CONJUNCTIONS = frozenset(
    {"and", "or", "but", "nor", "because", "if", "unless", "although", "whereas", "cause", "'cause"}
)
_NEVER_LAST = frozenset({"of", "than", "into", "onto", "from", "versus"})
_FILLERS = frozenset({"um", "uh", "umm", "uhm", "uhh", "er", "erm", "hmm", "hm", "mm", "mmm", "ah"})
_PREPOSITIONS = frozenset({"to", "for", "with", "at", "about", "by", "towards", "toward", "without", "like"})
_AUXILIARIES = frozenset(
    {
        "is",
        "are",
        "was",
        "were",
        "am",
        "be",
        "been",
        "will",
        "would",
        "can",
        "could",
        "should",
        "shall",
        "may",
        "might",
        "must",
        "have",
        "has",
        "had",
        "do",
        "does",
        "did",
    }
)
_SUBJECTS = frozenset(
    {"i", "you", "he", "she", "it", "we", "they", "there", "that", "this", "not", "who", "what", "so", "one"}
)
_OPEN_PUNCT = (",", ":", ";", "-", "\u2013", "\u2014", "...", "\u2026")
_WORD = re.compile(r"[a-z']+")
_OPEN_MIN_WORDS = 3


def judge(text: str, language: str = "en") -> Cue:
    """The cue of ``text`` (module docstring); never raises."""
    if language.lower().split("-")[0] != "en":
        return "unsure"
    stripped = text.strip().strip("\"')]}\u201d\u2019").rstrip()
    words = _WORD.findall(stripped.lower())
    if not words:
        return "unsure"
    last = words[-1]
    punctuated = any(c in ".,?!;:" for c in stripped) or any(c.isupper() for c in stripped)
    if stripped.endswith(_OPEN_PUNCT):
        return "incomplete"
    if last in _ARTICLES or last in _POSSESSIVES or last in _CONJUNCTIONS or last in _NEVER_LAST:
        return "incomplete"
    if last in _FILLERS:
        return "incomplete"
    if last in _PREPOSITIONS and not stripped.endswith("?"):
        return "incomplete"
    if last in _AUXILIARIES and (len(words) < 2 or words[-2] not in _SUBJECTS and not words[-2].endswith("n't")):
        return "incomplete"
    if not punctuated:
        return "unsure"  # a recogniser without punctuation: the words above are all there is to go on
    if stripped.endswith((".", "?", "!")):
        return "complete"
    if len(words) < _OPEN_MIN_WORDS:
        return "unsure"  # "Yes", "Okay": Whisper often leaves a one-word answer without its full stop
    return "incomplete"  # a punctuated sentence without its full stop: Whisper leaves unfinished ones open


class TextTurnCue:
    """:func:`judge` for one ``language`` (an ISO code; only ``"en"`` is judged, others are always unsure)."""

    def __init__(self, language: str = "en") -> None:
        self.language = language

    def judge(self, text: str) -> Cue:
        return judge(text, self.language)
