"""VMC protocol output (OSC over UDP) for VTuber apps: VSeeFace, VNyan, Warudo, VMagicMirror...

``--vmc HOST:PORT`` (repeatable) sends the character's face to a VMC receiver ("marionette") as one OSC
bundle per face frame, on the shared 60 fps pacer (:mod:`facecast.engine.pacer`: the absolute schedule
Live Link uses, frame ``i`` of an utterance leaving at ``playback start + i / 60``), so a receiver that
applies a bundle when it arrives shows the face in sync with the audio. Each bundle holds, in order:

1. ``/VMC/Ext/OK 1`` (a model is loaded) and ``/VMC/Ext/T time`` (the frame's face time in seconds);
2. ``/VMC/Ext/Bone/Pos NAME px py pz qx qy qz qw`` for ``Head``, ``LeftEye`` and ``RightEye`` (Unity's
   humanoid bone names): the head and eye yaw/pitch/roll curves (degrees / 180) as unit quaternions;
3. ``/VMC/Ext/Blend/Val NAME value`` for each of the 52 ARKit blendshapes under its "perfect sync" name
   (:data:`PERFECT_SYNC_NAMES`), weights in [0, 1];
4. exactly one ``/VMC/Ext/Blend/Apply``, last: receivers apply the values together.

A bundle is one datagram whose elements a receiver handles together, so a frame is never shown half applied.

Rotations follow Unity's left-handed convention, which VMC uses: yaw about +Y, pitch about +X, roll about +Z,
composed as Unity composes Euler angles (roll, then pitch, then yaw: ``q = q_yaw * q_pitch * q_roll``). Bone
positions are fixed typical offsets of a humanoid (metres, local to the parent bone); receivers use the
rotations (set "apply bone positions" off where a receiver offers it, e.g. EVMC4U).

:func:`vmc_messages` is the frame -> messages codec, readable and built with python-osc; :class:`VmcEncoder`
is the pacer's :class:`~facecast.engine.pacer.FrameEncoder`: the same bytes, from a template made once by
python-osc in which each frame only rewrites the 74 float slots.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder

from ..errors import ConfigError
from ..face.arkit import INDEX, LIVE_LINK_NAMES, ROTATION_INDICES
from ..types import FACE_WIDTH, FPS, Float32Array
from .livelink_udp import LiveLinkSender, LiveLinkTarget
from .sinks import SessionInfo
from .stream import AvatarStream, StreamSink

__all__ = [
    "DEFAULT_PORT",
    "PERFECT_SYNC_NAMES",
    "BONES",
    "VmcTarget",
    "parse_vmc_targets",
    "euler_quaternion",
    "bone_rotations",
    "vmc_messages",
    "build_bundle",
    "VmcEncoder",
    "VmcOutput",
]

DEFAULT_PORT = 39539
"""The VMC protocol's usual receiving port (VSeeFace, VNyan and Warudo default to it)."""

PERFECT_SYNC_NAMES: tuple[str, ...] = LIVE_LINK_NAMES[: ROTATION_INDICES[0]]
"""The 52 "perfect sync" blendshape clip names VSeeFace (and VMagicMirror, VNyan, Warudo) look for: ARKit's
``ARFaceAnchor.BlendShapeLocation`` names with the first letter upper-cased (``jawOpen`` -> ``JawOpen``),
as the VRM models set up for perfect sync name their clips. Sent in this order, the Live Link curve order."""

_BLEND_INDEX = np.array([INDEX[name] for name in PERFECT_SYNC_NAMES], dtype=np.intp)

BONES: tuple[tuple[str, int, tuple[float, float, float]], ...] = (
    ("Head", INDEX["HeadYaw"], (0.0, 0.06, 0.0)),
    ("LeftEye", INDEX["LeftEyeYaw"], (-0.03, 0.06, 0.08)),
    ("RightEye", INDEX["RightEyeYaw"], (0.03, 0.06, 0.08)),
)
"""Each bone sent: its Unity humanoid name, the frame index of its yaw (pitch and roll follow), and the local
position sent with it (metres; typical, since receivers apply the rotation)."""

# OSC messages of a bundle, as (address, arguments)
Message: TypeAlias = tuple[str, list[object]]


# ----------------------------------------------------------------------------------------------- targets


