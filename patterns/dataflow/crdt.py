"""Version vectors and state-based CRDTs (guide section 1.3, 数据传播与状态同步).

The guide replicates state by gossip: every node periodically sends its state to a few
peers, and a peer folds what it receives into its own. That only works if "folding in"
is a *join*: an operation that is commutative, associative and idempotent, so that
replicas which have seen the same updates, in any order, any grouping and any number of
times, end in the same state. Data types whose states form such a join-semilattice are
the state-based CRDTs of Shapiro et al. ("Conflict-free Replicated Data Types", 2011).

This module offers

* :class:`VersionVector` with :class:`Ordering` (before, after, equal, concurrent):
  the partial order of causality. Missing entries count as 0 (the guide's
  ``dominates`` gets this wrong when a vector holds explicit zeros).
* Five state CRDTs, each a mutable replica bound to a ``replica`` id that stamps its own
  updates: :class:`GCounter`, :class:`PNCounter`, :class:`GSet`, :class:`ORSet`
  (add-wins observed-remove set, optimized: no tombstones) and :class:`LWWRegister`.
* Delta-state mutators (Almeida, Shoker and Baquero, "Delta State Replicated Data
  Types", 2018) for the counters and the sets: a mutator returns a *delta*, a small
  replica of the same type holding only what changed, joined elsewhere with the same
  :meth:`~StateCRDT.merge`. :meth:`~StateCRDT.payload_units` counts the entries a state
  or delta carries, so full-state and delta shipping can be compared.

Every CRDT here follows the :class:`StateCRDT` protocol that the gossip layer relies on:
``merge(other) -> bool`` (join in place; ``True`` iff this replica's state changed),
``copy()``, ``==`` by state (not by replica id), ``value`` and ``payload_units()``.
The module-level :func:`join` returns a new object and mutates neither argument.

Thread safety: a replica is **not** thread-safe by itself. Whoever shares one between
threads (the gossip node does) must guard every call with its own lock. :class:`VersionVector`
is immutable and therefore safe to share.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Iterator, Mapping
from enum import Enum
from typing import Any, Generic, Protocol, Self, TypeVar, runtime_checkable

from patterns._validation import require_clock, require_int_at_least
from patterns.clock import WALL_CLOCK, Clock, WallClock

__all__ = [
    "WALL_CLOCK",
    "GCounter",
    "GSet",
    "LWWRegister",
    "ORSet",
    "Ordering",
    "PNCounter",
    "StateCRDT",
    "VersionVector",
    "WallClock",
    "join",
]

T = TypeVar("T", bound=Hashable)
V = TypeVar("V")
Dot = tuple[str, int]
"""A unique event name: (replica id, that replica's sequence number, from 1)."""


def _require_replica(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {value!r} ({type(value).__name__})")
    if not value:
        raise ValueError(f"{name} must be a non-empty str, got {value!r}")
    return value


def _require_hashable(name: str, value: object) -> None:
    try:
        hash(value)
    except TypeError:
        raise TypeError(f"{name} must be hashable, got {value!r} "
                        f"({type(value).__name__})") from None


def _require_same_type(name: str, self: object, other: object) -> None:
    if type(other) is not type(self):
        raise TypeError(
            f"{name} must be a {type(self).__name__}, got {other!r} ({type(other).__name__})"
        )


# ============================================================================ protocol


@runtime_checkable
class StateCRDT(Protocol):
    """A replica of a state-based CRDT, as the gossip layer sees it.

    * ``merge(other)`` joins ``other``'s state into this replica (least upper bound) and
      returns ``True`` if and only if this replica's state changed. ``other`` must be of
      the same type (a :class:`TypeError` otherwise); it is not modified.
    * ``copy()`` returns an independent replica with the same state and replica id:
      mutating either never changes the other.
    * ``==`` compares states, not replica ids.
    * ``value`` is the query (an ``int``, a ``frozenset``, the register's value).
    * ``payload_units()`` counts the entries a state carries: the cost of shipping it.
    """

    def merge(self, other: Self) -> bool: ...

    def copy(self) -> Self: ...

    def __eq__(self, other: object) -> bool: ...

    @property
    def value(self) -> Any: ...

    def payload_units(self) -> int: ...


C = TypeVar("C", bound=StateCRDT)


def join(a: C, b: C) -> C:
    """The join (least upper bound) of two states as a new replica (``a``'s replica id).

    Neither argument is modified.
    """
    result = a.copy()
    result.merge(b)
    return result


# ============================================================================ version vector


class Ordering(Enum):
    """How two version vectors (or the histories they summarize) relate."""

    BEFORE = "before"
    """Every entry <= the other's and at least one < : the other has seen all of this."""
    AFTER = "after"
    """Every entry >= the other's and at least one > ."""
    EQUAL = "equal"
    CONCURRENT = "concurrent"
    """Neither dominates: each has seen an update the other has not."""


class VersionVector:
    """A version vector: per replica id, how many of its updates have been seen.

    Implements the guide's ``VersionVector`` (section 1.3), **immutable** and hashable:
    :meth:`increment` and :meth:`merge` return new vectors. An id that is missing counts
    as 0, and zero entries are dropped, so ``VersionVector({"a": 1, "b": 0}) ==
    VersionVector({"a": 1})`` (the guide's ``dominates`` returns ``False`` there).

    ``<=`` is the partial order of causality (every entry <=); it is *not* total: two
    concurrent vectors are neither ``<=`` nor ``>=`` each other, so do not sort them.
    :meth:`compare` names the four outcomes.

    >>> a = VersionVector().increment("a")
    >>> b = a.increment("b")
    >>> a.compare(b), a <= b, b.dominates(a)
    (<Ordering.BEFORE: 'before'>, True, True)
    """

    __slots__ = ("_entries", "_hash")

    def __init__(self, entries: Mapping[str, int] | Iterable[tuple[str, int]] = ()) -> None:
        given: object = entries
        if isinstance(given, Mapping):
            items: Iterable[Any] = given.items()
        elif isinstance(given, Iterable) and not isinstance(given, str | bytes):
            items = given
        else:
            raise TypeError(f"entries must be a mapping or pairs of (replica, count), "
                            f"got {entries!r}")
        clean: dict[str, int] = {}
        for pair in items:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise TypeError(f"entries must hold (replica, count) pairs, got {pair!r}")
            replica, count = pair
            if not isinstance(replica, str) or not replica:
                raise (ValueError if isinstance(replica, str) else TypeError)(
                    f"entries must be keyed by non-empty str replica ids, got {replica!r}")
            require_int_at_least(f"entries[{replica!r}]", count, 0)
            if count:
                clean[replica] = count
        self._entries: dict[str, int] = clean
        self._hash: int | None = None

    @classmethod
    def _trusted(cls, entries: dict[str, int]) -> VersionVector:
        vector = cls.__new__(cls)
        vector._entries = entries
        vector._hash = None
        return vector

    # ----------------------------------------------------------------------- reading

    def get(self, replica: str) -> int:
        """The count for ``replica``; 0 if it is missing."""
        return self._entries.get(replica, 0)

    def __getitem__(self, replica: str) -> int:
        return self._entries.get(replica, 0)

    def items(self) -> Iterator[tuple[str, int]]:
        """The non-zero entries, sorted by replica id."""
        return iter(sorted(self._entries.items()))

    def to_dict(self) -> dict[str, int]:
        """The non-zero entries as a new dict."""
        return dict(self._entries)

    @property
    def replicas(self) -> frozenset[str]:
        """The ids with a non-zero count."""
        return frozenset(self._entries)

    def total(self) -> int:
        """The sum of all counts (how many updates this vector has seen)."""
        return sum(self._entries.values())

    def payload_units(self) -> int:
        """Entries shipped when the vector is sent: one per non-zero replica."""
        return len(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    # ----------------------------------------------------------------------- updating

    def increment(self, replica: str) -> VersionVector:
        """A new vector with ``replica``'s count one higher."""
        _require_replica("replica", replica)
        entries = dict(self._entries)
        entries[replica] = entries.get(replica, 0) + 1
        return VersionVector._trusted(entries)

    def merge(self, other: VersionVector) -> VersionVector:
        """A new vector holding the entry-wise maximum (the join)."""
        _require_same_type("other", self, other)
        entries = dict(self._entries)
        for replica, count in other._entries.items():
            if count > entries.get(replica, 0):
                entries[replica] = count
        return VersionVector._trusted(entries)

    # ----------------------------------------------------------------------- ordering

    def dominates(self, other: VersionVector) -> bool:
        """``self >= other``: every entry of ``self`` is >= ``other``'s (missing = 0).

        As in the guide, an equal vector dominates too; use ``>`` for strictly.
        """
        _require_same_type("other", self, other)
        mine = self._entries
        return all(mine.get(replica, 0) >= count for replica, count in other._entries.items())

    def concurrent_with(self, other: VersionVector) -> bool:
        """Neither dominates the other."""
        return not self.dominates(other) and not other.dominates(self)

    def compare(self, other: VersionVector) -> Ordering:
        """:class:`Ordering` of ``self`` relative to ``other``."""
        ge, le = self.dominates(other), other.dominates(self)
        if ge and le:
            return Ordering.EQUAL
        if le:
            return Ordering.BEFORE
        if ge:
            return Ordering.AFTER
        return Ordering.CONCURRENT

    def __le__(self, other: object) -> bool:
        if not isinstance(other, VersionVector):
            return NotImplemented
        return other.dominates(self)

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, VersionVector):
            return NotImplemented
        return self.dominates(other)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, VersionVector):
            return NotImplemented
        return other.dominates(self) and self._entries != other._entries

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, VersionVector):
            return NotImplemented
        return self.dominates(other) and self._entries != other._entries

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VersionVector):
            return NotImplemented
        return self._entries == other._entries

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._entries.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"VersionVector({dict(sorted(self._entries.items()))!r})"


