"""The clip: the unit every stage of the data flow talks about."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Clip:
    """One labelled piece of audio.

    ``label``: 0 = human, 1 = AI-generated. ``group`` is what must never straddle splits
    (a composition, a song, a MusicCaps ytid). ``path`` points at an audio file; sources that
    render audio themselves (the synthetic benchmark) leave it ``None`` and describe the clip
    in ``recipe``.
    """

    clip_id: str
    label: int
    group: str
    generator: str
    path: str | None = None
    split: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
