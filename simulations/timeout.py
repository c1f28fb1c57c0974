"""Timeouts and cancellation in simulated time (guide section 4.4, 超时与取消模式).

Three models, each driving :mod:`patterns.resilience.timeout` through its SimPy driver:

* **Overload** (:func:`run_overload`): a server with ``workers`` workers and a FIFO queue
  receives Poisson requests whose service times have a long (log-normal) tail. Each
  client waits at most ``timeout`` seconds. With ``variant="abandon"`` the timeout only
  stops the client waiting (the guide's ``with_timeout``): the request stays queued and
  is served for nobody. With ``variant="cancel"`` the timeout cancels the request's token
  (:class:`~patterns.resilience.timeout.TimeoutPolicy`): a queued request leaves the
  queue and one in service stops. Above capacity the first variant collapses (the
  workers serve clients who have left) while the second keeps its goodput, as a fluid
  model predicts (:func:`fluid_goodput`).
* **Polling** (:func:`run_poll_leak`): the guide's ``when_cancelled`` spawns a blocking
  thread that polls every 10 ms; when the call finishes first, the thread polls on until
  the token is cancelled, which for most calls is never. Threads pile up in tokio's
  blocking pool (512 threads), wake-ups grow without bound, and once the pool is full
  cancellation stops working at all.
* **Fan-out** (:func:`run_fanout`): a request calls children that call grandchildren. The
  guide's tokens and ``CascadingCancellation`` do not reach past the level they were
  handed to; a tree of :class:`~patterns.resilience.timeout.CancellationToken` does.

:class:`GuideSketchToken`, :class:`GuideSketchCascade` and :func:`guide_with_timeout`
transcribe the guide's flawed sketches so that the notebook can put them beside the fix.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from patterns._validation import (
    require_finite_non_negative,
    require_finite_positive,
    require_int_at_least,
    require_unit_interval,
)
from patterns.resilience.timeout import (
    CancellationToken,
    DeadlineExceededError,
    OperationCancelled,
    TimeoutPolicy,
)
from simulations.kit.clock import SimClock
from simulations.kit.faults import LogNormal
from simulations.kit.plotting import label, subplot_mosaic, subplots
from simulations.kit.recorder import Recorder
from simulations.kit.rng import RandomStreams
from simulations.kit.tables import format_table
from simulations.kit.widgets import Explorer, float_slider, int_slider, log_slider
from simulations.kit.workloads import poisson_arrivals, start_at

VARIANTS: tuple[str, ...] = ("abandon", "cancel")
"""The two client timeouts of the overload model."""

QUEUE_ORDERS: tuple[str, ...] = ("fifo", "lifo")
"""The server's queue: oldest request first, or newest first."""

VARIANT_LABELS: dict[str, str] = {
    "abandon": "timeout only stops waiting",
    "cancel": "timeout cancels the work",
}

COLORS: dict[str, str] = {
    "abandon": "#d62728",
    "cancel": "#2ca02c",
    "useful": "#2ca02c",
    "wasted": "#ff7f0e",
    "orphaned": "#d62728",
    "idle": "#dddddd",
    "guide": "#d62728",
    "guide_token": "#d62728",
    "guide_cascade": "#ff7f0e",
    "token": "#2ca02c",
    "theory": "#000000",
    "offered": "#7f7f7f",
}

POLL_INTERVAL = 0.010
"""The guide's ``when_cancelled`` sleeps 10 ms between looks at the flag."""

TOKIO_BLOCKING_THREADS = 512
"""tokio's default ``max_blocking_threads``: the pool ``spawn_blocking`` runs on."""


# ============================================================================ the guide


class GuideSketchToken:
    """The guide's ``CancellationToken``, transcribed: an ``Arc<AtomicBool>``.

    * ``clone()`` shares the one flag, so cancellation goes *both* ways: a sub-operation
      that cancels its clone cancels its caller and every sibling.
    * ``when_cancelled()`` runs a loop on a blocking thread (``spawn_blocking``) that
      sleeps 10 ms between looks at the flag. Nothing stops that loop but the flag: if
      the call it served finishes first, the thread polls on (forever, for a token that
      is never cancelled).
    """

    __slots__ = ("_cancelled",)

    def __init__(self, _shared: list[bool] | None = None) -> None:
        self._cancelled = _shared if _shared is not None else [False]

    def clone(self) -> GuideSketchToken:
        return GuideSketchToken(self._cancelled)

    def cancel(self) -> None:
        self._cancelled[0] = True

    def is_cancelled(self) -> bool:
        return self._cancelled[0]

    def when_cancelled(self, sleep: Callable[[float], object]) -> int:
        """The blocking loop of ``when_cancelled``; returns how many times it slept."""
        polls = 0
        while not self._cancelled[0]:
            sleep(POLL_INTERVAL)
            polls += 1
        return polls


class GuideSketchCascade:
    """The guide's ``CascadingCancellation``: a flat list of tokens.

    ``cancel_all`` sets the flags of the tokens in the list and nothing else: a token
    knows nothing of the cascade, so cancelling one never reaches the others, and the
    tokens that a listed operation hands to *its* sub-operations (from its own cascade)
    are never reached at all.
    """

    __slots__ = ("tokens",)

    def __init__(self) -> None:
        self.tokens: list[GuideSketchToken] = []

    def add_token(self, token: GuideSketchToken) -> None:
        self.tokens.append(token)

    def create_linked_token(self) -> GuideSketchToken:
        token = GuideSketchToken()
        self.tokens.append(token.clone())
        return token

    def cancel_all(self) -> None:
        for token in self.tokens:
            token.cancel()

    def is_any_cancelled(self) -> bool:
        return any(token.is_cancelled() for token in self.tokens)


def guide_with_timeout(
    env: simpy.Environment, work: Generator[Any, Any, Any], timeout: float
) -> Generator[Any, Any, Any]:
    """The guide's ``with_timeout`` (``tokio::time::timeout(timeout, f())``), in SimPy.

    Races the work against a timer and, when the timer wins, stops waiting and raises
    :class:`TimeoutError`. The work is not told: in Rust the local future is dropped, but
    what it set going elsewhere (here, a request queued at a server) carries on.
    """
    process = env.process(work)
    yield process | env.timeout(timeout)
    if process.triggered:
        return process.value
    raise TimeoutError("deadline has elapsed")


def _defuse(event: simpy.Event) -> None:
    """Mark a failed process as handled, so that SimPy does not re-raise its failure."""
    if not event.ok:
        event.defused = True


# ============================================================================ theory


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def lognormal_cdf(dist: LogNormal, x: float) -> float:
    """P(S <= x) for a log-normal service time ``dist``."""
    if x <= 0:
        return 0.0
    return _phi((math.log(x) - math.log(dist.median)) / dist.sigma)


def lognormal_partial_mean(dist: LogNormal, r: float) -> float:
    """E[min(S, r)]: the work a request costs when it is cut off after ``r`` seconds."""
    if r <= 0:
        return 0.0
    if math.isinf(r):
        return dist.mean
    mu, sigma = math.log(dist.median), dist.sigma
    return (dist.mean * _phi((math.log(r) - mu - sigma * sigma) / sigma)
            + r * (1.0 - lognormal_cdf(dist, r)))


