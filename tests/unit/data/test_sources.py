"""Real-data sources (folder, manifest, fakemusiccaps, sonics) built on disk, listed, split
and decoded, broken files reported (training on each: tests/e2e)."""

from __future__ import annotations

import csv
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from deepfake_detect.data import audio
from deepfake_detect.data.audio import AudioError
from deepfake_detect.data.sources import SOURCES, build_source
from deepfake_detect.data.splits import SplitConfig, split_clips
from deepfake_detect.errors import ConfigError, DataError
from tests.helpers.audio_data import (
    FMC_GENERATORS,
    fmc_ytid,
    make_fakemusiccaps,
    make_folder,
    make_manifest,
    make_sonics,
    write_good,
)
from tests.helpers.configs import SHARED_AUDIO


def source(name: str, **params) -> object:
    return build_source({"name": name, "duration": 1.0, **params})


def test_all_real_sources_are_registered() -> None:
    assert {"synthetic", "folder", "manifest", "fakemusiccaps", "sonics"} <= set(SOURCES)


def test_folder_lists_labels_generators_and_groups(tmp_path: Path) -> None:
    broken = make_folder(tmp_path)
    clips = source("folder", root=str(tmp_path)).clips()
    by_id = {c.clip_id: c for c in clips}
    assert len(clips) == 25  # 20 good + 5 broken; no txt, MACOSX, ._ or other/ files
    assert {Path(c.path).resolve().as_posix() for c in clips} >= set(broken)
    assert by_id["human/live/h9.wav"].generator == "human"
    assert by_id["human/live/h9.wav"].group == "human/live/h9"
    assert by_id["AI/gen_a/a0.wav"].generator == "gen_a"
    assert by_id["AI/a2.ogg"].generator == "unknown"
    assert Counter(c.label for c in clips) == {0: 12, 1: 13}
    assert len({c.group for c in clips}) == 25  # each file its own group
    assert all(c.split is None and Path(c.path).is_absolute() for c in clips)


def test_folder_group_by_parent_and_custom_classes(tmp_path: Path) -> None:
    for song in range(3):
        for stem in range(2):
            write_good(tmp_path / "Bona_Fide" / f"song{song}" / f"part{stem}", stem)
            write_good(tmp_path / "synth" / "suno" / f"s{song}" / f"part{stem}", stem)
    write_good(tmp_path / "synth" / "loose", 0)
    src = source("folder", root=str(tmp_path), group_by="parent",
                 classes={"bona_fide": 0, "SYNTH": 1})
    clips = src.clips()
    assert {c.group for c in clips if c.label == 0} == {f"Bona_Fide/song{i}" for i in range(3)}
    assert {c.group for c in clips if c.label == 1} == {
        *(f"synth/suno/s{i}" for i in range(3)), "synth/loose"}
    assert {c.generator for c in clips if c.label == 1} == {"suno", "unknown"}
    splits = split_clips(clips, SplitConfig(val=0.3, test=0.3))
    for name, members in splits.items():
        groups = {c.group for c in members}
        assert all(c.group not in groups for other, rest in splits.items() if other != name
                   for c in rest)


def test_folder_multi_windows_expand_files_into_clips(tmp_path: Path) -> None:
    make_folder(tmp_path)
    src = source("folder", root=str(tmp_path),
                 windows={"mode": "multi", "hop_s": 0.5, "max_per_file": 3})
    clips = src.clips()
    three_s = [c for c in clips if c.clip_id.startswith("human/h4.flac#")]
    assert [c.clip_id for c in three_s] == [f"human/h4.flac#w{k}" for k in range(3)]
    assert [c.recipe["offset_s"] for c in three_s] == [0.0, 0.5, 1.0]
    assert {c.group for c in three_s} == {"human/h4"}
    short = [c for c in clips if c.clip_id.startswith("human/h3.wav#")]  # 0.6 s: one window
    assert [c.clip_id for c in short] == ["human/h3.wav#w0"]
    unreadable = [c for c in clips if c.clip_id.startswith("human/bad_random.wav")]
    assert [c.clip_id for c in unreadable] == ["human/bad_random.wav#w0"]
    wave = src.load(three_s[2], 16000)
    assert wave.shape == (16000,) and wave.dtype == np.float32
    assert src.load(short[0], 16000).shape == (9600,)  # padded later by the features step
    with pytest.raises(AudioError, match="unreadable audio"):
        src.load(unreadable[0], 16000)
    dropping = source("folder", root=str(tmp_path), windows={"mode": "multi", "short": "drop"})
    with pytest.raises(AudioError, match=r"shorter than the window \(0\.60 s < 1\.00 s\)"):
        dropping.load(next(c for c in dropping.clips() if c.clip_id == "human/h3.wav#w0"),
                      16000)


def test_n_clips_keeps_a_small_balanced_subset(tmp_path: Path) -> None:
    make_folder(tmp_path)
    clips = source("folder", root=str(tmp_path), n_clips=8).clips()
    assert len(clips) == 8
    assert Counter(c.label for c in clips) == {0: 4, 1: 4}
    assert clips == source("folder", root=str(tmp_path), n_clips=8).clips()


