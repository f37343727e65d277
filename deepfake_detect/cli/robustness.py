"""``deepfake-detect-robustness --model REF --distortion NAME --values V1,V2,... [overrides]``:
a robustness curve of any trained model, without retraining
(:mod:`deepfake_detect.evaluation.robustness_run`).

The model is anything ``deepfake-detect-predict`` takes. The test clips come from
``conf/train.yaml`` composed with Hydra-style overrides (``experiment=quickstart``,
``seed=1``, ``data=folder data.source.root=DIR`` ...): pass the training run's data overrides
and seed to use its own test split. Exit codes: 0 done, 2 usage errors.
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
from deepfake_detect.errors import UsageError

log = logging.getLogger("deepfake_detect.cli.robustness")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepfake-detect-robustness",
        description="How a trained detector holds up as a distortion gets stronger: its test "
                    "set under a distortion preset at fixed strengths (pitch: semitones, "
                    "tempo: rate, mp3 / codec: kbps, resample: Hz, noise: SNR dB, lowpass: "
                    "cutoff Hz, reverb: decay s), with accuracy, balanced accuracy, AUROC, EER "
                    "and per-generator recall and their 95 %% group-bootstrap intervals.",
        epilog="Overrides compose conf/train.yaml as in deepfake-detect-train, e.g. "
               "experiment=quickstart seed=0. Writes curve_<distortion>.{csv,json,png} and "
               "curve_<distortion>_predictions.csv. Exit status: 0 done, 2 usage error.")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="Hydra overrides for the data and seed")
    add_model_run_args(parser, "output folder (default <paths.root>/robustness/<run id>)")
    parser.add_argument("-d", "--distortion", required=True,
                        help="a preset of conf/distortion/ (pitch, tempo, mp3, resample, ...)")
    parser.add_argument("--values", required=True, type=_values,
                        help="comma-separated strengths, e.g. -4,-3,-2,-1,0,1,2,3,4")
    parser.add_argument("--effect", default=None,
                        help="for a chain of several effects: the one whose strength to sweep")
    parser.add_argument("--n-boot", type=int, default=1000,
                        help="bootstrap replicates per interval (default 1000)")
    add_verbosity(parser)
    return parser


def _values(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of numbers: {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one value")
    return values


def join_values(argv: Sequence[str]) -> list[str]:
    """``--values -4,-3`` as ``--values=-4,-3`` (argparse would take ``-4,-3`` for an option)."""
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        if args[i] == "--values" and i + 1 < len(args):
            out.append(f"--values={args[i + 1]}")
            i += 2
        else:
            out.append(args[i])
            i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``deepfake-detect-robustness``; returns the exit status."""
    argv = join_values(sys.argv[1:] if argv is None else argv)
    return run_command(build_parser(), argv, _robustness, "the robustness files")


def _robustness(args: argparse.Namespace) -> int:
    from deepfake_detect.evaluation.robustness_run import robustness_model

    check_model_run_args(args)
    if args.n_boot < 10:
        raise UsageError(f"--n-boot must be at least 10, got {args.n_boot}")
    result = robustness_model(args.model, args.distortion, args.values, args.overrides,
                              effect=args.effect, out=args.out, mlflow=not args.no_mlflow,
                              tracking_uri=args.tracking_uri, device=args.device,
                              n_boot=args.n_boot)
    curve = result["curve"]
    for point in curve.points:
        print(f"{curve.parameter} {point.value:>8g}  accuracy "
              f"{point.metrics['accuracy'].text()}  AUROC {point.metrics['auroc'].text()}  "
              f"EER {point.metrics['eer'].text()}")
    log.info("wrote %d files to %s", len(result["files"]), result["out"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
