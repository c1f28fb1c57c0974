"""What every rate limiter shares: the contract, the events and the waiting drivers.

A limiter *decides*: :meth:`RateLimiter.try_acquire` admits ``n`` permits now or takes
nothing, and :meth:`RateLimiter.time_until` says how long until ``n`` would fit. It
never sleeps. Three thin drivers do the waiting, all on the same decision logic:

* :meth:`RateLimiter.acquire` blocks with ``sleep`` (default :func:`time.sleep`);
* :meth:`RateLimiter.aacquire` awaits :func:`asyncio.sleep`;
* :meth:`RateLimiter.simpy_acquire` yields ``env.timeout(delay)`` in a SimPy process.

Each driver asks for the permits; if they do not fit it sleeps for the time the limiter
says and asks again, until they are granted or the timeout would pass. A wait may be
very long (a window of ``1e10`` s): the default blocking sleep takes it in steps of at
most an hour, since :func:`time.sleep` raises :class:`OverflowError` beyond
``threading.TIMEOUT_MAX``.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Protocol

from patterns._errors import Rebuildable
from patterns._timers import sleep as sleep_blocking
from patterns._validation import (
    require_clock,
    require_finite_positive,
    require_int_at_least,
    require_non_negative,
)
from patterns.clock import MONOTONIC, Clock
from patterns.events import Listeners

__all__ = [
    "Admitted",
    "RateLimitEvent",
    "RateLimitExceededError",
    "RateLimiter",
    "RateLimiterStats",
    "Rejected",
]

EPSILON: Final = 1e-9
"""Tolerance, in permits, of every "does it fit" comparison.

Times are floats: ``2/3 * 1.5`` tokens may come out a hair under 1. A request that fits
up to this tolerance is admitted, so a bound such as ``capacity + rate * T`` holds up to
``EPSILON`` permits, never more, and no request is refused by a rounding error.
"""


DEADLINE_SLACK: Final = 1e-9
"""Seconds by which a driver's wait may pass its deadline (float rounding of ``now + wait``)."""

MAX_PERMITS: Final = 2**53
"""The largest count a limiter accepts (``n``, a capacity, a limit): beyond it a float
no longer holds every integer, and ``10**400`` would not even convert to one."""


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class RateLimitEvent:
    """A decision a limiter made at ``time`` (the limiter's clock) about ``n`` permits."""

    time: float
    n: int


@dataclass(frozen=True, slots=True)
class Admitted(RateLimitEvent):
    """The permits were granted.

    ``delay`` is how long after ``time`` the request may go: 0, except for a
    :class:`~patterns.resilience.ratelimit.LeakyBucketQueue`, which grants a place in its
    queue and a departure time. ``waited`` is how long a driver had already waited
    before this decision (0 for :meth:`RateLimiter.try_acquire`).
    """

    delay: float = 0.0
    waited: float = 0.0


@dataclass(frozen=True, slots=True)
class Rejected(RateLimitEvent):
    """The permits were refused (nothing was taken).

    ``retry_after`` is how long until they would have fit (``math.inf`` if never).
    """

    retry_after: float = 0.0


@dataclass(frozen=True, slots=True)
class RateLimiterStats:
    """How many decisions a limiter has made (requests, not permits)."""

    admitted: int
    rejected: int

    @property
    def total(self) -> int:
        return self.admitted + self.rejected

    @property
    def admitted_share(self) -> float:
        """The share of requests admitted (``nan`` before the first one)."""
        return self.admitted / self.total if self.total else math.nan


class RateLimitExceededError(Rebuildable, Exception):
    """A rate-limited call was refused; try again after :attr:`retry_after` seconds."""

    def __init__(self, retry_after: float, n: int = 1) -> None:
        require_non_negative("retry_after", retry_after)
        require_int_at_least("n", n, 1)
        when = "never (more than the limiter can ever grant)" if math.isinf(retry_after) \
            else f"after {retry_after:.3g} s"
        super().__init__(f"rate limit exceeded for {n} permit(s); retry {when}")
        self.retry_after = retry_after
        self.n = n


# --------------------------------------------------------------------------- helpers


