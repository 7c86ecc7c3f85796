"""A language model behind any OpenAI-compatible chat completions API.

Works with Ollama (``http://localhost:11434/v1``), the llama.cpp server, vLLM, LM Studio and OpenAI itself:
anything that serves ``POST {base_url}/chat/completions`` with server-sent-event streaming.

Every failure reaches the caller as :class:`facecast.errors.ServiceError` whose message says what went
wrong in words a user can act on (which URL, what happened, which option to change); the original
exception is kept as ``__cause__`` for logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import ssl
import traceback
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import openai
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    ChatCompletionSystemMessageParam,
    ChatCompletionUserMessageParam,
)

from ..actions import Action
from ..errors import ConfigError, ServiceError
from ..types import ChatMessage

__all__ = ["OpenAIChat", "OpenAIChatOptions", "connection_reason", "resolve_api_key", "to_openai_messages"]

_KEY_ENV = ("FACECAST_LLM_KEY", "OPENAI_API_KEY")
_NO_KEY = "not-needed"
_RETRY_DELAY_S = 0.25
_DETAIL_CHARS = 300
_SETTLE_TURNS = 40


def resolve_api_key(explicit: str | None = None) -> str:
    """The API key to send: ``explicit`` if given, else ``$FACECAST_LLM_KEY``, else ``$OPENAI_API_KEY``,
    else ``"not-needed"`` (local servers ignore the key, but the client must send one)."""
    if explicit:
        return explicit
    for name in _KEY_ENV:
        value = os.environ.get(name)
        if value:
            return value
    return _NO_KEY


@dataclass(frozen=True, slots=True)
class OpenAIChatOptions:
    """How to reach and drive an OpenAI-compatible server.

    ``base_url`` is the API root, usually ending in ``/v1``. ``model`` ``None`` means "the first model the
    server lists" (right for a llama.cpp or vLLM server that serves one model; Ollama and OpenAI need a
    name). ``api_key`` ``None`` reads the environment (see :func:`resolve_api_key`). ``max_tokens``
    ``None`` lets the server decide. ``timeout`` bounds the connection and every wait for the server's next
    bytes (including the first token), in seconds. ``seed`` asks servers that support it for repeatable
    sampling. ``top_p`` (None: the server's default) is nucleus sampling; ``stop`` holds up to 4 strings
    that end the reply where the model writes them (e.g. ``"\\nPlayer:"``), sent with every request.

    Reasoning: text in providers' separate reasoning fields (``delta.reasoning_content``,
    ``delta.reasoning``) is never part of the reply; ``<think>...</think>`` inside the text is removed
    downstream (:func:`facecast.llm.reasoning.without_reasoning`, applied to every model's reply).
    """

    base_url: str
    model: str | None = None
    api_key: str | None = None
    temperature: float = 0.7
    max_tokens: int | None = 256
    timeout: float = 30.0
    seed: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"the LLM URL must start with http:// or https://, got {self.base_url!r}")
        if self.timeout <= 0:
            raise ConfigError(f"the LLM timeout must be positive, got {self.timeout}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ConfigError(f"the LLM temperature must be between 0 and 2, got {self.temperature}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"the LLM top_p must be above 0 and at most 1, got {self.top_p}")
        if isinstance(self.stop, str) or len(self.stop) > 4 or not all(isinstance(s, str) and s for s in self.stop):
            raise ConfigError(f"the LLM stop must be a list of at most 4 non-empty strings, got {self.stop!r}")


def to_openai_messages(messages: Sequence[ChatMessage]) -> list[ChatCompletionMessageParam]:
    """Convert Facecast chat messages to the OpenAI request format (order kept)."""
    out: list[ChatCompletionMessageParam] = []
    for message in messages:
        if message.role == "system":
            out.append(ChatCompletionSystemMessageParam(role="system", content=message.content))
        elif message.role == "user":
            out.append(ChatCompletionUserMessageParam(role="user", content=message.content))
        else:
            out.append(ChatCompletionAssistantMessageParam(role="assistant", content=message.content))
    return out


class OpenAIChat:
    """A :class:`facecast.roles.LanguageModel` talking to an OpenAI-compatible server.

    Creating one does no I/O. Use it from one event loop; call :meth:`aclose` when done to release the
    connection pool. Connection errors before the first token are retried once after a short pause;
    nothing is retried once text has been yielded (the listener may already have heard it).
    """

    def __init__(self, options: OpenAIChatOptions) -> None:
        self._options = options
        self._url = options.base_url.rstrip("/")
        self._client = openai.AsyncOpenAI(
            base_url=self._url,
            api_key=resolve_api_key(options.api_key),
            timeout=openai.Timeout(options.timeout, connect=min(options.timeout, 10.0)),
            max_retries=0,  # retries are ours: at most one, and only before the first token
        )
        self._model: str | None = options.model
        self._closed = False

    @property
    def options(self) -> OpenAIChatOptions:
        return self._options

    def __repr__(self) -> str:
        return f"OpenAIChat({self._url!r}, model={self._model!r})"

    async def aclose(self) -> None:
        """Close the HTTP connection pool. Requests made afterwards raise :class:`ServiceError`."""
        self._closed = True
        await self._client.close()

    async def stream(self, messages: Sequence[ChatMessage], tools: Sequence[Action] = ()) -> AsyncIterator[str]:
        """Stream the reply to ``messages`` as text pieces, each as soon as the server sends it.

        ``tools``: actions offered with OpenAI tool calling; each tool call the server streams comes out, once
        complete, as one line of JSON text ``{"name": ..., "arguments": {...}}`` in its place in the reply,
        which :class:`facecast.actions.ActionExtractor` takes out (as it does a call the model wrote as text).

        Empty pieces are never yielded. Raises :class:`ServiceError` when the server cannot be reached,
        answers with an error status, times out, sends something that is not a chat completion stream, or
        drops the connection mid-answer (then after the pieces already yielded).

        Close the iterator (``await it.aclose()``, or ``contextlib.aclosing``) or cancel the consuming task
        to stop early: the HTTP response is closed at once, which tells the server to stop generating.
        """
        payload = to_openai_messages(messages)
        for attempt in range(2):
            started = finished = False
            before = asyncio.all_tasks()
            response: Any = None
            calls = _ToolCalls()
            try:
                response = await self._create(payload, stream=True, tools=tools)
                async for chunk in response:
                    piece = calls.feed(chunk) + _delta_text(chunk)
                    if piece:
                        started = True
                        yield piece
                if tail := calls.flush():
                    yield tail
                finished = True
                return
            except ServiceError:
                raise
            except openai.APITimeoutError as err:
                self._fail(err, midstream=started)
            except openai.APIConnectionError as err:
                if started or attempt == 1:
                    self._fail(err, midstream=started)
            except Exception as err:  # every failure becomes a ServiceError
                self._fail(err, midstream=started)
            finally:
                if not finished:  # closed early, cancelled or failed
                    if response is not None:
                        with contextlib.suppress(Exception):  # already broken is fine: we only end it
                            await response.close()  # end the HTTP stream: the server stops generating
                        response = None
                    await _settle(before)
            await asyncio.sleep(_RETRY_DELAY_S)

    async def complete(self, messages: Sequence[ChatMessage]) -> str:
        """The whole reply to ``messages`` in one non-streaming request (``stream=False``).

        Same errors and the same single retry on connection errors as :meth:`stream`.
        """
        payload = to_openai_messages(messages)
        for attempt in range(2):
            before = asyncio.all_tasks()
            answered = False
            try:
                completion = await self._create(payload, stream=False)
                if not completion.choices:
                    raise ServiceError(f"the LLM at {self._url} answered without any choice")
                answered = True
                return completion.choices[0].message.content or ""
            except ServiceError:
                raise
            except openai.APITimeoutError as err:
                self._fail(err)
            except openai.APIConnectionError as err:
                if attempt == 1:
                    self._fail(err)
            except Exception as err:  # every failure becomes a ServiceError
                self._fail(err)
            finally:
                if not answered:
                    await _settle(before)
            await asyncio.sleep(_RETRY_DELAY_S)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _model_name(self) -> str:
        if self._model is None:
            page = await self._client.models.list()
            if not page.data:
                raise ServiceError(f"the LLM at {self._url} lists no model; name one with --llm-model")
            self._model = page.data[0].id
        return self._model

    async def _create(
        self, payload: list[ChatCompletionMessageParam], *, stream: bool, tools: Sequence[Action] = ()
    ) -> Any:
        if self._closed:
            raise ServiceError(f"the client for the LLM at {self._url} was closed")
        opts = self._options
        extra: dict[str, Any] = {}
        if tools:
            extra["tools"] = [action.as_tool() for action in tools]
        if opts.max_tokens is not None:
            extra["max_tokens"] = opts.max_tokens
        if opts.seed is not None:
            extra["seed"] = opts.seed
        if opts.top_p is not None:
            extra["top_p"] = opts.top_p
        if opts.stop:
            extra["stop"] = list(opts.stop)
        return await self._client.chat.completions.create(
            model=await self._model_name(),
            messages=payload,
            temperature=opts.temperature,
            stream=stream,
            **extra,
        )

    def _fail(self, err: BaseException, *, midstream: bool = False) -> NoReturn:
        message = self._describe(err, midstream=midstream)
        _drop_locals(err)
        raise ServiceError(message) from err

    def _describe(self, err: BaseException, *, midstream: bool) -> str:
        url = self._url
        if isinstance(err, openai.APITimeoutError):
            limit = f"{self._options.timeout:g} s"
            if midstream:
                return f"the LLM at {url} went silent for {limit} in the middle of its answer"
            return (
                f"the LLM at {url} did not answer within {limit}; is the model still loading or too slow? "
                "raise the LLM timeout or use a smaller model"
            )
        if isinstance(err, openai.APIConnectionError):
            reason = connection_reason(err)
            if midstream:
                return f"the LLM at {url} stopped in the middle of its answer: {reason}"
            return (
                f"cannot reach the LLM at {url}: {reason}; is the server running? "
                "set --llm to its OpenAI-compatible base URL (Ollama: --llm http://localhost:11434/v1)"
            )
        if isinstance(err, openai.APIStatusError):
            status = err.status_code
            detail = _status_detail(err)
            if status in (401, 403):
                return (
                    f"the LLM at {url} refused the API key (HTTP {status}): {detail}; "
                    "set FACECAST_LLM_KEY (or OPENAI_API_KEY)"
                )
            if status == 404:
                return (
                    f"the LLM at {url} answered HTTP 404 for model {self._model!r}: {detail}; "
                    "check --llm-model and that the URL is the API root (it usually ends in /v1)"
                )
            if status == 429:
                return f"the LLM at {url} is rate-limiting requests (HTTP 429): {detail}"
            return f"the LLM at {url} failed with HTTP {status}: {detail}"
        if isinstance(err, openai.APIError):
            return f"the LLM at {url} reported an error: {_short(err.message)}"
        what = "in the middle of its answer" if midstream else "instead of an answer"
        return (
            f"the LLM at {url} sent something that is not an OpenAI chat completion {what} "
            f"({type(err).__name__}: {_short(str(err))}); is --llm an OpenAI-compatible API root?"
        )


def connection_reason(err: BaseException) -> str:
    """A short human reason for a connection failure, found in ``err``'s cause chain.

    Looks through ``__cause__``/``__context__`` and exception groups for the operating-system error
    (refused, DNS failure, reset, TLS...) that the HTTP library wrapped.
    """
    seen: set[int] = set()
    stack: list[BaseException] = [err]
    found: list[BaseException] = []
    while stack:
        exc = stack.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        found.append(exc)
        stack.extend(e for e in (exc.__cause__, exc.__context__) if e is not None)
        group = getattr(exc, "exceptions", None)
        if isinstance(group, (list, tuple)):
            stack.extend(e for e in group if isinstance(e, BaseException))
    for exc in found:
        if isinstance(exc, ConnectionRefusedError):
            return "connection refused"
        if isinstance(exc, socket.gaierror):
            return "host name not found"
        if isinstance(exc, ssl.SSLError):
            return f"TLS error ({_short(str(exc))})"
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            return "connection closed by the server"
        if isinstance(exc, OSError) and exc.strerror:
            return exc.strerror.lower()
    for exc in found:
        name = type(exc).__name__
        text = str(exc)
        if "RemoteProtocolError" in name or "incomplete" in text or "peer closed" in text:
            return "the server closed the connection before the answer was complete"
        if "ReadError" in name or "WriteError" in name:
            return "connection closed by the server"
    innermost = found[-1]
    return _short(str(innermost)) or type(innermost).__name__


def _drop_locals(err: BaseException) -> None:
    """Clear the local variables of the finished frames in ``err``'s tracebacks (the text of the traceback
    stays). Those locals hold the HTTP library's abandoned async generators; released now, they are closed
    by :func:`_settle` instead of whenever the caller lets go of the exception."""
    seen: set[int] = set()
    exc: BaseException | None = err
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        traceback.clear_frames(exc.__traceback__)  # skips frames still running (ours)
        exc = exc.__cause__ or exc.__context__


async def _settle(before: set[asyncio.Task[Any]]) -> None:
    """Give the event loop the few turns it needs to close the async generators that openai and httpx
    abandon when a stream stops early, so a stream that was closed, cancelled or failed leaves no task
    behind. The loop closes each abandoned generator in a task created one turn after it is dropped, one
    nesting level at a time: wait until a few consecutive turns pass with no such task."""
    quiet = 0
    for _ in range(_SETTLE_TURNS):
        pending = any(
            not task.done() and type(task.get_coro()).__name__ == "async_generator_athrow"
            for task in asyncio.all_tasks() - before
        )
        quiet = 0 if pending else quiet + 1
        if quiet >= 3:
            return
        await asyncio.sleep(0)


def _status_detail(err: openai.APIStatusError) -> str:
    """The server's own words for an error status, without the client's "Error code: N - " prefix."""
    body: object = err.body
    message: object = None
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            message = inner.get("message") or inner.get("detail")
        else:
            message = inner
    elif isinstance(body, str):
        message = body
    if not isinstance(message, str) or not message.strip():
        message = re.sub(r"^Error code: \d+( - )?", "", err.message)
    return _short(message) or "no details"


class _ToolCalls:
    """Tool calls streamed in pieces (name first, then the arguments' JSON in fragments, by index), each
    given back as one line of JSON text once the next one starts or the stream ends."""

    def __init__(self) -> None:
        self._index: int | None = None
        self._name = ""
        self._arguments = ""

    def feed(self, chunk: ChatCompletionChunk) -> str:
        if not chunk.choices or not chunk.choices[0].delta.tool_calls:
            return ""
        out = ""
        for call in chunk.choices[0].delta.tool_calls:
            if call.index != self._index:
                out += self.flush()
                self._index = call.index
            if call.function is not None:
                self._name += call.function.name or ""
                self._arguments += call.function.arguments or ""
        return out

    def flush(self) -> str:
        if self._index is None:
            return ""
        try:
            arguments: Any = json.loads(self._arguments or "{}")
        except ValueError:
            arguments = self._arguments  # refused downstream, with the reason
        line = json.dumps({"name": self._name, "arguments": arguments}, ensure_ascii=False)
        self._index, self._name, self._arguments = None, "", ""
        return f"\n{line}\n"


def _delta_text(chunk: ChatCompletionChunk) -> str:
    if not chunk.choices:
        return ""
    return chunk.choices[0].delta.content or ""


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 3] + "..."
