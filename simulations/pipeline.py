"""Pipelines in simulated time (guide section 1.1, 数据管道与变换模式).

A pipeline under load is a *tandem line of servers*: each stage is a server with its own
service time, items queue in front of it, and the slowest stage (the bottleneck) caps
the throughput of the whole line. :func:`run_line` models that with SimPy:

* items arrive as a Poisson stream of ``arrival_rate`` per second;
* a :class:`patterns.dataflow.pipeline.Batcher` (the library's object, on a
  :class:`~simulations.kit.clock.SimClock`) groups them into batches of ``batch_size``,
  releasing a partial batch ``max_wait`` seconds after its first item;
* each batch then visits every stage in turn, first come first served; a stage serves a
  batch in ``setup + sum(per-item service times)`` seconds: the setup (a round trip, a
  transaction) is paid once per batch, which is what batching amortises.

Results are frozen dataclasses with throughput, latency (mean, p95), the time items
spent waiting for their batch to fill, and per stage the utilisation and the mean time
a batch waited and was served there. Theory sits beside the simulation:

* Jackson (1957): a line of M/M/1 stations fed at rate ``λ`` below every service rate
  ``μᵢ`` has throughput ``λ``, utilisation ``ρᵢ = λ/μᵢ`` and mean sojourn
  ``Σ 1/(μᵢ − λ)`` (:func:`jackson_tandem`);
* a stage with setup ``s₀`` and per-item time ``s₁`` serving batches of ``b`` can do at
  most ``b / (s₀ + b·s₁)`` items per second (:func:`batch_capacity`); the line's capacity
  is the smallest of its stages';
* with no ``max_wait``, Poisson items wait on average ``(b − 1)/(2λ)`` for their batch
  to fill (:func:`fill_wait`).

The guide's flawed sketches are transcribed as :class:`GuideSketchSequentialPipeline`
(errors labelled only "first"/"second") and :class:`GuideSketchBatchStage` (chunks, but
calls the inner stage item by item, and drops every result when one item fails).
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from patterns.clock import ManualClock
from patterns.dataflow.pipeline import (
    Batcher,
    BatchResult,
    BatchStage,
    Stage,
    StageError,
    StageStats,
    StageTimer,
    for_each,
    short_repr,
)
from simulations.kit.clock import SimClock
from simulations.kit.faults import Exponential, LatencyDistribution
from simulations.kit.plotting import label, subplots
from simulations.kit.recorder import Recorder
from simulations.kit.rng import RandomStreams
from simulations.kit.tables import format_table
from simulations.kit.widgets import Explorer, float_slider, int_slider
from simulations.kit.workloads import poisson_arrivals

# ============================================================================ the model


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One stage of the line: ``service`` per item, plus ``setup`` seconds per batch."""

    name: str
    service: LatencyDistribution
    setup: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.service, LatencyDistribution):
            raise TypeError(f"service must be a LatencyDistribution, got {self.service!r}")
        if not (math.isfinite(self.setup) and self.setup >= 0):
            raise ValueError(f"setup must be a finite number >= 0, got {self.setup!r}")

    def capacity(self, batch_size: int = 1, *, amortise: bool = True) -> float:
        """Items per second this stage can serve in batches of ``batch_size``."""
        return batch_capacity(batch_size, self.setup, self.service.mean, amortise=amortise)


def batch_capacity(batch_size: int, setup: float, per_item: float, *,
                   amortise: bool = True) -> float:
    """``b / (s0 + b*s1)`` items per second; without amortisation ``1 / (s0 + s1)``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    if not amortise:
        batch_size = 1
    cost = setup + batch_size * per_item
    return math.inf if cost == 0 else batch_size / cost


def line_capacity(stages: Sequence[StageSpec], batch_size: int = 1, *,
                  amortise: bool = True) -> float:
    """The line's capacity: the smallest stage capacity (the bottleneck's)."""
    return min(s.capacity(batch_size, amortise=amortise) for s in stages)


def bottleneck(stages: Sequence[StageSpec], batch_size: int = 1) -> str:
    """The name of the stage with the smallest capacity at ``batch_size``."""
    return min(stages, key=lambda s: s.capacity(batch_size)).name


def fill_wait(batch_size: int, arrival_rate: float) -> float:
    """Mean seconds a Poisson item waits for its batch to fill (no ``max_wait``).

    The k-th item of a batch waits for the ``b − k`` items after it, each ``1/λ`` apart
    on average: ``(b − 1)/(2λ)`` over the batch.
    """
    return (batch_size - 1) / (2 * arrival_rate)


@dataclass(frozen=True, slots=True)
class JacksonTandem:
    """Jackson's answer for a line of M/M/1 stations (rates per second, times in seconds)."""

    arrival_rate: float
    service_rates: tuple[float, ...]

    @property
    def stable(self) -> bool:
        return all(self.arrival_rate < mu for mu in self.service_rates)

    @property
    def throughput(self) -> float:
        return min(self.arrival_rate, *self.service_rates)

    @property
    def utilisations(self) -> tuple[float, ...]:
        return tuple(min(1.0, self.arrival_rate / mu) for mu in self.service_rates)

    @property
    def sojourns(self) -> tuple[float, ...]:
        """Mean time at each station, waiting and served: ``1/(μᵢ − λ)``."""
        return tuple(1 / (mu - self.arrival_rate) if mu > self.arrival_rate else math.inf
                     for mu in self.service_rates)

    @property
    def waits(self) -> tuple[float, ...]:
        """Mean time queueing at each station: ``ρᵢ/(μᵢ − λ)``."""
        return tuple(s - 1 / mu for s, mu in zip(self.sojourns, self.service_rates,
                                                 strict=True))

    @property
    def sojourn(self) -> float:
        """Mean time through the whole line: ``Σ 1/(μᵢ − λ)``."""
        return sum(self.sojourns)


