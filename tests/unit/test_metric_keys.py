"""Where results are logged in MLflow: headline test metrics, ``train/`` and ``val/`` keep
their names and the details go under ``x/``, so MLflow's run page (its layout computed as the
UI computes it, ``tests/helpers/mlflow_ui.py``) opens on them; every key reads back as its
result name, and runs logged before the move read as they always did."""

from __future__ import annotations

from pathlib import Path

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from deepfake_detect import tracking
from deepfake_detect.evaluation import detection_costs, stats
from deepfake_detect.reporting.report import find_runs
from tests.helpers.mlflow_ui import MODEL_METRICS, run_page

LOGGED = {  # result name -> MLflow key
    "train/loss": "train/loss",
    "val/auroc": "val/auroc",
    "epoch": "epoch",
    "threshold": "threshold",
    "test/base/auroc": "test/base/auroc",
    "test/base/file/eer": "test/base/file/eer",
    "test/base/attribution/macro_f1": "test/base/attribution/macro_f1",
    "test/base/auroc_ci_low": "x/ci/test/base/auroc_ci_low",
    "test/base/file/min_dcf_ci_high": "x/ci/test/base/file/min_dcf_ci_high",
    "test/base/min_dcf": "x/field/test/base/min_dcf",
    "test/base/acc_MusicGen": "x/generator/test/base/acc_MusicGen",
    "test/base/file/acc_human": "x/generator/test/base/file/acc_human",
    "test/base/n_clips": "x/other/test/base/n_clips",
    "test/base/eer_threshold": "x/other/test/base/eer_threshold",
    "test/base/uncalibrated/ece": "x/test/base/uncalibrated/ece",
    "test/base/file/probe/rate/human/auroc": "x/test/base/file/probe/rate/human/auroc",
    "baseline/band_stats/test/base/auroc": "x/baseline/band_stats/test/base/auroc",
    "baseline/band_stats/sources/fmc/accuracy": "x/baseline/band_stats/sources/fmc/accuracy",
    "sources/fmc/file/auroc": "x/sources/fmc/file/auroc",
    "fusion/weight/band_stats": "x/fusion/weight/band_stats",
    "model/params": "x/model/params",
    # names from the data that look like a group: still one test set, one baseline
    "test/ci/auroc_ci_low": "x/ci/test/ci/auroc_ci_low",
    "test/file/accuracy": "test/file/accuracy",
    "baseline/ci/test/base/eer": "x/baseline/ci/test/base/eer",
}


def test_each_result_has_one_key_and_reads_back() -> None:
    assert {name: tracking.logged_key(name) for name in LOGGED} == LOGGED
    assert {tracking.result_key(key) for key in LOGGED.values()} == set(LOGGED)
    assert len(set(LOGGED.values())) == len(LOGGED)
    # The headline and the field's costs are the evaluation's own lists.
    assert tracking.HEADLINE == stats.METRICS
    assert tracking.FIELD_COSTS == detection_costs.FIELD_METRICS


def test_the_run_page_leads_with_the_headline_and_the_curves() -> None:
    page = run_page(LOGGED.values())
    names = [section for section, _ in page]
    assert names[:5] == ["test/base", "test/base/attribution", "test/base/file", "test/file",
                         "train"]
    assert names[5] == "val" and names[-1] == MODEL_METRICS
    assert all(name.startswith(f"{tracking.DETAIL}/") for name in names[6:-1])
    assert dict(page)["test/base"] == ["test/base/auroc"]


def test_old_and_new_runs_read_alike_in_the_report(tmp_path: Path) -> None:
    """A run logged before the details moved and one logged after: the report's runs hold
    the same result names and values."""
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("both")
    for keys in (LOGGED, LOGGED.values()):
        run = client.create_run(experiment)
        client.log_batch(run.info.run_id, metrics=[Metric(key, float(i), 0, 0)
                                                   for i, key in enumerate(keys)])
        client.set_terminated(run.info.run_id)
    _, runs = find_runs(client, "both", None)
    assert [r.data.metrics for r in runs] == [{n: float(i) for i, n in enumerate(LOGGED)}] * 2
