"""The shared timer thread behind the blocking deadline drivers."""

from __future__ import annotations

import math
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


# --------------------------------------------------------------------------- issue 11: time


@pytest.mark.parametrize("huge", [1e10, 1e15, 1.7e308])
def test_a_huge_delay_does_not_kill_the_thread(huge: float) -> None:
    # Condition.wait(1e10) raises OverflowError (above threading.TIMEOUT_MAX): it used to
    # escape the thread's loop and end it, and no timer of the process fired again.
    timers = TimerThread()
    far = timers.schedule(huge, lambda: None)
    time.sleep(0.05)  # let the thread start waiting for the far one
    fired = threading.Event()
    timers.schedule(0.01, fired.set)
    assert fired.wait(2)
    assert timers._thread is not None
    assert timers._thread.is_alive()
    far.cancel()


def test_a_huge_token_deadline_does_not_stop_the_other_deadlines() -> None:
    # The case, through the shared thread: one CancellationToken(timeout=1e10)
    # armed, then a short deadline must still fire on time.
    far = CancellationToken(timeout=1e10)
    far_timer = DeadlineTimer(far).start()
    time.sleep(0.05)
    near = CancellationToken(timeout=0.02)
    fired = threading.Event()
    near.on_cancel(fired.set)  # runs only if the timer thread cancels the token
    near_timer = DeadlineTimer(near).start()
    try:
        assert fired.wait(2.0)
        assert isinstance(near.reason, TimeoutError)
        assert not far.is_cancelled
    finally:
        far_timer.cancel()
        near_timer.cancel()


def test_a_callback_raising_a_base_exception_does_not_kill_the_thread(
        caplog: pytest.LogCaptureFixture) -> None:
    # OperationCancelled is a BaseException: a cancel callback that lets it out (or a
    # SystemExit) must not end the thread that runs every deadline of the process.
    from patterns.resilience.timeout import OperationCancelled

    timers = TimerThread()
    after = threading.Event()

    def stop() -> None:
        raise OperationCancelled("from a callback")

    def leave() -> None:
        raise SystemExit(3)

    timers.schedule(0.0, stop)
    timers.schedule(0.005, leave)
    timers.schedule(0.02, after.set)
    assert after.wait(2)
    assert timers._thread is not None
    assert timers._thread.is_alive()
    assert caplog.text.count("failed") >= 2


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1.0, True, "1", None])
def test_schedule_refuses_bad_delays_at_the_boundary(bad: object) -> None:
    timers = TimerThread()
    with pytest.raises((ValueError, TypeError), match="delay"):
        timers.schedule(bad, lambda: None)  # type: ignore[arg-type]
    assert timers.pending == 0
    assert timers._thread is None  # nothing started for a refused timer


def test_timer_thread_name_must_be_a_str() -> None:
    with pytest.raises(TypeError, match="name"):
        TimerThread(name=3)  # type: ignore[arg-type]
