"""Train the learned mouth model (CPU, seeded, reproducible) on the data of ``make_dataset.py``.

    .venv/bin/python training/train.py --data out/face-dataset --out out/face-model --epochs 9 --width 96 --seed 1

Whole utterances are batched (padded, the padding masked out of the loss) from a zero initial state,
which is exactly how the runtime starts an utterance. Loss: channel-weighted squared error (JawOpen and
the lip-closure curves weigh more) plus the squared error of the frame-to-frame velocity (against
jitter). AdamW with a one-cycle learning rate. The same seed, data and thread count give the same
weights (``torch.use_deterministic_algorithms``). Writes ``mouth.pt`` (state dict + configs) and
``train_log.json``; ``export.py`` turns it into the shipped ONNX model.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

try:  # run as a script (python training/train.py) or as a module (training.train)
    from model import ModelConfig, MouthNet  # type: ignore[import-not-found,no-redef]
except ImportError:  # pragma: no cover
    from training.model import ModelConfig, MouthNet

__all__ = ["load_split", "batches", "train", "main"]

_CLOSED = 0.3  # target MouthClose at or above: the lips are closed (the evaluations' definition)
_HEAVY = {
    "JawOpen": 3.0,
    "MouthClose": 3.0,
    "MouthPressLeft": 1.5,
    "MouthPressRight": 1.5,
    "MouthRollLower": 1.5,
    "MouthFunnel": 1.5,
    "MouthPucker": 1.5,
}


def load_split(path: Path) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Per utterance: features (frames + delay, width) float32 and targets (frames, channels) float32."""
    data = np.load(path)
    offsets, delay = data["offsets"], int(data["delay"])
    feats, targets = data["features"].astype(np.float32), data["targets"].astype(np.float32)
    xs, ys = [], []
    for k in range(len(offsets) - 1):
        a, b = int(offsets[k]), int(offsets[k + 1])
        xs.append(feats[a + k * delay : b + (k + 1) * delay])
        ys.append(targets[a:b])
    return xs, ys, delay


