"""The listening side of a session: microphone audio in, the player's finished utterances out.

With server-side turn detection (the default), every microphone frame goes through the VAD. When a turn
starts, a speech-to-text segment opens with the pre-roll audio and receives the audio as it arrives, so the
decoder keeps up with the player. At a pause of ``end_ms - transcript_lead_ms`` the segment is closed: its
final transcript is then ready by the time the endpoint (``end_ms`` of silence) ends the turn, instead of
one decoder finalisation after it. If the player goes on before the endpoint, that segment is dropped and a
new one decodes the whole turn again (so a grammar or the language model still hears one sentence), then
the audio as it arrives. With client-side turns (push-to-talk), all audio since the last turn is one segment
that ``end_of_speech`` closes. Each turn gives exactly one final transcript.

The detector comes from :func:`facecast.turns.make_turn_detector` (``TurnConfig.detector``). The silence
detector runs inline in :meth:`Listener.feed`. The smart one asks a model (tens of ms of CPU) at pauses, so
its ``push`` runs in a worker thread: :meth:`Listener.feed` queues the audio, one task per session hands
what has queued up to the thread (one call at a time, in order) and handles the events back on the loop
exactly as the inline path does; ``end_of_speech`` is queued behind the audio that came before it.

Guesses. When a pause's transcript is ready while the turn is still open (the endpoint has not come yet),
it is offered as a guess (``ListenerCallbacks.guess``), so the reply can start on it speculatively; when the
player then goes on, the guess is withdrawn (``guess(None)``). The final transcript that follows at the
endpoint is the guess's text when nothing was said in between. A smart detector with ``text_cues`` gets the
same text (queued behind the audio that came before it, like ``end_of_speech``): "I'd like to buy the" keeps
the turn open (:meth:`facecast.turns.SmartTurnDetector.transcript`).

The floor. Each turn holds the session's :class:`~facecast.engine.floor.Floor` for the player from its start
until it is settled: its utterance handed on (after the ``utterance`` callback, which replaces any reply
waiting), or dropped (no words, too long, the session closing). A reply to an earlier turn that was cut off
waits for it (:mod:`facecast.engine.floor`).

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
from ..turns import SmartTurnDetector, make_turn_detector
from ..types import AudioChunk, Transcript
from ..vad import (
    VAD_RATE,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechSustained,
    TurnConfig,
    TurnEvent,
)
from .floor import Floor

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
    speech_end_sample: int | None = None
    """The microphone sample (at the client's mic rate, counted from the session's first) at which the VAD
    judged the speech ended; None when the client ended the turn (``end_of_speech``)."""


@dataclass(frozen=True, slots=True)
class ListenerCallbacks:
    transcript: Callable[[Transcript], Awaitable[None]]
    utterance: Callable[[HeardUtterance], Awaitable[None]]
    """A finished utterance with words in it (noise that gave no words is dropped)."""
    barge_in: Callable[[], Awaitable[None]]
    """The player has been speaking for ``barge_in_ms``: interrupt the character if it is talking."""
    error: Callable[[FacecastError], Awaitable[None]]
    guess: Callable[[str | None], Awaitable[None]] | None = None
    """The text of a pause before the endpoint (the turn is probably over), or None: the player went on and
    the last guess is void. Each guess is followed by a withdrawal or by the turn's :attr:`utterance`."""


_REPLAY_LIMIT = 10 * VAD_RATE
"""A turn longer than this (samples) keeps its segment open to the endpoint: every resumption replays the
whole turn, so a long turn with many pauses would cost quadratic decoding."""


class _Turn:
    """One player turn: all of its audio so far, and its latest speech-to-text segment."""

    def __init__(self) -> None:
        self.audio: list[np.ndarray] = []
        self.samples = 0
        self.text: asyncio.Future[str | None] | None = None
        """The latest segment's final text (None: it failed, already reported, or the turn was dropped)."""
        self.task: asyncio.Task[None] | None = None
        """The latest segment's decoding."""
        self.open = True
        """Until the endpoint (or the turn is dropped)."""
        self.guessed = False
        """A guess of this turn was offered and not withdrawn."""


