"""Phoneme timing from word timing: the phonetic face for any TTS that says when each word is spoken.

Cloud voices (ElevenLabs' character alignment, Cartesia's word timestamps, OpenAI-compatible servers that
return words) report when words are spoken, not phonemes. This module turns that into phoneme timing in the
``espeak`` alphabet (:data:`facecast.types.ALPHABETS`), so :class:`facecast.face.phonetic.PhoneticAnimator`
drives the lips exactly for that voice:

1. **Grapheme to phoneme.** Each word is spoken once by espeak-ng (:class:`facecast.tts.espeak.EspeakTTS`, the
   same library the light voice uses; numbers and symbols are expanded as it expands them). That gives the
   word's phonemes AND espeak-ng's own duration of each (:class:`EspeakG2P`; cached per word). A silent lead-in
   before a plosive is its closure and is given to it (``pub`` -> ``p`` holds the lips shut from the start);
   every other pause is dropped.
2. **Fit.** The phonemes are laid inside the provider's word span (:func:`fit_word`): the first starts at the
   word's start, the last ends at its end, and each lasts in proportion to its espeak-ng duration. When the
   span is longer than espeak-ng's word (slow speech, or a span that includes a pause), closures (stops,
   nasals, ``f v``) stretch by at most :data:`MAX_CLOSURE_STRETCH` and the rest of the time goes to the other
   phonemes, so a lip closure stays short and sits at the word's edge where it belongs. When the span is
   shorter, everything shrinks in proportion.
3. **Characters to words.** Character alignment (ElevenLabs: per-character start times and durations) is first
   grouped into words at whitespace (:class:`CharacterWords`; punctuation at a word's edges is not spoken and
   does not count in its span).

:class:`WordTimedTTS` wraps any :class:`~facecast.roles.TextToSpeech` whose chunks carry ``words`` and yields
the same audio and words with ``phonemes`` filled in (the inner TTS's own phonemes, if any, are replaced).
Streaming contract: a word's phonemes go into the chunk in which each phoneme starts (a word crossing a chunk
boundary puts its later phonemes in the next chunk), so the wrapper adds no delay; it needs the inner TTS to
deliver each word in the chunk where it starts, complete (its ``end`` known) and ending by the end of the
audio.

How a provider gets this: its registry factory returns ``WordTimedTTS(inner)`` and it registers with
``Capabilities(timing="phonemes", alphabet="espeak")`` (``elevenlabs`` and ``cartesia`` in
:mod:`facecast.providers` do); a third-party provider that reports words does the same.
"""

from __future__ import annotations

import asyncio
import math
import re
import unicodedata
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from typing import Any

from ..aio import closing
from ..roles import TextToSpeech
from ..types import Phoneme, SpeechChunk, Word

__all__ = [
    "Pronunciation",
    "CLOSURES",
    "MAX_CLOSURE_STRETCH",
    "fit_word",
    "align_words",
    "CharacterWords",
    "EspeakG2P",
    "WordTimedTTS",
]

Pronunciation = tuple[tuple[str, float], ...]
"""A word's phonemes (espeak-ng mnemonics) with their typical durations in seconds."""

CLOSURES = frozenset({"p", "b", "m", "t", "d", "k", "g", "n", "N", "f", "v"})
"""espeak-ng phonemes whose gesture is a quick closure or contact: kept short when a word span is long."""
MAX_CLOSURE_STRETCH = 1.25
"""A closure lasts at most this many times its espeak-ng duration, however long its word's span."""

_PLOSIVES = frozenset({"p", "b", "t", "d", "k", "g"})
_EDGE_PUNCTUATION = "\"'“”‘’()[]{}«»,.;:!?…—–-*_/\\"
_STRESS = re.compile(r"[',]")


def _base(symbol: str) -> str:
    return _STRESS.sub("", symbol)


