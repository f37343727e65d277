"""The ``manifest`` source: a CSV listing ``path,label`` and optionally ``group,generator,split``.

Paths are relative to ``audio_root`` (default: the CSV's folder) or absolute. Labels accept
0/1 or human/real/ai/fake/deepfake (any case). ``group`` defaults to the path without its
extension (each file its own group); ``generator`` to ``human`` for label 0 and ``unknown``
for label 1; ``split`` (train/val/valid/validation/test) pins a clip to a split, empty lets
the grouped random split decide. The whole CSV is checked before anything is used: every bad
row (line, column, what was expected) in one DataError. Unknown columns and relative paths
whose ``..`` lead outside ``audio_root`` are named in a warning and otherwise accepted (a
notes column is common, and absolute paths are allowed anyway). A listed file that is missing
or unreadable on disk becomes a skipped clip (reported in ``skipped.csv``).
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepfake_detect.config import build
from deepfake_detect.data.clips import Clip
from deepfake_detect.data.files import (
    HUMAN,
    UNKNOWN_GENERATOR,
    FileSource,
    FileSourceConfig,
    open_listing,
    parse_label,
    parse_split,
    required_path,
)
from deepfake_detect.errors import DataError

log = logging.getLogger(__name__)

REQUIRED = ("path", "label")
OPTIONAL = ("group", "generator", "split")
MAX_SHOWN = 50  # bad rows named in the error (the count says how many there are)
LAYOUT = ("expected a CSV whose header has path,label and optionally group,generator,split "
          "(label: 0/1 or human/real/ai/fake; split: train/val/test or empty)")


@dataclass(frozen=True)
class ManifestConfig(FileSourceConfig):
    """The ``data.source`` node of ``data=manifest``."""

    csv: Any = None
    audio_root: Any = None  # None: the CSV's folder


class ManifestSource(FileSource):
    """Clips listed in a CSV file."""

    name = "manifest"

    def __init__(self, **params: Any):
        super().__init__()
        self.cfg = build(ManifestConfig, params, "data.source")
        self.csv = required_path(self.cfg.csv, "data.source.csv",
                                 "a CSV file with columns path,label[,group,generator,split]")
        self.audio_root = (self.csv.parent if self.cfg.audio_root in (None, "") else
                           required_path(self.cfg.audio_root, "data.source.audio_root",
                                         "the folder the CSV's relative paths start from"))

    def list_files(self) -> list[Clip]:
        """Every row checked before any is used: all bad rows in one DataError (line, column,
        what was expected); unknown columns and relative paths leaving ``audio_root`` are
        named in a warning and otherwise used."""
        if not self.csv.is_file():
            raise DataError(f"manifest {self.csv} (data.source.csv) does not exist; {LAYOUT}")
        if not self.audio_root.is_dir():
            raise DataError(f"data.source.audio_root {self.audio_root} does not exist or is "
                            "not a directory")
        with open_listing(self.csv, "manifest (data.source.csv)") as handle:
            reader = csv.reader(handle)
            header = [str(h or "").strip().lower() for h in next(reader, [])]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise DataError(f"{self.csv} line 1: missing column(s) {', '.join(missing)} "
                                f"(header: {','.join(header) or 'empty'}); {LAYOUT}")
            unused = [h or "(unnamed)" for h in header if h not in (*REQUIRED, *OPTIONAL)]
            if unused:
                log.warning("%s: column(s) %s are not used (%s)", self.csv, ", ".join(unused),
                            LAYOUT)
            clips, problems, outside = self._rows(reader, header)
        if problems:
            shown = [f"{self.csv} {problem}" for problem in problems[:MAX_SHOWN]]
            if len(problems) > MAX_SHOWN:
                shown.append(f"... and {len(problems) - MAX_SHOWN} more")
            raise DataError(f"{self.csv}: {len(problems)} bad row(s); {LAYOUT}:\n"
                            + "\n".join(shown))
        if outside:
            log.warning("%s: %d path(s) lead outside data.source.audio_root %s (lines %s); "
                        "they are used as written", self.csv, len(outside), self.audio_root,
                        _lines(outside))
        if not clips:
            raise DataError(f"{self.csv} lists no clips; {LAYOUT}")
        return clips

    def _rows(self, reader: Any, header: list[str]
              ) -> tuple[list[Clip], list[str], list[int]]:
        """The clips of every good row, every bad row's problems, the lines whose relative
        path leaves ``audio_root``."""
        clips: list[Clip] = []
        problems: list[str] = []
        outside: list[int] = []
        first_line: dict[str, int] = {}
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue  # blank line
            if len(cells) > len(header):
                problems.append(f"line {line}: {len(cells)} cells but the header has "
                                f"{len(header)} columns (an unquoted comma in a path?)")
                continue
            clip, errors = self._clip(dict(zip(header, cells, strict=False)), line)
            if clip is not None and clip.clip_id in first_line:
                errors.append(f"line {line}, column path: {clip.clip_id!r} is already listed "
                              f"on line {first_line[clip.clip_id]}")
            problems += errors
            if clip is None or errors:
                continue
            first_line[clip.clip_id] = line
            if not Path(clip.clip_id).is_absolute() and not _inside(Path(clip.path),
                                                                     self.audio_root):
                outside.append(line)
            clips.append(clip)
        return clips, problems, outside

    def _clip(self, row: dict[str, Any], line: int) -> tuple[Clip | None, list[str]]:
        def cell(key: str) -> str:
            value = row.get(key)
            return value.strip() if isinstance(value, str) else ""

        where = f"line {line}"
        errors = []
        raw_path = cell("path")
        if not raw_path:
            errors.append(f"{where}, column path: empty (expected a file path)")
        label = parse_label(cell("label"))
        if label is None:
            errors.append(f"{where}, column label: {cell('label')!r} is not one of 0, 1, "
                          "human, real, ai, fake, deepfake")
        split = parse_split(cell("split"))
        if split is False:
            errors.append(f"{where}, column split: {cell('split')!r} is not one of train, "
                          "val, valid, validation, test (or empty)")
        if errors:
            return None, errors
        path = Path(raw_path).expanduser()
        full = path if path.is_absolute() else self.audio_root / path
        clip_id = path.as_posix()
        group = cell("group") or Path(clip_id).with_suffix("").as_posix()
        generator = cell("generator") or (HUMAN if label == 0 else UNKNOWN_GENERATOR)
        return Clip(clip_id=clip_id, label=label, group=group, generator=generator,
                    path=str(full), split=split or None), []


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path``, its ``..`` resolved (symlinks not), lies in ``root``."""
    return os.path.normpath(path).startswith(os.path.join(os.path.normpath(root), ""))


def _lines(lines: list[int], keep: int = 10) -> str:
    shown = ", ".join(map(str, lines[:keep]))
    return shown + (f" and {len(lines) - keep} more" if len(lines) > keep else "")
