"""``facecast engine-sim`` as a user runs it (a real subprocess) against a live server in this process."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import soundfile as sf
from tests.conftest import LIGHT

from facecast.config import Settings
from facecast.errors import ServiceError
from facecast.face.phonetic import PhoneticAnimator
from facecast.server import BackgroundServer
from facecast.services import Services
from facecast.stt.pocketsphinx import PocketSphinxConfig, PocketSphinxSTT
from facecast.tts.espeak import EspeakTTS
from facecast.types import ChatMessage

from .conftest import TURN_GRAMMAR, LiveServer
from .test_turns import speech


async def engine_sim(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "facecast.cli",
        "engine-sim",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def write_question(tmp_path: Path) -> Path:
    pcm, rate = await speech(0.3, "What is your name?")  # stops right at its last word
    path = tmp_path / "question.wav"
    sf.write(str(path), pcm, rate)
    return path


async def test_a_file_without_trailing_silence_still_gets_its_reply(grammar_server: LiveServer, tmp_path: Path) -> None:
    code, out, err = await engine_sim(
        "--url", grammar_server.ws_url, "--wav", str(await write_question(tmp_path)), "--timeout", "20"
    )
    assert code == 0, err
    assert "player: what is your name" in out
    assert "character: You said: what is your name" in out
    assert "response latency: " in out and "response latency: -" not in out


async def test_push_to_talk_sends_end_of_speech_after_the_file(grammar_server: LiveServer, tmp_path: Path) -> None:
    code, out, err = await engine_sim(
        "--url",
        grammar_server.ws_url,
        "--wav",
        str(await write_question(tmp_path)),
        "--turns",
        "client",
        "--timeout",
        "20",
    )
    assert code == 0, err
    assert "player: what is your name" in out
    assert "character: You said: what is your name" in out


class BrokenLLM:
    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        raise ServiceError("the LLM at http://127.0.0.1:9/v1 refused the connection")
        yield ""  # pragma: no cover - makes this an async generator


async def test_an_llm_error_is_printed_without_a_latency(tmp_path: Path) -> None:
    services = Services(
        PocketSphinxSTT(PocketSphinxConfig(grammar=TURN_GRAMMAR)), BrokenLLM(), EspeakTTS(), PhoneticAnimator()
    )
    async with BackgroundServer(replace(Settings(**LIGHT), livelink=("off",)), services) as server:
        code, out, err = await engine_sim("--url", server.ws_url, "--text", "Hello there.", "--timeout", "20")
    assert code != 0
    assert "service_unavailable" in err and "refused the connection" in err
    assert "latency" not in out
    assert "Traceback" not in err
