"""A real Facecast server (uvicorn on a free loopback port) for end-to-end tests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest
import uvicorn

from facecast.config import Settings
from facecast.face.phonetic import PhoneticAnimator
from facecast.http.app import AppState, create_app
from facecast.llm.echo import EchoLLM
from facecast.pipeline import Services
from facecast.services import make_stt
from facecast.tts.espeak import EspeakTTS


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    http: str
    state: AppState
    livelink_port: int


async def start_server(settings: Settings, services: Services) -> tuple[uvicorn.Server, asyncio.Task[None], AppState]:
    state = AppState(settings, services)
    config = uvicorn.Config(create_app(state), host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return server, task, state


@pytest.fixture
async def live_server() -> AsyncIterator[LiveServer]:
    port = free_udp_port()
    settings = replace(Settings(), livelink=(f"127.0.0.1:{port}",), subject="TestFace")
    services = Services(_stt(), EchoLLM(), EspeakTTS(), PhoneticAnimator())
    server, task, state = await start_server(settings, services)
    bound = server.servers[0].sockets[0].getsockname()[1]
    yield LiveServer(f"ws://127.0.0.1:{bound}/ws/engine", f"http://127.0.0.1:{bound}", state, port)
    server.should_exit = True
    await task


def _stt():  # type: ignore[no-untyped-def]
    try:
        return make_stt()
    except ModuleNotFoundError:  # TEMPORARY until the pocketsphinx provider lands
        from tests.fakes import FakeSTT

        return FakeSTT()
