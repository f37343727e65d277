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
        placed in the config), its message extended by ``suffix``; of the same class where it
        is built like this one (:class:`NothingToHoldOut`)."""
        kind = type(self) if type(self).__init__ is ConfigError.__init__ else ConfigError
        return kind(f"{prefix}.{self.key}", self.message + suffix)


class DataError(DeepfakeDetectError):
    """Data cannot be used as configured (missing root, empty class or split, leakage)."""


class UsageError(DeepfakeDetectError):
    """A command cannot run as given: a missing model, no inputs, a bad option (exit 2)."""


class NothingToHoldOut(ConfigError):
    """``data.split.holdout_generator`` indexes past the source's generators, or
    ``data.split.fold`` past the folds: in a sweep over indices (leave-one-generator-out,
    ``experiment=kfold data.split.folds=4``) that job has nothing to do."""


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


class DiskFull(DeepfakeDetectError):
    """No space left on the device a file was being written to (``ENOSPC``, a quota, a full
    sqlite store): the path, the space free there and about how much the write needed."""

    def __init__(self, path: str, free: int | None, needed: int | None):
        self.path, self.free, self.needed = path, free, needed
        room = f"{_size(free)} free there" if free is not None else "free space unknown"
        need = f", about {_size(needed)} needed" if needed else ""
        super().__init__(f"disk full writing {path} ({room}{need}); free some space and run "
                         "the same command again: it resumes where it stopped")


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
