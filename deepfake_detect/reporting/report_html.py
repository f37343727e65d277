"""``report.html``: the whole report of a study in one self-contained file (no external
files, images inline as base64), led by what the study asks.

The page is built from :class:`Section` objects, the same ones ``report.md`` is written from,
so both say the same: the study's own sections first (cross-validation, leave one generator
out, and whatever else the report's section builders add: cross-dataset, detectors, scores),
then the train × test matrix and its heatmap, robustness curves, paired verdicts and accuracy
per generator. Nothing with a single cell is shown as a table or a heatmap, and a part that
has nothing to show is left out rather than announced empty."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepfake_detect import atomic
from deepfake_detect.reporting.comparison import Paired

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1300px;color:#222;
padding:0 1em}table{border-collapse:collapse;margin:0.6em 0 1.4em}th,td{border:1px solid #ccc;
padding:0.25em 0.6em;text-align:right;white-space:nowrap}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:0.4em 0}
.wide{overflow-x:auto;max-width:100%}.better{color:#06612e;font-weight:600}
.worse{color:#a11;font-weight:600}.note{color:#555;font-size:0.92em}
.differ{background:#f6f8fa;border-left:4px solid #4a78b5;padding:0.5em 1em}"""
MAX_COLUMNS = 8  # value columns of one table before it is wrapped into several
PAGE_CHARACTERS = 120  # about what a 1,300-pixel page holds in one table row


IMAGE = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")  # a markdown figure line


@dataclass
class Table:
    """A table as both pages show it: plain-text cells, the first column naming the row."""

    header: list[str]
    rows: list[list[str]]
    note: str = ""

    @property
    def n_cells(self) -> int:
        return len(self.rows) * max(0, len(self.header) - 1)

    def markdown(self) -> list[str]:
        out = [self.note, ""] if self.note else []
        out += ["| " + " | ".join(self.header) + " |", "|---|" + "---|" * (len(self.header) - 1)]
        out += ["| " + " | ".join(str(c) for c in row) + " |" for row in self.rows]
        return [*out, ""]

    def html(self) -> str:
        """The table, its note above it; wrapped into parts (each repeating the row names)
        of at most :data:`MAX_COLUMNS` value columns and :data:`PAGE_CHARACTERS` characters
        a row, so that it fits the page."""
        parts = []
        for cols in self.parts():
            parts.append(table([self.header[i] for i in cols],
                               [[inline(str(row[i])) for i in cols] for row in self.rows]))
        note = f"<p class=note>{inline(self.note)}</p>" if self.note else ""
        return note + "".join(f'<div class="wide">{p}</div>' for p in parts)

    def parts(self) -> list[list[int]]:
        """The column indices of each part (the row names' column first in each)."""
        def width(i: int) -> int:
            return 3 + max(len(str(c)) for c in [self.header[i], *(r[i] for r in self.rows)])

        out: list[list[int]] = [[0]]
        for i in range(1, len(self.header)):
            used = sum(width(j) for j in out[-1])
            if len(out[-1]) > 1 and (len(out[-1]) > MAX_COLUMNS
                                     or used + width(i) > PAGE_CHARACTERS):
                out.append([0])
            out[-1].append(i)
        return out


@dataclass
class Section:
    """A part of the report: a title, then blocks in order: text (a paragraph, markdown
    ``**bold**`` allowed), :class:`Table`, or a figure's path. Section builders (studies,
    and anything that adds to the report) return these; :func:`write` and ``report.md``
    render them."""

    title: str
    blocks: list[Any] = field(default_factory=list)

    def markdown(self, level: int = 2, root: Path | None = None) -> str:
        out = [f"{'#' * level} {self.title}", ""]
        for block in self.blocks:
            if isinstance(block, Table):
                out += block.markdown()
            elif isinstance(block, Path):
                name = (block.relative_to(root).as_posix() if root is not None
                        and block.is_relative_to(root) else block.name)
                out += [f"![{block.stem}]({name})", ""]
            else:
                out += [str(block), ""]
        return "\n".join(out)

    def html(self, level: int = 2) -> str:
        out = [f"<h{level}>{html.escape(self.title)}</h{level}>"]
        for block in self.blocks:
            if isinstance(block, Table):
                out.append(block.html() if block.n_cells > 1 else
                           single_cell(block))
            elif isinstance(block, Path):
                out.append(image(block, block.stem))
            else:
                out.append(f"<p>{inline(str(block))}</p>")
        return "\n".join(out)


def single_cell(block: Table) -> str:
    """A table of one value said as a sentence: no 1 × 1 grid."""
    if not block.rows:
        return ""
    row = block.rows[0]
    value = row[1] if len(row) > 1 else ""
    what = f"{block.header[1]} of {row[0]}" if len(block.header) > 1 else str(row[0])
    note = f" <span class=note>({inline(block.note)})</span>" if block.note else ""
    return f"<p>{html.escape(what)}: <b>{html.escape(str(value))}</b>{note}</p>"


