"""make_llm: the --llm option turned into a language model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from facecast.errors import ConfigError
from facecast.llm import EchoLLM, LlamaCppLLM, OpenAIChat, make_llm


@pytest.mark.parametrize("spec", [None, "", "echo", " ECHO "])
def test_echo_is_the_default(spec: str | None) -> None:
    assert isinstance(make_llm(spec), EchoLLM)


async def test_a_url_gives_an_openai_compatible_client() -> None:
    llm = make_llm("http://localhost:11434/v1/", model="llama3.2", temperature=0.1, max_tokens=9, timeout=4)
    assert isinstance(llm, OpenAIChat)
    try:
        assert llm.options.base_url == "http://localhost:11434/v1/"
        assert (llm.options.model, llm.options.temperature, llm.options.max_tokens, llm.options.timeout) == (
            "llama3.2",
            0.1,
            9,
            4,
        )
        assert "http://localhost:11434/v1" in repr(llm)
    finally:
        await llm.aclose()


def test_a_missing_gguf_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        make_llm(str(tmp_path / "nope.gguf"))


def test_a_gguf_without_llama_cpp_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'facecast\[llamacpp\]'"):
        make_llm(str(model))
    with pytest.raises(ConfigError, match=r"pip install 'facecast\[llamacpp\]'"):
        LlamaCppLLM(model)


@pytest.mark.parametrize("spec", ["ollama", "localhost:11434", "model.bin", "ws://localhost:8767"])
def test_anything_else_is_a_config_error(spec: str) -> None:
    with pytest.raises(ConfigError, match="is not a language model Facecast knows"):
        make_llm(spec)


def test_the_openai_client_is_imported_only_when_needed() -> None:
    import subprocess

    code = "import sys, facecast.llm as m; m.make_llm('echo'); print('openai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
