"""A real tiny training run on MLflow's run page: its Model metrics open on the headline
test metrics and the training curves, the details (baselines, intervals, per generator, the
field's costs, counts, model size) after them; as the REST API's keys lay it out and as a
real headless Chromium draws it from a real ``mlflow server``. The report reads it back under
the result names."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from deepfake_detect import tracking
from deepfake_detect.reporting.report import find_runs
from deepfake_detect.training.run import train
from tests.helpers.configs import TINY, compose_cfg
from tests.helpers.mlflow_ui import (
    CHROMIUM,
    MODEL_METRICS,
    NO_CHROMIUM,
    mlflow_server,
    rendered_sections,
    run_page,
    screenshot,
)

pytestmark = pytest.mark.slow  # trains, starts a server

TESTS = ["test/base", "test/combined", "test/pitch", "test/tempo"]  # as the UI sorts them


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """Two epochs (two points per curve), the three baselines, intervals."""
    root = tmp_path_factory.mktemp("page") / "out"
    return train(compose_cfg([*TINY, "trainer.max_epochs=2", "trainer.limit_train_batches=2",
                              "eval.bootstrap=50", "logger.experiment_name=page"], root))


@pytest.fixture(scope="module")
def server(tiny: dict, tmp_path_factory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("server"), tiny["tracking_uri"]) as base:
        yield base


def rest(base: str, path: str, **query: str) -> dict:
    url = f"{base}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def test_the_page_opens_on_the_headline_and_the_curves(tiny: dict, server: str) -> None:
    run = rest(server, "runs/get", run_id=tiny["run_id"])["run"]
    page = run_page(m["key"] for m in run["data"]["metrics"])
    names = [section for section, _ in page]
    assert names[:6] == [*TESTS, "train", "val"], names
    assert dict(page)["test/base"] == sorted(f"test/base/{m}" for m in tracking.HEADLINE)
    assert dict(page)["val"] == ["val/acc", "val/auroc", "val/loss"]
    for key in ("train/loss", "val/auroc"):  # curves: a point per epoch
        history = rest(server, "metrics/get-history", run_id=tiny["run_id"], metric_key=key)
        assert len(history["metrics"]) == 2, key
    details = names[6:-1]
    assert names[-1] == MODEL_METRICS and details
    assert all(name.startswith(f"{tracking.DETAIL}/") for name in details), details
    for first in ("x/baseline/band_stats/test/base", "x/ci/test/base", "x/field/test/base",
                  "x/generator/test/base", "x/other/test/base", "x/model"):
        assert first in details, first


def test_every_result_reads_back_under_its_name(tiny: dict) -> None:
    """What train() returned is what the report's runs hold: no result lost or renamed."""
    client = MlflowClient(tracking_uri=tiny["tracking_uri"])
    _, (run,) = find_runs(client, "page", None)
    logged = {k: v for k, v in tiny.items() if isinstance(v, float) and v == v}
    assert {k: run.data.metrics[k] for k in logged} == pytest.approx(logged)
    raw = client.get_run(tiny["run_id"]).data.metrics
    assert "x/ci/test/base/auroc_ci_low" in raw and "test/base/auroc_ci_low" not in raw


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_chromium_draws_the_sections_in_that_order(tiny: dict, server: str,
                                                   tmp_path: Path) -> None:
    url = f"{server}/#/experiments/{tiny_experiment(tiny)}/runs/{tiny['run_id']}/model-metrics"
    drawn = rendered_sections(url, tmp_path / "profile")
    run = rest(server, "runs/get", run_id=tiny["run_id"])["run"]
    expected = [(s, len(keys)) for s, keys in run_page(m["key"] for m in run["data"]["metrics"])]
    assert drawn == expected
    shot = screenshot(url, tmp_path / "profile", tmp_path / "run_page.png")
    assert shot.stat().st_size > 20_000  # drawn, not blank


def tiny_experiment(tiny: dict) -> str:
    return MlflowClient(tracking_uri=tiny["tracking_uri"]).get_run(
        tiny["run_id"]).info.experiment_id
