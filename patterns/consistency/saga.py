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
* compensations get no identity to deduplicate on; here each has a stable id.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from patterns.clock import MONOTONIC, Clock
from patterns.events import Listeners
from patterns.resilience.backoff import ExponentialBackoff
from patterns.resilience.retry import RetryPolicy, StopAfterAttempts
from patterns.storage.sqlite import SQLiteDatabase

__all__ = [
    "CompensationFailedError",
    "InMemorySagaLog",
    "LogKind",
    "LogRecord",
    "SQLiteSagaLog",
    "SagaAborting",
    "SagaCompensated",
    "SagaCompleted",
    "SagaEvent",
    "SagaExistsError",
    "SagaHistory",
    "SagaLog",
    "SagaOrchestrator",
    "SagaOutcome",
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


class SagaExistsError(ValueError):
    """A saga with this id was already begun."""

    def __init__(self, saga_id: str) -> None:
        super().__init__(f"saga_id {saga_id!r} already exists in the log")
        self.saga_id = saga_id


class UnknownSagaError(LookupError):
    """No saga with this id is in the log."""

    def __init__(self, saga_id: str) -> None:
        super().__init__(f"saga_id {saga_id!r} is not in the log")
        self.saga_id = saga_id


class CompensationFailedError(RuntimeError):
    """A compensation kept failing after its retries; the saga stays unfinished."""

    def __init__(self, saga_id: str, step: int, name: str, error: BaseException) -> None:
        super().__init__(f"saga {saga_id!r}: compensation of step {step} ({name!r}) "
                         f"failed after retries: {error!r}; run recover() later")
        self.saga_id = saga_id
        self.step = step
        self.error = error


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
    """Everything the log knows about one saga."""

    saga_id: str
    name: str
    data: dict[str, Any]
    records: tuple[LogRecord, ...]

    @property
    def finished(self) -> bool:
        return any(record.kind in _FINAL for record in self.records)

    def steps_with(self, kind: LogKind) -> set[int]:
        return {r.step for r in self.records if r.kind is kind and r.step is not None}


class SagaLog(ABC):
    """Durable record of saga progress. Implementations are thread-safe."""

    @abstractmethod
    def begin(self, saga_id: str, name: str, data: Mapping[str, Any]) -> None:
        """Record a new saga with its input ``data`` (JSON-encodable)."""

    @abstractmethod
    def append(self, saga_id: str, kind: LogKind, step: int | None = None) -> None:
        """Durably append one record to the saga's history."""

    @abstractmethod
    def history(self, saga_id: str) -> SagaHistory:
        """The saga's input and records, in order."""

    @abstractmethod
    def unfinished(self) -> list[str]:
        """Ids of sagas begun but neither completed nor compensated, oldest first."""

    @staticmethod
    def _check_append(kind: object, step: object) -> LogKind:
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
            return json.dumps(dict(data), sort_keys=True)
        except (TypeError, ValueError) as error:
            raise ValueError(f"data must be JSON-encodable, got {data!r}: {error}") from None


class InMemorySagaLog(SagaLog):
    """A saga log in a dict: for simulations and fast tests (it does not survive a crash)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sagas: dict[str, tuple[str, str, list[LogRecord]]] = {}

    def begin(self, saga_id: str, name: str, data: Mapping[str, Any]) -> None:
        _require_id("saga_id", saga_id)
        _require_id("name", name)
        encoded = self._encode(data)
        with self._lock:
            if saga_id in self._sagas:
                raise SagaExistsError(saga_id)
            self._sagas[saga_id] = (name, encoded, [])

    def append(self, saga_id: str, kind: LogKind, step: int | None = None) -> None:
        kind = self._check_append(kind, step)
        with self._lock:
            entry = self._sagas.get(saga_id)
            if entry is None:
                raise UnknownSagaError(saga_id)
            entry[2].append(LogRecord(kind, step))

    def history(self, saga_id: str) -> SagaHistory:
        with self._lock:
            entry = self._sagas.get(saga_id)
            if entry is None:
                raise UnknownSagaError(saga_id)
            name, data, records = entry[0], entry[1], tuple(entry[2])
        return SagaHistory(saga_id, name, json.loads(data), records)

    def unfinished(self) -> list[str]:
        with self._lock:
            return [saga_id for saga_id, (_, _, records) in self._sagas.items()
                    if not any(r.kind in _FINAL for r in records)]

    def __repr__(self) -> str:
        return f"InMemorySagaLog({len(self._sagas)} sagas)"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS saga (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    saga_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    finished INTEGER NOT NULL DEFAULT 0
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
    """A saga log in SQLite: survives crashes, shared by threads and processes."""

    def __init__(self, database: SQLiteDatabase | str | Path) -> None:
        self.database = (database if isinstance(database, SQLiteDatabase)
                         else SQLiteDatabase(database))
        self.database.executescript(_SCHEMA)

    def begin(self, saga_id: str, name: str, data: Mapping[str, Any]) -> None:
        _require_id("saga_id", saga_id)
        _require_id("name", name)
        encoded = self._encode(data)
        with self.database.transaction() as connection:
            row = connection.execute("SELECT 1 FROM saga WHERE saga_id = ?",
                                     (saga_id,)).fetchone()
            if row is not None:
                raise SagaExistsError(saga_id)
            connection.execute("INSERT INTO saga (saga_id, name, data) VALUES (?, ?, ?)",
                               (saga_id, name, encoded))

    def append(self, saga_id: str, kind: LogKind, step: int | None = None) -> None:
        kind = self._check_append(kind, step)
        with self.database.transaction() as connection:
            row = connection.execute("SELECT 1 FROM saga WHERE saga_id = ?",
                                     (saga_id,)).fetchone()
            if row is None:
                raise UnknownSagaError(saga_id)
            connection.execute("INSERT INTO saga_log (saga_id, kind, step) VALUES (?, ?, ?)",
                               (saga_id, kind.value, step))
            if kind in _FINAL:
                connection.execute("UPDATE saga SET finished = 1 WHERE saga_id = ?",
                                   (saga_id,))

    def history(self, saga_id: str) -> SagaHistory:
        connection = self.database.connection()
        row = connection.execute("SELECT name, data FROM saga WHERE saga_id = ?",
                                 (saga_id,)).fetchone()
        if row is None:
            raise UnknownSagaError(saga_id)
        records = tuple(
            LogRecord(LogKind(kind), step) for kind, step in connection.execute(
                "SELECT kind, step FROM saga_log WHERE saga_id = ? ORDER BY seq", (saga_id,)))
        return SagaHistory(saga_id, row[0], json.loads(row[1]), records)

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


class SagaOrchestrator:
    """Runs one kind of saga (``name`` + ``steps``) against a :class:`SagaLog`.

    ``compensation_retry`` retries each compensation (default: 5 attempts, exponential
    back-off from 50 ms); ``action_retry`` optionally retries actions (default: none, a
    failed action triggers compensation). Listeners receive :class:`SagaEvent` s.
    Thread-safe as long as each saga id is run by one caller at a time.
    """

    def __init__(self, name: str, steps: Sequence[SagaStep], log: SagaLog, *,
                 compensation_retry: RetryPolicy | None = None,
                 action_retry: RetryPolicy | None = None,
                 clock: Clock = MONOTONIC) -> None:
        self.name = _require_id("name", name)
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
        self.steps = steps
        self.log = log
        self.compensation_retry = compensation_retry or _default_compensation_retry()
        self.action_retry = action_retry
        self.clock = clock
        self.listeners: Listeners[SagaEvent] = Listeners()

    def _emit(self, event_type: type[SagaEvent], saga_id: str, **fields: Any) -> None:
        if self.listeners:
            self.listeners.emit(event_type(self.clock.now(), saga_id, **fields))

    def _context(self, saga_id: str, index: int, data: Mapping[str, Any]) -> StepContext:
        return StepContext(saga_id, index, self.steps[index].name, data)

    def run(self, saga_id: str, data: Mapping[str, Any] | None = None) -> SagaResult:
        """Begin saga ``saga_id`` with input ``data`` and run it to its end.

        Returns the result (completed, or compensated after an action failed); raises
        :class:`CompensationFailedError` if a compensation kept failing (the saga then
        stays unfinished in the log for :meth:`recover`).
        """
        data = {} if data is None else data
        self.log.begin(saga_id, self.name, data)
        self._emit(SagaStarted, saga_id, recovered=False)
        frozen = json.loads(json.dumps(dict(data), sort_keys=True))
        for index, step in enumerate(self.steps):
            context = self._context(saga_id, index, frozen)
            self.log.append(saga_id, LogKind.STEP_STARTED, index)
            self._emit(StepStarted, saga_id, step=index, name=step.name)
            try:
                if self.action_retry is None:
                    step.action(context)
                else:
                    self.action_retry.call(step.action, context)
            except Exception as error:
                self.log.append(saga_id, LogKind.STEP_FAILED, index)
                self._emit(StepFailed, saga_id, step=index, name=step.name, error=error)
                self._compensate(saga_id, frozen, started=set(range(index + 1)),
                                 done=set())
                return SagaResult(saga_id, SagaOutcome.COMPENSATED, index, error)
            self.log.append(saga_id, LogKind.STEP_COMPLETED, index)
            self._emit(StepCompleted, saga_id, step=index, name=step.name)
        self.log.append(saga_id, LogKind.SAGA_COMPLETED)
        self._emit(SagaCompleted, saga_id)
        return SagaResult(saga_id, SagaOutcome.COMPLETED)

    def _compensate(self, saga_id: str, data: Mapping[str, Any], *, started: set[int],
                    done: set[int]) -> None:
        self.log.append(saga_id, LogKind.ABORTING)
        self._emit(SagaAborting, saga_id)
        for index in sorted(started - done, reverse=True):
            step = self.steps[index]
            try:
                self.compensation_retry.call(step.compensation,
                                             self._context(saga_id, index, data))
            except Exception as error:
                raise CompensationFailedError(saga_id, index, step.name, error) from error
            self.log.append(saga_id, LogKind.STEP_COMPENSATED, index)
            self._emit(StepCompensated, saga_id, step=index, name=step.name)
        self.log.append(saga_id, LogKind.SAGA_COMPENSATED)
        self._emit(SagaCompensated, saga_id)

    def recover(self, saga_id: str) -> SagaResult:
        """Finish an interrupted saga: complete it if every step completed, else compensate.

        A finished saga is returned as it ended (nothing runs again).
        """
        history = self.log.history(saga_id)
        if history.name != self.name:
            raise ValueError(f"saga_id {saga_id!r} belongs to saga {history.name!r}, "
                             f"not {self.name!r}")
        kinds = [record.kind for record in history.records]
        failed = sorted(history.steps_with(LogKind.STEP_FAILED))
        failed_step = failed[0] if failed else None
        if LogKind.SAGA_COMPLETED in kinds:
            return SagaResult(saga_id, SagaOutcome.COMPLETED, recovered=True)
        if LogKind.SAGA_COMPENSATED in kinds:
            return SagaResult(saga_id, SagaOutcome.COMPENSATED, failed_step, recovered=True)
        self._emit(SagaStarted, saga_id, recovered=True)
        completed = history.steps_with(LogKind.STEP_COMPLETED)
        if LogKind.ABORTING not in kinds and completed == set(range(len(self.steps))):
            self.log.append(saga_id, LogKind.SAGA_COMPLETED)
            self._emit(SagaCompleted, saga_id)
            return SagaResult(saga_id, SagaOutcome.COMPLETED, recovered=True)
        self._compensate(saga_id, history.data,
                         started=history.steps_with(LogKind.STEP_STARTED),
                         done=history.steps_with(LogKind.STEP_COMPENSATED))
        return SagaResult(saga_id, SagaOutcome.COMPENSATED, failed_step, recovered=True)

    def recover_all(self) -> list[SagaResult]:
        """Recover every unfinished saga of this orchestrator's name, oldest first."""
        results = []
        for saga_id in self.log.unfinished():
            if self.log.history(saga_id).name == self.name:
                results.append(self.recover(saga_id))
        return results

    def __repr__(self) -> str:
        return (f"SagaOrchestrator({self.name!r}, steps={[s.name for s in self.steps]!r}, "
                f"log={self.log!r})")
