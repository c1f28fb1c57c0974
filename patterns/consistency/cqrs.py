"""CQRS: separate write and read models (guide section 5.4, CQRS 模式).

Commands change state through event-sourced aggregates (the write model, built on
:mod:`patterns.consistency.eventsourcing`); queries read *read models* that a
:class:`Projector` keeps up to date from the event store's global order.

* :class:`CommandBus` and :class:`QueryBus` route a message to the one handler
  registered for its type (an unknown type raises :class:`UnknownMessageTypeError`
  naming it). A command handler loads or creates an aggregate and calls its methods;
  the bus saves the pending events (retrying the handler on a concurrency conflict)
  and returns a :class:`CommandResult`: the stream, the new stream version the command
  produced and the global position of its last event.
* A :class:`ReadModel` stores its own *checkpoint* (the last global position it has
  processed). :meth:`ReadModel.apply` skips an event at or below the checkpoint, so
  re-processing is harmless (idempotent). A :class:`SQLiteReadModel` (such as
  :class:`SQLiteBankReadModel`) applies a whole *batch* of events and moves the
  checkpoint in *one* transaction (:meth:`ReadModel.apply_batch`): a crash can never
  apply an event without recording it (or the other way round), and one commit per
  batch instead of one per event makes the projection an order of magnitude faster.
  A new :class:`Projector` on the same read model resumes from the stored checkpoint.
* Read-your-writes: a client that must see its own command waits until the projection
  has reached the command's position: :meth:`Projector.wait_for_position` (blocking:
  the projector's condition variable, re-reading the stored checkpoint every
  ``poll_interval`` for projectors in other processes), :func:`await_position`
  (asyncio) and :func:`simpy_await_position` (SimPy), each raising
  :class:`ProjectionTimeoutError` after ``timeout`` seconds (``inf``: wait for ever).

What the guide's sketch gets wrong: its ``CqrsService.execute_command`` runs the
handler and returns, and never publishes the events the command produced, so the
projector is never called and the read side never changes. Here the projector *pulls*
from the event store's global order, so nothing can be forgotten: every appended event
reaches every read model.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from patterns._errors import Rebuildable
from patterns._validation import (
    require_clock,
    require_finite_positive,
    require_int_at_least,
    require_non_negative,
    require_single_wait,
)
from patterns.clock import MONOTONIC, Clock
from patterns.consistency.eventsourcing import (
    AccountClosed,
    AccountOpened,
    Aggregate,
    ConcurrencyConflictError,
    EventCodec,
    EventSourcedRepository,
    EventStore,
    MoneyDeposited,
    MoneyWithdrawn,
    RecordedEvent,
)
from patterns.events import Listeners
from patterns.storage.sqlite import SQLiteDatabase

__all__ = [
    "AccountView",
    "BankReadModel",
    "CommandBus",
    "CommandResult",
    "EventProjected",
    "InMemoryBankReadModel",
    "OwnerSummary",
    "ProjectionTimeoutError",
    "Projector",
    "QueryBus",
    "ReadModel",
    "SQLiteBankReadModel",
    "SQLiteReadModel",
    "UnknownMessageTypeError",
    "await_position",
    "simpy_await_position",
]

A = TypeVar("A", bound=Aggregate)


# --------------------------------------------------------------------------- errors


class UnknownMessageTypeError(LookupError):
    """No handler is registered for a command or query type."""


class ProjectionTimeoutError(Rebuildable, TimeoutError):
    """The projection did not reach a position in time (read-your-writes failed)."""

    def __init__(self, position: int, reached: int, timeout: float) -> None:
        super().__init__(f"projection did not reach position {position} within "
                         f"timeout={timeout!r} s (reached {reached})")
        self.position = position
        self.reached = reached
        self.timeout = timeout


def _require_type(name: str, value: object) -> type[Any]:
    if not isinstance(value, type):
        raise TypeError(f"{name} must be a class, got {value!r}")
    return value


def _require_callable(name: str, value: object) -> None:
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {value!r}")


def _require_str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {value!r} ({type(value).__name__})")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: SQLite cannot store it
            raise ValueError(f"{name} must be encodable as UTF-8, got {value!r}") from None
    return value


def _require_name(value: object) -> str:
    if not _require_str("name", value):
        raise ValueError(f"name must be a non-empty string, got {value!r}")
    return value  # type: ignore[return-value]


def _require_timeout(value: float) -> float:
    """A read-your-writes ``timeout``: seconds >= 0; ``inf`` waits for ever."""
    return require_non_negative("timeout", value)


def _require_interval(name: str, value: float) -> float:
    return require_single_wait(name, value)


def _require_clock(value: object) -> Clock:
    return require_clock("clock", value)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- buses


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a command produced: its stream, the new stream version, the global position
    of its last event (0 and the current version if it produced no event)."""

    stream: str
    version: int
    position: int
    events: int


