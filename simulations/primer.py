"""The theory primer: queueing and epidemic results, each beside a small simulation.

The course checks its models against a handful of closed forms. This module holds them,
with a simulation for each that a learner can run beside the formula
(``notebooks/00-theory-primer.ipynb``):

* **Poisson arrivals** (:func:`poisson_stream`): requests that arrive independently at
  ``rate`` per second. The gaps between them are exponential (mean ``1 / rate``) and the
  count in a window of ``T`` seconds is Poisson with mean ``rate * T``.
* **Queues** (:func:`mmc`, :func:`simulate_queue`): one or ``c`` servers with exponential
  service times. M/M/1 gives the "hockey stick" of waiting as utilisation nears 1; M/M/c
  gives Erlang's C formula for the probability of waiting, and shows why one shared pool
  of ``c`` servers beats ``c`` separate queues (the bulkhead of section 4.3); with no
  queue at all, Erlang's B formula gives the share of calls a full bulkhead rejects.
  Little's law ``L = λW`` holds for every run, whatever the service time distribution.
* **Epidemics** (:func:`mean_field`, :func:`simulate_epidemic`): push, pull and push-pull
  gossip in synchronous rounds on ``n`` nodes (Demers et al. 1987), the anti-entropy
  spreading that section 1.3 uses. The mean-field recurrences for the fraction ``s`` of
  nodes still uninformed after a round are ``s' = s e^{-(1-s)}`` (push), ``s' = s^2``
  (pull) and ``s' = s^2 e^{-(1-s)}`` (push-pull).

Every formula is tested against known values, and every simulation against its formula
with tolerances measured over seeds (``tests/simulations/test_primer_sim.py``).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullLocator

from patterns._validation import (
    require_finite_non_negative,
    require_finite_positive,
    require_int_at_least,
    require_unit_interval,
)
from simulations.kit.plotting import color, label, subplots
from simulations.kit.queueing import erlang_b, erlang_c
from simulations.kit.rng import RandomStreams
from simulations.kit.tables import format_table
from simulations.kit.widgets import Explorer, choice, float_slider, int_slider
from simulations.kit.workloads import poisson_arrivals

__all__ = [
    "EPIDEMIC_MODES",
    "EpidemicRun",
    "PoissonStream",
    "QueueRun",
    "QueueTheory",
    "draw_epidemics",
    "draw_erlang_b",
    "draw_hockey_stick",
    "draw_mm1_run",
    "draw_poisson",
    "draw_pooling",
    "epidemic_explorer",
    "epidemic_table",
    "erlang_b",
    "erlang_b_explorer",
    "erlang_c",
    "little_table",
    "mean_field",
    "mean_field_rounds",
    "mm1",
    "mm1_explorer",
    "mmc",
    "poisson_explorer",
    "poisson_pmf",
    "poisson_stream",
    "pooling_explorer",
    "pooling_table",
    "push_rounds_estimate",
    "queue_table",
    "separate_queues",
    "simulate_epidemic",
    "simulate_queue",
]

# ============================================================================ Poisson arrivals


def poisson_pmf(k: int, mean: float) -> float:
    """P(N = k) for a Poisson count of mean ``mean``: ``e^{-m} m^k / k!``."""
    require_int_at_least("k", k, 0)
    require_finite_non_negative("mean", mean)
    if mean == 0:
        return 1.0 if k == 0 else 0.0
    return math.exp(-mean + k * math.log(mean) - math.lgamma(k + 1))


def poisson_tail(k: int, mean: float) -> float:
    """P(N >= k) for a Poisson count of mean ``mean``."""
    require_int_at_least("k", k, 0)
    return max(0.0, 1.0 - sum(poisson_pmf(i, mean) for i in range(k)))


@dataclass(frozen=True)
class PoissonStream:
    """Arrival times of a Poisson stream of ``rate`` per second over ``[0, horizon)``."""

    rate: float
    horizon: float
    times: np.ndarray

    @property
    def gaps(self) -> np.ndarray:
        """Seconds between consecutive arrivals."""
        return np.diff(self.times)

    def counts(self, window: float) -> np.ndarray:
        """Arrivals in each of the whole windows of ``window`` seconds."""
        require_finite_positive("window", window)
        windows = int(self.horizon // window)
        if windows == 0:
            raise ValueError(f"window must be <= horizon ({self.horizon}), got {window!r}")
        edges = np.arange(windows + 1) * window
        return np.histogram(self.times, bins=edges)[0]


def poisson_stream(rate: float = 5.0, horizon: float = 1000.0, *, seed: int = 1) -> PoissonStream:
    """A Poisson stream drawn by the course's workload kit (the same arrivals every model uses)."""
    require_finite_positive("rate", rate)
    require_finite_positive("horizon", horizon)
    times = poisson_arrivals(rate, horizon, RandomStreams(seed).numpy("arrivals"))
    return PoissonStream(rate, horizon, times)


