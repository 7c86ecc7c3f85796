"""Face take CSV codecs: NeuroSync ``shapes.csv``, Live Link Face app takes, Unreal's on-device CSV.

Every format is read and written BY COLUMN NAME, never by position: the Live Link Face app (and NeuroSync,
which copies its header) writes ``JawRight,JawLeft`` and ``MouthRight,MouthLeft`` right-before-left, while
Facecast frames use Unreal's wire order (:data:`facecast.face.arkit.FRAME_NAMES`). Parsing is pure
(:func:`parse_take` takes text); :func:`read_take` and the ``write_*`` functions are thin file wrappers.

Formats:

``neurosync``
    Header ``Timecode,BlendshapeCount,`` + the 61 names in the app's order + the 7 emotion names; one row
    per frame at 60 fps; ``BlendshapeCount`` is 68. Files without the emotion columns (NeuroSync's 61-wide
    variant) are accepted; their emotions read as 0 everywhere (we do not invent a "Neutral" mood that the
    file never stated). NeuroSync's emotion values are unscaled model outputs and are carried as they are.

``livelink_app``
    Header ``Timecode,BlendShapeCount,`` + the 61 names in the app's order; rows ``HH:MM:SS:FF.fff,61,...``
    with wall-clock timecodes; emotions read as 0.

``unreal``
    Unreal's ARKit face-support file writer: header ``Timecode, FrameRate, <61 names in wire order>``
    (comma + space separated, CRLF), rows ``H:M:S:F, <rate>, <%.3f values>``. Read-only.

Timecodes -- what ``FF`` and the fraction mean:

* NeuroSync's writer (``save_generated_data_as_csv`` in NeuroSync Player) computes, for row ``i``,
  ``t = i / 60``; ``.mmm`` = ``int`` of the milliseconds within the second, and ``FF`` =
  ``int(mmm_float / (1000 / 60))``, the frame number within the second. So ``.mmm`` is a millisecond
  field, not a sub-frame, and ``FF`` is redundant with it. Because ``FF`` is derived by float truncation,
  NeuroSync's own files sometimes repeat or skip a frame number (row 5 is ``00:00:00:04.083`` there, and
  frame 59 of the first second is written ``58``). We therefore write exact values (``FF = i mod fps``,
  ``mmm = floor(1000 * FF / fps)``, e.g. row 5 = ``00:00:00:05.083``) and, on read, take a NeuroSync row's
  time from ``HH:MM:SS`` + ``mmm`` only, ignoring ``FF``. (A NeuroSync dataset helper,
  ``generate_timecode``, writes ``FF = i mod 60`` with ``.000`` on every row; when every fraction is zero
  the frame numbers are used instead, as for app takes.)
* The Live Link Face app writes ``FF`` = frame within the second at the timecode rate and ``.fff`` =
  the sub-frame in thousandths of a frame (its takes show ``26.689, 27.691, 28.692``: ``FF`` steps by one
  per 60 fps row while the fraction drifts by ~0.001; a 60 fps capture under a 30 fps timecode shows
  ``.000``/``.500`` pairs). Row time = ``HH:MM:SS + (FF + fff/1000) / timecode_rate``.

Frame rate on read (``Take.fps``): Unreal files state it (``FrameRate`` of the first row). For NeuroSync
files it is the row rate measured over the whole take from the timecodes. For app takes the timecode
rate is the smallest common rate that is at least the largest ``FF`` + 1 when the take crosses a second
boundary (60 is assumed when it does not), and the row rate is measured from the median step between rows (robust
to dropped frames). Measured rates within 5% of a common rate (:data:`TIMECODE_RATES`) snap to it. Without
timecodes, or with fewer than two rows, ``fps`` is 60. Values are never resampled: ``Take.values[k]`` is
row ``k`` of the file.

Numbers: NeuroSync values are written with ``%.9g``, which round-trips every float32 exactly; app values
with ``%.10f`` like the app itself (absolute error 5e-11, far inside 1e-6). ``BlendshapeCount`` is informational and
not checked on read (NeuroSync's ``generate_timecode`` helper writes 61 in 68-wide files).

Detection (:func:`parse_take`): a ``FrameRate`` column means ``unreal``; emotion columns mean
``neurosync``; a count column spelled exactly ``BlendShapeCount`` means ``livelink_app``; otherwise a first
timecode of ``00:00:00:00.000`` (or no timecode) means ``neurosync`` and anything else ``livelink_app``
(NeuroSync ships app takes re-headed with ``BlendshapeCount``).

Files written by NeuroSync itself are read BY POSITION (``Take.columns == "position"``). NeuroSync's writer
(``save_generated_data_as_csv``) puts the app's header (``JawRight,JawLeft``, ``MouthRight,MouthLeft``) over
its model's values, which are in Unreal's wire order (``JawLeft,JawRight``, ``MouthLeft,MouthRight``), so its
files are mislabelled for those two pairs; NeuroSync's Player reads them by position and plays them as the
model made them. Reading them by position gives the same curves. A file is taken as NeuroSync-written when all
of these hold (:func:`written_by_neurosync`):

* the header is exactly NeuroSync's (``Timecode,BlendshapeCount,`` + the 61 names in the app's order, + the
  7 emotion names or not), spelled and ordered as its writer spells it;
* every row's timecode is what its writer computes for that row (:func:`neurosync_writer_timecode`, with its
  truncated frame numbers: row 5 is ``00:00:00:04.083``), or every timecode is the row number written as a
  float (``0.0``, ``1.0``...: the writer's early versions);
* the take has more than 5 rows (Facecast's own timecodes differ from row 5 on: ``00:00:00:05.083``), or its
  numbers are Python's float text (``0.0``, ``-0.0``, more than 9 significant digits) where Facecast writes
  ``%.9g`` (``0``).

Everything else is read by name: Live Link Face app takes (also those re-headed with ``BlendshapeCount``, whose
wall-clock timecodes never match), Unreal's files, and the takes Facecast writes (correctly labelled).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from ..errors import InputError
from ..types import FACE_WIDTH, Float32Array
from .arkit import APP_CSV_NAMES, EMOTION_NAMES, FRAME_NAMES, INDEX, LIVE_LINK_COUNT, LIVE_LINK_NAMES

__all__ = [
    "TakeFormat",
    "ColumnMatch",
    "Take",
    "NEUROSYNC_COLUMNS",
    "LIVELINK_APP_COLUMNS",
    "UNREAL_COLUMNS",
    "TIMECODE_RATES",
    "neurosync_timecode",
    "neurosync_writer_timecode",
    "written_by_neurosync",
    "app_timecode",
    "neurosync_header",
    "neurosync_rows",
    "format_neurosync_csv",
    "format_livelink_app_csv",
    "write_neurosync_csv",
    "write_livelink_app_csv",
    "parse_take",
    "read_take",
]

TakeFormat = Literal["neurosync", "livelink_app", "unreal"]
ColumnMatch = Literal["name", "position"]

NEUROSYNC_COLUMNS: tuple[str, ...] = ("Timecode", "BlendshapeCount", *APP_CSV_NAMES, *EMOTION_NAMES)
"""The 70 columns of a NeuroSync ``shapes.csv``, in the order written."""

LIVELINK_APP_COLUMNS: tuple[str, ...] = ("Timecode", "BlendShapeCount", *APP_CSV_NAMES)
"""The 63 columns of a Live Link Face app take CSV, in the order written."""

UNREAL_COLUMNS: tuple[str, ...] = ("Timecode", "FrameRate", *LIVE_LINK_NAMES)
"""The 63 columns of Unreal's on-device CSV (written there separated by ``", "``)."""

