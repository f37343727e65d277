"""Iterative training, as in the study: one network fine-tuned stage by stage through
distortions (default base → pitch → tempo → combined), each stage starting from the previous
stage's weights and tested on every test distortion, so forgetting is visible.

Each stage is an ordinary ``train`` run (own run directory, resumable) nested under one
MLflow parent run, which also carries ``test/<distortion>/<metric>`` with step = stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from deepfake_detect import tracking
from deepfake_detect.config import require, to_plain
from deepfake_detect.report import Grid, heatmap, markdown, ordered
from deepfake_detect.runs import RunDir, signature


def stages_of(resolved: dict[str, Any]) -> list[str]:
    stages = (resolved.get("iterative") or {}).get("stages")
    require(isinstance(stages, list) and len(stages) > 0, "iterative.stages",
            f"must be a non-empty list of distortions, got {stages!r}")
    return [str(s) for s in stages]


def train_iterative(cfg: DictConfig) -> dict[str, Any]:
    """Run every stage; returns per-stage results and the forgetting matrix."""
    from deepfake_detect.train import CONF_DIR, distortion_preset, plan, train

    resolved = to_plain(cfg)
    stages = stages_of(resolved)
    for stage in stages:
        distortion_preset(stage)  # unknown names fail here, before any training
    base = OmegaConf.create(resolved)
    base.pop("iterative")
    first = plan(_stage_cfg(base, stages[0], CONF_DIR, None, {}))  # validates the rest
    group = signature(resolved)
    parent_dir = RunDir(first.outputs / "runs" / f"iterative-{group}").create()
    store = tracking.open_store(first.logger, first.outputs)
    uri = store.uri
    parent_id = _parent_run(store, first, parent_dir, stages, group)

    results: dict[str, dict[str, Any]] = {}
    previous = resolved["model"].get("init_from")
    tests: list[str] = []
    for index, stage in enumerate(stages, start=1):
        tags = {"mlflow.parentRunId": parent_id, "iterative_group": group,
                "iterative_stage": f"{index}:{stage}"}
        stage_cfg = _stage_cfg(base, stage, CONF_DIR, previous, tags)
        stage_cfg.logger.run_name = f"iterative-{group[:6]}-stage{index}-{stage}"
        result = train(stage_cfg)
        results[f"{index}:{stage}"] = result
        previous = str(Path(result["run_dir"]) / "model.ckpt")
        tests = ordered({k.split("/")[1] for k in result if k.startswith("test/")})
        metrics = {k: v for k, v in result.items()
                   if k.startswith("test/") and isinstance(v, float) and v == v}
        tracking.retry(lambda m=metrics, s=index: _log(uri, parent_id, m, s), "log stage")

    grid = Grid(rows=list(results), cols=tests, n_runs=len(results))
    for metric in ("accuracy", "f1", "eer"):
        grid.values[metric] = {(row, col): [results[row][f"test/{col}/{metric}"]]
                               for row in results for col in tests
                               if f"test/{col}/{metric}" in results[row]}
    title = "iterative training: rows = stage reached, columns = test distortion"
    md = parent_dir.artifacts / "iterative.md"
    md.write_text(markdown(grid, ("accuracy", "f1", "eer"), title))
    png = heatmap(grid, ("accuracy", "f1", "eer"), title, parent_dir.artifacts / "iterative.png")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    for path in (md, png):
        tracking.retry(lambda f=path: client.log_artifact(parent_id, str(f)), "log artifact")
    tracking.set_terminated(uri, parent_id, "FINISHED")
    print(md.read_text())
    return {"parent_run_id": parent_id, "stages": results, "report": str(md),
            "heatmap": str(png)}


def _stage_cfg(base: DictConfig, stage: str, conf_dir: Path, init_from: str | None,
               tags: dict[str, str]) -> DictConfig:
    cfg = OmegaConf.create(to_plain(base))
    cfg.distortion = OmegaConf.load(conf_dir / "distortion" / f"{stage}.yaml")
    cfg.model.init_from = init_from
    cfg.logger.tags = {**(to_plain(cfg.logger.get("tags")) or {}), **tags}
    return cfg


def _parent_run(store: tracking.Store, first: Any, parent_dir: RunDir, stages: list[str],
                group: str) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store.uri)
    experiment_id = store.experiment_id
    existing = parent_dir.run_id()
    if existing:
        client.update_run(existing, status="RUNNING")
        return existing
    run = tracking.retry(lambda: client.create_run(
        experiment_id, run_name=f"iterative-{group[:6]}",
        tags={"iterative_group": group, "iterative": "parent",
              "stages": " -> ".join(stages), **first.tags}), "create parent run")
    parent_dir.save_run_id(run.info.run_id)
    client.log_param(run.info.run_id, "iterative.stages", ",".join(stages))
    return run.info.run_id


def _log(uri: str, run_id: str, metrics: dict[str, float], step: int) -> None:
    import time

    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    now = int(time.time() * 1000)
    MlflowClient(tracking_uri=uri).log_batch(
        run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])
