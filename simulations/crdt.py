"""CRDTs under partitions, skewed clocks and growing clusters (guide section 1.3).

Section 1.3 of the guide is 数据传播与状态同步 (state propagation).

Four models, all driving the library's :mod:`patterns.dataflow.crdt`:

* **Partition** (:func:`run_partition`, SimPy): ``nodes`` replicas of a counter, clients
  incrementing random replicas (each increment acknowledged at once), every replica
  gossiping its full state to ``ceil(gossip_factor * peers)`` random peers every
  ``sync_interval`` seconds, as the guide's ``StateReplication.start_sync`` does. For a
  while the network is cut in two halves. The guide's ``receive_state`` hands the full
  state it received to ``apply_delta``; :class:`GuideSketchReplica` transcribes it for a
  counter, whose state is its value, so the received value overwrites the local one and
  the increments made here are gone. The :class:`~patterns.dataflow.crdt.GCounter`
  merges (entry-wise max) and loses none.
* **Comparisons** (:func:`guide_comparisons`): the guide's ``VersionVector`` and
  ``GSet``, transcribed as :class:`GuideSketchVersionVector` and :class:`GuideSketchGSet`,
  answer concrete "which is newer?" questions wrongly; beside each, the answer of
  :class:`~patterns.dataflow.crdt.VersionVector` or of the CRDT order itself.
* **Clock skew** (:func:`run_lww_skew`, SimPy): replicas write a last-writer-wins
  register while one replica's clock runs ``skew`` seconds ahead; between two syncs the
  writes are concurrent, and the skewed replica's *earlier* writes beat later ones.
  The same writes, as adds to an :class:`~patterns.dataflow.crdt.ORSet` and increments
  of a :class:`~patterns.dataflow.crdt.PNCounter`, are all kept.
* **Payload** (:func:`run_payload`, plain seeded rounds): what one round of anti-entropy
  ships when every replica sends its full state to every other, against sending only the
  join of the deltas it produced since the last round (Almeida et al. 2018). Delta
  shipping assumes every delta group reaches every peer (reliable channels, or
  acknowledgements and re-sending as in Almeida's algorithm); a peer that missed one
  needs a full state again.

Every ``run_*`` is deterministic for its ``seed`` and returns a frozen result; ``draw_*``
returns a Figure, ``*_table`` returns text.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import simpy
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

from patterns.clock import Clock
from patterns.dataflow.crdt import (
    GCounter,
    GSet,
    LWWRegister,
    Ordering,
    ORSet,
    PNCounter,
    VersionVector,
    join,
)
from simulations.kit.clock import SimClock
from simulations.kit.faults import Outage
from simulations.kit.plotting import label, subplots
from simulations.kit.rng import RandomStreams
from simulations.kit.tables import format_table
from simulations.kit.widgets import Explorer, choice, float_slider, int_slider
from simulations.kit.workloads import poisson_arrivals

COLORS = {"guide": "#ff7f0e", "crdt": "#2ca02c", "full": "#d62728", "delta": "#1f77b4",
          "lww": "#d62728", "orset": "#2ca02c", "pncounter": "#1f77b4", "acked": "#000000"}


# ============================================================================ the guide


class GuideSketchReplica:
    """The guide's ``Replicable`` + ``StateReplication.receive_state``, for a counter.

    ``get_state`` returns the full state; ``receive_state`` passes it to ``apply_delta``
    as if it were a delta. The guide leaves ``apply_delta`` abstract; for a counter whose
    state is its value, applying a received state means taking it as the new value, so
    whatever this replica counted that the sender had not seen is overwritten.
    """

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.count = 0

    def increment(self) -> None:
        self.count += 1

    def get_state(self) -> int:
        return self.count

    def apply_delta(self, delta: int) -> None:
        self.count = delta

    def receive_state(self, sender: str, state: int) -> None:
        self.apply_delta(state)  # the guide: ``local.apply_delta(state)``

    @property
    def value(self) -> int:
        return self.count


class GuideSketchVersionVector:
    """The guide's ``VersionVector``, flaws included.

    * ``dominates`` returns ``False`` as soon as an id of ``other`` is missing here, even
      when ``other``'s count for it is 0: explicit zeros (a vector initialised with every
      known node at 0, or sent over the wire that way) break it.
    * ``PartialEq`` and ``PartialOrd`` are *derived*. Rust cannot derive ``PartialOrd`` on a
      ``HashMap`` field (the sketch does not compile); the nearest reading, a ``BTreeMap``,
      compares the sorted ``(id, count)`` pairs lexicographically: a total order that
      calls concurrent vectors ordered and can even reverse causality. Transcribed as
      :meth:`derived_lt`.
    """

    def __init__(self, versions: dict[str, int] | None = None) -> None:
        self.versions: dict[str, int] = dict(versions or {})

    def increment(self, node_id: str) -> None:
        self.versions[node_id] = self.versions.get(node_id, 0) + 1

    def merge(self, other: GuideSketchVersionVector) -> None:
        for node_id, version in other.versions.items():
            self.versions[node_id] = max(self.versions.get(node_id, 0), version)

    def dominates(self, other: GuideSketchVersionVector) -> bool:
        for node_id, other_version in other.versions.items():
            mine = self.versions.get(node_id)
            if mine is None or mine < other_version:
                return False
        return True

    def concurrent_with(self, other: GuideSketchVersionVector) -> bool:
        return not self.dominates(other) and not other.dominates(self)

    def derived_eq(self, other: GuideSketchVersionVector) -> bool:
        return self.versions == other.versions

    def derived_lt(self, other: GuideSketchVersionVector) -> bool:
        return sorted(self.versions.items()) < sorted(other.versions.items())

    def compare(self, other: GuideSketchVersionVector) -> Ordering:
        """What a caller of the guide's ``dominates`` concludes."""
        ge, le = self.dominates(other), other.dominates(self)
        if ge and le:
            return Ordering.EQUAL
        return Ordering.AFTER if ge else Ordering.BEFORE if le else Ordering.CONCURRENT

    def __repr__(self) -> str:
        return repr(dict(sorted(self.versions.items())))


