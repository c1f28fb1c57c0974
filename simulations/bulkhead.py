"""Bulkheads in simulated time (guide section 4.3, 舱壁与隔离模式).

Three models, each driving :class:`patterns.resilience.bulkhead.Bulkhead` through its
SimPy driver:

* **Isolation** (:func:`run_isolation`): a service calls two dependencies, A and B, at the
  same rate. At ``slow_at`` seconds B turns slow. Behind one *shared* bulkhead, B's slow
  calls soon hold every permit and fill the queue, so calls to the healthy A wait and are
  rejected too; with *isolated* bulkheads (the same permits and queue places, split in
  two) A never notices.
* **Queueing theory** (:func:`run_queue`, :func:`mmck`): with Poisson arrivals,
  exponential service times, ``c`` permits, a queue of ``q`` places and no wait limit, a
  bulkhead is the M/M/c/K queue of textbooks (``K = c + q``). Its blocking probability
  and mean wait in queue follow from the Erlang formulas; the simulation must agree.
* **The guide's sketch** (:func:`run_guide_sketch`): :class:`GuideSketchBulkhead`
  transcribes the guide's ``Bulkhead`` with its flaws: its queue channel's receiver is
  dropped at once, so every request is rejected; and were the receiver kept, each
  finished call *adds* a message to the queue instead of taking one out, so the queue
  fills up after a few calls and the bulkhead rejects everything from then on.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

from patterns._validation import (
    require_finite_non_negative,
    require_finite_positive,
    require_int_at_least,
)
from patterns.resilience.bulkhead import (
    Bulkhead,
    BulkheadEvent,
    BulkheadFullError,
    CallPermitted,
    CallRejected,
)
from simulations.kit.plotting import color, label, subplots
from simulations.kit.queueing import MMcKTheory, mmck
from simulations.kit.recorder import Recorder
from simulations.kit.rng import RandomStreams
from simulations.kit.tables import format_table
from simulations.kit.widgets import Explorer, float_slider, int_slider, log_slider
from simulations.kit.workloads import poisson_arrivals, start_at

DEPENDENCY_COLOURS: dict[str, str] = {"A": "#1f77b4", "B": "#ff7f0e"}
VARIANT_COLOURS: dict[str, str] = {
    "guide": color("guide"),
    "guide, receiver kept": "#9467bd",
    "Bulkhead": color("success"),
}
SKETCH_VARIANTS: tuple[str, ...] = tuple(VARIANT_COLOURS)


# ============================================================================ the guide


class GuideSketchError(Exception):
    """The sketch's ``BulkheadError``: ``QueueFull`` or ``Rejected``."""


class GuideSketchChannel:
    """The part of ``tokio::sync::mpsc::channel(capacity)`` that the sketch uses.

    ``try_send(())`` fails with ``Closed`` once the receiver is gone, with ``Full`` when
    ``capacity`` messages are buffered, and otherwise buffers one more message. Only a
    receiver takes messages out again, and the sketch never receives.
    """

    def __init__(self, capacity: int, *, receiver_alive: bool) -> None:
        if capacity < 1:  # tokio panics: "mpsc bounded channel requires buffer > 0"
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        self.capacity = capacity
        self.receiver_alive = receiver_alive
        self.buffered = 0

    def try_send(self) -> str | None:
        """``None`` if the message was buffered, else the error: ``"closed"`` or ``"full"``."""
        if not self.receiver_alive:
            return "closed"
        if self.buffered >= self.capacity:
            return "full"
        self.buffered += 1
        return None


class GuideSketchBulkhead:
    """The guide's ``Bulkhead`` (section 4.3), transcribed with its flaws, for pitfalls.

    ``Bulkhead::new`` writes ``let (queue_tx, _) = mpsc::channel(max_queue_size)``: the
    pattern ``_`` drops the receiver at once, the channel is closed, and ``acquire``'s
    ``self.queue.try_send(())`` fails on every call: every request is ``QueueFull``.
    With ``keep_receiver=True`` the receiver is kept alive (but, as in the sketch,
    nothing ever receives): then the queue does count calls, but the permit's ``Drop``
    sends *another* message "to leave the queue", so each call leaves two messages
    behind and the channel is full after ``max_queue_size / 2`` calls, for good.

    The semaphore is a FIFO :class:`simpy.Resource` (tokio's ``Semaphore`` is fair);
    ``acquire`` waits for it without a time limit, as the sketch's ``.await`` does.
    """

    def __init__(
        self, env: simpy.Environment, max_concurrent_calls: int, max_queue_size: int,
        *, keep_receiver: bool = False,
    ) -> None:
        self.env = env
        self.permits = simpy.Resource(env, capacity=max_concurrent_calls)
        self.queue = GuideSketchChannel(max_queue_size, receiver_alive=keep_receiver)
        self.max_concurrent_calls = max_concurrent_calls

    def acquire(self) -> Generator[Any, Any, GuideSketchPermit]:
        """``async fn acquire``: put the request in the queue, then wait for a permit."""
        if self.queue.try_send() is not None:
            raise GuideSketchError("QueueFull")
        request = self.permits.request()
        yield request
        return GuideSketchPermit(self.permits, request, self.queue)

    def metrics(self) -> dict[str, int]:
        """``BulkheadMetrics``: available and maximum permits (nothing about the queue)."""
        return {"available_permits": self.max_concurrent_calls - self.permits.count,
                "max_permits": self.max_concurrent_calls}


