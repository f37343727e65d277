"""The detectors table: each detector's runs pooled, the baselines as rows, the verdict line
and the overlaid ROC figure, from runs as MLflow gives them (a stand-in client serving the
predictions CSVs)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from deepfake_detect.evaluation import stats
from deepfake_detect.reporting import detector_table, studies


class Client:
    """Serves ``<root>/<run id>/<artifact>`` like ``MlflowClient.download_artifacts``."""

    def __init__(self, root: Path):
        self.root = root

    def download_artifacts(self, run_id: str, name: str, dst: str) -> str:
        source = self.root / run_id / name
        if not source.is_file():
            raise OSError(f"no {name} in {run_id}")
        target = Path(dst) / run_id / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return str(shutil.copy(source, target))


def write(path: Path, scores: np.ndarray, labels: np.ndarray, groups: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["clip_id", "score", "label", "group"])
        for i, (s, y, g) in enumerate(zip(scores, labels, groups, strict=True)):
            writer.writerow([f"c{i}", f"{s:.6f}", int(y), g])


def fold_runs(root: Path, name: str, kind: str | None, skill: float, baselines: bool,
              seed: int) -> tuple[list, np.ndarray, np.ndarray]:
    """Two folds of one detector: file-level predictions of 40 files in 10 groups each."""
    rng = np.random.default_rng(seed)
    runs, all_scores, all_labels = [], [], []
    for fold in range(2):
        labels = np.arange(40) % 2
        scores = np.clip(rng.normal(0.5 + skill * (labels - 0.5), 0.2), 0, 1)
        groups = [f"g{fold}-{i % 10}" for i in range(40)]
        run_id = f"{name}-{kind}-{fold}"
        write(root / run_id / "predictions_base_files.csv", scores, labels, groups)
        metrics = {"test/base/file/auroc": stats.auroc(scores, labels)}
        if baselines:
            chain = np.clip(rng.normal(0.5 + 0.9 * (labels - 0.5), 0.1), 0, 1)
            write(root / run_id / "baselines" / "baseline_recording_chain_base_files.csv",
                  chain, labels, groups)
            metrics["baseline/recording_chain/test/base/file/auroc"] = 1.0
        params = {"model.name": name, "data.split.folds": "2", "seed": "0"}
        if kind:
            params["features.kind"] = kind
        runs.append(SimpleNamespace(info=SimpleNamespace(run_id=run_id), data=SimpleNamespace(
            params=params, metrics=metrics, tags={"train_distortion": "base"})))
        all_scores.append(scores)
        all_labels.append(labels)
    return runs, np.concatenate(all_scores), np.concatenate(all_labels)


def test_the_table_pools_each_detectors_runs_beside_the_baselines(tmp_path) -> None:
    default, scores, labels = fold_runs(tmp_path, "resnet18", None, 0.1, True, 0)
    lcnn, lcnn_scores, lcnn_labels = fold_runs(tmp_path, "lcnn", "stft", 0.6, False, 1)
    runs = [*lcnn, *default]
    assert detector_table.compares_detectors(runs)
    assert not detector_table.compares_detectors(default)
    client = Client(tmp_path)
    rows = detector_table.table(client, runs, "base", n_boot=200)
    assert [r["detector"] for r in rows] == ["ResNet18 · logmel", "LCNN · stft",
                                            "baseline: recording_chain"]
    assert rows[0]["auroc"] == pytest.approx(stats.auroc(scores, labels))
    assert rows[1]["auroc"] == pytest.approx(stats.auroc(lcnn_scores, lcnn_labels), abs=1e-6)
    assert rows[1]["n files / groups"] == "80 / 20"
    assert rows[1]["auroc_low"] <= rows[1]["auroc"] <= rows[1]["auroc_high"]
    lines, logged, figures, tables = detector_table.section(client, runs, ["base"], tmp_path,
                                                            n_boot=200)
    text = "\n".join(lines)
    assert "| LCNN · stft | lcnn | stft | 2 | 80 / 20 |" in text
    assert "No detector's AUROC interval clears the best shortcut baseline" in text
    assert figures == [tmp_path / "detectors_roc_base.png"] and figures[0].stat().st_size
    assert logged["detectors/base/lcnn_stft/auroc"] == rows[1]["auroc"]
    assert "curve" not in tables["base"][0]
    # Cross-validation pooling keeps detectors apart.
    assert sorted(studies.fold_groups(runs)) == ["base, seed 0", "base, seed 0, lcnn on stft"]


def test_a_study_of_one_detector_has_no_table(tmp_path) -> None:
    default, _, _ = fold_runs(tmp_path, "resnet18", None, 0.1, True, 0)
    assert detector_table.section(Client(tmp_path), default, ["base"], tmp_path) == \
        ([], {}, [], {})
