"""Detection metrics (torchmetrics), confusion matrices and prediction tables.

Scores are P(AI-generated); a clip is called AI-generated when its score >= threshold.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import numpy as np
import torch
from torchmetrics.functional import classification as C

from deepfake_detect import LABEL_NAMES, atomic
from deepfake_detect.evaluation.aggregate import file_key

METRICS = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "auroc", "eer")


def equal_error_rate(scores: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(EER, threshold at the EER) from the ROC curve; NaN when a class is missing."""
    if labels.min() == labels.max():
        return float("nan"), float("nan")
    fpr, tpr, thresholds = C.binary_roc(scores, labels)
    fnr = 1 - tpr
    diff = fpr - fnr
    i = int(torch.nonzero(diff >= 0)[0]) if bool((diff >= 0).any()) else len(diff) - 1
    if i == 0:
        return float(fpr[0]), float(thresholds[0].clamp(max=1.0))
    # Linear interpolation between the two ROC points around the crossing.
    d0, d1 = float(diff[i - 1]), float(diff[i])
    w = d0 / (d0 - d1) if d0 != d1 else 0.0
    eer = float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1]))
    threshold = float(thresholds[i - 1] + w * (thresholds[i] - thresholds[i - 1]))
    return eer, min(threshold, 1.0)


