"""Which part of a long file becomes a clip: the ``data.source.windows`` node.

``mode: center`` (one window in the middle of each file), ``offset`` (one window starting at
``offset_s``) or ``multi`` (windows every ``hop_s`` seconds from ``offset_s``, at most
``max_per_file`` of them; each becomes its own clip ``<file id>#w<k>`` in the file's group).
The window length is the source's ``duration``. Planning ``multi`` windows reads only file
headers (``soundfile.info``); decoding happens later, one segment at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from deepfake_detect.config import one_of, require
from deepfake_detect.data import audio
from deepfake_detect.data.clips import Clip

MODES = ("center", "offset", "multi")


@dataclass(frozen=True)
class WindowConfig:
    """The ``data.source.windows`` node."""

    mode: str = "center"
    offset_s: float = 0.0
    hop_s: float | None = None  # multi: seconds between window starts (None: the duration)
    max_per_file: int | None = None  # multi: at most this many windows per file (None: all)
    short: str = "pad"  # files shorter than a window: pad (zeros) or drop (skipped clip)

    def __post_init__(self) -> None:
        one_of(self.mode, MODES, "mode")
        require(isinstance(self.offset_s, int | float) and self.offset_s >= 0, "offset_s",
                f"must be a number of seconds >= 0, got {self.offset_s!r}")
        require(self.hop_s is None or (isinstance(self.hop_s, int | float) and self.hop_s > 0),
                "hop_s", f"must be a positive number of seconds or null, got {self.hop_s!r}")
        require(self.max_per_file is None
                or (isinstance(self.max_per_file, int) and self.max_per_file >= 1),
                "max_per_file", f"must be an integer >= 1 or null, got {self.max_per_file!r}")
        one_of(self.short, audio.SHORT_POLICIES, "short")


def offsets(file_duration: float, duration: float, cfg: WindowConfig) -> list[float]:
    """Start times (s) of the ``multi`` windows in a file of ``file_duration`` seconds.

    Windows start at ``offset_s + k * hop_s`` and must fit in the file; a file too short for
    one window from ``offset_s`` gets a single window, moved back to fit (or at 0 when the file
    is shorter than a window: the ``short`` policy applies when it is decoded).
    """
    hop = cfg.hop_s or duration
    last_start = file_duration - duration
    if last_start < cfg.offset_s - 1e-9:
        return [round(max(0.0, last_start), 6)]
    count = int(math.floor((last_start - cfg.offset_s) / hop + 1e-9)) + 1
    if cfg.max_per_file is not None:
        count = min(count, cfg.max_per_file)
    return [round(cfg.offset_s + k * hop, 6) for k in range(count)]


def expand(clip: Clip, duration: float, cfg: WindowConfig) -> list[Clip]:
    """The clips one file gives under ``cfg`` (``clip`` describes the whole file).

    The window's start goes into ``recipe["offset_s"]`` (None: centred at decode time).
    ``multi`` reads the file header; if that fails the file still gives one clip, so that
    decoding reports the problem as a skipped clip.
    """
    if cfg.mode == "center":
        return [replace(clip, recipe={**clip.recipe, "offset_s": None})]
    if cfg.mode == "offset":
        return [replace(clip, recipe={**clip.recipe, "offset_s": float(cfg.offset_s)})]
    assert clip.path is not None
    try:
        starts = offsets(audio.info(clip.path).duration, duration, cfg)
    except audio.AudioError:
        starts = [float(cfg.offset_s)]
    return [replace(clip, clip_id=f"{clip.clip_id}#w{k}",
                    recipe={**clip.recipe, "offset_s": start, "window": k})
            for k, start in enumerate(starts)]
