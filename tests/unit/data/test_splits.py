"""Grouped, stratified, seeded splits, and the leakage check that guards them."""

from __future__ import annotations

from collections import Counter

import pytest

from deepfake_detect.config import build
from deepfake_detect.data.clips import Clip
from deepfake_detect.data.splits import (
    SplitConfig,
    check_decoded,
    check_no_leakage,
    check_not_empty,
    split_clips,
)
from deepfake_detect.errors import ConfigError, DataError


def paired_clips(n_groups: int) -> list[Clip]:
    clips = []
    for g in range(n_groups):
        clips.append(Clip(f"g{g}-h", 0, f"g{g}", "human"))
        clips.append(Clip(f"g{g}-a", 1, f"g{g}", "gen"))
        if g % 3 == 0:  # uneven group sizes
            clips.append(Clip(f"g{g}-a2", 1, f"g{g}", "gen"))
    return clips


def test_groups_never_straddle_splits_and_classes_are_stratified() -> None:
    splits = split_clips(paired_clips(40), SplitConfig(val=0.2, test=0.2, seed=3))
    groups = [{c.group for c in clips} for clips in splits.values()]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert sum(len(g) for g in groups) == 40
    for clips in splits.values():
        assert {c.label for c in clips} == {0, 1}
    assert 6 <= len(groups[2]) <= 10


def test_split_is_seeded() -> None:
    clips = paired_clips(30)
    a = split_clips(clips, SplitConfig(seed=1))
    b = split_clips(clips, SplitConfig(seed=1))
    c = split_clips(clips, SplitConfig(seed=2))
    assert a == b
    assert a != c


def test_source_split_is_kept() -> None:
    clips = [Clip(f"c{i}", i % 2, f"g{i}", "x", split="test" if i < 4 else None)
             for i in range(20)]
    splits = split_clips(clips, SplitConfig(seed=0))
    assert {c.clip_id for c in splits["test"]} >= {"c0", "c1", "c2", "c3"}


def test_leakage_check_catches_a_group_in_two_splits() -> None:
    leaky = {"train": [Clip("a", 0, "song1", "human")], "val": [],
             "test": [Clip("b", 1, "song1", "gen")]}
    with pytest.raises(DataError, match="song1"):
        check_no_leakage(leaky)


def test_leaking_source_split_fails_the_run() -> None:
    clips = [Clip("a", 0, "song", "human", split="train"),
             Clip("b", 1, "song", "gen", split="test")]
    with pytest.raises(DataError, match="leakage"):
        split_clips(clips, SplitConfig())


def test_min_per_class_is_checked_on_the_listing_and_validated() -> None:
    splits = split_clips(paired_clips(40), SplitConfig(val=0.2, test=0.2, seed=3))
    check_not_empty(splits, minimum=4)
    with pytest.raises(DataError, match=r"the train split has 24 human .*min_per_class=50"):
        check_not_empty(splits, minimum=50)
    with pytest.raises(ConfigError, match="data.split.min_per_class"):
        build(SplitConfig, {"min_per_class": 0}, "data.split")


def test_a_class_lost_to_unusable_audio_names_the_set_the_class_and_the_list() -> None:
    with pytest.raises(DataError) as err:
        check_decoded("train", Counter({0: 8}), Counter({1: 8}), 1, "/run/skipped.csv")
    message = str(err.value)
    assert "the train set has 0 usable AI-generated (label 1) clip(s) after decoding" in message
    assert "8 of its 8 AI-generated clip(s) were skipped" in message
    assert "/run/skipped.csv" in message
    check_decoded("train", Counter({0: 3, 1: 3}), Counter({1: 5}), 3, "x")  # enough