def inline(text: str) -> str:
    """Escaped text with markdown ``**bold**`` and `` `code` ``."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def sections_from_markdown(lines: Sequence[str], folder: Path | None = None) -> list[Section]:
    """Sections from markdown of the report's own form (``##`` headings, paragraphs, pipe
    tables, ``![alt](file)`` figures found under ``folder``): a section builder that still
    returns markdown lines shows on the page too. An item holding several lines (a whole
    table from :func:`markdown`) is read line by line."""
    lines = [part for line in lines for part in str(line).splitlines()]
    sections: list[Section] = []
    rows: list[list[str]] = []

    def flush() -> None:
        if rows and sections:
            sections[-1].blocks.append(Table(rows[0], rows[2:] if len(rows) > 1 else []))
        rows.clear()

    for line in lines:
        text = line.strip()
        if text.startswith("|"):
            rows.append([c.strip() for c in text.strip("|").split("|")])
            continue
        flush()
        figure = IMAGE.fullmatch(text) if folder is not None else None
        if text.startswith("#"):
            sections.append(Section(text.lstrip("#").strip()))
        elif figure and (folder / figure.group(1)).is_file():
            if not sections:
                sections.append(Section(""))
            sections[-1].blocks.append(folder / figure.group(1))
        elif text:
            if not sections:
                sections.append(Section(""))
            sections[-1].blocks.append(text)
    flush()
    return sections


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
        out.append('<div class="wide">' + table(
            ["test set", f"acc {a}", f"acc {b}", "Δ accuracy [95 % CI]", "Δ AUROC [95 % CI]",
             "McNemar p", "verdict"], body) + "</div>")
    return "\n".join(out)


def generator_table(grid: Any, names: dict[str, str] | None = None) -> Table | None:
    """Accuracy per generator (recall; specificity for human), transposed so that it grows
    down the page: one row per generator (its real name), one column per training
    distortion and test set with values (mean over runs, and n runs where more than one)."""
    names = names or {}
    keys = sorted({m[len("acc_"):] for m in grid.values if m.startswith("acc_")},
                  key=lambda k: names.get(k, k).lower())
    columns = [(row, col) for row in grid.rows for col in grid.cols
               if any(grid.cell(f"acc_{k}", row, col)[2] for k in keys)]
    if not keys or not columns:
        return None
    single_row, single_col = len(grid.rows) == 1, len(grid.cols) == 1
    header = ["generator", *(("accuracy" if single_row and single_col else col) if single_row
                             else f"{row} → {col}" for row, col in columns)]
    rows = []
    for key in keys:
        cells = []
        for row, col in columns:
            mean, std, n = grid.cell(f"acc_{key}", row, col)
            cells.append("–" if n == 0 else f"{mean:.3f}" if n == 1 else
                         f"{mean:.3f} ± {std:.3f} ({n})")
        rows.append([names.get(key, key), *cells])
    return Table(header, rows)


def generator_metrics(runs: Sequence[Any]) -> tuple[str, ...]:
    """The per-generator accuracy metrics (``test/<d>/acc_<generator>``) the runs hold."""
    return tuple(sorted({key.split("/")[2] for run in runs for key in run.data.metrics
                         if key.count("/") == 2 and key.split("/")[2].startswith("acc_")}))


def grid_part(grid: Any, metrics: Sequence[str], heatmap: Path, spread: str) -> list[str]:
    """The train × test matrix and heatmap, when the matrix has more than one cell."""
    if len(grid.rows) * len(grid.cols) <= 1:
        return []
    parts = ["<h2>Train × test</h2>",
             f"<p class=note>Cells: mean ± sample sd over {spread} (n runs); a cell of one "
             "run shows its 95 % interval over groups.</p>"]
    for metric in metrics:
        parts += [f"<h3>{html.escape(metric)}</h3>",
                  f'<div class="wide">{matrix(grid, metric)}</div>']
    return [*parts, image(heatmap, "heatmap")]


def write(path: Path, title: str, differ: str, sections: Sequence[Section], grid: Any,
          metrics: Sequence[str], heatmap: Path, files: Sequence[Path],
          results: Sequence[Paired], generators: Table | None, spread: str) -> Path:
    """Write the page: ``differ`` says what the runs differ in; ``sections`` are the
    study's own; ``files`` hold the curve overlays ``curves_*.png``; ``spread`` names what a
    matrix cell's runs differ in. Returns its path."""
    curves = [f for f in files if f.name.startswith("curves_") and f.suffix == ".png"]
    parts = [f"<h1>{html.escape(title)}</h1>", f"<p class=differ>{html.escape(differ)}</p>",
             "<p class=note>Label convention: 0 = human, 1 = AI-generated; a score is "
             "P(AI-generated).</p>"]
    parts += [s.html() for s in sections]
    parts += grid_part(grid, metrics, heatmap, spread)
    if curves:
        parts += ["<h2>Robustness curves</h2>", *(image(p, p.stem) for p in curves)]
    if results:
        parts += ["<h2>Paired comparisons</h2>",
                  "<p class=note>B − A on the same clips (runs paired by seed): differences "
                  "with 95 % paired group-bootstrap intervals; McNemar's exact p for the "
                  "decisions. Verdict: the accuracy interval excludes 0, or not.</p>",
                  verdicts(results)]
    if generators is not None and generators.n_cells > 1:
        parts += ["<h2>Accuracy per generator</h2>",
                  "<p class=note>Recall on each generator's clips (specificity for human), "
                  "mean over runs.</p>", generators.html()]
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    return atomic.write_text(path, page)
