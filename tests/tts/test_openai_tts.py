"""OpenAITTS against a real subprocess server implementing the documented OpenAI speech API and Kokoro-FastAPI's
captioned speech (tests/servers/openai_audio.py: the embedded hibari voice; not OpenAI, not Kokoro-FastAPI):
streamed round trips checked by transcribing the audio, the WAV and PCM decoders on golden bytes, every
bad-server case, and failover to espeak."""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Iterator

import numpy as np
import pytest
from tests.servers.process import KEY, AudioServer

from facecast.bench.stt_bench import normalise
from facecast.config import Settings
from facecast.errors import BusyError, ConfigError, InputError, ServiceError
from facecast.remote.failover import FailoverEvent, FailoverOptions, FailoverTTS
from facecast.services import make_role, make_tts
from facecast.stt.openai_stt import OpenAISTT, OpenAISTTOptions
from facecast.testing import check_tts, speech_chunks
from facecast.tts.openai_tts import OpenAITTS, OpenAITTSOptions, PcmDecoder, WavDecoder
from facecast.types import Float32Array, SpeechChunk

TEXT = "I have a thousand thoughts about that thing."


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


def tts(server: AudioServer, **options: object) -> OpenAITTS:
    settings: dict[str, object] = {"base_url": server.url, "api_key": KEY, "timeout": 5.0, **options}
    return OpenAITTS(OpenAITTSOptions(**settings))  # type: ignore[arg-type]  # test shorthand


async def speak(engine: OpenAITTS | FailoverTTS, text: str = TEXT) -> list[SpeechChunk]:
    return [chunk async for chunk in engine.synthesize(text)]


def joined(chunks: list[SpeechChunk]) -> Float32Array:
    return np.concatenate([c.audio.pcm for c in chunks]).astype(np.float32)


async def heard(server: AudioServer, pcm: Float32Array, rate: int) -> list[str]:
    """What the server's Whisper hears in ``pcm`` (normalised words)."""
    stt = OpenAISTT(OpenAISTTOptions(base_url=server.url, api_key=KEY))
    try:
        results = [t async for t in stt.transcribe(speech_chunks(pcm, rate))]
    finally:
        await stt.aclose()
    return normalise(results[-1].text)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ----------------------------------------------------------------------------------------- decoders (pure)


def wav(rate: int = 16_000, channels: int = 1, tag: int = 1, bits: int = 16, extra: bytes = b"") -> bytes:
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    return b"RIFF\xff\xff\xff\xffWAVE" + extra + b"fmt " + struct.pack("<I", 16) + fmt + b"data\xff\xff\xff\xff"


def test_pcm_decoder_carries_an_odd_byte() -> None:
    data = struct.pack("<3h", 16384, -32768, 1)
    decoder = PcmDecoder()
    out = [decoder.feed(data[i : i + 1]) for i in range(len(data))]
    assert [len(o) for o in out] == [0, 1, 0, 1, 0, 1]
    assert np.concatenate(out).tolist() == [0.5, -1.0, 1 / 32768]


def test_wav_decoder_reads_a_header_fed_byte_by_byte_and_mixes_channels() -> None:
    body = struct.pack("<4h", 16384, 0, -16384, -16384)
    stream = wav(22_050, channels=2, extra=b"LIST" + struct.pack("<I", 3) + b"abc\x00") + body
    decoder = WavDecoder()
    out = np.concatenate([decoder.feed(stream[i : i + 1]) for i in range(len(stream))])
    assert decoder.rate == 22_050
    assert out.tolist() == [0.25, -0.5]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (wav(tag=3, bits=32), "32-bit float, not 16-bit PCM"),
        (wav(tag=0x55), "MP3, not 16-bit PCM"),
        (wav(bits=24), "24-bit PCM, not 16-bit PCM"),
        (b"ID3\x04\x00" + bytes(20), "not a WAV file"),
        (b"<html><body>oops</body></html>", "not a WAV file"),
    ],
)
def test_wav_decoder_refuses_what_is_not_16_bit_pcm(data: bytes, message: str) -> None:
    with pytest.raises(ServiceError, match=message):
        WavDecoder().feed(data)


# --------------------------------------------------------------------------------------- round trips


