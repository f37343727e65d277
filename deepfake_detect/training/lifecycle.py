"""One job's MLflow run from start to end: opened or resumed, described (params, tags),
filled (metrics, artifacts) and closed with a status that says what happened.

A resumed job continues its own run (the id is kept in the run directory); params already
logged by a killed attempt are not logged again (MLflow params never change). Whatever stops
the job, the run does not stay RUNNING: Ctrl+C / SIGTERM mark it KILLED, an exception marks
it FAILED with the error as a tag and the traceback as ``traceback.txt``. FINISHED is set
before ``result.json`` is written, so a job killed in between re-tests into the same run.
"""

from __future__ import annotations

import gc
import json
import logging
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from deepfake_detect import atomic, tracking
from deepfake_detect.runs import RunDir
from deepfake_detect.scaling import device_name
from deepfake_detect.training.checkpoints import ResumableMLFlowLogger
from deepfake_detect.training.plan import Plan

log = logging.getLogger(__name__)


def run_label(p: Plan) -> str:
    """The MLflow run name: what tells the run from the others of its study, e.g.
    ``base-fold2-seed0`` (k-fold), ``logo-MusicGen`` (leave-one-generator-out; the training
    distortion and seed when not base and 0), ``combined-seed3``. The run folder keeps the
    config's signature; the name need not be unique."""
    held, distortion, seed = p.tags.get("holdout_generator"), p.distortion.name, p.seed
    if held:
        return "-".join(["logo", held, *([distortion] if distortion != "base" else []),
                         *([f"seed{seed}"] if seed else [])])
    fold = [f"fold{p.tags['fold']}"] if "fold" in p.tags else []
    return "-".join([distortion, *fold, f"seed{seed}"])


