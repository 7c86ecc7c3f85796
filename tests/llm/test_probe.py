"""The start-up check of the language-model server: one warning, without credentials, for a URL that does not
answer; silence for one that answers anything; other specs are not servers."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from facecast.llm.probe import llm_urls, probe_llm, warn_unreachable_llms


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def tcp_server(handle: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


def test_only_http_urls_are_probed() -> None:
    specs = ["echo", "local", "model.gguf", "ws://a:8767", " http://a/v1 ", "https://b/v1", "http://a/v1", ""]
    assert llm_urls(specs) == ["http://a/v1", "https://b/v1"]


async def test_a_server_that_does_not_answer_gets_one_warning_without_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = closed_port()
    url = f"http://ana:hunter2@127.0.0.1:{port}/v1?api_key=sk-secret"
    with caplog.at_level(logging.WARNING, logger="facecast.llm.probe"):
        warnings = await warn_unreachable_llms([url, "echo", url])
    # only the probe's own records: another test's garbage (an HTTP client of a closed event loop) may log here
    [record] = [r for r in caplog.records if r.name == "facecast.llm.probe"]
    assert warnings == [record.getMessage()]
    text = record.getMessage()
    assert f"http://***@127.0.0.1:{port}/v1?api_key=***" in text and "connection refused" in text
    assert "hunter2" not in text and "sk-secret" not in text and "starts anyway" in text


async def test_a_server_that_answers_anything_passes() -> None:
    requests: list[bytes] = []

    async def unauthorized(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async with tcp_server(unauthorized) as port:
        assert await warn_unreachable_llms([f"http://127.0.0.1:{port}/v1/"]) == []
    assert requests[0].startswith(b"GET /v1/models HTTP/1.1")
    assert b"authorization" not in requests[0].lower()  # no key is sent to find out


async def test_a_server_that_accepts_but_never_answers_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the probe gives up and closes
        writer.close()

    async with tcp_server(silent) as port:
        assert await probe_llm(f"http://127.0.0.1:{port}/v1", timeout=0.2) == "no answer within 0.2 s"


def test_the_startup_banner_names_the_llm_without_credentials() -> None:
    from facecast.config import Settings
    from facecast.server import startup_banner

    banner = startup_banner(Settings(llm="http://ana:hunter2@127.0.0.1:11434/v1?key=sk-secret"))
    assert "llm=http://***@127.0.0.1:11434/v1?key=***" in banner
    assert "hunter2" not in banner and "sk-secret" not in banner
