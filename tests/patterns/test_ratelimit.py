"""Tests for :mod:`patterns.resilience.ratelimit` (guide section 4.5), without Redis."""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from patterns.clock import ManualClock
from patterns.events import Listeners
from patterns.resilience.ratelimit import (
    Admitted,
    FixedWindowLimiter,
    GCRALimiter,
    LeakyBucket,
    LeakyBucketQueue,
    RateLimiter,
    RateLimiterStats,
    RateLimitEvent,
    RateLimitExceededError,
    RateLimitMiddleware,
    Rejected,
    SlidingLogLimiter,
    SlidingWindowCounterLimiter,
    TieredRateLimiter,
    TokenBucket,
    rate_limited,
)
from patterns.resilience.ratelimit._base import positive_wait

Factory = Callable[[ManualClock], RateLimiter]

# Every limiter, configured for 4 permits at once and 2 per second on average.
FACTORIES: dict[str, Factory] = {
    "token_bucket": lambda c: TokenBucket(2.0, 4, clock=c),
    "leaky_bucket": lambda c: LeakyBucket(2.0, 4, clock=c),
    "gcra": lambda c: GCRALimiter(2.0, 4, clock=c),
    "leaky_queue": lambda c: LeakyBucketQueue(2.0, 4, clock=c),
    "fixed_window": lambda c: FixedWindowLimiter(4, 2.0, clock=c),
    "sliding_log": lambda c: SlidingLogLimiter(4, 2.0, clock=c),
    "sliding_counter": lambda c: SlidingWindowCounterLimiter(4, 2.0, clock=c),
}
KINDS = list(FACTORIES)


def take_all(limiter: RateLimiter, limit: int = 10_000) -> int:
    """Call ``try_acquire`` until it refuses; return how many were admitted."""
    for admitted in range(limit):
        if not limiter.try_acquire():
            return admitted
    raise AssertionError("the limiter never refused")


def recorded(limiter: RateLimiter) -> list[RateLimitEvent]:
    events: list[RateLimitEvent] = []
    limiter.listeners.add(events.append)
    return events


# =========================================================================== token bucket


def test_token_bucket_starts_full_and_refuses_the_next() -> None:
    bucket = TokenBucket(1.0, 5, clock=ManualClock())
    assert take_all(bucket) == 5
    assert bucket.stats() == RateLimiterStats(admitted=5, rejected=1)


def test_token_bucket_keeps_fractions_of_tokens() -> None:
    # The guide truncates each refill and restarts its clock: at 1.5 tokens per second
    # a caller coming every second gets 1. Here it gets 1, 2, 1, 2, ...: 1.5 on average.
    clock = ManualClock()
    bucket = TokenBucket(1.5, 2, clock=clock)
    assert take_all(bucket) == 2
    per_second = []
    for _ in range(10):
        clock.advance(1.0)
        per_second.append(take_all(bucket))
    assert per_second == [1, 2] * 5
    assert sum(per_second) == 15


def test_token_bucket_refills_exactly_at_the_computed_time() -> None:
    clock = ManualClock()
    bucket = TokenBucket(1.5, 1, clock=clock)
    assert bucket.try_acquire()
    assert bucket.time_until() == pytest.approx(2 / 3)
    clock.advance(2 / 3 - 1e-6)
    assert not bucket.try_acquire()
    clock.set(2 / 3)
    assert bucket.try_acquire()  # 2/3 * 1.5 is a hair under 1 in floats: still admitted


def test_token_bucket_tokens_and_weighted_requests() -> None:
    clock = ManualClock()
    bucket = TokenBucket(2.0, 10, clock=clock)
    assert bucket.try_acquire(7)
    assert bucket.tokens == pytest.approx(3.0)
    assert not bucket.try_acquire(4)  # refused: nothing taken
    assert bucket.tokens == pytest.approx(3.0)
    assert bucket.time_until(4) == pytest.approx(0.5)
    clock.advance(0.5)
    assert bucket.try_acquire(4)
    clock.advance(100.0)
    assert bucket.tokens == 10.0  # capped at capacity


def test_token_bucket_n_above_capacity_never_fits() -> None:
    bucket = TokenBucket(1.0, 3, clock=ManualClock())
    assert bucket.time_until(4) == math.inf
    assert not bucket.try_acquire(4)
    assert bucket.attempt(4) == math.inf
    assert bucket.tokens == 3.0


def test_refund_gives_tokens_back_up_to_capacity() -> None:
    clock = ManualClock()
    bucket = TokenBucket(1.0, 3, clock=clock)
    assert take_all(bucket) == 3
    bucket.refund(2)
    assert bucket.tokens == pytest.approx(2.0)
    bucket.refund(5)
    assert bucket.tokens == 3.0


# =========================================================================== leaky bucket


def test_leaky_bucket_meter_fills_then_drains() -> None:
    clock = ManualClock()
    bucket = LeakyBucket(4.0, 3, clock=clock)
    assert bucket.level == 0.0
    assert take_all(bucket) == 3
    assert bucket.level == 3.0
    assert bucket.time_until() == pytest.approx(0.25)
    clock.advance(0.5)
    assert bucket.level == pytest.approx(1.0)
    assert take_all(bucket) == 2
    bucket.refund(1)
    assert bucket.level == pytest.approx(2.0)


# =========================================================================== GCRA


def test_gcra_admits_burst_then_one_per_interval() -> None:
    clock = ManualClock(100.0)
    gcra = GCRALimiter(4.0, 3, clock=clock)
    assert gcra.theoretical_arrival_time == -math.inf
    assert take_all(gcra) == 3
    assert gcra.theoretical_arrival_time == pytest.approx(100.75)
    assert gcra.time_until() == pytest.approx(0.25)
    assert gcra.time_until(2) == pytest.approx(0.5)
    assert gcra.time_until(4) == math.inf
    clock.advance(0.25)
    assert take_all(gcra) == 1
    clock.advance(1.0)
    assert take_all(gcra) == 3


