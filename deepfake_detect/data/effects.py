"""The effects a distortion chain is made of: each a pure function of (waveform, sample rate,
per-clip parameters) that keeps the clip's length and timing.

An effect declares its drawn parameters as :class:`Range` fields (uniform in [low, high], or
uniform over ``choices``; a fixed value is ``low == high``), its *strength* (the main
parameter a robustness curve sweeps) and what it does with one draw. Everything it needs at
apply time is in its parameters: noise and synthetic reverb draw their own integer seed.

=========  ==================  ==============================================================
kind       strength (unit)     what
=========  ==================  ==============================================================
pitch      semitones           librosa phase-vocoder pitch shift
tempo      rate (x)            librosa time stretch, cropped or padded back to the length
codec      bitrate (kbps)      MP3 / Opus re-encoding (Vorbis: quality in [0, 1])
resample   rate (Hz)           down to a lower rate and back (soxr), i.e. band limiting
eq         cutoff (Hz)         Butterworth low/high-pass or shelf, zero phase (scipy)
noise      snr (dB)            white / pink / brown noise at a signal-to-noise ratio
reverb     decay (s)           a seeded synthetic room (RT60 = decay) or an impulse response
gain       db (dB)             a level change
crop       duration (s)        an excerpt (offset, duration), padded back to the length
=========  ==================  ==============================================================
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from deepfake_detect.config import one_of, require
from deepfake_detect.data import codec

CROP_POLICIES = ("center", "start", "random")
PAD_POLICIES = ("constant", "wrap")


@dataclass(frozen=True)
class Range:
    """Uniform in [low, high], or uniform over ``choices`` when given."""

    low: float = 0.0
    high: float = 0.0
    choices: tuple[float, ...] | None = None

    def draw(self, rng: np.random.Generator) -> float:
        if self.choices:
            return float(self.choices[int(rng.integers(len(self.choices)))])
        return float(rng.uniform(self.low, self.high))

    @property
    def values(self) -> tuple[float, ...]:
        """The values it can take at the ends (or all of its choices)."""
        return tuple(self.choices) if self.choices else (self.low, self.high)

    @classmethod
    def of(cls, node: Any, as_float: bool = False) -> Range:
        """A Range from a config node: ``{low, high, choices}`` or one number (fixed);
        ``as_float``: every value a float (so that 1 and 1.0 give the same cache key)."""
        if isinstance(node, Range):
            return node
        if isinstance(node, int | float) and not isinstance(node, bool):
            return cls(float(node), float(node))
        spec = dict(node)
        if spec.get("choices") is not None:
            spec["choices"] = tuple(spec["choices"])
        if as_float:
            number = (int, float)
            spec = {k: (float(v) if isinstance(v, number) and not isinstance(v, bool)
                        else tuple(float(c) if isinstance(c, number) else c for c in v)
                        if isinstance(v, tuple) else v) for k, v in spec.items()}
        return cls(**spec)


def check_range(r: Range, key: str, lo: float, hi: float) -> None:
    """``r``'s values lie in [lo, hi] and low <= high."""
    values = r.values
    require(all(isinstance(v, int | float) and lo <= v <= hi for v in values), key,
            f"values must lie in [{lo}, {hi}], got {values}")
    require(bool(r.choices) or r.low <= r.high, f"{key}.low",
            f"must be <= {key}.high ({r.high}), got {r.low}")


