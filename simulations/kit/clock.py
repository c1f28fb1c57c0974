"""The bridge between SimPy's time and the library's :class:`patterns.clock.Clock`."""

from __future__ import annotations

import simpy


class SimClock:
    """A :class:`patterns.clock.Clock` that reads the simulation's ``env.now`` (seconds).

    Hand it to any pattern (a retry budget, a circuit breaker, a rate limiter) and the
    pattern lives in simulated time.
    """

    __slots__ = ("env",)

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env

    def now(self) -> float:
        return float(self.env.now)

    def __repr__(self) -> str:
        return f"SimClock(now={self.env.now!r})"
