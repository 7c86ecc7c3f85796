"""OpenAISTT against a real subprocess server implementing the documented OpenAI transcription API
(tests/servers/openai_audio.py: faster-whisper with the embedded Whisper base weights; not OpenAI), on real
human speech from facecast.speechdata; every bad-server case, and failover to local Whisper."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest
from tests.servers.process import KEY, AudioServer

from facecast.audio import read_audio
from facecast.bench.stt_bench import normalise
from facecast.config import Settings
from facecast.errors import BusyError, ConfigError, InputError, ServiceError
from facecast.remote.failover import FailoverEvent, FailoverOptions, FailoverSTT, wrap_failover
from facecast.roles import SpeechToText
from facecast.services import make_role, make_stt
from facecast.speechdata import clips
from facecast.stt.openai_stt import OpenAISTT, OpenAISTTOptions
from facecast.stt.whisper import WhisperSTT
from facecast.testing import check_stt, speech_chunks
from facecast.types import AudioChunk, Float32Array, Transcript

pytest.importorskip("faster_whisper")

Speech = tuple[Float32Array, int, list[str]]
"""A clip's samples, rate and normalised reference words."""
CLIP = "mfa_thoughts"  # "i have a thousand thoughts about that thing", about 3 s of spontaneous speech


@pytest.fixture(scope="module")
def server() -> Iterator[AudioServer]:
    process = AudioServer()
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def well_behaved(server: AudioServer) -> Iterator[None]:
    server.control("ok")
    yield
    server.control("ok")


@pytest.fixture(scope="module")
def speech() -> Speech:
    clip = next(c for c in clips() if c.name == CLIP)
    pcm, rate = read_audio(clip.path)
    return pcm, rate, normalise(clip.text)


@pytest.fixture(scope="module")
def whisper() -> Iterator[WhisperSTT]:
    local = WhisperSTT()
    local.load()
    yield local
    local.close()


def stt(server: AudioServer, **options: object) -> OpenAISTT:
    settings: dict[str, object] = {"base_url": server.url, "api_key": KEY, "timeout": 5.0, **options}
    return OpenAISTT(OpenAISTTOptions(**settings))  # type: ignore[arg-type]  # test shorthand


async def transcribe(engine: SpeechToText, pcm: Float32Array, rate: int) -> str:
    results = [t async for t in engine.transcribe(speech_chunks(pcm, rate))]
    assert [t.final for t in results] == [True]
    return results[0].text


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_real_speech_round_trip_and_the_request_sent(server: AudioServer, speech: Speech) -> None:
    pcm, rate, reference = speech
    engine = stt(server, language="en", prompt="thoughts")
    try:
        text = await transcribe(engine, pcm, rate)
    finally:
        await engine.aclose()
    assert normalise(text) == reference
    (request,) = server.requests()
    assert request["path"] == "/v1/audio/transcriptions" and request["auth"]
    assert request["fields"] == {
        "model": "whisper-1",
        "response_format": "json",
        "temperature": "0.0",
        "language": "en",
        "prompt": "thoughts",
    }


async def test_conforms_to_the_role(server: AudioServer, speech: Speech) -> None:
    pcm, rate, reference = speech
    engine = stt(server)
    try:
        assert normalise(await check_stt(engine, pcm, rate)) == reference
    finally:
        await engine.aclose()


async def test_no_audio_gives_an_empty_final_without_asking(server: AudioServer) -> None:
    engine = stt(server)

    async def nothing() -> AsyncIterator[AudioChunk]:
        empty: tuple[AudioChunk, ...] = ()
        for chunk in empty:
            yield chunk

    assert [t async for t in engine.transcribe(nothing())] == [Transcript("", True)]
    assert server.requests() == []
    await engine.aclose()


async def test_bad_audio_is_an_input_error(server: AudioServer) -> None:
    engine = stt(server, max_audio_s=1.0)
    with pytest.raises(InputError, match="longer than the 1 s"):
        await transcribe(engine, np.zeros(32_000, np.float32), 16_000)
    with pytest.raises(InputError, match="rate"):
        await transcribe(engine, np.zeros(100, np.float32), 500)
    await engine.aclose()


def test_api_openai_com_without_a_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACECAST_STT_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="FACECAST_STT_KEY or OPENAI_API_KEY"):
        make_stt("openai")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    assert isinstance(make_stt("openai"), OpenAISTT)
    with pytest.raises(ConfigError, match="http:// or https://"):
        OpenAISTT(OpenAISTTOptions(base_url="ftp://example.org/v1"))


