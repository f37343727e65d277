"""Score-level fusion (``eval.fusion``): a logistic regression on the log-odds of every model's
score — the detector and the shortcut baselines (and any other detector scored on the same
clips) — fitted on the validation set only, classes weighted equally, and applied to each
test set; reported as one more model row (``fusion/test/<d>/...``). A fusion far above the
detector says the baselines know something the detector does not; a fusion no better says
they add nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from deepfake_detect.errors import DeepfakeDetectError
from deepfake_detect.evaluation.detection_costs import llr
from deepfake_detect.models.calibration import balanced_weights

ScoreTable = Mapping[str, Mapping[str, float]]  # model -> clip id -> score


def common_clips(tables: ScoreTable, order: list[str]) -> list[str]:
    """The clip ids of ``order`` that every model scored."""
    return [c for c in order if all(c in table for table in tables.values())]


def matrix(tables: ScoreTable, models: list[str], clips: list[str]) -> np.ndarray:
    return np.stack([llr([tables[m][c] for c in clips]) for m in models], axis=1)


def fit(tables: ScoreTable, labels: Mapping[str, int]) -> dict[str, Any]:
    """The fusion fitted on validation scores (``tables``) and labels, as plain numbers."""
    models = sorted(tables)
    clips = common_clips(tables, list(labels))
    y = np.asarray([labels[c] for c in clips], dtype=np.int64)
    if len(models) < 2 or len(y) == 0 or y.min() == y.max():
        raise DeepfakeDetectError("eval.fusion needs at least two models (eval.baselines) and "
                                  "validation clips of both classes scored by all of them")
    model = LogisticRegression(C=1.0, max_iter=2000)
    model.fit(matrix(tables, models, clips), y, sample_weight=balanced_weights(y))
    return {"models": models, "weights": [float(w) for w in model.coef_[0]],
            "offset": float(model.intercept_[0]), "n_fit": len(y)}


def apply(fusion: Mapping[str, Any], tables: ScoreTable, clips: list[str]) -> np.ndarray:
    """Fused P(AI) of ``clips`` (each scored by every model of the fusion)."""
    z = matrix(tables, list(fusion["models"]), clips) @ np.asarray(fusion["weights"]) \
        + fusion["offset"]
    return 1.0 / (1.0 + np.exp(-z))


def describe(fusion: Mapping[str, Any]) -> str:
    terms = ", ".join(f"{m} {w:+.2f}" for m, w in zip(fusion["models"], fusion["weights"],
                                                      strict=True))
    return f"logistic fusion on log-odds ({terms}; offset {fusion['offset']:+.2f})"
