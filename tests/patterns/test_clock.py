"""Tests for :mod:`patterns.clock`."""

from __future__ import annotations

import itertools
import math
import threading
import time

import pytest

from patterns.clock import MONOTONIC, Clock, ManualClock, MonotonicClock

# --------------------------------------------------------------------------- ManualClock


def test_manual_clock_starts_at_zero_by_default() -> None:
    assert ManualClock().now() == 0.0


def test_manual_clock_starts_where_told() -> None:
    assert ManualClock(12.5).now() == 12.5


def test_manual_clock_does_not_move_on_its_own() -> None:
    clock = ManualClock(3.0)
    assert [clock.now() for _ in range(5)] == [3.0] * 5


def test_advance_moves_forward_and_returns_the_new_time() -> None:
    clock = ManualClock(1.0)
    assert clock.advance(2.5) == 3.5
    assert clock.now() == 3.5
    assert clock.advance(0.5) == 4.0
    assert clock.now() == 4.0


def test_advance_by_zero_is_allowed_and_changes_nothing() -> None:
    clock = ManualClock(7.0)
    assert clock.advance(0) == 7.0
    assert clock.now() == 7.0


def test_set_moves_the_clock_to_a_later_time() -> None:
    clock = ManualClock(1.0)
    clock.set(10.0)
    assert clock.now() == 10.0


def test_set_to_the_current_time_is_allowed() -> None:
    clock = ManualClock(4.0)
    clock.set(4.0)
    assert clock.now() == 4.0


def test_set_refuses_to_go_backwards_and_leaves_the_clock_alone() -> None:
    clock = ManualClock(5.0)
    with pytest.raises(ValueError, match=r"when must not be earlier than now \(5\.0\), got 4\.0"):
        clock.set(4.0)
    assert clock.now() == 5.0


def test_advance_refuses_negative_seconds_and_leaves_the_clock_alone() -> None:
    clock = ManualClock(5.0)
    with pytest.raises(ValueError, match=r"seconds must be >= 0, got -1"):
        clock.advance(-1)
    assert clock.now() == 5.0


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (math.nan, ValueError, r"seconds must be a number, got nan"),
        (True, TypeError, r"seconds must be a number, got True \(bool\)"),
        ("1", TypeError, r"seconds must be a number, got '1' \(str\)"),
        (None, TypeError, r"seconds must be a number, got None \(NoneType\)"),
    ],
)
def test_advance_refuses_bad_values(value: object, error: type[Exception], message: str) -> None:
    clock = ManualClock(2.0)
    with pytest.raises(error, match=message):
        clock.advance(value)  # type: ignore[arg-type]
    assert clock.now() == 2.0


