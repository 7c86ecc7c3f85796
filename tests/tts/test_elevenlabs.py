"""ElevenLabs over its stream-input WebSocket, against tests/servers/elevenlabs_server.py: an implementation of the
documented protocol for tests, not the service (api.elevenlabs.io cannot be reached from here). The server speaks
with the real Piper voice, so its alignment and the truth behind it (Piper's phonemes) are real speech timing.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from tests.servers.elevenlabs_server import ElevenLabsServer
from tests.tts.test_aligned import BILABIAL_TEXT, closes_near

from facecast.config import Settings
from facecast.errors import BusyError, ConfigError, InputError, ServiceError
from facecast.face.phonetic import PhoneticAnimator
from facecast.registry import get
from facecast.services import make_tts
from facecast.testing import check_tts
from facecast.tts.aligned import WordTimedTTS
from facecast.tts.elevenlabs import ElevenLabsOptions, ElevenLabsTTS
from facecast.types import SpeechChunk

KEY = "sk-test-5f1e2d"
TEXT = "Bob bought five maps. Would you like one?"


@pytest.fixture(autouse=True)
def no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ELEVENLABS_API_KEY", "FACECAST_TTS_ELEVENLABS_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def settings(url: str, key: str = KEY, **more: object) -> Settings:
    return Settings(providers={"tts.elevenlabs": {"base_url": url, "api_key": key, **more}})


def direct(url: str, key: str = KEY, timeout: float = 10.0) -> ElevenLabsTTS:
    return ElevenLabsTTS(ElevenLabsOptions(api_key=key, base_url=url, timeout=timeout))


async def test_round_trip_follows_the_protocol_and_conforms() -> None:
    async with ElevenLabsServer(key=KEY) as server:
        tts = make_tts("elevenlabs", settings(server.url))
        assert isinstance(tts, WordTimedTTS) and tts.sample_rate == 24000
        result = await check_tts(tts, TEXT)
        # the documented message order: initial " " with settings, the text with flush, then "" to end
        first = server.received[:3]
        assert first[0]["text"] == " " and "voice_settings" in first[0] and "generation_config" in first[0]
        assert first[1] == {"text": TEXT + " ", "flush": True} and first[2] == {"text": ""}
        request = server.requests[0]
        assert request.path.startswith("/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/stream-input?")
        assert "output_format=pcm_24000" in request.path and "model_id=eleven_flash_v2_5" in request.path
        assert KEY not in request.path and request.headers["xi-api-key"] == KEY
    spoken = server.spoken[0]
    audio = result.audio
    assert len(audio) == len(spoken.pcm)  # every sample arrived, PCM16 round trip
    assert float(np.abs(audio - spoken.pcm).max()) <= 2.0 / 32768  # PCM16 quantisation
    words = [w for c in result.chunks for w in c.words]
    assert [w.text for w in words] == ["Bob", "bought", "five", "maps", "Would", "you", "like", "one"]
    for mine, theirs in zip(words, spoken.words, strict=True):  # ms-rounded alignment: within 1 ms
        assert abs(mine.start - theirs.start) <= 24 and abs(mine.end - theirs.end) <= 48
    phonemes = [p for c in result.chunks for p in c.phonemes]
    assert phonemes[0].symbol == "b" and {p.alphabet for p in phonemes} == {"espeak"}
    assert get("tts", "elevenlabs").caps.timing == "phonemes" and get("tts", "elevenlabs").caps.alphabet == "espeak"


async def test_lips_close_on_every_bilabial_from_elevenlabs_alignment() -> None:
    async with ElevenLabsServer(key=KEY) as server:
        tts = make_tts("elevenlabs", settings(server.url))
        chunks = [c async for c in tts.synthesize(BILABIAL_TEXT)]
    rate = tts.sample_rate
    truth = [p for p in server.spoken[0].phonemes if p.symbol in ("p", "b", "m")]
    assert len(truth) >= 20
    frames = PhoneticAnimator().render([p for c in chunks for p in c.phonemes], chunks[-1].audio.end, rate)
    missed = [p for p in truth if not closes_near(frames, p, rate)]
    assert not missed, missed


async def test_a_word_split_across_messages_is_held_until_complete() -> None:
    async with ElevenLabsServer(key=KEY) as server:
        chunks = [c async for c in direct(server.url).synthesize(TEXT)]
    offsets = [c.audio.offset for c in chunks]
    assert offsets == sorted(offsets) and chunks[0].audio.offset == 0
    for chunk in chunks:
        assert all(chunk.audio.offset <= w.start < chunk.audio.end for w in chunk.words)
    # 200 ms messages cut words in two: a word is carried whole by the chunk it starts in
    assert any(w.end > c.audio.end for c in chunks for w in c.words)


def test_missing_key_is_a_config_error_at_build() -> None:
    with pytest.raises(ConfigError, match="ELEVENLABS_API_KEY"):
        make_tts("elevenlabs", Settings())


def test_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELEVENLABS_API_KEY", KEY)
    tts = make_tts("elevenlabs:myvoice", Settings())
    assert isinstance(tts, WordTimedTTS) and tts.options.voice_id == "myvoice"
    assert KEY not in repr(tts) and KEY not in repr(tts.options)


def test_bad_options_are_input_errors() -> None:
    with pytest.raises(InputError, match="sample_rate"):
        ElevenLabsOptions(sample_rate=48000)
    with pytest.raises(InputError, match="base_url"):
        ElevenLabsOptions(base_url="https://api.elevenlabs.io")


async def test_empty_text_is_an_input_error_before_connecting() -> None:
    with pytest.raises(InputError):
        [c async for c in direct("ws://127.0.0.1:9").synthesize("  ")]


@pytest.mark.parametrize(
    ("mode", "error", "match"),
    [
        ("bad_key", ServiceError, "rejected the API key"),
        ("rate_limit", BusyError, "429"),
        ("garbage", ServiceError, "not JSON"),
        ("close_mid", ServiceError, "closed the connection before the end"),
        ("error_frame", ServiceError, "quota"),
        ("stall", ServiceError, "stalled"),
    ],
)
async def test_a_bad_service_gives_a_clear_error(mode: str, error: type[Exception], match: str) -> None:
    async with ElevenLabsServer(key=KEY, mode=mode) as server:
        with pytest.raises(error, match=match) as caught:
            # a short wait only where the stall is the point: the server's local voice is slow on a busy machine
            [c async for c in direct(server.url, timeout=0.5 if mode == "stall" else 10.0).synthesize(TEXT)]
    assert KEY not in str(caught.value)


async def test_a_wrong_key_is_refused_and_not_echoed() -> None:
    async with ElevenLabsServer(key=KEY) as server:
        with pytest.raises(ServiceError, match="HTTP 401") as caught:
            [c async for c in direct(server.url, key="sk-wrong-77").synthesize(TEXT)]
    assert "sk-wrong-77" not in str(caught.value)


async def test_the_connection_limit_is_a_busy_error() -> None:
    async with ElevenLabsServer(key=KEY, mode="stall", max_connections=1) as server:
        stalled = direct(server.url, timeout=5).synthesize(TEXT)
        waiting = asyncio.ensure_future(stalled.__anext__())
        await server.opened.wait()
        with pytest.raises(BusyError, match="connection limit"):
            [c async for c in direct(server.url).synthesize(TEXT)]
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await stalled.aclose()


# --- failover: --tts elevenlabs,piper -------------------------------------------------------------------------


async def spoken_by_failover(url: str, key: str = KEY) -> tuple[list[SpeechChunk], np.ndarray]:
    tts = make_tts("elevenlabs,piper", settings(url, key, timeout=1.0))
    chunks = [c async for c in tts.synthesize(TEXT)]
    return chunks, np.concatenate([c.audio.pcm for c in chunks])


def assert_spoken(chunks: list[SpeechChunk], audio: np.ndarray) -> None:
    words = [w.text for c in chunks for w in c.words]
    assert words[:2] == ["Bob", "bought"] and words[-1] == "one", words
    assert len(audio) > 24000 and float(np.sqrt(np.mean(audio**2))) > 0.02


@pytest.fixture
def killed_server() -> Iterator[str]:
    script = Path(__file__).parents[1] / "servers" / "elevenlabs_server.py"
    root = Path(__file__).parents[2]
    process = subprocess.Popen(
        [sys.executable, str(script), "--key", KEY], stdout=subprocess.PIPE, text=True, cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("ready "), line
        process.kill()
        process.wait(10)
        yield line.split()[1]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


async def test_failover_when_the_primary_is_killed(killed_server: str) -> None:
    assert_spoken(*await spoken_by_failover(killed_server))


@pytest.fixture
async def blackhole() -> AsyncIterator[str]:
    """Accepts TCP connections and never answers (not even the WebSocket handshake)."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"ws://127.0.0.1:{port}"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_failover_when_the_primary_is_blackholed(blackhole: str) -> None:
    assert_spoken(*await spoken_by_failover(blackhole))


