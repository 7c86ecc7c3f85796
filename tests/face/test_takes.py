from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from facecast.errors import InputError
from facecast.face.arkit import APP_CSV_NAMES, EMOTION_NAMES, FRAME_NAMES, INDEX, LIVE_LINK_NAMES
from facecast.face.takes import (
    LIVELINK_APP_COLUMNS,
    NEUROSYNC_COLUMNS,
    TIMECODE_RATES,
    Take,
    app_timecode,
    format_livelink_app_csv,
    format_neurosync_csv,
    neurosync_rows,
    neurosync_timecode,
    neurosync_writer_timecode,
    parse_take,
    read_take,
    write_livelink_app_csv,
    write_neurosync_csv,
)

NEUROSYNC_HEADER = (
    "Timecode,BlendshapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,"
    "EyeSquintLeft,EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,EyeLookOutRight,EyeLookUpRight,"
    "EyeSquintRight,EyeWideRight,JawForward,JawRight,JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,"
    "MouthRight,MouthLeft,MouthSmileLeft,MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,"
    "MouthDimpleRight,MouthStretchLeft,MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,"
    "MouthShrugUpper,MouthPressLeft,MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,MouthUpperUpLeft,"
    "MouthUpperUpRight,BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,BrowOuterUpRight,CheekPuff,"
    "CheekSquintLeft,CheekSquintRight,NoseSneerLeft,NoseSneerRight,TongueOut,HeadYaw,HeadPitch,HeadRoll,"
    "LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll,"
    "Angry,Disgusted,Fearful,Happy,Neutral,Sad,Surprised"
)

APP_HEADER = (
    "Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,"
    "EyeSquintLeft,EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,EyeLookOutRight,EyeLookUpRight,"
    "EyeSquintRight,EyeWideRight,JawForward,JawRight,JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,"
    "MouthRight,MouthLeft,MouthSmileLeft,MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,"
    "MouthDimpleRight,MouthStretchLeft,MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,"
    "MouthShrugUpper,MouthPressLeft,MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,MouthUpperUpLeft,"
    "MouthUpperUpRight,BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,BrowOuterUpRight,CheekPuff,"
    "CheekSquintLeft,CheekSquintRight,NoseSneerLeft,NoseSneerRight,TongueOut,HeadYaw,HeadPitch,HeadRoll,"
    "LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll"
)

float32s = st.floats(width=32, allow_nan=False, allow_infinity=False)
frames_arrays = st.integers(0, 150).flatmap(lambda n: hnp.arrays(np.float32, (n, 68), elements=float32s))


def random_frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 68)).astype(np.float32)


def data_lines(text: str) -> list[str]:
    return [line for line in text.splitlines()[1:] if line]


def make_csv(header: list[str], rows: list[list[str]], sep: str = ",") -> str:
    return "\n".join(sep.join(r) for r in [header, *rows]) + "\n"


# ------------------------------------------------------------------------------------------ headers


def test_neurosync_header_is_exact() -> None:
    text = format_neurosync_csv(np.zeros((1, 68), np.float32))
    assert text.splitlines()[0] == NEUROSYNC_HEADER
    assert len(NEUROSYNC_HEADER.split(",")) == 70
    assert NEUROSYNC_COLUMNS == tuple(NEUROSYNC_HEADER.split(","))


def test_app_header_is_exact() -> None:
    text = format_livelink_app_csv(np.zeros((1, 68), np.float32))
    assert text.splitlines()[0] == APP_HEADER
    assert len(APP_HEADER.split(",")) == 63
    assert LIVELINK_APP_COLUMNS == tuple(APP_HEADER.split(","))


def test_neurosync_row_layout() -> None:
    values = np.zeros((2, 68), np.float32)
    values[1, INDEX["JawLeft"]] = 0.25
    values[1, INDEX["JawRight"]] = 0.75
    values[1, INDEX["Surprised"]] = 0.5
    line = data_lines(format_neurosync_csv(values))[1].split(",")
    assert line[0] == "00:00:00:01.016" and line[1] == "68" and len(line) == 70
    assert line[NEUROSYNC_COLUMNS.index("JawRight")] == "0.75"
    assert line[NEUROSYNC_COLUMNS.index("JawLeft")] == "0.25"
    assert line[-1] == "0.5"


