"""Value types of the ``realtime`` role: what a session asks for, what it sends, what the model answers.

Every provider's codec turns its API's JSON into these (and these into its JSON), so the workflow never
sees an API's wire format. Audio crosses this boundary as PCM16 little-endian bytes at a stated rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

from ..actions import Action

__all__ = [
    "RealtimeSetup",
    "AppendAudio",
    "CancelResponse",
    "ToolResult",
    "UserInput",
    "RealtimeCommand",
    "SessionReady",
    "SpeechStarted",
    "SpeechStopped",
    "InputTranscript",
    "ResponseStarted",
    "AudioDelta",
    "TranscriptDelta",
    "FunctionCall",
    "ResponseDone",
    "RealtimeFailure",
    "RealtimeEvent",
]


@dataclass(frozen=True, slots=True)
class RealtimeSetup:
    """What the session configures once at connection: the character's persona (``instructions``), the
    actions it may take (offered as function tools) and a voice name (empty: the model's default)."""

    instructions: str = ""
    actions: tuple[Action, ...] = ()
    voice: str = ""


# -- client commands ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class AppendAudio:
    """Microphone audio: PCM16 little-endian mono at the model's input rate (the connection's ``input_rate``)."""

    pcm16: bytes


@dataclass(frozen=True, slots=True)
class CancelResponse:
    """Stop the response in progress and keep only ``played_ms`` of its audio in the model's context (the
    player heard that much). ``item_id``: the provider's id of the response's audio (where it needs one)."""

    item_id: str = ""
    played_ms: int = 0
    in_progress: bool = True
    """Whether the response was still being generated (a finished one needs no cancel, only the truncation)."""


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The game's result of a function call (``output``: JSON-serialisable)."""

    call_id: str
    name: str
    output: Any


# -- server events -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionReady:
    """The model accepted the session's setup (``session.updated`` / ``setupComplete``)."""


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The model's voice activity detection heard the player start speaking (a barge-in while it talks)."""


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """The model's voice activity detection decided the player's turn ended."""


@dataclass(frozen=True, slots=True)
class InputTranscript:
    """The model's transcription of what the player said (``final``: the whole turn's)."""

    text: str
    final: bool = True


@dataclass(frozen=True, slots=True)
class ResponseStarted:
    """The model started answering (``response_id`` where the API names responses)."""

    response_id: str = ""


@dataclass(frozen=True, slots=True, eq=False)
class AudioDelta:
    """A piece of the answer's audio: PCM16 little-endian mono at ``rate``; ``item_id`` names its item."""

    pcm16: bytes
    rate: int
    item_id: str = ""


@dataclass(frozen=True, slots=True)
class TranscriptDelta:
    """A piece of the transcript of the answer's audio."""

    text: str


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """The model called a function: ``arguments`` as it sent them (parsed JSON object, or the raw text)."""

    call_id: str
    name: str
    arguments: Any = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResponseDone:
    """The answer is complete (``status``: ``completed``, ``cancelled``, ``interrupted``, ``failed``...)."""

    status: str = "completed"


@dataclass(frozen=True, slots=True)
class RealtimeFailure:
    """The API reported an error. ``fatal``: the session cannot go on (bad key, quota, closed socket);
    otherwise one request failed and the session continues. ``code`` is Facecast's error code."""

    code: str
    message: str
    fatal: bool = False


RealtimeEvent: TypeAlias = (
    SessionReady
    | SpeechStarted
    | SpeechStopped
    | InputTranscript
    | ResponseStarted
    | AudioDelta
    | TranscriptDelta
    | FunctionCall
    | ResponseDone
    | RealtimeFailure
)


@dataclass(frozen=True, slots=True)
class UserInput:
    """Typed text from the player, answered like speech."""

    text: str


RealtimeCommand: TypeAlias = AppendAudio | CancelResponse | ToolResult | UserInput
