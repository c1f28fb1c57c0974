"""Tests for :mod:`patterns.resilience.budget` (guide section 4.1)."""

from __future__ import annotations

import math
import threading
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patterns.clock import ManualClock
from patterns.resilience.budget import BudgetSnapshot, RetryBudget


def grant_all(budget: RetryBudget, limit: int = 10_000) -> int:
    """Take retries until the budget refuses one; return how many were granted."""
    for granted in range(limit):
        if not budget.try_acquire_retry():
            return granted
    raise AssertionError("the budget never ran out")


# --------------------------------------------------------------------------- exact grants


def test_ratio_one_tenth_grants_one_retry_per_ten_calls() -> None:
    budget = RetryBudget(0.1, min_retries_per_second=0.0, clock=ManualClock())
    for _ in range(10):
        budget.record_call()
    assert budget.try_acquire_retry() is True
    assert budget.try_acquire_retry() is False
    assert budget.try_acquire_retry() is False


def test_nine_calls_earn_no_retry_at_ratio_one_tenth() -> None:
    budget = RetryBudget(0.1, min_retries_per_second=0.0, clock=ManualClock())
    for _ in range(9):
        budget.record_call()
    assert budget.try_acquire_retry() is False
    budget.record_call()
    assert budget.try_acquire_retry() is True


def test_a_refused_retry_takes_nothing() -> None:
    budget = RetryBudget(0.5, min_retries_per_second=0.0, clock=ManualClock())
    budget.record_call()
    assert budget.try_acquire_retry() is False
    assert budget.snapshot().retries == 0
    budget.record_call()  # 2 calls -> 1 retry, not consumed by the refusal above
    assert budget.try_acquire_retry() is True
    assert budget.snapshot().retries == 1


@pytest.mark.parametrize(
    ("ratio", "calls", "expected"),
    [(0.1, 100, 10), (0.2, 10, 2), (0.3, 10, 3), (0.7, 10, 7), (1.0, 5, 5), (0.0, 50, 0),
     (0.25, 7, 1)],
)
def test_grants_are_floor_of_ratio_times_calls(ratio: float, calls: int, expected: int) -> None:
    budget = RetryBudget(ratio, min_retries_per_second=0.0, clock=ManualClock())
    for _ in range(calls):
        budget.record_call()
    assert grant_all(budget) == expected


def test_reserve_is_min_retries_per_second_times_window() -> None:
    budget = RetryBudget(0.0, min_retries_per_second=0.5, window=10.0, clock=ManualClock())
    assert budget.reserve == 5.0
    # No calls at all: the reserve alone allows 5 retries.
    assert grant_all(budget) == 5


def test_reserve_and_ratio_add_up() -> None:
    budget = RetryBudget(0.1, min_retries_per_second=0.2, window=10.0, clock=ManualClock())
    for _ in range(30):
        budget.record_call()
    assert grant_all(budget) == 3 + 2


def test_defaults() -> None:
    budget = RetryBudget(clock=ManualClock())
    assert budget.ratio == 0.2
    assert budget.min_retries_per_second == 10.0
    assert budget.window == 10.0
    assert budget.buckets == 10
    assert budget.reserve == 100.0
    assert grant_all(budget) == 100


# --------------------------------------------------------------------------- window expiry


def test_calls_leave_the_window_after_window_seconds() -> None:
    clock = ManualClock()
    budget = RetryBudget(0.1, min_retries_per_second=0.0, window=10.0, buckets=10, clock=clock)
    for _ in range(10):
        budget.record_call()
    clock.set(9.99)
    assert budget.snapshot().calls == 10
    clock.set(10.0)
    assert budget.snapshot().calls == 0
    assert budget.try_acquire_retry() is False


def test_retries_leave_the_window_and_free_the_budget_again() -> None:
    clock = ManualClock()
    budget = RetryBudget(0.0, min_retries_per_second=0.2, window=10.0, buckets=10, clock=clock)
    assert grant_all(budget) == 2
    clock.advance(9.5)
    assert budget.try_acquire_retry() is False  # still the same window
    clock.advance(0.5)
    assert budget.snapshot().retries == 0
    assert grant_all(budget) == 2


def test_counts_leave_bucket_by_bucket() -> None:
    clock = ManualClock()
    budget = RetryBudget(1.0, min_retries_per_second=0.0, window=10.0, buckets=2, clock=clock)
    budget.record_call()  # bucket [0, 5)
    assert budget.try_acquire_retry() is True
    clock.set(5.0)
    budget.record_call()  # bucket [5, 10)
    budget.record_call()
    assert budget.snapshot() == BudgetSnapshot(calls=3, retries=1, allowed=3.0)
    clock.set(10.0)  # the first bucket leaves
    assert budget.snapshot() == BudgetSnapshot(calls=2, retries=0, allowed=2.0)
    clock.set(14.999)
    assert budget.snapshot().calls == 2
    clock.set(15.0)  # the second leaves too
    assert budget.snapshot() == BudgetSnapshot(calls=0, retries=0, allowed=0.0)


