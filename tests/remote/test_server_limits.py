"""Limits of the standalone services: ``facecast serve stt`` runs at most ``max_recognisers`` requests at once
and answers more with ``busy`` at once (so a failover client moves on), and a request's audio waiting for its
role is bounded (``too_large``, the request stopped; the connection goes on serving)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect

from facecast.limits import MAX_BUFFERED_SAMPLES
from facecast.protocol import service as sp
from facecast.protocol.service import MAX_BINARY_FRAME
from facecast.remote.server import start_server
from facecast.types import AudioChunk, Transcript

from .conftest import Service, facecast_serve

pytestmark = pytest.mark.timeout(120)


async def receive(ws: ClientConnection) -> sp.ServerMessage:
    while True:
        raw = await asyncio.wait_for(ws.recv(), 30)
        if isinstance(raw, str):
            message = sp.decode_server(raw)
            if not isinstance(message, sp.Pong | sp.Ping):
                return message


async def until_done(ws: ClientConnection, ident: int) -> list[sp.ServerMessage]:
    seen: list[sp.ServerMessage] = []
    while True:
        message = await receive(ws)
        seen.append(message)
        if getattr(message, "id", None) == ident and isinstance(message, sp.Done | sp.Error):
            return seen


def audio(ident: int, seconds: float, offset: int = 0) -> bytes:
    pcm = np.zeros(int(seconds * 16000), np.float32)
    return sp.encode_audio(ident, AudioChunk(pcm, 16000, offset))


async def test_serve_stt_refuses_requests_past_max_recognisers_with_busy(
    services: list[Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACECAST_MAX_RECOGNISERS", "1")
    service = facecast_serve("stt")
    services.append(service)
    async with connect(service.url) as ws:
        await ws.send(sp.encode(sp.Hello("stt")))
        assert isinstance(await receive(ws), sp.Welcome)
        await ws.send(sp.encode(sp.Transcribe(1, 16000)))  # open, streaming: holds the only recogniser
        await ws.send(audio(1, 0.2))
        await ws.send(sp.encode(sp.Ping(7)))  # the server handles frames in order: request 1 has started
        while not isinstance(sp.decode_server(await ws.recv()), sp.Pong):
            pass
        await ws.send(sp.encode(sp.Transcribe(2, 16000)))
        error = await receive(ws)
        assert isinstance(error, sp.Error) and (error.id, error.code) == (2, "busy"), error
        assert "max_recognisers" in error.message
        await ws.send(sp.encode(sp.End(1)))
        finished = await until_done(ws, 1)
        assert isinstance(finished[-1], sp.Done) and any(isinstance(m, sp.TranscriptOut) for m in finished)
        await ws.send(sp.encode(sp.Transcribe(3, 16000)))  # the recogniser is free again
        await ws.send(audio(3, 0.2))
        await ws.send(sp.encode(sp.End(3)))
        assert isinstance((await until_done(ws, 3))[-1], sp.Done)


class StalledSTT:
    """Takes no audio until ``go`` is set."""

    def __init__(self) -> None:
        self.go = asyncio.Event()

    async def transcribe(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcript]:
        await self.go.wait()
        samples = 0
        async for chunk in audio:
            samples += len(chunk.pcm)
        yield Transcript(f"{samples} samples", True)


async def test_audio_far_ahead_of_the_role_stops_the_request_and_the_connection_goes_on() -> None:
    stt = StalledSTT()
    async with await start_server("stt", stt) as server, connect(f"ws://127.0.0.1:{server.port}") as ws:
        await ws.send(sp.encode(sp.Hello("stt")))
        assert isinstance(await receive(ws), sp.Welcome)
        await ws.send(sp.encode(sp.Transcribe(1, 16000)))
        per_frame = (MAX_BINARY_FRAME - 24) // 4
        frames = MAX_BUFFERED_SAMPLES // per_frame + 2  # 4.2 M samples and more, sent at once
        pcm = np.zeros(per_frame, np.float32)
        for n in range(frames):
            await ws.send(sp.encode_audio(1, AudioChunk(pcm, 16000, n * per_frame)))
        error = await receive(ws)
        assert isinstance(error, sp.Error) and (error.id, error.code) == (1, "too_large"), error
        assert "request stopped" in error.message
        later = await receive(ws)  # the frame after the limit: the request is gone
        assert isinstance(later, sp.Error) and later.code == "unknown_request"
        stt.go.set()
        await ws.send(sp.encode(sp.Transcribe(2, 16000)))  # the connection serves the next request
        await ws.send(audio(2, 0.5))
        await ws.send(sp.encode(sp.End(2)))
        replies = await until_done(ws, 2)
        assert isinstance(replies[-1], sp.Done)
        assert [m.text for m in replies if isinstance(m, sp.TranscriptOut)] == ["8000 samples"]
