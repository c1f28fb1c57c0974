"""Reactive data flow with backpressure in simulated time (guide section 1.2, 反应式数据流).

The model (:func:`run_flow`): a fast producer and a slow consumer joined by the library's
:class:`~patterns.dataflow.reactive.BackpressureBuffer` under one
:class:`~patterns.dataflow.reactive.OverflowStrategy`, or by demand-driven flow (a
:class:`~patterns.dataflow.reactive.DemandPublisher` and a subscriber that requests a
window of items and one more after each it has processed). The producer creates items
with Poisson or bursty gaps (``simulations.kit.workloads``); it can be slowed down: when
it has to wait (``BUFFER``, demand) it creates the next item only after handing over
the last one. The consumer serves one item at a time with exponential service times.
What is recorded: the queue between the two over time, drops, end-to-end latency
(creation to end of service) and the memory the flow holds (items buffered, in service,
and held by a waiting producer).

Theory beside simulation (:func:`mm1k`): with Poisson arrivals, exponential service and
``DROP_NEWEST``, the buffer of capacity ``b`` plus the item in service is an M/M/1/K
queue with ``K = b + 1``; its loss probability, mean number in system and (by Little's
law) mean latency are known in closed form.

Pitfalls of the guide's sketches, transcribed: :class:`GuideSketchDropOldestStrategy`
(always answers ``Emit``, so its buffer is a copy that holds nothing back) and
:class:`GuideSketchMapOperator` (calls observers while holding its ``RwLock``, so an
observer that subscribes from ``on_next`` deadlocks).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from patterns.dataflow.reactive import (
    BackpressureBuffer,
    BufferClosedError,
    BufferOverflowError,
    DemandPublisher,
    DemandSubscription,
    Observable,
    OverflowStrategy,
    Subject,
)
from simulations.kit.plotting import label, subplots
from simulations.kit.queueing import mmck
from simulations.kit.recorder import Recorder
from simulations.kit.rng import RandomStreams
from simulations.kit.tables import format_table
from simulations.kit.widgets import Explorer, choice, float_slider, int_slider

STRATEGIES: tuple[str, ...] = (*(s.value for s in OverflowStrategy), "demand")
"""The five overflow strategies, and demand-driven flow."""

COLORS: dict[str, str] = {
    "buffer": "#1f77b4",
    "drop_newest": "#d62728",
    "drop_oldest": "#ff7f0e",
    "latest": "#9467bd",
    "error": "#7f7f7f",
    "demand": "#2ca02c",
    "guide": "#8c564b",
}

ARRIVALS: tuple[str, ...] = ("bursty", "poisson")


# ============================================================================ SimPy time


class _SimTimer:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> bool:
        was, self.cancelled = self.cancelled, True
        return not was


class SimPyScheduler:
    """A :class:`patterns.dataflow.reactive.Scheduler` in SimPy time: ``schedule`` starts
    a process that waits ``delay`` simulated seconds and runs the action (unless
    cancelled). Time-based operators (``buffer_with_time``, ``interval``) then run in a
    simulation unchanged."""

    __slots__ = ("env",)

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env

    def now(self) -> float:
        return float(self.env.now)

    def schedule(self, delay: float, action: Callable[[], object]) -> _SimTimer:
        if not delay >= 0 or math.isinf(delay):
            raise ValueError(f"delay must be a finite number >= 0, got {delay!r}")
        timer = _SimTimer()

        def wait() -> Generator[Any, Any, None]:
            yield self.env.timeout(delay)
            if not timer.cancelled:
                timer.cancelled = True
                action()

        self.env.process(wait())
        return timer


# ============================================================================ the flow


@dataclass(frozen=True)
class FlowResult:
    """One run of :func:`run_flow` (times in seconds)."""

    strategy: str
    capacity: int
    producer_rate: float
    consumer_rate: float
    horizon: float
    produced: int
    """Items the producer created (fewer than offered load when it was slowed down)."""
    delivered: int
    """Items the consumer finished."""
    dropped: int
    failed_at: float | None
    """When an ``ERROR`` buffer overflowed and the stream ended (else ``None``)."""
    created: np.ndarray
    """Creation time of each delivered item."""
    latencies: np.ndarray
    """End-to-end latency of each delivered item (creation to end of service)."""
    times: np.ndarray
    """Times at which the levels below changed (a step function)."""
    queue: np.ndarray
    """Items waiting between producer and consumer (buffer, or the demand inbox)."""
    memory: np.ndarray
    """Items the flow holds: waiting + in service + held by a blocked producer."""
    drop_times: np.ndarray
    recorder: Recorder

    @property
    def drop_fraction(self) -> float:
        return self.dropped / max(1, self.produced)

    @property
    def mean_latency(self) -> float:
        return float(self.latencies.mean()) if len(self.latencies) else math.nan

    def latency_percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if len(self.latencies) else math.nan

    def time_average(self, levels: np.ndarray, until: float | None = None) -> float:
        """The time average of a level (``queue`` or ``memory``) over ``[0, until]``."""
        end = self.horizon if until is None else until
        times = np.append(self.times, end)
        widths = np.clip(np.minimum(times[1:], end) - np.minimum(times[:-1], end), 0, None)
        return float(np.dot(levels, widths) / end)

    @property
    def mean_queue(self) -> float:
        return self.time_average(self.queue)

    @property
    def mean_memory(self) -> float:
        return self.time_average(self.memory)

    @property
    def max_queue(self) -> int:
        return int(self.queue.max()) if len(self.queue) else 0

    @property
    def max_memory(self) -> int:
        return int(self.memory.max()) if len(self.memory) else 0

    @property
    def throughput(self) -> float:
        """Items finished per second over the horizon."""
        return self.delivered / self.horizon


_UNIT_CHUNK = 4096
# Bursty arrivals: calm periods at CALM_SHARE of the mean rate, MEAN_CALM s long on
# average, alternate with bursts at BURST_FACTOR times it, MEAN_BURST s long on average
# (so that the long-run rate is the mean rate: 0.6 * 5 + 3 * 1 = 6 = 5 + 1).
CALM_SHARE, MEAN_CALM = 0.6, 5.0
BURST_FACTOR, MEAN_BURST = 3.0, 1.0


def bursty_profile(rate: float) -> str:
    """What ``arrival="bursty"`` means at a mean ``rate``, in words."""
    return (f"calm at {CALM_SHARE * rate:g}/s for {MEAN_CALM:g} s on average, bursts at "
            f"{BURST_FACTOR * rate:g}/s for {MEAN_BURST:g} s on average: {rate:g}/s overall")


def arrival_times(
    arrival: str, rate: float, horizon: float, rng: np.random.Generator
) -> np.ndarray:
    """The producer's item times in ``[0, horizon)``: Poisson at ``rate``, or bursty with
    the same mean (see :func:`bursty_profile`: calm at 60 % of ``rate`` for 5 s on
    average, bursts at 3x for 1 s).

    Both are drawn as one unit-rate Poisson stream stretched by the cumulative rate
    (a time change), and the bursts' schedule is drawn first and never depends on
    ``rate``. So for a seed, raising the rate packs the *same* random pattern more
    densely: a slider moves the picture smoothly instead of reshuffling it.
    """
    if arrival == "poisson":
        knots, rates = np.array([0.0, horizon]), np.array([rate])
    elif arrival == "bursty":
        ends, bursting, now = [0.0], False, 0.0
        while now < horizon:
            now = min(horizon, now + rng.exponential(MEAN_BURST if bursting else MEAN_CALM))
            ends.append(now)
            bursting = not bursting
        knots = np.array(ends)
        rates = np.where(np.arange(len(knots) - 1) % 2 == 0, CALM_SHARE * rate,
                         BURST_FACTOR * rate)
    else:
        raise ValueError(f"arrival must be one of {', '.join(ARRIVALS)}, got {arrival!r}")
    cumulative = np.concatenate([[0.0], np.cumsum(rates * np.diff(knots))])
    total = cumulative[-1]
    # drawn in fixed-size chunks, so the first points are the same whatever the rate
    unit = np.cumsum(rng.standard_exponential(_UNIT_CHUNK))
    while unit[-1] < total:
        unit = np.concatenate([unit, unit[-1] + np.cumsum(rng.standard_exponential(_UNIT_CHUNK))])
    unit = unit[unit < total]
    return np.asarray(np.interp(unit, cumulative, knots), dtype=float)


def arrival_gaps(
    arrival: str, rate: float, horizon: float, rng: np.random.Generator
) -> np.ndarray:
    """The gaps between the producer's items (see :func:`arrival_times`)."""
    return np.diff(arrival_times(arrival, rate, horizon, rng), prepend=0.0)


