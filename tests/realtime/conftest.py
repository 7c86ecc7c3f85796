"""Shared pieces of the realtime tests: the player's speech (the hibari neural voice, heard by the protocol
servers' PocketSphinx), and a real Facecast server (uvicorn) whose services have a realtime model pointed at
a local protocol server, with the light pipeline (pocketsphinx, echo, espeak) as its failover."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from tests.conftest import LIGHT

from facecast.audio import resample
from facecast.characters import Character
from facecast.config import Settings
from facecast.engine.sim import EngineSim, TurnReport
from facecast.face.learned import LearnedAnimator
from facecast.face.phonetic import PhoneticAnimator
from facecast.llm.echo import EchoLLM
from facecast.roles import SpeechToSpeech
from facecast.server import BackgroundServer
from facecast.services import Services, make_tts
from facecast.stt.pocketsphinx import PocketSphinxSTT
from facecast.tts.espeak import EspeakTTS

MIC = 16000

_spoken: dict[str, np.ndarray] = {}


async def spoken(text: str, before: float = 0.4, after: float = 1.2) -> np.ndarray:
    """``text`` in the hibari voice at 16 kHz with silence around it (cached per text)."""
    if text not in _spoken:
        tts = make_tts("hibari")
        chunks = [c.audio async for c in tts.synthesize(text)]
        _spoken[text] = resample(np.concatenate([c.pcm for c in chunks]), chunks[0].rate, MIC)
    speech = _spoken[text]
    return np.concatenate(
        [np.zeros(int(MIC * before), np.float32), speech, np.zeros(int(MIC * after), np.float32)]
    ).astype(np.float32)


@pytest.fixture(scope="session")
def learned() -> LearnedAnimator:
    return LearnedAnimator()


@asynccontextmanager
async def facecast(
    realtime: SpeechToSpeech,
    learned: LearnedAnimator,
    characters: dict[str, Character] | None = None,
    **changes: Any,
) -> AsyncIterator[BackgroundServer]:
    """The server; ``changes`` are more settings (``livelink``, ``record``...)."""
    services = Services(PocketSphinxSTT(), EchoLLM(), EspeakTTS(), PhoneticAnimator(), learned, realtime=realtime)
    settings = replace(Settings(**LIGHT), livelink=("off",), realtime="openai", characters=characters or {})
    settings = replace(settings, **changes)
    async with BackgroundServer(settings, services) as running:
        yield running


def session_of(server: BackgroundServer) -> Any:
    [session] = server.state.sessions
    return session


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` holds (a message the client sent is handled by the server's own task)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.02)


async def barge_in(
    sim: EngineSim, first: np.ndarray, second: np.ndarray, after: float, timeout: float = 60
) -> TurnReport:
    """Say ``first``; ``after`` seconds into the reply's playback say ``second`` over it; return the report
    (the cut reply, then the reply to ``second``, played out)."""
    report = TurnReport()
    done = asyncio.Event()

    silence = np.zeros(MIC // 50, np.float32)

    async def quiet() -> None:  # 20 ms of a live microphone's silence, in real time
        await sim.stream_mic(silence, MIC)
        await asyncio.sleep(0.02)

    async def microphone() -> None:
        await sim.stream_mic(first, MIC)
        while not (report.utterances and report.utterances[0].acked_at):
            await quiet()
        wait = report.utterances[0].acked_at + after
        while time.monotonic() < wait:
            await quiet()
        await sim.stream_mic(second, MIC)
        while not done.is_set():
            await quiet()

    mic = asyncio.create_task(microphone())
    try:
        return await sim.receive_reply(report, timeout)
    finally:
        done.set()
        mic.cancel()
        await asyncio.gather(mic, return_exceptions=True)
