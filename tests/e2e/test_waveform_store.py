"""``data.cache.store: waveform``: the cache keeps distorted waveforms and the model's front
end computes the log-mels per batch on the training device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepfake_detect.data.torch_mel import PARITY_DB
from deepfake_detect.models.frontend import FrontEnd
from deepfake_detect.training.plan import datamodule_of, plan
from deepfake_detect.training.run import train
from tests.helpers.configs import assert_matches_predictions

pytestmark = pytest.mark.slow  # end to end: trains, sweeps or runs commands


def prepared(make_cfg, store: str, cache):
    dm = datamodule_of(plan(make_cfg(f"data.cache.store={store}", f"data.cache.dir={cache}",
                                     "eval.distortions=[base,pitch]")))
    dm.prepare()
    return dm


def test_waveform_entries_give_the_librosa_features(make_cfg, tmp_path) -> None:
    features = prepared(make_cfg, "features", tmp_path / "cache")
    waves = prepared(make_cfg, "waveform", tmp_path / "cache")
    cfg = features.features
    assert waves.entries["train"].features.shape[1:] == (cfg.n_samples,)
    front = {"features": FrontEnd(cfg, "features"), "waveform": FrontEnd(cfg, "waveform")}
    loaders = {"train": waves.train_dataloader(), "val": waves.val_dataloader(),
               **dict(zip([f"test/{n}" for n in waves.test_names], waves.test_dataloader(),
                          strict=True))}
    assert loaders.keys() == features.entries.keys()
    for name, loader in loaders.items():
        assert waves.entries[name].rows == features.entries[name].rows
        x, y, index = next(iter(loader))
        x, y2, index2 = waves.on_after_batch_transfer((x, y, index), 0)  # rows, as shipped
        assert x.shape == (len(y), 1, cfg.n_samples)
        assert torch.equal(y2, y) and torch.equal(index2, index)
        with torch.no_grad():
            mel = front["waveform"].log_mel(x)  # what the model computes from them
        assert mel.shape == (len(y), 1, *cfg.shape)
        expected = np.asarray(features.entries[name].features[index.numpy()])
        assert (mel[:, 0] - torch.from_numpy(expected)).abs().max() <= PARITY_DB
    # The normalisation the model gets from either store agrees.
    mean_w, std_w = front["waveform"].moments(waves.entries["train"].features)
    mean_f, std_f = front["features"].moments(features.entries["train"].features)
    assert mean_w == pytest.approx(mean_f, abs=1e-3) and std_w == pytest.approx(std_f, abs=1e-3)
    rows = torch.from_numpy(np.asarray(features.entries["val"].features))
    assert front["features"].log_mel(rows).shape == (len(rows), 1, *cfg.shape)
    assert torch.equal(front["features"].log_mel(rows)[:, 0], rows)  # log-mels pass through
    test = waves.entries["test/pitch"]
    with torch.no_grad():
        got = front["waveform"].log_mel(torch.from_numpy(np.asarray(test.features)))[:, 0]
    assert np.abs(got.numpy() - features.entries["test/pitch"].features).max() <= PARITY_DB


def test_training_with_the_waveform_store_runs_every_stage(make_cfg) -> None:
    """Fit, validation, test and the val_eer threshold (trainer.predict) all see log-mels."""
    result = train(make_cfg("data.cache.store=waveform", "eval.threshold=val_eer"))
    assert_matches_predictions(result, "combined")  # at the val_eer threshold
    assert 0.0 < result["threshold"] <= 1.0 and result["threshold"] != 0.5
