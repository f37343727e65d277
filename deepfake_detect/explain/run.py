"""Explaining any trained model on the test split of any source under any distortion (what
``deepfake-detect-explain`` runs): the data come from ``conf/train.yaml`` composed with
overrides, through the same feature cache as training; files go to an output folder and, when
the model's MLflow run is in the store, to that run under ``explain/``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepfake_detect import tracking
from deepfake_detect.config import build
from deepfake_detect.data.datamodule import AudioDataModule
from deepfake_detect.data.distortions import Distortion
from deepfake_detect.data.presets import build_distortion, distortion_preset
from deepfake_detect.evaluation.model_job import model_job
from deepfake_detect.explain.analysis import ExplainConfig, explain_test_set
from deepfake_detect.inference.scoring import resolve_device
from deepfake_detect.models.refs import load_model

log = logging.getLogger(__name__)


def distortions_to_explain(resolved: dict[str, Any], names: Sequence[str] | None
                           ) -> list[Distortion]:
    """The distortions to explain: ``explain.distortions``, else the ``distortion`` group."""
    group = build_distortion(resolved["distortion"], "distortion")
    return [group if name == group.name else distortion_preset(name, "explain.distortions")
            for name in names or (group.name,)]


def explain_model(model: Any, overrides: Sequence[str] = (), *, out: Path | None = None,
                  label: str | None = None, mlflow: bool = True, tracking_uri: str | None = None,
                  device: str = "auto") -> dict[str, Any]:
    """Explain ``model`` on the configured data; returns the files written, where they were
    logged (MLflow run id or None) and the output folder."""
    job = model_job(overrides, tracking_uri)
    resolved, seed, uri = job.resolved, job.seed, job.tracking_uri
    cfg = build(ExplainConfig, resolved.get("explain"), "explain")
    distortions = distortions_to_explain(resolved, cfg.distortions)
    loaded = load_model(model, uri)
    cfg.check_features(loaded.features)
    detector = loaded.detector.to(resolve_device(device))
    run_id = loaded.meta.get("run_id")
    out = Path(out) if out else job.out_dir("explain", loaded)
    dm = AudioDataModule(resolved["data"], loaded.features, distortions[0], distortions, seed)
    prefix = label or str(resolved["data"]["source"].get("name", "data"))
    log.info("%s", loaded.describe())
    files = []
    for distortion in distortions:
        entry = dm.split_entry("test", distortion)
        files += explain_test_set(detector, entry.features, entry.rows, cfg, loaded.threshold,
                                  out, f"{prefix}-{distortion.name}")
    logged = log_to_run(files, run_id, uri) if mlflow else None
    return {"files": [str(f) for f in files], "out": str(out), "run_id": logged}


def log_to_run(files: list[Path], run_id: str | None, uri: str) -> str | None:
    """Log ``files`` under ``explain/`` in the model's run when the store has it."""
    return tracking.log_to_run(files, run_id, uri, "explain")
