"""``context`` messages: what is true now in the game reaches the language model's prompt of the next turn."""

from __future__ import annotations

import json

from tests.engine.test_session import HELLO, Recorder, make
from tests.fakes import FakeLLM

from facecast.engine.session import EngineSession
from facecast.llm.facts import MAX_FACTS
from facecast.llm.history import DEFAULT_PERSONA
from facecast.types import ChatMessage


def context(facts: dict[str, object], **extra: object) -> str:
    return json.dumps({"type": "context", "facts": facts, **extra})


async def turn(session: EngineSession, rec: Recorder, llm: FakeLLM, text: str) -> list[ChatMessage]:
    """One typed turn, played to its end (so the history keeps the reply); the messages the LLM got for it."""
    count = len(llm.seen)
    await session.handle_text(json.dumps({"type": "text", "text": text}))
    start = await rec.wait_for("utterance_start", count + 1)
    await session.handle_text(json.dumps({"type": "playback_started", "utterance": start["utterance"]}))
    end = await rec.wait_for("utterance_end", count + 1)
    await session.handle_text(
        json.dumps({"type": "playback_finished", "utterance": end["utterance"], "position": end["samples"]})
    )
    assert len(llm.seen) == count + 1
    return list(llm.seen[-1])


def facts_of(messages: list[ChatMessage]) -> str:
    """The facts in front of the final user message ('' when none), after checking the persona is untouched."""
    assert messages[0] == ChatMessage("system", DEFAULT_PERSONA)
    last = messages[-1]
    assert last.role == "user"
    return last.content[1 : last.content.index("]")] if last.content.startswith("[") else ""


async def test_context_reaches_the_next_turns_prompt_and_updates_and_removals_follow() -> None:
    llm = FakeLLM("Aye.")
    session, rec = make(llm=llm)
    await session.handle_text(HELLO)
    await session.handle_text(context({"location": "tavern", "time_of_day": "night", "gold": 12}))
    first = await turn(session, rec, llm, "Where are we?")
    assert facts_of(first) == "What is true now: location: tavern; time_of_day: night; gold: 12."
    assert first[-1].content.endswith("]\nWhere are we?")

    await session.handle_text(context({"time_of_day": "dawn", "gold": None}))
    second = await turn(session, rec, llm, "And now?")
    assert facts_of(second) == "What is true now: location: tavern; time_of_day: dawn."
    # The history keeps what was said, not the facts; the earlier turns are unchanged (a cached prefix).
    assert [m.content for m in second[1:-1]] == ["Where are we?", "Aye."]
    assert all("What is true now" not in m.content for m in session.history.turns)

    await session.handle_text(context({}, replace=True))
    third = await turn(session, rec, llm, "Hm?")
    assert facts_of(third) == "" and third[-1] == ChatMessage("user", "Hm?")
    assert not rec.of_type("error")
    await session.close()


async def test_context_past_the_bounds_is_refused_and_the_old_context_stays() -> None:
    llm = FakeLLM("Aye.")
    session, rec = make(llm=llm)
    await session.handle_text(context({"location": "tavern"}))  # before hello: refused like any message
    assert [e["code"] for e in rec.of_type("error")] == ["no_hello"]
    await session.handle_text(HELLO)
    await session.handle_text(context({"location": "tavern"}))
    await session.handle_text(context({f"fact{k}": "x" for k in range(MAX_FACTS)}))
    await session.handle_text(context({"lore": "x" * 5000}))
    await session.handle_text(context({"location": {"room": 3}}))
    errors = rec.of_type("error")[1:]
    assert [e["code"] for e in errors] == ["bad_message"] * 3
    assert "65 facts; the limit is 64" in errors[0]["message"] and "nothing was changed" in errors[0]["message"]
    assert "bytes" in errors[1]["message"]
    assert session.history.facts.as_dict() == {"location": "tavern"}
    messages = await turn(session, rec, llm, "Where?")
    assert facts_of(messages) == "What is true now: location: tavern."
    await session.close()
