"""Tests for :mod:`patterns.resilience.retry` (guide section 4.1)."""

from __future__ import annotations

import asyncio
import inspect
import random
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import pytest
import simpy

from patterns.clock import ManualClock
from patterns.events import Listeners
from patterns.resilience.backoff import ConstantBackoff, ExponentialBackoff, Jitter
from patterns.resilience.budget import RetryBudget
from patterns.resilience.retry import (
    AttemptStarted,
    AttemptSucceeded,
    GiveUpReason,
    RetryEvent,
    RetryExhaustedError,
    RetryGaveUp,
    RetryPolicy,
    RetryScheduled,
    StopAfterAttempts,
    StopAfterElapsed,
    StopCondition,
    StopNever,
)

# --------------------------------------------------------------------------- helpers


class Flaky:
    """Fails ``failures`` times (each attempt taking ``duration`` on ``clock``), then succeeds."""

    def __init__(
        self,
        failures: int,
        *,
        error: Callable[[int], BaseException] = lambda n: ConnectionError(f"failure {n}"),
        result: object = "ok",
        clock: ManualClock | None = None,
        duration: float = 0.0,
    ) -> None:
        self.failures = failures
        self.error = error
        self.result = result
        self.clock = clock
        self.duration = duration
        self.calls = 0
        self.errors: list[BaseException] = []
        self.arguments: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> object:
        self.calls += 1
        self.arguments.append((args, kwargs))
        if self.clock is not None and self.duration:
            self.clock.advance(self.duration)
        if self.calls <= self.failures:
            error = self.error(self.calls)
            self.errors.append(error)
            raise error
        return self.result


def always_failing(**kwargs: Any) -> Flaky:
    return Flaky(10**9, **kwargs)


def manual_policy(clock: ManualClock, **options: Any) -> tuple[RetryPolicy, list[RetryEvent]]:
    """A policy on a manual clock, and the list its listener records events into."""
    options.setdefault("backoff", ExponentialBackoff(1.0, jitter="none"))
    policy = RetryPolicy(clock=clock, sleep=clock.sleep, **options)
    events: list[RetryEvent] = []
    policy.listeners.add(events.append)
    return policy, events


def kinds(events: list[RetryEvent]) -> list[tuple[str, int]]:
    return [(type(event).__name__, event.attempt) for event in events]


# --------------------------------------------------------------------------- blocking driver


def test_success_at_once_does_not_sleep() -> None:
    clock = ManualClock()
    policy, events = manual_policy(clock)
    fn = Flaky(0, result=42)
    assert policy.call(fn, 1, 2, key="value") == 42
    assert fn.calls == 1
    assert fn.arguments == [((1, 2), {"key": "value"})]
    assert clock.slept == []
    assert events == [AttemptStarted(0.0, 1), AttemptSucceeded(0.0, 1)]


def test_flaky_then_success_sleeps_exactly_the_backoff_delays() -> None:
    clock = ManualClock()
    policy, events = manual_policy(clock, stop=StopAfterAttempts(3))
    fn = Flaky(2)
    assert policy.call(fn) == "ok"
    assert fn.calls == 3
    assert clock.slept == [1.0, 2.0]
    assert clock.now() == 3.0
    first, second = fn.errors
    assert events == [
        AttemptStarted(0.0, 1),
        RetryScheduled(0.0, 1, 1.0, first, None),
        AttemptStarted(1.0, 2),
        RetryScheduled(1.0, 2, 2.0, second, None),
        AttemptStarted(3.0, 3),
        AttemptSucceeded(3.0, 3),
    ]


def test_the_same_arguments_are_passed_to_every_attempt() -> None:
    clock = ManualClock()
    policy, _ = manual_policy(clock)
    fn = Flaky(2)
    policy.call(fn, "a", n=1)
    assert fn.arguments == [(("a",), {"n": 1})] * 3


def test_stop_after_attempts_reraises_the_original_exception_with_a_note() -> None:
    clock = ManualClock()
    policy, events = manual_policy(clock, stop=StopAfterAttempts(3))
    fn = always_failing()
    with pytest.raises(ConnectionError) as caught:
        policy.call(fn)
    assert str(caught.value) == "failure 3"
    assert caught.value is fn.errors[-1]
    assert caught.value.__notes__ == ["retry: gave up after 3 attempt(s) (stopped)"]
    assert fn.calls == 3
    assert clock.slept == [1.0, 2.0]  # no sleep after the last attempt
    assert events[-1] == RetryGaveUp(3.0, 3, GiveUpReason.STOPPED, fn.errors[-1], None)
    assert kinds(events) == [
        ("AttemptStarted", 1), ("RetryScheduled", 1),
        ("AttemptStarted", 2), ("RetryScheduled", 2),
        ("AttemptStarted", 3), ("RetryGaveUp", 3),
    ]


def test_a_single_attempt_policy_never_retries() -> None:
    clock = ManualClock()
    policy, events = manual_policy(clock, stop=StopAfterAttempts(1))
    fn = always_failing()
    with pytest.raises(ConnectionError) as caught:
        policy.call(fn)
    assert fn.calls == 1
    assert clock.slept == []
    assert caught.value.__notes__ == ["retry: gave up after 1 attempt(s) (stopped)"]
    assert kinds(events) == [("AttemptStarted", 1), ("RetryGaveUp", 1)]


def test_stop_never_keeps_retrying_until_success() -> None:
    clock = ManualClock()
    policy, _ = manual_policy(clock, stop=StopNever(), backoff=ConstantBackoff(0.5))
    fn = Flaky(20)
    assert policy.call(fn) == "ok"
    assert fn.calls == 21
    assert clock.slept == [0.5] * 20


def test_stop_after_elapsed_gives_up_instead_of_sleeping_past_the_deadline() -> None:
    clock = ManualClock()
    policy, events = manual_policy(clock, stop=StopAfterElapsed(5.0))
    fn = always_failing()
    with pytest.raises(ConnectionError) as caught:
        policy.call(fn)
    # Attempts at t=0, 1, 3; the next would start at 3 + 4 = 7 > 5, so no third sleep.
    assert fn.calls == 3
    assert clock.slept == [1.0, 2.0]
    assert clock.now() == 3.0
    assert caught.value.__notes__ == ["retry: gave up after 3 attempt(s) (stopped)"]
    assert events[-1] == RetryGaveUp(3.0, 3, GiveUpReason.STOPPED, fn.errors[-1], None)