# ============================================================================ counters


class GCounter:
    """A grow-only counter: one count per replica, value = sum, join = entry-wise max.

    Each replica increments only its own entry, so no increment is ever lost or counted
    twice, whatever order and however often states are merged.

    >>> a, b = GCounter("a"), GCounter("b")
    >>> _ = a.increment(2); _ = b.increment()
    >>> a.merge(b), a.value
    (True, 3)
    """

    __slots__ = ("_counts", "_replica")

    def __init__(self, replica: str) -> None:
        self._replica = _require_replica("replica", replica)
        self._counts: dict[str, int] = {}

    @property
    def replica(self) -> str:
        """The id whose entry :meth:`increment` grows."""
        return self._replica

    @property
    def value(self) -> int:
        """The total of all increments seen."""
        return sum(self._counts.values())

    def count(self, replica: str) -> int:
        """The increments seen from ``replica``."""
        return self._counts.get(replica, 0)

    def increment(self, n: int = 1) -> GCounter:
        """Add ``n`` (an int >= 1) and return the delta: a counter with only this entry."""
        require_int_at_least("n", n, 1)
        total = self._counts.get(self._replica, 0) + n
        self._counts[self._replica] = total
        delta = GCounter(self._replica)
        delta._counts[self._replica] = total
        return delta

    def merge(self, other: Self) -> bool:
        """Join ``other`` in place (entry-wise max); ``True`` iff this state changed."""
        _require_same_type("other", self, other)
        changed = False
        counts = self._counts
        for replica, count in other._counts.items():
            if count > counts.get(replica, 0):
                counts[replica] = count
                changed = True
        return changed

    def copy(self, *, replica: str | None = None) -> Self:
        """An independent replica with the same state (and ``replica`` id, unless given)."""
        twin = type(self)(self._replica if replica is None else replica)
        twin._counts = dict(self._counts)
        return twin

    def payload_units(self) -> int:
        """One unit per replica entry."""
        return len(self._counts)

    def version_vector(self) -> VersionVector:
        """The state as a version vector (a G-Counter *is* one)."""
        return VersionVector._trusted(dict(self._counts))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GCounter):
            return NotImplemented
        return self._counts == other._counts

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"GCounter(replica={self._replica!r}, counts={dict(sorted(self._counts.items()))})"


