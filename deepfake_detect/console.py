"""What a user sees: our messages through ``logging``, third-party chatter filtered at the
source.

Modules log with ``logging.getLogger(__name__)``: ``info`` for what a user should read (data,
epochs, results, where things went), ``debug`` for detail, ``warning`` for what needs a
look. The commands call :func:`setup` (``-v`` for detail, ``-q`` for warnings only); the
training command gets the same through Hydra's ``job_logging`` (``conf/hydra/default.yaml``),
which also writes everything to the run's log file.

Filtered because a user cannot act on it: Lightning's hardware lines and tips, MLflow's
database set-up lines, matplotlib's font-cache notice, deprecation warnings raised inside
third-party libraries, and the MP3 decoder's notes on stderr (:func:`decoder_stderr`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from typing import IO

from tqdm.auto import tqdm

PACKAGE = "deepfake_detect"
PREFIX = "[deepfake-detect]"
# Loggers whose INFO lines are chatter here (shown with -v -v).
CHATTY = ("lightning", "lightning.pytorch", "lightning.fabric",
          "lightning.pytorch.utilities.rank_zero", "mlflow", "mlflow.store.db.utils",
          "alembic", "matplotlib", "matplotlib.font_manager", "numba", "urllib3", "git",
          "torch.distributed", "hydra")
THIRD_PARTY_WARNINGS = r"(lightning|torch|torchmetrics|torchvision|mlflow|librosa|audioread|" \
                       r"numba|hydra|omegaconf|pydantic|sqlalchemy|alembic)(\.|$)"
# What libmpg123 (inside libsndfile) prints on stderr about frames it resynchronises past.
ARTIFACT_BARS = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
DECODER_NOTES = (b"Note: ", b"[src/libmpg123", b"Illegal Audio-MPEG-Header", b"resync")


class ConsoleFormatter(logging.Formatter):
    """``[deepfake-detect] message`` for our INFO lines, ``[deepfake-detect] warning: …``
    for our warnings, ``[<library>] LEVEL: …`` for anything else that gets through."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and record.levelno >= logging.ERROR:
            message += "\n" + self.formatException(record.exc_info)
        ours = record.name == PACKAGE or record.name.startswith(PACKAGE + ".")
        if ours:
            level = "" if record.levelno < logging.WARNING else record.levelname.lower() + ": "
            return f"{PREFIX} {level}{message}"
        return f"[{record.name.split('.')[0]}] {record.levelname}: {message}"


class BarSafeHandler(logging.StreamHandler):
    """A stream handler that writes through ``tqdm.write``: a line logged while a progress
    bar is on screen goes above the bar instead of into it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


class StderrHandler(BarSafeHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (not the stream it was made
    with, which a test harness or a redirect may have closed since)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> IO[str]:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


def quiet_third_party(verbosity: int = 0) -> None:
    """Chatter off (``verbosity`` 2 and more turns it back on). Safe to call again."""
    level = logging.INFO if verbosity >= 2 else logging.WARNING
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", logging.getLevelName(level))
    if verbosity < 2:  # MLflow's bar per artifact moved
        os.environ.setdefault(ARTIFACT_BARS, "false")
    for name in CHATTY:
        logging.getLogger(name).setLevel(level)
    if verbosity < 2:
        for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
            warnings.filterwarnings("ignore", category=category, module=THIRD_PARTY_WARNINGS)
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
        warnings.filterwarnings("ignore", message=r".*litlogger.*")
        # Epoch metrics are logged per epoch, whatever the step interval.
        warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")


def release_lightning_handlers() -> None:
    """Lightning installs its own console handler on import: send its records through ours
    (the one handler a run's log file also hangs on)."""
    import lightning.pytorch  # noqa: F401 - installs its handler on import

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def setup(verbosity: int = 0) -> None:
    """Console logging for an argparse command: ``verbosity`` -1 (``-q``) warnings only,
    0 our messages, 1 (``-v``) our detail, 2 (``-vv``) third-party chatter too."""
    quiet_third_party(verbosity)
    ours = logging.getLogger(PACKAGE)
    ours.setLevel(logging.WARNING if verbosity < 0 else
                  logging.INFO if verbosity == 0 else logging.DEBUG)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_deepfake_detect", False):
            root.removeHandler(handler)
    handler = StderrHandler()
    handler.setFormatter(ConsoleFormatter())
    handler._deepfake_detect = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)


_DECODER_BLOCKS = [0]  # decoder_stderr blocks open in this process


@contextlib.contextmanager
def decoder_stderr() -> Iterator[None]:
    """Keep libmpg123's notes about resynchronised frames off the console: stderr (the file
    descriptor C libraries write to) goes to a temporary file for the block, and whatever in
    it is not such a note is written back afterwards."""
    if _DECODER_BLOCKS[0]:  # inside such a block already (planning a listing's windows):
        yield  # the outer one filters, so reading one header costs no redirection
        return
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (captured, closed)
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), fd)
        _DECODER_BLOCKS[0] += 1
        try:
            yield
        finally:
            _DECODER_BLOCKS[0] -= 1
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            kept = [line for line in sink.read().splitlines(keepends=True)
                    if not line.startswith(DECODER_NOTES[:2])
                    and not any(word in line for word in DECODER_NOTES[2:])]
            if kept:
                os.write(fd, b"".join(kept))


@contextlib.contextmanager
def no_artifact_bars() -> Iterator[None]:
    """No MLflow "Downloading artifacts" progress bar for the block (one per small file a
    report reads): ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR`` off, and back as it was."""
    before = os.environ.get(ARTIFACT_BARS)
    os.environ[ARTIFACT_BARS] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ARTIFACT_BARS, None)
        else:
            os.environ[ARTIFACT_BARS] = before
