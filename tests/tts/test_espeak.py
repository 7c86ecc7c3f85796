"""EspeakTTS against the real libespeak-ng from the espeakng-loader wheel."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from dataclasses import dataclass

import numpy as np
import pytest
from tests.conftest import LONG_TEXT

from facecast.errors import InputError
from facecast.roles import TextToSpeech
from facecast.tts import espeak
from facecast.tts.espeak import MAX_TEXT_CHARS, EspeakTTS, list_variants, list_voices
from facecast.types import Phoneme, SpeechChunk, Word

SENTENCE = "Maybe the big fat thing will go away soon."
# What espeak-ng 1.52 (the wheel's) says for SENTENCE, stress marks removed: the golden list the
# phoneme -> viseme table is written against. A change here means that table needs a look.
SENTENCE_PHONEMES = "m eI b i: D @2 b I g f a t T I N w I l g oU a# w eI s u: n _:".split()
VOWELS = {"eI", "i:", "I", "a", "A:", "u:", "oU", "@2", "E", "aI", "a#"}


@dataclass
class Speech:
    chunks: list[SpeechChunk]

    @property
    def pcm(self) -> np.ndarray:
        return np.concatenate([c.audio.pcm for c in self.chunks])

    @property
    def phonemes(self) -> list[Phoneme]:
        return [p for c in self.chunks for p in c.phonemes]

    @property
    def words(self) -> list[Word]:
        return [w for c in self.chunks for w in c.words]

    @property
    def symbols(self) -> list[str]:
        return [p.symbol for p in self.phonemes]


async def speak(tts: EspeakTTS, text: str) -> Speech:
    return Speech([chunk async for chunk in tts.synthesize(text)])


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64)))) if len(pcm) else 0.0


def envelope(pcm: np.ndarray, window: int = 441) -> np.ndarray:
    n = len(pcm) // window
    frames = pcm[: n * window].reshape(n, window).astype(np.float64)
    return np.asarray(np.sqrt(np.mean(frames * frames, axis=1)))


def median_f0(speech: Speech, rate: int) -> float:
    """Median fundamental frequency (autocorrelation) at the middle of the longer vowels."""
    estimates = []
    pcm = speech.pcm.astype(np.float64)
    for p in speech.phonemes:
        if p.symbol in VOWELS and p.end - p.start > rate * 0.06:
            mid = (p.start + p.end) // 2
            seg = pcm[mid - rate // 50 : mid + rate // 50]
            seg = seg - seg.mean()
            ac = np.correlate(seg, seg, "full")[len(seg) - 1 :]
            lo, hi = rate // 500, rate // 60
            estimates.append(rate / (lo + int(np.argmax(ac[lo:hi]))))
    assert estimates
    return float(np.median(estimates))


def assert_same_speech(a: Speech, b: Speech) -> None:
    """Same phonemes, words and sound. espeak-ng carries pitch-flutter state from one request to the
    next, so two runs of one text may differ by a few samples: compare within a few ms, not bit for bit.
    An interleaving bug (another request's audio, voice or rate) breaks every one of these."""
    assert a.symbols == b.symbols
    assert [w.text for w in a.words] == [w.text for w in b.words]
    assert abs(len(a.pcm) - len(b.pcm)) <= 0.01 * len(b.pcm)
    assert max(abs(x.start - y.start) for x, y in zip(a.phonemes, b.phonemes, strict=True)) <= 441
    ea, eb = envelope(a.pcm), envelope(b.pcm)
    n = min(len(ea), len(eb))
    assert np.corrcoef(ea[:n], eb[:n])[0, 1] > 0.9


# ------------------------------------------------------------------------------------- audio + timing


async def test_implements_the_role_and_speaks_at_22050() -> None:
    tts = EspeakTTS()
    assert isinstance(tts, TextToSpeech)
    assert tts.sample_rate == 22050
    speech = await speak(tts, SENTENCE)
    assert all(c.audio.rate == 22050 and c.audio.pcm.dtype == np.float32 for c in speech.chunks)
    assert 0.05 < np.abs(speech.pcm).max() <= 1.0
    assert 1.5 < len(speech.pcm) / 22050 < 4.0


async def test_chunks_are_contiguous_and_stream_in_pieces() -> None:
    speech = await speak(EspeakTTS(), SENTENCE)
    assert len(speech.chunks) > 10  # ~2.5 s of audio in ~60 ms pieces, not one block
    position = 0
    for chunk in speech.chunks:
        assert chunk.audio.offset == position
        assert len(chunk.audio.pcm) > 0
        position = chunk.audio.end
    for chunk in speech.chunks:  # timing travels with the chunk where it starts
        assert all(chunk.audio.offset <= p.start < chunk.audio.end for p in chunk.phonemes)
        assert all(chunk.audio.offset <= w.start < chunk.audio.end for w in chunk.words)


async def test_phonemes_are_espeaks_mnemonics_and_tile_the_audio() -> None:
    speech = await speak(EspeakTTS(), SENTENCE)
    assert speech.symbols == SENTENCE_PHONEMES
    phonemes = speech.phonemes
    assert phonemes[0].start == 0
    assert phonemes[-1].end == len(speech.pcm)
    for prev, nxt in itertools.pairwise(phonemes):
        assert prev.start < prev.end == nxt.start


async def test_offsets_restart_at_zero_for_each_call() -> None:
    tts = EspeakTTS()
    await speak(tts, SENTENCE)
    second = await speak(tts, "Hello there.")
    assert second.chunks[0].audio.offset == 0
    assert second.phonemes[0].start == 0


async def test_pauses_are_quiet_and_vowels_are_loud() -> None:
    # "hello" starts with a little silence: a "_" pause covers it; the end pause is silence too.
    speech = await speak(EspeakTTS(), "hello world")
    pcm = speech.pcm
    first, last = speech.phonemes[0], speech.phonemes[-1]
    assert first.symbol == "_" and first.end > 0
    assert last.symbol.startswith("_") and last.end - last.start > 22050 * 0.1
    vowels = [rms(pcm[p.start : p.end]) for p in speech.phonemes if p.symbol in {"oU", "3:"}]
    assert len(vowels) == 2
    assert rms(pcm[first.start : first.end]) < 0.01 * min(vowels)
    assert rms(pcm[last.start : last.end]) < 0.01 * min(vowels)


async def test_plosive_onsets_are_followed_by_a_burst() -> None:
    speech = await speak(EspeakTTS(), "pa pa pa")
    pcm = speech.pcm
    stops = [p for p in speech.phonemes if p.symbol == "p"]
    assert len(stops) == 3
    for p in stops:
        before = pcm[p.start - 441 : p.start]  # the 20 ms before the onset: the closure
        burst = pcm[p.start : p.start + 441]
        assert rms(before) < 0.002
        assert rms(burst) > 5 * max(rms(before), 1e-4)
        vowel = next(q for q in speech.phonemes if q.start == p.end)
        assert vowel.symbol == "A:"
        assert rms(pcm[vowel.start : vowel.end]) > 2 * rms(burst)


async def test_words_cover_the_text_in_order() -> None:
    speech = await speak(EspeakTTS(), SENTENCE)
    words = speech.words
    assert [w.text for w in words] == SENTENCE.rstrip(".").split()
    starts = {p.start for p in speech.phonemes}
    ends = {p.end for p in speech.phonemes}
    for prev, nxt in itertools.pairwise(words):
        assert prev.end <= nxt.start
    for word in words:
        assert word.start < word.end <= len(speech.pcm)
        assert word.start in starts and word.end in ends  # words align with phoneme boundaries
    big = next(w for w in words if w.text == "big")
    inside = [p.symbol for p in speech.phonemes if big.start <= p.start < big.end]
    assert inside == ["b", "I", "g"]


async def test_expanded_words_are_one_word_with_the_original_text() -> None:
    speech = await speak(EspeakTTS(), "I paid 123 dollars for 3.5 kilos of Café naïve.")
    assert [w.text for w in speech.words] == [
        "I", "paid", "123", "dollars", "for", "3.5", "kilos", "of", "Café", "naïve",
    ]  # fmt: skip
    number = speech.words[2]
    spoken = [p.symbol for p in speech.phonemes if number.start <= p.start < number.end]
    assert len(spoken) > 10  # "one hundred and twenty three"


async def test_control_characters_are_stripped_and_markup_is_plain_text() -> None:
    tts = EspeakTTS()
    speech = await speak(tts, "Hello\x00 wor\x07ld\nagain\tnow")
    assert [w.text for w in speech.words] == ["Hello", "world", "again", "now"]
    # Not SSML: the tag is read out as text, and there is no three-second break.
    tagged = await speak(tts, "<break time='3s'/> hi")
    assert "break" in [w.text for w in tagged.words]
    assert len(tagged.pcm) < 3 * 22050


# ------------------------------------------------------------------------------------- voice settings


async def test_a_variant_changes_the_voice() -> None:
    plain = await speak(EspeakTTS("en-gb"), SENTENCE)
    female = await speak(EspeakTTS("en-gb+f3"), SENTENCE)
    assert median_f0(female, 22050) > 1.5 * median_f0(plain, 22050)


async def test_pitch_raises_the_voice() -> None:
    low = await speak(EspeakTTS(pitch=10), SENTENCE)
    high = await speak(EspeakTTS(pitch=90), SENTENCE)
    assert median_f0(high, 22050) > 1.4 * median_f0(low, 22050)


async def test_a_higher_rate_gives_shorter_audio() -> None:
    normal = await speak(EspeakTTS(rate=175), SENTENCE)
    fast = await speak(EspeakTTS(rate=350), SENTENCE)
    assert fast.symbols == normal.symbols
    assert len(fast.pcm) < 0.7 * len(normal.pcm)


def test_voice_names_and_variants_are_listed_and_accepted() -> None:
    voices = list_voices()
    assert {"en-us", "en-gb", "en", "de", "fr-fr"} <= set(voices)
    assert {"f3", "m1", "klatt", "whisper"} <= set(list_variants())
    for name in ("EN-GB+F3", "gmw/en-US", "en-us+female3", "de"):
        assert EspeakTTS(name).voice == name


# --------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"voice": "klingon-but-wrong"}, "facecast voices --tts espeak"),
        ({"voice": ""}, "facecast voices --tts espeak"),
        ({"voice": "en-us+nonsense"}, "facecast voices --tts espeak"),
        ({"rate": 79}, "80 to 450"),
        ({"rate": 451}, "80 to 450"),
        ({"pitch": -1}, "0 to 100"),
        ({"pitch": 101}, "0 to 100"),
    ],
)
def test_bad_settings_are_refused_at_construction(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        EspeakTTS(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("  \n\t ", "empty"), ("\x00\x07", "empty"), ("a" * (MAX_TEXT_CHARS + 1), "20000")],
)
async def test_unusable_text_is_refused(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        await speak(EspeakTTS(), text)


async def test_text_at_the_limit_is_accepted() -> None:
    agen = EspeakTTS().synthesize("a" * MAX_TEXT_CHARS)
    chunk = await agen.__anext__()
    await agen.aclose()
    assert len(chunk.audio.pcm) > 0


# -------------------------------------------------------------------------------------- concurrency


TEXTS = [
    ("en-us", 175, 50, SENTENCE),
    ("en-gb+f3", 250, 50, "The quick brown fox jumps over the lazy dog."),
    ("en-us+klatt", 175, 80, "How are you doing today, my friend?"),
    ("de", 120, 50, "Guten Morgen, wie geht es dir?"),
]


async def test_concurrent_tasks_get_the_same_speech_as_sequential_calls() -> None:
    engines = [EspeakTTS(voice, rate, pitch) for voice, rate, pitch, _ in TEXTS]
    sequential = [await speak(tts, text) for tts, (*_, text) in zip(engines, TEXTS, strict=True)]
    concurrent = await asyncio.gather(*(speak(engines[i % 4], TEXTS[i % 4][3]) for i in range(12)))
    for index, speech in enumerate(concurrent):
        assert_same_speech(speech, sequential[index % len(TEXTS)])
    workers = [t for t in threading.enumerate() if t.name.startswith("facecast-espeak")]
    assert len(workers) == 1


def test_concurrent_threads_get_the_same_speech_as_sequential_calls() -> None:
    engines = [EspeakTTS(voice, rate, pitch) for voice, rate, pitch, _ in TEXTS]
    sequential = [asyncio.run(speak(tts, text)) for tts, (*_, text) in zip(engines, TEXTS, strict=True)]
    results: dict[int, Speech] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(index: int) -> None:
        try:
            barrier.wait()
            results[index] = asyncio.run(speak(engines[index % 4], TEXTS[index % 4][3]))
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for index, speech in results.items():
        assert_same_speech(speech, sequential[index % 4])


# ------------------------------------------------------------------------------------- cancellation


@pytest.mark.usefixtures("hold_worker_until_aborted")
async def test_aclose_stops_the_synthesis() -> None:
    tts = EspeakTTS()
    engine = espeak._engine()
    agen = tts.synthesize(LONG_TEXT)
    first = await agen.__anext__()
    assert first.audio.offset == 0
    await agen.aclose()
    job = engine.last_job
    assert job is not None and job.text == LONG_TEXT
    assert job.aborted and engine.current is None
    assert job.assembler.total < 22050 * 2  # stopped within a couple of buffers, of ~4 minutes
    # The library is left in a clean state: the next request is complete and correct.
    assert (await speak(tts, SENTENCE)).symbols == SENTENCE_PHONEMES


@pytest.mark.usefixtures("hold_worker_until_aborted")
async def test_cancelling_a_consumer_waiting_for_audio_stops_the_synthesis() -> None:
    tts = EspeakTTS()
    engine = espeak._engine()
    got_one = asyncio.Event()

    async def consume() -> None:
        async for _ in tts.synthesize(LONG_TEXT):
            got_one.set()  # then waits inside the iterator: the worker is held mid-synthesis

    task = asyncio.create_task(consume())
    await got_one.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    job = engine.last_job
    assert job is not None and job.text == LONG_TEXT
    assert job.aborted and engine.current is None
    assert job.assembler.total < 22050 * 2
    assert (await speak(tts, SENTENCE)).symbols == SENTENCE_PHONEMES


@pytest.mark.usefixtures("hold_worker_until_aborted")
async def test_cancelling_a_busy_consumer_that_uses_aclosing_stops_the_synthesis() -> None:
    tts = EspeakTTS()
    engine = espeak._engine()
    got_one = asyncio.Event()

    async def consume() -> None:
        async with contextlib.aclosing(tts.synthesize(LONG_TEXT)) as speech:
            async for _ in speech:
                got_one.set()
                await asyncio.Event().wait()  # busy with the chunk (e.g. waiting for playback)

    task = asyncio.create_task(consume())
    await got_one.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    job = engine.last_job
    assert job is not None and job.text == LONG_TEXT
    assert job.aborted and engine.current is None
    assert job.assembler.total < 22050 * 2


async def test_a_request_closed_while_queued_never_runs() -> None:
    tts = EspeakTTS()
    engine = espeak._engine()
    started, gate = threading.Event(), threading.Event()

    def block() -> None:
        started.set()
        gate.wait(10)

    blocker = engine._executor.submit(block)
    started.wait(10)
    before = engine.jobs_run
    agen = tts.synthesize(SENTENCE)

    async def first() -> SpeechChunk:
        return await agen.__anext__()

    task = asyncio.create_task(first())
    await asyncio.sleep(0)  # the task runs its first step: the request is queued behind the blocker
    assert engine._executor._work_queue.qsize() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    blocker.result()
    assert (await speak(tts, "Next one.")).words[0].text == "Next"
    assert engine.jobs_run == before + 1  # only "Next one." ran
