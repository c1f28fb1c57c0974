"""Tests for patterns.consistency.cqrs: buses, one contract suite for both bank read
models, projector checkpoints (replay, restart, crash), read-your-writes drivers."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from patterns.consistency.cqrs import (
    BankReadModel,
    CommandBus,
    CommandResult,
    EventProjected,
    InMemoryBankReadModel,
    OwnerSummary,
    ProjectionTimeoutError,
    Projector,
    QueryBus,
    ReadModel,
    SQLiteBankReadModel,
    SQLiteReadModel,
    UnknownMessageTypeError,
    await_position,
    simpy_await_position,
)
from patterns.consistency.eventsourcing import (
    AggregateNotFoundError,
    BankAccount,
    ConcurrencyConflictError,
    EventMetadata,
    EventSourcedRepository,
    EventStore,
    InMemoryEventStore,
    InsufficientFundsError,
    NewEvent,
    RecordedEvent,
    SQLiteEventStore,
    UnknownEventTypeError,
    bank_codec,
)
from patterns.storage.sqlite import SQLiteDatabase

# --------------------------------------------------------------------------- the domain


@dataclass(frozen=True)
class OpenAccount:
    account_id: str
    owner: str


@dataclass(frozen=True)
class Deposit:
    account_id: str
    amount: int


@dataclass(frozen=True)
class Withdraw:
    account_id: str
    amount: int


@dataclass(frozen=True)
class Close:
    account_id: str


@dataclass(frozen=True)
class GetBalance:
    account_id: str


@dataclass(frozen=True)
class GetOwner:
    owner: str


Repo = EventSourcedRepository[BankAccount]


def make_bus(store: EventStore, *, conflict_retries: int = 50) -> CommandBus[BankAccount]:
    bus: CommandBus[BankAccount] = CommandBus(
        EventSourcedRepository(store, BankAccount, bank_codec()),
        conflict_retries=conflict_retries)

    def open_account(c: OpenAccount, repo: Repo) -> BankAccount:
        return BankAccount.open(c.account_id, c.owner)

    def deposit(c: Deposit, repo: Repo) -> BankAccount:
        account = repo.load(c.account_id)
        account.deposit(c.amount)
        return account

    def withdraw(c: Withdraw, repo: Repo) -> BankAccount:
        account = repo.load(c.account_id)
        account.withdraw(c.amount)
        return account

    def close(c: Close, repo: Repo) -> BankAccount:
        account = repo.load(c.account_id)
        account.close()
        return account

    bus.register(OpenAccount, open_account)
    bus.register(Deposit, deposit)
    bus.register(Withdraw, withdraw)
    bus.register(Close, close)
    return bus


def make_queries(model: BankReadModel) -> QueryBus:
    queries = QueryBus()
    queries.register(GetBalance, lambda q: model.account(q.account_id))
    queries.register(GetOwner, lambda q: model.owner_summary(q.owner))
    return queries


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    if request.param == "memory":
        yield InMemoryEventStore()
    else:
        database = SQLiteDatabase(tmp_path / "events.db")
        yield SQLiteEventStore(database, poll_interval=0.005)
        database.close()


@pytest.fixture(params=["memory", "sqlite"])
def model(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BankReadModel]:
    if request.param == "memory":
        yield InMemoryBankReadModel()
    else:
        database = SQLiteDatabase(tmp_path / "read.db")
        yield SQLiteBankReadModel(database)
        database.close()


# --------------------------------------------------------------------------- buses


def test_command_returns_the_new_version_and_position(store: EventStore) -> None:
    bus = make_bus(store)
    assert bus.dispatch(OpenAccount("a", "ann")) == CommandResult("a", 1, 1, 1)
    assert bus.dispatch(OpenAccount("b", "bob")) == CommandResult("b", 1, 2, 1)
    assert bus.dispatch(Deposit("a", 500)) == CommandResult("a", 2, 3, 1)
    assert store.stream_version("a") == 2


def test_unknown_command_and_query_types_are_named(store: EventStore) -> None:
    bus = make_bus(store)
    with pytest.raises(UnknownMessageTypeError, match="'GetBalance'"):
        bus.dispatch(GetBalance("a"))
    with pytest.raises(UnknownMessageTypeError, match="'Deposit'"):
        QueryBus().dispatch(Deposit("a", 1))


def test_domain_errors_pass_through_and_write_nothing(store: EventStore) -> None:
    bus = make_bus(store)
    bus.dispatch(OpenAccount("a", "ann"))
    with pytest.raises(InsufficientFundsError):
        bus.dispatch(Withdraw("a", 1))
    with pytest.raises(AggregateNotFoundError):
        bus.dispatch(Deposit("nobody", 1))
    assert store.head_position() == 1


def test_registering_twice_and_bad_registrations_are_rejected(store: EventStore) -> None:
    bus = make_bus(store)
    with pytest.raises(ValueError, match="command_type 'Deposit'"):
        bus.register(Deposit, lambda c, r: BankAccount("x"))
    with pytest.raises(TypeError, match="command_type must be a class, got 'Deposit'"):
        bus.register("Deposit", lambda c, r: BankAccount("x"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="handler must be callable, got 3"):
        bus.register(GetOwner, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="conflict_retries must be"):
        CommandBus(EventSourcedRepository(store, BankAccount, bank_codec()),
                   conflict_retries=-1)
    queries = QueryBus()
    queries.register(GetOwner, lambda q: None)
    with pytest.raises(ValueError, match="query_type 'GetOwner'"):
        queries.register(GetOwner, lambda q: None)
    with pytest.raises(TypeError, match="query_type must be a class, got 5"):
        queries.register(5, lambda q: None)  # type: ignore[arg-type]


def test_handler_must_return_an_aggregate(store: EventStore) -> None:
    bus: CommandBus[BankAccount] = CommandBus(
        EventSourcedRepository(store, BankAccount, bank_codec()))
    bus.register(Close, lambda c, r: "oops")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="must return an Aggregate, got 'oops'"):
        bus.dispatch(Close("a"))


@dataclass(frozen=True)
class RacyDeposit:
    account_id: str
    amount: int


@pytest.mark.parametrize("retries", [0, 1])
def test_a_conflict_reruns_the_handler_up_to_the_limit(store: EventStore, retries: int) -> None:
    bus = make_bus(store, conflict_retries=retries)
    bus.dispatch(OpenAccount("a", "ann"))
    repo = EventSourcedRepository(store, BankAccount, bank_codec())
    races = [1]

    def racing(c: RacyDeposit, r: Repo) -> BankAccount:
        account = r.load(c.account_id)
        if races:
            races.pop()
            other = repo.load(c.account_id)
            other.deposit(1)
            repo.save(other)  # someone else wins the race, once
        account.deposit(c.amount)
        return account

    bus.register(RacyDeposit, racing)
    if retries == 0:
        with pytest.raises(ConcurrencyConflictError):
            bus.dispatch(RacyDeposit("a", 5))
        assert repo.load("a").balance == 1
    else:
        assert bus.dispatch(RacyDeposit("a", 5)) == CommandResult("a", 3, 3, 1)
        assert repo.load("a").balance == 6


def test_concurrent_commands_lose_nothing(store: EventStore, model: BankReadModel) -> None:
    bus = make_bus(store)
    bus.dispatch(OpenAccount("a", "ann"))
    results: list[CommandResult] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            result = bus.dispatch(Deposit("a", 3))
            with lock:
                results.append(result)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.version for r in results) == list(range(2, 82))
    assert len({r.position for r in results}) == 80
    projector = Projector(store, model, bank_codec())
    projector.catch_up()
    view = model.account("a")
    assert view is not None
    assert view.balance == 240
    assert view.version == 81


# --------------------------------------------------------------------------- read models


def test_read_model_contract(store: EventStore, model: BankReadModel) -> None:
    bus = make_bus(store)
    for command in (OpenAccount("a", "ann"), OpenAccount("b", "ann"), OpenAccount("c", "cy"),
                    Deposit("a", 100), Deposit("b", 50), Withdraw("a", 30), Close("b")):
        bus.dispatch(command)
    projector = Projector(store, model, bank_codec(), batch_size=2)
    assert model.checkpoint() == 0
    assert model.account("a") is None
    assert projector.catch_up() == 7
    queries = make_queries(model)
    view = queries.dispatch(GetBalance("a"))
    assert (view.owner, view.balance, view.closed, view.version) == ("ann", 70, False, 3)
    closed = model.account("b")
    assert closed is not None
    assert closed.closed
    assert queries.dispatch(GetOwner("ann")) == OwnerSummary("ann", 1, 70)
    assert queries.dispatch(GetOwner("zed")) == OwnerSummary("zed", 0, 0)
    assert model.checkpoint() == 7


def test_replay_of_covered_events_changes_nothing(store: EventStore,
                                                  model: BankReadModel) -> None:
    bus = make_bus(store)
    bus.dispatch(OpenAccount("a", "ann"))
    bus.dispatch(Deposit("a", 10))
    Projector(store, model, bank_codec()).catch_up()
    codec = bank_codec()
    for record in store.read_all():
        assert model.apply(record, codec.decode(record.event_type, record.data)) is False
    view = model.account("a")
    assert view is not None
    assert view.balance == 10
    with pytest.raises(TypeError, match="record must be a RecordedEvent, got 'x'"):
        model.apply("x", None)  # type: ignore[arg-type]


@settings(max_examples=30, deadline=None)
@given(amounts=st.lists(st.integers(-50, 50).filter(bool), max_size=30),
       chunks=st.lists(st.integers(1, 5), min_size=1, max_size=10),
       replays=st.lists(st.integers(0, 40), max_size=10))
def test_projection_equals_the_write_model_under_any_batching_and_replay(
        amounts: list[int], chunks: list[int], replays: list[int]) -> None:
    store = InMemoryEventStore()
    bus = make_bus(store)
    bus.dispatch(OpenAccount("a", "ann"))
    for amount in amounts:
        with contextlib.suppress(InsufficientFundsError):
            bus.dispatch(Deposit("a", amount) if amount > 0 else Withdraw("a", -amount))
    model = InMemoryBankReadModel()
    codec = bank_codec()
    records = store.read_all()
    for step, size in enumerate(chunks * 20):
        Projector(store, model, codec, batch_size=size).poll()
        for position in replays[step % max(1, len(replays)):][:1]:
            if 0 < position <= model.checkpoint():  # replay an event already covered
                r = records[position - 1]
                model.apply(r, codec.decode(r.event_type, r.data))
        if model.checkpoint() == store.head_position():
            break
    Projector(store, model, codec).catch_up()
    truth = EventSourcedRepository(store, BankAccount, codec).load("a")
    view = model.account("a")
    assert view is not None
    assert view.balance == truth.balance
    assert view.version == truth.version


# --------------------------------------------------------------------------- checkpoints


def test_restart_resumes_from_the_stored_checkpoint_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "cqrs.db"
    database = SQLiteDatabase(path)
    store = SQLiteEventStore(database)
    bus = make_bus(store)
    bus.dispatch(OpenAccount("a", "ann"))
    for _ in range(9):
        bus.dispatch(Deposit("a", 1))
    applied: list[int] = []
    first = Projector(store, SQLiteBankReadModel(database), bank_codec(), batch_size=4)
    first.listeners.add(lambda e: applied.append(e.position) if e.applied else None)
    first.poll()
    database.close()  # the process "dies" after one batch

    database = SQLiteDatabase(path)
    store = SQLiteEventStore(database)
    model = SQLiteBankReadModel(database)
    assert model.checkpoint() == 4
    second = Projector(store, model, bank_codec(), batch_size=4)
    second.listeners.add(lambda e: applied.append(e.position) if e.applied else None)
    second.catch_up()
    assert applied == list(range(1, 11))
    view = model.account("a")
    assert view is not None
    assert view.balance == 9
    database.close()


class FailingOnce(SQLiteBankReadModel):
    """Fails once at ``fail_at``, after writing a bogus update in the batch's transaction."""

    def __init__(self, database: SQLiteDatabase, fail_at: int) -> None:
        super().__init__(database)
        self.fail_at = fail_at

    def project(self, connection: sqlite3.Connection, record: RecordedEvent,
                event: Any) -> None:
        if record.position == self.fail_at:
            self.fail_at = -1
            connection.execute("UPDATE cqrs_accounts SET balance = balance + 1000")
            raise RuntimeError("crash mid-update")
        super().project(connection, record, event)


