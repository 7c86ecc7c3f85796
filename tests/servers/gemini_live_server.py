"""A local Gemini Live server: an implementation of the documented protocol for tests, not the service.

Written from Google's public Live API WebSockets reference (endpoint
``/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent?key=KEY``; the client's first
message ``setup`` answered by ``setupComplete``; ``realtimeInput.audio`` blobs ``audio/pcm;rate=16000``;
``clientContent`` turns; ``toolResponse``; the server's ``serverContent`` with ``modelTurn.parts[].inlineData``
audio ``audio/pcm;rate=24000``, ``inputTranscription``, ``outputTranscription``, ``interrupted``,
``generationComplete``, ``turnComplete``; and ``toolCall.functionCalls``). It really answers:

* Automatic activity detection: an energy VAD (speech after 30 ms of sound, the end of the turn after 500 ms
  of silence) with PocketSphinx 5 decoding the turn as it arrives; the transcript is sent as
  ``inputTranscription`` when the turn ends.
* Each turn is answered ``You said: <transcript>.`` plus ``reply_suffix``, spoken by espeak-ng (Facecast's TTS
  class) as 24 kHz PCM16 ``inlineData`` parts of 100 ms with ``outputTranscription`` pieces, generated at
  ``pace`` times real time (1.0 by default, so an answer is still being generated while it plays).
* The player speaking during an answer interrupts it: the generation stops and ``interrupted`` is sent.
* ``function_call`` (a switch): each answer also sends a ``toolCall`` and waits for the ``toolResponse``.

Errors as the service reports them on this API, in the WebSocket close frame: a wrong key closes with 1008
and a reason naming the key (``bad key``), ``rate_limited`` closes with 1011 ``RESOURCE_EXHAUSTED``;
a first message other than ``setup`` closes with 1007. Switches: ``drop_at_setup`` (drop the TCP connection on
``setup``), ``drop_after_ms`` (drop it once that much audio arrived), ``stall`` (never answer).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.servers.realtime_core import Ear, ThreadedServer, speak
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

__all__ = ["GeminiLiveServer", "GeminiServerConfig", "GeminiLog", "PATH"]

PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
IN_RATE, OUT_RATE = 16000, 24000


@dataclass
class GeminiServerConfig:
    api_key: str = "gemini-test-key"
    rate_limited: bool = False
    drop_at_setup: bool = False
    drop_after_ms: int | None = None
    stall: bool = False
    reply_suffix: str = ""
    function_call: tuple[str, dict[str, Any]] | None = None
    pace: float = 1.0
    """Answer audio generated at this many times real time (0: as fast as it is made)."""


@dataclass
class GeminiLog:
    """What one connection did."""

    setup: dict[str, Any] = field(default_factory=dict)
    received: list[str] = field(default_factory=list)
    audio_ms: float = 0.0
    transcripts: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    interrupted: int = 0
    tool_responses: list[dict[str, Any]] = field(default_factory=list)
    close: tuple[int, str] | None = None


class GeminiLiveServer(ThreadedServer):
    """``url`` is the endpoint to configure as the provider's ``url`` (the key is added as ``?key=``)."""

    name = "gemini-live-test-server"

    def __init__(self, config: GeminiServerConfig | None = None) -> None:
        super().__init__()
        self.config = config or GeminiServerConfig()
        self.connections: list[GeminiLog] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{PATH}"

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        parts = urlsplit(ws.request.path)
        log = GeminiLog()
        self.connections.append(log)
        key = parse_qs(parts.query).get("key", [""])[0]
        if parts.path != PATH:
            await self._close(ws, log, 1008, f"Method not found: {parts.path}")
        elif key != self.config.api_key:
            await self._close(ws, log, 1008, "API key not valid. Please pass a valid API key.")
        elif self.config.rate_limited:
            await self._close(ws, log, 1011, "RESOURCE_EXHAUSTED: You exceeded your current quota.")
        else:
            await _Session(ws, self.config, log).run()

    @staticmethod
    async def _close(ws: ServerConnection, log: GeminiLog, code: int, reason: str) -> None:
        log.close = (code, reason)
        await ws.close(code, reason)


