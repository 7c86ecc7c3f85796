"""Live Link Face v6 codec: golden bytes, an independent Unreal-rules decoder, round trips, known bugs."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from facecast.face.arkit import INDEX
from facecast.protocol.livelink import (
    CURVE_COUNT,
    MAX_PACKET_SIZE,
    MIN_PACKET_SIZE,
    decode_frame,
    encode_frame,
    packet_size,
)


def unreal_parse(packet: bytes) -> dict[str, Any] | None:
    """Parse like Unreal's ARKit Live Link source: None where Unreal would drop the packet.

    Written from the v6 packet layout field by field, independently of the codec under test.
    """
    if len(packet) < 270:  # header-only packets are ignored
        return None
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(packet):
            raise IndexError("read past the end")
        chunk = packet[pos : pos + n]
        pos += n
        return chunk

    try:
        if take(1)[0] != 6:
            return None
        device_len = int.from_bytes(take(4), "big", signed=True)
        device = take(device_len).decode("utf-8")
        subject_len = int.from_bytes(take(4), "big", signed=True)
        subject = take(subject_len).decode("utf-8")
        frame_number = int.from_bytes(take(4), "big", signed=True)
        (sub_frame,) = struct.unpack(">f", take(4))
        numerator = int.from_bytes(take(4), "big", signed=True)
        denominator = int.from_bytes(take(4), "big", signed=True)
        if take(1)[0] != 61:
            return None
        values = [struct.unpack(">f", take(4))[0] for _ in range(61)]
    except (IndexError, UnicodeDecodeError):
        return None
    return {
        "device": device,
        "subject": subject,
        "frame_number": frame_number,
        "sub_frame": sub_frame,
        "rate": (numerator, denominator),
        "values": values,
        "trailing": len(packet) - pos,
    }


# --------------------------------------------------------------------------------------------- golden bytes

ZERO = b"\x00\x00\x00\x00"

GOLDEN_ASCII = (
    b"\x06"  # version
    + b"\x00\x00\x00\x01" + b"D"  # device id
    + b"\x00\x00\x00\x01" + b"S"  # subject
    + b"\x00\x00\x00\x07"  # frame number 7
    + ZERO  # sub frame 0.0
    + b"\x00\x00\x00\x3c" + b"\x00\x00\x00\x01"  # 60 / 1
    + b"\x3d"  # 61 curves
    + b"\x3f\x00\x00\x00"  # EyeBlinkLeft 0.5
    + ZERO * 16
    + b"\x3f\x80\x00\x00"  # JawOpen 1.0 (index 17)
    + ZERO * 43
)  # fmt: skip

GOLDEN_UNICODE = (
    b"\x06"
    + b"\x00\x00\x00\x02" + b"\xc3\x96"  # device id "Ö": 1 character, 2 bytes
    + b"\x00\x00\x00\x03" + b"\xe9\xa1\x94"  # subject "顔": 1 character, 3 bytes
    + b"\x01\x02\x03\x04"  # frame number 0x01020304
    + b"\x3f\x00\x00\x00"  # sub frame 0.5
    + b"\x00\x00\x75\x30" + b"\x00\x00\x03\xe9"  # 30000 / 1001
    + b"\x3d"
    + ZERO * 52
    + b"\xbf\x80\x00\x00"  # HeadYaw -1.0 (index 52)
    + ZERO * 8
)  # fmt: skip


def test_golden_ascii_packet() -> None:
    values = np.zeros(61, np.float32)
    values[0] = 0.5
    values[17] = 1.0
    packet = encode_frame("D", "S", 7, values)
    assert packet == GOLDEN_ASCII
    assert len(packet) == 272 == packet_size("D", "S")


def test_golden_unicode_packet() -> None:
    values = [0.0] * 61
    values[52] = -1.0
    packet = encode_frame("Ö", "顔", 0x01020304, values, sub_frame=0.5, fps=(30000, 1001))
    assert packet == GOLDEN_UNICODE
    assert len(packet) == 270 + 2 + 3


def test_golden_packets_decode() -> None:
    frame = decode_frame(GOLDEN_UNICODE)
    assert (frame.device_id, frame.subject, frame.frame_number) == ("Ö", "顔", 0x01020304)
    assert frame.sub_frame == 0.5
    assert frame.fps == (30000, 1001)
    assert frame.values[52] == -1.0 and np.count_nonzero(frame.values) == 1
    assert frame.values.dtype == np.float32 and not frame.values.flags.writeable
    assert frame.time == pytest.approx((0x01020304 + 0.5) * 1001 / 30000)
    ascii_frame = decode_frame(GOLDEN_ASCII)
    assert ascii_frame.values[INDEX["JawOpen"]] == 1.0


def test_sixty_eight_values_send_only_the_first_61() -> None:
    full = np.zeros(68, np.float32)
    full[0] = 0.5
    full[17] = 1.0
    full[61:] = 0.9  # emotions: never on the wire
    assert encode_frame("D", "S", 7, full) == GOLDEN_ASCII


# ---------------------------------------------------------------------------- Unreal accepts what we send


@pytest.mark.parametrize(
    ("device", "subject"),
    [
        ("D", "S"),
        ("facecast", "Gesicht-Ö"),
        ("facecast", "顔"),
        ("Ü-device-é", "😀 face"),
        ("a" * 36, "x" * 200),
    ],
)
def test_unreal_rules_accept_every_packet(device: str, subject: str) -> None:
    values = np.linspace(0.0, 1.0, 61, dtype=np.float32)
    packet = encode_frame(device, subject, 1234, values, sub_frame=0.25)
    parsed = unreal_parse(packet)
    assert parsed is not None
    assert parsed["device"] == device and parsed["subject"] == subject
    assert parsed["frame_number"] == 1234 and parsed["sub_frame"] == 0.25
    assert parsed["rate"] == (60, 1)
    assert parsed["values"] == values.tolist()
    assert parsed["trailing"] == 0
    assert len(packet) == 270 + len(device.encode()) + len(subject.encode())


def test_pylivelinkface_bugs_are_absent() -> None:
    device = "abcde"  # not 36 characters: PyLiveLinkFace's '$'-as-length trick would break here
    packet = encode_frame(device, "顔", 0, [0.0] * 61)
    assert packet[0] == 6  # one version byte, not a little-endian uint32
    assert packet[1:5] == b"\x00\x00\x00\x05"
    subject_len = packet[10:14]
    assert subject_len == b"\x00\x00\x00\x03"  # UTF-8 bytes, not 1 character
    parsed = unreal_parse(packet)
    assert parsed is not None and parsed["rate"] == (60, 1)  # denominator 1 at 60 fps
    parsed30 = unreal_parse(encode_frame(device, "s", 0, [0.0] * 61, fps=(30, 1)))
    assert parsed30 is not None and parsed30["rate"] == (30, 1)  # not int(30 / 60) == 0
    # Values go out exactly as given, every call: no halfway lerp toward the previous frame.
    ones = encode_frame(device, "s", 1, [1.0] * 61)
    assert decode_frame(ones).values.tolist() == [1.0] * 61
    zeros = decode_frame(encode_frame(device, "s", 2, [0.0] * 61))
    assert zeros.values.tolist() == [0.0] * 61


# -------------------------------------------------------------------------------------------- round trips

names = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=40)
int32 = st.integers(-(2**31), 2**31 - 1)
positive_int32 = st.integers(1, 2**31 - 1)
curve = st.floats(width=32, allow_nan=False, allow_infinity=False)


@given(
    device=names,
    subject=names,
    frame_number=int32,
    sub_frame=st.floats(0.0, 1.0, exclude_max=True, width=32),
    fps=st.tuples(positive_int32, positive_int32),
    values=st.lists(curve, min_size=61, max_size=61),
)
def test_round_trip(
    device: str,
    subject: str,
    frame_number: int,
    sub_frame: float,
    fps: tuple[int, int],
    values: list[float],
) -> None:
    packet = encode_frame(device, subject, frame_number, values, sub_frame=sub_frame, fps=fps)
    assert len(packet) == 270 + len(device.encode()) + len(subject.encode()) == packet_size(device, subject)
    frame = decode_frame(packet)
    assert (frame.device_id, frame.subject) == (device, subject)
    assert (frame.frame_number, frame.fps) == (frame_number, fps)
    assert frame.sub_frame == sub_frame
    assert frame.values.tolist() == values
    parsed = unreal_parse(packet)
    assert parsed is not None
    assert (parsed["device"], parsed["subject"], parsed["frame_number"]) == (device, subject, frame_number)
    assert parsed["values"] == values and parsed["trailing"] == 0


@given(st.binary(max_size=400))
def test_decode_never_raises_anything_but_value_error(data: bytes) -> None:
    try:
        frame = decode_frame(data)
    except ValueError:
        return
    assert frame.values.shape == (CURVE_COUNT,)


@given(st.integers(0, 271))
def test_every_truncation_is_rejected(cut: int) -> None:
    with pytest.raises(ValueError):
        decode_frame(GOLDEN_ASCII[:cut])


# ------------------------------------------------------------------------------------------ bad packets


def _patched(packet: bytes, offset: int, new: bytes) -> bytes:
    return packet[:offset] + new + packet[offset + len(new) :]


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (GOLDEN_ASCII[:269], "shorter"),
        (_patched(GOLDEN_ASCII, 0, b"\x05"), "version 5"),
        (_patched(GOLDEN_ASCII, 27, b"\x3c"), "count 60"),  # the count byte: 1+5+5+4+4+8 = 27
        (_patched(GOLDEN_ASCII, 1, b"\x7f\x00\x00\x00"), "device id length"),
        (_patched(GOLDEN_ASCII, 1, b"\xff\xff\xff\xff"), "device id length -1"),
        (_patched(GOLDEN_ASCII, 5, b"\xff"), "not valid UTF-8"),
        (GOLDEN_ASCII + b"\x00", "273 bytes"),
        (_patched(GOLDEN_ASCII, 19, ZERO), "frame rate 0/1"),
    ],
)
def test_undecodable_packets_raise_value_error(packet: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_frame(packet)


def test_unreal_rules_drop_what_decode_rejects() -> None:
    assert unreal_parse(GOLDEN_ASCII[:269]) is None
    assert unreal_parse(_patched(GOLDEN_ASCII, 0, b"\x05")) is None
    assert unreal_parse(_patched(GOLDEN_ASCII, 27, b"\x3c")) is None


# ------------------------------------------------------------------------------------------- bad inputs


def test_non_finite_values_are_sent_as_zero_and_huge_ones_stay_finite() -> None:
    values = [0.25] * 61
    values[3], values[4], values[5], values[6] = float("nan"), float("inf"), float("-inf"), 1e300
    decoded = decode_frame(encode_frame("d", "s", 0, values)).values
    assert decoded[3] == decoded[4] == decoded[5] == 0.0
    assert decoded[6] == np.finfo(np.float32).max
    assert decoded[0] == 0.25


def test_sub_frame_that_rounds_to_one_stays_below_one() -> None:
    frame = decode_frame(encode_frame("d", "s", 0, [0.0] * 61, sub_frame=0.999999999))
    assert 0.99 < frame.sub_frame < 1.0


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"device_id": ""}, ValueError),
        ({"subject": ""}, ValueError),
        ({"subject": "a\x00b"}, ValueError),
        ({"subject": "\ud800"}, ValueError),
        ({"subject": "x" * MAX_PACKET_SIZE}, ValueError),
        ({"subject": 5}, TypeError),
        ({"frame_number": 2**31}, ValueError),
        ({"frame_number": -(2**31) - 1}, ValueError),
        ({"frame_number": 1.5}, TypeError),
        ({"sub_frame": 1.0}, ValueError),
        ({"sub_frame": -0.1}, ValueError),
        ({"sub_frame": float("nan")}, ValueError),
        ({"fps": (60, 0)}, ValueError),
        ({"fps": (0, 1)}, ValueError),
        ({"fps": (60,)}, ValueError),
        ({"values": [0.0] * 60}, ValueError),
        ({"values": [0.0] * 62}, ValueError),
        ({"values": np.zeros((1, 61))}, ValueError),
    ],
)
def test_invalid_input_is_refused(kwargs: dict[str, Any], error: type[Exception]) -> None:
    args: dict[str, Any] = {"device_id": "d", "subject": "s", "frame_number": 0, "values": [0.0] * 61}
    args.update(kwargs)
    with pytest.raises(error):
        encode_frame(**args)


def test_minimum_size_constant_matches_the_layout() -> None:
    assert MIN_PACKET_SIZE == 1 + 4 + 4 + 4 + 4 + 4 + 4 + 1 + 61 * 4