class _Item:
    __slots__ = ("created", "serial")

    def __init__(self, serial: int, created: float) -> None:
        self.serial = serial
        self.created = created


def run_flow(
    strategy: str = "drop_newest",
    *,
    producer_rate: float = 50.0,
    consumer_rate: float = 40.0,
    capacity: int = 20,
    horizon: float = 60.0,
    arrival: str = "poisson",
    request_size: int = 1,
    seed: int = 1,
) -> FlowResult:
    """A producer (``producer_rate`` items/s on average) and a consumer (exponential
    service, ``consumer_rate`` items/s) joined by one strategy (see :data:`STRATEGIES`)
    with ``capacity`` places (the demand window for ``"demand"``).

    With ``"demand"`` the consumer requests ``capacity`` items at first, then
    ``request_size`` more each time it has finished ``request_size`` items: 1 (the
    default) tops the window up after every item; ``request_size == capacity`` asks for
    a whole window only once the last one is done. Other strategies take only 1.

    The producer creates items for ``horizon`` seconds; then the flow is closed and the
    consumer finishes what it holds.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    for name, value in (("producer_rate", producer_rate), ("consumer_rate", consumer_rate),
                        ("horizon", horizon)):
        if not value > 0 or math.isinf(value):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
    if (isinstance(request_size, bool) or not isinstance(request_size, int)
            or not 1 <= request_size <= capacity):
        raise ValueError(f"request_size must be an int in [1, capacity={capacity}], "
                         f"got {request_size!r}")
    if request_size != 1 and strategy != "demand":
        raise ValueError(f"request_size applies to strategy 'demand' only, got "
                         f"request_size={request_size!r} with {strategy!r}")
    env = simpy.Environment()
    streams = RandomStreams(seed)
    # plain floats: SimPy is faster with them than with numpy scalars
    gaps = arrival_gaps(arrival, producer_rate, horizon, streams.numpy("arrivals")).tolist()
    service = streams.numpy("service").exponential(
        1.0 / consumer_rate, size=len(gaps) + 1).tolist()
    recorder = Recorder()
    state = {"in_service": 0, "held": 0, "produced": 0, "served": 0}
    levels: list[tuple[float, int, int]] = []
    waiting: Callable[[], int]

    def sample() -> None:
        queued = waiting()
        levels.append((env.now, queued, queued + state["in_service"] + state["held"]))

    def finish(item: _Item) -> None:
        recorder.record(env.now, "delivered", created=item.created)

    if strategy == "demand":
        queue_len, producer, consumer = _demand_flow(env, capacity, gaps, service, state,
                                                     sample, finish, horizon,
                                                     request_size)
        waiting = queue_len
        failed_at = None
        dropped = 0
    else:
        buffer: BackpressureBuffer[_Item] = BackpressureBuffer(
            strategy, 1 if strategy == "latest" else capacity)
        buffer.listeners.add(recorder.listener("buffer"))
        waiting = buffer.__len__
        failure: list[float] = []

        def produce() -> Generator[Any, Any, None]:
            for gap in gaps:
                if gap > 0:
                    yield env.timeout(gap)
                if env.now >= horizon:  # a slowed-down producer stops on time too
                    break
                item = _Item(state["produced"], env.now)
                state["produced"] += 1
                if len(buffer) >= buffer.capacity and strategy == "buffer":
                    state["held"] = 1  # it will wait, holding the item
                    sample()
                try:
                    yield from buffer.simpy_put(env, item)
                except BufferOverflowError:
                    failure.append(env.now)
                    state["held"] = 0
                    sample()
                    return
                state["held"] = 0
                sample()
            buffer.close()

        def consume() -> Generator[Any, Any, None]:
            while True:
                try:
                    entry = yield from buffer.simpy_get(env)
                except (BufferClosedError, BufferOverflowError):
                    return
                state["in_service"] = 1
                sample()
                yield env.timeout(service[state["served"]])
                state["served"] += 1
                state["in_service"] = 0
                finish(entry.item)
                sample()

        producer, consumer = produce(), consume()
    sample()
    env.process(producer)
    env.process(consumer)
    env.run()
    if strategy != "demand":
        metrics = buffer.metrics()
        dropped = metrics.dropped
        failed_at = failure[0] if failure else None
    level_array = np.array(levels, dtype=float).reshape(-1, 3)
    delivered = recorder.select("delivered")
    created = np.array([r.data["created"] for r in delivered], dtype=float)
    done = np.array([r.time for r in delivered], dtype=float)
    return FlowResult(
        strategy=strategy, capacity=capacity, producer_rate=producer_rate,
        consumer_rate=consumer_rate, horizon=horizon, produced=state["produced"],
        delivered=len(delivered), dropped=dropped, failed_at=failed_at, created=created,
        latencies=done - created, times=level_array[:, 0],
        queue=level_array[:, 1].astype(int), memory=level_array[:, 2].astype(int),
        drop_times=recorder.times("ItemDropped"), recorder=recorder)


class _Inbox:
    """The consumer's side of demand-driven flow: a Reactive Streams subscriber that
    requests ``window`` items at first, then ``request_size`` more after each
    ``request_size`` items it processed."""

    def __init__(self, env: simpy.Environment, window: int) -> None:
        self.env = env
        self.window = window
        self.items: deque[_Item] = deque()
        self.subscription: DemandSubscription | None = None
        self.done = False
        self.arrived = env.event()

    def on_subscribe(self, subscription: DemandSubscription) -> None:
        self.subscription = subscription
        subscription.request(self.window)

    def _wake(self) -> None:
        if not self.arrived.triggered:
            self.arrived.succeed()

    def on_next(self, item: _Item) -> None:
        self.items.append(item)
        self._wake()

    def on_error(self, error: BaseException) -> None:
        self.done = True
        self._wake()

    def on_complete(self) -> None:
        self.done = True
        self._wake()


def _demand_flow(
    env: simpy.Environment,
    window: int,
    gaps: Sequence[float],
    service: Sequence[float],
    state: dict[str, int],
    sample: Callable[[], None],
    finish: Callable[[_Item], None],
    horizon: float,
    request_size: int = 1,
) -> tuple[Callable[[], int], Generator[Any, Any, None], Generator[Any, Any, None]]:
    publisher: DemandPublisher[_Item] = DemandPublisher()
    inbox = _Inbox(env, window)
    publisher.subscribe(inbox)

    def produce() -> Generator[Any, Any, None]:
        for gap in gaps:
            if gap > 0:
                yield env.timeout(gap)
            if env.now >= horizon:  # a slowed-down producer stops on time too
                break
            item = _Item(state["produced"], env.now)
            state["produced"] += 1
            if publisher.demand == 0:
                state["held"] = 1  # it will wait for demand, holding the item
                sample()
            yield from publisher.simpy_emit(env, item)
            state["held"] = 0
            sample()
        publisher.complete()

    def consume() -> Generator[Any, Any, None]:
        while True:
            while not inbox.items:
                if inbox.done:
                    return
                inbox.arrived = env.event()
                yield inbox.arrived
            item = inbox.items.popleft()
            state["in_service"] = 1
            sample()
            yield env.timeout(service[state["served"]])
            state["served"] += 1
            state["in_service"] = 0
            finish(item)
            sample()
            assert inbox.subscription is not None
            if state["served"] % request_size == 0:
                inbox.subscription.request(request_size)

    return inbox.items.__len__, produce(), consume()


def compare_strategies(
    strategies: Sequence[str] = STRATEGIES, **options: Any
) -> dict[str, FlowResult]:
    """:func:`run_flow` once per strategy, same seed and parameters."""
    return {strategy: run_flow(strategy, **options) for strategy in strategies}


# ============================================================================ theory


@dataclass(frozen=True)
class MM1KTheory:
    """Steady state of an M/M/1/K queue (``K`` places in all, one of them in service)."""

    arrival_rate: float
    service_rate: float
    places: int
    loss: float
    """Probability that an arriving item finds all ``K`` places taken (it is dropped)."""
    mean_in_system: float
    """Mean number of items present (waiting + in service): ``L``."""
    mean_waiting: float
    throughput: float
    """Items served per second: ``λ (1 - loss)``."""

    @property
    def mean_latency(self) -> float:
        """Mean time in system of an accepted item, by Little's law: ``W = L / λ_eff``."""
        return self.mean_in_system / self.throughput


