"""The circuit breaker in simulated time (guide section 4.2, 断路器模式).

Clients (Poisson arrivals) call a dependency that degrades, fails and recovers, through
a :class:`patterns.resilience.breaker.CircuitBreaker` driven by its SimPy driver, through
the guide's sketch (:class:`GuideSketchBreaker`, transcribed with its flaws), or through
nothing at all. Every request, every dependency call and every state change is recorded,
and the plots are drawn from the record.
"""

from __future__ import annotations

import inspect
import itertools
import math
import random
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import simpy
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from patterns.resilience.backoff import Backoff
from patterns.resilience.breaker import CircuitBreaker, CircuitOpenError, CircuitState
from patterns.resilience.breaker import StateTransition as BreakerTransition
from simulations.kit.clock import SimClock
from simulations.kit.faults import FailureSchedule, Outage
from simulations.kit.plotting import color, label, subplots
from simulations.kit.rng import RandomStreams
from simulations.kit.tables import format_table
from simulations.kit.widgets import Explorer, float_slider, int_slider
from simulations.kit.workloads import poisson_arrivals, start_at

STATE_COLOURS = {"closed": "#2ca02c", "open": "#d62728", "half_open": "#ff7f0e"}


class DependencyError(ConnectionError):
    """The dependency failed (or timed out)."""


class GuardedCall(Protocol):
    """What the model needs of a breaker: its SimPy driver."""

    def simpy_call(
        self, env: Any, attempt_fn: Callable[[], Generator[Any, Any, Any]]
    ) -> Generator[Any, Any, Any]: ...


# ============================================================================ the guide


