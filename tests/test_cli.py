"""The `facecast` command as a user runs it: a real subprocess, real files, real exit codes."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from facecast.errors import InputError
from facecast.face.arkit import INDEX
from facecast.face.takes import NEUROSYNC_COLUMNS
from facecast.llm.history import SPEAKING_RULES
from facecast.offline import say
from facecast.takefolder import read_session
from facecast.types import frames_for_samples


def facecast(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "facecast.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), **(env or {})},
    )


def test_say_writes_a_session_folder(tmp_path: Path) -> None:
    out = tmp_path / "hello"
    result = facecast("say", "Maybe my mom made a map.", "--out", str(out))
    assert result.returncode == 0, result.stderr
    info = sf.info(str(out / "audio.wav"))
    assert (info.channels, info.subtype) == (1, "PCM_16")
    header = (out / "shapes.csv").read_text().splitlines()[0]
    assert header == ",".join(NEUROSYNC_COLUMNS)
    session = read_session(out)
    assert session.warning is None
    assert len(session.values) == frames_for_samples(len(session.audio), session.rate)
    assert session.values[:, INDEX["MouthClose"]].max() > 0.5
    # a take for playback: the live animation layer (head motion, gaze, blinks) is on by default (--no-idle: off)
    assert np.ptp(session.values[:, INDEX["HeadYaw"]]) > 0 and "idle layer seed" in result.stdout


def test_say_with_a_voice_variant_changes_the_voice(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert facecast("say", "Good morning.", "--tts", "espeak", "--out", str(a)).returncode == 0
    assert facecast("say", "Good morning.", "--tts", "espeak", "--voice", "en-gb+f3", "--out", str(b)).returncode == 0
    pcm_a, _ = sf.read(str(a / "audio.wav"))
    pcm_b, _ = sf.read(str(b / "audio.wav"))
    assert len(pcm_a) != len(pcm_b) or not np.allclose(pcm_a, pcm_b)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["say", "   ", "--out", "{tmp}/x"], "empty"),
        (["say", "hello", "--voice", "xx-nonexistent", "--out", "{tmp}/x"], "voice"),
        (["transcribe", "{tmp}/missing.wav"], "not found"),
        (["transcribe", "{tmp}/garbage.wav"], "cannot decode"),
        (["chat", "--text", "hi", "--llm", "http://127.0.0.1:9/v1", "--out", "{tmp}/x"], "127.0.0.1:9"),
        (["chat", "--text", "hi", "--llm", "nonsense-model", "--out", "{tmp}/x"], "--llm"),
        (["run", "--host", "0.0.0.0"], "token"),
    ],
)
def test_bad_input_gives_a_clear_error_and_nonzero_exit(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "garbage.wav").write_bytes(b"RIFF....WAVEthis is not audio")
    result = facecast(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()


async def test_huge_text_is_refused_with_the_limit_in_the_message() -> None:
    from facecast.face.phonetic import PhoneticAnimator
    from facecast.tts.espeak import EspeakTTS

    with pytest.raises(InputError, match="characters"):
        await say("word " * 2_000_000, EspeakTTS(), PhoneticAnimator())  # 10 MB of text


def test_chat_with_text_writes_the_echo_reply(tmp_path: Path) -> None:
    result = facecast("chat", "--text", "Where is the harbour?", "--llm", "echo", "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    assert "character: You said: Where is the harbour?" in result.stdout
    assert "--llm" in result.stderr  # says how to configure a real model
    session = read_session(tmp_path / "r")
    assert session.warning is None and len(session.audio) / session.rate > 1.0


def test_chat_with_a_spoken_question_answers_with_a_session_folder(tmp_path: Path) -> None:
    question = tmp_path / "question"
    assert (
        facecast(
            "say", "Stop talking please.", "--tts", "espeak", "--voice", "en-gb", "--out", str(question)
        ).returncode
        == 0
    )
    stereo = tmp_path / "question-44k-stereo.wav"  # any rate, stereo: the CLI mixes down and resamples
    pcm, rate = sf.read(str(question / "audio.wav"))
    from facecast.audio import resample

    mono = resample(pcm.astype(np.float32), rate, 44100)
    sf.write(str(stereo), np.stack([mono, mono], axis=1), 44100)
    result = facecast("chat", "--audio", str(stereo), "--llm", "echo", "--out", str(tmp_path / "reply"))
    assert result.returncode == 0, result.stderr
    heard = result.stdout.split("you: ", 1)[1].split("\n", 1)[0]
    assert heard.lower().startswith("stop talking")  # Whisper, the default, on another voice
    assert f"character: You said: {heard.rstrip('.')}." in result.stdout
    reply = read_session(tmp_path / "reply")
    assert reply.warning is None
    assert len(reply.values) == frames_for_samples(len(reply.audio), reply.rate)
    assert len(reply.audio) / reply.rate > 1.0 and np.abs(reply.audio).max() > 0.1


def test_chat_on_the_embedded_defaults_answers_in_character_with_the_neural_voice(tmp_path: Path) -> None:
    """The defaults as a user gets them: the local chat model answers, the neural voice speaks, the face moves."""
    result = facecast("chat", "--text", "Hello! What is your name?", "--out", str(tmp_path / "r"), timeout=300)
    assert result.returncode == 0, result.stderr
    reply = result.stdout.split("character: ", 1)[1].split("\n", 1)[0]
    assert reply and "You said" not in reply and "*" not in reply and "#" not in reply
    session = read_session(tmp_path / "r")
    assert session.rate == 24000  # hibari's rate
    assert len(session.values) == frames_for_samples(len(session.audio), session.rate)
    assert session.values[:, INDEX["JawOpen"]].max() > 0.2


class _ChatServer:
    """A real OpenAI-compatible HTTP server in a thread: records each chat request and streams ``reply``
    (or answers ``status`` with an error)."""

    def __init__(self, reply: str = "Hello there.", status: int = 200) -> None:
        import http.server
        import json
        import threading

        requests: list[dict[str, Any]] = []
        self.requests = requests

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, body: bytes, kind: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # /v1/models
                self._send(
                    200,
                    json.dumps(
                        {"object": "list", "data": [{"id": "m", "object": "model", "created": 0, "owned_by": "x"}]}
                    ).encode(),
                    "application/json",
                )

            def do_POST(self) -> None:  # /v1/chat/completions, streamed
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                requests.append(json.loads(body))
                if status != 200:
                    self._send(status, b'{"error": {"message": "the model crashed"}}', "application/json")
                    return
                chunks = [
                    {
                        "id": "c",
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": "m",
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    }
                    for delta, finish in (({"content": reply}, None), ({}, "stop"))
                ]
                data = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + b"data: [DONE]\n\n"
                self._send(200, data, "text/event-stream")

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> _ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def system_prompts(self) -> list[str]:
        return [m["content"] for r in self.requests for m in r["messages"] if m["role"] == "system"]


@pytest.mark.parametrize("where", ["flag", "environment", "toml"])
def test_chat_sends_the_configured_persona(tmp_path: Path, where: str) -> None:
    persona = "You are Captain Mora, a grumpy harbour master."
    config = tmp_path / "facecast.toml"
    config.write_text(f'persona = "{persona}"\n')
    extra = {"flag": ["--persona", persona], "environment": [], "toml": ["--config", str(config)]}[where]
    env = {"FACECAST_PERSONA": persona} if where == "environment" else {}
    with _ChatServer("Aye.") as llm:
        result = facecast(
            "chat",
            "--text",
            "Who are you?",
            "--llm",
            llm.url,
            "--tts",
            "espeak",
            "--out",
            str(tmp_path / "r"),
            *extra,
            env=env,
        )
    assert result.returncode == 0, result.stderr
    assert "character: Aye." in result.stdout
    assert llm.system_prompts() == [f"{persona}\n\n{SPEAKING_RULES}"]  # the speaking rules follow any persona


def test_chat_and_say_as_a_character_of_the_config(tmp_path: Path) -> None:
    with _ChatServer("Aye.") as llm:
        config = tmp_path / "facecast.toml"
        config.write_text(
            "[characters.mora]\n"
            'persona = "You are Mora, the innkeeper."\n'
            f'llm = "{llm.url}"\n'
            'tts = "espeak"\n'
            'voice = "en-gb"\n'
            'speaking_rules = "off"\n'
        )
        result = facecast(
            "chat", "--config", str(config), "--character", "mora", "--text", "Hi", "--out", str(tmp_path / "r")
        )
        assert result.returncode == 0, result.stderr
        assert "character: Aye." in result.stdout
        assert llm.system_prompts() == ["You are Mora, the innkeeper."]  # her persona, as written (rules off)
    result = facecast(
        "say", "--config", str(config), "--character", "mora", "Good evening.", "--out", str(tmp_path / "s")
    )
    assert result.returncode == 0, result.stderr
    assert sf.info(str(tmp_path / "s" / "audio.wav")).samplerate == 22050  # her voice: espeak, not hibari (24 kHz)
    result = facecast("say", "--config", str(config), "--character", "bram", "Hi", "--out", str(tmp_path / "t"))
    assert result.returncode != 0 and "unknown character 'bram'" in result.stderr and "mora" in result.stderr


def test_samples_make_the_readme_examples_runnable(tmp_path: Path) -> None:
    from facecast.face.takes import read_take

    samples, out = tmp_path / "samples", tmp_path / "out"
    result = facecast("samples", str(samples))
    assert result.returncode == 0, result.stderr
    take = read_take(samples / "take.csv")
    assert take.format == "livelink_app" and take.fps == 60
    assert take.values[:, INDEX["JawOpen"]].max() > 0.2
    speech = sf.info(str(samples / "speech.wav"))
    assert abs(take.duration - speech.duration) < 0.05  # the take is the face of speech.wav's words

    heard = facecast("transcribe", str(samples / "question.wav"))
    assert heard.returncode == 0, heard.stderr
    assert heard.stdout.strip().lower() == "what is your name, please?"  # Whisper, the default
    steps = [
        ["chat", "--audio", str(samples / "question.wav"), "--llm", "echo", "--tts", "espeak", "--out", str(out / "r")],
        ["animate", str(samples / "speech.wav"), "--out", str(out / "anim")],
        ["convert", str(samples / "take.csv"), str(out / "shapes.csv"), "--to", "neurosync"],
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        steps.append(["play", str(samples / "take.csv"), "--livelink", f"127.0.0.1:{receiver.getsockname()[1]}"])
        for args in steps:
            result = facecast(*args)
            assert result.returncode == 0, (args, result.stderr)
        assert receiver.recv(4096)  # the take's frames reached the Live Link target
    assert read_take(out / "shapes.csv").format == "neurosync"
    assert len(read_session(out / "anim").values) > 0


@pytest.mark.parametrize(("tts", "listed"), [("espeak", ["en-gb", "en-us", "de"]), ("hibari", ["heart"])])
def test_voices_lists_the_voices_of_the_tts(tts: str, listed: list[str]) -> None:
    result = facecast("voices", "--tts", tts)
    assert result.returncode == 0, result.stderr
    names = result.stdout.split("variants", 1)[0].split()
    assert set(listed) <= set(names)
    if tts == "espeak":
        assert {"f3", "m1", "klatt"} <= set(result.stdout.split("variants", 1)[1].split())
    # every voice listed is accepted by --voice
    spoken = facecast("voices", "--tts", tts, "--voice", listed[0])
    assert spoken.returncode == 0, spoken.stderr


def test_voices_of_the_configured_tts_and_of_a_service(tmp_path: Path) -> None:
    config = tmp_path / "facecast.toml"
    config.write_text('tts = "espeak"\n')
    assert "en-gb" in facecast("voices", "--config", str(config)).stdout.split()
    result = facecast("voices", "--tts", "ws://127.0.0.1:9")
    assert result.returncode == 1 and "does not list its voices" in result.stderr


def test_an_unknown_voice_names_the_command_that_lists_them(tmp_path: Path) -> None:
    result = facecast("say", "hello", "--tts", "espeak", "--voice", "xx-nonexistent", "--out", str(tmp_path / "x"))
    assert result.returncode == 1 and "facecast voices --tts espeak" in result.stderr


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


LIGHT_FLAGS = ("--stt", "pocketsphinx", "--llm", "echo", "--tts", "espeak")


async def test_run_takes_the_live_link_and_ack_settings_as_flags() -> None:
    import asyncio
    import urllib.request

    from facecast.engine.sim import EngineSim, SimConfig

    port, udp = _free_port(), _free_port(socket.SOCK_DGRAM)
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "facecast.cli",
        "run",
        *LIGHT_FLAGS,
        "--port",
        str(port),
        "--livelink",
        f"127.0.0.1:{udp}",
        "--subject",
        "Mora",
        "--device-id",
        "Rig-7",
        "--ack-timeout",
        "0.75",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )
    try:
        for _ in range(600):  # until it answers (or stops)
            assert server.returncode is None, "the server stopped"
            try:
                await asyncio.to_thread(urllib.request.urlopen, f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                await asyncio.sleep(0.1)
        async with EngineSim(SimConfig(url=f"ws://127.0.0.1:{port}/ws/engine")) as sim:
            welcome = sim.accepted
        assert welcome is not None and welcome.livelink is not None
        assert welcome.livelink.subject == "Mora" and welcome.livelink.device_id.startswith("Rig-7")
        assert welcome.ack_timeout == 0.75
    finally:
        if server.returncode is None:
            server.terminate()
        await asyncio.wait_for(server.communicate(), 30)


def test_run_on_a_busy_port_says_so_before_loading_anything() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = facecast("run", *LIGHT_FLAGS, "--port", str(port))
    assert result.returncode == 1
    assert f"facecast run: error: port {port} is in use (another facecast?)" in result.stderr
    assert "Facecast on" not in result.stderr and "loading" not in result.stderr  # no banner, nothing loaded
    assert "Errno" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["transcribe"], ["chat", "--llm", "echo", "--out", "{tmp}/x", "--audio"]])
def test_audio_without_speech_is_an_error_for_transcribe_and_chat(tmp_path: Path, command: list[str]) -> None:
    silence = tmp_path / "silence.wav"
    sf.write(str(silence), np.zeros(32000, np.float32), 16000)
    result = facecast(*[a.replace("{tmp}", str(tmp_path)) for a in command], str(silence))
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"no speech found in {silence}" in result.stderr
    assert not (tmp_path / "x").exists()


def test_chat_on_the_defaults_understands_a_real_recorded_question(tmp_path: Path) -> None:
    """Real human speech (a LibriVox reader) in, through Whisper, the local model, the neural voice and the face."""
    from facecast.speechdata import clips

    clip = {c.name: c for c in clips("read")}["sense_and_sensibility_01_austen_64kb-0930"]
    result = facecast("chat", "--audio", str(clip.path), "--out", str(tmp_path / "r"), timeout=300)
    assert result.returncode == 0, result.stderr
    heard = result.stdout.split("you: ", 1)[1].split("\n", 1)[0].lower()
    expected = set(clip.text.lower().split())
    assert len(expected & set(heard.replace(",", "").replace(".", "").split())) >= 0.8 * len(expected), heard
    reply = result.stdout.split("character: ", 1)[1].split("\n", 1)[0]
    assert reply and "You said" not in reply
    session = read_session(tmp_path / "r")
    assert session.rate == 24000 and len(session.values) == frames_for_samples(len(session.audio), session.rate)
    assert session.values[:, INDEX["JawOpen"]].max() > 0.2
