"""Test a trained detector on every test distortion: metrics, confusion matrices, predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from deepfake_detect import metrics as M
from deepfake_detect.data.datamodule import AudioDataModule
from deepfake_detect.models.detector import Detector


def choose_threshold(trainer: pl.Trainer, model: Detector, dm: AudioDataModule,
                     rule: float | str) -> tuple[float, str]:
    """The decision threshold: a fixed number, or ``val_eer`` (the EER point on val)."""
    if not isinstance(rule, str):
        return float(rule), f"fixed {float(rule):g}"
    batches = trainer.predict(model, dataloaders=dm.val_dataloader())
    scores = torch.cat(list(batches))
    labels = torch.from_numpy(dm.entries["val"].labels[: len(scores)])
    _, threshold = M.equal_error_rate(scores, labels)
    if threshold != threshold:  # one class only in val: fall back visibly
        print("[deepfake-detect] val set lacks a class; threshold val_eer -> 0.5")
        return 0.5, "fixed 0.5 (val_eer unavailable)"
    return threshold, "val_eer"


def evaluate(trainer: pl.Trainer, model: Detector, dm: AudioDataModule, out_dir: Path,
             threshold: float = 0.5) -> tuple[dict[str, float], list[Path]]:
    """Run the test loop; return ``test/<distortion>/<metric>`` values and artifact files."""
    trainer.test(model, datamodule=dm, verbose=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    flat: dict[str, float] = {}
    files: list[Path] = []
    for name in dm.test_names:
        output = model.test_outputs[name]
        scores, labels = output["scores"], output["labels"]
        all_rows = dm.test_rows(name)  # limit_test_batches may have scored only some rows
        rows = [all_rows[int(i)] for i in output["index"]]
        values = M.binary_metrics(scores, labels, threshold)
        values.update({f"acc_{gen}": acc for gen, acc in
                       M.per_generator_accuracy(scores.numpy(), rows, threshold).items()})
        flat.update({f"test/{name}/{key}": value for key, value in values.items()})
        counts = M.confusion_counts(scores, labels, threshold)
        title = f"test distortion: {name}  (acc {values['accuracy']:.3f}, n={len(labels)})"
        files += [
            M.write_json(out_dir / f"confusion_{name}.json", counts),
            M.plot_confusion(counts, title, out_dir / f"confusion_{name}.png"),
            M.write_predictions(out_dir / f"predictions_{name}.csv", rows, scores.numpy(),
                                threshold),
        ]
    return flat, files


def metrics_table(flat: dict[str, Any], names: list[str]) -> str:
    """A plain-text table: one row per test distortion, one column per metric."""
    header = f"{'test':<10}" + "".join(f"{m:>19}" for m in M.METRICS)
    lines = [header, "-" * len(header)]
    for name in names:
        cells = "".join(f"{flat.get(f'test/{name}/{m}', float('nan')):>19.4f}"
                        for m in M.METRICS)
        lines.append(f"{name:<10}{cells}")
    return "\n".join(lines)
