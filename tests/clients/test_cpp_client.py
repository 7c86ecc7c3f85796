"""The C++ reference client (clients/cpp): built with CMake, its unit tests run by CTest, its codec checked
against the Python codec message for message, and ``facecast_client`` run against the real server.

Needs cmake and a C++17 compiler: without them these tests are skipped, unless FACECAST_REQUIRE_CPP=1 (CI)
makes that a failure. The build is cached under .cache/cpp-client/ (git-ignored), so a rerun only
recompiles what changed.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import struct
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import LIGHT
from tests.engine.test_actions import GIVE_ITEM

from facecast.actions import Action
from facecast.config import Settings
from facecast.face.phonetic import PhoneticAnimator
from facecast.llm.echo import EchoLLM
from facecast.protocol import engine as proto
from facecast.server import BackgroundServer
from facecast.services import Services, make_stt
from facecast.tts.espeak import EspeakTTS
from facecast.types import frame_sample, frames_for_samples

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "clients" / "cpp"
MISSING_TOOLS = "cmake and a C++17 compiler (apt install cmake g++) are needed to build clients/cpp"


@dataclass(frozen=True)
class Build:
    directory: Path

    def tool(self, name: str) -> Path:
        return self.directory / name


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


def _missing_tools() -> None:
    """Skip the calling test, or fail it under FACECAST_REQUIRE_CPP=1 (CI)."""
    if os.environ.get("FACECAST_REQUIRE_CPP") == "1":
        pytest.fail(f"FACECAST_REQUIRE_CPP=1 but {MISSING_TOOLS}")
    pytest.skip(MISSING_TOOLS)


@pytest.fixture(scope="session")
def cpp_build() -> Iterator[Build]:
    """Configure and build clients/cpp once per session (incrementally, in a cached directory)."""
    cmake = shutil.which("cmake")
    if cmake is None or _compiler() is None:
        _missing_tools()
    assert cmake is not None
    # One build directory per checkout path (a CMake cache remembers its source directory).
    key = hashlib.sha1(str(SOURCE).encode()).hexdigest()[:10]
    directory = REPO / ".cache" / "cpp-client" / key
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:  # another pytest run may be building the same tree
        fcntl.flock(lock, fcntl.LOCK_EX)
        configure = [cmake, "-S", str(SOURCE), "-B", str(directory), "-DCMAKE_BUILD_TYPE=Release"]
        if shutil.which("ninja") and not (directory / "Makefile").exists():
            configure += ["-G", "Ninja"]
        for command in (configure, [cmake, "--build", str(directory), "--parallel", "2"]):
            result = subprocess.run(command, capture_output=True, text=True, timeout=600)
            if result.returncode != 0:
                pytest.fail(f"{' '.join(command)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    yield Build(directory)


def test_unit_tests_pass_under_ctest(cpp_build: Build) -> None:
    """Codec, jitter buffer, acknowledgements, face timing, Client glue (clients/cpp/tests/test_core.cpp)."""
    ctest = shutil.which("ctest")
    assert ctest is not None, "ctest comes with cmake"
    command = [ctest, "--test-dir", str(cpp_build.directory), "--output-on-failure"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "100% tests passed" in result.stdout


# -- the C++ codec against the Python codec ----------------------------------------------------------------


class Vectors:
    """facecast_vectors as a long-running process: one JSON request line in, one JSON answer line out."""

    def __init__(self, path: Path) -> None:
        self._proc = subprocess.Popen(
            [str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8", bufsize=1
        )

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(request, ensure_ascii=False) + "\n")
        self._proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self._proc.stdout.readline())
        return answer

    def close(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait(timeout=10)


@pytest.fixture(scope="module")
def vectors(cpp_build: Build) -> Iterator[Vectors]:
    process = Vectors(cpp_build.tool("facecast_vectors"))
    yield process
    process.close()


CODEC = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Text as the protocol carries it: any Unicode but lone surrogates (not encodable as UTF-8).
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
NAME = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)  # subject, character: no controls
U32 = st.integers(0, 2**32 - 1)
COUNT = st.integers(0, 2**63 - 1)
RATES = st.sampled_from(proto.RATES)
FORMATS = st.builds(proto.AudioFormat, RATES, st.integers(1, 2))
# Any JSON value (an action's arguments, its result): every float repr Python writes, ints past 64 bits.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
# Declarations the server accepts (facecast.actions.actions_from_json), descriptions as it keeps them.
PROPERTY = st.fixed_dictionaries(
    {"type": st.sampled_from(["string", "integer", "number", "boolean"])},
    optional={"description": TEXT, "enum": st.lists(TEXT, min_size=1, max_size=3, unique=True)},
)
SCHEMA = st.builds(
    lambda properties, extra: {"type": "object", "properties": properties, **extra},
    st.dictionaries(TEXT, PROPERTY, max_size=3),
    st.fixed_dictionaries({}, optional={"additionalProperties": st.booleans()}),
)
ACTIONS = st.lists(
    st.builds(
        Action,
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True),
        TEXT.map(str.strip),
        st.none() | SCHEMA,
    ),
    max_size=3,
    unique_by=lambda action: action.name,
).map(tuple)


def _same(a: Any, b: Any) -> bool:
    """Equal JSON data, numbers within the 6 decimals the C++ writer keeps (booleans are not numbers)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1.5e-6)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@CODEC
