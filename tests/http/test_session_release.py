"""Short-lived engine connections leave nothing behind: found by the soak (``facecast bench --soak``), where a
client that connects, says ``hello`` and goes at once (as the malformed hostile client does, 10 times a
second) left its session, its state writer and its connection task alive for good, until ``max_sessions``
refused every engine."""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from dataclasses import replace

import pytest
from tests.conftest import LIGHT
from tests.fakes import FakeFace, FakeLLM, FakeSTT, FakeTTS
from websockets.asyncio.client import connect

from facecast.bench.hostile import TEXT, RawSocket, frame
from facecast.config import Settings
from facecast.engine.resume import SessionKeeper, StateWriter
from facecast.engine.session import EngineSession
from facecast.engine.sessionstate import SessionState
from facecast.engine.sessionstore import MemoryStore
from facecast.protocol import engine as proto
from facecast.server import BackgroundServer
from facecast.services import Services

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("turns_first", [0, 1, 2, 3, 8])
@pytest.mark.parametrize("change", [False, True])
async def test_a_state_writer_closed_right_after_it_started_stops(turns_first: int, change: bool) -> None:
    # The first (claiming) write is in flight for the first few loop turns: a cancel then was swallowed by
    # wait_for on Python 3.11 and aclose() never returned.
    keeper = SessionKeeper(MemoryStore(), ttl_s=300)
    state = SessionState(proto.Hello(), "default", owner="a")
    writer = StateWriter(keeper, "s1", lambda: state, lambda: None)
    for _ in range(turns_first):
        await asyncio.sleep(0)
    if change:
        writer.changed()
    try:
        await asyncio.wait_for(writer.aclose(), 10)  # a guard against a hang, not a timing
    finally:
        writer._task.cancel()  # the broken writer must not outlive the test either
    assert writer._task.done()
    assert (await keeper.load("s1")).owner == "a"  # the final write happened


async def test_sessions_that_say_hello_and_go_at_once_are_all_released() -> None:
    settings = replace(Settings(**LIGHT), livelink=("off",), max_sessions=8)
    services = Services(FakeSTT(), FakeLLM(), FakeTTS(rate=16000), FakeFace())
    async with BackgroundServer(settings, services) as server:
        seen: list[weakref.ref[EngineSession]] = []
        url = f"ws://127.0.0.1:{server.port}/ws/engine"
        for n in range(24):  # three times max_sessions: leaked sessions would refuse the last ones
            sock = await RawSocket.open("127.0.0.1", server.port)
            hello = frame(TEXT, json.dumps({"type": "hello", "acks": False}).encode())
            # With the hello, a frame that ends the connection at once (the server closes with 1007), or
            # nothing more and the client goes (reset).
            sock.send(hello + frame(TEXT, b"\xff\xfe") if n % 2 else hello)
            await sock.drain(5)
            seen.extend(weakref.ref(s) for s in server.state.sessions)
            sock.abort()
        for _ in range(500):
            if not server.state.sessions:
                break
            await asyncio.sleep(0.02)
        assert not server.state.sessions
        gc.collect()
        assert seen and all(ref() is None for ref in seen)
        async with connect(url) as ws:  # and one more is served
            await ws.send(json.dumps({"type": "hello", "acks": False}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 20))["type"] == "welcome"
