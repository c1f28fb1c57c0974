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
* prepares run one after the other; here they run concurrently, each with its timeout,
  in daemon threads (a participant that never answers holds neither the coordinator
  nor the process's exit);
* nothing says who may decide; here the log takes one decision per transaction
  (compare-and-set), refuses to finish an undecided one, and recovery presumes abort
  only for transactions older than their coordinator's prepare timeout.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, Protocol

from patterns._timers import MAX_WAIT
from patterns._validation import (
    require_finite_non_negative,
    require_positive,
)
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
    "DEFAULT_RECOVERY_GRACE",
    "MAX_PREPARE_TIMEOUT",
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


MAX_PREPARE_TIMEOUT: Final = MAX_TTL
"""The longest ``prepare_timeout`` accepted, in seconds (one year, as a lock's lease)."""

DEFAULT_RECOVERY_GRACE: Final = 5.0
"""Seconds beyond ``prepare_timeout`` that recovery leaves an undecided transaction to
its coordinator (see :meth:`TwoPhaseCoordinator.recover`)."""


def _check_participants(participants: object) -> tuple[str, ...]:
    if isinstance(participants, str | bytes) or not isinstance(participants, tuple | list):
        raise TypeError(f"participants must be a tuple of names, got {participants!r}")
    names = tuple(participants)
    for name in names:
        _require_id("participant name", name)
        if "\n" in name:
            raise ValueError(f"participant names must not contain newlines, got {name!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"participants must have distinct names, got {names!r}")
    return names


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
    """A transaction begun and not yet acknowledged by every participant.

    ``began_at``: when it was begun, on the log's clock (``None`` if the log does not
    know, e.g. a log written before this field existed).
    """

    txid: str
    participants: tuple[str, ...]
    decision: Decision | None
    began_at: float | None = None


class DecisionLog(ABC):
    """Durable record of the coordinator's transactions and decisions. Thread-safe.

    The decision is written once (compare-and-set): a second, different decision is
    refused, so a recovering coordinator that presumes abort and a slow coordinator that
    decides commit cannot both win. A transaction is finished only once decided, and a
    finished transaction takes no other decision. ``clock`` stamps :attr:`began_at
    <PendingTransaction.began_at>`; it is the wall clock by default because the stamp is
    compared by another process (a recovering coordinator), possibly after a reboot.
    """

    clock: Clock = WALL_CLOCK

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
        """Every participant acknowledged the decision (an undecided one is an error)."""

    @abstractmethod
    def pending(self) -> list[PendingTransaction]:
        """Transactions begun and not finished, oldest first."""

    @staticmethod
    def _check(txid: object, decision: object) -> Decision:
        _require_id("txid", txid)
        if not isinstance(decision, Decision):
            raise TypeError(f"decision must be a Decision, got {decision!r}")
        return decision


def _undecided(txid: str) -> ValueError:
    return ValueError(f"txid {txid!r} cannot finish: no decision is logged yet")


@dataclass(slots=True)
class _Tx:
    participants: tuple[str, ...]
    began_at: float
    decision: Decision | None = None
    finished: bool = False


class InMemoryDecisionLog(DecisionLog):
    """A decision log in a dict: for simulations and fast tests."""

    def __init__(self, *, clock: Clock = WALL_CLOCK) -> None:
        self.clock = check_clock(clock)
        self._lock = threading.Lock()
        self._tx: dict[str, _Tx] = {}

    def _get(self, txid: str) -> _Tx:
        entry = self._tx.get(txid)
        if entry is None:
            raise LookupError(f"txid {txid!r} is not in the log")
        return entry

    def begin(self, txid: str, participants: tuple[str, ...]) -> None:
        _require_id("txid", txid)
        names = _check_participants(participants)
        with self._lock:
            if txid in self._tx:
                raise ValueError(f"txid {txid!r} already exists in the log")
            self._tx[txid] = _Tx(names, self.clock.now())

    def decide(self, txid: str, decision: Decision) -> None:
        decision = self._check(txid, decision)
        with self._lock:
            entry = self._get(txid)
            if entry.decision is not None and entry.decision is not decision:
                raise ValueError(f"txid {txid!r} already decided {entry.decision.value}, "
                                 f"got decision {decision.value!r}")
            entry.decision = decision

    def decision(self, txid: str) -> Decision | None:
        _require_id("txid", txid)
        with self._lock:
            return self._get(txid).decision

    def finish(self, txid: str) -> None:
        _require_id("txid", txid)
        with self._lock:
            entry = self._get(txid)
            if entry.decision is None:
                raise _undecided(txid)
            entry.finished = True

    def pending(self) -> list[PendingTransaction]:
        with self._lock:
            return [PendingTransaction(txid, entry.participants, entry.decision, entry.began_at)
                    for txid, entry in self._tx.items() if not entry.finished]

    def __repr__(self) -> str:
        return f"InMemoryDecisionLog({len(self._tx)} transactions)"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS twophase_tx (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    txid TEXT NOT NULL UNIQUE,
    participants TEXT NOT NULL,
    decision TEXT,
    finished INTEGER NOT NULL DEFAULT 0,
    began_at REAL
);
"""


class SQLiteDecisionLog(DecisionLog):
    """A decision log in SQLite: survives a coordinator crash.

    ``began_at`` is stored on ``clock``, the wall clock by default (see
    :class:`DecisionLog`).
    """

    def __init__(self, database: SQLiteDatabase | str | Path, *,
                 clock: Clock = WALL_CLOCK) -> None:
        if not isinstance(database, SQLiteDatabase | str | Path):
            raise TypeError(f"database must be a SQLiteDatabase or a path, got {database!r}")
        self.clock = check_persistent_clock(clock)
        self.database = (database if isinstance(database, SQLiteDatabase)
                         else SQLiteDatabase(database))
        self.database.executescript(_SCHEMA)
        with self.database.transaction() as c:  # logs made before began_at existed
            columns = {row[1] for row in c.execute("PRAGMA table_info(twophase_tx)")}
            if "began_at" not in columns:
                c.execute("ALTER TABLE twophase_tx ADD COLUMN began_at REAL")

    def begin(self, txid: str, participants: tuple[str, ...]) -> None:
        _require_id("txid", txid)
        names = _check_participants(participants)
        with self.database.transaction() as c:
            if c.execute("SELECT 1 FROM twophase_tx WHERE txid = ?", (txid,)).fetchone():
                raise ValueError(f"txid {txid!r} already exists in the log")
            c.execute("INSERT INTO twophase_tx (txid, participants, began_at) VALUES (?, ?, ?)",
                      (txid, "\n".join(names), self.clock.now()))

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
        _require_id("txid", txid)
        row = self.database.connection().execute(
            "SELECT decision FROM twophase_tx WHERE txid = ?", (txid,)).fetchone()
        if row is None:
            raise LookupError(f"txid {txid!r} is not in the log")
        return None if row[0] is None else Decision(row[0])

    def finish(self, txid: str) -> None:
        _require_id("txid", txid)
        with self.database.transaction() as c:
            row = c.execute("SELECT decision FROM twophase_tx WHERE txid = ?",
                            (txid,)).fetchone()
            if row is None:
                raise LookupError(f"txid {txid!r} is not in the log")
            if row[0] is None:
                raise _undecided(txid)
            c.execute("UPDATE twophase_tx SET finished = 1 WHERE txid = ?", (txid,))

    def pending(self) -> list[PendingTransaction]:
        rows = self.database.connection().execute(
            "SELECT txid, participants, decision, began_at FROM twophase_tx "
            "WHERE finished = 0 ORDER BY seq").fetchall()
        return [PendingTransaction(txid, tuple(p.split("\n")) if p else (),
                                   None if d is None else Decision(d), began)
                for txid, p, d, began in rows]

    def __repr__(self) -> str:
        return f"SQLiteDecisionLog({self.database!r})"


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


def _vote(prepare: Callable[[str], bool], txid: str, name: str) -> Future[bool]:
    """Run ``prepare(txid)`` in a daemon thread: a participant that never answers must
    neither block the coordinator nor keep the process from exiting."""
    future: Future[bool] = Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(prepare(txid))
        except BaseException as error:  # reported as a missing vote
            future.set_exception(error)

    threading.Thread(target=work, name=f"2pc-prepare-{name}-{txid}", daemon=True).start()
    return future


def _vote_inline(prepare: Callable[[str], bool], txid: str, _name: str) -> Future[bool]:
    """Run ``prepare(txid)`` in the caller's thread (``prepare_in_threads=False``)."""
    future: Future[bool] = Future()
    future.set_running_or_notify_cancel()
    try:
        future.set_result(prepare(txid))
    except Exception as error:  # reported as a missing vote, as from a thread
        future.set_exception(error)
    return future


class TwoPhaseCoordinator:
    """Runs two-phase commit over named participants, with a durable decision log.

    ``prepare_timeout``: seconds to wait for all votes (a missing vote counts as no;
    finite, at most :data:`MAX_PREPARE_TIMEOUT`). Each prepare runs in its own daemon
    thread, so a participant that never returns holds neither the coordinator nor the
    process. ``decision_retry``: retries each commit/abort send (default 5 attempts,
    exponential back-off from 50 ms). Listeners receive :class:`TwoPhaseEvent` s.

    ``prepare_in_threads=False`` runs the prepares one after another in the caller's
    thread instead: no thread per vote, for participants that answer at once (in-process
    ones, or a simulation, where the threads would cost more than the votes). The
    timeout then cannot cut a prepare short; a prepare that raises still counts as no.
    """

    def __init__(self, participants: Mapping[str, Participant], log: DecisionLog, *,
                 prepare_timeout: float = 5.0, decision_retry: RetryPolicy | None = None,
                 clock: Clock = MONOTONIC, prepare_in_threads: bool = True) -> None:
        if not isinstance(participants, Mapping) or not participants:
            raise ValueError(f"participants must be a non-empty mapping, got {participants!r}")
        _check_participants(tuple(participants))
        for name, participant in participants.items():
            for method in ("prepare", "commit", "abort"):
                if not callable(getattr(participant, method, None)):
                    raise TypeError(f"participant {name!r} has no {method}() method: "
                                    f"{participant!r}")
        if not isinstance(log, DecisionLog):
            raise TypeError(f"log must be a DecisionLog, got {log!r}")
        if decision_retry is not None and not isinstance(decision_retry, RetryPolicy):
            raise TypeError(f"decision_retry must be a RetryPolicy or None, "
                            f"got {decision_retry!r}")
        check_ttl(prepare_timeout, "prepare_timeout")
        if not isinstance(prepare_in_threads, bool):
            raise TypeError(f"prepare_in_threads must be a bool, got {prepare_in_threads!r}")
        self.participants = dict(participants)
        self._vote = _vote if prepare_in_threads else _vote_inline
        self.log = log
        self.prepare_timeout = prepare_timeout
        self.decision_retry = decision_retry or RetryPolicy(
            stop=StopAfterAttempts(5), backoff=ExponentialBackoff(0.05, cap=1.0))
        self.clock = check_clock(clock)
        self.listeners: Listeners[TwoPhaseEvent] = Listeners()

    def _emit(self, event: TwoPhaseEvent) -> None:
        self.listeners.emit(event)

    def _votes(self, txid: str) -> dict[str, bool | None]:
        futures: dict[str, Future[bool]] = {
            name: self._vote(p.prepare, txid, name) for name, p in self.participants.items()}
        wait_futures(futures.values(), timeout=self.prepare_timeout)
        votes: dict[str, bool | None] = {}
        for name, future in futures.items():
            vote: bool | None = None
            if future.done() and future.exception() is None:
                vote = future.result() is True
            votes[name] = vote
            self._emit(VoteReceived(self.clock.now(), txid, name, vote))
        return votes

    def execute(self, txid: str) -> TransactionResult:
        """Run both phases for ``txid``; return the decision and who has not acknowledged.

        Exceptions from the decision log propagate (the coordinator "crashed"); the log
        then tells :meth:`recover` what to do. If a recovery presumed abort meanwhile
        (this coordinator was too slow), the log refuses a commit decision with
        :class:`ValueError`, and the participants get the abort.
        """
        _require_id("txid", txid)
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

    def recover(self, *, min_age: float | None = None) -> list[TransactionResult]:
        """Re-send the decision of every unfinished transaction (no decision -> abort).

        An undecided transaction begun less than ``min_age`` seconds ago (on the log's
        clock; default ``prepare_timeout`` + :data:`DEFAULT_RECOVERY_GRACE`) is left
        alone: its coordinator may still be collecting votes. Pass ``min_age=0`` to
        presume abort for all of them (the coordinators are known to be down).
        """
        if min_age is None:
            min_age = self.prepare_timeout + DEFAULT_RECOVERY_GRACE
        else:
            require_finite_non_negative("min_age", min_age)
        results = []
        for pending in self.log.pending():
            decision = pending.decision
            if decision is None:
                if (min_age > 0 and pending.began_at is not None
                        and self.log.clock.now() < pending.began_at + min_age):
                    continue
                decision = Decision.ABORT
                try:
                    self.log.decide(pending.txid, decision)
                except ValueError:  # its coordinator decided meanwhile: send that
                    decision = self.log.decision(pending.txid) or Decision.ABORT
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
        if not isinstance(vote, bool):
            raise TypeError(f"vote must be a bool, got {vote!r} ({type(vote).__name__})")
        self.vote = vote
        self.clock = check_clock(clock)
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
        _require_id("txid", txid)
        with self._cond:
            if txid in self._decided:
                return self._decided[txid] is Decision.COMMIT
            if not self.vote or txid not in self._staged:
                return False
            self._prepared.setdefault(txid, self.clock.now())
            return True

    def _finish(self, txid: str, decision: Decision) -> None:
        _require_id("txid", txid)
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
        _require_id("txid", txid)
        with self._cond:
            return txid in self._prepared

    def locked_keys(self) -> dict[str, str]:
        """Keys locked now, and by which transaction."""
        with self._cond:
            return dict(self._locks)

    def decided(self, txid: str) -> Decision | None:
        _require_id("txid", txid)
        with self._cond:
            return self._decided.get(txid)

    def wait_decided(self, txid: str, timeout: float) -> Decision | None:
        """Block until ``txid`` is decided here or ``timeout`` seconds pass (driver).

        ``timeout`` may be ``math.inf`` (wait for ever) or any large number: the wait
        goes in chunks that ``threading`` accepts.
        """
        _require_id("txid", txid)
        require_positive("timeout", timeout)
        deadline = time.monotonic() + timeout
        with self._cond:
            while txid not in self._decided:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, MAX_WAIT))
            return self._decided.get(txid)

    def __repr__(self) -> str:
        return f"LockingParticipant({self.name!r}, locked={len(self._locks)})"