TIMECODE_RATES: tuple[int, ...] = (24, 25, 30, 48, 50, 60, 72, 90, 96, 100, 120, 144, 240)
"""Frame rates the writers accept, and that measured rates snap to on read."""

DEFAULT_FPS = 60
_SNAP_TOLERANCE = 0.05
_TIMECODE = re.compile(r"^(\d+):(\d+):(\d+)[:;](\d+)(?:\.(\d+))?$")
_ROW_NUMBER = re.compile(r"^\d+(?:\.0*)?$")  # NeuroSync's early writer: the row number as a float ("3.0")
_SECONDS_PER_DAY = 86_400
_NEUROSYNC_HEADERS = (NEUROSYNC_COLUMNS, NEUROSYNC_COLUMNS[: 2 + LIVE_LINK_COUNT])
_SAME_TIMECODES = 5  # rows at the start of a take where NeuroSync's writer and Facecast's write the same timecodes
_WRITTEN_DIGITS = 9  # Facecast writes NeuroSync values with %.9g


@dataclass(frozen=True, slots=True, eq=False)
class Take:
    """A face take: ``values[k]`` is row ``k``, 68 float32 values in Facecast frame order.

    ``fps`` is the row rate (see the module docstring for how it is derived on read), ``format`` the format
    it was read from, ``start_time`` the first row's timecode in seconds (time of day for app takes, 0 for
    the takes Facecast writes), ``columns`` how the file's columns were matched to curves: ``"name"``, or
    ``"position"`` for a file NeuroSync wrote (see the module docstring). Values are coerced to a C-contiguous
    float32 array; a shape other than ``(N, 68)`` or a non-positive ``fps`` raises :class:`ValueError`.
    """

    values: Float32Array = field(repr=False)
    fps: float = 60.0
    format: TakeFormat = "neurosync"
    start_time: float = 0.0
    columns: ColumnMatch = "name"

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _as_frames(self.values))
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be a positive number, got {self.fps}")

    @property
    def frames(self) -> int:
        """Number of rows (frames) in the take."""
        return len(self.values)

    @property
    def duration(self) -> float:
        """Seconds covered by the take's rows at ``fps``."""
        return self.frames / self.fps


