"""Take folders (NeuroSync calls them session folders): ``<folder>/audio.wav`` + ``<folder>/shapes.csv``.

NeuroSync keeps each generated utterance in ``generated/<uuid>/`` with a mono PCM16 ``audio.wav`` at
88200 Hz and a NeuroSync ``shapes.csv`` (60 fps, see :mod:`facecast.face.takes`). Facecast writes the same
layout but keeps the audio at its native rate (the TTS's or the microphone's): resampling to 88200 Hz would
add nothing but size and a resampling pass, and every reader (NeuroSync's player included) takes the rate
from the WAV header.

Invariant of a session Facecast writes: ``shapes.csv`` has exactly
``frames_for_samples(len(audio), rate)`` rows (one per 1/60 s, rounded up, see :mod:`facecast.types`).
:func:`write_session` enforces it; :class:`SessionWriter` (an incremental writer for live recording)
reconciles to it on close. :func:`read_session` reports a mismatch as :attr:`Session.warning` rather than
raising, because files from other tools often differ by a frame.

Files are written under temporary names (``audio.wav.part``, ``shapes.csv.part``) and renamed into place
when complete, so a crash mid-way never leaves a truncated ``audio.wav`` or ``shapes.csv`` behind. All
functions here do blocking file I/O: call them from a thread (``asyncio.to_thread``) inside async code.
"""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

import numpy as np
import soundfile as sf

from .audio import to_mono
from .errors import InputError
from .face.takes import Take, neurosync_header, neurosync_rows, read_take
from .types import FACE_WIDTH, FPS, Float32Array, frames_for_samples

__all__ = [
    "AUDIO_NAME",
    "SHAPES_NAME",
    "Session",
    "SessionWriter",
    "expected_frames",
    "new_session_folder",
    "write_session",
    "read_session",
]

AUDIO_NAME = "audio.wav"
SHAPES_NAME = "shapes.csv"
_PART = ".part"


def expected_frames(samples: int, rate: int, fps: float = FPS) -> int:
    """Face frames that cover ``samples`` audio samples at ``fps`` (:func:`frames_for_samples` at 60)."""
    if fps == FPS:
        return frames_for_samples(samples, rate)
    return math.ceil(samples * fps / rate) if samples > 0 else 0


@dataclass(frozen=True, slots=True, eq=False)
class Session:
    """A session folder's contents: float32 mono ``audio`` at ``rate`` and its face ``take``.

    ``warning`` is ``None`` when the take has the number of frames the audio calls for, else a sentence
    saying how they differ (the session is still usable; players should follow the audio clock).
    """

    audio: Float32Array = field(repr=False)
    rate: int
    take: Take
    warning: str | None = None

    @property
    def values(self) -> Float32Array:
        """The take's frames (N x 68, frame order)."""
        return self.take.values


def new_session_folder(root: str | Path) -> Path:
    """Create and return a fresh ``root/<uuid4>/`` folder (``root`` is created if needed)."""
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    folder = base / str(uuid.uuid4())
    folder.mkdir()
    return folder


def _check_rate(rate: int) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or not 1000 <= rate <= 384_000:
        raise ValueError(f"sample rate must be an integer from 1000 to 384000 Hz, got {rate!r}")
    return int(rate)


