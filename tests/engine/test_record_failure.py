"""``--record`` into a folder that cannot be written: recording is best-effort, replies go on, and nothing of
the server's file system reaches the client."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from tests.engine.test_session import Recorder
from tests.fakes import FakeFace, FakeLLM, FakeSTT, FakeTTS, SinkOutput

from facecast.engine.outputs import RecorderSink
from facecast.engine.session import EngineSession
from facecast.services import Services


async def test_unwritable_record_folder_loses_no_reply(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the record folder should be")  # refuses even root, unlike chmod
    root = blocker / "recordings"
    sinks: list[RecorderSink] = []

    def factory() -> RecorderSink:
        sinks.append(RecorderSink(root))
        return sinks[-1]

    rec = Recorder()
    services = Services(FakeSTT(), FakeLLM(), FakeTTS(rate=16000), FakeFace())
    session = EngineSession(services, rec, outputs=[SinkOutput(factory)])
    await session.handle_text(json.dumps({"type": "hello", "acks": False}))
    with caplog.at_level(logging.ERROR):
        for number, text in enumerate(("First turn.", "Second turn."), start=1):
            await session.handle_text(json.dumps({"type": "text", "text": text}))
            end = await rec.wait_for("utterance_end", number)
            assert end["samples"] > 0 and end["frames"] > 0
    await session.close()
    assert not rec.of_type("error")
    sent = json.dumps([m for m in rec.sent if isinstance(m, dict)])
    assert str(tmp_path) not in sent and "not-a-folder" not in sent
    assert sinks[0].disabled and not sinks[0].folders
    assert "recording" in caplog.text and "not-a-folder" in caplog.text  # the operator is told, in the log


async def test_a_failing_sink_is_switched_off_and_the_reply_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        calls = 0

        def on_event(self, event: object) -> None:
            Broken.calls += 1
            raise RuntimeError("/srv/secret/path exploded")

        def on_playback_started(self, utterance: int, monotonic_time: float) -> None:
            raise RuntimeError("/srv/secret/path exploded")

        def on_clear(self, utterance: int) -> None:
            raise RuntimeError("/srv/secret/path exploded")

    rec = Recorder()
    session = EngineSession(
        Services(FakeSTT(), FakeLLM(), FakeTTS(rate=16000), FakeFace()), rec, outputs=[SinkOutput(Broken)]
    )
    await session.handle_text(json.dumps({"type": "hello", "acks": False}))
    await session.handle_text(json.dumps({"type": "text", "text": "Hello."}))
    assert (await rec.wait_for("utterance_end"))["samples"] > 0
    await session.close()
    assert Broken.calls == 1 and not rec.of_type("error")
    assert "/srv/secret" not in json.dumps([m for m in rec.sent if isinstance(m, dict)])
    assert "/srv/secret/path exploded" in caplog.text


def test_recorder_still_records_into_a_good_folder(tmp_path: Path) -> None:
    assert not RecorderSink(tmp_path).disabled
