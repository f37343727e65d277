"""Run directories named by config signature, so the same config finds its own checkpoints.

The signature is a hash of the resolved config's identity keys (``conf/identity.yaml``, read
by :mod:`deepfake_detect.identity`). The directory holds
``checkpoints/``, ``mlflow_run_id`` (so a resumed job continues the same MLflow run) and
``result.json``, written last and atomically: its presence means the run finished.

One process at a time works in a run directory (:meth:`RunDir.hold`): an exclusive lock
(``flock``, so the kernel releases it when its process dies, even by ``kill -9``) in
``<paths.root>/.locks/``, with a small owner file (pid, host, start) that names the holder
to a process that finds it taken. That process waits or stops (``if_running``).

:func:`run_dir_for` finds a config's directory from the resolved config alone (no data, no
torch unless ``precision: auto`` must be resolved with an NVIDIA GPU present), so a finished
job of a re-run sweep is skipped in well under a second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from deepfake_detect import atomic, identity
from deepfake_detect.errors import RunInProgress
from deepfake_detect.scaling import resolve_trainer

log = logging.getLogger(__name__)
SWEEP_TAG, SWEEPS_TAG = "sweep_id", "sweep_ids"  # MLflow tags: the sweep that ran a run, all
IF_RUNNING = ("auto", "wait", "refuse")  # auto: wait inside a sweep, refuse a single run


def signature(resolved: Mapping[str, Any]) -> str:
    """A 12-hex-digit hash of the result-relevant part of the resolved config (with
    ``trainer.precision: auto`` resolved: the precision that runs is part of the result)."""
    if isinstance(trainer := resolved.get("trainer"), Mapping):
        resolved = {**resolved, "trainer": resolve_trainer(dict(trainer))}
    relevant = identity.signature_items(resolved)
    blob = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_name(resolved: Mapping[str, Any]) -> str:
    """``<training distortion>-seed<seed>-<signature>``."""
    distortion = (resolved.get("distortion") or {}).get("name", "base")
    return f"{distortion}-seed{resolved.get('seed', 0)}-{signature(resolved)}"


def run_dir_for(resolved: Mapping[str, Any]) -> RunDir:
    """The run directory of a resolved config: ``<paths.root>/runs/<run_name>``."""
    root = Path(resolved["paths"]["root"]).expanduser().resolve()
    return RunDir(root / "runs" / run_name(resolved))


def finished_result(resolved: Mapping[str, Any]) -> dict[str, Any] | None:
    """The stored result of this config if it already finished and ``resume`` is on; else None.

    Cheap (a hash and one file read) and never raises: a config it cannot place is left to
    the full validation that follows.
    """
    if not resolved.get("resume", True):
        return None
    try:
        return run_dir_for(resolved).result()
    except (KeyError, TypeError, AttributeError, ValueError, OSError):
        return None


@dataclass(frozen=True)
class RunDir:
    """``<runs>/<name>-<signature>``: checkpoints, MLflow run id and the final result."""

    path: Path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def artifacts(self) -> Path:
        return self.path / "artifacts"

    @property
    def result_file(self) -> Path:
        return self.path / "result.json"

    def create(self) -> RunDir:
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        return self

    def run_id(self) -> str | None:
        path = self.path / "mlflow_run_id"
        return path.read_text().strip() or None if path.is_file() else None

    def live_run_id(self, tracking_uri: str) -> str | None:
        """The stored MLflow run id if that run still exists in the tracking store."""
        run_id = self.run_id()
        if run_id is None:
            return None
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        try:
            MlflowClient(tracking_uri=tracking_uri).get_run(run_id)
        except MlflowException:
            log.warning("MLflow run %s is not in %s; starting a new run", run_id, tracking_uri)
            return None
        return run_id

    def save_run_id(self, run_id: str) -> None:
        atomic.write_text(self.path / "mlflow_run_id", run_id)

    def result(self) -> dict[str, Any] | None:
        if not self.result_file.is_file():
            return None
        try:
            return json.loads(self.result_file.read_text())
        except ValueError:
            return None

    def save_result(self, result: Mapping[str, Any]) -> None:
        atomic.write_text(self.result_file, json.dumps(result, indent=2, default=str))

    def clear_result(self) -> None:
        self.result_file.unlink(missing_ok=True)

    @property
    def lock_file(self) -> Path:
        """``<paths.root>/.locks/<name>.lock``: outside the directory, so that removing it
        (``resume=false``) keeps the lock, and outside ``runs/``, which holds runs only."""
        return self.path.parent.parent / ".locks" / f"{self.path.name}.lock"

    @property
    def owner_file(self) -> Path:
        return self.lock_file.with_suffix(".owner")

    def owner(self) -> str:
        """Who holds the lock, as a user reads it (best effort)."""
        try:
            who = json.loads(self.owner_file.read_text())
            return f"pid {who['pid']} on {who['host']}, since {who['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "pid unknown: the holder has not written its owner file yet"

    @contextmanager
    def hold(self, if_running: str = "refuse") -> Iterator[bool]:
        """Hold this run's lock for the block; yields whether another process held it first
        (then it waited for it). ``if_running=refuse``: raise :class:`RunInProgress` instead
        of waiting."""
        self.lock_file.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.lock_file))
        waited = False
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if if_running == "refuse":
                raise RunInProgress(
                    f"{self.path.name} is already running ({self.owner()}); this process "
                    "stops (if_running=wait waits for it instead)") from None
            log.info("%s is already running (%s): waiting for it to finish", self.path.name,
                     self.owner())
            lock.acquire()
            waited = True
        try:
            atomic.write_json(self.owner_file, {
                "pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)[:500]})
            yield waited
        finally:
            self.owner_file.unlink(missing_ok=True)  # before the lock: the next owner's stays
            lock.release()
