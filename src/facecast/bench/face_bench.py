"""Face model speed: the learned streaming model vs the NeuroSync architecture (random weights), same machine.

Measured on one core (onnxruntime and torch limited to one thread) with a seeded synthetic signal (speed
does not depend on the content). "x real time" = seconds of audio animated per second of compute.
"first frame" splits into the audio that must have arrived before frame 0 can exist (the model's
lookahead plus input buffering; NeuroSync needs its whole 128-frame window, or the whole clip) and the
compute time of the call that produces it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..types import Float32Array
from .report import Table, percentiles

__all__ = ["test_signal", "learned_speed", "neurosync_speed", "face_speed"]

_RATE = 22_050


def test_signal(seconds: float, rate: int = _RATE, seed: int = 0) -> Float32Array:
    """Seeded speech-like noise: a buzz with a wandering formant, gated into syllables and pauses."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    buzz = np.sign(np.sin(2 * np.pi * 120 * t)) + 0.3 * rng.standard_normal(n)
    syllables = np.clip(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)), 0, None)
    envelope = syllables * (np.sin(2 * np.pi * 0.3 * t) > -0.5)
    out: Float32Array = (0.3 * buzz * envelope).astype(np.float32)
    return out


def learned_speed(
    seconds: float = 10.0, model: str | Path | None = None, chunk_ms: float = 20.0, runs: int = 3
) -> dict[str, float]:
    """Speed of :class:`facecast.face.learned.LearnedAnimator` on one thread (best of ``runs``).

    Keys: ``offline_x_realtime`` (whole file in one call), ``stream_x_realtime`` (``chunk_ms`` chunks),
    ``chunk_p50_ms`` / ``chunk_p99_ms`` (compute per chunk), ``first_frame_audio_ms`` (audio pushed
    before frame 0 came out, in chunks), ``first_frame_compute_ms`` (that push's compute),
    ``lookahead_ms`` (the model's own lookahead).
    """
    from ..face.learned import LearnedAnimator

    animator = LearnedAnimator(model, threads=1)
    pcm = test_signal(seconds)
    animator.render(pcm[:_RATE], _RATE)  # load and warm up
    offline = min(_timed(lambda: animator.render(pcm, _RATE)) for _ in range(runs))
    step = max(1, int(_RATE * chunk_ms / 1000))
    best = float("inf")
    chunk_times: list[float] = []
    first_audio = first_compute = float("nan")
    for _ in range(runs):
        stream = animator.stream()
        times = []
        started = time.perf_counter()
        for start in range(0, len(pcm), step):
            t0 = time.perf_counter()
            frames = stream.push(pcm[start : start + step], _RATE)
            times.append(time.perf_counter() - t0)
            if frames is not None and frames.start == 0:
                first_audio = (start + step) / _RATE * 1000
                first_compute = times[-1] * 1000
        stream.end()
        elapsed = time.perf_counter() - started
        if elapsed < best:
            best, chunk_times = elapsed, times
    p50, p99 = percentiles([x * 1000 for x in chunk_times], (50, 99))
    return {
        "seconds": seconds,
        "offline_x_realtime": seconds / offline,
        "stream_x_realtime": seconds / best,
        "chunk_ms": chunk_ms,
        "chunk_p50_ms": p50,
        "chunk_p99_ms": p99,
        "first_frame_audio_ms": first_audio,
        "first_frame_compute_ms": first_compute,
        "lookahead_ms": animator.lookahead * 1000,
    }


def neurosync_speed(seconds: float = 4.3, device: str = "cpu", threads: int = 1) -> dict[str, float] | None:
    """Speed of the full-size NeuroSync network with random weights (fp16 on CUDA), or None without torch.

    Keys: ``x_realtime`` (features + windowed inference over ``seconds`` of audio), ``window_ms`` (one
    128-frame window's inference), ``features_ms``, ``first_frame_audio_ms`` (one whole window, 2133 ms),
    ``first_frame_compute_ms`` (features + one window).
    """
    try:
        import torch
    except ImportError:
        return None
    from ..face.neurosync import WINDOW, NeuroSyncAnimator, build_net, neurosync_features

    if device == "cpu":
        torch.set_num_threads(threads)
    net = build_net(device="meta").to_empty(device=device)
    with torch.no_grad():
        for p in net.parameters():
            p.uniform_(-0.02, 0.02)
    if device.startswith("cuda"):
        net = net.half()
    animator = NeuroSyncAnimator(net=net.eval(), device=device)
    pcm = test_signal(seconds)
    neurosync_features(pcm[:_RATE], _RATE)  # warm up (imports scipy.signal)
    features_s = _timed(lambda: neurosync_features(pcm, _RATE))
    features = neurosync_features(pcm, _RATE)
    animator.infer(features[:WINDOW])  # warm up
    window_s = _timed(lambda: animator.infer(features[:WINDOW]))
    total = features_s + _timed(lambda: animator.infer(features))
    return {
        "seconds": seconds,
        "x_realtime": seconds / total,
        "window_ms": window_s * 1000,
        "features_ms": features_s * 1000,
        "first_frame_audio_ms": WINDOW / 60 * 1000,
        "first_frame_compute_ms": (features_s * WINDOW / len(features) + window_s) * 1000,
    }


def _timed(fn: object) -> float:
    assert callable(fn)
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def face_speed(quick: bool = False) -> tuple[Table, dict[str, object]]:
    """The table for ``facecast bench``: learned model (whole file, 20 ms stream) vs NeuroSync (CPU, and
    CUDA fp16 when torch sees a GPU; not with ``quick``: a CPU window takes seconds)."""
    table = Table(
        "Audio-to-face speed (one thread, synthetic audio)",
        ["model", "mode", "x real time", "first frame: audio needed ms", "+ compute ms"],
        note="NeuroSync: the published architecture with random weights (its own weights are not shipped).",
    )
    raw: dict[str, object] = {}
    seconds, runs = (5.0, 2) if quick else (30.0, 3)
    learned = learned_speed(seconds=seconds, runs=runs)
    coarse = learned_speed(seconds=seconds, runs=runs, chunk_ms=100.0)
    raw["learned"], raw["learned_100ms"] = learned, coarse
    table.add("learned (ONNX)", "whole file", learned["offline_x_realtime"], "-", "-")
    for result in (learned, coarse):
        table.add(
            "learned (ONNX)",
            f"stream {result['chunk_ms']:.0f} ms chunks",
            result["stream_x_realtime"],
            result["first_frame_audio_ms"],
            result["first_frame_compute_ms"],
        )
    devices = [] if quick else ["cpu"]
    if quick:  # nor is torch imported (seconds)
        table.add("NeuroSync arch.", "not measured by --quick", "-", "-", "-")
    else:
        try:
            import torch

            if torch.cuda.is_available():
                devices.append("cuda")
        except ImportError:
            pass
    for device in devices:
        timing = neurosync_speed(seconds=2.2 if quick else 8.6, device=device)
        raw[f"neurosync_{device}"] = timing
        if timing is None:
            table.add("NeuroSync arch.", "not measured (no torch)", "-", "-", "-")
        else:
            label = "CPU fp32" if device == "cpu" else "CUDA fp16"
            table.add(
                f"NeuroSync arch. ({label})",
                "128-frame windows",
                timing["x_realtime"],
                timing["first_frame_audio_ms"],
                timing["first_frame_compute_ms"],
            )
    return table, raw
