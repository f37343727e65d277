"""The feature store through the commands: a short training fed the previous per-split
cache's entries gives the same metrics, ``deepfake-detect-cache`` builds in shards, lists and
prunes, and a SLURM array builds a store where a cluster answers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deepfake_detect.cli import cache as cache_cli
from deepfake_detect.data.cache import list_folders
from deepfake_detect.training.plan import datamodule_of, plan
from tests.helpers import legacy_cache
from tests.helpers.store import feature_shards

pytestmark = pytest.mark.slow  # end to end: trains or runs commands


def test_a_short_training_gives_the_previous_cache_s_metrics(make_cfg, tmp_path,
                                                             monkeypatch) -> None:
    """The same run fed the previous code's entries (a frozen copy of its key path and
    cache) gives the same metrics, the baselines' included."""
    import torch

    from deepfake_detect.data.sets import StudySets
    from deepfake_detect.training.run import train

    overrides = ["eval.distortions=[base,pitch]", "distortion=tempo", "data.cache.workers=1"]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        new = train(make_cfg(*overrides, root=tmp_path / "new"))
        with monkeypatch.context() as patch:
            patch.setattr(StudySets, "entries", lambda self, plan: legacy_cache.legacy_entries(
                self, tmp_path / "legacy", plan)[0])
            old = train(make_cfg(*overrides, root=tmp_path / "old"))
    finally:
        torch.set_num_threads(before)
    assert (tmp_path / "legacy").is_dir()  # the old run read the old cache's entries
    metrics = {k: v for k, v in new.items() if k.startswith(("test/", "baseline/", "thresh"))}
    assert len(metrics) > 20 and any(k.startswith("baseline/") for k in metrics)
    assert {k: old[k] for k in metrics} == metrics


def test_the_cache_command_builds_in_shards_lists_and_prunes(make_cfg, tmp_path, capsys
                                                            ) -> None:
    root = tmp_path / "out"
    args = ["debug=fast_dev_run", f"paths.root={root}", "data.cache.workers=1",
            "eval.distortions=[base,pitch]"]
    assert cache_cli.main(["build", *args, "--shard", "0/2"]) == 0
    assert cache_cli.main(["build", *args, "--shard", "1/2"]) == 0
    out = capsys.readouterr().out
    halves = [int(line.split(": ")[1].split()[0]) for line in out.splitlines()
              if line.startswith("shard ")]
    assert sum(halves) == 2 * 16 and min(halves) > 0  # every clip under base and pitch, once
    dm = datamodule_of(plan(make_cfg(*args[2:], root=root)))
    dm.build()
    assert dm.stats.clips_computed == 0  # training only reads
    assert cache_cli.main(["list", f"paths.root={root}"]) == 0
    listing = capsys.readouterr().out
    assert "features-" in listing and " 32 " in listing and "n_mels=32" in listing
    assert [info.rows for info in list_folders(root / "cache")] == [32]
    assert cache_cli.main(["prune", f"paths.root={root}", "--where", "features.n_mels=64"]) == 0
    assert len(feature_shards(root / "cache")) == 2  # another config: kept
    assert cache_cli.main(["prune", "--dir", str(root / "cache"), "--where",
                           "features.n_mels=32", "--dry-run"]) == 0
    assert len(feature_shards(root / "cache")) == 2
    assert cache_cli.main(["prune", "--dir", str(root / "cache"), "--older-than", "0"]) == 0
    assert feature_shards(root / "cache") == [] and list_folders(root / "cache") == []
    assert cache_cli.main(["build", *args, "--shard", "2/2"]) == 2
    assert cache_cli.main(["prune", "--dir", str(root / "cache")]) == 2
    assert "--shard '2/2'" in capsys.readouterr().err


def slurm_answers() -> bool:
    import shutil
    import subprocess

    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and any(s.strip() in ("idle", "mix") for s in done.stdout.split())


@pytest.mark.skipif(not slurm_answers(), reason="no SLURM cluster answers here (sinfo)")
def test_a_slurm_array_builds_the_store_in_shards(make_cfg, tmp_path) -> None:
    import subprocess
    import sys

    root = tmp_path / "out"
    args = ["debug=fast_dev_run", f"paths.root={root}", "data.cache.workers=1",
            "eval.distortions=[base,pitch]"]
    script = tmp_path / "build.sbatch"
    script.write_text("#!/bin/bash\n#SBATCH --array=0-1\n#SBATCH --cpus-per-task=1\n"
                      f"#SBATCH --output={tmp_path}/shard-%a.out\n"
                      f"{sys.executable} -m deepfake_detect.cli.cache build {' '.join(args)} "
                      "--shard ${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT}\n")
    done = subprocess.run(["sbatch", "--wait", str(script)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              p for p in (str(Path(__file__).parents[1]),
                                          os.environ.get("PYTHONPATH")) if p)})
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for i in (0, 1) for line in (tmp_path / f"shard-{i}.out").read_text()
             .replace("\r", "\n").splitlines() if line.startswith("shard ")]
    assert sum(int(line.split(": ")[1].split()[0]) for line in lines) == 2 * 16
    dm = datamodule_of(plan(make_cfg(*args[2:], root=root)))
    dm.build()
    assert dm.stats.clips_computed == 0
