"""Replies of the text workflows (``conversation``, ``say``): one utterance stream at a time, sent to the client
and fed to the outputs, with its face behind the playback gate (:mod:`facecast.engine.ackgate`).

- Sync: an utterance's audio goes out first; its face frames are released only once the client reports
  ``playback_started`` (or at the first audio when the hello says ``"acks": false``). Without an ack within
  ``ack_timeout`` seconds of the first audio the utterance is abandoned (``clear_buffer`` + error
  ``ack_timeout``): no deadlock, and never a face without its voice.
- Barge-in: :meth:`Replies.interrupt` cancels the reply's work, tells the client to ``clear_buffer``, and
  nothing of that reply is sent afterwards.
- The floor: a reply sends nothing while the player is speaking (a turn of theirs is open: they went on
  after a pause the endpoint took for the end). ``utterance_start`` goes out with the reply's first content
  (a sentence, a sound or an action), and only when the player does not hold the floor; else the reply
  waits for that turn to be settled (:mod:`facecast.engine.floor`): a barge-in or the new turn's reply then
  replaces it unseen, and a noise without words lets it go out late (``held_until`` in its ``timing``).
- History: the reply enters the history as what the player HEARD: the text before the playback position the
  client reports in ``playback_finished`` (or, on interruption, the position estimated from the ack time).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..actions import ActionCall
from ..aio import closing
from ..audio import Resampler, float_to_pcm16
from ..errors import FacecastError
from ..events import (
    ActionOut,
    AudioOut,
    EmotionOut,
    FaceOut,
    SentenceOut,
    UtteranceEnded,
    UtteranceEvent,
    UtteranceStarted,
)
from ..face.layers import Emotion
from ..pipeline import Pace
from ..protocol import engine as proto
from ..types import FaceFrames
from .ackgate import Abandon, AckGate, Command, Refuse, Show, Started
from .context import SessionContext
from .floor import Floor
from .heard import ReplyText

__all__ = ["Producer", "Replies"]

log = logging.getLogger(__name__)

_KEEP_ACTIONS = 64
"""Actions remembered for their results; an ``action_result`` for an older one is refused."""

Producer = Callable[[int, str, Pace | None, dict[str, float]], AsyncIterator[UtteranceEvent]]
"""Makes a reply's events: ``(utterance, text, pace, stages) -> events``; ``pace(produced)`` (when given)
must be awaited by the producer after each chunk so production stays ``lead`` seconds ahead of playback."""


@dataclass(slots=True, eq=False)
class _Outgoing:
    gate: AckGate
    resampler: Resampler
    owner: asyncio.Task[Any] | None = None
    sent_samples: int = 0
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    audio_started: asyncio.Event = field(default_factory=asyncio.Event)
    face: asyncio.Queue[FaceFrames | None] = field(default_factory=asyncio.Queue)
    reply: ReplyText | None = None
    ending: bool = False
    """The utterance's last face frame was produced: the face queue ends once the gate released them all."""
    stages: dict[str, float] = field(default_factory=dict)
    """Monotonic times of this turn's stages, for the ``timing`` report."""
    speech_end_sample: int | None = None
    """The microphone sample at which the player's speech ended (the VAD's judgement), for the ``timing``
    report."""
    announced: bool = False
    """``utterance_start`` was sent: the client knows this utterance (a reply held for the floor and then
    replaced never was)."""

    @property
    def utterance(self) -> int:
        return self.gate.utterance


@dataclass(frozen=True, slots=True)
class _ReplyPace:
    """:class:`~facecast.pipeline.Pace` of one reply: production held ``lead`` ahead of the engine's playback."""

    replies: Replies
    utterance: int

    def __call__(self, produced: int) -> Awaitable[None]:
        return self.replies._pace(self.utterance, produced)

    def ahead(self, produced: int) -> float:
        return self.replies._ahead(self.utterance, produced)


