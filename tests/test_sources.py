"""Real-data sources (folder, manifest, fakemusiccaps, sonics) built on disk, listed, split,
decoded, and trained through ``train(cfg)`` with broken files reported in skipped.csv."""

from __future__ import annotations

import csv
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deepfake_detect.data import audio
from deepfake_detect.data.audio import AudioError
from deepfake_detect.data.sources import SOURCES, build_source
from deepfake_detect.data.splits import SplitConfig, split_clips
from deepfake_detect.errors import ConfigError, DataError
from deepfake_detect.train import train
from tests.conftest import assert_matches_predictions

SHARED_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "audio"

# Good files cycle through formats, rates, channel counts and lengths (the window is 1 s:
# 0.6 s files are padded, longer ones windowed).
VARIANTS = [(".wav", 16000, 1, 1.5), (".flac", 22050, 2, 2.0), (".ogg", 44100, 1, 1.2),
            (".wav", 44100, 2, 0.6), (".flac", 16000, 1, 3.0), (".ogg", 22050, 2, 1.0)]


def write_good(path: Path, index: int, ext: str | None = None) -> Path:
    """A short tone-plus-noise file in the ``index``-th format variant."""
    variant_ext, sr, channels, seconds = VARIANTS[index % len(VARIANTS)]
    path = path.with_suffix(ext or variant_ext)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(index)
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 900) * t) + 0.03 * rng.standard_normal(
        len(t))
    data = wave if channels == 1 else np.stack([wave, np.roll(wave, 7)], axis=1)
    sf.write(path, data.astype(np.float32), sr)
    return path


def write_random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(7).integers(0, 256, 3000, dtype=np.uint8).tobytes())


def write_zero_length(path: Path) -> None:
    path.write_bytes(b"")


def write_silent(path: Path) -> None:
    sf.write(path, np.zeros(22050, dtype=np.float32), 22050)


def write_truncated(path: Path) -> None:
    t = np.arange(32000) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 16000,
             subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # header intact, data cut


def write_nan(path: Path) -> None:
    wave = 0.2 * np.sin(np.arange(32000) / 5.0)
    wave[::1000] = np.nan
    sf.write(path, wave.astype(np.float32), 16000, subtype="FLOAT")


BROKEN = [  # (writer, expected reason in skipped.csv)
    (write_random_bytes, "unreadable audio"),
    (write_zero_length, "empty file"),
    (write_silent, "silent audio"),
    (write_truncated, "truncated audio"),
    (write_nan, "NaN or inf"),
]