def restore_length(wave: np.ndarray, n: int, crop: str, pad: str,
                   position: float = 0.5) -> np.ndarray:
    """``wave`` cropped (``crop``: start, center, random at ``position``) or padded
    (``pad``: constant zeros or wrap) to ``n`` samples."""
    if len(wave) > n:
        excess = len(wave) - n
        start = {"start": 0, "center": excess // 2}.get(crop, int(position * excess))
        return wave[start:start + n]
    if len(wave) < n:
        mode = "wrap" if pad == "wrap" and len(wave) > 0 else "constant"
        return np.pad(wave, (0, n - len(wave)), mode=mode)
    return wave


EFFECTS: dict[str, type[Effect]] = {}


def register(cls: type[Effect]) -> type[Effect]:
    EFFECTS[cls.kind] = cls
    return cls


@dataclass(frozen=True)
class Effect:
    """One member of a chain: ``name`` (unique in its chain; default its kind) and ``p``, the
    probability that a clip gets it (drawn per clip, stored as ``<name>.applied``)."""

    name: str = ""
    p: float = 1.0

    kind: ClassVar[str] = ""
    strength: ClassVar[str] = ""  # the Range field a strength curve fixes
    unit: ClassVar[str] = ""

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.kind)
        require(isinstance(self.name, str) and "/" not in self.name and "." not in self.name,
                "name", f"must be a name without '/' or '.', got {self.name!r}")
        require(isinstance(self.p, int | float) and not isinstance(self.p, bool)
                and 0 <= self.p <= 1, "p", f"must be a probability in [0, 1], got {self.p!r}")
        self.check()

    def check(self) -> None:
        """Validate the kind's own fields (ConfigError naming the field)."""

    def check_rate(self, sr: int) -> None:
        """Validate against the clips' sample rate (known only with the features)."""

    def ranges(self) -> dict[str, Range]:
        """The parameters drawn per clip, in draw order."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if isinstance(getattr(self, f.name), Range)}

    def draw(self, rng: np.random.Generator) -> dict[str, float]:
        """This effect's parameters for one clip, from its own generator."""
        return {key: r.draw(rng) for key, r in self.ranges().items()}

    def apply(self, wave: np.ndarray, sr: int, params: dict[str, float]) -> np.ndarray:
        raise NotImplementedError

    def main(self) -> str:
        """The parameter a strength curve sweeps."""
        return self.strength

    def fixed(self, value: float) -> Effect:
        """The same effect with its strength fixed at ``value`` for every clip, always applied."""
        return replace(self, p=1.0, **{self.main(): Range(float(value), float(value))})

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


def _seed(rng: np.random.Generator) -> float:
    """An integer seed for apply-time randomness, stored as a float (exact below 2**53)."""
    return float(rng.integers(0, 2**32))


@register
@dataclass(frozen=True)
class Pitch(Effect):
    kind = "pitch"
    strength = "semitones"
    unit = "semitones"
    semitones: Range = Range(-2.0, 2.0)
    bins_per_octave: int = 12

    def check(self) -> None:
        check_range(self.semitones, "semitones", -24, 24)
        require(isinstance(self.bins_per_octave, int) and self.bins_per_octave > 0,
                "bins_per_octave", f"must be a positive integer, got {self.bins_per_octave!r}")

    def apply(self, wave: np.ndarray, sr: int, params: dict[str, float]) -> np.ndarray:
        import librosa

        if params["semitones"] == 0:
            return wave
        return librosa.effects.pitch_shift(wave, sr=sr, n_steps=params["semitones"],
                                           bins_per_octave=self.bins_per_octave)


@register
@dataclass(frozen=True)
class Tempo(Effect):
    kind = "tempo"
    strength = "rate"
    unit = "x"
    rate: Range = Range(0.8, 1.2)
    crop: str = "center"
    pad: str = "constant"

    def check(self) -> None:
        check_range(self.rate, "rate", 0.25, 4.0)
        one_of(self.crop, CROP_POLICIES, "crop")
        one_of(self.pad, PAD_POLICIES, "pad")

    def draw(self, rng: np.random.Generator) -> dict[str, float]:
        params = super().draw(rng)
        if self.crop == "random":
            params["crop_position"] = float(rng.uniform())
        return params

    def apply(self, wave: np.ndarray, sr: int, params: dict[str, float]) -> np.ndarray:
        import librosa

        if params["rate"] == 1:
            return wave
        out = librosa.effects.time_stretch(wave, rate=params["rate"])
        return restore_length(out, len(wave), self.crop, self.pad,
                              params.get("crop_position", 0.5))


