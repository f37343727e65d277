"""Resume and fault tolerance, through the CLI (killed subprocesses) and ``train(cfg)``.

- SIGKILL mid-epoch, same command again: resumes from ``last.ckpt`` into the same MLflow run
  (one run, FINISHED, per-epoch history without gaps or duplicates) and, on CPU in
  deterministic mode, ends with exactly the metrics of an uninterrupted run.
- A sweep killed after two of four jobs: the same command trains only the other two; the job
  stopped by Ctrl+C (SIGINT) is marked KILLED, then continued into the same run.
- An exception mid-training marks the run FAILED and leaves a resumable checkpoint; a truncated
  ``last.ckpt`` and a corrupt cache entry are reported and worked around; ``resume=false``
  starts a new run.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from deepfake_detect.config import to_plain
from deepfake_detect.runs import RunDir, run_dir_for
from deepfake_detect.training import checkpoints
from deepfake_detect.training.plan import plan
from deepfake_detect.training.run import train
from tests.helpers.store import feature_shards

pytestmark = pytest.mark.slow  # end to end: trains, sweeps or runs commands

# Child processes: one thread each (two cores, and the same numerics in every process).
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1",
           MLFLOW_SQLALCHEMYSTORE_POOLCLASS="NullPool")
CLI = [sys.executable, "-m", "deepfake_detect.cli.train"]  # = the deepfake-detect-train script
TINY = ["debug=fast_dev_run", "trainer.enable_progress_bar=false", "eval.distortions=[base]"]
# Three real epochs of 8 batches (a couple of seconds each): room to kill one mid-way.
EPOCHS = [*TINY, "trainer.max_epochs=3", "trainer.limit_train_batches=null",
          "trainer.limit_test_batches=null", "data.source.n_clips=48"]
PER_EPOCH = ("train/loss", "train/acc", "val/loss", "val/acc")
TIMEOUT = 300


@pytest.fixture
def one_thread():
    """In-process training with one thread, like the child processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def interruptible() -> None:
    """In the child: Ctrl+C's default disposition, as in a terminal. A shell's background job
    (``cmd &`` without job control) inherits SIGINT ignored, and so would every command it
    starts, pytest and this test's child included: that child would never see the SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(root: Path, *overrides: str, log: Path) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen([*CLI, *overrides, f"paths.root={root}"], env=ENV, stdout=handle,
                            stderr=subprocess.STDOUT, preexec_fn=interruptible)


def finish(proc: subprocess.Popen, log: Path) -> str:
    try:
        proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    text = log.read_text()
    assert proc.returncode == 0, text[-4000:]
    return text


def wait_for(condition: Callable[[], object], proc: subprocess.Popen, log: Path) -> object:
    """Poll the file system until ``condition()`` is truthy (fails if the process ends)."""
    deadline = time.monotonic() + TIMEOUT
    while not (found := condition()):
        assert proc.poll() is None, f"ended early:\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"timed out:\n{log.read_text()[-4000:]}"
        time.sleep(0.05)
    return found


def runs_of(root: Path, experiment: str = "deepfake-detect") -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def history(tracking_uri: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    client = MlflowClient(tracking_uri=tracking_uri)
    return {key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
            for key in PER_EPOCH}


def assert_clean_history(hist: dict[str, list[tuple[int, float]]], epochs: int) -> None:
    """One value per epoch for every per-epoch metric, at increasing steps, the same steps."""
    steps = [step for step, _ in hist["train/loss"]]
    assert len(steps) == epochs and steps == sorted(set(steps)), hist
    for key in PER_EPOCH:
        assert [step for step, _ in hist[key]] == steps, (key, hist)


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def test_sigkill_mid_epoch_resumes_into_the_same_run_with_identical_results(tmp_path):
    cache = f"data.cache.dir={tmp_path / 'cache'}"  # shared: identical features for both
    victim_root, ref_root = tmp_path / "victim", tmp_path / "reference"
    ref = start(ref_root, *EPOCHS, cache, log=tmp_path / "reference.log")
    log = tmp_path / "killed.log"
    victim = start(victim_root, *EPOCHS, cache, log=log)
    # last.ckpt appears once epoch 1 is saved (Lightning runs checkpoint callbacks last); from
    # then on the child is in epoch 2 until epoch 2's checkpoint (epoch001.ckpt) is saved.
    last = wait_for(lambda: next(victim_root.glob("runs/*/checkpoints/last.ckpt"), None),
                    victim, log)
    victim.send_signal(signal.SIGSTOP)  # frozen: what the files say now is where it dies
    try:
        epoch_2_saved = (last.parent / "epoch001.ckpt").exists()
    finally:
        victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=TIMEOUT)
    assert victim.returncode == -signal.SIGKILL
    run_dir = RunDir(last.parent.parent)
    # The last finished epoch (0-based): 0, killed in epoch 2 -- unless a machine fast enough
    # to finish epoch 2 between last.ckpt appearing and SIGSTOP killed it in epoch 3 (1). The
    # checks below hold for either: the resumed job starts with the epoch after ``done``.
    done = torch.load(checkpoints.resumable_checkpoint(last.parent), weights_only=True)["epoch"]
    assert done == (1 if epoch_2_saved else 0)
    assert run_dir.result() is None
    (killed,) = runs_of(victim_root)
    assert killed.info.status == "RUNNING"  # SIGKILL gives no chance to say otherwise
    assert killed.info.run_id == run_dir.run_id()

    out = finish(start(victim_root, *EPOCHS, cache, log=tmp_path / "resumed.log"),
                 tmp_path / "resumed.log")
    assert f"resuming from {last} into MLflow run {killed.info.run_id}" in out
    assert f"epoch {done + 2}/3" in out and f"epoch {done + 1}/3" not in out
    finish(ref, tmp_path / "reference.log")

    (run,) = runs_of(victim_root)
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    resumed, reference = run_dir.result(), RunDir(
        next(ref_root.glob("runs/*/result.json")).parent).result()
    hist = history(resumed["tracking_uri"], run.info.run_id)
    assert_clean_history(hist, epochs=3)
    assert hist == history(reference["tracking_uri"], reference["run_id"])
    assert resumed["selected_epoch"] == reference["selected_epoch"], resumed["selection"]
    tests = [k for k in reference if k.startswith("test/")]
    assert tests and all(same(resumed[k], reference[k]) for k in tests), (resumed, reference)


# val/auroc 0.50, 0.75, 0.50 in this config: epochs 1 and 2 improve, epoch 2 is selected.
# The whole validation split each epoch (12 clips), so that val/auroc moves between epochs.
SELECTED = [*EPOCHS, "trainer.limit_val_batches=null", "data.split.val=0.25",
            "eval.baselines=[]", "eval.bootstrap=0"]
SEEDS = range(1, 7)  # tried in turn for a reference whose best checkpoint moves at epoch 2


def val_history(result: dict) -> list[float]:
    client = MlflowClient(tracking_uri=result["tracking_uri"])
    return [m.value for m in sorted(client.get_metric_history(result["run_id"], "val/auroc"),
                                    key=lambda m: m.step)]


def test_sigkill_at_each_selection_point_selects_what_an_uninterrupted_run_selects(
        tmp_path, one_thread):
    """One job SIGKILLed at three exact points in turn (forked children of this process):
    right after epoch 1's best.ckpt, between epoch 2's last.ckpt and its best.ckpt, and in
    the middle of epoch 3; each resumes the one before, and the last run finishes with the
    uninterrupted run's selection, history and test metrics.

    Which epoch is best depends on the CPU's floating point (AVX2 and AVX-512 machines train
    differently), so the reference is the first seed whose best moves at epoch 2 (the kill
    between that epoch's two checkpoints is the hard case); the expectations follow the
    reference, so a machine where no seed does still checks every kill."""
    from tests.helpers.configs import compose_cfg
    from tests.helpers.killpoints import killed_at

    cache = f"data.cache.dir={tmp_path / 'cache'}"
    for seed in SEEDS:
        overrides = [*SELECTED, f"seed={seed}", cache]
        reference = train(compose_cfg(overrides, tmp_path / f"reference{seed}"))
        scores = val_history(reference)
        assert len(scores) == 3 and not any(map(math.isnan, scores)), scores
        moved = scores[1] > scores[0]
        if moved:
            break
    best_after_two = 1 if moved else 0
    cfg = compose_cfg(overrides, tmp_path / "victim")
    directory = run_dir_for(to_plain(cfg)).checkpoints

    def epoch_of(name: str) -> int:
        return torch.load(directory / name, weights_only=True, mmap=True)["epoch"]

    assert killed_at("best:0", lambda: train(cfg)) == -signal.SIGKILL
    assert epoch_of("best.ckpt") == epoch_of("last.ckpt") == 0
    assert killed_at("last:1", lambda: train(cfg)) == -signal.SIGKILL
    assert (epoch_of("best.ckpt"), epoch_of("last.ckpt")) == (0, 1)  # best.ckpt not yet
    assert killed_at("batch:2:3", lambda: train(cfg)) == -signal.SIGKILL
    # linked when resuming from a last.ckpt naming itself
    assert epoch_of("best.ckpt") == best_after_two, (seed, scores)
    (killed,) = runs_of(tmp_path / "victim")
    assert killed.info.status == "RUNNING"

    resumed = train(cfg)
    assert resumed["run_id"] == killed.info.run_id
    assert (resumed["selected_epoch"], resumed["selection"]) == (
        reference["selected_epoch"], reference["selection"]), (seed, scores)
    hist = history(resumed["tracking_uri"], resumed["run_id"])
    assert_clean_history(hist, epochs=3)
    assert hist == history(reference["tracking_uri"], reference["run_id"])
    assert val_history(resumed) == scores
    tests = [k for k in reference if k.startswith("test/")]
    assert tests and all(same(resumed[k], reference[k]) for k in tests), (resumed, reference)


def test_killed_sweep_reruns_only_unfinished_jobs_and_ctrl_c_marks_killed(tmp_path):
    root = tmp_path / "out"
    sweep = ["-m", "seed=1,2,3,4", *TINY]
    log = tmp_path / "first.log"
    proc = start(root, *sweep, log=log)
    # Jobs run one after another: stop the sweep once job 3 has started its MLflow run.
    run_id_file = wait_for(lambda: next(root.glob("runs/base-seed3-*/mlflow_run_id"), None),
                           proc, log)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=TIMEOUT)
    assert proc.returncode != 0
    finished = sorted(p.parent.name.split("-")[1] for p in root.glob("runs/*/result.json"))
    assert finished == ["seed1", "seed2"]
    statuses = {r.info.run_id: r.info.status for r in runs_of(root)}
    interrupted = run_id_file.read_text().strip()
    assert statuses.pop(interrupted) == "KILLED", log.read_text()[-4000:]
    assert sorted(statuses.values()) == ["FINISHED", "FINISHED"]

    out = finish(start(root, *sweep, log=tmp_path / "second.log"), tmp_path / "second.log")
    skipped = [line for line in out.splitlines() if "already finished" in line]
    assert len(skipped) == 2, out[-4000:]  # 4 jobs, 2 trained
    assert all("-seed1-" in line or "-seed2-" in line for line in skipped)
    assert f"into MLflow run {interrupted}" in out
    runs = runs_of(root)
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    assert interrupted in {r.info.run_id for r in runs}
    assert len(list(root.glob("runs/*/result.json"))) == 4


FAILING = [*TINY, "trainer.max_epochs=3"]  # one batch per epoch


@pytest.fixture(scope="module")
def failed_then_resumed(tmp_path_factory) -> dict:
    """A run that fails right after its epoch-2 checkpoint, then -- over a truncated
    ``last.ckpt`` and a corrupt cache entry -- the same config again. Records each stage."""
    from tests.helpers.configs import compose_cfg

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("fail") / "out"
    cfg = compose_cfg(FAILING, root)
    run_dir = run_dir_for(to_plain(cfg))
    state: dict = {"run_dir": run_dir, "cfg": cfg, "root": root}
    original = checkpoints.EpochCheckpoint.on_train_epoch_end

    def fail_after_epoch_2(self, trainer, pl_module):
        original(self, trainer, pl_module)
        if trainer.current_epoch == 1:
            raise RuntimeError("injected failure")

    checkpoints.EpochCheckpoint.on_train_epoch_end = fail_after_epoch_2
    try:
        with pytest.raises(RuntimeError, match="injected failure"):
            train(cfg)
    finally:
        checkpoints.EpochCheckpoint.on_train_epoch_end = original
    state["failed"] = runs_of(root)
    state["checkpoint"] = checkpoints.resumable_checkpoint(run_dir.checkpoints)
    state["checkpoint_epoch"] = torch.load(state["checkpoint"], weights_only=True)["epoch"]
    state["result_after_failure"] = run_dir.result()

    data = run_dir.last_checkpoint.read_bytes()
    run_dir.last_checkpoint.write_bytes(data[: len(data) // 2])
    with feature_shards(root / "cache")[0].open("r+b") as handle:  # its last row
        handle.seek(-64, os.SEEK_END)
        flipped = bytes(255 - b for b in handle.read(64))
        handle.seek(-64, os.SEEK_END)
        handle.write(flipped)

    out, logs = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(logs)
    logging.getLogger("deepfake_detect").addHandler(handler)
    level = logging.getLogger("deepfake_detect").level
    logging.getLogger("deepfake_detect").setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(out):
            state["result"] = train(cfg)
    finally:
        logging.getLogger("deepfake_detect").removeHandler(handler)
        logging.getLogger("deepfake_detect").setLevel(level)
        torch.set_num_threads(before)
    state["out"], state["logs"] = out.getvalue(), logs.getvalue()
    return state


def test_exception_marks_the_run_failed_and_leaves_a_resumable_checkpoint(
        failed_then_resumed) -> None:
    (run,) = failed_then_resumed["failed"]
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: injected failure"  # said in the run
    client = MlflowClient(tracking_uri=f"sqlite:///{failed_then_resumed['root'] / 'mlflow.db'}")
    trace = Path(client.download_artifacts(run.info.run_id, "traceback.txt")).read_text()
    assert "fail_after_epoch_2" in trace and "RuntimeError: injected failure" in trace
    assert failed_then_resumed["result_after_failure"] is None
    checkpoint = failed_then_resumed["checkpoint"]
    assert checkpoint == failed_then_resumed["run_dir"].last_checkpoint
    assert failed_then_resumed["checkpoint_epoch"] == 1  # the end of epoch 2


def test_resume_survives_corrupt_checkpoint_and_cache(failed_then_resumed) -> None:
    state = failed_then_resumed
    (failed,) = state["failed"]
    out, result = state["logs"], state["result"]  # messages go through logging
    assert "last.ckpt is corrupt" in out and "falling back to an earlier checkpoint" in out
    assert f"resuming from {state['run_dir'].checkpoints / 'epoch001.ckpt'}" in out
    assert "epoch 3/3" in out and "epoch 2/3" not in out
    assert "checksum mismatch): rebuilding it" in state["logs"]
    assert result["data"]["cache"]["rebuilt_corrupt"] == 1
    runs = {r.info.run_id: r for r in runs_of(state["root"])}
    assert result["run_id"] == failed.info.run_id
    assert runs[failed.info.run_id].info.status == "FINISHED"
    assert_clean_history(history(result["tracking_uri"], result["run_id"]), epochs=3)


def test_finished_run_is_reported_without_planning(failed_then_resumed, monkeypatch,
                                                   caplog) -> None:
    import deepfake_detect.training.run as entry

    monkeypatch.setattr(entry, "plan", lambda cfg: pytest.fail("planned a finished run"))
    with caplog.at_level(logging.INFO, logger="deepfake_detect"):
        result = train(failed_then_resumed["cfg"])
    assert result == failed_then_resumed["run_dir"].result()
    assert "already finished" in caplog.text


def test_resume_false_starts_a_fresh_run(failed_then_resumed, one_thread) -> None:
    from tests.helpers.configs import compose_cfg

    state = failed_then_resumed
    old = state["result"]["run_id"]
    result = train(compose_cfg([*FAILING, "resume=false"], state["root"]))
    assert result["run_id"] != old
    runs = {r.info.run_id: r for r in runs_of(state["root"])}
    assert set(runs) == {old, result["run_id"]}
    assert runs[result["run_id"]].info.status == "FINISHED"
    assert "resumed_from" not in runs[result["run_id"]].data.tags
    assert_clean_history(history(result["tracking_uri"], result["run_id"]), epochs=3)


@pytest.mark.parametrize("overrides", [[], ["distortion=pitch", "seed=3", "features.n_mels=24"]])
def test_run_dir_found_from_the_config_alone_matches_plan(make_cfg, overrides) -> None:
    cfg = make_cfg(*overrides)
    assert run_dir_for(to_plain(cfg)) == plan(cfg).run_dir


def test_resumed_logger_never_logs_a_metric_step_twice(tmp_path) -> None:
    """A job killed after logging an epoch but before checkpointing it retrains that epoch:
    its values must not appear twice in the run."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = checkpoints.ResumableMLFlowLogger(experiment_name="x", tracking_uri=uri)
    first.log_metrics({"val/loss": 0.5, "epoch": 0}, step=7)
    first.log_metrics({"val/loss": 0.5, "epoch": 0}, step=7)  # Lightning's second "epoch"
    resumed = checkpoints.ResumableMLFlowLogger(experiment_name="x", tracking_uri=uri,
                                                run_id=first.run_id)
    resumed.log_metrics({"val/loss": 0.5, "train/loss": 0.9, "epoch": 0}, step=7)
    resumed.log_metrics({"val/loss": 0.4, "epoch": 1}, step=15)
    resumed.finalize("success")  # leaves the status to train()
    client = MlflowClient(tracking_uri=uri)
    steps = {key: [m.step for m in client.get_metric_history(first.run_id, key)]
             for key in ("val/loss", "train/loss", "epoch")}
    assert steps == {"val/loss": [7, 15], "train/loss": [7], "epoch": [7, 15]}
    assert client.get_run(first.run_id).info.status == "RUNNING"