def test_gcra_weighted_request_and_refund() -> None:
    clock = ManualClock()
    gcra = GCRALimiter(10.0, 5, clock=clock)
    assert gcra.try_acquire(5)
    assert not gcra.try_acquire(1)
    gcra.refund(2)
    assert gcra.try_acquire(2)
    assert not gcra.try_acquire(1)
    gcra.refund(100)  # never beyond a full bucket
    assert gcra.theoretical_arrival_time == clock.now()
    assert take_all(gcra) == 5


@pytest.mark.parametrize("kind", ["token_bucket", "leaky_bucket"])
@settings(max_examples=60)
@given(steps=st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 5)), max_size=80),
       rate=st.sampled_from([0.5, 1.5, 3.0, 7.0, 20.0]), burst=st.integers(1, 6))
def test_buckets_and_gcra_make_the_same_decisions(
    kind: str, steps: list[tuple[int, int]], rate: float, burst: int
) -> None:
    # Three representations, one algorithm: the decisions agree request by request.
    clock = ManualClock()
    gcra = GCRALimiter(rate, burst, clock=clock)
    other: RateLimiter = (TokenBucket(rate, burst, clock=clock) if kind == "token_bucket"
                          else LeakyBucket(rate, burst, clock=clock))
    for millis, n in steps:
        clock.advance(millis / 1000)
        assert other.try_acquire(n) == gcra.try_acquire(n), (clock.now(), n)


# =========================================================================== leaky queue


def test_leaky_queue_spaces_reservations_evenly() -> None:
    clock = ManualClock()
    queue = LeakyBucketQueue(2.0, 3, clock=clock)
    assert [queue.reserve() for _ in range(5)] == [0.0, 0.5, 1.0, None, None]
    assert queue.backlog == pytest.approx(1.5)
    assert queue.stats() == RateLimiterStats(admitted=3, rejected=2)
    clock.advance(0.5)  # the first has gone: room for one more, at the end of the queue
    assert queue.reserve() == pytest.approx(1.0)
    assert queue.reserve() is None


def test_leaky_queue_weighted_and_max_wait() -> None:
    clock = ManualClock()
    queue = LeakyBucketQueue(10.0, 5, clock=clock)
    assert queue.reserve(3) == 0.0
    assert queue.reserve(2, max_wait=0.2) is None  # it would wait 0.3 s
    assert queue.reserve(2, max_wait=0.3) == pytest.approx(0.3)
    assert queue.reserve(1) is None  # 5 permits in the bucket: full
    assert queue.time_until() == pytest.approx(0.5)
    assert queue.time_until(6) == math.inf


def test_leaky_queue_try_acquire_only_when_it_may_go_at_once() -> None:
    clock = ManualClock()
    queue = LeakyBucketQueue(4.0, 10, clock=clock)
    assert queue.try_acquire()
    assert not queue.try_acquire()  # it would have to wait 0.25 s
    assert queue.time_until() == pytest.approx(0.25)
    clock.advance(0.25)
    assert queue.try_acquire()


def test_leaky_queue_drivers_sleep_their_turn_first_come_first_served() -> None:
    clock = ManualClock()
    queue = LeakyBucketQueue(5.0, 10, clock=clock)
    events = recorded(queue)
    for _ in range(3):
        assert queue.acquire(sleep=lambda _: None)  # callers that do not move the clock
    assert queue.acquire(sleep=clock.sleep)
    assert clock.slept == [pytest.approx(0.6)]
    assert [e.delay for e in events if isinstance(e, Admitted)] == pytest.approx(
        [0.0, 0.2, 0.4, 0.6])
    assert not queue.acquire(timeout=0.1, sleep=clock.sleep)  # the wait would be 0.2 s
    assert queue.stats() == RateLimiterStats(admitted=4, rejected=1)


# =========================================================================== fixed window


def test_fixed_window_counts_per_aligned_window() -> None:
    clock = ManualClock(10.0)
    window = FixedWindowLimiter(3, 1.0, clock=clock)
    assert take_all(window) == 3
    assert window.time_until() == pytest.approx(1.0)
    clock.set(10.999)
    assert take_all(window) == 0
    assert window.time_until() == pytest.approx(0.001)
    clock.set(11.0)
    assert take_all(window) == 3


def test_fixed_window_allows_twice_the_limit_across_an_edge() -> None:
    clock = ManualClock()
    window = FixedWindowLimiter(5, 1.0, clock=clock)
    clock.set(0.999)
    assert take_all(window) == 5
    clock.set(1.0)
    assert take_all(window) == 5  # 10 in one millisecond: the flaw of fixed windows


def test_fixed_window_with_an_inexact_window_always_makes_progress() -> None:
    # 0.1 is not a binary fraction; waiting what time_until says must reach the next
    # window, never leave a driver spinning on a zero wait.
    clock = ManualClock()
    window = FixedWindowLimiter(1, 0.1, clock=clock)
    for expected in range(1, 40):
        assert window.acquire(sleep=clock.sleep)
        assert clock.now() // 0.1 == expected - 1
    assert len(clock.slept) == 38


def test_fixed_window_refund_only_in_the_same_window() -> None:
    clock = ManualClock()
    window = FixedWindowLimiter(2, 1.0, clock=clock)
    assert take_all(window) == 2
    window.refund()
    assert take_all(window) == 1
    clock.set(1.5)
    window.refund(2)  # the old window is gone: nothing to give back
    assert take_all(window) == 2


# =========================================================================== sliding log