def batches(
    xs: list[np.ndarray], ys: list[np.ndarray], delay: int, size: int, rng: random.Random
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Shuffled batches of similar-length utterances: (features, targets aligned to output steps, mask)."""
    order = sorted(range(len(xs)), key=lambda k: (len(ys[k]), rng.random()))
    groups = [order[i : i + size] for i in range(0, len(order), size)]
    rng.shuffle(groups)
    out = []
    for group in groups:
        steps = max(len(xs[k]) for k in group)
        x = np.zeros((len(group), steps, xs[0].shape[1]), np.float32)
        y = np.zeros((len(group), steps, ys[0].shape[1]), np.float32)
        m = np.zeros((len(group), steps), np.float32)
        for row, k in enumerate(group):
            x[row, : len(xs[k])] = xs[k]
            x[row, len(xs[k]) :] = xs[k][-1]
            y[row, delay : delay + len(ys[k])] = ys[k]  # output step m is frame m - delay
            m[row, delay : delay + len(ys[k])] = 1.0
        out.append((torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(m)))
    return out


def _loss(
    pred: torch.Tensor,
    y: torch.Tensor,
    m: torch.Tensor,
    weights: torch.Tensor,
    closure: tuple[int, float] | None = None,
) -> torch.Tensor:
    err = ((pred - y) ** 2 * weights).sum(-1)
    if closure is not None:  # frames whose target closes the lips weigh (1 + extra) times as much
        channel, extra = closure
        err = err * (1.0 + extra * (y[..., channel] >= _CLOSED).float())
    vel = (((pred[:, 1:] - pred[:, :-1]) - (y[:, 1:] - y[:, :-1])) ** 2 * weights).sum(-1)
    mv = m[:, 1:] * m[:, :-1]
    return (err * m).sum() / m.sum() + 2.0 * (vel * mv).sum() / mv.sum()


def _jaw_corr(model: MouthNet, xs: list[np.ndarray], ys: list[np.ndarray], delay: int) -> float:
    preds, targets = [], []
    with torch.no_grad():
        for x, y in zip(xs, ys, strict=True):
            out, _ = model(torch.from_numpy(x)[None], model.initial_states())
            preds.append(out[0, delay : delay + len(y), 0].clamp(0, 1).numpy())
            targets.append(y[:, 0])
    return float(np.corrcoef(np.concatenate(preds), np.concatenate(targets))[0, 1])


def init_from(path: Path, config: ModelConfig) -> MouthNet:
    """A :class:`MouthNet` holding the weights of an exported model (``mouth.json`` + ONNX; the feature
    normalisation stays folded into the input layer: mean 0, std 1) or of a ``mouth.pt`` checkpoint."""
    model = MouthNet(config)
    if path.suffix == ".pt":
        data = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(data["state_dict"], strict=True)
        return model
    import onnx
    from onnx import numpy_helper

    info = json.loads(path.read_text())
    init = {
        i.name: torch.from_numpy(numpy_helper.to_array(i).copy())
        for i in onnx.load(str(path.with_name(info["onnx"]))).graph.initializer
    }
    if tuple(info["model"]["dilations"]) != config.dilations or info["model"]["width"] != config.width:
        raise SystemExit(f"--init {path} has another shape ({info['model']}) than this run ({config})")
    state = {"mean": torch.zeros(config.n_in), "std": torch.ones(config.n_in)}
    state["inp.weight"], state["inp.bias"] = init["inp.weight"][:, :, 0], init["inp.bias"]
    for i in range(len(config.dilations)):
        w = init[f"convs.{i}.weight"]  # (out, in, kernel) -> Linear over taps stacked oldest first
        state[f"convs.{i}.weight"] = w.permute(0, 2, 1).reshape(config.width, config.kernel * config.width)
        state[f"convs.{i}.bias"] = init[f"convs.{i}.bias"]
        state[f"mix.{i}.weight"], state[f"mix.{i}.bias"] = init[f"mix.{i}.weight"][:, :, 0], init[f"mix.{i}.bias"]
    state["out.weight"], state["out.bias"] = init["out.weight"][:, :, 0], init["out.bias"]
    model.load_state_dict(state, strict=True)
    return model


def _dataset_settings(folder: Path) -> dict[str, object]:
    """What ``make_dataset.py`` recorded of a dataset (seed, voice mix, ...), for the model's description."""
    config = json.loads((folder / "config.json").read_text())
    return {"data": str(folder), **{k: v for k, v in config.items() if k not in ("features", "channels")}}


def train(args: argparse.Namespace) -> dict[str, object]:
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(args.threads)
    data_dirs = [Path(d) for d in args.data]
    meta = json.loads((data_dirs[0] / "config.json").read_text())
    xs, ys, delay = load_split(data_dirs[0] / "train.npz")
    for extra_dir in data_dirs[1:]:  # more training data: the same features and channels, its own voices
        other = json.loads((extra_dir / "config.json").read_text())
        if (other["features"], other["channels"], other["delay"]) != (meta["features"], meta["channels"], delay):
            raise SystemExit(f"--data {extra_dir} has other features, channels or delay than {data_dirs[0]}")
        more_x, more_y, _ = load_split(extra_dir / "train.npz")
        xs, ys = xs + more_x, ys + more_y
    ex, ey, _ = load_split(data_dirs[0] / "eval.npz")  # held out: the first dataset's
    channels: list[str] = meta["channels"]
    config = ModelConfig(n_in=xs[0].shape[1], n_out=len(channels), width=args.width, delay=delay)
    model = MouthNet(config)
    if args.init:
        model = init_from(Path(args.init), config)
    else:
        stacked = np.concatenate(xs)
        model.mean.copy_(torch.from_numpy(stacked.mean(0)))
        model.std.copy_(torch.from_numpy(stacked.std(0) + 1e-3))
        del stacked
    weights = torch.tensor([_HEAVY.get(c, 1.0) for c in channels])
    closure = (channels.index("MouthClose"), args.closure_weight) if args.closure_weight > 0 else None
    rng = random.Random(args.seed)
    per_epoch = len(batches(xs, ys, delay, args.batch, random.Random(0)))
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, args.lr, total_steps=args.epochs * per_epoch)
    log: list[dict[str, float]] = []
    started = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        for x, y, m in batches(xs, ys, delay, args.batch, rng):
            pred, _ = model(x, model.initial_states(len(x)))
            loss = _loss(pred, y, m, weights, closure)
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            total += loss.item()
        model.eval()
        corr = _jaw_corr(model, ex[:100], ey[:100], delay)
        entry = {
            "epoch": epoch + 1,
            "loss": total / per_epoch,
            "heldout_jaw_corr": corr,
            "wall_s": time.perf_counter() - started,
        }
        log.append(entry)
        print(json.dumps(entry), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": model.state_dict(),
            "model": config.to_json(),
            "features": meta["features"],
            "channels": channels,
            "seed": args.seed,
        },
        out / "mouth.pt",
    )
    summary = {
        "args": vars(args),
        "datasets": [_dataset_settings(d) for d in data_dirs],
        "epochs": log,
        "train_clips": len(xs),
        "train_hours": sum(len(y) for y in ys) / 60 / 3600,
        "parameters": sum(p.numel() for p in model.parameters()),
        "wall_s": time.perf_counter() - started,
    }
    (out / "train_log.json").write_text(json.dumps(summary, indent=1))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description="train the learned mouth model")
    parser.add_argument(
        "--data",
        nargs="+",
        default=["out/face-dataset"],
        help="dataset folder(s) of make_dataset.py; the held-out split is the first one's",
    )
    parser.add_argument("--out", default="out/face-model")
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--closure-weight",
        type=float,
        default=0.0,
        help="frames whose target closes the lips (MouthClose >= 0.3) weigh 1 + this much in the loss (0: off)",
    )
    parser.add_argument("--init", help="start from this model (mouth.json of an exported model, or mouth.pt)")
    summary = train(parser.parse_args())
    print(f"trained in {summary['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
