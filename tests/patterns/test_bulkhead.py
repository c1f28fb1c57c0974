"""Tests for :mod:`patterns.resilience.bulkhead` (guide section 4.3)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import math
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import CancelledError, Future
from typing import Any

import pytest
import simpy
from hypothesis import given
from hypothesis import strategies as st

from patterns.clock import MONOTONIC, ManualClock
from patterns.events import Listeners
from patterns.resilience.bulkhead import (
    Bulkhead,
    BulkheadEvent,
    BulkheadFullError,
    CallFinished,
    CallPermitted,
    CallQueued,
    CallRejected,
    Permit,
    RejectReason,
    ThreadPoolBulkhead,
    Ticket,
    TicketState,
)

# --------------------------------------------------------------------------- helpers


def manual(
    max_concurrent_calls: int = 2, max_queue_size: int = 2, max_wait: float = 1.0
) -> tuple[Bulkhead, ManualClock, list[BulkheadEvent]]:
    clock = ManualClock()
    bulkhead = Bulkhead("db", max_concurrent_calls, max_queue_size, max_wait=max_wait,
                        clock=clock)
    events: list[BulkheadEvent] = []
    bulkhead.listeners.add(events.append)
    return bulkhead, clock, events


def permit_of(ticket: Ticket) -> Permit:
    assert ticket.permit is not None, ticket
    return ticket.permit


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` (real time) until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.001)


class ConcurrencyProbe:
    """Counts calls running at once, and the most ever seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.current = 0
        self.most = 0
        self.calls = 0

    def enter(self) -> None:
        with self.lock:
            self.current += 1
            self.calls += 1
            self.most = max(self.most, self.current)

    def leave(self) -> None:
        with self.lock:
            self.current -= 1

    def work(self, seconds: float = 0.0005) -> str:
        self.enter()
        try:
            time.sleep(seconds)
        finally:
            self.leave()
        return "done"


# --------------------------------------------------------------------------- the core decision


def test_admits_up_to_the_limit_then_queues_then_rejects() -> None:
    bulkhead, _, events = manual(2, 1)
    first, second = bulkhead.enter(), bulkhead.enter()
    assert first.state is second.state is TicketState.GRANTED
    third = bulkhead.enter()
    assert third.state is TicketState.WAITING
    assert third.permit is None
    with pytest.raises(BulkheadFullError) as caught:
        bulkhead.enter()
    error = caught.value
    assert error.bulkhead == "db"
    assert error.reason is RejectReason.QUEUE_FULL
    assert (error.in_flight, error.queued) == (2, 1)
    assert str(error) == ("bulkhead 'db' rejected the call (queue_full): all 2 permits in use "
                          "and the queue is full (1 of 1 places taken)")
    assert events == [
        CallPermitted(0.0, "db", 0.0),
        CallPermitted(0.0, "db", 0.0),
        CallQueued(0.0, "db", 1),
        CallRejected(0.0, "db", RejectReason.QUEUE_FULL, 0.0),
    ]
    metrics = bulkhead.metrics()
    assert (metrics.in_flight, metrics.queued, metrics.available_permits) == (2, 1, 0)
    assert (metrics.permitted, metrics.rejected_queue_full, metrics.rejected) == (2, 1, 1)


def test_a_released_permit_goes_to_the_oldest_waiter_and_wakes_it() -> None:
    bulkhead, clock, events = manual(1, 3, max_wait=10.0)
    holder = bulkhead.enter()
    woken: list[tuple[str, Ticket]] = []
    waiters = [bulkhead.enter(on_wake=lambda t, n=n: woken.append((n, t))) for n in "abc"]
    clock.advance(2.0)
    assert permit_of(holder).release() is True
    assert woken == [("a", waiters[0])]
    assert waiters[0].state is TicketState.GRANTED
    assert permit_of(waiters[0]).waited == 2.0
    assert [w.state for w in waiters[1:]] == [TicketState.WAITING] * 2
    assert events[-2:] == [CallFinished(2.0, "db", 2.0), CallPermitted(2.0, "db", 2.0)]
    clock.advance(1.0)
    permit_of(waiters[0]).release()
    assert [name for name, _ in woken] == ["a", "b"]
    assert bulkhead.metrics().in_flight == 1
    assert bulkhead.metrics().queued == 1


def test_newcomers_never_overtake_waiters() -> None:
    bulkhead, _, _ = manual(1, 2)
    holder = bulkhead.enter()
    waiter = bulkhead.enter()
    permit_of(holder).release()  # handed to the waiter, not left free for a newcomer
    newcomer = bulkhead.enter()
    assert waiter.state is TicketState.GRANTED
    assert newcomer.state is TicketState.WAITING


def test_release_is_idempotent_and_context_manager_releases_on_error() -> None:
    bulkhead, _, events = manual(1, 0)
    permit = permit_of(bulkhead.enter())
    assert permit.release() is True
    assert permit.release() is False
    assert permit.released
    assert bulkhead.metrics().in_flight == 0
    assert bulkhead.metrics().finished == 1
    assert sum(isinstance(e, CallFinished) for e in events) == 1
    with pytest.raises(KeyError), permit_of(bulkhead.enter()):
        raise KeyError("boom")
    assert bulkhead.metrics().in_flight == 0
    assert bulkhead.metrics().finished == 2


