"""Shared fixtures: compose real configs with Hydra and run them through ``train(cfg)``."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from deepfake_detect.train import CONF_DIR

REPO = Path(__file__).resolve().parents[1]
SHARED_AUDIO = REPO.parent / "shared" / "audio"

# A tiny, fast configuration: every stage of the pipeline, one batch each.
TINY = [
    "debug=fast_dev_run",
    "trainer.enable_progress_bar=false",
]

os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")


def compose_cfg(overrides: list[str], root: Path) -> DictConfig:
    """The composed training config with outputs under ``root``."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[f"paths.root={root}", *overrides])


PASSED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Remember whether a test's call passed (an unexpected pass of an xfail does not)."""
    report = yield
    if report.when == "call":
        item.stash[PASSED] = report.passed and not hasattr(report, "wasxfail")
    return report


@pytest.fixture(autouse=True)
def _drop_checkpoints_of_passed_tests(request: pytest.FixtureRequest):
    """A tiny training run still leaves a few hundred MB of ResNet18 checkpoints (a full run
    of the suite, about 13 GB): once a test has passed, its own folder's go. A failed test
    keeps them to look at; folders that fixtures share across tests are left alone."""
    folder = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if folder is not None and request.node.stash.get(PASSED, False):
        for checkpoint in folder.rglob("*.ckpt"):
            checkpoint.unlink(missing_ok=True)


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """``make_cfg(*overrides, tiny=True)``: a composed config writing under tmp_path."""

    def make(*overrides: str, tiny: bool = True, root: Path | None = None) -> DictConfig:
        return compose_cfg([*(TINY if tiny else []), *overrides], root or tmp_path / "out")

    return make


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
