"""An uploaded file's animation (``/audio_to_blendshapes``) with the learned model runs off the event loop, in
long blocks, and gives the frames of the streaming animation. Found by the soak (``facecast bench --soak``):
a 29-minute upload ran the model 100 ms at a time on the event loop, ~18 s of the loop per upload."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from facecast.face import learned
from facecast.face.learned import LearnedAnimator, MouthModel
from facecast.http.upload_face import animate_audio
from facecast.types import FaceFrames, Float32Array, SpeechChunk, frames_for_samples


def speech(seconds: float, rate: int) -> Float32Array:
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.3 * envelope * np.sin(2 * np.pi * 180 * t)).astype(np.float32)


async def streamed(face: LearnedAnimator, pcm: Float32Array, rate: int) -> Float32Array:
    from facecast.audio import split_chunks

    async def chunks():  # type: ignore[no-untyped-def]
        for chunk in split_chunks(pcm, rate, chunk_ms=100.0):
            yield SpeechChunk(chunk)

    blocks: list[FaceFrames] = [block async for block in face.animate(chunks())]
    return np.concatenate([b.values for b in blocks])


async def test_the_learned_model_animates_an_upload_off_the_loop_with_the_streamed_frames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    face = LearnedAnimator()
    pcm, rate = speech(12.0, 16_000), 16_000
    expected = await streamed(face, pcm, rate)

    threads: list[int] = []
    steps: list[int] = []
    run = MouthModel.run

    def recording(self: MouthModel, features: Float32Array, states: list[Float32Array]):  # type: ignore[no-untyped-def]
        threads.append(threading.get_ident())
        steps.append(len(features))
        return run(self, features, states)

    monkeypatch.setattr(MouthModel, "run", recording)
    frames = await animate_audio(face, pcm, rate)
    loop_thread = threading.get_ident()
    assert threads and loop_thread not in threads  # every model call ran in a worker thread
    assert max(steps) > learned._SMALL  # in long blocks (onnxruntime), not the 100 ms numpy steps
    assert frames.shape == (frames_for_samples(len(pcm), rate), 68)
    np.testing.assert_allclose(frames, expected[: len(frames)], atol=1e-4)

    longer = await animate_audio(face, pcm, rate, frames=len(frames) + 3)  # NeuroSync's count: the last held
    assert np.array_equal(longer[-3:], np.repeat(longer[-4:-3], 3, axis=0))
