"""End to end: a real server with ``--vmc`` and ``--vts`` holds a conversation with the reference engine client
while python-osc's own OSC server receives the VMC stream and a local implementation of the VTube Studio
plugin API (tests/servers/vts_server.py, not VTube Studio) receives the injections; VTube Studio dropping
its socket mid-conversation does not stop the conversation."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import httpx
from tests.conftest import LIGHT
from tests.engine.test_vmc import osc_receiver
from tests.servers.vts_server import VtsServer

from facecast.config import Settings
from facecast.engine.sim import EngineSim, SimConfig
from facecast.engine.vmc import PERFECT_SYNC_NAMES
from facecast.face.phonetic import PhoneticAnimator
from facecast.llm.echo import EchoLLM
from facecast.server import BackgroundServer
from facecast.services import Services, make_stt
from facecast.tts.espeak import EspeakTTS


async def test_a_conversation_drives_vmc_and_vtube_studio(tmp_path: Path) -> None:
    services = Services(make_stt("pocketsphinx"), EchoLLM(), EspeakTTS(), PhoneticAnimator())
    with osc_receiver() as (port, received):
        async with VtsServer() as vts:
            settings = replace(
                Settings(**LIGHT),
                livelink=("off",),
                vmc=(f"127.0.0.1:{port}",),
                vts=vts.url,
                vts_token_file=str(tmp_path / "vts-tokens.json"),
            )
            async with BackgroundServer(settings, services) as server:
                async with httpx.AsyncClient() as client:
                    health = (await client.get(server.http_url + "/health")).json()
                assert [o["output"] for o in health["outputs"]] == ["vmc", "vts"]
                async with EngineSim(SimConfig(url=server.ws_url, rate=24000)) as sim:
                    first = await sim.say_text("Maybe we should buy a map.")
                    frames_before = len(received.snapshot())
                    await vts.drop()  # VTube Studio restarts mid-conversation
                    second = await sim.say_text("Then we can find the lake.")
                    deadline = time.monotonic() + 10
                    while vts.connections < 2 or not vts.injections or vts.injections[-1].connection < 2:
                        assert time.monotonic() < deadline, "VTube Studio was not reconnected"
                        await asyncio.sleep(0.05)
    assert not first.errors and not second.errors
    assert second.utterances and second.utterances[0].text == "You said: Then we can find the lake."
    frames = received.snapshot()
    assert len(frames) > frames_before > 30
    for frame in frames:
        names = [args[0] for address, args in frame if address == "/VMC/Ext/Blend/Val"]
        assert names == list(PERFECT_SYNC_NAMES) and frame[-1][0] == "/VMC/Ext/Blend/Apply"
    jaw = [dict((a[0], a[1]) for addr, a in f if addr == "/VMC/Ext/Blend/Val")["JawOpen"] for f in frames]
    assert max(jaw) > 0.2  # the spoken reply moved the mouth
    assert max(i.values["MouthOpen"] for i in vts.injections) > 0.1
    assert vts.count("AuthenticationTokenRequest") == 1  # the stored token served the reconnection