def mm1k(arrival_rate: float, service_rate: float, places: int) -> MM1KTheory:
    """M/M/1/K: ``P(n) ∝ ρⁿ`` for ``n = 0..K`` with ``ρ = λ/μ`` (the one-server case of
    :func:`simulations.kit.queueing.mmck`)."""
    if not arrival_rate > 0 or not service_rate > 0:
        raise ValueError(f"rates must be > 0, got arrival_rate={arrival_rate!r}, "
                         f"service_rate={service_rate!r}")
    if isinstance(places, bool) or not isinstance(places, int) or places < 1:
        raise ValueError(f"places must be an int >= 1, got {places!r}")
    queue = mmck(arrival_rate, service_rate, 1, places - 1)  # one server, K - 1 waiting
    loss, waiting = queue.blocking, queue.mean_queue_length
    in_system = queue.mean_in_system
    return MM1KTheory(arrival_rate, service_rate, places, loss, in_system, waiting,
                      arrival_rate * (1.0 - loss))


@dataclass(frozen=True)
class TheoryCheck:
    """Simulation of ``DROP_NEWEST`` beside M/M/1/K, for one capacity."""

    capacity: int
    theory: MM1KTheory
    loss: float
    mean_in_system: float
    mean_latency: float
    throughput: float

    @property
    def littles_law_latency(self) -> float:
        """``L / λ_eff`` from the simulated ``L`` and throughput."""
        return self.mean_in_system / self.throughput


