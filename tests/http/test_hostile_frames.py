"""Small malformed frames over a real engine socket: each is answered with an ``error`` and the session stays
open and usable (a typed turn still gets its reply). And deep JSON on HTTP is a 400, never a 500."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from tests.conftest import LIGHT
from tests.fakes import FakeFace, FakeLLM, FakeSTT, FakeTTS
from websockets.asyncio.client import ClientConnection, connect

from facecast.config import Settings
from facecast.server import BackgroundServer
from facecast.services import Services


async def next_json(ws: ClientConnection) -> dict[str, Any]:
    while True:
        message = await asyncio.wait_for(ws.recv(), 20)
        if isinstance(message, str):
            return dict(json.loads(message))


async def turn_works(ws: ClientConnection, text: str) -> None:
    await ws.send(json.dumps({"type": "text", "text": text}))
    heard = ""
    while (message := await next_json(ws))["type"] != "utterance_end":
        assert message["type"] != "error", message
        if message["type"] == "transcript":
            heard = message["text"]
    assert heard == text and message["samples"] > 0 and message["text"]


HOSTILE: list[tuple[str, str, set[str]]] = [
    ("deep JSON", "[" * 60_000, {"bad_json"}),
    ("deep objects", '{"a":' * 12_000, {"bad_json"}),
    ("lone surrogate in a ping id", '{"type": "ping", "id": "\\ud800"}', {"bad_json", "bad_message"}),
    ("lone surrogate in typed text", '{"type": "text", "text": "hi \\udfff there"}', {"bad_json", "bad_message"}),
    ("lone surrogate in a key", '{"type": "ping", "\\ud800": 1}', {"bad_json", "bad_message"}),
    ("NUL in typed text", '{"type": "text", "text": "hi\\u0000there"}', {"bad_message"}),
    ("NaN", '{"type": "ping", "id": NaN}', {"bad_json"}),
    (
        "80 KB of 3-byte characters",
        json.dumps({"type": "ping", "id": "\u20ac" * 27_000}, ensure_ascii=False),
        {"too_large"},
    ),
]


@pytest.fixture
async def server() -> Any:
    services = Services(FakeSTT(), FakeLLM(), FakeTTS(rate=16000), FakeFace())
    async with BackgroundServer(Settings(**LIGHT, livelink=("off",)), services) as running:
        yield running


async def test_hostile_frames_get_an_error_and_the_session_goes_on(server: BackgroundServer) -> None:
    async with connect(server.ws_url) as ws:
        # before hello: a bad subject (lone surrogate, then NUL) is refused, and a good hello still works
        for subject in ('"\\ud800"', '"Face\\u0000"'):
            await ws.send('{"type": "hello", "acks": false, "subject": ' + subject + "}")
            error = await next_json(ws)
            assert error["type"] == "error" and error["code"] in {"bad_json", "bad_message"}, error
        await ws.send(json.dumps({"type": "hello", "acks": False, "subject": "Ada"}))
        assert (await next_json(ws))["type"] == "welcome"
        for name, frame, codes in HOSTILE:
            await ws.send(frame)
            error = await next_json(ws)
            assert error["type"] == "error" and error["code"] in codes, (name, error)
            await ws.send(json.dumps({"type": "ping", "id": name}))
            assert await next_json(ws) == {"type": "pong", "id": name}
        # a valid astral character (a surrogate PAIR) is fine and echoed intact
        await ws.send('{"type": "ping", "id": "\\ud83d\\ude00"}')
        assert await next_json(ws) == {"type": "pong", "id": "\U0001f600"}
        await turn_works(ws, "Still here after all that?")
    # the server lets go of the session once its close has finished (its last state write included)
    for _ in range(1000):
        if all(not s.closed.is_set() for s in server.state.sessions):
            break
        await asyncio.sleep(0.01)
    assert all(not s.closed.is_set() for s in server.state.sessions)


async def test_deep_json_on_http_is_a_400(server: BackgroundServer) -> None:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        for path in ("/generate_speech", "/synthesize_and_blendshapes", "/transcribe", "/get_embedding"):
            for body in (b"[" * 60_000, b'{"text": ' * 20_000, b'{"text": "\\ud800"}'):
                response = await client.post(path, content=body, headers={"Content-Type": "application/json"})
                assert response.status_code == 400, (path, body[:20], response.text)
                assert response.json()["code"] == "bad_json"
        assert (await client.post("/generate_speech", json={"text": "Hi."})).status_code == 200
