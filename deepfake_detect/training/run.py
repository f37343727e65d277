"""Training one configuration: ``train(cfg) -> metrics``.

The sequence: plan (validate everything), prepare the data and the model, fit (resuming from
the run directory's checkpoints), choose the decision threshold on validation, test on every
test distortion and package the model, explain (optional). One MLflow run records it all
(:class:`~deepfake_detect.training.lifecycle.TrackedRun`); a finished config reports its stored
results instead of running again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping
from omegaconf import DictConfig

from deepfake_detect import atomic, scaling, tracking
from deepfake_detect.config import to_plain
from deepfake_detect.data.datamodule import AudioDataModule
from deepfake_detect.evaluation.baselines import run_baselines
from deepfake_detect.evaluation.cross_dataset import evaluate_sources
from deepfake_detect.evaluation.evaluate import (
    Intervals,
    Scored,
    evaluate,
    threshold_on,
    validation_scores,
)
from deepfake_detect.evaluation.field_eval import DETECTOR, Scores, Setting, extras
from deepfake_detect.evaluation.robustness import run_curves, trainer_scorer
from deepfake_detect.explain import explain_datamodule
from deepfake_detect.models import calibration as calib
from deepfake_detect.models.bundle import save_bundle
from deepfake_detect.models.detector import Detector, profile
from deepfake_detect.models.frontend import FrontEnd
from deepfake_detect.models.names import display_of_config
from deepfake_detect.models.provenance import SIMULATED_SOURCES, file_profile
from deepfake_detect.models.refs import init_from
from deepfake_detect.models.resnet import load_backbone_weights
from deepfake_detect.runs import RunDir
from deepfake_detect.training.callbacks import EpochBar, EpochSummary
from deepfake_detect.training.checkpoints import (
    AtomicCheckpointIO,
    BestCheckpoint,
    EpochCheckpoint,
    prune_checkpoints,
    resumable_checkpoint,
)
from deepfake_detect.training.lifecycle import TrackedRun
from deepfake_detect.training.plan import SELECT, Plan, datamodule_of, plan
from deepfake_detect.training.summary import finished_run, results_table

log = logging.getLogger(__name__)
SKIPPED = "skipped.csv"


def train(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """Train and test one configuration; return its metrics (``test/<distortion>/<metric>``),
    or the stored ones when this config already finished.

    One process at a time works on a configuration: the run directory's lock is held for the
    whole run; another process waits for it (then reports the result it stored) or stops
    (``if_running``)."""
    resolved = to_plain(cfg)
    done = finished_run(resolved)
    if done is not None:
        if (resolved.get("eval") or {}).get("curves"):
            log.info("eval.curves is not part of a run's identity and this run is finished: "
                     "use deepfake-detect-robustness --model %s", done.get("run_dir"))
        return done
    p = plan(resolved)
    if not scaling.is_rank_zero():  # an extra DDP process: rank 0 holds the lock
        return run_plan(p)
    with p.run_dir.hold(p.if_running):
        done = finished_run(resolved)  # finished meanwhile (by the process waited for)
        if done is not None:
            return done
        if not p.resume and p.run_dir.path.exists():
            shutil.rmtree(p.run_dir.path)
        return run_plan(p)


def run_plan(p: Plan) -> dict[str, Any]:
    """Run a validated plan (see the module docstring); the caller holds the run's lock."""
    if scaling.is_rank_zero():  # a stopped or locked tracking server: one line, now
        tracking.check_store(p.logger.tracking_uri or tracking.default_tracking_uri(p.outputs))
    run_dir = p.run_dir.create()
    pl.seed_everything(p.seed, workers=True, verbose=False)
    dm = prepare_data(p, run_dir)
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
        tracked.log_dataset(*dataset_input(dm))
        trainer = fit(p, run_dir, model, dm, tracked, checkpoint)
        selected = select(p, trainer, model)
        tester = trainer if trainer.world_size == 1 else test_trainer(p, run_dir)
        decided = decide(p, tester, model, dm)
        result = test_and_package(p, tester, model, dm, tracked, decided, selected)
        raw_threshold = calib.raw_threshold(decided.calibration, decided.threshold)
        log_curves(p, tester, model, dm, tracked, raw_threshold)  # they read raw scores
        log_explanations(p, model, dm, tracked, raw_threshold)
        tracked.finish(result)
    prune_checkpoints(run_dir.checkpoints, p.resolved["trainer"].get("keep_checkpoints", "best"))
    log.info("results:\n%s", results_table(result, dm.test_names))
    log.info("MLflow run %s in experiment '%s' at %s", tracked.run_id,
             p.logger.experiment_name, tracked.uri)
    return result


