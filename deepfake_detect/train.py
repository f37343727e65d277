"""Entry point: ``deepfake-detect-train [overrides]`` or ``train(cfg) -> metrics``.

``train`` validates the whole config before any heavy work, finds the run directory by config
signature (resuming or reporting a finished run), prepares the cached features, trains,
tests every test distortion and logs everything to one MLflow run.
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from deepfake_detect.config import build, require, to_plain
from deepfake_detect.data.distortions import Distortion
from deepfake_detect.data.features import FeatureConfig
from deepfake_detect.errors import ConfigError, DeepfakeDetectError
from deepfake_detect.runs import RunDir, run_dir_for
from deepfake_detect.scaling import (
    check_iterative_strategy,
    is_rank_zero,
    prepare_sweep_job,
    release_gpu,
    resolve_trainer,
)
from deepfake_detect.task import check_task
from deepfake_detect.tracking import LoggerConfig

log = logging.getLogger("deepfake_detect")


def conf_dir() -> Path:
    """The ``conf/`` folder (next to the package in a checkout, inside it in a wheel)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no conf/train.yaml next to {here}")


CONF_DIR = conf_dir()
ALL_DISTORTIONS = ("base", "pitch", "tempo", "combined")


@dataclass(frozen=True)
class EvalConfig:
    """The ``eval`` node: which test distortions, and the decision threshold."""

    distortions: tuple[str, ...] = ALL_DISTORTIONS
    threshold: float | str = 0.5

    def __post_init__(self) -> None:
        require(len(self.distortions) > 0, "distortions", "list at least one test distortion")
        require(self.threshold == "val_eer" or (isinstance(self.threshold, int | float)
                                                and 0 < self.threshold < 1), "threshold",
                f"must be a number in (0, 1) or val_eer, got {self.threshold!r}")


def distortion_preset(name: str) -> Distortion:
    """A distortion from ``conf/distortion/<name>.yaml``."""
    path = CONF_DIR / "distortion" / f"{name}.yaml"
    if not path.is_file():
        allowed = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError("eval.distortions", f"unknown distortion {name!r}; allowed: "
                          f"{', '.join(allowed)}")
    return build_distortion(to_plain(OmegaConf.load(path)), f"distortion ({path.name})")


def build_distortion(node: dict[str, Any], prefix: str) -> Distortion:
    try:
        return Distortion.from_dict(node)
    except ConfigError as err:
        raise ConfigError(f"{prefix}.{err.key}", str(err).split(": ", 1)[1]) from None
    except TypeError as err:
        raise ConfigError(prefix, f"{err}; allowed keys: name, pitch, tempo, crop, pad, "
                          "bins_per_octave") from None


def trainer_kwargs(node: dict[str, Any]) -> dict[str, Any]:
    """``trainer`` config keys, checked against ``lightning.pytorch.Trainer``'s arguments
    (except ours, ``channels_last`` and ``gpu_per_job``: see ``scaling.py``)."""
    import lightning.pytorch as pl

    from deepfake_detect import scaling

    node, extras = scaling.split_trainer(node)
    scaling.check_extras(extras)
    allowed = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"}
    for key in node:
        require(key in allowed, f"trainer.{key}",
                "not an argument of lightning.pytorch.Trainer")
    require(node.get("max_epochs") is None or node["max_epochs"] > 0, "trainer.max_epochs",
            f"must be a positive integer, got {node.get('max_epochs')}")
    return dict(node)


@dataclass
class Plan:
    """Everything ``train`` needs, validated, before any heavy work."""

    resolved: dict[str, Any]
    seed: int
    features: FeatureConfig
    distortion: Distortion
    test_distortions: list[Distortion]
    eval: EvalConfig
    model: Any
    weights_path: Path | None
    logger: LoggerConfig
    trainer: dict[str, Any]
    outputs: Path
    run_dir: RunDir
    resume: bool
    datamodule: Any = None
    tags: dict[str, str] = field(default_factory=dict)
    explain: Any = None  # deepfake_detect.explain.ExplainConfig


