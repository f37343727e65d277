"""Hardware choices of the ``trainer`` group beyond Lightning's own arguments.

- ``trainer.precision: auto`` becomes ``bf16-mixed`` on a GPU that supports bfloat16,
  ``16-mixed`` on an older GPU and ``32-true`` on CPU; ``trainer.channels_last: auto`` is on
  only on GPU. Both are resolved *before* the run signature is computed, so a run's directory,
  params and checkpoints always say which precision produced them, and on CPU the signature
  equals that of an explicit ``precision=32-true``.
- ``trainer.gpu_per_job``: in a sweep whose jobs run in parallel on one machine (Hydra's joblib
  launcher), job ``n`` uses GPU ``n mod <visible GPUs>``.
- DDP: only the rank-zero process owns the run (MLflow, artifacts, result); a strategy that
  re-launches the command line is refused inside a multirun.

Nothing here initialises CUDA before a job has picked its GPU, and on a machine without an
NVIDIA device nothing here imports torch (a finished job is skipped without it).
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import subprocess
import sys
import threading
from typing import Any

from deepfake_detect.config import one_of, require
from deepfake_detect.errors import ConfigError

log = logging.getLogger(__name__)

# Keys of the trainer group that are ours, not lightning.pytorch.Trainer arguments.
EXTRA_KEYS = ("channels_last", "gpu_per_job", "early_stopping", "keep_checkpoints")
# What a finished run keeps of its training checkpoints (checkpoints.prune_checkpoints).
KEEP_CHECKPOINTS = ("best", "last", "all", "none")
CUDA_ACCELERATORS = ("auto", "gpu", "cuda")
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")

_original_gpus: list[str] | None = None  # visible GPUs before this process changed anything
_gpus_in_effect: list[str] | None = None  # the CUDA_VISIBLE_DEVICES order CUDA will use here
_job = threading.local()  # .device: CUDA index picked for this thread's job (gpu_per_job)


def split_trainer(node: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Lightning Trainer arguments, our extra keys) of a trainer config node."""
    return ({k: v for k, v in node.items() if k not in EXTRA_KEYS},
            {k: v for k, v in node.items() if k in EXTRA_KEYS})


