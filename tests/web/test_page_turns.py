"""Smart turn-taking from the browser page: Chromium's fake microphone plays a REAL recording with a pause in
the middle (``mfa_reallylong`` of :mod:`facecast.speechdata`: 800 ms after "this is so", where the end-of-turn
model hears the sentence is unfinished; 1.2 s after "m f a is", where the model is made unsure and the pause's
transcript keeps the turn open), hands-free, against a real server on the light defaults with the smart
detector: one turn, one reply.

Each pause is placed where the outcome has a wide margin, not on a knife edge: after "so" the model says
p ~0.01 at both of its questions (100 and 200 ms of silence; at full and half level), far below
``turn_wait_threshold`` 0.2. (After "this is" it says 0.06, then 0.25-0.50 at 200 ms depending on where the
VAD puts the silence's start: "unsure", which ended the turn at ``endpoint_ms`` on a loaded CI machine.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from tests.web.conftest import (
    TAIL_SILENCE_S,
    Question,
    check_utterance_played,
    chromium,
    light_settings,
    open_page,
    require_browser,
)

from facecast.audio import write_wav
from facecast.bench.turnset import RATE, paused_recording
from facecast.face.phonetic import PhoneticAnimator
from facecast.llm.echo import EchoLLM
from facecast.server import BackgroundServer
from facecast.services import Services
from facecast.stt.pocketsphinx import PocketSphinxConfig, PocketSphinxSTT
from facecast.tts.espeak import EspeakTTS

SENTENCE = "m f a is like this is so many words right here"
FIRST, SECOND = "m f a is like this is so", "many words right here"
GRAMMAR = f"#JSGF V1.0;\ngrammar live;\npublic <turn> = {SENTENCE} | {FIRST} | {SECOND};\n"
"""The whole sentence, or either half: a turn cut at the pause is heard as two halves."""
LEAD_S = 1.5


def _question(tmp_path_factory: pytest.TempPathFactory, after_words: int, pause_ms: int) -> Question:
    require_browser()
    item = paused_recording("mfa_reallylong", after_words, pause_ms, lead_ms=0, tail_ms=0)
    audio = np.concatenate(
        [np.zeros(int(LEAD_S * RATE), np.float32), item.audio, np.zeros(int(TAIL_SILENCE_S * RATE), np.float32)]
    )
    path: Path = tmp_path_factory.mktemp("mic") / "paused.wav"
    write_wav(path, audio, RATE)
    return Question(path, (item.speech_end - item.speech_start) / RATE, LEAD_S)


@pytest.fixture(scope="module")
def paused_question(tmp_path_factory: pytest.TempPathFactory) -> Question:
    return _question(tmp_path_factory, 8, 800)


@pytest.fixture(scope="module")
def hanging_question(tmp_path_factory: pytest.TempPathFactory) -> Question:
    return _question(tmp_path_factory, 4, 1200)


@pytest.fixture
async def smart_server() -> AsyncIterator[BackgroundServer]:
    services = Services(
        PocketSphinxSTT(PocketSphinxConfig(grammar=GRAMMAR)), EchoLLM(), EspeakTTS(), PhoneticAnimator()
    )
    async with BackgroundServer(light_settings(turn_detector="smart"), services) as running:
        yield running


async def test_hands_free_recording_with_a_pause_is_one_turn(
    paused_question: Question, smart_server: BackgroundServer
) -> None:
    await _one_turn(paused_question, smart_server)


async def test_the_pause_transcript_keeps_a_hanging_sentence_open(hanging_question: Question) -> None:
    """The model calls "m f a is" finished (p 0.92-0.98); with ``turn_threshold`` 0.999 it can only be "unsure"
    (or "wait"), so the pause's pocketsphinx transcript decides: "m f a is" stops on an auxiliary after a noun,
    and the turn waits (tests/engine/test_turns_live.py shows the same pause cut off without text cues). An
    unsure pause waits for its transcript up to ``turn_text_wait_ms``, here 1 s (a loaded machine decodes
    slower), still under the 1.2 s pause: a transcript judged anything but "incomplete" ends the turn at
    ``endpoint_ms`` or sooner, and the test fails."""
    grammar = (
        f"#JSGF V1.0;\ngrammar live;\npublic <turn> = {SENTENCE} | m f a is | like this is so many words right here;\n"
    )
    services = Services(
        PocketSphinxSTT(PocketSphinxConfig(grammar=grammar)), EchoLLM(), EspeakTTS(), PhoneticAnimator()
    )
    settings = light_settings(turn_detector="smart", turn_threshold=0.999, turn_text_wait_ms=1000)
    async with BackgroundServer(settings, services) as running:
        await _one_turn(hanging_question, running)


async def _one_turn(question: Question, server: BackgroundServer) -> None:
    async with chromium(question) as browser:
        p = await open_page(browser, server.http_url + "/")
        await p.wait("facecast.status === 'connected'")
        await p.page.check("#handsfree")  # server-side turns: the microphone opens and the file starts
        await p.wait("facecast.welcome !== null && facecast.welcome.turns === 'server'", timeout_s=10)
        await p.wait("facecast.utterances.length >= 1 && facecast.utterances[0].endTime", timeout_s=25)
        await p.page.wait_for_timeout(1500)  # a second turn (the tail of a cut-off sentence) would show by now
        state = await p.state("return {u: facecast.utterances, transcript: facecast.transcript, log: facecast.log}")
        await p.page.close()
    heard = [t["text"] for t in state["transcript"] if t["who"] == "player" and not t["typed"]]
    assert heard == [SENTENCE]  # one turn: the whole sentence, not two halves
    [u] = state["u"]
    check_utterance_played(u)
    assert not any(e["type"] == "end_of_speech" for e in state["log"])  # the server ended the turn itself
    assert not p.errors()
