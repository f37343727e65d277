"""``deepfake-detect-cache {list,prune,build}``: what the feature store holds, pruning it, and
building a dataset's rows ahead of training (:mod:`deepfake_detect.data.cache`).

``list`` reads the store's indexes only (no row is read); ``prune`` removes store folders
not used for ``--older-than`` days and/or whose config matches ``--where key=value``
(``kind=fakeprint``, ``features.n_mels=64``), and with ``--legacy`` the per-split entries of
earlier versions; ``build [overrides] --shard i/N`` computes the rows of every clip of the
composed config's source under its training and test distortions (``--split-only``: only
the sets of its own split), shard ``i`` of ``N``: the shards' rows and locks are disjoint, so
N jobs (a SLURM array, ``hydra/launcher=submitit_slurm``) build a dataset in parallel and every
training job then only reads. Exit codes: 0 done, 2 usage or config errors.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from deepfake_detect.cli.common import add_verbosity, run_command
from deepfake_detect.errors import UsageError

log = logging.getLogger("deepfake_detect.cli.cache")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepfake-detect-cache",
        description="The feature store: list what it holds, prune it by age or config, build "
                    "a dataset's rows ahead of training (in independent shards).",
        epilog="The store is data.cache.dir of conf/train.yaml composed with the overrides "
               "(e.g. paths.root=DIR), or --dir. Exit status: 0 done, 2 usage error.")
    add_verbosity(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("list", "what the store holds and its size"),
                       ("prune", "remove store folders by age or config"),
                       ("build", "compute a dataset's rows ahead of training")):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                         help="Hydra overrides of conf/train.yaml (data, features, distortion, "
                              "eval.distortions, seed, paths.root ...)")
        sub.add_argument("--dir", type=Path, default=None,
                         help="the store folder (default: data.cache.dir)")
        add_verbosity(sub)
    prune = commands.choices["prune"]
    prune.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                       help="folders no job has read or written for this many days")
    prune.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                       help="folders whose config has this value (repeatable), e.g. "
                            "kind=fakeprint or features.n_mels=64")
    prune.add_argument("--legacy", action="store_true",
                       help="also the per-split entries of earlier versions")
    prune.add_argument("--dry-run", action="store_true", help="say what would go")
    build = commands.choices["build"]
    build.add_argument("--shard", default="0/1", metavar="I/N",
                       help="this job's shard of the rows (0-based), e.g. 3/16")
    build.add_argument("--split-only", action="store_true",
                       help="only the sets of this config's split (default: every clip under "
                            "every distortion, for every fold, seed split and held-out job)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``deepfake-detect-cache``; returns the exit status."""
    return run_command(build_parser(), argv, _action, "the feature store")


def _action(args: argparse.Namespace) -> int:
    return {"list": _list, "prune": _prune, "build": _build}[args.command](args)


def _check_overrides(overrides: Sequence[str]) -> None:
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise UsageError(f"{bad[0]!r} is not a KEY=VALUE override")


def _store_dir(args: argparse.Namespace) -> Path:
    _check_overrides(args.overrides)
    if args.dir is not None:
        return args.dir
    from deepfake_detect.config import compose, to_plain

    resolved = to_plain(compose("train", args.overrides))
    return Path(str(resolved["data"]["cache"]["dir"])).expanduser()


def _list(args: argparse.Namespace) -> int:
    from deepfake_detect.data.cache import legacy_entries, list_folders

    root = _store_dir(args)
    infos = list_folders(root)
    now = time.time()
    print(f"{'folder':<26} {'rows':>8} {'skipped':>7} {'shards':>6} {'MB':>9} "
          f"{'used':>9}  config")
    for info in infos:
        print(f"{info.path.name:<26} {info.rows:>8} {info.skipped:>7} {info.shards:>6} "
              f"{info.bytes / 1e6:>9.1f} {_age(now - info.used):>9}  {_config_text(info.parts)}")
        for problem in info.corrupt:
            print(f"  corrupt (the next job that needs its rows rebuilds them): {problem}")
    legacy = legacy_entries(root)
    total = sum(info.bytes for info in infos)
    print(f"{len(infos)} store folder(s), {sum(i.rows for i in infos)} rows, "
          f"{total / 1e6:.1f} MB in {root}"
          + (f"; {len(legacy)} entries of the earlier per-split cache (prune --legacy)"
             if legacy else ""))
    return 0


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _config_text(parts: dict) -> str:
    """The config of a store folder on one line (its kind and settings)."""
    flat = []
    for key, value in parts.items():
        if isinstance(value, dict):
            flat += [f"{k}={v}" for k, v in value.items()]
        elif key != "kind":
            flat.append(f"{key}={value}")
    return f"{parts.get('kind', 'rows')}: " + " ".join(flat)


def _prune(args: argparse.Namespace) -> int:
    from deepfake_detect.data.cache import prune

    conditions = {}
    for item in args.where:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--where {item!r} is not KEY=VALUE")
        conditions[key] = value
    if args.older_than is None and not conditions and not args.legacy:
        raise UsageError("say what to prune: --older-than DAYS, --where KEY=VALUE or --legacy")
    root = _store_dir(args)
    older = None if args.older_than is None else args.older_than * 86400
    removed = prune(root, older, conditions, args.legacy, args.dry_run)
    for path in removed:
        print(f"{'would remove' if args.dry_run else 'removed'} {path}")
    print(f"{len(removed)} folder(s) {'to remove' if args.dry_run else 'removed'} in {root}")
    return 0


def _shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and 0 <= int(index) < int(count)):
        raise UsageError(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/4")
    return int(index), int(count)


def _build(args: argparse.Namespace) -> int:
    from deepfake_detect.config import compose
    from deepfake_detect.training.plan import datamodule_of, plan

    _check_overrides(args.overrides)
    shard = _shard(args.shard)
    overrides = list(args.overrides)
    if args.dir is not None:
        overrides.append(f"data.cache.dir={args.dir}")
    dm = datamodule_of(plan(compose("train", overrides)))
    sets = dm.sets
    start = time.perf_counter()
    wanted = (sets.planned(dm.plan()) if args.split_only
              else sets.every_clip([dm.train_distortion, *dm.test_distortions]))
    stats = sets.build(wanted, shard)
    print(f"shard {shard[0]}/{shard[1]}: {stats.clips_computed} rows computed, "
          f"{stats.built} set(s) built, {stats.reused} read whole, "
          f"{time.perf_counter() - start:.1f} s (store {sets.cache.root})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
