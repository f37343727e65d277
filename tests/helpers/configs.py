"""Configs and checks the tests share: the tiny configuration, composing a real training
config with Hydra, where the real recordings are, and checking a run against its CSV."""

from __future__ import annotations

import csv
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from deepfake_detect.config import conf_dir

CONF_DIR = conf_dir()
REPO = Path(__file__).resolve().parents[2]
SHARED_AUDIO = REPO.parent / "shared" / "audio"

# A tiny, fast configuration: every stage of the pipeline, one batch each.
TINY = [
    "debug=fast_dev_run",
    "trainer.enable_progress_bar=false",
]


def compose_cfg(overrides: list[str], root: Path) -> DictConfig:
    """The composed training config with outputs under ``root``."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[f"paths.root={root}", *overrides])


def assert_matches_predictions(result: dict, name: str) -> None:
    """A finished run's ``test/<name>/accuracy`` is the share of right decisions in its
    predictions CSV, whose decisions are score >= the run's threshold."""
    path = Path(result["run_dir"]) / "artifacts" / f"predictions_{name}.csv"
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows, path
    for row in rows:
        assert int(row["prediction"]) == int(float(row["score"]) >= result["threshold"]), row
    right = sum(row["prediction"] == row["label"] for row in rows)
    assert abs(result[f"test/{name}/accuracy"] - right / len(rows)) < 1e-6, (result, rows)
