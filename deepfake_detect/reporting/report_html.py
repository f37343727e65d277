"""``report.html``: the whole report of a sweep in one self-contained file (no external
files, images inline as base64): the train × test matrix, the heatmap, robustness curves of
every training distortion with their interval bands, the paired verdicts and accuracy per
generator."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepfake_detect import atomic
from deepfake_detect.reporting.comparison import Paired

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1300px;color:#222}
table{border-collapse:collapse;margin:0.6em 0 1.4em}th,td{border:1px solid #ccc;
padding:0.25em 0.6em;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child
{text-align:left}img{max-width:100%;margin:0.4em 0}.better{color:#06612e;font-weight:600}
.worse{color:#a11;font-weight:600}.note{color:#666;font-size:0.9em}"""


def image(path: Path, alt: str) -> str:
    """An ``<img>`` holding ``path``'s PNG inline."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def matrix(grid: Any, metric: str) -> str:
    """One metric of the train × test matrix, cells as in report.md."""
    rows = [[html.escape(row), *(grid.text(metric, row, col) for col in grid.cols)]
            for row in grid.rows]
    return table(["train \\ test", *grid.cols], rows)


def verdicts(results: Sequence[Paired]) -> str:
    """The paired comparisons, one table per pair of training distortions."""
    if not results:
        return "<p class=note>No pairs of runs tested on the same clips.</p>"
    out = []
    pairs: dict[tuple[str, str], list[Paired]] = {}
    for r in results:
        pairs.setdefault((r.a, r.b), []).append(r)
    for (a, b), rows in pairs.items():
        out.append(f"<h3>{html.escape(b)} − {html.escape(a)} "
                   f"({len(rows[0].pairs)} pair(s) of runs, seeds pooled)</h3>")
        body = []
        for r in rows:
            css = "better" if r.verdict.startswith(b) else "worse" if r.verdict.startswith(
                a) else ""
            body.append([html.escape(r.test), f"{r.accuracy_a:.3f}", f"{r.accuracy_b:.3f}",
                         r.accuracy.text(), r.auroc.text(), f"{r.mcnemar_p:.3g}",
                         f'<span class="{css}">{html.escape(r.verdict)}</span>'])
        out.append(table(["test set", f"acc {a}", f"acc {b}", "Δ accuracy [95 % CI]",
                          "Δ AUROC [95 % CI]", "McNemar p", "verdict"], body))
    return "\n".join(out)


def generators(grid: Any) -> str:
    """Accuracy per generator (recall; specificity for human): one table per test set, rows
    training distortion, columns generator, mean over runs."""
    gens = sorted({m[len("acc_"):] for m in grid.values if m.startswith("acc_")})
    if not gens:
        return "<p class=note>No per-generator metrics.</p>"
    out = []
    for col in grid.cols:
        rows = []
        for row in grid.rows:
            cells = []
            for gen in gens:
                mean, _, n = grid.cell(f"acc_{gen}", row, col)
                cells.append("–" if n == 0 else f"{mean:.3f}")
            rows.append([html.escape(row), *cells])
        out.append(f"<h3>test set: {html.escape(col)}</h3>" + table(["train", *gens], rows))
    return "\n".join(out)


def generator_metrics(runs: Sequence[Any]) -> tuple[str, ...]:
    """The per-generator accuracy metrics (``test/<d>/acc_<generator>``) the runs hold."""
    return tuple(sorted({key.split("/")[2] for run in runs for key in run.data.metrics
                         if key.count("/") == 2 and key.split("/")[2].startswith("acc_")}))


def write(path: Path, title: str, grid: Any, metrics: Sequence[str], heatmap: Path,
          files: Sequence[Path], results: Sequence[Paired], generator_grid: Any,
          n_runs: int) -> Path:
    """Write the page (``files``: the curve overlays ``curves_*.png`` among them); returns
    its path."""
    curves = [f for f in files if f.name.startswith("curves_") and f.suffix == ".png"]
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p class=note>{n_runs} runs; cells: mean ± sample std over seeds (n runs). "
             "Label convention: 0 = human, 1 = AI-generated.</p>", "<h2>Train × test</h2>"]
    for metric in metrics:
        parts += [f"<h3>{html.escape(metric)}</h3>", matrix(grid, metric)]
    parts += [image(heatmap, "heatmap"), "<h2>Robustness curves</h2>"]
    parts += [image(p, p.stem) for p in curves] or [
        "<p class=note>No run has robustness curves (eval.curves or "
        "deepfake-detect-robustness).</p>"]
    parts += ["<h2>Paired comparisons</h2>",
              "<p class=note>B − A on the same clips (runs paired by seed): differences with "
              "95 % paired group-bootstrap intervals; McNemar's exact p for the decisions. "
              "Verdict: the accuracy interval excludes 0, or not.</p>", verdicts(results),
              "<h2>Accuracy per generator</h2>", generators(generator_grid)]
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    return atomic.write_text(path, page)
