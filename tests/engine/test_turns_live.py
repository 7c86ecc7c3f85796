"""Smart turn-taking live, end to end: a real server (uvicorn) on the light defaults (pocketsphinx with a
grammar for exact transcripts, the echo LLM, espeak) and engine-sim streaming the player in real time.

The player is a REAL recording (``mfa_reallylong`` of :mod:`facecast.speechdata`, Michael McAuliffe reading
"m f a is like this is so many words right here") with an 800 ms pause of its own room tone inserted after
"this is so" (forced alignment; there the end-of-turn model says p ~0.01 wherever the VAD puts the silence's
start, while after "this is" it swings between 0.03 and 0.63 with a 5 ms shift: a knife edge, not a test),
the same recording with a 1.2 s pause after "m f a is" (where the pause's transcript decides, with text cues
on and off), and a neural-voice "Yes.". Times asserted are the server's own timing fields, with bounds that
only tell "right after the speech" from "at the pause" or "at the longest wait" (the model's own time is in
them; exact latencies are measured on the sample clock by the endpoint benchmark).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace

import numpy as np
import pytest
from tests.conftest import LIGHT

from facecast.audio import resample
from facecast.bench.turnset import RATE, TurnSample, paused_recording
from facecast.config import Settings
from facecast.engine.sim import EngineSim, SimConfig, TurnReport
from facecast.face.phonetic import PhoneticAnimator
from facecast.llm.echo import EchoLLM
from facecast.server import BackgroundServer
from facecast.services import Services, make_tts
from facecast.stt.pocketsphinx import PocketSphinxConfig, PocketSphinxSTT
from facecast.tts.espeak import EspeakTTS
from facecast.types import ChatMessage

SENTENCE = "m f a is like this is so many words right here"
FIRST, SECOND = "m f a is like this is so", "many words right here"
GRAMMAR = f"#JSGF V1.0;\ngrammar live;\npublic <turn> = {SENTENCE} | {FIRST} | {SECOND} | yes;\n"
"""The whole sentence, either half (a turn cut at the pause is heard as two halves), or "yes"."""

HANGING = (
    f"#JSGF V1.0;\ngrammar live;\npublic <turn> = {SENTENCE} | m f a is | like this is so many words right here;\n"
)
"""The whole sentence, or its halves around a pause after "m f a is"."""


@pytest.fixture(scope="module")
def paused() -> TurnSample:
    """The recording with the pause after "m f a is like this is so" (word 8)."""
    return paused_recording("mfa_reallylong", 8, 800)


class Thinking(EchoLLM):
    """The echo LLM taking ``delay`` seconds before its first word, as a real model does under load."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        await asyncio.sleep(self.delay)
        async for piece in super().stream(messages):
            yield piece


@asynccontextmanager
async def server(
    detector: str, grammar: str = GRAMMAR, llm: EchoLLM | None = None, **settings_: object
) -> AsyncIterator[BackgroundServer]:
    services = Services(
        PocketSphinxSTT(PocketSphinxConfig(grammar=grammar)), llm or EchoLLM(), EspeakTTS(), PhoneticAnimator()
    )
    settings = replace(Settings(**LIGHT), livelink=("off",), turn_detector=detector, **settings_)  # type: ignore[arg-type]
    async with BackgroundServer(settings, services) as running:
        yield running


def finals(report: TurnReport) -> list[str]:
    return [m["text"] for m in report.messages if m.get("type") == "transcript" and m.get("final")]


