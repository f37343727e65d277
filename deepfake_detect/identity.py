"""Run identity, declared once in ``conf/identity.yaml``: which config keys name a run (its
signature), which are only logged as MLflow params, and which are neither (volatile).

Everything that hashes a config or logs it as params asks here; nothing else lists keys.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

from omegaconf import OmegaConf

from deepfake_detect.config import conf_dir, to_plain

ROLES = ("identity", "logged", "volatile")


@functools.cache
def declared() -> dict[str, tuple[str, ...]]:
    """The entries of ``conf/identity.yaml`` per role."""
    node = to_plain(OmegaConf.load(conf_dir() / "identity.yaml")) or {}
    return {role: tuple(str(entry) for entry in node.get(role) or ()) for role in ROLES}


def covers(entry: str, key: str) -> bool:
    """Whether ``entry`` (``a.b.`` or ``a.b``) covers the dotted ``key``."""
    if entry.endswith("."):
        return key.startswith(entry)
    return key == entry or key.startswith(entry + ".")


def roles_of(key: str) -> list[str]:
    """Every role whose entries cover ``key`` (exactly one for a declared key)."""
    return [role for role, entries in declared().items()
            if any(covers(entry, key) for entry in entries)]


def role(key: str) -> str:
    """``identity``, ``logged`` or ``volatile``; an undeclared key counts as identity."""
    found = roles_of(key)
    return found[0] if found else "identity"


def flatten(node: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted (key, value) pairs of a nested mapping (lists stay values; an empty mapping
    gives nothing)."""
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten(value, f"{name}.")
        else:
            yield name, value


def signature_items(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The (key, value) pairs of a resolved config that make up its signature."""
    return {k: v for k, v in flatten(resolved) if role(k) == "identity"}


def param_items(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The (key, value) pairs logged as MLflow params: all but the volatile ones."""
    return {k: v for k, v in flatten(resolved) if role(k) != "volatile"}