@given(
    hello=st.builds(
        proto.Hello,
        version=st.just(1),
        audio=FORMATS,
        mic=FORMATS,
        face=st.booleans(),
        subject=NAME,
        workflow=st.sampled_from(proto.WORKFLOWS),
        acks=st.booleans(),
        turns=st.sampled_from(["server", "client"]),
        character=NAME,
        actions=ACTIONS,
    ),
    text=TEXT,
    utterance=U32,
    at=st.none() | st.floats(0, 1e6, allow_nan=False),
    position=COUNT,
    interrupted=st.booleans(),
    ping=st.none() | st.integers(0, 2**53),
    facts=st.dictionaries(TEXT, st.none() | TEXT, max_size=4),
    replace_facts=st.booleans(),
    action_id=TEXT,
    ok=st.booleans(),
    result=JSON_VALUES,
)
def test_client_messages_are_the_python_codecs_bytes(
    vectors: Vectors,
    hello: proto.Hello,
    text: str,
    utterance: int,
    at: float | None,
    position: int,
    interrupted: bool,
    ping: int | None,
    facts: dict[str, str | None],
    replace_facts: bool,
    action_id: str,
    ok: bool,
    result: Any,
) -> None:
    def cpp(op: str, **fields: Any) -> str:
        answer = vectors.ask({"op": op, **fields})
        assert "text" in answer, answer
        return str(answer["text"])

    encoded_hello = cpp(
        "hello",
        audio=[hello.audio.rate, hello.audio.channels],
        mic=[hello.mic.rate, hello.mic.channels],
        face=hello.face,
        subject=hello.subject,
        workflow=hello.workflow,
        acks=hello.acks,
        turns=hello.turns,
        character=hello.character,
        actions=[
            {"name": a.name, "description": a.description}
            | ({} if a.parameters is None else {"parameters": a.parameters})
            for a in hello.actions
        ],
    )
    assert encoded_hello == proto.encode_message(hello)
    assert cpp("text", text=text) == proto.encode_message(proto.UserText(text))
    started = cpp("playback_started", utterance=utterance, at=at)
    assert _same(json.loads(started), json.loads(proto.encode_message(proto.PlaybackStarted(utterance, at))))
    assert cpp("playback_finished", utterance=utterance, position=position, interrupted=interrupted) == (
        proto.encode_message(proto.PlaybackFinished(utterance, position, interrupted))
    )
    assert cpp("ping", id=ping) == proto.encode_message(proto.Ping(ping))
    context = proto.GameContext(facts, replace_facts)
    assert cpp("context", facts=facts, replace=replace_facts) == proto.encode_message(context)
    bare: list[tuple[str, proto.ClientMessage]] = [
        ("bye", proto.Bye()),
        ("interrupt", proto.Interrupt()),
        ("end_of_speech", proto.EndOfSpeech()),
    ]
    for kind, message in bare:
        assert cpp(kind) == proto.encode_message(message)
    # action_result: the result (any JSON, floats too) passes through the C++ client byte for byte
    answer = cpp("action_result", id=action_id, ok=ok, result=result)
    assert answer == proto.encode_message(proto.ActionResult(action_id, ok, result))
    # and the server's decoder accepts what the C++ client sends, actions and all
    decoded = proto.decode_client_text(encoded_hello)
    assert isinstance(decoded, proto.Hello) and decoded.actions == hello.actions
    result_bytes = len(json.dumps(result, ensure_ascii=False).encode())
    if action_id and len(action_id) <= 64 and result_bytes <= proto.MAX_ACTION_RESULT:
        assert proto.decode_client_text(answer) == proto.ActionResult(action_id, ok, result)


