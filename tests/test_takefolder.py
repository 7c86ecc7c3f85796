from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from facecast.errors import InputError
from facecast.face.takes import parse_take, write_livelink_app_csv
from facecast.takefolder import (
    AUDIO_NAME,
    SHAPES_NAME,
    SessionWriter,
    expected_frames,
    new_session_folder,
    read_session,
    write_session,
)
from facecast.types import frames_for_samples

PCM16_STEP = 1 / 32768


def tone(samples: int, rate: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / rate
    pcm = 0.6 * np.sin(2 * np.pi * 220 * t) + 0.3 * rng.uniform(-1, 1, samples)
    return pcm.astype(np.float32)


def faces(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, 68)).astype(np.float32)


@pytest.mark.parametrize("rate", [16000, 22050, 24000, 48000])
def test_round_trip(tmp_path: Path, rate: int) -> None:
    audio = tone(rate + 1234, rate)
    values = faces(frames_for_samples(len(audio), rate))
    write_session(tmp_path / "s", audio, rate, values)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [AUDIO_NAME, SHAPES_NAME]

    info = sf.info(str(tmp_path / "s" / AUDIO_NAME))
    assert (info.samplerate, info.channels, info.subtype) == (rate, 1, "PCM_16")

    session = read_session(tmp_path / "s")
    assert session.rate == rate
    assert session.warning is None
    assert session.audio.dtype == np.float32 and len(session.audio) == len(audio)
    assert np.max(np.abs(session.audio - audio)) <= 1.5 * PCM16_STEP
    assert np.max(np.abs(session.audio)) > 0.5  # really the signal, not silence
    assert session.take.format == "neurosync" and session.take.fps == 60
    np.testing.assert_array_equal(session.values, values)


def test_shapes_csv_is_neurosync_format(tmp_path: Path) -> None:
    audio = tone(24000 * 2, 24000)
    write_session(tmp_path, audio, 24000, faces(120))
    lines = (tmp_path / SHAPES_NAME).read_text().splitlines()
    assert lines[0].startswith("Timecode,BlendshapeCount,EyeBlinkLeft,")
    assert lines[1].startswith("00:00:00:00.000,68,")
    assert lines[-1].startswith("00:00:01:59.983,68,")
    assert len(lines) == 121


def test_write_rejects_frame_count_mismatch_and_writes_nothing(tmp_path: Path) -> None:
    audio = tone(24000, 24000)
    with pytest.raises(ValueError, match="61 face frames do not match 24000 samples"):
        write_session(tmp_path / "s", audio, 24000, faces(61))
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())
    with pytest.raises(ValueError, match="shape"):
        write_session(tmp_path / "t", audio, 24000, faces(60)[:, :61])
    with pytest.raises(ValueError, match="sample rate"):
        write_session(tmp_path / "u", audio, 0, faces(60))


def test_frames_round_up_like_types(tmp_path: Path) -> None:
    audio = tone(401, 24000)  # 401 samples = 1.0025 frames -> 2 frames
    write_session(tmp_path, audio, 24000, faces(2))
    assert read_session(tmp_path).take.frames == 2


def test_read_reports_mismatch_as_warning(tmp_path: Path) -> None:
    audio = tone(24000, 24000)
    write_session(tmp_path, audio, 24000, faces(60))
    shapes = tmp_path / SHAPES_NAME
    shapes.write_text("\n".join(shapes.read_text().splitlines()[:-1]) + "\n")
    session = read_session(tmp_path)
    assert session.take.frames == 59
    assert session.warning is not None
    assert "59 frames" in session.warning and "calls for 60" in session.warning


def test_read_session_accepts_an_app_take_and_uses_its_fps(tmp_path: Path) -> None:
    sf.write(str(tmp_path / AUDIO_NAME), tone(48000, 24000), 24000, subtype="PCM_16")
    write_livelink_app_csv(tmp_path / SHAPES_NAME, faces(60), 30, 10 * 3600.0)
    session = read_session(tmp_path)
    assert session.take.format == "livelink_app" and session.take.fps == 30
    assert session.warning is None
    assert expected_frames(48000, 24000, 30) == 60


def test_read_session_mixes_stereo_to_mono(tmp_path: Path) -> None:
    left = tone(2400, 24000)
    write_session(tmp_path, left, 24000, faces(6))
    sf.write(str(tmp_path / AUDIO_NAME), np.stack([left, np.zeros_like(left)], axis=1), 24000, subtype="PCM_16")
    session = read_session(tmp_path)
    assert session.audio.ndim == 1 and session.warning is None
    assert np.max(np.abs(session.audio - left / 2)) <= 1.5 * PCM16_STEP


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_session(tmp_path / "missing")
    (tmp_path / SHAPES_NAME).write_text("x\n")
    with pytest.raises(InputError, match=AUDIO_NAME):
        read_session(tmp_path)
    (tmp_path / AUDIO_NAME).write_bytes(b"not a wav at all")
    with pytest.raises(InputError, match="cannot decode"):
        read_session(tmp_path)


