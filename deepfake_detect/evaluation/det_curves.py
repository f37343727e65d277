"""ROC and DET curves of one test set, every model on it overlaid (the detector, the shortcut
baselines, the fusion): the points as CSV and one PNG with the ROC beside the DET (error rates
on normal-deviate axes, where two Gaussian score distributions give a straight line); and the
reliability diagram of a detector's scores (raw and calibrated).

Axes name what the errors are: a human file called AI (the false-positive rate; the field's
"miss" of a bona fide file) and an AI file missed (the false-negative rate; the field's false
alarm, an AI file accepted as human).
"""

from __future__ import annotations

import csv
import io as text_io
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import numpy as np  # noqa: E402
from scipy.stats import norm  # noqa: E402

from deepfake_detect import atomic  # noqa: E402
from deepfake_detect.evaluation import stats  # noqa: E402
from deepfake_detect.evaluation.detection_costs import ece, reliability  # noqa: E402

TICKS = (0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99)
CLIP = (0.0005, 0.995)
COLUMNS = ("model", "threshold", "fpr", "tpr", "fnr", "fpr_deviate", "fnr_deviate")

Curves = Mapping[str, tuple[Sequence[float], Sequence[int]]]  # model -> (scores, labels)


def points(scores: Sequence[float], labels: Sequence[int]) -> dict[str, np.ndarray]:
    """The ROC points (as :func:`stats.roc`) with the false-negative rate and both error rates
    on the normal-deviate scale (clipped to the plotted range)."""
    fpr, tpr, thresholds = stats.roc(scores, labels)
    fnr = 1 - tpr
    return {"threshold": thresholds, "fpr": fpr, "tpr": tpr, "fnr": fnr,
            "fpr_deviate": deviate(fpr), "fnr_deviate": deviate(fnr)}


def deviate(rate: np.ndarray) -> np.ndarray:
    """The normal deviate (probit) of a rate, clipped to the plotted range."""
    return norm.ppf(np.clip(np.asarray(rate, dtype=np.float64), *CLIP))


def usable(curves: Curves) -> dict[str, dict[str, np.ndarray]]:
    """Each model's points, models whose labels lack a class left out."""
    out = {}
    for name, (scores, labels) in curves.items():
        y = np.asarray(labels)
        if len(y) and 0 < y.sum() < len(y):
            out[name] = points(scores, y)
    return out


def write_csv(path: Path, found: dict[str, dict[str, np.ndarray]]) -> Path:
    """One row per (model, ROC point)."""
    buffer = text_io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for name, cols in found.items():
        for i in range(len(cols["fpr"])):
            writer.writerow([name, *(f"{cols[c][i]:.6f}" for c in COLUMNS[1:])])
    return atomic.write_text(path, buffer.getvalue())


def plot(path: Path, title: str, found: dict[str, dict[str, np.ndarray]],
         legend: Mapping[str, str]) -> Path:
    """ROC (left) and DET (right) of every model; ``legend`` adds text per model (AUROC)."""
    fig, (roc_ax, det_ax) = plt.subplots(1, 2, figsize=(10.5, 4.6), dpi=120)
    for i, (name, cols) in enumerate(found.items()):
        style = {"lw": 2.0 if i == 0 else 1.2, "ls": "-" if i == 0 else "--"}
        label = f"{name} {legend.get(name, '')}".strip()
        roc_ax.plot(cols["fpr"], cols["tpr"], label=label, **style)
        det_ax.plot(cols["fpr_deviate"], cols["fnr_deviate"], label=name, **style)
    roc_ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    roc_ax.set(xlabel="human files called AI (false-positive rate)",
               ylabel="AI files detected (true-positive rate)", xlim=(0, 1), ylim=(0, 1),
               title="ROC")
    roc_ax.legend(fontsize=7, loc="lower right")
    ticks = deviate(np.asarray(TICKS))
    names = [f"{100 * t:g}" for t in TICKS]
    det_ax.plot(ticks[[0, -1]], ticks[[-1, 0]], color="grey", lw=0.8, ls=":")  # chance
    det_ax.set_xticks(ticks, labels=names)
    det_ax.set_yticks(ticks, labels=names)
    det_ax.set(xlim=ticks[[0, -1]], ylim=ticks[[0, -1]], title="DET (normal-deviate axes)",
               xlabel="human files called AI (%)", ylabel="AI files missed (%)")
    det_ax.grid(True, lw=0.4, alpha=0.5)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return atomic.save_figure(fig, path)


def write_curves(out_dir: Path, stem: str, title: str, curves: Curves) -> list[Path]:
    """``<stem>.csv`` and ``<stem>.png`` for the models of one test set (none without a model
    that has both classes)."""
    found = usable(curves)
    if not found:
        return []
    legend = {name: f"(AUROC {stats.auroc(*curves[name]):.3f})" for name in found}
    return [write_csv(out_dir / f"{stem}.csv", found),
            plot(out_dir / f"{stem}.png", title, found, legend)]


def plot_reliability(path: Path, title: str,
                     curves: Mapping[str, tuple[Sequence[float], Sequence[int]]]) -> Path:
    """The reliability diagram: per score bin, the share of AI files against the mean score,
    one line per set of scores (raw, calibrated), ECE in the legend."""
    fig, ax = plt.subplots(figsize=(4.8, 4.4), dpi=120)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label="perfectly calibrated")
    for name, (scores, labels) in curves.items():
        bins = reliability(scores, labels)
        ax.plot([b[0] for b in bins], [b[1] for b in bins], marker="o", ms=3,
                label=f"{name} (ECE {ece(scores, labels):.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean score P(AI) in the bin",
           ylabel="share of AI files in the bin", title=title)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return atomic.save_figure(fig, path)
