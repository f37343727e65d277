"""The anti-spoofing field's scores of a detector (ASVspoof 5 practice), written from their
definitions: the detection cost function (minDCF at the best threshold, actDCF at the Bayes
threshold), the log-likelihood-ratio cost Cllr and its minimum after the pool-adjacent-
violators (PAV) transform, and the expected calibration error (ECE).

Conventions. Label 1 = AI-generated = the field's "spoof" class, label 0 = human = "bona fide"
(its target). A score is P(AI); the field's miss and false alarm are the bona fide class's:

- a **miss** is a human file rejected (called AI): the rate is our false-positive rate,
  cost ``c_miss``;
- a **false alarm** is an AI file accepted as human: the rate is our false-negative rate,
  cost ``c_fa``;
- ``p_spoof`` is the prior of AI files the costs are weighed at.

DCF(t) = (c_miss (1 - p_spoof) P_miss(t) + c_fa p_spoof P_fa(t)) / min(c_miss (1 - p_spoof),
c_fa p_spoof), so that a system that always says "human" or always "AI" costs at most 1.
actDCF and Cllr read the score's log-odds, logit(score), as the log-likelihood ratio for AI
(a posterior at equal priors, as :mod:`deepfake_detect.models.calibration` makes it); scores are
clipped to [1e-6, 1 - 1e-6] so that one overconfident file costs at most ~20 bits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepfake_detect.models.calibration import llr

ECE_BINS = 10
FIELD_METRICS = ("min_dcf", "act_dcf", "cllr", "min_cllr", "ece")


@dataclass(frozen=True)
class Costs:
    """The detection cost function's prior and costs (``eval.dcf``; ASVspoof 5 defaults)."""

    p_spoof: float = 0.05
    c_miss: float = 1.0
    c_fa: float = 10.0

    @property
    def norm(self) -> float:
        return min(self.c_miss * (1 - self.p_spoof), self.c_fa * self.p_spoof)

    @property
    def bayes_llr(self) -> float:
        """Call a file AI when its LLR for AI exceeds this (the expected cost is lower)."""
        return float(np.log(self.c_miss * (1 - self.p_spoof) / (self.c_fa * self.p_spoof)))


ASVSPOOF5 = Costs()


def _arrays(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.int64)


def _both(y: np.ndarray) -> bool:
    return bool(len(y)) and bool((y == 1).any()) and bool((y == 0).any())


def dcf(p_miss: np.ndarray | float, p_fa: np.ndarray | float, costs: Costs) -> np.ndarray:
    """The normalised detection cost of the miss and false-alarm rates (see the module doc)."""
    weighted = costs.c_miss * (1 - costs.p_spoof) * np.asarray(p_miss) \
        + costs.c_fa * costs.p_spoof * np.asarray(p_fa)
    return weighted / costs.norm


def error_rates(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, ...]:
    """(P_miss, P_fa, thresholds) for every threshold that changes a decision: a file is
    called AI when its score >= the threshold; the first point calls every file AI, the last
    (threshold +inf) none."""
    s, y = _arrays(scores, labels)
    cuts = np.r_[np.unique(s), np.inf]
    order = np.sort(s[y == 0]), np.sort(s[y == 1])
    human_called_ai = len(order[0]) - np.searchsorted(order[0], cuts, side="left")
    ai_called_human = np.searchsorted(order[1], cuts, side="left")
    return (human_called_ai / max(len(order[0]), 1), ai_called_human / max(len(order[1]), 1),
            cuts)


def min_dcf(scores: Sequence[float], labels: Sequence[int], costs: Costs = ASVSPOOF5) -> float:
    """The lowest DCF over all thresholds (NaN without both classes)."""
    s, y = _arrays(scores, labels)
    if not _both(y):
        return float("nan")
    p_miss, p_fa, _ = error_rates(s, y)
    return float(dcf(p_miss, p_fa, costs).min())


def act_dcf(scores: Sequence[float], labels: Sequence[int], costs: Costs = ASVSPOOF5) -> float:
    """The DCF of the decisions the scores make as LLRs at the Bayes threshold."""
    s, y = _arrays(scores, labels)
    if not _both(y):
        return float("nan")
    called_ai = llr(s) > costs.bayes_llr
    return float(dcf(called_ai[y == 0].mean(), (~called_ai[y == 1]).mean(), costs))


def cllr_of_llr(values: np.ndarray, y: np.ndarray) -> float:
    """Cllr in bits of log-likelihood ratios for AI: half the mean log2(1 + e^-llr) over AI
    files plus half the mean log2(1 + e^llr) over human files."""
    ai = np.logaddexp(0, -values[y == 1]).mean()
    human = np.logaddexp(0, values[y == 0]).mean()
    return float((ai + human) / 2 / np.log(2))


