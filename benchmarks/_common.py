"""Timing helper shared by the benchmarks of this folder (run from the repository root)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def per_call_us(fn: Callable[[], object], repeats: int, target_s: float) -> float:
    """Median over ``repeats`` of the mean time of one call, in microseconds.

    The number of calls per repeat is calibrated first so that one repeat lasts about
    ``target_s`` seconds.
    """
    n = 1
    while True:  # calibrate: one repeat lasts about target_s
        started = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - started >= target_s / 4 or n >= 1 << 20:
            break
        n *= 2
    n = max(1, int(n * target_s / max(time.perf_counter() - started, 1e-9)))
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(samples)
