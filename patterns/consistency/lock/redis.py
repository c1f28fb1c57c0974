"""Lease locks in Redis (guide section 5.1, ``RedisLock``), with fencing tokens.

* Acquire is ``SET key owner NX PX ttl`` and, in the same Lua script (so atomically),
  ``INCR`` of a separate fence key that never expires: the new fencing token.
* Keys: ``<prefix>lock:{<name>}`` for the lease and ``<prefix>fence:{<name>}`` for its
  counter. The two namespaces differ before the name begins, so no lock name can reach
  another lock's key or any counter (``"X:fence"`` once collided with ``"X"``'s
  counter). The braces make the two keys of a name one Redis Cluster hash slot, as the
  Lua scripts need (when ``prefix`` has no ``{``).
* Extend is compare-and-``PEXPIRE`` and release is compare-and-``DEL`` in Lua: only the
  owner's secret matches, so nobody extends or deletes a lease that is not theirs.

Expiry is judged by the Redis server's clock (``PX``). The :class:`Lease` the client
gets carries ``expires_at`` = the client's clock when the request was *sent* plus the
TTL, so the client's idea of expiry is never later than the server's (up to clock rate
drift). The fence key must not be lost: with a Redis that loses writes on failover, a
token could be handed out twice; use persistence (AOF) for the fence keys.

The ``redis`` package is imported only by :meth:`RedisLockStore.from_url`; any client
with ``register_script`` works.
"""

from __future__ import annotations

import math
from typing import Any, Final

from patterns.clock import MONOTONIC, Clock
from patterns.consistency.lock._core import (
    Lease,
    LockAcquired,
    LockEvent,
    LockExtended,
    LockLost,
    LockLostError,
    LockRefused,
    LockReleased,
    check_clock,
    check_extend,
    check_lease,
    check_name,
    check_ttl,
    new_owner,
)
from patterns.events import Listeners

__all__ = ["ACQUIRE_SCRIPT", "EXTEND_SCRIPT", "RELEASE_SCRIPT", "RedisLockStore"]

ACQUIRE_SCRIPT: Final = """
-- KEYS[1] the lock, KEYS[2] its fence counter; ARGV[1] owner, ARGV[2] ttl in ms
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""

EXTEND_SCRIPT: Final = """
-- compare-and-extend: only the owner's secret may push the expiry
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

RELEASE_SCRIPT: Final = """
-- compare-and-delete: never delete a lock that another owner holds now
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_HOLDER_SCRIPT: Final = """
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[2])}
"""


def _ttl_ms(ttl: float) -> int:
    return max(1, math.ceil(ttl * 1000))


class RedisLockStore:
    """Leases in Redis: ``SET NX PX``, Lua compare-and-delete / -extend, ``INCR`` tokens."""

    def __init__(self, client: Any, *, prefix: str = "patterns:",
                 clock: Clock = MONOTONIC) -> None:
        if not callable(getattr(client, "register_script", None)):
            raise TypeError(f"client must be a redis client (register_script), got {client!r}")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {prefix!r}")
        self.client = client
        self.prefix = prefix
        self.clock = check_clock(clock)
        self.listeners: Listeners[LockEvent] = Listeners()
        self._acquire = client.register_script(ACQUIRE_SCRIPT)
        self._extend = client.register_script(EXTEND_SCRIPT)
        self._release = client.register_script(RELEASE_SCRIPT)
        self._holder = client.register_script(_HOLDER_SCRIPT)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisLockStore:
        """A store on a new client for ``url`` (``redis://host:port/db``)."""
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, got {url!r} ({type(url).__name__})")
        import redis

        return cls(redis.Redis.from_url(url), **kwargs)

    def _keys(self, name: str) -> list[str]:
        """The lease key and the fence-counter key of lock ``name``: separate namespaces."""
        return [f"{self.prefix}lock:{{{name}}}", f"{self.prefix}fence:{{{name}}}"]

    def try_acquire(self, name: str, ttl: float) -> Lease | None:
        check_name(name)
        ttl = check_ttl(ttl)
        now = self.clock.now()
        owner = new_owner()
        token = int(self._acquire(keys=self._keys(name), args=[owner, _ttl_ms(ttl)]))
        lease = Lease(name, owner, token, now + ttl, ttl) if token > 0 else None
        if self.listeners.snapshot:
            if lease is None:
                self.listeners.emit(LockRefused(now, name))
            else:
                self.listeners.emit(LockAcquired(now, name, owner, token, lease.expires_at))
        return lease

    def extend(self, lease: Lease, ttl: float | None = None) -> Lease:
        lease, ttl = check_extend(lease, ttl)
        now = self.clock.now()
        ok = int(self._extend(keys=self._keys(lease.name)[:1], args=[lease.owner, _ttl_ms(ttl)]))
        if ok != 1:
            self.listeners.emit(LockLost(now, lease.name, lease.owner, lease.fencing_token))
            raise LockLostError(lease.name, lease.owner, "the lease expired before extend")
        extended = Lease(lease.name, lease.owner, lease.fencing_token, now + ttl, ttl)
        if self.listeners.snapshot:
            self.listeners.emit(LockExtended(now, lease.name, lease.owner,
                                             lease.fencing_token, extended.expires_at))
        return extended

    def release(self, lease: Lease) -> bool:
        check_lease(lease)
        now = self.clock.now()
        released = int(self._release(keys=self._keys(lease.name)[:1], args=[lease.owner])) == 1
        if self.listeners.snapshot:
            event: LockEvent = (LockReleased if released else LockLost)(
                now, lease.name, lease.owner, lease.fencing_token)
            self.listeners.emit(event)
        return released

    def holder(self, name: str) -> Lease | None:
        check_name(name)
        now = self.clock.now()
        owner, pttl, token = self._holder(keys=self._keys(name))
        if owner is None or int(pttl) <= 0:
            return None
        if isinstance(owner, bytes):
            owner = owner.decode()
        ttl = int(pttl) / 1000
        return Lease(name, str(owner), int(token), now + ttl, ttl)

    def __repr__(self) -> str:
        return f"RedisLockStore(prefix={self.prefix!r})"