def test_advance_refuses_infinity() -> None:
    # The start and set() must be finite; advance() must not sneak the clock to infinity,
    # after which it can never be set() again.
    clock = ManualClock(2.0)
    with pytest.raises(ValueError, match=r"seconds.*inf"):
        clock.advance(math.inf)
    assert clock.now() == 2.0


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (math.nan, ValueError, r"when must be a number, got nan"),
        (math.inf, ValueError, r"when must be finite, got inf"),
        (False, TypeError, r"when must be a number, got False \(bool\)"),
        ("3", TypeError, r"when must be a number, got '3' \(str\)"),
    ],
)
def test_set_refuses_bad_values(value: object, error: type[Exception], message: str) -> None:
    clock = ManualClock(2.0)
    with pytest.raises(error, match=message):
        clock.set(value)  # type: ignore[arg-type]
    assert clock.now() == 2.0


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (math.nan, ValueError, r"start must be a number, got nan"),
        (math.inf, ValueError, r"start must be finite, got inf"),
        (-math.inf, ValueError, r"start must be finite, got -inf"),
        (True, TypeError, r"start must be a number, got True \(bool\)"),
        ("0", TypeError, r"start must be a number, got '0' \(str\)"),
    ],
)
def test_constructor_refuses_bad_start(
    value: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        ManualClock(value)  # type: ignore[arg-type]


def test_negative_finite_start_is_allowed() -> None:
    # Only differences matter; the origin is arbitrary.
    clock = ManualClock(-10.0)
    assert clock.advance(4.0) == -6.0


def test_sleep_advances_and_records_without_blocking() -> None:
    clock = ManualClock(1.0)
    clock.sleep(0.5)
    clock.sleep(3600.0)  # would block for an hour if it really slept
    clock.sleep(0.0)
    assert clock.now() == 3601.5
    assert clock.slept == [0.5, 3600.0, 0.0]


def test_sleep_refuses_a_negative_duration_and_records_nothing() -> None:
    clock = ManualClock()
    with pytest.raises(ValueError, match=r"seconds must be >= 0, got -0\.5"):
        clock.sleep(-0.5)
    assert clock.slept == []
    assert clock.now() == 0.0


def test_advance_does_not_record_a_sleep() -> None:
    clock = ManualClock()
    clock.advance(2.0)
    assert clock.slept == []


def test_repr_shows_the_time() -> None:
    assert repr(ManualClock(2.5)) == "ManualClock(now=2.5)"


def test_manual_clock_is_thread_safe_under_concurrent_advances() -> None:
    clock = ManualClock()
    threads_count, per_thread = 8, 2000
    barrier = threading.Barrier(threads_count)

    def worker() -> None:
        barrier.wait()
        for _ in range(per_thread):
            clock.advance(1.0)

    threads = [threading.Thread(target=worker) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clock.now() == threads_count * per_thread


def test_manual_clock_sleep_is_thread_safe() -> None:
    clock = ManualClock()
    threads_count, per_thread = 8, 500
    barrier = threading.Barrier(threads_count)

    def worker() -> None:
        barrier.wait()
        for _ in range(per_thread):
            clock.sleep(0.25)

    threads = [threading.Thread(target=worker) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clock.now() == threads_count * per_thread * 0.25
    assert len(clock.slept) == threads_count * per_thread


# --------------------------------------------------------------------------- MONOTONIC


def test_monotonic_is_a_monotonic_clock() -> None:
    assert isinstance(MONOTONIC, MonotonicClock)
    assert repr(MONOTONIC) == "MonotonicClock()"


def test_monotonic_never_decreases() -> None:
    readings = [MONOTONIC.now() for _ in range(10_000)]
    assert all(b >= a for a, b in itertools.pairwise(readings))
    assert all(isinstance(r, float) and math.isfinite(r) for r in readings)


def test_monotonic_moves_forward_over_time() -> None:
    before = MONOTONIC.now()
    time.sleep(0.01)
    after = MONOTONIC.now()
    assert after - before >= 0.005


# --------------------------------------------------------------------------- protocol


def test_clocks_satisfy_the_clock_protocol() -> None:
    assert isinstance(MONOTONIC, Clock)
    assert isinstance(ManualClock(), Clock)


def test_any_object_with_now_satisfies_the_clock_protocol() -> None:
    class Custom:
        def now(self) -> float:
            return 42.0

    assert isinstance(Custom(), Clock)


@pytest.mark.parametrize("candidate", [object(), 3.0, "clock", lambda: 0.0])
def test_objects_without_now_are_not_clocks(candidate: object) -> None:
    assert not isinstance(candidate, Clock)


def test_one_wall_clock_serves_every_pattern_that_needs_one() -> None:
    import time

    from patterns.clock import WALL_CLOCK, WallClock
    from patterns.consistency import eventsourcing
    from patterns.consistency.lock import WALL
    from patterns.dataflow import crdt

    before = time.time()
    assert before <= WALL_CLOCK.now() <= time.time()
    assert WALL is WALL_CLOCK
    assert eventsourcing.WALL_CLOCK is WALL_CLOCK
    assert crdt.WALL_CLOCK is WALL_CLOCK
    assert crdt.WallClock is WallClock


# --------------------------------------------------------------------------- issue 11


def test_a_manual_clock_never_advances_to_infinity() -> None:
    # 1e308 + 1e308 is inf: every deadline and limiter on the clock turned to nan.
    from patterns.clock import ManualClock

    clock = ManualClock(1e308)
    for move in (lambda: clock.advance(1e308), lambda: clock.sleep(1.7e308)):
        with pytest.raises(ValueError, match="seconds"):
            move()
    assert clock.now() == 1e308
    assert clock.slept == []


def test_a_manual_clock_refuses_a_class_as_start_and_bools() -> None:
    from patterns.clock import ManualClock

    with pytest.raises(TypeError, match="start"):
        ManualClock(True)
    with pytest.raises(TypeError, match="seconds"):
        ManualClock().advance(True)
