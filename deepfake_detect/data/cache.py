"""Feature cache: each entry is computed once, memory-mapped, written atomically, locked.

An entry is keyed by a hash of everything upstream of it (source, clips of the split,
distortion and its seed, feature config). Parallel sweep jobs share the cache: a file lock
makes the first job build an entry while the others wait and then read it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from functools import cached_property
from multiprocessing import get_context
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from filelock import FileLock
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from deepfake_detect import atomic
from deepfake_detect.data.audio import AudioError
from deepfake_detect.data.clips import Clip

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
Work = Callable[[Clip], tuple[np.ndarray, dict[str, Any]]]
Result = tuple[np.ndarray, dict[str, Any]] | str  # a clip's features and params, or why not
_WARM: set[Any] = set()  # the kinds of work this process has run once (imports, numba done)


def _warm_key(work: Work) -> Any:
    """What decides which lazy imports and numba functions ``work`` needs: its ``warm_key``
    attribute where it has one (with its type); else the code it runs (a function, closure,
    method or ``functools.partial``), or its type."""
    key = getattr(work, "warm_key", None)
    if key is not None:
        return type(work), key
    target = getattr(work, "func", work)  # a functools.partial runs its func
    return getattr(target, "__code__", None) or type(target)


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


def available_cores() -> int:
    """The cores this process may run on (``data.cache.workers: auto``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def entry_key(parts: dict[str, Any]) -> str:
    """A stable hash of everything upstream of an entry."""
    blob = json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _write_header(handle: BinaryIO, shape: tuple[int, ...]) -> int:
    """Write a float32 ``.npy`` header at the handle's position; return where data starts.

    numpy pads the header so that its length does not depend on the first dimension, which
    lets the build rewrite it in place once it knows how many clips were usable.
    """
    np.lib.format.write_array_header_1_0(
        handle, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                 "fortran_order": False, "shape": tuple(int(d) for d in shape)})
    return handle.tell()


def _file_checksum(path: Path, block: int = 1 << 20) -> str:
    """crc32 of an ``.npy`` file's data, read into one reused buffer (no memory map, so
    checking an entry needs no memory that grows with it)."""
    crc = 0
    buffer = bytearray(block)
    view = memoryview(buffer)
    with open(path, "rb") as handle:
        major, _ = np.lib.format.read_magic(handle)
        read_header = (np.lib.format.read_array_header_1_0 if major == 1
                       else np.lib.format.read_array_header_2_0)
        read_header(handle)
        while size := handle.readinto(buffer):
            crc = zlib.crc32(view[:size], crc)
    return f"{crc:08x}"


@dataclass
class Request:
    """One entry to load or build: what it depends on, its clips, the per-clip work."""

    parts: dict[str, Any]
    clips: Sequence[Clip]
    work: Work
    shape: tuple[int, ...]
    desc: str

    @cached_property
    def key(self) -> str:
        return entry_key(self.parts)