# ---------------------------------------------------------------------------------------- timecodes


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (0, "00:00:00:00.000"),
        (1, "00:00:00:01.016"),
        (5, "00:00:00:05.083"),  # NeuroSync's float truncation writes 04.083 here; we write it exact
        (59, "00:00:00:59.983"),
        (60, "00:00:01:00.000"),
        (61, "00:00:01:01.016"),
        (60 * 60 + 30, "00:01:00:30.500"),
        (60 * 3600, "01:00:00:00.000"),
        (60 * 3661 + 7, "01:01:01:07.116"),
    ],
)
def test_neurosync_timecode(index: int, expected: str) -> None:
    assert neurosync_timecode(index) == expected


def test_neurosync_timecode_at_30fps() -> None:
    assert neurosync_timecode(1, 30) == "00:00:00:01.033"
    assert neurosync_timecode(31, 30) == "00:00:01:01.033"


def test_sixty_rows_per_second() -> None:
    text = format_neurosync_csv(random_frames(150))
    stamps = [line.split(",")[0] for line in data_lines(text)]
    assert len(stamps) == 150
    seconds = [s[:8] for s in stamps]
    assert seconds.count("00:00:00") == 60
    assert seconds.count("00:00:01") == 60
    assert seconds.count("00:00:02") == 30
    assert [int(s[9:11]) for s in stamps[:60]] == list(range(60))
    assert stamps[0] == "00:00:00:00.000"


def test_app_timecode_keeps_subframe_and_wraps_the_day() -> None:
    start = 19 * 3600 + 55 * 60 + 16 + 26.5 / 60
    assert app_timecode(0, 60, start) == "19:55:16:26.500"
    assert app_timecode(34, 60, start) == "19:55:17:00.500"
    assert app_timecode(1, 60, 86_400 - 1 / 60) == "00:00:00:00.000"


def test_app_writer_accepts_a_timecode_string(tmp_path: Path) -> None:
    path = tmp_path / "take.csv"
    write_livelink_app_csv(path, random_frames(3), 30, "10:20:30:29.250")
    stamps = [line.split(",")[0] for line in data_lines(path.read_text())]
    assert stamps == ["10:20:30:29.250", "10:20:31:00.250", "10:20:31:01.250"]


# -------------------------------------------------------------------------------------- round trips


@settings(max_examples=40, deadline=None)
@given(frames_arrays)
def test_neurosync_round_trip_is_exact(values: np.ndarray) -> None:
    take = parse_take(format_neurosync_csv(values))
    assert take.format == "neurosync"
    assert take.fps == 60
    assert take.start_time == 0
    assert take.values.dtype == np.float32 and take.values.shape == values.shape
    np.testing.assert_array_equal(take.values, values)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 150).flatmap(lambda n: hnp.arrays(np.float32, (n, 68), elements=st.floats(-1e4, 1e4, width=32))),
    st.floats(0, 86_000),
)
def test_app_round_trip_within_1e6(values: np.ndarray, start: float) -> None:
    take = parse_take(format_livelink_app_csv(values, 60, start))
    assert take.format == "livelink_app"
    assert take.values.shape == values.shape
    np.testing.assert_allclose(take.values[:, :61], values[:, :61], rtol=1e-7, atol=1e-6)
    assert not take.values[:, 61:].any()  # the app has no emotions
    if len(values):
        assert take.start_time == pytest.approx(start, abs=1e-3 / 60)
    if len(values) >= 2:
        assert take.fps == 60


@pytest.mark.parametrize("fps", [24, 25, 30, 50, 60, 120])
def test_frame_rate_survives_both_formats(fps: int) -> None:
    values = random_frames(3 * fps + 7)
    ns = parse_take(format_neurosync_csv(values, fps))
    app = parse_take(format_livelink_app_csv(values, fps, 12 * 3600 + 0.3))
    assert ns.fps == fps and app.fps == fps
    np.testing.assert_array_equal(ns.values, values)


