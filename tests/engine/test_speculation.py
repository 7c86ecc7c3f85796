"""Replies started on the listener's guess at a pause: a real session, real webrtcvad on espeak speech fed
as a live microphone, a fake LLM that records what it was asked."""

from __future__ import annotations

import asyncio
import json

import numpy as np
from tests.engine.test_listen import CHUNK, speech
from tests.engine.test_session import Recorder
from tests.fakes import FakeFace, FakeLLM, FakeSTT, FakeTTS

from facecast.audio import float_to_pcm16
from facecast.engine.session import EngineSession, SessionConfig
from facecast.engine.speculation import Speculation
from facecast.metrics import Metrics
from facecast.protocol import engine as proto
from facecast.services import Services
from facecast.types import ChatMessage
from facecast.vad import VAD_RATE, TurnConfig

HELLO = json.dumps({"type": "hello", "mic": {"rate": VAD_RATE, "channels": 1}, "audio": {"rate": 16000}})


async def converse(audio: np.ndarray, speculate: bool = True) -> tuple[FakeLLM, Recorder, Metrics]:
    llm = FakeLLM("Sunny all day. Take a hat!", delay=0.01)
    rec = Recorder()
    metrics = Metrics()
    config = SessionConfig(turns=TurnConfig(end_ms=300, transcript_lead_ms=100), speculate=speculate)
    services = Services(FakeSTT("what is the weather"), llm, FakeTTS(rate=16000), FakeFace())
    session = EngineSession(services, rec, config, metrics=metrics)
    await session.handle_text(HELLO)
    pcm = float_to_pcm16(audio)
    for start in range(0, len(audio), CHUNK):
        await session.handle_bytes(proto.encode_mic(start, pcm[start * 2 : (start + CHUNK) * 2]))
        for _ in range(5):
            await asyncio.sleep(0)
    utterance = (await rec.wait_for("utterance_start"))["utterance"]
    await rec.wait_audio()
    await session.handle_text(json.dumps({"type": "playback_started", "utterance": utterance}))
    await rec.wait_for("timing")
    await session.close()
    return llm, rec, metrics


def _count(metrics: Metrics, outcome: str) -> float:
    return metrics.speculations.labels(outcome)._value.get()


def _order(rec: Recorder, *kinds: str) -> list[int]:
    types = [m["type"] if isinstance(m, dict) else "binary" for m in rec.sent]
    return [types.index(kind) for kind in kinds]


async def test_the_reply_adopts_the_llm_stream_started_at_the_pause() -> None:
    audio = await speech(0.4, "Tell me about the weather.", 1.0)
    llm, rec, metrics = await converse(audio)
    assert len(llm.seen) == 1  # asked once, at the pause: the endpoint's reply took that stream over
    assert llm.seen[0][-1] == ChatMessage("user", "what is the weather")
    stages = rec.of_type("timing")[0]["stages"]
    assert stages["llm_speculative_start"] < stages["endpoint"]  # the LLM started before the turn ended
    assert "Sunny all day." in rec.of_type("utterance_end")[0]["text"]
    transcript, start = _order(rec, "transcript", "utterance_start")
    assert transcript < start  # nothing of the reply went out before the final transcript
    assert (_count(metrics, "started"), _count(metrics, "adopted"), _count(metrics, "dropped")) == (1, 1, 0)


async def test_a_pause_the_player_talks_through_drops_its_speculation() -> None:
    audio = await speech(0.4, "Tell me about", 0.25, "the weather.", 1.0)
    llm, rec, metrics = await converse(audio)
    assert len(llm.seen) == 2  # the first pause's reply was started, then cancelled when speech came back
    assert (_count(metrics, "started"), _count(metrics, "adopted"), _count(metrics, "dropped")) == (2, 1, 1)
    assert len(rec.of_type("utterance_start")) == 1  # and nothing of it was ever sent
    assert rec.of_type("utterance_end")[0]["text"].startswith("Sunny all day.")


async def test_without_speculation_the_llm_waits_for_the_endpoint() -> None:
    audio = await speech(0.4, "Tell me about the weather.", 1.0)
    llm, rec, metrics = await converse(audio, speculate=False)
    assert len(llm.seen) == 1
    stages = rec.of_type("timing")[0]["stages"]
    assert "llm_speculative_start" not in stages and stages["llm_first_token"] >= stages["endpoint"]
    assert _count(metrics, "started") == 0


async def test_a_speculation_matches_only_the_same_words_and_conversation() -> None:
    llm = FakeLLM("Hello there.")
    messages = [ChatMessage("system", "persona"), ChatMessage("user", "hi")]
    speculation = Speculation(llm, "hi", messages, lambda: 0.0)
    assert not speculation.matches("hi there", [*messages[:1], ChatMessage("user", "hi there")])
    assert not speculation.matches("hi", [ChatMessage("system", "persona, now in a tavern"), messages[1]])
    assert speculation.matches("hi", list(messages))
    assert "".join([piece async for piece in speculation.adopt()]) == "Hello there. "
    assert not speculation.matches("hi", messages)  # adopted once


async def test_a_cancelled_speculation_stops_its_llm_stream() -> None:
    llm = FakeLLM("one two three four five six seven eight", delay=0.02)
    speculation = Speculation(llm, "count", [ChatMessage("user", "count")], lambda: 0.0)
    await asyncio.sleep(0.05)
    speculation.cancel()
    pieces = [piece async for piece in speculation.adopt()]  # ends: the stream was closed
    assert 0 < len(pieces) < 8
