"""The learned face: mouth animation from any audio, by a small streaming model run in onnxruntime.

The model (trained by ``training/``; see ``docs/face-model.md``) maps the log-mel features of
:mod:`facecast.face.features` (one vector per 60 fps frame, from audio resampled to 24 kHz) to the mouth
curves of the phonetic animator (jaw, lips, tongue). It is causal with a fixed delay: its output at step
``m`` is face frame ``m - delay``, so frame ``i`` depends on audio up to ``delay`` frames plus half a
feature window after it (79 ms with the shipped model, plus the ~4 ms reach of the resampler's filter when
the input is not at 24 kHz) and on nothing later. Its convolutions carry their left context between calls
as explicit ONNX state tensors, so audio may arrive in chunks of any size: each frame is computed (once)
as soon as the audio it needs has arrived, and the frames equal those of the whole file processed at
once (within float rounding of the matrix products, ~1e-6).

Output frames are 68 float32 values (61 Live Link curves + 7 emotions) like :class:`~facecast.face.phonetic.
PhoneticAnimator`'s: the model's mouth curves clipped to [0, 1], every other curve 0, emotion ``Neutral``
= 1. Only audio is used; phoneme timing in the speech, if any, is ignored. Nothing but numpy, soxr and
onnxruntime runs at run time; the model (~1.7 MB) is loaded on first use and shared by all animators.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import AsyncGenerator, AsyncIterable
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import Resampler
from ..errors import ConfigError, InputError
from ..types import FACE_WIDTH, FaceFrames, Float32Array, SpeechChunk, frames_for_samples
from .arkit import INDEX
from .features import FeatureConfig, FeatureStream

__all__ = ["DEFAULT_MODEL", "MouthModel", "StepKernel", "load_model", "MouthStream", "LearnedAnimator"]

DEFAULT_MODEL = Path(__file__).with_name("models") / "mouth.json"
"""The shipped model's description (its ONNX file lies beside it)."""

_NEUTRAL = INDEX["Neutral"]
_BLOCK = 2048  # model steps per onnxruntime call at most (bounds memory on long files)
_SMALL = 8  # calls of at most this many steps run in numpy (StepKernel) when the model ships its weights


class StepKernel:
    """The model's function in plain numpy, for the few steps of one streaming call.

    A small call (one or two frames, the 20 ms chunk case) costs onnxruntime ~40 kernel launches; the
    same arithmetic as ~50 numpy operations is about twice as fast, and gives the same values to float
    rounding (~1e-7). Weights come from the ``.npz`` that ``training/export.py`` writes beside the ONNX
    file (the same tensors, channels-first): ``inp_w`` (width, n_in), ``conv_w{i}`` (width, kernel x width,
    taps oldest first), ``mix_w{i}``, ``out_w`` and their biases ``*_b``, and ``dilations``.
    """

    def __init__(self, arrays: dict[str, np.ndarray], state_shapes: tuple[tuple[int, ...], ...]) -> None:
        def weight(name: str) -> Float32Array:
            return np.ascontiguousarray(arrays[name], np.float32)

        def bias(name: str) -> Float32Array:
            return np.ascontiguousarray(arrays[name], np.float32).reshape(-1, 1)

        self.dilations = [int(d) for d in arrays["dilations"]]
        self.inp = (weight("inp_w"), bias("inp_b"))
        count = len(self.dilations)
        self.convs = [(weight(f"conv_w{i}"), bias(f"conv_b{i}")) for i in range(count)]
        self.mix = [(weight(f"mix_w{i}"), bias(f"mix_b{i}")) for i in range(count)]
        self.out = (weight("out_w"), bias("out_b"))
        width = self.inp[0].shape[0]
        self.kernel = self.convs[0][0].shape[1] // width if count else 1
        sizes = [(self.kernel - 1) * d for d in self.dilations]
        if [tuple(s) for s in state_shapes] != [(width, size) for size in sizes]:
            raise ValueError(f"step weights of states {sizes} do not match the model's {state_shapes}")

    def run(self, features: Float32Array, states: list[Float32Array]) -> tuple[Float32Array, list[Float32Array]]:
        steps = len(features)
        w, b = self.inp
        h = w @ features.T
        h += b
        np.maximum(h, 0.0, out=h)
        new_states = []
        for (cw, cb), (mw, mb), state, d in zip(self.convs, self.mix, states, self.dilations, strict=True):
            full = np.concatenate((state[0], h), axis=1)
            new_states.append(full[None, :, steps:])
            if self.kernel == 3:
                taps = np.concatenate((full[:, :steps], full[:, d : d + steps], full[:, 2 * d :]), axis=0)
            else:
                taps = np.concatenate([full[:, k * d : k * d + steps] for k in range(self.kernel)], axis=0)
            y = cw @ taps
            y += cb
            np.maximum(y, 0.0, out=y)
            z = mw @ y
            z += mb
            h += z  # h is this call's own array (full is a copy), so in place is safe
        np.maximum(h, 0.0, out=h)
        w, b = self.out
        out = w @ h
        out += b
        return np.ascontiguousarray(out.T), new_states


