"""The feature store: each clip's row computed once, keyed by what it depends on.

A :class:`Request` asks for the rows of some clips: ``parts`` is what every row shares (the
kind of rows, the feature config; one store folder per distinct ``parts``) and ``row_parts``
is what each clip's row depends on beyond that (its audio's identity and window, the
distortion and the parameters drawn for the clip). Neither holds the split: a fold, seed,
held-out generator or sweep job reads the rows it needs and computes only the missing ones,
in one pool of forked workers for all the requests of a call (:mod:`.pool`). Rows live in
immutable, memory-mapped, checksummed shards (:mod:`.shards`). Parallel jobs share the
store: the missing rows are computed under file locks (one per store folder and first byte
of the row key, taken in order, so jobs cannot deadlock and jobs that need disjoint rows do
not wait for each other), re-checked once the locks are held, and written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from deepfake_detect import atomic
from deepfake_detect.config import one_of, require
from deepfake_detect.data.clips import Clip
from deepfake_detect.data.pool import Work, available_cores, run_tasks
from deepfake_detect.data.shards import CONFIG, USED, Folder, Rows, ShardWriter, new_shard_id

log = logging.getLogger(__name__)

__all__ = ["BuildStats", "CacheConfig", "CacheEntry", "FeatureCache", "Request",
           "available_cores", "entry_key"]

FORMAT_VERSION = 1
STORES = ("features", "waveform")
LOCK_BUCKETS = 256  # locks per store folder: by the row key's first byte


@dataclass(frozen=True)
class CacheConfig:
    """The ``data.cache`` node."""

    dir: str = "outputs/cache"
    workers: int | str = "auto"  # processes building rows; auto: one per available core
    store: str = "features"  # features (librosa log-mels) | waveform (log-mel on the device)

    def __post_init__(self) -> None:
        require(self.workers == "auto" or (isinstance(self.workers, int) and self.workers >= 1),
                "workers", f"must be an integer >= 1 or auto, got {self.workers!r}")
        one_of(self.store, STORES, "store")


@dataclass
class CacheEntry:
    """A set's rows: ``features[i]`` belongs to ``rows[i]``; ``skipped`` lists bad clips;
    ``keys[i]`` is row i's key in the store folder ``path``."""

    path: Path
    features: Rows | np.ndarray
    rows: list[dict[str, Any]]
    skipped: list[dict[str, Any]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    @property
    def labels(self) -> np.ndarray:
        return np.array([row["label"] for row in self.rows], dtype=np.int64)


@dataclass
class BuildStats:
    """Sets that needed computing (``built``) or were read whole (``reused``), rows
    computed (``clips_computed``), and corrupt shards found and rebuilt."""

    built: int = 0
    reused: int = 0
    clips_computed: int = 0
    rebuilt_corrupt: int = 0

    def add(self, other: BuildStats) -> None:
        for key in vars(self):
            setattr(self, key, getattr(self, key) + getattr(other, key))


def entry_key(parts: dict[str, Any]) -> str:
    """A stable hash of what a row (or a store folder) depends on."""
    blob = json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class Request:
    """The rows of ``clips`` under ``work``: ``parts`` is what they all share, ``row_parts[i]``
    what clip i's row depends on beyond it (default: the clip id)."""

    parts: dict[str, Any]
    clips: Sequence[Clip]
    work: Work
    shape: tuple[int, ...]
    desc: str
    row_parts: Sequence[dict[str, Any]] | None = None

    @cached_property
    def key(self) -> str:
        return entry_key({**self.parts, "shape": list(self.shape)})

    @cached_property
    def row_keys(self) -> list[str]:
        parts = self.row_parts or [{"clip_id": c.clip_id} for c in self.clips]
        assert len(parts) == len(self.clips), "one row_parts per clip"
        return [entry_key(p) for p in parts]

    @property
    def folder_name(self) -> str:
        return f"{self.parts.get('kind', 'rows')}-{self.key[:16]}"


class FeatureCache:
    """A folder of store folders ``<root>/<kind>-<key>/`` (see :mod:`.shards`)."""

    def __init__(self, root: str | Path, workers: int | str = 1):
        self.root = Path(root)
        self.workers = available_cores() if workers == "auto" else max(1, int(workers))
        self._folders: dict[str, Folder] = {}

    def get_or_build(self, parts: dict[str, Any], clips: Sequence[Clip], work: Work,
                     shape: tuple[int, ...], desc: str) -> tuple[CacheEntry, BuildStats]:
        """The rows of ``clips``, computing the missing ones with ``work``."""
        return self.get_or_build_many([Request(parts, clips, work, shape, desc)])[0]

    def get_or_build_many(self, requests: Sequence[Request]
                          ) -> list[tuple[CacheEntry, BuildStats]]:
        """Each request's rows; every missing row of all of them computed in one pass over
        one pool of workers (small sets share the cores with the large ones)."""
        self.root.mkdir(parents=True, exist_ok=True)
        folders = {r.key: self._folder(r) for r in requests}
        for folder in set(folders.values()):
            folder.refresh()
        stats = [BuildStats() for _ in requests]
        missing = _missing(requests, folders)
        if missing:
            with self._locks(missing, folders):
                for key in {key for key, _ in missing}:
                    folders[key].refresh()  # written meanwhile by another job?
                missing = _missing(requests, folders)
                self._compute(missing, requests, folders)
        for index, _ in missing.values():
            stats[index].clips_computed += 1
        for stat in stats:
            stat.built = int(stat.clips_computed > 0)
            stat.reused = 1 - stat.built
        corrupt = sum(len(f.take_corrupt()) for f in set(folders.values()))
        if stats:
            stats[0].rebuilt_corrupt = corrupt
        return [(_assemble(r, folders[r.key], built=s.built > 0), s)
                for r, s in zip(requests, stats, strict=True)]

    def absent(self, request: Request) -> list[int]:
        """The positions of ``request``'s clips whose rows are not in the store (no lock:
        another job may be computing them)."""
        folder = self._folder(request)
        folder.refresh()
        return [j for j, key in enumerate(request.row_keys) if folder.lookup(key) is None]

    def _folder(self, request: Request) -> Folder:
        path = self.root / request.folder_name
        folder = self._folders.get(request.key)
        if folder is None or not path.exists():  # new here, or pruned meanwhile
            folder = self._folders[request.key] = Folder(path, request.parts, request.shape)
        folder.ensure()
        return folder

    def _locks(self, missing: dict[tuple[str, str], tuple[int, int]],
               folders: dict[str, Folder]) -> ExitStack:
        """The locks of every (store folder, key bucket) with missing rows, in order."""
        needed = sorted({(str(folders[f].path), int(k[:2], 16) % LOCK_BUCKETS)
                         for f, k in missing})
        stack = ExitStack()
        try:
            for path, bucket in needed:
                (Path(path) / "locks").mkdir(exist_ok=True)
                stack.enter_context(FileLock(str(Path(path) / "locks" / f"{bucket:02x}.lock")))
        except BaseException:
            stack.close()
            raise
        return stack

    def _compute(self, missing: dict[tuple[str, str], tuple[int, int]],
                 requests: Sequence[Request], folders: dict[str, Folder]) -> None:
        """Compute the missing rows (in request and clip order) into one new shard per store
        folder, written atomically."""
        if not missing:
            return
        tasks = [(requests[i].work, requests[i].clips[j]) for i, j in missing.values()]
        counts: dict[str, int] = {}
        for folder_key, _ in missing:
            counts[folder_key] = counts.get(folder_key, 0) + 1
        descs = list(dict.fromkeys(requests[i].desc for i, _ in missing.values()))
        with ExitStack() as stack:
            writers, paths = {}, {}
            for folder_key, count in counts.items():
                folder = folders[folder_key]
                paths[folder_key] = folder.shard_dir / new_shard_id()
                tmp = stack.enter_context(atomic.atomic_path(paths[folder_key]))
                writers[folder_key] = ShardWriter(tmp, folder.shape, count, ", ".join(
                    dict.fromkeys(requests[i].desc for (f, _), (i, _) in missing.items()
                                  if f == folder_key)))
            results = run_tasks(tasks, self.workers, ", ".join(descs))
            for ((folder_key, key), (i, j)), result in zip(missing.items(), results,
                                                          strict=True):
                writers[folder_key].add(key, requests[i].clips[j].clip_id, result)
            for writer in writers.values():
                writer.close()
        for folder_key, path in paths.items():
            folders[folder_key].refresh()
            folders[folder_key].trust(path)


def _missing(requests: Sequence[Request], folders: dict[str, Folder]
             ) -> dict[tuple[str, str], tuple[int, int]]:
    """(store folder, row key) -> (request, clip) for every row not in the store (the first
    request that asks for it computes it), in request and clip order."""
    missing: dict[tuple[str, str], tuple[int, int]] = {}
    for i, request in enumerate(requests):
        folder = folders[request.key]
        for j, key in enumerate(request.row_keys):
            if (request.key, key) not in missing and folder.lookup(key) is None:
                missing[(request.key, key)] = (i, j)
    return missing


def _assemble(request: Request, folder: Folder, built: bool) -> CacheEntry:
    """The request's set: its usable clips' rows in clip order, and its skipped clips."""
    rows, skipped, keys, where = [], [], [], []
    for clip, key in zip(request.clips, request.row_keys, strict=True):
        record = folder.records[key]
        if record.row < 0:
            skipped.append({"clip_id": clip.clip_id, "path": clip.path or "",
                            "label": clip.label, "reason": record.reason})
            continue
        rows.append({"clip_id": clip.clip_id, "label": clip.label, "group": clip.group,
                     "generator": clip.generator, "path": clip.path or "",
                     "params": record.params})
        keys.append(key)
        where.append((record.shard, record.row))
    used = sorted({shard for shard, _ in where})
    number = {shard: n for n, shard in enumerate(used)}
    features = Rows([folder.shards[s] / "rows.npy" for s in used],
                    np.array([number[s] for s, _ in where], dtype=np.int32),
                    np.array([r for _, r in where], dtype=np.int64), request.shape)
    if skipped and built:
        log.warning("%s: skipped %d of %d clips (%s: %s%s)", request.desc, len(skipped),
                    len(request.clips), skipped[0]["clip_id"], skipped[0]["reason"],
                    ", ..." if len(skipped) > 1 else "")
    return CacheEntry(folder.path, features, rows, skipped, keys)


# --- what a store holds, and pruning it ---------------------------------------------------


@dataclass
class FolderInfo:
    """One store folder as ``deepfake-detect-cache list`` shows it."""

    path: Path
    parts: dict[str, Any]
    shards: int
    rows: int
    skipped: int
    bytes: int
    used: float  # when a job last read or wrote it (seconds since the epoch)
    corrupt: list[str] = field(default_factory=list)  # shards a job would rebuild

    @property
    def kind(self) -> str:
        return str(self.parts.get("kind", "rows"))


def list_folders(root: str | Path) -> list[FolderInfo]:
    """Every store folder under ``root`` (indexes only: no row is read)."""
    out = []
    for path in sorted(Path(root).glob("*/" + CONFIG)):
        folder_path = path.parent
        config = json.loads(path.read_text())
        folder = Folder(folder_path, config.get("parts", {}), tuple(config["shape"]),
                        repair=False)
        folder.refresh()
        usable = sum(r.row >= 0 for r in folder.records.values())
        size = sum(f.stat().st_size for f in folder_path.rglob("*") if f.is_file())
        used = folder_path / USED
        out.append(FolderInfo(folder_path, folder.parts, len(folder.shards), usable,
                              len(folder.records) - usable, size,
                              (used if used.exists() else path).stat().st_mtime,
                              folder.take_corrupt()))
    return out


def legacy_entries(root: str | Path) -> list[Path]:
    """Entries of the per-split cache this store replaced (``<key>/meta.json``)."""
    return sorted(p.parent for p in Path(root).glob("*/meta.json"))


def matches(parts: dict[str, Any], conditions: dict[str, str]) -> bool:
    """Whether ``parts`` has every dotted ``key=value`` of ``conditions`` (values compared
    as text, so ``features.n_mels=64`` matches 64)."""
    for dotted, wanted in conditions.items():
        node: Any = parts
        for key in dotted.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if node is None or str(node) != wanted:
            return False
    return True


def prune(root: str | Path, older_than_s: float | None = None,
          conditions: dict[str, str] | None = None, legacy: bool = False,
          dry_run: bool = False) -> list[Path]:
    """Remove the store folders not used for ``older_than_s`` seconds and/or whose config
    matches ``conditions`` (both given: both must hold), and with ``legacy`` the old
    per-split entries; a folder whose locks another job holds is left alone. Shards that
    killed builds left half-written go too. Returns what was (or, with ``dry_run``, would
    be) removed."""
    now, removed = time.time(), []
    for info in list_folders(root):
        for stale in Folder(info.path, info.parts, ()).stale_temporaries():
            removed.append(stale)
            if not dry_run:
                atomic.remove(stale)
        if older_than_s is not None and now - info.used < older_than_s:
            continue
        if conditions and not matches(info.parts, conditions):
            continue
        if older_than_s is None and not conditions:
            continue
        if dry_run or _remove_unlocked(info.path):
            removed.append(info.path)
    for path in legacy_entries(root) if legacy else []:
        if not dry_run:
            shutil.rmtree(path, ignore_errors=True)
            Path(f"{path}.lock").unlink(missing_ok=True)
        removed.append(path)
    return removed


def _remove_unlocked(path: Path) -> bool:
    """Remove a store folder once all its locks are free (False: a job is building)."""
    (path / "locks").mkdir(exist_ok=True)
    with ExitStack() as stack:
        for bucket in range(LOCK_BUCKETS):
            lock = FileLock(str(path / "locks" / f"{bucket:02x}.lock"), timeout=0)
            try:
                stack.enter_context(lock)
            except TimeoutError:
                log.warning("%s is being built by another job: left alone", path)
                return False
        shutil.rmtree(path, ignore_errors=True)
    return True