def binary_metrics(scores: torch.Tensor, labels: torch.Tensor,
                   threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, balanced accuracy, precision, recall, F1, AUROC and EER for P(AI) scores
    (a score >= ``threshold`` is a decision for AI-generated)."""
    scores = scores.float()
    labels = labels.long()
    both = bool(labels.min() != labels.max())
    # Hard decisions here: torchmetrics thresholds float scores with ``>``, not ``>=``.
    predicted = (scores >= threshold).long()
    # Balanced accuracy: mean recall over the classes present (sklearn's definition; with one
    # class only, torchmetrics' macro average would count the absent class's recall as 0).
    recalls = [(predicted[labels == c] == c).float().mean() for c in (0, 1)
               if bool((labels == c).any())]
    out = {
        "accuracy": C.binary_accuracy(predicted, labels),
        "balanced_accuracy": torch.stack(recalls).mean(),
        "precision": C.binary_precision(predicted, labels),
        "recall": C.binary_recall(predicted, labels),
        "f1": C.binary_f1_score(predicted, labels),
        "auroc": C.binary_auroc(scores, labels) if both else torch.tensor(float("nan")),
    }
    result = {key: float(value) for key, value in out.items()}
    result["eer"], result["eer_threshold"] = equal_error_rate(scores, labels)
    return result


def per_generator_accuracy(scores: np.ndarray, rows: list[dict[str, Any]],
                           threshold: float = 0.5) -> dict[str, float]:
    """Share of each generator's clips classified correctly (specificity for ``human``)."""
    correct: dict[str, list[bool]] = {}
    for score, row in zip(scores, rows, strict=True):
        predicted = int(score >= threshold)
        correct.setdefault(str(row["generator"]), []).append(predicted == int(row["label"]))
    return {gen: float(np.mean(hits)) for gen, hits in sorted(correct.items())}


def attribution_metrics(probs: torch.Tensor, targets: torch.Tensor,
                        classes: tuple[str, ...] | list[str]) -> tuple[dict[str, float],
                                                                       dict[str, Any]]:
    """Closed-set attribution: accuracy, balanced accuracy (mean recall over the classes
    present in ``targets``), macro F1 (over the same classes) and the confusion matrix with
    rows normalised. Targets < 0 (generators outside the closed set) are left out."""
    known = targets >= 0
    n = len(classes)
    matrix = C.multiclass_confusion_matrix(probs[known].argmax(dim=-1), targets[known].long(),
                                           num_classes=n).double()
    support, predicted, hits = matrix.sum(dim=1), matrix.sum(dim=0), matrix.diagonal()
    present = support > 0
    recall = torch.where(present, hits / support.clamp(min=1), torch.zeros_like(hits))
    precision = torch.where(predicted > 0, hits / predicted.clamp(min=1), torch.zeros_like(hits))
    f1 = torch.where(precision + recall > 0,
                     2 * precision * recall / (precision + recall).clamp(min=1e-12),
                     torch.zeros_like(hits))
    total = float(support.sum())
    nan = float("nan")
    values = {
        "accuracy": float(hits.sum()) / total if total else nan,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else nan,
        "macro_f1": float(f1[present].mean()) if present.any() else nan,
        "left_out": float((~known).sum()),
    }
    values.update({f"recall_{name}": float(recall[i]) for i, name in enumerate(classes)
                   if present[i]})
    normalised = matrix / support.clamp(min=1).unsqueeze(1)
    counts = {"labels": list(classes), "rows": "true", "columns": "predicted",
              "normalised": "rows", "matrix": matrix.long().tolist(),
              "row_normalised": normalised.tolist(), "left_out_open_set": int((~known).sum())}
    return values, counts


def confusion_counts(scores: torch.Tensor, labels: torch.Tensor,
                     threshold: float = 0.5) -> dict[str, Any]:
    """Confusion matrix counts (score >= threshold is AI): rows true, columns predicted."""
    matrix = C.binary_confusion_matrix((scores >= threshold).long(), labels.long())
    return {"labels": [LABEL_NAMES[0], LABEL_NAMES[1]], "rows": "true", "columns": "predicted",
            "threshold": threshold, "matrix": matrix.tolist()}


def plot_confusion(counts: dict[str, Any], title: str, path: Path) -> Path:
    """A labelled confusion-matrix heatmap PNG with counts and row percentages."""
    matrix = np.array(counts["matrix"], dtype=float)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    names = counts["labels"]
    side = 3.2 + 0.75 * len(names)
    fig, ax = plt.subplots(figsize=(side + 0.4, side), dpi=120)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), labels=names, rotation=30 if len(names) > 2 else 0,
                  ha="right" if len(names) > 2 else "center")
    ax.set_yticks(range(len(names)), labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, f"{int(matrix[i, j])}\n{share[i, j]:.0%}", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return atomic.save_figure(fig, path)


def write_predictions(path: Path, rows: list[dict[str, Any]], scores: np.ndarray,
                      threshold: float = 0.5, probs: np.ndarray | None = None,
                      classes: tuple[str, ...] | list[str] = ()) -> Path:
    """predictions CSV: clip_id, group, file, generator, label, score, prediction, distortion
    params; with ``probs`` (attribution), the predicted class and one probability column per
    class."""
    param_keys = sorted({key for row in rows for key in row.get("params", {})})
    class_cols = ["predicted_class", *(f"p_{name}" for name in classes)] if probs is not None \
        else []
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["clip_id", "group", "file", "generator", "label", "score", "prediction",
                     *class_cols, *param_keys])
    for i, (row, score) in enumerate(zip(rows, scores, strict=True)):
        params = row.get("params", {})
        attribution = [] if probs is None else [
            classes[int(np.argmax(probs[i]))], *(f"{p:.6f}" for p in probs[i])]
        writer.writerow([row["clip_id"], row.get("group", ""), file_key(row), row["generator"],
                         row["label"], f"{score:.6f}", int(score >= threshold), *attribution,
                         *(param_text(params[k]) if k in params else "" for k in param_keys)])
    return atomic.write_text(path, buffer.getvalue())


def write_file_predictions(path: Path, rows: list[dict[str, Any]], scores: np.ndarray,
                           threshold: float = 0.5) -> Path:
    """Per-file predictions CSV: file, group, generator, label, n_windows, score (aggregated
    over the file's windows), prediction."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["file", "group", "generator", "label", "n_windows", "score", "prediction"])
    for row, score in zip(rows, scores, strict=True):
        writer.writerow([row["file"], row["group"], row["generator"], row["label"],
                         row["n_windows"], f"{score:.6f}", int(score >= threshold)])
    return atomic.write_text(path, buffer.getvalue())


def param_text(value: Any) -> str:
    """A drawn distortion parameter as a predictions CSV cell (numbers to 4 decimals)."""
    return f"{value:.4f}" if isinstance(value, int | float) and not isinstance(value, bool) \
        else str(value)
