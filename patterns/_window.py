"""Sliding windows of counters, shared by the patterns that judge recent history.

:class:`BucketedCounts` keeps several counters (calls, failures, retries, ...) over the
last ``window`` seconds in ``buckets`` slices. It does not lock: the pattern that owns
one holds its own lock.
"""

from __future__ import annotations

import math

__all__ = ["BucketedCounts"]


class BucketedCounts:
    """``fields`` counters over a time window that slides in ``buckets`` steps.

    The window covers the current bucket and the ``buckets - 1`` before it; counts leave
    it a whole bucket (``window / buckets`` seconds) at a time.
    """

    __slots__ = ("_current", "_width", "buckets", "slots", "totals", "window")

    def __init__(self, fields: int, window: float, buckets: int, now: float) -> None:
        self.window = window
        self.buckets = buckets
        self._width = window / buckets
        self.slots = [[0] * fields for _ in range(buckets)]
        self.totals = [0] * fields
        self._current = math.floor(now / self._width)

    def slide(self, now: float) -> list[int]:
        """Expire what left the window by ``now``; return the current bucket's counters."""
        index = math.floor(now / self._width)
        gap = index - self._current
        if gap > 0:
            totals, count = self.totals, self.buckets
            for step in range(1, min(gap, count) + 1):
                slot = self.slots[(self._current + step) % count]
                for field, value in enumerate(slot):
                    if value:
                        totals[field] -= value
                        slot[field] = 0
            self._current = index
        return self.slots[self._current % self.buckets]

    def add(self, now: float, field: int, amount: int = 1) -> None:
        """Add ``amount`` to counter ``field`` at time ``now``."""
        self.slide(now)[field] += amount
        self.totals[field] += amount

    def clear(self) -> None:
        """Forget everything."""
        for slot in self.slots:
            slot[:] = [0] * len(slot)
        self.totals[:] = [0] * len(self.totals)
