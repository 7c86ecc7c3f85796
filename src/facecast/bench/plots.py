"""``facecast bench --plots DIR``: PNG plots of a benchmark run's raw numbers and of one spoken take.

* ``latency_stages.png``: every voice-to-voice table's turns, stage by stage (box plots of the raw ms);
* ``sync_error.png``: Live Link audio/face sync error, packet by packet, per subject count;
* ``jitter.png``: histogram of Live Link frame-interval jitter, per subject count;
* ``face_curves.png``: JawOpen, MouthClose and MouthFunnel of a spoken sentence over time, its phonemes
  shaded and labelled (espeak-ng and the phonetic face: the timing the face is animated from).

A plot whose data the run did not measure (``--only`` left its group out) is not written; :func:`write_plots`
says which. Plotting needs matplotlib, the ``plots`` extra (``pip install 'facecast[plots]'``); it draws
off-screen (the Agg backend), so no display is needed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..types import FPS, Float32Array

__all__ = ["TakeCurves", "CURVES", "require_matplotlib", "write_plots", "spoken_take"]

CURVES = ("JawOpen", "MouthClose", "MouthFunnel")
"""The face curves drawn by the face plot."""

SENTENCE = "Would you like some bread? The baker opens at nine."
"""The sentence of the face plot: open and closed vowels, lip closures (b, p, m) and rounding (w, oo)."""


@dataclass(frozen=True, slots=True)
class TakeCurves:
    """A take to plot: its face ``values`` (N x 68 at 60 fps), ``audio`` at ``rate``, and ``phonemes`` as
    (symbol, start s, end s)."""

    values: Float32Array
    audio: Float32Array
    rate: int
    phonemes: Sequence[tuple[str, float, float]]
    title: str = ""


def require_matplotlib() -> Any:
    """pyplot on the Agg backend. Raises :class:`~facecast.errors.ConfigError` naming the extra to install
    when matplotlib is missing (check this before a long benchmark run, not after)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # off-screen: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--plots needs matplotlib: pip install 'facecast[plots]'") from None
    return plt


async def spoken_take(text: str = SENTENCE) -> TakeCurves:
    """``text`` spoken by espeak-ng and animated by the phonetic face, with the phonemes it was animated from
    (what ``facecast say --tts espeak --face phonetic`` writes, plus the phoneme timing)."""
    from ..face.phonetic import PhoneticAnimator
    from ..tts.espeak import EspeakTTS
    from ..types import SpeechChunk

    tts = EspeakTTS()
    chunks = [chunk async for chunk in tts.synthesize(text)]

    async def replay() -> AsyncIterator[SpeechChunk]:
        for chunk in chunks:
            yield chunk

    frames = [f.values async for f in PhoneticAnimator().animate(replay())]
    rate = tts.sample_rate
    audio = np.concatenate([c.audio.pcm for c in chunks]) if chunks else np.zeros(0, np.float32)
    phonemes = [(p.symbol, p.start / rate, p.end / rate) for c in chunks for p in c.phonemes]
    values = np.concatenate(frames) if frames else np.zeros((0, 68), np.float32)
    return TakeCurves(values, audio, rate, phonemes, f'"{text}" (espeak-ng, phonetic face)')


def write_plots(
    raw: Mapping[str, Any], folder: str | Path, take: TakeCurves | None = None
) -> tuple[list[Path], list[str]]:
    """Write the plots of ``raw`` (the raw numbers of :func:`facecast.bench.run_all`) and of ``take`` into
    ``folder`` (created if needed). Returns (the files written, a sentence per plot left out for lack of
    data). Raises :class:`~facecast.errors.ConfigError` without matplotlib."""
    plt = require_matplotlib()
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    missing: list[str] = []
    for name, draw, needs in (
        ("latency_stages.png", _latency_stages, "v2v"),
        ("sync_error.png", _sync_error, "livelink"),
        ("jitter.png", _jitter, "livelink"),
    ):
        figure = draw(plt, raw)
        if figure is None:
            missing.append(f"{name}: no data (the {needs} group did not run)")
            continue
        written.append(_save(plt, figure, out / name))
    if take is not None:
        written.append(_save(plt, _face_curves(plt, take), out / "face_curves.png"))
    return written, missing