def test_a_double_release_does_not_free_a_second_permit() -> None:
    bulkhead, _, _ = manual(1, 0)
    permit = permit_of(bulkhead.enter())
    permit.release()
    permit.release()
    bulkhead.enter()  # the one free permit
    with pytest.raises(BulkheadFullError):
        bulkhead.enter()


def test_expire_times_out_overdue_waiters_and_frees_their_places() -> None:
    bulkhead, clock, events = manual(1, 2, max_wait=0.5)
    bulkhead.enter()
    woken: list[Ticket] = []
    first = bulkhead.enter(on_wake=woken.append)
    clock.advance(0.3)
    second = bulkhead.enter(on_wake=woken.append)
    clock.advance(0.25)  # t = 0.55: only the first is overdue
    assert bulkhead.expire() == 1
    assert first.state is TicketState.TIMED_OUT
    assert second.state is TicketState.WAITING
    assert woken == [first]
    assert events[-1] == CallRejected(0.55, "db", RejectReason.WAIT_TIMEOUT, 0.55)
    metrics = bulkhead.metrics()
    assert (metrics.queued, metrics.rejected_wait_timeout) == (1, 1)
    # its place is free again
    third = bulkhead.enter()
    assert third.state is TicketState.WAITING
    assert bulkhead.metrics().queued == 2


def test_an_overdue_waiter_is_skipped_when_a_permit_frees() -> None:
    bulkhead, clock, _ = manual(1, 2, max_wait=1.0)
    holder = bulkhead.enter()
    late = bulkhead.enter()
    clock.advance(0.5)
    timely = bulkhead.enter()
    clock.advance(0.7)  # t = 1.2: `late` is past its deadline (1.0), `timely` is not (1.5)
    permit_of(holder).release()
    assert late.state is TicketState.TIMED_OUT
    assert late.permit is None
    assert timely.state is TicketState.GRANTED
    assert bulkhead.metrics().rejected_wait_timeout == 1


def test_a_waiter_may_still_be_granted_at_its_deadline() -> None:
    bulkhead, clock, _ = manual(1, 1, max_wait=1.0)
    holder = bulkhead.enter()
    waiter = bulkhead.enter()
    clock.set(1.0)
    permit_of(holder).release()
    assert waiter.state is TicketState.GRANTED


def test_give_up_leaves_the_queue_and_says_whether_it_did() -> None:
    bulkhead, clock, events = manual(1, 3)
    holder = bulkhead.enter()
    timed_out, cancelled, granted = bulkhead.enter(), bulkhead.enter(), bulkhead.enter()
    clock.advance(0.2)
    assert bulkhead.give_up(timed_out) is True
    assert events[-1] == CallRejected(0.2, "db", RejectReason.WAIT_TIMEOUT, 0.2)
    count = len(events)
    assert bulkhead.give_up(cancelled, timed_out=False) is True
    assert len(events) == count  # a cancellation is not a rejection
    assert (timed_out.state, cancelled.state) == (TicketState.TIMED_OUT, TicketState.ABANDONED)
    permit_of(holder).release()  # skips the two that left, grants the third
    assert granted.state is TicketState.GRANTED
    assert bulkhead.give_up(granted) is False  # too late: the caller holds a permit
    assert bulkhead.give_up(timed_out) is False
    metrics = bulkhead.metrics()
    assert (metrics.queued, metrics.in_flight) == (0, 1)
    assert (metrics.rejected_wait_timeout, metrics.abandoned) == (1, 1)


def test_without_a_queue_a_full_bulkhead_rejects_at_once() -> None:
    bulkhead, _, _ = manual(1, 0)
    bulkhead.enter()
    with pytest.raises(BulkheadFullError, match=r"queue_full.*\(0 of 0 places taken\)"):
        bulkhead.enter()


def test_max_wait_zero_rejects_at_once_as_a_timeout() -> None:
    bulkhead, _, events = manual(1, 5, max_wait=0.0)
    bulkhead.enter()
    with pytest.raises(BulkheadFullError) as caught:
        bulkhead.enter()
    assert caught.value.reason is RejectReason.WAIT_TIMEOUT
    assert "max_wait=0 s" in str(caught.value)
    assert bulkhead.metrics().queued == 0
    assert events[-1] == CallRejected(0.0, "db", RejectReason.WAIT_TIMEOUT, 0.0)


def test_an_infinite_max_wait_never_expires() -> None:
    bulkhead, clock, _ = manual(1, 1, max_wait=math.inf)
    bulkhead.enter()
    waiter = bulkhead.enter()
    clock.advance(1e9)
    assert bulkhead.expire() == 0
    assert waiter.state is TicketState.WAITING


