"""Tests for :mod:`patterns.resilience.timeout` (guide section 4.4)."""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import simpy
from hypothesis import given
from hypothesis import strategies as st

from patterns.clock import MONOTONIC, ManualClock
from patterns.events import Listeners
from patterns.resilience.retry import RetryPolicy
from patterns.resilience.timeout import (
    CANCELLED,
    CallCancelled,
    CallFinished,
    CallTimedOut,
    CancellationToken,
    DeadlineExceededError,
    DeadlineTimer,
    OperationCancelled,
    Registration,
    TimeoutEvent,
    TimeoutPolicy,
    arm_deadline,
    arm_deadline_async,
    arm_deadline_simpy,
    with_timeout,
)
from simulations.kit.clock import SimClock

# --------------------------------------------------------------------------- helpers


def policy_on(clock: ManualClock, timeout: float = 1.0) -> tuple[TimeoutPolicy, list[TimeoutEvent]]:
    policy = TimeoutPolicy(timeout, clock=clock)
    events: list[TimeoutEvent] = []
    policy.listeners.add(events.append)
    return policy, events


def eventually(condition: Callable[[], bool], within: float = 2.0) -> bool:
    """Wait (real time) until ``condition()`` holds; for checks on other threads."""
    give_up = time.monotonic() + within
    while time.monotonic() < give_up:
        if condition():
            return True
        time.sleep(0.002)
    return condition()


# --------------------------------------------------------------------------- cancelling


def test_a_new_token_is_not_cancelled() -> None:
    token = CancellationToken()
    assert not token.is_cancelled
    assert token.reason is None
    token.raise_if_cancelled()  # no error
    assert token.deadline is None
    assert token.remaining() == math.inf


def test_cancel_is_idempotent_and_the_first_reason_wins() -> None:
    token = CancellationToken()
    assert token.cancel("user pressed stop") is True
    assert token.cancel("shutdown") is False
    assert token.is_cancelled
    assert token.reason == "user pressed stop"


def test_cancel_without_a_reason_uses_the_default() -> None:
    token = CancellationToken()
    token.cancel()
    assert token.reason == CANCELLED


def test_raise_if_cancelled_raises_operation_cancelled_with_reason_and_token() -> None:
    token = CancellationToken(name="job")
    token.cancel("no longer needed")
    with pytest.raises(OperationCancelled) as caught:
        token.raise_if_cancelled()
    assert caught.value.reason == "no longer needed"
    assert caught.value.token is token
    assert "no longer needed" in str(caught.value)


def test_operation_cancelled_is_not_an_exception_so_generic_handlers_let_it_through() -> None:
    assert issubclass(OperationCancelled, BaseException)
    assert not issubclass(OperationCancelled, Exception)
    assert not issubclass(OperationCancelled, asyncio.CancelledError)
    token = CancellationToken()
    token.cancel()

    def guarded() -> None:
        try:
            token.raise_if_cancelled()
        except Exception:  # what logging / retry / wrapper code writes
            pytest.fail("cancellation was caught as a failure")

    with pytest.raises(OperationCancelled):
        guarded()


def test_a_retry_policy_does_not_retry_a_cancelled_operation() -> None:
    token = CancellationToken()
    token.cancel("stop")
    calls = []

    def work() -> None:
        calls.append(1)
        token.raise_if_cancelled()

    with pytest.raises(OperationCancelled):
        RetryPolicy.from_attempts(5, initial=0.0).call(work)
    assert calls == [1]


def test_exceptions_survive_copying_as_simpy_does() -> None:
    # SimPy throws `type(e)(*e.args)` into a waiting process: the copy must keep its fields.
    token = CancellationToken()
    cancelled = OperationCancelled("why", token)
    copy = type(cancelled)(*cancelled.args)
    assert (copy.reason, copy.token) == ("why", token)
    expired = DeadlineExceededError(12.5, 0.5)
    again = type(expired)(*expired.args)
    assert (again.deadline, again.timeout) == (12.5, 0.5)
    assert isinstance(again, TimeoutError)
    assert str(again) == "timed out after 0.5 s (deadline 12.5)"
    assert str(DeadlineExceededError(3.0)) == "deadline 3 passed"
    assert again.errno is None  # not mistaken for an OSError errno


# --------------------------------------------------------------------------- callbacks


def test_callbacks_run_once_on_cancel_in_registration_order() -> None:
    token = CancellationToken()
    ran: list[str] = []
    token.on_cancel(lambda: ran.append("first"))
    token.on_cancel(lambda: ran.append("second"))
    token.cancel()
    token.cancel()
    assert ran == ["first", "second"]


def test_a_callback_registered_after_cancellation_runs_at_once() -> None:
    token = CancellationToken()
    token.cancel()
    ran: list[str] = []
    registration = token.on_cancel(lambda: ran.append("late"))
    assert ran == ["late"]
    assert not registration.active
    assert registration.unregister() is False


def test_unregister_before_cancel_prevents_the_callback() -> None:
    token = CancellationToken()
    ran: list[str] = []
    registration = token.on_cancel(lambda: ran.append("x"))
    assert registration.active
    assert registration.unregister() is True
    assert registration.unregister() is False  # twice is harmless
    token.cancel()
    assert ran == []


def test_unregister_after_the_callback_ran_returns_false() -> None:
    token = CancellationToken()
    registration = token.on_cancel(lambda: None)
    token.cancel()
    assert registration.unregister() is False


def test_a_registration_is_a_context_manager() -> None:
    token = CancellationToken()
    ran: list[str] = []
    with token.on_cancel(lambda: ran.append("x")) as registration:
        assert isinstance(registration, Registration)
        assert registration.active
    token.cancel()
    assert ran == []


def test_callbacks_run_outside_the_lock_so_they_may_use_the_token() -> None:
    token = CancellationToken()
    other = CancellationToken()
    seen: list[object] = []

    def callback() -> None:  # every one of these would deadlock under the token's lock
        seen.append(token.reason)
        seen.append(token.child().is_cancelled)
        token.on_cancel(lambda: seen.append("nested"))
        other.cancel("chained")

    token.on_cancel(callback)
    worker = threading.Thread(target=token.cancel, args=("stop",))
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "cancel() deadlocked in a callback"
    assert seen == ["stop", True, "nested"]
    assert other.reason == "chained"


