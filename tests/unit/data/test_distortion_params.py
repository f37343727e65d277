"""Per-clip distortion parameters and what ``apply`` does with them.

A clip's parameters depend on (seed, clip_id, distortion name) only: different clips, seeds
and distortions get different draws; the same triple gets the same draw in any process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from deepfake_detect.data.distortions import Distortion, Range, apply, clip_rng, draw_params

PITCH = Distortion(name="pitch", pitch=Range(-2.0, 2.0))
TEMPO = Distortion(name="tempo", tempo=Range(0.8, 1.2))
COMBINED = Distortion(name="combined", pitch=Range(-2.0, 2.0), tempo=Range(0.8, 1.2))
CLIPS = [f"clip{i:04d}" for i in range(200)]
SR = 16000
REPO = Path(__file__).resolve().parents[3]
# draw_params(COMBINED, 0, "clip0000") as of commit ae0f450 (pitch, tempo).
PINNED = (-1.4840442932642803, 1.0004903654754969)


def pitches(d: Distortion, seed: int, clips: list[str] = CLIPS) -> np.ndarray:
    return np.array([draw_params(d, seed, clip)["pitch_semitones"] for clip in clips])


def test_each_clip_gets_its_own_draw_spread_over_the_range() -> None:
    values = pitches(PITCH, 0)
    assert len(set(values)) >= 195  # continuous uniform: all distinct, bar a freak
    assert values.min() >= -2.0 and values.max() <= 2.0
    assert values.min() < -1.8 and values.max() > 1.8  # reaches both ends
    assert abs(values.mean()) < 0.3  # uniform on [-2, 2]: mean 0, s.e. of 200 draws ~0.08
    assert 0.9 < values.std() < 1.4  # uniform on [-2, 2]: std 4 / sqrt(12) = 1.15
    tempos = np.array([draw_params(COMBINED, 0, clip)["tempo_rate"] for clip in CLIPS])
    assert len(set(tempos)) >= 195
    assert 0.8 <= tempos.min() < 0.83 and 1.17 < tempos.max() <= 1.2
    assert abs(tempos.mean() - 1.0) < 0.03
    # Pitch and tempo of one clip are two draws, not one number reused.
    both = [draw_params(COMBINED, 0, clip) for clip in CLIPS]
    shift = np.array([p["pitch_semitones"] for p in both])
    assert abs(np.corrcoef(shift, tempos)[0, 1]) < 0.3
    assert not np.allclose((shift + 2) / 4, (tempos - 0.8) / 0.4)


def test_another_seed_gives_other_draws_for_the_same_clip() -> None:
    by_seed = {seed: pitches(PITCH, seed, CLIPS[:50]) for seed in (0, 1, 2)}
    assert not np.any(by_seed[0] == by_seed[1])
    assert not np.any(by_seed[1] == by_seed[2])
    first = [clip_rng(seed, "clip0000", "pitch").uniform() for seed in (0, 1, 2)]
    assert len(set(first)) == 3


def test_another_distortion_name_gives_other_draws() -> None:
    other = Distortion(name="pitch-again", pitch=Range(-2.0, 2.0))
    assert not np.any(pitches(PITCH, 0, CLIPS[:50]) == pitches(other, 0, CLIPS[:50]))
    assert not np.any(pitches(PITCH, 0, CLIPS[:50]) == pitches(COMBINED, 0, CLIPS[:50]))


def test_same_seed_clip_and_distortion_give_the_same_draw_again() -> None:
    assert draw_params(COMBINED, 7, "clip0003") == draw_params(COMBINED, 7, "clip0003")
    assert clip_rng(7, "a", "b").uniform() == clip_rng(7, "a", "b").uniform()


def test_same_draw_in_a_fresh_process() -> None:
    """No state of this process (hash seeds, global rngs, call order) enters a draw."""
    cases = [(0, "clip0000"), (3, "clip0042"), (12345, "song/with spaces.wav")]
    code = ("import json, sys\n"
            "from deepfake_detect.data.distortions import Distortion, Range, draw_params\n"
            "d = Distortion(name='combined', pitch=Range(-2.0, 2.0), tempo=Range(0.8, 1.2),"
            " crop='random')\n"
            "cases = json.loads(sys.argv[1])\n"
            "print(json.dumps([draw_params(d, seed, clip) for seed, clip in reversed(cases)]))")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(cases)], capture_output=True,
                          text=True, timeout=120, cwd=REPO,
                          env=dict(os.environ, PYTHONHASHSEED="random"))
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = list(reversed(json.loads(done.stdout)))
    d = Distortion(name="combined", pitch=Range(-2.0, 2.0), tempo=Range(0.8, 1.2),
                   crop="random")
    mine = [draw_params(d, seed, clip) for seed, clip in cases]
    assert theirs == mine  # exact: json round-trips floats


def test_draws_are_stable_across_versions() -> None:
    """Cached features and logged results carry these draws: changing how they are derived
    must be deliberate (and bump the cache format)."""
    params = draw_params(COMBINED, 0, "clip0000")
    assert params == {"pitch_semitones": pytest.approx(PINNED[0], abs=1e-12),
                      "tempo_rate": pytest.approx(PINNED[1], abs=1e-12)}


def test_choices_draw_only_choices_and_all_of_them() -> None:
    choices = (-2.0, -1.0, 1.0, 2.0)
    d = Distortion(name="steps", pitch=Range(choices=choices))
    counts = Counter(pitches(d, 0))
    assert set(counts) == set(choices)
    assert min(counts.values()) >= 30  # 200 draws over 4 choices: 50 each on average
    rates = Distortion(name="rates", tempo=Range(choices=(0.5, 2.0)))
    drawn = {draw_params(rates, 0, clip)["tempo_rate"] for clip in CLIPS[:50]}
    assert drawn == {0.5, 2.0}


def test_only_the_distortions_parameters_are_drawn() -> None:
    assert draw_params(Distortion(name="base"), 0, "clip0000") == {}
    assert set(draw_params(PITCH, 0, "clip0000")) == {"pitch_semitones"}
    assert set(draw_params(TEMPO, 0, "clip0000")) == {"tempo_rate"}
    assert set(draw_params(COMBINED, 0, "clip0000")) == {"pitch_semitones", "tempo_rate"}


def test_random_crop_draws_a_position_in_0_1() -> None:
    d = Distortion(name="tempo", tempo=Range(0.8, 1.2), crop="random")
    positions = np.array([draw_params(d, 0, clip)["crop_position"] for clip in CLIPS])
    assert positions.min() >= 0.0 and positions.max() < 1.0
    assert positions.min() < 0.05 and positions.max() > 0.95
    assert len(set(positions)) >= 195 and abs(positions.mean() - 0.5) < 0.08
    assert "crop_position" not in draw_params(TEMPO, 0, "clip0000")  # center: nothing to draw


# --- apply -------------------------------------------------------------------------------------


def sine(freq: float, seconds: float = 1.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(int(seconds * SR)) / SR)).astype(
        np.float32)


def peak_hz(wave: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / SR)[np.argmax(spectrum)])


def test_identity_parameters_leave_the_wave_unchanged() -> None:
    wave = sine(440) + np.linspace(-0.1, 0.1, SR, dtype=np.float32)
    out = apply(COMBINED, wave, SR, {"pitch_semitones": 0.0, "tempo_rate": 1.0})
    assert out.dtype == np.float32 and np.array_equal(out, wave)
    assert np.array_equal(apply(Distortion(name="base"), wave, SR, {}), wave)


def test_an_octave_up_moves_440_hz_to_880_hz() -> None:
    wave = sine(440)
    assert peak_hz(wave) == pytest.approx(440, abs=2)
    up = apply(PITCH, wave, SR, {"pitch_semitones": 12.0})
    assert len(up) == len(wave)
    assert peak_hz(up) == pytest.approx(880, abs=10)
    down = apply(PITCH, wave, SR, {"pitch_semitones": -12.0})
    assert peak_hz(down) == pytest.approx(220, abs=10)
    # bins_per_octave: 12 steps of a 24-step octave are half an octave (x sqrt 2).
    quarter = Distortion(name="q", pitch=Range(-24, 24), bins_per_octave=24)
    assert peak_hz(apply(quarter, wave, SR, {"pitch_semitones": 12.0})) == pytest.approx(
        440 * 2 ** 0.5, abs=10)


def test_faster_tempo_keeps_length_and_pitch_and_pads_the_end() -> None:
    wave = sine(440)
    out = apply(TEMPO, wave, SR, {"tempo_rate": 2.0})
    assert len(out) == len(wave)
    # Twice as fast: the stretched half second is followed by zero padding (pad: constant).
    assert np.all(out[SR // 2 + 64:] == 0)
    assert np.abs(out[: SR // 2 - 512]).max() > 0.3
    assert peak_hz(out[: SR // 2]) == pytest.approx(440, abs=10)  # same pitch
    wrap = Distortion(name="tempo", tempo=Range(0.8, 1.2), pad="wrap")
    wrapped = apply(wrap, wave, SR, {"tempo_rate": 2.0})
    assert np.array_equal(wrapped[: SR // 2 - 64], out[: SR // 2 - 64])
    n = int(np.flatnonzero(out)[-1]) + 1  # the stretched part's length
    assert np.array_equal(wrapped[n:], wrapped[: len(wave) - n])  # the start again


@pytest.mark.parametrize("crop", ["start", "center", "random"])
def test_slower_tempo_crops_where_it_says(crop: str) -> None:
    import librosa

    wave = sine(440) * np.linspace(0, 1, SR, dtype=np.float32)  # rising: position shows
    d = Distortion(name="tempo", tempo=Range(0.5, 1.0), crop=crop)
    stretched = librosa.effects.time_stretch(wave, rate=0.5)
    excess = len(stretched) - len(wave)
    start = {"start": 0, "center": excess // 2, "random": int(0.25 * excess)}[crop]
    out = apply(d, wave, SR, {"tempo_rate": 0.5, "crop_position": 0.25})
    assert len(out) == len(wave)
    np.testing.assert_array_equal(out, stretched[start:start + len(wave)])