def test_sliding_log_is_exact_over_any_window() -> None:
    clock = ManualClock()
    log = SlidingLogLimiter(3, 1.0, clock=clock)
    assert log.try_acquire()
    clock.set(0.9)
    assert take_all(log) == 2
    assert log.time_until() == pytest.approx(0.1)  # the request at 0 leaves at 1.0
    assert log.time_until(2) == pytest.approx(1.0)  # both at 0.9 must leave too... or
    clock.set(1.0)
    assert take_all(log) == 1
    clock.set(1.9)
    assert take_all(log) == 2


def test_sliding_log_weighted_requests_and_refund() -> None:
    clock = ManualClock()
    log = SlidingLogLimiter(10, 2.0, clock=clock)
    assert log.try_acquire(4)
    clock.advance(0.5)
    assert log.try_acquire(6)
    assert not log.try_acquire(1)
    assert log.time_until(4) == pytest.approx(1.5)  # the 4 leave at 2.0
    assert log.time_until(5) == pytest.approx(2.0)  # the 6 must leave too, at 2.5
    log.refund(3)  # takes back from the newest entry
    assert log.try_acquire(3)
    assert log.time_until(11) == math.inf


def test_sliding_log_merges_simultaneous_requests() -> None:
    log = SlidingLogLimiter(1000, 1.0, clock=ManualClock())
    assert take_all(log) == 1000
    assert len(log._log) == 1  # one entry for 1000 requests at the same instant


# =========================================================================== sliding counter


def test_sliding_counter_weights_the_previous_window() -> None:
    clock = ManualClock()
    counter = SlidingWindowCounterLimiter(10, 1.0, clock=clock)
    assert take_all(counter) == 10
    clock.set(1.25)  # 75 % of the previous window still counts: 7.5 + 0 + n <= 10
    assert take_all(counter) == 2
    assert counter.time_until() == pytest.approx(0.05)  # 10 * (1 - x) + 2 + 1 <= 10
    clock.set(1.5)
    assert take_all(counter) == 3  # 5 + 2 + 3 <= 10
    clock.set(3.0)  # two windows later: nothing counts
    assert take_all(counter) == 10


def test_sliding_counter_waits_for_the_next_window_when_its_own_is_full() -> None:
    clock = ManualClock()
    counter = SlidingWindowCounterLimiter(4, 1.0, clock=clock)
    clock.set(0.5)
    assert take_all(counter) == 4
    # In window 1 the previous count 4 weighs 4 * (1 - x); one more fits when x = 1/4.
    assert counter.time_until() == pytest.approx(0.75)
    clock.advance(counter.time_until())
    assert counter.try_acquire()


# =========================================================================== validation


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: TokenBucket(0.0, 1), "rate must be > 0, got 0.0"),
        (lambda: TokenBucket(math.inf, 1), "rate must be finite, got inf"),
        (lambda: TokenBucket(1.0, 0), "capacity must be >= 1, got 0"),
        (lambda: LeakyBucket(-1.0, 1), "rate must be > 0, got -1.0"),
        (lambda: GCRALimiter(1.0, 0), "burst must be >= 1, got 0"),
        (lambda: LeakyBucketQueue(math.nan, 1), "rate must be a number, got nan"),
        (lambda: FixedWindowLimiter(0, 1.0), "limit must be >= 1, got 0"),
        (lambda: SlidingLogLimiter(1, 0.0), "window must be > 0, got 0.0"),
        (lambda: SlidingWindowCounterLimiter(1, -2.0), "window must be > 0, got -2.0"),
    ],
)
def test_bad_parameters_are_named_in_the_error(build: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        build()


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: TokenBucket(1.0, 1.5), TypeError),  # type: ignore[arg-type]
        (lambda: GCRALimiter("1", 1), TypeError),  # type: ignore[arg-type]
        (lambda: FixedWindowLimiter(True, 1.0), TypeError),
        (lambda: TokenBucket(1.0, 1, clock=object()), TypeError),  # type: ignore[arg-type]
        (lambda: TokenBucket(1.0, 1, listeners=[]), TypeError),  # type: ignore[arg-type]
    ],
)
def test_wrong_types_raise_type_error(build: Callable[[], Any], error: type) -> None:
    with pytest.raises(error):
        build()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("n", "error", "text"), [
    (0, ValueError, "n must be >= 1, got 0"),
    (-3, ValueError, "n must be >= 1, got -3"),
    (1.0, TypeError, "n must be an int, got 1.0 (float)"),
    (True, TypeError, "n must be an int, got True (bool)"),
    ("2", TypeError, "n must be an int, got '2' (str)"),
])
def test_bad_n_is_refused_by_every_method(kind: str, n: Any, error: type, text: str) -> None:
    limiter = FACTORIES[kind](ManualClock())
    for method in (limiter.try_acquire, limiter.time_until, limiter.attempt, limiter.refund,
                   limiter.acquire):
        with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)")):
            method(n)
    assert limiter.stats() == RateLimiterStats(0, 0)


@pytest.mark.parametrize("kind", KINDS)
def test_drivers_refuse_n_that_can_never_fit(kind: str) -> None:
    clock = ManualClock()
    limiter = FACTORIES[kind](clock)
    with pytest.raises(ValueError, match=r"n must be <= 4 .*, got 5"):
        limiter.acquire(5, sleep=clock.sleep)
    with pytest.raises(ValueError, match="timeout must be >= 0, got -1"):
        limiter.acquire(1, timeout=-1)
    assert limiter.time_until(5) == math.inf
    assert limiter.max_permits == 4


# =========================================================================== events


@pytest.mark.parametrize("kind", KINDS)
def test_events_and_counters_for_every_decision(kind: str) -> None:
    clock = ManualClock(5.0)
    limiter = FACTORIES[kind](clock)
    events = recorded(limiter)
    admitted = take_all(limiter)
    assert admitted >= 1
    assert limiter.stats() == RateLimiterStats(admitted, 1)
    assert [type(e) for e in events] == [Admitted] * admitted + [Rejected]
    refusal = events[-1]
    assert isinstance(refusal, Rejected)
    assert refusal.time == 5.0
    assert refusal.n == 1
    assert refusal.retry_after == pytest.approx(limiter.time_until())
    assert refusal.retry_after > 0
    assert limiter.stats().admitted_share == admitted / (admitted + 1)