def jackson_tandem(arrival_rate: float, service_rates: Sequence[float]) -> JacksonTandem:
    """Theory for a tandem line of M/M/1 stations fed by a Poisson stream."""
    return JacksonTandem(float(arrival_rate), tuple(float(mu) for mu in service_rates))


@dataclass(frozen=True, slots=True)
class StageFigures:
    """What one stage did in the measured window (times per batch visit, seconds)."""

    name: str
    utilisation: float
    """Share of the window the server was busy."""
    mean_wait: float
    """Mean time a batch queued in front of the stage."""
    mean_service: float
    """Mean time the stage took to serve a batch."""
    batches: int


@dataclass(frozen=True, eq=False)
class LineResult:
    """One run of :func:`run_line` (rates per second, times in seconds)."""

    arrival_rate: float
    batch_size: int
    max_wait: float
    amortise: bool
    horizon: float
    warmup: float
    offered: int
    """Items that arrived in the measured window."""
    completed: int
    """Items that left the line in the measured window."""
    throughput: float
    latencies: np.ndarray = field(repr=False)
    """Time through the line of each item that arrived in the window and finished."""
    fill_waits: np.ndarray = field(repr=False)
    """Time each of those items waited in the batcher."""
    mean_batch: float
    stages: tuple[StageFigures, ...]
    capacity: float
    """The line's capacity in theory (``min`` of the stages' batch capacities)."""
    recorder: Recorder = field(repr=False)
    timings: dict[str, StageStats] = field(repr=False)
    """A :class:`~patterns.dataflow.pipeline.StageTimer`'s figures for the whole run
    (warm-up included): batches served and time spent serving them, per stage."""

    @property
    def mean_latency(self) -> float:
        return float(np.mean(self.latencies)) if len(self.latencies) else math.nan

    @property
    def p95_latency(self) -> float:
        return float(np.percentile(self.latencies, 95)) if len(self.latencies) else math.nan

    @property
    def mean_fill_wait(self) -> float:
        return float(np.mean(self.fill_waits)) if len(self.fill_waits) else math.nan

    @property
    def bottleneck(self) -> str:
        """The stage that was busiest in the simulation."""
        return max(self.stages, key=lambda s: s.utilisation).name

    def utilisation(self, name: str) -> float:
        return next(s.utilisation for s in self.stages if s.name == name)


