"""The access rules of the main server over real sockets: Origin and Host checks on every route and socket,
the token everywhere when set (4401 on the engine socket), credentials kept out of /health and the logs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx
import pytest
import uvicorn
from tests.conftest import LIGHT
from tests.fakes import FakeFace, FakeLLM, FakeSTT, FakeTTS
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from facecast.config import Settings
from facecast.http.app import AppState, create_app
from facecast.protocol.engine import MAX_WIRE_FRAME
from facecast.server import BackgroundServer
from facecast.services import Services

TOKEN = "0123456789abcdef-token"


def services() -> Services:
    return Services(FakeSTT(), FakeLLM(), FakeTTS(rate=16000), FakeFace())


def settings(**changes: Any) -> Settings:
    return replace(Settings(**LIGHT), livelink=("off",), **changes)


@asynccontextmanager
async def running(**changes: Any) -> AsyncIterator[BackgroundServer]:
    async with BackgroundServer(settings(**changes), services()) as server:
        yield server


async def say_turn(ws: ClientConnection, text: str = "Hello there.") -> dict[str, Any]:
    """One typed turn on an open socket (hello already sent); returns the utterance_end."""
    await ws.send(json.dumps({"type": "text", "text": text}))
    while True:
        message = await asyncio.wait_for(ws.recv(), 20)
        if isinstance(message, str) and json.loads(message)["type"] == "utterance_end":
            return dict(json.loads(message))


async def welcome(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"type": "hello", "acks": False}))
    assert json.loads(await ws.recv())["type"] == "welcome"


# ------------------------------------------------------------------------------------------------ Origin


async def test_engine_socket_refuses_foreign_origins_and_serves_its_own() -> None:
    async with running(allowed_origins=("https://game.example.com",)) as server:
        for origin in (
            "http://attacker.example",
            f"http://127.0.0.1:{server.port + 1}",
            "null",
            f"http://attacker.example:{server.port}",
        ):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(server.ws_url, origin=origin):  # type: ignore[arg-type]
                    pass
            assert refused.value.response.status_code == 403, origin
        for origin in (
            None,
            f"http://127.0.0.1:{server.port}",
            f"http://localhost:{server.port}",
            "https://game.example.com",
        ):
            async with connect(server.ws_url, origin=origin) as ws:  # type: ignore[arg-type]
                await welcome(ws)
                assert (await say_turn(ws))["samples"] > 0, origin


async def test_http_routes_refuse_foreign_origins() -> None:
    async with running() as server, httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        foreign = {"Origin": "http://attacker.example"}
        for method, path in (
            ("GET", "/health"),
            ("GET", "/metrics"),
            ("POST", "/generate_speech"),
            ("POST", "/audio_to_blendshapes"),
        ):
            response = await client.request(
                method,
                path,
                headers={**foreign, "Content-Type": "text/plain"},
                content=b"{}" if method == "POST" else None,
            )
            assert response.status_code == 403 and response.json()["code"] == "bad_origin", (path, response.text)
        own = await client.post(
            "/generate_speech", json={"text": "Hi."}, headers={"Origin": f"http://localhost:{server.port}"}
        )
        assert own.status_code == 200


# -------------------------------------------------------------------------------------------------- Host


async def test_foreign_host_names_are_refused_on_every_route_and_socket() -> None:
    async with (
        running(allowed_hosts=("facecast.lan",)) as server,
        httpx.AsyncClient(base_url=server.http_url, timeout=30) as client,
    ):
        for path in ("/", "/health", "/metrics", "/web/app.js", "/openapi.json"):
            response = await client.get(path, headers={"Host": f"attacker.example:{server.port}"})
            assert response.status_code == 421 and response.json()["code"] == "bad_host", path
        for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", f"facecast.lan:{server.port}"):
            assert (await client.get("/health", headers={"Host": host})).status_code == 200, host
        # the socket, through a name that resolves to this server (DNS rebinding), with or without an Origin
        url = f"ws://attacker.example:{server.port}/ws/engine"
        for origin in (f"http://attacker.example:{server.port}", None):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url, host="127.0.0.1", port=server.port, origin=origin):  # type: ignore[arg-type]
                    pass
            assert refused.value.response.status_code == 403
        async with connect(f"ws://facecast.lan:{server.port}/ws/engine", host="127.0.0.1", port=server.port) as ws:
            await welcome(ws)


# ------------------------------------------------------------------------------------------------- token


async def test_token_guards_everything_but_the_page() -> None:
    async with running(token=TOKEN) as server, httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        page = await client.get("/")
        script = await client.get("/web/app.js")
        assert page.status_code == script.status_code == 200
        for method, path in (
            ("GET", "/health"),
            ("GET", "/metrics"),
            ("GET", "/docs"),
            ("GET", "/openapi.json"),
            ("GET", "/redoc"),
            ("POST", "/generate_speech"),
            ("POST", "/audio_to_blendshapes"),
            ("POST", "/transcribe"),
            ("GET", "/no-such-path"),
        ):
            anonymous = await client.request(method, path)
            wrong = await client.request(method, path, headers={"Authorization": "Bearer nope"})
            assert anonymous.status_code == wrong.status_code == 401, path
            assert anonymous.json()["code"] == "unauthorized" and anonymous.headers["www-authenticate"] == "Bearer"
        for auth in ({"Authorization": f"Bearer {TOKEN}"}, {"API-Key": TOKEN}, {"X-API-Key": TOKEN}):
            assert (await client.get("/health", headers=auth)).status_code == 200
        assert (await client.get(f"/metrics?token={TOKEN}")).status_code == 200
        assert (await client.get("/docs", headers={"API-Key": TOKEN})).status_code == 200
        speech = await client.post("/generate_speech", json={"text": "Hi."}, headers={"API-Key": TOKEN})
        assert speech.status_code == 200


async def test_engine_socket_without_the_token_is_opened_then_closed_with_4401() -> None:
    async with running(token=TOKEN) as server:
        for url, headers in (
            (server.ws_url, None),
            (server.ws_url + "?token=nope", None),
            (server.ws_url, {"Authorization": "Bearer nope"}),
        ):
            async with connect(url, additional_headers=headers) as ws:  # the handshake succeeds (101)...
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401  # ...then 4401
        for url, headers in (
            (server.ws_url + f"?token={TOKEN}", None),
            (server.ws_url, {"Authorization": f"Bearer {TOKEN}"}),
        ):
            async with connect(url, additional_headers=headers) as ws:
                await welcome(ws)
                assert (await say_turn(ws))["samples"] > 0


# --------------------------------------------------------------------------------- credentials not shown


async def test_health_shows_no_credentials() -> None:
    specs = {
        "stt": "ws://user:pa55word@10.0.0.11:8766,ws://10.0.0.21:8766",
        "llm": "http://localhost:11434/v1?api_key=sk-secret-key",
        "tts": "espeak",
        "face": "phonetic",
    }
    async with running(**specs) as server, httpx.AsyncClient(base_url=server.http_url) as client:
        body = (await client.get("/health")).json()
    shown = json.dumps(body)
    assert "pa55word" not in shown and "sk-secret-key" not in shown
    assert body["services"]["stt"] == "ws://***@10.0.0.11:8766,ws://10.0.0.21:8766"
    assert body["services"]["llm"] == "http://localhost:11434/v1?api_key=***"


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_token_in_the_url_never_reaches_the_access_log() -> None:
    state = AppState(settings(token=TOKEN), services())
    config = uvicorn.Config(
        create_app(state),
        host="127.0.0.1",
        port=0,
        log_level="info",
        ws_max_size=MAX_WIRE_FRAME,
        ws_per_message_deflate=False,
    )
    server = uvicorn.Server(config)
    capture = _Capture()
    loggers = [logging.getLogger(name) for name in ("uvicorn.access", "uvicorn.error")]
    for logger in loggers:
        logger.addHandler(capture)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done()
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get(f"/health?token={TOKEN}")).status_code == 200
            assert (await client.get("/health?token=wrong-guess-1234")).status_code == 401
        async with connect(f"ws://127.0.0.1:{port}/ws/engine?token={TOKEN}") as ws:
            await welcome(ws)
        async with connect(f"ws://127.0.0.1:{port}/ws/engine?x=1&token=wrong-guess-1234") as ws:
            with pytest.raises(ConnectionClosed):
                await ws.recv()
    finally:
        server.should_exit = True
        await task
        for logger in loggers:
            logger.removeHandler(capture)
    logged = "\n".join(capture.lines)
    assert "/health?token=REDACTED" in logged and "/ws/engine?token=REDACTED" in logged  # the lines are there...
    assert TOKEN not in logged and "wrong-guess-1234" not in logged  # ...without the token


# ------------------------------------------------------------------------------------------ token strength


def test_weak_token_off_loopback_is_a_config_error() -> None:
    from facecast.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 16 characters"):
        create_app(AppState(settings(host="0.0.0.0", token="s3cret"), services()))
    create_app(AppState(settings(host="0.0.0.0", token=TOKEN), services()))
    create_app(AppState(settings(token="s3cret"), services()))  # loopback: any token
