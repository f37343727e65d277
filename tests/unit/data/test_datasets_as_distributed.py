"""SONICS and FakeMusicCaps as they are distributed (layouts built from their public READMEs'
column lists and file names): zipped and nested parts, copies with the fakes only, songs in
downloaders' formats, the official filters, namespaced groups, SunoCaps' protocol, and the
class balance; the balanced sampler."""

from __future__ import annotations

import csv
import logging
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from deepfake_detect.data.audio import AudioError
from deepfake_detect.data.datamodule import BalancedShuffle
from deepfake_detect.data.sources import build_source
from deepfake_detect.data.splits import SplitConfig, split_clips
from deepfake_detect.errors import DataError
from tests.helpers.audio_data import (
    SONICS_FAKE_COLUMNS,
    SONICS_REAL_COLUMNS,
    fmc_ytid,
    make_fakemusiccaps,
    make_sonics,
)
from tests.helpers.configs import compose_cfg


def source(name: str, **params) -> object:
    return build_source({"name": name, "duration": 1.0, **params})


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# --- SONICS ----------------------------------------------------------------------------------


def test_sonics_fixture_has_the_readme_columns(tmp_path: Path) -> None:
    make_sonics(tmp_path)
    with (tmp_path / "real_songs.csv").open() as handle:
        assert next(csv.reader(handle)) == SONICS_REAL_COLUMNS
    with (tmp_path / "fake_songs.csv").open() as handle:
        assert next(csv.reader(handle)) == SONICS_FAKE_COLUMNS
    assert (tmp_path / "fake_songs" / "fake_songs" / "fake_1_suno_0.mp3").is_file()


