"""The embedded synthetic benchmark: offline, deterministic from a seed, no downloads.

Each *composition* (key, mode, tempo, chords, bass line, melody, drum pattern, timbres) is
rendered twice: once as a *human* clip (label 0) and once through a simulated neural decoder
(label 1). Both renditions use the same composer and draw their own *nuisance* from the same
distribution -- humanised timing and dynamics, tuning, room reverb, EQ tilt and high shelf,
hi-hat brightness, noise-floor level and colour, overall loudness -- so global per-band
statistics vary a lot within each class and style alone cannot separate the classes.

The simulated decoder
---------------------
Real codec/vocoder decoders bring a low-rate latent back to audio through transposed
convolutions (zero-stuffing by a stride, then a kernel). Afchar et al. ("A Fourier Explanation
of AI-music Artifacts", ISMIR 2025) show that such a chain imprints a periodic structure of
period ``P = prod(strides)`` output samples: fixed-frequency peaks at multiples of
``sample_rate / P`` and images of the content around them.

Here the latent is the full-rate signal split into its ``P`` polyphase components (``P``
channels at ``sample_rate / P``), which carries the full band, as a real latent does through
its channels. This is deliberate: decimating to a true low-rate latent removes the high band
and makes the task trivial (the probe in DESIGN.md measured 1.00 for a logistic regression).
Decoding interleaves the channels stage by stage, so the content passes through unchanged
except for what the stages imprint on it:

* every stage's phases have slightly different gains (kernel taps that do not sum alike over
  the ``stride`` phases): the output is the content times a periodic gain ``1 + e[n % P]``,
  which mirrors the content into images around multiples of ``sample_rate / P``, time-locked
  to note onsets;
* every stage adds a per-phase bias: a periodic offset ``b[n % P]``, i.e. constant lines at
  multiples of ``sample_rate / P``.

The shapes of ``e`` and ``b`` are the response of the generator's actual transposed-convolution
chain (seeded kernels, one per stage) to a constant latent, so each generator has its own
fingerprint: later stages smooth what earlier ones imprint, and the kernel size decides how
uneven the phases are. The patterns are scaled to a fixed RMS per generator times
``artifact_strength``; 0 leaves AI clips with no artifact at all.
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass

import numpy as np
from scipy import signal

from deepfake_detect.config import require
from deepfake_detect.data.clips import Clip

HUMAN = "human"
# Bump whenever rendering changes: it is part of the feature-cache key, so stale audio is
# never reused.
SYNTHESIS_VERSION = 2


@dataclass(frozen=True)
class DecoderSpec:
    """A simulated decoder: transposed-convolution stages, latent to audio.

    ``mismatch``: RMS of the periodic gain deviation ``e`` at strength 1. ``bias``: RMS of the
    periodic offset ``b`` at strength 1, relative to a unit-RMS signal.
    """

    strides: tuple[int, ...]
    kernel_sizes: tuple[int, ...]
    mismatch: float = 0.0016
    bias: float = 0.0008

    @property
    def period(self) -> int:
        """Output samples per latent frame: the period of the imprinted pattern."""
        return math.prod(self.strides)


GENERATORS: dict[str, DecoderSpec] = {
    "dec_2x4x4": DecoderSpec(strides=(2, 4, 4), kernel_sizes=(4, 8, 8)),
    "dec_4x4x2": DecoderSpec(strides=(4, 4, 2), kernel_sizes=(8, 8, 3), mismatch=0.002,
                             bias=0.0005),
    "dec_8x4": DecoderSpec(strides=(8, 4), kernel_sizes=(16, 7), mismatch=0.0012, bias=0.0012),
    "dec_2x2x8": DecoderSpec(strides=(2, 2, 8), kernel_sizes=(3, 4, 16)),
    "dec_5x4x2": DecoderSpec(strides=(5, 4, 2), kernel_sizes=(10, 8, 5), bias=0.001),
}


@dataclass(frozen=True)
class SyntheticConfig:
    """The synthetic source: ``n_clips`` clips, half human, half AI (one pair per composition).

    Invalid values raise ``ConfigError`` naming the field (``n_clips``);
    ``deepfake_detect.config.build(SyntheticConfig, node, "data.source")`` prefixes the path.
    """

    n_clips: int = 400
    duration: float = 4.0
    sample_rate: int = 16000
    seed: int = 0
    artifact_strength: float = 1.0
    generators: tuple[str, ...] = tuple(GENERATORS)
    speed_variation: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "generators", tuple(self.generators))
        require(isinstance(self.n_clips, int) and self.n_clips >= 2 and self.n_clips % 2 == 0,
                 "n_clips", f"must be an even integer >= 2, got {self.n_clips!r}")
        require(self.duration > 0, "duration", f"must be > 0, got {self.duration!r}")
        require(isinstance(self.sample_rate, int) and self.sample_rate >= 8000,
                 "sample_rate", f"must be an integer >= 8000, got {self.sample_rate!r}")
        require(isinstance(self.seed, int) and self.seed >= 0, "seed",
                 f"must be an integer >= 0, got {self.seed!r}")
        require(self.artifact_strength >= 0, "artifact_strength",
                 f"must be >= 0, got {self.artifact_strength!r}")
        require(0 <= self.speed_variation < 0.5, "speed_variation",
                 f"must be in [0, 0.5), got {self.speed_variation!r}")
        allowed = ", ".join(GENERATORS)
        require(len(self.generators) > 0, "generators", f"must not be empty; allowed: {allowed}")
        unknown = [g for g in self.generators if g not in GENERATORS]
        require(not unknown, "generators", f"unknown {unknown}; allowed: {allowed}")

    @property
    def n_samples(self) -> int:
        """Samples per clip."""
        return int(round(self.duration * self.sample_rate))


def list_clips(cfg: SyntheticConfig) -> list[Clip]:
    """Deterministic clip list (a human and an AI clip per composition); renders no audio."""
    clips = []
    for index in range(cfg.n_clips // 2):
        comp_seed, human_seed, ai_seed = np.random.SeedSequence([cfg.seed, index]).generate_state(3)
        group = f"comp{index:04d}"
        generator = cfg.generators[index % len(cfg.generators)]
        for label, gen, rendition_seed in ((0, HUMAN, human_seed), (1, generator, ai_seed)):
            recipe = {"composition": index, "composition_seed": int(comp_seed),
                      "rendition_seed": int(rendition_seed), "generator": gen}
            clips.append(Clip(clip_id=f"{group}-{gen}", label=label, group=group,
                              generator=gen, recipe=recipe))
    return clips


def render(clip: Clip, cfg: SyntheticConfig) -> np.ndarray:
    """Float32 mono waveform, ``cfg.n_samples`` long, peak <= 1, deterministic from the recipe."""
    recipe = clip.recipe
    sr, n = cfg.sample_rate, cfg.n_samples
    # composition -> performance -> room -> EQ -> [decoder] -> noise floor -> loudness
    speed, duration = 1.0, cfg.duration
    if cfg.speed_variation > 0:  # its own stream: the other draws stay as they were
        speed_rng = np.random.default_rng([recipe["rendition_seed"], 7])
        speed = speed_rng.uniform(1 - cfg.speed_variation, 1 + cfg.speed_variation)
        duration *= 1 + cfg.speed_variation
        n = int(math.ceil(duration * sr))
    composition = _compose(recipe["composition_seed"], duration)
    rng = np.random.default_rng(recipe["rendition_seed"])
    mix = _perform(composition, rng, sr, n)
    mix = _room(mix, rng, sr)
    mix = _equalise(mix, rng, sr)
    mix /= np.sqrt(np.mean(mix**2)) + 1e-12
    if recipe["generator"] != HUMAN:
        mix = decode(mix, recipe["generator"], cfg.artifact_strength)
    mix = mix + _noise_floor(rng, sr, n)
    if speed != 1.0:  # played back faster or slower: every frequency (and line) moves by speed
        import librosa

        mix = librosa.resample(mix, orig_sr=sr, target_sr=sr / speed)[: cfg.n_samples]
    peak_db = rng.uniform(-20.0, -0.5)
    mix *= 10 ** (peak_db / 20) / (np.max(np.abs(mix)) + 1e-12)
    return mix.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# The simulated decoder


def decode(audio: np.ndarray, generator: str, strength: float = 1.0) -> np.ndarray:
    """Imprint ``generator``'s periodic gain mismatch and bias on ``audio`` (scaled by strength)."""
    if generator not in GENERATORS:
        raise ValueError(f"unknown generator {generator!r}; known: {', '.join(GENERATORS)}")
    spec = GENERATORS[generator]
    if strength == 0:
        return audio.copy()
    gain, bias = _decoder_patterns(generator)
    phase = np.arange(len(audio)) % spec.period
    scale_gain, scale_bias = strength * spec.mismatch, strength * spec.bias
    return audio * (1.0 + scale_gain * gain[phase]) + scale_bias * bias[phase]


