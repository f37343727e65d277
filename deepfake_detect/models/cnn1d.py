"""A small 1-D CNN for profiles (the fakeprint's bands): the peaks a decoder leaves sit at
fixed frequencies, so a few convolutions along frequency with max pooling find them and
their spacing; global max and mean pooling feed a linear head."""

from __future__ import annotations

import torch
from torch import nn


class CNN1D(nn.Module):
    """``(batch, 1, bins)`` -> logits."""

    def __init__(self, num_classes: int, width: int = 32, dropout: float = 0.3):
        super().__init__()
        layers: list[nn.Module] = [nn.BatchNorm1d(1)]
        cin = 1
        for cout in (width, width * 2, width * 2):
            layers += [nn.Conv1d(cin, cout, 5, padding=2), nn.BatchNorm1d(cout), nn.ReLU(),
                       nn.MaxPool1d(2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.head(torch.cat([h.amax(dim=-1), h.mean(dim=-1)], dim=1))
