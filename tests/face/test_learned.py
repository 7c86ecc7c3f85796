"""The learned (audio-driven) face: streaming = offline, the lookahead bound, the ONNX export, and that the
shipped model closes the lips on p/b/m and opens the jaw on open vowels of a voice it was not trained on."""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from facecast.audio import split_chunks
from facecast.errors import ConfigError, InputError
from facecast.face.arkit import INDEX
from facecast.face.features import FeatureConfig, FeatureStream, features
from facecast.face.learned import DEFAULT_MODEL, LearnedAnimator, load_model
from facecast.face.phonetic import PhoneticAnimator
from facecast.face.visemes import lookup
from facecast.types import FPS, AudioChunk, SpeechChunk, frames_for_samples

JAW, CLOSE = INDEX["JawOpen"], INDEX["MouthClose"]
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")


def _speechlike(seconds: float, rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(2, 5) * t), 0, None)
    return (0.3 * envelope * (np.sign(np.sin(2 * np.pi * 130 * t)) + 0.5 * rng.standard_normal(n))).astype(np.float32)


def _stream_frames(animator: LearnedAnimator, pcm: np.ndarray, rate: int, sizes: np.ndarray) -> np.ndarray:
    stream = animator.stream()
    parts = []
    position = 0
    for size in sizes:
        if position >= len(pcm):
            break
        frames = stream.push(pcm[position : position + size], rate)
        position += int(size)
        if frames is not None:
            assert frames.start == sum(len(p) for p in parts)
            parts.append(frames.values)
    frames = stream.end()
    if frames is not None:
        parts.append(frames.values)
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def animator() -> LearnedAnimator:
    return LearnedAnimator()


# ------------------------------------------------------------------------------------------ features


@pytest.mark.parametrize("seed", [0, 1])
def test_feature_stream_equals_whole_signal(seed: int) -> None:
    rng = np.random.default_rng(seed)
    config = FeatureConfig()
    pcm = rng.standard_normal(24_000).astype(np.float32) * 0.1
    frames = frames_for_samples(len(pcm), config.rate) + 4
    whole = features(pcm, frames, config)
    stream = FeatureStream(config)
    parts, position = [], 0
    while position < len(pcm):
        size = int(rng.integers(1, 2_000))
        parts.append(stream.push(pcm[position : position + size]))
        position += size
    parts.append(stream.finish(frames))
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=0, atol=1e-5)  # BLAS blocking: ~2e-7
    assert whole.shape == (frames, config.width)


def test_feature_reads_only_its_window() -> None:
    config = FeatureConfig()
    pcm = np.random.default_rng(3).standard_normal(12_000).astype(np.float32)
    base = features(pcm, 30, config)
    frame = 10
    changed = pcm.copy()
    changed[frame * config.hop + config.reach_after :] += 1.0  # everything after frame 10's window
    changed[: frame * config.hop - config.reach_before] -= 1.0  # and everything before it
    np.testing.assert_allclose(features(changed, 30, config)[frame], base[frame], rtol=0, atol=1e-5)
    assert not np.array_equal(features(changed, 30, config)[frame + 1], base[frame + 1])


# --------------------------------------------------------------------------------- streaming runtime


@pytest.mark.parametrize(("rate", "seed"), [(22_050, 0), (16_000, 1), (24_000, 2), (48_000, 3)])
def test_streaming_equals_offline_for_any_chunking(animator: LearnedAnimator, rate: int, seed: int) -> None:
    pcm = _speechlike(3.1, rate, seed)
    offline = animator.render(pcm, rate)
    assert offline.shape == (frames_for_samples(len(pcm), rate), 68)
    rng = np.random.default_rng(seed)
    for sizes in (rng.integers(1, 3_000, 10_000), rng.integers(1, 40, 100_000), np.array([len(pcm)])):
        streamed = _stream_frames(animator, pcm, rate, sizes)
        assert streamed.shape == offline.shape
        np.testing.assert_allclose(streamed, offline, atol=2e-5)


