"""What a user sees from ``deepfake-detect-train``: our lines and the results, no third-party
chatter; the same line again prints the stored results; help that says what the tool does;
a bad value is one line naming the key, and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "deepfake_detect.cli.train"]
ENV = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
NOISE = ("Tip:", "litlogger", "GPU available", "TPU available", "mlflow.store.db.utils",
         "Creating initial MLflow database", "deprecated", "DeprecationWarning",
         "FutureWarning", "Illegal Audio-MPEG-Header", "font cache", "Traceback")


def run(*args: str, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args, f"paths.root={root}"], capture_output=True, text=True,
                          timeout=600, env={**ENV, "OMP_NUM_THREADS": "1"})


def test_a_run_says_only_what_matters_and_a_second_prints_the_stored_results(tmp_path) -> None:
    root = tmp_path / "out"
    first = run("debug=fast_dev_run", "eval.distortions=[base,pitch]", root=root)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-3000:]
    assert not [word for word in NOISE if word in output], output
    assert "epoch 1/1" in output and "results:" in output
    assert all(len(line) <= 100 for line in output.splitlines() if line.startswith(
        ("test ", "base ", "pitch ")))
    again = run("debug=fast_dev_run", "eval.distortions=[base,pitch]", root=root)
    second = again.stdout + again.stderr
    assert again.returncode == 0 and "already finished" in second
    table = second[second.index("results:"):]
    assert "base" in table and "pitch" in table and "MLflow run" in table
    assert len(list((root / "hydra").rglob("overrides.yaml"))) == 1  # the no-op left none


def test_help_says_what_the_tool_does(tmp_path) -> None:
    done = run("--help", root=tmp_path)
    assert done.returncode == 0
    assert "human music (0) from AI-generated music (1)" in done.stdout
    assert "experiment=quickstart" in done.stdout and "Results:" in done.stdout


@pytest.mark.parametrize("override,key", [("trainer.max_epochs=three", "trainer.max_epochs"),
                                          ("trainer.precision=17", "trainer.precision"),
                                          ("trainer.devices=0", "trainer.devices"),
                                          ("seed=-1", "seed")])
def test_a_bad_value_is_one_line_naming_the_key(override: str, key: str, tmp_path) -> None:
    done = run("debug=fast_dev_run", override, root=tmp_path / "out")
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"config key '{key}'" in lines[0], done.stderr
    assert not (tmp_path / "out" / "hydra").exists() or not any(
        (tmp_path / "out" / "hydra").rglob("*.yaml"))
    assert not (tmp_path / "out" / "mlflow.db").exists()  # rejected before any work