def test_a_failing_listener_does_not_disturb_the_limiter(caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    listeners: Listeners[RateLimitEvent] = Listeners()
    seen: list[RateLimitEvent] = []

    def broken(event: RateLimitEvent) -> None:
        raise RuntimeError("listener bug")

    listeners.add(broken)
    listeners.add(seen.append)
    bucket = TokenBucket(1.0, 1, clock=ManualClock(), listeners=listeners)
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
    assert len(seen) == 2
    assert "listener bug" in caplog.text


def test_listeners_run_without_the_lock_held() -> None:
    bucket = GCRALimiter(1.0, 2, clock=ManualClock())
    inside: list[float] = []
    # A listener that uses the limiter would deadlock if the lock were held.
    bucket.listeners.add(lambda event: inside.append(bucket.time_until()))
    assert bucket.try_acquire()
    assert inside == [0.0]


def test_stats_before_any_request() -> None:
    stats = TokenBucket(1.0, 1, clock=ManualClock()).stats()
    assert stats.total == 0
    assert math.isnan(stats.admitted_share)


# =========================================================================== time_until


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=40)
@given(history=st.lists(st.tuples(st.integers(0, 1500), st.integers(1, 4)), max_size=30),
       n=st.integers(1, 4))
def test_time_until_is_exact(kind: str, history: list[tuple[int, int]], n: int) -> None:
    # Two limiters, same history. Waiting exactly time_until(n) admits n; waiting a
    # little less does not. (So a driver neither waits too long nor spins.)
    clock_a, clock_b = ManualClock(), ManualClock()
    a, b = FACTORIES[kind](clock_a), FACTORIES[kind](clock_b)
    for millis, permits in history:
        clock_a.advance(millis / 1000)
        clock_b.advance(millis / 1000)
        assert a.try_acquire(permits) == b.try_acquire(permits)
    wait = a.time_until(n)
    assert wait == b.time_until(n)
    assert 0.0 <= wait < math.inf
    if wait > 1e-6:
        clock_b.advance(wait * (1 - 1e-6))
        assert not b.try_acquire(n)
    clock_a.advance(wait)
    assert a.try_acquire(n)


@given(now=st.floats(0, 1e12), gap=st.floats(0, 10))
def test_positive_wait_always_moves_time_past_the_target(now: float, gap: float) -> None:
    target = now + gap
    wait = positive_wait(now, target)
    assert wait > 0
    assert now + wait >= target
    assert now + wait > now


# =========================================================================== bounds (hypothesis)

arrival_steps = st.lists(st.tuples(st.integers(0, 700), st.integers(1, 3)), min_size=1,
                         max_size=120)


def run_history(limiter: RateLimiter, clock: ManualClock,
                steps: list[tuple[int, int]]) -> list[tuple[float, int]]:
    """Feed (milliseconds to wait, permits) requests; return the admitted (time, n)."""
    admitted = []
    for millis, n in steps:
        clock.advance(millis / 1000)
        if limiter.try_acquire(n):
            admitted.append((clock.now(), n))
    return admitted


def permits_in(admitted: list[tuple[float, int]], start: float, end: float,
               *, closed: bool) -> int:
    return sum(n for t, n in admitted if start <= t and (t <= end if closed else t < end))


@pytest.mark.parametrize("kind", ["token_bucket", "leaky_bucket", "gcra"])
@settings(max_examples=80)
@given(steps=arrival_steps, rate=st.sampled_from([0.7, 2.0, 5.5, 30.0]),
       capacity=st.integers(3, 8))
def test_buckets_admit_at_most_capacity_plus_rate_times_t(
    kind: str, steps: list[tuple[int, int]], rate: float, capacity: int
) -> None:
    # Bound: in any closed interval [a, b], at most capacity + rate * (b - a) permits.
    clock = ManualClock()
    limiter = {"token_bucket": TokenBucket, "leaky_bucket": LeakyBucket,
               "gcra": GCRALimiter}[kind](rate, capacity, clock=clock)
    admitted = run_history(limiter, clock, steps)
    times = [t for t, _ in admitted]
    for i, start in enumerate(times):
        for end in times[i:]:
            assert permits_in(admitted, start, end, closed=True) \
                <= capacity + rate * (end - start) + 1e-6


@settings(max_examples=80)
@given(steps=arrival_steps, rate=st.sampled_from([0.7, 2.0, 5.5]), capacity=st.integers(3, 8))
def test_leaky_queue_departures_are_spaced_by_the_emission_interval(
    steps: list[tuple[int, int]], rate: float, capacity: int
) -> None:
    # Bound: departures (reservation time + delay) are n / rate apart, so at most
    # 1 + rate * (b - a) permits of size 1 leave in any closed interval [a, b]; and
    # never more than capacity are waiting or leaving at once.
    clock = ManualClock()
    queue = LeakyBucketQueue(rate, capacity, clock=clock)
    departures: list[tuple[float, int]] = []
    for millis, n in steps:
        clock.advance(millis / 1000)
        delay = queue.reserve(n)
        if delay is not None:
            assert delay * rate + n <= capacity + 1e-6
            departures.append((clock.now() + delay, n))
    for (first, n), (second, _) in itertools.pairwise(departures):
        assert second >= first + n / rate - 1e-9


