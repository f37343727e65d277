"""Lightning callbacks: a one-line summary per epoch (readable in logs without a progress bar)."""

from __future__ import annotations

import time

import lightning.pytorch as pl


class EpochSummary(pl.Callback):
    """Prints ``epoch k/N  train/loss … val/acc …  (s)`` at the end of each training epoch."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        shown = "  ".join(f"{k} {float(v):.4f}" for k, v in sorted(metrics.items())
                          if k.startswith(("train/", "val/")))
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        print(f"[deepfake-detect] epoch {trainer.current_epoch + 1}/{total}  {shown}  "
              f"({time.perf_counter() - self._start:.1f} s)", flush=True)
