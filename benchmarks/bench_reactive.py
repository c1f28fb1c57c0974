"""Per-item cost of reactive streams: ``patterns`` against ReactiveX for Python (``reactivex``).

Guide section 1.2 (反应式数据流). Run from the repository root::

    python -m pip install -r benchmarks/requirements.txt
    python benchmarks/bench_reactive.py            # about a minute
    python benchmarks/bench_reactive.py --quick    # about 20 s, noisier

Scenarios, one Markdown table on stdout (per-item time, median over repeats):

(a) ``range(n) -> map -> filter -> scan -> subscriber``, a cold source run to completion;
(b) a ``Subject`` pushed ``n`` values by hand, through ``map``, to one subscriber;
(c) ``range(n) -> buffer_with_count(100) -> subscriber``;
(d) a bounded queue between producer and consumer, ``offer``/``poll`` one item at a time:
    :class:`~patterns.dataflow.reactive.BackpressureBuffer` (drop_oldest, bound 1024)
    beside :class:`queue.Queue` (``put_nowait``/``get_nowait``) and a bare
    :class:`collections.deque` (no lock, no bound check: the floor).

(e) long cold chains, ``--chain-items`` values per run (10^6 by default), one operator
    at a time and all three: ``map``, ``filter``, ``scan``, ``map -> filter -> scan``
    (issue 11: the chain was 3.6x slower than ReactiveX).

The reference of (a)-(c) and (e) is a plain ``for`` loop doing the same arithmetic. Every
run checks its result (the last accumulated value, the number of lists), so a library
that skipped items could not look fast. Differences to keep in mind when reading ratios:
``patterns`` enforces the observer contract where it can be broken (the subscriber's
observer, subjects, merge, user producers; a ``Subject`` serializes concurrent callers
with a lock per signal) and lets its own operators pass values on without a lock per
stage; ReactiveX's operators trust their upstream and only the final observer is wrapped
(``AutoDetachObserver``, no lock), and it does not serialize concurrent producers.
"""

from __future__ import annotations

import argparse
import gc
import platform
import queue
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from importlib.metadata import version

import reactivex
from reactivex import operators as ops
from reactivex.subject import Subject as RxSubject

from patterns.dataflow.reactive import BackpressureBuffer, Observable, Subject


def _expected_scan(n: int) -> int:
    return sum(x * 3 for x in range(n) if (x * 3) % 2 == 0)


# ----------------------------------------------------------------- (a) cold chain


def chain_loop(n: int) -> object:
    acc = 0
    for x in range(n):
        y = x * 3
        if y % 2 == 0:
            acc += y
    return acc


def chain_patterns(n: int) -> object:
    last: list[int] = []
    (Observable.from_iterable(range(n)).map(lambda x: x * 3).filter(lambda y: y % 2 == 0)
     .scan(lambda a, y: a + y, 0).subscribe(last.append))
    return last[-1]


def chain_reactivex(n: int) -> object:
    last: list[int] = []
    reactivex.from_iterable(range(n)).pipe(
        ops.map(lambda x: x * 3), ops.filter(lambda y: y % 2 == 0),
        ops.scan(lambda a, y: a + y, 0)).subscribe(last.append)
    return last[-1]


# ----------------------------------------------------------------- (b) hot subject


def subject_patterns(n: int) -> object:
    subject: Subject[int] = Subject()
    total = [0]

    def add(y: int) -> None:
        total[0] += y

    subject.map(lambda x: x * 3).subscribe(add)
    for x in range(n):
        subject.on_next(x)
    return total[0]


def subject_reactivex(n: int) -> object:
    subject: RxSubject[int] = RxSubject()
    total = [0]

    def add(y: int) -> None:
        total[0] += y

    subject.pipe(ops.map(lambda x: x * 3)).subscribe(add)
    for x in range(n):
        subject.on_next(x)
    return total[0]


def subject_loop(n: int) -> object:
    total = 0
    for x in range(n):
        total += x * 3
    return total


# ----------------------------------------------------------------- (c) buffer by count


