"""Speech-to-text through any OpenAI-compatible ``POST {base}/audio/transcriptions`` API: OpenAI itself
(``whisper-1``, ``gpt-4o-transcribe``...), Groq, speaches / faster-whisper-server, vLLM, LocalAI.

Like local Whisper it decodes at the player's pauses: an utterance's audio is collected (resampled to 16 kHz
as it arrives), sent once the input ends as a 16 kHz mono 16-bit WAV file in a multipart form (``file``,
``model``, ``response_format=json``, and ``language``, ``prompt``, ``temperature`` when set), and the
answer's ``text`` is the one final :class:`~facecast.types.Transcript`. No partial transcripts.

Failures are :class:`~facecast.errors.ServiceError` naming the server and what happened (refused, timed out,
wrong key, not a transcription...), so a failover list (``--stt openai:URL,whisper``) gives the same audio,
kept whole by the wrapper, to its next member. A 429 answer with ``Retry-After`` of at most
:data:`~facecast.openai_http.RETRY_AFTER_MAX_S` is retried once after that wait; otherwise it is a
:class:`~facecast.errors.BusyError` at once (the player is waiting for an answer).

Checked here only against ``tests/servers/openai_audio.py``, a local server implementing the documented API
around faster-whisper; not against OpenAI or the other servers themselves.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from ..audio import wav_bytes
from ..errors import ConfigError, ServiceError
from ..openai_http import (
    OPENAI_URL,
    LoopClient,
    check_base_url,
    probe,
    raise_for_status,
    resolve_key,
    transport_error,
    waited_to_retry,
)
from ..types import AudioChunk, Float32Array, Transcript
from .input16k import RATE, collect

__all__ = ["OpenAISTTOptions", "OpenAISTT", "STT_RATE", "KEY_ENV"]

STT_RATE = RATE
"""The rate of the WAV file sent (what Whisper-family servers decode at)."""

KEY_ENV = ("FACECAST_STT_KEY", "OPENAI_API_KEY")
"""Where the key is read from when the ``api_key`` option is empty, in this order."""


@dataclass(frozen=True, slots=True)
class OpenAISTTOptions:
    """Settings of :class:`OpenAISTT`.

    ``base_url``: the API root (``--stt openai:URL`` sets it; default api.openai.com). ``model``: the
    server's model name (OpenAI ``whisper-1``; speaches e.g. ``Systran/faster-whisper-small``). ``api_key``:
    empty reads ``FACECAST_STT_KEY``, then ``OPENAI_API_KEY``; none at all is an error only for
    api.openai.com (local servers get no ``Authorization`` header); never logged. ``language``: an ISO code
    sent as a hint ("" lets the server detect it). ``prompt``: words the deployment expects (names, jargon).
    ``temperature``: the server's sampling temperature (0: deterministic). ``timeout``: seconds for the
    connection and for each wait on the server. ``max_audio_s``: the longest utterance accepted.
    """

    base_url: str = OPENAI_URL
    model: str = "whisper-1"
    api_key: str = ""
    language: str = "en"
    prompt: str = ""
    temperature: float = 0.0
    timeout: float = 30.0
    max_audio_s: float = 120.0

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise ConfigError("stt.openai model must not be empty")
        if self.timeout <= 0:
            raise ConfigError(f"stt.openai timeout must be positive, got {self.timeout}")
        if not 0 < self.max_audio_s <= 1800:
            raise ConfigError(f"stt.openai max_audio_s must be from 0 to 1800 s, got {self.max_audio_s}")
        if not 0.0 <= self.temperature <= 1.0:
            raise ConfigError(f"stt.openai temperature must be from 0 to 1, got {self.temperature}")


class OpenAISTT:
    """A :class:`facecast.roles.SpeechToText` over an OpenAI-compatible transcription server.

    Construction checks the URL and the key (:class:`ConfigError` for api.openai.com without one) and does no
    I/O. Call :meth:`aclose` to release the pooled connection.
    """

    def __init__(self, options: OpenAISTTOptions | None = None) -> None:
        self._options = opts = options or OpenAISTTOptions()
        self._url = check_base_url(opts.base_url, "speech-to-text")
        self._where = f"speech-to-text server at {self._url}"
        self._http = LoopClient(resolve_key(opts.api_key, KEY_ENV, self._url, "speech-to-text"), opts.timeout)

    @property
    def options(self) -> OpenAISTTOptions:
        return self._options

    @property
    def failover_name(self) -> str:
        return f"openai:{self._url}"

    def __repr__(self) -> str:
        return f"OpenAISTT({self._url!r}, model={self._options.model!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def probe(self) -> None:
        """Raise :class:`ServiceError` while the server cannot be reached (any HTTP answer counts as up, but a
        refused key does not). Used by the failover wrapper to learn that a failed member is back."""
        await probe(self._http.get(), self._url, self._where, self._options.timeout, KEY_ENV)

    async def transcribe(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcript]:
        """Collect ``audio`` until it ends, send it, and yield exactly one ``final=True`` transcript ("" for no
        audio, without asking the server).

        Raises :class:`InputError` for chunks that are not audio, a rate out of range or changing, or an
        utterance longer than ``max_audio_s``; :class:`ServiceError` (:class:`BusyError` for a rate limit)
        when the server cannot be reached, refuses the key, times out, or answers with something that is not
        a transcription. Closing the iterator early closes ``audio`` and abandons the request.
        """
        pcm = await self._collect(audio)
        if not len(pcm):
            yield Transcript("", True)
            return
        text = await self._request(wav_bytes(pcm, STT_RATE))
        yield Transcript(text, True)

    async def _collect(self, audio: AsyncIterable[AudioChunk]) -> Float32Array:
        return await collect(audio, self._options.max_audio_s, "stt.openai")

    async def _request(self, wav: bytes) -> str:
        opts = self._options
        form: dict[str, Any] = {"model": opts.model, "response_format": "json", "temperature": str(opts.temperature)}
        if opts.language:
            form["language"] = opts.language
        if opts.prompt:
            form["prompt"] = opts.prompt
        for attempt in range(2):
            try:
                response = await self._http.get().post(
                    f"{self._url}/audio/transcriptions",
                    data=form,
                    files={"file": ("speech.wav", wav, "audio/wav")},
                )
            except httpx.HTTPError as err:
                transport_error(err, self._where, opts.timeout, False)
            if await waited_to_retry(response, attempt):
                continue
            raise_for_status(response, response.content, self._where, KEY_ENV)
            return _transcript_text(response.content, self._where)
        raise AssertionError("unreachable")  # pragma: no cover


def _transcript_text(body: bytes, where: str) -> str:
    """The ``text`` of a transcription answer (``json`` or ``verbose_json``); :class:`ServiceError` otherwise."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    text = data.get("text") if isinstance(data, dict) else None
    if not isinstance(text, str):
        sample = " ".join(body[:80].decode("utf-8", "replace").split())
        raise ServiceError(
            f"the {where} sent something that is not a transcription ({sample!r}); is the URL an "
            "OpenAI-compatible API root?"
        )
    return text.strip()