def fluid_budget(*, load: float, timeout: float, workers: int, dist: LogNormal) -> float:
    """With cancellation, the seconds of its timeout a request has left when a worker
    takes it, in the fluid limit of a FIFO queue (see :func:`fluid_goodput`).

    ``timeout`` while the workers keep up (``rate * E[min(S, timeout)] <= workers``);
    beyond, the ``r`` that balances the work: ``rate * E[min(S, r)] = workers``.
    """
    rate = load * workers / dist.mean
    if rate * lognormal_partial_mean(dist, timeout) <= workers:
        return timeout
    low, high = 0.0, timeout
    for _ in range(80):
        middle = (low + high) / 2
        if lognormal_partial_mean(dist, middle) > workers / rate:
            high = middle
        else:
            low = middle
    return low


def fluid_goodput(
    variant: str, *, load: float, timeout: float, workers: int, dist: LogNormal
) -> float:
    """Successful responses per second in the fluid limit (many workers, long run).

    Offered load ``load`` = arrival rate x mean service time / workers.

    * ``abandon``: below capacity every request is served at once and succeeds if its
      service time is under ``timeout``: ``rate * P(S <= timeout)``. At or above capacity
      the queue grows without bound, every wait eventually exceeds the timeout, and the
      long-run goodput is 0.
    * ``cancel``: while ``rate * E[min(S, timeout)] <= workers`` the same
      ``rate * P(S <= timeout)``. Beyond, a FIFO queue builds up until requests reach a
      worker with only ``r`` seconds of their budget left, where ``r`` balances the
      work: ``rate * E[min(S, r)] = workers`` (:func:`fluid_budget`). Goodput is then
      ``rate * P(S <= r)``.

    The fluid limit ignores queueing delays below capacity, so near ``load = 1`` the
    simulation (with its random waits) falls short of it.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    rate = load * workers / dist.mean
    if variant == "abandon":
        return rate * lognormal_cdf(dist, timeout) if load < 1.0 else 0.0
    budget = fluid_budget(load=load, timeout=timeout, workers=workers, dist=dist)
    return rate * lognormal_cdf(dist, budget)


def fluid_useful_share(*, load: float, timeout: float, workers: int, dist: LogNormal) -> float:
    """With cancellation, the share of worker time spent on responses delivered (fluid).

    A request served with budget ``r`` is useful when ``S <= r``; that work is
    ``rate * E[S; S <= r]`` worker-seconds per second, out of ``workers``.
    """
    rate = load * workers / dist.mean
    budget = fluid_budget(load=load, timeout=timeout, workers=workers, dist=dist)
    mu, sigma = math.log(dist.median), dist.sigma
    useful = dist.mean * _phi((math.log(budget) - mu - sigma * sigma) / sigma)
    return min(1.0, rate * useful / workers)


# ============================================================================ overload


@dataclass(frozen=True)
class OverloadResult:
    """What one overload run produced (times in seconds).

    Client-side outcomes come from the timeout's events (``CallFinished`` and
    ``CallTimedOut``, recorded under source ``"client"``); the server records when each
    request left the queue and every interval a worker spent on it.
    """

    variant: str
    load: float
    timeout: float
    workers: int
    dist: LogNormal
    horizon: float
    warmup: float
    arrival_rate: float
    arrivals: np.ndarray
    deadlines: np.ndarray
    """When each request's client gives up (arrival + timeout)."""
    left_queue: np.ndarray
    """When each request left the queue (service start, or cancelled); ``inf`` if never."""
    service: np.ndarray
    """Each request's service demand (seconds of a worker's time)."""
    busy_request: np.ndarray
    busy_start: np.ndarray
    busy_end: np.ndarray
    busy_complete: np.ndarray
    """Whether the interval ran to the end of the request's service."""
    recorder: Recorder = field(repr=False)
    cancel_delay: float = 0.0
    """Seconds between the client giving up and the server hearing of it."""
    queue_order: str = "fifo"

    # ----------------------------------------------------------------- client side

    @property
    def window(self) -> float:
        """Seconds measured: from ``warmup`` to ``horizon``."""
        return self.horizon - self.warmup

    @property
    def capacity(self) -> float:
        """Requests per second the workers can serve at the mean service time."""
        return self.workers / self.dist.mean

    def _responses(self) -> tuple[np.ndarray, np.ndarray]:
        records = self.recorder.select("CallFinished", "client")
        times = np.fromiter((r.time for r in records), dtype=float)
        elapsed = np.fromiter((r.data["elapsed"] for r in records), dtype=float)
        return times, elapsed

    @property
    def successes(self) -> int:
        """Responses delivered in time, completed inside the window."""
        times, _ = self._responses()
        return int(np.count_nonzero(times >= self.warmup))

    @property
    def goodput(self) -> float:
        """Successful responses per second, over the window."""
        return self.successes / self.window

    @property
    def requests(self) -> int:
        """Requests that arrived in the window."""
        return int(np.count_nonzero(self.arrivals >= self.warmup))

    @property
    def timeouts(self) -> int:
        """Clients that gave up, inside the window."""
        times = self.recorder.times("CallTimedOut", "client")
        return int(np.count_nonzero(times >= self.warmup))

    @property
    def success_ratio(self) -> float:
        """Successful responses over requests arrived in the window."""
        return self.successes / max(1, self.requests)

    def latency_percentile(self, q: float) -> float:
        """The ``q``-th percentile (0-100) of the latency of successful responses."""
        times, elapsed = self._responses()
        chosen = elapsed[times >= self.warmup]
        return float(np.percentile(chosen, q)) if len(chosen) else math.nan

    # ----------------------------------------------------------------- server side

    def _busy_parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Busy intervals clipped to the window, split at each request's deadline:
        (start, end, useful?, before deadline?) with two rows per interval."""
        start = np.clip(self.busy_start, self.warmup, self.horizon)
        end = np.clip(self.busy_end, self.warmup, self.horizon)
        deadline = np.clip(self.deadlines[self.busy_request], start, end)
        useful = self._useful()[self.busy_request]
        starts = np.concatenate([start, deadline])
        ends = np.concatenate([deadline, end])
        return starts, ends, np.concatenate([useful, useful]), np.concatenate(
            [np.ones(len(start), bool), np.zeros(len(start), bool)])

    def _useful(self) -> np.ndarray:
        """Per request: did its client get the response (service done before the deadline)?"""
        done = np.zeros(len(self.arrivals), bool)
        delivered = self.busy_complete & (self.busy_end < self.deadlines[self.busy_request])
        done[self.busy_request[delivered]] = True
        return done

    def capacity_shares(self) -> dict[str, float]:
        """How the workers' time in the window was spent, as fractions of it all.

        ``useful``: serving requests whose client got the response; ``wasted``: serving
        requests that timed out, before their client gave up; ``orphaned``: serving
        requests after their client had gone; ``idle``: nothing to do.
        """
        starts, ends, useful, before = self._busy_parts()
        length = ends - starts
        total = self.workers * self.window
        shares = {
            "useful": float(length[useful].sum() / total),
            "wasted": float(length[~useful & before].sum() / total),
            "orphaned": float(length[~useful & ~before].sum() / total),
        }
        shares["idle"] = max(0.0, 1.0 - sum(shares.values()))
        return shares

    def busy_over_time(self, bin_width: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Mean workers busy per bin, split into useful, wasted and orphaned work."""
        edges = np.arange(0.0, self.horizon + bin_width / 2, bin_width)
        start = np.clip(self.busy_start, 0.0, self.horizon)
        end = np.clip(self.busy_end, 0.0, self.horizon)
        deadline = np.clip(self.deadlines[self.busy_request], start, end)
        useful = self._useful()[self.busy_request]
        parts = {
            "useful": (start[useful], end[useful]),
            "wasted": (start[~useful], deadline[~useful]),
            "orphaned": (deadline[~useful], end[~useful]),
        }
        result = {}
        for name, (s, e) in parts.items():
            result[name] = _overlap(edges, s, e) / bin_width
        return edges[:-1], result

    def queue_over_time(self, times: np.ndarray) -> np.ndarray:
        """Requests waiting in the server's queue at each of ``times``."""
        arrived = np.searchsorted(np.sort(self.arrivals), times, side="right")
        left = np.searchsorted(np.sort(self.left_queue), times, side="right")
        return arrived - left