def test_stop_after_elapsed_counts_the_time_attempts_take() -> None:
    clock = ManualClock()
    policy, events = manual_policy(clock, stop=StopAfterElapsed(4.0))
    fn = always_failing(clock=clock, duration=0.5)
    with pytest.raises(ConnectionError):
        policy.call(fn)
    # [0, .5] fail, wait 1 -> [1.5, 2] fail, wait 2 -> [4, 4.5] fail: 4.5 + 4 > 4.
    assert clock.slept == [1.0, 2.0]
    assert [e.time for e in events if isinstance(e, AttemptStarted)] == [0.0, 1.5, 4.0]
    assert clock.now() == 4.5


def test_stop_after_elapsed_gives_up_at_once_when_the_first_wait_would_cross() -> None:
    clock = ManualClock()
    policy, _ = manual_policy(clock, stop=StopAfterElapsed(3.9))
    fn = always_failing(clock=clock, duration=1.0)
    with pytest.raises(ConnectionError):
        policy.call(fn)
    # [0, 1] fail, wait 1 -> [2, 3] fail: 3 + 2 > 3.9.
    assert fn.calls == 2
    assert clock.slept == [1.0]


def test_stop_after_elapsed_measures_from_the_first_attempt_not_the_clock_origin() -> None:
    clock = ManualClock(1000.0)
    policy, _ = manual_policy(clock, stop=StopAfterElapsed(5.0))
    fn = always_failing()
    with pytest.raises(ConnectionError):
        policy.call(fn)
    assert fn.calls == 3
    assert clock.slept == [1.0, 2.0]


def test_stops_combined_with_or_stop_at_the_first_that_says_so() -> None:
    clock = ManualClock()
    stop = StopAfterAttempts(5) | StopAfterElapsed(2.5)
    policy, _ = manual_policy(clock, stop=stop, backoff=ConstantBackoff(1.0))
    fn = always_failing()
    with pytest.raises(ConnectionError):
        policy.call(fn)
    # Attempts at t=0, 1, 2; a 4th would start at 3 > 2.5.
    assert fn.calls == 3

    clock2 = ManualClock()
    policy2, _ = manual_policy(clock2, stop=StopAfterAttempts(2) | StopAfterElapsed(100.0),
                               backoff=ConstantBackoff(1.0))
    fn2 = always_failing()
    with pytest.raises(ConnectionError):
        policy2.call(fn2)
    assert fn2.calls == 2


def test_stops_combined_with_and_stop_only_when_both_say_so() -> None:
    clock = ManualClock()
    stop = StopAfterAttempts(2) & StopAfterElapsed(2.5)
    policy, _ = manual_policy(clock, stop=stop, backoff=ConstantBackoff(1.0))
    fn = always_failing()
    with pytest.raises(ConnectionError):
        policy.call(fn)
    # After attempt 2 (t=1) only the attempt limit says stop; after attempt 3 (t=2) both do.
    assert fn.calls == 3
    assert clock.slept == [1.0, 1.0]


@pytest.mark.parametrize(
    ("attempts", "elapsed", "delay", "either", "both"),
    [
        (1, 0.0, 1.0, False, False),
        (3, 0.0, 1.0, True, False),
        (1, 9.5, 1.0, True, False),
        (3, 9.5, 1.0, True, True),
        (2, 9.0, 1.0, False, False),  # exactly at the deadline is still allowed
    ],
)
def test_combined_stop_conditions_decide_like_any_and_all(
    attempts: int, elapsed: float, delay: float, either: bool, both: bool
) -> None:
    by_count, by_time = StopAfterAttempts(3), StopAfterElapsed(10.0)
    assert (by_count | by_time).should_stop(attempts, elapsed, delay) is either
    assert (by_count & by_time).should_stop(attempts, elapsed, delay) is both


def test_stop_conditions_nest_and_show_their_structure() -> None:
    stop = (StopAfterAttempts(5) | StopAfterElapsed(2.5)) & StopNever()
    assert repr(StopAfterAttempts(5) | StopAfterElapsed(2.5)) == (
        "(StopAfterAttempts(5) | StopAfterElapsed(2.5))"
    )
    assert repr(stop) == "((StopAfterAttempts(5) | StopAfterElapsed(2.5)) & StopNever())"
    assert repr(StopAfterAttempts(2) & StopAfterElapsed(1)) == (
        "(StopAfterAttempts(2) & StopAfterElapsed(1))"
    )
    assert stop.should_stop(10, 100.0, 1.0) is False  # StopNever vetoes
    with pytest.raises(TypeError, match="can only combine StopConditions, got 3"):
        StopAfterAttempts(2) | 3  # type: ignore[operator]


def test_stop_after_elapsed_looks_ahead_by_the_next_delay() -> None:
    stop = StopAfterElapsed(10.0)
    assert stop.should_stop(1, 8.0, 2.0) is False
    assert stop.should_stop(1, 8.0, 2.1) is True
    assert stop.should_stop(1, 10.5, 0.0) is True


def test_stop_condition_is_abstract() -> None:
    with pytest.raises(TypeError):
        StopCondition()  # type: ignore[abstract]


# --------------------------------------------------------------------------- what is retried


def test_a_non_retryable_error_fails_at_once() -> None:
    clock = ManualClock()
    policy, events = manual_policy(clock, retry_on=ConnectionError,
                                   stop=StopAfterAttempts(5))
    fn = always_failing(error=lambda n: ValueError(f"bad input {n}"))
    with pytest.raises(ValueError, match="bad input 1") as caught:
        policy.call(fn)
    assert fn.calls == 1
    assert clock.slept == []
    assert caught.value.__notes__ == ["retry: gave up after 1 attempt(s) (not_retryable)"]
    assert events == [
        AttemptStarted(0.0, 1),
        RetryGaveUp(0.0, 1, GiveUpReason.NOT_RETRYABLE, fn.errors[0], None),
    ]


def test_retry_on_a_type_also_retries_its_subclasses() -> None:
    clock = ManualClock()
    policy, _ = manual_policy(clock, retry_on=OSError)
    fn = Flaky(2)  # ConnectionError is an OSError
    assert policy.call(fn) == "ok"
    assert fn.calls == 3


