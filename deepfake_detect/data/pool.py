"""The pool that computes clips: forked workers, one BLAS thread each, warmed up in the parent.

:func:`run_tasks` yields each (work, clip) task's result in task order, here with one worker
or for a few clips, else from one pool of forked workers. Before forking, the parent runs
the first clip of each kind of work it has not run yet (:func:`warm_key`), so the workers
inherit its lazy imports and numba's compiled functions instead of each paying for them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from multiprocessing import get_context
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from deepfake_detect.data.audio import AudioError, collapsed_warnings
from deepfake_detect.data.clips import Clip

Work = Callable[[Clip], tuple[np.ndarray, dict[str, Any]]]
Result = tuple[np.ndarray, dict[str, Any]] | str  # a clip's features and params, or why not
Task = tuple[Work, Clip]
WARM_UP_TRIES = 3  # clips of one kind of work tried here before the workers are left to it
_WARM: set[Any] = set()  # the kinds of work this process has run once (imports, numba done)


def available_cores() -> int:
    """The cores this process may run on (``data.cache.workers: auto``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def warm_key(work: Work) -> Any:
    """What decides which lazy imports and numba functions ``work`` needs: its ``warm_key``
    attribute where it has one (with its type); else the code it runs (a function, closure,
    method or ``functools.partial``), or its type."""
    key = getattr(work, "warm_key", None)
    if key is not None:
        return type(work), key
    target = getattr(work, "func", work)  # a functools.partial runs its func
    return getattr(target, "__code__", None) or type(target)


def run_tasks(tasks: Sequence[Task], workers: int, desc: str) -> Iterator[Result]:
    """Each task's result, in order: here with one worker, else from a pool of forks."""
    bar = tqdm(total=len(tasks), desc=f"features [{desc}]", unit="clip",
               disable=len(tasks) < 2, leave=False)
    # One BLAS/OpenMP thread per process whatever the worker count, so that 1 and N
    # workers give bit-identical rows (summation order follows the thread count), and
    # N workers do not oversubscribe the cores. The limit covers the libraries loaded so
    # far; it is set again after each kind of work's first clip, which may load more.
    # Workers are forked under it and inherit it: setting it in each worker instead
    # (threadpoolctl scans every loaded library, torch's too) kept 16 workers idle for
    # 0.8 s and made each one's first clip twice as slow.
    with bar, ExitStack() as limits, collapsed_warnings():  # one line per file
        limits.enter_context(threadpool_limits(1))
        if workers == 1 or len(tasks) < 2 * workers:
            seen: set[Any] = set()
            for task in tasks:
                result = _safe_here(task)
                if (key := warm_key(task[0])) not in seen:
                    seen.add(key)
                    limits.enter_context(threadpool_limits(1))
                yield result
                bar.update()
            return
        done = _warm_up(tasks)
        bar.update(len(done))
        limits.enter_context(threadpool_limits(1))
        rest = [task for index, task in enumerate(tasks) if index not in done]
        chunk = max(1, len(rest) // (workers * 8))
        pool = ProcessPoolExecutor(workers, mp_context=get_context("fork"))
        try:
            results = pool.map(_safe, rest, chunksize=chunk)
            for index in range(len(tasks)):
                if index in done:
                    yield done.pop(index)
                else:
                    yield next(results)
                    bar.update()
        finally:  # on an error or Ctrl-C, clips not yet started are dropped
            pool.shutdown(wait=True, cancel_futures=True)


def _warm_up(tasks: Sequence[Task]) -> dict[int, Result]:
    """Run here, before forking, the first clip of each kind of work this process has not
    run yet (the next one where a clip is bad, up to :data:`WARM_UP_TRIES`): the workers
    inherit its lazy imports and numba's compiled functions instead of each paying for them
    (seconds, and memory in every worker). Returns the results by task index."""
    done: dict[int, Result] = {}
    tries: dict[Any, int] = {}
    for index, task in enumerate(tasks):
        key = warm_key(task[0])
        if key not in _WARM and tries.get(key, 0) < WARM_UP_TRIES:
            tries[key] = tries.get(key, 0) + 1
            done[index] = _safe_here(task)
    return done


def _safe_here(task: Task) -> Result:
    """:func:`_safe` in this process, which is warm for that kind of work afterwards."""
    result = _safe(task)
    if not isinstance(result, str):
        _WARM.add(warm_key(task[0]))
    return result


def _safe(task: Task) -> Result:
    """Run ``work`` on ``clip``; a bad clip becomes its reason (a string), not an exception."""
    work, clip = task
    try:
        return work(clip)
    except AudioError as err:
        return str(err)
