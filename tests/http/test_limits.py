"""The engine socket's limits over a real server (uvicorn on a free port) and real clients: too many sessions,
all recognisers busy, an endless turn, an idle client, a flooding client, a client that stopped reading, a
lip-sync stream far ahead of its model. Each limit answers with a clear error (or resets only the offending
connection) and everything else goes on serving."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import numpy as np
import pytest
from tests.conftest import LIGHT
from tests.fakes import FakeFace, FakeLLM, FakeSTT, FakeTTS
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from facecast.config import Settings
from facecast.protocol import engine as proto
from facecast.server import BackgroundServer
from facecast.services import Services
from facecast.types import AudioChunk, FaceFrames, SpeechChunk, Transcript, frames_for_samples

from .test_neurosync_api import wav_file

pytestmark = pytest.mark.timeout(120)

BASE = replace(Settings(**LIGHT), livelink=("off",))


def services(stt: Any = None, audio_face: Any = None, tts: Any = None) -> Services:
    return Services(stt or FakeSTT(), FakeLLM(), tts or FakeTTS(rate=16000), FakeFace(), audio_face=audio_face)


async def next_json(ws: ClientConnection, timeout: float = 20) -> dict[str, Any]:
    while True:
        message = await asyncio.wait_for(ws.recv(), timeout)
        if isinstance(message, str):
            return dict(json.loads(message))


async def until(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while (message := await next_json(ws))["type"] != kind:
        pass
    return message


async def hello(ws: ClientConnection, **fields: Any) -> None:
    await ws.send(json.dumps({"type": "hello", "acks": False, **fields}))
    assert (await next_json(ws))["type"] == "welcome"


async def pings_back(ws: ClientConnection, ident: str) -> None:
    await ws.send(json.dumps({"type": "ping", "id": ident}))
    while (message := await next_json(ws)) != {"type": "pong", "id": ident}:
        assert message["type"] != "error", message


def mic(seconds: float, rate: int = 16000, offset: int = 0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()
    return proto.encode_mic(offset, pcm)


async def wait_for(condition: Any, timeout: float = 30) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < give_up, "condition not reached"
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------------------------------- max_sessions


async def test_a_session_over_max_sessions_gets_busy_and_a_close_and_the_others_go_on() -> None:
    async with BackgroundServer(replace(BASE, max_sessions=2), services()) as server:
        async with connect(server.ws_url) as first, connect(server.ws_url) as second:
            await hello(first)
            await hello(second)
            async with connect(server.ws_url) as third:
                error = await next_json(third)
                assert error["type"] == "error" and error["code"] == "busy" and "max_sessions" in error["message"]
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(third.recv(), 20)
                assert third.close_code == 1013  # try again later
            await pings_back(first, "still here")
            await pings_back(second, "me too")
        await wait_for(lambda: not server.state.sessions)
        async with connect(server.ws_url) as again:  # a place is free again
            await hello(again)
            await pings_back(again, "in")
        async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
            metrics = (await client.get("/metrics")).text
        assert 'facecast_errors_total{code="busy"} 1.0' in metrics


# ---------------------------------------------------------------------------------------- max_recognisers


class HeldSTT:
    """A recogniser that holds each stream (after its audio ended) until ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.streams = 0

    async def transcribe(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcript]:
        self.streams += 1
        async for _ in audio:
            pass
        await self.release.wait()
        yield Transcript("hello there", True)


async def test_past_max_recognisers_a_turn_gets_busy_http_gets_503_and_the_session_goes_on() -> None:
    stt = HeldSTT()
    async with BackgroundServer(replace(BASE, max_recognisers=1), services(stt)) as server:
        async with connect(server.ws_url) as holder, connect(server.ws_url) as other:
            await hello(holder, turns="client")
            await hello(other, turns="client")
            await holder.send(mic(0.5))  # a turn opens: its speech-to-text stream holds the only recogniser
            await wait_for(lambda: stt.streams == 1)
            await other.send(mic(0.5))
            error = await until(other, "error")
            assert error["code"] == "busy" and "max_recognisers" in error["message"], error
            assert stt.streams == 1  # the refused stream never reached the recogniser
            await pings_back(other, "session goes on")
            async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
                wav = wav_file(np.zeros(16000, np.float32), 16000)
                response = await client.post(
                    "/transcribe", content=wav, headers={"Content-Type": "application/octet-stream"}
                )
            assert response.status_code == 503, response.text
            assert response.json()["code"] == "busy" and response.headers["retry-after"] == "1"
            stt.release.set()
            await holder.send(json.dumps({"type": "end_of_speech"}))
            assert (await until(holder, "transcript"))["text"] == "hello there"
            await until(holder, "utterance_end")
            await other.send(json.dumps({"type": "end_of_speech"}))  # ends the refused turn: nothing to say
            await other.send(mic(0.5, offset=8000))  # the next turn finds a free recogniser
            await other.send(json.dumps({"type": "end_of_speech"}))
            assert (await until(other, "transcript"))["text"] == "hello there"
            await until(other, "utterance_end")


