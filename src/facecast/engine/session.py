"""One engine (or browser) connection: the server side of docs/protocol.md, independent of the web framework.

The session receives decoded client messages, listens to the microphone (``engine.listen``), runs turns
through the streaming pipeline, and sends the reply over a :class:`Transport`.

- Sync: an utterance's audio goes out first; its face frames are held until the client reports
  ``playback_started`` (or sent at once when the hello says ``"acks": false``). Without an ack within
  ``ack_timeout`` seconds of the first audio the utterance is abandoned (``clear_buffer`` + error
  ``ack_timeout``): no deadlock, and never a face without its voice.
- Barge-in: when the player speaks over the character (``barge_in_ms`` of voiced audio) or the client
  sends ``interrupt``, the reply's work is cancelled, the client told to ``clear_buffer``, and nothing of
  that reply is sent afterwards.
- History: the reply enters the conversation history as what the player HEARD: the text before the
  playback position the client reports in ``playback_finished`` (or, on barge-in, the position estimated
  from the ack time).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..aio import closing
from ..audio import Resampler, float_to_pcm16, pcm16_to_float
from ..errors import FacecastError
from ..events import AudioOut, EmotionOut, FaceOut, SentenceOut, UtteranceEnded, UtteranceEvent, UtteranceStarted
from ..face.layers import AnimationLayer, Emotion
from ..llm.history import ChatHistory
from ..metrics import Metrics
from ..pipeline import Services, run_turn, say_text
from ..protocol import engine as proto
from ..types import FaceFrames, Transcript
from ..vad import TurnConfig
from .audioface import AudioFaceStream, puppet_delay
from .heard import ReplyText
from .listen import HeardUtterance, Listener, ListenerCallbacks

__all__ = ["Transport", "SessionConfig", "EngineSession", "UtteranceSink", "SinkFactory"]

log = logging.getLogger(__name__)


class Transport(Protocol):
    async def send_text(self, text: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...


class UtteranceSink(Protocol):
    """Something else that wants every utterance (Live Link output, the recorder).

    A sink may also have a ``close()`` method, called when the session ends.
    """

    def on_event(self, event: UtteranceEvent) -> None: ...

    def on_playback_started(self, utterance: int, monotonic_time: float) -> None:
        """The client started playing ``utterance`` at ``monotonic_time`` (``time.monotonic`` clock)."""
        ...

    def on_clear(self, utterance: int) -> None:
        """``utterance`` was interrupted or abandoned: drop what is left of it."""
        ...


SinkFactory = Callable[[proto.Hello], Sequence[UtteranceSink]]


@dataclass(frozen=True, slots=True)
class SessionConfig:
    ack_timeout: float = 2.0
    """Seconds to wait for ``playback_started`` after an utterance's first audio before abandoning it."""
    max_mic_seconds: float = 60.0
    """Longest player utterance; longer ones are dropped with ``utterance_too_long``."""
    persona: str | None = None
    seed: int = 0
    """Seed of the animation layer (blinks, gaze, head) applied to face frames sent over the socket."""
    turns: TurnConfig = field(default_factory=TurnConfig)
    lead: float = 1.0
    """Seconds of reply audio produced ahead of the engine's playback (0: as fast as it can be made). The
    rest is made as playback goes on, so a reply's synthesis and animation do not all land on the event
    loop at once, just when the acknowledgement must be handled and Live Link frames sent on time."""


@dataclass(slots=True)
class _Outgoing:
    utterance: int
    resampler: Resampler
    owner: asyncio.Task[Any] | None = None
    sent_samples: int = 0
    first_audio_at: float | None = None
    acked_at: float = 0.0
    audio_started: asyncio.Event = field(default_factory=asyncio.Event)
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    emotions: list[tuple[int, str]] = field(default_factory=list)
    face: asyncio.Queue[FaceFrames | None] = field(default_factory=asyncio.Queue)
    reply: ReplyText | None = None
    stages: dict[str, float] = field(default_factory=dict)
    """Monotonic times of this turn's stages, for the ``timing`` report."""


