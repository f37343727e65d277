"""Model families behind one registry (``model.name``): what each one is, which front ends
it reads, and how it is built from the model and feature configs.

- ``resnet18``: the study's ResNet18 with a one-channel stem (the default), 2-D inputs;
- ``lcnn``: a light CNN with max-feature-map activations, 2-D inputs;
- ``cnn1d``: a small 1-D CNN for profiles (``features.kind=fakeprint``);
- ``oneclass``: a Gaussian mixture over band features of human training clips only;
- ``embedding``: a head over a frozen encoder's embeddings (``features.kind=embedding``).

What each one is called in tables and verdicts: :mod:`deepfake_detect.models.names`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from deepfake_detect.config import require
from deepfake_detect.data.features import FeatureConfig

SPECTRA = ("logmel", "stft", "cqt")


@dataclass(frozen=True)
class Family:
    """A model family: the front ends it reads and whether gradient descent trains it."""

    kinds: tuple[str, ...]
    trained: bool = True  # False: fitted once at the start of fit (oneclass)
    pretrained_weights: bool = False  # model.weights (ImageNet or a file) applies


FAMILIES = {
    "resnet18": Family(SPECTRA, pretrained_weights=True),
    "lcnn": Family(SPECTRA),
    "cnn1d": Family(("fakeprint",)),
    "oneclass": Family((*SPECTRA, "fakeprint"), trained=False),
    "embedding": Family(("embedding",)),
}


def check(model: Any, features: FeatureConfig) -> None:
    """The family reads this front end, and its options fit it; errors name the key."""
    family = FAMILIES[model.name]
    require(features.kind in family.kinds, "features.kind",
            f"model {model.name} reads {', '.join(family.kinds)}, got {features.kind} "
            "(pick a front end with features=<preset>, e.g. features=stft)")
    require(family.pretrained_weights or model.weights in (None, "", "none"), "model.weights",
            f"pretrained weights apply to resnet18 only, not {model.name}")
    if model.name == "embedding" and isinstance(model.layer, int):
        layers = features.shape[0]
        require(-layers <= model.layer < layers, "model.layer",
                f"the encoder has {layers} hidden states; got {model.layer}")


def build_net(model: Any, features: FeatureConfig, num_classes: int, seed: int = 0
              ) -> nn.Module:
    """The network of ``model.name`` for rows of ``features``."""
    name = model.name
    if name == "lcnn":
        from deepfake_detect.models.lcnn import LCNN

        return LCNN(num_classes, model.width, model.dropout)
    if name == "cnn1d":
        from deepfake_detect.models.cnn1d import CNN1D

        return CNN1D(num_classes, model.width, model.dropout)
    if name == "oneclass":
        from deepfake_detect.models.oneclass import OneClass

        return OneClass(num_classes, tuple(features.shape), model.bands, model.components, seed)
    if name == "embedding":
        from deepfake_detect.models.embedding import EmbeddingHead

        layers, width = features.shape
        return EmbeddingHead(num_classes, layers, width,
                             None if model.layer == "weighted" else int(model.layer),
                             model.hidden, model.dropout)
    from deepfake_detect.models.resnet import resnet18_one_channel

    return resnet18_one_channel(num_classes, model.stem_freq_stride)


def parameter_count(net: nn.Module) -> tuple[int, int]:
    """(parameters -- for a fitted model without any, the values of its fitted state --,
    trainable parameters)."""
    total = sum(p.numel() for p in net.parameters()) or sum(
        b.numel() for b in net.buffers() if b.dtype.is_floating_point)
    return total, sum(p.numel() for p in net.parameters() if p.requires_grad)
