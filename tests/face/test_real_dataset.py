"""training/make_real_dataset.py: REAL recordings with transcripts become training data whose target is the
phonetic face of their forced-alignment phones. Built here from a LibriVox clip of pocketsphinx's source
distribution (evaluation material: it is only read, never trained on), a transcript with a word outside the
dictionary, and a non-speech prompt."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from facecast.audio import write_wav
from facecast.face.features import FeatureConfig
from facecast.speechdata import clips

LIBRIVOX = "sense_and_sensibility_01_austen_64kb-0920"
LIBRIVOX_OTHER = "sense_and_sensibility_01_austen_64kb-0880"


def test_transcripts_are_read_and_normalised_for_alignment(tmp_path: Path) -> None:
    from training.make_real_dataset import read_texts, speech_text

    listing = tmp_path / "texts.txt.gz"
    lines = "; Core sounds\n\ndictate/pause: pause\nbeep: [this is a simple beep tone]\nvm-n: Press 2 or # now.\n"
    listing.write_bytes(gzip.compress(lines.encode()))
    texts = read_texts(listing)
    assert texts == {"dictate/pause": "pause", "beep": "[this is a simple beep tone]", "vm-n": "Press 2 or # now."}
    assert speech_text(texts["beep"]) is None  # a description, no words spoken
    assert speech_text(texts["vm-n"]) == "press two or pound now"
    assert speech_text("Press * to toggle") == "press star to toggle"


def test_a_real_recording_becomes_aligned_training_data(tmp_path: Path) -> None:
    from training.make_dataset import DELAY, MOUTH_CHANNELS
    from training.make_real_dataset import build
    from training.train import load_split

    clip = {c.name: c for c in clips("read")}[LIBRIVOX]
    audio_dir = tmp_path / "audio"
    (audio_dir / "read").mkdir(parents=True)
    shutil.copy(clip.path, audio_dir / "read" / "clip.wav")
    write_wav(audio_dir / "beep.wav", np.sin(np.arange(8000) / 3).astype(np.float32) * 0.3, 16000)
    write_wav(audio_dir / "oov.wav", np.zeros(8000, np.float32), 16000)
    texts = {"read/clip": clip.text, "beep": "[beep]", "oov": "zxqvw blorptang"}
    data, heldout, records = build(audio_dir, texts, augmented=2, seed=3, prefix="test", speaker="reader")
    assert heldout is None  # nothing held out unless asked

    by_name = {r["name"]: r for r in records}
    assert by_name["beep"]["skipped"] == "no words"
    assert "cannot align" in str(by_name["oov"]["skipped"])
    assert by_name["read/clip"]["seconds"] > 2 and "skipped" not in by_name["read/clip"]
    # one recording, stored clean and twice degraded: three clips of the same target
    offsets = data["offsets"]
    assert len(offsets) == 4
    frames = int(offsets[1])
    assert offsets[2] - offsets[1] == frames and offsets[3] - offsets[2] == frames
    assert data["features"].shape == (3 * (frames + DELAY), FeatureConfig().width)
    targets = data["targets"].astype(np.float32)
    assert targets.shape == (3 * frames, len(MOUTH_CHANNELS))
    assert np.array_equal(targets[:frames], targets[frames : 2 * frames])
    # the target is the phonetic face of the alignment: lips closed on the p/b/m phones, the jaw open on vowels
    close, jaw = targets[:frames, MOUTH_CHANNELS.index("MouthClose")], targets[:frames, 0]
    assert (close >= 0.3).mean() > 0.03 and jaw.max() > 0.3
    # the clean copy's features differ from the degraded ones (the augmentation ran)
    feats = data["features"].astype(np.float32)
    assert not np.allclose(feats[: frames + DELAY], feats[frames + DELAY : 2 * (frames + DELAY)])
    # the layout train.py reads
    path = tmp_path / "train.npz"
    np.savez(path, **data)
    xs, ys, delay = load_split(path)
    assert delay == DELAY and [len(y) for y in ys] == [frames] * 3 and len(xs[0]) == frames + DELAY


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg decodes .g722 (apt-get install ffmpeg)")
def test_g722_recordings_are_decoded_at_16_khz(tmp_path: Path) -> None:
    from training.make_real_dataset import load_audio

    source = tmp_path / "tone.wav"
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    write_wav(source, tone, 16000)
    encoded = tmp_path / "tone.g722"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(source), "-f", "g722", str(encoded)], check=True)
    audio = load_audio(encoded)
    assert abs(len(audio) - 16000) < 400
    spectrum = np.abs(np.fft.rfft(audio[2000:14000]))
    assert abs(np.argmax(spectrum) * 16000 / 12000 - 440) < 5  # the tone, at its pitch: decoded at 16 kHz


def test_held_out_recordings_stay_out_of_training_and_are_scored_by_the_evaluation(tmp_path: Path) -> None:
    import json

    from training.make_real_dataset import held_out, main

    found = {c.name: c for c in clips("read")}
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    lines = []
    for k, name in enumerate((LIBRIVOX_OTHER, LIBRIVOX)):
        shutil.copy(found[name].path, audio_dir / f"line{k}.wav")
        lines.append(f"line{k}: {found[name].text}")
    (tmp_path / "script.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "dataset"
    argv = ["make_real_dataset.py", "--out", str(out), "--audio", str(audio_dir)]
    argv += ["--texts", str(tmp_path / "script.txt"), "--augmented", "1", "--hold-out", "2"]
    argv += ["--prefix", "t", "--speaker", "reader"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.argv", argv)
        main()
    records = {r["name"]: r for r in json.loads((out / "clips.json").read_text())}
    assert [records["line0"]["held_out"], records["line1"]["held_out"]] == [False, True]  # every 2nd
    train, evaluation = np.load(out / "train.npz"), np.load(out / "eval.npz")
    assert len(train["offsets"]) == 3  # line0 clean and degraded
    assert len(evaluation["offsets"]) == 2  # line1 clean only
    config = json.loads((out / "config.json").read_text())
    assert config["real"]["recordings"] == 1 and config["real"]["held_out"] == 1
    [item] = held_out(out)  # what evaluate.py --speaker scores: the held-out line with its alignment
    assert item.clip.speaker == "reader" and item.rate == 16000
    assert {"P", "B", "M"} & {p for p, _, _ in item.phones}
    assert abs(len(item.audio) / 16000 - float(records["line1"]["seconds"])) < 0.01
    # evaluate.py --speaker: the real-speech scores of the faces on that held-out line
    import argparse

    from training.evaluate import speaker_scores

    args = argparse.Namespace(model=None, baseline=None, no_rhubarb=True, recognizer=None)
    scores = speaker_scores(out, args)
    assert scores["clips"] == {"held-out": [item.clip.name]} and scores["rhubarb"] == "not run"
    rows = scores["held-out"]
    assert list(rows) == ["phonetic (alignment phones)", "learned (shipped)"]
    closures = sum(p in ("P", "B", "M") for p, _, _ in item.phones)
    ceiling, learned = rows["phonetic (alignment phones)"]["all"], rows["learned (shipped)"]["all"]
    assert ceiling["closures"] == learned["closures"] == closures and ceiling["closure_recall"] == 1.0
    assert learned["closure_recall"] >= 0.5  # the shipped face on a real reader (the sanity bound of test_real_speech)
