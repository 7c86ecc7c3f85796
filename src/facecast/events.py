"""Events of an utterance stream (what the pipeline yields and every output sink consumes).

All sample positions are on the utterance's clock at ``UtteranceStarted.rate``; face frame ``i`` belongs
at sample ``round(i * rate / 60)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .actions import ActionCall
from .types import AudioChunk, FaceFrames

__all__ = [
    "UtteranceStarted",
    "SentenceOut",
    "EmotionOut",
    "AudioOut",
    "FaceOut",
    "ActionOut",
    "UtteranceEnded",
    "UtteranceEvent",
]


@dataclass(frozen=True, slots=True)
class UtteranceStarted:
    utterance: int
    rate: int


@dataclass(frozen=True, slots=True)
class SentenceOut:
    """A piece of reply text about to be spoken; its audio starts at sample ``start``."""

    utterance: int
    text: str
    start: int


@dataclass(frozen=True, slots=True)
class EmotionOut:
    """The reply asked for an emotion (a tag like ``[happy]``) from sample ``start`` on."""

    utterance: int
    emotion: str
    start: int


@dataclass(frozen=True, slots=True, eq=False)
class AudioOut:
    utterance: int
    chunk: AudioChunk


@dataclass(frozen=True, slots=True, eq=False)
class FaceOut:
    utterance: int
    frames: FaceFrames


@dataclass(frozen=True, slots=True)
class ActionOut:
    """The reply acts at sample ``start`` (after the words before it): ``call``, or a call the model got
    wrong, with ``call`` None and ``error`` saying why (it is not taken)."""

    utterance: int
    call: ActionCall | None
    start: int
    error: str = ""


@dataclass(frozen=True, slots=True)
class UtteranceEnded:
    utterance: int
    samples: int
    frames: int
    text: str


UtteranceEvent = UtteranceStarted | SentenceOut | EmotionOut | AudioOut | FaceOut | ActionOut | UtteranceEnded
