"""The distortion code as it was before chains existed (commit 40e5a82, verbatim apart from
this docstring): the reference the study's four presets must stay bit-identical to."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from deepfake_detect.config import one_of, require

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


@dataclass(frozen=True)
class Distortion:
    """The ``distortion`` config group: pitch shift (semitones), tempo change (rate), both or none.

    ``crop``/``pad`` say how a time-stretched clip is brought back to its original length.
    """

    name: str = "base"
    pitch: Range | None = None
    tempo: Range | None = None
    crop: str = "center"
    pad: str = "constant"
    bins_per_octave: int = 12

    def __post_init__(self) -> None:
        require(bool(self.name) and "/" not in self.name, "name",
                f"must be a non-empty name without '/', got {self.name!r}")
        one_of(self.crop, CROP_POLICIES, "crop")
        one_of(self.pad, PAD_POLICIES, "pad")
        if self.pitch is not None:
            _check_range(self.pitch, "pitch", -24, 24)
        if self.tempo is not None:
            _check_range(self.tempo, "tempo", 0.25, 4.0)
            require(self.tempo.choices is not None or self.tempo.low > 0, "tempo.low",
                    "tempo rates must be > 0")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Distortion:
        values = dict(values)
        for key in ("pitch", "tempo"):
            if isinstance(values.get(key), dict):
                spec = dict(values[key])
                if spec.get("choices") is not None:
                    spec["choices"] = tuple(spec["choices"])
                values[key] = Range(**spec)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def is_identity(self) -> bool:
        return self.pitch is None and self.tempo is None


DISTORTION_KEYS = tuple(f.name for f in fields(Distortion))


def _check_range(r: Range, key: str, lo: float, hi: float) -> None:
    values = r.choices if r.choices else (r.low, r.high)
    require(all(lo <= v <= hi for v in values), key,
            f"values must lie in [{lo}, {hi}], got {values}")
    require(bool(r.choices) or r.low <= r.high, f"{key}.low",
            f"must be <= {key}.high ({r.high}), got {r.low}")


def clip_rng(seed: int, clip_id: str, distortion: str) -> np.random.Generator:
    """A generator that depends only on (seed, clip_id, distortion name)."""
    digest = hashlib.sha256(f"{seed}\0{clip_id}\0{distortion}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def draw_params(d: Distortion, seed: int, clip_id: str) -> dict[str, float]:
    """The parameters this clip gets under ``d`` (stored with the features)."""
    rng = clip_rng(seed, clip_id, d.name)
    params: dict[str, float] = {}
    if d.pitch is not None:
        params["pitch_semitones"] = d.pitch.draw(rng)
    if d.tempo is not None:
        params["tempo_rate"] = d.tempo.draw(rng)
    if d.crop == "random":
        params["crop_position"] = float(rng.uniform())
    return params


def apply(d: Distortion, wave: np.ndarray, sr: int, params: dict[str, float]) -> np.ndarray:
    """Apply ``d`` with ``params`` to ``wave``; the result has the input's length."""
    import librosa

    out = np.asarray(wave, dtype=np.float32)
    n = len(out)
    if "pitch_semitones" in params and params["pitch_semitones"] != 0:
        out = librosa.effects.pitch_shift(out, sr=sr, n_steps=params["pitch_semitones"],
                                          bins_per_octave=d.bins_per_octave)
    if "tempo_rate" in params and params["tempo_rate"] != 1:
        out = librosa.effects.time_stretch(out, rate=params["tempo_rate"])
        out = _restore_length(out, n, d, params.get("crop_position", 0.5))
    return out.astype(np.float32, copy=False)


def _restore_length(wave: np.ndarray, n: int, d: Distortion, position: float) -> np.ndarray:
    if len(wave) > n:
        excess = len(wave) - n
        start = {"start": 0, "center": excess // 2}.get(d.crop, int(position * excess))
        return wave[start:start + n]
    if len(wave) < n:
        mode = "wrap" if d.pad == "wrap" and len(wave) > 0 else "constant"
        return np.pad(wave, (0, n - len(wave)), mode=mode)
    return wave
