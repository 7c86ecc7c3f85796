"""The floor: no reply starts while the player speaks (:mod:`facecast.engine.floor`).

The listener part runs real webrtcvad on espeak speech; the session part runs a real engine session over an
in-memory transport, with push-to-talk turns (the client opens and closes each turn, so the order of events
is exact) and fake speech-to-text / voice / face (fast). The live end-to-end check, a real recording through
a real server and engine-sim, is in tests/engine/test_turns_live.py.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
from tests.engine.test_listen import CHUNK, speech
from tests.engine.test_session import Recorder
from tests.fakes import FakeFace, FakeSTT, FakeTTS

from facecast.engine.floor import Floor
from facecast.engine.listen import HeardUtterance, Listener, ListenerCallbacks
from facecast.engine.session import EngineSession, SessionConfig
from facecast.errors import FacecastError
from facecast.llm.echo import EchoLLM
from facecast.metrics import Metrics
from facecast.protocol import engine as proto
from facecast.services import Services
from facecast.vad import VAD_RATE, TurnConfig


async def test_the_floor_is_free_until_taken_and_until_every_turn_gave_it_back() -> None:
    floor = Floor()
    assert await floor.wait() == 0.0
    first, second = object(), object()
    floor.take(first)
    floor.take(second)
    waiting = asyncio.create_task(floor.wait())
    floor.give(first)
    await asyncio.sleep(0.05)
    assert floor.player and not waiting.done()  # the second turn still holds it
    floor.give(second)
    assert await asyncio.wait_for(waiting, 1) > 0.0
    floor.give(object())  # an unknown turn changes nothing
    assert not floor.player


async def test_a_reply_waits_for_the_player_at_most_the_limit() -> None:
    floor = Floor(limit=0.1)
    floor.take(object())
    waited = await asyncio.wait_for(floor.wait(), 2)
    assert 0.09 <= waited < 1.0
    assert floor.player  # the turn still holds it; only this wait gave up


async def listened(audio: np.ndarray, text: str) -> tuple[list[bool], Floor]:
    """Feed ``audio`` to a listener (server turns) whose speech-to-text answers ``text``; whether the player
    held the floor at each utterance handed on."""
    floor = Floor()
    held: list[bool] = []

    async def on_heard(heard: HeardUtterance) -> None:
        held.append(floor.player)

    async def nothing(*_: object) -> None:
        return None

    async def on_error(exc: FacecastError) -> None:
        raise AssertionError(exc)

    callbacks = ListenerCallbacks(nothing, on_heard, nothing, on_error)
    listener = Listener(FakeSTT(text), VAD_RATE, callbacks, TurnConfig(end_ms=300), floor=floor)
    taken = False
    try:
        for start in range(0, len(audio), CHUNK):
            listener.feed(audio[start : start + CHUNK])
            taken = taken or floor.player
            for _ in range(5):
                await asyncio.sleep(0)
        for _ in range(20):
            await asyncio.sleep(0)
        assert taken  # the turn took the floor while the player spoke
        return held, floor
    finally:
        await listener.close()


async def test_a_turn_holds_the_floor_until_its_utterance_was_handed_on() -> None:
    audio = await speech(0.3, "I would like to buy the red one", 0.8)
    held, floor = await listened(audio, "i would like to buy the red one")
    assert held == [True]  # still the player's while the utterance starts its reply (which replaces any waiting)
    assert not floor.player  # and given back right after


async def test_a_turn_without_words_gives_the_floor_back() -> None:
    audio = await speech(0.3, "hmm", 0.8)
    held, floor = await listened(audio, "")
    assert held == []  # no utterance
    assert not floor.player


def make(stt: FakeSTT) -> tuple[EngineSession, Recorder, Metrics]:
    """A real session (echo LLM, fake voice and face) over an in-memory transport, with its metrics."""
    rec, metrics = Recorder(), Metrics()
    services = Services(stt, EchoLLM(), FakeTTS(rate=16000), FakeFace())
    return EngineSession(services, rec, SessionConfig(), metrics=metrics), rec, metrics


def held(metrics: Metrics, outcome: str) -> float:
    return float(metrics.held.labels(outcome)._value.get())


async def _open_push_to_talk_turn(session: object) -> None:
    await session.handle_text(  # type: ignore[attr-defined]
        json.dumps({"type": "hello", "mic": {"rate": 16000, "channels": 1}, "turns": "client"})
    )
    pcm = np.zeros(3200, dtype="<i2").tobytes()
    for i in range(3):
        await session.handle_bytes(proto.encode_mic(i * 3200, pcm))  # type: ignore[attr-defined]


async def _play(session: object, rec: Recorder) -> dict[str, object]:
    """Acknowledge the first utterance like an engine; its ``timing``."""
    start = await rec.wait_for("utterance_start")
    await rec.wait_audio()
    await session.handle_text(  # type: ignore[attr-defined]
        json.dumps({"type": "playback_started", "utterance": start["utterance"]})
    )
    return await rec.wait_for("timing")


async def test_a_reply_waits_while_the_player_speaks_and_the_turn_it_was_waiting_for_replaces_it() -> None:
    session, rec, metrics = make(FakeSTT("the red one"))
    try:
        await _open_push_to_talk_turn(session)
        await session.handle_text(json.dumps({"type": "text", "text": "I'd like to buy"}))
        await asyncio.sleep(0.3)
        assert not rec.of_type("utterance_start")  # the player is talking: nothing of the reply goes out
        await session.handle_text(json.dumps({"type": "end_of_speech"}))
        await _play(session, rec)
        end = await rec.wait_for("utterance_end")
        # one reply, to the whole thought: the typed half and the spoken half are one player message
        assert len(rec.of_type("utterance_start")) == 1
        assert end["text"] == "You said: I'd like to buy the red one."
        assert not rec.of_type("clear_buffer")  # the client never saw the reply that waited
        assert held(metrics, "cancelled") == 1 and held(metrics, "released") == 0
    finally:
        await session.close()


async def test_a_reply_held_by_a_noise_without_words_goes_out_after_it() -> None:
    session, rec, metrics = make(FakeSTT(""))
    try:
        await _open_push_to_talk_turn(session)
        await session.handle_text(json.dumps({"type": "text", "text": "hello"}))
        await asyncio.sleep(0.3)
        assert not rec.of_type("utterance_start")
        await session.handle_text(json.dumps({"type": "end_of_speech"}))
        timing = await _play(session, rec)
        stages = timing["stages"]
        assert isinstance(stages, dict)
        assert stages["held_until"] >= 250  # it waited for the player (ms from the typed text)
        end = await rec.wait_for("utterance_end")
        assert end["text"] == "You said: hello."
        assert held(metrics, "released") == 1 and held(metrics, "cancelled") == 0
    finally:
        await session.close()


async def test_a_reply_interrupted_while_it_waits_sends_the_client_nothing() -> None:
    session, rec, metrics = make(FakeSTT(""))
    try:
        await _open_push_to_talk_turn(session)
        await session.handle_text(json.dumps({"type": "text", "text": "hello"}))
        await asyncio.sleep(0.2)
        await session.handle_text(json.dumps({"type": "interrupt"}))
        await session.handle_text(json.dumps({"type": "end_of_speech"}))
        await asyncio.sleep(0.3)
        assert not rec.of_type("utterance_start") and not rec.of_type("clear_buffer")
        assert not any(isinstance(m, proto.AudioPacket) for m in rec.sent)
    finally:
        await session.close()


async def test_a_transcript_is_still_sent_while_a_reply_waits() -> None:
    session, rec, metrics = make(FakeSTT("the red one"))
    try:
        await _open_push_to_talk_turn(session)
        await session.handle_text(json.dumps({"type": "text", "text": "I'd like to buy"}))
        typed = await rec.wait_for("transcript")
        assert typed == {"type": "transcript", "text": "I'd like to buy", "final": True, "typed": True}
        await session.handle_text(json.dumps({"type": "end_of_speech"}))
        spoken = await rec.wait_for("transcript", 2)
        assert spoken["text"] == "the red one"
        await _play(session, rec)
    finally:
        await session.close()
