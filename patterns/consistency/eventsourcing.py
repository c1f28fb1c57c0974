"""Event sourcing (guide section 5.3, 最终一致性与事件溯源; the bank account of section 6.4).

State is not stored; the *events* that changed it are, in an append-only
:class:`EventStore`, and an :class:`Aggregate` is rebuilt by replaying them.

* :class:`InMemoryEventStore` and :class:`SQLiteEventStore` share one interface:
  :meth:`~EventStore.append` with an *expected version* (optimistic concurrency: a
  :class:`ConcurrencyConflictError` naming the stream, the expected and the actual
  version), :meth:`~EventStore.read_stream` from a version, :meth:`~EventStore.read_all` in
  global order (every event has a global *position*), and a transactional outbox: the
  events and their outbox rows are written in the *same* transaction, so saving and
  publishing cannot diverge. An :class:`OutboxRelay` publishes them at least once and an
  :class:`IdempotentConsumer` drops the duplicates by event id.
* :class:`CatchUpSubscription` delivers every event from a global position onwards:
  :meth:`~CatchUpSubscription.poll` is the decision (read what is new, deliver, advance);
  :meth:`~CatchUpSubscription.run` is the blocking driver, which waits on the in-memory
  store's condition variable and polls SQLite every ``poll_interval`` seconds.
* Domain events are frozen dataclasses registered in an :class:`EventCodec` (JSON, never
  pickle); each stored event carries :class:`EventMetadata` (event id, correlation and
  causation ids, a timestamp read from a :class:`~patterns.clock.Clock`).
* :class:`EventSourcedRepository` loads an aggregate from its latest snapshot plus the
  tail of its stream, and saves a snapshot every ``snapshot_every`` events.

Reading a stream that has no events returns an empty list (a stream exists once its
first event is appended, and ``expected_version=0`` means "the stream must be new");
:meth:`EventSourcedRepository.load` of such a stream raises :class:`AggregateNotFoundError`.

What the guide's sketch gets wrong, and this module does differently:

* its repository replays the whole stream on every load, so load time grows without
  bound with the stream; here snapshots bound it;
* its service appends the events, then publishes them: two writes, and a crash between
  them loses the notification for good; here the outbox rows are part of the append;
* its ``save`` appends first and applies the events after, so an event the aggregate
  cannot apply is already stored; here events are applied when they are raised, before
  anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import reprlib
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from patterns._errors import Rebuildable
from patterns._timers import MAX_WAIT
from patterns._validation import (
    require_clock,
    require_finite,
    require_int_at_least,
    require_non_negative,
    require_single_wait,
)
from patterns.clock import MONOTONIC, WALL_CLOCK, Clock
from patterns.events import Listeners
from patterns.storage.sqlite import SQLiteDatabase

__all__ = [
    "WALL_CLOCK",
    "AccountClosed",
    "AccountClosedError",
    "AccountOpened",
    "Aggregate",
    "AggregateLoaded",
    "AggregateNotFoundError",
    "BankAccount",
    "BankAccountError",
    "CatchUpSubscription",
    "ConcurrencyConflictError",
    "EventCodec",
    "EventHandlerRegistry",
    "EventMetadata",
    "EventSourcedRepository",
    "EventStore",
    "IdempotentConsumer",
    "InMemoryEventStore",
    "InMemorySnapshotStore",
    "InsufficientFundsError",
    "MoneyDeposited",
    "MoneyWithdrawn",
    "NewEvent",
    "OutboxRelay",
    "RecordedEvent",
    "SQLiteEventStore",
    "SQLiteSnapshotStore",
    "Snapshot",
    "SnapshotStore",
    "UnknownEventTypeError",
    "bank_codec",
]


# --------------------------------------------------------------------------- errors


class ConcurrencyConflictError(Rebuildable, Exception):
    """An append whose expected version is not the stream's current version."""

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream!r}: expected version {expected}, actual version {actual}")
        self.stream = stream
        self.expected = expected
        self.actual = actual


class UnknownEventTypeError(LookupError):
    """An event type (or class) that the codec has no registration for."""


class AggregateNotFoundError(Rebuildable, LookupError):
    """Loading an aggregate whose stream has no events."""

    def __init__(self, stream: str) -> None:
        super().__init__(f"stream {stream!r} has no events (no such aggregate)")
        self.stream = stream


# --------------------------------------------------------------------------- checks

_ENCODE_JSON = json.JSONEncoder(allow_nan=False).encode
"""``json.dumps(value, allow_nan=False)`` without building an encoder on every call (the
same output: default separators, ASCII, no NaN or infinity)."""


def _require_stream(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {value!r} ({type(value).__name__})")
    if not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: SQLite cannot store it
            raise ValueError(f"{name} must be encodable as UTF-8, got {value!r}") from None
    return value


def _require_optional_id(name: str, value: object) -> str | None:
    return None if value is None else _require_stream(name, value)


def _require_timeout(value: float) -> float:
    """A wait's ``timeout`` in seconds: a number >= 0; ``inf`` waits for ever."""
    return require_non_negative("timeout", value)


def _require_interval(name: str, value: float) -> float:
    return require_single_wait(name, value)


def _require_clock(name: str, value: object) -> Clock:
    return require_clock(name, value)  # type: ignore[no-any-return]


def _require_callable(name: str, value: object) -> None:
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {value!r}")


def _dump_json(name: str, value: object) -> str:
    """``value`` as JSON text; an error names ``name`` (a NaN, an infinity, an object)."""
    try:
        return _ENCODE_JSON(value)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{name} must be JSON (str keys, finite numbers), got "
                          f"{reprlib.repr(value)}: {error}") from None


