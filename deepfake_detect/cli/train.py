"""``deepfake-detect-train [overrides]``: Hydra composes ``conf/train.yaml``; each job trains
and tests one configuration (:func:`deepfake_detect.training.run.train`), or a chain of them
(:func:`deepfake_detect.training.iterative.train_iterative` when ``iterative.stages`` is set).

A finished configuration prints its stored results without importing the training stack
(a re-run sweep skips its finished jobs in well under a second each, after importing MLflow
once to record them as part of the new sweep). A configuration error
is one line naming the key, exit code 2, and leaves no output folder behind; a configuration
another process is running exits with code 3 (``if_running: refuse``, the default of a single
run; a sweep job waits for it).

Output folders are unique: ``hydra.run.dir`` and ``hydra.sweep.dir`` use ``${unique_now:...}``
(the time to the millisecond plus a random suffix), so two commands started in the same second
never share a folder, a log or a sweep id.
"""

from __future__ import annotations

import importlib
import logging
import secrets
import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from deepfake_detect import atomic, console
from deepfake_detect.config import conf_dir, to_plain
from deepfake_detect.errors import (
    ConfigError,
    DeepfakeDetectError,
    GeneratorSkipped,
    NothingToHoldOut,
    RunInProgress,
    UsageError,
)
from deepfake_detect.scaling import prepare_sweep_job, release_gpu
from deepfake_detect.training.summary import finished_run

log = logging.getLogger("deepfake_detect.cli.train")
VERBOSE_FLAGS = ("-v", "--verbose", "-vv")
_verbosity = 0
_sweep_dir: Path | None = None  # this command's sweep folder (set in the launching process)
FAILED_DIR = ".failed"  # in the sweep folder: one file per job that stopped with an error
EXIT_RUNNING = 3  # another process is running this configuration


def unique_now(pattern: str) -> str:
    """``${unique_now:<strftime pattern>}``: the time in ``pattern``, then milliseconds and a
    random suffix (``2026-11-27_15-32-01-123-4f2a``). Cached per config like Hydra's
    ``${now:}``, and copied into every job of a sweep, so a sweep has one id."""
    now = datetime.now()
    return f"{now.strftime(pattern)}-{now.microsecond // 1000:03d}-{secrets.token_hex(2)}"


if not OmegaConf.has_resolver("unique_now"):
    OmegaConf.register_new_resolver("unique_now", unique_now, use_cache=True)