async def test_pcm_round_trip_streams_the_speech_and_sends_the_request(server: AudioServer) -> None:
    engine = tts(server, voice="nova", speed=1.0)
    try:
        chunks = await speak(engine)
    finally:
        await engine.aclose()
    assert len(chunks) > 3 and all(c.audio.rate == 24_000 for c in chunks)
    assert [c.audio.offset for c in chunks] == [sum(len(x.audio.pcm) for x in chunks[:i]) for i in range(len(chunks))]
    assert not any(c.words or c.phonemes for c in chunks)  # the plain API reports no timing
    (request,) = server.requests()
    assert request["path"] == "/v1/audio/speech" and request["auth"]
    assert request["fields"] == {
        "model": "tts-1",
        "input": TEXT,
        "voice": "nova",
        "response_format": "pcm",
        "speed": 1.0,
    }
    assert await heard(server, joined(chunks), 24_000) == normalise(TEXT)


async def test_conforms_to_the_role(server: AudioServer) -> None:
    engine = tts(server)
    try:
        result = await check_tts(engine, TEXT)
    finally:
        await engine.aclose()
    assert len(result.audio) > 24_000


async def test_audio_comes_out_before_the_body_ends(server: AudioServer) -> None:
    """The server sends half the speech and then nothing: that half is yielded, then the stall is an error."""
    server.control("stall_mid")
    engine = tts(server, timeout=1.0)
    chunks: list[SpeechChunk] = []
    with pytest.raises(ServiceError, match="went silent for 1 s in the middle of its answer"):
        async for chunk in engine.synthesize(TEXT):
            chunks.append(chunk)
    await engine.aclose()
    assert len(joined(chunks)) > 24_000 // 2  # over half a second of speech heard before the body ended


async def test_wav_at_another_rate_is_resampled_to_the_declared_rate(server: AudioServer) -> None:
    plain = tts(server)
    server.control("ok", wav_rate=22_050)
    resampled = tts(server, response_format="wav")
    try:
        reference = joined(await speak(plain))
        chunks = await speak(resampled)
    finally:
        await plain.aclose()
        await resampled.aclose()
    audio = joined(chunks)
    assert all(c.audio.rate == 24_000 for c in chunks)
    assert abs(len(audio) - len(reference)) < 240  # the same speech, within 10 ms
    assert server.requests()[-1]["fields"]["response_format"] == "wav"
    assert await heard(server, audio, 24_000) == normalise(TEXT)


async def test_word_timestamps_from_captioned_speech(server: AudioServer) -> None:
    engine = tts(server, timestamps=True, model="kokoro")
    try:
        result = await check_tts(engine, TEXT)
    finally:
        await engine.aclose()
    words = [w for c in result.chunks for w in c.words]
    assert [normalise(w.text) for w in words if normalise(w.text)] == [[t] for t in normalise(TEXT)]
    assert server.requests()[0]["path"] == "/dev/captioned_speech"
    assert server.requests()[0]["fields"]["return_timestamps"] is True
    ends = [w.end for w in words]
    assert all(a.start < b.start for a, b in zip(words, words[1:], strict=False))
    assert max(ends) <= len(result.audio) and words[0].start > 0  # inside the audio, after its lead-in


async def test_with_timestamps_the_provider_gives_phonemes_so_the_default_face_is_phonetic(
    server: AudioServer,
) -> None:
    """``[tts.openai] timestamps = true``: the registry's provider fits phonemes into the server's word times."""
    from facecast.face.auto import AutoAnimator
    from facecast.face.phonetic import PhoneticAnimator

    settings = Settings(providers={"tts.openai": {"api_key": KEY, "timestamps": True, "model": "kokoro"}})
    engine = make_tts(f"openai:{server.url}", settings)
    try:
        chunks = await speak(engine)
    finally:
        await engine.aclose()  # type: ignore[attr-defined]
    phonemes = [p for c in chunks for p in c.phonemes]
    assert phonemes and all(p.alphabet == "espeak" for p in phonemes)
    assert isinstance(AutoAnimator().choose(chunks[0]), PhoneticAnimator)


# ------------------------------------------------------------------------------------------ bad input


def test_api_openai_com_without_a_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACECAST_TTS_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="FACECAST_TTS_KEY or OPENAI_API_KEY"):
        make_tts("openai")
    monkeypatch.setenv("FACECAST_TTS_KEY", "sk-from-env")
    engine = make_tts("openai")
    assert isinstance(engine, OpenAITTS) and "sk-from-env" not in repr(engine)
    with pytest.raises(ConfigError, match="response_format"):
        OpenAITTSOptions(response_format="mp3")  # type: ignore[arg-type]  # what a TOML file could say


