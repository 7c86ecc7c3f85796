"""Fault injection for the STT, LLM and face roles with real server subprocesses (TTS: test_failover.py).

Per role, the primary is killed (-9) or stopped (SIGSTOP) while a request is in it (before any output, and
in the middle of the output), answers garbage, misses the deadline, refuses connections, connects then
closes, or comes back. Every request completes on the backup with its output whole and unrepeated, and the
move is reported (:class:`FailoverEvent` and the ``facecast_failovers_total`` counter).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from facecast.face.phonetic import PhoneticAnimator
from facecast.llm.echo import echo_reply
from facecast.metrics import Metrics
from facecast.remote.client import ClientOptions
from facecast.remote.failover import FailoverEvent, FailoverOptions, make_failover
from facecast.services import make_stt
from facecast.tts.espeak import EspeakTTS
from facecast.types import AudioChunk, ChatMessage, FaceFrames, SpeechChunk, Transcript, frames_for_samples

from .conftest import Service, facecast_serve, fault_serve, free_port
from .fault_server import STARTED

FAST = ClientOptions(heartbeat_interval=0.1, heartbeat_timeout=0.6, stall_timeout=1.0, connect_timeout=1.0)
# PocketSphinx decoding a replayed utterance keeps a loaded CPU busy: STT gets the default one-second
# heartbeat and a longer deadline (still far below the slow primary's 30 s)
LENIENT = ClientOptions(heartbeat_timeout=1.0, stall_timeout=3.0, connect_timeout=1.0)
ROLES = ("stt", "llm", "face")
_CACHE: dict[str, Any] = {}


async def _cached(key: str, make: Callable[[], Any]) -> Any:
    if key not in _CACHE:
        _CACHE[key] = await make()
    return _CACHE[key]


async def _speech(text: str) -> list[SpeechChunk]:
    return await _cached("speech:" + text, lambda: _collect(EspeakTTS().synthesize(text)))


async def _collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


async def _stream(items: list[Any], fault: Callable[[], None] | None = None) -> AsyncIterator[Any]:
    """``items`` one by one; ``fault()`` is called half way, so it lands while the input is still streaming."""
    for i, item in enumerate(items):
        if i == len(items) // 2 and fault is not None:
            fault()
        await asyncio.sleep(0.002)
        yield item


async def _run_output(stream: AsyncIterator[Any], fault: Callable[[], None] | None, after: int = 3) -> list[Any]:
    """Collect ``stream``; ``fault()`` is called once ``after`` outputs have arrived."""
    out: list[Any] = []
    async for item in stream:
        out.append(item)
        if len(out) == after and fault is not None:
            fault()
    return out


class STT:
    """The backup gets the whole utterance: its one final transcript is the in-process one of all the audio."""

    role = "stt"
    options = LENIENT
    delay = "0"

    async def reference(self) -> tuple[list[AudioChunk], str]:
        chunks = [c.audio for c in await _speech("Hello there, how are you today?")]

        async def decode() -> str:
            final = [t async for t in make_stt("pocketsphinx").transcribe(_stream(chunks))][-1]
            assert final.final and final.text
            return final.text

        return chunks, await _cached("stt", decode)

    async def run(self, stt: Any, fault: Callable[[], None] | None) -> list[Transcript]:
        chunks, _ = await self.reference()
        return await _collect(stt.transcribe(_stream(chunks, fault)))

    async def check(self, out: list[Transcript]) -> None:
        _, expected = await self.reference()
        assert [t.text for t in out if t.final] == [expected] and out[-1].final


class LLM:
    """The reply is the echo reply exactly: retried as is before the first token, continued after it."""

    role = "llm"
    options = FAST
    delay = "0.05"
    messages = (ChatMessage("user", "the quick brown fox jumps over the lazy dog"),)

    async def run(self, llm: Any, fault: Callable[[], None] | None) -> list[str]:
        return await _run_output(llm.stream(self.messages), fault)

    async def check(self, out: list[str]) -> None:
        assert "".join(out) == echo_reply(self.messages)


class Face:
    """Frames cover the audio exactly once (contiguous from 0, no repeat) with the in-process model's values."""

    role = "face"
    options = FAST
    delay = "0.01"
    text = "Maybe we can borrow my brother's boat tomorrow morning."

    async def reference(self) -> tuple[list[SpeechChunk], np.ndarray]:
        speech = await _speech(self.text)

        async def animate() -> np.ndarray:
            return np.concatenate([f.values async for f in PhoneticAnimator().animate(_stream(speech))])

        return speech, await _cached("face", animate)

    async def run(self, face: Any, fault: Callable[[], None] | None) -> list[FaceFrames]:
        speech, _ = await self.reference()
        return await _run_output(face.animate(_stream(speech)), fault)

    async def check(self, out: list[FaceFrames]) -> None:
        speech, expected = await self.reference()
        assert [b.start for b in out] == [0, *(b.end for b in out[:-1])], "contiguous from 0, no repeat, no gap"
        samples = sum(len(c.audio.pcm) for c in speech)
        assert out[-1].end == frames_for_samples(samples, speech[0].audio.rate) == len(expected)
        np.testing.assert_allclose(np.concatenate([b.values for b in out]), expected, atol=1e-5)


SCENARIOS: dict[str, Any] = {"stt": STT(), "llm": LLM(), "face": Face()}


