"""Sagas and two-phase commit in simulated time (guide section 5.2, Saga 模式与两阶段提交).

Every model drives the real objects of :mod:`patterns.consistency.saga` and
:mod:`patterns.consistency.twophase`, each saga or transaction on its own
:class:`~patterns.clock.ManualClock` whose time the simulated work advances (a step
"takes" its duration by moving that clock). Orders are independent, so no shared event
queue is needed; times are seconds.

* :func:`run_sagas` -- many orders through a four-step saga (reserve, charge, ship,
  notify); a step fails with ``failure_rate``; compensations fail transiently and are
  retried. The result keeps each order's timeline (forward steps, the failure,
  compensations in reverse) and how long each order's intermediate state was visible.
* :func:`run_blocking` -- two-phase commit where the coordinator crashes after logging
  its decision with probability ``crash_rate`` and comes back ``downtime`` seconds
  later: how long participants stay prepared, holding their locks.
* Pitfalls: :class:`GuideSketchSaga` (in-memory progress, compensations neither retried
  nor idempotent) and :class:`GuideSketchTwoPhaseCommit` (a commit-phase failure only
  logged), each run beside the fix by :func:`compare_saga_pitfalls` and
  :func:`compare_commit_pitfall`.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from patterns._validation import (
    require_finite_non_negative,
    require_int_at_least,
    require_unit_interval,
)
from patterns.clock import ManualClock
from patterns.consistency.saga import (
    CompensationFailedError,
    InMemorySagaLog,
    SagaEvent,
    SagaOrchestrator,
    SagaOutcome,
    SagaStep,
    StepCompensated,
    StepCompleted,
    StepContext,
    StepFailed,
    StepStarted,
)
from patterns.consistency.twophase import (
    Decision,
    DecisionLog,
    InMemoryDecisionLog,
    LockingParticipant,
    PendingTransaction,
    TwoPhaseCoordinator,
)
from patterns.resilience.backoff import ExponentialBackoff
from patterns.resilience.retry import RetryPolicy, StopAfterAttempts
from simulations.kit.plotting import color, label, subplots
from simulations.kit.rng import RandomStreams
from simulations.kit.tables import format_table
from simulations.kit.widgets import Explorer, float_slider, int_slider

STEPS: tuple[str, ...] = ("reserve", "charge", "ship", "notify")
STEP_TIME = 0.2
"""Seconds one action or compensation takes."""


# ============================================================================ sagas


@dataclass(frozen=True, slots=True)
class Segment:
    """One bar of a timeline: ``kind`` is "forward", "failed" or "compensate"."""

    step: int
    kind: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class OrderTimeline:
    order: int
    start: float
    outcome: str
    segments: tuple[Segment, ...]

    @property
    def end(self) -> float:
        return self.segments[-1].end if self.segments else self.start


@dataclass(frozen=True, slots=True)
class SagaRunResult:
    """Timelines of every order, and the measured effects."""

    failure_rate: float
    timelines: tuple[OrderTimeline, ...]
    compensation_retries: int
    intermediate_seconds: tuple[float, ...]
    """Per order: seconds from its first effect until its final state (completed or undone)."""

    @property
    def completed(self) -> int:
        return sum(t.outcome == "completed" for t in self.timelines)

    @property
    def compensated(self) -> int:
        return sum(t.outcome == "compensated" for t in self.timelines)


class _Bookkeeper:
    """Participants' side of the model: deduplicated effects and flaky compensations."""

    def __init__(self, clock: ManualClock, rng: random.Random, failure_rate: float,
                 compensation_flakiness: float) -> None:
        self.clock = clock
        self.rng = rng
        self.failure_rate = failure_rate
        self.flakiness = compensation_flakiness
        self.done: set[str] = set()
        self.undone: set[str] = set()
        self.undo_effects = 0
        self.flaky_failures = 0

    def step(self, name: str) -> SagaStep:
        def action(ctx: StepContext) -> None:
            self.clock.advance(STEP_TIME)
            if ctx.step > 0 and self.rng.random() < self.failure_rate:
                raise RuntimeError(f"{name} refused")
            self.done.add(ctx.execution_id)

        def compensation(ctx: StepContext) -> None:
            self.clock.advance(STEP_TIME)
            if self.rng.random() < self.flakiness:
                self.flaky_failures += 1
                raise ConnectionError("participant unreachable")
            if ctx.execution_id not in self.undone:
                self.undone.add(ctx.execution_id)
                if ctx.execution_id in self.done:
                    self.undo_effects += 1

        return SagaStep(name, action, compensation)


