"""How sure a test result is: detection metrics in numpy (the same definitions as
:mod:`deepfake_detect.evaluation.metrics`, fast enough to recompute a thousand times), 95 %
intervals from a bootstrap over *groups* (songs, files, compositions: what may not straddle splits,
so what the clips of a test set are not independent of), paired differences between two models
scored on the same clips, and McNemar's test for their decisions.

A bootstrap replicate draws groups with replacement within each stratum of groups with the
same label set (so a replicate keeps both classes when the test set has them) and takes
every row of each drawn group. Intervals are percentiles of the replicates; seeded, so the
same inputs give the same interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

METRICS = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "auroc", "eer")
N_BOOT = 1000
LEVEL = 0.95


def _arrays(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.int64)


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve (ties count half); NaN when a class is missing."""
    s, y = _arrays(scores, labels)
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # Average ranks over ties (1-based).
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def roc(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, ...]:
    """(fpr, tpr, thresholds) as torchmetrics' ``binary_roc`` gives them: one point per
    distinct score, descending, after a first point (0, 0) at threshold 1."""
    s, y = _arrays(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last row of each distinct score
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    fpr = np.r_[0.0, fps / max(fps[-1], 1)]
    tpr = np.r_[0.0, tps / max(tps[-1], 1)]
    return fpr, tpr, np.r_[1.0, s[last]]


def eer(scores: Sequence[float], labels: Sequence[int]) -> tuple[float, float]:
    """(EER, threshold at the EER), interpolated between the ROC points around the crossing
    of the false-positive and false-negative rates, as :func:`metrics.equal_error_rate`."""
    _, y = _arrays(scores, labels)
    if len(y) == 0 or y.min() == y.max():
        return float("nan"), float("nan")
    fpr, tpr, thresholds = roc(scores, labels)
    diff = fpr - (1 - tpr)
    above = np.flatnonzero(diff >= 0)
    i = int(above[0]) if len(above) else len(diff) - 1
    if i == 0:
        return float(fpr[0]), float(min(thresholds[0], 1.0))
    d0, d1 = diff[i - 1], diff[i]
    w = d0 / (d0 - d1) if d0 != d1 else 0.0
    return (float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1])),
            float(min(thresholds[i - 1] + w * (thresholds[i] - thresholds[i - 1]), 1.0)))


def detection_metrics(scores: Sequence[float], labels: Sequence[int],
                      threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, balanced accuracy, precision, recall, F1, AUROC and EER; a score >=
    ``threshold`` is a decision for AI-generated (precision and F1 are 0 without one)."""
    s, y = _arrays(scores, labels)
    predicted = (s >= threshold).astype(np.int64)
    tp = int(((predicted == 1) & (y == 1)).sum())
    fp = int(((predicted == 1) & (y == 0)).sum())
    fn = int(((predicted == 0) & (y == 1)).sum())
    recalls = [float((predicted[y == c] == c).mean()) for c in (0, 1) if (y == c).any()]
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {"accuracy": float((predicted == y).mean()) if len(y) else float("nan"),
            "balanced_accuracy": float(np.mean(recalls)) if recalls else float("nan"),
            "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "auroc": auroc(s, y), "eer": eer(s, y)[0]}


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval, over ``n_groups`` groups."""

    value: float
    low: float
    high: float
    n_groups: int
    n_rows: int

    def text(self, digits: int = 3) -> str:
        if self.low != self.low:
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def group_strata(groups: Sequence[str], labels: Sequence[int]) -> list[list[np.ndarray]]:
    """Row indices per group, the groups sorted into strata by their label set."""
    rows: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        rows.setdefault(str(group), []).append(index)
    y = np.asarray(labels)
    strata: dict[tuple[int, ...], list[np.ndarray]] = {}
    for group in sorted(rows):
        members = np.asarray(rows[group])
        strata.setdefault(tuple(sorted(set(y[members].tolist()))), []).append(members)
    return [strata[key] for key in sorted(strata)]


def replicates(groups: Sequence[str], labels: Sequence[int], n_boot: int = N_BOOT,
               seed: int = 0) -> list[np.ndarray]:
    """``n_boot`` bootstrap samples of row indices, drawn by group (see the module doc)."""
    strata = group_strata(groups, labels)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        parts = [stratum[i] for stratum in strata
                 for i in rng.integers(0, len(stratum), size=len(stratum))]
        out.append(np.concatenate(parts) if parts else np.array([], dtype=np.int64))
    return out


def _percentiles(values: list[float], level: float) -> tuple[float, float]:
    finite = np.asarray([v for v in values if v == v], dtype=np.float64)
    if len(finite) < max(10, len(values) // 2):
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    return float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))


