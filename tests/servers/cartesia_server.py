"""An implementation of the documented Cartesia TTS WebSocket protocol for tests, not the service.

Written from Cartesia's public API reference ("TTS / WebSocket", ``wss://api.cartesia.ai/tts/websocket``), to
test :mod:`facecast.tts.cartesia` where api.cartesia.ai cannot be reached. It speaks with a real local voice
(Facecast's Piper, resampled to the requested rate), and its word timestamps are Piper's own word timing.

Protocol, as this server implements it: the handshake must carry the key (``X-API-Key`` header or ``api_key``
query; wrong or missing: HTTP 401) and the version (``Cartesia-Version`` header or ``cartesia_version`` query;
missing: HTTP 400); more than ``max_connections`` at once: HTTP 429. Each request message (``model_id``,
``transcript``, ``voice: {mode: "id", id}``, ``context_id``, ``output_format: {container: "raw", encoding:
"pcm_s16le" | "pcm_f32le", sample_rate}``, ``add_timestamps``) is answered with ``chunk`` messages (``data``:
base64 PCM, ``done: false``, ``status_code: 206``, ``step_time``), ``timestamps`` messages (``word_timestamps``
``{words, start, end}`` in seconds from the start of the context, sent after the audio chunk in which those
words start) and one ``done`` message; an invalid request gets an ``error`` message (``done: true``,
``status_code: 400``, ``error``). The connection stays open for further requests.

Faults (``mode``): as :mod:`tests.servers.elevenlabs_server`: ``ok``, ``bad_key``, ``rate_limit``, ``stall``,
``garbage``, ``close_mid``, ``error_frame`` (an ``error`` message, status 500). Run alone:
``python tests/servers/cartesia_server.py [--port P] [--key K] [--mode M]``; prints ``ready ws://127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from tests.servers.elevenlabs_server import MODES, Spoken, speak
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from facecast.audio import float_to_pcm16
from facecast.tts.piper import PiperTTS

CHUNK_MS = 200
RATES = (8000, 16000, 22050, 24000, 44100, 48000)


def _invalid(request: Any) -> str:
    """Why a request message is invalid ("" if it is valid)."""
    if not isinstance(request, dict):
        return "the message must be a JSON object"
    for name in ("model_id", "transcript", "context_id"):
        if not isinstance(request.get(name), str) or not request[name]:
            return f"{name} is required"
    voice = request.get("voice")
    if not isinstance(voice, dict) or voice.get("mode") != "id" or not isinstance(voice.get("id"), str):
        return "voice must be {mode: 'id', id: <voice id>}"
    fmt = request.get("output_format")
    if not isinstance(fmt, dict) or fmt.get("container") != "raw":
        return "output_format.container must be raw"
    if fmt.get("encoding") not in ("pcm_s16le", "pcm_f32le") or fmt.get("sample_rate") not in RATES:
        return "output_format needs encoding pcm_s16le or pcm_f32le and a supported sample_rate"
    return ""


@dataclass
class CartesiaServer:
    """The protocol server (module docstring); ``async with CartesiaServer() as server:`` serves on
    ``server.url``; ``server.spoken`` keeps what each request said."""

    key: str = "test-key"
    mode: str = "ok"
    max_connections: int = 4
    port: int = 0
    spoken: list[Spoken] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    active: int = 0
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a connection is being served."""
    _server: Server | None = None
    _voice: PiperTTS | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    async def __aenter__(self) -> CartesiaServer:
        assert self.mode in MODES, self.mode
        self._voice = PiperTTS()
        self._server = await serve(self._handle, "127.0.0.1", self.port, process_request=self._check)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        query = parse_qs(parts.query)
        if parts.path != "/tts/websocket":
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        key = request.headers.get("X-API-Key") or query.get("api_key", [""])[0]
        if self.mode == "bad_key" or key != self.key:
            return connection.respond(HTTPStatus.UNAUTHORIZED, '{"error": "Invalid API key"}\n')
        if not (request.headers.get("Cartesia-Version") or query.get("cartesia_version")):
            return connection.respond(HTTPStatus.BAD_REQUEST, '{"error": "Cartesia-Version is required"}\n')
        if self.mode == "rate_limit" or self.active >= self.max_connections:
            return connection.respond(HTTPStatus.TOO_MANY_REQUESTS, '{"error": "Too many concurrent requests"}\n')
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self.active += 1
        self.opened.set()
        try:
            async for frame in ws:
                try:
                    request = json.loads(frame)
                except ValueError:
                    request = None
                context = request.get("context_id", "") if isinstance(request, dict) else ""
                self.received.append(request if isinstance(request, dict) else {"raw": str(frame)[:100]})
                problem = _invalid(request)
                if problem:
                    await ws.send(json.dumps({"type": "error", "context_id": context, "status_code": 400,
                                              "done": True, "error": problem}))  # fmt: skip
                    continue
                if self.mode == "stall":
                    continue
                await self._speak(ws, request)
        except ConnectionClosed:
            pass
        finally:
            self.active -= 1

    async def _speak(self, ws: ServerConnection, request: dict[str, Any]) -> None:
        assert self._voice is not None
        context = request["context_id"]
        if self.mode == "garbage":
            await ws.send("<html>502 Bad Gateway</html>")
            return
        if self.mode == "error_frame":
            await ws.send(json.dumps({"type": "error", "context_id": context, "status_code": 500, "done": True,
                                      "error": "Internal error during generation"}))  # fmt: skip
            return
        fmt = request["output_format"]
        rate = int(fmt["sample_rate"])
        spoken = await speak(self._voice, request["transcript"], rate)
        self.spoken.append(spoken)
        step = rate * CHUNK_MS // 1000
        words = list(spoken.words)
        total = len(spoken.pcm)
        for lo in range(0, total, step):
            hi = min(total, lo + step)
            pcm = spoken.pcm[lo:hi]
            raw = float_to_pcm16(pcm) if fmt["encoding"] == "pcm_s16le" else np.asarray(pcm, "<f4").tobytes()
            await ws.send(json.dumps({"type": "chunk", "data": base64.b64encode(raw).decode("ascii"), "done": False,
                                      "status_code": 206, "step_time": 1.0, "context_id": context}))  # fmt: skip
            if self.mode == "close_mid":
                assert ws.transport is not None
                ws.transport.abort()
                return
            inside = [w for w in words if w.start < hi or hi == total]
            words = words[len(inside) :]
            if inside:
                stamps = {"words": [w.text for w in inside], "start": [w.start / rate for w in inside],
                          "end": [w.end / rate for w in inside]}  # fmt: skip
                await ws.send(json.dumps({"type": "timestamps", "done": False, "status_code": 206,
                                          "context_id": context, "word_timestamps": stamps}))  # fmt: skip
        await ws.send(json.dumps({"type": "done", "done": True, "status_code": 206, "context_id": context}))


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key", default="test-key")
    parser.add_argument("--mode", choices=MODES, default="ok")
    args = parser.parse_args()
    async with CartesiaServer(key=args.key, mode=args.mode, port=args.port) as server:
        print("ready", server.url, flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(_main())