@register
@dataclass(frozen=True)
class Codec(Effect):
    """Lossy re-encoding (:mod:`deepfake_detect.data.codec`): ``format`` mp3 (CBR, standard
    bitrates as ``choices``), opus (``bitrate`` 6-256 kbps) or vorbis (``quality`` in
    [0, 1]), at ``sample_rate`` (null: the clip's own; e.g. 44100 for MP3 above 160 kbps)."""

    kind = "codec"
    strength = "bitrate"
    unit = "kbps"
    format: str = "mp3"
    bitrate: Range | None = None
    quality: Range | None = None
    sample_rate: int | None = None

    def check(self) -> None:
        one_of(self.format, codec.FORMATS, "format")
        vorbis = self.format == "vorbis"
        require((self.quality is not None) == vorbis, "quality",
                "Vorbis takes a quality in [0, 1] (and no bitrate)" if vorbis
                else f"{self.format} takes a bitrate (kbps), not a quality")
        require((self.bitrate is not None) != vorbis, "bitrate",
                f"{self.format} needs a bitrate (kbps)" if not vorbis
                else "Vorbis takes a quality, not a bitrate")
        if self.quality is not None:
            check_range(self.quality, "quality", 0.0, 1.0)
        if self.format == "opus" and self.bitrate is not None:
            check_range(self.bitrate, "bitrate", *codec.OPUS_KBPS)
        rates = {"opus": codec.OPUS_RATES, "mp3": codec.MP3_RATES}.get(self.format)
        require(self.sample_rate is None or (isinstance(self.sample_rate, int) and (
            rates is None and 8000 <= self.sample_rate <= 192000 or rates is not None
            and self.sample_rate in rates)), "sample_rate",
            f"{self.format} encodes at {rates or '8000-192000'} Hz, got {self.sample_rate!r}")

    def check_rate(self, sr: int) -> None:
        if self.format != "mp3" or self.bitrate is None:
            return
        at = codec.encode_rate("mp3", sr, self.sample_rate)
        require(at in codec.MP3_RATES, "sample_rate",
                f"MP3 encodes at {codec.MP3_RATES} Hz; the clips are at {sr} Hz: set one")
        allowed = codec.MP3_BITRATES[codec.mp3_version(at)]
        require(bool(self.bitrate.choices) or self.bitrate.low == self.bitrate.high,
                "bitrate", f"MP3 bitrates are discrete: give choices from {allowed}")
        require(all(v in allowed for v in self.bitrate.values), "bitrate",
                f"MP3 at {at} Hz encodes at {allowed} kbps, got {self.bitrate.values}")

    def main(self) -> str:
        return "quality" if self.format == "vorbis" else "bitrate"

    def apply(self, wave: np.ndarray, sr: int, params: dict[str, float]) -> np.ndarray:
        return codec.roundtrip(wave, sr, self.format, params.get("bitrate"),
                               params.get("quality"), self.sample_rate)


@register
@dataclass(frozen=True)
class Resample(Effect):
    """Down to ``rate`` Hz and back (soxr): what is above ``rate / 2`` is gone. A rate at or
    above the clip's leaves it unchanged."""

    kind = "resample"
    strength = "rate"
    unit = "Hz"
    rate: Range = Range(8000.0, 8000.0)
    res_type: str = "soxr_hq"

    def check(self) -> None:
        check_range(self.rate, "rate", 1000, 384000)
        one_of(self.res_type, ("soxr_vhq", "soxr_hq", "soxr_mq", "soxr_lq"), "res_type")

    def apply(self, wave: np.ndarray, sr: int, params: dict[str, float]) -> np.ndarray:
        import librosa

        rate = int(round(params["rate"]))
        if rate >= sr:
            return wave
        low = librosa.resample(wave, orig_sr=sr, target_sr=rate, res_type=self.res_type)
        back = librosa.resample(low, orig_sr=rate, target_sr=sr, res_type=self.res_type)
        return restore_length(back, len(wave), "start", "constant")


EQ_TYPES = ("lowpass", "highpass", "lowshelf", "highshelf")


@register
@dataclass(frozen=True)
class Eq(Effect):
    """A filter at ``cutoff`` Hz, run forward and backward (zero phase: no delay).
    low/high-pass: Butterworth of ``order`` (-6 dB at the cutoff, 12 dB/octave per order);
    shelves: ``gain`` dB above (highshelf) or below (lowshelf) the cutoff."""

    kind = "eq"
    strength = "cutoff"
    unit = "Hz"
    type: str = "lowpass"
    cutoff: Range = Range(4000.0, 4000.0)
    gain: Range | None = None
    order: int = 4

    def check(self) -> None:
        one_of(self.type, EQ_TYPES, "type")
        check_range(self.cutoff, "cutoff", 1.0, 192000.0)
        shelf = self.type.endswith("shelf")
        require((self.gain is not None) == shelf, "gain",
                "a shelf needs a gain (dB)" if shelf else f"a {self.type} takes no gain")
        if self.gain is not None:
            check_range(self.gain, "gain", -60.0, 60.0)
        require(isinstance(self.order, int) and 1 <= self.order <= 12, "order",
                f"must be an integer in [1, 12], got {self.order!r}")

    def check_rate(self, sr: int) -> None:
        require(max(self.cutoff.values) < sr / 2, "cutoff",
                f"must be below the clips' Nyquist frequency ({sr / 2:g} Hz), "
                f"got {self.cutoff.values}")

    def apply(self, wave: np.ndarray, sr: int, params: dict[str, float]) -> np.ndarray:
        from scipy import signal

        cutoff = min(params["cutoff"], 0.499 * sr)
        if self.type in ("lowpass", "highpass"):
            sos = signal.butter(self.order, cutoff, btype=self.type, fs=sr, output="sos")
        else:  # half the gain each way: the two passes give the full gain
            sos = shelf_sos(self.type, cutoff, params["gain"] / 2, sr)
        if len(wave) <= 3 * (2 * len(sos) + 1):
            return wave
        return signal.sosfiltfilt(sos, wave).astype(np.float32)


