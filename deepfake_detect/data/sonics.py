"""The ``sonics`` source: SONICS (real songs vs Suno/Udio songs), with its own split.

Layout (as published)::

    <root>/real_songs.csv     id, filename, duration, split, ... (label 0)
    <root>/fake_songs.csv     id, filename, duration, split, algorithm, label/target ... (1)
    <root>/real_songs/<filename>[.mp3]
    <root>/fake_songs/<filename>[.mp3]

The label comes from the CSV a row is in; a ``target`` (or parseable ``label``) column must
agree with it. Each audio file is looked up in ``audio_dirs`` (relative to the root, in order;
``filename`` may omit its extension). The dataset's ``split`` column is used (valid/validation
-> val; empty -> the grouped random split decides); generator = ``algorithm`` (``human`` for
real songs); group = the ``group`` or ``song`` column when present, else ``id``. Listed files
missing on disk become skipped clips; a CSV none of whose files exist is a layout error.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepfake_detect.config import build, require
from deepfake_detect.data import audio
from deepfake_detect.data.clips import Clip
from deepfake_detect.data.files import (
    HUMAN,
    UNKNOWN_GENERATOR,
    UNLISTED,
    FileSource,
    FileSourceConfig,
    open_listing,
    parse_label,
    parse_split,
    required_path,
)
from deepfake_detect.errors import DataError

log = logging.getLogger(__name__)

EXTENSION_ORDER = (".mp3", ".wav", ".flac", ".ogg")


@dataclass(frozen=True)
class SonicsConfig(FileSourceConfig):
    """The ``data.source`` node of ``data=sonics``."""

    root: Any = None
    real_csv: str = "real_songs.csv"
    fake_csv: str = "fake_songs.csv"
    audio_dirs: tuple[str, ...] = ("real_songs", "fake_songs", ".")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "audio_dirs", tuple(self.audio_dirs or ()))
        require(len(self.audio_dirs) > 0 and all(isinstance(d, str) for d in self.audio_dirs),
                "audio_dirs", "must list at least one folder (relative to data.source.root), "
                f"got {list(self.audio_dirs)!r}")
        for key in ("real_csv", "fake_csv"):
            value = getattr(self, key)
            require(isinstance(value, str) and value.strip(), key,
                    f"must be a CSV file name (relative to data.source.root), got {value!r}")


class SonicsSource(FileSource):
    """SONICS songs listed in real_songs.csv / fake_songs.csv."""

    name = "sonics"

    def __init__(self, **params: Any):
        super().__init__()
        if isinstance(params.get("audio_dirs"), list):
            params["audio_dirs"] = tuple(params["audio_dirs"])
        self.cfg = build(SonicsConfig, params, "data.source")
        self.root = required_path(self.cfg.root, "data.source.root",
                                  "the SONICS folder (holding real_songs.csv and "
                                  "fake_songs.csv)")

    def _layout(self) -> str:
        dirs = ", ".join(f"{d}/" for d in self.cfg.audio_dirs)
        return (f"expected {self.root}/{self.cfg.real_csv} and {self.root}/{self.cfg.fake_csv} "
                "(columns id, filename, split, algorithm, ...) and the audio files under "
                f"{self.root}/ in {dirs} (data.source.audio_dirs)")

    def list_files(self) -> list[Clip]:
        if not self.root.is_dir():
            raise DataError(f"data.source.root {self.root} does not exist or is not a "
                            f"directory; {self._layout()}")
        dirs = [self.root / d for d in self.cfg.audio_dirs]
        index = {}
        for folder in (d for d in dirs if d.is_dir()):
            try:
                index[folder] = set(os.listdir(folder))
            except OSError as err:
                reason = "permission denied" if isinstance(err, PermissionError) else err
                self.unlisted.append({"path": str(folder), "label": "",
                                      "reason": f"{UNLISTED}: {reason}"})
        if not index:
            raise DataError(f"none of the audio folders exist: "
                            f"{', '.join(str(d) for d in dirs)}; {self._layout()}")
        clips: list[Clip] = []
        seen: dict[str, str] = {}
        for csv_name, label in ((self.cfg.real_csv, 0), (self.cfg.fake_csv, 1)):
            rows = self._read(self.root / csv_name, label, index, seen)
            clips += rows
        return clips

    def _read(self, path: Path, label: int, index: dict[Path, set[str]],
              seen: dict[str, str]) -> list[Clip]:
        if not path.is_file():
            raise DataError(f"SONICS metadata {path} is missing; {self._layout()}")
        clips: list[Clip] = []
        missing = 0
        with open_listing(path, "SONICS metadata") as handle:
            reader = csv.DictReader(handle)
            header = [str(h or "").strip().lower() for h in (reader.fieldnames or [])]
            if "filename" not in header:
                raise DataError(f"{path} line 1: no 'filename' column (header: "
                                f"{','.join(header) or 'empty'}); {self._layout()}")
            reader.fieldnames = header
            for row in reader:
                line = reader.line_num
                clip, found = self._clip(row, path, line, label, index)
                if clip is None:
                    continue
                where = f"{path.name} line {line}"
                if clip.clip_id in seen:
                    raise DataError(f"{path} line {line}: filename {row['filename']!r} is "
                                    f"already listed ({seen[clip.clip_id]})")
                seen[clip.clip_id] = where
                missing += not found
                clips.append(clip)
        if not clips:
            raise DataError(f"{path} lists no songs; {self._layout()}")
        if missing == len(clips):
            raise DataError(f"none of the {len(clips)} files listed in {path} was found in "
                            f"{', '.join(str(d) for d in index)}; {self._layout()}")
        if missing:
            log.warning("sonics: %d of %d files listed in %s are missing; they will be "
                        "skipped", missing, len(clips), path)
        return clips

    def _clip(self, row: dict[str, Any], path: Path, line: int, label: int,
              index: dict[Path, set[str]]) -> tuple[Clip | None, bool]:
        def cell(key: str) -> str:
            value = row.get(key)
            return value.strip() if isinstance(value, str) else ""

        filename = cell("filename")
        if not filename:
            if not any(cell(k) for k in row if isinstance(k, str)):
                return None, False  # blank line
            raise DataError(f"{path} line {line}: empty filename")
        for column in ("target", "label"):
            stated = parse_label(cell(column)) if cell(column) else None
            if column == "label" and stated is None and "fake" in cell(column).lower():
                stated = 1  # SONICS fake types: "full fake", "half fake", ...
            if stated is not None and stated != label:
                raise DataError(f"{path} line {line}: {column} {cell(column)!r} says label "
                                f"{stated}, but rows of {path.name} are label {label}")
        split = parse_split(cell("split"))
        if split is False:
            raise DataError(f"{path} line {line}: split {cell('split')!r} is not one of "
                            "train, val, valid, validation, test (or empty)")
        audio_path, found = self._find(filename, index, self.root / path.stem)
        song_id = cell("id") or Path(filename).stem
        group = cell("group") or cell("song") or song_id
        generator = HUMAN if label == 0 else (cell("algorithm") or UNKNOWN_GENERATOR)
        clip = Clip(clip_id=f"{path.stem}/{filename}", label=label, group=group,
                    generator=generator, path=str(audio_path), split=split or None)
        return clip, found

    def _find(self, filename: str, index: dict[Path, set[str]],
              home: Path) -> tuple[Path, bool]:
        """The audio file for ``filename`` (extension optional) and whether it exists; a
        missing file is reported under ``home`` (the folder named after its CSV) if that is
        one of the audio folders."""
        if Path(filename).suffix.lower() in audio.AUDIO_EXTENSIONS:
            names = [filename]
        else:
            names = [filename + ext for ext in EXTENSION_ORDER] + [filename]
        nested = "/" in filename or "\\" in filename
        for folder, entries in index.items():
            for name in names:
                if (folder / name).is_file() if nested else name in entries:
                    return folder / name, True
        return (home if home in index else next(iter(index))) / names[0], False
