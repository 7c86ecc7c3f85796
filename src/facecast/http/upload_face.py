"""Animating an uploaded audio file (``/audio_to_blendshapes``) without holding up the live sessions.

An upload may be long (29 minutes of audio pass the limits), so its animation must not keep the event loop.
With the learned model the whole request (decoding, animation, the JSON answer) is :func:`render_upload`, run
in a bulk process at a lower CPU priority (:mod:`.bulk`); in a thread (:func:`animate_audio`) its model runs in
blocks of seconds (onnxruntime lets go of the GIL while it computes); any other audio-driven animator is fed
100 ms at a time with the loop handed back in between.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..aio import closing
from ..audio import split_chunks
from ..errors import ServiceError
from ..face.learned import LearnedAnimator
from ..protocol import neurosync as wire
from ..roles import FaceAnimator
from ..types import FACE_WIDTH, FaceFrames, Float32Array, SpeechChunk, frames_for_samples
from .neurosync_io import decode_audio

__all__ = ["UploadJob", "animate_audio", "render_upload", "stream_file"]


async def _speech(pcm: Float32Array, rate: int) -> AsyncIterator[SpeechChunk]:
    for chunk in split_chunks(pcm, rate, chunk_ms=100.0):
        yield SpeechChunk(chunk)
        # A long upload is animated 100 ms at a time with the event loop free in between: the live sessions
        # are served while a 30-minute file is animated, instead of waiting for all of it (seconds of CPU).
        await asyncio.sleep(0)


async def animate_audio(face: FaceAnimator, pcm: Float32Array, rate: int, frames: int | None = None) -> Float32Array:
    """Animate bare audio (no phoneme timing): exactly ``frames`` frames (default
    ``frames_for_samples(len(pcm), rate)``).

    Raises :class:`ServiceError` if the animator's frames are not contiguous from frame 0. Frames it
    does not deliver are held from its last one; frames past ``frames`` are dropped.
    """
    expected = frames_for_samples(len(pcm), rate) if frames is None else frames
    if isinstance(face, LearnedAnimator):  # local and synchronous: off the event loop, in long blocks
        return await asyncio.to_thread(_render_learned, face, pcm, rate, expected)
    out = np.zeros((expected, FACE_WIDTH), np.float32)
    filled = 0
    async with closing(face.animate(_speech(pcm, rate))) as blocks:
        async for block in blocks:
            filled = _place(out, block, filled)
    return _hold_last(out, filled)


_LEARNED_BLOCK_S = 5.0
"""Seconds of audio per push when the learned model animates an upload in a worker thread: long enough that
its model runs in onnxruntime (which lets go of the GIL) rather than step by step in numpy on the event loop
(~1 ms of the loop per 100 ms of audio: 18 s for a 29-minute upload), short enough to bound the memory."""


def _render_learned(face: LearnedAnimator, pcm: Float32Array, rate: int, expected: int) -> Float32Array:
    """Blocking: ``pcm`` through the learned model's synchronous stream, as :meth:`LearnedAnimator.animate`
    would animate it (to float rounding)."""
    out = np.zeros((expected, FACE_WIDTH), np.float32)
    filled = 0
    state = face.stream()
    step = max(1, int(rate * _LEARNED_BLOCK_S))
    for start in range(0, len(pcm), step):
        block = state.push(pcm[start : start + step], rate)
        if block is not None:
            filled = _place(out, block, filled)
    block = state.end()
    if block is not None:
        filled = _place(out, block, filled)
    return _hold_last(out, filled)


def _place(out: Float32Array, block: FaceFrames, filled: int) -> int:
    if block.start != filled:
        raise ServiceError(f"the face animator sent frame {block.start} where {filled} was due")
    take = block.values[: max(0, len(out) - block.start)]
    out[block.start : block.start + len(take)] = take
    return block.end


def _hold_last(out: Float32Array, filled: int) -> Float32Array:
    if 0 < filled < len(out):
        out[filled:] = out[filled - 1]
    return out


@dataclass(frozen=True, slots=True)
class UploadJob:
    """What a bulk process needs to answer one ``/audio_to_blendshapes`` request (it pickles)."""

    body: bytes
    min_seconds: float
    max_decoded_bytes: int
    pcm_rate: int | None
    model: str | None
    """The learned model's description (``mouth.json``); None: the shipped one."""
    finish: bool
    """Whether NeuroSync's finish (:func:`~facecast.protocol.neurosync.neurosync_finish`) is applied."""
    emotion_scale: float


_ANIMATORS: dict[str | None, LearnedAnimator] = {}
"""A bulk process's learned animators by model, loaded on its first job and kept for the next."""

_WRITE_ROWS = 4096
"""Frames encoded and written at a time: the answer is never whole in memory."""


def render_upload(job: UploadJob) -> str:
    """Blocking, in a bulk process: decode, animate and encode the answer into a new temporary file; its path.

    Raises :class:`~.neurosync_io.ApiError` for audio it refuses, as the server would."""
    pcm, rate = decode_audio(job.body, job.min_seconds, job.max_decoded_bytes, job.pcm_rate)
    face = _ANIMATORS.get(job.model)
    if face is None:
        face = _ANIMATORS[job.model] = LearnedAnimator(job.model, threads=1)
    frames = _render_learned(face, pcm, rate, wire.neurosync_frame_count(len(pcm), rate))
    del pcm
    if job.finish:
        frames = wire.neurosync_finish(frames)
    fd, path = tempfile.mkstemp(prefix="facecast-upload-", suffix=".json")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(b'{"blendshapes":[')
            for start in range(0, len(frames), _WRITE_ROWS):
                if start:
                    out.write(b",")
                out.write(wire.frames_json(frames[start : start + _WRITE_ROWS], job.emotion_scale)[1:-1])
            out.write(b"]}")
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise
    return path


def remove_file(path: str) -> None:
    """Delete a file a bulk job wrote (its request was cancelled)."""
    Path(path).unlink(missing_ok=True)


_READ_BYTES = 1 << 20


async def stream_file(path: str) -> tuple[AsyncIterator[bytes], int]:
    """The bytes of a file a bulk job wrote, read 1 MiB at a time, and its size. The file is unlinked at once
    (its space is freed when the stream is closed, finished or not), so no answer is left behind on disk."""
    handle = await asyncio.to_thread(open, path, "rb")
    try:
        size = os.fstat(handle.fileno()).st_size
    finally:
        os.unlink(path)

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while chunk := await asyncio.to_thread(handle.read, _READ_BYTES):
                yield chunk
        finally:
            handle.close()

    return chunks(), size
