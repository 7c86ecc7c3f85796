"""The NeuroSync audio-to-face network in torch (imported only by :mod:`facecast.face.neurosync`).

Architecture of NeuroSync's published audio-to-face model: a seq2seq transformer whose decoder reads the
encoder's output as both its input and its memory (no autoregression, no masks); post-LayerNorm layers; every attention
(encoder self, decoder self, decoder cross) has separate q/k/v/out projections with bias and applies
GPT-J style rotary position encoding (interleaved pairs, base 10000, positions 0..L-1) to queries and
keys before scaled dot-product attention. The parameter names are those of the published state_dict,
so a user's ``model.pth`` loads with ``strict=True``. This module needs torch (the ``neurosync`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the usual torch alias

__all__ = ["NeuroSyncConfig", "NeuroSyncNet", "rotary"]


@dataclass(frozen=True, slots=True)
class NeuroSyncConfig:
    """Sizes of the network; the defaults are the published model (235,480,132 parameters, 344 tensors)."""

    input_dim: int = 256
    hidden: int = 1024
    layers: int = 8
    heads: int = 16
    ffn: int = 4096
    output_dim: int = 68


def rotary(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotate interleaved pairs ``(x[..., 2i], x[..., 2i+1])`` of ``x`` (..., L, d) by ``pos * base^(-2i/d)``."""
    length, dim = x.shape[-2], x.shape[-1]
    inv = base ** (-torch.arange(0, dim, 2, device=x.device, dtype=torch.float32) / dim)
    angles = torch.arange(length, device=x.device, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


class _Attention(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_linear = nn.Linear(hidden, hidden)
        self.k_linear = nn.Linear(hidden, hidden)
        self.v_linear = nn.Linear(hidden, hidden)
        self.out_linear = nn.Linear(hidden, hidden)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        return x.view(batch, length, self.heads, hidden // self.heads).transpose(1, 2)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        q = rotary(self._split(self.q_linear(query)))
        k = rotary(self._split(self.k_linear(memory)))
        v = self._split(self.v_linear(memory))
        out = F.scaled_dot_product_attention(q, k, v)
        batch, _, length, _ = out.shape
        return self.out_linear(out.transpose(1, 2).reshape(batch, length, -1))  # type: ignore[no-any-return]


class _FeedForward(nn.Module):
    def __init__(self, hidden: int, ffn: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(hidden, ffn)
        self.linear2 = nn.Linear(ffn, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(F.relu(self.linear1(x)))  # type: ignore[no-any-return]


class _EncoderLayer(nn.Module):
    def __init__(self, config: NeuroSyncConfig) -> None:
        super().__init__()
        self.self_attn = _Attention(config.hidden, config.heads)
        self.ffn = _FeedForward(config.hidden, config.ffn)
        self.norm1 = nn.LayerNorm(config.hidden)
        self.norm2 = nn.LayerNorm(config.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.self_attn(x, x))
        return self.norm2(x + self.ffn(x))  # type: ignore[no-any-return]


class _DecoderLayer(nn.Module):
    def __init__(self, config: NeuroSyncConfig) -> None:
        super().__init__()
        self.self_attn = _Attention(config.hidden, config.heads)
        self.multihead_attn = _Attention(config.hidden, config.heads)
        self.ffn = _FeedForward(config.hidden, config.ffn)
        self.norm1 = nn.LayerNorm(config.hidden)
        self.norm2 = nn.LayerNorm(config.hidden)
        self.norm3 = nn.LayerNorm(config.hidden)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.self_attn(x, x))
        x = self.norm2(x + self.multihead_attn(x, memory))
        return self.norm3(x + self.ffn(x))  # type: ignore[no-any-return]


class _Encoder(nn.Module):
    def __init__(self, config: NeuroSyncConfig) -> None:
        super().__init__()
        self.embedding = nn.Linear(config.input_dim, config.hidden)
        self.transformer_encoder = nn.ModuleList(_EncoderLayer(config) for _ in range(config.layers))
        self.layer_norm = nn.LayerNorm(config.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embedding(x)
        for layer in self.transformer_encoder:
            x = layer(x)
        return self.layer_norm(x)  # type: ignore[no-any-return]


class _Decoder(nn.Module):
    def __init__(self, config: NeuroSyncConfig) -> None:
        super().__init__()
        self.transformer_decoder = nn.ModuleList(_DecoderLayer(config) for _ in range(config.layers))
        self.layer_norm = nn.LayerNorm(config.hidden)
        self.fc_output = nn.Linear(config.hidden, config.output_dim)

    def forward(self, memory: torch.Tensor) -> torch.Tensor:
        x = memory
        for layer in self.transformer_decoder:
            x = layer(x, memory)
        return self.fc_output(self.layer_norm(x))  # type: ignore[no-any-return]


class NeuroSyncNet(nn.Module):
    """Features (batch, frames, 256) at 60 fps -> raw outputs (batch, frames, 68) (curves still x100)."""

    def __init__(self, config: NeuroSyncConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else NeuroSyncConfig()
        self.encoder = _Encoder(self.config)
        self.decoder = _Decoder(self.config)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(features))  # type: ignore[no-any-return]
