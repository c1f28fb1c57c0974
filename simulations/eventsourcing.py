"""Event sourcing measured and simulated (guide section 5.3, 最终一致性与事件溯源).

Three models around :mod:`patterns.consistency.eventsourcing`:

* **Load time** (:func:`measure_load_times`): a *measurement*, not a simulation. One bank
  account stream grows on the real SQLite store; at each length it is loaded by a
  repository that replays everything (the guide's) and by one that starts from a snapshot
  taken every ``snapshot_every`` events. Theory: full replay costs ``a + b*n`` (linear);
  with snapshots it costs ``a + b*(n mod k)`` (bounded by ``k``). The number of events
  replayed is exact; the times are wall-clock on this machine.
* **Concurrent writers** (:func:`run_concurrent_writers`): ``writers`` clients send
  commands to one stream in SimPy time, each loading, deciding for ``window`` seconds and
  appending with the loaded version; a conflict (someone appended meanwhile) means reload
  and retry, up to ``max_retries``. :func:`conflict_theory` gives the Poisson estimate
  ``P = 1 - exp(-(W-1) * s * window)`` with ``s`` the per-writer commit rate (solved as a
  fixed point).
* **Crash between save and publish** (:func:`run_publish_crash`): a service appends the
  events of each command, then publishes them to a subscriber. :class:`GuideSketchService`
  does this as two writes (the guide's ``EventuallyConsistentService``): a crash between
  them loses the notification forever. The outbox service writes the outbox rows in the
  append's transaction, and a relay publishes at least once to an idempotent consumer.
"""

from __future__ import annotations

import gc
import math
import tempfile
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import simpy
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from patterns.consistency.eventsourcing import (
    Aggregate,
    BankAccount,
    ConcurrencyConflictError,
    EventCodec,
    EventMetadata,
    EventSourcedRepository,
    EventStore,
    IdempotentConsumer,
    InMemoryEventStore,
    InMemorySnapshotStore,
    NewEvent,
    RecordedEvent,
    SQLiteEventStore,
    SQLiteSnapshotStore,
    bank_codec,
)
from patterns.storage.sqlite import SQLiteDatabase
from simulations.kit.clock import SimClock
from simulations.kit.plotting import color, label, subplots
from simulations.kit.rng import RandomStreams
from simulations.kit.tables import format_table
from simulations.kit.widgets import Explorer, float_slider, int_slider

__all__ = [
    "ConcurrentWritersResult",
    "GuideSketchRepository",
    "GuideSketchService",
    "LoadTimes",
    "PublishCrashResult",
    "compare_writers",
    "concurrent_writers_explorer",
    "conflict_theory",
    "draw_concurrent_writers",
    "draw_load_times",
    "draw_publish_crash",
    "load_table",
    "measure_load_times",
    "publish_crash_explorer",
    "publish_crash_table",
    "run_concurrent_writers",
    "run_publish_crash",
    "writers_table",
]


# ============================================================================ the guide


class GuideSketchRepository:
    """The guide's ``EventSourcedRepository``, flaws included (for the pitfalls).

    ``load`` reads the stream from version 1 every time (no snapshots), so its cost grows
    with the stream; ``save`` appends first and applies the events afterwards.
    """

    def __init__(self, store: EventStore, factory: Callable[[str], Aggregate],
                 codec: EventCodec) -> None:
        self.store, self.factory, self.codec = store, factory, codec
        self.replayed = 0

    def load(self, aggregate_id: str) -> Aggregate | None:
        records = self.store.read_stream(aggregate_id, 1)
        if not records:
            return None
        aggregate = self.factory(aggregate_id)
        for record in records:
            aggregate.apply(self.codec.decode(record.event_type, record.data), record.version)
        self.replayed = len(records)
        return aggregate