_MAX_INDEX = 2**63 - 1
"""The largest position, version or count SQLite can bind (a signed 64-bit integer)."""


def _require_index(name: str, value: int, minimum: int) -> int:
    """An int >= ``minimum`` that SQLite can hold (a larger one overflows the binding)."""
    require_int_at_least(name, value, minimum)
    if value > _MAX_INDEX:
        raise ValueError(f"{name} must be at most 2**63 - 1, got {value!r}")
    return value


def _require_positions(positions: object) -> list[int]:
    try:
        items: list[int] = list(positions)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"positions must be an iterable of ints, got {positions!r}") from None
    for position in items:
        _require_index("positions", position, 1)
    return items


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class EventMetadata:
    """Who, when and why: stored with every event.

    ``event_id`` is a non-empty string; ``timestamp`` a finite number of seconds (a NaN
    or an infinity would be stored for good, so both are refused here); the correlation
    and causation ids are ``None`` or non-empty strings.
    """

    event_id: str
    timestamp: float
    correlation_id: str | None = None
    causation_id: str | None = None

    def __post_init__(self) -> None:
        # The common case in a few type checks (every read builds one of these per
        # event); anything else takes the checks that name the field.
        event_id, timestamp = self.event_id, self.timestamp
        correlation_id, causation_id = self.correlation_id, self.causation_id
        if (type(event_id) is str and event_id and event_id.isascii()
                and type(timestamp) is float and timestamp - timestamp == 0.0
                and (correlation_id is None or (type(correlation_id) is str
                                                and correlation_id
                                                and correlation_id.isascii()))
                and (causation_id is None or (type(causation_id) is str
                                              and causation_id and causation_id.isascii()))):
            return
        _require_stream("event_id", event_id)
        require_finite("timestamp", timestamp)
        _require_optional_id("correlation_id", correlation_id)
        _require_optional_id("causation_id", causation_id)

    def to_json(self) -> dict[str, Any]:
        """The metadata as a JSON object (a shallow dict: every field is a str, a number
        or None, so :func:`dataclasses.asdict`'s recursive deep copy is not needed)."""
        return {"event_id": self.event_id, "timestamp": self.timestamp,
                "correlation_id": self.correlation_id, "causation_id": self.causation_id}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EventMetadata:
        """The metadata stored as :meth:`to_json`'s output.

        Rows written before timestamps were checked (a NaN timestamp) still read back, as
        they were stored: a store never refuses its own history.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a mapping, got {data!r}")
        event_id, timestamp = data["event_id"], data["timestamp"]
        correlation_id, causation_id = data.get("correlation_id"), data.get("causation_id")
        try:
            return cls(event_id, timestamp, correlation_id, causation_id)
        except (TypeError, ValueError):
            metadata = object.__new__(cls)
            for name, value in (("event_id", event_id), ("timestamp", timestamp),
                                ("correlation_id", correlation_id),
                                ("causation_id", causation_id)):
                object.__setattr__(metadata, name, value)
            return metadata


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be appended: its type name, JSON data and metadata."""

    event_type: str
    data: Mapping[str, Any]
    metadata: EventMetadata

    def __post_init__(self) -> None:
        _require_stream("event_type", self.event_type)
        if type(self.data) is not dict and not isinstance(self.data, Mapping):
            raise TypeError(f"data must be a mapping, got {self.data!r}")
        if type(self.metadata) is not EventMetadata and not isinstance(self.metadata,
                                                                       EventMetadata):
            raise TypeError(f"metadata must be an EventMetadata, got {self.metadata!r}")


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as stored: its stream and version in it, and its global position."""

    position: int
    stream: str
    version: int
    event_type: str
    data: Mapping[str, Any]
    metadata: EventMetadata

    def __post_init__(self) -> None:
        # Cheap checks first: every read builds one of these per event.
        if type(self.position) is not int or self.position < 1:
            require_int_at_least("position", self.position, 1)
        if type(self.version) is not int or self.version < 1:
            require_int_at_least("version", self.version, 1)
        if type(self.stream) is not str or not self.stream.isascii() or not self.stream:
            _require_stream("stream", self.stream)
        if type(self.event_type) is not str or not self.event_type.isascii() or not self.event_type:
            _require_stream("event_type", self.event_type)
        if type(self.data) is not dict and not isinstance(self.data, Mapping):
            raise TypeError(f"data must be a mapping, got {self.data!r}")
        if type(self.metadata) is not EventMetadata and not isinstance(self.metadata,
                                                                       EventMetadata):
            raise TypeError(f"metadata must be an EventMetadata, got {self.metadata!r}")


# --------------------------------------------------------------------------- codec


class EventCodec:
    """A registry of domain event classes (frozen dataclasses), encoded as JSON objects.

    Only registered classes are encoded or decoded, by an explicit type name, so stored
    events survive a rename of the Python class and nothing is ever unpickled.

    An event is encoded as a shallow ``{field: value}`` dict over the field names cached
    at registration (no :func:`dataclasses.asdict`, whose recursive deep copy dominated
    batched appends); values must be JSON (a nested dataclass is refused, as it would
    not decode back).
    """

    def __init__(self) -> None:
        self._by_name: dict[str, type[Any]] = {}
        self._by_class: dict[type[Any], str] = {}
        self._fields: dict[type[Any], tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def register(self, cls: type[Any], name: str | None = None) -> type[Any]:
        """Register the dataclass ``cls`` under ``name`` (default: its class name)."""
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise TypeError(f"cls must be a dataclass type, got {cls!r}")
        type_name = _require_stream("name", cls.__name__ if name is None else name)
        with self._lock:
            known = self._by_name.get(type_name)
            if known is not None and known is not cls:
                raise ValueError(f"name {type_name!r} is already registered for {known!r}")
            self._by_name[type_name] = cls
            self._by_class[cls] = type_name
            self._fields[cls] = tuple(f.name for f in dataclasses.fields(cls))
        return cls

    def type_name(self, event: object) -> str:
        try:
            return self._by_class[type(event)]
        except KeyError:
            raise UnknownEventTypeError(
                f"event class {type(event).__name__!r} is not registered") from None

    def encode(self, event: object) -> tuple[str, dict[str, Any]]:
        """``(type name, JSON-safe data)`` for a registered event."""
        cls = type(event)
        try:
            name, fields = self._by_class[cls], self._fields[cls]
        except KeyError:
            raise UnknownEventTypeError(
                f"event class {cls.__name__!r} is not registered") from None
        data = {field: getattr(event, field) for field in fields}
        for value in data.values():
            kind = type(value)
            # str, int, bool, None and finite floats are JSON as they are; anything
            # else (containers, NaN, objects) takes the full check.
            if kind is str or kind is int or kind is bool or value is None or (
                    kind is float and value - value == 0.0):
                continue
            try:
                _ENCODE_JSON(data)
            except (TypeError, ValueError) as error:
                raise TypeError(
                    f"event {event!r} is not JSON-serialisable: {error}") from None
            break
        return name, data

    def decode(self, event_type: str, data: Mapping[str, Any]) -> Any:
        """The event object for a stored ``(event_type, data)``."""
        try:
            cls = self._by_name[event_type]
        except (KeyError, TypeError):
            raise UnknownEventTypeError(
                f"event_type {event_type!r} is not registered") from None
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a mapping, got {data!r}")
        try:
            return cls(**data)
        except TypeError as error:
            raise TypeError(f"data {dict(data)!r} does not fit event_type {event_type!r}: "
                            f"{error}") from None

    def __contains__(self, item: object) -> bool:
        return item in self._by_name or item in self._by_class


# --------------------------------------------------------------------------- stores


class EventStore(ABC):
    """An append-only store of event streams with a global order and an outbox."""

    @abstractmethod
    def append(self, stream: str, events: Sequence[NewEvent],
               expected_version: int | None) -> int:
        """Append ``events`` to ``stream`` and return its new version.

        ``expected_version`` is the version the caller last saw (0: the stream must be
        new); ``None`` skips the check. A mismatch raises
        :class:`ConcurrencyConflictError` and writes nothing. The events and their outbox
        rows are written atomically.
        """

    @abstractmethod
    def read_stream(self, stream: str, from_version: int = 1,
                    limit: int | None = None) -> list[RecordedEvent]:
        """Events of ``stream`` with version >= ``from_version``, oldest first."""

    @abstractmethod
    def read_all(self, after_position: int = 0,
                 limit: int | None = None) -> list[RecordedEvent]:
        """Events of every stream with position > ``after_position``, in global order."""

    @abstractmethod
    def stream_version(self, stream: str) -> int:
        """The stream's current version (0 for a stream with no events)."""

    @abstractmethod
    def head_position(self) -> int:
        """The position of the last event appended (0 for an empty store)."""

    @abstractmethod
    def pending_outbox(self, limit: int | None = None) -> list[RecordedEvent]:
        """Events whose outbox row is not yet marked published, in global order."""

    @abstractmethod
    def mark_published(self, positions: Iterable[int]) -> None:
        """Remove the outbox rows of these positions (idempotent)."""

    @abstractmethod
    def wait_for_events(self, after_position: int, timeout: float) -> bool:
        """Block until an event with position > ``after_position`` exists or ``timeout``
        seconds pass; return whether one exists.

        ``timeout`` is a number of seconds >= 0 (NaN and negatives are refused); ``inf``
        waits for ever, and so does any huge finite value, without overflowing a wait.
        """

    @staticmethod
    def _check_append(stream: str, events: Sequence[NewEvent],
                      expected_version: int | None) -> list[NewEvent]:
        _require_stream("stream", stream)
        if expected_version is not None:
            _require_index("expected_version", expected_version, 0)
        if isinstance(events, NewEvent | str | bytes | Mapping):
            raise TypeError(f"events must be a sequence of NewEvent, got {events!r}")
        try:
            items = list(events)
        except TypeError:
            raise TypeError(f"events must be a sequence of NewEvent, got {events!r}") from None
        if not items:
            raise ValueError(f"events must not be empty (stream {stream!r})")
        for item in items:
            if not isinstance(item, NewEvent):
                raise TypeError(f"events must be NewEvent instances, got {item!r}")
        return items

    @staticmethod
    def _encode_data(items: Sequence[NewEvent]) -> list[str]:
        return [_dump_json(f"data of events[{index}] ({item.event_type!r})",
                           item.data if type(item.data) is dict else dict(item.data))
                for index, item in enumerate(items)]

    @staticmethod
    def _check_read(from_version: int, limit: int | None) -> None:
        _require_index("from_version", from_version, 1)
        if limit is not None:
            _require_index("limit", limit, 1)


