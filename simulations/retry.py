"""Retry and back-off in simulated time (guide section 4.1, 重试与回退策略).

Three models, each driving :class:`patterns.resilience.retry.RetryPolicy` through its
SimPy driver:

* **Contention** (:func:`run_contention`), the model of Marc Brooker's "Exponential
  Backoff and Jitter" (2015) and its simulator: ``clients`` clients all start at once and
  each wants one update of a shared record guarded by optimistic concurrency (a read, then
  a conditional write), every message delayed by ``|N(10 ms, 2 ms)|``. A write succeeds
  only if nobody else wrote since the client read; otherwise the client backs off and
  retries. With his base and cap it reproduces his published calls
  (:data:`BROOKER_CALLS`). Without jitter the clients keep colliding in clusters; on a
  network with no latency variance (``latency_sd=0``) they move in exact lock-step, one
  winner per round.
* **Amplification** (:func:`run_amplification`): a request crosses ``layers`` services
  that each retry the one below; the bottom one calls a flaky dependency. During an
  outage every layer's retries multiply (``attempts ** layers`` calls per request)
  unless each layer's retries are capped by a shared
  :class:`~patterns.resilience.budget.RetryBudget`.
* **Permanent errors** (:func:`run_permanent_errors`): retrying errors that can never
  succeed (an invalid request) wastes calls and makes the caller wait for a "no".

:class:`GuideSketchBackoff` transcribes the guide's flawed ``ExponentialBackoffRetry``
so the notebook can put it beside the fix.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Collection, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator

from patterns.resilience.backoff import Backoff, ConstantBackoff, ExponentialBackoff, Jitter
from patterns.resilience.budget import RetryBudget
from patterns.resilience.retry import RetryPolicy, StopAfterAttempts
from simulations.kit.clock import SimClock
from simulations.kit.faults import FailureSchedule, Outage
from simulations.kit.plotting import color, label, subplots
from simulations.kit.recorder import Recorder
from simulations.kit.rng import RandomStreams
from simulations.kit.tables import format_table
from simulations.kit.widgets import Explorer, choice, float_slider, int_slider, log_slider
from simulations.kit.workloads import poisson_arrivals, start_at

JITTER_KINDS: tuple[str, ...] = tuple(kind.value for kind in Jitter)


# ============================================================================ the guide


class GuideSketchBackoff(Backoff):
    """The guide's ``ExponentialBackoffRetry.next_delay``, flaws included (for pitfalls).

    * The retry loop counts the failed attempt first, so the first delay is
      ``initial * factor`` (not ``initial``).
    * "Jitter" multiplies by ``1 - U(0, 0.3)``: delays shrink by up to 30 %, so clients
      that failed together retry together again.
    * Delays are truncated to whole milliseconds.
    """

    def __init__(self, initial: float, cap: float, factor: float = 2.0, jitter: bool = True):
        self.initial, self.cap, self.factor, self.jitter = initial, cap, factor, jitter

    def delays(self, rng: random.Random) -> Iterator[float]:
        attempt = 1
        while True:
            delay_ms = math.floor(min(self.initial * 1000 * self.factor**attempt, self.cap * 1000))
            if self.jitter:
                delay_ms = math.floor(delay_ms * (1.0 - rng.random() * 0.3))
            yield delay_ms / 1000
            attempt += 1


# ============================================================================ contention

NO_BACKOFF = "no backoff"
"""The contention model's name for retrying at once, without any back-off."""

CONTENTION_KINDS: tuple[str, ...] = (NO_BACKOFF, *JITTER_KINDS)
"""What a contention run can use: no back-off, or capped exponential with a jitter kind."""

KIND_LABELS: dict[str, str] = {
    NO_BACKOFF: "no back-off",
    "none": "exponential, no jitter",
    "full": "full jitter",
    "equal": "equal jitter",
    "decorrelated": "decorrelated jitter",
}

BROOKER_CLIENTS = 100
BROOKER_BASE = 0.005
BROOKER_CAP = 2.0
BROOKER_LATENCY = 0.010
BROOKER_LATENCY_SD = 0.002
"""Brooker's simulator: 100 clients, back-off base 5 ms and cap 2 s, and each message
delayed by ``|N(10 ms, 2 ms)|`` (his article: "a mean of 10ms and variance of 4ms")."""
BROOKER_CALLS: dict[str, float] = {NO_BACKOFF: 2422.0, "none": 1856.0, "full": 796.0}
"""Brooker (2015): total calls (conditional writes that reached the record) of 100
contending clients, the mean of 100 runs of his simulator (base 5 ms, cap 2 s, network
delay N(10 ms, 2 ms) per message)."""


class ConflictError(Exception):
    """An optimistic write lost: somebody else wrote since this client read."""


