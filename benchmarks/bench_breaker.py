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
(b) Every configuration, off the default path, in the same run: a time window, a
    slow-call threshold (count and time windows), a listener subscribed (ours receives
    an event object per call; pybreaker's listener a ``success`` call), each beside
    pybreaker's ``call`` (with and without a listener) and circuitbreaker; the ratio is
    pybreaker's overhead (without a listener, or with one for our listener rows) over
    ours.
(c) asyncio: ``await breaker.acall(fn)`` and ``@breaker`` on an ``async def`` (count
    and time windows), beside circuitbreaker's ``@circuit`` on the same ``async def``
    and a bare ``await`` (pybreaker's ``call_async`` needs Tornado).
(d) Concurrent throughput: 8 threads, each making calls that sleep 50 ms (an I/O-bound
    dependency) through one shared breaker. A breaker that holds its lock during the
    call serialises them: 8 threads then do the work of one.

Each library is set to trip after many failures (it never trips here); every call
returns a counter that is checked afterwards, so a broken wrapper fails loudly.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

import circuitbreaker
import pybreaker

from patterns.resilience.breaker import CircuitBreaker

TARGET_OVERHEAD_NS = 600.0
TARGET_RATIO = 5.0
TARGET_CONFIG_SHARE = 0.5  # every configuration: at most half of pybreaker's overhead


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def function(self) -> Callable[[], int]:
        """A plain function (decorators want a ``__name__``) that counts its calls."""

        def target() -> int:
            self.calls += 1
            return self.calls

        return target

    def async_function(self) -> Callable[[], Awaitable[int]]:
        """The same, as an ``async def``."""

        async def target() -> int:
            self.calls += 1
            return self.calls

        return target


@dataclass
class Case:
    name: str
    build: Callable[[Any], Any]  # target -> wrapped target (sync or async)
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


def ours(**options: object) -> CircuitBreaker:
    """Our breaker, set like the peers: judges after 10 calls, never trips here."""
    return CircuitBreaker("bench", minimum_calls=10, **options)  # type: ignore[arg-type]


class PyListener(pybreaker.CircuitBreakerListener):
    """A pybreaker listener that counts successes (our listener counts events)."""

    def __init__(self) -> None:
        self.seen = 0

    def success(self, cb: pybreaker.CircuitBreaker) -> None:
        self.seen += 1


def configured(**options: object) -> Callable[[Callable[[], int]], Callable[[], int]]:
    def build(target: Callable[[], int]) -> Callable[[], int]:
        breaker = ours(**options)
        return lambda: breaker.call(target)

    return build


def with_listener(**options: object) -> Callable[[Callable[[], int]], Callable[[], int]]:
    def build(target: Callable[[], int]) -> Callable[[], int]:
        breaker = ours(**options)
        seen: list[object] = []
        breaker.listeners.add(seen.append)

        def call() -> int:
            value = breaker.call(target)
            seen.clear()
            return value

        return call

    return build


def pybreaker_listener(target: Callable[[], int]) -> Callable[[], int]:
    breaker = pybreaker.CircuitBreaker(fail_max=1000, reset_timeout=60,
                                       listeners=[PyListener()])
    return lambda: breaker.call(target)


TIME = {"window_type": "time", "window_size": 60.0, "window_buckets": 60}
SLOW = {"slow_call_duration": 10.0, "slow_call_rate_threshold": 0.5}
CONFIG_CASES = {
    "bare call (reference)": lambda target: target,
    "patterns count window (default)": configured(window_size=100),
    "patterns time window 60 s / 60 buckets": configured(**TIME),
    "patterns slow-call threshold, count window": configured(window_size=100, **SLOW),
    "patterns slow-call threshold, time window": configured(**TIME, **SLOW),
    "patterns count window + listener": with_listener(window_size=100),
    "patterns time window + slow calls + listener": with_listener(**TIME, **SLOW),
    "patterns window of 10^6 calls": configured(window_size=1_000_000),
    "pybreaker `breaker.call(fn)`": pybreaker_call,
    "pybreaker `breaker.call(fn)` + listener": pybreaker_listener,
    "circuitbreaker `@circuit`": circuitbreaker_decorator,
}
LISTENER_PEER = "pybreaker `breaker.call(fn)` + listener"
PLAIN_PEER = "pybreaker `breaker.call(fn)`"

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


def per_call(repeats: int, target_ms: float,
             builders: dict[str, Callable[[Any], Any]] | None = None,
             timer: Callable[[Any, int], float] = loop,
             make_target: Callable[[Counter], Any] = Counter.function) -> list[Case]:
    """Median-ready samples of each case: calibrated to about ``target_ms`` per sample,
    repeats interleaved; ``timer(fn, n)`` times ``n`` calls (:func:`loop`, or awaits
    them on one event loop for the asyncio cases)."""
    cases = [Case(name, build) for name, build in (builders or CASES).items()]
    runners = []
    for case in cases:
        counter = Counter()
        fn = case.build(make_target(counter))
        timer(fn, 1000)  # warm up
        n = max(1000, int(target_ms * 1e6 / max(timer(fn, 5000), 1.0)))
        runners.append((case, fn, counter, n))
    for _ in range(repeats):
        for case, fn, counter, n in runners:
            gc.collect()
            before = counter.calls
            case.samples.append(timer(fn, n))
            if counter.calls != before + n:
                raise SystemExit(f"{case.name}: expected {n} calls, saw {counter.calls - before}")
    return cases


# --------------------------------------------------------------------------- asyncio


def acall_of(**options: object) -> Callable[[Callable[[], Awaitable[int]]],
                                            Callable[[], Awaitable[int]]]:
    def build(target: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[int]]:
        breaker = ours(**options)
        return lambda: breaker.acall(target)

    return build


def decorated_async(**options: object) -> Callable[[Callable[[], Awaitable[int]]],
                                                   Callable[[], Awaitable[int]]]:
    def build(target: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[int]]:
        breaker = ours(**options)
        return breaker(target)

    return build


def circuitbreaker_async(target: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[int]]:
    decorated: Callable[[], Awaitable[int]] = circuitbreaker.circuit(
        failure_threshold=1000, recovery_timeout=60)(target)
    return decorated


ASYNC_CASES = {
    "bare `await fn()` (reference)": lambda target: target,
    "patterns `await breaker.acall(fn)`": acall_of(window_size=100),
    "patterns `@breaker` async def": decorated_async(window_size=100),
    "patterns `acall`, time window": acall_of(**TIME),
    "patterns `acall`, slow-call threshold": acall_of(window_size=100, **SLOW),
    "circuitbreaker `@circuit` async def": circuitbreaker_async,
}


async def aloop(fn: Callable[[], Awaitable[int]], n: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(n):
        await fn()
    return (time.perf_counter_ns() - started) / n


def async_per_call(repeats: int, target_ms: float) -> list[Case]:
    with asyncio.Runner() as runner:
        return per_call(repeats, target_ms, ASYNC_CASES,
                        lambda fn, n: runner.run(aloop(fn, n)), Counter.async_function)


def fmt(ns: float) -> str:
    return f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.0f} ns"


def row(name: str, case: Case, over: float, ratio: str) -> str:
    """One table row: median, spread, overhead over the bare call, ratio."""
    overhead = "—" if name.startswith("bare") else "+" + fmt(over)
    return f"| {name} | {fmt(case.median())} | ±{case.iqr():.1%} | {overhead} | {ratio} |"


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
        print(row(name, case, over, ratio))
    ours = cases["patterns `breaker.call(fn)`"].median() - bare
    py = cases["pybreaker `breaker.call(fn)`"].median() - bare
    print(f"\nTargets: overhead at most {TARGET_OVERHEAD_NS:.0f} ns: +{ours:.0f} ns -> "
          f"**{'held' if ours <= TARGET_OVERHEAD_NS else 'NOT held'}**; at least "
          f"{TARGET_RATIO:.0f}x below pybreaker's: {py / ours:.1f}x -> "
          f"**{'held' if py / ours >= TARGET_RATIO else 'NOT held'}**\n")
    print("### (b) Every configuration, beside the peers\n")
    print("Ratio: pybreaker's `call` overhead (with a listener for our listener rows) "
          "over ours.\n")
    configs = {case.name: case for case in per_call(repeats, target_ms, CONFIG_CASES)}
    bare = configs["bare call (reference)"].median()
    plain_peer = configs[PLAIN_PEER].median() - bare
    listener_peer = configs[LISTENER_PEER].median() - bare
    print("| case | median per call | IQR | overhead | pybreaker's overhead / ours |")
    print("|---|---:|---:|---:|---:|")
    worst = 0.0
    for name, case in configs.items():
        over = case.median() - bare
        ratio = ""
        if name.startswith("patterns"):
            peer = listener_peer if "listener" in name else plain_peer
            ratio = f"{peer / over:.1f}x"
            worst = max(worst, over / peer)
        print(row(name, case, over, ratio))
    print(f"\nTarget: every configuration at most {TARGET_CONFIG_SHARE:.0%} of pybreaker's "
          f"overhead: worst {worst:.0%} -> "
          f"**{'held' if worst <= TARGET_CONFIG_SHARE else 'NOT held'}**\n")
    print("### (c) asyncio\n")
    acases = {case.name: case for case in async_per_call(repeats, target_ms)}
    abare = acases["bare `await fn()` (reference)"].median()
    peer = acases["circuitbreaker `@circuit` async def"].median() - abare
    print("| case | median per call | IQR | overhead | circuitbreaker's overhead / ours |")
    print("|---|---:|---:|---:|---:|")
    aworst = 0.0
    for name, acase in acases.items():
        over = acase.median() - abare
        ratio = ""
        if name.startswith("patterns"):
            ratio = f"{peer / over:.1f}x"
            aworst = max(aworst, over / plain_peer)
        print(row(name, acase, over, ratio))
    print(f"\nTarget: every `acall` configuration at most {TARGET_CONFIG_SHARE:.0%} of "
          f"pybreaker's (sync) `call` overhead: worst {aworst:.0%} -> "
          f"**{'held' if aworst <= TARGET_CONFIG_SHARE else 'NOT held'}**\n")
    print("### (d) Concurrent throughput around a slow call\n")
    print("\n".join(throughput()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
