"""The phonetic face animator: hand-made phoneme sequences and real espeak-ng speech.

Thresholds (weights of ARKit curves):
- lip closure: ARKit's MouthClose closes the lips against the jaw, so the lips are sealed where
  MouthClose >= JawOpen. A bilabial's middle frame must have MouthClose >= 0.5 (over 80% of the PP target,
  0.6) AND exceed JawOpen by at least 0.35 (a clear seal, not a tie), with JawOpen <= 0.12 (jaw nearly
  closed: under a fifth of an open vowel's 0.58).
- other gestures must reach at least ~65% of their viseme's target at the phoneme's middle frame.
"""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
from collections.abc import AsyncIterator, Iterable, Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facecast.errors import InputError
from facecast.face.arkit import INDEX
from facecast.face.phonetic import NEUTRAL_CHANNEL, PhoneticAnimator, PhoneticConfig
from facecast.face.visemes import PHONEME_VISEMES, lookup
from facecast.roles import FaceAnimator
from facecast.tts.espeak import EspeakTTS
from facecast.types import (
    AudioChunk,
    FaceFrames,
    Float32Array,
    Phoneme,
    SpeechChunk,
    frame_sample,
    frames_for_samples,
)

RATE = 22050
JAW, CLOSE, PUCKER, FUNNEL = INDEX["JawOpen"], INDEX["MouthClose"], INDEX["MouthPucker"], INDEX["MouthFunnel"]
ROLL_LOWER, TONGUE = INDEX["MouthRollLower"], INDEX["TongueOut"]
MOUTH = [i for i in range(52) if i != NEUTRAL_CHANNEL]
BILABIALS = {"p", "b", "m"}


# ------------------------------------------------------------------------------------------- helpers


def seq(*items: tuple[str, float], rate: int = RATE) -> tuple[list[Phoneme], int]:
    """Phonemes tiling the audio from ``(symbol, milliseconds)`` pairs, and the total samples."""
    out: list[Phoneme] = []
    position = 0
    for symbol, ms in items:
        end = position + round(ms * rate / 1000)
        out.append(Phoneme(symbol, position, end))
        position = end
    return out, position


def chunked(phonemes: Sequence[Phoneme], total: int, cuts: Iterable[int], rate: int = RATE) -> list[SpeechChunk]:
    """Speech of ``total`` silent samples cut at ``cuts``, each chunk with the phonemes starting in it."""
    edges = sorted({0, total, *(c for c in cuts if 0 < c < total)})
    chunks: list[SpeechChunk] = []
    for index, (lo, hi) in enumerate(zip(edges, edges[1:], strict=False)):
        last = index == len(edges) - 2
        inside = tuple(p for p in phonemes if lo <= p.start < hi or (last and p.start >= hi))
        chunks.append(SpeechChunk(AudioChunk(np.zeros(hi - lo, np.float32), rate, lo), inside))
    return chunks


async def stream(chunks: Iterable[SpeechChunk]) -> AsyncIterator[SpeechChunk]:
    for chunk in chunks:
        await asyncio.sleep(0)
        yield chunk


async def collect(animator: PhoneticAnimator, chunks: Iterable[SpeechChunk]) -> list[FaceFrames]:
    return [frames async for frames in animator.animate(stream(chunks))]


def joined(frames: Sequence[FaceFrames]) -> Float32Array:
    position = 0
    for piece in frames:
        assert piece.start == position and len(piece.values) > 0
        position = piece.end
    return np.concatenate([f.values for f in frames]) if frames else np.zeros((0, 68), np.float32)


def middle(phoneme: Phoneme, rate: int = RATE) -> int:
    """The frame nearest the middle of ``phoneme``."""
    return round((phoneme.start + phoneme.end) / 2 * 60 / rate)


async def speak(text: str, voice: str = "en-us") -> tuple[list[SpeechChunk], list[Phoneme], int]:
    chunks = [chunk async for chunk in EspeakTTS(voice).synthesize(text)]
    phonemes = [p for c in chunks for p in c.phonemes]
    return chunks, phonemes, chunks[-1].audio.end


