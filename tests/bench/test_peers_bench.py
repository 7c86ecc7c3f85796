"""``facecast bench --peers``: Facecast side by side with a Pipecat pipeline on the same real components.

The bookkeeping is tested on records; the smoke test (it needs the ``bench`` and ``llamacpp`` extras and is
skipped without them) runs one real question through both stacks at the same time: Whisper base, one
llama-cpp-python server on the embedded Qwen model, the hibari voice.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from facecast.bench import ON_REQUEST, parse_only
from facecast.bench.peers_bench import (
    PIPECAT_STAGES,
    PIPELINE,
    QUICK,
    SETUPS,
    PeersConfig,
    _conversations,
    _pipecat_turn,
    _side_by_side,
    peers_tables,
)
from facecast.cli import build_parser
from facecast.errors import ConfigError


def _record(**changes: object) -> dict[str, object]:
    record: dict[str, object] = {
        "speech_end": 100.0,
        "events": {
            "vad_stop": 100.3,
            "transcript": 101.0,
            "turn_end": 101.001,
            "llm_first_token": 101.5,
            "tts_first_audio": 102.0,
        },
        "first_audio": 102.002,
        "samples": 4800,
        "late_chunks": 0,
        "transcript": "where is the harbour",
        "error": "",
    }
    record.update(changes)
    return record


def test_a_pipecat_record_becomes_stages_that_add_up() -> None:
    turn = _pipecat_turn(_record())
    assert turn["answered"]
    assert turn["total_ms"] == pytest.approx(2002.0)
    stages = turn["stages_ms"]
    assert [name for name, _, _ in PIPECAT_STAGES] == list(stages)
    assert stages["VAD stop (silence)"] == pytest.approx(300.0)
    assert stages["STT final"] == pytest.approx(700.0)
    assert sum(stages.values()) + turn["unaccounted_ms"] == pytest.approx(turn["total_ms"])
    assert turn["unaccounted_ms"] == pytest.approx(2.0)


def test_a_turn_without_reply_audio_is_not_answered_and_keeps_its_error() -> None:
    turn = _pipecat_turn(_record(first_audio=0.0, error="no reply within 90 s"))
    assert not turn["answered"] and turn["errors"] == ["no reply within 90 s"]
    assert "total_ms" not in turn


def test_conversations_start_at_different_questions() -> None:
    questions = [(np.full(4, k, np.float32), 16_000) for k in range(3)]
    convs = _conversations(questions, 2)
    assert [[int(p[0]) for p, _ in conv] for conv in convs] == [[0, 1, 2], [1, 2, 0]]


def test_the_side_by_side_table_gives_the_like_for_like_ratio() -> None:
    cfg = PeersConfig(conversations=(1,), setups=(2, 3))
    facecast = [{"answered": True, "total_ms": v, "unaccounted_ms": 1.0, "late": 0} for v in (600.0, 800.0)]
    pipecat = [{"answered": True, "total_ms": v, "unaccounted_ms": 0.5, "late": 1} for v in (1400.0, 1400.0)]
    table = _side_by_side({(2, 1): facecast, (3, 1): pipecat}, cfg, "1.14.0", 2)
    ratio = next(row for row in table.rows if "like for like" in row[0])
    assert ratio[3] == "0.50"  # 700 / 1400
    assert [row[6] for row in table.rows[:2]] == ["0", "2"]  # late audio chunks, summed over turns


def test_bad_peer_settings_are_refused() -> None:
    with pytest.raises(ConfigError):
        PeersConfig(conversations=())
    with pytest.raises(ConfigError):
        PeersConfig(setups=(len(SETUPS),))
    with pytest.raises(ConfigError):
        PeersConfig(questions=0)


def test_peers_runs_only_when_named() -> None:
    assert "peers" in ON_REQUEST and "peers" not in parse_only(None)
    assert parse_only("peers") == ("peers",)
    args = build_parser().parse_args(["bench", "--peers", "--quick"])
    assert args.peers and args.quick and args.conversations is None
    assert build_parser().parse_args(["bench", "--peers", "--conversations", "1,2"]).conversations == (1, 2)
    for bad in ("0", "a", ""):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["bench", "--peers", "--conversations", bad])


def test_each_stack_defaults_ratio_pairs_facecast_silence_with_pipecat_defaults() -> None:
    cfg = PeersConfig(conversations=(1,))
    rows = {
        i: [{"answered": True, "total_ms": v, "unaccounted_ms": 1.0, "late": 0}]
        for i, v in enumerate((900.0, 2000.0, 700.0, 1400.0))
    }
    table = _side_by_side({(i, 1): got for i, got in rows.items()}, cfg, "1.14.0", 1)
    ratios = {row[0]: row[3] for row in table.rows if "ratio" in row[0]}
    assert ratios["  ratio Facecast / Pipecat p50 (300 ms silence, like for like)"] == "0.50"  # 700 / 1400
    assert ratios["  ratio Facecast / Pipecat p50 (each stack's defaults)"] == "0.35"  # 700 / 2000: silence is ours
    assert ratios["  ratio Facecast / Pipecat p50 (both on smart turn)"] == "0.45"  # 900 / 2000
    assert "the default" in SETUPS[2][2] and "default" not in SETUPS[0][2]


def test_the_pipeline_ships_in_the_checkout() -> None:
    assert PIPELINE.is_file()
    assert "WhisperSTTService" in PIPELINE.read_text()


_MISSING = [m for m in ("pipecat", "llama_cpp") if importlib.util.find_spec(m) is None]


@pytest.mark.skipif(bool(_MISSING), reason=f"needs the bench and llamacpp extras ({', '.join(_MISSING)} missing)")
@pytest.mark.timeout(600)
async def test_smoke_one_real_question_through_both_stacks() -> None:
    tables, raw = await peers_tables(QUICK)
    runs = raw["runs"]
    assert set(runs) == {"facecast-silence-x1", "pipecat-silence-x1"}
    [facecast] = runs["facecast-silence-x1"]
    [pipecat] = runs["pipecat-silence-x1"]
    for turn in (facecast, pipecat):
        assert turn["answered"], turn
        assert "harbour" in turn["transcript"].lower() or len(turn["transcript"].split()) >= 3
        assert 0 < turn["total_ms"] < 60_000
        assert isinstance(turn["late"], int)  # counted (both stacks run at once here: not asserted, see the bench)
    assert facecast["stages_ms"]["endpointing"] == pytest.approx(300, abs=40)
    assert facecast["first_face_ms"] > 0 and facecast["face_late_ms"]
    # Pipecat's events come in pipeline order and end before its first sample leaves the output
    assert all(v >= 0 for v in pipecat["stages_ms"].values()), pipecat["stages_ms"]
    assert 0 <= pipecat["unaccounted_ms"] < 1000
    side = tables[0]
    assert side.title.startswith(f"Facecast vs Pipecat {raw['pipecat']}")
    ratio = next(row for row in side.rows if "like for like" in row[0])
    assert math.isfinite(float(ratio[3]))
    face = tables[-1]
    assert any("no face output" in cell for row in face.rows for cell in row)
