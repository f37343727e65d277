"""The feature store on disk: folders of immutable, memory-mapped shards of rows.

A store folder holds the rows of one configuration (``config.json``: what every row shares,
e.g. the kind of rows and the feature config) and any number of shards
``shards/<id>/{rows.npy, index.json}``, each written once and atomically by one build:
``rows.npy`` has one float32 row per usable clip, appended with plain writes (nothing in a
build maps or holds it), and ``index.json`` maps each row key to its row number, its drawn
parameters and its crc32, or to the reason the clip was skipped, with a checksum of the index
itself. Opening a folder reads the indexes and maps the rows without reading them; a row is
checked against its crc32 the first time a set that uses it is assembled. A key stored in
several shards is read from the newest (ids sort by time), so a rebuilt row replaces a
corrupt one without rewriting the old shard.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from deepfake_detect import atomic

log = logging.getLogger(__name__)

SHARD_FORMAT = 1
ROWS, INDEX, CONFIG, USED = "rows.npy", "index.json", "config.json", "used"


def text_checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def meta_checksum(meta: dict[str, Any]) -> str:
    """A checksum of a JSON document's own content (everything but this field)."""
    body = {k: v for k, v in meta.items() if k != "meta_checksum"}
    return text_checksum(json.dumps(body, sort_keys=True, default=str))


def write_header(handle: BinaryIO, shape: tuple[int, ...]) -> int:
    """Write a float32 ``.npy`` header at the handle's position; return where data starts.

    numpy pads the header so that its length does not depend on the first dimension, which
    lets a build rewrite it in place once it knows how many clips were usable.
    """
    np.lib.format.write_array_header_1_0(
        handle, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                 "fortran_order": False, "shape": tuple(int(d) for d in shape)})
    return handle.tell()


def new_shard_id() -> str:
    """A shard name that sorts by creation time and is unique across processes and hosts."""
    return f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class ShardWriter:
    """Appends rows to a new shard folder ``tmp`` (renamed into place by the caller)."""

    def __init__(self, tmp: Path, shape: tuple[int, ...], capacity: int, desc: str):
        tmp.mkdir(parents=True)
        self.tmp, self.shape, self.desc = tmp, tuple(shape), desc
        self.handle = open(tmp / ROWS, "wb")  # noqa: SIM115 (closed by close(), or with tmp)
        self.offset = write_header(self.handle, (capacity, *self.shape))
        self.entries: dict[str, dict[str, Any]] = {}
        self.rows = 0

    def add(self, key: str, clip_id: str, result: tuple[np.ndarray, dict[str, Any]] | str
            ) -> None:
        if isinstance(result, str):  # the reason a clip is unusable
            self.entries[key] = {"clip": clip_id, "reason": result}
            return
        features, params = result
        row = np.ascontiguousarray(features, dtype=np.float32)
        if row.shape != self.shape:
            raise ValueError(f"{self.desc}: clip {clip_id} gave an array of shape {row.shape}, "
                             f"expected {self.shape}")
        self.handle.write(row.data)
        self.entries[key] = {"clip": clip_id, "row": self.rows, "params": params,
                             "crc": f"{zlib.crc32(row.data):08x}"}
        self.rows += 1

    def close(self) -> None:
        """Fix the header's row count and write the index."""
        self.handle.seek(0)  # the header's shape counts the usable clips only
        if write_header(self.handle, (self.rows, *self.shape)) != self.offset:
            raise RuntimeError("npy header length changed")  # numpy pads it: never
        self.handle.close()
        index = {"format": SHARD_FORMAT, "shape": [self.rows, *self.shape],
                 "created": time.time(), "desc": self.desc, "entries": self.entries}
        index["meta_checksum"] = meta_checksum(index)
        (self.tmp / INDEX).write_text(json.dumps(index, default=str))


@dataclass
class Record:
    """Where a key's row is: shard (position in :attr:`Folder.shards`) and row, or why the
    clip was skipped (``row == -1``)."""

    shard: int
    row: int
    params: dict[str, Any]
    reason: str = ""
    crc: str = ""


