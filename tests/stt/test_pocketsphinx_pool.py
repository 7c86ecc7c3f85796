"""The server's PocketSphinx keeps the decoders its concurrent turns needed (up to ``max_recognisers``).

Found by the soak (``facecast bench --soak``): with four speaking sessions and a pool of two, a decoder was
freed after most turns and created again for the next (0.15-0.5 s of CPU each time in a binding that holds
the GIL, every session late meanwhile, and ~95 MB freed and allocated again)."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from typing import Any

import pytest
from tests.conftest import LIGHT

from facecast.config import Settings
from facecast.services import make_stt
from facecast.stt import pocketsphinx as pocketsphinx_module
from facecast.stt.pocketsphinx import PocketSphinxConfig, PocketSphinxSTT

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


class _Overlap:
    """Wraps a decoder: counts how many of its kind are inside a decoding call at once."""

    lock = threading.Lock()
    inside = 0
    most = 0

    def __init__(self, decoder: Any) -> None:
        self._decoder = decoder

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._decoder, name)
        if name not in ("process_raw", "end_utt", "hyp"):
            return method

        def counted(*args: Any) -> Any:
            with _Overlap.lock:
                _Overlap.inside += 1
                _Overlap.most = max(_Overlap.most, _Overlap.inside)
            try:
                time.sleep(0.001)  # lets another thread in, as a wait for the GIL would
                return method(*args)
            finally:
                with _Overlap.lock:
                    _Overlap.inside -= 1

        return counted


async def test_decoders_of_concurrent_turns_take_turns_so_the_event_loop_waits_for_one_call_at_most(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by the soak: with 4 conversations speaking, every decoder thread waited for the GIL beside the event
    loop, and replies to the typing conversations were ~1 s late."""
    make = pocketsphinx_module._DecoderFactory.__call__
    monkeypatch.setattr(pocketsphinx_module._DecoderFactory, "__call__", lambda self: _Overlap(make(self)))
    stt = PocketSphinxSTT(PocketSphinxConfig(processes=False, max_idle_decoders=4))  # decoders in this process
    pcm, rate = await speak("good morning to you")
    texts = await asyncio.gather(*(run(stt, chunks(pcm, rate, chunk_ms=40, pause=0.0)) for _ in range(3)))
    stt.close()
    assert _Overlap.most == 1
    assert all(results[-1].text for results in texts)  # each turn was decoded
