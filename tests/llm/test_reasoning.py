"""Hidden reasoning (<think>...</think>) is never spoken, animated or remembered, from any model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.engine.test_session import HELLO, Recorder
from tests.fakes import FakeFace, FakeLLM, FakeSTT, FakeTTS
from tests.test_cli import _ChatServer, facecast

from facecast.engine.session import EngineSession
from facecast.llm.reasoning import ReasoningFilter
from facecast.services import Services

REPLY = "<think>The player wants the key.\nI have it; give it.</think>\n\nHere you go, traveller."


def hide(pieces: list[str]) -> tuple[str, str]:
    filt = ReasoningFilter()
    return "".join(filt.feed(p) for p in pieces) + filt.flush(), filt.reasoning


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 9, len(REPLY)])
def test_a_thought_split_anywhere_is_dropped(size: int) -> None:
    text, thought = hide([REPLY[i : i + size] for i in range(0, len(REPLY), size)])
    assert text.strip() == "Here you go, traveller." and thought == "The player wants the key.\nI have it; give it."


def test_thoughts_mid_reply_unclosed_or_opened_in_the_prompt() -> None:
    assert hide(["Hmm. <thi", "nk>secret</th", "ink> Yes."])[0] == "Hmm. Yes."
    assert hide(["Sure. <think>still thinking when the reply ends"]) == ("Sure. ", "still thinking when the reply ends")
    assert hide(["planning here</think>Hello!"]) == ("Hello!", "planning here")  # the template opened it
    assert hide(["I say: a < b, and <3"])[0] == "I say: a < b, and <3"  # a '<' that is no tag is text
    assert hide(["Hello. ", "Then </think> is just text"])[0] == "Hello. Then </think> is just text"


async def test_a_session_never_speaks_or_remembers_the_thought() -> None:
    rec = Recorder()
    session = EngineSession(Services(FakeSTT(), FakeLLM(REPLY), FakeTTS(rate=16000), FakeFace()), rec)
    await session.handle_text(HELLO)
    await session.handle_text(json.dumps({"type": "text", "text": "Can I have the key?"}))
    start = await rec.wait_for("utterance_start")
    await rec.wait_audio()
    await session.handle_text(json.dumps({"type": "playback_started", "utterance": start["utterance"]}))
    end = await rec.wait_for("utterance_end")
    await session.handle_text(
        json.dumps({"type": "playback_finished", "utterance": end["utterance"], "position": end["samples"]})
    )
    assert end["text"] == "Here you go, traveller."
    assert [m["text"] for m in rec.of_type("reply_text")] == ["Here you go, traveller."]
    assert [m.content for m in session.history.turns] == ["Can I have the key?", "Here you go, traveller."]
    await session.close()


def test_the_openai_compatible_path_hides_a_streamed_thought(tmp_path: Path) -> None:
    with _ChatServer(REPLY) as llm:
        args = ("chat", "--text", "key?", "--llm", llm.url, "--tts", "espeak", "--out", str(tmp_path / "r"))
        result = facecast(*args)
    assert result.returncode == 0, result.stderr
    assert "character: Here you go, traveller." in result.stdout and "think" not in result.stdout
