"""The benchmark scenarios run end to end on tiny settings (their numbers are not asserted: speed belongs in
docs/benchmarks.md, not in unit tests; what is asserted is that each scenario measures something real)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from facecast.bench.compare_bench import streaming_vs_neurosync
from facecast.bench.livelink_bench import jitter, sync_error
from facecast.bench.llm_bench import installed_models, llm_table
from facecast.bench.report import Table, percentiles
from facecast.bench.resources_bench import measure_component, package_sizes
from facecast.bench.scale_bench import scale
from facecast.bench.stt_bench import stt_accuracy
from facecast.bench.tts_bench import tts_table
from facecast.bench.turns_bench import CHAIN, VAD_END, real_questions, voice_to_voice
from facecast.config import Settings
from facecast.llm import EchoLLM
from facecast.services import Services, build_services, make_face, make_stt, make_tts, warm_up


def test_percentiles_and_tables() -> None:
    assert percentiles([1.0, 2.0, 3.0], (50,)) == [2.0]
    table = Table("t", ["a", "b"])
    table.add("x", 1.5)
    assert "| x | 1.50 |" in table.markdown()


async def test_scenarios_produce_complete_numbers() -> None:
    services = Services(
        make_stt("pocketsphinx"), EchoLLM(), make_tts("espeak"), make_face("phonetic"), audio_face=make_face("learned")
    )
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


def _number(cell: str) -> float:
    value = float(cell.split()[0].split("/")[0])  # "6/8 (75%)" -> 6
    assert value == value, cell
    return value


def test_only_groups_are_parsed() -> None:
    from facecast.bench import GROUPS, parse_only

    assert parse_only(None) == GROUPS
    assert parse_only("tts, stt") == ("stt", "tts")  # run in the suite's order
    with pytest.raises(ValueError, match="nope"):
        parse_only("stt,nope")


async def test_stt_table_has_every_number() -> None:
    table, raw = await stt_accuracy(True, per_category=1)
    categories = {r[1] for r in table.rows}
    assert {"read", "conversational", "jargon", "hard", "read + conversational"} <= categories
    for row in table.rows:  # clips, words, WER %, real-time factor, peak RSS MB
        assert all(_number(c) >= 0 for c in row[2:]) and _number(row[-1]) > 0, row
    assert isinstance(raw["peak_rss_mb"], dict) and set(raw["peak_rss_mb"]) == {"whisper base (beam 1)", "pocketsphinx"}


async def test_tts_table_has_every_number() -> None:
    table, raw = await tts_table(("espeak",), count=1)
    [row] = table.rows
    assert row[0] == "espeak" and all(_number(c) >= 0 for c in row[1:]) and _number(row[6]) > 0  # peak RSS
    report = raw["espeak"]
    assert isinstance(report, dict) and report["words"] > 0 and len(report["first_chunk_s"]) == 1


async def test_llm_table_has_every_number() -> None:
    models = installed_models()
    if not models:
        pytest.skip("no embedded language model installed")
    table, _ = await llm_table(1, models[-1:])  # the smallest installed (SmolLM2 when there)
    [row] = table.rows
    assert all(_number(c) >= 0 for c in row[1:]) and _number(row[-2]) > 0 and _number(row[-1]) > 0


async def test_voice_to_voice_on_real_speech_with_the_default_stt_and_tts() -> None:
    settings = replace(Settings(), llm="echo")  # the real LLM is measured by its own table; this stays cheap
    services = build_services(settings)
    await warm_up(services)
    questions = real_questions(1)
    assert questions and 1.5 <= (len(questions[0][0]) / questions[0][1]) - 1.7 <= 5.0
    table, raw = await voice_to_voice(services, 1, label="test", questions=questions, settings=settings)
    assert raw["answered"] == 1 and "test" in table.title
    assert [r[0].strip() for r in table.rows] == [
        "TOTAL (client measured)",
        VAD_END,
        *(n for n, _, _ in CHAIN),
        "first face frame",
        "unaccounted (transport)",
    ]
    for row in table.rows:
        assert all(c != "-" for c in row[1:]), row
    assert _number(table.rows[0][1]) > 0


async def test_resources_measure_components_and_disk(tmp_path: Path) -> None:
    tts = await measure_component("tts", "hibari", 1, tmp_path)
    face = await measure_component("face", "phonetic", 1, tmp_path)  # animates the TTS's saved output
    for report in (tts, face):
        assert report["media_s"] > 0 and report["rtf"] > 0 and report["peak_rss_mb"] > 0
    assert face["frames"] > 0
    sizes = package_sizes([("stt", "whisper"), ("tts", "hibari")])
    assert sizes["stt:whisper"]["mb"] > 100 and "faster-whisper" in sizes["stt:whisper"]["packages"]
    assert sizes["total"]["mb"] > sizes["core"]["mb"] > 0