def draw_poisson(rate: float = 5.0, window: float = 1.0, *, horizon: float = 1000.0,
                 seed: int = 1) -> Figure:
    """Gaps against the exponential density (left), counts per window against Poisson (right)."""
    stream = poisson_stream(rate, horizon, seed=seed)
    fig, (gaps_ax, counts_ax) = subplots(1, 2, width=9.0, height=3.6)
    gaps = stream.gaps
    top = 5.0 / rate
    density, edges = np.histogram(gaps, bins=40, range=(0, top), density=True)
    gaps_ax.stairs(density, edges, fill=True, color=color("offered"), alpha=0.6,
                   label="simulated gaps")
    t = np.linspace(0, top, 200)
    gaps_ax.plot(t, rate * np.exp(-rate * t), color=color("theory"),
                 label=r"$\lambda e^{-\lambda t}$")
    gaps_ax.legend()
    label(gaps_ax, title=f"gaps between arrivals (mean {gaps.mean():.3f} s)",
          xlabel="gap (s)", ylabel="density (1/s)")
    counts = stream.counts(window)
    mean = rate * window
    ks = np.arange(0, int(mean + 4 * math.sqrt(mean) + 3))
    observed = np.bincount(counts, minlength=len(ks))[: len(ks)] / len(counts)
    counts_ax.stairs(observed, np.append(ks, ks[-1] + 1) - 0.5, fill=True,
                     color=color("offered"), alpha=0.6, label=f"simulated ({len(counts)} windows)")
    counts_ax.plot(ks, [poisson_pmf(int(k), mean) for k in ks], "o", color=color("theory"),
                   markersize=4, label="Poisson pmf")
    counts_ax.legend()
    label(counts_ax, title=f"arrivals per {window:g} s window (mean {counts.mean():.2f})",
          xlabel="arrivals in the window (count)", ylabel="share of windows")
    return fig


def poisson_table(rate: float = 5.0, window: float = 1.0, *, horizon: float = 1000.0,
                  seed: int = 1, burst: int = 10) -> str:
    """The stream's figures beside the formulas: gaps, counts, variance, bursts."""
    stream = poisson_stream(rate, horizon, seed=seed)
    counts = stream.counts(window)
    mean = rate * window
    rows = [
        ["mean gap (s)", 1.0 / rate, float(stream.gaps.mean())],
        ["gaps longer than twice the mean", math.exp(-2.0), float(np.mean(stream.gaps > 2 / rate))],
        ["mean arrivals per window", mean, float(counts.mean())],
        ["variance of arrivals per window", mean, float(counts.var())],
        [f"windows with {burst} or more arrivals", poisson_tail(burst, mean),
         float(np.mean(counts >= burst))],
    ]
    return format_table(["", "formula", f"simulated ({len(counts)} windows)"], rows)


def poisson_explorer() -> Explorer:
    """Sliders: arrival rate and window length."""
    return Explorer(draw_poisson, {
        "rate": float_slider("arrival rate λ (1/s)", 5.0, 0.5, 20.0, 0.5, ".1f"),
        "window": float_slider("window (s)", 1.0, 0.2, 5.0, 0.2, ".1f"),
    })


# ============================================================================ queueing theory


@dataclass(frozen=True, slots=True)
class QueueTheory:
    """Steady state of a queue with Poisson arrivals and exponential service (seconds)."""

    arrival_rate: float
    service_rate: float
    servers: int
    utilisation: float
    """ρ = λ / (c μ): the share of time a server is busy."""
    wait_probability: float
    """Probability that an arrival has to wait (Erlang C; ρ for M/M/1)."""
    mean_in_queue: float
    """Lq: callers waiting, on average over time."""
    mean_wait: float
    """Wq: mean time in the queue (seconds)."""

    @property
    def mean_sojourn(self) -> float:
        """W = Wq + 1/μ: mean time in the system, waiting and served (seconds)."""
        return self.mean_wait + 1.0 / self.service_rate

    @property
    def mean_in_system(self) -> float:
        """L = λ W (Little's law): callers waiting or in service, on average."""
        return self.arrival_rate * self.mean_sojourn


