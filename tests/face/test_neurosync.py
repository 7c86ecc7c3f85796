"""The NeuroSync architecture (user-supplied weights): exact state_dict layout, features, strict loading,
windowed inference. Tests needing torch skip cleanly without it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from facecast.errors import ConfigError, InputError
from facecast.types import frames_for_samples

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")


def _expected_state() -> dict[str, tuple[int, ...]]:
    """The published model's state_dict, written out by hand from its published layer shapes."""
    out: dict[str, tuple[int, ...]] = {"encoder.embedding.weight": (1024, 256), "encoder.embedding.bias": (1024,)}

    def attention(prefix: str) -> None:
        for name in ("q", "k", "v", "out"):
            out[f"{prefix}.{name}_linear.weight"] = (1024, 1024)
            out[f"{prefix}.{name}_linear.bias"] = (1024,)

    def common(prefix: str, norms: int) -> None:
        out[f"{prefix}.ffn.linear1.weight"] = (4096, 1024)
        out[f"{prefix}.ffn.linear1.bias"] = (4096,)
        out[f"{prefix}.ffn.linear2.weight"] = (1024, 4096)
        out[f"{prefix}.ffn.linear2.bias"] = (1024,)
        for k in range(1, norms + 1):
            out[f"{prefix}.norm{k}.weight"] = (1024,)
            out[f"{prefix}.norm{k}.bias"] = (1024,)

    for i in range(8):
        attention(f"encoder.transformer_encoder.{i}.self_attn")
        common(f"encoder.transformer_encoder.{i}", 2)
    out["encoder.layer_norm.weight"] = out["encoder.layer_norm.bias"] = (1024,)
    for i in range(8):
        attention(f"decoder.transformer_decoder.{i}.self_attn")
        attention(f"decoder.transformer_decoder.{i}.multihead_attn")
        common(f"decoder.transformer_decoder.{i}", 3)
    out["decoder.layer_norm.weight"] = out["decoder.layer_norm.bias"] = (1024,)
    out["decoder.fc_output.weight"] = (68, 1024)
    out["decoder.fc_output.bias"] = (68,)
    return out


def test_missing_torch_is_a_config_error_with_the_install_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from facecast.services import make_face

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(ConfigError, match=r"torch==2\.13\.0"):
        make_face(f"neurosync:{tmp_path / 'model.pth'}")


def test_features_are_256_wide_at_60_fps() -> None:
    pytest.importorskip("scipy")
    from facecast.face.neurosync import neurosync_features

    rng = np.random.default_rng(0)
    for rate, seconds in ((16_000, 1.0), (88_200, 2.5), (22_050, 0.7)):
        t = np.arange(int(rate * seconds)) / rate
        pcm = (
            np.sin(2 * np.pi * 220 * t) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
            + 0.05 * rng.standard_normal(len(t))
        ).astype(np.float32)
        feats = neurosync_features(pcm, rate)
        assert feats.shape == (frames_for_samples(len(pcm), rate), 256)
        assert np.isfinite(feats).all()
        assert np.abs(feats[:, :23].mean(axis=0)).max() < 0.1  # per-clip normalised MFCC
        assert np.abs(feats[:, 69:]).max() <= 1.0 + 1e-6  # autocorrelation / lag 0
    # peak normalisation: the gain of the input does not matter
    np.testing.assert_allclose(neurosync_features(pcm * 0.1, 22_050), feats, atol=1e-3)
    with pytest.raises(InputError):
        neurosync_features(np.zeros(100, np.float32), 16_000)


@needs_torch
def test_full_size_model_has_exactly_the_published_state_dict() -> None:
    from facecast.face.neurosync import build_net

    state = build_net(device="meta").state_dict()  # no memory for the weights
    expected = _expected_state()
    assert list(state) == list(expected) or set(state) == set(expected)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert len(state) == 344
    assert sum(v.numel() for v in state.values()) == 235_480_132


@needs_torch
def test_rotary_keeps_position_zero_and_norms() -> None:
    import torch

    from facecast.face.neurosync_net import rotary

    x = torch.randn(2, 4, 10, 64)
    y = rotary(x)
    torch.testing.assert_close(y[..., 0, :], x[..., 0, :])
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    # interleaved pairs: rotating (1, 0) in the first pair at position 1 by 1 radian
    e = torch.zeros(1, 2, 4)
    e[0, 1, 0] = 1.0
    out = rotary(e)[0, 1]
    torch.testing.assert_close(out[:2], torch.tensor([np.cos(1.0), np.sin(1.0)], dtype=torch.float32))


