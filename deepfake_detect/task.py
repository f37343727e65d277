"""The ``task`` setting: what the detector's classes are.

``binary``: human (0) vs AI-generated (1). ``attribution``: human plus one class per generator
seen in the training split (FakeMusicCaps' closed-set task); a clip whose generator the model
never trained on (an open-set test generator such as SunoCaps) gets target ``UNKNOWN``.
Either way the detector's score stays P(AI-generated) = 1 - P(human).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from deepfake_detect import LABEL_NAMES
from deepfake_detect.config import one_of

TASKS = ("binary", "attribution")
UNKNOWN = -1  # target of a clip outside the closed set (ignored by the loss and the metrics)


def check_task(task: Any) -> str:
    one_of(task, TASKS, "task")
    return str(task)


def class_names(task: str, train_rows: Iterable[dict[str, Any]]) -> tuple[str, ...]:
    """``("human", "ai")``, or ``("human", <generators of the training split, sorted>)``."""
    if task == "binary":
        return (LABEL_NAMES[0], LABEL_NAMES[1])
    generators = sorted({str(r["generator"]) for r in train_rows if int(r["label"]) == 1})
    return (LABEL_NAMES[0], *generators)


def targets(task: str, rows: Sequence[dict[str, Any]], classes: Sequence[str]) -> np.ndarray:
    """Class index per row: the label (binary), or the generator's class (attribution)."""
    if task == "binary":
        return np.array([int(r["label"]) for r in rows], dtype=np.int64)
    index = {name: i for i, name in enumerate(classes)}
    return np.array([0 if int(r["label"]) == 0 else index.get(str(r["generator"]), UNKNOWN)
                     for r in rows], dtype=np.int64)
