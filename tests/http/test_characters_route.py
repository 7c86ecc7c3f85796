"""``GET /characters``: the server's character names for the browser page's selector, behind the token like
every route but the page, and nothing of a character but its name."""

from __future__ import annotations

from dataclasses import replace

import httpx
from tests.conftest import LIGHT
from tests.fakes import FakeFace, FakeLLM, FakeSTT, FakeTTS

from facecast.characters import Character, VoiceSpec
from facecast.config import Settings
from facecast.server import BackgroundServer
from facecast.services import Services

TOKEN = "0123456789abcdef-token"


def services() -> Services:
    return Services(FakeSTT(), FakeLLM(), FakeTTS(rate=16000), FakeFace())


async def test_lists_the_character_names_only_with_the_token() -> None:
    characters = {
        "mora": Character("mora", persona="SECRET persona of Mora", voice=VoiceSpec(voice="en-gb+f3")),
        "ada": Character("ada", persona="SECRET persona of Ada", subject="AdaFace"),
    }
    settings = replace(Settings(**LIGHT), livelink=("off",), token=TOKEN, characters=characters)
    async with BackgroundServer(settings, services()) as server, httpx.AsyncClient(base_url=server.http_url) as http:
        refused = await http.get("/characters")
        by_header = await http.get("/characters", headers={"Authorization": f"Bearer {TOKEN}"})
        by_query = await http.get("/characters", params={"token": TOKEN})
    assert refused.status_code == 401 and "SECRET" not in refused.text
    assert by_header.status_code == by_query.status_code == 200
    assert by_header.json() == by_query.json() == {"characters": ["ada", "mora"]}
    assert "SECRET" not in by_header.text and "en-gb" not in by_header.text


async def test_a_server_without_characters_lists_none() -> None:
    settings = replace(Settings(**LIGHT), livelink=("off",))
    async with BackgroundServer(settings, services()) as server, httpx.AsyncClient(base_url=server.http_url) as http:
        response = await http.get("/characters")
    assert response.status_code == 200 and response.json() == {"characters": []}