def run_sagas(orders: int = 40, failure_rate: float = 0.1, *,
              compensation_flakiness: float = 0.2, arrival_gap: float = 0.5,
              seed: int = 1) -> SagaRunResult:
    """Run ``orders`` sagas through the real orchestrator; each step after the first
    fails with ``failure_rate``; each compensation attempt fails with
    ``compensation_flakiness`` and is retried (up to 8 attempts, exponential back-off)."""
    require_int_at_least("orders", orders, 1)
    require_unit_interval("failure_rate", failure_rate)
    require_unit_interval("compensation_flakiness", compensation_flakiness)
    streams = RandomStreams(seed)
    rng = streams.stream("faults")
    arrivals = streams.stream("arrivals")
    timelines = []
    intermediate = []
    retries = 0
    start = 0.0
    for order in range(orders):
        start += arrivals.expovariate(1 / arrival_gap)
        clock = ManualClock(start)
        keeper = _Bookkeeper(clock, rng, failure_rate, compensation_flakiness)
        retry = RetryPolicy(stop=StopAfterAttempts(8), backoff=ExponentialBackoff(0.1, cap=2.0),
                            clock=clock, sleep=clock.sleep)
        orchestrator = SagaOrchestrator("order", [keeper.step(n) for n in STEPS],
                                        InMemorySagaLog(), compensation_retry=retry,
                                        clock=clock)
        events: list[SagaEvent] = []
        orchestrator.listeners.add(events.append)
        result = orchestrator.run(f"order-{order}")
        retries += keeper.flaky_failures
        timelines.append(OrderTimeline(order, start, result.outcome.value,
                                       tuple(_segments(events, start))))
        first_effect = start + STEP_TIME
        intermediate.append(max(0.0, clock.now() - first_effect))
    return SagaRunResult(failure_rate, tuple(timelines), retries, tuple(intermediate))


def _segments(events: list[SagaEvent], start: float) -> list[Segment]:
    segments = []
    last = start
    for event in events:
        if isinstance(event, StepStarted):
            last = event.time
        elif isinstance(event, StepCompleted):
            segments.append(Segment(event.step, "forward", last, event.time))
            last = event.time
        elif isinstance(event, StepFailed):
            segments.append(Segment(event.step, "failed", last, event.time))
            last = event.time
        elif isinstance(event, StepCompensated):
            segments.append(Segment(event.step, "compensate", last, event.time))
            last = event.time
    return segments


_KIND_COLOR = {"forward": "#2ca02c", "failed": "#d62728", "compensate": "#ff7f0e"}
_KIND_LABEL = {"forward": "step done", "failed": "step failed",
               "compensate": "compensation (its retries included)"}
LETTER_LIMIT = 40
"""Above this many orders the rows are too thin for step letters: the timeline says so."""
_ROW_INCHES = 0.2


