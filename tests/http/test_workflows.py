"""The audio-driven workflows over a live server with the real learned model: puppet and lip-sync."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace

import numpy as np
import pytest
from tests.conftest import LIGHT
from websockets.asyncio.client import connect

from facecast.audio import float_to_pcm16, resample
from facecast.config import Settings
from facecast.face.arkit import INDEX
from facecast.face.learned import LearnedAnimator
from facecast.face.phonetic import PhoneticAnimator
from facecast.llm.echo import EchoLLM
from facecast.offline import say
from facecast.protocol import engine as proto
from facecast.server import BackgroundServer
from facecast.services import Services, make_stt
from facecast.tts.espeak import EspeakTTS
from facecast.types import frames_for_samples


@pytest.fixture
async def server() -> AsyncIterator[BackgroundServer]:
    services = Services(
        make_stt("pocketsphinx"), EchoLLM(), EspeakTTS(), PhoneticAnimator(), audio_face=LearnedAnimator()
    )
    async with BackgroundServer(replace(Settings(**LIGHT), livelink=("off",)), services) as running:
        yield running


async def speech_16k(text: str) -> np.ndarray:
    utt = await say(text, EspeakTTS(end_pause=False), PhoneticAnimator())
    return resample(utt.audio, utt.rate, 16000)


async def test_puppet_face_follows_the_microphone_live(server: BackgroundServer) -> None:
    silence = np.zeros(8000, np.float32)
    audio = np.concatenate([silence, await speech_16k("Maybe we can open the big barn."), silence])
    face: list[proto.FacePacket] = []
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "workflow": "puppet", "mic": {"rate": 16000}}))
        assert json.loads(await ws.recv())["type"] == "welcome"

        async def receive() -> None:
            async for message in ws:
                if isinstance(message, bytes):
                    face.append(proto.decode_binary(message))  # type: ignore[arg-type]

        receiver = asyncio.create_task(receive())
        for offset in range(0, len(audio), 320):  # 20 ms, in real time
            await ws.send(proto.encode_mic(offset, float_to_pcm16(audio[offset : offset + 320])))
            await asyncio.sleep(0.02)
        live_frames = sum(len(p.values) for p in face)
        await ws.send(json.dumps({"type": "end_of_speech"}))
        await asyncio.sleep(0.5)
        receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)
    values = np.concatenate([p.values for p in face])
    expected = frames_for_samples(len(audio), 16000)
    assert live_frames >= expected - 15  # frames came while the audio streamed (lookahead ~0.1 s)
    assert len(values) == expected
    jaw = values[:, INDEX["JawOpen"]]
    assert jaw[40:-40].max() > jaw[:20].max() + 0.15  # the mouth opens for speech, rests in silence


async def test_lipsync_returns_frames_for_each_segment(server: BackgroundServer) -> None:
    segment = await speech_16k("Hello there.")
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "workflow": "lipsync", "mic": {"rate": 16000}}))
        await ws.recv()
        await ws.send(proto.encode_mic(0, float_to_pcm16(segment)))
        await ws.send(json.dumps({"type": "end_of_speech"}))
        frames = 0
        while True:
            message = await asyncio.wait_for(ws.recv(), 30)
            if isinstance(message, bytes):
                frames += len(proto.decode_binary(message).values)  # type: ignore[union-attr]
            elif json.loads(message)["type"] == "utterance_end":
                break
    assert frames == frames_for_samples(len(segment), 16000)