def bad_permits(n: object, limit: int | None = None) -> ValueError | TypeError:
    """The error for an invalid ``n`` (an int >= 1, at most ``limit`` where it must fit)."""
    if isinstance(n, bool) or not isinstance(n, int):
        return TypeError(f"n must be an int, got {n!r} ({type(n).__name__})")
    if n < 1:
        return ValueError(f"n must be >= 1, got {n!r}")
    if limit is None or n > MAX_PERMITS:
        shown = repr(n) if n < 10**30 else f"an int of {n.bit_length()} bits"
        return ValueError(f"n must be <= 2**53, got {shown}")
    return ValueError(f"n must be <= {limit} (the most this limiter can ever grant at "
                      f"once), got {n!r}")


def check_permits(n: int) -> int:
    """``n`` is an int, 1 <= n <= :data:`MAX_PERMITS` (cheap: runs on every decision)."""
    if n.__class__ is not int or n < 1 or n > MAX_PERMITS:
        raise bad_permits(n)
    return n


def check_count(name: str, value: int) -> int:
    """A capacity, burst or limit: an int, 1 <= value <= :data:`MAX_PERMITS`."""
    require_int_at_least(name, value, 1)
    if value > MAX_PERMITS:
        raise ValueError(f"{name} must be <= 2**53, got {value!r}")
    return value


def check_rate(rate: float, capacity: int, capacity_name: str) -> float:
    """A finite rate > 0 such that ``capacity / rate`` (the time to refill) is finite."""
    rate = require_finite_positive("rate", rate)
    if math.isinf(capacity / rate):
        raise ValueError(f"rate must be large enough for {capacity_name} / rate to be a "
                         f"finite number of seconds, got rate={rate!r} with "
                         f"{capacity_name}={capacity!r}")
    return rate


MIN_WINDOW: Final = 1e-9
MAX_WINDOW: Final = 1e300


def check_window(window: float) -> float:
    """A window length in seconds within [:data:`MIN_WINDOW`, :data:`MAX_WINDOW`].

    Below a nanosecond, ``now // window`` overflows for ordinary clock readings (and the
    window never changes again); above ``1e300`` s, window arithmetic overflows.
    """
    window = require_finite_positive("window", window)
    if not MIN_WINDOW <= window <= MAX_WINDOW:
        raise ValueError(f"window must be within [{MIN_WINDOW:g}, {MAX_WINDOW:g}] seconds, "
                         f"got {window!r}")
    return window


def check_sleep(sleep: object) -> None:
    if sleep is not None and not callable(sleep):
        raise TypeError(f"sleep must be callable, got {sleep!r}")


def positive_wait(now: float, target: float) -> float:
    """The smallest wait ``w > 0`` with ``now + w >= target`` (in float arithmetic).

    A driver sleeps ``w`` and asks again; a clock that adds ``w`` to ``now`` (a manual
    clock, SimPy's ``env.now``) must then read at least ``target``, and time must move:
    a wait of ``1e-17`` s at ``now = 5.0`` would not move it, and the driver would spin.
    """
    wait = target - now
    if wait <= 0.0:
        wait = math.ulp(now) if now else 5e-324
    while now + wait < target or now + wait <= now:
        wait = math.nextafter(wait, math.inf)
    return wait


def clock_reader(clock: Clock) -> Callable[[], float]:
    """The fastest callable that reads ``clock``: :func:`time.monotonic` for the default."""
    if clock is MONOTONIC:
        return time.monotonic
    return require_clock("clock", clock).now  # type: ignore[no-any-return]


def check_env(env: object) -> None:
    """``env`` looks like a ``simpy.Environment`` (``now`` and ``timeout()``)."""
    if isinstance(env, type) or not hasattr(env, "now") or not callable(
            getattr(env, "timeout", None)):
        raise TypeError(f"env must be a simpy.Environment, got {env!r}")


class _SimEnvironment(Protocol):
    """The part of a ``simpy.Environment`` that the SimPy driver uses."""

    @property
    def now(self) -> float: ...

    def timeout(self, delay: float) -> Any: ...


class Step(Enum):
    """What a driver does after one decision."""

    GO = "go"  # admitted: sleep ``delay`` (usually 0), then go
    RETRY = "retry"  # not yet: sleep ``delay``, then ask again
    GIVE_UP = "give_up"  # would pass the deadline: return False


async def _asyncio_sleep(delay: float) -> None:
    import asyncio  # imported here: sync and SimPy users do not pay for asyncio

    await asyncio.sleep(delay)


def _deadline(start: float, timeout: float | None) -> float:
    if timeout is None:
        return math.inf
    return start + require_non_negative("timeout", timeout)


# --------------------------------------------------------------------------- the contract


