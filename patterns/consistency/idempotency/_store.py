"""Idempotency stores that *reserve* a key before the work (guide section 5.5).

The guide's handler checks the store (``get_response``), runs the handler, then records
the response (``record_request``): check-then-act. Two concurrent duplicates both see
"nothing recorded" and both run the effect. Here the first step is a **reservation**, one
atomic write that only one caller can win: the winner runs the effect, the others find
the key ``in_progress`` (and wait, or are told so) or ``completed`` (and get the stored
response).

A reservation is a *lease*: if its owner crashes before it completes, the lease runs out
and the next duplicate takes the reservation over (a new owner token), instead of the key
being stuck forever. A completion carries the owner's token and is refused once the lease
has passed to someone else (:class:`LeaseLostError`).

When the effect ran but its response cannot be stored (not encodable, too big), the
handler records that instead (:meth:`IdempotencyStore.complete_unrecorded`, state
``completed_unrecorded``): duplicates get :class:`ResponseNotRecordedError`, never a
second run of the effect.

Every store passes the same contract test suite: :class:`InMemoryIdempotencyStore`
(thread-safe, for simulations and tests), :class:`SQLiteIdempotencyStore` (threads and
processes sharing one file), and ``RedisIdempotencyStore`` in
:mod:`patterns.consistency.idempotency.redis_store`.
"""

from __future__ import annotations

import math
import secrets
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from patterns._errors import Rebuildable
from patterns._validation import require_clock, require_finite_positive
from patterns.clock import MONOTONIC, WALL_CLOCK, Clock, MonotonicClock, WallClock
from patterns.storage.sqlite import SQLiteDatabase

__all__ = [
    "MAX_DURATION",
    "IdempotencyError",
    "IdempotencyKeyReusedError",
    "IdempotencyRecord",
    "IdempotencyStore",
    "InMemoryIdempotencyStore",
    "LeaseLostError",
    "RecordState",
    "RequestFailedError",
    "Reservation",
    "ResponseNotRecordedError",
    "SQLiteIdempotencyStore",
    "check_duration",
    "check_key",
]

MAX_KEY_LENGTH = 512
MAX_DURATION = 1e9
"""The longest lease, TTL or poll interval, in seconds (about 31 years). Longer ones are
refused where they are given: Redis refuses an expiry beyond its range, and
``time.sleep`` and ``threading`` waits overflow above ``threading.TIMEOUT_MAX``."""
MAX_ERROR_TEXT = 4000
"""Recorded error texts are cut to this many characters."""


class IdempotencyError(Rebuildable, Exception):
    """Base class of the idempotency errors."""


