"""One engine (or browser) connection: the server side of docs/protocol.md, independent of the web framework.

The session receives decoded client messages, runs turns through the streaming pipeline, and sends the
reply over a :class:`Transport`. The sync rule: an utterance's audio goes out first; its face frames are
held until the client reports ``playback_started`` for it (or sent at once when the client's hello says
``"acks": false``). If no acknowledgement arrives within ``ack_timeout`` seconds of the utterance's first
audio, the utterance is abandoned (``clear_buffer`` + an ``ack_timeout`` error), so a lost ack can never
deadlock the session and face frames are never sent without their voice.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
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
from ..pipeline import Services, run_turn, speak
from ..protocol import engine as proto
from ..types import AudioChunk, FaceFrames

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
    """Longest push-to-talk utterance; longer ones are rejected with ``utterance_too_long``."""
    persona: str | None = None
    seed: int = 0
    """Seed of the animation layer (blinks, gaze, head) applied to face frames sent over the socket."""


@dataclass(slots=True)
class _Outgoing:
    utterance: int
    resampler: Resampler
    sent_samples: int = 0
    owner: asyncio.Task[Any] | None = None
    first_audio_at: float | None = None
    acked_at: float = 0.0
    audio_started: asyncio.Event = field(default_factory=asyncio.Event)
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    emotions: list[tuple[int, str]] = field(default_factory=list)
    face: asyncio.Queue[FaceFrames | None] = field(default_factory=asyncio.Queue)


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
    ) -> None:
        self._services = services
        self._tx = transport
        self._config = config or SessionConfig()
        self._sink_factory = sinks
        self._sinks: tuple[UtteranceSink, ...] = ()
        self._clock = clock
        self._layer = AnimationLayer(seed=self._config.seed)
        self.hello: proto.Hello | None = None
        self.history = ChatHistory(self._config.persona) if self._config.persona else ChatHistory()
        self.closed = asyncio.Event()
        self._acks = True
        self._next_utterance = 1
        self._turn: asyncio.Task[None] | None = None
        self._current: _Outgoing | None = None
        self._mic: asyncio.Queue[AudioChunk | None] | None = None
        self._mic_samples = 0
        self._listen: asyncio.Task[None] | None = None

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
        await self._dispatch(message, text)

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
        await self._on_mic(packet)

    async def _dispatch(self, message: proto.ClientMessage, raw: str) -> None:
        if isinstance(message, proto.Hello):
            await self._on_hello(message, raw)
        elif isinstance(message, proto.UserText):
            self._start(self._turn_from_text(message.text))
        elif isinstance(message, proto.EndOfSpeech):
            await self._end_of_speech()
        elif isinstance(message, proto.PlaybackStarted):
            await self._on_playback_started(message)
        elif isinstance(message, proto.PlaybackFinished):
            pass  # informational in v1; the turn-taking layer uses the heard position
        elif isinstance(message, proto.Interrupt):
            await self.interrupt()
        elif isinstance(message, proto.Ping):
            await self._tx.send_text(proto.encode_server("pong", id=message.id))
        elif isinstance(message, proto.Bye):
            await self.close()

    async def _on_hello(self, hello: proto.Hello, raw: str) -> None:
        if self.hello is not None:
            await self.send_error("out_of_order", "'hello' was already received on this connection")
            return
        self.hello = hello
        self._acks = proto.decode_server_text(raw).get("acks", True) is not False
        if self._sink_factory is not None:
            self._sinks = tuple(self._sink_factory(hello))
        livelink = [sink.describe() for sink in self._sinks if hasattr(sink, "describe")]
        await self._tx.send_text(
            proto.encode_server(
                "welcome", version=proto.VERSION, audio={"rate": hello.audio.rate, "channels": hello.audio.channels},
                face={"fps": 60, "width": 68, "enabled": hello.face}, acks=self._acks,
                ack_timeout=self._config.ack_timeout, workflow=hello.workflow,
                **({"livelink": livelink[0]} if livelink else {}),
            )
        )

    async def _on_mic(self, packet: proto.MicAudio) -> None:
        assert self.hello is not None
        fmt = self.hello.mic
        try:
            pcm = pcm16_to_float(packet.pcm, fmt.channels)
        except FacecastError as exc:
            await self.send_error(exc.code, str(exc))
            return
        if self._mic is None:
            self._mic = asyncio.Queue()
            self._mic_samples = 0
            self._listen = asyncio.create_task(self._transcribe(self._mic))
        if self._mic_samples + len(pcm) > self._config.max_mic_seconds * fmt.rate:
            await self.send_error("utterance_too_long", f"speech over {self._config.max_mic_seconds:.0f} s is dropped")
            await self._drop_mic()
            return
        self._mic.put_nowait(AudioChunk(pcm, fmt.rate, self._mic_samples))
        self._mic_samples += len(pcm)

    async def _end_of_speech(self) -> None:
        if self._mic is None:
            await self.send_error("no_speech", "'end_of_speech' without microphone audio since the last turn")
            return
        self._mic.put_nowait(None)
        self._mic = None

    async def _drop_mic(self) -> None:
        self._mic = None
        if self._listen is not None:
            self._listen.cancel()
            with suppress(asyncio.CancelledError):
                await self._listen
            self._listen = None

    async def _transcribe(self, queue: asyncio.Queue[AudioChunk | None]) -> None:
        async def chunks() -> AsyncIterator[AudioChunk]:
            while (chunk := await queue.get()) is not None:
                yield chunk

        try:
            async with closing(self._services.stt.transcribe(chunks())) as results:
                async for result in results:
                    await self._tx.send_text(proto.encode_server("transcript", text=result.text, final=result.final))
                    if result.final:
                        if result.text.strip():
                            self._start(self._turn_from_text(result.text, echo=False))
                        else:
                            await self.send_error("no_speech", "no words were recognised in that speech")
        except FacecastError as exc:
            await self.send_error(exc.code, str(exc))
        except ConnectionError:
            log.debug("client went away while speaking")

    # -- turns ----------------------------------------------------------------------------------
    def _start(self, work: Awaitable[None]) -> None:
        previous = self._turn
        self._turn = asyncio.create_task(self._replace(previous, work))

    async def _replace(self, previous: asyncio.Task[None] | None, work: Awaitable[None]) -> None:
        if previous is not None and not previous.done():
            previous.cancel()
            with suppress(asyncio.CancelledError):
                await previous
        await work

    async def _turn_from_text(self, text: str, echo: bool = True) -> None:
        assert self.hello is not None
        if echo:
            await self._tx.send_text(proto.encode_server("transcript", text=text, final=True, typed=True))
        utterance = self._next_utterance
        self._next_utterance += 1
        if self.hello.workflow == "say":
            events = speak(utterance, _once(text), self._services.tts, self._services.face)
        else:
            events = run_turn(utterance, text, self._services, self.history)
        await self._stream(events)

    async def _stream(self, events: AsyncIterator[UtteranceEvent]) -> None:
        release: asyncio.Task[None] | None = None
        try:
            async with closing(events):
                async for event in events:
                    for sink in self._sinks:
                        sink.on_event(event)
                    if isinstance(event, UtteranceStarted):
                        out = self._begin(event)
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

    def _begin(self, event: UtteranceStarted) -> _Outgoing:
        assert self.hello is not None
        out = _Outgoing(event.utterance, Resampler(event.rate, self.hello.audio.rate), owner=asyncio.current_task())
        if not self._acks:
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
            at = round(event.start * fmt.rate / out.resampler.in_rate)
            await self._tx.send_text(
                proto.encode_server("reply_text", utterance=event.utterance, text=event.text, at=at))
        elif isinstance(event, EmotionOut):
            out.emotions.append((event.start, event.emotion))
            await self._tx.send_text(proto.encode_server("emotion", utterance=event.utterance, emotion=event.emotion))
        elif isinstance(event, AudioOut):
            await self._send_audio(out, out.resampler.process(event.chunk.pcm))
        elif isinstance(event, FaceOut):
            if self.hello.face:
                out.face.put_nowait(event.frames)

    async def _finish(self, event: UtteranceEnded, release: asyncio.Task[None] | None) -> None:
        """Send the audio tail, wait until every face frame went out (after the ack), then utterance_end."""
        out = self._current
        assert out is not None
        await self._send_audio(out, out.resampler.flush())
        out.face.put_nowait(None)
        if release is not None:
            await release
        frames = math.ceil(out.sent_samples * 60 / out.resampler.out_rate) if out.sent_samples else 0
        await self._tx.send_text(proto.encode_server(
            "utterance_end", utterance=event.utterance, samples=out.sent_samples, frames=frames, text=event.text))

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
        for sink in self._sinks:
            sink.on_clear(out.utterance)
        await self._tx.send_text(proto.encode_server("clear_buffer", utterance=out.utterance))
        await self.send_error("ack_timeout", f"no playback_started for utterance {out.utterance} within "
                              f"{self._config.ack_timeout:g} s; the utterance was abandoned")
        if out.owner is not None:
            out.owner.cancel()

    async def _on_playback_started(self, message: proto.PlaybackStarted) -> None:
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
            for sink in self._sinks:
                sink.on_playback_started(out.utterance, now)
            out.acked.set()

    # -- control --------------------------------------------------------------------------------
    async def interrupt(self) -> None:
        """Stop the reply in progress: its work is cancelled and the client told to clear its buffer."""
        turn, out = self._turn, self._current
        if turn is not None and not turn.done():
            turn.cancel()
            with suppress(asyncio.CancelledError):
                await turn
            if out is not None:
                for sink in self._sinks:
                    sink.on_clear(out.utterance)
                await self._tx.send_text(proto.encode_server("clear_buffer", utterance=out.utterance))

    async def send_error(self, code: str, message: str) -> None:
        log.info("engine session error %s: %s", code, message)
        with suppress(Exception):
            await self._tx.send_text(proto.encode_server("error", code=code, message=message))

    async def close(self) -> None:
        """Cancel everything the session runs. Safe to call more than once."""
        self.closed.set()
        tasks = [t for t in (self._turn, self._listen) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sinks, self._sinks = self._sinks, ()
        for sink in sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                close()


async def _once(text: str) -> AsyncIterator[str]:
    yield text