def _overlap(edges: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Total length of the intervals [start, end) that falls into each bin of ``edges``."""
    if len(start) == 0:
        return np.zeros(len(edges) - 1)

    # the integral of "number of intervals open" from 0 to each edge
    def covered(points: np.ndarray) -> np.ndarray:
        return np.clip(points[:, None] - start[None, :], 0.0, (end - start)[None, :]).sum(axis=1) \
            if len(start) < 2000 else _covered_sorted(points, start, end)

    return np.diff(covered(edges))


def _covered_sorted(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """sum_i clip(p - start_i, 0, end_i - start_i) for each p, in O((n + m) log n)."""
    s, e = np.sort(start), np.sort(end)
    cs, ce = np.concatenate([[0.0], np.cumsum(s)]), np.concatenate([[0.0], np.cumsum(e)])
    ks = np.searchsorted(s, points, side="right")
    ke = np.searchsorted(e, points, side="right")
    # started by p: (p - s_i) each; ended by p: subtract (p - e_i) each
    return (points * ks - cs[ks]) - (points * ke - ce[ke])


def service_distribution(median: float, tail: float) -> LogNormal:
    """Log-normal service times with the given median (s) and ``p99 / median`` ratio."""
    require_finite_positive("median", median)
    if isinstance(tail, bool) or not isinstance(tail, int | float) or not tail >= 1 \
            or math.isinf(tail):
        raise ValueError(f"tail must be a finite number >= 1 (p99 / median), got {tail!r}")
    return LogNormal(median, median * tail)


def run_overload(
    variant: str,
    *,
    load: float = 1.5,
    timeout: float = 1.0,
    workers: int = 8,
    median: float = 0.1,
    tail: float = 20.0,
    horizon: float = 30.0,
    warmup: float | None = None,
    cancel_delay: float = 0.0,
    queue_order: str = "fifo",
    seed: int = 1,
) -> OverloadResult:
    """A server under load, its clients timing out one way or the other.

    Requests arrive as a Poisson process at ``load * workers / E[S]`` per second; service
    times are log-normal with ``median`` (s) and ``p99 = tail * median``, drawn per
    request from their own stream, so both variants see the very same demands. A client
    waits at most ``timeout`` seconds:

    * ``"abandon"``: :func:`guide_with_timeout` -- the client leaves, the request stays;
    * ``"cancel"``: :meth:`TimeoutPolicy.simpy_call` -- the client leaves and the
      request's token is cancelled, which interrupts the server process handling it
      (out of the queue, or out of its worker).

    With ``cancel_delay`` the server hears of a cancellation that many seconds after the
    client gave up (a network hop away): the request goes on meanwhile, waiting or being
    served. ``queue_order="lifo"`` serves the newest waiting request first instead of
    the oldest (without preempting a request in service).

    Measures the ``warmup`` .. ``horizon`` window (``warmup`` defaults to a sixth of
    the horizon).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if queue_order not in QUEUE_ORDERS:
        raise ValueError(f"queue_order must be one of {QUEUE_ORDERS}, got {queue_order!r}")
    require_finite_non_negative("cancel_delay", cancel_delay)
    require_finite_positive("load", load)
    require_finite_positive("timeout", timeout)
    require_int_at_least("workers", workers, 1)
    require_finite_positive("horizon", horizon)
    warmup = horizon / 6 if warmup is None else float(warmup)
    if not 0 <= warmup < horizon:
        raise ValueError(f"warmup must be within [0, horizon={horizon!r}), got {warmup!r}")
    dist = service_distribution(median, tail)
    rate = load * workers / dist.mean
    streams = RandomStreams(seed)
    arrivals = poisson_arrivals(rate, horizon, streams.numpy("arrivals"))
    service = streams.numpy("service").lognormal(math.log(median), dist.sigma, len(arrivals))

    env = simpy.Environment()
    lifo = queue_order == "lifo"
    pool = simpy.PriorityResource(env, capacity=workers) if lifo else \
        simpy.Resource(env, capacity=workers)
    recorder = Recorder()
    policy = TimeoutPolicy(timeout)
    policy.listeners.add(recorder.listener("client"))
    left_queue = np.full(len(arrivals), np.inf)
    in_service: dict[int, float] = {}
    busy: list[tuple[int, float, float, bool]] = []

    def serve(index: int) -> Generator[Any, Any, str]:
        # (no `finally:` here: SimPy closes the generators left pending at the horizon,
        # and their clean-up must not count as work done at the horizon)
        with (pool.request(priority=-index) if lifo else pool.request()) as request:
            try:
                yield request
            except simpy.Interrupt:  # cancelled while queued
                left_queue[index] = env.now
                raise
            left_queue[index] = in_service[index] = env.now
            try:
                yield env.timeout(service[index])
            except simpy.Interrupt:  # cancelled in service
                busy.append((index, in_service.pop(index), env.now, False))
                raise
            busy.append((index, in_service.pop(index), env.now, True))
        return "response"

    def interrupt_later(server: simpy.Process) -> Generator[Any, Any, None]:
        yield env.timeout(cancel_delay)
        if server.is_alive:
            server.interrupt("cancelled, heard late")

    def relayed(index: int) -> Generator[Any, Any, str]:
        """The client's side of a request served elsewhere: a cancellation reaches the
        server ``cancel_delay`` seconds later."""
        server = env.process(serve(index))
        server.callbacks.append(_defuse)  # an interrupted server is nobody's failure
        try:
            return (yield server)
        except simpy.Interrupt:
            env.process(interrupt_later(server))
            raise

    def client(index: int) -> Generator[Any, Any, None]:
        if variant == "cancel":
            work = relayed if cancel_delay > 0 else serve
            with contextlib.suppress(DeadlineExceededError):
                yield from policy.simpy_call(env, lambda _token: work(index))
            return
        started = env.now
        try:
            yield from guide_with_timeout(env, serve(index), timeout)
        except TimeoutError:
            recorder.record(env.now, "CallTimedOut", "client", elapsed=env.now - started)
        else:
            recorder.record(env.now, "CallFinished", "client", elapsed=env.now - started)

    start_at(env, arrivals, client)
    env.run(until=horizon)
    busy.extend((index, since, horizon, False) for index, since in in_service.items())
    requests = np.array([b[0] for b in busy], dtype=int)
    return OverloadResult(
        variant=variant, load=load, timeout=timeout, workers=workers, dist=dist,
        horizon=horizon, warmup=warmup, arrival_rate=rate, arrivals=arrivals,
        deadlines=arrivals + timeout, left_queue=left_queue, service=service,
        busy_request=requests,
        busy_start=np.array([b[1] for b in busy], dtype=float),
        busy_end=np.array([b[2] for b in busy], dtype=float),
        busy_complete=np.array([b[3] for b in busy], dtype=bool),
        recorder=recorder, cancel_delay=float(cancel_delay), queue_order=queue_order,
    )


def sweep_load(
    loads: Sequence[float] = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 2.5, 3.0),
    *,
    variants: Sequence[str] = VARIANTS,
    **options: Any,
) -> dict[str, list[OverloadResult]]:
    """:func:`run_overload` for every load and variant (same seed)."""
    return {v: [run_overload(v, load=load, **options) for load in loads] for v in variants}