class GuideSketchGSet:
    """The guide's ``GSet``: a set plus a version vector that starts at 1 for its creator.

    ``new(node_id)`` increments the creator's entry although nothing happened, and
    ``add`` increments only when the element was new here, so the vector counts
    creations, not updates: equal sets get different vectors.
    """

    def __init__(self, node_id: str) -> None:
        self.elements: set[Any] = set()
        self.version = GuideSketchVersionVector()
        self.version.increment(node_id)

    def add(self, node_id: str, element: Any) -> bool:
        inserted = element not in self.elements
        self.elements.add(element)
        if inserted:
            self.version.increment(node_id)
        return inserted

    def contains(self, element: Any) -> bool:
        return element in self.elements

    def merge(self, other: GuideSketchGSet) -> None:
        self.elements |= other.elements
        self.version.merge(other.version)


# ============================================================================ partition


@dataclass(frozen=True)
class PartitionResult:
    """One run of :func:`run_partition`."""

    strategy: str
    """``"guide"`` (full state applied as a delta: overwrite) or ``"crdt"`` (G-Counter merge)."""
    nodes: int
    partition: tuple[float, float] | None
    acknowledged: int
    """Increments acknowledged to clients."""
    final_values: tuple[int, ...]
    """Each replica's value at the end."""
    times: tuple[float, ...]
    values: tuple[tuple[int, ...], ...]
    """``values[i][k]``: replica ``i``'s value at ``times[k]``."""
    acknowledged_over_time: tuple[int, ...]
    messages: int
    """State messages delivered (messages dropped by the partition not counted)."""

    @property
    def lost(self) -> int:
        """Acknowledged increments missing even from the most complete replica."""
        return self.acknowledged - max(self.final_values)

    @property
    def converged(self) -> bool:
        return len(set(self.final_values)) == 1