def plan(cfg: DictConfig | dict[str, Any]) -> Plan:
    """Validate ``cfg`` into a Plan; every error names its config key."""
    from deepfake_detect.data.datamodule import AudioDataModule
    from deepfake_detect.explain import explain_config
    from deepfake_detect.models.detector import ModelConfig
    from deepfake_detect.models.resnet import resolve_weights

    resolved = to_plain(cfg)
    for key in ("data", "features", "distortion", "model", "trainer", "logger", "paths"):
        require(isinstance(resolved.get(key), dict), key, "missing config group")
    resolved["trainer"] = resolve_trainer(resolved["trainer"])
    seed = resolved.get("seed", 0)
    require(isinstance(seed, int) and seed >= 0, "seed", f"must be an integer >= 0, got {seed!r}")
    features = build(FeatureConfig, resolved["features"], "features")
    distortion = build_distortion(resolved["distortion"], "distortion")
    eval_node = dict(resolved.get("eval") or {})
    if isinstance(eval_node.get("distortions"), list):
        eval_node["distortions"] = tuple(eval_node["distortions"])
    evaluation = build(EvalConfig, eval_node, "eval")
    tests = [distortion if name == distortion.name else distortion_preset(name)
             for name in evaluation.distortions]
    model = build(ModelConfig, resolved["model"], "model")
    weights_path = resolve_weights(model.weights)
    logger = build(LoggerConfig, resolved["logger"], "logger", ignore=("tags",))
    task = check_task(resolved.get("task", "binary"))
    datamodule = AudioDataModule(resolved["data"], features, distortion, tests, seed, task)
    outputs = Path(resolved["paths"]["root"]).expanduser().resolve()
    tags = {str(k): str(v) for k, v in (resolved["logger"].get("tags") or {}).items()}
    return Plan(resolved, seed, features, distortion, tests, evaluation, model, weights_path,
                logger, trainer_kwargs(resolved["trainer"]), outputs,
                run_dir_for(resolved), bool(resolved.get("resume", True)), datamodule,
                tags, explain_config(resolved))


