"""A batched torch log-mel with the exact semantics of :func:`features.log_mel` (librosa).

librosa 0.11's ``melspectrogram`` defaults are reproduced: a centred STFT padded with zeros
(``pad_mode="constant"``), a periodic Hann window of ``n_fft`` samples, power 2, the Slaney
mel filterbank of ``librosa.filters.mel`` (held as a buffer, so it is the very same matrix),
and ``power_to_db`` with ``amin=1e-10``, ``ref`` the clip's maximum (``db_ref: max``) or 1.0,
and the per-clip ``top_db`` floor. It runs on whatever device its buffers live on, so the
training device can compute features from cached waveforms; ``tests/unit/data/test_torch_mel.py``
checks it against librosa on real audio (tolerance stated there and in docs/DESIGN.md).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from deepfake_detect.data.features import FeatureConfig

AMIN = 1e-10
# Parity with librosa that tests/unit/data/test_torch_mel.py checks on real audio (float32,
# every cell, dB): the measured maximum is ~0.005 dB (absolute reference, no floor), 0.001 dB
# typical.
PARITY_DB = 0.01


class LogMel(nn.Module):
    """``(batch, n_samples)`` or ``(batch, 1, n_samples)`` waveforms at ``cfg.sample_rate``
    -> ``(batch, [1,] n_mels, n_frames)`` log-mels in dB, like ``features.log_mel`` per row.

    Waveforms must already have the clip length (``features.fit_length``).
    """

    def __init__(self, cfg: FeatureConfig, dtype: torch.dtype = torch.float32):
        super().__init__()
        import librosa

        self.cfg = cfg
        basis = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels,
                                    fmin=cfg.fmin, fmax=cfg.fmax)
        window = librosa.filters.get_window("hann", cfg.n_fft, fftbins=True)
        self.register_buffer("mel_basis", torch.from_numpy(np.asarray(basis)).to(dtype),
                             persistent=False)
        self.register_buffer("window", torch.from_numpy(np.asarray(window)).to(dtype),
                             persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        channel = wave.dim() == 3
        power = power_spectrum(wave.squeeze(1) if channel else wave, self.window, self.cfg)
        db = power_to_db(torch.matmul(self.mel_basis, power), self.cfg)
        return db.unsqueeze(1) if channel else db


def power_spectrum(wave: torch.Tensor, window: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """``(batch, n_samples)`` -> ``(batch, 1 + n_fft // 2, n_frames)`` power: librosa's
    centred STFT padded with zeros, in ``window``'s dtype."""
    if wave.shape[-1] != cfg.n_samples:
        raise ValueError(f"expected waveforms of {cfg.n_samples} samples, got "
                         f"{tuple(wave.shape)}")
    spec = torch.stft(wave.to(window.dtype), n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                      window=window, center=True, pad_mode="constant", return_complex=True)
    return spec.real.square() + spec.imag.square()


def power_to_db(mel: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """``librosa.power_to_db`` per clip (the last two dimensions are one clip)."""
    db = 10.0 * torch.log10(torch.clamp(mel, min=AMIN))
    if cfg.db_ref == "max":
        ref = mel.amax(dim=(-2, -1), keepdim=True).clamp(min=AMIN)
        db = db - 10.0 * torch.log10(ref)
    if cfg.top_db is not None:
        db = torch.maximum(db, db.amax(dim=(-2, -1), keepdim=True) - cfg.top_db)
    return db


@torch.no_grad()
def log_mel_batch(waves: np.ndarray, cfg: FeatureConfig, device: str | torch.device = "cpu",
                  module: LogMel | None = None) -> np.ndarray:
    """float32 log-mels of a ``(batch, n_samples)`` array, computed with torch on ``device``."""
    module = module if module is not None else LogMel(cfg).to(device)
    x = torch.from_numpy(np.ascontiguousarray(waves, dtype=np.float32)).to(device)
    return module(x).float().cpu().numpy()
