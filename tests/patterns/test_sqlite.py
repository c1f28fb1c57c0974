"""The shared SQLite helper (chapter 5's default store)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from patterns.storage.sqlite import SQLiteDatabase


def test_transactions_commit_or_roll_back_as_a_whole(tmp_path: Path) -> None:
    with SQLiteDatabase(tmp_path / "db.sqlite") as db:
        db.executescript("CREATE TABLE t (x INTEGER)")
        with db.transaction() as connection:
            connection.execute("INSERT INTO t VALUES (1)")
        def failing_transaction() -> None:
            with db.transaction() as connection:
                connection.execute("INSERT INTO t VALUES (2)")
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            failing_transaction()
        assert db.connection().execute("SELECT x FROM t").fetchall() == [(1,)]
        assert db.connection().execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_read_then_write_from_many_threads_never_loses_an_increment(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "counter.sqlite")
    db.executescript("CREATE TABLE c (n INTEGER); INSERT INTO c VALUES (0)")

    def worker() -> None:
        for _ in range(50):
            with db.transaction() as connection:
                (n,) = connection.execute("SELECT n FROM c").fetchone()
                connection.execute("UPDATE c SET n = ?", (n + 1,))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert db.connection().execute("SELECT n FROM c").fetchone() == (400,)
    db.close()
    errors: list[str] = []

    def late() -> None:  # a thread with no connection yet cannot open one any more
        try:
            db.connection()
        except RuntimeError as error:
            errors.append(str(error))

    thread = threading.Thread(target=late)
    thread.start()
    thread.join()
    assert len(errors) == 1
    assert "is closed" in errors[0]


def test_a_file_is_required() -> None:
    with pytest.raises(ValueError, match=r"path must name a file .* got ':memory:'"):
        SQLiteDatabase(":memory:")
    with pytest.raises(ValueError, match="busy_timeout must be > 0, got 0"):
        SQLiteDatabase("x.sqlite", busy_timeout=0)