def base(symbol: str) -> str:
    return symbol.strip("',")


# ------------------------------------------------------------------------------------ hand-made speech


def test_implements_the_face_animator_role() -> None:
    assert isinstance(PhoneticAnimator(), FaceAnimator)


@pytest.mark.parametrize("total", [0, 1, 367, 368, 369, 22050, 22051, 100_000])
async def test_frame_count_covers_the_audio(total: int) -> None:
    phonemes, _ = seq(("h", 30), ("aI", 200))
    animator = PhoneticAnimator()
    frames = joined(await collect(animator, chunked(phonemes, total, range(0, total, 1000))))
    expected = math.ceil(total * 60 / RATE)
    assert len(frames) == expected == frames_for_samples(total, RATE)
    assert animator.render(phonemes, total, RATE).shape == (expected, 68)


@pytest.mark.parametrize("rate", [16000, 22050, 24000, 44100, 48000])
def test_frames_follow_the_sample_clock_at_any_rate(rate: int) -> None:
    phonemes, total = seq(("_", 200), ("m", 60), ("a", 150), ("_", 200), rate=rate)
    frames = PhoneticAnimator().render(phonemes, total, rate)
    assert len(frames) == frames_for_samples(total, rate)
    closed = phonemes[1]
    assert frames[middle(closed, rate), CLOSE] >= 0.5
    # frame i belongs at sample round(i * rate / 60): the closure centre is within half a frame of it
    assert abs(frame_sample(middle(closed, rate), rate) - (closed.start + closed.end) / 2) <= rate / 120 + 1


@pytest.mark.parametrize("duration", [20, 30, 40, 60, 100])
@pytest.mark.parametrize("vowel", ["a", "A:", "aI", "u:", "i:", "E"])
def test_bilabials_close_the_lips_even_when_short(duration: float, vowel: str) -> None:
    phonemes, total = seq(("_", 100), (vowel, 150), ("b", duration), (vowel, 150), ("_", 100))
    frames = PhoneticAnimator().render(phonemes, total, RATE)
    frame = frames[middle(phonemes[2])]
    assert frame[CLOSE] >= 0.5
    assert frame[JAW] <= 0.12
    assert frame[CLOSE] - frame[JAW] >= 0.35


def test_lips_open_again_between_bilabials() -> None:
    phonemes, total = seq(("m", 70), ("'0", 110), ("m", 80), ("aI", 120), ("b", 60), ("i:", 100))
    frames = PhoneticAnimator().render(phonemes, total, RATE)
    for vowel in (phonemes[1], phonemes[3], phonemes[5]):
        assert frames[middle(vowel), CLOSE] < 0.1
    for vowel in (phonemes[1], phonemes[3]):  # open vowels: the jaw drops well below the closures
        assert frames[middle(vowel), JAW] > frames[middle(phonemes[2]), JAW] + 0.2


def test_labiodentals_tuck_the_lower_lip() -> None:
    phonemes, total = seq(("f", 80), ("aI", 160), ("v", 50), ("@", 80))
    frames = PhoneticAnimator().render(phonemes, total, RATE)
    for consonant in (phonemes[0], phonemes[2]):
        frame = frames[middle(consonant)]
        assert frame[ROLL_LOWER] >= 0.4 and frame[INDEX["MouthUpperUpLeft"]] >= 0.15 and frame[JAW] < 0.12
    assert frames[middle(phonemes[1]), ROLL_LOWER] < 0.1


def test_dentals_show_the_tongue() -> None:
    phonemes, total = seq(("T", 80), ("I", 90), ("N", 100), ("k", 60), ("_", 150), ("D", 45), ("@", 60))
    frames = PhoneticAnimator().render(phonemes, total, RATE)
    assert frames[middle(phonemes[0]), TONGUE] >= 0.35
    assert frames[middle(phonemes[5]), TONGUE] >= 0.35
    assert frames[middle(phonemes[2]), TONGUE] == 0.0  # far from any dental


