"""Per-call cost of retry wrappers: ``patterns`` against tenacity, backoff and stamina.

Guide section 4.1 (重试与回退策略). Run from the repository root::

    python -m pip install -r benchmarks/requirements.txt
    python benchmarks/bench_retry.py            # about 15 s
    python benchmarks/bench_retry.py --quick    # a few seconds, noisier

Two scenarios, each a Markdown table on stdout:

(a) success at once -- the wrapped function returns on the first attempt. The
    reference is a bare call of the same function.
(b) two failures, then success -- three attempts and two zero-length waits per call.
    The reference is a hand-written ``for``/``try`` loop doing the same.

Every library is configured alike: at most 3 attempts, zero wait, no jitter, retry on
any ``Exception``, no retry hooks (stamina's are removed, see ``configure_stamina``;
backoff keeps its default logging, and a second row shows it with ``logger=None``;
see ``build_*`` below). Waiting:
``time.sleep`` is replaced by a no-op Python function for the timed runs, and every
library reaches it through its own default sleep path (tenacity and stamina via
``tenacity.nap.sleep``, backoff via ``time.sleep``, ``patterns`` via the ``sleep`` it
was given). A real ``time.sleep(0)`` is a system call that costs tens of microseconds
on this machine (the script prints what it costs here), which would bury the
differences between the libraries under noise.

Method, after :mod:`timeit`: each case is warmed up, then calibrated so that one
repeat (``n`` calls in a loop) takes about ``--target-ms``; the repeats of all cases
are interleaved, so that drifting machine load hits every case alike; the table gives
the median per-call time over the repeats, the interquartile range, the overhead
over the scenario's reference, and peer-over-ours ratios (against our driver of the
same form: a call-style peer against ``policy.call``, a decorator against ``@policy``).
The garbage collector stays on (the garbage a library makes is part of its cost);
``gc.collect()`` runs between repeats so that no case pays for another's.

Every call returns a running count of attempts; after each repeat the script checks
that the target ran exactly ``n * attempts`` times and that the last call returned
the last count, so a wrapper that skipped, repeated or swallowed an attempt fails
loudly instead of looking fast.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

import backoff
import stamina
import stamina.instrumentation
import tenacity

import patterns
from patterns.resilience.backoff import ConstantBackoff
from patterns.resilience.retry import RetryPolicy, StopAfterAttempts

ATTEMPTS = 3
"""Attempts allowed in all, the first one included, for every library."""

OURS_FORMS = {"call", "decorator"}


class TransientError(Exception):
    """What the flaky target raises."""


class Target:
    """A function that fails ``failures`` times, then succeeds, and so on, with a count.

    ``fn`` is a plain closure (not a bound method), so a "bare call" is as cheap as a
    call of a trivial Python function gets. It returns the number of attempts so far.
    """

    def __init__(self, failures: int) -> None:
        calls = 0
        period = failures + 1

        def target() -> int:
            nonlocal calls
            calls += 1
            if calls % period:
                raise TransientError(calls)
            return calls

        def count() -> int:
            return calls

        self.fn: Callable[[], int] = target
        self.count = count
        self.attempts_per_call = period


# --------------------------------------------------------------------------- builders
#
# A builder takes the target and returns ``(callable, args)``; the timed loop runs
# ``callable(*args)``. Builders run while ``time.sleep`` is patched, so a library that
# binds ``time.sleep`` when it is configured binds the patched one.

Built = tuple[Callable[..., int], tuple[Any, ...]]


def build_bare(target: Callable[[], int]) -> Built:
    return target, ()


def build_by_hand(target: Callable[[], int]) -> Built:
    """The reference for (b): the loop one would write without a library."""

    def by_hand() -> int:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return target()
            except Exception:
                if attempt == ATTEMPTS:
                    raise
                time.sleep(0.0)
        raise AssertionError("unreachable")

    return by_hand, ()


def our_policy() -> RetryPolicy:
    # ``sleep=time.sleep`` is the default, but the default is bound when the module is
    # imported; passing it here picks up the patched function like the peers do.
    return RetryPolicy(
        stop=StopAfterAttempts(ATTEMPTS), backoff=ConstantBackoff(0.0), sleep=time.sleep
    )


def build_ours_call(target: Callable[[], int]) -> Built:
    return our_policy().call, (target,)


def build_ours_decorator(target: Callable[[], int]) -> Built:
    return our_policy()(target), ()


def tenacity_options() -> dict[str, Any]:
    return {
        "stop": tenacity.stop_after_attempt(ATTEMPTS),
        "wait": tenacity.wait_none(),
        "retry": tenacity.retry_if_exception_type(Exception),
        "reraise": True,
    }


def build_tenacity_call(target: Callable[[], int]) -> Built:
    return tenacity.Retrying(**tenacity_options()), (target,)


def build_tenacity_decorator(target: Callable[[], int]) -> Built:
    return tenacity.retry(**tenacity_options())(target), ()


def build_backoff(target: Callable[[], int]) -> Built:
    # Its default on_backoff handler logs at INFO on the "backoff" logger; with logging
    # unconfigured the record is dropped, but the handler still formats the exception.
    decorator = backoff.on_exception(
        backoff.constant, Exception, max_tries=ATTEMPTS, interval=0, jitter=None
    )
    return decorator(target), ()


def build_backoff_quiet(target: Callable[[], int]) -> Built:
    decorator = backoff.on_exception(
        backoff.constant, Exception, max_tries=ATTEMPTS, interval=0, jitter=None,
        logger=None,
    )
    return decorator(target), ()


STAMINA_OPTIONS: dict[str, Any] = {
    "attempts": ATTEMPTS,
    "timeout": None,  # stop on attempts only, like the others
    "wait_initial": 0.0,
    "wait_max": 0.0,
    "wait_jitter": 0.0,
}


def build_stamina_decorator(target: Callable[[], int]) -> Built:
    return stamina.retry(on=Exception, **STAMINA_OPTIONS)(target), ()


def build_stamina_call(target: Callable[[], int]) -> Built:
    return stamina.RetryingCaller(**STAMINA_OPTIONS).on(Exception), (target,)


def configure_stamina() -> None:
    """Drop stamina's on-retry hooks; keep retrying active and out of test mode.

    By default stamina counts every retry in Prometheus (when ``prometheus_client`` is
    installed, as it is here) and logs it at WARNING (via structlog if installed, else
    ``logging``, which with no configuration prints to stderr) -- per retry, and far
    more costly than the retrying itself. The other libraries get no such hooks either.
    """
    stamina.instrumentation.set_on_retry_hooks([])
    stamina.set_active(True)
    assert stamina.is_active(), "stamina must retry for real"
    assert not stamina.is_testing(), "stamina's test mode changes attempts and waits"
    assert stamina.instrumentation.get_on_retry_hooks() == ()


# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    label: str
    build: Callable[[Callable[[], int]], Built]
    form: str  # "reference", "call" or "decorator"
    ours: bool = False
    target: Target = field(init=False)
    fn: Callable[..., int] = field(init=False)
    args: tuple[Any, ...] = field(init=False)
    expected: int = field(init=False, default=0)
    n: int = field(init=False, default=1)
    per_call_ns: list[float] = field(init=False, default_factory=list)

    def setup(self, failures: int) -> None:
        self.target = Target(failures)
        self.fn, self.args = self.build(self.target.fn)
        self.expected = 0

    def run(self, n: int) -> int:
        """Time ``n`` calls; check that every attempt ran; return the nanoseconds."""
        fn, args = self.fn, self.args
        result = None
        start = time.perf_counter_ns()
        for _ in itertools.repeat(None, n):
            result = fn(*args)
        elapsed = time.perf_counter_ns() - start
        self.expected += n * self.target.attempts_per_call
        count = self.target.count()
        if count != self.expected or result != count:
            raise AssertionError(
                f"{self.label}: {count} attempts for {n} calls (expected {self.expected}), "
                f"last result {result!r}"
            )
        return elapsed

    @property
    def median(self) -> float:
        return statistics.median(self.per_call_ns)

    @property
    def iqr_percent(self) -> float:
        if len(self.per_call_ns) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.per_call_ns, n=4)
        return 100.0 * (q3 - q1) / 2.0 / self.median


def success_cases() -> list[Case]:
    return [
        Case("bare call (reference)", build_bare, "reference"),
        Case("patterns `policy.call(fn)`", build_ours_call, "call", ours=True),
        Case("patterns `@policy`", build_ours_decorator, "decorator", ours=True),
        Case("tenacity `Retrying()(fn)`", build_tenacity_call, "call"),
        Case("tenacity `@retry`", build_tenacity_decorator, "decorator"),
        Case("backoff `@on_exception`", build_backoff, "decorator"),
        Case("stamina `@retry`", build_stamina_decorator, "decorator"),
        Case("stamina `RetryingCaller`", build_stamina_call, "call"),
    ]


def failure_cases() -> list[Case]:
    return [
        Case("hand-written loop (reference)", build_by_hand, "reference"),
        Case("patterns `policy.call(fn)`", build_ours_call, "call", ours=True),
        Case("patterns `@policy`", build_ours_decorator, "decorator", ours=True),
        Case("tenacity `Retrying()(fn)`", build_tenacity_call, "call"),
        Case("tenacity `@retry`", build_tenacity_decorator, "decorator"),
        Case("backoff `@on_exception`", build_backoff, "decorator"),
        Case("backoff `@on_exception(logger=None)`", build_backoff_quiet, "decorator"),
        Case("stamina `@retry`", build_stamina_decorator, "decorator"),
        Case("stamina `RetryingCaller`", build_stamina_call, "call"),
    ]


# --------------------------------------------------------------------------- sleeping


@contextmanager
def sleep_replaced(replacement: Callable[[float], None]) -> Iterator[None]:
    """Replace :func:`time.sleep` for everyone in the process, and restore it."""
    real = time.sleep
    time.sleep = replacement
    try:
        yield
    finally:
        time.sleep = real


def no_sleep(seconds: float) -> None:
    """The wait every library gets in the timed runs."""
    return None


def check_waits(cases: list[Case], failures: int) -> None:
    """One call per case with a recording sleep: the waits must be exactly zero."""
    for case in cases:
        slept: list[float] = []
        with sleep_replaced(slept.append):
            case.setup(failures)
            case.run(1)
        if slept != [0.0] * failures:
            raise AssertionError(f"{case.label}: slept {slept!r}, expected {failures} x 0")


def real_sleep_zero_ns() -> float:
    """What one real ``time.sleep(0)`` costs here, median of a few hundred."""
    samples = []
    for _ in range(300):
        start = time.perf_counter_ns()
        time.sleep(0)
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples)


# --------------------------------------------------------------------------- timing


def calibrate(case: Case, target_ns: float) -> int:
    """The number of calls per repeat that makes a repeat last about ``target_ns``."""
    n = 1
    while True:
        gc.collect()
        elapsed = case.run(n)
        if elapsed >= target_ns / 10 or n >= 10**8:
            return max(1, round(n * target_ns / max(elapsed, 1)))
        n *= 10


def measure(cases: list[Case], failures: int, repeats: int, target_ns: float) -> None:
    check_waits(cases, failures)
    with sleep_replaced(no_sleep):
        for case in cases:
            case.setup(failures)
            case.run(200)  # warm-up, including any one-time lazy set-up
        for case in cases:
            case.n = calibrate(case, target_ns)
            case.run(case.n)  # warm-up at full length
        for _ in range(repeats):
            for case in cases:
                gc.collect()
                case.per_call_ns.append(case.run(case.n) / case.n)


# --------------------------------------------------------------------------- report


def fmt_time(ns: float, *, signed: bool = False) -> str:
    sign = ("+" if ns >= 0 else "-") if signed else ""
    value = abs(ns) if signed else ns
    if value < 1_000:
        return f"{sign}{value:.0f} ns"
    if value < 1_000_000:
        return f"{sign}{value / 1_000:.2f} µs"
    return f"{sign}{value / 1_000_000:.2f} ms"


def fmt_ratio(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.1f}×"


def table(title: str, cases: list[Case]) -> list[str]:
    reference = next(case for case in cases if case.form == "reference")
    ours = {case.form: case for case in cases if case.ours}
    ref = reference.median
    lines = [
        f"### {title}",
        "",
        f"Overhead is over the {reference.label.removesuffix(' (reference)')}; "
        "the ratios divide a peer's time (and overhead) by those of our driver of the "
        "same form.",
        "",
        "| case | median per call | IQR | overhead | time ratio | overhead ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        overhead = case.median - ref
        time_ratio = overhead_ratio = None
        if case.form in ours and not case.ours:
            mine = ours[case.form]
            time_ratio = case.median / mine.median
            mine_overhead = mine.median - ref
            overhead_ratio = overhead / mine_overhead if mine_overhead > 0 else None
        lines.append(
            f"| {case.label} | {fmt_time(case.median)} | ±{case.iqr_percent:.1f} % | "
            f"{'—' if case is reference else fmt_time(overhead, signed=True)} | "
            f"{fmt_ratio(time_ratio)} | {fmt_ratio(overhead_ratio)} |"
        )
    lines.append("")
    return lines


def overhead(cases: list[Case], label_start: str) -> float:
    reference = next(case for case in cases if case.form == "reference")
    case = next(case for case in cases if case.label.startswith(label_start))
    return case.median - reference.median


def targets(success: list[Case]) -> list[str]:
    """Check the two targets of the success path; return report lines."""
    ours_call = overhead(success, "patterns `policy.call")
    ours_deco = overhead(success, "patterns `@policy")
    ten_call = overhead(success, "tenacity `Retrying")
    ten_deco = overhead(success, "tenacity `@retry")
    worst = max(ours_call, ours_deco)
    limit_ok = worst <= 1_000
    ratios = (ten_call / ours_call, ten_deco / ours_deco)
    ratio_ok = min(ratios) >= 20
    return [
        "### Targets (success path)",
        "",
        f"- at most 1 µs over a bare call: `policy.call` {fmt_time(ours_call, signed=True)}, "
        f"`@policy` {fmt_time(ours_deco, signed=True)} -> "
        f"**{'held' if limit_ok else 'MISSED'}**",
        f"- at least 20× less overhead than tenacity: `Retrying` / `policy.call` "
        f"{ratios[0]:.1f}×, `@retry` / `@policy` {ratios[1]:.1f}× -> "
        f"**{'held' if ratio_ok else 'MISSED'}**",
        "",
    ]


def header(args: argparse.Namespace, sleep_zero_ns: float) -> list[str]:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return [
        "## Retry overhead per call (guide section 4.1)",
        "",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.machine()}, {cpus} CPUs, load average {load}",
        f"- patterns {patterns.__version__}, tenacity {version('tenacity')}, "
        f"backoff {version('backoff')}, stamina {version('stamina')}",
        f"- {args.repeats} interleaved repeats per case, each about {args.target_ms:g} ms; "
        f"{ATTEMPTS} attempts at most; zero waits through a no-op `time.sleep` "
        f"(a real `time.sleep(0)` costs {fmt_time(sleep_zero_ns)} here)",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="5 repeats of about 10 ms each (default: 15 of about 50 ms)")
    parser.add_argument("--repeats", type=int, help="repeats per case")
    parser.add_argument("--target-ms", type=float, help="duration of one repeat, in ms")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 5 if args.quick else 15
    if args.target_ms is None:
        args.target_ms = 10.0 if args.quick else 50.0
    if args.repeats < 1 or args.target_ms <= 0:
        parser.error("--repeats and --target-ms must be positive")

    configure_stamina()
    sleep_zero_ns = real_sleep_zero_ns()
    target_ns = args.target_ms * 1e6

    success = success_cases()
    measure(success, failures=0, repeats=args.repeats, target_ns=target_ns)
    failure = failure_cases()
    measure(failure, failures=ATTEMPTS - 1, repeats=args.repeats, target_ns=target_ns)

    lines = header(args, sleep_zero_ns)
    lines += table("(a) Success at the first attempt", success)
    lines += table(f"(b) {ATTEMPTS - 1} failures, then success (zero waits)", failure)
    lines += targets(success)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
