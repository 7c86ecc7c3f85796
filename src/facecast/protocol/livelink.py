"""Sans-I/O codec for Live Link Face UDP packets, version 6 (the iPhone app's wire format).

This is the packet Unreal's ARKit Live Link source (``AppleARKitLiveLinkSource``) parses, one datagram
per frame, everything big-endian::

    uint8    PacketVersion = 6
    int32    byte length of DeviceId,    then its UTF-8 bytes (no NUL)
    int32    byte length of SubjectName, then its UTF-8 bytes
    int32    FrameNumber
    float32  SubFrame, in [0, 1)
    int32    FrameRate numerator, int32 FrameRate denominator   (60, 1 for 60 fps)
    uint8    BlendShapeCount = 61
    61 x float32 curve values, in ``facecast.face.arkit.LIVE_LINK_NAMES`` order

so a packet is ``270 + len(device_id_utf8) + len(subject_utf8)`` bytes. No sockets here: the sender lives
in :mod:`facecast.engine.livelink`.

Unlike the widely copied PyLiveLinkFace encoder, name lengths are UTF-8 BYTE counts (non-ASCII subject names
work), the version is one byte, the frame rate denominator is whatever the caller gives (1 at 60 fps), and
values are sent exactly as given (no smoothing), except that non-finite values are sent as 0.
"""

from __future__ import annotations

import math
import operator
import struct
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from ..types import FACE_WIDTH, Float32Array

__all__ = [
    "PACKET_VERSION",
    "CURVE_COUNT",
    "DEFAULT_PORT",
    "MIN_PACKET_SIZE",
    "MAX_PACKET_SIZE",
    "LiveLinkFrame",
    "encode_frame",
    "decode_frame",
    "packet_size",
]

PACKET_VERSION = 6
"""The only packet version Unreal's ARKit source accepts; others are dropped."""

CURVE_COUNT = 61
"""Curves per packet (the 61 Live Link curves, no emotions); Unreal drops packets with another count."""

DEFAULT_PORT = 11111
"""The UDP port Unreal's Live Link Face source listens on by default."""

MIN_PACKET_SIZE = 270
"""Size of a packet whose two names are empty; Unreal ignores anything shorter."""

MAX_PACKET_SIZE = 65507
"""The largest UDP payload over IPv4; :func:`encode_frame` refuses names that would not fit."""

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1
_F32_MAX = float(np.finfo(np.float32).max)
_LARGEST_SUBFRAME = float(np.nextafter(np.float32(1.0), np.float32(0.0)))
_TAIL = struct.Struct(">ifiiB")  # frame number, subframe, rate numerator, rate denominator, count
_INT32 = struct.Struct(">i")
_BE_FLOAT32 = np.dtype(">f4")


@dataclass(frozen=True, slots=True, eq=False)
class LiveLinkFrame:
    """One decoded Live Link Face packet.

    ``values`` holds the 61 curves as read-only native float32, in Live Link order, exactly as they were on
    the wire (non-finite values are not repaired on decode). ``fps`` is (numerator, denominator).
    """

    device_id: str
    subject: str
    frame_number: int
    sub_frame: float
    fps: tuple[int, int]
    values: Float32Array = field(repr=False)

    @property
    def time(self) -> float:
        """The packet's frame time in seconds: (frame_number + sub_frame) / rate."""
        numerator, denominator = self.fps
        return (self.frame_number + self.sub_frame) * denominator / numerator


def _name_bytes(what: str, name: str) -> bytes:
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError(f"{what} must not be empty")
    if "\x00" in name:
        raise ValueError(f"{what} must not contain NUL characters: {name!r}")
    try:
        return name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} is not encodable as UTF-8: {name!r}") from exc


@lru_cache(maxsize=1024)
def _header(device_id: str, subject: str) -> bytes:
    """Version byte and the two length-prefixed names: constant per (device, subject), so cached."""
    device = _name_bytes("device_id", device_id)
    name = _name_bytes("subject", subject)
    size = MIN_PACKET_SIZE + len(device) + len(name)
    if size > MAX_PACKET_SIZE:
        raise ValueError(
            f"device_id and subject are {len(device) + len(name)} UTF-8 bytes together; a packet would be "
            f"{size} bytes, over the {MAX_PACKET_SIZE}-byte UDP limit"
        )
    return bytes((PACKET_VERSION,)) + _INT32.pack(len(device)) + device + _INT32.pack(len(name)) + name


def packet_size(device_id: str, subject: str) -> int:
    """Size in bytes of every packet for this device and subject: 270 + their UTF-8 byte lengths.

    Raises ValueError (or TypeError) for names :func:`encode_frame` would refuse.
    """
    return len(_header(device_id, subject)) + _TAIL.size + 4 * CURVE_COUNT


def _int32(what: str, value: int) -> int:
    number = operator.index(value)
    if not _INT32_MIN <= number <= _INT32_MAX:
        raise ValueError(f"{what} {number} does not fit in a signed 32-bit integer")
    return number


