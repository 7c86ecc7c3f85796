"""EchoLLM: the offline stand-in that repeats the last thing the user said."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from facecast.llm import NO_LLM_HINT, EchoLLM
from facecast.llm.echo import echo_reply, split_words
from facecast.roles import LanguageModel
from facecast.types import ChatMessage


async def collect(llm: EchoLLM, messages: list[ChatMessage]) -> list[str]:
    return [piece async for piece in llm.stream(messages)]


def test_is_a_language_model() -> None:
    assert isinstance(EchoLLM(), LanguageModel)


async def test_streams_the_reply_word_by_word() -> None:
    messages = [ChatMessage("system", "be nice"), ChatMessage("user", "  hello   there  ")]
    pieces = await collect(EchoLLM(), messages)
    assert pieces == ["You", " said:", " hello", " there."]
    assert "".join(pieces) == "You said: hello there."


async def test_answers_the_last_user_message_and_is_deterministic() -> None:
    messages = [
        ChatMessage("user", "first"),
        ChatMessage("assistant", "You said: first."),
        ChatMessage("user", "how are you?"),
    ]
    llm = EchoLLM()
    first, second = await collect(llm, messages), await collect(llm, messages)
    assert first == second
    assert "".join(first) == "You said: how are you?"  # no full stop after a question mark
    assert await llm.complete(messages) == "".join(first)


@pytest.mark.parametrize(
    "messages",
    [[], [ChatMessage("system", "persona")], [ChatMessage("user", "   ")]],
)
async def test_says_it_heard_nothing_without_user_text(messages: list[ChatMessage]) -> None:
    assert "".join(await collect(EchoLLM(), messages)) == "I did not hear anything."


def test_custom_prefix() -> None:
    assert echo_reply([ChatMessage("user", "hi")], prefix="Echo: ") == "Echo: hi."


def test_split_words_keeps_spacing() -> None:
    assert split_words("a  b\nc") == ["a", "  b", "\nc"]
    assert split_words("") == []


async def test_closing_early_stops_it() -> None:
    stream = EchoLLM().stream([ChatMessage("user", "one two three four")])
    async with contextlib.aclosing(stream):
        assert await anext(stream) == "You"
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_cancellation_reaches_it() -> None:
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in EchoLLM().stream([ChatMessage("user", " ".join(["word"] * 10_000))]):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_hint_says_how_to_configure_a_real_model() -> None:
    assert "--llm http://localhost:11434/v1 --llm-model llama3.2" in NO_LLM_HINT
    assert ".gguf" in NO_LLM_HINT
    assert "pip install 'facecast[llamacpp]'" in NO_LLM_HINT
    assert "llama.cpp" in NO_LLM_HINT


def test_echo_repeats_the_players_words_not_the_game_context_in_front_of_them() -> None:
    from facecast.llm.echo import echo_reply
    from facecast.llm.history import ChatHistory

    history = ChatHistory()
    history.facts.update({"location": "tavern"})
    history.add_result('give_item {"item": "key"}: done')
    assert history.messages("Thanks")[-1].content.startswith("[What is true now")
    assert echo_reply(history.messages("Thanks")) == "You said: Thanks."
    assert echo_reply(history.messages("[sic] as written")) == "You said: [sic] as written."