class GuideSketchPermit:
    """The sketch's ``BulkheadPermit``; :meth:`drop` is its ``impl Drop``."""

    def __init__(self, permits: simpy.Resource, request: Any, queue: GuideSketchChannel):
        self.permits, self.request, self.queue = permits, request, queue

    def drop(self) -> None:
        """Release the semaphore permit and, meaning "remove the request from the queue"
        (从队列中移除请求), *send* one more message into it."""
        self.permits.release(self.request)
        self.queue.try_send()  # `let _ = self.queue.try_send(());` -- errors ignored


def guide_with_bulkhead(
    bulkhead: GuideSketchBulkhead, attempt_fn: Callable[[], Generator[Any, Any, Any]]
) -> Generator[Any, Any, Any]:
    """The sketch's ``with_bulkhead``: acquire a permit, run, drop the permit."""
    permit = yield from bulkhead.acquire()
    try:
        return (yield from attempt_fn())
    finally:
        permit.drop()


@dataclass(frozen=True)
class SketchResult:
    """One run of :func:`run_guide_sketch` (times in seconds)."""

    variant: str
    horizon: float
    arrival_times: np.ndarray
    rejected: np.ndarray
    """For each arrival, whether the bulkhead rejected it."""
    queue_times: np.ndarray
    queue_lengths: np.ndarray
    """What the bulkhead counts as its queue, after each change: the sketch's buffered
    messages, or the :class:`Bulkhead`'s waiting callers."""
    queue_size: int

    @property
    def rejected_share(self) -> float:
        return float(np.mean(self.rejected)) if len(self.rejected) else math.nan

    def rejected_share_over_time(self, bin_width: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """(bin starts, share of the requests arriving in each bin that were rejected)."""
        edges = np.arange(0.0, self.horizon + bin_width / 2, bin_width)
        total, _ = np.histogram(self.arrival_times, bins=edges)
        refused, _ = np.histogram(self.arrival_times[self.rejected], bins=edges)
        with np.errstate(invalid="ignore", divide="ignore"):
            return edges[:-1], np.where(total > 0, refused / np.maximum(total, 1), np.nan)


def run_guide_sketch(
    variant: str = "guide",
    *,
    rate: float = 20.0,
    concurrency: int = 4,
    queue_size: int = 20,
    max_wait: float = 0.5,
    latency: float = 0.1,
    horizon: float = 20.0,
    seed: int = 1,
) -> SketchResult:
    """Poisson requests (``rate`` per second) through one bulkhead of ``variant``.

    ``"guide"`` is :class:`GuideSketchBulkhead` as written, ``"guide, receiver kept"``
    the same with the channel's receiver kept alive, ``"Bulkhead"`` the library's
    :class:`Bulkhead` with ``max_wait``. Calls take exponential times of mean
    ``latency``; the default load keeps two of four permits busy on average.
    """
    if variant not in SKETCH_VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(map(repr, SKETCH_VARIANTS))}, "
                         f"got {variant!r}")
    require_finite_positive("rate", rate)
    require_int_at_least("concurrency", concurrency, 1)
    require_int_at_least("queue_size", queue_size, 1)
    require_finite_positive("latency", latency)
    require_finite_positive("horizon", horizon)
    env = simpy.Environment()
    streams = RandomStreams(seed)
    service = streams.stream("service")
    recorder = Recorder()
    arrivals = poisson_arrivals(rate, horizon, streams.numpy("arrivals"))
    rejected = np.zeros(len(arrivals), dtype=bool)

    def attempt() -> Generator[Any, Any, None]:
        yield env.timeout(service.expovariate(1.0 / latency))

    if variant == "Bulkhead":
        bulkhead = Bulkhead("sketch", concurrency, queue_size, max_wait=max_wait)
        bulkhead.listeners.add(recorder.listener("bulkhead"))

        def request(index: int) -> Generator[Any, Any, None]:
            try:
                yield from bulkhead.simpy_call(env, attempt)
            except BulkheadFullError:
                rejected[index] = True
    else:
        sketch = GuideSketchBulkhead(env, concurrency, queue_size,
                                     keep_receiver=variant != "guide")
        channel = sketch.queue
        send = channel.try_send

        def recorded_send() -> str | None:
            outcome = send()
            recorder.record(env.now, "channel", buffered=channel.buffered)
            return outcome

        channel.try_send = recorded_send  # type: ignore[method-assign]

        def request(index: int) -> Generator[Any, Any, None]:
            try:
                yield from guide_with_bulkhead(sketch, attempt)
            except GuideSketchError:
                rejected[index] = True

    start_at(env, arrivals, request)
    env.run()
    if variant == "Bulkhead":
        times, lengths = _queue_length_from_events(recorder)
    else:
        channel_records = recorder.select("channel")
        times = np.array([0.0, *(r.time for r in channel_records)])
        lengths = np.array([0, *(r.data["buffered"] for r in channel_records)])
    return SketchResult(variant, horizon, arrivals, rejected, times, lengths, queue_size)


