"""Study-level summaries the report adds when an experiment's runs are folds of a grouped
cross-validation or leave-one-generator-out jobs: mean ± sd across folds with the pooled
out-of-fold AUROC and its group-bootstrap interval, and the cross-generator table (one row per
held-out generator, and the mean), the trained model (by its family's display name,
:mod:`deepfake_detect.models.names`) beside the shortcut baselines; each with the ROC curves of
every model's predictions pooled over the study's runs.

Each builder returns :class:`~deepfake_detect.reporting.report_html.Section` objects (both
report.md and report.html render them) and the values the summary run logs. Pooling reads
each run's predictions CSV from MLflow (file level when there is one)."""

from __future__ import annotations

import csv
import re
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import numpy as np  # noqa: E402

from deepfake_detect import atomic  # noqa: E402
from deepfake_detect.errors import DeepfakeDetectError  # noqa: E402
from deepfake_detect.evaluation import det_curves, stats  # noqa: E402
from deepfake_detect.models.names import display_name, display_of  # noqa: E402
from deepfake_detect.reporting.report_html import Section, Table  # noqa: E402
from deepfake_detect.reporting.verdict import verdict  # noqa: E402
from deepfake_detect.tracking import SKIPPED_TAG, metric_key  # noqa: E402

Pooled = tuple[np.ndarray, np.ndarray, list[str]]  # scores, labels, groups (run-prefixed)

LEVELS = ("file/", "")  # file level first when the runs have it
# The trained model's part of the summary run's keys (cv/<test>/<level>CNN/pooled_auroc),
# whatever its family: the keys stay those of earlier reports; the tables show its name.
DETECTOR_KEY = "CNN"


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
    """Cross-validation runs by what they share (training distortion and seed, and the
    detector where it is not the default), folds apart."""
    out: dict[str, list[Any]] = defaultdict(list)
    for run in runs:
        if int(run.data.params.get("data.split.folds", "0") or 0) >= 2:
            key = (f"{run.data.tags.get('train_distortion', '?')}, seed "
                   f"{run.data.params.get('seed', '?')}")
            model, kind = (run.data.params.get("model.name", "resnet18"),
                           run.data.params.get("features.kind", "logmel"))
            if (model, kind) != ("resnet18", "logmel"):
                key += f", {model} on {kind}"
            out[key].append(run)
    return dict(out)


def pooled_predictions(client: Any, runs: list[Any], name: str) -> Pooled | None:
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


def detector_name(runs: list[Any]) -> str:
    """The display name of the runs' trained model (several: joined with " / ")."""
    return " / ".join(sorted({display_of(r.data.params) for r in runs})) or display_name()


def models_of(runs: list[Any], test: str, level: str) -> list[tuple[str, str, str]]:
    """(name, metric prefix, predictions artifact) of the trained model (first, by its
    display name), each baseline and the fusion."""
    suffix = "_files" if level else ""
    out = [(detector_name(runs), f"test/{test}/{level}", f"predictions_{test}{suffix}.csv")]
    for name in sorted({k.split("/")[1] for r in runs for k in r.data.metrics
                        if k.startswith("baseline/")}):
        out.append((name, f"baseline/{name}/test/{test}/{level}",
                    f"baselines/baseline_{name}_{test}{suffix}.csv"))
    if all(f"fusion/test/{test}/{level}auroc" in r.data.metrics for r in runs):
        out.append(("fusion", f"fusion/test/{test}/{level}", f"fusion/fusion_{test}{suffix}.csv"))
    return out


def differences(runs: list[Any]) -> tuple[str, str]:
    """What the runs differ in, said for the page's header (``"20 runs: 4 training
    distortions × 5 folds (0–4), seed 0"``), and what one cell of the train × test matrix
    spreads over (``"5 folds"``, ``"3 seeds"``)."""
    def distinct(values: list[Any]) -> list[str]:
        return sorted({str(v) for v in values if v not in (None, "")}, key=_natural)

    trains = distinct([r.data.tags.get("train_distortion") for r in runs])
    folds = distinct([r.data.tags.get("fold") for r in runs])
    held = distinct([r.data.tags.get("holdout_generator") for r in runs])
    seeds = distinct([r.data.params.get("seed") for r in runs])
    within = [f"{len(folds)} folds ({folds[0]}–{folds[-1]})" if len(folds) > 1 else "",
              f"{len(held)} held-out generators" if len(held) > 1 else "",
              f"{len(seeds)} seeds ({', '.join(seeds)})" if len(seeds) > 1 else ""]
    within = [w for w in within if w]
    across = [f"{len(trains)} training distortions" if len(trains) > 1 else ""]
    fixed = ([f"training distortion {trains[0]}"] if len(trains) == 1 else []) + (
        [f"seed {seeds[0]}"] if len(seeds) == 1 else [])
    varied = " × ".join(w for w in [*across, *within] if w) or "one configuration"
    text = f"{len(runs)} run{'s' if len(runs) != 1 else ''}: {varied}"
    spread = " × ".join(w.split(" (")[0] for w in within) or "runs"
    return text + (f"; {', '.join(fixed)}" if fixed else ""), spread


