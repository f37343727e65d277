"""Robustness curves of a trained model: one row per strength with intervals, a plot, the
files in the model's MLflow run; strength 0 reproduces the model's own test metrics."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from deepfake_detect.cli.robustness import main as robustness_main
from deepfake_detect.training.run import train
from tests.helpers.configs import TINY, compose_cfg
from tests.helpers.sources import count_decodes

DATA = ["data.source.n_clips=40", "trainer.limit_test_batches=null", "data.cache.workers=1"]


RUN = [*TINY, *DATA, "eval.distortions=[base]",
       "eval.curves=[{distortion: pitch, values: [-1, 0, 1]}]"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("robustness") / "out"
    try:
        yield {**train(compose_cfg(RUN, root)), "root": root}
    finally:
        torch.set_num_threads(before)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def assert_reproduces_base(finished: dict, table: list[dict[str, str]],
                           predictions: Path) -> None:
    """The strength-0 row has the run's own test/base metrics; its scores are the test's."""
    zero = next(r for r in table if float(r["semitones"]) == 0)
    for metric in ("accuracy", "balanced_accuracy"):
        assert float(zero[metric]) == pytest.approx(finished[f"test/base/{metric}"], abs=1e-6)
    for metric in ("auroc", "eer"):
        assert float(zero[metric]) == pytest.approx(finished[f"test/base/{metric}"], abs=1e-5)
    mine = {r["clip_id"]: float(r["score"]) for r in read_csv(predictions)
            if float(r["semitones"]) == 0}
    test = {r["clip_id"]: float(r["score"]) for r in read_csv(
        Path(finished["run_dir"]) / "artifacts" / "predictions_base.csv")}
    assert mine.keys() == test.keys()
    assert max(abs(mine[k] - test[k]) for k in test) <= 2e-6


@pytest.mark.slow
def test_training_writes_a_curve_per_strength_and_logs_it(finished: dict) -> None:
    out = Path(finished["run_dir"]) / "artifacts" / "robustness"
    table = read_csv(out / "curve_pitch.csv")
    assert [float(r["semitones"]) for r in table] == [-1.0, 0.0, 1.0]
    for row in table:
        assert int(row["n_clips"]) == finished["data"]["clips"]["test/base"]
        for metric in ("accuracy", "balanced_accuracy", "auroc"):
            if row[metric]:
                assert float(row[f"{metric}_low"]) <= float(row[metric]) <= float(
                    row[f"{metric}_high"])
        assert any(k.startswith("recall_human") for k in row)
    assert (out / "curve_pitch.png").stat().st_size > 10_000
    saved = json.loads((out / "curve_pitch.json").read_text())
    assert saved["parameter"] == "semitones" and len(saved["points"]) == 3
    assert_reproduces_base(finished, table, out / "curve_pitch_predictions.csv")
    client = MlflowClient(tracking_uri=finished["tracking_uri"])
    logged = {a.path for a in client.list_artifacts(finished["run_id"], "robustness")}
    assert {f"robustness/curve_pitch.{ext}" for ext in ("csv", "json", "png")} <= logged


@pytest.mark.slow
def test_the_command_gives_a_curve_of_any_model_and_logs_it(finished: dict, tmp_path: Path,
                                                            monkeypatch) -> None:
    root = finished["root"]
    decodes = count_decodes(monkeypatch)
    code = robustness_main(["--model", finished["run_dir"], "--distortion", "pitch",
                            "--values", "-2,0,2", "--out", str(tmp_path / "curve"),
                            "--n-boot", "200", "--threads", "1", f"paths.root={root}",
                            *TINY, *DATA])
    assert code == 0
    assert decodes == []  # the test clips' waveforms were cached by training's curve
    table = read_csv(tmp_path / "curve" / "curve_pitch.csv")
    assert [float(r["semitones"]) for r in table] == [-2.0, 0.0, 2.0]
    assert_reproduces_base(finished, table, tmp_path / "curve" / "curve_pitch_predictions.csv")
    assert (tmp_path / "curve" / "curve_pitch.png").is_file()
    client = MlflowClient(tracking_uri=finished["tracking_uri"])
    saved = client.download_artifacts(finished["run_id"], "robustness/curve_pitch.csv",
                                      str(tmp_path / "dl"))
    assert [float(r["semitones"]) for r in read_csv(Path(saved))] == [-2.0, 0.0, 2.0]


@pytest.mark.slow
@pytest.mark.parametrize("args,message", [
    (["--distortion", "flanger", "--values", "1"], "robustness.distortion"),
    (["--distortion", "realworld", "--values", "1"], "name the effect"),
    (["--distortion", "mp3", "--values", "100"], "bitrate"),
    (["--distortion", "pitch", "--values", "a,b"], "comma-separated"),
])
def test_command_usage_errors_exit_2(finished: dict, args: list[str], message: str,
                                     capsys) -> None:
    code = robustness_main(["--model", finished["run_dir"], *args,
                            f"paths.root={finished['root']}", *TINY, *DATA])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