class IdempotencyKeyReusedError(IdempotencyError, ValueError):
    """The key was already used for a request with a different payload."""

    def __init__(self, key: str, stored: str, given: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was first used for a different request (fingerprint "
            f"{stored[:12]}..., this one {given[:12]}...): a key names one operation; "
            "use a new key for a new request")
        self.key = key
        self.stored_fingerprint = stored
        self.given_fingerprint = given


class LeaseLostError(IdempotencyError):
    """The reservation's lease ran out and another caller took the key over."""

    def __init__(self, key: str, token: str) -> None:
        super().__init__(
            f"the reservation of idempotency key {key!r} (token {token[:8]}...) is no "
            "longer held: its lease ran out and another caller took it over, or it "
            "expired (the effect outlived the lease; choose a longer lease)")
        self.key = key
        self.token = token


class RequestFailedError(IdempotencyError):
    """The first request with this key failed, and the failure was recorded as final."""

    def __init__(self, key: str, error: str) -> None:
        super().__init__(f"the request with idempotency key {key!r} failed: {error}")
        self.key = key
        self.error = error


class ResponseNotRecordedError(IdempotencyError):
    """The effect of this key RAN, but its response could not be recorded (guide 5.5).

    Raised to the first caller (``response`` holds what the effect returned) and to
    every duplicate until the record expires (``response`` is ``None`` there): the
    effect is never run a second time for the key. ``reason`` says why the response
    could not be stored (not encodable, refused by the store).
    """

    def __init__(self, key: str, reason: str, response: object = None) -> None:
        super().__init__(
            f"the request with idempotency key {key!r} ran, but its response could not "
            f"be recorded ({reason}); it will not run again for this key")
        self.key = key
        self.reason = reason
        self.response = response


class RecordState(StrEnum):
    IN_PROGRESS = "in_progress"
    """Reserved; the owner is running the effect."""
    COMPLETED = "completed"
    """The effect ran; ``response`` holds what to give every duplicate."""
    FAILED = "failed"
    """The effect failed in a way recorded as final; ``response`` holds the error."""
    COMPLETED_UNRECORDED = "completed_unrecorded"
    """The effect ran, but its response could not be stored; ``response`` holds why."""


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    key: str
    state: RecordState
    fingerprint: str
    token: str
    response: str | None
    expires_at: float | None
    """When the record (or, in progress, its lease) ends on the store's clock;
    ``None`` where the store does not say (Redis keeps expiry on the server)."""


@dataclass(frozen=True, slots=True)
class Reservation:
    """The answer to :meth:`IdempotencyStore.reserve`."""

    acquired: bool
    """True: the caller owns the key and must run the effect, then complete or fail."""
    token: str | None
    """The owner token when acquired."""
    record: IdempotencyRecord | None
    """When not acquired: the record that is there (in progress, completed or failed)."""
    taken_over: bool = False
    """Acquired from a previous owner whose lease ran out."""


def _short(text: str) -> str:
    return repr(text) if len(text) <= 40 else f"{text[:20]!r}... ({len(text)} characters)"


def _check_text(name: str, value: object) -> str:
    """``value`` is a str that every store can keep: encodable as UTF-8 (no lone
    surrogates, which SQLite and Redis refuse)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {value!r} ({type(value).__name__})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"{name} must be encodable as UTF-8 (a lone surrogate at "
                         f"{error.start}), got {_short(value)}") from None
    return value


def storable_text(text: str) -> str:
    """``text`` with lone surrogates escaped (``\\udce9``) and cut to MAX_ERROR_TEXT."""
    if len(text) > MAX_ERROR_TEXT:
        text = text[:MAX_ERROR_TEXT - 3] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def check_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, got {key!r} ({type(key).__name__})")
    if not key or key.isspace():
        raise ValueError(f"key must be a non-empty string, got {key!r}")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"key must be at most {MAX_KEY_LENGTH} characters, got "
                         f"{len(key)} characters ({key[:20]!r}...)")
    return _check_text("key", key)


def check_duration(name: str, value: float) -> float:
    """A lease, TTL or interval: finite, > 0 and at most :data:`MAX_DURATION`."""
    require_finite_positive(name, value)
    if value > MAX_DURATION:
        raise ValueError(f"{name} must be at most {MAX_DURATION:g} s, got {value!r}")
    return value


def check_clock(clock: object) -> Clock:
    return require_clock("clock", clock)  # type: ignore[no-any-return]


def new_token() -> str:
    return secrets.token_hex(16)


class IdempotencyStore(ABC):
    """Where keys are reserved and responses kept (guide section 5.5, ``IdempotencyStore``)."""

    @abstractmethod
    def reserve(self, key: str, fingerprint: str, *, lease: float) -> Reservation:
        """Atomically: take ``key`` if it is free (absent, expired, or its lease ran out),
        else return the record that holds it.

        Raises :class:`IdempotencyKeyReusedError` if a live record of ``key`` has another
        fingerprint.
        """

    @abstractmethod
    def complete(self, key: str, token: str, response: str, *, ttl: float) -> None:
        """Store ``response`` for ``key`` (kept ``ttl`` seconds), if ``token`` still owns it."""

    @abstractmethod
    def fail(self, key: str, token: str, error: str, *, ttl: float) -> None:
        """Record a final failure for ``key`` (kept ``ttl`` seconds), if ``token`` owns it."""

    def complete_unrecorded(self, key: str, token: str, reason: str, *, ttl: float) -> None:
        """Record that the effect of ``key`` ran but its response cannot be stored
        (kept ``ttl`` seconds), if ``token`` owns it; ``reason`` says why.

        Duplicates then get :class:`ResponseNotRecordedError` and never run the effect
        again. The built-in stores keep it as ``completed_unrecorded``; this default
        (for stores written before it existed) records it as a final failure, so that
        duplicates get :class:`RequestFailedError` naming the reason: never a second
        run either.
        """
        _validate_finish(key, token, reason, ttl, "reason")
        self.fail(key, token, f"{ResponseNotRecordedError.__name__}: {reason}", ttl=ttl)

    @abstractmethod
    def release(self, key: str, token: str) -> bool:
        """Give the reservation up (the effect did not happen; a retry may run it).

        Returns whether ``token`` still owned it.
        """

    @abstractmethod
    def get(self, key: str) -> IdempotencyRecord | None:
        """The live record of ``key``, or ``None``."""

    def purge_expired(self) -> int:
        """Delete expired records; return how many (stores that expire keys by
        themselves return 0)."""
        return 0


def _validate_reserve(key: str, fingerprint: str, lease: float) -> None:
    check_key(key)
    _check_text("fingerprint", fingerprint)
    check_duration("lease", lease)


def _validate_finish(key: str, token: str, response: str, ttl: float, what: str) -> None:
    check_key(key)
    _check_text("token", token)
    _check_text(what, response)
    check_duration("ttl", ttl)


# ================================================================ in memory


class InMemoryIdempotencyStore(IdempotencyStore):
    """A thread-safe store in one process's memory, on a :class:`Clock`.

    For simulations (pass a clock reading ``env.now``) and fast tests.
    """

    def __init__(self, *, clock: Clock = MONOTONIC) -> None:
        self.clock = check_clock(clock)
        self._lock = threading.Lock()
        self._records: dict[str, IdempotencyRecord] = {}

    def _live(self, key: str, now: float) -> IdempotencyRecord | None:
        record = self._records.get(key)
        if record is not None and record.expires_at is not None and now >= record.expires_at:
            del self._records[key]
            return None
        return record

    def reserve(self, key: str, fingerprint: str, *, lease: float) -> Reservation:
        _validate_reserve(key, fingerprint, lease)
        with self._lock:
            now = self.clock.now()
            previous = self._records.get(key)
            record = self._live(key, now)
            if record is not None and record.fingerprint != fingerprint:
                raise IdempotencyKeyReusedError(key, record.fingerprint, fingerprint)
            if record is not None:
                return Reservation(False, None, record)
            token = new_token()
            taken_over = previous is not None and previous.state is RecordState.IN_PROGRESS
            self._records[key] = IdempotencyRecord(
                key, RecordState.IN_PROGRESS, fingerprint, token, None, now + lease)
            return Reservation(True, token, None, taken_over)

    def _finish(self, key: str, token: str, state: RecordState, text: str,
                ttl: float) -> None:
        with self._lock:
            now = self.clock.now()
            record = self._live(key, now)
            if record is None or record.token != token or \
                    record.state is not RecordState.IN_PROGRESS:
                raise LeaseLostError(key, token)
            self._records[key] = IdempotencyRecord(
                key, state, record.fingerprint, token, text, now + ttl)

    def complete(self, key: str, token: str, response: str, *, ttl: float) -> None:
        _validate_finish(key, token, response, ttl, "response")
        self._finish(key, token, RecordState.COMPLETED, response, ttl)

    def fail(self, key: str, token: str, error: str, *, ttl: float) -> None:
        _validate_finish(key, token, error, ttl, "error")
        self._finish(key, token, RecordState.FAILED, error, ttl)

    def complete_unrecorded(self, key: str, token: str, reason: str, *, ttl: float) -> None:
        _validate_finish(key, token, reason, ttl, "reason")
        self._finish(key, token, RecordState.COMPLETED_UNRECORDED, reason, ttl)

    def release(self, key: str, token: str) -> bool:
        check_key(key)
        _check_text("token", token)
        with self._lock:
            record = self._live(key, self.clock.now())
            if record is None or record.token != token or \
                    record.state is not RecordState.IN_PROGRESS:
                return False
            del self._records[key]
            return True

    def get(self, key: str) -> IdempotencyRecord | None:
        check_key(key)
        with self._lock:
            return self._live(key, self.clock.now())

    def purge_expired(self) -> int:
        with self._lock:
            now = self.clock.now()
            expired = [k for k, r in self._records.items()
                       if r.expires_at is not None and now >= r.expires_at]
            for key in expired:
                del self._records[key]
            return len(expired)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def __repr__(self) -> str:
        return f"InMemoryIdempotencyStore({len(self)} records)"


# ================================================================ SQLite


SCHEMA = """
CREATE TABLE IF NOT EXISTS "{table}" (
    key         TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    token       TEXT NOT NULL,
    response    TEXT,
    expires_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS "{table}_expires" ON "{table}" (expires_at);
"""

_EPOCH_2001 = 1e9
"""No wall-clock deadline is this small (2001-09-09); the previous version's monotonic
deadlines (seconds since boot) all are."""


class SQLiteIdempotencyStore(IdempotencyStore):
    """Keys in an SQLite table, shared by threads and processes (guide section 5.5).

    The reservation is an ``INSERT`` inside ``BEGIN IMMEDIATE``: the primary key refuses
    a duplicate, and the immediate transaction serialises it with the takeover of an
    expired row, so exactly one caller wins each key.

    Time. Deadlines (lease and record expiries) are written to the file and compared by
    every process that opens it, also after a reboot, so ``clock`` must mean the same
    thing in all of them: the default is the wall clock (:data:`~patterns.clock.WALL_CLOCK`,
    seconds since the Unix epoch). :data:`~patterns.clock.MONOTONIC` is refused: it counts
    from boot, so after a reboot a dead owner's reservation would stay "in progress" for
    about the old uptime. Tests and simulations may pass any other shared clock. A wall
    clock can step (NTP, an operator): keep leases long compared to such steps. Deadlines
    written by an earlier version on the monotonic clock are carried over to the wall
    clock when a store on the wall clock opens the file (as if the machine had not been
    rebooted since: a reboot in between only lengthens them, never shortens them).

    When the effect is itself a write to the same database, :meth:`execute_once` runs it
    and records the response in one transaction: then there is no window at all in
    which the effect happened but the response was not recorded.
    """

    def __init__(self, db: SQLiteDatabase, *, table: str = "idempotency_keys",
                 clock: Clock = WALL_CLOCK) -> None:
        if not isinstance(db, SQLiteDatabase):
            raise TypeError(f"db must be a SQLiteDatabase, got {db!r}")
        if not isinstance(table, str) or not table.isidentifier() or not table.isascii():
            raise ValueError(f"table must be an ASCII identifier, got {table!r}")
        check_clock(clock)
        if isinstance(clock, MonotonicClock):
            raise ValueError(
                f"clock must be a wall clock (WALL_CLOCK) or another clock that every "
                f"process reads alike, also after a reboot, got {clock!r}: a monotonic "
                f"clock counts from boot, so the file's deadlines would outlive a reboot")
        self.db = db
        self.table = table
        self._quoted = f'"{table}"'
        self.clock = clock
        db.executescript(SCHEMA.format(table=table))
        if isinstance(clock, WallClock):
            self._carry_over_monotonic_deadlines()

    def _carry_over_monotonic_deadlines(self) -> None:
        with self.db.transaction() as connection:
            # Both readings are taken here, where the deadlines are moved: the offset
            # between the two clocks, as of now.
            offset = self.clock.now() - MONOTONIC.now()
            connection.execute(
                f"UPDATE {self._quoted} SET expires_at = expires_at + ? "
                "WHERE expires_at < ?", (offset, _EPOCH_2001))

    @staticmethod
    def _record(row: tuple[str, str, str, str, str | None, float]) -> IdempotencyRecord:
        key, state, fp, token, response, expires_at = row
        return IdempotencyRecord(key, RecordState(state), fp, token, response, expires_at)

    def _now(self) -> float:
        now = self.clock.now()
        if not math.isfinite(now):
            raise ValueError(f"clock must read a finite time, got {now!r} from {self.clock!r}")
        return now

    def _select(self, connection: sqlite3.Connection, key: str,
                now: float) -> IdempotencyRecord | None:
        row = connection.execute(
            f"SELECT key, state, fingerprint, token, response, expires_at FROM {self._quoted} "
            "WHERE key = ? AND expires_at > ?", (key, now)).fetchone()
        return None if row is None else self._record(row)

    def _reserve_in(self, connection: sqlite3.Connection, key: str, fingerprint: str,
                    lease: float) -> Reservation:
        now = self._now()
        token = new_token()
        try:
            connection.execute(
                f"INSERT INTO {self._quoted} VALUES (?, ?, ?, ?, NULL, ?)",
                (key, RecordState.IN_PROGRESS.value, fingerprint, token, now + lease))
            return Reservation(True, token, None)
        except sqlite3.IntegrityError:
            pass  # the key is there: live, or expired / lease run out
        row = connection.execute(
            f"SELECT key, state, fingerprint, token, response, expires_at FROM {self._quoted} "
            "WHERE key = ?", (key,)).fetchone()
        record = self._record(row)
        if record.expires_at is not None and record.expires_at > now:
            if record.fingerprint != fingerprint:
                raise IdempotencyKeyReusedError(key, record.fingerprint, fingerprint)
            return Reservation(False, None, record)
        connection.execute(
            f"UPDATE {self._quoted} SET state = ?, fingerprint = ?, token = ?, "
            "response = NULL, expires_at = ? WHERE key = ?",
            (RecordState.IN_PROGRESS.value, fingerprint, token, now + lease, key))
        return Reservation(True, token, None,
                           taken_over=record.state is RecordState.IN_PROGRESS)

    def reserve(self, key: str, fingerprint: str, *, lease: float) -> Reservation:
        _validate_reserve(key, fingerprint, lease)
        with self.db.transaction() as connection:
            return self._reserve_in(connection, key, fingerprint, lease)

    def _finish(self, key: str, token: str, state: RecordState, text: str,
                ttl: float) -> None:
        with self.db.transaction() as connection:
            now = self._now()
            cursor = connection.execute(
                f"UPDATE {self._quoted} SET state = ?, response = ?, expires_at = ? "
                "WHERE key = ? AND token = ? AND state = ? AND expires_at > ?",
                (state.value, text, now + ttl, key, token, RecordState.IN_PROGRESS.value, now))
            if cursor.rowcount != 1:
                raise LeaseLostError(key, token)

    def complete(self, key: str, token: str, response: str, *, ttl: float) -> None:
        _validate_finish(key, token, response, ttl, "response")
        self._finish(key, token, RecordState.COMPLETED, response, ttl)

    def fail(self, key: str, token: str, error: str, *, ttl: float) -> None:
        _validate_finish(key, token, error, ttl, "error")
        self._finish(key, token, RecordState.FAILED, error, ttl)

    def complete_unrecorded(self, key: str, token: str, reason: str, *, ttl: float) -> None:
        _validate_finish(key, token, reason, ttl, "reason")
        self._finish(key, token, RecordState.COMPLETED_UNRECORDED, reason, ttl)

    def release(self, key: str, token: str) -> bool:
        check_key(key)
        _check_text("token", token)
        with self.db.transaction() as connection:
            cursor = connection.execute(
                f"DELETE FROM {self._quoted} WHERE key = ? AND token = ? AND state = ? "
                "AND expires_at > ?",
                (key, token, RecordState.IN_PROGRESS.value, self._now()))
            return cursor.rowcount == 1

    def get(self, key: str) -> IdempotencyRecord | None:
        check_key(key)
        return self._select(self.db.connection(), key, self._now())

    def purge_expired(self) -> int:
        with self.db.transaction() as connection:
            cursor = connection.execute(
                f"DELETE FROM {self._quoted} WHERE expires_at <= ?", (self._now(),))
            return cursor.rowcount

    def execute_once(
        self,
        key: str,
        fingerprint: str,
        effect: Callable[[sqlite3.Connection], str],
        *,
        ttl: float,
    ) -> tuple[str, bool]:
        """Run ``effect(connection)`` and record its response in ONE transaction.

        For an effect that writes to this same database: the reservation, the effect's
        writes and the recorded response commit together or not at all, so a crash can
        never leave "effect done, response not recorded". ``effect`` returns the
        response text (a str encodable as UTF-8; anything else rolls the effect back
        with a :class:`TypeError` or :class:`ValueError`). Returns ``(response,
        executed)``; ``executed`` is False when a previous call's response is replayed.
        A concurrent duplicate waits on SQLite's write lock (``busy_timeout``) and then
        replays. If ``effect`` raises, everything rolls back and the key stays free.
        A key recorded as failed, or as run without a recorded response, by the
        two-step API raises :class:`RequestFailedError` or
        :class:`ResponseNotRecordedError`.
        """
        check_key(key)
        _check_text("fingerprint", fingerprint)
        check_duration("ttl", ttl)
        if not callable(effect):
            raise TypeError(f"effect must be callable, got {effect!r}")
        with self.db.transaction() as connection:
            reservation = self._reserve_in(connection, key, fingerprint, ttl)
            if not reservation.acquired:
                assert reservation.record is not None
                record = reservation.record
                if record.state is RecordState.IN_PROGRESS:
                    # A two-step caller holds it (mixing both styles on one key).
                    raise LeaseLostError(key, record.token)
                if record.state is RecordState.FAILED:
                    raise RequestFailedError(key, record.response or "")
                if record.state is RecordState.COMPLETED_UNRECORDED:
                    raise ResponseNotRecordedError(key, record.response or "")
                assert record.response is not None
                return record.response, False
            response = _check_text("effect's response", effect(connection))
            now = self._now()
            connection.execute(
                f"UPDATE {self._quoted} SET state = ?, response = ?, expires_at = ? "
                "WHERE key = ?", (RecordState.COMPLETED.value, response, now + ttl, key))
            return response, True

    def __repr__(self) -> str:
        return f"SQLiteIdempotencyStore({self.db!r}, table={self.table!r})"