def prepare_data(p: Plan, run_dir: RunDir) -> AudioDataModule:
    """Clips, splits and cached rows of every set; ``skipped.csv`` lists the unusable clips
    before anything can stop the run for them (a class left without clips stops it here,
    before any MLflow run is opened)."""
    dm = datamodule_of(p)
    dm.build()
    listing = write_skipped(dm, run_dir.artifacts) if scaling.is_rank_zero() else []
    dm.check(str(listing[0]) if listing else None)
    log.info("data: %s", dm.describe())
    return dm


def build_model(p: Plan, dm: AudioDataModule) -> Detector:
    """The detector, its front end normalised with the training rows' statistics."""
    # dm.features: the plan's, with a band of ``fmax: auto`` resolved against the source.
    mean, std = FrontEnd(dm.features, dm.store).moments(dm.entries["train"].features)
    model = Detector(model=asdict(p.model), feature_mean=mean, feature_std=std,
                     test_names=tuple(dm.test_names), features=dm.features.as_dict(),
                     classes=dm.classes, store=dm.store)
    if p.resolved["trainer"].get("channels_last"):  # the conv weights set the layout
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
    """The training Trainer, the same in every DDP process (their callbacks synchronise):
    the latest epochs' checkpoints (resume), the best one on ``eval.select``, early stopping
    when ``trainer.early_stopping.patience`` is set."""
    callbacks: list[pl.Callback] = []
    if p.eval.select != "last":  # decides before the epoch's checkpoints are written
        callbacks.append(BestCheckpoint(run_dir.checkpoints, p.eval.select,
                                        SELECT[p.eval.select]))
    checkpointing = EpochCheckpoint(dirpath=run_dir.checkpoints, filename="epoch{epoch:03d}",
                                    auto_insert_metric_name=False, save_last=True,
                                    save_top_k=2, monitor="step", mode="max")
    callbacks += [checkpointing, EpochSummary()]
    stop = p.resolved["trainer"].get("early_stopping") or {}
    if stop.get("patience"):
        monitor = p.eval.select if p.eval.select != "last" else "val/loss"
        callbacks.append(EarlyStopping(monitor=monitor, mode=SELECT[monitor] or "min",
                                       patience=stop["patience"],
                                       min_delta=stop.get("min_delta", 0.0),
                                       check_finite=False))
    if p.trainer.get("enable_progress_bar", True):
        callbacks.append(EpochBar())
    return pl.Trainer(**scaling.job_devices(p.trainer), logger=logger, callbacks=callbacks,
                      default_root_dir=run_dir.path, plugins=[AtomicCheckpointIO()])


def select(p: Plan, trainer: pl.Trainer, model: Detector) -> dict[str, Any]:
    """Load the weights of the epoch chosen on validation into ``model`` (``eval.select``);
    returns the selected epoch (from 1) and why."""
    last = {"selected_epoch": int(trainer.current_epoch), "selection": "last epoch"}
    if p.eval.select == "last":
        return last
    best = next(c for c in trainer.callbacks if isinstance(c, BestCheckpoint))
    if best.score is None:
        log.warning("%s was never defined in %d validation(s) (does the validation set hold "
                    "both classes?); the last epoch is packaged", p.eval.select,
                    best.validations)
        return {**last, "selection": f"last epoch ({p.eval.select} undefined)"}
    checkpoint, found = best.load()
    if checkpoint is None:
        log.warning("the checkpoint of epoch %d (best %s %.4f) is gone (%s); the last epoch "
                    "is packaged", best.epoch + 1, p.eval.select, best.score, found)
        return {**last, "selection": f"last epoch (checkpoint of best epoch {best.epoch + 1} "
                                     "lost)"}
    model.load_state_dict(checkpoint["state_dict"])
    epoch = best.epoch + 1
    log.info("selected epoch %d of %d on %s = %.4f", epoch, trainer.current_epoch,
             p.eval.select, best.score)
    return {"selected_epoch": epoch, "selection": f"best {p.eval.select} {best.score:.4f}",
            "selected_score": best.score}


