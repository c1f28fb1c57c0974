"""Tests for :mod:`patterns.resilience.breaker` (guide section 4.2)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import math
import threading
import time
from typing import Any

import pytest
import simpy
from hypothesis import given
from hypothesis import strategies as st

from patterns.clock import ManualClock
from patterns.resilience.backoff import ExponentialBackoff
from patterns.resilience.breaker import (
    CallNotPermitted,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    StateTransition,
)


class BoomError(Exception):
    pass


def ok() -> str:
    return "ok"


def boom() -> str:
    raise BoomError("down")


def feed(breaker: CircuitBreaker, outcomes: str) -> None:
    """Run calls: 's' succeeds, 'f' fails (rejections propagate)."""
    for outcome in outcomes:
        if outcome == "s":
            breaker.call(ok)
        else:
            with pytest.raises(BoomError):
                breaker.call(boom)


def make(clock: ManualClock | None = None, **options: object) -> CircuitBreaker:
    defaults: dict[str, object] = {"window_size": 10, "minimum_calls": 4,
                                   "failure_rate_threshold": 0.5, "wait_in_open": 5.0,
                                   "half_open_calls": 2}
    defaults.update(options)
    return CircuitBreaker("test", clock=clock or ManualClock(), **defaults)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- closed -> open


def test_opens_when_the_failure_rate_reaches_the_threshold() -> None:
    breaker = make()
    feed(breaker, "sfs")  # 3 calls: below minimum_calls, no judgement
    assert breaker.state is CircuitState.CLOSED
    feed(breaker, "f")  # 2 of 4 failed: 50 % >= 50 %
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError, match=r"'test' is open; retry after 5 s"):
        breaker.call(ok)


def test_a_success_while_the_window_fills_can_complete_the_judgement() -> None:
    breaker = make(minimum_calls=4, failure_rate_threshold=0.5)
    feed(breaker, "ffs")
    assert breaker.state is CircuitState.CLOSED
    feed(breaker, "s")  # 2 of 4 failed
    assert breaker.state is CircuitState.OPEN


def test_alternating_failures_trip_a_rate_window_but_not_a_consecutive_counter() -> None:
    # The guide's counter resets on every success: at 50 % it never reaches 5 in a row.
    breaker = make(window_size=20, minimum_calls=10)
    feed(breaker, "sf" * 4)
    assert breaker.state is CircuitState.CLOSED
    feed(breaker, "sf")
    assert breaker.state is CircuitState.OPEN


def test_below_the_threshold_it_stays_closed() -> None:
    breaker = make(window_size=10, minimum_calls=10, failure_rate_threshold=0.5)
    feed(breaker, "sssfsssfssssfsss")
    assert breaker.state is CircuitState.CLOSED
    assert breaker.metrics().failures == 2  # window holds the last 10


def test_count_window_forgets_old_calls() -> None:
    breaker = make(window_size=4, minimum_calls=4, failure_rate_threshold=0.75)
    feed(breaker, "ffss")  # 50 %
    feed(breaker, "ss")  # the two failures left the window
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failures) == (4, 0)


def test_time_window_forgets_calls_older_than_its_length() -> None:
    clock = ManualClock()
    breaker = make(clock, window_type="time", window_size=10.0, window_buckets=10,
                   minimum_calls=3, failure_rate_threshold=0.6)
    feed(breaker, "ff")
    clock.advance(10.5)
    feed(breaker, "sf")
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failures) == (2, 1)
    assert breaker.state is CircuitState.CLOSED


def test_slow_calls_trip_the_breaker() -> None:
    clock = ManualClock()
    breaker = make(clock, slow_call_duration=1.0, slow_call_rate_threshold=0.5)

    def slow() -> str:
        clock.advance(2.0)
        return "late"

    for _ in range(2):
        breaker.call(ok)
        breaker.call(slow)
    assert breaker.state is CircuitState.OPEN
    assert breaker.metrics().state is CircuitState.OPEN


def test_which_exceptions_count() -> None:
    breaker = make(record_exceptions=(BoomError,), ignore_exceptions=(KeyError,),
                   minimum_calls=2)
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError: counted as success
        breaker.call(lambda: int("x"))
    with pytest.raises(KeyError):
        breaker.call(lambda: {}["missing"])
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failures) == (1, 0)


def test_bad_results_count_as_failures() -> None:
    breaker = make(record_result=lambda status: status >= 500, minimum_calls=2)
    assert breaker.call(lambda: 503) == 503
    assert breaker.call(lambda: 200) == 200
    assert breaker.state is CircuitState.OPEN  # 1 of 2


def test_keyboard_interrupt_is_ignored_and_propagates() -> None:
    breaker = make(minimum_calls=1)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        breaker.call(interrupted)
    assert breaker.metrics().calls == 0


# --------------------------------------------------------------------------- open -> half-open


def test_waits_in_open_then_lets_trial_calls_through() -> None:
    clock = ManualClock()
    breaker = make(clock)
    feed(breaker, "ffff")
    clock.advance(4.9)
    assert breaker.retry_after() == pytest.approx(0.1)
    with pytest.raises(CircuitOpenError):
        breaker.call(ok)
    clock.advance(0.1)
    assert breaker.state is CircuitState.HALF_OPEN
    feed(breaker, "ss")
    assert breaker.state is CircuitState.CLOSED


def test_a_failed_trial_reopens_for_another_wait() -> None:
    clock = ManualClock()
    breaker = make(clock, half_open_calls=2, failure_rate_threshold=0.5)
    feed(breaker, "ffff")
    clock.advance(5.0)
    feed(breaker, "f")  # 1 of 2 trials failed: 50 % -> open again at once
    assert breaker.state is CircuitState.OPEN
    assert breaker.retry_after() == pytest.approx(5.0)


def test_half_open_permits_at_most_the_configured_trials() -> None:
    clock = ManualClock()
    breaker = make(clock, half_open_calls=2)
    feed(breaker, "ffff")
    clock.advance(5.0)
    first, second = breaker.try_acquire(), breaker.try_acquire()
    assert first is not None
    assert second is not None
    assert breaker.try_acquire() is None  # both trials still in flight
    first.succeeded()
    assert breaker.try_acquire() is None  # a finished trial does not free a slot
    second.succeeded()
    assert breaker.state is CircuitState.CLOSED


def test_an_ignored_trial_gives_its_slot_back() -> None:
    clock = ManualClock()
    breaker = make(clock, half_open_calls=1)
    feed(breaker, "ffff")
    clock.advance(5.0)
    permit = breaker.try_acquire()
    assert permit is not None
    permit.ignored()
    assert breaker.try_acquire() is not None


def test_late_failures_from_an_earlier_period_do_not_extend_the_open_time() -> None:
    clock = ManualClock()
    breaker = make(clock)
    late = [breaker.try_acquire() for _ in range(3)]  # let through while closed
    feed(breaker, "ffff")  # opens at t = 0
    clock.advance(4.0)
    for permit in late:
        assert permit is not None
        permit.failed(BoomError("late"))
    assert breaker.retry_after() == pytest.approx(1.0)
    clock.advance(1.0)
    assert breaker.state is CircuitState.HALF_OPEN


def test_growing_wait_on_repeated_trips_resets_after_a_close() -> None:
    clock = ManualClock()
    breaker = make(clock, wait_in_open=ExponentialBackoff(1.0, cap=8.0), half_open_calls=1)
    feed(breaker, "ffff")
    waits = [breaker.retry_after()]
    for _ in range(3):
        clock.advance(waits[-1])
        feed(breaker, "f")  # the trial fails
        waits.append(breaker.retry_after())
    assert waits == [1.0, 2.0, 4.0, 8.0]
    clock.advance(8.0)
    feed(breaker, "s")
    assert breaker.state is CircuitState.CLOSED
    feed(breaker, "ffff")
    assert breaker.retry_after() == 1.0


# --------------------------------------------------------------------------- operators, events


def test_forced_open_and_disabled() -> None:
    breaker = make()
    breaker.force_open()
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(ok)
    assert math.isinf(info.value.retry_after)
    breaker.disable()
    feed(breaker, "ffffffff")
    assert breaker.state is CircuitState.DISABLED
    breaker.reset()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.metrics().calls == 0


def test_events_tell_the_story() -> None:
    clock = ManualClock()
    breaker = make(clock, half_open_calls=1)
    events: list[object] = []
    breaker.listeners.add(events.append)
    feed(breaker, "ffff")
    with pytest.raises(CircuitOpenError):
        breaker.call(ok)
    clock.advance(5.0)
    feed(breaker, "s")
    transitions = [(e.from_state, e.to_state) for e in events if isinstance(e, StateTransition)]
    assert transitions == [(CircuitState.CLOSED, CircuitState.OPEN),
                           (CircuitState.OPEN, CircuitState.HALF_OPEN),
                           (CircuitState.HALF_OPEN, CircuitState.CLOSED)]
    assert sum(isinstance(e, CallNotPermitted) for e in events) == 1
    assert "failure rate 100% >= 50%" in next(
        e.reason for e in events if isinstance(e, StateTransition))


def test_a_listener_may_read_the_breaker() -> None:
    clock = ManualClock()
    breaker = make(clock)
    seen: list[CircuitState] = []
    breaker.listeners.add(lambda event: seen.append(breaker.state))
    feed(breaker, "ffff")
    clock.advance(5.0)
    assert breaker.state is CircuitState.HALF_OPEN  # emitted outside the lock: no deadlock
    assert seen


# --------------------------------------------------------------------------- drivers


def test_async_driver_and_decorator() -> None:
    breaker = make(minimum_calls=2)

    @breaker
    async def fetch(fail: bool) -> str:
        if fail:
            raise BoomError("x")
        return "ok"

    async def main() -> None:
        assert await fetch(False) == "ok"
        with pytest.raises(BoomError):
            await fetch(True)
        with pytest.raises(CircuitOpenError):
            await fetch(False)

    asyncio.run(main())
    assert fetch.__name__ == "fetch"


def test_cancelled_task_is_ignored() -> None:
    breaker = make(minimum_calls=1)

    async def main() -> None:
        task = asyncio.create_task(breaker.acall(asyncio.sleep, 10))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert breaker.metrics().calls == 0


def test_simpy_driver_in_simulated_time() -> None:
    env = simpy.Environment()

    class EnvClock:
        def now(self) -> float:
            return float(env.now)

    breaker = CircuitBreaker("sim", clock=EnvClock(), minimum_calls=2, window_size=2,
                             wait_in_open=3.0, half_open_calls=1)
    outcomes: list[tuple[float, str]] = []

    def attempt(fail: bool):  # type: ignore[no-untyped-def]
        yield env.timeout(0.5)
        if fail:
            raise BoomError("x")
        return "ok"

    def client():  # type: ignore[no-untyped-def]
        for fail in (True, True, False, False):
            try:
                yield from breaker.simpy_call(env, lambda fail=fail: attempt(fail))
                outcomes.append((env.now, "ok"))
            except BoomError:
                outcomes.append((env.now, "failed"))
            except CircuitOpenError:
                outcomes.append((env.now, "rejected"))
                yield env.timeout(3.0)

    env.process(client())
    env.run()
    assert outcomes == [(0.5, "failed"), (1.0, "failed"), (1.0, "rejected"), (4.5, "ok")]


# --------------------------------------------------------------------------- concurrency


def test_half_open_never_has_more_trials_in_flight_than_configured() -> None:
    clock = ManualClock()
    breaker = make(clock, half_open_calls=3)
    feed(breaker, "ffff")
    clock.advance(5.0)
    in_flight = peak = admitted = 0
    lock = threading.Lock()
    start = threading.Barrier(16)

    def trial() -> str:
        nonlocal in_flight, peak, admitted
        with lock:
            in_flight += 1
            admitted += 1
            peak = max(peak, in_flight)
        time.sleep(0.02)
        with lock:
            in_flight -= 1
        return "ok"

    def worker() -> None:
        start.wait()
        for _ in range(20):
            with contextlib.suppress(CircuitOpenError):
                breaker.call(trial)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak <= 3
    assert breaker.state is CircuitState.CLOSED  # three successes closed it
    assert admitted >= 3


def test_many_threads_keep_the_window_consistent() -> None:
    breaker = CircuitBreaker("threads", window_size=1000, minimum_calls=1000,
                             failure_rate_threshold=1.0, clock=ManualClock())

    def worker(fail: bool) -> None:
        for _ in range(500):
            with contextlib.suppress(BoomError):
                breaker.call(boom if fail else ok)

    threads = [threading.Thread(target=worker, args=(i % 2 == 0,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    metrics = breaker.metrics()
    assert metrics.calls == 1000
    assert 0 < metrics.failures < 1000


# --------------------------------------------------------------------------- properties


LEGAL = {
    (CircuitState.CLOSED, CircuitState.OPEN),
    (CircuitState.OPEN, CircuitState.HALF_OPEN),
    (CircuitState.HALF_OPEN, CircuitState.OPEN),
    (CircuitState.HALF_OPEN, CircuitState.CLOSED),
}


@given(st.lists(st.tuples(st.sampled_from("sfw"), st.floats(0, 3)), max_size=80))
def test_state_sequence_is_always_a_legal_path(steps: list[tuple[str, float]]) -> None:
    clock = ManualClock()
    breaker = make(clock, window_size=5, minimum_calls=3, half_open_calls=2, wait_in_open=2.0)
    transitions: list[StateTransition] = []
    breaker.listeners.add(
        lambda e: transitions.append(e) if isinstance(e, StateTransition) else None)
    for action, wait in steps:
        if action == "w":
            clock.advance(wait)
            continue
        with contextlib.suppress(BoomError, CircuitOpenError):
            breaker.call(ok if action == "s" else boom)
    previous = CircuitState.CLOSED
    for event in transitions:
        assert event.from_state is previous
        assert (event.from_state, event.to_state) in LEGAL
        previous = event.to_state
    assert breaker.state is previous or (previous is CircuitState.OPEN
                                         and breaker.state is CircuitState.HALF_OPEN)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("options", "message"), [
    ({"failure_rate_threshold": 0}, r"failure_rate_threshold must be within \(0, 1\], got 0"),
    ({"failure_rate_threshold": 1.5}, r"failure_rate_threshold must be within .* got 1.5"),
    ({"window_size": 0}, "window_size must be >= 1, got 0"),
    ({"window_type": "sliding"}, "window_type must be 'count' or 'time', got 'sliding'"),
    ({"window_type": "time", "window_size": -1.0}, "window_size must be > 0, got -1.0"),
    ({"minimum_calls": 0}, "minimum_calls must be >= 1, got 0"),
    ({"wait_in_open": -1.0}, "wait_in_open must be >= 0, got -1.0"),
    ({"half_open_calls": 0}, "half_open_calls must be >= 1, got 0"),
    ({"slow_call_duration": 0}, "slow_call_duration must be > 0, got 0"),
    ({"name": ""}, "name must be a non-empty string, got ''"),
])
def test_bad_parameters_are_named(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CircuitBreaker(**options)  # type: ignore[arg-type]


def test_record_exceptions_must_be_exception_types() -> None:
    with pytest.raises(TypeError, match="record_exceptions must be exception types"):
        CircuitBreaker(record_exceptions=str)  # type: ignore[arg-type]


def test_outcomes_from_before_a_reset_are_not_counted() -> None:
    breaker = make(minimum_calls=1)
    stale = breaker.try_acquire()
    breaker.reset()
    assert stale is not None
    stale.failed(BoomError("from before the reset"))
    assert breaker.metrics().calls == 0
    assert breaker.state is CircuitState.CLOSED


# --------------------------------------------------------------------------- issue 11


class CountingLock:
    """A lock that counts how often it is taken."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.taken = 0

    def __enter__(self) -> bool:
        self.taken += 1
        return self._lock.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__(*exc)  # type: ignore[arg-type]