def fit_word(pronunciation: Pronunciation, start: int, end: int, rate: int, alphabet: str = "espeak") -> list[Phoneme]:
    """The phonemes of one word laid inside ``[start, end)`` (sample positions at ``rate``; module docstring).

    They tile the span exactly: the first starts at ``start``, each ends where the next starts, the last ends
    at ``end``. An empty pronunciation or span gives no phonemes. Pure; never raises for valid numbers.
    """
    span = end - start
    weights = [float(d) * rate if math.isfinite(d) and d > 1e-6 else 0.0 for _, d in pronunciation]  # samples
    if span <= 0 or not weights:
        return []
    total = sum(weights)
    if total <= 0:  # no durations to go by: equal shares
        weights = [1.0] * len(weights)
        total = float(len(weights))
    scale = span / total
    closure = [_base(s) in CLOSURES for s, _ in pronunciation]
    lengths = [w * scale for w in weights]
    if scale > MAX_CLOSURE_STRETCH and not all(closure) and any(closure):
        capped = [w * MAX_CLOSURE_STRETCH if c else 0.0 for w, c in zip(weights, closure, strict=True)]
        rest = span - sum(capped)
        open_total = sum(w for w, c in zip(weights, closure, strict=True) if not c)
        if open_total > 0:
            lengths = [cap if c else w * rest / open_total for w, c, cap in zip(weights, closure, capped, strict=True)]
    out: list[Phoneme] = []
    position = float(start)
    lo = start
    for index, ((symbol, _), length) in enumerate(zip(pronunciation, lengths, strict=True)):
        position += length
        hi = end if index == len(lengths) - 1 else min(end, max(lo, round(position)))
        if hi > lo:
            out.append(Phoneme(symbol, lo, hi, alphabet))
        lo = hi
    return out


def align_words(
    words: Iterable[Word], pronounce: Callable[[str], Pronunciation], rate: int, alphabet: str = "espeak"
) -> list[Phoneme]:
    """Phonemes for ``words`` (in order, non-overlapping spans), each fitted by :func:`fit_word` with
    ``pronounce(word.text)``. Pure when ``pronounce`` is."""
    out: list[Phoneme] = []
    for word in words:
        out.extend(fit_word(pronounce(word.text), word.start, word.end, rate, alphabet))
    return out


class CharacterWords:
    """Groups a stream of character timings into words (sans-I/O: feed characters, pull finished words).

    :meth:`feed` takes characters with their start and end sample positions (from the start of the
    utterance) and returns the words that are now complete: a word ends at the first whitespace after it.
    :meth:`finish` returns the last one. Edge punctuation is trimmed from a word's text and span; a "word" of
    punctuation only is dropped. :attr:`open_start` is the start of the word still being read (None if none).
    """

    def __init__(self) -> None:
        self._chars: list[tuple[str, int, int]] = []

    @property
    def open_start(self) -> int | None:
        spoken = [c for c in self._chars if c[0] not in _EDGE_PUNCTUATION]
        if spoken:
            return spoken[0][1]
        return self._chars[0][1] if self._chars else None

    def feed(self, chars: Sequence[str], starts: Sequence[int], ends: Sequence[int]) -> list[Word]:
        out: list[Word] = []
        for char, start, end in zip(chars, starts, ends, strict=True):
            if char.isspace() or not char:
                word = self._close()
                if word is not None:
                    out.append(word)
            else:
                self._chars.append((char, start, max(start, end)))
        return out

    def finish(self) -> list[Word]:
        word = self._close()
        return [word] if word is not None else []

    def _close(self) -> Word | None:
        chars, self._chars = self._chars, []
        lo, hi = 0, len(chars)
        while lo < hi and chars[lo][0] in _EDGE_PUNCTUATION:
            lo += 1
        while hi > lo and chars[hi - 1][0] in _EDGE_PUNCTUATION:
            hi -= 1
        if lo >= hi:
            return None
        kept = chars[lo:hi]
        return Word("".join(c for c, _, _ in kept), kept[0][1], max(kept[-1][2], kept[0][1]))


