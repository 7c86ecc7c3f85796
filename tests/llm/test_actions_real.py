"""Actions with real language models: the embedded local model (its own chat template's tools), and the
OpenAI-compatible client against a real llama.cpp server (tools in the request, llama.cpp's own parsing).

The models are slow here; these are the few end-to-end tests of actions (the rest: tests/engine/test_actions.py).
Skipped without the local model unless ``FACECAST_REQUIRE_LOCAL_LLM=1`` (CI), when they fail instead.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.engine.test_actions import GIVE_ITEM
from tests.engine.test_session import Recorder
from tests.fakes import FakeFace, FakeSTT, FakeTTS

from facecast.characters import Character
from facecast.engine.session import EngineSession
from facecast.errors import ConfigError
from facecast.llm.local import LocalLLM, LocalLLMOptions
from facecast.llm.openai_compat import OpenAIChat, OpenAIChatOptions
from facecast.roles import LanguageModel
from facecast.services import Services

REQUIRE = os.environ.get("FACECAST_REQUIRE_LOCAL_LLM") == "1"
MORA = Character("mora", "You are Mora, the innkeeper of the Red Lantern. You keep the cellar key and fresh bread.")


@pytest.fixture(scope="module")
def local() -> Iterator[LocalLLM]:
    try:
        model = LocalLLM(LocalLLMOptions(temperature=0.0, seed=1234, max_tokens=96))
        model.load()
    except ConfigError as err:
        if REQUIRE:
            pytest.fail(str(err))
        pytest.skip(str(err))
    yield model


async def ask(llm: LanguageModel, text: str) -> Recorder:
    rec = Recorder()
    session = EngineSession(Services(FakeSTT(), llm, FakeTTS(rate=16000), FakeFace()), rec, character=MORA)
    hello = {"type": "hello", "audio": {"rate": 16000}, "acks": False, "actions": [GIVE_ITEM], "character": ""}
    await session.handle_text(json.dumps(hello))
    await session.handle_text(json.dumps({"type": "text", "text": text}))
    await rec.wait_for("utterance_end", timeout=240)
    await session.close()
    return rec


def _actions(rec: Recorder) -> list[tuple[str, Any]]:
    return [(a["name"], a["arguments"]) for a in rec.of_type("action")]


async def test_the_local_model_hands_over_the_key(local: LocalLLM) -> None:
    rec = await ask(local, "Can I have the key?")
    assert _actions(rec) == [("give_item", {"item": "key"})], rec.sent
    assert not rec.of_type("error")
    rec = await ask(local, "How are you today?")
    assert _actions(rec) == [] and rec.of_type("utterance_end")[0]["text"]  # talk, no action


@pytest.fixture(scope="module")
def llamacpp_server(local: LocalLLM) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = Path(__file__).with_name("llamacpp_http.py")
    root = Path(__file__).parents[2]
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the llama.cpp server did not start (exit code {proc.poll()})")
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def test_the_openai_compatible_path_offers_tools_to_a_real_llamacpp_server(llamacpp_server: str) -> None:
    llm = OpenAIChat(OpenAIChatOptions(llamacpp_server, temperature=0.0, seed=1234, max_tokens=96))
    rec = await ask(llm, "Could I get some bread?")
    assert _actions(rec) == [("give_item", {"item": "bread"})], rec.sent
    assert not rec.of_type("error")
