"""Comparing trained models, for ``deepfake-detect-report``: robustness curves of several
runs overlaid (one figure per distortion, one line per training distortion), and *paired*
comparisons of two runs tested on the same clips.

A paired comparison answers "is B better than A beyond noise?" on one test set (a test distortion,
or one strength of a curve): the difference in accuracy and in AUROC (B minus A) with 95 % intervals
from a paired bootstrap over groups (both models see the same resampled groups;
:mod:`deepfake_detect.evaluation.stats`), and McNemar's exact p for their decisions (each at its own
run's threshold). Pairs: two run ids, or two training distortions of a sweep, whose runs are paired
by seed (same seed, same split: the same test clips). Several seeds are pooled: the pooled
difference weighs each pair's difference by its clips (for accuracy, exactly the difference over all
the pairs' clips), the bootstrap resamples groups within each pair, and McNemar's test counts the
discordant decisions of all pairs. The verdict: the interval of the accuracy difference excludes 0
(B better or worse), or it does not (no difference beyond noise)."""

from __future__ import annotations

import ast
import csv
import json
import logging
import os
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_detect import atomic
from deepfake_detect.evaluation import stats

log = logging.getLogger(__name__)


@dataclass
class Scored:
    """One run's scores on one test set: clip id -> (label, score, group, generator)."""

    clips: dict[str, tuple[int, float, str, str]]
    threshold: float


@dataclass
class RunData:
    """What a comparison reads from one MLflow run."""

    run_id: str
    label: str  # the training distortion (the report's row)
    seed: int | None
    threshold: float
    tests: dict[str, Scored] = field(default_factory=dict)  # "base", "pitch[semitones=-2]"
    curves: dict[str, dict[str, Any]] = field(default_factory=dict)  # curve JSON by name
    start: int = 0
    order: list[str] = field(default_factory=list)  # the run's eval.distortions


@dataclass
class Paired:
    """B minus A on one test set, pooled over the pairs of runs (seeds)."""

    a: str
    b: str
    test: str
    pairs: list[tuple[str, str]]  # (run id of A, run id of B)
    accuracy: stats.Interval
    auroc: stats.Interval
    mcnemar_p: float
    accuracy_a: float
    accuracy_b: float
    per_pair: list[dict[str, Any]] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        d = self.accuracy
        if d.low != d.low:
            return "undetermined (too few groups)"
        if d.low > 0:
            return f"{self.b} better"
        if d.high < 0:
            return f"{self.a} better"
        return "no difference beyond noise"


# --- reading runs ------------------------------------------------------------------------------


def read_predictions(path: Path, value_key: str | None = None
                     ) -> dict[str, dict[str, tuple[int, float, str, str]]]:
    """A predictions CSV as {test key: {clip id: (label, score, group, generator)}}; the
    key is ``""`` or, for a curve's predictions, its strength column's value. The group is
    the ``group`` column, or the clip id where there is none."""
    out: dict[str, dict[str, tuple[int, float, str, str]]] = defaultdict(dict)
    with path.open() as handle:
        for row in csv.DictReader(handle):
            key = f"{float(row[value_key]):g}" if value_key else ""
            out[key][row["clip_id"]] = (int(row["label"]), float(row["score"]),
                                        row.get("group") or row["clip_id"], row["generator"])
    return dict(out)


def run_label(run: Any) -> str | None:
    """The training distortion an MLflow run was trained on (what comparisons pair by)."""
    return run.data.tags.get("train_distortion") or run.data.params.get("distortion.name")


def needs_predictions(runs: Sequence[Any], compare: Sequence[Any] | None) -> bool:
    """Whether any pair can be compared: explicit pairs, or two training distortions."""
    return compare is not None or len({run_label(r) for r in runs} - {None}) > 1


def load_runs(client: Any, runs: Sequence[Any], predictions: bool = True) -> list[RunData]:
    """Each run's curves and (``predictions``: only when pairs will be compared) its
    test-set and curve predictions, from its artifacts."""
    out = []
    quiet = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # a bar per small file
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for run in runs:
                data = _load_run(client, run, Path(tmp) / run.info.run_id, predictions)
                if data is not None:
                    out.append(data)
    finally:
        if quiet is None:
            del os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"]
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = quiet
    return sorted(out, key=lambda d: d.start)  # oldest first: the sweep's order