CONFIGURATIONS = {
    "count": {},
    "time": {"window_type": "time", "window_size": 60.0, "window_buckets": 60},
    "slow calls": {"slow_call_duration": 10.0, "slow_call_rate_threshold": 0.5},
    "slow calls, time": {"window_type": "time", "window_size": 60.0,
                         "slow_call_duration": 10.0, "slow_call_rate_threshold": 0.5},
}


@pytest.mark.parametrize("listener", [False, True])
@pytest.mark.parametrize("driver", ["call", "acall"])
@pytest.mark.parametrize("configuration", list(CONFIGURATIONS))
def test_a_success_in_the_closed_state_takes_no_lock_in_any_configuration(
        configuration: str, driver: str, listener: bool) -> None:
    # The breaker used to recount its window under the lock on every success (O(window)
    # for a count window with a slow-call threshold): 3-35 us per call.
    clock = ManualClock()
    options: dict[str, object] = {"window_size": 100, "minimum_calls": 10}
    options.update(CONFIGURATIONS[configuration])
    breaker = make(clock, **options)
    events: list[object] = []
    if listener:
        breaker.listeners.add(events.append)
    breaker.call(ok)  # the first success may start a bucket
    lock = CountingLock()
    breaker._lock = lock  # type: ignore[assignment]

    async def aok() -> str:
        return "ok"

    async def run_async() -> None:
        for _ in range(500):
            await breaker.acall(aok)

    if driver == "call":
        for _ in range(500):
            breaker.call(ok)
    else:
        asyncio.run(run_async())
    assert lock.taken <= 1  # at most the first judgement, when the window holds 10 calls
    assert breaker.metrics().calls == (100 if configuration in ("count", "slow calls")
                                       else 501)
    assert len(events) == (501 if listener else 0)


