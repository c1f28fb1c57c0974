"""Rate limiting in simulated time (guide section 4.5, 流量控制与限流).

Every model drives the limiters of :mod:`patterns.resilience.ratelimit` on a
:class:`~simulations.kit.clock.SimClock`, and draws its plots from the events the
limiters publish (recorded by :class:`~simulations.kit.recorder.Recorder`):

* **Offered against admitted** (:func:`run_limiter`, :func:`compare_limiters`): one
  bursty workload (:func:`~simulations.kit.workloads.bursty_arrivals`) through each of
  the seven limiters, all configured for the same long-run rate and burst.
* **The window edge** (:func:`run_edge_attack`): a client that sends a full window's
  worth just before a window edge and again just after it.
* **Instances sharing a limit** (:func:`run_instances`): several service instances
  with uneven traffic, each with a static share of the limit, or all deciding through
  one shared limiter (the model of a Redis limiter, in-process), or both in tiers.

The guide's sketches are transcribed, flaws included, as :class:`GuideSketchTokenBucket`,
:class:`GuideSketchSlidingWindow` and :class:`GuideSketchDistributedRateLimiter` (with
an in-memory model of the Redis sorted set it uses, :class:`GuideSketchRedis`), and
each flaw is reproduced beside the fix (:func:`run_truncation`, :func:`run_cas_race`,
:func:`run_flood`, :func:`run_same_millisecond`).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from patterns._validation import require_finite_positive
from patterns.clock import Clock, ManualClock
from patterns.resilience.ratelimit import (
    FixedWindowLimiter,
    GCRALimiter,
    LeakyBucket,
    LeakyBucketQueue,
    RateLimiter,
    SlidingLogLimiter,
    SlidingWindowCounterLimiter,
    TieredRateLimiter,
    TokenBucket,
)
from simulations.kit.clock import SimClock
from simulations.kit.plotting import color, label, subplots
from simulations.kit.recorder import Recorder
from simulations.kit.rng import RandomStreams
from simulations.kit.tables import format_table
from simulations.kit.widgets import Explorer, choice, float_slider, int_slider
from simulations.kit.workloads import bursty_arrivals, poisson_arrivals, start_at

KINDS: tuple[str, ...] = (
    "token_bucket", "leaky_bucket", "gcra", "leaky_queue",
    "fixed_window", "sliding_log", "sliding_counter",
)
"""The limiters of :mod:`patterns.resilience.ratelimit`, by short name."""

LABELS: dict[str, str] = {
    "token_bucket": "token bucket",
    "leaky_bucket": "leaky bucket (meter)",
    "gcra": "GCRA",
    "leaky_queue": "leaky bucket (queue)",
    "fixed_window": "fixed window",
    "sliding_log": "sliding log",
    "sliding_counter": "sliding window counter",
    "guide_sliding": "guide's sliding window",
    "guide": "guide's sketch",
    "fixed": "GCRA, shared (the fix)",
}

COLORS: dict[str, str] = {
    "token_bucket": "#1f77b4",
    "leaky_bucket": "#17becf",
    "gcra": "#2ca02c",
    "leaky_queue": "#9467bd",
    "fixed_window": "#d62728",
    "sliding_log": "#8c564b",
    "sliding_counter": "#e377c2",
    "guide_sliding": "#ff7f0e",
    "guide": "#ff7f0e",
    "fixed": "#2ca02c",
}


def kind_color(kind: str) -> str:
    """The colour of a limiter kind in every figure of this section."""
    return COLORS.get(kind, color(kind))


def make_limiter(kind: str, rate: float, burst: int, clock: Clock) -> RateLimiter:
    """A limiter of ``kind`` allowing ``rate`` per second on average and bursts of ``burst``.

    Buckets get ``rate`` and ``capacity = burst``; window limiters get
    ``limit = burst`` per ``window = burst / rate`` seconds: the same long-run rate.
    """
    window = burst / rate
    factories: dict[str, Callable[[], RateLimiter]] = {
        "token_bucket": lambda: TokenBucket(rate, burst, clock=clock),
        "leaky_bucket": lambda: LeakyBucket(rate, burst, clock=clock),
        "gcra": lambda: GCRALimiter(rate, burst, clock=clock),
        "leaky_queue": lambda: LeakyBucketQueue(rate, burst, clock=clock),
        "fixed_window": lambda: FixedWindowLimiter(burst, window, clock=clock),
        "sliding_log": lambda: SlidingLogLimiter(burst, window, clock=clock),
        "sliding_counter": lambda: SlidingWindowCounterLimiter(burst, window, clock=clock),
    }
    if kind not in factories:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
    return factories[kind]()


def max_in_window(times: np.ndarray, width: float, *, closed: bool = False) -> int:
    """The most events in any interval ``[a, a + width)`` (``[a, a + width]`` if closed)."""
    if len(times) == 0:
        return 0
    ordered = np.sort(np.asarray(times, dtype=float))
    ends = np.searchsorted(ordered, ordered + width, side="right" if closed else "left")
    return int(np.max(ends - np.arange(len(ordered))))


def window_bound(kind: str, rate: float, burst: int) -> int:
    """Theory: the most permits ``kind`` admits in any interval of ``burst / rate`` s.

    Buckets: ``burst + rate * T`` with ``T = burst / rate``, that is ``2 * burst``;
    the queue's departures: ``1 + rate * T`` in a closed interval; fixed window
    ``2 * limit``; sliding log ``limit``; sliding window counter ``2 * limit - 1``.
    """
    bounds = {
        "token_bucket": 2 * burst, "leaky_bucket": 2 * burst, "gcra": 2 * burst,
        "leaky_queue": burst + 1, "fixed_window": 2 * burst, "sliding_log": burst,
        "sliding_counter": 2 * burst - 1, "guide_sliding": 2 * burst,
    }
    return bounds[kind]


# ============================================================================ the guide


class GuideSketchTokenBucket:
    """The guide's ``TokenBucket``, transcribed with its flaws (for the pitfalls).

    * ``refill`` truncates the new tokens to a whole number and then restarts the clock
      (``last_refill = now``), so the fraction is lost: at 1.5 tokens per second, a
      caller who comes once a second gets 1 token per second.
    * ``try_acquire`` loads the count, then compare-and-swaps; if another thread changed
      the count in between, the swap fails and the request is *refused* (the comment
      says "retry", the code returns ``false``), although tokens were there.

    :meth:`try_acquire` runs the two steps back to back (one caller at a time);
    :meth:`simpy_try_acquire` lets ``cas_gap`` seconds of simulated time pass between
    the load and the swap, so that simultaneous callers interleave as threads do.
    """

    def __init__(self, capacity: int, refill_rate: float, clock: Clock) -> None:
        self.capacity = capacity
        self.tokens = capacity
        self.refill_rate = refill_rate
        self.clock = clock
        self.last_refill = clock.now()

    def refill(self) -> None:
        now = self.clock.now()
        elapsed = now - self.last_refill
        if elapsed > 0.01:  # "avoid updating too often"
            new_tokens = int(elapsed * self.refill_rate)  # `as u32`: truncated
            if new_tokens > 0:
                current = self.tokens
                self.tokens = min(current + new_tokens, self.capacity)
                self.last_refill = now  # the fraction of a token is thrown away

    def compare_exchange(self, current: int, new: int) -> bool:
        if self.tokens != current:
            return False
        self.tokens = new
        return True

    def try_acquire(self, tokens: int = 1) -> bool:
        self.refill()
        current = self.tokens
        if current >= tokens:
            return self.compare_exchange(current, current - tokens)
        return False

    def simpy_try_acquire(
        self, env: simpy.Environment, tokens: int = 1, cas_gap: float = 1e-6
    ) -> Generator[Any, Any, bool]:
        self.refill()
        current = self.tokens
        if current < tokens:
            return False
        yield env.timeout(cas_gap)  # another thread may run between load and swap
        return self.compare_exchange(current, current - tokens)  # Err(_) => false


class GuideSketchSlidingWindow:
    """The guide's ``SlidingWindowRateLimiter``, transcribed with its flaw.

    An admitted request increments the count of the *last* entry, and a new entry is
    created only when the deque is empty. So there is only ever one entry, stamped with
    the first request of a window; it expires ``window_size`` later and the next request
    starts a new one: a fixed window (aligned to its first request) in disguise. A
    client can use the whole limit at the end of one such window and again at the start
    of the next.
    """

    def __init__(self, window_size: float, max_requests: int, clock: Clock) -> None:
        self.window_size = window_size
        self.max_requests = max_requests
        self.clock = clock
        self.windows: deque[list[float]] = deque()  # [instant, count]

    def try_acquire(self) -> bool:
        now = self.clock.now()
        while self.windows and now - self.windows[0][0] > self.window_size:
            self.windows.popleft()
        current_count = sum(count for _, count in self.windows)
        if current_count < self.max_requests:
            if self.windows:
                self.windows[-1][1] += 1  # always the same, first, entry
            else:
                self.windows.append([now, 1])
            return True
        return False


class GuideSketchRedis:
    """An in-memory model of the Redis commands the guide's limiter uses.

    Sorted sets keyed by name (member -> score) with ``EXPIRE``; time is read from
    ``clock``. Enough to reproduce what the sketch does with a real server.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sets: dict[str, dict[str, float]] = {}
        self.expires: dict[str, float] = {}
        self.commands = 0

    def _expire_keys(self) -> None:
        now = self.clock.now()
        for key in [k for k, when in self.expires.items() if when <= now]:
            self.sets.pop(key, None)
            del self.expires[key]

    def zremrangebyscore(self, key: str, low: float, high: float) -> None:
        self._expire_keys()
        self.commands += 1
        members = self.sets.get(key, {})
        for member in [m for m, score in members.items() if low <= score <= high]:
            del members[member]

    def zadd(self, key: str, member: str, score: float) -> None:
        self._expire_keys()
        self.commands += 1
        self.sets.setdefault(key, {})[member] = score  # an existing member is overwritten

    def zcard(self, key: str) -> int:
        self._expire_keys()
        self.commands += 1
        return len(self.sets.get(key, {}))

    def expire(self, key: str, seconds: int) -> None:
        self.commands += 1
        if key not in self.sets:
            return
        if seconds <= 0:  # Redis deletes a key given a non-positive timeout
            self.sets.pop(key, None)
            self.expires.pop(key, None)
        else:
            self.expires[key] = self.clock.now() + seconds


