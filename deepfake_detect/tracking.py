"""MLflow tracking: where the store is, params from the resolved config, retries.

Every command finds the store by one rule (:func:`default_tracking_uri`): an explicit URI
(``logger.tracking_uri``, ``--tracking-uri``), else ``MLFLOW_TRACKING_URI``, else
``sqlite:///<paths.root>/mlflow.db`` with artifacts beside it, so no server is needed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as mlflow_uri

from deepfake_detect import identity
from deepfake_detect.config import build, require
from deepfake_detect.errors import StoreError
from deepfake_detect.runs import SWEEP_TAG, SWEEPS_TAG

log = logging.getLogger(__name__)
T = TypeVar("T")
OUTPUTS_VARIABLE = "DEEPFAKE_DETECT_OUTPUTS"  # paths.root's default (conf/paths/default.yaml)
DEFAULT_OUTPUTS = "outputs"
URI_VARIABLE = "MLFLOW_TRACKING_URI"
# MLflow 3's UI opens an experiment by this tag: the runs table for model training, not the
# GenAI overview (the values are the UI's own, mlflow/server/js).
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
NAMES_TAG = "key_names"  # a run's {key: real name} for names that metric_key changed
KEY_CHARACTERS = re.compile(r"[^A-Za-z0-9_.\-]+")
MAX_NAME_KEY = 100


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


def outputs_root() -> Path:
    """``paths.root`` for commands without a training config: ``$DEEPFAKE_DETECT_OUTPUTS``,
    else ``outputs`` in the current directory."""
    return Path(os.environ.get(OUTPUTS_VARIABLE) or DEFAULT_OUTPUTS).expanduser().resolve()


def default_tracking_uri(outputs: Path | None = None) -> str:
    """The store every command uses unless given one: ``$MLFLOW_TRACKING_URI``, else
    ``sqlite:///<outputs>/mlflow.db`` (``outputs``: ``paths.root``, else
    :func:`outputs_root`)."""
    env = os.environ.get(URI_VARIABLE)
    if env:
        return env
    root = Path(outputs).expanduser().resolve() if outputs is not None else outputs_root()
    return f"sqlite:///{root / 'mlflow.db'}"


@contextmanager
def keep_tracking_uri() -> Iterator[None]:
    """Undo what ``mlflow.set_tracking_uri`` leaves behind (Lightning's MLFlowLogger calls
    it): MLflow's process-wide URI and the ``MLFLOW_TRACKING_URI`` variable it exports, which
    the next run in this process, and every subprocess, would otherwise take for the user's."""
    env = os.environ.get(URI_VARIABLE)
    before = mlflow_uri._tracking_uri
    try:
        yield
    finally:
        mlflow_uri._tracking_uri = before
        if env is None:
            os.environ.pop(URI_VARIABLE, None)
        else:
            os.environ[URI_VARIABLE] = env


def metric_key(name: Any) -> str:
    """A name from the data (generator, source, test set: any characters) as one component
    of an MLflow metric, param or tag key: ASCII letters, digits, ``_ . -`` only. A name that
    is already such a component is kept; any other gets the readable part (accents dropped,
    every other run of characters as ``_``) and 6 hex digits of its hash, so that two names
    never share a key. Tables show the real name (:data:`NAMES_TAG`, :func:`real_names`)."""
    text = str(name)
    if KEY_CHARACTERS.search(text) is None and text.strip(".") and len(text) <= MAX_NAME_KEY:
        return text
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    readable = re.sub("_+", "_", KEY_CHARACTERS.sub("_", ascii_text)).strip("_.")
    readable = readable[:MAX_NAME_KEY] or "name"
    return f"{readable}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"


def key_names(names: Any) -> dict[str, str]:
    """``{metric_key(name): name}`` for the names whose key differs from the name."""
    return {metric_key(n): str(n) for n in names if metric_key(n) != str(n)}


def names_tag(names: Any, limit: int = 7000) -> dict[str, str]:
    """The :data:`NAMES_TAG` tag for ``names`` (none when every name is its own key); names
    past ``limit`` characters of JSON are left out (their keys then show as they are)."""
    found = key_names(names)
    while found and len(json.dumps(found, ensure_ascii=False)) > limit:
        found.pop(next(reversed(found)))
    return {NAMES_TAG: json.dumps(found, ensure_ascii=False, sort_keys=True)} if found else {}