def draw_saga_timeline(orders: int = 30, failure_rate: float = 0.1, *, seed: int = 1) -> Figure:
    """One row per order, from its arrival: steps done (green), the failure (red),
    compensations in reverse (orange). The forward steps line up under their names at
    the top; failures and compensations are lettered with their step, up to
    :data:`LETTER_LIMIT` orders (above that the figure says the letters are left out)."""
    result = run_sagas(orders, failure_rate, seed=seed)
    fig, ax = subplots(width=9.5, height=_ROW_INCHES * min(orders, LETTER_LIMIT) + 1.9)
    letters = orders <= LETTER_LIMIT
    for kind, colour in _KIND_COLOR.items():
        bars = [(row, s.start - t.start, s.end - s.start, s.step)
                for row, t in enumerate(result.timelines) for s in t.segments if s.kind == kind]
        if not bars:
            continue
        ax.add_collection(PolyCollection(
            [[(x, y - 0.41), (x + w, y - 0.41), (x + w, y + 0.41), (x, y + 0.41)]
             for y, x, w, _ in bars],
            facecolors=colour, edgecolors="white", linewidths=0.6, label=_KIND_LABEL[kind]))
        if letters and kind != "forward":
            for y, left, width, step in bars:
                ax.text(left + width / 2, y, STEPS[step][0], ha="center", va="center",
                        fontsize=8, fontweight="bold", color="white", in_layout=False)
    ax.set_ylim(orders - 0.5, -0.5)
    ax.set_xlim(0, max(t.end - t.start for t in result.timelines) * 1.02)
    top = ax.secondary_xaxis("top")
    top.set_xticks([STEP_TIME * (i + 0.5) for i in range(len(STEPS))], STEPS, fontsize=8)
    top.tick_params(length=0)
    key = ("failed and compensating bars lettered by step: r reserve, c charge, s ship, n notify"
           if letters else f"above {LETTER_LIMIT} orders the rows are too thin for letters: "
           "compensations still undo the steps in reverse order")
    fig.legend(loc="outside upper left", ncols=3, fontsize=9, title=key, title_fontsize=9,
               alignment="left")
    label(ax, title=f"{result.completed} orders completed, {result.compensated} compensated "
                    f"(step failure rate {failure_rate:.0%})",
          xlabel="time since the order arrived (s)", ylabel="order")
    return fig


def saga_explorer() -> Explorer:
    """Sliders: number of orders and the failure rate of each step."""
    return Explorer(lambda orders, failure_rate: draw_saga_timeline(orders, failure_rate), {
        "orders": int_slider("orders", 30, 5, 60, 5),
        "failure_rate": float_slider("step failure rate", 0.1, 0.0, 0.5, 0.05),
    })


# ============================================================================ 2PC blocking


class _Crash(BaseException):
    """The coordinator process dies (not an Exception: nothing catches it)."""


class _CrashingLog(DecisionLog):
    """Wraps a log: after the decision is durable, the coordinator may crash."""

    def __init__(self, inner: DecisionLog, crash: bool) -> None:
        self.inner = inner
        self.crash = crash
        self.clock = inner.clock

    def begin(self, txid: str, participants: tuple[str, ...]) -> None:
        self.inner.begin(txid, participants)

    def decide(self, txid: str, decision: Decision) -> None:
        self.inner.decide(txid, decision)
        if self.crash:
            raise _Crash

    def decision(self, txid: str) -> Decision | None:
        return self.inner.decision(txid)

    def finish(self, txid: str) -> None:
        self.inner.finish(txid)

    def pending(self) -> list[PendingTransaction]:
        return self.inner.pending()


class _TimedParticipant(LockingParticipant):
    """Prepare takes ``STEP_TIME`` of the shared clock."""

    def prepare(self, txid: str) -> bool:
        vote = super().prepare(txid)
        assert isinstance(self.clock, ManualClock)
        self.clock.advance(STEP_TIME / 4)
        return vote


@dataclass(frozen=True, slots=True)
class BlockingResult:
    """Seconds each transaction's participants held their locks, prepared."""

    crash_rate: float
    downtime: float
    blocked: tuple[float, ...]
    crashed: tuple[bool, ...]

    @property
    def mean_blocked(self) -> float:
        return float(np.mean(self.blocked))

    def theory_mean(self, base: float) -> float:
        """Mean blocked time: ``base`` + crash_rate x downtime."""
        return base + self.crash_rate * self.downtime


