"""Robustness curves without retraining: one trained model on one test set under a
distortion at fixed strengths (``deepfake-detect-robustness``, and ``eval.curves`` at the end
of training).

"Strength" is the distortion's main parameter (pitch: semitones; tempo: rate; codec: bitrate
in kbps, or Vorbis quality; resample: rate in Hz; noise: SNR in dB; eq: cutoff in Hz; reverb:
decay in s; gain: dB; crop: duration in s); at a point every clip gets exactly that value, and
every other parameter its own draw. The test clips are decoded once for the whole curve and
each point's rows are cached like any test set (:meth:`AudioDataModule.split_entries`).

Each point gets accuracy, balanced accuracy, AUROC and EER, and each generator's recall (the share
of its clips decided right: specificity for ``human``), with 95 % intervals from a bootstrap over
groups (:mod:`deepfake_detect.evaluation.stats`). Written per curve: ``curve_<name>.csv`` (one row
per strength), ``.json``, ``.png`` (the curves with their interval bands) and
``curve_<name>_predictions.csv`` (every clip's score at every strength, for paired comparisons
between models)."""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_detect import atomic
from deepfake_detect.data.cache import CacheEntry
from deepfake_detect.data.datamodule import AudioDataModule
from deepfake_detect.data.distortions import Distortion, strength_label
from deepfake_detect.data.presets import CurveSpec
from deepfake_detect.evaluation import stats
from deepfake_detect.evaluation.metrics import param_text

log = logging.getLogger(__name__)

CURVE_METRICS = ("accuracy", "balanced_accuracy", "auroc", "eer")
ScoreRows = Callable[[CacheEntry], np.ndarray]  # P(AI) for each row of an entry


@dataclass
class Point:
    """One strength: its metrics and per-generator recalls with intervals, and the clips."""

    value: float
    metrics: dict[str, stats.Interval]
    recall: dict[str, stats.Interval]
    rows: list[dict[str, Any]] = field(default_factory=list)  # clip, group, label, score


@dataclass
class Curve:
    distortion: str
    effect: str | None
    parameter: str
    unit: str
    threshold: float
    points: list[Point]
    n_boot: int = stats.N_BOOT

    @property
    def name(self) -> str:
        return self.distortion + (f"-{self.effect}" if self.effect else "")

    @property
    def axis(self) -> str:
        unit = f" ({self.unit})" if self.unit and self.unit != self.parameter else ""
        return f"{self.distortion}: {self.parameter}{unit}"


def loop_scorer(detector: Any, batch_size: int = 32) -> ScoreRows:
    """Scores from ``detector`` in float32 batches on its own device (as predict does)."""
    import torch

    def score(entry: CacheEntry) -> np.ndarray:
        device = next(detector.parameters()).device
        was_training = detector.training
        detector.eval()
        parts = []
        try:
            with torch.inference_mode():
                for start in range(0, len(entry.features), batch_size):
                    rows = np.asarray(entry.features[start:start + batch_size], np.float32)
                    x = torch.from_numpy(rows).unsqueeze(1).to(device)
                    parts.append(detector.score(x).float().cpu().numpy())
        finally:
            detector.train(was_training)
        return np.concatenate(parts) if parts else np.zeros(0)

    return score


def trainer_scorer(trainer: Any, model: Any, batch_size: int) -> ScoreRows:
    """Scores through ``trainer.predict``: the precision and device the test sets had."""
    import torch
    from torch.utils.data import DataLoader

    from deepfake_detect.data.datamodule import FeatureDataset

    def score(entry: CacheEntry) -> np.ndarray:
        loader = DataLoader(FeatureDataset(entry), batch_size=batch_size, shuffle=False)
        batches = trainer.predict(model, dataloaders=loader)
        return torch.cat(list(batches)).float().numpy()

    return score


def point_of(value: float, scores: np.ndarray, entry_rows: list[dict[str, Any]],
             threshold: float, n_boot: int) -> Point:
    """A point's metrics and per-generator recalls, with group-bootstrap intervals."""
    labels = np.array([int(r["label"]) for r in entry_rows])
    groups = np.array([str(r["group"]) for r in entry_rows])
    generators = np.array([str(r["generator"]) for r in entry_rows])
    metrics = stats.intervals(scores, labels, groups, threshold, n_boot=n_boot,
                              metrics=CURVE_METRICS)
    recall = {}
    for gen in sorted(set(generators)):
        mine = generators == gen
        recall[gen] = stats.intervals(scores[mine], labels[mine], groups[mine], threshold,
                                      n_boot=n_boot, metrics=("accuracy",))["accuracy"]
    rows = [{"clip_id": r["clip_id"], "group": r["group"], "generator": r["generator"],
             "label": int(r["label"]), "score": float(s), "params": r.get("params", {})}
            for r, s in zip(entry_rows, scores, strict=True)]
    return Point(value, metrics, recall, rows)


def compute_curves(dm: AudioDataModule, curves: Sequence[tuple[CurveSpec, list[Distortion]]],
                   score: ScoreRows, threshold: float, n_boot: int = stats.N_BOOT
                   ) -> list[Curve]:
    """Every curve's points on ``dm``'s test split: one decode per clip and one pool of
    feature builds for all of them, then scores and intervals per point."""
    labels = []
    for spec, points in curves:
        parameter = strength_label(points[0], spec.effect)[0]
        labels += [f"{spec.distortion}[{parameter}={value:g}]" for value in spec.values]
    entries = iter(dm.split_entries("test", [d for _, points in curves for d in points],
                                    labels))
    out = []
    for spec, points in curves:
        parameter, unit = strength_label(points[0], spec.effect)
        done = []
        for value, _ in zip(spec.values, points, strict=True):
            entry = next(entries)
            start = time.perf_counter()
            done.append(point_of(value, score(entry), entry.rows, threshold, n_boot))
            log.info("%s %s=%g: accuracy %s, AUROC %s (%d clips, %.1f s)", spec.distortion,
                     parameter, value, done[-1].metrics["accuracy"].text(),
                     done[-1].metrics["auroc"].text(), len(entry.rows),
                     time.perf_counter() - start)
        out.append(Curve(spec.distortion, spec.effect, parameter, unit, threshold, done,
                         n_boot))
    return out


