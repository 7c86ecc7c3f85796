"""Smart Turn v3.2: a semantic end-of-turn model that hears whether the player has finished speaking.

The model (``smart-turn-v3.2-cpu.onnx``, 8.7 MB, BSD-2-Clause, by Daily) ships inside the ``pipecat-ai``
wheel. Pipecat is never imported nor a dependency: :func:`ensure_model` copies that one file into
``<cache_root()>/smart-turn-v3.2/`` once, from an installed ``pipecat-ai`` if there is one, else from the
wheel fetched with ``pip download --no-deps pipecat-ai==1.14.0`` into a temporary folder (only the ``.onnx``
member is read), checks its SHA-256 and records its size, so a later start costs one stat.
``python -m facecast.smartturn`` does this at install time (``make`` runs it).

Facts of the model (from its published interface): input ``input_features`` float32 ``(batch, 80, 800)``,
Whisper-style log-mel features of exactly 8 s of 16 kHz audio: the LAST 8 s of the turn, zero-padded at the
start when shorter; the waveform is normalised to zero mean and unit variance first; 25 ms Hann windows
every 10 ms (centred, reflect-padded), 80 Slaney mel bands, ``log10`` floored at 1e-10, the last frame
dropped, clamped to 8 below the maximum, then ``(x + 4) / 4``. Output: one value per item, the probability
(already a sigmoid) that the turn is complete.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

import numpy as np

from .errors import ConfigError, InputError, ServiceError
from .modelcache import cache_root, pip_download
from .modelcache import file_sha256 as _sha256

__all__ = [
    "MODEL_NAME",
    "MODEL_SHA256",
    "SOURCE",
    "LICENCE",
    "SmartTurnModel",
    "ensure_model",
    "log_mel",
    "shared_model",
]

log = logging.getLogger(__name__)

MODEL_NAME = "smart-turn-v3.2-cpu.onnx"
MODEL_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
SOURCE = ("pipecat-ai", "1.14.0", "pipecat/audio/turn/smart_turn/data/" + MODEL_NAME)
"""(distribution, version, path inside its wheel) of the model file."""
LICENCE = "BSD-2-Clause (Daily, smart-turn v3.2)"

RATE = 16000
_WINDOW = 8 * RATE
_N_FFT = 400
_HOP = 160
_N_MELS = 80
_FOLDER = "smart-turn-v3.2"
_MARKER = ".facecast-assembled.json"


# -- features ------------------------------------------------------------------------------------------
@functools.cache
def _slaney_mel_filters() -> np.ndarray:
    """(80, 201) triangular filters on the Slaney mel scale (linear below 1 kHz, logarithmic above),
    area-normalised; the same bank Whisper uses."""
    from faster_whisper.feature_extractor import FeatureExtractor

    return np.asarray(FeatureExtractor.get_mel_filters(RATE, _N_FFT, n_mels=_N_MELS), np.float64)


_HANN = np.hanning(_N_FFT + 1)[:-1]  # periodic Hann


def log_mel(audio: np.ndarray) -> np.ndarray:
    """The model's input for ``audio`` (16 kHz mono float): float32 ``(80, 800)`` of the last 8 s."""
    x = np.asarray(audio, np.float32).reshape(-1)[-_WINDOW:]
    x = np.concatenate([np.zeros(_WINDOW - len(x), np.float32), x])
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), _N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP]
    power = np.abs(np.fft.rfft(frames * _HANN, axis=-1)) ** 2  # (801, 201)
    mel = np.log10(np.maximum(_slaney_mel_filters() @ power.T, 1e-10))[:, :-1]
    mel = np.maximum(mel, mel.max() - 8.0)
    features: np.ndarray = ((mel + 4.0) / 4.0).astype(np.float32)
    return features