def test_retry_on_a_tuple_of_types() -> None:
    clock = ManualClock()
    policy, _ = manual_policy(clock, retry_on=(ConnectionError, TimeoutError),
                              stop=StopAfterAttempts(5))
    errors = [TimeoutError("t"), ConnectionError("c")]
    fn = Flaky(2, error=lambda n: errors[n - 1])
    assert policy.call(fn) == "ok"
    assert fn.calls == 3

    fn_bad = always_failing(error=lambda n: KeyError(n))
    with pytest.raises(KeyError):
        policy.call(fn_bad)
    assert fn_bad.calls == 1


def test_retry_on_a_predicate() -> None:
    clock = ManualClock()
    policy, _ = manual_policy(clock, retry_on=lambda e: "transient" in str(e),
                              stop=StopAfterAttempts(5))
    fn = Flaky(2, error=lambda n: RuntimeError(f"transient glitch {n}"))
    assert policy.call(fn) == "ok"
    assert fn.calls == 3

    fn_bad = always_failing(error=lambda n: RuntimeError("permanent"))
    with pytest.raises(RuntimeError, match="permanent"):
        policy.call(fn_bad)
    assert fn_bad.calls == 1


def test_is_retryable() -> None:
    policy = RetryPolicy(retry_on=(ConnectionError, TimeoutError))
    assert policy.is_retryable(ConnectionError())
    assert policy.is_retryable(TimeoutError())
    assert not policy.is_retryable(ValueError())
    default = RetryPolicy()
    assert default.is_retryable(ValueError())
    assert not default.is_retryable(KeyboardInterrupt())


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
def test_base_exceptions_are_never_caught_even_with_retry_on_base_exception(
    kind: type[BaseException],
) -> None:
    clock = ManualClock()
    fallback_calls: list[BaseException] = []
    policy, events = manual_policy(
        clock, retry_on=BaseException, stop=StopAfterAttempts(5),
        fallback=lambda e: fallback_calls.append(e),
    )
    fn = always_failing(error=lambda n: kind())
    with pytest.raises(kind) as caught:
        policy.call(fn)
    assert fn.calls == 1
    assert clock.slept == []
    assert fallback_calls == []
    assert not getattr(caught.value, "__notes__", [])
    assert kinds(events) == [("AttemptStarted", 1)]


def test_retry_on_result_retries_then_succeeds() -> None:
    clock = ManualClock()
    policy, events = manual_policy(clock, retry_on_result=lambda r: r is None)
    results = iter([None, None, "ready"])
    assert policy.call(lambda: next(results)) == "ready"
    assert clock.slept == [1.0, 2.0]
    assert events[1] == RetryScheduled(0.0, 1, 1.0, None, None)
    assert kinds(events)[-1] == ("AttemptSucceeded", 3)


def test_retry_on_result_exhausted_raises_retry_exhausted_error_with_last_result() -> None:
    clock = ManualClock()
    policy, events = manual_policy(clock, retry_on_result=lambda r: r < 10)
    results = iter([1, 2, 3, 4])
    with pytest.raises(RetryExhaustedError) as caught:
        policy.call(lambda: next(results))
    error = caught.value
    assert error.attempts == 3
    assert error.reason is GiveUpReason.STOPPED
    assert error.last_result == 3
    assert str(error) == "gave up after 3 attempt(s) (stopped); last result 3"
    assert events[-1] == RetryGaveUp(3.0, 3, GiveUpReason.STOPPED, None, 3)
    assert clock.slept == [1.0, 2.0]


def test_retry_on_result_and_errors_mix() -> None:
    clock = ManualClock()
    policy, events = manual_policy(clock, retry_on_result=lambda r: r == "busy",
                                   stop=StopAfterAttempts(4))
    outcomes: list[object] = [ConnectionError("down"), "busy", "done"]

    def fn() -> object:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    assert policy.call(fn) == "done"
    scheduled = [e for e in events if isinstance(e, RetryScheduled)]
    assert [type(e.error) for e in scheduled] == [ConnectionError, type(None)]
    assert [e.result for e in scheduled] == [None, "busy"]


# --------------------------------------------------------------------------- fallback


def test_fallback_receives_the_final_error_and_its_value_is_returned() -> None:
    clock = ManualClock()
    received: list[BaseException] = []

    def fallback(error: BaseException) -> str:
        received.append(error)
        return "cached"

    policy, events = manual_policy(clock, fallback=fallback)
    fn = always_failing()
    assert policy.call(fn) == "cached"
    assert fn.calls == 3
    assert received == [fn.errors[-1]]
    assert received[0].__notes__ == ["retry: gave up after 3 attempt(s) (stopped)"]
    assert kinds(events)[-1] == ("RetryGaveUp", 3)


def test_fallback_receives_retry_exhausted_error_for_a_failing_result() -> None:
    clock = ManualClock()
    received: list[BaseException] = []
    policy, _ = manual_policy(
        clock, retry_on_result=lambda r: r == "busy",
        fallback=lambda e: received.append(e) or "default",
    )
    assert policy.call(lambda: "busy") == "default"
    (error,) = received
    assert isinstance(error, RetryExhaustedError)
    assert error.last_result == "busy"
    assert error.attempts == 3


def test_fallback_also_covers_a_non_retryable_error() -> None:
    clock = ManualClock()
    policy, _ = manual_policy(clock, retry_on=ConnectionError,
                              fallback=lambda e: f"fallback for {type(e).__name__}")
    fn = always_failing(error=lambda n: ValueError("bad"))
    assert policy.call(fn) == "fallback for ValueError"
    assert fn.calls == 1


def test_fallback_is_not_used_on_success() -> None:
    clock = ManualClock()
    policy, _ = manual_policy(clock, fallback=lambda e: "fallback")
    assert policy.call(Flaky(1)) == "ok"


# --------------------------------------------------------------------------- budget


