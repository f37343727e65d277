"""Atomic writes: every file the project leaves behind is complete or absent.

One idiom for all of them: write to a temporary sibling (``.<name>.tmp-<pid>-<random>``),
then rename it over the target; a failure removes the temporary. Folders (cache entries)
use the same :func:`atomic_path`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"


NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
NO_SPACE_TEXT = ("no space left on device", "database or disk is full", "disk quota exceeded")


@contextmanager
def atomic_path(path: str | os.PathLike, size: int | None = None) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write (a file or a folder); renamed over ``path``
    when the block succeeds, removed when it fails. A full disk raises
    :class:`~deepfake_detect.errors.DiskFull` naming ``path``, the space free there and the
    space needed (``size`` when the caller knows it, else what had been written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        written = _bytes_in(tmp)
        remove(tmp)
        full = disk_full(err, path, max(size or 0, written))
        if full is not None and full is not err:
            raise full from err
        raise


def no_space(err: BaseException) -> bool:
    """Whether ``err``, or an error it was raised from or while handling, says the disk (or
    a quota, or a sqlite store) is full: torch's zip writer, MLflow and SQLAlchemy wrap it."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [err]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in NO_SPACE:
            return True
        if any(text in str(current).lower() for text in NO_SPACE_TEXT):
            return True
        stack += [current.__cause__, current.__context__, getattr(current, "orig", None)]
    return False


def disk_full(err: BaseException, path: str | os.PathLike | None = None,
              needed: int | None = None, fallback: str | os.PathLike | None = None
              ) -> Exception | None:
    """``err`` as a one-line :class:`~deepfake_detect.errors.DiskFull` when it comes from a
    full disk (``err`` itself if it already is one), else None. The path is ``path``, else
    the file the OS error names, else ``fallback``."""
    from deepfake_detect.errors import DiskFull

    if isinstance(err, DiskFull):
        return err
    if not no_space(err):
        return None
    where = path if path is not None else (_named_file(err) or fallback)
    return DiskFull(str(where or "?"), free_bytes(where) if where else None, needed or None)


def free_bytes(path: str | os.PathLike) -> int | None:
    """Bytes free to an unprivileged writer on the file system of ``path`` (or of its
    nearest existing parent)."""
    probe = Path(path)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        stats = os.statvfs(probe)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def _named_file(err: BaseException) -> str | None:
    current: BaseException | None = err
    while current is not None:
        if isinstance(current, OSError) and current.filename:
            return str(current.filename)
        current = current.__cause__ or current.__context__
    return None


def _bytes_in(path: Path) -> int:
    """Bytes in a file or a folder's files (0 if absent)."""
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size if path.exists() else 0
    except OSError:
        return 0


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
    with atomic_path(path, len(text)) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` atomically."""
    with atomic_path(path, len(data)) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | os.PathLike, payload: Any, indent: int | None = 2) -> Path:
    """Write ``payload`` as JSON atomically (numpy scalars as floats)."""
    return write_text(path, json.dumps(payload, indent=indent, default=_plain))


def save_torch(path: str | os.PathLike, payload: Any) -> Path:
    """``torch.save`` atomically."""
    import torch

    with atomic_path(path, _tensor_bytes(payload)) as tmp, open(tmp, "wb") as handle:
        torch.save(payload, handle)
    return Path(path)


def _tensor_bytes(payload: Any) -> int:
    """Bytes of the tensors in a (nested) payload: about what ``torch.save`` writes."""
    import torch

    if isinstance(payload, torch.Tensor):
        return payload.nelement() * payload.element_size()
    if isinstance(payload, dict):
        return sum(_tensor_bytes(v) for v in payload.values())
    if isinstance(payload, list | tuple):
        return sum(_tensor_bytes(v) for v in payload)
    return 0


def link_or_copy(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """``path`` becomes ``source``'s content atomically: a hard link where the file system
    allows one (no second copy; replacing ``source`` later by a rename leaves ``path``
    alone), else a copy."""
    with atomic_path(path) as tmp:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
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
