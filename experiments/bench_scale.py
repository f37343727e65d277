"""What a study of many files costs before any feature is computed: listing a folder of N
short files, planning their windows (headers read), splitting them, and opening the feature
store for them, each through the code training uses.

    python experiments/bench_scale.py --files 50000

It writes one real WAV and N - 1 hard links to it (``--link symlink``: symbolic links) in the
``folder`` source's layout (``human/`` and ``ai/<generator>/``, half each), composes the
training config for it (``data=folder``, whole-file ``multi`` windows, the default features
and test distortions) and measures, each phase's wall time and peak RSS (this process's
high-water mark, reset before each phase where the kernel allows it):

- ``list``: ``FolderSource.list_files()`` (the folder walked, one clip per file);
- ``clips``: ``source.clips()``, listing again and planning every file's windows from its
  header (``plan_s`` is the difference);
- ``split``, ``kfold``, ``holdout``: ``split_clips`` with the default split, each fold of a
  5-fold cross-validation, and leaving generator 0 out; ``sets``: ``StudySets.splits`` (the
  split train uses, its checks and the band's header probes);
- ``keys``: every planned set's row keys (a stat of every file, the draws);
- ``build``: the store written for those keys with constructed rows (the store's own cost,
  not the features'), as ``bench_store.py`` does;
- ``cache_list``: ``deepfake-detect-cache list``'s reading (indexes only);
- ``open``: a fresh store read by ``StudySets.entries`` for every planned set: keys computed,
  indexes read, each row's crc32 checked once, the sets assembled (no row computed).

``--against M`` (default N / 5) measures the same at M files in the same run; ``per_file``
gives, per phase, (time at N / N) / (time at M / M): 1.0 when a phase grows linearly with
the files; ``worst`` the slowest of the timed phases and the highest peak and growth of
any (``write`` and ``build`` are set-up: not claims). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

GENERATORS = ("gen_a", "gen_b", "gen_c", "gen_d", "gen_e")
RATE = 16000


def write_folder(root: Path, files: int, seconds: float, link: str) -> int:
    """``files`` audio files under ``root`` (half human, the rest spread over
    :data:`GENERATORS`): one real WAV and links to it. Returns the bytes of real audio."""
    rng = np.random.default_rng(0)
    (root / "human").mkdir(parents=True)
    original = root / "original.wav"  # outside the class folders: not listed
    wave = 0.1 * rng.standard_normal(int(seconds * RATE)).astype(np.float32)
    sf.write(original, wave, RATE, subtype="PCM_16")
    folders = [root / "ai" / g for g in GENERATORS]
    for folder in folders:
        folder.mkdir(parents=True)
    make = os.link if link == "hard" else os.symlink
    for i in range(files):
        folder = root / "human" if i % 2 == 0 else folders[(i // 2) % len(folders)]
        make(original, folder / f"clip{i:06d}.wav")
    return original.stat().st_size


def memory_mb(field: str = "VmHWM") -> float:
    """This process's peak resident set since the last :func:`reset_peak` (``VmHWM``), or
    its resident set now (``VmRSS``), in MB."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
    """Reset the high-water mark to the current resident set (Linux: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def phase(figures: dict[str, Any], name: str) -> Iterator[None]:
    """Time the block and record its peak RSS as ``figures[name]``."""
    reset_peak()
    before = memory_mb("VmRSS")
    start = time.perf_counter()
    yield
    peak = memory_mb()
    figures[name] = {"s": round(time.perf_counter() - start, 3), "peak_mb": round(peak, 1),
                     "grew_mb": round(peak - before, 1)}


class Constructed:
    """A row per clip from its id (no audio: the store's own costs only)."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape

    def __call__(self, clip: Any) -> tuple[np.ndarray, dict]:
        value = zlib.crc32(clip.clip_id.encode()) % 997
        return np.full(self.shape, value, dtype=np.float32), {}


def measure(root: Path, files: int, seconds: float, link: str,
            overrides: list[str]) -> dict[str, Any]:
    """Every phase at ``files`` files, in a folder and store under ``root``."""
    from deepfake_detect.config import compose
    from deepfake_detect.data.cache import FeatureCache, Request, list_folders
    from deepfake_detect.data.keys import feature_parts, row_parts
    from deepfake_detect.data.sets import StudySets
    from deepfake_detect.data.splits import SplitConfig, split_clips
    from deepfake_detect.training.plan import datamodule_of, plan

    figures: dict[str, Any] = {}
    with phase(figures, "write"):
        audio_bytes = write_folder(root / "data", files, seconds, link)
    cfg = compose("train", ["data=folder", f"data.source.root={root / 'data'}",
                            "data.source.windows.mode=multi", f"paths.root={root / 'out'}",
                            "data.cache.workers=1", *overrides])
    planned = plan(cfg)
    dm = datamodule_of(planned)
    sets, source = dm.sets, dm.sets.source
    with phase(figures, "list"):
        listed = source.list_files()
    with phase(figures, "clips"):
        clips = source.clips()
    figures["plan_s"] = round(figures["clips"]["s"] - figures["list"]["s"], 3)
    base = sets.split_cfg
    with phase(figures, "split"):
        split = split_clips(clips, base)
    with phase(figures, "kfold"):
        folds = [split_clips(clips, SplitConfig(base.val, base.test, base.seed, folds=5,
                                                fold=k)) for k in range(5)]
    with phase(figures, "holdout"):
        held = split_clips(clips, SplitConfig(base.val, base.test, base.seed,
                                              holdout_generator=0))
    with phase(figures, "sets"):
        splits = sets.splits
    wanted = [(splits[s], d, name) for name, s, d in dm.plan()]
    with phase(figures, "keys"):
        keyed = [(c, d, name, [row_parts(source, clip, d, sets.seed) for clip in c])
                 for c, d, name in wanted]
        parts = feature_parts(sets.features, sets.store)
        requests = [Request(parts, c, Constructed(sets.shape), sets.shape, name, rp)
                    for c, d, name, rp in keyed]
        rows = sum(len(r.row_keys) for r in requests)
    store = Path(str(planned.data["cache"]["dir"]))
    with phase(figures, "build"):
        FeatureCache(store, workers=1).get_or_build_many(requests)
    with phase(figures, "cache_list"):
        infos = list_folders(store)
    del keyed, requests  # a job opening the store holds neither
    fresh = StudySets(source, base, FeatureCache(store, workers=1), sets.features, sets.seed,
                      sets.store)
    fresh.splits  # noqa: B018 - computed above already, as a job's split: not timed again
    with phase(figures, "open"):
        entries = fresh.entries(dm.plan())
    assert fresh.stats.clips_computed == 0, fresh.stats
    assert [len(e.rows) for e in entries.values()] == [len(c) for c, _, _ in wanted]
    counts = {"files": len(listed), "clips": len(clips),
              "split": {k: len(v) for k, v in split.items()},
              "kfold_test": [len(f["test"]) for f in folds],
              "holdout": {k: len(v) for k, v in held.items()},
              "sets": {name: len(entry.rows) for name, entry in entries.items()},
              "rows_keyed": rows, "store_rows": sum(i.rows for i in infos),
              "store_mb": round(sum(i.bytes for i in infos) / 1e6, 1),
              "row_shape": list(sets.shape), "audio_bytes": audio_bytes}
    return {**counts, "phases": figures}


TIMED = ("list", "clips", "split", "kfold", "holdout", "sets", "keys", "open", "cache_list")


def per_file(big: dict[str, Any], small: dict[str, Any]) -> dict[str, float | None]:
    """Per phase: the time per file at the larger size over that at the smaller one."""
    out: dict[str, float | None] = {}
    for name in TIMED:
        a, b = big["phases"][name]["s"], small["phases"][name]["s"]
        out[name] = (round((a / big["files"]) / (b / small["files"]), 2) if b > 0.01 and a > 0
                     else None)  # too short to compare
    return out


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=50000)
    parser.add_argument("--against", type=int, default=None,
                        help="a second, smaller size measured in the same run (default: "
                             "files / 5; 0: none)")
    parser.add_argument("--seconds", type=float, default=4.5,
                        help="each file's length (default 4.5: one 4-second window each)")
    parser.add_argument("--link", choices=("hard", "symlink"), default="hard")
    parser.add_argument("--dir", type=Path, default=None, help="where the folder goes")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="more overrides of conf/train.yaml (features=..., data.split...)")
    args = parser.parse_args(argv)
    against = args.files // 5 if args.against is None else args.against
    start = time.perf_counter()
    import deepfake_detect.training.plan  # noqa: F401 - what train imports, in the baseline

    imports = {"s": round(time.perf_counter() - start, 2), "peak_mb": round(memory_mb(), 1)}
    report: dict[str, Any] = {"imports": imports, "peak_reset": reset_peak()}
    sizes = [n for n in (against, args.files) if n]
    results = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="deepfake-detect-scale-", dir=args.dir) as tmp:
            results.append(measure(Path(tmp), n, args.seconds, args.link, args.overrides))
    report.update(results[-1])
    phases = report["phases"]
    slowest = max(TIMED, key=lambda name: phases[name]["s"])
    report["worst"] = {"phase": slowest, "s": phases[slowest]["s"],
                       "peak_mb": max(phases[name]["peak_mb"] for name in TIMED),
                       "grew_mb": max(phases[name]["grew_mb"] for name in TIMED)}
    if len(results) == 2:
        report["against"] = results[0]
        report["per_file"] = per_file(results[1], results[0])
    report["cores"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    report["load"] = [round(x, 2) for x in os.getloadavg()]
    out(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
