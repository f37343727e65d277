"""The LightningDataModule: the sets' rows (from :mod:`deepfake_detect.data.sets`) -> batches.

Reads the ``data`` config group (``source``, ``split``, ``loader``, ``cache``) and gets the
feature config, the training distortion and the test distortions from the caller. It loads
train, val and one test set per test distortion from :class:`StudySets` (which splits once
and reads the feature store) and ships rows as the store holds them (log-mels, or waveforms
with ``data.cache.store: waveform``); the model's front end turns them into its input.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from deepfake_detect.config import build, require
from deepfake_detect.data import distortions as dist
from deepfake_detect.data.cache import BuildStats, CacheEntry, available_cores
from deepfake_detect.data.device_rows import DEVICE_SHARE, DeviceRows, IndexDataset, fits
from deepfake_detect.data.features import FeatureConfig
from deepfake_detect.data.sets import SetPlan, StudySets
from deepfake_detect.data.splits import check_decoded
from deepfake_detect.task import UNKNOWN
from deepfake_detect.task import class_names as task_classes
from deepfake_detect.task import targets as task_targets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoaderConfig:
    """The ``data.loader`` node."""

    batch_size: int = 32
    num_workers: int | str = "auto"  # auto: see ``workers``
    pin_memory: bool | str = "auto"  # auto: pinned when CUDA is available
    persistent_workers: bool = True  # only with num_workers > 0
    on_device: bool | str = "auto"  # keep cached rows in the training device's memory
    balance: str = "none"  # sampler: each training epoch draws the classes equally often

    def __post_init__(self) -> None:
        require(self.balance in BALANCE, "balance",
                f"must be one of {', '.join(BALANCE)}, got {self.balance!r}")
        require(isinstance(self.batch_size, int) and self.batch_size > 0, "batch_size",
                f"must be a positive integer, got {self.batch_size!r}")
        require(self.num_workers == "auto"
                or (isinstance(self.num_workers, int) and self.num_workers >= 0),
                "num_workers", f"must be an integer >= 0 or auto, got {self.num_workers!r}")
        require(self.pin_memory in (True, False, "auto"), "pin_memory",
                f"must be true, false or auto, got {self.pin_memory!r}")
        require(self.on_device in (True, False, "auto"), "on_device",
                f"must be true, false or auto, got {self.on_device!r}")

    def workers_for(self, device: torch.device | None) -> int:
        """Loader processes for batches bound to ``device`` (None: not known, CUDA if any).
        ``auto``: none for a CPU (reading rows of a memory map costs far less than a CPU
        training step, and workers would take the model's cores); for a GPU up to 4 (half
        the cores), so that reading, collating and pinning a batch do not hold up the Python
        thread that launches the GPU's work."""
        if self.num_workers != "auto":
            return int(self.num_workers)
        return min(4, available_cores() // 2) if _is_cuda(device) else 0

    def pin_for(self, device: torch.device | None) -> bool:
        return _is_cuda(device) if self.pin_memory == "auto" else bool(self.pin_memory)


def _is_cuda(device: torch.device | None) -> bool:
    return device.type == "cuda" if device is not None else torch.cuda.is_available()


class FeatureDataset(Dataset):
    """(1, n_mels, frames) float tensors, class targets and row indices from a cache entry.

    ``targets`` defaults to the entry's binary labels (see :mod:`deepfake_detect.task`)."""

    def __init__(self, entry: CacheEntry, targets: np.ndarray | None = None):
        # Loader workers started by spawn or forkserver (not fork) get the rows' shard paths
        # and indices (:class:`~deepfake_detect.data.shards.Rows` pickles so), not the rows.
        self.features = entry.features
        self.labels = entry.labels if targets is None else targets

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        # A view of the (copy-on-write) memory map: collation makes the only copy.
        x = torch.from_numpy(self.features[index])
        return x.unsqueeze(0), int(self.labels[index]), index


BALANCE = ("none", "sampler")


class BalancedShuffle(Sampler[int]):
    """``data.loader.balance: sampler``: an epoch of ``len(targets)`` indices drawn with
    replacement, each class equally likely; like :class:`EpochShuffle`, the draw depends only
    on (seed, epoch), so a resumed run sees the same batches."""

    def __init__(self, targets: np.ndarray, seed: int):
        self.seed, self.epoch = seed, 0
        targets = np.asarray(targets)
        classes, counts = np.unique(targets, return_counts=True)
        share = dict(zip(classes.tolist(), (1.0 / (len(classes) * counts)).tolist(),
                         strict=True))
        self.weights = torch.tensor([share[t] for t in targets.tolist()], dtype=torch.double)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.weights)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.multinomial(self.weights, len(self.weights), replacement=True,
                                      generator=generator).tolist())


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
                 seed: int, task: str = "binary"):
        super().__init__()
        self.task = task
        self.classes: tuple[str, ...] = ()
        self.targets: dict[str, np.ndarray] = {}
        self.sets = StudySets.from_config(data_cfg, features, seed)
        self.source, self.split_cfg, self.store = (self.sets.source, self.sets.split_cfg,
                                                   self.sets.store)
        self.loader = build(LoaderConfig, data_cfg.get("loader"), "data.loader")
        self.device: torch.device | None = None  # batches' device; else the Trainer's
        self._device_rows: DeviceRows | None = None
        self._said_host = False
        self.train_distortion = train_distortion
        self.test_distortions = test_distortions
        self.seed = seed
        self.entries: dict[str, CacheEntry] = {}
        self._prepared = False

    @property
    def features(self) -> FeatureConfig:
        """The feature config; its band resolved once the source is split (``fmax: auto``)."""
        return self.sets.features

    @property
    def test_names(self) -> list[str]:
        return [d.name for d in self.test_distortions]

    @property
    def stats(self) -> BuildStats:
        """Sets built or reused and rows computed, by this module's sets (side ones too)."""
        return self.sets.stats

    @property
    def split_info(self) -> dict[str, Any]:
        return self.sets.split_info

    def plan(self, train: bool = True) -> SetPlan:
        """The sets: (name, split, distortion) of train and val (``train``), each test set."""
        sets = [("train", "train", self.train_distortion)]
        sets += [("val", "val", self.train_distortion)] if train else []
        return sets + [(f"test/{d.name}", "test", d) for d in self.test_distortions]

    def prepare(self) -> None:
        """List, split and featurise everything (cached), then check what is usable;
        idempotent."""
        if self._prepared:
            return
        self.build()
        self.check()

    def build(self) -> None:
        """Split the clips and read every set's rows from the store, computing the missing
        ones (unusable clips are skipped, see :attr:`skipped`)."""
        if not self.entries:
            self.entries = self.sets.entries(self.plan())

    def check(self, listing: str | None = None) -> None:
        """Stop (DataError) when a set lost a class, or fell below ``data.split.min_per_class``
        clips of one, to unusable audio; ``listing`` names where the skipped clips are listed
        (default: the store's shard indexes). Then the classes and targets of the task."""
        for name, entry in self.entries.items():
            check_decoded(name, Counter(row["label"] for row in entry.rows),
                          Counter(row["label"] for row in entry.skipped),
                          self.split_cfg.min_per_class,
                          listing or str(entry.path / "shards" / "*" / "index.json"))
        self.classes = task_classes(self.task, self.entries["train"].rows)
        self.targets = {name: task_targets(self.task, entry.rows, self.classes)
                        for name, entry in self.entries.items()}
        if self.task == "attribution":
            _report_open_set(self.targets, self.entries)
        self._prepared = True

    @property
    def skipped(self) -> list[dict[str, Any]]:
        """Every unusable clip once, then every folder that could not be listed."""
        seen: dict[str, dict[str, Any]] = {}
        for entry in self.entries.values():
            for row in entry.skipped:
                seen.setdefault(row["clip_id"], row)
        folders = [{"clip_id": "", "path": row["path"], "label": row.get("label", ""),
                    "reason": row["reason"]} for row in getattr(self.source, "unlisted", [])]
        return [*seen.values(), *folders]

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def _batch_device(self) -> torch.device | None:
        if self.device is not None:
            return torch.device(self.device)
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else None

    @property
    def rows_on_device(self) -> bool:
        """Whether the loaders ship row indices for :meth:`model_input` to gather on the
        batches' device (``data.loader.on_device``; auto: a CUDA device with room)."""
        if self._device_rows is None:
            setting = self.loader.on_device
            if setting is False or not self.entries:
                return False
            rows, device = DeviceRows(self.entries), self._batch_device()
            if setting == "auto" and not fits(rows.nbytes, device):
                if device is not None and device.type == "cuda" and not self._said_host:
                    self._said_host = True  # once, not for every loader
                    log.info("cached rows (%.2f GB) stay on the host: more than %d %% of "
                             "%s's memory or half of what is free", rows.nbytes / 1e9,
                             100 * DEVICE_SHARE, device)
                return False
            self._device_rows = rows
        return True

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        cfg = self.loader
        targets = self.targets.get(name)
        if self.rows_on_device:
            assert self._device_rows is not None and targets is not None
            dataset: Dataset = IndexDataset(self._device_rows.offsets[name], targets)
            workers, pin = 0, False  # a batch is a few hundred bytes of indices
        else:
            dataset = FeatureDataset(self.entries[name], targets)
            device = self._batch_device()
            workers, pin = cfg.workers_for(device), cfg.pin_for(device)
        sampler: Sampler[int] | None = None
        if shuffle and cfg.balance == "sampler" and targets is not None and len(targets):
            sampler = BalancedShuffle(targets, self.seed)
        elif shuffle:
            sampler = EpochShuffle(len(dataset), self.seed)
        # Linux: fork, as torch always did there; joblib's loky workers and Python >= 3.14
        # default to start methods that re-import everything in every loader worker (the
        # dataset itself pickles as its path, so those work too, only slower to start).
        context = "fork" if workers and sys.platform == "linux" else None
        return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler,
                          num_workers=workers, pin_memory=pin, multiprocessing_context=context,
                          persistent_workers=cfg.persistent_workers and workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(f"test/{name}", shuffle=False)
                for name in self.test_names]

    def predict_dataloader(self) -> DataLoader:
        """The validation set: ``trainer.predict(model, datamodule=dm)`` scores it to choose
        the decision threshold (through this module, so index batches become rows)."""
        return self.val_dataloader()

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """The rows of a loader's ``x`` on the batches' device: with ``on_device``, row
        indices become the rows gathered there; otherwise ``x`` is the rows. Code that
        iterates the loaders itself calls this after moving ``x``."""
        if x.dtype == torch.int64 and x.ndim == 1:
            assert self._device_rows is not None, "index batches without rows on the device"
            x = self._device_rows.gather(x)
            trainer = getattr(self, "trainer", None)
            if trainer is not None:  # as Lightning did to host batches (e.g. 64-true, bf16-true)
                x = trainer.precision_plugin.convert_input(x)
        return x

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Lightning calls this on the training device for every batch of a Trainer that was
        given this module (``datamodule=dm``)."""
        x, *rest = batch
        return (self.rows(x), *rest)

    def test_rows(self, name: str) -> list[dict[str, Any]]:
        return self.entries[f"test/{name}"].rows

    def describe(self) -> dict[str, Any]:
        out = {"clips": {name: len(e.rows) for name, e in self.entries.items()},
               "skipped": len(self.skipped), "cache": asdict(self.stats), **self.split_info}
        if self.task != "binary":
            out["classes"] = list(self.classes)
        return out


def _report_open_set(targets: dict[str, np.ndarray], entries: dict[str, CacheEntry]) -> None:
    """Say which clips fall outside the closed set of generators seen in training."""
    for name, values in targets.items():
        unknown = values == UNKNOWN
        if unknown.any():
            rows = entries[name].rows
            gens = sorted({str(rows[i]["generator"]) for i in np.flatnonzero(unknown)})
            log.info("%s: %d clip(s) from generators not in training (%s) are left out of "
                     "attribution metrics; they still count in the binary (human vs AI) "
                     "metrics", name, int(unknown.sum()), ", ".join(gens))

