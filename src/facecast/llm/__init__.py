"""The language-model role: providers of :class:`facecast.roles.LanguageModel` and the chat history.

``make_llm(spec)`` turns the ``--llm`` option into a provider:

- ``"echo"`` (or empty): :class:`EchoLLM`, the offline stand-in that repeats what it heard;
- ``"http://..."`` / ``"https://..."``: :class:`OpenAIChat`, any OpenAI-compatible server;
- a path ending in ``.gguf``: :class:`LlamaCppLLM`, a local model (extra ``facecast[llamacpp]``).

llama-cpp-python is imported only when a ``.gguf`` is asked for, so this package imports without the extra;
the ``openai`` client (seconds to import) only when a URL is asked for or ``OpenAIChat`` is first accessed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..roles import LanguageModel
from .echo import NO_LLM_HINT, EchoLLM
from .history import DEFAULT_PERSONA, ChatHistory, HistoryLimits
from .llamacpp import LlamaCppLLM, LlamaCppOptions

if TYPE_CHECKING:
    from .openai_compat import OpenAIChat, OpenAIChatOptions

__all__ = [
    "make_llm",
    "EchoLLM",
    "NO_LLM_HINT",
    "OpenAIChat",
    "OpenAIChatOptions",
    "LlamaCppLLM",
    "LlamaCppOptions",
    "ChatHistory",
    "HistoryLimits",
    "DEFAULT_PERSONA",
]


def make_llm(
    spec: str | None,
    *,
    model: str | None = None,
    api_key: str | None = None,
    temperature: float = 0.7,
    max_tokens: int | None = 256,
    timeout: float = 30.0,
    seed: int | None = None,
) -> LanguageModel:
    """The language model named by ``spec`` (the ``--llm`` option), configured but not yet contacted.

    ``model`` is the server's model name (``None``: the first one the server lists; ignored for echo and
    ``.gguf``); ``api_key`` ``None`` reads ``FACECAST_LLM_KEY``/``OPENAI_API_KEY``; ``timeout`` applies to
    servers only. Raises :class:`ConfigError` for a spec that is none of the three forms, a ``.gguf`` that
    does not exist, or a ``.gguf`` without llama-cpp-python installed. (Comma-separated ``ws://`` service
    lists are handled by the remote layer, not here.)
    """
    text = (spec or "").strip()
    if text.lower() in ("", "echo"):
        return EchoLLM()
    if text.lower().startswith(("http://", "https://")):
        from .openai_compat import OpenAIChat, OpenAIChatOptions

        return OpenAIChat(
            OpenAIChatOptions(
                base_url=text,
                model=model,
                api_key=api_key,
                temperature=temperature,
                max_tokens=max_tokens,
                timeout=timeout,
                seed=seed,
            )
        )
    if text.lower().endswith(".gguf"):
        return LlamaCppLLM(text, LlamaCppOptions(temperature=temperature, max_tokens=max_tokens, seed=seed))
    raise ConfigError(
        f"--llm {text!r} is not a language model Facecast knows: use 'echo', an OpenAI-compatible URL "
        "(e.g. http://localhost:11434/v1 for Ollama) or the path of a local .gguf file"
    )


def __getattr__(name: str) -> object:
    # The openai package takes seconds to import: load it only for code that talks to a server.
    if name in ("OpenAIChat", "OpenAIChatOptions"):
        from . import openai_compat

        return getattr(openai_compat, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
