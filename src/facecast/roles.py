"""One small interface per role: at most three methods, no state in the interface.

The controller only sees these Protocols; an implementation may run in-process, talk to a standalone
server, or wrap several others for failover. None of them keeps per-request state in the interface.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .types import AudioChunk, ChatMessage, FaceFrames, SpeechChunk, Transcript

if TYPE_CHECKING:
    from .realtime.events import RealtimeCommand, RealtimeEvent, RealtimeSetup

__all__ = ["SpeechToText", "LanguageModel", "TextToSpeech", "FaceAnimator", "SpeechToSpeech", "RealtimeConnection"]


@runtime_checkable
class SpeechToText(Protocol):
    def transcribe(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcript]:
        """Decode ``audio`` (any rate, mono) as it arrives.

        Yields partial transcripts while decoding and exactly one ``final=True`` transcript after the
        input ends. Raises :class:`facecast.errors.InputError` for audio it cannot use.
        """
        ...


@runtime_checkable
class LanguageModel(Protocol):
    def stream(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        """Stream the reply to ``messages`` as text pieces (tokens), in order.

        Raises :class:`facecast.errors.ServiceError` when the model cannot be reached or fails.
        """
        ...


@runtime_checkable
class TextToSpeech(Protocol):
    @property
    def sample_rate(self) -> int:
        """The rate of every :class:`AudioChunk` this TTS yields."""
        ...

    def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        """Speak ``text``, yielding audio chunks as soon as they exist.

        Sample offsets (and phoneme/word times) start at 0 for each call. Raises
        :class:`facecast.errors.InputError` for empty or oversized text.
        """
        ...


@runtime_checkable
class FaceAnimator(Protocol):
    def animate(self, speech: AsyncIterable[SpeechChunk]) -> AsyncIterator[FaceFrames]:
        """Turn one utterance's speech stream into 60 fps face frames.

        Frames are numbered from 0 at the stream's sample 0 and yielded in order, each as soon as the
        animator's lookahead allows; when ``speech`` ends, the remaining frames up to
        ``frames_for_samples(total_samples, rate)`` are yielded.
        """
        ...


class RealtimeConnection(Protocol):
    """One open session with a speech-to-speech model (see :class:`SpeechToSpeech`)."""

    @property
    def input_rate(self) -> int:
        """The rate of the PCM16 that :class:`~facecast.realtime.events.AppendAudio` must carry."""
        ...

    async def send(self, command: RealtimeCommand) -> None:
        """Send microphone audio, a cancel/truncate, a function result or typed text. Raises
        :class:`facecast.errors.ServiceError` once the session is gone."""
        ...

    def events(self) -> AsyncIterator[RealtimeEvent]:
        """The model's events in order; the last one, when the session ends, is a fatal ``RealtimeFailure``."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class SpeechToSpeech(Protocol):
    """The ``realtime`` role: a model that hears the player and answers with audio (replacing STT+LLM+TTS)."""

    async def connect(self, setup: RealtimeSetup) -> RealtimeConnection:
        """Open a session configured by ``setup``. Raises :class:`facecast.errors.ServiceError` (with the
        ``code`` ``unauthorized``, ``rate_limited`` or ``service_unavailable``) when it cannot."""
        ...
