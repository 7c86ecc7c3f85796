"""The default face: mouth animation from the TTS's phoneme timing (no model, no audio analysis).

Each phoneme is shown as one viseme (or, for a diphthong, a glide through two or three; see
:mod:`facecast.face.visemes`). Coarticulation follows Cohen and Massaro's dominance model: every viseme
segment has a **dominance function** over time, a plateau over the middle of the segment with raised-cosine
flanks that start :attr:`PhoneticConfig.anticipation` before the segment and end
:attr:`PhoneticConfig.carryover` after it, scaled per articulator group by the viseme's dominance. Each
curve of a frame is the dominance-weighted average of the poses of the segments active at that frame,
plus the rest pose with the small constant weight :attr:`PhoneticConfig.rest_weight`::

    curve(t) = sum_k D_k(t) * pose_k / (rest_weight + sum_k D_k(t))

so the mouth glides between targets, anticipates the next one (a ``k`` before ``u:`` is already
rounded), and relaxes to rest in pauses (where no segment is active, or a pause segment holds the rest
pose). Each frame of that blend is then averaged with its two neighbours (weights ``smoothing``,
``1 - 2 * smoothing``, ``smoothing``), so that the quickest moves take two or three frames, not one.

Some gestures must be REACHED, not merely leaned towards: the lip closure and closed jaw of ``p b m``,
the tucked lower lip of ``f v``, the tongue of ``th`` (a viseme's ``critical`` groups). On those curves
the smoothed blend is then drawn towards the segment's pose by its own dominance shape, fully over its
plateau::

    curve(t) = blend(t) + pull(t) * (target(t) - blend(t))

so the middle frame of every bilabial has its lips sealed at any speaking rate and next to any vowel,
while the vowels between closures still open. Segments shorter than their viseme's ``min_duration``
(50 ms for ``p b m``) are shown as if that long, centred on their own centre, so that the plateau (with
the default ``plateau``) always covers the frame nearest the centre.

Output frames (68 float32 values: 61 Live Link curves + 7 emotions) carry only the speaking mouth: jaw, lip and
tongue curves in [0, 1]; eyes, brows, cheeks, nose, head and eye rotations are 0; the emotion channels
61-67 are one-hot Neutral (= 1.0), i.e. "no emotion", which keeps a frame a valid NeuroSync frame on its
own. :class:`facecast.face.layers.AnimationLayer` adds blinks, gaze, head motion and emotion on top.

Streaming: a frame depends only on segments whose dominance reaches it (and on its next frame), and a
phoneme not yet received starts at or after the audio received so far (a
:class:`~facecast.types.SpeechChunk` carries the phonemes that START inside it). So frame ``i`` is final,
and is yielded at once, when ``frame_sample(i) < received - lookahead * rate - 2`` (2 samples against
rounding); :attr:`PhoneticAnimator.lookahead` is 0.097 s with the default configuration. Frames are
computed by the same code, in the same order of summation, whichever way the speech is split into
chunks: streaming output is bit-identical to :meth:`PhoneticAnimator.render` of the whole utterance.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import InputError
from ..types import FACE_WIDTH, FPS, FaceFrames, Float32Array, Phoneme, SpeechChunk, frame_sample
from ..types import frames_for_samples as _frames_for_samples
from .arkit import INDEX
from .visemes import GLIDE_SPLITS, VISEMES, articulator_of, lookup

__all__ = ["PhoneticConfig", "PhoneticAnimator", "NEUTRAL_CHANNEL"]

_log = logging.getLogger(__name__)

NEUTRAL_CHANNEL = INDEX["Neutral"]
"""The emotion channel (65) that every frame of this animator sets to 1.0."""

_F64 = npt.NDArray[np.float64]
_I64 = npt.NDArray[np.int64]

# The viseme tables as arrays over the curves any pose uses (the rest of the 68 stay 0).
_NAMES: tuple[str, ...] = tuple(VISEMES)
_VISEME_ID: dict[str, int] = {name: i for i, name in enumerate(_NAMES)}
_CURVES: tuple[str, ...] = tuple(sorted({c for v in VISEMES.values() for c in v.pose}, key=INDEX.__getitem__))
_CHANNELS: _I64 = np.array([INDEX[c] for c in _CURVES], np.int64)
_POSES: _F64 = np.array([[v.pose.get(c, 0.0) for c in _CURVES] for v in VISEMES.values()], np.float64)
_GROUP: _I64 = np.array([int(articulator_of(c)) for c in _CURVES], np.int64)
_DOMINANCE: _F64 = np.array([[v.dominance[g] for g in _GROUP] for v in VISEMES.values()], np.float64)
_CRITICAL: _F64 = np.array(
    [[float(articulator_of(c) in v.critical and c in v.pose) for c in _CURVES] for v in VISEMES.values()],
    np.float64,
)  # 1 for the curves a viseme must reach: those its pose names in its critical groups
_MIN_DURATION: _F64 = np.array([v.min_duration for v in VISEMES.values()], np.float64)
_SPREAD: _F64 = np.array([v.spread for v in VISEMES.values()], np.float64)  # (visemes, articulators)
_MIN_DURATION_S: tuple[float, ...] = tuple(v.min_duration for v in VISEMES.values())
_SPREAD_S: tuple[tuple[float, ...], ...] = tuple(v.spread for v in VISEMES.values())


@dataclass(frozen=True, slots=True)
class PhoneticConfig:
    """Tuning of :class:`PhoneticAnimator` (times in seconds).

    ``anticipation``: how long before a segment its dominance starts to rise, for a viseme of spread 1
    (coarticulation lookahead; :attr:`lookahead` follows from it). ``carryover``: how long after a
    segment its dominance takes to fall to 0, for a viseme of spread 1. ``plateau``: the fraction of each segment's
    half-duration, around its centre, held at full dominance. ``rest_weight``: the constant dominance of
    the rest pose (larger = more relaxed, smaller = crisper). ``intensity``: scales every mouth curve
    (articulation strength; results are clipped to [0, 1]). ``smoothing``: each frame becomes
    ``k * previous + (1 - 2k) * itself + k * next`` of the blend (0 = off, at most 1/3), which softens
    the quickest lip and tongue moves into 2-3 frames at the cost of one frame of lookahead. Raises
    :class:`InputError` for values out of range.
    """

    anticipation: float = 0.08
    carryover: float = 0.06
    plateau: float = 0.4
    rest_weight: float = 0.02
    intensity: float = 1.0
    smoothing: float = 0.25

    def __post_init__(self) -> None:
        checks = (
            ("anticipation", self.anticipation, 0.0, 0.5),
            ("carryover", self.carryover, 0.0, 0.5),
            ("plateau", self.plateau, 0.0, 1.0),
            ("rest_weight", self.rest_weight, 1e-6, 10.0),
            ("intensity", self.intensity, 0.0, 2.0),
            ("smoothing", self.smoothing, 0.0, 1.0 / 3.0),
        )
        for name, value, lo, hi in checks:
            if not (isinstance(value, (int, float)) and lo <= value <= hi):
                raise InputError(f"PhoneticConfig.{name} must be a number from {lo} to {hi}, got {value!r}")

    @property
    def lookahead(self) -> float:
        """Seconds of speech past a frame that must be known before the frame is final: the longest reach
        of a dominance before its phoneme's start (``anticipation * spread + min_duration / 2`` over the
        visemes), plus one frame when smoothing. 0.097 s by default."""
        reach = float((self.anticipation * _SPREAD.max(axis=1) + _MIN_DURATION / 2).max())
        return reach + (1.0 / FPS if self.smoothing > 0 else 0.0)


# Columns of a segment row in :class:`_Segments`.
_LO, _HI, _CENTRE, _HOLD = 0, 1, 2, 3
_RISE = slice(4, 8)  # per articulator: width of the rising flank, from the plateau's start back
_FALL = slice(8, 12)  # per articulator: width of the falling flank, from the plateau's end on
_COLUMNS = 12
_BLOCK = 600  # frames rendered at once at most (10 s)


class _Segments:
    """Viseme segments in arrival order (samples): one row each (see the column constants above).

    ``lo``/``hi`` bound the dominance over all articulators. Rows before :attr:`live` reach no frame
    still to be rendered; rows after it may not either (they then give no (frame, segment) pair).
    """

    __slots__ = ("rows", "visemes", "count", "live")

    def __init__(self) -> None:
        self.rows: _F64 = np.empty((64, _COLUMNS), np.float64)
        self.visemes: _I64 = np.empty(64, np.int64)
        self.count = 0
        self.live = 0

    def add(self, viseme: str, start: float, end: float, rate: int, config: PhoneticConfig) -> None:
        index = _VISEME_ID[viseme]
        centre = (start + end) / 2
        half = max((end - start) / 2, _MIN_DURATION_S[index] * rate / 2)
        hold = config.plateau * half
        spread = _SPREAD_S[index]
        before = [config.anticipation * rate * s for s in spread]
        after = [config.carryover * rate * s for s in spread]
        if self.count == len(self.rows):
            self.rows = np.concatenate([self.rows, np.empty_like(self.rows)])
            self.visemes = np.concatenate([self.visemes, np.empty_like(self.visemes)])
        self.rows[self.count] = (
            centre - half - max(before), centre + half + max(after), centre, hold,
            *(max(half - hold + b, 1e-9) for b in before), *(max(half - hold + a, 1e-9) for a in after),
        )  # fmt: skip
        self.visemes[self.count] = index
        self.count += 1

    def forget_before(self, sample: float) -> None:
        """Advance :attr:`live` past the leading segments whose dominance has ended by ``sample``."""
        while self.live < self.count and self.rows[self.live, _HI] <= sample:
            self.live += 1
        if self.live >= 256 and 2 * self.live >= self.count:  # drop the dead rows (order is kept)
            left = self.count - self.live
            self.rows[:left] = self.rows[self.live : self.count]
            self.visemes[:left] = self.visemes[self.live : self.count]
            self.count, self.live = left, 0


def _frames_before(limit: float, rate: int) -> int:
    """How many frames ``i >= 0`` have ``frame_sample(i, rate) < limit``."""
    if limit <= 0:
        return 0
    count = max(0, int(limit * FPS / rate))
    while count > 0 and frame_sample(count - 1, rate) >= limit:
        count -= 1
    while frame_sample(count, rate) < limit:
        count += 1
    return count


def _blend(segments: _Segments, first: int, stop: int, rate: int, config: PhoneticConfig) -> _F64:
    """Per frame ``first`` to ``stop - 1`` (any integers), for each used curve: the dominance blend, the
    pull of critical targets (0-1) and that target, stacked as shape (3, frames, curves).

    Every segment reaching those frames must be at or after ``segments.live``. Vectorised over the
    (frame, segment) pairs where a segment's dominance reaches the frame; each frame's pairs are reduced
    in segment order by ``np.add.reduceat`` / ``np.maximum.reduceat`` over exactly those pairs, so a
    frame's values do not depend on which other frames or segments are computed with it. A frame no
    segment reaches is at rest (0) with no pull.
    """
    count = stop - first
    times = np.round(np.arange(first, stop, dtype=np.float64) * rate / FPS)  # == frame_sample(i, rate)
    out: _F64 = np.zeros((3, count, len(_CURVES)), np.float64)
    rows = segments.rows[segments.live : segments.count]
    visemes = segments.visemes[segments.live : segments.count]
    if len(rows) * count > 4096:  # many segments: keep those whose support overlaps these frames
        keep = np.flatnonzero((rows[:, _LO] < times[-1]) & (rows[:, _HI] > times[0]))
        rows, visemes = rows[keep], visemes[keep]
    if not len(rows):
        return out
    column = times[:, None]
    frame, seg = np.nonzero((column > rows[:, _LO]) & (column < rows[:, _HI]))  # frame-major pairs
    if not len(frame):
        return out
    pairs = rows[seg]
    delta = times[frame] - pairs[:, _CENTRE]
    width = np.where((delta < 0)[:, None], pairs[:, _RISE], pairs[:, _FALL])
    x = np.minimum(np.maximum((np.abs(delta) - pairs[:, _HOLD])[:, None] / width, 0.0), 1.0)
    shape = 0.5 + 0.5 * np.cos(np.pi * x)  # (pairs, articulators): 1 on the plateau, 0 at the ends
    visemes = visemes[seg]
    poses, reach = _POSES[visemes], shape[:, _GROUP]
    terms = np.empty((len(frame), 5, len(_CURVES)), np.float64)
    np.multiply(reach, _DOMINANCE[visemes], out=terms[:, 1])  # dominance
    np.multiply(terms[:, 1], poses, out=terms[:, 0])
    np.multiply(reach, _CRITICAL[visemes], out=terms[:, 4])  # pull of a critical target
    # Where two critical targets meet (v then b), they mix by the square of their pulls: the one on its
    # plateau mostly wins, and the hand-over still takes a frame or two.
    np.square(terms[:, 4], out=terms[:, 3])
    np.multiply(terms[:, 3], poses, out=terms[:, 2])
    # Each frame's pairs are consecutive, in segment order: reduce them row by row.
    change = np.empty(len(frame), np.bool_)
    change[0] = True
    np.not_equal(frame[1:], frame[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    sums = np.add.reduceat(terms[:, :4], starts, axis=0)
    rows_out = frame[starts]
    out[0, rows_out] = sums[:, 0] / (sums[:, 1] + config.rest_weight)
    out[1, rows_out] = np.maximum.reduceat(terms[:, 4], starts, axis=0)
    out[2, rows_out] = sums[:, 2] / np.maximum(sums[:, 3], 1e-300)
    return out


def _render(segments: _Segments, first: int, stop: int, rate: int, config: PhoneticConfig) -> Float32Array:
    """Output frames ``first`` to ``stop - 1``: the dominance blend smoothed over neighbouring frames,
    then drawn to the critical targets by their pull (unsmoothed, so a critical target is reached
    exactly over its plateau), scaled by the intensity and clipped to [0, 1]."""
    count = stop - first
    out = np.zeros((count, FACE_WIDTH), np.float32)
    out[:, NEUTRAL_CHANNEL] = 1.0
    if count <= 0:
        return out
    k = config.smoothing
    if k > 0:
        raw = _blend(segments, first - 1, stop + 1, rate, config)
        mixed = k * raw[0, :-2] + (1.0 - 2.0 * k) * raw[0, 1:-1] + k * raw[0, 2:]
        # The pull widens by the smoothing at its edges (softer onset and release), but stays exact.
        pull = np.maximum(raw[1, 1:-1], k * raw[1, :-2] + (1.0 - 2.0 * k) * raw[1, 1:-1] + k * raw[1, 2:])
        target = raw[2, 1:-1]
    else:
        raw = _blend(segments, first, stop, rate, config)
        mixed, pull, target = raw[0], raw[1], raw[2]
    mouth = mixed + pull * (target - mixed)
    out[:, _CHANNELS] = np.minimum(np.maximum(mouth * config.intensity, 0.0), 1.0)
    return out


class _Utterance:
    """The per-utterance state of one :meth:`PhoneticAnimator.animate` call."""

    def __init__(self, animator: PhoneticAnimator) -> None:
        self._animator = animator
        self._config = animator.config
        self.rate = 0
        self.heard = 0  # samples of audio received
        self.emitted = 0  # frames yielded
        self._segments = _Segments()
        self._lookahead = animator.lookahead
        self._warned_late = False

    def add_chunk(self, chunk: SpeechChunk) -> None:
        rate = chunk.audio.rate
        if self.rate == 0:
            if rate <= 0:
                raise InputError(f"speech has an invalid sample rate {rate}")
            self.rate = rate
        elif rate != self.rate:
            raise InputError(f"speech changed sample rate within an utterance ({self.rate} -> {rate} Hz)")
        self.add_phonemes(chunk.phonemes)
        self.heard = max(self.heard, chunk.audio.end)

    def add_phonemes(self, phonemes: Iterable[Phoneme]) -> None:
        for phoneme in phonemes:
            start = float(phoneme.start)
            end = float(max(phoneme.end, phoneme.start))
            if not self._warned_late and self.emitted and start < self.heard:
                self._warned_late = True
                _log.warning(
                    "phoneme %r at sample %d arrived after audio up to sample %d: frames already sent "
                    "could not anticipate it (the TTS breaks the SpeechChunk timing contract)",
                    phoneme.symbol, phoneme.start, self.heard,
                )  # fmt: skip
            found = self._animator._classify(phoneme.symbol, phoneme.alphabet)
            splits = GLIDE_SPLITS[len(found)]
            bounds = [start, *(start + s * (end - start) for s in splits), end]
            for i, viseme in enumerate(found):
                self._segments.add(viseme, bounds[i], bounds[i + 1], self.rate, self._config)

    def ready(self) -> int:
        """How many frames no phoneme still to come can change: those with
        ``frame_sample(i) < heard - lookahead * rate - 2``.

        A phoneme not received yet starts at or after ``heard``, so its dominance starts after
        ``heard - reach`` (reach = lookahead less the smoothing frame). A ready frame's blend, and the next
        frame's that smoothing adds (at most ``rate / 60 + 1`` samples later), lie before that with a
        sample to spare against rounding.
        """
        if self.rate == 0:
            return 0
        limit = self.heard - self._lookahead * self.rate - 2
        return min(_frames_before(limit, self.rate), _frames_for_samples(self.heard, self.rate))

    def take(self, stop: int) -> FaceFrames | None:
        """Frames from the last one taken up to ``stop - 1``, or None when there are none."""
        first = self.emitted
        if stop <= first:
            return None
        blocks: list[Float32Array] = []
        while self.emitted < stop:  # in blocks, so that a long utterance needs little memory
            end = min(stop, self.emitted + _BLOCK)
            blocks.append(_render(self._segments, self.emitted, end, self.rate, self._config))
            self.emitted = end
            # the next frames need the blend from frame end - 1 on (smoothing looks one frame back)
            self._segments.forget_before(float(frame_sample(end - 1, self.rate)))
        return FaceFrames(first, blocks[0] if len(blocks) == 1 else np.concatenate(blocks))


class PhoneticAnimator:
    """Mouth animation from phoneme timing; implements :class:`facecast.roles.FaceAnimator`.

    Needs phonemes in the speech (espeak-ng mnemonics, as :class:`facecast.tts.espeak.EspeakTTS` gives);
    speech without any yields rest frames. Symbols it does not know are shown as a mild neutral mouth that
    yields to its neighbours, logged once per animator, and listed in :attr:`unknown_symbols`. Apart from
    that diagnostic set an instance holds no state: it may animate any number of utterances at once.
    """

    def __init__(self, config: PhoneticConfig | None = None) -> None:
        self._config = config if config is not None else PhoneticConfig()
        self._lookahead = self._config.lookahead
        self._unknown: set[str] = set()

    @property
    def config(self) -> PhoneticConfig:
        return self._config

    @property
    def lookahead(self) -> float:
        """Seconds of audio past a frame that must have arrived before the frame is yielded (0.097 s by
        default; see :attr:`PhoneticConfig.lookahead`)."""
        return self._lookahead

    @property
    def unknown_symbols(self) -> frozenset[str]:
        """Phoneme symbols this animator met and did not recognise (shown with the neutral ``unk`` pose)."""
        return frozenset(self._unknown)

    def _classify(self, symbol: str, alphabet: str = "espeak") -> tuple[str, ...]:
        found = lookup(symbol, alphabet)
        if not found.known and symbol not in self._unknown:
            self._unknown.add(symbol)
            _log.warning("unknown phoneme symbol %r: shown as a neutral mouth", symbol)
        return found.visemes

    async def animate(self, speech: AsyncIterable[SpeechChunk]) -> AsyncGenerator[FaceFrames, None]:
        """Turn one utterance's speech into 60 fps frames (:class:`facecast.roles.FaceAnimator`).

        Frames are yielded in order from frame 0, each as soon as audio reaching :attr:`lookahead` past
        it has arrived, then the rest up to ``frames_for_samples(total_samples, rate)`` when ``speech``
        ends. Chunks must share one sample rate (:class:`InputError` otherwise) and carry the phonemes
        that start inside them. If this generator is closed early, it closes ``speech``'s iterator too,
        so that cancellation reaches the TTS.
        """
        state = _Utterance(self)
        iterator = aiter(speech)
        try:
            async for chunk in iterator:
                state.add_chunk(chunk)
                frames = state.take(state.ready())
                if frames is not None:
                    yield frames
            if state.rate:
                frames = state.take(_frames_for_samples(state.heard, state.rate))
                if frames is not None:
                    yield frames
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                await close()

    def render(self, phonemes: Sequence[Phoneme], total_samples: int, rate: int) -> Float32Array:
        """All ``frames_for_samples(total_samples, rate)`` frames of an utterance at once, shape (n, 68).

        The same frames :meth:`animate` yields for speech of ``total_samples`` samples at ``rate``
        carrying these phonemes, however it is chunked. Raises :class:`InputError` for a rate <= 0.
        """
        if rate <= 0:
            raise InputError(f"invalid sample rate {rate}")
        state = _Utterance(self)
        state.rate = rate
        state.add_phonemes(phonemes)
        state.heard = max(0, total_samples)
        frames = state.take(_frames_for_samples(state.heard, rate))
        return frames.values if frames is not None else np.zeros((0, FACE_WIDTH), np.float32)


def _check_tables() -> None:
    """Import-time sanity: every viseme has a row, values are finite (cheap; catches table edits)."""
    if not (np.isfinite(_POSES).all() and (_DOMINANCE > 0).all()):  # pragma: no cover
        raise RuntimeError("viseme tables hold invalid values")
    if not math.isclose(float(_POSES[_VISEME_ID["sil"]].sum()), 0.0):  # pragma: no cover
        raise RuntimeError("the sil viseme must be the rest pose")


_check_tables()