def test_rounded_vowels_pucker_and_spread_vowels_do_not() -> None:
    phonemes, total = seq(("j", 60), ("u:", 150), ("_", 200), ("w", 80), ("u:", 150), ("_", 200), ("s", 90),
                          ("i:", 150), ("_", 200))  # fmt: skip
    frames = PhoneticAnimator().render(phonemes, total, RATE)
    for index in (1, 3, 4):
        assert frames[middle(phonemes[index]), PUCKER] >= 0.5
        assert frames[middle(phonemes[index]), FUNNEL] >= 0.2
    assert frames[middle(phonemes[7]), PUCKER] == 0.0


def test_consonants_anticipate_rounding() -> None:
    """The k of "coo" is rounded, the k of "key" is not: the lips take the vowel's shape early."""
    coo, total_coo = seq(("_", 200), ("k", 70), ("u:", 200))
    key, total_key = seq(("_", 200), ("k", 70), ("i:", 200))
    animator = PhoneticAnimator()
    rounded = animator.render(coo, total_coo, RATE)[middle(coo[1]), PUCKER]
    spread = animator.render(key, total_key, RATE)[middle(key[1]), PUCKER]
    assert rounded >= 0.3 and spread == 0.0


def test_jaw_opens_with_vowel_openness() -> None:
    animator = PhoneticAnimator()

    def jaw(vowel: str) -> float:
        phonemes, total = seq(("t", 70), (vowel, 140), ("t", 70))
        return float(animator.render(phonemes, total, RATE)[middle(phonemes[1]), JAW])

    assert jaw("a") > jaw("V") > jaw("E") > jaw("I") > jaw("i:")
    assert jaw("A:") >= 0.45 and jaw("i:") <= 0.15


def test_pauses_relax_to_rest_and_speech_edges_start_from_rest() -> None:
    phonemes, total = seq(("h", 60), ("a", 150), ("_:", 300), ("_", 20), ("b", 70), ("aI", 200))
    frames = PhoneticAnimator().render(phonemes, total + 12000, RATE)  # audio runs on past the phonemes
    assert np.all(frames[middle(phonemes[2]), MOUTH] <= 0.01)
    assert np.all(frames[-1, MOUTH] <= 0.01)  # silence after the last phoneme
    assert frames[middle(phonemes[1]), JAW] > 0.4  # and it was open before the pause


def test_no_phonemes_gives_rest_frames() -> None:
    frames = PhoneticAnimator().render([], 30000, RATE)
    assert len(frames) == frames_for_samples(30000, RATE)
    assert not frames[:, MOUTH].any() and np.all(frames[:, NEUTRAL_CHANNEL] == 1.0)


def test_motion_is_smooth_not_stepped() -> None:
    phonemes, total = seq(("_", 200), ("m", 80), ("a", 160), ("p", 80), ("a", 160), ("_", 200))
    frames = PhoneticAnimator().render(phonemes, total, RATE)
    jaw = frames[:, JAW]
    # The jaw rises over several frames (attack) and never jumps by more than 60% of its range per frame.
    assert np.max(np.abs(np.diff(jaw))) < 0.6 * (jaw.max() - jaw.min())
    # It starts moving before the first vowel starts (anticipation) and after the pause ends.
    assert 0.0 < jaw[middle(phonemes[1]) - 1] < jaw[middle(phonemes[2])]


@given(
    items=st.lists(
        st.tuples(
            st.sampled_from([*PHONEME_VISEMES, "_", "_:", "'a", ",eI", "@5", "?x", "", "ZZZ"]), st.floats(0, 400)
        ),  # fmt: skip
        max_size=25,
    ),
    extra=st.integers(-2000, 5000),
    intensity=st.floats(0, 2),
)
@settings(max_examples=60, deadline=None)
def test_values_are_bounded_for_any_phonemes(items: list[tuple[str, float]], extra: int, intensity: float) -> None:
    phonemes, total = seq(*items)
    total = max(0, total + extra)
    frames = PhoneticAnimator(PhoneticConfig(intensity=intensity)).render(phonemes, total, RATE)
    assert frames.shape == (frames_for_samples(total, RATE), 68) and frames.dtype == np.float32
    assert np.isfinite(frames).all()
    assert np.all((frames[:, :52] >= 0) & (frames[:, :52] <= 1))
    assert not frames[:, :14].any() and not frames[:, 41:51].any()  # eyes, brows, cheeks, nose
    assert not frames[:, 52:61].any()  # head and eye rotations
    emotions = np.delete(frames[:, 61:], NEUTRAL_CHANNEL - 61, axis=1)
    assert not emotions.any() and np.all(frames[:, NEUTRAL_CHANNEL] == 1.0)


