"""Peak memory of a cache build, per dataset size, each in a fresh process.

``python -m deepfake_detect.bench.memory N DURATION SAMPLE_RATE N_MELS N_FFT DIR`` builds one
cache entry of ``N`` generated clips with :class:`FeatureCache` (one process, so the peak
resident set is the whole build's) and prints one JSON line: the peak RSS after imports and
one warm-up clip (``baseline_mb``), the peak RSS after the build (``peak_mb``) and the size
of what was written (``features_mb``). :func:`measure` runs it for several sizes.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def _peak_mb() -> float:
    """Peak resident set of this process in MB: ``VmHWM`` (getrusage's ``ru_maxrss`` would
    carry the launching process's peak over ``execve``)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def build(n_clips: int, duration: float, sample_rate: int, n_mels: int, n_fft: int,
          root: Path) -> dict[str, Any]:
    """Build one entry of ``n_clips`` clips under ``root``; return the memory figures."""
    from deepfake_detect.bench.clips import ToneSource
    from deepfake_detect.data.cache import FeatureCache
    from deepfake_detect.data.features import FeatureConfig, log_mel

    features = FeatureConfig(sample_rate=sample_rate, duration=duration, n_mels=n_mels,
                             n_fft=n_fft)
    source = ToneSource(n_clips, sample_rate, duration)
    clips = source.clips()

    def work(clip):
        return log_mel(source.load(clip, sample_rate), features), {}

    work(clips[0])  # imports and numba's first calls belong to the baseline
    baseline = _peak_mb()
    entry, _ = FeatureCache(root).get_or_build(
        {"source": source.signature(), "features": features.as_dict()}, clips, work,
        features.shape, desc="memory")
    return {"n_clips": n_clips, "baseline_mb": baseline, "peak_mb": _peak_mb(),
            "features_mb": entry.features.nbytes / 2**20}


def measure(sizes: list[int], duration: float, sample_rate: int, n_mels: int,
            n_fft: int) -> list[dict[str, Any]]:
    """One fresh process per size (run side by side); their figures, smallest size first."""
    with tempfile.TemporaryDirectory(prefix="deepfake-detect-bench-mem-") as tmp:
        procs = [subprocess.Popen(
            [sys.executable, "-m", "deepfake_detect.bench.memory", str(n), str(duration),
             str(sample_rate), str(n_mels), str(n_fft), str(Path(tmp) / f"n{n}")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in sizes]
        results = []
        for n, proc in zip(sizes, procs, strict=True):
            out, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"memory build of {n} clips failed:\n{err[-2000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    return results


if __name__ == "__main__":
    n, duration, rate, mels, fft, where = sys.argv[1:7]
    print(json.dumps(build(int(n), float(duration), int(rate), int(mels), int(fft),
                           Path(where))))