def write_broken(paths: list[Path]) -> dict[str, str]:
    """Write the five broken kinds at ``paths`` (.wav); {absolute path: expected reason}."""
    expected = {}
    for path, (write, reason) in zip(paths, BROKEN, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
        expected[str(path.resolve())] = reason
    return expected


# --- layouts ---------------------------------------------------------------------------------


def make_folder(root: Path) -> dict[str, str]:
    """root/human/ (10 files, one nested), root/ai/{gen_a,gen_b}/ and root/ai/ directly, plus
    broken files and things to ignore. Returns the broken files."""
    for i in range(10):
        sub = "live/" if i == 9 else ""
        write_good(root / "human" / f"{sub}h{i}", i)
    for i in range(10):
        gen = ["gen_a/", "gen_b/", ""][i % 3]
        write_good(root / "AI" / f"{gen}a{i}", i + 3)
    (root / "human" / "notes.txt").write_text("not audio")
    (root / "README.md").write_text("ignored")
    write_good(root / "other" / "x", 0)  # not a class directory
    write_good(root / "human" / "__MACOSX" / "h0", 0)
    (root / "AI" / "._a0.wav").write_bytes(b"mac resource fork")
    return write_broken([root / "human" / "bad_random.wav", root / "human" / "bad_empty.wav",
                         root / "AI" / "gen_a" / "bad_silent.wav",
                         root / "AI" / "gen_b" / "bad_truncated.wav",
                         root / "AI" / "bad_nan.wav"])


def make_manifest(root: Path) -> tuple[Path, dict[str, str]]:
    """root/clips.csv listing files under root/audio (relative) and one absolute path."""
    rows = []
    labels = ["human", "0", "REAL", "ai", "1", "fake"]
    for i in range(20):
        label_word = labels[(i % 2) * 3 + (i // 2) % 3]
        path = write_good(root / "audio" / f"c{i}", i)
        written = str(path) if i == 0 else path.relative_to(root).as_posix()
        rows.append({"path": written, "label": label_word,
                     "generator": "gen_x" if i % 2 else "", "split": ""})
    broken = write_broken([root / "audio" / f"broken{i}.wav" for i in range(5)])
    for i, path in enumerate(broken):
        rows.append({"path": Path(path).relative_to(root.resolve()).as_posix(),
                     "label": str(i % 2), "generator": "", "split": "train"})
    rows.append({"path": "audio/missing.wav", "label": "1", "generator": "", "split": "train"})
    broken[str((root / "audio" / "missing.wav").resolve())] = "file not found"
    csv_path = root / "clips.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "generator", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return csv_path, broken


FMC_GENERATORS = ["MusicGen_medium", "musicldm", "audioldm2", "stable_audio_open", "mustango"]


def make_fakemusiccaps(root: Path, n_ytids: int = 12, sunocaps: bool = True) -> dict[str, str]:
    """Every ytid has a real MusicCaps clip and one or two generated ones."""
    for i in range(n_ytids):
        ytid = f"yt{i:03d}_Ab-c"
        write_good(root / "MusicCaps" / ytid, i, ".wav")
        for gen in {FMC_GENERATORS[i % 5], FMC_GENERATORS[(i * 2) % 5]}:
            write_good(root / gen / ytid, i + 1, ".wav")
    if sunocaps:
        for i in range(3):
            write_good(root / "SunoCaps" / f"suno_{i}", i, ".wav")
    write_good(root / "__MACOSX" / "MusicCaps" / "yt000_Ab-c", 0, ".wav")
    (root / "MusicCaps" / "._yt000_Ab-c.wav").write_bytes(b"resource fork")
    return write_broken([root / FMC_GENERATORS[i] / f"yt{i:03d}_Ab-c.wav" for i in range(4)]
                        + [root / "MusicCaps" / "yt011_Ab-c.wav"])


def make_sonics(root: Path) -> dict[str, str]:
    """real_songs.csv / fake_songs.csv with the dataset's own split; mp3 files listed
    without their extension, as SONICS does."""
    splits = ["train"] * 5 + ["valid", "valid", "test", "test"]
    broken_paths = []
    for kind, label in (("real", 0), ("fake", 1)):
        rows = []
        for i, split in enumerate(splits):
            name = f"{kind}_{i:04d}"
            ext = ".mp3" if i % 3 == 0 else None
            path = write_good(root / f"{kind}_songs" / name, i + label, ext)
            rows.append({"id": f"{kind}-{i}", "filename": name if ext else path.name,
                         "duration": "1.0", "split": split,
                         "algorithm": ["chirp-v3.5", "udio-130"][i % 2] if label else "",
                         "label": "full fake" if label else "real", "target": str(label)})
        for j in range(3 - label):  # broken files, all in train
            name = f"{kind}_broken{j}.wav"
            broken_paths.append(root / f"{kind}_songs" / name)
            rows.append({"id": f"{kind}-b{j}", "filename": name, "duration": "2.0",
                         "split": "train", "algorithm": "chirp-v2" if label else "",
                         "label": "full fake" if label else "real", "target": str(label)})
        if label:
            rows.append({"id": "fake-missing", "filename": "not_downloaded", "duration": "3",
                         "split": "train", "algorithm": "udio-32", "label": "half fake",
                         "target": "1"})
        with (root / f"{kind}_songs.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    broken = write_broken(broken_paths)
    broken[str((root / "fake_songs" / "not_downloaded.mp3").resolve())] = "file not found"
    return broken


def source(name: str, **params) -> object:
    return build_source({"name": name, "duration": 1.0, **params})


# --- folder ----------------------------------------------------------------------------------


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


# --- manifest --------------------------------------------------------------------------------


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
    ("path,label\na.wav,maybe\n", r"line 2: label 'maybe'"),
    ("path,label,split\na.wav,0,\nb.wav,1,holdout\n", r"line 3: split 'holdout'"),
    ("path,label\na.wav,0\n,1\n", r"line 3: empty path"),
    ("path,label\na.wav,0\nb.wav,1\na.wav,1\n", r"line 4: path 'a.wav' is already listed on "
                                                r"line 2"),
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


# --- fakemusiccaps ---------------------------------------------------------------------------


def test_fakemusiccaps_groups_by_ytid_and_keeps_sunocaps_out(tmp_path: Path) -> None:
    make_fakemusiccaps(tmp_path)
    clips = source("fakemusiccaps", root=str(tmp_path)).clips()
    assert Counter(c.generator for c in clips)["human"] == 12
    assert {c.generator for c in clips} == {"human", *FMC_GENERATORS}
    assert not any("SunoCaps" in c.path or "__MACOSX" in c.path or "/._" in c.path
                   for c in clips)
    assert {c.group for c in clips} == {f"yt{i:03d}_Ab-c" for i in range(12)}
    with_suno = source("fakemusiccaps", root=str(tmp_path), include_sunocaps=True).clips()
    suno = [c for c in with_suno if c.generator == "SunoCaps"]
    assert len(suno) == 3 and all(c.split == "test" and c.label == 1 for c in suno)
    splits = split_clips(with_suno, SplitConfig())
    assert set(suno) <= set(splits["test"])
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


def test_sonics_uses_the_dataset_split_algorithm_and_ids(tmp_path: Path) -> None:
    make_sonics(tmp_path)
    clips = source("sonics", root=str(tmp_path)).clips()
    assert len(clips) == 9 + 3 + 9 + 2 + 1
    assert Counter(c.split for c in clips) == {"train": 16, "val": 4, "test": 4}
    by_id = {c.clip_id: c for c in clips}
    real0 = by_id["real_songs/real_0000"]
    assert real0.path.endswith("real_songs/real_0000.mp3") and real0.generator == "human"
    fake1 = by_id["fake_songs/fake_0001.ogg"]
    assert (fake1.label, fake1.generator, fake1.group) == (1, "udio-130", "fake-1")
    assert by_id["fake_songs/not_downloaded"].generator == "udio-32"
    wave = source("sonics", root=str(tmp_path)).load(real0, 16000)
    assert wave.shape == (16000,)


def test_sonics_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"{tmp_path / 'x'}.*does not exist.*real_songs.csv"):
        source("sonics", root=str(tmp_path / "x")).clips()
    (tmp_path / "real_songs").mkdir()
    with pytest.raises(DataError, match=f"{tmp_path / 'real_songs.csv'} is missing"):
        source("sonics", root=str(tmp_path)).clips()
    make_sonics(tmp_path)
    table = tmp_path / "fake_songs.csv"
    lines = table.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",0"  # target 0 in the fake CSV
    table.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"{table} line 4: target '0' says label 0"):
        source("sonics", root=str(tmp_path)).clips()
    with pytest.raises(DataError, match="none of the .* files listed in .*real_songs.csv"):
        source("sonics", root=str(tmp_path), audio_dirs=["fake_songs"]).clips()


# --- real recordings -------------------------------------------------------------------------


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


# --- end to end through train(cfg) -----------------------------------------------------------


def _train_on(make_cfg, source_overrides: list[str]) -> dict:
    # All test batches: the evaluation compares predictions with every test row.
    cfg = make_cfg(*source_overrides, "data.source.n_clips=null", "eval.distortions=[base]",
                   "trainer.limit_test_batches=1.0")
    return train(cfg)


def _assert_skipped(result: dict, broken: dict[str, str]) -> None:
    path = Path(result["run_dir"]) / "artifacts" / "skipped.csv"
    rows = {str(Path(r["path"]).resolve()): r for r in csv.DictReader(path.open())}
    for file, reason in broken.items():
        assert file in rows, f"{file} missing from {path}"
        assert reason in rows[file]["reason"], rows[file]
    assert len(rows) == len(broken)


@pytest.mark.parametrize("layout", ["folder", "manifest", "fakemusiccaps", "sonics"])
def test_training_runs_on_each_source_and_reports_broken_files(make_cfg, tmp_path: Path,
                                                               layout: str) -> None:
    data = tmp_path / "data"
    if layout == "folder":
        broken = make_folder(data)
        overrides = ["data=folder", f"data.source.root={data}"]
    elif layout == "manifest":
        csv_path, broken = make_manifest(data)
        overrides = ["data=manifest", f"data.source.csv={csv_path}"]
    elif layout == "fakemusiccaps":
        broken = make_fakemusiccaps(data)
        overrides = ["data=fakemusiccaps", f"data.source.root={data}",
                     "data.source.include_sunocaps=true"]
    else:
        broken = make_sonics(data)
        overrides = ["data=sonics", f"data.source.root={data}",
                     "data.source.windows.mode=multi", "data.source.windows.max_per_file=2"]
    result = _train_on(make_cfg, overrides)
    assert_matches_predictions(result, "base")
    assert "test/base/auroc" in result
    assert result["data"]["skipped"] >= len(broken)  # a file cut into windows: one row each
    _assert_skipped(result, broken)