def run_blocking(transactions: int = 200, crash_rate: float = 0.1, downtime: float = 30.0, *,
                 participants: int = 3, seed: int = 1) -> BlockingResult:
    """Two-phase commits; the coordinator crashes after logging with ``crash_rate`` and
    recovers ``downtime`` seconds later. Returns the longest lock-holding time per
    transaction (seconds participants stayed prepared)."""
    require_int_at_least("transactions", transactions, 1)
    require_unit_interval("crash_rate", crash_rate)
    require_finite_non_negative("downtime", downtime)
    require_int_at_least("participants", participants, 1)
    rng = RandomStreams(seed).stream("crashes")
    blocked = []
    crashed = []
    for tx in range(transactions):
        clock = ManualClock()
        parts = {f"p{i}": _TimedParticipant(f"p{i}", clock=clock) for i in range(participants)}
        txid = f"tx-{tx}"
        for p in parts.values():
            p.stage(txid, "row", tx)
        crash = rng.random() < crash_rate
        log = InMemoryDecisionLog()
        coordinator = TwoPhaseCoordinator(parts, _CrashingLog(log, crash), clock=clock,
                                          prepare_in_threads=False)
        try:
            coordinator.execute(txid)
        except _Crash:
            clock.advance(downtime)
            TwoPhaseCoordinator(parts, log, clock=clock).recover()
        blocked.append(max(p.blocked_for[txid] for p in parts.values()))
        crashed.append(crash)
    return BlockingResult(crash_rate, float(downtime), tuple(blocked), tuple(crashed))


def draw_blocking(crash_rate: float = 0.1, downtime: float = 30.0, *, orders: int = 200,
                  seed: int = 1) -> Figure:
    """Left: seconds 2PC participants hold locks. Right: seconds a saga's partial state
    is visible to readers (no locks held)."""
    blocking = run_blocking(orders, crash_rate, downtime, seed=seed)
    sagas = run_sagas(orders, 0.1, seed=seed)
    fig, (left, right) = subplots(1, 2, width=10.0, height=3.8)
    left.hist(blocking.blocked, bins=30, color=color("theory"))
    left.axvline(blocking.mean_blocked, color="#d62728", linestyle="--",
                 label=f"mean {blocking.mean_blocked:.2f} s")
    left.legend(fontsize=8)
    label(left, title="2PC: locks held while prepared", xlabel="seconds blocked",
          ylabel="transactions")
    right.hist(sagas.intermediate_seconds, bins=30, color="#ff7f0e")
    mean = float(np.mean(sagas.intermediate_seconds))
    right.axvline(mean, color="#d62728", linestyle="--", label=f"mean {mean:.2f} s")
    right.legend(fontsize=8)
    label(right, title="Saga: no locks, partial state visible", xlabel="seconds visible",
          ylabel="orders")
    return fig


def blocking_table(crash_rates: tuple[float, ...] = (0.0, 0.05, 0.2), downtime: float = 30.0,
                   seed: int = 1) -> str:
    """Mean lock-holding time of 2PC, simulated and in theory, per crash rate."""
    base = run_blocking(50, 0.0, downtime, seed=seed).mean_blocked
    rows = []
    for rate in crash_rates:
        result = run_blocking(400, rate, downtime, seed=seed)
        observed = sum(result.crashed) / len(result.crashed)
        rows.append([f"{rate:.0%}", f"{observed:.1%}", result.mean_blocked,
                     base + observed * downtime, max(result.blocked)])
    return format_table(["crash rate", "crashes seen", "mean blocked (s)",
                         "theory: base + crashes x downtime (s)", "max blocked (s)"], rows)


# ============================================================================ the guide


