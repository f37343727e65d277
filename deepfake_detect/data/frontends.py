"""Front ends other than the log-mel (``features.kind``), each a numpy/librosa reference:

- ``stft``: linear-frequency log-power (a centred STFT, like the log-mel's, without the mel
  filterbank), the bins of the band ``fmin``..``fmax``, in dB like the log-mel (``db_ref``,
  ``top_db``); an on-device path in :mod:`deepfake_detect.data.torch_stft` (parity tested);
- ``cqt``: librosa's constant-Q transform, ``bins_per_octave`` from ``fmin`` (C1 when 0) up
  to ``fmax``, in dB;
- ``fakeprint``: how far the average spectrum rises above its lower envelope (Afchar et al.,
  ISMIR 2025), max-pooled into ``bins`` bands of ``fmin``..``fmax``: a 1-D profile, of the
  whole file with ``whole_file`` (the track average the paper uses) or of the window;
- ``embedding``: a frozen encoder's hidden states, mean-pooled per layer
  (:mod:`deepfake_detect.data.encoders`).

``fmax: auto`` is resolved against the source before anything is computed
(:func:`resolve_band`): when the files' native rates differ, the top few hundred hertz under
the resampler's edge tell them apart (a recording-chain shortcut), so the band stops at
``band_guard`` of the lowest edge.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.ndimage import minimum_filter1d, uniform_filter1d

from deepfake_detect.config import require
from deepfake_detect.data import audio
from deepfake_detect.data.clips import Clip
from deepfake_detect.data.features import (
    FeatureConfig,
    cqt_range,
    fit_length,
    log_mel,
    stft_bins,
)

log = logging.getLogger(__name__)

AMIN = 1e-10
FAKEPRINT_NFFT = 4096  # the profile's longest FFT (shorter for clips under 4096 samples)
ON_DEVICE = ("logmel", "stft")  # kinds with a torch path (data.cache.store: waveform)
RATE_PROBES = 400  # files whose headers tell the native rates (spread over the listing)


def to_db(power: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """``librosa.power_to_db`` with the config's reference and floor."""
    import librosa

    ref = np.max if cfg.db_ref == "max" else 1.0
    return librosa.power_to_db(power, ref=ref, amin=AMIN, top_db=cfg.top_db)