def _as_audio(pcm: object) -> Float32Array:
    arr = np.asarray(pcm)
    if arr.ndim != 1:
        raise ValueError(f"session audio must be 1-D float32 mono, got shape {arr.shape}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        raise ValueError("session audio must be finite (no NaN or infinity)")
    return np.clip(out, -1.0, 1.0)


def _as_frames(values: object) -> Float32Array:
    arr = np.ascontiguousarray(values, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != FACE_WIDTH:
        raise ValueError(f"face values must have shape (N, {FACE_WIDTH}), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("face values must be finite (no NaN or infinity)")
    return arr


class SessionWriter:
    """Write a session folder incrementally: append audio and face frames as a live utterance goes.

    Both files are written under ``.part`` names and renamed into place by :meth:`close`, which first
    reconciles the two streams to the session invariant: missing face frames are filled by holding the
    last frame (zeros if there is none), and face frames beyond the audio get silent audio appended.
    Used as a context manager it closes on a normal exit and :meth:`abort`\\ s (deleting the ``.part``
    files) when the block raises. Not thread-safe; blocking I/O.
    """

    def __init__(self, folder: str | Path, rate: int) -> None:
        self.folder = Path(folder)
        self.rate = _check_rate(rate)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._audio_part = self.folder / (AUDIO_NAME + _PART)
        self._shapes_part = self.folder / (SHAPES_NAME + _PART)
        self._samples = 0
        self._frames = 0
        self._last: Float32Array = np.zeros((1, FACE_WIDTH), dtype=np.float32)
        self._closed = False
        self._wav = sf.SoundFile(
            str(self._audio_part), mode="w", samplerate=self.rate, channels=1, format="WAV", subtype="PCM_16"
        )
        try:
            self._csv: IO[str] = open(self._shapes_part, "w", encoding="utf-8", newline="")
            self._csv.write(neurosync_header())
        except BaseException:
            self._wav.close()
            self._audio_part.unlink(missing_ok=True)
            raise

    @property
    def samples(self) -> int:
        """Audio samples appended so far."""
        return self._samples

    @property
    def frames(self) -> int:
        """Face frames appended so far."""
        return self._frames

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("session writer is closed")

    def append_audio(self, pcm: object) -> None:
        """Append float32 mono samples (1-D, at the writer's rate; clipped to [-1, 1])."""
        self._check_open()
        data = _as_audio(pcm)
        if len(data):
            self._wav.write(data)
            self._samples += len(data)

    def append_frames(self, values: object) -> None:
        """Append face frames (N x 68, frame order); they continue the frame count from the last call."""
        self._check_open()
        frames = _as_frames(values)
        if len(frames):
            self._csv.write(neurosync_rows(frames, self._frames))
            self._frames += len(frames)
            self._last = frames[-1:]

    def close(self) -> Path:
        """Reconcile, flush and rename both files into place; returns the folder. Idempotent."""
        if self._closed:
            return self.folder
        want = frames_for_samples(self._samples, self.rate)
        if self._frames > want:
            # Silent audio until the last face frame is covered: ceil(s * 60 / rate) == frames.
            needed = math.floor((self._frames - 1) * self.rate / FPS) + 1
            self.append_audio(np.zeros(needed - self._samples, dtype=np.float32))
        elif self._frames < want:
            self.append_frames(np.repeat(self._last, want - self._frames, axis=0))
        self._closed = True
        self._wav.close()
        self._csv.close()
        os.replace(self._audio_part, self.folder / AUDIO_NAME)
        os.replace(self._shapes_part, self.folder / SHAPES_NAME)
        return self.folder

    def abort(self) -> None:
        """Stop without finalising: close and delete the ``.part`` files. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._wav.close()
        self._csv.close()
        self._audio_part.unlink(missing_ok=True)
        self._shapes_part.unlink(missing_ok=True)

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_session(folder: str | Path, audio_pcm: object, rate: int, face_values: object) -> None:
    """Write ``folder/audio.wav`` (mono PCM16 at ``rate``) and ``folder/shapes.csv`` (NeuroSync format).

    ``audio_pcm`` is float32 mono, ``face_values`` N x 68 in frame order. Raises :class:`ValueError`,
    writing nothing, unless N == ``frames_for_samples(len(audio_pcm), rate)`` (or for bad shapes, rate or
    non-finite values). The folder is created if needed; existing session files in it are replaced.
    """
    audio = _as_audio(audio_pcm)
    frames = _as_frames(face_values)
    checked_rate = _check_rate(rate)
    want = frames_for_samples(len(audio), checked_rate)
    if len(frames) != want:
        raise ValueError(
            f"{len(frames)} face frames do not match {len(audio)} samples at {checked_rate} Hz "
            f"({want} frames at {FPS} fps)"
        )
    with SessionWriter(folder, checked_rate) as writer:
        writer.append_audio(audio)
        writer.append_frames(frames)


def _read_audio(path: Path) -> tuple[Float32Array, int]:
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise InputError(f"cannot decode session audio {path}: {exc}") from exc
    return np.ascontiguousarray(to_mono(data)), int(rate)


def read_session(folder: str | Path) -> Session:
    """Read a session folder (``audio.wav`` + ``shapes.csv``, any take format :func:`read_take` reads).

    Raises :class:`InputError` when the folder or either file is missing or unreadable. A frame count that
    differs from what the audio calls for (at the take's fps) is reported in :attr:`Session.warning`.
    """
    base = Path(folder)
    if not base.is_dir():
        raise InputError(f"session folder not found: {base}")
    for name in (AUDIO_NAME, SHAPES_NAME):
        if not (base / name).is_file():
            raise InputError(f"session folder {base} has no {name}")
    audio, rate = _read_audio(base / AUDIO_NAME)
    take = read_take(base / SHAPES_NAME)
    want = expected_frames(len(audio), rate, take.fps)
    warning = None
    if take.frames != want:
        warning = (
            f"{SHAPES_NAME} has {take.frames} frames but {AUDIO_NAME} ({len(audio)} samples at {rate} Hz) "
            f"calls for {want} at {take.fps:g} fps"
        )
    return Session(audio, rate, take, warning)
