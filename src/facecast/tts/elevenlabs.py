"""ElevenLabs streaming voices over their WebSocket "stream-input" API, with character alignment.

What this client follows (ElevenLabs' public API reference, "Text to Speech / WebSocket",
``GET /v1/text-to-speech/{voice_id}/stream-input``):

* URL ``{base_url}/v1/text-to-speech/{voice_id}/stream-input?model_id=...&output_format=pcm_<rate>
  &sync_alignment=true``; the key goes in the ``xi-api-key`` header (never in the URL, never logged).
  ``output_format`` ``pcm_16000`` / ``pcm_22050`` / ``pcm_24000`` / ``pcm_44100`` is raw little-endian PCM16.
* Client messages, in this order: the initial message ``{"text": " ", "voice_settings": {...},
  "generation_config": {"chunk_length_schedule": [...]}}``; then the text (ending with a space) with
  ``"flush": true`` (generate now: the whole sentence is already here); then ``{"text": ""}``, which ends the
  input and makes the service finish and close.
* Server messages: JSON objects. Audio ones carry ``audio`` (base64 PCM) and ``alignment`` /
  ``normalizedAlignment`` (``chars``, ``charStartTimesMs``, ``charDurationsMs``; some messages spell the last
  ``charsDurationsMs``, both are read), times in ms from the start of THAT message's audio. The last message
  has ``"isFinal": true`` (its ``audio`` may be null). An error is a message with ``error`` / ``message``
  (e.g. ``{"message": ..., "error": "invalid_input_message", "code": 1008}``), usually followed by a close
  with code 1008 and a reason.

Timing: ``normalizedAlignment`` is preferred (numbers and symbols spelled out as they are spoken, which is what
grapheme-to-phoneme needs), else ``alignment``. Characters become words at whitespace
(:class:`facecast.tts.aligned.CharacterWords`), and an audio chunk is held back only until the word that
started in it is complete (the next whitespace, or the end). The registered provider wraps this TTS in
:class:`facecast.tts.aligned.WordTimedTTS`, which turns the words into phonemes for the phonetic face.

Errors (all :class:`ServiceError`, so a failover list moves on): a refused key (HTTP 401/403 at the handshake,
or an error frame / 1008 close saying so), rate or connection limit (HTTP 429: :class:`BusyError`), no frame
within ``timeout`` (stall), a frame that is not the protocol (garbage), and a close before ``isFinal``.
A missing key is a :class:`ConfigError` when the provider is built.

Tested against ``tests/servers/elevenlabs_server.py``, an implementation of this documented protocol for tests
(not the service): nothing here has been run against api.elevenlabs.io from this project.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from ..errors import InputError, ServiceError
from ..types import SpeechChunk
from .aligned import CharacterWords
from .cloudws import WordHold, api_key, decode_pcm, open_socket, receive_json, send_json
from .neural import clean_text

__all__ = ["ElevenLabsOptions", "ElevenLabsTTS", "RATES", "KEY_VARIABLES", "MAX_TEXT_CHARS"]

RATES = (16000, 22050, 24000, 44100)
"""The PCM output rates of the API (``output_format=pcm_<rate>``)."""
KEY_VARIABLES = ("FACECAST_TTS_ELEVENLABS_API_KEY", "ELEVENLABS_API_KEY")
"""Environment variables read for the key, in this order, when the options carry none."""
MAX_TEXT_CHARS = 5000
"""Longest text one :meth:`ElevenLabsTTS.synthesize` call sends (speak sentence by sentence)."""
SERVICE = "ElevenLabs"


@dataclass(frozen=True, slots=True)
class ElevenLabsOptions:
    """Settings of :class:`ElevenLabsTTS` (``[tts.elevenlabs]``, ``FACECAST_TTS_ELEVENLABS_*``).

    ``voice_id`` (``--tts elevenlabs:VOICE_ID``), ``model_id``, ``sample_rate`` (one of :data:`RATES`),
    ``api_key`` (empty: :data:`KEY_VARIABLES`; never logged), ``base_url`` (``wss://`` or ``ws://``, e.g. a
    local protocol server), ``timeout`` (seconds for the connection and between frames), ``stability`` and
    ``similarity_boost`` (the voice settings, 0-1), ``g2p_voice`` (the espeak-ng voice that turns the words into
    phonemes, e.g. ``en-us``, ``en-gb``, ``de``).
    """

    voice_id: str = "21m00Tcm4TlvDq8ikWAM"
    model_id: str = "eleven_flash_v2_5"
    sample_rate: int = 24000
    api_key: str = field(default="", repr=False)
    base_url: str = "wss://api.elevenlabs.io"
    timeout: float = 10.0
    stability: float = 0.5
    similarity_boost: float = 0.8
    g2p_voice: str = "en-us"

    def __post_init__(self) -> None:
        if self.sample_rate not in RATES:
            raise InputError(f"ElevenLabs sample_rate must be one of {RATES}, got {self.sample_rate!r}")
        if not self.voice_id.strip() or "/" in self.voice_id:
            raise InputError(f"ElevenLabs voice_id must be a voice ID, got {self.voice_id!r}")
        if not self.base_url.lower().startswith(("ws://", "wss://")):
            raise InputError(f"ElevenLabs base_url must start with ws:// or wss://, got {self.base_url!r}")
        if not 0.1 <= self.timeout <= 300:
            raise InputError(f"ElevenLabs timeout must be from 0.1 to 300 s, got {self.timeout!r}")
        for name in ("stability", "similarity_boost"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"ElevenLabs {name} must be from 0 to 1, got {getattr(self, name)!r}")


def _key(options: ElevenLabsOptions) -> str:
    return api_key(options.api_key, KEY_VARIABLES, "elevenlabs")


def _alignment(message: dict[str, object]) -> tuple[list[str], list[float], list[float]] | None:
    """``(chars, starts_ms, durations_ms)`` of an audio message, or None when it has none; garbage raises."""
    found = message.get("normalizedAlignment") or message.get("alignment")
    if found is None:
        return None
    if not isinstance(found, dict):
        raise ServiceError(f"{SERVICE} sent an alignment that is not an object")
    chars = found.get("chars")
    starts = found.get("charStartTimesMs")
    durations = found.get("charDurationsMs", found.get("charsDurationsMs"))
    if not (isinstance(chars, list) and isinstance(starts, list) and isinstance(durations, list)):
        raise ServiceError(f"{SERVICE} sent an alignment without chars, charStartTimesMs and charDurationsMs")
    if not (len(chars) == len(starts) == len(durations)):
        raise ServiceError(f"{SERVICE} sent an alignment whose lists differ in length")
    if not all(isinstance(c, str) for c in chars) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in [*starts, *durations]
    ):
        raise ServiceError(f"{SERVICE} sent an alignment with invalid values")
    return chars, [float(v) for v in starts], [float(v) for v in durations]


class ElevenLabsTTS:
    """An ElevenLabs voice with word timing (module docstring); implements :class:`~facecast.roles.TextToSpeech`.

    One WebSocket connection per :meth:`synthesize` call. Raises :class:`ConfigError` without a key.
    """

    def __init__(self, options: ElevenLabsOptions | None = None) -> None:
        self._options = options or ElevenLabsOptions()
        self._key = _key(self._options)

    @property
    def sample_rate(self) -> int:
        return self._options.sample_rate

    @property
    def options(self) -> ElevenLabsOptions:
        return self._options

    def __repr__(self) -> str:
        return f"ElevenLabsTTS({self._options!r})"

    def url(self) -> str:
        """The stream-input URL for these options (it holds no key)."""
        o = self._options
        query = urlencode({"model_id": o.model_id, "output_format": f"pcm_{o.sample_rate}", "sync_alignment": "true"})
        base = o.base_url.rstrip("/")
        return f"{base}/v1/text-to-speech/{quote(o.voice_id, safe='')}/stream-input?{query}"

    def messages(self, text: str) -> list[dict[str, object]]:
        """The client messages for ``text``, in order (module docstring)."""
        o = self._options
        return [
            {
                "text": " ",
                "voice_settings": {"stability": o.stability, "similarity_boost": o.similarity_boost},
                "generation_config": {"chunk_length_schedule": [120, 160, 250, 290]},
            },
            {"text": text.strip() + " ", "flush": True},
            {"text": ""},
        ]

    async def synthesize(self, text: str) -> AsyncGenerator[SpeechChunk, None]:
        """Speak ``text`` (module docstring). Raises :class:`InputError` for empty or oversized text and
        :class:`ServiceError` when the service refuses, stalls, sends garbage or closes early."""
        cleaned = clean_text(text, MAX_TEXT_CHARS)
        o = self._options
        rate = o.sample_rate
        ws = await open_socket(self.url(), {"xi-api-key": self._key}, o.timeout, SERVICE)
        try:
            for message in self.messages(cleaned):
                await send_json(ws, message, SERVICE)
            hold = WordHold(rate)
            grouper = CharacterWords()
            while True:
                message = await receive_json(ws, o.timeout, SERVICE)
                if message.get("error") or (message.get("message") and "audio" not in message):
                    detail = str(message.get("message") or "")[:200]
                    raise ServiceError(f"{SERVICE} error {str(message.get('error') or '')[:80]!r}: {detail}")
                audio = message.get("audio")
                if audio is not None:
                    offset = hold.audio(decode_pcm(audio, "pcm_s16le", SERVICE))
                    found = _alignment(message)
                    if found is not None:
                        chars, starts, durations = found
                        begin = [offset + round(s * rate / 1000) for s in starts]
                        end = [offset + round((s + d) * rate / 1000) for s, d in zip(starts, durations, strict=True)]
                        hold.words(grouper.feed(chars, begin, end))
                        opened = grouper.open_start
                        hold.known(opened if opened is not None else max([hold.received, *end]))
                    for chunk in hold.release():
                        yield chunk
                elif not message.get("isFinal") and not any(k in message for k in ("alignment", "normalizedAlignment")):
                    raise ServiceError(f"{SERVICE} sent a message that is not the protocol: {sorted(message)[:5]}")
                if message.get("isFinal"):
                    break
            hold.words(grouper.finish())
            if hold.received == 0:
                raise ServiceError(f"{SERVICE} finished without sending any audio")
            for chunk in hold.release(final=True):
                yield chunk
        finally:
            await ws.close()
