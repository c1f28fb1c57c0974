"""Sliding windows of counters, shared by the patterns that judge recent history.

* :class:`BucketedCounts` keeps several counters (calls, failures, retries, ...) over
  the last ``window`` seconds in ``buckets`` slices.
* :class:`CountWindow` keeps the outcomes of the last ``size`` calls, and
  :class:`TimeWindow` those of the last ``window`` seconds (the circuit breaker's two
  windows); a success costs them one lock-free count.

Both keep running totals, so recording an outcome and reading the totals cost O(1)
(amortised), whatever the size of the window; and both store only what happened (the
buckets that saw calls, the outcomes that were not plain successes), so a huge window
costs no memory until it fills. Neither locks: the pattern that owns one holds its own
lock (except the windows' ``success``, which is safe without one).
"""

from __future__ import annotations

import itertools
import math
from collections import deque

from patterns._validation import require_finite, require_int_at_least, require_positive

__all__ = ["MIN_BUCKET_WIDTH", "BucketedCounts", "CountWindow", "TimeWindow"]

MIN_BUCKET_WIDTH = 1e-9
"""The narrowest bucket (seconds): finer than any clock measures a call."""


def _bucket_width(window: float, buckets: int) -> float:
    width = window / buckets
    if not width >= MIN_BUCKET_WIDTH:
        raise ValueError(
            f"window / buckets (the width of a bucket) must be at least "
            f"{MIN_BUCKET_WIDTH:g} s, got window={window!r} and buckets={buckets!r}")
    return width


class BucketedCounts:
    """``fields`` counters over a time window that slides in ``buckets`` steps.

    The window covers the current bucket and the ``buckets - 1`` before it; counts leave
    it a whole bucket (``window / buckets`` seconds) at a time. Only buckets that were
    counted in are stored (a deque of them, oldest first), so ``buckets`` may be large:
    memory grows with the buckets that saw traffic, never beyond ``buckets``, and each
    bucket is created and dropped once.
    """

    __slots__ = ("_index", "_live", "_width", "buckets", "fields", "totals", "window")

    def __init__(self, fields: int, window: float, buckets: int, now: float) -> None:
        self.fields = require_int_at_least("fields", fields, 1)
        self.window = require_positive("window", require_finite("window", window))
        self.buckets = require_int_at_least("buckets", buckets, 1)
        self._width = _bucket_width(window, buckets)
        self.totals = [0] * fields
        # (bucket index, counters) of the buckets in the window that were counted in
        self._live: deque[tuple[int, list[int]]] = deque()
        self._index = self._bucket(require_finite("now", now))

    def _bucket(self, now: float) -> int:
        return math.floor(now / self._width)

    def slide(self, now: float) -> list[int]:
        """Expire what left the window by ``now``; return the current bucket's counters."""
        self.expire(now)
        index, live = self._index, self._live  # a clock that steps back un-expires nothing
        if live and live[-1][0] == index:
            return live[-1][1]
        slot = [0] * self.fields
        live.append((index, slot))
        return slot

    def expire(self, now: float) -> list[int]:
        """Expire what left the window by ``now``; return the totals (not a copy)."""
        index = math.floor(now / self._width)
        if index > self._index:
            self._index = index
        live = self._live
        oldest = self._index - self.buckets
        totals = self.totals
        while live and live[0][0] <= oldest:
            for field, value in enumerate(live.popleft()[1]):
                if value:
                    totals[field] -= value
        return totals

    def add(self, now: float, field: int, amount: int = 1) -> None:
        """Add ``amount`` to counter ``field`` at time ``now``."""
        self.slide(now)[field] += amount
        self.totals[field] += amount

    def clear(self) -> None:
        """Forget everything."""
        self._live.clear()
        self.totals[:] = [0] * len(self.totals)


