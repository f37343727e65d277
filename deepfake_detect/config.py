"""The configuration: where ``conf/`` is, composing it with Hydra, and turning config nodes
into validated dataclasses whose errors name the full config key."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from deepfake_detect.errors import ConfigError, DeepfakeDetectError

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
        raise err.under(prefix) from None


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


@functools.cache
def conf_dir() -> Path:
    """The ``conf/`` folder (next to the package in a checkout, inside it in a wheel)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no conf/train.yaml next to {here}")


def compose(config_name: str = "train", overrides: Sequence[str] = ()) -> DictConfig:
    """``conf/<config_name>.yaml`` composed by Hydra with ``overrides``: inside a running Hydra
    app with its search path, else with ``conf/``. Bad overrides raise a DeepfakeDetectError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        if GlobalHydra.instance().is_initialized():
            return hydra_compose(config_name, overrides=list(overrides))
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return hydra_compose(config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DeepfakeDetectError(f"bad override: {first}") from None


def group_options(group: str) -> list[str]:
    """The options of a config group (``distortion`` -> ``[base, combined, pitch, tempo]``)."""
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def compose_option(group: str, option: str, key: str) -> dict[str, Any]:
    """One option of a config group composed by Hydra (its defaults and interpolations
    resolved), as plain containers; an unknown option is a ConfigError naming ``key``."""
    try:
        node = to_plain(compose(f"{group}/{option}"))
    except DeepfakeDetectError as err:
        problem = "unknown" if option not in group_options(group) else f"cannot compose ({err})"
        raise ConfigError(key, f"{problem} {group} {option!r}; allowed: "
                          f"{', '.join(group_options(group))} (conf/{group}/)") from None
    for part in group.split("/"):  # a group option composes under its package (the group)
        node = node.get(part, node) if isinstance(node, dict) else node
    return node
