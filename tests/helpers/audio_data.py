"""Audio datasets written on disk for tests: good files in many formats, broken files with
the reason they must be skipped for, and the layouts of every file source."""

from __future__ import annotations

import csv
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
