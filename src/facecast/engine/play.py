"""``facecast play``: stream a recorded take to Live Link in real time, on its audio timeline.

A session folder (``audio.wav`` + ``shapes.csv``) or a bare take CSV (NeuroSync, Live Link Face app or
Unreal format) is sent frame by frame at ``start + i / 60`` on an absolute schedule, so a take of any length
ends exactly when its audio would. Takes recorded at another frame rate are resampled to 60 fps on their
own timeline. The audio itself is not played (Facecast never plays audio; the engine does).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from ..convert import resample_frames
from ..errors import InputError
from ..face.takes import Take, read_take
from ..takefolder import read_session
from ..types import FPS, FaceFrames, Float32Array
from .livelink import (
    Clock,
    LiveLinkPacer,
    LiveLinkSender,
    LiveLinkSubject,
    LiveLinkTarget,
    MonotonicClock,
    PassthroughComposer,
)

__all__ = ["load_take", "to_60fps", "PlayResult", "play"]


def load_take(path: str | Path) -> tuple[Take, float | None]:
    """The take at ``path`` (a session folder or a CSV file) and its audio duration in seconds, if any."""
    source = Path(path)
    if source.is_dir():
        session = read_session(source)
        return session.take, len(session.audio) / session.rate
    if source.is_file():
        return read_take(source), None
    raise InputError(f"{source} is neither a session folder nor a take CSV file")


def to_60fps(values: Float32Array, fps: float) -> Float32Array:
    """Frames taken at ``fps`` on the 60 fps grid of the same timeline (linear interpolation)."""
    return resample_frames(values, fps, FPS)


@dataclass(frozen=True, slots=True)
class PlayResult:
    frames: int
    sent: int
    skipped: int
    duration: float


async def play(
    path: str | Path,
    targets: tuple[LiveLinkTarget, ...],
    subject: str = "Facecast",
    lead_in: float = 0.1,
    clock: Clock | None = None,
) -> PlayResult:
    """Send the take at ``path`` to ``targets`` in real time; returns when its last frame has been sent."""
    take, _ = load_take(path)
    frames = to_60fps(take.values, take.fps)
    if len(frames) == 0:
        raise InputError(f"{path} holds no frames")
    async with LiveLinkSender(targets) as sender:
        pacer = LiveLinkPacer(sender, clock=clock or MonotonicClock())
        channel = pacer.add_subject(LiveLinkSubject(subject), PassthroughComposer())
        start = pacer.clock.now() + lead_in
        playback = channel.play(start)
        playback.push(FaceFrames(0, frames))
        playback.finish()
        end = start + (len(frames) - 1) / FPS
        await pacer.run(until=end)
        stats = channel.stats
    return PlayResult(len(frames), stats.sent, stats.skipped, len(frames) / FPS)


def run_play(path: str, targets: tuple[LiveLinkTarget, ...], subject: str) -> PlayResult:
    return asyncio.run(play(path, targets, subject))