class GuideSketchSaga:
    """The guide's ``Saga``: progress kept in memory (``executed_steps``), compensations
    run once each, errors collected and the rest carried on; no ids to deduplicate."""

    def __init__(self, steps: list[SagaStep]) -> None:
        self.steps = steps
        self.executed_steps: list[int] = []

    def execute(self, saga_id: str, crash_at: int | None = None) -> str:
        for index, step in enumerate(self.steps):
            if crash_at == index:
                raise _Crash  # the process dies; executed_steps dies with it
            try:
                step.action(StepContext(saga_id, index, step.name, {}))
            except Exception:
                errors = self.compensate(saga_id)
                return "compensation_failed" if errors else "compensated"
            self.executed_steps.append(index)
        return "completed"

    def compensate(self, saga_id: str) -> list[BaseException]:
        errors: list[BaseException] = []
        for index in reversed(self.executed_steps):
            step = self.steps[index]
            try:
                step.compensation(StepContext(saga_id, index, step.name, {}))
            except Exception as error:
                errors.append(error)  # 记录错误但继续其他补偿: record the error, go on
        return errors


@dataclass(slots=True)
class _Ledger:
    """Counts effects; an effect left standing is an inconsistency."""

    rng: random.Random
    failure_rate: float
    flakiness: float
    done: set[str] = field(default_factory=set)
    undone: set[str] = field(default_factory=set)

    def steps(self) -> list[SagaStep]:
        def make(name: str) -> SagaStep:
            def action(ctx: StepContext) -> None:
                if ctx.step == len(STEPS) - 2 and self.rng.random() < self.failure_rate:
                    raise RuntimeError("ship refused")
                self.done.add(ctx.execution_id)

            def compensation(ctx: StepContext) -> None:
                if self.rng.random() < self.flakiness:
                    raise ConnectionError("unreachable")
                self.undone.add(ctx.execution_id)

            return SagaStep(name, action, compensation)

        return [make(n) for n in STEPS]

    def stranded(self, saga_id: str, outcome: str) -> bool:
        mine_done = {x for x in self.done if x.startswith(saga_id + "/")}
        mine_undone = {x for x in self.undone if x.startswith(saga_id + "/")}
        if outcome == "completed":
            return len(mine_done) < len(STEPS)
        return bool(mine_done - mine_undone)


def compare_saga_pitfalls(orders: int = 300, *, failure_rate: float = 0.5,
                          flakiness: float = 0.3, crash_rate: float = 0.2,
                          seed: int = 1) -> dict[str, dict[str, int]]:
    """Orders left inconsistent (some effect neither completed nor undone) by the guide's
    saga and by the orchestrator with a log, retries and recovery."""
    results: dict[str, dict[str, int]] = {}
    for which in ("guide", "fixed"):
        streams = RandomStreams(seed)
        rng, crashes = streams.stream("faults"), streams.stream("crashes")
        ledger = _Ledger(rng, failure_rate, flakiness)
        log = InMemorySagaLog()
        counts = {"orders": orders, "crashed": 0, "inconsistent": 0}
        for order in range(orders):
            saga_id = f"o{order}"
            crash_at = crashes.randrange(1, len(STEPS)) if crashes.random() < crash_rate else None
            counts["crashed"] += crash_at is not None
            if which == "guide":
                try:
                    outcome = GuideSketchSaga(ledger.steps()).execute(saga_id, crash_at)
                except _Crash:
                    outcome = "crashed"  # nothing remembers it: stranded
            else:
                outcome = _run_fixed(ledger, log, saga_id, crash_at)
            counts["inconsistent"] += ledger.stranded(saga_id, outcome)
        results[which] = counts
    return results