def mmc(arrival_rate: float, service_rate: float, servers: int = 1) -> QueueTheory:
    """M/M/c: ``c`` servers, one shared queue without a bound.

    ``P(wait) = C(c, a)`` (Erlang C with offered load ``a = λ/μ``), ``Wq = C / (cμ - λ)``,
    ``Lq = λ Wq``. Needs ``λ < cμ``: beyond it the queue grows without end.
    """
    require_finite_non_negative("arrival_rate", arrival_rate)
    require_finite_positive("service_rate", service_rate)
    require_int_at_least("servers", servers, 1)
    capacity = servers * service_rate
    if not arrival_rate < capacity:
        raise ValueError(f"arrival_rate must be < servers * service_rate ({capacity:g}) for a "
                         f"stable queue, got {arrival_rate!r}")
    waiting = erlang_c(servers, arrival_rate / service_rate) if arrival_rate else 0.0
    wq = waiting / (capacity - arrival_rate)
    return QueueTheory(arrival_rate, service_rate, servers, arrival_rate / capacity,
                       waiting, arrival_rate * wq, wq)


def mm1(arrival_rate: float, service_rate: float) -> QueueTheory:
    """M/M/1: ``ρ = λ/μ``, ``L = ρ/(1-ρ)``, ``W = 1/(μ-λ)``, ``Wq = ρ/(μ-λ)``."""
    return mmc(arrival_rate, service_rate, 1)


def separate_queues(arrival_rate: float, service_rate: float, servers: int) -> QueueTheory:
    """``c`` separate M/M/1 queues, each fed ``λ/c`` at random: the same servers, no pooling."""
    require_int_at_least("servers", servers, 1)
    require_finite_non_negative("arrival_rate", arrival_rate)
    one = mm1(arrival_rate / servers, service_rate)
    return QueueTheory(arrival_rate, service_rate, servers, one.utilisation,
                       one.wait_probability, servers * one.mean_in_queue, one.mean_wait)


# ============================================================================ queue simulation

LAYOUTS = ("shared", "separate")
SERVICES = ("exponential", "constant")


@dataclass(frozen=True)
class QueueRun:
    """One SimPy run of a queue: per caller, and the number present over time (seconds)."""

    arrival_rate: float
    service_rate: float
    servers: int
    layout: str
    horizon: float
    warmup: float
    arrivals: np.ndarray
    """Arrival time of each caller."""
    waits: np.ndarray
    """Time each caller waited for a server (NaN if rejected)."""
    sojourns: np.ndarray
    """Time each caller spent in the system, waiting and served (NaN if rejected)."""
    rejected: np.ndarray
    """Whether each caller was turned away (only with a bounded queue)."""
    step_times: np.ndarray
    in_system: np.ndarray
    """Callers present (waiting or served) from ``step_times[i]`` on."""

    def _measured(self) -> np.ndarray:
        return (self.arrivals >= self.warmup) & (self.arrivals < self.horizon)

    @property
    def measured(self) -> int:
        """Callers that arrived after the warm-up (the ones the figures below describe)."""
        return int(self._measured().sum())

    @property
    def throughput(self) -> float:
        """λ measured: arrivals per second after the warm-up."""
        return self.measured / (self.horizon - self.warmup)

    @property
    def mean_wait(self) -> float:
        """Wq measured: mean wait in queue of the admitted callers after the warm-up."""
        return float(np.nanmean(self.waits[self._measured() & ~self.rejected]))

    @property
    def mean_sojourn(self) -> float:
        """W measured: mean time in the system of the admitted callers after the warm-up."""
        return float(np.nanmean(self.sojourns[self._measured() & ~self.rejected]))

    @property
    def wait_probability(self) -> float:
        """Share of admitted callers that waited at all."""
        admitted = self._measured() & ~self.rejected
        return float(np.mean(self.waits[admitted] > 1e-12))

    @property
    def blocking(self) -> float:
        """Share of callers turned away."""
        return float(np.mean(self.rejected[self._measured()]))

    def time_average_in_system(self, start: float | None = None,
                               end: float | None = None) -> float:
        """L measured: callers present, averaged over time from ``start`` to ``end``."""
        start = self.warmup if start is None else start
        end = self.horizon if end is None else end
        times = np.clip(np.append(self.step_times, end), start, end)
        return float(np.dot(self.in_system, np.diff(times)) / (end - start))

    @property
    def utilisation(self) -> float:
        """Share of the servers' time spent serving, after the warm-up (λ_served / cμ)."""
        served = self.throughput * (1.0 - self.blocking)
        return served / (self.servers * self.service_rate)


