"""One response of a realtime model as one utterance: its audio deltas are the utterance's audio, and the
face comes from the audio-driven animator streaming on those deltas (the same events as
:func:`facecast.pipeline.speak`, so :class:`facecast.engine.replies.Replies` sends them unchanged).

Why the audio-driven face and not the phonetic one: neither API gives word or phoneme times for its answer
(the transcript deltas arrive in bursts, ahead of the audio and without positions), so grapheme-to-phoneme
timing would have to be guessed; the learned model animates what is actually heard, chunk by chunk.

The transcript deltas become ``SentenceOut`` events placed at the audio position reached when each sentence's
text began: approximate positions, used for the ``reply_text`` messages and for what the history keeps of a
cut-off answer (:mod:`facecast.engine.heard`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..actions import ActionCall
from ..aio import closing
from ..audio import pcm16_to_float, resample
from ..events import ActionOut, AudioOut, SentenceOut, UtteranceEnded, UtteranceEvent
from ..pipeline import Pace, run_stages
from ..roles import FaceAnimator
from ..types import AudioChunk, SpeechChunk, frames_for_samples
from .events import AudioDelta, TranscriptDelta

__all__ = ["ResponseStream", "Action", "speak_response"]

_SENTENCE = re.compile(r"^(.*?[.!?…]+[\"')\]]*)\s+(.*)$", re.S)


@dataclass(frozen=True, slots=True)
class Action:
    """A function call of the response, checked against the character's actions (``error`` when it is not one)."""

    call: ActionCall | None
    error: str = ""


Item = AudioDelta | TranscriptDelta | Action


@dataclass(slots=True, eq=False)
class ResponseStream:
    """The pieces of one model response, put by the connection's reader, taken by :func:`speak_response`."""

    rate: int
    queue: asyncio.Queue[Item | None] = field(default_factory=asyncio.Queue)
    item_id: str = ""
    """The provider's id of the answer's audio item (the truncation names it)."""
    utterance: int | None = None
    produced: int = 0
    """Samples of audio taken so far, at ``rate``."""
    first_audio_at: float | None = None
    done: bool = False
    """The model finished (or abandoned) this response."""

    def put(self, item: Item) -> None:
        if not self.done:
            if isinstance(item, AudioDelta) and item.item_id and not self.item_id:
                self.item_id = item.item_id
            self.queue.put_nowait(item)

    def finish(self) -> None:
        if not self.done:
            self.done = True
            self.queue.put_nowait(None)


async def speak_response(
    utterance: int,
    stream: ResponseStream,
    face: FaceAnimator,
    pace: Pace | None,
    stages: dict[str, float],
    clock: Callable[[], float],
) -> AsyncIterator[UtteranceEvent]:
    """The utterance of ``stream``: ``UtteranceStarted``, then audio, sentences, actions and face frames as
    they come, then ``UtteranceEnded`` once the model finished and the face caught up. Closing the iterator
    stops the animator."""
    rate = stream.rate
    stream.utterance = utterance
    out: asyncio.Queue[Any] = asyncio.Queue()
    speech: asyncio.Queue[SpeechChunk | None] = asyncio.Queue()
    spoken: list[str] = []

    async def produce() -> None:
        text, start = "", 0
        try:
            while (item := await stream.queue.get()) is not None:
                if isinstance(item, AudioDelta):
                    pcm = pcm16_to_float(item.pcm16)
                    if item.rate != rate:
                        pcm = resample(pcm, item.rate, rate)
                    if not len(pcm):
                        continue
                    if stream.first_audio_at is None:
                        stream.first_audio_at = clock()
                        stages.setdefault("model_first_audio", stream.first_audio_at)
                    chunk = AudioChunk(np.asarray(pcm, np.float32), rate, stream.produced)
                    stream.produced += len(pcm)
                    out.put_nowait(AudioOut(utterance, chunk))
                    speech.put_nowait(SpeechChunk(chunk))
                    if pace is not None:
                        await pace(stream.produced)
                elif isinstance(item, TranscriptDelta):
                    if not text.strip():
                        start = stream.produced
                    text += item.text
                    while found := _SENTENCE.match(text):
                        sentence, text = " ".join(found.group(1).split()), found.group(2)
                        out.put_nowait(SentenceOut(utterance, sentence, start))
                        spoken.append(sentence)
                        start = stream.produced
                else:
                    out.put_nowait(ActionOut(utterance, item.call, stream.produced, item.error))
            if text.strip():
                sentence = " ".join(text.split())
                out.put_nowait(SentenceOut(utterance, sentence, start))
                spoken.append(sentence)
        finally:
            speech.put_nowait(None)

    async with closing(run_stages(utterance, rate, produce, face, speech, out)) as events:
        async for event in events:
            yield event
    end = stream.produced
    yield UtteranceEnded(utterance, end, frames_for_samples(end, rate), " ".join(spoken))