def check_theory(
    capacity: int, *, producer_rate: float = 50.0, consumer_rate: float = 40.0,
    horizon: float = 2000.0, warmup: float = 0.0, seed: int = 1,
) -> TheoryCheck:
    """A long Poisson run with ``DROP_NEWEST`` against M/M/1/K with ``K = capacity + 1``.

    The figures count from ``warmup`` on: the buffer starts empty, and until it first
    fills (about ``capacity / (λ − μ)`` seconds when overloaded) nothing is dropped,
    which lowers the loss of a short run.
    """
    if not 0 <= warmup < horizon:
        raise ValueError(f"warmup must be within [0, horizon={horizon!r}), got {warmup!r}")
    run = run_flow("drop_newest", producer_rate=producer_rate, consumer_rate=consumer_rate,
                   capacity=capacity, horizon=horizon, arrival="poisson", seed=seed)
    span = horizon - warmup
    accepted = run.latencies[(run.created >= warmup) & (run.created < horizon)]
    dropped = int(np.count_nonzero(run.drop_times >= warmup))
    times = np.append(run.times, horizon)
    widths = np.clip(np.minimum(times[1:], horizon) - np.maximum(times[:-1], warmup), 0, None)
    return TheoryCheck(
        capacity=capacity,
        theory=mm1k(producer_rate, consumer_rate, capacity + 1),
        loss=dropped / max(1, dropped + len(accepted)),
        # the producer never waits: memory is what waits + the item in service
        mean_in_system=float(np.dot(run.memory, widths) / span),
        mean_latency=float(accepted.mean()),
        throughput=len(accepted) / span,
    )


# ============================================================================ figures


def plot_levels(result: FlowResult, ax: Axes, *, until: float | None = None) -> Axes:
    """Items waiting (filled) and memory held (line) over time, with drops as ticks."""
    end = result.horizon if until is None else until
    colour = COLORS.get(result.strategy, "#333333")
    ax.fill_between(result.times, result.queue, step="post", color=colour, alpha=0.35,
                    label="waiting in buffer", linewidth=0)
    ax.step(result.times, result.memory, where="post", color=colour, linewidth=1.0,
            label="memory held")
    if len(result.drop_times):
        top = max(1, result.max_memory)
        ax.plot(result.drop_times, np.full(len(result.drop_times), top * 1.08), "|",
                color="#d62728", markersize=5, alpha=0.5, label="drops")
    if result.failed_at is not None:
        ax.axvline(result.failed_at, color="#d62728", linestyle="--", label="overflow error")
    ax.set_xlim(0, end)
    return ax


