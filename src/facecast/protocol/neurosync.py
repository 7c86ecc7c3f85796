"""Sans-I/O pieces of NeuroSync's HTTP API: value conventions and the multipart body.

No sockets and no web framework here: :mod:`facecast.http.neurosync` serves these over HTTP.

Value conventions of a NeuroSync frame (``{"blendshapes": [[68 floats], ...]}``, 60 per second of audio):

* values 0-60 (the 61 Live Link curves) are in [0, 1]: NeuroSync divides its model's output by 100 and its
  Player clamps to [0, 1] before sending, so head and eye rotations (signed, degrees / 180 in Facecast's
  frames) cannot go below 0 there. :func:`neurosync_values` clips 0-60 to [0, 1];
* values 61-67 (the 7 emotions) are on NeuroSync's scale, roughly 0-100 (its model's outputs, unscaled; the
  7 sum to about 100). Facecast's animators give 0-1 (1: the full emotion), so the endpoints multiply theirs
  by :data:`EMOTION_SCALE`; a NeuroSync model's frames are already on that scale. NeuroSync's Player only
  compares the emotions with each other (the largest mean, Neutral weighted down, picks an overlay), which
  either scale satisfies; scripts that threshold them (``> 50``) need NeuroSync's;
* a non-finite value becomes 0, and numbers are rounded to 6 decimals (float32 carries ~7 significant
  digits; this keeps a minute of frames near 1.5 MB of JSON instead of 4 MB).

``/audio_to_blendshapes`` answers as NeuroSync's model does (:func:`neurosync_frame_count` frames,
:func:`neurosync_finish`): one frame more than ``frames_for_samples`` when the audio is an exact multiple
of 1/60 s, blinks, eye look, tongue and head and eye rotations zeroed, and the first 6 frames eased in from
rest.

Audio the endpoints receive: a body that is not an audio container (no WAV, FLAC, OGG... header) is read as
NeuroSync reads it then, as raw little-endian 16-bit mono PCM, at :data:`PCM_RATE` unless the request names its
rate (:func:`is_container`). Speech they answer with (``/generate_speech``, ``/synthesize_and_blendshapes``) is
at :data:`TTS_RATE`, the rate of NeuroSync's Kokoro TTS, whatever the TTS's own. Kokoro's voice names
(``af_bella``, ``am_adam``...) are matched to the closest voice shipped here (:func:`closest_voice`).

``/synthesize_and_blendshapes`` answers ``multipart/mixed; boundary=MY_BOUNDARY_STRING`` with part 1 the
WAV (``audio/wav``) and part 2 the frames as a JSON list (``application/json``), each part's body followed
by CRLF and the body closed by ``--MY_BOUNDARY_STRING--``. NeuroSync's Player splits the body on the
boundary, strips each part of surrounding whitespace and then strips trailing CR/LF from the audio: a WAV
whose last byte is one of ``\\t \\n \\v \\f \\r`` or space would lose it there. :func:`player_safe_wav` writes
the last sample as 0 (inaudible) so that no audio byte can be eaten.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..audio import wav_bytes
from ..face.arkit import LIVE_LINK_COUNT
from ..types import FACE_WIDTH, FPS, Float32Array

__all__ = [
    "BOUNDARY",
    "MULTIPART_CONTENT_TYPE",
    "MIN_AUDIO_SECONDS",
    "EMOTION_SCALE",
    "TTS_RATE",
    "PCM_RATE",
    "is_container",
    "VoiceChoice",
    "closest_voice",
    "neurosync_values",
    "neurosync_frame_count",
    "neurosync_finish",
    "EASE_IN_FRAMES",
    "ZEROED_COLUMNS",
    "blendshapes_json",
    "frames_json",
    "player_safe_wav",
    "encode_multipart",
    "split_multipart",
    "part_named",
]

BOUNDARY = "MY_BOUNDARY_STRING"
"""The fixed boundary NeuroSync's Player expects."""