class RateLimiter(ABC):
    """Admit at most so many permits per unit of time (guide section 4.5, 流量控制与限流).

    Subclasses implement :meth:`_decide` (take ``n`` now if they fit, else report the
    wait), :meth:`time_until`, :meth:`refund` and :attr:`max_permits`; this class adds
    the counting, the events and the three waiting drivers.

    ``admitted`` and ``rejected`` count decisions (requests, not permits); listeners on
    :attr:`listeners` receive an :class:`Admitted` or :class:`Rejected` event for each.
    A driver that waits and asks again counts (and reports) only its final decision.
    """

    __slots__ = ("admitted", "clock", "listeners", "rejected")

    admitted: int
    rejected: int
    clock: Clock
    listeners: Listeners[RateLimitEvent]

    def _init_base(self, clock: Clock, listeners: Listeners[RateLimitEvent] | None) -> None:
        if listeners is not None and not isinstance(listeners, Listeners):
            raise TypeError(f"listeners must be a Listeners registry, got {listeners!r}")
        self.clock = clock
        self.listeners = listeners if listeners is not None else Listeners()
        self.admitted = 0
        self.rejected = 0

    # ----------------------------------------------------------------- to implement

    @property
    @abstractmethod
    def max_permits(self) -> int:
        """The most permits one request can ever be granted (its ``n`` at most)."""

    @abstractmethod
    def _decide(self, n: int) -> tuple[float, float]:
        """Take ``n`` permits if they fit now; return ``(now, wait)``.

        ``wait`` is 0.0 if they were taken (and ``admitted`` was counted), else how long
        until they would fit (nothing taken, nothing counted; ``math.inf`` if never).
        """

    @abstractmethod
    def time_until(self, n: int = 1) -> float:
        """Seconds until ``n`` permits would fit (0.0 if now, ``math.inf`` if never).

        Takes nothing. Under concurrency another caller may take the permits first, so
        the drivers ask again after waiting.
        """

    @abstractmethod
    def refund(self, n: int = 1) -> None:
        """Give back ``n`` permits that were granted but not used.

        For a request admitted here and then refused elsewhere (the second tier of a
        :class:`~patterns.resilience.ratelimit.TieredRateLimiter`). The counters are not
        changed: they count decisions.
        """

    def _count_rejection(self) -> None:
        """Count one rejection (subclasses with a lock override this to use it)."""
        self.rejected += 1

    # ----------------------------------------------------------------- deciding

    def attempt(self, n: int = 1) -> float:
        """Take ``n`` permits if they fit now and return 0.0; otherwise take nothing and
        return the seconds until they would fit (``math.inf`` if they never can)."""
        check_permits(n)
        now, wait = self._decide(n)
        if wait:
            self._count_rejection()
            if self.listeners.snapshot:
                self.listeners.emit(Rejected(now, n, wait))
        elif self.listeners.snapshot:
            self.listeners.emit(Admitted(now, n))
        return wait

    def try_acquire(self, n: int = 1) -> bool:
        """Take ``n`` permits if they fit now (``True``); otherwise take nothing (``False``)."""
        return self.attempt(n) == 0.0

    def stats(self) -> RateLimiterStats:
        """The decisions made so far."""
        return RateLimiterStats(self.admitted, self.rejected)

    # ----------------------------------------------------------------- the drivers

    def _check_fits(self, n: int) -> None:
        check_permits(n)
        if n > self.max_permits:
            raise bad_permits(n, self.max_permits)

    def _step(self, n: int, start: float, deadline: float) -> tuple[Step, float]:
        """One decision of a driver: go (after a delay), retry after a wait, or give up."""
        now, wait = self._decide(n)
        if not wait:
            if self.listeners.snapshot:
                self.listeners.emit(Admitted(now, n, 0.0, now - start))
            return Step.GO, 0.0
        if now + wait > deadline + DEADLINE_SLACK:
            self._count_rejection()
            if self.listeners.snapshot:
                self.listeners.emit(Rejected(now, n, wait))
            return Step.GIVE_UP, wait
        return Step.RETRY, wait

    def acquire(
        self,
        n: int = 1,
        *,
        timeout: float | None = None,
        sleep: Callable[[float], object] | None = None,
    ) -> bool:
        """Wait (blocking the thread) until ``n`` permits are granted; return ``True``.

        Returns ``False``, taking nothing, as soon as it is clear that they would not
        be granted within ``timeout`` seconds (``None``: wait as long as it takes).
        ``sleep`` defaults to :func:`time.sleep` (in steps of at most an hour, so that
        any wait works); tests pass :meth:`patterns.clock.ManualClock.sleep`, which gets
        each whole wait. Raises :class:`ValueError` if ``n`` exceeds :attr:`max_permits`
        (it would wait forever).
        """
        self._check_fits(n)
        check_sleep(sleep)
        sleeper = sleep_blocking if sleep is None else sleep
        start = self.clock.now()
        deadline = _deadline(start, timeout)
        while True:
            step, delay = self._step(n, start, deadline)
            if step is Step.GIVE_UP:
                return False
            if delay > 0.0:
                sleeper(delay)
            if step is Step.GO:
                return True

    async def aacquire(self, n: int = 1, *, timeout: float | None = None) -> bool:
        """Like :meth:`acquire`, waiting with :func:`asyncio.sleep` instead of blocking
        (asyncio takes waits of any length)."""
        self._check_fits(n)
        start = self.clock.now()
        deadline = _deadline(start, timeout)
        while True:
            step, delay = self._step(n, start, deadline)
            if step is Step.GIVE_UP:
                return False
            if delay > 0.0:
                await _asyncio_sleep(delay)
            if step is Step.GO:
                return True

    def simpy_acquire(
        self, env: _SimEnvironment, n: int = 1, *, timeout: float | None = None
    ) -> Generator[Any, Any, bool]:
        """Like :meth:`acquire`, in simulated time: ``ok = yield from lim.simpy_acquire(env)``.

        The limiter must read the simulation's time (``clock=SimClock(env)``). The
        arguments are checked when this is called, before the process runs.
        """
        check_env(env)
        self._check_fits(n)
        if timeout is not None:
            require_non_negative("timeout", timeout)
        return self._simpy_acquire(env, n, timeout)

    def _simpy_acquire(
        self, env: _SimEnvironment, n: int, timeout: float | None
    ) -> Generator[Any, Any, bool]:
        start = self.clock.now()
        if start != env.now:
            raise ValueError(f"the limiter's clock reads {start!r} but env.now is "
                             f"{env.now!r}: give the limiter clock=SimClock(env)")
        deadline = _deadline(start, timeout)
        while True:
            step, delay = self._step(n, start, deadline)
            if step is Step.GIVE_UP:
                return False
            if delay > 0.0:
                yield env.timeout(delay)
            if step is Step.GO:
                return True


