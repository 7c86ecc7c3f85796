"""A local OpenAI-compatible chat server (not OpenAI) that records every prompt it is sent and streams the reply
the test sets: a test sees exactly what a controller's language model was given, across processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


class ChatRecorder:
    """``async with ChatRecorder() as llm``: serves ``llm.url`` (``http://127.0.0.1:PORT/v1``); ``llm.reply`` is
    the next answer, ``llm.prompts`` every request's ``messages``."""

    def __init__(self, reply: str = "Noted.") -> None:
        self.reply = reply
        self.prompts: list[list[dict[str, Any]]] = []
        app = Starlette(
            routes=[
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
            ]
        )
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self._task: asyncio.Task[None] | None = None
        self.url = ""

    async def __aenter__(self) -> ChatRecorder:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "recorder", "object": "model", "owned_by": "test"}]})

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.prompts.append(body["messages"])
        reply = self.reply
        if not body.get("stream"):
            message = {"role": "assistant", "content": reply}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return JSONResponse(_completion("chat.completion", choice))

        async def chunks() -> AsyncIterator[bytes]:
            for word in reply.split(" "):
                choice = {"index": 0, "delta": {"content": word + " "}, "finish_reason": None}
                yield f"data: {json.dumps(_completion('chat.completion.chunk', choice))}\n\n".encode()
            done = {"index": 0, "delta": {}, "finish_reason": "stop"}
            yield f"data: {json.dumps(_completion('chat.completion.chunk', done))}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")


def _completion(kind: str, choice: dict[str, Any]) -> dict[str, Any]:
    return {"id": "rec-1", "object": kind, "created": 0, "model": "recorder", "choices": [choice]}
