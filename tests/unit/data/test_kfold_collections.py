"""Grouped k-fold on a few collections of real recordings: every fold's test, val and train
hold both classes where a dealing can give them, the dealings that already did are kept, and
otherwise the plan refuses before any work, naming the keys, the groups per class and what
works."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from deepfake_detect.data.clips import Clip
from deepfake_detect.data.splits import SplitConfig, split_clips
from deepfake_detect.errors import ConfigError, NothingToHoldOut
from deepfake_detect.training.plan import plan
from tests.helpers.audio_data import write_good
from tests.unit.data.test_cv_splits import caption_groups, folder_like

# collection -> (human files, AI files): like the development set's demo pages and
# libraries (11 collections; 4 hold AI files, 3 of them beside human ones).
COLLECTIONS = {"pageA": (3, 4), "pageB": (2, 3), "pageC": (3, 3), "pageD": (0, 4),
               "lib1": (2, 0), "lib2": (1, 0), "lib3": (2, 0), "lib4": (1, 0),
               "lib5": (2, 0), "lib6": (1, 0), "lib7": (1, 0)}
GROUP_PATTERN = r"^[^/]+/(.+?)__"


def collections(pages: dict[str, tuple[int, int]] = COLLECTIONS) -> list[Clip]:
    clips = []
    for page, (humans, fakes) in pages.items():
        clips += [Clip(f"human/{page}__{i}", 0, page, "human") for i in range(humans)]
        clips += [Clip(f"ai/{page}__{i}", 1, page, "unknown") for i in range(fakes)]
    return clips


def classes_per_split(clips: list[Clip], cfg: SplitConfig) -> list[dict[str, Counter]]:
    return [{name: Counter(c.label for c in part) for name, part in split_clips(
        clips, SplitConfig(**{**cfg.__dict__, "fold": k})).items()} for k in range(cfg.folds)]


def fingerprint(clips: list[Clip], folds: int, seed: int) -> str:
    """Which groups every split of every fold holds, hashed."""
    found = [{name: sorted({c.group for c in part}) for name, part in split_clips(
        clips, SplitConfig(folds=folds, fold=k, seed=seed)).items()} for k in range(folds)]
    return hashlib.sha256(json.dumps(found).encode()).hexdigest()[:16]


def test_dealings_that_held_both_classes_are_unchanged() -> None:
    # Fingerprints of the dealing before validation sets short of a class were completed.
    assert fingerprint(folder_like(), 5, 3) == "895a62e3c2fdfc7d"
    assert fingerprint(caption_groups(), 3, 0) == "f7ec7b63a0a543d2"


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_four_folds_of_eleven_collections_hold_both_classes_in_every_split(seed: int) -> None:
    clips = collections()
    cfg = SplitConfig(folds=4, seed=seed)  # val 0.15: a share that alone takes no AI group
    for k, counts in enumerate(classes_per_split(clips, cfg)):
        for name, held in counts.items():
            assert held[0] >= 1 and held[1] >= 1, (seed, k, name, held)
    tests = [{c.group for c in split_clips(clips, SplitConfig(folds=4, fold=k, seed=seed))[
        "test"]} for k in range(4)]
    assert sorted(g for t in tests for g in t) == sorted(COLLECTIONS)  # each tested once
    assert classes_per_split(clips, cfg) == classes_per_split(clips, cfg)  # deterministic


def test_groups_move_between_folds_to_reach_min_per_class() -> None:
    pages = {"a": (3, 2), "b": (2, 1), "c": (1, 3), "d": (3, 0), "e": (0, 3)}
    cfg = SplitConfig(folds=3, seed=0, val=0.3, min_per_class=2)
    plain = SplitConfig(folds=3, seed=0, val=0.3)  # min 1: the round-robin dealing as it was
    assert any(part[1] < 2 for counts in classes_per_split(collections(pages), plain)
               for part in [counts["test"]])
    for counts in classes_per_split(collections(pages), cfg):
        assert counts["test"][0] >= 2 and counts["test"][1] >= 2


def write_collections(root: Path, pages: dict[str, tuple[int, int]] = COLLECTIONS) -> None:
    index = 0
    for page, (humans, fakes) in pages.items():
        for kind, count in (("human", humans), ("ai", fakes)):
            for i in range(count):
                write_good(root / kind / f"{page}__{i}", index, ".wav")
                index += 1


def folder_cfg(make_cfg, root: Path, *overrides: str):
    return make_cfg("experiment=kfold", "data=folder", f"data.source.root={root}",
                    "data.source.n_clips=null", f"data.source.group_pattern='{GROUP_PATTERN}'",
                    *overrides)


def test_the_plan_refuses_folds_that_cannot_hold_both_classes(make_cfg, tmp_path: Path) -> None:
    write_collections(tmp_path / "data")
    with pytest.raises(ConfigError) as err:  # fold 0 itself would do: every fold is checked
        plan(folder_cfg(make_cfg, tmp_path / "data", "data.split.fold=0"))
    text = str(err.value)
    assert err.value.key == "data.split.folds"
    assert "fold 1: the test split would hold 0 AI-generated clip(s)" in text
    assert "11 group(s): 10 hold human clips and 4 AI-generated clips (3 hold both)" in text
    assert "What works: data.split.folds=4." in text
    assert not (tmp_path / "out" / "runs").exists()
    planned = plan(folder_cfg(make_cfg, tmp_path / "data", "data.split.folds=4",
                              "data.split.fold=3"))
    assert (planned.tags["folds"], planned.tags["fold"]) == ("4", "3")
    with pytest.raises(NothingToHoldOut, match=r"data\.split\.fold.*must be in 0\.\.3"):
        plan(folder_cfg(make_cfg, tmp_path / "data", "data.split.folds=4",
                        "data.split.fold=4"))  # the 5th job of kfold's sweep: nothing to do


def test_no_number_of_folds_says_what_to_change(make_cfg, tmp_path: Path) -> None:
    write_collections(tmp_path / "data", {"pageA": (2, 2), "lib1": (2, 0), "lib2": (1, 0)})
    with pytest.raises(ConfigError, match="No number of folds works with these groups"):
        plan(folder_cfg(make_cfg, tmp_path / "data", "data.split.folds=2"))