class GuideSketchDistributedRateLimiter:
    """The guide's ``DistributedRateLimiter``, transcribed with its flaws.

    * It asks the local limiter, then adds the request to the sorted set (member and
      score: the caller's clock in milliseconds) *before* counting, and admits if the
      count is at most ``max_rate``. A refused request stays in the set: a flood keeps
      the set full and every client is refused, for as long as the flood lasts.
    * Two requests in the same millisecond have the same member: the second overwrites
      the first, so bursts are under-counted and more than ``max_rate`` get through.
    * ``EXPIRE window.as_secs() * 2`` truncates: a window under one second gives
      ``EXPIRE 0``, which deletes the key, so nothing is ever limited.
    """

    def __init__(
        self,
        local_limiter: RateLimiter,
        redis: GuideSketchRedis,
        key: str,
        max_rate: int,
        window: float,
        clock: Clock,
    ) -> None:
        self.local_limiter = local_limiter
        self.redis = redis
        self.key = key
        self.max_rate = max_rate
        self.window = window
        self.clock = clock

    def try_acquire(self) -> bool:
        if not self.local_limiter.try_acquire():
            return False
        now = int(self.clock.now() * 1000)  # Utc::now().timestamp_millis(), the caller's
        window_start = now - int(self.window * 1000)
        self.redis.zremrangebyscore(self.key, 0, window_start)
        self.redis.zadd(self.key, str(now), now)  # recorded even if refused below
        count = self.redis.zcard(self.key)
        self.redis.expire(self.key, int(self.window) * 2)  # as_secs() truncates
        return count <= self.max_rate


# ============================================================================ offered vs admitted


@dataclass(frozen=True)
class LimiterRun:
    """One limiter under one workload (times in seconds)."""

    kind: str
    rate: float
    burst: int
    horizon: float
    offered: np.ndarray
    """Arrival times of all requests."""
    admitted: np.ndarray
    """When each admitted request went (its admission time plus any queueing delay)."""
    delays: np.ndarray
    """The queueing delay of each admitted request (non-zero only for the queue)."""
    recorder: Recorder

    @property
    def admitted_share(self) -> float:
        return len(self.admitted) / max(1, len(self.offered))

    @property
    def bound(self) -> float:
        """Theory: at most ``burst + rate * horizon`` admitted in the whole run."""
        return self.burst + self.rate * self.horizon

    @property
    def window(self) -> float:
        return self.burst / self.rate

    def max_in_window(self) -> int:
        """The most requests that went in any interval of ``burst / rate`` seconds."""
        return max_in_window(self.admitted, self.window, closed=self.kind == "leaky_queue")


def bursty_workload(
    horizon: float, seed: int, *, calm_rate: float = 4.0, burst_rate: float = 40.0
) -> np.ndarray:
    """The section's workload: calm spells (``calm_rate``/s) and bursts (``burst_rate``/s).

    Calm spells last 5 s on average, bursts 1 s (exponentially distributed).
    """
    return bursty_arrivals(calm_rate, burst_rate, horizon,
                           RandomStreams(seed).numpy("arrivals"), mean_calm=5.0, mean_burst=1.0)


def run_limiter(
    kind: str,
    *,
    rate: float = 10.0,
    burst: int = 10,
    horizon: float = 60.0,
    calm_rate: float = 4.0,
    burst_rate: float = 40.0,
    seed: int = 1,
    arrivals: np.ndarray | None = None,
) -> LimiterRun:
    """Send the bursty workload through a limiter of ``kind`` (see :func:`make_limiter`).

    Each request asks once when it arrives and is dropped if refused; with the leaky
    bucket queue it joins the queue (if there is room) and goes when its turn comes.
    """
    times = bursty_workload(horizon, seed, calm_rate=calm_rate, burst_rate=burst_rate) \
        if arrivals is None else np.asarray(arrivals, dtype=float)
    env = simpy.Environment()
    limiter = make_limiter(kind, rate, burst, SimClock(env))
    recorder = Recorder()
    limiter.listeners.add(recorder.listener(kind))

    def request(_: int) -> Generator[Any, Any, None]:
        if kind == "leaky_queue":
            yield from limiter.simpy_acquire(env)
        else:
            limiter.try_acquire()
            yield from ()

    start_at(env, times, request)
    env.run()
    admitted = recorder.select("Admitted")
    return LimiterRun(
        kind=kind, rate=rate, burst=burst, horizon=horizon, offered=times,
        admitted=np.array([r.time + r.data["delay"] for r in admitted]),
        delays=np.array([r.data["delay"] for r in admitted]),
        recorder=recorder,
    )


