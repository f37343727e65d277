"""The train × test distortion matrix of a sweep, from MLflow (``deepfake-detect-report``).

Reads the FINISHED runs of an experiment (optionally one sweep), and writes, for accuracy,
F1 and EER, mean ± std over seeds as a markdown table and a heatmap PNG; then logs them to
MLflow as a summary run (tag ``summary=true``) in the same experiment. Rows and columns
follow the runs' own ``eval.distortions`` order.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import numpy as np  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from deepfake_detect import atomic, tracking  # noqa: E402
from deepfake_detect.errors import DeepfakeDetectError  # noqa: E402
from deepfake_detect.reporting import comparison, report_html, studies  # noqa: E402

DEFAULT_METRICS = ("accuracy", "f1", "eer")


@dataclass
class Grid:
    """values[metric][(train, test)] -> one value per run (seed)."""

    rows: list[str]
    cols: list[str]
    values: dict[str, dict[tuple[str, str], list[float]]] = field(default_factory=dict)
    n_runs: int = 0

    def cell(self, metric: str, row: str, col: str) -> tuple[float, float, int]:
        xs = [v for v in self.values.get(metric, {}).get((row, col), []) if v == v]
        if not xs:
            return float("nan"), float("nan"), 0
        return float(np.mean(xs)), float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0, len(xs)

    def text(self, metric: str, row: str, col: str) -> str:
        """A cell as the report shows it: mean ± std (n runs), or one run's value with its
        interval."""
        mean, std, n = self.cell(metric, row, col)
        if n == 0:
            return "–"
        low, _, n_low = self.cell(f"{metric}_ci_low", row, col)
        high, _, _ = self.cell(f"{metric}_ci_high", row, col)
        if n == 1 and n_low == 1:
            return f"{mean:.3f} [{low:.3f}, {high:.3f}] (1)"
        return f"{mean:.3f} ± {std:.3f} ({n})"


def ordered(names: set[str], order: list[str] | tuple[str, ...] = ()) -> list[str]:
    """``names`` in ``order`` first (the runs' ``eval.distortions``), the rest sorted."""
    known = [n for n in dict.fromkeys(order) if n in names]
    return known + sorted(names - set(known))


def test_order(runs: list[Any]) -> list[str]:
    """The test distortions in the order the runs were configured with (``eval.distortions``
    param), first run first."""
    order: list[str] = []
    for run in runs:
        text = run.data.params.get("eval.distortions", "")
        try:
            names = ast.literal_eval(text) if text else []
        except (ValueError, SyntaxError):
            names = []
        order += [str(n) for n in names if str(n) not in order]
    return order


def collect(runs: list[Any], metrics: tuple[str, ...], row_key: str = "train_distortion",
            level: str = "") -> Grid:
    """Build the grid from MLflow runs (rows: the run's training distortion or stage) at
    ``level`` (``""``: window, ``"file/"``: file), with each metric's interval bounds."""
    values: dict[str, dict[tuple[str, str], list[float]]] = defaultdict(lambda: defaultdict(list))
    rows, cols = set(), set()
    wanted = {f"{m}{end}" for m in metrics for end in ("", "_ci_low", "_ci_high")}
    for run in runs:
        row = run.data.tags.get(row_key) or run.data.params.get("distortion.name")
        if not row:
            continue
        rows.add(row)
        for key, value in run.data.metrics.items():
            parts = key.split("/")
            if parts[0] != "test" or len(parts) < 3:
                continue
            middle = "/".join(parts[2:-1])  # "" at the window level, "file" at the file level
            if (middle + "/" if middle else "") == level and parts[-1] in wanted:
                cols.add(parts[1])
                values[parts[-1]][(row, parts[1])].append(float(value))
    order = test_order(runs)
    return Grid(ordered(rows, order), ordered(cols, order),
                {m: dict(v) for m, v in values.items()}, len(runs))


def markdown(grid: Grid, metrics: tuple[str, ...], title: str, level: str = "") -> str:
    """One table per metric: rows train distortion, columns test distortion, mean ± std (n);
    a cell of one run shows its 95 % interval over groups instead."""
    what = "file level, " if level else ""
    out = [f"# {title}", "", f"{grid.n_runs} runs; {what}cells: mean ± std over runs (seeds, "
           "folds or held-out generators; n runs), or one run's value with its 95 % interval "
           "[low, high] over groups.", ""]
    for metric in metrics:
        out += [f"## {metric}", "", "| train \\ test | " + " | ".join(grid.cols) + " |",
                "|---|" + "---|" * len(grid.cols)]
        for row in grid.rows:
            out.append(f"| {row} | " + " | ".join(grid.text(metric, row, col)
                                                  for col in grid.cols) + " |")
        out.append("")
    return "\n".join(out)


def heatmap(grid: Grid, metrics: tuple[str, ...], title: str, path: Path) -> Path:
    """One panel per metric; annotated with mean ± std."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.9), dpi=120,
                             squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        cells = [[grid.cell(metric, r, c) for c in grid.cols] for r in grid.rows]
        means = np.array([[m for m, _, _ in row] for row in cells])
        lower_is_better = metric == "eer"
        ax.imshow(means, cmap="viridis_r" if lower_is_better else "viridis", vmin=0, vmax=1)
        ax.set_xticks(range(len(grid.cols)), labels=grid.cols, rotation=30)
        ax.set_yticks(range(len(grid.rows)), labels=grid.rows)
        ax.set_xlabel("test distortion")
        ax.set_ylabel("train distortion")
        ax.set_title(f"{metric} ({'lower' if lower_is_better else 'higher'} is better)")
        for i, row in enumerate(cells):
            for j, (mean, std, n) in enumerate(row):
                if n:
                    ax.text(j, i, f"{mean:.2f}\n±{std:.2f}", ha="center", va="center",
                            fontsize=8, color="white" if (mean < 0.5) != lower_is_better
                            else "black")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return atomic.save_figure(fig, path)


def find_runs(client: Any, experiment: str, sweep_id: str | None) -> tuple[str, list[Any]]:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = [e.name for e in client.search_experiments()]
        raise DeepfakeDetectError(f"no MLflow experiment {experiment!r}; found: "
                                  f"{', '.join(names) or 'none'}")
    query = "attributes.status = 'FINISHED'"
    queries = [query]
    if sweep_id:  # the sweep that last ran a job, or any sweep that ran or reported it
        queries = [f"{query} and tags.{tracking.SWEEP_TAG} = '{sweep_id}'",
                   f"{query} and tags.{tracking.SWEEPS_TAG} LIKE '%{sweep_id}%'"]
    found = {r.info.run_id: r for q in queries for r in client.search_runs(
        [exp.experiment_id], filter_string=q, max_results=5000)}
    runs = [r for r in found.values() if r.data.tags.get("summary") != "true"
            and (not sweep_id or sweep_id in _sweeps(r.data.tags))]
    if not runs:
        raise DeepfakeDetectError(f"no FINISHED runs in experiment {experiment!r}"
                                  + (f" with sweep_id {sweep_id!r}" if sweep_id else ""))
    return exp.experiment_id, runs


def _sweeps(tags: dict[str, str]) -> list[str]:
    """Every sweep a run belongs to (its ``sweep_ids`` tag, or the older ``sweep_id``)."""
    return [*(tags.get(tracking.SWEEPS_TAG) or "").split(","), tags.get(tracking.SWEEP_TAG, "")]


def report(tracking_uri: str, experiment: str, out_dir: Path, sweep_id: str | None = None,
           metrics: tuple[str, ...] = DEFAULT_METRICS, log_summary: bool = True,
           compare: list[tuple[str, str]] | None = None, n_boot: int = 1000) -> dict:
    """Write report.md, heatmap.png, the runs' curves overlaid, paired comparisons
    (``compare``: pairs of run ids or training distortions; None: each against base) and
    report.html; log them as a summary run. Returns paths and grid."""
    tracking.prepare_store()
    if tracking.is_local_sqlite(tracking_uri) and not tracking.sqlite_path(tracking_uri).is_file():
        raise DeepfakeDetectError(f"no MLflow store at {tracking.sqlite_path(tracking_uri)} "
                                  "(pass --tracking-uri or set MLFLOW_TRACKING_URI)")
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id, runs = find_runs(client, experiment, sweep_id)
    grid = collect(runs, metrics)
    title = f"{experiment}" + (f" / sweep {sweep_id}" if sweep_id else "")
    text = markdown(grid, metrics, title)
    files_grid = collect(runs, metrics, level="file/")
    if files_grid.cols:
        text += "\n" + markdown(files_grid, metrics, f"{title}: file level", "file/")
    cv_lines, cv_logged = studies.cv_section(client, runs, grid.cols, metrics)
    logo_lines, logo_logged = studies.logo_section(runs, grid.cols)
    text += "\n".join(["", *cv_lines, *logo_lines])
    md = atomic.write_text(out_dir / "report.md", text)
    png = heatmap(grid, metrics, title, out_dir / "heatmap.png")
    loaded = comparison.load_runs(client, runs, comparison.needs_predictions(runs, compare))
    results, extra = comparison.write_comparisons(loaded, out_dir, compare, n_boot)
    page = report_html.write(out_dir / "report.html", title, grid, metrics, png, extra, results,
                             collect(runs, report_html.generator_metrics(runs)), len(runs))
    summary_id = (_log_summary(client, experiment_id, grid, metrics, [md, png, *extra, page],
                               sweep_id, len(runs), {**cv_logged, **logo_logged})
                  if log_summary else None)
    return {"markdown": md, "heatmap": png, "grid": grid, "summary_run_id": summary_id,
            "n_runs": len(runs), "html": page, "comparisons": results}



def _log_summary(client: MlflowClient, experiment_id: str, grid: Grid,
                 metrics: tuple[str, ...], files: list[Path], sweep_id: str | None,
                 n_runs: int, extra: dict[str, float]) -> str:
    """A FINISHED summary run (tag ``summary=true``) holding each cell's mean and std."""
    tags = {"summary": "true", **({"sweep_id": sweep_id} if sweep_id else {})}
    run = client.create_run(experiment_id, run_name=f"summary-{sweep_id or 'all'}", tags=tags)
    summary_id = run.info.run_id
    client.log_param(summary_id, "n_runs", n_runs)
    for metric in metrics:
        for row in grid.rows:
            for col in grid.cols:
                mean, std, n = grid.cell(metric, row, col)
                if n:
                    client.log_metric(summary_id, f"train_{row}/test_{col}/{metric}_mean", mean)
                    client.log_metric(summary_id, f"train_{row}/test_{col}/{metric}_std", std)
    for key, value in extra.items():
        if value == value:
            client.log_metric(summary_id, key, value)
    for path in files:
        client.log_artifact(summary_id, str(path))
    client.set_terminated(summary_id, "FINISHED")
    return summary_id