def shelf_sos(kind: str, cutoff: float, gain_db: float, sr: int) -> np.ndarray:
    """A shelving biquad (Audio EQ Cookbook, slope 1) as one second-order section."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * cutoff / sr
    cos, alpha = np.cos(w0), np.sin(w0) / 2 * np.sqrt(2)
    root = 2 * np.sqrt(a) * alpha
    sign = 1 if kind == "lowshelf" else -1
    b = [a * ((a + 1) - sign * (a - 1) * cos + root),
         sign * 2 * a * ((a - 1) - sign * (a + 1) * cos),
         a * ((a + 1) - sign * (a - 1) * cos - root)]
    den = [(a + 1) + sign * (a - 1) * cos + root,
           -sign * 2 * ((a - 1) + sign * (a + 1) * cos),
           (a + 1) + sign * (a - 1) * cos - root]
    return np.array([[*(np.array(b) / den[0]), 1.0, den[1] / den[0], den[2] / den[0]]])


NOISE_COLOURS = ("white", "pink", "brown")


@register
@dataclass(frozen=True)
class Noise(Effect):
    """Additive noise of ``color`` (white: flat; pink: -3 dB/octave; brown: -6 dB/octave) at
    ``snr`` dB relative to the clip's own power."""

    kind = "noise"
    strength = "snr"
    unit = "dB"
    color: str = "white"
    snr: Range = Range(20.0, 20.0)

    def check(self) -> None:
        one_of(self.color, NOISE_COLOURS, "color")
        check_range(self.snr, "snr", -40.0, 120.0)

    def draw(self, rng: np.random.Generator) -> dict[str, float]:
        return {**super().draw(rng), "seed": _seed(rng)}

    def apply(self, wave: np.ndarray, sr: int, params: dict[str, float]) -> np.ndarray:
        power = float(np.mean(np.square(wave, dtype=np.float64))) if len(wave) else 0.0
        if power == 0:
            return wave
        noise = coloured_noise(len(wave), self.color, int(params["seed"]))
        noise *= np.sqrt(power / (np.mean(noise**2) * 10 ** (params["snr"] / 10)))
        return (wave + noise).astype(np.float32)


def coloured_noise(n: int, color: str, seed: int) -> np.ndarray:
    """``n`` samples of zero-mean noise whose power falls as 1/f**k (k: 0, 1, 2)."""
    white = np.random.default_rng(seed).standard_normal(n)
    if color == "white":
        return white
    spectrum = np.fft.rfft(white)
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    spectrum /= f ** ({"pink": 0.5, "brown": 1.0}[color])
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, n)


@register
@dataclass(frozen=True)
class Reverb(Effect):
    """Convolution with a room: a seeded synthetic impulse response (exponentially decaying
    noise that falls 60 dB in ``decay`` seconds), or one of the impulse responses in
    ``ir_dir`` (drawn per clip); ``wet`` is the reverberant share of the mix, whose level
    matches the dry clip's."""

    kind = "reverb"
    strength = "decay"
    unit = "s"
    decay: Range = Range(0.5, 0.5)
    wet: Range = Range(0.3, 0.3)
    ir_dir: str | None = None

    def check(self) -> None:
        check_range(self.decay, "decay", 0.01, 10.0)
        check_range(self.wet, "wet", 0.0, 1.0)
        if self.ir_dir is not None:
            require(bool(impulse_files(self.ir_dir)), "ir_dir",
                    f"no audio files in {self.ir_dir!r}")

    def draw(self, rng: np.random.Generator) -> dict[str, float]:
        params = {**super().draw(rng), "seed": _seed(rng)}
        if self.ir_dir is not None:
            params["ir_index"] = float(rng.integers(len(impulse_files(self.ir_dir))))
        return params

    def apply(self, wave: np.ndarray, sr: int, params: dict[str, float]) -> np.ndarray:
        from scipy import signal

        if len(wave) == 0 or params["wet"] == 0:
            return wave
        if self.ir_dir is not None:
            ir = load_impulse(impulse_files(self.ir_dir)[int(params["ir_index"])], sr)
        else:
            ir = room_impulse(params["decay"], sr, int(params["seed"]))
        wet = signal.fftconvolve(wave, ir)[: len(wave)]
        dry_rms, wet_rms = np.sqrt(np.mean(wave**2)), np.sqrt(np.mean(wet**2))
        if wet_rms > 0:
            wet *= dry_rms / wet_rms
        return ((1 - params["wet"]) * wave + params["wet"] * wet).astype(np.float32)


