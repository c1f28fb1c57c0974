"""A retry budget shared by many callers (guide section 4.1, 重试与回退策略).

The guide retries every failure up to ``max_attempts`` times. Behind several layers
that each do so, one failing dependency receives ``attempts ** layers`` calls for every
user request: retries turn a partial outage into a full one. A budget caps retries
at a fraction of the calls made, over a sliding window, the way Finagle's
``RetryBudget`` and gRPC's retry throttling do.

A retry is granted only if, counting the calls and retries of the current window, it
keeps::

    retries <= ratio * calls + min_retries_per_second * window

where ``calls`` counts the first attempts recorded with :meth:`record_call`. The
reserve (``min_retries_per_second``) lets a quiet client still retry now and then.

The window slides in ``buckets`` steps: it covers the current bucket and the
``buckets - 1`` before it, so counts leave it in slices of ``window / buckets``
seconds. The bound above therefore holds for the window as counted at the moment of
each grant; an arbitrary interval of ``window`` seconds that straddles bucket edges
can see up to about twice as many retries (the same trade-off as Finagle's budget).
With ``buckets=1`` windows are fixed and the bound is exact per window. Thread-safe.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from patterns._validation import (
    require_clock,
    require_finite,
    require_finite_non_negative,
    require_int_at_least,
    require_positive,
    require_unit_interval,
)
from patterns._window import BucketedCounts
from patterns.clock import MONOTONIC, Clock

__all__ = ["BudgetSnapshot", "RetryBudget"]

_CALLS, _RETRIES = 0, 1  # the two counters of the window


@dataclass(frozen=True, slots=True)
class BudgetSnapshot:
    """Counts inside the budget's current window."""

    calls: int
    retries: int
    allowed: float
    """How many retries the window allows in all (``ratio * calls + reserve``)."""

    @property
    def available(self) -> float:
        """Retries still allowed in the current window."""
        return max(0.0, self.allowed - self.retries)


class RetryBudget:
    """Allow retries only while they are at most ``ratio`` of recent calls (plus a reserve)."""

    __slots__ = (
        "_counts",
        "_lock",
        "buckets",
        "clock",
        "min_retries_per_second",
        "ratio",
        "window",
    )

    def __init__(
        self,
        ratio: float = 0.2,
        *,
        min_retries_per_second: float = 10.0,
        window: float = 10.0,
        buckets: int = 10,
        clock: Clock = MONOTONIC,
    ) -> None:
        self.ratio = require_unit_interval("ratio", ratio)
        self.min_retries_per_second = require_finite_non_negative(
            "min_retries_per_second", min_retries_per_second
        )
        self.window = require_positive("window", require_finite("window", window))
        self.buckets = require_int_at_least("buckets", buckets, 1)
        self.clock = require_clock("clock", clock)
        self._counts = BucketedCounts(2, window, buckets, clock.now())
        self._lock = threading.Lock()

    @property
    def reserve(self) -> float:
        """Retries allowed per window regardless of traffic."""
        return self.min_retries_per_second * self.window

    def record_call(self) -> None:
        """Count one call (a first attempt); each call earns ``ratio`` of a retry."""
        with self._lock:
            self._counts.add(self.clock.now(), _CALLS)

    def try_acquire_retry(self) -> bool:
        """Take one retry from the budget; ``False`` (and nothing taken) if none is left."""
        with self._lock:
            counts = self._counts
            slot = counts.slide(self.clock.now())
            calls, retries = counts.totals
            if retries + 1 > self.ratio * calls + self.reserve + 1e-9:
                return False
            slot[_RETRIES] += 1
            counts.totals[_RETRIES] += 1
            return True

    def snapshot(self) -> BudgetSnapshot:
        """The calls and retries counted in the current window."""
        with self._lock:
            self._counts.slide(self.clock.now())
            calls, retries = self._counts.totals
            return BudgetSnapshot(calls=calls, retries=retries,
                                  allowed=self.ratio * calls + self.reserve)

    def __repr__(self) -> str:
        return (f"RetryBudget(ratio={self.ratio!r}, "
                f"min_retries_per_second={self.min_retries_per_second!r}, "
                f"window={self.window!r}, buckets={self.buckets!r})")
