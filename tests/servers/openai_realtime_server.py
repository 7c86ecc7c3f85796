"""A local OpenAI Realtime server: an implementation of the documented protocol for tests, not the service.

Written from OpenAI's public Realtime API reference (WebSocket ``/v1/realtime?model=MODEL`` with
``Authorization: Bearer KEY``; client events ``session.update``, ``input_audio_buffer.append``,
``conversation.item.create``, ``response.create``, ``response.cancel``, ``conversation.item.truncate``;
server events ``session.created``, ``session.updated``, ``input_audio_buffer.speech_started`` /
``speech_stopped`` / ``committed``, ``conversation.item.input_audio_transcription.completed``,
``response.created``, ``response.output_item.added``, ``response.output_audio.delta`` (or the beta
``response.audio.delta`` with ``beta_names``), ``response.output_audio_transcript.delta``,
``response.function_call_arguments.done``, ``response.done``, ``conversation.item.truncated`` and ``error``).
It really answers:

* The player's audio (``audio/pcm`` 24 kHz, base64) is heard by an energy VAD (``server_vad``: speech after
  30 ms of sound, the turn's end after ``silence_duration_ms`` of silence, 300 ms pre-roll) and decoded as it
  arrives by PocketSphinx 5; the turn's transcript is the input transcription.
* With ``create_response`` (the default) each turn is answered: ``You said: <transcript>.`` plus
  ``reply_suffix``, spoken by espeak-ng (Facecast's TTS class) as 24 kHz PCM16 deltas of 100 ms, each with
  the transcript delta of the words starting in it, sent as fast as they are made (``pace``: at that many
  times real time instead); ``late_deltas`` more deltas of a cancelled response follow the cancel.
* ``response.cancel`` stops the response (``response.done`` status ``cancelled``; an ``error``
  ``response_cancel_not_active`` when none runs); ``conversation.item.truncate`` is checked (the item must be
  an assistant audio item and ``audio_end_ms`` at most its audio, else an ``error``) and answered with
  ``conversation.item.truncated``. With ``interrupt_response`` the server cancels by itself on speech.
* ``function_call`` (a switch): each response also calls that function (``response.function_call_arguments.done``).

Switches (:class:`RealtimeServerConfig`): ``api_key`` (any other key: HTTP 401 with an
``invalid_api_key`` error body), ``rate_limited`` (HTTP 429 ``rate_limit_exceeded``), ``key_error_event``
(accept, then an ``error`` event ``invalid_api_key`` and close), ``drop_at_setup`` (drop the TCP connection
on ``session.update``), ``drop_after_ms`` (drop it once that much audio was appended), ``stall`` (accept,
never answer), ``setup_delay`` (a slow ``session.updated``), ``beta_names``, ``pace``, ``late_deltas``.
:attr:`OpenAIRealtimeServer.connections` records each connection's events.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.servers.realtime_core import Ear, ThreadedServer, speak
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

__all__ = ["OpenAIRealtimeServer", "RealtimeServerConfig", "RealtimeLog"]

RATE = 24000


@dataclass
class RealtimeServerConfig:
    api_key: str = "sk-realtime-test-key"
    rate_limited: bool = False
    key_error_event: bool = False
    drop_at_setup: bool = False
    drop_after_ms: int | None = None
    stall: bool = False
    beta_names: bool = False
    reply_suffix: str = ""
    function_call: tuple[str, dict[str, Any]] | None = None
    pace: float = 0.0
    """Answer audio generated at this many times real time (0: as fast as it is made)."""
    setup_delay: float = 0.0
    """Seconds before ``session.updated`` answers ``session.update`` (a slow start)."""
    late_deltas: int = 0
    """Audio deltas of a cancelled response still sent after ``response.cancel`` (in flight, as on a network)."""
    transcripts: bool = True
    """Send the answer's transcript deltas (False: its audio only)."""


@dataclass
class RealtimeLog:
    """What one accepted connection did."""

    model: str
    session: dict[str, Any] = field(default_factory=dict)
    received: list[str] = field(default_factory=list)
    """Client event types, in order."""
    audio_ms: float = 0.0
    transcripts: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    truncates: list[dict[str, Any]] = field(default_factory=list)
    function_outputs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


