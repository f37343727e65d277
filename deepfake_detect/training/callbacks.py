"""Lightning callbacks for what a user watches: one line per epoch (readable in logs), and a
progress bar that counts epochs the same way (from 1)."""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import TQDMProgressBar

log = logging.getLogger(__name__)


def epoch_of(trainer: pl.Trainer) -> str:
    """``k/N`` for the epoch running now, counted from 1."""
    total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
    return f"{trainer.current_epoch + 1}/{total}"


class EpochSummary(pl.Callback):
    """Logs ``epoch k/N  train/loss … val/acc …  (s)`` at the end of each training epoch."""

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
        log.info("epoch %s  %s  (%.1f s)", epoch_of(trainer), shown,
                 time.perf_counter() - self._start)


class EpochBar(TQDMProgressBar):
    """Lightning's bar, saying ``epoch k/N`` (from 1, like the summary lines) and leaving out
    the logger's version number."""

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(f"epoch {epoch_of(trainer)}")

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule
                    ) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items
