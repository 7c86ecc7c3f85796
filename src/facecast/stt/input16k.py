"""Audio chunks of any rate -> 16 kHz float32 mono, checked: the input side shared by the streaming
speech-to-text providers (Deepgram, Vosk, sherpa-onnx), which all decode 16 kHz audio, and :func:`collect` for
the ones that take a whole utterance (Whisper, OpenAI-compatible)."""

from __future__ import annotations

from collections.abc import AsyncIterable

import numpy as np

from ..aio import aclose
from ..audio import Resampler, to_mono
from ..errors import InputError
from ..types import AudioChunk, Float32Array

__all__ = ["To16k", "RATE", "collect"]

RATE = 16_000


class To16k:
    """Feed the chunks of one stream in order; get their audio at 16 kHz, then :meth:`flush` the tail.

    The stream's rate is taken from its first chunk (1 kHz to 384 kHz). Raises :class:`InputError` for an
    item that is not an :class:`AudioChunk` of float or int16 samples, a rate out of range, or a later chunk
    at another rate. NaN and infinities become silence and full scale.
    """

    def __init__(self) -> None:
        self.rate = 0
        self.samples = 0
        """16 kHz samples produced so far."""
        self._resampler: Resampler | None = None

    def process(self, chunk: AudioChunk) -> Float32Array:
        pcm = _chunk_pcm(chunk)
        if not self.rate:
            self.rate = _check_rate(chunk.rate)
            self._resampler = Resampler(self.rate, RATE) if self.rate != RATE else None
        elif chunk.rate != self.rate:
            raise InputError(f"audio stream changed rate from {self.rate} to {chunk.rate} Hz")
        out = self._resampler.process(pcm) if self._resampler is not None else pcm
        self.samples += len(out)
        return out

    def flush(self) -> Float32Array:
        tail = self._resampler.flush() if self._resampler is not None else np.zeros(0, np.float32)
        self.samples += len(tail)
        return tail


async def collect(chunks: AsyncIterable[AudioChunk], max_seconds: float, who: str) -> Float32Array:
    """All of ``chunks`` at 16 kHz in one array (empty when it holds no chunk); ``chunks`` is closed after.

    Raises what :class:`To16k` raises, and :class:`InputError` naming ``who`` once more than ``max_seconds``
    of audio came (before the rest is read).
    """
    source = aiter(chunks)
    try:
        audio = To16k()
        limit = int(max_seconds * RATE)
        parts: list[Float32Array] = []
        async for chunk in source:
            parts.append(audio.process(chunk))
            if audio.samples > limit:
                raise InputError(f"utterance longer than the {max_seconds:g} s {who} accepts")
    finally:
        await aclose(source)
    if not audio.rate:
        return np.zeros(0, np.float32)
    parts.append(audio.flush())
    return np.concatenate(parts).astype(np.float32, copy=False)


def _check_rate(rate: object) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer):
        raise InputError(f"audio chunk rate must be a whole number of Hz, got {rate!r}")
    if not 1_000 <= int(rate) <= 384_000:
        raise InputError(f"audio chunk rate {rate} Hz is out of range (1 kHz to 384 kHz)")
    return int(rate)


def _chunk_pcm(chunk: AudioChunk) -> Float32Array:
    pcm = getattr(chunk, "pcm", None)
    if not isinstance(pcm, np.ndarray) or not hasattr(chunk, "rate"):
        raise InputError(f"expected AudioChunk items in the audio stream, got {type(chunk).__name__}")
    if pcm.dtype == np.int16:
        pcm = pcm.astype(np.float32) / 32768.0
    elif pcm.dtype.kind != "f":
        raise InputError(f"audio samples must be float (or int16) numbers, got dtype {pcm.dtype}")
    mono = np.nan_to_num(to_mono(pcm), nan=0.0, posinf=1.0, neginf=-1.0)
    result: Float32Array = np.clip(mono, -1.0, 1.0).astype(np.float32, copy=False)
    return result
