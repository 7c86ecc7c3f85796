"""NeuroSync-compatible HTTP endpoints, so a NeuroSync Player or script keeps working unchanged.

* ``POST /audio_to_blendshapes``: raw audio file bytes -> ``{"blendshapes": N x 68}``, 60 frames per second
  of audio, from the server's audio-driven animator;
* ``POST /transcribe``: ``{"audio_base64", "return_timestamps"}`` (or raw audio bytes) ->
  ``{"status": "success", "transcription", "timestamps"}``;
* ``POST /generate_speech``: ``{"text", "voice"}`` -> ``audio/wav``;
* ``POST /synthesize_and_blendshapes``: ``{"text", "voice"}`` -> ``multipart/mixed;
  boundary=MY_BOUNDARY_STRING``, the WAV then the frames as a JSON list (animated like ``facecast say``);
* ``POST /get_embedding``: ``{"text"}`` -> ``{"embedding": [...]}`` (``embeddings`` extra);
* ``POST /process_image``: an image -> ``{"caption"}`` (``images`` extra + a local model; off by default);
* ``POST /process_clip``: an image (+ labels) -> CLIP scores and image embedding (likewise).

Endpoint groups switch on and off like NeuroSync's ``ENABLE_*_ENDPOINTS`` flags (see
:class:`NeuroSyncOptions`); a switched-off endpoint answers 404 naming the setting. Every error is JSON,
``{"status": "error", "code", "message"}`` (plus ``"hint"`` when something can be installed): 400 for a
malformed or empty body, 413 for a body over the limit (or audio whose header declares more than the
decode limits), 415 for a wrong content type, 422 for a well-formed request that cannot be used
(too-short audio, invalid fields), 501 for a feature that is not installed or configured, 503 when a
service fails, or when the server is at a limit: all slots of the endpoint's kind (audio, speech, models)
or all speech recognisers (``max_recognisers``) are busy (with ``Retry-After``). The token (401), ``Host`` and
``Origin`` rules are applied in front of every route by :mod:`facecast.http.security`. The value
conventions and the multipart layout are in :mod:`facecast.protocol.neurosync`.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from ..config import Settings
from ..errors import ConfigError, FacecastError, InputError
from ..face.learned import LearnedAnimator
from ..offline import say, transcribe_pcm
from ..protocol import neurosync as wire
from ..roles import FaceAnimator, SpeechToText, TextToSpeech
from ..services import Services
from ..types import Float32Array
from .bulk import BulkWorkers
from .extras.embeddings import Embedder, can_load, load_embedder
from .extras.images import Captioner, ClipScorer, load_captioner, load_clip
from .neurosync_io import (
    MAX_AUDIO_SECONDS,
    MAX_DECODED_BYTES,
    MB,
    ApiError,
    EmbeddingRequest,
    ErrorBody,
    Handler,
    ImageRequest,
    SpeechRequest,
    TranscribeRequest,
    decode_audio,
    decode_base64,
    guarded,
    is_audio_type,
    is_json_type,
    media_type,
    parse_json,
    raw_pcm_rate,
    read_body,
    too_large,
    unsupported,
)
from .upload_face import UploadJob, animate_audio, remove_file, render_upload, stream_file

__all__ = [
    "NeuroSyncOptions",
    "NeuroSyncBackends",
    "Lazy",
    "ApiError",
    "neurosync_router",
    "animate_audio",
    "preload",
    "MAX_AUDIO_SECONDS",
]

T = TypeVar("T")

log = logging.getLogger("facecast.http.neurosync")

_VOICE_CACHE = 16


# ------------------------------------------------------------------------------------------ configuration


@dataclass(frozen=True, slots=True)
class NeuroSyncOptions:
    """What the router serves and accepts. ``max_upload_bytes`` bounds audio and image bodies; JSON bodies
    with base64 audio may be 4/3 of it; text-only JSON bodies ``max_text_bytes``. At most ``max_decodes``
    audio requests are decoded and processed at once (each may hold up to ``max_decoded_bytes`` of PCM);
    more answer 503 with ``Retry-After``; so do speech requests past ``max_decodes`` syntheses at once, and
    embedding or image requests past as many model runs. The access token is checked in front of the router
    (:mod:`facecast.http.security`)."""

    audio: bool = True
    tts: bool = True
    embedding: bool = True
    image: bool = False
    max_upload_bytes: int = 256 * MB
    """Enough for a 10-minute take at 88.2 kHz, stereo PCM16 (202 MB); NeuroSync sets no limit."""
    max_text_bytes: int = MB
    min_audio_seconds: float = wire.MIN_AUDIO_SECONDS
    max_decodes: int = 2
    max_decoded_bytes: int = MAX_DECODED_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> NeuroSyncOptions:
        return cls(
            audio=settings.neurosync_audio_endpoints,
            tts=settings.neurosync_tts_endpoints,
            embedding=settings.neurosync_embedding_endpoints,
            image=settings.neurosync_image_endpoints,
            max_upload_bytes=max(1, int(settings.neurosync_max_upload_mb * MB)),
            max_decodes=max(1, settings.neurosync_max_jobs),
        )


class Lazy(Generic[T]):
    """A value built on first use, off the event loop, once; a failure to build is kept and re-raised."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._value: T | None = None
        self._error: FacecastError | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def ready(cls, value: T) -> Lazy[T]:
        lazy: Lazy[T] = cls(lambda: value)
        lazy._value = value
        return lazy

    async def get(self) -> T:
        """The value; raises what the factory raised (a :class:`FacecastError`), now and on every later call."""
        async with self._lock:
            if self._value is None and self._error is None:
                try:
                    self._value = await asyncio.to_thread(self._factory)
                except FacecastError as exc:
                    self._error = exc
            if self._error is not None:
                raise self._error
            assert self._value is not None
            return self._value


