"""PCM helpers: mono mix-down, streaming resampling, WAV read/write, PCM16 conversion, chunking."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import InputError
from .types import AudioChunk, Float32Array

__all__ = [
    "to_mono",
    "pcm16_to_float",
    "float_to_pcm16",
    "Resampler",
    "resample",
    "read_audio",
    "AudioTooLargeError",
    "AudioTooLongError",
    "MAX_CHANNELS",
    "write_wav",
    "wav_bytes",
    "split_chunks",
    "resample_stream",
    "iter_chunks",
]

MAX_RATE = 384_000
MAX_CHANNELS = 64
"""Most channels a file may declare; more is refused from the header (mixed down to mono anyway)."""


class AudioTooLargeError(InputError):
    """An audio file whose header declares more decoded data than the caller's limit allows."""

    code = "too_large"


class AudioTooLongError(AudioTooLargeError):
    """An audio file whose header declares a longer duration than the caller's limit allows."""

    code = "too_long"


def to_mono(pcm: np.ndarray) -> Float32Array:
    """Average the channels of ``pcm`` (frames x channels, or 1-D) into float32 mono."""
    arr = np.asarray(pcm)
    if arr.ndim == 2:
        arr = arr.mean(axis=1)
    elif arr.ndim != 1:
        raise InputError(f"audio must be 1-D or frames x channels, got shape {arr.shape}")
    if arr.dtype == np.int16:
        return (arr.astype(np.float32) / 32768.0).astype(np.float32)
    return arr.astype(np.float32, copy=False)


def pcm16_to_float(data: bytes, channels: int = 1) -> Float32Array:
    """Little-endian interleaved PCM16 bytes -> float32 mono."""
    if channels < 1:
        raise InputError("channels must be at least 1")
    if len(data) % (2 * channels):
        raise InputError(f"PCM16 data of {len(data)} bytes is not a whole number of {channels}-channel frames")
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return samples.astype(np.float32, copy=False)


def float_to_pcm16(pcm: np.ndarray, channels: int = 1) -> bytes:
    """float32 mono -> little-endian PCM16 bytes, duplicated to ``channels`` interleaved channels."""
    ints = (np.clip(np.asarray(pcm, dtype=np.float32), -1.0, 1.0) * 32767.0).round().astype("<i2")
    if channels > 1:
        ints = np.repeat(ints, channels)
    return ints.tobytes()


def _check_rate(rate: int) -> None:
    if not (1000 <= rate <= MAX_RATE):
        raise InputError(f"sample rate {rate} Hz is out of range (1000-{MAX_RATE})")


