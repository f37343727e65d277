"""Decode once, distort many times: a cache entry of a split's clean waveforms (as the source
decodes them, at the features' rate), and a source that reads them back.

A robustness curve builds one test set per strength; each would decode every clip again.
Instead the clean waveforms are stored once (:func:`decode_request`, keyed by each clip's
audio), and each point's :class:`~deepfake_detect.data.sets.FeatureWork` reads them through
:class:`DecodedSource`, which has the wrapped source's name and signature: a point's rows
have the keys, and the values, that the same test set built straight from the source has. A clip
whose decoded length differs from the clip length (so that the stored, fitted row is not what
the source gives) is decoded again instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from deepfake_detect.data.cache import CacheEntry, Request
from deepfake_detect.data.clips import Clip
from deepfake_detect.data.features import fit_length
from deepfake_detect.data.keys import audio_identity
from deepfake_detect.data.sources import Source


@dataclass
class DecodeWork:
    """One clip's waveform as the source decodes it at ``sample_rate``, fitted to
    ``n_samples``; its decoded length is kept as the row's ``samples`` parameter."""

    source: Source
    sample_rate: int
    n_samples: int

    @property
    def warm_key(self) -> tuple[str, str]:
        return ("decode", type(self.source).__name__)

    def __call__(self, clip: Clip) -> tuple[np.ndarray, dict[str, Any]]:
        wave = np.asarray(self.source.load(clip, self.sample_rate), dtype=np.float32)
        return fit_length(wave, self.n_samples), {"samples": float(len(wave))}


def decode_request(source: Source, clips: list[Clip], split: str, sample_rate: int,
                   n_samples: int) -> Request:
    """The store request for ``clips``' clean waveforms (keyed by each clip's audio)."""
    parts = {"kind": "decoded", "sample_rate": sample_rate, "n_samples": n_samples}
    return Request(parts, clips, DecodeWork(source, sample_rate, n_samples), (n_samples,),
                   f"{split}/decoded", [{"audio": audio_identity(source, c)} for c in clips])


class DecodedSource:
    """``source`` whose clips are read from a decoded entry where it holds them whole."""

    def __init__(self, source: Source, entry: CacheEntry, sample_rate: int):
        self.source = source
        self.name = source.name
        self.sample_rate = sample_rate
        self.n_samples = int(entry.features.shape[1]) if entry.features.ndim == 2 else 0
        self.index = {row["clip_id"]: i for i, row in enumerate(entry.rows)
                      if int(row["params"].get("samples", -1)) == self.n_samples}
        self.waves = entry.features  # pickled for build workers as shard paths, not rows

    def clips(self) -> list[Clip]:
        return self.source.clips()

    def signature(self) -> dict[str, Any]:
        return self.source.signature()

    def audio_identity(self, clip: Clip) -> dict[str, Any]:
        return audio_identity(self.source, clip)

    def load(self, clip: Clip, sample_rate: int) -> np.ndarray:
        row = self.index.get(clip.clip_id)
        if row is None or sample_rate != self.sample_rate:
            return self.source.load(clip, sample_rate)
        return np.array(self.waves[row], dtype=np.float32)
