"""A failover as the engine sees it: the real server with two standalone TTS services, the primary killed
mid-reply; the reply continues from the backup and the engine client is told."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from dataclasses import replace

from tests.conftest import LIGHT

from facecast.config import Settings
from facecast.engine.sim import EngineSim, SimConfig, TurnReport
from facecast.server import BackgroundServer
from facecast.services import build_services

from .conftest import Service, facecast_serve


async def test_engine_client_gets_the_whole_reply_and_a_failover_message(services: list[Service]) -> None:
    primary, backup = facecast_serve("tts"), facecast_serve("tts")
    services += [primary, backup]
    settings = replace(Settings(**LIGHT), tts=f"{primary.url},{backup.url}", livelink=("off",))
    holder: list[BackgroundServer] = []

    def on_failover(event: object) -> None:
        for server in holder:
            server.state.broadcast("failover", role=getattr(event, "role"), event=getattr(event, "kind"))  # noqa: B009

    built = build_services(settings, on_failover=on_failover)
    question = (
        "Tell me everything about the harbour, the boats, the fishermen, the lighthouse, the gulls, "
        "the market by the water and the old stone bridge over the river."
    )
    async with BackgroundServer(settings, built) as server:
        holder.append(server)
        async with EngineSim(SimConfig(url=server.ws_url)) as sim:
            report = TurnReport(speech_end=time.monotonic())
            await sim.ws.send(json.dumps({"type": "text", "text": question}))

            async def kill_primary() -> None:
                while not (report.utterances and report.utterances[0].samples > 0):  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
                primary.signal(signal.SIGKILL)

            killer = asyncio.create_task(kill_primary())
            report = await sim.receive_reply(report, timeout=60)
            await killer
    [utt] = report.utterances
    assert utt.ended and utt.text == "You said: " + question
    assert utt.discontinuities == 0  # no repeated and no missing samples
    end = next(m for m in report.messages if m["type"] == "utterance_end")
    assert utt.samples == end["samples"]
    assert any(m["type"] == "failover" and m["role"] == "tts" for m in report.messages)
