"""A hung TTS member is replaced before the audio buffered at the engine runs out (:class:`AudioDeadline`).

The engine session produces a reply ``lead`` (1 s) ahead of playback, so when the TTS is asked for more the
engine holds about 1 s of audio. Detecting a hang by the heartbeat (1 s) or the stall timeout (10 s) came too
late: the engine ran dry once per failover. The failover wrapper now holds each member to a deadline per
chunk, below the lead, learned from how fast the member normally is.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import LIGHT

from facecast.config import Settings
from facecast.engine.context import SessionConfig
from facecast.engine.sim import EngineSim, SimConfig, TurnReport
from facecast.llm.echo import echo_reply
from facecast.remote.client import ClientOptions, RemoteTTS
from facecast.remote.failover import AudioDeadline, FailoverEvent, FailoverOptions, FailoverTTS
from facecast.server import BackgroundServer
from facecast.services import build_services
from facecast.types import AudioChunk, ChatMessage, SpeechChunk

from .conftest import Service, facecast_serve, fault_serve
from .fault_server import HUNG

PIECE = 220
"""Samples per chunk of the scripted members (10 ms at 22050 Hz)."""


# --- the rule --------------------------------------------------------------------------------------------


def test_the_deadline_beats_the_sessions_lead() -> None:
    rule = AudioDeadline()
    assert rule.budget == SessionConfig().lead  # kept in step with how far ahead the session produces
    assert rule.deadline([], [0.001]) == pytest.approx(0.899)  # unknown member: the latest that beats the lead
    assert rule.deadline([0.03, 0.04], [0.001]) == 0.4  # a fast member (hibari, ~30 ms): the floor
    assert rule.deadline([0.26, 0.32], [0.001]) == pytest.approx(0.64)  # piper (~260 ms): twice its slowest
    assert rule.deadline([0.6], [0.001]) == pytest.approx(0.899)  # slower still: capped by the budget
    assert rule.deadline([0.3], [0.32]) == pytest.approx(0.58)  # a slow backup needs its time before the lead ends
    assert rule.deadline([], [0.8]) == 0.4  # a backup that cannot beat the lead anyway: the floor


@given(
    st.lists(st.floats(0, 5), max_size=16),
    st.lists(st.floats(0, 5), max_size=16),
)
def test_a_deadline_is_within_the_floor_and_the_budget(waits: list[float], backup: list[float]) -> None:
    rule = AudioDeadline()
    deadline = rule.deadline(waits, backup)
    assert rule.floor <= deadline < rule.budget
    if rule.budget - rule.margin - max(backup, default=0.0) >= rule.floor:  # the backup can beat the lead
        assert deadline + max(backup, default=0.0) + rule.margin <= rule.budget + 1e-9
    if waits and rule.factor * max(waits) <= deadline:
        assert deadline == max(rule.floor, rule.factor * max(waits))  # never abandoned for its usual pace


# --- scripted local members ------------------------------------------------------------------------------


class Scripted:
    """A local TTS member speaking ``pcm`` in 10 ms chunks: the first after ``first`` s, the others ``gap`` s
    apart; after ``hang_after`` chunks it never delivers another. Counts the streams it closed."""

    sample_rate = 22050

    def __init__(self, pcm: np.ndarray, first: float = 0.0, gap: float = 0.0, hang_after: int | None = None) -> None:
        self.pcm, self.first, self.gap, self.hang_after = pcm, first, gap, hang_after
        self.closed = 0

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        try:
            await asyncio.sleep(self.first)
            for i, start in enumerate(range(0, len(self.pcm), PIECE)):
                if self.hang_after is not None and i >= self.hang_after:
                    await asyncio.Event().wait()
                if i:
                    await asyncio.sleep(self.gap)
                yield SpeechChunk(AudioChunk(self.pcm[start : start + PIECE], self.sample_rate, start))
        finally:
            self.closed += 1


PCM = np.sin(np.arange(22050) / 7.0).astype(np.float32) * 0.3  # 1 s


def _deadline_of(event: FailoverEvent) -> float:
    """The deadline a member missed, from the event's reason ``no [first ]audio within D s (stalled)``."""
    assert event.reason.endswith(" s (stalled)"), event.reason
    return float(event.reason.split()[-3])


async def _say(tts: FailoverTTS) -> np.ndarray:
    chunks = [c async for c in tts.synthesize("hello")]
    assert [c.audio.offset for c in chunks[1:]] == [c.audio.end for c in chunks[:-1]] and chunks[0].audio.offset == 0
    return np.concatenate([c.audio.pcm for c in chunks])


async def test_a_hung_member_is_abandoned_at_its_deadline_and_closed() -> None:
    primary, backup = Scripted(PCM, hang_after=20), Scripted(PCM)
    events: list[FailoverEvent] = []
    tts = FailoverTTS([primary, backup], FailoverOptions(on_event=events.append), names=["primary", "backup"])
    try:
        assert tts.deadline(0, first=True) == pytest.approx(0.9)  # nothing known yet
        np.testing.assert_array_equal(await _say(tts), PCM)  # whole: nothing repeated, nothing missing
        [event] = [e for e in events if e.kind == "failover"]
        assert (event.from_url, event.to_url) == ("primary", "backup")
        assert event.reason.startswith("no audio within")  # mid-sentence: the gap deadline
        assert 0.4 <= _deadline_of(event) < 0.9  # 0.4 (the floor: quick chunks) unless this machine stalled
        assert event.progress == f"{20 * PIECE} samples"
        tts.group.down.add(1)
        assert tts.deadline(0, first=False) is None  # nothing up to move to: the member is waited for
    finally:
        await tts.aclose()
    assert primary.closed == 1 and backup.closed == 1  # the abandoned stream was closed in the background


