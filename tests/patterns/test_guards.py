"""Tests for :mod:`patterns.resilience.guards` (guide chapter 4: one way to stack guards)."""

from __future__ import annotations

import asyncio
import functools
import inspect

import pytest

from patterns.clock import ManualClock
from patterns.events import Listeners
from patterns.resilience.backoff import ConstantBackoff
from patterns.resilience.breaker import (
    CallFailed,
    CallIgnored,
    CallSucceeded,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
)
from patterns.resilience.bulkhead import Bulkhead, BulkheadFullError, CallPermitted
from patterns.resilience.bulkhead import CallFinished as SlotFreed
from patterns.resilience.guards import DEFAULT_ORDER, Guard
from patterns.resilience.ratelimit import Admitted, RateLimitExceededError, TokenBucket
from patterns.resilience.retry import (
    AttemptStarted,
    AttemptSucceeded,
    RetryPolicy,
    StopAfterAttempts,
)
from patterns.resilience.timeout import CallFinished, DeadlineExceededError, TimeoutPolicy


class BoomError(Exception):
    pass


def build(log: list[str], clock: ManualClock | None = None, **options: object) -> Guard:
    """A guard with all five layers, each reporting to ``log``."""
    clock = clock or ManualClock()
    retry = RetryPolicy(stop=StopAfterAttempts(3), backoff=ConstantBackoff(0.0),
                        sleep=clock.sleep, clock=clock)
    retry.listeners.add(lambda e: log.append(f"retry:{type(e).__name__}"))
    breaker = CircuitBreaker("dep", clock=clock, minimum_calls=5, window_size=10)
    breaker.listeners.add(lambda e: log.append(f"breaker:{type(e).__name__}"))
    limiter = TokenBucket(rate=1.0, capacity=5, clock=clock)
    limiter.listeners.add(lambda e: log.append(f"limiter:{type(e).__name__}"))
    bulkhead = Bulkhead("dep", 1, clock=clock)
    bulkhead.listeners.add(lambda e: log.append(f"bulkhead:{type(e).__name__}"))
    timeouts: Listeners[object] = Listeners()
    timeouts.add(lambda e: log.append(f"timeout:{type(e).__name__}"))
    timeout = TimeoutPolicy(10.0, clock=clock, listeners=timeouts)  # type: ignore[arg-type]
    layers: dict[str, object] = {"retry": retry, "breaker": breaker, "limiter": limiter,
                                 "bulkhead": bulkhead, "timeout": timeout}
    layers.update(options)
    return Guard(**layers)  # type: ignore[arg-type]


NESTED = [  # one successful call: each layer opens before and closes after the inner ones
    "retry:AttemptStarted",
    "limiter:Admitted",
    "bulkhead:CallPermitted",
    "fn",
    "timeout:CallFinished",
    "bulkhead:CallFinished",
    "breaker:CallSucceeded",
    "retry:AttemptSucceeded",
]


def test_the_default_order_is_retry_breaker_limiter_bulkhead_timeout() -> None:
    assert DEFAULT_ORDER == ("retry", "breaker", "limiter", "bulkhead", "timeout")
    log: list[str] = []
    guard = build(log)
    assert guard.call(lambda: log.append("fn") or 7) == 7
    assert log == NESTED


def test_the_order_is_the_same_in_asyncio_and_the_decorator_keeps_async() -> None:
    log: list[str] = []
    guard = build(log)

    @guard
    async def fetch(x: int) -> int:
        log.append("fn")
        return x * 2

    assert inspect.iscoroutinefunction(fetch)
    assert asyncio.run(fetch(4)) == 8
    assert log == NESTED


def test_the_decorator_keeps_plain_functions_plain() -> None:
    log: list[str] = []

    @build(log)
    def add(x: int, y: int) -> int:
        log.append("fn")
        return x + y

    assert not inspect.iscoroutinefunction(add)
    assert add(2, 3) == 5
    assert log == NESTED


