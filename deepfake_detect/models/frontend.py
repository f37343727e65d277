"""The detector's front end: whatever the data pipeline holds becomes a normalised log-mel.

Rows come in two kinds (``data.cache.store``): log-mels in dB computed by librosa
(``features``), or clip-length waveforms (``waveform``), whose log-mels the front end computes
with :class:`~deepfake_detect.data.torch_mel.LogMel` on the model's device (librosa's
semantics, parity tested). Either way it then normalises with the training set's mean and
standard deviation (buffers, so the bundle restores them). Training, evaluation, predict,
explain and the benchmark all call the model the same way: ``detector(rows)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from deepfake_detect.config import one_of
from deepfake_detect.data.features import FeatureConfig, fit_length, log_mel
from deepfake_detect.data.torch_mel import LogMel

STORES = ("features", "waveform")
MOMENT_CHUNK = {"features": 256, "waveform": 32}  # rows per step of the mean/std pass


class FrontEnd(nn.Module):
    """Rows -> ``(batch, 1, n_mels, frames)`` normalised log-mels.

    ``store`` is what the model was trained on; :meth:`rows` produces the same kind from
    audio, so that a file scored later goes through exactly the training computation.
    """

    def __init__(self, features: FeatureConfig, store: str = "features", mean: float = 0.0,
                 std: float = 1.0):
        super().__init__()
        one_of(store, STORES, "data.cache.store")
        self.features = features
        self.store = store
        self.mel = LogMel(features)
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def log_mel(self, x: torch.Tensor) -> torch.Tensor:
        """Log-mels in dB, ``(batch, 1, n_mels, frames)``, from rows of either kind: log-mels
        (with or without the channel) pass through, waveforms ``(batch, [1,] n_samples)``
        are transformed (in float32 or float64, never under autocast)."""
        cfg = self.features
        if tuple(x.shape[-2:]) == cfg.shape:
            mel = x
        elif x.shape[-1] == cfg.n_samples and x.dim() in (2, 3):
            work = x if x.dtype in (torch.float32, torch.float64) else x.float()
            with torch.autocast(x.device.type, enabled=False):
                mel = self.mel(work.to(self.mel.window.dtype)).to(x.dtype)
        else:
            raise ValueError(f"expected log-mels (..., {cfg.n_mels}, {cfg.n_frames}) or "
                             f"waveforms (batch, {cfg.n_samples}), got {tuple(x.shape)}")
        return mel.unsqueeze(1) if mel.dim() == 3 else mel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.log_mel(x) - self.mean) / self.std

    def rows(self, waves: np.ndarray) -> np.ndarray:
        """The rows this model trained on, for windows of audio (one per row of ``waves``,
        each fitted to the clip length): librosa log-mels, or the waveforms themselves."""
        cfg = self.features
        if self.store == "waveform":
            return np.stack([fit_length(np.asarray(w, dtype=np.float32), cfg.n_samples)
                             for w in waves])
        return np.stack([log_mel(w, cfg) for w in waves])

    @torch.no_grad()
    def moments(self, rows: np.ndarray) -> tuple[float, float]:
        """Mean and standard deviation of the log-mels of (possibly memory-mapped) ``rows``,
        read in chunks; sets the normalisation and returns it."""
        total, total_sq, count = 0.0, 0.0, 0
        step = MOMENT_CHUNK[self.store]
        for start in range(0, len(rows), step):
            chunk = rows[start:start + step]
            if self.store == "waveform":
                chunk = self.log_mel(torch.from_numpy(np.asarray(chunk))).numpy()
            chunk = np.asarray(chunk, dtype=np.float64)
            total += chunk.sum()
            total_sq += np.square(chunk).sum()
            count += chunk.size
        mean = total / max(count, 1)
        std = float(np.sqrt(max(total_sq / max(count, 1) - mean * mean, 1e-12)))
        self.mean.fill_(float(mean))
        self.std.fill_(std)
        return float(mean), std
