"""Cartesia over its TTS WebSocket, against tests/servers/cartesia_server.py: an implementation of the documented
protocol for tests, not the service (api.cartesia.ai cannot be reached from here). The server speaks with the
real Piper voice and sends Piper's word timing as Cartesia word timestamps.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from tests.servers.cartesia_server import CartesiaServer
from tests.tts.test_aligned import BILABIAL_TEXT, closes_near

from facecast.config import Settings
from facecast.errors import BusyError, ConfigError, InputError, ServiceError
from facecast.face.phonetic import PhoneticAnimator
from facecast.registry import get
from facecast.services import make_tts
from facecast.testing import check_tts
from facecast.tts.aligned import WordTimedTTS
from facecast.tts.cartesia import CartesiaOptions, CartesiaTTS

KEY = "sk_car_test_91c2"
TEXT = "Bob bought five maps. Would you like one?"


@pytest.fixture(autouse=True)
def no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CARTESIA_API_KEY", "FACECAST_TTS_CARTESIA_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def settings(url: str, key: str = KEY, **more: object) -> Settings:
    return Settings(providers={"tts.cartesia": {"base_url": url, "api_key": key, **more}})


def direct(url: str, key: str = KEY, timeout: float = 10.0, encoding: str = "pcm_s16le") -> CartesiaTTS:
    return CartesiaTTS(CartesiaOptions(api_key=key, base_url=url, timeout=timeout, encoding=encoding))


@pytest.mark.parametrize("encoding", ["pcm_s16le", "pcm_f32le"])
async def test_round_trip_follows_the_protocol_and_conforms(encoding: str) -> None:
    async with CartesiaServer(key=KEY) as server:
        tts = make_tts("cartesia", settings(server.url, encoding=encoding))
        assert isinstance(tts, WordTimedTTS) and tts.sample_rate == 24000
        result = await check_tts(tts, TEXT)
    request = server.received[0]
    assert request["transcript"] == TEXT and request["add_timestamps"] is True and request["continue"] is False
    assert request["voice"] == {"mode": "id", "id": "a0e99841-438c-4a64-b679-ae501e7d6091"}
    assert request["output_format"] == {"container": "raw", "encoding": encoding, "sample_rate": 24000}
    spoken = server.spoken[0]
    assert len(result.audio) == len(spoken.pcm)
    tolerance = 2.0 / 32768 if encoding == "pcm_s16le" else 1e-7
    assert float(np.abs(result.audio - spoken.pcm).max()) <= tolerance
    words = [w for c in result.chunks for w in c.words]
    assert [w.text for w in words] == ["Bob", "bought", "five", "maps", "Would", "you", "like", "one"]
    assert [(w.start, w.end) for w in words] == [(w.start, w.end) for w in spoken.words]
    assert [p for c in result.chunks for p in c.phonemes][0].symbol == "b"
    assert get("tts", "cartesia").caps.timing == "phonemes" and get("tts", "cartesia").caps.remote


async def test_lips_close_on_every_bilabial_from_cartesia_word_timestamps() -> None:
    async with CartesiaServer(key=KEY) as server:
        tts = make_tts("cartesia", settings(server.url))
        chunks = [c async for c in tts.synthesize(BILABIAL_TEXT)]
    truth = [p for p in server.spoken[0].phonemes if p.symbol in ("p", "b", "m")]
    frames = PhoneticAnimator().render([p for c in chunks for p in c.phonemes], chunks[-1].audio.end, 24000)
    missed = [p for p in truth if not closes_near(frames, p, 24000)]
    assert len(truth) >= 20 and not missed, missed


async def test_audio_is_held_until_its_words_are_announced() -> None:
    """The server sends each chunk's word timestamps after the chunk: no chunk may go out without its words."""
    async with CartesiaServer(key=KEY) as server:
        chunks = [c async for c in direct(server.url).synthesize(TEXT)]
    truth = server.spoken[0].words
    for chunk in chunks:
        expected = [w.text for w in truth if chunk.audio.offset <= w.start < chunk.audio.end]
        assert [w.text for w in chunk.words] == expected


def test_missing_key_is_a_config_error_at_build() -> None:
    with pytest.raises(ConfigError, match="CARTESIA_API_KEY"):
        make_tts("cartesia", Settings())


def test_bad_options_are_input_errors() -> None:
    with pytest.raises(InputError, match="encoding"):
        CartesiaOptions(encoding="mp3")
    with pytest.raises(InputError, match="sample_rate"):
        CartesiaOptions(sample_rate=12345)


@pytest.mark.parametrize(
    ("mode", "error", "match"),
    [
        ("bad_key", ServiceError, "rejected the API key"),
        ("rate_limit", BusyError, "429"),
        ("garbage", ServiceError, "not JSON"),
        ("close_mid", ServiceError, "closed the connection before the end"),
        ("error_frame", ServiceError, "status 500"),
        ("stall", ServiceError, "stalled"),
    ],
)
async def test_a_bad_service_gives_a_clear_error(mode: str, error: type[Exception], match: str) -> None:
    async with CartesiaServer(key=KEY, mode=mode) as server:
        with pytest.raises(error, match=match) as caught:
            # a short wait only where the stall is the point: the server's local voice is slow on a busy machine
            [c async for c in direct(server.url, timeout=0.5 if mode == "stall" else 10.0).synthesize(TEXT)]
    assert KEY not in str(caught.value)


async def test_an_invalid_request_gets_the_error_message() -> None:
    async with CartesiaServer(key=KEY) as server:
        tts = CartesiaTTS(CartesiaOptions(api_key=KEY, base_url=server.url, model_id=""))
        with pytest.raises(ServiceError, match="status 400.*model_id"):
            [c async for c in tts.synthesize(TEXT)]


async def test_the_connection_limit_is_a_busy_error() -> None:
    async with CartesiaServer(key=KEY, mode="stall", max_connections=1) as server:
        stalled = direct(server.url, timeout=5).synthesize(TEXT)
        waiting = asyncio.ensure_future(stalled.__anext__())
        await server.opened.wait()
        with pytest.raises(BusyError, match="connection limit"):
            [c async for c in direct(server.url).synthesize(TEXT)]
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await stalled.aclose()


async def test_failover_to_piper_when_cartesia_refuses_the_key() -> None:
    async with CartesiaServer(key=KEY) as server:
        tts = make_tts("cartesia,piper", settings(server.url, "sk-revoked", timeout=1.0))
        chunks = [c async for c in tts.synthesize(TEXT)]
    assert not server.spoken
    assert [w.text for c in chunks for w in c.words][:2] == ["Bob", "bought"]
    audio = np.concatenate([c.audio.pcm for c in chunks])
    assert len(audio) > 24000 and float(np.sqrt(np.mean(audio**2))) > 0.02
