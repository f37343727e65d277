"""Lossy re-encoding in memory: MP3 (LAME), Ogg Vorbis and Ogg Opus through libsndfile
(``soundfile`` writes and reads them from a ``BytesIO``; LGPL/BSD libraries, no GPL code).

The decoded signal is brought back to the input's rate, then aligned to the input by
cross-correlation over the lags a codec can introduce (encoder delay and padding: 1,105
samples for an MP3 whose gapless header was not written) and cut or zero-padded to the
input's length, so timing and length are kept.
"""

from __future__ import annotations

import io

import numpy as np

FORMATS = ("mp3", "vorbis", "opus")
# Standard MPEG Layer III bitrates (kbps) LAME encodes at, per MPEG version (chosen by the
# encoding rate). The lowest of each list is refused by libsndfile's LAME setup, so it is left out.
MP3_BITRATES = {
    "mpeg1": (40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),  # 32-48 kHz
    "mpeg2": (16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),  # 16-24 kHz
    "mpeg25": (16, 24, 32, 40, 48, 56, 64),  # 8-12 kHz
}
MP3_RANGES = {"mpeg1": (32.0, 320.0), "mpeg2": (8.0, 160.0), "mpeg25": (8.0, 64.0)}
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
OPUS_KBPS = (6.0, 256.0)
MAX_LAG = 4096  # samples of delay a codec may add (MP3: 1,105; Vorbis and Opus: none here)


def mp3_version(rate: int) -> str:
    """The MPEG version LAME uses at ``rate`` Hz."""
    return "mpeg1" if rate >= 32000 else "mpeg2" if rate >= 16000 else "mpeg25"


def encode_rate(fmt: str, rate: int, wanted: int | None) -> int:
    """The rate a clip at ``rate`` Hz is encoded at: ``wanted`` when given; else its own rate,
    except that Opus only encodes at 8, 12, 16, 24 or 48 kHz (48 kHz when the clip's rate is
    none of those)."""
    if wanted:
        return int(wanted)
    if fmt == "opus" and rate not in OPUS_RATES:
        return 48000
    return int(rate)


def compression_level(fmt: str, rate: int, bitrate: float | None, quality: float | None
                      ) -> float:
    """libsndfile's compression level (0 best .. 1 smallest) for a bitrate (kbps: MP3 CBR,
    Opus) or a Vorbis quality in [0, 1]; inverse of libsndfile's own mappings."""
    if fmt == "vorbis":
        assert quality is not None
        return float(min(1.0, max(0.0, 1.0 - quality)))
    assert bitrate is not None
    if fmt == "opus":  # libsndfile: bps = int((1 - level) * 250000 + 6000)
        return float(min(1.0, max(0.0, (256000.0 - round(bitrate * 1000) - 0.5) / 250000.0)))
    low, high = MP3_RANGES[mp3_version(rate)]  # libsndfile: kbps = int(high - level * (high - low))
    return float(min(1.0, max(0.0, (high - bitrate) / (high - low) - 1e-9)))


def roundtrip(wave: np.ndarray, sr: int, fmt: str, bitrate: float | None = None,
              quality: float | None = None, rate: int | None = None) -> np.ndarray:
    """``wave`` encoded as ``fmt`` and decoded again, at ``sr`` and aligned to the input."""
    import soundfile as sf

    x = np.asarray(wave, dtype=np.float32)
    at = encode_rate(fmt, sr, rate)
    signal = _resample(x, sr, at) if at != sr else x
    peak = float(np.max(np.abs(signal))) if len(signal) else 0.0
    scale = 1.0 / peak if peak > 1.0 else 1.0  # encoders clip above full scale
    buffer = io.BytesIO()
    subtype = {"mp3": "MPEG_LAYER_III", "vorbis": "VORBIS", "opus": "OPUS"}[fmt]
    container = "MP3" if fmt == "mp3" else "OGG"
    sf.write(buffer, signal * scale, at, format=container, subtype=subtype,
             compression_level=compression_level(fmt, at, bitrate, quality),
             bitrate_mode="CONSTANT" if fmt == "mp3" else None)
    buffer.seek(0)
    decoded, decoded_rate = sf.read(buffer, dtype="float32", always_2d=True)
    decoded = decoded.mean(axis=1) / scale
    if decoded_rate != sr:
        decoded = _resample(decoded, decoded_rate, sr)
    return align(decoded.astype(np.float32), x)


def _resample(wave: np.ndarray, orig: int, target: int) -> np.ndarray:
    import librosa

    return librosa.resample(np.asarray(wave, dtype=np.float32), orig_sr=orig, target_sr=target,
                            res_type="soxr_hq")


def lag(decoded: np.ndarray, reference: np.ndarray, max_lag: int = MAX_LAG,
        window: int = 1 << 15) -> int:
    """How many samples ``decoded`` lags ``reference`` (-64 .. ``max_lag``): the peak of
    their cross-correlation over the loudest ``window`` samples of the reference. 0 when
    either is silent."""
    n, early = len(reference), 64
    if n == 0 or not np.any(reference) or not np.any(decoded):
        return 0
    width = min(window, n)
    energy = np.concatenate([[0.0], np.cumsum(np.square(reference, dtype=np.float64))])
    start = int(np.argmax(energy[width:] - energy[:-width]))  # the loudest stretch
    segment = reference[start:start + width]
    lo = max(0, start - early)
    part = decoded[lo:start + width + max_lag]
    if len(part) < width:
        return 0
    size = 1 << int(np.ceil(np.log2(len(part) + width)))
    xcorr = np.fft.irfft(np.fft.rfft(part, size) * np.conj(np.fft.rfft(segment, size)), size)
    lags = np.arange(len(part) - width + 1) + lo - start  # xcorr[k]: part[k:] vs segment
    return int(lags[np.argmax(xcorr[: len(lags)])])


def align(decoded: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``decoded`` shifted by its lag behind ``reference`` and cut or zero-padded to its
    length."""
    shift = lag(decoded, reference)
    out = decoded[shift:] if shift >= 0 else np.r_[np.zeros(-shift, np.float32), decoded]
    n = len(reference)
    if len(out) < n:
        out = np.pad(out, (0, n - len(out)))
    return np.asarray(out[:n], dtype=np.float32)
