"""Decoding real files: any rate and channel count, segments, and every kind of bad audio."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deepfake_detect.data import audio, windows
from deepfake_detect.data.audio import AudioError, Segment
from deepfake_detect.data.clips import Clip
from tests.helpers.audio_data import write_absurd_rate, write_overstated_mp3

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


# --- what the decoder accepts, the reader accepts (issue 16) ---------------------------------


def _written_and_decoded(path: Path, n: int, sr: int, **kwargs) -> tuple[int, int]:
    sf.write(path, sine(n / sr, sr), sr, **kwargs)
    return n, len(sf.read(path, dtype="float32")[0])


@pytest.mark.parametrize("kind,sr", [*((k, sr) for k in ("mp3", "vorbis")
                                        for sr in (16000, 22050, 32000, 44100, 48000)),
                                      ("opus", 16000), ("opus", 48000)])
def test_codec_padding_stays_within_the_slack(tmp_path: Path, kind: str, sr: int) -> None:
    """The figures behind ``audio.CODEC_SLACK`` (docs/DESIGN.md): soundfile's encoders decode
    to the length written; an MP3 whose gapless fields are zeroed keeps LAME's delay and
    padding, which stay within the slack."""
    n = int(7.3 * sr)
    fmt = {"mp3": ("MP3", "MPEG_LAYER_III"), "vorbis": ("OGG", "VORBIS"),
           "opus": ("OGG", "OPUS")}[kind]
    path = tmp_path / f"tone.{kind}"
    written, decoded = _written_and_decoded(path, n, sr, format=fmt[0], subtype=fmt[1])
    assert decoded == written
    if kind == "mp3":
        data = bytearray(path.read_bytes())
        at = data.find(b"LAME")
        data[at + 21:at + 24] = b"\0\0\0"  # encoder delay and padding: unknown
        path.write_bytes(bytes(data))
        padded = len(sf.read(path, dtype="float32")[0])
        assert 0 < padded - written <= audio.CODEC_SLACK
        assert len(audio.decode(path, sr)) == padded


@pytest.mark.parametrize("excess", [0.006, 0.05])
def test_an_mp3_whose_header_overstates_its_length_is_read_whole(tmp_path: Path, caplog,
                                                                  excess: float) -> None:
    """Real MP3s' headers often count more frames than decode: every window of such a file
    reads (the end of the file is where the header's count used to bite), with a warning."""
    path = write_overstated_mp3(tmp_path / "song.mp3", seconds=30.0, excess=excess)
    header, decoded = sf.info(str(path)).frames, len(sf.read(path, dtype="float32")[0])
    assert header - decoded > audio.CODEC_SLACK
    assert audio.info(path).frames == header  # planning reads the header only (cheap)
    with caplog.at_level("WARNING", logger="deepfake_detect"):
        whole = audio.decode(path, 32000)
    assert len(whole) == decoded and "using the audio that decodes" in caplog.text
    cfg = windows.WindowConfig(mode="multi", hop_s=2.5)
    clips = windows.expand(Clip("song.mp3", 1, "s", "gen", str(path)), 4.0, cfg)
    assert len(clips) >= 11
    for segment in [Segment(4.0), Segment(4.0, offset_s=29.0),
                    *(Segment(4.0, offset_s=c.recipe["offset_s"]) for c in clips)]:
        assert len(audio.decode(path, 32000, segment)) == 4 * 32000  # every window whole
    late = audio.decode(path, 32000, Segment(4.0, offset_s=29.0))  # past the end: moved back
    np.testing.assert_allclose(late, whole[-4 * 32000:], atol=1e-6)
    streamed = np.concatenate(list(audio.Stream(path, 32000)))
    np.testing.assert_allclose(streamed, whole, atol=1e-6)  # predict reads it the same


@pytest.mark.parametrize("rate,reason", [(2_147_483_647, "implausible header: sample rate"),
                                         (500, "implausible header: sample rate")])
def test_implausible_headers_are_reasons(tmp_path: Path, rate: int, reason: str) -> None:
    path = write_absurd_rate(tmp_path / "absurd.wav", rate)
    for call in (lambda: audio.decode(path, SR), lambda: audio.info(path),
                 lambda: list(audio.Stream(path, SR))):
        with pytest.raises(AudioError, match=reason):
            call()


def test_a_wav_of_zero_frames_is_empty_audio(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), SR, subtype="PCM_16")
    with pytest.raises(AudioError, match="empty audio"):
        audio.decode(path, SR)


