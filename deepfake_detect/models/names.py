"""What each model family (``model.name``) is called where a reader meets it: the results
table, verdict lines, report tables and figure legends. No heavy imports (the summary of a
finished run and the report read it without torch)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

DEFAULT = "resnet18"  # a run without ``model.name`` (older than the families) trained this
DISPLAY = {"resnet18": "ResNet18", "lcnn": "LCNN", "cnn1d": "1-D CNN",
           "oneclass": "one-class GMM", "embedding": "embedding head"}


def display_name(name: str | None = None, encoder: str | None = None) -> str:
    """The family's display name (``lcnn`` -> ``LCNN``); the embedding head names its
    encoder's folder (``embedding head (mert-v1)``); an unknown name is shown as it is."""
    key = str(name or DEFAULT)
    shown = DISPLAY.get(key, key)
    if key == "embedding" and encoder:
        shown += f" ({PurePath(str(encoder).rstrip('/')).name})"
    return shown


def display_of(params: Mapping[str, Any]) -> str:
    """The display name of the model that flattened params (an MLflow run's, ``model.name``
    and ``features.encoder``) describe."""
    return display_name(params.get("model.name"), params.get("features.encoder"))


def display_of_config(resolved: Mapping[str, Any]) -> str:
    """The display name of the model a resolved config (``model``, ``features``) trains."""
    model = resolved.get("model") or {}
    return display_name(model.get("name"), (resolved.get("features") or {}).get("encoder"))
