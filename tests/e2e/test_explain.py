"""The explain analysis at the end of training and as a command, with its files in MLflow."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from deepfake_detect.cli.explain import main as explain_main
from deepfake_detect.data.features import FeatureConfig
from deepfake_detect.explain import occlusion as occ
from deepfake_detect.training.run import train
from tests.helpers.configs import TINY, compose_cfg

RUN = [*TINY, "eval.distortions=[base,pitch]", "explain.enabled=true",
       "explain.distortions=[base]", "explain.n_examples=2", "explain.steps=4"]


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread: on a busy 2-core machine two threads are many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, single_thread) -> dict:
    """One tiny run with explain enabled, shared by the tests that read what it left."""
    root = tmp_path_factory.mktemp("explain") / "out"
    return {**train(compose_cfg(RUN, root)), "root": root}


@pytest.mark.slow
def test_training_logs_occlusion_and_saliency_to_mlflow(finished: dict) -> None:
    client = MlflowClient(tracking_uri=finished["tracking_uri"])
    run = client.get_run(finished["run_id"])
    assert run.info.status == "FINISHED"
    assert not any(key.startswith("explain.") for key in run.data.params)
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"confusion_base.png", "explain"} <= top
    files = {a.path for a in client.list_artifacts(run.info.run_id, "explain")}
    assert {f"explain/{name}" for name in ("occlusion_base.csv", "occlusion_base.json",
                                           "occlusion_base.png", "saliency_base.png",
                                           "saliency_base.json", "examples_base.png")} <= files
    assert not any("pitch" in f for f in files)  # explain.distortions=[base]
    local = Path(client.download_artifacts(run.info.run_id, "explain/occlusion_base.csv"))
    with local.open() as handle:
        rows = list(csv.DictReader(handle))
    # One row per band of the default 4-bin bands at stride 2, with that band's Hz range.
    band_list = occ.bands(32, 4, 2)
    assert [(int(r["mel_lo"]), int(r["mel_hi"])) for r in rows] == band_list
    features = FeatureConfig(duration=1.0, n_mels=32)
    for row, (lo, hi) in zip(rows, band_list, strict=True):
        f_lo, f_centre, f_hi = occ.band_hz(features, lo, hi)
        assert (float(row["f_lo_hz"]), float(row["f_centre_hz"]), float(row["f_hi_hz"])) == (
            pytest.approx(f_lo, abs=0.06), pytest.approx(f_centre, abs=0.06),
            pytest.approx(f_hi, abs=0.06))  # the table rounds to 0.1 Hz
    centres = [float(r["f_centre_hz"]) for r in rows]
    assert centres == sorted(centres) and centres[-1] < 8000
    # Unmasked, the analysis scores the test set as the test loop did; each drop is the
    # unmasked value minus the masked one.
    summary = json.loads(Path(client.download_artifacts(
        run.info.run_id, "explain/occlusion_base.json")).read_text())
    unmasked = summary["unmasked"]
    assert unmasked["n"] == finished["data"]["clips"]["test/base"]
    assert unmasked["accuracy"] == pytest.approx(finished["test/base/accuracy"])
    assert unmasked["auroc"] == pytest.approx(finished["test/base/auroc"], nan_ok=True)
    for row in rows:
        assert float(row["auroc_drop"]) == pytest.approx(
            unmasked["auroc"] - float(row["auroc"]), abs=1e-5, nan_ok=True)
        assert float(row["accuracy_drop"]) == pytest.approx(
            unmasked["accuracy"] - float(row["accuracy"]), abs=1e-5)
    png = Path(client.download_artifacts(run.info.run_id, "explain/saliency_base.png"))
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_command_explains_another_distortion_into_the_models_run(finished: dict,
                                                                 capsys) -> None:
    root = finished["root"]  # a waveform cache: the DataModule computes the log-mels
    code = explain_main(["--model", finished["run_dir"], "--threads", "1", f"paths.root={root}",
                         *TINY, "distortion=pitch", "data.cache.store=waveform",
                         "explain.method=gradcam", "explain.mask=floor",
                         "explain.n_examples=0"])
    assert code == 0, capsys.readouterr().err
    out = root / "explain" / finished["run_id"]
    assert {"occlusion_synthetic-pitch.csv", "occlusion_synthetic-pitch.png",
            "saliency_synthetic-pitch.png"} <= {p.name for p in out.iterdir()}
    saliency = json.loads((out / "saliency_synthetic-pitch.json").read_text())
    assert saliency["method"] == "gradcam"
    # Groups: the clips explained, by class and by generator, each with a profile over the
    # 32 mel bins and over the frames.
    n = json.loads((out / "occlusion_synthetic-pitch.json").read_text())["unmasked"]["n"]
    groups = saliency["groups"]
    assert groups["human"]["n"] + groups["ai"]["n"] == n
    assert sum(g["n"] for name, g in groups.items() if name.startswith("generator:")) == \
        groups["ai"]["n"]
    for group in groups.values():
        assert len(group["mel"]) == 32 == len(saliency["mel_centres_hz"])
        # Maps sum to one per clip (zero where Grad-CAM is all zero): the mean map's mel
        # profile (a mean over frames) sums to at most 1 / frames.
        assert 0 <= sum(group["mel"]) * len(group["time"]) <= 1 + 1e-4
    client = MlflowClient(tracking_uri=finished["tracking_uri"])
    files = {a.path for a in client.list_artifacts(finished["run_id"], "explain")}
    assert "explain/occlusion_synthetic-pitch.csv" in files


@pytest.mark.slow
def test_enabling_explain_on_a_finished_run_points_to_the_command(finished: dict,
                                                                  caplog) -> None:
    with caplog.at_level(logging.INFO, logger="deepfake_detect"):
        again = train(compose_cfg(RUN, finished["root"]))
    assert again["run_id"] == finished["run_id"]
    assert f"deepfake-detect-explain --model {finished['run_dir']}" in caplog.text