# Where a result is logged in MLflow. MLflow 3's run page groups a run's charts by the key up
# to its last "/", sorts the groups (keys without "/" last, as "Model metrics") and the charts
# in each by key; no tag or logging order changes that (mlflow/server/js, 3.17). So the
# details go under DETAIL, which sorts after train/ and val/: the page opens on each test
# set's headline metrics (test/<d>/, test/<d>/file/), then the training curves. The results
# (train()'s, result.json, the report's reading) keep their names; only the key differs.
DETAIL = "x"
HEADLINE = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "auroc", "eer")
FIELD_COSTS = ("min_dcf", "act_dcf", "cllr", "min_cllr", "ece")
DETAIL_TOPS = ("baseline", "sources", "fusion", "model")  # whole families of results
DETAIL_GROUPS = ("probe", "uncalibrated")  # test/<d>/[file/]<group>/...
DETAIL_KINDS = ("ci", "field", "generator", "other")  # the other leaves of test/<d>/[file/]


def detail_kind(leaf: str) -> str:
    """The group of a test set's non-headline value: interval bounds, the field's costs,
    accuracy per generator, or the rest (counts, the EER threshold)."""
    if leaf.endswith(("_ci_low", "_ci_high")):
        return "ci"
    if leaf in FIELD_COSTS:
        return "field"
    return "generator" if leaf.startswith("acc_") else "other"


def logged_key(name: str) -> str:
    """The MLflow key of the result ``name``: headline test metrics (``test/<d>/auroc``,
    ``test/<d>/file/auroc``, ``test/<d>/attribution/...``), ``train/``, ``val/`` and names
    without ``/`` as they are; ``x/<name>`` for baselines, sources, fusion, model size and
    the probe and uncalibrated groups; ``x/<kind>/<name>`` for a test set's other values
    (``x/ci/test/base/auroc_ci_low``, ``x/field/...``, ``x/generator/...``, ``x/other/...``)."""
    parts = name.split("/")
    if parts[0] in DETAIL_TOPS:
        return f"{DETAIL}/{name}"
    if parts[0] != "test" or len(parts) < 3:
        return name
    rest = parts[3:] if parts[2] == "file" and len(parts) > 3 else parts[2:]
    if len(rest) > 1:
        return f"{DETAIL}/{name}" if rest[0] in DETAIL_GROUPS else name
    return name if rest[0] in HEADLINE else f"{DETAIL}/{detail_kind(rest[0])}/{name}"


def result_key(key: str) -> str:
    """The result name of an MLflow key (the inverse of :func:`logged_key`); the keys of runs
    logged before details moved under :data:`DETAIL` are their names already."""
    if not key.startswith(f"{DETAIL}/"):
        return key
    rest = key[len(DETAIL) + 1:]
    kind, _, inner = rest.partition("/")
    return inner if kind in DETAIL_KINDS and inner.startswith("test/") else rest


def read_results(run: Any) -> Any:
    """``run`` with its metrics under their result names (in place; old and new runs read
    alike), as every reader of finished runs expects them."""
    metrics = run.data.metrics
    renamed = {result_key(k): v for k, v in metrics.items()}
    metrics.clear()
    metrics.update(renamed)
    return run


def real_names(runs: Any) -> dict[str, str]:
    """Every run's :data:`NAMES_TAG` together: key -> the name it was made from."""
    out: dict[str, str] = {}
    for run in runs:
        try:
            out.update(json.loads(run.data.tags.get(NAMES_TAG) or "{}"))
        except (TypeError, ValueError):
            continue
    return out


def is_local_sqlite(uri: str) -> bool:
    return uri.startswith("sqlite:///")


def sqlite_path(uri: str) -> Path:
    """The database file of a ``sqlite:///`` URI."""
    return Path(uri[len("sqlite:///"):].split("?", 1)[0])


def params_from_config(resolved: Mapping[str, Any]) -> dict[str, str]:
    """Params for MLflow: the resolved config's non-volatile keys (``conf/identity.yaml``)."""
    params = {}
    for key, value in identity.param_items(resolved).items():
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
    def get_or_create() -> str:
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            mark_model_training(client, experiment)
            return experiment.experiment_id
        try:
            return client.create_experiment(name, artifact_location=artifact_location,
                                            tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except MlflowException as err:  # a parallel job created it first (server: no lock)
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return client.get_experiment_by_name(name).experiment_id

    if lock_dir is None:
        return retry(get_or_create, "create experiment")
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / "mlflow.db.lock")):
        fresh = is_local_sqlite(uri) and not sqlite_path(uri).exists()
        experiment_id = retry(get_or_create, "create experiment")
        if fresh:
            retry(lambda: hide_default_experiment(uri), "hide the Default experiment")
        return experiment_id