def test_files_and_text_and_bytes_sources(tmp_path: Path) -> None:
    values = random_frames(10)
    path = tmp_path / "shapes.csv"
    write_neurosync_csv(path, values)
    for source in (path, str(path), path.read_text(), path.read_bytes()):
        np.testing.assert_array_equal(read_take(source).values, values)


# -------------------------------------------------------------------------- reading other tools' files


def test_app_header_order_maps_left_and_right_by_name() -> None:
    # Every column gets a distinct value; the swapped pairs must land on their own frame indices.
    row_values = {name: f"0.{k + 10:02d}" for k, name in enumerate(APP_CSV_NAMES)}
    row_values["JawLeft"], row_values["JawRight"] = "0.111", "0.222"
    row_values["MouthLeft"], row_values["MouthRight"] = "0.333", "0.444"
    header = APP_HEADER.split(",")
    row = ["10:00:00:05.000", "61", *[row_values[name] for name in header[2:]]]
    take = parse_take(make_csv(header, [row]))
    frame = take.values[0]
    assert frame[INDEX["JawLeft"]] == np.float32(0.111) and INDEX["JawLeft"] == 15
    assert frame[INDEX["JawRight"]] == np.float32(0.222) and INDEX["JawRight"] == 16
    assert frame[INDEX["MouthLeft"]] == np.float32(0.333) and INDEX["MouthLeft"] == 21
    assert frame[INDEX["MouthRight"]] == np.float32(0.444) and INDEX["MouthRight"] == 22
    for name in LIVE_LINK_NAMES:
        assert frame[INDEX[name]] == np.float32(float(row_values[name])), name
    assert not frame[61:].any()
    assert take.format == "livelink_app"


def test_real_app_take_timecodes_give_60fps_and_wall_clock_start() -> None:
    # Shaped like a Live Link Face take: wall-clock start, sub-frame fraction drifting by ~0.0015 frame.
    rows = []
    for k in range(40):
        total = 26 + k
        sub = 689 + (k * 15) // 10
        sec, ff = divmod(total, 60)
        rows.append([f"19:55:{16 + sec:02d}:{ff:02d}.{sub:03d}", "61", *["0.1"] * 61])
    take = parse_take(make_csv(APP_HEADER.split(","), rows))
    assert take.format == "livelink_app"
    assert take.fps == 60
    assert take.start_time == pytest.approx(19 * 3600 + 55 * 60 + 16 + 26.689 / 60)
    assert take.frames == 40


def test_app_take_at_30fps_and_60fps_capture_under_30fps_timecode() -> None:
    header = APP_HEADER.split(",")
    thirty = [[f"08:00:{s:02d}:{f:02d}.000", "61", *["0"] * 61] for s in (1, 2) for f in range(30)]
    assert parse_take(make_csv(header, thirty)).fps == 30
    halves = [
        [f"08:00:{s:02d}:{f:02d}.{h:03d}", "61", *["0"] * 61] for s in (1, 2) for f in range(30) for h in (0, 500)
    ]
    assert parse_take(make_csv(header, halves)).fps == 60


def test_neurosync_player_file_with_its_truncated_frame_numbers() -> None:
    # NeuroSync's own writer repeats FF=04 and skips 05 (float truncation); .mmm is what counts.
    stamps = ["00:00:00:00.000", "00:00:00:01.016", "00:00:00:02.033", "00:00:00:03.050", "00:00:00:04.066",
              "00:00:00:04.083", "00:00:00:06.100", "00:00:00:07.116"]  # fmt: skip
    rows = [[s, "68", *[str(k / 100)] * 68] for k, s in enumerate(stamps)]
    take = parse_take(make_csv(NEUROSYNC_HEADER.split(","), rows))
    assert take.format == "neurosync" and take.fps == 60 and take.frames == 8
    np.testing.assert_allclose(take.values[:, 0], np.arange(8) / 100, rtol=1e-6)