def run_line(
    stages: Sequence[StageSpec],
    arrival_rate: float,
    *,
    batch_size: int = 1,
    max_wait: float = math.inf,
    horizon: float = 60.0,
    warmup: float | None = None,
    amortise: bool = True,
    seed: int = 1,
) -> LineResult:
    """Simulate items through a tandem line of ``stages`` for ``horizon`` seconds.

    Items arrive at ``arrival_rate`` per second (Poisson) and are batched by a
    :class:`~patterns.dataflow.pipeline.Batcher` (``batch_size``, ``max_wait``) on a
    :class:`SimClock`; a batch visits each stage in turn and is served in
    ``setup + Σ per-item times``; with ``amortise=False`` the setup is paid per *item*,
    as in the guide's ``BatchStage``. Figures are measured over ``[warmup, horizon]``
    (``warmup`` defaults to 10 % of the horizon); latencies count the items that arrived
    in that window and left the line before the horizon.
    """
    if not stages:
        raise ValueError("stages must not be empty, got []")
    if not (math.isfinite(arrival_rate) and arrival_rate > 0):
        raise ValueError(f"arrival_rate must be a finite number > 0, got {arrival_rate!r}")
    if not horizon > 0:
        raise ValueError(f"horizon must be > 0, got {horizon!r}")
    warmup = 0.1 * horizon if warmup is None else warmup
    if not 0 <= warmup < horizon:
        raise ValueError(f"warmup must be within [0, horizon), got {warmup!r}")
    env = simpy.Environment()
    clock = SimClock(env)
    streams = RandomStreams(seed)
    batcher: Batcher[int] = Batcher(batch_size, max_wait, clock=clock)
    recorder = Recorder()
    batcher.listeners.add(recorder.listener("batcher"))
    timer = StageTimer(clock=clock)  # the library's per-stage timing, in simulated time
    arrivals = poisson_arrivals(arrival_rate, horizon, streams.numpy("arrivals"))
    released = np.full(len(arrivals), np.nan)
    finished = np.full(len(arrivals), np.nan)
    queues = [simpy.Store(env) for _ in stages]
    busy: list[list[tuple[float, float, float]]] = [[] for _ in stages]  # (queued, start, end)

    def dispatch(batch: list[int]) -> None:
        released[batch] = env.now
        queues[0].put((batch, env.now))

    def deadline_timer(due: float) -> Generator[Any, Any, None]:
        yield env.timeout(max(0.0, due - env.now))
        batch = batcher.poll()  # None if the batch already left full
        if batch is not None:
            dispatch(batch)

    def source() -> Generator[Any, Any, None]:
        for index, when in enumerate(arrivals.tolist()):  # floats: faster in SimPy
            if when > env.now:
                yield env.timeout(when - env.now)
            batch = batcher.add(index)
            if batch is not None:
                dispatch(batch)
            elif len(batcher) == 1 and math.isfinite(max_wait):
                due = batcher.deadline()
                if due is not None:
                    env.process(deadline_timer(due))

    def server(position: int, spec: StageSpec) -> Generator[Any, Any, None]:
        rng = streams.stream(f"service-{position}-{spec.name}")
        sample = spec.service.sample
        inbox = queues[position]
        outbox = queues[position + 1] if position + 1 < len(stages) else None
        intervals = busy[position]
        while True:
            batch, queued = yield inbox.get()
            start = env.now
            per_item = sum(sample(rng) for _ in batch)
            setups = spec.setup * (1 if amortise else len(batch))
            yield env.timeout(setups + per_item)
            intervals.append((queued, start, env.now))
            timer.record(spec.name, env.now - start, True, time=env.now)
            if outbox is not None:
                outbox.put((batch, env.now))
            else:
                finished[batch] = env.now

    env.process(source())
    for position, spec in enumerate(stages):
        env.process(server(position, spec))
    env.run(until=horizon)

    window = horizon - warmup
    in_window = (arrivals >= warmup) & ~np.isnan(finished)
    done_in_window = (finished >= warmup) & (finished <= horizon)
    figures = []
    for spec, intervals in zip(stages, busy, strict=True):
        table = np.array(intervals, dtype=float).reshape(-1, 3)
        starts, ends = table[:, 1], table[:, 2]
        overlap = np.clip(np.minimum(ends, horizon) - np.maximum(starts, warmup), 0, None)
        measured = starts >= warmup
        figures.append(StageFigures(
            name=spec.name,
            utilisation=float(overlap.sum() / window),
            mean_wait=float(np.mean(starts[measured] - table[measured, 0]))
            if measured.any() else math.nan,
            mean_service=float(np.mean(ends[measured] - starts[measured]))
            if measured.any() else math.nan,
            batches=int(measured.sum()),
        ))
    sizes = [r.data["size"] for r in recorder.select("BatchEmitted")]
    return LineResult(
        arrival_rate=arrival_rate,
        batch_size=batch_size,
        max_wait=max_wait,
        amortise=amortise,
        horizon=horizon,
        warmup=warmup,
        offered=int(np.count_nonzero(arrivals >= warmup)),
        completed=int(np.count_nonzero(done_in_window)),
        throughput=float(np.count_nonzero(done_in_window) / window),
        latencies=finished[in_window] - arrivals[in_window],
        fill_waits=released[in_window] - arrivals[in_window],
        mean_batch=float(np.mean(sizes)) if sizes else math.nan,
        stages=tuple(figures),
        capacity=line_capacity(stages, batch_size, amortise=amortise),
        recorder=recorder,
        timings=timer.stats(),
    )


# ============================================================================ example lines


def example_line(store_ms: float = 4.0, setup_ms: float = 20.0) -> tuple[StageSpec, ...]:
    """The course's example pipeline, per-item times exponential (milliseconds in names):

    * ``parse``: 2 ms per item;
    * ``lookup``: a database round trip of ``setup_ms`` per call plus 2 ms per item, the
      stage batching is for;
    * ``store``: ``store_ms`` per item.

    Unbatched, ``lookup`` is the bottleneck (about 45 items/s); batches of 10 or more
    make it faster than ``store``, which then caps the line at ``1000/store_ms`` items/s.
    """
    return (
        StageSpec("parse", Exponential(0.002)),
        StageSpec("lookup", Exponential(0.002), setup=setup_ms / 1000),
        StageSpec("store", Exponential(store_ms / 1000)),
    )


def mm1_line(service_rates: Sequence[float]) -> tuple[StageSpec, ...]:
    """A line of M/M/1 stations with the given service rates (per second), no setup."""
    return tuple(StageSpec(f"stage {i + 1}", Exponential(1 / mu))
                 for i, mu in enumerate(service_rates))


# ============================================================================ sweeps


def sweep_batch_size(
    batch_sizes: Sequence[int],
    arrival_rate: float,
    *,
    stages: Sequence[StageSpec] | None = None,
    max_wait: float = math.inf,
    horizon: float = 30.0,
    amortise: bool = True,
    seed: int = 1,
) -> list[LineResult]:
    """:func:`run_line` once per batch size, same arrivals (same seed)."""
    line = example_line() if stages is None else stages
    return [run_line(line, arrival_rate, batch_size=b, max_wait=max_wait, horizon=horizon,
                     amortise=amortise, seed=seed) for b in batch_sizes]


def saturated_throughput(
    stages: Sequence[StageSpec], batch_size: int, *, amortise: bool = True,
    horizon: float = 20.0, seed: int = 1,
) -> float:
    """Throughput when items arrive faster than the line can serve (its measured capacity)."""
    overload = 1.5 * line_capacity(stages, batch_size, amortise=amortise)
    return run_line(stages, overload, batch_size=batch_size, horizon=horizon,
                    amortise=amortise, seed=seed).throughput


# ============================================================================ figures


