"""``--face neurosync:PATH/model.pth``: the NeuroSync audio-to-face model, for users who have its weights.

Facecast never ships or downloads these weights (they are cc-by-nc-4.0); a user points at their own
``model.pth``. The network (:mod:`facecast.face.neurosync_net`) and the features below follow
NeuroSync's published model; torch is needed (``pip install torch==2.13.0`` for the CPU build, or a CUDA
build from pytorch.org; the ``facecast[neurosync]`` extra pins torch 2.13.0), and a missing torch is a
:class:`ConfigError` naming that.

Features (:func:`neurosync_features`), 256 per 60 fps frame: the audio is resampled to 88200 Hz mono and
peak-normalised; frames of 1470 samples every 735 (120 per second, centred: the signal is zero-padded by
735 at both ends); per frame 23 MFCC (power spectrum with n_fft 1470 and a periodic Hann window, 128 Slaney
mel bands, 10 log10 with an 80 dB floor below the clip's peak, orthonormal DCT-II) normalised to zero mean
and unit variance over the clip, their deltas and delta-deltas (Savitzky-Golay, width 9), and the
autocorrelation at lags 1..187 of each DC-removed, Hann-windowed frame divided by its lag 0; then
consecutive pairs of frames are averaged into one 60 fps frame.

Inference runs over windows of 128 frames (2.13 s) that overlap by 32, cross-faded linearly; curves 0-60
are divided by 100 and clipped to [0, 1], the first 6 frames ease in from rest, and blinks, eye look,
tongue, head and eye rotations are zeroed (the animation layer supplies those). fp16 on CUDA when
available. Because of the per-clip normalisation this model cannot stream: :meth:`NeuroSyncAnimator.
animate` collects the whole utterance first (its maintainers say the same).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import AsyncGenerator, AsyncIterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..audio import resample
from ..errors import ConfigError, InputError
from ..types import FACE_WIDTH, FaceFrames, Float32Array, SpeechChunk, frames_for_samples

if TYPE_CHECKING:
    from .neurosync_net import NeuroSyncConfig, NeuroSyncNet

__all__ = [
    "TORCH_HINT",
    "RATE",
    "WINDOW",
    "OVERLAP",
    "neurosync_features",
    "postprocess",
    "build_net",
    "load_net",
    "NeuroSyncAnimator",
]

TORCH_HINT = (
    "--face neurosync needs torch: pip install torch==2.13.0 (CPU build) or a CUDA build from pytorch.org, "
    "and pip install 'facecast[neurosync]'"
)
RATE = 88_200
WINDOW = 128
OVERLAP = 32
_FRAME, _HOP, _N_MFCC, _N_MELS, _LAGS = 1470, 735, 23, 128, 187
_EASE_IN = 6
_ZEROED = np.array([0, 1, 2, 3, 4, 7, 8, 9, 10, 11, 51, *range(52, 61)], np.int64)


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ConfigError(TORCH_HINT) from exc
    return torch


def _slaney_mel(rate: int, n_fft: int, n_mels: int) -> Float32Array:
    """librosa-compatible Slaney mel filterbank (area-normalised), shape (n_mels, n_fft // 2 + 1)."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, np.float64)
        linear = f / (200.0 / 3)
        log = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (math.log(6.4) / 27.0)
        return np.where(f >= 1000.0, log, linear)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        linear = m * (200.0 / 3)
        log = 1000.0 * np.exp((math.log(6.4) / 27.0) * (m - 15.0))
        return np.where(m >= 15.0, log, linear)

    bins = np.linspace(0, rate / 2, n_fft // 2 + 1)
    points = mel_to_hz(np.linspace(hz_to_mel(np.array(0.0)), hz_to_mel(np.array(rate / 2)), n_mels + 2))
    gaps = np.diff(points)
    ramps = points[:, None] - bins[None, :]
    lower = -ramps[:-2] / gaps[:-1, None]
    upper = ramps[2:] / gaps[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (points[2:] - points[:-2]))[:, None]
    bank: Float32Array = weights.astype(np.float32)
    return bank


def _frames(signal: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    padded = np.pad(signal, (_FRAME // 2, _FRAME // 2))
    count = 1 + (len(padded) - _FRAME) // _HOP
    index = np.arange(count)[:, None] * _HOP + np.arange(_FRAME)
    framed: npt.NDArray[np.float64] = padded[index]
    return framed


def neurosync_features(pcm: np.ndarray, rate: int) -> Float32Array:
    """NeuroSync's 256 features per 60 fps frame for a whole signal (any rate), shape (frames, 256).

    ``frames_for_samples(len(pcm), rate)`` rows (the pair-averaged frames, trimmed or extended with the
    last row to that count). Raises :class:`InputError` for
    audio under ~83 ms, which NeuroSync rejects too.
    """
    from scipy.fft import dct
    from scipy.signal import savgol_filter

    want = frames_for_samples(len(pcm), rate)
    if len(pcm) < rate * 0.083:
        raise InputError("NeuroSync needs at least 83 ms of audio")
    y = resample(np.asarray(pcm, np.float32), rate, RATE).astype(np.float64)
    peak = np.abs(y).max()
    if peak > 0:
        y = y / peak
    frames = _frames(y)  # (T, 1470)
    window = np.hanning(_FRAME + 1)[:-1]  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, n=_FRAME, axis=1)) ** 2
    mel = power @ _slaney_mel(RATE, _FRAME, _N_MELS).T.astype(np.float64)
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    db = np.maximum(db, db.max() - 80.0)
    mfcc = dct(db, type=2, norm="ortho", axis=1)[:, :_N_MFCC]
    mfcc = (mfcc - mfcc.mean(axis=0)) / (mfcc.std(axis=0) + 1e-8)
    width = min(9, len(mfcc) if len(mfcc) % 2 else len(mfcc) - 1)
    if width >= 3:
        delta = savgol_filter(mfcc, width, 1, deriv=1, axis=0, mode="interp")
        delta2 = savgol_filter(mfcc, width, 2, deriv=2, axis=0, mode="interp")
    else:
        delta = delta2 = np.zeros_like(mfcc)
    centred = frames - frames.mean(axis=1, keepdims=True)
    windowed = centred * np.hanning(_FRAME + 1)[:-1]
    spectrum = np.fft.rfft(windowed, n=2 * _FRAME, axis=1)
    autocorr = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, : _LAGS + 1]
    autocorr = autocorr[:, 1:] / np.maximum(autocorr[:, :1], 1e-10)
    combined = np.concatenate([mfcc, delta, delta2, autocorr], axis=1)  # (T, 256) at 120/s
    pairs = len(combined) // 2
    out = (combined[0 : 2 * pairs : 2] + combined[1 : 2 * pairs : 2]) / 2
    if len(out) < want:
        out = np.concatenate([out, np.repeat(out[-1:], want - len(out), axis=0)])
    result: Float32Array = out[:want].astype(np.float32)
    return result


def postprocess(raw: np.ndarray) -> Float32Array:
    """Raw network output (frames, 68) -> Facecast frames: curves / 100 clipped to [0, 1], eased in over
    the first 6 frames, blinks/eye look/tongue/rotations zeroed, emotions as they are."""
    out = np.array(raw, np.float32, copy=True)
    out[:, :61] = np.clip(out[:, :61] / 100.0, 0.0, 1.0)
    out[:, _ZEROED] = 0.0
    ease = np.minimum(1.0, np.arange(len(out), dtype=np.float32) / _EASE_IN)
    out[:, :61] *= ease[:, None]
    return out


def build_net(config: NeuroSyncConfig | None = None, device: str = "cpu") -> NeuroSyncNet:
    """The network with random weights (or, on device ``meta``, none). Raises :class:`ConfigError` without torch."""
    torch = _torch()
    from .neurosync_net import NeuroSyncNet

    with torch.device(device):
        return NeuroSyncNet(config)


def _config_from(state: dict[str, Any]) -> NeuroSyncConfig:
    from .neurosync_net import NeuroSyncConfig

    try:
        hidden, input_dim = (int(v) for v in state["encoder.embedding.weight"].shape)
        ffn = int(state["encoder.transformer_encoder.0.ffn.linear1.weight"].shape[0])
        output_dim = int(state["decoder.fc_output.weight"].shape[0])
    except (KeyError, ValueError, AttributeError) as exc:
        raise ConfigError(f"not a NeuroSync state_dict (missing or odd tensor: {exc})") from exc
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.transformer_encoder."))
    heads = max(1, hidden // 64)  # head size 64, as in the published model (1024 / 16)
    return NeuroSyncConfig(input_dim, hidden, layers, heads, ffn, output_dim)


def load_net(path: str | Path, device: str | None = None) -> tuple[NeuroSyncNet, str]:
    """Load a user's ``model.pth`` strictly (every tensor name and shape must match); returns (net, device).

    Sizes are read from the weights (the published model is the default configuration; heads of 64). Uses CUDA in
    fp16 when available unless ``device`` says otherwise. Raises :class:`ConfigError` for a missing
    file, a file that is not a NeuroSync state_dict, or missing torch.
    """
    torch = _torch()
    from .neurosync_net import NeuroSyncNet

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"NeuroSync weights not found: {file} (Facecast does not ship them; give your model.pth)")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise ConfigError(f"cannot read NeuroSync weights {file}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"{file} holds no state_dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    with torch.device("meta"):
        net = NeuroSyncNet(_config_from(state))
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise ConfigError(f"{file} does not match the NeuroSync architecture: {str(exc)[:500]}") from exc
    chosen = device or ("cuda" if torch.cuda.is_available() else "cpu")
    net = net.to(chosen).eval()
    if chosen.startswith("cuda"):
        net = net.half()
    return net, chosen


def _windows(total: int) -> list[tuple[int, int]]:
    if total <= WINDOW:
        return [(0, total)]
    starts = list(range(0, total - WINDOW, WINDOW - OVERLAP)) + [total - WINDOW]
    return [(s, s + WINDOW) for s in sorted(set(starts))]


class NeuroSyncAnimator:
    """NeuroSync from the user's weights; implements :class:`facecast.roles.FaceAnimator` (not streaming).

    The weights load on first use (:class:`ConfigError` if they cannot: see :func:`load_net`); inference
    runs in a worker thread so that the event loop stays responsive. ``net`` may be given directly
    (tests, benchmarks with random weights).
    """

    def __init__(
        self, path: str | Path | None = None, *, device: str | None = None, net: NeuroSyncNet | None = None
    ) -> None:
        _torch()
        if path is None and net is None:
            raise ConfigError("--face neurosync needs the path of your model.pth: neurosync:PATH")
        self._path = path
        self._device = device or ("cpu" if net is not None else None)
        self._net = net
        self._lock = threading.Lock()

    def _loaded(self) -> tuple[NeuroSyncNet, str]:
        with self._lock:
            if self._net is None:
                assert self._path is not None
                self._net, self._device = load_net(self._path, self._device)
            elif self._device is None:
                self._device = str(next(self._net.parameters()).device)
            assert self._device is not None
            return self._net, self._device

    def infer(self, features: np.ndarray) -> Float32Array:
        """Raw outputs (frames, 68) for features (frames, 256): windows of 128 frames overlapping by 32,
        cross-faded linearly."""
        torch = _torch()
        net, device = self._loaded()
        dtype = next(net.parameters()).dtype
        total = len(features)
        out = np.zeros((total, net.config.output_dim), np.float32)
        done = 0  # frames of out that are final
        for start, stop in _windows(total):
            x = torch.from_numpy(np.ascontiguousarray(features[start:stop], np.float32))[None]
            with torch.inference_mode():
                y = net(x.to(device=device, dtype=dtype))[0].float().cpu().numpy()
            overlap = max(0, done - start)
            if overlap:
                fade = (np.arange(1, overlap + 1, dtype=np.float32) / (overlap + 1))[:, None]
                out[start:done] = out[start:done] * (1 - fade) + y[:overlap] * fade
            out[start + overlap : stop] = y[overlap:]
            done = stop
        return out

    def render(self, pcm: np.ndarray, rate: int) -> Float32Array:
        """All ``frames_for_samples(len(pcm), rate)`` frames of a signal, shape (n, 68)."""
        if frames_for_samples(len(pcm), rate) == 0:
            return np.zeros((0, FACE_WIDTH), np.float32)
        return postprocess(self.infer(neurosync_features(pcm, rate)))

    async def animate(self, speech: AsyncIterable[SpeechChunk]) -> AsyncGenerator[FaceFrames, None]:
        """Collect the utterance's audio, then yield all its frames (this model needs the whole clip).

        Audio under 83 ms gives rest frames. Chunks must share one rate (:class:`InputError`).
        """
        parts: list[np.ndarray] = []
        rate = 0
        iterator = aiter(speech)
        try:
            async for chunk in iterator:
                if rate and chunk.audio.rate != rate:
                    raise InputError(f"speech changed sample rate within an utterance ({rate} -> {chunk.audio.rate})")
                rate = chunk.audio.rate
                parts.append(chunk.audio.pcm)
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                await close()
        if not rate:
            return
        pcm = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        count = frames_for_samples(len(pcm), rate)
        if count == 0:
            return
        if len(pcm) < rate * 0.083:
            rest = np.zeros((count, FACE_WIDTH), np.float32)
            rest[:, 65] = 1.0  # Neutral
            yield FaceFrames(0, rest)
            return
        yield FaceFrames(0, await asyncio.to_thread(self.render, pcm, rate))
