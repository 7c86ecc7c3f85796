"""The animation layer: what the face does on top of the speaking mouth.

A face animator produces the speech frames (mouth and jaw curves, the rest about 0). :class:`AnimationLayer`
turns them, or nothing between utterances, into the final 68-value frame the character shows:

- idle blinks at random 2-6 s intervals (sometimes a double blink), a fast close (70-100 ms), a short hold
  fully closed, a slower open; both eyes together, the right a few milliseconds off the left;
- gaze: fixations near the listener with small random offsets, occasional glances away, joined by saccades
  whose duration grows with their size; EyeLook* curves and the eye yaw/pitch rotations always agree, and the
  eyes counter-rotate against head motion so the gaze stays put (as the vestibulo-ocular reflex does);
- head motion from slow smooth noise, larger while speaking, with a slight nod on open syllables and a slight
  turn toward where the eyes look; breathing as a small periodic head pitch;
- speech blend: the speech frames fade in over ``blend_in`` seconds when an utterance starts and the last one
  fades out over ``blend_out`` when it ends, so neither pops;
- emotion: an eased state over the 7 emotion channels (61-67) that also shapes the face (smile, frown, brows,
  sneer, wide eyes...). The emotions come from the reply's ``[happy]``-style tags
  (:func:`facecast.text.parse_emotion_tags`).

The layer never reopens a lip closure: while the speech frame has MouthClose up, nothing the layer adds
opens the jaw or the lips. Output curves 0-51 are clamped to [0, 1], rotations 52-60 to [-1, 1] (degrees/180),
emotions to [0, 1]. Everything random comes from the seed: the same seed and the same calls give identical
frames.

Angle conventions (ARKit's face frame: x toward the face's left, y up, z forward out of the face): positive
yaw turns toward the character's own left, positive pitch looks down. An EyeLook* curve of 1 is 30 degrees.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass

import numpy as np

from ..text import Emotion
from ..types import FACE_WIDTH, FPS, Float32Array
from .arkit import INDEX

__all__ = [
    "Emotion",
    "LayerConfig",
    "AnimationLayer",
    "EYE_LOOK_FULL_DEG",
]

EYE_LOOK_FULL_DEG = 30.0
"""Eye rotation, in degrees, at which an EyeLook* curve reaches 1."""


@dataclass(frozen=True, slots=True)
class LayerConfig:
    """How the layer animates. Times in seconds, angles in degrees; ranges are (low, high) of a uniform draw.

    ``speech_brow_scale`` and ``speech_eye_wide_scale`` scale those curves of the SPEECH frames only: 1 for
    the phonetic animator (it sets no brows); NeuroSync Player uses 0.6 and 0.4 to tame its model's brows.
    """

    blink_interval: tuple[float, float] = (2.0, 6.0)
    double_blink_chance: float = 0.15
    speaking_blink_rate: float = 1.3
    blink_close: tuple[float, float] = (0.07, 0.10)
    blink_hold: tuple[float, float] = (0.03, 0.05)
    blink_open: tuple[float, float] = (0.14, 0.22)
    fixation: tuple[float, float] = (0.6, 2.5)
    glance_chance: float = 0.2
    gaze_yaw: float = 10.0
    gaze_pitch: float = 6.0
    head: float = 1.5
    speaking_head_gain: float = 2.0
    breath_period: float = 4.2
    breath: float = 0.4
    blend_in: float = 0.15
    blend_out: float = 0.25
    emotion_ease: float = 0.35
    emotion_scale: float = 1.0
    speech_brow_scale: float = 1.0
    speech_eye_wide_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("blink_interval", "blink_close", "blink_hold", "blink_open", "fixation"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, got {(low, high)}")
        if self.blink_interval[0] <= 0 or self.fixation[0] <= 0:
            raise ValueError("blink_interval and fixation must be positive")
        for name in ("double_blink_chance", "glance_chance"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]")
        for name in ("blend_in", "blend_out", "emotion_ease", "breath_period", "speaking_blink_rate"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


# Emotion poses at full intensity: curve name -> weight (curves 0-51), and a head pitch in degrees.
_POSES: dict[Emotion, dict[str, float]] = {
    Emotion.HAPPY: {
        "MouthSmileLeft": 0.55, "MouthSmileRight": 0.55, "CheekSquintLeft": 0.35, "CheekSquintRight": 0.35,
        "EyeSquintLeft": 0.2, "EyeSquintRight": 0.2, "MouthDimpleLeft": 0.1, "MouthDimpleRight": 0.1,
        "BrowOuterUpLeft": 0.1, "BrowOuterUpRight": 0.1,
    },
    Emotion.SAD: {
        "MouthFrownLeft": 0.45, "MouthFrownRight": 0.45, "BrowInnerUp": 0.6, "BrowDownLeft": 0.1,
        "BrowDownRight": 0.1, "MouthShrugLower": 0.2, "MouthPressLeft": 0.1, "MouthPressRight": 0.1,
        "EyeSquintLeft": 0.1, "EyeSquintRight": 0.1,
    },
    Emotion.ANGRY: {
        "BrowDownLeft": 0.6, "BrowDownRight": 0.6, "NoseSneerLeft": 0.35, "NoseSneerRight": 0.35,
        "EyeSquintLeft": 0.25, "EyeSquintRight": 0.25, "MouthPressLeft": 0.2, "MouthPressRight": 0.2,
        "MouthFrownLeft": 0.15, "MouthFrownRight": 0.15, "JawForward": 0.05,
    },
    Emotion.SURPRISED: {
        "BrowInnerUp": 0.6, "BrowOuterUpLeft": 0.6, "BrowOuterUpRight": 0.6, "EyeWideLeft": 0.5,
        "EyeWideRight": 0.5, "JawOpen": 0.12, "MouthFunnel": 0.05,
    },
    Emotion.FEARFUL: {
        "BrowInnerUp": 0.55, "BrowOuterUpLeft": 0.2, "BrowOuterUpRight": 0.2, "BrowDownLeft": 0.1,
        "BrowDownRight": 0.1, "EyeWideLeft": 0.45, "EyeWideRight": 0.45, "MouthStretchLeft": 0.3,
        "MouthStretchRight": 0.3, "JawOpen": 0.05,
    },
    Emotion.DISGUSTED: {
        "NoseSneerLeft": 0.55, "NoseSneerRight": 0.55, "MouthUpperUpLeft": 0.3, "MouthUpperUpRight": 0.3,
        "BrowDownLeft": 0.3, "BrowDownRight": 0.3, "EyeSquintLeft": 0.2, "EyeSquintRight": 0.2,
        "CheekSquintLeft": 0.2, "CheekSquintRight": 0.2, "MouthFrownLeft": 0.15, "MouthFrownRight": 0.15,
    },
    Emotion.NEUTRAL: {},
}  # fmt: skip
_POSE_PITCH = {Emotion.SAD: 2.5, Emotion.ANGRY: 1.0, Emotion.SURPRISED: -1.5, Emotion.FEARFUL: -0.5}
_EMOTIONS = tuple(sorted(Emotion, key=lambda e: e.channel))
_POSE_MATRIX = np.zeros((len(_EMOTIONS), 52), np.float32)
for _row, _emotion in enumerate(_EMOTIONS):
    for _name, _weight in _POSES[_emotion].items():
        _POSE_MATRIX[_row, INDEX[_name]] = _weight
_POSE_PITCH_VECTOR = np.array([_POSE_PITCH.get(e, 0.0) for e in _EMOTIONS], np.float32)
_NEUTRAL_ROW = _EMOTIONS.index(Emotion.NEUTRAL)

# Curves that part the lips: never added while the speech frame holds a closure.
_LIP_OPENING = np.array([INDEX[n] for n in ("JawOpen", "MouthFunnel", "MouthLowerDownLeft", "MouthLowerDownRight",
                                            "MouthUpperUpLeft", "MouthUpperUpRight")])  # fmt: skip
_BROWS = np.array([INDEX[n] for n in ("BrowDownLeft", "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft",
                                      "BrowOuterUpRight")])  # fmt: skip
_EYE_WIDE = np.array([INDEX["EyeWideLeft"], INDEX["EyeWideRight"]])
_MOUTH_CLOSE, _JAW_OPEN = INDEX["MouthClose"], INDEX["JawOpen"]
_LOW = np.array([0.0] * 52 + [-1.0] * 9 + [0.0] * 7, np.float32)
_HIGH = np.ones(FACE_WIDTH, np.float32)
# The layer writes its per-frame curves as two slices, eyes (0-13) and head/eye rotations (52-60), in this order:
_EYES = ("EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft", "EyeSquintLeft",
         "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight",
         "EyeSquintRight", "EyeWideRight")  # fmt: skip
_ROTATIONS = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw",
              "RightEyePitch", "RightEyeRoll")  # fmt: skip
assert [INDEX[n] for n in _EYES] == list(range(14)) and [INDEX[n] for n in _ROTATIONS] == list(range(52, 61))
_NO_ROTATION = [0.0] * 9


def _smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


@dataclass(frozen=True, slots=True)
class _Blink:
    start: float
    close: float
    hold: float
    open: float
    right_lag: float

    @property
    def end(self) -> float:
        return self.start + abs(self.right_lag) + self.close + self.hold + self.open

    def lid(self, t: float) -> float:
        """Closure 0-1 at ``t`` seconds after this blink's start (for one eye)."""
        if t <= 0.0:
            return 0.0
        if t < self.close:
            return _smoothstep(t / self.close)
        t -= self.close
        if t <= self.hold:
            return 1.0
        t -= self.hold
        if t < self.open:
            remaining = 1.0 - t / self.open
            return remaining * remaining  # opens fast at first, then settles
        return 0.0