@pytest.mark.parametrize("configuration", list(CONFIGURATIONS))
def test_running_counts_match_a_recount(configuration: str) -> None:
    # Running counts must say what recounting the window would: random outcomes, slow
    # calls and time passing, checked against a model after every call.
    import random

    rng = random.Random(11)
    clock = ManualClock()
    options: dict[str, object] = {"window_size": 20, "minimum_calls": 10**6}
    options.update(CONFIGURATIONS[configuration])
    if options.get("window_type", "count") == "count":
        # A count window refuses minimum_calls > window_size; thresholds of 1.0 keep it
        # closed instead (20 failures or slow calls in a row never come with this seed).
        options.update(minimum_calls=20, failure_rate_threshold=1.0,
                       slow_call_rate_threshold=1.0)
    breaker = make(clock, **options)
    history: list[tuple[float, bool, bool]] = []
    for _ in range(600):
        failed, slow = rng.random() < 0.3, rng.random() < 0.2
        start = clock.now()

        def work(failed: bool = failed, slow: bool = slow) -> str:
            clock.advance(11.0 if slow else rng.random() * 0.5)
            if failed:
                raise BoomError
            return "ok"

        with contextlib.suppress(BoomError):
            breaker.call(work)
        history.append((clock.now(), failed, slow and breaker._timed))
        del start
        if breaker.window_type == "count":
            window = history[-20:]
        else:
            width = 60.0 / 60 if "window_buckets" in CONFIGURATIONS[configuration] else 6.0
            current = math.floor(clock.now() / width)
            window = [h for h in history if math.floor(h[0] / width) > current - (
                60 if "window_buckets" in CONFIGURATIONS[configuration] else 10)]
        metrics = breaker.metrics()
        assert (metrics.calls, metrics.failures, metrics.slow_calls) == (
            len(window), sum(f for _, f, _ in window), sum(s for _, _, s in window))