def test_neurosync_helper_timecodes_with_zero_milliseconds() -> None:
    # NeuroSync's ``generate_timecode`` helper writes FF = i mod 60 and ".000" on every row.
    rows = [[f"00:00:{k // 60:02d}:{k % 60:02d}.000", "61", *["0"] * 68] for k in range(150)]
    take = parse_take(make_csv(NEUROSYNC_HEADER.split(","), rows))
    assert take.format == "neurosync" and take.fps == 60 and take.start_time == 0


def test_neurosync_61_wide_variant_reads_emotions_as_zero() -> None:
    header = NEUROSYNC_HEADER.split(",")[:63]
    rows = [[neurosync_timecode(k), "61", *["0.5"] * 61] for k in range(3)]
    take = parse_take(make_csv(header, rows))
    assert take.format == "neurosync"
    assert (take.values[:, :61] == 0.5).all()
    assert (take.values[:, 61:] == 0).all()


def test_unreal_on_device_csv() -> None:
    header = ["Timecode", "FrameRate", *LIVE_LINK_NAMES]
    rows = [[f"1:2:3:{f}", "30", *[f"{(i + 1) / 1000:.3f}" for i in range(61)]] for f in range(4)]
    text = "\r\n".join(", ".join(r) for r in [header, *rows]) + "\r\n"
    take = parse_take(text)
    assert take.format == "unreal"
    assert take.fps == 30
    assert take.start_time == pytest.approx(3723)
    assert take.values[0, INDEX["JawLeft"]] == np.float32(0.016)  # wire order: JawLeft is the 16th curve
    assert take.values[0, INDEX["MouthRight"]] == np.float32(0.023)
    assert not take.values[:, 61:].any()


def test_extra_columns_and_shuffled_order_do_not_matter() -> None:
    values = random_frames(12, seed=3)
    reference = parse_take(format_neurosync_csv(values))
    lines = format_neurosync_csv(values).splitlines()
    table = [line.split(",") for line in lines]
    table = [[*row, "x" if i else "Comment"] for i, row in enumerate(table)]  # unknown trailing column
    table = [["7" if i else "Take", *row] for i, row in enumerate(table)]  # unknown leading column
    order = np.random.default_rng(1).permutation(len(table[0]))
    shuffled = "\n".join(",".join(row[j] for j in order) for row in table) + "\n"
    take = parse_take(shuffled)
    assert take.format == "neurosync" and take.fps == 60
    np.testing.assert_array_equal(take.values, reference.values)
    np.testing.assert_array_equal(take.values, values)


def test_names_match_ignoring_case_and_spaces() -> None:
    header = [" " + name.lower() + " " for name in NEUROSYNC_HEADER.split(",")]
    rows = [[neurosync_timecode(0), "68", *[" 0.25 "] * 68]]
    assert (parse_take(make_csv(header, rows)).values == 0.25).all()


# ------------------------------------------------------------------------------------------- errors


def test_missing_columns_are_named() -> None:
    header = [name for name in NEUROSYNC_HEADER.split(",") if name not in ("JawOpen", "MouthLeft")]
    rows = [[neurosync_timecode(0), "68", *["0"] * 66]]
    with pytest.raises(InputError, match="missing 2 column") as info:
        parse_take(make_csv(header, rows))
    assert "JawOpen" in str(info.value) and "MouthLeft" in str(info.value)
    assert "JawLeft" not in str(info.value)


def test_partial_emotions_are_an_error() -> None:
    header = NEUROSYNC_HEADER.split(",")[:-2]  # drops Sad and Surprised
    rows = [[neurosync_timecode(0), "68", *["0"] * 66]]
    with pytest.raises(InputError, match="Sad, Surprised"):
        parse_take(make_csv(header, rows))


def test_bad_number_names_line_and_column() -> None:
    lines = format_neurosync_csv(random_frames(4)).splitlines()
    cells = lines[3].split(",")
    cells[NEUROSYNC_COLUMNS.index("CheekPuff")] = "0.3x"
    lines[3] = ",".join(cells)
    with pytest.raises(InputError, match=r"line 4, column CheekPuff: '0.3x' is not a number"):
        parse_take("\n".join(lines) + "\n")


