"""Known answers for the statistics: numpy metrics equal the torchmetrics ones, the bootstrap
resamples groups (not rows), degenerate cases give exact intervals, paired comparisons of a
model with itself give 0 and p = 1, McNemar's p by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepfake_detect.evaluation import metrics, stats


def test_numpy_metrics_equal_the_torchmetrics_ones() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 50))
        scores = np.round(rng.random(n), int(rng.integers(1, 4)))  # ties included
        labels = rng.integers(0, 2, n)
        threshold = float(rng.choice([0.3, 0.5, scores[0]]))  # a score exactly at it
        ours = stats.detection_metrics(scores, labels, threshold)
        theirs = metrics.binary_metrics(torch.tensor(scores), torch.tensor(labels), threshold)
        for key in stats.METRICS:
            assert ours[key] == pytest.approx(theirs[key], abs=1e-6, nan_ok=True), key
        assert stats.eer(scores, labels)[1] == pytest.approx(
            metrics.equal_error_rate(torch.tensor(scores).float(), torch.tensor(labels))[1],
            abs=1e-5, nan_ok=True)


def test_auroc_by_hand() -> None:
    # Positives 0.8, 0.35; negatives 0.4, 0.1: pairs (0.8>0.4, 0.8>0.1, 0.35<0.4, 0.35>0.1).
    assert stats.auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert stats.auroc([0.5, 0.5], [0, 1]) == 0.5  # a tie counts half
    assert np.isnan(stats.auroc([0.2, 0.3], [1, 1]))


def test_all_correct_gives_the_interval_one_one() -> None:
    labels = np.array([0] * 20 + [1] * 20)
    result = stats.intervals(labels * 0.9 + 0.05, labels, [f"g{i // 2}" for i in range(40)])
    for key in ("accuracy", "balanced_accuracy", "auroc", "f1"):
        assert (result[key].value, result[key].low, result[key].high) == (1.0, 1.0, 1.0)
    assert result["eer"].high == 0.0
    assert result["accuracy"].n_groups == 20 and result["accuracy"].n_rows == 40


def test_the_bootstrap_resamples_groups_not_rows() -> None:
    """Ten identical windows per song carry the information of one: the interval over songs
    of ten windows each is the interval over the songs themselves, not ten times narrower."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 30)
    scores = np.clip(labels * 0.3 + rng.random(30) * 0.7, 0, 1)
    songs = stats.intervals(scores, labels, [f"s{i}" for i in range(30)], seed=5)
    windows = stats.intervals(np.repeat(scores, 10), np.repeat(labels, 10),
                              [f"s{i}" for i in np.repeat(np.arange(30), 10)], seed=5)
    for key in stats.METRICS:
        assert windows[key].low == pytest.approx(songs[key].low, nan_ok=True)
        assert windows[key].high == pytest.approx(songs[key].high, nan_ok=True)
    as_rows = stats.intervals(np.repeat(scores, 10), np.repeat(labels, 10),
                              [f"w{i}" for i in range(300)], seed=5)
    assert as_rows["accuracy"].high - as_rows["accuracy"].low < 0.6 * (
        songs["accuracy"].high - songs["accuracy"].low)


def test_a_replicate_keeps_both_classes_and_whole_groups() -> None:
    labels = [0, 0, 1, 1, 1, 0]
    groups = ["a", "a", "b", "b", "c", "d"]
    for index in stats.replicates(groups, labels, n_boot=50, seed=1):
        assert {labels[i] for i in index} == {0, 1}
        drawn = [groups[i] for i in index]
        assert drawn.count("a") % 2 == 0 and drawn.count("b") % 2 == 0  # whole groups


def test_paired_difference_of_a_model_with_itself_is_zero() -> None:
    rng = np.random.default_rng(0)
    labels, scores = rng.integers(0, 2, 40), rng.random(40)
    groups = [f"g{i // 4}" for i in range(40)]
    for metric in ("accuracy", "auroc", "balanced_accuracy"):
        same = stats.paired_difference(metric, scores, scores, labels, groups)
        assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)
    assert stats.mcnemar_p(scores >= 0.5, scores >= 0.5) == 1.0


def test_paired_difference_by_hand() -> None:
    """A is right on every clip; B on exactly one of the two clips of every song, so every
    replicate has B at 0.5: the difference is 0.5 with the interval [0.5, 0.5]."""
    labels = np.array([0, 1] * 10)
    a = labels.astype(float)
    b = np.array([0.0, 0.0] * 10)  # right on the human clip, wrong on the AI clip
    diff = stats.paired_difference("accuracy", a, b, labels, [f"s{i // 2}" for i in range(20)])
    assert (diff.value, diff.low, diff.high) == (0.5, 0.5, 0.5)


def test_mcnemar_by_hand() -> None:
    # 6 discordant pairs, all in B's favour: p = 2 * 0.5**6 = 0.03125.
    a = [False] * 6 + [True] * 4
    b = [True] * 6 + [True] * 4
    assert stats.mcnemar_p(a, b) == pytest.approx(0.03125)
    # 3 and 3: p = 1.
    assert stats.mcnemar_p([True] * 3 + [False] * 3, [False] * 3 + [True] * 3) == 1.0