def test_a_failing_callback_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = CancellationToken()
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("boom")

    token.on_cancel(broken)
    token.on_cancel(lambda: ran.append("after"))
    child = token.child()
    child.on_cancel(lambda: ran.append("child"))
    with caplog.at_level(logging.ERROR, logger="patterns.resilience.timeout"):
        assert token.cancel() is True
    assert ran == ["after", "child"]
    assert "boom" in caplog.text


# --------------------------------------------------------------------------- the tree


def test_cancelling_a_parent_cancels_every_descendant_with_its_reason() -> None:
    root = CancellationToken()
    child = root.child()
    grandchild = child.child()
    root.cancel("request timed out")
    assert child.is_cancelled
    assert grandchild.is_cancelled
    assert child.reason == grandchild.reason == "request timed out"


def test_cancelling_a_child_never_cancels_its_parent_or_siblings() -> None:
    root = CancellationToken()
    first, second = root.child(), root.child()
    below = first.child()
    first.cancel()
    assert below.is_cancelled
    assert not root.is_cancelled
    assert not second.is_cancelled


def test_a_child_of_a_cancelled_parent_is_born_cancelled() -> None:
    root = CancellationToken()
    root.cancel("gone")
    child = root.child()
    assert child.is_cancelled
    assert child.reason == "gone"


def test_every_descendant_is_cancelled_before_any_callback_runs() -> None:
    root = CancellationToken()
    grandchild = root.child().child()
    seen: list[bool] = []
    root.on_cancel(lambda: seen.append(grandchild.is_cancelled))
    root.cancel()
    assert seen == [True]


def test_children_are_linked_until_cancelled_or_disposed() -> None:
    root = CancellationToken()
    kept, disposed, cancelled = root.child(), root.child(), root.child()
    assert root.linked_children == 3
    disposed.dispose()
    disposed.dispose()  # idempotent
    cancelled.cancel()
    assert root.linked_children == 1
    root.cancel()
    assert kept.is_cancelled
    assert not disposed.is_cancelled  # unlinked: the parent no longer reaches it
    assert root.linked_children == 0


def test_with_block_disposes_the_child() -> None:
    root = CancellationToken()
    with root.child() as child:
        assert root.linked_children == 1
    assert root.linked_children == 0
    assert not child.is_cancelled
    child.cancel("still usable")
    assert child.reason == "still usable"


def test_many_short_lived_children_do_not_accumulate() -> None:
    root = CancellationToken()
    for _ in range(1000):
        with root.child():
            pass
    policy = TimeoutPolicy(10.0)
    for _ in range(200):
        policy.call(lambda token: token.deadline, parent=root)
    assert root.linked_children == 0


def test_a_deep_chain_is_cancelled_without_recursion() -> None:
    root = CancellationToken()
    token = root
    for _ in range(sys.getrecursionlimit() * 2):
        token = token.child()
    root.cancel()
    assert token.is_cancelled


# --------------------------------------------------------------------------- deadlines


def test_a_deadline_cancels_the_token_when_the_clock_reaches_it() -> None:
    clock = ManualClock(100.0)
    token = CancellationToken(timeout=5.0, clock=clock)
    assert token.deadline == 105.0
    clock.advance(4.999)
    assert not token.is_cancelled
    assert token.remaining() == pytest.approx(0.001)
    clock.advance(0.001)
    assert token.is_cancelled  # at the deadline exactly
    assert isinstance(token.reason, DeadlineExceededError)
    assert token.reason.deadline == 105.0
    assert token.remaining() == 0.0


def test_deadline_passed_is_pure() -> None:
    clock = ManualClock()
    token = CancellationToken(deadline=10.0, clock=clock)
    ran: list[str] = []
    token.on_cancel(lambda: ran.append("cancelled"))
    assert token.deadline_passed(10.0)
    assert token.deadline_passed(11.0)
    assert not token.deadline_passed(9.99)
    assert ran == []  # asking changed nothing
    assert not CancellationToken().deadline_passed(1e9)


def test_callbacks_of_an_expired_token_run_when_anything_looks() -> None:
    clock = ManualClock()
    token = CancellationToken(timeout=1.0, clock=clock)
    ran: list[str] = []
    token.on_cancel(lambda: ran.append("expired"))
    clock.advance(2.0)
    assert ran == []  # nobody looked, no timer armed
    assert token.check_deadline() is True
    assert ran == ["expired"]


def test_registering_on_an_expired_token_runs_the_callback_at_once() -> None:
    clock = ManualClock()
    token = CancellationToken(timeout=1.0, clock=clock)
    clock.advance(1.0)
    ran: list[str] = []
    token.on_cancel(lambda: ran.append("at once"))
    assert ran == ["at once"]


def test_a_child_deadline_is_the_earlier_of_its_own_and_its_parents() -> None:
    clock = ManualClock()
    parent = CancellationToken(timeout=10.0, clock=clock)
    assert parent.child(timeout=3.0).deadline == 3.0
    assert parent.child(timeout=30.0).deadline == 10.0
    assert parent.child().deadline == 10.0
    assert parent.child(deadline=4.0).deadline == 4.0
    assert CancellationToken(clock=clock).child(timeout=math.inf).deadline is None


def test_a_child_reads_the_parents_clock_unless_given_one() -> None:
    clock = ManualClock(50.0)
    parent = CancellationToken(clock=clock)
    child = parent.child(timeout=1.0)
    assert child.clock is clock
    assert child.deadline == 51.0


def test_an_expired_parent_passes_a_deadline_reason_to_a_new_child() -> None:
    clock = ManualClock()
    parent = CancellationToken(timeout=1.0, clock=clock)
    clock.advance(1.0)
    child = parent.child()
    assert child.is_cancelled
    assert isinstance(child.reason, DeadlineExceededError)


