"""CQRS in simulated time (guide section 5.4, CQRS 模式): the read model trails the writes.

Two models, both on :mod:`patterns.consistency.cqrs` with an in-memory event store:

* **Staleness** (:func:`run_staleness`): clients send deposits as a Poisson stream at
  ``write_rate`` per second; one projector applies events one at a time, each taking an
  exponential time with mean ``1 / projector_rate`` (an M/M/1 queue, utilisation
  ``rho = write_rate / projector_rate``). Readers arriving as a Poisson stream see the
  read model ``lag`` events behind the write model and ``staleness`` seconds old (how
  long the oldest write it is missing has existed). M/M/1 theory: a reader sees on
  average ``rho / (1 - rho)`` events of lag, and a write waits ``1 / (mu - lambda)``
  seconds until it is projected. Each writer then reads its own account: without
  read-your-writes that read is often stale; with it (:func:`simpy_await_position`) it
  never is, and the price is the wait.
* **The guide's sketch** (:func:`run_guide_pitfall`): :class:`GuideSketchCqrsService`
  transcribes the guide's ``CqrsService``, whose ``execute_command`` dispatches the
  command and never publishes the events it produced, so its push projector is never
  called and readers never see any change; beside it the fix, a projector that pulls
  from the event store's global order.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from patterns._validation import (
    require_finite_non_negative,
    require_int_at_least,
    require_positive,
)
from patterns.clock import MONOTONIC, Clock
from patterns.consistency.cqrs import (
    CommandBus,
    CommandResult,
    InMemoryBankReadModel,
    Projector,
    simpy_await_position,
)
from patterns.consistency.eventsourcing import (
    BankAccount,
    EventCodec,
    EventSourcedRepository,
    EventStore,
    InMemoryEventStore,
    RecordedEvent,
    bank_codec,
)
from simulations.kit.clock import SimClock
from simulations.kit.plotting import color, label, subplots
from simulations.kit.rng import RandomStreams
from simulations.kit.tables import format_table
from simulations.kit.widgets import Explorer, float_slider

# ============================================================================ the domain


@dataclass(frozen=True, slots=True)
class OpenAccount:
    account_id: str
    owner: str


@dataclass(frozen=True, slots=True)
class Deposit:
    account_id: str
    amount: int


Repo = EventSourcedRepository[BankAccount]


def _open(command: OpenAccount, repo: Repo) -> BankAccount:
    return BankAccount.open(command.account_id, command.owner)


def _deposit(command: Deposit, repo: Repo) -> BankAccount:
    account = repo.load(command.account_id)
    account.deposit(command.amount)
    return account


def bank_command_bus(store: EventStore,
                     env: simpy.Environment | None = None) -> CommandBus[BankAccount]:
    """A command bus for ``OpenAccount`` and ``Deposit`` on ``store``: in simulated time
    with ``env``, on the wall clock without."""
    clock: Clock = SimClock(env) if env is not None else MONOTONIC
    bus: CommandBus[BankAccount] = CommandBus(
        EventSourcedRepository(store, BankAccount, bank_codec(), clock=clock))
    bus.register(OpenAccount, _open)
    bus.register(Deposit, _deposit)
    return bus


# ============================================================================ staleness


@dataclass(frozen=True)
class StalenessResult:
    """What readers saw: lag (events) and staleness (s) at each read, own-write reads."""

    write_rate: float
    projector_rate: float
    read_your_writes: bool
    read_times: np.ndarray
    lag: np.ndarray
    staleness: np.ndarray
    projection_delays: np.ndarray
    own_reads: int
    own_reads_stale: int
    own_read_waits: np.ndarray
    read_delay: float = 0.2

    @property
    def rho(self) -> float:
        return self.write_rate / self.projector_rate

    @property
    def mean_lag(self) -> float:
        return float(self.lag.mean()) if len(self.lag) else 0.0

    @property
    def stale_read_fraction(self) -> float:
        """Fraction of readers' reads that missed at least one write."""
        return float((self.lag > 0).mean()) if len(self.lag) else 0.0

    @property
    def own_stale_fraction(self) -> float:
        return self.own_reads_stale / self.own_reads if self.own_reads else 0.0

    @property
    def mean_wait(self) -> float:
        return float(self.own_read_waits.mean()) if len(self.own_read_waits) else 0.0

    @property
    def waits_if_waiting(self) -> np.ndarray:
        """The extra wait that each projected write's own read would have had with
        read-your-writes on this same run: ``max(0, projection delay - read_delay)``
        (polling adds up to one poll interval to each wait that is not 0)."""
        return np.maximum(0.0, self.projection_delays - self.read_delay)

    def lag_standard_error(self, batches: int = 10) -> float:
        """Standard error of :attr:`mean_lag` by batch means: the run is cut into
        ``batches`` equal spans of time, and the spread of their mean lags says how
        precise the whole run's mean is (the lag of one reader is strongly correlated with
        the next one's, so the spread of single reads would understate it)."""
        require_int_at_least("batches", batches, 2)
        if len(self.lag) < batches:
            return math.nan
        edges = np.linspace(0.0, float(self.read_times[-1]), batches + 1)
        which = np.clip(np.searchsorted(edges, self.read_times, side="right") - 1, 0,
                        batches - 1)
        means = np.array([self.lag[which == b].mean() for b in range(batches)])
        return float(means.std(ddof=1) / math.sqrt(batches))


