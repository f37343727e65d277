"""How long a large feature store takes to open: listing it (indexes only), and a job reading a
set of every clip (indexes, maps, each row's crc32 checked once), against building it.

    python experiments/bench_store.py --clips 30000 --rows 32 32 --shards 4

The rows are cheap constructed arrays (the store's costs, not the features'); ``--shards``
builds the store in that many ``--shard i/N`` passes, as a SLURM array would. Prints one JSON
line of figures, with the peak RSS of this process.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from deepfake_detect.data.cache import FeatureCache, Request, list_folders
from deepfake_detect.data.clips import Clip


class Constructed:
    """A row per clip from its index (no audio: the store's own costs only)."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape

    def __call__(self, clip: Clip) -> tuple[np.ndarray, dict]:
        index = int(clip.clip_id[1:])
        return np.full(self.shape, index % 997, dtype=np.float32), {"index": index}


def request(clips: list[Clip], shape: tuple[int, ...]) -> Request:
    return Request({"kind": "bench", "rows": list(shape)}, clips, Constructed(shape), shape,
                   "bench", [{"file": f"/data/{c.clip_id}.wav", "size": 1, "mtime_ns": 1}
                             for c in clips])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=30000)
    parser.add_argument("--rows", type=int, nargs="+", default=[32, 32])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args(argv)
    shape = tuple(args.rows)
    clips = [Clip(f"c{i}", i % 2, f"g{i}", "human") for i in range(args.clips)]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        start = time.perf_counter()
        full = request(clips, shape)
        for index in range(args.shards):  # as `deepfake-detect-cache build --shard i/N`
            mine = [c for c, k in zip(clips, full.row_keys, strict=True)
                    if int(k[:2], 16) % args.shards == index]
            FeatureCache(tmp, workers=1).get_or_build_many([request(mine, shape)])
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        info, = list_folders(tmp)
        list_s = time.perf_counter() - start
        start = time.perf_counter()
        (entry, stats), = FeatureCache(tmp, workers=1).get_or_build_many([request(clips, shape)])
        read_s = time.perf_counter() - start
        assert stats.clips_computed == 0 and len(entry.rows) == args.clips
        assert float(entry.features[-1][0, 0]) == (args.clips - 1) % 997
    print(json.dumps({"clips": args.clips, "row_shape": list(shape), "shards": info.shards,
                      "store_mb": round(info.bytes / 1e6, 1), "build_s": round(build_s, 2),
                      "list_s": round(list_s, 3), "read_set_s": round(read_s, 2),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                           / 1024, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
