"""ChatHistory: persona + bounded rolling turns, remembering only what the user heard."""

from __future__ import annotations

import pytest

from facecast.errors import ConfigError
from facecast.llm import DEFAULT_PERSONA, ChatHistory, HistoryLimits
from facecast.types import ChatMessage

S, U, A = "system", "user", "assistant"


def roles(messages: list[ChatMessage]) -> list[str]:
    return [m.role for m in messages]


def test_starts_with_the_persona_and_appends_the_question() -> None:
    history = ChatHistory("You are Ada.")
    assert history.messages() == [ChatMessage(S, "You are Ada.")]
    assert history.messages("hi") == [ChatMessage(S, "You are Ada."), ChatMessage(U, "hi")]
    assert len(history) == 0  # messages() does not record anything


def test_default_persona_and_empty_persona() -> None:
    assert ChatHistory().messages()[0] == ChatMessage(S, DEFAULT_PERSONA)
    assert ChatHistory("").messages("hi") == [ChatMessage(U, "hi")]


def test_records_a_conversation_in_order() -> None:
    history = ChatHistory("p")
    history.add_user(" hello ")
    history.add_assistant("Hi there.")
    history.add_user("how are you")
    history.add_assistant("Fine.")
    assert history.messages("and you?") == [
        ChatMessage(S, "p"),
        ChatMessage(U, "hello"),
        ChatMessage(A, "Hi there."),
        ChatMessage(U, "how are you"),
        ChatMessage(A, "Fine."),
        ChatMessage(U, "and you?"),
    ]


def test_keeps_only_what_was_heard_and_nothing_when_nothing_was() -> None:
    history = ChatHistory("p")
    history.add_user("tell me a story")
    history.add_assistant("Once upon a")  # barge-in: the rest was never heard
    history.add_user("stop")
    history.add_assistant("   ")  # interrupted before a word was heard: adds nothing
    history.add_user("actually, go on")
    assert history.turns == (
        ChatMessage(U, "tell me a story"),
        ChatMessage(A, "Once upon a"),
        ChatMessage(U, "stop actually, go on"),  # consecutive user entries merge: roles alternate
    )
    assert roles(history.messages("please")) == [S, U, A, U]
    assert history.messages("please")[-1].content == "stop actually, go on please"


def test_empty_user_text_is_ignored() -> None:
    history = ChatHistory("p")
    history.add_user("  ")
    assert len(history) == 0
    assert history.messages("  ") == [ChatMessage(S, "p")]


def test_max_turns_drops_the_oldest_turns_first() -> None:
    history = ChatHistory("p", HistoryLimits(max_turns=2, max_chars=10_000))
    for i in range(5):
        history.add_user(f"q{i}")
        history.add_assistant(f"a{i}")
    assert [m.content for m in history.turns] == ["q3", "a3", "q4", "a4"]
    # the pending question is a turn too: the oldest kept turn makes room for it
    assert [m.content for m in history.messages("q5")] == ["p", "q4", "a4", "q5"]


def test_max_chars_drops_oldest_and_resumes_at_a_user_message() -> None:
    history = ChatHistory("a very long persona " * 50, HistoryLimits(max_turns=100, max_chars=20))
    history.add_user("aaaaa")  # 5
    history.add_assistant("bbbbb")  # 10
    history.add_user("ccccc")  # 15
    history.add_assistant("dddddddd")  # 23 > 20: drop "aaaaa", then the orphaned answer "bbbbb"
    assert history.turns == (ChatMessage(U, "ccccc"), ChatMessage(A, "dddddddd"))
    assert history.messages()[0].content.startswith("a very long persona")  # persona not counted


def test_the_newest_entry_is_kept_even_when_too_long() -> None:
    history = ChatHistory("p", HistoryLimits(max_turns=5, max_chars=10))
    history.add_user("short")
    history.add_assistant("x" * 50)
    assert history.turns == (ChatMessage(A, "x" * 50),)
    assert history.messages("y" * 40) == [ChatMessage(S, "p"), ChatMessage(U, "y" * 40)]


def test_an_uncut_history_may_open_with_a_greeting() -> None:
    history = ChatHistory("p")
    history.add_assistant("Welcome, traveller.")
    assert roles(history.messages("hello")) == [S, A, U]


def test_clear_and_persona_change() -> None:
    history = ChatHistory("p")
    history.add_user("hi")
    history.clear()
    history.system_prompt = "q"
    assert history.messages() == [ChatMessage(S, "q")]


@pytest.mark.parametrize("limits", [{"max_turns": 0}, {"max_chars": 0}])
def test_limits_must_be_positive(limits: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        HistoryLimits(**limits)