def draw_strategies(
    *, producer_rate: float = 50.0, consumer_rate: float = 60.0, capacity: int = 20,
    arrival: str = "bursty", horizon: float = 60.0, seed: int = 1,
) -> Figure:
    """One panel per strategy: items waiting and memory held over time, same scale."""
    results = compare_strategies(producer_rate=producer_rate, consumer_rate=consumer_rate,
                                 capacity=capacity, arrival=arrival, horizon=horizon, seed=seed)
    fig, axes = subplots(2, 3, width=10, height=6.0, sharex=True, sharey=True)
    for ax, (name, result) in zip(axes.flat, results.items(), strict=True):
        plot_levels(result, ax)
        ax.set_title(f"{name}: {result.dropped} dropped, p95 "
                     f"{result.latency_percentile(95) * 1000:.0f} ms", fontsize=10)
    for ax in axes[1]:
        ax.set_xlabel("time (s)")
    for ax in axes[:, 0]:
        ax.set_ylabel("items")
    axes[0, 0].legend(loc="upper left", fontsize=8)
    fig.suptitle(f"Producer {producer_rate:g}/s ({arrival}), consumer {consumer_rate:g}/s, "
                 f"bound {capacity}")
    return fig


def plot_summary(results: Mapping[str, FlowResult], axes: Sequence[Axes]) -> None:
    """Bars per strategy: share dropped, latency (mean and p95), memory (mean and max)."""
    names = list(results)
    x = np.arange(len(names))
    colours = [COLORS.get(n, "#333333") for n in names]
    drop_ax, latency_ax, memory_ax = axes
    drop_ax.bar(x, [100 * results[n].drop_fraction for n in names], color=colours)
    label(drop_ax, title="Lost", xlabel="", ylabel="items dropped (% of produced)")
    latency_ax.bar(x, [results[n].latency_percentile(95) * 1000 for n in names],
                   color=colours, alpha=0.45, label="p95")
    latency_ax.bar(x, [results[n].mean_latency * 1000 for n in names], color=colours,
                   width=0.45, label="mean")
    latency_ax.legend()
    label(latency_ax, title="Latency", xlabel="", ylabel="end-to-end latency (ms)")
    memory_ax.bar(x, [results[n].max_memory for n in names], color=colours, alpha=0.45,
                  label="max")
    memory_ax.bar(x, [results[n].mean_memory for n in names], color=colours, width=0.45,
                  label="mean")
    memory_ax.legend()
    label(memory_ax, title="Memory", xlabel="", ylabel="items held")
    for ax in axes:
        ax.set_xticks(x, names, rotation=30, ha="right")


def draw_summary(
    *, producer_rate: float = 50.0, consumer_rate: float = 60.0, capacity: int = 20,
    arrival: str = "bursty", horizon: float = 60.0, seed: int = 1,
) -> Figure:
    """The three summaries of :func:`plot_summary` for every strategy."""
    results = compare_strategies(producer_rate=producer_rate, consumer_rate=consumer_rate,
                                 capacity=capacity, arrival=arrival, horizon=horizon, seed=seed)
    fig, axes = subplots(1, 3, width=10, height=3.8)
    plot_summary(results, axes)
    return fig


def strategy_table(results: Mapping[str, FlowResult]) -> str:
    """The evidence per strategy, as text."""
    rows = []
    for name, r in results.items():
        rows.append([name, r.produced, r.delivered, r.dropped, f"{100 * r.drop_fraction:.1f}",
                     r.max_queue, r.mean_latency * 1000, r.latency_percentile(95) * 1000,
                     r.max_memory])
    return format_table(["strategy", "produced", "delivered", "dropped", "dropped %",
                         "max waiting", "mean latency (ms)", "p95 latency (ms)",
                         "max memory"], rows)


def theory_table(
    capacities: Sequence[int] = (1, 5, 20), *, producer_rate: float = 50.0,
    consumer_rate: float = 40.0, horizon: float = 2000.0, seed: int = 1,
) -> str:
    """``DROP_NEWEST`` against M/M/1/K: loss, mean number in system, mean latency."""
    rows = []
    for capacity in capacities:
        c = check_theory(capacity, producer_rate=producer_rate, consumer_rate=consumer_rate,
                         horizon=horizon, seed=seed)
        rows.append([capacity, c.theory.places, c.theory.loss, c.loss,
                     c.theory.mean_in_system, c.mean_in_system,
                     c.theory.mean_latency * 1000, c.mean_latency * 1000,
                     c.littles_law_latency * 1000])
    return format_table(["bound", "K", "loss (theory)", "loss (sim)", "L (theory)", "L (sim)",
                         "W ms (theory)", "W ms (sim)", "L/λ_eff ms (sim)"], rows)


def draw_theory(
    *, producer_rate: float = 50.0, consumer_rate: float = 40.0,
    capacities: Sequence[int] = (1, 5, 10, 20, 40), horizon: float = 150.0,
    warmup: float = 15.0, seeds: Sequence[int] = (1, 2, 3, 4, 5, 6),
) -> Figure:
    """Loss probability and mean latency against the bound: M/M/1/K beside simulation
    (the mean over ``seeds``, with bars of two standard errors)."""
    fig, (loss_ax, latency_ax) = subplots(1, 2, width=10, height=3.6)
    grid = list(range(1, max(capacities) + 1))
    loss_ax.plot(grid, [mm1k(producer_rate, consumer_rate, b + 1).loss for b in grid], "k-",
                 label="M/M/1/K theory")
    latency_ax.plot(grid, [mm1k(producer_rate, consumer_rate, b + 1).mean_latency * 1000
                           for b in grid], "k-", label="M/M/1/K theory")
    checks = [[check_theory(b, producer_rate=producer_rate, consumer_rate=consumer_rate,
                            horizon=horizon, warmup=warmup, seed=seed) for seed in seeds]
              for b in capacities]
    for ax, figure, scale in ((loss_ax, "loss", 1.0), (latency_ax, "mean_latency", 1000.0)):
        values = np.array([[getattr(c, figure) * scale for c in row] for row in checks])
        errors = (2 * values.std(axis=1, ddof=1) / np.sqrt(len(seeds))
                  if len(seeds) > 1 else None)
        ax.errorbar(capacities, values.mean(axis=1), yerr=errors, fmt="o", capsize=3,
                    color=COLORS["drop_newest"],
                    label=f"simulation, mean of {len(seeds)} runs of {horizon:g} s")
    label(loss_ax, title="Items lost", xlabel="buffer bound (items)",
          ylabel="loss probability")
    label(latency_ax, title="Latency of accepted items", xlabel="buffer bound (items)",
          ylabel="mean latency (ms)")
    loss_ax.legend()
    latency_ax.legend()
    fig.suptitle(f"drop_newest, Poisson {producer_rate:g}/s into exponential service "
                 f"{consumer_rate:g}/s")
    return fig


