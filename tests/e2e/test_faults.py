"""Nothing lost, nothing silent (issue 16): the faults a tester tried, through the commands.

- every AI file unusable: the run stops before training, naming the class, the set, how many
  files were skipped and where they are listed, and opens no MLflow run;
- two overlapping sweeps on one config: the shared job trains once, both sweeps succeed,
  each has its own sweep id and the report finds all of each sweep's runs; a single run of
  a config another process runs is refused with that process's pid and host;
- intact MP3s whose headers overstate their length are read by training and predict alike;
  an absurd header sample rate and an unreadable folder are listed with their reasons;
- a relabelled cache clip list is caught and rebuilt (the numbers do not change);
- a bad ``model.init_from`` and unwritable output folders are refused before any work.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from deepfake_detect.config import to_plain
from deepfake_detect.errors import ConfigError, DataError
from deepfake_detect.runs import run_dir_for
from deepfake_detect.training.run import train
from tests.helpers.audio_data import (
    write_absurd_rate,
    write_good,
    write_nan,
    write_overstated_mp3,
    write_random_bytes,
    write_silent,
    write_zero_length,
)
from tests.helpers.configs import TINY, compose_cfg
from tests.helpers.privileges import bound_by_permissions, skip_reason

TRAIN = [sys.executable, "-m", "deepfake_detect.cli.train"]
PREDICT = [sys.executable, "-m", "deepfake_detect.cli.predict"]
ENV = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
       "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
SMALL = [*TINY, "eval.distortions=[base]"]


def cli(command: list[str], *args: str, unprivileged: bool = False, timeout: int = 600
        ) -> subprocess.CompletedProcess:
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout,
                          env=ENV, preexec_fn=bound_by_permissions if unprivileged else None)


def runs_in(root: Path) -> list:
    """Every MLflow run in the default store under ``root`` (none when there is no store)."""
    if not (root / "mlflow.db").exists():
        return []
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids) if ids else []


def ai_unusable(data: Path, n_ai: int = 8, n_broken: int = 8, n_human: int = 8) -> None:
    """data/human/ (``n_human`` good files) and data/ai/ (``n_ai`` files, ``n_broken`` of them
    zero-byte, random bytes, silent or NaN)."""
    for i in range(n_human):
        write_good(data / "human" / f"h{i}", i)
    broken = [write_zero_length, write_random_bytes, write_silent, write_nan]
    for i in range(n_ai):
        path = data / "ai" / f"a{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        if i < n_broken:
            broken[i % len(broken)](path)
        else:
            write_good(path, i + 3, ".wav")


# --- a class left empty after decoding ------------------------------------------------------


@pytest.mark.slow
def test_every_ai_file_unusable_stops_before_training_with_no_mlflow_run(tmp_path: Path) -> None:
    data, root = tmp_path / "data", tmp_path / "out"
    ai_unusable(data)
    done = cli(TRAIN, "data=folder", f"data.source.root={data}", "data.source.n_clips=null",
               *SMALL, f"paths.root={root}")
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    (run_dir,) = (root / "runs").iterdir()
    listing = run_dir / "artifacts" / "skipped.csv"
    message = errors[0]
    assert "the train set has 0 usable AI-generated (label 1) clip(s) after decoding" in message
    assert "AI-generated clip(s) were skipped" in message and str(listing) in message
    rows = list(csv.DictReader(listing.open()))
    assert len(rows) == 8 and {r["label"] for r in rows} == {"1"}
    assert runs_in(root) == []  # no MLflow run was opened, so none can read FINISHED


@pytest.mark.slow
def test_fewer_than_min_per_class_usable_clips_stop_the_run(tmp_path: Path) -> None:
    data, root = tmp_path / "data", tmp_path / "out"
    ai_unusable(data, n_ai=24, n_broken=22, n_human=24)
    cfg = compose_cfg([*SMALL, "data=folder", f"data.source.root={data}",
                       "data.source.n_clips=null", "data.split.min_per_class=3"], root)
    with pytest.raises(DataError, match=r"the train set has [0-2] usable AI-generated .* "
                                        r"fewer than data.split.min_per_class=3") as err:
        train(cfg)
    listing = run_dir_for(to_plain(cfg)).artifacts / "skipped.csv"
    assert str(listing) in str(err.value) and listing.is_file()
    assert runs_in(root) == []


# --- one process per configuration ----------------------------------------------------------


class Output:
    """A child's combined output, read as it comes."""

    def __init__(self, process: subprocess.Popen):
        self.process, self.lines = process, []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, words: str, deadline: float) -> None:
        while words not in self.text:
            assert self.process.poll() is None, self.text[-3000:]
            assert time.monotonic() < deadline, f"no {words!r} in:\n{self.text[-3000:]}"
            time.sleep(0.2)


