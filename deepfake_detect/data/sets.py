"""A study's sets: the split computed once, and each set's rows read from the feature store.

:class:`StudySets` holds what a study's rows come from (source, split config, feature config,
seed, store) and answers every question about them: the splits (computed once), the sets a
training run needs (:meth:`StudySets.entries`), one split under other distortions decoded
once (:meth:`StudySets.split_entries`, robustness curves, explain) and other per-clip
computations over the same sets (:meth:`StudySets.side_entries`, the fakeprint baseline).
The DataModule only loads what :meth:`StudySets.entries` gives it.

Store keys are what a row depends on, never the split (:mod:`deepfake_detect.data.keys`),
so a fold, a seed or a held-out generator computes only rows it has not seen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from deepfake_detect.config import build
from deepfake_detect.data import distortions as dist
from deepfake_detect.data import frontends
from deepfake_detect.data.cache import BuildStats, CacheConfig, CacheEntry, FeatureCache, Request
from deepfake_detect.data.clips import Clip
from deepfake_detect.data.decoded import DecodedSource, decode_request
from deepfake_detect.data.features import FeatureConfig, fit_length, log_mel
from deepfake_detect.data.keys import feature_parts, row_parts
from deepfake_detect.data.sources import Source, build_source
from deepfake_detect.data.splits import (
    SplitConfig,
    check_folds,
    check_not_empty,
    held_out_name,
    split_clips,
)

log = logging.getLogger(__name__)

SetPlan = list[tuple[str, str, dist.Distortion]]  # (set name, split, distortion)
Wanted = tuple[list[Clip], dist.Distortion, str]  # clips, distortion, description


@dataclass
class FeatureWork:
    """Computes one clip's features under one distortion (picklable for worker processes)."""

    source: Source
    distortion: dist.Distortion
    features: FeatureConfig
    seed: int
    waveform: bool = False  # keep the distorted clip-length waveform instead of its log-mel

    @property
    def warm_key(self) -> tuple[str, bool, tuple[str, ...]]:
        """The code paths a clip takes (for the pool's once-per-process warm-up): the
        source's decoding, log-mel or not, the kinds of effect (pitch shift, time stretch,
        codec ...)."""
        return (type(self.source).__name__, self.waveform, tuple(sorted(self.distortion.kinds)))

    def distorted(self, clip: Clip) -> tuple[np.ndarray, dict[str, Any]]:
        """The clip decoded at the feature rate under the distortion, and its drawn params."""
        wave = self.source.load(clip, self.features.sample_rate)
        params = dist.draw_params(self.distortion, self.seed, clip.clip_id)
        return dist.apply(self.distortion, wave, self.features.sample_rate, params), params

    def log_mel_row(self, clip: Clip) -> tuple[np.ndarray, dict[str, Any]]:
        wave, params = self.distorted(clip)
        if self.waveform:
            return fit_length(np.asarray(wave, dtype=np.float32), self.features.n_samples), params
        return log_mel(wave, self.features), params

    def __call__(self, clip: Clip) -> tuple[np.ndarray, dict[str, Any]]:
        if self.features.kind != "logmel" and not self.waveform:  # the other front ends
            return frontends.clip_features(self, clip)
        return self.log_mel_row(clip)