def compare_limiters(kinds: Sequence[str] = KINDS, **options: Any) -> dict[str, LimiterRun]:
    """:func:`run_limiter` for each kind, on the very same arrivals."""
    horizon = options.pop("horizon", 60.0)
    seed = options.pop("seed", 1)
    calm = options.pop("calm_rate", 4.0)
    bursting = options.pop("burst_rate", 40.0)
    arrivals = bursty_workload(horizon, seed, calm_rate=calm, burst_rate=bursting)
    return {kind: run_limiter(kind, horizon=horizon, seed=seed, arrivals=arrivals, **options)
            for kind in kinds}


def _rates(times: np.ndarray, horizon: float, bin_width: float) -> tuple[np.ndarray, np.ndarray]:
    edges = np.arange(0.0, horizon + bin_width / 2, bin_width)
    counts, _ = np.histogram(times, bins=edges)
    return edges[:-1], counts / bin_width


def plot_offered_admitted(run: LimiterRun, ax: Axes, *, bin_width: float = 1.0,
                          legend: bool = True) -> Axes:
    """Offered and admitted requests per second over time, with the configured rate."""
    starts, offered = _rates(run.offered, run.horizon, bin_width)
    _, admitted = _rates(run.admitted, run.horizon, bin_width)
    ax.fill_between(starts, offered, step="post", color=color("offered"), alpha=0.25,
                    label="offered", linewidth=0)
    ax.step(starts, admitted, where="post", color=kind_color(run.kind), linewidth=1.5,
            label="admitted")
    ax.axhline(run.rate, color=color("theory"), linestyle="--", linewidth=1,
               label=f"rate {run.rate:g}/s")
    ax.set_xlim(0, run.horizon)
    ax.set_title(f"{LABELS[run.kind]}: {len(run.admitted)} of {len(run.offered)} admitted",
                 fontsize=10)
    if legend:
        ax.legend(loc="upper right", ncols=3)
    return ax


def draw_offered_vs_admitted(rate: float = 10.0, burst: int = 10, seed: int = 1,
                             horizon: float = 60.0, calm_rate: float = 4.0,
                             burst_rate: float = 40.0) -> Figure:
    """Figure: the same bursty workload through each limiter, one panel per limiter."""
    runs = compare_limiters(rate=rate, burst=burst, seed=seed, horizon=horizon,
                            calm_rate=calm_rate, burst_rate=burst_rate)
    fig, axes = subplots(4, 2, width=10, height=9.5)
    flat = list(axes.flat)
    top = max(float(np.max(_rates(run.offered, horizon, 1.0)[1])) for run in runs.values())
    for index, (ax, run) in enumerate(zip(flat, runs.values(), strict=False)):
        plot_offered_admitted(run, ax, legend=index == 0)
        ax.set_ylim(0, top * 1.08)
        if index % 2 == 0:
            ax.set_ylabel("requests per second")
        if index >= len(runs) - 2:
            ax.set_xlabel("time (s)")
        else:
            ax.tick_params(axis="x", labelbottom=False)
    summary = flat[-1]
    names = list(runs)
    shares = [runs[k].admitted_share * 100 for k in names]
    bars = summary.barh([LABELS[k] for k in names], shares, color=[kind_color(k) for k in names])
    summary.bar_label(bars, fmt="%.0f %%", fontsize=8)
    summary.set_xlim(0, 100)
    summary.invert_yaxis()
    summary.grid(axis="y", visible=False)
    label(summary, title="Share of requests admitted", xlabel="% of offered", ylabel="")
    fig.suptitle(f"One bursty workload through seven limiters (rate {rate:g}/s, burst {burst})")
    return fig


def limiter_table(runs: Mapping[str, LimiterRun]) -> str:
    """Offered, admitted and the largest burst per limiter, against theory."""
    rows = []
    for kind, run in runs.items():
        rows.append([
            LABELS[kind], len(run.offered), len(run.admitted), f"<= {run.bound:.0f}",
            run.max_in_window(), f"<= {window_bound(kind, run.rate, run.burst)}",
            float(np.mean(run.delays) * 1000) if len(run.delays) else 0.0,
        ])
    first = next(iter(runs.values()))
    return format_table(
        ["limiter", "offered", "admitted", "theory", f"most in any {first.window:g} s",
         "theory", "mean delay (ms)"], rows)


# ============================================================================ the window edge


@dataclass(frozen=True)
class EdgeResult:
    """Admissions of the edge attack for one limiter (times in seconds)."""

    kind: str
    limit: int
    window: float
    delta: float
    sent: np.ndarray
    admitted: np.ndarray

    @property
    def around_edge(self) -> int:
        """Requests admitted within ``delta`` of the window edge."""
        slack = 1e-9 * max(1.0, self.window)  # 1.0 - 0.995 is a hair above 0.005
        return int(np.count_nonzero(np.abs(self.admitted - self.window) <= self.delta + slack))

    def max_in_window(self) -> int:
        return max_in_window(self.admitted, self.window)


def edge_attack_times(limit: int, window: float, delta: float) -> np.ndarray:
    """One request at 0, then ``limit`` just before the edge at ``window`` and ``limit``
    just after it (``delta`` seconds either side)."""
    return np.concatenate([[0.0], np.full(limit, window - delta), np.full(limit, window + delta)])


def run_edge_attack(kind: str, *, limit: int = 10, window: float = 1.0,
                    delta: float = 0.005) -> EdgeResult:
    """The edge attack (:func:`edge_attack_times`) against one limiter.

    ``kind`` is one of :data:`KINDS` (configured with ``burst = limit`` and
    ``rate = limit / window``) or ``"guide_sliding"`` (:class:`GuideSketchSlidingWindow`).
    """
    sent = edge_attack_times(limit, window, delta)
    env = simpy.Environment()
    clock = SimClock(env)
    admitted: list[float] = []
    decide: Callable[[], bool]
    if kind == "guide_sliding":
        decide = GuideSketchSlidingWindow(window, limit, clock).try_acquire
    else:
        limiter = make_limiter(kind, limit / window, limit, clock)
        recorder = Recorder()
        limiter.listeners.add(recorder.listener(kind))
        decide = limiter.try_acquire

    def request(_: int) -> Generator[Any, Any, None]:
        if decide() and kind == "guide_sliding":
            admitted.append(env.now)
        yield from ()

    start_at(env, sent, request)
    env.run()
    if kind != "guide_sliding":
        admitted = [r.time for r in recorder.select("Admitted")]
    return EdgeResult(kind, limit, window, delta, sent, np.array(admitted))


