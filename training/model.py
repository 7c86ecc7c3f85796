"""The learned mouth model in torch (training and ONNX export only; run time uses onnxruntime).

A causal temporal convolution network over the 60 fps feature vectors of
:mod:`facecast.face.features`: a pointwise input layer, residual blocks of causal dilated convolutions,
a pointwise output layer predicting the mouth channels. Every convolution (written
as one matrix product over its ``kernel`` dilated taps, faster to train on a CPU than ``Conv1d`` at these
sizes) keeps its own left context as an explicit state tensor (``states[k]``, shape
(batch, (kernel - 1) * dilation, width): the last inputs it saw), so the
same forward pass serves training (zero initial state, whole sequences) and streaming (any number of
steps per call, state carried between calls), and exports to ONNX with that state as inputs/outputs.

Output step ``m`` is the prediction for face frame ``m - delay``: the model sees ``delay`` frames of
audio past the frame it animates (the lookahead), and never more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["ModelConfig", "MouthNet"]


@dataclass(frozen=True)
class ModelConfig:
    """Shape of :class:`MouthNet`. ``delay``: lookahead in frames (the output lags the input by this)."""

    n_in: int = 80
    n_out: int = 18
    width: int = 96
    kernel: int = 3
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1, 2)
    delay: int = 4

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["dilations"] = list(self.dilations)
        return data


class MouthNet(nn.Module):
    """Features (batch, time, n_in) + conv states -> mouth channels (batch, time, n_out) + new states.

    ``mean``/``std`` buffers normalise the features inside the model (set them from the training set).
    The output is not clipped (training uses the raw value; run time clips to [0, 1]).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.zeros(config.n_in))
        self.register_buffer("std", torch.ones(config.n_in))
        self.inp = nn.Linear(config.n_in, config.width)
        self.convs = nn.ModuleList(nn.Linear(config.kernel * config.width, config.width) for _ in config.dilations)
        self.mix = nn.ModuleList(nn.Linear(config.width, config.width) for _ in config.dilations)
        self.out = nn.Linear(config.width, config.n_out)

    @property
    def state_sizes(self) -> list[int]:
        """Time length of each conv state (its left context)."""
        return [(self.config.kernel - 1) * d for d in self.config.dilations]

    def initial_states(self, batch: int = 1) -> list[torch.Tensor]:
        return [torch.zeros(batch, s, self.config.width) for s in self.state_sizes]

    def forward(
        self, features: torch.Tensor, states: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = torch.relu(self.inp((features - self.mean) / self.std))
        steps = h.shape[1]
        new_states: list[torch.Tensor] = []
        for conv, mix, state, size, d in zip(
            self.convs, self.mix, states, self.state_sizes, self.config.dilations, strict=True
        ):
            full = torch.cat([state, h], dim=1)  # (batch, size + steps, width)
            new_states.append(full[:, full.shape[1] - size :])
            taps = torch.cat([full[:, k * d : k * d + steps] for k in range(self.config.kernel)], dim=2)
            h = h + mix(torch.relu(conv(taps)))
        return self.out(torch.relu(h)), new_states
