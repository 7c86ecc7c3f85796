"""End to end over real sockets: a real server, the reference engine client, real Live Link UDP packets."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
from websockets.asyncio.client import connect

from facecast.engine.sim import EngineSim, SimConfig
from facecast.face.arkit import INDEX
from facecast.protocol import engine as proto
from facecast.types import frames_for_samples

from .conftest import LiveServer


async def test_health(live_server: LiveServer) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(live_server.http_url + "/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["services"]["llm"] == "echo"


async def test_text_turn_streams_audio_then_face_after_ack_and_livelink(live_server: LiveServer) -> None:
    config = SimConfig(url=live_server.ws_url, rate=24000, livelink_port=live_server.livelink_port, subject="Ada")
    async with EngineSim(config) as sim:
        assert sim.welcome["livelink"]["subject"] == "Ada"
        report = await sim.say_text("Maybe we should buy a map.")
    assert not report.errors
    assert report.transcript == "Maybe we should buy a map."
    [utt] = report.utterances
    assert utt.text == "You said: Maybe we should buy a map."
    assert utt.face_before_ack == 0
    # the audio and the face of the utterance cover the same span on one clock
    assert utt.face_frames == frames_for_samples(utt.samples, 24000)
    audio = np.concatenate(utt.audio)
    assert np.abs(audio).max() > 0.1 and len(audio) / 24000 > 1.0
    face = np.concatenate(utt.face)
    assert face[:, INDEX["JawOpen"]].max() > 0.2  # the mouth moves...
    assert face[:, INDEX["MouthClose"]].max() > 0.3  # ...and closes on the m/b/p
    # Live Link carried this utterance's frames (a pacer that falls behind on a loaded machine skips late
    # frames rather than bunching them, so not every frame is required; their timing is in the benchmark)
    assert len(utt.livelink_error) >= 0.5 * utt.face_frames


async def test_malformed_messages_do_not_break_the_server(live_server: LiveServer) -> None:
    async with connect(live_server.ws_url) as ws:
        await ws.send("not json at all")
        assert json.loads(await ws.recv())["code"] == "bad_json"
        await ws.send(b"\x00" * 3)
        assert json.loads(await ws.recv())["code"] == "bad_binary"
        await ws.send(json.dumps({"type": "hello", "audio": {"rate": 7}}))
        assert json.loads(await ws.recv())["code"] == "bad_audio_format"
        await ws.send(json.dumps({"type": "hello"}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.send(json.dumps({"type": "text", "text": "x" * (proto.MAX_TYPED_TEXT + 1)}))
        assert json.loads(await ws.recv())["code"] == "too_large"
    async with EngineSim(SimConfig(url=live_server.ws_url)) as sim:
        report = await sim.say_text("still there?")
    assert report.utterances and report.utterances[0].ended


async def test_client_disconnect_mid_utterance_leaves_no_session(live_server: LiveServer) -> None:
    async with connect(live_server.ws_url) as ws:
        await ws.send(json.dumps({"type": "hello"}))
        await ws.recv()
        await ws.send(json.dumps({"type": "text", "text": "Tell me a long story about the sea and the boats."}))
        while True:
            message = await ws.recv()
            if isinstance(message, bytes):
                break  # first audio: leave mid-utterance
    for _ in range(200):
        if not live_server.state.sessions:
            break
        await asyncio.sleep(0.01)
    assert not live_server.state.sessions
    if live_server.state.livelink is not None:  # its subject is free, lingering on the idle face (not speaking)
        assert live_server.state.livelink.owners == {}
        assert not any(c.speaking for c in live_server.state.livelink.pacer.subjects)


async def test_concurrent_sessions_get_their_own_replies(live_server: LiveServer) -> None:
    async def one(text: str, subject: str) -> str:
        async with EngineSim(SimConfig(url=live_server.ws_url, subject=subject)) as sim:
            report = await sim.say_text(text)
        return report.utterances[0].text

    results = await asyncio.gather(one("apples", "A"), one("bananas", "B"), one("cherries", "C"))
    assert results == ["You said: apples.", "You said: bananas.", "You said: cherries."]
