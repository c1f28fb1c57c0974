"""The shared timer thread behind the blocking deadline drivers."""

from __future__ import annotations

import threading
import time

import pytest

from patterns._timers import TimerThread, shared_timer_thread
from patterns.resilience.timeout import CancellationToken, DeadlineTimer, TimeoutPolicy


def test_callbacks_run_in_due_order_not_in_scheduling_order() -> None:
    timers = TimerThread()
    ran: list[str] = []
    done = threading.Event()
    timers.schedule(0.06, lambda: (ran.append("late"), done.set()))
    timers.schedule(0.02, lambda: ran.append("early"))
    timers.schedule(0.04, lambda: ran.append("middle"))
    assert done.wait(2)
    assert ran == ["early", "middle", "late"]


def test_a_callback_does_not_run_before_it_is_due() -> None:
    timers = TimerThread()
    fired = threading.Event()
    started = time.monotonic()
    timers.schedule(0.05, fired.set)
    assert fired.wait(2)
    assert time.monotonic() - started >= 0.05


def test_cancelled_callbacks_never_run_and_are_not_pending() -> None:
    timers = TimerThread()
    ran: list[int] = []
    handles = [timers.schedule(0.05, lambda i=i: ran.append(i)) for i in range(200)]
    for handle in handles[::2]:
        handle.cancel()
        handle.cancel()  # idempotent
    assert timers.pending == 100
    done = threading.Event()
    timers.schedule(0.1, done.set)
    assert done.wait(2)
    assert sorted(ran) == list(range(1, 200, 2))
    assert timers.pending == 0
    handles[1].cancel()  # after it ran: nothing happens
    assert timers.pending == 0


def test_many_cancelled_timers_are_compacted_away() -> None:
    timers = TimerThread()
    handles = [timers.schedule(60.0, lambda: None) for _ in range(1000)]
    for handle in handles[:900]:
        handle.cancel()
    assert timers.pending == 100
    assert len(timers._heap) < 500  # not a heap of 1,000 dead entries


def test_a_failing_callback_is_logged_and_the_thread_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    timers = TimerThread()
    after = threading.Event()

    def boom() -> None:
        raise RuntimeError("boom")

    timers.schedule(0.0, boom)
    timers.schedule(0.02, after.set)
    assert after.wait(2)
    assert "boom" in caplog.text or "failed" in caplog.text


def test_threads_scheduling_at_once_lose_no_timer() -> None:
    timers = TimerThread()
    count = 0
    lock = threading.Lock()
    all_done = threading.Event()
    total = 8 * 250

    def tick() -> None:
        nonlocal count
        with lock:
            count += 1
            if count == total:
                all_done.set()

    def schedule_many() -> None:
        for i in range(250):
            timers.schedule((i % 10) / 1000, tick)

    threads = [threading.Thread(target=schedule_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all_done.wait(5)
    assert count == total


def test_bad_arguments_are_named() -> None:
    timers = TimerThread()
    with pytest.raises(ValueError, match="delay"):
        timers.schedule(-1.0, lambda: None)
    with pytest.raises(TypeError, match="callback"):
        timers.schedule(1.0, "not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="timers"):
        DeadlineTimer(CancellationToken(), timers="shared")  # type: ignore[arg-type]


def test_deadline_timers_share_one_thread() -> None:
    before = threading.active_count()
    tokens = [CancellationToken(timeout=30.0) for _ in range(50)]
    timers = [DeadlineTimer(token).start() for token in tokens]
    assert threading.active_count() <= before + 1  # at most the shared thread, once
    assert shared_timer_thread().pending >= 50
    for timer in timers:
        timer.cancel()
    assert not any(timer.running for timer in timers)


def test_a_timeout_policy_still_cancels_a_blocking_call_on_time() -> None:
    policy = TimeoutPolicy(0.05)

    def slow(token: CancellationToken) -> str:
        token.wait(5.0)  # wakes when the deadline cancels the token
        token.raise_if_cancelled()
        return "too late"

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        policy.call(slow)
    assert time.monotonic() - started < 1.0