class InMemoryEventStore(EventStore):
    """A thread-safe event store in memory (for simulations and fast tests)."""

    def __init__(self) -> None:
        self._events: list[RecordedEvent] = []
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._outbox: dict[int, RecordedEvent] = {}
        self._changed = threading.Condition()

    def append(self, stream: str, events: Sequence[NewEvent],
               expected_version: int | None) -> int:
        items = self._check_append(stream, events, expected_version)
        encoded = [json.loads(text) for text in self._encode_data(items)]  # a deep copy
        with self._changed:
            records = self._streams.get(stream, [])
            actual = len(records)
            if expected_version is not None and expected_version != actual:
                raise ConcurrencyConflictError(stream, expected_version, actual)
            for offset, (item, data) in enumerate(zip(items, encoded, strict=True)):
                record = RecordedEvent(len(self._events) + 1, stream, actual + offset + 1,
                                       item.event_type, data, item.metadata)
                self._events.append(record)
                records.append(record)
                self._outbox[record.position] = record
            self._streams[stream] = records
            self._changed.notify_all()
            return len(records)

    def read_stream(self, stream: str, from_version: int = 1,
                    limit: int | None = None) -> list[RecordedEvent]:
        _require_stream("stream", stream)
        self._check_read(from_version, limit)
        with self._changed:
            records = self._streams.get(stream, [])
            end = len(records) if limit is None else from_version - 1 + limit
            return records[from_version - 1:end]

    def read_all(self, after_position: int = 0,
                 limit: int | None = None) -> list[RecordedEvent]:
        _require_index("after_position", after_position, 0)
        if limit is not None:
            _require_index("limit", limit, 1)
        with self._changed:
            end = len(self._events) if limit is None else after_position + limit
            return self._events[after_position:end]

    def stream_version(self, stream: str) -> int:
        _require_stream("stream", stream)
        with self._changed:
            return len(self._streams.get(stream, ()))

    def head_position(self) -> int:
        with self._changed:
            return len(self._events)

    def pending_outbox(self, limit: int | None = None) -> list[RecordedEvent]:
        if limit is not None:
            _require_index("limit", limit, 1)
        with self._changed:
            pending = sorted(self._outbox)
            if limit is not None:
                pending = pending[:limit]
            return [self._outbox[p] for p in pending]

    def mark_published(self, positions: Iterable[int]) -> None:
        items = _require_positions(positions)
        with self._changed:
            for position in items:
                self._outbox.pop(position, None)

    def wait_for_events(self, after_position: int, timeout: float) -> bool:
        """See :meth:`EventStore.wait_for_events`; ``timeout=inf`` waits for ever."""
        _require_index("after_position", after_position, 0)
        _require_timeout(timeout)
        with self._changed:
            if len(self._events) > after_position or timeout == 0:
                return len(self._events) > after_position
            deadline = MONOTONIC.now() + timeout
            while len(self._events) <= after_position:
                remaining = deadline - MONOTONIC.now()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, MAX_WAIT))
            return True

    def __repr__(self) -> str:
        return f"InMemoryEventStore({len(self._events)} events)"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS es_events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    version INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    data TEXT NOT NULL,
    metadata TEXT NOT NULL,
    UNIQUE (stream, version)
);
CREATE TABLE IF NOT EXISTS es_outbox (
    position INTEGER PRIMARY KEY REFERENCES es_events(position)
);
CREATE TABLE IF NOT EXISTS es_snapshots (
    stream TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    state TEXT NOT NULL
);
"""

_COLUMNS = "position, stream, version, event_type, data, metadata"


_new = object.__new__
_set = object.__setattr__


def _row_to_record(row: tuple[Any, ...]) -> RecordedEvent:
    # A row this store wrote (checked when it was appended, or before the checks
    # existed): built without re-checking, as a replay reads thousands of them.
    position, stream, version, event_type, data, metadata = row
    meta = json.loads(metadata)
    info = _new(EventMetadata)
    _set(info, "event_id", meta["event_id"])
    _set(info, "timestamp", meta["timestamp"])
    _set(info, "correlation_id", meta.get("correlation_id"))
    _set(info, "causation_id", meta.get("causation_id"))
    record = _new(RecordedEvent)
    _set(record, "position", position)
    _set(record, "stream", stream)
    _set(record, "version", version)
    _set(record, "event_type", event_type)
    _set(record, "data", json.loads(data))
    _set(record, "metadata", info)
    return record


class SQLiteEventStore(EventStore):
    """An event store in one SQLite file (threads and processes may share it).

    Each append is one ``BEGIN IMMEDIATE`` transaction (check the version, insert the
    events and their outbox rows); ``UNIQUE(stream, version)`` guarantees that two
    writers can never both store the same version, even if the check were bypassed.
    :meth:`wait_for_events` polls every ``poll_interval`` seconds (SQLite cannot notify;
    finite, > 0), sleeping with ``sleep`` and measuring with ``clock``.
    """

    def __init__(self, database: SQLiteDatabase, *, poll_interval: float = 0.05,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Clock | None = None) -> None:
        if not isinstance(database, SQLiteDatabase):
            raise TypeError(f"database must be a SQLiteDatabase, got {database!r}")
        self.poll_interval = _require_interval("poll_interval", poll_interval)
        _require_callable("sleep", sleep)
        self._clock: Clock = MONOTONIC if clock is None else _require_clock("clock", clock)
        self.database = database
        self._sleep = sleep
        database.executescript(_SCHEMA)

    def append(self, stream: str, events: Sequence[NewEvent],
               expected_version: int | None) -> int:
        items = self._check_append(stream, events, expected_version)
        rows = [(item.event_type, data,
                 _dump_json(f"metadata of events[{index}]", item.metadata.to_json()))
                for index, (item, data) in enumerate(zip(items, self._encode_data(items),
                                                         strict=True))]
        try:
            with self.database.transaction() as connection:
                (actual,) = connection.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM es_events WHERE stream = ?",
                    (stream,)).fetchone()
                if expected_version is not None and expected_version != actual:
                    raise ConcurrencyConflictError(stream, expected_version, actual)
                for offset, (event_type, data, metadata) in enumerate(rows):
                    cursor = connection.execute(
                        "INSERT INTO es_events (stream, version, event_type, data, metadata)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (stream, actual + offset + 1, event_type, data, metadata))
                    connection.execute("INSERT INTO es_outbox (position) VALUES (?)",
                                       (cursor.lastrowid,))
        except sqlite3.IntegrityError:
            raise ConcurrencyConflictError(
                stream, -1 if expected_version is None else expected_version,
                self.stream_version(stream)) from None
        return int(actual) + len(rows)

    def read_stream(self, stream: str, from_version: int = 1,
                    limit: int | None = None) -> list[RecordedEvent]:
        _require_stream("stream", stream)
        self._check_read(from_version, limit)
        rows = self.database.connection().execute(
            f"SELECT {_COLUMNS} FROM es_events WHERE stream = ? AND version >= ?"
            " ORDER BY version LIMIT ?", (stream, from_version, -1 if limit is None else limit)
        ).fetchall()
        return [_row_to_record(row) for row in rows]

    def read_all(self, after_position: int = 0,
                 limit: int | None = None) -> list[RecordedEvent]:
        _require_index("after_position", after_position, 0)
        if limit is not None:
            _require_index("limit", limit, 1)
        rows = self.database.connection().execute(
            f"SELECT {_COLUMNS} FROM es_events WHERE position > ? ORDER BY position LIMIT ?",
            (after_position, -1 if limit is None else limit)).fetchall()
        return [_row_to_record(row) for row in rows]

    def stream_version(self, stream: str) -> int:
        _require_stream("stream", stream)
        (version,) = self.database.connection().execute(
            "SELECT COALESCE(MAX(version), 0) FROM es_events WHERE stream = ?",
            (stream,)).fetchone()
        return int(version)

    def head_position(self) -> int:
        (position,) = self.database.connection().execute(
            "SELECT COALESCE(MAX(position), 0) FROM es_events").fetchone()
        return int(position)

    def pending_outbox(self, limit: int | None = None) -> list[RecordedEvent]:
        if limit is not None:
            _require_index("limit", limit, 1)
        rows = self.database.connection().execute(
            f"SELECT {', '.join('e.' + c for c in _COLUMNS.split(', '))} FROM es_outbox o"
            " JOIN es_events e ON e.position = o.position ORDER BY o.position LIMIT ?",
            (-1 if limit is None else limit,)).fetchall()
        return [_row_to_record(row) for row in rows]

    def mark_published(self, positions: Iterable[int]) -> None:
        batch = [(p,) for p in _require_positions(positions)]
        if batch:
            with self.database.transaction() as connection:
                connection.executemany("DELETE FROM es_outbox WHERE position = ?", batch)

    def wait_for_events(self, after_position: int, timeout: float) -> bool:
        """See :meth:`EventStore.wait_for_events`; ``timeout=inf`` waits for ever."""
        _require_index("after_position", after_position, 0)
        _require_timeout(timeout)
        deadline = self._clock.now() + timeout
        while True:
            if self.head_position() > after_position:
                return True
            remaining = deadline - self._clock.now()
            if remaining <= 0:
                return False
            self._sleep(min(self.poll_interval, remaining))

    def __repr__(self) -> str:
        return f"SQLiteEventStore({self.database!r})"


# --------------------------------------------------------------------------- snapshots


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An aggregate's state as of ``version`` of its stream (a JSON object)."""

    stream: str
    version: int
    state: Mapping[str, Any]

    def __post_init__(self) -> None:
        _require_stream("stream", self.stream)
        require_int_at_least("version", self.version, 1)
        if not isinstance(self.state, Mapping):
            raise TypeError(f"state must be a mapping, got {self.state!r}")


