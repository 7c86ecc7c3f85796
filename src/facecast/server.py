"""``facecast run``: build the services from the settings and serve the app with uvicorn."""

from __future__ import annotations

import asyncio
import sys

import uvicorn

from .config import Settings
from .http.app import AppState, create_app
from .llm import NO_LLM_HINT
from .pipeline import Services
from .protocol.engine import MAX_BINARY_FRAME
from .services import build_services

__all__ = ["serve", "startup_banner", "BackgroundServer"]


def startup_banner(settings: Settings) -> str:
    lines = [
        f"Facecast on http://{settings.host}:{settings.port}  (engine WebSocket: /ws/engine, health: /health)",
        f"  stt={settings.stt} llm={settings.llm} tts={settings.tts} voice={settings.voice} face={settings.face}",
    ]
    if settings.llm == "echo":
        lines.append("  " + NO_LLM_HINT)
    return "\n".join(lines)


def serve(settings: Settings) -> int:
    """Run the server until interrupted. Raises :class:`facecast.errors.ConfigError` for bad settings."""
    services = build_services(settings)
    app = create_app(AppState(settings, services))
    print(startup_banner(settings), file=sys.stderr, flush=True)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=settings.log_level,
        ws_max_size=MAX_BINARY_FRAME + 64, ws_ping_interval=20.0, ws_ping_timeout=20.0,
    )
    uvicorn.Server(config).run()
    return 0


class BackgroundServer:
    """The real server on a free loopback port inside the running event loop (tests, benchmarks).

    ``async with BackgroundServer(settings, services) as server:`` then connect to ``server.ws_url``.
    """

    def __init__(self, settings: Settings, services: Services) -> None:
        self.state = AppState(settings, services)
        config = uvicorn.Config(create_app(self.state), host="127.0.0.1", port=0, log_level="warning",
                                ws_max_size=MAX_BINARY_FRAME + 64)
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/engine"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> BackgroundServer:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the server stopped during start-up")
            await asyncio.sleep(0.01)
        self.port = int(self._server.servers[0].sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
