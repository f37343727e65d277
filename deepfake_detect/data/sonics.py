"""The ``sonics`` source: SONICS (real songs vs Suno/Udio songs), as distributed.

As downloaded from Hugging Face (``awsaf49/sonics``; columns from its README, paths from its
``data_split.py``)::

    <root>/real_songs.csv   id, filename, title, artist, year, lyrics, lyrics_features,
                            duration, youtube_id, label ("real"), artist_overlap, target (0),
                            skip_time, no_vocal, split (train/valid/test)
    <root>/fake_songs.csv   id, filename, title, duration, algorithm, style, source,
                            lyrics_features, topic, genre, mood, label ("full fake", "half
                            fake", "mostly fake"), target (1), split
    <root>/fake_songs/part_01.zip, part_02.zip, ...   the fakes, zipped in parts
    <root>/real_songs/      not distributed: downloaded by the user from ``youtube_id``

``filename`` carries no extension (``fake_<id>_<suno|udio>_<0|1>``; the official scripts add
``.mp3``). Each song is looked up by that name in ``audio_dirs``, each searched recursively,
so the MP3s are found wherever the zips were unpacked (``fake_songs/fake_songs/*.mp3`` too);
a real song may have any common download format (mp3, wav, flac, ogg, opus, m4a, webm, aac:
m4a, webm and aac need ffmpeg, which is said per run when it is absent). Zips not unpacked
yet are a message with the exact ``unzip`` command. Songs listed but not on disk are left out
and counted (the real ones are the usual case: many YouTube ids are gone), so a copy with the
fakes only lists the fakes alone (evaluation on AI-generated songs only).

The official filters apply by default: ``duration >= min_duration`` (30 s) and, with
``drop_no_vocal``, ``no_vocal == False`` (a row without the column keeps its song); the
``split`` column is the split (valid -> val; ``data.split.use_source_split``). Groups are
namespaced per CSV (``real_songs/<id>``, ``fake_songs/<id>``: the two numbering schemes are
separate; the two renderings ``_0``/``_1`` of one fake share its id); ``link_column`` names a
column of fake_songs.csv holding the id of the real song a fake was made from, when a copy of
the data links them. A group that the dataset's own split puts in two splits is split by
split name, with a line saying how many. Songs are long: ``conf/data/sonics.yaml`` takes
windows over the whole song (``windows.mode: multi``).
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import zipfile
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from deepfake_detect.config import require
from deepfake_detect.data.clips import Clip
from deepfake_detect.data.files import (
    HUMAN,
    UNKNOWN_GENERATOR,
    UNLISTED,
    FileSource,
    FileSourceConfig,
    imbalance_line,
    is_ignored,
    open_listing,
    parse_label,
    parse_split,
)
from deepfake_detect.errors import DataError

log = logging.getLogger(__name__)

# In this order a name without extension is looked up; the first four decode with
# libsndfile, opus too (Ogg Opus); the rest only through audioread's ffmpeg backend.
EXTENSION_ORDER = (".mp3", ".wav", ".flac", ".ogg", ".opus", ".m4a", ".webm", ".aac")
NEEDS_FFMPEG = (".m4a", ".webm", ".aac")
TRUE_WORDS = {"true", "1", "yes"}


@dataclass(frozen=True)
class SonicsConfig(FileSourceConfig):
    """The ``data.source`` node of ``data=sonics``."""

    root: Any = None
    real_csv: str | None = "real_songs.csv"  # null: no real songs (fakes only)
    fake_csv: str = "fake_songs.csv"
    audio_dirs: tuple[str, ...] = ("real_songs", "fake_songs", ".")
    min_duration: float | None = 30.0  # the official filter (the CSV's duration); null: off
    drop_no_vocal: bool = True  # the official filter no_vocal == False
    link_column: str | None = None  # a fake_songs.csv column holding its real song's id

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "audio_dirs", tuple(self.audio_dirs or ()))
        require(len(self.audio_dirs) > 0 and all(isinstance(d, str) for d in self.audio_dirs),
                "audio_dirs", "must list at least one folder (relative to data.source.root, "
                f"or absolute), got {list(self.audio_dirs)!r}")
        for key in ("real_csv", "fake_csv"):
            value = getattr(self, key)
            require((key == "real_csv" and value is None)
                    or (isinstance(value, str) and value.strip()), key,
                    f"must be a CSV file name (relative to data.source.root), got {value!r}")
        require(self.min_duration is None or (isinstance(self.min_duration, int | float)
                                              and self.min_duration >= 0), "min_duration",
                f"must be a number of seconds >= 0 or null, got {self.min_duration!r}")
        require(isinstance(self.drop_no_vocal, bool), "drop_no_vocal",
                f"must be true or false, got {self.drop_no_vocal!r}")


class AudioIndex:
    """Every audio file below the audio folders, by name and by name without extension;
    the first folder wins, then the extension order, then the shallowest path."""

    def __init__(self, folders: list[Path], unlisted: list[dict[str, Any]]):
        self.folders = [f for f in folders if f.is_dir()]
        self.by_name: dict[str, Path] = {}
        self.by_stem: dict[str, Path] = {}
        seen: set[str] = set()
        for folder in self.folders:
            found = sorted(self._walk(folder, seen, unlisted),
                           key=lambda p: (EXTENSION_ORDER.index(p.suffix.lower()),
                                          len(p.parts), str(p)))
            for path in found:
                self.by_name.setdefault(path.name, path)
                self.by_stem.setdefault(path.stem, path)

    @staticmethod
    def _walk(folder: Path, seen: set[str], unlisted: list[dict[str, Any]]) -> list[Path]:
        def unreadable(err: OSError) -> None:
            reason = "permission denied" if isinstance(err, PermissionError) else err.strerror
            unlisted.append({"path": str(err.filename or folder), "label": "",
                             "reason": f"{UNLISTED}: {reason}"})

        out: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=True,
                                                    onerror=unreadable):
            real = os.path.realpath(dirpath)
            if real in seen:  # walked already (an earlier folder holds it), or a loop
                dirnames[:] = []
                continue
            seen.add(real)
            dirnames[:] = sorted(d for d in dirnames if not is_ignored(d))
            out += [Path(dirpath) / n for n in filenames
                    if not is_ignored(n) and n.lower().endswith(EXTENSION_ORDER)]
        return out

    def find(self, filename: str) -> Path | None:
        if Path(filename).suffix.lower() in EXTENSION_ORDER:
            return self.by_name.get(Path(filename).name)
        return self.by_stem.get(Path(filename).name)


class SonicsSource(FileSource):
    """SONICS songs listed in real_songs.csv / fake_songs.csv."""

    name = "sonics"
    config = SonicsConfig
    root_help = "the SONICS folder (holding real_songs.csv and fake_songs.csv)"
    cfg: SonicsConfig

    def _layout(self) -> str:
        dirs = ", ".join(f"{d}/" for d in self.cfg.audio_dirs)
        return (f"expected {self.root}/{self.cfg.real_csv} and {self.root}/{self.cfg.fake_csv} "
                "(columns id, filename, duration, split, ...) and the audio files below "
                f"{dirs} (searched recursively; data.source.audio_dirs)")

    def list_files(self) -> list[Clip]:
        if not self.root.is_dir():
            raise DataError(f"data.source.root {self.root} does not exist or is not a "
                            f"directory; {self._layout()}")
        index = AudioIndex([self.root / d for d in self.cfg.audio_dirs], self.unlisted)
        if not index.folders:
            raise DataError(f"none of the audio folders exist: "
                            f"{', '.join(str(self.root / d) for d in self.cfg.audio_dirs)}; "
                            f"{self._layout()}")
        real: list[Clip] = []
        if self.cfg.real_csv is not None:
            real = self._read(self.root / self.cfg.real_csv, 0, index)
        fake = self._read(self.root / self.cfg.fake_csv, 1, index)
        if self.cfg.link_column:
            fake = self._linked(fake, real)
        clips = split_straddling(real + fake)
        _say_undecodable(clips)
        log.info("%s", imbalance_line(self.name, clips))
        return clips

    def _read(self, path: Path, label: int, index: AudioIndex) -> list[Clip]:
        if not path.is_file():
            raise DataError(f"SONICS metadata {path} is missing; {self._layout()}")
        listed: list[tuple[Clip, bool]] = []
        seen: dict[str, int] = {}
        filtered = 0
        with open_listing(path, "SONICS metadata") as handle:
            reader = csv.DictReader(handle)
            header = [str(h or "").strip().lower() for h in (reader.fieldnames or [])]
            if "filename" not in header:
                raise DataError(f"{path} line 1: no 'filename' column (header: "
                                f"{','.join(header) or 'empty'}); {self._layout()}")
            reader.fieldnames = header
            for row in reader:
                clip, found, kept = self._clip(row, path, reader.line_num, label, index)
                if clip is None:
                    continue
                if clip.clip_id in seen:
                    raise DataError(f"{path} line {reader.line_num}: filename "
                                    f"{row['filename']!r} is already listed (line "
                                    f"{seen[clip.clip_id]})")
                seen[clip.clip_id] = reader.line_num
                filtered += not kept
                if kept:
                    listed.append((clip, found))
        return self._present(path, label, listed, filtered)

    def _present(self, path: Path, label: int, listed: list[tuple[Clip, bool]],
                 filtered: int) -> list[Clip]:
        """The listed songs found on disk; lines for the filtered and the missing ones."""
        if filtered:
            log.info("sonics: %d song(s) of %s left out by the official filters (duration >= "
                     "%s s, no_vocal == False; data.source.min_duration, drop_no_vocal)",
                     filtered, path.name, self.cfg.min_duration)
        if not listed:
            raise DataError(f"{path} lists no songs (after the official filters: "
                            f"{filtered} left out); {self._layout()}")
        clips = [clip for clip, found in listed if found]
        missing = len(listed) - len(clips)
        if label == 1 and not clips:
            raise DataError(f"none of the {len(listed)} songs listed in {path} was found "
                            f"below {', '.join(str(d) for d in self._dirs())}"
                            f"{self._unzip_hint()}; {self._layout()}")
        if label == 0 and not clips:
            log.warning("sonics: none of the %d real songs of %s is on disk (SONICS "
                        "distributes the fakes only: download them by youtube_id into "
                        "%s/real_songs/, each named after its filename): listing the "
                        "AI-generated songs only", len(listed), path.name, self.root)
        elif missing:
            why = (self._unzip_hint() if label == 1 else
                   " (real songs are downloaded by youtube_id, named after filename; many "
                   "ids are no longer available)")
            log.warning("sonics: %d of %d song(s) listed in %s are not on disk and are left "
                        "out%s", missing, len(listed), path.name, why)
        return clips

    def _dirs(self) -> list[Path]:
        return [self.root / d for d in self.cfg.audio_dirs]

    def _unzip_hint(self) -> str:
        """The exact command that unpacks zip parts found in the root or the audio
        folders (their entries' own folder decides where to run it); '' when none."""
        folders = {self.root, *(d for d in self._dirs() if d.is_dir())}
        zips = sorted({z for f in folders for z in f.glob("*.zip")})
        if not zips:
            return ""
        where = zips[0].parent
        try:
            with zipfile.ZipFile(zips[0]) as archive:
                first = next((n for n in archive.namelist() if not n.startswith("__MACOSX")),
                             "")
        except (OSError, zipfile.BadZipFile):
            first = ""
        inner = first.split("/", 1)[0] if "/" in first else ""
        if inner and inner == where.name:
            where = where.parent  # entries carry their folder: unpack one level up
        names = " ".join(os.path.relpath(z, where) for z in zips)
        return (f"; {len(zips)} zip part(s) are not unpacked yet: run "
                f"`cd {where} && for z in {names}; do unzip -n -q \"$z\"; done`")

    def _clip(self, row: dict[str, Any], path: Path, line: int, label: int,
              index: AudioIndex) -> tuple[Clip | None, bool, bool]:
        def cell(key: str) -> str:
            value = row.get(key)
            return value.strip() if isinstance(value, str) else ""

        filename = cell("filename")
        if not filename:
            if not any(cell(k) for k in row if isinstance(k, str)):
                return None, False, False  # blank line
            raise DataError(f"{path} line {line}: empty filename")
        _check_label(cell, path, line, label)
        split = parse_split(cell("split"))
        if split is False:
            raise DataError(f"{path} line {line}: split {cell('split')!r} is not one of "
                            "train, val, valid, validation, test (or empty)")
        audio_path = index.find(filename)
        song_id = cell("id") or Path(filename).stem
        group = cell("group") or cell("song") or f"{path.stem}/{song_id}"
        generator = HUMAN if label == 0 else (cell("algorithm") or UNKNOWN_GENERATOR)
        clip = Clip(clip_id=f"{path.stem}/{filename}", label=label, group=group,
                    generator=generator, path=str(audio_path or self.root / filename),
                    split=split or None,
                    recipe={"link": cell(self.cfg.link_column)} if self.cfg.link_column
                    else {})
        return clip, audio_path is not None, self._kept(cell, path, line)

    def _kept(self, cell: Any, path: Path, line: int) -> bool:
        """Whether a row passes the official filters."""
        if self.cfg.min_duration is not None and cell("duration"):
            try:
                if float(cell("duration")) < self.cfg.min_duration:
                    return False
            except ValueError:
                raise DataError(f"{path} line {line}: duration {cell('duration')!r} is not "
                                "a number of seconds") from None
        return not (self.cfg.drop_no_vocal and cell("no_vocal").lower() in TRUE_WORDS)

    def _linked(self, fake: list[Clip], real: list[Clip]) -> list[Clip]:
        """Fakes whose ``link_column`` names a real song's id join that song's group."""
        stem = Path(self.cfg.real_csv or "").stem
        groups = {c.group.split("/", 1)[-1]: c.group for c in real
                  if c.group.startswith(f"{stem}/")}
        out = [replace(c, group=groups.get(c.recipe.get("link", ""), c.group), recipe={})
               for c in fake]
        log.info("sonics: %d of %d fake song(s) linked to a real song's group by %s",
                 sum(a.group != b.group for a, b in zip(out, fake, strict=True)), len(fake),
                 self.cfg.link_column)
        return out


def _check_label(cell: Any, path: Path, line: int, label: int) -> None:
    for column in ("target", "label"):
        stated = parse_label(cell(column)) if cell(column) else None
        if column == "label" and stated is None and "fake" in cell(column).lower():
            stated = 1  # SONICS fake types: "full fake", "half fake", "mostly fake"
        if stated is not None and stated != label:
            raise DataError(f"{path} line {line}: {column} {cell(column)!r} says label "
                            f"{stated}, but rows of {path.name} are label {label}")


def split_straddling(clips: list[Clip]) -> list[Clip]:
    """Groups that the dataset's own split puts in two splits, split by split name (the
    dataset's split is its protocol), with a line saying how many."""
    splits: dict[str, set[str | None]] = defaultdict(set)
    for clip in clips:
        splits[clip.group].add(clip.split)
    straddling = {g for g, names in splits.items() if len(names) > 1}
    if not straddling:
        return clips
    log.warning("sonics: %d group(s) span two of the dataset's splits (e.g. %r): kept as "
                "the dataset splits them, one group per split", len(straddling),
                sorted(straddling)[0])
    return [replace(c, group=f"{c.group}@{c.split or 'free'}") if c.group in straddling else c
            for c in clips]


def _say_undecodable(clips: list[Clip]) -> None:
    """One line when songs were found in formats this machine cannot decode."""
    if shutil.which("ffmpeg"):
        return
    kinds = defaultdict(int)
    for clip in clips:
        suffix = Path(clip.path or "").suffix.lower()
        if suffix in NEEDS_FFMPEG:
            kinds[suffix] += 1
    if kinds:
        found = ", ".join(f"{n} {ext}" for ext, n in sorted(kinds.items()))
        log.warning("sonics: %s file(s) need ffmpeg to decode (not found on this machine): "
                    "they will be skipped as unreadable; install ffmpeg (apt-get install "
                    "ffmpeg) or convert them (ffmpeg -i song.m4a song.flac)", found)
