"""A k-fold sweep on a few collections that some fold cannot test with both classes: every
job refuses at planning, with the one message naming the keys and what works, and no fold
trains."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.data.test_kfold_collections import GROUP_PATTERN, write_collections


@pytest.mark.slow
def test_the_kfold_sweep_refuses_every_job_before_training(tmp_path: Path) -> None:
    write_collections(tmp_path / "data")
    root = tmp_path / "out"
    cmd = [sys.executable, "-m", "deepfake_detect.cli.train", "-m", "experiment=kfold",
           "debug=fast_dev_run", "data=folder", f"data.source.root={tmp_path / 'data'}",
           "data.source.n_clips=null", f"data.source.group_pattern='{GROUP_PATTERN}'",
           f"paths.root={root}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stderr.count("What works: data.split.folds=4.") >= 5  # each job, and the list
    assert not (root / "runs").exists()  # no fold trained
