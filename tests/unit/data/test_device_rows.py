"""``data.loader.on_device``: loaders ship row indices, the rows are gathered on the device."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from deepfake_detect.data.datamodule import FeatureDataset
from deepfake_detect.errors import ConfigError
from deepfake_detect.runs import run_name
from deepfake_detect.training.plan import datamodule_of, plan
from deepfake_detect.training.run import train


def prepared(make_cfg, cache, *overrides: str):
    dm = datamodule_of(plan(make_cfg(f"data.cache.dir={cache}", "eval.distortions=[base,pitch]",
                                     *overrides)))
    dm.prepare()
    return dm


def loaders(dm) -> dict[str, torch.utils.data.DataLoader]:
    return {"train": dm.train_dataloader(), "val": dm.val_dataloader(),
            **dict(zip([f"test/{n}" for n in dm.test_names], dm.test_dataloader(),
                       strict=True))}


def test_rows_on_the_device_are_the_memory_mapped_rows(make_cfg, tmp_path) -> None:
    host = prepared(make_cfg, tmp_path / "cache", "data.loader.on_device=false")
    auto = prepared(make_cfg, tmp_path / "cache")
    assert not auto.rows_on_device  # auto: only a CUDA device (this is a CPU)
    device = prepared(make_cfg, tmp_path / "cache", "data.loader.on_device=true")
    assert device.rows_on_device
    for (name, on_device), from_host in zip(loaders(device).items(), loaders(host).values(),
                                            strict=True):
        assert on_device.num_workers == 0 and not on_device.pin_memory
        for batch, expected in zip(on_device, from_host, strict=True):
            assert batch[0].dtype == torch.int64 and batch[0].ndim == 1  # indices only
            x, y, index = device.on_after_batch_transfer(batch, 0)
            assert torch.equal(x, expected[0]), name  # bit-identical rows
            assert torch.equal(y, expected[1]) and torch.equal(index, expected[2])


@pytest.mark.slow  # trains twice per precision through train(cfg)
@pytest.mark.parametrize("precision", ["32-true", "64-true"])
def test_training_with_rows_on_the_device_gives_the_same_numbers(make_cfg, tmp_path,
                                                                 precision) -> None:
    # 64-true: gathered rows get the precision's dtype, as Lightning gives host batches
    results = [train(make_cfg(f"data.loader.on_device={flag}", "eval.distortions=[base]",
                              f"data.cache.dir={tmp_path / 'cache'}",
                              f"trainer.precision={precision}", root=tmp_path / flag))
               for flag in ("false", "true")]
    metrics = [{k: v for k, v in r.items() if k.startswith(("test/", "threshold"))}
               for r in results]
    assert metrics[0] and metrics[0] == metrics[1]


def test_a_dataset_travels_to_spawned_workers_as_its_path(make_cfg, tmp_path) -> None:
    dm = prepared(make_cfg, tmp_path / "cache")
    dataset = FeatureDataset(dm.entries["train"], dm.targets["train"])
    blob = pickle.dumps(dataset)
    assert len(blob) < 4096 < dataset.features.nbytes  # the rows stay in the file
    copy = pickle.loads(blob)
    assert isinstance(copy.features, np.memmap)
    assert all(torch.equal(a, b) for a, b in zip(copy[3], dataset[3], strict=True)
               if isinstance(a, torch.Tensor))


def test_rows_that_do_not_fit_the_device_name_the_key(make_cfg, tmp_path, monkeypatch) -> None:
    dm = prepared(make_cfg, tmp_path / "cache", "data.loader.on_device=true")
    assert dm.rows_on_device
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (1, 80 << 30))
    with pytest.raises(ConfigError, match=r"data\.loader\.on_device.*GB free"):
        dm._device_rows.table(torch.device("cuda:0"))  # checked before anything is allocated


def test_auto_keeps_rows_on_the_host_when_the_gpu_lacks_room(make_cfg, tmp_path,
                                                             monkeypatch) -> None:
    dm = prepared(make_cfg, tmp_path / "cache")
    dm.device = torch.device("cuda:0")  # as a Trainer on a GPU would set it
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (1, 80 << 30))  # all used
    assert not dm.rows_on_device
    assert dm.train_dataloader().dataset.__class__ is FeatureDataset
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (70 << 30, 80 << 30))
    assert dm.rows_on_device  # decided; the table itself is made at the first batch


def test_loader_settings_do_not_change_a_runs_identity(make_cfg) -> None:
    def name(*overrides: str) -> str:
        return run_name(OmegaConf.to_container(make_cfg(*overrides), resolve=True))

    assert name() == name("data.loader.on_device=false") == name("data.loader.num_workers=2")
    assert name() != name("data.loader.batch_size=7")  # this one changes results
