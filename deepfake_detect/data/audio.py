"""Reading audio files: one reader for training (a window at a time) and predict (the whole
file, streamed block by block), so both accept and reject the same files for the same reasons.

Every way a file can be unusable (missing, permission denied, empty, not audio at all, an
implausible header, a cut-off data chunk, corrupt data, silent, NaN/inf samples, shorter than
the window with ``short: drop``) raises :class:`AudioError` with a one-line reason a user can
act on; the feature cache turns that into a skipped clip listed in ``skipped.csv``, predict
into a row with the error.

A file is as long as what decodes, not as long as its header says: compressed headers hold an
estimate (an MP3's Xing frame count), so the reader finds the decodable end with a seek near
it. A file that decodes shorter than its header by more than codec padding is used with a
warning (the audio that is there is sound); a decoder error on the way is a skip.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import Any

import librosa
import numpy as np
import soundfile as sf
import soxr

from deepfake_detect.console import decoder_stderr
from deepfake_detect.errors import DeepfakeDetectError

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
SHORT_POLICIES = ("pad", "drop")
# A header outside these bounds is not a recording (a WAV claiming 2,147,483,647 Hz).
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1_000, 768_000
# Codec padding, in frames at the file's rate: how far a decoder's length may differ from the
# signal's without anything being lost. Measured with soundfile 0.14 / libsndfile 1.2.2
# (docs/DESIGN.md): LAME adds an encoder delay of 576 frames and 576-1,536 frames of end
# padding, and mpg123 removes its own 529-frame delay, so an MP3 whose gapless tag is missing
# decodes up to 2,641 frames longer than its signal; with the tag it decodes exactly.
# libvorbis and libopus (pre-skip 312 at 48 kHz) files decode to the exact length written.
CODEC_SLACK = 3 * 1152  # three MPEG-1 layer III frames
READ_BLOCK = 1 << 16  # frames per read while scanning or streaming

# libsndfile logs "data : <declared> (should be <present>)" when a WAV/AIFF data chunk is cut
# short; it then silently reads the shorter file, so truncation is only visible in that log
# (a shortfall within 1 % -- a lost pad byte or last block -- is tolerated).
_CHUNK_SHORT = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_PLACEHOLDER_SIZE = 0xFFFFFF00  # streamed WAVs write 0xFFFFFFFF: unknown length, not truncated
_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
_AUDIO_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"BW64", b"fLaC", b"OggS", b"ID3", b"FORM",
                b"caff", b".snd", b"wvpk", b"MAC ")
_FACTS: dict[tuple[str, int, int], dict[str, Any]] = {}  # per file: decodable end, finite
_WARNED: set[str] = set()
_NOTES: dict[str, Any] = {"fd": None, "owner": 0}  # collapsed_warnings' sink, when active


class AudioError(DeepfakeDetectError):
    """A clip cannot be used; the message is the reason written to skipped.csv."""


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds: its rate, channels and the frames that decode."""

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
    if "not a regular file" in text or "Format not recognised" in text:
        return "not a recognised audio format"  # the file exists and is regular: we checked
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def os_reason(err: OSError, path: str | Path) -> str:
    """A one-line reason for an OS error met on ``path``, whatever its kind."""
    name = str(path)
    reasons = {
        errno.ENOENT: f"file not found: {_shown(name)}",
        errno.ENAMETOOLONG: f"file name too long ({len(name)} characters): {_shown(name)}",
        errno.ELOOP: f"symbolic link loop: {_shown(name)}",
        errno.ENOTDIR: f"a part of the path is not a folder: {_shown(name)}",
        errno.EACCES: "permission denied (a folder on the file's path cannot be searched)",
        errno.EPERM: "permission denied (a folder on the file's path cannot be searched)",
        errno.EIO: "I/O error reading the file (a failing disk or network share?)",
    }
    return reasons.get(err.errno, f"cannot read the file ({_one_line(err)})")


def _shown(name: str, keep: int = 200) -> str:
    """A path fit for one line: very long ones keep their start and end."""
    return name if len(name) <= keep else f"{name[:keep // 2]}…{name[-keep // 2:]}"