def test_many_early_leavers_keep_the_queue_fifo_and_bounded() -> None:
    bulkhead, _, _ = manual(1, 2, max_wait=math.inf)
    holder = bulkhead.enter()
    keeper = bulkhead.enter()
    for _ in range(5000):
        bulkhead.give_up(bulkhead.enter(), timed_out=False)
    assert bulkhead.metrics().queued == 1
    assert len(bulkhead._queue) < 100  # tickets that left are compacted away
    last = bulkhead.enter()
    permit_of(holder).release()
    assert keeper.state is TicketState.GRANTED
    permit_of(keeper).release()
    assert last.state is TicketState.GRANTED


def test_listeners_and_wake_callbacks_run_outside_the_lock() -> None:
    # A listener or wake-up callback that calls back into the bulkhead would deadlock
    # on a non-reentrant lock held during the call.
    bulkhead, _, _ = manual(1, 1)
    seen: list[int] = []
    bulkhead.listeners.add(lambda event: seen.append(bulkhead.metrics().in_flight))
    entered: list[Ticket] = []

    def on_wake(ticket: Ticket) -> None:
        permit_of(ticket).release()  # re-enters the bulkhead from the callback
        entered.append(ticket)

    def scenario() -> None:
        holder = bulkhead.enter()
        bulkhead.enter(on_wake=on_wake)
        permit_of(holder).release()

    worker = threading.Thread(target=scenario, daemon=True)
    worker.start()
    worker.join(5.0)
    assert not worker.is_alive(), "deadlock: a lock was held while user code ran"
    assert len(entered) == 1
    assert seen


def test_a_failing_listener_does_not_disturb_the_bulkhead() -> None:
    bulkhead, _, _ = manual(1, 0)

    def broken(event: BulkheadEvent) -> None:
        raise RuntimeError("listener bug")

    bulkhead.listeners.add(broken)
    with permit_of(bulkhead.enter()):
        pass
    assert bulkhead.metrics().finished == 1


def test_the_error_pickles_with_its_fields() -> None:
    bulkhead, _, _ = manual(1, 0)
    bulkhead.enter()
    with pytest.raises(BulkheadFullError) as caught:
        bulkhead.enter()
    copy = pickle.loads(pickle.dumps(caught.value))
    assert str(copy) == str(caught.value)
    assert (copy.bulkhead, copy.reason, copy.in_flight) == ("db", RejectReason.QUEUE_FULL, 1)


def test_explicit_now_overrides_the_clock() -> None:
    bulkhead = Bulkhead("x", 1, 1, max_wait=2.0, clock=ManualClock(100.0))
    bulkhead.enter(now=5.0)
    waiter = bulkhead.enter(now=6.0)
    assert waiter.deadline == 8.0
    assert bulkhead.expire(now=8.5) == 1


def test_metrics_and_repr() -> None:
    bulkhead, _, _ = manual(3, 4)
    bulkhead.enter()
    metrics = bulkhead.metrics()
    assert metrics.max_concurrent_calls == 3
    assert metrics.max_queue_size == 4
    assert metrics.available_permits == 2
    assert repr(bulkhead) == ("Bulkhead('db', max_concurrent_calls=3, max_queue_size=4, "
                              "max_wait=1.0)")
    assert "held" in repr(permit_of(bulkhead.enter()))


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"name": ""}, ValueError, "name must be a non-empty string, got ''"),
    ({"name": 3}, ValueError, "name must be a non-empty string, got 3"),
    ({"max_concurrent_calls": 0}, ValueError, "max_concurrent_calls must be >= 1, got 0"),
    ({"max_concurrent_calls": 2.5}, TypeError, "max_concurrent_calls must be an int, got 2.5"),
    ({"max_concurrent_calls": True}, TypeError, "max_concurrent_calls must be an int, got True"),
    ({"max_queue_size": -1}, ValueError, "max_queue_size must be >= 0, got -1"),
    ({"max_queue_size": "3"}, TypeError, "max_queue_size must be an int, got '3'"),
    ({"max_wait": -0.5}, ValueError, "max_wait must be >= 0, got -0.5"),
    ({"max_wait": math.nan}, ValueError, "max_wait must be a number, got nan"),
    ({"max_wait": "1s"}, TypeError, "max_wait must be a number, got '1s'"),
    ({"clock": object()}, TypeError, "clock must be a Clock"),
    ({"listeners": [print]}, TypeError, "listeners must be a Listeners registry"),
])
def test_bad_parameters_are_named(kwargs: dict[str, Any], error: type[Exception],
                                  message: str) -> None:
    options: dict[str, Any] = {"name": "db", "max_concurrent_calls": 1, **kwargs}
    name, limit = options.pop("name"), options.pop("max_concurrent_calls")
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        Bulkhead(name, limit, **options)


def test_bad_wake_callback_is_named() -> None:
    with pytest.raises(TypeError, match="on_wake must be callable, got 3"):
        Bulkhead("db", 1).enter(on_wake=3)  # type: ignore[arg-type]


