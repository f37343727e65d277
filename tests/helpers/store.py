"""Reading what a finished run left in the feature store: its sets through the store's own
API (a datamodule planned from the same config reads them back, computing nothing), and the
shard files of the feature rows (for tests that damage them)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from deepfake_detect.data.cache import CacheEntry


def stored_set(cfg: DictConfig, name: str) -> CacheEntry:
    """The set ``name`` (``train``, ``val``, ``test/<d>``) of ``cfg``'s run, read back."""
    from deepfake_detect.training.plan import datamodule_of, plan

    dm = datamodule_of(plan(cfg))
    dm.build()
    assert dm.stats.clips_computed == 0, "the run's rows should all be in the store"
    return dm.entries[name]


def feature_shards(cache: Path) -> list[Path]:
    """Every shard of the store's log-mel rows (``rows.npy``), oldest first."""
    return sorted(Path(cache).glob("features-*/shards/*/rows.npy"),
                  key=lambda p: p.parent.name)
