"""What does the detector look at: band occlusion finds a known band, and the analysis runs at
the end of training and as a command, with its files in MLflow."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from deepfake_detect.cli.explain import main as explain_main
from deepfake_detect.config import build
from deepfake_detect.data.features import FeatureConfig, log_mel
from deepfake_detect.errors import ConfigError
from deepfake_detect.explain import ExplainConfig
from deepfake_detect.explain import occlusion as occ
from deepfake_detect.plan import plan
from deepfake_detect.training import train
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


# --- the analysis itself, on inputs whose answer is known ------------------------------------


class BandScorer(nn.Module):
    """P(AI) from the mean level of mel bins [lo, hi) only."""

    def __init__(self, lo: int, hi: int, level: float):
        super().__init__()
        self.lo, self.hi, self.level = lo, hi, level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x[:, 0, self.lo:self.hi].mean(dim=(1, 2)) - self.level)


def band_inputs(lo: int, hi: int, n: int = 40, n_mels: int = 32) -> tuple[torch.Tensor,
                                                                             np.ndarray]:
    """Noise at -40 dB; AI clips (odd) carry +10 dB in mel bins [lo, hi) and nowhere else."""
    gen = torch.Generator().manual_seed(0)
    x = -40 + 3 * torch.randn(n, 1, n_mels, 20, generator=gen)
    labels = np.arange(n) % 2
    x[labels == 1, :, lo:hi] += 10
    return x, labels


@pytest.mark.parametrize("signal", [(10, 15), (22, 27)])
def test_occlusion_peaks_at_the_only_informative_band(signal: tuple[int, int]) -> None:
    lo, hi = signal
    x, labels = band_inputs(lo, hi)
    scorer = BandScorer(lo, hi, level=-35.0)
    band_list = occ.bands(32, width=5, stride=1)
    result = occ.occlude(scorer, x, labels, band_list, fill=-40.0, batch_size=16)
    rows = occ.table(result, FeatureConfig(duration=1.0, n_mels=32))
    assert result.metrics()["auroc"] == pytest.approx(1.0)
    top = occ.peak(rows)
    assert (top["mel_lo"], top["mel_hi"]) == (lo, hi)
    assert top["auroc_drop"] > 0.4 and top["accuracy_drop"] > 0.4
    for row in rows:
        if row["mel_hi"] <= lo or row["mel_lo"] >= hi:  # disjoint from the signal: no effect
            assert row["auroc_drop"] == 0 and row["mean_abs_score_change"] == 0
    assert top["accuracy_drop"] == max(r["accuracy_drop"] for r in rows)


@pytest.mark.slow
def test_occlusion_finds_a_tone_in_hz_through_a_trained_model() -> None:
    """Real log-mels: noise, plus a 3 kHz tone in the AI clips; a linear model learns it and
    occlusion must put the peak on the band whose Hz range holds 3 kHz. (Absolute dB: with
    ``db_ref=max`` the tone would lower every other bin too.)"""
    cfg = FeatureConfig(duration=1.0, n_mels=32, db_ref="one")
    rng = np.random.default_rng(0)
    t = np.arange(cfg.n_samples) / cfg.sample_rate
    labels = np.arange(48) % 2
    waves = [rng.normal(0, 0.1, cfg.n_samples) * rng.uniform(0.3, 1.0)
             + label * 0.02 * np.sin(2 * np.pi * 3000 * t + rng.uniform(0, 6)) for label in labels]
    x = torch.from_numpy(np.stack([log_mel(w, cfg) for w in waves]))[:, None]
    mean, std = x.mean(), x.std()
    linear = nn.Linear(cfg.n_mels, 1)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    opt = torch.optim.Adam(linear.parameters(), lr=0.05)
    y = torch.from_numpy(labels).float()
    for _ in range(150):  # logistic regression on the time-averaged spectrum
        opt.zero_grad()
        logits = linear(((x - mean) / std).mean(dim=3)[:, 0])[:, 0]
        nn.functional.binary_cross_entropy_with_logits(logits, y).backward()
        opt.step()

    def score(batch: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(linear(((batch - mean) / std).mean(dim=3)[:, 0])[:, 0])

    result = occ.occlude(score, x, labels, occ.bands(32, 2, 1), fill=float(mean))
    rows = occ.table(result, cfg)
    top = occ.peak(rows)
    assert result.metrics()["auroc"] > 0.95
    assert top["f_lo_hz"] < 3000 < top["f_hi_hz"] and top["auroc_drop"] > 0.2
    far = [r["auroc_drop"] for r in rows if r["f_hi_hz"] < 2000 or r["f_lo_hz"] > 4500]
    assert max(far) < 0.05


def test_bands_cover_every_bin_and_hz_rises() -> None:
    band_list = occ.bands(64, 4, 3)
    assert band_list[0] == (0, 4) and band_list[-1] == (60, 64)
    covered = {b for lo, hi in band_list for b in range(lo, hi)}
    assert covered == set(range(64))
    rows = [occ.band_hz(FeatureConfig(), lo, hi) for lo, hi in band_list]
    assert all(a[1] < b[1] for a, b in zip(rows, rows[1:], strict=False))
    assert rows[0][0] == 0.0 and rows[-1][2] == pytest.approx(8000.0)


@pytest.mark.parametrize("node,key", [
    ({"band_width": 0}, "explain.band_width"),
    ({"method": "shap"}, "explain.method"),
    ({"mask": "noise"}, "explain.mask"),
    ({"max_clips": 1}, "explain.max_clips"),
    ({"gradcam_layer": "fc"}, "explain.gradcam_layer"),
    ({"width": 3}, "explain.width"),
])
def test_bad_explain_config_names_the_key(node: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        build(ExplainConfig, node, "explain")
    assert key in str(err.value)


@pytest.mark.parametrize("override,key", [
    ("explain.band_width=33", "explain.band_width"),  # TINY has 32 mels
    ("explain.distortions=[tempo]", "explain.distortions"),  # not tested in this run
])
def test_training_config_is_checked_before_work(make_cfg, override: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        plan(make_cfg("eval.distortions=[base,pitch]", override))
    assert key in str(err.value)


# --- end of training and the command ------------------------------------------------------


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


@pytest.mark.parametrize("args,message", [
    (["--model", "/nowhere/model.ckpt"], "model not found"),
    (["--model", "x", "explain.band_width=0"], "explain.band_width"),
    (["--model", "x", "no_such_key=1"], "bad override"),
    (["--model", "x", "distortion=flanger"], "bad override"),
    (["--model", "x", "explain.distortions=[flanger]"], "explain.distortions"),
    (["--model", "x", "just-a-word"], "KEY=VALUE"),
])
def test_command_usage_errors_exit_2_without_traceback(args: list[str], message: str,
                                                       tmp_path: Path, capsys) -> None:
    assert explain_main([*args, f"paths.root={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