def test_shared_listeners_registry_is_used() -> None:
    registry: Listeners[BulkheadEvent] = Listeners()
    events: list[BulkheadEvent] = []
    registry.add(events.append)
    bulkhead = Bulkhead("db", 1, listeners=registry, clock=ManualClock())
    bulkhead.enter()
    assert events == [CallPermitted(0.0, "db", 0.0)]


# --------------------------------------------------------------------------- properties


operations = st.lists(
    st.one_of(
        st.just(("enter",)),
        st.tuples(st.just("release"), st.integers(0, 50)),
        st.tuples(st.just("give_up"), st.integers(0, 50), st.booleans()),
        st.tuples(st.just("advance"), st.sampled_from([0.1, 0.4, 1.0])),
        st.just(("expire",)),
    ),
    max_size=80,
)


@given(st.integers(1, 4), st.integers(0, 4), st.sampled_from([0.0, 0.5, 2.0, math.inf]),
       operations)
def test_bounds_fairness_and_conservation_hold_for_any_sequence(
    limit: int, queue_size: int, max_wait: float, ops: list[tuple[Any, ...]]
) -> None:
    clock = ManualClock()
    bulkhead = Bulkhead("p", limit, queue_size, max_wait=max_wait, clock=clock)
    held: list[Permit] = []
    waiting: list[Ticket] = []
    arrivals = 0
    grant_order: list[float] = []  # arrival times of tickets granted after waiting
    rejected = 0

    def collect(ticket: Ticket) -> None:
        if ticket.permit is not None:
            grant_order.append(ticket.enqueued_at)

    for op in ops:
        if op[0] == "enter":
            arrivals += 1
            try:
                ticket = bulkhead.enter(on_wake=collect)
            except BulkheadFullError:
                rejected += 1
            else:
                if ticket.permit is not None:
                    held.append(ticket.permit)
                else:
                    waiting.append(ticket)
        elif op[0] == "release" and held:
            held.pop(op[1] % len(held)).release()
        elif op[0] == "give_up" and waiting:
            bulkhead.give_up(waiting[op[1] % len(waiting)], timed_out=op[2])
        elif op[0] == "advance":
            clock.advance(op[1])
        elif op[0] == "expire":
            bulkhead.expire()
        # tickets granted meanwhile move from `waiting` to `held`
        for ticket in [t for t in waiting if not t.waiting]:
            waiting.remove(ticket)
            if ticket.permit is not None:
                held.append(ticket.permit)
        metrics = bulkhead.metrics()
        assert 0 <= metrics.in_flight <= limit
        assert 0 <= metrics.queued <= queue_size
        assert metrics.in_flight == len(held)
        assert metrics.queued == len(waiting)
        # work-conserving: nobody waits while a permit is free
        assert metrics.queued == 0 or metrics.in_flight == limit
        # conservation: every arrival is running, waiting, done or refused
        assert (metrics.permitted + metrics.rejected + metrics.abandoned + metrics.queued
                == arrivals)
        assert metrics.permitted == metrics.in_flight + metrics.finished
    assert grant_order == sorted(grant_order), "waiters were not served first come first served"
    metrics = bulkhead.metrics()
    if max_wait > 0 or queue_size == 0:  # refusals at the door are all "queue full"
        assert metrics.rejected_queue_full == rejected
    else:  # nobody may wait: refusals at the door are immediate time-outs
        assert metrics.rejected_wait_timeout == rejected


# --------------------------------------------------------------------------- blocking driver


def test_call_returns_the_result_and_releases() -> None:
    bulkhead, _, events = manual(1, 0)
    assert bulkhead.call(lambda x, y=0: x + y, 2, y=3) == 5
    assert [type(e) for e in events] == [CallPermitted, CallFinished]
    with pytest.raises(ZeroDivisionError):
        bulkhead.call(lambda: 1 / 0)
    assert bulkhead.metrics().in_flight == 0


def test_call_refuses_an_async_function() -> None:
    async def fetch() -> int:
        return 1

    with pytest.raises(TypeError, match=r"Bulkhead.call cannot run .*fetch.*coroutine function"):
        Bulkhead("db", 1).call(fetch)  # type: ignore[arg-type]


def test_decorator_wraps_plain_and_async_functions() -> None:
    bulkhead = Bulkhead("db", 1)

    @bulkhead
    def add(x: int, y: int) -> int:
        return x + y

    @bulkhead
    async def double(x: int) -> int:
        return 2 * x

    assert add(2, 3) == 5
    assert add.__name__ == "add"
    assert asyncio.run(double(4)) == 8
    assert bulkhead.metrics().finished == 2


def test_a_blocked_caller_proceeds_when_another_thread_releases() -> None:
    bulkhead = Bulkhead("db", 1, 1, max_wait=math.inf, clock=ManualClock())
    holder = bulkhead.acquire()
    results: list[str] = []
    worker = threading.Thread(target=lambda: results.append(bulkhead.call(lambda: "ran")))
    worker.start()
    wait_until(lambda: bulkhead.metrics().queued == 1)
    assert results == []
    holder.release()
    worker.join(5.0)
    assert results == ["ran"]
    assert bulkhead.metrics().in_flight == 0


