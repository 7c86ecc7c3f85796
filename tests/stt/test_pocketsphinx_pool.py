"""The server's PocketSphinx keeps the decoders its concurrent turns needed (up to ``max_recognisers``).

Found by the soak (``facecast bench --soak``): with four speaking sessions and a pool of two, a decoder was
freed after most turns and created again for the next (0.15-0.5 s of CPU each time in a binding that holds
the GIL, every session late meanwhile, and ~95 MB freed and allocated again)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from tests.conftest import LIGHT

from facecast.config import Settings
from facecast.services import make_stt
from facecast.stt.pocketsphinx import PocketSphinxSTT

from .test_pocketsphinx import chunks, run, speak


async def test_a_server_reuses_the_decoders_of_its_concurrent_turns() -> None:
    stt = make_stt("pocketsphinx", replace(Settings(**LIGHT), max_recognisers=4))
    assert isinstance(stt, PocketSphinxSTT)
    pcm, rate = await speak("good morning")
    for _ in range(3):  # three rounds of three turns at once
        await asyncio.gather(*(run(stt, chunks(pcm, rate, chunk_ms=40, pause=0.002)) for _ in range(3)))
        assert stt.idle_decoders == 3
    assert stt.decoders_created == 3  # made in the first round, reused in the others
    stt.close()


async def test_the_pool_is_never_under_two() -> None:
    stt = make_stt("pocketsphinx", replace(Settings(**LIGHT), max_recognisers=0))  # 0: no limit
    pcm, rate = await speak("hello")
    await asyncio.gather(*(run(stt, chunks(pcm, rate, chunk_ms=40, pause=0.002)) for _ in range(3)))
    assert stt.decoders_created == 3 and stt.idle_decoders == 2
    stt.close()