@pytest.mark.parametrize("bad", ["nan", "inf", "1e39"])
def test_non_finite_values_are_rejected_with_line(bad: str) -> None:
    lines = format_neurosync_csv(random_frames(3)).splitlines()
    cells = lines[2].split(",")
    cells[-1] = bad
    lines[2] = ",".join(cells)
    with pytest.raises(InputError, match=r"line 3, column Surprised"):
        parse_take("\n".join(lines))


def test_wrong_field_count_and_bad_timecode_give_line_numbers() -> None:
    lines = format_neurosync_csv(random_frames(5)).splitlines()
    short = [*lines[:4], lines[4].rsplit(",", 1)[0], *lines[5:]]
    with pytest.raises(InputError, match=r"line 5: expected 70 fields"):
        parse_take("\n".join(short))
    broken = [*lines[:2], "00:00:0x:01.016" + lines[2][15:], *lines[3:]]
    with pytest.raises(InputError, match=r"line 3: timecode '00:00:0x:01.016'"):
        parse_take("\n".join(broken))


def test_line_numbers_count_skipped_blank_lines() -> None:
    header, first, second = format_neurosync_csv(random_frames(2)).splitlines()
    cells = second.split(",")
    cells[10] = "oops"
    with pytest.raises(InputError, match=f"line 5, column {NEUROSYNC_COLUMNS[10]}: 'oops'"):
        parse_take("\n".join([header, "", first, "", ",".join(cells)]))


def test_empty_duplicate_and_header_only() -> None:
    with pytest.raises(InputError, match="empty"):
        parse_take("")
    with pytest.raises(InputError, match="twice"):
        parse_take(NEUROSYNC_HEADER + ",JawOpen\n")
    take = parse_take(NEUROSYNC_HEADER + "\n")
    assert take.frames == 0 and take.values.shape == (0, 68) and take.fps == 60


def test_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_take(tmp_path / "nope.csv")


def test_writers_validate_their_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shape"):
        format_neurosync_csv(np.zeros((3, 61), np.float32))
    with pytest.raises(ValueError, match="fps"):
        format_neurosync_csv(np.zeros((3, 68), np.float32), 59)
    bad = np.zeros((2, 68), np.float32)
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        format_livelink_app_csv(bad)
    with pytest.raises(ValueError, match="frame 60"):
        format_livelink_app_csv(np.zeros((1, 68)), 60, "00:00:00:60.000")
    assert 60 in TIMECODE_RATES


def test_rows_continue_numbering_for_incremental_writing() -> None:
    values = random_frames(90)
    pieces = neurosync_rows(values[:50]) + neurosync_rows(values[50:], start_index=50)
    assert format_neurosync_csv(values) == ",".join(NEUROSYNC_COLUMNS) + "\n" + pieces


def test_take_validates_and_describes_itself() -> None:
    take = Take(np.zeros((120, 68), np.float32), fps=60)
    assert take.values.dtype == np.float32 and take.frames == 120 and take.duration == 2.0
    with pytest.raises(ValueError, match="shape"):
        Take(np.zeros((3, 67), np.float32))
    with pytest.raises(ValueError, match="fps"):
        Take(np.zeros((3, 68), np.float32), fps=0)
    assert len(FRAME_NAMES) == 68 and EMOTION_NAMES[0] == "Angry"


# ------------------------------------------------------------------- files NeuroSync wrote: read by position


def neurosync_written_csv(values: np.ndarray, *, early: bool = False) -> str:
    """A take as NeuroSync's own writer writes it: its header (the app's column order) over the model's values in
    wire order, its float-truncated timecodes (or, with ``early``, the row number as a float), the count as an
    integer and every number as Python's float text (pandas over a numpy string array)."""
    rows = []
    for k, frame in enumerate(values.astype(np.float64)):
        code = f"{float(k)}" if early else neurosync_writer_timecode(k)
        rows.append([code, str(values.shape[1]), *[repr(float(v)) for v in frame]])
    return make_csv(NEUROSYNC_HEADER.split(",")[: 2 + values.shape[1]], rows)


