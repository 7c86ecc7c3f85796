"""OpenAIChat against scripted real HTTP servers: every failure becomes a ServiceError a user understands.

Each test runs a real TCP server on 127.0.0.1 (asyncio streams) that answers with exactly the bytes a
misbehaving LLM server would send, so the openai client, httpx and our error mapping all run for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import openai
import pytest

from facecast.errors import ConfigError, ServiceError
from facecast.llm.openai_compat import (
    OpenAIChat,
    OpenAIChatOptions,
    connection_reason,
    resolve_api_key,
    to_openai_messages,
)
from facecast.roles import LanguageModel
from facecast.types import ChatMessage

HELLO = [ChatMessage("system", "be brief"), ChatMessage("user", "hello")]

Responder = Callable[["Request", asyncio.StreamWriter], Awaitable[None]]


class Request:
    def __init__(self, method: str, path: str, body: bytes, stop: asyncio.Event) -> None:
        self.method, self.path, self.body = method, path, body
        self.stop = stop  # set when the test's server shuts down: a responder that hangs waits on it

    def json(self) -> Any:
        return json.loads(self.body)


class ScriptedServer:
    """A real HTTP/1.1 server whose answers are written by ``respond``; records every request."""

    def __init__(self, respond: Responder) -> None:
        self._respond = respond
        self._handlers: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._stop = asyncio.Event()
        self.requests: list[Request] = []
        self.url = ""

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        self._stop.set()
        for writer in self._writers:
            writer.transport.abort()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            while True:  # keep-alive: several requests may share a connection
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(method, path, body, self._stop)
                self.requests.append(request)
                await self._respond(request, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._handlers.discard(task)
            self._writers.discard(writer)


async def send(writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str) -> None:
    writer.write(
        f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    )
    await writer.drain()


def chunk(text: str | None, finish: str | None = None) -> bytes:
    delta = {} if text is None else {"content": text}
    data = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(data)}\n\n".encode()


def completion(text: str) -> bytes:
    return json.dumps(
        {
            "id": "c1",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        }
    ).encode()


async def start_chunked_stream(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")


def http_chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def good_stream(request: Request, writer: asyncio.StreamWriter) -> None:
    await start_chunked_stream(writer)
    for piece in ("Hello", "", " there", "."):
        writer.write(http_chunk(chunk(piece)))
    writer.write(http_chunk(chunk(None, "stop")) + http_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    await writer.drain()


@contextlib.asynccontextmanager
async def chat_with(respond: Responder, **options: Any) -> AsyncIterator[tuple[OpenAIChat, ScriptedServer]]:
    async with ScriptedServer(respond) as server:
        chat = OpenAIChat(OpenAIChatOptions(base_url=server.url, **{"model": "m", **options}))
        try:
            yield chat, server
        finally:
            await chat.aclose()


async def collect(chat: OpenAIChat, pieces: list[str] | None = None) -> list[str]:
    out = [] if pieces is None else pieces
    async for piece in chat.stream(HELLO):
        out.append(piece)
    return out


# ---------------------------------------------------------------------------------------------- success


def test_is_a_language_model() -> None:
    assert isinstance(OpenAIChat(OpenAIChatOptions("http://127.0.0.1:1/v1")), LanguageModel)


async def test_streams_non_empty_deltas_and_sends_the_request_we_configured() -> None:
    async with chat_with(good_stream, temperature=0.0, max_tokens=7, seed=3) as (chat, server):
        assert await collect(chat) == ["Hello", " there", "."]
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    body = request.json()
    assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    assert (body["model"], body["temperature"], body["max_tokens"], body["seed"], body["stream"]) == (
        "m",
        0.0,
        7,
        3,
        True,
    )


async def test_without_a_model_name_uses_the_first_model_the_server_lists() -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter) -> None:
        if request.path == "/v1/models":
            listing = {"object": "list", "data": [{"id": "served-model", "object": "model", "created": 0,
                                                   "owned_by": "me"}]}  # fmt: skip
            await send(writer, 200, json.dumps(listing).encode(), "application/json")
        else:
            await send(writer, 200, completion("ok"), "application/json")

    async with chat_with(respond, model=None) as (chat, server):
        assert await chat.complete(HELLO) == "ok"
        assert await chat.complete(HELLO) == "ok"
    assert [r.path for r in server.requests] == ["/v1/models", "/v1/chat/completions", "/v1/chat/completions"]
    assert server.requests[1].json()["model"] == "served-model"
    assert server.requests[1].json()["stream"] is False


async def test_a_server_listing_no_model_is_reported() -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter) -> None:
        await send(writer, 200, b'{"object": "list", "data": []}', "application/json")

    async with chat_with(respond, model=None) as (chat, _):
        with pytest.raises(ServiceError, match="lists no model; name one with --llm-model"):
            await chat.complete(HELLO)


# ---------------------------------------------------------------------------------------------- failures


async def test_unreachable_url_names_the_url_and_the_cause(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/v1"
    chat = OpenAIChat(OpenAIChatOptions(base_url=url, model="m"))
    try:
        with pytest.raises(ServiceError) as caught:
            await collect(chat)
        message = str(caught.value)
        assert message.startswith(f"cannot reach the LLM at {url}: connection refused; is the server running?")
        assert "--llm" in message
        assert isinstance(caught.value.__cause__, openai.APIConnectionError)
        with pytest.raises(ServiceError, match="connection refused"):
            await chat.complete(HELLO)
    finally:
        await chat.aclose()


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, r"refused the API key \(HTTP 401\).*FACECAST_LLM_KEY"),
        (404, r"HTTP 404 for model 'm'.*ends in /v1"),
        (429, r"rate-limiting requests \(HTTP 429\)"),
        (500, r"failed with HTTP 500: model exploded"),
    ],
)
async def test_error_statuses_become_service_errors(status: int, expected: str) -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter) -> None:
        body = json.dumps({"error": {"message": "model exploded", "type": "x"}}).encode()
        await send(writer, status, body, "application/json")

    async with chat_with(respond) as (chat, server):
        with pytest.raises(ServiceError, match=expected):
            await collect(chat)
        with pytest.raises(ServiceError, match=expected):
            await chat.complete(HELLO)
    assert len(server.requests) == 2  # an HTTP error status is not retried


async def test_malformed_stream_becomes_a_service_error() -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter) -> None:
        await start_chunked_stream(writer)
        writer.write(http_chunk(chunk("Hi")) + http_chunk(b"data: {this is not json\n\n") + b"0\r\n\r\n")
        await writer.drain()

    async with chat_with(respond) as (chat, server):
        pieces: list[str] = []
        with pytest.raises(ServiceError, match="not an OpenAI chat completion in the middle of its answer"):
            await collect(chat, pieces)
    assert pieces == ["Hi"]
    assert len(server.requests) == 1


async def test_a_non_api_answer_to_a_plain_request_becomes_a_service_error() -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter) -> None:
        await send(writer, 200, b"<html>a web page</html>", "text/html")

    async with chat_with(respond) as (chat, _):
        with pytest.raises(ServiceError, match="is --llm an OpenAI-compatible API root"):
            await chat.complete(HELLO)


async def test_silence_times_out_with_a_service_error() -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter) -> None:
        await start_chunked_stream(writer)
        await writer.drain()
        await request.stop.wait()  # never sends a token

    async with chat_with(respond, timeout=0.2) as (chat, server):
        with pytest.raises(ServiceError, match=r"did not answer within 0.2 s"):
            await collect(chat)
    assert len(server.requests) == 1  # a timeout is not retried


async def test_a_connection_dropped_before_any_answer_is_retried_once() -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter) -> None:
        if len(server.requests) == 1:
            writer.close()  # hang up without answering
        else:
            await good_stream(request, writer)

    async with chat_with(respond) as (chat, server):
        assert "".join(await collect(chat)) == "Hello there."
    assert len(server.requests) == 2


async def test_a_server_that_always_hangs_up_is_tried_twice_then_reported() -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with chat_with(respond) as (chat, server):
        with pytest.raises(ServiceError, match=r"^cannot reach the LLM at http://127\.0\.0\.1:\d+/v1: "):
            await collect(chat)
        assert len(server.requests) == 2
        with pytest.raises(ServiceError, match="cannot reach the LLM"):
            await chat.complete(HELLO)
        assert len(server.requests) == 4


async def test_a_connection_dropped_mid_answer_is_reported_and_not_retried() -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter) -> None:
        await start_chunked_stream(writer)
        writer.write(http_chunk(chunk("Once")) + http_chunk(chunk(" upon")))
        await writer.drain()
        writer.close()  # gone before the final chunk

    async with chat_with(respond) as (chat, server):
        pieces: list[str] = []
        with pytest.raises(ServiceError, match=r"stopped in the middle of its answer: .*before the answer"):
            await collect(chat, pieces)
    assert pieces == ["Once", " upon"]
    assert len(server.requests) == 1


async def test_a_closed_client_refuses_new_requests() -> None:
    async with chat_with(good_stream) as (chat, server):
        await chat.aclose()
        with pytest.raises(ServiceError, match="was closed"):
            await collect(chat)
        with pytest.raises(ServiceError, match="was closed"):
            await chat.complete(HELLO)
    assert server.requests == []


# ---------------------------------------------------------------------------------------------- helpers


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="http:// or https://"):
        OpenAIChatOptions("localhost:11434")
    with pytest.raises(ConfigError):
        OpenAIChatOptions("http://x/v1", timeout=0)
    with pytest.raises(ConfigError):
        OpenAIChatOptions("http://x/v1", max_tokens=0)
    with pytest.raises(ConfigError):
        OpenAIChatOptions("http://x/v1", temperature=3.0)


def test_api_key_comes_from_the_option_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACECAST_LLM_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert resolve_api_key() == "not-needed"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    assert resolve_api_key() == "sk-openai"
    monkeypatch.setenv("FACECAST_LLM_KEY", "sk-facecast")
    assert resolve_api_key() == "sk-facecast"
    assert resolve_api_key("sk-explicit") == "sk-explicit"


async def test_the_api_key_is_sent_as_a_bearer_token(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        await send(writer, 401, b"{}", "application/json")
        writer.close()

    monkeypatch.setenv("FACECAST_LLM_KEY", "sk-secret-123")
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    chat = OpenAIChat(OpenAIChatOptions(f"http://127.0.0.1:{port}/v1", model="m"))
    try:
        with pytest.raises(ServiceError, match="HTTP 401"):
            await chat.complete(HELLO)
    finally:
        await chat.aclose()
        server.close()
        await server.wait_closed()
    assert b"authorization: bearer sk-secret-123" in seen[0].lower()


def test_messages_convert_in_order() -> None:
    messages = [ChatMessage("system", "s"), ChatMessage("user", "u"), ChatMessage("assistant", "a")]
    assert to_openai_messages(messages) == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "a"},
    ]


class Grouped(Exception):
    """Shaped like an exception group (what anyio raises when every address fails)."""

    def __init__(self, exceptions: list[BaseException]) -> None:
        super().__init__("all connection attempts failed")
        self.exceptions = exceptions


def _chained(inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as err:
            raise RuntimeError("wrapper") from err
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    ("inner", "reason"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
        (socket.gaierror(-2, "Name or service not known"), "host name not found"),
        (ConnectionResetError(104, "Connection reset by peer"), "connection closed by the server"),
        (ssl.SSLError(1, "wrong version number"), "TLS error"),
        (OSError(113, "No route to host"), "no route to host"),
        (Grouped([ValueError("x"), ConnectionRefusedError(111, "x")]), "connection refused"),
    ],
)
def test_connection_reason_finds_the_os_error(inner: BaseException, reason: str) -> None:
    assert connection_reason(_chained(inner)).startswith(reason)
