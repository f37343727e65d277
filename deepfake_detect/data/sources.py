"""Sources list clips (id, label, group, generator); they never compute features.

Each source is a small picklable object with ``clips()``, ``load(clip, sample_rate)`` and
``signature()`` (what the cache key needs to know about it). ``build_source`` picks one by the
``data.source.name`` config key; the other keys of ``data.source`` are its options.

File sources (``folder``, ``manifest``, ``fakemusiccaps``, ``sonics``) live in modules named
after them and share :class:`deepfake_detect.data.files.FileSource` (windows, decoding).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Protocol

import librosa
import numpy as np

from deepfake_detect.config import build
from deepfake_detect.data import synthetic
from deepfake_detect.data.clips import Clip
from deepfake_detect.data.fakemusiccaps import FakeMusicCapsSource
from deepfake_detect.data.files import FileSource
from deepfake_detect.data.folder import FolderSource
from deepfake_detect.data.manifest import ManifestSource
from deepfake_detect.data.sonics import SonicsSource
from deepfake_detect.errors import ConfigError

__all__ = ["SOURCES", "FileSource", "Source", "SyntheticSource", "build_source", "register"]


class Source(Protocol):
    name: str

    def clips(self) -> list[Clip]: ...

    def load(self, clip: Clip, sample_rate: int) -> np.ndarray: ...

    def signature(self) -> dict[str, Any]: ...


class SyntheticSource:
    """The embedded benchmark: procedural music, half of it through simulated decoders."""

    name = "synthetic"

    def __init__(self, **params: Any):
        if "generators" in params and params["generators"] is not None:
            params["generators"] = tuple(params["generators"])
        self.cfg = build(synthetic.SyntheticConfig, params, "data.source")

    def clips(self) -> list[Clip]:
        return synthetic.list_clips(self.cfg)

    def load(self, clip: Clip, sample_rate: int) -> np.ndarray:
        wave = synthetic.render(clip, self.cfg)
        if self.cfg.sample_rate != sample_rate:
            wave = librosa.resample(wave, orig_sr=self.cfg.sample_rate, target_sr=sample_rate,
                                    res_type="soxr_hq")
        return wave

    def signature(self) -> dict[str, Any]:
        return {"source": self.name, "synthesis_version": synthetic.SYNTHESIS_VERSION,
                **asdict(self.cfg)}


SOURCES: dict[str, Callable[..., Source]] = {
    "synthetic": SyntheticSource,
    "folder": FolderSource,  # root/<class dir>/**/*.{wav,flac,ogg,mp3}
    "manifest": ManifestSource,  # a CSV: path,label[,group,generator,split]
    "fakemusiccaps": FakeMusicCapsSource,  # MusicCaps/ + one folder per generator
    "sonics": SonicsSource,  # real_songs.csv / fake_songs.csv + audio folders
}


def register(name: str, factory: Callable[..., Source]) -> None:
    """Make a source available as ``data.source.name=<name>``."""
    SOURCES[name] = factory


def build_source(node: dict[str, Any]) -> Source:
    """The source described by the ``data.source`` config node."""
    params = dict(node)
    name = params.pop("name", None)
    if name not in SOURCES:
        raise ConfigError("data.source.name",
                          f"unknown source {name!r}; allowed: {', '.join(sorted(SOURCES))}")
    return SOURCES[name](**params)