async def yes() -> np.ndarray:
    """ "Yes." in the hibari voice at 16 kHz, with 0.4 s of silence before and 1.5 s after."""
    tts = make_tts("hibari")
    chunks = [chunk.audio async for chunk in tts.synthesize("Yes.")]
    speech = resample(np.concatenate([c.pcm for c in chunks]), chunks[0].rate, RATE)
    return np.concatenate([np.zeros(RATE * 2 // 5, np.float32), speech, np.zeros(RATE * 3 // 2, np.float32)])


async def test_a_recording_with_a_long_pause_is_one_turn_answered_after_the_player_finished(
    paused: TurnSample,
) -> None:
    [(start, end)] = paused.pauses
    assert end - start >= 0.75 * RATE  # the pause, as heard: longer than the silence endpoint
    async with server("smart") as running, EngineSim(SimConfig(url=running.ws_url)) as sim:
        report = await sim.say_audio(paused.audio, RATE)
    assert finals(report) == [SENTENCE]  # one turn, the whole sentence
    [utt] = report.utterances
    assert utt.ended and utt.text.lower().endswith("so many words right here.")
    assert report.response_latency > 0  # the reply started playing after the player's last word
    # the end came after the speech, not at the pause and not at the 2.5 s most a turn waits (the stage
    # includes the model's own time, which depends on the machine: no tighter bound here; the sample-clock
    # latencies are the endpoint benchmark's, tests/bench/test_endpoint_bench.py)
    assert 60 <= report.timing["endpoint"] < 1500


async def test_a_reply_to_a_turn_cut_off_at_a_pause_never_starts_over_the_player() -> None:
    """ "m f a is" ... 800 ms ... "like this is so many words right here": the silence endpoint ends the turn
    300 ms into the pause, and the reply to the first half is ready ~1.3 s into it (a model's thinking time),
    after the player went on and well before they finish: it waits for the player (the floor,
    facecast.engine.floor) and the second half's reply replaces it unseen, answering the whole sentence (the
    two halves are one player message). Barge-in is kept out of it (``barge_in_ms`` longer than the second
    half), so it is the floor alone that keeps the first reply silent: without it the engine plays the first
    reply over the player until the second one clears it."""
    item = paused_recording("mfa_reallylong", 4, 800)
    async with (
        server("silence", HANGING, llm=Thinking(1.2), barge_in_ms=5000) as running,
        EngineSim(SimConfig(url=running.ws_url)) as sim,
    ):
        report = await sim.say_audio(item.audio, RATE)
    assert finals(report) == ["m f a is", "like this is so many words right here"]  # cut at the pause
    assert not any(u.cleared or u.samples for u in report.utterances[:-1]), [u.text for u in report.utterances]
    [utt] = report.utterances  # one reply: the client never saw the one that waited
    assert utt.ended and utt.text == f"You said: {SENTENCE}."
    assert report.response_latency > 0  # it started playing after the player's last word
    # the waiting reply did not keep the second half from being answered speculatively at its pause
    assert "llm_speculative_start" in report.timing, report.timing


async def test_a_quick_yes_is_answered_at_the_first_question_to_the_model() -> None:
    audio = await yes()
    endpoints = {}
    for detector in ("smart", "silence"):
        async with server(detector) as running, EngineSim(SimConfig(url=running.ws_url)) as sim:
            report = await sim.say_audio(audio, RATE)
        assert finals(report) == ["yes"] and [u.ended for u in report.utterances] == [True], detector
        endpoints[detector] = report.timing["endpoint"]
    # smart decided at its first question (well before the 2.5 s most it waits); silence waited its 300 ms.
    # Which is sooner in wall time depends on the model's time on this machine (~50 ms idle, 100-170 ms
    # loaded) against the 100 ms it saves: the sample-clock comparison is the endpoint benchmark's.
    assert endpoints["smart"] < 1500 and endpoints["silence"] >= 280, endpoints


async def test_the_server_says_where_its_vad_heard_the_speech_end() -> None:
    """``timing.speech_end_sample`` (protocol 1.5): the microphone sample where the VAD put the end of speech,
    in the client's own sample count, so a client can tell the VAD's part of the latency from the rest."""
    audio = await yes()
    voiced = np.flatnonzero(np.abs(audio) > 0.01)
    async with server("silence") as running, EngineSim(SimConfig(url=running.ws_url)) as sim:
        report = await sim.say_audio(audio, RATE)
    assert report.speech_end_sample == int(voiced[-1]) + 1  # the client's end: its last sample above 0.01
    assert report.server_speech_end_sample is not None
    # the VAD's end is a 20 ms frame edge near the last voiced sample (a faint tail may count either way)
    assert abs(report.vad_end_ms) <= 60, report.vad_end_ms
    assert report.server_speech_end_sample % 320 == 0  # 16 kHz microphone: one VAD frame is 320 samples
    # the client's total adds up: its end of speech + the VAD's part + the server's stages (to the ack) + transport
    total_ms = report.response_latency * 1000
    assert abs(total_ms - report.vad_end_ms - report.timing["engine_ack"]) < 150  # loopback; slack for load


@pytest.mark.parametrize("cues", [True, False])
async def test_the_pause_transcript_keeps_a_hanging_sentence_open(cues: bool) -> None:
    """ "m f a is" ... 1.2 s ... "like this is so many words right here": the model calls the first pause
    complete with p 0.82-0.98; a threshold of 0.999 makes that "unsure", so the pause's transcript decides. "m f
    a is" stops on an auxiliary after a noun (incomplete): with text cues the turn waits and the whole sentence
    is one turn; without, the unsure pause ends at the 300 ms silence endpoint and the player is cut off. The
    transcript may take up to 1 s of the pause to arrive (``turn_text_wait_ms``: a loaded machine decodes
    slower), still short of the 1.2 s pause."""
    item = paused_recording("mfa_reallylong", 4, 1200)
    async with (
        server("smart", HANGING, turn_threshold=0.999, turn_text_wait_ms=1000, turn_text_cues=cues) as running,
        EngineSim(SimConfig(url=running.ws_url, hold_mic=True)) as sim,
    ):
        report = await sim.say_audio(item.audio, RATE)
    if cues:
        assert finals(report) == [SENTENCE]
    else:
        assert finals(report)[:2] == ["m f a is", "like this is so many words right here"]