class Folder:
    """One configuration's shards, opened (indexes read, rows mapped lazily)."""

    def __init__(self, path: Path, parts: dict[str, Any], shape: tuple[int, ...],
                 repair: bool = True):
        self.path, self.parts, self.shape = path, parts, tuple(shape)
        self._row_bytes = int(np.prod(self.shape)) * 4  # float32
        self.repair = repair  # remove a corrupt shard (else only note it: listing)
        self.shards: list[Path] = []
        self.records: dict[str, Record] = {}
        self.checked: set[tuple[int, int]] = set()  # (shard, row) whose crc32 matched
        self.corrupt: list[str] = []  # problems found (a shard each), since the last take
        self._maps: dict[int, np.ndarray] = {}
        self._files: dict[int, tuple[int, int]] = {}  # shard: (descriptor, where rows start)

    @property
    def shard_dir(self) -> Path:
        return self.path / "shards"

    def ensure(self) -> None:
        """Create the folder and its ``config.json`` if they are not there; mark it used."""
        if not (self.path / CONFIG).exists():
            config = {"parts": self.parts, "shape": list(self.shape), "created": time.time()}
            atomic.write_text(self.path / CONFIG, json.dumps(config, indent=1, default=str))
        with contextlib.suppress(OSError):  # a read-only store others keep: reading works
            (self.path / USED).touch()

    def refresh(self) -> None:
        """Read the indexes of shards written since the last refresh (by any process)."""
        try:
            names = sorted(p.name for p in self.shard_dir.iterdir()
                           if p.is_dir() and atomic.TMP_MARK not in p.name)
        except FileNotFoundError:
            return
        known = {p.name for p in self.shards}
        for name in names:
            if name not in known:
                self._open(self.shard_dir / name)

    def _open(self, path: Path) -> None:
        problem, index = read_index(path, self.shape)
        if problem:
            self.corrupt.append(f"{path}: {problem}")
            if self.repair:
                log.warning("cache shard %s is corrupt (%s): rebuilding its clips", path,
                            problem)
                atomic.remove(path)
            return
        number = len(self.shards)
        self.shards.append(path)
        for key, entry in index["entries"].items():
            old = self.records.get(key)
            if old is not None and self.shards[old.shard].name > path.name:
                continue  # the newer shard's row stands
            self.records[key] = Record(number, int(entry.get("row", -1)),
                                       entry.get("params", {}), entry.get("reason", ""),
                                       entry.get("crc", ""))

    def rows_of(self, number: int) -> np.ndarray:
        """Shard ``number``'s rows as a copy-on-write memory map (datasets wrap rows as
        tensors without copying them; nothing is ever written back)."""
        if number not in self._maps:
            self._maps[number] = np.load(self.shards[number] / ROWS, mmap_mode="c")
        return self._maps[number]

    def _read_row(self, number: int, row: int) -> bytes:
        """A row's bytes read from the file (not through the map: checking a store does not
        grow this process's resident memory with it)."""
        if number not in self._files:
            start = _read_header(self.shards[number] / ROWS)[1]
            self._files[number] = (os.open(self.shards[number] / ROWS, os.O_RDONLY), start)
        descriptor, start = self._files[number]
        size = self._row_bytes
        data = os.pread(descriptor, size, start + row * size)
        if len(data) != size:
            raise ValueError(f"row {row} is cut short")
        return data

    def lookup(self, key: str) -> Record | None:
        """``key``'s record if its row is sound (checked once); a row that fails its crc32 is
        dropped, to be rebuilt."""
        record = self.records.get(key)
        if record is None or record.row < 0 or (record.shard, record.row) in self.checked:
            return record
        try:
            sound = f"{zlib.crc32(self._read_row(record.shard, record.row)):08x}" == record.crc
        except (OSError, ValueError) as err:
            log.debug("reading %s: %s", self.shards[record.shard], err)
            sound = False
        if sound:
            self.checked.add((record.shard, record.row))
            return record
        problem = f"{self.shards[record.shard]}: row {record.row}: checksum mismatch"
        if problem not in self.corrupt:
            self.corrupt.append(problem)
            log.warning("cache shard %s: row %d (%s) is corrupt (checksum mismatch): "
                        "rebuilding it", self.shards[record.shard], record.row, key[:12])
        del self.records[key]
        return None

    def trust(self, path: Path) -> None:
        """Rows of a shard this process just wrote (their crc32 computed from the arrays)."""
        number = next(i for i, p in enumerate(self.shards) if p == path)
        self.checked.update((number, r.row) for r in self.records.values()
                            if r.shard == number and r.row >= 0)

    def stale_temporaries(self, min_age_s: float = 3600) -> list[Path]:
        """Shards a killed build left half-written: older than ``min_age_s`` and whose
        writer is not running on this machine."""
        now = time.time()
        try:
            found = [p for p in self.shard_dir.iterdir() if atomic.TMP_MARK in p.name]
        except FileNotFoundError:
            return []
        return [p for p in found
                if now - p.stat().st_mtime > min_age_s and not atomic.writer_alive(p)]

    def __del__(self) -> None:
        for descriptor, _ in getattr(self, "_files", {}).values():
            with contextlib.suppress(OSError):
                os.close(descriptor)

    def take_corrupt(self) -> list[str]:
        found, self.corrupt = self.corrupt, []
        return found


