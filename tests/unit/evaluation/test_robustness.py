"""Robustness curves: each test clip is decoded once for a whole curve, a point's rows equal
the same test set built straight from the source, a point has intervals per metric and
generator, and bad curves fail before heavy work (the trained runs: tests/e2e)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from deepfake_detect.cli.robustness import join_values
from deepfake_detect.data.datamodule import AudioDataModule
from deepfake_detect.data.distortions import at_strength
from deepfake_detect.data.features import FeatureConfig
from deepfake_detect.data.presets import distortion_preset
from deepfake_detect.errors import ConfigError
from deepfake_detect.evaluation.robustness import Curve, curve_csv, point_of
from deepfake_detect.training.plan import plan
from tests.helpers.sources import count_decodes


def tiny_dm(root: Path, store: str = "features") -> AudioDataModule:
    data = {"source": {"name": "synthetic", "n_clips": 40, "duration": 1.0},
            "cache": {"dir": str(root), "workers": 1, "store": store}}
    base = distortion_preset("base")
    return AudioDataModule(data, FeatureConfig(duration=1.0, n_mels=32), base, [base], seed=0)


@pytest.mark.parametrize("store", ["features", "waveform"])
def test_a_curve_decodes_each_clip_once_and_its_rows_equal_a_direct_build(
        tmp_path: Path, monkeypatch, store: str) -> None:
    points = [at_strength(distortion_preset("pitch"), v) for v in (-1.0, 0.0)]
    points += [at_strength(distortion_preset("mp3"), 64.0),
               at_strength(distortion_preset("noise"), 10.0)]
    decodes = count_decodes(monkeypatch)
    dm = tiny_dm(tmp_path / "a", store)
    entries = dm.split_entries("test", points)
    n_test = len(entries[0].rows)
    assert n_test >= 4 and sorted(decodes) == sorted(r["clip_id"] for r in entries[0].rows)
    direct_dm = tiny_dm(tmp_path / "b", store)
    for point, entry in zip(points, entries, strict=True):
        direct = direct_dm.split_entry("test", point)
        assert entry.path.name == direct.path.name  # the same cache key
        assert np.array_equal(entry.features, direct.features)
        assert entry.rows == direct.rows
    decodes.clear()
    more = dm.split_entries("test", [at_strength(distortion_preset("pitch"), 2.0)])
    assert decodes == [] and len(more[0].rows) == n_test  # the clean waveforms are cached
    decodes.clear()
    assert dm.split_entries("test", points[:2])[0].path == entries[0].path
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
