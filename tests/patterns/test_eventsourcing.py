"""Tests for patterns.consistency.eventsourcing: one contract suite for both stores,
concurrency (threads and processes), the repository with snapshots, the outbox."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patterns.clock import ManualClock
from patterns.consistency.eventsourcing import (
    AccountOpened,
    AggregateLoaded,
    AggregateNotFoundError,
    BankAccount,
    CatchUpSubscription,
    ConcurrencyConflictError,
    EventCodec,
    EventHandlerRegistry,
    EventMetadata,
    EventSourcedRepository,
    EventStore,
    IdempotentConsumer,
    InMemoryEventStore,
    InMemorySnapshotStore,
    InsufficientFundsError,
    MoneyDeposited,
    NewEvent,
    OutboxRelay,
    RecordedEvent,
    SQLiteEventStore,
    SQLiteSnapshotStore,
    UnknownEventTypeError,
    bank_codec,
)
from patterns.storage.sqlite import SQLiteDatabase

ROOT = Path(__file__).resolve().parents[2]


def new(n: int = 0, kind: str = "Thing") -> NewEvent:
    return NewEvent(kind, {"n": n}, EventMetadata(f"id-{n}-{kind}", 0.0))


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    if request.param == "memory":
        yield InMemoryEventStore()
    else:
        database = SQLiteDatabase(tmp_path / "events.db")
        yield SQLiteEventStore(database, poll_interval=0.01)
        database.close()


# --------------------------------------------------------------- contract suite


def test_append_returns_new_version_and_reads_back(store: EventStore) -> None:
    assert store.append("a", [new(1), new(2)], 0) == 2
    assert store.append("a", [new(3)], 2) == 3
    records = store.read_stream("a")
    assert [r.version for r in records] == [1, 2, 3]
    assert [r.data["n"] for r in records] == [1, 2, 3]
    assert records[0].metadata == EventMetadata("id-1-Thing", 0.0)
    assert store.stream_version("a") == 3


def test_unknown_stream_reads_empty_and_has_version_zero(store: EventStore) -> None:
    assert store.read_stream("nobody") == []
    assert store.stream_version("nobody") == 0


def test_wrong_expected_version_names_stream_expected_and_actual(store: EventStore) -> None:
    store.append("acct-1", [new(1)], 0)
    with pytest.raises(ConcurrencyConflictError,
                       match=r"'acct-1'.*expected version 0, actual version 1") as info:
        store.append("acct-1", [new(2)], 0)
    assert (info.value.stream, info.value.expected, info.value.actual) == ("acct-1", 0, 1)
    with pytest.raises(ConcurrencyConflictError, match="expected version 5"):
        store.append("acct-1", [new(2)], 5)
    assert store.stream_version("acct-1") == 1  # nothing written by a failed append


def test_expected_version_none_skips_the_check(store: EventStore) -> None:
    store.append("a", [new(1)], None)
    assert store.append("a", [new(2)], None) == 2


def test_read_stream_from_version_and_limit(store: EventStore) -> None:
    store.append("a", [new(i) for i in range(1, 6)], 0)
    assert [r.version for r in store.read_stream("a", 3)] == [3, 4, 5]
    assert [r.version for r in store.read_stream("a", 2, limit=2)] == [2, 3]
    assert store.read_stream("a", 9) == []


def test_read_all_is_global_order_with_positions(store: EventStore) -> None:
    store.append("a", [new(1)], 0)
    store.append("b", [new(2), new(3)], 0)
    store.append("a", [new(4)], 1)
    records = store.read_all()
    assert [r.position for r in records] == [1, 2, 3, 4]
    assert [(r.stream, r.version) for r in records] == [("a", 1), ("b", 1), ("b", 2), ("a", 2)]
    assert [r.position for r in store.read_all(2)] == [3, 4]
    assert [r.position for r in store.read_all(1, limit=2)] == [2, 3]
    assert store.head_position() == 4


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"stream": ""}, ValueError, "stream must be a non-empty string, got ''"),
    ({"stream": 7}, TypeError, "stream must be a str, got 7"),
    ({"events": []}, ValueError, "events must not be empty"),
    ({"expected_version": -1}, ValueError, "expected_version must be >= 0, got -1"),
    ({"expected_version": 1.0}, TypeError, "expected_version must be an int"),
    ({"events": ["x"]}, TypeError, "events must be NewEvent instances"),
])
def test_bad_append_input_names_the_parameter(store: EventStore, kwargs: dict[str, object],
                                              error: type[Exception], match: str) -> None:
    call: dict[str, object] = {"stream": "a", "events": [new()], "expected_version": 0}
    call.update(kwargs)
    with pytest.raises(error, match=match):
        store.append(**call)  # type: ignore[arg-type]
    assert store.head_position() == 0


def test_bad_read_input_names_the_parameter(store: EventStore) -> None:
    with pytest.raises(ValueError, match="from_version must be >= 1, got 0"):
        store.read_stream("a", 0)
    with pytest.raises(ValueError, match="limit must be >= 1, got 0"):
        store.read_stream("a", 1, limit=0)
    with pytest.raises(ValueError, match="after_position must be >= 0, got -1"):
        store.read_all(-1)
    with pytest.raises(ValueError, match="stream must be a non-empty string"):
        store.read_stream("")


def test_data_must_be_json(store: EventStore) -> None:
    with pytest.raises((TypeError, ValueError)):
        store.append("a", [NewEvent("T", {"x": object()}, EventMetadata("i", 0.0))], 0)
    assert store.stream_version("a") == 0


def test_outbox_holds_every_appended_event_until_marked(store: EventStore) -> None:
    store.append("a", [new(1), new(2)], 0)
    store.append("b", [new(3)], 0)
    assert [r.position for r in store.pending_outbox()] == [1, 2, 3]
    assert [r.position for r in store.pending_outbox(limit=2)] == [1, 2]
    store.mark_published([1, 3])
    store.mark_published([1])  # idempotent
    assert [r.position for r in store.pending_outbox()] == [2]


def test_failed_append_leaves_no_outbox_row(store: EventStore) -> None:
    store.append("a", [new(1)], 0)
    with pytest.raises(ConcurrencyConflictError):
        store.append("a", [new(2)], 0)
    assert [r.position for r in store.pending_outbox()] == [1]


def test_wait_for_events(store: EventStore) -> None:
    assert store.wait_for_events(0, 0.01) is False
    timer = threading.Timer(0.05, lambda: store.append("a", [new(1)], 0))
    timer.start()
    assert store.wait_for_events(0, 5.0) is True
    timer.join()
    assert store.wait_for_events(0, 0.0) is True


def test_many_threads_one_stream_exactly_one_winner_per_version(store: EventStore) -> None:
    writers, attempts = 8, 15
    acknowledged: list[tuple[int, str]] = []
    conflicts = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(writers)

    def writer(w: int) -> None:
        barrier.wait()
        done = 0
        while done < attempts:
            version = store.stream_version("hot")
            event_id = f"w{w}-{done}"
            try:
                new_version = store.append(
                    "hot", [NewEvent("T", {"w": w}, EventMetadata(event_id, 0.0))], version)
            except ConcurrencyConflictError:
                with lock:
                    conflicts[0] += 1
                continue
            assert new_version == version + 1, "the write landed on a version it never saw"
            with lock:
                acknowledged.append((new_version, event_id))
            done += 1

    errors: list[BaseException] = []

    def guarded(w: int) -> None:
        try:
            writer(w)
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    if isinstance(store, SQLiteEventStore):
        assert conflicts[0] > 0  # the writers really raced (threads in memory may not)
    records = store.read_stream("hot")
    assert [r.version for r in records] == list(range(1, writers * attempts + 1))  # no gaps
    stored = {r.version: r.metadata.event_id for r in records}
    assert len(acknowledged) == writers * attempts
    assert len({v for v, _ in acknowledged}) == len(acknowledged)  # one winner per version
    for version, event_id in acknowledged:  # every acknowledged event is there, as acked
        assert stored[version] == event_id


_WORKER = textwrap.dedent("""
    import sys
    from patterns.consistency.eventsourcing import (
        ConcurrencyConflictError, EventMetadata, NewEvent, SQLiteEventStore)
    from patterns.storage.sqlite import SQLiteDatabase
    path, worker, attempts = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = SQLiteEventStore(SQLiteDatabase(path))
    done = 0
    while done < attempts:
        version = store.stream_version("hot")
        event_id = f"{worker}-{done}"
        try:
            acked = store.append(
                "hot", [NewEvent("T", {}, EventMetadata(event_id, 0.0))], version)
        except ConcurrencyConflictError:
            continue
        assert acked == version + 1, (acked, version)
        print(acked, event_id, flush=True)
        done += 1