class Listener:
    """Routes microphone audio to speech-to-text, one turn per player utterance."""

    def __init__(
        self,
        stt: SpeechToText,
        mic_rate: int,
        callbacks: ListenerCallbacks,
        turns: TurnConfig | None,
        max_seconds: float = 60.0,
        floor: Floor | None = None,
    ) -> None:
        self._stt = stt
        self._floor = floor
        self._cb = callbacks
        self._resampler = Resampler(mic_rate, VAD_RATE)
        self._mic_rate = mic_rate
        self._detector = make_turn_detector(turns) if turns is not None else None
        self._inbox: asyncio.Queue[tuple[np.ndarray, float] | _Text | None] | None = None
        """Audio (and pause transcripts) waiting for the smart detector's worker thread (None:
        ``end_of_speech``); None: inline."""
        if isinstance(self._detector, SmartTurnDetector):
            self._inbox = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        self._stall: asyncio.TimerHandle | None = None
        """Ends an open smart turn whose microphone stream stopped (no audio, so no silence to count)."""
        self._preroll: deque[np.ndarray] = deque()
        self._preroll_samples = 0
        self._preroll_limit = (turns.preroll_ms if turns else 0) * VAD_RATE // 1000
        self._max_samples = int(max_seconds * VAD_RATE)
        self._turn: _Turn | None = None
        self._queue: asyncio.Queue[AudioChunk | _End | None] | None = None
        """The open segment's audio (None while no segment is open)."""
        self._fed = 0
        self._pushed = 0  # samples handed to the detector (its sample clock)
        self._heard_at = 0.0  # when the last of them was captured
        self._last_voice = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def hearing(self) -> bool:
        """True while a player turn is open."""
        return self._turn is not None

    def feed(self, pcm: np.ndarray) -> None:
        """Microphone audio (float32 mono at the declared rate), in order."""
        audio = self._resampler.process(pcm)
        if not len(audio):
            return
        now = time.monotonic()
        if self._detector is None:
            if self._turn is None:
                self._begin_turn()
            self._hear(audio)
            self._last_voice = now
            return
        if self._inbox is not None:
            self._inbox.put_nowait((audio, now))
            self._start_pump()
            if self._stall is not None:
                self._stall.cancel()
                self._stall = None
            return
        self._handle(audio, self._detector.push(audio), [(len(audio), now)])

    def _handle(self, audio: np.ndarray, events: list[TurnEvent], chunks: list[tuple[int, float]]) -> None:
        """The detector's ``events`` for ``audio``, which arrived as ``chunks`` (samples, feed time): turns
        begin, pause, resume and end."""
        assert self._detector is not None
        start, self._pushed = self._pushed, self._pushed + len(audio)
        now = chunks[-1][1]
        if len(audio):
            self._heard_at = _captured(len(audio) - 1, chunks)
        if self._detector.speaking:  # the last voiced audio arrived before the silence the detector heard since
            self._last_voice = now - getattr(self._detector, "silence_ms", 0) / 1000
        for event in events:
            if isinstance(event, SpeechStarted):
                self._begin_turn()
            elif isinstance(event, SpeechResumed) and self._turn is not None and self._queue is None:
                self._withdraw(self._turn)
                self._open_segment(self._turn)
            elif isinstance(event, SpeechSustained):
                self._spawn(self._cb.barge_in())
        if not len(audio):
            pass  # events of a transcript (no audio with them)
        elif self._turn is not None:
            self._hear(audio)
        else:
            self._remember(audio)
        for event in events:
            if isinstance(event, SpeechPaused) and self._turn is not None and self._turn.samples <= _REPLAY_LIMIT:
                self._close_segment(_End(0.0, 0.0))
                self._offer_guess(self._turn, event.at)
            elif isinstance(event, SpeechPaused) and self._inbox is not None and self._detector.config.text_cues:
                self._inbox.put_nowait(_Text("", event.at))  # a long turn is not decoded at pauses: no text
            elif isinstance(event, SpeechEnded):
                # The end was detected at sample ``detected``, which arrived with one of the chunks (a batch
                # may hold seconds of audio under load); it was decided now (the model's time included).
                captured = _captured(event.detected - 1 - start, chunks)
                speech_end = captured - (event.detected - 1 - event.at) / VAD_RATE
                sample = round(event.at * self._mic_rate / VAD_RATE)  # every fed sample reaches the detector
                self._end_turn(_End(speech_end, time.monotonic(), sample))

    def end_of_speech(self) -> bool:
        """The client ended the utterance (push-to-talk). False when no utterance was open."""
        if self._inbox is not None:  # behind the audio still queued for the worker thread
            idle = self._pump is None or self._pump.done()
            if self._turn is None and self._inbox.empty() and idle:
                return False
            self._inbox.put_nowait(None)
            self._start_pump()
            return True
        return self._end_of_speech()

    def _end_of_speech(self) -> bool:
        if self._turn is None:
            return False
        if self._detector is not None:
            self._detector.force_end()
        else:  # push-to-talk may be released right at the last word: let the decoder hear it end
            self._hear(np.zeros(VAD_RATE // 5, np.float32))
        now = time.monotonic()
        self._end_turn(_End(min(self._last_voice or now, now), now))
        return True

    async def close(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._turn is not None:
            self._give_floor(self._turn)

    # -- internals -------------------------------------------------------------------------------
    def _start_pump(self) -> None:
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run_detector())
            self._tasks.add(self._pump)
            self._pump.add_done_callback(self._tasks.discard)

    async def _run_detector(self) -> None:
        """Hand the queued audio to the smart detector in a worker thread, in order, until none is left."""
        inbox, detector = self._inbox, self._detector
        assert inbox is not None and detector is not None
        while not inbox.empty():
            batch: list[np.ndarray] = []
            chunks: list[tuple[int, float]] = []
            while not inbox.empty():
                item = inbox.get_nowait()
                if item is None or isinstance(item, _Text):
                    break
                batch.append(item[0])
                chunks.append((len(item[0]), item[1]))
            if batch:
                audio = np.concatenate(batch)
                events = await asyncio.to_thread(detector.push, audio)
                self._handle(audio, events, chunks)
            if item is None:
                self._end_of_speech()
            elif isinstance(item, _Text):  # judged on the detector's clock, right after the audio before it
                assert isinstance(detector, SmartTurnDetector)
                events = detector.transcript(item.text, item.pause_at)
                if events:  # on the clock of the last sample the detector heard
                    self._handle(np.zeros(0, np.float32), events, [(0, self._heard_at)])
        if self._turn is not None and self._stall is None:
            # The turn waits for more silence, but a client may stop streaming (mic closed, or a test
            # client at the end of its file): the rest of that wait, on the wall clock, ends it then.
            assert isinstance(detector, SmartTurnDetector)
            wait = max(0.0, detector.config.max_wait_ms - detector.silence_ms) / 1000
            self._stall = asyncio.get_running_loop().call_later(wait, self._stalled)

    def _stalled(self) -> None:
        self._stall = None
        if self._turn is not None and self._inbox is not None and self._inbox.empty():
            log.debug("microphone stream stopped inside a turn: the turn ends")
            self.end_of_speech()

    def _remember(self, audio: np.ndarray) -> None:
        if not self._preroll_limit:
            return
        self._preroll.append(audio)
        self._preroll_samples += len(audio)
        while self._preroll and self._preroll_samples - len(self._preroll[0]) >= self._preroll_limit:
            self._preroll_samples -= len(self._preroll.popleft())

    def _begin_turn(self) -> None:
        """A new turn, whose audio starts with the pre-roll, and its first segment."""
        turn = self._turn = _Turn()
        turn.audio += self._preroll
        turn.samples = self._preroll_samples
        self._preroll.clear()
        self._preroll_samples = 0
        if self._floor is not None:
            self._floor.take(turn)
        self._open_segment(turn)

    def _give_floor(self, turn: _Turn) -> None:
        if self._floor is not None:
            self._floor.give(turn)

    def _open_segment(self, turn: _Turn) -> None:
        """A speech-to-text segment that decodes the whole turn so far, then the audio as it comes.

        The turn's earlier segment (closed at a pause the player then talked through) is stopped: this one
        replays its audio, so the decoder hears the turn as one utterance (a grammar or the language model
        needs the whole sentence).
        """
        queue: asyncio.Queue[AudioChunk | _End | None] = asyncio.Queue()
        self._queue, self._fed = queue, 0
        text: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        previous, turn.text = turn.task, text
        if previous is not None:
            previous.cancel()
        turn.task = asyncio.create_task(self._transcribe(queue, text, previous))
        self._tasks.add(turn.task)
        turn.task.add_done_callback(self._tasks.discard)
        for chunk in turn.audio:
            self._segment(chunk)

    def _hear(self, audio: np.ndarray) -> None:
        """Audio of the open turn: kept, and sent to the open segment if there is one."""
        turn = self._turn
        assert turn is not None
        if turn.samples + len(audio) > self._max_samples:
            if self._queue is not None:
                self._queue.put_nowait(None)
            self._queue = self._turn = None
            turn.open = False
            self._withdraw(turn)
            self._give_floor(turn)
            self._spawn(self._cb.error(_TooLong(self._max_samples / VAD_RATE)))
            return
        turn.audio.append(audio)
        turn.samples += len(audio)
        self._segment(audio)

    def _segment(self, audio: np.ndarray) -> None:
        if self._queue is not None:
            self._queue.put_nowait(AudioChunk(audio, VAD_RATE, self._fed))
            self._fed += len(audio)

    def _close_segment(self, end: _End) -> None:
        if self._queue is not None:
            self._queue.put_nowait(end)
            self._queue = None

    def _end_turn(self, end: _End) -> None:
        turn = self._turn
        if turn is None:
            return
        self._close_segment(end)
        self._turn = None
        turn.open = False
        self._spawn(self._finish(turn, end))

    def _offer_guess(self, turn: _Turn, pause_at: int) -> None:
        """Once the segment just closed at the pause that began at sample ``pause_at`` has its text: a guess,
        if the turn is still open on it, and the text to a detector that judges it."""
        guess, text, inbox = self._cb.guess, turn.text, self._inbox
        judge = inbox is not None and self._detector is not None and self._detector.config.text_cues
        if (guess is None and not judge) or text is None:
            return

        def ready(future: asyncio.Future[str | None]) -> None:
            if future.cancelled() or not turn.open or turn.text is not future:
                return  # the endpoint came first (the final follows), or the player went on
            words = future.result()
            if judge and words is not None and inbox is not None:
                inbox.put_nowait(_Text(words, pause_at))
                self._start_pump()
            if words and guess is not None:
                turn.guessed = True
                self._spawn(guess(words))

        text.add_done_callback(ready)

    def _withdraw(self, turn: _Turn) -> None:
        if turn.guessed and self._cb.guess is not None:
            turn.guessed = False
            self._spawn(self._cb.guess(None))

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish(self, turn: _Turn, end: _End) -> None:
        """Once the ended turn's last segment has its final text: the final transcript and the utterance."""
        assert turn.text is not None
        try:
            text = await turn.text
            if not text:
                self._withdraw(turn)
                if text is not None:
                    log.debug("speech without words ignored (noise, cough...)")
                return  # None: its decoding failed (already reported) or the turn was dropped
            await self._cb.transcript(Transcript(text, True))
            utterance = HeardUtterance(text, end.speech_end, end.endpoint, time.monotonic(), end.sample)
            await self._cb.utterance(utterance)
        finally:  # after the utterance began its reply (which replaced any reply waiting for the floor)
            self._give_floor(turn)

    async def _transcribe(
        self,
        queue: asyncio.Queue[AudioChunk | _End | None],
        done: asyncio.Future[str | None],
        previous: asyncio.Task[None] | None,
    ) -> None:
        ended = False

        async def chunks() -> AsyncIterator[AudioChunk]:
            nonlocal ended
            while True:
                item = await queue.get()
                if item is None:
                    return
                if isinstance(item, _End):
                    ended = True
                    return
                yield item

        text: str | None = None
        try:
            if previous is not None:  # let it give its decoder back first, so this one reuses it
                await asyncio.gather(previous, return_exceptions=True)
            async with closing(self._stt.transcribe(chunks())) as results:
                async for result in results:
                    if result.final:
                        if ended:  # else the turn was dropped (too long)
                            text = result.text.strip()
                        break
                    if result.text.strip():
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
        finally:
            if not done.done():
                done.set_result(text)


def _captured(offset: int, chunks: list[tuple[int, float]]) -> float:
    """When sample ``offset`` of the audio that arrived as ``chunks`` (samples, feed time) was captured: a
    microphone sends a chunk once its last sample is in, so a sample is ``(samples after it in its chunk) /
    VAD_RATE`` older than its chunk (the first chunk's time before it, the last one's after it)."""
    end = 0
    for samples, at in chunks:
        end += samples
        if offset < end:
            return at - (end - 1 - offset) / VAD_RATE
    return chunks[-1][1]


@dataclass(frozen=True, slots=True)
class _Text:
    """A pause's transcript for the smart detector (:meth:`~facecast.turns.SmartTurnDetector.transcript`)."""

    text: str
    pause_at: int


@dataclass(frozen=True, slots=True)
class _End:
    speech_end: float
    endpoint: float
    sample: int | None = None
    """The microphone sample at which the speech ended (the VAD's judgement), when the VAD ended the turn."""


class _TooLong(FacecastError):
    code = "utterance_too_long"

    def __init__(self, seconds: float) -> None:
        super().__init__(f"speech over {seconds:.0f} s without a pause is dropped")


class _Internal(FacecastError):
    code = "internal"

    def __init__(self) -> None:
        super().__init__("speech-to-text failed; see the server log")