def test_a_long_gap_empties_every_bucket() -> None:
    clock = ManualClock()
    budget = RetryBudget(1.0, min_retries_per_second=0.0, window=4.0, buckets=4, clock=clock)
    for t in (0.0, 1.0, 2.0, 3.0):
        clock.set(t)
        budget.record_call()
        assert budget.try_acquire_retry() is True
    assert budget.snapshot() == BudgetSnapshot(calls=4, retries=4, allowed=4.0)
    clock.set(1000.5)
    assert budget.snapshot() == BudgetSnapshot(calls=0, retries=0, allowed=0.0)
    budget.record_call()
    assert budget.snapshot().calls == 1


def test_window_aligned_to_a_clock_that_does_not_start_at_zero() -> None:
    clock = ManualClock(103.0)
    budget = RetryBudget(1.0, min_retries_per_second=0.0, window=10.0, buckets=1, clock=clock)
    budget.record_call()
    clock.set(109.999)
    assert budget.snapshot().calls == 1
    clock.set(110.0)  # buckets are aligned to multiples of window / buckets
    assert budget.snapshot().calls == 0


# --------------------------------------------------------------------------- snapshot


def test_snapshot_values() -> None:
    budget = RetryBudget(0.2, min_retries_per_second=0.1, window=10.0, clock=ManualClock())
    assert budget.snapshot() == BudgetSnapshot(calls=0, retries=0, allowed=1.0)
    for _ in range(20):
        budget.record_call()
    assert budget.try_acquire_retry()
    assert budget.try_acquire_retry()
    snap = budget.snapshot()
    assert snap.calls == 20
    assert snap.retries == 2
    assert snap.allowed == pytest.approx(5.0)
    assert snap.available == pytest.approx(3.0)


def test_snapshot_available_never_negative() -> None:
    assert BudgetSnapshot(calls=0, retries=5, allowed=2.0).available == 0.0
    assert BudgetSnapshot(calls=10, retries=1, allowed=2.5).available == 1.5


def test_snapshot_is_frozen() -> None:
    snap = BudgetSnapshot(calls=1, retries=0, allowed=1.0)
    with pytest.raises(AttributeError):
        snap.calls = 2  # type: ignore[misc]


