"""``data.cache.store: waveform``: log-mels computed per batch on the training device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepfake_detect.data.torch_mel import PARITY_DB
from deepfake_detect.train import plan, train
from tests.conftest import assert_matches_predictions


def prepared(make_cfg, store: str, cache):
    dm = plan(make_cfg(f"data.cache.store={store}", f"data.cache.dir={cache}",
                       "eval.distortions=[base,pitch]")).datamodule
    dm.prepare()
    return dm


def test_waveform_entries_give_the_librosa_features(make_cfg, tmp_path) -> None:
    features = prepared(make_cfg, "features", tmp_path / "cache")
    waves = prepared(make_cfg, "waveform", tmp_path / "cache")
    cfg = features.features
    assert waves.entries["train"].features.shape[1:] == (cfg.n_samples,)
    loaders = {"train": waves.train_dataloader(), "val": waves.val_dataloader(),
               **dict(zip([f"test/{n}" for n in waves.test_names], waves.test_dataloader(),
                          strict=True))}
    assert loaders.keys() == features.entries.keys()
    for name, loader in loaders.items():
        assert waves.entries[name].rows == features.entries[name].rows
        x, y, index = next(iter(loader))
        x, y2, index2 = waves.on_after_batch_transfer((x, y, index), 0)
        assert x.shape == (len(y), 1, *cfg.shape)
        assert torch.equal(y2, y) and torch.equal(index2, index)
        expected = np.asarray(features.entries[name].features[index.numpy()])
        assert (x[:, 0] - torch.from_numpy(expected)).abs().max() <= PARITY_DB
    assert waves.feature_mean == pytest.approx(features.feature_mean, abs=1e-3)
    assert waves.feature_std == pytest.approx(features.feature_std, abs=1e-3)
    assert features.to_log_mel(x) is x  # the features store passes batches through
    test = waves.entries["test/pitch"]
    assert np.abs(waves.log_mels(test) - features.entries["test/pitch"].features).max() <= PARITY_DB
    assert features.log_mels(features.entries["val"]) is features.entries["val"].features


def test_training_with_the_waveform_store_runs_every_stage(make_cfg) -> None:
    """Fit, validation, test and the val_eer threshold (trainer.predict) all see log-mels."""
    result = train(make_cfg("data.cache.store=waveform", "eval.threshold=val_eer"))
    assert_matches_predictions(result, "combined")  # at the val_eer threshold
    assert 0.0 < result["threshold"] <= 1.0 and result["threshold"] != 0.5