def _check_file(path: Path) -> None:
    """The checks a user can act on before any decoder opens ``path``: it exists, is a file
    and is not empty; every OS error is an AudioError with its reason."""
    try:
        stat = path.stat()
    except OSError as err:
        raise AudioError(os_reason(err, path)) from None
    if not S_ISREG(stat.st_mode):
        raise AudioError(f"not a file: {_shown(str(path))}")
    if stat.st_size == 0:
        raise AudioError("empty file (0 bytes)")


def _head(path: Path) -> bytes:
    """The file's first bytes, after :func:`_check_file` and the check that it may be read;
    every OS error is an AudioError with its reason."""
    _check_file(path)
    try:
        with open(path, "rb") as handle:
            return handle.read(512)
    except PermissionError:
        raise AudioError("permission denied (the file cannot be read)") from None
    except OSError as err:
        raise AudioError(os_reason(err, path)) from None


def not_audio(head: bytes) -> str | None:
    """Why bytes that no decoder opened are not audio, when it can be told: text, an HTML
    page (a failed download), a Git LFS pointer. None when they may be audio."""
    if head.startswith(_AUDIO_MAGIC) or b"\0" in head[:256]:
        return None
    try:
        text = head[:-8].decode("utf-8") if len(head) > 8 else head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    start = text.lstrip().lower()
    if start.startswith("version https://git-lfs"):
        return "not an audio file (a Git LFS pointer: run git lfs pull)"
    if start.startswith(("<!doctype html", "<html")):
        return "not an audio file (an HTML page, perhaps a failed download)"
    return "not an audio file (looks like text)"


def _check_header(handle: Any) -> None:
    """Reject headers no recording has, and WAV/AIFF data chunks cut short."""
    rate, channels = int(handle.samplerate), int(handle.channels)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"implausible header: sample rate {rate} Hz (a recording has "
                         f"{MIN_SAMPLE_RATE // 1000} kHz to {MAX_SAMPLE_RATE // 1000} kHz)")
    if channels < 1:
        raise AudioError(f"implausible header: {channels} channels")
    truncated = _CHUNK_SHORT.search(handle.extra_info or "")
    if truncated:
        declared, present = int(truncated.group(1)), int(truncated.group(2))
        if declared < _PLACEHOLDER_SIZE and declared - present > 0.01 * declared:
            raise AudioError(f"truncated audio (data chunk declares {declared} bytes, "
                             f"the file holds {present})")
    if int(handle.frames) <= 0:
        raise AudioError("empty audio (the header declares 0 frames)")


def _facts(path: Path) -> dict[str, Any]:
    """Per-file facts found once per process (keyed by path, mtime and size)."""
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _FACTS:
        if len(_FACTS) > 4096:
            _FACTS.clear()
        _FACTS[key] = {}
    return _FACTS[key]


def _count_to_end(handle: Any) -> int:
    """Frames from the current position to the end of the stream, read in fixed blocks."""
    count = 0
    while True:
        block = handle.read(READ_BLOCK, dtype="float32", always_2d=True)
        count += len(block)
        if len(block) < READ_BLOCK:
            return count


def _decodable(handle: Any, path: Path) -> int:
    """The frames that decode: the header's count, or fewer where the stream ends earlier
    (found by reading from ever earlier points near the end; once per file)."""
    facts = _facts(path)
    if "frames" not in facts:
        total = int(handle.frames)
        step = max(CODEC_SLACK, int(handle.samplerate))
        while True:
            start = max(0, total - step)
            try:
                handle.seek(start)
                found = _count_to_end(handle)
            except Exception as err:  # noqa: BLE001 - corrupt or cut compressed streams
                raise AudioError(f"truncated or corrupt audio (cannot reach the end the "
                                 f"header declares: {_one_line(err)})") from err
            if found or start == 0:
                break
            step *= 4
        facts["frames"], facts["header"] = min(total, start + found), total
        handle.seek(0)
    _warn_short(path, facts["header"], facts["frames"], int(handle.samplerate))
    if facts["frames"] == 0:
        raise AudioError("empty audio (no frame decodes)")
    return facts["frames"]


