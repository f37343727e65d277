"""Train / val / test splits: grouped (a group never straddles splits), stratified, seeded.

Three ways to choose the test set: a random share of groups (``data.split.test``), one fold
of a grouped k-fold cross-validation (``data.split.folds`` / ``fold``), or one generator held
out (``data.split.holdout_generator``: leave-one-generator-out).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from deepfake_detect.config import require
from deepfake_detect.data.clips import Clip
from deepfake_detect.errors import DataError, NothingToHoldOut

SPLITS = ("train", "val", "test")
CLASS_NAMES = {0: "human", 1: "AI-generated"}


@dataclass(frozen=True)
class SplitConfig:
    """The ``data.split`` node: fractions of groups held out, and the split seed."""

    val: float = 0.15
    test: float = 0.15
    seed: int = 0
    use_source_split: bool = True
    folds: int = 0  # >= 2: grouped k-fold cross-validation, test = fold ``fold``
    fold: int = 0
    holdout_generator: str | int | None = None  # a generator's name, or its index (sorted)
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
        require(isinstance(self.folds, int) and not isinstance(self.folds, bool)
                and (self.folds == 0 or self.folds >= 2), "folds",
                f"must be 0 (no cross-validation) or a number of folds >= 2, got {self.folds!r}")
        require(isinstance(self.fold, int) and 0 <= self.fold < max(self.folds, 1), "fold",
                f"must be in 0..{max(self.folds, 1) - 1} (data.split.folds={self.folds}), "
                f"got {self.fold!r}")
        require(not (self.folds and self.holdout_generator is not None), "holdout_generator",
                "cannot be combined with data.split.folds (choose one way to hold out)")


def split_clips(clips: list[Clip], cfg: SplitConfig) -> dict[str, list[Clip]]:
    """Assign every clip to train/val/test.

    Clips that carry a ``split`` from their source keep it (when ``use_source_split``); the
    rest are split by group, stratified by each group's label set, with ``cfg.seed``.
    """
    if cfg.holdout_generator is not None:
        out = holdout_split(clips, cfg)
        check_no_leakage(out)
        return out
    if cfg.folds:
        out = fold_split(clips, cfg)
        check_no_leakage(out)
        return out
    out = {name: [] for name in SPLITS}
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


def label_strata(clips: list[Clip]) -> dict[tuple[int, ...], list[str]]:
    """The clips' groups (sorted) by the set of labels each group holds."""
    labels_of: dict[str, set[int]] = defaultdict(set)
    for clip in clips:
        labels_of[clip.group].add(clip.label)
    strata: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for group in sorted(labels_of):
        strata[tuple(sorted(labels_of[group]))].append(group)
    return strata


def _assign_groups(clips: list[Clip], cfg: SplitConfig) -> dict[str, str]:
    strata = label_strata(clips)
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


def fold_of(clips: list[Clip], folds: int, seed: int) -> dict[str, int]:
    """Each group's fold: groups shuffled (seeded) within strata of the same labels and
    generators, then dealt round-robin, so every fold gets its share of each stratum."""
    kinds: dict[str, set[tuple[int, str]]] = defaultdict(set)
    for clip in clips:
        kinds[clip.group].add((clip.label, clip.generator))
    strata: dict[tuple[tuple[int, str], ...], list[str]] = defaultdict(list)
    for group in sorted(kinds):
        strata[tuple(sorted(kinds[group]))].append(group)
    rng = np.random.default_rng(seed)
    assignment, dealt = {}, 0
    for key in sorted(strata):
        groups = strata[key]
        for index in rng.permutation(len(groups)):
            assignment[groups[index]] = dealt % folds
            dealt += 1
    return assignment


def fold_split(clips: list[Clip], cfg: SplitConfig) -> dict[str, list[Clip]]:
    """Grouped k-fold: test = the groups of fold ``cfg.fold``; val = a ``cfg.val`` share of
    the other groups (stratified); train = the rest. A source's own splits are not used."""
    folds = fold_of(clips, cfg.folds, cfg.seed)
    test = [c for c in clips if folds[c.group] == cfg.fold]
    rest = [c for c in clips if folds[c.group] != cfg.fold]
    return {"test": test, **train_val(rest, cfg.val, cfg.seed)}


def train_val(clips: list[Clip], val: float, seed: int) -> dict[str, list[Clip]]:
    """Split ``clips`` into train and a ``val`` share of their groups (stratified by label
    set, seeded)."""
    chosen = share_of_groups(clips, val, seed)
    return {"train": [c for c in clips if c.group not in chosen],
            "val": [c for c in clips if c.group in chosen]}


def share_of_groups(clips: list[Clip], fraction: float, seed: int) -> set[str]:
    """A ``fraction`` of the clips' groups, taken in each stratum of groups with the same
    label set (seeded)."""
    strata = label_strata(clips)
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for key in sorted(strata):
        groups = strata[key]
        picked = rng.permutation(len(groups))[:_count(len(groups), fraction)]
        chosen |= {groups[i] for i in picked}
    return chosen


def generators_of(clips: list[Clip]) -> list[str]:
    """The AI generators among ``clips``, sorted (what ``holdout_generator`` indexes)."""
    return sorted({c.generator for c in clips if c.label == 1})


def held_out_name(clips: list[Clip], value: str | int) -> str:
    """The generator ``data.split.holdout_generator`` names (a name, or an index)."""
    names = generators_of(clips)
    listing = ", ".join(f"{i}: {n}" for i, n in enumerate(names)) or "none"
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < len(names):
            raise NothingToHoldOut("data.split.holdout_generator", f"index {value} is out of "
                                   f"range; the source's generators are {listing}")
        return names[value]
    require(str(value) in names, "data.split.holdout_generator",
            f"no generator {value!r}; the source's generators are {listing}")
    return str(value)


def holdout_split(clips: list[Clip], cfg: SplitConfig) -> dict[str, list[Clip]]:
    """Leave one generator out: the test set holds that generator's clips and human clips of
    a matching share of groups; train and val never see it.

    Groups whose AI clips all come from the held-out generator go to test. Groups mixing it
    with other generators (one caption rendered by every generator) go to test in a
    ``cfg.test`` share, keeping only its clips and the human ones; in the others its clips are
    dropped. Human-only groups join the test set in the share that the held-out groups are of
    all AI-bearing groups. The rest is split into train and val by group.
    """
    name = held_out_name(clips, cfg.holdout_generator)
    members: dict[str, list[Clip]] = defaultdict(list)
    for clip in clips:
        members[clip.group].append(clip)
    ai_gens = {g: {c.generator for c in m if c.label == 1} for g, m in members.items()}
    pure = {g for g, gens in ai_gens.items() if gens == {name}}
    mixed = [c for g in members if name in ai_gens[g] and g not in pure for c in members[g]]
    mixed_test = share_of_groups(mixed, cfg.test, cfg.seed) if mixed else set()
    test_groups = pure | mixed_test
    bearing = sum(1 for gens in ai_gens.values() if gens)
    human_only = [c for g, m in members.items() if not ai_gens[g] for c in m]
    test_groups |= share_of_groups(human_only, len(test_groups) / max(bearing, 1), cfg.seed)
    test = [c for g in sorted(test_groups) for c in members[g]
            if c.label == 0 or c.generator == name]
    rest = [c for g in sorted(members) if g not in test_groups for c in members[g]
            if not (c.label == 1 and c.generator == name)]
    return {"test": test, **train_val(rest, cfg.val, cfg.seed)}


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
