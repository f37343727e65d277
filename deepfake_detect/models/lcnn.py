"""A light CNN with max-feature-map activations (LCNN; Wu et al. 2018, the ASVspoof
workhorse of Lavrentyeva et al. 2019), sized for small data and a CPU: each MFM keeps the
larger of two halves of its input channels, a competitive activation that halves the
width. Any 2-D input size (adaptive pooling before the head)."""

from __future__ import annotations

import torch
from torch import nn


class MaxFeatureMap(nn.Module):
    """The element-wise maximum of the two halves of the channel dimension."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = torch.chunk(x, 2, dim=1)
        return torch.maximum(first, second)


def mfm_conv(cin: int, cout: int, kernel: int) -> nn.Sequential:
    """A convolution to ``2 * cout`` channels and the MFM that brings them to ``cout``."""
    return nn.Sequential(nn.Conv2d(cin, 2 * cout, kernel, padding=kernel // 2),
                         MaxFeatureMap())


class LCNN(nn.Module):
    """``(batch, 1, freq, time)`` -> logits; ``width`` scales every layer (32: the
    original's 64-96-128-64-64 channels halved)."""

    def __init__(self, num_classes: int, width: int = 32, dropout: float = 0.3):
        super().__init__()
        w = [width, width * 3 // 2, width * 2, width, width]
        self.features = nn.Sequential(
            mfm_conv(1, w[0], 5), nn.MaxPool2d(2),
            mfm_conv(w[0], w[0], 1), nn.BatchNorm2d(w[0]), mfm_conv(w[0], w[1], 3),
            nn.MaxPool2d(2), nn.BatchNorm2d(w[1]),
            mfm_conv(w[1], w[1], 1), nn.BatchNorm2d(w[1]), mfm_conv(w[1], w[2], 3),
            nn.MaxPool2d(2),
            mfm_conv(w[2], w[2], 1), nn.BatchNorm2d(w[2]), mfm_conv(w[2], w[3], 3),
            nn.BatchNorm2d(w[3]),
            mfm_conv(w[3], w[3], 1), nn.BatchNorm2d(w[3]), mfm_conv(w[3], w[4], 3),
            nn.AdaptiveMaxPool2d((4, 4)))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(w[4] * 16, 2 * 80), MaxFeatureMap1d(),
                                  nn.BatchNorm1d(80), nn.Linear(80, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MaxFeatureMap1d(nn.Module):
    """MFM over the feature dimension of ``(batch, features)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = torch.chunk(x, 2, dim=-1)
        return torch.maximum(first, second)