def _queue_length_from_events(recorder: Recorder) -> tuple[np.ndarray, np.ndarray]:
    """The number of waiting callers over time, from a bulkhead's recorded events."""
    steps: list[tuple[float, int]] = [(0.0, 0)]
    length = 0
    for record in recorder.records:
        if record.kind == "CallQueued":
            length += 1
        elif (record.kind == "CallPermitted" and record.data["waited"] > 0) or (
                record.kind == "CallRejected" and record.data["reason"] == "wait_timeout"):
            length -= 1
        else:
            continue
        steps.append((record.time, length))
    times, lengths = zip(*steps, strict=True)
    return np.array(times), np.array(lengths)


def compare_guide_sketch(**options: Any) -> dict[str, SketchResult]:
    """:func:`run_guide_sketch` once per variant, same seed and workload."""
    return {variant: run_guide_sketch(variant, **options) for variant in SKETCH_VARIANTS}


def guide_sketch_table(results: dict[str, SketchResult]) -> str:
    """Requests, rejections and the final queue count of each variant, as text."""
    rows = []
    for name, r in results.items():
        rows.append([name, len(r.arrival_times), int((~r.rejected).sum()),
                     int(r.rejected.sum()), f"{r.rejected_share:.1%}",
                     int(r.queue_lengths[-1]), r.queue_size])
    return format_table(["bulkhead", "requests", "admitted", "rejected", "rejected share",
                         "queue count at the end", "queue size"], rows)


def draw_guide_sketch(
    rate: float = 20.0, concurrency: int = 4, queue_size: int = 20, seed: int = 1
) -> Figure:
    """Figure for the pitfalls: rejections over time, and what each variant counts as queue."""
    results = compare_guide_sketch(rate=rate, concurrency=concurrency, queue_size=queue_size,
                                   seed=seed)
    fig, (left, right) = subplots(1, 2, width=10, height=4.0)
    # The guide's line lies under the others at 100 %: draw it wide, the others on top.
    widths = {"guide": 4.0, "guide, receiver kept": 1.8, "Bulkhead": 1.8}
    dashes = {"guide": "-", "guide, receiver kept": "--", "Bulkhead": "-"}
    for name, result in results.items():
        style = {"color": VARIANT_COLOURS[name], "linewidth": widths[name],
                 "linestyle": dashes[name]}
        edges = np.arange(0.0, result.horizon + 0.5, 1.0)
        _, share = result.rejected_share_over_time(1.0)
        _steps(left, edges, 100 * share, label=f"{name}: {result.rejected_share:.0%} rejected",
               **style)
        right.step(result.queue_times, result.queue_lengths, where="post",
                   label=name, **style)
    right.axhline(queue_size, color="black", linestyle=":", linewidth=1,
                  label=f"queue size {queue_size}")
    right.annotate("guide: the channel is closed,\nnothing is ever buffered", xy=(2.0, 0.0),
                   xytext=(3.0, queue_size * 0.3), fontsize=9,
                   arrowprops={"arrowstyle": "->", "color": VARIANT_COLOURS["guide"]})
    left.set_ylim(-5, 105)
    right.set_ylim(-1, queue_size * 1.15)
    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    left.legend(loc="center right")
    right.legend(loc="center right")
    label(left, title="Requests rejected", xlabel="arrival time (s, 1 s bins)",
          ylabel="rejected (% of arrivals)")
    label(right, title="What the bulkhead counts as its queue", xlabel="time (s)",
          ylabel="queue count (messages or waiters)")
    fig.suptitle(f"{rate:g} requests/s of 0.1 s on average, {concurrency} permits (half of them "
                 f"busy on average), queue of {queue_size}")
    return fig


def _steps(ax: Axes, edges: np.ndarray, values: np.ndarray, **style: Any) -> None:
    """One value per bin, drawn as a step line over the whole bin (the last one too)."""
    ax.step(edges, np.append(values, values[-1]), where="post", **style)


# ============================================================================ isolation