@dataclass(slots=True)
class NeuroSyncBackends:
    """The models behind the endpoints. ``speech_face`` animates TTS output (with phoneme timing), as in
    ``facecast say``; ``audio_face`` animates bare audio; ``tts_for_voice`` gives the TTS for a requested
    voice (raising :class:`InputError` for one it does not know); ``closest_voice`` the TTS and a note for a
    Kokoro voice name it does not know (:func:`facecast.protocol.neurosync.closest_voice`), or None."""

    stt: SpeechToText
    tts: TextToSpeech
    speech_face: FaceAnimator
    audio_face: Lazy[FaceAnimator]
    embedder: Lazy[Embedder]
    captioner: Lazy[Captioner]
    clip: Lazy[ClipScorer]
    tts_for_voice: Callable[[str], TextToSpeech] | None = None
    voices: dict[str, TextToSpeech] = field(default_factory=dict)
    closest_voice: Callable[[str], tuple[TextToSpeech, str | None] | None] | None = None
    notes: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def from_services(cls, settings: Settings, services: Services) -> NeuroSyncBackends:
        """Backends sharing ``services``; the embedder and image models load on first use.

        ``/audio_to_blendshapes`` uses ``settings.neurosync_face`` when set, else ``services.audio_face``
        (the configured face when it is audio-driven, e.g. ``neurosync:model.pth``, else the learned model).
        """
        from ..services import make_face, make_tts, remote_urls, resolve

        audio_spec = settings.neurosync_face.strip()
        audio_face: Lazy[FaceAnimator]
        if not audio_spec and services.audio_face is not None:
            audio_face = Lazy.ready(services.audio_face)  # the configured face if audio-driven, else learned
        elif audio_spec and audio_spec.lower() == settings.face.strip().lower():
            audio_face = Lazy.ready(services.face)
        else:
            audio_face = Lazy(functools.partial(make_face, audio_spec or "learned", settings))

        def tts_for_voice(voice: str) -> TextToSpeech:
            if remote_urls(settings.tts):
                raise ConfigError("voices can be chosen per request only with a local TTS")
            provider, _ = resolve("tts", settings.tts)
            return make_tts(f"{provider.name}:{voice}", settings)

        def closest_voice(name: str) -> tuple[TextToSpeech, str | None] | None:
            if remote_urls(settings.tts):
                return None
            choice = wire.closest_voice(name, resolve("tts", settings.tts)[0].name, _installed_tts)
            if choice is None:
                return None
            try:
                return make_tts(choice.tts, settings), choice.note
            except (InputError, ConfigError):
                return None

        return cls(
            stt=services.stt,
            tts=services.tts,
            speech_face=services.face,
            audio_face=audio_face,
            embedder=Lazy(functools.partial(load_embedder, settings.embedding_model)),
            captioner=Lazy(functools.partial(load_captioner, settings.caption_model)),
            clip=Lazy(functools.partial(load_clip, settings.clip_model)),
            tts_for_voice=tts_for_voice,
            closest_voice=closest_voice,
        )

    def voice(self, name: str | None) -> tuple[TextToSpeech, str | None]:
        """The TTS for ``name`` and a note when another voice speaks: the closest shipped voice for a Kokoro
        name (``af_bella``), else the default voice for an unknown name (both are logged)."""
        if not name or self.tts_for_voice is None:
            return self.tts, None
        if name not in self.voices:
            note: str | None = None
            try:
                tts = self.tts_for_voice(name)
            except (InputError, ConfigError) as exc:
                closest = self.closest_voice(name) if self.closest_voice is not None else None
                if closest is None:
                    warning = f"voice {name!r} is not available here ({exc}); the default voice was used"
                    log.warning("%s", warning)
                    return self.tts, warning
                tts, note = closest
                if note:
                    log.info("%s", note)
            if len(self.voices) >= _VOICE_CACHE:
                self.notes.pop(next(iter(self.voices)), None)
                self.voices.pop(next(iter(self.voices)))
            self.voices[name] = tts
            self.notes[name] = note
        return self.voices[name], self.notes.get(name)


