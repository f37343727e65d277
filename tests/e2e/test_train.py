"""End to end through ``train(cfg)``: MLflow contents, cache reuse, determinism."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from deepfake_detect.data import synthetic
from deepfake_detect.evaluation.metrics import binary_metrics, equal_error_rate
from deepfake_detect.models.refs import load_model
from deepfake_detect.training.run import train

pytestmark = pytest.mark.slow  # end to end: trains, sweeps or runs commands

DISTORTIONS = ("base", "pitch", "tempo", "combined")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict:
    """One tiny run (threshold: the validation EER point), shared by the tests that only
    read what it left behind."""
    from tests.helpers.configs import TINY, compose_cfg

    root = tmp_path_factory.mktemp("run") / "out"
    cfg = compose_cfg([*TINY, "trainer.max_epochs=2", "trainer.limit_train_batches=2",
                       "eval.threshold=val_eer"], root)
    return {**train(cfg), "root": root}


def predictions(result: dict, name: str) -> list[dict[str, str]]:
    with (Path(result["run_dir"]) / "artifacts" / f"predictions_{name}.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_returns_test_metrics_for_every_distortion(finished: dict) -> None:
    """Every metric of every test distortion is what the predictions CSV gives."""
    threshold = finished["threshold"]
    for name in DISTORTIONS:
        rows = predictions(finished, name)
        assert len(rows) == finished["data"]["clips"][f"test/{name}"]  # every test clip
        scores = torch.tensor([float(row["score"]) for row in rows])
        labels = torch.tensor([int(row["label"]) for row in rows])
        assert [int(row["prediction"]) for row in rows] == (scores >= threshold).long().tolist()
        hits = [row["prediction"] == row["label"] for row in rows]
        assert finished[f"test/{name}/accuracy"] == pytest.approx(sum(hits) / len(rows))
        # All of them, from the (6-decimal) scores of the CSV.
        expected = binary_metrics(scores, labels, threshold)
        for metric in ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "auroc",
                       "eer"):
            got = finished[f"test/{name}/{metric}"]
            assert got == pytest.approx(expected[metric], abs=1e-4, nan_ok=True), (name, metric)
        # Accuracy per generator: recall on each generator's clips, specificity on human ones.
        for gen in {row["generator"] for row in rows}:
            mine = [row for row in rows if row["generator"] == gen]
            hits = sum(row["prediction"] == row["label"] for row in mine)
            assert finished[f"test/{name}/acc_{gen}"] == pytest.approx(hits / len(mine))


def test_mlflow_run_holds_params_metrics_and_artifacts(finished: dict) -> None:
    client = MlflowClient(tracking_uri=finished["tracking_uri"])
    run = client.get_run(finished["run_id"])
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["distortion.name"] == "base"
    assert params["seed"] == "0"
    assert params["features.n_mels"] == "32"
    assert not any(key.startswith(("paths.", "logger.")) for key in params)
    tags = run.data.tags
    assert tags["weights"] == "none"
    assert len(tags["config_hash"]) == 12
    assert tags["git_commit"]
    # Per-epoch metrics: one value per epoch.
    history = client.get_metric_history(run.info.run_id, "val/loss")
    assert len(history) == 2
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 2
    for key in ("test/pitch/eer", "test/tempo/f1", "test/base/accuracy"):
        if finished[key] == finished[key]:
            assert run.data.metrics[key] == pytest.approx(finished[key]), key
        else:  # NaN (one class in the test batch): not logged
            assert key not in run.data.metrics
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    for name in DISTORTIONS:
        assert {f"confusion_{name}.png", f"confusion_{name}.json",
                f"predictions_{name}.csv"} <= files
    local = Path(client.download_artifacts(run.info.run_id, "confusion_base.json"))
    counts = json.loads(local.read_text())
    assert counts["labels"] == ["human", "ai"] and counts["threshold"] == finished["threshold"]
    # Rows true, columns predicted: the counts of the predictions CSV, every test clip once.
    rows = predictions(finished, "base")
    matrix = [[0, 0], [0, 0]]
    for row in rows:
        matrix[int(row["label"])][int(row["prediction"])] += 1
    assert counts["matrix"] == matrix
    assert sum(map(sum, matrix)) == len(rows) == finished["data"]["clips"]["test/base"]
    assert run.data.metrics["test/base/accuracy"] == pytest.approx(
        (matrix[0][0] + matrix[1][1]) / len(rows))
    csv_path = Path(client.download_artifacts(run.info.run_id, "predictions_tempo.csv"))
    header = csv_path.read_text().splitlines()[0].split(",")
    assert header[:7] == ["clip_id", "group", "file", "generator", "label", "score",
                          "prediction"]
    assert "tempo_rate" in header


def test_second_run_reuses_cache_and_gives_identical_metrics(make_cfg, tmp_path, monkeypatch):
    calls = {"render": 0}
    real_render = synthetic.render

    def counting_render(*args, **kwargs):
        calls["render"] += 1
        return real_render(*args, **kwargs)

    monkeypatch.setattr(synthetic, "render", counting_render)
    # One worker: every clip is rendered in this process, where the calls are counted.
    cache = f"data.cache.dir={tmp_path / 'shared_cache'}"
    first = train(make_cfg(cache, "data.cache.workers=1", root=tmp_path / "a"))
    assert calls["render"] > 0
    assert first["data"]["cache"]["built"] == 6
    calls["render"] = 0
    second = train(make_cfg(cache, "data.cache.workers=1", root=tmp_path / "b"))
    assert calls["render"] == 0, "a cached configuration must not synthesise audio again"
    assert second["data"]["cache"] == {"built": 0, "reused": 6, "clips_computed": 0,
                                       "rebuilt_corrupt": 0}
    assert second["run_id"] != first["run_id"]
    metrics = [k for k in first if k.startswith("test/")]
    assert metrics and all(first[k] == second[k] or (first[k] != first[k] and
                                                     second[k] != second[k]) for k in metrics)


def test_changing_features_misses_the_cache(make_cfg, tmp_path) -> None:
    cache = f"data.cache.dir={tmp_path / 'shared_cache'}"
    train(make_cfg(cache, "eval.distortions=[base]", root=tmp_path / "a"))
    second = train(make_cfg(cache, "eval.distortions=[base]", "features.n_mels=24",
                            root=tmp_path / "b"))
    assert second["data"]["cache"]["built"] == 3


def test_val_eer_threshold_is_the_eer_point_of_the_val_scores(finished: dict) -> None:
    """``eval.threshold=val_eer``: the threshold is the EER point of the trained model's
    scores on the validation set, and it is the one the test decisions use."""
    model = load_model(finished["run_dir"])
    assert model.threshold_rule == "val_eer" and model.threshold == finished["threshold"]
    entry = next(p.parent for p in (finished["root"] / "cache").glob("*/meta.json")
                 if '"desc": "val/base"' in p.read_text())
    rows = json.loads((entry / "clips.json").read_text())["rows"]
    labels = torch.tensor([row["label"] for row in rows])
    assert set(labels.tolist()) == {0, 1}  # both classes: the EER exists
    with torch.no_grad():
        scores = model.detector.eval().score(torch.from_numpy(
            np.load(entry / "features.npy"))[:, None])
    _, expected = equal_error_rate(scores, labels)
    assert finished["threshold"] == pytest.approx(expected, abs=1e-5)
    assert finished["threshold"] != 0.5
    for name in DISTORTIONS:
        for row in predictions(finished, name):
            assert int(row["prediction"]) == int(float(row["score"]) >= finished["threshold"])