def test_frames_are_emitted_as_soon_as_the_lookahead_allows(animator: LearnedAnimator) -> None:
    model = animator.model
    rate = model.features.rate  # no resampler in the way: the exact rule
    pcm = _speechlike(2.0, rate, 5)
    stream = animator.stream()
    emitted = 0
    for start in range(0, len(pcm), 160):
        frames = stream.push(pcm[start : start + 160], rate)
        emitted += 0 if frames is None else len(frames.values)
        received = min(len(pcm), start + 160)
        # frame i needs its features' window `delay` frames later: i*hop + delay*hop + reach_after samples
        expected = max(0, (received - model.features.reach_after) // model.features.hop + 1 - model.delay)
        assert emitted == expected
    assert emitted > 0.9 * frames_for_samples(len(pcm), rate) - model.delay - 2


@pytest.mark.parametrize("rate", [24_000, 22_050])
def test_a_frame_never_depends_on_audio_more_than_100ms_later(animator: LearnedAnimator, rate: int) -> None:
    assert animator.lookahead <= 0.1
    pcm = _speechlike(2.0, rate, 7)
    base = animator.render(pcm, rate)
    for cut_s in (0.5, 1.0, 1.37):
        changed = pcm.copy()
        cut = int(cut_s * rate)
        changed[cut:] = np.random.default_rng(int(cut_s * 100)).standard_normal(len(pcm) - cut) * 0.5
        after = animator.render(changed, rate)
        safe = [i for i in range(len(base)) if i / FPS + 0.1 <= cut / rate]
        # at 24 kHz bit-identical; through the resampler, its filter's far tail leaks ~1e-7
        np.testing.assert_allclose(after[safe], base[safe], rtol=0, atol=0 if rate == 24_000 else 1e-5)
        assert not np.allclose(after[safe[-1] + 8 :], base[safe[-1] + 8 :])  # the change does show later


def test_output_frames_hold_only_the_mouth(animator: LearnedAnimator) -> None:
    frames = animator.render(_speechlike(1.0, 22_050, 9), 22_050)
    mouth = animator.model.channel_index
    others = np.setdiff1d(np.arange(68), [*mouth, INDEX["Neutral"]])
    assert np.all(frames[:, others] == 0.0)
    assert np.all(frames[:, INDEX["Neutral"]] == 1.0)
    assert frames.min() >= 0.0 and frames.max() <= 1.0


@pytest.mark.parametrize("samples", [0, 1, 100, 367, 368, 5_000])
def test_frame_count_matches_the_audio(animator: LearnedAnimator, samples: int) -> None:
    assert len(animator.render(np.zeros(samples, np.float32), 22_050)) == frames_for_samples(samples, 22_050)


async def test_animate_streams_speech_chunks(animator: LearnedAnimator) -> None:
    pcm = _speechlike(1.5, 22_050, 11)

    async def speech() -> AsyncIterator[SpeechChunk]:
        for chunk in split_chunks(pcm, 22_050, 20.0):
            yield SpeechChunk(chunk)

    batches = [f async for f in animator.animate(speech())]
    assert len(batches) > 10  # emitted while the audio arrives, not all at the end
    assert [b.start for b in batches] == list(np.cumsum([0] + [len(b.values) for b in batches[:-1]]))
    np.testing.assert_allclose(np.concatenate([b.values for b in batches]), animator.render(pcm, 22_050), atol=2e-5)


async def test_animate_rejects_a_rate_change(animator: LearnedAnimator) -> None:
    async def speech() -> AsyncIterator[SpeechChunk]:
        yield SpeechChunk(AudioChunk(np.zeros(2205, np.float32), 22_050))
        yield SpeechChunk(AudioChunk(np.zeros(1600, np.float32), 16_000, 2205))

    with pytest.raises(InputError):
        async for _ in animator.animate(speech()):
            pass


# ------------------------------------------------------------------------------------ model loading


def test_the_shipped_model_is_small_and_described() -> None:
    info = json.loads(DEFAULT_MODEL.read_text())
    onnx = DEFAULT_MODEL.with_name(info["onnx"])
    assert onnx.stat().st_size <= 20_000_000
    model = load_model()
    assert model.delay * model.features.hop + model.features.reach_after <= 0.1 * model.features.rate
    assert "JawOpen" in model.channels and "MouthClose" in model.channels


def test_a_damaged_or_missing_model_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        LearnedAnimator(tmp_path / "missing.json").model  # noqa: B018
    info = json.loads(DEFAULT_MODEL.read_text())
    shutil.copy(DEFAULT_MODEL, tmp_path / "mouth.json")
    (tmp_path / info["onnx"]).write_bytes(DEFAULT_MODEL.with_name(info["onnx"]).read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ConfigError, match="checksum"):
        LearnedAnimator(tmp_path / "mouth.json").model  # noqa: B018


def test_the_numpy_step_path_equals_onnxruntime() -> None:
    model = load_model()
    assert model.step is not None  # the shipped model carries its step weights
    x = np.random.default_rng(3).normal(0.0, 3.0, (60, model.features.width)).astype(np.float32) - 6.0
    whole, whole_states = model.run(x, model.initial_states())  # 60 steps: one onnxruntime call
    parts, states = [], model.initial_states()
    for size in (1, 2, 1, 8, 3, 1, 1, 5, 2, 1, 7, 4, 1, 1, 6, 2, 3, 1, 2, 8):  # <= 8 steps: numpy
        out, states = model.run(x[sum(len(p) for p in parts) :][:size], states)
        parts.append(out)
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-5)
    for got, want in zip(states, whole_states, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_damaged_step_weights_are_a_config_error(tmp_path: Path) -> None:
    info = json.loads(DEFAULT_MODEL.read_text())
    for name in ("mouth.json", info["onnx"], info["step"]["file"]):
        shutil.copy(DEFAULT_MODEL.with_name(name), tmp_path / name)
    step = tmp_path / info["step"]["file"]
    step.write_bytes(step.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ConfigError, match="step weights"):
        LearnedAnimator(tmp_path / "mouth.json").model  # noqa: B018


def test_make_face_builds_the_learned_animator() -> None:
    from facecast.services import make_face

    assert isinstance(make_face("learned"), LearnedAnimator)
    with pytest.raises(ConfigError):
        make_face("learned:/nonexistent/mouth.json")


@needs_torch
def test_onnx_export_matches_the_torch_model(tmp_path: Path) -> None:
    import torch
    from training.export import export_onnx
    from training.model import ModelConfig, MouthNet

    torch.manual_seed(0)
    net = MouthNet(ModelConfig(n_in=80, n_out=18, width=32, dilations=(1, 2, 4), delay=4)).eval()
    with torch.no_grad():
        net.mean.normal_()
        net.std.uniform_(0.5, 2.0)
    meta = {"features": FeatureConfig().to_json(), "channels": list(load_model().channels)}
    export_onnx(net, tmp_path / "mouth.onnx", meta)
    model = load_model(tmp_path / "mouth.json")
    x = torch.randn(1, 123, 80) * 2
    with torch.no_grad():
        want = net(x, net.initial_states(1))[0][0].numpy()
    got, states = model.run(x[0, :50].numpy(), model.initial_states())
    rest, _ = model.run(x[0, 50:].numpy(), states)
    np.testing.assert_allclose(np.concatenate([got, rest]), want, atol=1e-4)
    assert model.step is not None  # the export wrote the numpy step weights too: small calls use them
    outs, states = [], model.initial_states()
    for start in range(0, 123, 3):
        out, states = model.run(x[0, start : start + 3].numpy(), states)
        outs.append(out)
    np.testing.assert_allclose(np.concatenate(outs), want, atol=1e-4)


# ---------------------------------------------------------------- held-out voice: lips and jaw move right


_SPEAK = """
import asyncio, json, sys
import numpy as np
from facecast.audio import write_wav
from facecast.tts.espeak import EspeakTTS

async def main():
    tts = EspeakTTS(sys.argv[1], rate=170, pitch=45)
    chunks = [c async for c in tts.synthesize(sys.argv[2])]
    write_wav(sys.argv[3], np.concatenate([c.audio.pcm for c in chunks]), tts.sample_rate)
    print(json.dumps([(p.symbol, p.start, p.end) for c in chunks for p in c.phonemes]))

asyncio.run(main())
"""


def test_heldout_voice_closes_on_pbm_and_opens_on_open_vowels(animator: LearnedAnimator, tmp_path: Path) -> None:
    import subprocess
    import sys

    from facecast.audio import read_audio

    # en-gb-scotland and the m4 variant are held out of training (training/make_dataset.py HELDOUT_*).
    # Synthesised in a child process: libespeak-ng keeps state between requests (timing shifts by a few
    # ms), which would make this test change the input of every later espeak test in this process.
    text = "Bob bought a big map. Pam calmly parked by the harbour, and my father paid."
    wav = tmp_path / "heldout.wav"
    done = subprocess.run(
        [sys.executable, "-c", _SPEAK, "en-gb-scotland+m4", text, str(wav)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    phonemes = json.loads(done.stdout)
    pcm, rate = read_audio(wav)
    values = animator.render(pcm, rate)
    closures, opens = [], []
    for symbol, start, end in phonemes:
        lo = max(0, int(start * FPS / rate) - 1)
        hi = min(len(values), int(np.ceil(end * FPS / rate)) + 1)
        visemes = lookup(symbol).visemes
        if visemes == ("PP",):
            closures.append(values[lo:hi, CLOSE].max())
        elif visemes[0] in ("aa", "ah"):
            centre = min(len(values) - 1, round((start + end) / 2 * FPS / rate))
            opens.append((values[centre, JAW], values[centre, CLOSE]))
    assert len(values) == frames_for_samples(len(pcm), rate)
    assert len(closures) >= 8 and len(opens) >= 6
    assert np.mean(np.array(closures) >= 0.3) >= 0.85, closures
    jaw_open = np.array([o[0] for o in opens])
    assert np.mean(jaw_open >= 0.2) >= 0.85, jaw_open
    assert all(o[1] < 0.3 for o in opens)


async def test_neural_voice_closes_on_pbm_and_opens_on_open_vowels(animator: LearnedAnimator) -> None:
    """The TTS the learned face animates at run time is neural and without timing; hibari has timing, so it
    can judge it. The sentence is not a training one; the espeak-ng-only model closed the lips on about a
    quarter of a neural voice's p/b/m (docs/face-model.md) and fails here."""
    from facecast.tts.hibari import HibariTTS

    tts = HibariTTS()
    text = "Bob bought a big map. Pam calmly parked by the harbour, and my father paid."
    chunks = [c async for c in tts.synthesize(text)]
    pcm = np.concatenate([c.audio.pcm for c in chunks])
    rate = tts.sample_rate
    values = animator.render(pcm, rate)
    phonemes = [p for chunk in chunks for p in chunk.phonemes]
    target = PhoneticAnimator().render(phonemes, len(pcm), rate)
    closures, opens = [], []
    for p in phonemes:
        lo = max(0, int(p.start * FPS / rate) - 1)
        hi = min(len(values), int(np.ceil(p.end * FPS / rate)) + 1)
        visemes = lookup(p.symbol, p.alphabet).visemes
        if visemes == ("PP",):
            closures.append(values[lo:hi, CLOSE].max())
        elif visemes[0] in ("aa", "ah"):
            centre = min(len(values) - 1, round((p.start + p.end) / 2 * FPS / rate))
            opens.append((values[centre, JAW], target[centre, JAW], values[centre, CLOSE]))
    assert len(closures) >= 12 and len(opens) >= 6
    assert np.mean(np.array(closures) >= 0.3) >= 0.85, closures
    # open as in the real-speech scores: at least half the phonetic face's jaw there (misaki's weak ɐ/ə
    # open it less than espeak-ng's open vowels), and at least 0.1
    opened = [jaw >= max(0.5 * want, 0.1) for jaw, want, _ in opens]
    assert np.mean(opened) >= 0.85, opens
    assert all(o[2] < 0.3 for o in opens)


def test_cli_animate_writes_a_session(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from facecast.audio import write_wav
    from facecast.cli import main
    from facecast.takefolder import read_session

    pcm = _speechlike(1.3, 16_000, 13)
    write_wav(tmp_path / "in.wav", pcm, 16_000)
    assert main(["animate", str(tmp_path / "in.wav"), "--out", str(tmp_path / "take")]) == 0
    session = read_session(tmp_path / "take")
    assert session.warning is None and session.rate == 16_000
    assert len(session.values) == frames_for_samples(len(pcm), 16_000)
    assert np.abs(session.values[:, JAW]).max() > 0  # the mouth moves
    assert main(["animate", str(tmp_path / "in.wav"), "--out", str(tmp_path / "x"), "--face", "phonetic"]) == 1
    assert "audio-driven" in capsys.readouterr().err
