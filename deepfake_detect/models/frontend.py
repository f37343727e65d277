"""The detector's front end: whatever the data pipeline holds becomes the model's normalised
input (a log-mel by default; the other kinds of ``features.kind`` likewise).

Rows come in two kinds (``data.cache.store``): features computed by the reference
implementation (librosa / numpy, :mod:`deepfake_detect.data.frontends`) when the cache is
built (``features``), or clip-length waveforms (``waveform``), whose features the front end
computes on the model's device (:class:`~deepfake_detect.data.torch_mel.LogMel`, or
:class:`~deepfake_detect.data.torch_stft.LogPower` for ``stft``; parity tested). Either way
it then normalises with the training set's mean and standard deviation (buffers, so the
bundle restores them). Training, evaluation, predict, explain and the benchmark all call the
model the same way: ``detector(rows)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from deepfake_detect.config import one_of
from deepfake_detect.data import frontends
from deepfake_detect.data.features import FeatureConfig, fit_length
from deepfake_detect.data.torch_mel import LogMel
from deepfake_detect.data.torch_stft import LogPower

STORES = ("features", "waveform")
MOMENT_CHUNK = {"features": 256, "waveform": 32}  # rows per step of the mean/std pass


class FrontEnd(nn.Module):
    """Rows -> ``(batch, 1, *features.shape)`` normalised features (``(batch, 1, n_mels,
    frames)`` for the log-mel).

    ``store`` is what the model was trained on; :meth:`rows` produces the same kind from
    audio, so that a file scored later goes through exactly the training computation.
    """

    def __init__(self, features: FeatureConfig, store: str = "features", mean: float = 0.0,
                 std: float = 1.0):
        super().__init__()
        one_of(store, STORES, "data.cache.store")
        self.features = features
        self.store = store
        frontends.check_store(features, store)
        # The on-device path for waveform rows (None: the kind is computed at build time).
        self.mel = (LogMel(features) if features.kind == "logmel" else
                    LogPower(features) if features.kind == "stft" else None)
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    @property
    def whole_file(self) -> bool:
        """Whether a file's row is computed from the whole file (one row per file)."""
        return frontends.reads_whole_file(self.features)

    def log_mel(self, x: torch.Tensor) -> torch.Tensor:
        """The features (log-mels in dB by default), ``(batch, 1, *features.shape)``, from
        rows of either kind: features (with or without the channel) pass through, waveforms
        ``(batch, [1,] n_samples)`` are transformed (in float32 or float64, never under
        autocast)."""
        cfg = self.features
        shape = self.shape
        if tuple(x.shape[-len(shape):]) == shape and x.dim() in (len(shape) + 1, len(shape) + 2):
            mel = x
        elif self.mel is not None and x.shape[-1] == cfg.n_samples and x.dim() in (2, 3):
            work = x if x.dtype in (torch.float32, torch.float64) else x.float()
            with torch.autocast(x.device.type, enabled=False):
                mel = self.mel(work.to(self.mel.window.dtype)).to(x.dtype)
        else:
            expected = f"features (..., {', '.join(map(str, shape))})"
            if self.mel is not None:
                expected += f" or waveforms (batch, {cfg.n_samples})"
            raise ValueError(f"expected {expected}, got {tuple(x.shape)}")
        return mel.unsqueeze(1) if mel.dim() == len(shape) + 1 else mel

    @property
    def shape(self) -> tuple[int, ...]:
        """One row's feature shape (computed once: an encoder's reads its config)."""
        if not hasattr(self, "_shape"):
            self._shape = tuple(self.features.shape)
        return self._shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.log_mel(x) - self.mean) / self.std

    def rows(self, waves: np.ndarray, whole: bool = False) -> np.ndarray:
        """The rows this model trained on, for windows of audio (one per row of ``waves``,
        each fitted to the clip length; ``whole``: each a whole file, for a whole-file front
        end): the reference features, or the waveforms themselves."""
        cfg = self.features
        if self.store == "waveform":
            return np.stack([fit_length(np.asarray(w, dtype=np.float32), cfg.n_samples)
                             for w in waves])
        return np.stack([frontends.compute(w, cfg, whole) for w in waves])

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
