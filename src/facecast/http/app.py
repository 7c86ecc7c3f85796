"""The main server: FastAPI app with ``/health`` and the engine WebSocket ``/ws/engine``.

The app owns no model state of its own: it is given the :class:`~facecast.pipeline.Services` and creates
one :class:`~facecast.engine.session.EngineSession` per WebSocket connection. Every route sits behind
:class:`~facecast.http.security.AccessMiddleware` (Host, Origin and token rules of :mod:`facecast.auth`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..auth import AccessPolicy, check_token_strength, redact_url
from ..catalog import ServiceCatalog
from ..characters import default_character
from ..config import Settings
from ..engine.outputs import LiveLinkOutput, outputs_from_settings, run_outputs
from ..engine.resume import SessionKeeper
from ..engine.session import EngineSession, SessionConfig, Transport
from ..engine.sessionstore import open_store
from ..engine.sinks import Output
from ..limits import limit_services
from ..metrics import CONTENT_TYPE, Metrics
from ..services import Services, transcript_lead_ms
from ..smartturn import shared_model
from .bulk import BulkWorkers
from .engine_socket import SocketLimits, TransportClosed, WebSocketTransport, pump, refuse_busy
from .neurosync import NeuroSyncBackends, NeuroSyncOptions, neurosync_router
from .security import AccessMiddleware
from .webrtc import RtcHost, RtcPeers, webrtc_router

__all__ = ["create_app", "AppState", "TransportClosed"]

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
"""The browser client's static files (``facecast/web``), served at ``/`` and ``/web/``."""


@dataclass(slots=True)
class AppState:
    settings: Settings
    services: Services
    started: float = field(default_factory=time.monotonic)
    sessions: set[EngineSession] = field(default_factory=set)
    outputs: list[Output] | None = None
    """The server's outputs (attached to every session); None: built from the settings by :func:`create_app`
    (:func:`~facecast.engine.outputs.outputs_from_settings`)."""
    catalog: ServiceCatalog | None = None
    """Provider instances shared by the sessions' characters, around ``services``; None: made by
    :func:`create_app`, which also resolves every character of the settings once."""
    metrics: Metrics = field(default_factory=Metrics)
    webrtc: RtcPeers | None = None
    """The WebRTC peers (``POST /webrtc/offer``), set by :func:`create_app`."""
    neurosync: NeuroSyncBackends | None = None
    """Models behind the NeuroSync endpoints; built from ``services`` on first use when left ``None``."""
    bulk: BulkWorkers | None = None
    """The processes that animate uploads (setting ``bulk_processes``), set by :func:`create_app`."""
    keeper: SessionKeeper | None = None
    """Where the sessions are kept for resuming; None: made by :func:`create_app` from ``session_store`` and
    ``session_ttl_s`` (controllers that share one resume each other's sessions)."""

    def neurosync_backends(self) -> NeuroSyncBackends:
        if self.neurosync is None:
            self.neurosync = NeuroSyncBackends.from_services(self.settings, self.services)
        return self.neurosync

    def broadcast(self, kind: str, **fields: Any) -> None:
        """Send an event message (e.g. ``failover``) to every connected client, without waiting. Fields
        named ``*url`` are sent with their credentials removed (:func:`facecast.auth.redact_url`)."""
        fields = {k: redact_url(v) if k.endswith("url") and isinstance(v, str) else v for k, v in fields.items()}
        for session in self.sessions:
            session.post(kind, **fields)

    @property
    def livelink(self) -> LiveLinkOutput | None:
        """The Live Link output, if there is one."""
        return next((o for o in self.outputs or () if isinstance(o, LiveLinkOutput)), None)


async def _warm_up(services: Services) -> None:
    """Load models before the first client so its first turn is fast (each warm-up is optional)."""
    for service in (services.stt, services.tts, services.face):
        warm = getattr(service, "warm_up", None)
        if warm is not None:
            result = warm()
            if asyncio.iscoroutine(result):
                await result


async def _close_services(catalog: ServiceCatalog) -> None:
    """Release what the services hold (connections, background probes, decoders) at shutdown."""
    for service in catalog.instances():
        for name in ("aclose", "close"):
            method = getattr(service, name, None)
            if method is not None:
                result = method()
                if asyncio.iscoroutine(result):
                    await result
                break


