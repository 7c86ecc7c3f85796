"""Voice-to-voice latency: end of the player's speech -> the engine starts playing the reply.

engine-sim streams espeak-spoken questions as the microphone in real time (hands-free: the server's VAD
finds the end of the turn), against the real server on its embedded defaults. The server reports each
stage's time from the end of speech; the client measures the whole. The sequential chain is endpointing ->
STT final -> LLM first token -> first sentence -> TTS first chunk -> engine ack; the first face frame is
made in parallel with the ack. "Unaccounted" is the client's total minus the server's engine-ack time.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..config import Settings
from ..engine.sim import SimConfig
from ..offline import say
from ..pipeline import Services
from ..server import BackgroundServer
from ..tts.espeak import EspeakTTS
from .engines import Script, Turn, run_engines
from .report import Table, percentiles

__all__ = ["voice_to_voice", "QUESTIONS"]

QUESTIONS = [
    "What is your name?",
    "Where is the harbour?",
    "Can you tell me about the weather today?",
    "How much does the bread cost?",
    "Do you know my brother?",
]

CHAIN = [("endpointing", None, "endpoint"), ("STT final", "endpoint", "stt_final"),
         ("LLM first token", "stt_final", "llm_first_token"), ("first sentence", "llm_first_token", "first_sentence"),
         ("TTS first chunk", "first_sentence", "tts_first_chunk"), ("engine ack", "tts_first_chunk", "engine_ack")]


async def _questions(voice: str) -> list[tuple[np.ndarray, int]]:
    from ..face.phonetic import PhoneticAnimator

    tts = EspeakTTS(voice=voice, end_pause=False)
    out = []
    for text in QUESTIONS:
        utt = await say(text, tts, PhoneticAnimator())
        silence = np.zeros(int(0.2 * utt.rate), np.float32)
        tail = np.zeros(int(0.9 * utt.rate), np.float32)  # enough for the endpoint, then the reply plays
        out.append((np.concatenate([silence, utt.audio, tail]), utt.rate))
    return out


async def voice_to_voice(services: Services, turns: int, endpoint_ms: int = 300) -> tuple[Table, dict[str, object]]:
    questions = await _questions("en-gb")  # a different voice from the character's
    totals: list[float] = []
    stages: dict[str, list[float]] = {name: [] for name, _, _ in CHAIN}
    stages["first face frame"] = []
    unaccounted: list[float] = []
    settings = replace(Settings(), livelink=("off",), endpoint_ms=endpoint_ms)
    async with BackgroundServer(settings, services) as server:
        script = tuple(Turn(pcm=pcm, rate=rate) for pcm, rate in (questions[k % len(questions)] for k in range(turns)))
        [reports] = await run_engines([Script(SimConfig(url=server.ws_url), script)])
    for report in reports:
        timing = report.timing
        if not report.utterances or "engine_ack" not in timing:
            continue
        total = report.response_latency * 1000
        totals.append(total)
        for name, start, end in CHAIN:
            stages[name].append(timing[end] - (timing[start] if start else 0.0))
        stages["first face frame"].append(timing["first_face"] - timing["tts_first_chunk"])
        unaccounted.append(total - timing["engine_ack"])
    table = Table(f"Voice-to-voice with {endpoint_ms} ms endpointing: end of speech -> engine playback start "
                  f"({len(totals)} spoken turns, pocketsphinx + echo LLM + espeak + phonetic face)",
                  ["stage", "p50 ms", "p95 ms", "p99 ms"],
                  note="Endpointing is the configured end-of-turn silence (--endpoint-ms). Engine ack includes "
                       "engine-sim's 50 ms playback start buffer; engine-sim runs in its own process, like an engine. "
                       "First face frame runs in parallel with the ack.")
    table.add("TOTAL (client measured)", *percentiles(totals))
    for name, values in stages.items():
        table.add(f"  {name}", *percentiles(values))
    table.add("  unaccounted (transport)", *percentiles(unaccounted))
    return table, {"total_ms": totals, "stages_ms": stages, "unaccounted_ms": unaccounted}
