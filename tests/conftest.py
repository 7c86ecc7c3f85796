"""Shared fixtures: every async test must leave no asyncio task behind; holding the espeak-ng worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.servers.redis import RedisServer, need_redis

from facecast.providers import LIGHT_DEFAULTS

LIGHT: dict[str, str] = {role: LIGHT_DEFAULTS[role] for role in ("stt", "llm", "tts")}
"""The light providers, for tests whose services are built from them (``Settings(**LIGHT)``): settings must
name the providers the test's services really are (health, per-request voices, turn timing read them)."""

LONG_TEXT = " ".join(
    f"Sentence number {n} talks about the weather, the hills and the long road home." for n in range(40)
)
"""About four minutes of speech: its synthesis is still running when a test stops it."""


@pytest.fixture(autouse=True)
async def no_leftover_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running (cancellation must reach every stage)."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    leftover = [t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()]
    if leftover:
        for task in leftover:
            task.cancel()
        await asyncio.gather(*leftover, return_exceptions=True)
        pytest.fail(f"test left {len(leftover)} asyncio task(s) running: {leftover}")


@pytest.fixture
def hold_worker_until_aborted(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The espeak-ng worker waits, right after posting chunks of LONG_TEXT, until the request is aborted: the
    test then knows the synthesis was still running when it was stopped (no race with a fast CPU)."""
    from facecast.tts import espeak

    original = espeak._Job.post

    def post(self: espeak._Job, item: object) -> None:
        original(self, item)
        if isinstance(item, list) and self.text == LONG_TEXT:
            give_up = time.monotonic() + 10
            while not self.aborted and time.monotonic() < give_up:
                time.sleep(0.001)

    monkeypatch.setattr(espeak._Job, "post", post)
    yield


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port with no persistence (skipped where there is none, failed
    under CI's FACECAST_REQUIRE_REDIS)."""
    need_redis()
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()
