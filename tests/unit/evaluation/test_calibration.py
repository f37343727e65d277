"""Calibration and fusion on constructed scores: a miscalibrated model (well-ranked scores
passed through a distorting monotone map) is calibrated on validation and its test ECE falls
by a stated margin; the map survives the bundle's weights-only round trip; the fusion of two
detectors that see different cues beats each and is reported as a model row with its
interval, beside the ROC/DET and reliability figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepfake_detect.evaluation import detection_costs as D
from deepfake_detect.evaluation import fusion, stats
from deepfake_detect.evaluation.evaluate import Intervals, Scored
from deepfake_detect.evaluation.field_eval import Scores, Setting, extras
from deepfake_detect.models import calibration as calib

MARGIN = 0.10  # calibration lowers test ECE at least this much on the constructed model


def miscalibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, labels): the class-conditional log-likelihood ratio of N(+-1, 1) is 2x, so
    sigmoid(2x) is calibrated; cubing it makes every score far too low (AI files at ~0.3)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    x = rng.normal(np.where(labels == 1, 1.0, -1.0), 1.0)
    return (1 / (1 + np.exp(-2 * x))) ** 3, labels


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_lowers_test_ece_by_the_margin(method: str) -> None:
    val_scores, val_labels = miscalibrated(2000, 0)
    test_scores, test_labels = miscalibrated(2000, 1)
    fitted = calib.fit(method, val_scores, val_labels)
    calibrated = calib.apply(fitted, test_scores)
    before, after = D.ece(test_scores, test_labels), D.ece(calibrated, test_labels)
    assert before > 0.15, before
    assert after <= before - MARGIN and after < 0.05, (before, after)
    assert D.cllr(calibrated, test_labels) < D.cllr(test_scores, test_labels)
    assert D.act_dcf(calibrated, test_labels) <= D.act_dcf(test_scores, test_labels)
    if method == "platt":  # strictly monotone: the ranking is untouched
        assert stats.auroc(calibrated, test_labels) == pytest.approx(
            stats.auroc(test_scores, test_labels))


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_the_calibration_round_trips_through_the_bundle(method: str, tmp_path) -> None:
    scores, labels = miscalibrated(500, 2)
    fitted = calib.fit(method, scores, labels)
    path = tmp_path / "model.ckpt"
    torch.save({"calibration": fitted}, path)
    loaded = torch.load(path, weights_only=True)["calibration"]
    assert np.array_equal(calib.apply(loaded, scores), calib.apply(fitted, scores))
    # The threshold on raw scores makes the same decisions as the calibrated threshold.
    for threshold in (0.2, 0.5, 0.8):
        raw = calib.raw_threshold(fitted, threshold)
        same = (calib.apply(fitted, scores) >= threshold) == (scores >= raw)
        assert same.mean() > 0.99, (threshold, raw)


def test_no_calibration_is_the_identity_and_one_class_is_refused_softly() -> None:
    scores = np.array([0.1, 0.7])
    assert calib.fit("none", scores, [0, 1]) is None
    assert np.array_equal(calib.apply(None, scores), scores)
    assert calib.fit("platt", scores, [1, 1]) is None  # warned; scores stay uncalibrated
    assert calib.raw_threshold(None, 0.3) == 0.3


def two_cues(n: int, seed: int) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Rows and two detectors' scores: each reads its own half of the evidence."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    rows = [{"clip_id": f"{seed}-{i}", "label": int(y), "group": f"g{i // 3}",
             "generator": "x"} for i, y in enumerate(labels)]
    shift = np.where(labels == 1, 0.8, -0.8)
    return rows, {"CNN": 1 / (1 + np.exp(-(shift + rng.normal(0, 1, n)))),
                  "band_stats": 1 / (1 + np.exp(-(shift + rng.normal(0, 1, n))))}


def test_fusion_beats_each_detector_and_is_a_row_with_its_interval(tmp_path) -> None:
    val_rows, val_scores = two_cues(600, 0)
    test_rows, test_scores = two_cues(600, 1)
    scores = Scores(tests={m: {"base": Scored("base", test_rows, s)}
                           for m, s in test_scores.items()},
                    val={m: Scored("val", val_rows, s) for m, s in val_scores.items()})
    setting = Setting(Intervals(200, 0.95, 0), D.ASVSPOOF5, "mean", 16000, fuse=True)
    flat, figures, fused = extras(scores, ["base"], setting, tmp_path)
    labels = [r["label"] for r in test_rows]
    best_single = max(stats.auroc(s, labels) for s in test_scores.values())
    assert flat["fusion/test/base/auroc"] > best_single + 0.03, (flat, best_single)
    assert flat["fusion/test/base/auroc_ci_low"] < flat["fusion/test/base/auroc"] \
        < flat["fusion/test/base/auroc_ci_high"]
    assert flat["fusion/test/base/min_dcf_ci_low"] <= flat["fusion/test/base/min_dcf"]
    assert flat["fusion/weight/CNN"] > 0 and flat["fusion/weight/band_stats"] > 0
    assert {f.name for f in figures} == {"roc_det_base.png", "roc_det_base.csv",
                                         "reliability_base.png"}
    assert [f.name for f in fused] == ["fusion_base.csv"]
    assert "fusion" in {line.split(",")[0] for line in
                        (tmp_path / "curves" / "roc_det_base.csv").read_text().splitlines()}


def test_fusion_needs_two_models_and_both_classes() -> None:
    with pytest.raises(Exception, match="at least two models"):
        fusion.fit({"CNN": {"a": 0.2, "b": 0.9}}, {"a": 0, "b": 1})