class StudySets:
    """The splits of a source (computed once) and their sets' rows from the store."""

    def __init__(self, source: Source, split_cfg: SplitConfig, cache: FeatureCache,
                 features: FeatureConfig, seed: int, store: str = "features"):
        self.source, self.split_cfg, self.cache = source, split_cfg, cache
        self.features, self.seed, self.store = features, seed, store
        self.stats = BuildStats()

    @classmethod
    def from_config(cls, data_cfg: dict[str, Any], features: FeatureConfig,
                    seed: int) -> StudySets:
        """From the ``data`` config node (``source``, ``split``, ``cache``)."""
        cache_cfg = build(CacheConfig, data_cfg.get("cache"), "data.cache")
        return cls(build_source(data_cfg.get("source") or {}),
                   build(SplitConfig, data_cfg.get("split"), "data.split"),
                   FeatureCache(cache_cfg.dir, workers=cache_cfg.workers), features, seed,
                   cache_cfg.store)

    @cached_property
    def splits(self) -> dict[str, list[Clip]]:
        """train / val / test, checked to hold both classes (the one split computation)."""
        splits = split_clips(self.source.clips(), self.split_cfg)
        check_not_empty(splits, minimum=self.split_cfg.min_per_class)
        self.features = frontends.resolve_band(self.features, self.source.clips())  # fmax auto
        log.debug("clips: %s", {name: len(clips) for name, clips in splits.items()})
        return splits

    @cached_property
    def split_info(self) -> dict[str, Any]:
        """How the test set was chosen when it is not a random share: the fold of a
        cross-validation (every fold checked to hold both classes in each split: the planner
        asks, so a sweep refuses before any fold trains), or the held-out generator (by
        name)."""
        cfg = self.split_cfg
        if cfg.folds:
            check_folds(self.source.clips(), cfg)
            return {"folds": cfg.folds, "fold": cfg.fold}
        if cfg.holdout_generator is not None:
            return {"holdout_generator": held_out_name(self.source.clips(),
                                                       cfg.holdout_generator)}
        return {}

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.features.n_samples,) if self.store == "waveform" else self.features.shape

    def request(self, clips: list[Clip], distortion: dist.Distortion, desc: str,
                source: Source | None = None) -> Request:
        """The store request for ``clips``' rows under ``distortion`` (``source``: where the
        work reads the audio, e.g. a :class:`DecodedSource`; keys stay the source's)."""
        work = FeatureWork(source or self.source, distortion, self.features, self.seed,
                           self.store == "waveform")
        return Request(feature_parts(self.features, self.store), clips, work, self.shape,
                       desc, [row_parts(self.source, c, distortion, self.seed) for c in clips])

    def _get(self, requests: list[Request], count: bool = True) -> list[CacheEntry]:
        """The requests' entries; their build figures go to :attr:`stats` (``count``)."""
        built = self.cache.get_or_build_many(requests)
        for _, stats in built:
            if count:
                self.stats.add(stats)
        return [entry for entry, _ in built]

    def entries(self, plan: SetPlan) -> dict[str, CacheEntry]:
        """Each planned set's entry, by set name; missing rows computed in one pool."""
        requests = [self.request(self.splits[split], d, f"{split}/{d.name}")
                    for _, split, d in plan]
        return {name: entry for (name, _, _), entry in
                zip(plan, self._get(requests), strict=True)}

    def split_entry(self, split: str, distortion: dist.Distortion) -> CacheEntry:
        """One split under one distortion, without the other sets."""
        return self.entries([(split, split, distortion)])[split]

    def split_entries(self, split: str, distortions: list[dist.Distortion],
                      labels: list[str] | None = None) -> list[CacheEntry]:
        """``split`` under each of ``distortions`` (one pool for all), each clip decoded once
        for all of them: rows still missing read the clips' clean waveforms from the store
        (:mod:`deepfake_detect.data.decoded`)."""
        clips = self.splits[split]
        descs = [f"{split}/{label}" for label in labels or [d.name for d in distortions]]
        requests = [self.request(clips, d, desc)
                    for d, desc in zip(distortions, descs, strict=True)]
        short = sorted({j for r in requests for j in self.cache.absent(r)})
        if short:
            rate, n = self.features.sample_rate, self.features.n_samples
            wanted = [clips[j] for j in short]
            clean, = self._get([decode_request(self.source, wanted, split, rate, n)])
            source = DecodedSource(self.source, clean, rate)
            requests = [self.request(clips, d, desc, source)
                        for d, desc in zip(distortions, descs, strict=True)]
        return self._get(requests)

    def side_entries(self, kind: str, work: Any, shape: tuple[int, ...], version: str,
                     plan: SetPlan) -> dict[str, CacheEntry]:
        """Rows of another per-clip computation (``work(distortion)(clip)`` -> (array,
        params)) over the planned sets (same clips, distortions and seed), stored and built
        like the features (one pool); by set name."""
        parts = {"kind": kind, "version": version, "sample_rate": self.features.sample_rate}
        requests = [Request(parts, self.splits[split], work(d), shape, f"{kind} {name}",
                            [row_parts(self.source, c, d, self.seed)
                             for c in self.splits[split]])
                    for name, split, d in plan]
        return {name: entry for (name, _, _), entry in  # the features' figures only, as before
                zip(plan, self._get(requests, count=False), strict=True)}

    def every_clip(self, distortions: list[dist.Distortion]) -> list[Wanted]:
        """Every clip of the source under each distortion: what any fold, split seed or
        held-out generator of this source can ask for."""
        clips = self.source.clips()
        # the band of ``fmax: auto`` resolved as a split does: the rows training will read
        self.features = frontends.resolve_band(self.features, clips)
        return [(clips, d, f"all/{d.name}") for d in dict.fromkeys(distortions)]

    def planned(self, plan: SetPlan) -> list[Wanted]:
        """The planned sets (of this split only)."""
        return [(self.splits[split], d, name) for name, split, d in plan]

    def build(self, wanted: list[Wanted], shard: tuple[int, int] = (0, 1)) -> BuildStats:
        """Compute the missing rows of ``wanted``, shard ``i`` of ``n`` of them (the rows
        whose key's first byte is ``i`` mod ``n``: shards' rows, and their locks, are
        disjoint), ahead of training; the build's figures."""
        index, count = shard
        requests = []
        for clips, d, desc in wanted:
            full = self.request(clips, d, desc)
            mine = [j for j, key in enumerate(full.row_keys) if int(key[:2], 16) % count == index]
            parts = full.row_parts or []  # each clip's key parts, computed once
            requests.append(Request(full.parts, [clips[j] for j in mine], full.work,
                                    full.shape, desc, [parts[j] for j in mine]))
        done = BuildStats()
        for _, stats in self.cache.get_or_build_many(requests):
            done.add(stats)
        self.stats.add(done)
        return done
