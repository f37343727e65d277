"""Atomic writes: every file the project leaves behind is complete or absent.

One idiom for all of them: write to a temporary sibling (``.<name>.tmp-<pid>-<random>``),
then rename it over the target; a failure removes the temporary. Folders (cache entries)
use the same :func:`atomic_path`.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write (a file or a folder); renamed over ``path``
    when the block succeeds, removed when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        remove(tmp)
        raise


def temporaries(path: str | os.PathLike) -> list[Path]:
    """Temporary siblings of ``path`` left by writers that were killed."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.name}{TMP_MARK}*"))


def owner_pid(tmp: Path) -> int | None:
    """The process id written into a temporary's name (None if it has none)."""
    tail = tmp.name.rsplit(TMP_MARK, 1)[-1].split("-", 1)[0]
    return int(tail) if tail.isdigit() else None


def writer_alive(tmp: Path) -> bool:
    """Whether the process that named temporary ``tmp`` is still running on this machine
    (then it may still be writing it; other machines' processes cannot be asked)."""
    pid = owner_pid(tmp)
    if pid is None or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def unwritable(path: str | os.PathLike) -> str | None:
    """Why files cannot be written in folder ``path`` (or in the folder that would be created
    there), or None when they can; nothing is created."""
    path = Path(path)
    probe = path
    try:
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        is_dir = probe.is_dir()
    except PermissionError:
        return f"cannot reach {path}: permission denied on the way"
    if not is_dir:
        return f"{path} cannot be a folder: {probe} is a file"
    mode = os.W_OK | os.X_OK
    effective = os.access in os.supports_effective_ids
    if not (os.access(probe, mode, effective_ids=True) if effective else os.access(probe, mode)):
        where = "" if probe == path else f" ({probe} is the nearest existing folder)"
        return f"{path} is not writable: permission denied{where}"
    return None


def remove(path: Path) -> None:
    """Remove a file or folder if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | os.PathLike, payload: Any, indent: int | None = 2) -> Path:
    """Write ``payload`` as JSON atomically (numpy scalars as floats)."""
    return write_text(path, json.dumps(payload, indent=indent, default=_plain))


def save_torch(path: str | os.PathLike, payload: Any) -> Path:
    """``torch.save`` atomically."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(payload, handle)
    return Path(path)


def save_figure(fig: Any, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure atomically (format from the suffix) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path


def _plain(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