@dataclass
class Decided:
    """What validation decides before the tests: the calibration, the threshold on the
    (calibrated) score and its rule, and the scored validation set (None when unneeded)."""

    threshold: float
    rule: str
    calibration: dict[str, Any] | None = None
    val: Scored | None = None


def decide(p: Plan, tester: pl.Trainer, model: Detector, dm: AudioDataModule) -> Decided:
    """Fit the calibration on the validation scores (``eval.calibration``), then choose the
    threshold on the calibrated scores (``eval.threshold``)."""
    ev = p.eval
    needed = isinstance(ev.threshold, str) or ev.calibration != "none" or ev.fusion
    if not needed:
        return Decided(*threshold_on(Scored("val", [], np.zeros(0)), ev.threshold))
    raw = validation_scores(tester, model, dm)
    calibration = calib.fit(ev.calibration, raw.scores, raw.labels)
    if calibration:
        log.info("calibration: %s", calib.describe(calibration))
    val = Scored("val", raw.rows, calib.apply(calibration, raw.scores), raw.scores)
    return Decided(*threshold_on(val, ev.threshold), calibration, val)


def test_trainer(p: Plan, run_dir: RunDir) -> pl.Trainer:
    """A one-device Trainer for rank 0 after distributed training: under DDP every process
    would test (and pick the threshold on) only its own shard of each set."""
    return pl.Trainer(**{**p.trainer, "strategy": "auto", "devices": 1, "num_nodes": 1,
                         "logger": False, "enable_checkpointing": False},
                      default_root_dir=run_dir.path)


def test_sources(p: Plan, tester: pl.Trainer, model: Detector, dm: AudioDataModule,
                 tracked: TrackedRun, decided: Decided) -> dict[str, float]:
    """The same model on the other datasets of ``eval.sources`` (calibrated like the test
    sets, so the threshold means the same); their metrics."""
    ev = p.eval
    if not ev.sources:
        return {}
    raw = trainer_scorer(tester, model, dm.loader.batch_size)
    values, written = evaluate_sources(
        ev.sources, dm, lambda entry: calib.apply(decided.calibration, raw(entry)),
        decided.threshold, Intervals(ev.bootstrap, ev.ci_level, p.seed), ev.file_aggregate,
        ev.baselines, tracked.run_dir.artifacts / "sources")
    tracked.log_files(written, "sources")
    return values


def test_and_package(p: Plan, tester: pl.Trainer, model: Detector, dm: AudioDataModule,
                     tracked: TrackedRun, decided: Decided,
                     selected: dict[str, Any]) -> dict[str, Any]:
    """Test on every test distortion and the baselines on the same split, the figures and
    fusion beside them, write the bundle, log metrics and files; the result."""
    run_dir, ev = tracked.run_dir, p.eval
    intervals = Intervals(ev.bootstrap, ev.ci_level, p.seed)
    scores = Scores(tests={DETECTOR: {}})
    flat, files = evaluate(tester, model, dm, run_dir.artifacts, decided.threshold, intervals,
                           ev.file_aggregate, decided.calibration, ev.dcf,
                           scores.tests[DETECTOR])
    if ev.baselines:
        values, written = run_baselines(ev.baselines, dm, run_dir.artifacts / "baselines",
                                        intervals, ev.file_aggregate, ev.dcf, scores.tests,
                                        scores.val if ev.fusion else None)
        flat.update(values)
        tracked.log_files(written, "baselines")
    if decided.val is not None:
        scores.val[DETECTOR] = decided.val
    shown = display_of_config(p.resolved)
    setting = Setting(intervals, ev.dcf, ev.file_aggregate, p.features.sample_rate, ev.fusion,
                      shown)
    values, figures, fused = extras(scores, list(dm.test_names), setting, run_dir.artifacts)
    flat.update(values)
    tracked.log_files(figures, "curves")
    tracked.log_files(fused, "fusion")
    flat.update(test_sources(p, tester, model, dm, tracked, decided))
    flat["threshold"] = decided.threshold
    values, shape = profile(model)
    flat.update(values)
    log.info("model %s on %s rows of %s: %d parameters (%d trainable), %.0f test clips/s",
             p.model.name, model.features.kind, shape, values["model/params"],
             values["model/trainable_params"], values.get("model/test_clips_per_s", 0.0))
    bundle = save_bundle(run_dir.path / "model.ckpt", model, decided.threshold, decided.rule,
                         {"run_id": tracked.run_id, **bundle_record(p, dm, selected),
                          **({"calibration": decided.calibration} if decided.calibration
                             else {})})
    tracked.log_files([bundle], "model")
    tracked.set_tags(tracking.names_tag(sorted({str(r["generator"]) for n in dm.test_names
                                                for r in dm.test_rows(n)})))
    tracked.log_metrics({**flat, **{k: v for k, v in selected.items() if k != "selection"}},
                        step=tracked.step)
    tracked.log_params({"selected_epoch": selected["selected_epoch"], "model_input": shape})
    skipped = run_dir.artifacts / SKIPPED
    tracked.log_files([*files, *([skipped] if skipped.is_file() else [])])
    return {"run_id": tracked.run_id, "run_dir": str(run_dir.path), "tracking_uri": tracked.uri,
            "data": dm.describe(), "model": {"name": p.model.name, "display": shown},
            **selected, **flat}


