"""What FakeMusicCaps and SONICS take in the feature store per front end, and how long their
rows take to build: measured on small samples in each dataset's own layout made from real
recordings, with ``deepfake-detect-cache build`` (every clip under the training and test
distortions, the command's default), then extrapolated to the full datasets.

    python experiments/store_sizes.py --audio ../shared/audio --workers 1 2

The FakeMusicCaps sample is ``MusicCaps/`` and the five generators' folders of 10-second
16 kHz mono WAVs (one window each: its default ``center`` window); the SONICS sample is
``real_songs.csv`` / ``fake_songs.csv`` and 44.1 kHz stereo MP3 songs of 45-71 s, windowed
over the whole song (its default ``multi`` windows). Each front end's store is built
``--repeats`` times per worker count, each in a fresh folder (the fastest counts: the cores
are shared); a row's bytes on disk (its share of ``rows.npy`` and of ``index.json``) come
from the store's own listing. ``--encoder DIR`` adds the embedding front end with the
encoder saved there (``--make-encoder`` saves a wav2vec2-base-sized encoder with random
weights: the row's shape and cost are the architecture's, the values meaningless). Prints
one JSON line per (dataset, front end, workers), then one per (dataset, front end) with the
extrapolations; the audio made is removed afterwards.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

FRONT_ENDS = ("default", "stft", "cqt", "fakeprint")  # features=<name>; default: log-mel
MODELS = {"fakeprint": "cnn1d", "embedding": "embedding"}  # resnet18 reads the others
GENERATORS = ("MusicGen_medium", "musicldm", "audioldm2", "stable_audio_open", "mustango")
# The full datasets (docs/DESIGN.md, the datasets' READMEs): FakeMusicCaps' 5,521 real and
# 27,605 generated 10-s clips; SONICS' 97,164 songs, 4,751 hours.
FMC_FILES = 33_126
SONICS_SONGS, SONICS_HOURS = 97_164, 4_751
WINDOW_S = 4.0  # the default features.duration: SONICS' multi windows hop by it
SONICS_SAMPLE = {  # shared recording (by file-name start) -> (csv, split)
    "442789": ("real", "train"), "Kevin_MacLeod_-_Vibe_Ace": ("real", "test"),
    "147793": ("fake", "train"), "Hungarian_Dance": ("fake", "test"),
}


def recordings(audio: Path) -> list[Path]:
    """The shared recordings, sorted (the MANIFEST's files)."""
    return sorted(p for p in audio.rglob("*") if p.suffix.lower() in (".wav", ".ogg"))


def read(path: Path, rate: int, channels: int) -> np.ndarray:
    """``path`` as float32 (frames, channels) at ``rate``."""
    wave, native = sf.read(path, dtype="float32", always_2d=True)
    wave = wave[:, :channels] if wave.shape[1] >= channels else np.repeat(wave, channels, 1)
    return soxr.resample(wave, native, rate) if native != rate else wave


def make_fakemusiccaps(root: Path, audio: Path, ytids: int) -> int:
    """``ytids`` captions, each a real clip and one clip per generator: 10-s windows of the
    shared recordings at 16 kHz mono. Returns the files written."""
    pieces = [read(p, 16000, 1)[:, 0] for p in recordings(audio)]
    written = 0
    for i in range(ytids):
        ytid = f"-x{i:03d}Kq9vZ"
        for k, folder in enumerate(("MusicCaps", *GENERATORS)):
            wave = pieces[(i * 6 + k) % len(pieces)]
            wave = np.tile(wave, int(np.ceil(160000 / len(wave))))[:160000]
            (root / folder).mkdir(parents=True, exist_ok=True)
            sf.write(root / folder / f"{ytid}.wav", wave, 16000, subtype="PCM_16")
            written += 1
    return written


def make_sonics(root: Path, audio: Path) -> float:
    """Four songs in SONICS' layout (CSV rows with its columns, MP3s at 44.1 kHz stereo).
    Returns the seconds of audio written."""
    by_name = {p.name: p for p in recordings(audio)}
    rows: dict[str, list[dict[str, str]]] = {"real": [], "fake": []}
    total = 0.0
    for n, (start, (kind, split)) in enumerate(SONICS_SAMPLE.items()):
        source = next(p for name, p in by_name.items() if name.startswith(start))
        wave = read(source, 44100, 2)
        folder = root / f"{kind}_songs"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{kind}_song_{n}"
        sf.write(folder / f"{name}.mp3", wave, 44100, format="MP3")
        seconds = sf.info(str(folder / f"{name}.mp3")).duration
        total += seconds
        row = {"id": str(n), "filename": name, "duration": f"{seconds:.1f}", "split": split,
               "label": "real" if kind == "real" else "full fake",
               "target": "0" if kind == "real" else "1", "no_vocal": "False"}
        if kind == "fake":
            row["algorithm"] = "chirp-v3.5"
        rows[kind].append(row)
    for kind, listed in rows.items():
        with (root / f"{kind}_songs.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=sorted({k for r in listed for k in r}))
            writer.writeheader()
            writer.writerows(listed)
    return total


def make_encoder(folder: Path) -> Path:
    """A wav2vec2-base-sized encoder (12 layers, width 768) with random weights, saved."""
    import torch
    import transformers

    torch.manual_seed(0)
    transformers.Wav2Vec2Model(transformers.Wav2Vec2Config()).save_pretrained(folder)
    return folder


def build(dataset: str, root: Path, store: Path, front_end: str, workers: int,
          encoder: Path | None, repeats: int = 1) -> dict[str, Any]:
    """``deepfake-detect-cache build`` for one front end, ``repeats`` times in fresh stores
    (the fastest counts: the cores are shared); its time and the store's size."""
    runs = []
    for k in range(repeats):
        runs.append(build_once(dataset, root, store.parent / f"run{k}" / store.name,
                               front_end, workers, encoder))
    best = min(runs, key=lambda r: r["build_s"])
    return {**best, "build_s_each": [r["build_s"] for r in runs]}


def build_once(dataset: str, root: Path, store: Path, front_end: str, workers: int,
               encoder: Path | None) -> dict[str, Any]:
    """``deepfake-detect-cache build`` for one front end; its time and the store's size."""
    overrides = [f"data={dataset}", f"data.source.root={root}", f"features={front_end}",
                 f"data.cache.dir={store}", f"data.cache.workers={workers}",
                 f"paths.root={store.parent / 'out'}"]
    if front_end in MODELS:  # a model family that reads this front end (rows do not care)
        overrides.append(f"model={MODELS[front_end]}")
    if front_end == "embedding":
        overrides.append(f"features.encoder={encoder}")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "deepfake_detect.cli.cache", "build",
                           *overrides], capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"build {dataset} {front_end} failed:\n{done.stderr[-3000:]}")
    line = done.stdout.strip().splitlines()[-1]  # "shard 0/1: N rows computed, ... T s ..."
    rows = int(re.search(r"(\d+) rows computed", line).group(1))
    build_s = float(re.search(r"([\d.]+) s \(store", line).group(1))
    from deepfake_detect.data.cache import list_folders

    info, = list_folders(store)
    rows_bytes = sum((s / "rows.npy").stat().st_size for s in (info.path / "shards").iterdir())
    index_bytes = sum((s / "index.json").stat().st_size
                      for s in (info.path / "shards").iterdir())
    return {"dataset": dataset, "front_end": front_end, "workers": workers, "rows": rows,
            "row_shape": json.loads((info.path / "config.json").read_text())["shape"],
            "bytes_per_row": round(info.bytes / rows, 1),
            "npy_bytes_per_row": round(rows_bytes / rows, 1),
            "index_bytes_per_row": round(index_bytes / rows, 1),
            "build_s": build_s, "s_per_row": round(build_s / rows, 4),
            "command_s": round(wall, 1)}


