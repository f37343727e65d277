"""Audio datasets written on disk for tests: good files in many formats, broken files with
the reason they must be skipped for, and the layouts of every file source."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

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


def write_download(path: Path, index: int, ext: str) -> Path:
    """A song as a downloader leaves it: ``.opus`` (Ogg Opus, 48 kHz), ``.m4a`` / ``.webm``
    (their containers' opening bytes: only ffmpeg decodes those), else :func:`write_good`."""
    path = path.with_suffix(ext)
    path.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".opus":
        t = np.arange(48000 * 2) / 48000
        sf.write(path, (0.3 * np.sin(2 * np.pi * (200 + 40 * index) * t)).astype(np.float32),
                 48000, format="OGG", subtype="OPUS")
    elif ext == ".m4a":
        path.write_bytes(b"\x00\x00\x00\x18ftypM4A \x00\x00\x02\x00isomiso2" + bytes(4000))
    elif ext == ".webm":
        path.write_bytes(b"\x1aE\xdf\xa3\x9fB\x86\x81\x01B\xf7\x81\x01webm" + bytes(4000))
    else:
        write_good(path, index, ext)
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


def write_overstated_mp3(path: Path, seconds: float = 30.0, sr: int = 32000,
                         excess: float = 0.01, seed: int = 0) -> Path:
    """An intact MP3 (soundfile's LAME encoder) whose Xing header counts ``excess`` more
    frames than the stream holds, as real MP3s' headers often do: it decodes whole."""
    import struct

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = (0.3 * np.sin(2 * np.pi * rng.uniform(150, 900) * t)
            + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave, sr, format="MP3", subtype="MPEG_LAYER_III")
    data = bytearray(path.read_bytes())
    at = data.find(b"Xing")
    assert at >= 0 and data[at + 7] & 1, "no frame count in the MP3's Xing header"
    frames = struct.unpack(">I", data[at + 8:at + 12])[0]
    data[at + 8:at + 12] = struct.pack(">I", int(frames * (1 + excess)) + 1)
    path.write_bytes(bytes(data))
    return path


def write_absurd_rate(path: Path, rate: int = 2_147_483_647) -> Path:
    """A WAV whose header claims ``rate`` Hz (the samples are a fine tone)."""
    import struct

    t = np.arange(16000) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000,
             subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[24:28] = struct.pack("<I", rate)
    data[28:32] = struct.pack("<I", min(rate * 2, 0xFFFFFFFF))  # byte rate
    path.write_bytes(bytes(data))
    return path


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


def fmc_ytid(i: int) -> str:
    """An 11-character YouTube id; every third one holds ``_`` (cut short in SunoCaps)."""
    return f"Ab{i:03d}_cD-eF" if i % 3 == 1 else f"-x{i:03d}Kq9vZ"


def make_fakemusiccaps(root: Path, n_ytids: int = 12, sunocaps: bool = True,
                       real: bool = True, no_real: tuple[int, ...] = (10,)) -> dict[str, str]:
    """FakeMusicCaps as unpacked from its zip: MusicCaps/<ytid>.wav (not for the ytids in
    ``no_real``; none with ``real=False``, a copy with the fakes only), one or two generators
    per ytid, SunoCaps/ with one exact ytid name, one cut at its first ``_`` and one matching
    no ytid, and a ``__MACOSX/`` copy. Returns the broken files."""
    for i in range(n_ytids):
        ytid = fmc_ytid(i)
        if real and i not in no_real:
            write_good(root / "MusicCaps" / ytid, i, ".wav")
        for gen in {FMC_GENERATORS[i % 5], FMC_GENERATORS[(i * 2) % 5]}:
            write_good(root / gen / ytid, i + 1, ".wav")
    if sunocaps:
        for name in (fmc_ytid(0), fmc_ytid(1).split("_")[0], "Zq9OnlySuno"):
            write_good(root / "SunoCaps" / name, 2, ".wav")
    write_good(root / "__MACOSX" / "MusicGen_medium" / fmc_ytid(0), 0, ".wav")
    (root / "MusicGen_medium" / f"._{fmc_ytid(0)}.wav").write_bytes(b"resource fork")
    paths = [root / FMC_GENERATORS[i] / f"{fmc_ytid(i)}.wav" for i in range(4)]
    paths.append(root / ("MusicCaps" if real else "musicldm") / f"{fmc_ytid(11)}.wav")
    return write_broken(paths)


SONICS_REAL_COLUMNS = ["id", "filename", "title", "artist", "year", "lyrics",
                       "lyrics_features", "duration", "youtube_id", "label", "artist_overlap",
                       "target", "skip_time", "no_vocal", "split"]
SONICS_FAKE_COLUMNS = ["id", "filename", "title", "duration", "algorithm", "style", "source",
                       "lyrics_features", "topic", "genre", "mood", "label", "target", "split"]


def _sonics_real_rows() -> list[dict[str, str]]:
    """16 songs: train 0-7, valid 8-11, test 12-15; song 4 is 25 s long and song 5 has no
    vocals (both left out by the official filters)."""
    splits = ["train"] * 8 + ["valid"] * 4 + ["test"] * 4
    return [{"id": str(i + 1), "filename": f"real_song_{i + 1}", "title": f"Song {i}",
             "artist": f"Artist {i % 5}", "year": "2001", "lyrics": "la la",
             "lyrics_features": "{}", "duration": "25.0" if i == 4 else "183.4",
             "youtube_id": f"yt{i:09d}", "label": "real", "artist_overlap": "False",
             "target": "0", "skip_time": "3.2", "no_vocal": "True" if i == 5 else "False",
             "split": split} for i, split in enumerate(splits)]


def _sonics_fake_rows() -> list[dict[str, str]]:
    """Ids 1-9 (their own numbering: the same numbers as the real songs'), two renderings
    each (``_0``, ``_1``): ids 1-4 train, 5-6 valid, 7-8 test; 4's second is 12 s long; id 9
    (train) is listed, never on disk."""
    rows = []
    for k in range(1, 10):
        split = "train" if k <= 4 or k == 9 else "valid" if k <= 6 else "test"
        where = "suno" if k % 2 else "udio"
        for version in (0, 1):
            rows.append({"id": str(k), "filename": f"fake_{k}_{where}_{version}",
                         "title": f"Fake {k}", "duration": "12.0" if (k, version) == (4, 1)
                         else "95.0", "algorithm": "chirp-v3.5" if where == "suno"
                         else "udio-130", "style": "pop", "source": where,
                         "lyrics_features": "{}", "topic": "Star Trek", "genre": "salsa",
                         "mood": "tense", "label": ["full fake", "half fake", "mostly fake"][k % 3],
                         "target": "1", "split": split})
    return rows


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def make_sonics(root: Path, layout: str = "unzipped",
                real_formats: tuple[str, ...] = (".mp3", ".opus", ".flac")) -> dict[str, str]:
    """SONICS as downloaded from Hugging Face: real_songs.csv and fake_songs.csv with the
    README's columns, the fakes as ``fake_songs/part_01.zip`` and ``part_02.zip`` (entries
    ``fake_songs/<filename>.mp3``; ``layout="zipped"``), or as unpacked in place:
    ``fake_songs/fake_songs/*.mp3`` (``"unzipped"``, with a ``__MACOSX/`` leftover), and
    the real songs downloaded by the user into ``real_songs/`` in ``real_formats`` (song 3
    never downloaded; none with ``"fakes_only"``). Returns the broken files (unzipped)."""
    import zipfile

    root.mkdir(parents=True, exist_ok=True)
    real_rows, fake_rows = _sonics_real_rows(), _sonics_fake_rows()
    _write_csv(root / "real_songs.csv", SONICS_REAL_COLUMNS, real_rows)
    _write_csv(root / "fake_songs.csv", SONICS_FAKE_COLUMNS, fake_rows)
    nested = root / "fake_songs" / "fake_songs"
    songs = root / "real_songs"
    broken_paths = [songs / "real_song_7.wav", songs / "real_song_8.wav",
                    nested / "fake_3_suno_0.wav", nested / "fake_3_suno_1.wav",
                    nested / "fake_2_udio_1.wav"]
    for i, row in enumerate(fake_rows):
        if row["id"] != "9" and nested / f"{row['filename']}.wav" not in broken_paths:
            write_good(nested / row["filename"], i, ".mp3")
    write_good(root / "fake_songs" / "__MACOSX" / "fake_songs" / "fake_1_suno_0", 0, ".wav")
    for i, row in enumerate(real_rows):
        if i not in (3, 6, 7):
            write_download(songs / row["filename"], i, real_formats[i % len(real_formats)])
    broken = write_broken(broken_paths)
    if layout == "fakes_only":
        shutil.rmtree(root / "real_songs")
        broken = {k: v for k, v in broken.items() if "/real_songs/" not in k}
    if layout == "zipped":
        files = sorted(nested.iterdir())
        for part, chunk in enumerate((files[: len(files) // 2], files[len(files) // 2:]), 1):
            with zipfile.ZipFile(root / "fake_songs" / f"part_{part:02d}.zip", "w") as archive:
                for path in chunk:
                    archive.write(path, f"fake_songs/{path.name}")
                    path.unlink()
        nested.rmdir()
        return {}
    return broken