@dataclass(frozen=True)
class ContentionResult:
    """What one contention run produced (times in seconds)."""

    label: str
    clients: int
    calls: int
    """Conditional writes that reached the record (the work the record had to do)."""
    completion_time: float
    """When the last client learnt that its write had succeeded."""
    attempt_times: np.ndarray
    """When each write reached the record."""
    success_times: np.ndarray

    @property
    def calls_per_client(self) -> float:
        return self.calls / self.clients


def brooker_backoff(kind: str, base: float = BROOKER_BASE, cap: float = BROOKER_CAP) -> Backoff:
    """The back-off of Brooker's simulator for ``kind``, as a library :class:`Backoff`.

    His sleep before retry ``n`` is ``min(cap, base * 2**n)`` and his retry counter is 1 at
    the first retry, so his first delay is ``2 * base`` (the guide's ``initial * factor``
    again): with the library's ``ExponentialBackoff`` that is ``initial = 2 * base``.
    His decorrelated jitter starts from ``base`` itself: ``min(cap, uniform(base, 3 *
    previous))`` with ``previous = base``. ``kind`` is one of :data:`CONTENTION_KINDS`.
    """
    if kind not in CONTENTION_KINDS:
        allowed = ", ".join(repr(k) for k in CONTENTION_KINDS)
        raise ValueError(f"jitter must be one of {allowed}, got {kind!r}")
    if not (base > 0 and math.isfinite(base)):
        raise ValueError(f"base must be a positive number of seconds, got {base!r}")
    if not cap >= base:
        raise ValueError(f"cap must be >= base ({base!r}), got {cap!r}")
    if kind == NO_BACKOFF:
        return ConstantBackoff(0.0)
    if kind == "decorrelated":
        return ExponentialBackoff(base, cap=cap, jitter="decorrelated")
    return ExponentialBackoff(min(2 * base, cap), cap=cap, jitter=kind)


def run_contention(
    clients: int = BROOKER_CLIENTS,
    *,
    jitter: str = "full",
    base: float = BROOKER_BASE,
    cap: float = BROOKER_CAP,
    latency: float = BROOKER_LATENCY,
    latency_sd: float = BROOKER_LATENCY_SD,
    seed: int = 1,
    backoff: Backoff | None = None,
    label_: str | None = None,
    max_attempts: int = 100_000,
) -> ContentionResult:
    """Brooker's model: ``clients`` clients each update one shared record once, with
    optimistic concurrency (a read, then a conditional write), over a network.

    Every client starts at time 0. An attempt sends a read; the record answers with its
    version; the client sends a write conditional on that version; the record applies it
    only if nobody wrote since, and answers. Each of the four messages takes
    ``|N(latency, latency_sd)|`` seconds. A client whose write lost backs off (``backoff``
    if given, else :func:`brooker_backoff` of ``jitter``, ``base`` and ``cap``) and tries
    again. With ``latency_sd=0`` (a network with no latency variance) clients without
    jitter stay in exact lock-step.
    """
    if isinstance(clients, bool) or not isinstance(clients, int) or clients < 1:
        raise ValueError(f"clients must be an int >= 1, got {clients!r}")
    if not (latency > 0 and math.isfinite(latency)):
        raise ValueError(f"latency must be a positive number of seconds, got {latency!r}")
    if not (latency_sd >= 0 and math.isfinite(latency_sd)):
        raise ValueError(f"latency_sd must be >= 0 seconds, got {latency_sd!r}")
    chosen = backoff if backoff is not None else brooker_backoff(jitter, base, cap)
    streams = RandomStreams(seed)
    network = streams.stream("network")
    policy = RetryPolicy(stop=StopAfterAttempts(max_attempts), backoff=chosen,
                         retry_on=ConflictError, rng=streams.stream("jitter"))
    env = simpy.Environment()
    version = [0]
    writes: list[float] = []
    successes: list[float] = []

    def hop() -> float:
        return abs(network.gauss(latency, latency_sd)) if latency_sd else latency

    def read_then_write() -> Generator[Any, Any, None]:
        yield env.timeout(hop())  # the read reaches the record
        seen = version[0]
        yield env.timeout(hop() + hop())  # its answer comes back; the write goes out
        writes.append(env.now)
        won = version[0] == seen
        if won:
            version[0] += 1
        yield env.timeout(hop())  # the write's answer comes back
        if not won:
            raise ConflictError
        successes.append(env.now)

    for _ in range(clients):
        env.process(policy.simpy_call(env, read_then_write))
    env.run()
    if len(successes) != clients:
        raise RuntimeError(f"only {len(successes)} of {clients} clients succeeded "
                           f"within {max_attempts} attempts")
    return ContentionResult(
        label=label_ or (jitter if backoff is None else type(backoff).__name__),
        clients=clients,
        calls=len(writes),
        completion_time=max(successes),
        attempt_times=np.asarray(writes),
        success_times=np.asarray(successes),
    )


