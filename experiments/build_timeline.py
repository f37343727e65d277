"""Where does a parallel cache build's wall time go? A timeline of one build, per worker.

Writes ``--clips`` ten-second WAV clips (the benchmark's), warms this process up on one clip,
then builds one cache entry of them (study features, ``pitch``) through the real
``FeatureCache`` with ``--workers`` workers, recording when each clip started and ended and in
which process. Prints: clips/s; how busy the workers were; when the first and the last worker
started its first clip (the pool's start-up); how much slower each worker's first clip was
than its others; how long the build took after its last clip (writes, checks). The clip's
features are the product's; only their ``params`` carry the timings, in a throw-away cache.

    python experiments/build_timeline.py --clips 256 --workers 16 2
    python experiments/build_timeline.py --clips 64 --workers 2 1   # ~30 s on 2 cores

On the H200 host (16 cores), 256 clips, 16 workers, this timeline (in its first form, a
throw-away script) found the workers first starting 0.92-0.99 s after the call, at 101
clips/s, while each set its own thread limit in a pool initializer; 0.15-0.21 s and 165
clips/s once they inherited it (docs/DESIGN.md, "Parallel builds").
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_detect.data.cache import available_cores


@dataclass(frozen=True)
class TimedWork:
    """The product's per-clip work, with when and where it ran added to the clip's params."""

    work: Any

    @property
    def warm_key(self) -> Any:
        return self.work.warm_key

    def __call__(self, clip: Any) -> tuple[np.ndarray, dict[str, Any]]:
        start = time.perf_counter()
        features, params = self.work(clip)
        return features, {**params, "start": start, "end": time.perf_counter(),
                          "pid": os.getpid()}


def timeline(cache_root: Path, clips: list, work: TimedWork, workers: int) -> str:
    """Build one entry of ``clips`` and describe how its wall time was spent."""
    from deepfake_detect.data.cache import FeatureCache

    called = time.perf_counter()
    entry, _ = FeatureCache(cache_root, workers=workers).get_or_build(
        {"timeline": workers}, clips, work, work.work.features.shape, f"{workers} workers")
    wall = time.perf_counter() - called
    runs: dict[int, list[tuple[float, float]]] = {}
    for row in entry.rows:
        p = row["params"]
        runs.setdefault(p["pid"], []).append((p["start"] - called, p["end"] - called))
    for spans in runs.values():
        spans.sort()
    busy = sum(end - start for spans in runs.values() for start, end in spans)
    firsts = sorted(spans[0][0] for spans in runs.values())
    first_clip = np.mean([spans[0][1] - spans[0][0] for spans in runs.values()])
    others = [end - start for spans in runs.values() for start, end in spans[1:]]
    last_end = max(spans[-1][1] for spans in runs.values())
    plural = "s" if workers != 1 else ""
    return (f"{len(clips)} clips, {workers} worker{plural}: {wall:.2f} s, {len(clips) / wall:.1f} "
            f"clips/s; workers busy {busy / (max(workers, 1) * wall):.0%}; first clips started "
            f"{firsts[0]:.2f}..{firsts[-1]:.2f} s; a process's first clip "
            f"{first_clip * 1000:.0f} ms, the others {np.median(others or [0]) * 1000:.0f} ms; "
            f"{wall - last_end:.2f} s after the last clip; {len(runs)} "
            f"process{'es' if len(runs) != 1 else ''} ran clips, "
            f"{len(runs.get(os.getpid(), []))} of them here")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[available_cores()])
    parser.add_argument("--workdir", type=Path, help="keep the clips and caches here")
    args = parser.parse_args()

    from deepfake_detect.bench.clips import write_folder
    from deepfake_detect.bench.suite import STUDY
    from deepfake_detect.data.cache import FeatureCache
    from deepfake_detect.data.datamodule import FeatureWork
    from deepfake_detect.data.features import FeatureConfig
    from deepfake_detect.data.folder import FolderSource
    from deepfake_detect.data.presets import distortion_preset

    features = FeatureConfig(**STUDY)
    with tempfile.TemporaryDirectory(prefix="build-timeline-") as tmp:
        root = args.workdir or Path(tmp)
        write_folder(root / "audio", args.clips, features.sample_rate, features.duration,
                     workers=max(args.workers))
        source = FolderSource(root=str(root / "audio"), duration=features.duration)
        clips = source.clips()
        work = TimedWork(FeatureWork(source, distortion_preset("pitch"), features, seed=0))
        started = time.perf_counter()  # imports and numba, once: the builds below fork warm
        FeatureCache(root / "cache-warm", workers=1).get_or_build(
            {"warm-up": True}, clips[:1], work, features.shape, "warm-up")
        print(f"first clip in this process: {time.perf_counter() - started:.2f} s")
        for workers in args.workers:  # a fresh cache each time: a hit would time nothing
            cache = Path(tempfile.mkdtemp(prefix=f"cache-{workers}-", dir=root))
            print(timeline(cache, clips, work, workers), flush=True)


if __name__ == "__main__":
    main()