EDGE_KINDS: tuple[str, ...] = ("fixed_window", "guide_sliding", "sliding_counter",
                               "sliding_log", "token_bucket")


def edge_table(limit: int = 10, window: float = 1.0, delta: float = 0.005) -> str:
    """Requests admitted around the edge and in any window, per limiter, with theory."""
    theory_edge = {"fixed_window": 2 * limit - 1, "guide_sliding": 2 * limit - 1,
                   "sliding_counter": limit - 1 + math.floor(limit * 2 * delta / window + 1e-9),
                   "sliding_log": limit,
                   "token_bucket": limit + math.floor(limit / window * 2 * delta + 1e-9)}
    rows = []
    for kind in EDGE_KINDS:
        result = run_edge_attack(kind, limit=limit, window=window, delta=delta)
        rows.append([LABELS[kind], result.around_edge, theory_edge[kind],
                     result.max_in_window()])
    return format_table(["limiter", f"admitted within ±{delta * 1000:g} ms of the edge",
                         "theory", f"most in any {window:g} s"], rows)


def draw_edge_attack(limit: int = 10, window: float = 1.0, delta: float = 0.005) -> Figure:
    """Figure: requests admitted just before and just after the window edge, per limiter."""
    fig, ax = subplots(1, 1, width=10, height=3.8)
    names, before, after = [], [], []
    for kind in EDGE_KINDS:
        result = run_edge_attack(kind, limit=limit, window=window, delta=delta)
        slack = 1e-9 * max(1.0, window)
        near = result.admitted[np.abs(result.admitted - window) <= delta + slack]
        names.append(LABELS[kind])
        before.append(int(np.count_nonzero(near < window)))
        after.append(int(np.count_nonzero(near > window)))
    colours = [kind_color(kind) for kind in EDGE_KINDS]
    ax.barh(names, before, color=colours, alpha=0.45)
    bars = ax.barh(names, after, left=before, color=colours)
    ax.bar_label(bars, labels=[f"{b + a}" for b, a in zip(before, after, strict=True)],
                 padding=3, fontsize=9)
    line = ax.axvline(limit, color=color("theory"), linestyle="--", linewidth=1)
    ax.invert_yaxis()
    ax.set_xlim(0, 2 * limit + 2)
    ax.grid(axis="y", visible=False)
    ax.legend([Patch(color="#999999", alpha=0.45), Patch(color="#555555"), line],
              [f"admitted {delta * 1000:g} ms before the edge",
               f"admitted {delta * 1000:g} ms after the edge",
               f"limit: {limit} per {window:g} s"], loc="lower right")
    label(ax, title=f"1 request at 0 s, then {limit} at {(window - delta) * 1000:g} ms "
          f"and {limit} at {(window + delta) * 1000:g} ms",
          xlabel=f"requests admitted within {2 * delta * 1000:g} ms around the edge at "
          f"{window * 1000:g} ms", ylabel="")
    return fig


# ============================================================================ counter against log


@dataclass(frozen=True)
class CounterCheck:
    """The sliding window counter beside an exact sliding log, request by request.

    Arrays follow the arrivals. For each request: the counter's decision, the two
    counts its estimate is made of (``previous``: its admissions in the previous aligned
    window; ``current``: in this one so far), how far into the window it came
    (``elapsed``, the fraction ``x``), and ``exact``: how many of the counter's own
    admissions lie in the trailing window ``(t - window, t]``, which is what a sliding
    log holding the same history counts. ``log_admitted`` is what an independent
    :class:`SlidingLogLimiter` admits on the same arrivals.

    The counter estimates ``previous * (1 - x) + current``: it assumes the previous
    window's admissions were spread evenly over it. Its error ``exact - estimate`` lies
    within ``[-previous * (1 - x), previous * x]`` whatever the traffic (all of them at
    the previous window's start, or all at its end); when they are spread uniformly at
    random, the number still in the trailing window is Binomial(``previous``, ``1 - x``),
    so the error has mean 0 and variance ``previous * x * (1 - x)``.
    """

    limit: int
    window: float
    times: np.ndarray
    admitted: np.ndarray
    previous: np.ndarray
    current: np.ndarray
    elapsed: np.ndarray
    exact: np.ndarray
    log_admitted: np.ndarray

    @property
    def estimate(self) -> np.ndarray:
        """The counter's estimate of the trailing window's count, before each request."""
        return self.previous * (1.0 - self.elapsed) + self.current

    @property
    def error(self) -> np.ndarray:
        """``exact - estimate``: admissions in the trailing window the estimate misses."""
        return self.exact - self.estimate

    @property
    def binomial_variance(self) -> np.ndarray:
        """``previous * x * (1 - x)``: the error's variance under uniform spread."""
        return self.previous * self.elapsed * (1.0 - self.elapsed)

    def variance_ratio(self) -> float:
        """Mean squared error over the mean uniform-spread variance (1 when the
        previous windows' admissions are spread uniformly at random)."""
        variance = float(self.binomial_variance.sum())
        return float(np.sum(self.error**2)) / variance if variance > 0 else math.nan

    def rms_error(self) -> float:
        """Root mean square of the error, in requests."""
        return float(np.sqrt(np.mean(self.error**2))) if len(self.times) else math.nan

    def theory_rms_error(self) -> float:
        """What uniform spread predicts for :meth:`rms_error`."""
        return float(np.sqrt(np.mean(self.binomial_variance))) if len(self.times) else math.nan

    def max_in_window(self, which: str = "counter") -> int:
        """The most admissions of ``"counter"`` or ``"log"`` in any interval of a window."""
        chosen = self.admitted if which == "counter" else self.log_admitted
        return max_in_window(self.times[chosen], self.window)


def run_counter_against_log(arrivals: np.ndarray, *, limit: int = 10,
                            window: float = 1.0) -> CounterCheck:
    """Send ``arrivals`` (sorted times, s) through a :class:`SlidingWindowCounterLimiter`
    and, independently, a :class:`SlidingLogLimiter` of the same ``limit`` per ``window``.

    Each request asks once, on a manual clock set to its arrival time; see
    :class:`CounterCheck` for what is recorded.
    """
    times = np.asarray(arrivals, dtype=float)
    if len(times) and np.any(np.diff(times) < 0):
        raise ValueError("arrivals must be sorted")
    clock = ManualClock(float(times[0]) if len(times) else 0.0)
    counter = SlidingWindowCounterLimiter(limit, window, clock=clock)
    log = SlidingLogLimiter(limit, window, clock=clock)
    count = len(times)
    admitted = np.zeros(count, dtype=bool)
    log_admitted = np.zeros(count, dtype=bool)
    previous = np.zeros(count)
    current = np.zeros(count)
    elapsed = np.zeros(count)
    exact = np.zeros(count)
    taken: list[float] = []  # the counter's admissions so far, in order
    for i, now in enumerate(times.tolist()):
        clock.set(now)
        index = now // window
        start = index * window
        first_current = bisect.bisect_left(taken, start)
        previous[i] = first_current - bisect.bisect_left(taken, start - window)
        current[i] = len(taken) - first_current
        elapsed[i] = (now - start) / window
        exact[i] = len(taken) - bisect.bisect_right(taken, now - window)
        if counter.try_acquire():
            admitted[i] = True
            taken.append(now)
        log_admitted[i] = log.try_acquire()
    return CounterCheck(limit, window, times, admitted, previous, current, elapsed, exact,
                        log_admitted)


