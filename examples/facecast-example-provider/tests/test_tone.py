"""The example provider passes Facecast's role-conformance suite, and drives the phonetic face exactly."""

from __future__ import annotations

import numpy as np
import pytest
from facecast_example_provider import ToneOptions, ToneTTS

from facecast.errors import InputError
from facecast.face.arkit import INDEX
from facecast.face.phonetic import PhoneticAnimator
from facecast.testing import check_face, check_tts

SENTENCE = "Bob bought maps. Maybe buy more?"


async def test_conforms_to_the_tts_contract() -> None:
    result = await check_tts(ToneTTS(), SENTENCE)
    phonemes = [p for c in result.chunks for p in c.phonemes]
    assert phonemes[0].start == 0 and phonemes[-1].end == result.chunks[-1].audio.end  # they tile the audio
    assert [w.text for c in result.chunks for w in c.words] == ["Bob", "bought", "maps", "Maybe", "buy", "more"]


async def test_the_phonetic_face_closes_the_lips_on_each_bilabial() -> None:
    tts = ToneTTS()
    result = await check_tts(tts, SENTENCE)
    frames = await check_face(PhoneticAnimator(), result.chunks)
    close = INDEX["MouthClose"]
    bilabials = [p for c in result.chunks for p in c.phonemes if p.symbol in "bpm"]
    assert len(bilabials) == 9
    for p in bilabials:
        middle = round((p.start + p.end) / 2 * 60 / tts.sample_rate)
        assert frames[middle, close] > 0.3, p


async def test_it_makes_sound_where_the_vowels_are() -> None:
    result = await check_tts(ToneTTS(ToneOptions(rate=24000)), "ah")
    pcm = np.concatenate([c.audio.pcm for c in result.chunks])
    vowel = next(p for c in result.chunks for p in c.phonemes if p.symbol == "æ")
    assert np.abs(pcm[vowel.start : vowel.end]).max() > 0.1 and result.rate == 24000


async def test_bad_input_is_refused() -> None:
    with pytest.raises(InputError):
        [c async for c in ToneTTS().synthesize("...")]
    with pytest.raises(InputError, match="pitch_hz"):
        ToneOptions(pitch_hz=5.0)
