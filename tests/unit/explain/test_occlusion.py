"""What does the detector look at: band occlusion finds a known band, and bad explain
configs fail with the key named (the analysis of a trained run: tests/e2e)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deepfake_detect.cli.explain import main as explain_main
from deepfake_detect.config import build
from deepfake_detect.data.features import FeatureConfig, log_mel
from deepfake_detect.errors import ConfigError
from deepfake_detect.explain import ExplainConfig
from deepfake_detect.explain import occlusion as occ
from deepfake_detect.training.plan import plan


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
