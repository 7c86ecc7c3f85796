"""Request and error plumbing of the NeuroSync endpoints (:mod:`facecast.http.neurosync`).

Bodies are read with a byte limit (413 past it, judged from ``Content-Length`` when sent, else while
reading); an error answer first drains what is left of the body (up to a cap) so that a client still
writing its upload reads the answer instead of a reset connection. Request JSON is validated with the
pydantic models below (which also document the endpoints in ``/docs``).
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError
from starlette.requests import ClientDisconnect

from ..audio import AudioTooLargeError, pcm16_to_float, read_audio
from ..errors import BusyError, ConfigError, FacecastError, InputError, ServiceError
from ..protocol import jsonlimits
from ..protocol.neurosync import PCM_RATE, is_container
from ..types import Float32Array
from .extras import ExtraUnavailable
from .extras.images import ImageDecodeError

__all__ = [
    "MB",
    "MAX_AUDIO_SECONDS",
    "MAX_DECODED_BYTES",
    "ApiError",
    "ErrorBody",
    "Handler",
    "RequestBody",
    "TranscribeRequest",
    "SpeechRequest",
    "EmbeddingRequest",
    "ImageRequest",
    "from_facecast",
    "drain",
    "guarded",
    "media_type",
    "read_body",
    "too_large",
    "is_audio_type",
    "is_json_type",
    "unsupported",
    "parse_json",
    "decode_base64",
    "decode_audio",
    "raw_pcm_rate",
    "MIN_RATE",
    "MAX_RATE",
]

log = logging.getLogger("facecast.http.neurosync")

MB = 1 << 20

MAX_AUDIO_SECONDS = 30 * 60
"""Longest audio the endpoints decode (a compressed file under the byte limit can hold hours)."""

MIN_RATE, MAX_RATE = 1000, 384_000
"""Sample rates a request may declare for raw PCM (those every decoder here accepts)."""

MAX_DECODED_BYTES = 512 * MB
"""Most float32 data one uploaded audio file may decode to (frames x channels x 4), judged from its header
before decoding: a 10-minute 88.2 kHz stereo take (404 MB), about 46 minutes of 48 kHz mono."""

_AUDIO_TYPES = ("application/octet-stream", "application/ogg")
"""Besides ``audio/*``. No Content-Type, ``text/plain``, forms and multipart are refused: those are what any
web page can send to another site without asking (a "simple" request); NeuroSync's Player sends
``application/octet-stream``."""


class ApiError(Exception):
    """An answer other than 200, as JSON ``{"status": "error", "code", "message"[, "hint"][, "errors"]}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        hint: str = "",
        errors: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.hint = hint
        self.errors = errors
        self.headers = headers or {}

    def __reduce__(self) -> tuple[Any, ...]:  # an error raised in a bulk process comes back whole
        return (type(self), (self.status, self.code, self.message, self.hint, self.errors, self.headers))

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"status": "error", "code": self.code, "message": self.message}
        if self.hint:
            body["hint"] = self.hint
        if self.errors is not None:
            body["errors"] = self.errors
        headers = {"WWW-Authenticate": "Bearer", **self.headers} if self.status == 401 else self.headers
        return JSONResponse(body, status_code=self.status, headers=headers or None)


class ErrorBody(BaseModel):
    status: str = "error"
    code: str
    message: str
    hint: str | None = None


def from_facecast(exc: FacecastError) -> ApiError:
    """The answer for an error a Facecast component raised: 501 not installed/configured, 422 unusable
    input, 503 a failing service, or a busy one (with ``Retry-After``)."""
    if isinstance(exc, ExtraUnavailable):
        return ApiError(501, "not_available", exc.reason, exc.hint)
    if isinstance(exc, ConfigError):
        return ApiError(501, "not_available", str(exc))
    if isinstance(exc, ImageDecodeError):
        return ApiError(400, exc.code, str(exc))
    if isinstance(exc, InputError):
        return ApiError(422, "bad_input", str(exc))
    if isinstance(exc, BusyError):
        return ApiError(503, "busy", str(exc), headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, ServiceError):
        return ApiError(503, "service_unavailable", str(exc))
    return ApiError(500, exc.code, str(exc))


async def drain(request: Request, cap: int) -> None:
    """Read and drop what is left of the body (up to ``cap`` bytes) so the client can read the answer."""
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > cap:
                return
    except (RuntimeError, ClientDisconnect):
        return  # already consumed, or the client went away


Handler = Callable[[Request], Awaitable[Response]]


def guarded(handler: Handler, drain_cap: int) -> Handler:
    @functools.wraps(handler)
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            error = exc
        except FacecastError as exc:
            error = from_facecast(exc)
        except ClientDisconnect:
            return Response(status_code=400)
        except Exception:  # noqa: BLE001 - an unexpected bug still answers JSON, and is logged
            log.exception("NeuroSync endpoint %s failed", request.url.path)
            error = ApiError(500, "internal_error", "internal error while handling the request (see the server log)")
        await drain(request, drain_cap)
        return error.response()

    return run


# ------------------------------------------------------------------------------------------ request bodies


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, limit: int, what: str) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "bad_request", f"Content-Length {declared!r} is not a number") from None
        if size > limit:
            raise too_large(what, limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(what, limit)
    return bytes(body)


def too_large(what: str, limit: int) -> ApiError:
    return ApiError(
        413,
        "too_large",
        f"the {what} is over the limit of {limit / MB:.3g} MB",
        "the limit is the setting neurosync_max_upload_mb (FACECAST_NEUROSYNC_MAX_UPLOAD_MB)",
    )


def is_audio_type(media: str) -> bool:
    """``application/octet-stream``, ``application/ogg`` or ``audio/*``; not an empty (absent) type."""
    return media in _AUDIO_TYPES or media.startswith("audio/")


def is_json_type(media: str) -> bool:
    """``application/json`` or ``*/*+json``; not an empty (absent) type, which any page may send anywhere."""
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def unsupported(media: str, accepted: str) -> ApiError:
    return ApiError(415, "unsupported_media_type", f"Content-Type {media!r} is not accepted here; send {accepted}")


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TranscribeRequest(RequestBody):
    audio_base64: StrictStr = Field(description="the audio file (WAV, FLAC, OGG...), base64-encoded")
    return_timestamps: StrictBool = Field(default=False, description="also return timed segments")


class SpeechRequest(RequestBody):
    text: StrictStr = Field(description="what to say (up to 20,000 characters)")
    voice: StrictStr | None = Field(
        default=None,
        description="a voice of the configured TTS (hibari: heart; espeak-ng: en-gb+f3), or a Kokoro voice name "
        "(af_bella), which speaks with the closest voice shipped; other names: the default voice",
    )


class EmbeddingRequest(RequestBody):
    text: StrictStr = Field(description="the text to embed")


class ImageRequest(RequestBody):
    image_base64: StrictStr | None = Field(default=None, description="the image file, base64 (a data: URL is accepted)")
    image: StrictStr | None = Field(default=None, description="alias of image_base64")
    labels: list[StrictStr] = Field(default_factory=list, description="/process_clip: labels to score")
    prompt: StrictStr | None = Field(default=None, description="/process_image: the caption's first words")


M = TypeVar("M", bound=RequestBody)


def parse_json(body: bytes, model: type[M]) -> M:
    if not body.strip():
        raise ApiError(400, "empty_body", "the request body is empty; send a JSON object")
    try:
        data = jsonlimits.loads(body, max_bytes=len(body))  # the size was bounded when the body was read
    except jsonlimits.JsonLimitError as exc:
        raise ApiError(400, "bad_json", f"the request body is not valid JSON: {exc.message}") from None
    if not isinstance(data, dict):
        raise ApiError(422, "bad_input", "the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        fields = ", ".join(e["field"] or "body" for e in errors)
        raise ApiError(422, "bad_input", f"invalid request fields: {fields}", errors=errors) from None


def decode_base64(text: str, what: str) -> bytes:
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "bad_base64", f"{what} is not valid base64: {exc}") from None


def raw_pcm_rate(request: Request) -> int:
    """The sample rate of a raw PCM body: the query parameter ``sample_rate`` (or ``rate``), else the header
    ``X-Sample-Rate``, else NeuroSync's :data:`~facecast.protocol.neurosync.PCM_RATE`. 422 ``bad_input`` for a
    value that is not a whole number of Hz from :data:`MIN_RATE` to :data:`MAX_RATE`."""
    for where, value in (
        ("sample_rate", request.query_params.get("sample_rate")),
        ("rate", request.query_params.get("rate")),
        ("X-Sample-Rate", request.headers.get("x-sample-rate")),
    ):
        if value is None:
            continue
        text = value.strip()
        if not text.isdigit() or not MIN_RATE <= int(text) <= MAX_RATE:
            raise ApiError(
                422, "bad_input", f"{where} {value[:20]!r} is not a sample rate from {MIN_RATE} to {MAX_RATE} Hz"
            )
        return int(text)
    return PCM_RATE


def _decode_pcm16(data: bytes, rate: int, max_decoded_bytes: int) -> tuple[Float32Array, int]:
    """A body that is no audio file, read as NeuroSync reads it then: raw little-endian 16-bit mono PCM."""
    if len(data) % 2:
        raise ApiError(
            400,
            "bad_audio",
            f"the body is not an audio file, and its {len(data)} bytes are not whole 16-bit samples; send WAV, "
            "FLAC, OGG or another format libsndfile reads, or raw 16-bit mono PCM",
        )
    samples = len(data) // 2
    if samples > MAX_AUDIO_SECONDS * rate:
        raise ApiError(
            413,
            "too_long",
            f"the raw PCM is {samples / rate:.0f} s long at {rate} Hz; the limit is {MAX_AUDIO_SECONDS} s",
        )
    if samples * 4 > max_decoded_bytes:
        raise ApiError(
            413,
            "too_large",
            f"the raw PCM is {samples * 4 / MB:,.0f} MB once decoded; the limit is {max_decoded_bytes / MB:,.0f} MB",
            "send shorter audio or a lower sample rate",
        )
    return pcm16_to_float(data), rate


def decode_audio(
    data: bytes, min_seconds: float, max_decoded_bytes: int = MAX_DECODED_BYTES, pcm_rate: int | None = None
) -> tuple[Float32Array, int]:
    """Decode an audio file (blocking). Its header is judged before decoding: 413 ``too_long`` past
    :data:`MAX_AUDIO_SECONDS`, 413 ``too_large`` past ``max_decoded_bytes`` of float32 once decoded, 400
    ``bad_audio`` for what is not audio (or declares an unusable rate or channel count); 422 when too short.

    With ``pcm_rate``, a body that is not an audio container at all (no known file header, see
    :func:`~facecast.protocol.neurosync.is_container`) is read as raw 16-bit mono PCM at that rate, as NeuroSync
    does, under the same limits; a damaged file with a known header is still 400 ``bad_audio``."""
    if not data:
        raise ApiError(400, "empty_body", "the request body is empty; send the bytes of an audio file (e.g. WAV)")
    try:
        pcm, rate = read_audio(data, max_decoded_bytes=max_decoded_bytes, max_seconds=MAX_AUDIO_SECONDS)
    except AudioTooLargeError as exc:
        raise ApiError(
            413, exc.code, str(exc).replace("<bytes> ", ""), "send shorter audio, fewer channels or a lower sample rate"
        ) from None
    except InputError as exc:
        if pcm_rate is None or is_container(data):
            raise ApiError(400, "bad_audio", f"{exc}; send WAV, FLAC, OGG or another format libsndfile reads") from None
        pcm, rate = _decode_pcm16(data, pcm_rate, max_decoded_bytes)
    if len(pcm) < min_seconds * rate:
        raise ApiError(
            422,
            "audio_too_short",
            f"the audio is {len(pcm) / rate * 1000:.0f} ms long; at least "
            f"{min_seconds * 1000:.0f} ms are needed to animate it",
        )
    return pcm, rate
