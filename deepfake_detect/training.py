"""Training one configuration: ``train(cfg) -> metrics``.

The sequence: plan (validate everything), prepare the data and the model, fit (resuming from
the run directory's checkpoints), choose the decision threshold on validation, test on every
test distortion and package the model, explain (optional). One MLflow run records it all
(:class:`~deepfake_detect.lifecycle.TrackedRun`); a finished config reports its stored
results instead of running again.
"""

from __future__ import annotations

import csv
import io as text_io
import logging
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig

from deepfake_detect import io, scaling
from deepfake_detect.callbacks import EpochBar, EpochSummary
from deepfake_detect.checkpoints import AtomicCheckpointIO, EpochCheckpoint, resumable_checkpoint
from deepfake_detect.config import to_plain
from deepfake_detect.data.datamodule import AudioDataModule
from deepfake_detect.evaluate import choose_threshold, evaluate
from deepfake_detect.explain import explain_datamodule
from deepfake_detect.lifecycle import TrackedRun
from deepfake_detect.models.bundle import save_bundle
from deepfake_detect.models.detector import Detector
from deepfake_detect.models.frontend import FrontEnd
from deepfake_detect.models.refs import init_from
from deepfake_detect.models.resnet import load_backbone_weights
from deepfake_detect.plan import Plan, plan
from deepfake_detect.robustness import run_curves, trainer_scorer
from deepfake_detect.runs import RunDir
from deepfake_detect.summary import finished_run, results_table

log = logging.getLogger(__name__)


