"""Cost of one rate-limit check: ``patterns`` against limits and pyrate-limiter.

Guide section 4.5 (流量控制与限流). Run from the repository root::

    python -m pip install -r benchmarks/requirements.txt
    python benchmarks/bench_ratelimit.py            # about 25 s
    python benchmarks/bench_ratelimit.py --quick    # a few seconds, noisier

One check is one call that decides, in process memory, on the real monotonic clock:

* ours: ``limiter.try_acquire()`` for each of the seven limiters of
  :mod:`patterns.resilience.ratelimit`;
* `limits <https://github.com/alisaifee/limits>`_: ``strategy.hit(item, "key")`` with
  ``MemoryStorage`` for its moving window, fixed window and sliding window counter;
* `pyrate-limiter <https://github.com/vutran1710/PyrateLimiter>`_:
  ``Limiter(InMemoryBucket([Rate(...)])).try_acquire("key", blocking=False)``.

Two scenarios, each a Markdown table on stdout:

(a) at the limit -- 100 per second (window limiters: 100 per 1 s), hammered: after the
    first 100 calls almost every check is refused. This is the load a limiter exists
    for, and the logs of the log-based limiters hold at most 100 entries.
(b) under the limit -- 10**9 per second: every check is admitted. Each repeat starts
    from a fresh limiter (a new object, ``storage.reset()``, a new bucket), so that the
    log-based limiters' logs hold only that repeat's entries.

Method, as in ``bench_retry.py``: each case is warmed up, then calibrated so that one
repeat (``n`` checks in a loop) takes about ``--target-ms``; the repeats of all cases
are interleaved, so that drifting machine load hits every case alike; the table gives
the median time per check over the repeats, the interquartile range, and each peer's
median divided by our fastest case's. No listeners are attached to our limiters, and
the peers run without hooks. ``gc.collect()`` runs before each repeat.

Nothing is silently broken: in (a) every repeat must admit at most
``100 + 100 * elapsed + 1`` checks in all and refuse most of them; in (b) every check
must be admitted.

(c) Shared through Redis (skipped with ``--no-redis`` or without ``redis-server``): a
throw-away ``redis-server`` on loopback (``simulations.kit.servers``), one client
connection, the same two loads (at the limit: 100 per second, mostly refused; under
it: every check admitted and the state written). Ours is
``RedisGCRALimiter(...).try_acquire()``; beside it the script it replaced (issue 11:
``TIME + HMGET + HSET + PEXPIRE``, run through the same client call) and limits'
``RedisStorage`` with its three strategies. For each: the round trip per check as the
caller sees it (median), the commands the server runs per check and the server's own
time per check, both from ``INFO commandstats`` (``CONFIG RESETSTAT`` before each
repeat; a script's time includes the commands it calls).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from importlib.metadata import version
from pathlib import Path
from typing import Any

import limits
import limits.storage
import limits.strategies
import pyrate_limiter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import patterns
from patterns.resilience.ratelimit import (
    FixedWindowLimiter,
    GCRALimiter,
    LeakyBucket,
    LeakyBucketQueue,
    SlidingLogLimiter,
    SlidingWindowCounterLimiter,
    TokenBucket,
)

Check = Callable[[], Any]


# --------------------------------------------------------------------------- builders
#
# A builder takes the limit (per second) and returns a fresh zero-argument check.


def ours(factory: Callable[[int], Any]) -> Callable[[int], Check]:
    def build(limit: int) -> Check:
        return factory(limit).try_acquire  # type: ignore[no-any-return]

    return build


OURS: dict[str, Callable[[int], Check]] = {
    "GCRALimiter": ours(lambda limit: GCRALimiter(float(limit), limit)),
    "TokenBucket": ours(lambda limit: TokenBucket(float(limit), limit)),
    "LeakyBucket": ours(lambda limit: LeakyBucket(float(limit), limit)),
    "LeakyBucketQueue": ours(lambda limit: LeakyBucketQueue(float(limit), limit)),
    "FixedWindowLimiter": ours(lambda limit: FixedWindowLimiter(limit, 1.0)),
    "SlidingLogLimiter": ours(lambda limit: SlidingLogLimiter(limit, 1.0)),
    "SlidingWindowCounterLimiter": ours(lambda limit: SlidingWindowCounterLimiter(limit, 1.0)),
}


def limits_check(strategy: type[Any]) -> Callable[[int], Check]:
    def build(limit: int) -> Check:
        storage = limits.storage.MemoryStorage()
        storage.reset()
        limiter = strategy(storage)
        item = limits.RateLimitItemPerSecond(limit)
        hit = limiter.hit

        def check() -> bool:
            return hit(item, "key")  # type: ignore[no-any-return]

        return check

    return build


def pyrate_check(limit: int) -> Check:
    bucket = pyrate_limiter.InMemoryBucket(
        [pyrate_limiter.Rate(limit, pyrate_limiter.Duration.SECOND)])
    limiter = pyrate_limiter.Limiter(bucket)
    acquire = limiter.try_acquire

    def check() -> bool:
        return acquire("key", blocking=False)  # type: ignore[return-value]

    return check


PEERS: dict[str, Callable[[int], Check]] = {
    "limits moving window": limits_check(limits.strategies.MovingWindowRateLimiter),
    "limits fixed window": limits_check(limits.strategies.FixedWindowRateLimiter),
    "limits sliding window counter":
        limits_check(limits.strategies.SlidingWindowCounterRateLimiter),
    "pyrate-limiter in-memory bucket": pyrate_check,
}


# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    label: str
    build: Callable[[int], Check]
    ours: bool
    limit: int
    fresh_each_repeat: bool
    check: Check = field(init=False)
    n: int = field(init=False, default=1)
    per_call_ns: list[float] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.check = self.build(self.limit)

    def run(self, n: int) -> int:
        """Time ``n`` checks; verify the decisions; return the nanoseconds."""
        if self.fresh_each_repeat:
            self.check = self.build(self.limit)
        check = self.check
        admitted = 0
        start = time.perf_counter_ns()
        for _ in itertools.repeat(None, n):
            if check():
                admitted += 1
        elapsed = time.perf_counter_ns() - start
        if self.fresh_each_repeat:  # (b): every check admitted
            if admitted != n:
                raise AssertionError(f"{self.label}: admitted {admitted} of {n} under the limit")
        else:  # (a): never more than the limit allows
            allowed = self.limit + self.limit * elapsed / 1e9 + 1
            if admitted > allowed:
                raise AssertionError(f"{self.label}: admitted {admitted} > {allowed:.0f}")
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


def cases(limit: int, fresh: bool) -> list[Case]:
    result = [Case(f"patterns `{name}`", build, True, limit, fresh)
              for name, build in OURS.items()]
    result += [Case(name, build, False, limit, fresh) for name, build in PEERS.items()]
    return result


# --------------------------------------------------------------------------- timing


def calibrate(case: Case, target_ns: float) -> int:
    n = 1
    while True:
        gc.collect()
        elapsed = case.run(n)
        if elapsed >= target_ns / 10 or n >= 10**7:
            return max(1, round(n * target_ns / max(elapsed, 1)))
        n *= 10


def measure(all_cases: list[Case], repeats: int, target_ns: float) -> None:
    for case in all_cases:
        case.run(200)  # warm-up, including lazy set-up
        case.n = calibrate(case, target_ns)
        case.run(case.n)
    for _ in range(repeats):
        for case in all_cases:
            gc.collect()
            case.per_call_ns.append(case.run(case.n) / case.n)


# --------------------------------------------------------------------------- report


def fmt_time(ns: float) -> str:
    return f"{ns:.0f} ns" if ns < 1_000 else f"{ns / 1_000:.2f} µs"


def table(title: str, all_cases: list[Case]) -> list[str]:
    fastest = min((c for c in all_cases if c.ours), key=lambda c: c.median)
    lines = [
        f"### {title}",
        "",
        f"Ratio: a case's median divided by our fastest ({fastest.label}).",
        "",
        "| check | median per check | IQR | ratio to our fastest |",
        "|---|---:|---:|---:|",
    ]
    for case in sorted(all_cases, key=lambda c: (not c.ours, c.median)):
        lines.append(f"| {case.label} | {fmt_time(case.median)} | ±{case.iqr_percent:.1f} % | "
                     f"{case.median / fastest.median:.1f}× |")
    lines.append("")
    return lines


def targets(scenarios: dict[str, list[Case]]) -> list[str]:
    lines = ["### Targets", ""]
    held = True
    for name, all_cases in scenarios.items():
        fastest = min((c for c in all_cases if c.ours), key=lambda c: c.median)
        peer = min((c for c in all_cases if not c.ours), key=lambda c: c.median)
        ratio = peer.median / fastest.median
        ok_time = fastest.median <= 2_000
        ok_ratio = ratio >= 4.0
        held = held and ok_time and ok_ratio
        lines.append(
            f"- {name}: our fastest, {fastest.label}, {fmt_time(fastest.median)} "
            f"(at most 2 µs: **{'held' if ok_time else 'MISSED'}**); fastest peer, "
            f"{peer.label}, {fmt_time(peer.median)}: {ratio:.1f}× "
            f"(at least 4×: **{'held' if ok_ratio else 'MISSED'}**)")
    lines += ["", f"**{'Both targets held' if held else 'A target was missed'} on this run.**",
              ""]
    return lines


def header(args: argparse.Namespace) -> list[str]:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return [
        "## One rate-limit check (guide section 4.5)",
        "",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.machine()}, {cpus} CPUs, load average {load}",
        f"- patterns {patterns.__version__}, limits {version('limits')}, "
        f"pyrate-limiter {version('pyrate-limiter')}",
        f"- {args.repeats} interleaved repeats per case, each about {args.target_ms:g} ms; "
        "in-memory storage, real monotonic clock, no listeners or hooks",
        "",
    ]


# --------------------------------------------------------------------------- (c) Redis

#: The script of RedisGCRALimiter before issue 11 (state in a hash: TIME + HMGET, then
#: HSET + PEXPIRE to admit), kept here only to be measured beside the current one.
PREVIOUS_SCRIPT = """
local q, r, L = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tol, n, mode = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tat', 'frac')
local tat, frac = tonumber(state[1]), tonumber(state[2])
if tat == nil or tat < now then
  tat, frac = now, 0
