"""PiperTTS with the real ``heart`` voice from the hibari-tts wheel, and the face driven by it."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest
from tests.conftest import LONG_TEXT

from facecast.errors import InputError
from facecast.face.arkit import INDEX
from facecast.face.phonetic import PhoneticAnimator
from facecast.face.visemes import lookup
from facecast.roles import TextToSpeech
from facecast.tts import piper
from facecast.tts.piper import PiperOptions, PiperTTS
from facecast.types import Phoneme, SpeechChunk

JAW, CLOSE, PUCKER, ROLL_LOWER = INDEX["JawOpen"], INDEX["MouthClose"], INDEX["MouthPucker"], INDEX["MouthRollLower"]
RATE = 22050


async def speak(text: str, tts: PiperTTS | None = None) -> list[SpeechChunk]:
    return [chunk async for chunk in (tts or PiperTTS()).synthesize(text)]


def middle(phoneme: Phoneme) -> int:
    return round((phoneme.start + phoneme.end) / 2 * 60 / RATE)


def check_tiling(chunks: list[SpeechChunk]) -> list[Phoneme]:
    position = 0
    for chunk in chunks:
        assert chunk.audio.offset == position and chunk.audio.rate == RATE and chunk.audio.pcm.dtype == np.float32
        assert all(chunk.audio.offset <= p.start < chunk.audio.end for p in chunk.phonemes)
        assert all(chunk.audio.offset <= w.start < chunk.audio.end for w in chunk.words)
        position = chunk.audio.end
    phonemes = [p for c in chunks for p in c.phonemes]
    assert phonemes[0].start == 0 and phonemes[-1].end == position
    assert all(a.end == b.start and a.start < a.end for a, b in zip(phonemes, phonemes[1:], strict=False))
    assert {p.alphabet for p in phonemes} == {"ipa"}
    return phonemes


def test_implements_the_role() -> None:
    assert isinstance(PiperTTS(), TextToSpeech) and PiperTTS().sample_rate == RATE


async def test_timing_tiles_the_audio_over_sentences_and_words_follow() -> None:
    chunks = await speak("Hello there, how are you? I paid $5 for 12 apples. Peter brought maple bread!")
    phonemes = check_tiling(chunks)
    words = [w for c in chunks for w in c.words]
    assert [w.text for w in words][:5] == ["Hello", "there", "how", "are", "you"]
    assert all(a.end <= b.start for a, b in zip(words, words[1:], strict=False))
    assert sum(1 for p in phonemes if p.symbol in "?.!") >= 3
    assert all(lookup(p.symbol, "ipa").known for p in phonemes)
    # speech is where the vowels are: every long vowel has energy, the trimmed lead-in is short and quiet
    pcm = np.concatenate([c.audio.pcm for c in chunks])
    assert phonemes[0].symbol == "_"
    vowels = [p for p in phonemes if p.symbol in ("ɑː", "æ", "ɛ", "eɪ", "aɪ", "oʊ", "aʊ") and p.end - p.start >= 2200]
    energy = [float(np.sqrt(np.mean(pcm[p.start : p.end] ** 2))) for p in vowels]
    assert len(vowels) >= 5 and min(energy) > 0.01 and float(np.median(energy)) > 0.03


async def test_chunks_stream_sentence_by_sentence() -> None:
    chunks = await speak("One. Two. Three.")
    assert all(len(c.audio.pcm) <= RATE * 0.15 * 1.5 + 1 for c in chunks)
    assert len(chunks) >= 3
    assert piper.PiperTTS().sample_rate == chunks[0].audio.rate


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
async def test_empty_text_is_an_input_error(text: str) -> None:
    with pytest.raises(InputError):
        await speak(text)
    with pytest.raises(InputError):
        await speak("a" * (piper.MAX_TEXT_CHARS + 1))


def test_unknown_voice() -> None:
    with pytest.raises(InputError, match="joe"):
        PiperOptions(voice="en_US-lessac-medium")


async def test_closing_early_stops_the_synthesis() -> None:
    tts = PiperTTS()
    await tts.warm_up()
    before = piper._WORKER.jobs_run
    async with contextlib.aclosing(tts.synthesize(LONG_TEXT)) as speech:
        async for _ in speech:
            break
    assert piper._WORKER.jobs_run - before <= 2  # of 40 sentences: the first and the one prefetched
    await asyncio.sleep(0.05)
    assert piper._WORKER.jobs_run - before <= 2


async def test_cancelling_the_consumer_leaves_nothing_running() -> None:
    """A consumer busy between chunks (cancelled in its own ``sleep``, not inside the iterator) closes the stream
    with ``aclosing``, as the pipeline does: when the cancelled task has ended, no work remains. (Without it the
    stream would be closed later by the garbage collector's finaliser task, which a loaded machine may not have
    run yet when the test ends.)"""

    async def consume() -> None:
        async with contextlib.aclosing(PiperTTS().synthesize(LONG_TEXT)) as speech:
            async for _ in speech:
                await asyncio.sleep(0.01)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert piper._WORKER.executor._work_queue.qsize() == 0


# ------------------------------------------------------------------------------------ the face follows


async def face(text: str) -> tuple[np.ndarray, list[Phoneme]]:
    chunks = await speak(text)
    phonemes = check_tiling(chunks)
    return PhoneticAnimator().render(phonemes, chunks[-1].audio.end, RATE), phonemes


async def test_bilabials_close_the_lips() -> None:
    frames, phonemes = await face("Bob made a map. Peter brought maple bread.")
    bilabials = [p for p in phonemes if p.symbol in ("p", "b", "m")]
    assert len(bilabials) >= 8
    for p in bilabials:
        frame = frames[middle(p)]
        assert frame[CLOSE] >= 0.5 and frame[JAW] <= 0.12 and frame[CLOSE] - frame[JAW] >= 0.35, p


async def test_labiodentals_tuck_the_lower_lip() -> None:
    frames, phonemes = await face("Five of the very fine violins.")
    labiodentals = [p for p in phonemes if p.symbol in ("f", "v")]
    assert len(labiodentals) >= 4
    assert all(frames[middle(p), ROLL_LOWER] >= 0.4 for p in labiodentals)


async def test_rounded_vowels_pucker_and_open_vowels_open_the_jaw() -> None:
    frames, phonemes = await face("Who knew? Father saw a car.")
    rounded = [p for p in phonemes if p.symbol == "uː"]
    assert len(rounded) == 2 and all(frames[middle(p), PUCKER] >= 0.45 for p in rounded)
    open_ = [p for p in phonemes if p.symbol in ("ɑː", "ɔː", "ɑːɹ")]
    assert len(open_) >= 3 and all(frames[middle(p), JAW] >= 0.2 for p in open_)
    assert all(frames[middle(p), JAW] >= 0.35 for p in open_ if p.symbol.startswith("ɑ"))  # 60% of aa's 0.58
    closed = [p for p in phonemes if p.symbol in ("f", "k", "s")]
    assert max(frames[middle(p), JAW] for p in closed) < min(frames[middle(p), JAW] for p in open_)


def test_word_owners_splits_joined_words_and_expanded_numbers() -> None:
    # espeak-ng says "out of" as one word ("aʊɾəv"); each text word said alone: "aʊt", "ʌv"
    spoken = [["ɡ", "ˈɛ", "t"], ["ˌaʊ", "ɾ", "ə", "v"], ["h", "ˈɪɹ"]]
    alone = [["ɡ", "ɛ", "t"], ["ˈaʊ", "t"], ["ʌ", "v"], ["h", "ˈɪɹ"]]
    assert piper.word_owners(spoken, alone) == [[0, 0, 0], [1, 1, 2, 2], [3, 3]]
    # one text word said as several ("$5" -> "five dollars"): every group is that word's
    assert piper.word_owners(
        [["a"], ["f", "aɪ", "v"], ["d", "ɑː", "l", "ɚ", "z"]], [["a"], ["f", "aɪ", "v", "d", "ɑː", "l", "ɚ", "z"]]
    ) == [
        [0],
        [1, 1, 1],
        [1, 1, 1, 1, 1],
    ]
    # owners never go back to an earlier word, and texts that do not correspond get no words
    crossed = piper.word_owners([["b", "a"], ["a", "b"]], [["a", "b"], ["b", "a"]])
    assert crossed is not None
    flat = [o for group in crossed for o in group]
    assert flat == sorted(flat)
    assert piper.word_owners([["k", "æ", "t"]], [["d", "ɔ", "ɡ"]]) is None


async def test_every_word_has_timing_when_espeak_joins_or_expands_words() -> None:
    chunks = await speak("I'm going to get out of here and pay $5.")
    words = [w for c in chunks for w in c.words]
    assert [w.text for w in words] == ["I'm", "going", "to", "get", "out", "of", "here", "and", "pay", "$5"]
    assert all(w.start < w.end for w in words)
    assert all(a.end <= b.start for a, b in zip(words, words[1:], strict=False))
    phonemes = check_tiling(chunks)
    out, of = words[4], words[5]
    # "out" starts with its vowel and "of" ends with the v: each word's phonemes are its own
    first_of_out = next(p for p in phonemes if p.start == out.start)
    last_of_of = next(p for p in phonemes if p.end == of.end)
    assert first_of_out.symbol.startswith("a") and last_of_of.symbol == "v"
