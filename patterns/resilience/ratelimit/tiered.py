"""A local limiter in front of a shared one (guide section 4.5, ``DistributedRateLimiter``).

The guide's distributed limiter asks a local limiter first and the shared store only
if the local one agrees: an instance that is already over its own share answers at
once, without a round trip. :class:`TieredRateLimiter` does the same with any two
limiters, and fixes what the sketch leaves open: when the shared limiter refuses, the
permits the local one granted are given back (``refund``), so a refused request
consumes neither limit; the same when the shared limiter raises (Redis misconfigured,
or unreachable with ``when_unavailable="raise"``).
"""

from __future__ import annotations

import threading

from patterns.clock import MONOTONIC, Clock
from patterns.events import Listeners
from patterns.resilience.ratelimit._base import (
    RateLimiter,
    RateLimitEvent,
    check_permits,
    clock_reader,
)

__all__ = ["TieredRateLimiter"]


class TieredRateLimiter(RateLimiter):
    """Admit a request only if ``local`` and then ``shared`` admit it (section 4.5).

    ``local`` is typically an in-process limiter (a per-instance cap, cheap to ask);
    ``shared`` one that all instances share, such as a
    :class:`~patterns.resilience.ratelimit.RedisGCRALimiter`. ``shared`` is asked only
    if ``local`` admits; if ``shared`` refuses, the local permits are refunded. The
    wait reported for a refusal is the wait of the tier that refused.

    The two limiters keep their own counters and events (they see every attempt the
    tier makes, including a waiting driver's retries); this object's counters and
    events are the tier's final decisions. Thread-safe if both limiters are.
    """

    __slots__ = ("_lock", "_now", "local", "shared")

    def __init__(
        self,
        local: RateLimiter,
        shared: RateLimiter,
        *,
        clock: Clock = MONOTONIC,
        listeners: Listeners[RateLimitEvent] | None = None,
    ) -> None:
        for name, limiter in (("local", local), ("shared", shared)):
            if not isinstance(limiter, RateLimiter):
                raise TypeError(f"{name} must be a RateLimiter, got {limiter!r}")
        if local is shared:
            raise ValueError("local and shared must be two different limiters")
        self.local = local
        self.shared = shared
        self._now = clock_reader(clock)
        self._init_base(clock, listeners)
        self._lock = threading.Lock()

    @property
    def max_permits(self) -> int:
        return min(self.local.max_permits, self.shared.max_permits)

    def _decide(self, n: int) -> tuple[float, float]:
        wait = self.local.attempt(n)
        if not wait:
            try:
                wait = self.shared.attempt(n)
            except BaseException:
                self.local.refund(n)  # refused by an error: the local permit goes back
                raise
            if wait:
                self.local.refund(n)
        now = self._now()
        if not wait:
            with self._lock:
                self.admitted += 1
        return now, wait

    def _count_rejection(self) -> None:
        with self._lock:
            self.rejected += 1

    def time_until(self, n: int = 1) -> float:
        check_permits(n)
        return max(self.local.time_until(n), self.shared.time_until(n))

    def refund(self, n: int = 1) -> None:
        check_permits(n)
        self.local.refund(n)
        self.shared.refund(n)

    def __repr__(self) -> str:
        return f"TieredRateLimiter(local={self.local!r}, shared={self.shared!r})"