def test_a_crash_mid_update_rolls_back_update_and_checkpoint(tmp_path: Path) -> None:
    database = SQLiteDatabase(tmp_path / "x.db")
    store = SQLiteEventStore(database)
    bus = make_bus(store)
    bus.dispatch(OpenAccount("a", "ann"))
    bus.dispatch(Deposit("a", 5))
    bus.dispatch(Deposit("a", 7))
    model = FailingOnce(database, fail_at=3)
    projector = Projector(store, model, bank_codec())
    with pytest.raises(RuntimeError, match="crash"):
        projector.poll()
    assert model.checkpoint() == 2
    view = model.account("a")
    assert view is not None
    assert view.balance == 5
    projector.catch_up()
    view = model.account("a")
    assert view is not None
    assert view.balance == 12
    assert model.checkpoint() == 3
    database.close()


# --------------------------------------------------------------------------- batches


def _deposits(store: EventStore, count: int, *, per_append: int = 100) -> None:
    """Open account "a" and deposit 1 ``count`` times (positions 1 .. count + 1)."""
    repo = EventSourcedRepository(store, BankAccount, bank_codec())
    account = BankAccount.open("a", "ann")
    for _ in range(count):
        account.deposit(1)
        if len(account.pending) == per_append:
            repo.save(account)
    repo.save(account)
    assert store.head_position() == count + 1


