"""Bad-input sweep (issue 11) of locks, sagas and two-phase commit (guide 5.1 and 5.2).

Every public constructor and method turns a bad value into a ``ValueError`` or
``TypeError`` naming the parameter (and the value), before any state changes. Timeouts
that document "for ever" (``inf``) are tested to work in their own modules' tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bad_input import (
    HUGE,
    NEGATIVE,
    NON_FINITE,
    NOT_A_NUMBER,
    NOT_AN_INT,
    NOT_CALLABLE,
    SWEEP,
    assert_rejected,
)
from hypothesis import given
from hypothesis import strategies as st

from patterns.clock import MONOTONIC, ManualClock
from patterns.consistency.lock import (
    FencedResource,
    InMemoryLockStore,
    Lease,
    LeaseRenewer,
    RedisLockStore,
    SQLiteLockStore,
    aacquire,
    acquire,
    alocked,
    locked,
    simpy_acquire,
)
from patterns.consistency.saga import (
    InMemorySagaLog,
    LogKind,
    SagaLog,
    SagaOrchestrator,
    SagaStep,
    SQLiteSagaLog,
)
from patterns.consistency.twophase import (
    Decision,
    DecisionLog,
    InMemoryDecisionLog,
    LockingParticipant,
    SQLiteDecisionLog,
    TwoPhaseCoordinator,
)
from patterns.storage.sqlite import SQLiteDatabase

#: Durations that must be finite and > 0 (and no longer than a year).
BAD_DURATION = NON_FINITE | HUGE | NEGATIVE | NOT_A_NUMBER | st.just(0)
#: Values that are not ids (non-empty strings).
NOT_AN_ID = st.sampled_from([None, 1, 1.5, True, b"x", ["x"], "", "   "])
#: Values with no ``now()``.
NOT_A_CLOCK = NOT_A_NUMBER | st.just(MONOTONIC.now)


def _nothing(_ctx: object) -> None:
    return None


# =========================================================================== locks


class _ScriptsOnly:
    """A Redis client stand-in: validation must fail before any command is sent."""

    def register_script(self, script: str) -> Any:
        def run(**_kwargs: object) -> object:
            raise AssertionError("a command was sent for a bad argument")
        return run


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    clock = ManualClock(1000.0)
    if request.param == "memory":
        yield InMemoryLockStore(clock=clock)
    elif request.param == "sqlite":
        with SQLiteDatabase(tmp_path / "locks.db") as db:
            yield SQLiteLockStore(db, clock=clock)
    else:
        yield RedisLockStore(_ScriptsOnly(), clock=clock)


def _lease(ttl: float = 5.0) -> Lease:
    return Lease("a", "owner", 1, 1005.0, ttl)


@SWEEP
@given(value=NOT_A_CLOCK)
def test_lock_store_clocks(value: Any, tmp_path: Path) -> None:
    assert_rejected(lambda: InMemoryLockStore(clock=value), "clock", value)
    assert_rejected(lambda: RedisLockStore(_ScriptsOnly(), clock=value), "clock", value)
    with SQLiteDatabase(tmp_path / "c.db") as db:
        assert_rejected(lambda: SQLiteLockStore(db, clock=value), "clock", value)


def test_lock_store_other_constructor_arguments(tmp_path: Path) -> None:
    for value in (None, "x.db", 3):
        assert_rejected(lambda v=value: SQLiteLockStore(v), "database", value)
    for value in (None, 3, "redis://"):
        assert_rejected(lambda v=value: RedisLockStore(v), "client", value)
    for value in (None, 3, b"p"):
        assert_rejected(lambda v=value: RedisLockStore(_ScriptsOnly(), prefix=v), "prefix", value)
    assert_rejected(lambda: RedisLockStore.from_url(3), "url", 3)  # type: ignore[arg-type]
    with SQLiteDatabase(tmp_path / "m.db") as db:
        assert_rejected(lambda: SQLiteLockStore(db, clock=MONOTONIC), "clock")


@SWEEP
@given(value=BAD_DURATION)
def test_lock_ttls(store: Any, value: Any) -> None:
    assert_rejected(lambda: store.try_acquire("a", value), "ttl", value)
    if value is not None:  # extend(lease, None) keeps the lease's ttl
        assert_rejected(lambda: store.extend(_lease(), value), "ttl", value)
    if not isinstance(store, RedisLockStore):
        assert store.holder("a") is None


@SWEEP
@given(value=NOT_AN_ID)
def test_lock_names_and_leases(store: Any, value: Any) -> None:
    if value in ("   ",):
        return  # a blank lock name is a name
    assert_rejected(lambda: store.try_acquire(value, 1.0), "name", value)
    assert_rejected(lambda: store.holder(value), "name", value)
    assert_rejected(lambda: store.extend(value), "lease", value)
    assert_rejected(lambda: store.release(value), "lease", value)


@SWEEP
@given(value=BAD_DURATION)
def test_lease_fields(value: Any) -> None:
    assert_rejected(lambda: Lease("a", "o", 1, 5.0, value), "ttl", value)
    if not isinstance(value, int | float) or isinstance(value, bool) or value != value or abs(
            value) == float("inf"):  # any finite reading of a clock is an expiry time
        assert_rejected(lambda: Lease("a", "o", 1, value, 1.0), "expires_at", value)
    assert_rejected(lambda: _lease().remaining(float("nan")), "now", float("nan"))


def test_lease_identity_fields() -> None:
    assert_rejected(lambda: Lease("", "o", 1, 5.0, 1.0), "name", "")
    assert_rejected(lambda: Lease("a", "", 1, 5.0, 1.0), "owner", "")
    for token in (True, 1.5, "1", None):
        assert_rejected(lambda t=token: Lease("a", "o", t, 5.0, 1.0), "fencing_token", token)
    assert_rejected(lambda: Lease("a", "o", -1, 5.0, 1.0), "fencing_token", -1)


@SWEEP
@given(value=NON_FINITE | HUGE | NEGATIVE | NOT_A_NUMBER | st.just(0))
def test_acquire_drivers_retry_interval(value: Any) -> None:
    store = InMemoryLockStore(clock=ManualClock())
    assert_rejected(lambda: acquire(store, "a", 1.0, retry_interval=value), "retry_interval",
                    value)
    assert_rejected(lambda: asyncio.run(aacquire(store, "a", 1.0, retry_interval=value)),
                    "retry_interval", value)
    assert_rejected(lambda: simpy_acquire(_Env(), store, "a", 1.0, retry_interval=value),
                    "retry_interval", value)

    def hold() -> None:
        with locked(store, "a", 1.0, retry_interval=value):
            pass

    async def ahold() -> None:
        async with alocked(store, "a", 1.0, retry_interval=value):
            pass

    assert_rejected(hold, "retry_interval", value)
    assert_rejected(lambda: asyncio.run(ahold()), "retry_interval", value)
    assert store.holder("a") is None  # nothing was acquired


@SWEEP
@given(value=st.sampled_from([float("nan"), -1.0, -float("inf"), "1", True, [1], 1j]))
def test_acquire_drivers_timeout(value: Any) -> None:
    store = InMemoryLockStore(clock=ManualClock())
    assert_rejected(lambda: acquire(store, "a", 1.0, timeout=value), "timeout", value)
    assert_rejected(lambda: asyncio.run(aacquire(store, "a", 1.0, timeout=value)),
                    "timeout", value)
    assert_rejected(lambda: simpy_acquire(_Env(), store, "a", 1.0, timeout=value),
                    "timeout", value)
    assert store.holder("a") is None


class _Env:
    now = 0.0

    def timeout(self, delay: float) -> object:
        return delay


@SWEEP
@given(value=BAD_DURATION)
def test_acquire_drivers_ttl_and_name(value: Any) -> None:
    store = InMemoryLockStore(clock=ManualClock())
    assert_rejected(lambda: acquire(store, "a", value), "ttl", value)
    assert_rejected(lambda: simpy_acquire(_Env(), store, "a", value), "ttl", value)
    assert_rejected(lambda: acquire(store, "", 1.0), "name", "")


def test_acquire_drivers_store_env_and_sleep() -> None:
    store = InMemoryLockStore(clock=ManualClock())
    for value in (None, 3, "store", object()):
        assert_rejected(lambda v=value: acquire(v, "a", 1.0), "store")
        assert_rejected(lambda v=value: simpy_acquire(_Env(), v, "a", 1.0), "store")
        assert_rejected(lambda v=value: simpy_acquire(v, store, "a", 1.0), "env")
    for value in (1, "f", None, [len], 2.5):
        assert_rejected(lambda v=value: acquire(store, "a", 1.0, sleep=v), "sleep", value)
    assert store.holder("a") is None


@SWEEP
@given(value=BAD_DURATION)
def test_lease_renewer_durations(value: Any) -> None:
    store = InMemoryLockStore(clock=ManualClock())
    lease = store.try_acquire("a", 10.0)
    assert lease is not None
    if value is not None:  # None: the lease's ttl, a third of it
        assert_rejected(lambda: LeaseRenewer(store, lease, ttl=value), "ttl", value)
        assert_rejected(lambda: LeaseRenewer(store, lease, interval=value), "interval", value)


@SWEEP
@given(value=NOT_CALLABLE)
def test_lease_renewer_arguments(value: Any) -> None:
    store = InMemoryLockStore(clock=ManualClock())
    lease = store.try_acquire("a", 10.0)
    assert lease is not None
    if value is not None:
        assert_rejected(lambda: LeaseRenewer(store, lease, on_lost=value), "on_lost", value)
    assert_rejected(lambda: LeaseRenewer(value, lease), "store", value)
    assert_rejected(lambda: LeaseRenewer(store, value), "lease", value)
    assert_rejected(lambda: LeaseRenewer(store, lease).simpy_run(value), "env", value)
    assert_rejected(lambda: LeaseRenewer(store, lease, interval=10.0), "interval", 10.0)


@SWEEP
@given(token=NOT_AN_INT | st.integers(max_value=-1))
def test_fenced_resource(token: Any) -> None:
    resource = FencedResource()
    assert_rejected(lambda: resource.write("r", 1, token), "token", token)
    for value in ("", None, 3, b"r"):
        assert_rejected(lambda v=value: resource.write(v, 1, 1), "resource", value)
        assert_rejected(lambda v=value: resource.read(v), "resource", value)
        assert_rejected(lambda v=value: resource.highest_token(v), "resource", value)
    assert resource.history == []


# =========================================================================== sagas


@pytest.fixture(params=["memory", "sqlite"])
def saga_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SagaLog]:
    if request.param == "memory":
        yield InMemorySagaLog(clock=ManualClock())
    else:
        with SQLiteDatabase(tmp_path / "saga.db") as db:
            yield SQLiteSagaLog(db, clock=ManualClock())


STEPS = [SagaStep("a", _nothing, _nothing)]


@SWEEP
@given(value=BAD_DURATION)
def test_saga_leases(saga_log: SagaLog, value: Any) -> None:
    assert_rejected(lambda: SagaOrchestrator("o", STEPS, saga_log, lease=value), "lease", value)
    assert_rejected(lambda: saga_log.begin("x", "o", {}, owner="A", lease=value), "lease", value)
    assert "x" not in saga_log.unfinished()
    if "s" not in saga_log.unfinished():
        saga_log.begin("s", "o", {}, owner="A", lease=10)
    before = saga_log.history("s")
    if value is not None:  # an append without lease does not renew
        assert_rejected(lambda: saga_log.append("s", LogKind.ABORTING, owner="A", lease=value),
                        "lease", value)
    assert_rejected(lambda: saga_log.claim("s", "B", value), "lease", value)
    assert saga_log.history("s") == before


@SWEEP
@given(value=NOT_AN_ID)
def test_saga_ids_and_owners(saga_log: SagaLog, value: Any) -> None:
    if "s" not in saga_log.unfinished():
        saga_log.begin("s", "o", {}, owner="A", lease=10)
    before = saga_log.history("s")
    assert_rejected(lambda: saga_log.begin(value, "o", {}), "saga_id", value)
    assert_rejected(lambda: saga_log.begin("x", value, {}), "name", value)
    assert_rejected(lambda: saga_log.begin("x", "o", {}, owner=value, lease=1.0), "owner", value)
    assert_rejected(lambda: saga_log.append(value, LogKind.ABORTING), "saga_id", value)
    if value is not None:  # None: a writer of an unowned saga
        assert_rejected(lambda: saga_log.append("s", LogKind.ABORTING, owner=value), "owner",
                        value)
    assert_rejected(lambda: saga_log.claim(value, "B", 1.0), "saga_id", value)
    assert_rejected(lambda: saga_log.claim("s", value, 1.0), "owner", value)
    assert_rejected(lambda: saga_log.release(value, "A"), "saga_id", value)
    assert_rejected(lambda: saga_log.release("s", value), "owner", value)
    assert_rejected(lambda: saga_log.history(value), "saga_id", value)
    orchestrator = SagaOrchestrator("o", STEPS, saga_log)
    assert_rejected(lambda: orchestrator.run(value), "saga_id", value)
    assert_rejected(lambda: orchestrator.recover(value), "saga_id", value)
    assert_rejected(lambda: SagaOrchestrator(value, STEPS, saga_log), "name", value)
    assert_rejected(lambda: SagaStep(value, _nothing, _nothing), "name", value)
    assert saga_log.history("s") == before
    assert saga_log.unfinished() == ["s"]


@SWEEP
@given(value=NOT_AN_INT | st.integers(max_value=-1))
def test_saga_log_steps_and_kinds(saga_log: SagaLog, value: Any) -> None:
    if "s" not in saga_log.unfinished():
        saga_log.begin("s", "o", {})
    assert_rejected(lambda: saga_log.append("s", LogKind.STEP_STARTED, value), "step", value)
    assert_rejected(lambda: saga_log.append("s", "step_started", 0), "kind")  # type: ignore[arg-type]
    assert_rejected(lambda: saga_log.append("s", LogKind.ABORTING, 0), "step", 0)
    assert_rejected(lambda: saga_log.begin("x", "o", {}, lease=5.0), "lease", 5.0)
    assert_rejected(lambda: saga_log.begin("x", "o", {}, owner="A"), "lease")
    assert saga_log.history("s").records == ()


@SWEEP
@given(value=st.sampled_from([None, 3, "data", [("a", 1)], {"x": float("nan")},
                              {"x": object()}, {"x": float("inf")}]))
def test_saga_data(saga_log: SagaLog, value: Any) -> None:
    orchestrator = SagaOrchestrator("o", STEPS, saga_log)
    assert_rejected(lambda: saga_log.begin("x", "o", value), "data")
    if value is not None:
        assert_rejected(lambda: orchestrator.run("x", value), "data")
    assert saga_log.unfinished() == []


@SWEEP
@given(value=NOT_CALLABLE)
def test_saga_orchestrator_arguments(saga_log: SagaLog, value: Any) -> None:
    assert_rejected(lambda: SagaStep("a", value, _nothing), "action", value)
    assert_rejected(lambda: SagaStep("a", _nothing, value), "compensation", value)
    assert_rejected(lambda: SagaOrchestrator("o", STEPS, value), "log", value)
    if value is not None:
        assert_rejected(lambda: SagaOrchestrator("o", STEPS, saga_log, compensation_retry=value),
                        "compensation_retry", value)
        assert_rejected(lambda: SagaOrchestrator("o", STEPS, saga_log, action_retry=value),
                        "action_retry", value)
        assert_rejected(lambda: SagaOrchestrator("o", value, saga_log), "steps")
    assert_rejected(lambda: SagaOrchestrator("o", STEPS, saga_log, clock=value), "clock", value)
    assert_rejected(lambda: SagaOrchestrator("o", [], saga_log), "steps")
    assert_rejected(lambda: SagaOrchestrator("o", [value], saga_log), "steps")


@SWEEP
@given(value=NOT_A_CLOCK)
def test_saga_log_constructors(value: Any, tmp_path: Path) -> None:
    assert_rejected(lambda: InMemorySagaLog(clock=value), "clock", value)
    assert_rejected(lambda: SQLiteSagaLog(tmp_path / "x.db", clock=value), "clock", value)
    assert_rejected(lambda: SQLiteSagaLog(3), "database", 3)  # type: ignore[arg-type]
    assert_rejected(lambda: SQLiteSagaLog(tmp_path / "x.db", clock=MONOTONIC), "clock")


# =========================================================================== two-phase commit


@pytest.fixture(params=["memory", "sqlite"])
def decision_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DecisionLog]:
    if request.param == "memory":
        yield InMemoryDecisionLog()
    else:
        with SQLiteDatabase(tmp_path / "2pc.db") as db:
            yield SQLiteDecisionLog(db)


@SWEEP
@given(value=BAD_DURATION)
def test_prepare_timeout(decision_log: DecisionLog, value: Any) -> None:
    p = LockingParticipant("p")
    assert_rejected(lambda: TwoPhaseCoordinator({"p": p}, decision_log, prepare_timeout=value),
                    "prepare_timeout", value)


@SWEEP
@given(value=st.sampled_from([float("nan"), float("inf"), -1.0, -1, "1", True, [1], 1j]))
def test_recover_min_age(decision_log: DecisionLog, value: Any) -> None:
    p = LockingParticipant("p")
    if not decision_log.pending():
        decision_log.begin("t", ("p",))
    coordinator = TwoPhaseCoordinator({"p": p}, decision_log)
    assert_rejected(lambda: coordinator.recover(min_age=value), "min_age", value)
    assert decision_log.decision("t") is None


@SWEEP
@given(value=NOT_AN_ID)
def test_two_phase_ids(decision_log: DecisionLog, value: Any) -> None:
    p = LockingParticipant("p")
    coordinator = TwoPhaseCoordinator({"p": p}, decision_log)
    assert_rejected(lambda: coordinator.execute(value), "txid", value)
    assert_rejected(lambda: decision_log.begin(value, ("p",)), "txid", value)
    assert_rejected(lambda: decision_log.decide(value, Decision.ABORT), "txid", value)
    assert_rejected(lambda: decision_log.decision(value), "txid", value)
    assert_rejected(lambda: decision_log.finish(value), "txid", value)
    assert_rejected(lambda: decision_log.begin("t", (value,)), "participant name", value)
    if not isinstance(value, list):  # a dict key must be hashable
        assert_rejected(lambda: TwoPhaseCoordinator({value: p}, decision_log),
                        "participant name", value)
    for method in (p.prepare, p.commit, p.abort, p.is_prepared, p.decided):
        assert_rejected(lambda m=method: m(value), "txid", value)  # type: ignore[misc]
    assert_rejected(lambda: p.stage(value, "k", 1), "txid", value)
    assert_rejected(lambda: p.stage("t", value, 1), "key", value)
    assert_rejected(lambda: p.wait_decided(value, 1.0), "txid", value)
    assert_rejected(lambda: LockingParticipant(value), "name", value)
    assert decision_log.pending() == []
    assert p.locked_keys() == {}


@SWEEP
@given(value=st.sampled_from(["ab", b"ab", 3, None, ("a", "a"), ("a\nb",), [1]]))
def test_decision_log_participants(decision_log: DecisionLog, value: Any) -> None:
    assert_rejected(lambda: decision_log.begin("t", value), "participant")
    assert decision_log.pending() == []


@SWEEP
@given(value=NOT_A_NUMBER)
def test_decisions_votes_and_clocks(decision_log: DecisionLog, value: Any, tmp_path: Path
                                    ) -> None:
    if not decision_log.pending():
        decision_log.begin("t", ("p",))
    assert_rejected(lambda: decision_log.decide("t", value), "decision", value)
    assert decision_log.decision("t") is None
    if not isinstance(value, bool):
        assert_rejected(lambda: LockingParticipant("p", vote=value), "vote", value)
    assert_rejected(lambda: LockingParticipant("p", clock=value), "clock", value)
    p = LockingParticipant("p")
    assert_rejected(lambda: TwoPhaseCoordinator({"p": p}, decision_log, clock=value), "clock",
                    value)
    if value is not None:
        assert_rejected(lambda: TwoPhaseCoordinator({"p": p}, decision_log,
                                                    decision_retry=value),
                        "decision_retry", value)
    assert_rejected(lambda: TwoPhaseCoordinator({"p": p}, value), "log", value)
    assert_rejected(lambda: TwoPhaseCoordinator(value, decision_log), "participant")
    assert_rejected(lambda: TwoPhaseCoordinator({"x": value}, decision_log), "participant 'x'")
    assert_rejected(lambda: InMemoryDecisionLog(clock=value), "clock", value)
    assert_rejected(lambda: SQLiteDecisionLog(tmp_path / "d.db", clock=value), "clock", value)
    assert_rejected(lambda: SQLiteDecisionLog(tmp_path / "d.db", clock=MONOTONIC), "clock")
    assert_rejected(lambda: SQLiteDecisionLog(3), "database", 3)  # type: ignore[arg-type]


@SWEEP
@given(value=st.sampled_from([float("nan"), -1.0, -float("inf"), 0, "1", True, [1], None]))
def test_wait_decided_timeout(value: Any) -> None:
    p = LockingParticipant("p")
    assert_rejected(lambda: p.wait_decided("t", value), "timeout", value)
