"""Scaling out: parallel sweeps (joblib, submitit), a shared MLflow server, DDP from the Hydra
CLI, and the hardware choices of the trainer group (precision, channels-last, GPU per job).

The sweeps and the DDP run go through the real console script; the GPU logic is checked with
a faked set of GPUs (these tests run on CPU).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from deepfake_detect import scaling, tracking
from deepfake_detect.config import to_plain
from deepfake_detect.errors import ConfigError
from deepfake_detect.runs import run_dir_for
from tests.helpers.mlflow_ui import mlflow_server as server_on

pytestmark = pytest.mark.slow  # end to end: trains, sweeps or runs commands

CLI = shutil.which("deepfake-detect-train") or "deepfake-detect-train"
TINY = ["debug=fast_dev_run", "trainer.enable_progress_bar=false", "eval.distortions=[base]"]
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
TIMEOUT = 600


def run_cli(*args: str, root: Path) -> str:
    done = subprocess.run([CLI, *args, *TINY, f"paths.root={root}"], env=ENV,
                          capture_output=True, text=True, timeout=TIMEOUT)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-5000:]
    assert "Traceback" not in out and "OperationalError" not in out, out[-5000:]
    return out


def runs_in(root: Path, experiment: str) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    return client.search_runs([found.experiment_id])


# --- precision, channels-last ------------------------------------------------------------------


def test_precision_auto_is_32_true_on_cpu_with_the_signature_of_an_explicit_32_true(make_cfg):
    from deepfake_detect.training.plan import plan

    auto, explicit = make_cfg(), make_cfg("trainer.precision=32-true")
    assert to_plain(auto)["trainer"]["precision"] == "auto"
    p = plan(auto)
    assert p.trainer["precision"] == "32-true" and "channels_last" not in p.trainer
    assert p.resolved["trainer"]["channels_last"] is False
    assert p.run_dir == plan(explicit).run_dir == run_dir_for(to_plain(auto))


@pytest.mark.parametrize(("capability", "expected"), [((9, 0), "bf16-mixed"),
                                                     ((7, 5), "16-mixed")])
def test_precision_auto_on_a_gpu(monkeypatch, make_cfg, capability, expected: str) -> None:
    import torch

    monkeypatch.setattr(scaling, "on_cuda", lambda trainer: trainer["accelerator"] != "cpu")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: capability)
    resolved = to_plain(make_cfg("trainer.accelerator=auto"))
    node = scaling.resolve_trainer(resolved["trainer"])
    assert node["precision"] == expected and node["channels_last"] is True
    cpu = scaling.resolve_trainer({**resolved["trainer"], "accelerator": "cpu"})
    assert cpu["precision"] == "32-true" and cpu["channels_last"] is False
    # Another precision is another run; the memory layout alone is not.
    on_gpu = dict(resolved, trainer=node)
    assert run_dir_for(on_gpu) != run_dir_for(dict(resolved, trainer={**node,
                                                                      "precision": "32-true"}))
    same = dict(on_gpu, trainer={**node, "channels_last": False})
    assert run_dir_for(same) == run_dir_for(on_gpu)


def test_bad_extra_trainer_keys_name_the_key(make_cfg) -> None:
    from deepfake_detect.training.plan import plan

    with pytest.raises(ConfigError, match="trainer.gpu_per_job"):
        plan(make_cfg("trainer.gpu_per_job=sometimes"))
    with pytest.raises(ConfigError, match="trainer.channels_last"):
        plan(make_cfg("trainer.channels_last=maybe"))


# --- GPU per sweep job -------------------------------------------------------------------------


@pytest.fixture
def fake_gpus(monkeypatch) -> Iterator[None]:
    """A fresh process view: no GPU picked yet; CUDA reported available."""
    for name in ("_original_gpus", "_gpus_in_effect"):
        monkeypatch.setattr(scaling, name, None)
    monkeypatch.setattr(scaling, "_job", threading.local())
    monkeypatch.setattr(scaling, "_cuda_initialised", lambda: False)
    monkeypatch.setattr(scaling, "on_cuda", lambda trainer: True)
    yield


def test_each_joblib_job_gets_gpu_job_num_mod_n(monkeypatch, fake_gpus) -> None:
    import torch

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,7")
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    trainer = {"accelerator": "auto", "devices": 1, "gpu_per_job": "auto"}
    assert scaling.prepare_sweep_job(trainer, joblib, 4) == "5"
    # A fresh process: its GPU comes first, so it is cuda:0 for every library.
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5,7,3"
    assert scaling.job_devices(trainer)["devices"] == [0]
    scaling.release_gpu()
    # The same (reused) worker process: CUDA's order is fixed, the index moves instead.
    assert scaling.prepare_sweep_job(trainer, joblib, 2) == "7"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5,7,3"
    assert scaling.job_devices(trainer)["devices"] == [1]
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: f"Fake GPU {index}")
    assert scaling.device_name(trainer) == "cuda:1 Fake GPU 1"
    scaling.release_gpu()
    assert scaling.job_devices(trainer) == trainer


def test_no_gpu_pinning_without_joblib_cpu_or_a_second_gpu(monkeypatch, fake_gpus) -> None:
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    basic = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    one = {"devices": 1, "accelerator": "auto"}
    assert scaling.prepare_sweep_job({**one, "gpu_per_job": "auto"}, basic, 1) is None
    assert scaling.prepare_sweep_job({**one, "gpu_per_job": False}, joblib, 1) is None
    assert scaling.prepare_sweep_job({**one, "accelerator": "cpu"}, joblib, 1) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert scaling.prepare_sweep_job({**one, "gpu_per_job": True}, basic, 1) == "1"
    monkeypatch.setattr(scaling, "_original_gpus", None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert scaling.pin_gpu(1) is None


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aa, 2 ,-1,3")
    assert scaling.visible_gpus() == ["GPU-aa", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert scaling.visible_gpus() == []


# --- DDP ---------------------------------------------------------------------------------------


def test_multi_process_training_is_refused_in_a_multirun(monkeypatch) -> None:
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    with pytest.raises(ConfigError, match="trainer.strategy.*not allowed in a multirun"):
        scaling.check_sweep_strategy({"strategy": "ddp", "devices": 2, "accelerator": "cpu"})
    with pytest.raises(ConfigError, match="trainer.strategy"):
        scaling.check_sweep_strategy({"devices": "0,1", "accelerator": "gpu"})
    scaling.check_sweep_strategy({"strategy": "ddp", "devices": 1})
    monkeypatch.setenv("SLURM_NTASKS", "2")  # SLURM starts the ranks: nothing re-launched
    scaling.check_sweep_strategy({"strategy": "ddp", "devices": 2, "accelerator": "cpu"})
    with pytest.raises(ConfigError, match="iterative training is single-process"):
        scaling.check_iterative_strategy({"strategy": "ddp", "devices": 2, "accelerator": "cpu"})


def test_ddp_sweep_from_the_cli_stops_before_any_work(tmp_path: Path) -> None:
    root = tmp_path / "out"
    done = subprocess.run([CLI, "-m", "trainer=ddp", "trainer.devices=2", "seed=1,2", *TINY,
                           f"paths.root={root}"], env=ENV, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert "trainer.strategy" in done.stderr and "multirun" in done.stderr
    assert not (root / "runs").exists() and not (root / "mlflow.db").exists()


def test_ddp_on_cpu_two_processes_one_run_one_output_directory(tmp_path: Path) -> None:
    root = tmp_path / "out"
    run_cli("trainer=ddp", "trainer.devices=2", root=root)
    job_dirs = [p.parent for p in (root / "hydra").rglob(".hydra")]
    assert len(job_dirs) == 1
    assert (job_dirs[0] / "train_ddp_process_1.log").is_file()  # rank 1 ran, in the same dir
    run_dirs = list((root / "runs").iterdir())
    assert len(run_dirs) == 1
    result = json.loads((run_dirs[0] / "result.json").read_text())
    (run,) = runs_in(root, "deepfake-detect")
    assert run.info.status == "FINISHED" and run.info.run_id == result["run_id"]
    assert run.data.params["trainer.strategy"] == "ddp"
    assert run.data.tags["precision"] == "32-true" and run.data.tags["device"] == "cpu"
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    for key in ("train/loss", "val/loss", "test/base/accuracy"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 1, key
    # Tested on one device: every test clip, not one process's shard.
    with (run_dirs[0] / "artifacts" / "predictions_base.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == result["data"]["clips"]["test/base"] == 2
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"model"}


# --- parallel sweeps, shared server ------------------------------------------------------------


def test_joblib_sweep_on_the_default_sqlite_store_goes_on_past_a_failed_job(
        tmp_path: Path) -> None:
    root = tmp_path / "out"
    # A loader worker inside a joblib (loky) worker, whose default start method is not fork;
    # the second job fails in its worker: the first finishes, and the exit code says it.
    done = subprocess.run([CLI, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                           "seed=1", "features.n_mels=32,0", "data.loader.num_workers=1", *TINY,
                           f"paths.root={root}"], env=ENV, capture_output=True, text=True,
                          timeout=TIMEOUT)
    out = done.stdout + done.stderr
    assert done.returncode == 2 and "Joblib.Parallel(n_jobs=2" in out, out[-5000:]
    assert "Traceback" not in out and "OperationalError" not in out, out[-5000:]
    summary = done.stderr[done.stderr.index("1 job(s) of the sweep failed"):]
    assert "job 1 (seed=1,features.n_mels=0," in summary and "'features.n_mels'" in summary
    runs = runs_in(root, "deepfake-detect")
    assert [(r.data.params["seed"], r.info.status) for r in runs] == [("1", "FINISHED")]
    assert all("test/base/accuracy" in r.data.metrics for r in runs)


def rest(base: str, path: str, body: dict | None = None, **query: str) -> dict:
    url = f"{base}/api/2.0/mlflow/{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """``mlflow server`` (sqlite backend, one worker) on a free 127.0.0.1 port."""
    with server_on(tmp_path_factory.mktemp("mlflow-server")) as base:
        yield base


def test_submitit_local_sweep_against_an_mlflow_server(tmp_path: Path, mlflow_server: str):
    root = tmp_path / "out"
    run_cli("-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "seed=1,2",
            f"logger.tracking_uri={mlflow_server}", "logger.experiment_name=shared",
            root=root)
    assert not (root / "mlflow.db").exists()  # everything went to the server
    experiment = rest(mlflow_server, "experiments/get-by-name",
                      experiment_name="shared")["experiment"]
    runs = rest(mlflow_server, "runs/search",
                {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    assert len(runs) == 2
    assert {r["info"]["status"] for r in runs} == {"FINISHED"}
    seeds = sorted(p["value"] for r in runs for p in r["data"]["params"] if p["key"] == "seed")
    assert seeds == ["1", "2"]
    for run in runs:
        assert "test/base/accuracy" in {m["key"] for m in run["data"]["metrics"]}
        files = rest(mlflow_server, "artifacts/list", run_id=run["info"]["run_id"])["files"]
        assert "model" in {f["path"] for f in files}


def test_parallel_jobs_creating_one_experiment_on_a_server(mlflow_server: str,
                                                           monkeypatch) -> None:
    """Jobs that all find no experiment race to create it on a real server: one creates it,
    the others get RESOURCE_ALREADY_EXISTS from the server and use the winner's id."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient as Client

    jobs = 4
    name = f"race-{uuid.uuid4().hex[:8]}"
    real_get, real_create = Client.get_experiment_by_name, Client.create_experiment
    everyone_looked = threading.Barrier(jobs, timeout=120)
    first_look = threading.local()
    created: list[str] = []
    refused: list[str] = []

    def look_then_wait(self, experiment_name):
        found = real_get(self, experiment_name)
        if not getattr(first_look, "done", False):  # each job's first look: nothing yet,
            first_look.done = True  # and no job creates before every job has looked
            everyone_looked.wait()
        return found

    def create(self, *args, **kwargs):
        try:
            experiment_id = real_create(self, *args, **kwargs)
        except MlflowException as err:
            refused.append(err.error_code)
            raise
        created.append(experiment_id)
        return experiment_id

    monkeypatch.setattr(Client, "get_experiment_by_name", look_then_wait)
    monkeypatch.setattr(Client, "create_experiment", create)
    with ThreadPoolExecutor(jobs) as pool:
        ids = list(pool.map(lambda _: tracking.ensure_experiment(mlflow_server, name, None,
                                                                 None), range(jobs)))
    assert len(set(ids)) == 1
    assert created == ids[:1] and refused == ["RESOURCE_ALREADY_EXISTS"] * (jobs - 1)
    found = rest(mlflow_server, "experiments/get-by-name", experiment_name=name)
    assert found["experiment"]["experiment_id"] == ids[0]


def test_slurm_preset_extends_submitit_slurm(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    from deepfake_detect.config import conf_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                          f"paths.root={tmp_path}"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node) == ("gpu", 1, 1)
    assert launcher.timeout_min == 240 and launcher.array_parallelism == 16
    assert launcher.max_num_timeout == 3  # requeued jobs resume from their checkpoints
