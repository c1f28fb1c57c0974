"""Two-phase commit with a durable decision log (guide section 5.2, Saga 模式与两阶段提交).

A :class:`TwoPhaseCoordinator` asks every :class:`Participant` to *prepare* (vote), each
within ``prepare_timeout`` seconds. All yes -> the decision is COMMIT; any no, error or
timeout -> ABORT. The decision is written to a :class:`DecisionLog` *before* any
participant hears it, then sent to every participant, each send retried with a
:class:`~patterns.resilience.retry.RetryPolicy`. A participant that has voted yes may
not decide alone: it stays prepared, holding its locks, until the decision arrives
(:class:`LockingParticipant` shows this). If the coordinator crashes after logging,
:meth:`TwoPhaseCoordinator.recover` re-sends the logged decision; a transaction with no
logged decision is aborted (presumed abort).

What the guide's sketch gets wrong, and this module does differently:

* it keeps no log, so a coordinator crash between the phases leaves participants
  prepared for ever; here the decision is durable and recovery re-sends it;
* a commit-phase failure is only logged (``log::error!``) and the call returns ``Ok``
  while a participant never committed; here it is retried and, if still failing, the
  transaction stays pending in the log and the result says who has not acknowledged;
* prepares run one after the other; here they run concurrently, each with its timeout.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from patterns._validation import require_positive
from patterns.clock import MONOTONIC, Clock
from patterns.events import Listeners
from patterns.resilience.backoff import ExponentialBackoff
from patterns.resilience.retry import RetryPolicy, StopAfterAttempts
from patterns.storage.sqlite import SQLiteDatabase

__all__ = [
    "Decision",
    "DecisionLog",
    "DecisionLogged",
    "DecisionSent",
    "InMemoryDecisionLog",
    "LockingParticipant",
    "Participant",
    "PendingTransaction",
    "SQLiteDecisionLog",
    "TransactionResult",
    "TwoPhaseCoordinator",
    "TwoPhaseEvent",
    "VoteReceived",
]


def _require_id(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {value!r} ({type(value).__name__})")
    if not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


class Decision(StrEnum):
    COMMIT = "commit"
    ABORT = "abort"


class Participant(Protocol):
    """One resource manager: votes in :meth:`prepare`, then obeys the decision."""

    def prepare(self, txid: str) -> bool:
        """Vote: ``True`` means "I can commit and will until told otherwise"."""

    def commit(self, txid: str) -> None:
        """Make the prepared work durable (idempotent)."""

    def abort(self, txid: str) -> None:
        """Discard the work (idempotent; also for a transaction never prepared)."""


# --------------------------------------------------------------------------- the log


@dataclass(frozen=True, slots=True)
class PendingTransaction:
    """A transaction begun and not yet acknowledged by every participant."""

    txid: str
    participants: tuple[str, ...]
    decision: Decision | None


class DecisionLog(ABC):
    """Durable record of the coordinator's transactions and decisions. Thread-safe."""

    @abstractmethod
    def begin(self, txid: str, participants: tuple[str, ...]) -> None:
        """Record a new transaction and who takes part (before any prepare)."""

    @abstractmethod
    def decide(self, txid: str, decision: Decision) -> None:
        """Durably record the decision (once; a second, different decision is an error)."""

    @abstractmethod
    def decision(self, txid: str) -> Decision | None:
        """The logged decision, or ``None`` if none was logged yet."""

    @abstractmethod
    def finish(self, txid: str) -> None:
        """Every participant acknowledged the decision."""

    @abstractmethod
    def pending(self) -> list[PendingTransaction]:
        """Transactions begun and not finished, oldest first."""

    @staticmethod
    def _check(txid: object, decision: object) -> Decision:
        _require_id("txid", txid)
        if not isinstance(decision, Decision):
            raise TypeError(f"decision must be a Decision, got {decision!r}")
        return decision