async def test_failover_when_the_primary_refuses_the_key() -> None:
    async with ElevenLabsServer(key=KEY) as server:
        assert_spoken(*await spoken_by_failover(server.url, key="sk-revoked"))
        assert not server.spoken  # nothing was said by the refusing primary


async def test_failover_keeps_the_primary_when_it_works() -> None:
    async with ElevenLabsServer(key=KEY) as server:
        chunks, audio = await spoken_by_failover(server.url)
        assert_spoken(chunks, audio)
        assert len(server.spoken) == 1 and len(audio) == len(server.spoken[0].pcm)


def test_an_unknown_g2p_voice_fails_at_build() -> None:
    with pytest.raises(InputError, match="espeak-ng voice"):
        make_tts("elevenlabs", Settings(providers={"tts.elevenlabs": {"api_key": KEY, "g2p_voice": "xx-nope"}}))


async def test_warm_up_starts_the_phonemizer_without_the_service() -> None:
    tts = make_tts("elevenlabs", settings("ws://127.0.0.1:9"))
    await tts.warm_up()  # type: ignore[attr-defined]  # no connection is made: the service is only reached to speak


def test_pcm_decoding_rejects_garbage() -> None:
    import base64

    from facecast.tts.cloudws import decode_pcm

    assert decode_pcm(base64.b64encode(b"\x00\x80\xff\x7f").decode(), "pcm_s16le", "X").tolist() == [
        -1.0,
        32767 / 32768,
    ]
    for data, encoding in [("%%%", "pcm_s16le"), (base64.b64encode(b"abc").decode(), "pcm_s16le"), (7, "pcm_s16le")]:
        with pytest.raises(ServiceError):
            decode_pcm(data, encoding, "X")
    nan = base64.b64encode(np.array([np.nan], "<f4").tobytes()).decode()
    with pytest.raises(ServiceError, match="non-finite"):
        decode_pcm(nan, "pcm_f32le", "X")


def test_word_hold_keeps_the_chunk_contract() -> None:
    from facecast.tts.cloudws import WordHold
    from facecast.types import Word

    hold = WordHold(1000)
    hold.audio(np.zeros(100, np.float32))
    assert hold.release() == []  # nothing is known about its words yet
    hold.words([Word("a", 10, 150)])
    hold.known(150)  # the next word starts at 150 or later
    first = hold.release()
    assert [(c.audio.offset, [(w.text, w.start, w.end) for w in c.words]) for c in first] == [(0, [("a", 10, 150)])]
    hold.audio(np.zeros(100, np.float32))
    hold.words([Word("b", 190, 260), Word("c", 400, 420)])  # "b" runs past the audio, "c" starts after it
    rest = hold.release(final=True)
    assert [[(w.text, w.start, w.end) for w in c.words] for c in rest] == [[("b", 190, 200)]]