@functools.cache
def _decoder_patterns(generator: str) -> tuple[np.ndarray, np.ndarray]:
    """Zero-mean, unit-RMS gain and bias patterns over one period of ``generator``'s chain."""
    spec = GENERATORS[generator]
    rng = np.random.default_rng(zlib.crc32(generator.encode()))
    gain, offset = np.ones(16), np.zeros(16)
    for stride, size in zip(spec.strides, spec.kernel_sizes, strict=True):
        kernel = _stage_kernel(stride, size, rng)
        phase_bias = rng.normal(0.0, 1.0, stride)
        gain = _transposed_conv(gain, stride, kernel)
        offset = _transposed_conv(offset, stride, kernel)
        offset += phase_bias[np.arange(len(offset)) % stride]
    start = (len(gain) // 2) // spec.period * spec.period
    window = slice(start, start + spec.period)
    patterns = _unit(gain[window] / gain[window].mean()), _unit(offset[window])
    for pattern in patterns:
        pattern.setflags(write=False)  # cached: shared by every call
    return patterns


def _stage_kernel(stride: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """An interpolating kernel (Hann-shaped, ``stride`` gain) with seeded 'learned' deviations."""
    kernel = np.hanning(size + 2)[1:-1]
    kernel *= stride / kernel.sum()
    return kernel * (1.0 + rng.normal(0.0, 0.2, size))


def _transposed_conv(x: np.ndarray, stride: int, kernel: np.ndarray) -> np.ndarray:
    """Zero-stuff ``x`` by ``stride`` and convolve with ``kernel`` (a 1-channel ConvTranspose1d)."""
    stuffed = np.zeros(len(x) * stride)
    stuffed[::stride] = x
    return np.convolve(stuffed, kernel)


def _unit(pattern: np.ndarray) -> np.ndarray:
    centred = pattern - pattern.mean()
    rms = np.sqrt(np.mean(centred**2))
    return centred / rms if rms > 1e-12 else np.zeros_like(centred)


# ---------------------------------------------------------------------------------------------
# The composer: everything shared by the two renditions of a composition

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
}


@dataclass(frozen=True)
class _Timbre:
    n_partials: int
    slope: float  # partial amplitude ~ h ** -slope
    even_gain: float  # even partials relative to odd ones
    attack: float  # seconds
    decay: float  # seconds, time constant of the fundamental
    damping: float  # extra decay rate (1/s) per partial number
    release: float  # seconds
    level: float


@dataclass(frozen=True)
class _Part:
    onset: np.ndarray  # seconds
    length: np.ndarray  # seconds
    pitch: np.ndarray  # MIDI note numbers
    velocity: np.ndarray  # 0..1
    timbre: _Timbre


@dataclass(frozen=True)
class _Drums:
    kick: np.ndarray  # onset times, seconds
    snare: np.ndarray
    hat: np.ndarray
    level: float
    kick_pitch: float  # Hz


@dataclass(frozen=True)
class _Composition:
    parts: tuple[_Part, ...]
    drums: _Drums


@dataclass(frozen=True)
class _Harmony:
    """Key, mode, tempo grid and chord roots (scale degrees, one per chord)."""

    tonic: int
    scale: tuple[int, ...]
    step: float  # seconds per sixteenth note
    n_steps: int
    chord_steps: int
    roots: np.ndarray

    def midi(self, degree: np.ndarray, octave: int) -> np.ndarray:
        """MIDI note numbers of scale degrees (0 = tonic) counted from ``octave``."""
        degree = np.asarray(degree)
        return (12 * (octave + 1 + degree // 7) + self.tonic
                + np.asarray(self.scale)[degree % 7]).astype(float)

    def root_at(self, steps: np.ndarray) -> np.ndarray:
        """The chord root sounding at each grid step."""
        return self.roots[np.asarray(steps) // self.chord_steps]


def _compose(seed: int, duration: float) -> _Composition:
    """A short piece: chords, bass, melody and a drum pattern in a random key, mode and tempo."""
    rng = np.random.default_rng(seed)
    step = 60.0 / rng.uniform(70, 150) / 4
    n_steps = int(np.ceil(duration / step)) + 1
    chord_steps = int(rng.choice([8, 16]))
    roots = rng.choice([0, 1, 2, 3, 4, 5], size=n_steps // chord_steps + 1)
    roots[0] = 0
    harmony = _Harmony(tonic=int(rng.integers(0, 12)), scale=SCALES[rng.choice(list(SCALES))],
                       step=step, n_steps=n_steps, chord_steps=chord_steps, roots=roots)
    parts = (_chords(rng, harmony), _bass(rng, harmony), _melody(rng, harmony))
    return _Composition(parts=parts, drums=_drum_pattern(rng, n_steps, step))


def _timbre(rng: np.random.Generator, partials: tuple[int, int], level: float) -> _Timbre:
    return _Timbre(
        n_partials=int(rng.integers(*partials)), slope=rng.uniform(0.7, 2.2),
        even_gain=rng.uniform(0.2, 1.0), attack=rng.uniform(0.003, 0.05),
        decay=rng.uniform(0.3, 2.0), damping=rng.uniform(0.0, 3.0),
        release=rng.uniform(0.03, 0.2), level=level * rng.uniform(0.6, 1.0))


def _chords(rng: np.random.Generator, h: _Harmony) -> _Part:
    """Sustained triads (sometimes sevenths), one per chord."""
    stacks = [[r, r + 2, r + 4] + ([r + 6] if rng.random() < 0.3 else []) for r in h.roots]
    pitch = np.concatenate([h.midi(np.array(s), 3) for s in stacks])
    onset = np.concatenate([np.full(len(s), i * h.chord_steps * h.step)
                            for i, s in enumerate(stacks)])
    return _Part(onset=onset, length=np.full(len(pitch), h.chord_steps * h.step * 0.95),
                 pitch=pitch, velocity=np.full(len(pitch), 0.5),
                 timbre=_timbre(rng, (3, 9), level=0.35))


def _bass(rng: np.random.Generator, h: _Harmony) -> _Part:
    """Roots (sometimes fifths) on every chord change plus random eighth notes."""
    grid = np.arange(h.n_steps)
    extra = (grid % 2 == 0) & (rng.random(h.n_steps) < rng.uniform(0.1, 0.5))
    steps = np.flatnonzero((grid % h.chord_steps == 0) | extra)
    degree = h.root_at(steps) + np.where(rng.random(len(steps)) < 0.2, 4, 0)
    return _Part(onset=steps * h.step, length=np.diff(steps, append=h.n_steps) * h.step,
                 pitch=h.midi(degree, 1), velocity=rng.uniform(0.6, 1.0, len(steps)),
                 timbre=_timbre(rng, (3, 8), level=0.8))


def _melody(rng: np.random.Generator, h: _Harmony) -> _Part:
    """A random walk over the scale around the chord roots, on a 16th or 8th grid."""
    candidates = np.arange(0, h.n_steps, int(rng.choice([1, 2])))
    steps = candidates[rng.random(len(candidates)) < rng.uniform(0.3, 0.7)]
    if len(steps) == 0:
        steps = candidates[:1]
    walk = np.cumsum(rng.choice([-2, -1, -1, 0, 1, 1, 2], size=len(steps)))
    degree = np.clip(h.root_at(steps) + walk, -3, 12)
    gaps = np.diff(steps, append=h.n_steps) * h.step
    return _Part(onset=steps * h.step, length=gaps * rng.uniform(0.5, 1.0),
                 pitch=h.midi(degree + 7, 3), velocity=rng.uniform(0.5, 1.0, len(steps)),
                 timbre=_timbre(rng, (4, 13), level=0.5))


def _drum_pattern(rng: np.random.Generator, n_steps: int, step: float) -> _Drums:
    pos = np.arange(n_steps) % 16
    kick = (pos % 8 == 0) | (rng.random(n_steps) < 0.12) & (pos % 2 == 0)
    snare = (pos % 8 == 4) & (rng.random(n_steps) < 0.95)
    hat = (pos % int(rng.choice([1, 2])) == 0) & (rng.random(n_steps) < 0.85)
    present = rng.random() < 0.85
    return _Drums(kick=np.flatnonzero(kick) * step, snare=np.flatnonzero(snare) * step,
                  hat=np.flatnonzero(hat) * step, level=0.7 * present * rng.uniform(0.5, 1.0),
                  kick_pitch=rng.uniform(45, 70))


# ---------------------------------------------------------------------------------------------
# A performance: everything drawn anew for each rendition (identically for both classes)


def _perform(comp: _Composition, rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Humanised dry mix of all parts and drums."""
    out = np.zeros(n)
    jitter = rng.uniform(0.0, 0.015)
    tuning = rng.uniform(-25, 25) / 100  # semitones
    for part in comp.parts:
        onset = part.onset + rng.normal(0.0, jitter, len(part.onset))
        velocity = part.velocity * np.exp(rng.normal(0.0, 0.2, len(part.onset)))
        _play_part(out, part, onset, velocity, part.pitch + tuning, rng, sr)
    _play_drums(out, comp.drums, jitter, rng, sr)
    return out


def _play_part(out: np.ndarray, part: _Part, onset: np.ndarray, velocity: np.ndarray,
               pitch: np.ndarray, rng: np.random.Generator, sr: int) -> None:
    timbre = part.timbre
    for start_s, length, note, vel in zip(onset, part.length, pitch, velocity, strict=True):
        start = max(int(round(start_s * sr)), 0)
        size = min(int((length + timbre.release) * sr), len(out) - start)
        if size <= 0:
            continue
        out[start:start + size] += vel * timbre.level * _note(timbre, note, length, size, rng, sr)


def _note(timbre: _Timbre, pitch: float, length: float, size: int,
          rng: np.random.Generator, sr: int) -> np.ndarray:
    """Additive synthesis: decaying partials under an attack/release envelope.

    Partial ``h`` is ``a_h exp(-(1/decay + damping (h-1)) t) sin(h w t + phi_h)``; the sum is
    evaluated as a polynomial in ``s = exp((i w - damping) t)`` (Horner), with no per-partial
    transcendental functions.
    """
    t = np.arange(size) / sr
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    harmonics = np.arange(1, timbre.n_partials + 1)
    harmonics = harmonics[harmonics * f0 < 0.45 * sr]
    amps = harmonics ** -timbre.slope * np.where(harmonics % 2 == 1, 1.0, timbre.even_gain)
    coefs = amps * np.exp(1j * rng.uniform(0, 2 * np.pi, len(harmonics)))
    s = np.exp((2j * np.pi * f0 - timbre.damping) * t).astype(np.complex64)
    acc = np.full(size, coefs[-1], dtype=np.complex64)
    for coef in coefs[-2::-1]:
        acc *= s
        acc += coef
    acc *= s
    wave = acc.imag * np.exp((timbre.damping - 1.0 / timbre.decay) * t)
    envelope = np.minimum(t / timbre.attack, 1.0)
    envelope *= np.clip((length + timbre.release - t) / timbre.release, 0.0, 1.0)
    return wave * envelope


def _play_drums(out: np.ndarray, drums: _Drums, jitter: float, rng: np.random.Generator,
                sr: int) -> None:
    if drums.level == 0:
        return
    hat_cutoff = rng.uniform(3000, min(9000, 0.4 * sr))  # hi-hat brightness
    sounds = {"kick": _kick(drums.kick_pitch, sr), "snare": _snare(rng, sr),
              "hat": _hat(rng, sr, hat_cutoff)}
    for name, sound in sounds.items():
        times = getattr(drums, name)
        times = times + rng.normal(0.0, jitter, len(times))
        gains = drums.level * np.exp(rng.normal(0.0, 0.25, len(times)))
        for time, gain in zip(times, gains, strict=True):
            start = max(int(round(time * sr)), 0)
            size = min(len(sound), len(out) - start)
            if size > 0:
                out[start:start + size] += gain * sound[:size]


def _kick(pitch: float, sr: int) -> np.ndarray:
    t = np.arange(int(0.35 * sr)) / sr
    freq = pitch + 3 * pitch * np.exp(-t / 0.025)
    return np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / 0.12)


def _snare(rng: np.random.Generator, sr: int) -> np.ndarray:
    t = np.arange(int(0.25 * sr)) / sr
    sos = signal.butter(2, [1000, min(6000, 0.45 * sr)], btype="bandpass", fs=sr, output="sos")
    noise = signal.sosfilt(sos, rng.normal(0.0, 1.0, len(t)))
    return 0.6 * noise * np.exp(-t / 0.06) + 0.4 * np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.04)


def _hat(rng: np.random.Generator, sr: int, cutoff: float) -> np.ndarray:
    t = np.arange(int(0.12 * sr)) / sr
    sos = signal.butter(4, cutoff, btype="highpass", fs=sr, output="sos")
    return 0.35 * signal.sosfilt(sos, rng.normal(0.0, 1.0, len(t))) * np.exp(-t / 0.025)


# ---------------------------------------------------------------------------------------------
# Nuisance: room, EQ, noise floor (loudness is set in ``render``)


def _room(dry: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Seeded exponentially decaying noise impulse response, random RT60 and wet mix."""
    rt60 = rng.uniform(0.2, 1.2)
    t = np.arange(int(rt60 * sr)) / sr
    ir = rng.normal(0.0, 1.0, len(t)) * np.exp(-6.9 * t / rt60)
    ir /= np.sqrt(np.sum(ir**2))
    wet = signal.fftconvolve(dry, ir)[: len(dry)]
    mix = rng.uniform(0.05, 0.5)
    return (1 - mix) * dry + mix * wet


def _equalise(audio: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Random tilt (dB/octave around 1 kHz) and a random high shelf."""
    freqs = np.fft.rfftfreq(len(audio), 1 / sr)
    octaves = np.log2(np.maximum(freqs, 40.0) / 1000.0)
    corner = np.log2(rng.uniform(1500, 6000) / 1000.0)
    gain_db = rng.uniform(-4.0, 2.0) * octaves
    gain_db += rng.uniform(-12.0, 6.0) / (1 + np.exp(-4 * (octaves - corner)))
    return np.fft.irfft(np.fft.rfft(audio) * 10 ** (gain_db / 20), n=len(audio))


def _noise_floor(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Coloured noise (random slope) at a random level relative to a unit-RMS signal."""
    freqs = np.fft.rfftfreq(n, 1 / sr)
    shape = np.maximum(freqs, 20.0) ** (-rng.uniform(0.0, 1.0) / 2)
    spectrum = (rng.normal(size=len(freqs)) + 1j * rng.normal(size=len(freqs))) * shape
    noise = np.fft.irfft(spectrum, n=n)
    level_db = rng.uniform(-75.0, -35.0)
    return noise * 10 ** (level_db / 20) / (np.sqrt(np.mean(noise**2)) + 1e-12)
