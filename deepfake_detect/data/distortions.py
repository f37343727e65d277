"""Distortions: pure functions of (waveform, sample rate, per-clip parameters).

A clip's parameters are drawn from an rng derived from (seed, clip_id, distortion name), so a
clip gets the same shift in every run and every job of a sweep.

Two forms. The study's form (``pitch`` and ``tempo`` ranges, ``crop``/``pad``: the presets
base, pitch, tempo and combined) draws from one rng per clip and is kept exactly as it was:
same draws, bit-identical features, same cache keys. A *chain* (``effects``: an ordered list
of :mod:`~deepfake_detect.data.effects`) gives each effect its own rng, derived from (seed,
clip_id, distortion name, effect name), so adding, removing or re-parameterising one effect
never moves another's draws; each effect is applied with probability ``p``, in order.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from deepfake_detect.config import one_of, require
from deepfake_detect.data.effects import (
    CROP_POLICIES,
    EFFECTS,
    PAD_POLICIES,
    Effect,
    Range,
    build_effect,
    check_range,
    restore_length,
)
from deepfake_detect.errors import ConfigError

__all__ = ["DISTORTION_KEYS", "Distortion", "Range", "apply", "clip_rng", "draw_params"]


@dataclass(frozen=True)
class Distortion:
    """The ``distortion`` config group: pitch shift (semitones), tempo change (rate), both or
    none (the study's form); or a chain of ``effects``.

    ``crop``/``pad`` say how a time-stretched clip is brought back to its original length.
    """

    name: str = "base"
    pitch: Range | None = None
    tempo: Range | None = None
    crop: str = "center"
    pad: str = "constant"
    bins_per_octave: int = 12
    effects: tuple[Effect, ...] = ()

    def __post_init__(self) -> None:
        require(bool(self.name) and "/" not in self.name, "name",
                f"must be a non-empty name without '/', got {self.name!r}")
        one_of(self.crop, CROP_POLICIES, "crop")
        one_of(self.pad, PAD_POLICIES, "pad")
        if self.pitch is not None:
            check_range(self.pitch, "pitch", -24, 24)
        if self.tempo is not None:
            check_range(self.tempo, "tempo", 0.25, 4.0)
            require(self.tempo.choices is not None or self.tempo.low > 0, "tempo.low",
                    "tempo rates must be > 0")
        require(not self.effects or (self.pitch is None and self.tempo is None), "effects",
                "a chain takes its pitch and tempo as effects: set pitch and tempo to null")
        names = [e.name for e in self.effects]
        twice = [i for i, n in enumerate(names) if n in names[:i]]
        require(not twice, f"effects.{twice[0] if twice else 0}.name",
                "effect names must be unique in a chain; "
                f"{names[twice[0]] if twice else ''!r} is used twice (give one a name)")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Distortion:
        values = dict(values)
        for key in ("pitch", "tempo"):
            if isinstance(values.get(key), dict):
                values[key] = Range.of(values[key])
        chain = values.get("effects")
        if chain is not None:
            require(isinstance(chain, list | tuple), "effects",
                    "must be a list of effects ({kind: ..., ...})")
            values["effects"] = tuple(_effect(node, i) for i, node in enumerate(chain))
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """Everything that decides what the distortion computes (part of cache keys; the
        study's form gives exactly the keys it always had)."""
        out = asdict(self)
        del out["effects"]
        if self.effects:
            out["effects"] = [e.as_dict() for e in self.effects]
        return out

    @property
    def is_identity(self) -> bool:
        return self.pitch is None and self.tempo is None and not self.effects

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds of effect a clip may go through, in order (the study's form: pitch,
        tempo)."""
        if self.effects:
            return tuple(e.kind for e in self.effects)
        return tuple(k for k in ("pitch", "tempo") if getattr(self, k) is not None)

    def check_rate(self, sr: int) -> None:
        """Validate every effect against the clips' sample rate (errors name the effect)."""
        for index, effect in enumerate(self.effects):
            try:
                effect.check_rate(sr)
            except ConfigError as err:
                raise err.under(f"effects.{index}") from None


DISTORTION_KEYS = tuple(f.name for f in fields(Distortion))


def _effect(node: Any, index: int) -> Effect:
    require(isinstance(node, dict), f"effects.{index}",
            f"must be a mapping with a kind ({', '.join(EFFECTS)}), got {node!r}")
    try:
        return build_effect(node)
    except ConfigError as err:
        raise err.under(f"effects.{index}") from None
    except TypeError as err:
        raise ConfigError(f"effects.{index}", str(err)) from None


def clip_rng(seed: int, clip_id: str, distortion: str) -> np.random.Generator:
    """A generator that depends only on (seed, clip_id, distortion name)."""
    digest = hashlib.sha256(f"{seed}\0{clip_id}\0{distortion}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def effect_rng(seed: int, clip_id: str, distortion: str, effect: str) -> np.random.Generator:
    """One effect's generator in a chain: (seed, clip_id, distortion name, effect name)."""
    return clip_rng(seed, clip_id, f"{distortion}\0effect\0{effect}")


def draw_params(d: Distortion, seed: int, clip_id: str) -> dict[str, float]:
    """The parameters this clip gets under ``d`` (stored with the features). A chain's are
    ``<effect name>.<parameter>``, plus ``<effect name>.applied`` (1 or 0) where ``p < 1``."""
    if d.effects:
        return _draw_chain(d, seed, clip_id)
    params: dict[str, float] = {}
    if d.pitch is None and d.tempo is None and d.crop != "random":
        return params  # nothing to draw (base): no generator needed
    rng = clip_rng(seed, clip_id, d.name)
    if d.pitch is not None:
        params["pitch_semitones"] = d.pitch.draw(rng)
    if d.tempo is not None:
        params["tempo_rate"] = d.tempo.draw(rng)
    if d.crop == "random":
        params["crop_position"] = float(rng.uniform())
    return params


def _draw_chain(d: Distortion, seed: int, clip_id: str) -> dict[str, float]:
    params: dict[str, float] = {}
    for effect in d.effects:
        rng = effect_rng(seed, clip_id, d.name, effect.name)
        if effect.p < 1:  # the coin first, so that p does not move the other draws
            params[f"{effect.name}.applied"] = float(rng.uniform() < effect.p)
        params.update({f"{effect.name}.{k}": v for k, v in effect.draw(rng).items()})
    return params


def apply(d: Distortion, wave: np.ndarray, sr: int, params: dict[str, float]) -> np.ndarray:
    """Apply ``d`` with ``params`` to ``wave``; the result has the input's length."""
    out = np.asarray(wave, dtype=np.float32)
    if d.effects:
        for effect in d.effects:
            prefix = f"{effect.name}."
            if params.get(f"{prefix}applied", 1.0):
                mine = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
                out = np.asarray(effect.apply(out, sr, mine), dtype=np.float32)
        return out
    import librosa

    n = len(out)
    if "pitch_semitones" in params and params["pitch_semitones"] != 0:
        out = librosa.effects.pitch_shift(out, sr=sr, n_steps=params["pitch_semitones"],
                                          bins_per_octave=d.bins_per_octave)
    if "tempo_rate" in params and params["tempo_rate"] != 1:
        out = librosa.effects.time_stretch(out, rate=params["tempo_rate"])
        out = restore_length(out, n, d.crop, d.pad, params.get("crop_position", 0.5))
    return out.astype(np.float32, copy=False)


def at_strength(d: Distortion, value: float, effect: str | None = None) -> Distortion:
    """``d`` with its main parameter fixed at ``value`` for every clip (a point of a strength
    curve), under the same name, so every other draw stays the clip's own. The study's form:
    ``pitch`` (semitones) or else ``tempo`` (rate); a chain: the effect named ``effect``
    (default: the only one, or the one whose kind or name is the distortion's name)."""
    if not d.effects:
        key = "pitch" if d.pitch is not None and effect in (None, "pitch") else "tempo"
        require(getattr(d, key) is not None, "effect",
                f"distortion {d.name!r} has no pitch or tempo to set a strength for")
        return replace(d, **{key: Range(float(value), float(value))})
    target = strength_effect(d, effect)
    return replace(d, effects=tuple(e.fixed(value) if e is target else e for e in d.effects))


def strength_effect(d: Distortion, effect: str | None = None) -> Effect:
    """The effect of chain ``d`` whose strength a curve sweeps (see :func:`at_strength`)."""
    names = [e.name for e in d.effects]
    if effect is None:
        matches = [e for e in d.effects if d.name in (e.name, e.kind)]
        if len(d.effects) == 1 or len(matches) == 1:
            return d.effects[0] if len(d.effects) == 1 else matches[0]
        raise ConfigError("effect", f"distortion {d.name!r} chains {names}: name the effect "
                          "whose strength to sweep")
    require(effect in names, "effect", f"distortion {d.name!r} has no effect {effect!r}; "
            f"its effects: {names}")
    return d.effects[names.index(effect)]


def strength_label(d: Distortion, effect: str | None = None) -> tuple[str, str]:
    """(parameter, unit) of the strength a curve over ``d`` sweeps."""
    if not d.effects:
        return ("semitones", "semitones") if d.pitch is not None and effect in (
            None, "pitch") else ("rate", "x")
    target = strength_effect(d, effect)
    return target.main(), "" if target.main() == "quality" else target.unit