def compare_jitter(
    clients: int = BROOKER_CLIENTS,
    *,
    base: float = BROOKER_BASE,
    cap: float = BROOKER_CAP,
    latency_sd: float = BROOKER_LATENCY_SD,
    seed: int = 1,
    kinds: Sequence[str] = CONTENTION_KINDS,
) -> dict[str, ContentionResult]:
    """:func:`run_contention` once per kind, same seed."""
    return {kind: run_contention(clients, jitter=kind, base=base, cap=cap,
                                 latency_sd=latency_sd, seed=seed)
            for kind in kinds}


def replicate_brooker(
    seeds: Sequence[int] = range(1, 11),
    *,
    clients: int = BROOKER_CLIENTS,
    kinds: Sequence[str] = tuple(BROOKER_CALLS),
    **options: Any,
) -> dict[str, np.ndarray]:
    """Total calls of :func:`run_contention` for each kind, one entry per seed."""
    return {kind: np.array([run_contention(clients, jitter=kind, seed=seed, **options).calls
                            for seed in seeds], dtype=float)
            for kind in kinds}


def brooker_table(seeds: Sequence[int] = range(1, 21)) -> str:
    """Brooker's published calls beside this model's: mean over ``seeds`` and its standard
    error (the spread over seeds divided by the square root of their number)."""
    calls = replicate_brooker(seeds, kinds=CONTENTION_KINDS)
    rows = []
    for kind, values in calls.items():
        published = BROOKER_CALLS.get(kind)
        error = float(values.std(ddof=1)) / math.sqrt(len(values))
        rows.append([KIND_LABELS[kind], "-" if published is None else published,
                     float(values.mean()), error,
                     "-" if published is None else f"{values.mean() - published:+.0f}"])
    return format_table([f"{BROOKER_CLIENTS} clients", "Brooker: calls", "model: mean calls",
                         f"standard error ({len(seeds)} seeds)", "model - Brooker"], rows)


def describe_contention() -> str:
    """The contention model's defaults (Brooker's), in one line of text."""
    return (f"{BROOKER_CLIENTS} clients, one record; each attempt = read + conditional write "
            f"= 4 messages of |N({BROOKER_LATENCY * 1000:g} ms, {BROOKER_LATENCY_SD * 1000:g} "
            f"ms)| each; back-off base {BROOKER_BASE * 1000:g} ms (first delay "
            f"{2 * BROOKER_BASE * 1000:g} ms), cap {BROOKER_CAP * 1000:g} ms")


def work_ratios(results: Mapping[str, ContentionResult], against: str = "full") -> str:
    """How many times the calls of each run are those of ``against``, as text."""
    base = results[against].calls
    return "; ".join(f"{KIND_LABELS.get(name, name)}: {r.calls / base:.1f}x"
                     for name, r in results.items() if name != against) + (
        f" the calls of {KIND_LABELS.get(against, against)}")


TICK_LABELS: dict[str, str] = {NO_BACKOFF: "no\nback-off", "none": "no\njitter",
                               "full": "full", "equal": "equal", "decorrelated": "decorr."}


def plot_calls_over_time(results: Mapping[str, ContentionResult], ax: Axes, *,
                         figures: bool = True) -> Axes:
    """Calls made so far against time, one line per run; a dot where the last client won.

    Time is on a log scale so that a run finishing in 2 s and one taking 90 s are both
    readable. Lock-step retries climb in steps, one winner per round. With ``figures``
    the legend gives each run's calls and completion time.
    """
    for name, result in results.items():
        times = np.sort(result.attempt_times)
        made = np.arange(1, len(times) + 1)
        if len(times) > 300:  # a few hundred steps look the same and draw much faster
            keep = np.unique(np.linspace(0, len(times) - 1, 300).astype(int))
            times, made = times[keep], made[keep]
        text = KIND_LABELS.get(name, name)
        if figures:
            text += f": {result.calls} calls, {result.completion_time:.1f} s"
        else:
            text = TICK_LABELS.get(name, name).replace("\n", " ")
        ax.step(np.maximum(times, 1e-2), made, where="post", color=color(name), label=text,
                linewidth=1.6)
        ax.plot([result.completion_time], [result.calls], "o", color=color(name))
    ax.set_xscale("log")
    # plain numbers on the log axis: cheaper to draw than the default mathtext labels
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_locator(NullLocator())  # no minor ticks: a third of the drawing time
    ax.legend(loc="upper left")
    return label(ax, title="Retries over time", xlabel="time since start (s, log scale)",
                 ylabel="calls made so far")