class InMemoryDecisionLog(DecisionLog):
    """A decision log in a dict: for simulations and fast tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tx: dict[str, list[Any]] = {}  # txid -> [participants, decision, finished]

    def _get(self, txid: str) -> list[Any]:
        entry = self._tx.get(txid)
        if entry is None:
            raise LookupError(f"txid {txid!r} is not in the log")
        return entry

    def begin(self, txid: str, participants: tuple[str, ...]) -> None:
        _require_id("txid", txid)
        with self._lock:
            if txid in self._tx:
                raise ValueError(f"txid {txid!r} already exists in the log")
            self._tx[txid] = [tuple(participants), None, False]

    def decide(self, txid: str, decision: Decision) -> None:
        decision = self._check(txid, decision)
        with self._lock:
            entry = self._get(txid)
            if entry[1] is not None and entry[1] is not decision:
                raise ValueError(f"txid {txid!r} already decided {entry[1].value}, "
                                 f"got decision {decision.value!r}")
            entry[1] = decision

    def decision(self, txid: str) -> Decision | None:
        with self._lock:
            result: Decision | None = self._get(txid)[1]
            return result

    def finish(self, txid: str) -> None:
        with self._lock:
            self._get(txid)[2] = True

    def pending(self) -> list[PendingTransaction]:
        with self._lock:
            return [PendingTransaction(txid, entry[0], entry[1])
                    for txid, entry in self._tx.items() if not entry[2]]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS twophase_tx (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    txid TEXT NOT NULL UNIQUE,
    participants TEXT NOT NULL,
    decision TEXT,
    finished INTEGER NOT NULL DEFAULT 0
);
"""


class SQLiteDecisionLog(DecisionLog):
    """A decision log in SQLite: survives a coordinator crash."""

    def __init__(self, database: SQLiteDatabase | str | Path) -> None:
        self.database = (database if isinstance(database, SQLiteDatabase)
                         else SQLiteDatabase(database))
        self.database.executescript(_SCHEMA)

    def begin(self, txid: str, participants: tuple[str, ...]) -> None:
        _require_id("txid", txid)
        for name in participants:
            if "\n" in name:
                raise ValueError(f"participant names must not contain newlines, got {name!r}")
        with self.database.transaction() as c:
            if c.execute("SELECT 1 FROM twophase_tx WHERE txid = ?", (txid,)).fetchone():
                raise ValueError(f"txid {txid!r} already exists in the log")
            c.execute("INSERT INTO twophase_tx (txid, participants) VALUES (?, ?)",
                      (txid, "\n".join(participants)))

    def decide(self, txid: str, decision: Decision) -> None:
        decision = self._check(txid, decision)
        with self.database.transaction() as c:
            row = c.execute("SELECT decision FROM twophase_tx WHERE txid = ?",
                            (txid,)).fetchone()
            if row is None:
                raise LookupError(f"txid {txid!r} is not in the log")
            if row[0] is not None and row[0] != decision.value:
                raise ValueError(f"txid {txid!r} already decided {row[0]}, "
                                 f"got decision {decision.value!r}")
            c.execute("UPDATE twophase_tx SET decision = ? WHERE txid = ?",
                      (decision.value, txid))

    def decision(self, txid: str) -> Decision | None:
        row = self.database.connection().execute(
            "SELECT decision FROM twophase_tx WHERE txid = ?", (txid,)).fetchone()
        if row is None:
            raise LookupError(f"txid {txid!r} is not in the log")
        return None if row[0] is None else Decision(row[0])

    def finish(self, txid: str) -> None:
        with self.database.transaction() as c:
            if c.execute("UPDATE twophase_tx SET finished = 1 WHERE txid = ?",
                         (txid,)).rowcount == 0:
                raise LookupError(f"txid {txid!r} is not in the log")

    def pending(self) -> list[PendingTransaction]:
        rows = self.database.connection().execute(
            "SELECT txid, participants, decision FROM twophase_tx WHERE finished = 0 "
            "ORDER BY seq").fetchall()
        return [PendingTransaction(txid, tuple(p.split("\n")) if p else (),
                                   None if d is None else Decision(d))
                for txid, p, d in rows]


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class TwoPhaseEvent:
    """Something the coordinator did, at ``time`` (its clock), for ``txid``."""

    time: float
    txid: str


@dataclass(frozen=True, slots=True)
class VoteReceived(TwoPhaseEvent):
    """``participant`` voted (``vote`` is ``None`` for a timeout or an error)."""

    participant: str
    vote: bool | None


@dataclass(frozen=True, slots=True)
class DecisionLogged(TwoPhaseEvent):
    decision: Decision


