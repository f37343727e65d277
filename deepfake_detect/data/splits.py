"""Train / val / test splits: grouped (a group never straddles splits), stratified, seeded."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from deepfake_detect.config import require
from deepfake_detect.data.clips import Clip
from deepfake_detect.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitConfig:
    """The ``data.split`` node: fractions of groups held out, and the split seed."""

    val: float = 0.15
    test: float = 0.15
    seed: int = 0
    use_source_split: bool = True

    def __post_init__(self) -> None:
        for key in ("val", "test"):
            value = getattr(self, key)
            require(0 < value < 1, key, f"must be a fraction in (0, 1), got {value}")
        require(self.val + self.test < 1, "test",
                f"val + test must leave clips for training, got {self.val} + {self.test}")


def split_clips(clips: list[Clip], cfg: SplitConfig) -> dict[str, list[Clip]]:
    """Assign every clip to train/val/test.

    Clips that carry a ``split`` from their source keep it (when ``use_source_split``); the
    rest are split by group, stratified by each group's label set, with ``cfg.seed``.
    """
    out: dict[str, list[Clip]] = {name: [] for name in SPLITS}
    free = []
    for clip in clips:
        if cfg.use_source_split and clip.split in SPLITS:
            out[clip.split].append(clip)
        else:
            free.append(clip)
    assignment = _assign_groups(free, cfg)
    for clip in free:
        out[assignment[clip.group]].append(clip)
    check_no_leakage(out)
    return out


def _assign_groups(clips: list[Clip], cfg: SplitConfig) -> dict[str, str]:
    labels_of: dict[str, set[int]] = defaultdict(set)
    for clip in clips:
        labels_of[clip.group].add(clip.label)
    strata: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for group in sorted(labels_of):
        strata[tuple(sorted(labels_of[group]))].append(group)
    rng = np.random.default_rng(cfg.seed)
    assignment: dict[str, str] = {}
    for key in sorted(strata):
        groups = strata[key]
        order = rng.permutation(len(groups))
        n_test = _count(len(groups), cfg.test)
        n_val = _count(len(groups) - n_test, cfg.val / (1 - cfg.test))
        for rank, index in enumerate(order):
            split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            assignment[groups[index]] = split
    return assignment


def _count(n: int, fraction: float) -> int:
    """Round ``n * fraction``, keeping at least one group held out when there are >= 3."""
    count = int(round(n * fraction))
    return max(count, 1) if n >= 3 else count


def check_no_leakage(splits: dict[str, list[Clip]]) -> None:
    """Raise DataError if any group appears in two splits."""
    owner: dict[str, str] = {}
    leaks: list[str] = []
    for name, clips in splits.items():
        for clip in clips:
            first = owner.setdefault(clip.group, name)
            if first != name:
                leaks.append(f"{clip.group!r} in {first} and {name}")
    if leaks:
        shown = "; ".join(sorted(set(leaks))[:5])
        raise DataError(f"split leakage: {len(set(leaks))} group(s) appear in two splits "
                        f"({shown}). Groups (songs, captions, compositions) must stay in "
                        "one split.")


def check_not_empty(splits: dict[str, list[Clip]], labels: tuple[int, ...] = (0, 1)) -> None:
    """Raise DataError if a split, or a class within the train/test split, is empty."""
    for name in SPLITS:
        clips = splits.get(name, [])
        if not clips:
            raise DataError(f"the {name} split is empty: add clips or change data.split")
        if name == "val":
            continue
        present = {clip.label for clip in clips}
        missing = [label for label in labels if label not in present]
        if missing:
            raise DataError(f"the {name} split has no clips of class {missing} "
                            "(0 = human, 1 = AI-generated)")
