"""Decoding audio files to mono float32 at a target sample rate, with bad-audio checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepfake_detect.errors import DeepfakeDetectError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


class AudioError(DeepfakeDetectError):
    """A clip cannot be used; the message is the reason written to skipped.csv."""


def decode(path: str | Path, sample_rate: int) -> np.ndarray:
    """Read ``path`` as mono float32 at ``sample_rate`` (any input rate and channel count)."""
    import librosa
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"file not found: {path}")
    try:
        data, native_sr = sf.read(str(path), dtype="float32", always_2d=True)
        wave = data.mean(axis=1)
    except Exception as sf_err:  # noqa: BLE001 - soundfile cannot read every format (mp3)
        try:
            wave, native_sr = librosa.load(str(path), sr=None, mono=True)
        except Exception as err:  # noqa: BLE001
            raise AudioError(f"unreadable audio ({type(sf_err).__name__}: {sf_err}; "
                             f"fallback: {type(err).__name__})") from err
    check_waveform(wave)
    if native_sr != sample_rate:
        wave = librosa.resample(wave, orig_sr=native_sr, target_sr=sample_rate,
                                res_type="soxr_hq")
    return np.ascontiguousarray(wave, dtype=np.float32)


def check_waveform(wave: np.ndarray, silence_threshold: float = 1e-6) -> None:
    """Raise AudioError for empty, non-finite or silent audio."""
    if wave.size == 0:
        raise AudioError("empty audio (0 samples)")
    if not np.all(np.isfinite(wave)):
        raise AudioError("audio contains NaN or inf samples")
    if float(np.max(np.abs(wave))) < silence_threshold:
        raise AudioError("silent audio (peak below 1e-6)")