@dataclass(frozen=True, slots=True)
class DecisionSent(TwoPhaseEvent):
    """``participant`` acknowledged ``decision`` (``acknowledged`` False: retries ran out)."""

    participant: str
    decision: Decision
    acknowledged: bool


@dataclass(frozen=True, slots=True)
class TransactionResult:
    """The decision and the participants that have not acknowledged it yet."""

    txid: str
    decision: Decision
    votes: Mapping[str, bool | None]
    unacknowledged: tuple[str, ...]

    @property
    def finished(self) -> bool:
        return not self.unacknowledged


# --------------------------------------------------------------------------- coordinator


class TwoPhaseCoordinator:
    """Runs two-phase commit over named participants, with a durable decision log.

    ``prepare_timeout``: seconds to wait for all votes (a missing vote counts as no).
    ``decision_retry``: retries each commit/abort send (default 5 attempts, exponential
    back-off from 50 ms). Listeners receive :class:`TwoPhaseEvent` s.
    """

    def __init__(self, participants: Mapping[str, Participant], log: DecisionLog, *,
                 prepare_timeout: float = 5.0, decision_retry: RetryPolicy | None = None,
                 clock: Clock = MONOTONIC) -> None:
        if not isinstance(participants, Mapping) or not participants:
            raise ValueError(f"participants must be a non-empty mapping, got {participants!r}")
        for name, participant in participants.items():
            _require_id("participant name", name)
            for method in ("prepare", "commit", "abort"):
                if not callable(getattr(participant, method, None)):
                    raise TypeError(f"participant {name!r} has no {method}() method: "
                                    f"{participant!r}")
        if not isinstance(log, DecisionLog):
            raise TypeError(f"log must be a DecisionLog, got {log!r}")
        self.participants = dict(participants)
        self.log = log
        self.prepare_timeout = require_positive("prepare_timeout", prepare_timeout)
        self.decision_retry = decision_retry or RetryPolicy(
            stop=StopAfterAttempts(5), backoff=ExponentialBackoff(0.05, cap=1.0))
        self.clock = clock
        self.listeners: Listeners[TwoPhaseEvent] = Listeners()

    def _emit(self, event: TwoPhaseEvent) -> None:
        self.listeners.emit(event)

    def _votes(self, txid: str) -> dict[str, bool | None]:
        # Daemon-like pool: a participant that hangs must not hang the coordinator.
        pool = ThreadPoolExecutor(max_workers=len(self.participants),
                                  thread_name_prefix=f"2pc-prepare-{txid}")
        futures: dict[str, Future[bool]] = {
            name: pool.submit(p.prepare, txid) for name, p in self.participants.items()}
        wait_futures(futures.values(), timeout=self.prepare_timeout)
        pool.shutdown(wait=False, cancel_futures=True)
        votes: dict[str, bool | None] = {}
        for name, future in futures.items():
            vote: bool | None = None
            if future.done() and not future.cancelled() and future.exception() is None:
                vote = future.result() is True
            votes[name] = vote
            self._emit(VoteReceived(self.clock.now(), txid, name, vote))
        return votes

    def execute(self, txid: str) -> TransactionResult:
        """Run both phases for ``txid``; return the decision and who has not acknowledged.

        Exceptions from the decision log propagate (the coordinator "crashed"); the log
        then tells :meth:`recover` what to do.
        """
        names = tuple(self.participants)
        self.log.begin(txid, names)
        votes = self._votes(txid)
        decision = Decision.COMMIT if all(v is True for v in votes.values()) else Decision.ABORT
        self.log.decide(txid, decision)  # durable before anyone hears it
        self._emit(DecisionLogged(self.clock.now(), txid, decision))
        return self._send(txid, decision, names, votes)

    def _send(self, txid: str, decision: Decision, names: tuple[str, ...],
              votes: Mapping[str, bool | None]) -> TransactionResult:
        missing = []
        for name in names:
            participant = self.participants.get(name)
            if participant is None:
                missing.append(name)
                continue
            send: Callable[[str], None] = (participant.commit if decision is Decision.COMMIT
                                           else participant.abort)
            try:
                self.decision_retry.call(send, txid)
            except Exception:
                missing.append(name)
                self._emit(DecisionSent(self.clock.now(), txid, name, decision, False))
                continue
            self._emit(DecisionSent(self.clock.now(), txid, name, decision, True))
        if not missing:
            self.log.finish(txid)
        return TransactionResult(txid, decision, dict(votes), tuple(missing))

    def recover(self) -> list[TransactionResult]:
        """Re-send the decision of every unfinished transaction (no decision -> abort)."""
        results = []
        for pending in self.log.pending():
            decision = pending.decision
            if decision is None:
                decision = Decision.ABORT
                self.log.decide(pending.txid, decision)
                self._emit(DecisionLogged(self.clock.now(), pending.txid, decision))
            results.append(self._send(pending.txid, decision, pending.participants, {}))
        return results

    def __repr__(self) -> str:
        return (f"TwoPhaseCoordinator({sorted(self.participants)!r}, log={self.log!r}, "
                f"prepare_timeout={self.prepare_timeout!r})")