def test_a_shared_budget_stops_retries_with_budget_exhausted() -> None:
    clock = ManualClock()
    budget = RetryBudget(0.1, min_retries_per_second=0.0, clock=clock)
    policy, events = manual_policy(clock, budget=budget, stop=StopAfterAttempts(10))
    for _ in range(10):
        assert policy.call(lambda: "ok") == "ok"
    fn = always_failing()
    with pytest.raises(ConnectionError) as caught:
        policy.call(fn)
    # 11 calls earn 1.1 retries: the first retry is granted, the second refused.
    assert fn.calls == 2
    assert clock.slept == [1.0]
    assert caught.value.__notes__ == ["retry: gave up after 2 attempt(s) (budget_exhausted)"]
    assert events[-1] == RetryGaveUp(1.0, 2, GiveUpReason.BUDGET_EXHAUSTED, fn.errors[-1], None)
    snapshot = budget.snapshot()
    assert (snapshot.calls, snapshot.retries) == (11, 1)


def test_an_empty_budget_refuses_the_first_retry() -> None:
    clock = ManualClock()
    budget = RetryBudget(0.0, min_retries_per_second=0.0, clock=clock)
    policy, events = manual_policy(clock, budget=budget)
    fn = always_failing()
    with pytest.raises(ConnectionError):
        policy.call(fn)
    assert fn.calls == 1
    assert clock.slept == []
    assert events[-1].reason is GiveUpReason.BUDGET_EXHAUSTED  # type: ignore[attr-defined]


def test_policies_sharing_a_budget_draw_from_the_same_pool() -> None:
    clock = ManualClock()
    budget = RetryBudget(0.0, min_retries_per_second=0.3, window=10.0, clock=clock)  # 3 retries
    first, _ = manual_policy(clock, budget=budget, stop=StopAfterAttempts(10),
                             backoff=ConstantBackoff(0.0))
    second = first.evolve(stop=StopAfterAttempts(10))
    assert second.budget is budget
    fn1, fn2 = always_failing(), always_failing()
    with pytest.raises(ConnectionError):
        first.call(fn1)
    with pytest.raises(ConnectionError):
        second.call(fn2)
    assert fn1.calls == 4  # 3 retries
    assert fn2.calls == 1  # nothing left
    assert budget.snapshot().retries == 3


def test_the_budget_is_not_charged_when_the_stop_condition_ends_the_call() -> None:
    clock = ManualClock()
    budget = RetryBudget(0.0, min_retries_per_second=10.0, clock=clock)
    policy, _ = manual_policy(clock, budget=budget, stop=StopAfterAttempts(3))
    with pytest.raises(ConnectionError):
        policy.call(always_failing())
    assert budget.snapshot().retries == 2
    assert budget.snapshot().calls == 1


def test_a_successful_call_is_recorded_in_the_budget() -> None:
    clock = ManualClock()
    budget = RetryBudget(0.5, min_retries_per_second=0.0, clock=clock)
    policy, _ = manual_policy(clock, budget=budget)
    policy.call(lambda: 1)
    policy.call(lambda: 2)
    assert budget.snapshot().calls == 2
    assert budget.snapshot().retries == 0


# --------------------------------------------------------------------------- listeners


