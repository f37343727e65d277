"""Does the detector look at the simulated decoders' spectral lines?

Reads the files of ``deepfake-detect-explain`` (``occlusion_<label>.json``,
``saliency_<label>.json``) and compares, for the mel bins centred between 400 Hz and 5 kHz
(where bins are narrower than half the 500 Hz line spacing), the occlusion drop and the
saliency of the bins that hold a multiple of ``sample_rate / period`` (the decoders' lines)
within half a bin of their centre with the bins that hold a midpoint between lines instead
(the control: same frequency range, no line).

    python experiments/decoder_lines.py DIR synthetic-base synthetic-pitch

Run the explain command with ``explain.band_width=1 explain.stride=1`` so bands are single
bins. Prints one markdown row per test set (and per generator for saliency).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from deepfake_detect.data.features import FeatureConfig
from deepfake_detect.data.synthetic import GENERATORS
from deepfake_detect.explain.occlusion import mel_edges_hz

RANGE_HZ = (400.0, 5000.0)  # default --range: bins centred here are compared


def response(edges: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """(n_mels, len(freqs)) peak-normalised triangular response of each mel bin."""
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise, fall = (freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)
    return np.clip(np.minimum(rise, fall), 0.0, 1.0)


def on_off(values: np.ndarray, edges: np.ndarray, spacing: float,
           hz_range: tuple[float, float] = RANGE_HZ) -> tuple[float, float, int, float]:
    """Mean of ``values`` over the line bins (a line within half a bin of the centre: response
    >= 0.5) and over the midpoint bins (the same for a midpoint between lines, and no line),
    among bins centred in ``hz_range``; the number of line bins; and the one-sided
    permutation p-value of "line bins > midpoint bins" (10,000 relabellings)."""
    centres = edges[1:-1]
    inside = (centres >= hz_range[0]) & (centres <= hz_range[1])
    lines = np.arange(spacing, edges[-1], spacing)
    on = inside & (response(edges, lines).max(axis=1) >= 0.5)
    off = inside & ~on & (response(edges, lines - spacing / 2).max(axis=1) >= 0.5)
    pooled, n_on = np.concatenate([values[on], values[off]]), int(on.sum())
    observed = values[on].mean() - values[off].mean()
    rng = np.random.default_rng(0)
    null = [(p[:n_on].mean() - p[n_on:].mean())
            for p in (rng.permutation(pooled) for _ in range(10_000))]
    p_value = (1 + np.sum(np.array(null) >= observed)) / (1 + len(null))
    return float(values[on].mean()), float(values[off].mean()), n_on, float(p_value)


def line_spacing(generator: str, sample_rate: int) -> float:
    return sample_rate / GENERATORS[generator].period


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("labels", nargs="+", help="e.g. synthetic-base synthetic-pitch")
    parser.add_argument("--range", nargs=2, type=float, default=RANGE_HZ, metavar=("LO", "HI"),
                        help="compare bins centred in [LO, HI] Hz (default 400 5000)")
    args = parser.parse_args()
    hz_range = tuple(args.range)
    print("| test set | what | at lines | between lines | ratio | p (lines > between) |")
    print("|---|---|---|---|---|---|")
    for label in args.labels:
        occ = json.loads((args.dir / f"occlusion_{label}.json").read_text())
        sal = json.loads((args.dir / f"saliency_{label}.json").read_text())
        sr = occ["features"]["sample_rate"]
        bands = occ["bands"]
        if any(b["mel_hi"] - b["mel_lo"] != 1 for b in bands):
            raise SystemExit("run the explain command with explain.band_width=1 explain.stride=1")
        features = FeatureConfig(**occ["features"])
        edges = mel_edges_hz(features)
        centres = edges[1:-1]
        for key in ("auroc_drop", "accuracy_drop"):
            on, off, n, p = on_off(np.array([b[key] for b in bands]), edges, 500.0, hz_range)
            print(f"| {label} | occlusion {key.replace('_', ' ')}, 500 Hz lines ({n} line "
                  f"bins) | {on:.4f} | {off:.4f} | {on / off if off else float('nan'):.2f} | "
                  f"{p:.3f} |")
        drop = np.array([b["auroc_drop"] for b in bands])
        for group, prof in sal["groups"].items():
            gen = group.split(":", 1)[1] if group.startswith("generator:") else None
            spacing = line_spacing(gen, sr) if gen in GENERATORS else 500.0
            mel = np.array(prof["mel"]) / max(sum(prof["mel"]), 1e-12)
            on, off, _, p = on_off(mel, edges, spacing, hz_range)
            print(f"| {label} | saliency {group} (n={prof['n']}), {spacing:g} Hz lines | "
                  f"{on:.4f} | {off:.4f} | {on / off if off else float('nan'):.2f} | "
                  f"{p:.3f} |")
        top = sorted(bands, key=lambda b: -b["auroc_drop"])[:5]
        high = drop[centres > 4000].clip(min=0).sum() / max(drop.clip(min=0).sum(), 1e-12)
        print(f"| {label} | top-5 occlusion bins (Hz, drop) | "
              + ", ".join(f"{b['f_centre_hz']:.0f}: {b['auroc_drop']:.3f}" for b in top)
              + f" | share of positive drop above 4 kHz: {high:.2f} | | |")


if __name__ == "__main__":
    main()
