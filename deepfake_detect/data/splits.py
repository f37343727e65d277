"""Train / val / test splits: grouped (a group never straddles splits), stratified, seeded."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from deepfake_detect.config import require
from deepfake_detect.data.clips import Clip
from deepfake_detect.errors import DataError

SPLITS = ("train", "val", "test")
CLASS_NAMES = {0: "human", 1: "AI-generated"}


@dataclass(frozen=True)
class SplitConfig:
    """The ``data.split`` node: fractions of groups held out, and the split seed."""

    val: float = 0.15
    test: float = 0.15
    seed: int = 0
    use_source_split: bool = True
    # Fewer usable clips of a class in a split than this stops the run before training.
    min_per_class: int = 1

    def __post_init__(self) -> None:
        require(isinstance(self.min_per_class, int) and not isinstance(self.min_per_class, bool)
                and self.min_per_class >= 1, "min_per_class",
                f"must be an integer >= 1, got {self.min_per_class!r}")
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


def check_not_empty(splits: dict[str, list[Clip]], labels: tuple[int, ...] = (0, 1),
                    minimum: int = 1) -> None:
    """Raise DataError if a split is empty, or holds fewer than ``minimum`` clips of a class
    (checked on the listing, before any audio is decoded)."""
    for name in SPLITS:
        clips = splits.get(name, [])
        if not clips:
            raise DataError(f"the {name} split is empty: add clips or change data.split")
        counts = Counter(clip.label for clip in clips)
        for label in labels:
            if counts[label] < minimum:
                raise DataError(f"the {name} split has {counts[label]} {CLASS_NAMES[label]} "
                                f"(label {label}) clip(s) in the listing, fewer than "
                                f"data.split.min_per_class={minimum}: add clips of that "
                                "class or change data.split")


def check_decoded(name: str, usable: Counter, skipped: Counter, minimum: int,
                  listing: str) -> None:
    """Raise DataError if set ``name`` holds fewer than ``minimum`` usable clips of a class
    once its audio was decoded (unusable clips are skipped): the message names the class,
    the set, how many of its clips were skipped and where the list of reasons is."""
    for label, what in CLASS_NAMES.items():
        if usable[label] < minimum:
            total = usable[label] + skipped[label]
            raise DataError(
                f"the {name} set has {usable[label]} usable {what} (label {label}) clip(s) "
                f"after decoding, fewer than data.split.min_per_class={minimum}: "
                f"{skipped[label]} of its {total} {what} clip(s) were skipped as unusable "
                f"(reasons in {listing}); nothing was trained")