def test_repr_shows_name_state_and_deadline() -> None:
    token = CancellationToken(deadline=5.0, clock=ManualClock(), name="fetch")
    assert repr(token) == "CancellationToken('fetch', live, deadline=5.0)"
    token.cancel("x")
    assert repr(token) == "CancellationToken('fetch', cancelled: 'x', deadline=5.0)"


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda: CancellationToken(timeout=-1.0), ValueError, ["timeout", "-1.0"]),
        (lambda: CancellationToken(timeout=math.nan), ValueError, ["timeout", "nan"]),
        (lambda: CancellationToken(timeout="1"), TypeError, ["timeout", "'1'"]),
        (lambda: CancellationToken(deadline=math.inf), ValueError, ["deadline", "inf"]),
        (lambda: CancellationToken(deadline=1.0, timeout=1.0), TypeError,
         ["deadline", "timeout"]),
        (lambda: CancellationToken(clock=object()), TypeError, ["clock"]),
        (lambda: CancellationToken(name=3), TypeError, ["name", "3"]),
        (lambda: CancellationToken().on_cancel("not callable"), TypeError,
         ["callback", "'not callable'"]),
        (lambda: CancellationToken().child(timeout=-2), ValueError, ["timeout", "-2"]),
        (lambda: CancellationToken().child(clock=42), TypeError, ["clock", "42"]),
        (lambda: CancellationToken().wait(-1), ValueError, ["timeout", "-1"]),
        (lambda: TimeoutPolicy(0), ValueError, ["timeout", "0"]),
        (lambda: TimeoutPolicy(-0.5), ValueError, ["timeout", "-0.5"]),
        (lambda: TimeoutPolicy(math.nan), ValueError, ["timeout", "nan"]),
        (lambda: TimeoutPolicy("1"), TypeError, ["timeout", "'1'"]),
        (lambda: TimeoutPolicy(True), TypeError, ["timeout", "True"]),
        (lambda: TimeoutPolicy(1, clock="now"), TypeError, ["clock", "'now'"]),
        (lambda: TimeoutPolicy(1, listeners=[]), TypeError, ["listeners", "[]"]),
        (lambda: TimeoutPolicy(1).call(42), TypeError, ["fn", "42"]),
        (lambda: TimeoutPolicy(1).call(lambda t: t, executor="pool"), TypeError,
         ["executor", "'pool'"]),
        (lambda: TimeoutPolicy(1).call(lambda t: t, parent="p"), TypeError, ["parent", "'p'"]),
        (lambda: DeadlineTimer("token"), TypeError, ["token", "'token'"]),
    ],
)
def test_bad_arguments_are_refused_with_the_parameter_and_value(
    make: Callable[[], object], error: type[Exception], words: list[str]
) -> None:
    with pytest.raises(error) as caught:
        make()
    for word in words:
        assert word in str(caught.value)


# --------------------------------------------------------------------------- waiting: threads


def test_wait_returns_at_once_for_a_cancelled_token() -> None:
    token = CancellationToken()
    token.cancel()
    assert token.wait(10.0) is True


def test_wait_times_out_and_returns_false() -> None:
    started = time.monotonic()
    assert CancellationToken().wait(0.05) is False
    assert 0.04 <= time.monotonic() - started < 1.0


def test_wait_wakes_when_another_thread_cancels() -> None:
    token = CancellationToken()
    threading.Timer(0.05, token.cancel, args=("from a thread",)).start()
    started = time.monotonic()
    assert token.wait(5.0) is True
    assert time.monotonic() - started < 1.0
    assert token.reason == "from a thread"


def test_wait_ends_at_the_deadline_and_cancels_the_token() -> None:
    token = CancellationToken(timeout=0.05)
    started = time.monotonic()
    assert token.wait() is True
    assert 0.04 <= time.monotonic() - started < 1.0
    assert isinstance(token.reason, DeadlineExceededError)


def test_wait_leaves_no_registration_behind() -> None:
    token = CancellationToken()
    for _ in range(50):
        token.wait(0.0)
    assert token._callbacks == {}


def _python_calls_while(action: Callable[[], object]) -> int:
    """How many Python-level and C-level calls this thread makes while doing ``action``."""
    calls = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(profile)
    try:
        action()
    finally:
        sys.setprofile(None)
    return calls


def test_wait_does_not_poll_unlike_the_guides_when_cancelled() -> None:
    # A thread blocked in token.wait() runs no code until it is woken, however long it
    # waits; the guide's `when_cancelled` loop wakes every 10 ms, so its work grows
    # with the wait.
    short = _python_calls_while(lambda: CancellationToken().wait(0.05))
    long = _python_calls_while(lambda: CancellationToken().wait(0.35))
    assert long <= short + 5

    def guide_when_cancelled(seconds: float) -> None:
        flag = [False]
        threading.Timer(seconds, lambda: flag.__setitem__(0, True)).start()
        while not flag[0]:
            time.sleep(0.010)

    guide_short = _python_calls_while(lambda: guide_when_cancelled(0.05))
    guide_long = _python_calls_while(lambda: guide_when_cancelled(0.35))
    assert guide_long - guide_short >= 15  # about one more wake-up per 10 ms waited


# --------------------------------------------------------------------------- waiting: asyncio


def test_wait_async_wakes_on_cancel_from_the_loop_and_from_a_thread() -> None:
    async def scenario() -> tuple[bool, bool, object, object]:
        loop = asyncio.get_running_loop()
        a = CancellationToken()
        loop.call_later(0.01, a.cancel, "loop")
        b = CancellationToken()
        threading.Timer(0.01, b.cancel, args=("thread",)).start()
        return await a.wait_async(5.0), await b.wait_async(5.0), a.reason, b.reason

    assert asyncio.run(scenario()) == (True, True, "loop", "thread")


def test_wait_async_times_out_and_honours_the_deadline() -> None:
    async def scenario() -> tuple[bool, bool, object]:
        timed_out = await CancellationToken().wait_async(0.02)
        expiring = CancellationToken(timeout=0.02)
        return timed_out, await expiring.wait_async(), expiring.reason

    timed_out, woke, reason = asyncio.run(scenario())
    assert timed_out is False
    assert woke is True
    assert isinstance(reason, DeadlineExceededError)


def test_wait_async_leaves_no_registration_behind() -> None:
    token = CancellationToken()
    asyncio.run(token.wait_async(0.0))
    assert token._callbacks == {}


# --------------------------------------------------------------------------- waiting: SimPy


def test_simpy_event_fires_when_the_token_is_cancelled() -> None:
    env = simpy.Environment()
    token = CancellationToken(clock=SimClock(env))
    seen: list[tuple[float, object]] = []

    def waiter() -> Generator[Any, Any, None]:
        reason = yield token.simpy_event(env)
        seen.append((env.now, reason))

    def canceller() -> Generator[Any, Any, None]:
        yield env.timeout(2.5)
        token.cancel("enough")

    env.process(waiter())
    env.process(canceller())
    env.run()
    assert seen == [(2.5, "enough")]


def test_simpy_event_fires_at_the_deadline_in_simulated_time() -> None:
    env = simpy.Environment()
    token = CancellationToken(timeout=4.0, clock=SimClock(env))
    seen: list[float] = []

    def waiter() -> Generator[Any, Any, None]:
        yield token.simpy_event(env)
        seen.append(env.now)

    env.process(waiter())
    env.run()
    assert seen == [4.0]
    assert isinstance(token.reason, DeadlineExceededError)