def _as_frames(values: object) -> Float32Array:
    arr = np.ascontiguousarray(values, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != FACE_WIDTH:
        raise ValueError(f"face values must have shape (N, {FACE_WIDTH}), got {arr.shape}")
    return arr


def _check_write(values: object, fps: int | float) -> tuple[Float32Array, int]:
    arr = _as_frames(values)
    if fps not in TIMECODE_RATES:
        raise ValueError(f"fps {fps} is not one of the supported timecode rates {TIMECODE_RATES}")
    if not np.isfinite(arr).all():
        raise ValueError("face values must be finite (no NaN or infinity)")
    return arr, int(fps)


# ---------------------------------------------------------------------------------------------- writing


def neurosync_timecode(index: int, fps: int = DEFAULT_FPS) -> str:
    """Timecode of row ``index`` in a NeuroSync file: ``HH:MM:SS:FF.mmm`` from ``00:00:00:00.000``.

    ``FF`` is the frame within the second and ``mmm`` the whole milliseconds of that frame's start within
    the second (``floor(1000 * FF / fps)``).
    """
    if index < 0:
        raise ValueError("row index must not be negative")
    seconds, frame = divmod(index, fps)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    millis = 1000 * frame // fps
    return f"{hours:02d}:{minutes:02d}:{secs:02d}:{frame:02d}.{millis:03d}"


def neurosync_writer_timecode(index: int) -> str:
    """The timecode NeuroSync's own CSV writer puts on row ``index`` (60 fps), character for character.

    It takes ``t = index * (1 / 60)`` in floating point, writes the whole milliseconds within the second as
    ``mmm`` and ``FF = int(milliseconds / (1000 / 60))``, so float truncation repeats or skips frame numbers
    (row 5 is ``00:00:00:04.083``). Used to recognise its files; Facecast writes :func:`neurosync_timecode`.
    """
    if index < 0:
        raise ValueError("row index must not be negative")
    total = index * (1 / DEFAULT_FPS)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    millis = (seconds - int(seconds)) * 1000
    frame = int(millis / (1000 / DEFAULT_FPS))
    return f"{int(hours):02d}:{int(minutes):02d}:{int(seconds):02d}:{frame:02d}.{int(millis):03d}"


def app_timecode(index: int, fps: int = DEFAULT_FPS, start: float = 0.0) -> str:
    """Timecode of row ``index`` in a Live Link Face app take starting at ``start`` seconds (time of day).

    ``HH:MM:SS:FF.fff`` with ``FF`` the frame at ``fps`` and ``fff`` the sub-frame in thousandths; hours
    wrap at 24 like a clock.
    """
    total = start * fps + index
    whole = math.floor(total + 1e-9)
    sub = round((total - whole) * 1000)
    if sub >= 1000:
        whole, sub = whole + 1, 0
    sub = max(sub, 0)
    seconds, frame = divmod(whole, fps)
    seconds %= _SECONDS_PER_DAY
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}:{frame:02d}.{sub:03d}"


