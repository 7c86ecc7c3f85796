"""``facecast bench --scale`` (group ``pools``): the pure parts, no Ray: the real-time verdict from chunk
arrival times and from engine-sim's reports, and the tables built from raw numbers. The measurement itself
(a two-node Ray cluster, about 5 minutes on 2 cores) runs only as ``facecast bench --scale``."""

from __future__ import annotations

from typing import Any

from facecast.bench import GROUPS, ON_REQUEST, markdown_report, parse_only
from facecast.bench.scale_bench import first_audio_ms, held_in_real_time, late_chunks, pools_tables
from facecast.cli import build_parser
from facecast.engine.sim import TurnReport, UtteranceReport

RATE = 24000


def test_chunks_on_the_playback_clock_are_on_time() -> None:
    # 0.1 s chunks, each arriving 0.1 s after the previous: exactly as fast as they play, never late
    arrivals = [(10.0 + 0.1 * i, 2400) for i in range(20)]
    assert late_chunks(arrivals, RATE) == 0
    assert late_chunks([], RATE) == 0


def test_a_stall_longer_than_the_buffer_makes_the_chunks_after_it_late() -> None:
    arrivals = [(10.0, 2400), (10.1, 2400), (10.4, 2400), (10.45, 2400)]
    # due at 10.05 + offset: the third (offset 0.2 s, due 10.25) came at 10.4, the fourth (due 10.35) at 10.45
    assert late_chunks(arrivals, RATE) == 2
    # a start buffer longer than the stall absorbs it
    assert late_chunks(arrivals, RATE, start_buffer=0.25) == 0


def test_a_stall_shorter_than_the_buffer_is_not_late() -> None:
    assert late_chunks([(0.0, 2400), (0.14, 2400)], RATE) == 0  # due 0.15
    assert late_chunks([(0.0, 2400), (0.16, 2400)], RATE) == 1


def _turn(**utterance: Any) -> TurnReport:
    values = {"ended": True, "samples": 48000, "underruns": 0, "first_audio": 5.2, **utterance}
    return TurnReport(speech_end=5.0, utterances=[UtteranceReport(1, **values)])


def test_a_conversation_is_held_only_when_every_reply_is_complete_and_on_time() -> None:
    assert held_in_real_time([_turn(), _turn()])
    assert not held_in_real_time([_turn(), _turn(underruns=1)])  # late audio in the second reply
    assert not held_in_real_time([_turn(ended=False)])  # the reply never finished
    assert not held_in_real_time([_turn(samples=0)])  # no audio at all
    errored = _turn()
    errored.errors.append({"type": "error", "code": "service_unavailable", "message": "tts"})
    assert not held_in_real_time([errored])
    assert not held_in_real_time([TurnReport(speech_end=1.0)])  # no reply
    assert not held_in_real_time([])


def test_first_audio_is_measured_from_the_typed_text_and_skips_silent_turns() -> None:
    values = first_audio_ms([[_turn(first_audio=5.25)], [_turn(samples=0), _turn(first_audio=5.1)]])
    assert [round(v, 6) for v in values] == [250.0, 100.0]


def _raw() -> dict[str, Any]:
    def run(held: int, *latencies: float) -> dict[str, Any]:
        return {"held": held, "late_frames": 0, "first_audio_ms": list(latencies)}

    return {
        "tts": "hibari",
        "hop": {"plain ws://": ([40.0, 50.0], [60.0, 70.0]), "Ray Serve pool": ([45.0, 55.0], [66.0, 76.0])},
        "replicas": {
            "1": {"runs": {"1": run(1, 100.0), "2": run(2, 120.0, 140.0), "4": run(3, 900.0)}, "load_1min": 2.5},
            "2": {"runs": {"1": run(0, 3000.0)}, "load_1min": 3.0},
        },
        "recovery": {
            "replicas": 2,
            "recovery_ms": [80.0, 100.0, 90.0],
            "late": 1,
            "not_interrupted": 1,
            "failed": ["x"],
        },
        "load": "Machine load average 2.00, 2.00, 2.00 at the end (uptime).",
    }


def test_the_tables_report_the_largest_count_held_and_its_latency() -> None:
    hop, held, recovery = pools_tables(_raw())
    assert hop.rows[0] == ["plain ws://", "45.0", "49.9", "65.0", "69.9", "2"]
    assert hop.rows[1][0] == "Ray Serve pool" and hop.rows[1][1] == "50.0"
    # 1 replica: 1 and 2 held, 4 not (3 of 4): 2 held, latency at 2; 2 replicas: none held, latency at 1
    assert held.rows[0] == ["1", "2", "1, 2, 4", "130.0", "139.8", "2.50"]
    assert held.rows[1][:4] == ["2", "0", "1", "3000.0"]
    # 5 kills: 3 recovered, 1 reply lost, 1 kill after the whole reply had been sent
    assert recovery.rows == [["5", "4", "3", "90.0", "100.0", "1"]]
    assert "load average 2.00" in held.note


def test_no_kill_interrupted_a_reply_reads_as_such() -> None:
    raw = _raw()
    raw["recovery"] = {"replicas": 0, "recovery_ms": [], "late": 0, "not_interrupted": 0, "failed": []}
    [row] = pools_tables(raw)[2].rows
    assert row == ["0", "0", "0", "-", "-", "0"]


def test_the_group_runs_only_when_named_by_scale() -> None:
    assert "pools" in ON_REQUEST and "pools" not in GROUPS
    assert "pools" not in parse_only(None)
    assert parse_only("pools") == ("pools",)
    assert build_parser().parse_args(["bench", "--scale"]).scale
    report = markdown_report([], {"only": ["pools"], "wall_s": 1.0, "machine": "m"}, quick=False)
    assert "`facecast bench --scale --markdown" in report
