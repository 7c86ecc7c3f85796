"""Resource limits of the NeuroSync audio endpoints over a real server: decompression bombs refused from their
header before decoding, content types a web page can send without asking refused, decodes capped."""

from __future__ import annotations

import asyncio
import base64
import io
import struct
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from facecast.server import BackgroundServer
from facecast.types import FaceFrames, SpeechChunk, frames_for_samples

from .test_neurosync_api import make_backends, start, wav_file

pytestmark = pytest.mark.timeout(120)

OCTET = {"Content-Type": "application/octet-stream"}


@pytest.fixture
async def server() -> AsyncIterator[BackgroundServer]:
    running = await start()
    try:
        yield running
    finally:
        await running.__aexit__(None, None, None)


def flac_claiming(seconds: float, rate: int = 384_000, channels: int = 8) -> bytes:
    """A real FLAC file (a few ms of silence, a few hundred bytes) whose STREAMINFO claims ``seconds`` of
    ``channels`` x ``rate`` audio: 8 x 384 kHz x 1,800 s would decode to 22 GB of float32."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros((rate // 100, channels), np.float32), rate, format="FLAC", subtype="PCM_16")
    data = bytearray(buf.getvalue())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first; total samples: low 36 bits at 18
    (packed,) = struct.unpack_from(">Q", data, 18)
    packed = (packed & ~((1 << 36) - 1)) | int(seconds * rate)
    struct.pack_into(">Q", data, 18, packed)
    return bytes(data)


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts reads of audio data (the header alone is read by opening a file)."""
    reads: list[int] = []
    original = sf.SoundFile.read

    def counting(self: sf.SoundFile, *args: Any, **kwargs: Any) -> Any:
        reads.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", counting)
    return reads


async def test_decompression_bombs_are_refused_from_their_header(server: Any, no_decoding: list[int]) -> None:
    flac = flac_claiming(1800)
    info = sf.info(io.BytesIO(flac))
    assert (info.samplerate, info.channels, info.frames) == (384_000, 8, 691_200_000) and len(flac) < 1_000
    long_flac = flac_claiming(3 * 3600, rate=16_000, channels=1)  # small once decoded per second, but 3 h
    async with httpx.AsyncClient(base_url=server.http_url, timeout=60) as client:
        for body, kind, code in ((flac, "audio/flac", "too_large"), (long_flac, "audio/flac", "too_long")):
            blend = await client.post("/audio_to_blendshapes", content=body, headers={"Content-Type": kind})
            words = await client.post("/transcribe", json={"audio_base64": base64.b64encode(body).decode()})
            for response in (blend, words):
                assert response.status_code == 413, response.text
                assert response.json()["code"] == code
        assert (
            "8 channels at 384000 Hz"
            in (await client.post("/audio_to_blendshapes", content=flac, headers=OCTET)).json()["message"]
        )
    assert not no_decoding  # refused before a single sample was decoded


async def test_only_audio_content_types_reach_the_decoder(server: Any) -> None:
    pcm = np.zeros(8000, np.float32)
    wav = wav_file(pcm, 16000)
    async with httpx.AsyncClient(base_url=server.http_url, timeout=60) as client:
        for kind in (
            None,
            "text/plain",
            "text/plain; charset=utf-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json",
        ):
            headers = {"Content-Type": kind} if kind else {}
            response = await client.post("/audio_to_blendshapes", content=wav, headers=headers)
            assert response.status_code == 415, (kind, response.text)
            assert response.json()["code"] == "unsupported_media_type"
            if kind != "application/json":
                response = await client.post("/transcribe", content=wav, headers=headers)
                assert response.status_code == 415, (kind, response.text)
        for kind in ("application/octet-stream", "audio/wav", "audio/x-wav", "application/ogg"):
            response = await client.post("/audio_to_blendshapes", content=wav, headers={"Content-Type": kind})
            assert response.status_code == 200 and len(response.json()["blendshapes"]) == 31, kind  # 0.5 s: 30 + 1
        words = await client.post("/transcribe", content=wav, headers={"Content-Type": "audio/wav"})
        assert words.status_code == 200


class GatedFace:
    """An audio-driven animator that holds every request until ``gate`` is set."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.waiting = 0
        self.two_waiting = asyncio.Event()

    async def animate(self, speech: AsyncIterable[SpeechChunk]) -> AsyncIterator[FaceFrames]:
        samples, rate = 0, 16000
        async for chunk in speech:
            samples, rate = samples + len(chunk.audio.pcm), chunk.audio.rate
        self.waiting += 1
        if self.waiting == 2:
            self.two_waiting.set()
        await self.gate.wait()
        yield FaceFrames(0, np.zeros((frames_for_samples(samples, rate), 68), np.float32))


async def test_concurrent_decodes_are_capped_with_retry_after() -> None:
    face = GatedFace()
    running = await start(backends=make_backends(audio_face=face))
    wav = wav_file(np.zeros(8000, np.float32), 16000)
    try:
        async with httpx.AsyncClient(base_url=running.http_url, timeout=60) as client:
            held = [
                asyncio.create_task(client.post("/audio_to_blendshapes", content=wav, headers=OCTET)) for _ in range(2)
            ]
            await asyncio.wait_for(face.two_waiting.wait(), 30)
            busy = await client.post("/audio_to_blendshapes", content=wav, headers=OCTET)
            busy_words = await client.post("/transcribe", content=wav, headers=OCTET)
            face.gate.set()
            done = await asyncio.gather(*held)
            after = await client.post("/audio_to_blendshapes", content=wav, headers=OCTET)
    finally:
        await running.__aexit__(None, None, None)
    for response in (busy, busy_words):
        assert response.status_code == 503 and response.json()["code"] == "busy"
        assert response.headers["retry-after"] == "1"
    assert [r.status_code for r in done] == [200, 200] and after.status_code == 200


class BusyFace:
    """An audio-driven animator that computes on the event loop's thread, as a local model does: a few ms of
    CPU per 100 ms of audio, one frame block per chunk."""

    def __init__(self) -> None:
        self.chunks = 0
        self.under_way = asyncio.Event()

    async def animate(self, speech: AsyncIterable[SpeechChunk]) -> AsyncIterator[FaceFrames]:
        import time

        done = 0
        async for chunk in speech:
            self.chunks += 1
            if self.chunks == 50:
                self.under_way.set()
            until = time.perf_counter() + 0.004
            while time.perf_counter() < until:
                pass
            end = frames_for_samples(chunk.audio.end, chunk.audio.rate)
            if end > done:
                yield FaceFrames(done, np.zeros((end - done, 68), np.float32))
                done = end


async def test_a_long_upload_does_not_stop_the_server_answering_others() -> None:
    face = BusyFace()
    running = await start(backends=make_backends(audio_face=face))
    try:
        long_take = wav_file(np.zeros(16_000 * 90, np.float32), 16_000)  # 90 s: 900 chunks, seconds of CPU
        async with httpx.AsyncClient(base_url=running.http_url, timeout=60) as client:
            animated_when_answered: list[int] = []

            async def upload() -> None:
                reply = await client.post("/audio_to_blendshapes", content=long_take, headers=OCTET)
                assert reply.status_code == 200

            async def health() -> None:
                await face.under_way.wait()  # the animation is under way
                reply = await client.get("/health")
                assert reply.status_code == 200
                animated_when_answered.append(face.chunks)

            await asyncio.gather(upload(), health())
        # answered while the long take was still being animated, not once it was done
        assert face.chunks == 900 and animated_when_answered[0] < 900
    finally:
        await running.__aexit__(None, None, None)
