"""The shortcut probe beside every verdict: within each class, how well the detector's score
tells files apart by their recording chain, which says nothing about who made the music:

- ``rate``: native sample rate at or below the features' rate (what a generator at 16–32 kHz
  writes) against above it (a 44.1 kHz original); the resampler's band edge can keep the
  native rate visible after resampling;
- ``codec``: a lossy codec (MP3, Vorbis, Opus, ...) against lossless or PCM.

Each is an AUROC (the chance that a file on the first side scores above one on the other, in
the same class) with its group-bootstrap interval; 0.5 is a detector blind to the chain.
Logged as ``test/<d>/[file/]probe/<attribute>/<human|ai>/auroc`` (with ``_ci_low``,
``_ci_high``, ``n_files`` and ``n_groups``); only for files whose headers can be read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from deepfake_detect import LABEL_NAMES
from deepfake_detect.data import audio
from deepfake_detect.evaluation import stats

ATTRIBUTES = ("rate", "codec")
LOSSY = ("MPEG_LAYER_III", "MPEG_LAYER_II", "MPEG_LAYER_I", "VORBIS", "OPUS", "GSM610",
         "G721_32", "G723_24", "G723_40", "IMA_ADPCM", "MS_ADPCM", "VOX_ADPCM", "ALAW", "ULAW")
MIN_PER_SIDE = 2  # files on each side of an attribute within a class


def chain_sides(paths: Sequence[str], features_rate: int) -> dict[str, np.ndarray] | None:
    """Per file, 1 / 0 for each attribute (see the module doc); None when a header cannot be
    read (a rendered clip, a file gone)."""
    described: dict[str, dict[str, Any]] = {}
    for path in paths:
        if path not in described:
            try:
                described[path] = audio.describe_file(path)
            except (audio.AudioError, OSError):
                return None
    rate = [int(described[p]["sample_rate"] <= features_rate) for p in paths]
    codec = [int(described[p]["subtype"] in LOSSY) for p in paths]
    return {"rate": np.asarray(rate), "codec": np.asarray(codec)}


def probe(scores: Sequence[float], labels: Sequence[int], groups: Sequence[str],
          paths: Sequence[str], features_rate: int, n_boot: int = stats.N_BOOT,
          level: float = stats.LEVEL, seed: int = 0) -> dict[str, float]:
    """The probe's values (keys ``<attribute>/<class>/auroc``, ...) for the attributes and
    classes where both sides have at least ``MIN_PER_SIDE`` files."""
    if not paths or not all(paths):
        return {}
    sides = chain_sides(list(paths), features_rate)
    if sides is None:
        return {}
    s, y, g = np.asarray(scores, dtype=np.float64), np.asarray(labels), np.asarray(groups)
    out: dict[str, float] = {}
    for attribute, side in sides.items():
        for label, name in LABEL_NAMES.items():
            mine = y == label
            counts = np.bincount(side[mine], minlength=2)
            if counts.min() < MIN_PER_SIDE:
                continue
            found = stats.intervals(s[mine], side[mine], list(g[mine]), n_boot=n_boot,
                                    level=level, seed=seed, metrics=("auroc",))["auroc"]
            key = f"{attribute}/{name}"
            out.update({f"{key}/auroc": found.value, f"{key}/auroc_ci_low": found.low,
                        f"{key}/auroc_ci_high": found.high, f"{key}/n_files": float(mine.sum()),
                        f"{key}/n_groups": float(found.n_groups)})
    return out