def theory_mean_lag(write_rate: float, projector_rate: float) -> float:
    """M/M/1: mean number of unprojected events a Poisson reader sees, rho / (1 - rho)."""
    rho = write_rate / projector_rate
    return math.inf if rho >= 1 else rho / (1 - rho)


def theory_own_read_stale(write_rate: float, projector_rate: float, read_delay: float) -> float:
    """M/M/1: probability that a write is not yet projected ``read_delay`` seconds later,
    ``exp(-(mu - lambda) * read_delay)`` (the sojourn time is exponential)."""
    if write_rate >= projector_rate:
        return 1.0
    return math.exp(-(projector_rate - write_rate) * read_delay)


def theory_projection_delay(write_rate: float, projector_rate: float) -> float:
    """M/M/1: mean time from a write until it is projected, 1 / (mu - lambda) seconds."""
    return math.inf if write_rate >= projector_rate else 1 / (projector_rate - write_rate)


def run_staleness(write_rate: float = 8.0, projector_rate: float = 10.0, *,
                  read_rate: float = 20.0, duration: float = 300.0, accounts: int = 200,
                  read_delay: float = 0.2, read_your_writes: bool = False,
                  poll_interval: float = 0.01,
                  seed: int = 1) -> StalenessResult:
    """One run of the staleness model (see the module docstring)."""
    require_positive("write_rate", write_rate)
    require_positive("projector_rate", projector_rate)
    require_positive("read_rate", read_rate)
    require_positive("duration", duration)
    require_int_at_least("accounts", accounts, 1)
    require_positive("poll_interval", poll_interval)
    require_finite_non_negative("read_delay", read_delay)
    streams = RandomStreams(seed)
    writes, service, reads, pick = (streams.stream(n) for n in
                                    ("writes", "service", "reads", "pick"))
    env = simpy.Environment()
    store = InMemoryEventStore()
    bus = bank_command_bus(store, env)
    model = InMemoryBankReadModel()
    projector = Projector(store, model, bank_codec(), batch_size=1)
    for i in range(accounts):
        bus.dispatch(OpenAccount(f"acct-{i}", f"owner-{i % 5}"))
    projector.catch_up()
    written_at: dict[int, float] = {}
    projected_delay: list[float] = []
    news: list[simpy.Event] = [env.event()]
    read_times: list[float] = []
    lags: list[int] = []
    staleness: list[float] = []
    own = {"reads": 0, "stale": 0}
    waits: list[float] = []

    def project() -> Generator[Any, Any, None]:
        while True:
            if projector.position >= store.head_position():
                yield news[0]
                continue
            yield env.timeout(service.expovariate(projector_rate))
            projector.poll()
            projected_delay.append(env.now - written_at[projector.position])

    def write_then_read(account: str) -> Generator[Any, Any, None]:
        result: CommandResult = bus.dispatch(Deposit(account, 1))
        written_at[result.position] = env.now
        event, news[0] = news[0], env.event()
        event.succeed()
        own["reads"] += 1
        yield env.timeout(read_delay)
        if read_your_writes:
            start = env.now
            yield from simpy_await_position(env, projector, result.position, duration,
                                            poll_interval=poll_interval)
            waits.append(env.now - start)
        view = model.account(account)
        if view is None or view.version < result.version:
            own["stale"] += 1

    def writers() -> Generator[Any, Any, None]:
        while True:
            yield env.timeout(writes.expovariate(write_rate))
            env.process(write_then_read(f"acct-{pick.randrange(accounts)}"))

    def readers() -> Generator[Any, Any, None]:
        while True:
            yield env.timeout(reads.expovariate(read_rate))
            head, seen = store.head_position(), projector.position
            read_times.append(env.now)
            lags.append(head - seen)
            staleness.append(env.now - written_at[seen + 1] if head > seen else 0.0)

    env.process(project())
    env.process(writers())
    env.process(readers())
    env.run(until=duration)
    return StalenessResult(write_rate, projector_rate, read_your_writes,
                           np.array(read_times), np.array(lags, dtype=int),
                           np.array(staleness), np.array(projected_delay),
                           own["reads"], own["stale"], np.array(waits), read_delay)


