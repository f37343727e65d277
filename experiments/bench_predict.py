"""How long does ``deepfake-detect-predict`` take per song on CPU, and where does the time go?

Synthesises a deterministic song (44.1 kHz stereo WAV, 3 minutes by default), saves a freshly
initialised detector as an inference bundle for each feature preset (weights do not change
the cost), and scores the song through :func:`deepfake_detect.inference.scoring.predict` -- the code
path of the CLI -- splitting the time into decoding (read + downmix + resample), features
(log-mel per window) and model (batched ResNet18 forward passes).

    python experiments/bench_predict.py                     # default and study features
    python experiments/bench_predict.py --presets default --threads 1 2 --repeats 3
    python experiments/bench_predict.py --memory            # peak RSS: 10 s vs 1 hour

Runs in well under a minute on 2 CPU cores (``--memory``: a few minutes, 0.7 GB of disk).

``--memory`` writes a 10-second and a one-hour 44.1 kHz stereo WAV and scores each in a fresh
process (``resource.getrusage``'s peak RSS of that process), side by side, with the default
features; for comparison, a fresh process that only decodes the whole file at once (what
predict did before it streamed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from deepfake_detect.data.features import FeatureConfig

SONG_SR = 44100

# The shipped feature configs: conf/features/default.yaml and conf/features/study.yaml.
PRESETS = {
    "default": FeatureConfig(),
    "study": FeatureConfig(sample_rate=22050, duration=10.0, n_fft=2048, hop_length=512,
                           n_mels=128),
}


def synth_song(seconds: float, sr: int = SONG_SR, seed: int = 0) -> np.ndarray:
    """(samples, 2) float32: a 32-second phrase repeated (the content does not change the
    cost, and synthesising every sample of 3 minutes would take longer than scoring them)."""
    n = int(round(seconds * sr))
    phrase = synth_phrase(min(seconds, 32.0), sr, seed)
    return np.tile(phrase, (n // len(phrase) + 1, 1))[:n]


def synth_phrase(seconds: float, sr: int = SONG_SR, seed: int = 0) -> np.ndarray:
    """(samples, 2) float32: chords, a bass line, a melody and hi-hats at 120 bpm."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n, dtype=np.float32) / np.float32(sr)
    beat = np.float32(0.5)
    roots = 45 + np.array([0, 5, 7, 3])  # A2, D3, E3, C3 (MIDI), one chord per bar
    root_hz = (440.0 * 2 ** ((roots - 69) / 12)).astype(np.float32)[
        (t // (4 * beat)).astype(np.int64) % len(roots)]
    step = (t // beat).astype(np.int64)
    in_beat = (t % beat) / beat
    env = np.exp(-3.0 * in_beat)
    # Phase as a running sum of frequency: no clicks where the chord changes.
    base_phase = np.cumsum(2 * np.pi * root_hz / sr, dtype=np.float64).astype(np.float32)
    chords = np.zeros((n, 2), dtype=np.float32)
    for k, (ratio, pan) in enumerate(((2.0, 0.5), (2.52, 0.3), (3.0, 0.7), (4.0, 0.5))):
        tone = np.sin(ratio * base_phase + k) + 0.4 * np.sin(2 * ratio * base_phase + k)
        tone *= 0.15 * (0.6 + 0.4 * env)
        chords[:, 0] += (1 - pan) * tone
        chords[:, 1] += pan * tone
    bass = np.sin(base_phase) * env
    scale = np.array([0, 2, 3, 5, 7, 8, 10, 12])
    notes = scale[rng.integers(0, len(scale), size=int(step.max()) + 1)]
    melody_hz = (440.0 * 2 ** (notes / 12)).astype(np.float32)[step]
    melody = np.sin(np.cumsum(2 * np.pi * melody_hz / sr, dtype=np.float64).astype(np.float32))
    melody *= np.exp(-5.0 * in_beat)
    hats = rng.standard_normal(n, dtype=np.float32) * np.exp(-40.0 * ((2 * in_beat) % 1))
    chords[:, 0] += 0.5 * bass + 0.35 * melody + 0.05 * hats
    chords[:, 1] += 0.5 * bass + 0.25 * melody + 0.07 * hats
    return (0.8 * chords / np.max(np.abs(chords))).astype(np.float32)


def make_bundle(path: Path, features: FeatureConfig) -> Path:
    """A freshly initialised detector saved as an inference bundle."""
    import torch

    from deepfake_detect.models.bundle import save_bundle
    from deepfake_detect.models.detector import Detector, ModelConfig

    torch.manual_seed(0)
    model = Detector(model=asdict(ModelConfig()), feature_mean=-40.0, feature_std=20.0,
                     features=features.as_dict())
    return save_bundle(path, model, 0.5, "fixed 0.5",
                       {"train_distortion": "none (untrained, timing only)"})


CHILD = """
import resource, sys
from deepfake_detect.inference.scoring import predict
from deepfake_detect.data import audio
mode, model, song = sys.argv[1:4]
if mode == "predict":
    rows = predict(model, [song], device="cpu", threads=1)
    assert not rows[0]["error"], rows[0]["error"]
    extra = f"{rows[0]['n_windows']} windows"
else:
    extra = f"{len(audio.decode(song, 16000))} samples"
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, extra)
"""


def write_song(path: Path, seconds: float) -> Path:
    """A stereo PCM_16 WAV of ``seconds``, written a phrase at a time (no song in memory)."""
    import soundfile as sf

    phrase = synth_phrase(32.0)
    left = int(round(seconds * SONG_SR))
    with sf.SoundFile(path, "w", SONG_SR, 2, subtype="PCM_16") as out:
        while left > 0:
            out.write(phrase[:left])
            left -= min(left, len(phrase))
    return path


def peak_rss(mode: str, model: Path, song: Path) -> tuple[float, str]:
    """(peak RSS in MB, what was done) of a fresh process scoring or decoding ``song``."""
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD, mode, str(model), str(song)],
                          capture_output=True, text=True, env=env, check=True)
    rss, extra = done.stdout.strip().splitlines()[-1].split(" ", 1)
    return float(rss), extra


def memory(tmp_path: Path) -> None:
    """Peak RSS of predict, 10 s vs 1 hour of 44.1 kHz stereo (fresh processes)."""
    model = make_bundle(tmp_path / "default.ckpt", PRESETS["default"])
    songs = {"10 s": write_song(tmp_path / "short.wav", 10.0),
             "1 hour": write_song(tmp_path / "hour.wav", 3600.0)}
    print(f"{'file':<8}{'MB on disk':>12}{'predict peak RSS MB':>22}{'decode-all RSS MB':>20}")
    for name, song in songs.items():
        scored, windows = peak_rss("predict", model, song)
        decoded, _ = peak_rss("decode", model, song)
        print(f"{name:<8}{song.stat().st_size / 1e6:>12.1f}{scored:>22.0f}{decoded:>20.0f}"
              f"  ({windows})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="song length")
    parser.add_argument("--presets", nargs="+", choices=sorted(PRESETS),
                        default=["default", "study"])
    parser.add_argument("--threads", nargs="+", type=int, default=[0],
                        help="torch CPU threads to try (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs each (median)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--memory", action="store_true",
                        help="peak RSS of predict on 10 s vs 1 hour of audio instead")
    args = parser.parse_args(argv)
    if args.memory:
        with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
            memory(Path(tmp))
        return 0

    import soundfile as sf
    import torch

    from deepfake_detect.inference.scoring import predict
    from deepfake_detect.models.refs import load_model

    cores = os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CPU: {cores} cores, load average {load:.2f} at start; torch {torch.__version__} "
          f"(default {torch.get_num_threads()} threads)")
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        tmp_path = Path(tmp)
        start = time.perf_counter()
        song = synth_song(args.minutes * 60)
        song_path = tmp_path / "song.wav"
        sf.write(song_path, song, SONG_SR, subtype="PCM_16")
        warm_path = tmp_path / "warm.wav"
        sf.write(warm_path, song[: 12 * SONG_SR], SONG_SR, subtype="PCM_16")
        print(f"song: {args.minutes:g} min, {SONG_SR} Hz stereo PCM_16 WAV "
              f"({song_path.stat().st_size / 1e6:.1f} MB), synthesised and written in "
              f"{time.perf_counter() - start:.1f} s")
        header = (f"{'features':<34}{'threads':>8}{'windows':>8}{'decode s':>10}"
                  f"{'features s':>11}{'model s':>9}{'total s':>9}  dominant")
        print(header)
        print("-" * len(header))
        for name in args.presets:
            cfg = PRESETS[name]
            loaded = load_model(make_bundle(tmp_path / f"{name}.ckpt", cfg))
            label = (f"{name} ({cfg.sample_rate / 1000:g} kHz, {cfg.duration:g} s, "
                     f"{cfg.n_mels} mels)")
            for threads in args.threads:
                kwargs = {"device": "cpu", "batch_size": args.batch_size,
                          "threads": threads or None}
                predict(loaded, [warm_path], **kwargs)  # imports, allocator, first-call costs
                runs = []
                for _ in range(args.repeats):
                    timings: dict[str, float] = {}
                    tick = time.perf_counter()
                    rows = predict(loaded, [song_path], timings=timings, **kwargs)
                    timings["total_s"] = time.perf_counter() - tick
                    assert not rows[0]["error"], rows[0]["error"]
                    runs.append(timings)
                med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
                parts = {k: med[f"{k}_s"] for k in ("decode", "features", "model")}
                dominant = max(parts, key=parts.get)
                share = parts[dominant] / med["total_s"]
                shown = threads or torch.get_num_threads()
                print(f"{label:<34}{shown:>8}{rows[0]['n_windows']:>8}"
                      f"{parts['decode']:>10.2f}{parts['features']:>11.2f}"
                      f"{parts['model']:>9.2f}{med['total_s']:>9.2f}  "
                      f"{dominant} ({share:.0%})")
    print(f"(total = wall time of predict() for one {args.minutes:g}-minute song, median of "
          f"{args.repeats}; the rest of it is file listing and aggregation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