def test_degenerate_phonemes_do_not_break_anything() -> None:
    phonemes = [Phoneme("b", 1000, 1000), Phoneme("a", 1000, 900), Phoneme("m", 5000, 5100),
                Phoneme("a", 4000, 8000), Phoneme("p", 40000, 41000)]  # fmt: skip
    frames = PhoneticAnimator().render(phonemes, 20000, RATE)
    assert len(frames) == frames_for_samples(20000, RATE) and np.isfinite(frames).all()
    assert frames[round(5050 * 60 / RATE), CLOSE] >= 0.5  # a 4.5 ms bilabial still closes


def test_config_is_validated_and_intensity_scales() -> None:
    for bad in ({"anticipation": -0.1}, {"plateau": 2.0}, {"rest_weight": 0.0}, {"intensity": 3.0}):
        with pytest.raises(InputError):
            PhoneticConfig(**bad)
    phonemes, total = seq(("a", 200))
    full = PhoneticAnimator().render(phonemes, total, RATE)
    half = PhoneticAnimator(PhoneticConfig(intensity=0.5)).render(phonemes, total, RATE)
    assert np.allclose(half[:, MOUTH], full[:, MOUTH] * 0.5, atol=1e-6)
    assert PhoneticAnimator(PhoneticConfig(anticipation=0.0)).lookahead < PhoneticAnimator().lookahead


async def test_unknown_symbols_are_collected_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    animator = PhoneticAnimator()
    phonemes, total = seq(("m", 60), ("qq", 100), ("a", 100), ("qq", 50), ("*", 50))
    with caplog.at_level(logging.WARNING, logger="facecast.face.phonetic"):
        frames = joined(await collect(animator, chunked(phonemes, total, [1000, 3000])))
    assert animator.unknown_symbols == {"qq", "*"}
    assert sum("'qq'" in r.getMessage() for r in caplog.records) == 1  # logged once
    assert np.isfinite(frames).all() and frames[middle(phonemes[0]), CLOSE] >= 0.5


async def test_streaming_waits_only_for_the_lookahead() -> None:
    """After each chunk, exactly the frames more than ``lookahead`` before the audio received are out."""
    animator = PhoneticAnimator()
    phonemes, total = seq(("_", 100), ("m", 60), ("aI", 180), ("b", 40), ("i:", 150), ("_", 300))
    chunks = chunked(phonemes, total, range(0, total, 700))
    emitted: list[int] = [0]
    checked: list[tuple[int, int]] = []

    async def source() -> AsyncIterator[SpeechChunk]:
        heard = 0
        for chunk in chunks:
            if heard:
                horizon = heard - animator.lookahead * RATE - 2
                expected = sum(1 for i in range(total) if frame_sample(i, RATE) < horizon)
                checked.append((emitted[0], expected))
            yield chunk
            heard = chunk.audio.end

    pieces: list[FaceFrames] = []
    async for piece in animator.animate(source()):
        pieces.append(piece)
        emitted[0] = piece.end
    assert checked and all(got == want for got, want in checked)
    assert len(joined(pieces)) == frames_for_samples(total, RATE)
    # the first frame came out once lookahead (+2 samples) of audio had arrived, not at the end
    assert animator.lookahead <= 0.1
    first_out = next(i for i, (got, _) in enumerate(checked) if got > 0)
    assert chunks[first_out].audio.end <= animator.lookahead * RATE + 700 + 2