def extrapolate(results: list[dict[str, Any]], sonics_windows: int, sonics_songs: int,
                sonics_seconds: float, cores: tuple[int, ...],
                efficiency: float) -> list[dict[str, Any]]:
    """Per dataset and front end: the full dataset's rows, store size and build time at 1 and
    2 workers (measured per row) and at ``cores`` (one worker's time per row over cores x
    ``efficiency``)."""
    full_windows = {"fakemusiccaps": FMC_FILES,
                    "sonics": round(SONICS_HOURS * 3600 / WINDOW_S - SONICS_SONGS / 2)}
    out = []
    for dataset in ("fakemusiccaps", "sonics"):
        for front_end in dict.fromkeys(r["front_end"] for r in results):
            mine = {r["workers"]: r for r in results
                    if r["dataset"] == dataset and r["front_end"] == front_end}
            if not mine:
                continue
            first = next(iter(mine.values()))
            distortions = first["rows"] / (FMC_SAMPLE_FILES if dataset == "fakemusiccaps"
                                           else sonics_windows)
            rows = full_windows[dataset] * distortions
            entry = {"dataset": dataset, "front_end": front_end, "extrapolated": True,
                     "windows": full_windows[dataset], "rows": round(rows),
                     "store_gb": round(rows * first["bytes_per_row"] / 1e9, 1),
                     "per_distortion_gb": round(full_windows[dataset]
                                                * first["bytes_per_row"] / 1e9, 2)}
            if dataset == "sonics" and front_end == "fakeprint":  # whole-song rows
                entry["song_length_factor"] = round(
                    SONICS_HOURS * 3600 / SONICS_SONGS / (sonics_seconds / sonics_songs), 2)
            factor = entry.get("song_length_factor", 1.0)
            for workers, r in sorted(mine.items()):
                entry[f"hours_{workers}"] = round(rows * r["s_per_row"] * factor / 3600, 1)
            if 1 in mine and 2 in mine:
                entry["efficiency_2"] = round(mine[1]["s_per_row"] / mine[2]["s_per_row"] / 2,
                                              2)
            if 1 in mine:
                for n in cores:
                    entry[f"hours_{n}"] = round(rows * mine[1]["s_per_row"] * factor
                                                / (n * efficiency) / 3600, 2)
            out.append(entry)
    return out