async def test_a_slow_but_steady_member_is_not_abandoned() -> None:
    slow = Scripted(PCM[:4400], first=0.5, gap=0.05)  # a neural voice rendering each sentence first
    events: list[FailoverEvent] = []
    tts = FailoverTTS([slow, Scripted(PCM)], FailoverOptions(on_event=events.append))
    try:
        for _ in range(2):
            np.testing.assert_array_equal(await _say(tts), PCM[:4400])
        assert events == []
        assert tts.deadline(0, first=True) == pytest.approx(0.899, abs=0.01)  # learned: over twice 0.5 s, capped
    finally:
        await tts.aclose()


async def test_a_lone_member_is_waited_for() -> None:
    tts = FailoverTTS([Scripted(PCM[:2200], first=1.0)])
    try:
        np.testing.assert_array_equal(await _say(tts), PCM[:2200])
    finally:
        await tts.aclose()


async def test_cancelling_the_caller_closes_the_member() -> None:
    hung = Scripted(PCM, hang_after=0)
    tts = FailoverTTS([hung], FailoverOptions(tts_deadline=None))
    task = asyncio.create_task(_say(tts))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await tts.aclose()
    assert hung.closed == 1


# --- a real hung service behind the real server ----------------------------------------------------------

QUESTION = (
    "Tell me everything about the harbour, the boats, the fishermen, the lighthouse, the gulls, "
    "the market by the water and the old stone bridge over the river."
)


async def _reply_with_a_hung_primary(
    services: list[Service], options: FailoverOptions, stop_when_hung: bool = False
) -> tuple[TurnReport, list[FailoverEvent]]:
    """One typed turn through the real server whose TTS is [a service that hangs after 1.5 s of audio, a
    healthy service]; engine-sim plays the reply in real time and acks it, like an engine."""
    primary = fault_serve("hang", "tts", "--after", "150")
    backup = facecast_serve("tts")
    services += [primary, backup]
    settings = replace(Settings(**LIGHT), tts=f"{primary.url},{backup.url}", livelink=("off",))
    events: list[FailoverEvent] = []
    holder: list[BackgroundServer] = []

    def on_event(event: FailoverEvent) -> None:
        events.append(event)
        for server in holder:
            server.state.broadcast("failover", role=event.role, event=event.kind, reason=event.reason)

    options = replace(options, on_event=on_event)
    tts = FailoverTTS([RemoteTTS(primary.url, options.client), RemoteTTS(backup.url, options.client)], options)
    built = replace(build_services(settings), tts=tts)

    async def stop() -> None:
        await asyncio.to_thread(primary.wait_for, HUNG, 60)
        primary.signal(signal.SIGSTOP)  # now nothing answers at all, not even pings

    stopper = asyncio.create_task(stop()) if stop_when_hung else None
    try:
        async with BackgroundServer(settings, built) as server:
            holder.append(server)
            async with EngineSim(SimConfig(url=server.ws_url)) as sim:
                report = TurnReport(speech_end=time.monotonic())
                await sim.ws.send(json.dumps({"type": "text", "text": QUESTION}))
                report = await sim.receive_reply(report, timeout=60)
    finally:
        if stopper is not None:
            await stopper
    return report, events


def _whole(report: TurnReport) -> tuple[int, int]:
    """The reply's (samples, underruns) after checking it arrived whole, once."""
    [utt] = report.utterances
    assert utt.ended and utt.text == echo_reply([ChatMessage("user", QUESTION)])
    assert utt.discontinuities == 0  # no repeated and no missing samples
    end = next(m for m in report.messages if m["type"] == "utterance_end")
    assert utt.samples == end["samples"]
    return utt.samples, utt.underruns


@pytest.mark.parametrize("hang", ["synthesis stuck", "process stopped"])
async def test_a_hung_tts_service_is_replaced_before_the_engine_runs_dry(services: list[Service], hang: str) -> None:
    report, events = await _reply_with_a_hung_primary(services, FailoverOptions(), hang == "process stopped")
    samples, underruns = _whole(report)
    # Every audio frame reached the engine before the moment it was due to play: the backup's first audio
    # came while the engine still played what the primary had delivered.
    assert underruns == 0
    failovers = [e for e in events if e.kind == "failover"]
    assert failovers and all(_deadline_of(e) < 0.9 for e in failovers)  # its deadline (0.4 s), not the heartbeat
    assert int(failovers[0].progress.split()[0]) > 0  # the first came mid-sentence, after the primary's audio
    if hang == "process stopped":
        assert len(failovers) == 1  # its probes fail: it stays down
    # (a stuck synthesis still answers the probes' pings, so it is tried again for each sentence, and each
    # time abandoned at its deadline: still no underrun)
    assert any(m["type"] == "failover" for m in report.messages)  # the engine was told


async def test_without_the_deadline_the_engine_runs_dry(services: list[Service]) -> None:
    # The old behaviour, as a control: the hang is noticed by the client's stall timeout, after the engine
    # has played everything it had, so audio arrives after it was due (the test above can see underruns).
    options = FailoverOptions(ClientOptions(stall_timeout=2.5), tts_deadline=None)
    report, events = await _reply_with_a_hung_primary(services, options)
    _, underruns = _whole(report)
    assert underruns > 0
    # noticed only by the stall timeout (once per piece of the reply sent to the stuck primary again)
    reasons = [e.reason for e in events if e.kind == "failover"]
    assert reasons and set(reasons) == {"no output for 2.5 s"}
