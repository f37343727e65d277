"""Checkpoints written atomically, the newest loadable one found on resume, and MLflow logging
that stays consistent with them when a job is killed and resumed.

A job can die anywhere, so two things must line up on resume:

- the checkpoint: written to a temporary name and renamed (never half a file); a corrupt
  ``last.ckpt`` falls back to the newest loadable ``epochNNN.ckpt``;
- the metric history: an epoch's metrics are logged *before* its checkpoint is saved
  (:class:`EpochCheckpoint`), and a resumed run never logs a (metric, step) pair twice
  (:class:`ResumableMLFlowLogger`). Killed before the checkpoint: the epoch is retrained and its
  already-logged metrics are not repeated; killed after it: nothing is missing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only

from deepfake_detect import atomic
from deepfake_detect.tracking import keep_tracking_uri, retry

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save to a temporary name, then rename: a killed job never leaves half a checkpoint."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        atomic.save_torch(path, checkpoint)


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
    """The checkpoint to resume from: ``last.ckpt``, or the newest good one if it is corrupt.

    Also removes temporary files left by a job killed while it was saving. Call it only while
    holding the run's lock (:meth:`RunDir.hold`); even then a temporary whose writer is still
    alive is left alone.
    """
    for stale in directory.glob(f".*{atomic.TMP_MARK}*"):
        if not atomic.writer_alive(stale):
            atomic.remove(stale)
    candidates = [directory / "last.ckpt"]
    candidates += sorted((p for p in directory.glob("epoch*.ckpt")),
                         key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        if not path.is_file():
            continue
        problem = is_loadable(path)
        if problem is None:
            return path
        log.warning("checkpoint %s is corrupt (%s); falling back to an earlier checkpoint",
                    path, problem)
    return None


def prune_checkpoints(directory: Path, policy: str) -> list[Path]:
    """What a finished run keeps of its training checkpoints (``trainer.keep_checkpoints``):
    ``all``; ``last`` (``last.ckpt``); ``best`` (``best.ckpt`` where model selection wrote
    one, else ``last.ckpt``: without it the last epoch is the best); ``none``. Files are kept
    by name; returns the removed ones. The inference bundle lives outside ``directory``."""
    if policy == "all" or not directory.is_dir():
        return []
    keep: set[str] = set()
    if policy == "last":
        keep = {"last.ckpt"}
    elif policy == "best":
        keep = {"best.ckpt"} if (directory / "best.ckpt").is_file() else {"last.ckpt"}
    removed = [path for path in sorted(directory.glob("*.ckpt")) if path.name not in keep]
    for path in removed:
        path.unlink(missing_ok=True)
    if removed:
        log.debug("removed %d checkpoint(s) (trainer.keep_checkpoints=%s): %s", len(removed),
                  policy, ", ".join(p.name for p in removed))
    return removed


class EpochCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that sends the epoch's training metrics to the loggers before saving.

    Lightning saves the end-of-epoch checkpoint first and logs the epoch's training metrics
    afterwards, so a job killed in between resumes after that epoch and its ``train/*`` values
    never reach MLflow (a gap). Logging them first (Lightning logs them again at the same step
    moments later; :class:`ResumableMLFlowLogger` drops the repeat) closes that window.
    """

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        _log_train_epoch_metrics(trainer)
        super().on_train_epoch_end(trainer, pl_module)


class BestCheckpoint(ModelCheckpoint):
    """The best epoch on a validation metric (``eval.select``), kept as ``best.ckpt`` (its
    ``epoch`` inside); its path and score travel in ``last.ckpt``, so they survive a kill and
    a resume."""


def _log_train_epoch_metrics(trainer) -> None:
    """What Lightning's ``update_train_epoch_metrics`` logs, at the step it uses, now."""
    connector = getattr(trainer, "_logger_connector", None)
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    if connector is None or not hasattr(loop, "_batches_that_stepped") or trainer.sanity_checking:
        return  # a Lightning whose internals moved: keep its own order (gap possible, no harm)
    metrics = connector.metrics["log"]
    if not metrics:
        return
    loop._batches_that_stepped -= 1  # as Lightning does for epoch-end metrics
    try:
        connector.log_metrics(metrics)
    finally:
        loop._batches_that_stepped += 1


class ResumableMLFlowLogger(MLFlowLogger):
    """MLFlowLogger for runs that may be resumed.

    - logs each (metric, step) pair once: pairs already in the run (from before a kill) or
      logged earlier by this process are dropped, so a retrained epoch adds no duplicates;
    - leaves the run status alone: the caller marks the run FINISHED only once its results
      are stored, and FAILED / KILLED when it stops early (Lightning would mark it FINISHED
      at the end of ``fit``, before testing, and FAILED on Ctrl+C).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._logged: set[tuple[str, int]] | None = None

    @property
    def experiment(self) -> Any:
        """Lightning's client, without the process-wide tracking URI it sets on the way."""
        if self._initialized:
            return self._mlflow_client
        with keep_tracking_uri():
            return super().experiment

    def _already_logged(self) -> set[tuple[str, int]]:
        if self._logged is None:
            client, run_id = self.experiment, self.run_id
            self._logged = retry(lambda: {(key, m.step)
                                          for key in client.get_run(run_id).data.metrics
                                          for m in client.get_metric_history(run_id, key)},
                                 "read metric history")
        return self._logged

    @rank_zero_only
    def log_metrics(self, metrics, step: int | None = None) -> None:
        step = step or 0
        seen = self._already_logged()
        fresh = {k: v for k, v in metrics.items() if (self._key(k), step) not in seen}
        if fresh:  # parallel jobs share one sqlite file: retry when it is locked
            retry(lambda: super(ResumableMLFlowLogger, self).log_metrics(fresh, step=step),
                  "log metrics")
            seen.update((self._key(k), step) for k in fresh)

    def _key(self, name: str) -> str:
        return f"{self._prefix}{self.LOGGER_JOIN_CHAR}{name}" if self._prefix else name

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """Status is the caller's business (see the class docstring)."""

