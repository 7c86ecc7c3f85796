"""DeepgramSTT against tests/servers/deepgram_server.py: an implementation of Deepgram's documented streaming
protocol for tests (not the service), which recognises speech with PocketSphinx. Real recordings, real
sockets; Deepgram itself cannot be reached from here."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

import numpy as np
import pytest
from tests.servers.deepgram_server import DeepgramServer, DeepgramServerConfig, blackhole, free_port

from facecast.audio import read_audio
from facecast.config import Settings
from facecast.errors import ConfigError, InputError, ServiceError
from facecast.remote.failover import FailoverEvent, FailoverOptions, FailoverSTT
from facecast.services import make_stt
from facecast.speechdata import clips
from facecast.stt.deepgram import (
    DeepgramOptions,
    DeepgramSTT,
    Metadata,
    Results,
    SpeechStarted,
    TranscriptAssembler,
    UtteranceEnd,
    listen_url,
    parse_message,
    resolve_key,
)
from facecast.testing import check_stt, speech_chunks
from facecast.types import AudioChunk, Transcript

KEY = "dg-test-key-3f9a"
CLIP = "sense_and_sensibility_01_austen_64kb-0930"


@pytest.fixture(autouse=True)
def no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DEEPGRAM_API_KEY", "FACECAST_STT_DEEPGRAM_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int, str]:
    clip = {c.name: c for c in clips("read")}[CLIP]
    pcm, rate = read_audio(clip.path)
    return pcm, rate, clip.text


@pytest.fixture
async def server() -> AsyncIterator[DeepgramServer]:
    async with DeepgramServer(DeepgramServerConfig(api_key=KEY)) as running:
        yield running


def client(url: str, **options: object) -> DeepgramSTT:
    return DeepgramSTT(DeepgramOptions(api_key=KEY, base_url=url, **options))  # type: ignore[arg-type]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def recall(reference: str, hypothesis: str) -> float:
    hyp = words(hypothesis)
    ref = words(reference)
    return sum(1 for w in ref if w in hyp) / len(ref)


class Live:
    """A microphone: ``pcm`` in 100 ms chunks with ``pause`` seconds between them; ``ended`` is set once the
    last chunk has been taken."""

    def __init__(self, pcm: np.ndarray, rate: int, pause: float = 0.01) -> None:
        self.pcm, self.rate, self.pause = pcm, rate, pause
        self.ended = False

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        async for chunk in speech_chunks(self.pcm, self.rate):
            yield chunk
            await asyncio.sleep(self.pause)
        self.ended = True


async def collect(stt: object, audio: AsyncIterator[AudioChunk]) -> list[Transcript]:
    return [t async for t in stt.transcribe(audio)]  # type: ignore[attr-defined]


# -- the codec ----------------------------------------------------------------------------------------------
RESULTS = {
    "type": "Results",
    "channel_index": [0, 1],
    "duration": 1.98,
    "start": 5.99,
    "is_final": True,
    "speech_final": True,
    "channel": {
        "alternatives": [
            {
                "transcript": "Tell me more.",
                "confidence": 0.99,
                "words": [
                    {"word": "tell", "start": 6.07, "end": 6.35, "confidence": 0.99, "punctuated_word": "Tell"},
                    {"word": "me", "start": 6.35, "end": 6.63, "confidence": 0.99, "punctuated_word": "me"},
                    {"word": "more", "start": 6.63, "end": 6.79, "confidence": 0.99, "punctuated_word": "more."},
                ],
            }
        ]
    },
    "metadata": {"request_id": "52cc0efe", "model_info": {"name": "general-nova-3"}},
    "from_finalize": False,
}


def test_parse_documented_messages() -> None:
    result = parse_message(json.dumps(RESULTS))
    assert isinstance(result, Results)
    assert (result.transcript, result.is_final, result.speech_final, result.from_finalize) == (
        "Tell me more.",
        True,
        True,
        False,
    )
    assert [(w.word, w.start, w.end, w.punctuated_word) for w in result.words][0] == ("tell", 6.07, 6.35, "Tell")
    assert (result.start, result.duration) == (5.99, 1.98)
    meta = parse_message('{"type": "Metadata", "request_id": "r1", "duration": 2.5, "channels": 1}')
    assert meta == Metadata("r1", 2.5)
    assert parse_message('{"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": 2.1}') == UtteranceEnd(2.1)
    assert parse_message('{"type": "SpeechStarted", "channel": [0, 1], "timestamp": 1.89}') == SpeechStarted(1.89)
    assert parse_message('{"type": "SomethingNew"}') is None


@pytest.mark.parametrize(
    "frame",
    [
        b"\x00\x01",
        "<html>502</html>",
        "[1, 2]",
        '{"no": "type"}',
        '{"type": "Results", "channel": {}}',
        '{"type": "Results", "is_final": "yes", "channel": {"alternatives": []}}',
        '{"type": "Results", "channel": {"alternatives": [{"transcript": 5}]}}',
    ],
)
def test_garbage_frames_are_service_errors(frame: str | bytes) -> None:
    with pytest.raises(ServiceError):
        parse_message(frame)


def test_assembler_keeps_finals_and_replaces_interims() -> None:
    def res(text: str, final: bool, from_finalize: bool = False) -> Results:
        return Results(text, (), 0.0, 0.0, final, final, from_finalize)

    asm = TranscriptAssembler()
    for step, expected in [
        (res("hello", False), "hello"),
        (res("hello there", False), "hello there"),
        (res("hello there", True), "hello there"),
        (res("how", False), "hello there how"),
        (res("how are you", False), "hello there how are you"),
    ]:
        asm.add(step)
        assert asm.text == expected
    assert asm.final_text == "hello there" and not asm.finalized
    asm.add(res("how are you", True, from_finalize=True))
    assert asm.final_text == "hello there how are you" and asm.finalized


def test_listen_url_and_key_handling() -> None:
    opts = DeepgramOptions(api_key="secret-123", endpointing_ms=250, keyterms=("Facecast",))
    url = listen_url(opts)
    assert url.startswith("wss://api.deepgram.com/v1/listen?model=nova-3&")
    for part in ("encoding=linear16", "sample_rate=16000", "channels=1", "interim_results=true", "endpointing=250"):
        assert part in url
    assert "keyterm=Facecast" in url and "secret" not in url
    assert "secret" not in repr(opts) and "secret" not in repr(DeepgramSTT(opts))
    assert resolve_key("", {"DEEPGRAM_API_KEY": "b", "FACECAST_STT_DEEPGRAM_API_KEY": "a"}) == "a"
    assert resolve_key("", {"DEEPGRAM_API_KEY": "b"}) == "b"
    with pytest.raises(ConfigError, match="DEEPGRAM_API_KEY"):
        resolve_key("", {})
    with pytest.raises(ConfigError, match="ws://"):
        DeepgramOptions(base_url="https://api.deepgram.com/v1/listen")


def test_missing_key_at_build_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="DEEPGRAM_API_KEY"):
        make_stt("deepgram")


def test_key_and_url_from_settings_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    stt = make_stt("deepgram:ws://127.0.0.1:9/v1/listen", Settings(providers={"stt.deepgram": {"api_key": "k1"}}))
    assert isinstance(stt, DeepgramSTT) and stt.options.base_url == "ws://127.0.0.1:9/v1/listen"
    monkeypatch.setenv("DEEPGRAM_API_KEY", "k2")
    assert isinstance(make_stt("deepgram"), DeepgramSTT)


# -- round trips ---------------------------------------------------------------------------------------------
async def test_round_trip_on_real_speech(server: DeepgramServer, speech: tuple[np.ndarray, int, str]) -> None:
    pcm, rate, reference = speech
    live = Live(pcm, rate)
    early: list[str] = []
    results: list[Transcript] = []
    async for result in client(server.url).transcribe(live.chunks()):
        results.append(result)
        if not result.final and not live.ended:
            early.append(result.text)
    assert early, "partial transcripts must arrive while the audio is still streaming"
    assert [r.final for r in results] == [False] * (len(results) - 1) + [True]
    final = results[-1].text
    # PocketSphinx alone on the same clip: the protocol server must keep its accuracy (nothing dropped).
    direct = [t async for t in make_stt("pocketsphinx").transcribe(speech_chunks(pcm, rate))][-1].text
    assert recall(reference, final) >= 0.5, final
    assert recall(reference, final) >= recall(reference, direct) - 0.15, (final, direct)
    log = server.connections[0]
    assert log.query["encoding"] == "linear16" and log.query["sample_rate"] == "16000"
    assert log.controls[-2:] == ["Finalize", "CloseStream"]
    assert log.audio_bytes == 2 * len(pcm)  # 16 kHz in, every sample sent once
    assert log.close_code == 1000


async def test_resampled_input_keeps_the_words(server: DeepgramServer, speech: tuple[np.ndarray, int, str]) -> None:
    from facecast.audio import resample

    pcm, rate, reference = speech
    pcm48 = resample(pcm, rate, 48000)
    results = await collect(client(server.url), speech_chunks(pcm48, 48000))
    assert recall(reference, results[-1].text) >= 0.5
    assert abs(server.connections[0].audio_bytes - 2 * len(pcm)) < 2 * 320


async def test_conforms_to_the_role(server: DeepgramServer, speech: tuple[np.ndarray, int, str]) -> None:
    pcm, rate, _ = speech
    text = await check_stt(client(server.url), pcm, rate)
    assert "might" in text


async def test_no_audio_gives_an_empty_final_without_connecting(server: DeepgramServer) -> None:
    async def nothing() -> AsyncIterator[AudioChunk]:
        return
        yield

    assert await collect(client(server.url), nothing()) == [Transcript("", True)]
    assert server.connections == []


async def test_bad_input_is_an_input_error_before_connecting(server: DeepgramServer) -> None:
    async def not_audio() -> AsyncIterator[AudioChunk]:
        yield "hello"  # type: ignore[misc]

    with pytest.raises(InputError):
        await collect(client(server.url), not_audio())
    assert server.connections == []


async def test_keepalive_holds_an_idle_connection(speech: tuple[np.ndarray, int, str]) -> None:
    pcm, rate, reference = speech
    cfg = DeepgramServerConfig(api_key=KEY, idle_timeout=1.0)
    half = len(pcm) // 2

    async def with_a_pause() -> AsyncIterator[AudioChunk]:
        async for chunk in speech_chunks(pcm[:half], rate):
            yield chunk
        await asyncio.sleep(3.0)  # the player pauses: no audio, well past the server's idle timeout
        async for chunk in speech_chunks(pcm[half:], rate):
            yield AudioChunk(chunk.pcm, rate, chunk.offset + half)

    async with DeepgramServer(cfg) as dg:
        results = await collect(client(dg.url, keepalive_interval=0.2), with_a_pause())
        assert "KeepAlive" in dg.connections[0].controls
        assert recall(reference, results[-1].text) >= 0.4
        # Without KeepAlive the server closes with 1011 NET-0001, which is reported.
        with pytest.raises(ServiceError, match="1011 NET-0001"):
            await collect(client(dg.url, keepalive_interval=30), with_a_pause())


# -- bad providers -------------------------------------------------------------------------------------------
async def test_wrong_key_is_refused_without_showing_the_key(server: DeepgramServer, speech: tuple) -> None:
    stt = DeepgramSTT(DeepgramOptions(api_key="wrong-key-77", base_url=server.url))
    with pytest.raises(ServiceError, match="HTTP 401") as caught:
        await collect(stt, speech_chunks(speech[0], speech[1]))
    assert "wrong-key-77" not in str(caught.value) and "Invalid credentials" in str(caught.value)
    assert server.refused == [401]


async def test_rate_limit_is_refused(speech: tuple) -> None:
    async with DeepgramServer(DeepgramServerConfig(api_key=KEY, max_connections=1)) as dg:
        gate = asyncio.Event()

        async def held() -> AsyncIterator[AudioChunk]:
            yield AudioChunk(np.zeros(1600, np.float32), 16000, 0)
            await gate.wait()

        first = asyncio.create_task(collect(client(dg.url), held()))
        while not dg.connections:  # noqa: ASYNC110 - the server's thread fills this list; no event to share
            await asyncio.sleep(0.01)
        with pytest.raises(ServiceError, match="rate limited.*HTTP 429"):
            await collect(client(dg.url), speech_chunks(speech[0], speech[1]))
        gate.set()
        assert (await first)[-1].final


@pytest.mark.parametrize(
    ("switch", "message"),
    [
        ({"stall": True}, "no final transcript within 0.5 s"),
        ({"garbage": True}, "not JSON"),
        ({"close_after_bytes": 20_000}, "closed the connection: 1011 NET-0000"),
        ({"close_after_bytes": 20_000, "close_code": 0}, "closed the connection"),
    ],
)
async def test_bad_servers_are_service_errors(switch: dict, message: str, speech: tuple) -> None:
    async with DeepgramServer(DeepgramServerConfig(api_key=KEY, **switch)) as dg:
        with pytest.raises(ServiceError, match=message):
            timeout = 0.5 if switch.get("stall") else 5.0  # only the stall waits for it
            await collect(client(dg.url, final_timeout=timeout), Live(speech[0], speech[1], 0).chunks())


async def test_unreachable_and_blackholed_servers(speech: tuple) -> None:
    with pytest.raises(ServiceError, match="cannot connect"):
        await collect(client(f"ws://127.0.0.1:{free_port()}/v1/listen"), speech_chunks(speech[0], speech[1]))
    async with blackhole() as url:
        with pytest.raises(ServiceError, match="did not answer the connection within 0.3 s"):
            await collect(client(url, connect_timeout=0.3), speech_chunks(speech[0], speech[1]))


# -- failover ------------------------------------------------------------------------------------------------
async def _failover_final(url: str, pcm: np.ndarray, rate: int, key: str = KEY) -> tuple[str, list[FailoverEvent]]:
    events: list[FailoverEvent] = []
    settings = Settings(
        providers={"stt.deepgram": {"api_key": key, "connect_timeout": 0.5, "final_timeout": 1.0}},
    )
    stt = make_stt(f"deepgram:{url},pocketsphinx", settings, FailoverOptions(on_event=events.append))
    assert isinstance(stt, FailoverSTT)
    try:
        results = await collect(stt, Live(pcm, rate, 0).chunks())
    finally:
        await stt.aclose()
    assert results[-1].final and sum(r.final for r in results) == 1
    return results[-1].text, events


@pytest.mark.parametrize("failure", ["killed", "blackholed", "wrong key", "closes mid-sentence", "stalls"])
async def test_failover_to_pocketsphinx_loses_nothing(failure: str, speech: tuple) -> None:
    """Whatever happens to Deepgram, the backup hears the player's whole turn: its final transcript is the one
    PocketSphinx gives for the whole clip on its own."""
    pcm, rate, reference = speech
    alone = [t async for t in make_stt("pocketsphinx").transcribe(speech_chunks(pcm, rate))][-1].text
    assert recall(reference, alone) >= 0.5
    cfg = DeepgramServerConfig(
        api_key=KEY,
        close_after_bytes=40_000 if failure == "closes mid-sentence" else None,
        stall=failure == "stalls",
    )
    if failure == "blackholed":
        async with blackhole() as url:
            text, events = await _failover_final(url, pcm, rate)
    else:
        async with DeepgramServer(cfg) as dg:
            if failure == "killed":
                await dg.stop()
            text, events = await _failover_final(dg.url, pcm, rate, "bad-key" if failure == "wrong key" else KEY)
            if failure == "closes mid-sentence":
                assert dg.connections[0].audio_bytes >= 40_000  # Deepgram had heard part of the turn
    assert text == alone
    assert [(e.kind, e.from_url, e.to_url) for e in events][:1] == [("failover", events[0].from_url, "pocketsphinx")]
    assert events[0].from_url.startswith("deepgram")