def test_simpy_refuses_a_token_whose_clock_is_not_the_simulation() -> None:
    env = simpy.Environment()
    token = CancellationToken(timeout=4.0, clock=MONOTONIC)
    with pytest.raises(ValueError, match=r"env\.now"):
        token.simpy_event(env)


def test_arm_deadline_simpy_cancels_on_time_and_is_none_without_a_deadline() -> None:
    env = simpy.Environment()
    clock = SimClock(env)
    assert arm_deadline_simpy(env, CancellationToken(clock=clock)) is None
    token = CancellationToken(deadline=3.0, clock=clock)
    when: list[float] = []
    token.on_cancel(lambda: when.append(env.now))
    arm_deadline_simpy(env, token)
    env.run()
    assert when == [3.0]


# --------------------------------------------------------------------------- deadline drivers


def test_a_deadline_timer_runs_the_callbacks_on_time_without_anyone_looking() -> None:
    token = CancellationToken(timeout=0.05)
    fired = threading.Event()
    token.on_cancel(fired.set)
    timer = arm_deadline(token)
    started = time.monotonic()
    assert fired.wait(2.0)
    assert 0.04 <= time.monotonic() - started < 1.0
    assert eventually(lambda: not timer.running)


def test_a_deadline_timer_stops_when_the_token_is_cancelled_otherwise() -> None:
    token = CancellationToken(timeout=30.0)
    timer = arm_deadline(token)
    assert timer.running
    token.cancel("early")
    assert not timer.running
    assert token.reason == "early"


def test_a_cancelled_deadline_timer_does_not_cancel_the_token() -> None:
    token = CancellationToken(timeout=0.03)
    ran: list[str] = []
    token.on_cancel(lambda: ran.append("x"))
    timer = arm_deadline(token)
    timer.cancel()
    time.sleep(0.08)
    assert ran == []


def test_a_deadline_timer_rearms_while_its_clock_says_not_yet() -> None:
    clock = ManualClock()
    token = CancellationToken(timeout=0.02, clock=clock)
    fired = threading.Event()
    token.on_cancel(fired.set)
    arm_deadline(token)
    assert not fired.wait(0.1)  # several real-time firings, the manual clock stood still
    clock.advance(0.02)
    assert fired.wait(2.0)


def test_arm_deadline_without_a_deadline_does_nothing() -> None:
    timer = arm_deadline(CancellationToken())
    assert not timer.running


def test_arm_deadline_async_cancels_on_time() -> None:
    async def scenario() -> tuple[bool, object]:
        token = CancellationToken(timeout=0.02)
        fired = asyncio.Event()
        token.on_cancel(fired.set)
        assert arm_deadline_async(CancellationToken()) is None
        arm_deadline_async(token)
        await asyncio.wait_for(fired.wait(), 2.0)
        return token.is_cancelled, token.reason

    cancelled, reason = asyncio.run(scenario())
    assert cancelled
    assert isinstance(reason, DeadlineExceededError)


# --------------------------------------------------------------------------- policy: blocking


def test_call_returns_the_result_and_hands_fn_a_token_with_the_deadline() -> None:
    clock = ManualClock(10.0)
    policy, events = policy_on(clock, timeout=2.0)
    seen: list[CancellationToken] = []

    def fn(token: CancellationToken) -> str:
        seen.append(token)
        clock.advance(1.5)
        return "done"

    assert policy.call(fn) == "done"
    assert seen[0].deadline == 12.0
    assert events == [CallFinished(11.5, 1.5, None)]


def test_a_cooperative_operation_past_its_deadline_raises_deadline_exceeded() -> None:
    clock = ManualClock()
    policy, events = policy_on(clock, timeout=1.0)
    tokens: list[CancellationToken] = []

    def fn(token: CancellationToken) -> str:
        tokens.append(token)
        clock.advance(1.2)
        token.raise_if_cancelled()  # the work checks, and stops
        return "never"

    with pytest.raises(DeadlineExceededError) as caught:
        policy.call(fn)
    assert caught.value.timeout == 1.0
    assert caught.value.deadline == 1.0
    assert isinstance(caught.value.__cause__, OperationCancelled)
    assert tokens[0].is_cancelled
    assert events == [CallTimedOut(1.2, 1.2, 1.0)]


def test_a_late_result_is_discarded() -> None:
    clock = ManualClock()
    policy, _ = policy_on(clock, timeout=1.0)

    def ignores_its_token(token: CancellationToken) -> str:
        clock.advance(3.0)
        return "too late"

    with pytest.raises(DeadlineExceededError):
        policy.call(ignores_its_token)


def test_an_error_after_the_deadline_becomes_deadline_exceeded_from_it() -> None:
    # e.g. a socket closed by a cancel callback: the root cause is the timeout
    clock = ManualClock()
    policy, _ = policy_on(clock, timeout=1.0)

    def fn(token: CancellationToken) -> str:
        clock.advance(1.0)
        raise ConnectionResetError("closed under us")

    with pytest.raises(DeadlineExceededError) as caught:
        policy.call(fn)
    assert isinstance(caught.value.__cause__, ConnectionResetError)


def test_an_error_before_the_deadline_propagates_unchanged() -> None:
    clock = ManualClock()
    policy, events = policy_on(clock, timeout=1.0)
    error = KeyError("missing")

    def fn(token: CancellationToken) -> str:
        raise error

    with pytest.raises(KeyError) as caught:
        policy.call(fn)
    assert caught.value is error
    assert events == [CallFinished(0.0, 0.0, error)]


def test_a_cancelled_parent_stops_the_call_before_it_starts() -> None:
    clock = ManualClock()
    policy, events = policy_on(clock)
    parent = CancellationToken(clock=clock)
    parent.cancel("shutting down")
    calls: list[int] = []
    with pytest.raises(OperationCancelled) as caught:
        policy.call(lambda token: calls.append(1), parent=parent)
    assert caught.value.reason == "shutting down"
    assert calls == []
    assert events == [CallCancelled(0.0, 0.0, "shutting down")]


