"""Decoding audio files to mono float32 at a target sample rate, with bad-audio checks.

Every way a file can be unusable (missing, empty, unreadable, wrong format, truncated, corrupt
data, silent, NaN/inf samples, shorter than the window with ``short: drop``) raises
:class:`AudioError` with a one-line reason; the feature cache turns that into a skipped clip
listed in ``skipped.csv`` instead of a crash.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import soundfile as sf

from deepfake_detect.console import decoder_stderr
from deepfake_detect.errors import DeepfakeDetectError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
SHORT_POLICIES = ("pad", "drop")

# libsndfile logs "data : <declared> (should be <present>)" when a WAV/AIFF data chunk is cut
# short; it then silently reads the shorter file, so truncation is only visible in that log
# (a shortfall within 1 % -- a lost pad byte or last block -- is tolerated).
_CHUNK_SHORT = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_PLACEHOLDER_SIZE = 0xFFFFFF00  # streamed WAVs write 0xFFFFFFFF: unknown length, not truncated
_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
_FINITE: dict[tuple[str, int, int], bool] = {}  # float files already scanned for NaN/inf


class AudioError(DeepfakeDetectError):
    """A clip cannot be used; the message is the reason written to skipped.csv."""


@dataclass(frozen=True)
class AudioInfo:
    """File metadata read without decoding (``soundfile.info``)."""

    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


@dataclass(frozen=True)
class Segment:
    """The part of a file to decode: ``duration_s`` seconds from ``offset_s``.

    ``offset_s=None`` centres the window in the file; an offset past the point where a full
    window still fits is moved back so the window ends at the end of the file. A file shorter
    than the window is returned whole (``short="pad"``; the features step pads it) or rejected
    (``short="drop"``).
    """

    duration_s: float
    offset_s: float | None = None
    short: str = "pad"

    def span(self, total: int, sample_rate: int) -> tuple[int, int]:
        """(start frame, frame count) of this segment in a file of ``total`` frames."""
        length = max(1, int(round(self.duration_s * sample_rate)))
        if total < length:
            if self.short == "drop":
                raise AudioError(f"shorter than the window ({total / sample_rate:.2f} s < "
                                 f"{self.duration_s:.2f} s)")
            return 0, total
        if self.offset_s is None:
            return (total - length) // 2, length
        start = min(int(round(self.offset_s * sample_rate)), total - length)
        return max(0, start), length


def _one_line(err: BaseException) -> str:
    # libsndfile errors repeat the path ("Error opening '<path>': ..."): keep the reason only.
    text = getattr(err, "error_string", None) or str(err)
    text = " ".join(str(text).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def describe_file(path: str | Path) -> dict[str, Any]:
    """What a file says about its recording chain, from its header and size: native sample
    rate, channels, duration, container (format), codec (subtype) and average bitrate."""
    path = Path(path)
    try:
        meta = sf.info(str(path))
    except Exception as err:  # noqa: BLE001 - libsndfile raises several types
        raise AudioError(f"unreadable audio header ({_one_line(err)})") from err
    duration = meta.frames / meta.samplerate if meta.samplerate else 0.0
    size = path.stat().st_size
    return {"sample_rate": int(meta.samplerate), "channels": int(meta.channels),
            "duration_s": float(duration), "format": str(meta.format),
            "subtype": str(meta.subtype), "bitrate_kbps": 8 * size / duration / 1000
            if duration > 0 else 0.0}


def info(path: str | Path) -> AudioInfo:
    """Sample rate, channels and frame count from the file header (no decoding)."""
    try:
        meta = sf.info(str(path))
    except Exception as err:  # noqa: BLE001 - libsndfile raises several types
        raise AudioError(f"unreadable audio header ({_one_line(err)})") from err
    return AudioInfo(int(meta.samplerate), int(meta.channels), int(meta.frames))


def decode(path: str | Path, sample_rate: int, segment: Segment | None = None) -> np.ndarray:
    """Read ``path`` (or one ``segment`` of it) as mono float32 at ``sample_rate``.

    Any input rate and channel count is accepted: channels are averaged and the result is
    resampled (soxr). With a ``segment`` only those frames are decoded when the format allows
    seeking. Raises :class:`AudioError` for every kind of unusable file.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"file not found: {path}")
    if not path.is_file():
        raise AudioError(f"not a file: {path}")
    if path.stat().st_size == 0:
        raise AudioError("empty file (0 bytes)")
    try:
        with decoder_stderr():  # libmpg123's notes on resynchronised frames stay off screen
            data, native_sr = _read_soundfile(path, segment)
    except _NotSoundfile as sf_err:
        data, native_sr = _read_fallback(path, segment, sf_err.reason)
    wave = data.mean(axis=1) if data.ndim == 2 else data
    check_waveform(wave)
    if native_sr != sample_rate:
        try:
            wave = librosa.resample(wave, orig_sr=native_sr, target_sr=sample_rate,
                                    res_type="soxr_hq")
        except Exception as err:  # noqa: BLE001 - e.g. a nonsensical header sample rate
            raise AudioError(f"cannot resample from {native_sr} Hz ({_one_line(err)})") from err
        if wave.size == 0:
            raise AudioError("empty audio after resampling (too few samples)")
    return np.ascontiguousarray(wave, dtype=np.float32)