class PNCounter:
    """A counter that can go down: two G-Counters, value = increments - decrements.

    >>> a, b = PNCounter("a"), PNCounter("b")
    >>> _ = a.increment(5); _ = b.decrement(2)
    >>> join(a, b).value
    3
    """

    __slots__ = ("_n", "_p", "_replica")

    def __init__(self, replica: str) -> None:
        self._replica = _require_replica("replica", replica)
        self._p = GCounter(replica)
        self._n = GCounter(replica)

    @property
    def replica(self) -> str:
        return self._replica

    @property
    def value(self) -> int:
        return self._p.value - self._n.value

    @property
    def increments(self) -> int:
        """The total of all increments seen."""
        return self._p.value

    @property
    def decrements(self) -> int:
        """The total of all decrements seen."""
        return self._n.value

    def increment(self, n: int = 1) -> PNCounter:
        """Add ``n`` (an int >= 1); return the delta."""
        delta = PNCounter(self._replica)
        delta._p = self._p.increment(n)
        return delta

    def decrement(self, n: int = 1) -> PNCounter:
        """Subtract ``n`` (an int >= 1); return the delta."""
        delta = PNCounter(self._replica)
        delta._n = self._n.increment(n)
        return delta

    def merge(self, other: Self) -> bool:
        """Join both halves in place; ``True`` iff this state changed."""
        _require_same_type("other", self, other)
        changed_p = self._p.merge(other._p)
        changed_n = self._n.merge(other._n)
        return changed_p or changed_n

    def copy(self, *, replica: str | None = None) -> Self:
        twin = type(self)(self._replica if replica is None else replica)
        twin._p = self._p.copy(replica=twin._replica)
        twin._n = self._n.copy(replica=twin._replica)
        return twin

    def payload_units(self) -> int:
        return self._p.payload_units() + self._n.payload_units()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PNCounter):
            return NotImplemented
        return self._p == other._p and self._n == other._n

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"PNCounter(replica={self._replica!r}, value={self.value}, "
                f"increments={self._p.value}, decrements={self._n.value})")


