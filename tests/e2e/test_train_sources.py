"""Each real-data source (folder, manifest, fakemusiccaps, sonics) trained through
``train(cfg)``, with broken files reported in skipped.csv."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from deepfake_detect.training.run import train
from tests.helpers.audio_data import (
    make_fakemusiccaps,
    make_folder,
    make_manifest,
    make_sonics,
)
from tests.helpers.configs import assert_matches_predictions


def _train_on(make_cfg, source_overrides: list[str]) -> dict:
    # All test batches: the evaluation compares predictions with every test row.
    cfg = make_cfg(*source_overrides, "data.source.n_clips=null", "eval.distortions=[base]",
                   "trainer.limit_test_batches=1.0")
    return train(cfg)


def _assert_skipped(result: dict, broken: dict[str, str]) -> None:
    path = Path(result["run_dir"]) / "artifacts" / "skipped.csv"
    rows = {str(Path(r["path"]).resolve()): r for r in csv.DictReader(path.open())}
    for file, reason in broken.items():
        assert file in rows, f"{file} missing from {path}"
        assert reason in rows[file]["reason"], rows[file]
    assert len(rows) == len(broken)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["folder", "manifest", "fakemusiccaps", "sonics"])
def test_training_runs_on_each_source_and_reports_broken_files(make_cfg, tmp_path: Path,
                                                               layout: str) -> None:
    data = tmp_path / "data"
    if layout == "folder":
        broken = make_folder(data)
        overrides = ["data=folder", f"data.source.root={data}"]
    elif layout == "manifest":
        csv_path, broken = make_manifest(data)
        overrides = ["data=manifest", f"data.source.csv={csv_path}"]
    elif layout == "fakemusiccaps":
        broken = make_fakemusiccaps(data)
        overrides = ["data=fakemusiccaps", f"data.source.root={data}",
                     "data.source.include_sunocaps=true"]
    else:
        broken = make_sonics(data)
        overrides = ["data=sonics", f"data.source.root={data}",
                     "data.source.windows.mode=multi", "data.source.windows.max_per_file=2"]
    result = _train_on(make_cfg, overrides)
    assert_matches_predictions(result, "base")
    assert "test/base/auroc" in result
    assert result["data"]["skipped"] >= len(broken)  # a file cut into windows: one row each
    _assert_skipped(result, broken)
