"""A TTS stream at a chosen rate: what a service sends at the client's rate, and what a failover group with
members of different rates yields."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np

from ..aio import closing
from ..audio import Resampler
from ..roles import TextToSpeech
from ..types import AudioChunk, Phoneme, SpeechChunk, Word

__all__ = ["speech_at"]


async def speech_at(tts: TextToSpeech, text: str, rate: int) -> AsyncIterator[SpeechChunk]:
    """``tts.synthesize(text)`` at ``rate``: resampled (timings scaled) when the TTS's own rate differs."""
    native = tts.sample_rate
    stream = tts.synthesize(text)
    if native == rate:
        async with closing(stream):
            async for chunk in stream:
                yield chunk
        return
    resampler, produced, scale = Resampler(native, rate), 0, rate / native
    async with closing(stream):
        async for chunk in stream:
            pcm = resampler.process(chunk.audio.pcm)
            yield SpeechChunk(
                AudioChunk(pcm, rate, produced),
                tuple(
                    Phoneme(p.symbol, round(p.start * scale), round(p.end * scale), p.alphabet) for p in chunk.phonemes
                ),
                tuple(Word(w.text, round(w.start * scale), round(w.end * scale)) for w in chunk.words),
            )
            produced += len(pcm)
    tail = resampler.flush()
    if len(tail):
        yield SpeechChunk(AudioChunk(np.asarray(tail, np.float32), rate, produced))
