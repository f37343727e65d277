"""Checkpoints written atomically, and the newest loadable one found on resume."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save to a temporary name, then rename: a killed job never leaves half a checkpoint."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)


def is_loadable(path: Path) -> str | None:
    """None when ``path`` loads with ``weights_only=True``; otherwise the reason it does not."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated files raise a variety of errors
        return f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        return "not a Lightning checkpoint (no state_dict)"
    return None


def resumable_checkpoint(directory: Path) -> Path | None:
    """The checkpoint to resume from: ``last.ckpt``, or the newest good one if it is corrupt."""
    candidates = [directory / "last.ckpt"]
    candidates += sorted((p for p in directory.glob("epoch*.ckpt")),
                         key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        if not path.is_file():
            continue
        problem = is_loadable(path)
        if problem is None:
            return path
        log.warning("checkpoint %s is corrupt (%s); trying an earlier one", path, problem)
        print(f"[deepfake-detect] checkpoint {path} is corrupt ({problem}); "
              "falling back to an earlier checkpoint")
    return None