def plot_jitter_summary(results: Mapping[str, ContentionResult], axes: Sequence[Axes]) -> None:
    """Bars: total calls (left) and time until every client succeeded (right)."""
    names = list(results)
    ticks = [TICK_LABELS.get(n, n) for n in names]
    colours = [color(name) for name in names]
    calls_ax, time_ax = axes
    calls = [results[n].calls for n in names]
    times = [results[n].completion_time for n in names]
    calls_ax.bar_label(calls_ax.bar(ticks, calls, color=colours), fmt="%d", fontsize=8)
    label(calls_ax, title="Work", xlabel="back-off", ylabel="calls in total")
    time_ax.bar_label(time_ax.bar(ticks, times, color=colours), fmt="%.1f", fontsize=8)
    label(time_ax, title="Completion", xlabel="back-off", ylabel="time until all succeed (s)")
    for ax in axes:
        ax.tick_params(axis="x", labelsize=8)
        ax.margins(y=0.15)


def draw_jitter_comparison(
    clients: int = BROOKER_CLIENTS, base_ms: float = 5.0, cap_ms: float = 2000.0,
    latency_sd_ms: float = 2.0, seed: int = 1,
) -> Figure:
    """Figure for the notebook: calls over time and the two summaries, every kind."""
    results = compare_jitter(clients, base=base_ms / 1000, cap=cap_ms / 1000,
                             latency_sd=latency_sd_ms / 1000, seed=seed)
    fig, axes = subplots(1, 3, width=10, height=4.2, width_ratios=[1.5, 1, 1])
    plot_calls_over_time(results, axes[0], figures=False)
    plot_jitter_summary(results, axes[1:])
    fig.suptitle(f"{clients} clients contending for one record (back-off base {base_ms:g} ms, "
                 f"cap {cap_ms:g} ms; network delay sd {latency_sd_ms:g} ms)")
    return fig


def draw_contention(
    clients: int = BROOKER_CLIENTS, base_ms: float = 5.0, cap_ms: float = 2000.0,
    latency_sd_ms: float = 2.0, jitter: str = "full", seed: int = 1,
) -> Figure:
    """Figure for the contention explorer: the chosen kind beside exponential without jitter.

    A cap below the base delay is raised to it (the back-off needs ``cap >= base``).
    """
    kinds = ["none"] if jitter == "none" else ["none", jitter]
    results = compare_jitter(clients, base=base_ms / 1000, cap=max(cap_ms, base_ms) / 1000,
                             latency_sd=latency_sd_ms / 1000, seed=seed, kinds=kinds)
    fig, ax = subplots(1, 1, width=9, height=3.6)
    plot_calls_over_time(results, ax)
    return fig


# ============================================================================ amplification


class DependencyError(ConnectionError):
    """The flaky dependency failed this call."""