@pytest.mark.parametrize("text,reason", [
    ("hello, this is a text file\n" * 40, "not an audio file (looks like text)"),
    ("<!DOCTYPE html><html><body>404</body></html>\n" * 10, "an HTML page"),
    ("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n", "Git LFS"),
])
@pytest.mark.parametrize("ext", [".mp3", ".wav", ".flac", ".ogg"])
def test_text_named_as_audio_says_what_it_is(tmp_path: Path, text: str, reason: str,
                                             ext: str) -> None:
    path = tmp_path / f"notes{ext}"
    path.write_text(text)
    with pytest.raises(AudioError, match=re.escape(reason)) as err:
        audio.decode(path, SR)
    assert "possibly a pipe" not in str(err.value) and "unreadable audio" in str(err.value)
    with pytest.raises(AudioError, match=re.escape(reason)):
        list(audio.Stream(path, SR))


@pytest.mark.parametrize("native_sr,channels,ext", [(44100, 2, ".wav"), (16000, 1, ".flac"),
                                                   (22050, 2, ".ogg"), (48000, 1, ".wav")])
def test_the_stream_gives_the_samples_of_decoding_at_once(tmp_path: Path, native_sr: int,
                                                         channels: int, ext: str) -> None:
    """Predict streams a file block by block; the samples equal decoding it at once."""
    path = tmp_path / f"song{ext}"
    with sf.SoundFile(path, "w", native_sr, channels) as out:  # libvorbis: in parts
        for second in range(9):
            out.write(sine(1.0, native_sr, 200.0 + 50 * second, channels))
    stream = audio.Stream(path, SR, block=20_000)
    streamed = np.concatenate(list(stream))
    whole = audio.decode(path, SR)
    assert stream.length == len(streamed) == len(whole)
    np.testing.assert_array_equal(streamed, whole)


def test_the_stream_rejects_what_decode_rejects(tmp_path: Path) -> None:
    for name, (write, reason) in BROKEN.items():
        path = tmp_path / name
        write(path)
        with pytest.raises(AudioError, match=re.escape(reason)):
            list(audio.Stream(path, 22050, block=4096))


PERMISSION_CHILD = """
import json, sys
from deepfake_detect.data import audio
from deepfake_detect.data.files import audio_files
from deepfake_detect.data.inputs import find_inputs
root = sys.argv[1]
out = {}
try:
    audio.decode(root + "/locked.wav", 16000)
except audio.AudioError as err:
    out["file"] = str(err)
problems = []
out["listed"] = [p.name for p in audio_files(__import__("pathlib").Path(root), (".wav",),
                                              problems)]
out["problems"] = problems
out["inputs"] = [[i.path, i.error] for i in find_inputs([root])]
print(json.dumps(out))
"""


def test_permission_problems_are_named_and_folders_never_left_out_silently(
        tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from tests.helpers.privileges import bound_by_permissions, skip_reason

    if (reason := skip_reason()) is not None:
        pytest.skip(reason)
    sf.write(tmp_path / "good.wav", sine(1.0, SR), SR)
    sf.write(tmp_path / "locked.wav", sine(1.0, SR), SR)
    (tmp_path / "locked.wav").chmod(0)
    hidden = tmp_path / "sealed"
    hidden.mkdir()
    sf.write(hidden / "inside.wav", sine(1.0, SR), SR)
    hidden.chmod(0)
    try:
        done = subprocess.run([sys.executable, "-c", PERMISSION_CHILD, str(tmp_path)],
                              capture_output=True, text=True, timeout=120,
                              preexec_fn=bound_by_permissions)
    finally:
        hidden.chmod(0o755)
        (tmp_path / "locked.wav").chmod(0o644)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["file"] == "permission denied (the file cannot be read)"
    assert out["listed"] == ["good.wav", "locked.wav"]
    assert [(p["path"], "permission denied" in p["reason"]) for p in out["problems"]] == [
        (str(hidden), True)]
    errors = {Path(path).name: error for path, error in out["inputs"]}
    assert errors["good.wav"] == "" and "permission denied" in errors["sealed"]
