"""Train / val / test splits: grouped (a group never straddles splits), stratified, seeded.

Three ways to choose the test set: a random share of groups (``data.split.test``), one fold
of a grouped k-fold cross-validation (``data.split.folds`` / ``fold``), or one generator held
out (``data.split.holdout_generator``: leave-one-generator-out).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, replace

import numpy as np

from deepfake_detect.config import require
from deepfake_detect.data.clips import Clip
from deepfake_detect.errors import ConfigError, DataError, GeneratorSkipped, NothingToHoldOut

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
CLASS_NAMES = {0: "human", 1: "AI-generated"}
# Validation shares tried when the folds of a cross-validation leave a split without a class.
VAL_TRIES = (0.1, 0.2, 0.3)


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
        in_range = isinstance(self.fold, int) and 0 <= self.fold < max(self.folds, 1)
        if not in_range and self.folds and isinstance(self.fold, int) and self.fold > 0:
            raise NothingToHoldOut("fold", f"must be in 0..{self.folds - 1} "
                                   f"(data.split.folds={self.folds}), got {self.fold}")
        require(in_range, "fold", f"must be in 0..{max(self.folds, 1) - 1} "
                f"(data.split.folds={self.folds}), got {self.fold!r}")
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


def fold_of(clips: list[Clip], folds: int, seed: int, minimum: int = 1) -> dict[str, int]:
    """Each group's fold: groups shuffled (seeded) within strata of the same labels and
    generators, then dealt round-robin, so every fold gets its share of each stratum.

    Where that leaves a fold's test set with fewer than ``minimum`` clips of a class (a few
    collections of real recordings), groups holding the class move there from folds that keep
    enough, each move swapping a group back so the folds stay the same size; a dealing in
    which every fold holds both classes is kept as it is. Whether every fold then holds both
    is checked by :func:`fold_problems`."""
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
    return _both_in_each_fold(clips, assignment, folds, minimum)


def _both_in_each_fold(clips: list[Clip], assignment: dict[str, int], folds: int,
                       minimum: int) -> dict[str, int]:
    """``assignment`` with groups moved until every fold holds ``minimum`` clips of each class
    where moves can do it (each move lowers the folds' total shortfall, none raises it)."""
    sizes: dict[str, Counter] = defaultdict(Counter)
    for clip in clips:
        sizes[clip.group][clip.label] += 1
    assignment = dict(assignment)
    while True:
        held = [Counter() for _ in range(folds)]
        for group, fold in assignment.items():
            held[fold] += sizes[group]
        short = [(k, label) for k in range(folds) for label in CLASS_NAMES
                 if held[k][label] < minimum]
        moves = (_move_into(k, label, assignment, sizes, held, minimum) for k, label in short)
        move = next((m for m in moves if m is not None), None)
        if move is None:
            return assignment
        for group, fold in move:
            assignment[group] = fold


def _keeps(held: Counter, group: Counter, minimum: int) -> bool:
    """Whether a fold holding ``held`` keeps ``minimum`` clips of each class it gives up
    clips of when ``group`` leaves it."""
    return all(group[label] == 0 or held[label] - group[label] >= minimum
               for label in CLASS_NAMES)


def _move_into(fold: int, label: int, assignment: dict[str, int], sizes: dict[str, Counter],
               held: list[Counter], minimum: int) -> list[tuple[str, int]] | None:
    """The move that gives ``fold`` a group holding ``label`` (from another fold that keeps
    enough of both classes; a group without the other class first, then the fold with the
    most groups), and a group of ``fold`` swapped back when one can leave; None: no move."""
    members = Counter(assignment.values())
    donors = [(sizes[g][1 - label] > 0, -members[k], g) for g, k in assignment.items()
              if k != fold and sizes[g][label] > 0 and _keeps(held[k], sizes[g], minimum)]
    if not donors:
        return None
    group = min(donors)[2]
    source = assignment[group]
    after = held[fold] + sizes[group]
    backs = [(abs(sum(sizes[h].values()) - sum(sizes[group].values())), h)
             for h, k in assignment.items() if k == fold and _keeps(after, sizes[h], minimum)]
    back = [(min(backs)[1], source)] if backs else []
    return [(group, fold), *back]


def fold_split(clips: list[Clip], cfg: SplitConfig) -> dict[str, list[Clip]]:
    """Grouped k-fold: test = the groups of fold ``cfg.fold``; val = a ``cfg.val`` share of
    the other groups (stratified; a class it lacks gets groups from train while train keeps
    another); train = the rest. A source's own splits are not used."""
    folds = fold_of(clips, cfg.folds, cfg.seed, cfg.min_per_class)
    test = [c for c in clips if folds[c.group] == cfg.fold]
    rest = [c for c in clips if folds[c.group] != cfg.fold]
    return {"test": test, **_both_in_val(train_val(rest, cfg.val, cfg.seed), cfg.seed,
                                         cfg.min_per_class)}


def fold_problems(clips: list[Clip], cfg: SplitConfig) -> list[str]:
    """What every fold of the cross-validation (not only ``cfg.fold``) lacks: ``fold 1: the
    test split would hold 0 AI-generated clip(s)``, one entry per fold and split."""
    problems = []
    for fold in range(cfg.folds):
        splits = fold_split(clips, replace(cfg, fold=fold))
        for split in SPLITS:
            counts = Counter(c.label for c in splits[split])
            short = [f"{counts[label]} {what}" for label, what in CLASS_NAMES.items()
                     if counts[label] < cfg.min_per_class]
            if short:
                problems.append(f"fold {fold}: the {split} split would hold "
                                f"{' and '.join(short)} clip(s)")
    return problems


def check_folds(clips: list[Clip], cfg: SplitConfig) -> None:
    """ConfigError, before any work, when some fold of the cross-validation would leave a
    split (test, val or train) with fewer than ``data.split.min_per_class`` clips of a class:
    it names the folds, the groups per class and a setting that works where one does."""
    problems = fold_problems(clips, cfg)
    if not problems:
        return
    labels: dict[str, set[int]] = defaultdict(set)
    for clip in clips:
        labels[clip.group].add(clip.label)
    bearing = {label: sum(label in held for held in labels.values()) for label in CLASS_NAMES}
    both = sum(len(held) == 2 for held in labels.values())
    key = "data.split.folds" if any("test split" in p for p in problems) else "data.split.val"
    shown = "; ".join(problems[:6]) + ("; ..." if len(problems) > 6 else "")
    raise ConfigError(key, (
        f"{cfg.folds} folds leave a split without a class ({shown}; "
        f"data.split.min_per_class={cfg.min_per_class}). The source has {len(labels)} "
        f"group(s): {bearing[0]} hold human clips and {bearing[1]} AI-generated clips "
        f"({both} hold both); each fold's test split needs groups of both classes and the "
        f"other folds one more of each for val and train. {_what_works(clips, cfg)}"))


def _what_works(clips: list[Clip], cfg: SplitConfig) -> str:
    """The settings near ``cfg`` whose folds all hold both classes, said as overrides: another
    validation share, fewer folds, or both."""
    def works(folds: int, val: float) -> bool:
        return not fold_problems(clips, replace(cfg, folds=folds, fold=0, val=val))

    vals = [v for v in VAL_TRIES if v != cfg.val and v + cfg.test < 1]
    fewer = range(cfg.folds - 1, 1, -1)
    found = [f"data.split.val={v}" for v in vals if works(cfg.folds, v)][:1]
    found += [f"data.split.folds={k}" for k in fewer if works(k, cfg.val)][:1]
    if not found:
        found = [f"data.split.folds={k} data.split.val={v}" for k in fewer for v in vals
                 if works(k, v)][:1]
    if not found:
        return ("No number of folds works with these groups: add recordings of the rarer "
                "class in more groups, or group more finely (data.source.group_pattern).")
    return "What works: " + ", or ".join(found) + "."


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
    """Leave one generator out: the test set holds that generator's clips with their groups;
    train and val never see it.

    Every group holding a clip of the held-out generator goes to test with its human clips;
    the other generators' clips in those groups (a demo page showing several generators side
    by side) are left out of every split and counted in a line. When that leaves training
    without a class (one caption rendered by every generator, as in FakeMusicCaps), only a
    ``cfg.test`` share of the groups it shares with other generators goes to test, and in
    the others its clips are dropped. Human-only groups join the test set in the share that
    the held-out groups are of all AI-bearing groups; the rest is split into train and val
    by group. A generator that cannot be held out either way (every human file shares a
    group with it, say) raises :class:`GeneratorSkipped` naming it and why: a sweep job
    records the skip and the sweep goes on.
    """
    name = held_out_name(clips, cfg.holdout_generator)
    members: dict[str, list[Clip]] = defaultdict(list)
    for clip in clips:
        members[clip.group].append(clip)
    ai_gens = {g: {c.generator for c in m if c.label == 1} for g, m in members.items()}
    pure = {g for g, gens in ai_gens.items() if gens == {name}}
    mixed = {g for g, gens in ai_gens.items() if name in gens and len(gens) > 1}
    try:
        return _held_out(name, members, ai_gens, pure | mixed, cfg)
    except GeneratorSkipped as whole:
        if len(mixed) < 2:
            raise
        share = share_of_groups([c for g in sorted(mixed) for c in members[g]], cfg.test,
                                cfg.seed) or {min(mixed)}
        try:
            out = _held_out(name, members, ai_gens, pure | share, cfg)
        except GeneratorSkipped:
            raise whole from None
        log.info("holding out %s: %d of the %d group(s) it shares with other generators are "
                 "in test (data.split.test); in the others its clips are dropped", name,
                 len(share), len(mixed))
        return out


def _held_out(name: str, members: dict[str, list[Clip]], ai_gens: dict[str, set[str]],
              held: set[str], cfg: SplitConfig) -> dict[str, list[Clip]]:
    """The splits with the groups ``held`` (and a matching share of human-only groups) in
    test; GeneratorSkipped when a split lacks a class."""
    bearing = sum(1 for gens in ai_gens.values() if gens)
    human_only = sorted(g for g in members if not ai_gens[g])
    test_groups = held | _human_share(human_only, len(held) / max(bearing, 1), cfg.seed,
                                      any(c.label == 0 for g in held for c in members[g]))
    test = [c for g in sorted(test_groups) for c in members[g]
            if c.label == 0 or c.generator == name]
    rest = [c for g in sorted(members) if g not in test_groups for c in members[g]
            if not (c.label == 1 and c.generator == name)]
    out = {"test": test, **_both_in_val(train_val(rest, cfg.val, cfg.seed), cfg.seed,
                                        cfg.min_per_class)}
    _check_holdout(name, out, cfg.min_per_class)
    left_out = Counter(c.generator for g in sorted(held) for c in members[g]
                       if c.label == 1 and c.generator != name)
    if left_out:
        log.info("holding out %s: %d clip(s) of other generators share its %d test group(s) "
                 "and are left out of every split (%s)", name, sum(left_out.values()),
                 len(held), ", ".join(f"{g}: {n}" for g, n in sorted(left_out.items())))
    return out


def _human_share(groups: list[str], fraction: float, seed: int, have_human: bool) -> set[str]:
    """A ``fraction`` of the human-only ``groups`` (seeded); at least one when the test set
    would otherwise hold no human clip."""
    count = int(round(len(groups) * fraction))
    if not have_human and groups:
        count = max(count, 1)
    order = np.random.default_rng(seed).permutation(len(groups))
    return {groups[i] for i in order[:count]}


def _both_in_val(splits: dict[str, list[Clip]], seed: int,
                 minimum: int = 1) -> dict[str, list[Clip]]:
    """A class with fewer than ``minimum`` clips in val (few groups left beside a held-out
    generator) gets groups of train holding it, one at a time, while train keeps another."""
    rng = np.random.default_rng(seed)
    for label in (0, 1):
        while sum(c.label == label for c in splits["val"]) < minimum:
            carriers = sorted({c.group for c in splits["train"] if c.label == label})
            if len(carriers) < 2:
                break
            moved = carriers[int(rng.integers(len(carriers)))]
            splits = {"train": [c for c in splits["train"] if c.group != moved],
                      "val": splits["val"] + [c for c in splits["train"] if c.group == moved]}
    return splits


def _check_holdout(name: str, splits: dict[str, list[Clip]], minimum: int) -> None:
    """GeneratorSkipped when a split of the held-out configuration lacks a class."""
    for split in SPLITS:
        counts = Counter(c.label for c in splits[split])
        for label, what in CLASS_NAMES.items():
            if counts[label] < minimum:
                why = (f"the {split} split would hold {counts[label]} {what} clip(s) "
                       f"(data.split.min_per_class={minimum})")
                if split != "test" and label == 0:
                    why += ": the human clips share groups with it or the test share"
                elif split == "val":
                    why += ": too few groups are left for a validation set"
                raise GeneratorSkipped(name, why)


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