def file_slug(text: str) -> str:
    """``text`` as part of a file name (``base, seed 0`` -> ``base-seed-0``)."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-.") or "x"


def _natural(text: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", text))


def roc_figure(curves: dict[str, Pooled], title: str, path: Path) -> Path:
    """The ROC curves of every model's pooled predictions on one figure (AUROC in the
    legend; the chance diagonal; the trained model, first, drawn thicker). Where the DET
    curve of the same scores goes beside it."""
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(5.2, 4.8), dpi=110)
    for i, (name, (scores, labels, _)) in enumerate(curves.items()):
        if len(set(labels.tolist())) < 2:
            continue
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, lw=2.2 if i == 0 else 1.3,
                label=f"{name} (AUROC {stats.auroc(scores, labels):.3f})")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate (human called AI)",
           ylabel="true positive rate (AI detected)", title=title)
    ax.title.set_fontsize(9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return atomic.save_figure(fig, path)


def pooled_models(client: Any, runs: list[Any], test: str, level: str
                  ) -> list[tuple[str, str, Pooled | None]]:
    """(name, metric prefix, pooled predictions or None) of the trained model and each
    baseline."""
    return [(name, prefix, pooled_predictions(client, runs, artifact))
            for name, prefix, artifact in models_of(runs, test, level)]


def pooled_verdict(test: str, level: str, pooled: dict[str, tuple], detector: str
                   ) -> list[str]:
    """The verdict wording (:mod:`verdict`) on the folds' pooled predictions: the trained
    model's (``detector``, its display name) pooled AUROC interval, the baselines' pooled
    AUROC."""
    if detector not in pooled:
        return []
    scores, labels, groups = pooled[detector]
    auroc = stats.intervals(scores, labels, groups, metrics=("auroc",))["auroc"]
    prefix = f"test/{test}/{level}"
    values = {f"{prefix}auroc": auroc.value, f"{prefix}auroc_ci_low": auroc.low,
              f"{prefix}auroc_ci_high": auroc.high}
    for label, name in ((0, "human"), (1, "ai")):
        values[f"{prefix}n_groups_{name}"] = len({g for g, y in zip(groups, labels, strict=True)
                                                  if y == label})
    for name, (s, y, _) in pooled.items():
        if name not in (detector, "fusion"):
            values[f"baseline/{name}/test/{test}/{level}auroc"] = stats.auroc(s, y)
    return [line.replace("verdict (", "pooled verdict (", 1)
            for line in verdict(values, test, level, detector).lines]


def pooled_figure(out_dir: Path | None, key: str, test: str, level: str,
                  pooled: dict[str, tuple]) -> list[Path]:
    """The ROC/DET figure of every model's pooled out-of-fold predictions."""
    if out_dir is None or not pooled:
        return []
    slug = "".join(c if c.isalnum() else "_" for c in key).strip("_")
    return det_curves.write_curves(
        out_dir, f"roc_det_cv_{slug}_{test}", f"cross-validation {key}: {test}, pooled "
        f"out-of-fold ({level.rstrip('/') or 'window'} level)",
        {name: (s, y) for name, (s, y, _) in pooled.items()})


def cv_section(client: Any, runs: list[Any], tests: list[str], metrics: tuple[str, ...],
               out_dir: Path) -> tuple[list[Section], dict[str, float]]:
    """A section for every cross-validation in ``runs``: per model (the trained one, each
    baseline) mean ± sd across folds and the pooled out-of-fold AUROC, and the pooled ROC
    curves."""
    metrics = tuple(dict.fromkeys((*metrics, "auroc")))
    sections: list[Section] = []
    logged: dict[str, float] = {}
    for key, members in fold_groups(runs).items():
        section = Section(f"Cross-validation: {key} ({len(members)} folds)")
        for test in tests:
            level = level_of(members, test)
            rows, curves = [], {}
            detector = detector_name(members)
            for name, prefix, pooled in pooled_models(client, members, test, level):
                means = [cell([r.data.metrics.get(f"{prefix}{m}", float("nan"))
                               for r in members]) for m in metrics]
                text = "–"
                if pooled is not None:
                    auroc = stats.intervals(*pooled, metrics=("auroc",))["auroc"]
                    text = f"{auroc.text()} (n = {auroc.n_groups} groups)"
                    model = DETECTOR_KEY if name == detector else metric_key(name)
                    logged[f"cv/{metric_key(test)}/{level}{model}/pooled_auroc"] = auroc.value
                    curves[name] = pooled
                rows.append([name, *means, text])
            section.blocks.append(Table(
                ["model", *metrics, "pooled out-of-fold AUROC"], rows,
                f"Test distortion {test}, {level.rstrip('/') or 'window'} level; mean ± sd "
                "across folds, and the AUROC of all folds' predictions pooled, with its 95 % "
                "interval over groups."))
            section.blocks += pooled_verdict(test, level, curves, detector)
            drawn = pooled_figure(out_dir, key, test, level, curves)
            if drawn:
                section.blocks.append(drawn[-1])
        sections.append(section)
    return sections, logged


