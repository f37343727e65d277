"""The inference bundle (``model.ckpt``): weights plus everything needed to preprocess
identically — feature config and row kind, normalisation statistics (front-end buffers), label
map, threshold, and what the model was trained on.

Plain containers only, so it loads with ``torch.load(weights_only=True)`` and needs nothing
from the training run's Hydra config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from deepfake_detect import LABEL_NAMES, atomic
from deepfake_detect.errors import DeepfakeDetectError
from deepfake_detect.models.detector import Detector
from deepfake_detect.models.resnet import torch_file_problem

FORMAT = "deepfake-detect/model/2"
# Format 1 kept the normalisation as buffers of the Detector itself.
FORMAT_1 = "deepfake-detect/model/1"
RENAMED_1 = {"feature_mean": "front_end.mean", "feature_std": "front_end.std"}


def save_bundle(path: Path, model: Detector, threshold: float, threshold_rule: str,
                extra: dict[str, Any] | None = None) -> Path:
    """Write the bundle atomically."""
    model.threshold.fill_(float(threshold))
    payload = {
        "format": FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "hyper_parameters": plain(dict(model.hparams)),
        "features": model.features.as_dict(),
        "threshold": float(threshold),
        "threshold_rule": threshold_rule,
        "label_map": {str(k): v for k, v in LABEL_NAMES.items()},
        "score": "P(AI-generated)",
        **plain(extra or {}),
    }
    return atomic.save_torch(path, payload)


def read_bundle(path: str | Path) -> dict[str, Any]:
    """The bundle's payload; a DeepfakeDetectError saying what is wrong otherwise."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DeepfakeDetectError(f"no model file at {path}") from None
    except Exception as err:  # noqa: BLE001 - pickles, zips and text fail in many ways
        raise DeepfakeDetectError(f"{path} is not a model bundle (a deepfake-detect "
                                  f"model.ckpt): {torch_file_problem(path, err)}") from None
    if not isinstance(payload, dict) or payload.get("format") not in (FORMAT, FORMAT_1):
        raise DeepfakeDetectError(f"{path} is not a deepfake-detect model bundle "
                                  f"(expected format {FORMAT})")
    if payload["format"] == FORMAT_1:
        payload["state_dict"] = {RENAMED_1.get(k, k): v for k, v in payload["state_dict"].items()}
    return payload


def load_bundle(path: str | Path) -> tuple[Detector, dict[str, Any]]:
    """The detector (eval mode) and the bundle's metadata."""
    payload = read_bundle(path)
    model = Detector(**dict(payload["hyper_parameters"]))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model, meta


def plain(value: Any) -> Any:
    """Nested dicts, lists and scalars only (what ``weights_only`` loading accepts)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
