"""SQLite for many threads and processes, with nothing to start (chapter 5's default store).

:class:`SQLiteDatabase` gives each thread its own connection to one database file, in
WAL mode (readers never block the writer), with ``synchronous=FULL`` (a committed
transaction survives a power cut) and a busy timeout (writers from other processes wait
their turn instead of failing). :meth:`SQLiteDatabase.transaction` runs a block in one
``BEGIN IMMEDIATE`` transaction: the write lock is taken at the start, so two
read-then-write transactions can never interleave, and the block commits or rolls back
as a whole.

A thread's connection lives as long as the thread: when the thread ends, its
connection is closed (a thread-per-request server, or one lease-renewal thread per job,
opens and releases connections instead of collecting one file descriptor per thread
that ever ran). :meth:`SQLiteDatabase.close` closes the connections of the threads that
are still running.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from patterns._validation import require_finite_positive

__all__ = ["MAX_BUSY_TIMEOUT", "SQLiteDatabase"]

MAX_BUSY_TIMEOUT = (2**31 - 1) / 1000
"""The longest busy timeout SQLite can hold, in seconds (``2**31 - 1`` ms, ~24.8 days):
``sqlite3_busy_timeout`` takes a C ``int`` of milliseconds, and a larger value wraps
around (to a negative timeout: no waiting at all)."""


class _ThreadConnection:
    """Holds one thread's connection in the thread-local storage of a database.

    The storage drops it when its thread ends; a finalizer then closes the connection.
    """

    __slots__ = ("__weakref__", "connection")

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection


def _release(lock: threading.Lock, open_connections: dict[int, sqlite3.Connection],
             handle: int) -> None:
    # Whoever removes a connection from the registry closes it, exactly once: the
    # finalizer of an ended thread here, or close() for the threads still running.
    with lock:
        connection = open_connections.pop(handle, None)
    if connection is not None:
        connection.close()


class SQLiteDatabase:
    """One SQLite file, one connection per live thread, WAL, immediate transactions.

    Parameters
    ----------
    path:
        The database file (a ``str`` or path-like; not ``":memory:"``, not a directory):
        every thread and process opens the same file.
    busy_timeout:
        How long a writer waits for another's write lock, in seconds (finite, > 0, at
        most :data:`MAX_BUSY_TIMEOUT`).
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        if isinstance(path, bytes) or not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a str or a path, got {path!r} "
                            f"({type(path).__name__})")
        text = os.fspath(path)
        if not isinstance(text, str):
            raise TypeError(f"path must be a str or a path, got {path!r}")
        if text in ("", ":memory:") or "\0" in text or os.path.isdir(text):
            raise ValueError(
                f"path must name a file (threads and processes share it), got {path!r}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"path must be encodable as UTF-8, got {path!r}") from None
        require_finite_positive("busy_timeout", busy_timeout)
        if busy_timeout > MAX_BUSY_TIMEOUT:
            raise ValueError(f"busy_timeout must be at most {MAX_BUSY_TIMEOUT} s (SQLite "
                             f"keeps it as an int of milliseconds), got {busy_timeout!r}")
        self.path = Path(text)
        self.busy_timeout = float(busy_timeout)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: dict[int, sqlite3.Connection] = {}
        self._handles = itertools.count()
        self._closed = False

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use), in autocommit mode.

        It is closed when the thread ends (or at :meth:`close`): do not hand it to
        another thread.
        """
        holder: _ThreadConnection | None = getattr(self._local, "holder", None)
        if holder is not None:
            return holder.connection
        if self._closed:
            raise RuntimeError(f"database {str(self.path)!r} is closed")
        connection = sqlite3.connect(self.path, timeout=self.busy_timeout,
                                     isolation_level=None, check_same_thread=False)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute(f"PRAGMA busy_timeout={round(self.busy_timeout * 1000)}")
            connection.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            connection.close()
            raise
        holder = _ThreadConnection(connection)
        handle = next(self._handles)
        with self._lock:
            if self._is_closed():  # close() ran meanwhile: this connection must not escape it
                connection.close()
                raise RuntimeError(f"database {str(self.path)!r} is closed")
            self._connections[handle] = connection
        # check_same_thread=False: the finalizer may run in another thread (when the
        # database itself is dropped), after the owner thread has ended.
        weakref.finalize(holder, _release, self._lock, self._connections, handle)
        self._local.holder = holder
        return connection

    def _is_closed(self) -> bool:
        return self._closed

    @property
    def open_connections(self) -> int:
        """How many connections are open (one per live thread that used the database)."""
        with self._lock:
            return len(self._connections)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the block in one ``BEGIN IMMEDIATE`` transaction; commit, or roll back on error."""
        connection = self.connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
            connection.execute("COMMIT")
        except BaseException:
            # Roll back what is still open: the block failed, or COMMIT itself did (a
            # deferred constraint, a busy reader) and left the transaction open. If SQLite
            # has already rolled back on its own (a full disk, an I/O error), there is
            # nothing to undo, and the error that says why is the one to raise.
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            raise

    def executescript(self, script: str) -> None:
        """Run a schema script (``CREATE TABLE IF NOT EXISTS ...``) once."""
        if not isinstance(script, str):
            raise TypeError(f"script must be a str, got {script!r} ({type(script).__name__})")
        self.connection().executescript(script)

    def close(self) -> None:
        """Close every open connection; no thread can open one afterwards."""
        with self._lock:
            self._closed = True
            connections = list(self._connections.values())
            self._connections.clear()
        for connection in connections:
            connection.close()

    def __enter__(self) -> SQLiteDatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteDatabase({str(self.path)!r})"
