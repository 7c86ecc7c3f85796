"""Game facts beside the chat history: set, removed, bounded (all or nothing), and rendered into the prompt."""

from __future__ import annotations

import pytest

from facecast.llm import ChatHistory
from facecast.llm.facts import FACTS_HEADING, MAX_FACTS, MAX_FACTS_BYTES, Facts
from facecast.types import ChatMessage


def test_updates_set_change_and_remove_facts_in_order() -> None:
    facts = Facts()
    facts.update({"location": "tavern", "time_of_day": "night"})
    facts.update({"location": "harbour", "weather": " rain "})
    facts.update({"time_of_day": None, "never_set": None})
    assert facts.as_dict() == {"location": "harbour", "weather": "rain"}
    facts.update({"weather": ""})  # an empty value says nothing: removed
    assert facts.render() == f"{FACTS_HEADING} location: harbour."
    facts.update({"quest": "find the ring"}, replace=True)
    assert facts.as_dict() == {"quest": "find the ring"}
    facts.clear()
    assert len(facts) == 0 and facts.render() == ""


def test_past_the_bounds_nothing_changes() -> None:
    facts = Facts()
    facts.update({f"fact{k}": "x" for k in range(MAX_FACTS)})
    before = facts.as_dict()
    with pytest.raises(ValueError, match=f"{MAX_FACTS + 1} facts; the limit is {MAX_FACTS}"):
        facts.update({"fact0": None, "one": "1", "two": "2"})  # one removed, two added: 65
    assert facts.as_dict() == before
    facts.update({"fact0": None, "one": "1"})  # 64 again: fine
    facts.update({}, replace=True)
    facts.update({"long": "ü" * ((MAX_FACTS_BYTES - 4) // 2)})  # 4 + 4092 bytes: exactly the limit
    with pytest.raises(ValueError, match="bytes"):
        facts.update({"a": "b"})
    assert list(facts.as_dict()) == ["long"] and facts.size == MAX_FACTS_BYTES
    with pytest.raises(ValueError, match="name"):
        facts.update({" ": "x"})


def test_facts_go_before_the_final_user_message_and_never_enter_the_turns() -> None:
    history = ChatHistory("You are Mora, the innkeeper.")
    history.facts.update({"location": "tavern", "time_of_day": "night"})
    first = history.messages("Where am I?")
    assert first == [
        ChatMessage("system", "You are Mora, the innkeeper."),
        ChatMessage("user", "[What is true now: location: tavern; time_of_day: night.]\nWhere am I?"),
    ]
    history.add_user("Where am I?")
    history.add_assistant("In my tavern, at night.")
    history.facts.update({"time_of_day": "dawn"})
    second = history.messages("And now?")
    # the persona and the earlier turns are the same as before: a prompt cache still holds them
    assert second[:3] == [
        first[0],
        ChatMessage("user", "Where am I?"),
        ChatMessage("assistant", "In my tavern, at night."),
    ]
    assert second[3] == ChatMessage("user", "[What is true now: location: tavern; time_of_day: dawn.]\nAnd now?")
    assert all("What is true now" not in m.content for m in history.turns)
    history.clear()
    assert history.messages()[0].content.endswith("What is true now: location: tavern; time_of_day: dawn.")
    assert history.facts.as_dict() == {"location": "tavern", "time_of_day": "dawn"}  # clearing keeps the facts


def test_facts_without_a_user_message_follow_the_system_prompt() -> None:
    history = ChatHistory("")
    assert history.messages("hi")[0].role == "user"
    history.facts.update({"location": "tavern"})
    assert [(m.role, m.content) for m in history.messages("hi")] == [
        ("user", "[What is true now: location: tavern.]\nhi"),
    ]
    assert [(m.role, m.content) for m in history.messages()] == [("system", "What is true now: location: tavern.")]