def fingerprint(dm: AudioDataModule) -> str:
    """16 hex digits of the source's signature (its options and listing)."""
    signature = json.dumps(dm.source.signature(), sort_keys=True, default=str)
    return hashlib.sha256(signature.encode()).hexdigest()[:16]


def dataset_input(dm: AudioDataModule) -> tuple[str, str, str, dict[str, Any]]:
    """The data source as MLflow sees it: name (the source, and its folder or CSV), digest
    (:func:`fingerprint`), where it is, and how many files and clips it lists."""
    source = dm.source
    cfg = getattr(source, "cfg", None)
    where = str(getattr(cfg, "root", None) or getattr(cfg, "csv", None) or "")
    name = getattr(source, "name", type(source).__name__)
    clips = source.clips()
    files = {c.path or c.clip_id.split("#w")[0] for c in clips}
    return (f"{name}:{Path(where).name}" if where else name, fingerprint(dm), where or name,
            {"num_files": len(files), "num_clips": len(clips)})


def bundle_record(p: Plan, dm: AudioDataModule, selected: dict[str, Any]) -> dict[str, Any]:
    """The bundle's record of what the model was trained on."""
    rows = dm.entries["train"].rows
    return {"train_distortion": p.distortion.name, "distortion": p.distortion.as_dict(),
            "task": dm.task, "classes": list(dm.classes),
            "selected_epoch": selected.get("selected_epoch"),
            "selection": selected.get("selection"),
            "validation_score": selected.get("selected_score"),
            "trained_on": {
                "source": getattr(dm.source, "name", "?"),
                "simulation": getattr(dm.source, "name", "") in SIMULATED_SOURCES,
                "fingerprint": fingerprint(dm),
                "generators": sorted({str(r["generator"]) for r in rows if int(r["label"])}),
                "n_clips": len(rows), **file_profile(rows)}}


def log_curves(p: Plan, tester: pl.Trainer, model: Detector, dm: AudioDataModule,
               tracked: TrackedRun, threshold: float) -> None:
    """Robustness curves on the test split (``eval.curves``), under ``robustness/``."""
    if p.curves:
        score = trainer_scorer(tester, model, dm.loader.batch_size)
        meta = {"run_id": tracked.run_id, "train_distortion": p.distortion.name,
                "seed": p.seed}
        files = run_curves(dm, p.curves, score, threshold,
                           tracked.run_dir.artifacts / "robustness", meta)
        tracked.log_files(files, "robustness")


def log_explanations(p: Plan, model: Detector, dm: AudioDataModule, tracked: TrackedRun,
            threshold: float) -> None:
    """Band occlusion and saliency on the test sets, when ``explain.enabled``."""
    if p.explain.enabled:
        files = explain_datamodule(model, dm, p.explain, threshold,
                                   tracked.run_dir.artifacts / "explain")
        tracked.log_files(files, "explain")


def write_skipped(dm: AudioDataModule, out_dir: Path) -> list[Path]:
    """``skipped.csv``: every unusable clip, and every folder that could not be listed, with
    its reason (none: no file, and an old one is removed)."""
    rows = dm.skipped
    path = out_dir / SKIPPED
    if not rows:
        path.unlink(missing_ok=True)
        return []
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["clip_id", "path", "label", "reason"],
                            lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(path, buffer.getvalue())
    log.info("skipped %d unusable clip(s) or folder(s); reasons in %s", len(rows), path)
    return [path]
