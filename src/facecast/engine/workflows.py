"""The four workflows of an engine session, chosen once at ``hello`` from :data:`WORKFLOWS`.

- ``conversation``: the player speaks (or types); the server transcribes, the LLM answers, the reply is spoken
  and animated (:class:`Conversation`).
- ``say``: typed or transcribed text is spoken as is (:class:`Say`).
- ``puppet``: the microphone drives the face live (:class:`Puppet`).
- ``lipsync``: the engine streams audio it is about to play; face frames come back (:class:`LipSync`).

A workflow receives the session's client input after the hello (microphone audio as :class:`Mic`, and the
decoded messages ``text``, ``end_of_speech``, ``playback_started``, ``playback_finished``, ``interrupt``);
``hello``, ``ping`` and ``bye`` are the session's own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

import numpy as np

from ..actions import actions_prompt
from ..errors import FacecastError
from ..events import FaceOut, UtteranceEnded, UtteranceEvent, UtteranceStarted
from ..pipeline import Pace, run_turn, say_text, takes_tools
from ..protocol import engine as proto
from ..types import Transcript
from .ackgate import AckGate, Show, Started
from .audioface import AudioFaceStream, puppet_delay
from .context import Mic, SessionContext
from .floor import Floor
from .listen import HeardUtterance, Listener, ListenerCallbacks
from .replies import Replies
from .speculation import Speculation

__all__ = [
    "Inbound",
    "Workflow",
    "WorkflowUnavailable",
    "Conversation",
    "Say",
    "Puppet",
    "LipSync",
    "WORKFLOWS",
    "start_workflow",
]

log = logging.getLogger(__name__)

Inbound = (
    Mic
    | proto.UserText
    | proto.EndOfSpeech
    | proto.PlaybackStarted
    | proto.PlaybackFinished
    | proto.Interrupt
    | proto.ActionResult
)


class Workflow(Protocol):
    """What a session does with its client's input. Made once per session by a :data:`WORKFLOWS` factory."""

    async def receive(self, message: Inbound) -> None:
        """Handle one input. Problems the client caused are reported with ``ctx.error``; ConnectionError
        (the client is gone) propagates."""
        ...

    async def interrupt(self, reason: str = "interrupt", notify: bool = True) -> None:
        """Stop whatever reply is in progress (barge-in, ``interrupt``); a no-op where there is none."""
        ...

    async def close(self) -> None:
        """Cancel all work; nothing more is sent. Safe to call more than once."""
        ...


class WorkflowUnavailable(FacecastError):
    """The workflow cannot run with this server's services (error ``bad_config``)."""

    code = "bad_config"


# ------------------------------------------------------------------------------------- text workflows


