"""The audio-driven workflows of a session: ``puppet`` and ``lipsync``.

Both feed the client's audio (binary kind-1 frames) straight to an audio-driven face animator (the learned
model) and send the face frames back as soon as they exist, numbered on the audio's own sample clock.

- ``puppet``: the microphone drives the face live. One continuous stream (utterance id 1): frame *i* belongs
  at mic sample ``round(i * rate / 60)``. Live Link plays it ``delay`` seconds behind the sound (the model's
  lookahead plus a margin), anchored when the first audio arrived.
- ``lipsync``: the engine streams audio it is about to play (e.g. from its own TTS), one segment per
  utterance, closed by ``end_of_speech``. Face frames come back at once over the socket; Live Link waits for
  the engine's ``playback_started`` for that utterance, like a normal reply.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress

import numpy as np

from ..aio import closing
from ..errors import FacecastError
from ..events import FaceOut, UtteranceEnded, UtteranceEvent, UtteranceStarted
from ..limits import MAX_BUFFERED_SAMPLES
from ..roles import FaceAnimator
from ..types import AudioChunk, SpeechChunk, frames_for_samples

__all__ = ["AudioFaceStream", "AudioBacklogError", "puppet_delay"]

log = logging.getLogger(__name__)

Emit = Callable[[UtteranceEvent], Awaitable[None]]


class AudioBacklogError(FacecastError):
    """The client sent audio faster than the face model takes it, past :data:`~facecast.limits.MAX_BUFFERED_SAMPLES`
    samples waiting: the stream was stopped (error ``too_large``)."""

    code = "too_large"


class AudioFaceStream:
    """One stream of client audio turned into face frames; ``emit`` receives the utterance events.

    At most ``max_buffered`` samples may wait for the animator: :meth:`feed` past that raises
    :class:`AudioBacklogError` and stops the stream (its later audio is dropped, :meth:`end` ends it quietly).
    """

    def __init__(
        self, animator: FaceAnimator, utterance: int, rate: int, emit: Emit, max_buffered: int = MAX_BUFFERED_SAMPLES
    ) -> None:
        self.utterance = utterance
        self.rate = rate
        self.started_at = time.monotonic()
        self._animator = animator
        self._emit = emit
        self._queue: asyncio.Queue[SpeechChunk | None] = asyncio.Queue()
        self._samples = 0
        self._waiting = 0
        self._max_buffered = max_buffered
        self.overflowed = False
        """The stream was stopped for sending audio too far ahead of the animator."""
        self._task = asyncio.create_task(self._run())

    def feed(self, pcm: np.ndarray) -> None:
        """Queue client audio. Raises :class:`AudioBacklogError` (once) when it would put more than
        ``max_buffered`` samples in front of the animator; the stream then stops and drops the rest."""
        if self.overflowed:
            return
        if self._waiting + len(pcm) > self._max_buffered:
            self.overflowed = True
            self._task.cancel()
            seconds = self._max_buffered / self.rate
            raise AudioBacklogError(
                f"audio arrives faster than the face model takes it: over {seconds:.0f} s are waiting; "
                f"utterance {self.utterance} was stopped (send end_of_speech, then stream at about real time)"
            )
        self._queue.put_nowait(SpeechChunk(AudioChunk(np.asarray(pcm, np.float32), self.rate, self._samples)))
        self._samples += len(pcm)
        self._waiting += len(pcm)

    async def end(self) -> None:
        """No more audio: finish the remaining frames, then ``UtteranceEnded`` (nothing for a stopped stream)."""
        if self.overflowed:
            await self.cancel()
            return
        self._queue.put_nowait(None)
        await self._task

    async def cancel(self) -> None:
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task

    async def _chunks(self) -> AsyncIterator[SpeechChunk]:
        while (chunk := await self._queue.get()) is not None:
            self._waiting -= len(chunk.audio.pcm)
            yield chunk

    async def _run(self) -> None:
        await self._emit(UtteranceStarted(self.utterance, self.rate))
        try:
            async with closing(self._animator.animate(self._chunks())) as frames:
                async for block in frames:
                    await self._emit(FaceOut(self.utterance, block))
        except FacecastError as exc:
            log.info("audio face stream failed: %s", exc)
            raise
        await self._emit(
            UtteranceEnded(self.utterance, self._samples, frames_for_samples(self._samples, self.rate), "")
        )


def puppet_delay(animator: FaceAnimator, margin: float = 0.05) -> float:
    """How far behind the sound Live Link plays a puppet stream: the animator's lookahead plus a margin."""
    lookahead = getattr(animator, "lookahead", 0.1)
    return float(lookahead) + margin