def test_a_huge_time_window_with_many_buckets_allocates_nothing_up_front() -> None:
    # A 1e9 s window in 1 s buckets used to allocate 1e9 buckets.
    import tracemalloc

    tracemalloc.start()
    try:
        breaker = make(window_type="time", window_size=1e9, window_buckets=10**9)
        feed(breaker, "sfsf")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    assert breaker.metrics().calls == 4


def test_buckets_too_narrow_for_the_clock_are_refused() -> None:
    # window / buckets = 1e-300 s used to overflow (math.floor(inf)) deep inside.
    with pytest.raises(ValueError, match=r"window_size / window_buckets.*window"):
        make(window_type="time", window_size=1e-300, window_buckets=1)


def test_call_refuses_a_coroutine_function_and_counts_nothing() -> None:
    # breaker.call(async_fn) used to return an un-awaited coroutine and count a success.
    clock = ManualClock()
    breaker = make(clock, half_open_calls=1)

    async def fetch() -> str:
        raise BoomError

    for fn in (fetch, functools.partial(fetch)):  # closed: the fast path
        with pytest.raises(TypeError, match=r"CircuitBreaker.call.*coroutine function.*acall"):
            breaker.call(fn)  # type: ignore[arg-type]
    assert breaker.metrics().calls == 0
    feed(breaker, "ffff")
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(TypeError, match=r"CircuitBreaker.call.*coroutine function"):
        breaker.call(functools.partial(fetch))  # type: ignore[arg-type]
    clock.advance(5.0)
    assert breaker.state is CircuitState.HALF_OPEN
    with pytest.raises(TypeError, match=r"CircuitBreaker.call.*coroutine function"):
        breaker.call(functools.partial(fetch))  # type: ignore[arg-type]
    assert breaker.call(ok) == "ok"  # the one trial slot was not taken by the refusal
    assert breaker.state is CircuitState.CLOSED