def test_specs_name_the_provider_and_the_url() -> None:
    for spec in ("openai:http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1"):
        engine = make_stt(spec)
        assert isinstance(engine, OpenAISTT) and engine.failover_name == "openai:http://127.0.0.1:9/v1"


async def test_a_wrong_key_is_named_without_the_key(server: AudioServer, speech: Speech) -> None:
    pcm, rate, _ = speech
    engine = stt(server, api_key="sk-wrong-key-42")
    with pytest.raises(ServiceError, match=r"refused the API key \(HTTP 401\).*FACECAST_STT_KEY") as caught:
        await transcribe(engine, pcm, rate)
    assert "sk-wrong-key-42" not in str(caught.value) and KEY not in str(caught.value)
    await engine.aclose()


async def test_a_short_rate_limit_is_retried_once_a_long_one_is_not(server: AudioServer, speech: Speech) -> None:
    pcm, rate, reference = speech
    engine = stt(server)
    try:
        server.control("429", count=1, retry_after=0.2)
        assert normalise(await transcribe(engine, pcm, rate)) == reference
        assert len(server.requests()) == 2
        server.control("429", retry_after=30)
        with pytest.raises(BusyError, match=r"rate limiting requests \(HTTP 429\).*retry after 30 s") as caught:
            await transcribe(engine, pcm, rate)
        assert caught.value.retry_after == 30
        assert len(server.requests()) == 1  # asked once: a long wait is for the failover list, not the player
    finally:
        await engine.aclose()


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("stall", "did not answer within 1 s"),
        ("garbage", "not a transcription"),
        ("close", "closed the connection"),
    ],
)
async def test_a_bad_server_is_a_service_error(server: AudioServer, speech: Speech, mode: str, message: str) -> None:
    pcm, rate, _ = speech
    server.control(mode)
    engine = stt(server, timeout=1.0)
    with pytest.raises(ServiceError, match=message):
        await transcribe(engine, pcm, rate)
    await engine.aclose()


async def test_an_unreachable_server_is_a_service_error(speech: Speech) -> None:
    pcm, rate, _ = speech
    engine = OpenAISTT(OpenAISTTOptions(base_url=f"http://127.0.0.1:{closed_port()}/v1"))
    with pytest.raises(ServiceError, match="cannot reach the speech-to-text server.*connection refused"):
        await transcribe(engine, pcm, rate)
    await engine.aclose()


async def test_openai_then_whisper_from_the_spec_fails_over_on_a_refused_key(
    server: AudioServer, speech: Speech
) -> None:
    """``--stt openai:URL,whisper``: the server refuses the key, Whisper hears the same audio, whole."""
    pcm, rate, reference = speech
    events: list[FailoverEvent] = []
    settings = Settings(providers={"stt.openai": {"api_key": "sk-wrong"}})
    wrapper = make_role("stt", f"openai:{server.url},whisper", settings, FailoverOptions(on_event=events.append))
    try:
        assert isinstance(wrapper, FailoverSTT)
        assert normalise(await transcribe(wrapper, pcm, rate)) == reference
    finally:
        await wrapper.aclose()
    assert [(e.kind, e.from_url, e.to_url) for e in events][:1] == [("failover", f"openai:{server.url}", "whisper")]
    assert "refused the API key" in events[0].reason and "sk-wrong" not in events[0].reason


@pytest.mark.parametrize("trouble", ["stall", "close", "garbage", "dead"])
async def test_failover_to_whisper_keeps_every_word(
    server: AudioServer, whisper: WhisperSTT, speech: Speech, trouble: str
) -> None:
    pcm, rate, reference = speech
    url = f"http://127.0.0.1:{closed_port()}/v1" if trouble == "dead" else server.url
    if trouble != "dead":
        server.control(trouble)
    events: list[FailoverEvent] = []
    primary = OpenAISTT(OpenAISTTOptions(base_url=url, api_key=KEY, timeout=1.0))
    wrapper = wrap_failover("stt", [primary, whisper], ["openai", "whisper"], FailoverOptions(on_event=events.append))
    assert isinstance(wrapper, FailoverSTT)
    try:
        assert normalise(await transcribe(wrapper, pcm, rate)) == reference
    finally:
        await wrapper.aclose()
    assert events and (events[0].from_url, events[0].to_url) == ("openai", "whisper")
    assert events[0].progress == f"{len(pcm)} samples of input kept"