def _save(plt: Any, figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _latency_stages(plt: Any, raw: Mapping[str, Any]) -> Any:
    tables = [
        (key, data)
        for key, data in raw.items()
        if key.startswith("voice_to_voice") and isinstance(data, Mapping) and data.get("total_ms")
    ]
    if not tables:
        return None
    figure, axes = plt.subplots(len(tables), 1, figsize=(10, 1.2 + 3.2 * len(tables)), squeeze=False)
    for ax, (key, data) in zip(axes[:, 0], tables, strict=True):
        stages: Mapping[str, Sequence[float]] = data.get("stages_ms", {})
        names = ["TOTAL", *stages, "unaccounted"]
        values = [data["total_ms"], *stages.values(), data.get("unaccounted_ms", [])]
        kept = [(n, list(v)) for n, v in zip(names, values, strict=True) if len(v)]
        ax.boxplot([v for _, v in kept], orientation="horizontal", tick_labels=[n for n, _ in kept])
        ax.invert_yaxis()
        ax.set_xlabel("ms from the end of the player's speech (per stage: its own duration)")
        ax.set_title(f"{key}: {len(data['total_ms'])} turns")
        ax.grid(axis="x", alpha=0.3)
    return figure


def _subject_runs(section: Any, field: str) -> list[tuple[int, list[float]]]:
    """(subject count, values of ``field``) of a Live Link section (``subjects_N`` entries), by count."""
    if not isinstance(section, Mapping):
        return []
    runs = []
    for key, data in section.items():
        if key.startswith("subjects_") and isinstance(data, Mapping) and len(data.get(field, ())):
            runs.append((int(key.removeprefix("subjects_")), [float(v) for v in data[field]]))
    return sorted(runs)


def _sync_error(plt: Any, raw: Mapping[str, Any]) -> Any:
    runs = _subject_runs(raw.get("sync"), "sync_error_ms")
    if not runs:
        return None
    figure, ax = plt.subplots(figsize=(10, 4))
    for count, errors in runs:
        seconds = np.arange(len(errors)) / FPS
        ax.plot(seconds, errors, lw=0.8, label=f"{count} Live Link subject{'s' if count > 1 else ''}")
    ax.set_xlabel("talking time, s (the talking subject's packets, one per 1/60 s, turn after turn)")
    ax.set_ylabel("|packet arrival - its audio sample| ms")
    ax.set_title("Audio/face sync error measured by engine-sim")
    ax.legend()
    ax.grid(alpha=0.3)
    return figure


def _jitter(plt: Any, raw: Mapping[str, Any]) -> Any:
    runs = _subject_runs(raw.get("livelink_jitter"), "interval_jitter_ms")
    if not runs:
        return None
    figure, ax = plt.subplots(figsize=(10, 4))
    top = max(max(v) for _, v in runs)
    bins = np.linspace(0.0, max(top, 1.0), 60)
    for count, values in runs:
        ax.hist(values, bins=bins, histtype="step", lw=1.2, label=f"{count} subject{'s' if count > 1 else ''}")
    ax.set_yscale("log")
    ax.set_xlabel("|frame interval - 16.67 ms|, ms")
    ax.set_ylabel("packet intervals")
    ax.set_title("Live Link frame-interval jitter at the receiving socket")
    ax.legend()
    ax.grid(alpha=0.3)
    return figure


def _face_curves(plt: Any, take: TakeCurves) -> Any:
    from ..face.arkit import INDEX

    figure, (wave, curves) = plt.subplots(2, 1, figsize=(12, 5.5), sharex=True, gridspec_kw={"height_ratios": [1, 2.5]})
    seconds = np.arange(len(take.audio)) / take.rate
    wave.plot(seconds, take.audio, lw=0.4, color="0.3")
    wave.set_ylabel("audio")
    wave.set_title(take.title or "face curves against the phonemes")
    times = np.arange(len(take.values)) / FPS
    for name in CURVES:
        curves.plot(times, take.values[:, INDEX[name]], lw=1.5, label=name)
    for k, (symbol, start, end) in enumerate(take.phonemes):
        if end <= start:
            continue
        for ax in (wave, curves):
            ax.axvspan(start, end, color="tab:blue" if k % 2 else "tab:orange", alpha=0.08, lw=0)
        curves.text((start + end) / 2, 1.02, symbol, ha="center", va="bottom", fontsize=7)
    curves.set_ylim(0, 1.1)
    curves.set_xlabel("time, s (shaded: one phoneme each)")
    curves.set_ylabel("blendshape weight")
    curves.legend(loc="upper right")
    return figure