def _installed_tts(name: str) -> bool:
    from ..services import resolve

    try:
        return resolve("tts", name)[0].installed()
    except ConfigError:
        return False


async def preload(backends: NeuroSyncBackends, settings: Settings) -> str | None:
    """Load now what the switched-on endpoints would load on first use, so that no request waits for it: the
    embedding model, when its extra is installed (loading it takes seconds; NeuroSync's Player gives up on
    ``/get_embedding`` after 10). Returns a line for the start-up log, or None when nothing was to load. A model
    that fails to load is not an error here: its endpoint answers 501 with the reason."""
    if not settings.neurosync_embedding_endpoints or not can_load(settings.embedding_model):
        return None
    started = time.monotonic()
    try:
        embedder = await backends.embedder.get()
    except FacecastError as exc:
        return f"embedding model not loaded ({exc}); /get_embedding answers 501"
    took = time.monotonic() - started
    return f"embedding model {embedder.name} ({embedder.dimensions} dimensions) ready in {took:.1f} s"


# ---------------------------------------------------------------------------------------------- the work


def _finishes_like_neurosync(face: FaceAnimator) -> bool:
    """The NeuroSync model's animator already zeroes and eases its frames (easing twice would be wrong)."""
    from ..face.neurosync import NeuroSyncAnimator

    return isinstance(face, NeuroSyncAnimator)


def _emotion_scale(face: FaceAnimator) -> float:
    """What brings ``face``'s emotions to NeuroSync's scale (a NeuroSync model's are on it already)."""
    return 1.0 if _finishes_like_neurosync(face) else wire.EMOTION_SCALE


def _wav_response(wav: bytes, headers: dict[str, str]) -> Response:
    return Response(wav, media_type="audio/wav", headers=headers)


def _voice_headers(tts: TextToSpeech, warning: str | None) -> dict[str, str]:
    headers = {}
    voice = getattr(tts, "voice", None)
    if not isinstance(voice, str):  # hibari and Piper keep it in their options
        voice = getattr(getattr(tts, "options", None), "voice", None)
    if isinstance(voice, str):
        headers["X-Facecast-Voice"] = voice.encode("ascii", "replace").decode()
    if warning:
        headers["X-Facecast-Warning"] = warning.encode("ascii", "replace").decode()[:300]
    return headers


# ------------------------------------------------------------------------------------------------ router


def _schema(model: type[BaseModel], *raw: str) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": model.model_json_schema()}}
    for media in raw:
        content[media] = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"required": True, "content": content}}


_RAW_AUDIO = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "audio/wav": {"schema": {"type": "string", "format": "binary"}},
}}}  # fmt: skip

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "malformed or empty body"), (401, "missing or wrong access token"), (413, "body over the size limit"),
        (415, "wrong Content-Type"), (422, "unusable input"), (501, "feature not installed or configured"),
        (503, "a service failed, or the server is busy (see Retry-After)"),
    )
}  # fmt: skip


