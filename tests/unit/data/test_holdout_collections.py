"""Leave-one-generator-out on collections (demo pages showing several generators side by
side): the held-out generator's files go to test with their groups, the other generators'
files there are left out and counted, and a generator that cannot be held out is skipped with
its reason."""

from __future__ import annotations

import logging

import pytest

from deepfake_detect.data.clips import Clip
from deepfake_detect.data.splits import SplitConfig, generators_of, split_clips
from deepfake_detect.errors import GeneratorSkipped, NothingToHoldOut

# collection -> (human files, {generator: files}); like the demo pages of a real devset.
PAGES = {
    "pageA": (3, {"musicgen": 3, "musicldm": 2}),
    "pageB": (2, {"musicgen": 2, "tango": 2, "mustango": 1}),
    "pageC": (2, {"suno": 3}),
    "pageD": (0, {"yue": 2, "mureka": 2, "suno": 1}),  # a page of generated songs only
    "pageE": (3, {"diffrhythm": 3}),
    "lib1": (3, {}), "lib2": (2, {}), "lib3": (2, {}), "lib4": (3, {}),
}


def demo_pages(pages: dict = PAGES) -> list[Clip]:
    clips = []
    for page, (humans, gens) in pages.items():
        clips += [Clip(f"human/{page}__h{i}", 0, page, "human") for i in range(humans)]
        clips += [Clip(f"ai/{page}__{g}_{i}", 1, page, g) for g, n in gens.items()
                  for i in range(n)]
    return clips


def groups_of(clips: list[Clip]) -> set[str]:
    return {c.group for c in clips}


@pytest.mark.parametrize("generator", generators_of(demo_pages()))
def test_every_generator_goes_to_test_with_its_collections(generator: str) -> None:
    clips = demo_pages()
    split = split_clips(clips, SplitConfig(holdout_generator=generator, seed=1))
    held = {c.group for c in clips if c.generator == generator}
    assert held <= groups_of(split["test"])
    assert {c.generator for c in split["test"] if c.label == 1} == {generator}
    assert sum(c.generator == generator for c in split["test"]) == sum(
        c.generator == generator for c in clips)  # every file of it is tested
    trained = split["train"] + split["val"]
    assert not groups_of(trained) & groups_of(split["test"])
    assert generator not in {c.generator for c in trained}
    for part in ("train", "val", "test"):
        assert {c.label for c in split[part]} == {0, 1}, (generator, part)


def test_the_other_generators_of_held_out_collections_are_left_out_and_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="deepfake_detect.data.splits"):
        split = split_clips(demo_pages(), SplitConfig(holdout_generator="musicgen"))
    kept = [c for part in split.values() for c in part]
    assert not {"musicldm", "tango", "mustango"} & {c.generator for c in kept}
    assert "5 clip(s) of other generators share its 2 test group(s)" in caplog.text
    assert "left out of every split (musicldm: 2, mustango: 1, tango: 2)" in caplog.text
    assert len(kept) == len(demo_pages()) - 5


def test_a_generator_sharing_every_human_files_group_is_skipped_with_its_reason() -> None:
    pages = {"page": (4, {"audioldm2": 3, "musicgen": 2}), "gens": (0, {"musicgen": 3}),
             "other": (0, {"tango": 2})}
    with pytest.raises(GeneratorSkipped, match="'audioldm2' cannot be held out: the train "
                                               "split would hold 0 human") as err:
        split_clips(demo_pages(pages), SplitConfig(holdout_generator="audioldm2"))
    assert isinstance(err.value, NothingToHoldOut)  # a sweep job skips it
    assert (err.value.generator, err.value.key) == ("audioldm2", "data.split.holdout_generator")


def test_one_caption_per_group_rendered_by_every_generator_keeps_a_test_share() -> None:
    """FakeMusicCaps: every caption holds every generator, so moving all of them to test
    would leave nothing to train on; a data.split.test share of the captions is tested."""
    clips = [Clip(f"{g}/{k}", int(g != "human"), f"cap{k}", g) for k in range(20)
             for g in ["human", "gen_a", "gen_b"]]
    split = split_clips(clips, SplitConfig(holdout_generator="gen_a", test=0.2))
    assert len(groups_of(split["test"])) == 4
    assert {c.generator for c in split["test"]} == {"human", "gen_a"}
    assert "gen_a" not in {c.generator for p in ("train", "val") for c in split[p]}
