"""The results table a training run prints names the trained model by its family (not "CNN"
for every family) and gives one line per other test source (``eval.sources``); a finished
run's table, its result.json (also one stored before it named its model) and report.md's
verdicts name it the same way."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from deepfake_detect.models import families
from deepfake_detect.models.names import DISPLAY, display_name, display_of
from deepfake_detect.reporting.report import report
from deepfake_detect.training.run import train
from deepfake_detect.training.summary import cell, model_label, results_table

SOURCES = ("unseen_decoders", "same_decoders_new_music")  # experiment=cross_dataset's


def printed_table(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The lines of the last results table logged."""
    text = [r.getMessage() for r in caplog.records if r.getMessage().startswith("results:")]
    assert text, caplog.text[-2000:]
    return text[-1].splitlines()[1:]


def test_every_family_has_a_display_name_and_old_runs_read_as_the_default() -> None:
    assert set(DISPLAY) == set(families.FAMILIES)
    assert display_name("lcnn") == "LCNN" and display_name(None) == "ResNet18"
    assert display_of({}) == "ResNet18"  # a run logged before model.name existed
    assert display_of({"model.name": "embedding", "features.encoder": "/m/mert-v1/"}) == \
        "embedding head (mert-v1)"
    assert model_label({}, {"model": {"name": "oneclass"}}) == "one-class GMM"


@pytest.mark.slow
def test_the_table_names_the_family_and_lists_each_source(make_cfg, tmp_path: Path,
                                                          caplog) -> None:
    cfg = make_cfg("experiment=cross_dataset", "model=lcnn", "data.source.n_clips=48",
                   "trainer.limit_test_batches=1.0", "eval.baselines=[band_stats]",
                   "eval.bootstrap=50")
    with caplog.at_level(logging.INFO, logger="deepfake_detect"):
        result = train(cfg)
    assert result["model"] == {"name": "lcnn", "display": "LCNN"}
    lines = printed_table(caplog)
    assert not [line for line in lines if line.startswith("CNN")]
    assert [line for line in lines if line.startswith("LCNN ")], lines  # beside the baselines
    assert any("LCNN AUROC" in line for line in lines if line.startswith("verdict")), lines
    head = lines.index(next(line for line in lines if line.startswith("other test sources")))
    assert "under base" in lines[head] and lines[head + 1].startswith("source")
    for name in SOURCES:  # synthetic clips: the window level, marked *; a long name alone
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{name} *"))
        assert at > head + 1
        row = lines[at] if "/" in lines[at] else lines[at + 1]
        n, groups = (int(result[f"sources/{name}/{k}"]) for k in ("n_clips", "n_groups"))
        assert f"{n}/{groups}" in row and cell(result, f"sources/{name}/auroc") in row
        assert "[" in cell(result, f"sources/{name}/auroc")  # with its interval
    assert results_table(result).splitlines() == lines  # the table is the result's

    stored = Path(result["run_dir"]) / "result.json"
    assert json.loads(stored.read_text())["model"]["display"] == "LCNN"
    old = {k: v for k, v in json.loads(stored.read_text()).items() if k != "model"}
    stored.write_text(json.dumps(old))  # a result stored before it named its model
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="deepfake_detect"):
        train(cfg)  # finished: the stored results again, named from the config
    again = printed_table(caplog)
    assert [line for line in again if line.startswith("LCNN ")] == \
        [line for line in lines if line.startswith("LCNN ")]
    assert sum(line.startswith(SOURCES) for line in again) == len(SOURCES)

    out = report(result["tracking_uri"], "cross_dataset", tmp_path / "report",
                 log_summary=False, n_boot=0)
    text = out["markdown"].read_text()
    assert "LCNN AUROC" in text and "CNN AUROC" not in text.replace("LCNN AUROC", "")