def plot_goodput_vs_load(
    runs: Mapping[str, Sequence[OverloadResult]], ax: Axes, *, theory: bool = True,
    legend: bool = True,
) -> Axes:
    """Goodput against offered load: simulation (markers) and fluid theory (lines)."""
    first = next(iter(runs.values()))[0]
    loads = np.array([r.load for r in next(iter(runs.values()))])
    grid = np.linspace(min(loads.min(), 0.05), loads.max(), 120)
    for variant, results in runs.items():
        ax.plot(loads, [r.goodput for r in results], "o-", color=COLORS[variant],
                label=f"{VARIANT_LABELS[variant]} (simulated)", linewidth=1.4, markersize=4)
        if theory:
            ax.plot(grid, [fluid_goodput(variant, load=x, timeout=first.timeout,
                                         workers=first.workers, dist=first.dist) for x in grid],
                    "--", color=COLORS[variant], linewidth=1, alpha=0.8,
                    label=f"{VARIANT_LABELS[variant]} (fluid theory)")
    ax.plot(grid, grid * first.capacity, ":", color=COLORS["offered"],
            label="offered requests per second")
    ax.axvline(1.0, color="#999999", linewidth=0.8)
    ax.set_ylim(0, first.capacity * 2)
    if legend:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=8, ncol=1)
    return label(ax, title="Goodput", xlabel="offered load (1 = all workers busy)",
                 ylabel="successful responses per second")


def plot_shares_vs_load(runs: Mapping[str, Sequence[OverloadResult]], ax: Axes, *,
                        legend: bool = True) -> Axes:
    """Share of the workers' time spent on orphaned work, against offered load."""
    for variant, results in runs.items():
        shares = [r.capacity_shares() for r in results]
        ax.plot([r.load for r in results], [100 * s["orphaned"] for s in shares], "o-",
                color=COLORS[variant], label=VARIANT_LABELS[variant], linewidth=1.4,
                markersize=4)
    ax.set_ylim(-3, 103)
    ax.axvline(1.0, color="#999999", linewidth=0.8)
    if legend:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=8)
    return label(ax, title="Work for clients who left",
                 xlabel="offered load (1 = all workers busy)",
                 ylabel="orphaned work (% of worker time)")


def plot_latency_vs_load(runs: Mapping[str, Sequence[OverloadResult]], ax: Axes, *,
                         legend: bool = True) -> Axes:
    """Median and 99th percentile latency of successful responses, against load."""
    for variant, results in runs.items():
        loads = [r.load for r in results]
        ax.plot(loads, [1000 * r.latency_percentile(99) for r in results], "o-",
                color=COLORS[variant], label=f"{VARIANT_LABELS[variant]}, p99", linewidth=1.4,
                markersize=4)
        ax.plot(loads, [1000 * r.latency_percentile(50) for r in results], "s:",
                color=COLORS[variant], label=f"{VARIANT_LABELS[variant]}, median",
                linewidth=1, markersize=3)
    timeout = next(iter(runs.values()))[0].timeout
    ax.axhline(1000 * timeout, color="#999999", linewidth=0.8, linestyle=":")
    ax.text(0.02, 1000 * timeout, " timeout", va="bottom", fontsize=8, color="#666666",
            transform=ax.get_yaxis_transform())
    ax.set_ylim(0, 1000 * timeout * 1.15)
    if legend:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=8, ncol=2)
    return label(ax, title="Latency of the successful responses",
                 xlabel="offered load (1 = all workers busy)", ylabel="latency (ms)")


def draw_goodput_vs_load(
    timeout: float = 1.0, workers: int = 8, tail: float = 20.0, seed: int = 1,
    loads: Sequence[float] = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 2.5, 3.0),
) -> Figure:
    """Figure for the notebook: goodput, orphaned work and latency against offered load."""
    runs = sweep_load(loads, timeout=timeout, workers=workers, tail=tail, seed=seed)
    fig, axes = subplots(1, 3, width=10, height=4.6)
    plot_goodput_vs_load(runs, axes[0], legend=False)
    plot_shares_vs_load(runs, axes[1], legend=False)
    plot_latency_vs_load(runs, axes[2], legend=False)
    axes[0].set_title("Goodput")
    axes[1].set_title("Work for clients who left")
    axes[2].set_title("Latency of successes")
    for ax in axes:
        ax.set_xlabel("offered load")
    handles = [Line2D([], [], color=COLORS[v], marker="o", markersize=4, label=VARIANT_LABELS[v])
               for v in VARIANTS]
    handles += [Line2D([], [], color="#444444", linestyle="--", label="fluid theory"),
                Line2D([], [], color=COLORS["offered"], linestyle=":", label="offered (per s)"),
                Line2D([], [], color="#444444", marker="o", markersize=4, label="p99 latency"),
                Line2D([], [], color="#444444", marker="s", markersize=3, linestyle=":",
                       label="median latency")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8)
    dist = runs["abandon"][0].dist
    fig.suptitle(f"{workers} workers, service median {1000 * dist.median:g} ms, "
                 f"p99 {1000 * dist.p99:g} ms (mean {1000 * dist.mean:.0f} ms), "
                 f"client timeout {timeout:g} s; offered load 1 = all workers busy",
                 fontsize=10)
    return fig


