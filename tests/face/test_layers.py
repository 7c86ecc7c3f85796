"""Animation layer: blinks, gaze, head, breathing, blending, emotion, and the emotion-tag parser."""

from __future__ import annotations

import numpy as np
import pytest

from facecast.face.arkit import EMOTION_NAMES, INDEX
from facecast.face.layers import EYE_LOOK_FULL_DEG, AnimationLayer, Emotion, LayerConfig
from facecast.text import parse_emotion_tags
from facecast.types import FACE_WIDTH, FPS

MINUTE = 60 * FPS


def idle(layer: AnimationLayer, seconds: float, t0: float = 0.0) -> np.ndarray:
    return layer.frames(t0, None, round(seconds * FPS))


def curve(frames: np.ndarray, name: str) -> np.ndarray:
    return np.asarray(frames[:, INDEX[name]])


def mouth_frames(count: int, **curves: float) -> np.ndarray:
    values = np.zeros((count, FACE_WIDTH), np.float32)
    for name, value in curves.items():
        values[:, INDEX[name]] = value
    return values


def events(signal: np.ndarray, threshold: float = 0.5) -> list[tuple[int, int]]:
    """(first, last+1) frame of each run where ``signal`` is above ``threshold``."""
    above = np.concatenate([[False], signal > threshold, [False]])
    edges = np.flatnonzero(np.diff(above.astype(int)))
    return list(zip(edges[::2], edges[1::2], strict=True))


# ----------------------------------------------------------------------------------------------- blinks


@pytest.mark.parametrize("seed", range(5))
def test_blinks_at_a_plausible_rate_and_close_the_eyes_fully(seed: int) -> None:
    frames = idle(AnimationLayer(seed), 60)
    left, right = curve(frames, "EyeBlinkLeft"), curve(frames, "EyeBlinkRight")
    blinks = events(left)
    assert 8 <= len(blinks) <= 32  # 2-6 s apart, some doubled: roughly 10-25 a minute
    for start, end in blinks:
        assert left[start:end].max() >= 0.999 and right[start:end].max() >= 0.999
        assert ((left[start:end] >= 0.999) & (right[start:end] >= 0.999)).any()  # shut together in one frame


def test_both_eyes_blink_together_with_a_tiny_asymmetry() -> None:
    frames = idle(AnimationLayer(7), 120)
    left, right = curve(frames, "EyeBlinkLeft"), curve(frames, "EyeBlinkRight")
    left_blinks, right_blinks = events(left), events(right)
    assert len(left_blinks) == len(right_blinks) > 10
    for (l0, _), (r0, _) in zip(left_blinks, right_blinks, strict=True):
        assert abs(int(l0) - int(r0)) <= 1
    assert np.abs(left - right).max() < 0.25
    assert not np.array_equal(left, right)


def test_blink_shape_closes_fast_and_opens_slower() -> None:
    frames = idle(AnimationLayer(3), 60)
    left = curve(frames, "EyeBlinkLeft")
    for start, end in events(left, 0.05):
        shape = left[start:end]
        peak = int(np.argmax(shape >= 0.999))
        closing = peak  # frames from first movement to fully shut
        opening = len(shape) - int(np.flatnonzero(shape >= 0.999)[-1])
        assert 3 <= closing <= 7  # 50-117 ms at 60 fps: a 70-100 ms close
        assert opening > closing


def test_double_blinks_happen_sometimes() -> None:
    frames = idle(AnimationLayer(11), 600)
    starts = np.array([start for start, _ in events(curve(frames, "EyeBlinkLeft"))])
    gaps = np.diff(starts) / FPS
    doubles = int((gaps < 0.6).sum())
    assert 3 <= doubles <= 0.4 * len(gaps)


# ----------------------------------------------------------------------------------------- gaze & head


@pytest.mark.parametrize("seed", range(4))
def test_saccades_stay_in_range_and_curves_agree_with_rotations(seed: int) -> None:
    frames = idle(AnimationLayer(seed), 120)
    looks = [f"EyeLook{d}{s}" for d in ("Down", "In", "Out", "Up") for s in ("Left", "Right")]
    for name in looks:
        assert 0.0 <= curve(frames, name).min() and curve(frames, name).max() <= 0.6
    yaw_deg = curve(frames, "LeftEyeYaw") * 180
    pitch_deg = curve(frames, "LeftEyePitch") * 180
    assert np.abs(yaw_deg).max() <= 18 and np.abs(pitch_deg).max() <= 12
    np.testing.assert_array_equal(yaw_deg, curve(frames, "RightEyeYaw") * 180)
    # EyeLook curves say the same as the eye rotations: + yaw = toward the character's left, + pitch = down.
    np.testing.assert_allclose(curve(frames, "EyeLookOutLeft"), np.maximum(yaw_deg, 0) / EYE_LOOK_FULL_DEG, atol=1e-5)
    np.testing.assert_allclose(curve(frames, "EyeLookInRight"), np.maximum(yaw_deg, 0) / EYE_LOOK_FULL_DEG, atol=1e-5)
    np.testing.assert_allclose(curve(frames, "EyeLookInLeft"), np.maximum(-yaw_deg, 0) / EYE_LOOK_FULL_DEG, atol=1e-5)
    np.testing.assert_allclose(
        curve(frames, "EyeLookDownRight"), np.maximum(pitch_deg, 0) / EYE_LOOK_FULL_DEG, atol=1e-5
    )
    # Saccades: the gaze mostly holds still, then jumps (several per minute).
    step = np.abs(np.diff(yaw_deg))
    assert np.median(step) < 0.1
    assert (step > 0.5).sum() >= 10


