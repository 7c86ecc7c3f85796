"""Gemini Live end to end: a real Facecast server with ``--realtime gemini`` pointed at
tests/servers/gemini_live_server.py (an implementation of the documented protocol for tests, not the service:
it hears the player with PocketSphinx and answers with espeak-ng), and engine-sim as the engine.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from tests.realtime.conftest import MIC, barge_in, eventually, facecast, session_of, spoken
from tests.servers.gemini_live_server import GeminiLiveServer, GeminiServerConfig

from facecast.actions import Action
from facecast.characters import Character
from facecast.engine.sim import EngineSim, SimConfig
from facecast.face.learned import LearnedAnimator
from facecast.realtime.gemini import GeminiLive, GeminiLiveOptions
from facecast.types import frames_for_samples

KEY = "gemini-test-key"
LONG = "That reminds me of a long story about the hills, the rivers and the road that runs between them all day."


def model(url: str, key: str = KEY, timeout: float = 10.0) -> GeminiLive:
    return GeminiLive(GeminiLiveOptions(model="gemini-live-test", api_key=key, url=url, connect_timeout=timeout))


async def test_a_spoken_turn_is_answered_with_audio_and_a_face_released_by_the_ack(learned: LearnedAnimator) -> None:
    async with GeminiLiveServer(GeminiServerConfig(api_key=KEY)) as api:
        async with facecast(model(api.url), learned) as server, EngineSim(SimConfig(url=server.ws_url)) as sim:
            report = await sim.say_audio(await spoken("Hello there, how are you today?"), MIC, timeout=40)
            await eventually(lambda: len(session_of(server).history.turns) == 2)
            history = [(m.role, m.content) for m in session_of(server).history.turns]
        [log] = api.connections
    heard = log.transcripts[0]
    assert "hello" in heard and "today" in heard
    assert log.setup["model"] == "models/gemini-live-test"
    assert report.transcript == heard
    [utt] = report.utterances
    assert utt.ended and utt.text == f"You said: {heard}."
    assert utt.discontinuities == 0 and utt.samples > 24000
    assert utt.face_frames == frames_for_samples(utt.samples, 24000) and utt.face_before_ack == 0
    assert np.concatenate(utt.face)[:, 17].max() > 0.1  # JawOpen moves with the voice
    assert history == [("user", heard), ("assistant", f"You said: {heard}.")]


async def test_the_servers_interruption_clears_the_engine_and_keeps_what_was_heard(learned: LearnedAnimator) -> None:
    async with GeminiLiveServer(GeminiServerConfig(api_key=KEY, reply_suffix=LONG)) as api:
        async with facecast(model(api.url), learned) as server, EngineSim(SimConfig(url=server.ws_url)) as sim:
            report = await barge_in(sim, await spoken("Tell me a story."), await spoken("Stop, please."), after=1.5)
            await eventually(lambda: len(session_of(server).history.turns) == 4)
            history = [(m.role, m.content) for m in session_of(server).history.turns]
        [log] = api.connections
    cut, answer = report.utterances[0], report.utterances[-1]
    assert log.interrupted == 1
    assert cut.cleared and cut.after_clear == 0
    assert any(m.get("type") == "clear_buffer" and m.get("reason") == "barge_in" for m in report.messages)
    assert answer.ended and not answer.cleared and answer.text.startswith("You said:")
    assert [role for role, _ in history] == ["user", "assistant", "user", "assistant"]
    assert history[1][1] and len(history[1][1]) < len(log.replies[0])


@pytest.mark.parametrize(
    ("config", "key", "code"),
    [
        (GeminiServerConfig(api_key=KEY), "wrong-key", "unauthorized"),
        (GeminiServerConfig(api_key=KEY, rate_limited=True), KEY, "rate_limited"),
        (GeminiServerConfig(api_key=KEY, drop_at_setup=True), KEY, "service_unavailable"),
        (GeminiServerConfig(api_key=KEY, stall=True), KEY, "service_unavailable"),
    ],
    ids=["bad-key", "rate-limit", "dropped-at-setup", "stall"],
)
async def test_a_model_that_cannot_be_used_fails_over_to_the_pipeline_which_answers_the_player(
    caplog: pytest.LogCaptureFixture, learned: LearnedAnimator, config: GeminiServerConfig, key: str, code: str
) -> None:
    async with GeminiLiveServer(config) as api:
        async with (
            facecast(model(api.url, key, timeout=1.5), learned) as server,
            EngineSim(SimConfig(url=server.ws_url, hold_mic=True)) as sim,
        ):
            report = await sim.say_audio(await spoken("Hello there, how are you today?"), MIC, timeout=40)
    [notice] = [m for m in report.messages if m.get("type") == "failover"]
    assert notice["role"] == "realtime" and notice["to_url"] == "pipeline" and notice["reason"].startswith(code)
    assert key not in json.dumps(report.messages)  # the key (in the URL's query) never reaches the client
    assert key not in caplog.text and config.api_key not in caplog.text  # nor the server's log
    [utt] = report.utterances
    assert utt.ended and "today" in utt.text.lower()


async def test_a_socket_dropped_mid_turn_loses_nothing_the_player_said(learned: LearnedAnimator) -> None:
    async with GeminiLiveServer(GeminiServerConfig(api_key=KEY, drop_after_ms=1200)) as api:
        async with (
            facecast(model(api.url), learned) as server,
            EngineSim(SimConfig(url=server.ws_url, hold_mic=True)) as sim,
        ):
            report = await sim.say_audio(await spoken("Hello there, how are you today?"), MIC, timeout=40)
    [notice] = [m for m in report.messages if m.get("type") == "failover"]
    assert notice["reason"].startswith("service_unavailable")
    assert "hello" in report.transcript and "today" in report.transcript


async def test_a_tool_call_becomes_a_game_action_and_is_answered(learned: LearnedAnimator) -> None:
    config = GeminiServerConfig(api_key=KEY, function_call=("wave", {"hand": "left"}))
    wave = Action("wave", "Wave at the player", {"type": "object", "properties": {"hand": {"type": "string"}}})
    ada = replace(Character("ada", "You are Ada."), actions=(wave,))
    async with GeminiLiveServer(config) as api:
        async with (
            facecast(model(api.url), learned, {"ada": ada}) as server,
            EngineSim(SimConfig(url=server.ws_url, character="ada")) as sim,
        ):
            report = await sim.say_audio(await spoken("Wave at me."), MIC, timeout=40)
        [log] = api.connections
    [action] = [m for m in report.messages if m.get("type") == "action"]
    assert action["name"] == "wave" and action["arguments"] == {"hand": "left"}
    assert log.setup["tools"][0]["functionDeclarations"][0]["name"] == "wave"
    assert log.tool_responses == [{"id": "call-1", "name": "wave", "response": {"status": "sent to the game"}}]