def test_an_explicit_order_is_applied() -> None:
    log: list[str] = []
    guard = build(log, order=("bulkhead", "limiter", "timeout", "breaker", "retry"))
    guard.call(lambda: log.append("fn"))
    assert log == ["bulkhead:CallPermitted", "limiter:Admitted", "retry:AttemptStarted", "fn",
                   "retry:AttemptSucceeded", "breaker:CallSucceeded", "timeout:CallFinished",
                   "bulkhead:CallFinished"]


@pytest.mark.parametrize("order", [("retry",), ("retry", "breaker", "limiter", "bulkhead",
                                                 "timeout", "retry"), ("retry", "breaker",
                                                 "limiter", "bulkhead", "deadline")])
def test_an_order_must_name_every_layer_once(order: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="order"):
        Guard(order=order)


def test_layers_must_be_of_the_right_kind() -> None:
    with pytest.raises(TypeError, match="breaker must be a CircuitBreaker"):
        Guard(breaker=RetryPolicy())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retry_rejections"):
        Guard(retry_rejections=("circuit_open", "nope"))


def test_an_open_breaker_fails_fast_takes_no_permit_and_is_not_retried() -> None:
    log: list[str] = []
    guard = build(log)
    assert guard.breaker is not None
    assert guard.limiter is not None
    guard.breaker.force_open()
    log.clear()
    calls = []
    with pytest.raises(CircuitOpenError):
        guard.call(lambda: calls.append(1))
    assert calls == []
    assert guard.limiter.stats().admitted == 0
    assert log.count("retry:AttemptStarted") == 1  # not retried


def test_an_open_breaker_is_retried_when_asked() -> None:
    clock = ManualClock()
    log: list[str] = []
    guard = build(log, clock, retry_rejections=("circuit_open",))
    assert guard.breaker is not None
    guard.breaker.force_open()
    with pytest.raises(CircuitOpenError):
        guard.call(lambda: None)
    assert log.count("retry:AttemptStarted") == 3


def test_the_breaker_never_counts_the_guards_own_refusals() -> None:
    clock = ManualClock()
    log: list[str] = []
    limiter = TokenBucket(rate=1e-6, capacity=1, clock=clock)
    guard = build(log, clock, limiter=limiter, retry_rejections=())
    guard.call(lambda: None)
    for _ in range(5):  # refused by the limiter, five times: never a dependency failure
        with pytest.raises(RateLimitExceededError):
            guard.call(lambda: None)
    assert guard.breaker is not None
    assert guard.breaker.state is CircuitState.CLOSED
    assert guard.breaker.metrics().failures == 0
    assert log.count("breaker:CallIgnored") == 5
    assert "breaker:CallFailed" not in log


def test_a_full_bulkhead_is_neither_a_failure_nor_retried() -> None:
    clock = ManualClock()
    log: list[str] = []
    bulkhead = Bulkhead("dep", 1, clock=clock)
    guard = build(log, clock, bulkhead=bulkhead)
    held = bulkhead.acquire()
    with pytest.raises(BulkheadFullError):
        guard.call(lambda: None)
    held.release()
    assert log.count("retry:AttemptStarted") == 1
    assert "breaker:CallIgnored" in log
    assert "breaker:CallFailed" not in log


def test_a_rate_limited_attempt_is_retried_only_after_its_retry_after() -> None:
    clock = ManualClock()
    log: list[str] = []
    limiter = TokenBucket(rate=0.5, capacity=1, clock=clock)  # one permit every 2 s
    limiter.listeners.add(lambda e: log.append(f"limiter:{type(e).__name__}"))
    guard = build(log, clock, limiter=limiter)
    guard.call(lambda: None)
    assert guard.call(lambda: "second") == "second"
    assert clock.now() == pytest.approx(2.0)  # it waited out retry_after, once
    assert log.count("limiter:Rejected") == 1