@dataclass(frozen=True, slots=True)
class VmcTarget:
    """Where VMC datagrams go: a host name or IP address and a UDP port (default :data:`DEFAULT_PORT`)."""

    host: str
    port: int = DEFAULT_PORT

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("VMC target host must not be empty")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"VMC target port must be 1-65535, got {self.port}")

    @classmethod
    def parse(cls, text: str) -> VmcTarget:
        """``HOST:PORT``, ``[IPV6]:PORT``, or a bare host (port 39539). Raises ValueError for an empty host, a
        port that is not a number in 1-65535, or unbalanced brackets."""
        spec = text.strip()
        port_text: str | None
        if spec.startswith("["):
            host, sep, rest = spec[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise ValueError(f"bad VMC target {text!r}: expected [IPV6]:PORT")
            port_text = rest[1:] if rest else None
        elif spec.count(":") == 1:
            host, _, port_text = spec.partition(":")
        else:
            host, port_text = spec, None
        if port_text is None:
            return cls(host)
        if not port_text.isdecimal():
            raise ValueError(f"bad VMC target {text!r}: port {port_text!r} is not a number")
        return cls(host, int(port_text))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_vmc_targets(specs: Iterable[str]) -> tuple[VmcTarget, ...]:
    """Parse repeated ``--vmc`` values, dropping duplicates (first kept); any ``off`` means none. Raises
    :class:`~facecast.errors.ConfigError` naming the bad value."""
    items = [spec.strip() for spec in specs if spec.strip()]
    if any(item.lower() == "off" for item in items):
        return ()
    try:
        return tuple(dict.fromkeys(VmcTarget.parse(item) for item in items))
    except ValueError as exc:
        raise ConfigError(f"--vmc: {exc}") from None


# -------------------------------------------------------------------------------------------------- codec


def euler_quaternion(yaw: float, pitch: float, roll: float) -> tuple[float, float, float, float]:
    """The unit quaternion ``(x, y, z, w)`` of Unity Euler angles in radians: yaw about Y, pitch about X, roll
    about Z, applied roll first, then pitch, then yaw (``q_yaw * q_pitch * q_roll``)."""
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    # q_yaw = (0, sy, 0, cy); q_pitch = (sp, 0, 0, cp); q_roll = (0, 0, sr, cr); Hamilton products.
    x = cy * sp * cr + sy * cp * sr
    y = sy * cp * cr - cy * sp * sr
    z = cy * cp * sr - sy * sp * cr
    w = cy * cp * cr + sy * sp * sr
    return (x, y, z, w)


def _finite(values: Float32Array) -> Float32Array:
    if values.shape != (FACE_WIDTH,) and values.shape != (61,):
        raise ValueError(f"a face frame has {FACE_WIDTH} (or 61) values, got shape {values.shape}")
    return np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=1.0, neginf=-1.0)


def bone_rotations(values: Float32Array) -> list[tuple[str, tuple[float, float, float, float]]]:
    """``(bone name, quaternion)`` for Head, LeftEye, RightEye from a frame's yaw/pitch/roll curves."""
    frame = _finite(values)
    rotations = []
    for name, first, _ in BONES:
        yaw, pitch, roll = (float(np.clip(frame[first + k], -1.0, 1.0)) * math.pi for k in range(3))
        rotations.append((name, euler_quaternion(yaw, pitch, roll)))
    return rotations


def vmc_messages(values: Float32Array, time: float) -> list[Message]:
    """One face frame (61 or 68 values) as the VMC messages of its bundle, in bundle order (see the module):
    OK, T, three bones, 52 blend values (clipped to [0, 1]; NaN -> 0), Apply. ``time`` is the frame's face
    time in seconds. Raises ValueError for a frame of another width."""
    frame = _finite(values)
    weights = np.clip(frame[_BLEND_INDEX], 0.0, 1.0)
    messages: list[Message] = [("/VMC/Ext/OK", [1]), ("/VMC/Ext/T", [float(time)])]
    for (name, quaternion), (_, _, position) in zip(bone_rotations(frame), BONES, strict=True):
        messages.append(("/VMC/Ext/Bone/Pos", [name, *position, *quaternion]))
    messages += [("/VMC/Ext/Blend/Val", [n, float(v)]) for n, v in zip(PERFECT_SYNC_NAMES, weights, strict=True)]
    messages.append(("/VMC/Ext/Blend/Apply", []))
    return messages


def build_bundle(messages: Sequence[Message]) -> bytes:
    """The messages as one OSC bundle (time tag "immediately"), encoded by python-osc (floats as float32,
    ints as int32, strings as OSC strings)."""
    bundle = OscBundleBuilder(IMMEDIATELY)
    for address, arguments in messages:
        builder = OscMessageBuilder(address)
        for argument in arguments:
            if not isinstance(argument, (int, float, str)) or isinstance(argument, bool):
                raise TypeError(f"VMC arguments are ints, floats and strings, not {argument!r}")
            kind = {int: "i", float: "f", str: "s"}[type(argument)]
            builder.add_arg(argument, kind)
        bundle.add_content(builder.build())
    return bundle.build().dgram


