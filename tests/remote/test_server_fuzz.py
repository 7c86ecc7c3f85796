"""Hypothesis against live ``facecast serve`` sockets (one real subprocess per role).

Every bad frame (random bytes or text, binary frames with valid headers but wrong sizes, versions, rates or
samples, JSON of the wrong shape or types, lone surrogates, messages before ``hello`` or for requests that
do not exist) is answered with the error code docs/protocol.md gives for it; the connection keeps serving
(a ``ping`` after each frame is answered, so nothing hangs), the process stays up, and fresh connections
still complete normal requests afterwards.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from facecast.protocol import service as sp
from facecast.remote.client import ClientOptions, make_remote
from facecast.types import AudioChunk, ChatMessage, SpeechChunk, frames_for_samples

from .conftest import Service, facecast_serve

RECV_TIMEOUT = 10.0
"""Longest wait for any answer: a hang detector, not a performance bound."""
START = "starts a request"
REQUESTS: dict[str, type] = {"stt": sp.Transcribe, "llm": sp.Chat, "tts": sp.Synthesize, "face": sp.Animate}


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Service]]:
    started: dict[str, Service] = {}
    try:
        for role in sp.ROLES:
            started[role] = facecast_serve(role)
        yield started
    finally:
        for service in started.values():
            service.kill()


# -- what the server must answer: a model of docs/protocol.md ---------------------------------------


def expected_reply(frame: str | bytes, role: str, greeted: bool) -> tuple[str | None, bool]:
    """The error code ``frame`` must be answered with (None: no error), and whether ``hello`` is done after it.

    ``START`` for a valid request of the server's own role (not a bad frame). No request is ever open.
    """
    try:
        message = sp.decode_client(frame) if isinstance(frame, str) else sp.decode_binary(frame)
    except sp.ProtocolError as exc:
        return exc.code, greeted
    if isinstance(message, sp.Ping | sp.Pong):
        return None, greeted
    if isinstance(message, sp.Hello):
        return ("wrong_role", greeted) if message.role != role else (None, True)
    if not greeted:
        return "no_hello", greeted
    if isinstance(message, sp.AudioFrame | sp.FaceFrame):
        wrong_way = isinstance(message, sp.FaceFrame) or role in ("llm", "tts")
        return "bad_direction" if wrong_way else "unknown_request", True
    if isinstance(message, sp.Cancel):
        return None, True  # cancelling a request that already ended is normal (the cancel crossed its done)
    if isinstance(message, sp.End | sp.Timing):
        return "unknown_request", True
    return ("wrong_role" if not isinstance(message, REQUESTS[role]) else START), True


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
_FIELDS = {
    "id": _json | st.integers(-1, 2**33),
    "rate": _json | st.sampled_from([0, 1234, 16000, 22050, 96000]),
    "role": _json | st.sampled_from(sp.ROLES),
    "version": _json | st.integers(0, 3),
    "text": _json,
    "final": _json,
    "messages": _json
    | st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "robot", 3]), "content": _json}), max_size=2),
    "phonemes": _json | st.lists(st.lists(_json, max_size=4), max_size=3),
    "words": _json,
}
_TYPES = (
    "hello",
    "transcribe",
    "chat",
    "synthesize",
    "animate",
    "timing",
    "end",
    "cancel",
    "ping",
    "pong",
    "welcome",
    "done",
    "token",
    "error",
    "bogus",
    "",
)
wrong_schema = st.builds(
    lambda kind, fields: json.dumps({"type": kind, **fields}),
    st.sampled_from(_TYPES) | _json,
    st.fixed_dictionaries({}, optional=_FIELDS),
)
lone_surrogate = st.builds(
    lambda kind, s: json.dumps(
        {
            "type": kind,
            "id": 1,
            "rate": 16000,
            "text": s,
            "role": "llm",
            "messages": [{"role": "user", "content": s}],
            "phonemes": [[s, 0, 1]],
        }
    ),
    st.sampled_from(["synthesize", "chat", "timing"]),
    st.sampled_from(["\ud800", "a\udfffb", "\udc00\ud800"]),
)


@st.composite
def headed_binary(draw: st.DrawFn) -> bytes:
    """An audio or face frame with a plausible header and something wrong (or, rarely, nothing) after it."""
    ident = draw(st.sampled_from([0, 1, 7, 2**32 - 1]))
    version = draw(st.sampled_from([1, 1, 1, 0, 2]))
    count = draw(st.integers(0, 40))
    if draw(st.booleans()):
        rate = draw(st.sampled_from(sp.RATES) | st.integers(0, 2**32 - 1))
        values = draw(st.lists(st.floats(width=32), min_size=count, max_size=count))
        data = sp.AUDIO_HEADER.pack(1, version, 0, ident, draw(st.integers(0, 2**64 - 1)), rate, count)
        data += struct.pack(f"<{count}f", *values)
    else:
        width = draw(st.sampled_from([68, 68, 0, 67]))
        data = sp.FACE_HEADER.pack(2, version, 0, ident, draw(st.integers(0, 2**32 - 1)), count, width)
        data += np.zeros(count * width, "<f4").tobytes()
    cut = draw(st.just(0) | st.integers(-len(data), 8))
    return data[:cut] if cut < 0 else data + bytes(cut)


valid_before_hello = st.sampled_from(
    [
        sp.encode(sp.Transcribe(1, 16000)),
        sp.encode(sp.Chat(2, (ChatMessage("user", "hi"),))),
        sp.encode(sp.End(3)),
        sp.encode(sp.Cancel(4)),
        sp.encode(sp.Timing(5)),
        sp.encode_audio(6, AudioChunk(np.zeros(8, np.float32), 16000)),
        sp.encode(sp.Ping(1)),
    ]
)
unknown_ids = st.builds(
    lambda ident, kind: sp.encode(kind(ident)),
    st.integers(1, 2**32 - 1),
    st.sampled_from([sp.End, sp.Cancel, sp.Timing]),
) | st.builds(
    lambda ident: sp.encode_audio(ident, AudioChunk(np.full(4, 0.5, np.float32), 22050)), st.integers(1, 2**32 - 1)
)
hellos = st.builds(lambda role: sp.encode(sp.Hello(role)), st.sampled_from(sp.ROLES))
bad_frames = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=40),
    wrong_schema,
    lone_surrogate,
    headed_binary(),
    valid_before_hello,
    unknown_ids,
    hellos,
)


# -- the exchange -----------------------------------------------------------------------------------


async def _recv(ws: ClientConnection) -> Any:
    raw = await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)
    return sp.decode_server(raw) if isinstance(raw, str) else sp.decode_binary(raw)


async def _answers(ws: ClientConnection, barrier: int) -> list[Any]:
    """Send ``ping`` and return what the server sent before its ``pong``: its answers to the frames before."""
    await ws.send(sp.encode(sp.Ping(barrier)))
    answers = []
    while (message := await _recv(ws)) != sp.Pong(barrier):
        answers.append(message)
    return answers


async def _exchange(url: str, role: str, frames: list[tuple[str | bytes, str | None]]) -> None:
    async with connect(url, max_size=None, ping_interval=None) as ws:
        for barrier, (frame, code) in enumerate(frames, 1):
            await ws.send(frame)
            answers = await _answers(ws, barrier)
            errors = [a.code for a in answers if isinstance(a, sp.Error)]
            assert errors == ([code] if code else []), (frame, answers)
            assert all(isinstance(a, sp.Error | sp.Welcome | sp.Pong) for a in answers), answers  # pong: a ping


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(role=st.sampled_from(sp.ROLES), greet=st.booleans(), frames=st.lists(bad_frames, min_size=1, max_size=5))
def _fuzz(urls: dict[str, str], role: str, greet: bool, frames: list[str | bytes]) -> None:
    greeted, planned = False, []
    for frame in [sp.encode(sp.Hello(role))] * greet + frames:
        code, greeted = expected_reply(frame, role, greeted)
        assume(code != START)
        planned.append((frame, code))
    asyncio.run(_exchange(urls[role], role, planned))


async def _normal_request(role: str, url: str) -> None:
    """A normal request on a fresh connection completes with the right output."""
    client = make_remote(role, url, ClientOptions(heartbeat_timeout=RECV_TIMEOUT, stall_timeout=RECV_TIMEOUT))
    audio = AudioChunk(np.zeros(1600, np.float32), 16000)

    async def one(item: Any) -> AsyncIterator[Any]:
        yield item

    try:
        if role == "stt":
            assert [t.final async for t in client.transcribe(one(audio))][-1]
        elif role == "llm":
            assert "".join([t async for t in client.stream([ChatMessage("user", "hi")])]) == "You said: hi."
        elif role == "tts":
            assert sum([len(c.audio.pcm) async for c in client.synthesize("Hi.")]) > 1000
        else:
            frames = [f async for f in client.animate(one(SpeechChunk(audio)))]
            assert frames[-1].end == frames_for_samples(1600, 16000)
    finally:
        await client.aclose()


async def _still_serving(servers: dict[str, Service]) -> None:
    for role, service in servers.items():
        assert service.proc.poll() is None, f"the {role} server died: {''.join(service.output)}"
        await _normal_request(role, service.url)


async def test_bad_frames_are_answered_and_change_nothing(servers: dict[str, Service]) -> None:
    await asyncio.to_thread(_fuzz, {role: s.url for role, s in servers.items()})
    await _still_serving(servers)


async def _answer_or_close(url: str, frame: str | bytes, *, text: bool | None = None) -> str | int | None:
    """The error code ``frame`` is answered with (the connection still serving), or the close code if the server
    closed the connection (None: it was reset before the close frame could be read)."""
    async with connect(url, max_size=None, ping_interval=None) as ws:
        await ws.send(sp.encode(sp.Hello("stt")))
        assert isinstance(await _recv(ws), sp.Welcome)
        try:
            if text is None and len(frame) > 2**21:
                # only the header of a frame this large: the server must refuse it unread, and the client must not
                # be writing megabytes while the server closes (websockets then fails in the client's close)
                ws.transport.write(struct.pack("!BBQ4x", 0x82, 0x80 | 127, len(frame)))
            else:
                await ws.send(frame, text=text)
            answer = await _recv(ws)  # receive only: sending on a connection being closed is not what is tested
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
        assert isinstance(answer, sp.Error)
        assert await _answers(ws, 1) == []
        return answer.code


async def test_size_limits_and_invalid_utf8(servers: dict[str, Service]) -> None:
    """Over the limits: ``too_large`` and the connection stays; over 4 MiB (not read) or invalid UTF-8 in a text
    frame: the connection is closed (1009, 1007: RFC 6455) and the server keeps serving."""
    url = servers["stt"].url
    big_audio = sp.AUDIO_HEADER.pack(1, 1, 0, 1, 0, 16000, 300_000) + bytes(4 * 300_000)
    assert await _answer_or_close(url, "x" * (sp.MAX_TEXT_FRAME + 1)) == "too_large"
    assert await _answer_or_close(url, json.dumps({"type": "ping", "pad": "x" * sp.MAX_TEXT_FRAME})) == "too_large"
    assert await _answer_or_close(url, big_audio) == "too_large"
    assert await _answer_or_close(url, bytes(4 * sp.MAX_BINARY_FRAME + 1)) == 1009
    assert await _answer_or_close(url, b'{"type": "ping", "id": 1, "x": "\xff\xfe"}', text=True) == 1007
    await _still_serving(servers)


@pytest.mark.parametrize("role", ["stt", "face"])
async def test_request_errors_leave_the_request_running(servers: dict[str, Service], role: str) -> None:
    """Audio at another rate than its request's, a duplicate id, ``end`` of an unknown id: each answered, and the
    open request still completes normally afterwards."""
    start = sp.Transcribe if role == "stt" else sp.Animate
    async with connect(servers[role].url, max_size=None, ping_interval=None) as ws:
        await ws.send(sp.encode(sp.Hello(role)))
        assert isinstance(await _recv(ws), sp.Welcome)
        await ws.send(sp.encode(start(9, 16000)))
        bad = [
            (sp.encode_audio(9, AudioChunk(np.zeros(4, np.float32), 22050)), "bad_audio_format"),
            (sp.encode(start(9, 16000)), "duplicate_id"),
            (sp.encode(sp.End(10)), "unknown_request"),
            (sp.encode(start(11, 1234)), "bad_audio_format"),
            (sp.encode(sp.Cancel(12)), None),
        ]
        for barrier, (frame, code) in enumerate(bad, 1):
            await ws.send(frame)
            assert [a.code for a in await _answers(ws, barrier) if isinstance(a, sp.Error)] == ([code] if code else [])
        await ws.send(sp.encode_audio(9, AudioChunk(np.zeros(1600, np.float32), 16000)))
        await ws.send(sp.encode(sp.End(9)))
        outputs = []
        while not isinstance(message := await _recv(ws), sp.Done):
            assert not isinstance(message, sp.Error), message
            outputs.append(message)
    if role == "stt":
        assert [m.final for m in outputs if isinstance(m, sp.TranscriptOut)][-1]
    else:
        assert sum(len(m.frames.values) for m in outputs if isinstance(m, sp.FaceFrame)) == frames_for_samples(
            1600, 16000
        )