def _require_snapshot(snapshot: object) -> Snapshot:
    if not isinstance(snapshot, Snapshot):
        raise TypeError(f"snapshot must be a Snapshot, got {snapshot!r}")
    return snapshot


class SnapshotStore(ABC):
    """Keeps the latest snapshot of each stream."""

    @abstractmethod
    def save(self, snapshot: Snapshot) -> None:
        """Store ``snapshot`` unless a newer one is already stored."""

    @abstractmethod
    def load(self, stream: str) -> Snapshot | None:
        """The latest snapshot of ``stream``, or ``None``."""


class InMemorySnapshotStore(SnapshotStore):
    """Snapshots in a dict (thread-safe)."""

    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}
        self._lock = threading.Lock()

    def save(self, snapshot: Snapshot) -> None:
        _require_snapshot(snapshot)
        state = json.loads(_dump_json("snapshot.state", dict(snapshot.state)))
        with self._lock:
            known = self._snapshots.get(snapshot.stream)
            if known is None or known.version < snapshot.version:
                self._snapshots[snapshot.stream] = Snapshot(snapshot.stream,
                                                            snapshot.version, state)

    def load(self, stream: str) -> Snapshot | None:
        _require_stream("stream", stream)
        with self._lock:
            return self._snapshots.get(stream)