@dataclass(frozen=True, slots=True)
class _Fixation:
    start: float
    duration: float  # of the saccade that begins it
    yaw_from: float
    pitch_from: float
    yaw: float
    pitch: float
    glance: bool


class _Sines:
    """Smooth noise: a sum of 3 sines per axis with seeded frequencies and phases, amplitude about 1."""

    def __init__(self, rng: np.random.Generator, low_hz: float, high_hz: float, axes: int = 3) -> None:
        freq = rng.uniform(low_hz, high_hz, (axes, 3)) * 2 * math.pi
        phase = rng.uniform(0, 2 * math.pi, (axes, 3))
        amp = np.array([0.6, 0.3, 0.15]) * rng.uniform(0.8, 1.2, (axes, 3))
        self._terms = [
            [(float(f), float(p), float(a)) for f, p, a in zip(freq[i], phase[i], amp[i], strict=True)]
            for i in range(axes)
        ]

    def __call__(self, t: float) -> list[float]:
        values = []
        sin = math.sin
        for (f0, p0, a0), (f1, p1, a1), (f2, p2, a2) in self._terms:
            values.append(a0 * sin(f0 * t + p0) + a1 * sin(f1 * t + p1) + a2 * sin(f2 * t + p2))
        return values


class AnimationLayer:
    """Composes the final face: speech frames (or none) + blinks, gaze, head, breathing and emotion.

    Call :meth:`frame` with a non-decreasing face time ``t`` (seconds, any origin), typically once per 60 fps
    frame (an earlier time counts as the previous call's); the layer is stateful (blends, eased emotion, event
    schedules), so each instance serves ONE character and one stream of calls. It implements
    :class:`facecast.engine.pacer.FaceComposer`, and the pacer calls it 60 times a second for
    every subject, so :meth:`frame` is written for speed: scalar math in Python floats, few numpy calls.
    """

    def __init__(self, seed: int = 0, config: LayerConfig | None = None) -> None:
        self.config = cfg = config if config is not None else LayerConfig()
        self._blink_rng = np.random.default_rng([seed, 1])
        self._gaze_rng = np.random.default_rng([seed, 2])
        motion_rng = np.random.default_rng([seed, 3])
        self._idle_noise = _Sines(motion_rng, 0.04, 0.3)
        self._talk_noise = _Sines(motion_rng, 0.4, 1.6)
        self._breath_period = cfg.breath_period * float(motion_rng.uniform(0.9, 1.1))
        self._breath_phase = float(motion_rng.uniform(0, 2 * math.pi))
        self._t: float | None = None
        self._ramp = 0.0  # speech blend before easing
        self._speaking = False  # whether the previous call had a speech frame
        self._held: Float32Array | None = None
        self._jaw = 0.0  # smoothed speech JawOpen, for nods
        self._follow_yaw = self._follow_pitch = 0.0  # the head turns a little toward where the eyes look
        speech_scale = np.ones(61, np.float32)
        speech_scale[_BROWS] = cfg.speech_brow_scale
        speech_scale[_EYE_WIDE] = cfg.speech_eye_wide_scale
        self._speech_scale = speech_scale
        self._pose_matrix = _POSE_MATRIX * np.float32(cfg.emotion_scale)
        self._blinks: list[_Blink] = []
        self._next_blink = 0.0
        self._fixation: _Fixation | None = None
        self._next_fixation: _Fixation | None = None
        self._emotion = np.zeros(len(_EMOTIONS), np.float32)
        self._emotion[_NEUTRAL_ROW] = 1.0
        self._target = self._emotion.copy()
        self._easing = False  # the emotion is still moving toward its target
        self._pose = np.zeros(52, np.float32)  # the face the current emotion makes
        self._pose_pitch = 0.0
        self._rest: tuple[Float32Array, list[float]] | None = None  # the idle frame before eyes and head
        self._target_label = (Emotion.NEUTRAL, 1.0)
        self._scheduled: list[tuple[float, int, Emotion, float]] = []
        self._order = itertools.count()

    # ------------------------------------------------------------------------------------------- public

    @property
    def emotion(self) -> tuple[Emotion, float]:
        """The emotion the face is easing toward and its intensity."""
        return self._target_label

    def set_emotion(self, emotion: Emotion, intensity: float = 1.0, *, at: float | None = None) -> None:
        """Ease toward ``emotion`` at ``intensity`` (0-1), from face time ``at`` (from the next frame if None).

        The emotion channels become ``intensity`` on ``emotion`` and ``1 - intensity`` on Neutral, reached
        with a time constant of ``config.emotion_ease``. Raises ValueError for an intensity outside [0, 1].
        """
        if not 0.0 <= intensity <= 1.0 or math.isnan(intensity):
            raise ValueError(f"emotion intensity must be in [0, 1], got {intensity}")
        when = -math.inf if at is None else float(at)
        bisect.insort(self._scheduled, (when, next(self._order), emotion, float(intensity)))

    def frame(self, t: float, mouth: Float32Array | None) -> Float32Array:
        """The final 68-value frame at face time ``t`` for speech frame ``mouth`` (None between utterances).

        ``mouth`` is a 68-value (or 61-value) speech frame; its curves fade in at the start of an utterance
        and the last one fades out after it; non-finite values in it count as 0, and its emotion channels are
        ignored (the layer's emotion state owns them). A ``t`` earlier than the previous call's counts as the
        previous call's time (the layer never goes back). Returns a new float32 array.
        """
        cfg = self.config
        last = self._t
        if last is None:
            dt = 0.0
            self._next_blink = t + float(self._blink_rng.uniform(0.5, cfg.blink_interval[1]))
        elif t > last:
            dt = min(t - last, 1.0)
        else:  # the same time again, or a little earlier (a frame computed ahead was discarded): no time passes
            t, dt = last, 0.0
        self._t = t
        scheduled = self._scheduled
        while scheduled and scheduled[0][0] <= t:
            _, _, emotion, intensity = scheduled.pop(0)
            self._set_target(emotion, intensity)

        # Speech blend: a linear ramp, eased, so the curve's slope is bounded at both ends. The ramp starts
        # moving from the first frame of a change, however long ago the previous call was.
        speaking = mouth is not None
        ramp_dt = dt if speaking == self._speaking else 0.0
        self._speaking = speaking
        if mouth is not None:
            held = np.asarray(mouth, np.float32)
            if not math.isfinite(sum(held.tolist())):  # a NaN or an infinity makes the sum one (float32 cannot)
                held = np.nan_to_num(held, nan=0.0, posinf=0.0, neginf=0.0)
            self._held = held
            self._ramp = min(1.0, self._ramp + ramp_dt / cfg.blend_in)
        else:
            self._ramp = max(0.0, self._ramp - ramp_dt / cfg.blend_out)
            if self._ramp == 0.0:
                self._held = None
        ramp = self._ramp
        weight = ramp * ramp * (3.0 - 2.0 * ramp)  # smoothstep; the ramp is in [0, 1]
        if self._easing and dt > 0:
            self._ease_emotion(1.0 - math.exp(-dt / cfg.emotion_ease))

        # The face before eyes and head: speech + the emotion's pose (clamped; emotions in 61-67), and the
        # unclamped values of the curves the layer still moves.
        speech = self._held
        if speech is None:
            rest, eyes = self._rest if self._rest is not None else self._make_rest()
            out = rest.copy()
            rotations = _NO_ROTATION
            jaw = 0.0
        else:
            out, eyes, rotations, jaw = self._speech_face(speech, weight)
        self._jaw += (jaw - self._jaw) * (1.0 - math.exp(-dt / 0.15))

        # Gaze (a world direction), head, breathing.
        gaze_yaw, gaze_pitch = self._gaze(t, weight)
        follow = 1.0 - math.exp(-dt / 0.3)
        self._follow_yaw += (0.3 * gaze_yaw - self._follow_yaw) * follow
        self._follow_pitch += (0.2 * gaze_pitch - self._follow_pitch) * follow
        idle_yaw, idle_pitch, idle_roll = self._idle_noise(t)
        talk = cfg.speaking_head_gain * weight
        talk_yaw, talk_pitch, talk_roll = self._talk_noise(t) if talk else _NO_ROTATION[:3]
        breath = cfg.breath * math.sin(2 * math.pi * t / self._breath_period + self._breath_phase)
        head_yaw = cfg.head * (idle_yaw + 0.8 * talk * talk_yaw) + self._follow_yaw
        head_pitch = (
            cfg.head * (0.8 * idle_pitch + talk * talk_pitch)
            + self._follow_pitch
            + 2.0 * self._jaw  # a slight nod on open syllables
            - breath  # inhaling lifts the head a little
            + self._pose_pitch
        )
        head_roll = cfg.head * (0.6 * idle_roll + 0.5 * talk * talk_roll) + 0.25 * breath
        eye_yaw, eye_pitch = gaze_yaw - head_yaw, gaze_pitch - head_pitch  # the eyes hold the gaze
        # (Conditional expressions rather than min() / max() calls: this runs for every subject 60 times a second.)
        left = eye_yaw / EYE_LOOK_FULL_DEG if eye_yaw > 0.0 else 0.0
        right = -eye_yaw / EYE_LOOK_FULL_DEG if eye_yaw < 0.0 else 0.0
        down = eye_pitch / EYE_LOOK_FULL_DEG if eye_pitch > 0.0 else 0.0
        up = -eye_pitch / EYE_LOOK_FULL_DEG if eye_pitch < 0.0 else 0.0
        ey, ep = eye_yaw / 180.0, eye_pitch / 180.0

        # Blinks last: the lids also follow a downward look, and wide eyes give way to a closing lid.
        blink_left, blink_right = self._blink(t, weight)
        lid = 0.3 * down
        e = eyes
        closed_left = blink_left + lid if blink_left + lid < 1.0 else 1.0
        closed_left = e[0] if e[0] > closed_left else closed_left
        closed_right = blink_right + lid if blink_right + lid < 1.0 else 1.0
        closed_right = e[7] if e[7] > closed_right else closed_right
        out[0:14] = [
            0.0 if v < 0.0 else 1.0 if v > 1.0 else v
            for v in (closed_left, e[1] + down, e[2] + right, e[3] + left, e[4] + up, e[5],
                      e[6] * (1.0 - closed_left), closed_right, e[8] + down, e[9] + left, e[10] + right, e[11] + up,
                      e[12], e[13] * (1.0 - closed_right))
        ]  # fmt: skip
        r = rotations
        out[52:61] = [
            -1.0 if v < -1.0 else 1.0 if v > 1.0 else v
            for v in (r[0] + head_yaw / 180.0, r[1] + head_pitch / 180.0, r[2] + head_roll / 180.0, r[3] + ey,
                      r[4] + ep, r[5], r[6] + ey, r[7] + ep, r[8])
        ]  # fmt: skip
        return out

    def frames(self, t0: float, mouth: Float32Array | None, count: int | None = None) -> Float32Array:
        """Frames at ``t0 + k / 60``: one per row of ``mouth`` (n x 68), or ``count`` idle ones if it is None.

        Equivalent to calling :meth:`frame` for each; returns an n x 68 float32 array.
        """
        n = len(mouth) if mouth is not None else count
        if n is None:
            raise ValueError("give mouth frames or a count")
        out = np.empty((n, FACE_WIDTH), np.float32)
        for k in range(n):
            out[k] = self.frame(t0 + k / FPS, None if mouth is None else mouth[k])
        return out

    # ------------------------------------------------------------------------------------------ internals

    def _make_rest(self) -> tuple[Float32Array, list[float]]:
        """The idle face before eyes and head (cached until the emotion moves), and its unclamped eye curves."""
        out = np.zeros(FACE_WIDTH, np.float32)
        out[:52] = self._pose
        eyes: list[float] = out[0:14].tolist()
        np.minimum(np.maximum(out, _LOW, out=out), _HIGH, out=out)
        out[61:] = self._emotion
        self._rest = (out, eyes)
        return self._rest

    def _speech_face(self, speech: Float32Array, weight: float) -> tuple[Float32Array, list[float], list[float], float]:
        """Speech at ``weight`` + the emotion's pose, clamped, with the unclamped eye and rotation curves, and
        the speech's JawOpen."""
        out = np.zeros(FACE_WIDTH, np.float32)
        width = min(len(speech), 61)
        scale = self._speech_scale if weight == 1.0 else self._speech_scale * np.float32(weight)
        np.multiply(speech[:width], scale[:width], out=out[:width])
        jaw = float(out[_JAW_OPEN])
        # Emotion's pose, but nothing that parts the lips over a closure.
        pose = self._pose
        closure = float(speech[_MOUTH_CLOSE])
        if closure > 0.02:
            pose = pose.copy()
            pose[_LIP_OPENING] *= 1.0 - min(1.0, (closure - 0.02) / 0.08)  # none once MouthClose >= 0.1
        out[:52] += pose
        eyes: list[float] = out[0:14].tolist()
        rotations: list[float] = out[52:61].tolist()
        np.minimum(np.maximum(out, _LOW, out=out), _HIGH, out=out)
        out[61:] = self._emotion
        return out, eyes, rotations, jaw

    def _set_target(self, emotion: Emotion, intensity: float) -> None:
        target = np.zeros(len(_EMOTIONS), np.float32)
        target[_EMOTIONS.index(emotion)] += intensity
        target[_NEUTRAL_ROW] += 1.0 - intensity
        self._target = target
        self._target_label = (emotion, intensity)
        self._easing = True

    def _ease_emotion(self, fraction: float) -> None:
        """Move the emotion channels ``fraction`` of the way to the target; snap once imperceptibly close."""
        gap = self._target - self._emotion
        if max(map(abs, gap.tolist())) < 1e-4:
            self._emotion = self._target.copy()
            self._easing = False
        else:
            self._emotion += gap * fraction
        self._pose = np.dot(self._emotion, self._pose_matrix)
        self._rest = None
        self._pose_pitch = float(np.dot(self._emotion, _POSE_PITCH_VECTOR)) * self.config.emotion_scale

    def _blink(self, t: float, speaking: float) -> tuple[float, float]:
        cfg, rng = self.config, self._blink_rng
        if self._next_blink < t - 30.0:  # a long gap between calls: do not replay every missed blink
            self._next_blink = t
        while self._next_blink <= t:
            start = self._next_blink
            blink = _Blink(
                start,
                float(rng.uniform(*cfg.blink_close)),
                float(rng.uniform(*cfg.blink_hold)),
                float(rng.uniform(*cfg.blink_open)),
                float(rng.uniform(-0.006, 0.006)),
            )
            self._blinks.append(blink)
            if rng.random() < cfg.double_blink_chance:
                self._next_blink = blink.end + float(rng.uniform(0.05, 0.15))
            else:
                rate = 1.0 + (cfg.speaking_blink_rate - 1.0) * speaking
                self._next_blink = blink.end + float(rng.uniform(*cfg.blink_interval)) / rate
        if not self._blinks:  # most frames
            return 0.0, 0.0
        self._blinks = [b for b in self._blinks if b.end >= t]
        left = right = 0.0
        for b in self._blinks:
            lag = b.right_lag
            left = max(left, b.lid(t - b.start - max(0.0, -lag)))
            right = max(right, b.lid(t - b.start - max(0.0, lag)))
        return left, right

    def _gaze(self, t: float, speaking: float) -> tuple[float, float]:
        """World gaze direction (yaw, pitch in degrees) at ``t``: the fixation in force, mid-saccade or not."""
        if self._fixation is None or self._next_fixation is None:
            self._fixation = _Fixation(t, 0.0, 0.0, 0.0, 0.0, 0.0, False)
            self._next_fixation = self._draw_fixation(self._fixation, speaking)
        while self._next_fixation.start <= t:
            self._fixation = self._next_fixation
            self._next_fixation = self._draw_fixation(self._fixation, speaking)
        f = self._fixation
        if t >= f.start + f.duration:  # the saccade is over: most frames
            return f.yaw, f.pitch
        s = _smoothstep((t - f.start) / f.duration) if f.duration > 0 else 1.0
        return f.yaw_from + (f.yaw - f.yaw_from) * s, f.pitch_from + (f.pitch - f.pitch_from) * s

    def _draw_fixation(self, current: _Fixation, speaking: float) -> _Fixation:
        cfg, rng = self.config, self._gaze_rng
        low, high = (0.3, 0.9) if current.glance else cfg.fixation
        start = current.start + float(rng.uniform(low, high))
        chance = cfg.glance_chance * (1.0 - 0.5 * speaking)  # a speaker looks at the listener more
        glance = not current.glance and rng.random() < chance
        if glance:
            yaw = float(rng.uniform(-1.0, 1.0)) * cfg.gaze_yaw
            pitch = float(rng.uniform(-0.6, 1.0)) * cfg.gaze_pitch  # people glance down more often than up
        else:
            yaw = float(np.clip(rng.normal(0.0, 1.2), -cfg.gaze_yaw, cfg.gaze_yaw))
            pitch = float(np.clip(rng.normal(0.0, 0.8), -cfg.gaze_pitch, cfg.gaze_pitch))
        amplitude = math.hypot(yaw - current.yaw, pitch - current.pitch)
        duration = 0.021 + 0.0022 * amplitude  # the saccade main sequence: ~2 ms per degree
        return _Fixation(start, duration, current.yaw, current.pitch, yaw, pitch, glance)
