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

A decision is lean: the client sends one ``EVALSHA`` (the script is loaded once; after a
``SCRIPT FLUSH`` or a restart redis-py loads it again on ``NOSCRIPT``), and the script
runs ``TIME`` and ``GET``, plus one ``SET ... PXAT`` when it admits: 3 commands in
``INFO commandstats`` for a refusal, 4 for an admission. (A GCRA on the server's clock
cannot do with fewer: it must read the clock, read the state and, to admit, write it;
before, the state was a hash, written with ``HSET`` and ``PEXPIRE``.)

Arithmetic is exact: times are integer microseconds of the server's clock, and the
emission interval ``1/rate`` is held as ``q + r/L`` microseconds with integers
``q, r, L`` (``L <= 1000``), so a rate of 1.5 per second is exactly 666,666 2/3 µs per
permit, and no fraction is ever lost. (Lua numbers are doubles: every value the script
handles is an integer below 2**53, hence exact. The key holds ``"tat"`` or
``"tat:remainder"``, both plain integers; anything else in it is an error, never reset.)

Redis's ``TIME`` is the server's wall clock: if it is stepped backwards, waits grow by
the step until it catches up. When Redis cannot be reached, ``when_unavailable``
decides: ``"raise"`` (the default: the connection error reaches the caller),
``"admit"`` (fail open: requests go through unlimited, as most API gateways choose, so
that an outage of the limiter is not an outage of the service) or ``"reject"`` (fail
closed: protect the dependency at any price). Only failures to *reach* Redis count
(connection refused or reset, timeouts, a server loading its data or busy running a
script, a cluster or replica that is down): a misconfiguration, such as a wrong password
or user, a missing ACL permission, a wrong database, a key holding something else or an
unknown command, raises whatever the mode, since no outage is going to end it (it used
to pass for an outage, and ``"admit"`` then silently switched limiting off). Either way
the limiter counts the
decisions made blind in :attr:`RedisGCRALimiter.unavailable`, logs a warning when
Redis goes away and when it is back, and, like a circuit breaker, does not ask Redis
again for ``unavailable_cooldown`` seconds after a failure: a client that needs seconds
to give up (redis-py retries a failed connection with back-off by default) would
otherwise make every blind decision that slow. Give the client short socket timeouts.
The ``redis`` package is needed only by :meth:`RedisGCRALimiter.from_url` and to
recognise its connection errors; any client with ``register_script`` works.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections.abc import Callable
from fractions import Fraction
from typing import Any, Final, Protocol

from patterns._validation import require_finite_non_negative, require_finite_positive
from patterns.clock import MONOTONIC, Clock
from patterns.events import Listeners
from patterns.resilience.ratelimit._base import (
    RateLimiter,
    RateLimitEvent,
    check_count,
    check_permits,
    clock_reader,
)

__all__ = ["GCRA_SCRIPT", "RedisGCRALimiter"]

GCRA_SCRIPT: Final = """
-- GCRA, one decision per call, on the server's clock (guide section 4.5, fixed).
-- KEYS[1]  a string: the theoretical arrival time in whole microseconds of the server's
--          clock, then ':' and the remainder in 1/L microseconds unless it is 0
-- ARGV     q, r, L: the emission interval is q + r/L microseconds per permit
--          tol: the burst tolerance, burst * interval, in 1/L microseconds
--          n: permits; mode: 'take', 'peek', 'refund' or 'time'
-- returns  0 if admitted (or for refund), else the wait in whole microseconds (> 0);
--          for 'time', the server's clock in microseconds
-- Commands: TIME and GET, then one SET (with its expiry) or DEL only if the state changes.
-- The expiry is absolute (PXAT, 1 ms after the theoretical arrival time, on the same
-- server clock): Redis then stores it as given, where a relative PX is rewritten.
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local mode = ARGV[6]
if mode == 'time' then
  return now
end
local tat, frac = now, 0
local value = redis.call('GET', KEYS[1])
if value then
  local whole, part = tonumber(value), 0
  if not whole then
    whole, part = string.match(value, '^(%d+):(%d+)$')
    if not whole then
      return redis.error_reply('ERR key ' .. KEYS[1] .. ' does not hold a GCRA state')
    end
    whole, part = tonumber(whole), tonumber(part)
  end
  if whole >= now then
    tat, frac = whole, part
  end
end
local L, n = tonumber(ARGV[3]), tonumber(ARGV[5])
local part, whole
if mode == 'refund' then
  part = frac - n * ARGV[2]
  whole = tat - n * ARGV[1] + math.floor(part / L)
else
  part = frac + n * ARGV[2]
  whole = tat + n * ARGV[1] + math.floor(part / L)
end
part = part % L
if mode ~= 'refund' then
  local over = (whole - now) * L + part - ARGV[4]
  if over > 0 then
    return math.ceil(over / L)
  end
  if mode == 'peek' then
    return 0
  end
end
if whole <= now then
  redis.call('DEL', KEYS[1])
elseif part == 0 then
  redis.call('SET', KEYS[1], string.format('%d', whole), 'PXAT', math.ceil(whole / 1000) + 1)
else
  redis.call('SET', KEYS[1], string.format('%d:%d', whole, part),
             'PXAT', math.ceil(whole / 1000) + 1)
end
return 0
"""


_log = logging.getLogger(__name__)

WHEN_UNAVAILABLE: Final = ("raise", "admit", "reject")

