"""Generated audio for the benchmark: cheap, deterministic, music-like (no synthesis cost).

Each clip is a few harmonic tones with note envelopes plus a little noise; "ai" clips also
carry a faint periodic gain (the kind of imprint the embedded benchmark simulates). Timing
does not depend on the content, so this only has to look like audio to every stage.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from deepfake_detect.data.clips import Clip


def tone_clip(index: int, sample_rate: int, duration: float) -> np.ndarray:
    """Clip ``index`` (even: human, odd: ai) as float32 mono in [-1, 1]."""
    rng = np.random.default_rng(index)
    n = int(round(duration * sample_rate))
    phase = (2 * np.pi / sample_rate) * np.arange(n, dtype=np.float32)
    note = max(1, int(sample_rate * rng.uniform(0.15, 0.4)))
    envelope = np.exp(np.arange(note, dtype=np.float32) * np.float32(-3.0 / note))
    wave = np.zeros(n, dtype=np.float32)
    for _ in range(3):
        f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        for harmonic in (1, 2, 3):
            if harmonic * f0 < sample_rate / 2:
                wave += np.sin(np.float32(harmonic * f0) * phase) / np.float32(2 * harmonic)
    wave *= np.resize(envelope, n)
    wave += 0.02 * rng.standard_normal(n, dtype=np.float32)
    if index % 2:
        wave *= 1 + 0.01 * np.resize(rng.standard_normal(16, dtype=np.float32), n)
    return (0.5 * wave / np.max(np.abs(wave))).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _tone(index: int, sample_rate: int, duration: float) -> np.ndarray:
    return tone_clip(index, sample_rate, duration)


def _write_clip(job: tuple[Path, int, int, float]) -> None:
    import soundfile as sf

    root, index, sample_rate, duration = job
    folder = root / ("ai" if index % 2 else "human")
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / f"clip{index:05d}.wav", tone_clip(index, sample_rate, duration),
             sample_rate, subtype="PCM_16")


def write_folder(root: Path, n_clips: int, sample_rate: int, duration: float,
                 workers: int = 1) -> Path:
    """``root/{human,ai}/clip<k>.wav`` (16-bit PCM) for the ``folder`` source, written by
    ``workers`` forked processes where that is more than one."""
    jobs = [(root, index, sample_rate, duration) for index in range(n_clips)]
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            list(pool.map(_write_clip, jobs, chunksize=8))
    else:
        for job in jobs:
            _write_clip(job)
    return root


class ToneSource:
    """A source that generates its clips in memory (the memory benchmark's input): clip ``k``
    has the audio of ``tone_clip(k % 16)``, generated once."""

    name = "bench-tones"

    def __init__(self, n_clips: int, sample_rate: int, duration: float):
        self.n_clips, self.sample_rate, self.duration = n_clips, sample_rate, duration

    def clips(self) -> list[Clip]:
        return [Clip(clip_id=f"tone{i:06d}", label=i % 2, group=f"tone{i:06d}",
                     generator="bench" if i % 2 else "human") for i in range(self.n_clips)]

    def load(self, clip: Clip, sample_rate: int) -> np.ndarray:
        return _tone(int(clip.clip_id[4:]) % 16, sample_rate, self.duration).copy()

    def signature(self) -> dict:
        return {"source": self.name, "n_clips": self.n_clips, "duration": self.duration}