def test_specs_name_the_provider_and_the_url() -> None:
    for spec in ("openai:http://127.0.0.1:9/v1", "https://127.0.0.1:9/v1"):
        engine = make_tts(spec)
        assert isinstance(engine, OpenAITTS) and engine.failover_name.endswith("://127.0.0.1:9/v1")


async def test_bad_text_is_an_input_error(server: AudioServer) -> None:
    engine = tts(server)
    for text in ("", "   ", "x" * 4097):
        with pytest.raises(InputError):
            await speak(engine, text)
    await engine.aclose()
    assert server.requests() == []


# ------------------------------------------------------------------------------------------ bad servers


async def test_a_wrong_key_is_named_without_the_key(server: AudioServer) -> None:
    engine = tts(server, api_key="sk-wrong-key-42")
    with pytest.raises(ServiceError, match=r"refused the API key \(HTTP 401\).*FACECAST_TTS_KEY") as caught:
        await speak(engine)
    assert "sk-wrong-key-42" not in str(caught.value)
    await engine.aclose()


async def test_rate_limits(server: AudioServer) -> None:
    engine = tts(server)
    try:
        server.control("429", count=1, retry_after=0)
        assert len(joined(await speak(engine))) > 24_000
        assert len(server.requests()) == 2
        server.control("429", retry_after=20)
        with pytest.raises(BusyError, match=r"HTTP 429.*retry after 20 s"):
            await speak(engine)
        assert len(server.requests()) == 1
    finally:
        await engine.aclose()


@pytest.mark.parametrize(
    ("mode", "message", "some_audio"),
    [
        ("stall", "did not answer within 1 s", False),
        ("garbage", re.escape("sent text instead of audio (text/html"), False),
        ("close", "closed the connection in the middle of its answer", True),
    ],
)
async def test_a_bad_server_is_a_service_error(server: AudioServer, mode: str, message: str, some_audio: bool) -> None:
    server.control(mode)
    engine = tts(server, timeout=1.0)
    chunks: list[SpeechChunk] = []
    with pytest.raises(ServiceError, match=message):
        async for chunk in engine.synthesize(TEXT):
            chunks.append(chunk)
    await engine.aclose()
    assert bool(chunks) == some_audio


async def test_an_unreachable_server_is_a_service_error() -> None:
    engine = OpenAITTS(OpenAITTSOptions(base_url=f"http://127.0.0.1:{closed_port()}/v1"))
    with pytest.raises(ServiceError, match="cannot reach the text-to-speech server.*connection refused"):
        await speak(engine)
    await engine.aclose()


@pytest.mark.parametrize("trouble", ["close", "dead"])
async def test_openai_then_espeak_finishes_the_sentence(server: AudioServer, trouble: str) -> None:
    """``--tts openai:URL,espeak``: the server drops mid-sentence (or is not there); espeak speaks the rest,
    after the samples already delivered, so no audio repeats and the sentence is finished."""
    url = f"http://127.0.0.1:{closed_port()}/v1" if trouble == "dead" else server.url
    server.control(trouble if trouble != "dead" else "ok")
    events: list[FailoverEvent] = []
    settings = Settings(providers={"tts.openai": {"api_key": KEY, "timeout": 2.0}})
    wrapper = make_role("tts", f"openai:{url},espeak", settings, FailoverOptions(on_event=events.append))
    try:
        assert isinstance(wrapper, FailoverTTS) and wrapper.sample_rate == 24_000
        chunks = await speak(wrapper)
    finally:
        await wrapper.aclose()
    assert [c.audio.offset for c in chunks] == [sum(len(x.audio.pcm) for x in chunks[:i]) for i in range(len(chunks))]
    failovers = [e for e in events if e.kind == "failover"]  # (a probe may restore the primary meanwhile)
    assert len(failovers) == 1 and (failovers[0].from_url, failovers[0].to_url) == (f"openai:{url}", "espeak")
    delivered = int(failovers[0].progress.split()[0])
    assert (delivered > 0) == (trouble == "close")
    assert len(joined(chunks)) > delivered + 24_000 // 2  # espeak added the rest of the sentence
