"""Core value types that flow between the stages.

Every time inside an utterance is an audio sample position counted from the utterance's first sample
(one clock per utterance: nothing is scheduled by a second, independent clock). Face frame ``i``
belongs at sample ``round(i * rate / 60)``.
Audio is float32 mono in [-1, 1] inside Facecast; conversion to PCM16 happens at the edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "FPS",
    "FACE_WIDTH",
    "Float32Array",
    "AudioChunk",
    "Phoneme",
    "ALPHABETS",
    "Word",
    "SpeechChunk",
    "FaceFrames",
    "Transcript",
    "ChatMessage",
    "frame_sample",
    "frames_for_samples",
]

FPS = 60
"""Face frames per second, everywhere in Facecast."""

FACE_WIDTH = 68
"""Values per face frame: 61 Live Link curves + 7 emotions (NeuroSync's channels 61-67)."""

Float32Array = npt.NDArray[np.float32]

ALPHABETS = ("espeak", "ipa", "misaki")
"""The phoneme alphabets a :class:`Phoneme` may use (the face's viseme lookup knows each)."""


def frame_sample(index: int, rate: int) -> int:
    """The audio sample at which face frame ``index`` is shown, at sample rate ``rate``."""
    return round(index * rate / FPS)


def frames_for_samples(samples: int, rate: int) -> int:
    """How many face frames cover ``samples`` audio samples: 60 per second, rounded up."""
    return math.ceil(samples * FPS / rate) if samples > 0 else 0


@dataclass(frozen=True, slots=True, eq=False)
class AudioChunk:
    """A piece of mono float32 audio.

    ``offset`` is the position of ``pcm[0]`` in samples from the start of its stream (utterance or
    microphone capture), at ``rate``.
    """

    pcm: Float32Array
    rate: int
    offset: int = 0

    @property
    def end(self) -> int:
        """Sample position just after the last sample of this chunk."""
        return self.offset + len(self.pcm)

    @property
    def duration(self) -> float:
        return len(self.pcm) / self.rate


@dataclass(frozen=True, slots=True)
class Phoneme:
    """One phoneme of synthesised speech: ``symbol`` in the phoneme ``alphabet`` of the TTS that made it.

    Alphabets (:data:`ALPHABETS`): ``espeak`` (espeak-ng's mnemonics, e.g. ``p``, ``aI``, ``T``), ``ipa``
    (espeak-ng's IPA output, as Piper voices use: ``p``, ``aɪ``, ``θ``) and ``misaki`` (the Kokoro/misaki
    G2P set: ``p``, ``I``, ``θ``). ``start`` and ``end`` are sample positions at the speech's rate, from the
    start of the stream that carries it. ``end`` is the next phoneme's start (or the end of the sentence's
    audio).
    """

    symbol: str
    start: int
    end: int
    alphabet: str = "espeak"


@dataclass(frozen=True, slots=True)
class Word:
    """A word of synthesised speech with its sample span (same clock as :class:`Phoneme`)."""

    text: str
    start: int
    end: int


@dataclass(frozen=True, slots=True, eq=False)
class SpeechChunk:
    """A chunk of TTS output: its audio, and the phonemes and words that START inside it.

    A TTS stream yields chunks in order; phonemes/words use the same sample clock as ``audio.offset``.
    Timing lists may be empty when the TTS provides none (an audio-driven animator is then needed).
    """

    audio: AudioChunk
    phonemes: tuple[Phoneme, ...] = ()
    words: tuple[Word, ...] = ()


@dataclass(frozen=True, slots=True, eq=False)
class FaceFrames:
    """Consecutive 60 fps face frames: ``values[k]`` is frame ``start + k``, 68 float32 values each."""

    start: int
    values: Float32Array = field(repr=False)

    @property
    def end(self) -> int:
        return self.start + len(self.values)


@dataclass(frozen=True, slots=True)
class Transcript:
    """Speech-to-text output; partial results may change, the final one is the utterance's text."""

    text: str
    final: bool


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str
