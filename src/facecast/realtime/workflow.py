"""The ``conversation`` workflow on a speech-to-speech model (``--realtime``), with failover to the classic
STT -> LLM -> TTS pipeline.

- Turns: the MODEL's server-side voice activity detection decides when the player's turn ends and when a
  response starts (OpenAI ``server_vad``, Gemini's automatic activity detection): the model hears the raw
  microphone and answers on its own, and a second VAD here would only disagree with it. A push-to-talk
  ``end_of_speech`` only sends the model the trailing silence its VAD waits for.
- Replies: each model response is one utterance (:mod:`.speech`): its audio deltas, resampled to the
  client's rate, with face frames from the audio-driven animator, behind the same playback gate and lead
  pacing as every reply (:class:`facecast.engine.replies.Replies`).
- Barge-in: when the model hears the player start speaking while a reply is playing, the reply's work is
  cancelled, the client gets ``clear_buffer``, and the model is told to cancel the response and truncate it
  to what was played (OpenAI ``response.cancel`` + ``conversation.item.truncate`` with ``audio_end_ms`` =
  the time since the client's ``playback_started``, at most the audio sent; Gemini stops by itself).
- History: the player's words from the model's input transcription, the character's as heard (the
  playback position, like every reply); ``action_result`` goes into the history.
- Actions: the character's actions are offered as function tools; a call becomes an ``action`` message on
  the utterance clock, and the model is answered at once (``{"status": "sent to the game"}``, or why the
  call was refused) so it never waits on the game.
- Failover: when the model cannot be reached, refuses the key, rate-limits, or the socket drops (at the
  start or later), the session switches to the classic pipeline of the same services, says so with a
  ``failover`` message (``role`` ``realtime``), and replays into it the microphone audio the model had not
  answered yet (and typed text not yet sent), so nothing the player said is lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any

import numpy as np

from ..actions import check_call
from ..aio import closing
from ..audio import Resampler, float_to_pcm16
from ..engine.context import Mic, SessionContext
from ..engine.replies import Replies
from ..engine.workflows import Conversation, Inbound, Workflow
from ..errors import ServiceError
from ..events import UtteranceEvent
from ..llm.history import EMOTION_TAGS_RULE
from ..pipeline import Pace
from ..protocol import engine as proto
from ..roles import RealtimeConnection, SpeechToSpeech
from .events import (
    AppendAudio,
    AudioDelta,
    CancelResponse,
    FunctionCall,
    InputTranscript,
    RealtimeCommand,
    RealtimeEvent,
    RealtimeFailure,
    RealtimeSetup,
    ResponseDone,
    ResponseStarted,
    SpeechStarted,
    SpeechStopped,
    ToolResult,
    TranscriptDelta,
    UserInput,
)
from .speech import Action, ResponseStream, speak_response

__all__ = ["RealtimeConversation", "start_realtime"]

log = logging.getLogger(__name__)

END_SILENCE = 1.0
"""Seconds of silence sent to the model after a push-to-talk ``end_of_speech`` (more than its VAD's
end-of-turn silence, 500 ms by default)."""

OUTPUT_RATE = 24000
"""The rate both APIs answer at (a delta at another rate is resampled to it)."""


def start_realtime(ctx: SessionContext, model: SpeechToSpeech) -> Workflow:
    """The ``conversation`` workflow of a session whose services have a realtime model."""
    return RealtimeConversation(ctx, model)


class RealtimeConversation:
    """A :class:`~facecast.engine.workflows.Workflow` answering through ``model`` (see the module docstring)."""

    def __init__(self, ctx: SessionContext, model: SpeechToSpeech) -> None:
        self._ctx = ctx
        self._model = model
        self.name = str(getattr(model, "describe", lambda: type(model).__name__)())
        self.replies = Replies(ctx, self._produce)
        self._conn: RealtimeConnection | None = None
        """The open session, once what arrived while connecting was sent (input then goes straight to it)."""
        self._opened: RealtimeConnection | None = None
        """The open session from the moment it opened (closed by a failover or :meth:`close`)."""
        self._to_model: Resampler | None = None
        self._fallback: Workflow | None = None
        self._unsent: list[np.ndarray | str] = []
        """Microphone audio and typed text that arrived before the session was open."""
        self._unanswered: list[np.ndarray] = []
        """Microphone audio since the model last took a turn (replayed into the pipeline on failover)."""
        self._unanswered_samples = 0
        self._typed: list[str] = []
        self._heard: list[str] = []
        self._last_heard = ""
        self._pending_user: list[str] = []
        """The player's transcribed turns not yet in the history (they go in when their answer begins)."""
        self._user_late = False
        """The current answer began before the transcript of the turn it answers arrived."""
        self._speech_end: float | None = None
        self._stream: ResponseStream | None = None
        """The response being received."""
        self._latest: ResponseStream | None = None
        """The latest response given to a reply (it may still be playing)."""
        self._acks: dict[int, float] = {}
        self._discarding = False
        """A barge-in cut the answer being received: its remaining events are dropped."""
        self._closed = False
        self.failed_over = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    # -- the client's input ---------------------------------------------------------------------------
    async def receive(self, message: Inbound) -> None:
        if self._fallback is not None:
            await self._fallback.receive(message)
            return
        ctx = self._ctx
        if isinstance(message, Mic):
            self._keep(message.pcm)
            if self._conn is None:
                self._unsent.append(message.pcm)
            else:
                await self._send_mic(message.pcm)
        elif isinstance(message, proto.UserText):
            await ctx.send(proto.TranscriptUpdate(message.text, final=True, typed=True))
            self._typed.append(message.text)
            if self._conn is None:
                self._unsent.append(message.text)
            else:
                await self._send(UserInput(message.text))
        elif isinstance(message, proto.PlaybackStarted):
            self._acks[message.utterance] = ctx.clock()
            await self.replies.playback_started(message)
        elif isinstance(message, proto.PlaybackFinished):
            self.replies.playback_finished(message)
        elif isinstance(message, proto.Interrupt):
            await self.interrupt()
        elif isinstance(message, proto.ActionResult):
            call = self.replies.actions_sent.pop(message.id, None)
            if call is None:
                await ctx.error("bad_message", f"'action_result' for {message.id!r}, which is not a pending action")
                return
            outcome = "done" if message.ok else "failed"
            if message.result is not None:
                outcome += f" ({json.dumps(message.result, ensure_ascii=False)})"
            ctx.history.add_result(f"{call.name} {json.dumps(call.arguments, ensure_ascii=False)}: {outcome}")
        elif isinstance(message, proto.EndOfSpeech):
            await self._end_of_speech()

    async def _end_of_speech(self) -> None:
        """Push-to-talk released: the microphone stops, so the model's VAD would never hear the turn end.
        It is given the silence it waits for (:data:`END_SILENCE` s); the model still decides the turn."""
        pcm = np.zeros(int(END_SILENCE * self._ctx.hello.mic.rate), np.float32)
        if self._conn is None:
            self._unsent.append(pcm)
        else:
            await self._send_mic(pcm)

    def _keep(self, pcm: np.ndarray) -> None:
        self._unanswered.append(pcm)
        self._unanswered_samples += len(pcm)
        limit = int(self._ctx.config.max_mic_seconds * self._ctx.hello.mic.rate)
        while self._unanswered_samples > limit and len(self._unanswered) > 1:
            self._unanswered_samples -= len(self._unanswered.pop(0))

    async def _send_mic(self, pcm: np.ndarray, conn: RealtimeConnection | None = None) -> None:
        assert self._to_model is not None
        resampled = self._to_model.process(pcm)
        if len(resampled):
            await self._send(AppendAudio(float_to_pcm16(resampled)), conn)

    async def _send(self, command: RealtimeCommand, conn: RealtimeConnection | None = None) -> None:
        conn = conn or self._conn
        if conn is None or self._fallback is not None:
            return
        try:
            await conn.send(command)
        except ServiceError as exc:
            await self._failover(exc.code, str(exc))

    # -- the model's session --------------------------------------------------------------------------
    def _setup(self) -> RealtimeSetup:
        """The character's persona (its speaking rules, less the emotion tags a voice model would read out)
        and its actions as tools."""
        system = [m.content for m in self._ctx.history.messages() if m.role == "system"]
        instructions = "\n\n".join(system).replace(EMOTION_TAGS_RULE, "").strip()
        return RealtimeSetup(instructions, tuple(self._ctx.hello.actions))

    async def _run(self) -> None:
        try:
            conn = await self._model.connect(self._setup())
        except ServiceError as exc:
            await self._failover(exc.code, str(exc))
            return
        except Exception:  # a bug must not leave the player unheard: the pipeline takes over
            log.exception("opening the realtime session failed")
            await self._failover("internal", "opening the realtime session failed (see the server log)")
            return
        log.info("realtime session open: %s", self.name)
        self._to_model = Resampler(self._ctx.hello.mic.rate, conn.input_rate)
        self._opened = conn
        try:
            while self._unsent and self._fallback is None:  # what came while connecting, in order
                item = self._unsent.pop(0)
                await (self._send(UserInput(item), conn) if isinstance(item, str) else self._send_mic(item, conn))
            if self._fallback is not None:
                return
            self._conn = conn  # from now on input goes straight to the model (no await since the last check)
            async with closing(conn.events()) as events:
                async for event in events:
                    if self._fallback is not None:
                        break
                    await self._on_event(event)
        except ConnectionError:
            log.debug("the client went away during a realtime session")
        except Exception:
            log.exception("the realtime session failed")
            await self._failover("internal", "the realtime session failed (see the server log)")

    async def _on_event(self, event: RealtimeEvent) -> None:
        ctx = self._ctx
        if isinstance(event, SpeechStarted):
            self._user_late = False
            if self.replies.active:
                await self._barge_in("barge_in", True)
        elif isinstance(event, SpeechStopped):
            self._speech_end = ctx.clock()
        elif isinstance(event, InputTranscript):
            await self._on_transcript(event)
        elif isinstance(event, ResponseStarted):
            self._discarding = False
            await self._begin()
        elif self._discarding and isinstance(event, AudioDelta | TranscriptDelta | FunctionCall | ResponseDone):
            return  # the rest of an answer cut by a barge-in, sent before the model took the cancel
        elif isinstance(event, AudioDelta | TranscriptDelta):
            if self._stream is None:
                await self._begin()
            assert self._stream is not None
            self._stream.put(event)
        elif isinstance(event, FunctionCall):
            await self._on_call(event)
        elif isinstance(event, ResponseDone):
            stream, self._stream = self._stream, None
            if stream is not None:
                stream.finish()
        elif isinstance(event, RealtimeFailure):
            if event.fatal:
                await self._failover(event.code, event.message)
            else:
                log.info("realtime: %s", event.message)
                await ctx.error(event.code, event.message)

    async def _on_transcript(self, event: InputTranscript) -> None:
        ctx = self._ctx
        if not event.final:
            if not self._heard:
                self._user_late = False  # the player's new turn
                if self.replies.active and (self._latest is None or self._latest.done):
                    # the model finished its answer (so it interrupts nothing), the engine still plays it
                    await self._barge_in("barge_in", True)
            self._heard.append(event.text)
            await ctx.send(proto.TranscriptUpdate(" ".join("".join(self._heard).split()), final=False))
            return
        self._heard = []
        if event.text:
            await ctx.send(proto.TranscriptUpdate(event.text, final=True))
            self._last_heard = event.text
            if self._user_late:  # the answer to it began already (a transcription may come after it)
                ctx.history.add_user(event.text)
                self._user_late = False
            else:  # recorded when its answer begins, after what was heard of the answer before
                self._pending_user.append(event.text)

    async def _begin(self) -> None:
        """A response starts: it becomes the next reply; the audio it answers needs no replay any more."""
        if self._stream is not None:
            self._stream.finish()
        self._unanswered, self._unanswered_samples = [], 0
        stream = ResponseStream(OUTPUT_RATE)
        self._stream = self._latest = stream
        stages = {"speech_end": self._speech_end if self._speech_end is not None else self._ctx.clock()}
        self._speech_end = None
        await self.replies.begin(self._last_heard, stages)  # records what was heard of the previous answer
        said = [*self._pending_user, *self._typed]
        for text in said:  # what the player said or typed, answered now
            self._ctx.history.add_user(text)
            self._last_heard = text
        self._user_late = not said
        self._pending_user, self._typed = [], []

    def _produce(
        self, utterance: int, text: str, pace: Pace | None, stages: dict[str, float]
    ) -> AsyncIterator[UtteranceEvent]:
        stream = self._latest
        if stream is None:  # cannot happen: a reply begins only for a response
            stream = ResponseStream(OUTPUT_RATE)
            stream.finish()
        face = self._ctx.services.audio_face or self._ctx.services.face
        return speak_response(utterance, stream, face, pace, stages, self._ctx.clock)

    async def _on_call(self, event: FunctionCall) -> None:
        if self._stream is None:
            await self._begin()
        assert self._stream is not None
        arguments = event.arguments
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                pass
        try:
            action = Action(check_call(self._ctx.hello.actions, event.name, arguments))
            output: dict[str, Any] = {"status": "sent to the game"}
        except ValueError as exc:
            action = Action(None, str(exc))
            output = {"error": str(exc)}
        self._stream.put(action)
        await self._send(ToolResult(event.call_id, event.name, output))

    # -- barge-in -------------------------------------------------------------------------------------
    def played_ms(self, stream: ResponseStream) -> int:
        """How much of ``stream``'s audio the client played: from its ``playback_started`` (or the first audio
        sent, for a client without acks) to now, at most the audio it was sent."""
        ctx = self._ctx
        anchor = self._acks.get(stream.utterance or -1)
        if anchor is None and not ctx.hello.acks:
            anchor = stream.first_audio_at
        if anchor is None:
            return 0
        played = max(0.0, ctx.clock() - anchor)
        return int(min(played, stream.produced / stream.rate) * 1000)

    async def interrupt(self, reason: str = "interrupt", notify: bool = True) -> None:
        if self._fallback is not None:
            await self._fallback.interrupt(reason, notify)
        else:
            await self._barge_in(reason, notify)

    async def _barge_in(self, reason: str, notify: bool) -> None:
        stream = self._latest
        played = self.played_ms(stream) if stream is not None else 0
        in_progress = stream is not None and not stream.done
        await self.replies.interrupt(reason, notify)
        if stream is None:
            return
        self._latest = None
        if stream is self._stream:
            self._stream = None
            self._discarding = True  # until the model's next response
        stream.finish()
        if in_progress or stream.item_id:
            log.info("realtime barge-in: %s cut at %d ms", self.name, played)
            await self._send(CancelResponse(stream.item_id, played, in_progress))

    # -- failover -------------------------------------------------------------------------------------
    async def _failover(self, code: str, reason: str) -> None:
        """Switch the session to the classic pipeline, say so, and hand it what the model did not answer."""
        if self._fallback is not None or self._closed:
            return
        log.warning("realtime model %s failed (%s): %s; the session continues on the pipeline", self.name, code, reason)
        conn, self._conn, self._opened = self._opened, None, None
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.finish()
        fallback = Conversation(self._ctx)
        unanswered, self._unanswered, self._unanswered_samples = self._unanswered, [], 0
        typed, self._typed, self._unsent = self._typed, [], []
        for pcm in unanswered:  # the listener takes audio synchronously: no new input can come in between
            await fallback.receive(Mic(pcm))
        self._fallback = fallback
        self.failed_over.set()
        fields = {"role": "realtime", "event": "failover", "from_url": self.name, "to_url": "pipeline"}
        with suppress(ConnectionError):
            await self._ctx.send(proto.Notice("failover", {**fields, "reason": f"{code}: {reason}"}))
        for text in typed:  # typed text the model never answered
            await fallback.receive(proto.UserText(text))
        if conn is not None:
            with suppress(Exception):
                await conn.close()

    async def close(self) -> None:
        self._closed = True
        if self._task is not asyncio.current_task():
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        conn, self._conn, self._opened = self._opened, None, None
        if conn is not None:
            with suppress(Exception):
                await conn.close()
        await self.replies.close()
        if self._fallback is not None:
            await self._fallback.close()
