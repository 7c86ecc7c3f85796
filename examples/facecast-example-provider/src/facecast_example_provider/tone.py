"""A small, real text-to-speech provider: each letter is hummed for a fixed time, with exact phoneme timing.

It is not a voice anyone would ship; it shows every rule of Facecast's ``TextToSpeech`` contract in ~150
lines of numpy:

* ``sample_rate`` is fixed, and every chunk is at that rate, mono float32 in [-1, 1];
* chunk offsets are contiguous from 0 for each ``synthesize`` call;
* each chunk carries the phonemes and words that START inside it, in order, and the phonemes tile the audio
  (so the phonetic face closes the lips on every ``b``/``p``/``m``);
* empty text raises :class:`facecast.errors.InputError`, and so does text over ``MAX_TEXT_CHARS``;
* closing the stream early stops the work (it is an async generator that yields between chunks).

Sound: one phase-continuous oscillator for the whole text (no clicks between letters), a vowel-dependent
brightness, nasal hum for ``m``/``n``, closure then a short burst for ``p``/``b``, noise for fricatives, and
an amplitude envelope smoothed over 8 ms.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from facecast.errors import InputError
from facecast.types import AudioChunk, Phoneme, SpeechChunk, Word

__all__ = ["ToneOptions", "ToneTTS", "MAX_TEXT_CHARS", "IPA"]

MAX_TEXT_CHARS = 5000

IPA = {
    "a": "æ", "b": "b", "c": "k", "d": "d", "e": "ɛ", "f": "f", "g": "ɡ", "h": "h", "i": "ɪ", "j": "ʤ",
    "k": "k", "l": "l", "m": "m", "n": "n", "o": "ɑ", "p": "p", "q": "k", "r": "ɹ", "s": "s", "t": "t",
    "u": "ʌ", "v": "v", "w": "w", "x": "s", "y": "j", "z": "z",
}  # fmt: skip
"""Each letter's sound, as the IPA symbol Facecast's phonetic face understands."""

_VOWELS = frozenset("æɛɪɑʌ")
_BRIGHTNESS = {"æ": 0.8, "ɛ": 0.7, "ɪ": 0.9, "ɑ": 0.5, "ʌ": 0.4}
_HUM = frozenset("mnlɹwjvzdɡʤ")
_NOISE = frozenset("fsvzhʃθʤ")
_CLOSURE = frozenset("pbtdk")
_TOKEN = re.compile(r"[A-Za-z]+|[.,!?;:]")


@dataclass(frozen=True, slots=True)
class ToneOptions:
    """``pitch_hz``: the hum's pitch (60-400); ``letter_ms``: time per consonant (vowels 1.5x, 30-300);
    ``rate``: sample rate (8000-48000); ``chunk_ms``: audio per chunk (10-1000)."""

    pitch_hz: float = 140.0
    letter_ms: int = 70
    rate: int = 16000
    chunk_ms: int = 100

    def __post_init__(self) -> None:
        if not 60.0 <= self.pitch_hz <= 400.0:
            raise InputError(f"pitch_hz must be from 60 to 400, got {self.pitch_hz!r}")
        if not 30 <= self.letter_ms <= 300:
            raise InputError(f"letter_ms must be from 30 to 300, got {self.letter_ms!r}")
        if not 8000 <= self.rate <= 48000:
            raise InputError(f"rate must be from 8000 to 48000, got {self.rate!r}")
        if not 10 <= self.chunk_ms <= 1000:
            raise InputError(f"chunk_ms must be from 10 to 1000, got {self.chunk_ms!r}")


@dataclass(frozen=True, slots=True)
class _Plan:
    phonemes: list[Phoneme]
    words: list[Word]
    amplitude: np.ndarray  # per sample: voiced level
    noise: np.ndarray  # per sample: noise level
    brightness: np.ndarray  # per sample: weight of the upper harmonics


def _plan(text: str, options: ToneOptions) -> _Plan:
    unit = options.letter_ms * options.rate // 1000
    pieces: list[tuple[str, int, float, float, float]] = []  # symbol, samples, voiced, noise, brightness
    words: list[Word] = []
    position = 0
    pieces.append(("_", unit, 0.0, 0.0, 0.0))  # a short lead-in, so the lips can move before the first sound
    position += unit
    for token in _TOKEN.findall(text):
        if not token.isalpha():
            pieces.append((token, 3 * unit, 0.0, 0.0, 0.0))
            position += 3 * unit
            continue
        start = position
        for letter in token.lower():
            symbol = IPA[letter]
            length = unit * 3 // 2 if symbol in _VOWELS else unit
            voiced = 0.35 if symbol in _VOWELS else 0.12 if symbol in _HUM else 0.0
            hiss = 0.06 if symbol in _NOISE else 0.0
            pieces.append((symbol, length, voiced, hiss, _BRIGHTNESS.get(symbol, 0.2)))
            position += length
        words.append(Word(token, start, position))
        pieces.append(("_", unit // 2, 0.0, 0.0, 0.0))  # the gap between words
        position += unit // 2
    total = position
    amplitude = np.zeros(total, np.float32)
    noise = np.zeros(total, np.float32)
    brightness = np.zeros(total, np.float32)
    phonemes: list[Phoneme] = []
    at = 0
    for symbol, length, voiced, hiss, bright in pieces:
        amplitude[at : at + length] = voiced
        noise[at : at + length] = hiss
        brightness[at : at + length] = bright
        if symbol in _CLOSURE:  # closure, then a 10 ms burst at the release
            burst = options.rate // 100
            noise[at + length - burst : at + length] = 0.15
        if phonemes and symbol == "_" and phonemes[-1].symbol == "_":
            last = phonemes.pop()  # consecutive pauses merge
            phonemes.append(Phoneme("_", last.start, at + length, "ipa"))
        else:
            phonemes.append(Phoneme(symbol, at, at + length, "ipa"))
        at += length
    return _Plan(phonemes, words, amplitude, noise, brightness)


def _render(plan: _Plan, options: ToneOptions) -> np.ndarray:
    rate = options.rate
    smooth = np.hanning(max(3, rate * 8 // 1000))
    smooth /= smooth.sum()

    def soften(track: np.ndarray) -> np.ndarray:
        return np.convolve(track, smooth, mode="same").astype(np.float32)

    # one oscillator for the whole text (phase-continuous), a slight falling pitch over the text
    count = len(plan.amplitude)
    pitch = options.pitch_hz * np.linspace(1.05, 0.92, count, dtype=np.float64)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    bright = soften(plan.brightness)
    voiced = np.sin(phase) + bright * (0.5 * np.sin(2 * phase) + 0.3 * np.sin(3 * phase) + 0.2 * np.sin(5 * phase))
    hiss = np.random.default_rng(7).standard_normal(count)
    pcm = soften(plan.amplitude) * voiced / 2.0 + soften(plan.noise) * hiss
    return np.clip(pcm, -1.0, 1.0).astype(np.float32)


class ToneTTS:
    """The tone voice; implements :class:`facecast.roles.TextToSpeech`. Stateless: share it freely."""

    def __init__(self, options: ToneOptions | None = None) -> None:
        self._options = options or ToneOptions()

    @property
    def sample_rate(self) -> int:
        return self._options.rate

    @property
    def options(self) -> ToneOptions:
        return self._options

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        """Speak ``text``; raises :class:`InputError` for text without letters or over MAX_TEXT_CHARS."""
        if len(text) > MAX_TEXT_CHARS:
            raise InputError(f"text over {MAX_TEXT_CHARS} characters")
        if not any(c.isascii() and c.isalpha() for c in text):
            raise InputError("nothing to say: the text has no letters")
        options = self._options
        plan = _plan(text, options)
        pcm = _render(plan, options)
        size = options.chunk_ms * options.rate // 1000
        phonemes, words = list(plan.phonemes), list(plan.words)
        for offset in range(0, len(pcm), size):
            end = min(offset + size, len(pcm))
            mine = tuple(p for p in phonemes if offset <= p.start < end)
            spoken = tuple(w for w in words if offset <= w.start < end)
            yield SpeechChunk(AudioChunk(pcm[offset:end], options.rate, offset), mine, spoken)
            await asyncio.sleep(0)  # a real provider awaits its engine here; closing the stream stops it
