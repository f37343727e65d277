"""MLflow tracking: one run per job, params from the resolved config, tags, artifacts.

The default store is ``sqlite:///<outputs>/mlflow.db`` with artifacts beside it, so no server
is needed; ``logger.tracking_uri`` points at a server instead.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock

from deepfake_detect.config import require

log = logging.getLogger(__name__)
T = TypeVar("T")

# Keys whose values may differ between a run and its resumption (or are not results-relevant):
# never logged as params, since MLflow params are immutable, nor part of a run's signature
# (runs.IGNORED_PREFIXES).
VOLATILE_PREFIXES = ("paths.", "logger.", "resume", "hydra.", "data.cache.",
                     "data.loader.num_workers", "data.loader.pin_memory",
                     "data.loader.persistent_workers", "data.loader.on_device",
                     "trainer.enable_progress_bar",
                     "explain.", "trainer.gpu_per_job")


@dataclass(frozen=True)
class LoggerConfig:
    """The ``logger`` config group."""

    name: str = "mlflow"
    tracking_uri: str | None = None
    experiment_name: str = "deepfake-detect"
    run_name: str | None = None
    artifact_location: str | None = None

    def __post_init__(self) -> None:
        require(self.name == "mlflow", "name", f"got {self.name!r}; allowed: mlflow")
        require(bool(self.experiment_name), "experiment_name", "must not be empty")


def default_tracking_uri(outputs: Path) -> str:
    return f"sqlite:///{(outputs / 'mlflow.db').resolve()}"


def is_local_sqlite(uri: str) -> bool:
    return uri.startswith("sqlite:///")


def flatten(node: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted (key, value) pairs of a nested mapping; lists become strings."""
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten(value, f"{name}.")
        else:
            yield name, value


def params_from_config(resolved: Mapping[str, Any]) -> dict[str, str]:
    """Params for MLflow: flattened resolved config minus keys that can change on resume."""
    params = {}
    for key, value in flatten(resolved):
        if key.startswith(VOLATILE_PREFIXES):
            continue
        text = str(value)
        params[key] = text if len(text) <= 6000 else text[:5997] + "..."
    return params


def git_commit() -> str:
    """The commit of the code that runs (with '-dirty' for uncommitted changes), or 'unknown'."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout
        return commit + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def retry(action: Callable[[], T], what: str, attempts: int = 8) -> T:
    """Run ``action``, retrying with backoff on sqlite "database is locked" errors."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception as err:  # noqa: BLE001 - MLflow wraps the sqlite error variously
            if "locked" not in str(err).lower() or attempt == attempts - 1:
                raise
            delay = 0.2 * 2**attempt
            log.warning("%s: database is locked, retrying in %.1fs", what, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def ensure_experiment(uri: str, name: str, artifact_location: str | None,
                      lock_dir: Path | None) -> str:
    """The id of experiment ``name``, created if needed (once, under a lock for sqlite)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    def get_or_create() -> str:
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException as err:  # a parallel job created it first (server: no lock)
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return client.get_experiment_by_name(name).experiment_id

    if lock_dir is None:
        return retry(get_or_create, "create experiment")
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / "mlflow.db.lock")):
        return retry(get_or_create, "create experiment")


@dataclass(frozen=True)
class Store:
    """Where a job's runs go: tracking URI, artifact location and the experiment's id."""

    uri: str
    artifact_location: str | None
    experiment_id: str


def open_store(cfg: LoggerConfig, outputs: Path) -> Store:
    """The store for ``cfg`` (default: sqlite under ``outputs``, artifacts beside it), with
    its experiment created if needed."""
    prepare_store()
    uri = cfg.tracking_uri or default_tracking_uri(outputs)
    local = is_local_sqlite(uri)
    artifact_location = cfg.artifact_location or (
        (outputs / "mlartifacts").as_uri() if local else None)
    experiment_id = ensure_experiment(uri, cfg.experiment_name, artifact_location,
                                      outputs if local else None)
    return Store(uri, artifact_location, experiment_id)


def set_terminated(uri: str, run_id: str, status: str) -> None:
    """Mark a run FINISHED / FAILED / KILLED (best effort: never raises)."""
    from mlflow.tracking import MlflowClient

    try:
        retry(lambda: MlflowClient(tracking_uri=uri).set_terminated(run_id, status),
              "set run status")
    except Exception as err:  # noqa: BLE001
        log.error("could not mark MLflow run %s as %s: %s", run_id, status, err)


def prepare_store() -> None:
    """sqlite stores shared by parallel jobs: do not pool connections."""
    os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")
