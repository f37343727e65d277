"""Test a trained detector on every test distortion: metrics at the window (clip) level and,
for audio files, at the file level; 95 % intervals from a bootstrap over the split's groups;
n always; confusion matrices and predictions CSVs.

Keys: ``test/<d>/<metric>`` (window level), ``test/<d>/file/<metric>`` (file level), each with
``<metric>_ci_low`` / ``<metric>_ci_high``, and ``n_clips`` / ``n_files`` / ``n_groups``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from deepfake_detect import atomic
from deepfake_detect.data.datamodule import AudioDataModule
from deepfake_detect.evaluation import metrics as M
from deepfake_detect.evaluation import stats
from deepfake_detect.evaluation.aggregate import by_file, file_level
from deepfake_detect.models.detector import Detector

log = logging.getLogger(__name__)
HEADLINE = stats.METRICS


@dataclass(frozen=True)
class Intervals:
    """How the bootstrap intervals are drawn (``eval.bootstrap``, ``eval.ci_level``)."""

    n_boot: int = stats.N_BOOT
    level: float = stats.LEVEL
    seed: int = 0


@dataclass
class Scored:
    """One test set's scored rows (clips, or files), their scores and labels."""

    name: str
    rows: list[dict[str, Any]]
    scores: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        return np.array([int(row["label"]) for row in self.rows], dtype=np.int64)

    @property
    def groups(self) -> list[str]:
        return [str(row["group"]) for row in self.rows]


def choose_threshold(trainer: pl.Trainer, model: Detector, dm: AudioDataModule,
                     rule: float | str) -> tuple[float, str]:
    """The decision threshold: a fixed number, or ``val_eer`` (the EER point on val)."""
    if not isinstance(rule, str):
        return float(rule), f"fixed {float(rule):g}"
    batches = trainer.predict(model, datamodule=dm)  # its predict loader: val
    scores = torch.cat(list(batches))
    labels = torch.from_numpy(dm.entries["val"].labels[: len(scores)])
    _, threshold = M.equal_error_rate(scores, labels)
    if threshold != threshold:  # one class only in val: fall back visibly
        log.warning("the validation set lacks a class; threshold val_eer -> 0.5")
        return 0.5, "fixed 0.5 (val_eer unavailable)"
    return threshold, "val_eer"


def level_values(scored: Scored, threshold: float, intervals: Intervals,
                 count: str = "n_clips") -> dict[str, float]:
    """Metrics of one level of one test set, with intervals, per-generator accuracy and n."""
    labels = scored.labels
    values = M.binary_metrics(torch.from_numpy(scored.scores).float(),
                              torch.from_numpy(labels), threshold)
    values.update({f"acc_{gen}": acc for gen, acc in
                   M.per_generator_accuracy(scored.scores, scored.rows, threshold).items()})
    if intervals.n_boot:
        found = stats.intervals(scored.scores, labels, scored.groups, threshold,
                                intervals.n_boot, intervals.level, intervals.seed, HEADLINE)
        for metric, interval in found.items():
            values[f"{metric}_ci_low"], values[f"{metric}_ci_high"] = interval.low, interval.high
    values[count] = float(len(labels))
    values["n_groups"] = float(len(set(scored.groups)))
    return values


def evaluate(trainer: pl.Trainer, model: Detector, dm: AudioDataModule, out_dir: Path,
             threshold: float = 0.5, intervals: Intervals = Intervals(),
             aggregate: str = "mean") -> tuple[dict[str, float], list[Path]]:
    """Run the test loop; return ``test/<distortion>/...`` values and artifact files."""
    trainer.test(model, datamodule=dm, verbose=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    flat: dict[str, float] = {}
    files: list[Path] = []
    for name in dm.test_names:
        output = model.test_outputs[name]
        all_rows = dm.test_rows(name)  # limit_test_batches may have scored only some rows
        scored = Scored(name, [all_rows[int(i)] for i in output["index"]],
                        output["scores"].numpy().astype(np.float64))
        values = level_values(scored, threshold, intervals)
        flat.update({f"test/{name}/{key}": value for key, value in values.items()})
        files += write_test_set(scored, values, threshold, out_dir, model, output)
        if file_level(scored.rows):
            file_rows, file_scores = by_file(scored.rows, scored.scores, aggregate)
            per_file = Scored(name, file_rows, file_scores)
            file_values = level_values(per_file, threshold, intervals, "n_files")
            flat.update({f"test/{name}/file/{key}": v for key, v in file_values.items()})
            files.append(M.write_file_predictions(out_dir / f"predictions_{name}_files.csv",
                                                  file_rows, file_scores, threshold))
        if model.attribution:
            files += _attribution(name, output["probs"], output["targets"], model.classes,
                                  out_dir, flat)
    return flat, files


def write_test_set(scored: Scored, values: dict[str, float], threshold: float, out_dir: Path,
                   model: Detector, output: dict[str, torch.Tensor]) -> list[Path]:
    """The confusion matrix (JSON and PNG, its title with the interval and n) and the
    predictions CSV of one test set."""
    name = scored.name
    counts = M.confusion_counts(torch.from_numpy(scored.scores).float(),
                                torch.from_numpy(scored.labels), threshold)
    accuracy = stats.Interval(values["accuracy"], values.get("accuracy_ci_low", float("nan")),
                              values.get("accuracy_ci_high", float("nan")),
                              int(values["n_groups"]), len(scored.rows))
    title = (f"test distortion: {name}\nacc {accuracy.text()}, n = {accuracy.n_rows} clips in "
             f"{accuracy.n_groups} groups")
    probs = output["probs"].numpy() if model.attribution else None
    return [atomic.write_json(out_dir / f"confusion_{name}.json", counts),
            M.plot_confusion(counts, title, out_dir / f"confusion_{name}.png"),
            M.write_predictions(out_dir / f"predictions_{name}.csv", scored.rows, scored.scores,
                                threshold, probs, model.classes)]


def _attribution(name: str, probs: torch.Tensor, targets: torch.Tensor,
                 classes: tuple[str, ...], out_dir: Path, flat: dict[str, float]) -> list[Path]:
    """Closed-set attribution metrics (``test/<d>/attribution/<metric>``) and confusion."""
    values, counts = M.attribution_metrics(probs, targets, classes)
    flat.update({f"test/{name}/attribution/{key}": v for key, v in values.items()})
    title = (f"attribution, test distortion: {name}\n(balanced acc "
             f"{values['balanced_accuracy']:.3f}, macro F1 {values['macro_f1']:.3f})")
    return [atomic.write_json(out_dir / f"attribution_{name}.json", counts),
            M.plot_confusion(counts, title, out_dir / f"attribution_{name}.png")]
