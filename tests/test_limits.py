"""The limit primitives (:mod:`facecast.limits`) on their own: bounded-wait slots, the recogniser cap around a
speech-to-text, and the message token bucket on a virtual clock. The servers' use of them is tested over real
sockets in tests/http/test_limits.py and tests/remote/test_server_limits.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator

import numpy as np
import pytest
from tests.fakes import FakeFace, FakeLLM, FakeSTT, FakeTTS

from facecast.aio import closing
from facecast.config import Settings, load_settings
from facecast.errors import BusyError, ConfigError, ServiceError
from facecast.limits import LimitedSTT, Slots, TokenBucket, limit_role, limit_services
from facecast.roles import SpeechToText
from facecast.services import Services
from facecast.types import AudioChunk, Transcript


class HeldSTT:
    """Each stream yields a partial at once, then holds until ``release`` is set; counts open streams."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.open = 0
        self.warmed = False

    def warm_up(self) -> None:
        self.warmed = True

    async def transcribe(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcript]:
        self.open += 1
        try:
            yield Transcript("partial", False)
            await self.release.wait()
            async for _ in audio:
                pass
            yield Transcript("done", True)
        finally:
            self.open -= 1


async def no_audio() -> AsyncIterator[AudioChunk]:
    yield AudioChunk(np.zeros(160, np.float32), 16000, 0)


async def test_slots_hand_over_in_order_and_give_up_after_the_wait() -> None:
    slots = Slots(1)
    assert await slots.take() and slots.in_use == 1
    assert not await slots.take()  # no wait: refused at once
    assert not await slots.take(wait=0.01)  # waited, none came
    second = asyncio.create_task(slots.take(wait=30))
    third = asyncio.create_task(slots.take(wait=30))
    await asyncio.sleep(0)
    slots.give()  # straight to the longest waiter
    assert await second and not third.done()
    slots.give()
    assert await third
    slots.give()
    assert slots.in_use == 0


async def test_a_slot_handed_to_a_cancelled_waiter_is_not_lost() -> None:
    slots = Slots(1)
    assert await slots.take()
    waiter = asyncio.create_task(slots.take(wait=30))
    await asyncio.sleep(0)
    slots.give()  # handed over...
    waiter.cancel()  # ...and the waiter cancelled before it ran
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.in_use == 0 and await slots.take()


async def test_limited_stt_refuses_past_its_slots_and_frees_them_when_a_stream_ends() -> None:
    inner = HeldSTT()
    stt = LimitedSTT(inner, 2, wait=0.05)
    assert isinstance(stt, SpeechToText)
    streams = [stt.transcribe(no_audio()) for _ in range(2)]
    for stream in streams:
        assert (await anext(stream)).text == "partial"
    assert inner.open == 2 and stt.slots.in_use == 2
    with pytest.raises(BusyError) as refused:
        await anext(stt.transcribe(no_audio()))
    assert refused.value.code == "busy" and isinstance(refused.value, ServiceError)  # a failover list moves on
    assert "max_recognisers" in str(refused.value) and inner.open == 2
    await streams[0].aclose()  # a stream closed early gives its slot back
    assert stt.slots.in_use == 1 and inner.open == 1
    inner.release.set()
    async with closing(stt.transcribe(no_audio())) as third:
        assert [t.text async for t in third] == ["partial", "done"]
    assert [t.text async for t in streams[1]] == ["done"]
    assert stt.slots.in_use == 0 and inner.open == 0


async def test_limited_stt_waits_for_a_slot_within_its_wait() -> None:
    inner = HeldSTT()
    stt = LimitedSTT(inner, 1, wait=30)
    first, second = stt.transcribe(no_audio()), stt.transcribe(no_audio())
    await anext(first)
    waiting = asyncio.create_task(anext(second))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await first.aclose()
    assert (await waiting).text == "partial"  # got the slot as soon as it was free
    await second.aclose()
    assert stt.slots.in_use == 0


def test_the_wrappers_keep_the_inner_attributes_and_are_applied_once() -> None:
    inner = HeldSTT()
    services = Services(inner, FakeLLM(), FakeTTS(), FakeFace())
    limited = limit_services(services, Settings(max_recognisers=3))
    assert isinstance(limited.stt, LimitedSTT) and limited.stt.slots.size == 3 and limited.llm is services.llm
    limited.stt.warm_up()
    assert inner.warmed
    assert limit_services(limited, Settings(max_recognisers=3)) is limited
    assert limit_services(services, Settings(max_recognisers=0)) is services
    served = limit_role("stt", FakeSTT(), Settings(max_recognisers=2))
    assert isinstance(served, LimitedSTT) and served.wait == 0  # a service refuses at once: failover moves on
    llm = FakeLLM()
    assert limit_role("llm", llm, Settings()) is llm


def test_the_token_bucket_refuses_past_its_burst_and_reports_once_a_second() -> None:
    now = [100.0]
    bucket = TokenBucket(10, clock=lambda: now[0])
    assert bucket.burst == 20
    assert all(bucket.take() for _ in range(20))
    assert not bucket.take()
    assert bucket.report() == 1  # the first refusal is reported...
    for _ in range(50):
        assert not bucket.take()
        assert bucket.report() == 0  # ...then nothing more within the second
    now[0] += 0.5  # five tokens back
    assert sum(bucket.take() for _ in range(10)) == 5
    now[0] += 0.5
    assert bucket.report() == 55  # the refusals of that second, in one report
    now[0] += 100
    assert sum(bucket.take() for _ in range(100)) == 20  # refilled to the burst, not beyond


def test_limits_are_settings_and_checked() -> None:
    settings = load_settings(
        environ={
            "FACECAST_MAX_SESSIONS": "4",
            "FACECAST_MAX_RECOGNISERS": "2",
            "FACECAST_MAX_TURN_S": "30",
            "FACECAST_IDLE_TIMEOUT_S": "0",
            "FACECAST_MAX_MESSAGES_PER_S": "50",
            "FACECAST_SEND_TIMEOUT_S": "2.5",
            "FACECAST_NEUROSYNC_MAX_JOBS": "3",
        }
    )
    assert (settings.max_sessions, settings.max_recognisers, settings.max_turn_s) == (4, 2, 30.0)
    assert (settings.idle_timeout_s, settings.max_messages_per_s, settings.send_timeout_s) == (0.0, 50.0, 2.5)
    assert settings.neurosync_max_jobs == 3
    defaults = Settings()
    assert (defaults.max_sessions, defaults.max_recognisers, defaults.max_turn_s) == (32, 8, 60.0)
    assert (defaults.idle_timeout_s, defaults.max_messages_per_s, defaults.send_timeout_s) == (300.0, 200.0, 10.0)
    for key, value in (("MAX_SESSIONS", "-1"), ("SEND_TIMEOUT_S", "-2"), ("MAX_TURN_S", "0")):
        with pytest.raises(ConfigError, match=key.lower()):
            load_settings(environ={f"FACECAST_{key}": value})
