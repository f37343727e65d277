"""The distortion grid: a real Hydra multirun sweep, the report, and iterative training."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from deepfake_detect.cli import report as report_cli
from deepfake_detect.data.distortions import draw_params
from deepfake_detect.data.presets import distortion_preset

pytestmark = pytest.mark.slow  # end to end: trains, sweeps or runs commands

DISTORTIONS = ["base", "pitch", "tempo", "combined"]  # the test distortions
TRAINED = ["base", "combined"]  # the sweep's training distortions: one draws nothing, one all


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """2 training distortions x 2 seeds with Hydra's basic launcher, through the CLI."""
    root = tmp_path_factory.mktemp("grid") / "out"
    cmd = [sys.executable, "-m", "deepfake_detect.cli.train", "-m",
           f"distortion={','.join(TRAINED)}", "seed=1,2", "debug=fast_dev_run",
           "eval.baselines=[]",  # the features' cache alone (baselines: test_trust)
           "trainer.enable_progress_bar=false", "logger.experiment_name=grid",
           f"paths.root={root}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root


def uri(root: Path) -> str:
    return f"sqlite:///{root / 'mlflow.db'}"


def test_sweep_gives_four_finished_runs_with_all_test_distortions(sweep: Path) -> None:
    client = MlflowClient(tracking_uri=uri(sweep))
    experiment = client.get_experiment_by_name("grid")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 4
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags["sweep_id"] for r in runs}) == 1
    cells = {(r.data.params["distortion.name"], r.data.params["seed"]) for r in runs}
    assert cells == {(d, s) for d in TRAINED for s in ("1", "2")}
    results = {json.loads(p.read_text())["run_id"]: json.loads(p.read_text())
               for p in (sweep / "runs").glob("*/result.json")}
    for run in runs:
        for name in DISTORTIONS:  # MLflow holds each job's own test accuracies
            key = f"test/{name}/accuracy"
            assert run.data.metrics[key] == pytest.approx(results[run.info.run_id][key])


def test_each_clip_distortion_and_draw_is_computed_once_for_the_sweep(sweep: Path) -> None:
    results = [json.loads(p.read_text()) for p in (sweep / "runs").glob("*/result.json")]
    assert len(results) == 4
    built = sum(r["data"]["cache"]["built"] for r in results)
    reused = sum(r["data"]["cache"]["reused"] for r in results)
    computed = sum(r["data"]["cache"]["clips_computed"] for r in results)
    clips = sum(results[0]["data"]["clips"][name] for name in ("train", "val", "test/base"))
    tested = results[0]["data"]["clips"]["test/base"]
    # Rows are keyed by clip, distortion and draw, not by split: base draws nothing (each
    # clip once for both seeds); combined draws per seed (each clip once a seed, whichever
    # split it falls in); pitch and tempo, test distortions only, their test clips a seed.
    assert computed == clips + 2 * (clips + 2 * tested)
    assert built + reused == 4 * 6
    second, = [r for r in results if Path(r["run_dir"]).name.startswith("base-seed2-")]
    # the basic launcher's second job: its base rows were all there, its test clips under
    # the three other test distortions (seed 2's draws) were not
    assert second["data"]["cache"]["clips_computed"] == 3 * second["data"]["clips"]["test/base"]


def test_clip_parameters_are_identical_across_jobs(sweep: Path) -> None:
    tables = {}
    for run_dir in (sweep / "runs").glob("*-seed1-*"):
        with (run_dir / "artifacts" / "predictions_combined.csv").open() as handle:
            tables[run_dir.name] = {row["clip_id"]: (row["pitch_semitones"], row["tempo_rate"])
                                    for row in csv.DictReader(handle)}
    assert len(tables) == len(TRAINED)
    first, *others = tables.values()
    assert all(other == first for other in others)
    # ... and each clip its own (not one draw for all).
    assert len({pitch for pitch, _ in first.values()}) == len(first) > 1
    assert len({tempo for _, tempo in first.values()}) == len(first)
    combined = distortion_preset("combined")
    for clip_id, (pitch, tempo) in first.items():
        params = draw_params(combined, 1, clip_id)
        assert float(pitch) == pytest.approx(params["pitch_semitones"], abs=1e-4)
        assert float(tempo) == pytest.approx(params["tempo_rate"], abs=1e-4)
        assert -2 <= float(pitch) <= 2 and 0.8 <= float(tempo) <= 1.2


def test_report_builds_the_matrix_and_a_summary_run(sweep: Path) -> None:
    out = sweep / "report"
    code = report_cli.main(["--tracking-uri", uri(sweep), "--experiment", "grid",
                            "--out", str(out)])
    assert code == 0
    text = (out / "report.md").read_text()
    for metric in ("accuracy", "f1", "eer"):
        assert f"## {metric}" in text
    matrix = text.split(": detection costs")[0]  # the field's cost tables follow the matrix
    rows = [line for line in matrix.splitlines() if line.startswith("| ") and "(2)" in line]
    assert len(rows) == 3 * 2  # 3 metrics x 2 training distortions, every cell over 2 seeds
    assert (out / "heatmap.png").stat().st_size > 10_000
    client = MlflowClient(tracking_uri=uri(sweep))
    experiment = client.get_experiment_by_name("grid")
    summaries = client.search_runs([experiment.experiment_id], "tags.summary = 'true'")
    assert len(summaries) == 1
    # The summary's cells: mean and sample std over the two seeds of the runs' metrics.
    runs = [r for r in client.search_runs([experiment.experiment_id])
            if r.data.tags.get("summary") != "true"]
    logged = summaries[0].data.metrics
    for train in TRAINED:
        for test in ("base", "pitch"):
            values = [r.data.metrics[f"test/{test}/accuracy"] for r in runs
                      if r.data.params["distortion.name"] == train]
            assert len(values) == 2
            cell = f"train_{train}/test_{test}/accuracy"
            assert logged[f"{cell}_mean"] == pytest.approx(np.mean(values))
            assert logged[f"{cell}_std"] == pytest.approx(np.std(values, ddof=1))
            assert f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f} (2)" in text
    names = {a.path for a in client.list_artifacts(summaries[0].info.run_id)}
    assert {"report.md", "heatmap.png"} <= names


def test_report_on_missing_experiment_is_a_clear_error(sweep: Path, capsys) -> None:
    code = report_cli.main(["--tracking-uri", uri(sweep), "--experiment", "nope", "--out",
                        str(sweep / "r2")])
    assert code == 2
    assert "no MLflow experiment 'nope'" in capsys.readouterr().err


def test_iterative_training_evaluates_every_stage(make_cfg) -> None:
    from deepfake_detect.training.iterative import train_iterative

    result = train_iterative(make_cfg("experiment=iterative", "iterative.stages=[base,combined]"))
    stages = result["stages"]
    assert list(stages) == ["1:base", "2:combined"]
    for stage in stages.values():
        for name in DISTORTIONS:
            assert f"test/{name}/accuracy" in stage
    assert stages["2:combined"]["run_dir"] != stages["1:base"]["run_dir"]
    client = MlflowClient(tracking_uri=stages["1:base"]["tracking_uri"])
    second = client.get_run(stages["2:combined"]["run_id"])
    assert second.data.tags["mlflow.parentRunId"] == result["parent_run_id"]
    assert second.data.tags["weights"].startswith("init_from:")
    assert "1:base" not in second.data.tags["weights"]
    history = client.get_metric_history(result["parent_run_id"], "test/pitch/accuracy")
    assert [m.step for m in history] == [1, 2]
    assert Path(result["heatmap"]).is_file()