def train(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """Train and test one configuration; return its metrics (``test/<distortion>/<metric>``),
    or the stored ones when this config already finished."""
    resolved = to_plain(cfg)
    done = finished_run(resolved)
    if done is not None:
        if (resolved.get("eval") or {}).get("curves"):
            log.info("eval.curves is not part of a run's identity and this run is finished: "
                     "use deepfake-detect-robustness --model %s", done.get("run_dir"))
        return done
    p = plan(resolved)
    if not p.resume and p.run_dir.path.exists() and scaling.is_rank_zero():
        shutil.rmtree(p.run_dir.path)
    return run(p)


def run(p: Plan) -> dict[str, Any]:
    """Run a validated plan (see the module docstring)."""
    run_dir = p.run_dir.create()
    pl.seed_everything(p.seed, workers=True, verbose=False)
    dm = prepare_data(p)
    model = build_model(p, dm)
    checkpoint = resumable_checkpoint(run_dir.checkpoints) if p.resume else None
    if not scaling.is_rank_zero():  # an extra DDP process only trains (rank 0 owns the run)
        fit_trainer(p, run_dir, logger=False).fit(model, datamodule=dm, ckpt_path=checkpoint)
        return {"run_dir": str(run_dir.path), "rank": os.environ.get("LOCAL_RANK")}
    tracked = TrackedRun(p, run_dir)
    weights = load_weights(p, model, tracked.uri)
    tracked.start()
    with tracked.active():
        tracked.describe(weights, checkpoint)
        trainer = fit(p, run_dir, model, dm, tracked, checkpoint)
        tester = trainer if trainer.world_size == 1 else test_trainer(p, run_dir)
        threshold, rule = choose_threshold(tester, model, dm, p.eval.threshold)
        result = test_and_package(p, tester, model, dm, tracked, (threshold, rule))
        robustness(p, tester, model, dm, tracked, threshold)
        explain(p, model, dm, tracked, threshold)
        tracked.finish(result)
    log.info("results (window level):\n%s", results_table(result, dm.test_names))
    log.info("MLflow run %s in experiment '%s' at %s", tracked.run_id,
             p.logger.experiment_name, tracked.uri)
    return result


def prepare_data(p: Plan) -> AudioDataModule:
    """Clips, splits and cached rows of every set."""
    dm = p.datamodule
    dm.prepare()
    log.info("data: %s", dm.describe())
    return dm


def build_model(p: Plan, dm: AudioDataModule) -> Detector:
    """The detector, its front end normalised with the training rows' statistics."""
    mean, std = FrontEnd(p.features, dm.store).moments(dm.entries["train"].features)
    model = Detector(model=asdict(p.model), feature_mean=mean, feature_std=std,
                     test_names=tuple(dm.test_names), features=p.features.as_dict(),
                     classes=dm.classes, store=dm.store)
    if p.trainer.get("channels_last"):  # the conv weights set the layout
        model = model.to(memory_format=torch.channels_last)
    return model


def load_weights(p: Plan, model: Detector, tracking_uri: str) -> str:
    """Backbone weights (``model.weights``) and ``model.init_from``; what was used."""
    used = "none"
    if p.weights_path is not None:
        used = load_backbone_weights(model.net, p.weights_path)
    if p.model.init_from:
        used = "init_from:" + init_from(model, p.model.init_from, tracking_uri)
    return used


def fit(p: Plan, run_dir: RunDir, model: Detector, dm: AudioDataModule, tracked: TrackedRun,
        checkpoint: Path | None) -> pl.Trainer:
    """Train, resuming from ``checkpoint`` when there is one."""
    trainer = fit_trainer(p, run_dir, tracked.logger)
    trainer.fit(model, datamodule=dm, ckpt_path=checkpoint)
    tracked.step = trainer.global_step  # the step test metrics are logged at
    return trainer


def fit_trainer(p: Plan, run_dir: RunDir, logger: Any) -> pl.Trainer:
    """The training Trainer, the same in every DDP process (their callbacks synchronise)."""
    checkpointing = EpochCheckpoint(dirpath=run_dir.checkpoints, filename="epoch{epoch:03d}",
                                    auto_insert_metric_name=False, save_last=True,
                                    save_top_k=2, monitor="step", mode="max")
    callbacks = [checkpointing, EpochSummary()]
    if p.trainer.get("enable_progress_bar", True):
        callbacks.append(EpochBar())
    return pl.Trainer(**scaling.job_devices(p.trainer), logger=logger, callbacks=callbacks,
                      default_root_dir=run_dir.path, plugins=[AtomicCheckpointIO()])


def test_trainer(p: Plan, run_dir: RunDir) -> pl.Trainer:
    """A one-device Trainer for rank 0 after distributed training: under DDP every process
    would test (and pick the threshold on) only its own shard of each set."""
    return pl.Trainer(**{**p.trainer, "strategy": "auto", "devices": 1, "num_nodes": 1,
                         "logger": False, "enable_checkpointing": False},
                      default_root_dir=run_dir.path)


def test_and_package(p: Plan, tester: pl.Trainer, model: Detector, dm: AudioDataModule,
                     tracked: TrackedRun, threshold: tuple[float, str]) -> dict[str, Any]:
    """Test on every test distortion, write the bundle, log metrics and files; the result."""
    run_dir = tracked.run_dir
    flat, files = evaluate(tester, model, dm, run_dir.artifacts, threshold[0])
    flat["threshold"] = threshold[0]
    bundle = save_bundle(run_dir.path / "model.ckpt", model, threshold[0], threshold[1],
                         {"train_distortion": p.distortion.name, "run_id": tracked.run_id,
                          "task": dm.task, "classes": list(dm.classes)})
    tracked.log_files([bundle], "model")
    tracked.log_metrics(flat, step=tracked.step)
    tracked.log_files([*files, *write_skipped(dm, run_dir.artifacts)])
    return {"run_id": tracked.run_id, "run_dir": str(run_dir.path), "tracking_uri": tracked.uri,
            "data": dm.describe(), **flat}


def robustness(p: Plan, tester: pl.Trainer, model: Detector, dm: AudioDataModule,
               tracked: TrackedRun, threshold: float) -> None:
    """Robustness curves on the test split (``eval.curves``), under ``robustness/``."""
    if p.curves:
        score = trainer_scorer(tester, model, dm.loader.batch_size)
        meta = {"run_id": tracked.run_id, "train_distortion": p.distortion.name,
                "seed": p.seed}
        files = run_curves(dm, p.curves, score, threshold,
                           tracked.run_dir.artifacts / "robustness", meta)
        tracked.log_files(files, "robustness")


def explain(p: Plan, model: Detector, dm: AudioDataModule, tracked: TrackedRun,
            threshold: float) -> None:
    """Band occlusion and saliency on the test sets, when ``explain.enabled``."""
    if p.explain.enabled:
        files = explain_datamodule(model, dm, p.explain, threshold,
                                   tracked.run_dir.artifacts / "explain")
        tracked.log_files(files, "explain")


def write_skipped(dm: AudioDataModule, out_dir: Path) -> list[Path]:
    """``skipped.csv``: every unusable clip with its reason (none: no file)."""
    rows = dm.skipped
    if not rows:
        return []
    buffer = text_io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["clip_id", "path", "label", "reason"],
                            lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    path = io.write_text(out_dir / "skipped.csv", buffer.getvalue())
    log.info("skipped %d unusable clip(s); reasons in %s", len(rows), path)
    return [path]