class Replies:
    """Runs one reply at a time for a session. :meth:`begin` starts one (replacing any in progress)."""

    def __init__(self, ctx: SessionContext, produce: Producer, floor: Floor | None = None) -> None:
        self._ctx = ctx
        self._produce = produce
        self._floor = floor
        self._turn: asyncio.Task[None] | None = None
        self._current: _Outgoing | None = None
        self._playing: _Outgoing | None = None  # sent, acknowledged, not yet reported finished
        self.actions_sent: dict[str, ActionCall] = ctx.pending
        """The latest actions sent, by id (for their ``action_result``): the session's, kept with its state."""
        self._action_ids = 0

    @property
    def active(self) -> bool:
        """Whether a reply is being produced or (by the clock) still playing at the client."""
        return self._turn is not None and not self._turn.done() or self._still_playing()

    @property
    def unseen(self) -> bool:
        """Whether the reply in progress is one the client has not seen anything of (it waits for the floor,
        or has produced nothing yet), with nothing of an earlier one still playing."""
        running = self._turn is not None and not self._turn.done()
        current = self._current
        return running and (current is None or not current.announced) and not self._still_playing()

    def _still_playing(self) -> bool:
        playing = self._playing
        if playing is None or playing.gate.anchor is None:
            return False
        duration = playing.sent_samples / self._ctx.hello.audio.rate
        return self._ctx.clock() < playing.gate.anchor + duration + 0.25

    async def begin(self, text: str, stages: dict[str, float], speech_end_sample: int | None = None) -> None:
        """Start a reply to ``text``, replacing (and clearing, reason ``new_turn``) any reply in progress.
        ``speech_end_sample``: the microphone sample where the VAD heard the speech end (reported in ``timing``)."""
        await self.interrupt(reason="new_turn", notify=self.active)
        self._turn = asyncio.create_task(self._run(text, stages, speech_end_sample))

    async def _run(self, text: str, stages: dict[str, float], speech_end_sample: int | None) -> None:
        utterance = next(self._ctx.utterances)
        pace: Pace | None = _ReplyPace(self, utterance) if self._ctx.config.lead > 0 else None

        outcome = "interrupted"
        said: list[str] = []
        try:
            outcome = await self._stream(self._produce(utterance, text, pace, stages), stages, said, speech_end_sample)
        finally:
            self._log_turn(utterance, text, " ".join(said), stages, outcome)
            self._ctx.changed()  # the turn's text and actions are in the history: the session's state is saved

    def _log_turn(self, utterance: int, text: str, reply: str, stages: dict[str, float], outcome: str) -> None:
        """The server's one line per turn: who, what was said and answered, the stage times, how it ended."""
        base = stages.get("speech_end")
        times = " ".join(
            f"{name}={(at - base) * 1000:.0f}"
            for name, at in sorted(stages.items(), key=lambda item: item[1])
            if base is not None and name != "speech_end"
        )
        log.info(
            "turn %s character=%s heard=%r reply=%r ms: %s -> %s",
            utterance,
            self._ctx.character,
            _clip(text),
            _clip(reply),
            times or "-",
            outcome,
        )

    def _ahead(self, utterance: int, produced: int) -> float:
        """Seconds of the reply's first ``produced`` samples not yet played (inf until the engine's ack)."""
        out = self._current
        if out is None or out.utterance != utterance or out.gate.anchor is None:
            return float("inf")
        return produced / out.resampler.in_rate - (self._ctx.clock() - out.gate.anchor)

    async def _pace(self, utterance: int, produced: int) -> None:
        """Hold the reply's production to ``lead`` seconds ahead of the engine's playback of it."""
        out = self._current
        if out is None or out.utterance != utterance:
            return
        ahead = produced / out.resampler.in_rate - self._ctx.config.lead
        if ahead <= 0:
            return
        await out.acked.wait()  # before the ack nothing plays (a lost ack abandons the turn, ending this wait)
        wait = (out.gate.anchor or self._ctx.clock()) + ahead - self._ctx.clock()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _stream(
        self,
        events: AsyncIterator[UtteranceEvent],
        stages: dict[str, float],
        said: list[str],
        speech_end_sample: int | None = None,
    ) -> str:
        """Send the reply's events; the sentences go to ``said``. Returns how it ended: ``completed`` or the
        error code reported to the client (``empty_reply`` after a reply without a word, a sound or an action,
        e.g. a language model that answered with nothing or only a stage direction: the utterance still starts
        and ends, with no audio)."""
        release: asyncio.Task[None] | None = None
        outcome = "completed"
        samples = 0
        try:
            start: UtteranceStarted | None = None  # announced with the reply's first content
            async with closing(events):
                async for event in events:
                    if isinstance(event, UtteranceStarted):
                        out = self._begin(event, stages, speech_end_sample)
                        release = asyncio.create_task(self._release_face(out))
                        start = event
                        continue
                    if start is not None:  # its first sentence (or sound, or action) is ready: the floor?
                        await self._wait_for_player(out)
                        await self._send_event(start)
                        start = None
                    if isinstance(event, SentenceOut):
                        said.append(event.text)
                    elif isinstance(event, ActionOut) and event.call is not None:
                        said.append(f"<{event.call.name} {json.dumps(event.call.arguments, ensure_ascii=False)}>")
                    if isinstance(event, UtteranceEnded):
                        samples = event.samples
                        await self._finish(event, release)
                    else:
                        await self._send_event(event)
            if not said and not samples:  # nothing said, heard or done: the player would not know why
                outcome = "empty_reply"
                await self._ctx.error("empty_reply", "the character said nothing: its reply held no words to speak")
        except FacecastError as exc:
            outcome = exc.code
            await self._ctx.error(exc.code, str(exc))
        except ConnectionError:
            outcome = "client_gone"
            log.debug("client went away during utterance")
        except Exception:  # a bug must not take the session down with it; details (paths...) stay in the log
            outcome = "internal"
            log.exception("utterance failed")
            await self._ctx.error("internal", "the reply failed (internal error; see the server log)")
        finally:
            if release is not None:
                if not release.done():
                    release.cancel()
                # its end was seen (a client gone while face frames went out is the turn's end too)
                with suppress(asyncio.CancelledError, ConnectionError):
                    await release
            self._current = None
        return outcome

    def _begin(self, event: UtteranceStarted, stages: dict[str, float], speech_end_sample: int | None) -> _Outgoing:
        ctx = self._ctx
        gate = AckGate(
            event.utterance, event.rate, ctx.timeline, acks=ctx.hello.acks, ack_timeout=ctx.config.ack_timeout
        )
        out = _Outgoing(
            gate,
            Resampler(event.rate, ctx.hello.audio.rate),
            owner=asyncio.current_task(),
            reply=ReplyText(event.rate),
            stages=stages,
            speech_end_sample=speech_end_sample,
        )
        if not ctx.hello.acks:
            out.acked.set()  # nothing to wait for: production is paced from the first audio (or from now)
        self._current = out
        return out

    async def _wait_for_player(self, out: _Outgoing) -> None:
        """Send nothing of the reply while the player holds the floor (production goes on up to ``lead``)."""
        if self._floor is None or not self._floor.player:
            return
        metrics = self._ctx.metrics
        try:
            held = await self._floor.wait()
        except asyncio.CancelledError:  # mostly: the player went on and their new turn (or barge-in) replaced it
            if metrics is not None:
                metrics.held.labels("cancelled").inc()
            raise
        out.stages["held_until"] = self._ctx.clock()
        if metrics is not None:
            metrics.held.labels("timed_out" if self._floor.player else "released").inc()
        log.info("utterance %s waited %.0f ms for the player, who went on speaking", out.utterance, held * 1000)

    def _apply(self, out: _Outgoing, commands: list[Command]) -> None:
        """Carry out the gate's commands: outputs at once (in order), the socket through the face queue."""
        for command in commands:
            if isinstance(command, Started):
                self._ctx.sinks.on_playback_started(command.utterance, command.anchor)
                out.acked.set()
            elif isinstance(command, Show):
                self._ctx.sinks.on_event(FaceOut(command.utterance, command.frames))
                if self._ctx.hello.face:
                    out.face.put_nowait(command.frames)
        self._end_face(out)

    @staticmethod
    def _end_face(out: _Outgoing) -> None:
        """Close the face queue once the utterance ended AND the gate released everything it held."""
        if out.ending and out.gate.anchor is not None:
            out.ending = False
            out.face.put_nowait(None)

    async def _send_event(self, event: UtteranceEvent) -> None:
        out = self._current
        assert out is not None
        ctx = self._ctx
        if not isinstance(event, FaceOut):
            ctx.sinks.on_event(event)
        fmt = ctx.hello.audio
        if isinstance(event, UtteranceStarted):
            out.announced = True
            await ctx.send(proto.UtteranceStart(event.utterance, fmt.rate, fmt.channels))
        elif isinstance(event, SentenceOut):
            out.stages.setdefault("first_sentence", ctx.clock())
            assert out.reply is not None
            out.reply.add(event.start, event.text)
            at = round(event.start * fmt.rate / out.resampler.in_rate)
            await ctx.send(proto.ReplyText(event.utterance, event.text, at))
        elif isinstance(event, EmotionOut):
            self._apply(out, out.gate.emotion(event.start, Emotion(event.emotion)))
            await ctx.send(proto.EmotionChange(event.utterance, event.emotion))
        elif isinstance(event, AudioOut):
            out.stages.setdefault("tts_first_chunk", ctx.clock())
            await self._send_audio(out, out.resampler.process(event.chunk.pcm))
        elif isinstance(event, FaceOut):
            out.stages.setdefault("first_face", ctx.clock())
            self._apply(out, out.gate.face(event.frames))
        elif isinstance(event, ActionOut):
            await self._send_action(out, event)

    async def _send_action(self, out: _Outgoing, event: ActionOut) -> None:
        """An action of the reply, timed on the utterance clock at the client's rate; a call the model got
        wrong is reported (``bad_action``) and not taken."""
        ctx = self._ctx
        if event.call is None:
            log.warning("utterance %s: an action was not taken: %s", event.utterance, event.error)
            await ctx.error("bad_action", f"the character's action was not taken: {event.error}")
            return
        self._action_ids += 1
        ident = f"{event.utterance}.{self._action_ids}"
        self.actions_sent[ident] = event.call
        while len(self.actions_sent) > _KEEP_ACTIONS:
            del self.actions_sent[next(iter(self.actions_sent))]
        at = round(event.start * ctx.hello.audio.rate / out.resampler.in_rate)
        await ctx.send(proto.ActionMessage(event.utterance, ident, at, event.call.name, event.call.arguments))

    async def _finish(self, event: UtteranceEnded, release: asyncio.Task[None] | None) -> None:
        """Send the audio tail, wait until every face frame went out (after the ack), then utterance_end."""
        out = self._current
        assert out is not None and out.reply is not None
        out.reply.total = event.samples
        await self._send_audio(out, out.resampler.flush())
        out.ending = True
        self._end_face(out)
        if release is not None:
            if out.gate.first_audio is None:  # a reply without audio (only actions, or nothing speakable)
                release.cancel()
            with suppress(asyncio.CancelledError):
                await release
        self._ctx.sinks.on_event(event)  # after the last face frame the outputs were given
        frames = math.ceil(out.sent_samples * 60 / out.resampler.out_rate) if out.sent_samples else 0
        await self._ctx.send(proto.UtteranceEnd(event.utterance, out.sent_samples, frames, event.text))
        await self._send_timing(out)

    async def _send_audio(self, out: _Outgoing, pcm: np.ndarray) -> None:
        if not len(pcm):
            return
        ctx = self._ctx
        if out.gate.first_audio is None:
            self._apply(out, out.gate.audio_sent(ctx.clock()))
            out.audio_started.set()
        await ctx.send_face(
            proto.encode_audio(out.utterance, out.sent_samples, float_to_pcm16(pcm, ctx.hello.audio.channels))
        )
        out.sent_samples += len(pcm)

    async def _release_face(self, out: _Outgoing) -> None:
        """Send the gate's released frames in order; abandon the utterance when its ack does not come."""
        await out.audio_started.wait()
        deadline = out.gate.deadline
        if deadline is not None:
            try:
                await asyncio.wait_for(out.acked.wait(), max(0.0, deadline - self._ctx.clock()))
            except TimeoutError:
                commands = out.gate.expire(max(deadline, self._ctx.clock()))
                if any(isinstance(c, Abandon) for c in commands):
                    await self._abandon(out)
                    return
        while (frames := await out.face.get()) is not None:
            await self._ctx.send_face(proto.encode_face(out.utterance, frames.start, frames.values))

    async def _abandon(self, out: _Outgoing) -> None:
        ctx = self._ctx
        if ctx.metrics is not None:
            ctx.metrics.utterances.labels("abandoned").inc()
        ctx.timeline.rewind(ctx.clock())
        ctx.sinks.on_clear(out.utterance)
        await ctx.send(proto.ClearBuffer(out.utterance))
        await ctx.error(
            "ack_timeout",
            f"no playback_started for utterance {out.utterance} within "
            f"{ctx.config.ack_timeout:g} s; the utterance was abandoned",
        )
        if out.owner is not None:
            out.owner.cancel()

    async def _send_timing(self, out: _Outgoing) -> None:
        """Per-stage times of the turn, in ms from the end of the player's speech (or typed text)."""
        base = out.stages.get("speech_end")
        if base is None:
            return
        stages = {name: round((at - base) * 1000, 2) for name, at in out.stages.items() if name != "speech_end"}
        if self._ctx.metrics is not None:
            self._ctx.metrics.observe_turn(stages)
            self._ctx.metrics.utterances.labels("completed").inc()
        await self._ctx.send(proto.Timing(out.utterance, stages, out.speech_end_sample))

    async def playback_started(self, message: proto.PlaybackStarted) -> None:
        """The client's ack: releases the current utterance's face (errors ``out_of_order`` otherwise)."""
        out = self._current
        if out is None or out.utterance != message.utterance:
            await self._ctx.error(
                "out_of_order", f"playback_started for utterance {message.utterance}, which is not the one being sent"
            )
            return
        acked_before = out.gate.anchor is not None
        now = self._ctx.clock()
        commands = out.gate.ack(now)
        for command in commands:
            if isinstance(command, Refuse):
                await self._ctx.error(command.code, command.message)
                return
        self._apply(out, commands)
        if not acked_before and out.gate.anchor is not None and self._ctx.hello.acks:
            out.stages.setdefault("engine_ack", now)
            self._record_heard()  # a previous reply still unreported was heard in full
            self._playing = out

    def playback_finished(self, message: proto.PlaybackFinished) -> None:
        """The client's report of how much of the reply it played: the history keeps that much."""
        playing = self._playing
        if playing is None or playing.utterance != message.utterance:
            return  # late report of a reply already recorded
        # rounded up: a reply played to its last sample at the client's rate was heard to its end
        self._record_heard(-(-message.position * playing.resampler.in_rate // self._ctx.hello.audio.rate))

    def _record_heard(self, position: int | None = None) -> None:
        """Put the playing reply into the history, up to ``position`` (utterance samples; None = all)."""
        playing, self._playing = self._playing, None
        if playing is None or playing.reply is None:
            return
        text = playing.reply.full() if position is None else playing.reply.heard(position)
        self._ctx.history.add_assistant(text)
        self._ctx.changed()

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
        if target is None:
            return
        ctx = self._ctx
        anchor = target.gate.anchor
        if anchor is not None:
            heard = int((ctx.clock() - anchor) * target.resampler.in_rate) if ctx.hello.acks else 0
            self._playing = target
            self._record_heard(heard)
        if ctx.metrics is not None and active:
            ctx.metrics.utterances.labels("interrupted").inc()
        if not target.announced:  # it waited for the floor: neither the client nor the outputs saw any of it
            return
        ctx.timeline.rewind(ctx.clock())
        ctx.sinks.on_clear(target.utterance)
        if notify:
            await ctx.send(proto.ClearBuffer(target.utterance, reason))

    async def close(self) -> None:
        """Cancel the reply in progress (nothing is sent)."""
        if self._turn is not None and not self._turn.done():
            self._turn.cancel()
            await asyncio.gather(self._turn, return_exceptions=True)


def _clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