def room_impulse(decay: float, sr: int, seed: int) -> np.ndarray:
    """A synthetic impulse response: the direct sound, then Gaussian noise under an envelope
    falling 60 dB over ``decay`` seconds (RT60); unit energy."""
    n = max(2, int(decay * sr))
    t = np.arange(n) / sr
    ir = np.random.default_rng(seed).standard_normal(n) * 10 ** (-3 * t / decay)
    ir[0] = max(1.0, 3 * float(np.abs(ir[1:]).max()))
    return ir / np.sqrt(np.sum(ir**2))


@functools.cache
def impulse_files(folder: str) -> tuple[str, ...]:
    from deepfake_detect.data.audio import AUDIO_EXTENSIONS

    root = Path(folder).expanduser()
    return tuple(sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS))


@functools.lru_cache(maxsize=64)
def load_impulse(path: str, sr: int) -> np.ndarray:
    """An impulse response file, mono at ``sr``, starting at its peak, unit energy."""
    import librosa

    ir, _ = librosa.load(path, sr=sr, mono=True)
    ir = ir[int(np.argmax(np.abs(ir))):] if len(ir) else np.ones(1, np.float32)
    energy = float(np.sum(ir.astype(np.float64) ** 2))
    return (ir / np.sqrt(energy)) if energy > 0 else np.ones(1, np.float32)


@register
@dataclass(frozen=True)
class Gain(Effect):
    kind = "gain"
    strength = "db"
    unit = "dB"
    db: Range = Range(0.0, 0.0)

    def check(self) -> None:
        check_range(self.db, "db", -120.0, 60.0)

    def apply(self, wave: np.ndarray, sr: int, params: dict[str, float]) -> np.ndarray:
        return (wave * np.float32(10 ** (params["db"] / 20))).astype(np.float32)


@register
@dataclass(frozen=True)
class Crop(Effect):
    """An excerpt of ``duration`` seconds from ``offset`` seconds on, padded back to the
    clip's length (``pad``: constant zeros at the end, or wrap)."""

    kind = "crop"
    strength = "duration"
    unit = "s"
    offset: Range = Range(0.0, 0.0)
    duration: Range = Range(1.0, 1.0)
    pad: str = "constant"

    def check(self) -> None:
        check_range(self.offset, "offset", 0.0, 3600.0)
        check_range(self.duration, "duration", 0.0, 3600.0)
        one_of(self.pad, PAD_POLICIES, "pad")

    def apply(self, wave: np.ndarray, sr: int, params: dict[str, float]) -> np.ndarray:
        start = int(round(params["offset"] * sr))
        stop = start + int(round(params["duration"] * sr))
        return restore_length(wave[start:stop], len(wave), "start", self.pad)


def build_effect(node: dict[str, Any]) -> Effect:
    """An effect from a config node ``{kind, name, p, <its fields>}``; errors name the field."""
    values = dict(node)
    kind = values.pop("kind", None)
    one_of(kind, tuple(EFFECTS), "kind")
    cls = EFFECTS[kind]
    allowed = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(allowed))
    require(not unknown, unknown[0] if unknown else "kind",
            f"unknown key for a {kind} effect; allowed: kind, {', '.join(allowed)}")
    for key, value in values.items():
        if "Range" in str(allowed[key].type) and value is not None:
            try:
                values[key] = Range.of(value, as_float=True)
            except TypeError:
                require(False, key, f"must be a number or {{low, high, choices}}, got {value!r}")
    return cls(**values)
