"""A character's actions through a session: declared in the hello, called in the reply's text, sent to the
engine on the utterance clock between the spoken sentences, answered with action_result."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.engine.test_session import Recorder
from tests.fakes import FakeFace, FakeLLM, FakeSTT, FakeTTS

from facecast.engine.session import EngineSession
from facecast.services import Services

GIVE_ITEM = {
    "name": "give_item",
    "description": "Hand an item to the player.",
    "parameters": {
        "type": "object",
        "properties": {"item": {"type": "string", "enum": ["key", "bread"]}},
        "required": ["item"],
        "additionalProperties": False,
    },
}


def hello(**extra: Any) -> str:
    return json.dumps({"type": "hello", "audio": {"rate": 16000}, "actions": [GIVE_ITEM], **extra})


async def turn(reply: str, text: str = "Can I have the key?") -> tuple[EngineSession, Recorder, FakeLLM]:
    llm = FakeLLM(reply)
    rec = Recorder()
    session = EngineSession(Services(FakeSTT(), llm, FakeTTS(rate=16000), FakeFace()), rec)
    await session.handle_text(hello())
    await session.handle_text(json.dumps({"type": "text", "text": text}))
    start = await rec.wait_for("utterance_start")
    await rec.wait_audio()
    await session.handle_text(json.dumps({"type": "playback_started", "utterance": start["utterance"]}))
    await rec.wait_for("utterance_end")
    return session, rec, llm


def _kinds(rec: Recorder) -> list[str]:
    return [m["type"] for m in rec.sent if isinstance(m, dict)]


async def test_an_action_between_sentences_is_sent_at_the_end_of_the_words_before_it() -> None:
    session, rec, llm = await turn('Here you go. {"name": "give_item", "arguments": {"item": "key"}} Mind the door.')
    [action] = rec.of_type("action")
    assert (action["name"], action["arguments"]) == ("give_item", {"item": "key"})
    first, second = rec.of_type("reply_text")
    assert (first["text"], second["text"]) == ("Here you go.", "Mind the door.")
    assert action["at"] == second["at"] > 0  # after the first sentence's audio, where the second starts
    kinds = _kinds(rec)
    assert kinds.index("action") < kinds.index("utterance_end")
    assert "give_item" not in rec.of_type("utterance_end")[0]["text"]  # never spoken
    system = llm.seen[0][0].content
    assert 'Example: {"name": "give_item", "arguments": {"item": "key"}}' in system  # described to the model
    await session.close()


async def test_the_result_reaches_the_next_turn_once() -> None:
    session, rec, llm = await turn('{"name": "give_item", "arguments": {"item": "key"}} There.')
    [action] = rec.of_type("action")
    assert action["at"] == 0  # an action that opens the reply happens at its start
    await session.handle_text(
        json.dumps({"type": "action_result", "id": action["id"], "ok": True, "result": "the player has the key"})
    )
    await session.handle_text(json.dumps({"type": "text", "text": "Thanks!"}))
    await rec.wait_for("utterance_start", 2)
    told = llm.seen[1][-1].content
    assert told.startswith('[What your actions did: give_item {"item": "key"}: done ("the player has the key").]')
    assert told.endswith("Thanks!")
    await session.handle_text(json.dumps({"type": "action_result", "id": action["id"]}))  # answered already
    await session.handle_text(json.dumps({"type": "action_result", "id": "9.9"}))
    errors = await rec.wait_for("error", 2)
    assert errors["code"] == "bad_message" and "not a pending action" in errors["message"]
    await session.close()


async def test_a_call_with_bad_arguments_is_reported_and_not_taken() -> None:
    session, rec, _ = await turn('Take it. {"name": "give_item", "arguments": {"item": "dragon"}} Bye.')
    assert not rec.of_type("action")
    error = rec.of_type("error")[0]
    assert error["code"] == "bad_action" and "'dragon' is not one of" in error["message"]
    assert [m["text"] for m in rec.of_type("reply_text")] == ["Take it.", "Bye."]
    await session.close()


async def test_a_hello_with_bad_actions_is_refused_and_changes_nothing() -> None:
    rec = Recorder()
    session = EngineSession(Services(FakeSTT(), FakeLLM(), FakeTTS(rate=16000), FakeFace()), rec)
    bad = [
        [{"name": "give item"}],
        [GIVE_ITEM, GIVE_ITEM],
        [{"name": "x", "parameters": {"type": "object", "properties": {"a": {"type": "nonsense"}}}}],
        [{"name": "x", "code": "rm -rf"}],
    ]
    for k, actions in enumerate(bad, 1):
        await session.handle_text(json.dumps({"type": "hello", "actions": actions}))
        error = await rec.wait_for("error", k)
        assert error["code"] == "bad_message" and "action" in error["message"]
    assert session.hello is None and not rec.of_type("welcome")
    await session.handle_text(hello())
    await rec.wait_for("welcome")
    await session.close()


async def test_barge_in_cancels_actions_not_yet_sent() -> None:
    llm = FakeLLM('One. Two. Three. Four. {"name": "give_item", "arguments": {"item": "key"}} Five.', delay=0.05)
    rec = Recorder()
    session = EngineSession(Services(FakeSTT(), llm, FakeTTS(rate=16000), FakeFace()), rec)
    await session.handle_text(hello())
    await session.handle_text(json.dumps({"type": "text", "text": "count"}))
    await rec.wait_for("utterance_start")
    await session.handle_text(json.dumps({"type": "interrupt"}))
    await rec.wait_for("clear_buffer")
    await asyncio.sleep(0.5)
    assert not rec.of_type("action")
    await session.close()


async def test_a_reply_that_is_only_an_action_ends_without_audio() -> None:
    llm = FakeLLM('{"name": "give_item", "arguments": {"item": "bread"}}')
    rec = Recorder()
    session = EngineSession(Services(FakeSTT(), llm, FakeTTS(rate=16000), FakeFace()), rec)
    await session.handle_text(hello())
    await session.handle_text(json.dumps({"type": "text", "text": "bread please"}))
    end = await rec.wait_for("utterance_end")
    assert end["samples"] == 0 and end["frames"] == 0
    [action] = rec.of_type("action")
    assert action["arguments"] == {"item": "bread"} and action["at"] == 0
    await session.close()


async def test_a_characters_own_actions_apply_when_the_hello_declares_none() -> None:
    from facecast.characters import characters_from_tables

    characters = characters_from_tables({"mora": {"persona": "You are Mora.", "actions": [GIVE_ITEM]}})
    llm = FakeLLM('There. {"name": "give_item", "arguments": {"item": "key"}}')
    rec = Recorder()
    session = EngineSession(Services(FakeSTT(), llm, FakeTTS(rate=16000), FakeFace()), rec, characters=characters)
    await session.handle_text(json.dumps({"type": "hello", "character": "mora", "acks": False}))
    await session.handle_text(json.dumps({"type": "text", "text": "key?"}))
    await rec.wait_for("utterance_end")
    assert [a["arguments"] for a in rec.of_type("action")] == [{"item": "key"}]
    assert "give_item" in llm.seen[0][0].content and llm.seen[0][0].content.startswith("You are Mora.")
    await session.close()


async def test_a_reply_without_words_or_actions_is_reported() -> None:
    # a language model that answers with a stage direction only gives nothing to speak
    rec = Recorder()
    session = EngineSession(Services(FakeSTT(), FakeLLM("*nods slowly*"), FakeTTS(rate=16000), FakeFace()), rec)
    await session.handle_text(hello())
    await session.handle_text(json.dumps({"type": "text", "text": "Well?"}))
    error = await rec.wait_for("error")
    assert error["code"] == "empty_reply" and "said nothing" in error["message"]
    [end] = rec.of_type("utterance_end")
    kinds = _kinds(rec)
    assert kinds.index("utterance_start") < kinds.index("utterance_end") < kinds.index("error")
    assert not rec.of_type("reply_text")
    # the session goes on answering
    await session.handle_text(json.dumps({"type": "text", "text": "Again?"}))
    await rec.wait_for("utterance_end", 2)
    await session.close()
    # an action alone is a reply: no error
    rec = Recorder()
    llm = FakeLLM('{"name": "give_item", "arguments": {"item": "key"}}')
    session = EngineSession(Services(FakeSTT(), llm, FakeTTS(rate=16000), FakeFace()), rec)
    await session.handle_text(hello())
    await session.handle_text(json.dumps({"type": "text", "text": "The key?"}))
    await rec.wait_for("utterance_end")
    await asyncio.sleep(0.05)
    assert rec.of_type("action") and not rec.of_type("error")
    await session.close()