class GuideSketchService:
    """The guide's ``EventuallyConsistentService.execute_command``: save, *then* publish.

    Two separate writes: the events go to the store, and afterwards to the publisher.
    ``crash`` is consulted between the two; when it says so, the process dies there and
    the events are stored but never published.
    """

    def __init__(self, store: EventStore, publish: Callable[[RecordedEvent], object]) -> None:
        self.store, self.publish = store, publish

    def execute(self, stream: str, events: Sequence[NewEvent],
                crash: Callable[[], bool]) -> bool:
        """Append then publish; return ``False`` if it crashed in between."""
        version = self.store.stream_version(stream)
        self.store.append(stream, events, version)
        if crash():
            return False
        for record in self.store.read_stream(stream, version + 1):
            self.publish(record)
        # the guide has no outbox: forget the rows the store keeps for a relay
        self.store.mark_published(r.position for r in self.store.read_stream(stream,
                                                                            version + 1))
        return True


# ============================================================================ load time


@dataclass(frozen=True)
class LoadTimes:
    """Load times of one stream at several lengths, with and without snapshots."""

    lengths: tuple[int, ...]
    snapshot_every: int
    full_seconds: tuple[float, ...]
    snapshot_seconds: tuple[float, ...]
    full_replayed: tuple[int, ...]
    snapshot_replayed: tuple[int, ...]
    store: str

    def per_event_seconds(self) -> float:
        """``b``: the median cost per replayed event of the full replays (robust to a
        slow outlier on a busy machine)."""
        return float(np.median(np.array(self.full_seconds) / np.array(self.lengths)))

    def fixed_seconds(self) -> float:
        """``a``: the fastest load that replayed nothing after its snapshot (or the
        fastest snapshot load, if every one replayed something)."""
        return float(min(self.snapshot_seconds))

    def theory_full(self, n: float) -> float:
        return self.fixed_seconds() + self.per_event_seconds() * n

    def theory_snapshot(self, n: int) -> float:
        return self.fixed_seconds() + self.per_event_seconds() * (n % self.snapshot_every)


def _time_best(function: Callable[[], object], repeats: int) -> float:
    """The best of ``repeats`` timings, with the cyclic GC paused (as :mod:`timeit` does)."""
    best = math.inf
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            started = time.perf_counter()
            function()
            best = min(best, time.perf_counter() - started)
    finally:
        if was_enabled:
            gc.enable()
    return best


DEFAULT_LENGTHS: tuple[int, ...] = (*range(370, 10_000, 370), 10_000)
"""28 lengths up to 10,000 that fall at every phase of a 100-event snapshot cycle."""


