"""Streaming log-mel features for the learned face model, one feature vector per 60 fps face frame.

Audio is first resampled to :attr:`FeatureConfig.rate` (24 kHz by default, where a face frame is exactly
400 samples). Face frame ``i`` is at sample ``i * hop`` (``hop = rate / 60``); its feature vector is the
log-mel spectrum of :attr:`FeatureConfig.offsets` short Hann windows centred at ``i * hop + offset``
(two windows 100 samples either side of the frame by default), concatenated: ``len(offsets) * n_mels``
values. Samples outside the audio (before 0, after the end) are zeros.

So feature ``i`` depends on samples ``[i * hop + min(offsets) - win / 2, i * hop + max(offsets) + win / 2)``
and on nothing else: :class:`FeatureStream` computes each vector as soon as those samples have arrived,
and :func:`features` of a whole signal gives the same vectors whichever way the audio is chunked (up
to float32 rounding of the mel matrix product, ~1e-7, which depends on how many frames it batches).
Only numpy and scipy's FFT are needed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.fft

from ..errors import InputError
from ..types import FPS, Float32Array

__all__ = ["FeatureConfig", "mel_filterbank", "FeatureStream", "features"]


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """Feature parameters; stored with the model weights (JSON) so training and run time agree.

    ``rate``: analysis sample rate (a multiple of 60). ``n_fft``: FFT size; ``win``: Hann window length
    (<= ``n_fft``); ``n_mels``, ``fmin``, ``fmax``: the mel bands (HTK mel scale, triangular, unit peak);
    ``offsets``: window centres relative to the frame's sample; ``floor``: added to the mel power before
    the natural log. Raises :class:`InputError` for inconsistent values.
    """

    rate: int = 24_000
    n_fft: int = 512
    win: int = 400
    n_mels: int = 40
    fmin: float = 50.0
    fmax: float = 8_000.0
    offsets: tuple[int, ...] = (-100, 100)
    floor: float = 1e-4

    def __post_init__(self) -> None:
        if self.rate % FPS or self.rate < 8_000:
            raise InputError(f"feature rate must be a multiple of {FPS} Hz, at least 8000, got {self.rate}")
        if not (0 < self.win <= self.n_fft) or self.n_mels < 1 or not self.offsets:
            raise InputError("feature config needs 0 < win <= n_fft, n_mels >= 1 and at least one offset")
        if not (0.0 <= self.fmin < self.fmax <= self.rate / 2):
            raise InputError(f"mel band {self.fmin}-{self.fmax} Hz does not fit a {self.rate} Hz signal")

    @property
    def hop(self) -> int:
        """Samples per face frame at :attr:`rate`."""
        return self.rate // FPS

    @property
    def width(self) -> int:
        """Values per feature vector."""
        return self.n_mels * len(self.offsets)

    @property
    def reach_before(self) -> int:
        """Samples before a frame's sample that its feature vector reads."""
        return self.win // 2 - min(self.offsets)

    @property
    def reach_after(self) -> int:
        """Samples at and after a frame's sample that its feature vector reads (exclusive end)."""
        return max(self.offsets) + self.win - self.win // 2

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["offsets"] = list(self.offsets)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureConfig:
        """Build from :meth:`to_json`'s dict; raises :class:`InputError` for missing or bad fields."""
        try:
            values = dict(data)
            values["offsets"] = tuple(int(o) for o in values["offsets"])
            return cls(**values)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"bad feature config {json.dumps(data)[:200]}: {exc}") from exc


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(config: FeatureConfig) -> Float32Array:
    """Triangular HTK-mel filters with unit peaks, shape (n_fft // 2 + 1, n_mels)."""
    bins = np.arange(config.n_fft // 2 + 1) * config.rate / config.n_fft
    edges = _mel_to_hz(
        np.linspace(_hz_to_mel(np.array(config.fmin)), _hz_to_mel(np.array(config.fmax)), config.n_mels + 2)
    )
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lo) / np.maximum(mid - lo, 1e-9)
    falling = (hi - bins[:, None]) / np.maximum(hi - mid, 1e-9)
    bank: Float32Array = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    return bank


