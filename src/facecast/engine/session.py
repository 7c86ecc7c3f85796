"""One engine (or browser) connection: the server side of docs/protocol.md, independent of the web framework.

The session decodes the client's frames, accepts the ``hello``, and from then on hands everything else to
the workflow the hello chose (:mod:`facecast.engine.workflows`: conversation, say, puppet, lipsync). It owns
what every workflow shares: the transport, the error reporting, the session's face timeline
(:mod:`facecast.engine.timeline`, one animation layer seeded per session, feeding the socket and every
output) and the outputs' sinks (:mod:`facecast.engine.sinks`). Replies and their playback handshake are in
:mod:`facecast.engine.replies` and :mod:`facecast.engine.ackgate`.

A frame that breaks the protocol is answered with an ``error`` and changes nothing else; a bug handling one
message is logged and reported as ``internal`` (no details), and the session goes on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from typing import Any

from ..actions import ActionCall
from ..audio import pcm16_to_float
from ..catalog import ServiceCatalog
from ..characters import Character, IdleStyle
from ..errors import FacecastError
from ..face.layers import Emotion
from ..llm.history import ChatHistory, persona_prompt
from ..metrics import Metrics
from ..protocol import engine as proto
from ..services import Services
from .context import Mic, SessionConfig, SessionContext, Transport
from .resume import CLOSE_TAKEN_OVER, ResumeFailed, SessionKeeper, StateWriter
from .sessionstate import SessionState, UtteranceCounter, new_session_id
from .sinks import Output, SessionInfo, SinkGroup, attach_outputs
from .timeline import FaceTimeline, session_seed
from .workflows import Workflow, WorkflowUnavailable, start_workflow

__all__ = ["Transport", "SessionConfig", "EngineSession", "livelink_info"]

log = logging.getLogger(__name__)


def _history(character: Character, rules: str) -> ChatHistory:
    return ChatHistory(persona_prompt(character.persona, character.speaking_rules or rules))


def _restore(history: ChatHistory, state: SessionState) -> None:
    """Put a stored session's turns, facts and results into a fresh ``history`` (its bounds apply); raises
    ValueError for facts past them."""
    for turn in state.turns:
        if turn.role == "user":
            history.add_user(turn.content)
        else:
            history.add_assistant(turn.content)
    history.facts.update(state.facts, replace=True)
    history.results = list(state.results)


class EngineSession:
    """Protocol state for one client. Call :meth:`handle_text` / :meth:`handle_bytes` for each frame
    received and :meth:`close` when the socket goes away (it cancels all work of the session).

    ``services`` is the server's :class:`~facecast.catalog.ServiceCatalog` (or fixed services, for tools
    and tests): the session resolves its services and its history at the hello, from its character:
    ``character`` (the server's default), or the one of ``characters`` that ``hello.character`` names
    (server-defined only; an unknown name is answered with ``bad_message`` and changes nothing).
    ``outputs`` are the server's outputs: each is :meth:`~facecast.engine.sinks.Output.attach`\\ ed at the
    hello and feeds the sink it returns. With a ``keeper`` the session is resumable: its ``welcome`` carries
    its id, its state is kept in the keeper's store, and a hello with ``resume`` continues a stored one
    (:mod:`facecast.engine.resume`).
    """

    def __init__(
        self,
        services: Services | ServiceCatalog,
        transport: Transport,
        config: SessionConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
        *,
        outputs: Sequence[Output] = (),
        character: Character | None = None,
        characters: Mapping[str, Character] | None = None,
        keeper: SessionKeeper | None = None,
    ) -> None:
        self._catalog = services if isinstance(services, ServiceCatalog) else ServiceCatalog(services)
        self._metrics = metrics
        self._tx = transport
        self._config = config or SessionConfig()
        self._outputs = tuple(outputs)
        self._sinks = SinkGroup()
        self._clock = clock
        self.character = character if character is not None else Character("default", self._config.persona or "")
        """The session's character: ``character`` (the server's default) until a hello names another."""
        self._characters = characters or {}
        self._seed = self._config.seed if self._config.seed is not None else session_seed()
        self.timeline = FaceTimeline(self._seed)
        """The session's face: one animation layer, shared by the socket and every output."""
        self.hello: proto.Hello | None = None
        self.history = _history(self.character, self._config.speaking_rules)
        self.closed = asyncio.Event()
        self._workflow: Workflow | None = None
        self._posts: set[asyncio.Task[None]] = set()
        self._keeper = keeper
        self._owner = secrets.token_urlsafe(9)
        self.session_id = ""
        """The session's id (``welcome.session``) once accepted with a keeper; '' otherwise."""
        self._writer: StateWriter | None = None
        self._client_hello: proto.Hello | None = None
        self._pending: dict[str, ActionCall] = {}
        self._utterances = UtteranceCounter()
        self._eviction: asyncio.Task[None] | None = None
        self.closer: Callable[[int, str], Awaitable[None]] | None = None
        """How the server closes the client's connection (code, reason), when it must (a newer connection took
        the session over); None: the session just ends."""

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
        try:
            await self._dispatch(message)
        except ConnectionError:
            raise  # the client is gone: the caller ends the session
        except Exception:  # a bug handling one message must not end the session (details go to the log only)
            log.exception("handling a %s message failed", type(message).__name__)
            await self.send_error("internal", "the server failed to handle that message (see the server log)")

    async def handle_bytes(self, data: bytes) -> None:
        try:
            packet = proto.decode_binary(data)
        except proto.ProtocolError as exc:
            await self.send_error(exc.code, exc.message)
            return
        if self.hello is None or self._workflow is None:
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
        try:
            await self._workflow.receive(Mic(pcm))
        except FacecastError as exc:  # refused audio (e.g. a lip-sync stream too far ahead of its model)
            await self.send_error(exc.code, str(exc))

    async def _dispatch(self, message: proto.ClientMessage) -> None:
        if isinstance(message, proto.Hello):
            await self._on_hello(message)
        elif isinstance(message, proto.Ping):
            await self.send(proto.Pong(message.id))
        elif isinstance(message, proto.Bye):
            if self._keeper is not None and self.session_id:  # the conversation is over: it is not kept
                await self._keeper.forget(self.session_id, self._owner)
            await self.close(keep=False)
        elif isinstance(message, proto.GameContext):
            await self._on_context(message)
        elif self._workflow is not None:
            await self._workflow.receive(message)

    async def _on_hello(self, hello: proto.Hello) -> None:
        if self.hello is not None:
            await self.send_error("out_of_order", "'hello' was already received on this connection")
            return
        state: SessionState | None = None
        if hello.resume:
            try:
                state = await self._resume(hello.resume)
            except ResumeFailed as exc:
                await self.send_error(exc.code, str(exc))
                return
            hello = state.hello
        try:
            await self._accept(hello, state)
        finally:
            if self.hello is None and state is not None and self._keeper is not None:
                self._keeper.detach(self.session_id, self._owner)  # refused after all: the id is free again
                self.session_id = ""

    async def _resume(self, session_id: str) -> SessionState:
        """The stored state of ``session_id``, now held by this connection (a live one holding it is closed)."""
        if self._keeper is None:
            raise ResumeFailed("this server keeps no sessions (no session store); start a new session")
        state = await self._keeper.load(session_id)
        if state.hello.character and state.hello.character not in self._characters:
            raise ResumeFailed(
                f"the session's character {state.hello.character!r} is not defined on this server; start a new session"
            )
        # before the outputs are attached: the connection it replaces holds its Live Link subject
        self.session_id = session_id
        await self._keeper.attach(session_id, self._owner, self._evicted)
        return state

    async def _accept(self, hello: proto.Hello, state: SessionState | None) -> None:
        """Start the session ``hello`` asks for (``state``: the stored one it continues), or answer why not."""
        client_hello = hello
        character = self.character
        if hello.character:
            if hello.character not in self._characters:
                known = ", ".join(sorted(self._characters)) or "none"
                await self.send_error(
                    "bad_message", f"unknown character {hello.character!r} (this server has: {known})"
                )
                return
            character = self._characters[hello.character]
        try:
            services = self._catalog.services_for(character)
        except FacecastError as exc:
            await self.send_error(exc.code, str(exc))
            return
        timeline = self.timeline
        if character.idle != IdleStyle():
            timeline = FaceTimeline(self._seed, character.idle.layer_config())
        history = self.history if character is self.character else _history(character, self._config.speaking_rules)
        pending: dict[str, ActionCall] = {}
        utterances = UtteranceCounter()
        if state is not None:
            history = _history(character, self._config.speaking_rules)
            try:
                _restore(history, state)
            except ValueError as exc:
                await self.send_error("resume_failed", f"the stored session could not be restored: {exc}")
                return
            pending, utterances = dict(state.pending), UtteranceCounter(state.next_utterance)
        if character.actions and not hello.actions:
            hello = dataclasses.replace(hello, actions=character.actions)
        group = SinkGroup()
        ctx = SessionContext(
            hello,
            self._config,
            services,
            self.send,
            self._tx.send_bytes,
            self.send_error,
            group,
            timeline,
            history,
            utterances,
            self._clock,
            self._metrics,
            character.name,
            pending,
            self._changed,
        )
        try:
            if services.realtime is not None and hello.workflow == "conversation":  # --realtime: a speech model
                from ..realtime.workflow import start_realtime

                workflow = start_realtime(ctx, services.realtime)
            else:
                workflow = start_workflow(ctx)
        except WorkflowUnavailable as exc:
            await self.send_error(exc.code, str(exc))
            return
        try:  # an output may refuse the session (a Live Link subject another session drives): nothing changes
            await attach_outputs(group, self._outputs, SessionInfo(hello, timeline, character))
        except FacecastError as exc:
            await workflow.close()
            await self.send_error(exc.code, str(exc))
            return
        if self.closed.is_set():  # closed while an output was being waited for
            await workflow.close()
            await group.close()
            return
        self.character, self.timeline, self.history = character, timeline, history
        if character.emotion:  # its resting face (a reply's emotion tags change it)
            timeline.layer.set_emotion(Emotion(character.emotion), character.emotion_intensity)
        self.hello, self._workflow, self._sinks = hello, workflow, group
        self._client_hello, self._pending, self._utterances = (
            dataclasses.replace(client_hello, resume=""),
            pending,
            utterances,
        )
        if self._keeper is not None:
            if state is None:
                self.session_id = new_session_id()
                await self._keeper.attach(self.session_id, self._owner, self._evicted)
            self._writer = StateWriter(self._keeper, self.session_id, self._snapshot, self._taken_elsewhere)
        livelink = livelink_info(group.descriptions())
        await self.send(
            proto.Welcome(
                hello.audio,
                hello.face,
                hello.acks,
                self._config.ack_timeout,
                hello.workflow,
                hello.turns,
                livelink,
                session=self.session_id,
                resumed=state is not None,
            )
        )

    # -- resumable state ------------------------------------------------------------------------
    def _snapshot(self) -> SessionState:
        assert self._client_hello is not None
        history = self.history
        return SessionState(
            self._client_hello,
            self.character.name,
            history.turns,
            history.facts.as_dict(),
            tuple(history.results),
            dict(self._pending),
            self._utterances.next_value,
            self._owner,
        )

    def _changed(self) -> None:
        if self._writer is not None:
            self._writer.changed()

    def _taken_elsewhere(self) -> None:
        """The writer found a newer connection's record (on another controller): this connection ends."""
        if self._eviction is None and not self.closed.is_set():
            self._eviction = asyncio.get_running_loop().create_task(self._evicted())

    async def _evicted(self) -> None:
        """A newer connection resumed this session: the client is told, the session ends, the connection closes."""
        if self._writer is not None:
            self._writer.taken = True
        await self.send_error(
            "session_taken_over", "another connection resumed this session; this connection is closed"
        )
        await self.close(keep=False)
        if self.closer is not None:
            await self.closer(CLOSE_TAKEN_OVER, "session taken over")

    async def _on_context(self, message: proto.GameContext) -> None:
        """What is true now in the game: kept beside the history, rendered into the next turn's prompt."""
        try:
            self.history.facts.update(message.facts, replace=message.replace)
        except ValueError as exc:
            await self.send_error("bad_message", str(exc))
            return
        self._changed()

    # -- control --------------------------------------------------------------------------------
    async def interrupt(self, reason: str = "interrupt", notify: bool = True) -> None:
        """Stop the reply in progress: its work is cancelled, the client told to clear its buffer, and the
        history keeps what was heard up to now."""
        if self._workflow is not None:
            await self._workflow.interrupt(reason, notify)

    async def send(self, message: proto.ServerMessage) -> None:
        """Send one message to the client (raises ConnectionError once it is gone)."""
        await self._tx.send_text(proto.encode_message(message))

    def post(self, kind: str, **fields: Any) -> None:
        """Send a server event (e.g. ``failover``) from outside the session's own tasks, without waiting."""
        if self.hello is None or self.closed.is_set():
            return

        async def send() -> None:
            with suppress(Exception):
                await self.send(proto.Notice(kind, fields))

        task = asyncio.get_running_loop().create_task(send())
        self._posts.add(task)
        task.add_done_callback(self._posts.discard)

    async def send_error(self, code: str, message: str) -> None:
        """Report an error to the client (and the metrics); never raises."""
        log.info("engine session error %s: %s", code, message)
        if self._metrics is not None:
            self._metrics.errors.labels(code).inc()
        with suppress(Exception):
            await self.send(proto.ErrorMessage(code, message))

    async def close(self, *, keep: bool = True) -> None:
        """Cancel everything the session runs and close its sinks. Safe to call more than once. A resumable
        session's state is written a last time unless ``keep`` is false (``bye``, taken over)."""
        self.closed.set()
        workflow, self._workflow = self._workflow, None
        if workflow is not None:
            await workflow.close()
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.aclose(final=keep)
        if self._keeper is not None and self.session_id:
            self._keeper.detach(self.session_id, self._owner)
        for task in list(self._posts):
            task.cancel()
        await asyncio.gather(*self._posts, return_exceptions=True)
        sinks, self._sinks = self._sinks, SinkGroup()
        await sinks.close()


def livelink_info(descriptions: list[dict[str, object]]) -> proto.LiveLinkInfo | None:
    """The ``welcome.livelink`` of a session's outputs: the first description of a Live Link output (one with
    a ``subject`` and a ``device_id``; other outputs describe themselves too), or None."""
    for info in descriptions:
        subject, device, epoch = info.get("subject"), info.get("device_id"), info.get("epoch")
        if isinstance(subject, str) and isinstance(device, str):
            return proto.LiveLinkInfo(subject, device, float(epoch) if isinstance(epoch, int | float) else None)
    return None