def test_repr() -> None:
    budget = RetryBudget(0.5, min_retries_per_second=1.0, window=3.0, buckets=3,
                         clock=ManualClock())
    assert repr(budget) == (
        "RetryBudget(ratio=0.5, min_retries_per_second=1.0, window=3.0, buckets=3)"
    )


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"ratio": -0.1}, ValueError, r"ratio must be within \[0, 1\], got -0\.1"),
        ({"ratio": 1.5}, ValueError, r"ratio must be within \[0, 1\], got 1\.5"),
        ({"ratio": math.nan}, ValueError, r"ratio must be a number, got nan"),
        ({"ratio": True}, TypeError, r"ratio must be a number, got True \(bool\)"),
        ({"window": 0.0}, ValueError, r"window must be > 0, got 0\.0"),
        ({"window": -5}, ValueError, r"window must be > 0, got -5"),
        ({"window": math.inf}, ValueError, r"window must be finite, got inf"),
        ({"window": math.nan}, ValueError, r"window must be a number, got nan"),
        ({"buckets": 0}, ValueError, r"buckets must be >= 1, got 0"),
        ({"buckets": -3}, ValueError, r"buckets must be >= 1, got -3"),
        ({"buckets": 2.0}, TypeError, r"buckets must be an int, got 2\.0 \(float\)"),
        ({"buckets": True}, TypeError, r"buckets must be an int, got True \(bool\)"),
        ({"min_retries_per_second": -1.0}, ValueError,
         r"min_retries_per_second must be >= 0, got -1\.0"),
        ({"min_retries_per_second": math.inf}, ValueError,
         r"min_retries_per_second must be finite, got inf"),
    ],
)
def test_bad_parameters_are_refused_naming_parameter_and_value(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        RetryBudget(clock=ManualClock(), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("ratio", [0.0, 1.0])
def test_ratio_bounds_are_inclusive(ratio: float) -> None:
    assert RetryBudget(ratio, clock=ManualClock()).ratio == ratio


# --------------------------------------------------------------------------- properties

operations = st.lists(
    st.one_of(
        st.just(("call", 0.0)),
        st.just(("retry", 0.0)),
        st.tuples(st.just("advance"), st.floats(min_value=0.0, max_value=2.5)),
    ),
    max_size=120,
)
ratios = st.floats(min_value=0.0, max_value=1.0)
reserve_rates = st.sampled_from([0.0, 0.05, 0.1, 0.3, 1.0])
windows = st.sampled_from([1.0, 2.0, 2.5, 10.0])


@settings(deadline=None, max_examples=150)
@given(ops=operations, ratio=ratios, rate=reserve_rates, window=windows)
def test_retries_in_any_window_never_exceed_ratio_times_calls_plus_reserve(
    ops: list[tuple[str, float]], ratio: float, rate: float, window: float
) -> None:
    # buckets=1: the window is the aligned interval [k*window, (k+1)*window).
    clock = ManualClock()
    budget = RetryBudget(ratio, min_retries_per_second=rate, window=window, buckets=1,
                         clock=clock)
    calls: defaultdict[int, int] = defaultdict(int)
    granted: defaultdict[int, int] = defaultdict(int)
    for op, amount in ops:
        k = math.floor(clock.now() / window)
        if op == "call":
            budget.record_call()
            calls[k] += 1
        elif op == "retry":
            if budget.try_acquire_retry():
                granted[k] += 1
        else:
            clock.advance(amount * window)
    for k, count in granted.items():
        assert count <= ratio * calls[k] + budget.reserve + 1e-9, (k, count, calls[k])


class ReferenceBudget:
    """A slow, obviously correct model of the bucketed sliding window."""

    def __init__(self, ratio: float, reserve: float, window: float, buckets: int) -> None:
        self.ratio, self.reserve, self.buckets = ratio, reserve, buckets
        self.width = window / buckets
        self.calls: defaultdict[int, int] = defaultdict(int)
        self.retries: defaultdict[int, int] = defaultdict(int)

    def _in_window(self, counts: dict[int, int], now: float) -> int:
        index = math.floor(now / self.width)
        return sum(n for b, n in counts.items() if index - self.buckets < b <= index)

    def record_call(self, now: float) -> None:
        self.calls[math.floor(now / self.width)] += 1

    def counts(self, now: float) -> tuple[int, int]:
        return self._in_window(self.calls, now), self._in_window(self.retries, now)

    def try_acquire_retry(self, now: float) -> bool:
        calls, retries = self.counts(now)
        if retries + 1 > self.ratio * calls + self.reserve + 1e-9:
            return False
        self.retries[math.floor(now / self.width)] += 1
        return True


@settings(deadline=None, max_examples=150)
@given(
    ops=operations,
    ratio=ratios,
    rate=reserve_rates,
    window=windows,
    buckets=st.integers(min_value=1, max_value=6),
)
def test_budget_matches_a_reference_model_of_the_sliding_window(
    ops: list[tuple[str, float]], ratio: float, rate: float, window: float, buckets: int
) -> None:
    clock = ManualClock()
    budget = RetryBudget(ratio, min_retries_per_second=rate, window=window, buckets=buckets,
                         clock=clock)
    model = ReferenceBudget(ratio, rate * window, window, buckets)
    for op, amount in ops:
        now = clock.now()
        if op == "call":
            budget.record_call()
            model.record_call(now)
        elif op == "retry":
            granted = budget.try_acquire_retry()
            assert granted == model.try_acquire_retry(now)
            if granted:
                # At the moment of a grant the window holds no more retries than it allows.
                # (Later, the calls that earned a retry may leave the window before the
                # retry does, so this is not an invariant of every snapshot.)
                snap = budget.snapshot()
                assert snap.retries <= snap.allowed + 1e-9
        else:
            clock.advance(amount * window)
        snap = budget.snapshot()
        assert (snap.calls, snap.retries) == model.counts(clock.now())


# --------------------------------------------------------------------------- threads


def test_concurrent_callers_never_exceed_the_budget_and_use_all_of_it() -> None:
    threads_count, calls_each = 16, 250
    ratio, rate, window = 0.25, 0.4, 10.0  # reserve = 4 retries
    budget = RetryBudget(ratio, min_retries_per_second=rate, window=window,
                         clock=ManualClock(5.0))  # frozen: the window never moves
    granted = [0] * threads_count
    barrier = threading.Barrier(threads_count)
    violations: list[BudgetSnapshot] = []

    def worker(index: int) -> None:
        barrier.wait()
        # Phase 1: interleave calls with (over-)eager retries.
        for _ in range(calls_each):
            budget.record_call()
            for _ in range(2):
                granted[index] += budget.try_acquire_retry()
            snap = budget.snapshot()
            if snap.retries > snap.allowed + 1e-9:
                violations.append(snap)
        barrier.wait()
        # Phase 2: every call is recorded; keep asking far beyond the bound.
        for _ in range(200):
            granted[index] += budget.try_acquire_retry()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    calls = threads_count * calls_each
    bound = ratio * calls + rate * window
    assert bound == 1004.0
    assert violations == []
    assert sum(granted) == bound  # never more, and with excess demand, exactly the bound
    assert budget.snapshot() == BudgetSnapshot(calls=calls, retries=1004, allowed=bound)