class _Spoken:
    """A workflow whose replies are spoken text: the :class:`Listener` hears the player, :class:`Replies`
    answers. Subclasses say how a reply is made (:meth:`_produce`)."""

    def __init__(self, ctx: SessionContext) -> None:
        self._ctx = ctx
        callbacks = ListenerCallbacks(
            self._on_transcript, self._on_heard, self._on_barge_in, self._on_listen_error, self._guesses()
        )
        turns = ctx.config.turns if ctx.hello.turns == "server" else None
        floor = Floor() if ctx.config.wait_for_player else None  # no reply starts while the player speaks
        self._listener = Listener(
            ctx.services.stt, ctx.hello.mic.rate, callbacks, turns, ctx.config.max_mic_seconds, floor
        )
        self.replies = Replies(ctx, self._produce, floor)

    def _produce(
        self, utterance: int, text: str, pace: Pace | None, stages: dict[str, float]
    ) -> AsyncIterator[UtteranceEvent]:
        raise NotImplementedError

    def _guesses(self) -> Callable[[str | None], Awaitable[None]] | None:
        """What takes the listener's guesses (None: this workflow waits for the final transcript)."""
        return None

    async def receive(self, message: Inbound) -> None:
        if isinstance(message, Mic):
            self._listener.feed(message.pcm)
        elif isinstance(message, proto.UserText):
            await self._ctx.send(proto.TranscriptUpdate(message.text, final=True, typed=True))
            await self.replies.begin(message.text, {"speech_end": self._ctx.clock()})
        elif isinstance(message, proto.EndOfSpeech):
            if not self._listener.end_of_speech() and self._ctx.hello.turns == "client":
                await self._ctx.error("no_speech", "'end_of_speech' without microphone audio since the last turn")
        elif isinstance(message, proto.PlaybackStarted):
            await self.replies.playback_started(message)
        elif isinstance(message, proto.PlaybackFinished):
            self.replies.playback_finished(message)
        elif isinstance(message, proto.Interrupt):
            await self.interrupt()

    async def interrupt(self, reason: str = "interrupt", notify: bool = True) -> None:
        await self.replies.interrupt(reason, notify)

    async def _on_transcript(self, result: Transcript) -> None:
        await self._ctx.send(proto.TranscriptUpdate(result.text, result.final))

    async def _on_heard(self, heard: HeardUtterance) -> None:
        stages = {"speech_end": heard.speech_end, "endpoint": heard.endpoint, "stt_final": heard.final}
        await self.replies.begin(heard.text, stages, heard.speech_end_sample)

    async def _on_barge_in(self) -> None:
        if self.replies.active:
            await self.replies.interrupt(reason="barge_in")

    async def _on_listen_error(self, exc: FacecastError) -> None:
        await self._ctx.error(exc.code, str(exc))

    async def close(self) -> None:
        await self.replies.close()
        await self._listener.close()


class Conversation(_Spoken):
    """The player's turn goes to the LLM; its streamed answer is spoken and animated.

    With ``SessionConfig.speculate`` the LLM starts on the listener's guess at a pause, before the endpoint
    (:mod:`facecast.engine.speculation`); the reply adopts that stream when the final transcript and the
    conversation are the same, and it is cancelled unseen otherwise.
    """

    def __init__(self, ctx: SessionContext) -> None:
        super().__init__(ctx)
        self._speculation: Speculation | None = None
        self._actions = ctx.hello.actions
        # the fallback for models without tools: the actions described in the system prompt
        ctx.history.instructions = "" if takes_tools(ctx.services.llm) else actions_prompt(self._actions)

    async def receive(self, message: Inbound) -> None:
        if isinstance(message, proto.ActionResult):
            await self._action_result(message)
        else:
            await super().receive(message)

    async def _action_result(self, message: proto.ActionResult) -> None:
        call = self.replies.actions_sent.pop(message.id, None)
        if call is None:
            await self._ctx.error("bad_message", f"'action_result' for {message.id!r}, which is not a pending action")
            return
        outcome = "done" if message.ok else "failed"
        if message.result is not None:
            outcome += f" ({json.dumps(message.result, ensure_ascii=False)})"
        self._ctx.history.add_result(f"{call.name} {json.dumps(call.arguments, ensure_ascii=False)}: {outcome}")
        self._ctx.changed()

    def _guesses(self) -> Callable[[str | None], Awaitable[None]] | None:
        return self._on_guess if self._ctx.config.speculate else None

    async def _on_guess(self, text: str | None) -> None:
        self._drop_speculation("the player went on" if text is None else "a newer guess")
        # While the character talks the history is about to change; a reply the player has not seen (it waits
        # for them: this turn will replace it) leaves the history as it is.
        if text is None or (self.replies.active and not self.replies.unseen):
            return
        log.debug("speculative reply to %r started", text)
        ctx = self._ctx
        self._speculation = Speculation(ctx.services.llm, text, ctx.history.messages(text), ctx.clock, self._actions)
        if ctx.metrics is not None:
            ctx.metrics.speculations.labels("started").inc()

    def _drop_speculation(self, why: str) -> None:
        speculation, self._speculation = self._speculation, None
        if speculation is not None:
            log.debug("speculative reply to %r dropped: %s", speculation.text, why)
            speculation.cancel()
            if self._ctx.metrics is not None:
                self._ctx.metrics.speculations.labels("dropped").inc()

    def _produce(
        self, utterance: int, text: str, pace: Pace | None, stages: dict[str, float]
    ) -> AsyncIterator[UtteranceEvent]:
        clock = self._ctx.clock
        history = self._ctx.history

        def first_token() -> None:
            stages.setdefault("llm_first_token", clock())

        tokens: AsyncIterator[str] | None = None
        speculation = self._speculation
        if speculation is not None and speculation.matches(text, history.messages(text)):
            self._speculation = None
            tokens = speculation.adopt()
            stages["llm_speculative_start"] = speculation.started  # the LLM started before the endpoint
            if self._ctx.metrics is not None:
                self._ctx.metrics.speculations.labels("adopted").inc()
        else:
            self._drop_speculation("the final transcript or the conversation differ")
        return run_turn(
            utterance,
            text,
            self._ctx.services,
            history,
            record_reply=False,
            on_first_token=first_token,
            pace=pace,
            tokens=tokens,
            actions=self._actions,
        )

    async def close(self) -> None:
        self._drop_speculation("the session ended")
        await super().close()


