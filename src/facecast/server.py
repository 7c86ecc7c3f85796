"""``facecast run``: build the services from the settings and serve the app with uvicorn."""

from __future__ import annotations

import sys

import uvicorn

from .config import Settings
from .http.app import AppState, create_app
from .llm import NO_LLM_HINT
from .protocol.engine import MAX_BINARY_FRAME
from .services import build_services

__all__ = ["serve", "startup_banner"]


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
