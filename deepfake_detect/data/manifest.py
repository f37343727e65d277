"""The ``manifest`` source: a CSV listing ``path,label`` and optionally ``group,generator,split``.

Paths are relative to ``audio_root`` (default: the CSV's folder) or absolute. Labels accept
0/1 or human/real/ai/fake/deepfake (any case). ``group`` defaults to the path without its
extension (each file its own group); ``generator`` to ``human`` for label 0 and ``unknown``
for label 1; ``split`` (train/val/valid/validation/test) pins a clip to a split, empty lets
the grouped random split decide. A bad row raises DataError naming the CSV file and line; a
listed file that is missing on disk becomes a skipped clip (reported in ``skipped.csv``).
"""

from __future__ import annotations

import csv
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

REQUIRED = ("path", "label")
OPTIONAL = ("group", "generator", "split")
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
        if not self.csv.is_file():
            raise DataError(f"manifest {self.csv} (data.source.csv) does not exist; {LAYOUT}")
        if not self.audio_root.is_dir():
            raise DataError(f"data.source.audio_root {self.audio_root} does not exist or is "
                            "not a directory")
        with open_listing(self.csv, "manifest (data.source.csv)") as handle:
            reader = csv.DictReader(handle)
            header = [str(h or "").strip().lower() for h in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise DataError(f"{self.csv} line 1: missing column(s) {', '.join(missing)} "
                                f"(header: {','.join(header) or 'empty'}); {LAYOUT}")
            reader.fieldnames = header
            clips: list[Clip] = []
            first_line: dict[str, int] = {}
            for row in reader:
                line = reader.line_num
                if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                    continue  # blank line
                clip = self._clip(row, line)
                if clip.clip_id in first_line:
                    raise DataError(f"{self.csv} line {line}: path {clip.clip_id!r} is already "
                                    f"listed on line {first_line[clip.clip_id]}")
                first_line[clip.clip_id] = line
                clips.append(clip)
        if not clips:
            raise DataError(f"{self.csv} lists no clips; {LAYOUT}")
        return clips

    def _clip(self, row: dict[str, Any], line: int) -> Clip:
        def cell(key: str) -> str:
            value = row.get(key)
            return value.strip() if isinstance(value, str) else ""

        where = f"{self.csv} line {line}"
        raw_path = cell("path")
        if not raw_path:
            raise DataError(f"{where}: empty path; {LAYOUT}")
        label = parse_label(cell("label"))
        if label is None:
            raise DataError(f"{where}: label {cell('label')!r} is not one of 0, 1, human, "
                            "real, ai, fake, deepfake")
        split = parse_split(cell("split"))
        if split is False:
            raise DataError(f"{where}: split {cell('split')!r} is not one of train, val, "
                            "valid, validation, test (or empty)")
        path = Path(raw_path).expanduser()
        full = path if path.is_absolute() else self.audio_root / path
        clip_id = path.as_posix()
        group = cell("group") or Path(clip_id).with_suffix("").as_posix()
        generator = cell("generator") or (HUMAN if label == 0 else UNKNOWN_GENERATOR)
        return Clip(clip_id=clip_id, label=label, group=group, generator=generator,
                    path=str(full), split=split or None)