def test_the_eyes_hold_their_gaze_while_the_head_moves() -> None:
    still_gaze = LayerConfig(glance_chance=0.0, gaze_yaw=0.0, gaze_pitch=0.0)
    frames = idle(AnimationLayer(3, still_gaze), 30)
    head_yaw, head_pitch = curve(frames, "HeadYaw"), curve(frames, "HeadPitch")
    assert np.ptp(head_yaw) * 180 > 1.0  # the head does move...
    np.testing.assert_allclose(curve(frames, "LeftEyeYaw"), -head_yaw, atol=1e-6)  # ...and the eyes counter it
    np.testing.assert_allclose(curve(frames, "RightEyePitch"), -head_pitch, atol=1e-6)


def test_idle_face_is_never_frozen() -> None:
    frames = idle(AnimationLayer(5), 60)
    assert (np.abs(np.diff(frames, axis=0)).max(axis=1) > 0).all()  # every frame differs from the last
    for name in ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw"):
        assert np.ptp(curve(frames, name)) > 0.1 / 180  # more than a tenth of a degree of motion
    assert np.all(curve(frames, "Neutral") == 1.0)


def test_breathing_is_a_small_periodic_head_pitch() -> None:
    config = LayerConfig(head=0.0, glance_chance=0.0, gaze_yaw=0.0, gaze_pitch=0.0, breath=0.4, breath_period=4.0)
    pitch_deg = curve(idle(AnimationLayer(2, config), 60), "HeadPitch") * 180
    assert 0.35 < np.abs(pitch_deg).max() <= 0.4 + 1e-4
    crossings = int((np.diff(np.sign(pitch_deg)) != 0).sum())
    assert 2 * 60 / 4.4 - 1 <= crossings <= 2 * 60 / 3.6 + 1  # period 4 s +- 10 % (seeded variation)


def test_the_head_moves_more_while_speaking() -> None:
    still, talking = AnimationLayer(9), AnimationLayer(9)
    quiet = idle(still, 20)
    jaw = 0.3 + 0.2 * np.sin(np.arange(20 * FPS) / FPS * 2 * np.pi * 4)
    speech = mouth_frames(20 * FPS)
    speech[:, INDEX["JawOpen"]] = jaw
    loud = talking.frames(0.0, speech)

    def head_speed(frames: np.ndarray) -> float:
        return float(np.sqrt((np.diff(frames[:, INDEX["HeadYaw"] : INDEX["HeadYaw"] + 3], axis=0) ** 2).mean()))

    assert head_speed(loud) > 1.5 * head_speed(quiet)
    assert np.abs(loud[:, INDEX["HeadYaw"] : INDEX["HeadYaw"] + 3]).max() * 180 < 15


# ------------------------------------------------------------------------------------------ determinism


def _session(layer: AnimationLayer) -> np.ndarray:
    a = idle(layer, 3)
    layer.set_emotion(Emotion.HAPPY, 0.8)
    b = layer.frames(3.0, mouth_frames(90, JawOpen=0.4, MouthFunnel=0.2))
    c = idle(layer, 3, t0=4.5)
    return np.concatenate([a, b, c])


def test_same_seed_gives_identical_frames_and_another_seed_does_not() -> None:
    first, second, other = _session(AnimationLayer(42)), _session(AnimationLayer(42)), _session(AnimationLayer(43))
    assert np.array_equal(first, second)
    assert not np.array_equal(first, other)


