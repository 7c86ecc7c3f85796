"""A local ``.gguf`` model run in-process by llama.cpp (the optional extra ``facecast[llamacpp]``).

Generation runs in one worker thread per model (llama.cpp contexts are not thread-safe, so requests take
turns) and hands each piece of text to the event loop as soon as it exists; the loop is never blocked.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ServiceError
from ..types import ChatMessage

__all__ = ["LlamaCppLLM", "LlamaCppOptions", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'facecast[llamacpp]'"
"""What to run to get llama-cpp-python (it builds from source; set CMAKE_ARGS=-DGGML_NATIVE=OFF for a
portable build)."""


@dataclass(frozen=True, slots=True)
class LlamaCppOptions:
    """How to load and sample a local model.

    ``n_ctx`` is the context window in tokens (prompt + answer). ``n_threads`` ``None`` lets llama.cpp
    choose. ``chat_format`` ``None`` uses the chat template stored in the GGUF (else llama-cpp-python's
    named formats, e.g. ``"chatml"``). ``max_tokens`` ``None`` generates until the model stops or the
    context is full. ``seed`` makes sampling repeatable.
    """

    n_ctx: int = 4096
    n_threads: int | None = None
    temperature: float = 0.7
    max_tokens: int | None = 256
    seed: int | None = None
    chat_format: str | None = None

    def __post_init__(self) -> None:
        if self.n_ctx < 16:
            raise ConfigError(f"n_ctx must be at least 16 tokens, got {self.n_ctx}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1, got {self.max_tokens}")


def _import_llama_cpp() -> Any:
    try:
        return importlib.import_module("llama_cpp")
    except ImportError as err:
        raise ConfigError(
            f"running a local .gguf model needs llama-cpp-python: {INSTALL_HINT} "
            "(or serve the model with Ollama or llama.cpp's server and pass its URL to --llm)"
        ) from err
    except (OSError, RuntimeError) as err:  # the package is there but its native library does not load
        raise ConfigError(
            f"llama-cpp-python is installed but its native library does not load ({err}); "
            f"reinstall it: CMAKE_ARGS=-DGGML_NATIVE=OFF pip install --force-reinstall --no-cache-dir "
            f"'llama-cpp-python>=0.3'"
        ) from err


class LlamaCppLLM:
    """A :class:`facecast.roles.LanguageModel` running a local GGUF file with llama-cpp-python.

    The constructor checks that llama-cpp-python imports and that ``path`` is a file, raising
    :class:`ConfigError` (naming ``pip install 'facecast[llamacpp]'``) otherwise; it does not load the
    model. The model is loaded by :meth:`load` or, in the worker thread, on first use. Call :meth:`aclose`
    to free it.
    """

    def __init__(self, path: str | os.PathLike[str], options: LlamaCppOptions | None = None) -> None:
        self._path = Path(path).expanduser()
        if not self._path.is_file():
            raise ConfigError(f"the model file {str(self._path)!r} does not exist (--llm takes a .gguf path)")
        self._lib = _import_llama_cpp()
        self._options = options or LlamaCppOptions()
        self._llama: Any = None
        self._load_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facecast-llamacpp")

    @property
    def path(self) -> Path:
        return self._path

    @property
    def options(self) -> LlamaCppOptions:
        return self._options

    def __repr__(self) -> str:
        return f"LlamaCppLLM({str(self._path)!r})"

    def load(self) -> None:
        """Load the model now (blocking; seconds for a large file). Raises :class:`ConfigError` when
        llama.cpp cannot read the file. Calling it again does nothing."""
        with self._load_lock:
            if self._llama is not None:
                return
            opts = self._options
            kwargs: dict[str, Any] = {
                "model_path": str(self._path),
                "n_ctx": opts.n_ctx,
                "verbose": False,
            }
            if opts.n_threads is not None:
                kwargs["n_threads"] = opts.n_threads
            if opts.seed is not None:
                kwargs["seed"] = opts.seed
            if opts.chat_format is not None:
                kwargs["chat_format"] = opts.chat_format
            try:
                self._llama = self._lib.Llama(**kwargs)
            except Exception as err:  # llama.cpp reports bad files as ValueError/RuntimeError
                raise ConfigError(
                    f"llama.cpp cannot load {str(self._path)!r} ({err}); is it a complete GGUF model file?"
                ) from err

    async def aclose(self) -> None:
        """Free the model after any running generation stops. The object is unusable afterwards."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._free)
        self._executor.shutdown(wait=False)

    def _free(self) -> None:
        with self._load_lock:
            llama, self._llama = self._llama, None
        if llama is not None:
            llama.close()

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        """Stream the model's reply to ``messages``, piece by piece as llama.cpp produces it.

        Raises :class:`ConfigError` if the model file cannot be loaded (on first use) and
        :class:`ServiceError` if generation fails (e.g. the prompt does not fit in ``n_ctx``). Closing the
        iterator or cancelling the consumer stops generation after the token being computed.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()
        payload = [{"role": m.role, "content": m.content} for m in messages]

        def deliver(kind: str, value: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            except RuntimeError:  # the event loop is closed: nobody is listening any more
                stop.set()

        def work() -> None:
            try:
                if stop.is_set():
                    return
                self.load()
                chunks = self._llama.create_chat_completion(messages=payload, stream=True, **self._sampling())
                try:
                    for chunk in chunks:
                        if stop.is_set():
                            return
                        choices = chunk.get("choices") or [{}]
                        text = choices[0].get("delta", {}).get("content")
                        if text:
                            deliver("text", text)
                finally:
                    close = getattr(chunks, "close", None)
                    if close is not None:
                        close()
                deliver("end", None)
            except BaseException as err:  # handed to the consumer, which re-raises it
                deliver("error", err)

        loop.run_in_executor(self._executor, work)  # the worker catches everything; no result to await
        try:
            while True:
                kind, value = await queue.get()
                if kind == "text":
                    yield value
                elif kind == "end":
                    return
                elif isinstance(value, ConfigError):
                    raise value
                else:
                    raise ServiceError(self._describe(value)) from value
        finally:
            stop.set()

    async def complete(self, messages: Sequence[ChatMessage]) -> str:
        """The whole reply to ``messages`` (the joined :meth:`stream`), with the same errors."""
        return "".join([piece async for piece in self.stream(messages)])

    def _sampling(self) -> dict[str, Any]:
        opts = self._options
        out: dict[str, Any] = {"temperature": opts.temperature, "max_tokens": opts.max_tokens}
        if opts.seed is not None:
            out["seed"] = opts.seed
        return out

    def _describe(self, err: BaseException) -> str:
        text = " ".join(str(err).split()) or type(err).__name__
        if "context window" in text or "exceed" in text:
            return (
                f"the conversation no longer fits the local model's context ({self._options.n_ctx} tokens): "
                f"{text}; shorten the history or raise n_ctx"
            )
        return f"the local model {self._path.name} failed while answering: {text}"