def _values_bytes(values: npt.ArrayLike) -> bytes:
    array = np.asarray(values)
    if array.ndim != 1 or array.shape[0] not in (CURVE_COUNT, FACE_WIDTH):
        raise ValueError(f"values must be {CURVE_COUNT} or {FACE_WIDTH} numbers, got shape {array.shape}")
    if array.dtype == np.float32:
        curves = array[:CURVE_COUNT]
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            curves = array[:CURVE_COUNT].astype(np.float32)
    if not np.isfinite(curves).all():
        # Non-finite values would reach Unreal's curves as NaN/inf and poison the rig: send 0 instead. Huge
        # finite values are kept finite at the float32 limit rather than overflowing to inf.
        wide = np.asarray(values, dtype=np.float64)[:CURVE_COUNT]
        wide = np.clip(np.nan_to_num(wide, nan=0.0, posinf=0.0, neginf=0.0), -_F32_MAX, _F32_MAX)
        curves = wide.astype(np.float32)
    return curves.astype(_BE_FLOAT32).tobytes()


def encode_frame(
    device_id: str,
    subject: str,
    frame_number: int,
    values: npt.ArrayLike,
    *,
    sub_frame: float = 0.0,
    fps: tuple[int, int] = (60, 1),
) -> bytes:
    """Encode one frame as a Live Link Face v6 packet (one UDP datagram).

    ``values`` is one face frame of 61 Live Link curves, or a full 68-value Facecast frame of which only the
    first 61 are sent. Values are sent as given (no clamping), except that NaN and infinities are sent as 0.
    ``device_id`` and ``subject`` must be non-empty, NUL-free and fit one datagram; ``frame_number`` a signed
    32-bit integer; ``sub_frame`` a number in [0, 1) (one that float32 would round up to 1 is sent as the
    largest float32 below 1); ``fps`` a (numerator, denominator) pair of positive 32-bit integers.

    Raises ValueError for out-of-range input and TypeError for input of the wrong type.
    """
    header = _header(device_id, subject)
    number = _int32("frame_number", frame_number)
    sub = float(sub_frame)
    if not (math.isfinite(sub) and 0.0 <= sub < 1.0):
        raise ValueError(f"sub_frame must be in [0, 1), got {sub_frame!r}")
    sub = min(sub, _LARGEST_SUBFRAME)
    if len(fps) != 2:
        raise ValueError(f"fps must be a (numerator, denominator) pair, got {fps!r}")
    numerator = _int32("fps numerator", fps[0])
    denominator = _int32("fps denominator", fps[1])
    if numerator <= 0 or denominator <= 0:
        raise ValueError(f"fps numerator and denominator must be positive, got {fps!r}")
    tail = _TAIL.pack(number, sub, numerator, denominator, CURVE_COUNT)
    return header + tail + _values_bytes(values)


def _read_name(data: memoryview, offset: int, what: str) -> tuple[str, int]:
    if offset + 4 > len(data):
        raise ValueError(f"packet ends inside the length of its {what}")
    (length,) = _INT32.unpack_from(data, offset)
    offset += 4
    if length < 0 or offset + length > len(data):
        raise ValueError(f"{what} length {length} does not fit in a {len(data)}-byte packet")
    try:
        text = bytes(data[offset : offset + length]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} is not valid UTF-8") from exc
    return text, offset + length


def decode_frame(data: bytes | bytearray | memoryview) -> LiveLinkFrame:
    """Decode one Live Link Face v6 packet, strictly.

    Raises ValueError naming the problem for anything Unreal would drop (shorter than 270 bytes, a version
    other than 6, a curve count other than 61), for name lengths that overrun the packet or names that are
    not UTF-8, for a frame rate that is not positive, and for a packet whose size is not exactly 270 + the two
    names' byte lengths.
    """
    view = memoryview(data).cast("B")
    if len(view) < MIN_PACKET_SIZE:
        raise ValueError(f"packet of {len(view)} bytes is shorter than the {MIN_PACKET_SIZE}-byte minimum")
    if view[0] != PACKET_VERSION:
        raise ValueError(f"packet version {view[0]} is not {PACKET_VERSION}")
    device_id, offset = _read_name(view, 1, "device id")
    subject, offset = _read_name(view, offset, "subject name")
    expected = offset + _TAIL.size + 4 * CURVE_COUNT
    if len(view) != expected:
        raise ValueError(f"packet is {len(view)} bytes, but its names make it {expected} bytes")
    number, sub, numerator, denominator, count = _TAIL.unpack_from(view, offset)
    if count != CURVE_COUNT:
        raise ValueError(f"blend shape count {count} is not {CURVE_COUNT}")
    if numerator <= 0 or denominator <= 0:
        raise ValueError(f"frame rate {numerator}/{denominator} is not positive")
    values = np.frombuffer(view, dtype=_BE_FLOAT32, count=CURVE_COUNT, offset=offset + _TAIL.size)
    native = values.astype(np.float32)
    native.flags.writeable = False
    return LiveLinkFrame(device_id, subject, number, sub, (numerator, denominator), native)
