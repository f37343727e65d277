"""Study-level summaries the report adds when an experiment's runs are folds of a grouped
cross-validation or leave-one-generator-out jobs: mean ± sd across folds with the pooled
out-of-fold AUROC and its group-bootstrap interval, and the cross-generator table (one row per
held-out generator, and the mean), the CNN beside the shortcut baselines.

Pooling reads each run's predictions CSV from MLflow (file level when there is one)."""

from __future__ import annotations

import csv
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_detect.evaluation import stats

LEVELS = ("file/", "")  # file level first when the runs have it


def level_of(runs: list[Any], test: str) -> str:
    return next((lv for lv in LEVELS if all(f"test/{test}/{lv}auroc" in r.data.metrics
                                            for r in runs)), "")


def cell(values: list[float]) -> str:
    xs = [v for v in values if v == v]
    if not xs:
        return "–"
    sd = float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0
    return f"{np.mean(xs):.3f} ± {sd:.3f}"


def fold_groups(runs: list[Any]) -> dict[str, list[Any]]:
    """Cross-validation runs by what they share (training distortion and seed), folds apart."""
    out: dict[str, list[Any]] = defaultdict(list)
    for run in runs:
        if int(run.data.params.get("data.split.folds", "0") or 0) >= 2:
            key = (f"{run.data.tags.get('train_distortion', '?')}, seed "
                   f"{run.data.params.get('seed', '?')}")
            out[key].append(run)
    return dict(out)


def pooled_predictions(client: Any, runs: list[Any], name: str
                       ) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """Every run's predictions in the CSV artifact ``name`` together (scores, labels,
    groups); None when a run lacks it."""
    scores, labels, groups = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            try:
                path = Path(client.download_artifacts(run.info.run_id, name, tmp))
            except Exception:  # noqa: BLE001 - a run without the file: no pooled figure
                return None
            with path.open() as handle:
                for row in csv.DictReader(handle):
                    scores.append(float(row["score"]))
                    labels.append(int(row["label"]))
                    groups.append(f"{run.info.run_id}:{row['group']}")
    return np.asarray(scores), np.asarray(labels), groups


def models_of(runs: list[Any], test: str, level: str) -> list[tuple[str, str, str]]:
    """(name, metric prefix, predictions artifact) of the CNN and each baseline."""
    suffix = "_files" if level else ""
    out = [("CNN", f"test/{test}/{level}", f"predictions_{test}{suffix}.csv")]
    for name in sorted({k.split("/")[1] for r in runs for k in r.data.metrics
                        if k.startswith("baseline/")}):
        out.append((name, f"baseline/{name}/test/{test}/{level}",
                    f"baselines/baseline_{name}_{test}{suffix}.csv"))
    return out


def cv_section(client: Any, runs: list[Any], tests: list[str],
               metrics: tuple[str, ...]) -> tuple[list[str], dict[str, float]]:
    """Markdown lines and summary-run metrics for every cross-validation in ``runs``: per
    model (the CNN, each baseline) mean ± sd across folds and the pooled out-of-fold AUROC."""
    metrics = tuple(dict.fromkeys((*metrics, "auroc")))
    lines: list[str] = []
    logged: dict[str, float] = {}
    for key, members in fold_groups(runs).items():
        lines += [f"## Cross-validation: {key} ({len(members)} folds)", ""]
        for test in tests:
            level = level_of(members, test)
            lines += [f"Test distortion {test}, {level.rstrip('/') or 'window'} level; mean ± sd "
                      "across folds, and the AUROC of all folds' predictions pooled, with its "
                      "95 % interval over groups.", "",
                      "| model | " + " | ".join(metrics) + " | pooled out-of-fold AUROC |",
                      "|---|" + "---|" * (len(metrics) + 1)]
            for name, prefix, artifact in models_of(members, test, level):
                means = [cell([r.data.metrics.get(f"{prefix}{m}", float("nan"))
                               for r in members]) for m in metrics]
                pooled = pooled_predictions(client, members, artifact)
                text = "–"
                if pooled is not None:
                    auroc = stats.intervals(*pooled, metrics=("auroc",))["auroc"]
                    text = f"{auroc.text()} (n = {auroc.n_groups} groups)"
                    logged[f"cv/{test}/{level}{name}/pooled_auroc"] = auroc.value
                lines.append(f"| {name} | " + " | ".join(means) + f" | {text} |")
            lines.append("")
    return lines, logged


def logo_section(runs: list[Any], tests: list[str]) -> tuple[list[str], dict[str, float]]:
    """The cross-generator table: AUROC on each held-out generator, CNN and baselines."""
    held = [r for r in runs if r.data.tags.get("holdout_generator")]
    if not held:
        return [], {}
    baselines = sorted({k.split("/")[1] for r in held for k in r.data.metrics
                        if k.startswith("baseline/")})
    lines: list[str] = []
    logged: dict[str, float] = {}
    for test in tests:
        level = level_of(held, test)
        lines += [f"## Leave one generator out: test distortion {test} "
                  f"({level.rstrip('/') or 'window'} level AUROC, 95 % interval)", "",
                  "| held-out generator | CNN | " + " | ".join(baselines) + " |",
                  "|---|---|" + "---|" * len(baselines)]
        columns: dict[str, list[float]] = defaultdict(list)
        for run in sorted(held, key=lambda r: r.data.tags["holdout_generator"]):
            cells = []
            for name, prefix in [("CNN", "test"), *((b, f"baseline/{b}/test") for b in baselines)]:
                key = f"{prefix}/{test}/{level}auroc"
                value = run.data.metrics.get(key, float("nan"))
                columns[name].append(value)
                low, high = (run.data.metrics.get(f"{key}_ci_{end}") for end in ("low", "high"))
                cells.append(f"{value:.3f}" + (f" [{low:.2f}, {high:.2f}]" if low is not None
                                               and high is not None else ""))
            generator = run.data.tags["holdout_generator"]
            logged[f"logo/{generator}/{test}/auroc"] = columns["CNN"][-1]
            lines.append(f"| {generator} | " + " | ".join(cells) + " |")
        lines += ["| **mean ± sd** | " + " | ".join(cell(columns[n]) for n in
                                                     ["CNN", *baselines]) + " |", ""]
    return lines, logged