def write_curve(curve: Curve, out_dir: Path, model: dict[str, Any] | None = None
                ) -> list[Path]:
    """``curve_<name>.{csv,json,png}`` and ``curve_<name>_predictions.csv`` in ``out_dir``."""
    stem = out_dir / f"curve_{curve.name}"
    return [atomic.write_text(stem.with_suffix(".csv"), curve_csv(curve)),
            atomic.write_json(stem.with_suffix(".json"), curve_json(curve, model)),
            plot_curve(curve, stem.with_suffix(".png")),
            atomic.write_text(out_dir / f"curve_{curve.name}_predictions.csv",
                          predictions_csv(curve))]


def _interval(i: stats.Interval) -> dict[str, float]:
    return {"value": i.value, "low": i.low, "high": i.high, "n_groups": i.n_groups,
            "n_rows": i.n_rows}


def curve_json(curve: Curve, model: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"distortion": curve.distortion, "effect": curve.effect,
            "parameter": curve.parameter, "unit": curve.unit, "threshold": curve.threshold,
            "level": stats.LEVEL, "n_boot": curve.n_boot, "model": model or {},
            "points": [{"value": p.value, "n_clips": len(p.rows),
                        "n_groups": next(iter(p.metrics.values())).n_groups,
                        "metrics": {m: _interval(i) for m, i in p.metrics.items()},
                        "recall": {g: _interval(i) for g, i in p.recall.items()}}
                       for p in curve.points]}


def curve_csv(curve: Curve) -> str:
    """One row per strength: each metric and generator recall with its interval."""
    gens = sorted({g for p in curve.points for g in p.recall})
    names = [*CURVE_METRICS, *(f"recall_{g}" for g in gens)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([curve.parameter, "n_clips", "n_groups",
                     *(f"{n}{s}" for n in names for s in ("", "_low", "_high"))])
    for p in curve.points:
        values = [*(p.metrics[m] for m in CURVE_METRICS), *(p.recall.get(g) for g in gens)]
        cells = [f"{x:.6f}" if x == x else "" for i in values
                 for x in ((i.value, i.low, i.high) if i else (float("nan"),) * 3)]
        writer.writerow([f"{p.value:g}", len(p.rows), p.metrics["accuracy"].n_groups, *cells])
    return buffer.getvalue()


def predictions_csv(curve: Curve) -> str:
    """Every clip's score at every strength (the decision: score >= the threshold) and the
    distortion parameters it got."""
    keys = sorted({k for p in curve.points for r in p.rows for k in r.get("params", {})})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([curve.parameter, "clip_id", "group", "generator", "label", "score",
                     "prediction", *keys])
    for p in curve.points:
        for r in p.rows:
            params = r.get("params", {})
            writer.writerow([f"{p.value:g}", r["clip_id"], r["group"], r["generator"],
                             r["label"], f"{r['score']:.6f}", int(r["score"] >= curve.threshold),
                             *(param_text(params[k]) if k in params else "" for k in keys)])
    return buffer.getvalue()


def plot_curve(curve: Curve, path: Path) -> Path:
    """Accuracy and balanced accuracy, AUROC, EER and per-generator recall against the
    strength, each with its 95 % interval band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.array([p.value for p in curve.points])
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8), dpi=110)
    panels = [(("accuracy", "balanced_accuracy"), "accuracy"), (("auroc",), "AUROC"),
              (("eer",), "EER (lower is better)")]
    for ax, (metrics, title) in zip(axes, panels, strict=False):
        for metric in metrics:
            band(ax, x, [p.metrics[metric] for p in curve.points], metric)
        ax.set_title(title)
    gens = sorted({g for p in curve.points for g in p.recall})
    for gen in gens:
        band(axes[3], x, [p.recall.get(gen) for p in curve.points], gen, alpha=0.08)
    axes[3].set_title("recall per generator (human: specificity)")
    for ax in axes:
        ax.set_xlabel(curve.axis)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"robustness: {curve.name}, threshold {curve.threshold:.3f}, "
                 f"{len(curve.points[0].rows)} clips, 95 % group-bootstrap bands", fontsize=10)
    fig.tight_layout()
    return atomic.save_figure(fig, path)


def band(ax: Any, x: np.ndarray, intervals: list[stats.Interval | None], label: str,
         alpha: float = 0.2, **style: Any) -> None:
    """A line through the values and a band between the interval ends."""
    values = np.array([i.value if i else np.nan for i in intervals], dtype=float)
    low = np.array([i.low if i else np.nan for i in intervals], dtype=float)
    high = np.array([i.high if i else np.nan for i in intervals], dtype=float)
    line, = ax.plot(x, values, marker="o", markersize=3, label=label, **style)
    ax.fill_between(x, low, high, color=line.get_color(), alpha=alpha, linewidth=0)


def run_curves(dm: AudioDataModule, curves: Sequence[tuple[CurveSpec, list[Distortion]]],
               score: ScoreRows, threshold: float, out_dir: Path,
               model: dict[str, Any] | None = None) -> list[Path]:
    """``eval.curves`` at the end of training: every curve computed and written."""
    files: list[Path] = []
    for curve in compute_curves(dm, curves, score, threshold):
        files += write_curve(curve, out_dir, model)
    return files
