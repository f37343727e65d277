"""Input discovery for commands that score files: files, folders and globs given on the command
line become an ordered list of audio files, without duplicates."""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from deepfake_detect.data.audio import AUDIO_EXTENSIONS, os_reason
from deepfake_detect.data.files import audio_files
from deepfake_detect.errors import UsageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    """One file to score; ``error`` set when it is known up front that it cannot be."""

    path: str
    error: str = ""


def find_inputs(inputs: Iterable[str | os.PathLike]) -> list[Item]:
    """Files, folders (searched recursively for .wav/.flac/.ogg/.mp3) and globs, in the order
    given, without duplicates. A named file that does not exist is kept as an error item;
    a folder or glob without audio only logs a warning."""
    items: list[Item] = []
    seen: set[str] = set()

    def add(path: str, error: str = "") -> None:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            items.append(Item(path, error))

    for raw in inputs:
        text = os.fspath(raw)
        path = Path(text).expanduser()
        problems: list[dict[str, str]] = []
        try:
            path.stat()
        except PermissionError:
            add(str(path), "permission denied (a folder on its path cannot be searched)")
            continue
        except FileNotFoundError:
            pass  # not there: a glob, or a missing file
        except OSError as err:  # a symbolic link loop, a name too long, an I/O error
            add(str(path), os_reason(err, path))
            continue
        if path.is_dir():
            found = list(audio_files(path, AUDIO_EXTENSIONS, problems))
            if not found and not problems:
                log.warning("no audio files (%s) below %s", "/".join(AUDIO_EXTENSIONS), path)
            for file in found:
                add(str(file))
        elif path.exists():
            add(str(path))
        elif glob.has_magic(text):
            for file in _glob_audio(text, problems):
                add(file)
        else:
            add(str(path), f"file not found: {path}")
        for problem in problems:  # folders that could not be listed: a row with the reason
            add(problem["path"], problem["reason"])
    return items


def _glob_audio(pattern: str, problems: list[dict[str, str]]) -> list[str]:
    matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
    files = [m for m in matches if Path(m).is_file() and m.lower().endswith(AUDIO_EXTENSIONS)]
    for folder in (Path(m) for m in matches if Path(m).is_dir()):
        files += [str(f) for f in audio_files(folder, AUDIO_EXTENSIONS, problems)]
    if not files and not problems:
        log.warning("no audio files match %s", pattern)
    return files


def require_inputs(inputs: Sequence[str | os.PathLike]) -> list[Item]:
    """:func:`find_inputs`, raising :class:`UsageError` when no existing file is among them."""
    items = find_inputs(inputs)
    if not any(not item.error for item in items):
        shown = ", ".join(map(os.fspath, inputs)) or "(none)"
        why = "".join(f"; {item.path}: {item.error}" for item in items[:3])
        raise UsageError(f"no input audio found in: {shown} (give files, folders holding "
                         f"{'/'.join(AUDIO_EXTENSIONS)} files, or globs){why}")
    return items