@dataclass(frozen=True)
class DependencyTrace:
    """What happened to the calls to one dependency (arrays over its requests)."""

    arrivals: np.ndarray
    succeeded: np.ndarray
    """Whether each request got a permit and completed (else it was rejected)."""
    latency: np.ndarray
    """Seconds from arrival to completion (successes) or to the rejection."""
    starts: np.ndarray
    """Sorted times at which a call to this dependency got a permit."""
    ends: np.ndarray
    """Sorted times at which such a call released its permit."""

    def refused_wait(self, start: float, end: float) -> float:
        """Mean seconds the refused requests arriving in ``[start, end)`` waited to hear
        no (0 when they were all refused at once; NaN when none was refused)."""
        inside = (self.arrivals >= start) & (self.arrivals < end) & ~self.succeeded
        return float(np.mean(self.latency[inside])) if inside.any() else math.nan

    def success_rate(self, start: float, end: float) -> float:
        """The share of requests arriving in ``[start, end)`` that succeeded."""
        inside = (self.arrivals >= start) & (self.arrivals < end)
        return float(np.mean(self.succeeded[inside])) if inside.any() else math.nan

    def latency_percentile(self, q: float, start: float, end: float) -> float:
        """The ``q``-th percentile latency of the successes arriving in ``[start, end)``."""
        inside = (self.arrivals >= start) & (self.arrivals < end) & self.succeeded
        return float(np.percentile(self.latency[inside], q)) if inside.any() else math.nan

    def in_flight(self, times: np.ndarray) -> np.ndarray:
        """Permits held by calls to this dependency at each of ``times``."""
        return (np.searchsorted(self.starts, times, side="right")
                - np.searchsorted(self.ends, times, side="right"))

    def mean_in_flight(self, edges: np.ndarray) -> np.ndarray:
        """Permits held on average (over time) in each bin between ``edges``.

        Exact: the area under the in-flight step function up to ``t`` is
        ``sum over starts before t of (t - start)`` minus the same over ends.
        """
        def area(points: np.ndarray) -> np.ndarray:
            before = np.searchsorted(points, edges, side="right")
            sums = np.concatenate([[0.0], np.cumsum(points)])[before]
            return edges * before - sums

        held = area(self.starts) - area(self.ends)
        return np.diff(held) / np.diff(edges)


@dataclass(frozen=True)
class IsolationResult:
    """One run of :func:`run_isolation` (times in seconds)."""

    isolated: bool
    concurrency: int
    queue_size: int
    max_wait: float
    slow_at: float
    horizon: float
    dependencies: dict[str, DependencyTrace]

    @property
    def label(self) -> str:
        return "isolated pools" if self.isolated else "one shared pool"

    def success_rate(self, dependency: str, start: float = 0.0, end: float | None = None) -> float:
        return self.dependencies[dependency].success_rate(
            start, self.horizon if end is None else end)


def split(total: int) -> tuple[int, int]:
    """Share ``total`` permits or queue places between A and B (A gets the odd one)."""
    return total - total // 2, total // 2


def run_isolation(
    *,
    isolated: bool,
    concurrency: int = 20,
    queue_size: int = 10,
    max_wait: float = 0.5,
    rate: float = 20.0,
    latency: float = 0.05,
    slow_latency: float = 5.0,
    slow_at: float = 20.0,
    horizon: float = 60.0,
    seed: int = 1,
) -> IsolationResult:
    """Calls to A and B (Poisson, ``rate`` per second each) behind bulkheads.

    Calls take exponential times of mean ``latency``; from ``slow_at`` on, calls to B
    take ``slow_latency`` on average. With ``isolated=False`` one :class:`Bulkhead` of
    ``concurrency`` permits and ``queue_size`` places guards both; with ``isolated=True``
    each dependency has its own, with the permits and places split between them
    (:func:`split`). Every bulkhead lets a caller wait at most ``max_wait`` seconds.
    Requests keep arriving for ``max_wait + 1`` s after ``horizon`` (so that the last
    ones counted meet a queue as busy as everyone else); what a result reports is for
    the requests arriving before ``horizon``.
    """
    require_int_at_least("concurrency", concurrency, 2 if isolated else 1)
    require_int_at_least("queue_size", queue_size, 0)
    require_finite_non_negative("max_wait", max_wait)
    require_finite_positive("rate", rate)
    require_finite_positive("latency", latency)
    require_finite_positive("slow_latency", slow_latency)
    require_finite_non_negative("slow_at", slow_at)
    require_finite_positive("horizon", horizon)
    env = simpy.Environment()
    streams = RandomStreams(seed)
    if isolated:
        (permits_a, permits_b), (places_a, places_b) = split(concurrency), split(queue_size)
        bulkheads = {"A": Bulkhead("A", permits_a, places_a, max_wait=max_wait),
                     "B": Bulkhead("B", permits_b, places_b, max_wait=max_wait)}
    else:
        shared = Bulkhead("shared", concurrency, queue_size, max_wait=max_wait)
        bulkheads = {"A": shared, "B": shared}
    traces: dict[str, DependencyTrace] = {}
    runs = []
    for name in ("A", "B"):
        service = streams.stream(f"service-{name}")
        # Traffic goes on past the horizon, so that the callers who arrive just before
        # it still meet the queue they would meet in the middle of the run.
        arrivals = poisson_arrivals(rate, horizon + max_wait + 1.0,
                                    streams.numpy(f"arrivals-{name}"))
        succeeded = np.zeros(len(arrivals), dtype=bool)
        latencies = np.zeros(len(arrivals))
        starts: list[float] = []
        ends: list[float] = []
        slow = name == "B"

        def attempt(slow: bool = slow, service: Any = service, starts: list[float] = starts,
                    ends: list[float] = ends) -> Generator[Any, Any, None]:
            starts.append(env.now)
            mean = slow_latency if slow and env.now >= slow_at else latency
            yield env.timeout(service.expovariate(1.0 / mean))
            ends.append(env.now)

        def request(index: int, bulkhead: Bulkhead = bulkheads[name],
                    attempt: Callable[[], Generator[Any, Any, None]] = attempt,
                    succeeded: np.ndarray = succeeded,
                    latencies: np.ndarray = latencies) -> Generator[Any, Any, None]:
            arrived = env.now
            try:
                yield from bulkhead.simpy_call(env, attempt)
            except BulkheadFullError:
                pass
            else:
                succeeded[index] = True
            latencies[index] = env.now - arrived

        start_at(env, arrivals, request)
        runs.append((name, arrivals, succeeded, latencies, starts, ends))
    env.run()
    for name, arrivals, succeeded, latencies, starts, ends in runs:
        traces[name] = DependencyTrace(arrivals, succeeded, latencies, np.array(starts),
                                       np.sort(ends))
    return IsolationResult(isolated, concurrency, queue_size, max_wait, slow_at, horizon,
                           traces)