class FeatureCache:
    """A folder of entries ``<root>/<key>/{features.npy, clips.json, meta.json}``."""

    def __init__(self, root: str | Path, workers: int | str = 1):
        self.root = Path(root)
        self.workers = available_cores() if workers == "auto" else max(1, int(workers))

    def get_or_build(self, parts: dict[str, Any], clips: Sequence[Clip], work: Work,
                     shape: tuple[int, ...], desc: str) -> tuple[CacheEntry, BuildStats]:
        """Load the entry for ``parts`` or build it by running ``work`` on every clip."""
        return self.get_or_build_many([Request(parts, clips, work, shape, desc)])[0]

    def get_or_build_many(self, requests: Sequence[Request]
                          ) -> list[tuple[CacheEntry, BuildStats]]:
        """Load each request's entry; build all the missing ones in one pass over one pool of
        workers, so that small entries (val, test) share the cores with the large ones
        instead of each waiting for its own pool (or running alone)."""
        self.root.mkdir(parents=True, exist_ok=True)
        unique: dict[str, Request] = {}
        for request in requests:
            unique.setdefault(request.key, request)
        stats = {key: BuildStats() for key in unique}
        entries: dict[str, CacheEntry] = {}
        for key, request in unique.items():  # hits, each under its own lock
            with self._lock(key):
                hit = self._load_or_clear(key, request, stats[key])
            if hit is not None:
                entries[key] = hit
        missing = sorted(key for key in unique if key not in entries)
        with ExitStack() as locks:
            for key in missing:  # in key order: jobs that share entries cannot deadlock
                locks.enter_context(self._lock(key))
            todo = []
            for key in sorted(missing, key=list(unique).index):  # built in request order
                hit = self._load_or_clear(key, unique[key], stats[key])  # built meanwhile?
                if hit is None:
                    todo.append(unique[key])
                else:
                    entries[key] = hit
                    stats[key].rebuilt_corrupt = 0  # another job rebuilt it, not this one
            tasks = [(request.work, clip) for request in todo for clip in request.clips]
            with closing(self._run(tasks, ", ".join(r.desc for r in todo))) as results:
                for request in todo:
                    self._build(self.root / request.key, request,
                                itertools.islice(results, len(request.clips)))
            for request in todo:  # checked once the pool is done: no results pile up meanwhile
                entry, problem = _load(self.root / request.key, request.shape)
                assert entry is not None, problem
                entries[request.key] = entry
                stats[request.key].built = 1
                stats[request.key].clips_computed = len(request.clips)
        return [(entries[r.key], stats[r.key] if r is unique[r.key] else BuildStats(reused=1))
                for r in requests]

    def _lock(self, key: str) -> FileLock:
        return FileLock(str(self.root / f"{key}.lock"))

    def _load_or_clear(self, key: str, request: Request, stats: BuildStats
                       ) -> CacheEntry | None:
        """The entry if it is on disk and sound; a corrupt one is removed (and counted)."""
        path = self.root / key
        if not path.exists():
            return None
        entry, problem = _load(path, request.shape)
        if entry is not None:
            stats.reused = 1
            log.debug("cache hit: %s (%s)", request.desc, key[:12])
            return entry
        log.warning("cache entry %s for %s is corrupt (%s): rebuilding it", path,
                    request.desc, problem)
        stats.rebuilt_corrupt = 1
        shutil.rmtree(path, ignore_errors=True)
        return None

    def _build(self, path: Path, request: Request, results: Iterator[Result]) -> None:
        """Write ``request``'s entry from its clips' ``results`` (in clip order)."""
        for stale in atomic.temporaries(path):  # left by a killed build (we hold the entry's lock)
            atomic.remove(stale)
        size = len(request.clips) * int(np.prod(request.shape)) * 4  # a full disk says it
        with atomic.atomic_path(path, size) as tmp:
            tmp.mkdir()
            rows, skipped, crc = self._write_rows(tmp / "features.npy", request, results)
            listing = json.dumps({"rows": rows, "skipped": skipped}, indent=1, default=str)
            (tmp / "clips.json").write_text(listing)
            meta = {"parts": request.parts, "shape": [len(rows), *request.shape],
                    "checksum": f"{crc:08x}", "clips_checksum": _text_checksum(listing),
                    "desc": request.desc}
            meta["meta_checksum"] = _meta_checksum(meta)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        if skipped:
            log.warning("%s: skipped %d of %d clips (see %s)", request.desc, len(skipped),
                        len(request.clips), path / "clips.json")

    @staticmethod
    def _write_rows(target: Path, request: Request, results: Iterator[Result]
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
        """Append each usable clip's row to ``target`` (an ``.npy``); returns the rows'
        metadata, the skipped clips and the crc32 of the data."""
        shape, desc = tuple(request.shape), request.desc
        rows: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        crc = 0
        # Rows are appended with plain writes (no memory map): the build's memory does not
        # grow with the entry, and the page cache, not the process, holds what was written.
        with open(target, "wb") as handle:
            offset = _write_header(handle, (len(request.clips), *shape))
            for clip, result in zip(request.clips, results, strict=True):
                if isinstance(result, str):
                    skipped.append({"clip_id": clip.clip_id, "path": clip.path or "",
                                    "label": clip.label, "reason": result})
                    continue
                features, params = result
                row = np.ascontiguousarray(features, dtype=np.float32)
                if row.shape != shape:
                    raise ValueError(f"{desc}: clip {clip.clip_id} gave an array of shape "
                                     f"{row.shape}, expected {shape}")
                handle.write(row.data)
                crc = zlib.crc32(row.data, crc)
                rows.append({"clip_id": clip.clip_id, "label": clip.label,
                             "group": clip.group, "generator": clip.generator,
                             "path": clip.path or "", "params": params})
            handle.seek(0)  # the header's shape counts the usable clips only
            if _write_header(handle, (len(rows), *shape)) != offset:
                raise RuntimeError("npy header length changed")  # numpy pads it: never
        return rows, skipped, crc

    def _run(self, tasks: Sequence[tuple[Work, Clip]], desc: str) -> Iterator[Result]:
        """Each task's result, in order: here with one worker, else from a pool of forks."""
        bar = tqdm(total=len(tasks), desc=f"features [{desc}]", unit="clip",
                   disable=len(tasks) < 2, leave=False)
        # One BLAS/OpenMP thread per process whatever the worker count, so that 1 and N
        # workers give bit-identical entries (summation order follows the thread count), and
        # N workers do not oversubscribe the cores. The limit covers the libraries loaded so
        # far; it is set again after each kind of work's first clip, which may load more.
        # Workers are forked under it and inherit it: setting it in each worker instead
        # (threadpoolctl scans every loaded library, torch's too) kept 16 workers idle for
        # 0.8 s and made each one's first clip twice as slow.
        with bar, ExitStack() as limits:
            limits.enter_context(threadpool_limits(1))
            if self.workers == 1 or len(tasks) < 2 * self.workers:
                seen: set[Any] = set()
                for task in tasks:
                    result = _safe_here(task)
                    if (key := _warm_key(task[0])) not in seen:
                        seen.add(key)
                        limits.enter_context(threadpool_limits(1))
                    yield result
                    bar.update()
                return
            done = _warm_up(tasks)
            bar.update(len(done))
            limits.enter_context(threadpool_limits(1))
            rest = [task for index, task in enumerate(tasks) if index not in done]
            chunk = max(1, len(rest) // (self.workers * 8))
            pool = ProcessPoolExecutor(self.workers, mp_context=get_context("fork"))
            try:
                results = pool.map(_safe, rest, chunksize=chunk)
                for index in range(len(tasks)):
                    if index in done:
                        yield done.pop(index)
                    else:
                        yield next(results)
                        bar.update()
            finally:  # on an error or Ctrl-C, clips not yet started are dropped
                pool.shutdown(wait=True, cancel_futures=True)


WARM_UP_TRIES = 3  # clips of one kind of work tried here before the workers are left to it


def _warm_up(tasks: Sequence[tuple[Work, Clip]]) -> dict[int, Result]:
    """Run here, before forking, the first clip of each kind of work this process has not
    run yet (the next one where a clip is bad, up to :data:`WARM_UP_TRIES`): the workers
    inherit its lazy imports and numba's compiled functions instead of each paying for them
    (seconds, and memory in every worker). Returns the results by task index."""
    done: dict[int, Result] = {}
    tries: dict[Any, int] = {}
    for index, task in enumerate(tasks):
        key = _warm_key(task[0])
        if key not in _WARM and tries.get(key, 0) < WARM_UP_TRIES:
            tries[key] = tries.get(key, 0) + 1
            done[index] = _safe_here(task)
    return done


def _safe_here(task: tuple[Work, Clip]) -> Result:
    """:func:`_safe` in this process, which is warm for that kind of work afterwards."""
    result = _safe(task)
    if not isinstance(result, str):
        _WARM.add(_warm_key(task[0]))
    return result


def _safe(task: tuple[Work, Clip]) -> Result:
    """Run ``work`` on ``clip``; a bad clip becomes its reason (a string), not an exception."""
    work, clip = task
    try:
        return work(clip)
    except AudioError as err:
        return str(err)


def _text_checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _meta_checksum(meta: dict[str, Any]) -> str:
    """A checksum of meta.json's own content (everything but this field)."""
    body = {k: v for k, v in meta.items() if k != "meta_checksum"}
    return _text_checksum(json.dumps(body, sort_keys=True, default=str))


def _load(path: Path, shape: tuple[int, ...]) -> tuple[CacheEntry | None, str]:
    """The entry at ``path`` if it is whole: its rows, clip list and metadata all match their
    checksums; else None and what is wrong."""
    try:
        meta = json.loads((path / "meta.json").read_text())
        text = (path / "clips.json").read_text()
        listing = json.loads(text)
        # Copy-on-write mapping: datasets wrap rows as tensors without copying them (and
        # without torch's read-only warning); nothing is ever written back to the file.
        features = np.load(path / "features.npy", mmap_mode="c")
    except (OSError, ValueError) as err:
        return None, f"{type(err).__name__}: {err}"
    if meta.get("meta_checksum") != _meta_checksum(meta):
        return None, "meta.json checksum mismatch"
    if meta.get("clips_checksum") != _text_checksum(text):
        return None, "clips.json checksum mismatch (the clip list was changed)"
    if tuple(features.shape[1:]) != tuple(shape) or list(features.shape) != meta["shape"]:
        return None, f"shape {features.shape} does not match {meta['shape']} / {shape}"
    if len(listing["rows"]) != len(features):
        return None, "clip list and feature array differ in length"
    if _file_checksum(path / "features.npy") != meta["checksum"]:
        return None, "checksum mismatch"
    return CacheEntry(path, features, listing["rows"], listing["skipped"]), ""