def test_a_parent_cancelled_during_the_call_raises_operation_cancelled() -> None:
    clock = ManualClock()
    policy, _ = policy_on(clock)
    parent = CancellationToken(clock=clock)

    def fn(token: CancellationToken) -> str:
        parent.cancel("user left")
        token.raise_if_cancelled()
        return "never"

    with pytest.raises(OperationCancelled) as caught:
        policy.call(fn, parent=parent)
    assert caught.value.reason == "user left"


def test_an_earlier_parent_deadline_wins_and_says_it_was_inherited() -> None:
    clock = ManualClock()
    policy, _ = policy_on(clock, timeout=10.0)
    parent = CancellationToken(timeout=2.0, clock=clock)

    def fn(token: CancellationToken) -> str:
        assert token.deadline == 2.0
        clock.advance(2.0)
        token.raise_if_cancelled()
        return "never"

    with pytest.raises(DeadlineExceededError) as caught:
        policy.call(fn, parent=parent)
    assert caught.value.timeout is None
    assert str(caught.value) == "deadline 2 passed"


def test_call_refuses_a_coroutine_function() -> None:
    async def fn(token: CancellationToken) -> int:
        return 1

    with pytest.raises(TypeError, match="acall"):
        TimeoutPolicy(1.0).call(fn)  # type: ignore[arg-type]


def test_the_timer_thread_unblocks_an_operation_waiting_on_its_token() -> None:
    # In the calling thread: nobody but the timer can cancel the token on time.
    def blocks(token: CancellationToken) -> str:
        token.wait(5.0)  # e.g. a blocking read that a cancel callback interrupts
        token.raise_if_cancelled()
        return "never"

    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        with_timeout(blocks, 0.05)
    assert time.monotonic() - started < 1.0


def test_in_an_executor_the_caller_stops_waiting_at_the_deadline() -> None:
    finished = threading.Event()
    saw_cancel: list[bool] = []

    def uncooperative(token: CancellationToken) -> str:
        time.sleep(0.3)  # ignores the token: Python cannot stop this thread
        saw_cancel.append(token.is_cancelled)
        finished.set()
        return "late"

    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            TimeoutPolicy(0.05).call(uncooperative, executor=pool)
        assert time.monotonic() - started < 0.25
        assert finished.wait(2.0)
    assert saw_cancel == [True]  # it could have known


def test_in_an_executor_a_queued_operation_never_starts_after_its_deadline() -> None:
    started: list[str] = []
    with ThreadPoolExecutor(1) as pool:
        pool.submit(time.sleep, 0.2)  # the only worker is busy
        with pytest.raises(DeadlineExceededError):
            TimeoutPolicy(0.05).call(lambda token: started.append("ran"), executor=pool)
    assert started == []


def test_in_an_executor_parent_cancellation_wakes_the_caller() -> None:
    parent = CancellationToken()
    threading.Timer(0.05, parent.cancel, args=("stop",)).start()
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        with pytest.raises(OperationCancelled) as caught:
            TimeoutPolicy(math.inf).call(lambda token: token.wait(1.0), executor=pool,
                                         parent=parent)
        assert time.monotonic() - started < 0.5
    assert caught.value.reason == "stop"


def test_in_an_executor_results_and_errors_come_back() -> None:
    with ThreadPoolExecutor(2) as pool:
        assert TimeoutPolicy(5.0).call(lambda token: 42, executor=pool) == 42
        with pytest.raises(ZeroDivisionError):
            TimeoutPolicy(5.0).call(lambda token: 1 / 0, executor=pool)


def test_with_timeout_is_the_policy_in_one_line() -> None:
    clock = ManualClock()
    assert with_timeout(lambda token: token.deadline, 3.0, clock=clock) == 3.0


def test_listeners_can_be_shared() -> None:
    shared: Listeners[TimeoutEvent] = Listeners()
    events: list[TimeoutEvent] = []
    shared.add(events.append)
    clock = ManualClock()
    TimeoutPolicy(1.0, clock=clock, listeners=shared).call(lambda token: None)
    TimeoutPolicy(2.0, clock=clock, listeners=shared).call(lambda token: None)
    assert len(events) == 2
    assert repr(TimeoutPolicy(2.0)) == "TimeoutPolicy(timeout=2.0)"


# --------------------------------------------------------------------------- policy: asyncio


def test_acall_returns_the_result() -> None:
    async def work(token: CancellationToken) -> str:
        await asyncio.sleep(0)
        return "ok"

    assert asyncio.run(TimeoutPolicy(1.0).acall(work)) == "ok"


def test_acall_cancels_the_task_and_the_token_at_the_deadline() -> None:
    seen: dict[str, object] = {}

    async def slow(token: CancellationToken) -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            seen["reason"] = token.reason  # the token says why, during the unwinding
            raise
        return "never"

    async def scenario() -> int:
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            await TimeoutPolicy(0.05).acall(slow)
        assert time.monotonic() - started < 1.0
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    assert asyncio.run(scenario()) == 0  # no stray cancellation left on the task
    assert isinstance(seen["reason"], DeadlineExceededError)


def test_acall_parent_cancelled_from_another_thread() -> None:
    async def scenario() -> object:
        parent = CancellationToken()
        threading.Timer(0.03, parent.cancel, args=("operator",)).start()
        with pytest.raises(OperationCancelled) as caught:
            await TimeoutPolicy(math.inf).acall(lambda token: asyncio.sleep(5), parent=parent)
        return caught.value.reason

    assert asyncio.run(scenario()) == "operator"


def test_acall_cancelled_from_outside_propagates_and_cancels_the_token() -> None:
    tokens: list[CancellationToken] = []

    async def work(token: CancellationToken) -> None:
        tokens.append(token)
        await asyncio.sleep(5)

    async def scenario() -> None:
        task = asyncio.ensure_future(TimeoutPolicy(10.0).acall(work))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert tokens[0].is_cancelled  # work linked to it stops too


def test_an_outer_asyncio_timeout_still_works_around_acall() -> None:
    async def scenario() -> None:
        with pytest.raises(TimeoutError) as caught:
            async with asyncio.timeout(0.03):
                await TimeoutPolicy(10.0).acall(lambda token: asyncio.sleep(5))
        assert not isinstance(caught.value, DeadlineExceededError)

    asyncio.run(scenario())


def test_acall_discards_a_result_after_swallowed_cancellation() -> None:
    async def stubborn(token: CancellationToken) -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            return "swallowed"  # bad manners, but the deadline still counts
        return "never"

    async def scenario() -> int:
        with pytest.raises(DeadlineExceededError):
            await TimeoutPolicy(0.02).acall(stubborn)
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    assert asyncio.run(scenario()) == 0