class HeldTTS(FakeTTS):
    """Speech that starts only once ``release`` is set; ``started`` counts the syntheses begun."""

    def __init__(self) -> None:
        super().__init__(rate=16000)
        self.release = asyncio.Event()
        self.started = 0

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        self.started += 1
        await self.release.wait()
        async for chunk in super().synthesize(text):
            yield chunk


async def test_speech_requests_past_neurosync_max_jobs_get_503_instead_of_queueing() -> None:
    tts = HeldTTS()
    async with BackgroundServer(replace(BASE, neurosync_max_jobs=1), services(tts=tts)) as server:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
            first = asyncio.create_task(client.post("/generate_speech", json={"text": "Hi."}))
            await wait_for(lambda: tts.started == 1)
            busy = await client.post("/synthesize_and_blendshapes", json={"text": "Me too."})
            assert busy.status_code == 503 and busy.json()["code"] == "busy", busy.text
            assert busy.headers["retry-after"] == "1" and tts.started == 1
            tts.release.set()
            assert (await first).status_code == 200
            after = await client.post("/synthesize_and_blendshapes", json={"text": "Me too."})
            assert after.status_code == 200


# --------------------------------------------------------------------------------------------- max_turn_s


async def test_a_turn_longer_than_max_turn_s_is_dropped_with_an_error() -> None:
    async with BackgroundServer(replace(BASE, max_turn_s=1.0), services()) as server:
        async with connect(server.ws_url) as ws:
            await hello(ws, turns="client")
            await ws.send(mic(0.6))
            await ws.send(mic(0.6, offset=9600))
            error = await until(ws, "error")
            assert error["code"] == "utterance_too_long" and "over 1 s" in error["message"], error
            await pings_back(ws, "still open")
            await ws.send(json.dumps({"type": "text", "text": "Typed turns still work."}))
            await until(ws, "utterance_end")


# ----------------------------------------------------------------------------------------- idle_timeout_s


async def test_a_silent_client_is_closed_after_idle_timeout_s_and_pings_keep_one_open() -> None:
    async with BackgroundServer(replace(BASE, idle_timeout_s=1.0), services()) as server:
        async with connect(server.ws_url) as busy, connect(server.ws_url) as silent:
            await hello(busy)
            await hello(silent)
            started = time.monotonic()
            pinged = 0
            while time.monotonic() - started < 2.0:  # twice the timeout, with a ping every 0.1 s
                await pings_back(busy, f"p{pinged}")
                pinged += 1
                await asyncio.sleep(0.1)
            error = await next_json(silent)
            assert error["type"] == "error" and error["code"] == "idle_timeout", error
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(silent.recv(), 20)
            assert silent.close_code == 4408
            await pings_back(busy, "alive")  # the client that kept talking is still served
            assert len(server.state.sessions) == 1


# ------------------------------------------------------------------------------------- max_messages_per_s


