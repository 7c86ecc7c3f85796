"""The default local LLM (xllamacpp + the embedded Qwen2.5-Coder-0.5B), tested with the real model.

The model is loaded once for the module (about 5 s and 700 MB). Without xllamacpp or the model packages the
tests that need them are skipped, unless ``FACECAST_REQUIRE_LOCAL_LLM=1`` (set it in CI), when they fail.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Iterator

import pytest

from facecast.errors import ConfigError, ServiceError
from facecast.llm.history import DEFAULT_PERSONA
from facecast.llm.local import DEFAULT_MODEL, EMBEDDED_MODELS, LocalLLM, LocalLLMOptions
from facecast.llm.speakable import SpeakableFilter, is_emoji, make_speakable
from facecast.roles import LanguageModel
from facecast.text import SentenceSplitter, SplitterConfig
from facecast.types import ChatMessage

REQUIRE = os.environ.get("FACECAST_REQUIRE_LOCAL_LLM") == "1"
PERSONA = DEFAULT_PERSONA  # Bram the blacksmith
MARKUP = re.compile(r"[*#`_~<>|\n]|^\s*[-•]\s")


def sentences(text: str) -> list[str]:
    splitter = SentenceSplitter(SplitterConfig(first_clause_words=0))
    return splitter.push(text) + splitter.flush()


def chat(*turns: str, persona: str = PERSONA) -> list[ChatMessage]:
    roles = ("user", "assistant")
    return [ChatMessage("system", persona)] + [ChatMessage(roles[i % 2], t) for i, t in enumerate(turns)]


@pytest.fixture(scope="module")
def llm() -> Iterator[LocalLLM]:
    try:
        model = LocalLLM(LocalLLMOptions(temperature=0.0, seed=1234, max_tokens=96))
    except ConfigError as err:
        if REQUIRE:
            pytest.fail(str(err))
        pytest.skip(str(err))
    model.load(PERSONA)
    yield model
    asyncio.run(model.aclose())


# -- the speakable filter (pure) ------------------------------------------------------------------------


def test_filter_drops_markup_stage_directions_and_emoji() -> None:
    raw = "*waves* Hello, **traveller**! 😀 I am `Bram` (smiling).\n\n# Forge\nWhat do you need?"
    assert make_speakable(raw) == "Hello, traveller! I am Bram. Forge What do you need?"


def test_filter_streams_piece_by_piece_like_whole() -> None:
    raw = "*nods slowly* Aye, Dr. Smith came by... twice. The **steel** is ready! Come back soon. More text."
    filt = SpeakableFilter(3)
    streamed = "".join(filt.feed(ch) for ch in raw) + filt.flush()
    assert streamed == make_speakable(raw) == "Aye, Dr. Smith came by... twice. The steel is ready! Come back soon."
    assert filt.done and filt.sentences == 3


def test_filter_keeps_emotion_tags_and_counts_a_final_unterminated_sentence() -> None:
    filt = SpeakableFilter(2)
    assert filt.feed("[happy] Well met") == "[happy] Well met"
    assert not filt.done
    filt.flush()
    assert filt.sentences == 1
    assert is_emoji("🔥") and not is_emoji("é")


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError):
        LocalLLMOptions(max_tokens=0)
    with pytest.raises(ConfigError):
        LocalLLMOptions(parallel=0)
    with pytest.raises(ConfigError):
        LocalLLMOptions(max_sentences=0)


def test_missing_gguf_path_is_a_config_error(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        LocalLLM(LocalLLMOptions(model=os.path.join(tmp_path, "missing.gguf")))


def test_embedded_models_are_known() -> None:
    assert DEFAULT_MODEL in EMBEDDED_MODELS
    for spec in EMBEDDED_MODELS.values():
        assert spec.sha256 and spec.install and spec.licence


# -- the real model ---------------------------------------------------------------------------------------


def test_is_a_language_model(llm: LocalLLM) -> None:
    assert isinstance(llm, LanguageModel)


async def test_reply_is_speakable_and_short(llm: LocalLLM) -> None:
    pieces = [p async for p in llm.stream(chat("Hello there! Tell me about your forge and what you make."))]
    reply = "".join(pieces)
    assert reply.strip()
    assert len(pieces) > 1  # streamed, not delivered in one piece at the end
    assert not MARKUP.search(reply), reply
    assert not any(is_emoji(ch) for ch in reply), reply
    assert 1 <= len(sentences(reply)) <= 3, reply


async def test_follows_the_persona(llm: LocalLLM) -> None:
    reply = await llm.complete(chat("What's your name?"))
    assert "Bram" in reply, reply


@pytest.mark.parametrize("line", ["Who are you?", "Are you an AI?", "Tell me about yourself."])
async def test_the_built_in_character_stays_a_person(llm: LocalLLM, line: str) -> None:
    # with "a friendly character in a video game" as its persona the model said "I'm an AI named ChatGPT"
    reply = await llm.complete(chat(line))
    assert reply.strip(), line
    claims = re.search(r"\b(I am|I'm) (an? )?(AI|artificial|assistant|language model|ChatGPT|chatbot)", reply, re.I)
    assert not claims, reply
    assert not re.search(r"ChatGPT|OpenAI|GPT-\d|language model", reply, re.I), reply


@pytest.mark.parametrize(
    "line",
    [
        "I have a thousand thoughts about that thing.",
        "Finish it. He just decided to fail it instead.",
        "Tell me about yourself.",
    ],
)
async def test_the_built_in_character_does_not_recite_its_prompt(llm: LocalLLM, line: str) -> None:
    # told "you know nothing of computers, code or the modern world", the model answered the first two lines
    # (real transcripts of the voice-to-voice benchmark) with "I'm not a computer or code person", the third
    # with "... I am not an AI and do not have any computers or code to work with"
    reply = await llm.complete(chat(line))
    assert reply.strip(), line
    recited = re.search(r"computer|\bcode\b|modern world|out loud|in character|\bAI\b|real person", reply, re.I)
    assert not recited, reply


async def test_closing_early_stops_generation(llm: LocalLLM) -> None:
    before = llm.generated_tokens_total()
    stream = llm.stream(chat("Count from one to one hundred, separated by commas, without stopping."))
    first = await anext(stream)
    assert first
    await stream.aclose()
    # Wait until the counter stops moving (the worker noticed), then check it stopped early: an unclosed
    # reply would run to max_tokens (96; the counting never ends a sentence).
    last, settled = -1, 0
    for _ in range(100):
        now = llm.generated_tokens_total()
        settled = settled + 1 if now == last else 0
        if settled >= 3:
            break
        last = now
        await asyncio.sleep(0.1)
    assert settled >= 3, "generation did not stop"
    assert last - before < 30, f"{last - before} tokens were generated after closing"
    assert llm.last_stats is None or llm.last_stats.generated_tokens < 96
    # and the model still answers normally afterwards
    assert (await llm.complete(chat("Good morning!"))).strip()


async def test_two_concurrent_streams_both_complete(llm: LocalLLM) -> None:
    one, two = await asyncio.gather(
        llm.complete(chat("What's your name?")),
        llm.complete(chat("What is this village called?")),
    )
    assert "Bram" in one, one
    assert two.strip(), two
    assert not MARKUP.search(one + two)


async def test_prompt_cache_reuses_the_conversation_prefix(llm: LocalLLM) -> None:
    # A persona nobody used yet: the first turn evaluates it, the second turn only its new tokens.
    persona = f"{PERSONA} Today's password is {uuid.uuid4().hex}."
    first_reply = await llm.complete(chat("Hello!", persona=persona))
    first = llm.last_stats
    assert first is not None
    await llm.complete(chat("Hello!", first_reply or "Hello.", "What do you sell?", persona=persona))
    second = llm.last_stats
    assert second is not None
    assert second.cached_tokens >= first.prompt_tokens  # the whole first prompt came from the cache
    assert second.prompt_tokens < first.prompt_tokens / 2


async def test_load_primes_a_persona(llm: LocalLLM) -> None:
    persona = f"{PERSONA} The secret word is {uuid.uuid4().hex}."
    await asyncio.to_thread(llm.load, persona)
    await llm.complete(chat("Hi!", persona=persona))
    stats = llm.last_stats
    assert stats is not None
    assert stats.cached_tokens > stats.prompt_tokens  # the persona was evaluated by load(), not by this turn


async def test_too_long_conversation_is_a_service_error(llm: LocalLLM) -> None:
    with pytest.raises(ServiceError, match="context"):
        await llm.complete(chat("forge " * 6000))


async def test_closed_model_refuses(tmp_path: os.PathLike[str]) -> None:
    model = LocalLLM(LocalLLMOptions())  # the embedded default: a dependency, so never skipped
    await model.aclose()
    with pytest.raises(ServiceError, match="closed"):
        await model.complete(chat("Hello!"))
