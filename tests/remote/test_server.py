"""``facecast serve`` subprocesses and their clients: same output as in-process, validation, token, cancel."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence

import numpy as np
import pytest
from tests.fakes import FakeTTS
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from facecast.errors import ConfigError, InputError
from facecast.face.phonetic import PhoneticAnimator
from facecast.llm import EchoLLM
from facecast.protocol import service as sp
from facecast.remote.client import RemoteFace, RemoteLLM, RemoteTTS
from facecast.remote.server import start_server
from facecast.tts.espeak import EspeakTTS
from facecast.types import AudioChunk, ChatMessage, SpeechChunk

from .conftest import Service, facecast_serve

TEXT = "Maybe we can borrow my brother's boat tomorrow."


async def _local_speech(text: str = TEXT) -> list[SpeechChunk]:
    return [c async for c in EspeakTTS().synthesize(text)]


@pytest.fixture(scope="module")
def tts_server() -> object:
    service = facecast_serve("tts")
    yield service
    service.kill()


async def test_remote_tts_matches_in_process(tts_server: Service) -> None:
    client = RemoteTTS(tts_server.url)
    try:
        remote = [c async for c in client.synthesize(TEXT)]
        again = [c async for c in client.synthesize("Hi.")]  # the pooled connection is reused
    finally:
        await client.aclose()
    local = await _local_speech()
    # espeak-ng's timing varies by a few ms between runs: compare structure here, samples exactly below
    assert abs(sum(len(c.audio.pcm) for c in remote) - sum(len(c.audio.pcm) for c in local)) < 1000
    assert [p.symbol for c in remote for p in c.phonemes] == [p.symbol for c in local for p in c.phonemes]
    assert [w.text for c in remote for w in c.words] == [w.text for c in local for w in c.words]
    assert again and again[0].audio.offset == 0
    offsets = [c.audio.offset for c in remote]
    assert offsets == [0, *np.cumsum([len(c.audio.pcm) for c in remote])[:-1].tolist()]


@pytest.mark.parametrize("rate", [16000, 24000])
async def test_remote_tts_is_lossless_and_resamples(rate: int) -> None:
    async with await start_server("tts", FakeTTS(rate=16000)) as server:
        client = RemoteTTS(f"ws://127.0.0.1:{server.port}", rate=rate)
        remote = [c async for c in client.synthesize("abc")]
        await client.aclose()
    local = [c async for c in FakeTTS(rate=16000).synthesize("abc")]
    audio = np.concatenate([c.audio.pcm for c in remote])
    if rate == 16000:
        assert np.array_equal(audio, np.concatenate([c.audio.pcm for c in local]))
        assert [p for c in remote for p in c.phonemes] == [p for c in local for p in c.phonemes]
    else:
        assert abs(len(audio) - 3 * 24000 // 20) <= 2
        assert [p.start for c in remote for p in c.phonemes] == [0, 1200, 2400]
    assert [c.audio.offset for c in remote[1:]] == [c.audio.end for c in remote[:-1]]


async def test_remote_tts_bad_input_is_input_error(tts_server: Service) -> None:
    client = RemoteTTS(tts_server.url)
    try:
        with pytest.raises(InputError):
            _ = [c async for c in client.synthesize("   ")]
    finally:
        await client.aclose()


async def test_server_answers_bad_messages_and_keeps_serving(tts_server: Service) -> None:
    async with connect(tts_server.url) as ws:
        await ws.send(sp.encode(sp.Synthesize(1, "hi", 22050)))
        assert sp.decode_server(await ws.recv()) == sp.Error("no_hello", "send hello first")
        await ws.send(sp.encode(sp.Hello("stt")))
        assert isinstance(error := sp.decode_server(await ws.recv()), sp.Error) and error.code == "wrong_role"
        await ws.send(sp.encode(sp.Hello("tts")))
        assert sp.decode_server(await ws.recv()) == sp.Welcome("tts", 22050)
        bad: list[str | bytes] = [
            "{",
            b"\xff",
            '{"type":"synthesize","id":1,"text":"x","rate":1234}',
            '{"type":"transcribe","id":1,"rate":16000}',
            b"\x01\x01\x00",
            "[]",
            sp.encode_audio(5, AudioChunk(np.zeros(3, np.float32), 16000)),
            '{"type":"end","id":77}',
            "x" * (sp.MAX_TEXT_FRAME + 10),
        ]
        codes = []
        for message in bad:
            await ws.send(message)
            reply = sp.decode_server(await ws.recv())
            assert isinstance(reply, sp.Error)
            codes.append(reply.code)
        assert codes == [
            "bad_json",
            "bad_binary",
            "bad_audio_format",
            "wrong_role",
            "bad_binary",
            "bad_message",
            "bad_direction",
            "unknown_request",
            "too_large",
        ]
        await ws.send(sp.encode(sp.Synthesize(2, "Hello.", 22050)))
        kinds = []
        while not kinds or kinds[-1] != "Done":
            raw = await ws.recv()
            kinds.append(type(sp.decode_server(raw) if isinstance(raw, str) else sp.decode_binary(raw)).__name__)
        assert "AudioFrame" in kinds


def test_serve_refuses_off_loopback_without_token() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "facecast.cli", "serve", "llm", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "", "HOME": "/tmp"},
    )
    assert result.returncode == 1
    assert "token" in result.stderr


async def test_token_is_required_when_set() -> None:
    async with await start_server("llm", EchoLLM(), token="s3cret") as server:
        url = f"ws://127.0.0.1:{server.port}"
        with pytest.raises(InvalidStatus):
            async with connect(url):
                pass
        with pytest.raises(InvalidStatus):
            async with connect(url, additional_headers={"Authorization": "Bearer wrong"}):
                pass
        async with connect(url + "/?token=s3cret") as ws:
            await ws.send(sp.encode(sp.Ping(3)))
            assert sp.decode_server(await ws.recv()) == sp.Pong(3)
    with pytest.raises(ConfigError):
        await start_server("llm", EchoLLM(), host="0.0.0.0")


class _EndlessLLM:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        self.started.set()
        try:
            while True:
                await asyncio.sleep(0.005)
                yield "la "
        finally:
            self.stopped.set()


async def test_closing_the_client_stream_stops_the_server_work() -> None:
    model = _EndlessLLM()
    async with await start_server("llm", model) as server:
        client = RemoteLLM(f"ws://127.0.0.1:{server.port}")
        stream = client.stream([ChatMessage("user", "go")])
        assert await anext(stream) == "la "
        await stream.aclose()
        await asyncio.wait_for(model.stopped.wait(), 5)
        model.stopped.clear()
        # the same pooled connection serves the next request, without stale tokens of the cancelled one
        second = client.stream([ChatMessage("user", "go")])
        assert await anext(second) == "la "
        await second.aclose()
        await client.aclose()


async def test_remote_face_matches_in_process() -> None:
    speech = await _local_speech("Hello there.")

    async def feed() -> AsyncIterator[SpeechChunk]:
        for chunk in speech:
            yield chunk

    local = [f.values async for f in PhoneticAnimator().animate(feed())]
    async with await start_server("face", PhoneticAnimator()) as server:
        client = RemoteFace(f"ws://127.0.0.1:{server.port}")
        remote = [f async for f in client.animate(feed())]
        await client.aclose()
    assert remote[0].start == 0
    assert np.array_equal(np.concatenate([f.values for f in remote]), np.concatenate(local))