def test_a_batch_of_events_commits_once_with_its_checkpoint(tmp_path: Path) -> None:
    database = SQLiteDatabase(tmp_path / "x.db")
    store = SQLiteEventStore(database)
    _deposits(store, 99)
    model = SQLiteBankReadModel(database)
    statements: list[str] = []
    database.connection().set_trace_callback(statements.append)
    projector = Projector(store, model, bank_codec(), batch_size=40)
    assert projector.catch_up() == 100
    database.connection().set_trace_callback(None)
    # 100 events in batches of 40: three transactions, not one hundred
    assert statements.count("COMMIT") == 3
    assert sum("cqrs_checkpoints (name, position)" in s for s in statements) == 3
    view = model.account("a")
    assert view is not None
    assert (view.balance, view.version, model.checkpoint()) == (99, 100, 100)
    database.close()


class Ledger(SQLiteReadModel):
    """Records every position it projects under a primary key: an event applied twice
    raises, one skipped leaves a hole. Fails once at each position of ``fail_at``, after
    writing its row (the failed transaction must take the row back)."""

    def __init__(self, database: SQLiteDatabase, fail_at: set[int] | None = None) -> None:
        super().__init__(database, name="ledger")
        database.executescript("CREATE TABLE IF NOT EXISTS ledger "
                               "(position INTEGER PRIMARY KEY)")
        self.fail_at = set(fail_at or ())

    def project(self, connection: sqlite3.Connection, record: RecordedEvent,
                event: Any) -> None:
        connection.execute("INSERT INTO ledger (position) VALUES (?)", (record.position,))
        if record.position in self.fail_at:
            self.fail_at.discard(record.position)
            raise RuntimeError(f"handler failed at {record.position}")

    def positions(self) -> list[int]:
        return [row[0] for row in self.database.connection().execute(
            "SELECT position FROM ledger ORDER BY position")]


