"""Feature cache: each entry is computed once, memory-mapped, written atomically, locked.

An entry is keyed by a hash of everything upstream of it (source, clips of the split,
distortion and its seed, feature config). Parallel sweep jobs share the cache: a file lock
makes the first job build an entry while the others wait and then read it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from deepfake_detect.data.audio import AudioError
from deepfake_detect.data.clips import Clip

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
Work = Callable[[Clip], tuple[np.ndarray, dict[str, Any]]]


@dataclass
class CacheEntry:
    """A built entry: ``features[i]`` belongs to ``rows[i]``; ``skipped`` lists bad clips."""

    path: Path
    features: np.ndarray
    rows: list[dict[str, Any]]
    skipped: list[dict[str, Any]] = field(default_factory=list)

    @property
    def labels(self) -> np.ndarray:
        return np.array([row["label"] for row in self.rows], dtype=np.int64)


@dataclass
class BuildStats:
    """How many entries were computed or reused, and how many clips were transformed."""

    built: int = 0
    reused: int = 0
    clips_computed: int = 0
    rebuilt_corrupt: int = 0

    def add(self, other: BuildStats) -> None:
        for key in vars(self):
            setattr(self, key, getattr(self, key) + getattr(other, key))


def entry_key(parts: dict[str, Any]) -> str:
    """A stable hash of everything upstream of an entry."""
    blob = json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _checksum(array: np.ndarray) -> str:
    crc = 0
    flat = array.reshape(len(array), -1) if array.ndim > 1 else array
    for start in range(0, len(flat), 1024):
        crc = zlib.crc32(np.ascontiguousarray(flat[start:start + 1024]).tobytes(), crc)
    return f"{crc:08x}"


class FeatureCache:
    """A folder of entries ``<root>/<key>/{features.npy, clips.json, meta.json}``."""

    def __init__(self, root: str | Path, workers: int = 1):
        self.root = Path(root)
        self.workers = max(1, int(workers))

    def get_or_build(self, parts: dict[str, Any], clips: Sequence[Clip], work: Work,
                     shape: tuple[int, ...], desc: str) -> tuple[CacheEntry, BuildStats]:
        """Load the entry for ``parts`` or build it by running ``work`` on every clip."""
        key = entry_key(parts)
        path = self.root / key
        self.root.mkdir(parents=True, exist_ok=True)
        stats = BuildStats()
        with FileLock(str(self.root / f"{key}.lock")):
            if path.exists():
                entry, problem = _load(path, shape)
                if entry is not None:
                    stats.reused = 1
                    log.info("cache hit: %s (%s)", desc, key[:12])
                    return entry, stats
                log.warning("cache entry %s for %s is corrupt (%s): rebuilding it",
                            path, desc, problem)
                stats.rebuilt_corrupt = 1
                shutil.rmtree(path, ignore_errors=True)
            self._build(path, parts, clips, work, shape, desc)
            stats.built = 1
            stats.clips_computed = len(clips)
            entry, problem = _load(path, shape)
            assert entry is not None, problem
            return entry, stats

    def _build(self, path: Path, parts: dict[str, Any], clips: Sequence[Clip], work: Work,
               shape: tuple[int, ...], desc: str) -> None:
        for stale in path.parent.glob(f"{path.name}.tmp-*"):  # left by a killed build
            shutil.rmtree(stale, ignore_errors=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        tmp.mkdir(parents=True)
        n = len(clips)
        data = np.lib.format.open_memmap(tmp / "features.npy", mode="w+", dtype=np.float32,
                                         shape=(n, *shape))
        rows: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        for clip, result in zip(clips, self._run(work, clips, desc), strict=True):
            if isinstance(result, str):
                skipped.append({"clip_id": clip.clip_id, "path": clip.path or "",
                                "label": clip.label, "reason": result})
                continue
            features, params = result
            data[len(rows)] = features
            rows.append({"clip_id": clip.clip_id, "label": clip.label, "group": clip.group,
                         "generator": clip.generator, "path": clip.path or "",
                         "params": params})
        data.flush()
        del data
        if len(rows) < n:  # shrink to the clips that were usable
            full = np.load(tmp / "features.npy", mmap_mode="r")[: len(rows)].copy()
            np.save(tmp / "features.npy", full)
        features = np.load(tmp / "features.npy", mmap_mode="r")
        _write_json(tmp / "clips.json", {"rows": rows, "skipped": skipped})
        _write_json(tmp / "meta.json", {"parts": parts, "shape": list(features.shape),
                                        "checksum": _checksum(features), "desc": desc})
        del features
        os.replace(tmp, path)
        if skipped:
            log.warning("%s: skipped %d of %d clips (see %s)", desc, len(skipped), n,
                        path / "clips.json")

    def _run(self, work: Work, clips: Sequence[Clip], desc: str):
        from tqdm.auto import tqdm

        bar = dict(total=len(clips), desc=f"features [{desc}]", unit="clip",
                   disable=len(clips) < 2, leave=False)
        if self.workers == 1 or len(clips) < 2 * self.workers:
            yield from tqdm((_safe(work, clip) for clip in clips), **bar)
            return
        chunk = max(1, len(clips) // (self.workers * 8))
        with ProcessPoolExecutor(self.workers, mp_context=get_context("fork")) as pool:
            results = pool.map(_safe, [work] * len(clips), clips, chunksize=chunk)
            yield from tqdm(results, **bar)


def _safe(work: Work, clip: Clip) -> tuple[np.ndarray, dict[str, Any]] | str:
    """Run ``work``; a bad clip becomes its reason (a string) instead of an exception."""
    try:
        return work(clip)
    except AudioError as err:
        return str(err)


def _load(path: Path, shape: tuple[int, ...]) -> tuple[CacheEntry | None, str]:
    try:
        meta = json.loads((path / "meta.json").read_text())
        listing = json.loads((path / "clips.json").read_text())
        features = np.load(path / "features.npy", mmap_mode="r")
    except (OSError, ValueError) as err:
        return None, f"{type(err).__name__}: {err}"
    if tuple(features.shape[1:]) != tuple(shape) or list(features.shape) != meta["shape"]:
        return None, f"shape {features.shape} does not match {meta['shape']} / {shape}"
    if len(listing["rows"]) != len(features):
        return None, "clip list and feature array differ in length"
    if _checksum(features) != meta["checksum"]:
        return None, "checksum mismatch"
    return CacheEntry(path, features, listing["rows"], listing["skipped"]), ""


def _write_json(path: Path, payload: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str))
    os.replace(tmp, path)
