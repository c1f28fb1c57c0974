"""The shared SQLite helper (chapter 5's default store)."""

from __future__ import annotations

import gc
import os
import sqlite3
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


def _open_descriptors() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # no /proc: count the connections only
        return None


def test_connections_of_finished_threads_are_released(tmp_path: Path) -> None:
    # A thread-per-request service: 1000 short threads, each using the database once.
    db = SQLiteDatabase(tmp_path / "requests.sqlite")
    db.executescript("CREATE TABLE hits (n INTEGER)")
    before = _open_descriptors()
    errors: list[BaseException] = []

    def request(n: int) -> None:
        try:
            with db.transaction() as connection:
                connection.execute("INSERT INTO hits VALUES (?)", (n,))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    for batch in range(50):
        threads = [threading.Thread(target=request, args=(batch * 20 + i,))
                   for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
            assert not thread.is_alive()
    assert errors == []
    assert db.connection().execute("SELECT COUNT(*) FROM hits").fetchone() == (1000,)
    after = _open_descriptors()
    if before is not None and after is not None:
        # SQLite keeps the file descriptor of a connection closed while another one of
        # the process holds a lock on the file, and reuses it for the next open: a few
        # per concurrent thread at most, not one per thread that ever ran (2000 here).
        assert after - before <= 50, (before, after)
    # Only this (main) thread's connection is left: the others went with their threads.
    assert db.open_connections == 1
    db.close()
    assert db.open_connections == 0


def test_close_still_closes_the_connections_of_running_threads(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "running.sqlite")
    db.executescript("CREATE TABLE t (x INTEGER)")
    opened = threading.Barrier(5)
    done = threading.Event()
    connections: list[sqlite3.Connection] = []

    def worker() -> None:
        connections.append(db.connection())
        opened.wait(timeout=10)
        done.wait(timeout=10)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    opened.wait(timeout=10)
    assert db.open_connections == 5  # four workers and this thread
    db.close()
    assert db.open_connections == 0
    for connection in connections:
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            connection.execute("SELECT 1")
    done.set()
    for thread in threads:
        thread.join(timeout=10)
    assert db.open_connections == 0


def test_a_dropped_database_closes_its_connections(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "dropped.sqlite")
    connection = db.connection()
    del db
    gc.collect()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        connection.execute("SELECT 1")


# A COMMIT that fails (here a deferred foreign key) used to leave the thread's connection
# inside the open transaction: every later transaction of that thread then failed with
# "cannot start a transaction within a transaction" (issue 11).
def test_a_failed_commit_rolls_back_and_the_next_transaction_works(tmp_path: Path) -> None:
    database = SQLiteDatabase(tmp_path / "fk.db")
    database.executescript(
        "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
        "CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent(id) "
        "DEFERRABLE INITIALLY DEFERRED);")
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"), \
            database.transaction() as connection:
        connection.execute("INSERT INTO child VALUES (1, 99)")
    assert not database.connection().in_transaction
    with database.transaction() as connection:
        connection.execute("INSERT INTO parent VALUES (1)")
    assert database.connection().execute("SELECT COUNT(*) FROM child").fetchone() == (0,)
    assert database.connection().execute("SELECT COUNT(*) FROM parent").fetchone() == (1,)
    database.close()
