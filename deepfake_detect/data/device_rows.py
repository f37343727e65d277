"""Cached rows held in the training device's memory, so that a batch is a gather there.

With ``data.loader.on_device`` the loaders ship row indices only (a few hundred bytes a batch,
no worker processes, no pinning) and :meth:`DeviceRows.gather` picks the rows out of one table
on the device. On a fast GPU this takes the host out of the training loop: reading, collating,
pinning and copying a batch of study-size log-mels (7 MB) costs about as much host time as
launching a ResNet18 step. The rows are bit-identical to the memory-mapped ones, so results
do not change.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import Dataset

from deepfake_detect.config import require
from deepfake_detect.data.cache import CacheEntry

log = logging.getLogger(__name__)

DEVICE_SHARE = 0.25  # on_device: auto uses the device when the rows fit in this share of it
_CHUNK_BYTES = 64 << 20  # copied to the device in pieces: no second host copy of an entry


class DeviceRows:
    """Every entry's rows, one after the other, in one table per device (made on first use)."""

    def __init__(self, entries: dict[str, CacheEntry]):
        self.entries = entries
        self.offsets: dict[str, int] = {}
        total = 0
        for name, entry in entries.items():
            self.offsets[name] = total
            total += len(entry.features)
        self.rows = total
        first = next(iter(entries.values())).features
        self.row_shape = tuple(first.shape[1:])
        self.nbytes = total * int(np.prod(self.row_shape)) * first.itemsize
        self._tables: dict[str, torch.Tensor] = {}

    def table(self, device: torch.device) -> torch.Tensor:
        key = str(device)
        if key not in self._tables:
            if device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(device)
                require(self.nbytes < free, "data.loader.on_device",
                        f"the cached rows need {self.nbytes / 1e9:.2f} GB on {device}, which has "
                        f"{free / 1e9:.2f} GB free: set it to false (rows read on the host)")
            table = torch.empty((self.rows, *self.row_shape), dtype=torch.float32,
                                device=device)
            for name, entry in self.entries.items():
                step = max(1, _CHUNK_BYTES // max(1, entry.features[0].nbytes))
                start = self.offsets[name]
                for i in range(0, len(entry.features), step):
                    rows = torch.from_numpy(np.asarray(entry.features[i:i + step]))
                    table[start + i:start + i + len(rows)].copy_(rows)
            self._tables[key] = table
            log.info("cached rows on %s: %d rows, %.2f GB", device, self.rows, self.nbytes / 1e9)
        return self._tables[key]

    def gather(self, index: torch.Tensor) -> torch.Tensor:
        """The rows at global ``index`` (from :class:`IndexDataset`), on ``index``'s device,
        shaped as the host loaders' batches: ``(batch, 1, *row)``."""
        return self.table(index.device).index_select(0, index).unsqueeze(1)


def fits(nbytes: int, device: torch.device | None) -> bool:
    """Whether ``nbytes`` of rows belong on ``device`` under ``on_device: auto``: a CUDA
    device with at least 1 / DEVICE_SHARE times that much memory, and twice that much free
    (other jobs may share it)."""
    if device is None or device.type != "cuda":
        return False
    free, total = torch.cuda.mem_get_info(device)
    return nbytes <= min(DEVICE_SHARE * total, free / 2)


class IndexDataset(Dataset):
    """What the loaders yield with rows on the device: (global row index, target, index)."""

    def __init__(self, offset: int, targets: np.ndarray):
        self.offset = offset
        self.labels = targets

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[int, int, int]:
        return self.offset + index, int(self.labels[index]), index
