"""Calibrated scores: a monotone map fitted on the validation set's window scores and applied
to every later score of the model (test sets, the bundle, ``deepfake-detect-predict``), so a
score of 0.9 means what it says.

``eval.calibration``: ``none``; ``platt`` (a logistic regression on the score's log-odds: two
numbers); ``isotonic`` (the PAV fit, a non-decreasing step function with linear interpolation
between its knots; more flexible, needs more validation files, and ties scores inside a
step). Both are fitted with the classes weighted equally, so a calibrated score is P(AI) at
equal priors whatever the validation set's balance; its log-odds is then the
log-likelihood ratio that actDCF and Cllr read (``evaluation/detection_costs.py``). At another
prior p, multiply the odds by p / (1 - p).

The fitted map is plain numbers, stored in the bundle under ``calibration`` (so it sits with
the model: predict applies it; the reliability diagram is in ``evaluation/det_curves.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deepfake_detect.errors import DeepfakeDetectError

log = logging.getLogger(__name__)
METHODS = ("none", "platt", "isotonic")
EPS = 1e-6  # scores are clipped to [EPS, 1 - EPS] before their log-odds


def llr(scores: Sequence[float]) -> np.ndarray:
    """logit(score): the log-likelihood ratio for AI of a P(AI) at equal priors."""
    s = np.clip(np.asarray(scores, dtype=np.float64), EPS, 1 - EPS)
    return np.log(s) - np.log1p(-s)


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Per-row weights that give each class the same total."""
    y = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(y, minlength=2).astype(np.float64)
    return (len(y) / (2 * counts))[y]


def fit(method: str, scores: Sequence[float], labels: Sequence[int]) -> dict[str, Any] | None:
    """The calibration map fitted on (``scores``, ``labels``), as plain numbers; None for
    ``none``. Both classes are needed."""
    if method == "none":
        return None
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if method not in METHODS:
        raise DeepfakeDetectError(f"eval.calibration: expected one of {', '.join(METHODS)}, "
                                  f"got {method!r}")
    if len(y) == 0 or y.min() == y.max():
        log.warning("eval.calibration=%s: the validation set lacks a class; scores are left "
                    "uncalibrated", method)
        return None
    from sklearn.isotonic import IsotonicRegression  # fitting only: predict stays light
    from sklearn.linear_model import LogisticRegression

    weights = balanced_weights(y)
    if method == "platt":
        model = LogisticRegression(C=1e4, max_iter=1000)
        model.fit(llr(s)[:, None], y, sample_weight=weights)
        slope = float(model.coef_[0, 0])
        if slope < 0:  # scores that fall with P(AI) on validation: no ranking worth keeping
            log.warning("eval.calibration=platt: the validation scores rank the classes the "
                        "wrong way round; calibrated scores are the validation prior only")
            slope = 0.0
            model = LogisticRegression().fit(np.zeros((len(y), 1)), y, sample_weight=weights)
        return {"method": "platt", "slope": slope, "offset": float(model.intercept_[0]),
                "n_fit": int(len(y))}
    model = IsotonicRegression(y_min=EPS, y_max=1 - EPS, out_of_bounds="clip")
    model.fit(s, y, sample_weight=weights)
    return {"method": "isotonic", "x": [float(v) for v in model.X_thresholds_],
            "y": [float(v) for v in model.y_thresholds_], "n_fit": int(len(y))}


def apply(calibration: Mapping[str, Any] | None, scores: Sequence[float]) -> np.ndarray:
    """Calibrated P(AI) of raw scores (unchanged without a calibration)."""
    s = np.asarray(scores, dtype=np.float64)
    if not calibration:
        return s
    if calibration["method"] == "platt":
        z = calibration["slope"] * llr(s) + calibration["offset"]
        return 1.0 / (1.0 + np.exp(-z))
    if calibration["method"] == "isotonic":
        return np.interp(s, np.asarray(calibration["x"]), np.asarray(calibration["y"]))
    raise DeepfakeDetectError(f"unknown calibration method {calibration['method']!r} in the "
                              "model bundle")


def raw_threshold(calibration: Mapping[str, Any] | None, threshold: float) -> float:
    """The raw score at which the calibrated score reaches ``threshold`` (the maps are
    non-decreasing, so ``apply(c, s) >= threshold`` is ``s >= raw_threshold(c, threshold)``):
    for what still reads raw scores (robustness curves, explanations)."""
    if not calibration:
        return float(threshold)
    if calibration["method"] == "platt":
        slope, offset = calibration["slope"], calibration["offset"]
        if slope <= 0:
            return 0.0 if 1 / (1 + np.exp(-offset)) >= threshold else 1.0
        z = (float(llr([threshold])[0]) - offset) / slope
        return float(np.clip(1.0 / (1.0 + np.exp(-z)), 0.0, 1.0))
    x, y = np.asarray(calibration["x"]), np.asarray(calibration["y"])
    above = np.flatnonzero(y >= threshold)
    if not len(above):
        return 1.0
    k = int(above[0])
    if k == 0:
        return 0.0
    share = (threshold - y[k - 1]) / (y[k] - y[k - 1])
    return float(x[k - 1] + share * (x[k] - x[k - 1]))


def describe(calibration: Mapping[str, Any] | None) -> str:
    if not calibration:
        return "none"
    return f"{calibration['method']} (fitted on {calibration.get('n_fit', '?')} validation rows)"
