"""Windows to files: the file-level view of a test set of audio files has one score per file,
aggregated from its windows' (clips') scores; what a user of the model
gets from ``deepfake-detect-predict``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

AGGREGATES = ("mean", "max", "median")
WINDOW_MARK = "#w"  # multi-window clip ids are <file id>#w<k> (data/windows.py)


def file_key(row: dict[str, Any]) -> str:
    """The file a cached row (clip) comes from: its path, else its clip id without the
    window suffix."""
    return str(row.get("path") or str(row["clip_id"]).split(WINDOW_MARK)[0])


def file_level(rows: Sequence[dict[str, Any]]) -> bool:
    """Whether ``rows`` have a file level: they come from audio files (a ``path`` each; with
    one window per file, the two levels agree) or some file gives more than one of them."""
    if rows and all(row.get("path") for row in rows):
        return True
    keys = [file_key(row) for row in rows]
    return len(set(keys)) < len(keys)


def by_file(rows: Sequence[dict[str, Any]], scores: Sequence[float], how: str = "mean"
            ) -> tuple[list[dict[str, Any]], np.ndarray]:
    """One row per file (in order of first appearance: ``file``, ``group``, ``generator``,
    ``label``, ``n_windows``) and its score, ``how`` (mean, max, median) of its windows'."""
    reduce = {"mean": np.mean, "max": np.max, "median": np.median}[how]
    members: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        members.setdefault(file_key(row), []).append(index)
    values = np.asarray(scores, dtype=np.float64)
    out, file_scores = [], []
    for key, indices in members.items():
        first = rows[indices[0]]
        out.append({"file": key, "group": first["group"], "generator": first["generator"],
                    "label": int(first["label"]), "n_windows": len(indices)})
        file_scores.append(float(reduce(values[indices])))
    return out, np.asarray(file_scores)