def train(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """Train and test one configuration; return its metrics (``test/<distortion>/<metric>``)."""
    from deepfake_detect.runs import finished_result, run_dir_for

    resolved = to_plain(cfg)
    if (done := finished_result(resolved)) is not None:  # before plan(): no data, no torch
        print(f"[deepfake-detect] {run_dir_for(resolved).path.name} already finished; "
              "reporting its stored results (resume=false retrains)")
        if (resolved.get("explain") or {}).get("enabled"):
            print("[deepfake-detect] explain.enabled has no effect on a finished run; run "
                  f"deepfake-detect-explain --model {done.get('run_dir', '<run dir>')}")
        return done
    p = plan(cfg)
    if not p.resume and p.run_dir.path.exists() and is_rank_zero():
        shutil.rmtree(p.run_dir.path)
    return _run(p)


def _run(p: Plan) -> dict[str, Any]:
    import lightning.pytorch as pl
    import torch
    from hydra.core.hydra_config import HydraConfig

    from deepfake_detect import tracking
    from deepfake_detect.checkpoints import ResumableMLFlowLogger, resumable_checkpoint
    from deepfake_detect.evaluate import choose_threshold, evaluate, metrics_table
    from deepfake_detect.models.bundle import load_weights_from, save_bundle
    from deepfake_detect.models.detector import Detector
    from deepfake_detect.models.resnet import load_backbone_weights
    from deepfake_detect.scaling import device_name

    if HydraConfig.initialized():  # here, not before train(): a finished job skips the import
        _quiet_lightning_logging()
    run_dir = p.run_dir.create()
    pl.seed_everything(p.seed, workers=True, verbose=False)
    dm = p.datamodule
    dm.prepare()
    print(f"[deepfake-detect] data: {dm.describe()}")
    model = Detector(model=asdict(p.model), feature_mean=dm.feature_mean,
                     feature_std=dm.feature_std, test_names=tuple(dm.test_names),
                     features=p.features.as_dict(), classes=dm.classes)
    if p.resolved["trainer"].get("channels_last"):  # the conv weights set the layout
        model = model.to(memory_format=torch.channels_last)
    ckpt = resumable_checkpoint(run_dir.checkpoints) if p.resume else None
    if not is_rank_zero():  # an extra DDP process: it only trains (DDP copies rank 0's
        # weights into it); rank 0 owns the MLflow run, the artifacts and the tests
        _fit_trainer(p, run_dir, logger=False).fit(model, datamodule=dm, ckpt_path=ckpt)
        return {"run_dir": str(run_dir.path), "rank": os.environ.get("LOCAL_RANK")}
    weights_used = "none"
    if p.weights_path is not None:
        weights_used = load_backbone_weights(model.net, p.weights_path)
    store = tracking.open_store(p.logger, p.outputs)
    uri, artifact_location = store.uri, store.artifact_location
    if p.model.init_from:
        weights_used = "init_from:" + load_weights_from(model, p.model.init_from, uri)
    # An interrupted job continues its own MLflow run (killed before its first checkpoint too:
    # it retrains from scratch into the same run), unless that run is gone from the store.
    run_id = run_dir.live_run_id(uri) if p.resume else None
    resumed_run = run_id is not None
    logger = ResumableMLFlowLogger(experiment_name=p.logger.experiment_name, tracking_uri=uri,
                                   run_name=p.logger.run_name or run_dir.path.name,
                                   run_id=run_id, artifact_location=artifact_location)
    run_id = tracking.retry(lambda: logger.run_id, "start MLflow run")
    client = logger.experiment
    try:  # from here on the run never stays RUNNING when this process stops
        run_dir.save_run_id(run_id)
        params = tracking.params_from_config(p.resolved)
        if resumed_run:  # params are immutable: add only those a killed job had not logged
            logged = tracking.retry(lambda: client.get_run(run_id).data.params, "read params")
            params = {k: v for k, v in params.items() if k not in logged}
        if params:
            tracking.retry(lambda: logger.log_hyperparams(params), "log params")
        if not resumed_run:
            tags = {"config_hash": run_dir.path.name.rsplit("-", 1)[-1],
                    "git_commit": tracking.git_commit(), "weights": weights_used,
                    "run_dir": str(run_dir.path), "train_distortion": p.distortion.name,
                    "task": dm.task, "precision": str(p.trainer.get("precision")),
                    "device": device_name(p.trainer), **p.tags}
            for key, value in tags.items():
                tracking.retry(lambda k=key, v=value: client.set_tag(run_id, k, v), "set tag")
        else:  # killed (still RUNNING), failed or interrupted before: running again
            tracking.retry(lambda: client.update_run(run_id, status="RUNNING"), "set status")
            print(f"[deepfake-detect] resuming from {ckpt or 'scratch (no checkpoint yet)'} "
                  f"into MLflow run {run_id}")
            tracking.retry(lambda: client.set_tag(run_id, "resumed_from", str(ckpt or "")),
                           "set tag")

        trainer = _fit_trainer(p, run_dir, logger)
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt)
        tester = trainer if trainer.world_size == 1 else _test_trainer(p, run_dir)
        threshold, rule = choose_threshold(tester, model, dm, p.eval.threshold)
        flat, files = evaluate(tester, model, dm, run_dir.artifacts, threshold)
        flat["threshold"] = threshold
        bundle = save_bundle(run_dir.path / "model.ckpt", model, p.features.as_dict(),
                             threshold, rule, {"train_distortion": p.distortion.name,
                                               "run_id": run_id, "task": dm.task,
                                               "classes": list(dm.classes)})
        tracking.retry(lambda: client.log_artifact(run_id, str(bundle), "model"),
                       "log model")
        step = trainer.global_step
        finite = {k: v for k, v in flat.items() if v == v}
        tracking.retry(lambda: logger.log_metrics(finite, step=step), "log test metrics")
        skipped = _write_skipped(dm, run_dir.artifacts)
        for path in [*files, *skipped]:
            tracking.retry(lambda f=path: client.log_artifact(run_id, str(f)), "log artifact")
        if p.explain.enabled:
            from deepfake_detect.explain import explain_datamodule

            for path in explain_datamodule(model, dm, p.explain, threshold,
                                           run_dir.artifacts / "explain"):
                tracking.retry(lambda f=path: client.log_artifact(run_id, str(f), "explain"),
                               "log explain artifact")
        result = {"run_id": run_id, "run_dir": str(run_dir.path),
                  "tracking_uri": uri, "data": dm.describe(), **flat}
        # FINISHED first: killed in between, the job re-tests into the same run next time
        # (result.json first would leave the run RUNNING for good).
        tracking.set_terminated(uri, run_id, "FINISHED")
        run_dir.save_result(result)
    except (KeyboardInterrupt, SystemExit) as err:
        # Lightning turns Ctrl+C during fit/test into sys.exit(1), SIGTERM into SIGTERMException.
        # Ctrl+C inside an MLflow call skips its rollback: the sqlite connection, kept alive by
        # the traceback, holds the database lock until those frames let go of it.
        import gc
        import traceback

        chained: BaseException | None = err
        while chained is not None:
            traceback.clear_frames(chained.__traceback__)
            chained = chained.__context__
        gc.collect()
        tracking.set_terminated(uri, run_id, "KILLED")
        raise
    except BaseException:
        tracking.set_terminated(uri, run_id, "FAILED")
        raise
    print(metrics_table(flat, dm.test_names))
    print(f"[deepfake-detect] MLflow run {run_id} in experiment "
          f"'{p.logger.experiment_name}' at {uri}")
    return result