def staleness_defaults() -> str:
    """The staleness model's default parameters, one per line (what the prose quotes)."""
    units = {"write_rate": "deposits/s (Poisson)", "projector_rate": "events/s (exponential)",
             "read_rate": "reads/s (Poisson)", "duration": "simulated s",
             "accounts": "accounts", "read_delay": "s from a deposit to its writer's read",
             "poll_interval": "s between checks of a read-your-writes wait"}
    return "\n".join(
        f"{name:<15}{parameter.default:<7g}{units.get(name, '')}".rstrip()
        for name, parameter in inspect.signature(run_staleness).parameters.items()
        if name in units)


def theory_read_your_writes_wait(write_rate: float, projector_rate: float,
                                 read_delay: float, poll_interval: float = 0.0) -> float:
    """M/M/1: mean extra wait of a read-your-writes read issued ``read_delay`` s after the
    write, ``P(S > d) * (E[S] + poll_interval / 2)``: the sojourn time is memoryless, and
    a reader that polls notices the projection on average half an interval late."""
    if write_rate >= projector_rate:
        return math.inf
    return theory_own_read_stale(write_rate, projector_rate, read_delay) * (
        1 / (projector_rate - write_rate) + poll_interval / 2)


def staleness_spread(write_rate: float, projector_rate: float = 10.0, *,
                     seeds: Sequence[int] = tuple(range(1, 11)), duration: float = 1000.0,
                     read_delay: float = 0.2,
                     read_your_writes: bool = False) -> dict[str, tuple[float, float]]:
    """Replicate :func:`run_staleness` over ``seeds``: for each figure the tests compare
    with theory, its mean over the runs and the standard deviation of one run.

    Keys: ``lag`` (mean events behind), ``delay`` (mean projection delay, s),
    ``own_stale`` (fraction of own reads that are stale) and, with ``read_your_writes``,
    ``wait`` (mean extra wait, s) and ``no_wait`` (fraction of own reads that wait 0).
    """
    if len(seeds) < 2:
        raise ValueError(f"seeds must hold at least 2 seeds to measure a spread, got {seeds!r}")
    figures: dict[str, list[float]] = {}
    for seed in seeds:
        r = run_staleness(write_rate, projector_rate, duration=duration, read_delay=read_delay,
                          read_your_writes=read_your_writes, seed=seed)
        values = {"lag": r.mean_lag, "delay": float(r.projection_delays.mean()),
                  "own_stale": r.own_stale_fraction}
        if read_your_writes:
            values["wait"] = r.mean_wait
            values["no_wait"] = float((r.own_read_waits == 0).mean())
        for name, value in values.items():
            figures.setdefault(name, []).append(value)
    return {name: (float(np.mean(v)), float(np.std(v, ddof=1))) for name, v in figures.items()}


def staleness_table(write_rates: tuple[float, ...] = (2.0, 5.0, 8.0, 9.0), *,
                    projector_rate: float = 10.0, read_delay: float = 0.2,
                    duration: float = 1000.0, seed: int = 1) -> str:
    """Lag, projection delay and stale own reads: M/M/1 theory beside simulation, with
    the standard error of the simulated lag (batch means) and how many standard errors
    it lies from theory."""
    rows = []
    for rate in write_rates:
        r = run_staleness(rate, projector_rate, duration=duration, read_delay=read_delay,
                          seed=seed)
        theory, error = theory_mean_lag(rate, projector_rate), r.lag_standard_error()
        rows.append([rate, r.rho, theory, round(r.mean_lag, 3), round(error, 3),
                     round((r.mean_lag - theory) / error, 1),
                     theory_projection_delay(rate, projector_rate),
                     round(float(r.projection_delays.mean()), 3),
                     round(theory_own_read_stale(rate, projector_rate, read_delay), 3),
                     round(r.own_stale_fraction, 3)])
    return format_table(["writes/s", "rho", "lag theory", "lag sim", "± SE", "SEs off",
                         "delay theory (s)", "delay sim (s)", "own stale theory",
                         "own stale sim"], rows)