def intervals(scores: Sequence[float], labels: Sequence[int], groups: Sequence[str],
              threshold: float = 0.5, n_boot: int = N_BOOT, level: float = LEVEL,
              seed: int = 0, metrics: Sequence[str] = METRICS) -> dict[str, Interval]:
    """Each metric with its group-bootstrap interval."""
    s, y = _arrays(scores, labels)
    point = detection_metrics(s, y, threshold)
    draws = replicates(groups, y, n_boot, seed)
    values: dict[str, list[float]] = {m: [] for m in metrics}
    for index in draws:
        again = detection_metrics(s[index], y[index], threshold)
        for metric in metrics:
            values[metric].append(again[metric])
    n_groups = len({str(g) for g in groups})
    return {m: Interval(point[m], *_percentiles(values[m], level), n_groups, len(y))
            for m in metrics}


def paired_replicates(a: Sequence[float], b: Sequence[float], labels: Sequence[int],
                      groups: Sequence[str], thresholds: tuple[float, float] = (0.5, 0.5),
                      n_boot: int = N_BOOT, seed: int = 0,
                      metrics: Sequence[str] = ("accuracy", "auroc")) -> dict[str, np.ndarray]:
    """Each metric of model A minus model B on the same rows: the full set at index 0, then
    one value per paired group-bootstrap replicate (both models see the same groups)."""
    sa, y = _arrays(a, labels)
    sb, _ = _arrays(b, labels)
    out: dict[str, list[float]] = {m: [] for m in metrics}
    for index in [np.arange(len(y)), *replicates(groups, y, n_boot, seed)]:
        ma = detection_metrics(sa[index], y[index], thresholds[0])
        mb = detection_metrics(sb[index], y[index], thresholds[1])
        for metric in metrics:
            out[metric].append(ma[metric] - mb[metric])
    return {m: np.asarray(v, dtype=np.float64) for m, v in out.items()}


def interval_of(values: np.ndarray, n_groups: int, n_rows: int,
                level: float = LEVEL) -> Interval:
    """The point value ``values[0]`` with the percentile interval of the replicates
    ``values[1:]`` (NaN when fewer than half of them are defined)."""
    return Interval(float(values[0]), *_percentiles(list(values[1:]), level), n_groups,
                    n_rows)


def paired_difference(metric: str, a: Sequence[float], b: Sequence[float],
                      labels: Sequence[int], groups: Sequence[str],
                      thresholds: tuple[float, float] = (0.5, 0.5), n_boot: int = N_BOOT,
                      level: float = LEVEL, seed: int = 0) -> Interval:
    """``metric`` of model A minus model B on the same rows, with a paired group-bootstrap
    interval (both models see the same resampled groups in each replicate)."""
    values = paired_replicates(a, b, labels, groups, thresholds, n_boot, seed, (metric,))
    return interval_of(values[metric], len({str(g) for g in groups}), len(labels), level)


def mcnemar_p(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> float:
    """McNemar's exact test on paired decisions: the two-sided binomial p of the discordant
    pairs (1.0 when the models never disagree on correctness)."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue)
