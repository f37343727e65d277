"""The LightningDataModule: clips -> splits -> cached log-mels -> batches.

Reads the ``data`` config group (``source``, ``split``, ``loader``, ``cache``) and gets the
feature config, the training distortion and the test distortions from the caller.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from deepfake_detect.config import build, require
from deepfake_detect.data import distortions as dist
from deepfake_detect.data.cache import BuildStats, CacheEntry, FeatureCache
from deepfake_detect.data.clips import Clip
from deepfake_detect.data.features import FeatureConfig, log_mel
from deepfake_detect.data.sources import Source, build_source
from deepfake_detect.data.splits import SplitConfig, check_not_empty, split_clips

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoaderConfig:
    """The ``data.loader`` node."""

    batch_size: int = 32
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False

    def __post_init__(self) -> None:
        require(isinstance(self.batch_size, int) and self.batch_size > 0, "batch_size",
                f"must be a positive integer, got {self.batch_size!r}")
        require(isinstance(self.num_workers, int) and self.num_workers >= 0, "num_workers",
                f"must be an integer >= 0, got {self.num_workers!r}")


@dataclass(frozen=True)
class CacheConfig:
    """The ``data.cache`` node."""

    dir: str = "outputs/cache"
    workers: int = 1

    def __post_init__(self) -> None:
        require(isinstance(self.workers, int) and self.workers >= 1, "workers",
                f"must be an integer >= 1, got {self.workers!r}")


@dataclass
class FeatureWork:
    """Computes one clip's features under one distortion (picklable for worker processes)."""

    source: Source
    distortion: dist.Distortion
    features: FeatureConfig
    seed: int

    def __call__(self, clip: Clip) -> tuple[np.ndarray, dict[str, Any]]:
        wave = self.source.load(clip, self.features.sample_rate)
        params = dist.draw_params(self.distortion, self.seed, clip.clip_id)
        wave = dist.apply(self.distortion, wave, self.features.sample_rate, params)
        return log_mel(wave, self.features), params


class FeatureDataset(Dataset):
    """(1, n_mels, frames) float tensors, labels and row indices from a cache entry."""

    def __init__(self, entry: CacheEntry):
        self.features = entry.features
        self.labels = entry.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        x = torch.from_numpy(np.array(self.features[index], dtype=np.float32))
        return x.unsqueeze(0), int(self.labels[index]), index


class EpochShuffle(Sampler[int]):
    """A permutation that depends only on (seed, epoch), so a resumed run sees the same order.

    Lightning calls ``set_epoch`` at the start of every epoch.
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())


class AudioDataModule(pl.LightningDataModule):
    """Train/val under the training distortion; one test set per test distortion."""

    def __init__(self, data_cfg: dict[str, Any], features: FeatureConfig,
                 train_distortion: dist.Distortion, test_distortions: list[dist.Distortion],
                 seed: int):
        super().__init__()
        self.source = build_source(data_cfg.get("source") or {})
        self.split_cfg = build(SplitConfig, data_cfg.get("split"), "data.split")
        self.loader = build(LoaderConfig, data_cfg.get("loader"), "data.loader")
        cache_cfg = build(CacheConfig, data_cfg.get("cache"), "data.cache")
        self.cache = FeatureCache(cache_cfg.dir, workers=cache_cfg.workers)
        self.features = features
        self.train_distortion = train_distortion
        self.test_distortions = test_distortions
        self.seed = seed
        self.entries: dict[str, CacheEntry] = {}
        self.stats = BuildStats()
        self.feature_mean = 0.0
        self.feature_std = 1.0
        self._prepared = False

    @property
    def test_names(self) -> list[str]:
        return [d.name for d in self.test_distortions]

    def prepare(self) -> None:
        """List, split and featurise everything (cached); idempotent."""
        if self._prepared:
            return
        splits = split_clips(self.source.clips(), self.split_cfg)
        check_not_empty(splits)
        log.info("clips: %s", {name: len(clips) for name, clips in splits.items()})
        plan = [("train", "train", self.train_distortion), ("val", "val", self.train_distortion)]
        plan += [(f"test/{d.name}", "test", d) for d in self.test_distortions]
        for name, split, distortion in plan:
            self.entries[name] = self._entry(splits[split], split, distortion)
        for name, entry in self.entries.items():
            if len(entry.rows) == 0:
                from deepfake_detect.errors import DataError

                raise DataError(f"no usable clips left in {name} "
                                f"({len(entry.skipped)} skipped; see {entry.path}/clips.json)")
        self.feature_mean, self.feature_std = _moments(self.entries["train"].features)
        self._prepared = True

    def _entry(self, clips: list[Clip], split: str, distortion: dist.Distortion) -> CacheEntry:
        parts = {"source": self.source.signature(), "split": split,
                 "clips": [c.clip_id for c in clips], "distortion": distortion.as_dict(),
                 "distortion_seed": self.seed, "features": self.features.as_dict()}
        work = FeatureWork(self.source, distortion, self.features, self.seed)
        entry, stats = self.cache.get_or_build(parts, clips, work, self.features.shape,
                                               desc=f"{split}/{distortion.name}")
        self.stats.add(stats)
        return entry

    @property
    def skipped(self) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for entry in self.entries.values():
            for row in entry.skipped:
                seen.setdefault(row["clip_id"], row)
        return list(seen.values())

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def _loader(self, entry: CacheEntry, shuffle: bool) -> DataLoader:
        cfg = self.loader
        dataset = FeatureDataset(entry)
        sampler = EpochShuffle(len(dataset), self.seed) if shuffle else None
        return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler,
                          num_workers=cfg.num_workers, pin_memory=cfg.pin_memory,
                          persistent_workers=cfg.persistent_workers and cfg.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.entries["train"], shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.entries["val"], shuffle=False)

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(self.entries[f"test/{name}"], shuffle=False)
                for name in self.test_names]

    def test_rows(self, name: str) -> list[dict[str, Any]]:
        return self.entries[f"test/{name}"].rows

    def describe(self) -> dict[str, Any]:
        return {"clips": {name: len(e.rows) for name, e in self.entries.items()},
                "skipped": len(self.skipped), "cache": asdict(self.stats)}


def _moments(features: np.ndarray) -> tuple[float, float]:
    """Mean and std over a (possibly memory-mapped) feature array, in chunks."""
    total, total_sq, count = 0.0, 0.0, 0
    for start in range(0, len(features), 256):
        chunk = np.asarray(features[start:start + 256], dtype=np.float64)
        total += chunk.sum()
        total_sq += np.square(chunk).sum()
        count += chunk.size
    mean = total / max(count, 1)
    std = float(np.sqrt(max(total_sq / max(count, 1) - mean * mean, 1e-12)))
    return float(mean), std
