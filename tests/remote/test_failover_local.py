"""Failover over any implementation of a role: local providers and services in one list."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence

import numpy as np
import pytest

from facecast import registry
from facecast.config import load_settings
from facecast.errors import ServiceError
from facecast.remote.failover import FailoverEvent, FailoverLLM, FailoverTTS
from facecast.services import build_services, make_role
from facecast.testing import check_tts
from facecast.types import AudioChunk, ChatMessage, SpeechChunk


class _Breaks:
    """A local TTS at 16 kHz that yields 0.1 s of a tone, then fails (a crashed model, a lost GPU)."""

    failover_name = "breaks"
    sample_rate = 16000

    def __init__(self) -> None:
        self.calls = 0

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        self.calls += 1
        tone = (0.1 * np.sin(np.arange(1600) * 0.2)).astype(np.float32)
        yield SpeechChunk(AudioChunk(tone, 16000, 0))
        raise ServiceError("the model crashed")


class _DeadLLM:
    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        raise ServiceError("no GPU")
        yield ""  # pragma: no cover - makes this an async generator


@pytest.fixture
def local_members() -> Iterator[_Breaks]:
    breaks = _Breaks()
    registry.register("tts", "breaks", lambda req: breaks)
    registry.register("llm", "dead", lambda req: _DeadLLM())
    yield breaks
    registry.unregister("tts", "breaks")
    registry.unregister("llm", "dead")


async def test_local_tts_fails_over_to_the_next_local_provider_without_repeating_audio(local_members: _Breaks) -> None:
    events: list[FailoverEvent] = []
    from facecast.remote.failover import FailoverOptions

    tts = make_role("tts", "breaks, espeak", failover=FailoverOptions(on_event=events.append))
    assert isinstance(tts, FailoverTTS)
    assert tts.sample_rate == 22050  # the highest of 16000 and espeak's 22050
    chunks = [c async for c in tts.synthesize("Hello there, my friend.")]
    assert [c.audio.rate for c in chunks] == [22050] * len(chunks)
    offsets = [c.audio.offset for c in chunks]
    ends = [c.audio.end for c in chunks]
    assert offsets[0] == 0 and offsets[1:] == ends[:-1]  # contiguous: nothing repeated, nothing dropped
    assert events and events[0].from_url == "breaks" and events[0].to_url == "espeak"
    assert "crashed" in events[0].reason
    # the backup's phonemes arrive (resampled timing) so the face keeps working
    assert any(c.phonemes for c in chunks)
    await tts.aclose()


async def test_mixed_list_passes_the_conformance_suite(local_members: _Breaks) -> None:
    tts = make_role("tts", "breaks,espeak")
    await check_tts(tts, "Bob made a map.")
    await tts.aclose()


async def test_llm_list_with_a_dead_local_member_answers_from_the_next(local_members: _Breaks) -> None:
    llm = make_role("llm", "dead,echo")
    assert isinstance(llm, FailoverLLM)
    reply = "".join([t async for t in llm.stream([ChatMessage("user", "hello there")])])
    assert "hello there" in reply.lower()
    await llm.aclose()


def test_build_services_accepts_mixed_lists(local_members: _Breaks) -> None:
    settings = load_settings(
        environ={}, overrides={"tts": "breaks,espeak", "llm": "dead,echo", "stt": "pocketsphinx", "face": "learned"}
    )
    services = build_services(settings)
    assert isinstance(services.tts, FailoverTTS) and isinstance(services.llm, FailoverLLM)


async def test_a_tts_service_list_learns_the_service_rate_and_carries_misaki_timing() -> None:
    """RemoteTTS takes the service's own rate from its welcome at warm-up (no resampling on either side), and
    the phonemes' alphabet crosses the wire so the face can read hibari's misaki symbols."""
    from tests.remote.conftest import facecast_serve

    service = facecast_serve("tts", "--tts", "hibari")
    try:
        tts = make_role("tts", service.url)
        assert tts.sample_rate == 22050  # before it has met the service
        await tts.warm_up()
        assert tts.sample_rate == 24000
        chunks = [c async for c in tts.synthesize("Bob made a map.")]
        assert {c.audio.rate for c in chunks} == {24000}
        alphabets = {p.alphabet for c in chunks for p in c.phonemes}
        assert alphabets == {"misaki"}
        await tts.aclose()
    finally:
        service.kill()