def _load_run(client: Any, run: Any, tmp: Path, predictions: bool = True) -> RunData | None:
    label = run_label(run)
    if not label:
        return None
    seed = run.data.params.get("seed")
    try:
        order = [str(n) for n in ast.literal_eval(run.data.params.get("eval.distortions", "[]"))]
    except (ValueError, SyntaxError):
        order = []
    data = RunData(run.info.run_id, label, int(seed) if seed not in (None, "") else None,
                   float(run.data.metrics.get("threshold", 0.5)),
                   start=int(getattr(run.info, "start_time", 0) or 0), order=order)
    groups: dict[str, str] = {}
    for item in client.list_artifacts(run.info.run_id, "robustness"):
        name = Path(item.path).name
        if name.startswith("curve_") and name.endswith(".json"):
            curve = json.loads(Path(client.download_artifacts(
                run.info.run_id, item.path, str(tmp))).read_text())
            stem = name[len("curve_"):-len(".json")]
            data.curves[stem] = curve
            if not predictions:
                continue
            pred = Path(client.download_artifacts(
                run.info.run_id, f"robustness/curve_{stem}_predictions.csv", str(tmp)))
            for value, clips in read_predictions(pred, curve["parameter"]).items():
                data.tests[f"{stem}[{curve['parameter']}={value}]"] = Scored(
                    clips, float(curve["threshold"]))
                groups.update({c: v[2] for c, v in clips.items()})
    for item in client.list_artifacts(run.info.run_id) if predictions else []:
        name = Path(item.path).name
        # per-window predictions only (the pairing is by clip; intervals resample groups)
        if name.startswith("predictions_") and name.endswith(".csv") \
                and not name.endswith("_files.csv"):
            path = Path(client.download_artifacts(run.info.run_id, item.path, str(tmp)))
            clips = read_predictions(path)[""]
            clips = {c: (y, s, groups.get(c, g), gen) for c, (y, s, g, gen) in clips.items()}
            data.tests[name[len("predictions_"):-len(".csv")]] = Scored(clips, data.threshold)
    return data


# --- paired comparisons ------------------------------------------------------------------------


def pairs_of(data: Sequence[RunData], a: str, b: str) -> list[tuple[RunData, RunData]]:
    """The runs to compare for ``a`` and ``b``: two run ids (that pair), or two training
    distortions (their runs paired by seed; the newest run of a seed when there are more)."""
    by_id = {d.run_id: d for d in data}
    if a in by_id and b in by_id:
        return [(by_id[a], by_id[b])]

    def newest(label: str) -> dict[int | None, RunData]:
        chosen: dict[int | None, RunData] = {}
        for d in sorted(data, key=lambda d: d.start):
            if d.label == label:
                chosen[d.seed] = d
        return chosen

    left, right = newest(a), newest(b)
    return [(left[s], right[s]) for s in sorted(left, key=str) if s in right]


def automatic_pairs(data: Sequence[RunData]) -> list[tuple[str, str]]:
    """Each training distortion against the reference one (``base`` when there is one)."""
    labels = list(dict.fromkeys(d.label for d in data))
    if len(labels) < 2:
        return []
    reference = "base" if "base" in labels else labels[0]
    return [(reference, other) for other in labels if other != reference]


def _aligned(a: Scored, b: Scored) -> tuple[np.ndarray, ...] | None:
    """Scores of A and B, labels and groups on the clips both scored; None unless they
    scored the same clips with the same labels."""
    if a.clips.keys() != b.clips.keys():
        return None
    ids = sorted(a.clips)
    labels = np.array([a.clips[i][0] for i in ids])
    if not np.array_equal(labels, [b.clips[i][0] for i in ids]):
        return None
    return (np.array([a.clips[i][1] for i in ids]), np.array([b.clips[i][1] for i in ids]),
            labels, np.array([a.clips[i][2] for i in ids]))