""")


def test_several_processes_one_sqlite_stream(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    SQLiteEventStore(SQLiteDatabase(path)).database.close()
    processes, attempts = 4, 25
    children = [subprocess.Popen([sys.executable, "-c", _WORKER, str(path), f"p{i}",
                                  str(attempts)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
                for i in range(processes)]
    acknowledged: dict[int, str] = {}
    for child in children:
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 0
        for line in out.splitlines():
            version, event_id = line.split()
            assert int(version) not in acknowledged, "two processes won one version"
            acknowledged[int(version)] = event_id
    database = SQLiteDatabase(path)
    records = SQLiteEventStore(database).read_stream("hot")
    database.close()
    assert [r.version for r in records] == list(range(1, processes * attempts + 1))
    assert {r.version: r.metadata.event_id for r in records} == acknowledged


def test_sqlite_unique_constraint_backs_the_version_check(tmp_path: Path) -> None:
    database = SQLiteDatabase(tmp_path / "u.db")
    store = SQLiteEventStore(database)
    store.append("a", [new(1)], 0)
    import sqlite3
    with pytest.raises(sqlite3.IntegrityError):
        database.connection().execute(
            "INSERT INTO es_events (stream, version, event_type, data, metadata)"
            " VALUES ('a', 1, 'T', '{}', '{}')")
    database.close()


def test_sqlite_store_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    with SQLiteDatabase(path) as database:
        SQLiteEventStore(database).append("a", [new(1), new(2)], 0)
    with SQLiteDatabase(path) as database:
        store = SQLiteEventStore(database)
        assert [r.data["n"] for r in store.read_stream("a")] == [1, 2]
        assert store.append("a", [new(3)], 2) == 3


def test_sqlite_polling_uses_explicit_interval(tmp_path: Path) -> None:
    clock = ManualClock()
    with SQLiteDatabase(tmp_path / "p.db") as database:
        store = SQLiteEventStore(database, poll_interval=0.25, sleep=clock.sleep, clock=clock)
        assert store.wait_for_events(0, 1.0) is False
        assert clock.slept == [0.25, 0.25, 0.25, 0.25]
    with pytest.raises(ValueError, match="poll_interval must be > 0"):
        SQLiteEventStore(SQLiteDatabase(tmp_path / "q.db"), poll_interval=0)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(1, 3)), max_size=20))
def test_property_streams_are_gapless_and_global_order_is_append_order(
        batches: list[tuple[str, int]]) -> None:
    store = InMemoryEventStore()
    expected_positions = 0
    for stream, size in batches:
        version = store.stream_version(stream)
        assert store.append(stream, [new(i) for i in range(size)], version) == version + size
        expected_positions += size
    records = store.read_all()
    assert [r.position for r in records] == list(range(1, expected_positions + 1))
    for stream in "abc":
        versions = [r.version for r in records if r.stream == stream]
        assert versions == list(range(1, len(versions) + 1))
        assert store.read_stream(stream) == [r for r in records if r.stream == stream]


# --------------------------------------------------------------- codec


def test_codec_round_trip_and_errors() -> None:
    codec = bank_codec()
    name, data = codec.encode(MoneyDeposited(250))
    assert (name, data) == ("MoneyDeposited", {"amount": 250})
    assert codec.decode(name, data) == MoneyDeposited(250)
    with pytest.raises(UnknownEventTypeError, match="event_type 'Nope' is not registered"):
        codec.decode("Nope", {})
    with pytest.raises(UnknownEventTypeError, match="'int' is not registered"):
        codec.encode(5)
    with pytest.raises(TypeError, match="cls must be a dataclass type"):
        codec.register(int)
    with pytest.raises(ValueError, match="'MoneyDeposited' is already registered"):
        codec.register(AccountOpened, "MoneyDeposited")
    assert MoneyDeposited in codec
    assert "AccountOpened" in codec


# --------------------------------------------------------------- aggregate + repository


def repo(store: EventStore, *, every: int | None = None,
         snapshots: InMemorySnapshotStore | SQLiteSnapshotStore | None = None
         ) -> EventSourcedRepository[BankAccount]:
    counter = iter(range(10**9))
    return EventSourcedRepository(store, BankAccount, bank_codec(), snapshots=snapshots,
                                  snapshot_every=every, clock=ManualClock(100.0),
                                  id_factory=lambda: f"e{next(counter)}")


def test_bank_account_round_trip(store: EventStore) -> None:
    repository = repo(store)
    account = BankAccount.open("acct-1", "Ada")
    account.deposit(100)
    account.withdraw(30)
    ids = repository.save(account, correlation_id="req-9")
    assert ids == ["e0", "e1", "e2"]
    assert account.version == 3
    assert account.pending == []
    loaded = repository.load("acct-1")
    assert (loaded.owner, loaded.balance, loaded.version) == ("Ada", 70, 3)
    records = store.read_stream("acct-1")
    assert [r.event_type for r in records] == ["AccountOpened", "MoneyDeposited",
                                               "MoneyWithdrawn"]
    assert records[1].metadata == EventMetadata("e1", 100.0, "req-9", None)


def test_saving_a_batch_never_deep_copies_with_asdict(
        store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # dataclasses.asdict (a recursive deep copy) was 45 % of a batched append
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("dataclasses.asdict on the append path")

    monkeypatch.setattr(dataclasses, "asdict", forbidden)
    account = BankAccount.open("a", "Ada")
    for _ in range(50):
        account.deposit(2)
    repo(store).save(account, correlation_id="req")
    assert repo(store).load("a").balance == 100


# What the store wrote before issue 11 (dataclasses.asdict, json.dumps): the bytes of a
# stored row must not change, so that old and new rows read back alike.
_LEGACY_ROWS = [
    ("AccountOpened", '{"account_id": "a", "owner": "Ada \\u00e9"}',
     '{"event_id": "e0", "timestamp": 100.0, "correlation_id": "req-9", '
     '"causation_id": null}'),
    ("MoneyDeposited", '{"amount": 100}',
     '{"event_id": "e1", "timestamp": 100.0, "correlation_id": "req-9", '
     '"causation_id": null}'),
]


def test_stored_json_is_byte_for_byte_what_it_was(tmp_path: Path) -> None:
    database = SQLiteDatabase(tmp_path / "x.db")
    store = SQLiteEventStore(database)
    account = BankAccount.open("a", "Ada \u00e9")
    account.deposit(100)
    repo(store).save(account, correlation_id="req-9")
    rows = database.connection().execute(
        "SELECT event_type, data, metadata FROM es_events ORDER BY position").fetchall()
    assert rows == _LEGACY_ROWS
    database.close()


def test_rows_written_before_read_back(tmp_path: Path) -> None:
    database = SQLiteDatabase(tmp_path / "x.db")
    store = SQLiteEventStore(database)
    legacy = [*_LEGACY_ROWS, (
        "MoneyDeposited", '{"amount": 1}',  # a NaN timestamp was stored as NaN before
        '{"event_id": "e2", "timestamp": NaN, "correlation_id": null, "causation_id": null}')]
    for version, (event_type, data, metadata) in enumerate(legacy, start=1):
        database.connection().execute(
            "INSERT INTO es_events (stream, version, event_type, data, metadata)"
            " VALUES ('a', ?, ?, ?, ?)", (version, event_type, data, metadata))
    loaded = repo(store).load("a")
    assert (loaded.owner, loaded.balance, loaded.version) == ("Ada \u00e9", 101, 3)
    records = store.read_all()
    assert records[0].metadata == EventMetadata("e0", 100.0, "req-9", None)
    assert math.isnan(records[2].metadata.timestamp)
    database.close()


def test_overdraft_is_a_domain_error_and_raises_no_event() -> None:
    account = BankAccount.open("a", "Ada")
    account.deposit(50)
    with pytest.raises(InsufficientFundsError,
                       match="'a': insufficient funds, requested 80, available 50"):
        account.withdraw(80)
    assert account.balance == 50
    assert len(account.pending) == 2
    with pytest.raises(ValueError, match="amount must be > 0, got 0"):
        account.deposit(0)
    with pytest.raises(TypeError, match="amount must be an int"):
        account.deposit(1.5)  # type: ignore[arg-type]


def test_closed_account_rejects_commands() -> None:
    from patterns.consistency.eventsourcing import AccountClosedError
    account = BankAccount.open("a", "Ada")
    account.close()
    with pytest.raises(AccountClosedError, match="'a' is closed"):
        account.deposit(1)
    with pytest.raises(AccountClosedError, match="never opened"):
        BankAccount("b").deposit(1)


def test_load_of_unknown_aggregate_names_the_stream(store: EventStore) -> None:
    with pytest.raises(AggregateNotFoundError, match="stream 'ghost' has no events"):
        repo(store).load("ghost")


def test_stale_aggregate_save_conflicts(store: EventStore) -> None:
    repository = repo(store)
    account = BankAccount.open("a", "Ada")
    account.deposit(100)
    repository.save(account)
    first, second = repository.load("a"), repository.load("a")
    first.withdraw(100)
    repository.save(first)
    second.withdraw(100)  # passes against its stale balance ...
    with pytest.raises(ConcurrencyConflictError, match="expected version 2, actual version 3"):
        repository.save(second)  # ... but cannot be saved: no double spend
    assert repository.load("a").balance == 0


@pytest.mark.parametrize("snapshot_kind", ["memory", "sqlite"])
def test_snapshots_bound_the_replay(store: EventStore, snapshot_kind: str,
                                    tmp_path: Path) -> None:
    snapshots: InMemorySnapshotStore | SQLiteSnapshotStore
    if snapshot_kind == "memory":
        snapshots = InMemorySnapshotStore()
    else:
        snapshots = SQLiteSnapshotStore(SQLiteDatabase(tmp_path / "snap.db"))
    repository = repo(store, every=10, snapshots=snapshots)
    plain = repo(store)
    loads: list[AggregateLoaded] = []
    repository.listeners.add(loads.append)
    account = BankAccount.open("a", "Ada")
    repository.save(account)
    for i in range(1, 38):
        account.deposit(i)
        repository.save(account)
    loaded = repository.load("a")
    assert loaded.balance == sum(range(1, 38)) == plain.load("a").balance
    assert loaded.version == 38
    assert loads[-1] == AggregateLoaded("a", 30, 8, 38)
    snapshot = snapshots.load("a")
    assert snapshot is not None
    assert snapshot.version == 30


def test_repository_validation() -> None:
    with pytest.raises(ValueError, match="snapshot_every must be >= 1, got 0"):
        EventSourcedRepository(InMemoryEventStore(), BankAccount, bank_codec(),
                               snapshots=InMemorySnapshotStore(), snapshot_every=0)
    with pytest.raises(ValueError, match="snapshot_every needs a snapshots store"):
        EventSourcedRepository(InMemoryEventStore(), BankAccount, bank_codec(),
                               snapshot_every=5)
    with pytest.raises(TypeError, match="store must be an EventStore"):
        EventSourcedRepository("db", BankAccount, bank_codec())  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 50)), max_size=40),
       st.integers(1, 7))
def test_property_snapshot_load_equals_full_replay(ops: list[tuple[bool, int]],
                                                   every: int) -> None:
    store = InMemoryEventStore()
    snap = repo(store, every=every, snapshots=InMemorySnapshotStore())
    account = BankAccount.open("a", "Ada")
    snap.save(account)
    balance = 0
    for deposit, amount in ops:
        if deposit:
            account.deposit(amount)
            balance += amount
        elif amount <= balance:
            account.withdraw(amount)
            balance -= amount
        else:
            with pytest.raises(InsufficientFundsError):
                account.withdraw(amount)
        snap.save(account)
    a, b = snap.load("a"), repo(store).load("a")
    assert (a.balance, a.version) == (b.balance, b.version) == (balance, account.version)
    assert a.balance >= 0


# --------------------------------------------------------------- subscription, outbox


def test_catch_up_subscription_delivers_everything_once_in_order(store: EventStore) -> None:
    store.append("a", [new(1), new(2)], 0)
    seen: list[int] = []
    sub = CatchUpSubscription(store, lambda r: seen.append(r.position), batch_size=1)
    assert sub.poll() == 1
    assert sub.poll() == 1
    assert sub.poll() == 0
    stop = threading.Event()
    runner = threading.Thread(target=sub.run, args=(stop,), kwargs={"wait": 0.02})
    runner.start()
    for i in range(3, 8):
        store.append("b", [new(i)], None)
    for _ in range(500):
        if len(seen) == 7:
            break
        threading.Event().wait(0.01)
    stop.set()
    runner.join(timeout=5)
    assert seen == [1, 2, 3, 4, 5, 6, 7]


def test_subscription_from_position_and_handler_failure(store: EventStore) -> None:
    store.append("a", [new(1), new(2), new(3)], 0)
    seen: list[int] = []
    failing = [True]

    def handler(record: RecordedEvent) -> None:
        if record.position == 3 and failing[0]:
            failing[0] = False
            raise RuntimeError("boom")
        seen.append(record.position)

    sub = CatchUpSubscription(store, handler, position=1)
    with pytest.raises(RuntimeError):
        sub.poll()
    assert sub.position == 2
    sub.poll()
    assert seen == [2, 3]
    with pytest.raises(ValueError, match="position must be >= 0, got -2"):
        CatchUpSubscription(store, handler, position=-2)


def test_outbox_relay_is_at_least_once_and_consumer_dedupes(store: EventStore) -> None:
    store.append("a", [new(1), new(2), new(3)], 0)
    handled: list[str] = []
    consumer = IdempotentConsumer(lambda r: handled.append(r.metadata.event_id))
    calls = [0]

    def flaky_publish(record: RecordedEvent) -> None:
        calls[0] += 1
        consumer(record)
        if calls[0] == 2:
            raise ConnectionError("broker lost the ack")  # delivered, not acknowledged

    relay = OutboxRelay(store, flaky_publish)
    with pytest.raises(ConnectionError):
        relay.relay_once()
    assert [r.position for r in store.pending_outbox()] == [2, 3]
    assert relay.relay_once() == 2  # event 2 is published a second time
    assert store.pending_outbox() == []
    assert handled == ["id-1-Thing", "id-2-Thing", "id-3-Thing"]
    assert consumer.duplicates == 1


def test_idempotent_consumer_under_threads() -> None:
    count = [0]
    lock = threading.Lock()

    def handler(record: RecordedEvent) -> None:
        with lock:
            count[0] += 1

    consumer = IdempotentConsumer(handler)
    record = RecordedEvent(1, "a", 1, "T", {}, EventMetadata("same", 0.0))
    barrier = threading.Barrier(16)

    def hit() -> None:
        barrier.wait()
        for _ in range(50):
            consumer(record)

    threads = [threading.Thread(target=hit) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count[0] == 1
    assert consumer.duplicates == 16 * 50 - 1


def test_event_codec_is_independent_per_instance() -> None:
    assert "MoneyDeposited" not in EventCodec()


def test_handler_registry_dispatches_by_type_and_runs_every_handler() -> None:
    registry = EventHandlerRegistry()
    calls: list[str] = []
    registry.register("MoneyDeposited", lambda r: calls.append("first"))

    def broken(record: RecordedEvent) -> None:
        raise RuntimeError("projection down")

    registry.register("MoneyDeposited", broken)
    registry.register("MoneyDeposited", lambda r: calls.append("third"))
    deposit = RecordedEvent(7, "a", 2, "MoneyDeposited", {"amount": 1}, EventMetadata("x", 0.0))
    with pytest.raises(ExceptionGroup,
                       match=r"1 handler\(s\) failed on 'MoneyDeposited' at position 7"):
        registry.dispatch(deposit)
    assert calls == ["first", "third"]  # the failure did not stop the third handler
    other = RecordedEvent(8, "a", 3, "AccountClosed", {}, EventMetadata("y", 0.0))
    assert registry(other) == 0
    with pytest.raises(ValueError, match="event_type must be a non-empty string"):
        registry.register("", print)
    with pytest.raises(TypeError, match="handler must be callable"):
        registry.register("T", 3)  # type: ignore[arg-type]


# The consumer used to remember every event id for ever: a long-running consumer's
# memory grew without bound (issue 11). It keeps the most recent ``remember`` ids.
def test_idempotent_consumer_remembers_a_bounded_window_of_ids() -> None:
    handled: list[str] = []
    consumer = IdempotentConsumer(lambda r: handled.append(r.metadata.event_id), remember=3)

    def record(event_id: str) -> RecordedEvent:
        return RecordedEvent(1, "a", 1, "T", {}, EventMetadata(event_id, 0.0))

    for event_id in ["a", "b", "c", "d", "e"]:
        consumer(record(event_id))
    assert consumer.remembered == 3
    assert consumer(record("e")) is False  # recent: still remembered
    assert consumer(record("c")) is False
    assert consumer(record("a")) is True  # forgotten: outside the window
    assert handled == ["a", "b", "c", "d", "e", "a"]
    with pytest.raises(ValueError, match="remember must be >= 1, got 0"):
        IdempotentConsumer(print, remember=0)
    assert IdempotentConsumer(print, remember=None).remember is None