def _run_fixed(ledger: _Ledger, log: InMemorySagaLog, saga_id: str,
               crash_at: int | None) -> str:
    retry = RetryPolicy(stop=StopAfterAttempts(20), backoff=ExponentialBackoff(0.0),
                        sleep=lambda _s: None)
    steps = ledger.steps()
    if crash_at is not None:
        crashing = list(steps)
        step = crashing[crash_at]

        def die(_ctx: StepContext) -> None:
            raise _Crash

        crashing[crash_at] = SagaStep(step.name, die, step.compensation)
        with contextlib.suppress(_Crash):
            SagaOrchestrator("order", crashing, log, compensation_retry=retry).run(saga_id)
        result = SagaOrchestrator("order", steps, log, compensation_retry=retry).recover(saga_id)
    else:
        try:
            result = SagaOrchestrator("order", steps, log,
                                      compensation_retry=retry).run(saga_id)
        except CompensationFailedError:
            result = SagaOrchestrator("order", steps, log,
                                      compensation_retry=retry).recover(saga_id)
    return "completed" if result.outcome is SagaOutcome.COMPLETED else "compensated"


def saga_pitfall_table(**kwargs: object) -> str:
    results = compare_saga_pitfalls(**kwargs)  # type: ignore[arg-type]
    return format_table(["saga", "orders", "crashed mid-saga", "left inconsistent"],
                        [[name, r["orders"], r["crashed"], r["inconsistent"]]
                         for name, r in results.items()])


class GuideSketchTwoPhaseCommit:
    """The guide's ``TwoPhaseCommit``: no log; a failed commit is only logged (``Ok``)."""

    def __init__(self, participants: Mapping[str, LockingParticipant]) -> None:
        self.participants = participants
        self.logged_errors: list[str] = []

    def execute(self, txid: str) -> str:
        for participant in self.participants.values():
            if not participant.prepare(txid):
                for p in self.participants.values():
                    p.abort(txid)
                return "aborted"
        for name, participant in self.participants.items():
            try:
                participant.commit(txid)
            except Exception as error:
                self.logged_errors.append(f"Failed to commit {name}: {error}")
        return "ok"


class _Flaky(LockingParticipant):
    def __init__(self, name: str, fails: Callable[[], bool]) -> None:
        super().__init__(name)
        self.fails = fails

    def commit(self, txid: str) -> None:
        if self.fails():
            raise ConnectionError("commit lost")
        super().commit(txid)


def compare_commit_pitfall(transactions: int = 200, commit_failure_rate: float = 0.1, *,
                           seed: int = 1) -> dict[str, dict[str, int]]:
    """Transactions reported committed while a participant never committed (still locked)."""
    require_unit_interval("commit_failure_rate", commit_failure_rate)
    out: dict[str, dict[str, int]] = {}
    for which in ("guide", "fixed"):
        rng = RandomStreams(seed).stream("commit")

        def fails(rng: random.Random = rng) -> bool:
            return rng.random() < commit_failure_rate

        counts = {"transactions": transactions, "reported_ok": 0, "half_committed": 0}
        for tx in range(transactions):
            parts = {f"p{i}": _Flaky(f"p{i}", fails)
                     for i in range(3)}
            txid = f"t{tx}"
            for p in parts.values():
                p.stage(txid, "row", tx)
            if which == "guide":
                ok = GuideSketchTwoPhaseCommit(parts).execute(txid) == "ok"
            else:
                retry = RetryPolicy(stop=StopAfterAttempts(10),
                                    backoff=ExponentialBackoff(0.0), sleep=lambda _s: None)
                result = TwoPhaseCoordinator(parts, InMemoryDecisionLog(),
                                             decision_retry=retry).execute(txid)
                ok = result.decision is Decision.COMMIT and result.finished
            counts["reported_ok"] += ok
            committed = [p.decided(txid) is Decision.COMMIT for p in parts.values()]
            counts["half_committed"] += any(committed) and not all(committed)
        out[which] = counts
    return out


def commit_pitfall_table(**kwargs: object) -> str:
    results = compare_commit_pitfall(**kwargs)  # type: ignore[arg-type]
    return format_table(["2PC", "transactions", "reported committed", "half committed"],
                        [[n, r["transactions"], r["reported_ok"], r["half_committed"]]
                         for n, r in results.items()])
