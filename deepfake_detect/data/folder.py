"""The ``folder`` source: ``<root>/<class dir>/**/*.{wav,flac,ogg,mp3}``.

Class directory names map to labels through ``classes`` (matched case-insensitively; by
default human/real -> 0 and ai/fake/deepfake -> 1). Below an AI class directory the first
sub-folder names the generator (``unknown`` for files directly inside it); human clips have
generator ``human``. Each file is its own group (its path without extension), unless
``group_by: parent`` groups the files of one sub-folder (e.g. the sections of one song; files
directly inside a class directory stay their own group).
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepfake_detect.config import one_of, require
from deepfake_detect.data import audio
from deepfake_detect.data.clips import Clip
from deepfake_detect.data.files import (
    HUMAN,
    UNKNOWN_GENERATOR,
    FileSource,
    FileSourceConfig,
    is_ignored,
    list_folder,
    normalise_extensions,
    relative_id,
)
from deepfake_detect.errors import ConfigError, DataError

log = logging.getLogger(__name__)

DEFAULT_CLASSES = {"human": 0, "real": 0, "ai": 1, "fake": 1, "deepfake": 1}
GROUP_BY = ("file", "parent")


@dataclass(frozen=True)
class FolderConfig(FileSourceConfig):
    """The ``data.source`` node of ``data=folder``."""

    root: Any = None
    classes: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_CLASSES))
    group_by: str = "file"
    extensions: tuple[str, ...] = audio.AUDIO_EXTENSIONS
    # Regexes on the file's path relative to root (POSIX): the first group that matches (or
    # the named group ``generator`` / ``group``) overrides the sub-folder rule / group_by.
    generator_pattern: str | None = None
    group_pattern: str | None = None
    # A CSV (relative to root, or absolute) with columns path (relative to root), generator
    # and optionally group: per-file names that win over everything else.
    generators_csv: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("generator_pattern", "group_pattern"):
            pattern = getattr(self, key)
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as err:
                    raise ConfigError(key, f"is not a valid regular expression ({err}): "
                                           f"{pattern!r}") from None
        require(isinstance(self.classes, dict) and len(self.classes) > 0, "classes",
                f"must map class directory names to 0 (human) or 1 (AI), got {self.classes!r}")
        for name, label in self.classes.items():
            require(label in (0, 1) and not isinstance(label, bool), f"classes.{name}",
                    f"must be 0 (human) or 1 (AI-generated), got {label!r}")
        lowered = [str(name).lower() for name in self.classes]
        require(len(set(lowered)) == len(lowered), "classes",
                "class directory names must differ regardless of case")
        one_of(self.group_by, GROUP_BY, "group_by")
        object.__setattr__(self, "extensions", normalise_extensions(self.extensions,
                                                                    "extensions"))


class FolderSource(FileSource):
    """Audio files sorted into class directories."""

    name = "folder"
    config = FolderConfig
    root_help = "a folder holding class directories (<root>/human/, <root>/ai/ ...)"
    cfg: FolderConfig
    _names: dict[str, dict[str, str]] | None = None  # generators_csv, read once

    def _layout(self) -> str:
        names = sorted(self.cfg.classes, key=lambda n: (self.cfg.classes[n], n))
        dirs = ", ".join(f"{n}/ (label {self.cfg.classes[n]})" for n in names)
        exts = ",".join(e.lstrip(".") for e in self.cfg.extensions)
        return (f"expected {self.root}/<class dir>/**/*.{{{exts}}} with class directories "
                f"{dirs}, matched case-insensitively (data.source.classes)")

    def list_files(self) -> list[Clip]:
        if not self.root.is_dir():
            raise DataError(f"data.source.root {self.root} does not exist or is not a "
                            f"directory; {self._layout()}")
        labels = {str(name).lower(): label for name, label in self.cfg.classes.items()}
        subdirs = [p for p in list_folder(self.root, "data.source.root")
                   if p.is_dir() and not is_ignored(p.name)]
        class_dirs = [(p, labels[p.name.lower()]) for p in subdirs if p.name.lower() in labels]
        if not class_dirs:
            found = ", ".join(p.name + "/" for p in subdirs) or "no sub-directories"
            raise DataError(f"no class directory under {self.root} (found: {found}); "
                            f"{self._layout()}")
        ignored = [p.name for p in subdirs if p.name.lower() not in labels]
        if ignored:
            log.info("folder source: ignoring directories %s under %s (not in "
                     "data.source.classes)", ignored, self.root)
        clips: list[Clip] = []
        for class_dir, label in class_dirs:
            files = self.files_below(class_dir, label)
            if not files:
                why = "".join(f" ({row['path']}: {row['reason']})" for row in self.unlisted
                              if row["path"] == str(class_dir))
                raise DataError(f"no audio files under {class_dir}{why}; {self._layout()}")
            clips += [self._clip(path, class_dir, label) for path in files]
        present = {clip.label for clip in clips}
        for label, what in ((0, "human"), (1, "AI-generated")):
            if label not in present:
                wanted = ", ".join(f"{n}/" for n, lab in self.cfg.classes.items() if lab == label)
                raise DataError(f"no {what} (label {label}) class directory under {self.root}: "
                                f"add one of {wanted or '(none configured)'}; {self._layout()}")
        return clips

    def _clip(self, path: Path, class_dir: Path, label: int) -> Clip:
        inside = path.relative_to(class_dir)
        file_id = relative_id(path, self.root)
        if label == 0:
            generator = HUMAN
        else:
            generator = inside.parts[0] if len(inside.parts) > 1 else UNKNOWN_GENERATOR
            generator = _match(self.cfg.generator_pattern, file_id, "generator") or generator
        if self.cfg.group_by == "parent" and len(inside.parts) > 1:
            group = relative_id(path.parent, self.root)
        else:
            group = relative_id(path.with_suffix(""), self.root)
        group = _match(self.cfg.group_pattern, file_id, "group") or group
        listed = self._listed().get(file_id, {})
        if label == 1 and listed.get("generator"):
            generator = listed["generator"]
        group = listed.get("group") or group
        return Clip(clip_id=file_id, label=label, group=group, generator=generator,
                    path=str(path))

    def _listed(self) -> dict[str, dict[str, str]]:
        """``generators_csv`` as {relative path: {generator, group}} (read once)."""
        if self._names is None:
            self._names = {}
            if self.cfg.generators_csv:
                self._names = read_names(self.root, self.cfg.generators_csv)
        return self._names


def _match(pattern: str | None, text: str, name: str) -> str | None:
    """The ``name`` group (else the first group, else the whole match) of ``pattern`` in
    ``text``; None when it does not match."""
    if not pattern:
        return None
    found = re.search(pattern, text)
    if found is None:
        return None
    if name in found.groupdict():
        return found.group(name)
    return found.group(1) if found.groups() else found.group(0)


def read_names(root: Path, csv_path: str) -> dict[str, dict[str, str]]:
    """Per-file generator (and group) names from a CSV with columns path, generator[, group]."""
    path = Path(csv_path).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise DataError(f"data.source.generators_csv {path} does not exist (expected a CSV "
                        "with columns path,generator[,group], paths relative to the root)")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"path", "generator"} <= set(reader.fieldnames):
            raise DataError(f"{path}: expected the columns path and generator (and "
                            f"optionally group), found {reader.fieldnames}")
        return {Path(row["path"].strip()).as_posix(): {
            "generator": (row.get("generator") or "").strip(),
            "group": (row.get("group") or "").strip()} for row in reader}
