"""Grouped k-fold cross-validation and leave-one-generator-out: the folds partition the groups,
the held-out generator never reaches train or val, and bad settings name the key."""

from __future__ import annotations

from collections import Counter

import pytest

from deepfake_detect.data.clips import Clip
from deepfake_detect.data.splits import SplitConfig, split_clips
from deepfake_detect.errors import ConfigError

GENERATORS = ["gen_a", "gen_b", "gen_c"]


def folder_like(n_songs: int = 30) -> list[Clip]:
    """Each file its own group with three windows; a third human, the rest spread over
    three generators."""
    clips = []
    for song in range(n_songs):
        label = 0 if song % 3 == 0 else 1
        generator = "human" if label == 0 else GENERATORS[(song // 3) % len(GENERATORS)]
        clips += [Clip(f"s{song}#w{w}", label, f"s{song}", generator, f"/x/s{song}.wav")
                  for w in range(3)]
    return clips


def caption_groups(n: int = 12) -> list[Clip]:
    """FakeMusicCaps-like: each caption (group) has a human clip and one clip per generator."""
    return [Clip(f"{g}/{k}", int(g != "human"), f"cap{k}", g, None)
            for k in range(n) for g in ["human", *GENERATORS]]


def test_folds_partition_the_groups_and_cover_each_once() -> None:
    clips = folder_like()
    tests = [split_clips(clips, SplitConfig(folds=5, fold=k, seed=3))["test"] for k in range(5)]
    groups = [{c.group for c in t} for t in tests]
    assert all(groups[i].isdisjoint(groups[j]) for i in range(5) for j in range(i + 1, 5))
    assert set().union(*groups) == {c.group for c in clips}
    assert sorted(len(g) for g in groups) == [6] * 5  # 30 songs over 5 folds
    for k, test in enumerate(tests):  # stratified: each fold holds both classes, each generator
        assert {c.label for c in test} == {0, 1}
        assert {c.generator for c in test} >= set(GENERATORS), k
        split = split_clips(clips, SplitConfig(folds=5, fold=k, seed=3))
        owners = Counter(g for part in split.values() for g in {c.group for c in part})
        assert max(owners.values()) == 1  # no group straddles train, val and test
        assert sum(len(part) for part in split.values()) == len(clips)


def test_the_same_seed_gives_the_same_folds() -> None:
    a = split_clips(folder_like(), SplitConfig(folds=3, fold=1, seed=7))
    b = split_clips(folder_like(), SplitConfig(folds=3, fold=1, seed=7))
    c = split_clips(folder_like(), SplitConfig(folds=3, fold=1, seed=8))
    assert a == b and a["test"] != c["test"]


@pytest.mark.parametrize("holdout", ["gen_b", 1])  # by name, or by index in sorted order
def test_leave_one_generator_out_keeps_it_out_of_training(holdout) -> None:
    split = split_clips(folder_like(), SplitConfig(holdout_generator=holdout, seed=0))
    assert {c.generator for c in split["test"] if c.label == 1} == {"gen_b"}
    assert {c.label for c in split["test"]} == {0, 1}
    for part in ("train", "val"):
        assert "gen_b" not in {c.generator for c in split[part]}
    assert {c.generator for c in split["train"]} >= {"human", "gen_a", "gen_c"}
    test_songs = {c.group for c in split["test"] if c.label == 1}
    assert test_songs == {f"s{i}" for i in range(30) if i % 3 and GENERATORS[(i // 3) % 3]
                          == "gen_b"}


def test_leave_one_generator_out_with_captions_shared_by_every_generator() -> None:
    split = split_clips(caption_groups(), SplitConfig(holdout_generator="gen_a", test=0.25))
    assert {c.generator for c in split["test"]} == {"human", "gen_a"}
    assert all(c.generator != "gen_a" for part in ("train", "val") for c in split[part])
    test_captions = {c.group for c in split["test"]}
    assert len(test_captions) == 3  # a quarter of the 12 captions
    assert test_captions.isdisjoint({c.group for p in ("train", "val") for c in split[p]})


@pytest.mark.parametrize("node,key", [({"folds": 1}, "data.split.folds"),
                                       ({"folds": 5, "fold": 5}, "data.split.fold"),
                                       ({"folds": 3, "holdout_generator": "x"},
                                        "data.split.holdout_generator")])
def test_bad_settings_name_the_key(node: dict, key: str) -> None:
    from deepfake_detect.config import build

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build(SplitConfig, node, "data.split")


def test_an_unknown_generator_lists_the_ones_there_are() -> None:
    with pytest.raises(ConfigError, match="0: gen_a, 1: gen_b, 2: gen_c"):  # NothingToHoldOut
        split_clips(folder_like(), SplitConfig(holdout_generator=7))