def plot_capacity(ax: Axes, stages: Sequence[StageSpec], batch_sizes: Sequence[int], *,
                  measured: Sequence[float] | None = None,
                  guide: Sequence[float] | None = None,
                  arrival_rate: float | None = None) -> Axes:
    """Capacity against batch size: theory ``min b/(s0 + b*s1)``, measured dots."""
    fine = np.unique(np.geomspace(1, max(batch_sizes), 60).astype(int))
    total = [line_capacity(stages, int(b)) for b in fine]
    top = max(total) * 1.5
    for spec in stages:
        alone = [spec.capacity(int(b)) for b in fine]
        if min(alone) > top:
            continue  # never the bottleneck here
        ax.plot(fine, alone, ":", linewidth=1.2, color="#7f7f7f")
        inside = [i for i, c in enumerate(alone) if c < top * 0.95]
        at = inside[len(inside) * 2 // 3] if spec.setup > 0 else inside[-1]
        ax.annotate(f"{spec.name} alone", (fine[at], alone[at]), fontsize=8,
                    color="#555555", xytext=(0, 4), textcoords="offset points", ha="center")
    ax.plot(fine, total, color="#1f77b4", linewidth=2,
            label="theory: min over stages of b/(s0 + b·s1)")
    if measured is not None:
        ax.plot(batch_sizes, measured, "o", color="#1f77b4", label="BatchStage, simulated")
    if guide is not None:
        ax.plot(batch_sizes, guide, "s--", color="#ff7f0e",
                label="guide's BatchStage, simulated")
    if arrival_rate is not None:
        ax.axhline(arrival_rate, color="#000000", linewidth=1, linestyle="--",
                   label=f"arrival rate {arrival_rate:g}/s")
    ax.set_ylim(0, top)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(batch_sizes), [str(b) for b in batch_sizes])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(loc="upper left", fontsize=8)
    return label(ax, title="Capacity", xlabel="batch size (items, log scale)",
                 ylabel="max throughput (items/s)")


def plot_latency_by_batch(ax: Axes, runs: dict[str, Sequence[LineResult]]) -> Axes:
    """Mean (solid) and p95 (dashed) latency against batch size, one colour per run set.

    A run whose arrival rate reaches the line's capacity is overloaded: its queue grows
    for the whole run, so its latency only says "unbounded"; it is drawn with a cross.
    """
    colours = ["#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    sizes: list[int] = []
    overloaded_any = False
    for colour, (name, results) in zip(colours, runs.items(), strict=False):
        sizes = [r.batch_size for r in results]
        ax.plot(sizes, [r.mean_latency * 1000 for r in results], "o-", color=colour,
                label=name)
        ax.plot(sizes, [r.p95_latency * 1000 for r in results], "o--", color=colour,
                alpha=0.6)
        over = [r for r in results if r.arrival_rate >= r.capacity]
        if over:
            overloaded_any = True
            ax.plot([r.batch_size for r in over], [r.mean_latency * 1000 for r in over], "x",
                    color="#000000", markersize=10, markeredgewidth=2)
    if overloaded_any:
        ax.plot([], [], "x", color="#000000", markersize=8, markeredgewidth=2,
                label="overloaded: queue grows all run")
    ax.set_yscale("log")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    # plain numbers on the log axes: cheaper to draw than the default mathtext labels
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=8)
    return label(ax, title="Latency (solid: mean, dashed: p95)",
                 xlabel="batch size (items, log scale)",
                 ylabel="time through the line (ms, log scale)")


BATCH_SIZES: tuple[int, ...] = (1, 2, 4, 8, 16, 32)


def draw_batching_trade(
    low_rate: float = 20.0, high_rate: float = 150.0, *, max_wait: float = math.inf,
    seed: int = 1,
) -> Figure:
    """Batching raises capacity (left) but makes items wait for their batch (right)."""
    line = example_line()
    measured = [saturated_throughput(line, b, seed=seed) for b in BATCH_SIZES]
    guide = [saturated_throughput(line, b, amortise=False, seed=seed) for b in BATCH_SIZES]
    runs = {f"{low_rate:g} items/s": sweep_batch_size(BATCH_SIZES, low_rate, max_wait=max_wait,
                                                      seed=seed),
            f"{high_rate:g} items/s": sweep_batch_size(BATCH_SIZES, high_rate,
                                                       max_wait=max_wait, seed=seed)}
    fig, (left, right) = subplots(1, 2, width=10, height=4.4)
    plot_capacity(left, line, BATCH_SIZES, measured=measured, guide=guide)
    plot_latency_by_batch(right, runs)
    fig.suptitle("Batching the lookup: parse 2 ms, lookup 20 ms per call + 2 ms per item, "
                 "store 4 ms per item")
    return fig


def plot_stage_utilisation(ax: Axes, result: LineResult) -> Axes:
    """Bars: each stage's utilisation (simulated), with theory ``λ/capacity`` as a tick."""
    names = [s.name for s in result.stages]
    values = [s.utilisation for s in result.stages]
    colours = ["#d62728" if n == result.bottleneck else "#1f77b4" for n in names]
    bars = ax.bar(names, values, color=colours)
    ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], fontsize=8)
    ax.set_ylim(0, 1.15)
    return label(ax, title="Utilisation (red: the bottleneck)", xlabel="stage",
                 ylabel="share of time busy")