def mark_model_training(client: Any, experiment: Any) -> None:
    """Tag an experiment made before the kind tag (or by another tool) as model training,
    unless its kind was set already."""
    if EXPERIMENT_KIND_TAG not in (experiment.tags or {}):
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)


def hide_default_experiment(uri: str) -> None:
    """A new sqlite store comes with an empty ``Default`` experiment whose artifact location
    is a ``./mlruns/0`` that never exists: delete it (while it has no runs), so the UI shows
    only the experiments that runs went to."""
    client = MlflowClient(tracking_uri=uri)
    default = client.get_experiment("0")
    if default.lifecycle_stage == "active" and not client.search_runs(["0"], max_results=1):
        client.delete_experiment("0")


@dataclass(frozen=True)
class Store:
    """Where a job's runs go: tracking URI, artifact location and the experiment's id."""

    uri: str
    artifact_location: str | None
    experiment_id: str


def open_store(cfg: LoggerConfig, outputs: Path) -> Store:
    """The store for ``cfg`` (default: :func:`default_tracking_uri`; a local sqlite store
    keeps artifacts beside it in ``mlartifacts/``), with its experiment created if needed."""
    prepare_store()
    uri = cfg.tracking_uri or default_tracking_uri(outputs)
    folder = sqlite_path(uri).resolve().parent if is_local_sqlite(uri) else None
    artifact_location = cfg.artifact_location or (
        (folder / "mlartifacts").as_uri() if folder is not None else None)
    experiment_id = ensure_experiment(uri, cfg.experiment_name, artifact_location, folder)
    return Store(uri, artifact_location, experiment_id)


def set_terminated(uri: str, run_id: str, status: str) -> None:
    """Mark a run FINISHED / FAILED / KILLED (best effort: never raises)."""
    try:
        retry(lambda: MlflowClient(tracking_uri=uri).set_terminated(run_id, status),
              "set run status")
    except Exception as err:  # noqa: BLE001
        log.error("could not mark MLflow run %s as %s: %s", run_id, status, err)


MAX_SWEEPS_TAG = 4000  # characters kept of sweep_ids (the oldest ids go first)


def join_sweep(client: Any, run_id: str, sweep_id: str) -> None:
    """Make run ``run_id`` part of sweep ``sweep_id``: ``sweep_id`` becomes the sweep that
    last ran or reported it, and ``sweep_ids`` lists every sweep that did (comma-separated),
    so a resumed or re-run sweep finds all of its runs and the first sweep keeps its own."""
    tags = retry(lambda: client.get_run(run_id).data.tags, "read tags")
    ids = [s for s in (tags.get(SWEEPS_TAG) or tags.get(SWEEP_TAG) or "").split(",") if s]
    if sweep_id in ids and tags.get(SWEEP_TAG) == sweep_id:
        return
    ids = [s for s in ids if s != sweep_id] + [sweep_id]
    while len(",".join(ids)) > MAX_SWEEPS_TAG and len(ids) > 1:
        ids.pop(0)
    from mlflow.entities import RunTag

    tags_now = [RunTag(SWEEP_TAG, sweep_id), RunTag(SWEEPS_TAG, ",".join(ids))]
    retry(lambda: client.log_batch(run_id, tags=tags_now), "set sweep tags")


def join_sweep_at(uri: str, run_id: str, sweep_id: str) -> None:
    """:func:`join_sweep` through a client for ``uri`` (one per process: a re-run sweep pays
    for importing MLflow and opening its store once); best effort (a warning, never an
    error: the run itself is fine)."""
    from mlflow.tracking import MlflowClient

    prepare_store()
    try:
        if uri not in _CLIENTS:
            _CLIENTS[uri] = MlflowClient(tracking_uri=uri)
        join_sweep(_CLIENTS[uri], run_id, sweep_id)
    except Exception as err:  # noqa: BLE001
        log.warning("could not tag MLflow run %s with sweep %s: %s", run_id, sweep_id, err)


_CLIENTS: dict[str, Any] = {}


def prepare_store() -> None:
    """sqlite stores shared by parallel jobs: do not pool connections."""
    os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")


