"""The VMC row of the Live Link jitter benchmark: the receiver process counts whole VMC frames only."""

from __future__ import annotations

import numpy as np

from facecast.bench.livelink_bench import _vmc_jitter_once
from facecast.bench.vmc_receiver import is_vmc_frame
from facecast.engine.vmc import VmcEncoder, build_bundle, vmc_messages


def test_only_whole_frames_count() -> None:
    frame = np.zeros(68, np.float32)
    assert is_vmc_frame(VmcEncoder().encode(1, 0.0, frame))
    messages = vmc_messages(frame, 0.0)
    assert not is_vmc_frame(build_bundle(messages[:-1]))  # no Apply
    assert not is_vmc_frame(build_bundle(messages[:10] + messages[-1:]))  # values missing
    assert not is_vmc_frame(build_bundle([*messages, messages[-1]]))  # two Applies
    assert not is_vmc_frame(b"#bundle\x00garbage") and not is_vmc_frame(b"stop?")


async def test_the_vmc_row_measures_a_real_stream() -> None:
    data = await _vmc_jitter_once(0.5)
    assert data["packets"][0] >= 20  # about 30 whole frames in 0.5 s
    assert len(data["interval_jitter_ms"]) == data["packets"][0] - 1
