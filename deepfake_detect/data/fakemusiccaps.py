"""The ``fakemusiccaps`` source: FakeMusicCaps (real MusicCaps clips vs text-to-music models).

Layout (as unpacked from the dataset archive)::

    <root>/MusicCaps/<ytid>.wav              real clips (label 0, generator "human")
    <root>/<generator>/<ytid>.wav            one folder per generator (label 1), by default
                                             MusicGen_medium, musicldm, audioldm2,
                                             stable_audio_open, mustango
    <root>/SunoCaps/...                      optional, kept out of training

Every generator renders the same MusicCaps captions, so a ytid is the group: all clips of one
caption (the real one and every generated one) land in the same split. ``SunoCaps`` clips
(``include_sunocaps: true``) are an out-of-distribution test set: they are pinned to the test
split (``clip.split = "test"``) and grouped on their own (``SunoCaps/<name>``) so that
pinning them cannot pull a MusicCaps caption out of its split. ``__MACOSX/`` and ``._*``
files from macOS archives are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepfake_detect.config import build, require
from deepfake_detect.data.clips import Clip
from deepfake_detect.data.files import (
    HUMAN,
    FileSource,
    FileSourceConfig,
    is_ignored,
    list_folder,
    relative_id,
    required_path,
)
from deepfake_detect.errors import DataError

GENERATORS = ("MusicGen_medium", "musicldm", "audioldm2", "stable_audio_open", "mustango")


@dataclass(frozen=True)
class FakeMusicCapsConfig(FileSourceConfig):
    """The ``data.source`` node of ``data=fakemusiccaps``."""

    root: Any = None
    real_dir: str = "MusicCaps"
    generators: tuple[str, ...] = GENERATORS
    include_sunocaps: bool = False
    sunocaps_dir: str = "SunoCaps"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "generators", tuple(self.generators or ()))
        require(len(self.generators) > 0
                and all(isinstance(g, str) and g.strip() for g in self.generators),
                "generators", f"must list at least one generator folder (default: "
                f"{', '.join(GENERATORS)}), got {list(self.generators)!r}")
        require(len(set(self.generators)) == len(self.generators), "generators",
                f"lists a folder twice: {list(self.generators)!r}")
        require(self.real_dir not in self.generators, "generators",
                f"must not contain the real folder {self.real_dir!r}")
        require(isinstance(self.include_sunocaps, bool), "include_sunocaps",
                f"must be true or false, got {self.include_sunocaps!r}")


class FakeMusicCapsSource(FileSource):
    """FakeMusicCaps: MusicCaps ytids rendered by several text-to-music generators."""

    name = "fakemusiccaps"

    def __init__(self, **params: Any):
        super().__init__()
        if isinstance(params.get("generators"), list):
            params["generators"] = tuple(params["generators"])
        self.cfg = build(FakeMusicCapsConfig, params, "data.source")
        self.root = required_path(self.cfg.root, "data.source.root",
                                  "the FakeMusicCaps folder (the one holding MusicCaps/ and "
                                  "the generator folders)")

    def _layout(self) -> str:
        gens = ", ".join(f"{g}/" for g in self.cfg.generators)
        return (f"expected {self.root}/{self.cfg.real_dir}/<ytid>.wav (real) and generator "
                f"folders {gens} holding <ytid>.wav (generators are chosen with "
                "data.source.generators)")

    def _folder(self, name: str) -> Path:
        folder = self.root / name
        if folder.is_dir():
            return folder
        entries = list_folder(self.root, "data.source.root")
        present = sorted(p.name + "/" for p in entries if p.is_dir() and not is_ignored(p.name))
        hint = ""
        nested = [p for p in entries if p.is_dir() and (p / name).is_dir()]
        if nested:
            hint = f" (found {nested[0] / name}: set data.source.root={nested[0]})"
        raise DataError(f"FakeMusicCaps folder {folder} is missing{hint}; found "
                        f"{', '.join(present) or 'no folders'} in {self.root}; "
                        f"{self._layout()}")

    def list_files(self) -> list[Clip]:
        if not self.root.is_dir():
            raise DataError(f"data.source.root {self.root} does not exist or is not a "
                            f"directory; {self._layout()}")
        list_folder(self.root, "data.source.root")  # readable, or a clear error
        # (folder, label, generator, pinned to the test split)
        folders = [(self.cfg.real_dir, 0, HUMAN, False)]
        folders += [(g, 1, g, False) for g in self.cfg.generators]
        if self.cfg.include_sunocaps:
            folders.append((self.cfg.sunocaps_dir, 1, self.cfg.sunocaps_dir, True))
        clips: list[Clip] = []
        for name, label, generator, test_only in folders:
            folder = self._folder(name)
            files = self.files_below(folder, label)
            if not files:
                why = "".join(f" ({row['path']}: {row['reason']})" for row in self.unlisted
                              if row["path"] == str(folder))
                raise DataError(f"no audio files in {folder}{why}; {self._layout()}")
            for path in files:
                ytid = path.stem
                clips.append(Clip(clip_id=relative_id(path, self.root), label=label,
                                  group=f"{name}/{ytid}" if test_only else ytid,
                                  generator=generator, path=str(path),
                                  split="test" if test_only else None))
        return clips