async def test_a_flood_is_dropped_with_one_error_a_second_and_other_sessions_are_served() -> None:
    flood = 3000
    async with BackgroundServer(replace(BASE, max_messages_per_s=20), services()) as server:
        async with connect(server.ws_url) as flooder, connect(server.ws_url) as neighbour:
            await hello(flooder)
            await hello(neighbour)
            received: list[dict[str, Any]] = []

            async def read() -> None:
                while True:
                    received.append(json.loads(await flooder.recv()))

            reader = asyncio.create_task(read())
            started = time.monotonic()

            async def send_flood() -> None:
                for n in range(flood):
                    await flooder.send(json.dumps({"type": "ping", "id": n}))

            sender = asyncio.create_task(send_flood())
            for n in range(10):  # the neighbour is served while the flood goes on
                await pings_back(neighbour, f"n{n}")
            await sender
            answered = set()
            for attempt in range(200):  # once the bucket refills, the flooder's session still answers
                await flooder.send(json.dumps({"type": "ping", "id": f"after{attempt}"}))
                await asyncio.sleep(0.1)
                answered = {m.get("id") for m in received if m["type"] == "pong"}
                if any(str(i).startswith("after") for i in answered):
                    break
            elapsed = time.monotonic() - started
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            errors = [m for m in received if m["type"] == "error"]
            pongs = [m for m in received if m["type"] == "pong" and isinstance(m["id"], int)]
            assert any(str(i).startswith("after") for i in answered)
            assert errors and all(e["code"] == "rate_limited" for e in errors), errors[:3]
            assert "dropped" in errors[0]["message"]
            assert len(pongs) < flood  # frames past the limit were dropped...
            assert len(errors) <= elapsed + 2  # ...with at most one error a second, not one per frame
            assert len(server.state.sessions) == 2


# ----------------------------------------------------------------------------------------- send_timeout_s


def small_window_socket(port: int) -> socket.socket:
    """A connected client socket with a small receive buffer, so a client that does not read fills it fast."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def test_a_client_that_stops_reading_is_reset_and_its_session_ended() -> None:
    settings = replace(BASE, send_timeout_s=0.5, max_messages_per_s=0)
    async with BackgroundServer(settings, services()) as server:
        stuck = await connect(server.ws_url, sock=small_window_socket(server.port), max_queue=1)
        await hello(stuck)
        async with connect(server.ws_url) as healthy:
            await hello(healthy)
            big = "x" * 60_000

            async def flood() -> None:  # every ping's pong is as big; the client never reads one
                for n in range(2000):
                    await stuck.send(json.dumps({"type": "ping", "id": f"{n}{big}"}))

            sender = asyncio.create_task(flood())
            await wait_for(lambda: len(server.state.sessions) == 1, timeout=60)
            session = next(iter(server.state.sessions))
            assert session.hello is not None and not session.closed.is_set()  # the healthy one stayed
            with pytest.raises(ConnectionClosed):  # the stuck client's connection was reset
                await asyncio.wait_for(sender, 60)
            await pings_back(healthy, "unaffected")
        await stuck.close()


# ---------------------------------------------------------------------------------- buffered input audio


class StalledFace:
    """An audio-driven animator that takes no audio until ``go`` is set."""

    def __init__(self) -> None:
        self.go = asyncio.Event()

    async def animate(self, speech: AsyncIterable[SpeechChunk]) -> AsyncIterator[FaceFrames]:
        await self.go.wait()
        samples, rate = 0, 16000
        async for chunk in speech:
            samples, rate = samples + len(chunk.audio.pcm), chunk.audio.rate
        yield FaceFrames(0, np.zeros((frames_for_samples(samples, rate), 68), np.float32))


async def test_lipsync_audio_far_ahead_of_its_model_is_refused_and_the_session_goes_on() -> None:
    face = StalledFace()
    async with BackgroundServer(BASE, services(audio_face=face)) as server:
        async with connect(server.ws_url) as ws:
            await hello(ws, workflow="lipsync", face=True)
            frame = (proto.MAX_BINARY_FRAME - 16) // 2  # samples in the largest mic frame
            pcm = np.zeros(frame, "<i2").tobytes()
            for n in range(10):  # 5.2 M samples (5 min at 16 kHz) sent at once; the model took none
                await ws.send(proto.encode_mic(n * frame, pcm))
            error = await until(ws, "error")
            assert error["code"] == "too_large" and "end_of_speech" in error["message"], error
            await pings_back(ws, "still open")  # one error, not one per frame; the session goes on
            await ws.send(json.dumps({"type": "end_of_speech"}))
            face.go.set()
            await ws.send(mic(1.0))  # a new stream at about real time is animated
            await ws.send(json.dumps({"type": "end_of_speech"}))
            start = await until(ws, "utterance_start")
            end = await until(ws, "utterance_end")
            assert end["utterance"] == start["utterance"] == 2 and end["frames"] == 60
