"""Turn-taking over a live server: engine-sim streams espeak speech with real pauses, in real time."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import numpy as np
import pytest
from tests.conftest import LIGHT

from facecast.config import Settings
from facecast.engine.sim import EngineSim, SimConfig, TurnReport
from facecast.face.phonetic import PhoneticAnimator
from facecast.llm.echo import EchoLLM
from facecast.offline import say
from facecast.services import Services
from facecast.tts.espeak import EspeakTTS

from .conftest import TURN_GRAMMAR, LiveServer


@pytest.fixture
async def silence_server() -> AsyncIterator[LiveServer]:
    """The grammar server (exact transcripts) with the silence endpoint, explicitly: the tests that time the
    300 ms silence path must not depend on the server's default detector."""
    from facecast.stt.pocketsphinx import PocketSphinxConfig, PocketSphinxSTT

    services = Services(
        PocketSphinxSTT(PocketSphinxConfig(grammar=TURN_GRAMMAR)), EchoLLM(), EspeakTTS(), PhoneticAnimator()
    )
    settings = replace(Settings(**LIGHT), livelink=("off",), turn_detector="silence")
    async with LiveServer(settings, services) as server:
        yield server


async def speech(*parts: str | float) -> tuple[np.ndarray, int]:
    """Concatenate spoken text parts and silences (seconds) into one signal."""
    tts = EspeakTTS(end_pause=False)  # the silences are the ones given here
    pieces: list[np.ndarray] = []
    rate = tts.sample_rate
    for part in parts:
        if isinstance(part, str):
            pieces.append((await say(part, tts, PhoneticAnimator())).audio)
        else:
            pieces.append(np.zeros(int(part * rate), np.float32))
    return np.concatenate(pieces), rate


def finals(report: TurnReport) -> list[str]:
    return [m["text"] for m in report.messages if m.get("type") == "transcript" and m.get("final")]


async def test_a_short_pause_does_not_end_the_turn_and_the_endpoint_does(silence_server: LiveServer) -> None:
    pcm, rate = await speech(0.3, "Tell me about", 0.15, "the weather.", 1.0)
    async with EngineSim(SimConfig(url=silence_server.ws_url)) as sim:
        report = await sim.say_audio(pcm, rate)
    assert len(finals(report)) == 1  # one turn, not two
    assert report.transcript == "tell me about the weather"
    [utt] = report.utterances
    assert utt.ended and utt.text.startswith("You said:") and "weather" in utt.text
    # the turn ended soon after the player stopped: endpointing is the configured 300 ms of silence
    assert 0.25 <= report.timing["endpoint"] / 1000 <= 0.6


async def test_a_pause_past_the_early_transcript_point_still_gives_the_whole_sentence(
    silence_server: LiveServer,
) -> None:
    # 250 ms: past the 200 ms pause where the speech-to-text segment closes early, short of the endpoint;
    # the grammar only knows whole sentences, so a transcript of the first half alone would be wrong.
    # The silence path only: smart turn hears espeak's flat "Tell me about" as complete (P 0.96 at 200 ms)
    # and ends the turn in the pause, a cut-off (docs/benchmarks.md, "End of turn").
    pcm, rate = await speech(0.3, "Tell me about", 0.25, "the weather.", 1.0)
    async with EngineSim(SimConfig(url=silence_server.ws_url)) as sim:
        report = await sim.say_audio(pcm, rate)
    assert finals(report) == ["tell me about the weather"]
    assert [u.ended for u in report.utterances] == [True]


async def test_consecutive_turns_each_get_a_reply(grammar_server: LiveServer) -> None:
    async with EngineSim(SimConfig(url=grammar_server.ws_url)) as sim:
        first = await sim.say_audio(*(await speech(0.2, "What is your name?", 0.8)))
        second = await sim.say_audio(*(await speech(0.2, "Stop talking please.", 0.8)))
    assert [u.ended for u in first.utterances + second.utterances] == [True, True]
    assert first.transcript == "what is your name" and second.transcript == "stop talking please"
    assert first.utterances[0].utterance != second.utterances[0].utterance


async def test_silence_and_a_click_start_no_turn(grammar_server: LiveServer) -> None:
    rate = 16000
    audio = np.zeros(rate * 2, np.float32)
    audio[rate : rate + 160] = 0.8  # a 10 ms click
    async with EngineSim(SimConfig(url=grammar_server.ws_url, mic_rate=rate)) as sim:
        await sim.stream_mic(audio, rate)
        try:
            message = await asyncio.wait_for(sim.ws.recv(), 0.8)
        except TimeoutError:
            message = None
    assert message is None  # no transcript, no reply


async def test_barge_in_stops_the_reply_and_history_keeps_what_was_heard(grammar_server: LiveServer) -> None:
    question = (
        "Please tell me a very long story about the old lighthouse keeper, his small boat, his dog, "
        "the winter storms and the ships he saved over forty years on the rocky coast."
    )
    interruption, rate = await speech(0.1, "Stop talking please.", 0.9)
    async with EngineSim(SimConfig(url=grammar_server.ws_url)) as sim:
        session = next(iter(grammar_server.state.sessions))
        report = TurnReport(speech_end=time.monotonic())
        await sim.ws.send(json.dumps({"type": "text", "text": question}))

        async def barge_in() -> None:
            while not (report.utterances and report.utterances[0].acked_at):  # noqa: ASYNC110 - polls the sim
                await asyncio.sleep(0.02)
            await asyncio.sleep(1.0)  # a second of the reply has been heard
            await sim.stream_mic(interruption, rate)

        talker = asyncio.create_task(barge_in())
        report = await sim.receive_reply(report, timeout=30)
        await talker
        history = [(m.role, m.content) for m in session.history.turns]

    first, second = report.utterances
    assert first.cleared  # the engine was told to drop the rest of the reply it was playing
    assert first.after_clear == 0  # nothing of the interrupted reply after clear_buffer
    assert second.ended and second.text == "You said: stop talking please."
    full = "You said: " + question
    heard = history[1][1]
    assert history[0] == ("user", question)
    assert heard and full.startswith(heard) and len(heard) < len(full) / 2  # only what was heard
    assert history[2] == ("user", "stop talking please")