class TrackedRun:
    """The MLflow run of one training job (rank 0 only)."""

    def __init__(self, plan: Plan, run_dir: RunDir):
        self.plan, self.run_dir = plan, run_dir
        self.store = tracking.open_store(plan.logger, plan.outputs)
        self.uri = self.store.uri
        self.logger: ResumableMLFlowLogger | None = None
        self.run_id = ""
        self.resumed = False
        self.step = 0  # the training step the run reached (test metrics are logged there)

    def start(self) -> ResumableMLFlowLogger:
        """Open the run: the job's own run again when it was interrupted (and is still in
        the store), else a new one."""
        p = self.plan
        run_id = self.run_dir.live_run_id(self.uri) if p.resume else None
        self.resumed = run_id is not None
        self.logger = ResumableMLFlowLogger(
            experiment_name=p.logger.experiment_name, tracking_uri=self.uri,
            run_name=p.logger.run_name or run_label(p), run_id=run_id,
            artifact_location=self.store.artifact_location)
        self.run_id = tracking.retry(lambda: self.logger.run_id, "start MLflow run")
        self.run_dir.save_run_id(self.run_id)
        return self.logger

    @property
    def client(self) -> Any:
        return self.logger.experiment

    @contextmanager
    def active(self) -> Iterator[TrackedRun]:
        """The block that fills the run; its end sets KILLED or FAILED if it did not finish."""
        try:
            yield self
        except (KeyboardInterrupt, SystemExit) as err:
            # Lightning turns Ctrl+C during fit/test into sys.exit(1). Ctrl+C inside an MLflow
            # call skips its rollback: the sqlite connection, kept alive by the traceback,
            # holds the database lock until those frames let go of it.
            chained: BaseException | None = err
            while chained is not None:
                traceback.clear_frames(chained.__traceback__)
                chained = chained.__context__
            gc.collect()
            tracking.set_terminated(self.uri, self.run_id, "KILLED")
            raise
        except BaseException as err:
            full = atomic.disk_full(err, fallback=self._store_path())  # one line, whatever filled
            self._record_failure(err, full)
            tracking.set_terminated(self.uri, self.run_id, "FAILED")
            if full is not None and full is not err:
                raise full from err
            raise

    def describe(self, weights: str, checkpoint: Path | None) -> None:
        """Params (those not logged yet) and tags; on resume, say where it continues."""
        p, client, run_id = self.plan, self.client, self.run_id
        params = tracking.params_from_config(p.resolved)
        if self.resumed:
            logged = tracking.retry(lambda: client.get_run(run_id).data.params, "read params")
            params = {k: v for k, v in params.items() if k not in logged}
        if params:
            tracking.retry(lambda: self.logger.log_hyperparams(params), "log params")
        sweep = p.tags.get(tracking.SWEEP_TAG)
        if self.resumed:  # killed (still RUNNING), failed or interrupted before
            tracking.retry(lambda: client.update_run(run_id, status="RUNNING"), "set status")
            log.info("resuming from %s into MLflow run %s",
                     checkpoint or "scratch (no checkpoint yet)", run_id)
            self.set_tags({"resumed_from": str(checkpoint or "")})
        else:
            self.set_tags({"config_hash": self.run_dir.path.name.rsplit("-", 1)[-1],
                           "git_commit": tracking.git_commit(), "weights": weights,
                           "run_dir": str(self.run_dir.path),
                           "train_distortion": p.distortion.name, "task": p.task,
                           "precision": str(p.trainer.get("precision")),
                           "device": device_name(p.trainer),
                           **{k: v for k, v in p.tags.items() if k != tracking.SWEEP_TAG}})
        if sweep:  # the sweep that runs it now (a resumed job: the sweep that finishes it)
            tracking.join_sweep(client, run_id, sweep)

    def log_dataset(self, name: str, digest: str, source: str, profile: dict[str, Any]) -> None:
        """The data source as an MLflow dataset input (the runs table's Dataset column and
        filter): ``name``, ``digest`` (the listing's fingerprint), ``profile`` (numbers of
        files and clips); logged once per run (a resumed run has it already)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        client, run_id = self.client, self.run_id
        inputs = tracking.retry(lambda: client.get_run(run_id).inputs, "read inputs")
        if any(d.dataset.digest == digest for d in (inputs.dataset_inputs if inputs else [])):
            return
        dataset = Dataset(name=name, digest=digest, source_type="local",
                          source=json.dumps({"uri": source}), profile=json.dumps(profile))
        tagged = DatasetInput(dataset, [InputTag(MLFLOW_DATASET_CONTEXT, "train")])
        tracking.retry(lambda: client.log_inputs(run_id, datasets=[tagged]), "log dataset")

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            tracking.retry(lambda k=key, v=value: self.client.set_tag(self.run_id, k, v),
                           "set tag")

    def log_files(self, paths: Iterable[Path], folder: str | None = None) -> None:
        for path in paths:
            try:
                tracking.retry(lambda f=path: self.client.log_artifact(self.run_id, str(f),
                                                                       folder), "log artifact")
            except Exception as err:
                where = self._artifact_dir() or self._store_path()
                full = atomic.disk_full(err, where, Path(path).stat().st_size)
                if full is None:
                    raise
                raise full from err

    def _artifact_dir(self) -> str | None:
        """The run's local artifact folder (None for a remote artifact store)."""
        location = self.store.artifact_location or ""
        if location.startswith("file://"):
            return str(Path(urlparse(location).path) / self.run_id / "artifacts")
        return location if location and "://" not in location else None

    def _store_path(self) -> str:
        """What fills up when MLflow writes: the sqlite file, else the tracking URI."""
        if tracking.is_local_sqlite(self.uri):
            return str(tracking.sqlite_path(self.uri))
        return self.uri

    def log_params(self, params: dict[str, Any]) -> None:
        """Params not logged yet (a re-tested run logs the same values again: skipped)."""
        logged = tracking.retry(lambda: self.client.get_run(self.run_id).data.params,
                                "read params")
        fresh = {k: str(v) for k, v in params.items() if k not in logged}
        if fresh:
            tracking.retry(lambda: self.logger.log_hyperparams(fresh), "log params")

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        """The finite ``values`` under their MLflow keys (:func:`tracking.logged_key`)."""
        finite = {tracking.logged_key(k): float(v) for k, v in values.items()
                  if isinstance(v, int | float) and v == v}
        tracking.retry(lambda: self.logger.log_metrics(finite, step=step), "log metrics")

    def finish(self, result: dict[str, Any]) -> None:
        """FINISHED, then the stored result (its presence means the job is done)."""
        tracking.set_terminated(self.uri, self.run_id, "FINISHED")
        self.run_dir.save_result(result)

    def _record_failure(self, err: BaseException, shown: BaseException | None = None) -> None:
        """The error (or what the user is ``shown`` for it) as a tag and the traceback as an
        artifact (best effort: the disk may be full)."""
        text = "".join(traceback.format_exception(err))
        said = shown or err
        try:
            self.set_tags({"error": f"{type(said).__name__}: {said}"[:500]})
            path = self.run_dir.artifacts / "traceback.txt"
            atomic.write_text(path, text)
            self.log_files([path])
        except Exception as problem:  # noqa: BLE001 - the original error matters more
            log.debug("could not record the failure in MLflow: %s", problem)
