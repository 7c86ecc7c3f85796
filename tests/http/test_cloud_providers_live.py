"""``facecast run --stt deepgram --tts elevenlabs`` end to end: a real server built from those settings
through the provider registry (keys and URLs from the providers' own options, as a user's TOML gives
them), engine-sim speaking a REAL recording as the microphone.

Deepgram and ElevenLabs cannot be reached from here: the two services are the local implementations of
their documented protocols in ``tests/servers`` (labelled as such there), which recognise with
pocketsphinx and speak with the local Piper voice. What this checks is Facecast's side: the registry
path, the streaming STT inside the live turn, the word-timed voice giving the default face phonemes (the
phonetic face, exact lip closures), acks and the reply reaching the engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import numpy as np
import pytest
from tests.servers.deepgram_server import DeepgramServer, DeepgramServerConfig
from tests.servers.elevenlabs_server import ElevenLabsServer

from facecast.audio import read_audio, resample
from facecast.config import Settings
from facecast.engine.sim import EngineSim, SimConfig
from facecast.face.arkit import INDEX
from facecast.server import BackgroundServer
from facecast.services import build_services
from facecast.speechdata import clips
from facecast.tts.aligned import WordTimedTTS

KEY = "cloud-live-key-51c2"
CLIP = "sense_and_sensibility_01_austen_64kb-0930"
RATE = 16000


@pytest.fixture
async def deepgram() -> AsyncIterator[DeepgramServer]:
    async with DeepgramServer(DeepgramServerConfig(api_key=KEY)) as running:
        yield running


@pytest.fixture
async def elevenlabs() -> AsyncIterator[ElevenLabsServer]:
    async with ElevenLabsServer(key=KEY) as running:
        yield running


def player() -> np.ndarray:
    """The recording at 16 kHz with 1.5 s of silence after it (the server's endpoint ends the turn)."""
    clip = {c.name: c for c in clips("read")}[CLIP]
    pcm, rate = read_audio(clip.path)
    return np.concatenate([resample(pcm, rate, RATE), np.zeros(RATE * 3 // 2, np.float32)])


async def test_deepgram_and_elevenlabs_hold_a_spoken_conversation(
    deepgram: DeepgramServer, elevenlabs: ElevenLabsServer
) -> None:
    settings = replace(
        Settings(),
        stt=f"deepgram:{deepgram.url}",
        llm="echo",
        tts="elevenlabs",
        face="auto",
        turn_detector="silence",
        livelink=("off",),
        providers={
            "stt.deepgram": {"api_key": KEY},
            "tts.elevenlabs": {"api_key": KEY, "base_url": elevenlabs.url},
        },
    )
    services = build_services(settings)
    assert isinstance(services.tts, WordTimedTTS)  # the word-timed voice: the default face gets phonemes
    async with BackgroundServer(settings, services) as running, EngineSim(SimConfig(url=running.ws_url)) as sim:
        report = await sim.say_audio(player(), RATE, timeout=60)
    assert not report.errors, report.errors
    heard = report.transcript.lower()
    assert len(heard.split()) >= 5, heard  # the words of the recording, as pocketsphinx hears them
    [utt] = report.utterances
    assert utt.ended and utt.samples > 0 and utt.face_frames > 0 and utt.face_before_ack == 0
    assert utt.discontinuities == 0
    # the server spoke what the echo LLM said, through the ElevenLabs protocol (one request, this text)
    assert elevenlabs.spoken and elevenlabs.spoken[-1].words
    # the face came from phonemes fitted into the alignment: the lips close fully at least once (a
    # bilabial in any English reply of this length) and the jaw opens
    face = np.concatenate(utt.face)
    close, jaw = face[:, INDEX["MouthClose"]], face[:, INDEX["JawOpen"]]
    assert jaw.max() > 0.2 and close.max() > 0.3
    # Deepgram got real-time audio with its documented query and finalised the turn
    log = deepgram.connections[-1]
    assert log.query.get("encoding") == "linear16" and log.query.get("sample_rate") == "16000"
    assert "Finalize" in log.controls and log.audio_bytes > RATE * 2