def _warn_short(path: Path, header: int, decoded: int, rate: int) -> None:
    """Say that ``path`` decodes shorter than its header: once per file and process, or,
    inside :func:`collapsed_warnings`, once per file for the block with its count of reads."""
    if header - decoded <= CODEC_SLACK:
        return
    if _NOTES["fd"] is not None:
        os.write(_NOTES["fd"], (json.dumps([str(path), header, decoded, rate]) + "\n").encode())
    elif str(path) not in _WARNED:
        _WARNED.add(str(path))
        log.warning("%s", _short_text(str(path), header, decoded, rate, 1))


def _short_text(path: str, header: int, decoded: int, rate: int, reads: int) -> str:
    times = f" ({reads} windows read)" if reads > 1 else ""
    return (f"{path}: the header declares {header / rate:.2f} s but {decoded / rate:.2f} s "
            f"decode ({100 * (header - decoded) / header:.1f} % less; MP3 headers often "
            f"overstate); using the audio that decodes{times}")


@contextmanager
def collapsed_warnings() -> Iterator[None]:
    """Within the block, here and in processes forked inside it, a file that decodes
    shorter than its header is noted instead of warned about at every window read; at the
    end this process says it once per file, with the count (a file it already named is not
    named again)."""
    if _NOTES["fd"] is not None:  # nested: the outer block reports
        yield
        return
    handle, name = tempfile.mkstemp(prefix="deepfake-detect-notes-")
    os.close(handle)
    _NOTES["fd"] = os.open(name, os.O_WRONLY | os.O_APPEND)
    _NOTES["owner"] = os.getpid()
    try:
        yield
    finally:
        if os.getpid() == _NOTES["owner"]:
            os.close(_NOTES["fd"])
            _NOTES["fd"] = None
            text = Path(name).read_text()
            os.unlink(name)
            _report_notes(text)


def _report_notes(text: str) -> None:
    notes: dict[str, list[Any]] = {}
    for line in text.splitlines():
        path, header, decoded, rate = json.loads(line)
        notes.setdefault(path, [header, decoded, rate, 0])[3] += 1
    for path, (header, decoded, rate, reads) in notes.items():
        if path not in _WARNED:
            _WARNED.add(path)
            log.warning("%s", _short_text(path, header, decoded, rate, reads))


@contextmanager
def _opened(path: Path, probe: bool = True) -> Iterator[tuple[Any, AudioInfo]]:
    """The open soundfile handle and what it holds (``probe``: the frames that decode, else
    the header's count); :class:`AudioError` for every unusable file; ``_NotSoundfile`` when
    libsndfile cannot open it (try the fallback). The first bytes are read only then (to
    say why; an unreadable file fails there with its reason), not for every file opened."""
    _check_file(path)
    try:
        handle = sf.SoundFile(str(path))
    except Exception as err:  # noqa: BLE001 - libsndfile raises several types
        raise _NotSoundfile(not_audio(_head(path)), _one_line(err)) from err
    with handle:
        try:
            _check_header(handle)
            frames = _decodable(handle, path) if probe else int(handle.frames)
            yield handle, AudioInfo(int(handle.samplerate), int(handle.channels), frames)
        except OSError as err:  # a failing disk or share mid-read: this file's reason
            raise AudioError(os_reason(err, path)) from err


class _NotSoundfile(Exception):
    """soundfile cannot open the file at all: try the librosa/audioread fallback, unless the
    bytes are plainly not audio (``verdict``)."""

    def __init__(self, verdict: str | None, reason: str):
        super().__init__(verdict or reason)
        self.verdict, self.reason = verdict, reason


def info(path: str | Path) -> AudioInfo:
    """Sample rate, channels and the header's frame count, after the header checks, without
    decoding (cheap enough to plan the windows of every file of a large dataset). The count
    may overstate what decodes (MP3): a window planned past the end is moved back to end
    where the audio does when it is decoded."""
    path = Path(path)
    try:
        with decoder_stderr(), _opened(path, probe=False) as (_, meta):
            return meta
    except _NotSoundfile as err:
        raise AudioError(f"unreadable audio header ({err.verdict or err.reason})") from None