class OpenAIRealtimeServer(ThreadedServer):
    """``url`` is the ``ws://127.0.0.1:PORT/v1/realtime`` to configure as the provider's ``url``."""

    name = "openai-realtime-test-server"

    def __init__(self, config: RealtimeServerConfig | None = None) -> None:
        super().__init__()
        self.config = config or RealtimeServerConfig()
        self.connections: list[RealtimeLog] = []
        self.refused: list[int] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path != "/v1/realtime":
            return _refuse(404, "invalid_request_error", "not_found", f"no route {parts.path}")
        if request.headers.get("Authorization", "") != f"Bearer {self.config.api_key}":
            self.refused.append(401)
            return _refuse(401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided.")
        if self.config.rate_limited:
            self.refused.append(429)
            return _refuse(429, "rate_limit_error", "rate_limit_exceeded", "Rate limit reached for requests.")
        return None

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        model = parse_qs(urlsplit(ws.request.path).query).get("model", [""])[0]
        log = RealtimeLog(model)
        self.connections.append(log)
        await _Session(ws, self.config, log).run()


def _refuse(status: int, kind: str, code: str, message: str) -> Response:
    body = json.dumps({"error": {"type": kind, "code": code, "message": message}}).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(status, {401: "Unauthorized", 429: "Too Many Requests"}.get(status, "Not Found"), headers, body)


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


class _Session:
    def __init__(self, ws: ServerConnection, config: RealtimeServerConfig, log: RealtimeLog) -> None:
        self.ws, self.config, self.log = ws, config, log
        self.turn_detection: dict[str, Any] = {"type": "server_vad", "create_response": True}
        self.ear = Ear(RATE)
        self.response: asyncio.Task[None] | None = None
        self.response_id = ""
        self.items: dict[str, int] = {}  # assistant audio item -> its audio ms
        self.ids = 0

    async def send(self, event: dict[str, Any]) -> None:
        self.ids += 1
        await self.ws.send(json.dumps({"event_id": f"event_{self.ids}", **event}))

    async def error(self, code: str, message: str, event_id: str | None = None) -> None:
        error = {"type": "invalid_request_error", "code": code, "message": message, "param": None}
        error["event_id"] = event_id
        self.log.errors.append(error)
        await self.send({"type": "error", "error": error})

    async def run(self) -> None:
        try:
            if self.config.key_error_event:
                await self.error("invalid_api_key", "Incorrect API key provided.")
                await self.ws.close(1008, "invalid_api_key")
                return
            await self.send({"type": "session.created", "session": {"id": _id("sess"), "model": self.log.model}})
            async for raw in self.ws:
                if self.config.stall:
                    continue
                try:
                    event = json.loads(raw)
                    kind = str(event["type"])
                except (ValueError, KeyError, TypeError):
                    await self.error("invalid_json", "The event is not a JSON object with a type.")
                    continue
                self.log.received.append(kind)
                await self.on_event(kind, event)
        except ConnectionClosed:
            pass
        finally:
            if self.response is not None:
                self.response.cancel()
                await asyncio.gather(self.response, return_exceptions=True)

    async def on_event(self, kind: str, event: dict[str, Any]) -> None:
        if kind == "session.update":
            if self.config.drop_at_setup:
                self.ws.transport.abort()
                return
            session = event.get("session") or {}
            self.log.session = session
            await asyncio.sleep(self.config.setup_delay)
            detection = (((session.get("audio") or {}).get("input") or {}).get("turn_detection")) or {}
            self.turn_detection = {"create_response": True, **detection}
            self.ear.silence_ms = int(self.turn_detection.get("silence_duration_ms", 500))
            await self.send({"type": "session.updated", "session": {"id": _id("sess"), **session}})
        elif kind == "input_audio_buffer.append":
            try:
                pcm = base64.b64decode(str(event.get("audio", "")), validate=True)
            except (binascii.Error, ValueError):
                await self.error("invalid_value", "audio must be base64-encoded PCM16.", event.get("event_id"))
                return
            self.log.audio_ms += len(pcm) / 2 / RATE * 1000
            if self.config.drop_after_ms is not None and self.log.audio_ms >= self.config.drop_after_ms:
                self.ws.transport.abort()
                return
            for heard in await self.ear.feed(pcm):
                await self.on_heard(heard.kind, heard.ms, heard.text)
        elif kind == "response.cancel":
            if self.response is None or self.response.done():
                await self.error("response_cancel_not_active", "There is no active response.", event.get("event_id"))
                return
            await self.cancel()
        elif kind == "conversation.item.truncate":
            await self.truncate(event)
        elif kind == "conversation.item.create":
            item = event.get("item") or {}
            if item.get("type") == "function_call_output":
                self.log.function_outputs.append(item)
            elif item.get("type") == "message":
                text = " ".join(str(c.get("text", "")) for c in item.get("content") or [] if isinstance(c, dict))
                self.log.transcripts.append(text)
                self.pending_text = text
            await self.send({"type": "conversation.item.created", "item": {"id": _id("item"), **item}})
        elif kind == "response.create":
            self.start_response(getattr(self, "pending_text", ""))

    async def on_heard(self, kind: str, ms: int, text: str) -> None:
        item = _id("item")
        if kind == "started":
            await self.send({"type": "input_audio_buffer.speech_started", "audio_start_ms": ms, "item_id": item})
            if self.turn_detection.get("interrupt_response") and self.response is not None:
                if not self.response.done():
                    await self.cancel()
            return
        await self.send({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": ms, "item_id": item})
        await self.send({"type": "input_audio_buffer.committed", "item_id": item, "previous_item_id": None})
        self.log.transcripts.append(text)
        await self.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item,
                "content_index": 0,
                "transcript": text,
            }
        )
        if self.turn_detection.get("create_response", True):
            self.start_response(text)

    def start_response(self, heard: str) -> None:
        reply = f"You said: {heard}." if heard else "I did not catch that."
        if self.config.reply_suffix:
            reply += " " + self.config.reply_suffix
        self.log.replies.append(reply)
        self.response_id = _id("resp")
        self.response = asyncio.create_task(self.respond(self.response_id, reply))

    async def respond(self, response_id: str, reply: str) -> None:
        item = _id("item")
        audio_delta = "response.audio.delta" if self.config.beta_names else "response.output_audio.delta"
        text_delta = (
            "response.audio_transcript.delta" if self.config.beta_names else "response.output_audio_transcript.delta"
        )
        await self.send({"type": "response.created", "response": {"id": response_id, "status": "in_progress"}})
        message = {"id": item, "type": "message", "role": "assistant", "status": "in_progress", "content": []}
        await self.send(
            {"type": "response.output_item.added", "response_id": response_id, "output_index": 0, "item": message}
        )
        self.items[item] = 0
        where = {"response_id": response_id, "item_id": item, "output_index": 0, "content_index": 0}
        self.last_audio = (audio_delta, where)
        loop = asyncio.get_running_loop()
        started, made = loop.time(), 0.0
        async for words, pcm in speak(reply, RATE):
            if self.config.pace > 0:
                await asyncio.sleep(max(0.0, started + made / self.config.pace - loop.time()))
                made += len(pcm) / 2 / RATE
            if words and self.config.transcripts:
                await self.send({"type": text_delta, **where, "delta": words})
            if pcm:
                await self.send({"type": audio_delta, **where, "delta": base64.b64encode(pcm).decode()})
                self.items[item] += int(len(pcm) / 2 / RATE * 1000)
            await asyncio.sleep(0)
        if self.config.function_call is not None:
            name, arguments = self.config.function_call
            await self.send(
                {
                    "type": "response.function_call_arguments.done",
                    "response_id": response_id,
                    "item_id": _id("item"),
                    "output_index": 1,
                    "call_id": _id("call"),
                    "name": name,
                    "arguments": json.dumps(arguments),
                }
            )
        await self.send({"type": "response.done", "response": {"id": response_id, "status": "completed"}})

    async def cancel(self) -> None:
        assert self.response is not None
        self.response.cancel()
        await asyncio.gather(self.response, return_exceptions=True)
        kind, where = self.last_audio
        for _ in range(self.config.late_deltas):  # already on the wire when the cancel arrived
            silence = base64.b64encode(bytes(4800)).decode()
            await self.send({"type": kind, **where, "delta": silence})
        await self.send({"type": "response.done", "response": {"id": self.response_id, "status": "cancelled"}})

    async def truncate(self, event: dict[str, Any]) -> None:
        item, end = event.get("item_id"), event.get("audio_end_ms")
        self.log.truncates.append({k: event.get(k) for k in ("item_id", "content_index", "audio_end_ms")})
        if item not in self.items:
            await self.error("item_not_found", f"Item {item} does not exist.", event.get("event_id"))
        elif not isinstance(end, int) or end < 0 or end > self.items[item] + 1:
            await self.error(
                "invalid_value", f"audio_end_ms {end} is beyond the item's {self.items[item]} ms of audio.", None
            )
        else:
            await self.send(
                {"type": "conversation.item.truncated", "item_id": item, "content_index": 0, "audio_end_ms": end}
            )