def batches_patterns(n: int) -> object:
    count = [0]
    Observable.from_iterable(range(n)).buffer_with_count(100).subscribe(
        lambda items: count.__setitem__(0, count[0] + 1))
    return count[0]


def batches_reactivex(n: int) -> object:
    count = [0]
    reactivex.from_iterable(range(n)).pipe(ops.buffer_with_count(100)).subscribe(
        lambda items: count.__setitem__(0, count[0] + 1))
    return count[0]


def batches_loop(n: int) -> object:
    count = 0
    items: list[int] = []
    for x in range(n):
        items.append(x)
        if len(items) == 100:
            count += 1
            items = []
    return count + (1 if items else 0)


# ----------------------------------------------------------------- (d) bounded queue


def queue_patterns(n: int) -> object:
    buffer: BackpressureBuffer[int] = BackpressureBuffer("drop_oldest", 1024)
    offer, poll = buffer.offer, buffer.poll
    last = None
    for x in range(n):
        offer(x, now=0.0)
        entry = poll()
        last = entry.item if entry is not None else None
    return last


def queue_stdlib(n: int) -> object:
    q: queue.Queue[int] = queue.Queue(1024)
    put, get = q.put_nowait, q.get_nowait
    last = None
    for x in range(n):
        put(x)
        last = get()
    return last


def queue_deque(n: int) -> object:
    d: deque[int] = deque(maxlen=1024)
    append, popleft = d.append, d.popleft
    last = None
    for x in range(n):
        append(x)
        last = popleft()
    return last


# ----------------------------------------------------------------- (e) long chains

MAPPED = lambda x: x * 3  # noqa: E731 - the same functions for every implementation
EVEN = lambda y: y % 2 == 0  # noqa: E731
ADD = lambda a, y: a + y  # noqa: E731


def long_map_loop(n: int) -> object:
    last = None
    for x in range(n):
        last = MAPPED(x)
    return last


def long_map_patterns(n: int) -> object:
    last: list[int] = []
    Observable.from_iterable(range(n)).map(MAPPED).subscribe(last.append)
    return last[-1]


def long_map_reactivex(n: int) -> object:
    last: list[int] = []
    reactivex.from_iterable(range(n)).pipe(ops.map(MAPPED)).subscribe(last.append)
    return last[-1]


def long_filter_loop(n: int) -> object:
    last = None
    for x in range(n):
        if EVEN(x):
            last = x
    return last


def long_filter_patterns(n: int) -> object:
    last: list[int] = []
    Observable.from_iterable(range(n)).filter(EVEN).subscribe(last.append)
    return last[-1]


def long_filter_reactivex(n: int) -> object:
    last: list[int] = []
    reactivex.from_iterable(range(n)).pipe(ops.filter(EVEN)).subscribe(last.append)
    return last[-1]


def long_scan_loop(n: int) -> object:
    acc = 0
    for x in range(n):
        acc = ADD(acc, x)
    return acc


def long_scan_patterns(n: int) -> object:
    last: list[int] = []
    Observable.from_iterable(range(n)).scan(ADD, 0).subscribe(last.append)
    return last[-1]


def long_scan_reactivex(n: int) -> object:
    last: list[int] = []
    reactivex.from_iterable(range(n)).pipe(ops.scan(ADD, 0)).subscribe(last.append)
    return last[-1]


def long_chain_loop(n: int) -> object:
    acc = 0
    for x in range(n):
        y = MAPPED(x)
        if EVEN(y):
            acc = ADD(acc, y)
    return acc


def long_chain_patterns(n: int) -> object:
    last: list[int] = []
    (Observable.from_iterable(range(n)).map(MAPPED).filter(EVEN).scan(ADD, 0)
     .subscribe(last.append))
    return last[-1]


def long_chain_reactivex(n: int) -> object:
    last: list[int] = []
    reactivex.from_iterable(range(n)).pipe(
        ops.map(MAPPED), ops.filter(EVEN), ops.scan(ADD, 0)).subscribe(last.append)
    return last[-1]


