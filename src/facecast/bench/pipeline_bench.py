"""Pipeline benchmarks on the light set (espeak + phonetic face): first audio / first face latency, and speed vs
real time."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from ..aio import closing
from ..events import AudioOut, FaceOut, UtteranceEnded
from ..pipeline import speak
from ..roles import FaceAnimator, TextToSpeech
from .report import Table, percentiles

__all__ = ["REPLIES", "first_output_latency", "speed", "LatencySample"]

REPLIES = {
    1: "Hello there, it is good to see you again.",
    3: "Hello there, it is good to see you again. The weather has been lovely all week. "
    "Shall we walk down to the harbour and look at the boats?",
    10: " ".join(
        [
            "Hello there, it is good to see you again.",
            "The weather has been lovely all week.",
            "Shall we walk down to the harbour and look at the boats?",
            "My brother built one of them with his own hands.",
            "It took him three summers and a great deal of patience.",
            "Maybe we can borrow it tomorrow morning.",
            "Bring a warm coat, because the wind is cold on the water.",
            "I will pack some bread, cheese and apples.",
            "We could sail around the lighthouse and back.",
            "What do you think about that plan?",
        ]
    ),
}


@dataclass(frozen=True, slots=True)
class LatencySample:
    first_audio_ms: float
    first_face_ms: float
    total_ms: float
    audio_s: float


async def _tokens(text: str) -> AsyncIterator[str]:
    # an instant LLM: the reply's words arrive as tokens with no delay, so we measure our own stages
    for word in text.split(" "):
        yield word + " "


async def _one(text: str, tts: TextToSpeech, face: FaceAnimator) -> LatencySample:
    t0 = time.perf_counter()
    first_audio = first_face = float("nan")
    audio_s = 0.0
    async with closing(speak(1, _tokens(text), tts, face)) as events:
        async for event in events:
            now = (time.perf_counter() - t0) * 1000
            if isinstance(event, AudioOut) and first_audio != first_audio:
                first_audio = now
            elif isinstance(event, FaceOut) and first_face != first_face:
                first_face = now
            elif isinstance(event, UtteranceEnded):
                audio_s = event.samples / tts.sample_rate
    return LatencySample(first_audio, first_face, (time.perf_counter() - t0) * 1000, audio_s)


async def first_output_latency(
    tts: TextToSpeech, face: FaceAnimator, runs: int, sentences: Sequence[int] = (3,)
) -> tuple[Table, dict[str, object]]:
    """Time from the first LLM token to the first audio chunk and the first face frame."""
    table = Table(
        "Time to first output (espeak + phonetic face, instant LLM tokens)",
        ["reply", "runs", "first audio p50 ms", "p95", "first face p50 ms", "p95", "whole reply p50 ms"],
        note="Measured from the first token; the reply streams sentence by sentence.",
    )
    raw: dict[str, object] = {}
    await _one(REPLIES[1], tts, face)  # warm-up
    for n in sentences:
        samples = [await _one(REPLIES[n], tts, face) for _ in range(runs)]
        fa = [s.first_audio_ms for s in samples]
        ff = [s.first_face_ms for s in samples]
        total = [s.total_ms for s in samples]
        table.add(
            f"{n} sentence(s)",
            runs,
            *percentiles(fa, (50, 95)),
            *percentiles(ff, (50, 95)),
            percentiles(total, (50,))[0],
        )
        raw[f"sentences_{n}"] = {
            "first_audio_ms": fa,
            "first_face_ms": ff,
            "total_ms": total,
            "audio_s": samples[0].audio_s,
        }
    return table, raw


async def speed(tts: TextToSpeech, face: FaceAnimator, runs: int) -> tuple[Table, dict[str, object]]:
    """Synthesis + animation speed of the 10-sentence reply, as a multiple of real time."""
    table = Table("Synthesis + animation speed (10-sentence reply)", ["stage", "runs", "x real time p50", "min"])
    raw: dict[str, object] = {}
    samples = [await _one(REPLIES[10], tts, face) for _ in range(runs)]
    ratios = [s.audio_s / (s.total_ms / 1000) for s in samples]
    table.add("TTS + phonetic face", runs, percentiles(ratios, (50,))[0], min(ratios))
    raw["tts_face_x_realtime"] = ratios
    return table, raw
