"""The embedded synthetic benchmark: determinism, pairing, validation, decoder fingerprint."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from deepfake_detect.config import build
from deepfake_detect.data.synthetic import (
    GENERATORS,
    HUMAN,
    SyntheticConfig,
    decode,
    list_clips,
    render,
)
from deepfake_detect.errors import ConfigError

SR = 16000


def tiny(**overrides) -> SyntheticConfig:
    return SyntheticConfig(**{"n_clips": 6, "duration": 1.0, **overrides})


def test_clips_are_balanced_and_paired_by_composition():
    cfg = tiny(n_clips=12)
    clips = list_clips(cfg)
    assert len(clips) == 12
    assert Counter(c.label for c in clips) == {0: 6, 1: 6}
    assert len({c.clip_id for c in clips}) == 12
    by_group: dict[str, list[int]] = {}
    for clip in clips:
        by_group.setdefault(clip.group, []).append(clip.label)
        assert (clip.generator == HUMAN) == (clip.label == 0)
        assert clip.clip_id == f"{clip.group}-{clip.generator}"
        assert clip.path is None
        json.dumps(clip.recipe)  # plain values only
    assert all(sorted(labels) == [0, 1] for labels in by_group.values())
    assert {c.generator for c in clips if c.label == 1} == set(GENERATORS)


def test_clip_list_is_deterministic_from_the_seed():
    same = [(c, c.recipe) for c in list_clips(tiny())]
    assert same == [(c, c.recipe) for c in list_clips(tiny())]
    other = [c.recipe for c in list_clips(tiny(seed=1))]
    assert [r for _, r in same] != other


def test_render_shape_dtype_and_peak():
    cfg = tiny(duration=1.25)
    for clip in list_clips(cfg)[:4]:
        audio = render(clip, cfg)
        assert audio.shape == (20000,)
        assert audio.dtype == np.float32
        assert np.all(np.isfinite(audio))
        assert 0.05 < np.max(np.abs(audio)) <= 1.0


def test_render_is_bit_identical_for_a_seed_and_differs_across_seeds():
    first, again, other = (list_clips(tiny(seed=s))[:2] for s in (0, 0, 1))
    for a, b, c in zip(first, again, other, strict=True):
        assert np.array_equal(render(a, tiny()), render(b, tiny(seed=0)))
        assert not np.array_equal(render(a, tiny()), render(c, tiny(seed=1)))


def test_only_ai_clips_depend_on_artifact_strength():
    clean, strong = tiny(artifact_strength=0.0), tiny(artifact_strength=2.0)
    for clip in list_clips(clean)[:4]:
        same = np.array_equal(render(clip, clean), render(clip, strong))
        assert same == (clip.label == 0)


@pytest.mark.parametrize(("key", "value"), [
    ("n_clips", 3), ("n_clips", 0), ("duration", 0.0), ("sample_rate", 4000),
    ("seed", -1), ("artifact_strength", -0.5), ("generators", ()),
    ("generators", ("dec_2x4x4", "wavenet")), ("speed_variation", 0.5),
    ("speed_variation", -0.1),
])
def test_invalid_config_names_the_key(key, value):
    with pytest.raises(ConfigError) as err:
        SyntheticConfig(**{key: value})
    assert err.value.key == key
    if key == "generators":
        assert "dec_2x4x4" in str(err.value)  # lists the allowed names
    with pytest.raises(ConfigError) as err:  # as the config group builds it
        build(SyntheticConfig, {key: value}, "data.source")
    assert err.value.key == f"data.source.{key}"


def test_generators_from_a_list_and_round_robin():
    cfg = tiny(n_clips=8, generators=["dec_8x4", "dec_2x2x8"])
    assert cfg.generators == ("dec_8x4", "dec_2x2x8")
    ai = [c.generator for c in list_clips(cfg) if c.label == 1]
    assert ai == ["dec_8x4", "dec_2x2x8"] * 2


def test_decoder_keeps_the_full_band():
    noise = np.random.default_rng(0).normal(size=SR)
    decoded = decode(noise, "dec_2x4x4", strength=1.0)
    high = np.abs(np.fft.rfft(noise))[6000:] ** 2
    high_decoded = np.abs(np.fft.rfft(decoded))[6000:] ** 2
    assert high_decoded.sum() / high.sum() == pytest.approx(1.0, abs=0.02)
    assert np.array_equal(decode(noise, "dec_2x4x4", strength=0.0), noise)


def _line_excess(audio: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Peak power within a bin of each frequency over its neighbourhood's median (dB)."""
    power = np.abs(np.fft.rfft(audio * np.hanning(len(audio)))) ** 2
    bins = np.rint(np.asarray(freqs) * len(audio) / SR).astype(int)
    peak = np.stack([power[bins - 1], power[bins], power[bins + 1]]).max(axis=0)
    offsets = np.r_[-15:-3, 4:16]
    floor = np.median(power[bins[:, None] + offsets], axis=1)
    return 10 * np.log10(peak / floor)


@pytest.mark.parametrize("generator", sorted(GENERATORS))
def test_decoder_imprints_lines_at_multiples_of_sr_over_period(generator):
    spacing = SR / GENERATORS[generator].period
    on = np.arange(1, GENERATORS[generator].period // 2) * spacing
    off = on + spacing / 2
    strong = tiny(n_clips=2, generators=(generator,), artifact_strength=100.0)
    clean = tiny(n_clips=2, generators=(generator,), artifact_strength=0.0)
    human, ai = list_clips(strong)
    audio = {"ai": render(ai, strong), "human": render(human, strong),
             "clean": render(ai, clean)}  # the same AI rendition without the decoder
    excess = {name: _line_excess(a, on) - _line_excess(audio["human"], on)
              for name, a in audio.items()}
    # Lines at several multiples of sr/period stand out in the AI clip, not in the human one ...
    assert np.sum(excess["ai"] > 10) >= 3
    assert np.mean(excess["ai"]) > 5
    # ... nor in between the multiples, nor in the same rendition without the decoder.
    between = _line_excess(audio["ai"], off) - _line_excess(audio["human"], off)
    assert np.mean(between) < 3
    assert np.mean(excess["clean"]) < 3


def _line_near(audio: np.ndarray, low: float, high: float, duration: float) -> float:
    """Frequency (Hz) of the strongest spectral peak between low and high."""
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    freqs = np.fft.rfftfreq(len(audio), 1 / SR)
    band = (freqs >= low) & (freqs <= high)
    return float(freqs[band][np.argmax(spectrum[band])])


def test_speed_variation_moves_the_decoder_lines_within_its_range():
    # Strength s minus strength 0 of the same rendition leaves the decoder's imprint alone;
    # its 2 kHz line (a multiple of sr / P for every stride chain) moves with the speed.
    clip = next(c for c in list_clips(tiny(duration=4.0)) if c.generator == "dec_2x4x4")
    lines = {}
    for variation in (0.0, 0.1):
        imprint = [render(clip, tiny(duration=4.0, speed_variation=variation,
                                     artifact_strength=strength)).astype(np.float64)
                   for strength in (0.0, 40.0)]
        lines[variation] = _line_near(imprint[1] - imprint[0], 1700, 2300, 4.0)
        again = render(clip, tiny(duration=4.0, speed_variation=variation,
                                  artifact_strength=40.0))
        assert np.array_equal(again, imprint[1].astype(np.float32))  # deterministic
        assert len(again) == 4 * SR
    assert lines[0.0] == pytest.approx(2000, abs=1)
    assert 1800 <= lines[0.1] <= 2200 and abs(lines[0.1] - 2000) > 1
