"""``facecast bench --plots DIR``: real PNG files from a run's raw numbers and a spoken take; a clear error
naming the extra without matplotlib."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from facecast.bench.plots import TakeCurves, require_matplotlib, spoken_take, write_plots
from facecast.errors import ConfigError
from facecast.face.arkit import INDEX

PNG = b"\x89PNG\r\n\x1a\n"

needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason="the plots extra (make test installs it)"
)


def _raw() -> dict[str, object]:
    """Raw numbers shaped as run_all returns them (voice-to-voice, Live Link jitter and sync), made up."""
    rng = np.random.default_rng(1)
    stages = {"endpointing": [300.0] * 4, "STT final": [40.0, 50, 45, 60], "first face frame": []}
    return {
        "machine": "test",
        "voice_to_voice_300ms": {"total_ms": [520.0, 560, 600, 610], "stages_ms": stages, "unaccounted_ms": [4.0] * 4},
        "voice_to_voice_defaults": {"total_ms": [], "stages_ms": {}, "unaccounted_ms": []},  # no answered turn
        "livelink_jitter": {f"subjects_{n}": {"interval_jitter_ms": list(rng.exponential(0.3, 200))} for n in (1, 10)},
        "sync": {f"subjects_{n}": {"sync_error_ms": list(rng.exponential(2.0, 300))} for n in (1, 10)},
    }


def _take() -> TakeCurves:
    values = np.zeros((120, 68), np.float32)
    values[:, INDEX["JawOpen"]] = np.abs(np.sin(np.arange(120) / 8))
    values[40:50, INDEX["MouthClose"]] = 0.6
    audio = (0.3 * np.sin(np.arange(32000) * 0.05)).astype(np.float32)
    return TakeCurves(values, audio, 16000, [("h", 0.0, 0.1), ("@", 0.1, 0.4), ("m", 0.66, 0.83)], "test take")


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG, path
    assert 10_000 < len(data) < 2_000_000, (path, len(data))  # a drawn figure, not an empty canvas


@needs_matplotlib
def test_every_plot_is_a_png(tmp_path: Path) -> None:
    written, missing = write_plots(_raw(), tmp_path / "plots", _take())
    names = sorted(p.name for p in written)
    assert names == ["face_curves.png", "jitter.png", "latency_stages.png", "sync_error.png"]
    assert missing == []
    for path in written:
        _assert_png(path)


@needs_matplotlib
def test_plots_without_their_data_are_left_out_and_named(tmp_path: Path) -> None:
    written, missing = write_plots({"machine": "test", "stt_accuracy": {}}, tmp_path)
    assert written == []
    assert [m.split(":")[0] for m in missing] == ["latency_stages.png", "sync_error.png", "jitter.png"]
    assert "v2v" in missing[0] and "livelink" in missing[1]


@needs_matplotlib
async def test_the_spoken_take_has_phonemes_under_its_face(tmp_path: Path) -> None:
    take = await spoken_take("Bread and butter.")
    assert len(take.values) > 30 and take.values.shape[1] == 68
    assert take.phonemes and all(0 <= start <= end for _, start, end in take.phonemes)
    assert take.phonemes[-1][2] <= len(take.audio) / take.rate + 1e-6
    b = next(start for symbol, start, _ in take.phonemes if symbol == "b")  # the lips close for the b
    assert take.values[round(b * 60) : round(b * 60) + 8, INDEX["MouthClose"]].max() > 0.3
    written, _ = write_plots({}, tmp_path, take)
    _assert_png(tmp_path / "face_curves.png")
    assert written == [tmp_path / "face_curves.png"]


def test_without_matplotlib_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError, match=r"pip install 'facecast\[plots\]'"):
        require_matplotlib()


def test_bench_checks_matplotlib_before_running(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from facecast.cli import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["bench", "--only", "pipeline", "--plots", "unused"]) == 1
    captured = capsys.readouterr()
    assert "facecast bench: error: --plots needs matplotlib: pip install 'facecast[plots]'" in captured.err
    assert "[1/1]" not in captured.err  # nothing ran


@needs_matplotlib
def test_bench_writes_the_plots_of_what_it_ran(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from facecast.cli import main

    assert main(["bench", "--quick", "--only", "pipeline", "--plots", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "[1/1] pipeline: " in captured.err  # the progress line
    _assert_png(tmp_path / "face_curves.png")
    assert "not drawn: latency_stages.png: no data (the v2v group did not run)" in captured.out
