"""The provider benchmark's measuring part: the cloud adapter's own cost per message."""

from __future__ import annotations

import types
from collections.abc import AsyncIterator

import numpy as np
import pytest

from facecast.bench import parse_only, provider_bench
from facecast.bench.provider_bench import _per_hop
from facecast.types import AudioChunk, SpeechChunk

NOW = [0.0]
"""A virtual clock (seconds): the fakes advance it instead of sleeping, so nothing depends on the machine."""


@pytest.fixture(autouse=True)
def _virtual_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    NOW[0] = 0.0
    monkeypatch.setattr(provider_bench, "time", types.SimpleNamespace(perf_counter=lambda: NOW[0]))


class _Client:
    """A 'cloud client' that receives three frames through its module's ``receive_json`` and works on each
    for ``work`` seconds before yielding its chunk."""

    sample_rate = 16000

    def __init__(self, module: types.SimpleNamespace, work: float) -> None:
        self.module, self.work = module, work

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        for _ in range(3):
            await self.module.receive_json()
            NOW[0] += self.work  # the adapter's own work on the frame
            yield SpeechChunk(AudioChunk(np.zeros(160, np.float32), 16000))


async def test_per_hop_measures_the_adapter_work_after_each_frame() -> None:
    async def receive_json() -> dict[str, str]:
        NOW[0] += 0.05  # the network: not counted
        return {}

    module = types.SimpleNamespace(receive_json=receive_json)
    fast = await _per_hop(module, lambda: _Client(module, 0.0), runs=2)
    slow = await _per_hop(module, lambda: _Client(module, 0.03), runs=2)
    assert len(fast) == len(slow) == 6
    assert fast == [0.0] * 6  # the 50 ms of network is not counted...
    assert slow == pytest.approx([30.0] * 6)  # ...the 30 ms of work on each frame is
    assert module.receive_json is receive_json  # the patch is undone


def test_providers_is_a_bench_group() -> None:
    assert parse_only("providers") == ("providers",)
