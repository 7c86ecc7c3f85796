"""OpenAIChat against a real OpenAI-compatible server: llama-cpp-python's, serving the tiny test GGUF."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from facecast.errors import ServiceError
from facecast.llm import OpenAIChat, OpenAIChatOptions
from facecast.types import ChatMessage

pytestmark = pytest.mark.llamacpp

QUESTION = [ChatMessage("system", "You are terse."), ChatMessage("user", "Tell me about the sea.")]


def chat(server_url: str, **options: object) -> OpenAIChat:
    settings: dict[str, object] = {"temperature": 0.0, "max_tokens": 16, "seed": 7, **options}
    return OpenAIChat(OpenAIChatOptions(base_url=server_url, **settings))  # type: ignore[arg-type]  # test shorthand


def words(text: str) -> list[str]:
    return text.split()


def open_connections_to(port: int) -> int:
    """Established TCP connections from THIS process to 127.0.0.1:``port`` (Linux /proc)."""
    if not Path("/proc/net/tcp").exists():
        pytest.skip("counting open sockets needs Linux /proc")
    fd_dir = Path("/proc/self/fd")
    inodes = set()
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[3] == "01" and fields[9] in inodes:
                    count += 1
    return count


async def test_streams_several_pieces_that_join_to_the_non_streaming_answer(llama_server: Any) -> None:
    llm = chat(llama_server.base_url)
    try:
        pieces = [piece async for piece in llm.stream(QUESTION)]
        whole = await llm.complete(QUESTION)
        again = [piece async for piece in llm.stream(QUESTION)]
    finally:
        await llm.aclose()
    assert len(pieces) > 1
    assert all(pieces)
    assert "".join(pieces) == whole  # greedy decoding: streaming and non-streaming agree
    assert pieces == again  # and it is repeatable
    assert len(words(whole)) == 16  # the tiny model never stops by itself: max_tokens ends it


async def test_max_tokens_is_respected(llama_server: Any) -> None:
    short, longer = chat(llama_server.base_url, max_tokens=3), chat(llama_server.base_url, max_tokens=12)
    try:
        short_pieces = [piece async for piece in short.stream(QUESTION)]
        short_text = await short.complete(QUESTION)
        long_text = await longer.complete(QUESTION)
    finally:
        await short.aclose()
        await longer.aclose()
    # every token of the tiny vocabulary is one space-led word
    assert len(words("".join(short_pieces))) == 3
    assert len(words(short_text)) == 3
    assert len(words(long_text)) == 12
    assert long_text.startswith(short_text)


async def test_a_named_model_and_the_auto_detected_one_both_work(llama_server: Any) -> None:
    named, detected = chat(llama_server.base_url, model="tiny-llama"), chat(llama_server.base_url)
    try:
        assert await named.complete(QUESTION) == await detected.complete(QUESTION)
        assert "tiny-llama" in repr(detected)  # learnt from the server's /v1/models
    finally:
        await named.aclose()
        await detected.aclose()


async def test_closing_the_stream_early_closes_the_http_connection(llama_server: Any) -> None:
    llm = chat(llama_server.base_url, max_tokens=2000)
    try:
        stream = llm.stream(QUESTION)
        first = await anext(stream)
        assert first
        assert open_connections_to(llama_server.port) == 1
        await stream.aclose()
        assert open_connections_to(llama_server.port) == 0
    finally:
        await llm.aclose()
    # the server is free again: it stopped generating for the closed request
    other = chat(llama_server.base_url, max_tokens=4)
    try:
        assert len(words(await other.complete(QUESTION))) == 4
    finally:
        await other.aclose()


async def test_cancelling_the_consumer_closes_the_http_connection(llama_server: Any) -> None:
    llm = chat(llama_server.base_url, max_tokens=2000)
    got_one = asyncio.Event()

    async def consume() -> None:
        async for _ in llm.stream(QUESTION):
            got_one.set()

    try:
        task = asyncio.create_task(consume())
        await got_one.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert open_connections_to(llama_server.port) == 0
    finally:
        await llm.aclose()


async def test_a_server_killed_mid_stream_gives_a_service_error(
    llama_server_factory: Callable[..., contextlib.AbstractContextManager[Any]],
) -> None:
    with llama_server_factory() as server:
        llm = chat(server.base_url, max_tokens=4000)
        pieces: list[str] = []

        async def listen() -> None:
            async for piece in llm.stream(QUESTION):
                pieces.append(piece)
                if len(pieces) == 1:
                    server.kill()

        try:
            with pytest.raises(ServiceError) as caught:
                await asyncio.wait_for(listen(), 60)  # a hang fails here instead of blocking the suite
        finally:
            await llm.aclose()
    assert 1 <= len(pieces) < 4000
    assert f"the LLM at {server.base_url} stopped in the middle of its answer" in str(caught.value)


async def test_a_stopped_server_is_unreachable_with_the_url_in_the_message(
    llama_server_factory: Callable[..., contextlib.AbstractContextManager[Any]],
) -> None:
    with llama_server_factory() as server:
        llm = chat(server.base_url)
        try:
            assert await llm.complete(QUESTION)
            server.stop()
            with pytest.raises(ServiceError, match=f"cannot reach the LLM at {server.base_url}: connection refused"):
                await llm.complete(QUESTION)
        finally:
            await llm.aclose()
