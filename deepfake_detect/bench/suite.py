"""The benchmark's sizes and the run of every figure, measured side by side in one run, on
generated WAV clips read by the ``folder`` source:

a. one training epoch of batches from the cache vs. the study's way (decode + librosa log-mel
   for every item, every epoch) -- goal >= 20x;
b. training steps per second through the real DataModule vs. the same model on batches
   already in memory -- goal >= 0.9 (b2: the same with ``data.cache.store: waveform``, the
   log-mel computed per batch by the model's front end on the training device; b0, where the
   rows went to the device (``data.loader.on_device``), the same with the rows read on the
   host);
c. cache build throughput with one worker per core vs. one worker -- goal >= 0.8 x cores,
   with the results identical (c0: the first-call cost the parent pays before forking; c1:
   the machine's own ceiling, one process per core running the same work with no cache);
d. the batched torch log-mel on the training device (and on the CPU) vs. librosa: speed, and
   parity within ``torch_mel.PARITY_DB``;
e. the peak RSS of cache builds of two sizes (fresh processes) and how it grows per clip;
f. what each distortion effect costs per 10-second clip, next to pitch and tempo.

``tiny`` runs in well under a minute (the CI test); ``full`` uses the study's features
(22.05 kHz, 10 s, 128 mels) on 256 clips, or 64 a core where that is more (so that c measures
a build's throughput, not the start of its workers), and takes a few minutes on 2 CPU cores.
No timing is asserted anywhere: the verdicts are printed.
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepfake_detect.bench import figures as fig
from deepfake_detect.bench.clips import write_folder
from deepfake_detect.bench.effects import effect_figures
from deepfake_detect.data.audio import AUDIO_EXTENSIONS
from deepfake_detect.data.cache import available_cores
from deepfake_detect.data.features import FeatureConfig
from deepfake_detect.data.presets import distortion_preset

START = time.perf_counter()
STUDY = {"sample_rate": 22050, "duration": 10.0, "n_fft": 2048, "hop_length": 512,
         "n_mels": 128}


@dataclass(frozen=True)
class Size:
    clips: int
    features: dict[str, Any]
    batch_size: int
    steps: int  # optimiser steps per variant and round on the CPU (slow: one is plenty)
    rounds: int = 2
    cuda_steps: int = 20  # the same on a GPU, where one step is too short to time
    repeats: int = 3
    mel_clips: int = 8
    memory: tuple[int, int] = (20, 80)
    ceiling_clips: int = 8  # clips each process runs for c1 (after one to warm up)
    clips_per_core: int = 0  # at least this many clips per core, so that c measures the
    # build's throughput rather than starting its workers (a fixed cost, see c's details)
    memory_features: dict[str, Any] = field(default_factory=dict)
    effect_clips: int = 2  # 10-second clips each effect is timed on


SIZES = {
    "tiny": Size(clips=32, features={"sample_rate": 16000, "duration": 1.0, "n_mels": 32},
                 batch_size=8, steps=2, rounds=1, cuda_steps=5, memory=(20, 80), ceiling_clips=4,
                 memory_features={"duration": 10.0}),
    "full": Size(clips=256, features=STUDY, batch_size=32, steps=2, rounds=3, mel_clips=16,
                 memory=(500, 2000), ceiling_clips=16, clips_per_core=64,
                 memory_features={"duration": 10.0}, effect_clips=4),
}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": available_cores(), "gpu": gpu, "torch": torch.__version__,
            "python": platform.python_version()}


def run_suite(size: Size, device: str, audio: Path | None, workdir: Path,
              loader: dict[str, Any]) -> list:
    features = FeatureConfig(**size.features)
    target = torch.device("cuda" if device == "auto" and torch.cuda.is_available()
                          else "cpu" if device == "auto" else device)
    setup = fig.Setup(workdir, features, distortion_preset("pitch"), size.batch_size,
                      target, loader)
    clips = max(size.clips, size.clips_per_core * available_cores())
    say(f"writing {clips} clips of {features.duration:g} s")
    write_folder(workdir / "audio", clips, features.sample_rate, features.duration,
                 workers=available_cores())
    say("c: building the cache with 1 worker, then with one per core")
    build, warm, dm = fig.build_throughput(setup)
    say("c1: the machine's own ceiling for that work")
    ceiling = fig.ceiling_figure(setup, dm, size.ceiling_clips)
    build.details["share_of_ceiling"] = build.value / ceiling.value
    build.text += f"; {100 * build.value / ceiling.value:.0f} % of c1"
    out = [build, ceiling, warm]
    wave_dm = setup.datamodule("cache-wave", workers=build.details["cores"], store="waveform",
                               distortion=distortion_preset("base"))
    wave_dm.prepare()
    say("a: one epoch from the cache vs decode + librosa")
    out.insert(0, fig.epoch_figure(setup, dm, size.repeats))
    say("b: training steps")
    steps = size.cuda_steps if target.type == "cuda" else size.steps
    host_dm = None
    if dm.rows_on_device:  # show what keeping the rows on the device buys
        host_dm = setup.datamodule("cache-n", workers=1, loader={"on_device": False})
        host_dm.prepare()  # all hits
    out[1:1] = fig.steps_figures(setup, dm, wave_dm, host_dm, steps, size.rounds)
    say("d: torch log-mel vs librosa")
    files = sorted(p for p in (audio or workdir / "audio").rglob("*")
                   if p.suffix.lower() in AUDIO_EXTENSIONS)
    if audio is None:  # generated clips: take both classes
        files = files[: size.mel_clips // 2] + files[-(size.mel_clips // 2):]
    waves = fig.clip_waves(files[: max(size.mel_clips, 2)] if audio is None else files,
                           features).astype(np.float32)
    out += fig.mel_figures(setup, waves, size.repeats)
    say(f"e: peak memory of cache builds ({size.memory[0]} and {size.memory[1]} clips)")
    mem_cfg = FeatureConfig(**size.memory_features)
    out.append(fig.memory_figure(list(size.memory), mem_cfg))
    say(f"f: each distortion effect on {size.effect_clips} ten-second clips")
    out += effect_figures(features.sample_rate, size.effect_clips)
    return out


def say(text: str) -> None:
    print(f"[bench {time.perf_counter() - START:5.1f} s] {text}", file=sys.stderr, flush=True)


def table(rows: list) -> str:
    lines = [f"{'':<4}{'figure':<58}{'measured':<64}{'goal':<24}verdict"]
    for row in rows:
        verdict = "-" if row.ok is None else "PASS" if row.ok else "short of goal"
        lines.append(f"{row.key:<4}{row.name:<58}{row.text:<64}{row.goal:<24}{verdict}")
    return "\n".join(lines)
