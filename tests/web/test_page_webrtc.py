"""The browser page over WebRTC (``?transport=webrtc``): real headless Chromium against the real server with
aiortc on loopback. Chromium's fake microphone plays a REAL recording (LibriVox, via
:mod:`facecast.speechdata`) on the page's echo-cancelled microphone track; the reply comes back as an Opus
track and the face frames on the data channel. The page's measured audio/face sync is saved to
``test-artifacts/webrtc-sync.json``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from tests.web.conftest import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LONG_TEXT,
    TAIL_SILENCE_S,
    Question,
    check_utterance_played,
    light_services,
    light_settings,
    open_page,
    require_browser,
    save_artifact,
)

from facecast.audio import read_audio, write_wav
from facecast.server import BackgroundServer

if TYPE_CHECKING:
    from playwright.async_api import Browser

pytest.importorskip("aiortc", reason="the WebRTC transport needs the webrtc extra")

RTC_ARGS = ["--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns"]


def spoken(path: Path, lead_s: float) -> Question:
    """A real recording ("he was not an ill disposed young man") after ``lead_s`` of silence."""
    from facecast import speechdata

    clip = next(c for c in speechdata.clips("read") if c.name.endswith("0880"))
    pcm, rate = read_audio(clip.path)
    silence = np.zeros(int(lead_s * rate), np.float32)
    write_wav(path, np.concatenate([silence, pcm, np.zeros(int(TAIL_SILENCE_S * rate), np.float32)]), rate)
    return Question(path, len(pcm) / rate, lead_s)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Question:
    require_browser()
    return spoken(tmp_path_factory.mktemp("mic") / "recording.wav", 1.0)


@pytest.fixture(scope="module")
def late_recording(tmp_path_factory: pytest.TempPathFactory) -> Question:
    require_browser()
    return spoken(tmp_path_factory.mktemp("mic") / "late.wav", 3.0)


@pytest.fixture(scope="module")
def silence(tmp_path_factory: pytest.TempPathFactory) -> Question:
    require_browser()
    path = tmp_path_factory.mktemp("mic") / "silence.wav"
    write_wav(path, np.zeros(16000 * 5, np.float32), 16000)
    return Question(path, 0.0)


@pytest.fixture
async def server() -> AsyncIterator[BackgroundServer]:
    async with BackgroundServer(light_settings(turn_detector="silence"), light_services()) as running:
        yield running


@asynccontextmanager
async def chromium(question: Question) -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    args = [*CHROMIUM_ARGS, *RTC_ARGS, f"--use-file-for-fake-audio-capture={question.path}"]
    args.append("--use-fake-ui-for-media-stream")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            yield browser
        finally:
            await browser.close()


STATE = """return {u: facecast.utterances, log: facecast.log, transcript: facecast.transcript,
    sync: facecast.sync, stats: facecast.syncStats(), welcome: facecast.welcome, sessions: facecast.sessions,
    transport: facecast.transport, counters: facecast.counters, samples: window.__samples || []}"""


def faces_after_ack(log: list[dict[str, Any]], utterance: int) -> int:
    """Every face frame of ``utterance`` arrived after the page acknowledged hearing it; returns their count."""
    ack = next(
        i
        for i, e in enumerate(log)
        if e["dir"] == "out" and e["type"] == "playback_started" and e["utterance"] == utterance
    )
    faces = [i for i, e in enumerate(log) if e["type"] == "face" and e["utterance"] == utterance]
    assert faces and ack < faces[0]
    assert not any(e["type"] == "audio" for e in log)  # the audio came on the track, not the channel
    return sum(log[i]["count"] for i in faces)


async def test_spoken_conversation_over_webrtc(recording: Question, server: BackgroundServer) -> None:
    async with chromium(recording) as browser:
        p = await open_page(browser, server.http_url + "/?transport=webrtc")
        await p.wait("facecast.status === 'connected'", timeout_s=15)
        await p.page.evaluate("""() => { window.__samples = []; setInterval(() => window.__samples.push(
            {t: performance.now(), mouth: facecast.mouthOpen, source: facecast.faceSource}), 20); }""")
        await p.wait("facecast.utterances.length >= 1 && facecast.utterances[0].endTime", timeout_s=40)
        await p.page.wait_for_timeout(300)
        state = await p.state(STATE)
        await p.page.close()
    assert state["transport"] == "webrtc" and state["welcome"]["audio"] == {"rate": 48000, "channels": 1}
    assert state["welcome"]["turns"] == "server"
    heard = [t["text"] for t in state["transcript"] if t["who"] == "player" and not t["typed"]]
    assert heard and heard[0].strip()  # the recording, heard through the microphone track
    [u] = state["u"]
    check_utterance_played(u)  # the page's clock ran over all of the utterance's audio
    end = next(e for e in state["log"] if e["type"] == "utterance_end")
    assert faces_after_ack(state["log"], 1) == end["frames"] == u["framesReceived"] > 0
    onset = next(e for e in state["log"] if e["type"] == "audio_onset")
    assert onset["utterance"] == 1 and 0 <= onset["onset"] < end["samples"]
    # the mouth moved while the reply played, on the clock of the audio heard from the track
    started = next(e["at"] for e in state["log"] if e["type"] == "playback_started")
    during = [s["mouth"] for s in state["samples"] if s["t"] >= started + 100 and s["source"] == "live"]
    assert during and max(during) > 0.3
    # the sync the page measured: one entry per face packet, against the heard audio's playout
    packets = sum(1 for e in state["log"] if e["type"] == "face")
    assert state["stats"]["packets"] == len(state["sync"]) == packets
    save_artifact("webrtc-sync.json", json.dumps({"stats": state["stats"], "sync": state["sync"]}, indent=1))
    assert not p.errors()


async def test_barge_in_over_webrtc_clears_the_reply(late_recording: Question, server: BackgroundServer) -> None:
    async with chromium(late_recording) as browser:
        p = await open_page(browser, server.http_url + "/?transport=webrtc")
        await p.wait("facecast.status === 'connected'", timeout_s=15)
        await p.page.fill("#text", LONG_TEXT)
        await p.page.press("#text", "Enter")
        await p.wait("facecast.acks.some(a => a.type === 'playback_started')", timeout_s=15)
        await p.wait("facecast.log.some(e => e.type === 'clear_buffer')", timeout_s=20)
        await p.wait("facecast.utterances.length === 2 && facecast.utterances[1].endTime", timeout_s=40)
        state = await p.state(STATE)
        await p.page.close()
    log = state["log"]
    clear = next(e for e in log if e["type"] == "clear_buffer")
    assert clear["utterance"] == 1 and clear["reason"] == "barge_in"
    first, second = state["u"]
    assert first["id"] == 1 and first["interrupted"] and first["started"]
    finished = next(e for e in log if e["type"] == "playback_finished" and e["utterance"] == 1)
    assert finished["interrupted"] is True
    cleared = log.index(clear)
    assert not any(e["type"] == "face" and e["utterance"] == 1 for e in log[cleared:])
    heard = [t["text"] for t in state["transcript"] if t["who"] == "player" and not t["typed"]]
    assert heard and heard[0].strip()
    check_utterance_played(second)
    assert not p.errors()


async def test_page_reconnects_after_the_peer_connection_drops(silence: Question, server: BackgroundServer) -> None:
    async with chromium(silence) as browser:
        p = await open_page(browser, server.http_url + "/?transport=webrtc")
        await p.wait("facecast.status === 'connected' && facecast.sessions === 1", timeout_s=15)
        [peer] = server.state.webrtc.peers
        peer.close()  # the peer connection drops (as when the network goes)
        await p.wait("facecast.status !== 'connected'", timeout_s=15)
        await p.wait("facecast.status === 'connected' && facecast.sessions === 2", timeout_s=20)
        await p.page.fill("#text", "Are you back?")
        await p.page.press("#text", "Enter")
        await p.wait("facecast.utterances.some(u => u.endTime && !u.interrupted)", timeout_s=30)
        state = await p.state(STATE)
        await p.page.close()
    assert len(server.state.sessions) <= 1
    done = [u for u in state["u"] if not u["interrupted"]]
    assert done and done[-1]["framesReceived"] > 0
    assert [t["text"] for t in state["transcript"] if t["who"] == "character"][-1] == "You said: Are you back?"
    assert not p.errors(lambda m: "WebRTC" in m or "net::" in m)


async def test_page_without_the_token_is_told_so_over_webrtc(silence: Question) -> None:
    token = "a-long-enough-test-token-0123456789"
    async with (
        BackgroundServer(light_settings(token=token), light_services()) as running,
        chromium(silence) as browser,
    ):
        p = await open_page(browser, running.http_url + "/?transport=webrtc")
        await p.wait("facecast.status === 'offline'", timeout_s=15)
        detail = await p.state("return facecast.statusDetail")
        assert "access token" in detail and not running.state.sessions
        await p.page.goto(f"{running.http_url}/?transport=webrtc&token={token}")
        await p.wait("window.facecast && facecast.status === 'connected'", timeout_s=15)
        assert len(running.state.sessions) == 1
        await p.page.close()
    assert not p.errors(lambda m: "401" in m)