def counter_worst_case(limit: int = 10, window: float = 1.0) -> np.ndarray:
    """Arrivals that meet the counter's worst case: the previous window's traffic all at
    its very end (``limit`` requests just before the edge at ``window``), then a request
    every ``window / (4 * limit)`` through the next window. The counter still weighs the
    early ones as if spread over the window and admits ``limit - 1`` more within one
    window length: ``2 * limit - 1`` in all, where a sliding log admits ``limit``."""
    step = window / (4.0 * limit)
    after = window + step * np.arange(1, 4 * limit)
    return np.concatenate([np.full(limit, window - step), after])


def counter_poisson(load: float, *, limit: int = 10, window: float = 1.0,
                    horizon: float = 300.0, seed: int = 1) -> np.ndarray:
    """Poisson arrivals at ``load`` times the limit's rate ``limit / window``: the
    typical case, where requests fall uniformly at random within each window."""
    require_finite_positive("load", load)
    return poisson_arrivals(load * limit / window, horizon, RandomStreams(seed).numpy("arrivals"))


def counter_against_log_table(limit: int = 10, window: float = 1.0,
                              loads: Sequence[float] = (0.5, 1.0, 2.0),
                              horizon: float = 300.0, seed: int = 1) -> str:
    """The counter against the log: the worst case, then Poisson traffic at ``loads``."""
    cases = [("worst case", run_counter_against_log(counter_worst_case(limit, window),
                                                    limit=limit, window=window))]
    for load in loads:
        arrivals = counter_poisson(load, limit=limit, window=window, horizon=horizon, seed=seed)
        cases.append((f"Poisson, load {load:g}",
                      run_counter_against_log(arrivals, limit=limit, window=window)))
    rows = []
    for name, check in cases:
        rows.append([name, len(check.times), int(check.admitted.sum()),
                     int(check.log_admitted.sum()), check.max_in_window("counter"),
                     check.max_in_window("log"), float(check.error.max()),
                     check.rms_error(), check.theory_rms_error()])
    return format_table(["arrivals", "requests", "counter admits", "log admits",
                         f"counter: most in {window:g} s", f"log: most in {window:g} s",
                         "largest miss", "rms error", "uniform spread: rms"], rows)


# ============================================================================ shared limit


INSTANCE_MODES: tuple[str, ...] = ("local", "shared", "tiered")
MODE_LABELS: dict[str, str] = {"local": "local (static shares)", "shared": "shared",
                               "tiered": "tiered (local cap {cap:g}/s)"}


@dataclass(frozen=True)
class InstancesResult:
    """Several instances behind one limit (rates in requests per second)."""

    mode: str
    instances: int
    global_rate: float
    horizon: float
    offered_rates: tuple[float, ...]
    offered: tuple[int, ...]
    admitted: tuple[int, ...]
    store_calls: int
    """Decisions the shared limiter (the model of Redis) was asked for."""
    admitted_times: np.ndarray

    @property
    def total_admitted_rate(self) -> float:
        return sum(self.admitted) / self.horizon

    @property
    def theory_rate(self) -> float:
        """Fluid theory: what each mode admits per second with steady traffic."""
        share = self.global_rate / self.instances
        if self.mode == "local":
            return sum(min(rate, share) for rate in self.offered_rates)
        if self.mode == "shared":
            return min(sum(self.offered_rates), self.global_rate)
        cap = self.global_rate * TIER_SHARE
        return min(sum(min(rate, cap) for rate in self.offered_rates), self.global_rate)


TIER_SHARE = 0.5
"""In tiered mode, each instance's local tier allows this share of the global rate."""


def instance_rates(instances: int, offered: float, hot_share: float) -> tuple[float, ...]:
    """Offered rate per instance: one hot instance gets ``hot_share``, others split the rest."""
    if instances == 1:
        return (offered,)
    rest = offered * (1.0 - hot_share) / (instances - 1)
    return (offered * hot_share, *([rest] * (instances - 1)))


def run_instances(
    mode: str,
    *,
    instances: int = 4,
    global_rate: float = 40.0,
    burst: int = 20,
    offered: float = 60.0,
    hot_share: float = 0.7,
    horizon: float = 30.0,
    seed: int = 1,
) -> InstancesResult:
    """``instances`` instances with Poisson traffic, one of them hot, share one limit.

    * ``local``: each instance has its own :class:`GCRALimiter` with a static share
      ``global_rate / instances`` (and ``burst / instances``): no shared store.
    * ``shared``: every instance asks one shared :class:`GCRALimiter` (the model of a
      :class:`~patterns.resilience.ratelimit.RedisGCRALimiter`: one atomic decision on
      one clock) for every request.
    * ``tiered``: a local tier (``TIER_SHARE`` of the global rate per instance) in front
      of the shared one, in a :class:`TieredRateLimiter`: requests over an instance's
      cap never reach the store.
    """
    if mode not in INSTANCE_MODES:
        raise ValueError(f"mode must be one of {INSTANCE_MODES}, got {mode!r}")
    env = simpy.Environment()
    clock = SimClock(env)
    shared = GCRALimiter(global_rate, burst, clock=clock)
    limiters: list[RateLimiter] = []
    for _ in range(instances):
        if mode == "local":
            limiters.append(GCRALimiter(global_rate / instances,
                                        max(1, round(burst / instances)), clock=clock))
        elif mode == "shared":
            limiters.append(shared)
        else:
            local = GCRALimiter(global_rate * TIER_SHARE, max(1, round(burst * TIER_SHARE)),
                                clock=clock)
            limiters.append(TieredRateLimiter(local, shared, clock=clock))
    recorder = Recorder()
    streams = RandomStreams(seed)
    rates = instance_rates(instances, offered, hot_share)
    for index, (limiter, rate) in enumerate(zip(limiters, rates, strict=True)):
        times = poisson_arrivals(rate, horizon, streams.numpy(f"instance-{index}"))

        def request(_: int, limiter: RateLimiter = limiter, index: int = index
                    ) -> Generator[Any, Any, None]:
            outcome = "admitted" if limiter.try_acquire() else "rejected"
            recorder.record(env.now, outcome, f"instance {index}")
            yield from ()

        start_at(env, times, request)
    env.run()
    names = [f"instance {i}" for i in range(instances)]
    return InstancesResult(
        mode=mode, instances=instances, global_rate=global_rate, horizon=horizon,
        offered_rates=rates,
        offered=tuple(recorder.count(source=name) for name in names),
        admitted=tuple(recorder.count("admitted", name) for name in names),
        store_calls=0 if mode == "local" else shared.stats().total,
        admitted_times=recorder.times("admitted"),
    )