# ============================================================================ explorers


def draw_flow_explorer(
    strategy: str = "buffer", producer_rate: float = 50.0, consumer_rate: float = 60.0,
    capacity: int = 20, arrival: str = "bursty", seed: int = 1,
) -> Figure:
    """One strategy over 30 s: levels over time, and the latency distribution."""
    result = run_flow(strategy, producer_rate=producer_rate, consumer_rate=consumer_rate,
                      capacity=capacity, arrival=arrival, horizon=30.0, seed=seed)
    fig, (levels_ax, latency_ax) = subplots(1, 2, width=10, height=3.8,
                                            width_ratios=[2, 1])
    plot_levels(result, levels_ax)
    levels_ax.legend(loc="upper left", fontsize=8)
    label(levels_ax, title=f"{strategy}: {result.produced} produced, {result.delivered} "
          f"delivered, {result.dropped} dropped"
          + (" (holds 1)" if strategy == "latest" else f" (bound {capacity})"),
          xlabel="time (s)", ylabel="items")
    levels_ax.title.set_fontsize(11)
    if len(result.latencies):
        latency_ax.hist(result.latencies * 1000, bins=40, color=COLORS.get(strategy, "#333"))
        latency_ax.axvline(result.latency_percentile(95) * 1000, color="k", linestyle="--",
                           label=f"p95 {result.latency_percentile(95) * 1000:.0f} ms")
        latency_ax.legend(loc="upper right")
    label(latency_ax, title="Latency", xlabel="end-to-end latency (ms)", ylabel="items")
    return fig


def flow_explorer() -> Explorer:
    """Sliders: strategy, producer and consumer rates, bound, arrival pattern.

    ``latest`` holds one item whatever the bound, so the bound slider is greyed out
    while it is chosen (a slider that moved nothing would mislead).
    """
    explorer = Explorer(draw_flow_explorer, {
        "strategy": choice("strategy", STRATEGIES, "buffer"),
        "producer_rate": float_slider("producer (items/s)", 50.0, 10.0, 120.0, 5.0, ".0f"),
        "consumer_rate": float_slider("consumer (items/s)", 60.0, 10.0, 120.0, 5.0, ".0f"),
        "capacity": int_slider("bound (items)", 20, 1, 100),
        "arrival": choice("arrivals", ARRIVALS, "bursty"),
    })
    strategy, bound = explorer.controls["strategy"], explorer.controls["capacity"]

    def follow(_change: object = None) -> None:
        bound.disabled = strategy.value == "latest"

    strategy.observe(follow, names="value")
    follow()
    return explorer


def draw_compare_explorer(
    producer_rate: float = 50.0, consumer_rate: float = 60.0, capacity: int = 20,
    arrival: str = "bursty", seed: int = 1,
) -> Figure:
    """Every strategy over 30 s: the three summaries."""
    return draw_summary(producer_rate=producer_rate, consumer_rate=consumer_rate,
                        capacity=capacity, arrival=arrival, horizon=30.0, seed=seed)


def compare_explorer() -> Explorer:
    """Sliders for all strategies at once: rates, bound, arrival pattern."""
    return Explorer(draw_compare_explorer, {
        "producer_rate": float_slider("producer (items/s)", 50.0, 10.0, 120.0, 5.0, ".0f"),
        "consumer_rate": float_slider("consumer (items/s)", 60.0, 10.0, 120.0, 5.0, ".0f"),
        "capacity": int_slider("bound (items)", 20, 1, 100),
        "arrival": choice("arrivals", ARRIVALS, "bursty"),
    })


# ============================================================================ the guide


@dataclass(frozen=True)
class Emit:
    """The guide's ``BackpressureAction::Emit(value)``: pass the value on now."""

    value: Any


class GuideSketchDropOldestStrategy:
    """The guide's ``DropOldestStrategy``, transcribed (flaw included).

    ``handle_backpressure`` pushes a *copy* of the value into its own deque (dropping the
    oldest copy when full) and then answers ``Emit(value)`` -- always. Nothing is ever
    held back or dropped on the way to the consumer: the deque is decoration, and the
    consumer's own queue takes the whole overload.
    """

    def __init__(self, capacity: int) -> None:
        self.buffer: deque[Any] = deque()
        self.capacity = capacity
        self._lock = threading.Lock()  # the sketch's RwLock, taken for writing

    def handle_backpressure(self, value: Any) -> Emit:
        with self._lock:
            if len(self.buffer) >= self.capacity:
                self.buffer.popleft()  # 移除最旧的元素 (remove the oldest element)
            self.buffer.append(value)  # value.clone().into()
        return Emit(value)