def expected_amplification(p: float, layers: int, attempts: int) -> float:
    """Expected dependency calls per request when each of ``layers`` layers makes up to
    ``attempts`` attempts and each dependency call fails independently with ``p``.

    A layer whose callee fails with probability ``q`` makes ``(1 - q**k) / (1 - q)``
    attempts on average and fails with ``q**k``; the factors multiply up the stack.
    With ``p = 1`` this is ``attempts ** layers``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be within [0, 1], got {p!r}")
    total, q = 1.0, p
    for _ in range(layers):
        total *= attempts if q >= 1.0 else (1 - q**attempts) / (1 - q)
        q = q**attempts
    return total


@dataclass(frozen=True)
class AmplificationResult:
    """What one amplification run produced (times in seconds)."""

    layers: int
    attempts: int
    budget_ratio: float | None
    horizon: float
    outage: Outage | None
    requests: int
    succeeded: int
    dependency_calls: int
    recorder: Recorder

    @property
    def amplification(self) -> float:
        """Dependency calls per user request, over the whole run."""
        return self.dependency_calls / max(1, self.requests)

    def amplification_during(self, start: float, end: float) -> float:
        """Dependency calls per user request arriving in ``[start, end)``."""
        requests = self.recorder.times("request")
        calls = self.recorder.times("dependency_call")
        arrived = np.count_nonzero((requests >= start) & (requests < end))
        called = np.count_nonzero((calls >= start) & (calls < end))
        return called / max(1, arrived)

    @property
    def success_rate(self) -> float:
        return self.succeeded / max(1, self.requests)


def run_amplification(
    *,
    layers: int = 3,
    attempts: int = 3,
    rate: float = 20.0,
    horizon: float = 30.0,
    failure: FailureSchedule | None = None,
    budget_ratio: float | None = None,
    budget_layers: Collection[int] | None = None,
    latency: float = 0.005,
    base: float = 0.010,
    cap: float = 0.100,
    seed: int = 1,
) -> AmplificationResult:
    """User requests (Poisson, ``rate`` per second) cross ``layers`` retrying services.

    Each layer calls the one below through its own :class:`RetryPolicy` (``attempts``
    attempts, capped exponential back-off with full jitter) and, if ``budget_ratio`` is
    set, a :class:`RetryBudget` with that ratio shared by all of the layer's calls.
    ``budget_layers`` chooses which layers get a budget (0 is the bottom layer, the one
    that calls the dependency; ``layers - 1`` the top); default: every layer.
    The bottom layer calls the dependency, which answers after ``latency`` seconds and
    fails as ``failure`` says (default: an outage from 10 s to 20 s).
    """
    for name, value in (("layers", layers), ("attempts", attempts)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    budgeted = set(range(layers)) if budget_layers is None else set(budget_layers)
    if not all(isinstance(level, int) and 0 <= level < layers for level in budgeted):
        raise ValueError(f"budget_layers must hold layer numbers 0..{layers - 1}, "
                         f"got {budget_layers!r}")
    if failure is None:
        failure = FailureSchedule(0.0, [Outage(10.0, 20.0)])
    env = simpy.Environment()
    clock = SimClock(env)
    streams = RandomStreams(seed)
    failures = streams.stream("failures")
    recorder = Recorder()
    policies = [
        RetryPolicy(
            stop=StopAfterAttempts(attempts),
            backoff=ExponentialBackoff(base, cap=cap, jitter="full"),
            retry_on=DependencyError,
            budget=None if budget_ratio is None or level not in budgeted else RetryBudget(
                budget_ratio, min_retries_per_second=0.0, window=1.0, clock=clock),
            rng=streams.stream(f"jitter-{level}"),
        )
        for level in range(layers)
    ]

    def dependency() -> Generator[Any, Any, str]:
        recorder.record(env.now, "dependency_call")
        yield env.timeout(latency)
        if failure.fails(env.now, failures):
            raise DependencyError("dependency failed")
        return "ok"

    def layer(level: int) -> Generator[Any, Any, str]:
        # Layer `level` calls the one below it through its own retry policy.
        below = dependency if level == 0 else (lambda: layer(level - 1))
        return (yield from policies[level].simpy_call(env, below))

    def user_request(_: int) -> Generator[Any, Any, None]:
        recorder.record(env.now, "request")
        try:
            yield from layer(layers - 1)
        except DependencyError:
            recorder.record(env.now, "request_failed")
        else:
            recorder.record(env.now, "request_succeeded")

    arrivals = poisson_arrivals(rate, horizon, streams.numpy("arrivals"))
    start_at(env, arrivals, user_request)
    env.run()
    outages = failure.outages
    return AmplificationResult(
        layers=layers,
        attempts=attempts,
        budget_ratio=budget_ratio,
        horizon=horizon,
        outage=outages[0] if outages else None,
        requests=recorder.count("request"),
        succeeded=recorder.count("request_succeeded"),
        dependency_calls=recorder.count("dependency_call"),
        recorder=recorder,
    )


def plot_dependency_load(
    results: Mapping[str, AmplificationResult], ax: Axes, *, bin_width: float = 1.0
) -> Axes:
    """Calls per second reaching the dependency over time, beside the user request rate."""
    first = next(iter(results.values()))
    starts, offered = first.recorder.rate("request", bin_width=bin_width, until=first.horizon)
    ax.step(starts, offered, where="post", color=color("offered"), linestyle="--",
            label="user requests")
    palette = ["#d62728", "#2ca02c", "#1f77b4", "#9467bd"]
    for colour, (name, result) in zip(palette, results.items(), strict=False):
        _, load = result.recorder.rate("dependency_call", bin_width=bin_width,
                                       until=result.horizon)
        ax.step(starts, load, where="post", color=colour, label=name, linewidth=1.6)
    if first.outage is not None:
        ax.axvspan(first.outage.start, first.outage.end, color="#d62728", alpha=0.08,
                   label="outage")
    ax.legend(loc="upper left")
    return label(ax, title="Load on the dependency", xlabel="time (s)",
                 ylabel="calls per second")


def draw_amplification(
    layers: int = 3, attempts: int = 3, budget_ratio: float = 0.1,
    outage_failure: float = 1.0, seed: int = 1, rate: float = 10.0,
) -> Figure:
    """Figure for the amplification explorer: with and without a retry budget."""
    failure = FailureSchedule(0.0, [Outage(10.0, 20.0, outage_failure)])
    runs = {
        "retry, no budget": run_amplification(layers=layers, attempts=attempts, rate=rate,
                                               failure=failure, seed=seed),
        f"retry, budget {budget_ratio:.0%}": run_amplification(
            layers=layers, attempts=attempts, rate=rate, failure=failure,
            budget_ratio=budget_ratio, seed=seed),
    }
    fig, ax = subplots(1, 1, width=10, height=4)
    plot_dependency_load(runs, ax)
    theory = expected_amplification(outage_failure, layers, attempts)
    lines = [f"{name}: {r.amplification_during(10, 20):.1f} calls per request in the outage"
             for name, r in runs.items()]
    ax.set_ylim(top=ax.get_ylim()[1] * 1.45)
    with_budget = (1 + budget_ratio) ** layers
    notes = [*lines, f"theory without budget: {theory:.1f}",
             f"theory with budget, at most: (1 + {budget_ratio:g})^{layers} = {with_budget:.2f}"]
    ax.text(0.99, 0.97, "\n".join(notes),
            transform=ax.transAxes, ha="right", va="top", fontsize=9,
            bbox={"facecolor": "white", "edgecolor": "#cccccc", "alpha": 0.9})
    return fig


# ============================================================================ permanent errors


class InvalidRequestError(ValueError):
    """The request itself is wrong: no number of retries will make it succeed."""


@dataclass(frozen=True)
class PermanentErrorResult:
    """What one run of :func:`run_permanent_errors` produced (times in seconds)."""

    retry_everything: bool
    requests: int
    invalid_requests: int
    dependency_calls: int
    calls_on_invalid: int
    mean_time_to_reject: float
    """How long a caller with an invalid request waited for its error."""

    @property
    def wasted_calls_per_invalid(self) -> float:
        return self.calls_on_invalid / max(1, self.invalid_requests) - 1


def run_permanent_errors(
    *,
    retry_everything: bool,
    invalid_fraction: float = 0.2,
    transient_failure: float = 0.1,
    attempts: int = 5,
    requests: int = 1000,
    rate: float = 50.0,
    latency: float = 0.020,
    seed: int = 1,
) -> PermanentErrorResult:
    """Some requests are invalid (they always fail), others fail now and then.

    With ``retry_everything`` the policy retries any error, as the guide's sketch does;
    otherwise only :class:`ConnectionError` is retried and an invalid request fails at once.
    """
    env = simpy.Environment()
    streams = RandomStreams(seed)
    draw = streams.stream("faults")
    policy = RetryPolicy(
        stop=StopAfterAttempts(attempts),
        backoff=ExponentialBackoff(0.05, cap=1.0, jitter="full"),
        retry_on=Exception if retry_everything else ConnectionError,
        rng=streams.stream("jitter"),
    )
    recorder = Recorder()

    def request(index: int) -> Generator[Any, Any, None]:
        invalid = draw.random() < invalid_fraction
        started = env.now
        recorder.record(started, "request", invalid=invalid)

        def attempt() -> Generator[Any, Any, str]:
            recorder.record(env.now, "dependency_call", invalid=invalid)
            yield env.timeout(latency)
            if invalid:
                raise InvalidRequestError(f"request {index} is malformed")
            if draw.random() < transient_failure:
                raise DependencyError("transient failure")
            return "ok"

        try:
            yield from policy.simpy_call(env, attempt)
        except InvalidRequestError:
            recorder.record(env.now, "rejected", waited=env.now - started)
        except DependencyError:
            recorder.record(env.now, "failed")

    arrivals = poisson_arrivals(rate, requests / rate, streams.numpy("arrivals"))
    start_at(env, arrivals, request)
    env.run()
    calls = recorder.select("dependency_call")
    rejected = recorder.select("rejected")
    return PermanentErrorResult(
        retry_everything=retry_everything,
        requests=recorder.count("request"),
        invalid_requests=sum(1 for r in recorder.select("request") if r.data["invalid"]),
        dependency_calls=len(calls),
        calls_on_invalid=sum(1 for r in calls if r.data["invalid"]),
        mean_time_to_reject=float(np.mean([r.data["waited"] for r in rejected]))
        if rejected else math.nan,
    )


# ============================================================================ the retry wave


@dataclass(frozen=True)
class RetryWaveResult:
    """Attempt times of clients that all failed together at time 0 (seconds)."""

    label: str
    clients: int
    attempt_times: np.ndarray
    recovered_at: float

    def idle_share(self, *, bin_width: float = 0.02, until: float | None = None) -> float:
        """The share of ``bin_width`` slots, from 0 to ``until`` (default: the outage's
        end), in which no retry reached the dependency: high means retries come in waves."""
        end = self.recovered_at if until is None else until
        edges = np.arange(0.0, end + bin_width / 2, bin_width)
        counts, _ = np.histogram(self.attempt_times[self.attempt_times > 0], bins=edges)
        return float(np.mean(counts == 0))


def run_retry_wave(
    clients: int = 200,
    *,
    backoff: Backoff,
    label_: str = "",
    outage: float = 0.5,
    latency: float = 0.010,
    max_attempts: int = 8,
    seed: int = 1,
) -> RetryWaveResult:
    """``clients`` clients call a dependency at time 0, during an outage of ``outage`` s.

    They all fail together and retry as ``backoff`` says: how bunched are the waves of
    retries that hit the dependency as it comes back?
    """
    env = simpy.Environment()
    streams = RandomStreams(seed)
    failure = FailureSchedule(0.0, [Outage(0.0, outage)])
    policy = RetryPolicy(stop=StopAfterAttempts(max_attempts), backoff=backoff,
                         retry_on=DependencyError, rng=streams.stream("jitter"))
    recorder = Recorder()
    policy.listeners.add(recorder.listener("client"))
    draw = streams.stream("failures")

    def attempt() -> Generator[Any, Any, str]:
        yield env.timeout(latency)
        if failure.fails(env.now, draw):
            raise DependencyError("down")
        return "ok"

    def client() -> Generator[Any, Any, None]:
        with contextlib.suppress(DependencyError):
            yield from policy.simpy_call(env, attempt)

    for _ in range(clients):
        env.process(client())
    env.run()
    return RetryWaveResult(label_ or repr(backoff), clients, recorder.times("AttemptStarted"),
                           outage)


def plot_retry_wave(results: Sequence[RetryWaveResult], ax: Axes, *, bin_width: float = 0.02,
                    until: float = 1.5) -> Axes:
    """Retries per second hitting the dependency, one line per back-off."""
    edges = np.arange(0.0, until + bin_width, bin_width)
    for result in results:
        counts, _ = np.histogram(result.attempt_times[result.attempt_times > 0], bins=edges)
        ax.step(edges[:-1], counts / bin_width, where="post", color=color(result.label),
                label=f"{result.label}: no retry in {result.idle_share(bin_width=bin_width):.0%} "
                f"of {bin_width * 1000:g} ms slots during the outage", linewidth=1.4)
    ax.axvspan(0, results[0].recovered_at, color="#d62728", alpha=0.08, label="outage")
    ax.legend()
    return label(ax, title=f"{results[0].clients} clients failed together at t = 0",
                 xlabel="time (s)", ylabel="retries per second")


# ============================================================================ for the notebook


def contention_table(results: Mapping[str, ContentionResult]) -> str:
    """Calls, calls per client and completion time of each run, as text."""
    return format_table(
        ["back-off", "calls", "calls per client", "all done after (s)"],
        [[KIND_LABELS.get(name, name), r.calls, r.calls_per_client, r.completion_time]
         for name, r in results.items()],
    )


def amplification_table(
    probabilities: Sequence[float] = (0.1, 0.3, 0.5, 0.8, 1.0),
    *,
    layers: int = 3,
    attempts: int = 3,
    seed: int = 1,
) -> str:
    """Dependency calls per request: theory beside simulation, for failure probabilities."""
    rows = []
    for p in probabilities:
        simulated = run_amplification(layers=layers, attempts=attempts,
                                      failure=FailureSchedule(p), seed=seed)
        rows.append([p, expected_amplification(p, layers, attempts), simulated.amplification])
    return format_table(["failure probability", "theory", "simulated"], rows)


def outage_amplification_table(
    *, layers: int = 3, attempts: int = 3, budget_ratio: float = 0.1, seed: int = 1
) -> str:
    """Calls per request reaching the dependency during the outage, with and without a
    budget on every layer, beside what theory says (``attempts ** layers``, and the bound
    ``(1 + budget_ratio) ** layers``)."""
    rows = []
    for name, ratio, theory in (
        ("no budget", None, f"{attempts}^{layers} = {attempts**layers}"),
        (f"budget {budget_ratio:.0%} per layer", budget_ratio,
         f"at most (1 + {budget_ratio:g})^{layers} = {(1 + budget_ratio) ** layers:.2f}"),
    ):
        run = run_amplification(layers=layers, attempts=attempts, budget_ratio=ratio, seed=seed)
        rows.append([name, run.amplification_during(10.5, 19.5), theory])
    outage = run.outage if run.outage is not None else Outage(math.nan, math.nan)
    return (f"{layers} layers x {attempts} attempts; the dependency is down from "
            f"{outage.start:g} s to {outage.end:g} s\n"
            + format_table(["retries", "calls per request in the outage", "theory"], rows))


def contention_explorer() -> Explorer:
    """Sliders for the contention model: clients, base delay, cap, network variance, kind."""
    return Explorer(draw_contention, {
        "clients": int_slider("clients", BROOKER_CLIENTS, 10, 150, 10),
        "base_ms": log_slider("base delay (ms)", 5.0, 0, 2),
        "cap_ms": log_slider("cap (ms)", 2000.0, 1, 4),
        "latency_sd_ms": float_slider("network delay sd (ms)", 2.0, 0.0, 5.0, 0.5, ".1f"),
        "jitter": choice("back-off", CONTENTION_KINDS, "full"),
    })


def amplification_explorer() -> Explorer:
    """Sliders for layered retries: layers, attempts, budget and failure rate."""
    return Explorer(draw_amplification, {
        "layers": int_slider("layers", 3, 1, 4),
        "attempts": int_slider("attempts per layer", 3, 1, 5),
        "budget_ratio": float_slider("budget ratio", 0.1, 0.0, 0.5, 0.05),
        "outage_failure": float_slider("failure rate in outage", 1.0, 0.0, 1.0, 0.05),
    })


def compare_guide(
    clients: int = BROOKER_CLIENTS, *, base: float = 0.005, cap: float = 2.0, seed: int = 1
) -> dict[str, ContentionResult]:
    """Contention with the guide's back-off (its first delay is ``base * 2``, as
    Brooker's) beside exponential back-off without jitter and with full jitter."""
    return {
        "none": run_contention(clients, jitter="none", base=base, cap=cap, seed=seed),
        "guide": run_contention(clients, backoff=GuideSketchBackoff(base, cap), seed=seed,
                                label_="guide"),
        "full": run_contention(clients, jitter="full", base=base, cap=cap, seed=seed),
    }


