"""Orchestrated sagas with a durable log (guide section 5.2, Saga 模式与两阶段提交).

A saga is a sequence of :class:`SagaStep` s, each an *action* and a *compensation* that
undoes it. :class:`SagaOrchestrator` runs the actions in order; when one fails it runs
the compensations of every started step in reverse order. Every transition is written
to a :class:`SagaLog` *before* the orchestrator acts on it, so that after a crash at any
point :meth:`SagaOrchestrator.recover` finishes the saga:

* every step has a recorded completion and no abort was decided -> the saga is
  recorded completed (nothing else to do);
* otherwise the saga is compensated: each step that *started* and is not recorded
  compensated is compensated, in reverse order. A step that started but has no
  recorded outcome may or may not have happened, so it is compensated too -- which is
  why compensations must be idempotent and must tolerate an action that never ran.

Each step execution has a stable :attr:`StepContext.execution_id`
(``"<saga id>/<step index>/<step name>"``), the same on every retry and after a
recovery, so that participants can deduplicate actions and compensations.
Compensations are retried with a :class:`~patterns.resilience.retry.RetryPolicy`.

What the guide's sketch gets wrong, and this module does differently:

* the sketch keeps ``executed_steps`` in memory only, so a crash mid-saga strands it;
  here a durable log (in-memory or SQLite) lets a recovery run finish it;
* a failed compensation is collected and forgotten; here it is retried, and if the
  retries run out the saga stays unfinished in the log for the next recovery;
* compensations get no identity to deduplicate on; here each has a stable id;
* nothing stops two workers from driving one saga (a recovery run compensating a saga
  whose worker is only slow, while its steps go on); here a saga has one owner at a
  time: a lease in the log, renewed by each record, taken over only once expired, and
  fenced (the old owner's next record is refused and it stops). The log refuses any
  record after the final one.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from patterns._errors import Rebuildable
from patterns.clock import MONOTONIC, WALL_CLOCK, Clock
from patterns.consistency.lock._core import (
    MAX_TTL,
    check_clock,
    check_persistent_clock,
    check_ttl,
)
from patterns.events import Listeners
from patterns.resilience.backoff import ExponentialBackoff
from patterns.resilience.retry import RetryPolicy, StopAfterAttempts
from patterns.storage.sqlite import SQLiteDatabase

__all__ = [
    "MAX_LEASE",
    "CompensationFailedError",
    "InMemorySagaLog",
    "LogKind",
    "LogRecord",
    "SQLiteSagaLog",
    "SagaAborting",
    "SagaBusyError",
    "SagaCompensated",
    "SagaCompleted",
    "SagaEvent",
    "SagaExistsError",
    "SagaFinishedError",
    "SagaHistory",
    "SagaLog",
    "SagaOrchestrator",
    "SagaOutcome",
    "SagaOwnershipLostError",
    "SagaRecoveryError",
    "SagaResult",
    "SagaStarted",
    "SagaStep",
    "StepCompensated",
    "StepCompleted",
    "StepContext",
    "StepFailed",
    "StepStarted",
    "UnknownSagaError",
]


def _require_id(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {value!r} ({type(value).__name__})")
    if not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


MAX_LEASE: Final = MAX_TTL
"""The longest saga lease accepted, in seconds (one year, as a lock's lease)."""


def _check_lease(lease: float) -> float:
    return check_ttl(lease, "lease")


def _check_owner(owner: str | None, lease: float | None, *,
                 lease_required: bool) -> float | None:
    """``owner`` is ``None`` or a non-empty str; ``lease`` goes with an owner only."""
    if owner is None:
        if lease is not None:
            raise ValueError(f"lease needs an owner, got lease={lease!r} with owner=None")
        return None
    _require_id("owner", owner)
    if lease is None:
        if lease_required:
            raise ValueError(f"lease is required with an owner, got lease=None for {owner!r}")
        return None
    return _check_lease(lease)


class SagaExistsError(Rebuildable, ValueError):
    """A saga with this id was already begun."""

    def __init__(self, saga_id: str) -> None:
        super().__init__(f"saga_id {saga_id!r} already exists in the log")
        self.saga_id = saga_id


class UnknownSagaError(Rebuildable, LookupError):
    """No saga with this id is in the log."""

    def __init__(self, saga_id: str) -> None:
        super().__init__(f"saga_id {saga_id!r} is not in the log")
        self.saga_id = saga_id


class SagaFinishedError(Rebuildable, ValueError):
    """A record (or a claim) for a saga whose log already holds its final record."""

    def __init__(self, saga_id: str, kind: object = None) -> None:
        what = "a claim" if kind is None else f"record {kind!s}"
        super().__init__(f"saga_id {saga_id!r} is finished: the log refuses {what} "
                         f"after its final record")
        self.saga_id = saga_id


class SagaOwnershipLostError(Rebuildable, RuntimeError):
    """A worker wrote to a saga it no longer owns: another worker took it over.

    The writer must stop at once (run no further step); the new owner finishes the saga.
    """

    def __init__(self, saga_id: str, owner: str | None, current: str | None) -> None:
        super().__init__(f"saga {saga_id!r}: owner {owner!r} lost the saga "
                         f"(now owned by {current!r}); the record was refused")
        self.saga_id = saga_id
        self.owner = owner
        self.current_owner = current


class SagaBusyError(Rebuildable, RuntimeError):
    """Recovery found the saga owned by another worker whose lease has not expired."""

    def __init__(self, saga_id: str, owner: str | None, expires_at: float | None) -> None:
        super().__init__(f"saga {saga_id!r} is owned by {owner!r} until {expires_at!r} "
                         f"(the log's clock); recover it after the lease expires")
        self.saga_id = saga_id
        self.owner = owner
        self.expires_at = expires_at


class CompensationFailedError(Rebuildable, RuntimeError):
    """A compensation kept failing after its retries; the saga stays unfinished."""

    def __init__(self, saga_id: str, step: int, name: str, error: BaseException) -> None:
        super().__init__(f"saga {saga_id!r}: compensation of step {step} ({name!r}) "
                         f"failed after retries: {error!r}; run recover() later")
        self.saga_id = saga_id
        self.step = step
        self.error = error


class SagaRecoveryError(ExceptionGroup[Exception]):
    """:meth:`SagaOrchestrator.recover_all` could not recover some sagas.

    ``exceptions`` holds one error per saga that stays unfinished (each names its saga);
    ``results`` the sagas that were recovered in the same pass.
    """

    results: list[SagaResult]

    # ExceptionGroup's __new__ takes exactly (message, exceptions), its __init__ keeps
    # all its positional arguments as ``args`` and refuses keywords; __init__ here takes
    # ``results`` either way and keeps all three in ``args``, so the group is rebuilt
    # with its results by ``type(e)(*e.args)`` (SimPy), pickle and copy. Its str is
    # ExceptionGroup's, "message (n sub-exceptions)".
    def __new__(cls, message: str, errors: Sequence[Exception],
                results: Sequence[SagaResult] = ()) -> SagaRecoveryError:
        self = super().__new__(cls, message, errors)
        self.results = list(results)
        return self

    def __init__(self, message: str, errors: Sequence[Exception],
                 results: Sequence[SagaResult] = ()) -> None:
        super().__init__(message, errors)
        self.args = (message, errors, self.results)

    def derive(self, excs: Sequence[Exception]) -> SagaRecoveryError:  # type: ignore[override]
        return SagaRecoveryError(self.message, excs, self.results)


# --------------------------------------------------------------------------- the log


class LogKind(StrEnum):
    """What a saga log record says."""

    STEP_STARTED = "step_started"
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"
    ABORTING = "aborting"
    STEP_COMPENSATED = "step_compensated"
    SAGA_COMPLETED = "saga_completed"
    SAGA_COMPENSATED = "saga_compensated"


_FINAL = (LogKind.SAGA_COMPLETED, LogKind.SAGA_COMPENSATED)
_STEP_KINDS = (LogKind.STEP_STARTED, LogKind.STEP_COMPLETED, LogKind.STEP_FAILED,
               LogKind.STEP_COMPENSATED)


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One durable record: ``kind`` for ``step`` (``None`` for saga-level records)."""

    kind: LogKind
    step: int | None


@dataclass(frozen=True, slots=True)
class SagaHistory:
    """Everything the log knows about one saga.

    ``owner`` is the worker that owns the saga now (``None``: nobody, e.g. finished or
    released) and ``lease_expires_at`` when its lease ends, on the log's clock.
    """

    saga_id: str
    name: str
    data: dict[str, Any]
    records: tuple[LogRecord, ...]
    owner: str | None = None
    lease_expires_at: float | None = None

    @property
    def finished(self) -> bool:
        return any(record.kind in _FINAL for record in self.records)

    def steps_with(self, kind: LogKind) -> set[int]:
        return {r.step for r in self.records if r.kind is kind and r.step is not None}


class SagaLog(ABC):
    """Durable record of saga progress, with one owner per saga. Thread-safe.

    Ownership (guide 5.2, added): a saga is written by one worker at a time. The worker
    that begins a saga, or claims it for recovery, is its *owner* and holds a *lease*
    (``lease`` seconds on the log's :attr:`clock`), renewed by each record it appends.
    Another worker may :meth:`claim` the saga only once that lease has expired, and from
    then on every record of the old owner is refused with
    :class:`SagaOwnershipLostError` (fencing), so a slow worker cannot keep running
    steps under the worker that compensates them. After the final record (completed or
    compensated) the log refuses any record, with :class:`SagaFinishedError`.

    A saga begun without an owner (``owner=None``) is unowned: records without an owner
    are accepted until someone claims it.
    """

    clock: Clock

    @abstractmethod
    def begin(self, saga_id: str, name: str, data: Mapping[str, Any], *,
              owner: str | None = None, lease: float | None = None) -> None:
        """Record a new saga with its input ``data`` (JSON-encodable), owned by ``owner``
        for ``lease`` seconds (both or neither)."""

    @abstractmethod
    def append(self, saga_id: str, kind: LogKind, step: int | None = None, *,
               owner: str | None = None, lease: float | None = None) -> None:
        """Durably append one record, if ``owner`` is the saga's owner (``None`` for an
        unowned saga), renewing the lease to ``lease`` seconds from now if given.

        Raises :class:`SagaOwnershipLostError` if another worker owns the saga and
        :class:`SagaFinishedError` after the saga's final record.
        """

    @abstractmethod
    def claim(self, saga_id: str, owner: str, lease: float) -> bool:
        """Make ``owner`` the saga's owner for ``lease`` seconds, if the saga is unowned,
        already ``owner``'s, or its owner's lease has expired; else return ``False``.

        Raises :class:`SagaFinishedError` for a finished saga.
        """

    @abstractmethod
    def release(self, saga_id: str, owner: str) -> bool:
        """Give up ownership (if ``owner`` still owns the saga); return whether it did."""

    @abstractmethod
    def history(self, saga_id: str) -> SagaHistory:
        """The saga's input and records, in order, and its owner."""

    @abstractmethod
    def unfinished(self) -> list[str]:
        """Ids of sagas begun but neither completed nor compensated, oldest first."""

    @staticmethod
    def _check_append(saga_id: object, kind: object, step: object) -> LogKind:
        _require_id("saga_id", saga_id)
        if not isinstance(kind, LogKind):
            raise TypeError(f"kind must be a LogKind, got {kind!r}")
        if kind in _STEP_KINDS:
            if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                raise ValueError(f"step must be an int >= 0 for {kind.value}, got {step!r}")
        elif step is not None:
            raise ValueError(f"step must be None for {kind.value}, got {step!r}")
        return kind

    @staticmethod
    def _encode(data: Mapping[str, Any]) -> str:
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a mapping, got {data!r}")
        try:
            return json.dumps(dict(data), sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ValueError(f"data must be JSON-encodable, got {data!r}: {error}") from None


@dataclass(slots=True)
class _Entry:
    name: str
    data: str
    records: list[LogRecord]
    owner: str | None
    expires_at: float | None
    finished: bool = False


class InMemorySagaLog(SagaLog):
    """A saga log in a dict: for simulations and fast tests (it does not survive a crash).

    Leases are measured on ``clock`` (default :data:`~patterns.clock.MONOTONIC`: one
    process only).
    """

    def __init__(self, *, clock: Clock = MONOTONIC) -> None:
        self.clock = check_clock(clock)
        self._lock = threading.Lock()
        self._sagas: dict[str, _Entry] = {}

    def _get(self, saga_id: str) -> _Entry:
        entry = self._sagas.get(saga_id)
        if entry is None:
            raise UnknownSagaError(saga_id)
        return entry

    def begin(self, saga_id: str, name: str, data: Mapping[str, Any], *,
              owner: str | None = None, lease: float | None = None) -> None:
        _require_id("saga_id", saga_id)
        _require_id("name", name)
        lease = _check_owner(owner, lease, lease_required=True)
        encoded = self._encode(data)
        with self._lock:
            if saga_id in self._sagas:
                raise SagaExistsError(saga_id)
            expires = None if lease is None else self.clock.now() + lease
            self._sagas[saga_id] = _Entry(name, encoded, [], owner, expires)

    def append(self, saga_id: str, kind: LogKind, step: int | None = None, *,
               owner: str | None = None, lease: float | None = None) -> None:
        kind = self._check_append(saga_id, kind, step)
        lease = _check_owner(owner, lease, lease_required=False)
        with self._lock:
            entry = self._get(saga_id)
            if entry.owner != owner:  # fencing first: a worker that lost the saga stops
                raise SagaOwnershipLostError(saga_id, owner, entry.owner)
            if entry.finished:
                raise SagaFinishedError(saga_id, kind)
            entry.records.append(LogRecord(kind, step))
            if kind in _FINAL:
                entry.finished = True
                entry.owner = entry.expires_at = None
            elif lease is not None:
                entry.expires_at = self.clock.now() + lease

    def claim(self, saga_id: str, owner: str, lease: float) -> bool:
        _require_id("saga_id", saga_id)
        _require_id("owner", owner)
        lease = _check_lease(lease)
        with self._lock:
            entry = self._get(saga_id)
            if entry.finished:
                raise SagaFinishedError(saga_id)
            now = self.clock.now()
            if (entry.owner not in (None, owner) and entry.expires_at is not None
                    and now < entry.expires_at):
                return False
            entry.owner, entry.expires_at = owner, now + lease
            return True

    def release(self, saga_id: str, owner: str) -> bool:
        _require_id("saga_id", saga_id)
        _require_id("owner", owner)
        with self._lock:
            entry = self._get(saga_id)
            if entry.owner != owner:
                return False
            entry.owner = entry.expires_at = None
            return True

    def history(self, saga_id: str) -> SagaHistory:
        _require_id("saga_id", saga_id)
        with self._lock:
            entry = self._get(saga_id)
            records = tuple(entry.records)
            owner, expires = entry.owner, entry.expires_at
        return SagaHistory(saga_id, entry.name, json.loads(entry.data), records, owner, expires)

    def unfinished(self) -> list[str]:
        with self._lock:
            return [saga_id for saga_id, entry in self._sagas.items() if not entry.finished]

    def __repr__(self) -> str:
        return f"InMemorySagaLog({len(self._sagas)} sagas)"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS saga (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    saga_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    finished INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    lease_expires_at REAL
);
CREATE TABLE IF NOT EXISTS saga_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    saga_id TEXT NOT NULL REFERENCES saga(saga_id),
    kind TEXT NOT NULL,
    step INTEGER
);
CREATE INDEX IF NOT EXISTS saga_log_by_saga ON saga_log(saga_id, seq);
"""


class SQLiteSagaLog(SagaLog):
    """A saga log in SQLite: survives crashes, shared by threads and processes.

    Leases are stored as deadlines on ``clock``, by default the wall clock
    (:data:`~patterns.clock.WALL_CLOCK`): a deadline written by one process is read by
    another, possibly after a reboot, when a monotonic reading would mean nothing. Every
    check and write is one ``BEGIN IMMEDIATE`` transaction, so two workers cannot both
    take a saga over.
    """

    def __init__(self, database: SQLiteDatabase | str | Path, *,
                 clock: Clock = WALL_CLOCK) -> None:
        if not isinstance(database, SQLiteDatabase | str | Path):
            raise TypeError(f"database must be a SQLiteDatabase or a path, got {database!r}")
        self.clock = check_persistent_clock(clock)
        self.database = (database if isinstance(database, SQLiteDatabase)
                         else SQLiteDatabase(database))
        self.database.executescript(_SCHEMA)
        with self.database.transaction() as connection:  # logs made before ownership
            columns = {row[1] for row in connection.execute("PRAGMA table_info(saga)")}
            for column, kind in (("owner", "TEXT"), ("lease_expires_at", "REAL")):
                if column not in columns:
                    connection.execute(f"ALTER TABLE saga ADD COLUMN {column} {kind}")

    def begin(self, saga_id: str, name: str, data: Mapping[str, Any], *,
              owner: str | None = None, lease: float | None = None) -> None:
        _require_id("saga_id", saga_id)
        _require_id("name", name)
        lease = _check_owner(owner, lease, lease_required=True)
        encoded = self._encode(data)
        with self.database.transaction() as connection:
            row = connection.execute("SELECT 1 FROM saga WHERE saga_id = ?",
                                     (saga_id,)).fetchone()
            if row is not None:
                raise SagaExistsError(saga_id)
            expires = None if lease is None else self.clock.now() + lease
            connection.execute(
                "INSERT INTO saga (saga_id, name, data, owner, lease_expires_at) "
                "VALUES (?, ?, ?, ?, ?)", (saga_id, name, encoded, owner, expires))

    def append(self, saga_id: str, kind: LogKind, step: int | None = None, *,
               owner: str | None = None, lease: float | None = None) -> None:
        kind = self._check_append(saga_id, kind, step)
        lease = _check_owner(owner, lease, lease_required=False)
        with self.database.transaction() as connection:
            row = connection.execute("SELECT finished, owner FROM saga WHERE saga_id = ?",
                                     (saga_id,)).fetchone()
            if row is None:
                raise UnknownSagaError(saga_id)
            if row[1] != owner:  # fencing first: a worker that lost the saga stops
                raise SagaOwnershipLostError(saga_id, owner, row[1])
            if row[0]:
                raise SagaFinishedError(saga_id, kind)
            connection.execute("INSERT INTO saga_log (saga_id, kind, step) VALUES (?, ?, ?)",
                               (saga_id, kind.value, step))
            if kind in _FINAL:
                connection.execute("UPDATE saga SET finished = 1, owner = NULL, "
                                   "lease_expires_at = NULL WHERE saga_id = ?", (saga_id,))
            elif lease is not None:
                connection.execute("UPDATE saga SET lease_expires_at = ? WHERE saga_id = ?",
                                   (self.clock.now() + lease, saga_id))

    def claim(self, saga_id: str, owner: str, lease: float) -> bool:
        _require_id("saga_id", saga_id)
        _require_id("owner", owner)
        lease = _check_lease(lease)
        with self.database.transaction() as connection:
            row = connection.execute(
                "SELECT finished, owner, lease_expires_at FROM saga WHERE saga_id = ?",
                (saga_id,)).fetchone()
            if row is None:
                raise UnknownSagaError(saga_id)
            if row[0]:
                raise SagaFinishedError(saga_id)
            now = self.clock.now()
            if row[1] not in (None, owner) and row[2] is not None and now < row[2]:
                return False
            connection.execute("UPDATE saga SET owner = ?, lease_expires_at = ? "
                               "WHERE saga_id = ?", (owner, now + lease, saga_id))
            return True

    def release(self, saga_id: str, owner: str) -> bool:
        _require_id("saga_id", saga_id)
        _require_id("owner", owner)
        with self.database.transaction() as connection:
            row = connection.execute("SELECT 1 FROM saga WHERE saga_id = ?",
                                     (saga_id,)).fetchone()
            if row is None:
                raise UnknownSagaError(saga_id)
            released: bool = connection.execute(
                "UPDATE saga SET owner = NULL, lease_expires_at = NULL "
                "WHERE saga_id = ? AND owner = ?", (saga_id, owner)).rowcount == 1
            return released

    def history(self, saga_id: str) -> SagaHistory:
        _require_id("saga_id", saga_id)
        connection = self.database.connection()
        row = connection.execute(
            "SELECT name, data, owner, lease_expires_at FROM saga WHERE saga_id = ?",
            (saga_id,)).fetchone()
        if row is None:
            raise UnknownSagaError(saga_id)
        records = tuple(
            LogRecord(LogKind(kind), step) for kind, step in connection.execute(
                "SELECT kind, step FROM saga_log WHERE saga_id = ? ORDER BY seq", (saga_id,)))
        return SagaHistory(saga_id, row[0], json.loads(row[1]), records, row[2], row[3])

    def unfinished(self) -> list[str]:
        return [row[0] for row in self.database.connection().execute(
            "SELECT saga_id FROM saga WHERE finished = 0 ORDER BY seq")]

    def __repr__(self) -> str:
        return f"SQLiteSagaLog({self.database!r})"


# --------------------------------------------------------------------------- steps, events


@dataclass(frozen=True, slots=True)
class StepContext:
    """What an action or compensation receives: who it is, and the saga's input."""

    saga_id: str
    step: int
    name: str
    data: Mapping[str, Any]

    @property
    def execution_id(self) -> str:
        """Stable id of this step of this saga: the same on retries and after recovery."""
        return f"{self.saga_id}/{self.step}/{self.name}"


@dataclass(frozen=True, slots=True)
class SagaStep:
    """One step: ``action(ctx)`` and ``compensation(ctx)`` that undoes it (idempotently)."""

    name: str
    action: Callable[[StepContext], object]
    compensation: Callable[[StepContext], object]

    def __post_init__(self) -> None:
        _require_id("name", self.name)
        if not callable(self.action):
            raise TypeError(f"action must be callable, got {self.action!r}")
        if not callable(self.compensation):
            raise TypeError(f"compensation must be callable, got {self.compensation!r}")


class SagaOutcome(StrEnum):
    COMPLETED = "completed"
    COMPENSATED = "compensated"


@dataclass(frozen=True, slots=True)
class SagaResult:
    """How a saga ended; ``error`` is the action failure that caused compensation."""

    saga_id: str
    outcome: SagaOutcome
    failed_step: int | None = None
    error: BaseException | None = field(default=None, compare=False)
    recovered: bool = False


@dataclass(frozen=True, slots=True)
class SagaEvent:
    """Something a saga did, at ``time`` (the orchestrator's clock)."""

    time: float
    saga_id: str


@dataclass(frozen=True, slots=True)
class SagaStarted(SagaEvent):
    """A saga began (``recovered``: a recovery run picked it up)."""

    recovered: bool


@dataclass(frozen=True, slots=True)
class StepStarted(SagaEvent):
    step: int
    name: str


@dataclass(frozen=True, slots=True)
class StepCompleted(SagaEvent):
    step: int
    name: str


@dataclass(frozen=True, slots=True)
class StepFailed(SagaEvent):
    step: int
    name: str
    error: BaseException | None


@dataclass(frozen=True, slots=True)
class SagaAborting(SagaEvent):
    """The saga will be compensated."""


@dataclass(frozen=True, slots=True)
class StepCompensated(SagaEvent):
    step: int
    name: str


@dataclass(frozen=True, slots=True)
class SagaCompleted(SagaEvent):
    """Every step completed."""


@dataclass(frozen=True, slots=True)
class SagaCompensated(SagaEvent):
    """Every started step was compensated."""


# --------------------------------------------------------------------------- orchestrator


def _default_compensation_retry() -> RetryPolicy:
    return RetryPolicy(stop=StopAfterAttempts(5),
                       backoff=ExponentialBackoff(0.05, cap=1.0))


_owner_prefix: tuple[int, str] = (-1, "")


def _new_owner() -> str:
    """A fresh owner id for one run or recovery: host, process, and a random part."""
    global _owner_prefix
    pid = os.getpid()
    if _owner_prefix[0] != pid:  # first call, or a forked child
        _owner_prefix = (pid, f"{socket.gethostname()}:{pid}:")
    return _owner_prefix[1] + secrets.token_hex(8)


class SagaOrchestrator:
    """Runs one kind of saga (``name`` + ``steps``) against a :class:`SagaLog`.

    ``compensation_retry`` retries each compensation (default: 5 attempts, exponential
    back-off from 50 ms); ``action_retry`` optionally retries actions (default: none, a
    failed action triggers compensation). Listeners receive :class:`SagaEvent` s.

    One owner per saga: every :meth:`run` and :meth:`recover` call owns its saga in the
    log for ``lease`` seconds (default 60, on the log's clock), renewed by each record it
    writes. :meth:`recover` takes over only a saga whose owner's lease has expired (else
    :class:`SagaBusyError`); the worker that lost the saga gets
    :class:`SagaOwnershipLostError` at its next record and runs no further step. So
    ``lease`` must exceed the longest gap between two records: the slowest action or
    compensation, with its retries. A worker that leaves :meth:`run` or :meth:`recover`
    by an exception releases the saga at once, for the next recovery.
    Thread-safe; ``clock`` stamps the events only.
    """

    def __init__(self, name: str, steps: Sequence[SagaStep], log: SagaLog, *,
                 compensation_retry: RetryPolicy | None = None,
                 action_retry: RetryPolicy | None = None,
                 clock: Clock = MONOTONIC, lease: float = 60.0) -> None:
        self.name = _require_id("name", name)
        if isinstance(steps, str | bytes | Mapping) or not isinstance(steps, Iterable):
            raise TypeError(f"steps must be a sequence of SagaStep, got {steps!r}")
        steps = tuple(steps)
        if not steps:
            raise ValueError(f"steps must not be empty, got {steps!r}")
        for step in steps:
            if not isinstance(step, SagaStep):
                raise TypeError(f"steps must be SagaStep objects, got {step!r}")
        names = [step.name for step in steps]
        if len(set(names)) != len(names):
            raise ValueError(f"steps must have distinct names, got {names!r}")
        if not isinstance(log, SagaLog):
            raise TypeError(f"log must be a SagaLog, got {log!r}")
        for label, policy in (("compensation_retry", compensation_retry),
                              ("action_retry", action_retry)):
            if policy is not None and not isinstance(policy, RetryPolicy):
                raise TypeError(f"{label} must be a RetryPolicy or None, got {policy!r}")
        self.steps = steps
        self.log = log
        self.compensation_retry = compensation_retry or _default_compensation_retry()
        self.action_retry = action_retry
        self.clock = check_clock(clock)
        self.lease = _check_lease(lease)
        self.listeners: Listeners[SagaEvent] = Listeners()

    def _emit(self, event_type: type[SagaEvent], saga_id: str, **fields: Any) -> None:
        if self.listeners:
            self.listeners.emit(event_type(self.clock.now(), saga_id, **fields))

    def _context(self, saga_id: str, index: int, data: Mapping[str, Any]) -> StepContext:
        return StepContext(saga_id, index, self.steps[index].name, data)

    def _append(self, saga_id: str, owner: str, kind: LogKind, step: int | None = None) -> None:
        self.log.append(saga_id, kind, step, owner=owner, lease=self.lease)

    def _release_after_error(self, saga_id: str, owner: str) -> None:
        # The worker stops: hand the saga to the next recovery at once (best effort; if
        # the log is unreachable too, the lease runs out instead).
        with contextlib.suppress(Exception):
            self.log.release(saga_id, owner)

    def run(self, saga_id: str, data: Mapping[str, Any] | None = None) -> SagaResult:
        """Begin saga ``saga_id`` with input ``data`` and run it to its end.

        Returns the result (completed, or compensated after an action failed); raises
        :class:`CompensationFailedError` if a compensation kept failing (the saga then
        stays unfinished in the log for :meth:`recover`), and
        :class:`SagaOwnershipLostError` if a recovery took the saga over meanwhile (its
        new owner finishes it; this call ran no step after losing it).
        """
        _require_id("saga_id", saga_id)
        data = {} if data is None else data
        owner = _new_owner()
        self.log.begin(saga_id, self.name, data, owner=owner, lease=self.lease)
        try:
            return self._run(saga_id, owner, json.loads(json.dumps(dict(data), sort_keys=True)))
        except SagaOwnershipLostError:
            raise
        except BaseException:
            self._release_after_error(saga_id, owner)
            raise

    def _run(self, saga_id: str, owner: str, frozen: Mapping[str, Any]) -> SagaResult:
        self._emit(SagaStarted, saga_id, recovered=False)
        for index, step in enumerate(self.steps):
            context = self._context(saga_id, index, frozen)
            self._append(saga_id, owner, LogKind.STEP_STARTED, index)
            self._emit(StepStarted, saga_id, step=index, name=step.name)
            try:
                if self.action_retry is None:
                    step.action(context)
                else:
                    self.action_retry.call(step.action, context)
            except Exception as error:
                self._append(saga_id, owner, LogKind.STEP_FAILED, index)
                self._emit(StepFailed, saga_id, step=index, name=step.name, error=error)
                self._compensate(saga_id, owner, frozen, started=set(range(index + 1)),
                                 done=set())
                return SagaResult(saga_id, SagaOutcome.COMPENSATED, index, error)
            self._append(saga_id, owner, LogKind.STEP_COMPLETED, index)
            self._emit(StepCompleted, saga_id, step=index, name=step.name)
        self._append(saga_id, owner, LogKind.SAGA_COMPLETED)
        self._emit(SagaCompleted, saga_id)
        return SagaResult(saga_id, SagaOutcome.COMPLETED)

    def _compensate(self, saga_id: str, owner: str, data: Mapping[str, Any], *,
                    started: set[int], done: set[int]) -> None:
        self._append(saga_id, owner, LogKind.ABORTING)
        self._emit(SagaAborting, saga_id)
        for index in sorted(started - done, reverse=True):
            step = self.steps[index]
            try:
                self.compensation_retry.call(step.compensation,
                                             self._context(saga_id, index, data))
            except Exception as error:
                raise CompensationFailedError(saga_id, index, step.name, error) from error
            self._append(saga_id, owner, LogKind.STEP_COMPENSATED, index)
            self._emit(StepCompensated, saga_id, step=index, name=step.name)
        self._append(saga_id, owner, LogKind.SAGA_COMPENSATED)
        self._emit(SagaCompensated, saga_id)

    @staticmethod
    def _ended(history: SagaHistory) -> SagaResult:
        failed = sorted(history.steps_with(LogKind.STEP_FAILED))
        kinds = [record.kind for record in history.records]
        if LogKind.SAGA_COMPLETED in kinds:
            return SagaResult(history.saga_id, SagaOutcome.COMPLETED, recovered=True)
        return SagaResult(history.saga_id, SagaOutcome.COMPENSATED,
                          failed[0] if failed else None, recovered=True)

    def _history(self, saga_id: str) -> SagaHistory:
        history = self.log.history(saga_id)
        if history.name != self.name:
            raise ValueError(f"saga_id {saga_id!r} belongs to saga {history.name!r}, "
                             f"not {self.name!r}")
        return history

    def recover(self, saga_id: str) -> SagaResult:
        """Finish an interrupted saga: complete it if every step completed, else compensate.

        A finished saga is returned as it ended (nothing runs again). A saga whose owner's
        lease has not expired (it may still be running) is left alone:
        :class:`SagaBusyError`.
        """
        _require_id("saga_id", saga_id)
        history = self._history(saga_id)
        if history.finished:
            return self._ended(history)
        owner = _new_owner()
        try:
            claimed = self.log.claim(saga_id, owner, self.lease)
        except SagaFinishedError:
            return self._ended(self.log.history(saga_id))
        if not claimed:
            history = self.log.history(saga_id)
            raise SagaBusyError(saga_id, history.owner, history.lease_expires_at)
        try:
            return self._recover(saga_id, owner, self.log.history(saga_id))
        except SagaOwnershipLostError:
            raise
        except BaseException:
            self._release_after_error(saga_id, owner)
            raise

    def _recover(self, saga_id: str, owner: str, history: SagaHistory) -> SagaResult:
        failed = sorted(history.steps_with(LogKind.STEP_FAILED))
        failed_step = failed[0] if failed else None
        self._emit(SagaStarted, saga_id, recovered=True)
        kinds = [record.kind for record in history.records]
        completed = history.steps_with(LogKind.STEP_COMPLETED)
        if LogKind.ABORTING not in kinds and completed == set(range(len(self.steps))):
            self._append(saga_id, owner, LogKind.SAGA_COMPLETED)
            self._emit(SagaCompleted, saga_id)
            return SagaResult(saga_id, SagaOutcome.COMPLETED, recovered=True)
        self._compensate(saga_id, owner, history.data,
                         started=history.steps_with(LogKind.STEP_STARTED),
                         done=history.steps_with(LogKind.STEP_COMPENSATED))
        return SagaResult(saga_id, SagaOutcome.COMPENSATED, failed_step, recovered=True)

    def recover_all(self) -> list[SagaResult]:
        """Recover every unfinished saga of this orchestrator's name, oldest first.

        Sagas still owned by a live worker (lease not expired) are skipped: they are
        running, not interrupted; so is a saga another recoverer took over meanwhile. Run
        it again later for those. A saga whose recovery fails (a compensation that keeps
        failing) does not stop the others: every other saga is recovered first, then
        :class:`SagaRecoveryError` reports each failure (and carries the results).
        """
        results: list[SagaResult] = []
        errors: list[Exception] = []
        for saga_id in self.log.unfinished():
            if self.log.history(saga_id).name == self.name:
                try:
                    results.append(self.recover(saga_id))
                except (SagaBusyError, SagaOwnershipLostError):
                    continue
                except Exception as error:
                    error.add_note(f"while recovering saga {saga_id!r}")
                    errors.append(error)
        if errors:
            raise SagaRecoveryError(
                f"{len(errors)} saga(s) of {self.name!r} could not be recovered "
                f"({len(results)} were)", errors, results)
        return results

    def __repr__(self) -> str:
        return (f"SagaOrchestrator({self.name!r}, steps={[s.name for s in self.steps]!r}, "
                f"log={self.log!r}, lease={self.lease!r})")
