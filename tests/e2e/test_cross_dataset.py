"""Tests across datasets in one run (``eval.sources``): a model trained on one source is
tested on others, each reported per source with file level, intervals and the baselines
fitted on the training source."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from deepfake_detect.errors import ConfigError
from deepfake_detect.reporting.report import report
from deepfake_detect.training.plan import eval_config
from deepfake_detect.training.run import train
from tests.helpers.audio_data import make_fakemusiccaps, make_folder, make_sonics


def test_bad_sources_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"eval\.sources\.0\.name"):
        eval_config({"sources": [{"name": "a/b", "source": {"name": "folder"}}]})
    with pytest.raises(ConfigError, match=r"eval\.sources\.1\.source"):
        eval_config({"sources": [{"name": "a", "source": {"name": "folder"}}, {"name": "b"}]})
    with pytest.raises(ConfigError, match="names a source twice"):
        eval_config({"sources": [{"name": "a", "source": {"name": "x"}}] * 2})


@pytest.mark.slow
def test_a_folder_model_is_tested_on_fakemusiccaps_and_a_fakes_only_sonics(
        make_cfg, tmp_path: Path) -> None:
    make_folder(tmp_path / "mine")
    make_fakemusiccaps(tmp_path / "fmc")
    make_sonics(tmp_path / "sonics", layout="fakes_only")
    sources = (f"[{{name: fmc, source: {{name: fakemusiccaps, root: '{tmp_path / 'fmc'}'}}}},"
               f"{{name: sonics, source: {{name: sonics, root: '{tmp_path / 'sonics'}', "
               "windows: {mode: multi, max_per_file: 2}}}]")
    result = train(make_cfg("data=folder", f"data.source.root={tmp_path / 'mine'}",
                            "data.source.n_clips=null", "eval.distortions=[base]",
                            "eval.baselines=[band_stats,recording_chain]",
                            f"eval.sources={sources}"))
    artifacts = Path(result["run_dir"]) / "artifacts" / "sources"
    for name in ("fmc", "sonics"):
        rows = list(csv.DictReader((artifacts / f"predictions_{name}.csv").open()))
        right = sum(r["prediction"] == r["label"] for r in rows)
        assert result[f"sources/{name}/accuracy"] == pytest.approx(right / len(rows))
        assert result[f"sources/{name}/n_clips"] == len(rows)
        for key in ("file/accuracy", "accuracy_ci_low", "file/n_files"):
            assert f"sources/{name}/{key}" in result, key
        assert f"baseline/band_stats/sources/{name}/accuracy" in result
    assert result["sources/fmc/n_clips"] == 32 - 5  # every clip but the broken ones
    assert 0.0 <= result["sources/fmc/auroc"] <= 1.0
    assert math.isnan(result["sources/sonics/auroc"])  # the fakes alone: one class
    assert result["sources/sonics/file/n_files"] == 12  # 15 fakes listed, 3 broken
    run = MlflowClient(tracking_uri=result["tracking_uri"]).get_run(result["run_id"])
    assert run.data.metrics["x/sources/fmc/accuracy"] == pytest.approx(
        result["sources/fmc/accuracy"])
    out = report(result["tracking_uri"], "deepfake-detect", tmp_path / "report",
                 log_summary=False, n_boot=0)
    text = out["markdown"].read_text()
    assert "| training source | in-domain | fmc | sonics |" in text
    assert "| folder (mine) |" in text