def cllr(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Cllr of the scores read as LLRs (0: perfect, 1: an uninformative system that says
    0.5 to everything; more: badly calibrated)."""
    s, y = _arrays(scores, labels)
    return cllr_of_llr(llr(s), y) if _both(y) else float("nan")


def pav(scores: Sequence[float], labels: Sequence[int]) -> np.ndarray:
    """The PAV transform: the non-decreasing function of the score (tied scores pooled first)
    closest to the labels in squared error, i.e. the posterior P(AI | score) at the set's own
    prior that the ROC convex hull implies."""
    s, y = _arrays(scores, labels)
    unique, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=y, minlength=len(unique))
    return _pav_pooled(sums, counts)[inverse]


def _pav_pooled(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """PAV over distinct scores in order (label sums and counts): one posterior each."""
    # Blocks of (label sum, weight, number of distinct scores); merge while they decrease.
    blocks: list[list[float]] = []
    for total, weight in zip(sums.tolist(), counts.tolist(), strict=True):
        blocks.append([total, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] * blocks[-1][1] > blocks[-1][0] * blocks[-2][1]:
            last = blocks.pop()
            blocks[-1] = [blocks[-1][0] + last[0], blocks[-1][1] + last[1],
                          blocks[-1][2] + last[2]]
    return np.repeat([b[0] / b[1] for b in blocks], [int(b[2]) for b in blocks])


def min_cllr(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Cllr after the optimal monotone recalibration (PAV): the discrimination part of Cllr;
    Cllr - minCllr is what calibration loses."""
    s, y = _arrays(scores, labels)
    if not _both(y):
        return float("nan")
    posterior = pav(s, y)
    prior = y.mean()
    # LLR = logit(posterior) - logit(prior); a bin of one class only gives +-inf, and only
    # files of that class sit in it, whose cost is then 0 (computed without the infinities).
    with np.errstate(divide="ignore"):
        odds_against = (1 - posterior) / posterior * prior / (1 - prior)  # e^-llr
    ai = np.log2(1 + odds_against[y == 1]).mean()
    human = np.log2(1 + 1 / odds_against[y == 0]).mean()
    return float((ai + human) / 2)


def ece(scores: Sequence[float], labels: Sequence[int], bins: int = ECE_BINS) -> float:
    """Expected calibration error: over ``bins`` equal-width score bins, the share of files in
    the bin times |mean score - share of AI files|."""
    s, y = _arrays(scores, labels)
    if not len(y):
        return float("nan")
    index = np.clip((s * bins).astype(np.int64), 0, bins - 1)
    gap = np.bincount(index, weights=s, minlength=bins) - np.bincount(index, weights=y,
                                                                       minlength=bins)
    return float(np.abs(gap).sum() / len(y))


def reliability(scores: Sequence[float], labels: Sequence[int],
                bins: int = ECE_BINS) -> list[tuple[float, float, int]]:
    """(mean score, share of AI files, n) of each non-empty bin: the reliability diagram."""
    s, y = _arrays(scores, labels)
    index = np.clip((s * bins).astype(np.int64), 0, bins - 1)
    return [(float(s[index == b].mean()), float(y[index == b].mean()), int((index == b).sum()))
            for b in np.unique(index)]


def field_metrics(scores: Sequence[float], labels: Sequence[int],
                  costs: Costs = ASVSPOOF5) -> dict[str, float]:
    """minDCF, actDCF, Cllr, minCllr and ECE of one set of scores: the functions above,
    computed together (one sort; tested equal), as the bootstrap calls it a thousand times."""
    s, y = _arrays(scores, labels)
    nan = float("nan")
    if not _both(y):
        return {"min_dcf": nan, "act_dcf": nan, "cllr": nan, "min_cllr": nan,
                "ece": ece(s, y)}
    unique, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ai = np.bincount(inverse, weights=y, minlength=len(unique))
    n_ai = ai.sum()
    n_human = len(y) - n_ai
    # Calling AI at score >= each distinct score, then at +inf (no file).
    p_miss = 1 - np.r_[0.0, np.cumsum(counts - ai)] / n_human
    p_fa = np.r_[0.0, np.cumsum(ai)] / n_ai
    values = llr(s)
    called_ai = values > costs.bayes_llr
    posterior = _pav_pooled(ai, counts)
    prior = n_ai / len(y)
    with np.errstate(divide="ignore"):
        odds_against = ((1 - posterior) / posterior * prior / (1 - prior))[inverse]
    is_ai = y == 1
    return {"min_dcf": float(dcf(p_miss, p_fa, costs).min()),
            "act_dcf": float(dcf(called_ai[~is_ai].mean(), (~called_ai[is_ai]).mean(), costs)),
            "cllr": cllr_of_llr(values, y),
            "min_cllr": float((np.log2(1 + odds_against[is_ai]).mean()
                               + np.log2(1 + 1 / odds_against[~is_ai]).mean()) / 2),
            "ece": ece(s, y)}
