"""What the parts of an engine session share: its settings, its transport role, and the context handed to a
workflow (:class:`SessionContext`: collaborators only, no protocol state)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from ..actions import ActionCall
from ..llm.history import ChatHistory
from ..metrics import Metrics
from ..protocol import engine as proto
from ..services import Services
from ..types import Float32Array
from ..vad import TurnConfig
from .sinks import SinkGroup
from .timeline import FaceTimeline

__all__ = ["Transport", "SessionConfig", "Mic", "SessionContext"]


class Transport(Protocol):
    """Where a session's frames go (a WebSocket). Raises ConnectionError once the client is gone."""

    async def send_text(self, text: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class SessionConfig:
    ack_timeout: float = 2.0
    """Seconds to wait for ``playback_started`` after an utterance's first audio before abandoning it."""
    max_mic_seconds: float = 60.0
    """Longest player utterance; longer ones are dropped with ``utterance_too_long``."""
    persona: str | None = None
    seed: int | None = None
    """Seed of the session's face timeline (blinks, gaze, head) shared by the socket and every output. None:
    a fresh seed per session (:func:`~facecast.engine.timeline.session_seed`), so characters never blink in
    lockstep; a number makes the session reproducible."""
    turns: TurnConfig = field(default_factory=TurnConfig)
    speaking_rules: str = "on"
    """Rules added to the character's persona unless its own say otherwise (``on``, ``tags``, ``off``)."""
    speculate: bool = True
    """Start the reply's LLM on the transcript of a pause, before the endpoint (:mod:`.speculation`)."""
    wait_for_player: bool = True
    """A reply sends nothing while the player speaks (:mod:`.floor`)."""
    lead: float = 1.0
    """Seconds of reply audio produced ahead of the engine's playback (0: as fast as it can be made). The
    rest is made as playback goes on, so a reply's synthesis and animation do not all land on the event
    loop at once, just when the acknowledgement must be handled and Live Link frames sent on time."""


@dataclass(frozen=True, slots=True, eq=False)
class Mic:
    """Microphone audio from the client, decoded to float32 mono at ``hello.mic.rate``."""

    pcm: Float32Array


@dataclass(frozen=True, slots=True, eq=False)
class SessionContext:
    """A session's collaborators, given to its workflow once the hello is accepted.

    ``send`` / ``send_face`` write to the client (they raise ConnectionError once it is gone); ``error``
    reports an error to the client and never raises; ``utterances`` yields the session's utterance ids.
    """

    hello: proto.Hello
    config: SessionConfig
    services: Services
    send: Callable[[proto.ServerMessage], Awaitable[None]]
    send_face: Callable[[bytes], Awaitable[None]]
    error: Callable[[str, str], Awaitable[None]]
    sinks: SinkGroup
    timeline: FaceTimeline
    history: ChatHistory
    utterances: Iterator[int]
    clock: Callable[[], float]
    metrics: Metrics | None = None
    character: str = "default"
    """The name of the session's character (for the server's log)."""
    pending: dict[str, ActionCall] = field(default_factory=dict)
    """The actions sent to the client and not yet answered (``action_result``), by id; kept with the session."""
    changed: Callable[[], None] = lambda: None
    """Call after changing what a resumed session carries on with (history, pending actions): the session's
    state is written soon, off the caller's path (:mod:`facecast.engine.resume`). Returns at once."""