def describe_file(path: str | Path) -> dict[str, Any]:
    """What a file says about its recording chain, from its header and size: native sample
    rate, channels, duration, container (format), codec (subtype) and average bitrate."""
    path = Path(path)
    try:
        with decoder_stderr(), _opened(path, probe=False) as (handle, meta):
            kind = {"format": str(handle.format), "subtype": str(handle.subtype)}
    except _NotSoundfile as err:
        raise AudioError(f"unreadable audio header ({err.verdict or err.reason})") from None
    duration = meta.frames / meta.sample_rate if meta.sample_rate else 0.0
    size = path.stat().st_size
    return {"sample_rate": meta.sample_rate, "channels": meta.channels,
            "duration_s": float(duration), **kind,
            "bitrate_kbps": 8 * size / duration / 1000 if duration > 0 else 0.0}


def decode(path: str | Path, sample_rate: int, segment: Segment | None = None) -> np.ndarray:
    """Read ``path`` (or one ``segment`` of it) as mono float32 at ``sample_rate``.

    Any input rate and channel count is accepted: channels are averaged and the result is
    resampled (soxr). With a ``segment`` only those frames are decoded when the format allows
    seeking. Raises :class:`AudioError` for every kind of unusable file.
    """
    path = Path(path)
    try:
        with decoder_stderr(), _opened(path) as (handle, meta):
            data = _read_segment(handle, meta, path, segment)
        native_sr = meta.sample_rate
    except _NotSoundfile as err:
        data, native_sr = _read_fallback(path, segment, err)
    wave = data.mean(axis=1) if data.ndim == 2 else data
    check_waveform(wave)
    return resample(wave, native_sr, sample_rate)


def resample(wave: np.ndarray, native_sr: int, sample_rate: int) -> np.ndarray:
    """``wave`` at ``sample_rate`` as float32 (librosa's soxr_hq, length ceil(n * ratio))."""
    if native_sr != sample_rate:
        try:
            wave = librosa.resample(wave, orig_sr=native_sr, target_sr=sample_rate,
                                    res_type="soxr_hq")
        except Exception as err:  # noqa: BLE001
            raise AudioError(f"cannot resample from {native_sr} Hz ({_one_line(err)})") from err
        if wave.size == 0:
            raise AudioError("empty audio after resampling (too few samples)")
    return np.ascontiguousarray(wave, dtype=np.float32)


def _read_segment(handle: Any, meta: AudioInfo, path: Path, segment: Segment | None
                  ) -> np.ndarray:
    """The segment's frames (all of them without one), as (frames, channels) float32."""
    start, count = (0, meta.frames) if segment is None else segment.span(meta.frames,
                                                                          meta.sample_rate)
    if segment is not None and handle.subtype in _FLOAT_SUBTYPES:
        _check_finite_file(handle, path)
    try:
        handle.seek(start)
        data = handle.read(count, dtype="float32", always_2d=True)
    except Exception as err:  # noqa: BLE001 - corrupt or cut compressed streams
        raise AudioError(f"corrupt audio data ({_one_line(err)})") from err
    if count - len(data) > CODEC_SLACK:
        raise AudioError(f"truncated audio (frames {start}-{start + count} should decode; "
                         f"the stream ends after {start + len(data)})")
    return data


def _check_finite_file(handle: Any, path: Path) -> None:
    """Float files can hold NaN/inf anywhere: reject the whole file, not only the windows
    that happen to contain them (remembered per file, so windows do not rescan it)."""
    facts = _facts(path)
    if "finite" not in facts:
        finite = True
        try:
            handle.seek(0)
            for block in handle.blocks(blocksize=READ_BLOCK, dtype="float32", always_2d=True):
                if not np.all(np.isfinite(block)):
                    finite = False
                    break
        except Exception as err:  # noqa: BLE001
            raise AudioError(f"corrupt audio data ({_one_line(err)})") from err
        facts["finite"] = finite
    if not facts["finite"]:
        raise AudioError("audio contains NaN or inf samples")