class _Errors:
    """How the adapter tells "Redis cannot answer now" from "this will never work".

    *Unavailable* (``when_unavailable`` decides): the connection failed or timed out,
    the server is loading its data set, busy running a script, a replica whose master is
    down, a cluster that is resharding or down. Everything else is raised whatever the
    mode, first of all what only a person can fix: a wrong password or user (redis-py
    makes :class:`~redis.exceptions.AuthenticationError` a ``ConnectionError``, which is
    why it used to pass for an outage and, with ``"admit"``, switched limiting off), a
    missing permission, a wrong database, an unknown command, a script error, a key of
    another type, a read-only replica, a full server.
    """

    __slots__ = ("connectivity", "misconfigured", "replies", "transient_replies")

    def __init__(self) -> None:
        self.connectivity: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
        self.misconfigured: tuple[type[BaseException], ...] = ()
        self.replies: tuple[type[BaseException], ...] = ()
        self.transient_replies: tuple[type[BaseException], ...] = ()
        try:
            from redis import exceptions  # the optional backend, only if it is installed
        except ImportError:
            return
        self.connectivity += (exceptions.ConnectionError, exceptions.TimeoutError)
        self.misconfigured = _classes(exceptions, "AuthenticationError", "AuthorizationError",
                                      "ExternalAuthProviderError")
        self.replies = (exceptions.ResponseError,)
        self.transient_replies = _classes(exceptions, "TryAgainError", "ClusterDownError")

    def unavailable(self, error: BaseException) -> bool:
        """Whether ``error`` means that Redis cannot answer now (not a misconfiguration)."""
        if isinstance(error, self.connectivity):
            return not isinstance(error, self.misconfigured)
        if isinstance(error, self.replies):
            return isinstance(error, self.transient_replies) or str(error).startswith("BUSY ")
        return False


def _classes(module: Any, *names: str) -> tuple[type[BaseException], ...]:
    found = (getattr(module, name, None) for name in names)
    return tuple(kind for kind in found if isinstance(kind, type))


@functools.cache
def _errors() -> _Errors:
    """The error classes, built on first use: importing this module must not import the
    optional ``redis`` package (only a limiter that meets an error needs its classes)."""
    return _Errors()


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

    __slots__ = ("_args", "_keys", "_lock", "_now", "_retry_at", "_script", "_take_one",
                 "_tolerance", "_up", "burst", "client", "cooldown", "interval_us", "key",
                 "rate", "unavailable", "when_unavailable")

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
        if not isinstance(when_unavailable, str) or when_unavailable not in WHEN_UNAVAILABLE:
            raise ValueError(f"when_unavailable must be one of {WHEN_UNAVAILABLE}, "
                             f"got {when_unavailable!r}")
        if not callable(getattr(client, "register_script", None)):
            raise TypeError(f"client must be a Redis client with register_script(), "
                            f"got {client!r}")
        if not isinstance(key, str):
            raise TypeError(f"key must be a non-empty str, got {key!r}")
        if not key:
            raise ValueError(f"key must be a non-empty str, got {key!r}")
        self.rate = require_finite_positive("rate", rate)
        self.burst = check_count("burst", burst)
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
        q, r = divmod(interval.numerator, interval.denominator)
        self._args = (str(q), str(r), str(interval.denominator), str(tolerance))
        self._take_one = [*self._args, "1", "take"]  # the common decision, built once
        self.cooldown = require_finite_non_negative("unavailable_cooldown", unavailable_cooldown)
        self.client = client
        self.key = key
        self._keys = [key]
        self._script = client.register_script(GCRA_SCRIPT)
        self._now = clock_reader(clock)
        self._init_base(clock, listeners)
        self._lock = threading.Lock()
        self.when_unavailable = when_unavailable
        self.unavailable = 0
        """Decisions made without Redis (admitted or rejected blind)."""
        self._up = True
        self._retry_at = -math.inf

    @classmethod
    def from_url(cls, url: str, key: str, rate: float, burst: int,
                 **options: Any) -> RedisGCRALimiter:
        """Connect with ``redis.Redis.from_url(url)`` (imports ``redis`` only now)."""
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, got {url!r}")
        import redis  # the optional backend: imported only by those who use it

        return cls(redis.Redis.from_url(url), key, rate, burst, **options)

    @property
    def max_permits(self) -> int:
        return self.burst

    def _run(self, mode: str, n: int) -> int:
        """One EVALSHA of :data:`GCRA_SCRIPT`: 0 (admitted) or the wait in µs > 0."""
        args = self._take_one if n == 1 and mode == "take" else [*self._args, str(n), mode]
        return int(self._script(keys=self._keys, args=args))

    def _try_run(self, mode: str, n: int) -> int | None:
        """:meth:`_run`, or ``None`` for a blind decision (Redis away, not raising).

        Only unavailability counts (see :class:`_Errors`): a misconfiguration raises,
        whatever ``when_unavailable`` says, and does not mark Redis as down.
        """
        blind = self.when_unavailable != "raise"
        if blind and not self._up and self._now() < self._retry_at:
            with self._lock:
                self.unavailable += 1
            return None  # still cooling down: do not wait for a dead server again
        try:
            result = self._run(mode, n)
        except Exception as error:
            if not _errors().unavailable(error):
                raise
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
        if result == 0 or (result is None and self.when_unavailable == "admit"):
            with self._lock:
                self.admitted += 1
            return now, 0.0
        if result is None:
            return now, self._blind_wait
        return now, max(result, 1) / 1e6

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
        return max(result, 1) / 1e6 if result else 0.0

    def refund(self, n: int = 1) -> None:
        """Give ``n`` permits back (lost, with a warning logged, while Redis is away and
        ``when_unavailable`` is not ``"raise"``)."""
        check_permits(n)
        self._try_run("refund", n)

    def server_time_us(self) -> int:
        """The server's clock, as the script reads it (integer microseconds)."""
        return self._run("time", 1)

    def __repr__(self) -> str:
        return f"RedisGCRALimiter(key={self.key!r}, rate={self.rate!r}, burst={self.burst!r})"