def test_lookahead_bounds_the_influence_of_future_phonemes() -> None:
    animator = PhoneticAnimator()
    quiet, total = seq(("_", 600))
    speech, _ = seq(("_", 300), ("b", 30), ("u:", 270))
    a, b = animator.render(quiet, total, RATE), animator.render(speech, total, RATE)
    horizon = 300 * RATE / 1000 - animator.lookahead * RATE
    untouched = [i for i in range(len(a)) if frame_sample(i, RATE) < horizon]
    assert np.array_equal(a[untouched], b[untouched])
    assert not np.array_equal(a[untouched[-1] + 1 : middle(speech[1])], b[untouched[-1] + 1 : middle(speech[1])])


@given(cuts=st.lists(st.integers(0, 40000), max_size=30))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_streaming_equals_batch_for_any_chunking(cuts: list[int]) -> None:
    phonemes, total = seq(("_", 90), ("m", 45), ("'eI", 120), ("b", 40), ("i:", 100), ("_:", 250),
                          ("T", 70), ("aU", 180), ("z", 90), ("@5", 60), ("w", 70), ("u:", 160))  # fmt: skip
    animator = PhoneticAnimator()
    batch = animator.render(phonemes, total, RATE)
    streamed = joined(asyncio.run(collect(animator, chunked(phonemes, total, cuts))))
    assert np.array_equal(streamed, batch)  # bit-identical, not merely close


