"""``facecast run``: build the services from the settings and serve the app with uvicorn."""

from __future__ import annotations

import asyncio
import errno
import gc
import socket
import sys
from collections.abc import Sequence

import uvicorn

from .auth import redact_url
from .config import Settings
from .errors import ConfigError
from .http.app import AppState, create_app
from .http.neurosync import preload
from .http.wsprotocol import ReapingWebSocketProtocol
from .llm import NO_LLM_HINT
from .llm.history import persona_prompt
from .llm.probe import warn_unreachable_llms
from .metrics import Metrics
from .protocol.engine import MAX_WIRE_FRAME
from .remote.failover import FailoverEvent
from .services import Services, build_services, warm_up

__all__ = [
    "serve",
    "settle_heap",
    "startup_banner",
    "BackgroundServer",
    "NEUROSYNC_PORTS",
    "serving_ports",
    "bind_sockets",
]

NEUROSYNC_PORTS: dict[str, int] = {"local API": 5000, "audio": 6969, "TTS": 8000, "embeddings": 7070, "images": 1234}
"""NeuroSync's default ports (its Local API, and its Real-Time API's four apps), served by ``--neurosync-ports``."""


def serving_ports(settings: Settings) -> list[int]:
    """The ports to listen on: ``settings.port``, then NeuroSync's defaults with ``neurosync_ports``.

    Every port serves the whole app. NeuroSync's image port (1234) is included only when the image
    endpoints are switched on.
    """
    ports = [settings.port]
    if settings.neurosync_ports:
        for name, port in NEUROSYNC_PORTS.items():
            if (name != "images" or settings.neurosync_image_endpoints) and port not in ports:
                ports.append(port)
    return ports


def bind_sockets(host: str, ports: Sequence[int], *, listen: bool = True) -> list[socket.socket]:
    """TCP sockets bound on ``host`` for each port (0 = a free port); all or none. With ``listen`` false they
    only hold their ports (connections are refused until the server starts listening on them).

    Raises :class:`ConfigError` naming the port when one cannot be bound (e.g. already in use).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    bound: list[socket.socket] = []
    try:
        for port in ports:
            sock = socket.socket(family, socket.SOCK_STREAM)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    why = f"port {port} is in use (another facecast?); choose another with --port"
                    raise ConfigError(why) from None
                raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
            if listen:
                sock.listen(2048)
            sock.setblocking(False)
    except BaseException:
        for sock in bound:
            sock.close()
        raise
    return bound


def startup_banner(settings: Settings) -> str:
    lines = [
        f"Facecast on http://{settings.host}:{settings.port}  (engine WebSocket: /ws/engine, health: /health)",
        redact_url(
            f"  stt={settings.stt} llm={settings.llm} tts={settings.tts} voice={settings.voice} face={settings.face}"
        ),
    ]
    if settings.neurosync_ports:
        extra = ", ".join(str(p) for p in serving_ports(settings)[1:])
        lines.append(f"  NeuroSync-compatible API also on {settings.host} ports {extra} (docs: /docs)")
    if settings.llm == "echo":
        lines.append("  " + NO_LLM_HINT)
    return "\n".join(lines)


def serve(settings: Settings) -> int:
    """Run the server until interrupted. Raises :class:`facecast.errors.ConfigError` for bad settings or a port
    that is taken (checked first: nothing is loaded or printed then)."""
    sockets = bind_sockets(settings.host, serving_ports(settings), listen=False)
    try:
        return _serve_on(settings, sockets)
    finally:
        for sock in sockets:
            sock.close()


def _serve_on(settings: Settings, sockets: list[socket.socket]) -> int:
    metrics = Metrics()
    states: list[AppState] = []

    def on_failover(event: FailoverEvent) -> None:  # reported to every connected engine client
        for state in states:
            state.broadcast(
                "failover",
                role=event.role,
                event=event.kind,
                from_url=event.from_url,
                to_url=event.to_url,
                reason=event.reason,
            )

    services = build_services(settings, metrics=metrics, on_failover=on_failover)
    print(
        redact_url(f"loading the models (stt={settings.stt} llm={settings.llm} tts={settings.tts}) ..."),
        file=sys.stderr,
        flush=True,
    )
    took = asyncio.run(warm_up(services, persona_prompt(settings.persona, settings.speaking_rules)))
    print(f"models ready in {took:.1f} s", file=sys.stderr, flush=True)
    asyncio.run(warn_unreachable_llms([settings.llm, *(c.llm for c in settings.characters.values())]))
    states.append(AppState(settings, services, metrics=metrics))
    app = create_app(states[0])
    preloaded = asyncio.run(preload(states[0].neurosync_backends(), settings))  # /get_embedding's model, if installed
    if preloaded:
        print(preloaded, file=sys.stderr, flush=True)
    print(startup_banner(settings), file=sys.stderr, flush=True)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        loop="asyncio",  # pinned: ray[serve] (the scale extra) installs uvloop/httptools, which "auto" would pick
        http="h11",
        ws=ReapingWebSocketProtocol,  # resets clients that stop reading (send_timeout_s, keepalive)
        ws_max_size=MAX_WIRE_FRAME,
        ws_per_message_deflate=False,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
    )
    settle_heap()
    uvicorn.Server(config).run(sockets=sockets)
    return 0


def settle_heap() -> None:
    """Hide what startup built (modules, models, the app: ~100k objects) from the garbage collector.

    A full collection walks every tracked object while the event loop waits: ~65 ms for the light set's
    startup heap, longer than engine-sim's 50 ms playback start buffer, and the soak's only late audio came
    in bursts across sessions at once. Frozen, those objects are never walked again (they live as long as
    the server anyway); a full collection then walks only what the sessions allocated since."""
    gc.collect()
    gc.freeze()


class BackgroundServer:
    """The real server on a free loopback port inside the running event loop (tests, benchmarks).

    ``async with BackgroundServer(settings, services) as server:`` then connect to ``server.ws_url``.
    """

    def __init__(self, settings: Settings, services: Services, extra_ports: Sequence[int] = ()) -> None:
        self.state = AppState(settings, services)
        config = uvicorn.Config(
            create_app(self.state),
            host="127.0.0.1",
            port=0,
            log_level="warning",
            loop="asyncio",  # the same pins as serve() above
            http="h11",
            ws=ReapingWebSocketProtocol,
            ws_max_size=MAX_WIRE_FRAME,
            ws_per_message_deflate=False,
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None
        self._extra_ports = tuple(extra_ports)
        self.port = 0
        self.ports: list[int] = []
        """Every port served: ``port`` first, then one per ``extra_ports`` entry (0 there = a free port)."""

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/engine"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> BackgroundServer:
        sockets = bind_sockets("127.0.0.1", (0, *self._extra_ports)) if self._extra_ports else None
        self._task = asyncio.create_task(self._server.serve(sockets=sockets))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the server stopped during start-up")
            await asyncio.sleep(0.01)
        self.ports = [int(s.getsockname()[1]) for server in self._server.servers for s in server.sockets]
        self.port = self.ports[0]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
