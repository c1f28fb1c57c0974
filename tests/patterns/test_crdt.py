"""Version vectors and state CRDTs (guide section 1.3): lattice laws, semantics, deltas."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patterns.clock import ManualClock
from patterns.dataflow.crdt import (
    GCounter,
    GSet,
    LWWRegister,
    Ordering,
    ORSet,
    PNCounter,
    StateCRDT,
    VersionVector,
    join,
)

REPLICAS = ("a", "b", "c")

# ============================================================================ version vectors

vectors = st.dictionaries(st.sampled_from("abcd"), st.integers(0, 3), max_size=4).map(
    VersionVector)


@given(vectors)
def test_vv_order_is_reflexive(a: VersionVector) -> None:
    assert a <= a
    assert a >= a
    assert a.compare(a) is Ordering.EQUAL
    assert not a < a


@given(vectors, vectors)
def test_vv_order_is_antisymmetric(a: VersionVector, b: VersionVector) -> None:
    if a <= b and b <= a:
        assert a == b
        assert hash(a) == hash(b)


@given(vectors, vectors, vectors)
def test_vv_order_is_transitive(a: VersionVector, b: VersionVector, c: VersionVector) -> None:
    if a <= b and b <= c:
        assert a <= c


@given(vectors, vectors)
def test_vv_concurrent_is_exactly_neither_dominates(a: VersionVector, b: VersionVector) -> None:
    neither = not a.dominates(b) and not b.dominates(a)
    assert a.concurrent_with(b) == neither
    assert (a.compare(b) is Ordering.CONCURRENT) == neither
    expected = {
        (True, True): Ordering.EQUAL,
        (True, False): Ordering.BEFORE,
        (False, True): Ordering.AFTER,
        (False, False): Ordering.CONCURRENT,
    }[(a <= b, b <= a)]
    assert a.compare(b) is expected
    assert (a < b) == (expected is Ordering.BEFORE)
    assert (a > b) == (expected is Ordering.AFTER)
    # The order agrees with the entries, missing counting as 0.
    keys = set(a.replicas) | set(b.replicas)
    assert (a <= b) == all(a.get(k) <= b.get(k) for k in keys)


@given(vectors, vectors, vectors)
def test_vv_merge_is_the_least_upper_bound(a: VersionVector, b: VersionVector,
                                           c: VersionVector) -> None:
    m = a.merge(b)
    assert a <= m
    assert b <= m
    assert m == b.merge(a)
    assert a.merge(a) == a
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    if a <= c and b <= c:
        assert m <= c


def test_vv_missing_entries_are_zero() -> None:
    with_zero = VersionVector({"a": 1, "b": 0})
    without = VersionVector({"a": 1})
    assert with_zero == without
    assert hash(with_zero) == hash(without)
    assert with_zero.dominates(without)
    assert without.dominates(with_zero)  # the guide says False here
    assert without.compare(with_zero) is Ordering.EQUAL
    assert without["zzz"] == 0
    assert len(with_zero) == 1


def test_vv_is_immutable_and_increment_returns_a_new_vector() -> None:
    empty = VersionVector()
    one = empty.increment("a")
    two = one.increment("a").increment("b")
    assert empty.to_dict() == {}
    assert one.to_dict() == {"a": 1}
    assert two.to_dict() == {"a": 2, "b": 1}
    assert two.total() == 3
    assert list(two.items()) == [("a", 2), ("b", 1)]
    assert one.compare(two) is Ordering.BEFORE
    assert two.compare(one) is Ordering.AFTER
    x, y = one.increment("x"), one.increment("y")
    assert x.compare(y) is Ordering.CONCURRENT
    assert x.concurrent_with(y)
    assert {x, y, one.increment("x")} == {x, y}
    with pytest.raises(AttributeError):
        one.foo = 1  # type: ignore[attr-defined]


def test_vv_comparisons_with_other_types() -> None:
    assert VersionVector() != {"a": 1}
    with pytest.raises(TypeError):
        _ = VersionVector() <= {"a": 1}  # type: ignore[operator]


@pytest.mark.parametrize(
    ("entries", "error", "fragment"),
    [
        ({"a": -1}, ValueError, "entries['a']"),
        ({"a": 1.5}, TypeError, "entries['a']"),
        ({"": 1}, ValueError, "replica"),
        ({3: 1}, TypeError, "replica"),
    ],
)
def test_vv_validation(entries: Any, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        VersionVector(entries)


def test_vv_increment_and_merge_validation() -> None:
    with pytest.raises(ValueError, match="replica"):
        VersionVector().increment("")
    with pytest.raises(TypeError, match="other"):
        VersionVector().merge({"a": 1})  # type: ignore[arg-type]


# ============================================================================ the CRDT kinds


@dataclass(frozen=True)
class Kind:
    name: str
    new: Callable[[str], Any]
    ops: st.SearchStrategy[Any]
    apply: Callable[[Any, Any], Any]
    """Run one update on a replica; return its delta (or None where there is none)."""


def _apply_pn(replica: PNCounter, op: int) -> PNCounter:
    return replica.increment(op) if op > 0 else replica.decrement(-op)


def _apply_orset(replica: ORSet[int], op: tuple[bool, int]) -> ORSet[int]:
    add, element = op
    return replica.add(element) if add else replica.remove(element)


_CLOCK = ManualClock()


def _new_lww(replica: str) -> LWWRegister[int]:
    return LWWRegister(replica, clock=_CLOCK)


def _apply_lww(replica: LWWRegister[int], op: tuple[float, int]) -> None:
    step, value = op
    _CLOCK.advance(step)
    replica.set(value)


KINDS = [
    Kind("GCounter", GCounter, st.integers(1, 5), lambda r, op: r.increment(op)),
    Kind("PNCounter", PNCounter, st.integers(-5, 5).filter(bool), _apply_pn),
    Kind("GSet", GSet, st.integers(0, 6), lambda r, op: r.add(op)),
    Kind("ORSet", ORSet, st.tuples(st.booleans(), st.integers(0, 4)), _apply_orset),
    Kind("LWWRegister", _new_lww, st.tuples(st.sampled_from([0.0, 0.5, 1.0]), st.integers(0, 9)),
         _apply_lww),
]
KIND_IDS = [kind.name for kind in KINDS]
DELTA_KINDS = [kind for kind in KINDS if kind.name != "LWWRegister"]


def _step(kind: Kind) -> st.SearchStrategy[tuple[str, int, Any]]:
    """One step of a history: an update at replica i, or replica i merging replica j."""
    return st.one_of(
        st.tuples(st.just("op"), st.integers(0, 2), kind.ops),
        st.tuples(st.just("sync"), st.integers(0, 2), st.integers(0, 2)),
    )


def _run_history(kind: Kind, steps: list[tuple[str, int, Any]]) -> list[Any]:
    replicas = [kind.new(r) for r in REPLICAS]
    for action, i, arg in steps:
        if action == "op":
            kind.apply(replicas[i], arg)
        else:
            replicas[i].merge(replicas[arg])
    return replicas


def _states(kind: Kind) -> st.SearchStrategy[list[Any]]:
    """Three replica states reached by a random history of updates and merges."""
    return st.lists(_step(kind), max_size=25).map(lambda steps: _run_history(kind, steps))


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_every_kind_follows_the_protocol(kind: Kind) -> None:
    replica = kind.new("a")
    assert isinstance(replica, StateCRDT)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@settings(deadline=None, max_examples=60)
@given(data=st.data())
def test_merge_is_commutative_associative_idempotent(kind: Kind, data: st.DataObject) -> None:
    a, b, c = data.draw(_states(kind))
    assert join(a, b) == join(b, a)
    assert join(join(a, b), c) == join(a, join(b, c))
    assert join(a, a) == a
    assert join(a, join(a, b)) == join(a, b)  # absorbing: merging again changes nothing


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@settings(deadline=None, max_examples=60)
@given(data=st.data())
def test_join_mutates_neither_argument_and_copy_is_independent(kind: Kind,
                                                               data: st.DataObject) -> None:
    a, b, _ = data.draw(_states(kind))
    a_before, b_before = a.copy(), b.copy()
    joined = join(a, b)
    assert a == a_before
    assert b == b_before
    assert joined.replica == a.replica
    twin = a.copy()
    kind.apply(twin, data.draw(kind.ops))
    twin.merge(b)
    assert a == a_before


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@settings(deadline=None, max_examples=60)
@given(data=st.data())
def test_merge_returns_true_exactly_when_the_state_changed(kind: Kind,
                                                           data: st.DataObject) -> None:
    a, b, _ = data.draw(_states(kind))
    before = a.copy()
    changed = a.merge(b)
    assert changed == (a != before)
    assert a == join(before, b)
    assert a.merge(b) is False  # idempotent: nothing new the second time


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@settings(deadline=None, max_examples=60)
@given(data=st.data())
def test_replicas_that_saw_the_same_updates_agree(kind: Kind, data: st.DataObject) -> None:
    # Updates happen at their origin replicas; every one is shipped as a snapshot of its
    # origin's state right after it. Two receivers get all snapshots, in different
    # orders and groupings, some twice: they end in the same state.
    origins = [kind.new(r) for r in REPLICAS]
    ops = data.draw(st.lists(st.tuples(st.integers(0, 2), kind.ops), min_size=1, max_size=15))
    snapshots = []
    for i, op in ops:
        kind.apply(origins[i], op)
        snapshots.append(origins[i].copy())
    order = data.draw(st.permutations(range(len(snapshots))))
    first = kind.new("x")
    for index in order:
        first.merge(snapshots[index])
    # grouped: join runs of a shuffled list, then merge the groups, with duplicates
    order2 = data.draw(st.permutations(range(len(snapshots))))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(snapshots) - 1)), max_size=4)))
    groups = [order2[lo:hi] for lo, hi in itertools.pairwise([0, *cuts, len(snapshots)])]
    second = kind.new("y")
    for group in groups:
        if not group:
            continue
        acc = snapshots[group[0]].copy()
        for index in group[1:]:
            acc.merge(snapshots[index])
        second.merge(acc)
        second.merge(acc)
    assert first == second
    assert first.value == second.value
    everything = origins[0].copy()
    everything.merge(origins[1])
    everything.merge(origins[2])
    assert first == everything


@pytest.mark.parametrize("kind", DELTA_KINDS, ids=[k.name for k in DELTA_KINDS])
@settings(deadline=None, max_examples=60)
@given(data=st.data())
def test_deltas_applied_to_an_old_copy_give_the_full_state(kind: Kind,
                                                           data: st.DataObject) -> None:
    # A replica runs some updates, another holds an old copy; the deltas, applied in any
    # order (a delta group may arrive out of order) bring the copy to the full state.
    origin = data.draw(_states(kind))[0]
    old = origin.copy(replica="old")
    old_for_group = origin.copy(replica="old2")
    ops = data.draw(st.lists(kind.ops, max_size=12))
    deltas = [kind.apply(origin, op) for op in ops]
    for delta in deltas:
        assert type(delta) is type(origin)
        assert delta.payload_units() <= 2 + (1 if kind.name == "ORSet" else 0) * 20
    for delta in data.draw(st.permutations(deltas)):
        old.merge(delta)
    assert old == origin
    # a delta group (the join of the deltas) does the same in one message
    group = kind.new("g")
    for delta in deltas:
        group.merge(delta)
    old_for_group.merge(group)
    assert old_for_group == origin


def test_deltas_are_smaller_than_the_state() -> None:
    counter = GCounter("a")
    for r in "bcdefgh":
        other = GCounter(r)
        other.increment()
        counter.merge(other)
    delta = counter.increment()
    assert delta.payload_units() == 1
    assert counter.payload_units() == 8
    s: ORSet[int] = ORSet("a")
    for i in range(50):
        s.add(i)
    assert s.payload_units() == 51  # 50 dots + one context entry
    assert s.add(99).payload_units() == 2  # the new dot, in entries and context


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_merging_another_type_is_a_type_error(kind: Kind) -> None:
    replica = kind.new("a")
    other: Any = GSet("b") if kind.name != "GSet" else GCounter("b")
    with pytest.raises(TypeError, match="other must be a"):
        replica.merge(other)
    with pytest.raises(TypeError, match="other must be a"):
        replica.merge(None)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize(("bad", "error"), [("", ValueError), (None, TypeError), (3, TypeError)])
def test_replica_id_is_validated(kind: Kind, bad: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="replica"):
        kind.new(bad)


@pytest.mark.parametrize("cls", [GCounter, PNCounter])
@pytest.mark.parametrize(("n", "error"), [(0, ValueError), (-1, ValueError), (1.0, TypeError),
                                          (True, TypeError)])
def test_counter_steps_are_validated(cls: Any, n: Any, error: type[Exception]) -> None:
    counter = cls("a")
    with pytest.raises(error, match=f"n must .*{n!r}"):
        counter.increment(n)
    if cls is PNCounter:
        with pytest.raises(error, match="n must"):
            counter.decrement(n)
    assert counter.value == 0


# ============================================================================ semantics


@settings(deadline=None, max_examples=60)
@given(data=st.data())
def test_gcounter_never_decreases_and_counts_every_increment(data: st.DataObject) -> None:
    kind = KINDS[0]
    steps = data.draw(st.lists(_step(kind), max_size=30))
    replicas = [GCounter(r) for r in REPLICAS]
    done = 0
    for action, i, arg in steps:
        before = replicas[i].value
        if action == "op":
            replicas[i].increment(arg)
            done += arg
        else:
            replicas[i].merge(replicas[arg])
        assert replicas[i].value >= before
    total = join(join(replicas[0], replicas[1]), replicas[2])
    assert total.value == done


def test_pncounter_value_and_halves() -> None:
    a, b = PNCounter("a"), PNCounter("b")
    a.increment(5)
    b.decrement(2)
    b.increment()
    assert a.merge(b) is True
    assert (a.value, a.increments, a.decrements) == (4, 6, 2)
    assert a.merge(b) is False
    assert a.payload_units() == 3


def test_gset_basics() -> None:
    s: GSet[str] = GSet("a")
    delta = s.add("x")
    assert "x" in s
    assert len(s) == 1
    assert delta.value == frozenset({"x"})
    assert s.add("x").value == frozenset({"x"})
    assert s.value == frozenset({"x"})
    other: GSet[str] = GSet("b", ["y"])
    assert s.merge(other) is True
    assert s.merge(other) is False
    assert s == GSet("zzz", ["x", "y"])  # equality ignores the replica id


def test_orset_add_concurrent_with_remove_wins() -> None:
    a: ORSet[str] = ORSet("a")
    a.add("x")
    b = a.copy(replica="b")
    b.remove("x")            # b removes the add it saw...
    a.add("x")               # ...while a adds x again, concurrently
    assert "x" not in b
    assert "x" in join(a, b)
    assert "x" in join(b, a)


def test_orset_remove_removes_only_what_it_observed() -> None:
    a: ORSet[str] = ORSet("a")
    b: ORSet[str] = ORSet("b")
    a.add("x")
    b.merge(a)
    c: ORSet[str] = ORSet("c")
    c.add("x")               # an add b has never seen
    b.remove("x")
    b.merge(c)
    assert "x" in b          # c's add survives b's remove
    a.merge(b)
    assert a.value == frozenset({"x"})
    b.remove("x")            # now b has seen c's add too
    a.merge(b)
    c.merge(a)
    assert "x" not in a
    assert "x" not in c


def test_orset_remove_then_readd_and_no_tombstones() -> None:
    s: ORSet[int] = ORSet("a")
    for i in range(100):
        s.add(i)
    for i in range(100):
        s.remove(i)
    assert s.value == frozenset()
    assert s.payload_units() == 1  # only the context entry {"a": 100}: no tombstones
    assert s.context() == VersionVector({"a": 100})
    s.add(7)
    assert s.value == frozenset({7})
    assert s.remove(42).payload_units() == 0  # removing an absent element: empty delta
    old = s.copy(replica="b")
    s.remove(7)
    assert old.merge(s) is True
    assert old.value == frozenset()


def test_orset_merge_reports_a_change_of_the_context_alone() -> None:
    # b added and removed x; a never saw x: merging changes a's context only, which
    # matters (a late copy of b's add must now be dropped), so merge says True.
    b: ORSet[str] = ORSet("b")
    b.add("x")
    late_add = b.copy()
    b.remove("x")
    a: ORSet[str] = ORSet("a")
    assert a.merge(b) is True
    assert a.value == frozenset()
    assert a.merge(late_add) is False
    assert a.value == frozenset()


def test_orset_out_of_order_deltas_wait_in_the_context() -> None:
    s: ORSet[str] = ORSet("a")
    d1, d2, d3 = s.add("x"), s.add("y"), s.remove("x")
    r: ORSet[str] = ORSet("r")
    r.merge(d3)               # the remove of an add not yet seen
    r.merge(d2)
    assert r.value == frozenset({"y"})
    r.merge(d1)               # the late add of x was already removed
    assert r.value == frozenset({"y"})
    assert r == s
    assert r.payload_units() == s.payload_units() == 2


def test_lww_later_write_wins_and_ties_break_by_replica() -> None:
    clock = ManualClock(10.0)
    a: LWWRegister[str] = LWWRegister("a", clock=clock)
    b: LWWRegister[str] = LWWRegister("b", clock=clock)
    assert a.value is None
    assert a.timestamp is None
    assert a.payload_units() == 0
    a.set("first")
    clock.advance(1.0)
    b.set("second")
    assert join(a, b).value == "second"
    assert join(b, a).value == "second"
    a.set("tie")              # same clock reading as b's write
    assert a.timestamp == (11.0, 0, "a")
    assert b.timestamp == (11.0, 0, "b")
    assert join(a, b).value == "second"  # equal times: the higher replica id wins
    assert join(b, a).value == "second"
    a.set("again")            # the clock has not moved: the sequence number grows
    assert a.timestamp == (11.0, 1, "a")
    assert join(b, a).value == "again"


def test_lww_never_stamps_below_what_it_has_seen() -> None:
    fast = ManualClock(100.0)   # a clock running ahead
    slow = ManualClock(0.0)
    a: LWWRegister[str] = LWWRegister("a", clock=fast)
    b: LWWRegister[str] = LWWRegister("b", clock=slow)
    a.set("from the future")
    b.merge(a)
    b.set("seen and overwritten")   # b's clock says 0, but it saw a stamp at 100
    assert b.timestamp == (100.0, 1, "b")
    a.merge(b)
    assert a.value == "seen and overwritten"


def test_lww_skew_loses_a_concurrent_later_write() -> None:
    real = ManualClock(0.0)

    class Skewed:
        def __init__(self, offset: float) -> None:
            self.offset = offset

        def now(self) -> float:
            return real.now() + self.offset

    a: LWWRegister[str] = LWWRegister("a", clock=Skewed(5.0))
    b: LWWRegister[str] = LWWRegister("b", clock=Skewed(0.0))
    a.set("earlier")
    real.advance(1.0)
    b.set("later")                  # later in real time, but a's clock is 5 s ahead
    assert join(a, b).value == "earlier"


def test_lww_clock_is_validated() -> None:
    with pytest.raises(TypeError, match="clock"):
        LWWRegister("a", clock=object())  # type: ignore[arg-type]


def test_reprs_are_informative() -> None:
    assert "GCounter(replica='a'" in repr(GCounter("a"))
    assert "value=0" in repr(PNCounter("a"))
    assert repr(VersionVector({"a": 1})) == "VersionVector({'a': 1})"
    assert "ORSet(replica='a'" in repr(ORSet("a"))
    assert "GSet(replica='a'" in repr(GSet("a"))
    assert repr(LWWRegister("a")) == "LWWRegister(replica='a', value=None)"


def test_docstring_examples_run() -> None:
    import doctest

    import patterns.dataflow.crdt as module

    failures, attempted = doctest.testmod(module)
    assert attempted > 10
    assert failures == 0