def test_source_pickles_without_its_listing_and_signature_tracks_labels(tmp_path: Path) -> None:
    csv_path, _ = make_manifest(tmp_path)
    src = source("manifest", csv=str(csv_path))
    before = src.signature()
    assert src._clips is not None and pickle.loads(pickle.dumps(src))._clips is None
    text = csv_path.read_text().splitlines()
    header, first = text[0], text[1].split(",")
    first[1] = "1" if first[1] in ("human", "0", "REAL") else "0"  # relabel one clip
    csv_path.write_text("\n".join([header, ",".join(first), *text[2:]]) + "\n")
    assert source("manifest", csv=str(csv_path)).signature() != before


@pytest.mark.parametrize("name,params,key", [
    ("folder", {}, "data.source.root"),
    ("folder", {"root": "/x", "group_by": "song"}, "data.source.group_by"),
    ("folder", {"root": "/x", "classes": {"human": 2}}, "data.source.classes.human"),
    ("folder", {"root": "/x", "windows": {"mode": "random"}}, "data.source.windows.mode"),
    ("folder", {"root": "/x", "windows": {"hop_s": 0}}, "data.source.windows.hop_s"),
    ("folder", {"root": "/x", "windows": {"short": "crop"}}, "data.source.windows.short"),
    ("folder", {"root": "/x", "windows": {"max_per_file": 0}},
     "data.source.windows.max_per_file"),
    ("folder", {"root": "/x", "duration": -1}, "data.source.duration"),
    ("folder", {"root": "/x", "n_clips": 1}, "data.source.n_clips"),
    ("folder", {"root": "/x", "no_such": 1}, "data.source.no_such"),
    ("manifest", {}, "data.source.csv"),
    ("fakemusiccaps", {"root": None}, "data.source.root"),
    ("fakemusiccaps", {"root": "/x", "generators": []}, "data.source.generators"),
    ("sonics", {"root": "???"}, "data.source.root"),
])
def test_bad_options_name_the_config_key(name: str, params: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        source(name, **params)
    assert f"'{key}'" in str(err.value)


def test_folder_layout_errors_name_the_path_and_layout(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"{missing}.*does not exist.*human/"):
        source("folder", root=str(missing)).clips()
    (tmp_path / "songs").mkdir()
    with pytest.raises(DataError, match=f"no class directory under {tmp_path}.*found: songs/"):
        source("folder", root=str(tmp_path)).clips()
    write_good(tmp_path / "human" / "h", 0)
    with pytest.raises(DataError, match=r"no AI-generated \(label 1\).*ai/, fake/, deepfake/"):
        source("folder", root=str(tmp_path)).clips()
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=f"no audio files under {tmp_path / 'fake'}"):
        source("folder", root=str(tmp_path)).clips()


def test_manifest_lists_rows_with_labels_groups_and_splits(tmp_path: Path) -> None:
    csv_path, broken = make_manifest(tmp_path)
    clips = source("manifest", csv=str(csv_path)).clips()
    assert len(clips) == 26
    assert Counter(c.label for c in clips) == {0: 13, 1: 13}
    by_path = {Path(c.path).resolve().as_posix(): c for c in clips}
    assert set(broken) <= set(by_path)
    c1 = by_path[str((tmp_path / "audio" / "c1.flac").resolve())]
    assert (c1.label, c1.generator, c1.group, c1.split) == (1, "gen_x", "audio/c1", None)
    assert by_path[str((tmp_path / "audio" / "c0.wav").resolve())].generator == "human"
    assert all(c.split == "train" for c in clips if "broken" in c.path or "missing" in c.path)


@pytest.mark.parametrize("body,match", [
    ("path,label\na.wav,maybe\n", r"line 2, column label: 'maybe'"),
    ("path,label,split\na.wav,0,\nb.wav,1,holdout\n", r"line 3, column split: 'holdout'"),
    ("path,label\na.wav,0\n,1\n", r"line 3, column path: empty"),
    ("path,label\na.wav,0\nb.wav,1\na.wav,1\n", r"line 4, column path: 'a.wav' is already "
                                                r"listed on line 2"),
    ("path,label\na.wav,0,extra\n", r"line 2: 3 cells but the header has 2 columns"),
    ("file,class\na.wav,0\n", r"line 1: missing column\(s\) path, label"),
    ("path,label\n", r"lists no clips"),
])
def test_manifest_bad_rows_name_the_file_and_line(tmp_path: Path, body: str, match: str) -> None:
    path = tmp_path / "list.csv"
    path.write_text(body)
    with pytest.raises(DataError, match=f"{path}.*{match}|{match}.*{path}"):
        source("manifest", csv=str(path)).clips()


def test_manifest_missing_csv_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"{tmp_path / 'none.csv'}.*does not exist.*path,label"):
        source("manifest", csv=str(tmp_path / "none.csv")).clips()