_NEUROSYNC_ORDER = np.array([INDEX[name] for name in NEUROSYNC_COLUMNS[2:]], dtype=np.intp)
_APP_ORDER = np.array([INDEX[name] for name in APP_CSV_NAMES], dtype=np.intp)
_NEUROSYNC_VALUES_FMT = ",".join(["%.9g"] * FACE_WIDTH)
_APP_VALUES_FMT = ",".join(["%.10f"] * LIVE_LINK_COUNT)


def neurosync_header() -> str:
    """The header line of a NeuroSync ``shapes.csv``, with its line ending."""
    return ",".join(NEUROSYNC_COLUMNS) + "\n"


def neurosync_rows(values: object, start_index: int = 0, fps: int = DEFAULT_FPS) -> str:
    """NeuroSync CSV rows for ``values`` (N x 68, frame order), numbered from ``start_index``.

    For writing a take piece by piece (e.g. a live recording); raises :class:`ValueError` for a bad shape,
    non-finite values or an unsupported ``fps``.
    """
    arr, rate = _check_write(values, fps)
    ordered = arr[:, _NEUROSYNC_ORDER].tolist()
    return "".join(
        f"{neurosync_timecode(start_index + k, rate)},{FACE_WIDTH},{_NEUROSYNC_VALUES_FMT % tuple(row)}\n"
        for k, row in enumerate(ordered)
    )


def format_neurosync_csv(values: object, fps: int = DEFAULT_FPS) -> str:
    """The text of a NeuroSync ``shapes.csv`` for ``values`` (N x 68 in frame order)."""
    return neurosync_header() + neurosync_rows(values, 0, fps)


def _start_seconds(start_timecode: str | float, fps: int) -> float:
    if isinstance(start_timecode, str):
        match = _TIMECODE.match(start_timecode.strip())
        if match is None:
            raise ValueError(f"start timecode {start_timecode!r} is not HH:MM:SS:FF[.fff]")
        hours, minutes, secs, frame = (int(g) for g in match.groups()[:4])
        if frame >= fps:
            raise ValueError(f"start timecode {start_timecode!r} has frame {frame} >= {fps} fps")
        sub = _fraction(match.group(5))
        return hours * 3600 + minutes * 60 + secs + (frame + sub) / fps
    if not (math.isfinite(start_timecode) and start_timecode >= 0):
        raise ValueError(f"start time must be a non-negative number of seconds, got {start_timecode}")
    return float(start_timecode)