MULTIPART_CONTENT_TYPE = f"multipart/mixed; boundary={BOUNDARY}"

MIN_AUDIO_SECONDS = 5 / FPS
"""Shortest audio ``/audio_to_blendshapes`` animates: 5 frames, ~83 ms (NeuroSync rejects shorter audio)."""

EMOTION_SCALE = 100.0
"""Facecast's emotions (0-1) times this are on NeuroSync's scale (its model's, roughly 0-100)."""

TTS_RATE = 24_000
"""The sample rate of NeuroSync's speech (Kokoro's): ``/generate_speech`` and ``/synthesize_and_blendshapes``."""

PCM_RATE = 22_050
"""The rate NeuroSync assumes for a body that is not an audio file (it reads it as raw 16-bit mono PCM)."""

_DECIMALS = 6

EASE_IN_FRAMES = 6
"""NeuroSync eases the curves of its first frames in from rest: frame ``k`` < 6 is scaled by ``k / 6``."""
ZEROED_COLUMNS: tuple[int, ...] = (0, 1, 2, 3, 4, 7, 8, 9, 10, 11, 51, *range(52, 61))
"""The frame columns NeuroSync zeroes: eye blinks and eye look, TongueOut, head and eye rotations."""
_FEATURE_RATE = 88_200
_PAIR = 1470  # two 735-sample hops at 88200 Hz: one 60 fps frame


