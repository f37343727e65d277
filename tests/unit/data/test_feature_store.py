"""The per-clip feature store: rows identical to the previous per-split cache, computed once
per (clip, distortion, draw) whatever the fold or seed, shared safely, corruption rebuilt,
and the ``deepfake-detect-cache`` command."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest

from deepfake_detect.data.cache import FeatureCache, Request, list_folders
from deepfake_detect.data.clips import Clip
from deepfake_detect.data.distortions import draw_params
from deepfake_detect.training.plan import datamodule_of, plan
from tests.helpers import legacy_cache
from tests.helpers.audio_data import make_folder

SETS = ("train", "val", "test/base", "test/pitch", "test/combined")


def prepared(make_cfg, *overrides: str):
    dm = datamodule_of(plan(make_cfg("data.cache.workers=1", *overrides)))
    dm.build()
    return dm


def assert_same_sets(new: dict, old: dict) -> None:
    assert list(new) == list(old)
    for name in old:
        assert np.array_equal(np.asarray(new[name].features), np.asarray(old[name].features)), name
        assert np.asarray(new[name].features).dtype == np.float32
        assert new[name].rows == old[name].rows and new[name].skipped == old[name].skipped


@pytest.mark.parametrize("store", ["features", "waveform"])
def test_rows_are_identical_to_the_previous_per_split_cache(make_cfg, tmp_path, store) -> None:
    dm = prepared(make_cfg, "eval.distortions=[base,pitch,combined]",
                  f"data.cache.store={store}", f"data.cache.dir={tmp_path / 'store'}")
    old, _ = legacy_cache.legacy_entries(dm, tmp_path / "legacy")
    assert_same_sets(dm.entries, old)


def test_file_rows_and_skipped_clips_are_identical_to_the_previous_cache(make_cfg,
                                                                          tmp_path) -> None:
    make_folder(tmp_path / "audio")  # with broken files: skipped clips, and their reasons
    folder = ["data=folder", f"data.source.root={tmp_path / 'audio'}", "data.source.n_clips=null",
              "eval.distortions=[base,pitch]", "distortion=tempo"]
    dm = prepared(make_cfg, *folder, f"data.cache.dir={tmp_path / 'store'}")
    old, _ = legacy_cache.legacy_entries(dm, tmp_path / "legacy")
    assert sum(len(e.skipped) for e in old.values()) > 0
    assert_same_sets(dm.entries, old)


def test_a_k_fold_study_computes_each_clip_once(make_cfg, tmp_path) -> None:
    store = f"data.cache.dir={tmp_path / 'store'}"
    computed, clips = [], set()
    for fold in range(5):
        dm = prepared(make_cfg, store, "data.split.folds=5", f"data.split.fold={fold}",
                      "eval.distortions=[base]")
        computed.append(dm.stats.clips_computed)
        clips |= {r["clip_id"] for e in dm.entries.values() for r in e.rows}
        assert dm.describe()["cache"]["clips_computed"] == computed[-1]
    assert computed == [len(clips), 0, 0, 0, 0]  # folds 2-5 read every row
    legacy = []
    for fold in range(5):  # the per-split cache computed every fold's clips again
        dm = datamodule_of(plan(make_cfg(store, "data.split.folds=5", f"data.split.fold={fold}",
                                         "eval.distortions=[base]")))
        legacy.append(legacy_cache.legacy_entries(dm, tmp_path / "legacy")[1].clips_computed)
    assert legacy[0] == len(clips) and min(legacy[1:]) > 0  # (a set seen before was reused)


def test_a_second_seed_recomputes_only_what_the_seed_changes(make_cfg, tmp_path) -> None:
    store = f"data.cache.dir={tmp_path / 'store'}"
    first = prepared(make_cfg, store, "seed=0", "data.split.folds=2", "data.split.fold=0",
                     "eval.distortions=[base,pitch]")
    assert first.stats.clips_computed == 16 + len(first.entries["test/pitch"].rows)
    second = prepared(make_cfg, store, "seed=1", "data.split.folds=2", "data.split.fold=0",
                      "eval.distortions=[base,pitch]")
    # base draws nothing: its rows serve every seed; pitch's draws follow the seed
    assert second.stats.clips_computed == len(second.entries["test/pitch"].rows) > 0
    assert base_keys(second) == base_keys(first)  # all 16 clips, in other splits
    pitch = second.test_distortions[1]
    for row in second.entries["test/pitch"].rows:
        assert row["params"] == draw_params(pitch, 1, row["clip_id"])
        assert row["params"] != draw_params(pitch, 0, row["clip_id"])


def base_keys(dm) -> dict[str, str]:
    """Each clip's row key under base, whichever set it is in."""
    return {row["clip_id"]: key for name in ("train", "val", "test/base")
            for row, key in zip(dm.entries[name].rows, dm.entries[name].keys, strict=True)}


