"""Cartesia streaming voices over their TTS WebSocket API, with word timestamps.

What this client follows (Cartesia's public API reference, "TTS / WebSocket", ``wss://api.cartesia.ai/tts/websocket``):

* The key goes in the ``X-API-Key`` header and the API version in ``Cartesia-Version`` (the reference also
  allows ``?api_key=&cartesia_version=`` in the URL; headers keep the key out of URLs and logs).
* One request message per :meth:`CartesiaTTS.synthesize`: ``{"model_id", "transcript", "voice": {"mode": "id",
  "id"}, "language", "context_id", "output_format": {"container": "raw", "encoding": "pcm_s16le" |
  "pcm_f32le", "sample_rate"}, "add_timestamps": true, "continue": false}``.
* Responses, JSON objects tagged by ``type`` and carrying the ``context_id``: ``chunk`` (``data``: base64 raw
  PCM), ``timestamps`` (``word_timestamps``: ``words``, ``start``, ``end``, in seconds from the start of the
  context's audio), ``done`` (``done: true``: the end) and ``error`` (``done: true``, with ``error`` or
  ``title`` / ``message``, ``status_code``). Other types (``flush_done``, ``phoneme_timestamps``) are ignored.

Timing: word timestamps may arrive after the audio they describe, so an audio chunk is held back until a word
starting at or after its end has been announced (or ``done``): the chunk then carries every word starting in
it. The registered provider wraps this TTS in :class:`facecast.tts.aligned.WordTimedTTS`, which turns the words
into phonemes for the phonetic face.

Errors: as :mod:`facecast.tts.elevenlabs` (refused key: HTTP 401/403; rate or connection limit: HTTP 429,
:class:`BusyError`; stall; garbage; a close before ``done``; an ``error`` message), all :class:`ServiceError`.
A missing key is a :class:`ConfigError` when the provider is built.

Tested against ``tests/servers/cartesia_server.py``, an implementation of this documented protocol for tests
(not the service): nothing here has been run against api.cartesia.ai from this project.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from ..errors import InputError, ServiceError
from ..types import SpeechChunk, Word
from .cloudws import WordHold, api_key, decode_pcm, open_socket, receive_json, send_json
from .neural import clean_text

__all__ = ["CartesiaOptions", "CartesiaTTS", "RATES", "KEY_VARIABLES", "MAX_TEXT_CHARS"]

RATES = (8000, 16000, 22050, 24000, 44100, 48000)
"""The raw PCM output rates of the API."""
KEY_VARIABLES = ("FACECAST_TTS_CARTESIA_API_KEY", "CARTESIA_API_KEY")
"""Environment variables read for the key, in this order, when the options carry none."""
MAX_TEXT_CHARS = 5000
"""Longest text one :meth:`CartesiaTTS.synthesize` call sends (speak sentence by sentence)."""
SERVICE = "Cartesia"


@dataclass(frozen=True, slots=True)
class CartesiaOptions:
    """Settings of :class:`CartesiaTTS` (``[tts.cartesia]``, ``FACECAST_TTS_CARTESIA_*``).

    ``voice_id`` (``--tts cartesia:VOICE_ID``), ``model_id``, ``language`` (Cartesia's language code, e.g.
    ``en``), ``sample_rate`` (one of :data:`RATES`), ``encoding`` (``pcm_s16le`` or ``pcm_f32le``), ``api_key``
    (empty: :data:`KEY_VARIABLES`; never logged), ``base_url`` (``wss://`` or ``ws://``), ``version`` (the
    ``Cartesia-Version``), ``timeout`` (seconds for the connection and between frames), ``g2p_voice`` (the
    espeak-ng voice that turns words into phonemes).
    """

    voice_id: str = "a0e99841-438c-4a64-b679-ae501e7d6091"
    model_id: str = "sonic-2"
    language: str = "en"
    sample_rate: int = 24000
    encoding: str = "pcm_s16le"
    api_key: str = field(default="", repr=False)
    base_url: str = "wss://api.cartesia.ai"
    version: str = "2024-11-13"
    timeout: float = 10.0
    g2p_voice: str = "en-us"

    def __post_init__(self) -> None:
        if self.sample_rate not in RATES:
            raise InputError(f"Cartesia sample_rate must be one of {RATES}, got {self.sample_rate!r}")
        if self.encoding not in ("pcm_s16le", "pcm_f32le"):
            raise InputError(f"Cartesia encoding must be pcm_s16le or pcm_f32le, got {self.encoding!r}")
        if not self.voice_id.strip():
            raise InputError("Cartesia voice_id must not be empty")
        if not self.base_url.lower().startswith(("ws://", "wss://")):
            raise InputError(f"Cartesia base_url must start with ws:// or wss://, got {self.base_url!r}")
        if not 0.1 <= self.timeout <= 300:
            raise InputError(f"Cartesia timeout must be from 0.1 to 300 s, got {self.timeout!r}")


def _key(options: CartesiaOptions) -> str:
    return api_key(options.api_key, KEY_VARIABLES, "cartesia")


def _words(message: dict[str, object], rate: int) -> list[Word]:
    """The words of a ``timestamps`` message, in samples; garbage raises :class:`ServiceError`."""
    stamps = message.get("word_timestamps")
    if not isinstance(stamps, dict):
        raise ServiceError(f"{SERVICE} sent timestamps without word_timestamps")
    words, starts, ends = stamps.get("words"), stamps.get("start"), stamps.get("end")
    if not (isinstance(words, list) and isinstance(starts, list) and isinstance(ends, list)):
        raise ServiceError(f"{SERVICE} sent word_timestamps without words, start and end lists")
    if not len(words) == len(starts) == len(ends):
        raise ServiceError(f"{SERVICE} sent word_timestamps whose lists differ in length")
    out: list[Word] = []
    for text, start, end in zip(words, starts, ends, strict=True):
        numbers = (start, end)
        if not isinstance(text, str) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in numbers
        ):
            raise ServiceError(f"{SERVICE} sent an invalid word timestamp")
        lo = round(float(start) * rate)
        out.append(Word(text, lo, max(lo, round(float(end) * rate))))
    return out


class CartesiaTTS:
    """A Cartesia voice with word timing (module docstring); implements :class:`~facecast.roles.TextToSpeech`.

    One WebSocket connection per :meth:`synthesize` call. Raises :class:`ConfigError` without a key.
    """

    def __init__(self, options: CartesiaOptions | None = None) -> None:
        self._options = options or CartesiaOptions()
        self._key = _key(self._options)

    @property
    def sample_rate(self) -> int:
        return self._options.sample_rate

    @property
    def options(self) -> CartesiaOptions:
        return self._options

    def __repr__(self) -> str:
        return f"CartesiaTTS({self._options!r})"

    def request(self, text: str, context_id: str) -> dict[str, object]:
        """The request message for ``text`` (module docstring)."""
        o = self._options
        return {
            "model_id": o.model_id,
            "transcript": text,
            "voice": {"mode": "id", "id": o.voice_id},
            "language": o.language,
            "context_id": context_id,
            "output_format": {"container": "raw", "encoding": o.encoding, "sample_rate": o.sample_rate},
            "add_timestamps": True,
            "continue": False,
        }

    async def synthesize(self, text: str) -> AsyncGenerator[SpeechChunk, None]:
        """Speak ``text`` (module docstring). Raises :class:`InputError` for empty or oversized text and
        :class:`ServiceError` when the service refuses, stalls, sends garbage or closes early."""
        cleaned = clean_text(text, MAX_TEXT_CHARS)
        o = self._options
        url = o.base_url.rstrip("/") + "/tts/websocket"
        headers = {"X-API-Key": self._key, "Cartesia-Version": o.version}
        ws = await open_socket(url, headers, o.timeout, SERVICE)
        context = str(uuid.uuid4())
        try:
            await send_json(ws, self.request(cleaned.strip(), context), SERVICE)
            hold = WordHold(o.sample_rate)
            while True:
                message = await receive_json(ws, o.timeout, SERVICE)
                kind = message.get("type")
                if message.get("context_id", context) != context:
                    continue  # another generation's message (not ours: one context per connection here)
                if kind == "error":
                    detail = message.get("error") or message.get("message") or message.get("title") or ""
                    raise ServiceError(
                        f"{SERVICE} error (status {message.get('status_code', '?')}): {str(detail)[:200]}"
                    )
                if kind == "chunk":
                    hold.audio(decode_pcm(message.get("data"), o.encoding, SERVICE))
                elif kind == "timestamps":
                    words = _words(message, o.sample_rate)
                    hold.words(words)
                    if words:
                        hold.known(words[-1].end)
                elif kind == "done" or message.get("done") is True:
                    break
                elif not isinstance(kind, str):
                    raise ServiceError(f"{SERVICE} sent a message that is not the protocol: {sorted(message)[:5]}")
                for chunk in hold.release():
                    yield chunk
            if hold.received == 0:
                raise ServiceError(f"{SERVICE} finished without sending any audio")
            for chunk in hold.release(final=True):
                yield chunk
        finally:
            await ws.close()