def create_app(state: AppState) -> FastAPI:
    """The ASGI app for ``facecast run`` (and for tests, which drive it in-process or over a socket).

    Raises :class:`~facecast.errors.ConfigError` when the settings bind off loopback with a weak token
    (:func:`facecast.auth.check_token_strength`), name an unknown output, or a character whose services
    cannot be built. The outputs (Live Link, the
    recorder) run for the app's lifetime and are attached to every session.
    """
    check_token_strength(state.settings.host, state.settings.token)
    state.services = limit_services(state.services, state.settings)  # max_recognisers, for every user of the STT
    if state.outputs is None:
        state.outputs = outputs_from_settings(state.settings)
    outputs = state.outputs
    if state.catalog is None:
        state.catalog = ServiceCatalog(state.services, state.settings)
    catalog = state.catalog
    for character in state.settings.characters.values():
        catalog.services_for(character)  # loads what the characters need now, not at a client's hello
    default = default_character(state.settings)
    if state.keeper is None:
        state.keeper = SessionKeeper(
            open_store(state.settings.session_store), state.settings.session_ttl_s, state.metrics
        )
    keeper = state.keeper

    def new_session(transport: Transport) -> EngineSession:
        """A session for one client connection (WebSocket or WebRTC), with the server's settings."""
        settings = state.settings
        config = SessionConfig(
            ack_timeout=settings.ack_timeout,
            max_mic_seconds=settings.max_turn_s,
            persona=settings.persona or None,
            turns=settings.turn_config(transcript_lead_ms(settings)),
            speculate=settings.speculate,
            wait_for_player=settings.wait_for_player,
            speaking_rules=settings.speaking_rules,
        )
        return EngineSession(
            catalog,
            transport,
            config,
            metrics=state.metrics,
            outputs=outputs,
            character=default,
            characters=settings.characters,
            keeper=keeper,
        )

    rtc = state.webrtc = RtcPeers(
        RtcHost(state.settings, state.sessions, state.metrics, new_session, state.settings.webrtc_ice_servers)
    )

    bulk = state.bulk = BulkWorkers(state.settings.neurosync_max_jobs) if state.settings.bulk_processes else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await _warm_up(state.services)
        if state.settings.turn_detector == "smart":  # the end-of-turn model: once per server, before any turn
            await asyncio.to_thread(shared_model)
        async with run_outputs(outputs):
            yield
            for session in list(state.sessions):
                await session.close()
            await rtc.aclose()
        await _close_services(catalog)
        await keeper.aclose()
        if bulk is not None:
            bulk.close()

    app = FastAPI(title="Facecast", version=__version__, lifespan=lifespan)
    app.state.facecast = state
    app.add_middleware(AccessMiddleware, policy=AccessPolicy.from_settings(state.settings))

    @app.get("/health")
    async def health() -> JSONResponse:
        """Liveness and configuration summary; service specs are reported without credentials."""
        settings = state.settings
        return JSONResponse(
            {
                "status": "ok",
                "version": __version__,
                "uptime_s": round(time.monotonic() - state.started, 3),
                "sessions": len(state.sessions),
                "services": {role: redact_url(getattr(settings, role)) for role in ("stt", "llm", "tts", "face")},
                "outputs": [output.describe() for output in outputs],  # no secrets (Output.describe)
            }
        )

    @app.get("/characters")
    async def characters() -> JSONResponse:
        """The names of the server's characters, for a client's ``hello.character`` (the browser page's
        selector); names only: personas, voices and models stay on the server."""
        return JSONResponse({"characters": sorted(state.settings.characters)})

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")

    app.include_router(webrtc_router(rtc))
    app.include_router(neurosync_router(NeuroSyncOptions.from_settings(state.settings), state.neurosync_backends, bulk))

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus metrics: per-stage turn latency histograms, sessions, utterances, errors, failovers."""
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    @app.websocket("/ws/engine")
    async def engine(ws: WebSocket) -> None:
        """The engine protocol (docs/protocol.md); the middleware has checked Host, Origin and token."""
        await ws.accept()
        settings = state.settings
        transport = WebSocketTransport(ws, settings.send_timeout_s)
        if 0 < settings.max_sessions <= len(state.sessions):
            state.metrics.errors.labels("busy").inc()
            await refuse_busy(ws, transport, settings.max_sessions)
            return
        session = new_session(transport)
        session.closer = transport.close  # a newer connection resuming the session closes this one
        state.sessions.add(session)
        state.metrics.active_sessions.inc()
        try:
            await pump(ws, session, transport, SocketLimits.from_settings(settings))
        finally:
            await session.close()
            state.sessions.discard(session)
            state.metrics.active_sessions.dec()
            await transport.close()

    return app