@settings(max_examples=25, deadline=None)
@given(events=st.integers(1, 60), batch_size=st.integers(1, 25),
       fail_at=st.sets(st.integers(1, 60), max_size=6))
def test_a_handler_failing_mid_batch_loses_nothing_and_applies_nothing_twice(
        events: int, batch_size: int, fail_at: set[int]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        database = SQLiteDatabase(Path(folder) / "x.db")
        store = SQLiteEventStore(database)
        _deposits(store, events - 1, per_append=7)
        model = Ledger(database, fail_at)
        projector = Projector(store, model, bank_codec(), batch_size=batch_size)
        heard: list[int] = []
        projector.listeners.add(lambda e: heard.append(e.position) if e.applied else None)
        failures = 0
        for _ in range(10 * events):  # never loops for ever, even if the projection stalls
            if model.checkpoint() == events:
                break
            before = model.checkpoint()
            try:
                projector.poll()
            except RuntimeError as error:
                failures += 1
                failed = int(str(error).rsplit(" ", 1)[1])
                # the events before the failing one are committed, the checkpoint with them
                assert model.checkpoint() == failed - 1 >= before
            # the read model and its checkpoint always move together
            assert model.positions() == list(range(1, model.checkpoint() + 1))
        assert failures == len({p for p in fail_at if p <= events})
        assert model.positions() == list(range(1, events + 1))
        assert heard == list(range(1, events + 1))
        database.close()


def test_a_poison_event_stops_the_projection_just_before_it(tmp_path: Path) -> None:
    database = SQLiteDatabase(tmp_path / "x.db")
    store = SQLiteEventStore(database)
    bus = make_bus(store)
    bus.dispatch(OpenAccount("a", "ann"))
    bus.dispatch(Deposit("a", 5))
    bus.dispatch(Deposit("a", 2**70))  # valid for the aggregate, too big for SQLite
    bus.dispatch(Deposit("a", 7))
    model = SQLiteBankReadModel(database)
    projector = Projector(store, model, bank_codec())
    heard: list[tuple[int, bool]] = []
    projector.listeners.add(lambda e: heard.append((e.position, e.applied)))
    for _ in range(2):  # the next poll retries the poison event, and fails again
        with pytest.raises(OverflowError):
            projector.poll()
        assert model.checkpoint() == 2
        view = model.account("a")
        assert view is not None
        assert (view.balance, view.version) == (5, 2)
    assert heard == [(1, True), (2, True)]
    database.close()


def test_an_event_that_cannot_be_decoded_mid_batch(store: EventStore,
                                                   model: BankReadModel) -> None:
    bus = make_bus(store)
    bus.dispatch(OpenAccount("a", "ann"))
    bus.dispatch(Deposit("a", 5))
    store.append("z", [NewEvent("Renamed", {}, EventMetadata("x", 0.0))], None)
    bus.dispatch(Deposit("a", 7))
    projector = Projector(store, model, bank_codec())
    with pytest.raises(UnknownEventTypeError, match="Renamed"):
        projector.poll()
    assert model.checkpoint() == 2
    view = model.account("a")
    assert view is not None
    assert view.balance == 5


class FlakyInMemory(InMemoryBankReadModel):
    """A read model of its own (the default apply_batch): fails once at ``fail_at``."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at = fail_at

    def apply(self, record: RecordedEvent, event: Any) -> bool:
        if record.position == self.fail_at:
            self.fail_at = -1
            raise RuntimeError("boom")
        return super().apply(record, event)

    apply_batch = ReadModel.apply_batch


def test_the_default_apply_batch_applies_one_at_a_time() -> None:
    store = InMemoryEventStore()
    _deposits(store, 5)
    model = FlakyInMemory(fail_at=4)
    projector = Projector(store, model, bank_codec())
    with pytest.raises(RuntimeError, match="boom"):
        projector.poll()
    assert model.checkpoint() == 3
    assert projector.catch_up() == 3
    view = model.account("a")
    assert view is not None
    assert view.balance == 5


_KILLED_PROJECTOR = textwrap.dedent("""
    import sys, time
    from patterns.consistency.cqrs import Projector, SQLiteBankReadModel
    from patterns.consistency.eventsourcing import SQLiteEventStore, bank_codec
    from patterns.storage.sqlite import SQLiteDatabase

    class Slow(SQLiteBankReadModel):
        def project(self, connection, record, event):
            super().project(connection, record, event)
            time.sleep(0.0002)  # so that the kill lands inside a batch's transaction

    database = SQLiteDatabase(sys.argv[1])
    projector = Projector(SQLiteEventStore(database), Slow(database), bank_codec(),
                          batch_size=50)
    projector.catch_up()
""")


def test_sigkill_mid_batch_leaves_read_model_and_checkpoint_consistent(
        tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    database = SQLiteDatabase(path)
    store = SQLiteEventStore(database)
    _deposits(store, 3999, per_append=500)
    model = SQLiteBankReadModel(database)
    child = subprocess.Popen([sys.executable, "-c", _KILLED_PROJECTOR, str(path)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while model.checkpoint() < 500 and child.poll() is None:
            assert time.monotonic() < deadline, "the projector made no progress"
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    reached = model.checkpoint()
    assert 0 < reached < 4000
    view = model.account("a")
    assert view is not None
    # every event up to the checkpoint is in the read model, none after it
    assert (view.balance, view.version) == (reached - 1, reached)
    Projector(store, model, bank_codec()).catch_up()
    view = model.account("a")
    assert view is not None
    assert (view.balance, view.version, model.checkpoint()) == (3999, 4000, 4000)
    database.close()


def test_concurrent_projectors_on_one_read_model_apply_each_event_once(
        store: EventStore, model: BankReadModel) -> None:
    bus = make_bus(store)
    bus.dispatch(OpenAccount("a", "ann"))
    for _ in range(40):
        bus.dispatch(Deposit("a", 1))
    applied: list[int] = []
    lock = threading.Lock()

    def record(e: EventProjected) -> None:
        if e.applied:
            with lock:
                applied.append(e.position)

    projectors = [Projector(store, model, bank_codec(), batch_size=3) for _ in range(6)]
    for p in projectors:
        p.listeners.add(record)
    barrier = threading.Barrier(len(projectors))

    def go(p: Projector) -> None:
        barrier.wait()
        p.catch_up()

    threads = [threading.Thread(target=go, args=(p,)) for p in projectors]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(applied) == list(range(1, 42))
    view = model.account("a")
    assert view is not None
    assert view.balance == 40


# --------------------------------------------------------------------------- read-your-writes


@pytest.mark.parametrize("batch_size", [1, 500])
def test_read_your_writes_never_returns_a_stale_read(store: EventStore, model: BankReadModel,
                                                     batch_size: int) -> None:
    bus = make_bus(store)
    bus.dispatch(OpenAccount("a", "ann"))
    projector = Projector(store, model, bank_codec(), batch_size=batch_size)
    stop = threading.Event()
    runner = threading.Thread(target=projector.run, args=(stop,), kwargs={"wait": 0.01})
    runner.start()
    try:
        for n in range(1, 31):
            result = bus.dispatch(Deposit("a", 1))
            assert projector.wait_for_position(result.position, timeout=5.0,
                                               poll_interval=0.01) >= result.position
            view = model.account("a")
            assert view is not None
            assert view.balance >= n
            assert view.version >= result.version
    finally:
        stop.set()
        runner.join()


def test_without_a_projector_the_wait_times_out_with_a_clear_error(store: EventStore) -> None:
    bus = make_bus(store)
    result = bus.dispatch(OpenAccount("a", "ann"))
    projector = Projector(store, InMemoryBankReadModel(), bank_codec())
    assert not projector.reached(result.position)
    with pytest.raises(ProjectionTimeoutError,
                       match=r"position 1 within timeout=0.05 s \(reached 0\)"):
        projector.wait_for_position(result.position, timeout=0.05, poll_interval=0.01)


def test_asyncio_driver_waits_then_times_out() -> None:
    store = InMemoryEventStore()
    bus = make_bus(store)
    projector = Projector(store, InMemoryBankReadModel(), bank_codec())

    async def scenario() -> int:
        result = bus.dispatch(OpenAccount("a", "ann"))

        async def project_later() -> None:
            await asyncio.sleep(0.03)
            projector.poll()

        task = asyncio.create_task(project_later())
        reached = await await_position(projector, result.position, 1.0, poll_interval=0.005)
        await task
        second = bus.dispatch(Deposit("a", 1))
        with pytest.raises(ProjectionTimeoutError):
            await await_position(projector, second.position, 0.02, poll_interval=0.005)
        return reached

    assert asyncio.run(scenario()) == 1


def test_simpy_driver_waits_in_simulated_time() -> None:
    store = InMemoryEventStore()
    bus = make_bus(store)
    projector = Projector(store, InMemoryBankReadModel(), bank_codec())
    env = simpy.Environment()
    seen: list[tuple[float, int]] = []

    def projector_process() -> Any:
        yield env.timeout(0.25)
        projector.poll()

    def client() -> Any:
        result = bus.dispatch(OpenAccount("a", "ann"))
        reached = yield from simpy_await_position(env, projector, result.position, 1.0,
                                                  poll_interval=0.1)
        seen.append((env.now, reached))
        later = bus.dispatch(Deposit("a", 1))
        try:
            yield from simpy_await_position(env, projector, later.position, 0.5,
                                            poll_interval=0.1)
        except ProjectionTimeoutError as error:
            seen.append((env.now, error.reached))

    env.process(projector_process())
    env.process(client())
    env.run()
    assert seen[0] == (pytest.approx(0.3), 1)
    assert seen[1] == (pytest.approx(0.8), 1)


# --------------------------------------------------------------------------- bad input


def test_bad_input_names_parameter_and_value(store: EventStore, tmp_path: Path) -> None:
    model = InMemoryBankReadModel()
    projector = Projector(store, model, bank_codec())
    with pytest.raises(ValueError, match=r"position.*-1"):
        projector.wait_for_position(-1, 1.0)
    with pytest.raises(ValueError, match=r"timeout.*-2"):
        projector.wait_for_position(0, -2.0)
    with pytest.raises(ValueError, match=r"poll_interval.*0"):
        projector.wait_for_position(0, 1.0, poll_interval=0)
    with pytest.raises(ValueError, match=r"position.*-3"):
        projector.reached(-3)
    with pytest.raises(ValueError, match=r"batch_size.*0"):
        Projector(store, model, bank_codec(), batch_size=0)
    with pytest.raises(TypeError, match="store must be an EventStore, got 'db'"):
        Projector("db", model, bank_codec())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="read_model must be a ReadModel, got None"):
        Projector(store, None, bank_codec())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="repository must be an EventSourcedRepository"):
        CommandBus(store)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name must be a non-empty string, got ''"):
        SQLiteBankReadModel(SQLiteDatabase(tmp_path / "unused.db"), name="")
    with pytest.raises(TypeError, match=r"database must be a SQLiteDatabase, got 'f.db'"):
        SQLiteBankReadModel("f.db")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"timeout.*nan"):
        asyncio.run(await_position(projector, 0, float("nan")))
    with pytest.raises(TypeError, match="projector must be a Projector, got 1"):
        next(simpy_await_position(simpy.Environment(), 1, 0, 1.0))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- processes

ROOT = Path(__file__).resolve().parents[2]

_PROJECTOR = textwrap.dedent("""
    import sys
    from patterns.consistency.cqrs import Projector, SQLiteBankReadModel
    from patterns.consistency.eventsourcing import SQLiteEventStore, bank_codec
    from patterns.storage.sqlite import SQLiteDatabase
    database = SQLiteDatabase(sys.argv[1])
    projector = Projector(SQLiteEventStore(database, poll_interval=0.01),
                          SQLiteBankReadModel(database), bank_codec(), batch_size=1)
    while projector.position < int(sys.argv[2]):  # project until the last deposit
        if projector.poll() == 0:
            projector.store.wait_for_events(projector.position, 0.05)
    database.close()
""")


def test_read_your_writes_with_a_projector_in_another_process(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    database = SQLiteDatabase(path)
    store = SQLiteEventStore(database)
    model = SQLiteBankReadModel(database)
    bus = make_bus(store)
    bus.dispatch(OpenAccount("a", "ann"))
    child = subprocess.Popen([sys.executable, "-c", _PROJECTOR, str(path), "11"], cwd=ROOT)
    try:
        # this process's projector object never polls: only the stored checkpoint moves
        waiter = Projector(store, model, bank_codec())
        for n in range(1, 11):
            result = bus.dispatch(Deposit("a", 1))
            waiter.wait_for_position(result.position, timeout=10.0, poll_interval=0.01)
            view = model.account("a")
            assert view is not None
            assert view.balance == n
    finally:
        child.wait(timeout=30)
    assert child.returncode == 0
    assert model.checkpoint() == 11
    database.close()
