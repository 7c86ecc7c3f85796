"""A local server implementing the documented OpenAI audio API, for tests. It is NOT OpenAI, and not
Kokoro-FastAPI: it was written from the public API reference (and Kokoro-FastAPI's documented captioned
speech endpoint) so that Facecast's OpenAI-compatible providers can be tested end to end, with real models,
where no cloud service can be reached.

Run as a subprocess: ``python tests/servers/openai_audio.py [--key KEY] [--port N]``. It loads its models,
then prints ``PORT <n>`` on stdout and serves on 127.0.0.1:

- ``GET  /v1/models``: the models it serves (OpenAI's list shape).
- ``POST /v1/audio/transcriptions``: a multipart form (``file``, ``model``, ``language``, ``prompt``,
  ``temperature``, ``response_format`` ``json``/``text``/``verbose_json``) transcribed by faster-whisper
  with the embedded Whisper base weights (:class:`facecast.stt.whisper.WhisperSTT`).
- ``POST /v1/audio/speech``: JSON (``model``, ``input``, ``voice``, ``response_format`` ``pcm``/``wav``,
  ``speed``) spoken by the embedded hibari voice (24 kHz); the body streams as the audio is made (chunked).
  ``pcm`` is raw 16-bit little-endian mono at 24 kHz; ``wav`` a streamed WAV (data size 0xFFFFFFFF).
- ``POST /dev/captioned_speech``: as Kokoro-FastAPI documents it: newline-delimited JSON objects, each with
  base64 ``audio`` and ``timestamps`` (``word``, ``start_time``, ``end_time`` in seconds).
- ``POST /control`` (test switch, no key needed): ``{"mode": M, "count": N, "retry_after": S,
  "wav_rate": R}`` makes the next N requests (all, when N is absent) misbehave: ``ok``, ``401``, ``429``
  (with ``Retry-After: S``), ``stall`` (no answer at all), ``stall_mid`` (half the audio, then silence),
  ``garbage`` (an HTML page with status 200) or ``close`` (half the answer, then the connection drops).
  ``wav_rate`` resamples ``wav`` answers to that rate. ``GET /control`` returns the requests seen since.

With ``--key KEY`` every API request must carry ``Authorization: Bearer KEY`` (else 401, OpenAI's error
shape).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import email.parser
import email.policy
import socket
import struct
import sys
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from facecast.audio import float_to_pcm16, read_audio, resample
from facecast.errors import InputError
from facecast.stt.whisper import WhisperOptions, WhisperSTT
from facecast.tts.hibari import HibariOptions, HibariTTS
from facecast.types import AudioChunk

RATE = 24_000


def error(status: int, message: str, kind: str, code: str | None = None, **headers: str) -> JSONResponse:
    """An error in OpenAI's documented shape: ``{"error": {"message", "type", "param", "code"}}``."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def parse_form(content_type: str, body: bytes) -> dict[str, Any]:
    """A multipart/form-data body as ``{name: str, or (filename, bytes) for a file}`` (no python-multipart)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    if not message.is_multipart():
        raise ValueError("not a multipart/form-data body")
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        data = part.get_payload(decode=True)
        data = data if isinstance(data, bytes) else b""
        filename = part.get_filename()
        fields[name] = (filename, data) if filename is not None else data.decode("utf-8")
    return fields


def wav_header(rate: int) -> bytes:
    """A streamed WAV's header: 16-bit mono PCM at ``rate``, sizes unknown (0xFFFFFFFF)."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 0xFFFFFFFF)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + (struct.pack("<I", 0xFFFFFFFF))
    )


class State:
    def __init__(self, key: str) -> None:
        self.key = key
        self.mode = "ok"
        self.count: int | None = None
        self.retry_after = 1.0
        self.wav_rate = RATE
        self.requests: list[dict[str, Any]] = []
        self.stt = WhisperSTT(WhisperOptions())
        self.tts = HibariTTS(HibariOptions(seed=1))

    def take_mode(self) -> str:
        mode = self.mode
        if self.count is not None:
            self.count -= 1
            if self.count <= 0:
                self.mode, self.count = "ok", None
        return mode