def test_a_blocked_caller_times_out_by_the_clock_and_leaves_the_queue() -> None:
    clock = ManualClock()
    bulkhead = Bulkhead("db", 1, 1, max_wait=0.5, clock=clock)
    holder = bulkhead.acquire()
    errors: list[BulkheadFullError] = []

    def caller() -> None:
        try:
            bulkhead.call(lambda: None)
        except BulkheadFullError as error:
            errors.append(error)

    worker = threading.Thread(target=caller)
    worker.start()
    wait_until(lambda: bulkhead.metrics().queued == 1)
    clock.advance(0.6)
    bulkhead.expire()  # the manual clock moved: wake the overdue waiter
    worker.join(5.0)
    assert not worker.is_alive()
    assert [e.reason for e in errors] == [RejectReason.WAIT_TIMEOUT]
    assert "max_wait=0.5 s" in str(errors[0])
    assert bulkhead.metrics().queued == 0
    holder.release()
    assert bulkhead.metrics().in_flight == 0  # nobody is left to hand the permit to


def test_a_blocked_caller_times_out_on_the_monotonic_clock_without_help() -> None:
    bulkhead = Bulkhead("db", 1, 1, max_wait=0.05, clock=MONOTONIC)
    with bulkhead.acquire():
        started = time.monotonic()
        with pytest.raises(BulkheadFullError) as caught:
            bulkhead.acquire()
        waited = time.monotonic() - started
    assert caught.value.reason is RejectReason.WAIT_TIMEOUT
    assert 0.05 <= waited < 2.0
    assert caught.value.waited >= 0.05
    assert bulkhead.metrics().queued == 0


def test_many_threads_never_exceed_the_limit() -> None:
    bulkhead = Bulkhead("db", 4, 1000, max_wait=math.inf)
    probe = ConcurrencyProbe()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(25):
                assert bulkhead.call(probe.work) == "done"
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30.0)
    assert errors == []
    assert probe.calls == 32 * 25
    assert probe.most <= 4
    assert probe.most == 4  # the limit was actually reached, so the bound was tested
    metrics = bulkhead.metrics()
    assert (metrics.in_flight, metrics.queued) == (0, 0)
    assert metrics.permitted == metrics.finished == 32 * 25


def test_many_threads_never_overfill_the_queue() -> None:
    bulkhead = Bulkhead("db", 2, 3, max_wait=0.002)
    probe = ConcurrencyProbe()
    queue_lengths: list[int] = []
    bulkhead.listeners.add(
        lambda e: queue_lengths.append(e.queued) if isinstance(e, CallQueued) else None)
    outcomes = {"ok": 0, "full": 0, "timeout": 0}
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(30):
            try:
                bulkhead.call(probe.work, 0.001)
                key = "ok"
            except BulkheadFullError as error:
                key = "full" if error.reason is RejectReason.QUEUE_FULL else "timeout"
            with lock:
                outcomes[key] += 1

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30.0)
    assert sum(outcomes.values()) == 16 * 30
    assert probe.most <= 2
    assert queue_lengths
    assert max(queue_lengths) <= 3
    metrics = bulkhead.metrics()
    assert (metrics.in_flight, metrics.queued) == (0, 0)
    assert metrics.permitted == outcomes["ok"] == probe.calls
    assert metrics.rejected_queue_full == outcomes["full"] > 0
    assert metrics.rejected_wait_timeout == outcomes["timeout"]


def test_waiters_that_time_out_leave_the_queue_under_concurrency() -> None:
    bulkhead = Bulkhead("db", 1, 5, max_wait=0.02)
    release = threading.Event()
    holder = threading.Thread(target=lambda: bulkhead.call(release.wait, 5.0))
    holder.start()
    wait_until(lambda: bulkhead.metrics().in_flight == 1)
    reasons: list[RejectReason] = []

    def waiter() -> None:
        try:
            bulkhead.call(lambda: None)
        except BulkheadFullError as error:
            reasons.append(error.reason)

    waiters = [threading.Thread(target=waiter) for _ in range(5)]
    for thread in waiters:
        thread.start()
    for thread in waiters:
        thread.join(5.0)
    assert reasons == [RejectReason.WAIT_TIMEOUT] * 5
    assert bulkhead.metrics().queued == 0
    # their places are free: five more may queue (and would be served in turn)
    tickets = [bulkhead.enter() for _ in range(5)]
    assert all(t.waiting for t in tickets)
    for ticket in tickets:
        bulkhead.give_up(ticket, timed_out=False)
    release.set()
    holder.join(5.0)
    assert bulkhead.metrics().in_flight == 0


# --------------------------------------------------------------------------- asyncio driver