def neurosync_router(
    options: NeuroSyncOptions, backends: Callable[[], NeuroSyncBackends], bulk: BulkWorkers | None = None
) -> APIRouter:
    """The NeuroSync endpoints. ``backends`` is called per request (it may build and cache them lazily).
    With ``bulk``, an upload the learned model animates is decoded, animated and encoded in its processes
    (:mod:`.bulk`: at a lower CPU priority than the live sessions); without, in the server's threads."""
    router = APIRouter(tags=["NeuroSync-compatible"])
    upload = options.max_upload_bytes
    b64_upload = upload * 4 // 3 + 64 * 1024
    drain_cap = max(b64_upload, 16 * MB) * 2

    decoding = asyncio.Semaphore(max(1, options.max_decodes))
    speaking = asyncio.Semaphore(max(1, options.max_decodes))
    modelling = asyncio.Semaphore(max(1, options.max_decodes))

    @asynccontextmanager
    async def slot(slots: asyncio.Semaphore, what: str) -> AsyncIterator[None]:
        """One of ``max_decodes`` slots for ``what``, or 503 at once (no unbounded queue of waiting work)."""
        if slots.locked():
            raise ApiError(
                503,
                "busy",
                f"{options.max_decodes} {what} are being processed; retry shortly",
                headers={"Retry-After": "1"},
            )
        async with slots:
            yield

    def decode_slot() -> AbstractAsyncContextManager[None]:
        """A slot for decoding and processing an audio body."""
        return slot(decoding, "audio requests")

    async def decode(body: bytes, min_seconds: float, pcm_rate: int | None = None) -> tuple[Float32Array, int]:
        return await asyncio.to_thread(decode_audio, body, min_seconds, options.max_decoded_bytes, pcm_rate)

    def route(path: str, group: str, enabled: bool, summary: str, **extra: Any) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                if not enabled:
                    setting = f"neurosync_{group}_endpoints"
                    raise ApiError(
                        404,
                        "endpoint_disabled",
                        f"{path} is switched off on this server",
                        f"enable it with the setting {setting} = true (environment: FACECAST_{setting.upper()}=1)",
                    )
                return await handler(request)

            endpoint.__name__ = handler.__name__
            endpoint.__doc__ = handler.__doc__
            responses = {**_ERRORS, **extra.pop("responses", {})}
            router.add_api_route(
                path,
                guarded(endpoint, drain_cap),
                methods=["POST"],
                summary=summary,
                include_in_schema=enabled,
                responses=responses,
                **extra,
            )
            return handler

        return register

    @route(
        "/audio_to_blendshapes", "audio", options.audio, "Audio file -> 60 fps ARKit frames", openapi_extra=_RAW_AUDIO
    )
    async def audio_to_blendshapes(request: Request) -> Response:
        """The body is an audio file's bytes (WAV, FLAC, OGG...; any rate, channels are mixed down), sent as
        ``application/octet-stream`` or ``audio/*`` (no Content-Type, text, forms: 415). Answers
        ``{"blendshapes": [[68 values], ...]}``: NeuroSync's frame count (60 per second, rounded up, and one
        more for audio of an exact multiple of 1/60 s), values 0-60 in [0, 1] with blinks, eye look, tongue and
        rotations zeroed and the first 6 frames eased in, emotions 61-67 on NeuroSync's scale (~0-100). Audio
        under ~83 ms is refused (422). A body that is no audio file is raw 16-bit mono PCM, as for NeuroSync:
        at 22050 Hz, or the rate in ``?sample_rate=`` or the ``X-Sample-Rate`` header."""
        media = media_type(request)
        if not is_audio_type(media):
            raise unsupported(media, "the audio file's bytes as application/octet-stream or audio/*")
        pcm_rate = raw_pcm_rate(request)
        body = await read_body(request, upload, "audio")
        async with decode_slot():
            try:
                face: FaceAnimator | None = await backends().audio_face.get()
            except ConfigError as exc:
                face, missing = None, exc
            if bulk is not None and isinstance(face, LearnedAnimator):  # all of it in a bulk process
                job = UploadJob(
                    body, options.min_audio_seconds, options.max_decoded_bytes, pcm_rate, face.source, True,
                    wire.EMOTION_SCALE,
                )  # fmt: skip
                del body
                path = await bulk.run(render_upload, job, abandoned=remove_file)
                chunks, size = await stream_file(path)
                return StreamingResponse(chunks, media_type="application/json", headers={"Content-Length": str(size)})
            pcm, rate = await decode(body, options.min_audio_seconds, pcm_rate)
            del body
            if face is None:
                raise ApiError(
                    501,
                    "not_available",
                    f"no audio-driven face animator is available: {missing}",
                    "configure an audio-driven animator: --face learned or --face "
                    "neurosync:PATH/model.pth, or the setting neurosync_face (FACECAST_NEUROSYNC_FACE)",
                ) from None
            frames = await animate_audio(face, pcm, rate, wire.neurosync_frame_count(len(pcm), rate))
            del pcm
            if not _finishes_like_neurosync(face):
                frames = wire.neurosync_finish(frames)
            payload = await asyncio.to_thread(wire.blendshapes_json, frames, _emotion_scale(face))
        return Response(payload, media_type="application/json")

    @route(
        "/transcribe",
        "audio",
        options.audio,
        "Speech to text",
        openapi_extra=_schema(TranscribeRequest, "application/octet-stream", "audio/wav"),
    )
    async def transcribe(request: Request) -> Response:
        """JSON ``{"audio_base64": ..., "return_timestamps": false}`` as NeuroSync's Player sends it, or the raw
        audio bytes. Answers ``{"status": "success", "transcription": ..., "timestamps": [...]}``; timestamps
        (when asked for) are one segment ``{"start", "end", "text"}`` spanning the audio."""
        media = media_type(request)
        timestamps = False
        if is_audio_type(media):
            audio = await read_body(request, upload, "audio")
        elif is_json_type(media):
            parsed = parse_json(await read_body(request, b64_upload, "request body"), TranscribeRequest)
            if not parsed.audio_base64.strip():
                raise ApiError(400, "empty_audio", "audio_base64 is empty: no audio data provided")
            audio = decode_base64(parsed.audio_base64, "audio_base64")
            timestamps = parsed.return_timestamps
        else:
            raise unsupported(media, "application/json with audio_base64, or the audio file's bytes")
        async with decode_slot():
            pcm, rate = await decode(audio, 0.0)
            del audio
            text = (await transcribe_pcm(pcm, rate, backends().stt)).strip()
        result: dict[str, Any] = {"status": "success", "transcription": text}
        if timestamps:
            result["timestamps"] = [{"start": 0.0, "end": round(len(pcm) / rate, 3), "text": text}] if text else []
        return JSONResponse(result)

    async def speak(request: Request) -> tuple[Any, dict[str, str]]:
        if not is_json_type(media_type(request)):
            raise unsupported(media_type(request), 'application/json such as {"text": "Hello"}')
        parsed = parse_json(await read_body(request, options.max_text_bytes, "request body"), SpeechRequest)
        if not parsed.text.strip():
            raise ApiError(400, "empty_text", "no text provided: the text is empty")
        current = backends()
        tts, warning = current.voice(parsed.voice)
        async with slot(speaking, "speech requests"):
            utterance = await say(parsed.text, tts, current.speech_face, rate=wire.TTS_RATE)  # NeuroSync's rate
        return utterance, _voice_headers(tts, warning)

    @route(
        "/generate_speech",
        "tts",
        options.tts,
        "Text to speech (WAV)",
        openapi_extra=_schema(SpeechRequest),
        response_class=Response,
        responses={200: {"content": {"audio/wav": {}}}},
    )
    async def generate_speech(request: Request) -> Response:
        """JSON ``{"text": ..., "voice": ...}`` -> a mono PCM16 WAV at 24000 Hz (NeuroSync's rate, whatever the
        TTS's own). Kokoro voice names speak with the closest shipped voice (the ``X-Facecast-Warning`` header
        says which); other unknown names with the default voice."""
        utterance, headers = await speak(request)
        return _wav_response(wire.player_safe_wav(utterance.audio, utterance.rate), headers)

    @route(
        "/synthesize_and_blendshapes",
        "tts",
        options.tts,
        "Text to speech + face frames (multipart)",
        openapi_extra=_schema(SpeechRequest),
        responses={200: {"content": {wire.MULTIPART_CONTENT_TYPE: {}}}},
    )
    async def synthesize_and_blendshapes(request: Request) -> Response:
        """JSON ``{"text": ..., "voice": ...}`` -> ``multipart/mixed; boundary=MY_BOUNDARY_STRING`` with the WAV
        (``audio/wav``) then the frames (``application/json``, a list of 68-value lists, one per 1/60 s of
        the audio), animated from the TTS's phoneme timing like ``facecast say``."""
        utterance, headers = await speak(request)
        wav = wire.player_safe_wav(utterance.audio, utterance.rate)
        frames = await asyncio.to_thread(wire.frames_json, utterance.face, _emotion_scale(backends().speech_face))
        return Response(wire.encode_multipart(wav, frames), headers=headers, media_type=wire.MULTIPART_CONTENT_TYPE)

    @route("/get_embedding", "embedding", options.embedding, "Text embedding", openapi_extra=_schema(EmbeddingRequest))
    async def get_embedding(request: Request) -> Response:
        """JSON ``{"text": ...}`` -> ``{"embedding": [...], "dimensions": n, "model": name}``, unit length."""
        if not is_json_type(media_type(request)):
            raise unsupported(media_type(request), 'application/json such as {"text": "Hello"}')
        parsed = parse_json(await read_body(request, options.max_text_bytes, "request body"), EmbeddingRequest)
        if not parsed.text.strip():
            raise ApiError(400, "empty_text", "no text provided: the text is empty")
        async with slot(modelling, "embedding and image requests"):
            embedder = await backends().embedder.get()
            vectors = await asyncio.to_thread(embedder.embed, [parsed.text])
        return JSONResponse(
            {
                "embedding": [round(float(v), 7) for v in vectors[0]],
                "dimensions": embedder.dimensions,
                "model": embedder.name,
            }
        )

    async def image_request(request: Request) -> ImageRequest:
        media = media_type(request)
        if media.startswith("image/") or media == "application/octet-stream":
            data = await read_body(request, upload, "image")
            return ImageRequest(image_base64=base64.b64encode(data).decode())
        if media in ("", "text/plain"):
            text = (await read_body(request, b64_upload, "request body")).decode("utf-8", "replace").strip()
            if text.startswith("{"):
                return parse_json(text.encode(), ImageRequest)
            return ImageRequest(image_base64=text)
        if is_json_type(media):
            return parse_json(await read_body(request, b64_upload, "request body"), ImageRequest)
        raise unsupported(media, "image bytes (image/*), a base64 text body, or JSON with image_base64")

    def image_bytes(parsed: ImageRequest) -> bytes:
        encoded = parsed.image_base64 or parsed.image or ""
        if not encoded.strip():
            raise ApiError(400, "empty_body", "no image provided")
        data = decode_base64(encoded, "the image")
        if len(data) > upload:
            raise too_large("image", upload)
        return data

    @route(
        "/process_image",
        "image",
        options.image,
        "Image caption",
        openapi_extra=_schema(ImageRequest, "image/png", "image/jpeg"),
    )
    async def process_image(request: Request) -> Response:
        """An image (raw bytes, a base64 text body, or JSON ``{"image_base64", "prompt"}``) ->
        ``{"caption": ...}`` from the local captioning model."""
        parsed = await image_request(request)
        data = image_bytes(parsed)
        async with slot(modelling, "embedding and image requests"):
            captioner = await backends().captioner.get()
            caption = await asyncio.to_thread(captioner.caption, data, parsed.prompt)
        return JSONResponse({"caption": caption, "model": captioner.name})

    @route(
        "/process_clip",
        "image",
        options.image,
        "CLIP labels and image embedding",
        openapi_extra=_schema(ImageRequest, "image/png", "image/jpeg"),
    )
    async def process_clip(request: Request) -> Response:
        """An image (as for ``/process_image``) with optional ``labels`` -> ``{"labels": [{"label", "score"}],
        "best_label", "image_embedding"}`` (scores are softmax probabilities; the embedding is unit length)."""
        parsed = await image_request(request)
        data = image_bytes(parsed)
        async with slot(modelling, "embedding and image requests"):
            clip = await backends().clip.get()
            result = await asyncio.to_thread(clip.score, data, tuple(parsed.labels))
        return JSONResponse(
            {
                "labels": [
                    {"label": label, "score": score} for label, score in zip(result.labels, result.scores, strict=True)
                ],
                "best_label": result.best,
                "image_embedding": [round(float(v), 7) for v in result.image_embedding],
                "model": clip.name,
            }
        )

    return router