def run_partition(
    strategy: Literal["guide", "crdt"] = "crdt",
    *,
    nodes: int = 6,
    update_rate: float = 4.0,
    partition: tuple[float, float] | None = (20.0, 60.0),
    updates_until: float = 80.0,
    horizon: float = 140.0,
    sync_interval: float = 5.0,
    gossip_factor: float = 0.5,
    latency: float = 0.1,
    sample_every: float = 1.0,
    seed: int = 1,
) -> PartitionResult:
    """Counter replicas gossiping full states through a partition (see the module doc).

    Clients send ``update_rate`` increments per second (Poisson) to random replicas until
    ``updates_until``; each is acknowledged by the replica that took it. During
    ``partition`` (start, end) messages between the two halves of the cluster are lost.
    The run continues to ``horizon`` so that gossip can settle.
    """
    if strategy not in ("guide", "crdt"):
        raise ValueError(f"strategy must be 'guide' or 'crdt', got {strategy!r}")
    if nodes < 2:
        raise ValueError(f"nodes must be >= 2, got {nodes!r}")
    cut = Outage(*partition) if partition is not None else None
    streams = RandomStreams(seed)
    env = simpy.Environment()
    ids = [f"n{i}" for i in range(nodes)]
    side = {node: (0 if i < nodes // 2 else 1) for i, node in enumerate(ids)}
    guide = {node: GuideSketchReplica(node) for node in ids}
    crdt = {node: GCounter(node) for node in ids}
    acked = 0
    messages = 0
    samples: list[tuple[float, tuple[int, ...], int]] = []

    def value(node: str) -> int:
        return guide[node].value if strategy == "guide" else crdt[node].value

    def cut_between(a: str, b: str) -> bool:
        return (cut is not None and cut.start <= env.now < cut.end and side[a] != side[b])

    def deliver(sender: str, receiver: str, state: Any) -> Generator[Any, Any, None]:
        nonlocal messages
        yield env.timeout(latency)
        if cut_between(sender, receiver):
            return
        messages += 1
        if strategy == "guide":
            guide[receiver].receive_state(sender, state)
        else:
            crdt[receiver].merge(state)

    def syncer(node: str, phase: float) -> Generator[Any, Any, None]:
        rng = streams.stream(f"gossip:{node}")
        peers = [p for p in ids if p != node]
        fanout = math.ceil(len(peers) * gossip_factor)
        yield env.timeout(phase)
        while True:
            for peer in rng.sample(peers, fanout):
                if not cut_between(node, peer):
                    state = guide[node].get_state() if strategy == "guide" else crdt[node].copy()
                    env.process(deliver(node, peer, state))
            yield env.timeout(sync_interval)

    def clients() -> Generator[Any, Any, None]:
        nonlocal acked
        rng = streams.stream("clients")
        for when in poisson_arrivals(update_rate, updates_until, streams.numpy("arrivals")):
            yield env.timeout(float(when) - env.now)
            node = ids[rng.randrange(nodes)]
            if strategy == "guide":
                guide[node].increment()
            else:
                crdt[node].increment()
            acked += 1

    def sampler() -> Generator[Any, Any, None]:
        while True:
            samples.append((float(env.now), tuple(value(n) for n in ids), acked))
            yield env.timeout(sample_every)

    phases = streams.stream("phases")
    for node in ids:
        env.process(syncer(node, phases.uniform(0.0, sync_interval)))
    env.process(clients())
    env.process(sampler())
    env.run(until=horizon)
    samples.append((float(env.now), tuple(value(n) for n in ids), acked))
    return PartitionResult(
        strategy=strategy,
        nodes=nodes,
        partition=partition,
        acknowledged=acked,
        final_values=tuple(value(n) for n in ids),
        times=tuple(s[0] for s in samples),
        values=tuple(tuple(s[1][i] for s in samples) for i in range(nodes)),
        acknowledged_over_time=tuple(s[2] for s in samples),
        messages=messages,
    )


def compare_partition(seed: int = 1, **options: Any) -> dict[str, PartitionResult]:
    """:func:`run_partition` for both strategies on the same seed (same clients, same gossip)."""
    return {s: run_partition(s, seed=seed, **options) for s in ("guide", "crdt")}


def plot_partition(result: PartitionResult, ax: Axes) -> Axes:
    """Each replica's value over time, the acknowledged count, the partition shaded."""
    if result.partition is not None:
        ax.axvspan(*result.partition, color="#7f7f7f", alpha=0.15, label="partition")
    for i, series in enumerate(result.values):
        ax.step(result.times, series, where="post", lw=1.2, alpha=0.8,
                color=COLORS[result.strategy], label="replicas" if i == 0 else None)
    ax.step(result.times, result.acknowledged_over_time, where="post", lw=2.0,
            color=COLORS["acked"], ls="--", label="acknowledged increments")
    title = ("guide: full state applied as a delta" if result.strategy == "guide"
             else "G-Counter merge")
    label(ax, title=f"{title} (lost {result.lost})", xlabel="time (s)",
          ylabel="counter value")
    ax.legend(loc="center right")
    return ax


def draw_partition(results: dict[str, PartitionResult] | None = None,
                   seed: int = 1) -> Figure:
    """The guide's overwrite beside the G-Counter merge, through the same partition."""
    results = results if results is not None else compare_partition(seed)
    fig, axes = subplots(1, 2, width=10.0, height=4.0, sharey=True)
    plot_partition(results["guide"], axes[0])
    plot_partition(results["crdt"], axes[1])
    return fig


def partition_table(results: Sequence[PartitionResult]) -> str:
    """Acknowledged, kept and lost increments per run."""
    rows = [
        (r.strategy, "yes" if r.partition else "no", r.acknowledged, max(r.final_values),
         min(r.final_values), r.lost, f"{r.lost / r.acknowledged:.1%}",
         "yes" if r.converged else "no")
        for r in results
    ]
    return format_table(
        ["strategy", "partition", "acknowledged", "best replica", "worst replica", "lost",
         "lost (%)", "converged"], rows)


def _defaults(function: Any) -> dict[str, Any]:
    return {name: parameter.default
            for name, parameter in inspect.signature(function).parameters.items()}


def partition_setup() -> str:
    """The partition model's settings, read from :func:`run_partition`'s defaults."""
    d = _defaults(run_partition)
    start, end = d["partition"]
    peers = d["nodes"] - 1
    return (f"{d['nodes']} replicas; clients send {d['update_rate']:g} increments per s "
            f"until {d['updates_until']:g} s; every {d['sync_interval']:g} s each replica "
            f"sends its state to ceil({peers} x {d['gossip_factor']:g}) = "
            f"{math.ceil(peers * d['gossip_factor'])} peers; partition from {start:g} s "
            f"to {end:g} s")


def partition_evidence(seed: int = 1) -> tuple[PartitionResult, ...]:
    """Both strategies with and without the partition (for :func:`partition_table`)."""
    return tuple(
        run_partition(strategy, partition=partition, seed=seed)
        for partition in ((20.0, 60.0), None)
        for strategy in ("guide", "crdt")
    )


# ============================================================================ comparisons


@dataclass(frozen=True)
class ComparisonCase:
    """A question the guide's version vectors answer wrongly."""

    case: str
    left: str
    right: str
    guide: str
    """What the guide's sketch says of ``left`` relative to ``right``."""
    correct: str
    """The right answer (the library's version vector, or the CRDT order of the states)."""

    @property
    def wrong(self) -> bool:
        return self.guide != self.correct


def state_order(a: GSet[Any], b: GSet[Any]) -> Ordering:
    """Order two CRDT states by the lattice itself: ``a <= b`` iff ``join(a, b) == b``."""
    le, ge = join(a, b) == b, join(b, a) == a
    if le and ge:
        return Ordering.EQUAL
    return Ordering.BEFORE if le else Ordering.AFTER if ge else Ordering.CONCURRENT


def guide_comparisons() -> tuple[ComparisonCase, ...]:
    """Concrete comparisons where the guide's sketch is wrong (deterministic, no seed)."""
    cases: list[ComparisonCase] = []

    # 1. An explicit zero entry: dominates() says "missing" means "behind".
    left, right = {"A": 1, "B": 0}, {"A": 1}
    g = GuideSketchVersionVector(left).compare(GuideSketchVersionVector(right))
    ok = VersionVector(left).compare(VersionVector(right))
    cases.append(ComparisonCase("explicit zero (dominates)", str(left), str(right),
                                g.value, ok.value))
    cases.append(ComparisonCase(
        "explicit zero (derived ==)", str(left), str(right),
        "equal" if GuideSketchVersionVector(left).derived_eq(GuideSketchVersionVector(right))
        else "not equal", "equal" if VersionVector(left) == VersionVector(right) else "not equal"))

    # 2. Derived (lexicographic) order on concurrent vectors.
    left, right = {"A": 1, "B": 5}, {"A": 2}
    lt = GuideSketchVersionVector(left).derived_lt(GuideSketchVersionVector(right))
    cases.append(ComparisonCase("derived < on concurrent", str(left), str(right),
                                "before" if lt else "not before",
                                VersionVector(left).compare(VersionVector(right)).value))

    # 3. Derived order reversing causality: {B:1} happened before {A:1, B:1}.
    left, right = {"A": 1, "B": 1}, {"B": 1}
    lt = GuideSketchVersionVector(left).derived_lt(GuideSketchVersionVector(right))
    cases.append(ComparisonCase("derived < reverses causality", str(left), str(right),
                                "before" if lt else "after",
                                VersionVector(left).compare(VersionVector(right)).value))

    # 4. Two fresh, empty GSets: the creation counts as an update.
    ga, gb = GuideSketchGSet("A"), GuideSketchGSet("B")
    fa, fb = GSet[str]("A"), GSet[str]("B")
    cases.append(ComparisonCase("two new empty GSets", "{} " + repr(ga.version),
                                "{} " + repr(gb.version), ga.version.compare(gb.version).value,
                                state_order(fa, fb).value))

    # 5. After a sync the sets are equal, the vectors are not (B's phantom creation).
    ga.add("A", "x")
    gb.merge(ga)
    fa.add("x")
    fb.merge(fa)
    cases.append(ComparisonCase("same set after a sync", "{x} " + repr(ga.version),
                                "{x} " + repr(gb.version), ga.version.compare(gb.version).value,
                                state_order(fa, fb).value))
    return tuple(cases)


def guide_comparison_table(cases: Iterable[ComparisonCase] | None = None) -> str:
    """The guide's answer beside the right one, left relative to right."""
    cases = guide_comparisons() if cases is None else cases
    return format_table(["case", "left", "right", "guide says", "correct"],
                        [(c.case, c.left, c.right, c.guide, c.correct) for c in cases])


# ============================================================================ clock skew


class SkewedClock:
    """A clock ``offset`` seconds off a base clock (a replica whose clock is wrong)."""

    __slots__ = ("base", "offset")

    def __init__(self, base: Clock, offset: float) -> None:
        self.base, self.offset = base, offset

    def now(self) -> float:
        return self.base.now() + self.offset


@dataclass(frozen=True)
class LwwSkewResult:
    """One run of :func:`run_lww_skew`."""

    skew: float
    replicas: int
    sync_interval: float
    writes: int
    lww_lost: int
    """Writes overwritten by a write made *earlier* in real time (the later write lost)."""
    lww_rounds_with_loss: int
    """Sync rounds whose latest write did not survive."""
    rounds: int
    orset_lost: int
    """The same writes as OR-Set adds: how many are missing at the end."""
    pncounter_lost: int
    """The same writes as PN-Counter increments: how many the final value misses."""


def run_lww_skew(
    skew: float,
    *,
    replicas: int = 3,
    write_rate: float = 1.0,
    sync_interval: float = 5.0,
    horizon: float = 600.0,
    seed: int = 1,
    crdts: bool = True,
) -> LwwSkewResult:
    """Writes to random replicas while replica 0's clock runs ``skew`` seconds ahead.

    Writes arrive at ``write_rate`` per second (Poisson) at random replicas; every
    ``sync_interval`` seconds all replicas exchange full states and agree. Between two
    syncs writes are concurrent, ordered only by the clocks; a write is *lost* if the
    surviving value was written earlier in real time. ``crdts=False`` runs the register
    only (``orset_lost`` and ``pncounter_lost`` are then 0 without having been run).
    """
    if skew < 0:
        raise ValueError(f"skew must be >= 0, got {skew!r}")
    streams = RandomStreams(seed)
    env = simpy.Environment()
    base = SimClock(env)
    ids = [f"r{i}" for i in range(replicas)]
    registers = [LWWRegister[int](r, clock=SkewedClock(base, skew if i == 0 else 0.0))
                 for i, r in enumerate(ids)]
    sets = [ORSet[int](r) for r in ids]
    counters = [PNCounter(r) for r in ids]
    write_time: dict[int, float] = {}
    pending: list[int] = []
    lost = rounds_with_loss = rounds = 0

    def sync_all(states: list[Any]) -> None:
        total = states[0].copy()
        for s in states[1:]:
            total.merge(s)
        for s in states:
            s.merge(total)

    def writer() -> Generator[Any, Any, None]:
        rng = streams.stream("replica")
        for index, when in enumerate(poisson_arrivals(write_rate, horizon,
                                                      streams.numpy("writes"))):
            yield env.timeout(float(when) - env.now)
            i = rng.randrange(replicas)
            write_time[index] = float(env.now)
            registers[i].set(index)
            if crdts:
                sets[i].add(index)
                counters[i].increment()
            pending.append(index)

    def syncer() -> Generator[Any, Any, None]:
        nonlocal lost, rounds_with_loss, rounds
        while True:
            yield env.timeout(sync_interval)
            for group in (registers, sets, counters) if crdts else (registers,):
                sync_all(group)
            if pending:
                rounds += 1
                survivor = registers[0].value
                assert survivor is not None
                later = sum(1 for w in pending if write_time[w] > write_time[survivor])
                lost += later
                rounds_with_loss += later > 0
                pending.clear()

    env.process(writer())
    env.process(syncer())
    env.run(until=horizon + sync_interval + 1e-9)
    writes = len(write_time)
    return LwwSkewResult(
        skew=skew, replicas=replicas, sync_interval=sync_interval, writes=writes, lww_lost=lost,
        lww_rounds_with_loss=rounds_with_loss, rounds=rounds,
        orset_lost=writes - len(sets[0].value) if crdts else 0,
        pncounter_lost=writes - counters[0].value if crdts else 0,
    )


DEFAULT_SKEWS: tuple[float, ...] = (0.0, 0.1, 0.5, 1.0, 2.0, 5.0)


def run_lww_skew_sweep(skews: Sequence[float] = DEFAULT_SKEWS, seed: int = 1,
                       **options: Any) -> tuple[LwwSkewResult, ...]:
    """:func:`run_lww_skew` for each skew, same seed (same writes).

    The OR-Set and the PN-Counter read no clock, so with the same writes their result is
    the same at every skew: they run at the first skew only, and the others copy it (the
    OR-Set's merges are most of a run's time).
    """
    if not skews:
        return ()
    first = run_lww_skew(skews[0], seed=seed, **options)
    return (first, *(dataclasses.replace(run_lww_skew(s, seed=seed, crdts=False, **options),
                                         orset_lost=first.orset_lost,
                                         pncounter_lost=first.pncounter_lost)
                     for s in skews[1:]))


def draw_lww_skew(results: Sequence[LwwSkewResult] | None = None) -> Figure:
    """Later writes lost against clock skew: LWW register vs OR-Set and PN-Counter."""
    results = results if results is not None else run_lww_skew_sweep()
    fig, ax = subplots(width=8.0, height=4.0)
    skews = [r.skew for r in results]
    ax.plot(skews, [r.lww_lost for r in results], "o-", color=COLORS["lww"],
            label="LWW register")
    ax.plot(skews, [r.orset_lost for r in results], "s--", color=COLORS["orset"],
            label="OR-Set (same writes as adds)")
    ax.plot(skews, [r.pncounter_lost for r in results], "^:", color=COLORS["pncounter"],
            label="PN-Counter (same writes as increments)")
    first = results[0]
    label(ax, title=f"Later writes lost to an earlier write ({first.writes} writes, "
                    f"{first.replicas} replicas, sync every {first.sync_interval:g} s)",
          xlabel="clock skew of one replica (s, ahead)", ylabel="writes lost")
    ax.legend(loc="upper left")
    return fig


def lww_setup() -> str:
    """The clock-skew model's settings, read from :func:`run_lww_skew`'s defaults."""
    d = _defaults(run_lww_skew)
    return (f"{d['replicas']} replicas, about {d['write_rate']:g} write per s for "
            f"{d['horizon']:g} s, full sync every {d['sync_interval']:g} s; "
            f"replica r0's clock is ahead by the skew")


def lww_skew_table(results: Sequence[LwwSkewResult] | None = None) -> str:
    results = results if results is not None else run_lww_skew_sweep()
    return format_table(
        ["skew (s)", "writes", "LWW lost", "rounds with loss", "OR-Set lost", "PN-Counter lost"],
        [(r.skew, r.writes, r.lww_lost, r.lww_rounds_with_loss, r.orset_lost, r.pncounter_lost)
         for r in results])


# ============================================================================ payload


@dataclass(frozen=True)
class PayloadResult:
    """One run of :func:`run_payload`: units shipped per round, full state vs deltas."""

    kind: str
    replicas: int
    updates_per_round: int
    full_per_round: tuple[int, ...]
    """Units shipped per round by full-state sync (every replica to every other)."""
    delta_per_round: tuple[int, ...]
    """Units shipped per round by delta sync (each replica's delta group to every other)."""
    delta_messages_per_round: tuple[int, ...]
    """Messages sent per round by delta sync (a replica with no new delta sends nothing)."""
    agree: bool
    """Both strategies ended with every replica in the same state."""

    @property
    def full_messages_per_round(self) -> int:
        """Full-state sync sends every round, to every peer: n (n - 1) messages."""
        return self.replicas * (self.replicas - 1)

    @property
    def full_units(self) -> float:
        """Mean units per round, full-state sync."""
        return float(np.mean(self.full_per_round))

    @property
    def delta_units(self) -> float:
        """Mean units per round, delta sync."""
        return float(np.mean(self.delta_per_round))

    @property
    def delta_messages(self) -> float:
        """Mean messages per round, delta sync."""
        return float(np.mean(self.delta_messages_per_round))

    @property
    def ratio(self) -> float:
        """Full-state units over delta units, all rounds together."""
        return sum(self.full_per_round) / max(1, sum(self.delta_per_round))


PAYLOAD_KINDS: tuple[str, ...] = ("gcounter", "pncounter", "orset")
KIND_NAMES = {"gcounter": "G-Counter", "pncounter": "PN-Counter", "orset": "OR-Set"}


def _new(kind: str, replica: str) -> Any:
    return {"gcounter": GCounter, "pncounter": PNCounter, "orset": ORSet}[kind](replica)


def run_payload(
    kind: str = "orset",
    *,
    replicas: int = 8,
    updates_per_round: int = 10,
    rounds: int = 20,
    remove_fraction: float = 0.2,
    seed: int = 1,
) -> PayloadResult:
    """Rounds of updates then all-to-all sync, shipping full states or delta groups.

    Each round ``updates_per_round`` updates happen at random replicas (for the OR-Set an
    add of a new element, or with probability ``remove_fraction`` a remove of a present
    one; for the PN-Counter a decrement with that probability). Then every replica sends
    to every other either its full state or the join of the deltas it produced this
    round. Payload is counted in :meth:`~patterns.dataflow.crdt.StateCRDT.payload_units`.
    """
    if kind not in PAYLOAD_KINDS:
        raise ValueError(f"kind must be one of {PAYLOAD_KINDS}, got {kind!r}")
    if replicas < 2:
        raise ValueError(f"replicas must be >= 2, got {replicas!r}")
    rng = RandomStreams(seed).stream(f"payload:{kind}")
    ids = [f"r{i}" for i in range(replicas)]
    full = [_new(kind, r) for r in ids]
    delta = [_new(kind, r) for r in ids]
    next_element = 0
    full_units: list[int] = []
    delta_units: list[int] = []
    delta_messages: list[int] = []
    for _ in range(rounds):
        groups = [_new(kind, r) for r in ids]
        for _ in range(updates_per_round):
            i = rng.randrange(replicas)
            remove = rng.random() < remove_fraction
            if kind == "orset":
                present = sorted(full[i].value)
                if remove and present:
                    element = present[rng.randrange(len(present))]
                    full[i].remove(element)
                    groups[i].merge(delta[i].remove(element))
                else:
                    full[i].add(next_element)
                    groups[i].merge(delta[i].add(next_element))
                    next_element += 1
            elif kind == "pncounter" and remove:
                full[i].decrement()
                groups[i].merge(delta[i].decrement())
            else:
                full[i].increment()
                groups[i].merge(delta[i].increment())
        snapshots = [s.copy() for s in full]
        full_units.append(sum(s.payload_units() for s in snapshots) * (replicas - 1))
        delta_units.append(sum(g.payload_units() for g in groups) * (replicas - 1))
        delta_messages.append(sum(1 for g in groups if g.payload_units()) * (replicas - 1))
        # Every replica receives every other's message. Merging them one by one equals
        # merging their join once (the laws the tests check), which is much faster.
        all_states, all_groups = snapshots[0].copy(), groups[0].copy()
        for j in range(1, replicas):
            all_states.merge(snapshots[j])
            all_groups.merge(groups[j])
        for i in range(replicas):
            full[i].merge(all_states)
            delta[i].merge(all_groups)
    agree = all(s == full[0] for s in full) and all(s == full[0] for s in delta)
    return PayloadResult(kind, replicas, updates_per_round, tuple(full_units),
                         tuple(delta_units), tuple(delta_messages), agree)


def expected_gcounter_delta_units(replicas: int, updates_per_round: int) -> float:
    """Theory for the G-Counter's delta sync: units shipped per round.

    A replica's delta group holds one entry however often it incremented, so a round
    ships one unit per *distinct* updated replica to each of the ``n - 1`` peers. With
    ``u`` updates at uniformly random replicas, ``n (1 - (1 - 1/n)^u)`` replicas are
    updated on average.
    """
    n, u = replicas, updates_per_round
    return n * (1 - (1 - 1 / n) ** u) * (n - 1)


def expected_gcounter_full_units(replicas: int) -> float:
    """Full-state sync once every replica has incremented: n states of n entries, n - 1
    peers each: ``n^2 (n - 1)`` units per round."""
    return float(replicas**2 * (replicas - 1))


DEFAULT_CLUSTER_SIZES: tuple[int, ...] = (2, 4, 8, 16, 32)


def run_payload_sweep(sizes: Sequence[int] = DEFAULT_CLUSTER_SIZES,
                      kinds: Sequence[str] = PAYLOAD_KINDS, seed: int = 1,
                      **options: Any) -> tuple[PayloadResult, ...]:
    """:func:`run_payload` for each kind and cluster size."""
    return tuple(run_payload(k, replicas=n, seed=seed, **options) for k in kinds for n in sizes)


def _plain_log_axis(axis: Any) -> None:
    """Tick labels as plain numbers (1,000 not 10^3): readable, and fast to render."""
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def draw_payload(sweep: Sequence[PayloadResult] | None = None,
                 over_time: PayloadResult | None = None) -> Figure:
    """Units per message against cluster size, and per round as the set grows."""
    sweep = sweep if sweep is not None else run_payload_sweep()
    over_time = over_time if over_time is not None else run_payload("orset", rounds=40)
    fig, (left, right) = subplots(1, 2, width=10.0, height=4.2)
    markers = {"gcounter": "o", "pncounter": "^", "orset": "s"}
    for kind in dict.fromkeys(r.kind for r in sweep):
        runs = [r for r in sweep if r.kind == kind]
        sizes = [r.replicas for r in runs]
        left.plot(sizes, [r.full_units for r in runs], marker=markers.get(kind, "o"),
                  color=COLORS["full"], label=f"{KIND_NAMES[kind]}: full state")
        left.plot(sizes, [r.delta_units for r in runs], marker=markers.get(kind, "o"),
                  ls="--", color=COLORS["delta"], label=f"{KIND_NAMES[kind]}: delta groups")
    left.set_xscale("log", base=2)
    left.xaxis.set_major_locator(FixedLocator(sorted({r.replicas for r in sweep})))
    _plain_log_axis(left.xaxis)
    left.set_yscale("log")
    _plain_log_axis(left.yaxis)
    updates = sweep[0].updates_per_round if sweep else 0
    label(left, title=f"Payload per sync round ({updates} updates per round)",
          xlabel="replicas", ylabel="units shipped per round (entries)")
    left.legend(loc="upper left", fontsize=8)
    rounds = range(1, len(over_time.full_per_round) + 1)
    right.plot(rounds, over_time.full_per_round, color=COLORS["full"], label="full state")
    right.plot(rounds, over_time.delta_per_round, color=COLORS["delta"], ls="--",
               label="delta groups")
    right.set_yscale("log")
    _plain_log_axis(right.yaxis)
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    label(right, title=f"{KIND_NAMES[over_time.kind]}, {over_time.replicas} replicas: "
                       "payload per round",
          xlabel="sync round", ylabel="units shipped per round (entries)")
    right.legend(loc="center right")
    return fig


def gcounter_theory_table(sizes: Sequence[int] = DEFAULT_CLUSTER_SIZES,
                          updates_per_round: int = 10, rounds: int = 60, seed: int = 1) -> str:
    """G-Counter payload per round: simulation beside :func:`expected_gcounter_delta_units`
    and :func:`expected_gcounter_full_units` (late rounds, once every entry exists)."""
    rows = []
    for n in sizes:
        r = run_payload("gcounter", replicas=n, updates_per_round=updates_per_round,
                        rounds=rounds, seed=seed)
        late = r.full_per_round[-10:]
        rows.append((n, round(float(np.mean(late))), round(expected_gcounter_full_units(n)),
                     round(r.delta_units, 1),
                     round(expected_gcounter_delta_units(n, updates_per_round), 1)))
    return format_table(["replicas", "full (sim)", "full (theory)", "delta (sim)",
                         "delta (theory)"], rows)


def payload_table(sweep: Sequence[PayloadResult] | None = None) -> str:
    sweep = sweep if sweep is not None else run_payload_sweep()
    return format_table(
        ["kind", "replicas", "full msgs/round", "full units/round", "delta msgs/round",
         "delta units/round", "full / delta", "agree"],
        [(r.kind, r.replicas, r.full_messages_per_round, round(r.full_units),
          round(r.delta_messages, 1), round(r.delta_units, 1), round(r.ratio, 1),
          "yes" if r.agree else "no") for r in sweep])


# ============================================================================ explorers


def draw_partition_explore(nodes: int = 6, update_rate: float = 4.0,
                           partition_length: float = 40.0, sync_interval: float = 5.0,
                           gossip_factor: float = 0.5, seed: int = 1) -> Figure:
    """:func:`draw_partition` for the sliders (the partition starts at 20 s)."""
    partition = (20.0, 20.0 + partition_length) if partition_length > 0 else None
    return draw_partition(compare_partition(
        seed, nodes=nodes, update_rate=update_rate, partition=partition,
        sync_interval=sync_interval, gossip_factor=gossip_factor))


def partition_explorer() -> Explorer:
    """Sliders for the partition model: cluster size, load, partition, gossip."""
    return Explorer(draw_partition_explore, {
        "nodes": int_slider("replicas", 6, 2, 16),
        "update_rate": float_slider("increments per s", 4.0, 0.5, 10.0, 0.5),
        "partition_length": float_slider("partition (s)", 40.0, 0.0, 60.0, 5.0, ".0f"),
        "sync_interval": float_slider("gossip every (s)", 5.0, 1.0, 20.0, 1.0, ".0f"),
        # ceil(peers * factor) peers: steps of 0.2 pick a different count at every step
        # from 6 replicas up (steps of 0.1 repeat counts: 0.1 and 0.2 both pick one of 5)
        "gossip_factor": float_slider("gossip factor", 0.5, 0.1, 0.9, 0.2, ".1f"),
    })


def draw_lww_skew_explore(replicas: int = 3, write_rate: float = 1.0,
                          sync_interval: float = 5.0, max_skew: float = 5.0,
                          seed: int = 1) -> Figure:
    """:func:`draw_lww_skew` over six skews from 0 to ``max_skew`` (a 300 s run each)."""
    skews = tuple(float(x) for x in np.linspace(0.0, max_skew, 6))
    return draw_lww_skew(run_lww_skew_sweep(skews, seed=seed, replicas=replicas,
                                            write_rate=write_rate,
                                            sync_interval=sync_interval, horizon=300.0))


def lww_skew_explorer() -> Explorer:
    """Sliders for the clock-skew model."""
    return Explorer(draw_lww_skew_explore, {
        "replicas": int_slider("replicas", 3, 2, 8),
        "write_rate": float_slider("writes per s", 1.0, 0.2, 3.0, 0.2, ".1f"),
        "sync_interval": float_slider("sync every (s)", 5.0, 1.0, 20.0, 1.0, ".0f"),
        "max_skew": float_slider("largest skew (s)", 5.0, 0.5, 10.0, 0.5, ".1f"),
    })


def draw_payload_explore(kind: str = "orset", updates_per_round: int = 10,
                         replicas: int = 8, seed: int = 1) -> Figure:
    """:func:`draw_payload` for one kind, clusters of 2 to 16, and ``replicas`` over time."""
    sweep = run_payload_sweep((2, 4, 8, 16), kinds=(kind,), seed=seed,
                              updates_per_round=updates_per_round, rounds=6)
    over_time = run_payload(kind, replicas=replicas, updates_per_round=updates_per_round,
                            rounds=15, seed=seed)
    return draw_payload(sweep, over_time)


def payload_explorer() -> Explorer:
    """Sliders for the payload model."""
    return Explorer(draw_payload_explore, {
        "kind": choice("CRDT", PAYLOAD_KINDS, "orset"),
        "updates_per_round": int_slider("updates per round", 10, 1, 20),
        "replicas": int_slider("replicas (right)", 8, 2, 16),
    })


__all__ = [
    "DEFAULT_CLUSTER_SIZES",
    "DEFAULT_SKEWS",
    "PAYLOAD_KINDS",
    "ComparisonCase",
    "GuideSketchGSet",
    "GuideSketchReplica",
    "GuideSketchVersionVector",
    "LwwSkewResult",
    "PartitionResult",
    "PayloadResult",
    "SkewedClock",
    "compare_partition",
    "draw_lww_skew",
    "draw_lww_skew_explore",
    "draw_partition",
    "draw_partition_explore",
    "draw_payload",
    "draw_payload_explore",
    "expected_gcounter_delta_units",
    "expected_gcounter_full_units",
    "gcounter_theory_table",
    "guide_comparison_table",
    "guide_comparisons",
    "lww_setup",
    "lww_skew_explorer",
    "lww_skew_table",
    "partition_evidence",
    "partition_explorer",
    "partition_setup",
    "partition_table",
    "payload_explorer",
    "payload_table",
    "plot_partition",
    "run_lww_skew",
    "run_lww_skew_sweep",
    "run_partition",
    "run_payload",
    "run_payload_sweep",
    "state_order",
]