def test_asyncio_tasks_never_exceed_the_limit() -> None:
    bulkhead = Bulkhead("db", 3, 100)
    current = most = 0

    async def work(n: int) -> int:
        nonlocal current, most
        current += 1
        most = max(most, current)
        await asyncio.sleep(0.001)
        current -= 1
        return n

    async def main() -> list[int]:
        return await asyncio.gather(*(bulkhead.acall(work, n) for n in range(60)))

    assert asyncio.run(main()) == list(range(60))
    assert most == 3
    assert bulkhead.metrics().finished == 60


def test_asyncio_waiters_are_served_in_order() -> None:
    bulkhead = Bulkhead("db", 1, 10)
    order: list[int] = []

    async def work(n: int) -> None:
        order.append(n)
        await asyncio.sleep(0)

    async def main() -> None:
        tasks = []
        for n in range(6):
            tasks.append(asyncio.create_task(bulkhead.acall(work, n)))
            await asyncio.sleep(0)  # let each task queue before the next is created
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert order == list(range(6))


def test_asyncio_waiter_times_out_and_leaves_the_queue() -> None:
    bulkhead = Bulkhead("db", 1, 1, max_wait=0.02)

    async def main() -> BulkheadFullError:
        holder = await bulkhead.aacquire()
        try:
            with pytest.raises(BulkheadFullError) as caught:
                await bulkhead.aacquire()
            return caught.value
        finally:
            holder.release()

    error = asyncio.run(main())
    assert error.reason is RejectReason.WAIT_TIMEOUT
    assert bulkhead.metrics().queued == 0
    assert bulkhead.metrics().in_flight == 0


def test_a_cancelled_asyncio_waiter_leaves_the_queue_and_leaks_no_permit() -> None:
    bulkhead = Bulkhead("db", 1, 1)

    async def main() -> None:
        holder = await bulkhead.aacquire()
        waiter = asyncio.create_task(bulkhead.acall(asyncio.sleep, 0))
        await asyncio.sleep(0.01)
        assert bulkhead.metrics().queued == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert bulkhead.metrics().queued == 0
        assert bulkhead.metrics().abandoned == 1
        holder.release()

    asyncio.run(main())
    assert bulkhead.metrics().in_flight == 0


def test_a_cancelled_asyncio_waiter_granted_meanwhile_returns_its_permit() -> None:
    bulkhead = Bulkhead("db", 1, 1)

    async def main() -> None:
        holder = await bulkhead.aacquire()
        waiter = asyncio.create_task(bulkhead.aacquire())
        await asyncio.sleep(0.01)
        holder.release()  # grants the waiter; its task has not resumed yet
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    asyncio.run(main())
    metrics = bulkhead.metrics()
    assert (metrics.in_flight, metrics.queued, metrics.finished) == (0, 0, 2)


def test_an_asyncio_waiter_is_woken_by_a_release_in_another_thread() -> None:
    bulkhead = Bulkhead("db", 1, 1)
    holder = bulkhead.acquire()
    timer = threading.Timer(0.02, holder.release)

    async def main() -> str:
        timer.start()
        return await bulkhead.acall(asyncio.sleep, 0, "woken")

    assert asyncio.run(main()) == "woken"
    timer.join()


# --------------------------------------------------------------------------- SimPy driver


def simpy_run(bulkhead: Bulkhead, starts: list[tuple[float, float]]) -> dict[int, object]:
    """Start one call per (arrival, duration); return each outcome (finish time or error)."""
    env = simpy.Environment()
    outcomes: dict[int, object] = {}

    def client(index: int, arrival: float, duration: float) -> Generator[Any, Any, None]:
        yield env.timeout(arrival)

        def attempt() -> Generator[Any, Any, float]:
            yield env.timeout(duration)
            return float(env.now)

        try:
            outcomes[index] = yield from bulkhead.simpy_call(env, attempt)
        except BulkheadFullError as error:
            outcomes[index] = (error.reason.value, float(env.now))

    for index, (arrival, duration) in enumerate(starts):
        env.process(client(index, arrival, duration))
    env.run()
    return outcomes


def test_simpy_calls_queue_in_order_and_overflow_is_rejected() -> None:
    bulkhead = Bulkhead("sim", 1, 3)
    outcomes = simpy_run(bulkhead, [(0.0, 1.0)] * 5)
    assert outcomes == {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0, 4: ("queue_full", 0.0)}
    assert bulkhead.metrics().in_flight == 0


def test_simpy_waiters_time_out_in_simulated_time() -> None:
    bulkhead = Bulkhead("sim", 1, 2, max_wait=1.5)
    waits: list[float] = []
    bulkhead.listeners.add(
        lambda e: waits.append(e.waited) if isinstance(e, CallPermitted) else None)
    outcomes = simpy_run(bulkhead, [(0.0, 1.0), (0.0, 1.0), (0.0, 1.0)])
    # the second starts at 1.0 (it waited 1.0); the third would wait 2.0 > 1.5
    assert outcomes == {0: 1.0, 1: 2.0, 2: ("wait_timeout", 1.5)}
    assert waits == [0.0, 1.0]
    assert bulkhead.metrics().queued == 0


