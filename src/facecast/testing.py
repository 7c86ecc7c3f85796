"""The role-conformance suite: checks that any implementation of a role keeps the role's contract.

Shipped with Facecast (like httpx's ``MockTransport``) so that a third-party provider can run the same
checks as the built-ins in its own tests::

    from facecast.testing import check_tts

    async def test_my_voice_conforms():
        await check_tts(MyVoice(), "Hello there. How are you today?")

Each ``check_*`` coroutine drives the implementation through its Protocol only, raises
:class:`ConformanceError` naming the broken rule, and returns what it collected for further assertions.
They need a running event loop (pytest-asyncio, ``asyncio.run``...).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .aio import aclose
from .errors import InputError
from .roles import FaceAnimator, LanguageModel, SpeechToText, TextToSpeech
from .types import (
    ALPHABETS,
    FACE_WIDTH,
    AudioChunk,
    ChatMessage,
    Float32Array,
    SpeechChunk,
    Transcript,
    frames_for_samples,
)

__all__ = [
    "ConformanceError",
    "SpeechResult",
    "check_stt",
    "check_llm",
    "check_tts",
    "check_face",
    "speech_chunks",
]


class ConformanceError(AssertionError):
    """An implementation broke its role's contract; the message says which rule."""


def _require(condition: bool, rule: str) -> None:
    if not condition:
        raise ConformanceError(rule)


@dataclass(slots=True)
class SpeechResult:
    """What :func:`check_tts` heard: the chunks, in order, and their audio joined."""

    rate: int
    chunks: list[SpeechChunk] = field(default_factory=list)

    @property
    def audio(self) -> Float32Array:
        if not self.chunks:
            return np.zeros(0, np.float32)
        return np.concatenate([c.audio.pcm for c in self.chunks]).astype(np.float32, copy=False)


async def speech_chunks(pcm: Float32Array, rate: int, chunk_ms: float = 100.0) -> AsyncIterator[AudioChunk]:
    """``pcm`` as a stream of consecutive chunks of ``chunk_ms`` (what a microphone delivers)."""
    step = max(1, int(rate * chunk_ms / 1000))
    for start in range(0, len(pcm), step):
        yield AudioChunk(np.asarray(pcm[start : start + step], np.float32), rate, start)
        await asyncio.sleep(0)


async def _early_close(stream: AsyncIterator[object]) -> None:
    """Take one item, then close: the implementation must stop and leave no task behind."""
    before = asyncio.all_tasks()
    try:
        await stream.__anext__()
    except StopAsyncIteration:
        pass
    finally:
        await aclose(stream)
    await asyncio.sleep(0.05)
    left = [t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()]
    _require(not left, f"closing the stream early left {len(left)} asyncio task(s) running: {left}")


async def check_stt(stt: SpeechToText, pcm: Float32Array, rate: int) -> str:
    """Transcribe ``pcm`` (mono float32 at ``rate``): partials must come before exactly one final, which is
    last; silence must give one final (usually empty); closing early must leave no task. Returns the final
    text of ``pcm``."""
    _require(isinstance(stt, SpeechToText), "does not implement SpeechToText")
    results: list[Transcript] = [t async for t in stt.transcribe(speech_chunks(pcm, rate))]
    finals = [t for t in results if t.final]
    _require(len(finals) == 1, f"gave {len(finals)} final transcripts, expected exactly one")
    _require(results[-1].final, "the final transcript must be the last one")
    _require(all(isinstance(t.text, str) for t in results), "transcripts must be text")
    silence = [t async for t in stt.transcribe(speech_chunks(np.zeros(rate, np.float32), rate))]
    _require(sum(t.final for t in silence) == 1 and silence[-1].final, "silence must give exactly one final")
    await _early_close(stt.transcribe(speech_chunks(pcm, rate)))
    return finals[0].text


async def check_llm(llm: LanguageModel, messages: Sequence[ChatMessage]) -> str:
    """Stream a reply to ``messages``: text pieces, a non-empty reply; closing early leaves no task.
    Returns the reply."""
    _require(isinstance(llm, LanguageModel), "does not implement LanguageModel")
    pieces = [piece async for piece in llm.stream(messages)]
    _require(all(isinstance(p, str) for p in pieces), "the stream must yield text pieces")
    reply = "".join(pieces)
    _require(bool(reply.strip()), "the reply is empty")
    await _early_close(llm.stream(messages))
    return reply


