"""What makes two cache entries, or two runs, the same: everything upstream that changes the
result is in the key; paths, loggers and loader settings are not."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from omegaconf import OmegaConf

from deepfake_detect import runs
from deepfake_detect.data.cache import FeatureCache, entry_key
from deepfake_detect.data.clips import Clip

PARTS = {"source": {"source": "synthetic", "seed": 0}, "split": "train",
         "clips": ["c0", "c1"], "distortion": {"name": "pitch", "pitch": {"low": -2,
                                                                         "high": 2}},
         "distortion_seed": 0, "features": {"n_mels": 32, "sample_rate": 16000}}


def changed(path: str, value: Any) -> dict[str, Any]:
    """PARTS with the (dotted) ``path`` set to ``value``."""
    parts = copy.deepcopy(PARTS)
    *parents, last = path.split(".")
    node = parts
    for key in parents:
        node = node[key]
    node[last] = value
    return parts


def test_entry_key_is_stable_and_order_free() -> None:
    assert entry_key(PARTS) == entry_key(copy.deepcopy(PARTS))
    assert entry_key(dict(reversed(list(PARTS.items())))) == entry_key(PARTS)
    assert len(entry_key(PARTS)) == 64


@pytest.mark.parametrize(("path", "value"), [
    ("distortion.name", "tempo"), ("distortion.pitch.high", 3), ("distortion", None),
    ("distortion_seed", 1), ("split", "test"), ("clips", ["c0"]), ("features.n_mels", 64),
    ("source.seed", 1)])
def test_entry_key_changes_with_everything_upstream(path: str, value: Any) -> None:
    assert entry_key(changed(path, value)) != entry_key(PARTS)


def test_two_distortions_are_two_entries(tmp_path) -> None:
    """The same clips under another distortion are built again, not read back."""
    clips = [Clip(f"c{i}", i % 2, f"g{i}", "human") for i in range(2)]

    def work(name: str) -> Callable[[Clip], tuple[np.ndarray, dict]]:
        return lambda clip: (np.full((2,), float(len(name))), {"name_length": len(name)})

    cache = FeatureCache(tmp_path, workers=1)
    pitch, stats = cache.get_or_build(PARTS, clips, work("pitch"), (2,), "train/pitch")
    assert stats.built == 1
    tempo_parts = changed("distortion.name", "tempo-long")
    tempo, stats = cache.get_or_build(tempo_parts, clips, work("tempo-long"), (2,), "train/t")
    assert stats.built == 1 and stats.reused == 0
    assert tempo.path != pitch.path and tempo.features[0, 0] == 10.0
    again, stats = cache.get_or_build(PARTS, clips, work("never"), (2,), "train/pitch")
    assert stats.built == 0 and again.features[0, 0] == 5.0


# --- run signatures ----------------------------------------------------------------------------


@pytest.fixture
def resolved(make_cfg) -> Callable[..., dict[str, Any]]:
    """``resolved(*overrides)``: the plain resolved training config."""
    return lambda *overrides: OmegaConf.to_container(make_cfg(*overrides), resolve=True)


@pytest.mark.parametrize("overrides", [
    ["seed=1"], ["seed=1", "data.split.seed=0"],  # the training seed alone, split unchanged
    ["data.split.seed=5"], ["distortion=pitch"], ["features.n_mels=24"],
    ["data.source.n_clips=20"], ["trainer.max_epochs=2"], ["model.freeze_backbone=true"]])
def test_signature_changes_with_what_changes_the_result(resolved, overrides: list[str]) -> None:
    base = resolved()
    other = resolved(*overrides)
    assert other != base, f"{overrides} are the defaults"
    assert runs.signature(other) != runs.signature(base)
    assert runs.run_dir_for(other) != runs.run_dir_for(base)


@pytest.mark.parametrize("override", ["logger.experiment_name=other", "resume=false",
                                      "data.loader.num_workers=1",
                                      "trainer.enable_progress_bar=true"])
def test_signature_ignores_what_does_not_change_the_result(resolved, override: str) -> None:
    assert runs.signature(resolved(override)) == runs.signature(resolved())


def test_signature_ignores_the_output_folder(make_cfg, tmp_path) -> None:
    a = OmegaConf.to_container(make_cfg(root=tmp_path / "a"), resolve=True)
    b = OmegaConf.to_container(make_cfg(root=tmp_path / "b"), resolve=True)
    assert runs.signature(a) == runs.signature(b)
    assert runs.run_dir_for(a).path.name == runs.run_dir_for(b).path.name


def test_run_name_says_distortion_seed_and_signature(resolved) -> None:
    config = resolved("seed=7", "distortion=tempo")
    signature = runs.signature(config)
    assert len(signature) == 12 and int(signature, 16) >= 0
    assert runs.run_name(config) == f"tempo-seed7-{signature}"