def log_to_run(files: list[Path], run_id: str | None, uri: str, folder: str,
               tags: Mapping[str, str] | None = None) -> str | None:
    """Log ``files`` under ``folder/`` (and set ``tags``) in MLflow run ``run_id`` when the
    store has it; the run id, or None (and why, as a message) when it could not."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if not run_id:
        log.info("the model names no MLflow run; files not logged")
        return None
    if is_local_sqlite(uri) and not sqlite_path(uri).is_file():
        log.info("no MLflow store at %s; files not logged (--tracking-uri names another)", uri)
        return None
    prepare_store()
    client = MlflowClient(tracking_uri=uri)
    try:
        retry(lambda: client.get_run(run_id), "read run")
    except MlflowException:
        log.info("MLflow run %s is not in %s; files not logged", run_id, uri)
        return None
    for path in files:
        retry(lambda f=path: client.log_artifact(run_id, str(f), folder),
              f"log {folder} artifact")
    for key, value in (tags or {}).items():
        retry(lambda k=key, v=value: client.set_tag(run_id, k, v), "set tag")
    log.info("logged %d files to MLflow run %s under %s/", len(files), run_id, folder)
    return run_id


SKIPPED_TAG = "skipped"  # a job with nothing it could run: the reason (the report lists it)


def record_skipped(resolved: Mapping[str, Any], tags: dict[str, str]) -> str:
    """A FINISHED MLflow run without metrics standing for a sweep job that was skipped
    (``tags`` holds :data:`SKIPPED_TAG` with the reason, and what was skipped), so that the
    report lists it. The same job skipped again updates its record (its sweeps) instead of
    adding one. Returns the run id."""
    logger = build(LoggerConfig, resolved["logger"], "logger", ignore=("tags",))
    store = open_store(logger, Path(resolved["paths"]["root"]).expanduser())
    client = MlflowClient(tracking_uri=store.uri)
    user_tags = {str(k): str(v) for k, v in (resolved["logger"].get("tags") or {}).items()}
    sweep = user_tags.pop(SWEEP_TAG, None)
    identity = json.dumps({k: v for k, v in resolved.items()
                           if k not in ("logger", "paths", "hydra")}, sort_keys=True, default=str)
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    found = retry(lambda: client.search_runs(
        [store.experiment_id], filter_string=f"tags.skipped_key = '{key}'", max_results=1),
        "find a skipped job's record")
    if found:
        run_id = found[0].info.run_id
    else:
        run = retry(lambda: client.create_run(
            store.experiment_id, run_name=f"skipped-{key[:8]}",
            tags={**user_tags, **tags, "skipped_key": key}), "record a skipped job")
        run_id = run.info.run_id
        retry(lambda: client.set_terminated(run_id, "FINISHED"), "finish a skipped job")
    if sweep:
        join_sweep(client, run_id, sweep)
    return run_id


CHECK_SECONDS = 5.0  # how long a tracking server may take to answer the first request
CREDENTIALS = "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)"


def check_store(uri: str, timeout: float = CHECK_SECONDS) -> None:
    """Before any heavy work: an ``http(s)://`` tracking server answers within ``timeout``
    seconds and accepts the credentials MLflow reads (``MLFLOW_TRACKING_USERNAME`` /
    ``_PASSWORD``, ``MLFLOW_TRACKING_TOKEN``), else one :class:`StoreError` line naming the
    URI (and, for 401/403, the variables to set) instead of minutes of MLflow's retries.
    Other stores (sqlite, files) need no check."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests
    from mlflow.utils.credentials import get_default_host_creds

    creds = get_default_host_creds(uri)
    headers = {"Authorization": f"Bearer {creds.token}"} if creds.token else {}
    auth = (creds.username, creds.password) if creds.username and creds.password else None
    verify: bool | str = creds.server_cert_path or not creds.ignore_tls_verification
    try:
        answer = requests.get(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search",
                              params={"max_results": 1}, headers=headers, auth=auth,
                              verify=verify, cert=creds.client_cert_path, timeout=timeout)
    except requests.exceptions.RequestException as err:
        reason = "no answer" if isinstance(err, requests.exceptions.Timeout) else \
            "connection refused" if isinstance(err, requests.exceptions.ConnectionError) else \
            type(err).__name__
        raise StoreError(f"the MLflow tracking server {uri} cannot be reached ({reason} within "
                         f"{timeout:g} s): start it, or point logger.tracking_uri / "
                         "--tracking-uri / MLFLOW_TRACKING_URI at a running one") from None
    if answer.status_code == 401:
        given = "the credentials given were refused" if auth or headers else "no credentials"
        raise StoreError(f"the MLflow tracking server {uri} needs a login ({given}, HTTP 401): "
                         f"set {CREDENTIALS}")
    if answer.status_code == 403:
        raise StoreError(f"the MLflow tracking server {uri} refused user "
                         f"{creds.username or '?'} (HTTP 403): ask its admin for access, or "
                         f"set {CREDENTIALS} to another user")
    if answer.status_code >= 400:
        raise StoreError(f"the MLflow tracking server {uri} answered HTTP {answer.status_code} "
                         f"to a first request: {answer.text[:200].strip()}")
