"""Export a trained ``mouth.pt`` to the ONNX model and JSON the package ships (and loads at run time).

    .venv/bin/python training/export.py --checkpoint out/face-model/mouth.pt \
        --out src/facecast/face/models/mouth.onnx

Writes ``mouth.onnx`` (inputs ``features`` (1, T, width) and ``state0..stateN``; outputs ``mouth``
(1, T, channels) and ``next_state0..N``; T is dynamic) and ``mouth.json`` beside it: the feature
parameters, the lookahead ``delay`` in frames, the channel names, the state shapes and where the weights
came from. Checks that onnxruntime gives the torch model's output (max error printed, must be < 1e-4).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:
    from model import ModelConfig, MouthNet  # type: ignore[import-not-found,no-redef]
except ImportError:  # pragma: no cover
    from training.model import ModelConfig, MouthNet

__all__ = ["ConvForm", "export_onnx", "load_checkpoint", "check", "main"]


class ConvForm(torch.nn.Module):
    """The same function as a :class:`MouthNet`, rewritten for a fast ONNX graph (few, large operators).

    Feature normalisation is folded into the input layer, each tap-stacked ``Linear`` becomes a dilated
    ``Conv1d`` with the same weights, and tensors stay channels-first, so a step is ~30 operators. The
    states are channels-first too: shape (1, width, (kernel - 1) * dilation). Inputs ``features``
    (1, T, n_in) and the states as separate arguments; outputs ``mouth`` (1, T, n_out) and the new states.
    """

    def __init__(self, model: MouthNet) -> None:
        super().__init__()
        cfg = model.config
        self.sizes = model.state_sizes
        scale = 1.0 / model.std
        with torch.no_grad():
            self.inp = torch.nn.Conv1d(cfg.n_in, cfg.width, 1)
            self.inp.weight.copy_((model.inp.weight * scale)[:, :, None])
            self.inp.bias.copy_(model.inp.bias - model.inp.weight @ (model.mean * scale))
            self.convs = torch.nn.ModuleList()
            self.mix = torch.nn.ModuleList()
            for lin, mix, d in zip(model.convs, model.mix, cfg.dilations, strict=True):
                conv = torch.nn.Conv1d(cfg.width, cfg.width, cfg.kernel, dilation=d)
                conv.weight.copy_(lin.weight.reshape(cfg.width, cfg.kernel, cfg.width).permute(0, 2, 1))
                conv.bias.copy_(lin.bias)
                self.convs.append(conv)
                one = torch.nn.Conv1d(cfg.width, cfg.width, 1)
                one.weight.copy_(mix.weight[:, :, None])
                one.bias.copy_(mix.bias)
                self.mix.append(one)
            self.out = torch.nn.Conv1d(cfg.width, cfg.n_out, 1)
            self.out.weight.copy_(model.out.weight[:, :, None])
            self.out.bias.copy_(model.out.bias)

    def initial_states(self) -> list[torch.Tensor]:
        return [torch.zeros(1, self.inp.out_channels, s) for s in self.sizes]

    def forward(self, features: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = torch.relu(self.inp(features.transpose(1, 2)))
        new_states = []
        for conv, mix, state, size in zip(self.convs, self.mix, states, self.sizes, strict=True):
            full = torch.cat([state, h], dim=2)
            new_states.append(full[:, :, -size:])
            h = h + mix(torch.relu(conv(full)))
        return (self.out(torch.relu(h)).transpose(1, 2), *new_states)


def load_checkpoint(path: Path) -> tuple[MouthNet, dict[str, Any]]:
    data = torch.load(path, map_location="cpu", weights_only=True)
    cfg = dict(data["model"])
    cfg["dilations"] = tuple(cfg["dilations"])
    model = MouthNet(ModelConfig(**cfg))
    model.load_state_dict(data["state_dict"], strict=True)
    model.eval()
    return model, data


def export_onnx(model: MouthNet, path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Write ``path`` (ONNX) and ``path.with_suffix('.json')``; returns the JSON written."""
    model.eval()
    flat = ConvForm(model).eval()
    states = flat.initial_states()
    example = torch.randn(1, 37, model.config.n_in)
    n = len(states)
    names_in = ["features", *[f"state{k}" for k in range(n)]]
    names_out = ["mouth", *[f"next_state{k}" for k in range(n)]]
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, and gives the simplest graph here
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            flat,
            (example, *states),
            str(path),
            input_names=names_in,
            output_names=names_out,
            dynamic_axes={"features": {1: "time"}, "mouth": {1: "time"}},
            opset_version=17,
            dynamo=False,
        )
    info = {
        "format": 1,
        "onnx": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "features": meta["features"],
        "delay": model.config.delay,
        "channels": list(meta["channels"]),
        "states": [list(s.shape[1:]) for s in states],
        "model": model.config.to_json(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "trained_with": meta.get("trained_with", {}),
    }
    info["step"] = write_step_weights(path)
    path.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def write_step_weights(onnx_path: Path) -> dict[str, str]:
    """Write the ONNX model's weights, channels-first, as ``.npz`` beside it for the runtime's numpy step
    kernel (:class:`facecast.face.learned.StepKernel`); returns the ``step`` entry of ``mouth.json``."""
    import onnx
    from onnx import numpy_helper

    init = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(onnx_path)).graph.initializer}
    count = sum(1 for name in init if name.startswith("convs.") and name.endswith(".weight"))
    arrays: dict[str, np.ndarray] = {"inp_w": init["inp.weight"][:, :, 0], "inp_b": init["inp.bias"]}
    dilations = []
    for i in range(count):
        w = init[f"convs.{i}.weight"]  # (out, in, kernel)
        arrays[f"conv_w{i}"] = np.concatenate([w[:, :, k] for k in range(w.shape[2])], axis=1)
        arrays[f"conv_b{i}"] = init[f"convs.{i}.bias"]
        arrays[f"mix_w{i}"] = init[f"mix.{i}.weight"][:, :, 0]
        arrays[f"mix_b{i}"] = init[f"mix.{i}.bias"]
        dilations.append(_dilation(onnx_path, i))
    arrays["out_w"], arrays["out_b"] = init["out.weight"][:, :, 0], init["out.bias"]
    arrays["dilations"] = np.asarray(dilations, np.int64)
    path = onnx_path.with_suffix(".npz")
    np.savez(
        path, **{k: np.ascontiguousarray(v, np.float32 if k != "dilations" else np.int64) for k, v in arrays.items()}
    )
    return {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def _dilation(onnx_path: Path, index: int) -> int:
    import onnx

    for node in onnx.load(str(onnx_path)).graph.node:
        if node.op_type == "Conv" and f"convs.{index}.weight" in node.input:
            for attr in node.attribute:
                if attr.name == "dilations":
                    return int(attr.ints[0])
            return 1
    raise ValueError(f"no convolution {index} in {onnx_path}")


def add_step_weights(description: Path) -> None:
    """Add step weights to an exported model's ``mouth.json`` (and re-check nothing else changes)."""
    info = json.loads(description.read_text())
    info["step"] = write_step_weights(description.with_name(info["onnx"]))
    description.write_text(json.dumps(info, indent=1) + "\n")


def check(model: MouthNet, path: Path, steps: int = 200, seed: int = 0) -> float:
    """Max |onnxruntime - torch| over a random input run in two calls (state carried)."""
    import onnxruntime as ort

    torch.manual_seed(seed)
    x = torch.randn(1, steps, model.config.n_in) * 3 + model.mean
    with torch.no_grad():
        want, _ = model(x, model.initial_states(1))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    states = [s.numpy() for s in ConvForm(model).initial_states()]
    outs = []
    for part in (x[:, : steps // 3], x[:, steps // 3 :]):
        feed = {"features": part.numpy(), **{f"state{k}": s for k, s in enumerate(states)}}
        result = session.run(None, feed)
        outs.append(result[0])
        states = list(result[1:])
    return float(np.abs(np.concatenate(outs, axis=1) - want.numpy()).max())


def main() -> None:
    parser = argparse.ArgumentParser(description="export mouth.pt to ONNX")
    parser.add_argument("--checkpoint", default="out/face-model/mouth.pt")
    parser.add_argument("--out", default="src/facecast/face/models/mouth.onnx")
    args = parser.parse_args()
    model, data = load_checkpoint(Path(args.checkpoint))
    log_path = Path(args.checkpoint).with_name("train_log.json")
    trained = json.loads(log_path.read_text()) if log_path.exists() else {}
    meta = {
        "features": data["features"],
        "channels": data["channels"],
        "trained_with": {
            "seed": data.get("seed"),
            "args": trained.get("args"),
            "datasets": trained.get("datasets"),
            "train_hours": trained.get("train_hours"),
            "wall_s": trained.get("wall_s"),
        },
    }
    info = export_onnx(model, Path(args.out), meta)
    error = check(model, Path(args.out))
    size = Path(args.out).stat().st_size
    print(
        f"wrote {args.out} ({size / 1e6:.2f} MB, {info['parameters']} parameters); onnx vs torch max error {error:.2e}"
    )
    if error > 1e-4:
        raise SystemExit("ONNX output does not match the torch model")


if __name__ == "__main__":
    main()
