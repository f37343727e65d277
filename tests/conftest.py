"""Shared fixtures and hooks; the helpers they use live in ``tests/helpers/``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from tests.helpers.configs import TINY, compose_cfg

os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")


PASSED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Remember whether a test's call passed (an unexpected pass of an xfail does not)."""
    report = yield
    if report.when == "call":
        item.stash[PASSED] = report.passed and not hasattr(report, "wasxfail")
    return report


@pytest.fixture(autouse=True)
def _drop_checkpoints_of_passed_tests(request: pytest.FixtureRequest):
    """A tiny training run still leaves a few hundred MB of ResNet18 checkpoints (a full run
    of the suite, about 13 GB): once a test has passed, its own folder's go. A failed test
    keeps them to look at; folders that fixtures share across tests are left alone."""
    folder = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if folder is not None and request.node.stash.get(PASSED, False):
        for checkpoint in folder.rglob("*.ckpt"):
            checkpoint.unlink(missing_ok=True)


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """``make_cfg(*overrides, tiny=True)``: a composed config writing under tmp_path."""

    def make(*overrides: str, tiny: bool = True, root: Path | None = None) -> DictConfig:
        return compose_cfg([*(TINY if tiny else []), *overrides], root or tmp_path / "out")

    return make

