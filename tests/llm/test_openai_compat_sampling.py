"""OpenAIChat's per-request sampling settings (top_p, stop) and hidden reasoning, against scripted real HTTP
servers (the openai client and httpx run for real; see test_openai_compat_errors.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from tests.llm.test_openai_compat_errors import (
    HELLO,
    Request,
    chat_with,
    collect,
    good_stream,
    http_chunk,
    start_chunked_stream,
)

from facecast import registry
from facecast.config import load_settings
from facecast.errors import ConfigError
from facecast.llm.openai_compat import OpenAIChatOptions
from facecast.pipeline import reply_tokens
from facecast.services import make_llm


def delta_chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
    data = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return http_chunk(f"data: {json.dumps(data)}\n\n".encode())


async def reasoning_stream(request: Request, writer: asyncio.StreamWriter) -> None:
    """What DeepSeek-style and vLLM/Ollama-style servers send: thoughts in their own fields, then the reply
    (which itself opens with a <think> block, as a model without a reasoning parser writes it)."""
    await start_chunked_stream(writer)
    for delta in (
        {"role": "assistant", "content": ""},
        {"reasoning_content": "The user greets me. "},
        {"reasoning": "I should greet back."},
        {"content": "<thi"},
        {"content": "nk>secret plan</think>"},
        {"content": "Hello", "reasoning_content": " still thinking"},
        {"content": " there."},
    ):
        writer.write(delta_chunk(delta))
    writer.write(delta_chunk({}, "stop") + http_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    await writer.drain()


async def test_top_p_and_stop_are_sent_with_every_request() -> None:
    async with chat_with(good_stream, top_p=0.9, stop=("\nPlayer:", "###")) as (chat, server):
        await collect(chat)
        await collect(chat)
    assert len(server.requests) == 2
    for request in server.requests:
        body = request.json()
        assert body["top_p"] == 0.9
        assert body["stop"] == ["\nPlayer:", "###"]


async def test_unset_sampling_settings_are_left_to_the_server() -> None:
    async with chat_with(good_stream) as (chat, server):
        await collect(chat)
    body = server.requests[0].json()
    assert "top_p" not in body and "stop" not in body


def test_sampling_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="top_p"):
        OpenAIChatOptions("http://127.0.0.1:1/v1", top_p=0.0)
    with pytest.raises(ConfigError, match="stop"):
        OpenAIChatOptions("http://127.0.0.1:1/v1", stop=("a", "b", "c", "d", "e"))
    with pytest.raises(ConfigError, match="stop"):
        OpenAIChatOptions("http://127.0.0.1:1/v1", stop=("",))


async def test_reasoning_fields_are_never_part_of_the_reply() -> None:
    async with chat_with(reasoning_stream) as (chat, _):
        pieces = await collect(chat)
    text = "".join(pieces)
    assert "thinking" not in text and "greet" not in text  # neither reasoning field leaks
    assert text == "<think>secret plan</think>Hello there."  # content only; the tags are the pipeline's job


async def test_the_pipeline_removes_think_blocks_from_this_clients_replies() -> None:
    async with chat_with(reasoning_stream) as (chat, _):
        spoken = [piece async for piece in reply_tokens(chat, HELLO)]
    assert "".join(spoken) == "Hello there."


async def test_toml_sampling_settings_reach_the_request(tmp_path: Path) -> None:
    """``[llm.openai] stop = ["\\nPlayer:"]`` in the config file: the newline is kept, and it is sent."""
    config = tmp_path / "facecast.toml"
    config.write_text('[llm.openai]\nstop = ["\\nPlayer:"]\ntop_p = 0.5\nmodel = "m"\n')
    async with chat_with(good_stream) as (_, server):
        settings = load_settings(config, environ={})
        llm = make_llm(f"openai:{server.url}", settings)
        try:
            assert [p async for p in llm.stream(HELLO)] == ["Hello", " there", "."]
        finally:
            await llm.aclose()  # type: ignore[attr-defined]
    body = server.requests[0].json()
    assert (body["stop"], body["top_p"]) == (["\nPlayer:"], 0.5)
    assert registry.get("llm", "openai").name == "openai"
