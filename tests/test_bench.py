"""The benchmark scenarios run end to end on tiny settings (their numbers are not asserted: speed belongs in
docs/benchmarks.md, not in unit tests; what is asserted is that each scenario measures something real)."""

from __future__ import annotations

from facecast.bench.compare_bench import streaming_vs_neurosync
from facecast.bench.livelink_bench import jitter, sync_error
from facecast.bench.report import Table, percentiles
from facecast.bench.scale_bench import scale
from facecast.llm import EchoLLM
from facecast.pipeline import Services
from facecast.services import make_face, make_stt, make_tts


def test_percentiles_and_tables() -> None:
    assert percentiles([1.0, 2.0, 3.0], (50,)) == [2.0]
    table = Table("t", ["a", "b"])
    table.add("x", 1.5)
    assert "| x | 1.50 |" in table.markdown()


async def test_scenarios_produce_complete_numbers() -> None:
    services = Services(make_stt("pocketsphinx"), EchoLLM(), make_tts("espeak"), make_face("phonetic"),
                        audio_face=make_face("learned"))
    _, compare = await streaming_vs_neurosync(services, 1)
    one = compare["sentences_1"]
    assert isinstance(one, dict) and one["facecast_audio_ms"][0] > 0 and one["neurosync_audio_ms"][0] > 0
    _, scaled = await scale(services, (2,), 1)
    two = scaled["conversations_2"]
    assert isinstance(two, dict) and len(two["latency_ms"]) == 2
    _, synced = await sync_error(services, 1, (3,))
    three = synced["subjects_3"]
    assert isinstance(three, dict) and len(three["sync_error_ms"]) > 30 and three["face_before_ack"] == 0
    _, jit = await jitter(0.5, (3,))
    data = jit["subjects_3"]
    assert isinstance(data, dict) and data["packets"][0] >= 3 * 20  # three subjects streamed for 0.5 s
