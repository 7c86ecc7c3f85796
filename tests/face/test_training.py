"""training/train.py: the closure weighting of the loss and training on several datasets (tiny, CPU)."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from facecast.face.features import FeatureConfig

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")

CHANNELS = ["JawOpen", "MouthClose", "MouthFunnel"]
DELAY = 4


def test_closure_weight_makes_errors_on_closed_lips_cost_more() -> None:
    import torch
    from training.train import _loss

    target = torch.zeros(1, 20, len(CHANNELS))
    target[0, 5, 1] = 0.65  # the lips close on frame 5 only
    mask = torch.ones(1, 20)
    weights = torch.ones(len(CHANNELS))
    on_closure, elsewhere = target.clone(), target.clone()
    on_closure[0, 5, 0] += 0.2  # the same jaw error, on the closure frame or on an open one
    elsewhere[0, 12, 0] += 0.2
    plain = [_loss(p, target, mask, weights).item() for p in (on_closure, elsewhere)]
    assert plain[0] == pytest.approx(plain[1])
    weighted = [_loss(p, target, mask, weights, (1, 3.0)).item() for p in (on_closure, elsewhere)]
    assert weighted[1] == pytest.approx(plain[1])  # an open frame costs what it did
    assert weighted[0] > 1.5 * weighted[1]  # the closure frame's error term counts 4x (the velocity term does not)


def _dataset(folder: Path, utterances: int, seed: int, features: dict[str, object] | None = None) -> Path:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 40, utterances)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    feats = [rng.normal(size=(n + DELAY, 80)) for n in lengths]
    targets = rng.uniform(0, 1, (int(offsets[-1]), len(CHANNELS)))
    folder.mkdir()
    for split in ("train", "eval"):
        np.savez(
            folder / f"{split}.npz",
            features=np.concatenate(feats).astype(np.float16),
            targets=targets.astype(np.float16),
            offsets=offsets,
            delay=np.asarray(DELAY),
        )
    config = {"features": features or FeatureConfig().to_json(), "delay": DELAY, "channels": CHANNELS}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _args(data: list[Path], out: Path, closure_weight: float = 0.0) -> argparse.Namespace:
    return argparse.Namespace(
        data=[str(d) for d in data],
        out=str(out),
        epochs=1,
        batch=4,
        lr=1e-3,
        width=8,
        seed=1,
        threads=1,
        closure_weight=closure_weight,
        init=None,
    )


def test_training_reads_every_dataset_and_holds_out_the_first_ones(tmp_path: Path) -> None:
    from training.train import train

    first, second = _dataset(tmp_path / "a", 5, 1), _dataset(tmp_path / "b", 3, 2)
    (second / "eval.npz").unlink()  # only the first dataset's held-out split is read
    summary = train(_args([first, second], tmp_path / "model", closure_weight=2.0))
    assert summary["train_clips"] == 8
    assert [Path(d["data"]).name for d in summary["datasets"]] == ["a", "b"]
    assert (tmp_path / "model" / "mouth.pt").exists()
    assert json.loads((tmp_path / "model" / "train_log.json").read_text())["args"]["closure_weight"] == 2.0


def test_a_dataset_with_other_features_is_refused(tmp_path: Path) -> None:
    from training.train import train

    other = {**FeatureConfig().to_json(), "n_mels": 41}
    first, second = _dataset(tmp_path / "a", 3, 1), _dataset(tmp_path / "b", 3, 2, features=other)
    with pytest.raises(SystemExit, match="other features"):
        train(_args([first, second], tmp_path / "model"))