FMC_SAMPLE_FILES = 0  # set by main: the FakeMusicCaps sample's files


def main(argv: list[str] | None = None) -> int:
    global FMC_SAMPLE_FILES
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", type=Path, default=Path("../shared/audio"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--front-ends", nargs="+", default=list(FRONT_ENDS))
    parser.add_argument("--datasets", nargs="+", default=["fakemusiccaps", "sonics"])
    parser.add_argument("--ytids", type=int, default=4, help="FakeMusicCaps captions (x6 files)")
    parser.add_argument("--encoder", type=Path, default=None,
                        help="a saved encoder folder: adds features=embedding")
    parser.add_argument("--make-encoder", action="store_true",
                        help="save a wav2vec2-base-sized random encoder for --encoder")
    parser.add_argument("--cores", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--efficiency", type=float, default=0.62,
                        help="the speed-up per core assumed at --cores (0.62: a 16-core "
                             "build's, docs/performance.md figure c)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="builds per (dataset, front end, workers); the fastest counts")
    args = parser.parse_args(argv)
    front_ends = list(args.front_ends)
    with tempfile.TemporaryDirectory(prefix="deepfake-detect-sizes-") as tmp:
        work = Path(tmp)
        encoder = args.encoder
        if args.make_encoder:
            encoder = make_encoder(work / "encoder")
        if encoder is not None:
            front_ends.append("embedding")
        FMC_SAMPLE_FILES = make_fakemusiccaps(work / "fmc", args.audio, args.ytids)
        seconds = make_sonics(work / "sonics", args.audio)
        from deepfake_detect.data.sonics import SonicsSource

        windows = len(SonicsSource(root=str(work / "sonics"), duration=WINDOW_S,
                                   windows={"mode": "multi"}).clips())
        print(json.dumps({"fmc_files": FMC_SAMPLE_FILES, "sonics_songs": len(SONICS_SAMPLE),
                          "sonics_seconds": round(seconds, 1), "sonics_windows": windows}),
              flush=True)
        results = []
        roots = {"fakemusiccaps": work / "fmc", "sonics": work / "sonics"}
        for dataset in args.datasets:
            for front_end in front_ends:
                for workers in args.workers:
                    store = work / f"store-{dataset}-{front_end}-{workers}" / "cache"
                    result = build(dataset, roots[dataset], store, front_end, workers, encoder,
                                   args.repeats)
                    print(json.dumps(result), flush=True)
                    results.append(result)
        for entry in extrapolate(results, windows, len(SONICS_SAMPLE), seconds,
                                 tuple(args.cores), args.efficiency):
            print(json.dumps(entry), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
