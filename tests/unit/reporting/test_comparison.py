"""Paired comparisons between runs give known answers (a run against itself: 0 with p = 1;
constructed predictions: the hand-computed interval and McNemar p), agree with
:func:`stats.paired_difference`, pool seeds by their clips; the report overlays curves and
writes one self-contained report.html from a real sqlite MLflow store."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from deepfake_detect.cli.report import main as report_main
from deepfake_detect.evaluation import stats
from deepfake_detect.reporting import report
from deepfake_detect.reporting.comparison import RunData, Scored, compare_runs, compare_test

N_GROUPS = 12


def scored(scores: dict[str, float], threshold: float = 0.5) -> Scored:
    """Clips ``g<i>-h`` (human) and ``g<i>-a`` (AI) of group ``g<i>``."""
    return Scored({c: (int(c.endswith("-a")), s, c.split("-")[0], "human" if c.endswith("-h")
                       else "dec") for c, s in scores.items()}, threshold)


def perfect() -> dict[str, float]:
    return {f"g{i}-{k}": (0.9 if k == "a" else 0.1) for i in range(N_GROUPS) for k in "ha"}


def half_right() -> dict[str, float]:
    """Every AI clip right (0.9), every human clip wrong (0.8): accuracy 0.5 in any resample
    of groups, and still a perfect ranking (AUROC 1)."""
    return {f"g{i}-{k}": (0.9 if k == "a" else 0.8) for i in range(N_GROUPS) for k in "ha"}


def run(run_id: str, label: str, seed: int, **tests: Scored) -> RunData:
    return RunData(run_id, label, seed, 0.5, dict(tests))


def test_a_run_against_itself_differs_by_nothing_with_p_1() -> None:
    r = run("r1", "base", 0, base=scored(perfect()))
    noisy = {c: float(s) for c, s in zip(perfect(), np.random.default_rng(0).uniform(
        size=2 * N_GROUPS), strict=True)}
    r.tests["pitch"] = scored(noisy)
    results = compare_runs([r], [("r1", "r1")], n_boot=200)
    assert [x.test for x in results] == ["base", "pitch"]
    for x in results:
        assert (x.accuracy.value, x.accuracy.low, x.accuracy.high) == (0.0, 0.0, 0.0)
        assert (x.auroc.value, x.auroc.low, x.auroc.high) == (0.0, 0.0, 0.0)
        assert x.mcnemar_p == 1.0 and x.verdict == "no difference beyond noise"


def test_constructed_predictions_give_the_hand_computed_answer() -> None:
    a, b = run("ra", "base", 1, base=scored(perfect())), run("rb", "combined", 1,
                                                            base=scored(half_right()))
    x, = compare_runs([a, b], [("base", "combined")], n_boot=300)
    # B - A: 0.5 - 1.0 in every resample; AUROC 1 - 1; B wrong where A is right on the 12
    # human clips and never the other way: McNemar p = 2 * 0.5 ** 12.
    assert (x.accuracy.value, x.accuracy.low, x.accuracy.high) == (-0.5, -0.5, -0.5)
    assert (x.auroc.value, x.auroc.low, x.auroc.high) == (0.0, 0.0, 0.0)
    assert x.mcnemar_p == pytest.approx(2 * 0.5**N_GROUPS)
    assert (x.accuracy_a, x.accuracy_b) == (1.0, 0.5)
    assert x.verdict == "base better" and x.accuracy.n_groups == N_GROUPS


def test_a_single_pair_is_stats_paired_difference() -> None:
    rng = np.random.default_rng(3)
    ids = list(perfect())
    labels = np.array([int(c.endswith("-a")) for c in ids])
    sa = np.clip(labels * 0.3 + rng.uniform(size=len(ids)) * 0.7, 0, 1)
    sb = np.clip(labels * 0.5 + rng.uniform(size=len(ids)) * 0.5, 0, 1)
    a = run("ra", "base", 0, base=scored(dict(zip(ids, sa, strict=True)), 0.45))
    b = run("rb", "combined", 0, base=scored(dict(zip(ids, sb, strict=True)), 0.55))
    x = compare_test("base", "combined", "base", [(a, b)], n_boot=300)
    order = np.argsort(ids)  # comparisons line clips up by id
    groups = np.array([c.split("-")[0] for c in ids])[order]
    for metric, mine in (("accuracy", x.accuracy), ("auroc", x.auroc)):
        theirs = stats.paired_difference(metric, sb[order], sa[order], labels[order], groups,
                                         (0.55, 0.45), n_boot=300)
        assert (mine.value, mine.low, mine.high) == pytest.approx(
            (theirs.value, theirs.low, theirs.high))
    right_a, right_b = (sa >= 0.45) == labels, (sb >= 0.55) == labels
    assert x.mcnemar_p == stats.mcnemar_p(right_a, right_b)


def test_seeds_pool_by_their_clips() -> None:
    pairs = [run("a1", "base", 1, base=scored(perfect())),
             run("b1", "combined", 1, base=scored(half_right())),
             run("a2", "base", 2, base=scored(perfect())),
             run("b2", "combined", 2, base=scored(perfect())),
             run("b3", "combined", 3, base=scored(perfect()))]  # no base run for seed 3
    x, = compare_runs(pairs, n_boot=200)  # automatic: each training distortion vs base
    assert (x.a, x.b) == ("base", "combined") and x.pairs == [("a1", "b1"), ("a2", "b2")]
    assert x.accuracy.value == pytest.approx(-0.25)  # (-0.5 * 24 + 0 * 24) / 48
    assert [p["accuracy"].value for p in x.per_pair] == [-0.5, 0.0]
    assert x.mcnemar_p == pytest.approx(2 * 0.5**N_GROUPS)


def test_runs_that_scored_other_clips_are_not_paired() -> None:
    other = {k.replace("g", "x"): v for k, v in perfect().items()}
    a, b = run("ra", "base", 0, base=scored(perfect())), run("rb", "pitch", 0,
                                                            base=scored(other))
    assert compare_runs([a, b], n_boot=50) == []


# --- the report: a real sqlite MLflow store ----------------------------------------------------


def csv_text(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def log_run(client: MlflowClient, experiment: str, label: str, seed: int, scores: dict,
            curve_scores: dict[float, dict], tmp: Path) -> str:
    """A FINISHED run with test predictions CSVs (per window and per file) and a pitch curve,
    as training logs them."""
    run = client.create_run(experiment, tags={"train_distortion": label})
    rid = run.info.run_id
    client.log_param(rid, "seed", seed)
    client.log_metric(rid, "threshold", 0.5)
    client.log_metric(rid, "test/base/accuracy", float(np.mean(
        [(s >= 0.5) == c.endswith("-a") for c, s in scores.items()])))
    client.log_metric(rid, "test/base/acc_dec", 1.0)
    folder = tmp / rid
    (folder / "robustness").mkdir(parents=True)
    rows = [[c, "dec" if c.endswith("-a") else "human", int(c.endswith("-a")), s, int(s >= .5)]
            for c, s in scores.items()]
    (folder / "predictions_base.csv").write_text(
        csv_text(["clip_id", "generator", "label", "score", "prediction"], rows))
    points, pred_rows = [], []
    for value, clip_scores in curve_scores.items():
        acc = float(np.mean([(s >= 0.5) == c.endswith("-a") for c, s in clip_scores.items()]))
        interval = {"value": acc, "low": acc - 0.1, "high": min(1.0, acc + 0.1)}
        points.append({"value": value, "metrics": {"accuracy": interval, "auroc": interval}})
        pred_rows += [[value, c, c.split("-")[0], "dec", int(c.endswith("-a")), s, int(s >= .5)]
                      for c, s in clip_scores.items()]
    (folder / "robustness" / "curve_pitch.json").write_text(json.dumps(
        {"distortion": "pitch", "effect": None, "parameter": "semitones",
         "unit": "semitones", "threshold": 0.5, "points": points}))
    (folder / "robustness" / "curve_pitch_predictions.csv").write_text(csv_text(
        ["semitones", "clip_id", "group", "generator", "label", "score", "prediction"],
        pred_rows))
    # Real runs whose files give several windows also log per-file predictions (no clip_id).
    (folder / "predictions_base_files.csv").write_text(csv_text(
        ["file", "group", "generator", "label", "n_windows", "score", "prediction"],
        [[f"{c}.wav", c.split("-")[0], g, y, 1, s, p] for c, g, y, s, p in rows]))
    client.log_artifact(rid, str(folder / "predictions_base.csv"))
    client.log_artifact(rid, str(folder / "predictions_base_files.csv"))
    for name in ("curve_pitch.json", "curve_pitch_predictions.csv"):
        client.log_artifact(rid, str(folder / "robustness" / name), "robustness")
    client.set_terminated(rid, "FINISHED")
    return rid


def test_report_overlays_curves_and_writes_a_self_contained_page(tmp_path: Path,
                                                                  capsys) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("cmp", artifact_location=(tmp_path / "art").as_uri())
    ids = {}
    for label, scores in (("base", perfect()), ("combined", half_right())):
        for seed in (1, 2):
            ids[label, seed] = log_run(client, experiment, label, seed, scores,
                                       {-2.0: half_right(), 0.0: scores}, tmp_path / "src")
    result = report.report(uri, "cmp", tmp_path / "out", metrics=("accuracy",), n_boot=100)
    verdicts = {(x.test, x.verdict) for x in result["comparisons"]}
    assert ("base", "base better") in verdicts  # combined - base on base: -0.5, always
    assert ("pitch[semitones=-2]", "no difference beyond noise") in verdicts  # same scores
    assert all(len(x.pairs) == 2 for x in result["comparisons"])
    page = result["html"].read_text()
    assert page.count("data:image/png;base64,") >= 2  # heatmap and the pitch curves
    assert not re.search(r'src="(?!data:)', page) and "<link" not in page
    for text in ("Train × test", "Robustness curves", "Paired comparisons", "base better",
                 "Accuracy per generator"):
        assert text in page
    assert (tmp_path / "out" / "curves_pitch.png").stat().st_size > 10_000
    summary = {a.path for a in client.list_artifacts(result["summary_run_id"])}
    assert {"report.html", "comparison.md", "curves_pitch.png"} <= summary
    # The command: an explicit pair of run ids, one run against itself.
    rid = ids["combined", 1]
    assert report_main(["--tracking-uri", uri, "--experiment", "cmp", "--out",
                        str(tmp_path / "self"), "--no-summary-run", "--compare", rid, rid,
                        "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    assert "| base | 0.500 | 0.500 | 0.000 [0.000, 0.000] | 0.000 [0.000, 0.000] | 1 |" in out


def test_predictions_are_read_only_when_some_pair_can_be_compared() -> None:
    from types import SimpleNamespace

    from deepfake_detect.reporting.comparison import needs_predictions

    def mlflow_run(label: str) -> SimpleNamespace:
        return SimpleNamespace(data=SimpleNamespace(tags={"train_distortion": label},
                                                    params={}))

    folds = [mlflow_run("base") for _ in range(5)]  # a k-fold study: nothing to pair
    assert not needs_predictions(folds, None)
    assert needs_predictions(folds, [("r1", "r2")])  # explicit pairs of run ids
    assert needs_predictions([*folds, mlflow_run("combined")], None)
