"""Phoneme timing from word timing (facecast.tts.aligned): the pure fit, character grouping, espeak-ng G2P, and the
phonetic face closing the lips on Piper's own p/b/m when it only gets Piper's words.

Closure criterion (as tests/face/test_phonetic.py): a frame shows sealed lips when MouthClose >= 0.5, JawOpen <=
0.12 and MouthClose - JawOpen >= 0.35. "Within one frame" of a provider's bilabial: one of the three frames
around the bilabial's middle (its middle frame, the one before, the one after) is sealed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from facecast.face.arkit import INDEX
from facecast.face.phonetic import PhoneticAnimator
from facecast.testing import check_tts
from facecast.tts.aligned import (
    CLOSURES,
    MAX_CLOSURE_STRETCH,
    CharacterWords,
    EspeakG2P,
    WordTimedTTS,
    align_words,
    fit_word,
)
from facecast.tts.piper import PiperTTS
from facecast.types import FPS, Phoneme, SpeechChunk, Word

JAW, CLOSE = INDEX["JawOpen"], INDEX["MouthClose"]
RATE = 22050
BILABIAL_TEXT = "Maybe my mom made a big map of Bob's pub. Peter brought maple bread, plum jam and bumpy lemons home."

symbols = st.sampled_from(["p", "b", "m", "a", "eI", "i:", "s", "t", "V", "l", "f", "D"])
pronunciations = st.lists(st.tuples(symbols, st.floats(0.0, 0.3)), min_size=1, max_size=12).map(tuple)


def sealed(frame: np.ndarray) -> bool:
    return bool(frame[CLOSE] >= 0.5 and frame[JAW] <= 0.12 and frame[CLOSE] - frame[JAW] >= 0.35)


def closes_near(frames: np.ndarray, phoneme: Phoneme, rate: int) -> bool:
    middle = round((phoneme.start + phoneme.end) / 2 * FPS / rate)
    return any(sealed(frames[i]) for i in range(middle - 1, middle + 2) if 0 <= i < len(frames))


@given(pronunciations, st.integers(0, 10**6), st.integers(0, 40000))
def test_fit_tiles_the_word_span_in_order(pronunciation: tuple[tuple[str, float], ...], start: int, span: int) -> None:
    phonemes = fit_word(pronunciation, start, start + span, RATE)
    if span == 0:
        assert phonemes == []
        return
    assert phonemes, "a non-empty span gets phonemes"
    assert phonemes[0].start == start and phonemes[-1].end == start + span
    assert all(p.start < p.end for p in phonemes)
    assert all(a.end == b.start for a, b in zip(phonemes, phonemes[1:], strict=False))  # ordered, no overlap
    remaining = iter(s for s, _ in pronunciation)
    assert all(any(p.symbol == s for s in remaining) for p in phonemes)  # in order; only zero-length ones dropped
    assert {p.alphabet for p in phonemes} == {"espeak"}


@given(pronunciations, st.floats(1.5, 6.0))
def test_closures_stay_short_in_a_long_span(pronunciation: tuple[tuple[str, float], ...], stretch: float) -> None:
    durations = [max(d, 0.01) for _, d in pronunciation]
    pron = tuple((s, d) for (s, _), d in zip(pronunciation, durations, strict=True))
    natural = sum(durations) * RATE
    phonemes = fit_word(pron, 0, round(natural * stretch), RATE)
    has_open = any(s not in CLOSURES for s, _ in pron)
    if not has_open or len(phonemes) != len(pron):
        return
    for p, (symbol, seconds) in zip(phonemes, pron, strict=True):
        if symbol in CLOSURES:
            assert p.end - p.start <= seconds * RATE * MAX_CLOSURE_STRETCH + 1, (p, seconds)


def test_a_short_span_shrinks_everything_in_proportion() -> None:
    phonemes = fit_word((("m", 0.1), ("a", 0.2), ("p", 0.1)), 1000, 1000 + 2205, RATE)  # half the natural 0.4 s
    assert [p.end - p.start for p in phonemes] == [551, 1103, 551]


def test_align_words_fits_each_word_with_its_pronunciation() -> None:
    table = {"map": (("m", 0.1), ("a", 0.2), ("p", 0.1)), "a": (("@", 0.1),)}
    words = [Word("map", 0, 8820), Word("a", 9000, 10000)]
    phonemes = align_words(words, lambda w: table[w], RATE)
    assert [p.symbol for p in phonemes] == ["m", "a", "p", "@"]
    assert phonemes[2].end == 8820 and phonemes[3].start == 9000


def test_characters_become_words_across_messages() -> None:
    grouper = CharacterWords()
    chars = list('"Hi, Bob')
    assert grouper.feed(chars, list(range(0, 80, 10)), list(range(10, 90, 10))) == [Word("Hi", 10, 30)]
    assert grouper.open_start == 50  # "Bob" is still being read
    assert grouper.feed(list("'s pub."), [80, 90, 100, 110, 120, 130, 140], [90, 100, 110, 120, 130, 140, 150]) == [
        Word("Bob's", 50, 100)
    ]
    assert grouper.finish() == [Word("pub", 110, 140)]  # the full stop is not spoken
    assert grouper.finish() == [] and grouper.open_start is None
    assert CharacterWords().feed(list("— ok"), [0, 1, 2, 3], [1, 2, 3, 4]) == []  # a dash alone is no word


async def test_espeak_g2p_gives_phonemes_durations_and_plosive_closures() -> None:
    g2p = EspeakG2P()
    maybe = await g2p.pronounce("Maybe")
    assert [s for s, _ in maybe] == ["m", "eI", "b", "i:"]
    assert all(0.02 < d < 0.3 for _, d in maybe)
    pub = await g2p.pronounce("pub.")
    assert pub[0][0] == "p" and pub[0][1] > 0.04  # the silent closure before the burst belongs to the p
    assert await g2p.pronounce("—") == () and await g2p.pronounce("Pub") is pub  # cached, case-blind
    twelve = [s for s, _ in await g2p.pronounce("12")]
    assert twelve[:2] == ["t", "w"]  # numbers are said as words


class _WordsOnly:
    """Replays recorded speech with its phonemes removed (a TTS that reports words only)."""

    def __init__(self, chunks: list[SpeechChunk], rate: int = RATE) -> None:
        self.chunks = chunks
        self.sample_rate = rate

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        from facecast.tts.neural import clean_text

        clean_text(text, 1000)
        for chunk in self.chunks:
            yield SpeechChunk(chunk.audio, (), chunk.words)


@pytest.fixture(scope="module")
def piper_speech() -> list[SpeechChunk]:
    import asyncio

    async def run() -> list[SpeechChunk]:
        return [c async for c in PiperTTS().synthesize(BILABIAL_TEXT)]

    return asyncio.run(run())


async def test_lips_close_on_every_piper_bilabial_from_piper_words_alone(piper_speech: list[SpeechChunk]) -> None:
    truth = [p for c in piper_speech for p in c.phonemes if p.symbol in ("p", "b", "m")]
    assert len(truth) >= 20
    total = piper_speech[-1].audio.end
    derived = [c async for c in WordTimedTTS(_WordsOnly(piper_speech)).synthesize(BILABIAL_TEXT)]
    phonemes = [p for c in derived for p in c.phonemes]
    assert {p.alphabet for p in phonemes} == {"espeak"}
    frames = PhoneticAnimator().render(phonemes, total, RATE)
    missed = [p for p in truth if not closes_near(frames, p, RATE)]
    assert not missed, missed
    # the criterion can fail: the same phonemes spread evenly over the whole sentence (ignoring the word spans)
    # miss closures, and words with no phonemes at all close nothing
    step = total / len(phonemes)
    spread = [Phoneme(p.symbol, round(i * step), round((i + 1) * step)) for i, p in enumerate(phonemes)]
    naive = PhoneticAnimator().render(spread, total, RATE)
    assert sum(not closes_near(naive, p, RATE) for p in truth) >= 5
    silent = PhoneticAnimator().render([], total, RATE)
    assert not any(closes_near(silent, p, RATE) for p in truth)


async def test_the_wrapper_keeps_the_chunk_contract(piper_speech: list[SpeechChunk]) -> None:
    result = await check_tts(WordTimedTTS(_WordsOnly(piper_speech)), BILABIAL_TEXT)
    assert [len(c.audio.pcm) for c in result.chunks] == [len(c.audio.pcm) for c in piper_speech]
    words = [w for c in result.chunks for w in c.words]
    assert [w.text for w in words][:4] == ["Maybe", "my", "mom", "made"]
    # a word that crosses a chunk boundary puts its later phonemes in the next chunk
    crossing = [(i, c) for i, c in enumerate(result.chunks) if any(w.end > c.audio.end for w in c.words)]
    assert crossing
    index, chunk = crossing[0]
    word = next(w for w in chunk.words if w.end > chunk.audio.end)
    later = [p for p in result.chunks[index + 1].phonemes if word.start <= p.start < word.end]
    assert later and all(p.start >= chunk.audio.end for p in later)


async def test_a_provider_declaring_words_is_wrapped_by_make_tts(piper_speech: list[SpeechChunk]) -> None:
    from facecast import registry
    from facecast.config import Settings
    from facecast.registry import Capabilities
    from facecast.services import _check_combination, make_tts

    registry.register("tts", "words-only-test", lambda req: _WordsOnly(piper_speech), caps=Capabilities(timing="words"))
    try:
        tts = make_tts("words-only-test")
        assert isinstance(tts, WordTimedTTS) and isinstance(tts.inner, _WordsOnly)
        chunks = [c async for c in tts.synthesize(BILABIAL_TEXT)]
        assert sum(len(c.phonemes) for c in chunks) > 50
        _check_combination(Settings(tts="words-only-test", face="phonetic"))  # the phonetic face accepts it
    finally:
        registry.unregister("tts", "words-only-test")
