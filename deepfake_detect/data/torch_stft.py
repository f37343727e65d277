"""The ``stft`` front end in torch, with the semantics of :func:`frontends.log_power`
(librosa's centred STFT padded with zeros, a periodic Hann window, power 2, the bins of the
band, ``power_to_db`` per clip), so the training device can compute it from cached
waveforms (``data.cache.store: waveform``); ``tests/test_frontends.py`` checks the parity.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from deepfake_detect.data.features import FeatureConfig, stft_bins
from deepfake_detect.data.torch_mel import power_spectrum, power_to_db


class LogPower(nn.Module):
    """``(batch, [1,] n_samples)`` waveforms -> ``(batch, [1,] bins, n_frames)`` dB."""

    def __init__(self, cfg: FeatureConfig, dtype: torch.dtype = torch.float32):
        super().__init__()
        import librosa

        self.cfg = cfg
        self.first, self.end = stft_bins(cfg)
        window = librosa.filters.get_window("hann", cfg.n_fft, fftbins=True)
        self.register_buffer("window", torch.from_numpy(np.asarray(window)).to(dtype),
                             persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        channel = wave.dim() == 3
        power = power_spectrum(wave.squeeze(1) if channel else wave, self.window, self.cfg)
        db = power_to_db(power[:, self.first:self.end], self.cfg)
        return db.unsqueeze(1) if channel else db
