"""Known answers for every detection and attribution metric, worked out by hand below.

Scores are P(AI-generated); a clip is called AI-generated when its score >= threshold.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from deepfake_detect.evaluation.metrics import (
    attribution_metrics,
    binary_metrics,
    confusion_counts,
    equal_error_rate,
    per_generator_accuracy,
    write_predictions,
)

# Ten clips: four human (label 0), six AI (label 1).
#   human scores: 0.1 0.3 0.6 0.45        AI scores: 0.2 0.55 0.7 0.9 0.95 0.4
SCORES = [0.1, 0.3, 0.6, 0.45, 0.2, 0.55, 0.7, 0.9, 0.95, 0.4]
LABELS = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]


def t(values: list[float] | list[int]) -> torch.Tensor:
    return torch.tensor(values)


def approx(value: float) -> object:
    return pytest.approx(value, abs=1e-6)


def test_binary_metrics_at_the_default_threshold() -> None:
    values = binary_metrics(t(SCORES), t(LABELS))
    # threshold 0.5: human 0.6 -> FP; human 0.1 0.3 0.45 -> TN (3)
    #                AI 0.55 0.7 0.9 0.95 -> TP (4); AI 0.2 0.4 -> FN (2)
    assert values["accuracy"] == approx(7 / 10)  # (TP + TN) / n = (4 + 3) / 10
    assert values["precision"] == approx(4 / 5)  # TP / (TP + FP) = 4 / 5
    assert values["recall"] == approx(4 / 6)  # TP / (TP + FN) = 4 / 6
    assert values["f1"] == approx(8 / 11)  # 2TP / (2TP + FP + FN) = 8 / (8 + 1 + 2)
    # (specificity + recall) / 2 = (3/4 + 4/6) / 2 = 17/24
    assert values["balanced_accuracy"] == approx(17 / 24)
    # AUROC: share of (AI, human) pairs ranked right. AI 0.2 beats 1 human (0.1), 0.4 beats 2,
    # 0.55 beats 3, 0.7 0.9 0.95 beat all 4: (1 + 2 + 3 + 4 + 4 + 4) / (6 * 4) = 18/24
    assert values["auroc"] == approx(18 / 24)
    # EER, down the sorted scores (fpr = FP/4, fnr = FN/6 when the threshold is that score):
    #   0.6 -> fpr 1/4, fnr 3/6: diff fpr - fnr = -1/4
    #   0.55 -> fpr 1/4, fnr 2/6: diff -1/12;  0.45 -> fpr 2/4, fnr 2/6: diff +1/6
    # crossing between 0.55 and 0.45 at w = (1/12) / (1/12 + 1/6) = 1/3:
    #   EER = 1/4 + 1/3 * (2/4 - 1/4) = 1/3; threshold = 0.55 + 1/3 * (0.45 - 0.55) = 0.51667
    assert values["eer"] == approx(1 / 3)
    assert values["eer_threshold"] == approx(0.55 - 0.1 / 3)


def test_binary_metrics_at_a_non_default_threshold() -> None:
    values = binary_metrics(t(SCORES), t(LABELS), threshold=0.25)
    # threshold 0.25: human 0.3 0.6 0.45 -> FP (3), 0.1 -> TN (1)
    #                 AI 0.55 0.7 0.9 0.95 0.4 -> TP (5), 0.2 -> FN (1)
    assert values["accuracy"] == approx(6 / 10)
    assert values["precision"] == approx(5 / 8)
    assert values["recall"] == approx(5 / 6)
    assert values["f1"] == approx(10 / 14)  # 2*5 / (2*5 + 3 + 1)
    assert values["balanced_accuracy"] == approx((1 / 4 + 5 / 6) / 2)  # 13/24
    # Threshold-free metrics do not move.
    assert values["auroc"] == approx(18 / 24) and values["eer"] == approx(1 / 3)


def test_eer_interpolates_between_roc_points() -> None:
    # human 0.1 0.5 0.7, AI 0.6 0.9. Down the sorted scores (fpr = FP/3, fnr = FN/2):
    #   0.9 -> fpr 0, fnr 1/2: diff -1/2;  0.7 -> fpr 1/3, fnr 1/2: diff -1/6
    #   0.6 -> fpr 1/3, fnr 0: diff +1/3
    # w = (1/6) / (1/6 + 1/3) = 1/3: EER = 1/3 + 1/3 * 0 = 1/3,
    # threshold = 0.7 + 1/3 * (0.6 - 0.7) = 2/3
    eer, threshold = equal_error_rate(t([0.1, 0.5, 0.7, 0.6, 0.9]), t([0, 0, 0, 1, 1]))
    assert eer == approx(1 / 3) and threshold == approx(2 / 3)
    # At a score where fpr == fnr exactly, the EER is that point: human 0.1 0.2 0.3 0.6,
    # AI 0.4 0.7 0.8 0.9; at 0.6: FP 1 of 4, FN 1 (0.4) of 4.
    eer, threshold = equal_error_rate(t([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9]),
                                      t([0, 0, 0, 0, 1, 1, 1, 1]))
    assert eer == approx(0.25) and threshold == approx(0.6)


def test_perfect_separation() -> None:
    values = binary_metrics(t([0.1, 0.2, 0.8, 0.9]), t([0, 0, 1, 1]))
    assert values["auroc"] == 1.0 and values["eer"] == 0.0
    # The EER point is the lowest AI score: everything >= 0.8 is AI, nothing human is.
    assert values["eer_threshold"] == approx(0.8)
    for key in ("accuracy", "balanced_accuracy", "precision", "recall", "f1"):
        assert values[key] == 1.0, key


def test_fully_inverted_scores() -> None:
    values = binary_metrics(t([0.8, 0.9, 0.1, 0.2]), t([0, 0, 1, 1]))
    assert values["auroc"] == 0.0 and values["eer"] == approx(1.0)
    for key in ("accuracy", "balanced_accuracy", "precision", "recall", "f1"):
        assert values[key] == 0.0, key


def test_one_class_only_has_no_auroc_or_eer() -> None:
    for labels in ([1, 1, 1], [0, 0, 0]):
        values = binary_metrics(t([0.2, 0.7, 0.9]), t(labels))
        assert math.isnan(values["auroc"]) and math.isnan(values["eer"])
        assert all(map(math.isnan, equal_error_rate(t([0.2, 0.7, 0.9]), t(labels))))
        assert math.isnan(values["eer_threshold"])
    ai = binary_metrics(t([0.2, 0.7, 0.9]), t([1, 1, 1]))
    # All AI: 0.7 and 0.9 right, 0.2 wrong. Balanced accuracy is the recall of the one class
    # present (an absent class's recall is not counted as 0).
    assert ai["accuracy"] == approx(2 / 3) and ai["recall"] == approx(2 / 3)
    assert ai["balanced_accuracy"] == approx(2 / 3) and ai["precision"] == 1.0
    human = binary_metrics(t([0.2, 0.7, 0.9]), t([0, 0, 0]))
    assert human["accuracy"] == approx(1 / 3) and human["balanced_accuracy"] == approx(1 / 3)


def test_ties() -> None:
    # A score equal to the threshold is a decision for AI, in every metric.
    # human 0.2 0.5, AI 0.5 0.9 at 0.5: TN 1, FP 1 (0.5), TP 2 (0.5 0.9), FN 0
    values = binary_metrics(t([0.2, 0.5, 0.5, 0.9]), t([0, 0, 1, 1]))
    assert values["accuracy"] == approx(3 / 4)
    assert values["precision"] == approx(2 / 3) and values["recall"] == 1.0
    assert values["f1"] == approx(4 / 5)  # 2*2 / (2*2 + 1 + 0)
    assert values["balanced_accuracy"] == approx((1 / 2 + 1) / 2)
    # AUROC counts a tied pair as half right: (1 + 1 + 1 + 0.5) / 4
    assert values["auroc"] == approx(0.875)
    # 0.9 -> fpr 0, fnr 1/2 (diff -1/2); 0.5 -> fpr 1/2, fnr 0 (diff +1/2): w = 1/2,
    # EER = 0 + 1/2 * 1/2 = 1/4, threshold = 0.9 + 1/2 * (0.5 - 0.9) = 0.7
    assert values["eer"] == approx(0.25) and values["eer_threshold"] == approx(0.7)
    assert confusion_counts(t([0.2, 0.5, 0.5, 0.9]), t([0, 0, 1, 1]))["matrix"] == [[1, 1],
                                                                                   [0, 2]]
    # Every score tied: no information. AUROC 1/2, and the EER is 1/2 halfway between the
    # ROC's start (threshold 1: fpr 0, fnr 1) and 0.5 (fpr 1, fnr 0).
    flat = binary_metrics(t([0.5] * 4), t([0, 0, 1, 1]))
    assert flat["auroc"] == approx(0.5) and flat["eer"] == approx(0.5)
    assert flat["eer_threshold"] == approx(0.75)
    assert flat["accuracy"] == approx(0.5) and flat["recall"] == 1.0  # all called AI


def test_confusion_counts_rows_true_columns_predicted() -> None:
    counts = confusion_counts(t(SCORES), t(LABELS))
    # [[TN, FP], [FN, TP]] at 0.5 (see test_binary_metrics_at_the_default_threshold)
    assert counts["matrix"] == [[3, 1], [2, 4]]
    assert counts["labels"] == ["human", "ai"]
    assert (counts["rows"], counts["columns"], counts["threshold"]) == ("true", "predicted",
                                                                          0.5)
    assert confusion_counts(t(SCORES), t(LABELS), threshold=0.25)["matrix"] == [[1, 3], [1, 5]]


def test_per_generator_accuracy() -> None:
    scores = np.array([0.2, 0.6, 0.7, 0.4, 0.9, 0.62])
    rows = [{"generator": "human", "label": 0}, {"generator": "human", "label": 0},
            {"generator": "suno", "label": 1}, {"generator": "suno", "label": 1},
            {"generator": "suno", "label": 1}, {"generator": "udio", "label": 1}]
    # 0.5: human 0.2 right, 0.6 wrong -> 1/2; suno 0.7 0.9 right, 0.4 wrong -> 2/3; udio 1/1
    assert per_generator_accuracy(scores, rows) == {"human": approx(0.5),
                                                    "suno": approx(2 / 3), "udio": 1.0}
    # 0.65: human both right -> 1; suno unchanged; udio 0.62 now called human -> 0
    got = per_generator_accuracy(scores, rows, threshold=0.65)
    assert got == {"human": 1.0, "suno": approx(2 / 3), "udio": 0.0}
    assert list(got) == ["human", "suno", "udio"]  # sorted by name
    # A score at the threshold is AI.
    assert per_generator_accuracy(np.array([0.5]), [{"generator": "g", "label": 1}]) == {
        "g": 1.0}


def _probs(predicted: list[int], n: int) -> torch.Tensor:
    """Class probabilities whose argmax is ``predicted`` (not one-hot)."""
    probs = torch.full((len(predicted), n), 0.4 / (n - 1))
    probs[torch.arange(len(predicted)), torch.tensor(predicted)] = 0.6
    return probs


def test_attribution_metrics_over_present_classes() -> None:
    classes = ("human", "a", "b", "c")
    # c is never a target (but predicted once); two open-set clips (target -1) are left out.
    targets = torch.tensor([0, 0, 0, 1, 1, 2, -1, -1])
    predicted = [0, 0, 3, 1, 2, 2, 0, 1]
    values, counts = attribution_metrics(_probs(predicted, 4), targets, classes)
    # Known clips: 6. Confusion (rows true, columns predicted):
    #   human: [2, 0, 0, 1]   a: [0, 1, 1, 0]   b: [0, 0, 1, 0]   c: [0, 0, 0, 0]
    assert counts["matrix"] == [[2, 0, 0, 1], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert counts["left_out_open_set"] == 2 and values["left_out"] == 2
    assert values["accuracy"] == approx(4 / 6)  # diagonal 2 + 1 + 1 of 6
    # recall: human 2/3, a 1/2, b 1 (c absent: not averaged) -> (2/3 + 1/2 + 1) / 3 = 13/18
    assert values["balanced_accuracy"] == approx(13 / 18)
    assert values["recall_human"] == approx(2 / 3) and values["recall_b"] == 1.0
    assert "recall_c" not in values
    # precision (column): human 2/2, a 1/1, b 1/2. F1 = 2PR / (P + R):
    #   human 2*1*(2/3) / (5/3) = 4/5; a 2*1*(1/2) / (3/2) = 2/3; b 2*(1/2)*1 / (3/2) = 2/3
    assert values["macro_f1"] == approx((4 / 5 + 2 / 3 + 2 / 3) / 3)  # 32/45
    assert counts["row_normalised"][0] == [approx(2 / 3), 0.0, 0.0, approx(1 / 3)]
    assert counts["row_normalised"][3] == [0.0, 0.0, 0.0, 0.0]


def test_attribution_metrics_with_only_open_set_targets() -> None:
    values, counts = attribution_metrics(_probs([0, 1], 3), torch.tensor([-1, -1]),
                                         ("human", "a", "b"))
    assert values["left_out"] == 2 and counts["matrix"] == [[0] * 3] * 3
    for key in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert math.isnan(values[key]), key


def test_predictions_csv_decides_score_at_least_threshold(tmp_path: Path) -> None:
    rows = [{"clip_id": "a", "generator": "human", "label": 0, "params": {"tempo_rate": 1.1}},
            {"clip_id": "b", "generator": "suno", "label": 1,
             "params": {"pitch_semitones": -1.23456}},
            {"clip_id": "c", "generator": "suno", "label": 1}]
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.3, 0.5], [0.1, 0.6, 0.3]])
    path = write_predictions(tmp_path / "p.csv", rows, np.array([0.5, 0.4999999, 0.9]),
                             threshold=0.5, probs=probs, classes=("human", "suno", "udio"))
    with path.open() as handle:
        got = list(csv.DictReader(handle))
    assert [r["prediction"] for r in got] == ["1", "0", "1"]  # 0.5 >= 0.5 is AI
    assert [r["predicted_class"] for r in got] == ["human", "udio", "suno"]  # argmax
    assert [r["p_udio"] for r in got] == ["0.100000", "0.500000", "0.300000"]
    assert [(r["pitch_semitones"], r["tempo_rate"]) for r in got] == [
        ("", "1.1000"), ("-1.2346", ""), ("", "")]
    assert not list(tmp_path.glob("*.tmp"))