def _fit_trainer(p: Plan, run_dir: RunDir, logger: Any) -> Any:
    """The training Trainer, the same in every DDP process (their callbacks synchronise)."""
    import lightning.pytorch as pl

    from deepfake_detect.callbacks import EpochSummary
    from deepfake_detect.checkpoints import AtomicCheckpointIO, EpochCheckpoint
    from deepfake_detect.scaling import job_devices

    checkpointing = EpochCheckpoint(dirpath=run_dir.checkpoints, filename="epoch{epoch:03d}",
                                    auto_insert_metric_name=False, save_last=True,
                                    save_top_k=2, monitor="step", mode="max")
    return pl.Trainer(**job_devices(p.trainer), logger=logger,
                      callbacks=[checkpointing, EpochSummary()],
                      default_root_dir=run_dir.path, plugins=[AtomicCheckpointIO()])


def _test_trainer(p: Plan, run_dir: RunDir) -> Any:
    """A one-device Trainer for rank 0 after distributed training: under DDP every process
    would test (and pick the threshold on) only its own shard of each set."""
    import lightning.pytorch as pl

    return pl.Trainer(**{**p.trainer, "strategy": "auto", "devices": 1, "num_nodes": 1,
                         "logger": False, "enable_checkpointing": False},
                      default_root_dir=run_dir.path)


def _write_skipped(dm: Any, out_dir: Path) -> list[Path]:
    import csv

    rows = dm.skipped
    if not rows:
        return []
    path = out_dir / "skipped.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["clip_id", "path", "label", "reason"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"[deepfake-detect] skipped {len(rows)} unusable clip(s); reasons in {path}")
    return [path]


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        OmegaConf.set_struct(cfg, False)
        cfg.logger.setdefault("tags", {})
        cfg.logger.tags["sweep_id"] = Path(hydra_cfg.sweep.dir).name
        cfg.logger.tags["sweep_overrides"] = ",".join(hydra_cfg.overrides.task)
    try:
        if hydra_cfg.mode == RunMode.MULTIRUN and (gpu := prepare_sweep_job(
                to_plain(cfg.trainer), str(hydra_cfg.launcher._target_), hydra_cfg.job.num)):
            cfg.logger.tags["gpu"] = gpu
        if cfg.get("iterative"):
            from deepfake_detect.iterative import train_iterative

            check_iterative_strategy(to_plain(cfg.trainer))
            train_iterative(cfg)
        else:
            train(cfg)
    except DeepfakeDetectError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    finally:
        release_gpu()  # joblib reuses its worker processes for later jobs


def _quiet_lightning_logging() -> None:
    """Hydra already sends records to the console: drop Lightning's duplicate handler."""
    import lightning.pytorch  # noqa: F401 - installs its handler on import

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def main() -> None:
    """Console script ``deepfake-detect-train``."""
    _hydra_main()


if __name__ == "__main__":
    main()