def plot_goodput_over_time(
    results: Mapping[str, OverloadResult], ax: Axes, *, bin_width: float = 1.0
) -> Axes:
    """Successful responses per second over time, one line per variant."""
    first = next(iter(results.values()))
    top = max(first.arrival_rate, first.capacity)
    for variant, result in results.items():
        starts, rates = result.recorder.rate("CallFinished", bin_width=bin_width,
                                             until=result.horizon, source="client")
        ax.step(np.append(starts, result.horizon), np.append(rates, rates[-1]), where="post",
                color=COLORS[variant], linewidth=1.6,
                label=f"{VARIANT_LABELS[variant]}: {result.goodput:.0f}/s")
        top = max(top, float(rates.max(initial=0.0)))
    ax.axhline(first.arrival_rate, color=COLORS["offered"], linestyle=":",
               label=f"offered: {first.arrival_rate:.0f}/s")
    ax.axhline(first.capacity, color="#000000", linestyle="--", linewidth=0.8,
               label=f"workers / mean service: {first.capacity:.0f}/s")
    ax.axvspan(0, first.warmup, color="#eeeeee", zorder=0)
    ax.set_xlim(0, first.horizon)
    ax.set_ylim(0, top * 1.5)
    ax.legend(loc="upper right", fontsize=8, ncol=2)
    return label(ax, title="Goodput over time", xlabel="time (s)",
                 ylabel="successful responses per second")


def plot_capacity_shares(results: Mapping[str, OverloadResult], ax: Axes) -> Axes:
    """Stacked bars: how each variant's workers spent their time in the window."""
    names = list(results)
    bottoms = np.zeros(len(names))
    shares = [results[n].capacity_shares() for n in names]
    titles = {"useful": "useful", "wasted": "cut off at the timeout",
              "orphaned": "orphaned: client gone", "idle": "idle"}
    rows = np.arange(len(names))
    for part, text in titles.items():
        values = np.array([100 * s[part] for s in shares])
        bars = ax.barh(rows, values, left=bottoms, color=COLORS[part], label=text, height=0.5)
        ax.bar_label(bars, labels=[f"{v:.0f}%" if v >= 6 else "" for v in values],
                     label_type="center", fontsize=8)
        bottoms += values
    for row, name in zip(rows, names, strict=True):
        ax.text(0, row - 0.3, VARIANT_LABELS[name], fontsize=9, va="bottom")
    ax.set_xlim(0, 100)
    ax.set_ylim(len(names) - 0.6, -1.7)
    ax.set_yticks([])
    ax.grid(axis="y", visible=False)
    ax.legend(loc="upper center", ncol=2, fontsize=8)
    return label(ax, title="Where the workers' time went",
                 xlabel="% of worker time (after warm-up)", ylabel="client timeout")


def plot_queue_over_time(
    results: Mapping[str, OverloadResult], ax: Axes, *, legend: bool = True
) -> Axes:
    """Requests waiting in the server's queue over time."""
    first = next(iter(results.values()))
    times = np.linspace(0, first.horizon, 300)
    for variant, result in results.items():
        ax.plot(times, result.queue_over_time(times), color=COLORS[variant],
                label=VARIANT_LABELS[variant], linewidth=1.6)
    ax.axvspan(0, first.warmup, color="#eeeeee", zorder=0)
    ax.set_xlim(0, first.horizon)
    ax.set_ylim(bottom=0)
    if legend:
        ax.legend(loc="upper left", fontsize=8)
    return label(ax, title="Requests waiting at the server", xlabel="time (s)",
                 ylabel="requests in the queue")


def compare_overload(**options: Any) -> dict[str, OverloadResult]:
    """:func:`run_overload` once per variant, same seed and parameters."""
    return {variant: run_overload(variant, **options) for variant in VARIANTS}


EXPLORER_REQUESTS = 1200
"""The explorer shortens a run to about this many requests, to redraw quickly."""


def draw_overload(
    load: float = 1.5, timeout: float = 1.0, workers: int = 8, tail: float = 20.0,
    seed: int = 1, horizon: float = 20.0,
) -> Figure:
    """Both variants at one load: goodput over time, queue length, where the time went.

    The run is shortened below ``horizon`` when it would exceed about
    :data:`EXPLORER_REQUESTS` requests, so that a slider move redraws quickly.
    """
    dist = service_distribution(0.1, tail)
    rate = load * workers / dist.mean
    horizon = float(min(horizon, max(6.0, EXPLORER_REQUESTS / rate)))
    results = compare_overload(load=load, timeout=timeout, workers=workers, tail=tail,
                               seed=seed, horizon=horizon)
    fig, axes = subplot_mosaic([["top", "top"], ["queue", "shares"]], width=10, height=6.4,
                               height_ratios=[1.25, 1])
    # a fixed layout renders faster than the constrained one: this figure redraws on
    # every slider move
    fig.set_layout_engine(None)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.09, top=0.87, wspace=0.12,
                        hspace=0.45)
    top = axes["top"]
    plot_goodput_over_time(results, top, bin_width=horizon / 30)
    plot_queue_over_time(results, axes["queue"], legend=False)  # same colours as above
    plot_capacity_shares(results, axes["shares"])
    for ax in axes.values():  # fewer ticks: cheaper redraws
        ax.locator_params(axis="x", nbins=6)
        ax.locator_params(axis="y", nbins=4)
    fig.suptitle(f"Offered load {load:g} ({rate:.0f} requests/s), {workers} "
                 f"worker{'' if workers == 1 else 's'}, "
                 f"service p99/median {tail:.3g}, timeout {timeout:.2g} s\n"
                 f"(shaded: warm-up, not counted)", fontsize=10)
    return fig


def overload_table(
    loads: Sequence[float] = (0.5, 0.9, 1.5, 3.0), **options: Any
) -> str:
    """Goodput, success ratio, latency and orphaned work per variant and load, as text."""
    rows = []
    for load in loads:
        for variant in VARIANTS:
            r = run_overload(variant, load=load, **options)
            rows.append([load, VARIANT_LABELS[variant], r.goodput,
                         fluid_goodput(variant, load=load, timeout=r.timeout,
                                       workers=r.workers, dist=r.dist),
                         f"{100 * r.success_ratio:.0f}%",
                         1000 * r.latency_percentile(50), 1000 * r.latency_percentile(99),
                         f"{100 * r.capacity_shares()['orphaned']:.0f}%"])
    return format_table(["load", "client timeout", "goodput (/s)", "fluid theory (/s)",
                         "succeeded", "p50 (ms)", "p99 (ms)", "orphaned work"], rows)


def shares_table(results: Mapping[str, OverloadResult]) -> str:
    """Goodput and where the workers' time went, per variant of one run, as text."""
    rows = []
    for variant, r in results.items():
        shares = r.capacity_shares()
        rows.append([VARIANT_LABELS[variant], r.goodput, f"{100 * r.success_ratio:.0f}%",
                     *(f"{100 * shares[part]:.0f}%"
                       for part in ("useful", "wasted", "orphaned", "idle"))])
    return format_table(["client timeout", "goodput (/s)", "succeeded", "useful work",
                         "cut off at the timeout", "orphaned", "idle"], rows)


def overload_explorer() -> Explorer:
    """Sliders for the overload model: timeout, offered load, workers, tail heaviness."""
    return Explorer(draw_overload, {
        "load": float_slider("offered load", 1.5, 0.25, 3.0, 0.25),
        "timeout": log_slider("client timeout (s)", 1.0, -1.0, 0.7, 0.1),
        "workers": int_slider("workers", 8, 1, 32),
        "tail": log_slider("service p99 / median", 20.0, 0.3, 1.7, 0.1),
    })