def test_long_utterances_stream_exactly_too() -> None:
    """Over a minute of speech: rendering in blocks and dropping finished segments changes nothing."""
    rng = np.random.default_rng(7)
    symbols = [s for s in PHONEME_VISEMES if len(s) <= 2] + ["_", "_:"]
    items = [(str(rng.choice(symbols)), float(rng.uniform(20, 250))) for _ in range(700)]
    phonemes, total = seq(*items)
    animator = PhoneticAnimator()
    batch = animator.render(phonemes, total, RATE)
    assert len(batch) > 3 * 600  # several render blocks
    cuts = np.cumsum(rng.integers(50, 3000, size=total // 1000)).tolist()
    streamed = joined(asyncio.run(collect(animator, chunked(phonemes, total, cuts))))
    assert np.array_equal(streamed, batch)


async def test_concurrent_utterances_do_not_interfere() -> None:
    animator = PhoneticAnimator()
    one, total_one = seq(("m", 80), ("a", 200), ("p", 60))
    two, total_two = seq(("w", 80), ("u:", 200), ("f", 60))
    first, second = await asyncio.gather(
        collect(animator, chunked(one, total_one, range(0, total_one, 500))),
        collect(animator, chunked(two, total_two, range(0, total_two, 300))),
    )
    assert np.array_equal(joined(first), animator.render(one, total_one, RATE))
    assert np.array_equal(joined(second), animator.render(two, total_two, RATE))


async def test_rate_changes_and_bad_rates_are_refused() -> None:
    animator = PhoneticAnimator()
    chunks = [SpeechChunk(AudioChunk(np.zeros(100, np.float32), RATE, 0)),
              SpeechChunk(AudioChunk(np.zeros(100, np.float32), 16000, 100))]  # fmt: skip
    with pytest.raises(InputError):
        await collect(animator, chunks)
    with pytest.raises(InputError):
        animator.render([], 100, 0)


async def test_empty_speech_gives_no_frames() -> None:
    assert await collect(PhoneticAnimator(), []) == []


async def test_closing_the_animation_closes_the_speech() -> None:
    phonemes, total = seq(("a", 2000))
    closed = asyncio.Event()

    async def speech() -> AsyncIterator[SpeechChunk]:
        try:
            for chunk in chunked(phonemes, total, range(0, total, 1000)):
                yield chunk
        finally:
            closed.set()

    frames = PhoneticAnimator().animate(speech())
    first = await anext(frames)
    assert first.start == 0
    await frames.aclose()
    assert closed.is_set()


# -------------------------------------------------------------------------------- real espeak-ng speech


async def test_espeak_bilabials_close_in_a_sentence_full_of_them() -> None:
    _, phonemes, total = await speak("Maybe my mom made a big map of Bob's pub.")
    frames = PhoneticAnimator().render(phonemes, total, RATE)
    bilabials = [p for p in phonemes if base(p.symbol) in BILABIALS]
    assert len(bilabials) >= 12
    for p in bilabials:
        frame = frames[middle(p)]
        assert frame[CLOSE] >= 0.5 and frame[JAW] <= 0.12 and frame[CLOSE] - frame[JAW] >= 0.35, p
    # ...and every vowel between them parts the lips again (it is speech, not a shut mouth): somewhere in
    # the vowel the jaw opens past the lip closure, by 0.1 for the open vowels, 0.05 for the mid ones and
    # 0.02 for the close ones (a short /i:/ between two closures, as in "maybe my", barely parts the lips;
    # espeak's timing of it varies by a few ms from one request to the next)
    vowels = [p for p in phonemes if lookup(p.symbol).visemes[0] in {"aa", "ah", "E", "ih", "iy", "ax"}]
    assert len(vowels) >= 10
    for p in vowels:
        inside = frames[math.ceil(p.start * 60 / RATE) : math.ceil(p.end * 60 / RATE)]
        gap = float((inside[:, JAW] - inside[:, CLOSE]).max())
        viseme = lookup(p.symbol).visemes[0]
        assert gap >= (0.1 if viseme in {"aa", "ah", "E"} else 0.02 if viseme in {"iy", "ih"} else 0.05), p


@pytest.mark.parametrize("voice", ["en-us", "en-gb"])
@pytest.mark.parametrize("words_per_minute", [100, 250, 450])
async def test_espeak_closures_hold_at_any_speaking_rate(voice: str, words_per_minute: int) -> None:
    """Lip closure, lip tuck and tongue are critical targets: reached however short the phoneme."""
    tts = EspeakTTS(voice, rate=words_per_minute)
    text = "Maybe my mom made a big map of Bob's pub. Five vivid fever dreams; think of this thing."
    chunks = [chunk async for chunk in tts.synthesize(text)]
    phonemes = [p for c in chunks for p in c.phonemes]
    frames = PhoneticAnimator().render(phonemes, chunks[-1].audio.end, RATE)
    for p in phonemes:
        frame = frames[min(middle(p), len(frames) - 1)]  # the final pause's middle may be the frame past the end
        if base(p.symbol) in BILABIALS:
            assert frame[CLOSE] >= 0.5 and frame[JAW] <= 0.12 and frame[CLOSE] - frame[JAW] >= 0.35, p
        elif base(p.symbol) in {"f", "v"}:
            assert frame[ROLL_LOWER] >= 0.4, p
        elif base(p.symbol) in {"T", "D"}:
            assert frame[TONGUE] >= 0.35, p


async def test_espeak_open_vowels_open_the_jaw_more_than_close_vowels() -> None:
    text = "Father had a hot cup of pasta. She sees the tea. The bed is red, Ted. I saw it is big."
    _, phonemes, total = await speak(text)
    frames = PhoneticAnimator().render(phonemes, total, RATE)
    groups: dict[str, list[float]] = {"open": [], "mid": [], "close": []}
    for p in phonemes:
        name = {"a": "open", "A:": "open", "V": "open", "0": "open", "aa": "open",
                "E": "mid", "e": "mid", "i:": "close", "I": "close", "i": "close"}.get(base(p.symbol))  # fmt: skip
        if name is not None and p.end - p.start >= 0.09 * RATE:  # long enough to be stressed
            groups[name].append(float(frames[middle(p), JAW]))
    assert all(len(values) >= 3 for values in groups.values()), groups
    means = {name: statistics.mean(values) for name, values in groups.items()}
    assert means["open"] > means["mid"] + 0.05 > means["close"] + 0.1
    assert min(groups["open"]) > max(groups["close"])


async def test_espeak_labiodentals_tuck_the_lower_lip() -> None:
    _, phonemes, total = await speak("Five vivid fever dreams of fluffy velvet.")
    frames = PhoneticAnimator().render(phonemes, total, RATE)
    labiodentals = [p for p in phonemes if base(p.symbol) in {"f", "v"}]
    assert len(labiodentals) >= 8
    for p in labiodentals:
        assert frames[middle(p), ROLL_LOWER] >= 0.4 and frames[middle(p), JAW] <= 0.15, p


async def test_espeak_dentals_show_the_tongue() -> None:
    _, phonemes, total = await speak("Think of this thing, then the other three.")
    frames = PhoneticAnimator().render(phonemes, total, RATE)
    dentals = [p for p in phonemes if base(p.symbol) in {"T", "D"}]
    assert len(dentals) >= 6
    for p in dentals:
        assert frames[middle(p), TONGUE] >= 0.35, p
    assert frames[:, TONGUE].max() <= 0.6


async def test_espeak_you_who_woo_pucker() -> None:
    _, phonemes, total = await speak("You. Who? Woo! See me.")
    frames = PhoneticAnimator().render(phonemes, total, RATE)
    rounded = [p for p in phonemes if base(p.symbol) in {"u:", "w"}]
    assert len(rounded) >= 4
    for p in rounded:
        assert frames[middle(p), PUCKER] >= 0.5 and frames[middle(p), FUNNEL] >= 0.2, p
    spread = [p for p in phonemes if base(p.symbol) == "i:"]
    assert spread and all(frames[middle(p), PUCKER] <= 0.05 for p in spread)


async def test_espeak_sentence_pauses_relax_the_mouth() -> None:
    _, phonemes, total = await speak("Hello there. How are you today? I am fine.")
    frames = PhoneticAnimator().render(phonemes, total, RATE)
    pauses = [p for p in phonemes if p.symbol.startswith("_") and p.end - p.start >= 0.2 * RATE]
    assert len(pauses) >= 2
    for p in pauses:
        assert np.all(frames[middle(p), MOUTH] <= 0.02), p
    speaking = [middle(p) for p in phonemes if not p.symbol.startswith("_")]
    assert frames[speaking, JAW].max() >= 0.4


async def test_espeak_streaming_equals_batch_and_covers_the_audio() -> None:
    chunks, phonemes, total = await speak("Maybe my mom made a big map. Then we think of five blue boats!")
    animator = PhoneticAnimator()
    batch = animator.render(phonemes, total, RATE)
    assert len(batch) == frames_for_samples(total, RATE)
    as_spoken = joined(await collect(animator, chunks))
    one_piece = joined(await collect(animator, chunked(phonemes, total, [])))
    tiny = joined(await collect(animator, chunked(phonemes, total, range(0, total, 97))))
    for streamed in (as_spoken, one_piece, tiny):
        assert np.array_equal(streamed, batch)
    assert not animator.unknown_symbols


ENGLISH = (
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs! "
    "How vexingly quick daft zebras jump; sphinx of black quartz, judge my vow. "
    "Measure the pleasure of the azure treasure, George. Either thought or thorough, although enough. "
    "Our hour, their chair, your cure, fire and flower, year and near, poor sure tour. "
    "It's 3.5 percent at 10:45 on 2024-01-02, costs $1,234 and 99 cents (about 1st or 22nd). "
    "Button, bottle, little, rhythm, schism, garden, lion, idea, chaos, genre, loch, uh-oh, hmm, "
    "co-operate, naïve café, Ngozi, Xavier, Tchaikovsky, Nguyen, Dvořák, Pfeiffer, Hawaii, tsunami."
)


@pytest.mark.parametrize("voice", ["en-us", "en-gb", "en-gb-x-rp", "en-029", "en-gb-scotland"])
async def test_espeak_english_symbols_are_all_known(voice: str) -> None:
    """Every symbol espeak-ng emits for a wide English sample has a viseme: gaps show up here."""
    _, phonemes, total = await speak(ENGLISH, voice)
    unknown = sorted({p.symbol for p in phonemes if not lookup(p.symbol).known})
    assert unknown == [], f"espeak-ng ({voice}) symbols without a viseme: {unknown}"
    animator = PhoneticAnimator()
    frames = animator.render(phonemes, total, RATE)
    assert not animator.unknown_symbols and np.isfinite(frames).all()