def read_index(path: Path, shape: tuple[int, ...]) -> tuple[str, dict[str, Any]]:
    """A shard's index, and what is wrong with the shard ('' if nothing)."""
    try:
        text = (path / INDEX).read_text()
        index = json.loads(text)
        rows, start = _read_header(path / ROWS)
        size = (path / ROWS).stat().st_size
    except (OSError, ValueError) as err:
        return f"{type(err).__name__}: {err}", {}
    if not isinstance(index, dict) or index.get("meta_checksum") != meta_checksum(index):
        return f"{INDEX} checksum mismatch", {}
    if rows != index["shape"] or tuple(rows[1:]) != tuple(shape):
        return f"shape {rows} does not match {index['shape']} / {list(shape)}", {}
    expected = int(np.prod(rows)) * 4
    if size - start != expected:
        return f"{ROWS} holds {size} bytes, expected {expected} of rows", {}
    return "", index


def _read_header(path: Path) -> tuple[list[int], int]:
    """An ``.npy`` file's shape and where its data starts."""
    with open(path, "rb") as handle:
        major, _ = np.lib.format.read_magic(handle)
        read = (np.lib.format.read_array_header_1_0 if major == 1
                else np.lib.format.read_array_header_2_0)
        shape, _, _ = read(handle)
        return list(shape), handle.tell()


class Rows:
    """A set's rows, read from memory-mapped shards: ``rows[i]`` is row ``row[i]`` of shard
    ``shard[i]``. Indexing like an array (an int gives a view of the map; a slice within one
    shard is a view too; anything else a copy), ``np.asarray(rows)`` the whole set; pickles
    as the shard paths and the two index arrays."""

    dtype = np.dtype(np.float32)

    def __init__(self, files: list[Path], shard: np.ndarray, row: np.ndarray,
                 row_shape: tuple[int, ...]):
        self.files = files
        self.shard = np.asarray(shard, dtype=np.int32)
        self.row = np.asarray(row, dtype=np.int64)
        self.row_shape = tuple(row_shape)
        self._maps: dict[int, np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": {}}

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.row), *self.row_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.row_shape)

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.itemsize

    def __len__(self) -> int:
        return len(self.row)

    def map(self, number: int) -> np.ndarray:
        if number not in self._maps:
            self._maps[number] = np.load(self.files[number], mmap_mode="c")
        return self._maps[number]

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, tuple):
            return self[index[0]][index[1:]] if index else self[:]
        if isinstance(index, int | np.integer):
            i = int(index) + (len(self) if index < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"row {index} out of range for {len(self)} rows")
            return self.map(int(self.shard[i]))[self.row[i]]
        if isinstance(index, slice):
            picked = np.arange(len(self))[index]
            shards, rows = self.shard[picked], self.row[picked]
            if len(picked) and (shards == shards[0]).all() and (np.diff(rows) == 1).all():
                return self.map(int(shards[0]))[rows[0]:rows[-1] + 1]
            return self._gather(picked)
        picked = np.asarray(index)
        if picked.dtype == bool:
            picked = np.flatnonzero(picked)
        return self._gather(np.arange(len(self))[picked.astype(np.int64)])

    def _gather(self, picked: np.ndarray) -> np.ndarray:
        out = np.empty((len(picked), *self.row_shape), dtype=self.dtype)
        shards, rows = self.shard[picked], self.row[picked]
        for number in np.unique(shards):
            mine = shards == number
            out[mine] = self.map(int(number))[rows[mine]]
        return out

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        whole = np.asarray(self[:])
        return whole.astype(dtype) if dtype is not None else whole

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]
