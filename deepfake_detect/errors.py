"""Errors that carry a message meant for the user, not a traceback."""

from __future__ import annotations


class DeepfakeDetectError(Exception):
    """Base class: the CLI prints the message and exits non-zero."""


class ConfigError(DeepfakeDetectError, ValueError):
    """A config value is invalid: the message names the key and what is allowed."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"config key '{key}': {message}")

    def under(self, prefix: str, suffix: str = "") -> ConfigError:
        """The same error for the key ``<prefix>.<key>`` (a node checked on its own, then
        placed in the config), its message extended by ``suffix``."""
        return ConfigError(f"{prefix}.{self.key}", self.message + suffix)


class DataError(DeepfakeDetectError):
    """Data cannot be used as configured (missing root, empty class or split, leakage)."""


class UsageError(DeepfakeDetectError):
    """A command cannot run as given: a missing model, no inputs, a bad option (exit 2)."""


class NothingToHoldOut(ConfigError):
    """``data.split.holdout_generator`` indexes past the source's generators: in a sweep over
    indices (leave-one-generator-out) that job has nothing to do."""


class GeneratorSkipped(NothingToHoldOut):
    """Leave-one-generator-out: holding out ``generator`` leaves a split without a class
    (``reason``); a sweep job records it (a FINISHED MLflow run tagged ``skipped``) and the
    sweep goes on."""

    def __init__(self, generator: str, reason: str):
        super().__init__("data.split.holdout_generator",
                         f"generator {generator!r} cannot be held out: {reason}")
        self.generator, self.reason = generator, reason


class RunInProgress(DeepfakeDetectError):
    """Another process is running the same configuration (``if_running: refuse``)."""


class StoreError(DeepfakeDetectError):
    """The MLflow tracking store cannot be used: unreachable, or the login is refused."""