def test_fakemusiccaps_groups_by_ytid_and_keeps_sunocaps_out(tmp_path: Path) -> None:
    make_fakemusiccaps(tmp_path)
    clips = source("fakemusiccaps", root=str(tmp_path)).clips()
    assert Counter(c.generator for c in clips)["human"] == 11  # one ytid has no real clip
    assert {c.generator for c in clips} == {"human", *FMC_GENERATORS}
    assert not any("SunoCaps" in c.path or "__MACOSX" in c.path or "/._" in c.path
                   for c in clips)
    assert {c.group for c in clips} == {fmc_ytid(i) for i in range(12)}
    assert not any(c.split for c in clips)
    subset = source("fakemusiccaps", root=str(tmp_path), generators=["musicldm"]).clips()
    assert {c.generator for c in subset} == {"human", "musicldm"}


@pytest.mark.parametrize("mode", ["center", "multi"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fakemusiccaps_no_ytid_in_two_splits(tmp_path: Path, mode: str, seed: int) -> None:
    make_fakemusiccaps(tmp_path, n_ytids=20, sunocaps=False)
    clips = source("fakemusiccaps", root=str(tmp_path),
                   windows={"mode": mode, "hop_s": 0.5}).clips()
    splits = split_clips(clips, SplitConfig(val=0.2, test=0.2, seed=seed))
    ytids = {name: {Path(c.path).stem for c in members} for name, members in splits.items()}
    assert all(ytids.values())
    assert not ytids["train"] & ytids["val"]
    assert not ytids["train"] & ytids["test"]
    assert not ytids["val"] & ytids["test"]
    assert sum(len(m) for m in splits.values()) == len(clips)


def test_fakemusiccaps_layout_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"{tmp_path / 'x'}.*does not exist.*MusicCaps/<ytid>"):
        source("fakemusiccaps", root=str(tmp_path / "x")).clips()
    nested = tmp_path / "FakeMusicCaps"
    write_good(nested / "MusicCaps" / "yt1", 0, ".wav")
    with pytest.raises(DataError, match=f"{tmp_path / 'MusicCaps'} is missing.*"
                                        f"data.source.root={nested}"):
        source("fakemusiccaps", root=str(tmp_path)).clips()
    with pytest.raises(DataError, match=f"{nested / 'MusicGen_medium'} is missing.*found "
                                        "MusicCaps/"):
        source("fakemusiccaps", root=str(nested)).clips()


# --- sonics ----------------------------------------------------------------------------------


def test_sonics_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"{tmp_path / 'x'}.*does not exist.*real_songs.csv"):
        source("sonics", root=str(tmp_path / "x")).clips()
    (tmp_path / "real_songs").mkdir()
    with pytest.raises(DataError, match=f"{tmp_path / 'real_songs.csv'} is missing"):
        source("sonics", root=str(tmp_path)).clips()
    make_sonics(tmp_path)
    table = tmp_path / "fake_songs.csv"
    lines = table.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 2)[0] + ",0,train"  # target 0 in the fake CSV
    table.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"{table} line 4: target '0' says label 0"):
        source("sonics", root=str(tmp_path)).clips()


@pytest.mark.skipif(not SHARED_AUDIO.is_dir(), reason=f"{SHARED_AUDIO} not present")
@pytest.mark.parametrize("mode", ["center", "multi"])
def test_folder_source_reads_and_windows_every_shared_recording(mode: str) -> None:
    manifest = list(csv.DictReader((SHARED_AUDIO / "MANIFEST.tsv").open(), delimiter="\t"))
    sr, duration = 22050, 4.0
    src = source("folder", root=str(SHARED_AUDIO), duration=duration,
                 windows={"mode": mode, "hop_s": 3.0, "max_per_file": 2})
    clips = src.clips()
    files = {Path(c.path).relative_to(SHARED_AUDIO).as_posix(): c for c in clips}
    assert set(files) == {row["file"] for row in manifest}
    for row in manifest:
        clip = files[row["file"]]
        assert clip.label == (0 if row["class"] == "human" else 1)
    per_file = Counter(Path(c.path).name for c in clips)
    for row in manifest:
        seconds = float(row["duration_s"])
        want = 1 if mode == "center" or seconds < duration + 3.0 else 2
        assert per_file[Path(row["file"]).name] == want, row["file"]
    for clip in clips:
        wave = src.load(clip, sr)
        assert wave.dtype == np.float32 and wave.ndim == 1
        assert abs(len(wave) - duration * sr) <= 1, clip.clip_id
        assert np.isfinite(wave).all() and np.abs(wave).max() > 1e-3
    # A window decoded alone equals the same frames of the whole file (at the native rate).
    for row in manifest[:: 5]:
        path = SHARED_AUDIO / row["file"]
        native = audio.info(path).sample_rate
        full = audio.decode(path, native)
        part = audio.decode(path, native, audio.Segment(duration, offset_s=3.0))
        start = int(3.0 * native)
        np.testing.assert_allclose(part, full[start:start + len(part)], atol=1e-6)
