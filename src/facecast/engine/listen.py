"""The listening side of a session: microphone audio in, the player's finished utterances out.

With server-side turn detection (the default), every microphone frame goes through the VAD; when a turn
starts, a speech-to-text stream opens with the pre-roll audio and receives the audio as it arrives (so its
final transcript is ready almost as soon as the player stops), and the endpoint closes it. With client-side
turns (push-to-talk), all audio since the last turn is one utterance that ``end_of_speech`` closes.

Times reported in :class:`HeardUtterance` are ``time.monotonic()`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass

import numpy as np

from ..aio import closing
from ..audio import Resampler
from ..errors import FacecastError
from ..roles import SpeechToText
from ..types import AudioChunk, Transcript
from ..vad import VAD_RATE, SpeechEnded, SpeechStarted, SpeechSustained, TurnConfig, TurnDetector, WebRtcVad

__all__ = ["HeardUtterance", "ListenerCallbacks", "Listener"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HeardUtterance:
    text: str
    speech_end: float
    """When the player's last voiced audio arrived."""
    endpoint: float
    """When the end of the turn was decided (VAD endpoint or ``end_of_speech``)."""
    final: float
    """When speech-to-text gave its final transcript."""


@dataclass(frozen=True, slots=True)
class ListenerCallbacks:
    transcript: Callable[[Transcript], Awaitable[None]]
    utterance: Callable[[HeardUtterance], Awaitable[None]]
    """A finished utterance with words in it (noise that gave no words is dropped)."""
    barge_in: Callable[[], Awaitable[None]]
    """The player has been speaking for ``barge_in_ms``: interrupt the character if it is talking."""
    error: Callable[[FacecastError], Awaitable[None]]


class Listener:
    """Routes microphone audio to speech-to-text, one stream per player utterance."""

    def __init__(
        self, stt: SpeechToText, mic_rate: int, callbacks: ListenerCallbacks, turns: TurnConfig | None,
        max_seconds: float = 60.0,
    ) -> None:
        self._stt = stt
        self._cb = callbacks
        self._resampler = Resampler(mic_rate, VAD_RATE)
        self._detector = TurnDetector(WebRtcVad(turns.aggressiveness), turns) if turns is not None else None
        self._preroll: deque[np.ndarray] = deque()
        self._preroll_samples = 0
        self._preroll_limit = (turns.preroll_ms if turns else 0) * VAD_RATE // 1000
        self._max_samples = int(max_seconds * VAD_RATE)
        self._queue: asyncio.Queue[AudioChunk | _End | None] | None = None
        self._fed = 0
        self._last_voice = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._sustained: asyncio.Task[None] | None = None

    @property
    def hearing(self) -> bool:
        """True while a player utterance is open."""
        return self._queue is not None

    def feed(self, pcm: np.ndarray) -> None:
        """Microphone audio (float32 mono at the declared rate), in order."""
        audio = self._resampler.process(pcm)
        if not len(audio):
            return
        now = time.monotonic()
        if self._detector is None:
            if self._queue is None:
                self._open()
            self._send(audio)
            self._last_voice = now
            return
        events = self._detector.push(audio)
        if self._detector.speaking:
            self._last_voice = now
        for event in events:
            if isinstance(event, SpeechStarted):
                self._open()
                for chunk in self._preroll:
                    self._send(chunk)
                self._preroll.clear()
                self._preroll_samples = 0
            elif isinstance(event, SpeechSustained):
                self._spawn(self._cb.barge_in())
        if self._queue is not None:
            self._send(audio)
        else:
            self._remember(audio)
        for event in events:
            if isinstance(event, SpeechEnded):
                speech_end = now - (event.detected - event.at) / VAD_RATE
                self._close(speech_end, now)

    def end_of_speech(self) -> bool:
        """The client ended the utterance (push-to-talk). False when no utterance was open."""
        if self._queue is None:
            return False
        if self._detector is not None:
            self._detector.force_end()
        else:  # push-to-talk may be released right at the last word: let the decoder hear it end
            self._send(np.zeros(VAD_RATE // 5, np.float32))
        now = time.monotonic()
        self._close(min(self._last_voice or now, now), now)
        return True

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- internals -------------------------------------------------------------------------------
    def _remember(self, audio: np.ndarray) -> None:
        if not self._preroll_limit:
            return
        self._preroll.append(audio)
        self._preroll_samples += len(audio)
        while self._preroll and self._preroll_samples - len(self._preroll[0]) >= self._preroll_limit:
            self._preroll_samples -= len(self._preroll.popleft())

    def _open(self) -> None:
        queue: asyncio.Queue[AudioChunk | _End | None] = asyncio.Queue()
        self._queue, self._fed = queue, 0
        self._spawn(self._transcribe(queue))

    def _send(self, audio: np.ndarray) -> None:
        assert self._queue is not None
        if self._fed + len(audio) > self._max_samples:
            self._queue.put_nowait(None)
            self._queue = None
            self._spawn(self._cb.error(_TooLong(self._max_samples / VAD_RATE)))
            return
        self._queue.put_nowait(AudioChunk(audio, VAD_RATE, self._fed))
        self._fed += len(audio)

    def _close(self, speech_end: float, endpoint: float) -> None:
        if self._queue is not None:
            self._queue.put_nowait(_End(speech_end, endpoint))
            self._queue = None

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _transcribe(self, queue: asyncio.Queue[AudioChunk | _End | None]) -> None:
        end: _End | None = None

        async def chunks() -> AsyncIterator[AudioChunk]:
            nonlocal end
            while True:
                item = await queue.get()
                if item is None:
                    return
                if isinstance(item, _End):
                    end = item
                    return
                yield item

        try:
            async with closing(self._stt.transcribe(chunks())) as results:
                async for result in results:
                    if result.final:
                        if end is None:  # the utterance was dropped (too long)
                            return
                        if result.text.strip():
                            await self._cb.transcript(result)
                            await self._cb.utterance(
                                HeardUtterance(result.text, end.speech_end, end.endpoint, time.monotonic()))
                        else:
                            log.debug("speech without words ignored (noise, cough...)")
                    elif result.text.strip():
                        await self._cb.transcript(result)
        except FacecastError as exc:
            await self._cb.error(exc)
        except ConnectionError:
            log.debug("client went away while listening")
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not silently deafen the session
            log.exception("speech-to-text failed")
            with suppress(Exception):
                await self._cb.error(_Internal())


@dataclass(frozen=True, slots=True)
class _End:
    speech_end: float
    endpoint: float


class _TooLong(FacecastError):
    code = "utterance_too_long"

    def __init__(self, seconds: float) -> None:
        super().__init__(f"speech over {seconds:.0f} s without a pause is dropped")


class _Internal(FacecastError):
    code = "internal"

    def __init__(self) -> None:
        super().__init__("speech-to-text failed; see the server log")