class Say(_Spoken):
    """The player's text (typed or transcribed) is spoken as is."""

    def _produce(
        self, utterance: int, text: str, pace: Pace | None, stages: dict[str, float]
    ) -> AsyncIterator[UtteranceEvent]:
        services = self._ctx.services
        return say_text(utterance, text, services.tts, services.face, pace=pace)


# ------------------------------------------------------------------------------------ audio workflows


class _AudioDriven:
    """Client audio -> audio-driven face model -> face frames sent at once, numbered on that audio's sample
    clock. One :class:`AudioFaceStream` per utterance (closed by ``end_of_speech``); ``delay`` is how far
    behind the stream's start its face plays on the outputs."""

    def __init__(self, ctx: SessionContext, delay: float) -> None:
        if ctx.services.audio_face is None:
            raise WorkflowUnavailable(
                f"the {ctx.hello.workflow} workflow needs an audio-driven face model "
                "(the learned model could not be loaded; see the server log)"
            )
        self._ctx = ctx
        self._animator = ctx.services.audio_face
        self._delay = delay
        self._stream: AudioFaceStream | None = None
        self._gate: AckGate | None = None

    async def receive(self, message: Inbound) -> None:
        if isinstance(message, Mic):
            self._feed(message.pcm)
        elif isinstance(message, proto.UserText):
            await self._ctx.error("out_of_order", f"'text' is not used by the {self._ctx.hello.workflow} workflow")
        elif isinstance(message, proto.EndOfSpeech):
            await self._end()
        elif isinstance(message, proto.PlaybackStarted):
            self._playback_started(message)

    async def interrupt(self, reason: str = "interrupt", notify: bool = True) -> None:
        return None

    def _playback_started(self, message: proto.PlaybackStarted) -> None:
        return None

    def _feed(self, pcm: np.ndarray) -> None:
        if self._stream is None:
            utterance = next(self._ctx.utterances)
            self._stream = AudioFaceStream(self._animator, utterance, self._ctx.hello.mic.rate, self._emit)
            self._gate = AckGate(utterance, self._ctx.hello.mic.rate, self._ctx.timeline, acks=False, ack_timeout=0)
            # The face's clock: the stream's start (+ delay); its first audio "plays" then.
            self._gate.audio_sent(self._stream.started_at + self._delay)
        self._stream.feed(pcm)

    async def _end(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            await self._ctx.error("no_speech", "'end_of_speech' without audio since the last one")
            return
        try:
            await stream.end()
        except FacecastError as exc:
            await self._ctx.error(exc.code, str(exc))

    def _to_outputs(self, command: Started | Show) -> None:
        sinks = self._ctx.sinks
        if isinstance(command, Started):
            sinks.on_playback_started(command.utterance, command.anchor)
        else:
            sinks.on_event(FaceOut(command.utterance, command.frames))

    async def _emit(self, event: UtteranceEvent) -> None:
        """Face frames of client audio go out at once, time-coded on that audio's sample clock."""
        ctx = self._ctx
        if isinstance(event, UtteranceStarted):
            ctx.sinks.on_event(event)
            await ctx.send(proto.UtteranceStart(event.utterance, event.rate, 1))
            self._started(event.utterance)
        elif isinstance(event, FaceOut):
            assert self._gate is not None
            for command in self._gate.face(event.frames):
                if isinstance(command, Show):
                    self._shown(command)
                    if ctx.hello.face:
                        await ctx.send_face(
                            proto.encode_face(event.utterance, command.frames.start, command.frames.values)
                        )
        elif isinstance(event, UtteranceEnded):
            self._ended(event)
            await ctx.send(proto.UtteranceEnd(event.utterance, event.samples, event.frames, ""))

    def _started(self, utterance: int) -> None:
        """The stream began: the outputs learn when its playback starts (at once for a live puppet)."""
        assert self._gate is not None and self._gate.anchor is not None
        self._to_outputs(Started(utterance, self._gate.anchor))

    def _shown(self, command: Show) -> None:
        self._to_outputs(command)

    def _ended(self, event: UtteranceEnded) -> None:
        self._ctx.sinks.on_event(event)

    async def close(self) -> None:
        if self._stream is not None:
            await self._stream.cancel()
            self._stream = None


class Puppet(_AudioDriven):
    """The microphone drives the face live; the outputs play it ``puppet_delay`` behind the sound."""

    def __init__(self, ctx: SessionContext) -> None:
        super().__init__(ctx, puppet_delay(ctx.services.audio_face) if ctx.services.audio_face else 0.0)


class LipSync(_AudioDriven):
    """The engine's own audio drives the face: frames go back over the socket at once; the outputs wait for
    the engine's ``playback_started`` of that utterance (or start with the stream when the hello says
    ``"acks": false``), then play the same frames from there."""

    def __init__(self, ctx: SessionContext) -> None:
        super().__init__(ctx, 0.0)
        self._waiting: list[Started | Show | UtteranceEnded] = []
        self._pending = -1  # the utterance whose outputs wait for playback_started

    def _started(self, utterance: int) -> None:
        if not self._ctx.hello.acks:
            super()._started(utterance)
            return
        self._pending, self._waiting = utterance, []

    def _shown(self, command: Show) -> None:
        if command.utterance == self._pending:
            self._waiting.append(command)
        else:
            super()._shown(command)

    def _ended(self, event: UtteranceEnded) -> None:
        if event.utterance == self._pending:
            self._waiting.append(event)
        else:
            super()._ended(event)

    def _playback_started(self, message: proto.PlaybackStarted) -> None:
        if message.utterance != self._pending:
            return
        waiting, self._waiting, self._pending = self._waiting, [], -1
        self._to_outputs(Started(message.utterance, self._ctx.clock()))
        for item in waiting:
            if isinstance(item, UtteranceEnded):
                self._ctx.sinks.on_event(item)
            else:
                self._to_outputs(item)


WORKFLOWS: dict[str, Callable[[SessionContext], Workflow]] = {
    "conversation": Conversation,
    "say": Say,
    "puppet": Puppet,
    "lipsync": LipSync,
}
"""Workflow name (``hello.workflow``) -> factory. Every name in :data:`facecast.protocol.engine.WORKFLOWS`."""
assert set(WORKFLOWS) == set(proto.WORKFLOWS)


def start_workflow(ctx: SessionContext) -> Workflow:
    """The workflow ``ctx.hello`` asks for. Raises :class:`WorkflowUnavailable` when it cannot run here."""
    return WORKFLOWS[ctx.hello.workflow](ctx)