class CountWindow:
    """The outcomes of the last ``size`` calls: how many, how many failed, how many slow.

    Every call takes a sequence number; only the failed or slow ones are stored (with
    their number), and they leave when ``size`` newer calls have been counted. So a
    plain success is one :func:`next` on an :func:`itertools.count`, atomic under the
    GIL: :meth:`success` needs no lock. Everything else runs under the owner's lock.
    """

    __slots__ = ("_bad", "_seq", "failures", "size", "slow")

    def __init__(self, size: int) -> None:
        self.size = require_int_at_least("size", size, 1)
        self._seq = itertools.count()
        self._bad: deque[tuple[int, bool, bool]] = deque()  # (number, failed, slow)
        self.failures = 0
        self.slow = 0

    def success(self, now: float) -> int:
        """Count a fast success, without a lock; return how many calls have been counted
        since the window was made or cleared (it included)."""
        return next(self._seq) + 1

    def add(self, now: float, failed: bool, slow: bool) -> tuple[int, int, int]:
        """Count an outcome; return ``(calls, failures, slow)`` in the window after it."""
        seq = next(self._seq)
        if failed or slow:
            self._bad.append((seq, failed, slow))
            self.failures += failed
            self.slow += slow
        return self.totals(now, seq + 1)

    def counted(self) -> int:
        """How many calls have been counted since the window was made or cleared."""
        text = repr(self._seq)  # "count(N)": the next number, read without taking it
        return int(text[text.index("(") + 1:-1])

    def totals(self, now: float, counted: int | None = None) -> tuple[int, int, int]:
        """``(calls, failures, slow)`` in the window of the last ``size`` calls, as of
        ``counted`` calls (default: all counted so far)."""
        if counted is None:
            counted = self.counted()
        oldest = counted - self.size  # numbers below this one have left the window
        bad = self._bad
        while bad and bad[0][0] < oldest:
            _, failed, slow = bad.popleft()
            self.failures -= failed
            self.slow -= slow
        return min(counted, self.size), self.failures, self.slow

    def clear(self, now: float) -> None:
        """Forget everything."""
        self._seq = itertools.count()
        self._bad = deque()
        self.failures = 0
        self.slow = 0


class TimeWindow:
    """The outcomes of the calls of the last ``window`` seconds, in ``buckets`` slices.

    The window covers the current bucket and the ``buckets - 1`` before it; outcomes
    leave it a whole bucket (``window / buckets`` seconds) at a time. Every call takes a
    number from one counter, and each bucket remembers the number it started at, so the
    calls in the window are "numbers taken" minus "the start of the oldest bucket still
    in it". A success in the newest bucket is one :func:`next` on that counter, without
    a lock (:meth:`success`); starting a bucket, failures and slow calls run under the
    owner's lock. Only buckets that saw a call are stored.
    """

    __slots__ = ("_live", "_seq", "_width", "buckets", "failures", "newest", "slow",
                 "window")

    def __init__(self, window: float, buckets: int, now: float) -> None:
        self.window = require_positive("window", require_finite("window", window))
        self.buckets = require_int_at_least("buckets", buckets, 1)
        self._width = _bucket_width(window, buckets)
        self._seq = itertools.count()
        self.newest = 0
        # [bucket index, first call number, failures, slow]; never empty: the newest
        # bucket is always there, so a success always has a bucket to fall in.
        self._live: deque[list[int]] = deque()
        self.failures = 0
        self.slow = 0
        self.clear(require_finite("now", now))

    def success(self, now: float) -> int:
        """Count a fast success without a lock, if ``now`` falls in the newest bucket:
        return the calls in the window (it included). Otherwise count nothing and
        return -1: the owner calls :meth:`add` under its lock."""
        if math.floor(now / self._width) != self.newest:
            return -1
        seq = next(self._seq)
        return seq + 1 - self._live[0][1]  # read after the count: see the class

    def _roll(self, now: float) -> None:
        index = math.floor(now / self._width)
        if index <= self.newest:
            return
        live = self._live
        live.append([index, self.counted(), 0, 0])
        self.newest = index
        oldest = index - self.buckets
        while live[0][0] <= oldest:
            _, _, failed, slow = live.popleft()
            self.failures -= failed
            self.slow -= slow

    def add(self, now: float, failed: bool, slow: bool) -> tuple[int, int, int]:
        """Count an outcome; return ``(calls, failures, slow)`` in the window after it."""
        self._roll(now)
        seq = next(self._seq)
        if failed or slow:
            bucket = self._live[-1]
            bucket[2] += failed
            bucket[3] += slow
            self.failures += failed
            self.slow += slow
        return seq + 1 - self._live[0][1], self.failures, self.slow

    def counted(self) -> int:
        """How many calls have been counted since the window was made or cleared."""
        text = repr(self._seq)  # "count(N)": the next number, read without taking it
        return int(text[text.index("(") + 1:-1])

    def totals(self, now: float) -> tuple[int, int, int]:
        """``(calls, failures, slow)`` in the window as of ``now``."""
        self._roll(now)
        return self.counted() - self._live[0][1], self.failures, self.slow

    def clear(self, now: float) -> None:
        """Forget everything."""
        self._seq = itertools.count()
        self.newest = math.floor(now / self._width)
        self._live = deque([[self.newest, 0, 0, 0]])
        self.failures = 0
        self.slow = 0