def visible_gpus() -> list[str]:
    """Ids of the NVIDIA GPUs this process may use (``CUDA_VISIBLE_DEVICES`` entries, or
    indices counted by ``nvidia-smi -L``), found without touching CUDA."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = []
        for entry in (e.strip() for e in env.split(",")):
            if not entry or entry.startswith("-"):  # CUDA stops at the first invalid entry
                break
            ids.append(entry)
        return ids
    return [str(i) for i in range(_nvidia_smi_count())]


@functools.lru_cache(maxsize=1)
def _nvidia_smi_count() -> int:
    if sys.platform.startswith("linux") and not glob.glob("/dev/nvidia[0-9]*"):
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                 timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


def on_cuda(trainer: dict[str, Any]) -> bool:
    """Whether these trainer settings train on a CUDA GPU (imports torch only if one may be
    there)."""
    if str(trainer.get("accelerator", "auto")) not in CUDA_ACCELERATORS or not visible_gpus():
        return False
    import torch

    return torch.cuda.is_available()


def resolve_trainer(trainer: dict[str, Any]) -> dict[str, Any]:
    """A copy of the trainer node with ``precision`` and ``channels_last`` ``auto`` resolved."""
    node = dict(trainer)
    precision = node.get("precision", "auto")
    channels_last = node.get("channels_last", "auto")
    if "auto" not in (precision, channels_last):
        return node
    gpu = on_cuda(node)
    if precision == "auto":
        node["precision"] = gpu_precision() if gpu else "32-true"
    if channels_last == "auto":
        node["channels_last"] = gpu
    return node


def gpu_precision() -> str:
    """``bf16-mixed`` on a GPU with native bfloat16 (compute capability 8.0 and later), else
    ``16-mixed``. Asks about this process's GPU (its job's, or its DDP rank's), which keeps
    other GPUs free of a CUDA context from this process."""
    import torch

    index = getattr(_job, "device", None) or int(os.environ.get("LOCAL_RANK") or 0)
    major, _ = torch.cuda.get_device_capability(min(index, torch.cuda.device_count() - 1))
    return "bf16-mixed" if major >= 8 else "16-mixed"


def check_extras(extras: dict[str, Any]) -> None:
    """Validate our extra trainer keys (after :func:`resolve_trainer`)."""
    require(isinstance(extras.get("channels_last", False), bool), "trainer.channels_last",
            f"must be true, false or auto, got {extras.get('channels_last')!r}")
    one_of(extras.get("gpu_per_job", "auto"), ("auto", True, False), "trainer.gpu_per_job")
    stop = extras.get("early_stopping") or {}
    require(isinstance(stop, dict) and set(stop) <= {"patience", "min_delta"},
            "trainer.early_stopping", f"must be a mapping of patience and min_delta, got {stop!r}")
    patience = stop.get("patience")
    require(patience is None or (isinstance(patience, int) and not isinstance(patience, bool)
                                 and patience >= 1), "trainer.early_stopping.patience",
            f"must be a number of epochs >= 1, or null (no early stopping), got {patience!r}")
    delta = stop.get("min_delta", 0.0)
    require(isinstance(delta, int | float) and delta >= 0, "trainer.early_stopping.min_delta",
            f"must be a number >= 0, got {delta!r}")
    one_of(extras.get("keep_checkpoints", "best"), KEEP_CHECKPOINTS, "trainer.keep_checkpoints")


def check_hardware(trainer: dict[str, Any]) -> None:
    """The accelerator and device count asked for exist on this machine (before any work)."""
    accelerator = str(trainer.get("accelerator", "auto"))
    devices = trainer.get("devices", "auto")
    key = "trainer.devices"
    if isinstance(devices, list | tuple):
        require(len(devices) > 0 and all(isinstance(d, int) and d >= 0 for d in devices), key,
                f"must list device indices (integers >= 0), got {devices!r}")
    elif isinstance(devices, str) and devices != "auto":
        parts = [d.strip() for d in devices.split(",") if d.strip()]
        require(bool(parts) and all(p.lstrip("-").isdigit() for p in parts), key,
                f"must be a number, a list of indices, 'auto' or '0,1', got {devices!r}")
    elif devices != "auto":
        require(isinstance(devices, int) and not isinstance(devices, bool)
                and (devices >= 1 or devices == -1), key,
                f"must be an integer >= 1, -1 (all), a list of indices or auto, got {devices!r}")
    if accelerator in ("gpu", "cuda"):
        gpus = len(visible_gpus())
        require(gpus > 0, "trainer.accelerator",
                f"{accelerator} asked for, but this machine has no usable NVIDIA GPU; use "
                "trainer.accelerator=cpu (or auto: the GPU when there is one)")
        wanted = process_count({**trainer, "num_nodes": 1})
        require(wanted <= gpus or devices == "auto", key,
                f"asks for {wanted} GPUs; this machine has {gpus}")
    elif accelerator in ("tpu", "mps"):
        from lightning.pytorch.accelerators import MPSAccelerator, XLAAccelerator

        found = (XLAAccelerator if accelerator == "tpu" else MPSAccelerator).is_available()
        require(found, "trainer.accelerator",
                f"{accelerator} asked for, but this machine has none; use cpu, gpu or auto")


def is_rank_zero() -> bool:
    """False in the extra processes of a distributed run (they train; rank 0 owns the run)."""
    return all(os.environ.get(key, "0") == "0" for key in RANK_VARIABLES)


def process_count(trainer: dict[str, Any]) -> int:
    """How many training processes Lightning starts for these settings (per node x nodes)."""
    devices = trainer.get("devices", "auto")
    cpu = str(trainer.get("accelerator", "auto")) not in CUDA_ACCELERATORS or not visible_gpus()
    if isinstance(devices, list | tuple):
        count = len(devices)
    elif isinstance(devices, str) and "," in devices:
        count = len([d for d in devices.split(",") if d.strip()])
    elif str(devices) in ("auto", "-1"):
        count = 1 if cpu else len(visible_gpus())
    else:
        count = int(devices)
    return max(count, 1) * int(trainer.get("num_nodes", 1) or 1)


def check_sweep_strategy(trainer: dict[str, Any]) -> None:
    """Refuse multi-process training inside a multirun unless the processes come from the
    cluster (SLURM tasks, torchrun): Lightning's DDP would re-run the command line, i.e. the
    whole sweep, once per extra device."""
    count = process_count(trainer)
    if count <= 1 or _processes_from_cluster():
        return
    strategy = trainer.get("strategy", "auto")
    raise ConfigError("trainer.strategy", f"{strategy} with {count} training processes "
                      "is not allowed in a multirun (-m): DDP re-launches the "
                      "command line for every extra device, which would start the sweep "
                      "again. Train on several GPUs in a single run (trainer=ddp without -m), "
                      "or give each sweep job one GPU: -m hydra/launcher=joblib "
                      "hydra.launcher.n_jobs=<GPUs> (see README, 'Scaling out')")


def check_iterative_strategy(trainer: dict[str, Any]) -> None:
    """Iterative training runs its stages, and their MLflow parent run, in one process."""
    if (count := process_count(trainer)) > 1:
        raise ConfigError("trainer.strategy", f"iterative training is single-process; got "
                          f"{trainer.get('strategy', 'auto')} with {count} training processes "
                          "(use trainer.devices=1)")


def _processes_from_cluster() -> bool:
    """SLURM tasks (submitit with tasks_per_node = devices) or torchrun start every rank."""
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return True
    return "TORCHELASTIC_RUN_ID" in os.environ


def pin_gpu(job_num: int) -> tuple[str, int] | None:
    """Give sweep job ``job_num`` GPU ``job_num mod N`` of the N visible ones.

    Returns (GPU id, CUDA index in this process), or None with fewer than two GPUs. A fresh
    process gets ``CUDA_VISIBLE_DEVICES`` rotated so that its GPU comes first (so it is also
    ``cuda:0`` for any library); a reused worker process (joblib keeps its workers), whose
    CUDA order is already fixed, gets the index of the GPU in that order instead.
    """
    global _original_gpus, _gpus_in_effect
    if _original_gpus is None:
        _original_gpus = visible_gpus()
    gpus = _original_gpus
    if len(gpus) < 2:
        return None
    gpu = gpus[job_num % len(gpus)]
    if _gpus_in_effect is None:
        if _cuda_initialised():  # too late to reorder: CUDA keeps the order it started with
            _gpus_in_effect = list(gpus)
        else:
            start = gpus.index(gpu)
            _gpus_in_effect = gpus[start:] + gpus[:start]
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(_gpus_in_effect)
    _job.device = _gpus_in_effect.index(gpu)
    return gpu, _job.device


def job_devices(trainer: dict[str, Any]) -> dict[str, Any]:
    """Trainer arguments with ``devices`` set to the GPU :func:`pin_gpu` picked, if any."""
    device = getattr(_job, "device", None)
    if device is None or trainer.get("devices", 1) not in (1, "1", "auto") or not on_cuda(trainer):
        return trainer
    return {**trainer, "devices": [device]}


def release_gpu() -> None:
    """Forget the current job's GPU (the next job in this worker picks its own)."""
    _job.device = None