SERVER_MESSAGES = st.one_of(
    st.builds(
        proto.Welcome,
        FORMATS,
        st.booleans(),
        st.booleans(),
        st.floats(0.1, 30, allow_nan=False),
        st.sampled_from(proto.WORKFLOWS),
        st.sampled_from(["server", "client"]),
        st.none() | st.builds(proto.LiveLinkInfo, TEXT, TEXT, st.none() | st.floats(0, 1e6)),
    ),
    st.builds(proto.TranscriptUpdate, TEXT, st.booleans(), st.booleans()),
    st.builds(proto.UtteranceStart, U32, RATES, st.integers(1, 2)),
    st.builds(proto.ReplyText, U32, TEXT, COUNT),
    st.builds(proto.EmotionChange, U32, TEXT),
    st.builds(proto.UtteranceEnd, U32, COUNT, COUNT, TEXT),
    st.builds(proto.ClearBuffer, U32, st.none() | st.sampled_from(["barge_in", "interrupt", "new_turn"])),
    st.builds(proto.ActionMessage, U32, TEXT, COUNT, TEXT, st.dictionaries(TEXT, JSON_VALUES, max_size=4)),
    st.builds(
        proto.Timing, U32, st.dictionaries(TEXT, st.floats(0, 1e5, allow_nan=False), max_size=5), st.none() | COUNT
    ),
    st.builds(proto.ErrorMessage, TEXT, TEXT),
    st.builds(proto.Pong, st.none() | st.integers(0, 2**53) | TEXT),
    st.builds(
        proto.Notice,
        st.just("failover"),
        st.fixed_dictionaries({"role": st.sampled_from(["stt", "llm", "tts", "face"]), "reason": TEXT}),
    ),
)


def _expected(message: Any) -> dict[str, Any]:
    """What the C++ decoder must report for a Python server message (facecast_vectors' field names)."""
    if isinstance(message, proto.Welcome):
        return {
            "type": "welcome",
            "version": message.version,
            "audio": {"rate": message.audio.rate, "channels": message.audio.channels},
            "face_enabled": message.face,
            "acks": message.acks,
            "ack_timeout": message.ack_timeout,
            "workflow": message.workflow,
            "turns": message.turns,
            "livelink_subject": message.livelink.subject if message.livelink else "",
        }
    if isinstance(message, proto.TranscriptUpdate):
        return {"type": "transcript", "text": message.text, "final": message.final, "typed": message.typed}
    if isinstance(message, proto.ClearBuffer):
        return {"type": "clear_buffer", "utterance": message.utterance, "reason": message.reason or ""}
    if isinstance(message, proto.Notice):
        return {"type": "notice", "notice_type": message.type, "fields": message.fields}
    if isinstance(message, proto.ActionMessage):
        # the arguments the game gets (DueAction::arguments.dump()) are the server's JSON byte for byte
        arguments = json.dumps(message.arguments, separators=(",", ":"), ensure_ascii=False)
        return {
            "type": "action",
            "utterance": message.utterance,
            "id": message.id,
            "at": message.at,
            "name": message.name,
            "arguments": message.arguments,
            "arguments_json": arguments,
        }
    names = {
        proto.UtteranceStart: "utterance_start",
        proto.ReplyText: "reply_text",
        proto.EmotionChange: "emotion",
        proto.UtteranceEnd: "utterance_end",
        proto.Timing: "timing",
        proto.ErrorMessage: "error",
        proto.Pong: "pong",
    }
    fields = {name: getattr(message, name) for name in message.__dataclass_fields__}
    return {"type": names[type(message)], **fields}


@CODEC
@given(message=SERVER_MESSAGES)
def test_server_messages_decode_as_in_python(vectors: Vectors, message: Any) -> None:
    answer = vectors.ask({"op": "decode_text", "text": proto.encode_message(message)})
    assert answer["ok"], answer
    assert _same(answer["message"], _expected(message)), (answer["message"], _expected(message))