def simulate_queue(
    arrival_rate: float,
    service_rate: float,
    servers: int = 1,
    *,
    horizon: float = 2000.0,
    warmup: float | None = None,
    layout: str = "shared",
    service: str = "exponential",
    queue_places: int | None = None,
    seed: int = 1,
) -> QueueRun:
    """Run a queue in SimPy: Poisson arrivals, ``servers`` servers, one queue or one each.

    ``layout="shared"`` puts all servers behind one queue (M/M/c); ``"separate"`` gives each
    server its own queue and sends each caller to one of them at random (``c`` M/M/1 queues
    of ``λ/c``). ``service`` is ``"exponential"`` (mean ``1/μ``) or ``"constant"``
    (always ``1/μ``). ``queue_places`` bounds each queue: a caller who finds every server of
    its queue busy and the places taken is rejected (0 places: Erlang's loss system, a
    bulkhead that never queues). Arrivals stop at ``horizon``; the run goes on until
    every admitted caller is served. Figures skip callers arriving before ``warmup``
    (default: a tenth of the horizon), while the queue fills from empty.
    """
    require_finite_positive("arrival_rate", arrival_rate)
    require_finite_positive("service_rate", service_rate)
    require_int_at_least("servers", servers, 1)
    require_finite_positive("horizon", horizon)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if service not in SERVICES:
        raise ValueError(f"service must be one of {SERVICES}, got {service!r}")
    if queue_places is not None:
        require_int_at_least("queue_places", queue_places, 0)
    warmup = horizon / 10 if warmup is None else warmup
    require_finite_non_negative("warmup", warmup)
    if not warmup < horizon:
        raise ValueError(f"warmup must be < horizon ({horizon!r}), got {warmup!r}")

    streams = RandomStreams(seed)
    arrivals = poisson_arrivals(arrival_rate, horizon, streams.numpy("arrivals"))
    count = len(arrivals)
    if service == "exponential":
        services = streams.numpy("service").exponential(1.0 / service_rate, size=count)
    else:
        services = np.full(count, 1.0 / service_rate)
    shared = layout == "shared"
    routes = (np.zeros(count, dtype=int) if shared
              else streams.numpy("routing").integers(0, servers, size=count))

    env = simpy.Environment()
    desks = ([simpy.Resource(env, capacity=servers)] if shared
             else [simpy.Resource(env, capacity=1) for _ in range(servers)])
    waits = np.full(count, np.nan)
    sojourns = np.full(count, np.nan)
    rejected = np.zeros(count, dtype=bool)
    steps: list[tuple[float, int]] = []

    def caller(i: int) -> Generator[Any, Any, None]:
        desk = desks[routes[i]]
        if (queue_places is not None and desk.count >= desk.capacity
                and len(desk.queue) >= queue_places):
            rejected[i] = True
            return
        steps.append((env.now, 1))
        with desk.request() as request:
            yield request
            waits[i] = env.now - arrivals[i]
            yield env.timeout(services[i])
        sojourns[i] = env.now - arrivals[i]
        steps.append((env.now, -1))

    def source() -> Generator[Any, Any, None]:
        for i, when in enumerate(arrivals):
            yield env.timeout(when - env.now)
            env.process(caller(i))

    env.process(source())
    env.run()
    step_times, deltas = (np.array(part) for part in zip(*steps, strict=True)) if steps else (
        np.zeros(1), np.zeros(1, dtype=int))
    order = np.argsort(step_times, kind="stable")
    return QueueRun(arrival_rate, service_rate, servers, layout, horizon, warmup, arrivals,
                    waits, sojourns, rejected, step_times[order], np.cumsum(deltas[order]))


# ============================================================================ M/M/1 and Little

SERVICE_RATE = 10.0  # the primer's server: 100 ms per call on average


def queue_table(utilisations: Sequence[float] = (0.5, 0.8, 0.9), *,
                service_rate: float = SERVICE_RATE, horizon: float = 2000.0,
                seed: int = 1) -> str:
    """M/M/1 at a few utilisations: the formulas beside one SimPy run each (times in ms)."""
    rows = []
    for rho in utilisations:
        theory = mm1(rho * service_rate, service_rate)
        run = simulate_queue(rho * service_rate, service_rate, horizon=horizon, seed=seed)
        rows.append([rho, theory.mean_in_system, run.time_average_in_system(),
                     *(round(1000 * value, 1) for value in (
                         theory.mean_sojourn, run.mean_sojourn, theory.mean_wait,
                         run.mean_wait))])
    return format_table(["ρ", "L formula", "L simulated", "W formula (ms)", "W simulated (ms)",
                         "Wq formula (ms)", "Wq simulated (ms)"], rows)