end
local function store(whole, part)
  if whole <= now then
    redis.call('DEL', KEYS[1])
    return
  end
  redis.call('HSET', KEYS[1], 'tat', string.format('%d', whole),
             'frac', string.format('%d', part))
  redis.call('PEXPIRE', KEYS[1], string.format('%d', math.ceil((whole - now) / 1000) + 1))
end
if mode == 'refund' then
  local part = frac - n * r
  local whole = tat - n * q + math.floor(part / L)
  store(whole, part % L)
  return {1, 0, now}
end
local part = frac + n * r
local whole = tat + n * q + math.floor(part / L)
part = part % L
local ahead = (whole - now) * L + part
if ahead <= tol then
  if mode == 'take' then
    store(whole, part)
  end
  return {1, 0, now}
end
return {0, math.ceil((ahead - tol) / L), now}
"""


@dataclass
class RedisCase:
    label: str
    ours: bool
    check: Check
    round_trip_ns: list[float] = field(default_factory=list)
    server_us: list[float] = field(default_factory=list)
    commands: list[float] = field(default_factory=list)


def redis_cases(client: Any, url: str, limit: int, tag: str) -> list[RedisCase]:
    from patterns.resilience.ratelimit import RedisGCRALimiter

    # At the limit: rate 100, burst 100. Under it: rate 1000 with a burst of 10**6 (a
    # tolerance of 1000 s), so that every check is admitted *and* moves the stored time
    # ahead of the clock (at 10**9 per second the state would simply be deleted).
    rate, burst = (float(limit), limit) if limit < 10**6 else (1000.0, 10**6)
    ours = RedisGCRALimiter(client, f"bench:{tag}:ours", rate, burst)
    previous = client.register_script(PREVIOUS_SCRIPT)
    interval = (Fraction(1_000_000) / Fraction(rate)).limit_denominator(1000)
    q, r = divmod(interval.numerator, interval.denominator)
    previous_args = [q, r, interval.denominator, burst * interval.numerator, 1, "take"]
    previous_keys = [f"bench:{tag}:previous"]

    def previous_check() -> bool:
        return bool(previous(keys=previous_keys, args=previous_args)[0])

    storage = limits.storage.RedisStorage(url)
    item = limits.RateLimitItemPerSecond(limit)
    result = [RedisCase("patterns `RedisGCRALimiter`", True, ours.try_acquire),
              RedisCase("patterns before issue 11 (same algorithm, previous script)", True,
                        previous_check)]
    for name, strategy in (("moving window", limits.strategies.MovingWindowRateLimiter),
                           ("fixed window", limits.strategies.FixedWindowRateLimiter),
                           ("sliding window counter",
                            limits.strategies.SlidingWindowCounterRateLimiter)):
        hit = strategy(storage).hit
        key = f"bench:{tag}:{name}"
        result.append(RedisCase(f"limits `RedisStorage` {name}", False,
                                lambda hit=hit, key=key: hit(item, key)))
    return result


def measure_redis(client: Any, all_cases: list[RedisCase], repeats: int, n: int,
                  limit: int) -> None:
    for case in all_cases:
        for _ in range(200):  # warm-up: scripts loaded, state present
            case.check()
    for _ in range(repeats):
        for case in all_cases:
            gc.collect()
            client.config_resetstat()
            admitted = 0
            start = time.perf_counter_ns()
            for _ in itertools.repeat(None, n):
                if case.check():
                    admitted += 1
            elapsed = time.perf_counter_ns() - start
            stats = client.info("commandstats")
            calls = sum(int(v["calls"]) for k, v in stats.items()
                        if k not in ("cmdstat_config|resetstat", "cmdstat_info"))
            script_us = sum(float(v["usec"]) for k, v in stats.items()
                            if k in ("cmdstat_evalsha", "cmdstat_eval"))
            if limit < 10**6 and admitted > limit + limit * elapsed / 1e9 + 1:
                raise AssertionError(f"{case.label}: admitted {admitted} at the limit")
            if limit >= 10**6 and admitted != n:
                raise AssertionError(f"{case.label}: admitted {admitted} of {n} under it")
            case.round_trip_ns.append(elapsed / n)
            case.server_us.append(script_us / n)
            case.commands.append(calls / n)


def redis_table(title: str, all_cases: list[RedisCase]) -> list[str]:
    ours = all_cases[0]
    lines = [
        f"### {title}",
        "",
        "Ratios: a case's median divided by ours (`RedisGCRALimiter`).",
        "",
        "| check | round trip | commands per check | server time per check | "
        "server time ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    server = statistics.median(ours.server_us)
    for case in all_cases:
        median_server = statistics.median(case.server_us)
        lines.append(
            f"| {case.label} | {fmt_time(statistics.median(case.round_trip_ns))} | "
            f"{statistics.median(case.commands):.2f} | {median_server:.2f} µs | "
            f"{median_server / server:.2f}× |")
    lines.append("")
    return lines


def run_redis(args: argparse.Namespace) -> list[str]:
    if args.no_redis or shutil.which("redis-server") is None:
        return ["### (c) Through Redis: skipped (`--no-redis`, or no `redis-server`)", ""]
    import redis

    from simulations.kit.servers import redis_server

    lines = []
    with redis_server() as port:
        client = redis.Redis(host="127.0.0.1", port=port)
        url = f"redis://127.0.0.1:{port}"
        n = 300 if args.quick else 1000
        for title, limit, tag in (
                ("(c1) Through Redis, at the limit: 100 per second, almost every check "
                 "refused", 100, "a"),
                ("(c2) Through Redis, under the limit: every check admitted and written "
                 "(GCRA: 1000 per second, burst 10**6; limits: 10**9 per second)",
                 10**9, "b")):
            all_cases = redis_cases(client, url, limit, tag)
            measure_redis(client, all_cases, args.repeats, n, limit)
            lines += redis_table(title, all_cases)
        client.close()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="5 repeats of about 5 ms each (default: 15 of about 20 ms)")
    parser.add_argument("--repeats", type=int, help="repeats per case")
    parser.add_argument("--target-ms", type=float, help="duration of one repeat, in ms")
    parser.add_argument("--no-redis", action="store_true",
                        help="skip (c), the limiters shared through Redis")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 5 if args.quick else 15
    if args.target_ms is None:
        args.target_ms = 5.0 if args.quick else 20.0
    if args.repeats < 1 or args.target_ms <= 0:
        parser.error("--repeats and --target-ms must be positive")
    target_ns = args.target_ms * 1e6

    at_limit = cases(100, fresh=False)
    measure(at_limit, args.repeats, target_ns)
    under_limit = cases(10**9, fresh=True)
    measure(under_limit, args.repeats, target_ns)

    lines = header(args)
    lines += table("(a) At the limit: 100 per second, almost every check refused", at_limit)
    lines += table("(b) Under the limit: every check admitted", under_limit)
    lines += targets({"(a) at the limit": at_limit, "(b) under the limit": under_limit})
    lines += run_redis(args)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
