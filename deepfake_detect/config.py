"""Turn config nodes into validated dataclasses; errors name the full config key."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from deepfake_detect.errors import ConfigError

T = TypeVar("T")


def to_plain(node: Any) -> Any:
    """A resolved plain Python container (dict/list/scalars) from an OmegaConf node."""
    if isinstance(node, DictConfig) or OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def build(cls: type[T], node: Mapping[str, Any] | DictConfig | None, prefix: str,
          ignore: tuple[str, ...] = ()) -> T:
    """Build dataclass ``cls`` from ``node``; unknown keys and bad values raise ConfigError.

    ``prefix`` is the config path of ``node`` (e.g. ``"features"``) so that an error names
    ``features.n_mels`` rather than ``n_mels``.
    """
    values = dict(to_plain(node) or {})
    for key in ignore:
        values.pop(key, None)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"{prefix}.{unknown[0]}",
                          f"unknown key; allowed keys: {', '.join(sorted(fields))}")
    try:
        return cls(**values)
    except ConfigError as err:
        raise ConfigError(f"{prefix}.{err.key}", str(err).split(": ", 1)[1]) from None


def require(condition: bool, key: str, message: str) -> None:
    """Raise ConfigError(key, message) unless ``condition`` holds."""
    if not condition:
        raise ConfigError(key, message)


def positive(value: float | int, key: str) -> None:
    """Require ``value > 0``."""
    require(isinstance(value, int | float) and value > 0, key,
            f"must be a positive number, got {value!r}")


def one_of(value: Any, allowed: tuple[Any, ...] | list[Any], key: str) -> None:
    """Require ``value`` to be one of ``allowed``."""
    require(value in allowed, key,
            f"got {value!r}; allowed: {', '.join(map(str, allowed))}")
