"""The speaking rules every persona gets, and where they come from (server, character)."""

from __future__ import annotations

import json

import pytest
from tests.engine.test_session import HELLO, Recorder
from tests.fakes import FakeFace, FakeLLM, FakeSTT, FakeTTS

from facecast.characters import Character, characters_from_tables
from facecast.engine.session import EngineSession, SessionConfig
from facecast.errors import ConfigError
from facecast.llm.history import DEFAULT_PERSONA, EMOTION_TAGS_RULE, SPEAKING_RULES, persona_prompt
from facecast.services import Services


def test_rules_follow_any_persona_unless_off() -> None:
    assert persona_prompt("") == DEFAULT_PERSONA and SPEAKING_RULES in DEFAULT_PERSONA
    assert persona_prompt("You are Ada.") == f"You are Ada.\n\n{SPEAKING_RULES}"
    assert persona_prompt("You are Ada.", "tags") == f"You are Ada.\n\n{SPEAKING_RULES}\n\n{EMOTION_TAGS_RULE}"
    assert persona_prompt("You are Ada.", "off") == "You are Ada."
    assert persona_prompt(f"You are Ada. {SPEAKING_RULES}") == f"You are Ada. {SPEAKING_RULES}"  # not twice
    assert "[happy]" in EMOTION_TAGS_RULE and "[happy]" not in DEFAULT_PERSONA
    with pytest.raises(ConfigError, match="on, tags, off"):
        persona_prompt("x", "loud")


async def _system_prompt(character: Character | None, config: SessionConfig, hello: str = HELLO) -> str:
    llm = FakeLLM("Aye.")
    rec = Recorder()
    services = Services(FakeSTT(), llm, FakeTTS(rate=16000), FakeFace())
    characters = {character.name: character} if character else {}
    session = EngineSession(services, rec, config, characters=characters)
    await session.handle_text(hello)
    await session.handle_text(json.dumps({"type": "text", "text": "hi"}))
    await rec.wait_for("utterance_start")
    await session.close()
    return llm.seen[0][0].content


async def test_a_session_uses_the_characters_rules_over_the_servers() -> None:
    ada = Character("ada", "You are Ada.", speaking_rules="off")
    hello = json.dumps({"type": "hello", "character": "ada"})
    assert await _system_prompt(ada, SessionConfig(speaking_rules="tags"), hello) == "You are Ada."
    bo = Character("bo", "You are Bo.")
    hello = json.dumps({"type": "hello", "character": "bo"})
    prompt = await _system_prompt(bo, SessionConfig(speaking_rules="tags"), hello)
    assert prompt == f"You are Bo.\n\n{SPEAKING_RULES}\n\n{EMOTION_TAGS_RULE}"
    assert await _system_prompt(None, SessionConfig(persona="You are Cy.")) == f"You are Cy.\n\n{SPEAKING_RULES}"


def test_a_character_table_takes_its_rules_and_refuses_unknown_ones() -> None:
    [ada] = characters_from_tables({"ada": {"persona": "You are Ada.", "speaking_rules": "off"}}).values()
    assert ada.speaking_rules == "off"
    with pytest.raises(ConfigError, match="speaking_rules"):
        characters_from_tables({"ada": {"speaking_rules": "loud"}})
