"""What every argparse command shares: verbosity flags, turning errors into exit codes, and
the arguments of the commands that run a trained model on a test set."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from deepfake_detect import console
from deepfake_detect.errors import DeepfakeDetectError, UsageError

log = logging.getLogger("deepfake_detect.cli")


def add_verbosity(parser: argparse.ArgumentParser, quiet_help: str = "warnings and errors "
                  "only") -> None:
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more detail (-vv: also the libraries' own messages)")
    parser.add_argument("-q", "--quiet", action="store_true", help=quiet_help)


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None
          ) -> argparse.Namespace | int:
    """Parsed arguments with console logging set up, or argparse's exit code (``--help``: 0,
    a usage error: 2)."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    console.setup(-1 if getattr(args, "quiet", False) else getattr(args, "verbose", 0))
    return args


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                action: Callable[[argparse.Namespace], int],
                what: str | Callable[[argparse.Namespace], str] = "the output") -> int:
    """What every argparse command's ``main`` does: parse ``argv`` (with console logging set
    up), then ``action(args)``'s exit code. ``--help`` is 0 and a usage error 2 (argparse's);
    a DeepfakeDetectError, or a failed write of ``what``, is one line on stderr and 2."""
    args = parse(parser, argv)
    if isinstance(args, int):
        return args
    try:
        return action(args)
    except DeepfakeDetectError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: cannot write {what(args) if callable(what) else what}: {err}",
              file=sys.stderr)
        return 2


def add_model_run_args(parser: argparse.ArgumentParser, out_help: str) -> None:
    """Overrides, ``--model``, ``--out``, MLflow, device and thread arguments of a command that
    runs a trained model on the test split of a composed config."""
    parser.add_argument("-m", "--model", required=True,
                        help="model.ckpt bundle, run directory, MLflow run id, "
                             "runs:/<run id>/model/model.ckpt or models:/<name>/<version>")
    parser.add_argument("-o", "--out", type=Path, default=None, help=out_help)
    parser.add_argument("--no-mlflow", action="store_true",
                        help="do not log the files to the model's MLflow run")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: logger.tracking_uri, else "
                             "$MLFLOW_TRACKING_URI, else sqlite:///<paths.root>/mlflow.db)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def check_model_run_args(args: argparse.Namespace) -> None:
    """UsageError for an override without ``=`` or a thread count below 1; sets torch's CPU
    threads when given."""
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise UsageError(f"{bad[0]!r} is not a KEY=VALUE override")
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {args.threads}")
        import torch  # only the commands that run a model pay for it

        torch.set_num_threads(args.threads)
