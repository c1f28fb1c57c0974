"""One contract for every idempotency store: in memory, SQLite and Redis (guide 5.5).

Each store runs the same tests. Time moves through ``advance``: a ManualClock for the
in-memory and SQLite stores, real (short) sleeps for Redis, whose expiry is the server's.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from patterns.clock import ManualClock
from patterns.consistency.idempotency import (
    IdempotencyKeyReusedError,
    IdempotencyStore,
    InMemoryIdempotencyStore,
    LeaseLostError,
    RecordState,
    SQLiteIdempotencyStore,
)
from patterns.storage.sqlite import SQLiteDatabase

LEASE = 0.2  # seconds; short, so that Redis tests can wait it out
TTL = 0.4
_prefixes = itertools.count()


@dataclass
class Subject:
    store: IdempotencyStore
    advance: Callable[[float], object]


def _redis_subject(port: int) -> Iterator[Subject]:
    if os.environ.get("CI", "").strip().lower() in ("", "0", "false", "no"):
        redis = pytest.importorskip("redis")
    else:
        import redis
    from patterns.consistency.idempotency.redis_store import RedisIdempotencyStore

    client = redis.Redis(host="127.0.0.1", port=port)
    store = RedisIdempotencyStore(client, prefix=f"t{next(_prefixes)}:")
    # Redis expires keys on its own clock: wait a little past the deadline.
    yield Subject(store, lambda seconds: time.sleep(seconds + 0.03))
    client.close()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    if request.param == "redis":
        port = request.getfixturevalue("redis_server")
        yield from _redis_subject(port)
        return
    clock = ManualClock()
    if request.param == "memory":
        yield Subject(InMemoryIdempotencyStore(clock=clock), clock.advance)
        return
    with SQLiteDatabase(tmp_path / "idem.sqlite") as db:
        yield Subject(SQLiteIdempotencyStore(db, clock=clock), clock.advance)


def test_the_first_reservation_wins_the_second_sees_it_in_progress(subject: Subject) -> None:
    store = subject.store
    first = store.reserve("k", "fp", lease=LEASE)
    assert first.acquired
    assert first.token
    assert not first.taken_over
    second = store.reserve("k", "fp", lease=LEASE)
    assert not second.acquired
    assert second.token is None
    assert second.record is not None
    assert second.record.state is RecordState.IN_PROGRESS
    assert second.record.token == first.token


def test_a_completed_key_returns_the_stored_response(subject: Subject) -> None:
    store = subject.store
    reservation = store.reserve("k", "fp", lease=LEASE)
    assert reservation.token is not None
    store.complete("k", reservation.token, '{"charge":"ch_1"}', ttl=TTL)
    again = store.reserve("k", "fp", lease=LEASE)
    assert not again.acquired
    assert again.record is not None
    assert again.record.state is RecordState.COMPLETED
    assert again.record.response == '{"charge":"ch_1"}'
    record = store.get("k")
    assert record is not None
    assert record.response == '{"charge":"ch_1"}'


def test_a_failure_is_recorded_and_a_release_frees_the_key(subject: Subject) -> None:
    store = subject.store
    one = store.reserve("a", "fp", lease=LEASE)
    assert one.token is not None
    store.fail("a", one.token, "CardDeclined: no funds", ttl=TTL)
    record = store.get("a")
    assert record is not None
    assert record.state is RecordState.FAILED
    assert record.response == "CardDeclined: no funds"
    two = store.reserve("b", "fp", lease=LEASE)
    assert two.token is not None
    assert store.release("b", two.token) is True
    assert store.get("b") is None
    assert store.reserve("b", "fp", lease=LEASE).acquired
    assert store.release("b", "not-the-owner") is False


def test_the_same_key_with_another_payload_is_refused(subject: Subject) -> None:
    store = subject.store
    reservation = store.reserve("k", "fp-1", lease=LEASE)
    with pytest.raises(IdempotencyKeyReusedError, match="'k'"):
        store.reserve("k", "fp-2", lease=LEASE)
    assert reservation.token is not None
    store.complete("k", reservation.token, "r", ttl=TTL)
    with pytest.raises(IdempotencyKeyReusedError, match="different request"):
        store.reserve("k", "fp-2", lease=LEASE)


def test_a_crashed_owners_lease_runs_out_and_is_taken_over(subject: Subject) -> None:
    store = subject.store
    crashed = store.reserve("k", "fp", lease=LEASE)
    assert crashed.token is not None
    subject.advance(LEASE)
    heir = store.reserve("k", "fp", lease=LEASE)
    assert heir.acquired
    assert heir.token != crashed.token
    # The late owner can no longer complete, and cannot overwrite the heir's work.
    with pytest.raises(LeaseLostError, match="no longer held"):
        store.complete("k", crashed.token, "stale", ttl=TTL)
    assert store.release("k", crashed.token) is False
    assert heir.token is not None
    store.complete("k", heir.token, "fresh", ttl=TTL)
    record = store.get("k")
    assert record is not None
    assert record.response == "fresh"


def test_completed_records_expire_after_their_ttl(subject: Subject) -> None:
    store = subject.store
    reservation = store.reserve("k", "fp", lease=LEASE)
    assert reservation.token is not None
    store.complete("k", reservation.token, "r", ttl=TTL)
    subject.advance(TTL / 2)
    assert store.get("k") is not None
    subject.advance(TTL / 2)
    assert store.get("k") is None
    store.purge_expired()
    # Expired: the key is free again, even for another payload.
    assert store.reserve("k", "other", lease=LEASE).acquired


def test_only_the_owner_completes_and_only_once(subject: Subject) -> None:
    store = subject.store
    reservation = store.reserve("k", "fp", lease=LEASE)
    assert reservation.token is not None
    with pytest.raises(LeaseLostError):
        store.complete("k", "intruder", "x", ttl=TTL)
    store.complete("k", reservation.token, "r", ttl=TTL)
    with pytest.raises(LeaseLostError):
        store.complete("k", reservation.token, "again", ttl=TTL)
    with pytest.raises(LeaseLostError):
        store.complete("missing", reservation.token, "x", ttl=TTL)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s: s.reserve("", "fp", lease=1.0), "key must be a non-empty string, got ''"),
        (lambda s: s.reserve("  ", "fp", lease=1.0), "key must be a non-empty"),
        (lambda s: s.reserve("k" * 513, "fp", lease=1.0), "at most 512"),
        (lambda s: s.reserve("k", "fp", lease=-1.0), "lease must be > 0, got -1.0"),
        (lambda s: s.reserve("k", "fp", lease=0), "lease must be > 0, got 0"),
        (lambda s: s.complete("k", "t", "r", ttl=-5), "ttl must be > 0, got -5"),
        (lambda s: s.fail("k", "t", "r", ttl=float("inf")), "ttl must be finite, got inf"),
        (lambda s: s.get(""), "key must be a non-empty string"),
    ],
)
def test_bad_input_names_the_parameter_and_value(
        subject: Subject, call: Callable[[IdempotencyStore], Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(subject.store)


def test_many_threads_one_key_exactly_one_reservation(subject: Subject) -> None:
    store = subject.store
    barrier = threading.Barrier(16)
    won: list[str] = []
    lock = threading.Lock()

    def racer() -> None:
        barrier.wait()
        reservation = store.reserve("race", "fp", lease=30.0)
        if reservation.acquired:
            with lock:
                won.append(str(reservation.token))

    threads = [threading.Thread(target=racer) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1


def test_an_effect_run_without_a_recordable_response_is_recorded_as_such(
        subject: Subject) -> None:
    store = subject.store
    reservation = store.reserve("k", "fp", lease=LEASE)
    assert reservation.token is not None
    store.complete_unrecorded("k", reservation.token, "TypeError: not JSON", ttl=TTL)
    again = store.reserve("k", "fp", lease=LEASE)
    assert not again.acquired
    assert again.record is not None
    assert again.record.state is RecordState.COMPLETED_UNRECORDED
    assert again.record.response == "TypeError: not JSON"
    with pytest.raises(LeaseLostError):  # only the owner, only once
        store.complete("k", reservation.token, "late", ttl=TTL)


@pytest.mark.parametrize("text", ["caf\udce9", "\ud83d"])
def test_text_no_store_can_keep_is_refused_at_the_boundary(
        subject: Subject, text: str) -> None:
    store = subject.store
    reservation = store.reserve("k", "fp", lease=LEASE)
    assert reservation.token is not None
    with pytest.raises(ValueError, match="response must be encodable as UTF-8"):
        store.complete("k", reservation.token, text, ttl=TTL)
    with pytest.raises(ValueError, match="error must be encodable as UTF-8"):
        store.fail("k", reservation.token, text, ttl=TTL)
    with pytest.raises(ValueError, match="key must be encodable as UTF-8"):
        store.reserve(text, "fp", lease=LEASE)
    record = store.get("k")  # nothing changed
    assert record is not None
    assert record.state is RecordState.IN_PROGRESS
    store.complete("k", reservation.token, "caf\u00e9 \U0001f600", ttl=TTL)  # real unicode
    record = store.get("k")
    assert record is not None
    assert record.response == "caf\u00e9 \U0001f600"


def test_durations_beyond_what_every_store_can_keep_are_refused(subject: Subject) -> None:
    store = subject.store
    with pytest.raises(ValueError, match=r"lease must be at most .* got 1e\+20"):
        store.reserve("k", "fp", lease=1e20)
    reservation = store.reserve("k", "fp", lease=LEASE)
    assert reservation.token is not None
    with pytest.raises(ValueError, match="ttl must be at most"):
        store.complete("k", reservation.token, "r", ttl=1e13)
    store.complete("k", reservation.token, "r", ttl=TTL)  # still the owner: nothing sent


def test_a_redis_duplicate_check_is_one_round_trip(redis_server: int) -> None:
    redis = pytest.importorskip("redis")
    from patterns.consistency.idempotency.redis_store import RedisIdempotencyStore

    class CountingRedis(redis.Redis):  # type: ignore[misc]
        commands: list[str]

        def execute_command(self, *args: Any, **options: Any) -> Any:
            self.commands.append(str(args[0]))
            return super().execute_command(*args, **options)

    client = CountingRedis(host="127.0.0.1", port=redis_server)
    client.commands = []
    store = RedisIdempotencyStore(client, prefix=f"t{next(_prefixes)}:")
    first = store.reserve("k", "fp", lease=30.0)
    assert first.token is not None
    client.commands.clear()
    duplicate = store.reserve("k", "fp", lease=30.0)  # in progress
    assert not duplicate.acquired
    assert len(client.commands) == 1, client.commands
    store.complete("k", first.token, "r", ttl=30.0)
    client.commands.clear()
    replay = store.reserve("k", "fp", lease=30.0)  # completed
    assert replay.record is not None
    assert replay.record.response == "r"
    assert len(client.commands) == 1, client.commands
    client.commands.clear()
    assert store.reserve("new", "fp", lease=30.0).acquired  # a first request
    assert len(client.commands) == 1, client.commands
    client.close()
