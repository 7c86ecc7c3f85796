"""Resuming sessions over real sockets, with two real controllers (two app instances on their own ports) sharing
one in-memory store: history, facts, pending actions, utterance ids, the takeover rule, bad and unknown ids.

The language model is a fake that records every prompt it is given, so a test sees what the next turn knew.
The same flows against a real Redis and killed controller processes: tests/http/test_redis_resume.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest
from tests.conftest import LIGHT
from tests.engine.engine_client import hello, receive, settled, turn
from tests.fakes import FakeFace, FakeLLM, FakeSTT, FakeTTS
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from facecast.config import Settings
from facecast.engine.resume import CLOSE_TAKEN_OVER
from facecast.engine.sessionstore import MemoryStore
from facecast.server import BackgroundServer
from facecast.services import Services

GIVE = {
    "name": "give_item",
    "description": "Hand an item to the player.",
    "parameters": {"type": "object", "properties": {"item": {"type": "string"}}, "required": ["item"]},
}


class Controllers:
    def __init__(self, llm: FakeLLM, servers: list[BackgroundServer], store: MemoryStore) -> None:
        self.llm, self.servers, self.store = llm, servers, store

    def url(self, index: int) -> str:
        return self.servers[index].ws_url


@asynccontextmanager
async def controllers(monkeypatch: pytest.MonkeyPatch, count: int = 2, **settings: Any) -> AsyncIterator[Controllers]:
    store = MemoryStore()
    monkeypatch.setattr("facecast.http.app.open_store", lambda spec: store)  # the store they share
    llm = FakeLLM("Sure thing.")
    config = replace(Settings(**LIGHT), livelink=("off",), **settings)
    async with AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(BackgroundServer(config, Services(FakeSTT(), llm, FakeTTS(), FakeFace())))
            for _ in range(count)
        ]
        yield Controllers(llm, servers, store)


@pytest.fixture
async def two(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Controllers]:
    async with controllers(monkeypatch) as found:
        yield found


async def stored(store: MemoryStore, session: str, text: str) -> None:
    """Wait until the stored state of ``session`` holds ``text`` (it is written off the session's path)."""
    for _ in range(200):
        data = await store.get("facecast:session:" + session)
        if data is not None and text in data.decode():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{text!r} never reached the store")


async def test_a_session_resumes_on_another_controller_with_history_facts_and_pending_actions(
    two: Controllers,
) -> None:
    two.llm.reply = 'Here is the key. {"name": "give_item", "arguments": {"item": "key"}}'
    async with connect(two.url(0)) as ws:
        welcome = await hello(ws, character="", actions=[GIVE], turns="client")
        assert welcome["type"] == "welcome" and welcome["resumed"] is False
        session = welcome["session"]
        await ws.send(json.dumps({"type": "context", "facts": {"location": "the Red Lantern"}}))
        messages = await turn(ws, "Can I have the key?")
        [action] = [m for m in messages if m["type"] == "action"]
        assert action["name"] == "give_item" and messages[0]["type"] == "transcript"
        await stored(two.store, session, "Here is the key.")  # what the player heard is kept
    two.llm.reply = "You are welcome."
    async with connect(two.url(1)) as ws:  # another controller
        welcome = await hello(ws, resume=session)
        assert welcome["type"] == "welcome" and welcome["session"] == session and welcome["resumed"] is True
        assert welcome["turns"] == "client" and welcome["audio"] == {"rate": 16000, "channels": 1}
        await ws.send(json.dumps({"type": "action_result", "id": action["id"], "result": "the player has it"}))
        assert await settled(ws) == []  # the action sent by the first controller was still pending here
        messages = await turn(ws, "Thanks!")
        start = next(m for m in messages if m["type"] == "utterance_start")
        assert start["utterance"] == action["utterance"] + 1  # ids go on, never repeat
    prompt = two.llm.seen[-1]
    assert [m.role for m in prompt] == ["system", "user", "assistant", "user"]
    assert "give_item" in prompt[0].content  # the declared actions came back with the session
    assert prompt[1].content == "Can I have the key?" and prompt[2].content == "Here is the key."
    assert "location: the Red Lantern" in prompt[3].content  # the facts
    assert 'give_item {"item": "key"}: done ("the player has it")' in prompt[3].content  # the action's result
    assert prompt[3].content.endswith("Thanks!")


async def test_an_unknown_id_is_refused_and_the_connection_can_start_afresh(two: Controllers) -> None:
    async with connect(two.url(0)) as ws:
        refused = await hello(ws, resume="A" * 22)
        assert refused["type"] == "error" and refused["code"] == "resume_failed"
        assert "start a new session" in refused["message"]
        welcome = await hello(ws)  # nothing changed: a plain hello is accepted
        assert welcome["type"] == "welcome" and welcome["resumed"] is False and welcome["session"] != "A" * 22


@pytest.mark.parametrize("bad", [12, "", "short", "with spaces and !!!!!!", "x" * 65])
async def test_a_bad_resume_value_is_bad_message(two: Controllers, bad: object) -> None:
    async with connect(two.url(0)) as ws:
        if bad == "":  # an empty resume is the same as none
            assert (await hello(ws, resume=bad))["type"] == "welcome"
            return
        refused = await hello(ws, resume=bad)
        assert refused["type"] == "error" and refused["code"] == "bad_message" and "resume" in refused["message"]
        assert (await hello(ws))["type"] == "welcome"


async def test_a_session_is_forgotten_after_its_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    async with controllers(monkeypatch, session_ttl_s=1.0) as two:
        async with connect(two.url(0)) as ws:
            session = (await hello(ws))["session"]
            await turn(ws, "Remember me.")
        async with connect(two.url(1)) as ws:
            welcome = await hello(ws, resume=session)
            assert welcome.get("resumed") is True, welcome  # within the TTL
        await asyncio.sleep(1.3)
        async with connect(two.url(1)) as ws:
            refused = await hello(ws, resume=session)
            assert refused["code"] == "resume_failed" and "expired" in refused["message"]


async def test_bye_ends_the_conversation_for_good(two: Controllers) -> None:
    async with connect(two.url(0)) as ws:
        session = (await hello(ws))["session"]
        await turn(ws, "Goodbye.")
        await ws.send(json.dumps({"type": "bye"}))
        await ws.wait_closed()
    async with connect(two.url(1)) as ws:
        assert (await hello(ws, resume=session))["code"] == "resume_failed"


async def test_a_newer_connection_takes_a_live_session_over_on_the_same_controller(two: Controllers) -> None:
    async with connect(two.url(0)) as old:
        session = (await hello(old))["session"]
        await turn(old, "I am the first.")
        async with connect(two.url(0)) as new:
            assert (await hello(new, resume=session))["resumed"] is True
            told = await receive(old)
            assert told["type"] == "error" and told["code"] == "session_taken_over"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(old.recv(), 10)
            assert old.close_code == CLOSE_TAKEN_OVER
            await turn(new, "I am the second.")
    prompt = two.llm.seen[-1]
    assert [m.content for m in prompt[1:]] == ["I am the first.", "Sure thing.", "I am the second."]


async def test_a_newer_connection_on_another_controller_ends_the_old_one_at_its_next_write(
    two: Controllers,
) -> None:
    async with connect(two.url(0)) as old:
        session = (await hello(old))["session"]
        first = await owner(two.store, session)
        async with connect(two.url(1)) as new:
            assert (await hello(new, resume=session))["resumed"] is True
            for _ in range(200):  # until the newer connection's claim is written
                if await owner(two.store, session) != first:
                    break
                await asyncio.sleep(0.02)
            await old.send(json.dumps({"type": "context", "facts": {"weather": "rain"}}))  # old writes: finds it taken
            told = await receive(old)
            assert told["code"] == "session_taken_over"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(old.recv(), 10)
            assert old.close_code == CLOSE_TAKEN_OVER
            assert (await settled(new)) == []  # the new connection goes on untouched
            data = await two.store.get("facecast:session:" + session)
            assert data is not None and b"rain" not in data  # the old connection's change was not written


async def owner(store: MemoryStore, session: str) -> str:
    """The owner of the stored session (waiting for its first write)."""
    for _ in range(200):
        data = await store.get("facecast:session:" + session)
        if data is not None:
            return str(json.loads(data)["owner"])
        await asyncio.sleep(0.02)
    raise AssertionError("the session was never written")
