"""Sliding windows of counters, shared by the patterns that judge recent history.

:class:`BucketedCounts` keeps several counters (calls, failures, retries, ...) over the
last ``window`` seconds in ``buckets`` slices; :class:`RingCounts` keeps them over the
last ``size`` events. Neither locks: the pattern that owns one holds its own lock.
"""

from __future__ import annotations

import math

__all__ = ["BucketedCounts", "RingCounts"]


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


class RingCounts:
    """Counts of flags over the last ``size`` events (a count-based sliding window).

    Each event is a small integer of bit flags; ``totals[bit]`` says how many events in
    the window have that bit set, and :attr:`events` how many events the window holds.
    """

    __slots__ = ("_bits", "_next", "_ring", "events", "size", "totals")

    def __init__(self, size: int, bits: int) -> None:
        self.size = size
        self._bits = bits
        self._ring = [0] * size
        self._next = 0
        self.events = 0
        self.totals = [0] * bits

    def add(self, flags: int) -> None:
        """Record one event with ``flags``, evicting the oldest if the window is full."""
        ring, index, totals = self._ring, self._next, self.totals
        if self.events == self.size:
            old = ring[index]
            if old:
                for bit in range(self._bits):
                    if old >> bit & 1:
                        totals[bit] -= 1
        else:
            self.events += 1
        ring[index] = flags
        if flags:
            for bit in range(self._bits):
                if flags >> bit & 1:
                    totals[bit] += 1
        self._next = index + 1 if index + 1 < self.size else 0

    def clear(self) -> None:
        """Forget everything."""
        self._ring = [0] * self.size
        self._next = 0
        self.events = 0
        self.totals = [0] * self._bits