MALFORMED = [
    "not json",
    "[1]",
    '{"x": 1}',
    '{"type": 3}',
    '{"type": "utterance_start", "utterance": -1, "rate": 24000}',
    '{"type": "utterance_start", "utterance": 4294967296, "rate": 24000}',
    '{"type": "utterance_end", "utterance": 1, "samples": 1.5, "frames": 1}',
    '{"type": "clear_buffer"}',
    '{"type": "timing", "utterance": 1, "stages": {"a": "x"}}',
    '{"type": "timing", "utterance": 1, "stages": {}, "speech_end_sample": -1}',
    '{"type": "transcript", "text": "hi", "final": "yes"}',
    '{"type": "error"}',
    '{"type": "action", "utterance": 1, "id": "1.1", "at": 0, "name": "give_item"}',
    '{"type": "action", "utterance": 1, "id": "1.1", "at": 0, "name": "give_item", "arguments": []}',
    '{"type": "action", "utterance": 1, "id": "1.1", "at": -1, "name": "give_item", "arguments": {}}',
    '{"type": "action", "utterance": 1, "id": 7, "at": 0, "name": "give_item", "arguments": {}}',
    '{"type": "welcome", "audio": {"rate": 7}, "face": {"enabled": true}, "acks": true, "ack_timeout": 2,'
    ' "workflow": "c", "turns": "s", "version": 1}',
    "[" * 70 + "]" * 70,
]


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_server_messages_are_refused_by_both(vectors: Vectors, text: str) -> None:
    with pytest.raises(proto.ProtocolError):
        proto.decode_server(text)
    answer = vectors.ask({"op": "decode_text", "text": text})
    assert not answer["ok"] and answer["error"]


