"""torchvision's ResNet18 adapted to one input channel, and where its weights come from.

Offline by default: ImageNet weights are used only when they are in torchvision's local cache
(``$TORCH_HOME/hub/checkpoints``) or given as a file; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from deepfake_detect.errors import ConfigError

BUILTIN_WEIGHTS = ("none", "imagenet")


def resnet18_one_channel(num_classes: int, stem_freq_stride: int = 2) -> nn.Module:
    """A randomly initialised ResNet18 with a 1-channel stem and ``num_classes`` outputs.

    ``stem_freq_stride=1`` keeps the mel axis at full resolution through the first
    convolution (narrow spectral lines survive the stem; ~2x the compute). Either way the
    stem's weights keep ImageNet's shape.
    """
    net = resnet18(weights=None)
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=(stem_freq_stride, 2), padding=3,
                          bias=False)
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    return net


def imagenet_cache_path() -> Path:
    """Where torchvision keeps the ImageNet ResNet18 weights once downloaded."""
    url = ResNet18_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def resolve_weights(spec: str) -> Path | None:
    """The file that ``model.weights`` points at (None for ``none``), or a ConfigError."""
    if spec in (None, "", "none"):
        return None
    if spec == "imagenet":
        path = imagenet_cache_path()
        if not path.is_file():
            raise ConfigError(
                "model.weights",
                f"ImageNet weights are not in torchvision's cache ({path}) and nothing is "
                "downloaded at run time. Either fetch them once on a machine with internet "
                "(python -c \"import torchvision; torchvision.models.resnet18("
                "weights='IMAGENET1K_V1')\") and copy the file to that path (or set "
                "TORCH_HOME), or pass model.weights=/path/to/resnet18-f37072fd.pth, or use "
                "model.weights=none.")
        return path
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfigError("model.weights",
                          f"no weights file at {path}; allowed: none, imagenet, or a path "
                          "to a ResNet18 state dict (.pth)")
    readable_file(path, "model.weights")
    backbone_state(path)  # a file that is no ResNet18 state dict fails now, not after the data
    return path


def readable_file(path: Path, key: str) -> None:
    """ConfigError naming ``key`` unless ``path`` can be opened for reading."""
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except PermissionError:
        raise ConfigError(key, f"cannot read {path}: permission denied") from None
    except OSError as err:
        raise ConfigError(key, f"cannot read {path}: {err.strerror or err}") from None


def torch_file_problem(path: Path, err: Exception) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed, as a user can act on it."""
    import pickle

    if isinstance(err, pickle.UnpicklingError):
        return ("it holds objects other than tensors and plain containers, which are never "
                "loaded (they could run code)")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head.startswith((b"PK\x03\x04", b"\x80")):
        return "not a torch file (neither a zip archive nor a pickle)"
    first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def backbone_state(path: Path) -> dict[str, torch.Tensor]:
    """The ResNet18 state dict in ``path`` (plain, or a Lightning checkpoint's ``net.*``),
    loaded without running pickled code; ConfigError naming ``model.weights`` otherwise."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is a config problem
        raise ConfigError("model.weights", f"{path} is not a ResNet18 state dict: "
                          f"{torch_file_problem(path, err)}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = {k.split("net.", 1)[-1]: v for k, v in state["state_dict"].items()
                 if k.startswith("net.")}
    if not isinstance(state, dict) or "conv1.weight" not in state:
        raise ConfigError("model.weights", f"{path} is not a ResNet18 state dict")
    return state


def load_backbone_weights(net: nn.Module, path: Path) -> str:
    """Load a ResNet18 state dict (RGB or 1-channel) into ``net``, skipping the classifier.

    RGB stem weights are averaged over the colour channels. Returns a description of what was
    loaded (file name and sha256 prefix) for the run's tags.
    """
    state = {k: v for k, v in backbone_state(path).items() if not k.startswith("fc.")}
    stem = state["conv1.weight"]
    if stem.shape[1] != 1:
        state["conv1.weight"] = stem.mean(dim=1, keepdim=True)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.startswith("fc.")]:
        raise ConfigError("model.weights",
                          f"{path} does not match ResNet18 (missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]})")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return f"{path.name}#sha256:{digest}"
