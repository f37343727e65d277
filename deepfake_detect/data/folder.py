"""The ``folder`` source: ``<root>/<class dir>/**/*.{wav,flac,ogg,mp3}``.

Class directory names map to labels through ``classes`` (matched case-insensitively; by
default human/real -> 0 and ai/fake/deepfake -> 1). Below an AI class directory the first
sub-folder names the generator (``unknown`` for files directly inside it); human clips have
generator ``human``. Each file is its own group (its path without extension), unless
``group_by: parent`` groups the files of one sub-folder (e.g. the sections of one song; files
directly inside a class directory stay their own group).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepfake_detect.config import build, one_of, require
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
    required_path,
)
from deepfake_detect.errors import DataError

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

    def __post_init__(self) -> None:
        super().__post_init__()
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

    def __init__(self, **params: Any):
        super().__init__()
        if isinstance(params.get("extensions"), list):
            params["extensions"] = tuple(params["extensions"])
        self.cfg = build(FolderConfig, params, "data.source")
        self.root = required_path(self.cfg.root, "data.source.root",
                                  "a folder holding class directories (<root>/human/, "
                                  "<root>/ai/ ...)")

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
        if label == 0:
            generator = HUMAN
        else:
            generator = inside.parts[0] if len(inside.parts) > 1 else UNKNOWN_GENERATOR
        file_id = relative_id(path, self.root)
        if self.cfg.group_by == "parent" and len(inside.parts) > 1:
            group = relative_id(path.parent, self.root)
        else:
            group = relative_id(path.with_suffix(""), self.root)
        return Clip(clip_id=file_id, label=label, group=group, generator=generator,
                    path=str(path))
