"""Bad-input sweep (issue 11) of retry, back-off, budget, breaker, bulkhead and guards.

Every public constructor and method turns a bad value into a ``ValueError`` or
``TypeError`` that names the parameter (and the value), before any state changes.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from bad_input import (
    HUGE,
    NAN,
    NEGATIVE,
    NON_FINITE,
    NOT_A_NUMBER,
    NOT_AN_INT,
    NOT_AN_RNG,
    NOT_CALLABLE,
    assert_rejected,
)
from bad_input import NOT_A_CLOCK as _NOT_A_CLOCK
from bad_input import SWEEP as FAST
from hypothesis import given
from hypothesis import strategies as st

from patterns.clock import ManualClock
from patterns.resilience.backoff import ConstantBackoff, ExponentialBackoff, LinearBackoff
from patterns.resilience.breaker import CircuitBreaker
from patterns.resilience.budget import RetryBudget
from patterns.resilience.bulkhead import Bulkhead, ThreadPoolBulkhead
from patterns.resilience.guards import Guard
from patterns.resilience.retry import (
    RetryPolicy,
    StopAfterAttempts,
    StopAfterElapsed,
)

NOT_A_CLOCK = _NOT_A_CLOCK | st.none()  # no clock parameter here defaults to None

NOT_POSITIVE_INT = st.sampled_from([0, -1, -100])


# --------------------------------------------------------------------------- back-off


@FAST
@given(value=NOT_A_NUMBER | NON_FINITE | NEGATIVE)
def test_backoff_delays_are_finite_non_negative_numbers(value: Any) -> None:
    assert_rejected(lambda: ConstantBackoff(value), "delay", value)
    assert_rejected(lambda: LinearBackoff(value, 1.0), "initial", value)
    assert_rejected(lambda: LinearBackoff(0.1, value), "increment", value)
    assert_rejected(lambda: ExponentialBackoff(value), "initial", value)


@FAST
@given(value=NOT_A_NUMBER | NON_FINITE | st.floats(max_value=0.999, allow_nan=False))
def test_exponential_multiplier_is_a_finite_number_at_least_one(value: Any) -> None:
    assert_rejected(lambda: ExponentialBackoff(0.1, multiplier=value), "multiplier", value)


@FAST
@given(value=NOT_A_NUMBER | st.just(NAN) | st.floats(max_value=0.0999, allow_nan=False))
def test_backoff_cap_is_at_least_initial(value: Any) -> None:
    assert_rejected(lambda: ExponentialBackoff(0.1, cap=value), "cap", value)
    assert_rejected(lambda: LinearBackoff(0.1, 0.1, cap=value), "cap", value)


@FAST
@given(value=NOT_AN_RNG)
def test_backoff_rng_is_a_random_at_the_call(value: Any) -> None:
    for backoff in (ConstantBackoff(1.0), LinearBackoff(1.0, 1.0), ExponentialBackoff(1.0)):
        assert_rejected(lambda b=backoff: b.delays(value), "rng")
        assert_rejected(lambda b=backoff: b.first(2, value), "rng")


@FAST
@given(value=NOT_AN_INT | st.just(-1))
def test_backoff_first_count_is_an_int(value: Any) -> None:
    assert_rejected(lambda: ConstantBackoff(1.0).first(value), "count")


def test_jitter_names_the_parameter() -> None:
    assert_rejected(lambda: ConstantBackoff(1.0, jitter="wild"), "jitter", "wild")
    assert_rejected(lambda: ConstantBackoff(1.0, jitter=None), "jitter")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- retry


@FAST
@given(value=NOT_AN_INT | NOT_POSITIVE_INT)
def test_stop_after_attempts(value: Any) -> None:
    assert_rejected(lambda: StopAfterAttempts(value), "max_attempts", value)


@FAST
@given(value=NOT_A_NUMBER | NEGATIVE | st.just(NAN))
def test_stop_after_elapsed(value: Any) -> None:
    assert_rejected(lambda: StopAfterElapsed(value), "max_elapsed", value)


@FAST
@given(value=NOT_AN_RNG)
def test_retry_rng(value: Any) -> None:
    assert_rejected(lambda: RetryPolicy(rng=value), "rng")


@FAST
@given(value=NOT_A_CLOCK)
def test_retry_clock(value: Any) -> None:
    assert_rejected(lambda: RetryPolicy(clock=value), "clock")


@FAST
@given(value=NOT_CALLABLE.filter(lambda v: v is not None))  # None: the default
def test_retry_callables(value: Any) -> None:
    for name in ("sleep", "asleep", "fallback", "retry_on_result"):
        assert_rejected(lambda n=name: RetryPolicy(**{n: value}), name)
    assert_rejected(lambda: RetryPolicy().call(value), "fn")
    assert_rejected(lambda: asyncio.run(RetryPolicy().acall(value)), "fn")
    assert_rejected(lambda: RetryPolicy()(value), "fn")


@pytest.mark.parametrize(("name", "value"), [
    ("stop", 3), ("backoff", 0.1), ("budget", 0.2), ("retry_on", 3), ("retry_on", (ValueError, 1)),
    ("listeners", [print]),
])
def test_retry_objects_of_the_wrong_kind(name: str, value: object) -> None:
    assert_rejected(lambda: RetryPolicy(**{name: value}), name)


def test_a_huge_back_off_delay_does_not_overflow_the_default_sleep(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # time.sleep(1e10) raises OverflowError; the default sleep waits in steps instead.
    import threading
    import time

    slept: list[float] = []

    def real_sleep(delay: float) -> None:  # time.sleep's limit, without the waiting
        if delay > threading.TIMEOUT_MAX:
            raise OverflowError("timestamp too large to convert to C _PyTime_t")
        slept.append(delay)

    monkeypatch.setattr(time, "sleep", real_sleep)
    policy = RetryPolicy(stop=StopAfterAttempts(2), backoff=ConstantBackoff(1e10))
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError
        return "ok"

    assert policy.call(flaky) == "ok"
    assert max(slept) <= threading.TIMEOUT_MAX
    assert math.isclose(sum(slept), 1e10)


def test_a_custom_sleep_gets_the_whole_delay_in_one_call() -> None:
    # The driver used to cut every delay into one-hour steps for any sleep: a manual
    # clock's sleep then ran 2.8 million times for 1e10 s (and for ever for the
    # uncapped schedule's largest delay) instead of advancing virtual time once.
    clock = ManualClock()
    policy = RetryPolicy(stop=StopAfterAttempts(3), backoff=ConstantBackoff(1e8),
                         clock=clock, sleep=clock.sleep)
    with pytest.raises(ValueError, match="down"):
        policy.call(_always_fails)
    assert clock.slept == [1e8, 1e8]


def _always_fails() -> None:
    raise ValueError("down")


# --------------------------------------------------------------------------- budget


@FAST
@given(value=NOT_A_NUMBER | NON_FINITE | NEGATIVE | st.floats(min_value=1.001, max_value=9))
def test_budget_ratio(value: Any) -> None:
    assert_rejected(lambda: RetryBudget(value), "ratio", value)


@FAST
@given(value=NOT_A_NUMBER | NON_FINITE | NEGATIVE)
def test_budget_reserve(value: Any) -> None:
    assert_rejected(lambda: RetryBudget(min_retries_per_second=value),
                    "min_retries_per_second", value)


@FAST
@given(value=NOT_A_NUMBER | NON_FINITE | NEGATIVE | st.just(0.0))
def test_budget_window(value: Any) -> None:
    assert_rejected(lambda: RetryBudget(window=value), "window", value)


@FAST
@given(value=NOT_AN_INT | NOT_POSITIVE_INT)
def test_budget_buckets(value: Any) -> None:
    assert_rejected(lambda: RetryBudget(buckets=value), "buckets", value)


@FAST
@given(value=NOT_A_CLOCK)
def test_budget_clock(value: Any) -> None:
    # RetryBudget(clock=...) used to fail later, inside, with an AttributeError.
    assert_rejected(lambda: RetryBudget(clock=value), "clock")


@pytest.mark.parametrize(("window", "buckets"), [(1e-300, 1), (1.0, 10**12)])
def test_budget_buckets_narrower_than_a_nanosecond_are_refused(window: float,
                                                               buckets: int) -> None:
    assert_rejected(lambda: RetryBudget(window=window, buckets=buckets), "buckets")


def test_budget_with_a_huge_window_of_many_buckets_works() -> None:
    clock = ManualClock()
    budget = RetryBudget(window=1e9, buckets=10**9, clock=clock)  # 1 s buckets
    budget.record_call()
    clock.advance(5e8)
    budget.record_call()
    assert budget.snapshot().calls == 2
    clock.advance(6e8)
    assert budget.snapshot().calls == 1


# --------------------------------------------------------------------------- breaker


@FAST
@given(value=NOT_A_NUMBER | NON_FINITE | NEGATIVE | st.just(0.0) | st.just(1.5))
def test_breaker_rates(value: Any) -> None:
    for name in ("failure_rate_threshold", "slow_call_rate_threshold"):
        assert_rejected(lambda n=name: CircuitBreaker(**{n: value}), name, value)


@FAST
@given(value=NOT_A_NUMBER | NEGATIVE | st.just(NAN) | st.just(0.0))
def test_breaker_slow_call_duration(value: Any) -> None:
    assert_rejected(lambda: CircuitBreaker(slow_call_duration=value), "slow_call_duration",
                    value)


@FAST
@given(value=NOT_A_NUMBER | NON_FINITE | NEGATIVE)
def test_breaker_wait_in_open(value: Any) -> None:
    assert_rejected(lambda: CircuitBreaker(wait_in_open=value), "wait_in_open", value)


@FAST
@given(value=NOT_AN_INT | NOT_POSITIVE_INT)
def test_breaker_counts(value: Any) -> None:
    for name in ("window_size", "window_buckets", "minimum_calls", "half_open_calls"):
        if name == "minimum_calls" and value is None:
            continue  # None is the default: 10, or the count window's size if smaller
        assert_rejected(lambda n=name: CircuitBreaker(**{n: value}), name, value)


@FAST
@given(value=NOT_A_NUMBER | NON_FINITE | NEGATIVE | st.just(0.0))
def test_breaker_time_window_size(value: Any) -> None:
    assert_rejected(lambda: CircuitBreaker(window_type="time", window_size=value),
                    "window_size", value)


@FAST
@given(value=HUGE)
def test_breaker_huge_but_finite_values_work(value: float) -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(window_type="time", window_size=value, window_buckets=10**6,
                             wait_in_open=value, slow_call_duration=value, clock=clock,
                             minimum_calls=1)
    with pytest.raises(LookupError):
        breaker.call(_fail)
    assert breaker.retry_after() == value


def _fail() -> None:
    raise LookupError


def test_breaker_other_parameters() -> None:
    assert_rejected(lambda: CircuitBreaker(""), "name")
    assert_rejected(lambda: CircuitBreaker(window_type="sliding"), "window_type", "sliding")
    assert_rejected(lambda: CircuitBreaker(record_exceptions=3), "record_exceptions")  # type: ignore[arg-type]
    assert_rejected(lambda: CircuitBreaker(ignore_exceptions=(int,)), "ignore_exceptions")  # type: ignore[arg-type]
    assert_rejected(lambda: CircuitBreaker(record_result=3), "record_result")  # type: ignore[arg-type]
    assert_rejected(lambda: CircuitBreaker(listeners=[print]), "listeners")  # type: ignore[arg-type]


@FAST
@given(value=NOT_A_CLOCK)
def test_breaker_clock(value: Any) -> None:
    assert_rejected(lambda: CircuitBreaker(clock=value), "clock")


@FAST
@given(value=NOT_AN_RNG)
def test_breaker_rng(value: Any) -> None:
    # The rng used to be accepted and to fail at the first trip, deep in the back-off.
    assert_rejected(lambda: CircuitBreaker(rng=value), "rng")


@FAST
@given(value=NOT_CALLABLE)
def test_breaker_fn(value: Any) -> None:
    breaker = CircuitBreaker()
    assert_rejected(lambda: breaker(value), "fn")
    breaker.force_open()
    assert_rejected(lambda: breaker.call(value), "fn")
    assert breaker.metrics().not_permitted == 0  # refused before asking for a permit


# --------------------------------------------------------------------------- bulkhead


@FAST
@given(value=NOT_AN_INT | NOT_POSITIVE_INT)
def test_bulkhead_max_concurrent_calls(value: Any) -> None:
    assert_rejected(lambda: Bulkhead("b", value), "max_concurrent_calls", value)
    assert_rejected(lambda: ThreadPoolBulkhead("b", value), "max_threads", value)


@FAST
@given(value=NOT_AN_INT | st.just(-1))
def test_bulkhead_max_queue_size(value: Any) -> None:
    assert_rejected(lambda: Bulkhead("b", 1, value), "max_queue_size", value)


@FAST
@given(value=NOT_A_NUMBER | NEGATIVE | st.just(NAN))
def test_bulkhead_max_wait(value: Any) -> None:
    assert_rejected(lambda: Bulkhead("b", 1, 1, max_wait=value), "max_wait", value)


@FAST
@given(value=(NON_FINITE | NOT_A_NUMBER).filter(lambda v: v is not None))  # None: clock
def test_bulkhead_now(value: Any) -> None:
    # A NaN `now` used to be stored in tickets and permits (deadlines that never pass).
    bulkhead = Bulkhead("b", 1, 1, clock=ManualClock())
    assert_rejected(lambda: bulkhead.enter(now=value), "now", value)
    assert_rejected(lambda: bulkhead.expire(value), "now", value)
    permit = bulkhead.acquire()
    assert_rejected(lambda: permit.release(value), "now", value)
    ticket = bulkhead.enter()
    assert_rejected(lambda: bulkhead.give_up(ticket, now=value), "now", value)
    assert bulkhead.metrics().in_flight == 1
    assert ticket.waiting


def test_bulkhead_huge_max_wait_does_not_overflow_the_wait() -> None:
    bulkhead = Bulkhead("b", 1, 1, max_wait=1e10)
    permit = bulkhead.acquire()
    import threading

    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(bulkhead.acquire()))
    waiter.start()
    while bulkhead.metrics().queued == 0:
        pass
    permit.release()
    waiter.join(timeout=10)
    assert got


def test_bulkhead_other_parameters() -> None:
    assert_rejected(lambda: Bulkhead("", 1), "name")
    assert_rejected(lambda: Bulkhead("b", 1, clock=object()), "clock")  # type: ignore[arg-type]
    assert_rejected(lambda: Bulkhead("b", 1, listeners=[print]), "listeners")  # type: ignore[arg-type]
    assert_rejected(lambda: Bulkhead("b", 1).enter(on_wake=3), "on_wake")  # type: ignore[arg-type]
    assert_rejected(lambda: Bulkhead("b", 1).give_up("ticket"), "ticket")  # type: ignore[arg-type]


@FAST
@given(value=NOT_CALLABLE)
def test_bulkhead_fn(value: Any) -> None:
    bulkhead = Bulkhead("b", 1)
    assert_rejected(lambda: bulkhead.call(value), "fn")
    assert_rejected(lambda: asyncio.run(bulkhead.acall(value)), "fn")
    assert_rejected(lambda: bulkhead(value), "fn")
    assert bulkhead.metrics().permitted == 0
    with ThreadPoolBulkhead("p", 1) as pool:
        assert_rejected(lambda: pool.submit(value), "fn")


# --------------------------------------------------------------------------- guards


@pytest.mark.parametrize("name", ["retry", "breaker", "limiter", "bulkhead", "timeout"])
def test_guard_layers_of_the_wrong_kind(name: str) -> None:
    assert_rejected(lambda: Guard(**{name: object()}), name)


@FAST
@given(value=(NOT_A_NUMBER | NEGATIVE | st.just(NAN)).filter(lambda v: v is not None))
def test_guard_limiter_timeout(value: Any) -> None:
    assert_rejected(lambda: Guard(limiter_timeout=value), "limiter_timeout", value)


@FAST
@given(value=NOT_AN_INT | NOT_POSITIVE_INT)
def test_guard_cost(value: Any) -> None:
    assert_rejected(lambda: Guard(cost=value), "cost", value)


def test_guard_order_and_rejections() -> None:
    assert_rejected(lambda: Guard(order="retry"), "order")  # type: ignore[arg-type]
    assert_rejected(lambda: Guard(order=("retry",)), "order")
    assert_rejected(lambda: Guard(retry_rejections="rate_limited"), "retry_rejections")  # type: ignore[arg-type]
    assert_rejected(lambda: Guard(retry_rejections=("nope",)), "retry_rejections")


@FAST
@given(value=NOT_CALLABLE)
def test_guard_fn(value: Any) -> None:
    assert_rejected(lambda: Guard().call(value), "fn")
    assert_rejected(lambda: asyncio.run(Guard().acall(value)), "fn")
    assert_rejected(lambda: Guard()(value), "fn")