def test_acall_with_a_cancelled_parent_does_not_start() -> None:
    parent = CancellationToken()
    parent.cancel()
    calls: list[int] = []

    async def work(token: CancellationToken) -> None:
        calls.append(1)

    with pytest.raises(OperationCancelled):
        asyncio.run(TimeoutPolicy(1.0).acall(work, parent=parent))
    assert calls == []


# --------------------------------------------------------------------------- policy: SimPy


def run_simpy(body: Callable[[simpy.Environment], Generator[Any, Any, Any]]) -> simpy.Environment:
    env = simpy.Environment()
    env.process(body(env))
    env.run()
    return env


def test_simpy_call_returns_the_value_in_simulated_time() -> None:
    seen: list[tuple[float, object]] = []

    def body(env: simpy.Environment) -> Generator[Any, Any, None]:
        def work(token: CancellationToken) -> Generator[Any, Any, str]:
            assert token.deadline == 5.0
            yield env.timeout(2.0)
            return "ok"

        value = yield from TimeoutPolicy(5.0).simpy_call(env, work)
        seen.append((env.now, value))

    run_simpy(body)
    assert seen == [(2.0, "ok")]


def test_simpy_timeout_interrupts_the_work_and_raises_at_the_deadline() -> None:
    seen: list[object] = []
    events: list[TimeoutEvent] = []
    policy = TimeoutPolicy(1.5)
    policy.listeners.add(events.append)

    def body(env: simpy.Environment) -> Generator[Any, Any, None]:
        def work(token: CancellationToken) -> Generator[Any, Any, str]:
            try:
                yield env.timeout(10.0)
            except simpy.Interrupt as interrupt:
                seen.append(("interrupted", env.now, type(interrupt.cause).__name__))
                raise
            return "never"

        try:
            yield from policy.simpy_call(env, work)
        except DeadlineExceededError as error:
            seen.append(("timed out", env.now, error.timeout))

    env = run_simpy(body)  # the interrupted work's failure does not crash the run
    assert seen == [("timed out", 1.5, 1.5), ("interrupted", 1.5, "OperationCancelled")]
    assert env.now == 10.0  # (SimPy cannot unschedule the abandoned timeout; it fires idle)
    assert events == [CallTimedOut(1.5, 1.5, 1.5)]


def test_simpy_work_that_ignores_the_interrupt_runs_on_without_crashing() -> None:
    done: list[float] = []

    def body(env: simpy.Environment) -> Generator[Any, Any, None]:
        def stubborn(token: CancellationToken) -> Generator[Any, Any, None]:
            try:
                yield env.timeout(10.0)
            except simpy.Interrupt:
                yield env.timeout(1.0)  # clean-up that takes time
            done.append(env.now)
            raise RuntimeError("fails later: nobody is waiting")

        with pytest.raises(DeadlineExceededError):
            yield from TimeoutPolicy(1.0).simpy_call(env, stubborn)

    run_simpy(body)
    assert done == [2.0]


def test_simpy_work_error_propagates() -> None:
    def body(env: simpy.Environment) -> Generator[Any, Any, None]:
        def failing(token: CancellationToken) -> Generator[Any, Any, None]:
            yield env.timeout(1.0)
            raise LookupError("no such row")

        with pytest.raises(LookupError, match="no such row"):
            yield from TimeoutPolicy(5.0).simpy_call(env, failing)

    run_simpy(body)


def test_simpy_parent_cancellation_stops_the_work() -> None:
    seen: list[object] = []

    def body(env: simpy.Environment) -> Generator[Any, Any, None]:
        parent = CancellationToken(clock=SimClock(env))

        def canceller() -> Generator[Any, Any, None]:
            yield env.timeout(0.7)
            parent.cancel("client disconnected")

        env.process(canceller())
        try:
            yield from TimeoutPolicy(math.inf).simpy_call(
                env, lambda token: (yield env.timeout(5.0)), parent=parent)
        except OperationCancelled as error:
            seen.append((env.now, error.reason))

    run_simpy(body)
    assert seen == [(0.7, "client disconnected")]


def test_simpy_parent_deadline_is_inherited() -> None:
    seen: list[object] = []

    def body(env: simpy.Environment) -> Generator[Any, Any, None]:
        parent = CancellationToken(timeout=2.0, clock=SimClock(env))
        try:
            yield from TimeoutPolicy(10.0).simpy_call(
                env, lambda token: (yield env.timeout(5.0)), parent=parent)
        except DeadlineExceededError as error:
            seen.append((env.now, error.timeout))

    run_simpy(body)
    assert seen == [(2.0, None)]


def test_simpy_call_refuses_a_parent_on_another_clock() -> None:
    env = simpy.Environment()
    parent = CancellationToken(timeout=2.0, clock=MONOTONIC)
    with pytest.raises(ValueError, match="parent"):  # when called, not once it runs
        TimeoutPolicy(1.0).simpy_call(env, lambda token: (yield env.timeout(1)), parent=parent)


def test_simpy_interrupting_the_caller_cancels_the_work() -> None:
    seen: list[object] = []
    env = simpy.Environment()

    def work(token: CancellationToken) -> Generator[Any, Any, None]:
        try:
            yield env.timeout(10.0)
        except simpy.Interrupt:
            seen.append(("work stopped", env.now))
            raise

    def caller() -> Generator[Any, Any, None]:
        try:
            yield from TimeoutPolicy(5.0).simpy_call(env, work)
        except simpy.Interrupt:
            seen.append(("caller interrupted", env.now))

    process = env.process(caller())

    def interrupter() -> Generator[Any, Any, None]:
        yield env.timeout(1.0)
        process.interrupt("go away")

    env.process(interrupter())
    env.run()
    assert seen == [("caller interrupted", 1.0), ("work stopped", 1.0)]


def test_simpy_work_that_cancels_its_own_token() -> None:
    def body(env: simpy.Environment) -> Generator[Any, Any, None]:
        def gives_up(token: CancellationToken) -> Generator[Any, Any, None]:
            yield env.timeout(1.0)
            token.cancel("not worth it")
            token.raise_if_cancelled()

        with pytest.raises(OperationCancelled, match="not worth it"):
            yield from TimeoutPolicy(5.0).simpy_call(env, gives_up)

    run_simpy(body)


