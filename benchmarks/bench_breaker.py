"""What a circuit breaker costs: ``patterns`` against pybreaker and circuitbreaker.

Guide section 4.2 (断路器模式). Run from the repository root::

    python -m pip install -r benchmarks/requirements.txt
    python benchmarks/bench_breaker.py          # about 20 s
    python benchmarks/bench_breaker.py --quick

(a) Per-call cost through a *closed* breaker around a trivial function, against a bare
    call: call style (``breaker.call(fn)`` / pybreaker's ``breaker.call(fn)``) and
    decorator style (``@breaker`` / ``@circuit``). Interleaved repeats, each calibrated
    to about 50 ms; medians, interquartile ranges, overhead over the bare call, and
    peer/ours ratios of the overhead.
(b) Concurrent throughput: 8 threads, each making calls that sleep 50 ms (an I/O-bound
    dependency) through one shared breaker. A breaker that holds its lock during the
    call serialises them: 8 threads then do the work of one.

Each library is set to trip after many failures (it never trips here); every call
returns a counter that is checked afterwards, so a broken wrapper fails loudly.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version

import circuitbreaker
import pybreaker

from patterns.resilience.breaker import CircuitBreaker

TARGET_OVERHEAD_NS = 600.0
TARGET_RATIO = 5.0


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def function(self) -> Callable[[], int]:
        """A plain function (decorators want a ``__name__``) that counts its calls."""

        def target() -> int:
            self.calls += 1
            return self.calls

        return target


@dataclass
class Case:
    name: str
    build: Callable[[Callable[[], int]], Callable[[], int]]
    samples: list[float] = field(default_factory=list)

    def median(self) -> float:
        return statistics.median(self.samples)

    def iqr(self) -> float:
        q1, _, q3 = statistics.quantiles(self.samples, n=4)
        return (q3 - q1) / 2 / self.median()


def ours_call(target: Callable[[], int]) -> Callable[[], int]:
    breaker = CircuitBreaker("bench", window_size=100, minimum_calls=10)
    return lambda: breaker.call(target)


def ours_decorator(target: Callable[[], int]) -> Callable[[], int]:
    return CircuitBreaker("bench", window_size=100, minimum_calls=10)(target)


def pybreaker_call(target: Callable[[], int]) -> Callable[[], int]:
    breaker = pybreaker.CircuitBreaker(fail_max=1000, reset_timeout=60)
    return lambda: breaker.call(target)


def pybreaker_decorator(target: Callable[[], int]) -> Callable[[], int]:
    return pybreaker.CircuitBreaker(fail_max=1000, reset_timeout=60)(target)


def circuitbreaker_decorator(target: Callable[[], int]) -> Callable[[], int]:
    decorated: Callable[[], int] = circuitbreaker.circuit(
        failure_threshold=1000, recovery_timeout=60)(target)
    return decorated


CASES = {
    "bare call (reference)": lambda target: target,
    "patterns `breaker.call(fn)`": ours_call,
    "patterns `@breaker`": ours_decorator,
    "pybreaker `breaker.call(fn)`": pybreaker_call,
    "pybreaker `@breaker`": pybreaker_decorator,
    "circuitbreaker `@circuit`": circuitbreaker_decorator,
}
PEERS = {  # peer case -> our case of the same form
    "pybreaker `breaker.call(fn)`": "patterns `breaker.call(fn)`",
    "pybreaker `@breaker`": "patterns `@breaker`",
    "circuitbreaker `@circuit`": "patterns `@breaker`",
}


def loop(fn: Callable[[], int], n: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - started) / n


def per_call(repeats: int, target_ms: float) -> list[Case]:
    cases = [Case(name, build) for name, build in CASES.items()]
    runners = []
    for case in cases:
        counter = Counter()
        fn = case.build(counter.function())
        loop(fn, 1000)  # warm up
        n = max(1000, int(target_ms * 1e6 / max(loop(fn, 5000), 1.0)))
        runners.append((case, fn, counter, n))
    for _ in range(repeats):
        for case, fn, counter, n in runners:
            gc.collect()
            before = counter.calls
            case.samples.append(loop(fn, n))
            if counter.calls != before + n:
                raise SystemExit(f"{case.name}: expected {n} calls, saw {counter.calls - before}")
    return cases


def fmt(ns: float) -> str:
    return f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.0f} ns"


def throughput(threads: int = 8, calls_per_thread: int = 10, sleep: float = 0.05) -> list[str]:
    def slow() -> int:
        time.sleep(sleep)
        return 1

    wrappers: dict[str, Callable[[], int]] = {
        "bare call": slow,
        "patterns `breaker.call(fn)`": ours_call_slow(slow),
        "pybreaker `breaker.call(fn)`": pybreaker.CircuitBreaker(
            fail_max=1000, reset_timeout=60)(slow),
        "circuitbreaker `@circuit`": circuitbreaker.circuit(
            failure_threshold=1000, recovery_timeout=60)(slow),
    }
    lines = [f"| case | {threads} threads x {calls_per_thread} calls of {sleep * 1000:.0f} ms: "
             "wall time | calls per second | ratio to bare |", "|---|---:|---:|---:|"]
    bare_rate = 0.0
    for name, fn in wrappers.items():
        barrier = threading.Barrier(threads + 1)

        def work(fn: Callable[[], int] = fn, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            for _ in range(calls_per_thread):
                fn()

        pool = [threading.Thread(target=work) for _ in range(threads)]
        for thread in pool:
            thread.start()
        barrier.wait()
        started = time.perf_counter()
        for thread in pool:
            thread.join()
        elapsed = time.perf_counter() - started
        rate = threads * calls_per_thread / elapsed
        bare_rate = bare_rate or rate
        lines.append(f"| {name} | {elapsed:.2f} s | {rate:.0f} | {rate / bare_rate:.2f} |")
    return lines


def ours_call_slow(slow: Callable[[], int]) -> Callable[[], int]:
    breaker = CircuitBreaker("bench", window_size=100, minimum_calls=10)
    return lambda: breaker.call(slow)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    repeats, target_ms = (5, 10.0) if args.quick else (15, 50.0)
    print("## Circuit breaker cost (guide section 4.2)\n")
    print(f"- Python {platform.python_version()} ({platform.python_implementation()}), "
          f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"- pybreaker {version('pybreaker')}, circuitbreaker {version('circuitbreaker')}")
    print(f"- {repeats} interleaved repeats per case, each about {target_ms:.0f} ms\n")
    cases = {case.name: case for case in per_call(repeats, target_ms)}
    bare = cases["bare call (reference)"].median()
    print("### (a) A call through a closed breaker\n")
    print("| case | median per call | IQR | overhead | overhead ratio (peer / ours) |")
    print("|---|---:|---:|---:|---:|")
    for name, case in cases.items():
        over = case.median() - bare
        ratio = ""
        if name in PEERS:
            ratio = f"{over / (cases[PEERS[name]].median() - bare):.1f}x"
        print(f"| {name} | {fmt(case.median())} | ±{case.iqr():.1%} | "
              f"{'—' if name.startswith('bare') else '+' + fmt(over)} | {ratio} |")
    ours = cases["patterns `breaker.call(fn)`"].median() - bare
    py = cases["pybreaker `breaker.call(fn)`"].median() - bare
    print(f"\nTargets: overhead at most {TARGET_OVERHEAD_NS:.0f} ns: +{ours:.0f} ns -> "
          f"**{'held' if ours <= TARGET_OVERHEAD_NS else 'NOT held'}**; at least "
          f"{TARGET_RATIO:.0f}x below pybreaker's: {py / ours:.1f}x -> "
          f"**{'held' if py / ours >= TARGET_RATIO else 'NOT held'}**\n")
    print("### (b) Concurrent throughput around a slow call\n")
    print("\n".join(throughput()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