def test_simpy_grant_exactly_at_the_deadline_wins() -> None:
    bulkhead = Bulkhead("sim", 1, 1, max_wait=1.0)
    outcomes = simpy_run(bulkhead, [(0.0, 1.0), (0.0, 0.5)])
    assert outcomes == {0: 1.0, 1: 1.5}


def test_simpy_permit_is_released_when_the_attempt_raises_or_is_interrupted() -> None:
    bulkhead = Bulkhead("sim", 1, 1)
    env = simpy.Environment()
    log: list[str] = []

    def failing() -> Generator[Any, Any, None]:
        yield env.timeout(1.0)
        raise ConnectionError("down")

    def slow() -> Generator[Any, Any, None]:
        yield env.timeout(10.0)

    def client(attempt: Callable[[], Generator[Any, Any, None]], name: str
               ) -> Generator[Any, Any, None]:
        try:
            yield from bulkhead.simpy_call(env, attempt)
        except (ConnectionError, simpy.Interrupt) as error:
            log.append(f"{name}: {type(error).__name__} at {env.now:g}")

    env.process(client(failing, "failing"))
    running = env.process(client(slow, "slow"))  # waits for the failing call's permit

    def interrupter() -> Generator[Any, Any, None]:
        yield env.timeout(2.0)
        running.interrupt("give up")

    env.process(interrupter())
    env.run()
    assert log == ["failing: ConnectionError at 1", "slow: Interrupt at 2"]
    assert bulkhead.metrics().in_flight == 0
    assert bulkhead.metrics().finished == 2


def test_simpy_interrupt_while_waiting_leaves_the_queue() -> None:
    bulkhead = Bulkhead("sim", 1, 1)
    env = simpy.Environment()

    def attempt() -> Generator[Any, Any, None]:
        yield env.timeout(5.0)

    def client() -> Generator[Any, Any, None]:
        with contextlib.suppress(simpy.Interrupt):
            yield from bulkhead.simpy_call(env, attempt)

    env.process(client())
    waiter = env.process(client())

    def interrupter() -> Generator[Any, Any, None]:
        yield env.timeout(1.0)
        assert bulkhead.metrics().queued == 1
        waiter.interrupt()

    env.process(interrupter())
    env.run()
    metrics = bulkhead.metrics()
    assert (metrics.queued, metrics.abandoned, metrics.in_flight, metrics.finished) == (0, 1, 0, 1)