# ============================================================================ sets


class GSet(Generic[T]):
    """A grow-only set: join = union. Implements the guide's ``GSet`` without its vector.

    The guide attaches a version vector to its set; a G-Set needs none (the union is
    already a join), and the guide's vector counts a phantom update at creation (see
    ``simulations.crdt``). Elements must be hashable and should be immutable.

    >>> a, b = GSet[str]("a"), GSet[str]("b")
    >>> _ = a.add("x"); _ = b.add("y")
    >>> sorted(join(a, b).value)
    ['x', 'y']
    """

    __slots__ = ("_elements", "_replica")

    def __init__(self, replica: str, elements: Iterable[T] = ()) -> None:
        self._replica = _require_replica("replica", replica)
        if not isinstance(elements, Iterable):
            raise TypeError(f"elements must be iterable, got {elements!r}")
        try:
            self._elements: set[T] = set(elements)
        except TypeError as error:  # an unhashable element
            raise TypeError(f"elements must be hashable: {error}") from None

    @property
    def replica(self) -> str:
        return self._replica

    @property
    def value(self) -> frozenset[T]:
        return frozenset(self._elements)

    def add(self, element: T) -> GSet[T]:
        """Add ``element``; return the delta (a set holding just it)."""
        _require_hashable("element", element)
        self._elements.add(element)
        return GSet(self._replica, (element,))

    def __contains__(self, element: object) -> bool:
        return element in self._elements

    def __len__(self) -> int:
        return len(self._elements)

    def merge(self, other: Self) -> bool:
        """Union in place; ``True`` iff an element was new here."""
        _require_same_type("other", self, other)
        before = len(self._elements)
        self._elements |= other._elements
        return len(self._elements) != before

    def copy(self, *, replica: str | None = None) -> Self:
        return type(self)(self._replica if replica is None else replica, self._elements)

    def payload_units(self) -> int:
        """One unit per element."""
        return len(self._elements)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GSet):
            return NotImplemented
        return self._elements == other._elements

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"GSet(replica={self._replica!r}, elements={self._elements!r})"


class _CausalContext:
    """The set of dots a replica has seen: a version vector plus out-of-order dots.

    Full states always keep the context compact (each replica's dots 1..n, a version
    vector); deltas can arrive out of order and leave gaps, so dots beyond a gap wait in
    ``cloud`` until the gap fills (Almeida et al.'s "dot context"). Always compacted,
    so two contexts holding the same dots have the same representation.
    """

    __slots__ = ("cloud", "vv")

    def __init__(self) -> None:
        self.vv: dict[str, int] = {}
        self.cloud: set[Dot] = set()

    def copy(self) -> _CausalContext:
        twin = _CausalContext()
        twin.vv = dict(self.vv)
        twin.cloud = set(self.cloud)
        return twin

    def __contains__(self, dot: Dot) -> bool:
        return dot[1] <= self.vv.get(dot[0], 0) or dot in self.cloud

    def max(self, replica: str) -> int:
        highest = self.vv.get(replica, 0)
        for r, n in self.cloud:
            if r == replica and n > highest:
                highest = n
        return highest

    def add(self, dot: Dot) -> None:
        self.cloud.add(dot)
        self.compact()

    def update(self, other: _CausalContext) -> None:
        for replica, n in other.vv.items():
            if n > self.vv.get(replica, 0):
                self.vv[replica] = n
        self.cloud |= other.cloud
        self.compact()

    def compact(self) -> None:
        progress = True
        while progress and self.cloud:
            progress = False
            for dot in list(self.cloud):
                replica, n = dot
                known = self.vv.get(replica, 0)
                if n <= known:
                    self.cloud.discard(dot)
                elif n == known + 1:
                    self.vv[replica] = n
                    self.cloud.discard(dot)
                    progress = True

    def units(self) -> int:
        return len(self.vv) + len(self.cloud)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _CausalContext):
            return NotImplemented
        return self.vv == other.vv and self.cloud == other.cloud

    __hash__ = None  # type: ignore[assignment]