def log_power(wave: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """float32 linear-frequency log-power (dB) of shape ``cfg.shape`` (kind ``stft``)."""
    import librosa

    wave = fit_length(np.asarray(wave, dtype=np.float32), cfg.n_samples)
    spec = librosa.stft(wave, n_fft=cfg.n_fft, hop_length=cfg.hop_length, center=True,
                        pad_mode="constant")
    first, end = stft_bins(cfg)
    return to_db(np.abs(spec[first:end]) ** 2, cfg).astype(np.float32)


def constant_q(wave: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """float32 constant-Q log-power (dB) of shape ``cfg.shape`` (kind ``cqt``)."""
    import librosa

    wave = fit_length(np.asarray(wave, dtype=np.float32), cfg.n_samples)
    low, n_bins = cqt_range(cfg)
    spec = librosa.cqt(wave, sr=cfg.sample_rate, hop_length=cfg.hop_length, fmin=low,
                       n_bins=n_bins, bins_per_octave=cfg.bins_per_octave)
    return to_db(np.abs(spec) ** 2, cfg).astype(np.float32)


def fakeprint_profile(wave: np.ndarray, sample_rate: int, bins: int, fmin: float,
                      fmax: float, n_fft_max: int = FAKEPRINT_NFFT) -> np.ndarray:
    """How far the average magnitude spectrum rises above its lower envelope (dB), max-pooled
    into ``bins`` bands from ``fmin`` to ``fmax``: persistent narrow peaks (a decoder's)
    stand out, music (which moves) averages away, the level does not matter."""
    wave = np.asarray(wave, dtype=np.float64)
    n_fft = int(min(n_fft_max, 2 ** np.floor(np.log2(max(len(wave), 64)))))
    if len(wave) < n_fft:
        wave = np.pad(wave, (0, n_fft - len(wave)))
    frames = np.lib.stride_tricks.sliding_window_view(wave, n_fft)[::n_fft // 2]
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)).mean(axis=0)
    db = 20 * np.log10(spectrum + 1e-9)
    width = max(3, n_fft // 64)
    floor = uniform_filter1d(minimum_filter1d(db, width), width)
    residual = np.clip(db - floor, 0, None)
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    edges = np.linspace(fmin, fmax, bins + 1)
    band = np.clip(np.searchsorted(edges, freqs, side="right") - 1, -1, bins)
    pooled = np.zeros(bins)
    inside = (band >= 0) & (band < bins)
    np.maximum.at(pooled, band[inside], residual[inside])
    return pooled.astype(np.float32)


def fakeprint_row(wave: np.ndarray, cfg: FeatureConfig, whole: bool = False) -> np.ndarray:
    """The fakeprint front end's row: the window's profile, or the whole file's (``whole``)."""
    if not whole:
        wave = fit_length(np.asarray(wave, dtype=np.float32), cfg.n_samples)
    return fakeprint_profile(wave, cfg.sample_rate, cfg.bins, cfg.fmin, cfg.fmax_hz,
                             min(FAKEPRINT_NFFT, cfg.n_fft))


def compute(wave: np.ndarray, cfg: FeatureConfig, whole: bool = False) -> np.ndarray:
    """One row of ``cfg.kind`` from a mono waveform at ``cfg.sample_rate`` (the reference
    implementation; ``whole``: the waveform is a whole file, for ``whole_file`` kinds)."""
    if cfg.kind == "stft":
        return log_power(wave, cfg)
    if cfg.kind == "cqt":
        return constant_q(wave, cfg)
    if cfg.kind == "fakeprint":
        return fakeprint_row(wave, cfg, whole)
    if cfg.kind == "embedding":
        from deepfake_detect.data.encoders import embed

        return embed(wave, cfg)
    return log_mel(wave, cfg)


def reads_whole_file(cfg: FeatureConfig) -> bool:
    """Whether a row is computed from the whole file rather than its window."""
    return cfg.kind == "fakeprint" and cfg.whole_file


def clip_features(work: Any, clip: Clip) -> tuple[np.ndarray, dict[str, Any]]:
    """One clip's row under a ``FeatureWork``'s distortion: from its window, or for a whole-file
    front end from its whole file (every window of a file then has the same row)."""
    cfg = work.features
    if reads_whole_file(cfg) and clip.path:  # a file (also through a DecodedSource)
        from deepfake_detect.data import distortions as dist

        params = dist.draw_params(work.distortion, work.seed, clip.clip_id)
        blob = json.dumps([work.distortion.as_dict(), params], sort_keys=True, default=str)
        row = _whole_file_row(clip.path, blob, cfg, work.distortion, work.seed)
        return row, params
    wave, params = work.distorted(clip)
    return compute(wave, cfg), params


@functools.lru_cache(maxsize=4)
def _whole_file_row(path: str, blob: str, cfg: FeatureConfig, distortion: Any,
                    seed: int) -> np.ndarray:
    """A whole file's row under a distortion (``blob``: the distortion and its drawn
    parameters, so that windows of one file drawing the same ones share it)."""
    from deepfake_detect.data import distortions as dist

    params = json.loads(blob)[1]
    wave = audio.decode(path, cfg.sample_rate)
    return compute(dist.apply(distortion, wave, cfg.sample_rate, params), cfg, whole=True)


def native_rates(clips: Sequence[Clip]) -> dict[int, int]:
    """Files per native sample rate, from the headers of up to :data:`RATE_PROBES` files
    spread over the listing (clips without a file count for nothing)."""
    paths = sorted({c.path for c in clips if c.path})
    if len(paths) > RATE_PROBES:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, RATE_PROBES).astype(int)]
    rates: dict[int, int] = {}
    for path in paths:
        try:
            rate = int(audio.info(path).sample_rate)
        except (audio.AudioError, OSError):
            continue
        rates[rate] = rates.get(rate, 0) + 1
    return rates


def resolve_band(cfg: FeatureConfig, clips: Sequence[Clip]) -> FeatureConfig:
    """``fmax: auto`` made a number for this source: Nyquist of the feature rate or of the
    files' single native rate, whichever is lower; where native rates differ, ``band_guard``
    of the lowest resampler edge, logged (set ``features.fmax`` to choose another)."""
    if cfg.fmax != "auto":
        return cfg
    rates = native_rates(clips)
    edge = min([cfg.sample_rate / 2, *(r / 2 for r in rates)])
    if len(rates) > 1:
        top = cfg.band_guard * edge
        listed = ", ".join(f"{r} Hz ({n})" for r, n in sorted(rates.items()))
        log.info("features.fmax auto: the source mixes native sample rates (%s); the %s front "
                 "end reads up to %.0f Hz (features.band_guard %.3f of the lowest resampler "
                 "edge, %.0f Hz), since the last few hundred hertz below an edge tell the "
                 "rates apart; set features.fmax to choose another band", listed, cfg.kind,
                 top, cfg.band_guard, edge)
    else:
        top = edge
    require(top > cfg.fmin, "features.fmin", f"must be below the band's top ({top:.0f} Hz, "
            "from features.fmax: auto)")
    return dataclasses.replace(cfg, fmax=float(top))


def check_store(cfg: FeatureConfig, store: str) -> None:
    """A waveform store needs a front end with an on-device path."""
    require(store != "waveform" or cfg.kind in ON_DEVICE, "data.cache.store",
            f"waveform needs a front end with an on-device path ({', '.join(ON_DEVICE)}); "
            f"features.kind={cfg.kind} is computed when the cache is built: use "
            "data.cache.store=features")


def cache_key(cfg: FeatureConfig) -> dict[str, Any]:
    """What a cached row depends on: the feature config, and for embeddings a fingerprint of
    the encoder folder's files (a new encoder at the same path is a new entry)."""
    parts = cfg.as_dict()
    if cfg.kind == "embedding" and cfg.encoder:
        from deepfake_detect.data.encoders import encoder_fingerprint

        parts["encoder_files"] = encoder_fingerprint(str(cfg.encoder))
    return parts
