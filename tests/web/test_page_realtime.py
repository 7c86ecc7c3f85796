"""The browser page with ``--realtime openai``: real headless Chromium (fake microphone) against a real server
whose model is tests/servers/openai_realtime_server.py (an implementation of the documented protocol for
tests, not the service). The page is unchanged: a realtime session speaks the same engine protocol.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest
from tests.servers.openai_realtime_server import OpenAIRealtimeServer, RealtimeServerConfig
from tests.web.conftest import (
    LONG_TEXT,
    QUESTION,
    TAIL_SILENCE_S,
    Question,
    check_acks_before_face,
    check_utterance_played,
    chromium,
    light_services,
    light_settings,
    mic_file,
    open_page,
    require_browser,
)

from facecast.face.learned import LearnedAnimator
from facecast.realtime.openai import OpenAIRealtime, OpenAIRealtimeOptions
from facecast.server import BackgroundServer

KEY = "sk-realtime-page-key"


@pytest.fixture(scope="module")
def asked(tmp_path_factory: pytest.TempPathFactory) -> Question:
    """QUESTION after 1 s of silence, then silence (Chromium loops the file)."""
    require_browser()
    return mic_file(tmp_path_factory.mktemp("mic") / "realtime.wav", [1.0, QUESTION, TAIL_SILENCE_S])


@pytest.fixture(scope="module")
def late(tmp_path_factory: pytest.TempPathFactory) -> Question:
    """QUESTION after 4 s of silence: time for a typed question's answer to start playing first."""
    require_browser()
    return mic_file(tmp_path_factory.mktemp("mic") / "realtime-late.wav", [4.0, QUESTION, TAIL_SILENCE_S])


@asynccontextmanager
async def realtime_server(api: OpenAIRealtimeServer) -> AsyncIterator[BackgroundServer]:
    model = OpenAIRealtime(OpenAIRealtimeOptions(api_key=KEY, url=api.url))
    services = replace(light_services(), audio_face=LearnedAnimator(), realtime=model)
    async with BackgroundServer(light_settings(realtime="openai"), services) as running:
        yield running


async def test_a_hands_free_question_is_answered_by_the_model_with_voice_and_face(asked: Question) -> None:
    async with OpenAIRealtimeServer(RealtimeServerConfig(api_key=KEY)) as api, realtime_server(api) as server:
        async with chromium(asked) as browser:
            p = await open_page(browser, server.http_url + "/")
            await p.wait("facecast.status === 'connected'")
            await p.page.check("#handsfree")  # the microphone streams; the model's VAD finds the turn
            await p.wait("facecast.utterances.length === 1", timeout_s=40)
            state = await p.state("""return {u: facecast.utterances, log: facecast.log,
                transcript: facecast.transcript}""")
            await p.page.close()
        [log] = [c for c in api.connections if c.transcripts]
    [u] = state["u"]
    check_utterance_played(u)
    frames = check_acks_before_face(state["log"], u["id"])
    assert frames == u["framesReceived"] > 0
    heard = log.transcripts[0]
    assert heard  # PocketSphinx in the protocol server heard the fake microphone
    said = [(t["who"], t["text"]) for t in state["transcript"]]
    assert ("player", heard) in said and ("character", f"You said: {heard}.") in said
    assert not p.errors()


async def test_speaking_over_the_answer_cuts_it_and_the_model_keeps_what_the_page_played(late: Question) -> None:
    config = RealtimeServerConfig(api_key=KEY)
    async with OpenAIRealtimeServer(config) as api, realtime_server(api) as server:
        async with chromium(late) as browser:
            p = await open_page(browser, server.http_url + "/")
            await p.wait("facecast.status === 'connected'")
            await p.page.check("#handsfree")
            await p.wait("facecast.welcome !== null && facecast.welcome.turns === 'server'", timeout_s=10)
            await p.page.fill("#text", LONG_TEXT)  # typed: the model answers it (a long answer)
            await p.page.press("#text", "Enter")
            await p.wait("facecast.log.some(e => e.type === 'clear_buffer')", timeout_s=30)
            await p.wait("facecast.utterances.length === 2", timeout_s=40)
            state = await p.state("return {u: facecast.utterances, log: facecast.log}")
            await p.page.close()
        truncates = [t for c in api.connections for t in c.truncates]
    first, second = state["u"]
    assert first["interrupted"] and 0 < first["position"] < first["samples"]
    finished = next(e for e in state["log"] if e["type"] == "playback_finished" and e["utterance"] == first["id"])
    [truncate] = truncates
    page_ms = finished["position"] / first["rate"] * 1000
    # the server's estimate (from the page's playback_started) and the page's own position agree
    assert abs(truncate["audio_end_ms"] - page_ms) < 400, (truncate, page_ms)
    check_utterance_played(second)
    assert not p.errors()