def delay_table(guide: Backoff, fixed: Backoff, count: int = 6) -> str:
    """The first ``count`` delays of two back-offs side by side, in milliseconds."""
    rows = [[n + 1, g * 1000, f * 1000]
            for n, (g, f) in enumerate(zip(guide.first(count), fixed.first(count), strict=True))]
    return format_table(["retry", "guide's sketch (ms)", "ExponentialBackoff (ms)"], rows)


def draw_delay_distributions(
    initial: float = 0.1, cap: float = 3.0, *, retries: int = 8, draws: int = 300, seed: int = 1
) -> Figure:
    """One panel per jitter kind: the delays drawn for each retry, against the nominal one."""
    fig, axes = subplots(1, len(JITTER_KINDS), width=13, height=3.4, sharey=True)
    rng = RandomStreams(seed).stream("delays")
    spread = RandomStreams(seed).numpy("spread")
    nominal = [min(cap, initial * 2.0**n) for n in range(retries)]
    for ax, kind in zip(axes, JITTER_KINDS, strict=True):
        backoff = ExponentialBackoff(initial, cap=cap, jitter=kind)
        samples = np.array([backoff.first(retries, rng) for _ in range(draws)])
        for n in range(retries):
            xs = n + 1 + spread.uniform(-0.25, 0.25, size=draws)
            ax.plot(xs, samples[:, n], ".", color=color(kind), alpha=0.25, markersize=3)
        ax.plot(range(1, retries + 1), nominal, "k--", linewidth=1, label="capped 2ⁿ⁻¹ × initial")
        label(ax, title=kind, xlabel="retry number", ylabel="delay (s)" if kind == "none" else "")
    axes[0].legend(loc="upper left")
    fig.suptitle(f"Delays before each retry (initial {initial:g} s, cap {cap:g} s)")
    return fig


