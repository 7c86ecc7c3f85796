"""Fast fakes of each role, for unit tests of the code around them (the real providers have their own tests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import Any

import numpy as np

from facecast.types import AudioChunk, ChatMessage, FaceFrames, Phoneme, SpeechChunk, Transcript, frames_for_samples


class FakeTTS:
    """50 ms of a 200 Hz tone per character, in 20 ms chunks; one phoneme per character."""

    def __init__(self, rate: int = 16000, delay: float = 0.0) -> None:
        self.rate = rate
        self.delay = delay
        self.calls: list[str] = []

    @property
    def sample_rate(self) -> int:
        return self.rate

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        self.calls.append(text)
        per_char = self.rate // 20
        total = per_char * len(text)
        t = np.arange(total) / self.rate
        pcm = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
        step = self.rate // 50
        for start in range(0, total, step):
            if self.delay:
                await asyncio.sleep(self.delay)
            end = min(total, start + step)
            phonemes = tuple(
                Phoneme(ch, i * per_char, (i + 1) * per_char)
                for i, ch in enumerate(text)
                if start <= i * per_char < end
            )
            yield SpeechChunk(AudioChunk(pcm[start:end], self.rate, start), phonemes)


class FakeFace:
    """Frame value 0 = the audio's RMS over the frame; emits frames as audio arrives (no lookahead)."""

    async def animate(self, speech: AsyncIterable[SpeechChunk]) -> AsyncIterator[FaceFrames]:
        audio: list[np.ndarray] = []
        rate = 0
        done = 0
        async for chunk in speech:
            rate = chunk.audio.rate
            audio.append(chunk.audio.pcm)
            total = sum(len(a) for a in audio)
            ready = total * 60 // rate
            if ready > done:
                yield FaceFrames(done, np.full((ready - done, 68), 0.5, np.float32))
                done = ready
        if rate:
            final = frames_for_samples(sum(len(a) for a in audio), rate)
            if final > done:
                yield FaceFrames(done, np.full((final - done, 68), 0.5, np.float32))


class FakeSTT:
    """Transcribes any audio as the configured text; counts samples it received."""

    def __init__(self, text: str = "hello there") -> None:
        self.text = text
        self.samples = 0

    async def transcribe(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcript]:
        async for chunk in audio:
            self.samples += len(chunk.pcm)
        yield Transcript(self.text, True)


class FakeLLM:
    """Streams a fixed reply token by token (optionally slowly)."""

    def __init__(self, reply: str = "Hi there. Nice to meet you!", delay: float = 0.0) -> None:
        self.reply = reply
        self.delay = delay
        self.seen: list[Sequence[ChatMessage]] = []

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        self.seen.append(list(messages))
        for word in self.reply.split(" "):
            if self.delay:
                await asyncio.sleep(self.delay)
            yield word + " "


class SinkOutput:
    """An :class:`~facecast.engine.sinks.Output` that gives each session the sink ``make()`` returns."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make

    async def run(self) -> None:
        await asyncio.Event().wait()

    def attach(self, session: object) -> Any:
        return self.make()

    def describe(self) -> dict[str, object]:
        return {"output": "test"}