class SQLiteSnapshotStore(SnapshotStore):
    """Snapshots in a table of the event store's SQLite file."""

    def __init__(self, database: SQLiteDatabase) -> None:
        if not isinstance(database, SQLiteDatabase):
            raise TypeError(f"database must be a SQLiteDatabase, got {database!r}")
        self.database = database
        database.executescript(_SCHEMA)

    def save(self, snapshot: Snapshot) -> None:
        _require_snapshot(snapshot)
        state = _dump_json("snapshot.state", dict(snapshot.state))
        with self.database.transaction() as connection:
            connection.execute(
                "INSERT INTO es_snapshots (stream, version, state) VALUES (?, ?, ?)"
                " ON CONFLICT(stream) DO UPDATE SET version = excluded.version,"
                " state = excluded.state WHERE excluded.version > es_snapshots.version",
                (snapshot.stream, snapshot.version, state))

    def load(self, stream: str) -> Snapshot | None:
        _require_stream("stream", stream)
        row = self.database.connection().execute(
            "SELECT version, state FROM es_snapshots WHERE stream = ?", (stream,)).fetchone()
        return None if row is None else Snapshot(stream, int(row[0]), json.loads(row[1]))


# --------------------------------------------------------------------------- aggregates


class Aggregate(ABC):
    """An aggregate root rebuilt from its events (the guide's ``AggregateRoot``).

    Commands (methods of the subclass) check the domain rules and call :meth:`_raise`
    with new events; :meth:`_raise` applies each event at once through :meth:`when`
    and keeps it in :attr:`pending` until the repository saves it. :meth:`when` only
    changes state and never fails (the rules were checked before the event existed).
    """

    def __init__(self, aggregate_id: str) -> None:
        self.id = _require_stream("aggregate_id", aggregate_id)
        self.version = 0
        """The version of the stream this state reflects (saved events only)."""
        self.pending: list[Any] = []

    @abstractmethod
    def when(self, event: Any) -> None:
        """Change the state for one event."""

    def apply(self, event: Any, version: int | None = None) -> None:
        """Apply a stored event (while loading); ``version`` is its stream version."""
        if version is not None:
            require_int_at_least("version", version, 1)
        self.when(event)
        self.version = self.version + 1 if version is None else version

    def _raise(self, event: Any) -> None:
        self.when(event)
        self.pending.append(event)

    @abstractmethod
    def snapshot_state(self) -> dict[str, Any]:
        """The state as a JSON object (for a :class:`Snapshot`)."""

    @abstractmethod
    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Set the state from :meth:`snapshot_state`'s output."""