class MouthModel:
    """A loaded mouth model: its onnxruntime session and description (``mouth.json``).

    Build it with :func:`load_model`. :meth:`run` is safe to call from several threads at once (each
    stream keeps its own state). Raises :class:`ConfigError` when the files are missing, inconsistent,
    or onnxruntime is not installed.
    """

    def __init__(self, description: str | Path, threads: int = 1) -> None:
        path = Path(description)
        try:
            info: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            if info.get("format") != 1:
                raise ValueError(f"unsupported format {info.get('format')!r}")
            self.features = FeatureConfig.from_json(info["features"])
            self.delay = int(info["delay"])
            self.channels: tuple[str, ...] = tuple(info["channels"])
            self.state_shapes: tuple[tuple[int, ...], ...] = tuple(tuple(int(v) for v in s) for s in info["states"])
            onnx_path = path.with_name(str(info["onnx"]))
            weights = onnx_path.read_bytes()
        except (OSError, ValueError, KeyError, TypeError, InputError) as exc:
            raise ConfigError(f"cannot load the face model {path}: {exc}") from exc
        if info.get("sha256") not in (None, hashlib.sha256(weights).hexdigest()):
            raise ConfigError(f"face model {onnx_path} does not match the checksum in {path} (damaged file?)")
        unknown = [c for c in self.channels if c not in INDEX or INDEX[c] > 51]
        if unknown or self.delay < 0:
            raise ConfigError(f"face model {path} names unknown channels {unknown} or a negative delay")
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - a default dependency
            raise ConfigError("--face learned needs onnxruntime: pip install onnxruntime") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(weights, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise ConfigError(f"onnxruntime cannot load {onnx_path}: {exc}") from exc
        self._state_names = [f"state{k}" for k in range(len(self.state_shapes))]
        self.channel_index = np.array([INDEX[c] for c in self.channels], np.int64)
        self.path = path
        self.step: StepKernel | None = None
        step = info.get("step")
        if step:
            step_path = path.with_name(str(step["file"]))
            try:
                raw = step_path.read_bytes()
                if step.get("sha256") not in (None, hashlib.sha256(raw).hexdigest()):
                    raise ValueError("does not match the checksum in the model description (damaged file?)")
                with np.load(step_path) as arrays:
                    self.step = StepKernel(dict(arrays), self.state_shapes)
            except (OSError, ValueError, KeyError, IndexError) as exc:
                raise ConfigError(f"cannot load the face model's step weights {step_path}: {exc}") from exc

    @property
    def lookahead(self) -> float:
        """Seconds of audio past a frame's time that its values depend on (at the feature rate)."""
        return (self.delay * self.features.hop + self.features.reach_after) / self.features.rate

    def initial_states(self) -> list[Float32Array]:
        return [np.zeros((1, *shape), np.float32) for shape in self.state_shapes]

    def run(self, features: Float32Array, states: list[Float32Array]) -> tuple[Float32Array, list[Float32Array]]:
        """Model outputs (T, channels) for feature vectors (T, width), and the states after them.

        A few steps (<= 8, streaming) run in numpy when the model has step weights, more in onnxruntime;
        both give the same values to float rounding.
        """
        if self.step is not None and 0 < len(features) <= _SMALL:
            return self.step.run(np.asarray(features, np.float32), states)
        outs: list[Float32Array] = []
        for start in range(0, len(features), _BLOCK):
            feed = {"features": np.ascontiguousarray(features[None, start : start + _BLOCK], np.float32)}
            feed.update(zip(self._state_names, states, strict=True))
            result = self._session.run(None, feed)
            outs.append(np.asarray(result[0][0], np.float32))
            states = [np.asarray(s, np.float32) for s in result[1:]]
        if not outs:
            return np.zeros((0, len(self.channels)), np.float32), states
        return (outs[0] if len(outs) == 1 else np.concatenate(outs)), states


_MODELS: dict[tuple[Path, int], MouthModel] = {}
_MODELS_LOCK = threading.Lock()


def load_model(description: str | Path | None = None, threads: int = 1) -> MouthModel:
    """The model described by ``description`` (default: the shipped one), loaded once per process."""
    path = Path(description if description is not None else DEFAULT_MODEL).resolve()
    with _MODELS_LOCK:
        model = _MODELS.get((path, threads))
        if model is None:
            model = _MODELS[(path, threads)] = MouthModel(path, threads)
        return model


class MouthStream:
    """One utterance's streaming state: feed audio with :meth:`push`, then call :meth:`end` once.

    Each call returns the frames that became final (consecutive, from frame 0), or None. The audio's
    rate is set by the first push (any rate from 1 kHz; it is resampled to the model's); a later push at
    another rate raises :class:`InputError`. :meth:`end` returns the rest, up to
    ``frames_for_samples(total samples, rate)`` frames in all.
    """

    def __init__(self, model: MouthModel) -> None:
        self._model = model
        self._features = FeatureStream(model.features)
        self._states = model.initial_states()
        self._resampler: Resampler | None = None
        self.rate = 0
        self.samples = 0  # input samples received
        self.steps = 0  # model steps run (== feature vectors consumed)
        self.emitted = 0  # frames returned
        self.ended = False

    def push(self, pcm: np.ndarray, rate: int) -> FaceFrames | None:
        if self.ended:
            raise InputError("audio pushed after the end of the utterance")
        if self._resampler is None:
            self._resampler = Resampler(rate, self._model.features.rate)
            self.rate = rate
        elif rate != self.rate:
            raise InputError(f"speech changed sample rate within an utterance ({self.rate} -> {rate} Hz)")
        data = np.asarray(pcm, np.float32).reshape(-1)
        self.samples += len(data)
        return self._step(self._features.push(self._resampler.process(data)), None)

    def end(self) -> FaceFrames | None:
        if self.ended:
            return None
        self.ended = True
        if self._resampler is None:
            return None
        total = frames_for_samples(self.samples, self.rate)
        head = self._features.push(self._resampler.flush())
        tail = self._features.finish(total + self._model.delay)
        return self._step(np.concatenate([head, tail]) if len(tail) else head, total)

    def _step(self, feats: Float32Array, limit: int | None) -> FaceFrames | None:
        if len(feats):
            out, self._states = self._model.run(feats, self._states)
            first = self.steps - self._model.delay  # the frame of out[0]
            self.steps += len(out)
            skip = max(0, self.emitted - first)
            values = out[skip:]
            if limit is not None:
                values = values[: max(0, limit - self.emitted)]
        else:
            values = np.zeros((0, len(self._model.channels)), np.float32)
        if not len(values):
            return None
        frames = np.zeros((len(values), FACE_WIDTH), np.float32)
        frames[:, _NEUTRAL] = 1.0
        frames[:, self._model.channel_index] = np.clip(values, 0.0, 1.0)
        start = self.emitted
        self.emitted += len(values)
        return FaceFrames(start, frames)


class LearnedAnimator:
    """Mouth animation from audio alone; implements :class:`facecast.roles.FaceAnimator`.

    ``model``: a model description (``mouth.json``) to use instead of the shipped one; ``threads``:
    onnxruntime threads (1 keeps it to one core; it is hundreds of times faster than real time there).
    The model is loaded on first use (:class:`ConfigError` if it cannot be). An instance holds no
    per-utterance state: it may animate any number of utterances at once.
    """

    def __init__(self, model: str | Path | None = None, *, threads: int = 1) -> None:
        self._path = model
        self._threads = threads
        self._model: MouthModel | None = None

    @property
    def source(self) -> str | None:
        """The model description it was given (None: the shipped model), to build the same animator elsewhere."""
        return None if self._path is None else str(self._path)

    @property
    def model(self) -> MouthModel:
        if self._model is None:
            self._model = load_model(self._path, self._threads)
        return self._model

    @property
    def lookahead(self) -> float:
        """Seconds of audio past a frame's time that the frame depends on (0.079 s with the shipped model,
        plus ~4 ms of resampler filter for input not at 24 kHz)."""
        return self.model.lookahead

    def stream(self) -> MouthStream:
        """A new utterance's synchronous streaming state (for callers without an async speech stream)."""
        return MouthStream(self.model)

    async def animate(self, speech: AsyncIterable[SpeechChunk]) -> AsyncGenerator[FaceFrames, None]:
        """Turn one utterance's audio into 60 fps frames (:class:`facecast.roles.FaceAnimator`).

        Frames are yielded in order from frame 0, each as soon as the audio its lookahead needs has
        arrived, then the rest when ``speech`` ends. Chunks must share one sample rate
        (:class:`InputError` otherwise). The model runs inline (about 0.1 ms per 20 ms chunk). If this
        generator is closed early, it closes ``speech``'s iterator too.
        """
        state = self.stream()
        iterator = aiter(speech)
        try:
            async for chunk in iterator:
                frames = state.push(chunk.audio.pcm, chunk.audio.rate)
                if frames is not None:
                    yield frames
            frames = state.end()
            if frames is not None:
                yield frames
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                await close()

    def render(self, pcm: np.ndarray, rate: int) -> Float32Array:
        """All ``frames_for_samples(len(pcm), rate)`` frames of a whole signal, shape (n, 68).

        The frames :meth:`animate` yields for the same audio however it is chunked (to float rounding).
        """
        state = self.stream()
        parts = [f for f in (state.push(pcm, rate), state.end()) if f is not None]
        if not parts:
            return np.zeros((0, FACE_WIDTH), np.float32)
        return np.concatenate([p.values for p in parts])
