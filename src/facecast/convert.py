"""``facecast convert``: take CSVs between NeuroSync ``shapes.csv`` and the Live Link Face app's format.

Input is any take :func:`facecast.face.takes.read_take` reads (NeuroSync, Live Link Face app, Unreal's
on-device CSV), or a session folder (its ``shapes.csv``); columns are matched by name, so the app's
right-before-left ``JawRight,JawLeft`` / ``MouthRight,MouthLeft`` order never swaps a curve.

Output format: ``--to neurosync`` or ``--to livelink-app``; without it, an output named ``shapes.csv`` (or
a folder) is NeuroSync, and otherwise the format is the other one from the input's (a NeuroSync take
becomes an app take, anything else a NeuroSync take).

Frame rate: NeuroSync takes are 60 fps by definition, so a take at another rate (a 30 fps app capture) is
resampled onto the 60 fps grid of the same timeline by linear interpolation. App takes keep the input's
rate when it is a standard timecode rate, else get 60 fps; ``fps`` overrides. The app format has no emotion
columns: converting a NeuroSync take drops them (:attr:`Conversion.dropped_emotions` says whether any was
non-zero), and converting an app take gives emotions of 0. An app take's time-of-day start timecode is
kept; a take starting at 0 starts at ``00:00:00:00.000``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .errors import InputError
from .face.arkit import LIVE_LINK_COUNT
from .face.takes import TIMECODE_RATES, Take, read_take, write_livelink_app_csv, write_neurosync_csv
from .takefolder import SHAPES_NAME
from .types import FPS, Float32Array

__all__ = ["OutputFormat", "Conversion", "resample_frames", "infer_format", "convert_take", "OUTPUT_FORMATS"]

OutputFormat = Literal["neurosync", "livelink-app"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("neurosync", "livelink-app")


@dataclass(frozen=True, slots=True)
class Conversion:
    """What :func:`convert_take` wrote."""

    path: Path
    format: OutputFormat
    source_format: str
    source_fps: float
    fps: int
    source_frames: int
    frames: int
    dropped_emotions: bool

    def summary(self) -> str:
        text = (
            f"{self.path}: {self.format} take, {self.frames} frames at {self.fps} fps "
            f"(from a {self.source_format} take of {self.source_frames} frames at {self.source_fps:g} fps)"
        )
        if self.dropped_emotions:
            text += "; the 7 emotion columns were dropped (the Live Link Face app format has none)"
        return text


def resample_frames(values: Float32Array, src_fps: float, dst_fps: float) -> Float32Array:
    """Frames at ``src_fps`` resampled onto the ``dst_fps`` grid of the same timeline (linear interpolation).

    Frame ``k`` of the output is the take at ``k / dst_fps`` seconds; the output covers the input's duration
    (``round(n * dst_fps / src_fps)`` frames, at least one for a non-empty input). Same rate: returned as is.
    """
    if not (src_fps > 0 and dst_fps > 0 and math.isfinite(src_fps) and math.isfinite(dst_fps)):
        raise ValueError(f"frame rates must be positive, got {src_fps} and {dst_fps}")
    if len(values) == 0 or abs(src_fps - dst_fps) < 1e-9:
        return values
    count = max(1, round(len(values) * dst_fps / src_fps))
    src_t = np.arange(len(values), dtype=np.float64) / src_fps
    dst_t = np.arange(count, dtype=np.float64) / dst_fps
    out = np.empty((count, values.shape[1]), np.float32)
    for column in range(values.shape[1]):
        out[:, column] = np.interp(dst_t, src_t, values[:, column])
    return out


def _is_folder_target(path: Path) -> bool:
    return path.is_dir() or str(path).endswith(("/", "\\"))


def infer_format(source_format: str, out: str | Path) -> OutputFormat:
    """The output format when none is given (see the module docstring)."""
    path = Path(out)
    if _is_folder_target(path) or path.name.lower() == SHAPES_NAME:
        return "neurosync"
    return "livelink-app" if source_format == "neurosync" else "neurosync"


def _read_input(path: Path) -> Take:
    if path.is_dir():
        shapes = path / SHAPES_NAME
        if not shapes.is_file():
            raise InputError(f"{path} is a folder without a {SHAPES_NAME}")
        return read_take(shapes)
    return read_take(path)


def _app_fps(source_fps: float) -> int:
    rounded = round(source_fps)
    return rounded if abs(source_fps - rounded) < 1e-6 and rounded in TIMECODE_RATES else FPS


def convert_take(
    source: str | Path, out: str | Path, to: OutputFormat | None = None, fps: int | None = None
) -> Conversion:
    """Convert the take at ``source`` and write it at ``out`` (a file, or a folder that gets ``shapes.csv``).

    ``fps`` is the output rate for app takes (one of :data:`~facecast.face.takes.TIMECODE_RATES`); NeuroSync
    takes are always 60 fps. Raises :class:`InputError` for an unreadable input, an unknown format or rate,
    or an output that would overwrite the input.
    """
    src = Path(source)
    take = _read_input(src)
    fmt = to or infer_format(take.format, out)
    if fmt not in OUTPUT_FORMATS:
        raise InputError(f"unknown output format {fmt!r}; use one of: {', '.join(OUTPUT_FORMATS)}")
    target = Path(out)
    if _is_folder_target(target):
        if fmt != "neurosync":
            raise InputError(f"{target} is a folder: name an output file for a {fmt} take")
        target = target / SHAPES_NAME
    if target.exists() and src.exists() and target.resolve() == (src / SHAPES_NAME if src.is_dir() else src).resolve():
        raise InputError(f"the output {target} is the input: choose another path")
    if fmt == "neurosync":
        if fps is not None and fps != FPS:
            raise InputError(f"NeuroSync takes are always {FPS} fps; --fps {fps} applies to livelink-app output")
        rate = FPS
    else:
        rate = fps if fps is not None else _app_fps(take.fps)
        if rate not in TIMECODE_RATES:
            raise InputError(f"--fps {rate} is not a timecode rate; use one of {', '.join(map(str, TIMECODE_RATES))}")
    values = resample_frames(take.values, take.fps, rate)
    target.parent.mkdir(parents=True, exist_ok=True)
    dropped = False
    if fmt == "neurosync":
        write_neurosync_csv(target, values, rate)
    else:
        dropped = bool(np.any(values[:, LIVE_LINK_COUNT:] != 0))
        start = take.start_time if take.format != "neurosync" else 0.0
        write_livelink_app_csv(target, values, rate, start)
    return Conversion(target, fmt, take.format, take.fps, rate, take.frames, len(values), dropped)
