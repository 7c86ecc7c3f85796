"""A few lines of engine client over a real WebSocket, for the resume tests: hello, a typed turn played to the end
with its acknowledgements, and waiting for the server to have answered everything sent."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection

__all__ = ["receive", "hello", "turn", "settled"]


async def receive(ws: ClientConnection) -> dict[str, Any]:
    """The next JSON message (binary frames skipped)."""
    while True:
        frame = await asyncio.wait_for(ws.recv(), 20)
        if isinstance(frame, str):
            message: dict[str, Any] = json.loads(frame)
            return message


async def hello(ws: ClientConnection, **fields: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "hello", "audio": {"rate": 16000, "channels": 1}, **fields}))
    return await receive(ws)


async def turn(ws: ClientConnection, text: str) -> list[dict[str, Any]]:
    """A typed turn, played to the end like an engine would: ``playback_started`` at the first audio, and
    ``playback_finished`` with every sample at ``utterance_end``. Returns the JSON messages up to ``timing``."""
    await ws.send(json.dumps({"type": "text", "text": text}))
    seen: list[dict[str, Any]] = []
    acked = False
    while True:
        frame = await asyncio.wait_for(ws.recv(), 20)
        if isinstance(frame, bytes):
            if frame[0] == 2 and not acked:
                acked = True
                start = next(m for m in seen if m["type"] == "utterance_start")
                await ws.send(json.dumps({"type": "playback_started", "utterance": start["utterance"]}))
            continue
        message = json.loads(frame)
        seen.append(message)
        if message["type"] == "utterance_end":
            finished = {"utterance": message["utterance"], "position": message["samples"]}
            await ws.send(json.dumps({"type": "playback_finished", **finished}))
        if message["type"] in ("timing", "error"):
            return seen


async def settled(ws: ClientConnection) -> list[dict[str, Any]]:
    """The messages before the answer to a ping (everything the server sent in reply to what came before)."""
    await ws.send(json.dumps({"type": "ping", "id": "settle"}))
    seen = []
    while (message := await receive(ws))["type"] != "pong":
        seen.append(message)
    return seen