def test_with_a_limiter_timeout_an_attempt_waits_for_its_permit_on_the_retry_clock() -> None:
    # The waiting limiter path (limiter_timeout=...): no refusal, the wait is the retry's
    # sleep (a manual clock here), and a wait longer than the timeout is a refusal.
    clock = ManualClock()
    log: list[str] = []
    limiter = TokenBucket(rate=0.5, capacity=1, clock=clock)  # one permit every 2 s
    guard = build(log, clock, limiter=limiter, limiter_timeout=5.0)
    guard.call(lambda: None)
    assert guard.call(lambda: "waited") == "waited"
    assert clock.now() == pytest.approx(2.0)
    impatient = build([], clock, limiter=limiter, limiter_timeout=0.5, retry_rejections=())
    with pytest.raises(RateLimitExceededError):
        impatient.call(lambda: "never")


def test_a_cost_beyond_what_the_limiter_can_ever_grant_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="cost must be <= 5"):
        build([], limiter=TokenBucket(rate=1.0, capacity=5, clock=ManualClock()), cost=6)


def test_a_failure_is_retried_and_counted_by_the_breaker_each_attempt() -> None:
    log: list[str] = []
    guard = build(log)
    attempts = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise BoomError
        return "ok"

    assert guard.call(flaky) == "ok"
    assert log.count("breaker:CallFailed") == 2
    assert log.count("limiter:Admitted") == 3  # each attempt counts against the rate
    assert log.count("bulkhead:CallPermitted") == 3


def test_a_timeout_is_a_failure_of_the_attempt_for_the_breaker() -> None:
    events: list[object] = []
    breaker = CircuitBreaker("dep", minimum_calls=1, window_size=1)
    breaker.listeners.add(events.append)
    guard = Guard(breaker=breaker, timeout=TimeoutPolicy(0.01))

    async def slow() -> None:
        await asyncio.sleep(5)

    with pytest.raises(DeadlineExceededError):
        asyncio.run(asyncio.wait_for(guard.acall(slow), timeout=5))
    assert type(events[0]) is CallFailed
    assert breaker.state is CircuitState.OPEN


def test_the_bulkhead_slot_is_free_again_after_a_timeout() -> None:
    bulkhead = Bulkhead("dep", 1)
    guard = Guard(bulkhead=bulkhead, timeout=TimeoutPolicy(0.01))

    async def slow() -> None:
        await asyncio.sleep(5)

    with pytest.raises(DeadlineExceededError):
        asyncio.run(asyncio.wait_for(guard.acall(slow), timeout=5))
    assert bulkhead.metrics().in_flight == 0


def test_call_refuses_async_functions_and_acall_plain_ones() -> None:
    breaker = CircuitBreaker("dep", minimum_calls=1, window_size=1)
    events: list[object] = []
    breaker.listeners.add(events.append)
    guard = Guard(retry=RetryPolicy(backoff=ConstantBackoff(0.0)), breaker=breaker)

    async def fetch() -> int:
        return 1

    with pytest.raises(TypeError, match=r"Guard.call.*coroutine function.*acall"):
        guard.call(fetch)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Guard.call"):
        guard.call(functools.partial(fetch))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Guard.acall.*not awaitable"):
        asyncio.run(guard.acall(lambda: 1))  # type: ignore[arg-type, return-value]
    assert not [e for e in events if isinstance(e, CallFailed | CallSucceeded)]
    assert breaker.state is CircuitState.CLOSED
    assert all(isinstance(e, CallIgnored) for e in events)


def test_a_guard_with_no_layers_just_calls() -> None:
    assert Guard().call(lambda x: x + 1, 1) == 2
    assert asyncio.run(Guard().acall(asyncio.sleep, 0, "x")) == "x"


def test_events_of_each_kind_are_seen() -> None:
    log: list[str] = []
    guard = build(log)
    guard.call(lambda: None)
    kinds = {AttemptStarted, AttemptSucceeded, Admitted, CallPermitted, SlotFreed,
             CallFinished, CallSucceeded}
    assert {name.split(":")[1] for name in log} == {kind.__name__ for kind in kinds}
