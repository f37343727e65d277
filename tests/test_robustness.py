"""Robustness curves: one row per strength with intervals, a plot, the files in the model's
MLflow run; strength 0 reproduces the model's own test metrics; each test clip is decoded
once for a whole curve, and a point's rows equal the same test set built straight from the
source."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from deepfake_detect.cli.robustness import join_values
from deepfake_detect.cli.robustness import main as robustness_main
from deepfake_detect.data.datamodule import AudioDataModule
from deepfake_detect.data.distortions import at_strength
from deepfake_detect.data.features import FeatureConfig
from deepfake_detect.data.sources import SyntheticSource
from deepfake_detect.errors import ConfigError
from deepfake_detect.plan import distortion_preset, plan
from deepfake_detect.robustness import Curve, curve_csv, point_of
from deepfake_detect.training import train
from tests.helpers.configs import TINY, compose_cfg

DATA = ["data.source.n_clips=40", "trainer.limit_test_batches=null", "data.cache.workers=1"]
RUN = [*TINY, *DATA, "eval.distortions=[base]",
       "eval.curves=[{distortion: pitch, values: [-1, 0, 1]}]"]


def tiny_dm(root: Path, store: str = "features") -> AudioDataModule:
    data = {"source": {"name": "synthetic", "n_clips": 40, "duration": 1.0},
            "cache": {"dir": str(root), "workers": 1, "store": store}}
    base = distortion_preset("base")
    return AudioDataModule(data, FeatureConfig(duration=1.0, n_mels=32), base, [base], seed=0)


def count_decodes(monkeypatch) -> list[str]:
    """The clip ids the synthetic source decodes from now on (builds run in this process)."""
    seen: list[str] = []
    original = SyntheticSource.load

    def load(self, clip, sample_rate):
        seen.append(clip.clip_id)
        return original(self, clip, sample_rate)

    monkeypatch.setattr(SyntheticSource, "load", load)
    return seen


@pytest.mark.parametrize("store", ["features", "waveform"])
def test_a_curve_decodes_each_clip_once_and_its_rows_equal_a_direct_build(
        tmp_path: Path, monkeypatch, store: str) -> None:
    points = [at_strength(distortion_preset("pitch"), v) for v in (-1.0, 0.0)]
    points += [at_strength(distortion_preset("mp3"), 64.0),
               at_strength(distortion_preset("noise"), 10.0)]
    decodes = count_decodes(monkeypatch)
    dm = tiny_dm(tmp_path / "a", store)
    entries = dm.sets.split_entries("test", points)
    n_test = len(entries[0].rows)
    assert n_test >= 4 and sorted(decodes) == sorted(r["clip_id"] for r in entries[0].rows)
    direct_dm = tiny_dm(tmp_path / "b", store)
    for point, entry in zip(points, entries, strict=True):
        direct = direct_dm.sets.split_entry("test", point)
        assert entry.keys == direct.keys  # the same store keys
        assert np.array_equal(entry.features, direct.features)
        assert entry.rows == direct.rows
    decodes.clear()
    more = dm.sets.split_entries("test", [at_strength(distortion_preset("pitch"), 2.0)])
    assert decodes == [] and len(more[0].rows) == n_test  # the clean waveforms are cached
    decodes.clear()
    assert dm.sets.split_entries("test", points[:2])[0].keys == entries[0].keys
    assert decodes == []  # every entry cached: nothing decoded, not even the clean ones


def test_a_point_has_intervals_per_metric_and_generator() -> None:
    rows = [{"clip_id": f"c{i}", "group": f"g{i // 2}", "label": i % 2,
             "generator": "human" if i % 2 == 0 else ("dec_a" if i % 4 == 1 else "dec_b")}
            for i in range(40)]
    labels = np.array([r["label"] for r in rows])
    perfect = point_of(0.0, labels * 0.8 + 0.1, rows, threshold=0.5, n_boot=200)
    assert perfect.metrics["accuracy"].value == 1.0
    assert (perfect.metrics["accuracy"].low, perfect.metrics["accuracy"].high) == (1.0, 1.0)
    assert set(perfect.recall) == {"human", "dec_a", "dec_b"}
    noisy = point_of(1.0, np.random.default_rng(0).uniform(size=40), rows, 0.5, 200)
    for interval in [*noisy.metrics.values(), *noisy.recall.values()]:
        assert interval.low <= interval.value <= interval.high and interval.n_groups > 1
    text = curve_csv(Curve("pitch", None, "semitones", "semitones", 0.5, [perfect, noisy]))
    table = list(csv.DictReader(text.splitlines()))
    assert [r["semitones"] for r in table] == ["0", "1"]
    assert table[0]["accuracy"] == "1.000000" and table[0]["recall_dec_a_low"] == "1.000000"


@pytest.mark.parametrize("override,key", [
    ("eval.curves=[{distortion: pitch, values: []}]", "eval.curves.0.values"),
    ("eval.curves=[{distortion: flanger, values: [1]}]", "eval.curves.0.distortion"),
    ("eval.curves=[{distortion: realworld, values: [1]}]", "eval.curves.0.effect"),
    ("eval.curves=[{distortion: mp3, values: [100]}]", "eval.curves.0 (mp3).effects.0.bitrate"),
    ("eval.curves=[{distortion: pitch, values: [1], speed: 2}]", "eval.curves.0.speed"),
])
def test_bad_curves_fail_before_heavy_work(make_cfg, override: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        plan(make_cfg(override))
    assert key in str(err.value)


def test_values_may_start_with_a_minus_sign() -> None:
    assert join_values(["--model", "m", "--values", "-4,-2,0", "seed=1"]) == [
        "--model", "m", "--values=-4,-2,0", "seed=1"]


# --- end to end: a tiny trained model ---------------------------------------------------------


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