A = TypeVar("A", bound=Aggregate)


@dataclass(frozen=True, slots=True)
class AggregateLoaded:
    """Published by :meth:`EventSourcedRepository.load`: where it started and how much
    it replayed."""

    stream: str
    snapshot_version: int
    replayed: int
    version: int


class EventSourcedRepository(Generic[A]):
    """Loads and saves aggregates of one type (the guide's ``EventSourcedRepository``).

    ``load`` = latest snapshot (if any) + the events after it; ``save`` appends the
    pending events with the loaded version as the expected version, and stores a
    snapshot whenever the version crosses a multiple of ``snapshot_every``.
    """

    def __init__(self, store: EventStore, factory: Callable[[str], A], codec: EventCodec,
                 *, snapshots: SnapshotStore | None = None, snapshot_every: int | None = None,
                 clock: Clock = WALL_CLOCK,
                 id_factory: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        if not isinstance(store, EventStore):
            raise TypeError(f"store must be an EventStore, got {store!r}")
        _require_callable("factory", factory)
        if not isinstance(codec, EventCodec):
            raise TypeError(f"codec must be an EventCodec, got {codec!r}")
        if snapshots is not None and not isinstance(snapshots, SnapshotStore):
            raise TypeError(f"snapshots must be a SnapshotStore or None, got {snapshots!r}")
        _require_clock("clock", clock)
        _require_callable("id_factory", id_factory)
        if snapshot_every is not None:
            require_int_at_least("snapshot_every", snapshot_every, 1)
            if snapshots is None:
                raise ValueError("snapshot_every needs a snapshots store, got snapshots=None")
        self.store = store
        self.factory = factory
        self.codec = codec
        self.snapshots = snapshots
        self.snapshot_every = snapshot_every
        self.clock = clock
        self.id_factory = id_factory
        self.listeners: Listeners[AggregateLoaded] = Listeners()

    def load(self, aggregate_id: str) -> A:
        """The aggregate, rebuilt; :class:`AggregateNotFoundError` if it has no events."""
        _require_stream("aggregate_id", aggregate_id)
        aggregate = self.factory(aggregate_id)
        snapshot = self.snapshots.load(aggregate_id) if self.snapshots is not None else None
        if snapshot is not None:
            aggregate.restore_state(snapshot.state)
            aggregate.version = snapshot.version
        records = self.store.read_stream(aggregate_id, aggregate.version + 1)
        for record in records:
            aggregate.apply(self.codec.decode(record.event_type, record.data), record.version)
        if aggregate.version == 0:
            raise AggregateNotFoundError(aggregate_id)
        self.listeners.emit(AggregateLoaded(aggregate_id,
                                            0 if snapshot is None else snapshot.version,
                                            len(records), aggregate.version))
        return aggregate

    def save(self, aggregate: A, *, correlation_id: str | None = None,
             causation_id: str | None = None) -> list[str]:
        """Append the pending events; return their event ids.

        :class:`ConcurrencyConflictError` if the stream moved since the load (reload and
        retry the command). Events are applied before they are saved, so the aggregate's
        state is already current; only its version moves here.
        """
        if not isinstance(aggregate, Aggregate):
            raise TypeError(f"aggregate must be an Aggregate, got {aggregate!r}")
        _require_optional_id("correlation_id", correlation_id)
        _require_optional_id("causation_id", causation_id)
        if not aggregate.pending:
            return []
        events: list[NewEvent] = []
        ids: list[str] = []
        for event in aggregate.pending:
            event_type, data = self.codec.encode(event)
            event_id = self.id_factory()
            ids.append(event_id)
            events.append(NewEvent(event_type, data, EventMetadata(
                event_id, self.clock.now(), correlation_id or event_id, causation_id)))
        before = aggregate.version
        aggregate.version = self.store.append(aggregate.id, events, before)
        aggregate.pending = []
        every = self.snapshot_every
        if every is not None and self.snapshots is not None and \
                aggregate.version // every > before // every:
            self.snapshots.save(Snapshot(aggregate.id, aggregate.version,
                                         aggregate.snapshot_state()))
        return ids


# --------------------------------------------------------------------------- publishing


class CatchUpSubscription:
    """Deliver every event after ``position`` to ``handler``, in global order.

    :meth:`poll` is the whole decision; :meth:`run` waits for news on the store
    (a condition variable in memory, polling every ``poll_interval`` on SQLite).
    The handler runs with no lock held; if it raises, the position is not advanced
    past the failing event (the next poll delivers it again).
    """

    def __init__(self, store: EventStore, handler: Callable[[RecordedEvent], object], *,
                 position: int = 0, batch_size: int = 500) -> None:
        if not isinstance(store, EventStore):
            raise TypeError(f"store must be an EventStore, got {store!r}")
        _require_callable("handler", handler)
        self.store = store
        self.handler = handler
        self.position = _require_index("position", position, 0)
        self.batch_size = _require_index("batch_size", batch_size, 1)

    def poll(self) -> int:
        """Deliver one batch of new events; return how many were delivered."""
        records = self.store.read_all(self.position, self.batch_size)
        for record in records:
            self.handler(record)
            self.position = record.position
        return len(records)

    def run(self, stop: threading.Event, *, wait: float = 0.5) -> None:
        """Blocking driver: deliver until ``stop`` is set, noticing it within ``wait``
        seconds when idle (finite, > 0)."""
        _require_stop(stop)
        _require_interval("wait", wait)
        while not stop.is_set():
            if self.poll() == 0:
                self.store.wait_for_events(self.position, wait)


def _require_stop(stop: object) -> None:
    if not callable(getattr(stop, "is_set", None)):
        raise TypeError(f"stop must be a threading.Event, got {stop!r}")


def _require_record(record: object) -> RecordedEvent:
    if not isinstance(record, RecordedEvent):
        raise TypeError(f"record must be a RecordedEvent, got {record!r}")
    return record


class OutboxRelay:
    """Publishes the outbox at least once: publish, then mark published.

    A crash between the two publishes the event again on restart: consumers must be
    idempotent (see :class:`IdempotentConsumer`).
    """

    def __init__(self, store: EventStore, publish: Callable[[RecordedEvent], object], *,
                 batch_size: int = 100) -> None:
        if not isinstance(store, EventStore):
            raise TypeError(f"store must be an EventStore, got {store!r}")
        if not callable(publish):
            raise TypeError(f"publish must be callable, got {publish!r}")
        self.store = store
        self.publish = publish
        self.batch_size = _require_index("batch_size", batch_size, 1)

    def relay_once(self) -> int:
        """Publish one batch of pending events; return how many were published.

        Stops at the first event whose publishing fails (it stays pending).
        """
        published: list[int] = []
        try:
            for record in self.store.pending_outbox(self.batch_size):
                self.publish(record)
                published.append(record.position)
        finally:
            self.store.mark_published(published)
        return len(published)


class EventHandlerRegistry:
    """Handlers by event type (the guide's ``EventHandlerRegistry``); thread-safe.

    :meth:`dispatch` calls every handler registered for the record's type, outside any
    lock. Unlike the guide's, a failing handler does not stop the ones after it: all run,
    and the failures are raised together as an :class:`ExceptionGroup`.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, tuple[Callable[[RecordedEvent], object], ...]] = {}
        self._lock = threading.Lock()

    def register(self, event_type: str, handler: Callable[[RecordedEvent], object]) -> None:
        _require_stream("event_type", event_type)
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        with self._lock:
            self._handlers[event_type] = (*self._handlers.get(event_type, ()), handler)

    def dispatch(self, record: RecordedEvent) -> int:
        """Run the handlers of ``record.event_type``; return how many ran."""
        _require_record(record)
        with self._lock:
            handlers = self._handlers.get(record.event_type, ())
        errors: list[Exception] = []
        for handler in handlers:
            try:
                handler(record)
            except Exception as error:
                errors.append(error)
        if errors:
            raise ExceptionGroup(
                f"{len(errors)} handler(s) failed on {record.event_type!r} "
                f"at position {record.position}", errors)
        return len(handlers)

    __call__ = dispatch


class IdempotentConsumer:
    """Wraps a handler so that each event id is handled once (thread-safe; section 5.3).

    The ids seen live in memory, the most recent ``remember`` of them (default 100,000,
    about 10 MB): a relay redelivers an event shortly after the first delivery (a lost
    acknowledgement, a restart), not a million events later, and a consumer that
    remembered every id for ever would grow without bound. ``remember=None`` keeps them
    all. A durable consumer keeps its ids with its own state.
    """

    def __init__(self, handler: Callable[[RecordedEvent], object], *,
                 remember: int | None = 100_000) -> None:
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        if remember is not None:
            require_int_at_least("remember", remember, 1)
        self.handler = handler
        self.remember = remember
        self._seen: dict[str, None] = {}  # insertion-ordered: the oldest id goes first
        self._in_progress: set[str] = set()
        self._lock = threading.Lock()
        self.duplicates = 0

    def __call__(self, record: RecordedEvent) -> bool:
        """Handle ``record`` unless its event id was handled; return whether it ran."""
        event_id = _require_record(record).metadata.event_id
        with self._lock:
            if event_id in self._seen or event_id in self._in_progress:
                self.duplicates += 1
                return False
            self._in_progress.add(event_id)
        try:
            self.handler(record)
        except BaseException:
            with self._lock:
                self._in_progress.discard(event_id)
            raise
        with self._lock:
            self._in_progress.discard(event_id)
            self._seen[event_id] = None
            if self.remember is not None and len(self._seen) > self.remember:
                del self._seen[next(iter(self._seen))]
        return True

    @property
    def remembered(self) -> int:
        """How many handled event ids are remembered now."""
        return len(self._seen)


# --------------------------------------------------------------------------- bank account


@dataclass(frozen=True, slots=True)
class AccountOpened:
    account_id: str
    owner: str


@dataclass(frozen=True, slots=True)
class MoneyDeposited:
    amount: int


@dataclass(frozen=True, slots=True)
class MoneyWithdrawn:
    amount: int


@dataclass(frozen=True, slots=True)
class AccountClosed:
    pass


class BankAccountError(Rebuildable, Exception):
    """A domain rule of the bank account was broken."""


class InsufficientFundsError(BankAccountError):
    """A withdrawal larger than the balance (no overdraft)."""

    def __init__(self, account_id: str, requested: int, available: int) -> None:
        super().__init__(f"account {account_id!r}: insufficient funds, requested "
                         f"{requested}, available {available}")
        self.account_id = account_id
        self.requested = requested
        self.available = available


class AccountClosedError(BankAccountError):
    """A command on a closed account, or opening an account twice."""


def _require_amount(amount: object) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"amount must be an int (cents), got {amount!r}")
    if amount <= 0:
        raise ValueError(f"amount must be > 0, got {amount!r}")
    return amount


class BankAccount(Aggregate):
    """The bank account of the guide (section 6.4); amounts are integer cents."""

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.owner: str | None = None
        self.balance = 0
        self.closed = False

    @classmethod
    def open(cls, account_id: str, owner: str) -> BankAccount:
        account = cls(account_id)
        account._raise(AccountOpened(account_id, _require_stream("owner", owner)))
        return account

    def _require_open(self) -> None:
        if self.owner is None:
            raise AccountClosedError(f"account {self.id!r} was never opened")
        if self.closed:
            raise AccountClosedError(f"account {self.id!r} is closed")

    def deposit(self, amount: int) -> None:
        self._require_open()
        self._raise(MoneyDeposited(_require_amount(amount)))

    def withdraw(self, amount: int) -> None:
        self._require_open()
        _require_amount(amount)
        if amount > self.balance:
            raise InsufficientFundsError(self.id, amount, self.balance)
        self._raise(MoneyWithdrawn(amount))

    def close(self) -> None:
        self._require_open()
        self._raise(AccountClosed())

    def when(self, event: Any) -> None:
        match event:
            case AccountOpened(owner=owner):
                self.owner = owner
            case MoneyDeposited(amount=amount):
                self.balance += amount
            case MoneyWithdrawn(amount=amount):
                self.balance -= amount
            case AccountClosed():
                self.closed = True
            case _:
                raise UnknownEventTypeError(f"BankAccount cannot apply {event!r}")

    def snapshot_state(self) -> dict[str, Any]:
        return {"owner": self.owner, "balance": self.balance, "closed": self.closed}

    def restore_state(self, state: Mapping[str, Any]) -> None:
        self.owner = state["owner"]
        self.balance = int(state["balance"])
        self.closed = bool(state["closed"])



def bank_codec() -> EventCodec:
    """A codec with the four bank account events registered."""
    codec = EventCodec()
    for cls in (AccountOpened, MoneyDeposited, MoneyWithdrawn, AccountClosed):
        codec.register(cls)
    return codec