async def check_tts(tts: TextToSpeech, text: str) -> SpeechResult:
    """Speak ``text``: chunks at ``sample_rate`` with contiguous offsets from 0, finite audio in [-1, 1],
    phonemes (of a known alphabet) and words in order, starting inside the chunk that carries them and ending
    by the end of the audio; empty text raises :class:`InputError`; closing early leaves no task. Returns
    what was spoken."""
    _require(isinstance(tts, TextToSpeech), "does not implement TextToSpeech")
    rate = tts.sample_rate
    _require(isinstance(rate, int) and 8000 <= rate <= 192000, f"sample_rate {rate!r} is not a plausible rate")
    result = SpeechResult(rate)
    offset = 0
    last_phoneme = last_word = -1
    async for chunk in tts.synthesize(text):
        audio = chunk.audio
        _require(audio.rate == rate, f"chunk at {audio.rate} Hz from a {rate} Hz TTS")
        _require(audio.offset == offset, f"chunk offset {audio.offset}, expected {offset} (contiguous from 0)")
        _require(audio.pcm.dtype == np.float32 and audio.pcm.ndim == 1, "audio must be mono float32")
        _require(
            bool(np.all(np.isfinite(audio.pcm))) and float(np.max(np.abs(audio.pcm), initial=0)) <= 1.0,
            "audio must be finite and within [-1, 1]",
        )
        for p in chunk.phonemes:
            _require(p.alphabet in ALPHABETS, f"phoneme alphabet {p.alphabet!r} is not one of {ALPHABETS}")
            _require(
                audio.offset <= p.start < max(audio.end, audio.offset + 1) and p.start <= p.end,
                f"phoneme {p} does not start inside its chunk [{audio.offset}, {audio.end})",
            )
            _require(p.start >= last_phoneme, f"phoneme {p} is out of order")
            last_phoneme = p.start
        for w in chunk.words:
            _require(
                audio.offset <= w.start < max(audio.end, audio.offset + 1) and w.start <= w.end,
                f"word {w} does not start inside its chunk",
            )
            _require(w.start >= last_word, f"word {w} is out of order")
            last_word = w.start
        offset = audio.end
        result.chunks.append(chunk)
    _require(offset > 0, "no audio for a non-empty text")
    for chunk in result.chunks:
        for p in chunk.phonemes:
            _require(p.end <= offset, f"phoneme {p} ends after the audio ({offset} samples)")
    try:
        empty = [c async for c in tts.synthesize("")]
    except InputError:
        pass
    else:
        _require(not any(len(c.audio.pcm) for c in empty), "empty text must raise InputError or give no audio")
    await _early_close(tts.synthesize(text))
    return result


async def check_face(face: FaceAnimator, speech: Sequence[SpeechChunk]) -> Float32Array:
    """Animate ``speech``: 68-wide finite frames numbered contiguously from 0, exactly
    ``frames_for_samples(total, rate)`` of them; closing early leaves no task. Returns the frames."""
    _require(isinstance(face, FaceAnimator), "does not implement FaceAnimator")
    _require(bool(speech), "check_face needs some speech")
    rate = speech[0].audio.rate
    total = speech[-1].audio.end

    async def feed() -> AsyncIterator[SpeechChunk]:
        for chunk in speech:
            yield chunk
            await asyncio.sleep(0)

    blocks = []
    expected = 0
    async for frames in face.animate(feed()):
        _require(frames.start == expected, f"frames start at {frames.start}, expected {expected}")
        _require(
            frames.values.ndim == 2 and frames.values.shape[1] == FACE_WIDTH,
            f"frames must be N x {FACE_WIDTH}, got {frames.values.shape}",
        )
        _require(bool(np.all(np.isfinite(frames.values))), "frame values must be finite")
        expected = frames.end
        blocks.append(frames.values)
    want = frames_for_samples(total, rate)
    _require(expected == want, f"{expected} frames for {total} samples at {rate} Hz, expected {want}")
    await _early_close(face.animate(feed()))
    values = np.concatenate(blocks) if blocks else np.zeros((0, FACE_WIDTH), np.float32)
    _require(not math.isnan(float(values.sum())), "frame values must be finite")
    return values
