"""``task=attribution``: human + one class per generator (closed set), on a FakeMusicCaps layout
with SunoCaps as open-set test clips; binary metrics and P(AI) keep working."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from mlflow.tracking import MlflowClient

from deepfake_detect import tracking
from deepfake_detect.errors import ConfigError
from deepfake_detect.evaluation.metrics import attribution_metrics, binary_metrics
from deepfake_detect.inference.scoring import predict
from deepfake_detect.training.plan import plan
from deepfake_detect.training.run import train
from tests.helpers.audio_data import FMC_GENERATORS, make_fakemusiccaps

pytestmark = pytest.mark.slow  # end to end: trains, sweeps or runs commands


@pytest.fixture(scope="module")
def attributed(tmp_path_factory) -> dict:
    from tests.helpers.configs import TINY, compose_cfg

    tmp = tmp_path_factory.mktemp("attribution")
    make_fakemusiccaps(tmp / "data")
    cfg = compose_cfg([*TINY, "task=attribution", "data=fakemusiccaps",
                       f"data.source.root={tmp / 'data'}", "data.source.include_sunocaps=true",
                       "data.source.n_clips=null", "eval.distortions=[base]",
                       "trainer.limit_test_batches=1.0"], tmp / "out")
    return train(cfg)


def test_classes_are_human_and_the_generators_seen_in_training(attributed: dict) -> None:
    classes = attributed["data"]["classes"]
    assert classes[0] == "human"
    assert set(classes[1:]) <= set(FMC_GENERATORS) and len(classes) >= 3
    assert "SunoCaps" not in classes  # open set: test only, never a class


def test_attribution_metrics_and_row_normalised_confusion_in_mlflow(attributed: dict) -> None:
    client = MlflowClient(tracking_uri=attributed["tracking_uri"])
    run = client.get_run(attributed["run_id"])
    assert run.data.tags["task"] == "attribution"
    metrics = run.data.metrics
    classes = attributed["data"]["classes"]
    # SunoCaps clips (all in test) and any generator absent from training are left out of
    # attribution and kept in the binary metrics.
    rows = list(csv.DictReader((Path(attributed["run_dir"]) / "artifacts"
                                / "predictions_base.csv").open()))
    outside = [r for r in rows if r["generator"] not in classes]
    assert sum(r["generator"] == "SunoCaps" for r in outside) == 3
    assert metrics["test/base/attribution/left_out"] == len(outside)
    # The attribution metrics are those of the CSV's predicted classes (true class: the
    # clip's generator, or human).
    inside = [r for r in rows if r["generator"] in classes]
    targets = torch.tensor([classes.index(r["generator"]) if r["generator"] in classes else -1
                            for r in rows])
    predicted = torch.tensor([classes.index(r["predicted_class"]) for r in rows])
    expected, _ = attribution_metrics(torch.nn.functional.one_hot(predicted, len(classes)),
                                      targets, classes)
    for key in ("balanced_accuracy", "macro_f1", "accuracy"):
        assert metrics[f"test/base/attribution/{key}"] == pytest.approx(expected[key]), key
    assert expected["accuracy"] == pytest.approx(
        sum(r["predicted_class"] == r["generator"] for r in inside) / len(inside))
    # Binary accuracy on the open-set clips: the share of them called AI.
    suno = [r for r in outside if r["generator"] == "SunoCaps"]
    assert metrics[tracking.logged_key("test/base/acc_SunoCaps")] == pytest.approx(
        sum(r["prediction"] == "1" for r in suno) / len(suno))
    labels = torch.tensor([int(r["label"]) for r in rows])
    scores = torch.tensor([float(r["score"]) for r in rows])
    binary = binary_metrics(scores, labels, attributed["threshold"])
    for key in ("accuracy", "auroc"):
        assert metrics[f"test/base/{key}"] == pytest.approx(binary[key], abs=1e-4), key
    files = {a.path for a in client.list_artifacts(attributed["run_id"])}
    assert {"attribution_base.png", "attribution_base.json", "confusion_base.json"} <= files
    counts = json.loads(Path(client.download_artifacts(attributed["run_id"],
                                                       "attribution_base.json")).read_text())
    assert counts["labels"] == classes
    matrix = np.array(counts["matrix"])
    from_csv = np.zeros_like(matrix)
    for row in inside:
        from_csv[classes.index(row["generator"]), classes.index(row["predicted_class"])] += 1
    np.testing.assert_array_equal(matrix, from_csv)
    assert counts["left_out_open_set"] == len(outside)
    normalised = np.array(counts["row_normalised"])
    for row, share in zip(matrix, normalised, strict=True):
        assert share.sum() == pytest.approx(1.0 if row.sum() else 0.0)
        np.testing.assert_allclose(share * max(row.sum(), 1), row, atol=1e-9)


def test_predictions_csv_holds_class_probabilities(attributed: dict) -> None:
    path = Path(attributed["run_dir"]) / "artifacts" / "predictions_base.csv"
    rows = list(csv.DictReader(path.open()))
    classes = attributed["data"]["classes"]
    for row in rows:
        probs = np.array([float(row[f"p_{name}"]) for name in classes])
        assert probs.sum() == pytest.approx(1.0, abs=1e-4)
        assert row["predicted_class"] == classes[int(probs.argmax())]
        assert float(row["score"]) == pytest.approx(1.0 - probs[0], abs=1e-5)


def test_predict_reports_p_ai_and_the_most_likely_class(attributed: dict,
                                                         tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    files = []
    for i in range(2):
        files.append(tmp_path / f"song{i}.wav")
        sf.write(files[-1], 0.1 * rng.standard_normal(16000 * 3), 16000)
    classes = attributed["data"]["classes"]
    rows = predict(Path(attributed["run_dir"]), files, device="cpu", per_window=True)
    for row in rows:
        assert not row["error"] and row["n_windows"] == 3  # 3 s, 1 s windows
        assert row["score"] == pytest.approx(np.mean(row["window_scores"]), abs=1e-6)
        assert row["decision"] == ("ai" if row["score"] >= row["threshold"] else "human")
        assert row["attribution"] in classes
        # score = 1 - mean P(human). A generator as the most likely class has a mean
        # probability >= P(human), so P(human) <= 1/2; human as the most likely class has
        # P(human) >= 1/K.
        if row["attribution"] == "human":
            assert row["score"] <= 1 - 1 / len(classes) + 1e-6
        else:
            assert row["score"] >= 0.5 - 1e-6


def test_attribution_metrics_on_known_predictions() -> None:
    targets = torch.tensor([0, 0, 1, 1, 2, 2, -1])
    predicted = torch.tensor([0, 0, 1, 2, 2, 2, 1])
    probs = torch.nn.functional.one_hot(predicted, 3).float()
    values, counts = attribution_metrics(probs, targets, ("human", "a", "b"))
    assert values["accuracy"] == pytest.approx(5 / 6)
    assert values["balanced_accuracy"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert values["macro_f1"] == pytest.approx((1 + 2 / 3 + 0.8) / 3)
    assert values["left_out"] == 1
    assert counts["matrix"] == [[2, 0, 0], [0, 1, 1], [0, 0, 2]]
    assert counts["row_normalised"][1] == [0.0, 0.5, 0.5]


def test_unknown_task_names_the_key(make_cfg) -> None:
    with pytest.raises(ConfigError, match="task.*binary, attribution"):
        plan(make_cfg("task=multiclass"))
