"""What ``report.md`` adds from the field's practice: the detection costs per training × test
distortion (minDCF, actDCF, Cllr, minCllr, ECE, with EER beside them), each run's verdict
lines (:mod:`verdict`, the summary's wording) and, for a study of a few runs, each run's
ROC/DET figure (downloaded from the run's ``curves/`` artifacts).

``sections`` returns the markdown, the figure files and the verdicts by run name, so that
report.html can show the same.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepfake_detect.evaluation.detection_costs import FIELD_METRICS
from deepfake_detect.models.names import display_of
from deepfake_detect.reporting.verdict import Verdict, verdict

COST_METRICS = (*FIELD_METRICS, "eer")
MAX_FIGURE_RUNS = 6  # beyond this, the figures stay in the runs (one pooled figure for CV)


@dataclass
class FieldSections:
    """The markdown lines, the figures written and each run's verdicts."""

    lines: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    verdicts: dict[str, list[Verdict]] = field(default_factory=dict)


def run_name(run: Any) -> str:
    return str(run.data.tags.get("mlflow.runName") or run.info.run_name or run.info.run_id)


def headline_level(metrics: dict[str, float], test: str) -> str:
    """The file level when the run has one for ``test``, else the window level."""
    return "file/" if f"test/{test}/file/auroc" in metrics else ""


def run_verdicts(runs: list[Any], tests: list[str]) -> dict[str, list[Verdict]]:
    """Every run's verdict on each of its test sets (at its headline level)."""
    out: dict[str, list[Verdict]] = {}
    for run in runs:
        metrics = dict(run.data.metrics)
        model = display_of(run.data.params)
        found = [verdict(metrics, t, headline_level(metrics, t), model) for t in tests]
        out[run_name(run)] = [v for v in found if v.state != "missing"]
    return out


def download_figures(client: Any, runs: list[Any], tests: list[str], out_dir: Path
                     ) -> dict[str, list[Path]]:
    """Each run's ROC/DET PNGs, copied to ``out_dir/curves`` (runs without them: none)."""
    found: dict[str, list[Path]] = {}
    target = out_dir / "curves"
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            for test in tests:
                try:
                    path = Path(client.download_artifacts(
                        run.info.run_id, f"curves/roc_det_{test}.png", tmp))
                except Exception:  # noqa: BLE001 - an older run, or one without both classes
                    continue
                target.mkdir(parents=True, exist_ok=True)
                copy = target / f"{run_name(run)}_{test}.png"
                shutil.copyfile(path, copy)
                found.setdefault(run_name(run), []).append(copy)
    return found


def sections(client: Any, runs: list[Any], tests: list[str], cost_grid: Any,
             markdown: Any, title: str, out_dir: Path) -> FieldSections:
    """report.md's field sections (``cost_grid``: the report's grid of ``COST_METRICS``,
    ``markdown``: the report's table writer)."""
    out = FieldSections()
    if cost_grid.cols:
        out.lines += ["", markdown(cost_grid, COST_METRICS, f"{title}: detection costs "
                                   "(minDCF, actDCF at eval.dcf; Cllr, minCllr in bits; "
                                   "ECE; EER)")]
    out.verdicts = run_verdicts(runs, tests)
    figures = download_figures(client, runs, tests, out_dir) if len(runs) <= MAX_FIGURE_RUNS \
        else {}
    if any(out.verdicts.values()):
        out.lines += ["", "# Verdicts", "", "Per run and test set: is there evidence of "
                      "detection at all (the AUROC interval against 0.5), and only then is it "
                      "distinguishable from the best shortcut baseline; the shortcut probe "
                      "beside it.", ""]
    for name, found in out.verdicts.items():
        if not found:
            continue
        out.lines += [f"## {name}", "", *(f"- {line.strip()}" for v in found
                                          for line in v.lines), ""]
        for path in figures.get(name, []):
            out.lines += [f"![ROC and DET, {path.stem}](curves/{path.name})", ""]
            out.figures.append(path)
    return out