class EngineSession:
    """Protocol state for one client. Call :meth:`handle_text` / :meth:`handle_bytes` for each frame
    received and :meth:`close` when the socket goes away (it cancels all work of the session)."""

    def __init__(
        self,
        services: Services,
        transport: Transport,
        config: SessionConfig | None = None,
        sinks: SinkFactory | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self._services = services
        self._metrics = metrics
        self._tx = transport
        self._config = config or SessionConfig()
        self._sink_factory = sinks
        self._sinks: tuple[UtteranceSink, ...] = ()
        self._clock = clock
        self._layer = AnimationLayer(seed=self._config.seed)
        self.hello: proto.Hello | None = None
        self.history = ChatHistory(self._config.persona) if self._config.persona else ChatHistory()
        self.closed = asyncio.Event()
        self._next_utterance = 1
        self._turn: asyncio.Task[None] | None = None
        self._current: _Outgoing | None = None
        self._playing: _Outgoing | None = None  # sent, acknowledged, not yet reported finished
        self._listener: Listener | None = None
        self._audio_stream: AudioFaceStream | None = None
        self._audio_anchor = 0.0
        self._posts: set[asyncio.Task[None]] = set()

    # -- inbound --------------------------------------------------------------------------------
    async def handle_text(self, text: str) -> None:
        try:
            message = proto.decode_client_text(text)
        except proto.ProtocolError as exc:
            await self.send_error(exc.code, exc.message)
            return
        if self.hello is None and not isinstance(message, proto.Hello | proto.Ping | proto.Bye):
            await self.send_error("no_hello", "send a 'hello' message first")
            return
        await self._dispatch(message)

    async def handle_bytes(self, data: bytes) -> None:
        try:
            packet = proto.decode_binary(data)
        except proto.ProtocolError as exc:
            await self.send_error(exc.code, exc.message)
            return
        if self.hello is None:
            await self.send_error("no_hello", "send a 'hello' message before audio")
            return
        if not isinstance(packet, proto.MicAudio):
            await self.send_error("bad_direction", "clients may only send microphone audio (kind 1)")
            return
        try:
            pcm = pcm16_to_float(packet.pcm, self.hello.mic.channels)
        except FacecastError as exc:
            await self.send_error(exc.code, str(exc))
            return
        if self._listener is not None:
            self._listener.feed(pcm)
        else:
            self._feed_audio_face(pcm)

    async def _dispatch(self, message: proto.ClientMessage) -> None:
        if isinstance(message, proto.Hello):
            await self._on_hello(message)
        elif isinstance(message, proto.UserText):
            await self._begin_turn(message.text, typed=True)
        elif isinstance(message, proto.EndOfSpeech):
            if self._listener is None:
                await self._end_audio_face()
            elif not self._listener.end_of_speech() and self.hello is not None and self.hello.turns == "client":
                await self.send_error("no_speech", "'end_of_speech' without microphone audio since the last turn")
        elif isinstance(message, proto.PlaybackStarted):
            await self._on_playback_started(message)
        elif isinstance(message, proto.PlaybackFinished):
            self._on_playback_finished(message)
        elif isinstance(message, proto.Interrupt):
            await self.interrupt()
        elif isinstance(message, proto.Ping):
            await self._tx.send_text(proto.encode_server("pong", id=message.id))
        elif isinstance(message, proto.Bye):
            await self.close()

    async def _on_hello(self, hello: proto.Hello) -> None:
        if self.hello is not None:
            await self.send_error("out_of_order", "'hello' was already received on this connection")
            return
        if hello.workflow in ("puppet", "lipsync") and self._services.audio_face is None:
            await self.send_error("bad_config", f"the {hello.workflow} workflow needs an audio-driven face model "
                                  "(the learned model could not be loaded; see the server log)")
            return
        self.hello = hello
        if hello.workflow in ("conversation", "say"):
            callbacks = ListenerCallbacks(self._on_transcript, self._on_heard, self._on_barge_in,
                                          self._on_listen_error)
            turns = self._config.turns if hello.turns == "server" else None
            self._listener = Listener(self._services.stt, hello.mic.rate, callbacks, turns,
                                      self._config.max_mic_seconds)
        if self._sink_factory is not None:
            self._sinks = tuple(self._sink_factory(hello))
        livelink = [sink.describe() for sink in self._sinks if hasattr(sink, "describe")]
        await self._tx.send_text(
            proto.encode_server(
                "welcome", version=proto.VERSION, audio={"rate": hello.audio.rate, "channels": hello.audio.channels},
                face={"fps": 60, "width": 68, "enabled": hello.face}, acks=hello.acks,
                ack_timeout=self._config.ack_timeout, workflow=hello.workflow, turns=hello.turns,
                **({"livelink": livelink[0]} if livelink else {}),
            )
        )

    # -- audio-driven workflows (puppet, lipsync) ------------------------------------------------
    def _feed_audio_face(self, pcm: np.ndarray) -> None:
        assert self.hello is not None and self._services.audio_face is not None
        if self._audio_stream is None:
            utterance = self._next_utterance
            self._next_utterance += 1
            self._audio_stream = AudioFaceStream(self._services.audio_face, utterance, self.hello.mic.rate,
                                                 self._emit_audio_face)
            self._audio_anchor = self._audio_stream.started_at
            if self.hello.workflow == "puppet":
                self._audio_anchor += puppet_delay(self._services.audio_face)
        self._audio_stream.feed(pcm)

    async def _end_audio_face(self) -> None:
        stream, self._audio_stream = self._audio_stream, None
        if stream is None:
            await self.send_error("no_speech", "'end_of_speech' without audio since the last one")
            return
        try:
            await stream.end()
        except FacecastError as exc:
            await self.send_error(exc.code, str(exc))

    async def _emit_audio_face(self, event: UtteranceEvent) -> None:
        """Face frames of client audio go out at once, time-coded on that audio's sample clock."""
        assert self.hello is not None
        for sink in self._sinks:
            sink.on_event(event)
        if isinstance(event, UtteranceStarted):
            await self._tx.send_text(proto.encode_server(
                "utterance_start", utterance=event.utterance, rate=event.rate, channels=1))
            if self.hello.workflow == "puppet":  # no playback to wait for: the sound is live
                for sink in self._sinks:
                    sink.on_playback_started(event.utterance, self._audio_anchor)
        elif isinstance(event, FaceOut):
            if self.hello.face:
                values = self._layer.frames(self._audio_anchor + event.frames.start / 60, event.frames.values)
                await self._tx.send_bytes(proto.encode_face(event.utterance, event.frames.start, values))
        elif isinstance(event, UtteranceEnded):
            await self._tx.send_text(proto.encode_server(
                "utterance_end", utterance=event.utterance, samples=event.samples, frames=event.frames, text=""))

    # -- listening ------------------------------------------------------------------------------
    async def _on_transcript(self, result: Transcript) -> None:
        await self._tx.send_text(proto.encode_server("transcript", text=result.text, final=result.final))

    async def _on_heard(self, heard: HeardUtterance) -> None:
        stages = {"speech_end": heard.speech_end, "endpoint": heard.endpoint, "stt_final": heard.final}
        await self._begin_turn(heard.text, stages=stages)

    async def _on_barge_in(self) -> None:
        if self._turn is not None and not self._turn.done() or self._still_playing():
            await self.interrupt(reason="barge_in")

    def _still_playing(self) -> bool:
        """Whether the client is (by the clock) still playing the last acknowledged reply."""
        playing = self._playing
        if playing is None or self.hello is None:
            return False
        duration = playing.sent_samples / self.hello.audio.rate
        return self._clock() < playing.acked_at + duration + 0.25

    async def _on_listen_error(self, exc: FacecastError) -> None:
        await self.send_error(exc.code, str(exc))

    # -- turns ----------------------------------------------------------------------------------
    async def _begin_turn(self, text: str, typed: bool = False, stages: dict[str, float] | None = None) -> None:
        """Start a reply to ``text``, replacing any reply in progress."""
        stages = stages or {"speech_end": self._clock()}
        if typed:
            await self._tx.send_text(proto.encode_server("transcript", text=text, final=True, typed=True))
        await self.interrupt(reason="new_turn", notify=self._turn is not None and not self._turn.done()
                             or self._still_playing())
        self._turn = asyncio.create_task(self._run(text, stages))

    async def _run(self, text: str, stages: dict[str, float]) -> None:
        assert self.hello is not None
        utterance = self._next_utterance
        self._next_utterance += 1
        pace = (lambda produced: self._pace(utterance, produced)) if self._config.lead > 0 else None
        if self.hello.workflow == "say":
            events = say_text(utterance, text, self._services.tts, self._services.face, pace=pace)
        else:
            def first_token() -> None:
                stages.setdefault("llm_first_token", self._clock())

            events = run_turn(utterance, text, self._services, self.history, record_reply=False,
                              on_first_token=first_token, pace=pace)
        await self._stream(events, stages)

    async def _pace(self, utterance: int, produced: int) -> None:
        """Hold the reply's production to ``lead`` seconds ahead of the engine's playback of it."""
        out = self._current
        if out is None or out.utterance != utterance:
            return
        rate = out.resampler.in_rate
        ahead = produced / rate - self._config.lead
        if ahead <= 0:
            return
        await out.acked.wait()  # before the ack nothing plays (a lost ack abandons the turn, ending this wait)
        start = out.acked_at if self.hello is not None and self.hello.acks else out.first_audio_at
        wait = (start or self._clock()) + ahead - self._clock()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _stream(self, events: AsyncIterator[UtteranceEvent], stages: dict[str, float]) -> None:
        release: asyncio.Task[None] | None = None
        try:
            async with closing(events):
                async for event in events:
                    for sink in self._sinks:
                        sink.on_event(event)
                    if isinstance(event, UtteranceStarted):
                        out = self._begin(event, stages)
                        release = asyncio.create_task(self._release_face(out))
                    if isinstance(event, UtteranceEnded):
                        await self._finish(event, release)
                    else:
                        await self._send_event(event)
        except FacecastError as exc:
            await self.send_error(exc.code, str(exc))
        except ConnectionError:
            log.debug("client went away during utterance")
        except Exception as exc:  # a bug must not take the session down with it
            log.exception("utterance failed")
            await self.send_error("internal", f"the reply failed: {type(exc).__name__}: {exc}")
        finally:
            if release is not None and not release.done():
                release.cancel()
                with suppress(asyncio.CancelledError):
                    await release
            self._current = None

    def _begin(self, event: UtteranceStarted, stages: dict[str, float]) -> _Outgoing:
        assert self.hello is not None
        out = _Outgoing(event.utterance, Resampler(event.rate, self.hello.audio.rate), owner=asyncio.current_task(),
                        reply=ReplyText(event.rate), stages=stages)
        if not self.hello.acks:
            out.acked.set()
        self._current = out
        return out

    async def _send_event(self, event: UtteranceEvent) -> None:
        out = self._current
        assert out is not None and self.hello is not None
        fmt = self.hello.audio
        if isinstance(event, UtteranceStarted):
            await self._tx.send_text(proto.encode_server(
                "utterance_start", utterance=event.utterance, rate=fmt.rate, channels=fmt.channels))
        elif isinstance(event, SentenceOut):
            out.stages.setdefault("first_sentence", self._clock())
            assert out.reply is not None
            out.reply.add(event.start, event.text)
            at = round(event.start * fmt.rate / out.resampler.in_rate)
            await self._tx.send_text(
                proto.encode_server("reply_text", utterance=event.utterance, text=event.text, at=at))
        elif isinstance(event, EmotionOut):
            out.emotions.append((event.start, event.emotion))
            await self._tx.send_text(proto.encode_server("emotion", utterance=event.utterance, emotion=event.emotion))
        elif isinstance(event, AudioOut):
            out.stages.setdefault("tts_first_chunk", self._clock())
            await self._send_audio(out, out.resampler.process(event.chunk.pcm))
        elif isinstance(event, FaceOut):
            out.stages.setdefault("first_face", self._clock())
            if self.hello.face:
                out.face.put_nowait(event.frames)

    async def _finish(self, event: UtteranceEnded, release: asyncio.Task[None] | None) -> None:
        """Send the audio tail, wait until every face frame went out (after the ack), then utterance_end."""
        out = self._current
        assert out is not None and out.reply is not None
        out.reply.total = event.samples
        await self._send_audio(out, out.resampler.flush())
        out.face.put_nowait(None)
        if release is not None:
            await release
        frames = math.ceil(out.sent_samples * 60 / out.resampler.out_rate) if out.sent_samples else 0
        await self._tx.send_text(proto.encode_server(
            "utterance_end", utterance=event.utterance, samples=out.sent_samples, frames=frames, text=event.text))
        await self._send_timing(out)

    async def _send_audio(self, out: _Outgoing, pcm: np.ndarray) -> None:
        if not len(pcm):
            return
        assert self.hello is not None
        if out.first_audio_at is None:
            out.first_audio_at = self._clock()
            out.audio_started.set()
        await self._tx.send_bytes(proto.encode_audio(out.utterance, out.sent_samples,
                                                     float_to_pcm16(pcm, self.hello.audio.channels)))
        out.sent_samples += len(pcm)

    async def _release_face(self, out: _Outgoing) -> None:
        """Hold the utterance's face frames until the client's playback_started, then send them in order."""
        await out.audio_started.wait()
        assert out.first_audio_at is not None
        remaining = self._config.ack_timeout - (self._clock() - out.first_audio_at)
        try:
            await asyncio.wait_for(out.acked.wait(), max(0.0, remaining))
        except TimeoutError:
            await self._abandon(out)
            return
        rate = out.resampler.in_rate
        for start, emotion in out.emotions:
            self._layer.set_emotion(Emotion(emotion), at=out.acked_at + start / rate)
        while (frames := await out.face.get()) is not None:
            # The animation layer (blinks, gaze, head, emotion) on the client's playback clock.
            values = self._layer.frames(out.acked_at + frames.start / 60, frames.values)
            await self._tx.send_bytes(proto.encode_face(out.utterance, frames.start, values))

    async def _abandon(self, out: _Outgoing) -> None:
        if self._metrics is not None:
            self._metrics.utterances.labels("abandoned").inc()
        for sink in self._sinks:
            sink.on_clear(out.utterance)
        await self._tx.send_text(proto.encode_server("clear_buffer", utterance=out.utterance))
        await self.send_error("ack_timeout", f"no playback_started for utterance {out.utterance} within "
                              f"{self._config.ack_timeout:g} s; the utterance was abandoned")
        if out.owner is not None:
            out.owner.cancel()

    async def _send_timing(self, out: _Outgoing) -> None:
        """Per-stage times of the turn, in ms from the end of the player's speech (or typed text)."""
        base = out.stages.get("speech_end")
        if base is None:
            return
        stages = {name: round((at - base) * 1000, 2) for name, at in out.stages.items() if name != "speech_end"}
        if self._metrics is not None:
            self._metrics.observe_turn(stages)
            self._metrics.utterances.labels("completed").inc()
        await self._tx.send_text(proto.encode_server("timing", utterance=out.utterance, stages=stages))

    async def _on_playback_started(self, message: proto.PlaybackStarted) -> None:
        if self.hello is not None and self.hello.workflow == "lipsync":
            for sink in self._sinks:  # the engine plays its own audio: Live Link follows from now
                sink.on_playback_started(message.utterance, self._clock())
            return
        out = self._current
        if out is None or out.utterance != message.utterance:
            await self.send_error("out_of_order", f"playback_started for utterance {message.utterance}, "
                                  "which is not the one being sent")
            return
        if out.first_audio_at is None:
            await self.send_error("out_of_order", "playback_started before any audio of that utterance was sent")
            return
        if not out.acked.is_set():
            out.acked_at = now = self._clock()
            out.stages.setdefault("engine_ack", now)
            for sink in self._sinks:
                sink.on_playback_started(out.utterance, now)
            self._record_heard()  # a previous reply still unreported was heard in full
            self._playing = out
            out.acked.set()

    def _on_playback_finished(self, message: proto.PlaybackFinished) -> None:
        playing = self._playing
        if playing is None or playing.utterance != message.utterance or self.hello is None:
            return  # late report of a reply already recorded
        position = message.position * playing.resampler.in_rate // self.hello.audio.rate
        self._record_heard(position)

    def _record_heard(self, position: int | None = None) -> None:
        """Put the playing reply into the history, up to ``position`` (utterance samples; None = all)."""
        playing, self._playing = self._playing, None
        if playing is None or playing.reply is None:
            return
        text = playing.reply.full() if position is None else playing.reply.heard(position)
        self.history.add_assistant(text)

    # -- control --------------------------------------------------------------------------------
    async def interrupt(self, reason: str = "interrupt", notify: bool = True) -> None:
        """Stop the reply in progress: its work is cancelled, the client told to clear its buffer, and the
        history keeps what was heard up to now."""
        turn, out, playing = self._turn, self._current, self._playing
        active = turn is not None and not turn.done()
        if active:
            assert turn is not None
            turn.cancel()
            with suppress(asyncio.CancelledError):
                await turn
        target = out if active and out is not None else playing
        if target is not None and self.hello is not None:
            heard = 0
            if target.acked.is_set() and target.acked_at:
                heard = int((self._clock() - target.acked_at) * target.resampler.in_rate)
            if target is self._playing or target.acked.is_set():
                self._playing = target
                self._record_heard(heard)
            for sink in self._sinks:
                sink.on_clear(target.utterance)
            if self._metrics is not None and active:
                self._metrics.utterances.labels("interrupted").inc()
            if notify:
                await self._tx.send_text(proto.encode_server("clear_buffer", utterance=target.utterance,
                                                             reason=reason))

    def post(self, kind: str, **fields: Any) -> None:
        """Send a server event (e.g. ``failover``) from outside the session's own tasks, without waiting."""
        if self.hello is None or self.closed.is_set():
            return

        async def send() -> None:
            with suppress(Exception):
                await self._tx.send_text(proto.encode_server(kind, **fields))

        task = asyncio.get_running_loop().create_task(send())
        self._posts.add(task)
        task.add_done_callback(self._posts.discard)

    async def send_error(self, code: str, message: str) -> None:
        log.info("engine session error %s: %s", code, message)
        if self._metrics is not None:
            self._metrics.errors.labels(code).inc()
        with suppress(Exception):
            await self._tx.send_text(proto.encode_server("error", code=code, message=message))

    async def close(self) -> None:
        """Cancel everything the session runs. Safe to call more than once."""
        self.closed.set()
        if self._turn is not None and not self._turn.done():
            self._turn.cancel()
            await asyncio.gather(self._turn, return_exceptions=True)
        if self._listener is not None:
            await self._listener.close()
        if self._audio_stream is not None:
            await self._audio_stream.cancel()
            self._audio_stream = None
        for task in list(self._posts):
            task.cancel()
        await asyncio.gather(*self._posts, return_exceptions=True)
        sinks, self._sinks = self._sinks, ()
        for sink in sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                close()
