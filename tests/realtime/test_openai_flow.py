"""OpenAI Realtime end to end: a real Facecast server (uvicorn) with ``--realtime openai`` pointed at
tests/servers/openai_realtime_server.py (an implementation of the documented protocol for tests, not the
service: it hears the player with PocketSphinx and answers with espeak-ng), and engine-sim as the engine.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from tests.http.conftest import free_udp_port
from tests.realtime.conftest import MIC, barge_in, eventually, facecast, session_of, spoken
from tests.servers.openai_realtime_server import OpenAIRealtimeServer, RealtimeServerConfig

from facecast.actions import Action
from facecast.characters import Character
from facecast.engine.sim import EngineSim, SimConfig
from facecast.face.learned import LearnedAnimator
from facecast.realtime.openai import OpenAIRealtime, OpenAIRealtimeOptions
from facecast.takefolder import read_session
from facecast.types import frames_for_samples

KEY = "sk-realtime-test-key"
LONG = "That reminds me of a long story about the hills, the rivers and the road that runs between them all day."


def model(url: str, key: str = KEY, timeout: float = 10.0) -> OpenAIRealtime:
    return OpenAIRealtime(OpenAIRealtimeOptions(api_key=key, url=url, connect_timeout=timeout))


async def test_a_spoken_turn_is_answered_with_audio_and_a_face_released_by_the_ack(learned: LearnedAnimator) -> None:
    async with OpenAIRealtimeServer(RealtimeServerConfig(api_key=KEY)) as api:
        async with facecast(model(api.url), learned) as server, EngineSim(SimConfig(url=server.ws_url)) as sim:
            report = await sim.say_audio(await spoken("Hello there, how are you today?"), MIC, timeout=40)
            await eventually(lambda: len(session_of(server).history.turns) == 2)  # playback_finished handled
            history = [(m.role, m.content) for m in session_of(server).history.turns]
        [log] = api.connections
    heard = log.transcripts[0]
    assert "hello" in heard and "today" in heard  # PocketSphinx heard the player through the protocol
    assert report.transcript == heard
    [utt] = report.utterances
    assert utt.ended and utt.text == f"You said: {heard}."
    assert utt.samples > report.utterances[0].samples // 2 > 24000  # over a second of the model's voice
    assert utt.discontinuities == 0
    assert utt.face_frames == frames_for_samples(utt.samples, 24000)
    assert utt.face_before_ack == 0  # the face waited for playback_started
    face = np.concatenate(utt.face)
    assert face[:, 17].max() > 0.1  # JawOpen moves with the voice (the audio-driven face)
    assert report.timing["model_first_audio"] >= 0 and "engine_ack" in report.timing
    assert history == [("user", heard), ("assistant", f"You said: {heard}.")]
    assert log.session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert log.model == "gpt-realtime"


async def test_an_answer_heard_without_its_transcript_is_a_reply(learned: LearnedAnimator) -> None:
    # no words to show, but a voice: not an empty reply (that error is for replies with nothing at all)
    async with OpenAIRealtimeServer(RealtimeServerConfig(api_key=KEY, transcripts=False)) as api:
        async with facecast(model(api.url), learned) as server, EngineSim(SimConfig(url=server.ws_url)) as sim:
            report = await sim.say_audio(await spoken("Hello there, how are you today?"), MIC, timeout=40)
    [utt] = report.utterances
    assert utt.ended and utt.samples > 24000 and not utt.text
    assert report.errors == []


async def test_barge_in_clears_the_engine_and_truncates_the_answer_to_what_was_played(
    learned: LearnedAnimator,
) -> None:
    # generated at real time, so the answer is still being made when the player speaks; three deltas of it
    # are already on the wire when the cancel arrives
    config = RealtimeServerConfig(api_key=KEY, reply_suffix=LONG, pace=1.0, late_deltas=3)
    async with OpenAIRealtimeServer(config) as api:
        async with facecast(model(api.url), learned) as server, EngineSim(SimConfig(url=server.ws_url)) as sim:
            first, second = await spoken("Tell me a story."), await spoken("Stop, please.")
            report = await barge_in(sim, first, second, after=1.5)
            await eventually(lambda: len(session_of(server).history.turns) == 4)
            history = [(m.role, m.content) for m in session_of(server).history.turns]
        [log] = api.connections
    cut, answer = report.utterances  # the late deltas of the cut answer started no utterance
    assert log.received.count("response.cancel") == 1
    assert cut.cleared and cut.after_clear == 0
    assert any(m.get("type") == "clear_buffer" and m.get("reason") == "barge_in" for m in report.messages)
    [truncate] = log.truncates
    played_ms = truncate["audio_end_ms"]
    # what the engine played: from its ack to the moment the model heard the player start again (1.5 s,
    # then the 0.4 s of silence before the second phrase, the VAD's 30 ms onset and the way back), which is
    # less than the audio the engine had been sent
    assert 1900 <= played_ms <= 2900
    assert played_ms < cut.samples / 24
    assert truncate["item_id"] and truncate["content_index"] == 0
    assert log.errors == []  # the server accepted the truncation (an item it made, within its audio)
    assert answer.ended and not answer.cleared and answer.text.startswith("You said:")
    # the history keeps the player's words and only what was heard of the cut answer
    roles = [role for role, _ in history]
    assert roles == ["user", "assistant", "user", "assistant"]
    said = history[1][1]
    assert said and len(said) < len(log.replies[0]) and log.replies[0].startswith(said.rstrip("."))
    assert history[2][1] == log.transcripts[1]


@pytest.mark.parametrize(
    ("config", "key", "code"),
    [
        (RealtimeServerConfig(api_key=KEY), "sk-wrong", "unauthorized"),
        (RealtimeServerConfig(api_key=KEY, rate_limited=True), KEY, "rate_limited"),
        (RealtimeServerConfig(api_key=KEY, key_error_event=True), KEY, "unauthorized"),
        (RealtimeServerConfig(api_key=KEY, drop_at_setup=True), KEY, "service_unavailable"),
        (RealtimeServerConfig(api_key=KEY, stall=True), KEY, "service_unavailable"),
    ],
    ids=["bad-key", "rate-limit", "key-error-event", "dropped-at-setup", "stall"],
)
async def test_a_model_that_cannot_be_used_fails_over_to_the_pipeline_which_answers_the_player(
    caplog: pytest.LogCaptureFixture, learned: LearnedAnimator, config: RealtimeServerConfig, key: str, code: str
) -> None:
    async with OpenAIRealtimeServer(config) as api:
        realtime = model(api.url, key, timeout=1.5)
        async with facecast(realtime, learned) as server, EngineSim(SimConfig(url=server.ws_url, hold_mic=True)) as sim:
            report = await sim.say_audio(await spoken("Hello there, how are you today?"), MIC, timeout=40)
    [notice] = [m for m in report.messages if m.get("type") == "failover"]
    assert notice["role"] == "realtime" and notice["to_url"] == "pipeline" and notice["reason"].startswith(code)
    assert key not in str(report.messages)  # the key never reaches the client
    assert notice["from_url"].startswith(("openai:", "gemini:"))
    assert key not in caplog.text and config.api_key not in caplog.text  # nor the server's log
    [utt] = report.utterances  # the classic pipeline (pocketsphinx -> echo -> espeak) answered
    assert utt.ended and "today" in utt.text.lower()


async def test_speech_during_a_slow_start_reaches_the_model_in_order(learned: LearnedAnimator) -> None:
    # the session is accepted 1.5 s after the hello: the player has been speaking for over a second by then;
    # the OLD beta event names are used, which the client reads too
    config = RealtimeServerConfig(api_key=KEY, setup_delay=1.5, beta_names=True)
    async with OpenAIRealtimeServer(config) as api:
        async with facecast(model(api.url), learned) as server, EngineSim(SimConfig(url=server.ws_url)) as sim:
            report = await sim.say_audio(await spoken("Hello there, how are you today?"), MIC, timeout=40)
        [log] = api.connections
    assert log.transcripts[0].startswith("hello") and "today" in log.transcripts[0]
    assert log.received.index("session.update") < log.received.index("input_audio_buffer.append")
    [utt] = report.utterances
    assert utt.ended and utt.samples > 24000 and utt.face_frames == frames_for_samples(utt.samples, 24000)


async def test_push_to_talk_released_right_after_the_last_word_is_answered(learned: LearnedAnimator) -> None:
    # the microphone stops 100 ms after the speech: the model's VAD gets its silence from end_of_speech
    async with OpenAIRealtimeServer(RealtimeServerConfig(api_key=KEY)) as api:
        async with (
            facecast(model(api.url), learned) as server,
            EngineSim(SimConfig(url=server.ws_url, turns="client")) as sim,
        ):
            audio = await spoken("Hello there, how are you today?", after=0)
            last = int(np.flatnonzero(np.abs(audio) > 0.01)[-1])
            report = await sim.say_audio(audio[: last + MIC // 10], MIC, timeout=40)
    [utt] = report.utterances
    assert utt.ended and "today" in utt.text


async def test_a_socket_dropped_mid_turn_loses_nothing_the_player_said(learned: LearnedAnimator) -> None:
    # the socket drops 1.2 s into the audio, in the middle of the sentence: the pipeline gets all of it
    config = RealtimeServerConfig(api_key=KEY, drop_after_ms=1200)
    async with OpenAIRealtimeServer(config) as api:
        async with (
            facecast(model(api.url), learned) as server,
            EngineSim(SimConfig(url=server.ws_url, hold_mic=True)) as sim,
        ):
            report = await sim.say_audio(await spoken("Hello there, how are you today?"), MIC, timeout=40)
    [notice] = [m for m in report.messages if m.get("type") == "failover"]
    assert notice["reason"].startswith("service_unavailable")
    assert "hello" in report.transcript and "today" in report.transcript  # its start as well as its end
    [utt] = report.utterances
    assert utt.ended and "hello" in utt.text.lower()


async def test_a_function_call_becomes_a_game_action_on_the_utterance_clock(learned: LearnedAnimator) -> None:
    config = RealtimeServerConfig(api_key=KEY, function_call=("wave", {"hand": "left"}))
    wave = Action("wave", "Wave at the player", {"type": "object", "properties": {"hand": {"type": "string"}}})
    ada = replace(Character("ada", "You are Ada."), actions=(wave,))
    async with OpenAIRealtimeServer(config) as api:
        async with (
            facecast(model(api.url), learned, {"ada": ada}) as server,
            EngineSim(SimConfig(url=server.ws_url, character="ada")) as sim,
        ):
            report = await sim.say_audio(await spoken("Wave at me."), MIC, timeout=40)
            [action] = [m for m in report.messages if m.get("type") == "action"]
            await sim.ws.send(json.dumps({"type": "action_result", "id": action["id"], "ok": True}))
            await eventually(lambda: bool(session_of(server).history.results))
            results = session_of(server).history.results
        [log] = api.connections
    assert action["name"] == "wave" and action["arguments"] == {"hand": "left"}
    assert action["at"] >= report.utterances[0].samples - 2400  # after the words it followed
    assert [t["name"] for t in log.session["tools"]] == ["wave"]  # offered as a function tool
    assert "You are Ada." in log.session["instructions"]
    [output] = log.function_outputs
    assert json.loads(output["output"]) == {"status": "sent to the game"}
    assert results == ['wave {"hand": "left"}: done']


async def test_the_answer_reaches_live_link_and_the_recorder_like_any_reply(
    learned: LearnedAnimator, tmp_path: Path
) -> None:
    port = free_udp_port()
    async with OpenAIRealtimeServer(RealtimeServerConfig(api_key=KEY)) as api:
        async with (
            facecast(model(api.url), learned, livelink=(f"127.0.0.1:{port}",), record=str(tmp_path)) as server,
            EngineSim(SimConfig(url=server.ws_url, livelink_port=port)) as sim,
        ):
            report = await sim.say_audio(await spoken("Hello there, how are you today?"), MIC, timeout=40)
            await eventually(lambda: bool(recorded(tmp_path)))
    [utt] = report.utterances
    # Live Link frames were sent on the engine's playback clock (paced from its ack)
    # (those arriving up to the end of playback: engine-sim collects them then)
    assert len(utt.livelink_error) >= 0.5 * utt.face_frames
    assert float(np.percentile(np.abs(utt.livelink_error), 50)) < 0.02
    # the recorder kept the model's audio and the face the client saw
    [folder] = recorded(tmp_path)
    session = read_session(folder)
    assert session.rate == 24000 and len(session.audio) == utt.samples
    assert session.values.shape == (frames_for_samples(utt.samples, 24000), 68)
    assert np.allclose(session.values, np.concatenate(utt.face), atol=1e-4)


def recorded(root: Path) -> list[Path]:
    """The recorder's finished session folders under ``root``."""
    return [p.parent for p in root.glob("*/shapes.csv")]
