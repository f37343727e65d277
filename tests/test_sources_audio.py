"""Decoding real files: any rate and channel count, segments, and every kind of bad audio."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deepfake_detect.data import audio, windows
from deepfake_detect.data.audio import AudioError, Segment
from deepfake_detect.data.clips import Clip

SR = 16000


def sine(seconds: float, sr: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    left = 0.3 * np.sin(2 * np.pi * freq * t)
    if channels == 1:
        return left.astype(np.float32)
    return np.stack([left, 0.5 * left], axis=1).astype(np.float32)


def peak_hz(wave: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    return float(np.fft.rfftfreq(len(wave), 1 / sr)[np.argmax(spectrum)])


@pytest.mark.parametrize("ext", [".wav", ".flac", ".ogg"])
@pytest.mark.parametrize("native_sr", [16000, 22050, 44100])
@pytest.mark.parametrize("channels", [1, 2])
def test_any_rate_and_channel_count_becomes_mono_at_the_feature_rate(
        tmp_path: Path, ext: str, native_sr: int, channels: int) -> None:
    path = tmp_path / f"tone{ext}"
    sf.write(path, sine(1.5, native_sr, channels=channels), native_sr)
    wave = audio.decode(path, SR)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 1.5 * SR) <= 2
    assert peak_hz(wave, SR) == pytest.approx(440.0, abs=2.0)
    expected_peak = 0.3 * (0.75 if channels == 2 else 1.0)  # stereo is averaged
    assert np.max(np.abs(wave)) == pytest.approx(expected_peak, rel=0.1)


def ramp_file(tmp_path: Path, seconds: float, sr: int = SR, ext: str = ".wav") -> Path:
    """A float WAV whose sample n holds n / len: a decoded segment shows where it came from."""
    path = tmp_path / f"ramp{ext}"
    n = int(seconds * sr)
    sf.write(path, (np.arange(n) / n).astype(np.float32), sr, subtype="FLOAT")
    return path


def test_segment_decodes_only_the_requested_window(tmp_path: Path) -> None:
    path = ramp_file(tmp_path, 10.0)
    full = audio.decode(path, SR)
    assert len(full) == 10 * SR
    at_two = audio.decode(path, SR, Segment(1.0, offset_s=2.0))
    np.testing.assert_array_equal(at_two, full[2 * SR:3 * SR])
    centred = audio.decode(path, SR, Segment(1.0, offset_s=None))
    np.testing.assert_array_equal(centred, full[(9 * SR) // 2:(9 * SR) // 2 + SR])
    # An offset past the last full window is moved back so the window ends with the file.
    late = audio.decode(path, SR, Segment(1.0, offset_s=9.7))
    np.testing.assert_array_equal(late, full[-SR:])


def test_segment_of_a_resampled_compressed_file(tmp_path: Path) -> None:
    path = tmp_path / "long.ogg"
    sf.write(path, sine(6.0, 44100, freq=1000.0, channels=2), 44100)
    wave = audio.decode(path, SR, Segment(2.0, offset_s=3.0))
    assert abs(len(wave) - 2 * SR) <= 1
    assert peak_hz(wave, SR) == pytest.approx(1000.0, abs=2.0)


def test_short_files_are_padded_or_dropped(tmp_path: Path) -> None:
    path = tmp_path / "short.wav"
    sf.write(path, sine(0.5, 22050), 22050)
    padded = audio.decode(path, SR, Segment(1.0, short="pad"))
    assert abs(len(padded) - SR // 2) <= 1  # whole file; the features step pads it
    with pytest.raises(AudioError, match=r"shorter than the window \(0\.50 s < 1\.00 s\)"):
        audio.decode(path, SR, Segment(1.0, short="drop"))


def _write_random(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _write_empty(path: Path) -> None:
    path.write_bytes(b"")


def _write_silent(path: Path) -> None:
    sf.write(path, np.zeros(SR, dtype=np.float32), SR)


def _write_truncated(path: Path) -> None:
    sf.write(path, sine(2.0, SR), SR, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _write_header_only(path: Path) -> None:
    sf.write(path, sine(1.0, SR), SR, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:44])


def _write_nan(path: Path) -> None:
    wave = sine(1.0, SR)
    wave[100:110] = np.nan
    sf.write(path, wave, SR, subtype="FLOAT")


def _write_inf(path: Path) -> None:
    wave = sine(1.0, SR)
    wave[5] = np.inf
    sf.write(path, wave, SR, subtype="FLOAT")


def _write_text(path: Path) -> None:
    path.write_text("this is not audio\n" * 100)


def _write_truncated_flac(path: Path) -> None:
    sf.write(path.with_suffix(".tmp.flac"), np.random.default_rng(1).uniform(
        -0.5, 0.5, 3 * SR).astype(np.float32), SR)
    data = path.with_suffix(".tmp.flac").read_bytes()
    path.with_suffix(".tmp.flac").unlink()
    path.write_bytes(data[: len(data) // 2])


def _write_truncated_ogg(path: Path) -> None:
    sf.write(path, sine(3.0, SR), SR)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BROKEN = {
    "random.wav": (_write_random, "unreadable audio"),
    "empty.wav": (_write_empty, "empty file (0 bytes)"),
    "silent.wav": (_write_silent, "silent audio"),
    "truncated.wav": (_write_truncated, "truncated audio"),
    "header_only.wav": (_write_header_only, "truncated audio"),
    "nan.wav": (_write_nan, "NaN or inf"),
    "inf.wav": (_write_inf, "NaN or inf"),
    "text.flac": (_write_text, "unreadable audio"),
    "truncated.flac": (_write_truncated_flac, "corrupt audio"),
    "truncated.ogg": (_write_truncated_ogg, "unreadable audio"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
@pytest.mark.parametrize("segment", [None, Segment(0.5, offset_s=0.0), Segment(0.5)])
def test_every_kind_of_bad_audio_raises_audio_error(tmp_path: Path, name: str,
                                                    segment: Segment | None) -> None:
    write, reason = BROKEN[name]
    path = tmp_path / name
    write(path)
    with pytest.raises(AudioError) as err:
        audio.decode(path, 22050, segment)
    assert type(err.value) is AudioError
    message = str(err.value)
    assert reason in message
    assert "\n" not in message


def test_missing_file_and_directory_raise_audio_error(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="file not found"):
        audio.decode(tmp_path / "nope.wav", SR)
    (tmp_path / "folder.wav").mkdir()
    with pytest.raises(AudioError, match="not a file"):
        audio.decode(tmp_path / "folder.wav", SR)


def test_info_reads_the_header_and_rejects_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / "ok.flac"
    sf.write(path, sine(2.0, 22050, channels=2), 22050)
    meta = audio.info(path)
    assert (meta.sample_rate, meta.channels, meta.frames) == (22050, 2, 44100)
    assert meta.duration == pytest.approx(2.0)
    _write_random(tmp_path / "bad.wav")
    with pytest.raises(AudioError, match="unreadable audio header"):
        audio.info(tmp_path / "bad.wav")


def test_streamed_wav_with_placeholder_sizes_is_not_truncated(tmp_path: Path) -> None:
    """ffmpeg writing to a pipe leaves 0xFFFFFFFF as the data size: a valid file."""
    path = tmp_path / "streamed.wav"
    sf.write(path, sine(1.0, SR), SR, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[4:8] = struct.pack("<I", 0xFFFFFFFF)
    data[40:44] = struct.pack("<I", 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    assert len(audio.decode(path, SR)) == SR


def test_multi_window_offsets() -> None:
    cfg = windows.WindowConfig(mode="multi")
    assert windows.offsets(10.0, 4.0, cfg) == [0.0, 4.0]
    assert windows.offsets(10.0, 4.0, windows.WindowConfig(mode="multi", hop_s=2.0)) == [
        0.0, 2.0, 4.0, 6.0]
    limited = windows.WindowConfig(mode="multi", hop_s=1.0, max_per_file=3, offset_s=1.0)
    assert windows.offsets(30.0, 4.0, limited) == [1.0, 2.0, 3.0]
    assert windows.offsets(3.0, 4.0, cfg) == [0.0]  # shorter than a window: one (padded)
    late = windows.WindowConfig(mode="multi", offset_s=8.0)
    assert windows.offsets(10.0, 4.0, late) == [6.0]  # moved back to fit
    assert windows.offsets(8.0, 4.0, cfg) == [0.0, 4.0]  # exact fit keeps the last window


def test_multi_expansion_uses_headers_and_keeps_unreadable_files_as_one_clip(
        tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    sf.write(good, sine(5.0, 22050), 22050)
    _write_random(tmp_path / "bad.wav")
    cfg = windows.WindowConfig(mode="multi", hop_s=1.5)
    clips = windows.expand(Clip("good.wav", 1, "g", "gen", str(good)), 2.0, cfg)
    assert [c.clip_id for c in clips] == ["good.wav#w0", "good.wav#w1", "good.wav#w2"]
    assert [c.recipe["offset_s"] for c in clips] == [0.0, 1.5, 3.0]
    assert {c.group for c in clips} == {"g"}
    bad = windows.expand(Clip("bad.wav", 0, "b", "human", str(tmp_path / "bad.wav")), 2.0,
                         cfg)
    assert [c.clip_id for c in bad] == ["bad.wav#w0"]
    centre = windows.expand(Clip("good.wav", 1, "g", "gen", str(good)), 2.0,
                            windows.WindowConfig())
    assert [(c.clip_id, c.recipe["offset_s"]) for c in centre] == [("good.wav", None)]
