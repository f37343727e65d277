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
import math
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
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
    """ModelCheckpoint that sends the epoch's training metrics to the loggers before saving,
    and hands each ``last.ckpt`` it writes to model selection (:class:`BestCheckpoint`).

    Lightning saves the end-of-epoch checkpoint first and logs the epoch's training metrics
    afterwards, so a job killed in between resumes after that epoch and its ``train/*`` values
    never reach MLflow (a gap). Logging them first (Lightning logs them again at the same step
    moments later; :class:`ResumableMLFlowLogger` drops the repeat) closes that window.
    """

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        _log_train_epoch_metrics(trainer)
        super().on_train_epoch_end(trainer, pl_module)

    def _save_last_checkpoint(self, trainer, monitor_candidates) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        for callback in trainer.callbacks:
            if isinstance(callback, BestCheckpoint) and self.last_model_path:
                callback.commit(trainer, Path(self.last_model_path))


class BestCheckpoint(Callback):
    """Model selection on a validation metric (``eval.select``) that no kill changes.

    Lightning's own ModelCheckpoint updated its best score *after* ``last.ckpt`` had been
    written with the old one, so a job killed after an improving epoch resumed without it and
    selected another epoch. Here the decision is made at validation end, before the epoch's
    checkpoints are written, so ``last.ckpt`` carries it (score, epoch and step are this
    callback's state); then ``best.ckpt`` becomes a hard link to (or a copy of) that
    ``last.ckpt``. A job killed or failed between the two resumes from a ``last.ckpt`` that
    names itself the best, and the link is made again before training goes on. Ties keep the
    earlier epoch; values that are not finite never count.
    """

    FILE = "best.ckpt"

    def __init__(self, dirpath: str | Path, monitor: str, mode: str):
        self.dirpath, self.monitor, self.mode = Path(dirpath), monitor, mode
        self.score: float | None = None
        self.epoch: int | None = None  # 0-based, as Lightning counts
        self.step: int | None = None
        self.validations = 0  # validations seen (restored ones included), for the messages
        self._pending = False

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    @property
    def path(self) -> Path:
        return self.dirpath / self.FILE

    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "mode": self.mode, "score": self.score,
                "epoch": self.epoch, "step": self.step, "validations": self.validations}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if (state_dict.get("monitor"), state_dict.get("mode")) != (self.monitor, self.mode):
            return
        self.score, self.epoch = state_dict.get("score"), state_dict.get("epoch")
        self.step, self.validations = state_dict.get("step"), state_dict.get("validations", 0)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        """Resuming from the checkpoint that is the best: make ``best.ckpt`` that file again
        (the job that wrote it may have died before linking it)."""
        state = (checkpoint.get("callbacks") or {}).get(self.state_key) or {}
        resumed = trainer.ckpt_path
        if (resumed and trainer.is_global_zero and state.get("step") is not None
                and state.get("step") == checkpoint.get("global_step")
                and state.get("epoch") == checkpoint.get("epoch")):
            _link_best(Path(resumed), self.path)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        value = trainer.callback_metrics.get(self.monitor)
        value = float(value) if value is not None else math.nan
        value = trainer.strategy.broadcast(value, src=0)  # rank 0's metric decides
        self.validations += 1
        if math.isfinite(value) and (self.score is None or self._better(value, self.score)):
            self.score, self.epoch, self.step = value, trainer.current_epoch, trainer.global_step
            self._pending = True

    def _better(self, value: float, than: float) -> bool:
        return value < than if self.mode == "min" else value > than

    def commit(self, trainer, written: Path) -> None:
        """``written`` (a ``last.ckpt``) was just saved: link it as ``best.ckpt`` when it holds
        the epoch just chosen."""
        if self._pending and trainer.global_step == self.step:
            self._pending = False
            if trainer.is_global_zero:
                _link_best(written, self.path)

    def load(self) -> tuple[dict[str, Any] | None, str]:
        """The checkpoint of the recorded best epoch, and where it came from; ``best.ckpt``
        first, else any checkpoint of the run folder holding that epoch (then linked as
        ``best.ckpt``). None and the reason when none holds it."""
        files = [self.path, *sorted(p for p in self.dirpath.glob("*.ckpt") if p != self.path)]
        found: list[str] = []
        for path in files:
            try:
                checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception as err:  # noqa: BLE001 - a damaged file is just not a candidate
                found.append(f"{path.name}: unreadable ({type(err).__name__})")
                continue
            if (checkpoint.get("epoch"), checkpoint.get("global_step")) == (self.epoch,
                                                                             self.step):
                if path != self.path:
                    _link_best(path, self.path)
                return checkpoint, str(path)
            epoch = checkpoint.get("epoch")
            found.append(f"{path.name} holds epoch {epoch + 1 if isinstance(epoch, int) else '?'}")
        return None, "; ".join(found) or f"no checkpoint in {self.dirpath}"


def _link_best(source: Path, best: Path) -> None:
    """``best`` becomes ``source``'s content, atomically (a hard link where the file system
    has them: no second copy of the weights, and the next ``last.ckpt`` replaces its own
    name only)."""
    if best.exists() and os.path.samefile(source, best):
        return
    atomic.link_or_copy(source, best)
    log.debug("best checkpoint: %s (from %s)", best, source.name)


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

