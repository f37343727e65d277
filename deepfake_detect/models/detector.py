"""The LightningModule: a front end (rows -> normalised features) and a network of one of the
model families (:mod:`deepfake_detect.models.families`; ResNet18 by default); scores are
P(AI-generated)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.classification import binary_auroc

from deepfake_detect import LABEL_NAMES
from deepfake_detect.config import one_of, positive, require
from deepfake_detect.data.features import FeatureConfig
from deepfake_detect.models.families import FAMILIES, build_net, parameter_count
from deepfake_detect.models.frontend import FrontEnd
from deepfake_detect.task import UNKNOWN

log = logging.getLogger(__name__)
OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass(frozen=True)
class ModelConfig:
    """The ``model`` config group."""

    name: str = "resnet18"
    weights: str = "none"
    freeze_backbone: bool = False
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    init_from: str | None = None
    stem_freq_stride: int = 2  # resnet18
    width: int = 32  # lcnn, cnn1d: channels of the first layer
    dropout: float = 0.3  # lcnn, cnn1d, embedding: before the head
    bands: int = 32  # oneclass: frequency bands of its features
    components: int = 4  # oneclass: Gaussians in the mixture
    layer: int | str = "weighted"  # embedding: a hidden state's index, or weighted (learned)
    hidden: int = 0  # embedding: 0 for a linear head, else the MLP's hidden width

    def __post_init__(self) -> None:
        one_of(self.name, tuple(FAMILIES), "name")
        one_of(self.optimizer, OPTIMIZERS, "optimizer")
        one_of(self.stem_freq_stride, (1, 2), "stem_freq_stride")
        for key in ("width", "bands", "components"):
            require(isinstance(getattr(self, key), int) and getattr(self, key) >= 1, key,
                    f"must be an integer >= 1, got {getattr(self, key)!r}")
        require(isinstance(self.hidden, int) and self.hidden >= 0, "hidden",
                f"must be an integer >= 0, got {self.hidden!r}")
        require(isinstance(self.dropout, int | float) and 0 <= self.dropout < 1, "dropout",
                f"must lie in [0, 1), got {self.dropout!r}")
        require(self.layer == "weighted" or (isinstance(self.layer, int)
                                             and not isinstance(self.layer, bool)), "layer",
                f"must be a hidden state's index or weighted, got {self.layer!r}")
        positive(self.lr, "lr")
        require(self.weight_decay >= 0, "weight_decay",
                f"must be >= 0, got {self.weight_decay}")
        require(not (self.freeze_backbone and self.weights in (None, "", "none")
                     and not self.init_from), "freeze_backbone",
                "freezing a randomly initialised backbone trains only the last layer on "
                "random features; set model.weights=imagenet (or a file) or "
                "model.freeze_backbone=false")


class Detector(pl.LightningModule):
    """Detector over ``classes`` (class 0 is human; ``("human", "ai")`` for the binary task,
    human plus each generator for attribution), fed rows as the data pipeline stores them
    (``store``: log-mels or waveforms; see :class:`FrontEnd`). Hyperparameters are plain
    values so checkpoints load with ``weights_only=True``; the normalisation statistics are
    the front end's buffers."""

    def __init__(self, model: dict, num_classes: int = 2, feature_mean: float = 0.0,
                 feature_std: float = 1.0, test_names: tuple[str, ...] = ("base",),
                 features: dict | None = None, classes: tuple[str, ...] | None = None,
                 store: str = "features"):
        super().__init__()
        self.save_hyperparameters()
        self.cfg = ModelConfig(**model)
        self.classes = tuple(classes) if classes else tuple(LABEL_NAMES.values())
        num_classes = len(self.classes) if classes else num_classes
        self.front_end = FrontEnd(FeatureConfig(**(features or {})), store, feature_mean,
                                  feature_std)
        self.net = build_net(self.cfg, self.front_end.features, num_classes)
        self.family = FAMILIES[self.cfg.name]
        # A fitted family (oneclass) is fitted once at the start of fit, not by gradients.
        self.automatic_optimization = self.family.trained
        self.throughput: dict[str, float] = {}
        # Decision threshold on P(AI-generated), chosen on the validation set after training.
        self.register_buffer("threshold", torch.tensor(0.5))
        self.test_names = list(test_names)
        self.test_outputs: dict[str, dict[str, torch.Tensor]] = {}
        self._val_parts: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._test_parts: dict[int, list[tuple[torch.Tensor, ...]]] = {}
        if self.cfg.freeze_backbone and self.cfg.name == "resnet18":
            for name, param in self.net.named_parameters():
                param.requires_grad = name.startswith("fc.")

    def train(self, mode: bool = True) -> Detector:
        super().train(mode)
        # A frozen BatchNorm keeps its running statistics.
        if self.cfg.freeze_backbone and self.cfg.name == "resnet18":
            for module in self.net.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    @property
    def attribution(self) -> bool:
        """True when the classes are human plus generators rather than human vs ai."""
        return self.classes != tuple(LABEL_NAMES.values())

    @property
    def features(self) -> FeatureConfig:
        return self.front_end.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of rows: log-mels in dB ``(batch, [1,] n_mels, frames)`` or
        clip-length waveforms ``(batch, [1,] n_samples)``."""
        return self.net(self.front_end(x))

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """P(AI-generated) per input (1 - P(human) when there are several AI classes)."""
        return ai_probability(self(x).float().softmax(dim=-1))

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y, _ = batch
        logits = self(x)
        if stage == "val":  # for the epoch's AUROC (model selection)
            self._val_parts.append((ai_probability(logits.detach().float().softmax(dim=-1)),
                                    (y != 0).long()))
        # Targets outside the closed set (attribution's open-set clips) count for nothing.
        loss = F.cross_entropy(logits.float(), y, ignore_index=UNKNOWN)
        known = y != UNKNOWN
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=len(y))
        if known.any():
            acc = (logits.argmax(dim=-1) == y)[known].float().mean()
            self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=True,
                     batch_size=int(known.sum()))
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor | None:
        if not self.family.trained:
            return None
        return self._step(batch, "train")

    def on_fit_start(self) -> None:
        """Fit a fitted family (oneclass) on the training rows it may see (its own ``fit``
        drops every AI row), through the front end like every batch."""
        if self.family.trained or bool(self.net.fitted):  # fitted: restored on resume
            return
        dm = self.trainer.datamodule
        rows = getattr(dm, "rows", lambda x: x)

        def batches():
            for x, y, _ in dm.train_dataloader():
                with torch.no_grad():
                    yield self.front_end(rows(x.to(self.device))), y.to(self.device)

        n = self.net.fit(batches())
        log.info("%s: fitted on %d human training clips", self.cfg.name, n)
    def on_validation_epoch_start(self) -> None:
        self._val_parts = []

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        """``val/auroc`` of P(AI) over the whole validation set (NaN when it lacks a class)."""
        if not self._val_parts:
            return
        scores, labels = (torch.cat(p) for p in zip(*self._val_parts, strict=True))
        self._val_parts = []
        both = bool(labels.min() != labels.max())
        value = binary_auroc(scores, labels) if both else torch.tensor(float("nan"))
        self.log("val/auroc", value.to(self.device), prog_bar=True)

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        x = batch[0] if isinstance(batch, list | tuple) else batch
        return self.score(x).detach().cpu()

    def on_test_epoch_start(self) -> None:
        self._test_parts = {}
        self.test_outputs = {}
        self._test_clock = time.perf_counter()

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y, index = batch
        probs = self(x).float().softmax(dim=-1)
        self._test_parts.setdefault(dataloader_idx, []).append(
            (ai_probability(probs).detach().cpu(), probs.detach().cpu(), y.cpu(), index.cpu()))

    def on_test_epoch_end(self) -> None:
        for idx, parts in sorted(self._test_parts.items()):
            scores, probs, targets, index = (torch.cat(p) for p in zip(*parts, strict=True))
            order = torch.argsort(index)
            self.test_outputs[self.test_names[idx]] = {
                "scores": scores[order], "probs": probs[order], "targets": targets[order],
                "index": index[order]}
        clips = sum(len(out["scores"]) for out in self.test_outputs.values())
        seconds = time.perf_counter() - getattr(self, "_test_clock", time.perf_counter())
        self.throughput = {"clips": float(clips), "seconds": seconds}
    def configure_optimizers(self):
        if not self.family.trained:
            return None
        params = [p for p in self.parameters() if p.requires_grad]
        cfg = self.cfg
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9,
                                   weight_decay=cfg.weight_decay)
        opt = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        return opt(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def profile(detector: Detector) -> tuple[dict[str, float], str]:
    """What a reader compares families by: parameters (all, trainable) and clips scored per
    second in the test loop, as metrics; the input shape of one row, as text."""
    total, trainable = parameter_count(detector.net)
    values = {"model/params": float(total), "model/trainable_params": float(trainable)}
    seen = detector.throughput
    if seen.get("seconds", 0) > 0:
        values["model/test_clips_per_s"] = seen["clips"] / seen["seconds"]
    return values, "x".join(str(d) for d in (1, *detector.front_end.shape))


def ai_probability(probs: torch.Tensor) -> torch.Tensor:
    """P(AI-generated) from class probabilities whose class 0 is human."""
    return probs[:, 1] if probs.shape[-1] == 2 else 1.0 - probs[:, 0]

