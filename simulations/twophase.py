"""Two-phase commit and sagas contending for the same rows, in SimPy (guide section 5.2,
Saga 模式与两阶段提交).

Orders arrive (a Poisson stream) and each buys one or two of a few hot items of a stock
database. An order runs either as

* **two-phase commit**, through the library's
  :class:`~patterns.consistency.twophase.TwoPhaseCoordinator`: it locks its item rows in
  the stock database (a :class:`~patterns.consistency.twophase.LockingParticipant`, rows
  locked in name order, waiting while another transaction holds one) and a card row in
  the payments database, works for ``work`` seconds (the order's work and the prepare
  round trip, locks held), then the coordinator collects the votes, logs its decision and
  sends it. For a share ``crash_rate`` of these transactions the coordinator crashes
  right after logging the decision and is back ``downtime`` seconds later: meanwhile its
  participants stay prepared, holding their locks, and every order that needs one of
  those rows waits; or
* a **saga**, through the library's :class:`~patterns.consistency.saga.SagaOrchestrator`:
  ``reserve`` (a local write to each item row, committed and visible at once), ``charge``
  and ``ship``, each taking ``step_time``; a declined card (``decline_rate``) makes the
  orchestrator compensate: the reservation is given back. A saga holds no lock between
  its steps, so it never makes anyone wait; but a local write must still wait while a
  two-phase transaction holds the row, and a reservation that is later given back was
  visible meanwhile (an intermediate state other orders could read).

``saga_share`` = 0 gives the 2PC-only model of :func:`twophase_explorer`.

The orchestrator's ``run()`` is a blocking call while a saga's steps take simulated time,
so each saga runs in a worker thread in lock-step with its SimPy process (:class:`_Lockstep`):
exactly one of them runs at any moment, so the run stays deterministic.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator

from patterns._validation import (
    require_finite_non_negative,
    require_int_at_least,
    require_positive,
    require_unit_interval,
)
from patterns.consistency.saga import (
    InMemorySagaLog,
    SagaOrchestrator,
    SagaOutcome,
    SagaStep,
    StepContext,
)
from patterns.consistency.twophase import (
    Decision,
    InMemoryDecisionLog,
    LockingParticipant,
    TwoPhaseCoordinator,
)
from patterns.resilience.backoff import ConstantBackoff
from patterns.resilience.retry import RetryPolicy, StopAfterAttempts
from simulations.kit.clock import SimClock
from simulations.kit.plotting import color, label, subplot_mosaic, subplots
from simulations.kit.rng import RandomStreams
from simulations.kit.tables import format_table
from simulations.kit.widgets import Explorer, float_slider
from simulations.saga import _Crash, _CrashingLog  # the same crash after the decision

__all__ = [
    "ContentionResult",
    "OrderRecord",
    "contention_table",
    "draw_contention",
    "draw_twophase",
    "run_contention",
    "twophase_explorer",
]

SAGA_STEPS: tuple[str, ...] = ("reserve", "charge", "ship")
INITIAL_STOCK = 1000
"""Units of each item at the start (enough that no order finds an item sold out)."""
WORK = 0.3
"""Default seconds a two-phase transaction holds its rows before the vote."""


# ============================================================================ plumbing


class _Payments(LockingParticipant):
    """The payments database: votes no for a declined card."""

    def __init__(self, clock: SimClock) -> None:
        super().__init__("payments", clock=clock)
        self.declined: set[str] = set()

    def prepare(self, txid: str) -> bool:
        return txid not in self.declined and super().prepare(txid)


class _Lockstep:
    """Runs ``call()`` in a worker thread, in lock-step with a SimPy process.

    Inside ``call``, :meth:`wait` hands a SimPy event (made by a function, on the SimPy
    side) to the process and blocks the worker until the event has happened. The SimPy
    side blocks while the worker runs, so exactly one of the two runs at any moment.
    """

    def __init__(self, env: simpy.Environment, call: Callable[[], Any]) -> None:
        self.env = env
        self.call = call
        self._to_worker = threading.Semaphore(0)
        self._to_sim = threading.Semaphore(0)
        self._request: Callable[[], simpy.Event] | None = None
        self._value: Any = None
        self._done = False
        self._result: Any = None
        self._error: BaseException | None = None

    def wait(self, make_event: Callable[[], simpy.Event]) -> Any:
        """(worker) Wait in simulated time for the event ``make_event()`` returns."""
        self._request = make_event
        self._to_sim.release()
        self._to_worker.acquire()
        return self._value

    def sleep(self, seconds: float) -> None:
        """(worker) Let ``seconds`` of simulated time pass."""
        self.wait(lambda: self.env.timeout(seconds))

    def _work(self) -> None:
        self._to_worker.acquire()
        try:
            self._result = self.call()
        except BaseException as error:
            self._error = error
        finally:
            self._done = True
            self._to_sim.release()

    def process(self) -> Generator[simpy.Event, Any, Any]:
        """(SimPy) The process body: start the worker, serve its waits, return its result."""
        threading.Thread(target=self._work, name="saga-lockstep", daemon=True).start()
        self._to_worker.release()
        self._to_sim.acquire()
        while not self._done:
            assert self._request is not None
            self._value = yield self._request()
            self._to_worker.release()
            self._to_sim.acquire()
        if self._error is not None:
            raise self._error
        return self._result


# ============================================================================ the model


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """One order: how it ran, how long it waited for row locks, what it held or showed."""

    order: int
    kind: str
    """"2pc" or "saga"."""
    items: tuple[str, ...]
    arrived: float
    ended: float
    succeeded: bool
    """Committed (2PC) or completed (saga); else aborted or compensated."""
    waits: tuple[tuple[float, float], ...]
    """(start, end) of each wait for a row lock held by a two-phase transaction."""
    row_locks: tuple[tuple[str, float], ...]
    """2PC: (item, when its row was locked); every row is released when the order ends."""
    crashed: bool
    """2PC: its coordinator crashed after logging the decision."""
    blocked: tuple[float, float] | None
    """2PC with a crash: (participants prepared, decision delivered)."""
    prepared_participants: int
    """2PC with a crash: how many participants were left prepared, holding locks."""
    reserved: tuple[float, float] | None
    """Saga: (reservation visible, saga ended): the intermediate state others could read."""

    @property
    def lock_hold(self) -> float | None:
        """2PC: seconds from the first row locked until the rows were released."""
        return self.ended - self.row_locks[0][1] if self.row_locks else None

    @property
    def lock_wait(self) -> float:
        """Seconds spent waiting for row locks."""
        return sum(end - start for start, end in self.waits)


@dataclass(frozen=True, slots=True)
class ContentionResult:
    """What :func:`run_contention` observed."""

    saga_share: float
    crash_rate: float
    downtime: float
    arrival_rate: float
    items: tuple[str, ...]
    orders: tuple[OrderRecord, ...]
    stock: tuple[int, ...]
    """Each item's stock at the end (it started at :data:`INITIAL_STOCK`)."""

    def of(self, kind: str) -> tuple[OrderRecord, ...]:
        return tuple(o for o in self.orders if o.kind == kind)

    @property
    def end(self) -> float:
        return max((o.ended for o in self.orders), default=0.0)

    @property
    def crashes(self) -> int:
        return sum(o.crashed for o in self.orders)

    def lock_holds(self) -> np.ndarray:
        """Seconds each two-phase transaction held its rows."""
        return np.array([o.lock_hold for o in self.orders if o.lock_hold is not None])

    def mean_lock_wait(self, kind: str | None = None) -> float:
        waits = [o.lock_wait for o in self.orders if kind is None or o.kind == kind]
        return float(np.mean(waits)) if waits else 0.0

    def phantom_reservations(self) -> tuple[OrderRecord, ...]:
        """Sagas whose reservation was visible and then given back (compensated)."""
        return tuple(o for o in self.of("saga") if not o.succeeded and o.reserved)

    def commits_per_second(self, bin_seconds: float) -> tuple[np.ndarray, np.ndarray]:
        """(bin starts, successful orders ended per second in each bin)."""
        edges = np.arange(0.0, self.end + bin_seconds, bin_seconds)
        ends = [o.ended for o in self.orders if o.succeeded]
        counts, _ = np.histogram(ends, bins=edges)
        return edges[:-1], counts / bin_seconds

    def level(self, spans: Sequence[tuple[float, float, float]]) -> tuple[np.ndarray, np.ndarray]:
        """Step function (times, values) of the sum of ``(start, end, weight)`` spans."""
        changes: dict[float, float] = {}
        for start, end, weight in spans:
            changes[start] = changes.get(start, 0.0) + weight
            changes[end] = changes.get(end, 0.0) - weight
        times = [0.0, *sorted(changes)]
        values = np.cumsum([0.0, *(changes[t] for t in times[1:])])
        return np.array([*times, max(self.end, times[-1])]), np.append(values, values[-1])

    def blocked_participants(self) -> tuple[np.ndarray, np.ndarray]:
        """Participants prepared and waiting for a crashed coordinator, over time."""
        return self.level([(o.blocked[0], o.blocked[1], o.prepared_participants)
                           for o in self.orders if o.blocked])

    def waiting_orders(self, kind: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Orders waiting for a row lock, over time."""
        return self.level([(s, e, 1.0) for o in self.orders
                           if kind is None or o.kind == kind for s, e in o.waits])


class _Rows:
    """Row locks as SimPy sees them: who waits for which row, and waking them."""

    def __init__(self, env: simpy.Environment, stock: LockingParticipant) -> None:
        self.env = env
        self.stock = stock
        self.waiters: dict[str, list[simpy.Event]] = {}

    def locked(self, item: str) -> bool:
        return item in self.stock.locked_keys()

    def released(self, item: str) -> simpy.Event:
        event = self.env.event()
        self.waiters.setdefault(item, []).append(event)
        return event

    def wake(self, items: Sequence[str]) -> None:
        for item in items:
            for event in self.waiters.pop(item, []):
                event.succeed()


def run_contention(orders: int = 120, *, saga_share: float = 0.5, crash_rate: float = 0.05,
                   downtime: float = 20.0, arrival_rate: float = 2.0, items: int = 6,
                   two_items: float = 0.5, work: float = WORK, step_time: float = 0.2,
                   decline_rate: float = 0.2, seed: int = 1) -> ContentionResult:
    """Simulate ``orders`` orders arriving at ``arrival_rate`` per second on ``items`` hot
    items (each order buys one, or two with probability ``two_items``).

    A share ``saga_share`` of the orders runs as sagas, the others as two-phase commit.
    ``crash_rate`` of the two-phase transactions (exactly ``round(crash_rate x their
    number)``, chosen at random) lose their coordinator right after it logged its
    decision; it is back ``downtime`` seconds later and recovers. ``work``: seconds a
    two-phase transaction holds its locks before the vote (its work and the prepare round
    trip). ``step_time``: seconds per saga step or compensation. ``decline_rate``: cards
    declined (2PC: the payments database votes no; saga: ``charge`` fails and the saga
    compensates).
    """
    require_int_at_least("orders", orders, 1)
    require_unit_interval("saga_share", saga_share)
    require_unit_interval("crash_rate", crash_rate)
    require_finite_non_negative("downtime", downtime)
    require_positive("arrival_rate", arrival_rate)
    require_int_at_least("items", items, 1)
    require_unit_interval("two_items", two_items)
    require_finite_non_negative("work", work)
    require_finite_non_negative("step_time", step_time)
    require_unit_interval("decline_rate", decline_rate)
    streams = RandomStreams(seed)
    arrivals = np.cumsum(streams.numpy("arrivals").exponential(1 / arrival_rate, orders))
    shape = streams.stream("orders")
    names = tuple(f"item-{i}" for i in range(items))
    plans = []
    for _ in range(orders):
        count = 2 if items > 1 and shape.random() < two_items else 1
        plans.append((tuple(sorted(shape.sample(names, count))), shape.random() < decline_rate,
                      shape.random()))
    kind_rng = streams.stream("kinds")
    kinds = ["saga" if kind_rng.random() < saga_share else "2pc" for _ in range(orders)]
    two_phase = [i for i, kind in enumerate(kinds) if kind == "2pc"]
    crash_keys = streams.stream("crashes")
    ranked = sorted(two_phase, key=lambda _i: crash_keys.random())
    crashers = set(ranked[:round(crash_rate * len(two_phase))])

    env = simpy.Environment()
    clock = SimClock(env)
    stock = LockingParticipant("stock", clock=clock)
    stock.data.update({name: INITIAL_STOCK for name in names})
    payments = _Payments(clock)
    rows = _Rows(env, stock)
    saga_log = InMemorySagaLog(clock=clock)
    records: list[OrderRecord] = []
    model = _Model(env, clock, stock, payments, rows, saga_log, records, downtime, work,
                   step_time)
    for order, (arrival, kind, (chosen, declined, _)) in enumerate(
            zip(arrivals, kinds, plans, strict=True)):
        if kind == "2pc":
            env.process(model.two_phase(order, float(arrival), chosen, declined,
                                        order in crashers))
        else:
            env.process(model.saga(order, float(arrival), chosen, declined))
    env.run()
    records.sort(key=lambda r: r.order)
    return ContentionResult(saga_share, crash_rate, float(downtime), arrival_rate, names,
                            tuple(records), tuple(int(stock.data[n]) for n in names))


class _Model:
    """The two kinds of order, as SimPy processes over shared databases."""

    def __init__(self, env: simpy.Environment, clock: SimClock, stock: LockingParticipant,
                 payments: _Payments, rows: _Rows, saga_log: InMemorySagaLog,
                 records: list[OrderRecord], downtime: float, work: float,
                 step_time: float) -> None:
        self.env = env
        self.clock = clock
        self.stock = stock
        self.payments = payments
        self.rows = rows
        self.saga_log = saga_log
        self.records = records
        self.downtime = downtime
        self.work = work
        self.step_time = step_time
        self.participants = {"stock": stock, "payments": payments}
        self.send_retry = RetryPolicy(stop=StopAfterAttempts(1), backoff=ConstantBackoff(0.0),
                                      sleep=lambda _s: None)

    # ---------------------------------------------------------------- two-phase commit

    def two_phase(self, order: int, arrival: float, items: tuple[str, ...], declined: bool,
                  crash: bool) -> Generator[simpy.Event, Any, None]:
        env = self.env
        yield env.timeout(max(0.0, arrival - env.now))
        txid = f"order-{order}"
        waits: list[tuple[float, float]] = []
        locks: list[tuple[str, float]] = []
        for item in items:
            if self.rows.locked(item):
                started = env.now
                while self.rows.locked(item):
                    yield self.rows.released(item)
                waits.append((started, env.now))
            self.stock.stage(txid, item, self.stock.data[item] - 1)  # type: ignore[operator]
            locks.append((item, env.now))
        self.payments.stage(txid, f"card-{order}", -20.0)
        if declined:
            self.payments.declined.add(txid)
        yield env.timeout(self.work)
        log = InMemoryDecisionLog(clock=self.clock)
        # the participants answer at once (in simulated time): no thread per vote
        coordinator = TwoPhaseCoordinator(self.participants, _CrashingLog(log, crash),
                                          decision_retry=self.send_retry, clock=self.clock,
                                          prepare_in_threads=False)
        blocked: tuple[float, float] | None = None
        prepared = 0
        try:
            result = coordinator.execute(txid)
        except _Crash:
            started = env.now
            prepared = sum(p.is_prepared(txid) for p in self.participants.values())
            yield env.timeout(self.downtime)
            (result,) = TwoPhaseCoordinator(self.participants, log, clock=self.clock).recover()
            blocked = (started, env.now)
        assert result.finished
        self.rows.wake(items)
        self.records.append(OrderRecord(
            order, "2pc", items, arrival, env.now, result.decision is Decision.COMMIT,
            tuple(waits), tuple(locks), crash, blocked, prepared, None))

    # ---------------------------------------------------------------- sagas

    def saga(self, order: int, arrival: float, items: tuple[str, ...],
             declined: bool) -> Generator[simpy.Event, Any, None]:
        env = self.env
        yield env.timeout(max(0.0, arrival - env.now))
        waits: list[tuple[float, float]] = []
        visible: dict[str, float] = {}
        lockstep: _Lockstep

        def write(delta: int) -> None:
            for item in items:
                if self.rows.locked(item):  # a local write waits for a 2PC row lock
                    started = env.now
                    while self.rows.locked(item):
                        lockstep.wait(lambda item=item: self.rows.released(item))
                    waits.append((started, env.now))
                self.stock.data[item] += delta  # type: ignore[operator]

        def reserve(_ctx: StepContext) -> None:
            lockstep.sleep(self.step_time)
            write(-1)
            visible.setdefault("from", env.now)

        def give_back(_ctx: StepContext) -> None:
            lockstep.sleep(self.step_time)
            if "from" in visible and "until" not in visible:
                write(+1)
                visible["until"] = env.now

        def charge(_ctx: StepContext) -> None:
            lockstep.sleep(self.step_time)
            if declined:
                raise RuntimeError("card declined")

        def pause(_ctx: StepContext) -> None:
            lockstep.sleep(self.step_time)

        steps = [SagaStep("reserve", reserve, give_back), SagaStep("charge", charge, pause),
                 SagaStep("ship", pause, pause)]
        orchestrator = SagaOrchestrator("order", steps, self.saga_log, clock=self.clock,
                                        compensation_retry=self.send_retry)
        lockstep = _Lockstep(env, lambda: orchestrator.run(f"order-{order}"))
        result = yield env.process(lockstep.process())
        succeeded = result.outcome is SagaOutcome.COMPLETED
        shown = (visible["from"], visible.get("until", env.now)) if "from" in visible else None
        self.records.append(OrderRecord(order, "saga", items, arrival, env.now, succeeded,
                                        tuple(waits), (), False, None, 0, shown))


# ============================================================================ figures

_BLUE, _RED, _ORANGE, _GREEN = "#1f77b4", "#d62728", "#ff7f0e", "#2ca02c"
BIN_SECONDS = 5.0
"""Width of the throughput bins, in seconds (wider when the run is long: 40 bins at most)."""


def _shade_outages(ax: Any, result: ContentionResult) -> None:
    for order in result.orders:
        if order.blocked:
            ax.axvspan(*order.blocked, color=_RED, alpha=0.07, linewidth=0)


def _no_contention_hold(result: ContentionResult, work: float) -> float:
    """Mean lock-holding time if no transaction ever waited: work + crashes x downtime."""
    two_phase = result.of("2pc")
    crashed = sum(o.crashed for o in two_phase) / len(two_phase) if two_phase else 0.0
    return work + crashed * result.downtime


def draw_twophase(crash_rate: float = 0.02, downtime: float = 20.0, *,
                  orders: int = 120, seed: int = 1) -> Figure:
    """Two-phase commit only: participants blocked while a coordinator is down, orders
    waiting for the rows they hold, throughput, and how long rows stay locked."""
    result = run_contention(orders, saga_share=0.0, crash_rate=crash_rate,
                            downtime=downtime, seed=seed)
    fig, axes = subplot_mosaic([["time", "time"], ["rate", "hold"]], width=9.5, height=6.2)
    time_ax = axes["time"]
    times, waiting = result.waiting_orders()
    time_ax.step(times, waiting, where="post", color=_BLUE,
                 label="orders waiting for a locked row")
    times, blocked = result.blocked_participants()
    time_ax.fill_between(times, blocked, step="post", color=_RED, alpha=0.75,
                         label="participants prepared, holding locks, coordinator down")
    time_ax.set_xlim(0, result.end)
    time_ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2, fontsize=9)
    label(time_ax, title="", xlabel="simulated time (s)", ylabel="count")
    fig.suptitle(f"{result.crashes} coordinator crash(es) in {len(result.orders)} transactions, "
                 f"each down {downtime:g} s: the last order ends at {result.end:.0f} s",
                 fontweight="bold")
    rate_ax, hold_ax = axes["rate"], axes["hold"]
    width = max(BIN_SECONDS, float(np.ceil(result.end / 40 / BIN_SECONDS)) * BIN_SECONDS)
    starts, rate = result.commits_per_second(width)
    rate_ax.stairs(rate, np.append(starts, starts[-1] + width), fill=True, color=_BLUE,
                   alpha=0.8)
    rate_ax.axhline(result.arrival_rate, color=color("theory"), linestyle="--",
                    label=f"offered: {result.arrival_rate:g} orders/s")
    rate_ax.legend(loc="upper right", fontsize=9)
    label(rate_ax, title=f"Orders finished per second ({width:g} s bins)",
          xlabel="simulated time (s)", ylabel="orders / s")
    holds = result.lock_holds()
    estimate = _no_contention_hold(result, WORK)
    counts, edges = np.histogram(
        holds, bins=np.logspace(-1, np.log10(max(holds.max(), 1.0)) + 0.05, 25))
    hold_ax.stairs(counts, edges, fill=True, color=_BLUE, alpha=0.8)
    hold_ax.set_xscale("log")
    hold_ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
    hold_ax.xaxis.set_minor_locator(NullLocator())
    hold_ax.axvline(holds.mean(), color=_RED, label=f"mean {holds.mean():.2f} s")
    hold_ax.axvline(estimate, color=color("theory"), linestyle="--",
                    label=f"if nobody waited: {estimate:.2f} s")
    hold_ax.legend(loc="upper right", fontsize=9)
    label(hold_ax, title="How long a transaction holds its rows",
          xlabel="seconds (log scale)", ylabel="transactions")
    return fig


def twophase_explorer() -> Explorer:
    """Sliders: the share of transactions whose coordinator crashes, and its downtime."""
    return Explorer(lambda crash_rate, downtime: draw_twophase(crash_rate, downtime), {
        "crash_rate": float_slider("coordinator crash rate", 0.02, 0.01, 0.2, 0.01),
        "downtime": float_slider("downtime (s)", 20.0, 1.0, 60.0, 1.0, readout_format=".0f"),
    })


def _lane_boxes(spans: Sequence[tuple[int, float, float]], low: float,
                high: float) -> list[list[tuple[float, float]]]:
    return [[(start, lane + low), (end, lane + low), (end, lane + high), (start, lane + high)]
            for lane, start, end in spans]


def draw_contention(saga_share: float = 0.5, crash_rate: float = 0.05, downtime: float = 20.0,
                    *, orders: int = 120, seed: int = 1) -> Figure:
    """Sagas and 2PC on the same rows. Top: per stock row, the locks 2PC transactions hold
    (thick bars) and the saga reservations visible before their saga ended (thin bars).
    Bottom: orders of each kind waiting for a locked row."""
    result = run_contention(orders, saga_share=saga_share, crash_rate=crash_rate,
                            downtime=downtime, seed=seed)
    fig, (rows, waits) = subplots(2, 1, width=9.5, height=6.4, sharex=True,
                                  height_ratios=(1.4, 1.0))
    lane = {item: i for i, item in enumerate(result.items)}
    layers = (
        (_BLUE, "row locked by 2PC", -0.42, 0.08,
         [(lane[i], t, o.ended) for o in result.of("2pc") if not o.crashed
          for i, t in o.row_locks]),
        (_RED, "locked by 2PC, coordinator down", -0.42, 0.08,
         [(lane[i], t, o.ended) for o in result.of("2pc") if o.crashed for i, t in o.row_locks]),
        (_GREEN, "saga reservation, kept", 0.14, 0.42,
         [(lane[i], *o.reserved) for o in result.of("saga") if o.reserved and o.succeeded
          for i in o.items]),
        (_ORANGE, "saga reservation, later given back", 0.14, 0.42,
         [(lane[i], *o.reserved) for o in result.of("saga") if o.reserved and not o.succeeded
          for i in o.items]),
    )
    for colour, name, low, high, spans in layers:
        rows.add_collection(PolyCollection(_lane_boxes(spans, low, high), facecolors=colour,
                                           edgecolors=colour, linewidths=0.5, label=name))
    rows.set_yticks(range(len(result.items)), result.items)
    rows.set_ylim(len(result.items) - 0.5, -0.5)
    rows.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2, fontsize=9)
    label(rows, title="", xlabel="", ylabel="stock row")
    for kind, colour, name in (("2pc", _BLUE, "2PC orders"), ("saga", _ORANGE, "saga orders")):
        times, level = result.waiting_orders(kind)
        waits.step(times, level, where="post", color=colour, label=f"{name} waiting for a row")
    waits.legend(loc="upper right", fontsize=9)
    label(waits, title="", xlabel="simulated time (s)", ylabel="orders waiting")
    waits.set_xlim(0, result.end)
    fig.suptitle(f"{saga_share:.0%} sagas, {1 - saga_share:.0%} 2PC on {len(result.items)} hot "
                 f"items; {result.crashes} coordinator crash(es), each down {downtime:g} s",
                 fontweight="bold")
    return fig


def contention_table(shares: Sequence[float] = (0.0, 0.5, 1.0), crash_rate: float = 0.05,
                     downtime: float = 20.0, *, orders: int = 120, seed: int = 1) -> str:
    """The same orders with more or fewer sagas: waits for locks, and what sagas show."""
    rows = []
    for share in shares:
        r = run_contention(orders, saga_share=share, crash_rate=crash_rate,
                           downtime=downtime, seed=seed)
        waited = sum(o.lock_wait > 1.0 for o in r.orders)
        phantoms = r.phantom_reservations()
        shown = float(np.mean([o.reserved[1] - o.reserved[0] for o in phantoms
                               if o.reserved])) if phantoms else 0.0
        rows.append([f"{share:.0%}", len(r.of("2pc")), r.crashes, r.mean_lock_wait("2pc"),
                     r.mean_lock_wait("saga"), waited, len(phantoms), shown, round(r.end)])
    return format_table(["sagas", "2PC orders", "crashes", "2PC wait (s)", "saga wait (s)",
                         "orders waiting > 1 s", "reservations undone", "visible for (s)",
                         "last order ends (s)"], rows)
