"""Session stores: the in-memory one on a virtual clock, the Redis one against a real redis-server, and the
keeper's bounded, counted, best-effort use of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from tests.servers.redis import RedisServer, free_port

from facecast.config import load_settings
from facecast.engine.resume import KEY_PREFIX, ResumeFailed, Saved, SessionKeeper
from facecast.engine.sessionstate import SessionState, encode_state
from facecast.engine.sessionstore import MemoryStore, RedisStore, StoreError, open_store
from facecast.errors import ConfigError
from facecast.metrics import Metrics
from facecast.protocol import engine as proto
from facecast.types import ChatMessage


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_memory_records_expire_after_their_ttl_and_a_put_refreshes_it() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    await store.put("a", b"1", 10)
    clock.now += 9
    assert await store.get("a") == b"1"
    await store.put("a", b"2", 10)  # refreshed
    clock.now += 9
    assert await store.get("a") == b"2"
    clock.now += 1.5
    assert await store.get("a") is None and len(store) == 0


async def test_memory_store_is_bounded_and_deletes() -> None:
    store = MemoryStore(max_records=2)
    for key in "abc":
        await store.put(key, key.encode(), 60)
    assert await store.get("a") is None and await store.get("c") == b"c"
    await store.delete("c")
    await store.delete("never")
    assert await store.get("c") is None


async def test_memory_store_is_bounded_in_bytes_and_counts_them_exactly() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock, max_bytes=1000)
    for key in "abcd":
        await store.put(key, bytes(300), 60)
    assert await store.get("a") is None and await store.get("b") is not None  # 4 x 300 > 1000: the oldest went
    assert store.size == 900 and len(store) == 3
    await store.put("b", bytes(10), 60)  # replaced: its old bytes no longer count
    await store.delete("c")
    assert store.size == 310
    clock.now += 61
    assert len(store) == 0 and store.size == 0


def test_the_store_setting_is_checked_and_its_credentials_never_shown() -> None:
    assert isinstance(open_store("memory"), MemoryStore)
    for bad in ("postgres://u:hunter2@db/1", "redis:/", "memcached"):
        with pytest.raises(ConfigError) as caught:
            load_settings(environ={"FACECAST_SESSION_STORE": bad})
        assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError, match="session_ttl_s"):
        load_settings(environ={"FACECAST_SESSION_TTL_S": "0"})
    settings = load_settings(
        environ={"FACECAST_SESSION_STORE": "rediss://:pw@cache:6380/2", "FACECAST_SESSION_TTL_S": "60"}
    )
    assert settings.session_store == "rediss://:pw@cache:6380/2" and settings.session_ttl_s == 60.0


STATE = SessionState(proto.Hello(), "default", (ChatMessage("user", "hi"),), owner="me")


class Stuck:
    """A store that never answers (a Redis server that stopped responding)."""

    async def get(self, key: str) -> bytes | None:
        await asyncio.sleep(3600)
        return None

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        await asyncio.sleep(3600)

    async def delete(self, key: str) -> None:
        await asyncio.sleep(3600)


async def test_a_stuck_store_is_given_up_on_counted_and_the_resume_refused(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    keeper = SessionKeeper(Stuck(), 60, metrics, timeout_s=0.05)
    assert await keeper.save("s" * 22, STATE, claim=True) is Saved.FAILED
    assert await keeper.save("s" * 22, STATE, claim=True) is Saved.FAILED
    with pytest.raises(ResumeFailed, match="unavailable"):
        await keeper.load("s" * 22)
    text = metrics.render().decode()
    assert 'facecast_session_store_errors_total{operation="save"} 2.0' in text
    assert 'facecast_session_store_errors_total{operation="load"} 1.0' in text
    assert sum("session store" in r.message and r.levelname == "WARNING" for r in caplog.records) == 1  # once


async def test_a_record_of_another_owner_is_left_alone_unless_claimed() -> None:
    store = MemoryStore()
    keeper = SessionKeeper(store, 60)
    sid = "t" * 22
    await store.put(KEY_PREFIX + sid, encode_state(SessionState(proto.Hello(), "default", owner="newer")), 60)
    assert await keeper.save(sid, STATE) is Saved.TAKEN
    assert (await keeper.load(sid)).owner == "newer"
    assert await keeper.save(sid, STATE, claim=True) is Saved.OK
    assert (await keeper.load(sid)).owner == "me"


async def test_a_huge_state_is_not_written() -> None:
    metrics = Metrics()
    keeper = SessionKeeper(MemoryStore(), 60, metrics)
    huge = SessionState(proto.Hello(), "x", (ChatMessage("user", "a" * 600_000),), owner="me")
    assert await keeper.save("h" * 22, huge, claim=True) is Saved.FAILED
    with pytest.raises(ResumeFailed, match="no such session"):
        await keeper.load("h" * 22)
    assert 'operation="save"} 1.0' in metrics.render().decode()


# -- a real redis-server -------------------------------------------------------------------------------


@pytest.fixture
async def redis_store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_server.url)
    try:
        yield store
    finally:
        await store.aclose()


async def test_redis_keeps_records_with_their_ttl(redis_store: RedisStore) -> None:
    await redis_store.put("k", b"\x00state", 0.3)
    assert await redis_store.get("k") == b"\x00state"
    ttl = await redis_store._client.pttl("k")
    assert 0 < ttl <= 300
    await asyncio.sleep(0.45)
    assert await redis_store.get("k") is None
    await redis_store.put("k", b"again", 60)
    await redis_store.delete("k")
    assert await redis_store.get("k") is None


async def test_a_redis_that_is_gone_raises_store_errors_without_the_password(redis_server: RedisServer) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"  # nothing listens there
    store = RedisStore(url, timeout_s=0.5)
    try:
        with pytest.raises(StoreError) as caught:
            await store.get("k")
        assert "hunter2" not in str(caught.value) and "***" in str(caught.value)
        with pytest.raises(StoreError):
            await store.put("k", b"v", 10)
    finally:
        await store.aclose()


async def test_the_keeper_goes_on_when_redis_is_killed_and_recovers_with_it(
    redis_server: RedisServer, redis_store: RedisStore
) -> None:
    metrics = Metrics()
    keeper = SessionKeeper(redis_store, 60, metrics, timeout_s=0.5)
    sid = "r" * 22
    assert await keeper.save(sid, STATE, claim=True) is Saved.OK
    assert (await keeper.load(sid)).turns == STATE.turns
    redis_server.kill()
    assert await keeper.save(sid, STATE) is Saved.FAILED
    assert 'operation="save"} 1.0' in metrics.render().decode()
    redis_server.start()  # a fresh, empty server on the same port: the client reconnects
    assert await keeper.save(sid, STATE, claim=True) is Saved.OK
    assert (await keeper.load(sid)).owner == "me"
