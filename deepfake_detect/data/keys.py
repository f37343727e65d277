"""What a stored row depends on: the keys of the feature store, never the split.

A row's key is a hash of two dicts (:mod:`deepfake_detect.data.cache`): :func:`feature_parts`,
what every row of a set shares (the kind of rows and how they are computed: one store folder
each), and :func:`row_parts`, what one clip's row depends on beyond that: the clip's audio
identity and window, the distortion's definition and the parameters drawn for the clip. The
draw depends on (seed, clip id, distortion name), so a new seed recomputes only the rows whose
draws change: none under ``base``, which draws nothing.
"""

from __future__ import annotations

import os
from dataclasses import fields
from typing import Any

from deepfake_detect.data import distortions as dist
from deepfake_detect.data import frontends, synthetic
from deepfake_detect.data.clips import Clip
from deepfake_detect.data.features import FeatureConfig
from deepfake_detect.data.sources import SyntheticSource


def audio_identity(source: Any, clip: Clip) -> dict[str, Any]:
    """What a clip's decoded audio depends on: a source's own ``audio_identity(clip)`` where
    it has one; a file's path, size and modification time and the window read from it; a
    synthetic clip's recipe and the synthesis settings; else the source's signature and the
    clip id (rows then follow the listing, as a per-split cache did)."""
    own = getattr(source, "audio_identity", None)
    if own is not None:
        return own(clip)
    if isinstance(source, SyntheticSource):
        cfg = source.cfg
        return {"synthetic": synthetic.SYNTHESIS_VERSION, "recipe": clip.recipe,
                "sample_rate": cfg.sample_rate, "duration": cfg.duration,
                "artifact_strength": cfg.artifact_strength,
                "speed_variation": cfg.speed_variation}
    if clip.path is not None and hasattr(source, "segment"):
        path = os.path.abspath(clip.path)
        try:
            stat = os.stat(path)
            found: dict[str, Any] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        except OSError as err:  # decoding will say why; a file that appears gets a new key
            found = {"missing": type(err).__name__}
        segment = source.segment(clip)  # a flat dataclass: its fields, as asdict gives them
        return {"file": path, **found,
                "segment": {f.name: getattr(segment, f.name) for f in fields(segment)}}
    return {"source": source.signature(), "clip_id": clip.clip_id}


_DISTORTION_PARTS: dict[int, tuple[dist.Distortion, dict[str, Any]]] = {}


def distortion_parts(d: dist.Distortion) -> dict[str, Any]:
    """What applying ``d`` computes besides a clip's draw: its definition without the name
    (the name only seeds the draws, which are keyed themselves). Computed once per
    distortion object and shared by every row's parts (read-only: never modify it); a
    dataset's keys otherwise spent half their time copying the same definition."""
    cached = _DISTORTION_PARTS.get(id(d))
    if cached is None or cached[0] is not d:  # the object is held, so its id is not reused
        if len(_DISTORTION_PARTS) >= 256:
            _DISTORTION_PARTS.clear()
        cached = _DISTORTION_PARTS[id(d)] = (d, {k: v for k, v in d.as_dict().items()
                                                  if k != "name"})
    return cached[1]


def feature_parts(features: FeatureConfig, store: str) -> dict[str, Any]:
    """What every row of a set shares: the kind of rows and how they are computed. Anything
    new the rows depend on (e.g. a front-end setting) is one more entry here."""
    if store == "waveform":  # one waveform row serves every log-mel setting
        return {"kind": "waveform", "sample_rate": features.sample_rate,
                "n_samples": features.n_samples}
    return {"kind": "features", "features": frontends.cache_key(features)}


def row_parts(source: Any, clip: Clip, d: dist.Distortion, seed: int) -> dict[str, Any]:
    """What one clip's row depends on beyond :func:`feature_parts`."""
    return {"audio": audio_identity(source, clip), "distortion": distortion_parts(d),
            "draw": dist.draw_params(d, seed, clip.clip_id)}