def test_new_session_folder_is_a_fresh_uuid_dir(tmp_path: Path) -> None:
    first = new_session_folder(tmp_path / "generated")
    second = new_session_folder(tmp_path / "generated")
    assert first.is_dir() and second.is_dir() and first != second
    assert first.parent == tmp_path / "generated"
    assert uuid.UUID(first.name).version == 4
    assert not any(first.iterdir())


# ------------------------------------------------------------------------------------ SessionWriter


def test_incremental_writer_matches_one_shot_write(tmp_path: Path) -> None:
    rate = 22050
    audio = tone(rate * 2 + 100, rate)
    values = faces(frames_for_samples(len(audio), rate))
    write_session(tmp_path / "whole", audio, rate, values)
    with SessionWriter(tmp_path / "live", rate) as writer:
        for start in range(0, len(audio), 1000):
            writer.append_audio(audio[start : start + 1000])
        for start in range(0, len(values), 7):
            writer.append_frames(values[start : start + 7])
        assert (writer.samples, writer.frames) == (len(audio), len(values))
    for name in (AUDIO_NAME, SHAPES_NAME):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "live" / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "live").iterdir()) == [AUDIO_NAME, SHAPES_NAME]


def test_crash_mid_way_leaves_no_final_files(tmp_path: Path) -> None:
    writer = SessionWriter(tmp_path, 24000)
    writer.append_audio(tone(4800, 24000))
    writer.append_frames(faces(12))
    # A process dying here leaves only the temporary names behind.
    assert not (tmp_path / AUDIO_NAME).exists() and not (tmp_path / SHAPES_NAME).exists()
    assert (tmp_path / (AUDIO_NAME + ".part")).exists() and (tmp_path / (SHAPES_NAME + ".part")).exists()
    writer.close()
    assert read_session(tmp_path).warning is None


def test_exception_in_block_aborts(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), SessionWriter(tmp_path, 24000) as writer:
        writer.append_audio(tone(4800, 24000))
        raise RuntimeError("barge-in went wrong")
    assert writer.closed
    assert list(tmp_path.iterdir()) == []


def test_close_holds_last_frame_when_face_is_short(tmp_path: Path) -> None:
    values = faces(10)
    with SessionWriter(tmp_path, 24000) as writer:
        writer.append_audio(tone(24000, 24000))
        writer.append_frames(values)
    session = read_session(tmp_path)
    assert session.warning is None and session.take.frames == 60
    np.testing.assert_array_equal(session.values[:10], values)
    np.testing.assert_array_equal(session.values[10:], np.repeat(values[-1:], 50, axis=0))


def test_close_pads_silence_when_face_outlasts_audio(tmp_path: Path) -> None:
    audio = tone(2400, 24000)  # 6 frames of audio
    with SessionWriter(tmp_path, 24000) as writer:
        writer.append_audio(audio)
        writer.append_frames(faces(9))
    session = read_session(tmp_path)
    assert session.warning is None and session.take.frames == 9
    assert len(session.audio) == 8 * 400 + 1  # the smallest length that 9 frames cover
    assert not session.audio[2400:].any()
    assert np.max(np.abs(session.audio[:2400] - audio)) <= 1.5 * PCM16_STEP


def test_empty_utterance_and_closed_writer(tmp_path: Path) -> None:
    writer = SessionWriter(tmp_path, 24000)
    assert writer.close() == tmp_path
    assert writer.close() == tmp_path  # idempotent
    session = read_session(tmp_path)
    assert len(session.audio) == 0 and session.take.frames == 0 and session.warning is None
    with pytest.raises(ValueError, match="closed"):
        writer.append_frames(faces(1))


def test_writer_clips_audio_and_rejects_bad_frames(tmp_path: Path) -> None:
    with SessionWriter(tmp_path, 24000) as writer:
        writer.append_audio(np.array([2.0, -3.0, 0.5], dtype=np.float32))
        with pytest.raises(ValueError, match="finite"):
            writer.append_frames(np.full((1, 68), np.inf, dtype=np.float32))
        writer.append_frames(faces(1))
    session = read_session(tmp_path)
    assert session.audio[0] == pytest.approx(1.0, abs=2 * PCM16_STEP)
    assert session.audio[1] == pytest.approx(-1.0, abs=2 * PCM16_STEP)
    assert parse_take((tmp_path / SHAPES_NAME).read_text()).frames == 1
