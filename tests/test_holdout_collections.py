"""Leave-one-generator-out on collections (demo pages showing several generators side by
side): the held-out generator's files go to test with their groups, the other generators'
files there are left out and counted, and a generator that cannot be held out is skipped with
its reason."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from deepfake_detect.cli import report as report_cli
from deepfake_detect.data.clips import Clip
from deepfake_detect.data.sources import build_source
from deepfake_detect.data.splits import SplitConfig, generators_of, split_clips
from deepfake_detect.errors import GeneratorSkipped, NothingToHoldOut
from tests.helpers.audio_data import write_good

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


# --- a sweep through the command, with a generator that cannot be held out --------------------

SWEPT = {  # collection -> {generator: files}; "human" files are the human class
    "pageH1": {"human": 3, "audioldm2": 2, "musicgen": 2},
    "pageH2": {"human": 3, "tango": 3},
    "lib1": {"human": 2}, "lib2": {"human": 2}, "lib3": {"human": 2},
    "pageB": {"musicgen": 3}, "pageC": {"tango": 3}, "pageD": {"musicldm": 3},
    "pageS": {"solo": 1},  # one file: too few to test with data.split.min_per_class=2
}
GROUP_PATTERN = r"([^/]+?)__"
GENERATOR_PATTERN = r"__([^_/]+)_\d+\."


def write_pages(root: Path) -> None:
    index = 0
    for page, files in SWEPT.items():
        for generator, count in files.items():
            kind = "human" if generator == "human" else "ai"
            for i in range(count):
                write_good(root / kind / f"{page}__{generator}_{i}", index, ".wav")
                index += 1


@pytest.mark.slow
def test_a_sweep_skips_what_cannot_be_held_out_runs_the_rest_and_reports_why(
        tmp_path: Path) -> None:
    data, root = tmp_path / "pages", tmp_path / "out"
    write_pages(data)
    clips = build_source({"name": "folder", "root": str(data), "duration": 1.0,
                          "group_pattern": GROUP_PATTERN,
                          "generator_pattern": GENERATOR_PATTERN}).clips()
    for generator in ("audioldm2", "musicldm"):
        split_clips(clips, SplitConfig(holdout_generator=generator, min_per_class=2))
    with pytest.raises(GeneratorSkipped, match="'solo' cannot be held out: the test split "
                                               "would hold 1 AI-generated"):
        split_clips(clips, SplitConfig(holdout_generator="solo", min_per_class=2))
    cmd = [sys.executable, "-m", "deepfake_detect.cli.train", "-m",
           "experiment=leave_one_generator_out", "debug=fast_dev_run", "data=folder",
           f"data.source.root={data}", "data.source.n_clips=null", "eval.baselines=[]",
           "eval.distortions=[base]",
           f"data.source.group_pattern='{GROUP_PATTERN}'",
           f"data.source.generator_pattern='{GENERATOR_PATTERN}'",
           "data.split.holdout_generator=solo,audioldm2,musicldm", "data.split.min_per_class=2",
           f"paths.root={root}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "skipped: generator 'solo' cannot be held out" in done.stdout + done.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("leave_one_generator_out")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["holdout_generator"] for r in runs) == [
        "audioldm2", "musicldm", "solo"]
    assert [r.data.tags.get("skipped", "")[:14] for r in runs
            if r.data.tags["holdout_generator"] == "solo"] == ["the test split"]
    assert report_cli.main(["--experiment", "leave_one_generator_out", "--tracking-uri",
                            client.tracking_uri, "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Skipped jobs" in text and "| solo | the test split would hold 1 AI-generated" in text
    assert "| audioldm2 |" in text and "| musicldm |" in text