def format_livelink_app_csv(values: object, fps: int = DEFAULT_FPS, start_timecode: str | float = 0.0) -> str:
    """The text of a Live Link Face app take for ``values`` (N x 68; the 7 emotions are not written).

    ``start_timecode`` is the first row's timecode, as ``"HH:MM:SS:FF.fff"`` at ``fps`` or as seconds
    since midnight (e.g. the wall-clock time the take started).
    """
    arr, rate = _check_write(values, fps)
    start = _start_seconds(start_timecode, rate)
    ordered = arr[:, _APP_ORDER].tolist()
    lines = [",".join(LIVELINK_APP_COLUMNS) + "\n"]
    lines.extend(
        f"{app_timecode(k, rate, start)},{LIVE_LINK_COUNT},{_APP_VALUES_FMT % tuple(row)}\n"
        for k, row in enumerate(ordered)
    )
    return "".join(lines)


def write_neurosync_csv(path: str | Path, values: object, fps: int = DEFAULT_FPS) -> None:
    """Write ``values`` (N x 68, frame order) as a NeuroSync ``shapes.csv`` at ``path``."""
    Path(path).write_text(format_neurosync_csv(values, fps), encoding="utf-8", newline="")


def write_livelink_app_csv(
    path: str | Path, values: object, fps: int = DEFAULT_FPS, start_timecode: str | float = 0.0
) -> None:
    """Write ``values`` as a Live Link Face app take CSV at ``path`` (see :func:`format_livelink_app_csv`)."""
    text = format_livelink_app_csv(values, fps, start_timecode)
    Path(path).write_text(text, encoding="utf-8", newline="")


# ---------------------------------------------------------------------------------------------- reading


def _fraction(digits: str | None) -> float:
    return int(digits) / 10 ** len(digits) if digits else 0.0


@dataclass(frozen=True, slots=True)
class _Stamp:
    seconds: int  # HH:MM:SS as seconds
    frame: int  # FF
    fraction: float  # the digits after the dot, as a fraction (0.689 for ".689")


def _parse_stamp(text: str, line: int) -> _Stamp:
    if _ROW_NUMBER.match(text.strip()):  # a row number: frame N at 60 fps
        seconds, frame = divmod(int(float(text)), DEFAULT_FPS)
        return _Stamp(seconds, frame, 0.0)
    match = _TIMECODE.match(text.strip())
    if match is None:
        raise InputError(f"line {line}: timecode {text.strip()!r} is not HH:MM:SS:FF[.fff]")
    hours, minutes, secs, frame = (int(g) for g in match.groups()[:4])
    if minutes >= 60 or secs >= 60:
        raise InputError(f"line {line}: timecode {text.strip()!r} has minutes or seconds over 59")
    return _Stamp(hours * 3600 + minutes * 60 + secs, frame, _fraction(match.group(5)))


def _snap(rate: float) -> float:
    """A measured rate, snapped to a common rate within 5%, else to an integer within 1%."""
    best = min(TIMECODE_RATES, key=lambda r: abs(rate - r))
    if abs(rate - best) <= _SNAP_TOLERANCE * best:
        return float(best)
    if abs(rate - round(rate)) <= 0.01 * rate:
        return float(round(rate))
    return round(rate, 3)


def _rate_at_least(frames: int) -> int:
    """The smallest common timecode rate that counts ``frames`` frames per second."""
    return next((r for r in TIMECODE_RATES if r >= frames), frames)


