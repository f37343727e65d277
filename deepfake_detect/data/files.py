"""What every file-based source shares: options, listing helpers, windowing, decoding.

A file source lists one clip per audio file (``list_files``); this base class turns those into
window clips (:mod:`deepfake_detect.data.windows`), optionally keeps a small balanced subset
(``n_clips``, used by debug runs), and decodes a clip's window with :func:`audio.decode`.
Layout problems raise :class:`DataError` naming the path and the expected layout before any
audio is decoded; unusable files become skipped clips (``audio.AudioError``) at decode time.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, Any

import numpy as np

from deepfake_detect.config import build, require
from deepfake_detect.console import decoder_stderr
from deepfake_detect.data import audio, windows
from deepfake_detect.data.clips import Clip
from deepfake_detect.errors import ConfigError, DataError

log = logging.getLogger(__name__)

HUMAN = "human"
UNKNOWN_GENERATOR = "unknown"
# Label words accepted in manifests and dataset CSVs (0 = human, 1 = AI-generated).
LABEL_WORDS = {"0": 0, "human": 0, "real": 0, "1": 1, "ai": 1, "fake": 1, "deepfake": 1}
SPLIT_WORDS = {"train": "train", "val": "val", "valid": "val", "validation": "val",
               "dev": "val", "test": "test"}
IGNORED_DIRS = {"__MACOSX"}
UNLISTED = "folder not listed, its audio files are left out"


@dataclass(frozen=True)
class FileSourceConfig:
    """Options shared by every file source (``data.source.<key>``).

    ``duration``: window length in seconds (set it equal to ``features.duration``; the shipped
    configs interpolate it). ``windows``: the :class:`windows.WindowConfig` node. ``n_clips``:
    keep at most this many clips, balanced over (label, split), for quick runs (None: all).
    """

    duration: float = 4.0
    windows: Any = None
    n_clips: int | None = None

    def __post_init__(self) -> None:
        require(isinstance(self.duration, int | float) and self.duration > 0, "duration",
                f"must be a positive number of seconds, got {self.duration!r}")
        require(self.n_clips is None or (isinstance(self.n_clips, int) and self.n_clips >= 2),
                "n_clips", f"must be an integer >= 2 or null (all clips), got {self.n_clips!r}")
        if not isinstance(self.windows, windows.WindowConfig):
            node = self.windows if self.windows is not None else {}
            require(isinstance(node, Mapping), "windows",
                    f"must be a mapping (mode, offset_s, hop_s, max_per_file, short), "
                    f"got {node!r}")
            object.__setattr__(self, "windows", build(windows.WindowConfig, node, "windows"))


def required_path(value: Any, key: str, what: str) -> Path:
    """``value`` as an absolute path; ConfigError naming ``key`` when it is unset."""
    if value in (None, "", "???"):
        raise ConfigError(key, f"is required: set it to {what}")
    require(isinstance(value, str | os.PathLike), key, f"must be a path, got {value!r}")
    return Path(value).expanduser().resolve()


def parse_label(value: Any) -> int | None:
    """0/1 from a label cell (0, 1, human, real, ai, fake, deepfake; any case), else None."""
    text = str(value).strip().lower()
    if text in LABEL_WORDS:
        return LABEL_WORDS[text]
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number in (0.0, 1.0) else None


def parse_split(value: Any) -> str | None | bool:
    """train/val/test from a split cell (valid/validation -> val); None when empty; False
    when the value is not a split name."""
    text = str(value or "").strip().lower()
    if not text:
        return None
    return SPLIT_WORDS.get(text, False)


def is_ignored(name: str) -> bool:
    """macOS resource forks, hidden files and archive leftovers."""
    return name.startswith(".") or name in IGNORED_DIRS


def audio_files(folder: Path, extensions: tuple[str, ...],
                problems: list[dict[str, str]] | None = None) -> Iterator[Path]:
    """Audio files below ``folder`` (recursive, sorted, symlinks followed once). A folder
    that cannot be listed (permission denied) is never left out silently: it is appended to
    ``problems`` as ``{"path", "reason"}``, or logged as a warning when no list is given."""

    def unlisted(err: OSError) -> None:
        where = str(err.filename or folder)
        reason = (f"{UNLISTED}: permission denied" if isinstance(err, PermissionError)
                  else f"{UNLISTED} ({err.strerror or type(err).__name__})")
        if problems is None:
            log.warning("%s: %s", where, reason)
        else:
            problems.append({"path": where, "reason": reason})

    def problem(path: str, reason: str) -> None:
        if problems is None:
            log.warning("%s: %s", path, reason)
        else:
            problems.append({"path": path, "reason": reason})

    seen: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True, onerror=unlisted):
        real = os.path.realpath(dirpath)
        if real in seen:  # listed already: a loop back up, or a second link to one folder
            dirnames[:] = []
            parent = os.path.realpath(os.path.dirname(dirpath))
            if os.path.join(parent, "").startswith(os.path.join(real, "")):
                problem(dirpath, f"symbolic link loop (back to {seen[real]}): not followed")
            else:
                log.debug("%s: the same folder as %s, listed once", dirpath, seen[real])
            continue
        seen[real] = dirpath
        dirnames[:] = sorted(d for d in dirnames if not is_ignored(d))
        for name in sorted(filenames):
            if not is_ignored(name) and name.lower().endswith(extensions):
                path = Path(dirpath) / name
                if path.is_symlink() and not path.exists():
                    reason = _dangling(path)
                    if reason:
                        problem(str(path), reason)
                        continue
                yield path


def _dangling(path: Path) -> str | None:
    """Why a symbolic link leads to no file: a loop; None for a plain missing target (the
    file is listed, and reported when it is read, as any missing file)."""
    try:
        path.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symbolic link loop: the link leads back to itself, left out"
    return None


def open_listing(path: Path, what: str) -> IO[str]:
    """A CSV listing opened for reading; DataError naming ``what`` when it cannot be."""
    try:
        return path.open(newline="", encoding="utf-8-sig")
    except PermissionError:
        raise DataError(f"cannot read {what} {path}: permission denied") from None
    except OSError as err:
        raise DataError(f"cannot read {what} {path}: {err.strerror or err}") from None


def list_folder(folder: Path, what: str) -> list[Path]:
    """The entries of ``folder``; DataError naming ``what`` when it cannot be listed."""
    try:
        return sorted(folder.iterdir())
    except PermissionError:
        raise DataError(f"cannot list {what} {folder}: permission denied") from None
    except OSError as err:
        raise DataError(f"cannot list {what} {folder}: {err.strerror or err}") from None


def normalise_extensions(value: Any, key: str) -> tuple[str, ...]:
    """``[wav, .FLAC]`` -> ``(".wav", ".flac")``."""
    items = [value] if isinstance(value, str) else list(value or [])
    require(len(items) > 0 and all(isinstance(v, str) and v.strip(".") for v in items), key,
            f"must be a non-empty list of file extensions, got {value!r}")
    return tuple("." + v.strip().lstrip(".").lower() for v in items)


def subsample(clips: list[Clip], n: int | None) -> list[Clip]:
    """At most ``n`` clips, taken round-robin over (label, split) strata.

    Within a stratum clips are ordered by window index and then by a hash of their group, so
    a small subset spans many groups (what grouped splitting needs) and does not depend on
    the order files were listed in. The subset keeps the original order.
    """
    if n is None or len(clips) <= n:
        return clips
    strata: dict[tuple[int, str], list[Clip]] = defaultdict(list)
    for clip in clips:
        strata[(clip.label, clip.split or "")].append(clip)
    queues = [sorted(strata[key], key=lambda c: (c.recipe.get("window", 0),
                                                   zlib.crc32(c.group.encode()), c.clip_id))
              for key in sorted(strata)]
    chosen: set[str] = set()
    depth = 0
    while len(chosen) < n:
        for queue in queues:
            if depth < len(queue) and len(chosen) < n:
                chosen.add(queue[depth].clip_id)
        depth += 1
    return [clip for clip in clips if clip.clip_id in chosen]


class FileSource:
    """Base for sources whose clips are windows of audio files.

    Subclasses set ``name``, build ``self.cfg`` (a :class:`FileSourceConfig` subclass) and
    implement ``list_files()``: one clip per file (``path`` absolute), raising DataError for a
    layout that does not match.
    """

    name = "files"
    cfg: FileSourceConfig
    # The one constructor path of the rooted sources (folder, fakemusiccaps, sonics): their
    # options dataclass, and what ``data.source.root`` must name (for its error message).
    config: type[FileSourceConfig] | None = None
    root_help: str = "the dataset's folder"

    def __init__(self, **params: Any) -> None:
        self._clips: list[Clip] | None = None
        self._digest: str | None = None
        # Folders that could not be listed: {"path", "reason", "label"} (skipped.csv rows).
        self.unlisted: list[dict[str, Any]] = []
        if self.config is not None:
            self.cfg = build(self.config, tuple_fields(self.config, params), "data.source")
            self.root = required_path(getattr(self.cfg, "root", None), "data.source.root",
                                      self.root_help)

    def list_files(self) -> list[Clip]:
        raise NotImplementedError

    def clips(self) -> list[Clip]:
        if self._clips is None:
            self.unlisted = []
            files = subsample(self.list_files(), self.cfg.n_clips)
            with decoder_stderr():  # one redirection for every header read, not one a file
                clips = [window for clip in files for window in
                         windows.expand(clip, self.cfg.duration, self.cfg.windows)]
            clips = subsample(clips, self.cfg.n_clips)
            _check_unique(clips, self.name)
            for row in self.unlisted:
                log.warning("%s source: %s: %s", self.name, row["path"], row["reason"])
            self._clips = clips
        return list(self._clips)

    def files_below(self, folder: Path, label: int | str = "") -> list[Path]:
        """:func:`audio_files` of ``folder``; folders it cannot list go to ``unlisted``."""
        problems: list[dict[str, str]] = []
        files = list(audio_files(folder, self.extensions, problems))
        self.unlisted += [{**row, "label": label} for row in problems]
        return files

    @property
    def extensions(self) -> tuple[str, ...]:
        return getattr(self.cfg, "extensions", audio.AUDIO_EXTENSIONS)

    def segment(self, clip: Clip) -> audio.Segment:
        """The part of ``clip.path`` that ``clip`` stands for."""
        return audio.Segment(self.cfg.duration, clip.recipe.get("offset_s"),
                             self.cfg.windows.short)

    def load(self, clip: Clip, sample_rate: int) -> np.ndarray:
        assert clip.path is not None, f"clip {clip.clip_id} has no path"
        return audio.decode(clip.path, sample_rate, self.segment(clip))

    def signature(self) -> dict[str, Any]:
        """Options plus a digest of the listing (ids, labels, groups, generators, splits)."""
        if self._digest is None:
            listing = [[c.clip_id, c.label, c.group, c.generator, c.split, c.path,
                        c.recipe.get("offset_s")] for c in self.clips()]
            self._digest = hashlib.sha256(json.dumps(listing).encode()).hexdigest()
        return {"source": self.name, **asdict(self.cfg), "listing": self._digest}

    def __getstate__(self) -> dict[str, Any]:
        # Sent to feature workers with every task: leave the (possibly long) listing behind.
        return {**self.__dict__, "_clips": None, "_digest": None}


def _check_unique(clips: list[Clip], name: str) -> None:
    seen: set[str] = set()
    for clip in clips:
        if clip.clip_id in seen:
            raise DataError(f"{name} source: clip id {clip.clip_id!r} appears twice")
        seen.add(clip.clip_id)


def tuple_fields(config: type, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with lists turned into tuples for the fields of ``config`` whose default is
    a tuple (Hydra gives lists; the frozen options hold tuples)."""
    tuples = {f.name for f in fields(config)
              if isinstance(f.default, tuple) or f.default_factory is tuple}  # type: ignore[misc]
    return {key: tuple(value) if key in tuples and isinstance(value, list) else value
            for key, value in params.items()}


def imbalance_line(name: str, clips: list[Clip]) -> str:
    """One line with the clips per class and their ratio (``5,521 human : 27,605
    AI-generated (1 : 5.0)``), which every rooted source logs after listing."""
    counts = Counter(clip.label for clip in clips)
    human, ai = counts[0], counts[1]
    ratio = (f"1 : {ai / human:.1f}" if human and ai >= human else
             f"{human / ai:.1f} : 1" if ai else "AI-generated only" if not human else
             "human only")
    return (f"{name}: {human:,} human and {ai:,} AI-generated file(s) listed ({ratio}); "
            "data.loader.balance=sampler evens the classes in training")


def relative_id(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` in POSIX form (absolute when outside ``root``)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