def instances_table(**options: Any) -> str:
    """Admitted per second in each mode: fluid theory beside simulation."""
    rows = []
    for mode in INSTANCE_MODES:
        result = run_instances(mode, **options)
        per_instance = " / ".join(f"{a / result.horizon:.1f}" for a in result.admitted)
        rows.append([mode, result.theory_rate, result.total_admitted_rate, per_instance,
                     result.store_calls])
    return format_table(["mode", "theory (/s)", "admitted (/s)", "per instance (/s)",
                         "store calls"], rows)


def draw_instances(instances: int = 4, hot_share: float = 0.7, offered: float = 60.0,
                   global_rate: float = 40.0, seed: int = 1) -> Figure:
    """Figure: per-instance offered and admitted rates, and the total, for each mode."""
    results = {mode: run_instances(mode, instances=instances, hot_share=hot_share,
                                   offered=offered, global_rate=global_rate, seed=seed)
               for mode in INSTANCE_MODES}
    fig, (bars_ax, time_ax) = subplots(1, 2, width=10, height=4.2, width_ratios=[1.2, 1])
    positions = np.arange(instances)
    width = 0.8 / (len(INSTANCE_MODES) + 1)
    first = results["local"]
    bars_ax.bar(positions - 0.4 + width / 2, [r for r in first.offered_rates], width,
                color=color("offered"), alpha=0.5, label="offered")
    mode_colors = {"local": "#d62728", "shared": "#2ca02c", "tiered": "#1f77b4"}
    for step, (mode, result) in enumerate(results.items(), start=1):
        bars_ax.bar(positions - 0.4 + width / 2 + step * width,
                    [a / result.horizon for a in result.admitted], width,
                    color=mode_colors[mode], label=MODE_LABELS[mode].format(
                        cap=global_rate * TIER_SHARE) + f": {result.total_admitted_rate:.1f}/s")
    bars_ax.axhline(global_rate / instances, color=color("theory"), linestyle="--",
                    linewidth=1, label=f"static share {global_rate / instances:g}/s")
    bars_ax.set_xticks(positions, [f"#{i}" + (" (hot)" if i == 0 else "")
                                   for i in range(instances)])
    bars_ax.set_ylim(0, max(*first.offered_rates, global_rate / instances) * 1.75)  # legend room
    bars_ax.legend(loc="upper right", fontsize=8)
    label(bars_ax, title="Per instance", xlabel="instance", ylabel="requests per second")
    for mode, result in results.items():
        starts, rate = _rates(result.admitted_times, result.horizon, 1.0)
        time_ax.step(starts, rate, where="post", color=mode_colors[mode], linewidth=1.5,
                     label=mode)
    time_ax.axhline(global_rate, color=color("theory"), linestyle="--", linewidth=1,
                    label=f"global limit {global_rate:g}/s")
    peak = max(float(np.max(_rates(r.admitted_times, r.horizon, 1.0)[1], initial=0.0))
               for r in results.values())
    time_ax.set_ylim(0, max(global_rate, peak) * 1.45)  # room for the legend
    time_ax.legend(loc="upper right", ncols=2, fontsize=8)
    for ax in (bars_ax, time_ax):  # fewer ticks: cheaper redraws
        ax.locator_params(axis="y", nbins=5)
    time_ax.locator_params(axis="x", nbins=6)
    label(time_ax, title="All instances together", xlabel="time (s)",
          ylabel="admitted per second")
    return fig