class GuideSketchBreaker:
    """The guide's ``CircuitBreaker``, transcribed with its flaws (for the pitfalls).

    * ``on_failure`` in closed counts *consecutive* failures; ``on_success`` resets them.
    * Half-open admits while ``successes + failures < half_open_requests``: only finished
      calls count, so concurrent callers all get through.
    * ``on_failure`` in open moves ``last_failure``: late failures extend the open time.
    """

    def __init__(self, failure_threshold: int, reset_timeout: float, half_open_requests: int,
                 clock: SimClock) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.half_open_requests = half_open_requests
        self.clock = clock
        self.state = "closed"
        self.failures = 0
        self.successes = 0
        self.last_failure = clock.now()
        self.transitions: list[tuple[float, str]] = [(clock.now(), "closed")]

    def _store(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.transitions.append((self.clock.now(), state))

    def allow_request(self) -> bool:
        if self.state == "closed":
            return True
        if self.state == "open":
            if self.clock.now() - self.last_failure >= self.reset_timeout:
                self._store("half_open")
                self.successes = self.failures = 0
                return True
            return False
        return self.successes + self.failures < self.half_open_requests

    def on_success(self) -> None:
        if self.state == "closed":
            self.failures = 0
        elif self.state == "half_open":
            self.successes += 1
            if self.successes >= self.half_open_requests:
                self._store("closed")
                self.successes = self.failures = 0

    def on_failure(self) -> None:
        if self.state == "closed":
            self.failures += 1
            self.last_failure = self.clock.now()
            if self.failures >= self.failure_threshold:
                self._store("open")
        elif self.state == "half_open":
            self._store("open")
            self.last_failure = self.clock.now()
            self.successes = self.failures = 0
        else:
            self.last_failure = self.clock.now()

    def simpy_call(
        self, env: Any, attempt_fn: Callable[[], Generator[Any, Any, Any]]
    ) -> Generator[Any, Any, Any]:
        """The guide's ``with_circuit_breaker``, in simulated time."""
        if not self.allow_request():
            raise CircuitOpenError("guide", CircuitState(self.state), math.nan)
        try:
            result = yield from attempt_fn()
        except DependencyError:
            self.on_failure()
            raise
        self.on_success()
        return result

    def current_state(self) -> str:
        return self.state


class NoBreaker:
    """Every call goes straight to the dependency."""

    def simpy_call(
        self, env: Any, attempt_fn: Callable[[], Generator[Any, Any, Any]]
    ) -> Generator[Any, Any, Any]:
        return (yield from attempt_fn())


# ============================================================================ the model


@dataclass(frozen=True)
class BreakerSettings:
    """The breaker's knobs as the notebook shows them.

    ``wait_in_open`` is seconds, or a :class:`~patterns.resilience.backoff.Backoff` whose
    successive delays are the waits of successive trips (growing waits), as
    :class:`~patterns.resilience.breaker.CircuitBreaker` takes it.
    """

    failure_rate_threshold: float = 0.5
    window_size: int = 20
    minimum_calls: int = 10
    wait_in_open: float | Backoff = 5.0
    half_open_calls: int = 3

    def build(self, clock: SimClock, rng: random.Random | None = None) -> CircuitBreaker:
        return CircuitBreaker(
            "dependency", clock=clock, failure_rate_threshold=self.failure_rate_threshold,
            window_size=self.window_size, minimum_calls=self.minimum_calls,
            wait_in_open=self.wait_in_open, half_open_calls=self.half_open_calls,
            record_exceptions=DependencyError, rng=rng)


def default_failure() -> FailureSchedule:
    """Healthy (2 % errors), degraded from 15 s (50 %), down from 25 s, back at 40 s."""
    return FailureSchedule(0.02, [Outage(15.0, 25.0, 0.5), Outage(25.0, 40.0, 1.0)])


@dataclass(frozen=True)
class BreakerRun:
    """What one run produced. Times in seconds; outcomes 'ok', 'failed', 'rejected'."""

    label: str
    horizon: float
    failure: FailureSchedule
    request_times: np.ndarray
    outcomes: np.ndarray
    latencies: np.ndarray
    dependency_calls: np.ndarray
    states: list[tuple[float, str]] = field(default_factory=list)
    """``(time, state)`` at every change, starting with ``(0, 'closed')``."""
    peak_trials_in_flight: int = 0
    """Most calls admitted in half-open that were running at the same time."""

    def count(self, outcome: str, start: float = 0.0, end: float = math.inf) -> int:
        window = (self.request_times >= start) & (self.request_times < end)
        return int(np.count_nonzero(window & (self.outcomes == outcome)))

    def dependency_calls_between(self, start: float, end: float) -> int:
        calls = self.dependency_calls
        return int(np.count_nonzero((calls >= start) & (calls < end)))

    def open_periods(self) -> list[tuple[float, float]]:
        """``(start, length)`` of every period in the open state."""
        periods = []
        for (when, state), nxt in zip(self.states, [*self.states[1:], (math.inf, "")],
                                      strict=True):
            end = min(nxt[0], self.horizon)
            if state == "open" and when < end:
                periods.append((when, end - when))
        return periods

    def time_open(self) -> float:
        """Share of the run spent open."""
        return sum(length for _, length in self.open_periods()) / self.horizon


def run_breaker(
    kind: str = "window",
    *,
    settings: BreakerSettings = BreakerSettings(),
    failure: FailureSchedule | None = None,
    rate: float = 20.0,
    horizon: float = 60.0,
    latency_ok: float = 0.05,
    latency_failed: float = 0.5,
    guide_threshold: int = 5,
    seed: int = 1,
) -> BreakerRun:
    """Clients call a dependency through a breaker of ``kind``: 'window', 'guide', 'none'.

    The dependency answers in ``latency_ok`` seconds, or fails after ``latency_failed``
    seconds (failures are timeouts, slow) with the probability ``failure`` gives.
    """
    if kind not in ("window", "guide", "none"):
        raise ValueError(f"kind must be 'window', 'guide' or 'none', got {kind!r}")
    failure = failure if failure is not None else default_failure()
    env = simpy.Environment()
    clock = SimClock(env)
    streams = RandomStreams(seed)
    draws = streams.stream("failures")
    states: list[tuple[float, str]] = [(0.0, "closed")]
    breaker: GuardedCall
    state_of: Callable[[], str]
    if kind == "window":
        real = settings.build(clock, streams.stream("breaker"))
        real.listeners.add(lambda e: states.append((e.time, e.to_state.value))
                           if isinstance(e, BreakerTransition) else None)
        breaker, state_of = real, lambda: real._state.value
    elif kind == "guide":
        if isinstance(settings.wait_in_open, Backoff):
            raise ValueError("the guide's breaker waits a fixed time: kind 'guide' needs a "
                             f"number for wait_in_open, got {settings.wait_in_open!r}")
        guide = GuideSketchBreaker(guide_threshold, settings.wait_in_open,
                                   settings.half_open_calls, clock)
        breaker, state_of = guide, guide.current_state
    else:
        breaker, state_of = NoBreaker(), lambda: "closed"

    request_times: list[float] = []
    outcomes: list[str] = []
    latencies: list[float] = []
    dependency_calls: list[float] = []
    trials = {"now": 0, "peak": 0}

    def dependency() -> Generator[Any, Any, str]:
        dependency_calls.append(env.now)
        trial = state_of() == "half_open"
        if trial:
            trials["now"] += 1
            trials["peak"] = max(trials["peak"], trials["now"])
        try:
            fails = failure.fails(env.now, draws)
            yield env.timeout(latency_failed if fails else latency_ok)
            if fails:
                raise DependencyError("timed out")
            return "ok"
        finally:
            if trial:
                trials["now"] -= 1

    def request(_: int) -> Generator[Any, Any, None]:
        started = env.now
        try:
            yield from breaker.simpy_call(env, dependency)
            outcome = "ok"
        except DependencyError:
            outcome = "failed"
        except CircuitOpenError:
            outcome = "rejected"
        request_times.append(started)
        outcomes.append(outcome)
        latencies.append(env.now - started)

    start_at(env, poisson_arrivals(rate, horizon, streams.numpy("arrivals")), request)
    env.run()
    if kind == "guide":
        states = list(guide.transitions)
    order = np.argsort(request_times, kind="stable")
    return BreakerRun(
        label=kind, horizon=horizon, failure=failure,
        request_times=np.asarray(request_times)[order],
        outcomes=np.asarray(outcomes)[order],
        latencies=np.asarray(latencies)[order],
        dependency_calls=np.asarray(dependency_calls),
        states=states, peak_trials_in_flight=trials["peak"])


def describe_scenario() -> str:
    """The default scenario of :func:`run_breaker`, read from its defaults, as text."""
    defaults = {name: parameter.default
                for name, parameter in inspect.signature(run_breaker).parameters.items()}
    settings, failure = defaults["settings"], default_failure()
    degraded, down = failure.outages
    return (f"{defaults['rate']:g} requests/s for {defaults['horizon']:g} s; healthy: answers in "
            f"{defaults['latency_ok'] * 1000:g} ms, fails {failure.baseline:.0%}; "
            f"{degraded.start:g}-{degraded.end:g} s: fails {degraded.probability:.0%}; "
            f"{down.start:g}-{down.end:g} s: down; a failure is a timeout after "
            f"{defaults['latency_failed'] * 1000:g} ms\n"
            f"breaker: open at {settings.failure_rate_threshold:.0%} failures of the last "
            f"{settings.window_size} calls (once {settings.minimum_calls} are in), wait "
            f"{settings.wait_in_open:g} s, then {settings.half_open_calls} trial calls")


# ============================================================================ plots


def plot_states(run: BreakerRun, ax: Axes) -> None:
    """The breaker's state as coloured bands, under the dependency's failure probability."""
    bounds = [*run.states, (run.horizon, "")]
    for (start, state), (end, _) in itertools.pairwise(bounds):
        if state in ("open", "half_open"):
            ax.axvspan(start, end, color=STATE_COLOURS[state], alpha=0.25, linewidth=0)
    edges = {0.0, run.horizon, *(t for o in run.failure.outages for t in (o.start, o.end))}
    changes = sorted(t for t in edges if 0.0 <= t <= run.horizon)
    ax.step(changes, [run.failure.probability(t) for t in changes], where="post",
            color="black", linewidth=1.2)
    ax.set_ylim(0, 1.05)
    ax.set_yticks([0, 0.5, 1])
    handles = [Line2D([], [], color="black", linewidth=1.2),
               *(Patch(color=STATE_COLOURS[s], alpha=0.25) for s in ("open", "half_open"))]
    ax.legend(handles, ["dependency failure probability", "breaker open", "breaker half-open"],
              loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=3, borderaxespad=0.2)
    ax.set_ylabel("failure\nprobability")
    ax.set_title(f"Breaker state ({run.label})", loc="left")  # the legend takes the right


def plot_outcomes(run: BreakerRun, ax: Axes, *, bin_width: float = 1.0) -> None:
    """Requests per second by outcome, and calls per second reaching the dependency."""
    edges = np.arange(0.0, run.horizon + bin_width, bin_width)
    stacks = []
    for outcome in ("ok", "failed", "rejected"):
        counts, _ = np.histogram(run.request_times[run.outcomes == outcome], bins=edges)
        stacks.append(counts / bin_width)
    names = {"ok": "success", "failed": "failure", "rejected": "rejected"}
    ax.stackplot(edges[:-1], stacks, step="post", alpha=0.6,
                 colors=[color(names[o]) for o in ("ok", "failed", "rejected")],
                 labels=["succeeded", "failed (after a timeout)", "rejected by the breaker"])
    calls, _ = np.histogram(run.dependency_calls, bins=edges)
    ax.step(edges[:-1], calls / bin_width, where="post", color="black", linewidth=1.4,
            label="calls reaching the dependency")
    ax.set_ylim(0, max(1.0, float(np.max(np.sum(stacks, axis=0)))) * 1.35)  # room for the legend
    ax.legend(loc="upper left", ncols=2)
    label(ax, title="What the clients got", xlabel="time (s)", ylabel="requests per second")


def draw_timeline(run: BreakerRun) -> Figure:
    """State band above the outcomes, for one run."""
    fig, (top, bottom) = subplots(2, 1, width=9.5, height=5.5, sharex=True,
                                  height_ratios=[1, 2.5])
    plot_states(run, top)
    plot_outcomes(run, bottom)
    return fig


def draw_breaker(
    failure_rate_threshold: float = 0.5, window_size: int = 20, wait_in_open: float = 5.0,
    half_open_calls: int = 3, degraded_failure: float = 0.5, seed: int = 1,
) -> Figure:
    """Figure for the explorer: the window breaker's timeline under the default scenario."""
    settings = BreakerSettings(failure_rate_threshold, window_size, min(10, window_size),
                               wait_in_open, half_open_calls)
    failure = FailureSchedule(0.02, [Outage(15.0, 25.0, degraded_failure),
                                     Outage(25.0, 40.0, 1.0)])
    run = run_breaker("window", settings=settings, failure=failure, seed=seed)
    fig = draw_timeline(run)
    spared = 1 - run.dependency_calls_between(25, 40) / max(1, run.count("ok", 25, 40)
                                                            + run.count("failed", 25, 40)
                                                            + run.count("rejected", 25, 40))
    fig.suptitle(f"time open {run.time_open():.0%}; calls spared during the outage {spared:.0%}")
    return fig


def comparison_table(runs: Mapping[str, BreakerRun], outage: tuple[float, float] = (25, 40)) -> str:
    """Per run: dependency calls in the outage, failures, rejections and client latency."""
    start, end = outage
    rows = []
    for name, run in runs.items():
        in_outage = (run.request_times >= start) & (run.request_times < end)
        rows.append([
            name, run.dependency_calls_between(start, end), run.count("failed"),
            run.count("rejected"),
            float(np.mean(run.latencies[in_outage])) * 1000,
            float(np.percentile(run.latencies, 99)) * 1000,
        ])
    return format_table(["breaker", "dependency calls in outage", "failed requests",
                         "rejected requests", "mean latency in outage (ms)",
                         "p99 latency (ms)"], rows)


def compare_breakers(seed: int = 1, **options: Any) -> dict[str, BreakerRun]:
    """The default scenario with no breaker, the guide's, and the failure-rate window."""
    return {kind: run_breaker(kind, seed=seed, **options) for kind in ("none", "guide", "window")}


def breaker_explorer() -> Explorer:
    """Sliders: threshold, window, wait in open, half-open trials, degraded failure rate."""
    return Explorer(draw_breaker, {
        "failure_rate_threshold": float_slider("failure-rate threshold", 0.5, 0.1, 0.7, 0.05),
        "window_size": int_slider("window (calls)", 20, 5, 100, 5),
        "wait_in_open": float_slider("wait in open (s)", 5.0, 0.5, 15.0, 0.5, ".1f"),
        "half_open_calls": int_slider("half-open trial calls", 3, 1, 20),
        "degraded_failure": float_slider("failure rate 15-25 s", 0.5, 0.0, 1.0, 0.05),
    })


# ============================================================================ pitfalls


SWEEP_VARIANTS: dict[str, tuple[str, BreakerSettings]] = {
    "guide: 5 consecutive failures": ("guide", BreakerSettings()),
    "rate >= 50 % of the last 20 calls": ("window", BreakerSettings()),
    "rate >= 50 % of the last 100 calls": ("window", BreakerSettings(window_size=100,
                                                                       minimum_calls=50)),
}


def sweep_failure_rate(
    probabilities: Sequence[float], *, horizon: float = 60.0, seeds: Sequence[int] = (1, 2, 3),
) -> dict[str, list[float]]:
    """Mean share of time open against a constant failure probability, per variant."""
    result: dict[str, list[float]] = {name: [] for name in SWEEP_VARIANTS}
    for p in probabilities:
        for name, (kind, settings) in SWEEP_VARIANTS.items():
            shares = [run_breaker(kind, settings=settings, failure=FailureSchedule(float(p)),
                                  horizon=horizon, seed=seed).time_open() for seed in seeds]
            result[name].append(float(np.mean(shares)))
    return result


def draw_threshold_sweep() -> Figure:
    """Time open against failure probability: how sharp is each breaker's threshold?"""
    probabilities = [float(p) for p in np.round(np.linspace(0.0, 1.0, 11), 2)]
    sweep = sweep_failure_rate(probabilities)
    fig, ax = subplots(1, 1, width=8.5, height=3.8)
    for (name, shares), colour in zip(sweep.items(), [color("guide"), "#98df8a", "#2ca02c"],
                                      strict=True):
        ax.plot(probabilities, shares, "o-", color=colour, label=name)
    ax.axvline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.legend(loc="upper left")
    label(ax, title="How much of the time is the breaker open? (mean of 3 runs)",
          xlabel="failure probability of every call", ylabel="share of time open")
    return fig


def run_alternating(kind: str, calls: int = 200) -> BreakerRun:
    """A dependency that fails every other call, exactly (50 %, no runs at all)."""
    # Failures as fast as successes, so calls finish in the order they started.
    return run_breaker(kind, failure=_Alternating(), rate=20.0, horizon=calls / 20.0,
                       latency_failed=0.05)


class _Alternating(FailureSchedule):
    def __init__(self) -> None:
        super().__init__(0.5)
        self._next = False

    def fails(self, time: float, rng: Any) -> bool:
        self._next = not self._next
        return self._next


def probe_race(kind: str, *, half_open_calls: int = 3, seed: int = 1) -> BreakerRun:
    """A dependency down from 5 s to 30 s with slow (2 s) failures and 50 requests per
    second: when half-open comes, how many trial calls run at once?"""
    return run_breaker(kind, settings=BreakerSettings(wait_in_open=3.0,
                                                      half_open_calls=half_open_calls),
                       failure=FailureSchedule(0.0, [Outage(5.0, 30.0)]), rate=50.0,
                       horizon=30.0, latency_failed=2.0, seed=seed)


def late_failures(kind: str, *, seed: int = 1) -> BreakerRun:
    """Failures are timeouts of 3 s: calls let through before the breaker opened keep
    failing after it opened. Does that stretch the open time?"""
    return run_breaker(kind, settings=BreakerSettings(wait_in_open=2.0),
                       failure=FailureSchedule(0.0, [Outage(10.0, 60.0)]), rate=20.0,
                       horizon=30.0, latency_failed=3.0, seed=seed)


def pitfall_table() -> str:
    """The three flaws of the guide's sketch, measured beside the fix."""
    rows = []
    alternating = {k: run_alternating(k) for k in ("guide", "window")}
    rows.append(["fails every other call: time open",
                 f"{alternating['guide'].time_open():.0%}",
                 f"{alternating['window'].time_open():.0%}"])
    race = {k: probe_race(k) for k in ("guide", "window")}
    rows.append(["half-open (3 trials allowed): most trial calls at once",
                 race["guide"].peak_trials_in_flight, race["window"].peak_trials_in_flight])
    late = {k: late_failures(k) for k in ("guide", "window")}
    rows.append(["first open period (wait 2 s, failures take 3 s)",
                 f"{late['guide'].open_periods()[0][1]:.1f} s",
                 f"{late['window'].open_periods()[0][1]:.1f} s"])
    return format_table(["pitfall", "guide's sketch", "CircuitBreaker"], rows)