@pytest.mark.slow
def test_overlapping_sweeps_train_a_shared_job_once_and_keep_their_own_sweep_ids(
        tmp_path: Path) -> None:
    root = tmp_path / "out"
    shared = run_dir_for(to_plain(compose_cfg([*SMALL, "seed=2"], root)))
    sweeps = {"a": "seed=2,1", "b": "seed=2,3"}
    with shared.hold("refuse"):  # both sweeps reach the shared job while this test holds it
        children = {name: subprocess.Popen(
            [*TRAIN, "-m", values, *SMALL, f"paths.root={root}"], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env=ENV) for name, values in sweeps.items()}
        outputs = {name: Output(child) for name, child in children.items()}
        for output in outputs.values():
            output.wait_for("is already running", time.monotonic() + 600)
    for name, child in children.items():
        assert child.wait(timeout=900) == 0, outputs[name].text[-3000:]
        outputs[name].thread.join()
    both = outputs["a"].text + outputs["b"].text
    assert both.count("epoch 1/1") == 3  # seeds 1, 2 and 3: the shared one trained once
    assert "already finished" in both  # the job that waited reports the stored result
    runs = runs_in(root)
    assert sorted(int(r.data.params["seed"]) for r in runs) == [1, 2, 3]
    assert {r.info.status for r in runs} == {"FINISHED"}
    folders = sorted((root / "hydra" / "multirun").iterdir())
    assert len(folders) == 2  # two sweep ids, though started in the same second
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    from deepfake_detect.reporting.report import find_runs

    for folder in folders:
        second_seed = (folder / "1" / ".hydra" / "overrides.yaml").read_text()
        wanted = [1, 2] if "seed=1" in second_seed else [2, 3]
        _, members = find_runs(client, "deepfake-detect", folder.name)
        assert sorted(int(r.data.params["seed"]) for r in members) == wanted
    for run_dir in (root / "runs").glob("base-*"):  # trainer.keep_checkpoints=best
        assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["best.ckpt"]
        assert (run_dir / "model.ckpt").is_file()


@pytest.mark.slow
def test_a_single_run_of_a_config_another_process_runs_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "out"
    run_dir = run_dir_for(to_plain(compose_cfg([*SMALL, "seed=5"], root)))
    with run_dir.hold("refuse"):
        done = cli(TRAIN, *SMALL, "seed=5", f"paths.root={root}")
    assert done.returncode == 3, done.stderr[-3000:]
    (line,) = [line for line in done.stderr.splitlines() if line.strip()]
    assert "is already running" in line and f"pid {os.getpid()} on {socket.gethostname()}" \
        in line
    assert not list((root / "hydra").rglob("*.yaml"))  # nothing was run: no output folder
    assert runs_in(root) == []


# --- real recordings' quirks: training and predict agree ------------------------------------


def quirky_folder(data: Path, locked: bool) -> dict[str, str]:
    """human/ WAVs, ai/ MP3s whose headers overstate their length, an absurd header rate,
    and (``locked``) a folder that cannot be listed. Returns the expected skipped reasons."""
    for i in range(8):
        write_good(data / "human" / f"h{i}", i, ".wav")
        write_overstated_mp3(data / "ai" / "gen" / f"a{i}.mp3", seconds=6.0, excess=0.03,
                             seed=i)
    absurd = write_absurd_rate(data / "human" / "absurd.wav")
    expected = {str(absurd.resolve()): "implausible header: sample rate 2147483647 Hz"}
    if locked:
        sealed = data / "ai" / "sealed"
        write_good(sealed / "hidden", 0, ".wav")
        sealed.chmod(0)
        expected[str(sealed.resolve())] = "permission denied"
    return expected


@pytest.mark.slow
def test_training_and_predict_read_the_same_files_and_list_the_rest(tmp_path: Path) -> None:
    locked = skip_reason() is None
    data, root = tmp_path / "data", tmp_path / "out"
    expected = quirky_folder(data, locked)
    try:
        trained = cli(TRAIN, "data=folder", f"data.source.root={data}",
                      "data.source.n_clips=null", "data.source.windows.mode=multi", *SMALL,
                      f"paths.root={root}", unprivileged=locked)
        assert trained.returncode == 0, trained.stderr[-3000:]
        (run_dir,) = (root / "runs").iterdir()
        rows = list(csv.DictReader((run_dir / "artifacts" / "skipped.csv").open()))
        reasons = {str(Path(r["path"]).resolve()): r["reason"] for r in rows}
        assert set(reasons) == set(expected), reasons  # no MP3 window among them
        for path, reason in expected.items():
            assert reason in reasons[path]
        result = json.loads((run_dir / "result.json").read_text())
        assert result["data"]["clips"]["train"] > 16  # several windows of every MP3
        out = tmp_path / "predictions.csv"
        scored = cli(PREDICT, "-m", str(run_dir), str(data), "-o", str(out), "-q",
                     unprivileged=locked)
    finally:
        if locked:
            (data / "ai" / "sealed").chmod(0o755)
    assert scored.returncode == 1, scored.stderr[-3000:]  # the absurd file (and the folder)
    errors = {str(Path(r["path"]).resolve()): r["error"] for r in csv.DictReader(out.open())}
    assert {p for p, e in errors.items() if e} == set(expected)
    for path, reason in expected.items():
        assert reason in errors[path]
    assert sum(p.endswith(".mp3") and not e for p, e in errors.items()) == 8
    if not locked:
        pytest.skip(f"unreadable folder not tried: {skip_reason()}")


