"""Faults a run must survive with a clear word (issue 23): a failed checkpoint write keeps
the model selection, a full disk anywhere is one line naming the path and the space needed
and the same command then resumes, an OS error on one file is that file's skip reason, and
a manifest is checked whole before any work.

Full disks are real where the tests may mount a small tmpfs (root), else simulated.
"""

from __future__ import annotations

import csv
import errno
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from deepfake_detect import atomic
from deepfake_detect.data.files import audio_files
from deepfake_detect.data.inputs import find_inputs
from deepfake_detect.errors import DataError, DiskFull
from deepfake_detect.models import detector as detector_module
from deepfake_detect.training.run import train
from tests.helpers.audio_data import write_good


def scripted_auroc(monkeypatch, by_epoch: list[float]) -> None:
    """val/auroc of epoch e is ``by_epoch[e]``, also in a resumed run."""

    def fake(self) -> None:
        self._val_parts = []
        if not self.trainer.sanity_checking:
            self.log("val/auroc", torch.tensor(by_epoch[self.current_epoch]))

    monkeypatch.setattr(detector_module.Detector, "on_validation_epoch_end", fake)


def no_space(path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def runs(result_or_root) -> list:
    uri = f"sqlite:///{Path(result_or_root) / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    return client.search_runs([client.get_experiment_by_name("deepfake-detect").experiment_id])


# --- 2: a failed checkpoint write keeps the selection ----------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("failing", ["best"])  # last.ckpt: on a real full disk below
def test_a_failed_checkpoint_write_keeps_the_selection_and_the_rerun_selects_the_same(
        make_cfg, monkeypatch, caplog, tmp_path, failing) -> None:
    """Disk full linking epoch 1's best.ckpt, or writing its last.ckpt (after its
    epoch000.ckpt): the run fails in one line, the rerun resumes into the same run and selects
    epoch 1 (not "val/auroc was never defined")."""
    scripted_auroc(monkeypatch, [0.9, 0.6])
    cfg = make_cfg("trainer.max_epochs=2", "eval.distortions=[base]", "eval.baselines=[]",
                   "eval.bootstrap=0")
    real_link, real_save = atomic.link_or_copy, atomic.save_torch
    calls = {"n": 0}

    def failing_link(source, path):
        raise no_space(path)

    def failing_save(path, payload):
        if Path(path).name == "last.ckpt" and payload["epoch"] == 0:
            raise DiskFull(str(path), 1000, 134_000_000)
        return real_save(path, payload)

    if failing == "best":
        def link(source, path):
            calls["n"] += 1
            return failing_link(source, path) if calls["n"] == 1 else real_link(source, path)
        monkeypatch.setattr(atomic, "link_or_copy", link)
    else:
        monkeypatch.setattr(atomic, "save_torch", failing_save)
    with pytest.raises(DiskFull, match="disk full writing .*(best|last).ckpt"):
        train(cfg)
    (failed,) = runs(tmp_path / "out")
    assert failed.info.status == "FAILED" and "disk full" in failed.data.tags["error"]
    monkeypatch.setattr(atomic, "link_or_copy", real_link)
    monkeypatch.setattr(atomic, "save_torch", real_save)
    with caplog.at_level(logging.INFO, logger="deepfake_detect"):
        result = train(cfg)
    assert "never defined" not in caplog.text
    assert result["run_id"] == failed.info.run_id
    assert (result["selected_epoch"], result["selection"]) == (1, "best val/auroc 0.9000")
    best = Path(result["run_dir"]) / "checkpoints" / "best.ckpt"
    assert torch.load(best, weights_only=True)["epoch"] == 0


# --- 3: a full disk is one line, and the same command resumes --------------------------------


def test_atomic_writes_on_a_full_disk_name_the_path_and_the_space(tmp_path, monkeypatch) -> None:
    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos") \
            from no_space(tmp_path / "x")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(DiskFull) as caught:
        atomic.save_torch(tmp_path / "model.ckpt", {"w": torch.zeros(250_000)})
    message = str(caught.value)
    assert f"disk full writing {tmp_path / 'model.ckpt'}" in message
    assert "about 1.0 MB needed" in message and "free there" in message
    assert "\n" not in message and not atomic.temporaries(tmp_path / "model.ckpt")
    with pytest.raises(ValueError), atomic.atomic_path(tmp_path / "y"):  # the rest: as it is
        raise ValueError("not a disk problem")
    sqlite = RuntimeError("(sqlite3.OperationalError) database or disk is full")
    assert isinstance(atomic.disk_full(sqlite, fallback=tmp_path / "mlflow.db"), DiskFull)


@pytest.mark.slow
def test_the_train_command_says_disk_full_in_one_line(tmp_path) -> None:
    """A write filling the disk outside the library's own writers: one line, exit 2."""
    script = ("import errno, os\n"
              "import deepfake_detect.cli.train as cli\n"
              "def job(cfg):\n"
              "    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.environ['TARGET'])\n"
              "cli._job = job\n"
              "cli.main()\n")
    target = tmp_path / "somewhere.bin"
    proc = subprocess.run([sys.executable, "-c", script, "debug=fast_dev_run",
                           f"paths.root={tmp_path}"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "TARGET": str(target)})
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(f"error: disk full writing {target} ("), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


@pytest.fixture
def small_disk(tmp_path):
    """``mount(name, size)``: a tmpfs of ``size`` (``"200m"``) at ``tmp_path / name``;
    ``resize(where, size)``. Skips where mounting is not allowed (not root)."""
    mounted: list[Path] = []
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (the simulated full-disk tests still run)")

    def mount(name: str, size: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(where)], capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
        mounted.append(where)
        return where

    def resize(where: Path, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True)

    yield mount, resize
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.slow
def test_a_cache_build_on_a_full_disk_stops_in_one_line_and_resumes(make_cfg, small_disk,
                                                                     tmp_path) -> None:
    mount, resize = small_disk
    cache = mount("cache", "64k")
    cfg = make_cfg(f"data.cache.dir={cache}", "eval.distortions=[base]", "eval.baselines=[]")
    with pytest.raises(DiskFull, match=f"disk full writing {cache}/.* free there, about "
                                       r"[0-9.]+ kB needed"):
        train(cfg)
    assert not list(cache.glob(".*.tmp-*"))  # nothing half-written left behind
    assert not (tmp_path / "out" / "mlflow.db").exists() or not runs(tmp_path / "out")
    resize(cache, "16m")
    result = train(cfg)
    assert result["data"]["cache"]["built"] >= 1
    assert runs(tmp_path / "out")[0].info.status == "FINISHED"


@pytest.mark.slow
def test_checkpoints_and_artifacts_on_a_full_disk_fail_the_run_and_the_rerun_resumes(
        make_cfg, small_disk, monkeypatch, tmp_path) -> None:
    """200 MB: epoch000.ckpt (134 MB) fits, last.ckpt does not; resumed, the bundle (45 MB)
    fits and its copy into the artifact store does not; with room, the same run finishes and
    selects the epoch (its score survived both failures)."""
    mount, resize = small_disk
    root = mount("root", "200m")
    scripted_auroc(monkeypatch, [0.7])
    cfg = make_cfg(f"data.cache.dir={tmp_path / 'cache'}", "eval.distortions=[base]",
                   "eval.baselines=[]", "eval.bootstrap=0", root=root)
    with pytest.raises(DiskFull, match=r"disk full writing .*/checkpoints/last\.ckpt \(.* "
                                       r"free there, about 1[0-9.]+ MB needed\)"):
        train(cfg)
    (run,) = runs(root)
    assert run.info.status == "FAILED" and run.data.tags["error"].startswith("DiskFull: ")
    with pytest.raises(DiskFull, match=r"disk full writing .*mlartifacts.* about 4[0-9.]+ MB "
                                       "needed"):
        train(cfg)
    assert runs(root)[0].info.status == "FAILED"
    resize(root, "500m")
    result = train(cfg)
    (run,) = runs(root)
    assert run.info.run_id == result["run_id"] and run.info.status == "FINISHED"
    assert (result["selected_epoch"], result["selection"]) == (1, "best val/auroc 0.7000")


# --- 4: an OS error on one file is that file's reason ----------------------------------------


@pytest.mark.slow
def test_a_five_thousand_character_path_is_a_skipped_file_with_its_reason(make_cfg,
                                                                          tmp_path) -> None:
    """Name too long (and a symbolic link loop) in a manifest: skipped with the reason,
    listed in skipped.csv; the run goes on."""
    root = tmp_path / "data"
    rows = []
    for i in range(12):
        path = write_good(root / f"c{i}", i)
        rows.append([path.name, str(i % 2)])
    long_name = "x" * 5000 + ".wav"
    (root / "loop.wav").symlink_to("loop.wav")
    rows += [[long_name, "1"], ["loop.wav", "0"]]
    listing = root / "list.csv"
    with listing.open("w", newline="") as handle:
        csv.writer(handle).writerows([["path", "label"], *rows])
    result = train(make_cfg("data=manifest", f"data.source.csv={listing}",
                            "data.source.n_clips=null", "data.split.min_per_class=1",
                            "eval.distortions=[base]", "eval.baselines=[]"))
    skipped = Path(result["run_dir"]) / "artifacts" / "skipped.csv"
    reasons = {row["path"][-20:]: row["reason"] for row in csv.DictReader(skipped.open())}
    assert reasons[("x" * 16) + ".wav"].startswith("file name too long (50")
    assert reasons[str(root / "loop.wav")[-20:]] == f"symbolic link loop: {root / 'loop.wav'}"


def test_symlink_loops_are_reported_with_their_path_in_training_and_predict(tmp_path) -> None:
    folder = tmp_path / "in"
    write_good(folder / "a", 0)
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to("..")  # a folder loop
    (folder / "self.wav").symlink_to("self.wav")  # a file loop
    items = {item.path: item.error for item in find_inputs([folder, folder / "self.wav"])}
    assert items[str(folder / "sub" / "up")].startswith("symbolic link loop (back to ")
    assert items[str(folder / "self.wav")].startswith("symbolic link loop")
    assert items[str(folder / "a.wav")] == ""
    problems: list[dict[str, str]] = []
    listed = list(audio_files(folder, (".wav",), problems))
    assert listed == [folder / "a.wav"]
    assert {p["path"] for p in problems} == {str(folder / "self.wav"), str(folder / "sub" / "up")}


# --- 9: a manifest checked whole --------------------------------------------------------------


def test_every_bad_manifest_row_is_named_in_one_message(tmp_path, caplog) -> None:
    from deepfake_detect.data.manifest import ManifestSource

    listing = tmp_path / "list.csv"
    listing.write_text("path,label,split,notes\n"
                       "a.wav,0,,fine\n"
                       "b.wav,maybe,,\n"
                       ",1,,\n"
                       "c.wav,1,holdout,\n"
                       "d.wav,1,,x,y\n"
                       "a.wav,1,,\n"
                       "../outside.wav,1,,\n")
    with pytest.raises(DataError) as caught, caplog.at_level(logging.WARNING):
        ManifestSource(csv=str(listing)).clips()
    lines = str(caught.value).splitlines()
    assert lines[0].startswith(f"{listing}: 5 bad row(s)")
    assert lines[1:] == [
        f"{listing} line 3, column label: 'maybe' is not one of 0, 1, human, real, ai, fake, "
        "deepfake",
        f"{listing} line 4, column path: empty (expected a file path)",
        f"{listing} line 5, column split: 'holdout' is not one of train, val, valid, "
        "validation, test (or empty)",
        f"{listing} line 6: 5 cells but the header has 4 columns (an unquoted comma in a "
        "path?)",
        f"{listing} line 7, column path: 'a.wav' is already listed on line 2"]
    assert "column(s) notes are not used" in caplog.text
    listing.write_text("path,label\na.wav,0\n../outside.wav,1\n")
    with caplog.at_level(logging.WARNING):
        clips = ManifestSource(csv=str(listing)).clips()
    assert len(clips) == 2
    assert "1 path(s) lead outside data.source.audio_root" in caplog.text
    assert "(lines 3)" in caplog.text
