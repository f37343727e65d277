"""Distortion presets beside what they build: a preset name (``conf/distortion/<name>.yaml``,
composed by Hydra) or a config node into a :class:`~deepfake_detect.data.distortions.Distortion`,
checked against the clips' sample rate; a robustness curve's spec and its points."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deepfake_detect.config import compose_option, require
from deepfake_detect.data.distortions import DISTORTION_KEYS, Distortion, at_strength
from deepfake_detect.errors import ConfigError


@dataclass(frozen=True)
class CurveSpec:
    """One robustness curve: the preset ``distortion`` at each of ``values`` of its strength
    (the main parameter of ``effect``, for a chain of several effects)."""

    distortion: str
    values: tuple[float, ...]
    effect: str | None = None

    def __post_init__(self) -> None:
        values = self.values
        require(isinstance(values, list | tuple) and len(values) > 0 and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values), "values",
            f"must be a non-empty list of numbers, got {values!r}")
        require(len(set(values)) == len(values), "values", f"has a value twice: {values}")
        object.__setattr__(self, "values", tuple(float(v) for v in values))


def distortion_preset(name: str, key: str = "eval.distortions") -> Distortion:
    """The distortion of ``conf/distortion/<name>.yaml``, composed by Hydra."""
    return build_distortion(compose_option("distortion", str(name), key), f"distortion {name}")


def build_distortion(node: dict[str, Any], prefix: str) -> Distortion:
    """A Distortion from a config node; errors name ``<prefix>.<key>``."""
    try:
        return Distortion.from_dict(node)
    except ConfigError as err:
        raise err.under(prefix) from None
    except TypeError as err:
        raise ConfigError(prefix, f"{err}; allowed keys: {', '.join(DISTORTION_KEYS)}") from None


def check_rate(d: Distortion, sample_rate: int, prefix: str) -> None:
    """``d``'s effects are possible at the clips' sample rate; errors name
    ``<prefix>.effects.<i>.<key>``."""
    try:
        d.check_rate(sample_rate)
    except ConfigError as err:
        raise err.under(prefix, f" (features.sample_rate {sample_rate})") from None


def curve_points(spec: CurveSpec, prefix: str, sample_rate: int,
                 known: Distortion | None = None) -> list[Distortion]:
    """The distortion at each strength of ``spec`` (the preset composed by Hydra, or
    ``known`` when it has that name), checked against the clips' sample rate."""
    base = known if known is not None and known.name == spec.distortion else \
        distortion_preset(spec.distortion, f"{prefix}.distortion")
    try:
        points = [at_strength(base, value, spec.effect) for value in spec.values]
    except ConfigError as err:
        raise err.under(prefix) from None
    for point in points:
        check_rate(point, sample_rate, f"{prefix} ({spec.distortion})")
    return points