def compare_test(a: str, b: str, test: str, pairs: Sequence[tuple[RunData, RunData]],
                 n_boot: int = stats.N_BOOT, seed: int = 0) -> Paired | None:
    """B minus A on ``test``, pooled over ``pairs`` that scored the same clips."""
    parts = []
    for ra, rb in pairs:
        if test in ra.tests and test in rb.tests:
            aligned = _aligned(ra.tests[test], rb.tests[test])
            if aligned is not None:
                parts.append((ra, rb, aligned))
    if not parts:
        return None
    weights, diffs, correct_a, correct_b, per_pair = [], [], [], [], []
    for ra, rb, (sa, sb, y, groups) in parts:
        thresholds = (ra.tests[test].threshold, rb.tests[test].threshold)
        d = stats.paired_replicates(sb, sa, y, groups, thresholds[::-1], n_boot, seed)  # B - A
        right_a, right_b = (sa >= thresholds[0]) == y, (sb >= thresholds[1]) == y
        n_groups = len(set(groups))
        per_pair.append({"seed": ra.seed, "a": ra.run_id, "b": rb.run_id,
                         "accuracy": stats.interval_of(d["accuracy"], n_groups, len(y)),
                         "auroc": stats.interval_of(d["auroc"], n_groups, len(y)),
                         "mcnemar_p": stats.mcnemar_p(right_a, right_b)})
        weights.append(len(y))
        diffs.append(d)
        correct_a.append(right_a)
        correct_b.append(right_b)
    w = np.array(weights, dtype=float)[:, None]
    pooled = {m: np.sum(w * np.array([d[m] for d in diffs]), axis=0) / w.sum()
              for m in ("accuracy", "auroc")}
    n_groups = sum(p["accuracy"].n_groups for p in per_pair)
    n = int(w.sum())
    both_a, both_b = np.concatenate(correct_a), np.concatenate(correct_b)
    return Paired(a, b, test, [(ra.run_id, rb.run_id) for ra, rb, _ in parts],
                  stats.interval_of(pooled["accuracy"], n_groups, n),
                  stats.interval_of(pooled["auroc"], n_groups, n),
                  stats.mcnemar_p(both_a, both_b), float(both_a.mean()), float(both_b.mean()),
                  per_pair)


def compare_runs(data: Sequence[RunData], compare: Sequence[tuple[str, str]] | None = None,
                 n_boot: int = stats.N_BOOT) -> list[Paired]:
    """Every paired comparison: ``compare``'s pairs (run ids or training distortions), or
    each training distortion against the reference; on every test set both runs scored."""
    results = []
    for a, b in compare if compare is not None else automatic_pairs(data):
        pairs = pairs_of(data, a, b)
        if not pairs:
            log.warning("no runs to pair for %s vs %s (same seed, both finished)", a, b)
            continue
        explicit = a == pairs[0][0].run_id and b == pairs[0][1].run_id
        la, lb = ((f"{pairs[0][0].label} ({a[:8]})", f"{pairs[0][1].label} ({b[:8]})")
                  if explicit else (a, b))
        order = pairs[0][0].order
        tests = sorted(dict.fromkeys(k for ra, _ in pairs for k in ra.tests),  # the test
                       key=lambda t: ("[" in t, order.index(t) if t in order else len(order)))
        # distortions in the runs' order, then the curve points
        for test in tests:
            result = compare_test(la, lb, test, pairs, n_boot)
            if result is not None:
                results.append(result)
    return results


def comparison_markdown(results: Sequence[Paired]) -> str:
    """One table per pair of training distortions: each test set's verdict."""
    out = ["# Paired comparisons", "",
           "B − A on the same clips: accuracy and AUROC differences with 95 % paired "
           "group-bootstrap intervals, McNemar's exact p for the decisions (seeds pooled).", ""]
    for (a, b), rows in _by_pair(results).items():
        seeds = len(rows[0].pairs)
        out += [f"## {b} − {a} ({seeds} pair{'s' if seeds > 1 else ''} of runs)", "",
                "| test set | acc A | acc B | Δ accuracy [95 % CI] | Δ AUROC [95 % CI] | "
                "McNemar p | verdict |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            out.append(f"| {r.test} | {r.accuracy_a:.3f} | {r.accuracy_b:.3f} | "
                       f"{r.accuracy.text()} | {r.auroc.text()} | {r.mcnemar_p:.3g} | "
                       f"{r.verdict} |")
        out.append("")
    return "\n".join(out)


