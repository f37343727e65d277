"""The field's metrics on known answers: constructed scores whose minDCF, actDCF, Cllr, minCllr,
ECE, PAV and DET points are computed by hand from the definitions (detection_costs.py's
docstring), and the bootstrap intervals the evaluation gives them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deepfake_detect.evaluation import det_curves, stats
from deepfake_detect.evaluation import detection_costs as D
from deepfake_detect.evaluation.evaluate import Intervals, Scored, level_values
from deepfake_detect.models.calibration import EPS

HUMAN = [0.1, 0.2, 0.3, 0.6]
AI = [0.4, 0.7, 0.8, 0.9]
SCORES = HUMAN + AI
LABELS = [0] * 4 + [1] * 4


def test_min_dcf_by_hand() -> None:
    # Defaults: norm = min(1 * 0.95, 10 * 0.05) = 0.5, so DCF = 1.9 * P_miss + P_fa, with
    # P_miss = humans called AI, P_fa = AI files accepted as human. Calling AI at >= 0.7:
    # no human, 3 of 4 AI files -> 1.9 * 0 + 0.25 = 0.25, the lowest threshold's cost.
    assert D.min_dcf(SCORES, LABELS) == pytest.approx(0.25)
    p_miss, p_fa, cuts = D.error_rates(SCORES, LABELS)
    assert (p_miss[0], p_fa[0]) == (1.0, 0.0) and (p_miss[-1], p_fa[-1]) == (0.0, 1.0)
    assert math.isinf(cuts[-1])
    # Equal costs and prior 0.5: DCF = (P_miss + P_fa) / 1 -> min 0.25 (one error of 4 at
    # >= 0.4 on the human side: 0.25 + 0 at the threshold 0.7: 0 + 0.25).
    assert D.min_dcf(SCORES, LABELS, D.Costs(0.5, 1.0, 1.0)) == pytest.approx(0.25)
    assert D.min_dcf([0.1, 0.9], [0, 1]) == 0.0
    assert D.min_dcf([0.9, 0.1], [0, 1]) == pytest.approx(1.0)  # no better than a constant
    assert math.isnan(D.min_dcf([0.2, 0.3], [1, 1]))


def test_act_dcf_at_the_bayes_threshold() -> None:
    # Call AI when logit(score) > ln(0.95 / 0.5): score > 1.9 / 2.9 = 0.6552.
    assert 1 / (1 + math.exp(-D.ASVSPOOF5.bayes_llr)) == pytest.approx(1.9 / 2.9)
    # Human 0.7 called AI (P_miss 0.5), AI 0.6 accepted (P_fa 0.5): 1.9 * 0.5 + 0.5.
    assert D.act_dcf([0.1, 0.7, 0.6, 0.9], [0, 0, 1, 1]) == pytest.approx(1.45)
    # Scores that are all 0.5: everything accepted as human: P_fa = 1 -> cost 1.
    assert D.act_dcf([0.5] * 4, [0, 1, 0, 1]) == pytest.approx(1.0)
    assert D.act_dcf(SCORES, LABELS) >= D.min_dcf(SCORES, LABELS)


def test_cllr_by_hand() -> None:
    assert D.cllr([0.5] * 4, [0, 1, 0, 1]) == pytest.approx(1.0)  # says nothing: 1 bit
    assert D.cllr([0.2, 0.8], [0, 1]) == pytest.approx(-math.log2(0.8))
    # One confident mistake costs log2(1 + e^llr): score 0.99 on a human file.
    assert D.cllr([0.99, 0.99], [0, 1]) == pytest.approx((-math.log2(0.01) - math.log2(0.99))
                                                         / 2)
    assert D.cllr([0.0, 1.0], [1, 0]) == pytest.approx(-math.log2(EPS), rel=1e-6)  # clipped


def test_pav_and_min_cllr_by_hand() -> None:
    # Labels in score order 0, 1, 0, 1: PAV pools the middle pair to 0.5.
    assert D.pav([1, 2, 3, 4], [0, 1, 0, 1]).tolist() == [0.0, 0.5, 0.5, 1.0]
    # Prior 0.5, so LLR = logit(posterior): the pooled files cost 1 bit each, the others 0:
    # Cllr = (mean(1, 0) + mean(0, 1)) / 2.
    assert D.min_cllr([1, 2, 3, 4], [0, 1, 0, 1]) == pytest.approx(0.5)
    assert D.min_cllr([1, 2, 3, 4], [0, 0, 1, 1]) == 0.0
    assert D.min_cllr([3, 3, 3, 3], [0, 1, 0, 1]) == pytest.approx(1.0)  # ties pooled first
    # An unbalanced set (1 human, 3 AI): labels in score order 1, 1, 0, 1; PAV pools the
    # first three at 2/3. Prior 3/4, so e^-LLR = (1/3 / (2/3)) * (3/4 / (1/4)) = 3/2 there.
    assert D.pav([1, 2, 3, 4], [1, 1, 0, 1]).tolist() == pytest.approx([2 / 3] * 3 + [1.0])
    ai = (2 * math.log2(1 + 3 / 2) + 0.0) / 3  # two pooled AI files, one at posterior 1
    human = math.log2(1 + 2 / 3)
    assert D.min_cllr([1, 2, 3, 4], [1, 1, 0, 1]) == pytest.approx((ai + human) / 2)
    assert D.min_cllr(SCORES, LABELS) <= D.cllr(SCORES, LABELS)


def test_ece_and_reliability_by_hand() -> None:
    # Bin [0.2, 0.3): scores 0.2, 0.2 with one AI: |0.2 - 0.5| = 0.3; bin [0.9, 1]: 0.9, 0.9
    # both AI: |0.9 - 1| = 0.1; each bin holds half the files.
    scores, labels = [0.2, 0.2, 0.9, 0.9], [0, 1, 1, 1]
    assert D.ece(scores, labels) == pytest.approx(0.5 * 0.3 + 0.5 * 0.1)
    assert D.reliability(scores, labels) == [(0.2, 0.5, 2), (0.9, 1.0, 2)]
    assert D.ece([0.0, 1.0], [0, 1]) == 0.0


def test_det_points_on_the_normal_deviate_scale() -> None:
    found = det_curves.points(SCORES, LABELS)
    fpr, tpr, _ = stats.roc(SCORES, LABELS)
    assert np.allclose(found["fnr"], 1 - tpr) and np.allclose(found["fpr"], fpr)
    # Rate 0.5 is deviate 0; 0.8413 is one standard deviation; 0 is clipped to the axis.
    assert det_curves.deviate(np.array([0.5]))[0] == pytest.approx(0.0)
    assert det_curves.deviate(np.array([0.8413447]))[0] == pytest.approx(1.0, abs=1e-6)
    assert det_curves.deviate(np.array([0.0]))[0] == pytest.approx(
        det_curves.deviate(np.array([det_curves.CLIP[0]]))[0])


def test_curves_written_for_every_model(tmp_path) -> None:
    files = det_curves.write_curves(tmp_path, "roc_det_base", "base", {
        "CNN": (SCORES, LABELS), "band_stats": (list(reversed(SCORES)), LABELS),
        "one_class": ([0.1, 0.2], [1, 1])})
    assert [f.name for f in files] == ["roc_det_base.csv", "roc_det_base.png"]
    rows = files[0].read_text().splitlines()
    assert rows[0].split(",") == list(det_curves.COLUMNS)
    assert {r.split(",")[0] for r in rows[1:]} == {"CNN", "band_stats"}


def test_field_metrics_have_group_bootstrap_intervals() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 40)
    scores = np.clip(rng.normal(0.4 + 0.2 * labels, 0.15), 0, 1)
    groups = [f"g{i // 4}" for i in range(80)]
    rows = [{"label": int(y), "group": g, "generator": "x", "clip_id": str(i)}
            for i, (y, g) in enumerate(zip(labels, groups, strict=True))]
    values = level_values(Scored("base", rows, scores), 0.5, Intervals(200, 0.95, 0))
    for metric in D.FIELD_METRICS:
        assert values[f"{metric}_ci_low"] <= values[metric] <= values[f"{metric}_ci_high"], \
            metric
    assert values["min_dcf"] == pytest.approx(D.min_dcf(scores, labels))
    assert values["n_groups_human"] == 10 and values["n_groups_ai"] == 10
    # The replicates are stats.intervals' own: the same seed gives AUROC's interval too.
    auroc = stats.intervals(scores, labels, groups, 0.5, 200, 0.95, 0, ("auroc",))["auroc"]
    assert (values["auroc_ci_low"], values["auroc_ci_high"]) == (auroc.low, auroc.high)


def test_the_metrics_computed_together_equal_each_alone() -> None:
    rng = np.random.default_rng(3)
    for n in (2, 9, 60):
        labels = np.r_[0, 1, rng.integers(0, 2, n - 2)]
        scores = np.round(rng.random(n), 1)  # ties
        together = D.field_metrics(scores, labels)
        alone = {"min_dcf": D.min_dcf(scores, labels), "act_dcf": D.act_dcf(scores, labels),
                 "cllr": D.cllr(scores, labels), "min_cllr": D.min_cllr(scores, labels),
                 "ece": D.ece(scores, labels)}
        assert together == pytest.approx(alone), n
    assert math.isnan(D.field_metrics([0.2, 0.4], [1, 1])["min_dcf"])