def make_app(state: State) -> FastAPI:
    app = FastAPI()

    def refused(request: Request) -> JSONResponse | None:
        if state.key and request.headers.get("authorization") != f"Bearer {state.key}":
            return error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        return None

    async def hang(request: Request) -> None:
        """Say nothing until the client gives up (then the handler ends: nothing lingers at shutdown)."""
        while (await request.receive())["type"] != "http.disconnect":  # the body was read: only that comes
            pass

    async def misbehave(mode: str, request: Request) -> Response | None:
        if mode == "401":
            return error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        if mode == "429":
            return error(
                429,
                "Rate limit reached.",
                "requests",
                "rate_limit_exceeded",
                **{"Retry-After": f"{state.retry_after:g}"},
            )
        if mode == "stall":
            await hang(request)
            return Response(status_code=499)
        if mode == "garbage":
            return Response("<html><body>502 Bad Gateway</body></html>", 200, media_type="text/html")
        return None

    @app.post("/control")
    async def control(request: Request) -> dict[str, Any]:
        body = await request.json()
        state.mode = str(body.get("mode", "ok"))
        state.count = body.get("count")
        state.retry_after = float(body.get("retry_after", 1.0))
        state.wav_rate = int(body.get("wav_rate", RATE))
        state.requests.clear()
        return {"mode": state.mode}

    @app.get("/control")
    async def seen() -> dict[str, Any]:
        return {"mode": state.mode, "requests": state.requests}

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        if (no := refused(request)) is not None:
            return no
        ids = ("whisper-1", "tts-1", "kokoro")
        return JSONResponse({"object": "list", "data": [{"id": i, "object": "model", "owned_by": "test"} for i in ids]})

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        body = await request.body()
        try:
            form = parse_form(request.headers.get("content-type", ""), body)
        except ValueError as exc:
            return error(400, str(exc), "invalid_request_error")
        state.requests.append(
            {
                "path": request.url.path,
                "fields": {k: v for k, v in form.items() if isinstance(v, str)},
                "auth": "authorization" in request.headers,
            }
        )
        if (no := refused(request)) is not None:
            return no
        mode = state.take_mode()
        if (odd := await misbehave(mode, request)) is not None:
            return odd
        if "file" not in form or not isinstance(form["file"], tuple) or not form.get("model"):
            return error(400, "'file' and 'model' are required", "invalid_request_error")
        try:
            pcm, rate = read_audio(form["file"][1])
        except InputError as exc:
            return error(400, f"could not decode the audio file: {exc}", "invalid_request_error")
        pcm = resample(pcm, rate, 16_000)

        async def one() -> AsyncIterator[AudioChunk]:
            yield AudioChunk(pcm, 16_000)

        text = "".join([t.text async for t in state.stt.transcribe(one()) if t.final])
        answer: dict[str, Any] = {"text": text}
        kind = form.get("response_format", "json")
        if mode == "close":  # half the answer, then the connection drops

            async def broken() -> AsyncIterator[bytes]:
                yield b'{"text": "' + text[: len(text) // 2].encode()
                await asyncio.sleep(0.05)
                raise ConnectionAbortedError("test server: close mid-answer")

            return StreamingResponse(broken(), media_type="application/json")
        if kind == "text":
            return PlainTextResponse(text)
        if kind == "verbose_json":
            answer |= {"task": "transcribe", "language": form.get("language", "en"), "duration": len(pcm) / 16_000}
        return JSONResponse(answer)

    async def speech_request(request: Request) -> tuple[dict[str, Any] | None, Response | None]:
        try:
            body = await request.json()
        except ValueError:
            return None, error(400, "the body must be JSON", "invalid_request_error")
        state.requests.append({"path": request.url.path, "fields": body, "auth": "authorization" in request.headers})
        if (no := refused(request)) is not None:
            return None, no
        if not isinstance(body, dict) or not str(body.get("input", "")).strip():
            return None, error(400, "'input' is required", "invalid_request_error")
        if body.get("response_format", "mp3") not in ("pcm", "wav"):
            return None, error(400, "this test server speaks only pcm and wav", "invalid_request_error")
        return body, None

    async def spoken(body: dict[str, Any], mode: str) -> AsyncIterator[tuple[bytes, list[dict[str, Any]]]]:
        """The speech as (bytes in the requested format, word timestamps) pieces; misbehaves per ``mode``."""
        speed = min(2.0, max(0.5, float(body.get("speed", 1.0))))
        tts = state.tts if speed == 1.0 else HibariTTS(HibariOptions(seed=1, speed=speed))
        broken = mode in ("close", "stall_mid")
        # a well-behaved answer streams as the voice speaks; a broken one is made first, to break it halfway
        chunks: Any = [c async for c in tts.synthesize(str(body["input"]))] if broken else None
        total = sum(len(c.audio.pcm) for c in chunks) if broken else 0
        wav = body.get("response_format") == "wav"
        rate = state.wav_rate if wav else RATE
        if wav:
            yield wav_header(rate), []
        sent = 0
        async for chunk in _each(chunks) if broken else tts.synthesize(str(body["input"])):
            if broken and sent >= total // 2:
                if mode == "stall_mid":
                    await asyncio.sleep(3600)
                raise ConnectionAbortedError("test server: close mid-body")
            pcm = resample(chunk.audio.pcm, RATE, rate) if rate != RATE else chunk.audio.pcm
            stamps = [{"word": w.text, "start_time": w.start / RATE, "end_time": w.end / RATE} for w in chunk.words]
            sent += len(chunk.audio.pcm)
            yield float_to_pcm16(pcm), stamps
            await asyncio.sleep(0.02)  # the pieces leave one by one, as a real server's do

    @app.post("/v1/audio/speech")
    async def speech(request: Request) -> Response:
        body, no = await speech_request(request)
        if no is not None or body is None:
            return no or error(400, "bad request", "invalid_request_error")
        mode = state.take_mode()
        if (odd := await misbehave(mode, request)) is not None:
            return odd

        async def audio() -> AsyncIterator[bytes]:
            async for data, _ in spoken(body, mode):
                yield data

        media = "audio/wav" if body.get("response_format") == "wav" else "audio/pcm"
        return StreamingResponse(audio(), media_type=media)

    @app.post("/dev/captioned_speech")
    async def captioned(request: Request) -> Response:
        body, no = await speech_request(request)
        if no is not None or body is None:
            return no or error(400, "bad request", "invalid_request_error")
        mode = state.take_mode()
        if (odd := await misbehave(mode, request)) is not None:
            return odd
        import json

        async def lines() -> AsyncIterator[bytes]:
            async for data, stamps in spoken(body, mode):
                item = {"audio": base64.b64encode(data).decode(), "audio_format": body["response_format"]}
                yield (json.dumps(item | {"timestamps": stamps}) + "\n").encode()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return app


async def _each(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--key", default="", help="the API key every request must carry (none: no check)")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    state = State(args.key)
    state.stt.load()

    async def warm() -> None:
        async for _ in state.tts.synthesize("Ready."):
            pass

    asyncio.run(warm())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(64)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    server = uvicorn.Server(uvicorn.Config(make_app(state), log_level="warning", timeout_graceful_shutdown=1))
    asyncio.run(server.serve(sockets=[sock]))
    sys.exit(0)


if __name__ == "__main__":
    main()