# ============================================================================ polling


@dataclass(frozen=True)
class PollLeakResult:
    """What one run of :func:`run_poll_leak` produced (times in seconds)."""

    variant: str
    horizon: float
    pool_size: int
    requests: int
    disconnect_times: np.ndarray
    """When each disconnecting client left (one entry per disconnect)."""
    stop_times: np.ndarray
    """When the work of that request stopped (``inf``: it ran to its end)."""
    work_ends: np.ndarray
    """When the work of that request would have ended on its own."""
    thread_starts: np.ndarray
    thread_ends: np.ndarray
    """Each blocking-pool thread's busy interval (``inf``: still polling at the end)."""

    @property
    def disconnects(self) -> int:
        return len(self.disconnect_times)

    @property
    def stopped(self) -> int:
        """Disconnects after which the work stopped before its natural end."""
        return int(np.count_nonzero(self.stop_times < self.work_ends))

    @property
    def mean_stop_delay(self) -> float:
        """Seconds from a disconnect to the work stopping, over the stopped ones."""
        stopped = self.stop_times < self.work_ends
        if not stopped.any():
            return math.nan
        return float(np.mean(self.stop_times[stopped] - self.disconnect_times[stopped]))

    @property
    def wasted_work(self) -> float:
        """Seconds of work done after its client had left, in all."""
        ends = np.minimum(np.minimum(self.stop_times, self.work_ends), self.horizon)
        return float(np.clip(ends - self.disconnect_times, 0, None).sum())

    def threads_in_use(self, times: np.ndarray) -> np.ndarray:
        """Blocking-pool threads busy at each of ``times``."""
        started = np.searchsorted(np.sort(self.thread_starts), times, side="right")
        ended = np.searchsorted(np.sort(self.thread_ends), times, side="right")
        return started - ended

    def polls_per_second(self, edges: np.ndarray) -> np.ndarray:
        """Wake-ups of the polling loops per second, in the bins of ``edges``."""
        ends = np.minimum(self.thread_ends, self.horizon)
        return _overlap(edges, self.thread_starts, ends) / np.diff(edges) / POLL_INTERVAL

    @property
    def polls(self) -> int:
        """Wake-ups of all polling loops until the horizon."""
        ends = np.minimum(self.thread_ends, self.horizon)
        return int(np.floor((ends - self.thread_starts) / POLL_INTERVAL + 1e-9).sum())


def run_poll_leak(
    variant: str,
    *,
    rate: float = 50.0,
    horizon: float = 30.0,
    disconnect_probability: float = 0.05,
    median: float = 0.1,
    tail: float = 20.0,
    pool_size: int = TOKIO_BLOCKING_THREADS,
    seed: int = 1,
) -> PollLeakResult:
    """Requests run ``with_cancellation(work, token)``; a few clients disconnect mid-way.

    Each request's work takes a log-normal time; with ``disconnect_probability`` its
    client leaves at a uniform moment during the work and the request's token is
    cancelled.

    * ``"guide"``: the guide's ``with_cancellation`` races the work against
      ``when_cancelled``, which runs a 10 ms polling loop on a thread of a blocking pool
      of ``pool_size`` threads (tokio's ``spawn_blocking``). The work stops at the first
      poll that sees the flag. When the work ends first, its polling thread carries on
      until the token is cancelled, which for most requests is never. (The polls are
      counted, not simulated one by one: a loop started at ``t0`` that sleeps 10 ms
      between looks sees a flag set at ``c`` at ``t0 + ceil((c - t0) / 10 ms) * 10 ms``.)
    * ``"token"``: a :class:`CancellationToken` and ``TimeoutPolicy(inf).simpy_call``
      with the token as parent: no thread, no polls; the work is interrupted when the
      token is cancelled.
    """
    if variant not in ("guide", "token"):
        raise ValueError(f"variant must be 'guide' or 'token', got {variant!r}")
    require_finite_positive("rate", rate)
    require_finite_positive("horizon", horizon)
    require_unit_interval("disconnect_probability", disconnect_probability)
    require_int_at_least("pool_size", pool_size, 1)
    dist = service_distribution(median, tail)
    streams = RandomStreams(seed)
    arrivals = poisson_arrivals(rate, horizon, streams.numpy("arrivals"))
    count = len(arrivals)
    work = streams.numpy("service").lognormal(math.log(median), dist.sigma, count)
    draws = streams.numpy("disconnects")
    leaves = draws.random(count) < disconnect_probability
    leave_after = draws.random(count) * work  # a moment during the work

    env = simpy.Environment()
    pool = simpy.Resource(env, capacity=pool_size)
    clock = SimClock(env)
    linked = TimeoutPolicy(math.inf)
    stop_at = np.full(count, np.inf)
    thread_starts: list[float] = []
    thread_ends: list[float] = []
    thread_index: dict[int, int] = {}

    def do_work(index: int) -> Generator[Any, Any, None]:
        try:
            yield env.timeout(work[index])
        except simpy.Interrupt:
            stop_at[index] = env.now

    def poller(token: GuideSketchToken, cancel_at: float, observed: simpy.Event,
               index: int) -> Generator[Any, Any, None]:
        # spawn_blocking(move || while !cancelled { sleep(10 ms) }): one pool thread
        with pool.request() as thread:
            yield thread
            began = env.now
            thread_index[index] = len(thread_starts)
            thread_starts.append(began)
            thread_ends.append(math.inf)
            if math.isinf(cancel_at):
                yield env.event()  # nobody ever sets the flag: it polls forever
            ticks = math.ceil(max(0.0, cancel_at - began) / POLL_INTERVAL - 1e-9)
            yield env.timeout(ticks * POLL_INTERVAL)
            assert token.is_cancelled()
            thread_ends[thread_index[index]] = env.now
            if not observed.triggered:
                observed.succeed()

    def request_guide(index: int) -> Generator[Any, Any, None]:
        token = GuideSketchToken()
        cancel_at = env.now + leave_after[index] if leaves[index] else math.inf
        if leaves[index]:
            env.process(cancel_later(token.cancel, leave_after[index]))
        # with_cancellation: select! { f() => Ok, token.when_cancelled() => Err }
        worker = env.process(do_work(index))
        observed = env.event()
        env.process(poller(token, cancel_at, observed, index))
        yield worker | observed
        if observed.triggered and worker.is_alive:
            worker.interrupt("dropped by select!")  # Rust drops the losing future

    def request_token(index: int) -> Generator[Any, Any, None]:
        token = CancellationToken(clock=clock)
        if leaves[index]:
            env.process(cancel_later(lambda: token.cancel("client left"), leave_after[index]))
        with contextlib.suppress(OperationCancelled):
            yield from linked.simpy_call(env, lambda _t: do_work(index), parent=token)

    def cancel_later(cancel: Callable[[], object], delay: float) -> Generator[Any, Any, None]:
        yield env.timeout(delay)
        cancel()

    start_at(env, arrivals, request_guide if variant == "guide" else request_token)
    env.run(until=horizon)
    return PollLeakResult(
        variant=variant, horizon=horizon, pool_size=pool_size, requests=count,
        disconnect_times=(arrivals + leave_after)[leaves], stop_times=stop_at[leaves],
        work_ends=(arrivals + work)[leaves],
        thread_starts=np.array(thread_starts), thread_ends=np.array(thread_ends),
    )


