"""Iterative training, as in the study: one network fine-tuned stage by stage through the
training distortions of ``iterative.stages`` (``experiment=iterative``: base → pitch → tempo →
combined), each stage starting from the previous stage's weights and tested on every test
distortion, so forgetting is visible.

Each stage is an ordinary training run (:func:`deepfake_detect.training.run.train`: its own
run directory, resumable) nested under one MLflow parent run, which also carries
``test/<distortion>/<metric>`` with step = stage and the forgetting matrix.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from deepfake_detect import atomic, tracking
from deepfake_detect.config import build, compose_option, require, to_plain
from deepfake_detect.data.presets import distortion_preset
from deepfake_detect.reporting.report import Grid, heatmap, markdown, ordered
from deepfake_detect.runs import RunDir, signature
from deepfake_detect.scaling import check_iterative_strategy
from deepfake_detect.tracking import LoggerConfig
from deepfake_detect.training.plan import if_running, plan
from deepfake_detect.training.run import train

log = logging.getLogger(__name__)
METRICS = ("accuracy", "f1", "eer")


def stages_of(resolved: dict[str, Any]) -> list[str]:
    """``iterative.stages``, checked: a non-empty list of distortion presets."""
    stages = (resolved.get("iterative") or {}).get("stages")
    require(isinstance(stages, list) and len(stages) > 0, "iterative.stages",
            f"must be a non-empty list of distortions, got {stages!r}")
    for stage in stages:  # unknown names fail here, before any training
        distortion_preset(str(stage), "iterative.stages")
    return [str(s) for s in stages]


def is_iterative(resolved: dict[str, Any]) -> bool:
    """Whether the config asks for iterative training (``iterative.stages`` set)."""
    return bool((resolved.get("iterative") or {}).get("stages"))


def train_iterative(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """Run every stage; returns per-stage results and the forgetting matrix."""
    resolved = to_plain(cfg)
    stages = stages_of(resolved)
    check_iterative_strategy(resolved["trainer"])
    plan(stage_config(resolved, stages[0], None, {}))  # validates everything else
    group = hashlib.sha256(f"{signature(resolved)}:{','.join(stages)}".encode()).hexdigest()[:12]
    outputs = Path(resolved["paths"]["root"]).expanduser().resolve()
    with RunDir(outputs / "runs" / f"iterative-{group}").hold(
            if_running(resolved.get("if_running", "auto"))):  # one process per parent run
        return run_stages(resolved, stages, group)


def run_stages(resolved: dict[str, Any], stages: list[str], group: str) -> dict[str, Any]:
    """Every stage under the parent run (the caller holds the parent run's lock)."""
    parent = ParentRun(resolved, group, stages)
    results: dict[str, dict[str, Any]] = {}
    previous = resolved["model"].get("init_from")
    for index, stage in enumerate(stages, start=1):
        tags = {"mlflow.parentRunId": parent.run_id, "iterative_group": group,
                "iterative_stage": f"{index}:{stage}"}
        stage_cfg = stage_config(resolved, stage, previous, tags)
        stage_cfg["logger"]["run_name"] = f"iterative-{group[:6]}-stage{index}-{stage}"
        result = results[f"{index}:{stage}"] = train(stage_cfg)
        previous = str(Path(result["run_dir"]) / "model.ckpt")
        parent.log_stage(result, index)
    return parent.finish(results)


def stage_config(resolved: dict[str, Any], stage: str, init_from: str | None,
                 tags: dict[str, str]) -> dict[str, Any]:
    """One stage's training config: the stage's distortion, initialised from ``init_from``."""
    cfg = copy.deepcopy(resolved)
    cfg["iterative"] = {"stages": None}
    cfg["distortion"] = compose_option("distortion", stage, "iterative.stages")
    cfg["model"]["init_from"] = init_from
    cfg["logger"]["tags"] = {**(cfg["logger"].get("tags") or {}), **tags}
    return cfg


class ParentRun:
    """The MLflow run above the stages, and its run directory (resumable like a stage)."""

    def __init__(self, resolved: dict[str, Any], group: str, stages: list[str]):
        outputs = Path(resolved["paths"]["root"]).expanduser().resolve()
        self.dir = RunDir(outputs / "runs" / f"iterative-{group}").create()
        logger = build(LoggerConfig, resolved["logger"], "logger", ignore=("tags",))
        store = tracking.open_store(logger, outputs)
        self.uri = store.uri
        self.client = MlflowClient(tracking_uri=self.uri)
        existing = self.dir.run_id()
        if existing:
            self.client.update_run(existing, status="RUNNING")
            self.run_id = existing
            return
        tags = {"iterative_group": group, "iterative": "parent", "stages": " -> ".join(stages),
                **{str(k): str(v) for k, v in (resolved["logger"].get("tags") or {}).items()}}
        run = tracking.retry(lambda: self.client.create_run(
            store.experiment_id, run_name=f"iterative-{group[:6]}", tags=tags), "create parent run")
        self.run_id = run.info.run_id
        self.dir.save_run_id(self.run_id)
        self.client.log_param(self.run_id, "iterative.stages", ",".join(stages))

    def log_stage(self, result: dict[str, Any], step: int) -> None:
        """A stage's test metrics, at step = stage number."""
        metrics = {k: v for k, v in result.items()
                   if k.startswith("test/") and isinstance(v, float) and v == v}
        now = int(time.time() * 1000)
        batch = [Metric(tracking.logged_key(k), v, now, step) for k, v in metrics.items()]
        tracking.retry(lambda: self.client.log_batch(self.run_id, metrics=batch), "log stage")

    def finish(self, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The forgetting matrix (rows: stage reached, columns: test distortion)."""
        last = next(reversed(results.values()))
        tests = ordered({k.split("/")[1] for k in last if k.startswith("test/")},
                        [k.split("/")[1] for k in last if k.startswith("test/")])
        grid = Grid(rows=list(results), cols=tests, n_runs=len(results))
        for metric in METRICS:
            grid.values[metric] = {(row, col): [results[row][f"test/{col}/{metric}"]]
                                   for row in results for col in tests
                                   if f"test/{col}/{metric}" in results[row]}
        title = "iterative training: rows = stage reached, columns = test distortion"
        text = markdown(grid, METRICS, title)
        md = atomic.write_text(self.dir.artifacts / "iterative.md", text)
        png = heatmap(grid, METRICS, title, self.dir.artifacts / "iterative.png")
        for path in (md, png):
            tracking.retry(lambda f=path: self.client.log_artifact(self.run_id, str(f)),
                           "log artifact")
        tracking.set_terminated(self.uri, self.run_id, "FINISHED")
        log.info("\n%s", text)
        return {"parent_run_id": self.run_id, "stages": results, "report": str(md),
                "heatmap": str(png)}