@pytest.mark.parametrize("window", [{}, {"window_type": "time"}, {"slow_call_duration": 1.0}])
def test_a_non_callable_is_a_misuse_not_an_outage(window: dict[str, object]) -> None:
    # In the closed state, call(None) and acall(42) raised "object is not callable"
    # from inside the call: counted as failures of the dependency, they opened the breaker.
    breaker = make(minimum_calls=2, **window)
    for _ in range(3):
        with pytest.raises(TypeError, match=r"CircuitBreaker.call: fn must be callable"):
            breaker.call(None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"CircuitBreaker.acall: fn must be callable"):
            asyncio.run(breaker.acall(42))  # type: ignore[arg-type]
    assert breaker.state is CircuitState.CLOSED
    assert breaker.metrics().calls == 0


@pytest.mark.filterwarnings("error")  # no "coroutine was never awaited"
def test_call_refuses_an_awaitable_result_closes_it_and_counts_nothing() -> None:
    breaker = make(minimum_calls=1, window_size=1)
    events: list[object] = []
    breaker.listeners.add(events.append)

    async def fetch() -> str:
        return "x"

    with pytest.raises(TypeError, match=r"CircuitBreaker.call got a coroutine"):
        breaker.call(lambda: fetch())
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError, match=r"awaitable \(Future\)"):
            breaker.call(loop.create_future)
    finally:
        loop.close()
    assert breaker.metrics().calls == 0
    assert [type(e).__name__ for e in events] == ["CallIgnored", "CallIgnored"]


