"""Bad-input sweep (issue 11) of the event store (guide section 5.3) and CQRS (5.4):
every public constructor and method refuses a bad value with a ValueError or TypeError
naming the parameter and the value, before any state changes; waits take ``inf`` (for
ever) and huge timeouts without overflowing.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import simpy
from bad_input import (
    HUGE,
    NEGATIVE,
    NON_FINITE,
    NOT_A_NUMBER,
    NOT_A_STR,
    NOT_AN_INT,
    NOT_CALLABLE,
    SWEEP,
    ZERO,
    assert_rejected,
)
from hypothesis import given
from hypothesis import strategies as st

from patterns.clock import ManualClock
from patterns.consistency.cqrs import (
    CommandBus,
    InMemoryBankReadModel,
    Projector,
    QueryBus,
    SQLiteBankReadModel,
    await_position,
    simpy_await_position,
)
from patterns.consistency.eventsourcing import (
    BankAccount,
    CatchUpSubscription,
    EventCodec,
    EventHandlerRegistry,
    EventMetadata,
    EventSourcedRepository,
    EventStore,
    IdempotentConsumer,
    InMemoryEventStore,
    InMemorySnapshotStore,
    MoneyDeposited,
    NewEvent,
    OutboxRelay,
    RecordedEvent,
    Snapshot,
    SQLiteEventStore,
    SQLiteSnapshotStore,
    bank_codec,
)
from patterns.storage.sqlite import SQLiteDatabase

#: Poll intervals and idle waits: finite, > 0, and one wait threading can do.
BAD_INTERVAL = NOT_A_NUMBER | NON_FINITE | NEGATIVE | ZERO | HUGE
#: Timeouts: a number >= 0 (inf and huge values mean "for ever", see below).
BAD_TIMEOUT = NOT_A_NUMBER | NEGATIVE | st.just(math.nan)
#: Positions and counts that are not ints, or negative ints.
NEGATIVE_INT = st.integers(max_value=-1)
#: Not ints, where None is a valid value (limits, expected versions).
NOT_AN_INT_NOR_NONE = NOT_AN_INT.filter(lambda v: v is not None)
#: Strings SQLite cannot store (lone surrogates), and the empty string.
BAD_STR = NOT_A_STR | st.sampled_from(["", "caf\udce9", "\ud83d"])
NOT_A_MAPPING = st.sampled_from([None, 1, "x", ["a"], (("a", 1),)])
NOT_A_CLOCK = st.sampled_from([None, 1.0, "clock", object(), len])

_folder = Path(tempfile.mkdtemp(prefix="bad-input-es-"))
_files = itertools.count()


def _database() -> SQLiteDatabase:
    return SQLiteDatabase(_folder / f"db{next(_files)}.db")


def _meta(n: int = 0) -> EventMetadata:
    return EventMetadata(f"e{n}", 0.0)


def _new(n: int = 0) -> NewEvent:
    return NewEvent("T", {"n": n}, _meta(n))


def _stopped() -> threading.Event:
    """A stop event already set: a driver that does not check its wait returns at once
    (instead of running for ever on a bad wait)."""
    stop = threading.Event()
    stop.set()
    return stop


def _record(position: int = 1) -> RecordedEvent:
    return RecordedEvent(position, "a", position, "MoneyDeposited", {"amount": 1},
                         _meta(position))


@pytest.fixture(scope="module")
def sqlite_store() -> Iterator[SQLiteEventStore]:
    database = _database()
    yield SQLiteEventStore(database, poll_interval=0.005)
    database.close()


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, sqlite_store: SQLiteEventStore) -> EventStore:
    return InMemoryEventStore() if request.param == "memory" else sqlite_store


def _unchanged(store: EventStore, call: Callable[[], object], parameter: str,
               value: Any = ...) -> None:
    """``call`` is refused, naming ``parameter`` (and ``value``), and the store holds
    the same events and outbox as before."""
    head, outbox = store.head_position(), len(store.pending_outbox())
    assert_rejected(call, parameter, value)
    assert (store.head_position(), len(store.pending_outbox())) == (head, outbox)


# --------------------------------------------------------------------------- records


@SWEEP
@given(value=BAD_STR)
def test_metadata_event_id(value: Any) -> None:
    assert_rejected(lambda: EventMetadata(value, 0.0), "event_id", value)


@SWEEP
@given(value=NON_FINITE | NOT_A_NUMBER)
def test_metadata_timestamp_nan_and_infinities_are_never_stored(value: Any) -> None:
    assert_rejected(lambda: EventMetadata("e", value), "timestamp", value)


@SWEEP
@given(value=BAD_STR.filter(lambda v: v is not None), field=st.sampled_from(
    ["correlation_id", "causation_id"]))
def test_metadata_correlation_and_causation_ids(value: Any, field: str) -> None:
    assert_rejected(lambda: EventMetadata("e", 0.0, **{field: value}), field, value)


@SWEEP
@given(value=NOT_A_MAPPING)
def test_metadata_from_json_data(value: Any) -> None:
    assert_rejected(lambda: EventMetadata.from_json(value), "data", value)


def test_metadata_stored_with_a_nan_before_the_check_still_reads_back() -> None:
    legacy = {"event_id": "e", "timestamp": math.nan, "correlation_id": None,
              "causation_id": None}
    metadata = EventMetadata.from_json(legacy)
    assert metadata.event_id == "e"
    assert math.isnan(metadata.timestamp)


@SWEEP
@given(value=BAD_STR)
def test_new_event_event_type(value: Any) -> None:
    assert_rejected(lambda: NewEvent(value, {}, _meta()), "event_type", value)


@SWEEP
@given(value=NOT_A_MAPPING)
def test_new_event_data(value: Any) -> None:
    assert_rejected(lambda: NewEvent("T", value, _meta()), "data", value)


@SWEEP
@given(value=NOT_A_MAPPING)
def test_new_event_metadata(value: Any) -> None:
    assert_rejected(lambda: NewEvent("T", {}, value), "metadata", value)


def _assert_recorded_event_rejects(field: str, value: Any) -> None:
    """A RecordedEvent with valid fields but ``field=value`` is refused, naming ``field``."""
    fields: dict[str, Any] = {"position": 1, "stream": "a", "version": 1,
                              "event_type": "T", "data": {}, "metadata": _meta()}
    fields[field] = value
    assert_rejected(lambda: RecordedEvent(**fields), field, value)


@SWEEP
@given(field=st.sampled_from(["position", "version"]),
       value=NOT_AN_INT | NEGATIVE_INT | ZERO.filter(lambda v: isinstance(v, int)))
def test_recorded_event_position_and_version(field: str, value: Any) -> None:
    _assert_recorded_event_rejects(field, value)


@SWEEP
@given(field=st.sampled_from(["stream", "event_type"]), value=BAD_STR)
def test_recorded_event_stream_and_type(field: str, value: Any) -> None:
    _assert_recorded_event_rejects(field, value)


@SWEEP
@given(field=st.sampled_from(["data", "metadata"]), value=NOT_A_MAPPING)
def test_recorded_event_data_and_metadata(field: str, value: Any) -> None:
    _assert_recorded_event_rejects(field, value)


@SWEEP
@given(stream=BAD_STR, version=NOT_AN_INT | NEGATIVE_INT | st.just(0),
       state=NOT_A_MAPPING)
def test_snapshot_fields(stream: Any, version: Any, state: Any) -> None:
    assert_rejected(lambda: Snapshot(stream, 1, {}), "stream", stream)
    assert_rejected(lambda: Snapshot("a", version, {}), "version", version)
    assert_rejected(lambda: Snapshot("a", 1, state), "state", state)


# --------------------------------------------------------------------------- codec


@dataclass(frozen=True)
class Holder:
    value: Any


def test_codec_register_and_decode() -> None:
    codec = EventCodec()
    assert_rejected(lambda: codec.register(int), "cls", int)
    assert_rejected(lambda: codec.register(Holder, name=""), "name", "")
    assert_rejected(lambda: codec.register(Holder, name=3), "name", 3)  # type: ignore[arg-type]
    codec.register(Holder)
    assert_rejected(lambda: codec.decode("Holder", "x"), "data", "x")  # type: ignore[arg-type]
    assert_rejected(lambda: codec.decode("Holder", {"nope": 1}), "event_type", "Holder")
    with pytest.raises(LookupError, match="event_type 3"):
        codec.decode(3, {})  # type: ignore[arg-type]


@SWEEP
@given(value=NON_FINITE | st.sampled_from([object(), {1, 2}, Holder(1), b"x"]))
def test_codec_encode_refuses_what_json_cannot_hold(value: Any) -> None:
    codec = EventCodec()
    codec.register(Holder)
    assert_rejected(lambda: codec.encode(Holder(value)), "JSON")


# --------------------------------------------------------------------------- stores


@SWEEP
@given(value=BAD_STR)
def test_append_stream(store: EventStore, value: Any) -> None:
    _unchanged(store, lambda: store.append(value, [_new()], None), "stream", value)


@SWEEP
@given(value=st.sampled_from([None, 3, _new(), "events", {"a": 1}, [], [1], [None]]))
def test_append_events(store: EventStore, value: Any) -> None:
    _unchanged(store, lambda: store.append("a", value, None), "events")


@SWEEP
@given(value=NOT_AN_INT_NOR_NONE | NEGATIVE_INT)
def test_append_expected_version(store: EventStore, value: Any) -> None:
    _unchanged(store, lambda: store.append("a", [_new()], value), "expected_version", value)


@SWEEP
@given(value=NON_FINITE)
def test_append_refuses_nan_and_infinities_in_data_naming_data(store: EventStore,
                                                               value: float) -> None:
    events = [_new(1), NewEvent("T", {"x": value}, _meta(2))]
    _unchanged(store, lambda: store.append("a", events, None), "data", value)


@SWEEP
@given(stream=BAD_STR, from_version=NOT_AN_INT | NEGATIVE_INT | st.just(0),
       limit=NOT_AN_INT_NOR_NONE | NEGATIVE_INT | st.just(0))
def test_read_stream(store: EventStore, stream: Any, from_version: Any, limit: Any) -> None:
    assert_rejected(lambda: store.read_stream(stream), "stream", stream)
    assert_rejected(lambda: store.read_stream("a", from_version), "from_version", from_version)
    assert_rejected(lambda: store.read_stream("a", 1, limit), "limit", limit)
    assert_rejected(lambda: store.stream_version(stream), "stream", stream)


@SWEEP
@given(after=NOT_AN_INT | NEGATIVE_INT, limit=NOT_AN_INT_NOR_NONE | NEGATIVE_INT | st.just(0))
def test_read_all_and_outbox(store: EventStore, after: Any, limit: Any) -> None:
    assert_rejected(lambda: store.read_all(after), "after_position", after)
    assert_rejected(lambda: store.read_all(0, limit), "limit", limit)
    assert_rejected(lambda: store.pending_outbox(limit), "limit", limit)


@SWEEP
@given(value=st.sampled_from([None, 3, 1.5]) | st.lists(
    NOT_AN_INT | NEGATIVE_INT | st.just(0), min_size=1, max_size=3))
def test_mark_published_positions(store: EventStore, value: Any) -> None:
    store.append(f"mp{store.head_position()}", [_new()], None)
    # every position is checked before any row is removed
    positions = [store.head_position(), *value] if isinstance(value, list) else value
    _unchanged(store, lambda: store.mark_published(positions), "positions")


#: Ints beyond what SQLite binds (a signed 64-bit integer): OverflowError inside sqlite3.
HUGE_INT = st.sampled_from([2**63, 2**70, 10**30])


@SWEEP
@given(value=HUGE_INT)
def test_positions_versions_and_counts_beyond_sqlite(store: EventStore, value: int) -> None:
    _unchanged(store, lambda: store.append("a", [_new()], value), "expected_version", value)
    assert_rejected(lambda: store.read_stream("a", value), "from_version", value)
    assert_rejected(lambda: store.read_stream("a", 1, value), "limit", value)
    assert_rejected(lambda: store.read_all(value), "after_position", value)
    assert_rejected(lambda: store.read_all(0, value), "limit", value)
    assert_rejected(lambda: store.pending_outbox(value), "limit", value)
    _unchanged(store, lambda: store.mark_published([value]), "positions", value)
    assert_rejected(lambda: store.wait_for_events(value, 0.0), "after_position", value)
    assert_rejected(lambda: CatchUpSubscription(store, print, position=value),
                    "position", value)
    assert_rejected(lambda: CatchUpSubscription(store, print, batch_size=value),
                    "batch_size", value)
    assert_rejected(lambda: OutboxRelay(store, print, batch_size=value), "batch_size", value)
    assert_rejected(lambda: Projector(store, InMemoryBankReadModel(), bank_codec(),
                                      batch_size=value), "batch_size", value)


@SWEEP
@given(timeout=BAD_TIMEOUT, after=NOT_AN_INT | NEGATIVE_INT)
def test_wait_for_events_refuses_nan_and_negative_timeouts(store: EventStore, timeout: Any,
                                                           after: Any) -> None:
    assert_rejected(lambda: store.wait_for_events(0, timeout), "timeout", timeout)
    assert_rejected(lambda: store.wait_for_events(after, 0.0), "after_position", after)


@pytest.mark.parametrize("timeout", [math.inf, 1e10, 1.7e308])
def test_wait_for_events_inf_and_huge_timeouts_wait_without_overflow(
        store: EventStore, timeout: float) -> None:
    head = store.head_position()
    timer = threading.Timer(0.05, lambda: store.append(f"w{head}", [_new()], None))
    timer.start()
    try:
        assert store.wait_for_events(head, timeout) is True
    finally:
        timer.join(timeout=5)
    assert store.wait_for_events(head, timeout) is True  # already there: no wait


def test_sqlite_store_constructor() -> None:
    database = _database()
    assert_rejected(lambda: SQLiteEventStore("x.db"), "database", "x.db")  # type: ignore[arg-type]

    @SWEEP
    @given(interval=BAD_INTERVAL, sleep=NOT_CALLABLE,
           clock=NOT_A_CLOCK.filter(lambda v: v is not None))
    def sweep(interval: Any, sleep: Any, clock: Any) -> None:
        assert_rejected(lambda: SQLiteEventStore(database, poll_interval=interval),
                        "poll_interval", interval)
        assert_rejected(lambda: SQLiteEventStore(database, sleep=sleep), "sleep", sleep)
        assert_rejected(lambda: SQLiteEventStore(database, clock=clock), "clock", clock)

    sweep()
    database.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_snapshot_stores(kind: str) -> None:
    database = _database()
    snapshots = InMemorySnapshotStore() if kind == "memory" else SQLiteSnapshotStore(database)
    assert_rejected(lambda: snapshots.save({"stream": "a"}), "snapshot")  # type: ignore[arg-type]
    assert_rejected(lambda: snapshots.save(Snapshot("a", 1, {"x": math.nan})),
                    "state", math.nan)
    assert snapshots.load("a") is None
    assert_rejected(lambda: snapshots.load(""), "stream", "")
    assert_rejected(lambda: snapshots.load(None), "stream", None)  # type: ignore[arg-type]
    database.close()


# --------------------------------------------------------------------------- aggregates


@SWEEP
@given(account_id=BAD_STR, owner=BAD_STR, amount=NOT_AN_INT | NEGATIVE_INT | st.just(0),
       version=NOT_AN_INT_NOR_NONE | NEGATIVE_INT | st.just(0))
def test_bank_account(account_id: Any, owner: Any, amount: Any, version: Any) -> None:
    assert_rejected(lambda: BankAccount.open(account_id, "ann"), "aggregate_id", account_id)
    assert_rejected(lambda: BankAccount.open("a", owner), "owner", owner)
    account = BankAccount.open("a", "ann")
    account.deposit(5)
    assert_rejected(lambda: account.deposit(amount), "amount", amount)
    assert_rejected(lambda: account.withdraw(amount), "amount", amount)
    assert_rejected(lambda: account.apply(MoneyDeposited(1), version), "version", version)
    assert (account.balance, len(account.pending)) == (5, 2)


@SWEEP
@given(factory=NOT_CALLABLE, id_factory=NOT_CALLABLE, clock=NOT_A_CLOCK,
       every=NOT_AN_INT_NOR_NONE | NEGATIVE_INT | st.just(0))
def test_repository_constructor(factory: Any, id_factory: Any, clock: Any,
                                every: Any) -> None:
    store, codec = InMemoryEventStore(), bank_codec()
    assert_rejected(lambda: EventSourcedRepository(store, factory, codec), "factory", factory)
    assert_rejected(lambda: EventSourcedRepository(store, BankAccount, codec,
                                                   id_factory=id_factory),
                    "id_factory", id_factory)
    assert_rejected(lambda: EventSourcedRepository(store, BankAccount, codec, clock=clock),
                    "clock", clock)
    assert_rejected(lambda: EventSourcedRepository(store, BankAccount, codec,
                                                   snapshots=InMemorySnapshotStore(),
                                                   snapshot_every=every),
                    "snapshot_every", every)
    assert_rejected(lambda: EventSourcedRepository(store, BankAccount, codec,
                                                   snapshots="s"),  # type: ignore[arg-type]
                    "snapshots", "s")
    assert_rejected(lambda: EventSourcedRepository(store, BankAccount, "c"),  # type: ignore[arg-type]
                    "codec", "c")


@SWEEP
@given(aggregate_id=BAD_STR, correlation=BAD_STR.filter(lambda v: v is not None),
       aggregate=st.sampled_from([None, "a", 1]))
def test_repository_load_and_save(aggregate_id: Any, correlation: Any,
                                  aggregate: Any) -> None:
    store = InMemoryEventStore()
    repository = EventSourcedRepository(store, BankAccount, bank_codec())
    assert_rejected(lambda: repository.load(aggregate_id), "aggregate_id", aggregate_id)
    assert_rejected(lambda: repository.save(aggregate), "aggregate", aggregate)
    account = BankAccount.open("a", "ann")
    assert_rejected(lambda: repository.save(account, correlation_id=correlation),
                    "correlation_id", correlation)
    assert_rejected(lambda: repository.save(account, causation_id=correlation),
                    "causation_id", correlation)
    assert (store.head_position(), len(account.pending)) == (0, 1)


@SWEEP
@given(now=NON_FINITE)
def test_repository_refuses_a_clock_that_reads_nan_or_inf(now: float) -> None:
    store = InMemoryEventStore()
    repository = EventSourcedRepository(store, BankAccount, bank_codec(),
                                        clock=ManualClock(0.0))
    repository.clock = type("Broken", (), {"now": lambda self: now})()
    account = BankAccount.open("a", "ann")
    assert_rejected(lambda: repository.save(account), "timestamp", now)
    assert (store.head_position(), len(account.pending), account.version) == (0, 1, 0)


# --------------------------------------------------------------------------- subscribers


@SWEEP
@given(handler=NOT_CALLABLE, position=NOT_AN_INT | NEGATIVE_INT,
       batch=NOT_AN_INT | NEGATIVE_INT | st.just(0))
def test_subscription_and_relay_constructors(handler: Any, position: Any,
                                             batch: Any) -> None:
    store = InMemoryEventStore()
    assert_rejected(lambda: CatchUpSubscription(store, handler), "handler", handler)
    assert_rejected(lambda: CatchUpSubscription(store, print, position=position),
                    "position", position)
    assert_rejected(lambda: CatchUpSubscription(store, print, batch_size=batch),
                    "batch_size", batch)
    assert_rejected(lambda: CatchUpSubscription("s", print), "store", "s")  # type: ignore[arg-type]
    assert_rejected(lambda: OutboxRelay(store, handler), "publish", handler)
    assert_rejected(lambda: OutboxRelay(store, print, batch_size=batch), "batch_size", batch)
    assert_rejected(lambda: IdempotentConsumer(handler), "handler", handler)
    assert_rejected(lambda: EventHandlerRegistry().register("T", handler), "handler", handler)


@SWEEP
@given(wait=BAD_INTERVAL, stop=st.sampled_from([None, True, 1, "stop"]))
def test_subscription_run_wait_and_stop(wait: Any, stop: Any) -> None:
    subscription = CatchUpSubscription(InMemoryEventStore(), print)
    assert_rejected(lambda: subscription.run(_stopped(), wait=wait), "wait", wait)
    assert_rejected(lambda: subscription.run(stop), "stop", stop)


@SWEEP
@given(record=st.sampled_from([None, 1, "r", {"position": 1}]), event_type=BAD_STR)
def test_dispatch_and_consumer_records(record: Any, event_type: Any) -> None:
    registry = EventHandlerRegistry()
    assert_rejected(lambda: registry.register(event_type, print), "event_type", event_type)
    assert_rejected(lambda: registry.dispatch(record), "record", record)
    consumer = IdempotentConsumer(print)
    assert_rejected(lambda: consumer(record), "record", record)
    assert consumer.duplicates == 0


# --------------------------------------------------------------------------- CQRS


@pytest.fixture
def bank(store: EventStore) -> tuple[EventStore, CommandBus[BankAccount]]:
    bus: CommandBus[BankAccount] = CommandBus(
        EventSourcedRepository(store, BankAccount, bank_codec()))
    bus.register(str, lambda c, r: BankAccount.open(c, "ann"))
    return store, bus


@SWEEP
@given(retries=NOT_AN_INT | NEGATIVE_INT, kind=st.sampled_from([None, 1, "cmd", print]),
       correlation=BAD_STR.filter(lambda v: v is not None))
def test_command_and_query_buses(bank: tuple[EventStore, CommandBus[BankAccount]],
                                 retries: Any, kind: Any, correlation: Any) -> None:
    store, bus = bank
    repository = bus.repository
    assert_rejected(lambda: CommandBus(repository, conflict_retries=retries),
                    "conflict_retries", retries)
    assert_rejected(lambda: bus.register(kind, lambda c, r: None), "command_type", kind)
    assert_rejected(lambda: bus.register(int, 3), "handler", 3)  # type: ignore[arg-type]
    assert_rejected(lambda: QueryBus().register(kind, print), "query_type", kind)
    assert_rejected(lambda: QueryBus().register(int, 3), "handler", 3)
    head = store.head_position()
    assert_rejected(lambda: bus.dispatch(f"acct{head}", correlation_id=correlation),
                    "correlation_id", correlation)
    assert store.head_position() == head


@pytest.fixture(params=["memory", "sqlite"])
def read_model(request: pytest.FixtureRequest) -> InMemoryBankReadModel | SQLiteBankReadModel:
    if request.param == "memory":
        return InMemoryBankReadModel()
    return SQLiteBankReadModel(_database(), name=f"m{next(_files)}")


@SWEEP
@given(record=st.sampled_from([None, 1, "r", {"position": 1}]), text=NOT_A_STR | st.sampled_from(
    ["caf\udce9"]), items=st.sampled_from([None, 3, "ab", [None], [(1, 2)], [(_record(),)]]))
def test_read_models(read_model: InMemoryBankReadModel | SQLiteBankReadModel, record: Any,
                     text: Any, items: Any) -> None:
    assert_rejected(lambda: read_model.apply(record, None), "record", record)
    assert_rejected(lambda: read_model.account(text), "account_id", text)
    assert_rejected(lambda: read_model.owner_summary(text), "owner", text)
    # a bad pair anywhere in the batch: refused before the good one before it is applied
    assert_rejected(lambda: read_model.apply_batch([(_record(), MoneyDeposited(1)),
                                                    *(items if isinstance(items, list)
                                                      else [items])]), "items")
    assert_rejected(lambda: read_model.apply_batch(items), "items")
    assert read_model.checkpoint() == 0


@SWEEP
@given(name=BAD_STR)
def test_sqlite_read_model_name(name: Any) -> None:
    assert_rejected(lambda: SQLiteBankReadModel(_database(), name=name), "name", name)


@SWEEP
@given(batch=NOT_AN_INT | NEGATIVE_INT | st.just(0), position=NOT_AN_INT | NEGATIVE_INT,
       wait=BAD_INTERVAL)
def test_projector_constructor_and_driver(batch: Any, position: Any, wait: Any) -> None:
    store, model, codec = InMemoryEventStore(), InMemoryBankReadModel(), bank_codec()
    assert_rejected(lambda: Projector(store, model, codec, batch_size=batch),
                    "batch_size", batch)
    assert_rejected(lambda: Projector(store, model, "c"), "codec", "c")  # type: ignore[arg-type]
    projector = Projector(store, model, codec)
    assert_rejected(lambda: projector.reached(position), "position", position)
    assert_rejected(lambda: projector.run(_stopped(), wait=wait), "wait", wait)
    assert_rejected(lambda: projector.run(None), "stop", None)  # type: ignore[arg-type]


@SWEEP
@given(timeout=BAD_TIMEOUT, interval=BAD_INTERVAL, clock=NOT_A_CLOCK,
       position=NOT_AN_INT | NEGATIVE_INT)
def test_read_your_writes_waits(timeout: Any, interval: Any, clock: Any,
                                position: Any) -> None:
    projector = Projector(InMemoryEventStore(), InMemoryBankReadModel(), bank_codec())
    wait = projector.wait_for_position
    assert_rejected(lambda: wait(1, timeout), "timeout", timeout)
    assert_rejected(lambda: wait(1, 1.0, poll_interval=interval), "poll_interval", interval)
    assert_rejected(lambda: wait(1, 1.0, clock=clock), "clock", clock)
    assert_rejected(lambda: wait(position, 1.0), "position", position)
    assert_rejected(lambda: asyncio.run(await_position(projector, 1, timeout)),
                    "timeout", timeout)
    assert_rejected(lambda: asyncio.run(await_position(projector, 1, 1.0,
                                                       poll_interval=interval)),
                    "poll_interval", interval)
    env = simpy.Environment()
    assert_rejected(lambda: next(simpy_await_position(env, projector, 1, timeout)),
                    "timeout", timeout)
    if not (isinstance(interval, float) and math.isfinite(interval) and interval > 0):
        # simulated time: a huge poll interval is only a long simulated wait
        assert_rejected(lambda: next(simpy_await_position(env, projector, 1, 1.0,
                                                          poll_interval=interval)),
                        "poll_interval", interval)
    assert_rejected(lambda: next(simpy_await_position(None, projector, 1, 1.0)), "env", None)


@pytest.mark.parametrize("timeout", [math.inf, 1e10, 1.7e308])
def test_read_your_writes_waits_take_inf_and_huge_timeouts(timeout: float) -> None:
    store = InMemoryEventStore()
    bus = CommandBus(EventSourcedRepository(store, BankAccount, bank_codec()))
    bus.register(str, lambda c, r: BankAccount.open(c, "ann"))
    projector = Projector(store, InMemoryBankReadModel(), bank_codec())
    result = bus.dispatch("a")
    timer = threading.Timer(0.05, projector.poll)
    timer.start()
    try:
        assert projector.wait_for_position(result.position, timeout,
                                           poll_interval=0.01) == result.position
    finally:
        timer.join(timeout=5)

    async def later() -> int:
        second = bus.dispatch("b")
        asyncio.get_running_loop().call_later(0.03, projector.poll)
        return await await_position(projector, second.position, timeout, poll_interval=0.005)

    assert asyncio.run(later()) == 2
    env = simpy.Environment()
    seen: list[int] = []

    def client() -> Any:
        third = bus.dispatch("c")
        env.process(poll_later())
        seen.append((yield from simpy_await_position(env, projector, third.position,
                                                     timeout, poll_interval=0.1)))

    def poll_later() -> Any:
        yield env.timeout(1.0)
        projector.poll()

    env.process(client())
    env.run(until=10)
    assert seen == [3]
