"""The WebRTC transport against the real server on loopback, with a real aiortc peer as the client (no browser):
signalling and its refusals, a typed and a spoken turn with Opus audio and face frames on the data channel,
barge-in stopping the track, and a new peer after a dropped one. The browser page's own test is
tests/web/test_page_webrtc.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("aiortc", reason="the WebRTC transport needs the webrtc extra")

from tests.conftest import LIGHT  # noqa: E402
from tests.http.rtc_client import RtcClient  # noqa: E402

from facecast.audio import read_audio  # noqa: E402
from facecast.config import Settings  # noqa: E402
from facecast.face.phonetic import PhoneticAnimator  # noqa: E402
from facecast.http.rtc_audio import RATE, ReplyTrack, onset  # noqa: E402
from facecast.http.webrtc import OfferError, parse_offer  # noqa: E402
from facecast.llm.echo import EchoLLM  # noqa: E402
from facecast.server import BackgroundServer  # noqa: E402
from facecast.services import Services, make_stt  # noqa: E402
from facecast.tts.espeak import EspeakTTS  # noqa: E402

TOKEN = "a-long-enough-test-token-0123456789"
QUESTION = "Hello there, can you tell me the way to the old lighthouse by the sea?"


def services() -> Services:
    return Services(make_stt("pocketsphinx"), EchoLLM(), EspeakTTS(), PhoneticAnimator())


def settings(**changes: Any) -> Settings:
    return replace(Settings(**LIGHT), livelink=("off",), turn_detector="silence", **changes)


@pytest.fixture
async def server() -> AsyncIterator[BackgroundServer]:
    async with BackgroundServer(settings(), services()) as running:
        yield running


def recording() -> np.ndarray:
    """A real recording (LibriVox, via facecast.speechdata): "he was not an ill disposed young man"."""
    from facecast import speechdata

    clip = next(c for c in speechdata.clips("read") if c.name.endswith("0880"))
    pcm, rate = read_audio(clip.path)
    assert rate == 16000
    return pcm


async def finish(client: RtcClient, utterance: int) -> dict[str, Any]:
    """Wait for the utterance's end and for its audio to have played; returns its utterance_end."""
    await client.wait(lambda: any(m["utterance"] == utterance for m in client.of_type("utterance_end")), 30)
    end = next(m for m in client.of_type("utterance_end") if m["utterance"] == utterance)
    await asyncio.sleep(end["samples"] / RATE + 0.4)
    return end


# -- pure parts -------------------------------------------------------------------------------------------------


def test_onset_finds_the_first_voiced_sample() -> None:
    pcm = np.zeros(100, np.int16)
    assert onset(pcm) is None
    pcm[37] = 700  # 700 / 32768 = 0.021 >= 0.02
    pcm[60] = 20000
    assert onset(pcm) == 37
    assert onset(pcm.astype(np.float32) / 32768) == 37


async def test_reply_track_paces_frames_and_clear_drops_queued_audio() -> None:
    now = [100.0]
    onsets: list[tuple[int, int]] = []
    track = ReplyTrack(on_onset=lambda u, s: onsets.append((u, s)), clock=lambda: now[0])
    track.push(1, 0, np.concatenate([np.zeros(500, np.int16), np.full(2000, 3000, np.int16)]))
    assert onsets == [(1, 500)]
    first = await track.recv()
    assert first.pts == 0 and first.samples == 960 and first.sample_rate == RATE
    samples = first.to_ndarray()[0]
    assert not samples[:500].any() and (samples[500:] == 3000).all()
    assert track.playouts[1].onset_played_at == pytest.approx(100.0 + 500 / RATE)
    now[0] += 0.02
    second = await track.recv()
    assert second.pts == 960 and (second.to_ndarray()[0] == 3000).all()
    track.push(2, 0, np.full(960, 5, np.int16))
    assert track.clear(1) == 2500 - 1920  # utterance 1's rest; utterance 2 stays
    now[0] += 0.02
    assert (await track.recv()).to_ndarray()[0].tolist() == [5] * 960
    now[0] += 0.02
    assert not (await track.recv()).to_ndarray().any()  # nothing queued: silence


def test_parse_offer_refuses_what_is_not_an_offer() -> None:
    sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    good = parse_offer(json.dumps({"sdp": sdp, "type": "offer", "hello": {"character": ""}}).encode())
    hello = json.loads(good.hello)
    assert hello["audio"] == {"rate": 48000, "channels": 1} and hello["mic"] == {"rate": 16000, "channels": 1}
    cases = {
        b"not json": "bad_offer",
        b"[1, 2]": "bad_offer",
        json.dumps({"sdp": "hello"}).encode(): "bad_offer",
        json.dumps({"sdp": sdp, "type": "answer"}).encode(): "bad_offer",
        json.dumps({"sdp": "v=0\r\nm=audio 9 X 0\r\n"}).encode(): "bad_offer",  # no data channel
        json.dumps({"sdp": sdp, "hello": []}).encode(): "bad_message",
        json.dumps({"sdp": sdp, "hello": {"workflow": "dance"}}).encode(): "bad_message",
        json.dumps({"sdp": sdp, "hello": {"version": 7}}).encode(): "bad_version",
        b"[" * 100000: "bad_offer",
    }
    for body, code in cases.items():
        with pytest.raises(OfferError) as caught:
            parse_offer(body)
        assert (caught.value.status, caught.value.code) == (400, code), body[:40]


# -- against the server ------------------------------------------------------------------------------------------