def test_an_earlier_time_counts_as_the_previous_calls_time() -> None:
    # The Live Link pacer computes frames ahead; a discarded one can leave the layer up to a frame ahead of the
    # frame computed next. The layer never goes back: the same or an earlier time shows the same moment.
    layer = AnimationLayer(12)
    layer.set_emotion(Emotion.SURPRISED)
    idle(layer, 2)
    ahead = layer.frame(2.0, None)
    np.testing.assert_array_equal(layer.frame(2.0 - 0.5 / FPS, None), ahead)
    np.testing.assert_array_equal(layer.frame(2.0, None), ahead)
    speech = layer.frame(2.0 - 0.3 / FPS, mouth_frames(1, JawOpen=0.5)[0])  # an utterance took the frame over
    assert speech[INDEX["JawOpen"]] == ahead[INDEX["JawOpen"]]  # it starts blending in from the next frame
    later = layer.frames(2.0 + 1 / FPS, mouth_frames(30, JawOpen=0.5))
    assert np.abs(np.diff(np.concatenate([[speech], later])[:, INDEX["JawOpen"]])).max() <= 0.12
    assert later[-1, INDEX["JawOpen"]] > 0.5


def test_frames_matches_frame_by_frame_calls() -> None:
    a, b = AnimationLayer(1), AnimationLayer(1)
    block = a.frames(0.0, None, 120)
    single = np.stack([b.frame(k / FPS, None) for k in range(120)])
    assert np.array_equal(block, single)


# ---------------------------------------------------------------------------------------------- blending


def test_speech_blends_in_and_out_without_a_pop() -> None:
    layer = AnimationLayer(4)
    before = idle(layer, 1)
    speech = layer.frames(1.0, mouth_frames(60, JawOpen=0.6, MouthFunnel=0.3))
    after = idle(layer, 1, t0=2.0)
    jaw = np.concatenate([before, speech, after])[:, INDEX["JawOpen"]]
    steps = np.abs(np.diff(jaw))
    assert steps.max() <= 0.12  # a 0.6 jump spread over blend_in, eased: at most ~0.1 per frame
    assert speech[0, INDEX["JawOpen"]] <= 0.05
    assert speech[30:, INDEX["JawOpen"]] == pytest.approx(0.6, abs=1e-6)  # fully in after ~0.15 s
    assert after[0, INDEX["JawOpen"]] > 0.5  # the last speech frame fades, not snaps
    assert np.all(after[20:, INDEX["JawOpen"]] == 0.0)  # gone after blend_out


def test_speech_after_a_pause_in_the_calls_still_blends_in() -> None:
    layer = AnimationLayer(4)
    idle(layer, 1)
    speech = layer.frames(5.0, mouth_frames(30, JawOpen=0.6))  # nobody called the layer for 4 s
    assert speech[0, INDEX["JawOpen"]] == 0.0
    assert np.abs(np.diff(speech[:, INDEX["JawOpen"]])).max() <= 0.12


def test_mouth_closure_survives_emotion_and_head_motion() -> None:
    for emotion in (Emotion.SURPRISED, Emotion.FEARFUL, Emotion.DISGUSTED):
        layer = AnimationLayer(6)
        layer.set_emotion(emotion, 1.0)
        idle(layer, 2)
        closed = layer.frames(2.0, mouth_frames(60, JawOpen=0.35, MouthClose=0.35))  # lips shut on an open jaw
        for name in ("MouthFunnel", "MouthUpperUpLeft", "MouthLowerDownRight"):
            assert np.all(curve(closed[20:], name) == 0.0)
        np.testing.assert_allclose(curve(closed[20:], "JawOpen"), 0.35, atol=1e-6)
        np.testing.assert_allclose(curve(closed[20:], "MouthClose"), 0.35, atol=1e-6)
    # Without a closure the same emotion does open the jaw a little: the gate above is what held it.
    layer = AnimationLayer(6)
    layer.set_emotion(Emotion.SURPRISED, 1.0)
    idle(layer, 2)
    open_mouth = layer.frames(2.0, mouth_frames(60, JawOpen=0.35))
    assert curve(open_mouth[20:], "JawOpen").min() > 0.4


def test_output_is_clamped() -> None:
    layer = AnimationLayer(0)
    wild = mouth_frames(60)
    wild[:, :52] = 5.0
    wild[:, 52:61] = -3.0
    wild[30:, :52] = -2.0
    wild[40:, INDEX["HeadYaw"]] = np.nan
    wild[50:, INDEX["JawOpen"]] = np.inf
    out = layer.frames(0.0, wild)
    assert out[:, :52].min() >= 0.0 and out[:, :52].max() <= 1.0
    assert out[:, 52:61].min() >= -1.0 and out[:, 52:61].max() <= 1.0
    assert out[:, 61:].min() >= 0.0 and out[:, 61:].max() <= 1.0
    assert np.isfinite(out).all()
    assert np.abs(out[40:, INDEX["HeadYaw"]]).max() < 0.05  # a NaN head is not sent as a 180-degree turn


