"""An OpenAI-compatible chat server around the real llama.cpp (xllamacpp's in-process server, with the model's
Jinja chat template and llama.cpp's own tool-call parsing): what `llama-server` answers, on loopback.

Run: ``python tests/llm/llamacpp_http.py PORT`` (prints ``ready`` when it serves). Serves
``GET /v1/models`` and ``POST /v1/chat/completions`` (streamed as server-sent events, or whole).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from typing import Any

import uvicorn
import xllamacpp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from facecast.llm.local import resolve_model
from facecast.modelcache import assemble

MODEL = "qwen2.5-coder-0.5b-instruct"


def _server() -> Any:
    spec = resolve_model("")
    params = xllamacpp.CommonParams()
    params.model.path = str(assemble(spec) / "model.gguf")  # type: ignore[operator]
    params.n_ctx = 4096
    params.use_jinja = True
    params.warmup = False
    params.verbosity = -1
    return xllamacpp.Server(params)


def app() -> Starlette:
    server = _server()
    lock = threading.Lock()  # one request at a time, like a llama-server with one slot

    async def models(_: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "local"}]})

    async def completions(request: Request) -> Response:
        body = await request.json()
        body.pop("model", None)
        if not body.get("stream"):

            def whole() -> Any:
                with lock:
                    return server.handle_chat_completions(body)

            return JSONResponse(await asyncio.to_thread(whole))
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def work() -> None:
            def on_chunk(chunk: Any) -> bool:
                loop.call_soon_threadsafe(queue.put_nowait, chunk)
                return False

            with lock:
                server.handle_chat_completions(body, on_chunk)
            loop.call_soon_threadsafe(queue.put_nowait, None)

        threading.Thread(target=work, daemon=True).start()

        async def events() -> Any:
            while (chunk := await queue.get()) is not None:
                for item in chunk if isinstance(chunk, list) else [chunk]:
                    yield f"data: {json.dumps(item)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/models", models), Route("/v1/chat/completions", completions, methods=["POST"])])


if __name__ == "__main__":
    port = int(sys.argv[1])
    application = app()
    print("ready", flush=True)
    uvicorn.run(application, host="127.0.0.1", port=port, log_level="warning")