def _tiny() -> object:
    import torch

    from facecast.face.neurosync import build_net
    from facecast.face.neurosync_net import NeuroSyncConfig

    torch.manual_seed(0)
    return build_net(NeuroSyncConfig(hidden=128, layers=2, heads=2, ffn=256)).eval()


@needs_torch
def test_tiny_configuration_runs_forward_and_animates_in_windows() -> None:
    import torch

    from facecast.face.neurosync import NeuroSyncAnimator

    net = _tiny()
    with torch.no_grad():
        assert net(torch.randn(1, 50, 256)).shape == (1, 50, 68)  # type: ignore[operator]
    animator = NeuroSyncAnimator(net=net)  # type: ignore[arg-type]
    rate = 16_000
    pcm = (np.random.default_rng(1).standard_normal(rate * 5) * 0.1).astype(np.float32)  # 300 frames, 3 windows
    frames = animator.render(pcm, rate)
    assert frames.shape == (frames_for_samples(len(pcm), rate), 68)
    assert np.all(frames[0, :61] == 0.0)  # eased in from rest
    zeroed = [0, 1, 2, 3, 4, 7, 8, 9, 10, 11, 51, *range(52, 61)]
    assert np.all(frames[:, zeroed] == 0.0)
    assert frames[:, :61].min() >= 0.0 and frames[:, :61].max() <= 1.0


@needs_torch
def test_windows_cross_fade_without_seams() -> None:
    from facecast.face.neurosync import OVERLAP, WINDOW, NeuroSyncAnimator, _windows

    for total in (10, 128, 129, 300, 1000):
        spans = _windows(total)
        assert spans[0][0] == 0 and spans[-1][1] == total
        assert all(b - a <= WINDOW for a, b in spans)
        assert all(n[0] <= p[1] - OVERLAP or n[0] < p[1] for p, n in zip(spans, spans[1:], strict=False))

    class Constant(NeuroSyncAnimator):
        pass

    animator = Constant(net=_tiny())  # type: ignore[arg-type]
    feats = np.zeros((300, 256), np.float32)
    raw = animator.infer(feats)
    # position-dependent outputs differ between windows, but the fade keeps every frame a convex mix
    assert raw.shape == (300, 68) and np.isfinite(raw).all()


@needs_torch
def test_weights_load_strictly(tmp_path: Path) -> None:
    import torch

    from facecast.face.neurosync import load_net

    net = _tiny()
    state = net.state_dict()  # type: ignore[attr-defined]
    torch.save(state, tmp_path / "model.pth")
    loaded, device = load_net(tmp_path / "model.pth", device="cpu")
    assert device == "cpu"
    x = torch.randn(1, 20, 256)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))  # type: ignore[operator]
    missing = dict(state)
    missing.pop("decoder.transformer_decoder.1.norm3.bias")
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="does not match"):
        load_net(tmp_path / "missing.pth", device="cpu")
    extra = dict(state, **{"encoder.extra.weight": torch.zeros(3)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(ConfigError, match="does not match"):
        load_net(tmp_path / "extra.pth", device="cpu")
    with pytest.raises(ConfigError, match="not found"):
        load_net(tmp_path / "nothing.pth")


@needs_torch
async def test_make_face_neurosync_animates_with_user_weights(tmp_path: Path) -> None:
    import torch

    from facecast.audio import split_chunks
    from facecast.services import make_face
    from facecast.types import SpeechChunk

    torch.save(_tiny().state_dict(), tmp_path / "model.pth")  # type: ignore[attr-defined]
    face = make_face(f"neurosync:{tmp_path / 'model.pth'}")
    pcm = (np.random.default_rng(2).standard_normal(24_000) * 0.1).astype(np.float32)

    async def speech():  # type: ignore[no-untyped-def]
        for chunk in split_chunks(pcm, 24_000):
            yield SpeechChunk(chunk)

    frames = [f async for f in face.animate(speech())]
    assert sum(len(f.values) for f in frames) == frames_for_samples(len(pcm), 24_000)