@dataclass(frozen=True)
class GuideDropOldestResult:
    """The guide's strategy in the flow: what the consumer had to hold."""

    produced: int
    delivered: int
    dropped: int
    sketch_buffer: int
    """Items in the sketch's deque at the end (copies; the bound holds there)."""
    times: np.ndarray
    consumer_queue: np.ndarray
    """Items waiting in the consumer's own queue over time (unbounded)."""
    latencies: np.ndarray
    horizon: float

    @property
    def max_queue(self) -> int:
        return int(self.consumer_queue.max())


def run_guide_drop_oldest(
    *, producer_rate: float = 50.0, consumer_rate: float = 40.0, capacity: int = 20,
    horizon: float = 60.0, seed: int = 1,
) -> GuideDropOldestResult:
    """The producer asks the guide's strategy about every item and, as it always answers
    ``Emit``, hands every item to the consumer's (unbounded) queue."""
    env = simpy.Environment()
    streams = RandomStreams(seed)
    gaps = arrival_gaps("poisson", producer_rate, horizon, streams.numpy("arrivals")).tolist()
    service = streams.numpy("service").exponential(
        1.0 / consumer_rate, size=len(gaps) + 1).tolist()
    strategy = GuideSketchDropOldestStrategy(capacity)
    inbox: simpy.Store = simpy.Store(env)
    levels: list[tuple[float, int]] = [(0.0, 0)]
    latencies: list[float] = []
    counts = {"produced": 0, "dropped": 0}

    def produce() -> Generator[Any, Any, None]:
        for gap in gaps:
            if gap > 0:
                yield env.timeout(gap)
            item = _Item(counts["produced"], env.now)
            counts["produced"] += 1
            action = strategy.handle_backpressure(item)
            if isinstance(action, Emit):
                yield inbox.put(action.value)
            else:  # never happens: the sketch always emits
                counts["dropped"] += 1
            levels.append((env.now, len(inbox.items)))

    def consume() -> Generator[Any, Any, None]:
        served = 0
        while True:
            item = yield inbox.get()
            levels.append((env.now, len(inbox.items)))
            yield env.timeout(service[served])
            served += 1
            latencies.append(env.now - item.created)

    env.process(produce())
    env.process(consume())
    env.run(until=horizon)
    array = np.array(levels, dtype=float)
    return GuideDropOldestResult(
        produced=counts["produced"], delivered=len(latencies), dropped=counts["dropped"],
        sketch_buffer=len(strategy.buffer), times=array[:, 0],
        consumer_queue=array[:, 1].astype(int), latencies=np.array(latencies),
        horizon=horizon)


def compare_drop_oldest(
    *, producer_rate: float = 50.0, consumer_rate: float = 40.0, capacity: int = 20,
    horizon: float = 60.0, seed: int = 1,
) -> tuple[GuideDropOldestResult, FlowResult]:
    """The guide's ``DropOldestStrategy`` beside ``OverflowStrategy.DROP_OLDEST``."""
    guide = run_guide_drop_oldest(producer_rate=producer_rate, consumer_rate=consumer_rate,
                                  capacity=capacity, horizon=horizon, seed=seed)
    ours = run_flow("drop_oldest", producer_rate=producer_rate, consumer_rate=consumer_rate,
                    capacity=capacity, horizon=horizon, arrival="poisson", seed=seed)
    return guide, ours


def draw_guide_drop_oldest(**options: Any) -> Figure:
    """Items waiting for the consumer: the guide's strategy against ``DROP_OLDEST``."""
    guide, ours = compare_drop_oldest(**options)
    fig, (queue_ax, latency_ax) = subplots(1, 2, width=10, height=3.8, width_ratios=[2, 1])
    queue_ax.step(guide.times, guide.consumer_queue, where="post", color=COLORS["guide"],
                  label=f"guide's DropOldestStrategy (its deque: {guide.sketch_buffer} copies)")
    queue_ax.step(ours.times, ours.queue, where="post", color=COLORS["drop_oldest"],
                  label=f"BackpressureBuffer DROP_OLDEST, bound {ours.capacity}")
    queue_ax.set_xlim(0, guide.horizon)
    queue_ax.legend(loc="upper left")
    label(queue_ax, title="Items waiting for the consumer", xlabel="time (s)", ylabel="items")
    latency_ax.plot(np.sort(guide.latencies) * 1000, np.linspace(0, 1, len(guide.latencies)),
                    color=COLORS["guide"], label="guide")
    latency_ax.plot(np.sort(ours.latencies) * 1000, np.linspace(0, 1, len(ours.latencies)),
                    color=COLORS["drop_oldest"], label="DROP_OLDEST")
    latency_ax.set_xscale("log")
    latency_ax.legend(loc="upper left")
    label(latency_ax, title="Latency", xlabel="end-to-end latency (ms, log scale)",
          ylabel="share of items (CDF)")
    return fig


