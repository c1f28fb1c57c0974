"""Lease locks in a SQLite file, shared by the threads and processes of one host (5.1).

:class:`SQLiteLockStore` keeps one row per lock name: the owner (``NULL`` when free),
the fencing token of the last grant, and the expiry time. Every decision is one
``BEGIN IMMEDIATE`` transaction (:class:`~patterns.storage.sqlite.SQLiteDatabase`), so
two processes can never both see the lock free and both take it. The row survives
release and expiry, so the fencing token keeps growing and is never reused.

Time. Expiry times written by one process are compared by another, so every process
must read the *same* clock. The default is the host's wall clock (:data:`WALL`,
``time.time``): all processes sharing a SQLite file run on one host (SQLite's own
locking does not work over network file systems), and so share that clock. Python's
``time.monotonic`` is not used because its origin is undefined across processes. The
assumption and its limit: a wall-clock step (NTP, an operator) lengthens or shortens
every lease by the step; that can let two holders overlap, and only fencing tokens keep
the resource safe then. Tests and simulations may pass any shared clock, but not a
:class:`~patterns.clock.MonotonicClock`: its readings mean nothing to another process
or after a reboot, and the store refuses it.
"""

from __future__ import annotations

from patterns.clock import Clock
from patterns.consistency.lock._core import (
    WALL,
    Lease,
    LockAcquired,
    LockEvent,
    LockExtended,
    LockLost,
    LockLostError,
    LockRefused,
    LockReleased,
    check_extend,
    check_lease,
    check_name,
    check_persistent_clock,
    check_ttl,
    new_owner,
)
from patterns.events import Listeners
from patterns.storage.sqlite import SQLiteDatabase

__all__ = ["SQLiteLockStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lock_leases (
    name       TEXT PRIMARY KEY,
    owner      TEXT,
    token      INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    ttl        REAL NOT NULL
);
"""


class SQLiteLockStore:
    """Leases in a SQLite database (guide section 5.1, a ``DistributedLock`` backend).

    Works across threads and processes of one host; see the module docstring for the
    clock assumption. ``table`` rows are never deleted, which keeps tokens monotonic.
    """

    def __init__(self, database: SQLiteDatabase, *, clock: Clock = WALL) -> None:
        if not isinstance(database, SQLiteDatabase):
            raise TypeError(f"database must be a SQLiteDatabase, got {database!r}")
        self.database = database
        self.clock = check_persistent_clock(clock)
        self.listeners: Listeners[LockEvent] = Listeners()
        database.executescript(_SCHEMA)

    def try_acquire(self, name: str, ttl: float) -> Lease | None:
        check_name(name)
        ttl = check_ttl(ttl)
        lease: Lease | None = None
        with self.database.transaction() as db:
            now = self.clock.now()
            row = db.execute("SELECT owner, token, expires_at FROM lock_leases WHERE name = ?",
                             (name,)).fetchone()
            if row is None or row[0] is None or now >= row[2]:
                token = 1 if row is None else row[1] + 1
                lease = Lease(name, new_owner(), token, now + ttl, ttl)
                db.execute(
                    "INSERT INTO lock_leases (name, owner, token, expires_at, ttl) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                    "owner = excluded.owner, token = excluded.token, "
                    "expires_at = excluded.expires_at, ttl = excluded.ttl",
                    (name, lease.owner, token, lease.expires_at, ttl))
        if self.listeners.snapshot:
            if lease is None:
                self.listeners.emit(LockRefused(now, name))
            else:
                self.listeners.emit(
                    LockAcquired(now, name, lease.owner, lease.fencing_token, lease.expires_at))
        return lease

    def extend(self, lease: Lease, ttl: float | None = None) -> Lease:
        lease, ttl = check_extend(lease, ttl)
        with self.database.transaction() as db:
            now = self.clock.now()
            updated = db.execute(
                "UPDATE lock_leases SET expires_at = ?, ttl = ? "
                "WHERE name = ? AND owner = ? AND token = ? AND expires_at > ?",
                (now + ttl, ttl, lease.name, lease.owner, lease.fencing_token, now)).rowcount
        if updated != 1:
            self.listeners.emit(LockLost(now, lease.name, lease.owner, lease.fencing_token))
            raise LockLostError(lease.name, lease.owner, "the lease expired before extend")
        extended = Lease(lease.name, lease.owner, lease.fencing_token, now + ttl, ttl)
        if self.listeners.snapshot:
            self.listeners.emit(LockExtended(now, lease.name, lease.owner,
                                             lease.fencing_token, extended.expires_at))
        return extended

    def release(self, lease: Lease) -> bool:
        check_lease(lease)
        with self.database.transaction() as db:
            now = self.clock.now()
            released = db.execute(
                "UPDATE lock_leases SET owner = NULL "
                "WHERE name = ? AND owner = ? AND token = ? AND expires_at > ?",
                (lease.name, lease.owner, lease.fencing_token, now)).rowcount == 1
        if self.listeners.snapshot:
            event: LockEvent = (LockReleased if released else LockLost)(
                now, lease.name, lease.owner, lease.fencing_token)
            self.listeners.emit(event)
        return released

    def holder(self, name: str) -> Lease | None:
        check_name(name)
        row = self.database.connection().execute(
            "SELECT owner, token, expires_at, ttl FROM lock_leases WHERE name = ?",
            (name,)).fetchone()
        if row is None or row[0] is None or self.clock.now() >= row[2]:
            return None
        return Lease(name, row[0], row[1], row[2], row[3])

    def __repr__(self) -> str:
        return f"SQLiteLockStore({self.database!r}, clock={self.clock!r})"