class CommandBus(Generic[A]):
    """Routes each command to the handler registered for its type (thread-safe).

    A handler is ``handler(command, repository) -> aggregate``: it loads (or creates)
    the aggregate and calls its methods; the bus saves the pending events with the
    loaded version as the expected version. On a :class:`ConcurrencyConflictError` the
    handler runs again on a fresh load, at most ``conflict_retries`` times.
    """

    def __init__(self, repository: EventSourcedRepository[A], *,
                 conflict_retries: int = 10) -> None:
        if not isinstance(repository, EventSourcedRepository):
            raise TypeError(f"repository must be an EventSourcedRepository, got {repository!r}")
        self.repository = repository
        self.conflict_retries = require_int_at_least("conflict_retries", conflict_retries, 0)
        self._handlers: dict[type[Any], Callable[[Any, EventSourcedRepository[A]], A]] = {}
        self._lock = threading.Lock()

    def register(self, command_type: type[Any],
                 handler: Callable[[Any, EventSourcedRepository[A]], A]) -> None:
        _require_type("command_type", command_type)
        _require_callable("handler", handler)
        with self._lock:
            if command_type in self._handlers:
                raise ValueError(
                    f"command_type {command_type.__name__!r} already has a handler")
            self._handlers[command_type] = handler

    def dispatch(self, command: object, *, correlation_id: str | None = None) -> CommandResult:
        """Run the command's handler and save its events; return the new version."""
        if correlation_id is not None and (not _require_str("correlation_id", correlation_id)):
            raise ValueError(f"correlation_id must be a non-empty string or None, "
                             f"got {correlation_id!r}")
        with self._lock:
            handler = self._handlers.get(type(command))
        if handler is None:
            raise UnknownMessageTypeError(
                f"no handler for command type {type(command).__name__!r}")
        store = self.repository.store
        attempt = 0
        while True:
            aggregate = handler(command, self.repository)
            if not isinstance(aggregate, Aggregate):
                raise TypeError(f"handler for {type(command).__name__!r} must return an "
                                f"Aggregate, got {aggregate!r}")
            produced = len(aggregate.pending)
            try:
                self.repository.save(aggregate, correlation_id=correlation_id)
            except ConcurrencyConflictError:
                attempt += 1
                if attempt > self.conflict_retries:
                    raise
                continue
            position = 0
            if aggregate.version > 0:
                (last,) = store.read_stream(aggregate.id, aggregate.version, 1)
                position = last.position
            return CommandResult(aggregate.id, aggregate.version, position, produced)

    __call__ = dispatch


R = TypeVar("R")


class QueryBus:
    """Routes each query to the handler registered for its type (thread-safe).

    A handler is ``handler(query) -> result``; it reads a read model, never the events.
    """

    def __init__(self) -> None:
        self._handlers: dict[type[Any], Callable[[Any], Any]] = {}
        self._lock = threading.Lock()

    def register(self, query_type: type[Any], handler: Callable[[Any], Any]) -> None:
        _require_type("query_type", query_type)
        _require_callable("handler", handler)
        with self._lock:
            if query_type in self._handlers:
                raise ValueError(f"query_type {query_type.__name__!r} already has a handler")
            self._handlers[query_type] = handler

    def dispatch(self, query: object) -> Any:
        with self._lock:
            handler = self._handlers.get(type(query))
        if handler is None:
            raise UnknownMessageTypeError(f"no handler for query type {type(query).__name__!r}")
        return handler(query)

    __call__ = dispatch


# --------------------------------------------------------------------------- read models