class FeatureStream:
    """Feature vectors of a growing signal at :attr:`FeatureConfig.rate`.

    :meth:`push` appends samples and returns the vectors that became computable (in frame order, from
    frame 0); :meth:`finish` returns the vectors up to a given frame count, reading zeros past the end.
    Memory stays bounded: samples no future vector needs are dropped.
    """

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self._window = np.hanning(config.win + 2)[1:-1].astype(np.float32)  # no zero end points
        self._mel = mel_filterbank(config)
        self._offsets = np.asarray(config.offsets, np.int64) - config.win // 2  # window starts rel. to frame
        self._starts = [int(o) for o in self._offsets]
        self._span = (min(self._starts), max(self._starts))
        self._buffer = np.zeros(config.reach_before, np.float32)  # zeros before sample 0
        self._base = -config.reach_before  # signal position of _buffer[0]
        self._received = 0
        self.computed = 0  # feature vectors returned so far

    @property
    def received(self) -> int:
        """Samples pushed so far."""
        return self._received

    def ready(self, received: int | None = None) -> int:
        """How many frames are computable from ``received`` samples (default: those pushed)."""
        have = self._received if received is None else received
        return max(0, (have - self.config.reach_after) // self.config.hop + 1)

    def push(self, pcm: np.ndarray) -> Float32Array:
        """Append float32 mono samples; return the newly computable vectors, shape (k, width)."""
        data = np.asarray(pcm, np.float32).reshape(-1)
        if len(data):
            self._buffer = np.concatenate([self._buffer, data])
            self._received += len(data)
        return self._compute(self.ready())

    def finish(self, frames: int) -> Float32Array:
        """The vectors from :attr:`computed` up to ``frames`` (exclusive), reading zeros past the end."""
        if frames <= self.computed:
            return np.zeros((0, self.config.width), np.float32)
        need = (frames - 1) * self.config.hop + self.config.reach_after - self._base
        if need > len(self._buffer):
            self._buffer = np.concatenate([self._buffer, np.zeros(need - len(self._buffer), np.float32)])
        return self._compute(frames)

    def _compute(self, stop: int) -> Float32Array:
        first = self.computed
        if stop <= first:
            return np.zeros((0, self.config.width), np.float32)
        hop, win = self.config.hop, self.config.win
        count = stop - first
        origin = first * hop - self._base  # buffer index of frame `first`'s sample
        step = self._buffer.strides[0]
        lowest, highest = self._span
        if origin + lowest < 0 or origin + (count - 1) * hop + highest + win > len(self._buffer):  # pragma: no cover
            raise AssertionError("feature windows outside the buffered samples")  # ready()/finish() prevent it
        windows = np.empty((count, len(self._starts), win), np.float32)  # (k, offsets, win)
        for j, offset in enumerate(self._starts):  # strided views: no index arrays
            view = np.lib.stride_tricks.as_strided(
                self._buffer[origin + offset :], (count, win), (hop * step, step), writeable=False
            )
            np.multiply(view, self._window, out=windows[:, j])
        spectrum = scipy.fft.rfft(windows, n=self.config.n_fft, axis=-1, workers=1)  # 3-5x numpy's, in float32
        power = (spectrum.real**2 + spectrum.imag**2).reshape(-1, spectrum.shape[-1])  # one 2-D product
        mel = np.log(power @ self._mel + np.float32(self.config.floor))
        self.computed = stop
        keep_from = stop * hop - self.config.reach_before - self._base  # first sample frame `stop` reads
        if keep_from > 0:
            self._buffer = self._buffer[keep_from:]
            self._base += keep_from
        out: Float32Array = mel.reshape(stop - first, -1).astype(np.float32, copy=False)
        return out


def features(pcm: np.ndarray, frames: int, config: FeatureConfig | None = None) -> Float32Array:
    """The first ``frames`` feature vectors of a whole signal already at ``config.rate``: shape (frames, width).

    Equal (to float32 rounding) to what :class:`FeatureStream` returns for the same samples pushed in any
    chunks, then finished.
    """
    stream = FeatureStream(config if config is not None else FeatureConfig())
    first = stream.push(pcm)
    if len(first) >= frames:
        return first[:frames]
    return np.concatenate([first, stream.finish(frames)])
