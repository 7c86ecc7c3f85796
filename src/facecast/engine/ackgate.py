"""The playback gate of one utterance: sans-I/O (no asyncio, no clock of its own; times are passed in).

An utterance's face must never show before its voice. The gate holds the utterance's face frames and its
emotions until the engine acknowledges playback (``playback_started``), then releases them on the playback
clock: frame ``i`` at ``anchor + i / 60``, an emotion at sample ``s`` from ``anchor + s / rate``, both through
the session's :class:`~facecast.engine.timeline.FaceTimeline`, so the socket and every output get the same
final frames. Without acknowledgements (``acks: false``) the first audio sent is the anchor.

Each method takes what happened and returns the :data:`Command`\\ s the caller must carry out, in order:
:class:`Started` (tell the outputs where playback started), :class:`Show` (send these final frames),
:class:`Abandon` (no ack came within ``ack_timeout`` of the first audio: clear the utterance),
:class:`Refuse` (the ack broke the protocol: report it). Nothing is released after :class:`Abandon`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..face.layers import Emotion
from ..types import FPS, FaceFrames
from .timeline import FaceTimeline

__all__ = ["Started", "Show", "Abandon", "Refuse", "Command", "AckGate"]


@dataclass(frozen=True, slots=True)
class Started:
    """Playback of ``utterance`` started at ``anchor`` (session clock): outputs schedule from there."""

    utterance: int
    anchor: float


@dataclass(frozen=True, slots=True, eq=False)
class Show:
    """Final face frames of ``utterance`` (the timeline applied), to send now, in order."""

    utterance: int
    frames: FaceFrames


@dataclass(frozen=True, slots=True)
class Abandon:
    """No ``playback_started`` within the timeout: clear ``utterance`` and stop producing it."""

    utterance: int


@dataclass(frozen=True, slots=True)
class Refuse:
    """The acknowledgement was refused (error ``code``); the gate is unchanged."""

    code: str
    message: str


Command = Started | Show | Abandon | Refuse


class AckGate:
    """Holds one utterance's face and emotions until its playback starts; see the module docstring.

    ``rate`` is the sample rate of the utterance's own audio (emotion offsets count its samples);
    ``acks`` whether the client acknowledges playback; ``ack_timeout`` seconds from the first audio.
    """

    def __init__(self, utterance: int, rate: int, timeline: FaceTimeline, *, acks: bool, ack_timeout: float) -> None:
        self.utterance = utterance
        self._rate = rate
        self._timeline = timeline
        self._acks = acks
        self._timeout = ack_timeout
        self._held: list[FaceFrames] = []
        self._emotions: list[tuple[int, Emotion]] = []
        self.first_audio: float | None = None
        """Session-clock time the first audio of the utterance was sent; None before."""
        self.anchor: float | None = None
        """Session-clock time playback started (the ack, or the first audio without acks); None before."""
        self.abandoned = False

    @property
    def deadline(self) -> float | None:
        """When :meth:`expire` abandons the utterance, while it waits for its ack; None otherwise."""
        if self.first_audio is None or self.anchor is not None or self.abandoned or not self._acks:
            return None
        return self.first_audio + self._timeout

    def audio_sent(self, now: float) -> list[Command]:
        """Audio of the utterance was sent at ``now``; the first one starts the ack timeout (or, without
        acks, playback)."""
        if self.first_audio is not None:
            return []
        self.first_audio = now
        return [] if self._acks else self._start(now)

    def ack(self, now: float) -> list[Command]:
        """The client reported ``playback_started`` at ``now``. A repeated ack, or one after the utterance
        was abandoned, does nothing; one before any audio was sent is refused."""
        if self.first_audio is None:
            return [Refuse("out_of_order", "playback_started before any audio of that utterance was sent")]
        if self.anchor is not None or self.abandoned:
            return []
        return self._start(now)

    def face(self, frames: FaceFrames) -> list[Command]:
        """The next face frames of the utterance: held before playback, shown after."""
        if self.abandoned:
            return []
        if self.anchor is None:
            self._held.append(frames)
            return []
        return [self._show(frames)]

    def emotion(self, start: int, emotion: Emotion) -> list[Command]:
        """An emotion from sample ``start`` of the utterance; scheduled on the timeline from playback."""
        if self.anchor is None:
            self._emotions.append((start, emotion))
        else:
            self._timeline.schedule_emotion(emotion, self.anchor + start / self._rate)
        return []

    def expire(self, now: float) -> list[Command]:
        """Check the ack timeout at ``now``: past the deadline without an ack, the utterance is abandoned."""
        deadline = self.deadline
        if deadline is None or now < deadline:
            return []
        self.abandoned = True
        self._held, self._emotions = [], []
        return [Abandon(self.utterance)]

    def _start(self, now: float) -> list[Command]:
        self.anchor = now
        for start, emotion in self._emotions:
            self._timeline.schedule_emotion(emotion, now + start / self._rate)
        held, self._held, self._emotions = self._held, [], []
        return [Started(self.utterance, now), *(self._show(frames) for frames in held)]

    def _show(self, frames: FaceFrames) -> Show:
        assert self.anchor is not None
        values = self._timeline.shown(self.anchor + frames.start / FPS, frames.values)
        return Show(self.utterance, FaceFrames(frames.start, values))
