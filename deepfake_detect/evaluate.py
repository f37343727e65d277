"""Test a trained detector on every test distortion: metrics, confusion matrices, predictions."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
import torch

from deepfake_detect import io
from deepfake_detect import metrics as M
from deepfake_detect.data.datamodule import AudioDataModule
from deepfake_detect.models.detector import Detector

log = logging.getLogger(__name__)


def choose_threshold(trainer: pl.Trainer, model: Detector, dm: AudioDataModule,
                     rule: float | str) -> tuple[float, str]:
    """The decision threshold: a fixed number, or ``val_eer`` (the EER point on val)."""
    if not isinstance(rule, str):
        return float(rule), f"fixed {float(rule):g}"
    batches = trainer.predict(model, datamodule=dm)  # its predict loader: val
    scores = torch.cat(list(batches))
    labels = torch.from_numpy(dm.entries["val"].labels[: len(scores)])
    _, threshold = M.equal_error_rate(scores, labels)
    if threshold != threshold:  # one class only in val: fall back visibly
        log.warning("the validation set lacks a class; threshold val_eer -> 0.5")
        return 0.5, "fixed 0.5 (val_eer unavailable)"
    return threshold, "val_eer"


def evaluate(trainer: pl.Trainer, model: Detector, dm: AudioDataModule, out_dir: Path,
             threshold: float = 0.5) -> tuple[dict[str, float], list[Path]]:
    """Run the test loop; return ``test/<distortion>/<metric>`` values and artifact files."""
    trainer.test(model, datamodule=dm, verbose=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    flat: dict[str, float] = {}
    files: list[Path] = []
    attribution = model.attribution
    for name in dm.test_names:
        output = model.test_outputs[name]
        scores = output["scores"]
        all_rows = dm.test_rows(name)  # limit_test_batches may have scored only some rows
        rows = [all_rows[int(i)] for i in output["index"]]
        labels = torch.tensor([int(row["label"]) for row in rows])
        values = M.binary_metrics(scores, labels, threshold)
        values.update({f"acc_{gen}": acc for gen, acc in
                       M.per_generator_accuracy(scores.numpy(), rows, threshold).items()})
        flat.update({f"test/{name}/{key}": value for key, value in values.items()})
        counts = M.confusion_counts(scores, labels, threshold)
        title = f"test distortion: {name}  (acc {values['accuracy']:.3f}, n={len(labels)})"
        files += [
            io.write_json(out_dir / f"confusion_{name}.json", counts),
            M.plot_confusion(counts, title, out_dir / f"confusion_{name}.png"),
            M.write_predictions(out_dir / f"predictions_{name}.csv", rows, scores.numpy(),
                                threshold, output["probs"].numpy() if attribution else None,
                                model.classes),
        ]
        if attribution:
            files += _attribution(name, output["probs"], output["targets"], model.classes,
                                  out_dir, flat)
    return flat, files


def _attribution(name: str, probs: torch.Tensor, targets: torch.Tensor,
                 classes: tuple[str, ...], out_dir: Path, flat: dict[str, float]) -> list[Path]:
    """Closed-set attribution metrics (``test/<d>/attribution/<metric>``) and confusion."""
    values, counts = M.attribution_metrics(probs, targets, classes)
    flat.update({f"test/{name}/attribution/{key}": v for key, v in values.items()})
    title = (f"attribution, test distortion: {name}\n(balanced acc "
             f"{values['balanced_accuracy']:.3f}, macro F1 {values['macro_f1']:.3f})")
    return [io.write_json(out_dir / f"attribution_{name}.json", counts),
            M.plot_confusion(counts, title, out_dir / f"attribution_{name}.png")]

