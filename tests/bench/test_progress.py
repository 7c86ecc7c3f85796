"""``facecast bench`` progress lines: one per group as it runs, with its time; --quick's left-out groups say so."""

from __future__ import annotations

import io

import pytest

from facecast.bench import GROUPS, run_all
from facecast.bench.progress import DESCRIPTIONS, QUICK_SKIPS, Steps


class Ticks:
    """A clock that advances 1.5 s per reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.5
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_each_group_gets_a_numbered_line_with_its_time() -> None:
    out = Terminal()
    steps = Steps(["stt", "v2v", "face"], stream=out, clock=Ticks())
    assert steps.run("stt")
    assert out.getvalue() == f"[1/3] stt: {DESCRIPTIONS['stt']}... "  # on a terminal: shown while it runs
    assert not steps.run("tts")  # not asked for: no line
    assert steps.run("v2v") and steps.run("face")
    steps.close()
    assert out.getvalue().splitlines() == [
        f"[1/3] stt: {DESCRIPTIONS['stt']}... 1.5 s",
        f"[2/3] v2v: {DESCRIPTIONS['v2v']}... 1.5 s",
        f"[3/3] face: {DESCRIPTIONS['face']}... 1.5 s",
    ]
    assert steps.skipped == []


def test_off_a_terminal_each_line_is_written_whole_when_its_group_ends() -> None:
    out = io.StringIO()
    steps = Steps(["stt", "v2v"], stream=out, clock=Ticks())
    assert steps.run("stt")
    assert out.getvalue() == ""  # a log line written now cannot split it
    assert steps.run("v2v")
    assert out.getvalue() == f"[1/2] stt: {DESCRIPTIONS['stt']}... 1.5 s\n"
    steps.close()
    assert out.getvalue().splitlines()[1] == f"[2/2] v2v: {DESCRIPTIONS['v2v']}... 1.5 s"


def test_left_out_groups_say_so() -> None:
    out = io.StringIO()
    steps = Steps(GROUPS, QUICK_SKIPS, stream=out, clock=Ticks())
    ran = [group for group in GROUPS if steps.run(group)]
    steps.close()
    assert set(QUICK_SKIPS) and set(ran) == set(GROUPS) - set(QUICK_SKIPS)
    assert steps.skipped == [g for g in GROUPS if g in QUICK_SKIPS]
    lines = out.getvalue().splitlines()
    assert len(lines) == len(GROUPS)
    for group in QUICK_SKIPS:
        [line] = [line for line in lines if f"] {group}: " in line]
        assert "skipped by --quick" in line and f"--quick --only {group}" in line


def test_every_group_has_a_description() -> None:
    assert set(GROUPS) <= set(DESCRIPTIONS)


async def test_quick_run_leaves_out_the_slow_groups(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_all itself: with every group asked for, --quick does not run llm and resources (their tables and raw
    numbers are absent). "Every group" is narrowed to those two and pipeline here, to keep the test short."""
    import facecast.bench as bench

    monkeypatch.setattr(bench, "GROUPS", ("llm", "resources", "pipeline"))
    tables, raw = await run_all(True, bench.GROUPS)
    err = capsys.readouterr().err
    assert raw["skipped_by_quick"] == ["llm", "resources"]
    assert "llm" not in raw and "resources" not in raw and "first_output" in raw
    assert "[1/3] llm: skipped by --quick" in err and "[2/3] resources: skipped by --quick" in err
    assert "[3/3] pipeline: " in err and err.rstrip().endswith(" s")
    assert len(tables) == 2  # the pipeline's two tables


async def test_quick_runs_a_slow_group_that_only_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """--quick --only resources runs it (stubbed: its real run takes minutes)."""
    from facecast.bench import resources_bench
    from facecast.bench.report import Table

    calls: list[bool] = []

    async def resources_table(quick: bool = False) -> tuple[Table, dict[str, object]]:
        calls.append(quick)
        return Table("resources", ["x"]), {}

    monkeypatch.setattr(resources_bench, "resources_table", resources_table)
    tables, raw = await run_all(True, ("resources",))
    assert calls == [True] and raw["skipped_by_quick"] == [] and "resources" in raw
