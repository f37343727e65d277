"""Leave-one-generator-out through the command on collections: a generator that cannot be
held out is skipped with its reason, the other jobs run, and the report lists the skip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from deepfake_detect.cli import report as report_cli
from deepfake_detect.data.sources import build_source
from deepfake_detect.data.splits import SplitConfig, split_clips
from deepfake_detect.errors import GeneratorSkipped
from tests.helpers.audio_data import write_good

SWEPT = {  # collection -> {generator: files}; "human" files are the human class
    "pageH1": {"human": 3, "audioldm2": 2, "musicgen": 2},
    "pageH2": {"human": 3, "tango": 3},
    "lib1": {"human": 2}, "lib2": {"human": 2}, "lib3": {"human": 2},
    "pageB": {"musicgen": 3}, "pageC": {"tango": 3}, "pageD": {"musicldm": 3},
    "pageS": {"solo": 1},  # one file: too few to test with data.split.min_per_class=2
}
GROUP_PATTERN = r"([^/]+?)__"
GENERATOR_PATTERN = r"__([^_/]+)_\d+\."


def write_pages(root: Path) -> None:
    index = 0
    for page, files in SWEPT.items():
        for generator, count in files.items():
            kind = "human" if generator == "human" else "ai"
            for i in range(count):
                write_good(root / kind / f"{page}__{generator}_{i}", index, ".wav")
                index += 1


@pytest.mark.slow
def test_a_sweep_skips_what_cannot_be_held_out_runs_the_rest_and_reports_why(
        tmp_path: Path) -> None:
    data, root = tmp_path / "pages", tmp_path / "out"
    write_pages(data)
    clips = build_source({"name": "folder", "root": str(data), "duration": 1.0,
                          "group_pattern": GROUP_PATTERN,
                          "generator_pattern": GENERATOR_PATTERN}).clips()
    for generator in ("audioldm2", "musicldm"):
        split_clips(clips, SplitConfig(holdout_generator=generator, min_per_class=2))
    with pytest.raises(GeneratorSkipped, match="'solo' cannot be held out: the test split "
                                               "would hold 1 AI-generated"):
        split_clips(clips, SplitConfig(holdout_generator="solo", min_per_class=2))
    cmd = [sys.executable, "-m", "deepfake_detect.cli.train", "-m",
           "experiment=leave_one_generator_out", "debug=fast_dev_run", "data=folder",
           f"data.source.root={data}", "data.source.n_clips=null", "eval.baselines=[]",
           "eval.distortions=[base]",
           f"data.source.group_pattern='{GROUP_PATTERN}'",
           f"data.source.generator_pattern='{GENERATOR_PATTERN}'",
           "data.split.holdout_generator=solo,audioldm2,musicldm", "data.split.min_per_class=2",
           f"paths.root={root}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "skipped: generator 'solo' cannot be held out" in done.stdout + done.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("leave_one_generator_out")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["holdout_generator"] for r in runs) == [
        "audioldm2", "musicldm", "solo"]
    assert [r.data.tags.get("skipped", "")[:14] for r in runs
            if r.data.tags["holdout_generator"] == "solo"] == ["the test split"]
    assert report_cli.main(["--experiment", "leave_one_generator_out", "--tracking-uri",
                            client.tracking_uri, "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Skipped jobs" in text and "| solo | the test split would hold 1 AI-generated" in text
    assert "| audioldm2 |" in text and "| musicldm |" in text
