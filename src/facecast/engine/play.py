"""``facecast play``: stream a recorded take to Live Link in real time, on its audio timeline.

A session folder (``audio.wav`` + ``shapes.csv``) or a bare take CSV (NeuroSync, Live Link Face app or
Unreal format) is sent frame by frame at ``start + i / 60`` on an absolute schedule, so a take of any length
ends exactly when its audio would. Takes recorded at another frame rate are resampled to 60 fps on their
own timeline. The audio is not played unless asked (Facecast never plays audio in a conversation; the engine
does): ``audio_out`` (``facecast play --audio``, see :mod:`facecast.play_audio`) plays a session folder's audio
here, started its output latency before frame 0 is sent so that both are perceived together.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from ..convert import resample_frames
from ..errors import InputError
from ..face.takes import Take, read_take
from ..play_audio import AudioPlayer, PlayerFactory
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
    start: float = 0.0
    """Clock time at which frame 0 was due (and the audio, if played, was heard)."""


async def play(
    path: str | Path,
    targets: tuple[LiveLinkTarget, ...],
    subject: str = "Facecast",
    lead_in: float = 0.1,
    clock: Clock | None = None,
    audio_out: PlayerFactory | None = None,
) -> PlayResult:
    """Send the take at ``path`` to ``targets`` in real time; returns when its last frame has been sent (and,
    with ``audio_out``, its audio has played out). ``audio_out`` opens a player for the session folder's audio
    before anything is sent: a bare take CSV (no audio) raises :class:`InputError`, and no output device the
    :class:`~facecast.errors.ConfigError` of :func:`facecast.play_audio.open_player`."""
    take, _ = load_take(path)
    frames = to_60fps(take.values, take.fps)
    if len(frames) == 0:
        raise InputError(f"{path} holds no frames")
    player = _open_audio(path, audio_out) if audio_out is not None else None
    try:
        async with LiveLinkSender(targets) as sender:
            pacer = LiveLinkPacer(sender, clock=clock or MonotonicClock())
            channel = pacer.add_subject(LiveLinkSubject(subject), PassthroughComposer())
            start = pacer.clock.now() + max(lead_in, player.latency + 0.05 if player else 0.0)
            playback = channel.play(start)
            playback.push(FaceFrames(0, frames))
            playback.finish()
            end = start + (len(frames) - 1) / FPS
            if player is not None:  # its first sample is heard when frame 0 is sent
                await pacer.clock.sleep_until(start - player.latency)
                player.start()
            await pacer.run(until=end)
            stats = channel.stats
        if player is not None:
            await asyncio.to_thread(player.wait)
    except BaseException:
        if player is not None:
            player.stop()
        raise
    return PlayResult(len(frames), stats.sent, stats.skipped, len(frames) / FPS, start)


def _open_audio(path: str | Path, audio_out: PlayerFactory) -> AudioPlayer:
    if not Path(path).is_dir():
        raise InputError(f"{path} is a take CSV without audio: --audio needs a session folder (audio.wav + shapes.csv)")
    session = read_session(path)
    return audio_out(session.audio, session.rate)


def run_play(
    path: str, targets: tuple[LiveLinkTarget, ...], subject: str, audio_out: PlayerFactory | None = None
) -> PlayResult:
    return asyncio.run(play(path, targets, subject, audio_out=audio_out))