class VmcEncoder:
    """The pacer's VMC :class:`~facecast.engine.pacer.FrameEncoder`: :func:`build_bundle` of
    :func:`vmc_messages` byte for byte, made cheap: a template bundle is encoded once and each frame writes
    its 74 big-endian float32 values (time, 3 x 7 bone values, 52 weights) into their slots."""

    def __init__(self) -> None:
        template = build_bundle(vmc_messages(np.zeros(FACE_WIDTH, np.float32), 0.0))
        self._template = np.frombuffer(template, dtype=np.uint8).copy()
        # The float slots: each message's float arguments are its last 4 * n bytes (after the type tags and
        # the name string); walk the bundle's elements (int32 size, then the message) to find them.
        slots: list[int] = []
        floats_per_message = [1] + [7] * len(BONES) + [1] * len(PERFECT_SYNC_NAMES)
        offset = 16  # after "#bundle" and the time tag
        sizes = []
        while offset < len(template):
            size = int.from_bytes(template[offset : offset + 4], "big", signed=True)
            sizes.append((offset + 4, size))
            offset += 4 + size
        for (start, size), count in zip(sizes[1:], floats_per_message, strict=False):
            end = start + size
            slots += range(end - 4 * count, end)
        self._slots = np.asarray(slots, dtype=np.intp)
        assert len(self._slots) == 4 * sum(floats_per_message)

    def encode(self, number: int, sub_frame: float, values: Float32Array) -> bytes:
        frame = _finite(values)
        floats = np.empty(1 + 7 * len(BONES) + len(PERFECT_SYNC_NAMES), dtype=np.float32)
        floats[0] = (number + sub_frame) / FPS
        k = 1
        for (_, quaternion), (_, _, position) in zip(bone_rotations(frame), BONES, strict=True):
            floats[k : k + 7] = (*position, *quaternion)
            k += 7
        floats[k:] = np.clip(frame[_BLEND_INDEX], 0.0, 1.0)
        packet = self._template.copy()
        packet[self._slots] = floats.astype(">f4").view(np.uint8)
        return packet.tobytes()


# ------------------------------------------------------------------------------------------------- output


class _VmcSender(LiveLinkSender):
    """The Live Link UDP sender (fire and forget, one datagram per packet per target) for VMC targets."""

    async def open(self) -> None:
        try:
            await super().open()
        except ConfigError as exc:  # its message names Live Link; the target is a VMC one
            raise ConfigError(str(exc).replace("Live Link target", "VMC target")) from None


class VmcOutput:
    """``--vmc``: the server's face stream to VMC receivers (an :class:`~facecast.engine.sinks.Output`).

    One avatar, so one stream (:class:`~facecast.engine.stream.AvatarStream`) for every target: the newest
    live session drives it (its utterances on the pacer's absolute schedule, its idle face in between); when
    that session ends the previous live one drives it again, and with none left the stream shows the last
    session's idle face for ``linger`` seconds, then stops (the receiver falls back to its own tracking).
    Send errors are counted, never raised (UDP: a receiver that is not running costs nothing).
    """

    def __init__(self, targets: Sequence[VmcTarget], *, linger: float = 30.0) -> None:
        self.targets = tuple(targets)
        self.sender = _VmcSender([LiveLinkTarget(t.host, t.port) for t in self.targets])
        self.stream = AvatarStream("vmc", VmcEncoder(), self.sender, linger=linger)
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Open the socket(s) and stream until cancelled. Raises :class:`~facecast.errors.ConfigError` for a
        target that does not resolve."""
        await self.sender.open()
        try:
            await self.stream.run()
        finally:
            self.stream.close()
            self.sender.close()

    async def __aenter__(self) -> VmcOutput:
        await self.sender.open()  # a target that does not resolve stops the server's start
        self._task = asyncio.create_task(self.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        self.stream.close()
        self.sender.close()

    def attach(self, session: SessionInfo) -> StreamSink:
        return self.stream.attach(session.timeline, {"output": "vmc", "targets": [str(t) for t in self.targets]})

    def describe(self) -> dict[str, object]:
        return {
            "output": "vmc",
            "targets": [str(t) for t in self.targets],
            "sent": self.sender.sent,
            "errors": self.sender.errors,
        }