def _read_fallback(path: Path, segment: Segment | None, err: _NotSoundfile
                   ) -> tuple[np.ndarray, int]:
    """Formats libsndfile cannot open (when an audioread backend such as ffmpeg exists)."""
    if err.verdict:
        raise AudioError(f"unreadable audio: {err.verdict}")
    try:
        with warnings.catch_warnings(), decoder_stderr():
            warnings.simplefilter("ignore")
            wave, native_sr = librosa.load(str(path), sr=None, mono=True)
    except Exception as problem:  # noqa: BLE001
        raise AudioError(f"unreadable audio ({err.reason})") from problem
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


class Stream:
    """A whole file as mono float32 blocks at ``sample_rate``, read and resampled block by
    block (soxr's streaming resampler: bit-identical to :func:`decode`), so that memory does
    not grow with the file. The same checks as :func:`decode`, raised while iterating;
    afterwards ``length`` is the number of samples given."""

    SILENCE = 1e-6
    HOLD = 64  # samples held back until the end, where the length is fixed as librosa does

    def __init__(self, path: str | Path, sample_rate: int, block: int = 4 * READ_BLOCK):
        self.path, self.sample_rate, self.block = Path(path), sample_rate, block
        self.length = 0
        self.native_rate: int | None = None  # the file's own rate, once opened

    def __iter__(self) -> Iterator[np.ndarray]:
        with ExitStack() as stack:
            try:
                with decoder_stderr():
                    handle, meta = stack.enter_context(_opened(self.path))
                    if handle.subtype in _FLOAT_SUBTYPES:
                        _check_finite_file(handle, self.path)
            except _NotSoundfile as err:
                data, self.native_rate = _read_fallback(self.path, None, err)
                yield from self._resampled(iter([data]), self.native_rate)
                return
            self.native_rate = meta.sample_rate
            yield from self._resampled(self._blocks(handle, meta.frames), meta.sample_rate)

    def _blocks(self, handle: Any, frames: int) -> Iterator[np.ndarray]:
        """Mono blocks at the native rate (libmpg123's notes kept off the console)."""
        handle.seek(0)
        position = 0
        while position < frames:
            try:
                with decoder_stderr():
                    data = handle.read(min(self.block, frames - position), dtype="float32",
                                       always_2d=True)
            except Exception as err:  # noqa: BLE001 - corrupt or cut compressed streams
                raise AudioError(f"corrupt audio data ({_one_line(err)})") from err
            if len(data) == 0:
                return
            position += len(data)
            yield data.mean(axis=1)

    def _resampled(self, blocks: Iterator[np.ndarray], native: int) -> Iterator[np.ndarray]:
        stream = (soxr.ResampleStream(native, self.sample_rate, 1, dtype="float32",
                                      quality="HQ") if native != self.sample_rate else None)
        held = np.zeros(0, dtype=np.float32)
        peak, n_in = 0.0, 0
        for block in blocks:
            block = np.ascontiguousarray(block, dtype=np.float32)
            if not block.size:
                continue
            if not np.all(np.isfinite(block)):
                raise AudioError("audio contains NaN or inf samples")
            peak, n_in = max(peak, float(np.max(np.abs(block)))), n_in + len(block)
            held = np.concatenate([held, stream.resample_chunk(block) if stream else block])
            if len(held) > self.HOLD:
                yield from self._give(held[:-self.HOLD])
                held = held[-self.HOLD:]
        if n_in == 0:
            raise AudioError("empty audio (0 samples)")
        if peak < self.SILENCE:
            raise AudioError("silent audio (peak below 1e-6)")
        if stream is not None:
            held = np.concatenate([held, stream.resample_chunk(np.zeros(0, np.float32),
                                                               last=True)])
            want = math.ceil(n_in * self.sample_rate / native) - self.length  # as librosa
            held = np.pad(held, (0, max(0, want - len(held))))[:max(0, want)]
        yield from self._give(held)
        if self.length == 0:
            raise AudioError("empty audio after resampling (too few samples)")

    def _give(self, samples: np.ndarray) -> Iterator[np.ndarray]:
        if len(samples):
            self.length += len(samples)
            yield np.ascontiguousarray(samples, dtype=np.float32)
