"""Bad-input sweep (issue 11) of time and rate limiting: the clock, the timer thread,
timeouts and cancellation (guide section 4.4) and the rate limiters, Redis included
(guide section 4.5).

Every public constructor and method gets NaN, infinities where they make no sense, huge
finite values, negatives, zero where invalid, bools and values of the wrong type,
non-callables, clocks that are not clocks; each must raise ``ValueError`` or
``TypeError`` naming the parameter (and the value), before any state changes. Where a
huge value or ``inf`` is legitimate (a wait, a timeout, a window), it must work: nothing
may overflow later.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from typing import Any

import pytest
import simpy
from bad_input import (
    HUGE,
    INF,
    NAN,
    NEGATIVE,
    NON_FINITE,
    NOT_A_CLOCK,
    NOT_A_NUMBER,
    NOT_AN_INT,
    NOT_CALLABLE,
    SWEEP,
    assert_rejected,
)
from hypothesis import given
from hypothesis import strategies as st

from patterns._timers import TimerThread
from patterns.clock import ManualClock
from patterns.resilience.ratelimit import (
    FixedWindowLimiter,
    GCRALimiter,
    LeakyBucket,
    LeakyBucketQueue,
    RateLimiter,
    RateLimiterStats,
    RateLimitExceededError,
    RateLimitMiddleware,
    RedisGCRALimiter,
    SlidingLogLimiter,
    SlidingWindowCounterLimiter,
    TieredRateLimiter,
    TokenBucket,
    rate_limited,
)
from patterns.resilience.timeout import (
    CancellationToken,
    DeadlineExceededError,
    DeadlineTimer,
    OperationCancelled,
    Registration,
    TimeoutPolicy,
    arm_deadline,
    arm_deadline_async,
    arm_deadline_simpy,
    with_timeout,
)

#: What is not a simpy environment.
NOT_AN_ENV = st.sampled_from([object(), "env", 3, simpy.Environment])
#: Numbers that are never a valid count (n, capacity, burst, limit, cost): wrong types,
#: zero and below, and ints beyond 2**53 (10**400 used to overflow into a float).
BAD_COUNT = NOT_AN_INT | st.sampled_from([0, -1, -(10**400), 2**53 + 1, 10**400])
#: Values a duration >= 0 never takes: NaN, -inf, negatives, non-numbers (``None`` aside:
#: it is the default of every optional timeout; see ``BAD_REQUIRED_DURATION``).
BAD_DURATION = (st.sampled_from([NAN, -INF]) | NEGATIVE
                | NOT_A_NUMBER.filter(lambda value: value is not None))
BAD_REQUIRED_DURATION = BAD_DURATION | st.just(None)


class _Script:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, **kwargs: object) -> int:
        self.calls += 1
        return 0


class _FakeRedis:
    """Enough of a client for the constructor and the argument checks (never called)."""

    def __init__(self) -> None:
        self.script = _Script()

    def register_script(self, script: str) -> _Script:
        return self.script


LIMITERS: dict[str, Callable[[ManualClock], RateLimiter]] = {
    "TokenBucket": lambda c: TokenBucket(2.0, 4, clock=c),
    "LeakyBucket": lambda c: LeakyBucket(2.0, 4, clock=c),
    "GCRALimiter": lambda c: GCRALimiter(2.0, 4, clock=c),
    "LeakyBucketQueue": lambda c: LeakyBucketQueue(2.0, 4, clock=c),
    "FixedWindowLimiter": lambda c: FixedWindowLimiter(4, 2.0, clock=c),
    "SlidingLogLimiter": lambda c: SlidingLogLimiter(4, 2.0, clock=c),
    "SlidingWindowCounterLimiter": lambda c: SlidingWindowCounterLimiter(4, 2.0, clock=c),
    "TieredRateLimiter": lambda c: TieredRateLimiter(GCRALimiter(2.0, 4, clock=c),
                                                     TokenBucket(2.0, 4, clock=c), clock=c),
    "RedisGCRALimiter": lambda c: RedisGCRALimiter(_FakeRedis(), "k", 2.0, 4, clock=c),
}


# =========================================================================== the clock


@SWEEP
@given(value=NON_FINITE | NOT_A_NUMBER)
def test_manual_clock_start(value: Any) -> None:
    assert_rejected(lambda: ManualClock(value), "start", value)


@SWEEP
@given(value=NON_FINITE | NEGATIVE | NOT_A_NUMBER)
def test_manual_clock_advance_and_sleep(value: Any) -> None:
    clock = ManualClock(5.0)
    assert_rejected(lambda: clock.advance(value), "seconds", value)
    assert_rejected(lambda: clock.sleep(value), "seconds", value)
    assert clock.now() == 5.0
    assert clock.slept == []


@SWEEP
@given(value=NON_FINITE | NOT_A_NUMBER | st.floats(max_value=4.999, allow_nan=False))
def test_manual_clock_set(value: Any) -> None:
    clock = ManualClock(5.0)
    assert_rejected(lambda: clock.set(value), "when", value)
    assert clock.now() == 5.0


@SWEEP
@given(value=HUGE)
def test_manual_clock_takes_huge_steps_while_they_stay_finite(value: float) -> None:
    clock = ManualClock()
    clock.advance(value)
    assert clock.now() == value
    if math.isinf(value + 1.7e308):
        assert_rejected(lambda: clock.advance(1.7e308), "seconds", 1.7e308)


# =========================================================================== the timer thread


@SWEEP
@given(value=BAD_REQUIRED_DURATION | st.just(INF))
def test_timer_thread_schedule_delay(value: Any) -> None:
    timers = TimerThread()
    assert_rejected(lambda: timers.schedule(value, lambda: None), "delay", value)
    assert timers.pending == 0


@SWEEP
@given(value=NOT_CALLABLE)
def test_timer_thread_schedule_callback(value: Any) -> None:
    timers = TimerThread()
    assert_rejected(lambda: timers.schedule(1.0, value), "callback", value)
    assert timers.pending == 0


@SWEEP
@given(value=st.sampled_from([3, None, b"x", ["t"]]))
def test_timer_thread_name(value: Any) -> None:
    assert_rejected(lambda: TimerThread(value), "name", value)


def test_timer_thread_takes_huge_delays() -> None:
    timers = TimerThread()
    handles = [timers.schedule(value, lambda: None) for value in (1e10, 1e15, 1e300, 1.7e308)]
    fired = threading.Event()
    timers.schedule(0.0, fired.set)
    assert fired.wait(2.0)
    assert timers.pending == 4
    for handle in handles:
        handle.cancel()


# =========================================================================== tokens


def _assert_token_rejects(parameter: str, value: Any) -> None:
    """A token and a child both refuse ``parameter=value``; the parent links nothing."""
    assert_rejected(lambda: CancellationToken(**{parameter: value}), parameter, value)
    parent = CancellationToken()
    assert_rejected(lambda: parent.child(**{parameter: value}), parameter, value)
    assert parent.linked_children == 0


@SWEEP
@given(value=BAD_DURATION)
def test_token_timeout(value: Any) -> None:
    _assert_token_rejects("timeout", value)


@SWEEP
@given(value=NON_FINITE | NOT_A_NUMBER.filter(lambda value: value is not None))
def test_token_deadline(value: Any) -> None:
    _assert_token_rejects("deadline", value)


@SWEEP
@given(value=NOT_A_CLOCK | st.none())
def test_token_clock(value: Any) -> None:
    assert_rejected(lambda: CancellationToken(clock=value), "clock")
    parent = CancellationToken()
    if value is not None:  # child(clock=None) means the parent's clock
        assert_rejected(lambda: parent.child(clock=value), "clock")
    assert parent.linked_children == 0


@SWEEP
@given(value=st.sampled_from([3, None, b"x", ["n"]]))
def test_token_name(value: Any) -> None:
    _assert_token_rejects("name", value)


@SWEEP
@given(value=HUGE)
def test_token_huge_timeouts_and_deadlines_work(value: float) -> None:
    clock = ManualClock()
    for token in (CancellationToken(timeout=value), CancellationToken(deadline=value),
                  CancellationToken(timeout=value, clock=clock),
                  CancellationToken().child(timeout=value)):
        timer = arm_deadline(token)  # the timer thread takes it
        assert not token.is_cancelled
        assert token.remaining() >= 0.0
        timer.cancel()


@SWEEP
@given(value=st.sampled_from([NAN]) | NOT_A_NUMBER)
def test_token_now_arguments(value: Any) -> None:
    token = CancellationToken(timeout=5.0)
    assert_rejected(lambda: token.deadline_passed(value), "now", value)
    if value is not None:  # remaining(None) reads the token's clock
        assert_rejected(lambda: token.remaining(value), "now", value)
    assert not token.is_cancelled


@SWEEP
@given(value=NOT_CALLABLE)
def test_token_on_cancel(value: Any) -> None:
    assert_rejected(lambda: CancellationToken().on_cancel(value), "callback", value)


@SWEEP
@given(value=BAD_DURATION)
def test_token_wait(value: Any) -> None:
    token = CancellationToken()
    assert_rejected(lambda: token.wait(value), "timeout", value)

    async def wait_async() -> None:
        await token.wait_async(value)

    assert_rejected(lambda: asyncio.run(wait_async()), "timeout", value)
    assert not token.is_cancelled


@SWEEP
@given(value=NOT_AN_ENV)
def test_token_simpy_event(value: Any) -> None:
    assert_rejected(lambda: CancellationToken().simpy_event(value), "env")


def test_token_waits_take_huge_timeouts() -> None:
    token = CancellationToken()
    threading.Timer(0.02, token.cancel).start()
    assert token.wait(1.7e308)

    async def main() -> bool:
        other = CancellationToken()
        asyncio.get_running_loop().call_later(0.02, other.cancel)
        return await other.wait_async(1e10)

    assert asyncio.run(main())


@SWEEP
@given(value=st.sampled_from(["t", 3, object(), None]))
def test_deadline_drivers_token(value: Any) -> None:
    assert_rejected(lambda: DeadlineTimer(value), "token")
    assert_rejected(lambda: arm_deadline(value), "token")
    assert_rejected(lambda: arm_deadline_simpy(simpy.Environment(), value), "token")

    async def arm() -> None:
        arm_deadline_async(value)

    assert_rejected(lambda: asyncio.run(arm()), "token")


@SWEEP
@given(value=st.sampled_from(["timers", 3, object()]))
def test_deadline_timer_timers(value: Any) -> None:
    assert_rejected(lambda: DeadlineTimer(CancellationToken(), timers=value), "timers")


@SWEEP
@given(value=st.sampled_from(["loop", 3, object()]))
def test_arm_deadline_async_loop(value: Any) -> None:
    assert_rejected(lambda: arm_deadline_async(CancellationToken(timeout=1.0), value), "loop")


@SWEEP
@given(value=NOT_AN_ENV)
def test_arm_deadline_simpy_env(value: Any) -> None:
    assert_rejected(lambda: arm_deadline_simpy(value, CancellationToken(timeout=1.0)), "env")


@SWEEP
@given(deadline=NON_FINITE | NOT_A_NUMBER, timeout=st.sampled_from([0, -1.0, NAN, "1"]))
def test_exceptions(deadline: Any, timeout: Any) -> None:
    assert_rejected(lambda: DeadlineExceededError(deadline), "deadline", deadline)
    assert_rejected(lambda: DeadlineExceededError(1.0, timeout), "timeout", timeout)
    assert_rejected(lambda: OperationCancelled("why", token="t"), "token")  # type: ignore[arg-type]
    assert_rejected(lambda: Registration("t", 1), "token")  # type: ignore[arg-type]
    assert_rejected(lambda: Registration(None, "1"), "key")  # type: ignore[arg-type]


# =========================================================================== TimeoutPolicy


@SWEEP
@given(value=BAD_REQUIRED_DURATION | st.just(0) | st.just(0.0))
def test_policy_timeout(value: Any) -> None:
    assert_rejected(lambda: TimeoutPolicy(value), "timeout", value)
    assert_rejected(lambda: with_timeout(lambda t: 1, value), "timeout", value)


@SWEEP
@given(value=NOT_A_CLOCK | st.none())
def test_policy_clock(value: Any) -> None:
    assert_rejected(lambda: TimeoutPolicy(1.0, clock=value), "clock")
    assert_rejected(lambda: with_timeout(lambda t: 1, 1.0, clock=value), "clock")


@SWEEP
@given(value=st.sampled_from([[], "listeners", 3, object()]))
def test_policy_listeners(value: Any) -> None:
    assert_rejected(lambda: TimeoutPolicy(1.0, listeners=value), "listeners")


@SWEEP
@given(value=NOT_CALLABLE)
def test_policy_fn(value: Any) -> None:
    policy = TimeoutPolicy(1.0)
    assert_rejected(lambda: policy.call(value), "fn")
    assert_rejected(lambda: with_timeout(value, 1.0), "fn")
    assert_rejected(lambda: policy.simpy_call(simpy.Environment(), value), "fn")

    async def acall() -> None:
        await policy.acall(value)

    assert_rejected(lambda: asyncio.run(acall()), "fn")


@SWEEP
@given(value=st.sampled_from(["p", 3, object(), CancellationToken]))
def test_policy_parent(value: Any) -> None:
    policy = TimeoutPolicy(1.0)
    assert_rejected(lambda: policy.call(lambda t: 1, parent=value), "parent")
    assert_rejected(lambda: policy.token(value), "parent")
    assert_rejected(lambda: policy.simpy_call(simpy.Environment(), lambda t: iter(()),
                                              parent=value), "parent")

    async def acall() -> None:
        await policy.acall(lambda t: asyncio.sleep(0), parent=value)

    assert_rejected(lambda: asyncio.run(acall()), "parent")


@SWEEP
@given(value=st.sampled_from(["pool", 3, object()]))
def test_policy_executor(value: Any) -> None:
    assert_rejected(lambda: TimeoutPolicy(1.0).call(lambda t: 1, executor=value), "executor")


@SWEEP
@given(value=NOT_AN_ENV)
def test_policy_simpy_env(value: Any) -> None:
    assert_rejected(lambda: TimeoutPolicy(1.0).simpy_call(value, lambda t: iter(())), "env")


@SWEEP
@given(value=HUGE | st.just(INF))
def test_policy_huge_timeouts_work(value: float) -> None:
    assert TimeoutPolicy(value).call(lambda token: token.is_cancelled) is False
    assert with_timeout(lambda token: 7, value) == 7


# =========================================================================== rate limiters


RATE_LIMITERS = [TokenBucket, LeakyBucket, GCRALimiter, LeakyBucketQueue]
WINDOW_LIMITERS = [FixedWindowLimiter, SlidingLogLimiter, SlidingWindowCounterLimiter]


@SWEEP
@given(value=NON_FINITE | NEGATIVE | NOT_A_NUMBER | st.sampled_from([0, 0.0, 5e-324, 1e-300]))
def test_limiter_rate(value: Any) -> None:
    # 5e-324 and 1e-300 per second: capacity / rate is not a finite number of seconds.
    for kind in RATE_LIMITERS:
        assert_rejected(lambda kind=kind: kind(value, 2**53), "rate", value)
    assert_rejected(lambda: RedisGCRALimiter(_FakeRedis(), "k", value, 10**6), "rate")


@SWEEP
@given(value=BAD_COUNT)
def test_limiter_counts(value: Any) -> None:
    for kind, name in zip(RATE_LIMITERS, ["capacity", "capacity", "burst", "capacity"],
                          strict=True):
        assert_rejected(lambda kind=kind: kind(1.0, value), name, value)
    for kind in WINDOW_LIMITERS:
        assert_rejected(lambda kind=kind: kind(value, 1.0), "limit", value)
    assert_rejected(lambda: RedisGCRALimiter(_FakeRedis(), "k", 1.0, value), "burst")


@SWEEP
@given(value=NON_FINITE | NEGATIVE | NOT_A_NUMBER
       | st.sampled_from([0, 0.0, 1e-300, 5e-324, 1e301, 1.7e308]))
def test_limiter_window(value: Any) -> None:
    for kind in WINDOW_LIMITERS:
        assert_rejected(lambda kind=kind: kind(2, value), "window", value)


@SWEEP
@given(value=st.sampled_from([1e10, 1e15, 1e300]))
def test_limiter_huge_windows_work(value: float) -> None:
    clock = ManualClock()
    for kind in WINDOW_LIMITERS:
        limiter = kind(1, value, clock=clock)
        assert limiter.try_acquire()
        wait = limiter.time_until()
        assert 0.0 < wait < INF
        assert not limiter.acquire(timeout=1.0, sleep=clock.sleep)  # gives up, no overflow


@SWEEP
@given(value=NOT_A_CLOCK | st.none())
def test_limiter_clock(value: Any) -> None:
    for build in (lambda: TokenBucket(1.0, 1, clock=value),
                  lambda: SlidingLogLimiter(1, 1.0, clock=value),
                  lambda: TieredRateLimiter(TokenBucket(1.0, 1), GCRALimiter(1.0, 1),
                                            clock=value),
                  lambda: RedisGCRALimiter(_FakeRedis(), "k", 1.0, 1, clock=value)):
        assert_rejected(build, "clock")


@SWEEP
@given(value=st.sampled_from([[], "listeners", 3, object()]))
def test_limiter_listeners(value: Any) -> None:
    assert_rejected(lambda: GCRALimiter(1.0, 1, listeners=value), "listeners")
    assert_rejected(lambda: RedisGCRALimiter(_FakeRedis(), "k", 1.0, 1, listeners=value),
                    "listeners")


@pytest.mark.parametrize("kind", list(LIMITERS))
@SWEEP
@given(value=BAD_COUNT)
def test_limiter_n(kind: str, value: Any) -> None:
    limiter = LIMITERS[kind](ManualClock())
    env = simpy.Environment()
    for method in (limiter.try_acquire, limiter.attempt, limiter.time_until, limiter.refund,
                   limiter.acquire, lambda n: asyncio.run(limiter.aacquire(n)),
                   lambda n: limiter.simpy_acquire(env, n)):
        assert_rejected(lambda method=method: method(value), "n")
    assert limiter.stats() == RateLimiterStats(0, 0)


@pytest.mark.parametrize("kind", list(LIMITERS))
@SWEEP
@given(value=BAD_DURATION)
def test_limiter_driver_timeout(kind: str, value: Any) -> None:
    limiter = LIMITERS[kind](ManualClock())
    assert_rejected(lambda: limiter.acquire(timeout=value), "timeout", value)
    assert_rejected(lambda: asyncio.run(limiter.aacquire(timeout=value)), "timeout", value)
    assert_rejected(lambda: limiter.simpy_acquire(simpy.Environment(), timeout=value),
                    "timeout", value)
    assert limiter.stats() == RateLimiterStats(0, 0)


@pytest.mark.parametrize("kind", list(LIMITERS))
@SWEEP
@given(value=NOT_CALLABLE)
def test_limiter_acquire_sleep(kind: str, value: Any) -> None:
    if value is None:  # None is the default sleep
        return
    limiter = LIMITERS[kind](ManualClock())
    assert_rejected(lambda: limiter.acquire(sleep=value), "sleep")
    assert limiter.stats() == RateLimiterStats(0, 0)


@pytest.mark.parametrize("kind", list(LIMITERS))
@SWEEP
@given(value=NOT_AN_ENV)
def test_limiter_simpy_env(kind: str, value: Any) -> None:
    limiter = LIMITERS[kind](ManualClock())
    assert_rejected(lambda: limiter.simpy_acquire(value), "env")


@pytest.mark.parametrize("kind", list(LIMITERS))
@SWEEP
@given(value=HUGE | st.just(INF))
def test_limiter_huge_driver_timeouts_work(kind: str, value: float) -> None:
    clock = ManualClock()
    limiter = LIMITERS[kind](clock)
    assert limiter.acquire(timeout=value, sleep=clock.sleep)


@SWEEP
@given(value=BAD_REQUIRED_DURATION)
def test_leaky_bucket_queue_reserve(value: Any) -> None:
    queue = LeakyBucketQueue(1.0, 2, clock=ManualClock())
    assert_rejected(lambda: queue.reserve(max_wait=value), "max_wait", value)
    assert_rejected(lambda: queue.reserve(0), "n", 0)
    assert queue.stats() == RateLimiterStats(0, 0)
    assert queue.reserve(max_wait=1e300) == 0.0  # huge: fine


@SWEEP
@given(value=st.sampled_from(["l", 3, object(), TokenBucket]))
def test_tiered_limiters(value: Any) -> None:
    limiter = TokenBucket(1.0, 1)
    assert_rejected(lambda: TieredRateLimiter(value, limiter), "local")
    assert_rejected(lambda: TieredRateLimiter(limiter, value), "shared")


@SWEEP
@given(retry_after=BAD_REQUIRED_DURATION, n=BAD_COUNT)
def test_exceeded_error(retry_after: Any, n: Any) -> None:
    assert_rejected(lambda: RateLimitExceededError(retry_after), "retry_after", retry_after)
    if isinstance(n, int) and not isinstance(n, bool) and n > 0:
        return  # any count of permits may have been asked for
    assert_rejected(lambda: RateLimitExceededError(1.0, n), "n")


# ----------------------------------------------------------------- Redis


@SWEEP
@given(value=st.sampled_from([object(), "redis", 3, None]))
def test_redis_client(value: Any) -> None:
    assert_rejected(lambda: RedisGCRALimiter(value, "k", 1.0, 1), "client")


@SWEEP
@given(value=st.sampled_from(["", b"k", 3, None, ["k"]]))
def test_redis_key(value: Any) -> None:
    assert_rejected(lambda: RedisGCRALimiter(_FakeRedis(), value, 1.0, 1), "key")


@SWEEP
@given(value=st.sampled_from(["open", "", None, 1, True, ["admit"]]))
def test_redis_when_unavailable(value: Any) -> None:
    assert_rejected(lambda: RedisGCRALimiter(_FakeRedis(), "k", 1.0, 1,
                                             when_unavailable=value), "when_unavailable")


@SWEEP
@given(value=NON_FINITE | NEGATIVE | NOT_A_NUMBER)
def test_redis_unavailable_cooldown(value: Any) -> None:
    client = _FakeRedis()
    assert_rejected(lambda: RedisGCRALimiter(client, "k", 1.0, 1,
                                             unavailable_cooldown=value),
                    "unavailable_cooldown", value)


@SWEEP
@given(value=st.sampled_from([1e13, 1e300, 1e-6]))
def test_redis_rates_beyond_exact_arithmetic(value: float) -> None:
    assert_rejected(lambda: RedisGCRALimiter(_FakeRedis(), "k", value, 10**6), "rate")


@SWEEP
@given(value=st.sampled_from([3, None, b"redis://x"]))
def test_redis_from_url(value: Any) -> None:
    assert_rejected(lambda: RedisGCRALimiter.from_url(value, "k", 1.0, 1), "url")


def test_redis_bad_n_never_reaches_the_server() -> None:
    client = _FakeRedis()
    limiter = RedisGCRALimiter(client, "k", 1.0, 1)
    for n in (0, -1, 1.0, True, "1", 10**400):
        assert_rejected(lambda n=n: limiter.try_acquire(n), "n")
        assert_rejected(lambda n=n: limiter.refund(n), "n")
    assert client.script.calls == 0


# ----------------------------------------------------------------- the middleware


@SWEEP
@given(value=st.sampled_from(["limiter", 3, None, object(), TokenBucket]))
def test_middleware_limiter(value: Any) -> None:
    assert_rejected(lambda: RateLimitMiddleware(lambda: 1, value), "limiter")
    assert_rejected(lambda: rate_limited(value), "limiter")


@SWEEP
@given(value=NOT_CALLABLE)
def test_middleware_inner(value: Any) -> None:
    assert_rejected(lambda: RateLimitMiddleware(value, TokenBucket(1.0, 1)), "inner")


@SWEEP
@given(value=BAD_COUNT | st.just(5))
def test_middleware_cost(value: Any) -> None:
    limiter = TokenBucket(1.0, 4)
    assert_rejected(lambda: RateLimitMiddleware(lambda: 1, limiter, cost=value), "cost")
    assert_rejected(lambda: rate_limited(limiter, cost=value), "cost")


@SWEEP
@given(value=BAD_DURATION)
def test_middleware_timeout(value: Any) -> None:
    limiter = TokenBucket(1.0, 4)
    assert_rejected(lambda: RateLimitMiddleware(lambda: 1, limiter, timeout=value),
                    "timeout", value)
    assert_rejected(lambda: rate_limited(limiter, timeout=value), "timeout", value)


@SWEEP
@given(wait=st.sampled_from([1, "yes", None]), sleep=NOT_CALLABLE)
def test_middleware_wait_and_sleep(wait: Any, sleep: Any) -> None:
    limiter = TokenBucket(1.0, 4)
    assert_rejected(lambda: rate_limited(limiter, wait=wait), "wait")
    if sleep is not None:
        assert_rejected(lambda: rate_limited(limiter, sleep=sleep), "sleep")
        assert_rejected(lambda: RateLimitMiddleware(lambda: 1, limiter, sleep=sleep), "sleep")