def draw_retry_waves(clients: int = 200, *, initial: float = 0.05, cap: float = 1.0,
                     outage: float = 2.0, seed: int = 1) -> Figure:
    """Retries per second after a shared failure: the guide's jitter against full jitter."""
    runs = [
        run_retry_wave(clients, backoff=GuideSketchBackoff(initial, cap), label_="guide",
                       outage=outage, max_attempts=10, seed=seed),
        run_retry_wave(clients, backoff=ExponentialBackoff(initial, cap=cap, jitter="full"),
                       label_="full", outage=outage, max_attempts=10, seed=seed),
    ]
    fig, ax = subplots(1, 1, width=10, height=3.8)
    plot_retry_wave(runs, ax, until=outage + 1.5)
    return fig


def permanent_error_table(**options: Any) -> str:
    """Retrying every error against retrying only transient ones (:func:`run_permanent_errors`)."""
    rows = []
    for everything in (True, False):
        r = run_permanent_errors(retry_everything=everything, **options)
        rows.append(["retry_on=Exception" if everything else "retry_on=ConnectionError",
                     r.dependency_calls, r.wasted_calls_per_invalid, r.mean_time_to_reject * 1000])
    return format_table(["policy", "dependency calls", "wasted calls per invalid request",
                         "time to reject (ms)"], rows)