# --------------------------------------------------------------------------- a participant


class LockingParticipant:
    """A key-value store taking part in 2PC: staged writes hold key locks until decided.

    :meth:`stage` locks a key for a transaction (another transaction staging the same key
    is refused). :meth:`prepare` votes yes if the transaction staged anything and
    ``vote`` allows; from then on the participant is *blocked*: it keeps the locks and
    cannot decide alone until :meth:`commit` or :meth:`abort` arrives.
    :meth:`wait_decided` lets a caller wait for that. Thread-safe.
    """

    def __init__(self, name: str, *, vote: bool = True, clock: Clock = MONOTONIC) -> None:
        self.name = _require_id("name", name)
        self.vote = vote
        self.clock = clock
        self.data: dict[str, object] = {}
        self._staged: dict[str, dict[str, object]] = {}
        self._locks: dict[str, str] = {}  # key -> txid
        self._prepared: dict[str, float] = {}  # txid -> time prepared
        self._decided: dict[str, Decision] = {}
        self.blocked_for: dict[str, float] = {}
        """Seconds each transaction spent prepared, waiting for the decision."""
        self._cond = threading.Condition()

    def stage(self, txid: str, key: str, value: object) -> None:
        _require_id("txid", txid)
        _require_id("key", key)
        with self._cond:
            holder = self._locks.get(key)
            if holder is not None and holder != txid:
                raise RuntimeError(f"key {key!r} is locked by transaction {holder!r}")
            if txid in self._decided or txid in self._prepared:
                raise RuntimeError(f"txid {txid!r} is already prepared or decided")
            self._locks[key] = txid
            self._staged.setdefault(txid, {})[key] = value

    def prepare(self, txid: str) -> bool:
        with self._cond:
            if txid in self._decided:
                return self._decided[txid] is Decision.COMMIT
            if not self.vote or txid not in self._staged:
                return False
            self._prepared.setdefault(txid, self.clock.now())
            return True

    def _finish(self, txid: str, decision: Decision) -> None:
        with self._cond:
            if txid in self._decided:
                return
            staged = self._staged.pop(txid, {})
            if decision is Decision.COMMIT:
                if txid not in self._prepared:
                    raise RuntimeError(f"commit of txid {txid!r} that was never prepared")
                self.data.update(staged)
            for key in staged:
                self._locks.pop(key, None)
            started = self._prepared.pop(txid, None)
            if started is not None:
                self.blocked_for[txid] = self.clock.now() - started
            self._decided[txid] = decision
            self._cond.notify_all()

    def commit(self, txid: str) -> None:
        self._finish(txid, Decision.COMMIT)

    def abort(self, txid: str) -> None:
        self._finish(txid, Decision.ABORT)

    def is_prepared(self, txid: str) -> bool:
        """Voted yes and still waiting for the decision."""
        with self._cond:
            return txid in self._prepared

    def locked_keys(self) -> dict[str, str]:
        """Keys locked now, and by which transaction."""
        with self._cond:
            return dict(self._locks)

    def decided(self, txid: str) -> Decision | None:
        with self._cond:
            return self._decided.get(txid)

    def wait_decided(self, txid: str, timeout: float) -> Decision | None:
        """Block until ``txid`` is decided here or ``timeout`` seconds pass (driver)."""
        require_positive("timeout", timeout)
        with self._cond:
            self._cond.wait_for(lambda: txid in self._decided, timeout)
            return self._decided.get(txid)

    def __repr__(self) -> str:
        return f"LockingParticipant({self.name!r}, locked={len(self._locks)})"