class ORSet(Generic[T]):
    """An add-wins observed-remove set, in the optimized form without tombstones.

    Each :meth:`add` tags the element with a fresh *dot* ``(replica, sequence)``; a
    :meth:`remove` drops the dots it has *observed* for the element. So a remove removes
    only adds it has seen, and an add concurrent with a remove wins (its dot is unknown
    to the remover). An element is present while it has at least one dot.

    Removed elements leave no tombstone: the replica keeps a *causal context*, the set of
    every dot it has seen, summarized as a version vector (one counter per replica; plus a
    few out-of-order dots while deltas are missing). A dot absent from the entries but
    covered by the context was removed, so the join drops it. Space is O(elements +
    replicas), not O(everything ever removed) (Bieniusa et al., "An optimized
    conflict-free replicated set", 2012; Almeida et al. 2018 for the deltas).

    >>> a = ORSet[str]("a"); _ = a.add("x")
    >>> b = a.copy(replica="b"); _ = b.remove("x"); _ = a.add("x")   # concurrent
    >>> "x" in join(a, b)                                            # add wins
    True
    """

    __slots__ = ("_context", "_entries", "_replica")

    def __init__(self, replica: str) -> None:
        self._replica = _require_replica("replica", replica)
        self._entries: dict[T, frozenset[Dot]] = {}
        self._context = _CausalContext()

    @property
    def replica(self) -> str:
        return self._replica

    @property
    def value(self) -> frozenset[T]:
        return frozenset(self._entries)

    def __contains__(self, element: object) -> bool:
        return element in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def context(self) -> VersionVector:
        """The compact part of the causal context: how many adds of each replica were seen."""
        return VersionVector._trusted(dict(self._context.vv))

    def add(self, element: T) -> ORSet[T]:
        """Add ``element`` with a fresh dot; return the delta.

        The delta carries the new dot and, in its context, the element's older dots, which
        the add supersedes (so they do not pile up).
        """
        _require_hashable("element", element)
        dot: Dot = (self._replica, self._context.max(self._replica) + 1)
        old = self._entries.get(element, frozenset())
        self._entries[element] = frozenset((dot,))
        self._context.add(dot)
        delta: ORSet[T] = ORSet(self._replica)
        delta._entries[element] = frozenset((dot,))
        for d in (dot, *old):
            delta._context.add(d)
        return delta

    def remove(self, element: T) -> ORSet[T]:
        """Remove the adds of ``element`` observed here; return the delta.

        Removing an absent element is a no-op (the delta is empty).
        """
        _require_hashable("element", element)
        old = self._entries.pop(element, frozenset())
        delta: ORSet[T] = ORSet(self._replica)
        for d in old:
            delta._context.add(d)
        return delta

    def merge(self, other: Self) -> bool:
        """Join ``other`` in place; ``True`` iff this state changed.

        A dot survives if both sides hold it, or one side holds it and the other has
        never seen it; a dot one side has seen but no longer holds was removed.
        """
        _require_same_type("other", self, other)
        mine, theirs = self._entries, other._entries
        my_ctx, their_ctx = self._context, other._context
        entries: dict[T, frozenset[Dot]] = {}
        empty: frozenset[Dot] = frozenset()
        for element in mine.keys() | theirs.keys():
            a = mine.get(element, empty)
            b = theirs.get(element, empty)
            if a == b:  # the common case: both hold the same dots
                entries[element] = a
                continue
            kept = (a & b) | {d for d in a - b if d not in their_ctx} | {
                d for d in b - a if d not in my_ctx}
            if kept:
                entries[element] = frozenset(kept)
        context = my_ctx.copy()
        context.update(their_ctx)
        changed = entries != mine or context != my_ctx
        self._entries, self._context = entries, context
        return changed

    def copy(self, *, replica: str | None = None) -> Self:
        twin = type(self)(self._replica if replica is None else replica)
        twin._entries = dict(self._entries)
        twin._context = self._context.copy()
        return twin

    def payload_units(self) -> int:
        """One unit per dot held plus one per context entry (replica or stray dot)."""
        return sum(len(dots) for dots in self._entries.values()) + self._context.units()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ORSet):
            return NotImplemented
        return self._entries == other._entries and self._context == other._context

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ORSet(replica={self._replica!r}, elements={set(self._entries)!r})"


