"""``deepfake-detect-explain --model REF [overrides]``: explain any trained model on the test
split of any source under any distortion (:mod:`deepfake_detect.explain.run`).

The model is anything ``deepfake-detect-predict`` takes; its feature config comes from the
bundle. The data come from ``conf/train.yaml`` composed with Hydra-style overrides
(``data=folder data.source.root=DIR``, ``distortion=pitch``, ``experiment=quickstart``,
``seed=1``, ``explain.method=gradcam`` ...): pass the training run's data overrides and seed
to explain its own test split. Exit codes: 0 done, 2 usage errors.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from deepfake_detect.cli.common import (
    add_model_run_args,
    add_verbosity,
    check_model_run_args,
    run_command,
)
from deepfake_detect.explain.run import explain_model

log = logging.getLogger("deepfake_detect.cli.explain")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepfake-detect-explain",
        description="What does a trained detector look at? Mel-band occlusion (drop in AUROC "
                    "and accuracy per masked band, against Hz) and saliency maps (per class "
                    "and generator, over the mel axis and time) on the test split of any "
                    "source under any distortion.",
        epilog="Overrides compose conf/train.yaml as in deepfake-detect-train, e.g. "
               "experiment=quickstart explain.distortions=[base,pitch] "
               "explain.band_width=2. Exit status: 0 done, 2 usage error.")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="Hydra overrides for the data, seed, distortion and explain.*")
    add_model_run_args(parser, "output folder (default <paths.root>/explain/<run id>)")
    parser.add_argument("--label", default=None,
                        help="file name prefix (default: the source name, e.g. synthetic); "
                             "files are <kind>_<label>-<distortion>.*")
    add_verbosity(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``deepfake-detect-explain``; returns the exit status."""
    return run_command(build_parser(), argv, _explain, "the explain files")


def _explain(args: argparse.Namespace) -> int:
    check_model_run_args(args)
    result = explain_model(args.model, args.overrides, out=args.out, label=args.label,
                           mlflow=not args.no_mlflow, tracking_uri=args.tracking_uri,
                           device=args.device)
    log.info("wrote %d files to %s", len(result["files"]), result["out"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
