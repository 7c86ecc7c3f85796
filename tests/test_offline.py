"""Takes made offline (``say``, ``chat``, ``animate``): with the live animation layer they move like a take recorded
live (blinks, gaze, head, emotion), reproducibly from a seed; without it they hold the animator's frames only."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from facecast.face.arkit import INDEX
from facecast.face.phonetic import PhoneticAnimator
from facecast.offline import IdleLayer, add_idle, animate, say
from facecast.takefolder import read_session
from facecast.tts.espeak import EspeakTTS
from facecast.types import FaceFrames, SpeechChunk, frames_for_samples

SEVEN_SECONDS = (
    "The harbour is quiet tonight, and the lamps along the old stone wall are burning low. "
    "We should find the boat before the tide turns."
)
"""About seven seconds of espeak-ng speech: the layer's first blink comes within six seconds, whatever the seed."""

UPPER_FACE = ["EyeBlinkLeft", "EyeBlinkRight", "BrowInnerUp", "EyeLookDownLeft", "EyeLookInLeft"]
HEAD = ["HeadYaw", "HeadPitch", "HeadRoll"]


def columns(values: np.ndarray, names: list[str]) -> np.ndarray:
    return values[:, [INDEX[name] for name in names]]


async def test_a_say_take_with_the_idle_layer_blinks_and_moves_its_head() -> None:
    plain = await say(SEVEN_SECONDS, EspeakTTS(), PhoneticAnimator())
    layered = add_idle(plain, IdleLayer(seed=11))
    assert len(plain.audio) / plain.rate > 6.5
    assert layered.seed == 11 and plain.seed is None
    assert layered.audio is plain.audio
    assert len(layered.face) == len(plain.face) == frames_for_samples(len(plain.audio), plain.rate)

    # without the layer the upper face and the head are frozen: exactly 0 on every frame
    assert not columns(plain.face, UPPER_FACE + HEAD).any()
    # with it: blinks (the lids close fully, then open again), gaze, and a head that keeps moving
    blink = layered.face[:, INDEX["EyeBlinkLeft"]]
    closed = np.flatnonzero(blink > 0.9)
    assert len(closed) and blink[closed[0] :].min() < 0.1 and blink[: closed[0]].min() < 0.1
    assert layered.face[:, INDEX["EyeBlinkRight"]].max() > 0.9
    head = columns(layered.face, HEAD)
    assert (np.ptp(head, axis=0) > 1e-3).all()  # degrees / 180: over 0.18 degrees of motion on each axis
    assert (np.abs(np.diff(head, axis=0)) < 0.01).all()  # smooth: no frame jumps by 1.8 degrees
    # the speech itself is unchanged once blended in (0.15 s)
    np.testing.assert_allclose(layered.face[12:, INDEX["JawOpen"]], plain.face[12:, INDEX["JawOpen"]], atol=1e-6)
    assert layered.face[:, INDEX["Neutral"]].min() == 1.0  # no emotion asked for


async def test_the_seed_makes_a_take_reproducible() -> None:
    take = await say("Good evening, traveller.", EspeakTTS(), PhoneticAnimator())
    one, again, other = (
        add_idle(take, IdleLayer(seed=5)),
        add_idle(take, IdleLayer(seed=5)),
        add_idle(take, IdleLayer(6)),
    )
    np.testing.assert_array_equal(one.face, again.face)
    assert not np.array_equal(one.face, other.face)
    fresh = await say("Good evening, traveller.", EspeakTTS(), PhoneticAnimator(), idle=IdleLayer())
    assert fresh.seed is not None and fresh.seed not in (5, 6)
    assert columns(fresh.face, HEAD).any() and not columns(take.face, HEAD).any()


async def test_emotion_tags_steer_the_layer() -> None:
    take = await say("[happy] What a lovely morning it is today.", EspeakTTS(), PhoneticAnimator(), idle=IdleLayer(3))
    assert take.emotions == [(0, "happy")]
    happy = take.face[:, INDEX["Happy"]]
    assert happy[0] < 0.1 and happy[-1] > 0.95  # eased toward the tag's emotion
    assert take.face[-1, INDEX["MouthSmileLeft"]] > 0.3  # and the face shows it


class SteadyFace:
    """An audio-driven fake: JawOpen 0.5 on every frame, nothing else."""

    async def animate(self, speech: AsyncIterable[SpeechChunk]) -> AsyncIterator[FaceFrames]:
        samples = rate = done = 0
        async for chunk in speech:
            samples, rate = chunk.audio.end, chunk.audio.rate
            ready = samples * 60 // rate
            if ready > done:
                yield FaceFrames(done, self.frames(ready - done))
                done = ready
        final = frames_for_samples(samples, rate)
        if final > done:
            yield FaceFrames(done, self.frames(final - done))

    @staticmethod
    def frames(n: int) -> np.ndarray:
        out = np.zeros((n, 68), np.float32)
        out[:, INDEX["JawOpen"]] = 0.5
        return out


async def test_animate_with_and_without_the_layer() -> None:
    pcm = np.zeros(16000 * 7, np.float32)
    plain = await animate(pcm, 16000, SteadyFace())
    layered = await animate(pcm, 16000, SteadyFace(), idle=IdleLayer(seed=2))
    assert len(plain.face) == len(layered.face) == 420
    assert not columns(plain.face, UPPER_FACE + HEAD).any() and (plain.face[:, INDEX["JawOpen"]] == 0.5).all()
    assert layered.face[:, INDEX["EyeBlinkLeft"]].max() > 0.9
    assert (np.ptp(columns(layered.face, HEAD), axis=0) > 1e-3).all()
    assert np.allclose(layered.face[20:, INDEX["JawOpen"]], 0.5)


def facecast(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "facecast.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )


def test_the_say_command_adds_the_layer_unless_told_not_to(tmp_path: Path) -> None:
    on, off = tmp_path / "on", tmp_path / "off"
    common = ("--tts", "espeak", "--face", "phonetic")
    result = facecast("say", SEVEN_SECONDS, *common, "--seed", "4", "--out", str(on))
    assert result.returncode == 0, result.stderr
    assert "idle layer seed 4" in result.stdout
    assert facecast("say", SEVEN_SECONDS, *common, "--no-idle", "--out", str(off)).returncode == 0
    layered, plain = read_session(on).values, read_session(off).values
    assert layered[:, INDEX["EyeBlinkLeft"]].max() > 0.9 and (np.ptp(columns(layered, HEAD), axis=0) > 1e-3).all()
    assert not columns(plain, UPPER_FACE + HEAD).any()


@pytest.mark.parametrize("flag", ["--idle", "--no-idle"])
def test_the_take_options_are_on_say_chat_and_animate(flag: str) -> None:
    from facecast.cli import build_parser

    parser = build_parser()
    for argv in (
        ["say", "hi", "--out", "x"],
        ["chat", "--text", "hi", "--out", "x"],
        ["animate", "a.wav", "--out", "x"],
    ):
        args = parser.parse_args([*argv, flag, "--seed", "9"])
        assert args.idle is (flag == "--idle") and args.seed == 9
    assert parser.parse_args(["say", "hi", "--out", "x"]).idle is True  # on by default: takes are for playback
