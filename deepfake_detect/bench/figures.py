"""The benchmark's measurements; each returns a :class:`Figure` (value, goal, details).

Everything runs through the product's own code: the ``folder`` source over generated WAV
files, :class:`AudioDataModule` with its cache and loaders, the :class:`Detector`, the
librosa log-mel and :class:`torch_mel.LogMel`.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from deepfake_detect.data import distortions as dist
from deepfake_detect.data.cache import FeatureCache, available_cores
from deepfake_detect.data.datamodule import AudioDataModule, EpochShuffle
from deepfake_detect.data.features import FeatureConfig, fit_length, log_mel
from deepfake_detect.data.sets import FeatureWork
from deepfake_detect.data.torch_mel import PARITY_DB, LogMel
from deepfake_detect.models.detector import Detector, ModelConfig
from deepfake_detect.models.frontend import FrontEnd


@dataclass
class Figure:
    """One row of the report. ``ok`` is None for figures without a goal."""

    key: str
    name: str
    value: float
    text: str
    goal: str = ""
    ok: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Setup:
    """What every measurement shares: the clips on disk, the features, the device."""

    root: Path
    features: FeatureConfig
    distortion: dist.Distortion
    batch_size: int
    device: torch.device
    loader: dict[str, Any] = field(default_factory=dict)

    def datamodule(self, cache: str, workers: int, store: str = "features",
                   distortion: dist.Distortion | None = None,
                   loader: dict[str, Any] | None = None) -> AudioDataModule:
        distortion = distortion or self.distortion
        data = {"source": {"name": "folder", "root": str(self.root / "audio"),
                           "duration": self.features.duration},
                "split": {"val": 0.15, "test": 0.15, "seed": 0},
                "loader": {"batch_size": self.batch_size, **self.loader, **(loader or {})},
                "cache": {"dir": str(self.root / cache), "workers": workers, "store": store}}
        dm = AudioDataModule(data, self.features, distortion, [distortion], seed=0)
        dm.device = self.device  # as a Trainer on this device would (on_device: auto)
        return dm

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# --- c. cache build throughput ---------------------------------------------------------------


@dataclass(frozen=True)
class NoWork:
    """A clip's "features": zeros of the entry's row shape (a build's costs without work)."""

    shape: tuple[int, ...]

    def __call__(self, clip: Any) -> tuple[np.ndarray, dict[str, Any]]:
        return np.zeros(self.shape, dtype=np.float32), {}


def fork_seconds(times: int = 5) -> float:
    """How long this process takes to fork one worker, the best of ``times`` (a build's pool
    forks one per core before the first clip starts; the cost grows with the parent's own
    memory, which torch alone makes hundreds of MB)."""
    from multiprocessing import get_context

    best = math.inf
    for _ in range(times):
        proc = get_context("fork").Process(target=int)
        best = min(best, timed(proc.start))
        proc.join()
    return best


def build_throughput(setup: Setup) -> tuple[Figure, Figure, AudioDataModule]:
    """All clips through ``prepare()`` with one worker and with one per core (fresh caches,
    after one warm-up clip), plus the first-call cost that warm-up removes."""
    serial = setup.datamodule("cache-1", workers=1)
    clips = serial.source.clips()
    work = FeatureWork(serial.source, setup.distortion, setup.features, seed=0)
    first = timed(lambda: work(clips[0]))
    again = timed(lambda: work(clips[0]))
    cores = available_cores()
    parallel = setup.datamodule("cache-n", workers=cores)
    t1 = timed(serial.prepare)
    tn = timed(parallel.prepare)
    same = all(np.array_equal(serial.entries[k].features, parallel.entries[k].features)
               for k in serial.entries)
    n = sum(len(e.rows) for e in parallel.entries.values())
    # What a parallel build costs besides the work: the same clips through the same pool with
    # work that returns zeros (forks, results, writes, checksums), and prepare() on a warm
    # cache (listing, splits, loading and checking every entry, the feature moments).
    rows = parallel.entries["train"].features.shape[1:]
    no_work = timed(lambda: FeatureCache(setup.root / "cache-no-work", workers=cores)
                    .get_or_build({"no work": True}, clips, NoWork(rows), rows, "no work"))
    hits = timed(setup.datamodule("cache-n", workers=cores).prepare)
    pooled = cores > 1 and len(clips) >= 2 * cores  # else the build runs here, unforked
    fork = fork_seconds() if pooled else 0.0
    forks = f", of which {cores} forks of {fork * 1000:.0f} ms each," if pooled else ""
    speedup = t1 / tn
    goal = 0.8 * cores
    build = Figure(
        "c", f"cache build: {cores} workers vs 1", speedup,
        f"{speedup:.2f}x ({n / tn:.1f} vs {n / t1:.1f} clips/s, {n} clips, "
        f"{setup.distortion.name}; identical: {same}; of {tn:.2f} s: {no_work:.2f} s "
        f"without work{forks} and {hits:.2f} s warm prepare)",
        f">= {goal:.1f}x (0.8 x {cores} cores)", bool(speedup >= goal and same),
        {"clips": n, "cores": cores, "seconds_1": t1, "seconds_n": tn, "identical": same,
         "distortion": setup.distortion.name, "no_work_s": no_work, "warm_prepare_s": hits,
         "fork_s": fork})
    warm = Figure(
        "c0", "first call in a process (imports, numba)", first - again,
        f"{first - again:.2f} s once (then {again * 1000:.0f} ms a clip), before forking",
        details={"first_s": first, "next_s": again})
    return build, warm, parallel


def _work_alone(work: FeatureWork, clips: list, start: Any, times: Any) -> None:
    """Run one clip to warm up (a forked process's first clip is slower: it pays for its
    copy-on-write pages), wait for every process, then time ``clips`` one after another."""
    work(clips[0])
    start.wait()
    times.put(timed(lambda: [work(clip) for clip in clips]))


def _together(work: FeatureWork, clips: list, processes: int) -> float:
    """Wall seconds until the slowest of ``processes`` forked processes, started together
    behind a barrier, has run ``clips`` (one BLAS thread each, inherited as a build's
    workers inherit it)."""
    from multiprocessing import get_context

    from threadpoolctl import threadpool_limits

    context = get_context("fork")
    start, times = context.Barrier(processes), context.SimpleQueue()
    procs = [context.Process(target=_work_alone, args=(work, clips, start, times))
             for _ in range(processes)]
    with threadpool_limits(1):
        for proc in procs:
            proc.start()
    seconds = [times.get() for _ in procs]
    for proc in procs:
        proc.join()
    return max(seconds)


def ceiling_figure(setup: Setup, dm: AudioDataModule, clips_each: int) -> Figure:
    """What the machine itself allows for this work: one process per core, all released at
    once, each running the same clips through the same work (no cache, no pool, nothing sent
    back) vs. one process alone. Each warms up, then times itself, so process start-up is
    left out: this is the ceiling for a build's steady state. Memory bandwidth, shared
    caches, clock boost and sibling hyper-threads all show up here."""
    work = FeatureWork(dm.source, setup.distortion, setup.features, seed=0)
    clips = dm.source.clips()[:clips_each]
    cores = available_cores()
    alone = min(_together(work, clips, 1) for _ in range(2))  # twice: the second is warm
    together = _together(work, clips, cores)
    ratio = cores * alone / together
    return Figure("c1", f"machine ceiling: {cores} processes at once vs 1", ratio,
                  f"{ratio:.2f}x ({len(clips)} clips each: {alone:.2f} s alone, {together:.2f} s "
                  f"with {cores} at once)",
                  details={"cores": cores, "clips_each": len(clips), "alone_s": alone,
                           "together_s": together})


# --- a. one epoch of data --------------------------------------------------------------------


class StudyDataset(Dataset):
    """The study's way: decode the file and compute the librosa log-mel for every item."""

    def __init__(self, dm: AudioDataModule, rows: list[dict[str, Any]]):
        by_id = {clip.clip_id: clip for clip in dm.source.clips()}
        self.source, self.features = dm.source, dm.features
        self.clips = [by_id[row["clip_id"]] for row in rows]
        self.labels = [int(row["label"]) for row in rows]

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        wave = self.source.load(self.clips[index], self.features.sample_rate)
        x = torch.from_numpy(log_mel(wave, self.features)).unsqueeze(0)
        return x, self.labels[index], index


def _drain(setup: Setup, dm: AudioDataModule, loader: DataLoader) -> int:
    items = 0
    for x, _, _ in loader:
        x = dm.rows(x.to(setup.device, non_blocking=True))
        items += len(x)
    setup.sync()
    return items


def epoch_figure(setup: Setup, dm: AudioDataModule, repeats: int) -> Figure:
    """One training epoch of batches on the device: from the cache vs decode + librosa."""
    cached = min(timed(lambda: _drain(setup, dm, dm.train_dataloader()))
                 for _ in range(repeats))
    loader = dm.train_dataloader()
    study_loader = DataLoader(StudyDataset(dm, dm.entries["train"].rows),
                              batch_size=loader.batch_size,
                              sampler=EpochShuffle(len(dm.entries["train"].rows), 0),
                              num_workers=loader.num_workers, pin_memory=loader.pin_memory)
    study = timed(lambda: _drain(setup, dm, study_loader))
    ratio = study / cached
    n = len(dm.entries["train"].rows)
    return Figure("a", "one epoch: cache vs decode + librosa per item", ratio,
                  f"{ratio:.0f}x ({cached:.3f} s vs {study:.2f} s for {n} clips)", ">= 20x",
                  ratio >= 20, {"clips": n, "cache_s": cached, "study_s": study})


# --- b. training steps per second ------------------------------------------------------------


def _batches(setup: Setup, dm: AudioDataModule) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Training batches on the device, epoch after epoch from one loader (as a Trainer uses
    it: persistent workers survive the epochs); an epoch's last, smaller batch is read but not
    yielded, so that every timed step does the same work."""
    loader = dm.train_dataloader()
    for epoch in itertools.count():
        loader.sampler.set_epoch(epoch)
        for x, y, _ in loader:
            if len(y) < setup.batch_size <= len(loader.dataset):
                continue
            x = dm.rows(x.to(setup.device, non_blocking=True))
            yield x, y.to(setup.device, non_blocking=True)


def _model(setup: Setup, dm: AudioDataModule) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    mean, std = FrontEnd(setup.features, dm.store).moments(dm.entries["train"].features)
    model = Detector(model=asdict(ModelConfig()), feature_mean=mean, feature_std=std,
                     features=setup.features.as_dict()).to(setup.device).train()
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def _steps(setup: Setup, model, optimizer, batches: Iterator,
           steps: int) -> tuple[float, float]:
    """Seconds for ``steps`` optimiser steps on ``batches``, and of those the seconds spent
    waiting for the next batch."""
    start = time.perf_counter()
    waiting = 0.0
    for _ in range(steps):
        asked = time.perf_counter()
        x, y = next(batches)
        waiting += time.perf_counter() - asked
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        optimizer.step()
    setup.sync()
    return time.perf_counter() - start, waiting


def steps_figures(setup: Setup, dm: AudioDataModule, wave_dm: AudioDataModule,
                  host_dm: AudioDataModule | None, steps: int, rounds: int) -> list[Figure]:
    """Steps/s through the real DataModule (log-mels cached; waveforms cached with the log-mel
    on the device; and, where the defaults keep the rows on the device, the same with rows
    read on the host) vs. the same model on batches already in device memory. The variants
    take turns, in a rotating order; each keeps its best round."""
    model, optimizer = _model(setup, dm)
    real = _batches(setup, dm)
    memory = [next(real) for _ in range(min(steps, 8))]
    in_memory = itertools.cycle(memory)
    wave = _batches(setup, wave_dm)
    _steps(setup, model, optimizer, in_memory, 1)  # warm-up: allocator, kernels
    next(wave)  # builds the device's LogMel and starts its workers
    variants = [("memory", in_memory), ("cache", real), ("wave", wave)]
    if host_dm is not None:
        host = _batches(setup, host_dm)
        next(host)  # starts its loader workers
        variants.append(("host", host))
    best = {name: (math.inf, 0.0) for name, _ in variants}
    for turn in range(rounds):  # each round starts with another variant
        k = turn % len(variants)
        for name, batches in variants[k:] + variants[:k]:
            best[name] = min(best[name], _steps(setup, model, optimizer, batches, steps))
    rate = {name: steps / seconds for name, (seconds, _) in best.items()}
    rows = [("b", "cache", "log-mel cache", dm), ("b2", "wave", "waveform cache", wave_dm)]
    if host_dm is not None:
        rows.append(("b0", "host", "log-mel cache, rows read on the host", host_dm))
    out = []
    for key, name, what, module in rows:
        ratio = rate[name] / rate["memory"]
        share = best[name][1] / best[name][0]  # robust where the machine is shared
        loader = module.train_dataloader()
        settings = {"rows_on_device": module.rows_on_device, "num_workers": loader.num_workers,
                    "pin_memory": loader.pin_memory, "batch_size": loader.batch_size,
                    "device": str(setup.device)}
        out.append(Figure(key, f"steps/s: DataModule ({what}) vs in memory", ratio,
                          f"{ratio:.2f} ({rate[name]:.2f} vs {rate['memory']:.2f} steps/s; "
                          f"waiting for data {100 * share:.1f} %; "
                          f"{_how(settings)})", ">= 0.9", ratio >= 0.9,
                          {"steps_per_s": rate[name], "memory_steps_per_s": rate["memory"],
                           "data_wait_share": share, **settings}))
    return out


def _how(settings: dict[str, Any]) -> str:
    if settings["rows_on_device"]:
        return "rows on the device"
    return f"{settings['num_workers']} loader workers{', pinned' if settings['pin_memory'] else ''}"


# --- d. torch log-mel vs librosa -------------------------------------------------------------


def mel_figures(setup: Setup, waves: np.ndarray, repeats: int) -> list[Figure]:
    """Parity of the torch log-mel with librosa on ``waves`` (clip-length rows) and the speed
    of both: librosa clip by clip, torch as one batch, on the device and on the CPU."""
    cfg = setup.features
    librosa_s = min(timed(lambda: [log_mel(w, cfg) for w in waves]) for _ in range(2))
    reference = np.stack([log_mel(w, cfg) for w in waves])
    devices = [setup.device] + ([torch.device("cpu")] if setup.device.type != "cpu" else [])
    out = []
    for device in devices:
        module = LogMel(cfg).to(device)
        x = torch.from_numpy(waves).to(device)

        def batch(module=module, x=x):
            with torch.no_grad():
                out = module(x)
            setup.sync()
            return out

        got = batch().cpu().numpy()
        seconds = min(timed(batch) for _ in range(repeats))
        err = float(np.abs(got - reference).max())
        speed = librosa_s / seconds
        out.append(Figure(
            f"d{'' if device == setup.device else '-cpu'}",
            f"torch log-mel on {device.type} vs librosa", speed,
            f"{speed:.1f}x faster ({len(waves) / seconds:.0f} vs {len(waves) / librosa_s:.0f} "
            f"clips/s); max |diff| {err:.4f} dB",
            f"parity <= {PARITY_DB} dB", err <= PARITY_DB,
            {"max_abs_db": err, "clips": len(waves), "torch_s": seconds,
             "librosa_s": librosa_s}))
    return out


def clip_waves(paths: list[Path], cfg: FeatureConfig) -> np.ndarray:
    """Audio files decoded at the feature rate and cut to the clip length (rows)."""
    from deepfake_detect.data.audio import decode

    return np.stack([fit_length(decode(p, cfg.sample_rate), cfg.n_samples) for p in paths])


# --- memory ----------------------------------------------------------------------------------


def memory_figure(sizes: list[int], cfg: FeatureConfig) -> Figure:
    """Peak RSS of cache builds of two sizes (fresh processes) and its growth per clip."""
    from deepfake_detect.bench.memory import measure

    small, large = measure(sizes, cfg.duration, cfg.sample_rate, cfg.n_mels, cfg.n_fft)
    written = large["features_mb"] / large["n_clips"] * 1024  # KB per clip
    growth = ((large["peak_mb"] - small["peak_mb"]) / (large["n_clips"] - small["n_clips"])
              * 1024)
    share = growth / written
    return Figure(
        "e", f"cache build peak RSS: {sizes[0]} vs {sizes[1]} clips of {cfg.duration:g} s",
        share, f"{small['peak_mb']:.0f} vs {large['peak_mb']:.0f} MB: +{growth:.1f} KB per "
        f"clip ({100 * share:.1f} % of the {written:.0f} KB written)", "<= 5 % of written",
        share <= 0.05, {"runs": [small, large], "growth_kb_per_clip": growth,
                        "written_kb_per_clip": written})