def read_your_writes_table(write_rate: float = 8.0, projector_rate: float = 10.0, *,
                           read_delay: float = 0.2, duration: float = 1000.0,
                           seed: int = 1) -> str:
    """Own-write reads with and without read-your-writes: stale fraction and extra wait."""
    rows = []
    for ryw in (False, True):
        r = run_staleness(write_rate, projector_rate, duration=duration,
                          read_delay=read_delay, read_your_writes=ryw, seed=seed)
        waits = r.own_read_waits if len(r.own_read_waits) else np.zeros(1)
        theory = theory_read_your_writes_wait(write_rate, projector_rate, read_delay,
                                              poll_interval=0.01)
        rows.append(["wait for position" if ryw else "read at once", r.own_reads,
                     r.own_stale_fraction, theory if ryw else 0.0, float(waits.mean()),
                     float(np.percentile(waits, 99))])
    return format_table(["client", "own reads", "stale", "mean wait theory (s)",
                         "mean wait sim (s)", "p99 wait sim (s)"], rows)


def draw_staleness(write_rate: float = 8.0, projector_rate: float = 10.0,
                   seed: int = 1, duration: float = 120.0) -> Figure:
    """Lag over time (left), staleness distribution (middle), own-read cost (right).

    One run: the waits of read-your-writes are those the same run's own reads would have
    had (:attr:`StalenessResult.waits_if_waiting`)."""
    plain = run_staleness(write_rate, projector_rate, duration=duration, seed=seed)
    fig, (lag_ax, stale_ax, cost_ax) = subplots(1, 3, width=10, height=3.6,
                                                width_ratios=[1.6, 1, 1])
    lag_ax.step(plain.read_times, plain.lag, where="post", color=color("equal"),
                linewidth=1.0, label=f"simulated, mean {plain.mean_lag:.2f}")
    theory = theory_mean_lag(write_rate, projector_rate)
    if math.isfinite(theory):
        lag_ax.axhline(theory, color="black", linestyle="--",
                       label=f"M/M/1 theory {theory:.2f}")
    lag_ax.legend(loc="upper left", fontsize=8)
    lag_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    label(lag_ax, title=f"Read model lag (rho = {plain.rho:.2f})", xlabel="time (s)",
          ylabel="events behind the write model")
    stale_ax.hist(plain.staleness, bins=30, color=color("equal"))
    label(stale_ax, title="Staleness seen by readers", xlabel="staleness (s)",
          ylabel="reads")
    names = ["read at once", "wait for\nposition"]
    stale = [100 * plain.own_stale_fraction, 0.0]
    waits = plain.waits_if_waiting
    mean_wait = float(waits.mean()) if len(waits) else 0.0
    bars = cost_ax.bar(names, stale, color=[color("guide"), color("success")])
    cost_ax.bar_label(bars, labels=[f"{stale[0]:.0f}% stale",
                                    f"0% stale\n+{1000 * mean_wait:.0f} ms\nmean wait"],
                      fontsize=8)
    cost_ax.set_ylim(0, 115)
    label(cost_ax, title=f"Own read {plain.read_delay:g} s later", xlabel="client",
          ylabel="stale own reads (%)")
    return fig


def staleness_explorer() -> Explorer:
    """Sliders: write rate and projector speed (events per second)."""
    return Explorer(draw_staleness, {
        "write_rate": float_slider("writes/s", 8.0, 1.0, 9.0, 0.5),
        "projector_rate": float_slider("projector (events/s)", 10.0, 10.0, 30.0, 1.0),
    })


# ============================================================================ the guide


class GuideSketchProjector:
    """The guide's ``InMemoryProjector``: *pushed* each event by a publisher."""

    def __init__(self, read_model: InMemoryBankReadModel, codec: EventCodec) -> None:
        self.read_model = read_model
        self.codec = codec

    def project(self, record: RecordedEvent) -> None:
        self.read_model.apply(record, self.codec.decode(record.event_type, record.data))


