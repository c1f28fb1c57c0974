"""Tests for patterns.consistency.cqrs: buses, one contract suite for both bank read
models, projector checkpoints (replay, restart, crash), read-your-writes drivers."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import textwrap
import threading
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
    SQLiteBankReadModel,
    UnknownMessageTypeError,
    await_position,
    simpy_await_position,
)
from patterns.consistency.eventsourcing import (
    AggregateNotFoundError,
    BankAccount,
    ConcurrencyConflictError,
    EventSourcedRepository,
    EventStore,
    InMemoryEventStore,
    InsufficientFundsError,
    SQLiteEventStore,
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
    def __init__(self, database: SQLiteDatabase, fail_at: int) -> None:
        super().__init__(database)
        self.fail_at = fail_at

    def apply(self, record: Any, event: Any) -> bool:
        if record.position == self.fail_at:
            self.fail_at = -1
            with self.database.transaction() as db:
                db.execute("UPDATE cqrs_accounts SET balance = balance + 1000")
                raise RuntimeError("crash mid-update")
        return super().apply(record, event)


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


def test_read_your_writes_never_returns_a_stale_read(store: EventStore,
                                                     model: BankReadModel) -> None:
    bus = make_bus(store)
    bus.dispatch(OpenAccount("a", "ann"))
    projector = Projector(store, model, bank_codec(), batch_size=1)
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
