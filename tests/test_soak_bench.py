"""The soak benchmark (``facecast bench --soak``), short: the real server in its own process, honest engine-sim
conversations and hostile clients in theirs."""

from __future__ import annotations

import pytest

from facecast.bench import GROUPS, parse_only
from facecast.bench.hostile import CLOSE, PING, TEXT, frame, parse_frames
from facecast.bench.soak_bench import SoakConfig, soak


def test_soak_runs_only_when_named() -> None:
    assert "soak" not in parse_only(None) and parse_only(None) == GROUPS
    assert parse_only("soak") == ("soak",)
    assert parse_only("soak, stt") == ("stt", "soak")  # after the default groups
    with pytest.raises(ValueError, match="soak"):
        parse_only("soke")  # the message lists the groups, soak included


def test_hand_made_frames_round_trip() -> None:
    # Client frames are masked; the parser reads server (unmasked) frames, so parse unmasked ones.
    data = bytearray(frame(TEXT, b"x" * 300, masked=False) + frame(PING, b"", masked=False) + frame(CLOSE, b"\x03"))
    assert parse_frames(data)[:2] == [(TEXT, b"x" * 300), (PING, b"")]
    masked = frame(TEXT, b"hello")
    assert masked[1] == 0x80 | 5 and len(masked) == 2 + 4 + 5 and masked[6:] != b"hello"
    assert parse_frames(bytearray(frame(TEXT, b"y" * 70000, masked=False))) == [(TEXT, b"y" * 70000)]
    assert parse_frames(bytearray(frame(TEXT, b"abc", masked=False)[:3])) == []  # incomplete: left for later


async def test_a_short_soak_loses_and_repeats_nothing() -> None:
    # 2 honest conversations (one typed, one spoken) with a non-reader and a flooder attached, for ~20 s.
    # No latency or memory thresholds here: this machine is shared; the real run is in docs/benchmarks.md.
    tables, raw = await soak(SoakConfig(minutes=0.35, honest=2, hostile=2, sample_every=1.0, warmup_minutes=0.1))
    summary = raw["summary"]
    warmup = raw["warmup"]  # the same clients ran first; the RSS growth counts from the idle server after them
    assert warmup["turns"] >= 1 and warmup["lost"] == 0 and warmup["duplicated"] == 0, warmup["turns_detail"]
    assert summary["rss_cold_mb"] > 0 and summary["rss_start_mb"] == raw["samples"][0]["rss_mb"]
    assert warmup["samples"][-1]["at"] > 0  # the warm-up's idle sample, taken before the run's first
    assert summary["lost"] == 0, raw["turns"]
    assert summary["duplicated"] == 0 and summary["wrong"] == 0, raw["turns"]
    assert summary["cut"] == 0 and summary["connection_failures"] == {}, raw["sessions"]
    assert summary["answered_typed"] >= 1 and summary["answered_spoken"] >= 1  # every session completed turns
    assert summary["sessions_with_turns"] == 2
    assert summary["discontinuities"] == 0
    assert [h["kind"] for h in raw["hostile"]] == ["non_reader", "flooder"]
    assert all(h["sent"] > 0 and h["connections"] >= 1 for h in raw["hostile"])
    assert raw["server_alive"]
    assert len(raw["samples"]) >= 10 and all(s["rss_mb"] > 0 for s in raw["samples"])
    assert [t.title.split(":")[0] for t in tables] == ["Soak"] * 4
    assert "honest turns answered" in tables[0].markdown() and "warm-up" in tables[0].markdown()