LONG_SCENARIOS: dict[str, tuple[Callable[[int], object],
                                list[tuple[str, Callable[[int], object]]]]] = {
    "(e) map": (long_map_loop, [("patterns", long_map_patterns),
                                ("reactivex", long_map_reactivex)]),
    "(e) filter": (long_filter_loop, [("patterns", long_filter_patterns),
                                      ("reactivex", long_filter_reactivex)]),
    "(e) scan": (long_scan_loop, [("patterns", long_scan_patterns),
                                  ("reactivex", long_scan_reactivex)]),
    "(e) map/filter/scan": (long_chain_loop, [("patterns", long_chain_patterns),
                                              ("reactivex", long_chain_reactivex)]),
}

SCENARIOS: dict[str, tuple[Callable[[int], object], list[tuple[str, Callable[[int], object]]]]] = {
    "(a) map/filter/scan, cold": (chain_loop, [("patterns", chain_patterns),
                                               ("reactivex", chain_reactivex)]),
    "(b) Subject -> map": (subject_loop, [("patterns", subject_patterns),
                                          ("reactivex", subject_reactivex)]),
    "(c) buffer_with_count(100)": (batches_loop, [("patterns", batches_patterns),
                                                  ("reactivex", batches_reactivex)]),
    "(d) bounded queue offer+poll": (queue_deque, [("patterns BackpressureBuffer", queue_patterns),
                                                   ("queue.Queue", queue_stdlib)]),
}


def expected(name: str, n: int) -> object:
    if name.startswith("(e)"):
        return LONG_SCENARIOS[name][0](n)  # the plain loop's answer
    if name.startswith("(a)"):
        return _expected_scan(n)
    if name.startswith("(b)"):
        return 3 * n * (n - 1) // 2
    if name.startswith("(c)"):
        return -(-n // 100)
    return n - 1


def measure(scenarios: dict[str, tuple[Callable[[int], object],
                                       list[tuple[str, Callable[[int], object]]]]],
            n: int, repeats: int) -> None:
    """Run every case ``repeats`` times, interleaved; print one row per case."""
    cases = [(scenario, label, fn) for scenario, (reference, peers) in scenarios.items()
             for label, fn in [("reference", reference), *peers]]
    for scenario, _label, fn in cases:  # warm up and check
        result = fn(n)
        if result != expected(scenario, n):
            raise AssertionError(f"{scenario} {fn.__name__} returned {result!r}")
    times: dict[tuple[str, str], list[float]] = {(s, lbl): [] for s, lbl, _ in cases}
    for _ in range(repeats):  # interleaved, so that drifting load hits every case alike
        for scenario, label, fn in cases:
            gc.collect()
            started = time.perf_counter()
            fn(n)
            times[(scenario, label)].append((time.perf_counter() - started) / n)
    for scenario, (_reference, peers) in scenarios.items():
        ref = statistics.median(times[(scenario, "reference")])
        ours = statistics.median(times[(scenario, peers[0][0])])
        for label in ["reference", *(p[0] for p in peers)]:
            t = statistics.median(times[(scenario, label)])
            print(f"| {scenario} | {label} | {t * 1e6:.2f} | {t / ref:.1f}x | "
                  f"{t / ours:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--chain-items", type=int, default=1_000_000,
                        help="values per run of the long chains (e)")
    args = parser.parse_args()
    repeats = 5 if args.quick else 15
    long_repeats = 3 if args.quick else 7
    n = args.items
    print(f"Python {platform.python_version()}, reactivex {version('reactivex')}, "
          f"{n:,} items per run of (a)-(d), {repeats} repeats; {args.chain_items:,} "
          f"items per run of (e), {long_repeats} repeats (medians)\n")
    print("| scenario | implementation | per item (µs) | vs reference | vs patterns |")
    print("|---|---|---:|---:|---:|")
    measure(SCENARIOS, n, repeats)
    measure(LONG_SCENARIOS, args.chain_items, long_repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
