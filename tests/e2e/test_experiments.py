"""Every experiment in experiments/ runs end to end for one batch (debug=fast_dev_run)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

from deepfake_detect.config import conf_dir, to_plain
from deepfake_detect.training.iterative import is_iterative, train_iterative
from deepfake_detect.training.run import train
from tests.helpers.audio_data import make_fakemusiccaps
from tests.helpers.configs import assert_matches_predictions

pytestmark = pytest.mark.slow  # end to end: trains, sweeps or runs commands

CONF_DIR = conf_dir()

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def rgb_resnet18_file(tmp_path: Path) -> Path:
    """A real torchvision ResNet18 state dict (3-channel stem), as a user would supply one."""
    path = tmp_path / "resnet18-weights.pth"
    torch.manual_seed(0)
    torch.save(resnet18(weights=None).state_dict(), path)
    return path


def extra_overrides(name: str, tmp_path: Path) -> list[str]:
    if name == "seed_replication":  # FakeMusicCaps layout + "ImageNet" weights from a file
        make_fakemusiccaps(tmp_path / "fmc", sunocaps=False)
        return [f"data.source.root={tmp_path / 'fmc'}",
                f"model.weights={rgb_resnet18_file(tmp_path)}", "data.source.n_clips=null"]
    if name == "iterative":
        return ["iterative.stages=[base]"]
    if name == "leave_one_generator_out":  # one job of the sweep
        return ["data.split.holdout_generator=0", "data.source.n_clips=40"]
    return []


def test_every_study_has_an_experiment() -> None:
    assert {"quickstart", "distortion_grid", "iterative", "seed_replication", "kfold",
            "leave_one_generator_out"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_runs_one_batch_end_to_end(name: str, make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(f"experiment={name}", "eval.distortions=[base,combined]",
                   *extra_overrides(name, tmp_path))
    iterative = is_iterative(to_plain(cfg))
    result = train_iterative(cfg)["stages"]["1:base"] if iterative else train(cfg)
    assert_matches_predictions(result, "combined")
    if name == "seed_replication":
        assert cfg.model.freeze_backbone and cfg.features.sample_rate == 22050
        assert Path(result["run_dir"], "model.ckpt").is_file()
