"""A rate limit shared by many processes through Redis (guide section 4.5).

:class:`RedisGCRALimiter` runs the generic cell rate algorithm (the token bucket kept
as one timestamp, see :class:`~patterns.resilience.ratelimit.GCRALimiter`) inside
Redis: each decision is **one Lua script**, which Redis runs atomically, so no other
client can act between reading the state and writing it.

What the guide's ``DistributedRateLimiter`` gets wrong, and this adapter does instead:

* It adds every request to the sorted set *before* counting, so refused requests are
  recorded too, and a flood keeps the set full and locks every client out. Here a
  refused request writes nothing: it does not consume the limit.
* It uses the request's millisecond timestamp as the set member, so two requests in
  the same millisecond overwrite each other and only one is counted. Here there are
  no members at all: the state is one timestamp, advanced by every admitted permit.
* It reads each client's own clock (``Utc::now()``), so clients whose clocks disagree
  disagree about the window. Here the script reads the server's clock
  (``redis.call('TIME')``); the clients' clocks play no part in any decision.
* Its three commands and the ``EXPIRE`` are separate round trips, not atomic. Here one
  script does everything, and the key expires by itself once the bucket is full again.

Arithmetic is exact: times are integer microseconds of the server's clock, and the
emission interval ``1/rate`` is held as ``q + r/L`` microseconds with integers
``q, r, L`` (``L <= 1000``), so a rate of 1.5 per second is exactly 666,666 2/3 µs per
permit, and no fraction is ever lost. (Lua numbers are doubles: every value the script
handles is an integer below 2**53, hence exact, and it is stored as a plain integer.)

Redis's ``TIME`` is the server's wall clock: if it is stepped backwards, waits grow by
the step until it catches up. When Redis cannot be reached, ``when_unavailable``
decides: ``"raise"`` (the default: the connection error reaches the caller),
``"admit"`` (fail open: requests go through unlimited, as most API gateways choose, so
that an outage of the limiter is not an outage of the service) or ``"reject"`` (fail
closed: protect the dependency at any price). Either way the limiter counts the
decisions made blind in :attr:`RedisGCRALimiter.unavailable`, logs a warning when
Redis goes away and when it is back, and, like a circuit breaker, does not ask Redis
again for ``unavailable_cooldown`` seconds after a failure: a client that needs seconds
to give up (redis-py retries a failed connection with back-off by default) would
otherwise make every blind decision that slow. Give the client short socket timeouts.
The ``redis`` package is needed only by :meth:`RedisGCRALimiter.from_url` and to
recognise its connection errors; any client with ``register_script`` works.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, Final, Protocol

from patterns._validation import (
    require_finite,
    require_finite_non_negative,
    require_int_at_least,
    require_positive,
)
from patterns.clock import MONOTONIC, Clock
from patterns.events import Listeners
from patterns.resilience.ratelimit._base import (
    RateLimiter,
    RateLimitEvent,
    check_permits,
    clock_reader,
)

__all__ = ["GCRA_SCRIPT", "RedisGCRALimiter"]

GCRA_SCRIPT: Final = """
-- GCRA, one decision per call, on the server's clock (guide section 4.5, fixed).
-- KEYS[1]  a hash {tat = whole microseconds, frac = remainder in 1/L microseconds}
-- ARGV     q, r, L: the emission interval is q + r/L microseconds per permit
--          tol: the burst tolerance, burst * interval, in 1/L microseconds
--          n: permits; mode: 'take', 'peek' or 'refund'
-- returns  {1, 0, now} if admitted (or for refund), else {0, wait in whole µs, now}
local q, r, L = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tol, n, mode = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tat', 'frac')
local tat, frac = tonumber(state[1]), tonumber(state[2])
if tat == nil or tat < now then
  tat, frac = now, 0
