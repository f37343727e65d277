"""The ``fakemusiccaps`` source: FakeMusicCaps (real MusicCaps clips vs text-to-music models).

Layout (as unpacked from the Zenodo archive, polimi-ispl/FakeMusicCaps)::

    <root>/MusicCaps/<ytid>.wav              real clips (label 0, generator "human")
    <root>/<generator>/<ytid>.wav            one folder per generator (label 1), by default
                                             MusicGen_medium, musicldm, audioldm2,
                                             stable_audio_open, mustango
    <root>/SunoCaps/<ytid>.wav               the open-set clips (Suno renderings of MusicCaps
                                             captions; a ytid holding ``_`` is cut short
                                             there, at its first ``_``)
    <root>/__MACOSX/...                      macOS leftovers, ignored (and ``._*`` files)

Every generator renders the same MusicCaps captions, so a ytid is the group: all clips of one
caption (the real one and every generated one) land in the same split. Some ytids have no
real clip (148 in the full set), and fakes outnumber real clips about 5 : 1: a line after
listing gives both.

**The paper's protocol** (``paper_experiments/data_lib.py``): the test set is every clip, real
and generated, of the ytids that SunoCaps renders (closed set), and with SunoCaps' own clips
the open set. ``include_sunocaps: true`` adds the SunoCaps clips to the test split and pins
the captions they render there too, so no caption of the open set reaches training;
``protocol: paper`` pins those captions to test even without the SunoCaps clips (the closed
set as the paper tests it). SunoCaps names are matched to ytids exactly, or as the part of a
ytid before its first ``_`` when only one ytid fits; a name matching none stays its own group.

**Copies with the fakes only** (mirrors of the spoofs): ``real_dir`` may name the real clips'
folder anywhere (an absolute path), or be null to list the generated clips alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from deepfake_detect.config import one_of, require
from deepfake_detect.data.clips import Clip
from deepfake_detect.data.files import (
    HUMAN,
    FileSource,
    FileSourceConfig,
    imbalance_line,
    is_ignored,
    list_folder,
    relative_id,
)
from deepfake_detect.errors import DataError

log = logging.getLogger(__name__)

PROTOCOLS = ("random", "paper")
GENERATORS = ("MusicGen_medium", "musicldm", "audioldm2", "stable_audio_open", "mustango")


@dataclass(frozen=True)
class FakeMusicCapsConfig(FileSourceConfig):
    """The ``data.source`` node of ``data=fakemusiccaps``."""

    root: Any = None
    real_dir: str | None = "MusicCaps"  # relative to root, or absolute; null: fakes only
    generators: tuple[str, ...] = GENERATORS
    include_sunocaps: bool = False
    sunocaps_dir: str = "SunoCaps"
    protocol: str = "random"  # random (grouped split) | paper (SunoCaps' captions in test)

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
        require(self.real_dir is None or (isinstance(self.real_dir, str)
                                          and self.real_dir.strip()), "real_dir",
                "must be a folder (relative to data.source.root, or absolute) or null "
                f"(the generated clips only), got {self.real_dir!r}")
        require(isinstance(self.include_sunocaps, bool), "include_sunocaps",
                f"must be true or false, got {self.include_sunocaps!r}")
        one_of(self.protocol, PROTOCOLS, "protocol")


class FakeMusicCapsSource(FileSource):
    """FakeMusicCaps: MusicCaps ytids rendered by several text-to-music generators."""

    name = "fakemusiccaps"
    config = FakeMusicCapsConfig
    root_help = ("the FakeMusicCaps folder (the one holding MusicCaps/ and the generator "
                 "folders)")
    cfg: FakeMusicCapsConfig

    def _layout(self) -> str:
        gens = ", ".join(f"{g}/" for g in self.cfg.generators)
        return (f"expected {self.root}/{self.cfg.real_dir}/<ytid>.wav (real) and generator "
                f"folders {gens} holding <ytid>.wav (generators are chosen with "
                "data.source.generators)")

    def _folder(self, name: str, key: str = "data.source.generators") -> Path:
        folder = self.root / name  # an absolute name stays itself
        if folder.is_dir():
            return folder
        entries = list_folder(self.root, "data.source.root")
        present = sorted(p.name + "/" for p in entries if p.is_dir() and not is_ignored(p.name))
        hint = ""
        nested = [p for p in entries if p.is_dir() and (p / name).is_dir()]
        if nested:
            hint = f" (found {nested[0] / name}: set data.source.root={nested[0]})"
        elif key == "data.source.real_dir" and any(g + "/" in present
                                                   for g in self.cfg.generators):
            hint = (" (a copy with the generated clips only? give the real clips' folder "
                    "with data.source.real_dir=/path/to/MusicCaps, or list the fakes alone "
                    "with data.source.real_dir=null)")
        raise DataError(f"FakeMusicCaps folder {folder} is missing ({key}){hint}; found "
                        f"{', '.join(present) or 'no folders'} in {self.root}; "
                        f"{self._layout()}")

    def list_files(self) -> list[Clip]:
        if not self.root.is_dir():
            raise DataError(f"data.source.root {self.root} does not exist or is not a "
                            f"directory; {self._layout()}")
        list_folder(self.root, "data.source.root")  # readable, or a clear error
        clips: list[Clip] = []
        if self.cfg.real_dir is not None:
            clips += self._listed(self._folder(self.cfg.real_dir, "data.source.real_dir"),
                                  0, HUMAN)
        else:
            log.info("fakemusiccaps: data.source.real_dir=null: the generated clips only")
        for generator in self.cfg.generators:
            clips += self._listed(self._folder(generator), 1, generator)
        if self.cfg.include_sunocaps or self.cfg.protocol == "paper":
            clips = self._sunocaps(clips)
        self._report(clips)
        return clips

    def _listed(self, folder: Path, label: int, generator: str) -> list[Clip]:
        files = self.files_below(folder, label)
        if not files:
            why = "".join(f" ({row['path']}: {row['reason']})" for row in self.unlisted
                          if row["path"] == str(folder))
            raise DataError(f"no audio files in {folder}{why}; {self._layout()}")
        return [Clip(clip_id=relative_id(path, self.root), label=label, group=path.stem,
                     generator=generator, path=str(path)) for path in files]

    def _sunocaps(self, clips: list[Clip]) -> list[Clip]:
        """The paper's test set: SunoCaps' captions (every clip of those ytids) pinned to
        test, and with ``include_sunocaps`` the SunoCaps clips themselves, in their
        captions' groups."""
        folder = self._folder(self.cfg.sunocaps_dir, "data.source.sunocaps_dir")
        files = self.files_below(folder, 1)
        if not files:
            raise DataError(f"no audio files in {folder} (data.source.sunocaps_dir); the "
                            "paper's test set is the captions SunoCaps renders")
        links = link_names([p.stem for p in files], {c.group for c in clips})
        pinned = {ytid for found in links.values() for ytid in found}
        out = [replace(c, split="test") if c.group in pinned else c for c in clips]
        if self.cfg.include_sunocaps:
            name = self.cfg.sunocaps_dir
            out += [Clip(clip_id=relative_id(p, self.root), label=1, generator=name,
                         group=links[p.stem][0] if links[p.stem] else f"{name}/{p.stem}",
                         path=str(p), split="test") for p in files]
        unmatched = sorted(stem for stem, found in links.items() if not found)
        log.info("fakemusiccaps: %d SunoCaps name(s) render %d caption(s), whose %d clip(s) "
                 "are pinned to the test split (the paper's protocol)%s", len(links),
                 len(pinned), sum(c.group in pinned for c in clips),
                 f"; {len(unmatched)} match no ytid (e.g. {unmatched[0]!r}): their own "
                 "groups" if unmatched else "")
        return out

    def _report(self, clips: list[Clip]) -> None:
        """The class balance, and how many captions have no real clip."""
        real = {c.group for c in clips if c.label == 0}
        fake = {c.group for c in clips if c.label == 1 and c.generator in self.cfg.generators}
        if self.cfg.real_dir is not None and fake - real:
            log.info("fakemusiccaps: %d of %d ytid(s) have no real clip (only generated ones)",
                     len(fake - real), len(fake | real))
        log.info("%s", imbalance_line(self.name, clips))


def link_names(names: list[str], ytids: set[str]) -> dict[str, list[str]]:
    """The ytids each SunoCaps file name stands for: the ytid of that name, else the ytids
    whose part before their first ``_`` is the name (SunoCaps' names are cut there)."""
    cut: dict[str, list[str]] = {}
    for ytid in sorted(ytids):
        if "_" in ytid:
            cut.setdefault(ytid.split("_", 1)[0], []).append(ytid)
    return {name: [name] if name in ytids else cut.get(name, []) for name in names}
