"""Time as a dependency.

Patterns never call :func:`time.monotonic` or :func:`time.sleep` directly; they read time
through a :class:`Clock`. Production code uses :data:`MONOTONIC`, tests use a
:class:`ManualClock` they advance by hand, and simulations pass a clock that reads the
simulation's ``env.now`` (see ``simulations.kit.clock.SimClock``).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Final, Protocol, runtime_checkable

from patterns._validation import require_finite, require_finite_non_negative

__all__ = ["MONOTONIC", "WALL_CLOCK", "Clock", "ManualClock", "MonotonicClock", "WallClock"]


@runtime_checkable
class Clock(Protocol):
    """Anything that tells the current time in seconds.

    Only differences between two readings are meaningful; the origin is arbitrary.
    Readings never decrease.
    """

    def now(self) -> float:
        """The current time, in seconds."""
        ...


class MonotonicClock:
    """The process's monotonic clock (:func:`time.monotonic`), immune to wall-clock jumps."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    def __repr__(self) -> str:
        return "MonotonicClock()"


MONOTONIC: Final[MonotonicClock] = MonotonicClock()
"""The shared default clock."""


class WallClock:
    """The wall clock (:func:`time.time`, seconds since the Unix epoch).

    For times that other processes or machines must compare: lease expiries in a shared
    database, event timestamps, last-writer-wins stamps. Comparable across machines only
    as far as their clocks are synchronized, and it can step (NTP, an operator), so it
    never measures a duration; use :data:`MONOTONIC` for that.
    """

    __slots__ = ()

    def now(self) -> float:
        return time.time()

    def __repr__(self) -> str:
        return "WallClock()"


WALL_CLOCK: Final[WallClock] = WallClock()
"""The shared wall clock."""


class ManualClock:
    """A clock that moves only when told to: deterministic tests without sleeping.

    :meth:`sleep` advances the clock instead of blocking, so it can be handed to a
    blocking driver in place of :func:`time.sleep`. Thread-safe.
    """

    __slots__ = ("_lock", "_now", "slept")

    def __init__(self, start: float = 0.0) -> None:
        self._now = require_finite("start", start)
        self._lock = threading.Lock()
        self.slept: list[float] = []
        """Every duration passed to :meth:`sleep`, in order."""

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (finite, >= 0) and return the new time.

        Refused (:class:`ValueError`, the clock unchanged) if the new reading would not
        be a finite float: time never reaches infinity.
        """
        require_finite_non_negative("seconds", seconds)
        with self._lock:
            moved = self._now + seconds
            if math.isinf(moved):
                raise ValueError(f"seconds must keep the clock finite (it reads "
                                 f"{self._now!r}), got {seconds!r}")
            self._now = moved
            return moved

    def set(self, when: float) -> None:
        """Move the clock to ``when``, which must not be earlier than now."""
        require_finite("when", when)
        with self._lock:
            if when < self._now:
                raise ValueError(f"when must not be earlier than now ({self._now!r}), got {when!r}")
            self._now = when

    def sleep(self, seconds: float) -> None:
        """Record the sleep and advance the clock by ``seconds`` without blocking."""
        self.advance(seconds)
        self.slept.append(seconds)

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now!r})"