def plot_time_per_stage(ax: Axes, result: LineResult) -> Axes:
    """Stacked bars: where an item's time goes, stage by stage (waiting vs service)."""
    names = ["batching", *(s.name for s in result.stages)]
    waits = [result.mean_fill_wait * 1000, *(s.mean_wait * 1000 for s in result.stages)]
    services = [0.0, *(s.mean_service * 1000 for s in result.stages)]
    ax.bar(names, waits, color="#ff7f0e", label="waiting (queue, or for the batch to fill)")
    ax.bar(names, services, bottom=waits, color="#1f77b4", label="being served")
    ax.legend(fontsize=8)
    return label(ax, title="Where an item's time goes", xlabel="stage",
                 ylabel="mean time per item (ms)")


def draw_line(
    arrival_rate: float = 120.0, batch_size: int = 8, max_wait_ms: float = 50.0,
    store_ms: float = 4.0, setup_ms: float = 20.0, *, horizon: float = 10.0, seed: int = 1,
) -> Figure:
    """One run of the example line: utilisation and where the time goes, per stage."""
    line = example_line(store_ms=store_ms, setup_ms=setup_ms)
    result = run_line(line, arrival_rate, batch_size=batch_size, max_wait=max_wait_ms / 1000,
                      horizon=horizon, seed=seed)
    fig, (left, right) = subplots(1, 2, width=10, height=4.2)
    plot_stage_utilisation(left, result)
    plot_time_per_stage(right, result)
    overloaded = arrival_rate >= result.capacity
    fig.suptitle(
        f"{arrival_rate:g} items/s offered, capacity {result.capacity:.0f}/s "
        f"(bottleneck in theory: {bottleneck(line, batch_size)})"
        + ("  [OVERLOADED: queues grow]" if overloaded else "")
        + f"\nthroughput {result.throughput:.0f}/s, latency mean "
        f"{result.mean_latency * 1000:.0f} ms, p95 {result.p95_latency * 1000:.0f} ms",
        fontsize=10)
    return fig


def draw_line_explorer(
    arrival_rate: float = 120.0, batch_size: int = 8, store_ms: float = 4.0, *, seed: int = 1,
) -> Figure:
    """:func:`draw_line` for the explorer: batches wait until full (no ``max_wait``, so
    the batch size always matters), over at least 10 s and 30 batches' worth of items."""
    horizon = max(10.0, 30 * batch_size / arrival_rate)
    return draw_line(arrival_rate, batch_size, math.inf, store_ms, horizon=horizon, seed=seed)


