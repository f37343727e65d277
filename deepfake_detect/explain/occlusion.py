"""Frequency-band occlusion: mask one mel band at a time and measure what the scores lose.

A band is a range of mel bins ``[lo, hi)``; masking sets it to a fill value (the training
feature mean, i.e. 0 after normalisation, or each clip's floor) over the whole clip. The drop
of AUROC and accuracy against the unmasked scores says how much the detector relies on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchmetrics.functional import classification as C

from deepfake_detect.data.features import FeatureConfig

ScoreMels = Callable[[torch.Tensor], torch.Tensor]  # (N, 1, n_mels, frames) dB -> P(AI), (N,)


def bands(n_mels: int, width: int, stride: int) -> list[tuple[int, int]]:
    """Mel-bin ranges ``[lo, hi)`` of ``width`` bins every ``stride`` bins; the last one ends
    at ``n_mels`` so every bin is covered."""
    if not 0 < width <= n_mels or stride <= 0:
        raise ValueError(f"need 0 < width <= n_mels and stride > 0 (width {width}, "
                         f"n_mels {n_mels}, stride {stride})")
    out = [(lo, lo + width) for lo in range(0, n_mels - width + 1, stride)]
    if out[-1][1] < n_mels:
        out.append((n_mels - width, n_mels))
    return out


def mel_edges_hz(features: FeatureConfig) -> np.ndarray:
    """The ``n_mels + 2`` filter edge frequencies of librosa's mel filterbank: bin ``i`` spans
    ``[edges[i], edges[i + 2]]`` and is centred on ``edges[i + 1]``."""
    import librosa

    fmax = features.fmax if features.fmax is not None else features.sample_rate / 2
    return librosa.mel_frequencies(features.n_mels + 2, fmin=features.fmin, fmax=fmax)


def mel_centres_hz(features: FeatureConfig) -> np.ndarray:
    """Centre frequency (Hz) of each mel bin."""
    return mel_edges_hz(features)[1:-1]


def band_hz(features: FeatureConfig, lo: int, hi: int) -> tuple[float, float, float]:
    """(lowest, centre, highest) frequency in Hz that mel bins ``[lo, hi)`` respond to; the
    centre is the mid-point on the mel scale."""
    import librosa

    edges = mel_edges_hz(features)
    centre = librosa.mel_to_hz((librosa.hz_to_mel(edges[lo + 1]) +
                                librosa.hz_to_mel(edges[hi])) / 2)
    return float(edges[lo]), float(centre), float(edges[hi + 1])


@dataclass
class Occlusion:
    """Scores of ``n`` clips, unmasked (``base``) and with each band masked (``masked[b]``)."""

    bands: list[tuple[int, int]]
    base: np.ndarray  # (n,)
    masked: np.ndarray  # (n_bands, n)
    labels: np.ndarray  # (n,) 0 human, 1 AI
    threshold: float

    def metrics(self, keep: np.ndarray | None = None) -> dict[str, Any]:
        """Baseline AUROC/accuracy and, per band, their drop (over the clips in ``keep``)."""
        keep = np.ones(len(self.labels), bool) if keep is None else keep
        labels = torch.from_numpy(self.labels[keep]).long()

        def auroc(scores: np.ndarray) -> float:
            if labels.numel() == 0 or labels.min() == labels.max():
                return float("nan")
            return float(C.binary_auroc(torch.from_numpy(scores[keep]).float(), labels))

        def accuracy(scores: np.ndarray) -> float:
            return float(np.mean((scores[keep] >= self.threshold) == self.labels[keep]))

        base_auroc, base_acc = auroc(self.base), accuracy(self.base)
        aurocs = np.array([auroc(s) for s in self.masked])
        accs = np.array([accuracy(s) for s in self.masked])
        return {"n": int(keep.sum()), "auroc": base_auroc, "accuracy": base_acc,
                "auroc_drop": base_auroc - aurocs, "accuracy_drop": base_acc - accs,
                "masked_auroc": aurocs, "masked_accuracy": accs}

    def score_change(self) -> np.ndarray:
        """Mean |score change| per band."""
        return np.abs(self.masked - self.base[None]).mean(axis=1)


@torch.no_grad()
def occlude(score: ScoreMels, x: torch.Tensor, labels: np.ndarray, band_list: list[tuple[int, int]],
            fill: float | torch.Tensor, threshold: float = 0.5,
            batch_size: int = 32) -> Occlusion:
    """Score ``x`` (N, 1, n_mels, frames, in dB) unmasked and with each band set to ``fill``
    (a number, or one value per clip shaped (N, 1, 1, 1))."""
    n = len(x)
    fill_t = torch.as_tensor(fill, dtype=x.dtype)
    if fill_t.ndim:
        fill_t = fill_t.reshape(n, 1, 1, 1)
    base = np.empty(n, np.float32)
    masked = np.empty((len(band_list), n), np.float32)
    for start in range(0, n, batch_size):
        part = slice(start, start + batch_size)
        xb = x[part]
        fb = fill_t[part] if fill_t.ndim else fill_t
        base[part] = score(xb).float().cpu().numpy()
        for b, (lo, hi) in enumerate(band_list):
            xm = xb.clone()
            xm[:, :, lo:hi, :] = fb
            masked[b, part] = score(xm).float().cpu().numpy()
    return Occlusion(list(band_list), base, masked, np.asarray(labels).astype(np.int64),
                     float(threshold))


def table(result: Occlusion, features: FeatureConfig,
          groups: dict[str, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """One row per band: mel bins, Hz range and centre, masked AUROC/accuracy and their drops,
    mean |score change|, and ``auroc_drop_<group>`` for each clip subset in ``groups``."""
    overall = result.metrics()
    by_group = {name: result.metrics(keep) for name, keep in (groups or {}).items()}
    change = result.score_change()
    rows = []
    for b, (lo, hi) in enumerate(result.bands):
        f_lo, f_centre, f_hi = band_hz(features, lo, hi)
        row = {"band": b, "mel_lo": lo, "mel_hi": hi, "f_lo_hz": round(f_lo, 1),
               "f_centre_hz": round(f_centre, 1), "f_hi_hz": round(f_hi, 1),
               "auroc": overall["masked_auroc"][b], "accuracy": overall["masked_accuracy"][b],
               "auroc_drop": overall["auroc_drop"][b],
               "accuracy_drop": overall["accuracy_drop"][b],
               "mean_abs_score_change": float(change[b])}
        row.update({f"auroc_drop_{name}": float(m["auroc_drop"][b])
                    for name, m in by_group.items()})
        rows.append({k: float(v) if isinstance(v, np.floating) else v for k, v in row.items()})
    return rows


def peak(rows: list[dict[str, Any]], key: str = "auroc_drop") -> dict[str, Any] | None:
    """The row with the largest ``key`` (None when all are NaN)."""
    valid = [r for r in rows if r[key] == r[key]]
    return max(valid, key=lambda r: r[key]) if valid else None