def sided_frames(n: int) -> np.ndarray:
    """Frames whose JawLeft/JawRight and MouthLeft/MouthRight differ, so a swap shows."""
    values = random_frames(n, seed=3) * 0.5 + 0.5
    values[:, INDEX["JawLeft"]], values[:, INDEX["JawRight"]] = 0.125, 0.75
    values[:, INDEX["MouthLeft"]], values[:, INDEX["MouthRight"]] = 0.25, 0.875
    return values.astype(np.float32)


def test_neurosync_writer_timecodes_are_its_own() -> None:
    # as in NeuroSync's own generated/<uuid>/shapes.csv files: FF repeats and skips where floats truncate
    assert [neurosync_writer_timecode(k) for k in (0, 1, 4, 5, 6, 43, 44, 45, 59, 60, 61)] == [
        "00:00:00:00.000", "00:00:00:01.016", "00:00:00:04.066", "00:00:00:04.083", "00:00:00:06.100",
        "00:00:00:42.716", "00:00:00:43.733", "00:00:00:45.750", "00:00:00:58.983", "00:00:01:00.000",
        "00:00:01:00.016",
    ]  # fmt: skip
    assert neurosync_writer_timecode(5) != neurosync_timecode(5) == "00:00:00:05.083"


@pytest.mark.parametrize("rows", [3, 5, 6, 200])
def test_a_take_neurosync_wrote_is_read_by_position_like_its_player(rows: int) -> None:
    values = sided_frames(rows)
    text = neurosync_written_csv(values)
    assert text.splitlines()[0].split(",")[17:19] == ["JawRight", "JawLeft"]  # the app's labels over ...
    take = parse_take(text)
    assert take.columns == "position" and take.format == "neurosync" and take.fps == 60
    # ... the model's values, in wire order: what NeuroSync's Player sends for this file, curve by curve
    np.testing.assert_array_equal(take.values, values)
    assert take.values[0, INDEX["JawLeft"]] == 0.125 and take.values[0, INDEX["MouthRight"]] == 0.875


def test_neurosync_61_wide_and_early_writer_files_are_read_by_position() -> None:
    values = sided_frames(8)
    narrow = parse_take(neurosync_written_csv(values[:, :61]))
    assert narrow.columns == "position"
    np.testing.assert_array_equal(narrow.values[:, :61], values[:, :61])
    assert not narrow.values[:, 61:].any()
    early = parse_take(neurosync_written_csv(values, early=True))  # "0.0,68,..." rows
    assert early.columns == "position" and early.fps == 60 and early.frames == 8 and early.start_time == 0
    np.testing.assert_array_equal(early.values, values)


def test_a_live_link_face_app_take_is_read_by_name() -> None:
    values = sided_frames(30)
    for text in (
        format_livelink_app_csv(values, start_timecode="19:55:16:26.689"),
        # the same take re-headed with NeuroSync's BlendshapeCount, as its Player ships app takes
        format_livelink_app_csv(values, start_timecode="19:55:16:26.689").replace("BlendShapeCount", "BlendshapeCount"),
    ):
        take = parse_take(text)
        assert take.columns == "name" and take.format == "livelink_app"
        np.testing.assert_allclose(take.values[:, :61], values[:, :61], atol=1e-6)
        assert take.values[0, INDEX["JawLeft"]] == pytest.approx(0.125)


@pytest.mark.parametrize("rows", [1, 5, 6, 90])
def test_takes_facecast_writes_stay_by_name(rows: int) -> None:
    values = sided_frames(rows)
    values[:, 40:45] = 0.0  # zeros, written "0" (NeuroSync writes "0.0")
    take = parse_take(format_neurosync_csv(values))
    assert take.columns == "name"
    np.testing.assert_array_equal(take.values, values)


def test_a_neurosync_header_alone_is_not_its_writers_signature() -> None:
    values = sided_frames(10)
    text = neurosync_written_csv(values)
    lines = text.splitlines()
    moved = lines[:1] + [line.replace("00:00:00:", "00:00:01:", 1) for line in lines[1:]]  # not its timecodes
    assert parse_take("\n".join(moved) + "\n").columns == "name"
    spaced = text.replace("JawLeft,", "JawLeft ,", 1)  # not its exact header
    assert parse_take(spaced).columns == "name"