def test_a_failing_listener_does_not_disturb_the_call(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    policy, events = manual_policy(clock)

    def broken(event: RetryEvent) -> None:
        raise RuntimeError("listener bug")

    policy.listeners.add(broken)
    assert policy.call(Flaky(1)) == "ok"
    assert kinds(events) == [("AttemptStarted", 1), ("RetryScheduled", 1),
                             ("AttemptStarted", 2), ("AttemptSucceeded", 2)]
    assert sum("listener bug" in str(r.exc_info[1]) for r in caplog.records if r.exc_info) == 4


def test_listeners_can_be_passed_in_and_are_shared() -> None:
    listeners: Listeners[RetryEvent] = Listeners()
    events: list[RetryEvent] = []
    listeners.add(events.append)
    clock = ManualClock()
    policy = RetryPolicy(listeners=listeners, clock=clock, sleep=clock.sleep)
    assert policy.listeners is listeners
    policy.call(lambda: None)
    assert kinds(events) == [("AttemptStarted", 1), ("AttemptSucceeded", 1)]


def test_event_times_come_from_the_policy_clock() -> None:
    clock = ManualClock(50.0)
    policy, events = manual_policy(clock, backoff=ConstantBackoff(2.0))
    policy.call(Flaky(1, clock=clock, duration=0.25))
    assert [(type(e).__name__, e.time) for e in events] == [
        ("AttemptStarted", 50.0),
        ("RetryScheduled", 50.25),
        ("AttemptStarted", 52.25),
        ("AttemptSucceeded", 52.5),
    ]


# --------------------------------------------------------------------------- decorator


def test_decorator_on_a_sync_function_retries_and_preserves_metadata() -> None:
    clock = ManualClock()
    policy, _ = manual_policy(clock)
    attempts: list[int] = []

    @policy
    def fetch(key: str, *, default: int = 0) -> str:
        """Fetch a value."""
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("down")
        return f"{key}={default}"

    assert fetch("a", default=5) == "a=5"
    assert len(attempts) == 3
    assert clock.slept == [1.0, 2.0]
    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch a value."
    assert fetch.__wrapped__ is not None  # type: ignore[attr-defined]
    assert inspect.signature(fetch) == inspect.signature(fetch.__wrapped__)  # type: ignore[attr-defined]
    assert not inspect.iscoroutinefunction(fetch)


def test_decorator_on_an_async_function_retries_and_preserves_metadata() -> None:
    clock = ManualClock()
    policy, events = manual_policy(clock, backoff=ConstantBackoff(0.0))
    attempts: list[int] = []

    @policy
    async def fetch(key: str) -> str:
        """Fetch asynchronously."""
        attempts.append(1)
        await asyncio.sleep(0)
        if len(attempts) < 3:
            raise ConnectionError("down")
        return key.upper()

    assert inspect.iscoroutinefunction(fetch)
    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch asynchronously."
    assert asyncio.run(fetch("abc")) == "ABC"
    assert len(attempts) == 3
    assert clock.slept == []  # the async driver waits with asyncio, not with `sleep`
    assert kinds(events)[-1] == ("AttemptSucceeded", 3)


# --------------------------------------------------------------------------- asyncio driver


class AsyncFlaky:
    def __init__(self, failures: int, result: object = "ok") -> None:
        self.failures = failures
        self.result = result
        self.calls = 0

    async def __call__(self, *args: Any) -> object:
        self.calls += 1
        await asyncio.sleep(0)
        if self.calls <= self.failures:
            raise ConnectionError(f"failure {self.calls}")
        return (self.result, args)


def test_acall_success_and_retries() -> None:
    clock = ManualClock()
    policy, events = manual_policy(clock, backoff=ConstantBackoff(0.0),
                                   stop=StopAfterAttempts(4))
    fn = AsyncFlaky(3)
    assert asyncio.run(policy.acall(fn, 1, 2)) == ("ok", (1, 2))
    assert fn.calls == 4
    assert kinds(events) == [
        ("AttemptStarted", 1), ("RetryScheduled", 1),
        ("AttemptStarted", 2), ("RetryScheduled", 2),
        ("AttemptStarted", 3), ("RetryScheduled", 3),
        ("AttemptStarted", 4), ("AttemptSucceeded", 4),
    ]


def test_acall_waits_the_backoff_delay_with_asyncio() -> None:
    policy = RetryPolicy(backoff=ConstantBackoff(0.02), stop=StopAfterAttempts(3))
    fn = AsyncFlaky(2)
    start = time.monotonic()
    asyncio.run(policy.acall(fn))
    assert time.monotonic() - start >= 0.035


def test_acall_exhausted_reraises_the_original_error_with_a_note() -> None:
    clock = ManualClock()
    policy, _ = manual_policy(clock, backoff=ConstantBackoff(0.0))
    fn = AsyncFlaky(10)
    with pytest.raises(ConnectionError, match="failure 3") as caught:
        asyncio.run(policy.acall(fn))
    assert caught.value.__notes__ == ["retry: gave up after 3 attempt(s) (stopped)"]
    assert fn.calls == 3


def test_acall_retry_on_result_and_fallback() -> None:
    clock = ManualClock()
    policy, _ = manual_policy(
        clock, backoff=ConstantBackoff(0.0), retry_on_result=lambda r: r[0] == "busy",
        fallback=lambda e: ("fallback", e.last_result),  # type: ignore[attr-defined]
    )
    fn = AsyncFlaky(0, result="busy")
    assert asyncio.run(policy.acall(fn)) == ("fallback", ("busy", ()))
    assert fn.calls == 3


def test_acall_does_not_retry_cancelled_error() -> None:
    clock = ManualClock()
    fallback_calls: list[BaseException] = []
    policy, events = manual_policy(clock, backoff=ConstantBackoff(0.0),
                                   stop=StopAfterAttempts(5),
                                   fallback=lambda e: fallback_calls.append(e))
    calls = 0

    async def cancelled() -> None:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(policy.acall(cancelled))
    assert calls == 1
    assert fallback_calls == []
    assert kinds(events) == [("AttemptStarted", 1)]


def test_cancelling_a_task_during_the_backoff_wait_propagates() -> None:
    policy = RetryPolicy(backoff=ConstantBackoff(30.0), stop=StopAfterAttempts(5))
    fn = AsyncFlaky(10)

    async def main() -> None:
        task = asyncio.create_task(policy.acall(fn))
        for _ in range(5):
            await asyncio.sleep(0)  # let the first attempt fail and the wait begin
        assert fn.calls == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    start = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - start < 5.0
    assert fn.calls == 1


# --------------------------------------------------------------------------- SimPy driver


def no_sleep(seconds: float) -> None:
    raise AssertionError(f"the SimPy driver must not call sleep({seconds})")


def sim_policy(**options: Any) -> tuple[RetryPolicy, list[RetryEvent]]:
    # A frozen clock and a sleep that fails: the SimPy driver must use env.now and timeouts.
    policy = RetryPolicy(clock=ManualClock(), sleep=no_sleep, **options)
    events: list[RetryEvent] = []
    policy.listeners.add(events.append)
    return policy, events


def run_simpy(
    policy: RetryPolicy,
    failures: int,
    *,
    duration: float = 1.0,
    error: Callable[[int], BaseException] = lambda n: ConnectionError(f"sim failure {n}"),
) -> tuple[dict[str, Any], simpy.Environment, list[int]]:
    env = simpy.Environment()
    outcome: dict[str, Any] = {}
    calls: list[int] = []

    def attempt() -> Generator[Any, Any, str]:
        calls.append(1)
        yield env.timeout(duration)
        if len(calls) <= failures:
            raise error(len(calls))
        return "done"

    def process() -> Generator[Any, Any, None]:
        try:
            outcome["value"] = yield from policy.simpy_call(env, attempt)
        except Exception as caught:
            outcome["error"] = caught
        outcome["end"] = env.now

    env.process(process())
    env.run()
    return outcome, env, calls


def test_simpy_time_advances_by_backoff_delays_plus_attempt_durations() -> None:
    policy, events = sim_policy(backoff=ExponentialBackoff(0.5), stop=StopAfterAttempts(3))
    outcome, _, calls = run_simpy(policy, failures=2, duration=1.0)
    assert outcome["value"] == "done"
    assert len(calls) == 3
    assert outcome["end"] == 3 * 1.0 + 0.5 + 1.0
    assert [(type(e).__name__, e.attempt, e.time) for e in events] == [
        ("AttemptStarted", 1, 0.0),
        ("RetryScheduled", 1, 1.0),
        ("AttemptStarted", 2, 1.5),
        ("RetryScheduled", 2, 2.5),
        ("AttemptStarted", 3, 3.5),
        ("AttemptSucceeded", 3, 4.5),
    ]
    assert [e.delay for e in events if isinstance(e, RetryScheduled)] == [0.5, 1.0]


def test_simpy_exhaustion_raises_the_original_error_with_a_note() -> None:
    policy, events = sim_policy(backoff=ConstantBackoff(2.0), stop=StopAfterAttempts(3))
    outcome, _, calls = run_simpy(policy, failures=10, duration=1.0)
    error = outcome["error"]
    assert isinstance(error, ConnectionError)
    assert str(error) == "sim failure 3"
    assert error.__notes__ == ["retry: gave up after 3 attempt(s) (stopped)"]
    assert len(calls) == 3
    assert outcome["end"] == 3 * 1.0 + 2 * 2.0
    assert events[-1] == RetryGaveUp(7.0, 3, GiveUpReason.STOPPED, error, None)


def test_simpy_elapsed_stop_uses_env_now() -> None:
    # The policy clock is frozen at 0: if the driver read it, only the attempt cap would stop.
    policy, _ = sim_policy(backoff=ConstantBackoff(0.5),
                           stop=StopAfterElapsed(3.0) | StopAfterAttempts(10))
    outcome, _, calls = run_simpy(policy, failures=100, duration=1.0)
    # Attempts start at 0, 1.5, 3.0; after the third (ends 4.0), 4.0 + 0.5 > 3.
    assert len(calls) == 3
    assert outcome["end"] == 4.0
    assert isinstance(outcome["error"], ConnectionError)


def test_simpy_elapsed_stop_measures_from_the_first_attempt() -> None:
    policy, _ = sim_policy(backoff=ConstantBackoff(0.5),
                           stop=StopAfterElapsed(3.0) | StopAfterAttempts(10))
    env = simpy.Environment(initial_time=100.0)
    calls: list[int] = []

    def attempt() -> Generator[Any, Any, None]:
        calls.append(1)
        yield env.timeout(1.0)
        raise ConnectionError

    def process() -> Generator[Any, Any, None]:
        with pytest.raises(ConnectionError):
            yield from policy.simpy_call(env, attempt)

    env.process(process())
    env.run()
    assert len(calls) == 3
    assert env.now == 104.0


def start_interruptible(
    policy: RetryPolicy, *, attempt_duration: float, interrupt_at: float, fail: bool
) -> tuple[dict[str, Any], simpy.Environment, list[int]]:
    env = simpy.Environment()
    outcome: dict[str, Any] = {}
    calls: list[int] = []

    def attempt() -> Generator[Any, Any, str]:
        calls.append(1)
        yield env.timeout(attempt_duration)
        if fail:
            raise ConnectionError("down")
        return "done"

    def process() -> Generator[Any, Any, None]:
        try:
            outcome["value"] = yield from policy.simpy_call(env, attempt)
        except simpy.Interrupt as interrupt:
            outcome["interrupt"] = interrupt
            outcome["at"] = env.now

    target = env.process(process())

    def interrupter() -> Generator[Any, Any, None]:
        yield env.timeout(interrupt_at)
        target.interrupt("shutdown")

    env.process(interrupter())
    env.run()
    return outcome, env, calls


def test_simpy_interrupt_inside_an_attempt_is_not_retried() -> None:
    policy, _ = sim_policy(backoff=ConstantBackoff(1.0), stop=StopAfterAttempts(5))
    outcome, _, calls = start_interruptible(policy, attempt_duration=10.0, interrupt_at=2.0,
                                            fail=False)
    assert "value" not in outcome
    assert outcome["interrupt"].cause == "shutdown"
    assert outcome["at"] == 2.0
    assert len(calls) == 1
    assert not policy.is_retryable(outcome["interrupt"])


def test_simpy_interrupt_during_the_backoff_wait_is_not_retried() -> None:
    policy, _ = sim_policy(backoff=ConstantBackoff(5.0), stop=StopAfterAttempts(5))
    outcome, _, calls = start_interruptible(policy, attempt_duration=1.0, interrupt_at=3.0,
                                            fail=True)
    assert outcome["interrupt"].cause == "shutdown"
    assert outcome["at"] == 3.0
    assert len(calls) == 1


def test_simpy_interrupt_is_not_handed_to_the_fallback() -> None:
    # An Interrupt means "stop", like KeyboardInterrupt or CancelledError, which bypass the
    # fallback; a fallback must not turn it into a normal return value.
    fallback_calls: list[BaseException] = []
    policy, _ = sim_policy(backoff=ConstantBackoff(1.0), stop=StopAfterAttempts(5),
                           fallback=lambda e: fallback_calls.append(e) or "fallback")
    outcome, _, calls = start_interruptible(policy, attempt_duration=10.0, interrupt_at=2.0,
                                            fail=False)
    assert len(calls) == 1
    assert fallback_calls == []
    assert "value" not in outcome
    assert outcome.get("interrupt") is not None


def test_simpy_non_retryable_error_fails_at_once() -> None:
    policy, _ = sim_policy(backoff=ConstantBackoff(1.0), retry_on=TimeoutError)
    outcome, _, calls = run_simpy(policy, failures=5, duration=1.0)
    assert len(calls) == 1
    assert outcome["end"] == 1.0
    assert outcome["error"].__notes__ == ["retry: gave up after 1 attempt(s) (not_retryable)"]


def test_simpy_retry_on_result() -> None:
    policy, _ = sim_policy(backoff=ConstantBackoff(1.0), stop=StopAfterAttempts(2),
                           retry_on_result=lambda r: r == "done")
    outcome, _, calls = run_simpy(policy, failures=0, duration=1.0)
    assert isinstance(outcome["error"], RetryExhaustedError)
    assert outcome["error"].last_result == "done"
    assert len(calls) == 2
    assert outcome["end"] == 3.0


# --------------------------------------------------------------------------- three drivers


def test_the_same_policy_gives_the_same_delays_in_every_driver() -> None:
    clock = ManualClock()
    backoff = ExponentialBackoff(0.001, cap=0.004, jitter=Jitter.FULL)
    policy = RetryPolicy(stop=StopAfterAttempts(4), backoff=backoff, rng=random.Random(),
                         clock=clock, sleep=clock.sleep)
    delays: list[float] = []
    policy.listeners.add(
        lambda e: delays.append(e.delay) if isinstance(e, RetryScheduled) else None
    )
    expected = backoff.first(3, random.Random(99))
    assert len(set(expected)) == 3  # jitter really varies them

    def failing() -> None:
        raise ConnectionError

    async def afailing() -> None:
        raise ConnectionError

    policy.rng.seed(99)
    with pytest.raises(ConnectionError):
        policy.call(failing)
    sync_delays, delays[:] = list(delays), []
    assert clock.slept == sync_delays

    policy.rng.seed(99)
    with pytest.raises(ConnectionError):
        asyncio.run(policy.acall(afailing))
    async_delays, delays[:] = list(delays), []

    policy.rng.seed(99)
    env = simpy.Environment()

    def attempt() -> Generator[Any, Any, None]:
        yield env.timeout(0)
        raise ConnectionError

    def process() -> Generator[Any, Any, None]:
        with pytest.raises(ConnectionError):
            yield from policy.simpy_call(env, attempt)

    env.process(process())
    env.run()
    simpy_delays = list(delays)

    assert sync_delays == async_delays == simpy_delays == expected
    assert env.now == pytest.approx(sum(expected))


# --------------------------------------------------------------------------- construction


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = RetryPolicy()
    assert isinstance(policy.stop, StopAfterAttempts)
    assert policy.stop.max_attempts == 3
    assert isinstance(policy.backoff, ExponentialBackoff)
    assert (policy.backoff.initial, policy.backoff.cap) == (0.1, 10.0)
    assert policy.backoff.jitter is Jitter.FULL
    assert policy.retry_on is Exception
    assert policy.budget is None
    assert policy.fallback is None
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    policy.sleep(0.5)  # the default sleep is time.sleep (in steps for huge delays)
    assert slept == [0.5]


def test_default_policy_on_a_manual_clock_sleeps_jittered_exponential_delays() -> None:
    clock = ManualClock()
    policy = RetryPolicy(clock=clock, sleep=clock.sleep, rng=random.Random(1))
    with pytest.raises(ConnectionError):
        policy.call(always_failing())
    assert len(clock.slept) == 2
    assert 0.0 <= clock.slept[0] <= 0.1
    assert 0.0 <= clock.slept[1] <= 0.2


def test_from_attempts() -> None:
    clock = ManualClock()
    policy = RetryPolicy.from_attempts(4, initial=0.5, cap=1.0, jitter="none",
                                       clock=clock, sleep=clock.sleep)
    fn = always_failing()
    with pytest.raises(ConnectionError) as caught:
        policy.call(fn)
    assert fn.calls == 4
    assert clock.slept == [0.5, 1.0, 1.0]
    assert caught.value.__notes__ == ["retry: gave up after 4 attempt(s) (stopped)"]


def test_evolve_changes_only_what_is_asked_and_shares_budget_and_listeners() -> None:
    clock = ManualClock()
    budget = RetryBudget(clock=clock)
    original = RetryPolicy(stop=StopAfterAttempts(2), backoff=ConstantBackoff(1.0),
                           retry_on=ConnectionError, budget=budget, clock=clock,
                           sleep=clock.sleep, rng=random.Random(0))
    changed = original.evolve(stop=StopAfterAttempts(5))
    assert changed is not original
    assert changed.stop.max_attempts == 5  # type: ignore[attr-defined]
    assert original.stop.max_attempts == 2  # type: ignore[attr-defined]
    for name in ("backoff", "retry_on", "retry_on_result", "budget", "fallback", "clock",
                 "sleep", "rng", "listeners"):
        assert getattr(changed, name) is getattr(original, name), name

    events: list[RetryEvent] = []
    original.listeners.add(events.append)
    fn = Flaky(3)
    assert changed.call(fn) == "ok"  # 4 attempts: would fail under the original's 2
    assert kinds(events)[-1] == ("AttemptSucceeded", 4)
    assert clock.slept == [1.0, 1.0, 1.0]


def test_evolve_with_no_changes_is_an_equivalent_copy() -> None:
    original = RetryPolicy(stop=StopAfterAttempts(7))
    copy = original.evolve()
    assert copy is not original
    assert copy.stop is original.stop
    assert repr(copy) == repr(original)


def test_evolve_refuses_unknown_parameters_naming_them() -> None:
    with pytest.raises(TypeError, match=r"evolve\(\) got unknown parameter\(s\): attempts, tries"):
        RetryPolicy().evolve(tries=3, attempts=2)


def test_evolve_validates_new_values() -> None:
    with pytest.raises(TypeError, match=r"stop must be a StopCondition, got 3"):
        RetryPolicy().evolve(stop=3)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: StopAfterAttempts(0), ValueError, r"max_attempts must be >= 1, got 0"),
        (lambda: StopAfterAttempts(-2), ValueError, r"max_attempts must be >= 1, got -2"),
        (lambda: StopAfterAttempts(2.0), TypeError,
         r"max_attempts must be an int, got 2\.0 \(float\)"),
        (lambda: StopAfterAttempts(True), TypeError,
         r"max_attempts must be an int, got True \(bool\)"),
        (lambda: RetryPolicy.from_attempts(0), ValueError, r"max_attempts must be >= 1, got 0"),
        (lambda: StopAfterElapsed(-1.0), ValueError, r"max_elapsed must be >= 0, got -1\.0"),
        (lambda: StopAfterElapsed(float("nan")), ValueError,
         r"max_elapsed must be a number, got nan"),
        (lambda: StopAfterElapsed("5"), TypeError,
         r"max_elapsed must be a number, got '5' \(str\)"),
        (lambda: RetryPolicy(retry_on=42), TypeError,
         r"retry_on must be an exception type, a tuple of them or a predicate, got 42"),
        (lambda: RetryPolicy(retry_on=(ValueError, "oops")), TypeError,
         r"retry_on must hold exception types, got 'oops'"),
        (lambda: RetryPolicy(retry_on=(ValueError, int)), TypeError,
         r"retry_on must hold exception types, got <class 'int'>"),
        (lambda: RetryPolicy(retry_on=ValueError("x")), TypeError,
         r"retry_on must be an exception type, .*got ValueError\('x'\)"),
        (lambda: RetryPolicy(stop=3), TypeError, r"stop must be a StopCondition, got 3"),
        (lambda: RetryPolicy(stop=StopAfterAttempts), TypeError,
         r"stop must be a StopCondition, got <class .*StopAfterAttempts'>"),
        (lambda: RetryPolicy(backoff=1.0), TypeError, r"backoff must be a Backoff, got 1\.0"),
        (lambda: RetryPolicy(budget="budget"), TypeError,
         r"budget must be a RetryBudget, got 'budget'"),
        (lambda: RetryPolicy(retry_on_result=True), TypeError,
         r"retry_on_result must be callable, got True"),
        (lambda: RetryPolicy(fallback="default"), TypeError,
         r"fallback must be callable, got 'default'"),
        (lambda: RetryPolicy(sleep=0.1), TypeError, r"sleep must be callable, got 0\.1"),
        (lambda: RetryPolicy(clock="now"), TypeError,
         r"clock must be a Clock .*got 'now'"),
    ],
)
def test_bad_parameters_are_refused_naming_parameter_and_value(
    make: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("kind", [int, str, dict])
def test_retry_on_refuses_a_class_that_is_not_an_exception(kind: type) -> None:
    # A class is callable, so it must not slip through as a "predicate": retry_on=str would
    # retry every error (str(error) is truthy) and retry_on=int would crash at the first one.
    with pytest.raises(TypeError, match=r"retry_on"):
        RetryPolicy(retry_on=kind)


def test_repr() -> None:
    policy = RetryPolicy(stop=StopAfterAttempts(2), backoff=ConstantBackoff(1.0),
                         retry_on=ConnectionError)
    assert repr(policy) == (
        "RetryPolicy(stop=StopAfterAttempts(2), "
        "backoff=ConstantBackoff(delay=1.0, jitter='none'), "
        "retry_on=<class 'ConnectionError'>, budget=None)"
    )


# --------------------------------------------------------------------------- threads


def test_one_policy_shared_by_threads_keeps_each_calls_attempts_apart() -> None:
    threads_count = 8
    policy = RetryPolicy(stop=StopAfterAttempts(5), backoff=ConstantBackoff(0.001))
    per_thread: dict[int, list[tuple[str, int]]] = {i: [] for i in range(threads_count)}
    local = threading.local()

    def record(event: RetryEvent) -> None:
        per_thread[local.index].append((type(event).__name__, event.attempt))

    policy.listeners.add(record)
    barrier = threading.Barrier(threads_count)
    outcomes: dict[int, object] = {}
    flakies = {i: Flaky(i) for i in range(threads_count)}  # thread i fails i times

    def worker(index: int) -> None:
        local.index = index
        barrier.wait()
        try:
            outcomes[index] = policy.call(flakies[index])
        except ConnectionError as error:
            outcomes[index] = error

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for index in range(threads_count):
        flaky = flakies[index]
        events = per_thread[index]
        if index < 5:
            assert outcomes[index] == "ok"
            assert flaky.calls == index + 1
            expected = [e for n in range(1, index + 1)
                        for e in (("AttemptStarted", n), ("RetryScheduled", n))]
            expected += [("AttemptStarted", index + 1), ("AttemptSucceeded", index + 1)]
        else:
            error = outcomes[index]
            assert isinstance(error, ConnectionError)
            assert error is flaky.errors[-1]
            assert error.__notes__ == ["retry: gave up after 5 attempt(s) (stopped)"]
            assert flaky.calls == 5
            expected = [e for n in range(1, 5)
                        for e in (("AttemptStarted", n), ("RetryScheduled", n))]
            expected += [("AttemptStarted", 5), ("RetryGaveUp", 5)]
        assert events == expected, index


def test_decorated_function_is_reentrant_across_threads() -> None:
    policy = RetryPolicy(stop=StopAfterAttempts(3), backoff=ConstantBackoff(0.0))
    local = threading.local()

    @policy
    def work(value: int) -> int:
        local.attempts = getattr(local, "attempts", 0) + 1
        if local.attempts < 3:
            raise ConnectionError
        return value * 2

    results: list[tuple[int, int]] = []
    lock = threading.Lock()

    def worker(value: int) -> None:
        result = work(value)
        with lock:
            results.append((value, result))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [(i, 2 * i) for i in range(8)]


def test_decorator_copies_the_wrapped_function_attributes() -> None:
    policy = RetryPolicy()

    def original() -> None:
        """Doc."""

    wrapped = policy(original)
    assert wrapped.__wrapped__ is original  # type: ignore[attr-defined]
    for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
        assert getattr(wrapped, attribute) == getattr(original, attribute)


def test_call_refuses_an_async_function_instead_of_returning_a_coroutine() -> None:
    async def fetch() -> int:
        return 1

    with pytest.raises(TypeError, match=r"RetryPolicy.call cannot run .*fetch.*coroutine "
                                        r"function.*RetryPolicy.acall"):
        RetryPolicy().call(fetch)  # type: ignore[arg-type]


def test_acall_waits_with_the_policys_asleep_in_virtual_time() -> None:
    import asyncio

    from patterns.clock import ManualClock
    from patterns.resilience.backoff import ConstantBackoff
    from patterns.resilience.retry import RetryPolicy, StopAfterAttempts

    clock = ManualClock()
    waits: list[float] = []

    async def virtual_sleep(delay: float) -> None:
        waits.append(delay)
        clock.advance(delay)

    policy = RetryPolicy(stop=StopAfterAttempts(4), backoff=ConstantBackoff(30.0),
                         clock=clock, asleep=virtual_sleep)
    attempts: list[float] = []

    async def flaky() -> str:
        attempts.append(clock.now())
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return "ok"

    assert asyncio.run(policy.acall(flaky)) == "ok"
    assert waits == [30.0, 30.0]
    assert attempts == [0.0, 30.0, 60.0]  # a minute of back-off, no real waiting
    assert policy.evolve(stop=StopAfterAttempts(2)).asleep is virtual_sleep


def test_sleep_and_asleep_must_be_callable() -> None:
    import pytest

    from patterns.resilience.retry import RetryPolicy

    with pytest.raises(TypeError, match="asleep"):
        RetryPolicy(asleep=0.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sleep"):
        RetryPolicy(sleep="time.sleep")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- issue 11


def test_call_refuses_a_coroutine_function_before_counting_it_in_the_budget() -> None:
    # It used to record the call in the budget (and start an attempt) first.
    budget = RetryBudget()
    policy = RetryPolicy(budget=budget)
    started: list[object] = []
    policy.listeners.add(started.append)

    async def fetch() -> int:
        return 1

    with pytest.raises(TypeError, match=r"RetryPolicy.call"):
        policy.call(fetch)  # type: ignore[arg-type]
    assert budget.snapshot().calls == 0
    assert started == []


def test_call_refuses_an_awaitable_result_that_is_not_a_coroutine() -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError, match=r"RetryPolicy.call got an awaitable"):
            RetryPolicy().call(loop.create_future)
    finally:
        loop.close()


def test_acall_does_not_retry_a_plain_function() -> None:
    # `await 1` raised a TypeError that was retried: the plain function ran three times.
    calls: list[int] = []

    def plain() -> int:
        calls.append(1)
        return 1

    policy = RetryPolicy(stop=StopAfterAttempts(3), backoff=ConstantBackoff(0.0))
    with pytest.raises(TypeError, match=r"RetryPolicy.acall.*not awaitable"):
        asyncio.run(policy.acall(plain))  # type: ignore[arg-type]
    assert calls == [1]
