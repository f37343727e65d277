"""``tracking.retry``: sqlite "database is locked" errors are retried with doubling backoff;
anything else is raised at once; the last lock error is raised when the attempts run out."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import pytest

from deepfake_detect import tracking


class Flaky:
    """An action that raises ``errors`` one after the other, then returns ``"done"``."""

    def __init__(self, *errors: Exception):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """The delays ``retry`` sleeps for (without sleeping)."""
    delays: list[float] = []
    monkeypatch.setattr(tracking.time, "sleep", delays.append)
    return delays


def locked(text: str = "(sqlite3.OperationalError) database is locked") -> Exception:
    return RuntimeError(text)


def test_lock_errors_are_retried_with_doubling_backoff(sleeps: list[float], caplog) -> None:
    action = Flaky(locked(), locked("Database Is LOCKED"), locked())
    with caplog.at_level(logging.WARNING, logger="deepfake_detect.tracking"):
        assert tracking.retry(action, "log metrics") == "done"
    assert action.calls == 4
    assert sleeps == pytest.approx([0.2, 0.4, 0.8])
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [f"log metrics: database is locked, retrying in {d:.1f}s"
                        for d in (0.2, 0.4, 0.8)]


def test_success_at_once_does_not_sleep(sleeps: list[float]) -> None:
    action = Flaky()
    assert tracking.retry(action, "x") == "done" and action.calls == 1 and sleeps == []


def test_other_errors_are_raised_at_once(sleeps: list[float]) -> None:
    action = Flaky(ValueError("no such table: experiments"), locked())
    with pytest.raises(ValueError, match="no such table"):
        tracking.retry(action, "x")
    assert action.calls == 1 and sleeps == []


def test_the_last_lock_error_is_raised_after_all_attempts(sleeps: list[float]) -> None:
    errors = [locked(f"database is locked ({i})") for i in range(5)]
    action = Flaky(*errors)
    with pytest.raises(RuntimeError, match=r"locked \(2\)") as raised:
        tracking.retry(action, "x", attempts=3)
    assert raised.value is errors[2]
    assert action.calls == 3
    assert sleeps == pytest.approx([0.2, 0.4])  # no sleep after the last attempt


def _hold_exclusive_lock(db: Path, seconds: float) -> threading.Event:
    """Lock ``db`` exclusively now; a thread releases it after ``seconds`` and then sets the
    returned event."""
    holder = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    released = threading.Event()

    def release() -> None:
        holder.execute("COMMIT")
        holder.close()
        released.set()

    threading.Timer(seconds, release).start()
    return released


def test_a_real_sqlite_lock_is_waited_out(tmp_path: Path, caplog) -> None:
    """A real lock held by another connection: the first attempts fail with sqlite's own
    "database is locked" (no busy timeout), ``retry`` backs off until the lock is gone."""
    db = tmp_path / "locked.db"
    with sqlite3.connect(db) as setup:
        setup.execute("CREATE TABLE t (x INTEGER)")
    attempts = []

    def insert() -> int:
        attempts.append(1)
        with sqlite3.connect(db, timeout=0) as con:
            con.execute("INSERT INTO t VALUES (1)")
        return len(attempts)

    released = _hold_exclusive_lock(db, 0.3)
    with caplog.at_level(logging.WARNING, logger="deepfake_detect.tracking"):
        tries = tracking.retry(insert, "insert")
    assert released.wait(10)
    assert tries >= 2  # the lock was held when the first attempt ran
    assert [r.getMessage() for r in caplog.records][:1] == [
        "insert: database is locked, retrying in 0.2s"]
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_an_mlflow_call_survives_a_short_lock(tmp_path: Path) -> None:
    """MLflow 3 sets a 20 s sqlite busy timeout, so a short lock is waited out inside the call
    (no retry needed); the call through ``retry`` still succeeds once the lock is gone."""
    from mlflow.tracking import MlflowClient

    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    client = MlflowClient(tracking_uri=uri)
    client.search_experiments()  # creates the schema
    released = _hold_exclusive_lock(db, 0.5)
    experiment_id = tracking.retry(lambda: client.create_experiment("after-lock"), "create")
    assert released.is_set()  # the call could only go through once the lock was gone
    assert client.get_experiment_by_name("after-lock").experiment_id == experiment_id
