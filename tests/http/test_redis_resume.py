"""Controllers that can be replaced: two real ``facecast run`` processes share a real redis-server. A conversation
starts on the first, which is killed (SIGKILL); the engine reconnects to the second with its session id and the
conversation goes on: the next prompt holds the earlier turns, the game facts, and the result of an action the
first controller sent. Then Redis itself is killed and the conversation still goes on (the failure is counted),
and an id another store gave out is refused with ``resume_failed``.

The language model is tests/servers/chat_recorder.py, a local OpenAI-compatible server that records the prompts
both controllers send it (the light STT and TTS: pocketsphinx, espeak).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from tests.conftest import LIGHT
from tests.engine.engine_client import hello, settled, turn
from tests.fakes import FakeFace, FakeLLM, FakeSTT, FakeTTS
from tests.servers.chat_recorder import ChatRecorder
from tests.servers.redis import RedisServer, free_port
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from facecast.config import Settings
from facecast.server import BackgroundServer
from facecast.services import Services

GIVE = {
    "name": "give_item",
    "description": "Hand an item to the player.",
    "parameters": {"type": "object", "properties": {"item": {"type": "string"}}, "required": ["item"]},
}


@pytest.fixture
async def recorder() -> AsyncIterator[ChatRecorder]:
    async with ChatRecorder() as llm:
        yield llm


class Controller:
    """``facecast run`` in its own process, on a free loopback port."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process, self.port = process, port
        self.ws_url = f"ws://127.0.0.1:{port}/ws/engine"

    @classmethod
    async def start(cls, llm_url: str, store: str) -> Controller:
        port = free_port()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "facecast.cli",
            "run",
            "--stt", "pocketsphinx", "--tts", "espeak", "--livelink", "off",
            "--llm", llm_url, "--llm-model", "recorder",
            "--port", str(port),
            "--session-store", store,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
        )  # fmt: skip
        controller = cls(process, port)
        for _ in range(1200):  # until it answers (models load first)
            assert process.returncode is None, "the controller stopped during start-up"
            try:
                await asyncio.to_thread(urllib.request.urlopen, f"http://127.0.0.1:{port}/health", timeout=1)
                return controller
            except OSError:
                await asyncio.sleep(0.1)
        await controller.stop()
        raise AssertionError("the controller did not start within 120 s")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
        await asyncio.wait_for(self.process.wait(), 30)


async def stored_holds(redis_server: RedisServer, session: str, text: str) -> None:
    from redis import asyncio as aioredis

    client = aioredis.from_url(redis_server.url)
    try:
        for _ in range(250):
            data = await client.get("facecast:session:" + session)
            if data is not None and text in data.decode():
                return
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()
    raise AssertionError(f"{text!r} never reached Redis: {data!r}")


async def test_a_killed_controller_is_replaced_without_the_conversation_noticing(
    redis_server: RedisServer, recorder: ChatRecorder
) -> None:
    first, second = await asyncio.gather(
        Controller.start(recorder.url, redis_server.url), Controller.start(recorder.url, redis_server.url)
    )
    try:
        recorder.reply = 'Here is the key. {"name": "give_item", "arguments": {"item": "key"}}'
        async with connect(first.ws_url) as ws:
            welcome = await hello(ws, actions=[GIVE])
            session = welcome["session"]
            assert welcome["resumed"] is False and len(session) == 22
            await ws.send(json.dumps({"type": "context", "facts": {"location": "the Red Lantern"}}))
            messages = await turn(ws, "Can I have the key?")
            [action] = [m for m in messages if m["type"] == "action"]
            await stored_holds(redis_server, session, "Here is the key.")  # what was heard, written after the turn
            first.kill()  # SIGKILL: no goodbye, no last write
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 20)

        recorder.reply = "You are welcome, traveller."
        async with connect(second.ws_url) as ws:
            welcome = await hello(ws, resume=session)
            assert welcome["type"] == "welcome" and welcome["resumed"] is True and welcome["session"] == session
            await ws.send(json.dumps({"type": "action_result", "id": action["id"], "result": "taken"}))
            assert await settled(ws) == []  # the first controller's action was still pending on the second
            messages = await turn(ws, "Thank you.")
            assert not [m for m in messages if m["type"] == "error"]
            start = next(m for m in messages if m["type"] == "utterance_start")
            assert start["utterance"] == action["utterance"] + 1

            prompt = recorder.prompts[-1]
            said = [(m["role"], m["content"]) for m in prompt if m["role"] != "system"]
            assert said[:2] == [("user", "Can I have the key?"), ("assistant", "Here is the key.")]
            assert said[2][0] == "user" and said[2][1].endswith("Thank you.")
            assert "location: the Red Lantern" in said[2][1]
            assert 'give_item {"item": "key"}: done ("taken")' in said[2][1]

            # Redis goes away mid-conversation: the conversation goes on, the failure is counted
            redis_server.kill()
            recorder.reply = "Still here."
            messages = await turn(ws, "Are you still there?")
            assert [m["text"] for m in messages if m["type"] == "reply_text"] == ["Still here."]
            assert not [m for m in messages if m["type"] == "error"]
            for _ in range(100):
                if 'facecast_session_store_errors_total{operation="save"}' in second.metrics():
                    break
                await asyncio.sleep(0.05)
            assert 'facecast_session_store_errors_total{operation="save"}' in second.metrics()
    finally:
        first.kill()
        await asyncio.gather(first.stop(), second.stop())


async def test_an_id_from_another_store_is_refused_and_an_expired_one_too(redis_server: RedisServer) -> None:
    """Two in-process controllers on the same Redis, one on database 0 and one on database 1 (another store)."""
    settings = replace(Settings(**LIGHT), livelink=("off",), session_ttl_s=1.0)

    def services() -> Services:
        return Services(FakeSTT(), FakeLLM("Noted."), FakeTTS(), FakeFace())

    other = redis_server.url.rsplit("/", 1)[0] + "/1"
    async with (
        BackgroundServer(replace(settings, session_store=redis_server.url), services()) as here,
        BackgroundServer(replace(settings, session_store=other), services()) as elsewhere,
    ):
        async with connect(here.ws_url) as ws:
            session = (await hello(ws))["session"]
            await turn(ws, "Remember me.")
        async with connect(elsewhere.ws_url) as ws:
            refused = await hello(ws, resume=session)
            assert refused["type"] == "error" and refused["code"] == "resume_failed"
        async with connect(here.ws_url) as ws:
            assert (await hello(ws, resume=session))["resumed"] is True
        await asyncio.sleep(1.4)  # the TTL passes with no connection holding the session
        async with connect(here.ws_url) as ws:
            assert (await hello(ws, resume=session))["code"] == "resume_failed"