end
local function store(whole, part)
  if whole <= now then
    redis.call('DEL', KEYS[1])
    return
  end
  redis.call('HSET', KEYS[1], 'tat', string.format('%d', whole),
             'frac', string.format('%d', part))
  redis.call('PEXPIRE', KEYS[1], string.format('%d', math.ceil((whole - now) / 1000) + 1))
end
if mode == 'refund' then
  local part = frac - n * r
  local whole = tat - n * q + math.floor(part / L)
  store(whole, part % L)
  return {1, 0, now}
end
local part = frac + n * r
local whole = tat + n * q + math.floor(part / L)
part = part % L
local ahead = (whole - now) * L + part
if ahead <= tol then
  if mode == 'take' then
    store(whole, part)
  end
  return {1, 0, now}
end
return {0, math.ceil((ahead - tol) / L), now}
"""


_log = logging.getLogger(__name__)

WHEN_UNAVAILABLE: Final = ("raise", "admit", "reject")


def _connection_errors() -> tuple[type[BaseException], ...]:
    """The errors that mean "Redis cannot be reached" (not a bug in the script)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        from redis import exceptions  # the optional backend, only if it is installed
    except ImportError:
        return tuple(errors)
    return (*errors, exceptions.ConnectionError, exceptions.TimeoutError)


class _ScriptClient(Protocol):
    """What the adapter needs of a Redis client (``redis.Redis`` has it)."""

    def register_script(self, script: str) -> Callable[..., Any]: ...