def test_the_same_policy_runs_in_every_runtime() -> None:
    policy = TimeoutPolicy(0.5)
    assert policy.call(lambda token: "sync") == "sync"

    async def work(token: CancellationToken) -> str:
        return "async"

    assert asyncio.run(policy.acall(work)) == "async"
    results: list[str] = []

    def body(env: simpy.Environment) -> Generator[Any, Any, None]:
        def sim_work(token: CancellationToken) -> Generator[Any, Any, str]:
            yield env.timeout(0.1)
            return "simpy"

        results.append((yield from policy.simpy_call(env, sim_work)))

    run_simpy(body)
    assert results == ["simpy"]


# --------------------------------------------------------------------------- concurrency


def test_a_cancelled_parent_cancels_every_child_across_many_threads() -> None:
    root = CancellationToken()
    threads, per_thread = 8, 150
    created: list[list[CancellationToken]] = [[] for _ in range(threads)]
    counts: dict[int, int] = {}
    lock = threading.Lock()
    start = threading.Barrier(threads + 1)

    def count(key: int) -> Callable[[], None]:
        def callback() -> None:
            with lock:
                counts[key] = counts.get(key, 0) + 1

        return callback

    def worker(n: int) -> None:
        start.wait()
        for _ in range(per_thread):
            child = root.child()
            grandchild = child.child()
            for token in (child, grandchild):
                created[n].append(token)
                token.on_cancel(count(id(token)))

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    start.wait()
    time.sleep(0.001)  # let the workers get going, then cancel in the middle of it
    root.cancel("shutdown")
    for thread in pool:
        thread.join()
    tokens = [token for group in created for token in group]
    assert len(tokens) == threads * per_thread * 2
    assert all(token.is_cancelled for token in tokens)
    assert all(token.reason == "shutdown" for token in tokens)
    assert {id(token) for token in tokens} == set(counts)
    assert set(counts.values()) == {1}  # every callback ran exactly once
    assert root.linked_children == 0


def test_concurrent_cancels_agree_on_one_winner_and_one_reason() -> None:
    for _ in range(20):
        token = CancellationToken()
        ran: list[int] = []
        token.on_cancel(lambda ran=ran: ran.append(1))  # type: ignore[misc]
        results: list[tuple[int, bool]] = []
        start = threading.Barrier(8)

        def cancel(n: int, token: CancellationToken = token,
                   results: list[tuple[int, bool]] = results,
                   start: threading.Barrier = start) -> None:
            start.wait()
            results.append((n, token.cancel(n)))

        pool = [threading.Thread(target=cancel, args=(n,)) for n in range(8)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        winners = [n for n, won in results if won]
        assert len(winners) == 1
        assert token.reason == winners[0]
        assert ran == [1]


def test_registrations_racing_with_cancel_run_exactly_once_or_are_removed() -> None:
    token = CancellationToken()
    outcomes: list[tuple[list[int], bool | None]] = []
    lock = threading.Lock()
    start = threading.Barrier(5)

    def registrar(unregister: bool) -> None:
        start.wait()
        for _ in range(500):
            ran: list[int] = []
            registration = token.on_cancel(lambda ran=ran: ran.append(1))
            removed = registration.unregister() if unregister else None
            with lock:
                outcomes.append((ran, removed))

    pool = [threading.Thread(target=registrar, args=(n % 2 == 0,)) for n in range(4)]
    for thread in pool:
        thread.start()
    start.wait()
    token.cancel()
    for thread in pool:
        thread.join()
    for ran, removed in outcomes:
        if removed is None:
            assert ran == [1]
        else:
            assert len(ran) == (0 if removed else 1)


# --------------------------------------------------------------------------- properties


operations = st.lists(
    st.one_of(
        st.tuples(st.just("child"), st.integers(0, 30)),
        st.tuples(st.just("cancel"), st.integers(0, 30)),
        st.tuples(st.just("dispose"), st.integers(0, 30)),
        st.tuples(st.just("register"), st.integers(0, 30)),
    ),
    max_size=60,
)


@given(operations)
def test_the_tree_behaves_like_a_simple_model(steps: list[tuple[str, int]]) -> None:
    """Against a model: cancellation reaches exactly the linked descendants, never an
    ancestor; every callback runs once iff its token is cancelled."""
    tokens = [CancellationToken()]
    parent_of: list[int | None] = [None]
    cancelled = [False]
    runs: list[list[int]] = []
    owner: list[int] = []

    def linked_descendants(index: int) -> list[int]:
        found, frontier = [], [index]
        while frontier:
            current = frontier.pop()
            for child, parent in enumerate(parent_of):
                if parent == current:
                    found.append(child)
                    frontier.append(child)
        return found

    for action, pick in steps:
        index = pick % len(tokens)
        if action == "child":
            tokens.append(tokens[index].child())
            parent_of.append(None if cancelled[index] else index)
            cancelled.append(cancelled[index])
        elif action == "cancel":
            tokens[index].cancel()
            if not cancelled[index]:
                for affected in [index, *linked_descendants(index)]:
                    cancelled[affected] = True
                for affected in [index, *linked_descendants(index)]:
                    parent_of[affected] = None  # a cancelled token is unlinked
                # (ancestors are untouched)
        elif action == "dispose":
            tokens[index].dispose()
            parent_of[index] = None
        else:
            ran: list[int] = []
            tokens[index].on_cancel(lambda ran=ran: ran.append(1))
            runs.append(ran)
            owner.append(index)
        assert [t.is_cancelled for t in tokens] == cancelled
    for ran, index in zip(runs, owner, strict=True):
        assert len(ran) == (1 if cancelled[index] else 0)
    for index, token in enumerate(tokens):
        expected = sum(1 for parent in parent_of if parent == index)
        assert token.linked_children == expected


@given(st.floats(0, 1e6), st.floats(0, 1e3), st.floats(0, 2e3))
def test_deadline_holds_exactly_from_now_plus_timeout(
    start: float, timeout: float, later: float
) -> None:
    clock = ManualClock(start)
    token = CancellationToken(timeout=timeout, clock=clock)
    clock.advance(later)
    assert token.is_cancelled == (clock.now() >= start + timeout)
    assert token.remaining() == max(0.0, start + timeout - clock.now())


# --------------------------------------------------------------------------- issue 11: time


def _cancel_soon(token: CancellationToken, after: float = 0.05) -> threading.Timer:
    timer = threading.Timer(after, token.cancel)
    timer.daemon = True
    timer.start()
    return timer


@pytest.mark.parametrize("huge", [1e10, 1.7e308, math.inf])
def test_wait_with_a_huge_timeout_does_not_overflow(huge: float) -> None:
    # Event.wait(1e10) raises OverflowError (above threading.TIMEOUT_MAX): the wait is
    # now taken in bounded steps, and inf means "until cancelled".
    token = CancellationToken()
    _cancel_soon(token).join(2.0)
    assert token.wait(huge)
    other = CancellationToken()
    _cancel_soon(other)
    assert other.wait(huge)


@pytest.mark.parametrize("huge", [1e10, 1.7e308])
def test_wait_on_a_token_with_a_huge_deadline_does_not_overflow(huge: float) -> None:
    token = CancellationToken(timeout=huge)
    _cancel_soon(token)
    assert token.wait()
    assert token.reason == CANCELLED


@pytest.mark.parametrize("huge", [1e10, 1.7e308, math.inf])
def test_wait_async_with_a_huge_timeout(huge: float) -> None:
    async def main() -> bool:
        token = CancellationToken(timeout=huge)
        asyncio.get_running_loop().call_later(0.02, token.cancel)
        return await asyncio.wait_for(token.wait_async(huge), 2.0)

    assert asyncio.run(main())


@pytest.mark.parametrize("huge", [1e10, 1.7e308])
def test_a_policy_with_a_huge_timeout_in_an_executor_does_not_overflow(huge: float) -> None:
    with ThreadPoolExecutor(1) as pool:
        # The operation takes a moment, so that the caller really waits for it.
        assert TimeoutPolicy(huge).call(lambda token: time.sleep(0.05) or 42,
                                        executor=pool) == 42
        assert with_timeout(lambda token: time.sleep(0.05) or 43, huge, executor=pool) == 43


def test_a_deadline_beyond_the_largest_float_means_none() -> None:
    # now + timeout overflowing to inf used to give an infinite deadline that the timer
    # thread refused (ValueError at arm time); it is "no deadline", as timeout=inf is.
    clock = ManualClock(1e308)
    token = CancellationToken(timeout=1.7e308, clock=clock)
    assert token.deadline is None
    assert token.child(timeout=1.7e308).deadline is None
    assert TimeoutPolicy(1.7e308, clock=clock).call(lambda t: t.deadline) is None


def test_a_cancel_callback_raising_a_base_exception_does_not_skip_the_others() -> None:
    token = CancellationToken()
    child = token.child()
    ran: list[str] = []

    def stop() -> None:
        ran.append("stop")
        raise OperationCancelled("from a callback")

    token.on_cancel(stop)
    child.on_cancel(lambda: ran.append("child"))
    token.on_cancel(lambda: ran.append("after"))
    assert token.cancel()  # the callback's OperationCancelled is logged, not raised
    assert sorted(ran) == ["after", "child", "stop"]


def test_a_keyboard_interrupt_in_a_callback_still_runs_the_others_then_propagates() -> None:
    token = CancellationToken()
    ran: list[str] = []

    def interrupt() -> None:
        raise KeyboardInterrupt

    token.on_cancel(interrupt)
    token.on_cancel(lambda: ran.append("after"))
    with pytest.raises(KeyboardInterrupt):
        token.cancel()
    assert ran == ["after"]
    assert token.is_cancelled


# ----------------------------------------------------------------- sync drivers and coroutines


async def _async_op(token: CancellationToken) -> int:
    return 1


class _AsyncCallable:
    async def __call__(self, token: CancellationToken) -> int:
        return 2


def test_call_refuses_a_coroutine_function_before_anything_happens() -> None:
    # Refused up front: not "cancelled" because the parent is, not run then closed.
    parent = CancellationToken()
    parent.cancel()
    policy, events = policy_on(ManualClock())
    for fn in (_async_op, _AsyncCallable()):
        with pytest.raises(TypeError, match=r"coroutine function.*acall"):
            policy.call(fn, parent=parent)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"coroutine function.*acall"):
            with_timeout(fn, 1.0, parent=parent)  # type: ignore[arg-type]
    assert events == []