def test_speech_brow_scale_tames_model_brows() -> None:
    layer = AnimationLayer(0, LayerConfig(speech_brow_scale=0.6, speech_eye_wide_scale=0.4))
    out = layer.frames(0.0, mouth_frames(60, BrowInnerUp=0.5, EyeWideLeft=0.5))
    assert curve(out[-10:], "BrowInnerUp") == pytest.approx(0.3, abs=1e-6)
    assert curve(out[-10:], "EyeWideLeft").max() <= 0.2 + 1e-6


# ----------------------------------------------------------------------------------------------- emotion


def test_happy_raises_smile_and_the_happy_channel_gradually() -> None:
    layer = AnimationLayer(8)
    neutral = idle(layer, 1)
    assert np.all(curve(neutral, "Neutral") == 1.0) and np.all(curve(neutral, "Happy") == 0.0)
    layer.set_emotion(Emotion.HAPPY)
    happy = idle(layer, 2, t0=1.0)
    channel = np.concatenate([curve(neutral, "Happy")[-1:], curve(happy, "Happy")])
    assert np.all(np.diff(channel) >= 0) and np.abs(np.diff(channel)).max() < 0.1  # eases, no jump
    assert channel[-1] > 0.95 and curve(happy, "Neutral")[-1] < 0.05
    assert happy[-1, 61:].sum() == pytest.approx(1.0, abs=1e-5)
    for name in ("MouthSmileLeft", "MouthSmileRight"):
        assert curve(happy, name)[-1] > 0.45 > curve(neutral, name).max()
    assert curve(happy, "CheekSquintLeft")[-1] > 0.25


@pytest.mark.parametrize(
    ("emotion", "raised"),
    [
        (Emotion.SAD, ("MouthFrownLeft", "BrowInnerUp")),
        (Emotion.ANGRY, ("BrowDownLeft", "NoseSneerRight")),
        (Emotion.SURPRISED, ("BrowOuterUpLeft", "EyeWideRight", "JawOpen")),
        (Emotion.FEARFUL, ("EyeWideLeft", "MouthStretchLeft", "BrowInnerUp")),
        (Emotion.DISGUSTED, ("NoseSneerLeft", "MouthUpperUpRight")),
    ],
)
def test_each_emotion_shows_on_the_face_and_its_channel(emotion: Emotion, raised: tuple[str, ...]) -> None:
    layer = AnimationLayer(1)
    layer.set_emotion(emotion)
    frames = idle(layer, 3)
    last = frames[-1]
    assert EMOTION_NAMES[int(np.argmax(last[61:]))] == emotion.value.capitalize()
    for name in raised:
        assert last[INDEX[name]] > 0.08, name


def test_intensity_and_scheduled_emotions() -> None:
    layer = AnimationLayer(2)
    layer.set_emotion(Emotion.SAD, 0.5, at=1.0)
    frames = idle(layer, 4)
    assert np.all(curve(frames[:60], "Sad") == 0.0)  # not before t = 1
    assert curve(frames, "Sad")[-1] == pytest.approx(0.5, abs=0.01)
    assert curve(frames, "Neutral")[-1] == pytest.approx(0.5, abs=0.01)
    assert layer.emotion == (Emotion.SAD, 0.5)
    with pytest.raises(ValueError):
        layer.set_emotion(Emotion.HAPPY, 1.5)


def test_emotion_channels_map_to_frame_indices() -> None:
    assert [e.channel for e in sorted(Emotion, key=lambda e: e.channel)] == list(range(61, 68))
    assert Emotion.HAPPY.channel == INDEX["Happy"]


@pytest.mark.parametrize(
    ("text", "clean", "tags"),
    [
        ("[happy] Hello there.", "Hello there.", [(0, Emotion.HAPPY)]),
        ("I lost it [SAD] today.", "I lost it today.", [(10, Emotion.SAD)]),
        ("Wow[ Surprised ]!", "Wow!", [(3, Emotion.SURPRISED)]),
        ("Fine. [angry]", "Fine.", [(5, Emotion.ANGRY)]),
        ("[laughs] that is [1] odd", "[laughs] that is [1] odd", []),
        (
            "[fear]Run! [joy] [disgust] ew",
            "Run! ew",
            [(0, Emotion.FEARFUL), (5, Emotion.HAPPY), (5, Emotion.DISGUSTED)],
        ),
        ("[neutral]", "", [(0, Emotion.NEUTRAL)]),
        ("no tags at all", "no tags at all", []),
        ("[fearful] ok [Disgusted] no", "ok no", [(0, Emotion.FEARFUL), (3, Emotion.DISGUSTED)]),
    ],
)
def test_parse_emotion_tags(text: str, clean: str, tags: list[tuple[int, Emotion]]) -> None:
    assert parse_emotion_tags(text) == (clean, tags)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        LayerConfig(blink_interval=(6.0, 2.0))
    with pytest.raises(ValueError):
        LayerConfig(glance_chance=1.5)
    with pytest.raises(ValueError):
        LayerConfig(blend_in=0.0)