def guide_drop_oldest_table(**options: Any) -> str:
    """The guide's strategy against ``DROP_OLDEST``, as text."""
    guide, ours = compare_drop_oldest(**options)
    horizon = guide.horizon
    inside = ours.latencies[ours.created < horizon]
    return format_table(
        ["strategy", "produced", "dropped", "max waiting", "waiting at the end",
         "mean latency (ms)", "max latency (ms)"],
        [["guide's DropOldestStrategy", guide.produced, guide.dropped, guide.max_queue,
          int(guide.consumer_queue[-1]), float(guide.latencies.mean()) * 1000,
          float(guide.latencies.max()) * 1000],
         ["OverflowStrategy.DROP_OLDEST", ours.produced, ours.dropped, ours.max_queue,
          int(ours.queue[np.searchsorted(ours.times, horizon, side="right") - 1]),
          float(inside.mean()) * 1000, float(inside.max()) * 1000]])


class GuideSketchDeadlockError(RuntimeError):
    """The transcription's stand-in for a hang: a lock was not granted within the timeout."""


class _GuideRwLock:
    """A readers-writer lock like Rust's ``std::sync::RwLock``: many readers or one
    writer, not re-entrant. ``write`` gives up after ``timeout`` seconds (where Rust
    would block forever, or panic), so that a deadlock is reported instead of hanging."""

    def __init__(self, timeout: float) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._writer = False
        self.timeout = timeout

    def read(self) -> _Guard:
        with self._condition:
            while self._writer:
                self._condition.wait()
            self._readers += 1
        return _Guard(self._release_read)

    def write(self) -> _Guard:
        with self._condition:
            if not self._condition.wait_for(lambda: not self._writer and not self._readers,
                                            timeout=self.timeout):
                raise GuideSketchDeadlockError(
                    f"write lock not granted within {self.timeout:g} s: a read lock is held "
                    f"(by on_next, which is calling this very observer)")
            self._writer = True
        return _Guard(self._release_write)

    def _release_read(self) -> None:
        with self._condition:
            self._readers -= 1
            self._condition.notify_all()

    def _release_write(self) -> None:
        with self._condition:
            self._writer = False
            self._condition.notify_all()


class _Guard:
    def __init__(self, release: Callable[[], None]) -> None:
        self._release = release

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        self._release()


class GuideSketchMapOperator:
    """The guide's ``MapOperator``, transcribed (flaw included).

    ``on_next`` takes the read lock of its ``RwLock<HashMap<SubscriptionId, Observer>>``
    and calls every observer *while holding it*; ``subscribe`` and ``unsubscribe`` take
    the write lock. An observer that subscribes (or unsubscribes) from inside its
    ``on_next`` waits for a write lock that its own caller holds: a deadlock.
    """

    def __init__(self, transform: Callable[[Any], Any], *, lock_timeout: float = 0.2) -> None:
        self.transform = transform
        self.observers: dict[int, Any] = {}
        self._lock = _GuideRwLock(lock_timeout)
        self._next_id = 0

    def on_next(self, value: Any) -> None:
        transformed = self.transform(value)
        with self._lock.read():
            for observer in list(self.observers.values()):
                observer.on_next(transformed)

    def on_error(self, error: BaseException) -> None:
        with self._lock.read():
            for observer in list(self.observers.values()):
                observer.on_error(error)

    def on_complete(self) -> None:
        with self._lock.read():
            for observer in list(self.observers.values()):
                observer.on_complete()

    def subscribe(self, observer: Any) -> int:
        with self._lock.write():
            self._next_id += 1
            self.observers[self._next_id] = observer
            return self._next_id

    def unsubscribe(self, subscription: int) -> None:
        with self._lock.write():
            self.observers.pop(subscription, None)


class _ListObserver:
    def __init__(self, on_next: Callable[[Any], None]) -> None:
        self.on_next = on_next
        self.values: list[Any] = []

    def on_error(self, error: BaseException) -> None:
        pass

    def on_complete(self) -> None:
        pass


def reentrant_subscribe(*, guide: bool, lock_timeout: float = 0.2,
                        join_timeout: float = 5.0) -> list[str]:
    """Values 1, 2, 3 pass a map ``x -> 10x``; on seeing 10, the observer subscribes a
    second observer to the same operator. Returns what happened, line by line.

    With the guide's sketch the subscription waits for the write lock held by the very
    ``on_next`` that is calling it (reported after ``lock_timeout`` seconds); with
    :class:`~patterns.dataflow.reactive.Observable` the second observer receives the
    values that follow. The scenario runs in a daemon thread joined with a timeout, so
    a hang could never block the caller.
    """
    lines: list[str] = []

    def scenario() -> None:
        late: list[int] = []
        first: list[int] = []
        if guide:
            operator = GuideSketchMapOperator(lambda x: x * 10, lock_timeout=lock_timeout)

            def on_next(value: int) -> None:
                first.append(value)
                if value == 10:
                    operator.subscribe(_ListObserver(late.append))

            operator.subscribe(_ListObserver(on_next))
            try:
                for value in (1, 2, 3):
                    operator.on_next(value)
            except GuideSketchDeadlockError as error:
                lines.append(f"deadlock: {error}")
        else:
            subject: Subject[int] = Subject()
            mapped: Observable[int] = subject.map(lambda x: x * 10)

            def on_next_ours(value: int) -> None:
                first.append(value)
                if value == 10:
                    mapped.subscribe(late.append)

            mapped.subscribe(on_next_ours)
            for value in (1, 2, 3):
                subject.on_next(value)
        lines.append(f"first observer received {first}")
        lines.append(f"second observer (subscribed inside on_next) received {late}")

    thread = threading.Thread(target=scenario, daemon=True)
    thread.start()
    thread.join(join_timeout)
    if thread.is_alive():
        lines.append(f"still blocked after {join_timeout:g} s: a deadlock")
    return lines
