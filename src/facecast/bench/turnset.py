"""An evaluation set for end-of-turn detection: complete and incomplete player turns with known timing.

Three kinds of turn (:data:`KINDS`):

* ``short``: a complete short answer of one to three words ("Yes.", "The red one.", the last words of a
  read sentence, which keep its final intonation);
* ``long``: a complete sentence, spoken without a pause of 300 ms or more;
* ``incomplete``: a sentence with a mid-sentence pause of 300-1500 ms (a hesitation, "um", a list, a
  clause left hanging) before the player goes on.

Two splits (:data:`SPLITS`), kept apart so that settings tuned on one are reported on the other:

* ``real``: REAL human recordings from :mod:`facecast.speechdata` (LibriVox and LibriSpeech read speech,
  unscripted commentary, Michael McAuliffe's recordings with their own hesitations). Words are located by
  pocketsphinx forced alignment of the known transcript; a pause is either the speaker's own (one of 300 ms
  or more, shortened to at most 1500 ms by cutting room tone out of its middle) or inserted at a word
  boundary, filled with the recording's own room tone.
* ``neural``: the hibari and piper voices, cut at word boundaries from the synthesiser's word timing
  (``SpeechChunk.words``) with a pause of low room noise inserted.

Every turn has room tone before (``lead_ms``) and after (``tail_ms``) the speech, so a detector can end it.
Everything is seeded: the same ``seed`` gives the same ``real`` split, bit for bit; the ``neural`` split has the
same cuts and pauses, but hibari's synthesis itself differs slightly from run to run (samples by up to ~0.005).
Times are samples at 16 kHz (:data:`RATE`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..audio import float_to_pcm16, read_audio, resample
from ..errors import InputError
from ..roles import TextToSpeech
from ..types import Float32Array

__all__ = [
    "RATE",
    "KINDS",
    "SPLITS",
    "TurnSample",
    "turn_set",
    "real_turns",
    "neural_turns",
    "paused_recording",
    "align_words",
]

RATE = 16000
KINDS = ("short", "long", "incomplete")
SPLITS = ("real", "neural")
_FRAME = RATE // 100  # 10 ms analysis frames
_MIN_PAUSE = 300  # ms: a pause this long counts as one of the turn's pauses
_MAX_PAUSE = 1500


@dataclass(frozen=True, slots=True, eq=False)
class TurnSample:
    """One player turn: ``audio`` (float32, 16 kHz) with ``lead`` room tone before the speech and a tail
    after it; ``speech_end`` is the sample where the player really finished (end of the last word's sound);
    ``pauses`` are the turn's mid-sentence pauses as (first silent sample, sample where speech resumes): an
    end of turn detected inside one cut the player off."""

    name: str
    kind: str
    split: str
    source: str
    text: str
    audio: Float32Array
    speech_start: int
    speech_end: int
    pauses: tuple[tuple[int, int], ...] = ()


# ---------------------------------------------------------------------------------------------------------
# Signal helpers


def _levels(pcm: Float32Array) -> Float32Array:
    """dBFS of each 10 ms frame."""
    frames = len(pcm) // _FRAME
    block = np.asarray(pcm[: frames * _FRAME], np.float64).reshape(frames, _FRAME)
    out: Float32Array = (20 * np.log10(np.sqrt(np.mean(np.square(block), axis=1)) + 1e-9)).astype(np.float32)
    return out


def _threshold(pcm: Float32Array) -> float:
    """The speech level of a recording: 35 dB under its peak and 12 dB over its noise floor (dBFS)."""
    level = _levels(pcm)
    if len(level) == 0:
        raise InputError("no audio in the clip")
    return max(float(level.max()) - 35.0, float(np.percentile(level, 10)) + 12.0)


def _loud(pcm: Float32Array, threshold: float | None = None) -> np.ndarray:
    """Per 10 ms frame: whether it is over ``threshold`` dBFS (default: :func:`_threshold` of ``pcm``)."""
    return np.asarray(_levels(pcm) > (_threshold(pcm) if threshold is None else threshold))


def _speech_span(pcm: Float32Array, threshold: float | None = None) -> tuple[int, int]:
    """(first, one past the last) sample of loud frames; raises InputError for a clip with no speech."""
    loud = np.flatnonzero(_loud(pcm, threshold))
    if len(loud) == 0:
        raise InputError("no speech in the clip")
    return int(loud[0]) * _FRAME, (int(loud[-1]) + 1) * _FRAME


def _inner_pauses(pcm: Float32Array, min_ms: int, threshold: float | None = None) -> list[tuple[int, int]]:
    """Runs of quiet frames of at least ``min_ms`` between the first and last loud frame, as sample spans."""
    loud = _loud(pcm, threshold)
    idx = np.flatnonzero(loud)
    if len(idx) == 0:
        return []
    spans: list[tuple[int, int]] = []
    run_start = None
    for k in range(int(idx[0]), int(idx[-1]) + 1):
        if not loud[k] and run_start is None:
            run_start = k
        elif loud[k] and run_start is not None:
            if (k - run_start) * 10 >= min_ms:
                spans.append((run_start * _FRAME, k * _FRAME))
            run_start = None
    return spans


def _room_tone(pcm: Float32Array, length: int) -> Float32Array:
    """``length`` samples of the recording's own room tone: its 200 ms with the lowest loudest frame, played
    forwards and backwards in turn (each copy starts on the sample the last one ended on: no seam)."""
    win = RATE // 5
    level = _levels(pcm)
    per = win // _FRAME
    peaks = np.lib.stride_tricks.sliding_window_view(level, per).max(axis=1)
    start = int(np.argmin(peaks)) * _FRAME
    tone = np.asarray(pcm[start : start + win], np.float32)
    copies = -(-length // win)
    return np.concatenate([tone if k % 2 == 0 else tone[::-1] for k in range(copies)])[:length]


def _noise(length: int, rng: np.random.Generator, dbfs: float = -62.0) -> Float32Array:
    """Low room noise (white noise through a one-pole low-pass) at ``dbfs`` RMS."""
    from scipy.signal import lfilter

    alpha = 0.25
    smooth = lfilter([alpha], [1.0, alpha - 1.0], rng.standard_normal(length + 64))[64:]
    smooth *= 10 ** (dbfs / 20) / (np.sqrt(np.mean(np.square(smooth))) + 1e-12)
    out: Float32Array = np.asarray(smooth, np.float32)
    return out


def _splice(a: Float32Array, b: Float32Array, fade: int = 80) -> Float32Array:
    """``a`` then ``b`` with a 5 ms cross-fade at the seam (no click)."""
    fade = min(fade, len(a), len(b))
    if fade == 0:
        return np.concatenate([a, b]).astype(np.float32)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    seam = a[-fade:] * (1 - ramp) + b[:fade] * ramp
    return np.concatenate([a[:-fade], seam, b[fade:]]).astype(np.float32)


@dataclass(frozen=True, slots=True)
class _Word:
    text: str
    start: int
    end: int


def align_words(pcm: Float32Array, text: str) -> list[tuple[str, int, int]] | None:
    """Words of ``text`` located in ``pcm`` (16 kHz) by pocketsphinx forced alignment, as (word, first
    sample, one past the last); None when the text has a word outside pocketsphinx's dictionary or the
    alignment fails."""
    decoder = _decoder()
    try:
        decoder.set_align_text(text)
        decoder.start_utt()
        decoder.process_raw(float_to_pcm16(pcm), full_utt=True)
        decoder.end_utt()
        segments = list(decoder.seg() or ())
    except (RuntimeError, ValueError):
        return None
    words = [
        (re.sub(r"\(\d+\)$", "", s.word), s.start_frame * _FRAME, (s.end_frame + 1) * _FRAME)
        for s in segments
        if not s.word.startswith("<") and s.word not in ("[NOISE]",)
    ]
    return words or None


_DECODERS: list[Any] = []


def _decoder() -> Any:
    """One pocketsphinx decoder for every alignment (loading its model takes a while)."""
    if not _DECODERS:
        from pocketsphinx import Decoder

        _DECODERS.append(Decoder(samprate=RATE, loglevel="FATAL"))
    return _DECODERS[0]


# ---------------------------------------------------------------------------------------------------------
# Building turns


@dataclass(frozen=True, slots=True)
class _Label:
    name: str
    kind: str
    split: str
    source: str
    text: str


def _turn(
    label: _Label,
    speech: Float32Array,
    pauses: Sequence[tuple[int, int]],
    room: tuple[Float32Array, Float32Array],
    threshold: float | None = None,
) -> TurnSample:
    """Room tone ``room[0]`` + ``speech`` trimmed to its loud span (``threshold``) + ``room[1]``."""
    before, after = room
    start, end = _speech_span(speech, threshold)
    body = speech[start:end]
    audio = _splice(_splice(before, body), after)
    lead = len(before)
    shifted = tuple((lead + a - start, lead + b - start) for a, b in pauses)
    return TurnSample(
        label.name, label.kind, label.split, label.source, label.text, audio, lead, lead + (end - start), shifted
    )


def _with_pauses(
    pcm: Float32Array, cuts: Sequence[tuple[int, int]], tone: Float32Array, threshold: float | None = None
) -> tuple[Float32Array, list[tuple[int, int]]]:
    """``pcm`` with each (sample, pause length) in ``cuts`` (ascending) turned into a pause: room tone from
    ``tone`` inserted there. Returns the audio and the pause spans (from the end of the sound before to the
    start of the sound after, in the new audio)."""
    out = np.zeros(0, np.float32)
    spans: list[tuple[int, int]] = []
    previous = 0
    used = 0
    for at, length in cuts:
        out = _splice(out, pcm[previous:at]) if len(out) else np.asarray(pcm[previous:at], np.float32)
        before = len(out)
        out = _splice(out, tone[used : used + length])
        used += length
        spans.append((before, len(out)))
        previous = at
    out = _splice(out, pcm[previous:])
    # Widen each span to the real silence around it (the sound stops a little before a word boundary).
    loud = _loud(out, threshold)
    widened = []
    for a, b in spans:
        fa, fb = a // _FRAME, b // _FRAME
        while fa > 0 and not loud[fa - 1]:
            fa -= 1
        while fb < len(loud) and not loud[fb]:
            fb += 1
        widened.append((fa * _FRAME, fb * _FRAME))
    return out, widened


def _shorten_pauses(
    pcm: Float32Array, spans: Sequence[tuple[int, int]], rng: np.random.Generator
) -> tuple[Float32Array, list[tuple[int, int]]]:
    """Each natural pause in ``spans`` longer than 1500 ms shortened to a seeded 300-1500 ms by cutting its
    middle out (the speaker's own room tone either side stays)."""
    out = np.zeros(0, np.float32)
    previous = 0
    new_spans: list[tuple[int, int]] = []
    for a, b in spans:
        length = b - a
        keep = length
        if length > _MAX_PAUSE * RATE // 1000:
            keep = int(rng.integers(_MIN_PAUSE, _MAX_PAUSE + 1)) * RATE // 1000
        head = a + keep // 2
        tail = b - (keep - keep // 2)
        out = _splice(out, pcm[previous:head]) if len(out) else np.asarray(pcm[previous:head], np.float32)
        start = len(out) - (head - a)
        previous = tail
        new_spans.append((start, start + keep))
    out = _splice(out, pcm[previous:]) if len(out) else np.asarray(pcm, np.float32)
    return out, new_spans


def _real_sources() -> list[tuple[str, str, Float32Array, list[tuple[str, int, int]]]]:
    """(name, text, 16 kHz audio, aligned words) of every usable real recording (read, conversational and
    jargon clips up to 14 s that pocketsphinx can align), in corpus order."""
    from ..speechdata import clips

    found = []
    for clip in clips():
        if clip.category not in ("read", "conversational", "jargon") or "<" in clip.text or "[" in clip.text:
            continue
        pcm, rate = read_audio(clip.path)
        if rate != RATE:
            pcm = resample(pcm, rate, RATE)
        if len(pcm) > 14 * RATE:
            continue
        words = align_words(pcm, clip.text)
        if words:
            found.append((clip.name, clip.text, pcm, words))
    return found


def real_turns(seed: int = 23, *, lead_ms: int = 400, tail_ms: int = 3000) -> list[TurnSample]:
    """The ``real`` split (module docstring), about 35 turns: per recording, its last one to three words
    (``short``); the whole recording when it has no pause of 300 ms or more (``long``), and then also the
    same recording with a 300-1500 ms pause inserted at a seeded word boundary (``incomplete``); a recording
    with its own pauses of 300 ms or more is ``incomplete`` as spoken (each pause at most 1500 ms).

    Raises what :func:`facecast.speechdata.clips` raises when the recordings cannot be fetched."""
    rng = np.random.default_rng(seed)
    out: list[TurnSample] = []
    for name, text, pcm, words in _real_sources():
        lead_n, tail_n = lead_ms * RATE // 1000, tail_ms * RATE // 1000
        level = _threshold(pcm)
        tone = _room_tone(pcm, lead_n + tail_n + 2 * _MAX_PAUSE * RATE // 1000)
        if _loud(tone[: RATE // 5], level).any():
            continue  # no quiet moment in the recording (commentary over a game): no endpoint is possible
        room, filler = (tone[:lead_n], tone[lead_n : lead_n + tail_n]), tone[lead_n + tail_n :]
        start, end = _speech_span(pcm, level)
        speech = pcm[start:end]
        natural = _inner_pauses(speech, _MIN_PAUSE, level)
        # short: the last 1-3 words (the sentence's own ending), if they are not one long pause-broken stretch
        count = int(rng.integers(1, 4))
        if len(words) > count:
            cut = words[-count][1]
            tail_words = " ".join(w for w, _, _ in words[-count:])
            piece = pcm[cut:end]
            if len(piece) > RATE // 5 and _loud(piece, level).any() and not _inner_pauses(piece, _MIN_PAUSE, level):
                out.append(
                    _turn(_Label(f"{name}/last{count}", "short", "real", "speech", tail_words), piece, (), room, level)
                )
        if natural:
            if len(natural) <= 3:
                shortened, spans = _shorten_pauses(speech, natural, rng)
                out.append(_turn(_Label(name, "incomplete", "real", "own-pause", text), shortened, spans, room, level))
            continue
        kind = "short" if len(words) <= 3 else "long"
        out.append(_turn(_Label(name, kind, "real", "speech", text), speech, (), room, level))
        if len(words) >= 4:
            k = int(rng.integers(1, len(words) - 2))  # after word k-1 .. never after the last two words
            length = int(rng.integers(_MIN_PAUSE, _MAX_PAUSE + 1)) * RATE // 1000
            out.append(_paused(f"{name}/pause", pcm, words, (k, length), room, filler))
    return out


def _paused(
    name: str,
    pcm: Float32Array,
    words: Sequence[tuple[str, int, int]],
    cut: tuple[int, int],
    room: tuple[Float32Array, Float32Array],
    filler: Float32Array,
) -> TurnSample:
    """``pcm`` with a pause of ``cut[1]`` samples of ``filler`` inserted before word ``cut[0]``."""
    level = _threshold(pcm)
    start, end = _speech_span(pcm, level)
    k, length = cut
    joined, spans = _with_pauses(pcm[start:end], [(words[k][1] - start, length)], filler, level)
    text = f"{' '.join(w for w, _, _ in words[:k])} ... {' '.join(w for w, _, _ in words[k:])}"
    return _turn(_Label(name, "incomplete", "real", "inserted", text), joined, spans, room, level)


def paused_recording(
    name: str, after_words: int, pause_ms: int, *, lead_ms: int = 400, tail_ms: int = 3000
) -> TurnSample:
    """One REAL recording of :mod:`facecast.speechdata` (by clip ``name``) with a pause of ``pause_ms`` of its
    own room tone inserted after its first ``after_words`` words (forced alignment), as an ``incomplete``
    turn. Raises InputError for an unknown clip, one pocketsphinx cannot align, or ``after_words`` that is
    not inside the sentence."""
    from ..speechdata import clips

    found = [c for c in clips() if c.name == name]
    if not found:
        raise InputError(f"no speech clip named {name!r}")
    pcm, rate = read_audio(found[0].path)
    pcm = resample(pcm, rate, RATE)
    words = align_words(pcm, found[0].text)
    if not words or not 0 < after_words < len(words):
        raise InputError(f"cannot put a pause after word {after_words} of {name!r} ({len(words or ())} aligned)")
    lead_n, tail_n = lead_ms * RATE // 1000, tail_ms * RATE // 1000
    tone = _room_tone(pcm, lead_n + tail_n + pause_ms * RATE // 1000)
    room, filler = (tone[:lead_n], tone[lead_n : lead_n + tail_n]), tone[lead_n + tail_n :]
    return _paused(f"{name}/pause{pause_ms}", pcm, words, (after_words, pause_ms * RATE // 1000), room, filler)


# Neural voices: texts; an incomplete one names the word after which the player pauses.
SHORT_TEXTS = ("Yes.", "No.", "Okay.", "The red one.", "Sure.", "Thank you.", "Not today.", "Over there.")
LONG_TEXTS = (
    "I'd like to buy the red one and a loaf of bread for my brother.",
    "Can you tell me the way to the harbour before it gets dark?",
    "We met the old sailor by the lighthouse last summer.",
    "How much does the blue cloak cost at the market today?",
)
INCOMPLETE_TEXTS = (
    ("I'd like to buy um the red one.", "um"),
    ("I need bread, milk, and eggs.", "and"),
    ("Can you tell me where the harbour is?", "the"),
    ("My brother said that he would come tomorrow.", "that"),
    ("Well I think we should go north.", "well"),
    ("The sword, the shield, and the old map.", "shield"),
    ("I was going to ask you about uh the dragon.", "uh"),
    ("If you give me the key I will open the door.", "key"),
)


def _norm(word: str) -> str:
    return re.sub(r"[^a-z']", "", word.lower())


async def _synthesize(tts: TextToSpeech, text: str) -> tuple[Float32Array, list[_Word]]:
    """All of ``text`` spoken by ``tts`` at 16 kHz, with its words (sample spans at 16 kHz)."""
    pcm: list[Float32Array] = []
    words: list[_Word] = []
    rate = RATE
    async for chunk in tts.synthesize(text):
        rate = chunk.audio.rate
        pcm.append(chunk.audio.pcm)
        words += [_Word(w.text, w.start, w.end) for w in chunk.words]
    scale = RATE / rate
    audio = resample(np.concatenate(pcm), rate, RATE)
    return audio, [_Word(w.text, round(w.start * scale), round(w.end * scale)) for w in words]


async def neural_turns(
    seed: int = 23, *, voices: Sequence[str] = ("hibari", "piper"), lead_ms: int = 400, tail_ms: int = 3000
) -> list[TurnSample]:
    """The ``neural`` split (module docstring), 40 turns with both voices: :data:`SHORT_TEXTS`,
    :data:`LONG_TEXTS` and :data:`INCOMPLETE_TEXTS` (a seeded 300-1500 ms pause after the named word), all
    in low room noise (-62 dBFS). Raises InputError when a voice gives no timing for a named word."""
    from ..services import make_tts

    rng = np.random.default_rng(seed + 1)
    out: list[TurnSample] = []
    lead_n, tail_n = lead_ms * RATE // 1000, tail_ms * RATE // 1000

    def room() -> tuple[Float32Array, Float32Array]:
        return _noise(lead_n, rng), _noise(tail_n, rng)

    for voice in voices:
        tts = make_tts(voice)
        try:
            for kind, texts in (("short", SHORT_TEXTS), ("long", LONG_TEXTS)):
                for text in texts:
                    pcm, _ = await _synthesize(tts, text)
                    pcm = pcm + _noise(len(pcm), rng)
                    out.append(_turn(_Label(f"{voice}/{text}", kind, "neural", voice, text), pcm, (), room(), None))
            for text, after_word in INCOMPLETE_TEXTS:
                pcm, words = await _synthesize(tts, text)
                index = next((k for k, w in enumerate(words) if _norm(w.text) == after_word), None)
                if index is None or index + 1 >= len(words):
                    raise InputError(f"{voice} gave no word timing for {after_word!r} in {text!r}")
                boundary = (words[index].end + words[index + 1].start) // 2
                length = int(rng.integers(_MIN_PAUSE, _MAX_PAUSE + 1)) * RATE // 1000
                pcm = pcm + _noise(len(pcm), rng)
                joined, spans = _with_pauses(pcm, [(boundary, length)], _noise(length, rng))
                out.append(_turn(_Label(f"{voice}/{text}", "incomplete", "neural", voice, text), joined, spans, room()))
        finally:
            close = getattr(tts, "aclose", None)  # not part of the role; a provider may hold a worker
            if close is not None:
                await close()
    return out


async def turn_set(split: str | None = None, seed: int = 23, *, tail_ms: int = 3000) -> list[TurnSample]:
    """Both splits (``real`` first) or one of :data:`SPLITS`; raises InputError for an unknown split."""
    if split is not None and split not in SPLITS:
        raise InputError(f"unknown turn-set split {split!r}; one of {', '.join(SPLITS)}")
    out: list[TurnSample] = []
    if split in (None, "real"):
        out += real_turns(seed, tail_ms=tail_ms)
    if split in (None, "neural"):
        out += await neural_turns(seed, tail_ms=tail_ms)
    return out
