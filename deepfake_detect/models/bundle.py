"""The inference bundle (``model.ckpt``): weights plus everything needed to preprocess
identically — feature config, normalisation statistics (buffers), label map, threshold.

Plain containers only, so it loads with ``torch.load(weights_only=True)`` and needs nothing
from the training run's Hydra config.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from deepfake_detect import LABEL_NAMES
from deepfake_detect.errors import DeepfakeDetectError
from deepfake_detect.models.detector import Detector

FORMAT = "deepfake-detect/model/1"


def save_bundle(path: Path, model: Detector, features: dict[str, Any], threshold: float,
                threshold_rule: str, extra: dict[str, Any] | None = None) -> Path:
    """Write the bundle atomically."""
    model.threshold.fill_(float(threshold))
    payload = {
        "format": FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "hyper_parameters": _plain(dict(model.hparams)),
        "features": dict(features),
        "threshold": float(threshold),
        "threshold_rule": threshold_rule,
        "label_map": {str(k): v for k, v in LABEL_NAMES.items()},
        "score": "P(AI-generated)",
        **(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_bundle(path: str | Path) -> tuple[Detector, dict[str, Any]]:
    """The detector (eval mode) and the bundle's metadata."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DeepfakeDetectError(f"no model file at {path}") from None
    except Exception as err:  # noqa: BLE001
        raise DeepfakeDetectError(f"cannot read model file {path}: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DeepfakeDetectError(f"{path} is not a deepfake-detect model bundle "
                                  f"(expected format {FORMAT})")
    hparams = dict(payload["hyper_parameters"])
    model = Detector(**hparams)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model, meta


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def load_weights_from(model: Detector, ref: str, tracking_uri: str | None = None) -> str:
    """Initialise ``model`` from another run: a ``model.ckpt`` bundle, a run directory, a
    Lightning checkpoint, or an MLflow reference (run id, ``runs:/``, ``models:/``, resolved as
    ``deepfake-detect-predict`` does). Returns a description for the run's tags."""
    path = Path(ref).expanduser()
    if path.is_dir():
        path = path / "model.ckpt"
    if path.is_file():
        payload = torch.load(path, map_location="cpu", weights_only=True)
        state = payload.get("state_dict") if isinstance(payload, dict) else None
        source = str(path)
    else:
        from deepfake_detect.predict import load_model

        loaded = load_model(ref, tracking_uri)
        state, source = loaded.detector.state_dict(), loaded.source
    if not isinstance(state, dict):
        raise DeepfakeDetectError(f"{source} holds no state_dict to initialise from")
    own = model.state_dict()
    head = [k for k in state if k.startswith("net.fc.") and k in own
            and state[k].shape != own[k].shape]
    if head:  # e.g. a binary model initialising an attribution model: new classifier head
        print(f"[deepfake-detect] init_from {source}: classes differ "
              f"({state[head[0]].shape[0]} -> {own[head[0]].shape[0]}); the classifier head "
              "starts fresh, the backbone is loaded")
        state = {k: v for k, v in state.items() if k not in head}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in head]
    if unexpected or missing:
        raise DeepfakeDetectError(f"{source} does not fit this model (missing {missing[:3]}, "
                                  f"unexpected {unexpected[:3]})")
    return source
