"""`facecast convert`: NeuroSync shapes.csv <-> Live Link Face app CSV, by column name, with frame-rate resampling."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facecast.cli import main
from facecast.convert import convert_take, infer_format, resample_frames
from facecast.engine.play import load_take
from facecast.errors import InputError
from facecast.face.arkit import EMOTION_NAMES, INDEX, LIVE_LINK_COUNT
from facecast.face.takes import read_take, write_neurosync_csv

# The Live Link Face app's header, written out by hand in the app's exact order (JawRight before JawLeft,
# MouthRight before MouthLeft), so the test does not trust the code under test for it.
APP_NAMES = (
    "EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,EyeSquintLeft,EyeWideLeft,"
    "EyeBlinkRight,EyeLookDownRight,EyeLookInRight,EyeLookOutRight,EyeLookUpRight,EyeSquintRight,EyeWideRight,"
    "JawForward,JawRight,JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,MouthRight,MouthLeft,"
    "MouthSmileLeft,MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,MouthDimpleRight,"
    "MouthStretchLeft,MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,MouthShrugUpper,"
    "MouthPressLeft,MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,MouthUpperUpLeft,MouthUpperUpRight,"
    "BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,BrowOuterUpRight,CheekPuff,CheekSquintLeft,"
    "CheekSquintRight,NoseSneerLeft,NoseSneerRight,TongueOut,HeadYaw,HeadPitch,HeadRoll,LeftEyeYaw,"
    "LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll"
).split(",")
APP_HEADER = "Timecode,BlendShapeCount," + ",".join(APP_NAMES)


def app_take_text(
    rows: int, fps: int = 60, start: tuple[int, int, int, int] = (14, 3, 27, 10), drift: bool = True
) -> tuple[str, dict[str, np.ndarray]]:
    """An app take as the app writes it: time-of-day timecodes, ``HH:MM:SS:FF.fff,61,<61 values>``, the
    sub-frame ``fff`` drifting by a thousandth per row as in the app's own takes.

    Each column gets its own ramp, so a swapped pair of columns shows up as wrong values.
    """
    hh, mm, ss, ff = start
    columns = {name: (np.arange(rows) * 0.001 + k * 0.01) % 1.0 for k, name in enumerate(APP_NAMES)}
    columns["HeadYaw"] = -columns["HeadYaw"]  # rotations are signed
    lines = [APP_HEADER]
    for i in range(rows):
        frame = ff + i
        seconds = ss + frame // fps
        sub = (100 + i) % 1000 if drift else 0
        stamp = f"{hh:02d}:{mm + seconds // 60:02d}:{seconds % 60:02d}:{frame % fps:02d}.{sub:03d}"
        lines.append(stamp + ",61," + ",".join(f"{columns[name][i]:.10f}" for name in APP_NAMES))
    return "\r\n".join(lines) + "\r\n", columns


def test_app_take_to_neurosync_and_back_keeps_every_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text, columns = app_take_text(150)
    source = tmp_path / "MySlate_7_iPhone.csv"
    source.write_text(text, newline="")
    shapes = tmp_path / "session" / "shapes.csv"

    assert main(["convert", str(source), str(shapes)]) == 0
    assert "neurosync take, 150 frames at 60 fps" in capsys.readouterr().out
    header = shapes.read_text().splitlines()[0].split(",")
    assert header[:2] == ["Timecode", "BlendshapeCount"] and header[2:63] == APP_NAMES
    assert header[63:] == list(EMOTION_NAMES)
    take = read_take(shapes)
    assert (take.format, take.fps, take.frames) == ("neurosync", 60.0, 150)
    for name in ("JawLeft", "JawRight", "MouthLeft", "MouthRight", "HeadYaw", "RightEyeRoll"):
        np.testing.assert_allclose(take.values[:, INDEX[name]], columns[name], atol=1e-6)
    assert not take.values[:, LIVE_LINK_COUNT:].any()

    back = tmp_path / "back.csv"
    assert main(["convert", str(shapes), str(back)]) == 0  # inferred: the other format
    lines = back.read_text().splitlines()
    assert lines[0] == APP_HEADER
    assert lines[1].startswith("00:00:00:00.000,61,")
    again = read_take(back)
    assert again.format == "livelink_app" and again.frames == 150
    np.testing.assert_allclose(again.values, take.values, atol=1e-6)


def test_app_take_start_timecode_is_kept_when_converting_app_to_app(tmp_path: Path) -> None:
    text, _ = app_take_text(20, start=(9, 15, 0, 3))
    source = tmp_path / "take.csv"
    source.write_text(text)
    out = tmp_path / "copy.csv"
    result = convert_take(source, out, to="livelink-app")
    assert result.fps == 60
    assert out.read_text().splitlines()[1].startswith("09:15:00:03.")
    np.testing.assert_allclose(read_take(out).values, read_take(source).values, atol=1e-6)


def test_neurosync_to_app_drops_emotions_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    values = rng.uniform(0, 1, (90, 68)).astype(np.float32)
    values[:, INDEX["HeadPitch"]] *= -1
    source = tmp_path / "shapes.csv"
    write_neurosync_csv(source, values)

    out = tmp_path / "take.csv"
    assert main(["convert", str(source), str(out), "--to", "livelink-app"]) == 0
    assert "emotion columns were dropped" in capsys.readouterr().out
    take = read_take(out)
    np.testing.assert_allclose(take.values[:, :LIVE_LINK_COUNT], values[:, :LIVE_LINK_COUNT], atol=1e-6)
    assert not take.values[:, LIVE_LINK_COUNT:].any()

    round_trip = tmp_path / "rt" / "shapes.csv"
    convert_take(out, round_trip)
    np.testing.assert_allclose(
        read_take(round_trip).values[:, :LIVE_LINK_COUNT], values[:, :LIVE_LINK_COUNT], atol=1e-6
    )


def test_a_30_fps_app_take_becomes_60_fps_on_the_same_timeline(tmp_path: Path) -> None:
    text, columns = app_take_text(45, fps=30, start=(10, 0, 0, 20), drift=False)
    source = tmp_path / "take30.csv"
    source.write_text(text)
    assert read_take(source).fps == 30.0

    (tmp_path / "out").mkdir()
    result = convert_take(source, tmp_path / "out")  # a folder target gets shapes.csv
    assert result.path == tmp_path / "out" / "shapes.csv"
    assert (result.source_fps, result.fps, result.frames) == (30.0, 60, 90)
    take = read_take(result.path)
    jaw = take.values[:, INDEX["JawOpen"]]
    src = columns["JawOpen"]
    np.testing.assert_allclose(jaw[0::2], src, atol=1e-6)  # even frames land on the source frames
    np.testing.assert_allclose(jaw[1:-1:2], (src[:-1] + src[1:]) / 2, atol=1e-6)  # odd ones in between
    assert take.duration == pytest.approx(1.5)
    loaded, audio_seconds = load_take(result.path)  # `facecast play` reads it
    assert loaded.frames == 90 and audio_seconds is None


def test_resample_frames_keeps_duration_and_values() -> None:
    values = np.linspace(0, 1, 50, dtype=np.float32)[:, None].repeat(68, axis=1)
    up = resample_frames(values, 25, 60)
    assert len(up) == 120 and up[0, 0] == 0.0
    assert np.all(np.diff(up[:, 0]) >= 0)
    assert resample_frames(values, 60, 60) is values
    with pytest.raises(ValueError):
        resample_frames(values, 0, 60)


def test_unreal_csv_converts_to_neurosync(tmp_path: Path) -> None:
    names = list(INDEX)[:LIVE_LINK_COUNT]
    rows = ["Timecode, FrameRate, " + ", ".join(names)]
    for i in range(60):
        rows.append(f"12:00:01:{i}, 60, " + ", ".join("%.3f" % ((i + k) % 10 / 10) for k in range(61)))
    source = tmp_path / "unreal.csv"
    source.write_text("\r\n".join(rows) + "\r\n")
    out = tmp_path / "shapes.csv"
    result = convert_take(source, out)
    assert (result.format, result.source_format, result.frames) == ("neurosync", "unreal", 60)
    assert read_take(out).values[5, INDEX["JawOpen"]] == pytest.approx(((5 + 17) % 10) / 10)


def test_output_format_inference() -> None:
    assert infer_format("livelink_app", "x/shapes.csv") == "neurosync"
    assert infer_format("neurosync", "x/Shapes.CSV") == "neurosync"
    assert infer_format("neurosync", "take.csv") == "livelink-app"
    assert infer_format("livelink_app", "take.csv") == "neurosync"
    assert infer_format("unreal", "take.csv") == "neurosync"


def test_refusals(tmp_path: Path) -> None:
    source = tmp_path / "shapes.csv"
    write_neurosync_csv(source, np.zeros((3, 68), np.float32))
    with pytest.raises(InputError, match="is the input"):
        convert_take(source, source)
    with pytest.raises(InputError, match="timecode rate"):
        convert_take(source, tmp_path / "a.csv", to="livelink-app", fps=45)
    with pytest.raises(InputError, match="always 60"):
        convert_take(source, tmp_path / "b.csv", to="neurosync", fps=30)
    with pytest.raises(InputError, match="not found"):
        convert_take(tmp_path / "missing.csv", tmp_path / "c.csv")
    with pytest.raises(InputError, match="name an output file"):
        convert_take(source, tmp_path, to="livelink-app")


def test_the_installed_command(tmp_path: Path) -> None:
    text, _ = app_take_text(12)
    source = tmp_path / "take.csv"
    source.write_text(text)
    run = [sys.executable, "-m", "facecast.cli", "convert", str(source), str(tmp_path / "o" / "shapes.csv")]
    result = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert read_take(tmp_path / "o" / "shapes.csv").frames == 12
    bad = subprocess.run(
        [*run[:4], str(tmp_path / "nope.csv"), str(tmp_path / "x.csv")], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 1 and "facecast convert: error:" in bad.stderr and "not found" in bad.stderr