class _NotSoundfile(Exception):
    """soundfile cannot open the file at all: try the librosa/audioread fallback."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _read_soundfile(path: Path, segment: Segment | None) -> tuple[np.ndarray, int]:
    try:
        handle = sf.SoundFile(str(path))
    except Exception as err:  # noqa: BLE001
        raise _NotSoundfile(_one_line(err)) from err
    with handle:
        native_sr, total = int(handle.samplerate), int(handle.frames)
        if native_sr <= 0:
            raise AudioError(f"invalid sample rate {native_sr} in the header")
        truncated = _CHUNK_SHORT.search(handle.extra_info or "")
        if truncated:
            declared, present = int(truncated.group(1)), int(truncated.group(2))
            if declared < _PLACEHOLDER_SIZE and declared - present > 0.01 * declared:
                raise AudioError(f"truncated audio (data chunk declares {declared} bytes, "
                                 f"the file holds {present})")
        start, count = (0, total) if segment is None else segment.span(total, native_sr)
        if segment is not None and handle.subtype in _FLOAT_SUBTYPES:
            _check_finite_file(handle, path)
        try:
            if start:
                handle.seek(start)
            data = handle.read(count, dtype="float32", always_2d=True)
        except Exception as err:  # noqa: BLE001 - corrupt or cut compressed streams
            raise AudioError(f"corrupt audio data ({_one_line(err)})") from err
        tolerance = int(max(0.01 * count, 0.1 * native_sr))
        if count - len(data) > tolerance:
            raise AudioError(f"truncated audio (header declares {total} frames; only "
                             f"{start + len(data)} readable)")
        if start + count < total - tolerance:  # a segment: check that the file's end is there
            _check_end(handle, total, tolerance)
    return data, native_sr


def _check_finite_file(handle, path: Path) -> None:
    """Float files can hold NaN/inf anywhere: reject the whole file, not only the windows
    that happen to contain them (remembered per file, so windows do not rescan it)."""
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _FINITE:
        finite = True
        try:
            for block in handle.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
                if not np.all(np.isfinite(block)):
                    finite = False
                    break
        except Exception as err:  # noqa: BLE001
            raise AudioError(f"corrupt audio data ({_one_line(err)})") from err
        handle.seek(0)
        if len(_FINITE) > 4096:
            _FINITE.clear()
        _FINITE[key] = finite
    if not _FINITE[key]:
        raise AudioError("audio contains NaN or inf samples")


def _check_end(handle, total: int, tolerance: int) -> None:
    """Raise AudioError unless the last frames the header declares can be read (cheap: one
    seek), so a segment read does not hide a cut-off compressed file."""
    try:
        handle.seek(max(0, total - 2 * tolerance - 1))
        tail = handle.read(2 * tolerance + 1, dtype="float32", always_2d=True)
    except Exception as err:  # noqa: BLE001
        raise AudioError(f"truncated or corrupt audio (cannot reach the end the header "
                         f"declares: {_one_line(err)})") from err
    if len(tail) <= tolerance:
        raise AudioError(f"truncated audio (header declares {total} frames; the end of the "
                         "file is missing)")


def _read_fallback(path: Path, segment: Segment | None, sf_reason: str) -> tuple[np.ndarray, int]:
    """Formats libsndfile cannot open (when an audioread backend such as ffmpeg exists)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wave, native_sr = librosa.load(str(path), sr=None, mono=True)
    except Exception as err:  # noqa: BLE001
        raise AudioError(f"unreadable audio ({sf_reason})") from err
    if segment is not None:
        start, count = segment.span(len(wave), int(native_sr))
        wave = wave[start:start + count]
    return np.asarray(wave, dtype=np.float32), int(native_sr)


def check_waveform(wave: np.ndarray, silence_threshold: float = 1e-6) -> None:
    """Raise AudioError for empty, non-finite or silent audio."""
    if wave.size == 0:
        raise AudioError("empty audio (0 samples)")
    if not np.all(np.isfinite(wave)):
        raise AudioError("audio contains NaN or inf samples")
    if float(np.max(np.abs(wave))) < silence_threshold:
        raise AudioError("silent audio (peak below 1e-6)")