async def test_typed_turn_plays_on_the_track_and_face_follows_the_heard_onset(server: BackgroundServer) -> None:
    client = RtcClient(server.http_url)
    try:
        await client.connect()
        [welcome] = client.of_type("welcome")
        assert welcome["audio"] == {"rate": 48000, "channels": 1} and welcome["acks"] is True
        client.send({"type": "text", "text": QUESTION})
        end = await finish(client, 1)
        heard = client.heard[1]
        assert heard.onset is not None and heard.onset_heard_at is not None
        # the reply came as Opus audio on the track: about as much voiced audio as the utterance has
        assert heard.voiced_samples > 0.3 * end["samples"]
        # every face frame came on the data channel, and only after the client acknowledged the heard onset
        assert heard.face_frames == end["frames"] > 0
        assert heard.faces_before_onset == 0
        types = [m["type"] for m in client.messages]
        assert types.index("audio_onset") < types.index("utterance_end")
        [timing] = client.of_type("timing")
        assert "engine_ack" in timing["stages"]
        peer = next(iter(server_peers(server)))
        playout = peer.track.playouts[1]
        assert playout.played == end["samples"] and playout.onset == heard.onset
    finally:
        await client.close()


def server_peers(server: BackgroundServer) -> set[Any]:
    peers: set[Any] = server.state.webrtc.peers
    return peers


async def test_spoken_turn_then_barge_in_stops_the_reply_track(server: BackgroundServer) -> None:
    speech = recording()
    client = RtcClient(server.http_url)
    try:
        await client.connect()
        client.mic.play(speech)
        await client.wait(lambda: any(m["final"] for m in client.of_type("transcript")), 30)
        [final] = [m for m in client.of_type("transcript") if m["final"]]
        assert final["text"].strip() and not final.get("typed")
        await client.wait(lambda: 1 in client.heard and client.heard[1].onset_heard_at is not None, 20)
        await client.wait(lambda: client.heard[1].face_frames > 0, 5)
        client.mic.play(speech)  # the player talks over the character
        await client.wait(lambda: bool(client.of_type("clear_buffer")), 20)
        [clear] = client.of_type("clear_buffer")
        assert clear == {"type": "clear_buffer", "utterance": 1, "reason": "barge_in"}
        peer = next(iter(server_peers(server)))
        assert peer.track.queued_samples == 0  # the server stopped the track's audio
        await asyncio.sleep(0.3)  # what was already on the wire and in the jitter buffer
        before = client.heard[1].voiced_samples
        await asyncio.sleep(0.5)
        assert client.heard[1].voiced_samples == before  # silence since
    finally:
        await client.close()


async def test_a_new_peer_after_a_dropped_one_gets_a_fresh_session(server: BackgroundServer) -> None:
    first = RtcClient(server.http_url)
    await first.connect()
    assert len(server.state.sessions) == 1
    await first.close()  # dropped: no bye
    for _ in range(200):  # the server sees the peer go (DTLS close) and ends its session
        if not server.state.sessions:
            break
        await asyncio.sleep(0.05)
    assert not server.state.sessions and not server_peers(server)
    second = RtcClient(server.http_url)
    try:
        await second.connect()
        second.send({"type": "text", "text": "Are you still there?"})
        end = await finish(second, 1)  # a fresh session: utterances count from 1 again
        assert second.heard[1].face_frames == end["frames"] > 0
    finally:
        await second.close()


async def test_bad_offers_are_refused_and_change_nothing(server: BackgroundServer) -> None:
    import httpx

    url = f"{server.http_url}/webrtc/offer"
    client = RtcClient(server.http_url, hello={"character": "nobody"})
    try:
        response = await client.offer()
        assert response.status_code == 400
        assert response.json()["code"] == "bad_message" and "nobody" in response.json()["message"]
    finally:
        await client.close()
    async with httpx.AsyncClient() as http:
        response = await http.post(url, content=b"{not json")
        assert response.status_code == 400 and response.json()["code"] == "bad_offer"
        garbage = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
        response = await http.post(url, json={"sdp": garbage, "type": "offer"})
        assert response.status_code == 400 and response.json()["code"] == "bad_offer"
        response = await http.post(url, content=b"x" * 70000)
        assert response.status_code == 400
    assert not server.state.sessions and not server_peers(server)
    good = RtcClient(server.http_url)
    try:
        await good.connect()  # the server is unchanged: the next offer is answered
    finally:
        await good.close()


async def test_token_origin_and_session_limits_apply_to_offers() -> None:
    async with BackgroundServer(settings(token=TOKEN, max_sessions=1), services()) as running:
        client = RtcClient(running.http_url)
        try:
            assert (await client.offer()).status_code == 401
        finally:
            await client.close()
        client = RtcClient(running.http_url, headers={"Authorization": "Bearer wrong"})
        try:
            assert (await client.offer()).status_code == 401
        finally:
            await client.close()
        evil = {"Authorization": f"Bearer {TOKEN}", "Origin": "http://evil.example"}
        client = RtcClient(running.http_url, headers=evil)
        try:
            response = await client.offer()
            assert response.status_code == 403 and response.json()["code"] == "bad_origin"
        finally:
            await client.close()
        assert not running.state.sessions
        first = RtcClient(running.http_url, headers={"Authorization": f"Bearer {TOKEN}"})
        second = RtcClient(running.http_url, headers={"Authorization": f"Bearer {TOKEN}"})
        try:
            await first.connect()
            response = await second.offer()
            assert response.status_code == 503 and response.json()["code"] == "busy"
            assert len(running.state.sessions) == 1
        finally:
            await first.close()
            await second.close()


def test_ice_servers_must_be_stun_urls() -> None:
    from facecast.errors import ConfigError
    from facecast.http.app import AppState, create_app

    with pytest.raises(ConfigError, match="webrtc_ice_servers"):
        create_app(AppState(settings(webrtc_ice_servers=("turn:relay.example:3478",)), services()))
    create_app(AppState(settings(webrtc_ice_servers=("stun:stun.example.org:3478",)), services()))