class Recorder:
    """The failover events of one wrapper, and its metrics."""

    def __init__(self) -> None:
        self.events: list[FailoverEvent] = []
        self.metrics = Metrics()
        self._changed = asyncio.Event()

    def __call__(self, event: FailoverEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def failovers(self) -> list[FailoverEvent]:
        return [e for e in self.events if e.kind == "failover"]

    def counted(self, role: str) -> float:
        return float(self.metrics.failovers.labels(role)._value.get())

    async def wait_for(self, kind: str) -> None:
        async def wait() -> None:
            while not any(e.kind == kind for e in self.events):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), 60)

    def assert_moved(self, role: str, from_url: str, to_url: str) -> FailoverEvent:
        """One failover from ``from_url`` to ``to_url``, reported and counted; returns it.

        STT may report a second, spurious one: a backup slow to answer its heartbeat while decoding the replay
        on a loaded machine can be suspected too (the transcript must still be whole).
        """
        failovers = self.failovers()
        assert [(e.role, e.from_url, e.to_url) for e in failovers[:1]] == [(role, from_url, to_url)]
        assert len(failovers) == 1 or role == "stt", failovers
        assert self.counted(role) == len(failovers)
        return failovers[0]


def _failover(role: str, urls: list[str], recorder: Recorder, client: ClientOptions | None = None) -> Any:
    options = FailoverOptions(client or SCENARIOS[role].options, on_event=recorder, metrics=recorder.metrics)
    return make_failover(role, urls, options)  # type: ignore[arg-type]


async def _request(
    role: str,
    urls: list[str],
    recorder: Recorder,
    fault: Callable[[], None] | None = None,
    client: ClientOptions | None = None,
) -> None:
    """One request through a fresh failover wrapper over ``urls``, its output checked."""
    scenario = SCENARIOS[role]
    impl = _failover(role, urls, recorder, client)
    try:
        await scenario.check(await scenario.run(impl, fault))
    finally:
        await impl.aclose()


async def _when_started(service: Service, sig: int) -> None:
    await asyncio.to_thread(service.wait_for, STARTED)
    service.signal(sig)


@pytest.mark.parametrize("when", ["before_output", "mid_output"])
@pytest.mark.parametrize("fault", ["kill", "stop"])
@pytest.mark.parametrize("role", ROLES)
async def test_primary_dies_during_a_request(services: list[Service], role: str, fault: str, when: str) -> None:
    """``before_output``: the fault hits once the request is in the primary (STT: its first audio), before any
    output; ``mid_output``: after three outputs (STT: half way through the utterance's audio).

    The output deadline is long here, so only the fault itself can move the request (the reason says which).
    """
    scenario = SCENARIOS[role]
    extra = ("--first", "30") if when == "before_output" else ("--delay", scenario.delay)
    primary = fault_serve("slow", role, *extra)
    services.append(primary)
    backup = facecast_serve(role)
    services.append(backup)
    sig = signal.SIGKILL if fault == "kill" else signal.SIGSTOP
    recorder = Recorder()
    urls, client = [primary.url, backup.url], replace(scenario.options, stall_timeout=10.0)
    if when == "mid_output":
        await _request(role, urls, recorder, lambda: primary.signal(sig), client)
    else:
        injector = asyncio.create_task(_when_started(primary, sig))
        try:
            await _request(role, urls, recorder, client=client)
            await injector  # done: nothing but the fault could end the primary's 30 s wait this soon
        finally:
            injector.cancel()
            await asyncio.gather(injector, return_exceptions=True)
    event = recorder.assert_moved(role, primary.url, backup.url)
    assert ("connection lost" if fault == "kill" else "dead or hung") in event.reason
    delivered = int(event.progress.split()[0])
    if role == "stt":
        assert delivered > 0 and event.progress.endswith("samples of input kept")  # replayed to the backup
    else:
        assert (delivered == 0) == (when == "before_output"), event.progress


@pytest.mark.parametrize("mode", ["garbage", "slow", "refused", "close"])
@pytest.mark.parametrize("role", ROLES)
async def test_bad_primary_fails_over(services: list[Service], role: str, mode: str) -> None:
    if mode == "refused":
        primary_url = f"ws://127.0.0.1:{free_port()}"
    else:
        extra = ("--first", "30") if mode == "slow" else ()  # far beyond the deadline (stall_timeout)
        primary = fault_serve(mode, role, *extra)
        services.append(primary)
        primary_url = primary.url
    backup = facecast_serve(role)
    services.append(backup)
    recorder = Recorder()
    await _request(role, [primary_url, backup.url], recorder)
    event = recorder.assert_moved(role, primary_url, backup.url)
    why = {
        "garbage": "answered garbage",
        "slow": "no output for",
        "refused": "cannot connect",
        "close": "connects then closes",
    }[mode]
    assert why in event.reason


@pytest.mark.parametrize("role", ROLES)
async def test_primary_coming_back_serves_the_next_request(services: list[Service], role: str) -> None:
    port = free_port()
    primary_url = f"ws://127.0.0.1:{port}"
    backup = facecast_serve(role)
    services.append(backup)
    recorder = Recorder()
    scenario = SCENARIOS[role]
    impl = _failover(role, [primary_url, backup.url], recorder)
    try:
        await scenario.check(await scenario.run(impl, None))
        recorder.assert_moved(role, primary_url, backup.url)
        services.append(facecast_serve(role, "--port", str(port)))
        await recorder.wait_for("restored")
        restored = recorder.events[-1]
        assert (restored.kind, restored.from_url, restored.to_url) == ("restored", primary_url, primary_url)
        backup.kill()  # the next request must be served by the restored primary, with no failover
        await scenario.check(await scenario.run(impl, None))
        assert [e.kind for e in recorder.events] == ["failover", "restored"]
    finally:
        await impl.aclose()