@settings(max_examples=80)
@given(steps=arrival_steps, limit=st.integers(3, 8), window=st.sampled_from([0.25, 1.0, 1.5]))
def test_fixed_window_bounds(steps: list[tuple[int, int]], limit: int, window: float) -> None:
    # Bound: at most limit per aligned window, at most 2 * limit in any [a, a + W).
    clock = ManualClock()
    admitted = run_history(FixedWindowLimiter(limit, window, clock=clock), clock, steps)
    for start, _ in admitted:
        aligned = (start // window) * window
        assert permits_in(admitted, aligned, aligned + window, closed=False) <= limit
        assert permits_in(admitted, start, start + window, closed=False) <= 2 * limit


@settings(max_examples=80)
@given(steps=arrival_steps, limit=st.integers(3, 8), window=st.sampled_from([0.25, 1.0, 1.5]))
def test_sliding_log_admits_at_most_limit_in_any_window(
    steps: list[tuple[int, int]], limit: int, window: float
) -> None:
    # Bound: at most limit in any interval [a, a + W): exact.
    clock = ManualClock()
    admitted = run_history(SlidingLogLimiter(limit, window, clock=clock), clock, steps)
    for start, _ in admitted:
        assert permits_in(admitted, start, start + window, closed=False) <= limit


@settings(max_examples=80)
@given(steps=arrival_steps, limit=st.integers(3, 8), window=st.sampled_from([0.25, 1.0, 1.5]))
def test_sliding_counter_bounds(steps: list[tuple[int, int]], limit: int, window: float) -> None:
    # Bound: at most limit per aligned window, at most 2 * limit - 1 in any [a, a + W).
    clock = ManualClock()
    admitted = run_history(SlidingWindowCounterLimiter(limit, window, clock=clock), clock,
                           steps)
    for start, _ in admitted:
        aligned = (start // window) * window
        assert permits_in(admitted, aligned, aligned + window, closed=False) <= limit
        assert permits_in(admitted, start, start + window, closed=False) <= 2 * limit - 1


def test_sliding_counter_worst_case_reaches_two_limits_minus_one() -> None:
    # The bound above is tight: the previous window's traffic bunched at its end.
    clock = ManualClock()
    counter = SlidingWindowCounterLimiter(10, 1.0, clock=clock)
    clock.set(0.999)
    assert take_all(counter) == 10
    clock.set(1.998)  # weight of the previous window: 10 * 0.002 = 0.02
    assert take_all(counter) == 9  # 19 within 1 ms under a second apart


# =========================================================================== concurrency


@pytest.mark.parametrize("kind", KINDS)
def test_many_threads_on_a_frozen_clock_get_exactly_the_burst(kind: str) -> None:
    # Time stands still: exactly 4 permits exist. Never more (no over-admission), and
    # never fewer (a request that fits is never refused by a lost race, unlike the
    # guide's compare-and-swap).
    limiter = FACTORIES[kind](ManualClock(1.0))
    counts = [0] * 16
    start = threading.Barrier(16)
    # The queue's try_acquire admits only a request that may go at once; joining the
    # queue is reserve().
    take: Callable[[], bool] = (
        (lambda: limiter.reserve() is not None) if isinstance(limiter, LeakyBucketQueue)
        else limiter.try_acquire)

    def hammer(index: int) -> None:
        start.wait()
        for _ in range(300):
            counts[index] += take()

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 4
    assert limiter.stats() == RateLimiterStats(admitted=4, rejected=16 * 300 - 4)


@pytest.mark.parametrize("kind", ["token_bucket", "gcra", "sliding_log", "fixed_window"])
def test_many_threads_with_a_moving_clock_never_over_admit(kind: str) -> None:
    # A ticker thread moves the clock while 8 threads hammer; the admitted events,
    # stamped inside the lock, must respect the bound of the algorithm in every window.
    clock = ManualClock()
    limiter = {
        "token_bucket": lambda: TokenBucket(100.0, 5, clock=clock),
        "gcra": lambda: GCRALimiter(100.0, 5, clock=clock),
        "sliding_log": lambda: SlidingLogLimiter(5, 0.05, clock=clock),
        "fixed_window": lambda: FixedWindowLimiter(5, 0.05, clock=clock),
    }[kind]()
    times: list[float] = []
    limiter.listeners.add(lambda e: times.append(e.time) if isinstance(e, Admitted) else None)
    stop = threading.Event()

    def tick() -> None:
        for _ in range(400):
            clock.advance(0.001)
            time.sleep(0)
        stop.set()

    def hammer() -> None:
        while not stop.is_set():
            limiter.try_acquire()

    threads = [threading.Thread(target=tick)] + [threading.Thread(target=hammer)
                                                 for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    times.sort()
    assert len(times) == limiter.stats().admitted
    assert len(times) >= 25  # time moved (0.4 s): the limiter kept admitting
    for i, start in enumerate(times):
        inside = sum(1 for t in times[i:] if t < start + 0.05)
        bound = {"token_bucket": 5 + 100 * 0.05, "gcra": 5 + 100 * 0.05,
                 "sliding_log": 5, "fixed_window": 10}[kind]
        assert inside <= bound + 1e-6


def test_blocking_driver_under_threads_admits_at_the_rate() -> None:
    # 8 threads each acquire 5 permits through the blocking driver on the real clock:
    # 40 permits at 400 per second after a burst of 4 take at least (40 - 4) / 400 s.
    limiter = GCRALimiter(400.0, 4)
    started = time.monotonic()

    def worker() -> None:
        for _ in range(5):
            assert limiter.acquire()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert limiter.stats() == RateLimiterStats(admitted=40, rejected=0)
    assert elapsed >= (40 - 4) / 400 - 1e-3


# =========================================================================== drivers


@pytest.mark.parametrize("kind", KINDS)
def test_blocking_driver_waits_exactly_time_until(kind: str) -> None:
    clock = ManualClock()
    limiter = FACTORIES[kind](clock)
    assert take_all(limiter) >= 1
    expected = limiter.time_until()
    events = recorded(limiter)
    assert limiter.acquire(sleep=clock.sleep)
    assert clock.now() == pytest.approx(expected)
    assert sum(clock.slept) == pytest.approx(expected)
    admitted = [e for e in events if isinstance(e, Admitted)]
    assert len(admitted) == 1
    assert len(events) == 1
    assert admitted[0].waited + admitted[0].delay == pytest.approx(expected)


@pytest.mark.parametrize("kind", KINDS)
def test_blocking_driver_gives_up_when_the_wait_exceeds_the_timeout(kind: str) -> None:
    clock = ManualClock()
    limiter = FACTORIES[kind](clock)
    take_all(limiter)
    before = limiter.stats()
    wait = limiter.time_until()
    assert not limiter.acquire(timeout=wait * 0.5, sleep=clock.sleep)
    assert clock.now() == 0.0  # gave up at once, without sleeping in vain
    assert limiter.stats() == RateLimiterStats(before.admitted, before.rejected + 1)
    assert limiter.acquire(timeout=wait, sleep=clock.sleep)


def test_asyncio_driver_waits_without_blocking_the_loop() -> None:
    limiter = GCRALimiter(50.0, 1)

    async def main() -> tuple[list[bool], float, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        started = time.monotonic()
        results = [await limiter.aacquire() for _ in range(4)]
        elapsed = time.monotonic() - started
        task.cancel()
        return results, elapsed, ticks

    results, elapsed, ticks = asyncio.run(main())
    assert results == [True] * 4
    assert elapsed >= 3 / 50 - 2e-3  # 1 at once, then one per 20 ms
    assert ticks > 10  # the loop kept running while the driver waited


def test_asyncio_driver_timeout() -> None:
    limiter = TokenBucket(1.0, 1)
    assert limiter.try_acquire()
    assert asyncio.run(limiter.aacquire(timeout=0.01)) is False
    assert limiter.stats() == RateLimiterStats(admitted=1, rejected=1)


@pytest.mark.parametrize("kind", KINDS)
def test_simpy_driver_waits_in_simulated_time(kind: str) -> None:
    from simulations.kit.clock import SimClock

    env = simpy.Environment()
    limiter = {
        "token_bucket": lambda c: TokenBucket(2.0, 4, clock=c),
        "leaky_bucket": lambda c: LeakyBucket(2.0, 4, clock=c),
        "gcra": lambda c: GCRALimiter(2.0, 4, clock=c),
        "leaky_queue": lambda c: LeakyBucketQueue(2.0, 4, clock=c),
        "fixed_window": lambda c: FixedWindowLimiter(4, 2.0, clock=c),
        "sliding_log": lambda c: SlidingLogLimiter(4, 2.0, clock=c),
        "sliding_counter": lambda c: SlidingWindowCounterLimiter(4, 2.0, clock=c),
    }[kind](SimClock(env))
    went: list[float] = []

    def client() -> Any:
        for _ in range(10):
            assert (yield from limiter.simpy_acquire(env))
            went.append(env.now)

    env.process(client())
    env.run()
    assert len(went) == 10
    if kind == "leaky_queue":  # it shapes: one every 0.5 s
        assert went == pytest.approx([0.5 * i for i in range(10)])
    else:  # the burst at once, then about 2 per second
        assert went[:4] == [0.0] * 4
        assert 2.5 <= went[-1] <= 6.0


def test_simpy_driver_needs_the_simulation_clock() -> None:
    env = simpy.Environment(initial_time=5.0)
    limiter = TokenBucket(1.0, 1, clock=ManualClock())

    def client() -> Any:
        yield from limiter.simpy_acquire(env)

    env.process(client())
    with pytest.raises(ValueError, match="SimClock"):
        env.run()


# =========================================================================== middleware


def test_decorator_raises_with_retry_after_and_does_not_call() -> None:
    clock = ManualClock()
    limiter = TokenBucket(2.0, 2, clock=clock)
    calls: list[int] = []

    @rate_limited(limiter)
    def handle(request: int) -> str:
        calls.append(request)
        return f"ok {request}"

    assert handle(1) == "ok 1"
    assert handle(2) == "ok 2"
    with pytest.raises(RateLimitExceededError) as caught:
        handle(3)
    assert caught.value.retry_after == pytest.approx(0.5)
    assert "retry after 0.5 s" in str(caught.value)
    assert calls == [1, 2]
    assert handle.__name__ == "handle"
    assert isinstance(handle, RateLimitMiddleware)


def test_decorator_can_wait_instead() -> None:
    clock = ManualClock()
    limiter = GCRALimiter(4.0, 1, clock=clock)
    handle = rate_limited(limiter, wait=True, sleep=clock.sleep, cost=1)(lambda: clock.now())
    assert [handle() for _ in range(3)] == pytest.approx([0.0, 0.25, 0.5])
    impatient = RateLimitMiddleware(lambda: "late", limiter, wait=True, timeout=0.1,
                                    sleep=clock.sleep)
    with pytest.raises(RateLimitExceededError) as caught:
        impatient()
    assert caught.value.retry_after == pytest.approx(0.25)


def test_middleware_on_an_async_function() -> None:
    limiter = GCRALimiter(100.0, 1)

    @rate_limited(limiter)
    async def fetch(x: int) -> int:
        return x * 2

    @rate_limited(limiter, wait=True)
    async def patient(x: int) -> int:
        return x + 1

    async def main() -> tuple[int, BaseException | None, int]:
        first = await fetch(21)
        try:
            await fetch(1)
        except RateLimitExceededError as error:
            refused: BaseException | None = error
        else:
            refused = None
        return first, refused, await patient(1)

    first, refused, waited = asyncio.run(main())
    assert first == 42
    assert isinstance(refused, RateLimitExceededError)
    assert waited == 2


def test_middleware_cost_and_validation() -> None:
    limiter = TokenBucket(1.0, 5, clock=ManualClock())
    heavy = RateLimitMiddleware(lambda: None, limiter, cost=3)
    heavy()
    with pytest.raises(RateLimitExceededError) as caught:
        heavy()
    assert caught.value.n == 3
    with pytest.raises(ValueError, match=r"cost must be <= 5 .*, got 6"):
        RateLimitMiddleware(lambda: None, limiter, cost=6)
    with pytest.raises(ValueError, match="cost must be >= 1, got 0"):
        RateLimitMiddleware(lambda: None, limiter, cost=0)
    with pytest.raises(TypeError, match="limiter must be a RateLimiter"):
        RateLimitMiddleware(lambda: None, object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="inner must be callable"):
        RateLimitMiddleware(3, limiter)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout must be >= 0"):
        RateLimitMiddleware(lambda: None, limiter, wait=True, timeout=-1.0)


def test_exceeded_error_for_a_request_that_can_never_fit() -> None:
    error = RateLimitExceededError(math.inf, 9)
    assert "never" in str(error)
    assert error.n == 9


# =========================================================================== tiered


def test_tiered_asks_shared_only_when_local_admits_and_refunds_on_refusal() -> None:
    clock = ManualClock()
    local = TokenBucket(1.0, 3, clock=clock)
    shared = TokenBucket(1.0, 2, clock=clock)
    tier = TieredRateLimiter(local, shared, clock=clock)
    assert take_all(tier) == 2  # the shared limit is the smaller
    assert local.tokens == pytest.approx(1.0)  # the refused request was refunded locally
    assert shared.stats() == RateLimiterStats(admitted=2, rejected=1)
    assert tier.stats() == RateLimiterStats(admitted=2, rejected=1)
    assert tier.time_until() == pytest.approx(1.0)
    assert tier.max_permits == 2
    # Another instance empties the local bucket: the store is no longer asked.
    assert local.try_acquire()
    calls = shared.stats().total
    assert not tier.try_acquire()
    assert shared.stats().total == calls


def test_tiered_driver_and_refund() -> None:
    clock = ManualClock()
    tier = TieredRateLimiter(GCRALimiter(10.0, 1, clock=clock), GCRALimiter(2.0, 1, clock=clock),
                             clock=clock)
    assert tier.acquire(sleep=clock.sleep)
    assert tier.acquire(sleep=clock.sleep)
    assert clock.now() == pytest.approx(0.5)
    tier.refund()
    assert tier.try_acquire()


def test_tiered_validation() -> None:
    limiter = TokenBucket(1.0, 1)
    with pytest.raises(TypeError, match="local must be a RateLimiter"):
        TieredRateLimiter(object(), limiter)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="two different limiters"):
        TieredRateLimiter(limiter, limiter)


def test_reprs_name_the_parameters() -> None:
    assert repr(TokenBucket(1.5, 3)) == "TokenBucket(rate=1.5, capacity=3)"
    assert repr(GCRALimiter(2.0, 4)) == "GCRALimiter(rate=2.0, burst=4)"
    assert repr(SlidingLogLimiter(5, 1.0)) == "SlidingLogLimiter(limit=5, window=1.0)"
    assert "TieredRateLimiter(local=" in repr(TieredRateLimiter(TokenBucket(1.0, 1),
                                                                 GCRALimiter(1.0, 1)))


# =========================================================================== issue 11


def _run_in_daemon(target: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


@pytest.mark.parametrize("window", [1e10, 1e15, 1e300])
def test_blocking_acquire_with_a_huge_wait_sleeps_instead_of_overflowing(window: float) -> None:
    # time.sleep(1e10) raises OverflowError: the default sleep waits in bounded steps.
    # (The thread sleeps on, a daemon, until the process ends.)
    limiter = FixedWindowLimiter(1, window)
    assert limiter.try_acquire()
    assert limiter.time_until() > 1e9
    thread, errors = _run_in_daemon(limiter.acquire)
    thread.join(0.2)
    assert errors == []
    assert thread.is_alive()  # asleep, as it should be


def test_middleware_waiting_with_a_huge_wait_sleeps_instead_of_overflowing() -> None:
    limiter = FixedWindowLimiter(1, 1e12)
    handle = rate_limited(limiter, wait=True)(lambda: "ok")
    assert handle() == "ok"
    thread, errors = _run_in_daemon(handle)
    thread.join(0.2)
    assert errors == []
    assert thread.is_alive()


def test_asyncio_acquire_with_a_huge_wait() -> None:
    limiter = FixedWindowLimiter(1, 1e300)
    assert limiter.try_acquire()

    async def main() -> bool:
        try:
            return await asyncio.wait_for(limiter.aacquire(), 0.05)
        except TimeoutError:
            return False

    assert asyncio.run(main()) is False  # waited (and was cancelled), did not overflow


@pytest.mark.parametrize("build", [
    lambda: TokenBucket(5e-324, 1),
    lambda: LeakyBucket(1e-300, 10**9),
    lambda: GCRALimiter(1e-300, 2**53),
    lambda: LeakyBucketQueue(5e-324, 1),
])
def test_a_rate_so_small_that_capacity_over_rate_overflows_is_refused(
        build: Callable[[], Any]) -> None:
    # GCRALimiter(1e-300, 2**53) had an infinite burst tolerance: inf - inf = nan, and
    # it admitted every request.
    with pytest.raises(ValueError, match="rate"):
        build()


@pytest.mark.parametrize("build", [
    lambda: TokenBucket(1.0, 10**400),
    lambda: GCRALimiter(1.0, 2**60),
    lambda: FixedWindowLimiter(10**400, 1.0),
])
def test_counts_beyond_exact_floats_are_refused(build: Callable[[], Any]) -> None:
    # TokenBucket(1.0, 10**400) raised OverflowError (float(capacity)).
    with pytest.raises(ValueError, match=r"capacity|burst|limit"):
        build()


@pytest.mark.parametrize("kind", KINDS)
def test_a_huge_n_is_a_value_error_not_an_overflow(kind: str) -> None:
    limiter = FACTORIES[kind](ManualClock())
    for method in (limiter.try_acquire, limiter.time_until, limiter.attempt, limiter.refund,
                   limiter.acquire):
        with pytest.raises(ValueError, match="n must be"):
            method(10**400)
    assert limiter.stats() == RateLimiterStats(0, 0)


@pytest.mark.parametrize("build", [
    lambda: FixedWindowLimiter(2, 1e-300),
    lambda: SlidingLogLimiter(2, 1e-300),
    lambda: SlidingWindowCounterLimiter(2, 1e-300),
    lambda: SlidingWindowCounterLimiter(2, 1.7e308),
])
def test_windows_whose_arithmetic_overflows_are_refused(build: Callable[[], Any]) -> None:
    # A window of 1e-300 s made every clock reading window index inf: the window never
    # changed again and the limiter refused forever.
    with pytest.raises(ValueError, match="window"):
        build()


@pytest.mark.parametrize("kind", KINDS)
def test_acquire_checks_sleep_before_anything(kind: str) -> None:
    limiter = FACTORIES[kind](ManualClock())
    with pytest.raises(TypeError, match="sleep"):
        limiter.acquire(sleep=3)  # type: ignore[arg-type]
    assert limiter.stats() == RateLimiterStats(0, 0)


def test_simpy_acquire_checks_its_arguments_when_called() -> None:
    limiter = TokenBucket(1.0, 2)
    with pytest.raises(TypeError, match="env"):
        limiter.simpy_acquire("env")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must be"):
        limiter.simpy_acquire(simpy.Environment(), 0)


def test_exceeded_error_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="retry_after"):
        RateLimitExceededError(math.nan)
    with pytest.raises(ValueError, match="n must be"):
        RateLimitExceededError(1.0, 0)


# ----------------------------------------------------------------- decorators and coroutines


def test_rate_limited_keeps_a_coroutine_function_a_coroutine_function() -> None:
    import inspect

    limiter = GCRALimiter(100.0, 1, clock=ManualClock())

    @rate_limited(limiter)
    async def fetch(x: int) -> int:
        return x * 2

    assert inspect.iscoroutinefunction(fetch)
    assert fetch.__name__ == "fetch"
    assert asyncio.run(fetch(21)) == 42
    with pytest.raises(RateLimitExceededError):
        asyncio.run(fetch(1))

    @rate_limited(limiter)
    def plain(x: int) -> int:
        return x

    assert not inspect.iscoroutinefunction(plain)


def test_a_breaker_stacked_over_rate_limited_async_sees_the_failures() -> None:
    # The case: @breaker over @rate_limited(...) on an async def took the sync
    # path and recorded an un-awaited coroutine as a success.
    from patterns.resilience.breaker import CircuitBreaker

    breaker = CircuitBreaker(failure_rate_threshold=0.5, minimum_calls=2, window_size=2,
                             clock=ManualClock())

    @breaker
    @rate_limited(GCRALimiter(1e6, 100))
    async def flaky() -> None:
        raise ConnectionError("down")

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await flaky()

    asyncio.run(main())
    assert breaker.state.value == "open"


def test_the_sync_middleware_refuses_a_coroutine_function() -> None:
    limiter = TokenBucket(1.0, 5, clock=ManualClock())

    async def fetch() -> int:
        return 1

    class AsyncCall:
        async def __call__(self) -> int:
            return 2

    for inner in (fetch, AsyncCall()):
        middleware = RateLimitMiddleware(inner, limiter)
        with pytest.raises(TypeError, match="coroutine function"):
            middleware.call()
    assert limiter.stats() == RateLimiterStats(0, 0)  # refused before taking a permit


def test_the_sync_middleware_refuses_an_awaitable_result_and_gives_the_permit_back() -> None:
    import warnings

    limiter = TokenBucket(1.0, 1, clock=ManualClock())

    async def work() -> int:
        return 1

    def returns_a_coroutine() -> Any:
        return work()

    handle = rate_limited(limiter)(returns_a_coroutine)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine was never awaited"
        with pytest.raises(TypeError, match="coroutine"):
            handle()
    assert limiter.time_until() == 0.0  # the permit was refunded: the work never ran


def test_an_object_with_an_async_call_is_limited_on_the_async_path() -> None:
    import inspect

    limiter = GCRALimiter(100.0, 1, clock=ManualClock())

    class Fetch:
        async def __call__(self, x: int) -> int:
            return x + 1

    fetch = rate_limited(limiter)(Fetch())
    assert inspect.iscoroutinefunction(fetch)
    assert asyncio.run(fetch(1)) == 2


def test_rate_limited_checks_its_options_when_called() -> None:
    with pytest.raises(TypeError, match="limiter"):
        rate_limited("limiter")  # type: ignore[arg-type]
    limiter = TokenBucket(1.0, 5)
    with pytest.raises(ValueError, match="cost"):
        rate_limited(limiter, cost=0)
    with pytest.raises(ValueError, match="timeout"):
        rate_limited(limiter, timeout=math.nan)
    with pytest.raises(TypeError, match="sleep"):
        rate_limited(limiter, sleep="zzz")  # type: ignore[arg-type]


def test_tiered_gives_the_local_permit_back_when_the_shared_tier_raises() -> None:
    # A shared tier that raises (Redis misconfigured, or down with "raise") used to keep
    # the local permit: each failed request drained the local limit for nothing.
    class Broken(TokenBucket):
        def _decide(self, n: int) -> tuple[float, float]:
            raise ConnectionError("shared tier down")

    clock = ManualClock()
    local = TokenBucket(1.0, 2, clock=clock)
    tier = TieredRateLimiter(local, Broken(1.0, 2, clock=clock), clock=clock)
    for _ in range(3):
        with pytest.raises(ConnectionError):
            tier.try_acquire()
    assert local.tokens == 2.0
    assert tier.stats() == RateLimiterStats(0, 0)
