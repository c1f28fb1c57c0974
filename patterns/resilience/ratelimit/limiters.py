"""In-process rate limiters (guide section 4.5, 流量控制与限流).

Seven algorithms, one contract (:class:`~patterns.resilience.ratelimit.RateLimiter`):

=============================  =========================================================
:class:`TokenBucket`           ``capacity`` tokens, refilled at ``rate`` per second; a
                               request takes ``n``. Bursts up to ``capacity``.
:class:`LeakyBucket`           the same bucket seen from the other side (a meter): water
                               drains at ``rate``; a request adds ``n`` if it fits.
:class:`GCRALimiter`           the same decisions again, kept as one timestamp (the
                               *theoretical arrival time* of ATM's generic cell rate
                               algorithm): cheapest state, easy to share (see Redis).
:class:`LeakyBucketQueue`      the leaky bucket as a *queue*: requests join while there
                               is room and leave evenly spaced, ``1/rate`` apart; it says
                               how long each must wait. Shapes instead of cutting.
:class:`FixedWindowLimiter`    at most ``limit`` per aligned window; twice that across
                               a window edge.
:class:`SlidingLogLimiter`     at most ``limit`` in *any* window of ``window`` seconds:
                               exact, one timestamp per admitted request.
:class:`SlidingWindowCounterLimiter`  two fixed-window counters, the previous one weighted
                               by how much of it still overlaps the sliding window
                               (Cloudflare's approximation): O(1) memory, smaller edge
                               bursts than a fixed window.
=============================  =========================================================

What each guarantees, for admitted permits (up to ``EPSILON`` = 1e-9 permit of rounding):

* token bucket, leaky bucket, GCRA (``burst = capacity``): at most
  ``capacity + rate * T`` in any interval of length ``T``;
* leaky bucket queue: the same for requests joining; their departures are spaced
  ``n / rate`` apart, so at most ``1 + rate * T`` permits (for ``n = 1``) leave in any
  closed interval of length ``T``;
* fixed window: at most ``limit`` in each window ``[k*W, (k+1)*W)``, and ``2 * limit``
  in an interval of length ``W`` straddling an edge;
* sliding log: at most ``limit`` in any interval ``[a, a + W)``;
* sliding window counter: at most ``limit`` per aligned window, and at most
  ``2 * limit - 1`` in any interval of length ``W`` (reached only when the previous
  window's traffic bunched at its very end).

Unlike the guide's sketches, no fraction of a token is ever lost (refill is computed
from elapsed time, never truncated to whole tokens), a request that fits is never
refused because another thread touched the state (one lock instead of a failed
compare-and-swap), and the sliding window really slides. All are thread-safe.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final

from patterns._validation import require_non_negative
from patterns.clock import MONOTONIC, Clock
from patterns.events import Listeners
from patterns.resilience.ratelimit._base import (
    EPSILON,
    MAX_PERMITS,
    Admitted,
    LocalRateLimiter,
    RateLimitEvent,
    Rejected,
    Step,
    bad_permits,
    check_count,
    check_permits,
    check_rate,
    check_window,
    positive_wait,
)

__all__ = [
    "FixedWindowLimiter",
    "GCRALimiter",
    "LeakyBucket",
    "LeakyBucketQueue",
    "SlidingLogLimiter",
    "SlidingWindowCounterLimiter",
    "TokenBucket",
]

INF: Final = math.inf


# =========================================================================== buckets


class TokenBucket(LocalRateLimiter):
    """A token bucket: ``capacity`` tokens, refilled continuously at ``rate`` per second.

    Implements the guide's ``TokenBucket`` (section 4.5). It starts full. A request for
    ``n`` tokens is admitted if ``n`` tokens are there, and takes them. Tokens are a
    float computed from the elapsed time, so a rate of 1.5 per second really gives
    1.5 per second (the guide truncates each refill to whole tokens and restarts the
    clock, so its 1.5 per second can behave as 1 per second). In any interval of ``T``
    seconds it admits at most ``capacity + rate * T`` permits.
    """

    __slots__ = ("_last", "_tokens", "capacity", "rate")

    def __init__(
        self,
        rate: float,
        capacity: int,
        *,
        clock: Clock = MONOTONIC,
        listeners: Listeners[RateLimitEvent] | None = None,
    ) -> None:
        self.capacity = check_count("capacity", capacity)
        self.rate = check_rate(rate, capacity, "capacity")
        self._init_local(clock, listeners)
        self._tokens = float(capacity)
        self._last = self._now()

    @property
    def max_permits(self) -> int:
        return self.capacity

    @property
    def tokens(self) -> float:
        """The tokens in the bucket now."""
        with self._lock:
            self._refill(self._now())
            return max(0.0, self._tokens)

    def _refill(self, now: float) -> None:
        last = self._last
        if now > last:
            tokens = self._tokens + (now - last) * self.rate
            self._tokens = tokens if tokens < self.capacity else float(self.capacity)
            self._last = now

    def _take(self, now: float, n: int) -> float:
        wait = self._peek(now, n)
        if wait == 0.0:
            self._tokens -= n
        return wait

    def _peek(self, now: float, n: int) -> float:
        self._refill(now)
        deficit = n - self._tokens
        if deficit <= EPSILON:
            return 0.0
        if n > self.capacity:
            return INF
        return positive_wait(now, now + deficit / self.rate)

    def _give_back(self, now: float, n: int) -> None:
        self._refill(now)
        self._tokens = min(float(self.capacity), self._tokens + n)

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate!r}, capacity={self.capacity!r})"


class LeakyBucket(LocalRateLimiter):
    """The leaky bucket as a meter: water drains at ``rate`` per second.

    Implements the guide's ``LeakyBucket`` (section 4.5). It starts empty; a request
    adds ``n`` units of water if the bucket can hold them (``level + n <= capacity``),
    otherwise it is refused. This is the token bucket mirrored (``level = capacity -
    tokens``): the same decisions, the same bound ``capacity + rate * T`` in any
    interval ``T``. The drain is computed from the elapsed time, never truncated.
    For the leaky bucket that *queues* requests and lets them out evenly, see
    :class:`LeakyBucketQueue`.
    """

    __slots__ = ("_last", "_level", "capacity", "rate")

    def __init__(
        self,
        rate: float,
        capacity: int,
        *,
        clock: Clock = MONOTONIC,
        listeners: Listeners[RateLimitEvent] | None = None,
    ) -> None:
        self.capacity = check_count("capacity", capacity)
        self.rate = check_rate(rate, capacity, "capacity")
        self._init_local(clock, listeners)
        self._level = 0.0
        self._last = self._now()

    @property
    def max_permits(self) -> int:
        return self.capacity

    @property
    def level(self) -> float:
        """The water in the bucket now."""
        with self._lock:
            self._leak(self._now())
            return max(0.0, self._level)

    def _leak(self, now: float) -> None:
        if now > self._last:
            level = self._level - (now - self._last) * self.rate
            self._level = level if level > 0.0 else 0.0
            self._last = now

    def _take(self, now: float, n: int) -> float:
        wait = self._peek(now, n)
        if wait == 0.0:
            self._level += n
        return wait

    def _peek(self, now: float, n: int) -> float:
        self._leak(now)
        excess = self._level + n - self.capacity
        if excess <= EPSILON:
            return 0.0
        if n > self.capacity:
            return INF
        return positive_wait(now, now + excess / self.rate)

    def _give_back(self, now: float, n: int) -> None:
        self._leak(now)
        self._level = max(0.0, self._level - n)

    def __repr__(self) -> str:
        return f"LeakyBucket(rate={self.rate!r}, capacity={self.capacity!r})"


class GCRALimiter(LocalRateLimiter):
    """The generic cell rate algorithm: a token bucket kept as one timestamp (section 4.5).

    Each permit costs ``1/rate`` seconds of "emission interval". The limiter keeps the
    *theoretical arrival time* ``tat``: when the bucket would be full again. A request
    for ``n`` fits if ``max(tat, now) + n/rate - now <= burst/rate``; then ``tat``
    moves on by ``n/rate``. The decisions equal those of ``TokenBucket(rate, burst)``
    (at most ``burst + rate * T`` in any interval ``T``), with one float of state and
    no refill step, which is why it is the algorithm of choice for a shared store
    (:class:`~patterns.resilience.ratelimit.RedisGCRALimiter`).
    """

    __slots__ = ("_eps", "_interval", "_tat", "_tau", "burst", "rate")

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Clock = MONOTONIC,
        listeners: Listeners[RateLimitEvent] | None = None,
    ) -> None:
        self.burst = check_count("burst", burst)
        self.rate = check_rate(rate, burst, "burst")
        self._init_local(clock, listeners)
        self._interval = 1.0 / self.rate
        self._tau = self.burst * self._interval
        self._eps = EPSILON * self._interval
        self._tat = -INF

    @property
    def max_permits(self) -> int:
        return self.burst

    @property
    def theoretical_arrival_time(self) -> float:
        """When the bucket will be full again (``-inf`` before the first request)."""
        return self._tat

    def try_acquire(self, n: int = 1) -> bool:
        # The hot path, inlined: one lock, one clock reading, a few float operations;
        # the wait for a Rejected event is computed only if someone listens.
        if n.__class__ is not int or n < 1 or n > MAX_PERMITS:
            raise bad_permits(n)
        with self._lock:
            now = self._now()
            tat = self._tat
            if tat < now:
                tat = now
            cost = n * self._interval
            if tat - (self._tau - cost) <= now + self._eps:
                self._tat = tat + cost
                self.admitted += 1
                if not self.listeners.snapshot:
                    return True
                event: RateLimitEvent = Admitted(now, n)
            else:
                self.rejected += 1
                if not self.listeners.snapshot:
                    return False
                event = Rejected(now, n, self._peek(now, n))
        self.listeners.emit(event)
        return type(event) is Admitted

    def _take(self, now: float, n: int) -> float:
        tat = self._tat
        if tat < now:
            tat = now
        allow_at = tat - (self._tau - n * self._interval)
        if allow_at <= now + self._eps:
            self._tat = tat + n * self._interval
            return 0.0
        if n > self.burst:
            return INF
        return positive_wait(now, allow_at)

    def _peek(self, now: float, n: int) -> float:
        tat = self._tat if self._tat > now else now
        allow_at = tat - (self._tau - n * self._interval)
        if allow_at <= now + self._eps:
            return 0.0
        if n > self.burst:
            return INF
        return positive_wait(now, allow_at)

    def _give_back(self, now: float, n: int) -> None:
        self._tat = max(now, self._tat - n * self._interval)

    def __repr__(self) -> str:
        return f"GCRALimiter(rate={self.rate!r}, burst={self.burst!r})"


class LeakyBucketQueue(LocalRateLimiter):
    """The leaky bucket as a queue, shaping traffic instead of cutting it (section 4.5).

    Requests join the bucket while it has room for them (at most ``capacity`` permits
    waiting or leaving) and leave it evenly spaced, one permit every ``1/rate`` seconds.
    :meth:`reserve` takes a place in the queue and returns how long the request must
    wait before it may go; the drivers (:meth:`acquire`, :meth:`aacquire`,
    :meth:`simpy_acquire`) reserve and then sleep that long, first come first served.

    :meth:`try_acquire` admits only a request that may go at once (the queue is empty),
    and :meth:`time_until` says when that will be.
    """

    __slots__ = ("_eps", "_free_at", "_interval", "capacity", "rate")

    def __init__(
        self,
        rate: float,
        capacity: int,
        *,
        clock: Clock = MONOTONIC,
        listeners: Listeners[RateLimitEvent] | None = None,
    ) -> None:
        self.capacity = check_count("capacity", capacity)
        self.rate = check_rate(rate, capacity, "capacity")
        self._init_local(clock, listeners)
        self._interval = 1.0 / self.rate
        self._eps = EPSILON * self._interval
        self._free_at = -INF

    @property
    def max_permits(self) -> int:
        return self.capacity

    @property
    def backlog(self) -> float:
        """Seconds until the queue is empty (the wait of a request joining now)."""
        with self._lock:
            return max(0.0, self._free_at - self._now())

    def _room_wait(self, now: float, start: float, n: int) -> float:
        """0.0 if ``n`` fit in the queue whose last departure slot starts at ``start``."""
        excess = (start - now) * self.rate + n - self.capacity
        if excess <= EPSILON:
            return 0.0
        return positive_wait(now, now + excess * self._interval)

    def _reserve(self, now: float, n: int, max_wait: float) -> tuple[float | None, float]:
        """With the lock held: ``(delay, 0.0)`` if reserved, else ``(None, retry_after)``."""
        if n > self.capacity:
            return None, INF
        start = self._free_at if self._free_at > now else now
        delay = start - now
        room = self._room_wait(now, start, n)
        if delay <= self._eps:
            delay = 0.0
        if room or delay > max_wait + self._eps:
            late = 0.0 if delay <= max_wait + self._eps else positive_wait(now, start - max_wait)
            return None, max(room, late)
        self._free_at = start + n * self._interval
        return delay, 0.0

    def reserve(self, n: int = 1, *, max_wait: float = INF) -> float | None:
        """Join the queue: the seconds to wait before the request may go, or ``None``.

        ``None`` (nothing reserved) if there is no room for ``n`` permits or if the
        wait would exceed ``max_wait``. The caller must wait the returned delay; a
        reservation cannot be given back except with :meth:`refund`.
        """
        check_permits(n)
        require_non_negative("max_wait", max_wait)
        with self._lock:
            now = self._now()
            delay, retry_after = self._reserve(now, n, max_wait)
            if delay is None:
                self.rejected += 1
            else:
                self.admitted += 1
        if self.listeners.snapshot:
            self.listeners.emit(Rejected(now, n, retry_after) if delay is None
                                else Admitted(now, n, delay))
        return delay

    def _take(self, now: float, n: int) -> float:
        delay, retry_after = self._reserve(now, n, 0.0)
        return retry_after if delay is None else 0.0

    def _peek(self, now: float, n: int) -> float:
        if n > self.capacity:
            return INF
        if self._free_at - now <= self._eps:
            return 0.0
        return positive_wait(now, self._free_at)

    def _give_back(self, now: float, n: int) -> None:
        self._free_at = max(now, self._free_at - n * self._interval)

    def _step(self, n: int, start: float, deadline: float) -> tuple[Step, float]:
        # Drivers reserve a place and sleep until it comes up: first come, first served.
        with self._lock:
            now = self._now()
            delay, retry_after = self._reserve(now, n, max(0.0, deadline - now))
            if delay is None:
                self.rejected += 1
            else:
                self.admitted += 1
        if delay is None:
            if self.listeners.snapshot:
                self.listeners.emit(Rejected(now, n, retry_after))
            return Step.GIVE_UP, retry_after
        if self.listeners.snapshot:
            self.listeners.emit(Admitted(now, n, delay, now - start))
        return Step.GO, delay

    def __repr__(self) -> str:
        return f"LeakyBucketQueue(rate={self.rate!r}, capacity={self.capacity!r})"


# =========================================================================== windows


class FixedWindowLimiter(LocalRateLimiter):
    """At most ``limit`` permits per window ``[k*window, (k+1)*window)`` (section 4.5).

    The simplest counter, and the "sliding" window of the guide in disguise. A client
    can use the whole limit at the end of one window and again at the start of the
    next: ``2 * limit`` permits within moments, and within any interval of one window
    length that straddles the edge. Windows are aligned on the clock's time origin.
    """

    __slots__ = ("_count", "_index", "limit", "window")

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: Clock = MONOTONIC,
        listeners: Listeners[RateLimitEvent] | None = None,
    ) -> None:
        self.limit = check_count("limit", limit)
        self.window = check_window(window)
        self._init_local(clock, listeners)
        self._index = -INF
        self._count = 0

    @property
    def max_permits(self) -> int:
        return self.limit

    def _boundary(self, index: float) -> float:
        """The first time at or after which the window index exceeds ``index``."""
        edge = (index + 1.0) * self.window
        while edge // self.window <= index:
            edge = math.nextafter(edge, INF)
        return edge

    def _take(self, now: float, n: int) -> float:
        index = now // self.window
        if index != self._index:
            self._index = index
            self._count = 0
        count = self._count + n
        if count <= self.limit:
            self._count = count
            return 0.0
        if n > self.limit:
            return INF
        return positive_wait(now, self._boundary(index))

    def _peek(self, now: float, n: int) -> float:
        index = now // self.window
        used = self._count if index == self._index else 0
        if used + n <= self.limit:
            return 0.0
        if n > self.limit:
            return INF
        return positive_wait(now, self._boundary(index))

    def _give_back(self, now: float, n: int) -> None:
        if now // self.window == self._index:
            self._count = max(0, self._count - n)

    def __repr__(self) -> str:
        return f"FixedWindowLimiter(limit={self.limit!r}, window={self.window!r})"


class SlidingLogLimiter(LocalRateLimiter):
    """At most ``limit`` permits in *any* interval of ``window`` seconds (section 4.5).

    Keeps a log of admitted requests (when each leaves the window, and its permits);
    a request fits if the permits still in the window plus its own are at most
    ``limit``. Memory grows with ``limit`` (at most ``limit`` entries). This is what
    the guide's ``SlidingWindowRateLimiter`` means to be.
    """

    __slots__ = ("_log", "_total", "limit", "window")

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: Clock = MONOTONIC,
        listeners: Listeners[RateLimitEvent] | None = None,
    ) -> None:
        self.limit = check_count("limit", limit)
        self.window = check_window(window)
        self._init_local(clock, listeners)
        self._log: deque[tuple[float, int]] = deque()
        self._total = 0

    @property
    def max_permits(self) -> int:
        return self.limit

    def _expire(self, now: float) -> None:
        log = self._log
        while log and log[0][0] <= now:
            self._total -= log.popleft()[1]

    def _wait(self, now: float, n: int) -> float:
        """The wait until ``n`` more permits fit (the log already expired to ``now``)."""
        if n > self.limit:
            return INF
        excess = self._total + n - self.limit
        for leaves, permits in self._log:
            excess -= permits
            if excess <= 0:
                return positive_wait(now, leaves)
        raise AssertionError("unreachable: the log holds at most limit permits")

    def _take(self, now: float, n: int) -> float:
        self._expire(now)
        if self._total + n > self.limit:
            return self._wait(now, n)
        leaves = now + self.window
        log = self._log
        if log and log[-1][0] == leaves:
            log[-1] = (leaves, log[-1][1] + n)
        else:
            log.append((leaves, n))
        self._total += n
        return 0.0

    def _peek(self, now: float, n: int) -> float:
        self._expire(now)
        if self._total + n <= self.limit:
            return 0.0
        return self._wait(now, n)

    def _give_back(self, now: float, n: int) -> None:
        self._expire(now)
        log = self._log
        while n and log:
            leaves, permits = log.pop()
            taken = min(n, permits)
            n -= taken
            self._total -= taken
            if permits > taken:
                log.append((leaves, permits - taken))

    def __repr__(self) -> str:
        return f"SlidingLogLimiter(limit={self.limit!r}, window={self.window!r})"


class SlidingWindowCounterLimiter(LocalRateLimiter):
    """Two fixed-window counters weighted into a sliding-window estimate (section 4.5).

    A request at a fraction ``x`` into the current window fits if
    ``previous * (1 - x) + current + n <= limit``: the previous window's count is
    assumed spread evenly over it. O(1) memory (Cloudflare's approach). Each aligned
    window admits at most ``limit``; an interval of one window length can see up to
    ``2 * limit - 1`` when the previous window's traffic came at its very end, but on
    smoother traffic the estimate is close to the exact sliding log. Under sustained
    overload it is conservative: the previous window holds ``limit - 1``, which lets the
    current one reach ``limit - 1`` again, so it admits ``(limit - 1) / window`` per
    second (80 % of the rate for a limit of 5; choose a larger limit and window).
    """

    __slots__ = ("_current", "_index", "_previous", "limit", "window")

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: Clock = MONOTONIC,
        listeners: Listeners[RateLimitEvent] | None = None,
    ) -> None:
        self.limit = check_count("limit", limit)
        self.window = check_window(window)
        self._init_local(clock, listeners)
        self._index = -INF
        self._previous = 0
        self._current = 0

    @property
    def max_permits(self) -> int:
        return self.limit

    def _roll(self, now: float) -> float:
        """Move the counters to the window of ``now``; return the fraction elapsed in it."""
        index = now // self.window
        if index != self._index:
            self._previous = self._current if index == self._index + 1 else 0
            self._current = 0
            self._index = index
        elapsed = (now - index * self.window) / self.window
        return 0.0 if elapsed < 0.0 else (elapsed if elapsed < 1.0 else 1.0)

    def _wait(self, now: float, n: int) -> float:
        if n > self.limit:
            return INF
        room = self.limit - n - self._current
        if room >= 0:
            # The previous window's weight must fall to `room` within this window.
            at = 1.0 - room / self._previous
            return positive_wait(now, (self._index + at) * self.window)
        # Not in this window: in the next one, this window's count is the previous.
        at = max(0.0, 1.0 - (self.limit - n) / self._current)
        return positive_wait(now, max(self._next_edge(), (self._index + 1.0 + at) * self.window))

    def _next_edge(self) -> float:
        edge = (self._index + 1.0) * self.window
        while edge // self.window <= self._index:
            edge = math.nextafter(edge, INF)
        return edge

    def _fits(self, elapsed: float, n: int) -> bool:
        return self._previous * (1.0 - elapsed) + self._current + n <= self.limit + EPSILON

    def _take(self, now: float, n: int) -> float:
        elapsed = self._roll(now)
        if self._fits(elapsed, n):
            self._current += n
            return 0.0
        return self._wait(now, n)

    def _peek(self, now: float, n: int) -> float:
        elapsed = self._roll(now)
        return 0.0 if self._fits(elapsed, n) else self._wait(now, n)

    def _give_back(self, now: float, n: int) -> None:
        self._roll(now)
        self._current = max(0, self._current - n)

    def __repr__(self) -> str:
        return f"SlidingWindowCounterLimiter(limit={self.limit!r}, window={self.window!r})"