def _cuda_initialised() -> bool:
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


def prepare_sweep_job(trainer: dict[str, Any], launcher: str, job_num: int) -> str | None:
    """Check one multirun job's trainer settings and pick its GPU (``trainer.gpu_per_job``:
    ``auto`` = with the joblib launcher, whose jobs share this machine; SLURM and
    ``submitit_local`` hand each job its own GPUs). Returns the GPU id, if one was picked."""
    check_sweep_strategy(trainer)
    mode = trainer.get("gpu_per_job", "auto")
    if mode is False or (mode == "auto" and "joblib" not in launcher.lower()):
        return None
    if str(trainer.get("accelerator", "auto")) not in CUDA_ACCELERATORS:
        return None
    pinned = pin_gpu(job_num)
    if pinned is None:
        return None
    gpu, index = pinned
    log.info("sweep job %d: GPU %s (cuda:%d with CUDA_VISIBLE_DEVICES=%s)", job_num, gpu,
             index, os.environ.get("CUDA_VISIBLE_DEVICES"))
    return gpu


def device_name(trainer: dict[str, Any]) -> str:
    """What a run trains on, for its tags: ``cpu`` or ``cuda:<i> <GPU name>[ xN]``."""
    accelerator = str(trainer.get("accelerator", "auto"))
    if not on_cuda(trainer):
        return "cpu" if accelerator in ("auto", "cpu") else accelerator
    import torch

    devices = job_devices(trainer).get("devices", 1)
    index = devices[0] if isinstance(devices, list | tuple) else 0
    count = process_count(trainer)
    return f"cuda:{index} {torch.cuda.get_device_name(index)}" + (f" x{count}" * (count > 1))
