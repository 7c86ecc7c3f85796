"""The server's one log line per turn: character, what was heard and answered, stage times, outcome."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from tests.engine.test_session import HELLO, Recorder
from tests.fakes import FakeFace, FakeLLM, FakeSTT, FakeTTS

from facecast.characters import Character
from facecast.engine.session import EngineSession
from facecast.services import Services


def _session(llm: FakeLLM) -> tuple[EngineSession, Recorder]:
    rec = Recorder()
    services = Services(FakeSTT(), llm, FakeTTS(rate=16000), FakeFace())
    return EngineSession(services, rec, character=Character("ada", "You are Ada.")), rec


def _turn_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "facecast.engine.replies" and "turn " in r.getMessage()]


async def test_a_completed_turn_logs_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "facecast.engine.replies")
    session, rec = _session(FakeLLM("Hello traveller. The key is yours."))
    await session.handle_text(HELLO)
    await session.handle_text(json.dumps({"type": "text", "text": "can I have the key?"}))
    start = await rec.wait_for("utterance_start")
    await rec.wait_audio()
    await session.handle_text(json.dumps({"type": "playback_started", "utterance": start["utterance"]}))
    await rec.wait_for("timing")
    await session.close()
    [line] = _turn_lines(caplog)
    assert "character=ada" in line and "heard='can I have the key?'" in line
    assert "reply='Hello traveller. The key is yours.'" in line
    assert "llm_first_token=" in line and "engine_ack=" in line and line.endswith("-> completed")


async def test_an_interrupted_turn_logs_how_it_ended(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "facecast.engine.replies")
    session, rec = _session(FakeLLM("One. Two. Three. Four. Five. Six.", delay=0.05))
    await session.handle_text(HELLO)
    await session.handle_text(json.dumps({"type": "text", "text": "count"}))
    await rec.wait_for("utterance_start")
    await session.handle_text(json.dumps({"type": "interrupt"}))
    await rec.wait_for("clear_buffer")
    await asyncio.sleep(0)
    await session.close()
    [line] = _turn_lines(caplog)
    assert "heard='count'" in line and line.endswith("-> interrupted")