class GuideSketchCqrsService:
    """The guide's ``CqrsService``: a command bus, a query bus and an event publisher.

    ``execute_command`` dispatches the command and returns; the publishing step is only
    a comment in the guide ("发布事件 — 在实际实现中，可能需要从命令处理程序获取生成的事件",
    "publish the events — in a real implementation the generated events may have to be
    obtained from the command handler"), so the publisher (here: the projector) is never
    called.
    """

    def __init__(self, command_bus: CommandBus[BankAccount],
                 event_publisher: GuideSketchProjector) -> None:
        self.command_bus = command_bus
        self.event_publisher = event_publisher

    def execute_command(self, command: object) -> CommandResult:
        result = self.command_bus.dispatch(command)
        # 发布事件 (publish the events)
        # 在实际实现中，可能需要从命令处理程序获取生成的事件
        # (in a real implementation, the generated events may have to be obtained from
        # the command handler)
        return result


@dataclass(frozen=True)
class PitfallResult:
    """The true total balance and what readers saw, over time, per design."""

    times: np.ndarray
    truth: np.ndarray
    seen: dict[str, np.ndarray]


def run_guide_pitfall(write_rate: float = 5.0, projector_rate: float = 20.0, *,
                      duration: float = 30.0, accounts: int = 5, seed: int = 1) -> PitfallResult:
    """Deposits through the guide's service and through the fix; readers sum balances."""
    require_positive("write_rate", write_rate)
    require_positive("projector_rate", projector_rate)
    require_positive("duration", duration)
    require_int_at_least("accounts", accounts, 1)
    streams = RandomStreams(seed)
    writes, service, pick = (streams.stream(n) for n in ("writes", "service", "pick"))
    env = simpy.Environment()
    ids = [f"acct-{i}" for i in range(accounts)]
    guide_store, fixed_store = InMemoryEventStore(), InMemoryEventStore()
    guide_model, fixed_model = InMemoryBankReadModel(), InMemoryBankReadModel()
    guide = GuideSketchCqrsService(bank_command_bus(guide_store, env),
                                   GuideSketchProjector(guide_model, bank_codec()))
    fixed_bus = bank_command_bus(fixed_store, env)
    projector = Projector(fixed_store, fixed_model, bank_codec(), batch_size=1)
    truth_total = [0]
    times: list[float] = []
    truth: list[int] = []
    seen: dict[str, list[int]] = {"guide": [], "fixed": []}

    def total(model: InMemoryBankReadModel) -> int:
        return sum(v.balance for v in (model.account(i) for i in ids) if v is not None)

    def writer() -> Generator[Any, Any, None]:
        for i in ids:
            guide.execute_command(OpenAccount(i, "ann"))
            fixed_bus.dispatch(OpenAccount(i, "ann"))
        while True:
            yield env.timeout(writes.expovariate(write_rate))
            command = Deposit(ids[pick.randrange(accounts)], 10)
            guide.execute_command(command)
            fixed_bus.dispatch(command)
            truth_total[0] += 10

    def project() -> Generator[Any, Any, None]:
        while True:
            yield env.timeout(service.expovariate(projector_rate))
            projector.poll()

    def reader() -> Generator[Any, Any, None]:
        while True:
            times.append(env.now)
            truth.append(truth_total[0])
            seen["guide"].append(total(guide_model))
            seen["fixed"].append(total(fixed_model))
            yield env.timeout(0.1)

    env.process(writer())
    env.process(project())
    env.process(reader())
    env.run(until=duration)
    return PitfallResult(np.array(times), np.array(truth),
                         {k: np.array(v) for k, v in seen.items()})


def pitfall_table(result: PitfallResult) -> str:
    """Final true total beside what each design's readers see."""
    return format_table(["design", "true total (cents)", "read model total (cents)"],
                        [[name, int(result.truth[-1]), int(values[-1])]
                         for name, values in result.seen.items()])


def draw_guide_pitfall(seed: int = 1) -> Figure:
    """Total balance: the truth, the fix's read model, the guide's read model."""
    result = run_guide_pitfall(seed=seed)
    fig, ax = subplots(1, 1, width=9, height=3.8)
    ax.step(result.times, result.truth, where="post", color=color("theory"),
            linestyle="--", label="write model (truth)")
    ax.step(result.times, result.seen["fixed"], where="post", color=color("success"),
            label="fix: projector pulls from the event store")
    ax.step(result.times, result.seen["guide"], where="post", color=color("guide"),
            linewidth=2.5, label="guide: events never published")
    ax.legend(loc="upper left")
    label(ax, title="Total balance that readers see", xlabel="time (s)",
          ylabel="total balance (cents)")
    return fig
