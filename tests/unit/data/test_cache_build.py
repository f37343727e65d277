"""Cache builds: identical for any worker count, warmed in the parent, read without copies."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from deepfake_detect import config
from deepfake_detect.data.audio import AudioError
from deepfake_detect.data.cache import FeatureCache, Request
from deepfake_detect.data.clips import Clip
from deepfake_detect.data.datamodule import CacheConfig, FeatureDataset, LoaderConfig
from deepfake_detect.errors import ConfigError

SHAPE = (3, 5)
BAD = "c07"
calls_here: list[str] = []  # clips computed in this process (workers' calls are not seen)


def work(clip: Clip) -> tuple[np.ndarray, dict]:
    if os.getpid() == PARENT:
        calls_here.append(clip.clip_id)
    if clip.clip_id == BAD:
        raise AudioError("unreadable")
    seed = int(clip.clip_id[1:])
    return np.random.default_rng(seed).standard_normal(SHAPE), {"seed": seed}


PARENT = os.getpid()
CLIPS = [Clip(clip_id=f"c{i:02d}", label=i % 2, group=f"g{i}", generator="human")
         for i in range(24)]


def cold_work(clip: Clip) -> tuple[np.ndarray, dict]:
    """``work`` under another name: a kind of work this process has not run yet."""
    return work(clip)


def other_cold_work(clip: Clip) -> tuple[np.ndarray, dict]:
    """Another kind of work, never run here before its test."""
    return work(clip)


def build(root, workers: int, work=work):
    calls_here.clear()
    entry, stats = FeatureCache(root, workers=workers).get_or_build(
        {"test": "workers"}, CLIPS, work, SHAPE, desc="test")
    assert stats.built == 1
    return entry


def test_any_worker_count_gives_the_same_entry(tmp_path) -> None:
    one = build(tmp_path / "one", workers=1)
    assert len(calls_here) == len(CLIPS)  # all here: this process is now warm for `work`
    two = build(tmp_path / "two", workers=2)
    assert calls_here == []  # so it forks straight away: every clip ran in a worker
    assert np.array_equal(one.features, two.features)
    assert one.rows == two.rows and one.skipped == two.skipped
    assert [s["clip_id"] for s in two.skipped] == [BAD]
    assert two.features.shape == (len(CLIPS) - 1, *SHAPE)  # the header counts usable clips
    expected = np.stack([work(c)[0] for c in CLIPS if c.clip_id != BAD]).astype(np.float32)
    assert np.array_equal(two.features, expected)
    again, stats = FeatureCache(tmp_path / "two", workers=2).get_or_build(
        {"test": "workers"}, CLIPS, work, SHAPE, desc="test")
    assert stats.reused == 1 and np.array_equal(again.features, expected)  # checksum holds


def test_a_cold_parent_runs_one_clip_of_each_kind_of_work_before_forking(tmp_path) -> None:
    calls_here.clear()
    got = FeatureCache(tmp_path / "first", workers=2).get_or_build_many([
        Request({"kind": 1}, CLIPS[:12], cold_work, SHAPE, desc="one"),
        Request({"kind": 2}, CLIPS[12:], other_cold_work, SHAPE, desc="two")])
    # the first clip of each kind, here; the workers inherit their imports and numba code
    assert calls_here == [CLIPS[0].clip_id, CLIPS[12].clip_id]
    for (entry, _), clips in zip(got, (CLIPS[:12], CLIPS[12:]), strict=True):
        usable = [c for c in clips if c.clip_id != BAD]  # in clip order, whoever ran them
        assert [r["clip_id"] for r in entry.rows] == [c.clip_id for c in usable]
        assert np.array_equal(entry.features,
                              np.stack([work(c)[0] for c in usable]).astype(np.float32))
    again = build(tmp_path / "again", workers=2, work=cold_work)
    assert calls_here == []  # warm now: straight to the workers
    assert np.array_equal(again.features[:11], got[0][0].features)


def test_entries_missing_together_share_one_pool_and_hits_are_not_recomputed(tmp_path) -> None:
    def request(i: int) -> Request:  # entries of 3 clips: too few for a pool alone
        return Request({"entry": i}, CLIPS[3 * i:3 * i + 3], work, SHAPE, desc=f"e{i}")

    cache = FeatureCache(tmp_path, workers=2)
    calls_here.clear()
    (_, stats), = cache.get_or_build_many([request(3)])
    assert stats.built == 1 and len(calls_here) == 3  # alone: 3 < 2 x 2 workers, here
    calls_here.clear()
    got = cache.get_or_build_many([request(0), request(1), request(2), request(3), request(1)])
    assert calls_here == []  # one pool (of warm workers) for the 9 missing clips of 3 entries
    assert [s.built for _, s in got] == [1, 1, 1, 0, 0]
    assert [s.reused for _, s in got] == [0, 0, 0, 1, 1]  # a hit, and a repeated request
    assert got[1][0].path == got[4][0].path
    for i, (entry, _) in enumerate(got[:4]):
        usable = [c for c in CLIPS[3 * i:3 * i + 3] if c.clip_id != BAD]
        assert [r["clip_id"] for r in entry.rows] == [c.clip_id for c in usable]
        assert np.array_equal(entry.features,
                              np.stack([work(c)[0] for c in usable]).astype(np.float32))


def blas_threads(clip: Clip) -> tuple[np.ndarray, dict]:
    from threadpoolctl import threadpool_info

    threads = [pool["num_threads"] for pool in threadpool_info()]
    return np.zeros(SHAPE), {"pid": os.getpid(), "threads": threads}


def test_build_workers_run_one_blas_thread_each(tmp_path) -> None:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(2):  # the parent's own setting does not leak into the workers
        entry, _ = FeatureCache(tmp_path, workers=2).get_or_build(
            {"test": "threads"}, CLIPS, blas_threads, SHAPE, desc="threads")
    params = [row["params"] for row in entry.rows]
    assert any(p["pid"] != PARENT for p in params)  # some ran in workers
    assert all(p["threads"] and set(p["threads"]) == {1} for p in params)


LAZY_LIBRARY_BUILD = """
import json, os, sys
import numpy as np
from deepfake_detect.data.cache import FeatureCache
from deepfake_detect.data.clips import Clip

