"""Viseme lookup for the ``ipa`` (Piper/espeak-ng IPA) and ``misaki`` (hibari) alphabets."""

from __future__ import annotations

import asyncio

import pytest

from facecast.face.phonesets import IPA_VISEMES, MISAKI_VISEMES, lookup_symbol
from facecast.face.visemes import VISEMES, lookup

TEXT = (
    "The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore! Who knew? "
    "Father saw a car in the yard, near the church and the bridge. I'd rather measure the pleasure of "
    "thinking about those youths: judge George joined the choir. Ah, oil, boil, toy, cow, how, our, hour, "
    "fire, tired, cure, pure, poor, tour, air, there, bear, ear, here, year, sure, nurse, bird, word, heard, "
    "butter, water, little, bottle, button, kitten, singing, finger, anger, vision, genre, loch, huge, "
    "Wednesday, February 3rd, 2024 at 7:30 pm, $9.99, 1,250 people, Dr. Smith's café, naïve résumé, "
    'Oh no! Wait... really? Yes - maybe; (perhaps) "quoted" words.'
)


# en-us espeak-ng prints its "0" (lot, ah) and "A:" (father, aa) both as "ɑː": IPA cannot tell them apart.
_SAME_IPA = {"0"}


@pytest.mark.parametrize(
    ("symbol", "alphabet", "visemes"),
    [
        ("p", "misaki", ("PP",)), ("ð", "misaki", ("TH",)), ("ʤ", "misaki", ("CH",)), ("ɹ", "misaki", ("RR",)),
        ("A", "misaki", ("E", "ih")), ("I", "misaki", ("aa", "ih")), ("W", "misaki", ("aa", "ou")),
        ("Y", "misaki", ("oh", "ih")), ("O", "misaki", ("oh", "ou")), ("Q", "misaki", ("ax", "ou")),
        ("i", "misaki", ("iy",)), ("u", "misaki", ("ou",)), ("T", "misaki", ("DD",)), ("ᵊ", "misaki", ("ax",)),
        ("ˈɑ", "misaki", ("aa",)), (",", "misaki", ("sil",)), ("_", "misaki", ("sil",)), (" ", "ipa", ("sil",)),
        ("aɪ", "ipa", ("aa", "ih")), ("ˈoʊ", "ipa", ("oh", "ou")), ("iː", "ipa", ("iy",)), ("i", "ipa", ("ih",)),
        ("ɑːɹ", "ipa", ("aa", "er")), ("əl", "ipa", ("ax", "nn")), ("ɚ", "ipa", ("er",)), ("ɝ", "ipa", ("er",)),
        ("t͡ʃ", "ipa", ("CH",)), ("n̩", "ipa", ("nn",)), ("ɔɪɚ", "ipa", ("oh", "ih", "er")), ("?", "ipa", ("sil",)),
    ],
)  # fmt: skip
def test_symbols(symbol: str, alphabet: str, visemes: tuple[str, ...]) -> None:
    assert lookup(symbol, alphabet).visemes == visemes
    assert lookup(symbol, alphabet).known


def test_unknown_symbols_and_alphabets() -> None:
    assert not lookup_symbol("☃", "ipa").known and lookup_symbol("☃", "ipa").visemes == ("unk",)
    assert not lookup_symbol("p", "klingon").known


def test_every_viseme_is_a_viseme() -> None:
    for table in (IPA_VISEMES, MISAKI_VISEMES):
        assert all(v in VISEMES for visemes in table.values() for v in visemes)


def test_ipa_mirrors_the_espeak_table() -> None:
    """The IPA espeak-ng prints for each of its phonemes gets the visemes of that phoneme's mnemonic."""
    piper = pytest.importorskip("facecast.tts.piper")
    phonemizer = piper._Phonemizer("en-us")
    mnemonic = piper._Phonemizer("en-us")
    mnemonic._mode = ord("|") << 8  # mnemonics, same separator
    checked = 0
    for ipa_clause, espeak_clause in zip(phonemizer.clauses(TEXT), mnemonic.clauses(TEXT), strict=True):
        for ipa_word, espeak_word in zip(ipa_clause.phonemes.split(), espeak_clause.phonemes.split(), strict=True):
            pairs = list(zip(ipa_word.split("|"), espeak_word.split("|"), strict=True))
            for ipa, espeak in pairs:
                if not ipa or espeak.startswith("_") or espeak.strip("',") in _SAME_IPA:  # ";" prints as nothing
                    continue
                # r-coloured mnemonics (A@, O@) print as the vowel followed by a separate ɹ: a prefix then
                ours, theirs = lookup(ipa, "ipa").visemes, lookup(espeak).visemes
                assert theirs[: len(ours)] == ours, (ipa, espeak)
                checked += 1
    assert checked > 300


async def test_every_symbol_either_voice_says_is_known() -> None:
    seen: dict[str, set[str]] = {"ipa": set(), "misaki": set()}
    voices = []
    if pytest.importorskip("hibari"):
        from facecast.tts.hibari import HibariTTS

        voices.append(HibariTTS())
    from facecast.tts.piper import PiperTTS

    voices.append(PiperTTS())
    for tts in voices:
        async for chunk in tts.synthesize(TEXT):
            for p in chunk.phonemes:
                seen[p.alphabet].add(p.symbol)
    await asyncio.sleep(0)
    for alphabet, symbols in seen.items():
        assert len(symbols) > 30
        unknown = sorted(s for s in symbols if not lookup(s, alphabet).known or "unk" in lookup(s, alphabet).visemes)
        assert unknown == [], alphabet
