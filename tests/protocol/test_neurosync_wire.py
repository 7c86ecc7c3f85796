"""NeuroSync's wire conventions: value ranges, the multipart body, and a WAV the Player cannot truncate."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from facecast.face.arkit import INDEX
from facecast.protocol.neurosync import (
    BOUNDARY,
    EMOTION_SCALE,
    MIN_AUDIO_SECONDS,
    MULTIPART_CONTENT_TYPE,
    PCM_RATE,
    TTS_RATE,
    blendshapes_json,
    closest_voice,
    encode_multipart,
    frames_json,
    is_container,
    neurosync_values,
    part_named,
    player_safe_wav,
    split_multipart,
)


def test_values_follow_neurosync_conventions() -> None:
    frames = np.zeros((3, 68), np.float32)
    frames[0, INDEX["JawOpen"]] = 1.7
    frames[1, INDEX["HeadYaw"]] = -0.25  # signed rotation: NeuroSync's Player would clamp it to 0
    frames[2, INDEX["MouthClose"]] = np.nan
    frames[:, INDEX["Happy"]] = 3.5  # emotions stay unscaled
    frames[:, INDEX["Sad"]] = -1.25
    out = neurosync_values(frames)
    assert out[0, INDEX["JawOpen"]] == 1.0 and out[1, INDEX["HeadYaw"]] == 0.0 and out[2, INDEX["MouthClose"]] == 0.0
    assert np.all(out[:, INDEX["Happy"]] == 3.5) and np.all(out[:, INDEX["Sad"]] == -1.25)
    assert frames[0, INDEX["JawOpen"]] == pytest.approx(1.7)  # the input is untouched
    with pytest.raises(ValueError):
        neurosync_values(np.zeros((2, 61)))


def test_json_shapes() -> None:
    frames = np.full((2, 68), 0.123456789, np.float32)
    assert json.loads(blendshapes_json(frames)) == {"blendshapes": [[0.123457] * 68] * 2}
    assert json.loads(frames_json(np.zeros((0, 68), np.float32))) == []


def test_a_long_answer_is_encoded_in_short_calls_and_reads_as_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # json.dumps holds the GIL for the whole of one call: 29 minutes of frames in one call stalled the event
    # loop for ~10 s while a worker thread encoded the answer (found by the soak, facecast bench --soak).
    frames = np.random.default_rng(7).uniform(-0.2, 1.2, (1000, 68)).astype(np.float32)
    expected = json.dumps(np.round(neurosync_values(frames, 2.0).astype(np.float64), 6).tolist(), separators=(",", ":"))
    sizes: list[int] = []
    dumps = json.dumps

    def counting(obj: object, **kwargs: object) -> str:
        sizes.append(len(obj) if isinstance(obj, list) else 0)
        return dumps(obj, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(json, "dumps", counting)
    body = frames_json(frames, 2.0)
    monkeypatch.undo()
    assert body == expected.encode()  # byte for byte what one call made
    assert sum(sizes) == 1000 and max(sizes) <= 64


def test_min_audio_is_five_frames() -> None:
    assert MIN_AUDIO_SECONDS == pytest.approx(0.0833, abs=1e-4)


def test_multipart_golden_bytes() -> None:
    body = encode_multipart(b"RIFF..", b"[[0]]")
    assert body == (
        b"--MY_BOUNDARY_STRING\r\nContent-Type: audio/wav\r\n"
        b'Content-Disposition: attachment; filename="output.wav"\r\n\r\nRIFF..\r\n'
        b"--MY_BOUNDARY_STRING\r\nContent-Type: application/json\r\nContent-Disposition: inline\r\n\r\n[[0]]\r\n"
        b"--MY_BOUNDARY_STRING--\r\n"
    )
    assert MULTIPART_CONTENT_TYPE == "multipart/mixed; boundary=MY_BOUNDARY_STRING"


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=100))
def test_multipart_round_trip(audio: bytes, frames: bytes) -> None:
    parts = split_multipart(encode_multipart(audio, frames))
    assert [h["content-type"] for h, _ in parts] == ["audio/wav", "application/json"]
    assert part_named(parts, "audio/wav") == audio and part_named(parts, "application/json") == frames


def test_split_multipart_rejects_truncated_bodies() -> None:
    body = encode_multipart(b"abc", b"[]")
    for broken in (body[:-30], b"junk" + body, body[: body.index(b"\r\n\r\n")]):
        with pytest.raises(ValueError):
            split_multipart(broken)
    with pytest.raises(KeyError):
        part_named(split_multipart(body), "image/png")


def test_player_safe_wav_ends_in_a_zero_sample() -> None:
    pcm = np.full(1000, 10 / 32767, np.float32)  # PCM16 value 10 = b"\n\x00" little-endian: ends in 0 anyway
    pcm[-1] = 0x0A0A / 32767  # last sample b"\n\n": the Player's rstrip(b"\r\n") would eat it
    wav = player_safe_wav(pcm, 22050)
    assert wav.endswith(b"\x00\x00") and wav.rstrip(b"\r\n\t\x0b\x0c ") == wav
    data, rate = sf.read(io.BytesIO(wav), dtype="int16")
    assert rate == 22050 and len(data) == 1000 and data[-1] == 0 and data[0] == 10
    assert BOUNDARY.encode() not in wav


@given(st.integers(1, 10 * 88200), st.sampled_from([8000, 16000, 22050, 24000, 44100, 48000, 88200]))
def test_frame_count_is_neurosyncs(samples: int, rate: int) -> None:
    import math

    from facecast.protocol.neurosync import neurosync_frame_count
    from facecast.types import frames_for_samples

    resampled = math.ceil(samples * 88200 / rate)
    hops = 1 + resampled // 735  # centred frames at 120/s
    neurosync = (hops + 1) // 2  # an odd count completed with its last frame, then pairs averaged
    assert neurosync_frame_count(samples, rate) == neurosync
    exact = (samples * 60) % rate == 0
    assert neurosync_frame_count(samples, rate) == frames_for_samples(samples, rate) + exact


def test_finish_zeroes_and_eases_like_neurosync() -> None:
    from facecast.face.arkit import INDEX
    from facecast.protocol.neurosync import neurosync_finish

    frames = np.full((8, 68), 0.5, np.float32)
    out = neurosync_finish(frames)
    assert np.allclose(out[:, INDEX["JawOpen"]], [0, 1 / 12, 2 / 12, 3 / 12, 4 / 12, 5 / 12, 0.5, 0.5])
    assert not out[:, INDEX["TongueOut"]].any() and not out[:, INDEX["EyeBlinkRight"]].any()
    assert np.all(out[:, 61:] == 0.5) and np.all(frames == 0.5)  # emotions kept; the input is not changed


def test_emotions_on_neurosyncs_scale() -> None:
    frames = np.zeros((2, 68), np.float32)
    frames[:, INDEX["Happy"]], frames[:, INDEX["Neutral"]] = 0.75, 0.25  # Facecast: 0-1, summing to 1
    frames[:, INDEX["JawOpen"]] = 0.5
    out = neurosync_values(frames, EMOTION_SCALE)
    assert np.all(out[:, INDEX["Happy"]] == 75.0) and np.all(out[:, INDEX["Neutral"]] == 25.0)  # NeuroSync: ~0-100
    assert np.all(out[:, INDEX["JawOpen"]] == 0.5)  # the curves are not scaled
    body = json.loads(blendshapes_json(frames, EMOTION_SCALE))
    assert body["blendshapes"][0][INDEX["Happy"]] == 75.0 and json.loads(frames_json(frames, 100.0))[1][65] == 25.0


@pytest.mark.parametrize(
    ("head", "container"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", True), (b"fLaC\x00\x00\x00\x22", True), (b"OggS\x00\x02", True),
        (b"ID3\x04\x00", True), (b"FORM\x00\x00\x00\x00AIFF", True), (b"\x00\x00\x00\x20ftypM4A ", True),
        (b"\x00\x00\x01\x00\xff\xff\x10\x00", False), (b"\x12\x34" * 8, False), (b"", False),
    ],
)  # fmt: skip
def test_audio_containers_are_told_from_raw_pcm(head: bytes, container: bool) -> None:
    assert is_container(head) is container


def test_neurosync_rates() -> None:
    assert (TTS_RATE, PCM_RATE) == (24000, 22050)  # Kokoro's output; NeuroSync's raw PCM fallback


@pytest.mark.parametrize(
    ("name", "provider", "installed", "spec", "exact"),
    [
        ("af_heart", "hibari", {"hibari", "piper"}, "hibari:heart", True),  # heart IS distilled from af_heart
        ("af_bella", "hibari", {"hibari", "piper"}, "hibari:heart", False),
        ("bf_emma", "piper", {"hibari", "piper"}, "hibari:heart", False),  # the female voice, whatever is configured
        ("am_adam", "hibari", {"hibari", "piper"}, "piper:en_US-joe-medium", False),
        ("bm_george", "hibari", {"hibari"}, "hibari", False),  # no male voice installed: the default voice
        ("bf_emma", "espeak", {"espeak"}, "espeak:en-gb+f3", False),  # espeak-ng: same language and gender
        ("jm_kumo", "espeak", {"espeak"}, "espeak:ja+m3", False),
        ("AF_Sky", "espeak", set(), "espeak:en-us+f3", False),
    ],
)
def test_kokoro_voices_map_to_the_closest_shipped_voice(
    name: str, provider: str, installed: set[str], spec: str, exact: bool
) -> None:
    choice = closest_voice(name, provider, installed.__contains__)
    assert choice is not None and choice.tts == spec
    if exact:
        assert choice.note is None
    else:
        assert choice.note is not None and repr(name) in choice.note and "instead" in choice.note


@pytest.mark.parametrize("name", ["en-gb+f3", "heart", "bella", "af-bella", "xx_bella", "af_", ""])
def test_other_names_are_not_kokoro_voices(name: str) -> None:
    assert closest_voice(name, "hibari", lambda _: True) is None
