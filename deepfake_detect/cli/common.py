"""What every argparse command shares: verbosity flags and turning errors into exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from deepfake_detect import console
from deepfake_detect.errors import DeepfakeDetectError

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


def run(action: Callable[[], int], what: str = "the output") -> int:
    """``action()``'s exit code; a DeepfakeDetectError or a failed write is one line on stderr
    and exit code 2."""
    try:
        return action()
    except DeepfakeDetectError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: cannot write {what}: {err}", file=sys.stderr)
        return 2