def logo_section(client: Any, runs: list[Any], tests: list[str], out_dir: Path
                 ) -> tuple[list[Section], dict[str, float]]:
    """The cross-generator table: AUROC on each held-out generator, the trained model and
    the baselines, and the ROC curves of every held-out test set's predictions pooled."""
    held = [r for r in runs if r.data.tags.get("holdout_generator")]
    if not held:
        return [], {}
    held.sort(key=lambda r: _natural(r.data.tags["holdout_generator"]))
    baselines = sorted({k.split("/")[1] for r in held for k in r.data.metrics
                        if k.startswith("baseline/")})
    sections: list[Section] = []
    logged: dict[str, float] = {}
    detector = detector_name(held)
    for test in tests:
        level = level_of(held, test)
        section = Section(f"Leave one generator out: test distortion {test} "
                          f"({level.rstrip('/') or 'window'} level AUROC, 95 % interval)")
        columns: dict[str, list[float]] = defaultdict(list)
        rows = []
        for run in held:
            cells = []
            for name, prefix in [(detector, "test"),
                                 *((b, f"baseline/{b}/test") for b in baselines)]:
                key = f"{prefix}/{test}/{level}auroc"
                value = run.data.metrics.get(key, float("nan"))
                columns[name].append(value)
                low, high = (run.data.metrics.get(f"{key}_ci_{end}") for end in ("low", "high"))
                cells.append(f"{value:.3f}" + (f" [{low:.2f}, {high:.2f}]" if low is not None
                                               and high is not None else ""))
            generator = run.data.tags["holdout_generator"]
            logged[f"logo/{metric_key(generator)}/{metric_key(test)}/auroc"] = \
                columns[detector][-1]
            rows.append([generator, *cells])
        rows.append(["**mean ± sd**", *(cell(columns[n]) for n in [detector, *baselines])])
        section.blocks.append(Table(["held-out generator", detector, *baselines], rows))
        curves = {name: pooled for name, _, pooled in pooled_models(client, held, test, level)
                  if pooled is not None}
        if curves:
            section.blocks.append(roc_figure(
                curves, f"test {test}: the {len(held)} held-out test sets pooled",
                out_dir / f"roc_logo_{file_slug(test)}.png"))
        sections.append(section)
    return sections, logged


def without_skipped(runs: list[Any]) -> tuple[list[Any], list[Any]]:
    """The runs that ran, and the records of skipped jobs (tag ``skipped``: a generator that
    could not be held out); DeepfakeDetectError when every job was skipped."""
    skipped = [r for r in runs if r.data.tags.get(SKIPPED_TAG)]
    ran = [r for r in runs if not r.data.tags.get(SKIPPED_TAG)]
    if not ran:
        reasons = "; ".join(f"{r.data.tags.get('holdout_generator', '?')}: "
                            f"{r.data.tags[SKIPPED_TAG]}" for r in skipped)
        raise DeepfakeDetectError(f"every job of the study was skipped ({reasons})")
    return ran, skipped


def skipped_section(skipped: list[Any]) -> list[str]:
    """report.md's list of skipped jobs: which generator, and why."""
    if not skipped:
        return []
    lines = ["## Skipped jobs", "", "| held-out generator | why |", "|---|---|"]
    for run in sorted(skipped, key=lambda r: r.data.tags.get("holdout_generator", "")):
        why = run.data.tags[SKIPPED_TAG].replace("|", "/")
        lines.append(f"| {run.data.tags.get('holdout_generator', '?')} | {why} |")
    return [*lines, ""]


def sources_section(runs: list[Any]) -> tuple[list[str], dict[str, float]]:
    """The cross-dataset table (``eval.sources``): rows the training source (its own test
    split, ``in-domain``, first), columns the test sources; AUROC mean ± sd over the runs at
    file level where every run has it."""
    tested = sorted({k.split("/")[1] for r in runs for k in r.data.metrics
                     if k.startswith("sources/")})
    if not tested:
        return [], {}
    rows: dict[str, list[Any]] = defaultdict(list)
    for run in runs:
        params = run.data.params
        root = params.get("data.source.root") or params.get("data.source.csv") or ""
        name = params.get("data.source.name", "?")
        rows[f"{name} ({Path(root).name})" if root not in ("", "None") else name].append(run)
    lines = ["## Tests across datasets (AUROC, mean ± sd over runs)", "",
             "| training source | in-domain | " + " | ".join(tested) + " |",
             "|---|---|" + "---|" * len(tested)]
    logged: dict[str, float] = {}
    for label, members in sorted(rows.items()):
        own = [_auroc(r, "test/base/") for r in members]
        cells = [cell(own)]
        for test in tested:
            values = [_auroc(r, f"sources/{test}/") for r in members]
            cells.append(cell(values))
            finite = [v for v in values if v == v]
            if finite:
                logged[f"cross/{test}/auroc"] = float(np.mean(finite))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return [*lines, ""], logged


def _auroc(run: Any, prefix: str) -> float:
    metrics = run.data.metrics
    return metrics.get(f"{prefix}file/auroc", metrics.get(f"{prefix}auroc", float("nan")))