def neurosync_frame_count(samples: int, rate: int) -> int:
    """How many frames NeuroSync answers for ``samples`` of audio at ``rate`` (0 for none).

    Its features are taken from the audio resampled to 88200 Hz (``ceil(samples * 88200 / rate)`` samples),
    in centred frames every 735 samples (``1 + n // 735`` of them, 120 per second), an odd count completed
    with its last frame, and then averaged in pairs: ``n // 1470 + 1`` frames. That is
    ``frames_for_samples(samples, rate)`` (60 per second, rounded up) except for audio of an exact multiple
    of 1/60 s, which gets one frame more.
    """
    if samples <= 0 or rate <= 0:
        return 0
    resampled = -(-samples * _FEATURE_RATE // rate)
    return resampled // _PAIR + 1


def neurosync_finish(values: object) -> Float32Array:
    """A copy of N x 68 frames finished as NeuroSync finishes its model's output: :data:`ZEROED_COLUMNS`
    set to 0 and the curves (0-60) of the first :data:`EASE_IN_FRAMES` frames eased in (emotions untouched)."""
    out = np.array(values, dtype=np.float32, copy=True)
    if out.ndim != 2 or out.shape[1] != FACE_WIDTH:
        raise ValueError(f"frames must be N x {FACE_WIDTH}, got shape {out.shape}")
    out[:, list(ZEROED_COLUMNS)] = 0.0
    ease = np.minimum(1.0, np.arange(min(len(out), EASE_IN_FRAMES), dtype=np.float32) / EASE_IN_FRAMES)
    out[: len(ease), :LIVE_LINK_COUNT] *= ease[:, None]
    return out


def neurosync_values(values: object, emotion_scale: float = 1.0) -> Float32Array:
    """Face frames (N x 68, Facecast frame order) in NeuroSync's conventions (see the module docstring), the
    emotions multiplied by ``emotion_scale`` (:data:`EMOTION_SCALE` for Facecast's 0-1 emotions).

    Raises :class:`ValueError` for a shape other than (N, 68). The input is not modified.
    """
    arr = np.array(values, dtype=np.float32, copy=True)
    if arr.ndim != 2 or arr.shape[1] != FACE_WIDTH:
        raise ValueError(f"face values must have shape (N, {FACE_WIDTH}), got {arr.shape}")
    arr[~np.isfinite(arr)] = 0.0
    np.clip(arr[:, :LIVE_LINK_COUNT], 0.0, 1.0, out=arr[:, :LIVE_LINK_COUNT])
    if emotion_scale != 1.0:
        arr[:, LIVE_LINK_COUNT:] *= np.float32(emotion_scale)
    return arr


_JSON_ROWS = 64
"""Frames per ``json.dumps`` call. One call holds the GIL throughout (a few ms for 64 frames), so a long take's
answer (100,000 frames for 29 minutes, ~10 s to encode) is made in short calls and the event loop, waiting for
the GIL while a worker thread encodes, runs between them instead of stalling for the whole answer."""


def frames_json(values: object, emotion_scale: float = 1.0) -> bytes:
    """The frames as a JSON list of 68-value lists (the second part of the multipart answer)."""
    arr = neurosync_values(values, emotion_scale)
    parts = []
    for start in range(0, len(arr), _JSON_ROWS):
        rows = np.round(arr[start : start + _JSON_ROWS].astype(np.float64), _DECIMALS).tolist()
        parts.append(json.dumps(rows, separators=(",", ":"))[1:-1])
    return ("[" + ",".join(parts) + "]").encode()


def blendshapes_json(values: object, emotion_scale: float = 1.0) -> bytes:
    """The body of an ``/audio_to_blendshapes`` answer: ``{"blendshapes": [[68 values], ...]}``."""
    return b'{"blendshapes":' + frames_json(values, emotion_scale) + b"}"


_CONTAINERS = (b"RIFF", b"RIFX", b"RF64", b"BW64", b"FORM", b"fLaC", b"OggS", b"ID3", b".snd", b"caff", b"wvpk",
               b"#!AMR", b"\x1aE\xdf\xa3", b"MThd", b"Creative Voice", b"NIST_1A", b"2BIT", b"IMPM")  # fmt: skip


def is_container(data: bytes) -> bool:
    """Whether ``data`` starts like an audio (or media) file: such a body that cannot be decoded is a broken
    file, never raw PCM. MP4/M4A (``ftyp`` at byte 4) counts too."""
    return data.startswith(_CONTAINERS) or data[4:8] == b"ftyp"


# ------------------------------------------------------------------------------------------------ voices

_KOKORO = re.compile(r"^([abefhijpz])([fm])_[a-z0-9]+$")
_KOKORO_LANGUAGES = {
    "a": ("en-us", "American English"), "b": ("en-gb", "British English"), "e": ("es", "Spanish"),
    "f": ("fr", "French"), "h": ("hi", "Hindi"), "i": ("it", "Italian"), "j": ("ja", "Japanese"),
    "p": ("pt-br", "Brazilian Portuguese"), "z": ("cmn", "Mandarin Chinese"),
}  # fmt: skip
_NEURAL = {"f": ("hibari", "heart", "hibari's heart (American English, female; distilled from Kokoro's af_heart)"),
           "m": ("piper", "en_US-joe-medium", "Piper's en_US-joe-medium (American English, male)")}  # fmt: skip
_SAME = {"af_heart": "hibari"}
"""Kokoro voices a shipped voice IS (hibari's ``heart`` is distilled from Kokoro's ``af_heart``)."""


@dataclass(frozen=True, slots=True)
class VoiceChoice:
    """The voice that speaks for a requested Kokoro voice: ``tts`` is a TTS spec (``hibari:heart``), ``note``
    says what differs from the voice asked for (``None`` when it is that voice)."""

    tts: str
    note: str | None


def closest_voice(name: str, provider: str, installed: Callable[[str], bool]) -> VoiceChoice | None:
    """The shipped voice closest to Kokoro voice ``name`` (``af_bella``: language ``a``, female), or ``None``
    when ``name`` is not a Kokoro voice name.

    ``provider`` is the configured TTS provider's name (empty for a remote TTS), ``installed(provider)`` says
    whether a provider can run here. With espeak-ng configured, the espeak-ng voice of the same language and
    gender (``en-gb+f3`` for ``bf_emma``). Otherwise the neural voice of the same gender, when its provider is
    installed: hibari's ``heart`` for a female voice, Piper's ``en_US-joe-medium`` for a male one (both speak
    American English); failing that, the configured TTS's own voice.
    """
    match = _KOKORO.match(name.strip().lower())
    if match is None:
        return None
    language, gender = match.groups()
    code, spoken = _KOKORO_LANGUAGES[language]
    kind = "female" if gender == "f" else "male"
    asked = f"Kokoro voice {name!r} ({spoken}, {kind}) is not shipped with Facecast"
    if provider == "espeak":
        voice = f"{code}+{gender}3"
        return VoiceChoice(f"espeak:{voice}", f"{asked}; espeak-ng's {voice} speaks instead")
    neural, voice, described = _NEURAL[gender]
    if _SAME.get(name.strip().lower()) == neural and installed(neural):
        return VoiceChoice(f"{neural}:{voice}", None)
    if installed(neural):
        return VoiceChoice(f"{neural}:{voice}", f"{asked}; {described} speaks instead")
    if not provider:
        return None
    return VoiceChoice(provider, f"{asked}; the default voice speaks instead ({neural} is not installed)")


def player_safe_wav(pcm: object, rate: int) -> bytes:
    """A mono PCM16 WAV of ``pcm`` (float32 mono) whose last sample is 0, so its last bytes are ``00 00``.

    See the module docstring for why. An empty signal gives a WAV with no samples.
    """
    audio = np.array(pcm, dtype=np.float32, copy=True).reshape(-1)
    if len(audio):
        audio[-1] = 0.0
    return wav_bytes(audio, rate)


def encode_multipart(wav: bytes, frames: bytes, boundary: str = BOUNDARY) -> bytes:
    """The ``multipart/mixed`` body of ``/synthesize_and_blendshapes``: the WAV part, then the JSON part."""
    dash = f"--{boundary}".encode()
    return b"".join((
        dash, b"\r\nContent-Type: audio/wav\r\nContent-Disposition: attachment; filename=\"output.wav\"\r\n\r\n",
        wav, b"\r\n",
        dash, b"\r\nContent-Type: application/json\r\nContent-Disposition: inline\r\n\r\n",
        frames, b"\r\n",
        dash, b"--\r\n",
    ))  # fmt: skip


def split_multipart(body: bytes, boundary: str = BOUNDARY) -> list[tuple[dict[str, str], bytes]]:
    """Parse a ``multipart/mixed`` body into ``(headers, content)`` parts, exactly (no stripping of content).

    Header names are lower-cased. Raises :class:`ValueError` when the body does not start with the
    boundary, a part has no blank line after its headers, or the closing boundary is missing.
    """
    dash = f"--{boundary}".encode()
    if not body.startswith(dash):
        raise ValueError("multipart body does not start with its boundary")
    parts: list[tuple[dict[str, str], bytes]] = []
    rest = body[len(dash) :]
    delimiter = b"\r\n" + dash
    while True:
        if rest.startswith(b"--"):
            return parts
        if not rest.startswith(b"\r\n"):
            raise ValueError("malformed boundary line")
        head_end = rest.find(b"\r\n\r\n", 2)
        if head_end < 0:
            raise ValueError("multipart part has no blank line after its headers")
        headers: dict[str, str] = {}
        for line in rest[2:head_end].split(b"\r\n"):
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        content_start = head_end + 4
        end = rest.find(delimiter, content_start)
        if end < 0:
            raise ValueError("multipart body has no closing boundary")
        parts.append((headers, rest[content_start:end]))
        rest = rest[end + len(delimiter) :]


def part_named(parts: Sequence[tuple[dict[str, str], bytes]], content_type: str) -> bytes:
    """The content of the first part whose ``Content-Type`` is ``content_type``; :class:`KeyError` if none."""
    for headers, content in parts:
        if headers.get("content-type", "").split(";")[0].strip().lower() == content_type:
            return content
    raise KeyError(content_type)
