"""The head of the ``embedding`` family: rows are a frozen encoder's mean-pooled hidden
states ``(layers + 1, width)`` (:mod:`deepfake_detect.data.encoders`); one chosen layer, or a
learned softmax-weighted sum of all of them (as in SUPERB), layer-normalised, into a linear
or a small MLP head."""

from __future__ import annotations

import torch
from torch import nn


class EmbeddingHead(nn.Module):
    """``(batch, 1, layers, width)`` -> logits. ``layer``: an index (negative from the end)
    or ``None`` for the learned weighted sum; ``hidden``: 0 for a linear head."""

    def __init__(self, num_classes: int, layers: int, width: int, layer: int | None = None,
                 hidden: int = 0, dropout: float = 0.1):
        super().__init__()
        self.layer = layer
        self.weights = nn.Parameter(torch.zeros(layers))  # used for the weighted sum
        self.norm = nn.LayerNorm(width)
        if hidden:
            self.head: nn.Module = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, hidden),
                                                 nn.ReLU(), nn.Dropout(dropout),
                                                 nn.Linear(hidden, num_classes))
        else:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = x[:, 0]  # (batch, layers, width)
        if self.layer is None:
            pooled = (states * self.weights.softmax(dim=0)[None, :, None]).sum(dim=1)
        else:
            pooled = states[:, self.layer]
        return self.head(self.norm(pooled))