def _by_pair(results: Sequence[Paired]) -> dict[tuple[str, str], list[Paired]]:
    grouped: dict[tuple[str, str], list[Paired]] = defaultdict(list)
    for r in results:
        grouped[(r.a, r.b)].append(r)
    return dict(grouped)


def comparison_json(results: Sequence[Paired]) -> list[dict[str, Any]]:
    def interval(i: stats.Interval) -> dict[str, float]:
        return {"value": i.value, "low": i.low, "high": i.high, "n_groups": i.n_groups,
                "n_rows": i.n_rows}

    return [{"a": r.a, "b": r.b, "test": r.test, "pairs": r.pairs, "verdict": r.verdict,
             "accuracy_a": r.accuracy_a, "accuracy_b": r.accuracy_b,
             "accuracy_diff": interval(r.accuracy), "auroc_diff": interval(r.auroc),
             "mcnemar_p": r.mcnemar_p,
             "per_pair": [{**p, "accuracy": interval(p["accuracy"]),
                           "auroc": interval(p["auroc"])} for p in r.per_pair]}
            for r in results]


# --- curves of several runs on one figure ------------------------------------------------------


def overlay_curves(data: Sequence[RunData], out_dir: Path) -> list[Path]:
    """``curves_<name>.png`` per curve: accuracy and AUROC against the strength, one line per
    training distortion (mean over its runs), the band spanning its runs' 95 % intervals."""
    names = list(dict.fromkeys(n for d in data for n in d.curves))
    return [_overlay(name, [d for d in data if name in d.curves], out_dir) for name in names]


def _overlay(name: str, runs: Sequence[RunData], out_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.9), dpi=110)
    first = runs[0].curves[name]
    for label in dict.fromkeys(r.label for r in runs):
        mine = [r.curves[name] for r in runs if r.label == label]
        values = sorted({p["value"] for c in mine for p in c["points"]})
        for ax, metric in zip(axes, ("accuracy", "auroc"), strict=True):
            at = [[p["metrics"][metric] for c in mine for p in c["points"] if p["value"] == v]
                  for v in values]
            mean = [np.nanmean([m["value"] for m in ms]) for ms in at]
            low = [np.nanmin([m["low"] for m in ms]) for ms in at]
            high = [np.nanmax([m["high"] for m in ms]) for ms in at]
            line, = ax.plot(values, mean, marker="o", markersize=3,
                            label=f"trained on {label} ({len(mine)} run{'s' * (len(mine) > 1)})")
            ax.fill_between(values, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    unit = f" ({first['unit']})" if first.get("unit") and first["unit"] != first[
        "parameter"] else ""
    for ax, metric in zip(axes, ("accuracy", "AUROC"), strict=True):
        ax.set_xlabel(f"{first['distortion']}: {first['parameter']}{unit}")
        ax.set_title(metric)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"robustness curves: {name} (line: mean over runs; band: their 95 % "
                 "intervals)", fontsize=10)
    fig.tight_layout()
    return atomic.save_figure(fig, out_dir / f"curves_{name}.png")


def write_comparisons(data: Sequence[RunData], out_dir: Path,
                      compare: Sequence[tuple[str, str]] | None = None,
                      n_boot: int = stats.N_BOOT) -> tuple[list[Paired], list[Path]]:
    """Curves overlaid and paired comparisons written to ``out_dir``; results and files."""
    files = overlay_curves(data, out_dir)
    results = compare_runs(data, compare, n_boot)
    if results:
        files += [atomic.write_text(out_dir / "comparison.md", comparison_markdown(results)),
                  atomic.write_json(out_dir / "comparison.json", comparison_json(results))]
    return results, files