def work(clip):
    import scipy.linalg  # loads scipy's own OpenBLAS: after the build set its limit
    from threadpoolctl import threadpool_info
    return np.zeros(2), {"pid": os.getpid(),
                         "threads": [p["num_threads"] for p in threadpool_info()]}

clips = [Clip(clip_id=f"c{i}", label=0, group=f"g{i}", generator="human") for i in range(8)]
entry, _ = FeatureCache(sys.argv[1], workers=int(sys.argv[2])).get_or_build(
    {"lazy": 1}, clips, work, (2,), desc="lazy")
print(json.dumps([{**row["params"], "here": row["params"]["pid"] == os.getpid()}
                  for row in entry.rows]))
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_a_library_loaded_by_the_first_clip_runs_one_thread_too(tmp_path, workers) -> None:
    import json
    import subprocess
    import sys

    pytest.importorskip("scipy.linalg")
    out = subprocess.run([sys.executable, "-c", LAZY_LIBRARY_BUILD, str(tmp_path), str(workers)],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    rows = json.loads(out.splitlines()[-1])
    assert rows[0]["here"] and (workers == 1) == all(row["here"] for row in rows)
    assert all(set(row["threads"]) == {1} for row in rows[1:])  # every clip after the first


def bad_first(clip: Clip) -> tuple[np.ndarray, dict]:
    """``work``, with the first clip unreadable too."""
    if clip.clip_id == "c00":
        raise AudioError("unreadable")
    return work(clip)


def test_a_bad_first_clip_does_not_leave_its_kind_cold(tmp_path) -> None:
    calls_here.clear()
    entry, _ = FeatureCache(tmp_path, workers=2).get_or_build(
        {"test": "bad first"}, CLIPS, bad_first, SHAPE, desc="bad first")
    assert calls_here == ["c01"]  # the next clip warmed the parent up
    assert [s["clip_id"] for s in entry.skipped] == ["c00", BAD]


def test_kinds_of_work_are_told_apart_by_the_code_they_run() -> None:
    import functools

    from deepfake_detect.data.cache import _warm_key

    def closure(k: int):
        return lambda clip: (np.zeros(SHAPE), {"k": k})

    assert _warm_key(closure(1)) == _warm_key(closure(2)) != _warm_key(work)
    assert _warm_key(functools.partial(work)) == _warm_key(work) != _warm_key(cold_work)
    assert _warm_key(np.zeros) is type(np.zeros)  # no code of its own: its type


def test_auto_workers_uses_the_available_cores(tmp_path) -> None:
    assert FeatureCache(tmp_path, workers="auto").workers == len(os.sched_getaffinity(0))


def test_dataset_items_are_views_of_the_memory_map(tmp_path) -> None:
    entry = build(tmp_path, workers=1)
    x, label, index = FeatureDataset(entry)[3]
    assert x.shape == (1, *SHAPE) and (label, index) == (entry.rows[3]["label"], 3)
    assert np.shares_memory(x.numpy(), entry.features)
    batch = torch.utils.data.default_collate([FeatureDataset(entry)[i] for i in range(4)])
    assert torch.equal(batch[0][:, 0], torch.from_numpy(np.asarray(entry.features[:4])))


def test_a_corrupt_entry_is_detected_and_rebuilt(tmp_path, caplog) -> None:
    entry = build(tmp_path, workers=1)
    with (entry.path / "features.npy").open("r+b") as handle:
        handle.seek(-8, os.SEEK_END)
        handle.write(b"\xff" * 8)
    rebuilt, stats = FeatureCache(tmp_path).get_or_build({"test": "workers"}, CLIPS, work,
                                                         SHAPE, desc="test")
    assert stats.rebuilt_corrupt == 1 and "checksum mismatch" in caplog.text
    assert np.array_equal(rebuilt.features[-1], work(CLIPS[-1])[0].astype(np.float32))


def test_auto_loader_workers_only_where_a_gpu_waits_for_them(monkeypatch) -> None:
    import deepfake_detect.data.datamodule as datamodule

    cpu, gpu = torch.device("cpu"), torch.device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine
    monkeypatch.setattr(datamodule, "available_cores", lambda: 16)
    auto = LoaderConfig()
    assert (auto.workers_for(gpu), auto.pin_for(gpu)) == (4, True)
    assert (auto.workers_for(cpu), auto.pin_for(cpu)) == (0, False)  # a CPU trainer there
    assert auto.workers_for(None) == 4  # no Trainer: CUDA if there is one
    assert LoaderConfig(num_workers=3, pin_memory=False).workers_for(gpu) == 3
    assert not LoaderConfig(pin_memory=False).pin_for(gpu)
    for cores, workers in ((4, 2), (1, 0)):
        monkeypatch.setattr(datamodule, "available_cores", lambda cores=cores: cores)
        assert auto.workers_for(gpu) == workers
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert auto.workers_for(None) == 0


@pytest.mark.parametrize(("cls", "node", "key"), [
    (CacheConfig, {"store": "spectrogram"}, "data.cache.store"),
    (CacheConfig, {"workers": "all"}, "data.cache.workers"),
    (LoaderConfig, {"pin_memory": "yes"}, "data.loader.pin_memory"),
    (LoaderConfig, {"num_workers": "many"}, "data.loader.num_workers"),
])
def test_bad_performance_settings_name_their_key(cls, node, key) -> None:
    prefix = key.rsplit(".", 1)[0]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config.build(cls, node, prefix)