def test_call_in_an_executor_refuses_a_coroutine_result() -> None:
    # The executor path returned the un-awaited coroutine as the result.
    def returns_a_coroutine(token: CancellationToken) -> Any:
        return _async_op(token)

    policy, events = policy_on(ManualClock())
    with ThreadPoolExecutor(1) as pool, _no_warning():
        with pytest.raises(TypeError, match="coroutine"):
            policy.call(returns_a_coroutine, executor=pool)
        with pytest.raises(TypeError, match="coroutine function"):
            policy.call(_async_op, executor=pool)  # type: ignore[arg-type]
    assert events == []


@pytest.mark.parametrize("in_executor", [False, True])
def test_call_refuses_an_awaitable_result(in_executor: bool) -> None:
    # A future (or any object with __await__) is not a result a blocking call can use.
    loop = asyncio.new_event_loop()
    try:
        future = loop.create_future()
        with ThreadPoolExecutor(1) as pool, pytest.raises(TypeError, match="awaitable"):
            TimeoutPolicy(1.0).call(lambda token: future,
                                    executor=pool if in_executor else None)
    finally:
        loop.close()


def test_a_sync_callable_returning_a_coroutine_is_closed_without_a_warning() -> None:
    def returns_a_coroutine(token: CancellationToken) -> Any:
        return _async_op(token)

    with _no_warning(), pytest.raises(TypeError, match="coroutine"):
        TimeoutPolicy(1.0).call(returns_a_coroutine)


class _no_warning:  # noqa: N801 - a context manager used like a function
    """Fail if a "coroutine was never awaited" RuntimeWarning is emitted inside."""

    def __enter__(self) -> None:
        import gc
        import warnings

        gc.collect()
        self._catcher = warnings.catch_warnings(record=True)
        self._records = self._catcher.__enter__()
        warnings.simplefilter("always")

    def __exit__(self, *exc: object) -> None:
        import gc

        gc.collect()
        self._catcher.__exit__(*exc)
        never_awaited = [r for r in self._records if "never awaited" in str(r.message)]
        assert never_awaited == []


def test_simpy_call_checks_its_arguments_when_called() -> None:
    # A generator function checked its arguments only once the process ran.
    env = simpy.Environment()
    policy = TimeoutPolicy(1.0)
    with pytest.raises(TypeError, match="fn"):
        policy.simpy_call(env, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="parent"):
        policy.simpy_call(env, lambda token: iter(()), parent="p")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="env"):
        policy.simpy_call("env", lambda token: iter(()))  # type: ignore[arg-type]
