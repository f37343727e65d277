"""Every config composes, and bad values fail early with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from deepfake_detect.config import conf_dir
from deepfake_detect.errors import ConfigError
from deepfake_detect.training.plan import plan

CONF_DIR = conf_dir()

GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_config_composes(group: str, option: str, tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"{group}={option}", f"paths.root={tmp_path}"])
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


def test_experiments_are_selectable_from_any_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    names = options("experiment")
    assert "quickstart" in names
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for name in names:
            compose("train", overrides=[f"experiment={name}"])


@pytest.mark.parametrize("override,key", [
    ("features.n_mels=0", "features.n_mels"),
    ("features.hop_length=-5", "features.hop_length"),
    ("features.fmax=99999", "features.fmax"),
    ("data.source.n_clips=-4", "data.source.n_clips"),
    ("data.loader.batch_size=0", "data.loader.batch_size"),
    ("data.split.test=1.5", "data.split.test"),
    ("model.weights=resnet50", "model.weights"),
    ("model.optimizer=lbfgs", "model.optimizer"),
    ("model.freeze_backbone=true", "model.freeze_backbone"),
    ("+trainer.no_such_flag=1", "trainer.no_such_flag"),
    ("+features.n_mel=64", "features.n_mel"),
    ("data.source.name=nope", "data.source.name"),
    ("eval.distortions=[base,flanger]", "eval.distortions"),
    ("distortion.pitch.low=5", "distortion.pitch.low"),
    ("distortion.crop=middle", "distortion.crop"),
])
def test_bad_config_fails_before_heavy_work(make_cfg, override: str, key: str) -> None:
    cfg = make_cfg(override, "distortion=combined")
    with pytest.raises(ConfigError) as err:
        plan(cfg)
    assert key in str(err.value)


def test_imagenet_weights_missing_is_a_clear_error(make_cfg, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    cfg = make_cfg("model.weights=imagenet", "model.freeze_backbone=true")
    with pytest.raises(ConfigError, match="model.weights.*not in torchvision's cache"):
        plan(cfg)