# --- the feature cache's clip list ----------------------------------------------------------


@pytest.mark.slow
def test_a_relabelled_cache_clip_list_is_rebuilt_and_changes_nothing(tmp_path: Path,
                                                                      caplog) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = compose_cfg(SMALL, tmp_path / "out")
        first = train(cfg)
        entry = next(p.parent for p in (tmp_path / "out" / "cache").glob("*/meta.json")
                     if '"train/base"' in p.read_text())
        listing = json.loads((entry / "clips.json").read_text())
        for row in listing["rows"]:
            row["label"] = 1 - row["label"]
        (entry / "clips.json").write_text(json.dumps(listing, indent=1))  # still valid JSON
        with caplog.at_level("WARNING", logger="deepfake_detect"):
            again = train(compose_cfg([*SMALL, "resume=false"], tmp_path / "out"))
    finally:
        torch.set_num_threads(before)
    assert "clips.json checksum mismatch" in caplog.text and "rebuilding it" in caplog.text
    assert again["data"]["cache"]["rebuilt_corrupt"] == 1
    rebuilt = json.loads((entry / "clips.json").read_text())
    assert [r["label"] for r in rebuilt["rows"]] == [1 - r["label"] for r in listing["rows"]]
    metrics = {k: v for k, v in first.items() if k.startswith("test/")}
    assert metrics and {k: again[k] for k in metrics} == metrics


# --- refused before any work ----------------------------------------------------------------


class Hostile:
    """Pickled, it runs code when loaded: it creates the file named."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("ref,words", [
    ("missing/model.ckpt", "is not a file, a run directory, an MLflow run id"),
    ("not-a-run-id", "is not a file, a run directory, an MLflow run id"),
    ("0123456789abcdef0123456789abcdef", "not found in MLflow"),
    ("hostile.ckpt", "never loaded (they could run code)"),
    ("song.wav", "not a torch file"),
])
def test_a_bad_init_from_is_refused_before_the_cache_build(tmp_path: Path, ref: str,
                                                           words: str) -> None:
    import pickle

    root = tmp_path / "out"
    root.mkdir()
    if ref.isalnum() and len(ref) == 32:  # an MLflow run id the store does not hold
        MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}").search_experiments()
    marker = tmp_path / "pwned"
    if ref == "hostile.ckpt":
        ref = str(tmp_path / ref)
        Path(ref).write_bytes(pickle.dumps({"state_dict": Hostile(marker)}, protocol=2))
    elif ref == "song.wav":
        ref = str(write_good(tmp_path / "song", 0, ".wav"))
    with pytest.raises(ConfigError, match="model.init_from") as err:
        train(compose_cfg([*SMALL, f"model.init_from={ref}"], root))
    assert words in str(err.value) and not marker.exists()
    assert not (root / "cache").exists() and not (root / "runs").exists()


@pytest.mark.slow
@pytest.mark.parametrize("key", ["paths.root", "data.cache.dir"])
def test_an_unwritable_output_folder_is_one_line_naming_its_key(tmp_path: Path,
                                                                key: str) -> None:
    if (reason := skip_reason()) is not None:
        pytest.skip(reason)
    sealed = tmp_path / "read-only"
    sealed.mkdir()
    sealed.chmod(0o555)
    root = sealed / "out" if key == "paths.root" else tmp_path / "out"
    extra = [f"data.cache.dir={sealed / 'cache'}"] if key == "data.cache.dir" else []
    try:
        done = cli(TRAIN, *SMALL, f"paths.root={root}", *extra, unprivileged=True)
    finally:
        sealed.chmod(0o755)
    assert done.returncode == 2, done.stderr[-3000:]
    (line,) = [line for line in done.stderr.splitlines() if line.strip()]
    assert f"config key '{key}'" in line and "permission denied" in line
    assert runs_in(root) == [] and not (root / "runs").exists()
