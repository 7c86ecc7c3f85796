"""VMC/OSC output: the codec (against python-osc's own encoder and decoder), target parsing, the avatar
stream's ownership rules, and the real stream received by python-osc's own OSC server over UDP."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from pythonosc.osc_server import BlockingOSCUDPServer
from scipy.spatial.transform import Rotation

from facecast.config import Settings, load_settings
from facecast.engine.outputs import outputs_from_settings, run_outputs
from facecast.engine.sinks import SessionInfo
from facecast.engine.timeline import FaceTimeline
from facecast.engine.vmc import (
    BONES,
    DEFAULT_PORT,
    PERFECT_SYNC_NAMES,
    VmcEncoder,
    VmcOutput,
    VmcTarget,
    build_bundle,
    euler_quaternion,
    parse_vmc_targets,
    vmc_messages,
)
from facecast.errors import ConfigError
from facecast.events import FaceOut, UtteranceEnded, UtteranceStarted
from facecast.face.arkit import INDEX, LIVE_LINK_NAMES
from facecast.protocol import engine as proto
from facecast.types import FACE_WIDTH, FaceFrames

# VSeeFace's perfect-sync clip names, written out from its documentation's list (ARKit's 52 blendshape
# locations with an upper-case first letter) independently of the module's constant.
VSEEFACE_PERFECT_SYNC = set(
    "BrowDownLeft BrowDownRight BrowInnerUp BrowOuterUpLeft BrowOuterUpRight CheekPuff CheekSquintLeft "
    "CheekSquintRight EyeBlinkLeft EyeBlinkRight EyeLookDownLeft EyeLookDownRight EyeLookInLeft EyeLookInRight "
    "EyeLookOutLeft EyeLookOutRight EyeLookUpLeft EyeLookUpRight EyeSquintLeft EyeSquintRight EyeWideLeft "
    "EyeWideRight JawForward JawLeft JawOpen JawRight MouthClose MouthDimpleLeft MouthDimpleRight "
    "MouthFrownLeft MouthFrownRight MouthFunnel MouthLeft MouthLowerDownLeft MouthLowerDownRight "
    "MouthPressLeft MouthPressRight MouthPucker MouthRight MouthRollLower MouthRollUpper MouthShrugLower "
    "MouthShrugUpper MouthSmileLeft MouthSmileRight MouthStretchLeft MouthStretchRight MouthUpperUpLeft "
    "MouthUpperUpRight NoseSneerLeft NoseSneerRight TongueOut".split()
)


def _frame(**values: float) -> np.ndarray:
    frame = np.zeros(FACE_WIDTH, np.float32)
    for name, value in values.items():
        frame[INDEX[name]] = value
    return frame


def _decode(packet: bytes) -> list[OscMessage]:
    assert OscBundle.dgram_is_bundle(packet)
    bundle = OscBundle(packet)
    return [m for m in bundle if isinstance(m, OscMessage)]


# ------------------------------------------------------------------------------------------------ codec


def test_the_names_are_vseefaces_perfect_sync_list_and_ours() -> None:
    assert len(PERFECT_SYNC_NAMES) == 52 and set(PERFECT_SYNC_NAMES) == VSEEFACE_PERFECT_SYNC
    assert PERFECT_SYNC_NAMES == LIVE_LINK_NAMES[:52]  # the same curves, in the Live Link order


def test_a_frame_is_one_bundle_ok_time_bones_52_values_then_exactly_one_apply() -> None:
    frame = _frame(JawOpen=0.7, MouthSmileLeft=1.4, EyeBlinkRight=-0.2, HeadYaw=0.1)
    messages = _decode(VmcEncoder().encode(120, 0.5, frame))
    addresses = [m.address for m in messages]
    assert addresses[:2] == ["/VMC/Ext/OK", "/VMC/Ext/T"]
    assert addresses[2:5] == ["/VMC/Ext/Bone/Pos"] * 3
    assert addresses[5:57] == ["/VMC/Ext/Blend/Val"] * 52
    assert addresses[57:] == ["/VMC/Ext/Blend/Apply"] and addresses.count("/VMC/Ext/Blend/Apply") == 1
    assert messages[0].params == [1]
    assert messages[1].params[0] == pytest.approx(120.5 / 60)
    blend = {m.params[0]: m.params[1] for m in messages[5:57]}
    assert list(blend) == list(PERFECT_SYNC_NAMES)
    assert blend["JawOpen"] == pytest.approx(0.7)
    assert blend["MouthSmileLeft"] == 1.0 and blend["EyeBlinkRight"] == 0.0  # clipped to [0, 1]
    assert [m.params[0] for m in messages[2:5]] == ["Head", "LeftEye", "RightEye"]


def test_bone_quaternions_are_unity_euler_angles_and_normalised() -> None:
    frame = _frame(HeadYaw=0.25, HeadPitch=-0.1, HeadRoll=0.05, LeftEyeYaw=0.08, RightEyePitch=-0.06)
    bones = {m.params[0]: m.params[1:] for m in _decode(VmcEncoder().encode(0, 0.0, frame))[2:5]}
    for name, first, position in BONES:
        px, py, pz, *quaternion = bones[name]
        assert (px, py, pz) == pytest.approx(position)
        assert math.fsum(q * q for q in quaternion) == pytest.approx(1.0, abs=1e-6)
        yaw, pitch, roll = (float(frame[first + k]) * math.pi for k in range(3))
        # Unity applies Z, then X, then Y: intrinsic Y-X-Z
        expected = Rotation.from_euler("YXZ", [yaw, pitch, roll]).as_quat()
        assert np.allclose(quaternion, expected, atol=1e-6) or np.allclose(quaternion, -expected, atol=1e-6)
    assert euler_quaternion(math.pi / 2, 0, 0) == pytest.approx((0, math.sqrt(0.5), 0, math.sqrt(0.5)))


@settings(max_examples=60, deadline=None)
@given(
    values=arrays(np.float32, FACE_WIDTH, elements=st.floats(-3, 3, width=32)),
    number=st.integers(0, 2**31 - 1),
    sub=st.floats(0, 0.999),
)
def test_the_fast_encoder_is_python_oscs_encoding_byte_for_byte(values: np.ndarray, number: int, sub: float) -> None:
    packet = VmcEncoder().encode(number, sub, values)
    assert packet == build_bundle(vmc_messages(values, np.float32((number + sub) / 60)))
    assert len(_decode(packet)) == 58


def test_non_finite_values_are_sent_as_finite_and_a_wrong_width_is_refused() -> None:
    frame = _frame(JawOpen=float("nan"), HeadYaw=float("inf"))
    messages = _decode(VmcEncoder().encode(0, 0.0, frame))
    assert all(math.isfinite(p) for m in messages for p in m.params if isinstance(p, float))
    with pytest.raises(ValueError, match="68"):
        VmcEncoder().encode(0, 0.0, np.zeros(10, np.float32))


# ---------------------------------------------------------------------------------------------- targets


def test_targets_parse_like_live_links_with_the_vmc_port() -> None:
    assert parse_vmc_targets(["127.0.0.1:39540", "localhost", "[::1]:9000", "localhost"]) == (
        VmcTarget("127.0.0.1", 39540),
        VmcTarget("localhost", DEFAULT_PORT),
        VmcTarget("::1", 9000),
    )
    assert parse_vmc_targets(["127.0.0.1", "off"]) == ()
    for bad in ("host:port", ":39539", "host:70000", "[::1"):
        with pytest.raises(ConfigError, match="--vmc"):
            parse_vmc_targets([bad])


def test_vmc_targets_come_from_the_environment_and_toml(tmp_path: object) -> None:
    from pathlib import Path

    config = Path(str(tmp_path)) / "facecast.toml"
    config.write_text('vmc = ["10.0.0.2:39540", "10.0.0.3"]\n')
    settings = load_settings(config, environ={})
    [_, vmc] = outputs_from_settings(settings)
    assert vmc.describe()["targets"] == ["10.0.0.2:39540", "10.0.0.3:39539"]
    from_env = load_settings(environ={"FACECAST_VMC": "127.0.0.1:1,127.0.0.1:2", "FACECAST_LIVELINK": "off"})
    [vmc] = outputs_from_settings(from_env)
    assert isinstance(vmc, VmcOutput) and len(vmc.targets) == 2
    with pytest.raises(ConfigError, match="VMC target"):
        outputs_from_settings(replace(Settings(), vmc=("host:nope",)))


async def test_a_vmc_target_that_does_not_resolve_stops_the_start() -> None:
    output = VmcOutput([VmcTarget("no-such-host.invalid", 39539)])
    with pytest.raises(ConfigError, match="VMC target no-such-host.invalid:39539 does not resolve"):
        async with run_outputs([output]):
            pass


# ----------------------------------------------------------------------------------------- real receiver


@dataclass
class Received:
    """What python-osc's server dispatched, grouped into frames: each Apply closes one."""

    frames: list[list[tuple[str, list[object]]]] = field(default_factory=list)
    current: list[tuple[str, list[object]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, address: str, *args: object) -> None:
        with self.lock:
            self.current.append((address, list(args)))
            if address == "/VMC/Ext/Blend/Apply":
                self.frames.append(self.current)
                self.current = []

    def snapshot(self) -> list[list[tuple[str, list[object]]]]:
        with self.lock:
            return list(self.frames)


@contextmanager
def osc_receiver() -> Iterator[tuple[int, Received]]:
    """python-osc's own UDP server (one thread, so messages stay in datagram order) with a catch-all handler."""
    received = Received()
    dispatcher = Dispatcher()
    dispatcher.set_default_handler(received.handle)
    server = BlockingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _session(seed: int) -> SessionInfo:
    return SessionInfo(proto.Hello(), FaceTimeline(seed))


async def _wait_for(condition: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_python_osc_receives_every_frame_whole_idle_then_the_utterance() -> None:
    with osc_receiver() as (port, received):
        output = VmcOutput([VmcTarget("127.0.0.1", port)], linger=0)
        async with run_outputs([output]):
            assert received.snapshot() == []  # nothing streams before a session
            sink = output.attach(_session(3))
            assert sink.status()["driving"] is True
            await _wait_for(lambda: len(received.snapshot()) >= 10)  # the idle face streams from the attach
            sink.on_event(UtteranceStarted(0, 24000))
            sink.on_playback_started(0, time.monotonic())
            mouth = np.zeros((30, FACE_WIDTH), np.float32)
            mouth[:, INDEX["JawOpen"]] = 0.9
            sink.on_event(FaceOut(0, FaceFrames(0, mouth)))
            sink.on_event(UtteranceEnded(0, 12000, 30, "Hello."))
            await asyncio.sleep(0.8)
            sink.close()  # linger 0: the stream stops
            await asyncio.sleep(0.2)
            stopped_at = len(received.snapshot())
            await asyncio.sleep(0.2)
            assert len(received.snapshot()) == stopped_at
    frames = received.snapshot()
    assert len(frames) >= 40 and received.current == []
    for frame in frames:
        addresses = [address for address, _ in frame]
        assert addresses.count("/VMC/Ext/Blend/Apply") == 1 and addresses[-1] == "/VMC/Ext/Blend/Apply"
        names = [args[0] for address, args in frame if address == "/VMC/Ext/Blend/Val"]
        assert names == list(PERFECT_SYNC_NAMES)  # every value, every frame, before the Apply
        for address, args in frame:
            if address == "/VMC/Ext/Bone/Pos":
                assert math.fsum(float(q) ** 2 for q in args[4:]) == pytest.approx(1.0, abs=1e-5)  # type: ignore[arg-type]
    jaw = [dict((a[0], a[1]) for addr, a in f if addr == "/VMC/Ext/Blend/Val")["JawOpen"] for f in frames]
    assert max(jaw) > 0.6 > jaw[0]  # the utterance's open jaw came through, after the idle face
    times = [next(a[0] for addr, a in f if addr == "/VMC/Ext/T") for f in frames]
    assert all(b > a for a, b in zip(times, times[1:], strict=False))  # face time only moves forward


async def test_the_newest_session_drives_the_avatar_and_hands_back_when_it_ends() -> None:
    output = VmcOutput([VmcTarget("127.0.0.1", 9)], linger=0.05)
    async with run_outputs([output]):
        first = output.attach(_session(1))
        second = output.attach(_session(2))
        assert second.driving and not first.driving
        assert output.stream.channel is not None and output.stream.channel.composer is second.timeline
        # the quiet session's utterance does not reach the stream
        first.on_event(UtteranceStarted(0, 24000))
        first.on_playback_started(0, 0.0)
        assert not output.stream.channel.speaking
        second.close()
        assert first.driving and output.stream.channel.composer is first.timeline
        first.close()
        assert output.stream.channel is not None  # lingering on the idle face...
        await asyncio.sleep(0.15)
        assert output.stream.channel is None  # ...then stopped
        third = output.attach(_session(3))  # and a new session starts it again
        assert third.driving and output.stream.channel is not None
        third.close()


def test_run_flags_reach_the_settings() -> None:
    from facecast.cli import _settings, build_parser

    args = build_parser().parse_args(
        ["run", "--vmc", "127.0.0.1:39540", "--vmc", "192.168.1.5", "--vts", "ws://127.0.0.1:8001"]
    )
    settings = _settings(args)
    assert settings.vmc == ("127.0.0.1:39540", "192.168.1.5") and settings.vts == "ws://127.0.0.1:8001"