# -- the model file ------------------------------------------------------------------------------------
def _ready(folder: Path) -> bool:
    try:
        recorded = json.loads((folder / _MARKER).read_text(encoding="utf-8"))
        return bool((folder / MODEL_NAME).stat().st_size == recorded["sizes"][MODEL_NAME])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _installed_copy() -> Path | None:
    """The file inside an installed ``pipecat-ai`` (found through its metadata; pipecat is not imported)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(SOURCE[0])
    except metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if str(entry).replace("\\", "/").endswith(SOURCE[2]):
            path = Path(str(dist.locate_file(entry)))
            return path if path.is_file() else None
    return None


def _download(dest: Path) -> Path:
    """The model file extracted from the ``pipecat-ai`` wheel that ``pip download`` brings into ``dest``."""
    dist, version, member = SOURCE
    wheel_file = pip_download(
        f"{dist}=={version}", dest, ("--only-binary", ":all:"), "*.whl", what="the smart-turn model", timeout=600
    )
    target = dest / MODEL_NAME
    with zipfile.ZipFile(wheel_file) as wheel, wheel.open(member) as source, target.open("wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
    return target


def ensure_model(root: Path | None = None) -> Path:
    """The path of the smart-turn ONNX file in the model cache, putting it there first if needed.

    Raises :class:`ServiceError` when it cannot be obtained (no ``pipecat-ai`` installed and pip cannot
    reach PyPI) or does not match its checksum; nothing half-written is left behind.
    """
    folder = (root or cache_root()) / _FOLDER
    if _ready(folder):
        return folder / MODEL_NAME
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="facecast-smartturn-", dir=folder.parent) as tmp:
        staging = Path(tmp) / "model"
        staging.mkdir()
        source = _installed_copy()
        if source is None:
            log.info("fetching the smart-turn model (%s %s wheel, once) ...", SOURCE[0], SOURCE[1])
            source = _download(Path(tmp))
        target = staging / MODEL_NAME
        shutil.copyfile(source, target)
        if _sha256(target) != MODEL_SHA256:
            raise ServiceError(f"the smart-turn model from {source} does not match its SHA-256 (damaged or changed)")
        marker = {"sizes": {MODEL_NAME: target.stat().st_size}, "sha256": MODEL_SHA256, "source": list(SOURCE)}
        (staging / _MARKER).write_text(json.dumps(marker), encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    return folder / MODEL_NAME


# -- the model -----------------------------------------------------------------------------------------
class SmartTurnModel:
    """Smart Turn v3.2 on onnxruntime (CPU, ``threads`` intra-op threads; 1 keeps one decision on one core).

    ``path``: the ONNX file (default: :func:`ensure_model`, which may fetch it once). :meth:`probability`
    may be called from several threads at once (an onnxruntime session is thread-safe), so one model
    serves every session of a server. Raises :class:`ConfigError` for a ``path`` that is not a readable
    model, :class:`ServiceError` when the default model cannot be obtained.
    """

    def __init__(self, path: Path | None = None, threads: int = 1) -> None:
        import onnxruntime as ort

        if threads < 1:
            raise ConfigError(f"smart-turn threads must be at least 1, got {threads}")
        self.path = Path(path) if path is not None else ensure_model()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for a missing or bad file
            raise ConfigError(f"cannot load the smart-turn model {self.path}: {exc}") from exc
        self._input = self._session.get_inputs()[0].name

    def probability(self, audio: np.ndarray) -> float:
        """P(the turn is complete) for ``audio``: the turn so far, 16 kHz float32 mono (only its last 8 s
        are heard). Raises :class:`InputError` for empty or non-finite audio."""
        data = np.asarray(audio, np.float32).reshape(-1)
        if not len(data) or not np.isfinite(data).all():
            raise InputError("smart-turn needs non-empty, finite 16 kHz audio")
        (out,) = self._session.run(None, {self._input: log_mel(data)[None]})
        return float(np.clip(np.asarray(out).reshape(-1)[0], 0.0, 1.0))


_SHARED: dict[str, SmartTurnModel | None] = {}
_SHARED_LOCK = threading.Lock()


def shared_model() -> SmartTurnModel | None:
    """The server-wide model, loaded on the first call (a server calls this at start-up, so no turn waits
    for it); None, after ONE warning, when it cannot be had: turns then end on silence alone."""
    with _SHARED_LOCK:
        if "model" not in _SHARED:
            try:
                _SHARED["model"] = SmartTurnModel()
            except (ConfigError, ServiceError) as exc:
                log.warning("smart turn detection is off (%s); turns end after silence alone", exc)
                _SHARED["model"] = None
        return _SHARED["model"]


if __name__ == "__main__":  # python -m facecast.smartturn: put the model into the cache (install time)
    try:
        print(ensure_model())
    except ServiceError as exc:
        print(f"facecast: {exc}", file=sys.stderr)
        sys.exit(1)