class RedisGCRALimiter(RateLimiter):
    """GCRA shared through Redis (guide section 4.5, ``DistributedRateLimiter``).

    ``rate`` permits per second, bursts up to ``burst``.

    Every instance that uses the same ``key`` on the same Redis shares one limit. Each
    decision is one atomic Lua script (:data:`GCRA_SCRIPT`) that reads the server's
    clock; a refused request changes nothing. The decisions are those of
    ``GCRALimiter(rate, burst)`` on the server's clock, exact to the microsecond.

    ``clock`` only measures the drivers' timeouts; decisions never read it. Put a local
    limiter in front with :class:`~patterns.resilience.ratelimit.TieredRateLimiter`.
    ``when_unavailable`` (``"raise"``, ``"admit"`` or ``"reject"``) decides what happens
    while Redis cannot be reached (see the module). Thread-safe if the client is
    (``redis.Redis`` is: it keeps a connection pool).
    """

    __slots__ = ("_errors", "_lock", "_now", "_retry_at", "_script", "_tolerance", "_up",
                 "burst", "client", "cooldown", "interval_us", "key", "rate", "unavailable",
                 "when_unavailable")

    def __init__(
        self,
        client: _ScriptClient,
        key: str,
        rate: float,
        burst: int,
        *,
        clock: Clock = MONOTONIC,
        listeners: Listeners[RateLimitEvent] | None = None,
        when_unavailable: str = "raise",
        unavailable_cooldown: float = 1.0,
    ) -> None:
        if when_unavailable not in WHEN_UNAVAILABLE:
            raise ValueError(f"when_unavailable must be one of {WHEN_UNAVAILABLE}, "
                             f"got {when_unavailable!r}")
        if not callable(getattr(client, "register_script", None)):
            raise TypeError(f"client must be a Redis client with register_script(), "
                            f"got {client!r}")
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty str, got {key!r}")
        self.rate = require_positive("rate", require_finite("rate", rate))
        self.burst = require_int_at_least("burst", burst, 1)
        interval = (Fraction(1_000_000) / Fraction(self.rate)).limit_denominator(1000)
        if interval <= 0:
            raise ValueError(f"rate must be at most 1e9 per second (the script counts in "
                             f"thousandths of a microsecond), got {rate!r}")
        tolerance = self.burst * interval.numerator
        if tolerance >= 2**53 or self.burst * interval >= 2**52:
            raise ValueError(f"burst / rate is too long a window for exact arithmetic "
                             f"(rate={rate!r}, burst={burst!r})")
        self.interval_us = interval
        """The emission interval ``1/rate`` in microseconds, as held by the script."""
        self._tolerance = tolerance
        self.client = client
        self.key = key
        self._script = client.register_script(GCRA_SCRIPT)
        self._now = clock_reader(clock)
        self._init_base(clock, listeners)
        self._lock = threading.Lock()
        self.when_unavailable = when_unavailable
        self.unavailable = 0
        """Decisions made without Redis (admitted or rejected blind)."""
        self.cooldown = require_finite_non_negative("unavailable_cooldown", unavailable_cooldown)
        self._errors = _connection_errors()
        self._up = True
        self._retry_at = -math.inf

    @classmethod
    def from_url(cls, url: str, key: str, rate: float, burst: int,
                 **options: Any) -> RedisGCRALimiter:
        """Connect with ``redis.Redis.from_url(url)`` (imports ``redis`` only now)."""
        import redis  # the optional backend: imported only by those who use it

        return cls(redis.Redis.from_url(url), key, rate, burst, **options)

    @property
    def max_permits(self) -> int:
        return self.burst

    def _run(self, mode: str, n: int) -> Sequence[int]:
        interval = self.interval_us
        q, r = divmod(interval.numerator, interval.denominator)
        result = self._script(keys=[self.key], args=[q, r, interval.denominator,
                                                     self._tolerance, n, mode])
        return [int(value) for value in result]

    def _try_run(self, mode: str, n: int) -> Sequence[int] | None:
        """:meth:`_run`, or ``None`` for a blind decision (Redis away, not raising)."""
        blind = self.when_unavailable != "raise"
        if blind and not self._up and self._now() < self._retry_at:
            with self._lock:
                self.unavailable += 1
            return None  # still cooling down: do not wait for a dead server again
        try:
            result = self._run(mode, n)
        except self._errors as error:
            with self._lock:
                went_down, self._up = self._up, False
                self._retry_at = self._now() + self.cooldown
                if blind:
                    self.unavailable += 1
            if went_down:
                _log.warning("rate limiter %r: Redis unavailable (%s); %s", self.key, error,
                             {"raise": "raising", "admit": "admitting every request",
                              "reject": "rejecting every request"}[self.when_unavailable])
            if not blind:
                raise
            return None
        if not self._up:
            with self._lock:
                came_back, self._up = not self._up, True
            if came_back:
                _log.warning("rate limiter %r: Redis is back", self.key)
        return result

    @property
    def _blind_wait(self) -> float:
        """What a blind decision answers: 0 (admit) or one emission interval (reject)."""
        return 0.0 if self.when_unavailable == "admit" else float(self.interval_us) / 1e6

    def _decide(self, n: int) -> tuple[float, float]:
        if n > self.burst:
            return self._now(), math.inf
        result = self._try_run("take", n)
        now = self._now()
        allowed, wait_us = (result[0], result[1]) if result is not None else (
            self.when_unavailable == "admit", 0)
        if allowed:
            with self._lock:
                self.admitted += 1
            return now, 0.0
        if result is None:
            return now, self._blind_wait
        return now, max(wait_us, 1) / 1e6

    def _count_rejection(self) -> None:
        with self._lock:
            self.rejected += 1

    def time_until(self, n: int = 1) -> float:
        check_permits(n)
        if n > self.burst:
            return math.inf
        result = self._try_run("peek", n)
        if result is None:
            return self._blind_wait
        allowed, wait_us, _ = result
        return 0.0 if allowed else max(wait_us, 1) / 1e6

    def refund(self, n: int = 1) -> None:
        """Give ``n`` permits back (lost, with a warning logged, while Redis is away and
        ``when_unavailable`` is not ``"raise"``)."""
        check_permits(n)
        self._try_run("refund", n)

    def server_time_us(self) -> int:
        """The server's clock, as the script reads it (integer microseconds)."""
        return self._run("peek", 1)[2]

    def __repr__(self) -> str:
        return f"RedisGCRALimiter(key={self.key!r}, rate={self.rate!r}, burst={self.burst!r})"