class LocalRateLimiter(RateLimiter):
    """An in-process limiter: its state lives in this object, guarded by one lock.

    Subclasses implement ``_take(now, n)`` (take or report the wait; called with the
    lock held) and ``_peek(now, n)`` (the wait, taking nothing). No user code runs while
    the lock is held: listeners are called after it is released.
    """

    __slots__ = ("_lock", "_now")

    _lock: threading.Lock
    _now: Callable[[], float]

    def _init_local(self, clock: Clock, listeners: Listeners[RateLimitEvent] | None) -> None:
        self._now = clock_reader(clock)
        self._init_base(clock, listeners)
        self._lock = threading.Lock()

    @abstractmethod
    def _take(self, now: float, n: int) -> float:
        """With the lock held: take ``n`` and return 0.0, or return the wait."""

    @abstractmethod
    def _peek(self, now: float, n: int) -> float:
        """With the lock held: the wait until ``n`` would fit, taking nothing."""

    @abstractmethod
    def _give_back(self, now: float, n: int) -> None:
        """With the lock held: return ``n`` permits."""

    def try_acquire(self, n: int = 1) -> bool:
        if n.__class__ is not int or n < 1 or n > MAX_PERMITS:
            raise bad_permits(n)
        with self._lock:
            now = self._now()
            wait = self._take(now, n)
            if wait:
                self.rejected += 1
            else:
                self.admitted += 1
        if self.listeners.snapshot:
            self.listeners.emit(Rejected(now, n, wait) if wait else Admitted(now, n))
        return not wait

    def _decide(self, n: int) -> tuple[float, float]:
        with self._lock:
            now = self._now()
            wait = self._take(now, n)
            if not wait:
                self.admitted += 1
        return now, wait

    def _count_rejection(self) -> None:
        with self._lock:
            self.rejected += 1

    def time_until(self, n: int = 1) -> float:
        check_permits(n)
        with self._lock:
            return self._peek(self._now(), n)

    def refund(self, n: int = 1) -> None:
        check_permits(n)
        with self._lock:
            self._give_back(self._now(), n)
