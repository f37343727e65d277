"""The train × test distortion matrix of a sweep, from MLflow (``deepfake-detect-report``).

Reads the FINISHED runs of an experiment (optionally one sweep), and writes, for accuracy,
F1 and EER, mean ± std over seeds as a markdown table and a heatmap PNG, the study's own
sections (:func:`sections`) and ``report.html``; then logs them to MLflow as the experiment's
one summary run per scope (tag ``summary=true``; a re-run replaces it, a killed report's
RUNNING run is cleaned up by the next). Rows and columns follow the runs' own
``eval.distortions`` order.
"""

from __future__ import annotations

import ast
import os
import socket
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import numpy as np  # noqa: E402
from mlflow.entities import Metric  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from deepfake_detect import atomic, console, tracking  # noqa: E402
from deepfake_detect.errors import DeepfakeDetectError  # noqa: E402
from deepfake_detect.reporting import (  # noqa: E402
    comparison,
    detector_table,
    field_report,
    report_html,
    studies,
)

DEFAULT_METRICS = ("accuracy", "f1", "eer")
SUMMARY_TAG, SCOPE_TAG, WRITER_TAG = "summary", "report_scope", "report_writer"
STALE_SECONDS = 6 * 3600  # a RUNNING summary run of another host this old is a killed report's


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
    runs = [tracking.read_results(r) for r in found.values()
            if r.data.tags.get("summary") != "true"
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
    """Write report.md, heatmap.png, the study's sections with their ROC figures, the runs'
    curves overlaid, paired comparisons (``compare``: pairs of run ids or training
    distortions; None: each against base) and report.html; log them as the experiment's
    summary run for this scope (one per scope: a re-run replaces it). Returns paths and
    grid."""
    tracking.prepare_store()
    if tracking.is_local_sqlite(tracking_uri) and not tracking.sqlite_path(tracking_uri).is_file():
        raise DeepfakeDetectError(f"no MLflow store at {tracking.sqlite_path(tracking_uri)} "
                                  "(pass --tracking-uri or set MLFLOW_TRACKING_URI)")
    tracking.check_store(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id, runs = find_runs(client, experiment, sweep_id)
    with console.no_artifact_bars():
        return _write_report(client, experiment_id, runs, experiment, out_dir, sweep_id,
                             metrics, log_summary, compare, n_boot)


def _write_report(client: MlflowClient, experiment_id: str, runs: list[Any], experiment: str,
                  out_dir: Path, sweep_id: str | None, metrics: tuple[str, ...],
                  log_summary: bool, compare: list[tuple[str, str]] | None,
                  n_boot: int) -> dict:
    runs, skipped = studies.without_skipped(runs)
    grid = collect(runs, metrics)
    title = f"{experiment}" + (f" / sweep {sweep_id}" if sweep_id else "")
    differ, spread = studies.differences(runs)
    text = markdown(grid, metrics, title)
    files_grid = collect(runs, metrics, level="file/")
    if files_grid.cols:
        text += "\n" + markdown(files_grid, metrics, f"{title}: file level", "file/")
    found, logged, more = sections(client, runs, grid.cols, metrics, out_dir, n_boot, skipped)
    field = field_report.sections(client, runs, grid.cols, collect(
        runs, field_report.COST_METRICS, level="file/" if files_grid.cols else ""),
        markdown, title, out_dir)
    found += report_html.sections_from_markdown(one_verdicts_section(field.lines), out_dir)
    text += "\n" + "\n".join(s.markdown(root=out_dir) for s in found)
    md = atomic.write_text(out_dir / "report.md", text)
    png = heatmap(grid, metrics, title, out_dir / "heatmap.png")
    loaded = comparison.load_runs(client, runs, comparison.needs_predictions(runs, compare))
    results, extra = comparison.write_comparisons(loaded, out_dir, compare, n_boot)
    figures = list(dict.fromkeys([*(b for s in found for b in s.blocks if isinstance(b, Path)),
                                  *more["detector_figures"], *field.figures]))
    generators = report_html.generator_table(
        collect(runs, report_html.generator_metrics(runs)), tracking.real_names(runs))
    page = report_html.write(out_dir / "report.html", title, differ, found, grid, metrics, png,
                             extra, results, generators, spread)
    summary_id = (write_summary_run(
        client, experiment_id, grid, metrics, [md, png, *figures, *extra, page], sweep_id,
        len(runs), logged, tracking.real_names(runs)) if log_summary else None)
    return {"markdown": md, "heatmap": png, "grid": grid, "summary_run_id": summary_id,
            "n_runs": len(runs), "html": page, "comparisons": results, "sections": found,
            "verdicts": field.verdicts, "figures": figures, **more}


def one_verdicts_section(lines: list[str]) -> list[str]:
    """The field's lines with each run's verdicts under one "Verdicts" heading (a run's
    name in bold, not a heading of its own), so a page of many runs keeps one section."""
    out, within = [], False
    for line in lines:
        within = within or line.strip() == "# Verdicts"
        out.append(f"**{line[3:].strip()}**" if within and line.startswith("## ") else line)
    return out


def sections(client: MlflowClient, runs: list[Any], tests: list[str], metrics: tuple[str, ...],
             out_dir: Path, n_boot: int = 1000, skipped: list[Any] | None = None
             ) -> tuple[list[report_html.Section], dict[str, float], dict[str, Any]]:
    """The study's own sections, in the order both pages show them, and the values the
    summary run logs. **Where a new kind of study or score joins the report**: a builder
    ``(client, runs, tests, ...) -> (sections, logged)`` appended here shows in report.md
    and report.html alike (one that still returns markdown lines can go through
    :func:`report_html.sections_from_markdown`)."""
    det_lines, det_logged, det_figures, det_tables = detector_table.section(
        client, runs, tests, out_dir, n_boot)
    sources_lines, sources_logged = studies.sources_section(runs)
    found = report_html.sections_from_markdown(det_lines, out_dir)
    logged: dict[str, float] = {**det_logged, **sources_logged}
    for built, values in (studies.cv_section(client, runs, tests, metrics, out_dir),
                          studies.logo_section(client, runs, tests, out_dir)):
        found += built
        logged.update(values)
    found += report_html.sections_from_markdown(
        [*sources_lines, *studies.skipped_section(skipped or [])], out_dir)
    return found, logged, {"detectors": det_tables, "detector_figures": det_figures}


def summary_runs(client: MlflowClient, experiment_id: str) -> list[Any]:
    """The experiment's summary runs (tag ``summary=true``), any status."""
    return tracking.retry(lambda: client.search_runs(
        [experiment_id], filter_string=f"tags.{SUMMARY_TAG} = 'true'", max_results=5000),
        "find summary runs")


def scope_of(tags: dict[str, str]) -> str:
    """A summary run's report scope: the sweep it summarises, or ``all``."""
    return tags.get(SCOPE_TAG) or tags.get(tracking.SWEEP_TAG) or "all"


def writer_gone(run: Any) -> bool:
    """Whether the report that opened a RUNNING summary run is gone: its process on this
    host has ended, or (another host) it started more than :data:`STALE_SECONDS` ago."""
    host, _, pid = (run.data.tags.get(WRITER_TAG) or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False
    return time.time() - run.info.start_time / 1000 > STALE_SECONDS


def clean_summaries(client: MlflowClient, experiment_id: str, scope: str,
                    keep: str | None = None) -> int:
    """Delete the summary runs a killed report left RUNNING and, once ``keep`` is written,
    every other finished summary run of ``scope`` (the one it replaces). A report still at
    work elsewhere keeps its run. Returns how many runs went."""
    gone = 0
    for run in summary_runs(client, experiment_id):
        rid, running = run.info.run_id, run.info.status == "RUNNING"
        if rid == keep or (running and not writer_gone(run)):
            continue
        if running or (keep is not None and scope_of(run.data.tags) == scope):
            if running:
                tracking.set_terminated(client.tracking_uri, rid, "KILLED")
            tracking.retry(lambda r=rid: client.delete_run(r), "delete summary run")
            gone += 1
    return gone


def write_summary_run(client: MlflowClient, experiment_id: str, grid: Grid,
                metrics: tuple[str, ...], files: list[Path], sweep_id: str | None,
                n_runs: int, extra: dict[str, float], names: dict[str, str]) -> str:
    """The experiment's one FINISHED summary run for this scope (tag ``summary=true``)
    holding each cell's mean and std and the report's files; it replaces the previous one,
    and a killed report's RUNNING run is cleaned up first."""
    scope = sweep_id or "all"
    clean_summaries(client, experiment_id, scope)
    tags = {SUMMARY_TAG: "true", SCOPE_TAG: scope,
            WRITER_TAG: f"{socket.gethostname()}:{os.getpid()}",
            **({tracking.SWEEP_TAG: sweep_id} if sweep_id else {}),
            **tracking.names_tag([*grid.rows, *grid.cols, *names.values()])}
    run = client.create_run(experiment_id, run_name=f"summary-{scope}", tags=tags)
    summary_id = run.info.run_id
    client.log_param(summary_id, "n_runs", n_runs)
    values = dict(extra)
    for metric in metrics:
        for row in grid.rows:
            for col in grid.cols:
                mean, std, n = grid.cell(metric, row, col)
                if n:
                    key = f"train_{tracking.metric_key(row)}/test_{tracking.metric_key(col)}"
                    values[f"{key}/{metric}_mean"], values[f"{key}/{metric}_std"] = mean, std
    stamp = int(time.time() * 1000)
    finite = [Metric(k, float(v), stamp, 0) for k, v in values.items() if v == v]
    for start in range(0, len(finite), 1000):  # MLflow's batch limit
        client.log_batch(summary_id, metrics=finite[start:start + 1000])
    for path in files:
        client.log_artifact(summary_id, str(path))
    client.set_terminated(summary_id, "FINISHED")
    clean_summaries(client, experiment_id, scope, keep=summary_id)
    return summary_id