def draw_poll_leak(rate: float = 50.0, horizon: float = 30.0, seed: int = 1) -> Figure:
    """The guide's polling ``when_cancelled`` beside the token: threads, wake-ups, stops."""
    runs = {v: run_poll_leak(v, rate=rate, horizon=horizon, seed=seed)
            for v in ("guide", "token")}
    names = {"guide": "guide: when_cancelled polls every 10 ms",
             "token": "CancellationToken: a callback, no thread"}
    fig, axes = subplots(1, 3, width=10, height=4.2)
    times = np.linspace(0, horizon, 400)
    edges = np.arange(0, horizon + 0.5, 1.0)
    wide = np.arange(0, horizon + 1.5, 3.0)  # disconnects are rare: 3 s bins
    for variant, result in runs.items():
        axes[0].plot(times, result.threads_in_use(times), color=COLORS[variant],
                     label=names[variant], linewidth=1.6)
        polls = result.polls_per_second(edges)
        axes[1].step(edges, np.append(polls, polls[-1]), where="post",
                     color=COLORS[variant], label=names[variant], linewidth=1.6)
        stopped = result.stop_times < result.work_ends
        counts, _ = np.histogram(result.disconnect_times, bins=wide)
        hits, _ = np.histogram(result.disconnect_times[stopped], bins=wide)
        share = np.where(counts > 0, 100 * hits / np.maximum(counts, 1), np.nan)
        axes[2].step(wide, np.append(share, share[-1]), where="post", color=COLORS[variant],
                     label=names[variant], linewidth=1.6)
    pool = runs["guide"].pool_size
    axes[0].axhline(pool, color="#000000", linestyle="--", linewidth=0.8)
    axes[0].text(0.01, pool, f" blocking pool: {pool} threads", va="bottom", fontsize=8,
                 transform=axes[0].get_yaxis_transform())
    axes[0].set_ylim(0, pool * 1.2)
    label(axes[0], title="Blocking threads in use", xlabel="time (s)", ylabel="threads")
    label(axes[1], title="Polling wake-ups", xlabel="time (s)", ylabel="wake-ups per second")
    axes[2].set_ylim(-5, 105)
    label(axes[2], title="Work stopped on leaving", xlabel="time (s)",
          ylabel="% of the clients who left (3 s bins)")
    fig.legend(handles=axes[0].get_lines()[:2], loc="outside lower center", ncol=2, fontsize=8)
    fig.suptitle(f"{rate:g} requests/s, 5% of clients leave mid-request")
    return fig


def poll_leak_table(**options: Any) -> str:
    """The polling sketch against the token, summed over a run, as text."""
    rows = []
    for variant, name in (("guide", "guide: when_cancelled polls"),
                          ("token", "CancellationToken")):
        r = run_poll_leak(variant, **options)
        rows.append([name, int(r.threads_in_use(np.array([r.horizon]))[0]), r.polls,
                     f"{r.stopped}/{r.disconnects}", 1000 * r.mean_stop_delay, r.wasted_work])
    return format_table(["waiting with", "threads held at the end", "wake-ups",
                         "disconnects that stopped work", "mean delay to stop (ms)",
                         "work after disconnect (s)"], rows)


# ============================================================================ fan-out


FANOUT_VARIANTS: tuple[str, ...] = ("guide_token", "guide_cascade", "token")

FANOUT_LABELS: dict[str, str] = {
    "guide_token": "guide: with_timeout_cancellation",
    "guide_cascade": "guide: + cascade.cancel_all()",
    "token": "CancellationToken children",
}


@dataclass(frozen=True)
class FanoutResult:
    """Operations of one or more request trees (times in seconds).

    Each row of the arrays is one operation: its tree, its level (1 = child of the
    request, 2 = grandchild), its slot among its siblings, the slot of the child it
    belongs to (-1 for children), and when its own work started and stopped.
    """

    variant: str
    timeout: float
    trees: int
    tree: np.ndarray
    level: np.ndarray
    slot: np.ndarray
    parent: np.ndarray
    start: np.ndarray
    end: np.ndarray

    def work_after_deadline(self) -> float:
        """Operation-seconds of work done after the request timed out, per request."""
        after = self.end - np.maximum(self.start, self.timeout)
        return float(np.clip(after, 0, None).sum() / self.trees)

    def running_after(self, delay: float) -> float:
        """Operations still working ``delay`` seconds after the timeout, per request."""
        at = self.timeout + delay
        return float(np.count_nonzero((self.start <= at) & (self.end > at)) / self.trees)