def hockey_stick_points(utilisations: Sequence[float], *, service_rate: float = SERVICE_RATE,
                        horizon: float = 400.0, seeds: Sequence[int] = range(1, 11)
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over seeds of the simulated W (seconds) at each utilisation."""
    means, errors = [], []
    for rho in utilisations:
        values = [simulate_queue(rho * service_rate, service_rate, horizon=horizon,
                                 seed=seed).mean_sojourn for seed in seeds]
        means.append(np.mean(values))
        errors.append(np.std(values, ddof=1) / math.sqrt(len(values)))
    return np.array(means), np.array(errors)


def _hockey_curve(ax: Axes, service_rate: float, top: float = 0.0) -> None:
    rho = np.linspace(0.0, 0.985, 200)
    ax.plot(rho, 1000 / (service_rate * (1 - rho)), color=color("theory"),
            label=r"formula $W = 1/(\mu - \lambda)$")
    ax.set_ylim(0, max(1000 * 12 / service_rate, 1.15 * top))
    ax.set_xlim(0, 1)
    label(ax, title="the hockey stick", xlabel="utilisation ρ = λ/μ",
          ylabel="mean time in system W (ms)")


def draw_hockey_stick(utilisations: Sequence[float] = (0.5, 0.7, 0.8, 0.9),
                      *, service_rate: float = SERVICE_RATE, horizon: float = 400.0,
                      seeds: Sequence[int] = range(1, 11)) -> Figure:
    """W against ρ: the formula, and SimPy means over seeds with their standard errors."""
    means, errors = hockey_stick_points(utilisations, service_rate=service_rate,
                                        horizon=horizon, seeds=seeds)
    fig, ax = subplots(width=7.5, height=4.0)
    _hockey_curve(ax, service_rate)
    ax.errorbar(utilisations, 1000 * means, yerr=2000 * errors, fmt="o",
                color=color("full"), capsize=3,
                label=f"SimPy, mean of {len(seeds)} seeds (±2 standard errors)")
    ax.legend(loc="upper left")
    return fig


def draw_mm1_run(utilisation: float = 0.8, seed: int = 1, *,
                 service_rate: float = SERVICE_RATE, horizon: float = 300.0) -> Figure:
    """One M/M/1 run: callers present over time (left), its W on the hockey stick (right)."""
    run = simulate_queue(utilisation * service_rate, service_rate, horizon=horizon,
                         warmup=horizon / 10, seed=seed)
    theory = mm1(utilisation * service_rate, service_rate)
    fig, (time_ax, curve_ax) = subplots(1, 2, width=9.5, height=3.6)
    time_ax.step(run.step_times, run.in_system, where="post", color=color("equal"),
                 linewidth=0.8)
    time_ax.axhline(theory.mean_in_system, color=color("theory"), linestyle="--",
                    label=f"L formula {theory.mean_in_system:.1f}")
    time_ax.axhline(run.time_average_in_system(), color=color("full"),
                    label=f"L simulated {run.time_average_in_system():.1f}")
    time_ax.set_xlim(0, horizon)
    time_ax.set_ylim(0, max(10, float(run.in_system.max()) * 1.25))
    time_ax.legend(loc="upper left", ncols=2)
    label(time_ax, title=f"callers present at ρ = {utilisation:.2f}", xlabel="time (s)",
          ylabel="callers in the system")
    _hockey_curve(curve_ax, service_rate, 1000 * run.mean_sojourn)
    curve_ax.plot([utilisation], [1000 * run.mean_sojourn], "o", color=color("full"),
                  label=f"this run: {1000 * run.mean_sojourn:.0f} ms")
    curve_ax.legend(loc="upper left")
    return fig


def mm1_explorer() -> Explorer:
    """Sliders: utilisation and seed of one M/M/1 run."""
    return Explorer(draw_mm1_run, {
        "utilisation": float_slider("utilisation ρ", 0.8, 0.1, 0.95, 0.05),
        "seed": int_slider("seed", 1, 1, 20),
    })


LITTLE_CASES: tuple[tuple[str, float, float, int, str, int | None], ...] = (
    # name, λ, μ, c, service, queue places
    ("M/M/1, ρ = 0.8", 8.0, 10.0, 1, "exponential", None),
    ("M/D/1 (constant service), ρ = 0.8", 8.0, 10.0, 1, "constant", None),
    ("M/M/4, ρ = 0.9", 36.0, 10.0, 4, "exponential", None),
    ("bulkhead: 4 permits, 2 queue places", 36.0, 10.0, 4, "exponential", 2),
)


def little_table(*, horizon: float = 1000.0, seed: int = 1) -> str:
    """L measured over time against λ W measured per caller, for several queues."""
    rows = []
    for name, rate, mu, servers, service, places in LITTLE_CASES:
        run = simulate_queue(rate, mu, servers, horizon=horizon, service=service,
                             queue_places=places, seed=seed)
        admitted = run.throughput * (1.0 - run.blocking)
        rows.append([name, run.time_average_in_system(), admitted, 1000 * run.mean_sojourn,
                     admitted * run.mean_sojourn])
    return format_table(["queue", "L (time average)", "λ admitted (1/s)", "W (ms)", "λ × W"],
                        rows)


# ============================================================================ M/M/c: pooling


def pooling_table(servers: int = 4, utilisation: float = 0.8, *,
                  service_rate: float = 1.0, horizon: float = 5000.0, seed: int = 1) -> str:
    """One shared queue against ``servers`` separate ones: formulas and SimPy."""
    rate = utilisation * servers * service_rate
    rows = []
    for layout, theory in (("one shared queue (M/M/c)", mmc(rate, service_rate, servers)),
                           ("separate queues (c × M/M/1)",
                            separate_queues(rate, service_rate, servers))):
        run = simulate_queue(rate, service_rate, servers, horizon=horizon,
                             layout="shared" if layout.startswith("one") else "separate",
                             seed=seed)
        rows.append([layout, theory.wait_probability, run.wait_probability, theory.mean_wait,
                     run.mean_wait])
    ratio = separate_queues(rate, service_rate, servers).mean_wait / mmc(
        rate, service_rate, servers).mean_wait
    table = format_table(["layout", "P(wait) formula", "P(wait) simulated", "Wq formula (s)",
                          "Wq simulated (s)"], rows)
    return f"{table}\nseparate queues wait {ratio:.1f} times longer (formulas)"


def draw_pooling(servers: int = 4, utilisation: float = 0.8, *,
                 service_rate: float = 1.0, callers: int = 2000, seed: int = 1) -> Figure:
    """Mean wait against utilisation, pooled and separate (formulas), and one run of each.

    Each run lasts long enough for about ``callers`` arrivals.
    """
    fig, (wait_ax, prob_ax) = subplots(1, 2, width=9.5, height=3.8)
    rho = np.linspace(0.05, 0.95, 60)
    pooled = [mmc(r * servers * service_rate, service_rate, servers) for r in rho]
    apart = [separate_queues(r * servers * service_rate, service_rate, servers) for r in rho]
    names = ("one shared queue", "separate queues")
    colours = (color("full"), color("none"))
    for curve, name, colour in zip((pooled, apart), names, colours, strict=True):
        wait_ax.plot(rho, [t.mean_wait for t in curve], color=colour, label=f"{name} (formula)")
        prob_ax.plot(rho, [t.wait_probability for t in curve], color=colour, label=name)
    rate = utilisation * servers * service_rate
    for layout, colour in zip(LAYOUTS, colours, strict=True):
        run = simulate_queue(rate, service_rate, servers, horizon=callers / rate, layout=layout,
                             seed=seed)
        wait_ax.plot([utilisation], [run.mean_wait], "o", color=colour)
        prob_ax.plot([utilisation], [run.wait_probability], "o", color=colour)
    wait_ax.plot([], [], "o", color="grey", label="SimPy run")
    wait_ax.set_ylim(0, 10 / service_rate)
    wait_ax.legend(loc="upper left")
    label(wait_ax, title=f"{servers} servers: mean wait", xlabel="utilisation ρ = λ/(cμ)",
          ylabel="mean wait in queue Wq (s)")
    prob_ax.set_ylim(0, 1)
    prob_ax.legend(loc="upper left")
    label(prob_ax, title="probability of waiting", xlabel="utilisation ρ = λ/(cμ)",
          ylabel="P(wait)")
    return fig


def pooling_explorer() -> Explorer:
    """Sliders: number of servers and utilisation."""
    return Explorer(draw_pooling, {
        "servers": int_slider("servers c", 4, 1, 16),
        "utilisation": float_slider("utilisation ρ", 0.8, 0.1, 0.95, 0.05),
    })


# ============================================================================ Erlang B


def erlang_b_table(servers: int = 4, offered_load: float = 3.0, *,
                   horizon: float = 5000.0, seed: int = 1) -> str:
    """Blocking of a bulkhead with ``servers`` permits and no queue: formula and SimPy."""
    run = simulate_queue(offered_load, 1.0, servers, horizon=horizon, queue_places=0,
                         seed=seed)
    rows = [[servers, offered_load, erlang_b(servers, offered_load), run.blocking,
             run.utilisation]]
    return format_table(["permits c", "offered load a (Erlang)", "blocking formula",
                         "blocking simulated", "permits busy (share)"], rows)


def draw_erlang_b(servers: int = 4, offered_load: float = 3.0, *, callers: int = 3000,
                  seed: int = 1) -> Figure:
    """Blocking against offered load for a few permit counts, and one SimPy run.

    The run lasts long enough for about ``callers`` arrivals.
    """
    fig, ax = subplots(width=7.5, height=4.0)
    loads = np.linspace(0.0, 20.0, 201)
    for c in sorted({1, 2, 4, 8, 16} | {servers}):
        style = "-" if c == servers else ":"
        ax.plot(loads, [erlang_b(c, a) for a in loads], style,
                linewidth=2.0 if c == servers else 1.0, label=f"c = {c}")
    run = simulate_queue(offered_load, 1.0, servers, horizon=callers / offered_load,
                         queue_places=0, seed=seed)
    ax.plot([offered_load], [run.blocking], "o", color=color("theory"),
            label=f"SimPy: {run.blocking:.1%} rejected")
    ax.set_ylim(0, 1)
    ax.set_xlim(0, 20)
    ax.legend(loc="upper left", ncols=2)
    label(ax, title=f"Erlang B: {servers} permits, no queue, a = {offered_load:g}",
          xlabel="offered load a = λ/μ (Erlang)", ylabel="share of calls rejected")
    return fig


def erlang_b_explorer() -> Explorer:
    """Sliders: permits and offered load."""
    return Explorer(draw_erlang_b, {
        "servers": int_slider("permits c", 4, 1, 20),
        "offered_load": float_slider("offered load a (Erlang)", 3.0, 0.5, 20.0, 0.5, ".1f"),
    })


# ============================================================================ epidemics

EPIDEMIC_MODES = ("push", "pull", "push-pull")
_MODE_COLOURS = {"push": "#1f77b4", "pull": "#ff7f0e", "push-pull": "#2ca02c"}


def _check_mode(mode: str) -> None:
    if mode not in EPIDEMIC_MODES:
        raise ValueError(f"mode must be one of {EPIDEMIC_MODES}, got {mode!r}")


def mean_field(mode: str, n: int, rounds: int = 40, *, loss: float = 0.0) -> np.ndarray:
    """Fraction of nodes still uninformed after each round, by Demers et al.'s mean field.

    Starting from one informed node (``s = 1 - 1/n``), with a share ``loss`` of the
    exchanges lost: push ``s' = s e^{-(1-loss)(1-s)}``, pull ``s' = s (1 - (1-loss)(1-s))``
    (``s^2`` without loss), push-pull the product of the two. Entry ``i`` is ``s`` after
    ``i`` rounds.
    """
    _check_mode(mode)
    require_int_at_least("n", n, 2)
    require_int_at_least("rounds", rounds, 0)
    require_unit_interval("loss", loss)
    keep = 1.0 - loss
    s = 1.0 - 1.0 / n
    values = [s]
    for _ in range(rounds):
        stay = 1.0
        if mode != "pull":
            stay *= math.exp(-keep * (1.0 - s))
        if mode != "push":
            stay *= 1.0 - keep * (1.0 - s)
        s *= stay
        values.append(s)
    return np.array(values)


def mean_field_rounds(mode: str, n: int, *, loss: float = 0.0) -> int:
    """Rounds until the mean field expects fewer than half a node uninformed (``s n < 1/2``)."""
    curve = mean_field(mode, n, 1000, loss=loss)
    below = np.nonzero(curve * n < 0.5)[0]
    if not len(below):
        raise ValueError(f"the epidemic does not finish in 1000 rounds (loss={loss!r})")
    return int(below[0])


def push_rounds_estimate(n: int) -> float:
    """Pittel's (1987) rounds for push to reach all ``n`` nodes: ``log2 n + ln n``."""
    require_int_at_least("n", n, 2)
    return math.log2(n) + math.log(n)


@dataclass(frozen=True)
class EpidemicRun:
    """One simulated epidemic: fraction uninformed after each round."""

    mode: str
    n: int
    loss: float
    uninformed: np.ndarray

    @property
    def rounds(self) -> int:
        """Rounds until every node was informed (-1 if the run stopped before)."""
        done = np.nonzero(self.uninformed == 0)[0]
        return int(done[0]) if len(done) else -1


def simulate_epidemic(mode: str, n: int = 1000, *, loss: float = 0.0, seed: int = 1,
                      max_rounds: int = 200) -> EpidemicRun:
    """Push, pull or push-pull on the complete graph of ``n`` nodes, in synchronous rounds.

    Node 0 knows the update. Each round every informed node pushes it to one node picked
    at random (push), and every uninformed node asks one node picked at random and learns
    it if that node knew it at the start of the round (pull). Each exchange is lost with
    probability ``loss``. Nodes informed in a round start spreading in the next.
    """
    _check_mode(mode)
    require_int_at_least("n", n, 2)
    require_unit_interval("loss", loss)
    require_int_at_least("max_rounds", max_rounds, 1)
    rng = RandomStreams(seed).numpy(f"epidemic-{mode}")
    informed = np.zeros(n, dtype=bool)
    informed[0] = True
    fractions = [1.0 - 1.0 / n]
    nodes = np.arange(n)
    while len(fractions) <= max_rounds and not informed.all():
        new = informed.copy()
        if mode != "pull":
            senders = nodes[informed]
            targets = _other(senders, n, rng)
            delivered = rng.random(len(senders)) >= loss
            new[targets[delivered]] = True
        if mode != "push":
            askers = nodes[~informed]
            asked = _other(askers, n, rng)
            answered = informed[asked] & (rng.random(len(askers)) >= loss)
            new[askers[answered]] = True
        informed = new
        fractions.append(1.0 - informed.mean())
    return EpidemicRun(mode, n, loss, np.array(fractions))


def _other(nodes: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """For each node, another node picked uniformly among the ``n - 1`` others."""
    picks = rng.integers(0, n - 1, size=len(nodes))
    return picks + (picks >= nodes)


def epidemic_table(n: int = 1000, *, loss: float = 0.0, seeds: Sequence[int] = range(1, 21)
                   ) -> str:
    """Rounds to inform all ``n`` nodes: simulated (mean, spread over seeds), mean field."""
    rows = []
    for mode in EPIDEMIC_MODES:
        rounds = [simulate_epidemic(mode, n, loss=loss, seed=s).rounds for s in seeds]
        rows.append([mode, float(np.mean(rounds)), min(rounds), max(rounds),
                     mean_field_rounds(mode, n, loss=loss)])
    return format_table([f"n = {n:,}", f"rounds, mean of {len(seeds)} runs", "fewest", "most",
                         "mean field"], rows)


def draw_epidemics(n: int = 1000, loss: float = 0.0, *, seeds: Sequence[int] = (1, 2, 3, 4, 5)
                   ) -> Figure:
    """Fraction uninformed per round (log scale): runs (thin) and the mean field (dashed)."""
    fig, ax = subplots(width=9.0, height=4.2)
    floor = 0.3 / n  # where a run that informed everyone ends (0 has no place on a log scale)
    longest = 0
    for mode in EPIDEMIC_MODES:
        colour = _MODE_COLOURS[mode]
        for seed in seeds:
            run = simulate_epidemic(mode, n, loss=loss, seed=seed)
            longest = max(longest, len(run.uninformed) - 1)
            ax.plot(np.maximum(run.uninformed, floor), color=colour, linewidth=0.8, alpha=0.6)
        rounds = mean_field_rounds(mode, n, loss=loss)
        curve = mean_field(mode, n, rounds, loss=loss)
        ax.plot(curve, "--", color=colour, linewidth=2.0, label=f"{mode}: {rounds} rounds")
        longest = max(longest, rounds)
    for level, text in ((1 / n, "one node left"), (floor, "everyone informed")):
        ax.axhline(level, color="grey", linewidth=0.8)
        ax.text(0.2, level * 1.25, text, fontsize=9, color="grey")
    ax.set_yscale("log")
    ax.yaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0.6 * floor, 1.5)
    ax.set_xlim(0, longest)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="dashed: mean field\nthin: runs")
    label(ax, title=f"gossip on {n:,} nodes: {len(seeds)} runs per mode"
          + (f", {loss:.0%} of exchanges lost" if loss else ""),
          xlabel="round", ylabel="fraction of nodes uninformed")
    return fig


def epidemic_explorer() -> Explorer:
    """Sliders: number of nodes and share of exchanges lost."""
    return Explorer(lambda nodes, loss: draw_epidemics(int(nodes), loss, seeds=(1, 2, 3)), {
        "nodes": choice("nodes n", ["100", "1000", "10000"], "1000"),
        "loss": float_slider("exchanges lost", 0.0, 0.0, 0.8, 0.1, ".1f"),
    })