def hammer_redis(port: int, *, instances: int = 4, rate: float = 50.0, burst: int = 10,
                 seconds: float = 1.0, key: str = "api:quotes") -> list[int]:
    """Real threads, each with its own connection to the Redis server on ``port``, ask
    one shared :class:`~patterns.resilience.ratelimit.RedisGCRALimiter` as fast as they
    can for ``seconds``; returns the permits each thread was granted (at most ``burst +
    rate * seconds`` in all). Needs the ``redis`` package."""
    import threading
    import time

    import redis

    from patterns.resilience.ratelimit import RedisGCRALimiter

    admitted = [0] * instances
    start = threading.Barrier(instances)

    def instance(index: int) -> None:
        shared = RedisGCRALimiter(redis.Redis(port=port), key, rate=rate, burst=burst)
        start.wait()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            admitted[index] += shared.try_acquire()

    threads = [threading.Thread(target=instance, args=(i,)) for i in range(instances)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return admitted


# ============================================================================ pitfalls


@dataclass(frozen=True)
class ComparisonRun:
    """Admission times of the guide's sketch and of the fix on the same traffic."""

    guide: np.ndarray
    fixed: np.ndarray
    offered: np.ndarray
    horizon: float


def run_truncation(
    *, rate: float = 1.5, capacity: int = 10, period: float = 1.0, per_tick: int = 10,
    horizon: float = 60.0,
) -> ComparisonRun:
    """A client sends ``per_tick`` requests every ``period`` s to a bucket of ``rate``/s.

    The guide's :class:`GuideSketchTokenBucket` against :class:`TokenBucket`, both
    starting full. Demand exceeds supply, so each admits as many as its refill allows.
    """
    env = simpy.Environment()
    clock = SimClock(env)
    guide = GuideSketchTokenBucket(capacity, rate, clock)
    fixed = TokenBucket(rate, capacity, clock=clock)
    taken: dict[str, list[float]] = {"guide": [], "fixed": [], "offered": []}

    def client() -> Generator[Any, Any, None]:
        while env.now < horizon:
            for _ in range(per_tick):
                taken["offered"].append(env.now)
                if guide.try_acquire():
                    taken["guide"].append(env.now)
                if fixed.try_acquire():
                    taken["fixed"].append(env.now)
            yield env.timeout(period)

    env.process(client())
    env.run()
    return ComparisonRun(np.array(taken["guide"]), np.array(taken["fixed"]),
                         np.array(taken["offered"]), horizon)


def guide_truncated_rate(rate: float, period: float) -> float:
    """Theory for the guide's bucket under saturating demand, one call every ``period``.

    Tokens are added only once ``int(elapsed * rate) >= 1``, which takes ``m = ceil(1 /
    (rate * period))`` calls; then ``floor(m * period * rate)`` tokens arrive and the
    clock restarts. So it admits ``floor(m * period * rate) / (m * period)`` per second.
    (``period`` above the sketch's 10 ms threshold.)
    """
    calls = max(1, math.ceil(1.0 / (rate * period) - 1e-12))
    return math.floor(calls * period * rate + 1e-12) / (calls * period)


def truncation_table(rate: float = 1.5, periods: Sequence[float] = (0.1, 0.25, 0.5, 1.0),
                     horizon: float = 120.0, capacity: int = 10) -> str:
    """Admitted per second (after the initial bucketful), theory beside simulation."""
    rows = []
    for period in periods:
        run = run_truncation(rate=rate, capacity=capacity, period=period, horizon=horizon)
        # Both start full: count what came after the first bucketful, up to the last call.
        span = float(run.offered[-1])
        guide_rate = (len(run.guide) - capacity) / span
        fixed_rate = (len(run.fixed) - capacity) / span
        rows.append([period, guide_truncated_rate(rate, period), guide_rate, rate, fixed_rate])
    return format_table(["call every (s)", "guide: theory", "guide: simulated",
                         "TokenBucket: theory", "TokenBucket: simulated"], rows)


def draw_truncation(rate: float = 1.5, period: float = 1.0, horizon: float = 60.0,
                    capacity: int = 10) -> Figure:
    """Figure: tokens granted over time by the guide's bucket and by TokenBucket."""
    run = run_truncation(rate=rate, period=period, horizon=horizon, capacity=capacity)
    fig, ax = subplots(1, 1, width=9, height=3.8)
    for name, times in (("guide", run.guide), ("fixed", run.fixed)):
        counts = np.arange(1, len(times) + 1)
        ax.step(times, counts, where="post", color=kind_color(name), linewidth=1.8,
                label=f"{'guide sketch' if name == 'guide' else 'TokenBucket'}: "
                f"{(len(times) - capacity) / float(run.offered[-1]):.2f} per second")
    ts = np.array([0.0, horizon])
    ax.plot(ts, capacity + rate * ts, color=color("theory"), linestyle="--", linewidth=1,
            label=f"theory: {capacity} + {rate:g} t")
    ax.plot(ts, capacity + guide_truncated_rate(rate, period) * ts, color=color("theory"),
            linestyle=":", linewidth=1,
            label=f"theory of the sketch: {capacity} + "
            f"{guide_truncated_rate(rate, period):g} t")
    ax.legend(loc="upper left")
    label(ax, title=f"Refill at {rate:g} tokens/s, capacity {capacity}; a client sending "
          f"10 requests every {period:g} s",
          xlabel="time t (s)", ylabel="requests admitted so far")
    return fig


def run_cas_race(batch: int, *, batches: int = 50, period: float = 1.0,
                 rate: float = 20.0, capacity: int = 20,
                 cas_gap: float = 1e-6) -> tuple[int, int]:
    """``batch`` threads ask at the same instant, every ``period`` s (plenty of tokens).

    Returns the requests admitted by the guide's compare-and-swap bucket and by
    :class:`TokenBucket` (one lock): ``(guide, fixed)``.
    """
    env = simpy.Environment()
    clock = SimClock(env)
    guide = GuideSketchTokenBucket(capacity, rate, clock)
    fixed = TokenBucket(rate, capacity, clock=clock)
    counts = {"guide": 0, "fixed": 0}

    def thread() -> Generator[Any, Any, None]:
        if (yield from guide.simpy_try_acquire(env, 1, cas_gap)):
            counts["guide"] += 1

    def fixed_thread() -> Generator[Any, Any, None]:
        if fixed.try_acquire():
            counts["fixed"] += 1
        yield env.timeout(cas_gap)

    def driver() -> Generator[Any, Any, None]:
        for _ in range(batches):
            for _ in range(batch):
                env.process(thread())
                env.process(fixed_thread())
            yield env.timeout(period)

    env.process(driver())
    env.run()
    return counts["guide"], counts["fixed"]


def cas_table(batches: Sequence[int] = (1, 2, 4, 8, 16), rounds: int = 50) -> str:
    """Admitted requests when ``batch`` threads ask at once (all would fit)."""
    rows = []
    for batch in batches:
        guide, fixed = run_cas_race(batch, batches=rounds)
        rows.append([batch, batch * rounds, guide, fixed])
    return format_table(["threads at once", "requests (all fit)", "guide's CAS bucket",
                         "TokenBucket"], rows)


@dataclass(frozen=True)
class FloodResult:
    """The flood scenario for one limiter: admissions per client (times in seconds)."""

    name: str
    legit_offered: np.ndarray
    legit_admitted: np.ndarray
    flood_offered: np.ndarray
    flood_admitted: np.ndarray
    horizon: float
    flood_start: float
    flood_end: float

    def admitted_rate_during_flood(self) -> tuple[float, float]:
        """(legitimate, flood) admitted per second while the flood lasts."""
        span = self.flood_end - self.flood_start

        def rate(times: np.ndarray) -> float:
            inside = (times >= self.flood_start) & (times < self.flood_end)
            return float(np.count_nonzero(inside)) / span

        return rate(self.legit_admitted), rate(self.flood_admitted)


def _distributed(name: str, clock: Clock, max_rate: int, window: float,
                 instances: int) -> list[Any]:
    """One limiter per instance (each with ``try_acquire()``): the guide's sketch, or the
    fix (a local GCRA in front of a shared one, in a :class:`TieredRateLimiter`)."""
    deciders: list[Any] = []
    if name == "guide":
        redis = GuideSketchRedis(clock)
        for _ in range(instances):
            local = GCRALimiter(max_rate / window, max_rate, clock=clock)
            deciders.append(GuideSketchDistributedRateLimiter(
                local, redis, "limit", max_rate, window, clock))
    else:
        shared = GCRALimiter(max_rate / window, max_rate, clock=clock)
        for _ in range(instances):
            local = GCRALimiter(max_rate / window, max_rate, clock=clock)
            deciders.append(TieredRateLimiter(local, shared, clock=clock))
    return deciders


def run_flood(
    name: str,
    *,
    max_rate: int = 20,
    window: float = 1.0,
    legit_rate: float = 5.0,
    flood_rate: float = 60.0,
    flood_start: float = 10.0,
    flood_end: float = 20.0,
    horizon: float = 30.0,
    instances: int = 4,
    client_rate: float | None = None,
    seed: int = 1,
) -> FloodResult:
    """A legitimate client and, for a while, a flood, behind one shared limit.

    ``name`` is ``"guide"`` (:class:`GuideSketchDistributedRateLimiter` on the model of
    Redis) or ``"fixed"`` (a shared :class:`GCRALimiter`, the model of
    :class:`~patterns.resilience.ratelimit.RedisGCRALimiter`, behind the same local
    limiters in a :class:`TieredRateLimiter`). Requests are spread round-robin over
    ``instances``, each with a local limiter allowing the whole rate.

    With ``client_rate`` (the fix only), each client also has a limit of its own (one
    key per client: a :class:`GCRALimiter` of ``client_rate`` per second, bursts of as
    many) in front of its instance's tiers; a permit the tiers refuse goes back to it.
    """
    if name not in ("guide", "fixed"):
        raise ValueError(f"name must be 'guide' or 'fixed', got {name!r}")
    env = simpy.Environment()
    clock = SimClock(env)
    deciders = _distributed(name, clock, max_rate, window, instances)
    per_client: dict[str, list[Any]] = {"legit": deciders, "flood": deciders}
    if client_rate is not None:
        if name != "fixed":
            raise ValueError("client_rate applies to the fix ('fixed') only")
        require_finite_positive("client_rate", client_rate)
        for client in per_client:
            own = GCRALimiter(client_rate, max(1, round(client_rate)), clock=clock)
            per_client[client] = [TieredRateLimiter(own, tier, clock=clock)
                                  for tier in deciders]
    streams = RandomStreams(seed)
    legit = poisson_arrivals(legit_rate, horizon, streams.numpy("legit"))
    flood = poisson_arrivals(flood_rate, flood_end, streams.numpy("flood"), start=flood_start)
    admitted: dict[str, list[float]] = {"legit": [], "flood": []}
    turn = [0]

    def sender(client: str) -> Callable[[int], Generator[Any, Any, None]]:
        def request(_: int) -> Generator[Any, Any, None]:
            limiter = per_client[client][turn[0] % instances]
            turn[0] += 1
            if limiter.try_acquire():
                admitted[client].append(env.now)
            yield from ()

        return request

    start_at(env, legit, sender("legit"))
    start_at(env, flood, sender("flood"))
    env.run()
    return FloodResult(name, legit, np.array(admitted["legit"]), flood,
                       np.array(admitted["flood"]), horizon, flood_start, flood_end)


def flood_table(**options: Any) -> str:
    """Admitted per second during the flood, per client, guide beside fix."""
    rows = []
    for name in ("guide", "fixed"):
        result = run_flood(name, **options)
        legit, flood = result.admitted_rate_during_flood()
        rows.append([LABELS[name], legit, flood, legit + flood])
    return format_table(["limiter", "legitimate (/s)", "flood (/s)", "total (/s)"], rows)


def draw_flood(**options: Any) -> Figure:
    """Figure: admitted per second over time for each client, guide's sketch and fix."""
    fig, axes = subplots(1, 2, width=10, height=3.8, sharey=True)
    for ax, name in zip(axes, ("guide", "fixed"), strict=True):
        result = run_flood(name, **options)
        starts, legit = _rates(result.legit_admitted, result.horizon, 1.0)
        _, flood = _rates(result.flood_admitted, result.horizon, 1.0)
        ax.axvspan(result.flood_start, result.flood_end, color="#d62728", alpha=0.08,
                   label="flood")
        ax.step(starts, legit + flood, where="post", color="#444444", linewidth=1.2,
                label="all admitted")
        ax.step(starts, legit, where="post", color="#1f77b4", linewidth=1.8,
                label="legitimate client")
        ax.axhline(options.get("max_rate", 20) / options.get("window", 1.0),
                   color=color("theory"), linestyle="--", linewidth=1, label="limit")
        title = ("guide's sketch: refused requests recorded" if name == "guide"
                 else "fix: GCRA, a refusal writes nothing")
        label(ax, title=title, xlabel="time (s)",
              ylabel="admitted per second" if name == "guide" else "")
        ax.legend(loc="upper right", fontsize=8)
    return fig


def run_same_millisecond(
    name: str,
    *,
    max_rate: int = 100,
    window: float = 1.0,
    batch_rate: float = 50.0,
    batch: int = 4,
    horizon: float = 20.0,
    seed: int = 1,
) -> float:
    """Batches of ``batch`` simultaneous requests (one per instance, the same millisecond).

    Returns the admitted requests per second. The guide's sketch stores one member per
    millisecond, so each batch counts as one request.
    """
    env = simpy.Environment()
    clock = SimClock(env)
    deciders = _distributed(name, clock, max_rate, window, batch)
    arrivals = poisson_arrivals(batch_rate, horizon, RandomStreams(seed).numpy("batches"))
    admitted = [0]

    def fan_out(_: int) -> Generator[Any, Any, None]:
        for limiter in deciders:
            admitted[0] += limiter.try_acquire()
        yield from ()

    start_at(env, arrivals, fan_out)
    env.run()
    return admitted[0] / horizon


def same_millisecond_table(batches: Sequence[int] = (1, 2, 4, 8), **options: Any) -> str:
    """Admitted per second against the limit, for batch sizes (guide beside fix)."""
    max_rate = options.get("max_rate", 100)
    batch_rate = options.get("batch_rate", 50.0)
    rows = []
    for batch in batches:
        rows.append([batch, batch * batch_rate, max_rate,
                     run_same_millisecond("guide", batch=batch, **options),
                     run_same_millisecond("fixed", batch=batch, **options)])
    return format_table(["requests per millisecond", "offered (/s)", "limit (/s)",
                         "guide's sketch (/s)", "GCRA (/s)"], rows)


# ============================================================================ explorers


def draw_limiter(kind: str = "token_bucket", rate: float = 10.0, burst: int = 10,
                 load: float = 1.0, seed: int = 1) -> Figure:
    """Figure for the limiter explorer: one limiter on the bursty workload scaled by ``load``."""
    run = run_limiter(kind, rate=rate, burst=burst, calm_rate=4.0 * load,
                      burst_rate=40.0 * load, seed=seed)
    fig, (top, bottom) = subplots(2, 1, width=10, height=5.6, sharex=True,
                                  height_ratios=[1.3, 1])
    plot_offered_admitted(run, top)
    top.set_ylabel("requests per second")
    peak = float(np.max(_rates(run.offered, run.horizon, 1.0)[1], initial=run.rate))
    top.set_ylim(0, max(peak, run.rate) * 1.3)  # room for the legend
    times = np.sort(run.admitted)
    window = run.window
    # the count in (t - window, t], on a fine grid and at every admission (its peaks)
    grid = np.union1d(np.linspace(0.0, run.horizon, 3001), times)
    trailing = (np.searchsorted(times, grid, side="right")
                - np.searchsorted(times, grid - window, side="right"))
    bottom.step(grid, trailing, where="post", color=kind_color(kind), linewidth=1.4,
                label=f"admitted in the last {window:g} s")
    bound = window_bound(kind, rate, burst)
    bottom.axhline(bound, color=color("theory"), linestyle="--", linewidth=1,
                   label=f"theory: at most {bound} in any {window:g} s")
    bottom.axhline(burst, color="#999999", linestyle=":", linewidth=1,
                   label=f"burst / limit per window: {burst}")
    bottom.set_ylim(0, max(bound, int(trailing.max()) if len(trailing) else 0) * 1.3 + 1)
    bottom.legend(loc="upper left", ncols=3)
    for ax in (top, bottom):  # fewer ticks: cheaper redraws
        ax.locator_params(axis="x", nbins=7)
        ax.locator_params(axis="y", nbins=4)
    label(bottom, title="", xlabel="time t (s)", ylabel="requests")
    if kind == "leaky_queue" and len(run.delays):
        top.set_title(top.get_title() + f"; mean wait {np.mean(run.delays) * 1000:.0f} ms, "
                      f"longest {np.max(run.delays) * 1000:.0f} ms", fontsize=10)
    return fig


def limiter_explorer() -> Explorer:
    """Sliders: limiter kind, rate, burst (capacity, or limit per window) and offered load."""
    return Explorer(draw_limiter, {
        "kind": choice("limiter", KINDS, "token_bucket"),
        "rate": float_slider("rate (per s)", 10.0, 1.0, 40.0, 1.0, ".0f"),
        "burst": int_slider("burst / capacity / limit", 10, 1, 60),
        "load": float_slider("offered load (×)", 1.0, 0.25, 4.0, 0.25),
    })


def instances_explorer() -> Explorer:
    """Sliders: number of instances, share of the hot one, offered load, global limit."""
    return Explorer(draw_instances, {
        "instances": int_slider("instances", 4, 2, 8),
        "hot_share": float_slider("hot instance's share", 0.7, 0.1, 1.0, 0.05),
        "offered": float_slider("offered (per s)", 60.0, 10.0, 150.0, 10.0, ".0f"),
        "global_rate": float_slider("global limit (per s)", 40.0, 10.0, 100.0, 10.0, ".0f"),
    })
