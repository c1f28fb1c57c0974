"""Distributed locks: leases, fencing tokens, renewal (guide section 5.1, 分布式锁).

* :class:`LockStore` -- the interface: ``try_acquire`` / ``extend`` / ``release`` /
  ``holder``; implemented by :class:`InMemoryLockStore`, :class:`SQLiteLockStore`
  (across processes, the default) and :class:`~patterns.consistency.lock.redis.RedisLockStore`.
* :func:`acquire`, :func:`aacquire`, :func:`simpy_acquire` -- wait and retry;
  :func:`locked` / :func:`alocked` -- hold a lease for a ``with`` block.
* :class:`LeaseRenewer` -- auto-renewal that tells the holder when the lease is lost.
* :class:`FencedResource` -- rejects writes with an older fencing token.

The Redis store lives in :mod:`patterns.consistency.lock.redis` (its ``redis`` client is
imported only when used) and is re-exported here.
"""

from patterns.consistency.lock._core import (
    MAX_TTL,
    WALL,
    FencedResource,
    FencedWrite,
    InMemoryLockStore,
    Lease,
    LeaseRenewer,
    LockAcquired,
    LockError,
    LockEvent,
    LockExtended,
    LockLost,
    LockLostError,
    LockRefused,
    LockReleased,
    LockStore,
    LockTimeoutError,
    StaleTokenError,
    WallClock,
    aacquire,
    acquire,
    alocked,
    locked,
    simpy_acquire,
)
from patterns.consistency.lock.redis import RedisLockStore
from patterns.consistency.lock.sqlite import SQLiteLockStore

__all__ = [
    "MAX_TTL",
    "WALL",
    "FencedResource",
    "FencedWrite",
    "InMemoryLockStore",
    "Lease",
    "LeaseRenewer",
    "LockAcquired",
    "LockError",
    "LockEvent",
    "LockExtended",
    "LockLost",
    "LockLostError",
    "LockRefused",
    "LockReleased",
    "LockStore",
    "LockTimeoutError",
    "RedisLockStore",
    "SQLiteLockStore",
    "StaleTokenError",
    "WallClock",
    "aacquire",
    "acquire",
    "alocked",
    "locked",
    "simpy_acquire",
]