class ReadModel(ABC):
    """A read model that stores the global position it has processed (its checkpoint)."""

    @abstractmethod
    def checkpoint(self) -> int:
        """The last global position applied (0 before any)."""

    @abstractmethod
    def apply(self, record: RecordedEvent, event: Any) -> bool:
        """Apply ``event`` (decoded from ``record``) and move the checkpoint to its
        position, atomically; skip it (return False) if the checkpoint already covers it."""

    def apply_batch(self, items: Sequence[tuple[RecordedEvent, Any]]) -> list[bool]:
        """Apply ``(record, event)`` pairs in order; return which were applied.

        Each event is applied as by :meth:`apply` (skipped if the checkpoint covers it).
        If one raises, the events before it stay applied, the checkpoint is the last of
        them, and the error propagates: nothing is lost and nothing applied twice. This
        default applies them one at a time; :class:`SQLiteReadModel` commits a whole
        batch, updates and checkpoint, in one transaction.
        """
        return [self.apply(record, event) for record, event in _require_items(items)]


@dataclass(frozen=True, slots=True)
class AccountView:
    """One row of the account balances read model."""

    account_id: str
    owner: str
    balance: int
    closed: bool
    version: int


@dataclass(frozen=True, slots=True)
class OwnerSummary:
    """The per-owner read model: open accounts and their total balance."""

    owner: str
    open_accounts: int
    total_balance: int


class BankReadModel(ReadModel):
    """The bank account's read side: balances by account, summaries by owner."""

    @abstractmethod
    def account(self, account_id: str) -> AccountView | None:
        """The account's view, or None if the projection has not seen it."""

    @abstractmethod
    def owner_summary(self, owner: str) -> OwnerSummary:
        """The owner's open accounts and total balance (zeros for an unknown owner)."""


def _require_position(record: object) -> RecordedEvent:
    if not isinstance(record, RecordedEvent):
        raise TypeError(f"record must be a RecordedEvent, got {record!r}")
    return record


def _require_items(items: object) -> list[tuple[RecordedEvent, Any]]:
    """``items`` as a list of ``(RecordedEvent, event)`` pairs, checked before any change."""
    if isinstance(items, str | bytes):
        raise TypeError(f"items must be a sequence of (record, event) pairs, got {items!r}")
    try:
        pairs: list[tuple[RecordedEvent, Any]] = list(items)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(
            f"items must be a sequence of (record, event) pairs, got {items!r}") from None
    for index, pair in enumerate(pairs):
        if not (isinstance(pair, tuple) and len(pair) == 2
                and isinstance(pair[0], RecordedEvent)):
            raise TypeError(f"items[{index}] must be a (RecordedEvent, event) pair, "
                            f"got {pair!r}")
    return pairs


class InMemoryBankReadModel(BankReadModel):
    """The bank read model in memory (thread-safe; for simulations and fast tests)."""

    def __init__(self) -> None:
        self._accounts: dict[str, AccountView] = {}
        self._checkpoint = 0
        self._lock = threading.Lock()

    def checkpoint(self) -> int:
        with self._lock:
            return self._checkpoint

    def apply(self, record: RecordedEvent, event: Any) -> bool:
        _require_position(record)
        with self._lock:
            return self._apply_locked(record, event)

    def apply_batch(self, items: Sequence[tuple[RecordedEvent, Any]]) -> list[bool]:
        """Apply the pairs in order under one lock acquisition (see
        :meth:`ReadModel.apply_batch`)."""
        pairs = _require_items(items)
        with self._lock:
            return [self._apply_locked(record, event) for record, event in pairs]

    def _apply_locked(self, record: RecordedEvent, event: Any) -> bool:
        if record.position <= self._checkpoint:
            return False
        view = self._accounts.get(record.stream)
        match event:
            case AccountOpened(owner=owner):
                view = AccountView(record.stream, owner, 0, False, record.version)
            case MoneyDeposited(amount=amount) if view is not None:
                view = AccountView(view.account_id, view.owner, view.balance + amount,
                                   view.closed, record.version)
            case MoneyWithdrawn(amount=amount) if view is not None:
                view = AccountView(view.account_id, view.owner, view.balance - amount,
                                   view.closed, record.version)
            case AccountClosed() if view is not None:
                view = AccountView(view.account_id, view.owner, view.balance, True,
                                   record.version)
            case _:
                view = None
        if view is not None:
            self._accounts[record.stream] = view
        self._checkpoint = record.position
        return True

    def account(self, account_id: str) -> AccountView | None:
        _require_str("account_id", account_id)
        with self._lock:
            return self._accounts.get(account_id)

    def owner_summary(self, owner: str) -> OwnerSummary:
        _require_str("owner", owner)
        with self._lock:
            views = [v for v in self._accounts.values() if v.owner == owner and not v.closed]
        return OwnerSummary(owner, len(views), sum(v.balance for v in views))

    def __repr__(self) -> str:
        return f"InMemoryBankReadModel(checkpoint={self.checkpoint()})"


