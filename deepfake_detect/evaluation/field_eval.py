"""What a run reports beside each test set's own metrics, once the detector and the shortcut
baselines have scored it: the fusion of them all (``eval.fusion``), the ROC/DET figure with
every model overlaid (``curves/roc_det_<d>.png`` and ``.csv``), the reliability diagram of the
detector's scores (``curves/reliability_<d>.png``: raw and calibrated) and the shortcut probe
(``test/<d>/[file/]probe/...``). At the file level where the test set has one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepfake_detect.errors import DeepfakeDetectError
from deepfake_detect.evaluation import det_curves, fusion, shortcut_probe
from deepfake_detect.evaluation import metrics as M
from deepfake_detect.evaluation.aggregate import by_file, file_level
from deepfake_detect.evaluation.detection_costs import Costs
from deepfake_detect.evaluation.evaluate import Intervals, Scored, level_values
from deepfake_detect.models.names import display_name

log = logging.getLogger(__name__)
# The trained model's key among a run's models (``Scores``, ``fusion/weight/CNN``), whatever
# its family; figures show the family's display name (``Setting.detector``).
DETECTOR = "CNN"


@dataclass
class Scores:
    """Every model's scored sets of one run: ``tests[model][d]``, ``val[model]``."""

    tests: dict[str, dict[str, Scored]] = field(default_factory=dict)
    val: dict[str, Scored] = field(default_factory=dict)


@dataclass(frozen=True)
class Setting:
    """How the extras are computed (from the ``eval`` config and the data)."""

    intervals: Intervals
    costs: Costs
    aggregate: str
    features_rate: int
    fuse: bool = False
    detector: str = field(default_factory=display_name)  # the trained model, as shown


def level_view(scored: Scored, aggregate: str) -> Scored:
    """The file level of a test set of audio files, else the set itself."""
    if not file_level(scored.rows):
        return scored
    rows, scores = by_file(scored.rows, scored.scores, aggregate)
    raw = None if scored.raw is None else by_file(scored.rows, scored.raw, aggregate)[1]
    return Scored(scored.name, rows, scores, raw)


def table(scored: Scored) -> dict[str, float]:
    return {str(row["clip_id"]): float(s) for row, s in zip(scored.rows, scored.scores,
                                                          strict=True)}


def fused_sets(scores: Scores, tests: list[str]) -> tuple[dict[str, Any], dict[str, Scored]]:
    """The fusion fitted on validation and each test set's fused scores."""
    val = scores.val[DETECTOR]
    fitted = fusion.fit({m: table(s) for m, s in scores.val.items()},
                        {str(r["clip_id"]): int(r["label"]) for r in val.rows})
    out = {}
    for test in tests:
        tables = {m: table(scores.tests[m][test]) for m in fitted["models"]}
        rows = [r for r in scores.tests[DETECTOR][test].rows
                if fusion.common_clips(tables, [str(r["clip_id"])])]
        out[test] = Scored(test, rows, fusion.apply(fitted, tables,
                                                    [str(r["clip_id"]) for r in rows]))
    return fitted, out


def fusion_values(fused: dict[str, Scored], fitted: dict[str, Any], setting: Setting,
                  out_dir: Path) -> tuple[dict[str, float], list[Path]]:
    """``fusion/test/<d>/...`` values (window and file level) and predictions CSVs."""
    flat = {f"fusion/weight/{m}": w for m, w in zip(fitted["models"], fitted["weights"],
                                                    strict=True)}
    files = []
    for test, scored in fused.items():
        prefix = f"fusion/test/{test}"
        flat.update({f"{prefix}/{k}": v for k, v in level_values(
            scored, 0.5, setting.intervals, costs=setting.costs).items()})
        files.append(M.write_predictions(out_dir / f"fusion_{test}.csv", scored.rows,
                                         scored.scores, 0.5))
        if file_level(scored.rows):
            files_view = level_view(scored, setting.aggregate)
            flat.update({f"{prefix}/file/{k}": v for k, v in level_values(
                files_view, 0.5, setting.intervals, "n_files", setting.costs).items()})
            files.append(M.write_file_predictions(out_dir / f"fusion_{test}_files.csv",
                                                  files_view.rows, files_view.scores, 0.5))
    return flat, files


def draw_figures(test: str, models: dict[str, Scored], out_dir: Path,
                 name: str | None = None) -> list[Path]:
    """The ROC/DET figure of every model and the detector's reliability diagram (the
    detector shown as ``name``, its display name)."""
    name = name or display_name()
    curves = {name if m == DETECTOR else m: (s.scores, s.labels) for m, s in models.items()}
    detector = models[DETECTOR]
    level = "file level" if detector.rows and "n_windows" in detector.rows[0] else "windows"
    files = det_curves.write_curves(out_dir, f"roc_det_{test}",
                                    f"test distortion: {test} ({level})", curves)
    shown = {"calibrated" if detector.raw is not None else name: curves[name]}
    if detector.raw is not None:
        shown = {"raw": (detector.raw, detector.labels), **shown}
    files.append(det_curves.plot_reliability(out_dir / f"reliability_{test}.png",
                                        f"reliability, {test} ({level})", shown))
    return files


def probe_values(test: str, detector: Scored, setting: Setting) -> dict[str, float]:
    """The shortcut probe of the detector's scores on one test set's files."""
    level = "file/" if detector.rows and "n_windows" in detector.rows[0] else ""
    paths = [str(r.get("file") if level else r.get("path") or "") for r in detector.rows]
    found = shortcut_probe.probe(detector.scores, detector.labels, detector.groups, paths,
                                 setting.features_rate, setting.intervals.n_boot,
                                 setting.intervals.level, setting.intervals.seed)
    return {f"test/{test}/{level}probe/{k}": v for k, v in found.items()}


def extras(scores: Scores, tests: list[str], setting: Setting,
           out_dir: Path) -> tuple[dict[str, float], list[Path], list[Path]]:
    """(values, figure and curve files, fusion predictions) of every test set."""
    flat: dict[str, float] = {}
    figure_files: list[Path] = []
    fusion_files: list[Path] = []
    fused: dict[str, Scored] = {}
    if setting.fuse:
        try:
            fitted, fused = fused_sets(scores, tests)
        except DeepfakeDetectError as err:
            log.warning("no fusion: %s", err)
        else:
            flat_fused, fusion_files = fusion_values(fused, fitted, setting, out_dir / "fusion")
            flat.update(flat_fused)
            log.info("fusion: %s", fusion.describe(fitted))
    for test in tests:
        models = {m: sets[test] for m, sets in scores.tests.items() if test in sets}
        if test in fused:
            models["fusion"] = fused[test]
        views = {m: level_view(s, setting.aggregate) for m, s in models.items()}
        if len(views[DETECTOR].rows) and len(set(views[DETECTOR].labels.tolist())) == 2:
            figure_files += draw_figures(test, views, out_dir / "curves", setting.detector)
        flat.update(probe_values(test, views[DETECTOR], setting))
    return flat, figure_files, fusion_files