@CODEC
@given(
    utterance=U32,
    offset=COUNT,
    samples=st.lists(st.integers(-32768, 32767), max_size=64),
    start=U32,
    face=st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=3 * 68).map(lambda v: v[: len(v) // 68 * 68]),
)
def test_binary_frames_decode_as_in_python(
    vectors: Vectors, utterance: int, offset: int, samples: list[int], start: int, face: list[int]
) -> None:
    pcm = struct.pack(f"<{len(samples)}h", *samples)
    audio = vectors.ask({"op": "decode_binary", "hex": proto.encode_audio(utterance, offset, pcm).hex()})
    assert audio["ok"] and audio["message"] == {"kind": 2, "utterance": utterance, "offset": offset, "samples": samples}
    values = np.asarray(face, dtype=np.uint32).view(np.float32).reshape(-1, 68)  # every bit pattern, NaNs too
    frames = vectors.ask({"op": "decode_binary", "hex": proto.encode_face(utterance, start, values).hex()})
    assert frames["ok"] and frames["message"] == {
        "kind": 3,
        "utterance": utterance,
        "start": start,
        "count": len(values),
        "bits": face,
    }
    # what the C++ client sends, the Python codec reads
    mic = vectors.ask({"op": "mic", "offset": offset, "samples": samples})
    decoded = proto.decode_binary(bytes.fromhex(mic["hex"]))
    assert isinstance(decoded, proto.MicAudio) and decoded.offset == offset and decoded.pcm == pcm


@CODEC
@given(data=st.binary(max_size=80), kind=st.sampled_from([None, 1, 2, 3, 4]), version=st.sampled_from([None, 1, 2]))
def test_arbitrary_bytes_are_accepted_or_refused_by_both(
    vectors: Vectors, data: bytes, kind: int | None, version: int | None
) -> None:
    raw = bytearray(data)
    if kind is not None and raw:
        raw[0] = kind
    if version is not None and len(raw) > 1:
        raw[1] = version
    try:
        proto.decode_binary(bytes(raw))
        python_ok = True
    except proto.ProtocolError:
        python_ok = False
    assert vectors.ask({"op": "decode_binary", "hex": bytes(raw).hex()})["ok"] == python_ok


def test_face_clock_matches_python(vectors: Vectors) -> None:
    for rate in proto.RATES:
        for index in (*range(0, 130), 10_000, 123_457):
            answer = vectors.ask({"op": "frame_sample", "index": index, "rate": rate})
            assert answer["sample"] == frame_sample(index, rate)
        for samples in (0, 1, rate // 60, rate // 60 + 1, rate, 12_345, 10 * rate + 7):
            answer = vectors.ask({"op": "frames_for_samples", "samples": samples, "rate": rate})
            assert answer["frames"] == frames_for_samples(samples, rate)


# -- facecast_client against the real server --------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[BackgroundServer]:
    """The real server with the light providers (pocketsphinx, echo, espeak-ng), no Live Link output."""
    services = Services(make_stt("pocketsphinx"), EchoLLM(), EspeakTTS(), PhoneticAnimator())
    async with BackgroundServer(replace(Settings(**LIGHT), livelink=("off",)), services) as running:
        yield running


async def run_client(build: Build, *args: str) -> tuple[int, dict[str, Any] | None, str]:
    proc = await asyncio.create_subprocess_exec(
        str(build.tool("facecast_client")), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    summary = json.loads(out) if out.strip() else None
    return proc.returncode, summary, err.decode()


@pytest.mark.parametrize("rate", [24000, 44100])
async def test_cpp_client_plays_a_typed_turn_from_the_real_server(
    cpp_build: Build, server: BackgroundServer, rate: int
) -> None:
    code, summary, err = await run_client(
        cpp_build, "--url", server.ws_url, "--text", "Maybe we should buy a map.", "--rate", str(rate), "--verbose"
    )
    assert code == 0 and summary is not None, err
    assert summary["ok"] and summary["errors"] == [] and not summary["connection_lost"]
    assert summary["welcome"]["rate"] == rate and summary["welcome"]["acks"]
    [turn] = summary["turns"]
    assert turn["transcript"] == "Maybe we should buy a map."
    [utt] = turn["utterances"]  # one utterance
    assert utt["text"] == "You said: Maybe we should buy a map."
    # playback_started exactly once, and playback_finished once with everything heard
    assert utt["acks"] == 1 and summary["acks"] == 1
    assert utt["finishes"] == 1 and utt["heard"] == utt["samples"]
    # all the audio the server said it sent was played, without gaps or repeats
    assert utt["samples"] == utt["received"] == utt["server_samples"] > rate
    assert utt["discontinuities"] == 0 and utt["after_clear"] == 0 and summary["stray_frames"] == 0
    # face frames: as many as the server's utterance_end says, ceil(samples * 60 / rate), none before the ack,
    # and every one shown on the client's audio clock
    assert utt["face_frames"] == utt["server_frames"] == math.ceil(utt["server_samples"] * 60 / rate)
    assert utt["face_before_ack"] == 0 and utt["face_shown"] == utt["face_frames"]
    assert 0 < summary["first_audio_latency_ms"] < 5000
    assert turn["playback_latency_ms"] >= summary["first_audio_latency_ms"]
    assert "engine_ack" in turn["timing"]


async def test_cpp_client_needs_the_token_when_the_server_has_one(cpp_build: Build) -> None:
    services = Services(make_stt("pocketsphinx"), EchoLLM(), EspeakTTS(), PhoneticAnimator())
    settings_ = replace(Settings(**LIGHT), livelink=("off",), token="s3cret-token-for-the-cpp-client")
    async with BackgroundServer(settings_, services) as running:
        code, summary, err = await run_client(cpp_build, "--url", running.ws_url, "--text", "hi")
        assert code == 2 and summary is None
        assert "4401" in err  # accepted, then closed: the token is missing
        code, summary, err = await run_client(
            cpp_build, "--url", running.ws_url, "--token", "s3cret-token-for-the-cpp-client", "--text", "Hello there."
        )
        assert code == 0 and summary is not None and summary["ok"], err
        assert summary["utterances"] == 1 and summary["acks"] == 1


async def test_cpp_client_takes_the_characters_action_on_the_playback_clock(
    cpp_build: Build, server: BackgroundServer, tmp_path: Path
) -> None:
    """The echo LLM repeats the typed text, action call included; the server's ActionExtractor takes the call
    out of the reply and sends it as an ``action`` between the two sentences. facecast_client declares the
    action (--action-json), takes it when its playback reaches the action's sample, answers action_result,
    which the server accepts."""
    declarations = tmp_path / "actions.json"
    declarations.write_text(json.dumps([GIVE_ITEM]))
    said = 'Here you go. {"name": "give_item", "arguments": {"item": "key"}} Mind the door.'
    code, summary, err = await run_client(
        cpp_build,
        "--url",
        server.ws_url,
        "--action-json",
        str(declarations),
        "--action-result",
        "the player has the key",
        "--text",
        said,
        "--text",
        "Thanks",
        "--verbose",
    )
    assert summary is not None and not summary["connection_lost"], err
    first, second = summary["turns"]
    assert first["errors"] == [], err  # the call fitted the declaration: no bad_action, no bad_message
    [utt] = first["utterances"]
    assert utt["text"] == "You said: Here you go. Mind the door."  # the call is never spoken
    assert (utt["actions"], utt["actions_taken"], utt["actions_dropped"]) == (1, 1, 0)
    [action] = first["actions"]
    assert summary["actions"] == [action] and summary["stray_actions"] == 0
    assert (action["name"], action["arguments"]) == ("give_item", {"item": "key"})
    assert action["id"] and action["utterance"] == utt["utterance"]
    # at the sample where the second sentence starts: after the words before it, inside the reply
    [before, after] = first["reply_texts"]
    assert (before["text"], after["text"]) == ("You said: Here you go.", "Mind the door.")
    assert action["at"] == after["at"]
    assert 0 < action["at"] < utt["server_samples"]
    # taken when playback reached that sample (one 10 ms device chunk later, plus the scheduling slack of a
    # busy test machine; test_core.cpp checks the exact moment), after playback_started went out, and not
    # because it came late
    rate = summary["welcome"]["rate"]
    assert action["acked"] and not action["late"]
    assert action["at"] <= action["position"] < action["at"] + rate // 4, action
    assert 0 <= action["delay_ms"] < 250
    # the server took the action_result (one it did not send, or already had, is answered bad_message), and
    # the next turn is the player's words only (the echo LLM never repeats the action results told with them)
    [thanks] = second["utterances"]
    assert thanks["text"] == "You said: Thanks."
    assert second["actions"] == [] and second["errors"] == [] and code == 0, err


async def test_cpp_client_refuses_a_bad_action_file(cpp_build: Build, tmp_path: Path) -> None:
    bad = tmp_path / "actions.json"
    bad.write_text('[{"name": "give_item", "code": "rm -rf"}]')
    code, summary, err = await run_client(cpp_build, "--action-json", str(bad), "--text", "hi")
    assert code == 2 and summary is None and "unknown key 'code'" in err
    code, summary, err = await run_client(cpp_build, "--action-json", str(tmp_path / "missing.json"), "--text", "hi")
    assert code == 2 and summary is None and "cannot read" in err


# -- docs/unreal.md --------------------------------------------------------------------------------------


def _guide_block(doc: str, language: str, first_line: str) -> str:
    match = re.search(rf"```{language}\n({re.escape(first_line)}.*?)```", doc, re.S)
    assert match is not None, f"docs/unreal.md has no {language} block starting with {first_line!r}"
    return match.group(1)


def test_the_unreal_guide_code_compiles_against_the_reference_client(tmp_path: Path) -> None:
    """The guide's component (FacecastComponent.h/.cpp) compiles as C++20 against the real client headers and
    declarations of the Unreal API it uses (tests/clients/unreal_stubs): it calls the client as it is."""
    compiler = _compiler()
    if compiler is None:
        _missing_tools()
    assert compiler is not None
    doc = (REPO / "docs" / "unreal.md").read_text()
    header = _guide_block(doc, "cpp", "// FacecastComponent.h")
    source = _guide_block(doc, "cpp", "// FacecastComponent.cpp")
    (tmp_path / "FacecastComponent.h").write_text(header)
    (tmp_path / "FacecastComponent.cpp").write_text(source)
    stubs = Path(__file__).parent / "unreal_stubs"
    command = [compiler, "-std=c++20", "-fsyntax-only", "-Wall", "-Wextra", "-Wshadow", "-Wno-unused-parameter"]
    command += ["-Werror", "-I", str(stubs), "-I", str(tmp_path), "-I", str(SOURCE / "src")]
    result = subprocess.run([*command, str(tmp_path / "FacecastComponent.cpp")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # every handler is bound before Connect(): the socket raises only the events bound by then
    begin_play = source[source.index("::BeginPlay()") : source.index("::HandleConnected()")]
    assert begin_play.index("OnRawMessage().AddUObject") < begin_play.index("Socket->Connect()")
    assert begin_play.index("OnMessage().AddUObject") < begin_play.index("Socket->Connect()")
    build = _guide_block(doc, "csharp", "using UnrealBuildTool;")
    for module in ("WebSockets", "AudioCaptureCore", "AudioCapture"):
        assert f'"{module}"' in build
    plugins = json.loads("{" + _guide_block(doc, "json", '"Plugins"') + "}")["Plugins"]
    assert {p["Name"] for p in plugins} == {"AudioCapture", "LiveLink", "AppleARKitFaceSupport"}
