"""LlamaCppLLM: the tiny test GGUF run in-process by llama-cpp-python, in a worker thread."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from facecast.errors import ConfigError, ServiceError
from facecast.llm import LlamaCppLLM, LlamaCppOptions, OpenAIChat, OpenAIChatOptions, make_llm
from facecast.roles import LanguageModel
from facecast.types import ChatMessage

pytestmark = [pytest.mark.llamacpp, pytest.mark.usefixtures("llama_cpp_available")]

QUESTION = [ChatMessage("system", "You are terse."), ChatMessage("user", "Tell me about the sea.")]
GREEDY = LlamaCppOptions(n_ctx=512, temperature=0.0, max_tokens=12, seed=7, n_threads=2)


@pytest.fixture
async def llm(tiny_gguf: Path) -> Any:
    model = LlamaCppLLM(tiny_gguf, GREEDY)
    yield model
    await model.aclose()


async def test_streams_words_from_a_local_gguf(llm: LlamaCppLLM) -> None:
    assert isinstance(llm, LanguageModel)
    pieces = [piece async for piece in llm.stream(QUESTION)]
    assert len(pieces) > 1 and all(pieces)
    assert len("".join(pieces).split()) == 12  # one word per token; max_tokens ends the answer
    assert await llm.complete(QUESTION) == "".join(pieces)  # greedy: repeatable


async def test_the_event_loop_keeps_running_while_it_generates(llm: LlamaCppLLM) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    try:
        ticks_at_start = ticks
        stream = llm.stream(QUESTION)
        async with contextlib.aclosing(stream):
            await anext(stream)  # loading the model and reading the prompt happen in the worker thread
            assert ticks > ticks_at_start
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class CountingLlama:
    """Wraps the loaded llama_cpp.Llama to count the chunks the worker pulls from it."""

    def __init__(self, real: Any) -> None:
        self.real, self.pulled = real, 0

    def create_chat_completion(self, **kwargs: Any) -> Any:
        with contextlib.closing(self.real.create_chat_completion(**kwargs)) as chunks:
            for chunk in chunks:
                self.pulled += 1
                yield chunk

    def close(self) -> None:
        self.real.close()


async def test_closing_early_stops_generation(tiny_gguf: Path) -> None:
    model = LlamaCppLLM(tiny_gguf, LlamaCppOptions(n_ctx=4096, temperature=0.0, max_tokens=4000, n_threads=2))
    model.load()
    counting = CountingLlama(model._llama)
    model._llama = counting  # observe the worker from outside
    stream = model.stream(QUESTION)
    assert await anext(stream)
    await stream.aclose()
    await model.aclose()  # runs on the worker thread after the generation has returned
    assert 1 <= counting.pulled < 1000  # stopped soon after the close, not after 4000 tokens


async def test_agrees_with_the_same_model_behind_the_server(llm: LlamaCppLLM, llama_server: Any) -> None:
    remote = OpenAIChat(OpenAIChatOptions(llama_server.base_url, temperature=0.0, max_tokens=12, seed=7))
    try:
        assert await remote.complete(QUESTION) == await llm.complete(QUESTION)
    finally:
        await remote.aclose()


async def test_a_prompt_longer_than_the_context_is_a_service_error(tiny_gguf: Path) -> None:
    model = LlamaCppLLM(tiny_gguf, LlamaCppOptions(n_ctx=64, max_tokens=8, n_threads=2))
    try:
        with pytest.raises(ServiceError, match="context"):
            await model.complete([ChatMessage("user", "tell me a story " * 200)])
    finally:
        await model.aclose()


async def test_a_file_that_is_not_a_model_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    model = make_llm(str(bad))
    assert isinstance(model, LlamaCppLLM)
    try:
        with pytest.raises(ConfigError, match="cannot load"):
            await model.complete(QUESTION)
        with pytest.raises(ConfigError, match="cannot load"):
            model.load()
    finally:
        await model.aclose()


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        LlamaCppLLM(tmp_path / "missing.gguf")
