"""One process per run directory, nothing of a live process deleted by another, and what a
finished run keeps on disk: the run lock (held, waited for, refused, taken over from a killed
holder), temporaries of live writers, ``trainer.keep_checkpoints``, sweep membership tags."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from deepfake_detect import atomic
from deepfake_detect.errors import RunInProgress
from deepfake_detect.runs import RunDir
from deepfake_detect.training.checkpoints import prune_checkpoints, resumable_checkpoint

HOLDER = """
import sys, time
from pathlib import Path
from deepfake_detect.runs import RunDir
with RunDir(Path(sys.argv[1])).hold("refuse"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_in_child(run_dir: Path, seconds: float) -> subprocess.Popen:
    """A child process that holds ``run_dir``'s lock for ``seconds`` (once it printed)."""
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir), str(seconds)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_process_is_refused_with_the_holders_pid_and_host(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "runs" / "base-seed1-abc")
    child = hold_in_child(run_dir.path, 60)
    try:
        with pytest.raises(RunInProgress) as err, run_dir.hold("refuse"):
            pass
        message = str(err.value)
        assert "already running" in message and f"pid {child.pid}" in message
        assert socket.gethostname() in message and "if_running=wait" in message
    finally:
        child.kill()
        child.wait()


def test_a_waiting_process_gets_the_lock_when_the_holder_ends(tmp_path: Path, caplog) -> None:
    run_dir = RunDir(tmp_path / "runs" / "base-seed1-abc")
    child = hold_in_child(run_dir.path, 2)
    with caplog.at_level("INFO", logger="deepfake_detect"), run_dir.hold("wait") as waited:
        assert waited and f"pid {os.getpid()} " in run_dir.owner()
        assert "already running" in caplog.text and f"pid {child.pid}" in caplog.text
    assert child.wait() == 0  # it finished its block, undisturbed


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "runs" / "base-seed1-abc")
    child = hold_in_child(run_dir.path, 60)
    os.kill(child.pid, signal.SIGKILL)  # kill -9: no chance to clean up
    child.wait()
    assert run_dir.lock_file.exists() and run_dir.owner_file.exists()  # left behind
    with run_dir.hold("refuse") as waited:
        assert not waited
        assert f"pid {os.getpid()} " in run_dir.owner()
    assert not run_dir.owner_file.exists()


def test_temporaries_of_a_live_writer_are_kept_and_a_dead_ones_removed(tmp_path: Path) -> None:
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        folder = tmp_path / "checkpoints"
        folder.mkdir()
        mine = folder / f".last.ckpt{atomic.TMP_MARK}{live.pid}-abcd1234"
        stale = folder / f".last.ckpt{atomic.TMP_MARK}{dead.pid}-abcd1234"
        for path in (mine, stale):
            path.write_bytes(b"half a checkpoint")
        assert resumable_checkpoint(folder) is None
        assert mine.exists() and not stale.exists()
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize("policy,best,kept", [
    ("best", False, {"last.ckpt"}),  # without model selection the last epoch is the best
    ("best", True, {"best.ckpt"}),
    ("last", True, {"last.ckpt"}),
    ("all", True, {"last.ckpt", "best.ckpt", "epoch001.ckpt", "epoch002.ckpt"}),
    ("none", True, set()),
])
def test_a_finished_run_keeps_the_checkpoints_its_policy_names(tmp_path: Path, policy: str,
                                                                best: bool, kept: set) -> None:
    names = ["last.ckpt", "epoch001.ckpt", "epoch002.ckpt", *(["best.ckpt"] if best else [])]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    removed = prune_checkpoints(tmp_path, policy)
    assert {p.name for p in tmp_path.glob("*.ckpt")} == kept
    assert {p.name for p in removed} == set(names) - kept
    assert (tmp_path / "notes.txt").exists()


def test_sweep_membership_keeps_every_sweep_that_ran_or_reported_a_run(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from deepfake_detect import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("e"),
                               tags={"sweep_id": "first"}).info.run_id
    for sweep in ("second", "second", "third"):
        tracking.join_sweep(client, run_id, sweep)
    tags = client.get_run(run_id).data.tags
    assert tags["sweep_id"] == "third" and tags["sweep_ids"] == "first,second,third"


def test_unique_output_folders_differ_within_one_second() -> None:
    from deepfake_detect.cli.train import unique_now

    stamps = {unique_now("%Y-%m-%d_%H-%M-%S") for _ in range(50)}
    assert len(stamps) == 50
    first = next(iter(stamps))
    assert len(first.split("-")) == 7  # date, time, milliseconds, random suffix
