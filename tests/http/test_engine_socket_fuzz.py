"""Hypothesis against the live engine WebSocket (``/ws/engine`` of the real server on a loopback port).

Every bad frame (random bytes or text, binary frames with valid headers and wrong kinds, versions or sizes,
JSON of the wrong shape or types, unsupported sample rates, messages before ``hello`` or out of order) is
answered with the error code docs/protocol.md gives for it; the session keeps serving (a ``ping`` after each
frame is answered, so nothing hangs), no session is left behind, and a fresh connection still completes a
whole turn afterwards.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tests.conftest import LIGHT
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from facecast.config import Settings
from facecast.engine.sim import EngineSim, SimConfig
from facecast.face.phonetic import PhoneticAnimator
from facecast.llm.echo import EchoLLM
from facecast.protocol import engine as proto
from facecast.server import BackgroundServer
from facecast.services import Services, make_stt
from facecast.tts.espeak import EspeakTTS

RECV_TIMEOUT = 10.0
"""Longest wait for any answer: a hang detector, not a performance bound."""
VALID = "a valid message"


@pytest.fixture
async def server() -> AsyncIterator[BackgroundServer]:
    """No audio-driven face: the puppet and lip-sync workflows answer ``bad_config``."""
    services = Services(make_stt("pocketsphinx"), EchoLLM(), EspeakTTS(), PhoneticAnimator())
    async with BackgroundServer(replace(Settings(**LIGHT), livelink=("off",)), services) as running:
        yield running


# -- what the server must answer: a model of docs/protocol.md ---------------------------------------


def expected_reply(frame: str | bytes, hello: proto.Hello | None) -> tuple[str | None, proto.Hello | None]:
    """The error code ``frame`` must be answered with (None: nothing; ``"welcome"``), and the session's hello after.

    ``VALID`` for a message that does something (typed text, microphone audio, ``bye``...): not a bad frame.
    """
    try:
        message = proto.decode_client_text(frame) if isinstance(frame, str) else proto.decode_binary(frame)
    except proto.ProtocolError as exc:
        return exc.code, hello
    if isinstance(message, proto.Ping):
        return None, hello
    if isinstance(message, proto.Hello):
        if hello is not None:
            return "out_of_order", hello
        return ("bad_config", None) if message.workflow in ("puppet", "lipsync") else ("welcome", message)
    if hello is None:
        return (VALID if isinstance(message, proto.Bye) else "no_hello"), hello
    if isinstance(message, proto.AudioPacket | proto.FacePacket):
        return "bad_direction", hello
    if isinstance(message, proto.MicAudio):
        return ("bad_input" if len(message.pcm) % (2 * hello.mic.channels) else VALID), hello
    if isinstance(message, proto.PlaybackStarted):
        return "out_of_order", hello  # no utterance is being sent
    if isinstance(message, proto.EndOfSpeech):
        return ("no_speech" if hello.turns == "client" else None), hello
    if isinstance(message, proto.PlaybackFinished | proto.Interrupt):
        return None, hello  # nothing is playing: nothing to do
    return VALID, hello


# -- bad frames -------------------------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
_format = _json | st.fixed_dictionaries(
    {}, optional={"rate": _json | st.sampled_from([7, 16000, 44100, 192000]), "channels": _json | st.integers(0, 3)}
)
_FIELDS = {
    "version": _json | st.integers(0, 2),
    "audio": _format,
    "mic": _format,
    "face": _json,
    "acks": _json,
    "turns": _json | st.sampled_from(["server", "client", "both"]),
    "workflow": _json | st.sampled_from(["conversation", "say", "puppet", "lipsync", "karaoke"]),
    "subject": _json | st.just("s" * 300),
    "text": _json | st.just("x" * (proto.MAX_TYPED_TEXT + 1)) | st.just("   "),
    "utterance": _json | st.integers(-1, 2**33),
    "position": _json | st.integers(-1, 2**64),
    "at": _json,
    "interrupted": _json,
    "id": _json,
}
_TYPES = (
    "hello",
    "text",
    "end_of_speech",
    "playback_started",
    "playback_finished",
    "interrupt",
    "ping",
    "welcome",
    "error",
    "bogus",
    "",
)
wrong_schema = st.builds(
    lambda kind, fields: json.dumps({"type": kind, **fields}),
    st.sampled_from(_TYPES) | _json,
    st.fixed_dictionaries({}, optional=_FIELDS),
)
_rates = st.fixed_dictionaries(
    {"rate": st.sampled_from([16000, 24000, 48000, 7, 192000])}, optional={"channels": st.integers(0, 3)}
)
_HELLO = {  # mostly well-formed, so that the later checks (rates, workflow) are reached too
    "version": st.sampled_from([1, 1, 2]),
    "audio": _rates,
    "mic": _rates,
    "workflow": st.sampled_from(["conversation", "say", "puppet", "lipsync", "karaoke"]),
    "turns": st.sampled_from(["server", "client", "both"]),
    "face": st.booleans() | st.just("yes"),
    "subject": st.sampled_from(["Ada", "s" * 300]),
}
hellos = st.builds(lambda fields: json.dumps({"type": "hello", **fields}), st.fixed_dictionaries({}, optional=_HELLO))


@st.composite
def headed_binary(draw: st.DrawFn) -> bytes:
    """A frame with a plausible 16-byte header (any kind) and a payload that may not fit it."""
    kind = draw(st.sampled_from([1, 2, 3, 0, 9]))
    version = draw(st.sampled_from([1, 1, 1, 0, 2]))
    if kind == 3:
        count, width = draw(st.integers(0, 4)), draw(st.sampled_from([68, 68, 0, 69]))
        header = proto.FACE_HEADER.pack(kind, version, 0, draw(st.integers(0, 2**32 - 1)), 0, count, width)
        payload = bytes(4 * count * width)
    else:
        header = proto.HEADER.pack(kind, version, 0, draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**64 - 1)))
        payload = draw(st.binary(max_size=33))
    cut = draw(st.just(0) | st.integers(-len(header) - len(payload), 3))
    data = header + payload
    return data[:cut] if cut < 0 else data + bytes(cut)


out_of_order = st.one_of(  # well-formed, but for an utterance that is not being sent, or before hello
    st.builds(lambda u: json.dumps({"type": "playback_started", "utterance": u}), st.integers(0, 2**32 - 1)),
    st.builds(
        lambda u, p: json.dumps({"type": "playback_finished", "utterance": u, "position": p}),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**63 - 1),
    ),
    st.sampled_from(
        [
            proto.encode_mic(0, bytes(6)),
            json.dumps({"type": "end_of_speech"}),
            json.dumps({"type": "interrupt"}),
            json.dumps({"type": "hello"}),
            json.dumps({"type": "ping"}),
        ]
    ),
)
bad_frames = st.one_of(
    st.binary(max_size=64), st.text(max_size=40), wrong_schema, hellos, headed_binary(), out_of_order
)


# -- the exchange -----------------------------------------------------------------------------------


async def _answers(ws: ClientConnection, barrier: int) -> list[dict[str, Any]]:
    """Send ``ping`` and return what the server sent before its ``pong``: its answers to the frames before."""
    await ws.send(json.dumps({"type": "ping", "id": barrier}))
    answers = []
    while True:
        raw = await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)
        assert isinstance(raw, str), "no audio or face for bad frames"
        message = proto.decode_server_text(raw)
        if message == {"type": "pong", "id": barrier}:
            return answers
        answers.append(message)


async def _exchange(url: str, frames: list[tuple[str | bytes, str | None]]) -> None:
    async with connect(url, max_size=None, ping_interval=None) as ws:
        for barrier, (frame, code) in enumerate(frames, 1):
            await ws.send(frame)
            answers = [a for a in await _answers(ws, barrier) if a["type"] != "pong"]  # pong: the frame was a ping
            if code == "welcome":
                assert [a["type"] for a in answers] == ["welcome"], (frame, answers)
            else:
                assert [(a["type"], a.get("code")) for a in answers] == [("error", code)] * bool(code), (frame, answers)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(
    greet=st.sampled_from([None, {"turns": "server"}, {"turns": "client"}, {"mic": {"rate": 8000, "channels": 2}}]),
    frames=st.lists(bad_frames, min_size=1, max_size=5),
)
def _fuzz(url: str, greet: dict[str, Any] | None, frames: list[str | bytes]) -> None:
    hello: proto.Hello | None = None
    planned = []
    for frame in [json.dumps({"type": "hello", **(greet or {})})] * bool(greet) + frames:
        code, hello = expected_reply(frame, hello)
        assume(code != VALID)
        planned.append((frame, code))
    asyncio.run(_exchange(url, planned))


async def _still_serving(server: BackgroundServer) -> None:
    """No session is left behind, and a fresh connection completes a whole turn."""
    for _ in range(500):
        if not server.state.sessions:
            break
        await asyncio.sleep(0.01)
    assert not server.state.sessions
    async with EngineSim(SimConfig(url=server.ws_url)) as sim:
        report = await asyncio.wait_for(sim.say_text("Still there?"), 60)
    [utterance] = report.utterances
    assert utterance.ended and utterance.text == "You said: Still there?" and not report.errors


async def test_bad_frames_are_answered_and_change_nothing(server: BackgroundServer) -> None:
    await asyncio.to_thread(_fuzz, server.ws_url)
    await _still_serving(server)


async def _answer_or_close(url: str, frame: str | bytes, *, text: bool | None = None) -> str | int | None:
    """The error code ``frame`` is answered with after ``hello`` (the session still serving), or the close code
    if the socket was closed (None: it was reset before the close frame could be read)."""
    async with connect(url, max_size=None, ping_interval=None) as ws:
        await ws.send(json.dumps({"type": "hello"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))["type"] == "welcome"
        try:
            if text is None and len(frame) > proto.MAX_WIRE_FRAME:
                # only the header of a frame this large: the server must refuse it unread, and the client must not
                # be writing megabytes while the server closes (websockets then fails in the client's close)
                ws.transport.write(struct.pack("!BBQ4x", 0x82, 0x80 | 127, len(frame)))
            else:
                await ws.send(frame, text=text)
            answer = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))  # no send to a closing socket
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
        assert answer["type"] == "error" and await _answers(ws, 1) == []
        return str(answer["code"])


async def test_size_limits_and_invalid_utf8(server: BackgroundServer, caplog: pytest.LogCaptureFixture) -> None:
    """Over the limits: ``too_large`` and the session continues. Frames the WebSocket layer does not read at all
    (over 4 MiB) and text frames that are not UTF-8 close the connection (1009, 1007: RFC 6455), with one
    log line and no ERROR traceback (a hostile client must not fill the log)."""
    caplog.set_level(logging.INFO)
    url = server.ws_url
    assert await _answer_or_close(url, json.dumps({"type": "ping", "pad": "x" * proto.MAX_TEXT_FRAME})) == "too_large"
    assert await _answer_or_close(url, json.dumps({"type": "text", "text": "x" * 5000})) == "too_large"
    assert await _answer_or_close(url, proto.encode_mic(0, bytes(proto.MAX_BINARY_FRAME))) == "too_large"
    assert await _answer_or_close(url, proto.encode_mic(0, bytes(2 * proto.MAX_BINARY_FRAME))) == "too_large"
    assert await _answer_or_close(url, proto.encode_mic(0, bytes(proto.MAX_WIRE_FRAME))) == 1009
    assert await _answer_or_close(url, b'{"type": "ping", "x": "\xff\xfe"}', text=True) == 1007
    assert await _answer_or_close(url, struct.pack("<BBHIQ", 1, 1, 0, 0, 0) + b"\x00") == "bad_binary"
    await _still_serving(server)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert [r.getMessage() for r in caplog.records if "not UTF-8" in r.getMessage()][0].endswith("closed (1007)")