def draw_bottleneck(
    store_ms_values: Sequence[float] = (2.0, 4.0, 8.0), batch_size: int = 16,
    rates: Sequence[float] = (25, 50, 75, 100, 125, 150, 175, 200, 250, 300), *,
    max_wait: float = 0.05, horizon: float = 20.0, seed: int = 1,
) -> Figure:
    """Throughput against offered load (left) and each stage's utilisation (right)."""
    fig, (left, right) = subplots(1, 2, width=10, height=4.4)
    colours = ["#2ca02c", "#1f77b4", "#d62728", "#9467bd"]
    xs = np.linspace(0, max(rates), 200)
    for colour, store_ms in zip(colours, store_ms_values, strict=False):
        line = example_line(store_ms=store_ms)
        cap = line_capacity(line, batch_size)
        runs = [run_line(line, r, batch_size=batch_size, max_wait=max_wait, horizon=horizon,
                         seed=seed) for r in rates]
        left.plot(xs, np.minimum(xs, cap), color=colour, linewidth=1)
        left.plot(rates, [r.throughput for r in runs], "o", color=colour,
                  label=f"store {store_ms:g} ms/item: capacity {cap:.0f}/s "
                        f"({bottleneck(line, batch_size)})")
        if store_ms == store_ms_values[len(store_ms_values) // 2]:
            for spec, style in zip(line, ["-", "--", ":"], strict=False):
                right.plot(rates, [r.utilisation(spec.name) for r in runs], style, marker="o",
                           markersize=3, color="#333333", label=spec.name)
            right.set_title(f"Utilisation per stage (store {store_ms:g} ms/item)")
    left.legend(fontsize=8)
    label(left, title=f"Throughput (batches of up to {batch_size}; lines: min(λ, capacity))",
          xlabel="arrival rate λ (items/s)", ylabel="throughput (items/s)")
    right.set_ylim(0, 1.1)
    right.legend(fontsize=8)
    right.set_xlabel("arrival rate λ (items/s)")
    right.set_ylabel("share of time busy")
    return fig


# ============================================================================ tables


def jackson_table(
    arrival_rates: Sequence[float] = (0.5, 1.0, 1.5), service_rates: Sequence[float] = (3, 2, 2.5),
    *, horizon: float = 20_000.0, seed: int = 1,
) -> str:
    """Theory beside simulation for a tandem line of M/M/1 stations (batch size 1)."""
    rows = []
    line = mm1_line(service_rates)
    for rate in arrival_rates:
        theory = jackson_tandem(rate, service_rates)
        result = run_line(line, rate, horizon=horizon, seed=seed)
        rows.append([rate, theory.throughput, result.throughput, theory.sojourn,
                     result.mean_latency,
                     " / ".join(f"{u:.2f}" for u in theory.utilisations),
                     " / ".join(f"{s.utilisation:.2f}" for s in result.stages)])
    return format_table(["λ (/s)", "throughput theory", "simulated", "sojourn theory (s)",
                         "simulated (s)", "ρ theory", "ρ simulated"], rows)


def capacity_table(batch_sizes: Sequence[int] = BATCH_SIZES, *, seed: int = 1) -> str:
    """Capacity by batch size: theory, simulated, and the guide's BatchStage (simulated)."""
    line = example_line()
    rows = []
    for b in batch_sizes:
        rows.append([b, line_capacity(line, b), saturated_throughput(line, b, seed=seed),
                     line_capacity(line, b, amortise=False),
                     saturated_throughput(line, b, amortise=False, seed=seed),
                     bottleneck(line, b)])
    return format_table(["batch size", "capacity theory (/s)", "simulated (/s)",
                         "guide's theory (/s)", "guide's simulated (/s)", "bottleneck"], rows)


def low_load_table(
    arrival_rate: float = 10.0, batch_sizes: Sequence[int] = (1, 4, 16, 32),
    *, max_wait: float = 0.05, horizon: float = 200.0, seed: int = 1,
) -> str:
    """At low load, batching costs latency: fill-wait theory and simulation, and max_wait."""
    line = example_line()
    rows = []
    for b in batch_sizes:
        free = run_line(line, arrival_rate, batch_size=b, horizon=horizon, seed=seed)
        capped = run_line(line, arrival_rate, batch_size=b, max_wait=max_wait,
                          horizon=horizon, seed=seed)
        rows.append([b, fill_wait(b, arrival_rate) * 1000, free.mean_fill_wait * 1000,
                     free.mean_latency * 1000, capped.mean_latency * 1000,
                     capped.mean_batch])
    return format_table(["batch size", "fill wait theory (ms)", "simulated (ms)",
                         "latency (ms)", f"latency, max_wait {max_wait * 1000:g} ms (ms)",
                         "mean batch with max_wait"], rows)


# ============================================================================ explorers


def line_explorer() -> Explorer:
    """Sliders for one run of the example line: load, batch size, store speed.

    No ``max_wait`` slider here: with one, every batch size above what arrives within
    ``max_wait`` draws the same picture (and every ``max_wait`` longer than a batch
    takes to fill); :func:`batching_explorer` varies it instead.
    """
    return Explorer(draw_line_explorer, {
        "arrival_rate": float_slider("arrival rate (items/s)", 120.0, 10.0, 400.0, 10.0,
                                     readout_format=".0f"),
        "batch_size": int_slider("batch size", 8, 1, 64),
        "store_ms": float_slider("store: ms per item", 4.0, 1.0, 10.0, 0.5,
                                 readout_format=".1f"),
    })


def draw_batching(
    arrival_rate: float = 40.0, setup_ms: float = 20.0, max_wait_ms: float = 100.0, *,
    seed: int = 1,
) -> Figure:
    """Capacity (theory) and simulated latency against batch size, for the explorer."""
    line = example_line(setup_ms=setup_ms)
    runs = {"no max_wait": _explorer_sweep(arrival_rate, setup_ms, math.inf, seed),
            f"max_wait {max_wait_ms:g} ms": _explorer_sweep(arrival_rate, setup_ms,
                                                            max_wait_ms / 1000, seed)}
    fig, (left, right) = subplots(1, 2, width=10, height=4.2)
    plot_capacity(left, line, BATCH_SIZES, arrival_rate=arrival_rate)
    plot_latency_by_batch(right, runs)
    return fig


@functools.lru_cache(maxsize=64)
def _explorer_sweep(arrival_rate: float, setup_ms: float, max_wait: float,
                    seed: int) -> tuple[LineResult, ...]:
    """One sweep of the batching explorer, kept: the runs without a max wait do not depend
    on the max-wait slider, and a learner often moves a slider back to where it was."""
    # about 500 items per run: enough for a mean and a p95, fast enough for a slider
    horizon = min(100.0, max(4.0, 500 / arrival_rate))
    return tuple(sweep_batch_size(BATCH_SIZES, arrival_rate,
                                  stages=example_line(setup_ms=setup_ms), max_wait=max_wait,
                                  horizon=horizon, seed=seed))


def batching_explorer() -> Explorer:
    """Sliders for the batching trade: load, setup cost per call, max wait."""
    return Explorer(draw_batching, {
        "arrival_rate": float_slider("arrival rate (items/s)", 40.0, 5.0, 200.0, 5.0,
                                     readout_format=".0f"),
        "setup_ms": float_slider("lookup setup (ms per call)", 20.0, 0.0, 50.0, 1.0,
                                 readout_format=".0f"),
        "max_wait_ms": float_slider("max wait (ms)", 100.0, 0.0, 500.0, 10.0,
                                    readout_format=".0f"),
    })


# ============================================================================ the guide


class GuideSketchStageError(Exception):
    """The guide's ``StageError``: the sketch gives it no fields, so only a message."""


class GuideSketchPipelineError(Exception):
    """The guide's ``PipelineError::StageError(e, "first" | "second")``."""

    def __init__(self, stage_error: GuideSketchStageError, label_: str) -> None:
        super().__init__(f"StageError({str(stage_error)!r}, {label_!r})")
        self.stage_error = stage_error
        self.label = label_


class GuideSketchFnStage:
    """A function as the guide's ``Stage``: ``execute`` returns or raises a StageError.

    (The sketch's stages return ``Result<O, StageError>``; a Python exception becomes a
    StageError carrying the exception's text, the most the sketch's type could hold.)
    """

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def execute(self, value: Any) -> Any:
        try:
            return self.fn(value)
        except Exception as error:
            raise GuideSketchStageError(f"{type(error).__name__}: {error}") from None


class GuideSketchSequentialPipeline:
    """The guide's ``SequentialPipeline<S1, S2>``, transcribed with its flaws.

    ``process`` labels a failure ``"first"`` or ``"second"`` and nothing else: no stage
    name, no input. The sketch does not say how to nest pipelines; nesting needs a
    pipeline to act as a ``Stage``, and :meth:`execute` does the only conversion the
    types allow, ``PipelineError -> StageError``: it keeps the inner StageError and
    loses the inner label. So in ``((a, b), c), d`` a failure of ``a``, ``b`` or ``c``
    all read ``"first"``.
    """

    def __init__(self, first: Any, second: Any) -> None:
        self.first = first
        self.second = second

    def process(self, value: Any) -> Any:
        try:
            intermediate = self.first.execute(value)
        except GuideSketchStageError as error:
            raise GuideSketchPipelineError(error, "first") from None
        try:
            return self.second.execute(intermediate)
        except GuideSketchStageError as error:
            raise GuideSketchPipelineError(error, "second") from None

    def execute(self, value: Any) -> Any:
        try:
            return self.process(value)
        except GuideSketchPipelineError as error:
            raise error.stage_error from None


class GuideSketchBatchStage:
    """The guide's ``BatchStage``: chunks the input, then calls ``inner`` item by item.

    Nothing is amortised (one ``inner.execute`` per item, whatever the batch size), and
    the ``?`` after ``collect`` returns at the first failing item: the results of every
    chunk already processed are dropped with it.
    """

    def __init__(self, inner: Any, batch_size: int) -> None:
        self.inner = inner
        self.batch_size = batch_size

    def execute(self, items: Sequence[Any]) -> list[Any]:
        results: list[Any] = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start:start + self.batch_size]
            batch_results = [self.inner.execute(item) for item in chunk]
            results.extend(batch_results)
        return results


