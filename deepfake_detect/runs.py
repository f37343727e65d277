"""Run directories named by config signature, so the same config finds its own checkpoints.

The signature is a hash of the resolved config minus keys that do not change results
(paths, logger, launcher, resume switches, loader workers). The directory holds
``checkpoints/``, ``mlflow_run_id`` (so a resumed job continues the same MLflow run) and
``result.json``, written last and atomically: its presence means the run finished.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepfake_detect.tracking import flatten

IGNORED_PREFIXES = (
    "paths.", "logger.", "resume", "hydra.", "data.cache.", "data.loader.num_workers",
    "data.loader.pin_memory", "data.loader.persistent_workers", "trainer.enable_progress_bar",
    "trainer.enable_model_summary", "trainer.log_every_n_steps", "explain.",
)


def signature(resolved: Mapping[str, Any]) -> str:
    """A 12-hex-digit hash of the result-relevant part of the resolved config."""
    relevant = {k: v for k, v in flatten(resolved) if not k.startswith(IGNORED_PREFIXES)}
    blob = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RunDir:
    """``<runs>/<name>-<signature>``: checkpoints, MLflow run id and the final result."""

    path: Path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def artifacts(self) -> Path:
        return self.path / "artifacts"

    @property
    def result_file(self) -> Path:
        return self.path / "result.json"

    def create(self) -> RunDir:
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        return self

    def run_id(self) -> str | None:
        path = self.path / "mlflow_run_id"
        return path.read_text().strip() or None if path.is_file() else None

    def save_run_id(self, run_id: str) -> None:
        write_text_atomic(self.path / "mlflow_run_id", run_id)

    def result(self) -> dict[str, Any] | None:
        if not self.result_file.is_file():
            return None
        try:
            return json.loads(self.result_file.read_text())
        except ValueError:
            return None

    def save_result(self, result: Mapping[str, Any]) -> None:
        write_text_atomic(self.result_file, json.dumps(result, indent=2, default=str))

    def clear_result(self) -> None:
        self.result_file.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