class Resampler:
    """Streaming resampler (soxr): feed chunks of any size, get the resampled stream with no seams.

    Call :meth:`flush` once at the end to get the resampler's tail.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        _check_rate(in_rate)
        _check_rate(out_rate)
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = None if in_rate == out_rate else soxr.ResampleStream(in_rate, out_rate, 1, "float32")

    def process(self, pcm: np.ndarray, last: bool = False) -> Float32Array:
        data = np.ascontiguousarray(pcm, dtype=np.float32)
        if self._stream is None:
            return data
        out: Float32Array = self._stream.resample_chunk(data, last=last)
        return out

    def flush(self) -> Float32Array:
        return self.process(np.zeros(0, dtype=np.float32), last=True)


def resample(pcm: np.ndarray, in_rate: int, out_rate: int) -> Float32Array:
    """Resample a whole signal (float32 mono)."""
    _check_rate(in_rate)
    _check_rate(out_rate)
    data = np.ascontiguousarray(pcm, dtype=np.float32)
    if in_rate == out_rate:
        return data
    out: Float32Array = soxr.resample(data, in_rate, out_rate).astype(np.float32, copy=False)
    return out


def read_audio(
    source: str | Path | bytes, max_decoded_bytes: int | None = None, max_seconds: float | None = None
) -> tuple[Float32Array, int]:
    """Read an audio file (path or bytes; WAV, FLAC, OGG...) as float32 mono at its own rate.

    The header is checked before anything is decoded: its rate must be within 1000-384000 Hz and its channels
    within 1-64 (else :class:`InputError`), and with ``max_decoded_bytes`` its frames x channels x 4 bytes
    (float32, as decoded) must fit the limit (else :class:`AudioTooLargeError`), so a small compressed file
    cannot expand into gigabytes; with ``max_seconds`` its duration must fit too (else
    :class:`AudioTooLongError`). Decoding never reads past the frames the header declares.

    Raises :class:`InputError` with the reason when it cannot be decoded or holds no samples.
    """
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    if not isinstance(source, bytes):
        path = Path(source)
        if not path.exists():
            raise InputError(f"audio file not found: {name}")
        if path.is_dir():
            raise InputError(f"{name} is a folder, not an audio file")
    try:
        with sf.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else source) as handle:
            rate, channels, frames = int(handle.samplerate), int(handle.channels), int(handle.frames)
            _check_rate(rate)
            if not 1 <= channels <= MAX_CHANNELS:
                raise InputError(f"audio {name} declares {channels} channels; at most {MAX_CHANNELS} are accepted")
            if max_seconds is not None and frames > max_seconds * rate:
                raise AudioTooLongError(f"audio {name} is {frames / rate:.0f} s long; the limit is {max_seconds:g} s")
            if max_decoded_bytes is not None and frames * channels * 4 > max_decoded_bytes:
                raise AudioTooLargeError(
                    f"audio {name} declares {frames} frames x {channels} channels at {rate} Hz "
                    f"({frames / rate:.0f} s), {frames * channels * 4 / 2**20:,.0f} MB once decoded; the limit "
                    f"is {max_decoded_bytes / 2**20:,.0f} MB"
                )
            data = handle.read(frames=max(frames, 0), dtype="float32", always_2d=True)
    except FileNotFoundError as exc:
        raise InputError(f"audio file not found: {name}") from exc
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, MemoryError) as exc:
        if isinstance(exc, InputError):
            raise
        why = re.sub(r"<_io\.\w+ object at 0x[0-9a-f]+>", "the bytes", str(exc))  # no object address
        raise InputError(f"cannot decode audio {name}: {why}") from exc
    if len(data) == 0:
        raise InputError(f"audio {name} holds no samples")
    return to_mono(data), rate


def write_wav(path: str | Path, pcm: np.ndarray, rate: int) -> None:
    """Write float32 mono as a mono PCM16 WAV file."""
    sf.write(str(path), np.clip(np.asarray(pcm, dtype=np.float32), -1.0, 1.0), rate, subtype="PCM_16")


def wav_bytes(pcm: np.ndarray, rate: int) -> bytes:
    """Encode float32 mono as the bytes of a mono PCM16 WAV file."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(pcm, dtype=np.float32), -1.0, 1.0), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def split_chunks(pcm: np.ndarray, rate: int, chunk_ms: float = 20.0) -> Iterator[AudioChunk]:
    """Cut a signal into consecutive :class:`AudioChunk` of ``chunk_ms`` (the last may be shorter)."""
    step = max(1, int(rate * chunk_ms / 1000))
    for start in range(0, len(pcm), step):
        yield AudioChunk(np.ascontiguousarray(pcm[start : start + step], dtype=np.float32), rate, start)


async def iter_chunks(pcm: np.ndarray, rate: int, chunk_ms: float = 20.0) -> AsyncIterator[AudioChunk]:
    """Async version of :func:`split_chunks`, for feeding a whole file to a streaming role."""
    for chunk in split_chunks(pcm, rate, chunk_ms):
        yield chunk


async def resample_stream(chunks: AsyncIterable[AudioChunk], out_rate: int) -> AsyncIterator[AudioChunk]:
    """Resample a chunk stream to ``out_rate``; offsets are recomputed on the output clock.

    The input's rate is taken from its first chunk; a later chunk at another rate is an :class:`InputError`.
    """
    resampler: Resampler | None = None
    produced = 0
    async for chunk in chunks:
        if resampler is None:
            resampler = Resampler(chunk.rate, out_rate)
        elif chunk.rate != resampler.in_rate:
            raise InputError(f"audio stream changed rate from {resampler.in_rate} to {chunk.rate} Hz")
        out = resampler.process(chunk.pcm)
        if len(out):
            yield AudioChunk(out, out_rate, produced)
            produced += len(out)
    if resampler is not None:
        tail = resampler.flush()
        if len(tail):
            yield AudioChunk(tail, out_rate, produced)
