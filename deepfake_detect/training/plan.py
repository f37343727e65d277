"""A run's plan: the resolved config validated into typed parts before any heavy work.

Every check that does not need the data happens here, each error naming its config key:
the groups, the seed, features, distortions (test presets composed by Hydra), the model, its
weights and the run it starts from (``model.init_from``: a readable file, or a run the MLflow
store holds), the logger, the trainer's arguments against Lightning and the machine, the
folders a run writes (``paths.root``, ``data.cache.dir``), the data source and the
DataModule (which do no I/O yet). Nothing here opens an MLflow run.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.connector import _PRECISION_INPUT_STR
from omegaconf import DictConfig

from deepfake_detect import atomic, scaling
from deepfake_detect.config import build, one_of, require, to_plain
from deepfake_detect.data.datamodule import AudioDataModule
from deepfake_detect.data.distortions import Distortion
from deepfake_detect.data.features import FeatureConfig
from deepfake_detect.data.presets import (
    CurveSpec,
    build_distortion,
    check_rate,
    curve_points,
    distortion_preset,
)
from deepfake_detect.errors import ConfigError
from deepfake_detect.evaluation.aggregate import AGGREGATES
from deepfake_detect.evaluation.baselines import BASELINES
from deepfake_detect.explain import ExplainConfig, explain_config
from deepfake_detect.models.detector import ModelConfig
from deepfake_detect.models.refs import check_ref
from deepfake_detect.models.resnet import resolve_weights
from deepfake_detect.runs import IF_RUNNING, RunDir, run_dir_for
from deepfake_detect.task import check_task
from deepfake_detect.tracking import LoggerConfig, default_tracking_uri

GROUPS = ("data", "features", "distortion", "model", "trainer", "logger", "paths")
PRECISIONS = (*typing.get_args(_PRECISION_INPUT_STR), "16", "32", "64", "bf16", 16, 32, 64)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
# Trainer arguments that must be whole numbers (lower bound), and those that take a count or
# a fraction of batches.
TRAINER_INTS = {"max_epochs": 1, "min_epochs": 0, "log_every_n_steps": 1,
                "num_sanity_val_steps": -1, "accumulate_grad_batches": 1, "num_nodes": 1,
                "check_val_every_n_epoch": 1}
TRAINER_LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches",
                  "limit_predict_batches")


SELECT = {"val/auroc": "max", "val/acc": "max", "val/loss": "min", "last": ""}


@dataclass(frozen=True)
class EvalConfig:
    """The ``eval`` node: test distortions, the decision threshold, which epoch is packaged,
    file-level aggregation, bootstrap intervals, the shortcut baselines and the robustness
    curves computed at the end of training."""

    distortions: tuple[str, ...] = ("base",)
    threshold: float | str = 0.5
    select: str = "val/auroc"
    file_aggregate: str = "mean"
    bootstrap: int = 1000
    ci_level: float = 0.95
    baselines: tuple[str, ...] = ()
    curves: tuple[CurveSpec, ...] = ()

    def __post_init__(self) -> None:
        require(len(self.distortions) > 0, "distortions", "list at least one test distortion")
        require(self.threshold == "val_eer" or (isinstance(self.threshold, int | float)
                                                and 0 < self.threshold < 1), "threshold",
                f"must be a number in (0, 1) or val_eer, got {self.threshold!r}")
        one_of(self.select, tuple(SELECT), "select")
        one_of(self.file_aggregate, AGGREGATES, "file_aggregate")
        require(isinstance(self.bootstrap, int) and not isinstance(self.bootstrap, bool)
                and self.bootstrap >= 0, "bootstrap",
                f"must be a number of replicates >= 0 (0: no intervals), got {self.bootstrap!r}")
        require(isinstance(self.ci_level, float) and 0.5 <= self.ci_level < 1, "ci_level",
                f"must be a coverage in [0.5, 1), got {self.ci_level!r}")
        for name in self.baselines:
            one_of(name, BASELINES, "baselines")


@dataclass(kw_only=True)
class Plan:
    """Everything a training run needs, validated, before any heavy work: plain data, built
    with keywords; the DataModule is built from it afterwards (:func:`datamodule_of`)."""

    resolved: dict[str, Any]
    seed: int
    task: str
    features: FeatureConfig
    distortion: Distortion
    test_distortions: list[Distortion]
    eval: EvalConfig
    model: ModelConfig
    weights_path: Path | None
    logger: LoggerConfig
    trainer: dict[str, Any]
    outputs: Path
    run_dir: RunDir
    resume: bool
    explain: ExplainConfig
    tags: dict[str, str] = field(default_factory=dict)
    if_running: str = "refuse"  # another process on this run: wait or refuse
    curves: list[tuple[CurveSpec, list[Distortion]]] = field(default_factory=list)

    @property
    def data(self) -> dict[str, Any]:
        """The ``data`` node (source, split, loader, cache), as the DataModule reads it."""
        return self.resolved["data"]


def datamodule_of(p: Plan) -> AudioDataModule:
    """The plan's DataModule: no I/O until it is built (a held-out generator's name aside,
    which lists the source)."""
    return AudioDataModule(p.data, p.features, p.distortion, p.test_distortions, p.seed,
                           p.task)


def plan(cfg: DictConfig | dict[str, Any]) -> Plan:
    """Validate ``cfg`` into a Plan; every error names its config key."""
    resolved = to_plain(cfg)
    for key in GROUPS:
        require(isinstance(resolved.get(key), dict), key, "missing config group")
    resolved["trainer"] = scaling.resolve_trainer(resolved["trainer"])
    seed = resolved.get("seed", 0)
    require(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0, "seed",
            f"must be an integer >= 0, got {seed!r}")
    task = check_task(resolved.get("task", "binary"))
    features = build(FeatureConfig, resolved["features"], "features")
    distortion = build_distortion(resolved["distortion"], "distortion")
    evaluation = eval_config(resolved.get("eval"))
    tests = [distortion if name == distortion.name else distortion_preset(name)
             for name in evaluation.distortions]
    for d in dict.fromkeys([distortion, *tests]):
        check_rate(d, features.sample_rate,
                   "distortion" if d is distortion else f"distortion {d.name}")
    curves = [(spec, curve_points(spec, f"eval.curves.{i}", features.sample_rate, distortion))
              for i, spec in enumerate(evaluation.curves)]
    model = build(ModelConfig, resolved["model"], "model")
    logger = build(LoggerConfig, resolved["logger"], "logger", ignore=("tags",))
    trainer = trainer_kwargs(resolved["trainer"])
    tags = {str(k): str(v) for k, v in (resolved["logger"].get("tags") or {}).items()}
    outputs = Path(resolved["paths"]["root"]).expanduser().resolve()
    p = Plan(resolved=resolved, seed=seed, task=task, features=features, distortion=distortion,
             test_distortions=tests, eval=evaluation, model=model,
             weights_path=resolve_weights(model.weights), logger=logger, trainer=trainer,
             outputs=outputs, run_dir=run_dir_for(resolved),
             resume=bool(resolved.get("resume", True)), explain=explain_config(resolved),
             tags=tags, if_running=if_running(resolved.get("if_running", "auto")),
             curves=curves)
    # The data node is checked as the DataModule reads it (a bad holdout: now).
    tags.update({k: str(v) for k, v in datamodule_of(p).split_info.items()})
    check_places(resolved, model, logger, outputs)
    return p


def if_running(value: Any) -> str:
    """``if_running``: ``wait`` or ``refuse`` (``auto``: refuse; the training command turns
    it into ``wait`` inside a sweep)."""
    one_of(value, IF_RUNNING, "if_running")
    return "refuse" if value == "auto" else str(value)


def check_places(resolved: dict[str, Any], model: ModelConfig, logger: LoggerConfig,
                 outputs: Path) -> None:
    """The folders a run writes can be written, and the run it starts from can be read."""
    check_writable(outputs, "paths.root")
    cache_dir = (resolved["data"].get("cache") or {}).get("dir")
    if cache_dir:
        check_writable(Path(str(cache_dir)).expanduser().resolve(), "data.cache.dir")
    if model.init_from:
        check_ref(model.init_from, "model.init_from",
                  logger.tracking_uri or default_tracking_uri(outputs))


def check_writable(path: Path, key: str) -> None:
    """ConfigError naming ``key`` unless files can be written in folder ``path``."""
    problem = atomic.unwritable(path)
    if problem:
        raise ConfigError(key, problem)


def eval_config(node: Any) -> EvalConfig:
    values = dict(node or {})
    for key in ("distortions", "baselines"):
        if isinstance(values.get(key), list | tuple):
            values[key] = tuple(str(d) for d in values[key])
    curves = values.get("curves") or ()
    require(isinstance(curves, list | tuple), "eval.curves",
            "must be a list of {distortion, values, effect}")
    values["curves"] = tuple(curve_spec(node, f"eval.curves.{i}")
                             for i, node in enumerate(curves))
    return build(EvalConfig, values, "eval")


def curve_spec(node: Any, prefix: str) -> CurveSpec:
    require(isinstance(node, dict), prefix, f"must be {{distortion, values, effect}}, got {node!r}")
    return build(CurveSpec, node, prefix)


def trainer_kwargs(node: dict[str, Any]) -> dict[str, Any]:
    """``trainer`` config keys, checked against ``lightning.pytorch.Trainer``'s arguments,
    their types and this machine (our extra keys, ``channels_last`` and ``gpu_per_job``,
    are checked by :mod:`deepfake_detect.scaling` and left out)."""
    node, extras = scaling.split_trainer(node)
    scaling.check_extras(extras)
    allowed = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"}
    for key in node:
        require(key in allowed, f"trainer.{key}",
                "not an argument of lightning.pytorch.Trainer")
    check_trainer_values(node)
    scaling.check_hardware(node)
    return dict(node)


def check_trainer_values(node: dict[str, Any]) -> None:
    """Types and ranges of the trainer arguments people set most."""
    for key, low in TRAINER_INTS.items():
        value = node.get(key)
        require(value is None or (isinstance(value, int) and not isinstance(value, bool)
                                  and (value >= low or (key == "max_epochs" and value == -1))),
                f"trainer.{key}", f"must be an integer >= {low}, got {value!r}")
    for key in TRAINER_LIMITS:
        value = node.get(key)
        ok = value is None or (isinstance(value, int) and not isinstance(value, bool)
                               and value >= 0) or (isinstance(value, float) and 0 <= value <= 1)
        require(ok, f"trainer.{key}", "must be a number of batches (an integer >= 0), a "
                f"fraction in [0, 1] or null (all), got {value!r}")
    require(node.get("precision", "32-true") in PRECISIONS, "trainer.precision",
            f"got {node.get('precision')!r}; allowed: auto, "
            f"{', '.join(map(str, typing.get_args(_PRECISION_INPUT_STR)))}")
    require(str(node.get("accelerator", "auto")) in ACCELERATORS, "trainer.accelerator",
            f"got {node.get('accelerator')!r}; allowed: {', '.join(ACCELERATORS)}")