# ============================================================================ register




class LWWRegister(Generic[V]):
    """A last-writer-wins register: the write with the highest timestamp wins.

    A write is stamped ``(time, sequence, replica)`` and compared lexicographically: the
    time from the replica's ``clock``, the replica id as a tie-break. The register never
    stamps a write lower than the state it already holds (if the clock is behind that
    stamp, the time stays and ``sequence`` grows, as in a hybrid logical clock), so a
    write always wins over every write this replica had seen.

    **Clock skew risk**: writes that did *not* see each other are ordered by their
    replicas' clocks. A replica whose clock runs ahead wins over later writes made
    elsewhere before its write arrived; the later write is lost, silently. Use a
    register only where losing a concurrent write is acceptable, keep clocks synchronized,
    and prefer a set or a counter (no lost updates) where every write matters.
    Values are shared, not copied, by :meth:`copy` and :meth:`merge`: store immutable ones.
    Replica ids must be unique per writer (equal stamps are assumed to be the same write).

    >>> from patterns.clock import ManualClock
    >>> clock = ManualClock(10.0)
    >>> a, b = LWWRegister[str]("a", clock=clock), LWWRegister[str]("b", clock=clock)
    >>> a.set("first"); _ = clock.advance(1); b.set("second")
    >>> join(a, b).value
    'second'
    """

    __slots__ = ("_clock", "_replica", "_stamp", "_value")

    def __init__(self, replica: str, *, clock: Clock = WALL_CLOCK) -> None:
        self._replica = _require_replica("replica", replica)
        require_clock("clock", clock)
        self._clock = clock
        self._stamp: tuple[float, int, str] | None = None
        self._value: V | None = None

    @property
    def replica(self) -> str:
        return self._replica

    @property
    def value(self) -> V | None:
        """The winning value; ``None`` before any write."""
        return self._value

    @property
    def timestamp(self) -> tuple[float, int, str] | None:
        """The winning write's stamp ``(time, sequence, replica)``; ``None`` if unset."""
        return self._stamp

    def set(self, value: V) -> None:
        """Write ``value`` stamped with this replica's clock.

        The clock must read a finite number: a NaN stamp compares false with every
        other, so replicas holding different values would never converge (and ``inf``
        would win over every later write). Such a reading is refused, state unchanged.
        """
        now = self._clock.now()
        if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
            raise ValueError(f"clock must read a finite time, got {now!r} from {self._clock!r}")
        now = float(now)
        stamp = self._stamp
        if stamp is None or now > stamp[0]:
            self._stamp = (now, 0, self._replica)
        else:
            self._stamp = (stamp[0], stamp[1] + 1, self._replica)
        self._value = value

    def merge(self, other: Self) -> bool:
        """Keep the write with the higher stamp; ``True`` iff ``other``'s won."""
        _require_same_type("other", self, other)
        if other._stamp is not None and (self._stamp is None or other._stamp > self._stamp):
            self._stamp, self._value = other._stamp, other._value
            return True
        return False

    def copy(self, *, replica: str | None = None) -> Self:
        twin = type(self)(self._replica if replica is None else replica, clock=self._clock)
        twin._stamp, twin._value = self._stamp, self._value
        return twin

    def payload_units(self) -> int:
        """One unit (the stamped value), none when unset."""
        return 0 if self._stamp is None else 1

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LWWRegister):
            return NotImplemented
        return self._stamp == other._stamp and bool(self._value == other._value)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LWWRegister(replica={self._replica!r}, value={self._value!r})"
