"""A real Facecast server (uvicorn on a free loopback port) for end-to-end tests."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from tests.conftest import LIGHT

from facecast.config import Settings
from facecast.face.phonetic import PhoneticAnimator
from facecast.llm.echo import EchoLLM
from facecast.server import BackgroundServer
from facecast.services import Services, make_stt
from facecast.tts.espeak import EspeakTTS


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer(BackgroundServer):
    livelink_port: int = 0


@pytest.fixture
async def live_server() -> AsyncIterator[LiveServer]:
    port = free_udp_port()
    settings = replace(Settings(**LIGHT), livelink=(f"127.0.0.1:{port}",), subject="TestFace")
    services = Services(make_stt("pocketsphinx"), EchoLLM(), EspeakTTS(), PhoneticAnimator())
    async with LiveServer(settings, services) as server:
        server.livelink_port = port
        yield server


TURN_GRAMMAR = """#JSGF V1.0;
grammar turns;
public <turn> = tell me about the weather | what is your name | stop talking please | hello there;
"""


@pytest.fixture
async def grammar_server() -> AsyncIterator[LiveServer]:
    """The live server with the real pocketsphinx decoder restricted to a JSGF grammar (exact transcripts)."""
    from facecast.stt.pocketsphinx import PocketSphinxConfig, PocketSphinxSTT

    services = Services(
        PocketSphinxSTT(PocketSphinxConfig(grammar=TURN_GRAMMAR)), EchoLLM(), EspeakTTS(), PhoneticAnimator()
    )
    async with LiveServer(replace(Settings(**LIGHT), livelink=("off",)), services) as server:
        yield server