class _Session:
    def __init__(self, ws: ServerConnection, config: GeminiServerConfig, log: GeminiLog) -> None:
        self.ws, self.config, self.log = ws, config, log
        self.ear = Ear(IN_RATE)
        self.answer: asyncio.Task[None] | None = None
        self.tool_answered = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def run(self) -> None:
        try:
            first = True
            async for raw in self.ws:
                if self.config.stall:
                    continue
                try:
                    message = json.loads(raw)
                    [kind] = list(message)
                except (ValueError, TypeError):
                    await self.ws.close(1007, "Invalid JSON payload: exactly one message field expected.")
                    return
                self.log.received.append(kind)
                if first and kind != "setup":
                    await self.ws.close(1007, "The first message must be setup.")
                    return
                first = False
                await self.on_message(kind, message[kind])
        except ConnectionClosed:
            pass
        finally:
            if self.answer is not None:
                self.answer.cancel()
                await asyncio.gather(self.answer, return_exceptions=True)

    async def on_message(self, kind: str, body: Any) -> None:
        if kind == "setup":
            if self.config.drop_at_setup:
                self.ws.transport.abort()
                return
            self.log.setup = body
            await self.send({"setupComplete": {}})
        elif kind == "realtimeInput":
            audio = (body or {}).get("audio") or {}
            if audio.get("mimeType") != f"audio/pcm;rate={IN_RATE}":
                await self.ws.close(1007, f"Unsupported audio mime type {audio.get('mimeType')!r}.")
                return
            try:
                pcm = base64.b64decode(str(audio.get("data", "")), validate=True)
            except (binascii.Error, ValueError):
                await self.ws.close(1007, "Invalid base64 audio.")
                return
            self.log.audio_ms += len(pcm) / 2 / IN_RATE * 1000
            if self.config.drop_after_ms is not None and self.log.audio_ms >= self.config.drop_after_ms:
                self.ws.transport.abort()
                return
            for heard in await self.ear.feed(pcm):
                await self.on_heard(heard.kind, heard.text)
        elif kind == "clientContent":
            text = " ".join(str(p.get("text", "")) for turn in body.get("turns") or [] for p in turn.get("parts") or [])
            self.log.transcripts.append(text)
            self.start(text)
        elif kind == "toolResponse":
            self.log.tool_responses.extend(body.get("functionResponses") or [])
            self.tool_answered.set()

    async def on_heard(self, kind: str, text: str) -> None:
        if kind == "started":
            if self.answer is not None and not self.answer.done():
                self.answer.cancel()
                await asyncio.gather(self.answer, return_exceptions=True)
                self.log.interrupted += 1
                await self.send({"serverContent": {"interrupted": True}})
            return
        self.log.transcripts.append(text)
        await self.send({"serverContent": {"inputTranscription": {"text": text}}})
        self.start(text)

    def start(self, heard: str) -> None:
        reply = f"You said: {heard}." if heard else "I did not catch that."
        if self.config.reply_suffix:
            reply += " " + self.config.reply_suffix
        self.log.replies.append(reply)
        self.answer = asyncio.create_task(self.respond(reply))

    async def respond(self, reply: str) -> None:
        loop = asyncio.get_running_loop()
        started, made = loop.time(), 0.0
        async for words, pcm in speak(reply, OUT_RATE):
            if self.config.pace > 0:  # generating at about the speed it speaks
                await asyncio.sleep(max(0.0, started + made / self.config.pace - loop.time()))
                made += len(pcm) / 2 / OUT_RATE
            if pcm:
                data = base64.b64encode(pcm).decode()
                part = {"inlineData": {"mimeType": f"audio/pcm;rate={OUT_RATE}", "data": data}}
                await self.send({"serverContent": {"modelTurn": {"parts": [part]}}})
            if words:
                await self.send({"serverContent": {"outputTranscription": {"text": words}}})
            await asyncio.sleep(0)
        if self.config.function_call is not None:
            name, arguments = self.config.function_call
            self.tool_answered.clear()
            await self.send({"toolCall": {"functionCalls": [{"id": "call-1", "name": name, "args": arguments}]}})
            await self.tool_answered.wait()
        await self.send({"serverContent": {"generationComplete": True}})
        await self.send({"serverContent": {"turnComplete": True}})
