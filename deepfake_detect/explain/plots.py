"""PNGs of the explain analysis: occlusion drop vs. frequency, saliency maps and profiles,
example spectrograms with their maps. Frequency axes are in Hz on a mel-spaced scale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepfake_detect import atomic


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mel_axis(ax: Any, fmax: float) -> None:
    """Hz ticks on a mel-spaced x axis."""
    import librosa

    ax.set_xscale("function", functions=(lambda f: librosa.hz_to_mel(np.maximum(f, 0)),
                                         librosa.mel_to_hz))
    ticks = [t for t in (0, 250, 500, 1000, 2000, 3000, 4000, 6000, 8000, 11000, 16000, 22050)
             if t <= fmax]
    ax.set_xticks(ticks, labels=[f"{t / 1000:g}k" if t >= 1000 else str(t) for t in ticks])
    ax.set_xlabel("frequency (Hz, mel-spaced)")


def _save(fig: Any, path: Path) -> Path:
    return atomic.save_figure(fig, path)


def plot_occlusion(rows: list[dict[str, Any]], summary: dict[str, Any], title: str,
                   path: Path) -> Path:
    """AUROC and accuracy drop per masked band against the band's centre frequency; each
    band's Hz extent drawn as a bar under the AUROC curve."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.8), dpi=120)
    centre = np.array([r["f_centre_hz"] for r in rows])
    for key, style in (("auroc_drop", "o-"), ("accuracy_drop", "s--")):
        ax.plot(centre, [r[key] for r in rows], style, ms=3, lw=1.2, label=key.replace("_", " "))
    for r in rows:
        ax.hlines(r["auroc_drop"], r["f_lo_hz"], r["f_hi_hz"], colors="C0", alpha=0.2, lw=4)
    ax.axhline(0, color="grey", lw=0.6)
    _mel_axis(ax, max(r["f_hi_hz"] for r in rows))
    ax.set_xlim(max(rows[0]["f_lo_hz"], 1.0), rows[-1]["f_hi_hz"])
    ax.set_ylabel("drop when the band is masked")
    ax.set_title(f"{title}\nunmasked AUROC {summary['auroc']:.3f}, accuracy "
                 f"{summary['accuracy']:.3f}, n={summary['n']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _map_axes(ax: Any, image: np.ndarray, hz: np.ndarray, seconds: float, cmap: str,
              **kwargs: Any) -> Any:
    """``image`` (n_mels, frames) with mel bins up, Hz labels on the y axis."""
    handle = ax.imshow(image, origin="lower", aspect="auto", cmap=cmap,
                       extent=(0, seconds, -0.5, len(hz) - 0.5), **kwargs)
    ticks = np.linspace(0, len(hz) - 1, 5).round().astype(int)
    ax.set_yticks(ticks, labels=[f"{hz[t]:.0f}" for t in ticks])
    return handle


def plot_saliency(profiles: dict[str, dict[str, Any]], hz: np.ndarray, seconds: float,
                  title: str, path: Path) -> Path:
    """Mean maps of the human and AI classes, and mel-axis and time profiles per class and
    per generator."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.4), dpi=120)
    for ax, name in zip(axes[0], ("human", "ai"), strict=True):
        if name in profiles:
            _map_axes(ax, profiles[name]["map"], hz, seconds, "magma")
            ax.set_title(f"mean saliency, {name} clips (n={profiles[name]['n']})", fontsize=9)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("Hz (mel bins)")
    mel_ax, time_ax = axes[1]
    for name, prof in profiles.items():
        style = {"lw": 2.2} if ":" not in name else {"lw": 1.0, "alpha": 0.8}
        label = f"{name.split(':')[-1]} (n={prof['n']})"
        mel_ax.plot(hz, prof["mel"] / max(prof["mel"].sum(), 1e-12), label=label, **style)
        t = np.linspace(0, seconds, len(prof["time"]))
        time_ax.plot(t, prof["time"] / max(prof["time"].sum(), 1e-12), label=label, **style)
    _mel_axis(mel_ax, float(hz[-1]))
    mel_ax.set_xlim(max(float(hz[0]), 1.0), float(hz[-1]))
    mel_ax.set_ylabel("share of saliency")
    mel_ax.set_title("over the mel axis (mean over time)", fontsize=9)
    time_ax.set_xlabel("time (s)")
    time_ax.set_title("over time (mean over mel bins)", fontsize=9)
    time_ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_examples(x: np.ndarray, maps: np.ndarray, rows: list[dict[str, Any]],
                  scores: np.ndarray, hz: np.ndarray, seconds: float, title: str,
                  path: Path) -> Path:
    """A few clips: the log-mel (dB) above its saliency map."""
    plt = _pyplot()
    n = len(x)
    fig, axes = plt.subplots(2, n, figsize=(3.2 * n + 0.6, 5.6), dpi=110, squeeze=False)
    for j in range(n):
        top, bottom = axes[0, j], axes[1, j]
        _map_axes(top, x[j], hz, seconds, "viridis")
        _map_axes(bottom, maps[j], hz, seconds, "magma", vmin=0)
        row = rows[j]
        top.set_title(f"{row['clip_id']}\n{row['generator']}, P(AI) {scores[j]:.2f}",
                      fontsize=8)
        bottom.set_xlabel("time (s)")
        if j == 0:
            top.set_ylabel("log-mel: Hz")
            bottom.set_ylabel("saliency: Hz")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
