"""Workloads: when requests arrive.

Arrival times are computed up front as arrays (fast, and easy to plot and test), then
:func:`start_at` turns them into SimPy processes.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from typing import Any

import numpy as np
import simpy

from patterns._validation import require_finite_non_negative


def poisson_arrivals(
    rate: float, horizon: float, rng: np.random.Generator, *, start: float = 0.0
) -> np.ndarray:
    """Arrival times of a Poisson process of ``rate`` per second in ``[start, horizon)``."""
    require_finite_non_negative("rate", rate)
    if horizon < start:
        raise ValueError(f"horizon must be >= start ({start!r}), got {horizon!r}")
    if rate == 0 or horizon == start:
        return np.empty(0)
    count = rng.poisson(rate * (horizon - start))
    return np.sort(rng.uniform(start, horizon, size=count))


def bursty_arrivals(
    base_rate: float,
    burst_rate: float,
    horizon: float,
    rng: np.random.Generator,
    *,
    mean_calm: float = 5.0,
    mean_burst: float = 1.0,
) -> np.ndarray:
    """Arrivals of an on/off (Markov-modulated) Poisson process.

    Calm periods (``base_rate`` per second) and bursts (``burst_rate`` per second)
    alternate, with exponentially distributed lengths of mean ``mean_calm`` and
    ``mean_burst`` seconds. The long-run rate is the time-weighted mean of the two.
    """
    require_finite_non_negative("base_rate", base_rate)
    require_finite_non_negative("burst_rate", burst_rate)
    for name, value in (("mean_calm", mean_calm), ("mean_burst", mean_burst)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
    pieces: list[np.ndarray] = []
    now, bursting = 0.0, False
    while now < horizon:
        length = rng.exponential(mean_burst if bursting else mean_calm)
        end = min(horizon, now + length)
        pieces.append(poisson_arrivals(burst_rate if bursting else base_rate, end, rng, start=now))
        now, bursting = end, not bursting
    return np.concatenate(pieces) if pieces else np.empty(0)


def start_at(
    env: simpy.Environment,
    times: Iterable[float],
    make_process: Callable[[int], Generator[Any, Any, Any]],
) -> simpy.Process:
    """Start ``make_process(i)`` as a SimPy process at the ``i``-th of ``times``."""

    def source() -> Generator[Any, Any, None]:
        for index, when in enumerate(times):
            if when > env.now:
                yield env.timeout(when - env.now)
            env.process(make_process(index))

    return env.process(source())