def test_the_core_imports_neither_simpy_nor_asyncio() -> None:
    code = ("import sys, patterns.resilience.bulkhead; "
            "print('simpy' in sys.modules, 'asyncio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False False"


# --------------------------------------------------------------------------- thread isolation


def gated_task(gate: threading.Event, probe: ConcurrencyProbe, value: int) -> Callable[[], int]:
    def task() -> int:
        probe.enter()
        try:
            gate.wait(5.0)
        finally:
            probe.leave()
        return value

    return task


def test_thread_pool_runs_at_most_max_threads_and_refuses_past_the_queue() -> None:
    gate = threading.Event()
    probe = ConcurrencyProbe()
    with ThreadPoolBulkhead("api", 2, 2) as pool:
        futures = [pool.submit(gated_task(gate, probe, n)) for n in range(4)]
        wait_until(lambda: probe.current == 2)
        assert pool.metrics().in_flight == 2
        assert pool.metrics().queued == 2
        with pytest.raises(BulkheadFullError) as caught:
            pool.submit(lambda: 0)
        assert caught.value.bulkhead == "api"
        assert caught.value.reason is RejectReason.QUEUE_FULL
        gate.set()
        assert [f.result(5.0) for f in futures] == [0, 1, 2, 3]
    assert probe.most == 2
    metrics = pool.metrics()
    assert (metrics.in_flight, metrics.queued, metrics.finished) == (0, 0, 4)


def test_thread_pool_propagates_errors_and_frees_the_worker() -> None:
    with ThreadPoolBulkhead("api", 1) as pool:
        failed = pool.submit(lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            failed.result(5.0)
        assert pool.submit(lambda a, b=1: a + b, 1, b=2).result(5.0) == 3


def test_thread_pool_frees_the_permit_before_the_caller_sees_the_result() -> None:
    # One worker, no queue: a caller who submits again as soon as a result arrives
    # must find the worker free.
    with ThreadPoolBulkhead("api", 1, 0) as pool:
        for n in range(200):
            assert pool.submit(lambda n=n: n).result(5.0) == n


def test_cancelling_a_queued_task_takes_it_out_of_the_queue() -> None:
    gate = threading.Event()
    probe = ConcurrencyProbe()
    ran: list[str] = []
    with ThreadPoolBulkhead("api", 1, 1) as pool:
        running = pool.submit(gated_task(gate, probe, 1))
        wait_until(lambda: probe.current == 1)
        queued = pool.submit(lambda: ran.append("queued"))
        assert queued.cancel()
        metrics = pool.metrics()
        assert (metrics.queued, metrics.abandoned) == (0, 1)
        after = pool.submit(lambda: ran.append("after"))  # the place is free again
        gate.set()
        running.result(5.0)
        after.result(5.0)
    assert ran == ["after"]
    with pytest.raises(CancelledError):
        queued.result(0)


def test_a_task_queued_past_max_wait_never_runs() -> None:
    clock = ManualClock()
    gate = threading.Event()
    probe = ConcurrencyProbe()
    ran: list[str] = []
    with ThreadPoolBulkhead("api", 1, 1, max_wait=1.0, clock=clock) as pool:
        running = pool.submit(gated_task(gate, probe, 1))
        wait_until(lambda: probe.current == 1)
        late: Future[None] = pool.submit(lambda: ran.append("late"))
        clock.advance(2.0)
        gate.set()
        running.result(5.0)
        with pytest.raises(BulkheadFullError) as caught:
            late.result(5.0)
    assert caught.value.reason is RejectReason.WAIT_TIMEOUT
    assert ran == []


def test_concurrent_submitters_are_admitted_atomically() -> None:
    # The guide checks `queued_count() >= max_queue_size` and then submits: concurrent
    # callers can all pass the check. Here exactly threads + queue places get in.
    gate = threading.Event()
    probe = ConcurrencyProbe()
    pool = ThreadPoolBulkhead("api", 3, 5)
    accepted: list[Future[int]] = []
    refused = []
    lock = threading.Lock()
    start = threading.Barrier(24)

    def submitter() -> None:
        start.wait()
        try:
            future = pool.submit(gated_task(gate, probe, 0))
        except BulkheadFullError:
            with lock:
                refused.append(1)
        else:
            with lock:
                accepted.append(future)

    threads = [threading.Thread(target=submitter) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5.0)
    assert len(accepted) == 8
    assert len(refused) == 16
    gate.set()
    for future in accepted:
        future.result(5.0)
    pool.shutdown()
    assert probe.most == 3


def test_shutdown_refuses_new_tasks_and_can_cancel_queued_ones() -> None:
    gate = threading.Event()
    probe = ConcurrencyProbe()
    pool = ThreadPoolBulkhead("api", 1, 2)
    running = pool.submit(gated_task(gate, probe, 1))
    wait_until(lambda: probe.current == 1)
    queued = [pool.submit(lambda: "never") for _ in range(2)]
    threading.Timer(0.05, gate.set).start()
    pool.shutdown(wait=True, cancel_queued=True)
    assert running.result(0) == 1
    assert all(f.cancelled() for f in queued)
    with pytest.raises(RuntimeError, match="'api' is shut down"):
        pool.submit(lambda: None)
    assert pool.metrics().in_flight == 0


def test_shutdown_waits_for_queued_tasks() -> None:
    pool = ThreadPoolBulkhead("api", 1, 5)
    futures = [pool.submit(time.sleep, 0.002) for _ in range(5)]
    pool.shutdown(wait=True)
    assert all(f.done() and not f.cancelled() for f in futures)


def test_thread_pool_validation_and_repr() -> None:
    with pytest.raises(ValueError, match="max_threads must be >= 1, got 0"):
        ThreadPoolBulkhead("api", 0)
    with pytest.raises(ValueError, match="max_queue_size must be >= 0, got -2"):
        ThreadPoolBulkhead("api", 1, -2)
    with ThreadPoolBulkhead("api", 2, 3, max_wait=1.5) as pool:
        assert repr(pool) == ("ThreadPoolBulkhead('api', max_threads=2, max_queue_size=3, "
                              "max_wait=1.5)")
        assert pool.name == "api"
        assert isinstance(pool.listeners, Listeners)
        with pytest.raises(TypeError, match="fn must be callable"):
            pool.submit(3)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- issue 11


def test_call_refuses_a_coroutine_function_before_taking_a_permit() -> None:
    # It used to take a permit (and wait in the queue for one) before noticing.
    bulkhead = Bulkhead("db", 1)

    async def fetch() -> int:
        return 1

    with pytest.raises(TypeError, match=r"Bulkhead.call"):
        bulkhead.call(functools.partial(fetch))  # type: ignore[arg-type]
    assert bulkhead.metrics().permitted == 0


def test_thread_pool_refuses_a_coroutine_function_at_submit() -> None:
    # Its future used to hold an un-awaited coroutine as the "result".
    async def fetch() -> int:
        return 1

    with ThreadPoolBulkhead("db", 1) as pool:
        with pytest.raises(TypeError, match=r"ThreadPoolBulkhead.submit.*coroutine function"):
            pool.submit(fetch)  # type: ignore[arg-type]
        future = pool.submit(lambda: fetch())
        with pytest.raises(TypeError, match=r"ThreadPoolBulkhead.submit got a coroutine"):
            future.result(timeout=5)
        assert pool.metrics().permitted == 1


def test_the_decorator_keeps_an_async_callable_object_async() -> None:
    class Fetch:
        async def __call__(self) -> int:
            return 1

    assert inspect.iscoroutinefunction(Bulkhead("db", 1)(Fetch()))
