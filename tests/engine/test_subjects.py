"""Live Link subjects that stay put: names kept across reconnects, clashes refused with an error naming the
owner, the idle face lingering between sessions. Sessions drive a real :class:`LiveLinkOutput` whose packets
are received over real UDP on loopback and decoded."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tests.engine.test_session import Recorder
from tests.fakes import FakeFace, FakeLLM, FakeSTT, FakeTTS

from facecast.characters import Character
from facecast.engine.livelink import LiveLinkSender, parse_targets
from facecast.engine.outputs import LiveLinkOutput
from facecast.engine.session import EngineSession
from facecast.face.arkit import INDEX
from facecast.protocol.livelink import LiveLinkFrame, decode_frame
from facecast.services import Services

CHARACTERS = {"mora": Character("mora", "You are Mora.", subject="Mora"), "bo": Character("bo", subject="Bo")}
JAW = INDEX["JawOpen"]


class Receiver(asyncio.DatagramProtocol):
    """An Unreal stand-in: every Live Link packet, decoded, with its arrival time."""

    def __init__(self) -> None:
        self.packets: list[tuple[float, LiveLinkFrame]] = []

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.packets.append((time.monotonic(), decode_frame(data)))

    def of(self, subject: str, since: float = 0.0, until: float = float("inf")) -> list[LiveLinkFrame]:
        return [p for t, p in self.packets if p.subject == subject and since <= t <= until]

    def subjects(self, since: float = 0.0) -> set[str]:
        return {p.subject for t, p in self.packets if t >= since}


@asynccontextmanager
async def livelink(linger: float) -> AsyncIterator[tuple[LiveLinkOutput, Receiver]]:
    loop = asyncio.get_running_loop()
    transport, receiver = await loop.create_datagram_endpoint(Receiver, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        async with LiveLinkOutput(LiveLinkSender(parse_targets([f"127.0.0.1:{port}"])), linger=linger) as output:
            yield output, receiver
    finally:
        transport.close()


async def connect(output: LiveLinkOutput, **hello: object) -> tuple[EngineSession, Recorder]:
    """A session on ``output`` that sent ``hello``; check its welcome or error in the recorder."""
    rec = Recorder()
    services = Services(FakeSTT(), FakeLLM("Aye."), FakeTTS(rate=16000), FakeFace())
    session = EngineSession(services, rec, outputs=[output], characters=CHARACTERS)
    await session.handle_text(json.dumps({"type": "hello", **hello}))
    return session, rec


def subject(rec: Recorder) -> str:
    [welcome] = rec.of_type("welcome")
    return str(welcome["livelink"]["subject"])


async def until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def streams(receiver: Receiver, subject: str, since: float, count: int = 3) -> None:
    """Wait until ``count`` packets of ``subject`` arrived after ``since``."""
    await until(lambda: len(receiver.of(subject, since=since)) >= count)


async def test_a_reconnecting_character_gets_its_subject_back_and_its_face_never_stops() -> None:
    async with livelink(linger=5.0) as (output, receiver):
        first, rec = await connect(output, character="mora")
        default, rec_default = await connect(output)
        assert (subject(rec), subject(rec_default)) == ("Mora", "Facecast")
        await until(lambda: len(receiver.of("Mora")) >= 5)
        for _ in range(3):  # PIE stopped and started again, three times
            await first.close()
            await default.close()
            closed = time.monotonic()
            await streams(receiver, "Mora", since=closed)  # the face goes on between the sessions
            assert output.owners == {}
            first, rec = await connect(output, character="mora")
            default, rec_default = await connect(output)
            assert (subject(rec), subject(rec_default)) == ("Mora", "Facecast")  # not Mora-2, Facecast-2...
            assert output.owners.keys() == {"Mora", "Facecast"}
        await streams(receiver, "Mora", since=time.monotonic())
        await first.close()
        await default.close()
    assert {p.subject for _, p in receiver.packets} == {"Mora", "Facecast"}
    mora = receiver.of("Mora")
    assert {p.device_id for p in mora} == {"Facecast:Mora"}
    numbers = [p.frame_number for p in mora]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)  # one stream, in order, throughout
    # No hole in the stream across the three reconnects (generous: a loaded machine may skip a few frames).
    assert max(b - a for a, b in zip(numbers, numbers[1:], strict=False)) < 30


async def test_a_subject_clash_is_an_error_naming_the_owner_and_changes_nothing() -> None:
    async with livelink(linger=5.0) as (output, receiver):
        first, rec_first = await connect(output, subject="Ada", character="mora")
        assert subject(rec_first) == "Ada"
        second, rec = await connect(output, subject="Ada")
        [error] = rec.of_type("error")
        assert error["code"] == "subject_taken"
        assert "'Ada'" in error["message"] and "character 'mora'" in error["message"]
        assert not rec.of_type("welcome") and second.hello is None and output.owners.keys() == {"Ada"}
        # The refused connection stays open for another hello.
        await second.handle_text(json.dumps({"type": "hello", "subject": "Bea"}))
        assert subject(rec) == "Bea"
        # A name claimed ahead of time is skipped by sessions that did not ask for it, never taken from them.
        claimer, rec_claimer = await connect(output, subject="Facecast-2")
        plain = [await connect(output) for _ in range(2)]
        assert subject(rec_claimer) == "Facecast-2"
        assert [subject(rec) for _, rec in plain] == ["Facecast", "Facecast-3"]
        # The first session is unaffected: its subject streams and its turn plays on it.
        await first.handle_text(json.dumps({"type": "text", "text": "hello"}))
        start = await rec_first.wait_for("utterance_start")
        acked = time.monotonic()
        await first.handle_text(json.dumps({"type": "playback_started", "utterance": start["utterance"]}))
        await rec_first.wait_for("utterance_end")
        await until(lambda: any(p.values[JAW] > 0.4 for p in receiver.of("Ada", since=acked)))
        assert [e["code"] for e in rec_first.of_type("error")] == []
        for session in (first, second, claimer, *(s for s, _ in plain)):
            await session.close()


async def test_a_hello_racing_the_close_of_its_previous_session_still_gets_the_subject() -> None:
    async with livelink(linger=5.0) as (output, _):
        previous, _ = await connect(output, subject="Ada")

        async def close_soon() -> None:  # the server sees the old connection go a moment after the new hello
            await asyncio.sleep(0.1)
            await previous.close()

        closing = asyncio.create_task(close_soon())
        session, rec = await connect(output, subject="Ada")
        await closing
        assert subject(rec) == "Ada" and rec.of_type("error") == []
        await session.close()


async def test_an_ended_sessions_face_lingers_for_the_set_time_then_stops() -> None:
    linger = 0.5
    async with livelink(linger=linger) as (output, receiver):
        session, rec = await connect(output, subject="Ada")
        await until(lambda: len(receiver.of("Ada")) >= 3)
        closing = time.monotonic()
        await session.close()
        await until(lambda: not output.pacer.subjects, timeout=linger + 5)
        gone = time.monotonic()
        assert gone - closing >= linger
        lingered = receiver.of("Ada", since=closing + 0.05, until=closing + linger - 0.1)
        assert len(lingered) >= 0.5 * (linger - 0.15) * 60  # the idle face went on (60 fps, with slack)
        await asyncio.sleep(0.1)  # what was sent before the subject stopped has arrived
        stopped = len(receiver.of("Ada"))
        await asyncio.sleep(0.3)
        assert len(receiver.of("Ada")) == stopped  # then nothing more
        # A later session of the name starts a new stream.
        session, rec = await connect(output, subject="Ada")
        assert subject(rec) == "Ada"
        await streams(receiver, "Ada", since=time.monotonic())
        await session.close()


async def test_without_linger_a_subject_stops_with_its_session() -> None:
    async with livelink(linger=0.0) as (output, _):
        session, rec = await connect(output, character="bo")
        assert [c.name for c in output.pacer.subjects] == ["Bo"]
        await session.close()
        assert output.pacer.subjects == () and output.owners == {}


async def test_two_characters_drive_their_own_subjects_at_once() -> None:
    async with livelink(linger=5.0) as (output, receiver):
        mora, rec_mora = await connect(output, character="mora")
        bo, rec_bo = await connect(output, character="bo")
        assert (subject(rec_mora), subject(rec_bo)) == ("Mora", "Bo")
        await mora.handle_text(json.dumps({"type": "text", "text": "hello"}))
        start = await rec_mora.wait_for("utterance_start")
        acked = time.monotonic()
        await mora.handle_text(json.dumps({"type": "playback_started", "utterance": start["utterance"]}))
        await rec_mora.wait_for("utterance_end")
        await until(lambda: any(p.values[JAW] > 0.4 for p in receiver.of("Mora", since=acked)))
        await streams(receiver, "Bo", since=time.monotonic())
        await mora.close()
        await bo.close()
    assert {p.device_id for _, p in receiver.packets} == {"Facecast:Mora", "Facecast:Bo"}
    assert not any(p.values[JAW] > 0.4 for p in receiver.of("Bo"))  # only Mora spoke
    assert len(receiver.of("Bo", since=acked)) >= 10  # Bo's idle face streamed all along


def test_the_welcome_names_the_live_link_subject_whatever_other_outputs_describe() -> None:
    from facecast.engine.session import livelink_info
    from facecast.protocol import engine as proto

    vmc = {"output": "vmc", "targets": ["127.0.0.1:39539"]}
    livelink = {"subject": "Mora", "device_id": "Facecast:Mora", "epoch": 12.5}
    assert livelink_info([vmc, livelink]) == proto.LiveLinkInfo("Mora", "Facecast:Mora", 12.5)
    assert livelink_info([vmc]) is None  # --livelink off with VMC: no livelink in the welcome (used to crash)
    assert livelink_info([]) is None
    assert livelink_info([{"subject": "Bo", "device_id": "d"}]) == proto.LiveLinkInfo("Bo", "d", None)