class CheckOutputs(Callback):
    """Before Hydra creates its output folder (``hydra.callbacks`` in conf/hydra/default.yaml):
    an unwritable ``paths.root`` is one line naming the key and exit code 2, not a traceback."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _sweep_dir
        self._check(config, "hydra.sweep.dir")
        _sweep_dir = Path(str(OmegaConf.select(config, "hydra.sweep.dir"))).expanduser()

    @staticmethod
    def _check(config: DictConfig, output_key: str) -> None:
        checks = [("paths.root", OmegaConf.select(config, "paths.root")),
                  (output_key, OmegaConf.select(config, output_key))]
        for key, value in checks:
            problem = atomic.unwritable(Path(str(value)).expanduser()) if value else None
            if problem:
                print(f"error: {ConfigError(key, problem)}", file=sys.stderr)
                sys.exit(2)


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="train")
def _hydra_main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    console.quiet_third_party(_verbosity)
    if _verbosity:
        logging.getLogger("deepfake_detect").setLevel(logging.DEBUG)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if multirun:
        _tag_sweep_job(cfg, hydra_cfg)
    if cfg.get("if_running", "auto") == "auto":  # a sweep job queues behind another process
        OmegaConf.set_struct(cfg, False)
        cfg.if_running = "wait" if multirun else "refuse"
    try:
        worked = _job(cfg)
    except NothingToHoldOut as err:
        if hydra_cfg.mode != RunMode.MULTIRUN:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        if isinstance(err, GeneratorSkipped):
            _record_skip(cfg, err)
        else:
            log.warning("%s: this job of the sweep has nothing to do", err)
        _drop_output_dir(hydra_cfg)
        return
    except DeepfakeDetectError as err:
        print(f"error: {err}", file=sys.stderr)
        if isinstance(err, ConfigError | UsageError | RunInProgress):  # before any work
            _drop_output_dir(hydra_cfg)
        if multirun:  # one failed job never stops the others; the sweep's exit code says it
            _record_failure(hydra_cfg, err)
            return
        sys.exit(EXIT_RUNNING if isinstance(err, RunInProgress) else 2)
    except Exception as err:
        full = atomic.disk_full(err)  # a full disk outside the library's own writes
        if full is None:
            raise
        print(f"error: {full}", file=sys.stderr)
        sys.exit(2)
    finally:
        release_gpu()  # joblib reuses its worker processes for later jobs
    if not worked:
        _drop_output_dir(hydra_cfg)


def _record_failure(hydra_cfg: DictConfig, err: Exception) -> None:
    """A file in the sweep folder naming the failed job and why, which the launching process
    reads when the sweep ends, whichever launcher ran the job (in this process, a joblib
    worker or a SLURM node sharing the folder)."""
    line = f"job {hydra_cfg.job.num} ({','.join(hydra_cfg.overrides.task)}): {err}"
    try:
        atomic.write_text(Path(hydra_cfg.sweep.dir) / FAILED_DIR / f"{hydra_cfg.job.num}.txt",
                          line)
    except OSError as problem:
        log.warning("could not record the failed job in the sweep folder: %s", problem)


def failed_jobs(sweep_dir: Path | None) -> list[str]:
    """The lines of a sweep's failed jobs, in job order."""
    folder = sweep_dir / FAILED_DIR if sweep_dir else None
    if folder is None or not folder.is_dir():
        return []
    found = sorted(folder.glob("*.txt"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0)
    return [p.read_text(encoding="utf-8") for p in found]


def _record_skip(cfg: DictConfig, err: GeneratorSkipped) -> None:
    """A skipped leave-one-generator-out job: one line naming the generator and why, and a
    record in MLflow (tag ``skipped``) that the report lists; the sweep goes on."""
    log.warning("skipped: %s; the sweep goes on", err.message)
    from deepfake_detect import tracking  # imports MLflow: only when a job is skipped

    try:
        tracking.record_skipped(to_plain(cfg), {
            tracking.SKIPPED_TAG: err.reason, "holdout_generator": err.generator})
    except Exception as problem:  # noqa: BLE001 -- the record is best effort
        log.warning("could not record the skipped job in MLflow: %s", problem)


def _job(cfg: DictConfig) -> bool:
    """Run one job; False when there was nothing to do (a finished configuration)."""
    resolved = to_plain(cfg)
    if finished_run(resolved) is not None:
        return False
    console.release_lightning_handlers()
    from deepfake_detect.training.iterative import is_iterative, train_iterative
    from deepfake_detect.training.run import train

    if is_iterative(resolved):
        train_iterative(resolved)
    else:
        train(resolved)
    return True


def _tag_sweep_job(cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    """Tags naming the sweep, and the job's GPU when sweep jobs share a machine's GPUs."""
    OmegaConf.set_struct(cfg, False)
    cfg.logger.setdefault("tags", {})
    cfg.logger.tags["sweep_id"] = Path(hydra_cfg.sweep.dir).name
    cfg.logger.tags["sweep_overrides"] = ",".join(hydra_cfg.overrides.task)
    try:
        gpu = prepare_sweep_job(to_plain(cfg.trainer), str(hydra_cfg.launcher._target_),
                                hydra_cfg.job.num)
    except DeepfakeDetectError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if gpu:
        cfg.logger.tags["gpu"] = gpu


def _drop_output_dir(hydra_cfg: DictConfig) -> None:
    """Remove the job's Hydra folder when the job did nothing worth keeping (it holds only the
    composed config and an empty or trivial log), and its date folder once that is empty."""
    folder = Path(hydra_cfg.runtime.output_dir)
    kept = {".hydra", f"{hydra_cfg.job.name}.log"}
    if not folder.is_dir() or any(p.name not in kept for p in folder.iterdir()):
        return
    shutil.rmtree(folder, ignore_errors=True)
    parent = folder.parent
    if hydra_cfg.mode != RunMode.MULTIRUN and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()


def main() -> None:
    """Console script ``deepfake-detect-train``."""
    global _verbosity
    _verbosity = sum(2 if arg == "-vv" else 1 for arg in sys.argv[1:] if arg in VERBOSE_FLAGS)
    sys.argv = [arg for arg in sys.argv if arg not in VERBOSE_FLAGS]
    console.quiet_third_party(_verbosity)
    _hydra_main()
    # Hydra instantiates CheckOutputs from this module's import name, which is not __main__
    # under ``python -m deepfake_detect.cli.train``: read the sweep folder where it was set.
    failed = failed_jobs(importlib.import_module(__spec__.name if __spec__ else __name__)
                         ._sweep_dir)
    if failed:  # the others went on; the exit code says that some did not finish
        print(f"error: {len(failed)} job(s) of the sweep failed (re-run the same command once "
              "fixed: finished jobs are skipped):\n  " + "\n  ".join(failed), file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
