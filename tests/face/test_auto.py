"""The automatic face (``--face auto``, the default): phonetic from phoneme timing, else learned from audio."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import numpy as np
import pytest

from facecast import registry
from facecast.aio import closing
from facecast.config import Settings, load_settings
from facecast.errors import ConfigError
from facecast.face.arkit import INDEX
from facecast.face.auto import AutoAnimator
from facecast.face.learned import LearnedAnimator
from facecast.face.phonetic import PhoneticAnimator
from facecast.providers import DEFAULTS
from facecast.registry import Capabilities
from facecast.services import audio_face_spec, build_services, make_face
from facecast.testing import check_face
from facecast.tts.espeak import EspeakTTS
from facecast.types import SpeechChunk

SENTENCE = "Bob bought five maps. Would you like one?"
JAW = INDEX["JawOpen"]


class NoTimingTTS:
    """espeak-ng's audio without its phonemes and words: a TTS without timing (like many cloud voices)."""

    def __init__(self) -> None:
        self._tts = EspeakTTS()

    @property
    def sample_rate(self) -> int:
        return self._tts.sample_rate

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        async for chunk in self._tts.synthesize(text):
            yield SpeechChunk(chunk.audio)


@pytest.fixture(scope="module")
def timed() -> list[SpeechChunk]:
    async def run() -> list[SpeechChunk]:
        return [c async for c in EspeakTTS().synthesize(SENTENCE)]

    return asyncio.run(run())


async def frames_of(animator: object, speech: list[SpeechChunk]) -> np.ndarray:
    return await check_face(animator, speech)  # type: ignore[arg-type]


async def test_speech_with_phonemes_gets_exactly_the_phonetic_face(timed: list[SpeechChunk]) -> None:
    auto = make_face("auto")
    assert isinstance(auto, AutoAnimator)
    got = await frames_of(auto, timed)
    np.testing.assert_array_equal(got, await frames_of(PhoneticAnimator(), timed))
    assert float(got[:, JAW].max()) > 0.2


async def test_speech_without_timing_gets_exactly_the_learned_face(timed: list[SpeechChunk]) -> None:
    bare = [SpeechChunk(c.audio) for c in timed]
    got = await frames_of(make_face("auto"), bare)
    np.testing.assert_array_equal(got, await frames_of(LearnedAnimator(), bare))
    assert float(got[:, JAW].max()) > 0.1  # the audio-driven mouth moves (the phonetic one would rest)
    rest = await frames_of(PhoneticAnimator(), bare)
    assert float(rest[:, JAW].max()) < 0.05


def test_lookahead_is_the_larger_one() -> None:
    auto = AutoAnimator()
    assert auto.lookahead == max(auto.phonetic.lookahead, auto.learned.lookahead) > 0.09


async def test_closing_early_closes_the_speech() -> None:
    closed = asyncio.Event()

    async def speech() -> AsyncIterator[SpeechChunk]:
        try:
            async with closing(EspeakTTS().synthesize(SENTENCE)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            closed.set()

    stream = AutoAnimator().animate(speech())
    await anext(stream)
    await stream.aclose()
    assert closed.is_set()


async def test_no_speech_gives_no_frames() -> None:
    async def nothing() -> AsyncIterator[SpeechChunk]:
        return
        yield  # pragma: no cover

    assert [f async for f in AutoAnimator().animate(nothing())] == []


@pytest.fixture
def no_timing_tts() -> Iterator[registry.Provider]:
    provider = registry.register("tts", "no-timing", lambda req: NoTimingTTS(), caps=Capabilities(timing="none"))
    yield provider
    registry.unregister("tts", "no-timing")


def _settings(**overrides: str) -> Settings:
    return load_settings(environ={}, overrides={"stt": "pocketsphinx", "llm": "echo", **overrides})


def test_auto_is_the_default_and_accepts_any_tts(no_timing_tts: registry.Provider) -> None:
    assert Settings().face == DEFAULTS["face"] == "auto"
    services = build_services(_settings(tts="no-timing"))
    assert isinstance(services.face, AutoAnimator) and isinstance(services.tts, NoTimingTTS)
    # the NeuroSync /audio_to_blendshapes and puppet animator is the learned face itself, not auto
    assert audio_face_spec(_settings()) == "learned" and isinstance(services.audio_face, LearnedAnimator)
    with pytest.raises(ConfigError, match="--face phonetic animates from phoneme timing"):
        build_services(_settings(tts="no-timing", face="phonetic"))  # phonetic stays strict


def test_auto_options_reach_both_faces() -> None:
    settings = replace(_settings(), providers={"face.auto": {"intensity": "0.5"}})
    face = make_face("auto", settings)
    assert isinstance(face, AutoAnimator) and face.phonetic.config.intensity == 0.5
    custom = replace(_settings(), providers={"face.auto": {"learned": "/no/such/mouth.json"}})
    assert audio_face_spec(custom) == "learned:/no/such/mouth.json"
    with pytest.raises(ConfigError):
        make_face("auto", custom)


async def test_a_tts_without_timing_talks_with_the_default_face_end_to_end(
    no_timing_tts: registry.Provider,
) -> None:
    """Before ``auto`` became the default, this configuration was refused at start-up."""
    from facecast.engine.sim import EngineSim, SimConfig
    from facecast.server import BackgroundServer

    settings = replace(_settings(tts="no-timing"), livelink=("off",))
    assert settings.face == "auto"
    async with BackgroundServer(settings, build_services(settings)) as server:
        async with EngineSim(SimConfig(url=server.ws_url)) as sim:
            report = await sim.say_text("maybe a blue map")
    [utterance] = report.utterances
    assert utterance.ended and utterance.text == "You said: maybe a blue map."
    face = np.concatenate(utterance.face)
    audio = np.concatenate(utterance.audio)
    assert abs(len(face) - len(audio) * 60 / SimConfig().rate) <= 1  # a frame per 60th of a second of audio
    assert float(face[:, JAW].max()) > 0.1  # the learned face moves the mouth from the audio alone