def measure_load_times(lengths: Sequence[int] = DEFAULT_LENGTHS,
                       snapshot_every: int = 100, *, store: str = "sqlite",
                       repeats: int = 3, directory: str | Path | None = None) -> LoadTimes:
    """Grow one bank account stream to each length; time loading it both ways.

    ``store`` is ``"sqlite"`` (a file in ``directory``, a temporary one by default) or
    ``"memory"``. Each time is the best of ``repeats`` loads.
    """
    ordered = sorted(set(lengths))
    if not ordered or ordered[0] < 1:
        raise ValueError(f"lengths must be positive, got {lengths!r}")
    if store not in ("sqlite", "memory"):
        raise ValueError(f"store must be 'sqlite' or 'memory', got {store!r}")
    with tempfile.TemporaryDirectory(dir=directory) as folder:
        database: SQLiteDatabase | None = None
        event_store: EventStore
        snapshots: InMemorySnapshotStore | SQLiteSnapshotStore
        if store == "sqlite":
            database = SQLiteDatabase(Path(folder) / "load.db")
            event_store = SQLiteEventStore(database)
            snapshots = SQLiteSnapshotStore(database)
        else:
            event_store, snapshots = InMemoryEventStore(), InMemorySnapshotStore()
        try:
            codec = bank_codec()
            ids = iter(range(10**12))
            fast_ids: Callable[[], str] = lambda: f"e{next(ids)}"  # noqa: E731
            writer = EventSourcedRepository(event_store, BankAccount, codec,
                                            snapshots=snapshots, snapshot_every=snapshot_every,
                                            id_factory=fast_ids)
            with_snapshots = EventSourcedRepository(event_store, BankAccount, codec,
                                                    snapshots=snapshots, id_factory=fast_ids)
            full = EventSourcedRepository(event_store, BankAccount, codec, id_factory=fast_ids)
            account = BankAccount.open("acct", "Ada")
            full_s: list[float] = []
            snap_s: list[float] = []
            full_n: list[int] = []
            snap_n: list[int] = []
            replayed: list[int] = []
            with_snapshots.listeners.add(lambda e: replayed.append(e.replayed))
            full.listeners.add(lambda e: replayed.append(e.replayed))
            for target in ordered:
                while account.version < target:
                    next_stop = min(target, (account.version // snapshot_every + 1)
                                    * snapshot_every, account.version + 500)
                    for _ in range(next_stop - account.version - len(account.pending)):
                        account.deposit(1)
                    writer.save(account)
                full_s.append(_time_best(lambda: full.load("acct"), repeats))
                full_n.append(replayed[-1])
                snap_s.append(_time_best(lambda: with_snapshots.load("acct"), repeats))
                snap_n.append(replayed[-1])
        finally:
            if database is not None:
                database.close()
    return LoadTimes(tuple(ordered), snapshot_every, tuple(full_s), tuple(snap_s),
                     tuple(full_n), tuple(snap_n), store)


def plot_load_times(result: LoadTimes, ax: Axes) -> Axes:
    """Measured load times against stream length, beside the theory."""
    n = np.array(result.lengths)
    ms = 1000.0
    grid = np.array([0.0, float(n.max())])
    ax.plot(n, np.array(result.full_seconds) * ms, "o", color=color("failure"),
            label="replay the whole stream (measured)")
    ax.plot(grid, [result.theory_full(x) * ms for x in grid], "-", color=color("failure"),
            lw=1, alpha=0.7, label="theory: a + b·n (linear)")
    ax.plot(n, np.array(result.snapshot_seconds) * ms, "o", color=color("success"),
            label=f"snapshot every {result.snapshot_every} + tail (measured)")
    bound = result.theory_full(result.snapshot_every - 1) * ms
    ax.plot(grid, [bound, bound], "--", color=color("success"), lw=1,
            label=f"theory: at most a + b·{result.snapshot_every - 1} (bounded)")
    ax.set_xlim(0, n.max() * 1.03)
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left")
    return label(ax, title=f"Loading one account ({result.store} store)",
                 xlabel="events in the stream", ylabel="load time (ms)")


def plot_snapshot_tail(result: LoadTimes, ax: Axes) -> Axes:
    """With snapshots the load time depends on the tail (events after the snapshot) only."""
    ms = 1000.0
    tail = np.array(result.snapshot_replayed)
    ax.plot(tail, np.array(result.snapshot_seconds) * ms, "o", color=color("success"),
            label="measured (one point per stream length)")
    grid = np.array([0.0, float(result.snapshot_every - 1)])
    ax.plot(grid, [result.theory_full(x) * ms for x in grid], "-", color=color("theory"),
            lw=1, label="theory: a + b·tail (b from the full replays)")
    ax.set_xlim(-2, result.snapshot_every)
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left")
    return label(ax, title="With snapshots: only the tail is replayed",
                 xlabel="events after the snapshot (n mod snapshot interval)",
                 ylabel="load time (ms)")


def draw_load_times(result: LoadTimes) -> Figure:
    fig, (left, right) = subplots(1, 2, width=10.0, height=4.0)
    plot_load_times(result, left)
    plot_snapshot_tail(result, right)
    return fig


def load_table(result: LoadTimes) -> str:
    """Events replayed (exact) and load time (measured) at each length."""
    rows = [(n, fr, f"{fs * 1000:.1f}", sr, f"{ss * 1000:.2f}")
            for n, fr, fs, sr, ss in zip(result.lengths, result.full_replayed,
                                         result.full_seconds, result.snapshot_replayed,
                                         result.snapshot_seconds, strict=True)]
    return format_table(["events", "replayed (full)", "ms (full)",
                         "replayed (snapshot)", "ms (snapshot)"], rows)


# ============================================================================ writers


@dataclass(frozen=True)
class ConcurrentWritersResult:
    """One run of ``writers`` clients sending commands to one stream."""

    writers: int
    window: float
    idle: float
    max_retries: int
    duration: float
    attempts: int
    conflicts: int
    committed: int
    gave_up: int
    final_version: int
    versions_gapless: bool

    @property
    def conflict_rate(self) -> float:
        """Conflicts per append attempt."""
        return self.conflicts / self.attempts if self.attempts else 0.0

    @property
    def theory(self) -> float:
        return conflict_theory(self.writers, self.window, self.idle)


def conflict_theory(writers: int, window: float, idle: float) -> float:
    """Poisson estimate of the conflict probability per attempt.

    Each writer commits at rate ``s = 1 / (idle + window / (1 - P))`` (an exponential idle
    time, then ``1 / (1 - P)`` attempts of ``window`` seconds each); an attempt conflicts
    when one of the other ``writers - 1`` commits within its window:
    ``P = 1 - exp(-(writers - 1) * s * window)``. Solved by fixed-point iteration.
    """
    if writers <= 1:
        return 0.0
    p = 0.0
    for _ in range(200):
        rate = 1.0 / (idle + window / max(1e-9, 1.0 - p))
        p_next = 1.0 - math.exp(-(writers - 1) * rate * window)
        p = 0.5 * p + 0.5 * p_next
    return p


def run_concurrent_writers(writers: int = 4, *, window: float = 0.05, idle: float = 0.5,
                           max_retries: int = 10, duration: float = 200.0,
                           seed: int = 1) -> ConcurrentWritersResult:
    """``writers`` clients, each: idle (exponential, mean ``idle`` s), then load, decide for
    ``window`` s and append with the loaded version; on a conflict reload and retry."""
    if writers < 1:
        raise ValueError(f"writers must be >= 1, got {writers!r}")
    env = simpy.Environment()
    store = InMemoryEventStore()
    clock = SimClock(env)
    streams = RandomStreams(seed)
    counts = {"attempts": 0, "conflicts": 0, "committed": 0, "gave_up": 0}
    codec = bank_codec()
    ids = iter(range(10**12))
    repository = EventSourcedRepository(store, BankAccount, codec, clock=clock,
                                        snapshots=InMemorySnapshotStore(), snapshot_every=20,
                                        id_factory=lambda: f"e{next(ids)}")
    opening = BankAccount.open("hot", "Ada")
    repository.save(opening)

    def writer(name: str) -> Generator[simpy.Event, Any, None]:
        rng = streams.stream(name)
        while True:
            yield env.timeout(rng.expovariate(1.0 / idle))
            for _ in range(max_retries + 1):
                account = repository.load("hot")
                account.deposit(1)
                yield env.timeout(window)
                counts["attempts"] += 1
                try:
                    repository.save(account)
                except ConcurrencyConflictError:
                    counts["conflicts"] += 1
                    continue
                counts["committed"] += 1
                break
            else:
                counts["gave_up"] += 1

    for w in range(writers):
        env.process(writer(f"writer-{w}"))
    env.run(until=duration)
    versions = [r.version for r in store.read_stream("hot")]
    final = EventSourcedRepository(store, BankAccount, codec).load("hot")  # full replay
    return ConcurrentWritersResult(
        writers, window, idle, max_retries, duration, counts["attempts"],
        counts["conflicts"], counts["committed"], counts["gave_up"], final.version,
        versions == list(range(1, len(versions) + 1)) and final.balance == counts["committed"])


def plot_concurrent_writers(results: Sequence[ConcurrentWritersResult], ax: Axes) -> Axes:
    writers = [r.writers for r in results]
    ax.plot(writers, [r.conflict_rate for r in results], "o", color=color("failure"),
            label="simulated (conflicts / attempts)")
    grid = np.arange(1, max(writers) + 1)
    first = results[0]
    ax.plot(grid, [conflict_theory(int(w), first.window, first.idle) for w in grid], "-",
            color=color("theory"), lw=1, label="light-load estimate: 1 − exp(−(W−1)·s·window)")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    return label(ax, title=f"Writers on one stream (window {first.window * 1000:.0f} ms, "
                           f"idle {first.idle:.2f} s)",
                 xlabel="writers W", ylabel="conflict rate")


def plot_throughput(results: Sequence[ConcurrentWritersResult], ax: Axes) -> Axes:
    writers = [r.writers for r in results]
    ax.plot(writers, [r.committed / r.duration for r in results], "o-", color=color("success"),
            label="committed commands")
    ax.plot(writers, [r.attempts / r.duration for r in results], "s--", color=color("offered"),
            label="append attempts")
    ax.plot(writers, [r.gave_up / r.duration for r in results], "x-", color=color("failure"),
            label="gave up (retries exhausted)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left")
    return label(ax, title="Work done on the stream", xlabel="writers W",
                 ylabel="per simulated second")


def compare_writers(writer_counts: Sequence[int] = (1, 2, 4, 8, 12, 16), **options: Any
                    ) -> list[ConcurrentWritersResult]:
    return [run_concurrent_writers(w, **options) for w in writer_counts]


def draw_concurrent_writers(writer_counts: Sequence[int] = (1, 2, 4, 8, 12, 16),
                            **options: Any) -> Figure:
    results = compare_writers(writer_counts, **options)
    fig, (left, right) = subplots(1, 2, width=10.0, height=4.0)
    plot_concurrent_writers(results, left)
    plot_throughput(results, right)
    return fig


def writers_table(results: Sequence[ConcurrentWritersResult]) -> str:
    rows = [(r.writers, r.attempts, r.conflicts, f"{r.conflict_rate:.3f}",
             f"{r.theory:.3f}", r.committed, r.gave_up, "yes" if r.versions_gapless else "NO")
            for r in results]
    return format_table(["writers", "attempts", "conflicts", "rate", "theory", "committed",
                         "gave up", "stream gapless"], rows)


def concurrent_writers_explorer(writer_counts: Sequence[int] = (1, 2, 4, 8, 16),
                                duration: float = 10.0) -> Explorer:
    """Sliders: the decision window, the idle time and the retries a writer allows; each
    move runs one simulation of ``duration`` simulated seconds per count of writers.
    Retries stop at 10: past that, at these loads, hardly anyone gives up any more."""
    def draw(window_ms: float, idle: float, max_retries: int) -> Figure:
        return draw_concurrent_writers(writer_counts, window=window_ms / 1000, idle=idle,
                                       max_retries=max_retries, duration=duration)

    return Explorer(draw, {
        "window_ms": float_slider("window (ms)", 50, 5, 200, 5, ".0f"),
        "idle": float_slider("idle (s)", 0.5, 0.1, 2.0, 0.1),
        "max_retries": int_slider("max retries", 10, 0, 10),
    })


# ============================================================================ crash


@dataclass(frozen=True)
class PublishCrashResult:
    """Commands run by a service that may crash between saving and publishing."""

    design: str
    commands: int
    crash_probability: float
    crashes: int
    stored: int
    delivered: int
    duplicates_dropped: int
    delivery_times: tuple[float, ...]
    stored_times: tuple[float, ...]

    @property
    def lost(self) -> int:
        """Stored events the subscriber never saw."""
        return self.stored - self.delivered


def run_publish_crash(design: str = "outbox", *, commands: int = 500,
                      crash_probability: float = 0.05, rate: float = 10.0,
                      relay_interval: float = 0.2, restart_time: float = 1.0,
                      seed: int = 1) -> PublishCrashResult:
    """A service receives ``commands`` deposits (Poisson, ``rate`` per s) and may crash,
    with ``crash_probability``, right after the append; it restarts after
    ``restart_time`` s. ``design`` is ``"guide"`` (append, then publish: two writes) or
    ``"outbox"`` (append with outbox rows; a relay publishes every ``relay_interval`` s
    and may crash after publishing and before marking, with the same probability)."""
    if design not in ("guide", "outbox"):
        raise ValueError(f"design must be 'guide' or 'outbox', got {design!r}")
    env = simpy.Environment()
    store = InMemoryEventStore()
    streams = RandomStreams(seed)
    crash_rng = streams.stream("crash")
    arrivals = streams.stream("arrivals")
    delivered_ids: list[str] = []
    delivery_times: list[float] = []
    stored_times: list[float] = []
    def deliver(record: RecordedEvent) -> None:
        delivered_ids.append(record.metadata.event_id)
        delivery_times.append(env.now)

    consumer = IdempotentConsumer(deliver)
    crashes = [0]
    down_until = [0.0]

    def crash() -> bool:
        if crash_rng.random() < crash_probability:
            crashes[0] += 1
            down_until[0] = env.now + restart_time
            return True
        return False

    guide = GuideSketchService(store, consumer)

    def service() -> Generator[simpy.Event, Any, None]:
        for index in range(commands):
            yield env.timeout(arrivals.expovariate(rate))
            if env.now < down_until[0]:
                yield env.timeout(down_until[0] - env.now)  # clients wait for the restart
            event = NewEvent("MoneyDeposited", {"amount": 1},
                             EventMetadata(f"cmd-{index}", env.now))
            stream = f"acct-{index % 20}"
            stored_times.append(env.now)
            if design == "guide":
                guide.execute(stream, [event], crash)
            else:
                store.append(stream, [event], store.stream_version(stream))
                # a crash here loses nothing: the outbox row is already committed

    def relay() -> Generator[simpy.Event, Any, None]:
        def publish(record: RecordedEvent) -> None:
            consumer(record)

        while True:
            yield env.timeout(relay_interval)
            if env.now < down_until[0]:
                continue
            pending = store.pending_outbox(100)
            for record in pending:
                publish(record)
            if pending and crash():
                continue  # published but not marked: the next run publishes them again
            store.mark_published(r.position for r in pending)

    main = env.process(service())
    if design == "outbox":
        env.process(relay())
    env.run(until=main)
    env.run(until=env.now + restart_time + 5 * relay_interval)
    return PublishCrashResult(design, commands, crash_probability, crashes[0],
                              store.head_position(), len(delivered_ids), consumer.duplicates,
                              tuple(delivery_times), tuple(stored_times))


def plot_publish_crash(results: Sequence[PublishCrashResult], ax: Axes) -> Axes:
    names = {"guide": "guide: save, then publish", "outbox": "outbox + relay"}
    x = np.arange(len(results))
    width = 0.27
    ax.bar(x - width, [r.stored for r in results], width, color=color("offered"),
           label="stored")
    ax.bar(x, [r.delivered for r in results], width, color=color("success"),
           label="seen by the subscriber")
    ax.bar(x + width, [r.lost for r in results], width, color=color("failure"),
           label="lost (stored, never seen)")
    for i, r in enumerate(results):
        ax.text(i + width, r.lost, str(r.lost), ha="center", va="bottom")
    ax.set_xticks(x, [names[r.design] for r in results])
    ax.set_ylim(0, max(r.stored for r in results) * 1.25)
    ax.legend(loc="upper center", ncol=3)
    first = results[0]
    return label(ax, title=f"{first.commands} commands, crash probability "
                           f"{first.crash_probability:.0%} after each write",
                 xlabel="design", ylabel="events")


def draw_publish_crash(crash_probability: float = 0.05, **options: Any) -> Figure:
    results = [run_publish_crash(d, crash_probability=crash_probability, **options)
               for d in ("guide", "outbox")]
    fig, ax = subplots(width=9.0, height=4.2)
    plot_publish_crash(results, ax)
    return fig


def publish_crash_table(crash_probability: float = 0.05, **options: Any) -> str:
    rows = []
    for design in ("guide", "outbox"):
        r = run_publish_crash(design, crash_probability=crash_probability, **options)
        rows.append((design, r.commands, r.crashes, r.stored, r.delivered, r.lost,
                     r.duplicates_dropped))
    return format_table(["design", "commands", "crashes", "stored", "delivered", "lost",
                         "duplicates dropped"], rows)


def publish_crash_explorer() -> Explorer:
    def draw(crash_percent: float, commands: int) -> Figure:
        return draw_publish_crash(crash_percent / 100, commands=commands)

    return Explorer(draw, {
        "crash_percent": float_slider("crash (%)", 5, 0, 30, 1, ".0f"),
        "commands": int_slider("commands", 500, 100, 2000, 100),
    })
