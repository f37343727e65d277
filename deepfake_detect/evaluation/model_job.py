"""The setup every command that runs a trained model on composed data shares (explain,
robustness): the config from ``conf/train.yaml`` and overrides, its seed, where outputs go and
the MLflow store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepfake_detect import tracking
from deepfake_detect.config import build, compose, require, to_plain
from deepfake_detect.models.refs import LoadedModel


@dataclass(frozen=True)
class ModelJob:
    """A trained model run on data composed from ``conf/train.yaml`` and overrides (explain,
    robustness): the resolved config, its seed, where outputs go and the MLflow store."""

    resolved: dict[str, Any]
    seed: int
    outputs: Path
    tracking_uri: str

    def out_dir(self, kind: str, loaded: LoadedModel) -> Path:
        """``<paths.root>/<kind>/<the model's run id, or its folder's name>``."""
        run_id = loaded.meta.get("run_id")
        return self.outputs / kind / str(run_id or Path(loaded.source).parent.name)


def model_job(overrides: Any = (), tracking_uri: str | None = None) -> ModelJob:
    """Compose the config, check its seed, and find the store: ``tracking_uri``, else
    ``logger.tracking_uri``, else the default rule."""
    resolved = to_plain(compose("train", overrides))
    seed = resolved.get("seed", 0)
    require(isinstance(seed, int) and seed >= 0, "seed", f"must be an integer >= 0, got {seed!r}")
    outputs = Path(resolved["paths"]["root"]).expanduser().resolve()
    logger = build(tracking.LoggerConfig, resolved["logger"], "logger", ignore=("tags",))
    uri = tracking_uri or logger.tracking_uri or tracking.default_tracking_uri(outputs)
    return ModelJob(resolved, seed, outputs, uri)
