"""Fixtures for the LLM tests: a tiny random-weight llama GGUF and a real llama.cpp OpenAI-compatible server.

The GGUF (about 500 KB) is written with the ``gguf`` package: llama architecture, 2 layers, 64-wide,
a SentencePiece-style vocabulary (control tokens, 256 byte-fallback tokens, ~100 whole words) and a
ChatML chat template. The output projection has zero rows for every control and byte token, so greedy
(and nearly all sampled) generation emits only whole words (" the", " sun"...): each token is one
space-led word, the model never stops on its own, and ``max_tokens`` alone ends an answer.

Tests marked ``llamacpp`` need llama-cpp-python with its server extra. Without it they are skipped,
unless ``FACECAST_REQUIRE_LLAMACPP=1`` (set by CI), in which case they fail.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REQUIRE_LLAMACPP = os.environ.get("FACECAST_REQUIRE_LLAMACPP") == "1"
SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")
MODEL_ALIAS = "tiny-llama"

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

WORDS = (
    "the a an and or but if then so because of to in on at by for with from about as into over under "
    "I you he she it we they me him her us them my your our their this that these those here there "
    "is are was were be been have has had do does did can could will would shall should may might "
    "yes no not hello hi good well very much many more some any all every sun moon star sky sea "
    "tree stone river light dark day night time way world friend game player story song road home "
    "today tomorrow now soon again always never red blue green gold silver old new small big"
).split()


def require_llamacpp(modules: tuple[str, ...] = SERVER_MODULES) -> None:
    """Skip (or, under FACECAST_REQUIRE_LLAMACPP=1, fail) when llama-cpp-python (by default with the
    packages its server needs) cannot be imported."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # ImportError, or a native library that does not load
            missing.append(name)
    if missing:
        message = (
            f"llama-cpp-python server not usable (missing: {', '.join(missing)}); "
            "install with: CMAKE_ARGS=-DGGML_NATIVE=OFF pip install 'llama-cpp-python[server]>=0.3'"
        )
        if REQUIRE_LLAMACPP:
            pytest.fail(message)
        pytest.skip(message)


def write_tiny_llama_gguf(path: Path, *, seed: int = 0) -> Path:
    """Write a tiny random-weight llama GGUF that llama.cpp loads and serves (see the module docstring)."""
    try:
        import gguf
    except ImportError:
        message = "the gguf package is needed to build the test model: pip install 'facecast[test]'"
        if REQUIRE_LLAMACPP:
            pytest.fail(message)
        pytest.skip(message)

    normal, unknown, control, byte = (
        gguf.TokenType.NORMAL,
        gguf.TokenType.UNKNOWN,
        gguf.TokenType.CONTROL,
        gguf.TokenType.BYTE,
    )
    tokens: list[str] = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    types = [unknown, control, control, control, control]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [byte] * 256
    first_word = len(tokens)
    tokens += ["\u2581" + w for w in WORDS]
    types += [normal] * len(WORDS)
    n_vocab = len(tokens)
    scores = [0.0] * first_word + [-float(i) for i in range(len(WORDS))]

    n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx = 64, 2, 4, 2, 128, 4096
    head_dim = n_embd // n_head
    rng = np.random.default_rng(seed)

    def weight(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("facecast tiny test llama")
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHATML_TEMPLATE)

    # numpy shapes are (rows, cols); GGUF stores them reversed, which is what llama.cpp expects.
    writer.add_tensor("token_embd.weight", weight(n_vocab, n_embd, scale=1.0))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    output = weight(n_vocab, n_embd, scale=1.0)
    output[:first_word] = 0.0  # never emit control or byte tokens: only whole words
    writer.add_tensor("output.weight", output)
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", weight(n_head * head_dim, n_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weight(n_head_kv * head_dim, n_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weight(n_head_kv * head_dim, n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weight(n_embd, n_head * head_dim))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(n_embd, n_ff))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LlamaServer:
    """A running ``python -m llama_cpp.server``; ``base_url`` ends in ``/v1``."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def kill(self) -> None:
        """SIGKILL the server (no graceful shutdown) and reap it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def run_llama_server(model: Path, log_dir: Path, *, n_ctx: int = 4096) -> Iterator[LlamaServer]:
    """Start a real llama-cpp-python OpenAI-compatible server on a free port; stop it on exit."""
    port = free_port()
    log = log_dir / f"llama-server-{port}.log"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model), "--model_alias", MODEL_ALIAS,
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(n_ctx), "--n_threads", "2", "--n_threads_batch", "2",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    server = LlamaServer(process, port, log)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{server.base_url}/models", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer within 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield server
    finally:
        server.stop()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 with no server: connecting to it is refused."""
    return free_port()


@pytest.fixture
def llama_server_factory(
    tiny_gguf: Path, tmp_path: Path
) -> Callable[..., contextlib.AbstractContextManager[LlamaServer]]:
    """Start extra servers (e.g. to kill one): ``with llama_server_factory() as server: ...``."""
    require_llamacpp()

    def start(n_ctx: int = 4096) -> contextlib.AbstractContextManager[LlamaServer]:
        return run_llama_server(tiny_gguf, tmp_path, n_ctx=n_ctx)

    return start


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the tiny random llama GGUF (written once per test session)."""
    return write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")


@pytest.fixture
def llama_cpp_available() -> None:
    """Skip (or fail under FACECAST_REQUIRE_LLAMACPP=1) unless llama-cpp-python imports."""
    require_llamacpp(("llama_cpp",))


@pytest.fixture(scope="session")
def llama_server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """One real llama.cpp server for the session, serving :func:`tiny_gguf` as model ``tiny-llama``."""
    require_llamacpp()
    with run_llama_server(tiny_gguf, tmp_path_factory.mktemp("llama-server")) as server:
        yield server