def test_half_open_trial_slot_comes_back_after_a_refused_awaitable() -> None:
    clock = ManualClock()
    breaker = make(clock, half_open_calls=1)
    feed(breaker, "ffff")
    clock.advance(5.0)

    async def fetch() -> str:
        return "x"

    with pytest.raises(TypeError):
        breaker.call(lambda: fetch())
    assert breaker.call(ok) == "ok"  # the trial slot was given back
    assert breaker.state is CircuitState.CLOSED


def test_acall_refuses_a_plain_function_without_counting_a_failure() -> None:
    # It used to count the TypeError of `await 1` as a failure of the dependency.
    breaker = make(minimum_calls=1, window_size=1)
    with pytest.raises(TypeError, match=r"CircuitBreaker.acall.*not awaitable.*call"):
        asyncio.run(breaker.acall(lambda: 1))  # type: ignore[arg-type, return-value]
    assert breaker.state is CircuitState.CLOSED
    assert breaker.metrics().calls == 0


class AsyncCallable:
    async def __call__(self, x: int) -> int:
        return x


@pytest.mark.parametrize("make_fn", [
    lambda: AsyncCallable(),
    lambda: functools.partial(AsyncCallable(), 1),
    lambda: functools.partial(asyncio.sleep, 0),
])
def test_the_decorator_keeps_every_async_callable_async(make_fn: Any) -> None:
    # A callable object with an async __call__, or a partial of an async function, used
    # to get the blocking wrapper: the breaker counted un-awaited coroutines as successes.
    breaker = make(minimum_calls=1, window_size=1)
    decorated = breaker(make_fn())
    assert inspect.iscoroutinefunction(decorated)


