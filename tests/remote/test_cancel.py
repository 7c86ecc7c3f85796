"""Closing a remote stream early: the ``cancel`` leaves at once and stops the server's work (espeak-ng included)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest
from tests.conftest import LONG_TEXT

from facecast.remote.client import RemoteTTS
from facecast.remote.server import start_server
from facecast.tts import espeak
from facecast.tts.espeak import EspeakTTS
from facecast.types import AudioChunk, SpeechChunk

SENTENCE = "Maybe the big fat thing will go away soon."


@pytest.mark.usefixtures("hold_worker_until_aborted")
async def test_closing_a_remote_synthesis_stops_the_server_espeak_job() -> None:
    engine = espeak._engine()
    async with await start_server("tts", EspeakTTS()) as server:
        client = RemoteTTS(f"ws://127.0.0.1:{server.port}")
        try:
            stream = client.synthesize(LONG_TEXT)
            first = await anext(stream)
            long_job = engine.last_job
            assert long_job is not None and long_job.text == LONG_TEXT
            before = engine.jobs_run
            await stream.aclose()
            # aclose() returns once the server has read the cancel: the held job has been told to stop
            assert long_job.aborted and len(client.endpoint._idle) == 1
            # the next request on the same connection; the one espeak-ng worker runs it after the long job
            speech = [c async for c in client.synthesize(SENTENCE)]
        finally:
            await client.aclose()
    assert first.audio.offset == 0 and engine.current is None
    assert long_job.assembler.total < 22050 * 2  # stopped where it was held, of ~4 minutes of speech
    assert engine.jobs_run == before + 1
    assert [w.text for c in speech for w in c.words] == SENTENCE.rstrip(".").split()


class _BurstThenWait:
    """A TTS whose first 20 chunks come at once (they queue up in the client), then nothing until closed."""

    def __init__(self) -> None:
        self.stopped = asyncio.Event()

    @property
    def sample_rate(self) -> int:
        return 16000

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        self.stopped.clear()
        try:
            for i in range(20):
                yield SpeechChunk(AudioChunk(np.zeros(320, np.float32), 16000, 320 * i))
            await asyncio.Event().wait()
            yield SpeechChunk(AudioChunk(np.zeros(320, np.float32), 16000, 320 * 20))  # pragma: no cover
        finally:
            self.stopped.set()


async def test_aclose_sends_the_cancel_before_returning_even_with_output_queued() -> None:
    tts = _BurstThenWait()
    async with await start_server("tts", tts) as server:
        client = RemoteTTS(f"ws://127.0.0.1:{server.port}", rate=16000)
        try:
            for _ in range(3):
                stream = client.synthesize("go")
                first = await anext(stream)
                await stream.aclose()
                # the request is over when aclose() returns: the server has read the cancel (its stream is
                # closed at its next step), the connection is back in the pool, clean for the next request
                assert first.audio.offset == 0 and len(client.endpoint._idle) == 1
                await asyncio.wait_for(tts.stopped.wait(), 10)  # only the cancel can end the server's wait
        finally:
            await client.aclose()
