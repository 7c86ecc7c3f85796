"""VTube Studio output against a local server implementing the plugin API's documented messages
(tests/servers/vts_server.py; not VTube Studio): the token flow, the stored token, a refused token, a denial,
a closed socket, and the injected values."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tests.servers.vts_server import VtsServer

from facecast.config import load_settings
from facecast.engine.outputs import outputs_from_settings, run_outputs
from facecast.engine.sinks import SessionInfo
from facecast.engine.timeline import FaceTimeline
from facecast.engine.vts import PARAMETERS, TokenStore, VtsEncoder, VtsOutput, parse_vts_url, vts_parameters
from facecast.errors import ConfigError
from facecast.events import FaceOut, UtteranceEnded, UtteranceStarted
from facecast.face.arkit import INDEX
from facecast.protocol import engine as proto
from facecast.types import FACE_WIDTH, FaceFrames

FAST = (0.05, 0.1, 0.2)


async def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def _session(seed: int = 1) -> SessionInfo:
    return SessionInfo(proto.Hello(), FaceTimeline(seed))


def _frame(**values: float) -> np.ndarray:
    frame = np.zeros(FACE_WIDTH, np.float32)
    for name, value in values.items():
        frame[INDEX[name]] = value
    return frame


# ------------------------------------------------------------------------------------------------ codec


def test_the_mapping_gives_every_parameter_in_its_range() -> None:
    neutral = {p["id"]: p["value"] for p in vts_parameters(_frame())}
    assert list(neutral) == [name for name, *_ in PARAMETERS]
    assert neutral["MouthOpen"] == 0 and neutral["EyeOpenLeft"] == 1 and neutral["MouthSmile"] == 0.5
    assert neutral["BrowLeftY"] == 0.5 and neutral["FaceAngleX"] == 0
    talking = {
        p["id"]: p["value"]
        for p in vts_parameters(
            _frame(JawOpen=0.6, MouthClose=0.1, MouthSmileLeft=0.8, MouthSmileRight=0.6, EyeBlinkRight=0.9,
                   BrowInnerUp=0.4, BrowDownRight=0.2, HeadYaw=0.05, HeadRoll=-0.02, LeftEyeYaw=0.5)
        )
    }  # fmt: skip
    assert talking["MouthOpen"] == pytest.approx(0.5)
    assert talking["MouthSmile"] == pytest.approx(0.85)
    assert talking["EyeOpenRight"] == pytest.approx(0.1, abs=1e-5)
    assert talking["BrowLeftY"] == pytest.approx(0.7) and talking["BrowRightY"] == pytest.approx(0.6)
    assert talking["FaceAngleX"] == pytest.approx(9.0) and talking["FaceAngleZ"] == pytest.approx(-3.6)
    assert talking["EyeLeftX"] == 1.0  # 90 degrees of gaze: clipped
    wild = np.full(FACE_WIDTH, 50.0, np.float32)
    wild[0] = np.nan
    for (name, low, high, _), item in zip(PARAMETERS, vts_parameters(wild), strict=True):
        assert item["id"] == name and low <= float(item["value"]) <= high


def test_the_encoder_makes_the_documented_request() -> None:
    message = json.loads(VtsEncoder().encode(7, 0.0, _frame(JawOpen=0.3)))
    assert message["apiName"] == "VTubeStudioPublicAPI" and message["apiVersion"] == "1.0"
    assert message["messageType"] == "InjectParameterDataRequest" and message["requestID"] == "facecast-inject-7"
    assert message["data"]["mode"] == "set" and message["data"]["faceFound"] is True
    assert {"id": "MouthOpen", "value": 0.3} in message["data"]["parameterValues"]


def test_urls() -> None:
    assert parse_vts_url("ws://localhost:8001") == "ws://localhost:8001"
    assert parse_vts_url("127.0.0.1") == "ws://127.0.0.1:8001"
    assert parse_vts_url("wss://[::1]:9000") == "wss://[::1]:9000"
    for bad in ("http://localhost:8001", "ws://:8001", "ws://host:99999"):
        with pytest.raises(ConfigError, match="--vts"):
            parse_vts_url(bad)


def test_vts_comes_from_the_settings(tmp_path: Path) -> None:
    settings = load_settings(
        environ={"FACECAST_VTS": "ws://127.0.0.1:8001", "FACECAST_VTS_TOKEN_FILE": str(tmp_path / "t.json")}
    )
    [_, output] = outputs_from_settings(settings)
    assert isinstance(output, VtsOutput) and output.client.tokens.path == tmp_path / "t.json"
    assert output.describe() == {
        "output": "vts",
        "url": "ws://127.0.0.1:8001",
        "state": "connecting",
        "injected": 0,
        "last_error": "",
    }


def test_the_token_store_is_private_and_survives_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "vts-tokens.json"
    store = TokenStore(path)
    assert store.load("ws://a:1") is None
    store.save("ws://a:1", "secret-a")
    store.save("ws://b:1", "secret-b")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert TokenStore(path).load("ws://a:1") == "secret-a"
    store.forget("ws://a:1")
    assert TokenStore(path).load("ws://a:1") is None and TokenStore(path).load("ws://b:1") == "secret-b"
    path.write_text("{not json")
    assert TokenStore(path).load("ws://b:1") is None


# --------------------------------------------------------------------------------------- against a server


def _play(output: VtsOutput, jaw: float, frames: int = 60) -> None:
    sink = output.attach(_session())
    sink.on_event(UtteranceStarted(0, 24000))
    sink.on_playback_started(0, time.monotonic())
    mouth = np.zeros((frames, FACE_WIDTH), np.float32)
    mouth[:, INDEX["JawOpen"]] = jaw
    sink.on_event(FaceOut(0, FaceFrames(0, mouth)))
    sink.on_event(UtteranceEnded(0, frames * 400, frames, "Hi."))


async def test_first_run_asks_for_the_token_stores_it_and_injects_in_range(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "facecast.engine.vts")
    token_file = tmp_path / "vts-tokens.json"
    async with VtsServer() as server:
        output = VtsOutput(server.url, token_file=token_file, backoff=FAST, rate=30)
        async with run_outputs([output]):
            _play(output, jaw=0.8)
            await _wait_for(lambda: len(server.injections) >= 30)
            assert output.describe()["state"] == "injecting"
            started = time.monotonic()
            count = len(server.injections)
            await asyncio.sleep(1.0)
            rate = (len(server.injections) - count) / (time.monotonic() - started)
    assert server.requests[:4] == [
        "APIStateRequest",
        "AuthenticationTokenRequest",
        "AuthenticationRequest",
        "InjectParameterDataRequest",
    ]
    assert server.errors == []
    token = json.loads(token_file.read_text())[server.url]
    assert token in server.tokens
    assert token not in caplog.text  # never logged
    assert "click 'Allow'" in caplog.text
    assert 1 <= rate <= 32  # bounded by the rate (30/s), and VTS gets at least one a second
    ranges = {name: (low, high) for name, low, high, _ in PARAMETERS}
    for injection in server.injections:
        assert injection.face_found and injection.mode == "set" and set(injection.values) == set(ranges)
        for name, value in injection.values.items():
            assert ranges[name][0] <= value <= ranges[name][1]
    assert max(i.values["MouthOpen"] for i in server.injections) > 0.6  # the utterance's open jaw


async def test_a_stored_token_is_reused_without_asking(tmp_path: Path) -> None:
    token_file = tmp_path / "vts-tokens.json"
    async with VtsServer() as server:
        server.tokens["kept-token"] = ("Facecast", "Facecast")
        TokenStore(token_file).save(server.url, "kept-token")
        output = VtsOutput(server.url, token_file=token_file, backoff=FAST)
        async with run_outputs([output]):
            output.attach(_session())
            await _wait_for(lambda: len(server.injections) >= 3)
    assert server.count("AuthenticationTokenRequest") == 0
    assert server.requests[:3] == ["APIStateRequest", "AuthenticationRequest", "InjectParameterDataRequest"]


async def test_a_refused_token_is_replaced_by_a_new_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    token_file = tmp_path / "vts-tokens.json"
    TokenStore(token_file).save("placeholder", "x")
    async with VtsServer() as server:
        TokenStore(token_file).save(server.url, "revoked-token")  # VTS no longer knows it
        output = VtsOutput(server.url, token_file=token_file, backoff=FAST)
        async with run_outputs([output]):
            output.attach(_session())
            await _wait_for(lambda: len(server.injections) >= 3)
    assert server.requests[:5] == [
        "APIStateRequest",
        "AuthenticationRequest",
        "AuthenticationTokenRequest",
        "AuthenticationRequest",
        "InjectParameterDataRequest",
    ]
    new = TokenStore(token_file).load(server.url)
    assert new is not None and new != "revoked-token" and new in server.tokens
    assert TokenStore(token_file).load("placeholder") == "x"  # other VTS instances' tokens are kept
    assert "refused Facecast's stored token" in caplog.text and "revoked-token" not in caplog.text


async def test_a_denied_request_is_asked_again_after_a_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with VtsServer(allow=False) as server:
        output = VtsOutput(server.url, token_file=tmp_path / "t.json", backoff=FAST)
        async with run_outputs([output]):
            output.attach(_session())
            await _wait_for(lambda: server.count("AuthenticationTokenRequest") >= 2)
            assert output.describe()["state"] in ("retrying", "connecting", "waiting_for_allow")
            assert "denied" in str(output.describe()["last_error"])
            server.allow = True  # the user clicks Allow this time
            await _wait_for(lambda: len(server.injections) >= 3)
    assert "denied Facecast's plugin access" in caplog.text and "retrying in" in caplog.text
    assert not (tmp_path / "t.json").exists() or TokenStore(tmp_path / "t.json").load(server.url) in server.tokens


async def test_a_closed_socket_is_retried_with_backoff_and_the_stream_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with VtsServer() as server:
        output = VtsOutput(server.url, token_file=tmp_path / "t.json", backoff=FAST)
        async with run_outputs([output]):
            sink = output.attach(_session())
            await _wait_for(lambda: len(server.injections) >= 3)
            await server.drop()  # VTube Studio quits
            await _wait_for(lambda: server.connections >= 2 and output.describe()["state"] == "injecting")
            before = len(server.injections)
            await _wait_for(lambda: len(server.injections) >= before + 3)
            assert sink.driving  # the session never noticed
            # a revoked plugin mid-session: injections answer error 8, the client authenticates again
            server.revoke()
            await _wait_for(lambda: server.count("AuthenticationTokenRequest") >= 2)
            await _wait_for(lambda: len(server.injections) >= before + 6)
    assert server.count("AuthenticationTokenRequest") == 2  # the stored token served the reconnection
    assert "the connection closed" in caplog.text and "retrying in 0.05 s" in caplog.text  # backoff reset
    assert {i.connection for i in server.injections} >= {1, 2}


async def test_nothing_listening_is_logged_and_retried_while_the_server_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with VtsServer() as server:
        url = server.url
    output = VtsOutput(url, token_file=tmp_path / "t.json", backoff=FAST)  # nothing listens there now
    async with run_outputs([output]):
        sink = output.attach(_session())
        await _wait_for(lambda: caplog.text.count("cannot connect") >= 4)
        assert output.describe()["state"] in ("retrying", "connecting")
        assert "Allow Plugin API access" in caplog.text
        delays = [line.rsplit("retrying in ", 1)[1] for line in caplog.text.splitlines() if "retrying in" in line]
        assert delays[:4] == ["0.05 s", "0.10 s", "0.20 s", "0.20 s"]  # exponential backoff, capped
        sink.close()