def test_breaker_over_an_async_decorated_function_can_open() -> None:
    breaker = make(minimum_calls=2, window_size=2)

    def passthrough(fn: Any) -> Any:  # a third-party decorator that keeps async
        @functools.wraps(fn)
        async def wrapper() -> Any:
            return await fn()

        return wrapper

    @breaker
    @passthrough
    async def fetch() -> None:
        raise BoomError

    for _ in range(2):
        with pytest.raises(BoomError):
            asyncio.run(fetch())
    assert breaker.state is CircuitState.OPEN


def test_breaker_over_rate_limited_async_can_open() -> None:
    # The case: the breaker took the sync path and counted coroutines as successes.
    from patterns.resilience.ratelimit import TokenBucket, rate_limited

    breaker = make(minimum_calls=2, window_size=2)

    @breaker
    @rate_limited(TokenBucket(rate=1000.0, capacity=10))
    async def fetch() -> None:
        raise BoomError

    assert inspect.iscoroutinefunction(fetch)
    for _ in range(2):
        with pytest.raises(BoomError):
            asyncio.run(fetch())
    assert breaker.state is CircuitState.OPEN


# A count window smaller than minimum_calls could never judge, so the breaker never
# opened (issue 11): CircuitBreaker(window_size=5) kept the default minimum_calls=10.
def test_a_small_count_window_lowers_the_default_minimum_and_opens() -> None:
    breaker = CircuitBreaker(window_size=5, clock=ManualClock())
    assert breaker.minimum_calls == 5
    for _ in range(5):
        with pytest.raises(ZeroDivisionError):
            breaker.call(lambda: 1 / 0)
    assert breaker.state is CircuitState.OPEN


def test_an_explicit_minimum_larger_than_the_count_window_is_refused() -> None:
    with pytest.raises(ValueError, match=r"minimum_calls must be <= window_size \(5\).*got 6"):
        CircuitBreaker(window_size=5, minimum_calls=6)


def test_a_time_window_keeps_any_minimum() -> None:
    breaker = CircuitBreaker(window_type="time", window_size=1.0, minimum_calls=500)
    assert breaker.minimum_calls == 500