class EspeakG2P:
    """Words to :data:`Pronunciation` by espeak-ng (module docstring, step 1), cached per word.

    ``voice`` is an espeak-ng voice (``en-us``, ``en-gb``, ``de``...; :class:`InputError` if unknown).
    Raises :class:`~facecast.errors.ConfigError` when libespeak-ng cannot be loaded.
    """

    def __init__(self, voice: str = "en-us", cache_size: int = 4096) -> None:
        from .espeak import EspeakTTS

        self._tts = EspeakTTS(voice, end_pause=False)
        self._rate = self._tts.sample_rate
        self._cache: OrderedDict[str, Pronunciation] = OrderedDict()
        self._size = cache_size

    @property
    def voice(self) -> str:
        return self._tts.voice

    @staticmethod
    def clean(word: str) -> str:
        """The part of ``word`` espeak-ng should say: NFC, edge punctuation removed ("" if nothing is left)."""
        text = unicodedata.normalize("NFC", word).strip().strip(_EDGE_PUNCTUATION)
        return text if any(ch.isalnum() for ch in text) else ""

    async def pronounce(self, word: str) -> Pronunciation:
        """``word``'s phonemes and espeak-ng durations (empty for a word with nothing to say)."""
        key = self.clean(word).lower()
        if not key:
            return ()
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found
        async with closing(self._tts.synthesize(key)) as stream:  # the library queues concurrent requests itself
            chunks = [c async for c in stream]
        raw = [(p.symbol, (p.end - p.start) / self._rate) for c in chunks for p in c.phonemes]
        result = _pronunciation(raw)
        self._cache[key] = result
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return result


def _pronunciation(raw: Sequence[tuple[str, float]]) -> Pronunciation:
    """espeak-ng's phonemes of one word with pauses removed; a pause right before a plosive is its closure."""
    out: list[tuple[str, float]] = []
    held = 0.0
    for symbol, seconds in raw:
        if symbol.startswith("_"):
            held += seconds
            continue
        if held and _base(symbol) in _PLOSIVES:
            seconds += held
        held = 0.0
        out.append((symbol, seconds))
    return tuple(out)


class WordTimedTTS:
    """A TTS with phoneme timing (alphabet ``espeak``) derived from the words of ``inner`` (module docstring).

    Implements :class:`~facecast.roles.TextToSpeech` at ``inner``'s rate. ``g2p`` defaults to
    :class:`EspeakG2P` for ``en-us`` (made at the first request). Other attributes (``warm_up``, ``probe``,
    ``voices``, ``options``...) are the inner TTS's.
    """

    def __init__(self, inner: TextToSpeech, g2p: EspeakG2P | None = None, *, voice: str = "en-us") -> None:
        self._inner = inner
        self._g2p = g2p
        self._voice = voice

    @property
    def inner(self) -> TextToSpeech:
        return self._inner

    @property
    def sample_rate(self) -> int:
        return self._inner.sample_rate

    def __repr__(self) -> str:
        return f"WordTimedTTS({self._inner!r})"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    async def warm_up(self) -> None:
        """Start espeak-ng for the phonemes now, and warm up the inner TTS if it can."""
        await self.g2p().pronounce("hello")
        inner = getattr(self._inner, "warm_up", None)
        if inner is not None:
            await inner()

    def g2p(self) -> EspeakG2P:
        """The grapheme-to-phoneme converter (made now if it was not given)."""
        if self._g2p is None:
            self._g2p = EspeakG2P(self._voice)
        return self._g2p

    async def synthesize(self, text: str) -> AsyncGenerator[SpeechChunk, None]:
        """``inner.synthesize(text)`` with ``phonemes`` from its ``words``; raises what ``inner`` raises."""
        g2p = self.g2p()
        rate = self._inner.sample_rate
        pending: list[Phoneme] = []
        # While the inner TTS works on its first audio, the text's words are looked up ahead (a cloud voice takes
        # 100s of ms to answer, espeak-ng ~1 ms a word), so the words it then reports are mostly in the cache.
        ahead = asyncio.ensure_future(_look_ahead(g2p, text))
        try:
            async with closing(self._inner.synthesize(text)) as stream:
                async for chunk in stream:
                    for word in chunk.words:
                        pending.extend(fit_word(await g2p.pronounce(word.text), word.start, word.end, rate))
                    end = chunk.audio.end
                    cut = 0
                    while cut < len(pending) and pending[cut].start < end:
                        cut += 1
                    now, pending = pending[:cut], pending[cut:]
                    yield SpeechChunk(chunk.audio, tuple(now), chunk.words)
        finally:
            ahead.cancel()
            await asyncio.gather(ahead, return_exceptions=True)


async def _look_ahead(g2p: EspeakG2P, text: object) -> None:
    """Pronounce the words of ``text`` into ``g2p``'s cache (errors are the inner TTS's to report)."""
    if isinstance(text, str) and len(text) <= 20_000:
        for token in text.split():
            await g2p.pronounce(token)
