"""Utterance sinks beside the engine WebSocket: Live Link Face output and the session recorder.

Each sink receives every event of a session's utterances (:class:`~facecast.engine.session.UtteranceSink`).
The Live Link sink holds an utterance's face frames until the engine confirms playback, then schedules them
on the pacer from that moment (frame *i* at ``ack + i / 60``); the recorder keeps every utterance as a
session folder (``audio.wav`` + ``shapes.csv``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from pathlib import Path

from ..events import AudioOut, EmotionOut, FaceOut, UtteranceEnded, UtteranceEvent, UtteranceStarted
from ..face.layers import AnimationLayer, Emotion
from ..session import SessionWriter, new_session_folder
from ..types import FaceFrames
from .livelink import LiveLinkPacer, LiveLinkSender, LiveLinkSubject, MonotonicClock, SubjectChannel, UtterancePlayback

__all__ = ["LiveLinkOutput", "LiveLinkSink", "RecorderSink"]

log = logging.getLogger(__name__)


class LiveLinkOutput:
    """The server's Live Link Face output: one UDP sender and one 60 fps pacer for every subject.

    Each subject streams its idle face continuously from the moment it is added, so the character never
    freezes between utterances. Use as an async context manager around the server's lifetime.
    """

    def __init__(self, sender: LiveLinkSender, device_id: str = "Facecast") -> None:
        self._sender = sender
        self._device_id = device_id
        self.pacer = LiveLinkPacer(sender, clock=MonotonicClock())
        self._task: asyncio.Task[None] | None = None
        self._used: dict[str, int] = {}

    async def __aenter__(self) -> LiveLinkOutput:
        await self._sender.open()
        self._task = asyncio.create_task(self.pacer.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        self._sender.close()

    def subject(self, wanted: str, seed: int = 0) -> tuple[SubjectChannel, AnimationLayer]:
        """A new subject named ``wanted`` (or ``wanted-2``, ... if the name is taken) with its own layer."""
        count = self._used.get(wanted, 0) + 1
        self._used[wanted] = count
        name = wanted if count == 1 else f"{wanted}-{count}"
        layer = AnimationLayer(seed=seed)
        subject = LiveLinkSubject(name, f"{self._device_id}:{name}")
        return self.pacer.add_subject(subject, layer), layer

    def release(self, channel: SubjectChannel) -> None:
        self.pacer.remove_subject(channel.subject.name)


class LiveLinkSink:
    """Feeds one session's utterances to its Live Link subject, anchored at the engine's playback ack."""

    def __init__(self, channel: SubjectChannel, layer: AnimationLayer, output: LiveLinkOutput | None = None) -> None:
        self.channel = channel
        self._layer = layer
        self._output = output
        self._utterance = -1
        self._rate = 0
        self._held: list[FaceFrames] = []
        self._emotions: list[tuple[int, Emotion]] = []
        self._playback: UtterancePlayback | None = None
        self._ended = False

    def describe(self) -> dict[str, object]:
        """For the client's ``welcome``: the subject it drives and, for tools on the same host, the
        ``time.monotonic()`` time of Live Link frame number 0."""
        epoch = self._output.pacer.epoch if self._output is not None else None
        return {"subject": self.channel.subject.name, "device_id": self.channel.subject.device_id, "epoch": epoch}

    def on_event(self, event: UtteranceEvent) -> None:
        if isinstance(event, UtteranceStarted):
            self._utterance, self._rate = event.utterance, event.rate
            self._held, self._emotions, self._playback, self._ended = [], [], None, False
        elif event.utterance != self._utterance:
            return
        elif isinstance(event, FaceOut):
            if self._playback is None:
                self._held.append(event.frames)
            else:
                self._playback.push(event.frames)
        elif isinstance(event, EmotionOut):
            self._emotions.append((event.start, Emotion(event.emotion)))
        elif isinstance(event, UtteranceEnded):
            self._ended = True
            if self._playback is not None:
                self._playback.finish()
        elif isinstance(event, AudioOut):
            pass

    def on_playback_started(self, utterance: int, monotonic_time: float) -> None:
        if utterance != self._utterance or self._playback is not None:
            return
        playback = self.channel.play(monotonic_time)
        for start, emotion in self._emotions:
            self._layer.set_emotion(emotion, at=monotonic_time + start / self._rate)
        for frames in self._held:
            playback.push(frames)
        self._held = []
        if self._ended:
            playback.finish()
        self._playback = playback

    def on_clear(self, utterance: int) -> None:
        if utterance == self._utterance:
            self.channel.clear()
            self._held, self._playback = [], None

    def close(self) -> None:
        """The session ended: its subject stops streaming."""
        if self._output is not None:
            self._output.release(self.channel)
            self._output = None


class RecorderSink:
    """Keeps every utterance of a session as ``ROOT/<uuid>/audio.wav`` + ``shapes.csv`` (``--record``).

    Face frames are recorded with the animation layer applied (blinks, gaze, head, emotion) on a clock that
    continues across the session's utterances, so a recording replays as the character looked. An
    utterance that is interrupted is kept up to where it was cut, audio and face trimmed to match.
    """

    def __init__(self, root: str | Path, seed: int = 0) -> None:
        self.root = Path(root)
        self._layer = AnimationLayer(seed=seed)
        self._clock = 0.0
        self._writer: SessionWriter | None = None
        self._utterance = -1
        self._rate = 0
        self.folders: list[Path] = []

    def on_event(self, event: UtteranceEvent) -> None:
        if isinstance(event, UtteranceStarted):
            self._finish()
            self._utterance, self._rate = event.utterance, event.rate
            self._writer = SessionWriter(new_session_folder(self.root), event.rate)
            return
        writer = self._writer
        if writer is None or event.utterance != self._utterance:
            return
        if isinstance(event, AudioOut):
            writer.append_audio(event.chunk.pcm)
        elif isinstance(event, FaceOut):
            t0 = self._clock + event.frames.start / 60
            writer.append_frames(self._layer.frames(t0, event.frames.values))
        elif isinstance(event, EmotionOut):
            self._layer.set_emotion(Emotion(event.emotion), at=self._clock + event.start / self._rate)
        elif isinstance(event, UtteranceEnded):
            self._finish()

    def on_playback_started(self, utterance: int, monotonic_time: float) -> None:
        return None

    def on_clear(self, utterance: int) -> None:
        if utterance == self._utterance:
            self._finish()

    def close(self) -> None:
        self._finish()

    def _finish(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        start = time.perf_counter()
        try:
            folder = writer.close()
        except OSError as exc:
            log.error("could not finish recording of utterance %d: %s", self._utterance, exc)
            return
        self._clock += writer.samples / max(1, self._rate)
        self.folders.append(folder)
        log.debug("recorded %s in %.1f ms", folder, (time.perf_counter() - start) * 1000)