def run_fanout(
    variant: str,
    *,
    fanout: int = 4,
    timeout: float = 0.3,
    median: float = 0.25,
    tail: float = 6.0,
    check_interval: float = POLL_INTERVAL,
    trees: int = 20,
    seed: int = 1,
) -> FanoutResult:
    """A request calls ``fanout`` children, each of which calls ``fanout`` grandchildren.

    Every operation does its own log-normal amount of work (``median``, ``p99 = tail *
    median``); a child returns when its own work and its grandchildren are done. The
    request's caller gives up after ``timeout``.

    * ``"guide_token"``: the guide's ``with_timeout_cancellation``: on timeout the
      request's token is cancelled and its future dropped. Children got tokens from
      ``cascade.create_linked_token()`` and run as spawned tasks; nobody sets their
      flags, so they and their grandchildren all work to the end.
    * ``"guide_cascade"``: as careful as the guide allows: the caller keeps the cascade
      and calls ``cancel_all()`` on timeout. Children see their flag at their next check
      (every ``check_interval``) and stop; grandchildren hold tokens of the children's
      own cascades, which nobody cancels.
    * ``"token"``: each level calls the next through ``TimeoutPolicy.simpy_call`` with
      its own token as parent. Cancelling the request's token cancels the whole tree;
      each operation's process is interrupted at once.

    ``trees`` independent requests are simulated side by side (same parameters).
    """
    if variant not in FANOUT_VARIANTS:
        raise ValueError(f"variant must be one of {FANOUT_VARIANTS}, got {variant!r}")
    require_int_at_least("fanout", fanout, 1)
    require_int_at_least("trees", trees, 1)
    require_finite_positive("timeout", timeout)
    require_finite_positive("check_interval", check_interval)
    dist = service_distribution(median, tail)
    # work[tree, child] for children, work[tree, fanout + child * fanout + k] below them
    work = RandomStreams(seed).numpy("work").lognormal(
        math.log(median), dist.sigma, (trees, fanout + fanout * fanout))
    env = simpy.Environment()
    rows: list[tuple[int, int, int, int, float, float]] = []

    def amount(tree: int, child: int, k: int | None) -> float:
        return float(work[tree, child if k is None else fanout + child * fanout + k])

    # ----------------------------------------------------------- the guide's tokens
    def guide_op(tree: int, child: int, k: int | None,
                 token: GuideSketchToken) -> Generator[Any, Any, None]:
        """Own work in slices, looking at the flag between slices (all the sketch allows)."""
        began, left = env.now, amount(tree, child, k)
        while left > 0 and not token.is_cancelled():
            step = min(check_interval, left)
            yield env.timeout(step)
            left -= step
        rows.append((tree, 1 if k is None else 2, child if k is None else k,
                     -1 if k is None else child, began, env.now))

    def guide_child(tree: int, child: int, token: GuideSketchToken) -> Generator[Any, Any, None]:
        cascade = GuideSketchCascade()  # the child's own: nobody will ever cancel it
        below = [env.process(guide_op(tree, child, k, cascade.create_linked_token()))
                 for k in range(fanout)]
        yield from guide_op(tree, child, None, token)
        yield env.all_of(below)

    def guide_request(tree: int) -> Generator[Any, Any, None]:
        token = GuideSketchToken()  # with_timeout_cancellation's token, handed to f
        cascade = GuideSketchCascade()
        children = [env.process(guide_child(tree, c, cascade.create_linked_token()))
                    for c in range(fanout)]
        yield env.all_of(children) | env.timeout(timeout)
        if not all(child.triggered for child in children):
            token.cancel()  # the request's own flag: no child ever reads it
            if variant == "guide_cascade":
                cascade.cancel_all()

    # ----------------------------------------------------------- the token tree
    unlimited = TimeoutPolicy(math.inf)

    def token_op(tree: int, child: int, k: int | None,
                 token: CancellationToken) -> Generator[Any, Any, None]:
        below = [] if k is not None else [
            env.process(call(tree, child, j, token)) for j in range(fanout)]
        began = env.now
        try:
            yield env.timeout(amount(tree, child, k))
        finally:
            rows.append((tree, 1 if k is None else 2, child if k is None else k,
                         -1 if k is None else child, began, env.now))
        yield env.all_of(below)

    def call(tree: int, child: int, k: int | None,
             token: CancellationToken) -> Generator[Any, Any, None]:
        # the child's token inherits the request's deadline, so a child may time out too
        with contextlib.suppress(OperationCancelled, DeadlineExceededError):
            yield from unlimited.simpy_call(
                env, lambda mine: token_op(tree, child, k, mine), parent=token)

    def token_request(tree: int) -> Generator[Any, Any, None]:
        def fan_out(token: CancellationToken) -> Generator[Any, Any, None]:
            yield env.all_of([env.process(call(tree, c, None, token)) for c in range(fanout)])

        with contextlib.suppress(DeadlineExceededError):
            yield from TimeoutPolicy(timeout).simpy_call(env, fan_out)

    for tree in range(trees):
        env.process(token_request(tree) if variant == "token" else guide_request(tree))
    env.run()
    table = np.array(rows, dtype=float).reshape(-1, 6)
    return FanoutResult(
        variant=variant, timeout=timeout, trees=trees,
        tree=table[:, 0].astype(int), level=table[:, 1].astype(int),
        slot=table[:, 2].astype(int), parent=table[:, 3].astype(int),
        start=table[:, 4], end=table[:, 5],
    )


def plot_fanout_tree(result: FanoutResult, ax: Axes, *, tree: int = 0) -> Axes:
    """One request's operations as bars: grey before the timeout, red after it."""
    rows = np.flatnonzero(result.tree == tree)
    order: list[int] = []
    for child in sorted(rows[result.level[rows] == 1], key=lambda r: result.slot[r]):
        order.append(int(child))
        below = rows[(result.level[rows] == 2) & (result.parent[rows] == result.slot[child])]
        order.extend(int(r) for r in sorted(below, key=lambda r: result.slot[r]))
    names = []
    for y, row in enumerate(order):
        start, end = result.start[row], result.end[row]
        if min(end, result.timeout) > start:
            ax.barh(y, min(end, result.timeout) - start, left=start, color="#999999",
                    height=0.7)
        if end > result.timeout:
            ax.barh(y, end - max(start, result.timeout), left=max(start, result.timeout),
                    color=COLORS["orphaned"], height=0.7)
        names.append(f"child {result.slot[row] + 1}" if result.level[row] == 1
                     else f"   grandchild {result.parent[row] + 1}.{result.slot[row] + 1}")
    ax.axvline(result.timeout, color="#000000", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(order)), names, fontsize=8)
    ax.set_ylim(len(order) - 0.5, -0.5)
    ax.set_title(f"{FANOUT_LABELS[result.variant]}\n{result.work_after_deadline():.1f} s "
                 f"of work after the timeout", fontsize=9)
    ax.set_xlabel("time since the request started (s)")
    ax.set_ylabel("operation")
    return ax


def draw_fanout(fanout: int = 4, timeout: float = 0.3, seed: int = 1) -> Figure:
    """One request tree per variant, as bars, the timeout marked."""
    fig, axes = subplots(1, 3, width=10, height=5.6, sharex=True, sharey=True)
    for ax, variant in zip(axes, FANOUT_VARIANTS, strict=True):
        plot_fanout_tree(run_fanout(variant, fanout=fanout, timeout=timeout, seed=seed), ax)
    fig.legend(handles=[Patch(color="#999999", label="work before the timeout"),
                        Patch(color=COLORS["orphaned"],
                              label="work after the timeout (its caller has left)")],
               loc="outside lower center", ncol=2)
    for ax in axes[1:]:
        ax.set_ylabel("")
    fig.suptitle(f"A request calls {fanout} children, each calls {fanout} grandchildren; "
                 f"the caller gives up after {timeout:g} s (dashed line)\n"
                 f"one request shown; work after the timeout: mean over all requests",
                 fontsize=10)
    return fig


def fanout_table(**options: Any) -> str:
    """Work after the timeout and operations still running, per variant, as text."""
    rows = []
    for variant in FANOUT_VARIANTS:
        r = run_fanout(variant, **options)
        rows.append([FANOUT_LABELS[variant], r.running_after(2 * POLL_INTERVAL),
                     r.work_after_deadline()])
    return format_table(["cancellation", "operations running 20 ms after the timeout",
                         "work after the timeout (s per request)"], rows)


__all__ = [
    "COLORS",
    "FANOUT_VARIANTS",
    "POLL_INTERVAL",
    "QUEUE_ORDERS",
    "TOKIO_BLOCKING_THREADS",
    "VARIANTS",
    "FanoutResult",
    "GuideSketchCascade",
    "GuideSketchToken",
    "OverloadResult",
    "PollLeakResult",
    "compare_overload",
    "draw_fanout",
    "draw_goodput_vs_load",
    "draw_overload",
    "draw_poll_leak",
    "fanout_table",
    "fluid_budget",
    "fluid_goodput",
    "fluid_useful_share",
    "guide_with_timeout",
    "lognormal_cdf",
    "lognormal_partial_mean",
    "overload_explorer",
    "overload_table",
    "poll_leak_table",
    "run_fanout",
    "run_overload",
    "run_poll_leak",
    "service_distribution",
    "shares_table",
    "sweep_load",
]