def compare_isolation(**options: Any) -> dict[str, IsolationResult]:
    """:func:`run_isolation` with one shared pool and with isolated pools, same workload."""
    results = [run_isolation(isolated=False, **options), run_isolation(isolated=True, **options)]
    return {r.label: r for r in results}


def isolation_table(results: dict[str, IsolationResult]) -> str:
    """Success rates and p95 latency of A and B before and after B turns slow, and how
    long the calls refused after B slowed had waited to hear no."""
    rows = []
    for result in results.values():
        cut, end = result.slow_at, result.horizon
        for name, trace in result.dependencies.items():
            rows.append([
                result.label, name,
                f"{trace.success_rate(0, cut):.0%}", f"{trace.success_rate(cut, end):.0%}",
                1000 * trace.latency_percentile(95, 0, cut),
                1000 * trace.latency_percentile(95, cut, end),
                1000 * trace.refused_wait(cut, end),
            ])
    return format_table(["bulkheads", "dependency", "success before", "success after",
                         "p95 latency before (ms)", "p95 latency after (ms)",
                         "wait to be refused after (ms)"], rows)


def _binned(
    trace: DependencyTrace, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin of arrival time: success share (%), p95 latency of the successes (s) and
    mean wait of the refused calls (s; NaN where none waited)."""
    index = np.digitize(trace.arrivals, edges) - 1
    bins = len(edges) - 1
    total = np.bincount(index, minlength=bins)[:bins]
    wins = np.bincount(index, weights=trace.succeeded, minlength=bins)[:bins]
    success = np.where(total > 0, 100 * wins / np.maximum(total, 1), np.nan)
    refused = ~trace.succeeded
    losses = total - wins
    waited = np.bincount(index[refused], weights=trace.latency[refused], minlength=bins)[:bins]
    with np.errstate(invalid="ignore", divide="ignore"):
        refused_wait = np.where(waited > 0, waited / np.maximum(losses, 1), np.nan)
    p95 = np.full(bins, np.nan)
    ok_index, ok_latency = index[trace.succeeded], trace.latency[trace.succeeded]
    order = np.argsort(ok_index, kind="stable")
    ok_index, ok_latency = ok_index[order], ok_latency[order]
    bounds = np.searchsorted(ok_index, np.arange(bins + 1))
    for b in range(bins):
        chunk = ok_latency[bounds[b]:bounds[b + 1]]
        if len(chunk):
            p95[b] = np.percentile(chunk, 95)
    return success, p95, refused_wait


def _plain_log_axis(ax: Axes) -> None:
    """A log-scale y axis with plain tick labels and no minor ticks (cheap to redraw)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_locator(NullLocator())


def plot_isolation(result: IsolationResult, axes: Sequence[Axes], *, bin_width: float = 2.0,
                   show_ylabels: bool = True, legends: bool = True) -> None:
    """Panels for one run, per bin of arrival time: success rate; latency (p95 of the
    successful calls, solid, and mean wait of the refused ones, dotted); and (if a third
    axes is given) the permits held on average."""
    success_ax, latency_ax = axes[0], axes[1]
    pool_ax = axes[2] if len(axes) > 2 else None
    edges = np.arange(0.0, result.horizon + bin_width / 2, bin_width)
    for name, trace in result.dependencies.items():
        style = {"color": DEPENDENCY_COLOURS[name], "linewidth": 1.8}
        success, p95, refused_wait = _binned(trace, edges)
        after = trace.success_rate(result.slow_at, result.horizon)
        _steps(success_ax, edges, success, label=f"{name}: {after:.0%} after B slows", **style)
        _steps(latency_ax, edges, p95, **style)
        _steps(latency_ax, edges, refused_wait, linestyle=":", **style)
        if pool_ax is not None:
            _steps(pool_ax, edges, trace.mean_in_flight(edges),
                   label=f"held by calls to {name}", **style)
    for ax in axes:
        ax.axvline(result.slow_at, color="#d62728", linewidth=1)
        ax.axvspan(result.slow_at, result.horizon, color="#d62728", alpha=0.05)
        ax.set_xlim(0, result.horizon)
    success_ax.set_ylim(-5, 105)
    success_ax.legend(loc="lower left", fontsize=8)
    _plain_log_axis(latency_ax)
    latency_ax.set_ylim(0.005, 50)
    if legends:
        latency_ax.legend([Line2D([], [], color="#444444"),
                           Line2D([], [], color="#444444", linestyle=":")],
                          ["p95 of the successful calls", "mean wait of the refused calls"],
                          loc="lower right", fontsize=8)
    xlabel = f"arrival time (s, {bin_width:g} s bins)"
    label(success_ax, title=f"{result.label}: calls that succeeded", xlabel="",
          ylabel="succeeded (% of requests)" if show_ylabels else "")
    label(latency_ax, title="time to an answer",
          xlabel="" if pool_ax is not None else xlabel,
          ylabel="seconds (log scale)" if show_ylabels else "")
    if pool_ax is None:
        return
    if result.isolated:
        a, b = split(result.concurrency)
        limit = f"each pool: {a} permits" if a == b else f"pools: {a} (A) and {b} (B) permits"
        pool_ax.axhline(a, color="black", linestyle="--", linewidth=1, label=limit)
        if b != a:
            pool_ax.axhline(b, color="black", linestyle="--", linewidth=1)
    else:
        pool_ax.axhline(result.concurrency, color="black", linestyle="--", linewidth=1,
                        label=f"the pool: {result.concurrency} permits")
    pool_ax.set_ylim(0, result.concurrency * 1.45)
    pool_ax.legend(loc="upper left", fontsize=8)
    label(pool_ax, title="permits held (mean per bin)", xlabel=f"time (s, {bin_width:g} s bins)",
          ylabel="permits in use" if show_ylabels else "")


def draw_isolation(
    concurrency: int = 20,
    queue_size: int = 10,
    max_wait: float = 0.5,
    slow_latency: float = 5.0,
    rate: float = 20.0,
    seed: int = 1,
    *,
    latency: float = 0.05,
    show_permits: bool = True,
    horizon: float = 60.0,
) -> Figure:
    """Shared pool (left) against isolated pools (right) as B turns slow at 20 s.

    Rows: success rate, time to an answer and (with ``show_permits``) permits held;
    the explorer leaves the last row out and runs a shorter ``horizon`` to redraw faster.
    """
    results = compare_isolation(concurrency=concurrency, queue_size=queue_size,
                                max_wait=max_wait, slow_latency=slow_latency, rate=rate,
                                latency=latency, seed=seed, horizon=horizon)
    rows = 3 if show_permits else 2
    fig, axes = subplots(rows, 2, width=10, height=0.6 + 2.5 * rows, sharex=True, sharey="row")
    # a fixed layout draws faster than the constrained one (the explorer redraws it)
    fig.set_layout_engine(None)
    fig.subplots_adjust(left=0.08, right=0.99, bottom=0.5 / fig.get_figheight(),
                        top=1 - 0.75 / fig.get_figheight(), wspace=0.06, hspace=0.28)
    for column, result in enumerate(results.values()):
        plot_isolation(result, axes[:, column], show_ylabels=column == 0, legends=column == 0)
    for ax in axes.flat:  # fewer ticks: most of a redraw is spent on tick labels
        ax.locator_params(axis="x", nbins=6)
        if ax.get_yscale() == "linear":
            ax.locator_params(axis="y", nbins=5)
    fig.suptitle(f"A and B, {rate:g} requests/s each, calls of {latency:g} s on average; "
                 f"from 20 s "
                 f"(red) B's calls take {slow_latency:.3g} s\n{concurrency} permits and "
                 f"{queue_size} queue places in all, max wait {max_wait:g} s", fontsize=10)
    return fig


EXPLORER_HORIZON = 40.0
"""The isolation explorer simulates 40 s (B slows at 20 s), to redraw quickly."""


def draw_isolation_explorer(
    concurrency: int = 20, queue_size: int = 10, max_wait: float = 0.5,
    slow_latency: float = 5.0, rate: float = 20.0,
) -> Figure:
    """:func:`draw_isolation` without the permits row and over 40 s, for slider moves."""
    return draw_isolation(concurrency, queue_size, max_wait, slow_latency, rate,
                          show_permits=False, horizon=EXPLORER_HORIZON)


def isolation_explorer() -> Explorer:
    """Sliders: permits, queue places, max wait, B's slowness, arrival rate.

    A waiter leaves after ``max_wait``, so a queue holds about ``2 * rate * max_wait``
    callers at most (both dependencies' callers wait in the shared pool): the queue
    slider stops at 20, what the defaults (20 requests/s each, 0.5 s) can fill.
    """
    return Explorer(draw_isolation_explorer, {
        "concurrency": int_slider("permits in all", 20, 2, 40, 2),
        "queue_size": int_slider("queue places in all", 10, 0, 20, 2),
        "max_wait": float_slider("max wait (s)", 0.5, 0.0, 2.0, 0.1),
        "slow_latency": log_slider("B's latency when slow (s)", 5.0, -1.3, 1.0),
        "rate": float_slider("requests/s to each", 20.0, 5.0, 40.0, 5.0, ".0f"),
    })


# ============================================================================ queueing theory




@dataclass(frozen=True)
class QueueResult:
    """One run of :func:`run_queue`: what the bulkhead's events say (times in seconds)."""

    arrival_rate: float
    service_rate: float
    servers: int
    queue_size: int
    arrivals: int
    """Arrivals counted (those after the warm-up)."""
    rejected: int
    waits: np.ndarray
    """Time in queue of each admitted call counted."""
    rejected_queue_full: int = 0
    """Of ``rejected``: refused at once, all permits and queue places taken."""
    rejected_wait_timeout: int = 0
    """Of ``rejected``: left the queue after waiting ``max_wait`` without a permit."""
    max_wait: float = math.inf
    service_cv: float = 1.0
    """Coefficient of variation of the call times (1: exponential, as theory assumes)."""

    @property
    def blocking(self) -> float:
        """The share of calls refused, for either reason."""
        return self.rejected / max(1, self.arrivals)

    @property
    def mean_wait(self) -> float:
        return float(np.mean(self.waits)) if len(self.waits) else math.nan

    @property
    def theory(self) -> MMcKTheory:
        """M/M/c/K: exact for exponential calls and no wait limit (``max_wait=inf``)."""
        return mmck(self.arrival_rate, self.service_rate, self.servers, self.queue_size)


def run_queue(
    arrival_rate: float,
    *,
    service_rate: float = 10.0,
    servers: int = 4,
    queue_size: int = 6,
    max_wait: float = math.inf,
    service_cv: float = 1.0,
    arrivals: int = 20_000,
    warmup: float = 0.05,
    seed: int = 1,
) -> QueueResult:
    """Poisson arrivals through one :class:`Bulkhead`, calls of mean ``1 / service_rate``.

    About ``arrivals`` calls arrive; those in the first ``warmup`` share of the run are
    not counted (the system starts empty). Blocking, the reasons for it and the waits
    are read from the bulkhead's own :class:`CallRejected` and :class:`CallPermitted`
    events. Call times are exponential (``service_cv=1``, what M/M/c/K theory assumes)
    or gamma-distributed with that coefficient of variation (below 1: more regular,
    above: more variable). ``max_wait`` is the bulkhead's wait limit (none by default,
    as in the theory).
    """
    require_finite_positive("arrival_rate", arrival_rate)
    require_finite_positive("service_rate", service_rate)
    require_finite_positive("service_cv", service_cv)
    require_int_at_least("arrivals", arrivals, 1)
    if not 0 <= warmup < 1:
        raise ValueError(f"warmup must be within [0, 1), got {warmup!r}")
    env = simpy.Environment()
    streams = RandomStreams(seed)
    service = streams.stream("service")
    bulkhead = Bulkhead("queue", servers, queue_size, max_wait=max_wait)
    recorder = Recorder()
    record = recorder.listener("queue")

    def on_event(event: BulkheadEvent) -> None:
        if isinstance(event, CallPermitted | CallRejected):  # all that is counted
            record(event)

    bulkhead.listeners.add(on_event)
    if service_cv == 1.0:
        def call_time() -> float:
            return service.expovariate(service_rate)
    else:
        shape = 1.0 / service_cv**2
        scale = service_cv**2 / service_rate

        def call_time() -> float:
            return service.gammavariate(shape, scale)

    def attempt() -> Generator[Any, Any, None]:
        yield env.timeout(call_time())

    def request(_: int) -> Generator[Any, Any, None]:
        with contextlib.suppress(BulkheadFullError):
            yield from bulkhead.simpy_call(env, attempt)

    horizon = arrivals / arrival_rate
    times = poisson_arrivals(arrival_rate, horizon, streams.numpy("arrivals"))
    start_at(env, times, request)
    env.run()
    cut = warmup * horizon
    permitted = [r for r in recorder.select("CallPermitted") if r.time - r.data["waited"] >= cut]
    refused = [r for r in recorder.select("CallRejected") if r.time - r.data["waited"] >= cut]
    full = sum(1 for r in refused if r.data["reason"] == "queue_full")
    return QueueResult(arrival_rate, service_rate, servers, queue_size,
                       len(permitted) + len(refused), len(refused),
                       np.array([r.data["waited"] for r in permitted]),
                       rejected_queue_full=full, rejected_wait_timeout=len(refused) - full,
                       max_wait=float(max_wait), service_cv=float(service_cv))


def queue_sweep(
    rates: Sequence[float], *, service_rate: float = 10.0, servers: int = 4,
    queue_size: int = 6, service_cv: float = 1.0, arrivals: int = 20_000, seed: int = 1,
) -> list[QueueResult]:
    """:func:`run_queue` at each arrival rate (the ``i``-th with seed ``seed + i``, so the
    points are independent samples)."""
    return [run_queue(rate, service_rate=service_rate, servers=servers, queue_size=queue_size,
                      service_cv=service_cv, arrivals=arrivals, seed=seed + index)
            for index, rate in enumerate(rates)]


def queue_table(results: Sequence[QueueResult]) -> str:
    """Theory beside simulation: blocking probability and mean wait, per arrival rate."""
    rows = []
    for r in results:
        t = r.theory
        rows.append([r.arrival_rate, t.offered_load / r.servers, r.arrivals,
                     f"{t.blocking:.2%}", f"{r.blocking:.2%}",
                     1000 * t.mean_wait, 1000 * r.mean_wait])
    return format_table(["arrivals/s", "load per permit", "calls counted",
                         "rejected: theory", "simulated",
                         "mean wait (ms): theory", "simulated"], rows)


def plot_queue_theory(
    results: Sequence[QueueResult], axes: Sequence[Axes], *, max_rate: float | None = None
) -> None:
    """Blocking probability and mean wait against the arrival rate: lines theory, dots sim."""
    first = results[0]
    mu, c, q = first.service_rate, first.servers, first.queue_size
    top = max_rate if max_rate is not None else max(r.arrival_rate for r in results) * 1.05
    grid = np.linspace(top / 80, top, 80)
    theory = [mmck(rate, mu, c, q) for rate in grid]
    block_ax, wait_ax = axes
    simulated = ("simulated Bulkhead" if first.service_cv == 1.0
                 else f"simulated, call-time CV {first.service_cv:g}")
    block_ax.plot(grid, [100 * t.blocking for t in theory], color=color("theory"),
                  label="M/M/c/K theory")
    block_ax.plot([r.arrival_rate for r in results], [100 * r.blocking for r in results], "o",
                  color=color("rejected"), label=simulated)
    wait_ax.plot(grid, [1000 * t.mean_wait for t in theory], color=color("theory"),
                 label="M/M/c/K theory")
    wait_ax.plot([r.arrival_rate for r in results], [1000 * r.mean_wait for r in results], "o",
                 color=color("equal"), label=simulated)
    for ax in axes:
        ax.axvline(c * mu, color="#7f7f7f", linestyle=":", linewidth=1,
                   label=f"capacity c·μ = {c * mu:g}/s")
        ax.set_xlim(0, top)
        ax.legend(loc="upper left", fontsize=8)
    block_ax.set_ylim(0, 100)
    for ax in axes:  # fewer ticks: most of a redraw is spent on tick labels
        ax.locator_params(nbins=5)
    label(block_ax, title="Calls rejected (queue full)", xlabel="arrival rate λ (calls/s)",
          ylabel="rejected (% of arrivals)")
    wait_ax.set_ylim(0, 1000 * (q + 1) / (c * mu) * 1.15)
    label(wait_ax, title="Mean wait in the queue", xlabel="arrival rate λ (calls/s)",
          ylabel="mean wait of admitted calls (ms)")


def queue_rates(servers: int = 4, service_ms: float = 100.0, points: int = 8) -> list[float]:
    """Arrival rates from a quarter of the bulkhead's capacity ``c·μ`` to twice it."""
    capacity = servers * 1000.0 / service_ms
    return [float(capacity * f) for f in np.linspace(0.25, 2.0, points)]


def draw_queue_theory(
    servers: int = 4, queue_size: int = 6, service_ms: float = 100.0, arrivals: int = 20_000,
    points: int = 8, seed: int = 1, *, service_cv: float = 1.0,
    results: Sequence[QueueResult] | None = None,
) -> Figure:
    """Theory lines and simulated points over arrival rates from 0.25 to 2 times capacity.

    Pass ``results`` (from :func:`queue_sweep`) to draw runs made already; the other
    parameters are then taken from them.
    """
    if results is None:
        results = queue_sweep(queue_rates(servers, service_ms, points),
                              service_rate=1000.0 / service_ms, servers=servers,
                              queue_size=queue_size, service_cv=service_cv,
                              arrivals=arrivals, seed=seed)
    first = results[0]
    servers, queue_size = first.servers, first.queue_size
    service_ms = 1000.0 / first.service_rate
    fig, axes = subplots(1, 2, width=10, height=3.9)
    fig.set_layout_engine(None)  # fixed: cheaper to redraw than the constrained layout
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.13, top=0.8, wspace=0.2)
    plot_queue_theory(results, axes, max_rate=servers * first.service_rate * 2.1)
    counted = min(r.arrivals for r in results)
    calls = ("exponential calls" if first.service_cv == 1.0
             else f"calls with a coefficient of variation of {first.service_cv:g}")
    fig.suptitle(f"A bulkhead with c = {servers} permit(s) and {queue_size} queue place(s) "
                 f"(K = {servers + queue_size}), no wait limit\n{calls} of mean "
                 f"{service_ms:g} ms, Poisson arrivals, at least {counted:,} calls per point",
                 fontsize=10)
    return fig


def draw_queue_explorer(servers: int = 4, queue_size: int = 6,
                        service_cv: float = 1.0) -> Figure:
    """The queueing figure with fewer arrivals per point, for quick slider moves."""
    return draw_queue_theory(servers, queue_size, 100.0, arrivals=1_000, points=6,
                             service_cv=service_cv)


def queue_explorer() -> Explorer:
    """Sliders: permits, queue places, and how variable the call times are (theory
    assumes exponential ones: a coefficient of variation of 1)."""
    return Explorer(draw_queue_explorer, {
        "servers": int_slider("permits c", 4, 1, 20),
        "queue_size": int_slider("queue places", 6, 0, 40),
        "service_cv": float_slider("call-time variability (CV)", 1.0, 0.2, 2.0, 0.2),
    })