def test_sonics_unpacked_in_place_lists_the_official_test_set(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_sonics(tmp_path)
    with caplog.at_level(logging.INFO, logger="deepfake_detect.data"):
        clips = source("sonics", root=str(tmp_path), windows={"mode": "center"}).clips()
    by_id = {c.clip_id: c for c in clips}
    # Official filters: real id 5 (25 s), real id 6 (no vocals), fake 4's second (12 s) out.
    assert "real_songs/real_song_5" not in by_id and "real_songs/real_song_6" not in by_id
    assert "fake_songs/fake_4_udio_1" not in by_id and "fake_songs/fake_4_udio_0" in by_id
    # Not on disk: real song 4 (never downloaded), fake id 9: left out and counted.
    assert "real_songs/real_song_4" not in by_id and "fake_songs/fake_9_suno_0" not in by_id
    assert "1 of 14 song(s) listed in real_songs.csv are not on disk" in caplog.text
    assert "2 of 17 song(s) listed in fake_songs.csv are not on disk" in caplog.text
    assert "2 song(s) of real_songs.csv left out by the official filters" in caplog.text
    fake = by_id["fake_songs/fake_1_suno_0"]
    assert fake.path.endswith("fake_songs/fake_songs/fake_1_suno_0.mp3")
    assert (fake.label, fake.generator, fake.split) == (1, "chirp-v3.5", "train")
    # Two numbering schemes: real 1 and fake 1 are different songs; a fake's two renderings
    # are one group.
    assert by_id["real_songs/real_song_1"].group == "real_songs/1" != fake.group
    assert by_id["fake_songs/fake_1_suno_1"].group == fake.group == "fake_songs/1"
    assert by_id["real_songs/real_song_2"].path.endswith(".opus")
    assert Counter(c.split for c in clips) == {"train": 12, "val": 8, "test": 8}
    assert "13 human and 15 AI-generated file(s) listed (1 : 1.2)" in caplog.text
    split = split_clips(clips, SplitConfig())  # the dataset's split, no leakage raised
    assert {c.clip_id for c in split["test"]} == {c.clip_id for c in clips if c.split == "test"}
    assert source("sonics", root=str(tmp_path)).load(by_id["real_songs/real_song_2"],
                                                     16000).shape == (16000,)


def test_sonics_official_filters_can_be_switched_off(tmp_path: Path) -> None:
    make_sonics(tmp_path)
    clips = source("sonics", root=str(tmp_path), min_duration=None,
                   drop_no_vocal=False).clips()
    ids = {c.clip_id for c in clips}
    assert {"real_songs/real_song_5", "real_songs/real_song_6",
            "fake_songs/fake_4_udio_1"} <= ids
    only_vocals = source("sonics", root=str(tmp_path), min_duration=None).clips()
    assert "real_songs/real_song_6" not in {c.clip_id for c in only_vocals}


def test_sonics_zip_parts_give_the_exact_unzip_command_that_works(tmp_path: Path) -> None:
    make_sonics(tmp_path, layout="zipped")
    assert sorted(p.name for p in (tmp_path / "fake_songs").iterdir()) == [
        "__MACOSX", "part_01.zip", "part_02.zip"]
    with pytest.raises(DataError, match="2 zip part\\(s\\) are not unpacked yet") as err:
        source("sonics", root=str(tmp_path)).clips()
    command = re.search(r"run `([^`]+)`", str(err.value)).group(1)
    assert command.startswith(f"cd {tmp_path} && ")
    if shutil.which("unzip"):
        subprocess.run(command, shell=True, check=True)
        clips = source("sonics", root=str(tmp_path), windows={"mode": "center"}).clips()
        assert sum(c.label for c in clips) == 15  # the fakes, wherever they were unpacked


def test_sonics_with_the_fakes_only_lists_the_fakes(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    make_sonics(tmp_path, layout="fakes_only")
    with caplog.at_level(logging.INFO, logger="deepfake_detect.data"):
        clips = source("sonics", root=str(tmp_path), windows={"mode": "center"}).clips()
    assert {c.label for c in clips} == {1} and len(clips) == 15
    assert "none of the 14 real songs of real_songs.csv is on disk" in caplog.text
    assert "download them by youtube_id" in caplog.text
    no_real = source("sonics", root=str(tmp_path), real_csv=None).clips()
    assert {c.label for c in no_real} == {1}


def test_sonics_real_songs_in_downloaders_formats(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    make_sonics(tmp_path, real_formats=(".m4a", ".webm", ".opus"))
    src = source("sonics", root=str(tmp_path), windows={"mode": "center"})
    with caplog.at_level(logging.INFO, logger="deepfake_detect.data"):
        clips = src.clips()
    by_suffix = {Path(c.path).suffix: c for c in clips if c.label == 0}
    assert set(by_suffix) >= {".m4a", ".webm", ".opus", ".wav"}
    assert src.load(by_suffix[".opus"], 16000).shape == (16000,)
    if not shutil.which("ffmpeg"):
        assert re.search(r"\d+ \.m4a, \d+ \.webm file\(s\) need ffmpeg", caplog.text)
        with pytest.raises(AudioError, match="unreadable audio"):
            src.load(by_suffix[".m4a"], 16000)


def test_sonics_groups_the_dataset_splits_apart_and_links_by_a_column(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_sonics(tmp_path)
    fake = rows(tmp_path / "fake_songs.csv")
    fake[1]["split"] = "test"  # fake 1's second rendering in another split than its first
    for row in fake:
        row["real_id"] = "2" if row["id"] == "2" else ""
    with (tmp_path / "fake_songs.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fake[0]))
        writer.writeheader()
        writer.writerows(fake)
    with caplog.at_level(logging.INFO, logger="deepfake_detect.data"):
        clips = source("sonics", root=str(tmp_path), link_column="real_id",
                       windows={"mode": "center"}).clips()
    by_id = {c.clip_id: c for c in clips}
    assert "1 group(s) span two of the dataset's splits" in caplog.text
    assert by_id["fake_songs/fake_1_suno_0"].group != by_id["fake_songs/fake_1_suno_1"].group
    assert by_id["fake_songs/fake_2_udio_0"].group == by_id["real_songs/real_song_2"].group
    split_clips(clips, SplitConfig())  # no leakage


def test_sonics_takes_whole_song_windows_by_default(tmp_path: Path) -> None:
    cfg = compose_cfg(["data=sonics", "data.source.root=/x"], tmp_path)
    assert cfg.data.source.windows.mode == "multi" and cfg.data.source.min_duration == 30.0
    assert cfg.data.source.windows.max_per_file is None


# --- FakeMusicCaps ---------------------------------------------------------------------------


def test_fakemusiccaps_sunocaps_open_set_as_the_paper_tests_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_fakemusiccaps(tmp_path)
    with caplog.at_level(logging.INFO, logger="deepfake_detect.data"):
        clips = source("fakemusiccaps", root=str(tmp_path), include_sunocaps=True).clips()
    suno = {c.clip_id: c for c in clips if c.generator == "SunoCaps"}
    assert set(suno) == {f"SunoCaps/{fmc_ytid(0)}.wav", "SunoCaps/Ab001.wav",
                         "SunoCaps/Zq9OnlySuno.wav"}
    # A name cut at its ytid's first "_" still finds its caption; one matches none.
    assert suno["SunoCaps/Ab001.wav"].group == fmc_ytid(1)
    assert suno["SunoCaps/Zq9OnlySuno.wav"].group == "SunoCaps/Zq9OnlySuno"
    captions = {fmc_ytid(0), fmc_ytid(1)}
    pinned = [c for c in clips if c.group in captions]
    assert {c.generator for c in pinned} >= {"human", "SunoCaps"}
    assert all(c.split == "test" for c in pinned + list(suno.values()))
    split = split_clips(clips, SplitConfig(seed=3))
    trained = {c.group for p in ("train", "val") for c in split[p]}
    assert not trained & captions  # no caption of the open set reaches training
    assert "3 SunoCaps name(s) render 2 caption(s)" in caplog.text
    assert "1 of 12 ytid(s) have no real clip" in caplog.text
    assert "fakemusiccaps: 11 human and 24 AI-generated file(s) listed (1 : 2.2)" in caplog.text


def test_fakemusiccaps_paper_protocol_without_the_sunocaps_clips(tmp_path: Path) -> None:
    make_fakemusiccaps(tmp_path)
    clips = source("fakemusiccaps", root=str(tmp_path), protocol="paper").clips()
    assert "SunoCaps" not in {c.generator for c in clips}
    assert {c.group for c in clips if c.split == "test"} == {fmc_ytid(0), fmc_ytid(1)}


def test_fakemusiccaps_with_the_fakes_only_takes_the_real_clips_from_elsewhere(
        tmp_path: Path) -> None:
    make_fakemusiccaps(tmp_path / "full")
    spoofs = tmp_path / "spoofs"
    make_fakemusiccaps(spoofs, real=False)
    with pytest.raises(DataError, match="MusicCaps is missing \\(data.source.real_dir\\).*"
                                        "data.source.real_dir=/path/to/MusicCaps"):
        source("fakemusiccaps", root=str(spoofs)).clips()
    elsewhere = source("fakemusiccaps", root=str(spoofs),
                       real_dir=str(tmp_path / "full" / "MusicCaps")).clips()
    real = [c for c in elsewhere if c.label == 0]
    assert len(real) == 11 and all(c.path.startswith(str(tmp_path / "full")) for c in real)
    assert {c.group for c in real} <= {c.group for c in elsewhere if c.label == 1}
    fakes = source("fakemusiccaps", root=str(spoofs), real_dir=None).clips()
    assert {c.label for c in fakes} == {1}


# --- class balance ---------------------------------------------------------------------------


def test_balanced_sampler_draws_the_classes_equally_and_repeats_per_epoch() -> None:
    targets = np.array([0] * 100 + [1] * 500)
    sampler = BalancedShuffle(targets, seed=4)
    first = list(sampler)
    assert len(first) == 600 and first == list(sampler)
    share = Counter(targets[first].tolist())
    assert abs(share[0] - share[1]) < 60
    sampler.set_epoch(1)
    assert list(sampler) != first