# ---------------------------------------------------------------------------- pitfall 1

ORDER_STAGES: tuple[str, ...] = ("parse", "validate", "enrich", "store")


def _order_stage(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def step(order: dict[str, Any]) -> dict[str, Any]:
        if order.get("breaks") == name:
            raise KeyError("customer_id")  # the same everyday error in every stage
        return order

    step.__name__ = name
    return step


def guide_nested_pipeline() -> GuideSketchSequentialPipeline:
    """Four stages nested the only way the sketch allows: ``(((parse, validate), enrich),
    store)``."""
    parse, validate, enrich, store = (GuideSketchFnStage(_order_stage(n)) for n in ORDER_STAGES)
    return GuideSketchSequentialPipeline(
        GuideSketchSequentialPipeline(GuideSketchSequentialPipeline(parse, validate), enrich),
        store)


def library_pipeline() -> Any:
    """The same four stages with the library: ``parse >> validate >> enrich >> store``."""
    parse, validate, enrich, store = (Stage(_order_stage(n)) for n in ORDER_STAGES)
    return (parse >> validate) >> (enrich >> store)


def nested_error_table() -> str:
    """For each stage that breaks: what the guide's error says, and what ours says."""
    guide, ours = guide_nested_pipeline(), library_pipeline()
    rows = []
    for name in ORDER_STAGES:
        order = {"id": 7, "breaks": name}
        try:
            guide.process(order)
        except GuideSketchPipelineError as error:
            guide_says = f"{error.label}: {error.stage_error}"
        try:
            ours.process(order)
        except StageError as error:
            ours_says = f"{error.stage} at {error.path}, input {error.input_repr}"
        rows.append([name, guide_says, ours_says])
    return format_table(["stage that broke", "guide's error", "StageError"], rows)


# ---------------------------------------------------------------------------- pitfall 2


@dataclass(frozen=True, slots=True)
class CostRun:
    """Time a batching variant spent on ``items`` items (setup per call + per item)."""

    variant: str
    batch_size: int
    calls: int
    seconds: float


def batching_cost(batch_size: int, *, items: int = 1000, setup: float = 0.020,
                  per_item: float = 0.002) -> tuple[CostRun, CostRun]:
    """Run the guide's ``BatchStage`` and ours over ``items`` items on a manual clock.

    The inner lookup costs ``setup`` per call plus ``per_item`` per item it is given
    (the clock is advanced, nothing sleeps). The guide's sketch calls it once per item;
    :class:`~patterns.dataflow.pipeline.BatchStage` once per chunk.
    """
    results = []
    for variant in ("guide", "ours"):
        clock = ManualClock()
        calls = [0]

        def lookup_many(keys: list[int], clock: ManualClock = clock,
                        calls: list[int] = calls) -> list[int]:
            calls[0] += 1
            clock.advance(setup + per_item * len(keys))
            return [k * 2 for k in keys]

        data = list(range(items))
        if variant == "guide":
            def lookup_one(key: int, f: Callable[[list[int]], list[int]] = lookup_many) -> int:
                return f([key])[0]

            inner = GuideSketchFnStage(lookup_one)
            output = GuideSketchBatchStage(inner, batch_size).execute(data)
        else:
            output = BatchStage(Stage(lookup_many), batch_size).process(data)
        assert output == [k * 2 for k in data]
        results.append(CostRun(variant, batch_size, calls[0], clock.now()))
    return results[0], results[1]


def batching_cost_table(batch_sizes: Sequence[int] = (1, 10, 100), *, items: int = 1000,
                        setup_ms: float = 20.0, per_item_ms: float = 2.0) -> str:
    """Calls and time for ``items`` lookups (``setup_ms`` per call + ``per_item_ms`` per
    item), by batch size."""
    rows = []
    for b in batch_sizes:
        guide, ours = batching_cost(b, items=items, setup=setup_ms / 1000,
                                    per_item=per_item_ms / 1000)
        rows.append([b, guide.calls, guide.seconds, ours.calls, ours.seconds])
    return format_table(["batch size", "guide: calls", "guide: seconds", "BatchStage: calls",
                         "BatchStage: seconds"], rows)


@dataclass(frozen=True, slots=True)
class FailureRun:
    """Outputs delivered by each batching variant over repeated lists with bad items."""

    failure_probability: float
    items: int
    trials: int
    guide_delivered: float
    """Mean outputs the guide's BatchStage returned per list (all or nothing)."""
    fail_salvaged: float
    """Mean outputs a failing ``on_error="fail"`` batch still hands back (``completed``)."""
    collect_delivered: float
    """Mean outputs of ``on_error="collect"`` per list (every good item)."""

    @property
    def guide_theory(self) -> float:
        """``n(1 − p)ⁿ``: the whole list survives only if every item does."""
        return self.items * (1 - self.failure_probability) ** self.items

    @property
    def collect_theory(self) -> float:
        """``n(1 − p)``: every good item is delivered."""
        return self.items * (1 - self.failure_probability)


def run_failures(failure_probability: float, *, items: int = 500, batch_size: int = 50,
                 trials: int = 40, seed: int = 1) -> FailureRun:
    """Lists of ``items`` items where each is bad with ``failure_probability``: how many
    outputs does each variant deliver?"""
    rng = random.Random(RandomStreams(seed).stream(f"bad-{failure_probability}").random())

    def check(item: tuple[int, bool]) -> int:
        if item[1]:
            raise ValueError(f"bad item {item[0]}")
        return item[0]

    guide_stage = GuideSketchBatchStage(GuideSketchFnStage(check), batch_size)
    fail_stage = BatchStage(for_each(Stage(check)), batch_size)
    collect_stage = BatchStage(for_each(Stage(check)), batch_size, on_error="collect")
    guide_total = salvaged_total = collect_total = 0
    for _ in range(trials):
        data = [(i, rng.random() < failure_probability) for i in range(items)]
        with contextlib.suppress(GuideSketchStageError):  # all or nothing
            guide_total += len(guide_stage.execute(data))
        try:
            salvaged_total += len(fail_stage.process(data))
        except StageError as error:
            salvaged_total += len(error.completed)
        result: BatchResult[tuple[int, bool], int] = collect_stage.process(data)
        collect_total += len(result.outputs)
    return FailureRun(failure_probability, items, trials, guide_total / trials,
                      salvaged_total / trials, collect_total / trials)


def failure_table(probabilities: Sequence[float] = (0.0005, 0.002, 0.01), **options: Any) -> str:
    """Outputs delivered per list of 500 items: the guide's BatchStage against ours."""
    rows = []
    for p in probabilities:
        r = run_failures(p, **options)
        rows.append([p, r.guide_theory, r.guide_delivered, r.fail_salvaged,
                     r.collect_theory, r.collect_delivered])
    return format_table(["p(bad item)", "guide theory n(1-p)^n", "guide simulated",
                         "on_error=fail: completed", "collect theory n(1-p)",
                         "collect simulated"], rows)


def describe_error(error: BaseException) -> str:
    """One line for a notebook: the error's type and (truncated) message."""
    return f"{type(error).__name__}: {short_repr(str(error))}"


__all__ = [
    "BATCH_SIZES",
    "ORDER_STAGES",
    "CostRun",
    "FailureRun",
    "GuideSketchBatchStage",
    "GuideSketchFnStage",
    "GuideSketchPipelineError",
    "GuideSketchSequentialPipeline",
    "GuideSketchStageError",
    "JacksonTandem",
    "LineResult",
    "StageFigures",
    "StageSpec",
    "batch_capacity",
    "batching_cost",
    "batching_cost_table",
    "batching_explorer",
    "bottleneck",
    "capacity_table",
    "draw_batching",
    "draw_batching_trade",
    "draw_bottleneck",
    "draw_line",
    "draw_line_explorer",
    "example_line",
    "failure_table",
    "fill_wait",
    "guide_nested_pipeline",
    "jackson_table",
    "jackson_tandem",
    "library_pipeline",
    "line_capacity",
    "line_explorer",
    "low_load_table",
    "mm1_line",
    "nested_error_table",
    "plot_capacity",
    "plot_latency_by_batch",
    "plot_stage_utilisation",
    "plot_time_per_stage",
    "run_failures",
    "run_line",
    "saturated_throughput",
    "sweep_batch_size",
]