def slow_work(clip: Clip) -> tuple[np.ndarray, dict]:
    flag = Path(os.environ["STORE_TEST_FLAG"])
    flag.touch()  # the first job is computing (it holds the locks)
    time.sleep(0.05)
    return np.full((3,), float(clip.clip_id[1:]), dtype=np.float32), {"pid": os.getpid()}


CLIPS = [Clip(f"c{i:02d}", i % 2, f"g{i}", "human") for i in range(12)]


def _build_in_child(root: str, queue) -> None:
    (entry, stats), = FeatureCache(root, workers=1).get_or_build_many(
        [Request({"kind": "test"}, CLIPS, slow_work, (3,), "shared")])
    queue.put((stats.clips_computed, [r["params"]["pid"] for r in entry.rows]))


def test_parallel_jobs_share_rows_one_computes_the_other_waits(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STORE_TEST_FLAG", str(tmp_path / "flag"))
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    first = context.Process(target=_build_in_child, args=(str(tmp_path / "s"), queue))
    first.start()
    deadline = time.monotonic() + 60
    while not (tmp_path / "flag").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    second = context.Process(target=_build_in_child, args=(str(tmp_path / "s"), queue))
    second.start()
    results = sorted([queue.get(timeout=120), queue.get(timeout=120)])
    first.join(30), second.join(30)
    (waited, pids_seen), (computed, pids) = results
    assert (waited, computed) == (0, len(CLIPS))  # the second job read the first one's rows
    assert pids_seen == pids and len(set(pids)) == 1


def test_a_corrupt_row_alone_is_rebuilt(tmp_path, caplog) -> None:
    work = legacy_like_work
    cache = FeatureCache(tmp_path, workers=1)
    entry, _ = cache.get_or_build({"kind": "t"}, CLIPS, work, (3,), "t")
    shard = entry.features.files[0]
    with shard.open("r+b") as handle:
        handle.seek(-4, os.SEEK_END)
        handle.write(b"\x00\x00\xc0\x7f")  # the last row: its last value
    again, stats = FeatureCache(tmp_path, workers=1).get_or_build({"kind": "t"}, CLIPS, work,
                                                                    (3,), "t")
    assert stats.rebuilt_corrupt == 1 and stats.clips_computed == 1
    assert "checksum mismatch" in caplog.text
    assert np.array_equal(np.asarray(again.features), np.stack([work(c)[0] for c in CLIPS]))
    assert len(again.features.files) == 2  # the rebuilt row in a new shard, which wins
    _, stats = FeatureCache(tmp_path, workers=1).get_or_build({"kind": "t"}, CLIPS, work,
                                                               (3,), "t")
    assert (stats.clips_computed, stats.rebuilt_corrupt) == (0, 0)


def legacy_like_work(clip: Clip) -> tuple[np.ndarray, dict]:
    return np.arange(3, dtype=np.float32) + int(clip.clip_id[1:]), {"i": int(clip.clip_id[1:])}


def test_a_store_is_listed_from_its_indexes_alone(tmp_path, monkeypatch) -> None:
    cache = FeatureCache(tmp_path, workers=1)
    entry, _ = cache.get_or_build({"kind": "t"}, CLIPS, legacy_like_work, (3,), "t")
    index = json.loads((entry.features.files[0].parent / "index.json").read_text())
    assert len(index["entries"]) == len(CLIPS)

    def no_rows(*args, **kwargs):
        raise AssertionError("listing read rows")

    with monkeypatch.context() as patch:
        patch.setattr(np, "load", no_rows)
        info, = list_folders(tmp_path)
    assert (info.rows, info.shards, info.kind, info.corrupt) == (len(CLIPS), 1, "t", [])
    entry.features.files[0].write_bytes(b"")  # a truncated shard: listed, not removed
    info, = list_folders(tmp_path)
    assert info.rows == 0 and "bytes" in info.corrupt[0] and entry.features.files[0].exists()


def test_rows_built_ahead_under_a_band_of_fmax_auto_are_the_rows_training_reads(
        make_cfg, tmp_path) -> None:
    """``deepfake-detect-cache build`` (every clip) resolves ``fmax: auto`` as a training
    job's split does, so that the job reads the rows built ahead instead of computing them
    again under another key."""
    args = ("data.cache.workers=1", f"data.cache.dir={tmp_path / 'store'}", "features=stft",
            "eval.distortions=[base]")
    ahead = datamodule_of(plan(make_cfg(*args)))
    sets = ahead.sets
    assert sets.features.fmax == "auto"
    built = sets.build(sets.every_clip([ahead.train_distortion, *ahead.test_distortions]))
    assert built.clips_computed > 0 and sets.features.fmax == 8000.0  # 16 kHz: Nyquist
    assert prepared(make_cfg, *args).stats.clips_computed == 0
