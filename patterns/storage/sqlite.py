"""SQLite for many threads and processes, with nothing to start (chapter 5's default store).

:class:`SQLiteDatabase` gives each thread its own connection to one database file, in
WAL mode (readers never block the writer), with ``synchronous=FULL`` (a committed
transaction survives a power cut) and a busy timeout (writers from other processes wait
their turn instead of failing). :meth:`SQLiteDatabase.transaction` runs a block in one
``BEGIN IMMEDIATE`` transaction: the write lock is taken at the start, so two
read-then-write transactions can never interleave, and the block commits or rolls back
as a whole.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from patterns._validation import require_positive

__all__ = ["SQLiteDatabase"]


class SQLiteDatabase:
    """One SQLite file, one connection per thread, WAL, immediate transactions."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        if str(path) in ("", ":memory:"):
            raise ValueError(
                f"path must name a file (threads and processes share it), got {path!r}")
        self.path = Path(path)
        self.busy_timeout = require_positive("busy_timeout", busy_timeout)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use), in autocommit mode."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            with self._lock:
                if self._closed:
                    raise RuntimeError(f"database {str(self.path)!r} is closed")
                connection = sqlite3.connect(self.path, timeout=self.busy_timeout,
                                             isolation_level=None, check_same_thread=False)
                self._connections.append(connection)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            connection.execute("PRAGMA foreign_keys=ON")
            self._local.connection = connection
        return connection

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the block in one ``BEGIN IMMEDIATE`` transaction; commit, or roll back on error."""
        connection = self.connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def executescript(self, script: str) -> None:
        """Run a schema script (``CREATE TABLE IF NOT EXISTS ...``) once."""
        self.connection().executescript(script)

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    def __enter__(self) -> SQLiteDatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteDatabase({str(self.path)!r})"
