"""ARKit / Live Link face layout: names and orders of the 68-value face frame (61 Live Link curves, then 7 emotions).

The frame order is Unreal's ``EARFaceBlendShape`` order (the Live Link wire order) for indices 0-60,
followed by NeuroSync's 7 emotions. CSV files are read and written BY NAME (see ``facecast.face.takes``),
because the Live Link Face app writes two pairs right-before-left.
"""

from __future__ import annotations

__all__ = [
    "LIVE_LINK_NAMES",
    "EMOTION_NAMES",
    "FRAME_NAMES",
    "INDEX",
    "LIVE_LINK_COUNT",
    "APP_CSV_NAMES",
    "ROTATION_INDICES",
]

LIVE_LINK_NAMES: tuple[str, ...] = (
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft",
    "EyeSquintLeft", "EyeWideLeft",
    "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight",
    "EyeSquintRight", "EyeWideRight",
    "JawForward", "JawLeft", "JawRight", "JawOpen",
    "MouthClose", "MouthFunnel", "MouthPucker", "MouthLeft", "MouthRight",
    "MouthSmileLeft", "MouthSmileRight", "MouthFrownLeft", "MouthFrownRight",
    "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft", "MouthStretchRight",
    "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper",
    "MouthPressLeft", "MouthPressRight", "MouthLowerDownLeft", "MouthLowerDownRight",
    "MouthUpperUpLeft", "MouthUpperUpRight",
    "BrowDownLeft", "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight",
    "CheekPuff", "CheekSquintLeft", "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight", "TongueOut",
    "HeadYaw", "HeadPitch", "HeadRoll",
    "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)  # fmt: skip

EMOTION_NAMES: tuple[str, ...] = ("Angry", "Disgusted", "Fearful", "Happy", "Neutral", "Sad", "Surprised")

FRAME_NAMES: tuple[str, ...] = LIVE_LINK_NAMES + EMOTION_NAMES
"""The 68 names of a face frame, in frame order."""

LIVE_LINK_COUNT = len(LIVE_LINK_NAMES)

INDEX: dict[str, int] = {name: i for i, name in enumerate(FRAME_NAMES)}
"""Frame index of each name, e.g. ``INDEX["JawOpen"] == 17``."""


def _app_order(names: tuple[str, ...]) -> tuple[str, ...]:
    swapped = list(names)
    for right, left in (("JawRight", "JawLeft"), ("MouthRight", "MouthLeft")):
        i, j = swapped.index(left), swapped.index(right)
        swapped[i], swapped[j] = swapped[j], swapped[i]
    return tuple(swapped)


APP_CSV_NAMES: tuple[str, ...] = _app_order(LIVE_LINK_NAMES)
"""The 61 names in the Live Link Face app's CSV header order (JawRight before JawLeft, MouthRight before
MouthLeft). NeuroSync's ``shapes.csv`` uses this order followed by :data:`EMOTION_NAMES`."""

ROTATION_INDICES: tuple[int, ...] = tuple(range(52, 61))
"""Head and eye yaw/pitch/roll: degrees / 180, in [-1, 1]; every other curve 0-51 is a weight in [0, 1]."""

assert len(FRAME_NAMES) == 68 and LIVE_LINK_COUNT == 61