def _unwrap_day(times: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Undo a wall-clock wrap past midnight so that times keep increasing."""
    steps = np.diff(times)
    wraps = np.concatenate(([0.0], np.cumsum(np.where(steps < -_SECONDS_PER_DAY / 2, _SECONDS_PER_DAY, 0.0))))
    out: npt.NDArray[np.float64] = times + wraps
    return out


def _neurosync_timing(stamps: Sequence[_Stamp]) -> tuple[float, float]:
    if all(s.fraction == 0 for s in stamps):
        return _app_timing(stamps)  # a ``FF.000`` writer: only the frame numbers carry the time
    times = _unwrap_day(np.array([s.seconds + s.fraction for s in stamps], dtype=np.float64))
    span = float(times[-1] - times[0])
    fps = _snap((len(times) - 1) / span) if len(times) >= 2 and span > 0 else float(DEFAULT_FPS)
    return fps, float(times[0])


def _app_timing(stamps: Sequence[_Stamp]) -> tuple[float, float]:
    crossed = any(s.seconds != stamps[0].seconds for s in stamps)
    top = max(s.frame for s in stamps) + 1
    tc_rate = _rate_at_least(top) if crossed else max(DEFAULT_FPS, _rate_at_least(top))
    times = _unwrap_day(np.array([s.seconds + (s.frame + s.fraction) / tc_rate for s in stamps], dtype=np.float64))
    steps = np.diff(times)
    steps = steps[steps > 0]
    fps = _snap(1.0 / float(np.median(steps))) if len(steps) else float(DEFAULT_FPS)
    return fps, float(times[0])


def _frame_rate_cell(text: str, line: int) -> float:
    match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(\d+(?:\.\d+)?))?", text)
    rate = float(match.group(1)) / float(match.group(2) or 1) if match else 0.0
    if not (math.isfinite(rate) and rate > 0):
        raise InputError(f"line {line}, column FrameRate: {text.strip()!r} is not a frame rate")
    return rate


def _detect(names: dict[str, int], raw: Sequence[str], first_stamp: _Stamp | None) -> TakeFormat:
    if "framerate" in names:
        return "unreal"
    if any(name.lower() in names for name in EMOTION_NAMES):
        return "neurosync"
    if any(name.strip() == "BlendShapeCount" for name in raw):
        return "livelink_app"
    if first_stamp is None or (first_stamp.seconds, first_stamp.frame, first_stamp.fraction) == (0, 0, 0.0):
        return "neurosync"
    return "livelink_app"


def _significant_digits(text: str) -> int:
    mantissa = text.strip().lstrip("+-").lower().split("e")[0].replace(".", "")
    return len(mantissa.strip("0"))


def written_by_neurosync(header: Sequence[str], timecodes: Sequence[str], cells: Iterable[Sequence[str]]) -> bool:
    """Whether a take CSV was written by NeuroSync itself (its values are then read by position): its
    ``header`` cells, its rows' ``timecodes`` and the text of its value cells carry NeuroSync's writer's
    signature (see the module docstring)."""
    if tuple(header) not in _NEUROSYNC_HEADERS or not timecodes:
        return False
    if all(_ROW_NUMBER.match(code.strip()) for code in timecodes):
        return all(float(code) == k for k, code in enumerate(timecodes))
    if any(code.strip() != neurosync_writer_timecode(k) for k, code in enumerate(timecodes)):
        return False
    if len(timecodes) > _SAME_TIMECODES:
        return True
    return any(
        text.strip().endswith(".0") or _significant_digits(text) > _WRITTEN_DIGITS for row in cells for text in row
    )


def _bad_cell(cells: list[list[str]], lines: list[int], names: Sequence[str]) -> InputError:
    """Locate the first cell that is not a finite float32 (the slow path of :func:`_to_values`)."""
    for row, line in zip(cells, lines, strict=True):
        for text, name in zip(row, names, strict=True):
            try:
                number = float(text)
            except ValueError:
                return InputError(f"line {line}, column {name}: {text.strip()!r} is not a number")
            if not math.isfinite(number) or abs(number) > float(np.finfo(np.float32).max):
                return InputError(f"line {line}, column {name}: {text.strip()!r} is not a finite float32")
    return InputError("malformed values")  # pragma: no cover - only reached if numpy and float() disagree


def _to_values(cells: list[list[str]], lines: list[int], names: Sequence[str]) -> Float32Array:
    if not cells:
        return np.zeros((0, len(names)), dtype=np.float32)
    try:
        wide = np.array(cells, dtype=np.float64)
    except ValueError:
        raise _bad_cell(cells, lines, names) from None
    with np.errstate(over="ignore"):
        narrow = wide.astype(np.float32)
    if not np.isfinite(narrow).all():
        raise _bad_cell(cells, lines, names)
    return narrow


def parse_take(text: str) -> Take:
    """Parse the text of a take CSV in any of the three formats (detected from its header).

    Columns are matched by name, ignoring case and surrounding spaces; unknown columns are ignored and
    the column order is free. Files NeuroSync wrote are read by position instead, as NeuroSync's Player
    reads them (:func:`written_by_neurosync`). Raises :class:`InputError` when the text has no header, when a column is
    named twice, when curves are missing (the message names them all; the 7 emotions are optional but
    all-or-nothing), or for a malformed row (wrong field count, bad timecode, a value that is not a finite
    float32), naming its line number.
    """
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    header: list[str] | None = next((row for row in reader if any(cell.strip() for cell in row)), None)
    if header is None:
        raise InputError("take CSV is empty: no header line")
    names: dict[str, int] = {}
    for position, name in enumerate(header):
        key = name.strip().lower()
        if key and key in names:
            raise InputError(f"take CSV names column {name.strip()!r} twice")
        if key:
            names[key] = position
    has_emotions = any(name.lower() in names for name in EMOTION_NAMES)
    wanted = FRAME_NAMES if has_emotions else LIVE_LINK_NAMES
    missing = [name for name in wanted if name.lower() not in names]
    if missing:
        raise InputError(f"take CSV is missing {len(missing)} column(s): {', '.join(missing)}")
    columns = [names[name.lower()] for name in wanted]
    timecode_col = names.get("timecode")
    rate_col = names.get("framerate")

    cells: list[list[str]] = []
    lines: list[int] = []
    stamps: list[_Stamp] = []
    timecodes: list[str] = []
    stated_rate: float | None = None
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        line = reader.line_num
        if len(row) != len(header):
            raise InputError(f"line {line}: expected {len(header)} fields like the header, got {len(row)}")
        cells.append([row[c] for c in columns])
        lines.append(line)
        if timecode_col is not None:
            timecodes.append(row[timecode_col])
            stamps.append(_parse_stamp(row[timecode_col], line))
        if rate_col is not None and stated_rate is None:
            stated_rate = _frame_rate_cell(row[rate_col], line)

    values = _to_values(cells, lines, wanted)
    frames = np.zeros((len(values), FACE_WIDTH), dtype=np.float32)
    frames[:, [INDEX[name] for name in wanted]] = values
    by_position = written_by_neurosync(header, timecodes, cells)
    if by_position:  # its header is the app's over values in wire order: take them in their file order
        frames[:, :LIVE_LINK_COUNT] = frames[:, _NEUROSYNC_ORDER[:LIVE_LINK_COUNT]]

    fmt = _detect(names, header, stamps[0] if stamps else None)
    fps, start = float(DEFAULT_FPS), 0.0
    if stamps:
        fps, start = _neurosync_timing(stamps) if fmt == "neurosync" else _app_timing(stamps)
    if stated_rate is not None:
        fps = stated_rate
        if stamps:
            first = stamps[0]
            start = first.seconds + (first.frame + first.fraction) / stated_rate
    return Take(frames, fps=fps, format=fmt, start_time=start, columns="position" if by_position else "name")


def read_take(source: str | Path | bytes) -> Take:
    """Read a take from a file path, or from CSV content (``bytes``, or a ``str`` holding a line break).

    A ``str`` without a line break is taken as a path. Raises :class:`InputError` for a missing or
    unreadable file and for everything :func:`parse_take` rejects.
    """
    if isinstance(source, bytes):
        try:
            return parse_take(source.decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise InputError(f"take CSV is not UTF-8 text: {exc}") from exc
    if isinstance(source, str) and ("\n" in source or "\r" in source):
        return parse_take(source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise InputError(f"take file not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read take file {path}: {exc}") from exc
    return parse_take(text)
