"""What a deadline costs per call: ``patterns`` against func-timeout and stopit.

Guide section 4.4 (超时与取消). Run from the repository root::

    python -m pip install -r benchmarks/requirements.txt
    python benchmarks/bench_timeout.py           # about 15 s
    python benchmarks/bench_timeout.py --quick

Per-call time of a trivial function that finishes well inside a 1 s deadline, against a
bare call (median of interleaved repeats, each about 50 ms of calls):

* ``TimeoutPolicy(1.0).call(fn)``: the function runs in the calling thread; a deadline
  timer is pushed onto the shared timer thread (``patterns._timers``) and cancelled;
* func-timeout's ``func_timeout(1.0, fn)``: runs the function in a new thread per call
  and joins it;
* stopit's ``ThreadingTimeout(1.0)`` context manager: a ``threading.Timer`` per call;
* in asyncio, ``await policy.acall(fn)`` beside the standard ``asyncio.timeout(1.0)``.

Every call returns a counter that is checked afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import func_timeout
import stopit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from patterns.resilience.timeout import CancellationToken, TimeoutPolicy


def per_call(run: Callable[[int], None], budget: float = 0.05) -> float:
    """Seconds per call of ``run(n)`` (which makes n calls), calibrated to ``budget``."""
    n = 1
    while True:
        started = time.perf_counter()
        run(n)
        elapsed = time.perf_counter() - started
        if elapsed > budget / 4 or n > 1_000_000:
            return elapsed / n
        n *= 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    repeats = 5 if parser.parse_args().quick else 21
    calls = [0]

    def target(_token: CancellationToken | None = None) -> int:
        calls[0] += 1
        return calls[0]

    policy = TimeoutPolicy(1.0)

    def bare(n: int) -> None:
        for _ in range(n):
            target()

    def ours(n: int) -> None:
        for _ in range(n):
            policy.call(target)

    def func_timeout_peer(n: int) -> None:
        for _ in range(n):
            func_timeout.func_timeout(1.0, target)

    def stopit_peer(n: int) -> None:
        for _ in range(n):
            with stopit.ThreadingTimeout(1.0):
                target()

    async def atarget(_token: CancellationToken | None = None) -> int:
        return target()

    def ours_async(n: int) -> None:
        async def loop() -> None:
            for _ in range(n):
                await policy.acall(atarget)
        asyncio.run(loop())

    def asyncio_timeout(n: int) -> None:
        async def loop() -> None:
            for _ in range(n):
                async with asyncio.timeout(1.0):
                    await atarget()
        asyncio.run(loop())

    def async_bare(n: int) -> None:
        async def loop() -> None:
            for _ in range(n):
                await atarget()
        asyncio.run(loop())

    cases = {
        "bare call": bare,
        "patterns TimeoutPolicy.call": ours,
        f"func-timeout {version('func-timeout')} func_timeout": func_timeout_peer,
        f"stopit {version('stopit')} ThreadingTimeout": stopit_peer,
        "asyncio: bare await": async_bare,
        "asyncio: patterns policy.acall": ours_async,
        "asyncio: asyncio.timeout": asyncio_timeout,
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    gc.collect()
    for _ in range(repeats):  # interleaved, so drift hits every case alike
        for name, run in cases.items():
            before = calls[0]
            samples[name].append(per_call(run))
            assert calls[0] > before, name
    medians = {name: statistics.median(values) for name, values in samples.items()}

    print(f"CPython {platform.python_version()}, {platform.machine()}, repeats {repeats}\n")
    print("| case | per call (µs) | overhead over bare (µs) | overhead / ours |")
    print("|---|---:|---:|---:|")
    blocking_ours = medians["patterns TimeoutPolicy.call"] - medians["bare call"]
    async_ours = medians["asyncio: patterns policy.acall"] - medians["asyncio: bare await"]
    for name, value in medians.items():
        is_async = name.startswith("asyncio")
        reference = medians["asyncio: bare await" if is_async else "bare call"]
        overhead = value - reference
        ours_overhead = async_ours if is_async else blocking_ours
        ratio = "" if "bare" in name else f"{overhead / ours_overhead:.1f}x"
        print(f"| {name} | {value * 1e6:.2f} | {overhead * 1e6:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
