"""Run identity is declared once (``conf/identity.yaml``): every key of every shipped config
is identity, logged or volatile, and the signature and the MLflow params follow it."""

from __future__ import annotations

import itertools

import pytest

from deepfake_detect import identity, tracking
from deepfake_detect.config import compose, group_options, to_plain
from deepfake_detect.runs import signature

OPTION_GROUPS = ("data", "features", "distortion", "trainer", "experiment", "debug")


def every_shipped_config() -> list[dict]:
    """The default config and each option of each group on its own, plus sweeps' combos."""
    overrides = [[]]
    for group in OPTION_GROUPS:
        overrides += [[f"{group}={option}"] for option in group_options(group)]
    overrides += [[f"data={d}", f"trainer={t}"] for d, t in itertools.product(
        group_options("data"), group_options("trainer"))]
    return [to_plain(compose("train", o)) for o in overrides]


def test_every_config_key_is_declared_exactly_once() -> None:
    undeclared, ambiguous = set(), set()
    for cfg in every_shipped_config():
        for key, _ in identity.flatten(cfg):
            roles = identity.roles_of(key)
            if not roles:
                undeclared.add(key)
            elif len(roles) > 1:
                ambiguous.add(f"{key}: {roles}")
    assert not undeclared, f"declare these in conf/identity.yaml: {sorted(undeclared)}"
    assert not ambiguous, sorted(ambiguous)


def test_the_signature_follows_the_declaration() -> None:
    base = to_plain(compose("train"))
    same = {**base, "paths": {**base["paths"], "root": "/elsewhere"},
            "data": {**base["data"], "loader": {**base["data"]["loader"], "num_workers": 3}},
            "trainer": {**base["trainer"], "log_every_n_steps": 1}}
    assert signature(same) == signature(base)  # volatile and logged keys
    for changed in ({**base, "seed": 7},
                    {**base, "model": {**base["model"], "lr": 0.5}},
                    {**base, "trainer": {**base["trainer"], "gradient_clip_val": 1.0}}):
        assert signature(changed) != signature(base)  # identity, and undeclared keys


def test_params_leave_out_volatile_keys_only() -> None:
    params = tracking.params_from_config(to_plain(compose("train")))
    assert "seed" in params and "trainer.log_every_n_steps" in params
    assert not [k for k in params if identity.role(k) == "volatile"]
    assert not any(k.startswith(("paths.", "logger.", "data.cache.")) for k in params)


@pytest.mark.parametrize("entry,key,expected", [
    ("data.source.", "data.source.root", True), ("data.source.", "data.sources", False),
    ("resume", "resume", True), ("resume", "resume_from", False),
    ("distortion.pitch", "distortion.pitch.low", True),
])
def test_entries_cover_keys(entry: str, key: str, expected: bool) -> None:
    assert identity.covers(entry, key) is expected