_CHECKPOINTS = """
CREATE TABLE IF NOT EXISTS cqrs_checkpoints (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cqrs_accounts (
    name TEXT NOT NULL,
    account_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    balance INTEGER NOT NULL,
    closed INTEGER NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (name, account_id)
);
CREATE INDEX IF NOT EXISTS cqrs_accounts_owner ON cqrs_accounts (name, owner);
"""


class SQLiteReadModel(ReadModel):
    """A read model in SQLite whose updates and checkpoint commit together, one batch of
    events per transaction (guide section 5.4).

    A subclass writes the SQL of one event in :meth:`project`; :meth:`apply_batch` runs
    it for every event of a batch the checkpoint does not cover, then stores the new
    checkpoint, all in one ``BEGIN IMMEDIATE`` transaction: the read model and its
    checkpoint move together, so a crash (an exception, a killed process, a power cut)
    never loses an event or applies one twice. If :meth:`project` raises in the middle
    of a batch, the transaction rolls back, the events before the failing one are
    committed again on their own (the read model never stalls behind an event it has
    already applied), and the error propagates with the checkpoint just before the
    failing event.

    ``name`` keeps several read models (or projections) apart in one database file.
    """

    def __init__(self, database: SQLiteDatabase, *, name: str) -> None:
        if not isinstance(database, SQLiteDatabase):
            raise TypeError(f"database must be a SQLiteDatabase, got {database!r}")
        self.name = _require_name(name)
        self.database = database
        database.executescript(_CHECKPOINTS)

    @abstractmethod
    def project(self, connection: sqlite3.Connection, record: RecordedEvent,
                event: Any) -> None:
        """Write ``event``'s change through ``connection`` (inside the batch's
        transaction: no commit, no rollback)."""

    def checkpoint(self) -> int:
        row = self.database.connection().execute(
            "SELECT position FROM cqrs_checkpoints WHERE name = ?", (self.name,)).fetchone()
        return 0 if row is None else int(row[0])

    def apply(self, record: RecordedEvent, event: Any) -> bool:
        _require_position(record)
        return self.apply_batch([(record, event)])[0]

    def apply_batch(self, items: Sequence[tuple[RecordedEvent, Any]]) -> list[bool]:
        """Apply the pairs and move the checkpoint in one transaction; return which
        were applied (see :meth:`ReadModel.apply_batch`)."""
        pairs = _require_items(items)
        if not pairs:
            return []
        failed_at: int | None = None
        try:
            with self.database.transaction() as db:
                row = db.execute("SELECT position FROM cqrs_checkpoints WHERE name = ?",
                                 (self.name,)).fetchone()
                checkpoint = 0 if row is None else int(row[0])
                start = checkpoint
                applied: list[bool] = []
                for index, (record, event) in enumerate(pairs):
                    if record.position <= checkpoint:
                        applied.append(False)
                        continue
                    failed_at = index
                    self.project(db, record, event)
                    failed_at = None
                    checkpoint = record.position
                    applied.append(True)
                if checkpoint != start:
                    db.execute("INSERT INTO cqrs_checkpoints (name, position) VALUES (?, ?)"
                               " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                               (self.name, checkpoint))
                return applied
        except Exception:
            if failed_at:  # rolled back: commit the events before the failing one alone
                self.apply_batch(pairs[:failed_at])
            raise


class SQLiteBankReadModel(SQLiteReadModel, BankReadModel):
    """The bank read model in SQLite; a batch of updates and the checkpoint are one
    transaction (see :class:`SQLiteReadModel`)."""

    def __init__(self, database: SQLiteDatabase, *, name: str = "bank") -> None:
        super().__init__(database, name=name)
        database.executescript(_SCHEMA)

    def project(self, connection: sqlite3.Connection, record: RecordedEvent,
                event: Any) -> None:
        key = (self.name, record.stream)
        match event:
            case AccountOpened(owner=owner):
                connection.execute(
                    "INSERT OR REPLACE INTO cqrs_accounts (name, account_id, owner, balance,"
                    " closed, version) VALUES (?, ?, ?, 0, 0, ?)", (*key, owner, record.version))
            case MoneyDeposited(amount=amount):
                connection.execute(
                    "UPDATE cqrs_accounts SET balance = balance + ?, version = ?"
                    " WHERE name = ? AND account_id = ?", (amount, record.version, *key))
            case MoneyWithdrawn(amount=amount):
                connection.execute(
                    "UPDATE cqrs_accounts SET balance = balance - ?, version = ?"
                    " WHERE name = ? AND account_id = ?", (amount, record.version, *key))
            case AccountClosed():
                connection.execute(
                    "UPDATE cqrs_accounts SET closed = 1, version = ?"
                    " WHERE name = ? AND account_id = ?", (record.version, *key))

    def account(self, account_id: str) -> AccountView | None:
        _require_str("account_id", account_id)
        row = self.database.connection().execute(
            "SELECT account_id, owner, balance, closed, version FROM cqrs_accounts"
            " WHERE name = ? AND account_id = ?", (self.name, account_id)).fetchone()
        if row is None:
            return None
        return AccountView(row[0], row[1], int(row[2]), bool(row[3]), int(row[4]))

    def owner_summary(self, owner: str) -> OwnerSummary:
        _require_str("owner", owner)
        (count, total) = self.database.connection().execute(
            "SELECT COUNT(*), COALESCE(SUM(balance), 0) FROM cqrs_accounts"
            " WHERE name = ? AND owner = ? AND closed = 0", (self.name, owner)).fetchone()
        return OwnerSummary(owner, int(count), int(total))

    def __repr__(self) -> str:
        return f"SQLiteBankReadModel({self.database!r}, name={self.name!r})"


# --------------------------------------------------------------------------- projector


@dataclass(frozen=True, slots=True)
class EventProjected:
    """Published for each event the projector handed to its read model."""

    position: int
    stream: str
    event_type: str
    applied: bool


class Projector:
    """Feeds a :class:`ReadModel` from the event store's global order, from its checkpoint.

    :meth:`poll` is the decision: read up to ``batch_size`` events after the checkpoint
    and hand them to :meth:`ReadModel.apply_batch` at once (one transaction per batch
    on SQLite: the updates and the checkpoint commit together). :meth:`catch_up` and the
    blocking driver :meth:`run` both poll, so both project in batches. No lock is held
    while the read model or the listeners run: concurrent polls (or several projectors
    on one read model) may read the same batch, and the read model's atomic checkpoint
    check applies each event once (the others report ``applied=False``). Listeners and
    read-your-writes waiters hear of a batch once it is committed. ``batch_size`` trades
    throughput for latency: a SQLite batch holds the database's write lock while it
    applies (about 10 ms for the default 500 bank events), and its events become
    visible together.

    If an event cannot be decoded or applied, the events before it are applied, the
    checkpoint stops just before it, and the error propagates (the next poll retries
    that event).
    """

    def __init__(self, store: EventStore, read_model: ReadModel, codec: EventCodec, *,
                 batch_size: int = 500) -> None:
        if not isinstance(store, EventStore):
            raise TypeError(f"store must be an EventStore, got {store!r}")
        if not isinstance(read_model, ReadModel):
            raise TypeError(f"read_model must be a ReadModel, got {read_model!r}")
        if not isinstance(codec, EventCodec):
            raise TypeError(f"codec must be an EventCodec, got {codec!r}")
        self.store = store
        self.read_model = read_model
        self.codec = codec
        self.batch_size = require_int_at_least("batch_size", batch_size, 1)
        if batch_size > 2**63 - 1:  # SQLite binds the batch size as a LIMIT
            raise ValueError(f"batch_size must be at most 2**63 - 1, got {batch_size!r}")
        self.listeners: Listeners[EventProjected] = Listeners()
        self._progress = threading.Condition()

    @property
    def position(self) -> int:
        """The read model's stored checkpoint."""
        return self.read_model.checkpoint()

    def reached(self, position: int) -> bool:
        """Whether the projection covers ``position`` (the read-your-writes decision)."""
        require_int_at_least("position", position, 0)
        return self.position >= position

    def poll(self) -> int:
        """Project one batch of new events; return how many the read model applied."""
        before = self.read_model.checkpoint()
        records = self.store.read_all(before, self.batch_size)
        if not records:
            return 0
        items: list[tuple[RecordedEvent, Any]] = []
        undecodable: Exception | None = None
        for record in records:
            try:
                items.append((record, self.codec.decode(record.event_type, record.data)))
            except Exception as error:  # apply the events before it, then raise
                undecodable = error
                break
        try:
            applied = self.read_model.apply_batch(items) if items else []
        except BaseException:
            reached = self.read_model.checkpoint()
            self._published([(r, before < r.position <= reached) for r, _ in items
                             if r.position <= reached])
            raise
        self._published([(record, done)
                         for (record, _), done in zip(items, applied, strict=True)])
        if undecodable is not None:
            raise undecodable
        return sum(applied)

    def _published(self, outcomes: list[tuple[RecordedEvent, bool]]) -> None:
        if any(done for _, done in outcomes):
            with self._progress:
                self._progress.notify_all()
        if self.listeners:
            for record, done in outcomes:
                self.listeners.emit(EventProjected(record.position, record.stream,
                                                   record.event_type, done))

    def catch_up(self) -> int:
        """Poll until the head seen at the start is projected; return how many applied."""
        head = self.store.head_position()
        total = 0
        while self.position < head:
            total += self.poll()
        return total

    def run(self, stop: threading.Event, *, wait: float = 0.5) -> None:
        """Blocking driver: project until ``stop`` is set, waiting on the store for news
        (and noticing ``stop`` within ``wait`` seconds when idle; finite, > 0)."""
        if not callable(getattr(stop, "is_set", None)):
            raise TypeError(f"stop must be a threading.Event, got {stop!r}")
        _require_interval("wait", wait)
        while not stop.is_set():
            if self.poll() == 0:
                self.store.wait_for_events(self.position, wait)

    def wait_for_position(self, position: int, timeout: float, *,
                          poll_interval: float = 0.05, clock: Clock = MONOTONIC) -> int:
        """Blocking read-your-writes: return the checkpoint once it covers ``position``.

        Wakes on this projector's progress, and re-reads the stored checkpoint at least
        every ``poll_interval`` seconds (a projector in another process; finite, > 0).
        Raises :class:`ProjectionTimeoutError` after ``timeout`` seconds (>= 0; ``inf``
        waits for ever).
        """
        require_int_at_least("position", position, 0)
        _require_timeout(timeout)
        _require_interval("poll_interval", poll_interval)
        _require_clock(clock)
        deadline = clock.now() + timeout
        while True:
            reached = self.position
            if reached >= position:
                return reached
            remaining = deadline - clock.now()
            if remaining <= 0:
                raise ProjectionTimeoutError(position, reached, timeout)
            with self._progress:
                if self.position < position:
                    self._progress.wait(min(poll_interval, remaining))

    def __repr__(self) -> str:
        return f"Projector({self.read_model!r}, position={self.position})"


async def await_position(projector: Projector, position: int, timeout: float, *,
                         poll_interval: float = 0.01) -> int:
    """asyncio read-your-writes: poll the checkpoint every ``poll_interval`` seconds
    (finite, > 0); :class:`ProjectionTimeoutError` after ``timeout`` seconds (>= 0;
    ``inf`` waits for ever)."""
    if not isinstance(projector, Projector):
        raise TypeError(f"projector must be a Projector, got {projector!r}")
    require_int_at_least("position", position, 0)
    _require_timeout(timeout)
    _require_interval("poll_interval", poll_interval)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        reached = projector.position
        if reached >= position:
            return reached
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise ProjectionTimeoutError(position, reached, timeout)
        await asyncio.sleep(min(poll_interval, remaining))


def simpy_await_position(env: Any, projector: Projector, position: int, timeout: float, *,
                         poll_interval: float = 0.01) -> Generator[Any, Any, int]:
    """SimPy read-your-writes (``yield from`` it in a process): poll every
    ``poll_interval`` simulated seconds (finite, > 0); :class:`ProjectionTimeoutError`
    after ``timeout`` (>= 0; ``inf`` waits for ever)."""
    if not (callable(getattr(env, "timeout", None)) and hasattr(env, "now")):
        raise TypeError(f"env must be a simpy.Environment, got {env!r}")
    if not isinstance(projector, Projector):
        raise TypeError(f"projector must be a Projector, got {projector!r}")
    require_int_at_least("position", position, 0)
    _require_timeout(timeout)
    require_finite_positive("poll_interval", poll_interval)
    deadline = float(env.now) + timeout
    while True:
        reached = projector.position
        if reached >= position:
            return reached
        remaining = deadline - float(env.now)
        if remaining <= 0:
            raise ProjectionTimeoutError(position, reached, timeout)
        yield env.timeout(min(poll_interval, remaining))
