"""Tests for :mod:`patterns.consistency.idempotency` (guide section 5.5): keys, the
handler and its drivers, the decorator, and the reliability tests (many threads and
several processes sending one key)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import decimal
import enum
import inspect
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
import simpy
from hypothesis import given
from hypothesis import strategies as st

from patterns.clock import ManualClock
from patterns.consistency.idempotency import (
    ContentKeyGenerator,
    DuplicateInProgress,
    EffectCompleted,
    EffectFailed,
    EffectStarted,
    IdempotencyEvent,
    IdempotencyHandler,
    IdempotencyKeyReusedError,
    InMemoryIdempotencyStore,
    RecordState,
    RequestFailedError,
    RequestInProgressError,
    ResponseReplayed,
    SQLiteIdempotencyStore,
    canonical_encoding,
    fingerprint,
    idempotent,
)
from patterns.storage.sqlite import SQLiteDatabase

ROOT = Path(__file__).resolve().parents[2]

# =========================================================================== keys


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Payment:
    amount: decimal.Decimal
    currency: str


def test_the_encoding_is_canonical_json_with_sorted_keys() -> None:
    assert canonical_encoding({"b": 1, "a": [True, None, "x"]}) == \
        b'{"a":[true,null,"x"],"b":1}'
    assert canonical_encoding({"a": 1, "b": 2}) == canonical_encoding({"b": 2, "a": 1})


def test_types_are_encoded_explicitly_and_kept_apart() -> None:
    assert canonical_encoding(1) != canonical_encoding(1.0)
    assert canonical_encoding(0.0) == canonical_encoding(-0.0)
    assert canonical_encoding(b"ab") == b'{"$bytes":"YWI="}'
    assert canonical_encoding(b"ab") != canonical_encoding("YWI=")
    # A user key that looks like a tag cannot pose as one.
    assert canonical_encoding({"$bytes": "YWI="}) != canonical_encoding(b"ab")
    tz = dt.timezone(dt.timedelta(hours=8))
    same_instant = dt.datetime(2024, 1, 1, 8, tzinfo=tz)
    assert canonical_encoding(same_instant) == \
        canonical_encoding(dt.datetime(2024, 1, 1, 0, tzinfo=dt.UTC))
    assert canonical_encoding(dt.date(2024, 1, 2)) == b'{"$date":"2024-01-02"}'
    assert canonical_encoding(decimal.Decimal("1.50")) == canonical_encoding(
        decimal.Decimal("1.5"))
    assert canonical_encoding({3, 1, 2}) == canonical_encoding({2, 3, 1})
    assert canonical_encoding((1, 2)) == canonical_encoding([1, 2])
    u = uuid.UUID(int=7)
    assert str(u).encode() in canonical_encoding(u)
    assert b"RED" not in canonical_encoding(Color.RED)
    assert canonical_encoding(Payment(decimal.Decimal("9.90"), "EUR")) == \
        canonical_encoding(Payment(decimal.Decimal("9.9"), "EUR"))


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (float("nan"), ValueError, "non-finite float at request: nan"),
        ({"x": [float("inf")]}, ValueError, r"at request.x\[0\]"),
        (dt.datetime(2024, 1, 1), ValueError, "naive datetime"),
        ({1: "a"}, TypeError, "mapping keys must be str at request, got 1"),
        (object(), TypeError, "cannot encode a object at request"),
        (decimal.Decimal("NaN"), ValueError, "non-finite Decimal"),
    ],
)
def test_values_without_a_stable_encoding_are_refused(
        value: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        canonical_encoding(value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False) | st.binary(),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=15,
)


@given(st.dictionaries(st.text(max_size=5), json_values, max_size=6))
def test_key_order_never_changes_the_fingerprint(value: dict[str, Any]) -> None:
    reordered = dict(reversed(list(value.items())))
    assert fingerprint(value) == fingerprint(reordered)
    assert len(fingerprint(value)) == 64


def test_keys_are_namespaced_sha256_and_validated() -> None:
    generator = ContentKeyGenerator("payments")
    key = generator.generate_key({"amount": 100})
    assert key == "payments:" + fingerprint({"amount": 100})
    assert generator.generate_key({"amount": 101}) != key
    with pytest.raises(ValueError, match=r"namespace must be non-empty.*got ''"):
        ContentKeyGenerator("")
    with pytest.raises(ValueError, match="got 'a:b'"):
        ContentKeyGenerator("a:b")


def _key_in_subprocess(seed: str, use_builtin_hash: bool) -> str:
    code = textwrap.dedent(f"""
        from patterns.consistency.idempotency import ContentKeyGenerator
        request = ("pay", "alice", "100.00")
        if {use_builtin_hash}:
            print("payments:%x" % (hash(request) & 0xffffffffffffffff))
        else:
            print(ContentKeyGenerator("payments").generate_key(list(request)))
    """)
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True, cwd=ROOT).stdout.strip()


def test_sha256_keys_agree_across_processes_while_builtin_hash_keys_do_not() -> None:
    stable = {_key_in_subprocess(seed, False) for seed in ("1", "2", "3")}
    salted = {_key_in_subprocess(seed, True) for seed in ("1", "2", "3")}
    assert len(stable) == 1
    assert len(salted) == 3


# =========================================================================== handler


def make_handler(**options: Any) -> tuple[IdempotencyHandler, ManualClock,
                                         list[IdempotencyEvent]]:
    clock = ManualClock()
    handler = IdempotencyHandler(InMemoryIdempotencyStore(clock=clock), clock=clock,
                                 sleep=clock.sleep, **options)
    events: list[IdempotencyEvent] = []
    handler.listeners.add(events.append)
    return handler, clock, events


def test_the_effect_runs_once_and_duplicates_get_the_same_response() -> None:
    handler, _, events = make_handler()
    charges: list[int] = []

    def charge(request: dict[str, Any]) -> dict[str, Any]:
        charges.append(request["amount"])
        return {"charge_id": f"ch_{len(charges)}", "amount": request["amount"]}

    first = handler.handle({"amount": 100}, charge, key="order-1")
    second = handler.handle({"amount": 100}, charge, key="order-1")
    assert first == second == {"charge_id": "ch_1", "amount": 100}
    assert charges == [100]
    assert [type(e) for e in events] == [EffectStarted, EffectCompleted, ResponseReplayed]
    # A content key when none is given.
    handler.handle({"amount": 5}, charge)
    handler.handle({"amount": 5}, charge)
    assert charges == [100, 5]


def test_every_caller_gets_the_decoded_response_even_the_first() -> None:
    handler, _, _ = make_handler()
    first = handler.handle("r", lambda _: (1, 2), key="k")
    assert first == [1, 2]  # what the store keeps (JSON), not the tuple
    assert handler.handle("r", lambda _: (9,), key="k") == [1, 2]


def test_the_same_key_with_another_request_is_a_clear_error() -> None:
    handler, _, _ = make_handler()
    handler.handle({"amount": 100}, lambda r: "ok", key="order-1")
    with pytest.raises(IdempotencyKeyReusedError, match="'order-1' was first used"):
        handler.handle({"amount": 999}, lambda r: "ok", key="order-1")


def test_a_transient_error_releases_the_key_a_recorded_one_is_replayed() -> None:
    class DeclinedError(Exception):
        pass

    handler, _, events = make_handler(record_errors=(DeclinedError,))
    calls: list[str] = []

    def flaky(_: object) -> str:
        calls.append("x")
        if len(calls) == 1:
            raise ConnectionError("reset")
        return "ok"

    with pytest.raises(ConnectionError):
        handler.handle("r", flaky, key="a")
    assert handler.handle("r", flaky, key="a") == "ok"  # the retry ran it again
    assert len(calls) == 2

    def decline(_: object) -> str:
        calls.append("d")
        raise DeclinedError("insufficient funds")

    with pytest.raises(DeclinedError):
        handler.handle("r", decline, key="b")
    with pytest.raises(RequestFailedError, match="DeclinedError: insufficient funds"):
        handler.handle("r", decline, key="b")
    assert calls.count("d") == 1
    failed = [e for e in events if isinstance(e, EffectFailed)]
    assert [e.recorded for e in failed] == [False, True]


def test_a_duplicate_in_progress_raises_when_configured() -> None:
    handler, _, events = make_handler(on_in_progress="raise")
    step = handler.begin("r", "k")
    with pytest.raises(RequestInProgressError, match="'k' is still in progress"):
        handler.handle("r", lambda _: "x", key="k")
    assert isinstance(events[-1], DuplicateInProgress)
    handler.finish(step, "done")  # type: ignore[arg-type]
    assert handler.handle("r", lambda _: "x", key="k") == "done"


def test_a_waiting_duplicate_times_out_or_takes_over_after_the_lease() -> None:
    handler, _clock, _ = make_handler(lease=5.0, poll_interval=0.5, wait_timeout=2.0)
    handler.begin("r", "k")  # an owner that never finishes
    with pytest.raises(RequestInProgressError, match=r"waited 2 s"):
        handler.handle("r", lambda _: "x", key="k")
    patient, clock2, events = make_handler(lease=5.0, poll_interval=0.5, wait_timeout=60.0)
    patient.begin("r", "k")
    assert patient.handle("r", lambda _: "mine", key="k") == "mine"
    assert clock2.now() == pytest.approx(5.0)
    assert any(isinstance(e, EffectStarted) and e.taken_over for e in events)


def test_the_asyncio_driver_lets_concurrent_duplicates_wait() -> None:
    handler = IdempotencyHandler(InMemoryIdempotencyStore(), poll_interval=0.005)
    runs: list[int] = []

    async def effect(request: int) -> int:
        runs.append(request)
        await asyncio.sleep(0.05)
        return request * 2

    async def main() -> list[Any]:
        return list(await asyncio.gather(
            *(handler.ahandle(21, effect, key="k") for _ in range(20))))

    assert asyncio.run(main()) == [42] * 20
    assert runs == [21]


def test_the_simpy_driver_waits_in_simulated_time() -> None:
    env = simpy.Environment()

    class EnvClock:
        def now(self) -> float:
            return float(env.now)

    handler = IdempotencyHandler(InMemoryIdempotencyStore(clock=EnvClock()),
                                 clock=EnvClock(), poll_interval=0.1)
    runs: list[float] = []
    answers: list[tuple[float, Any]] = []

    def effect(request: str) -> Generator[Any, Any, str]:
        runs.append(env.now)
        yield env.timeout(1.0)
        return request.upper()

    def client(delay: float) -> Generator[Any, Any, None]:
        yield env.timeout(delay)
        answer = yield from handler.simpy_handle(env, "pay", effect, key="k")
        answers.append((env.now, answer))

    for delay in (0.0, 0.25, 0.5, 3.0):
        env.process(client(delay))
    env.run()
    assert runs == [0.0]
    assert [a for _, a in answers] == ["PAY"] * 4
    assert answers[0][0] == 1.0
    assert all(1.0 <= t <= 1.15 for t, _ in answers[1:3])  # waited for the first
    assert answers[3][0] == 3.0  # replayed at once


def test_the_decorator_on_plain_and_async_functions() -> None:
    handler, _, _ = make_handler()
    charged: list[tuple[str, int]] = []

    @idempotent(handler)
    def charge(customer: str, amount: int) -> dict[str, Any]:
        charged.append((customer, amount))
        return {"id": len(charged)}

    assert charge("alice", 5, idempotency_key="k1") == {"id": 1}
    assert charge("alice", 5, idempotency_key="k1") == {"id": 1}
    assert charge("alice", 5) == {"id": 2}  # content key
    assert charge("alice", 5) == {"id": 2}
    with pytest.raises(IdempotencyKeyReusedError):
        charge("alice", 6, idempotency_key="k1")
    assert charged == [("alice", 5), ("alice", 5)]

    @idempotent(handler, key_param="request_id")
    async def refund(amount: int) -> int:
        charged.append(("refund", amount))
        return -amount

    async def twice() -> tuple[int, int]:
        return (await refund(3, request_id="r1"), await refund(3, request_id="r1"))

    assert asyncio.run(twice()) == (-3, -3)
    assert charged.count(("refund", 3)) == 1


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"ttl": -1}, ValueError, "ttl must be > 0, got -1"),
        ({"lease": 0}, ValueError, "lease must be > 0, got 0"),
        ({"on_in_progress": "queue"}, ValueError, "on_in_progress must be .*got 'queue'"),
        ({"poll_interval": float("nan")}, ValueError, "poll_interval must be a number"),
        ({"wait_timeout": -2}, ValueError, "wait_timeout must be > 0, got -2"),
        ({"record_errors": [ValueError]}, TypeError, "record_errors must be a tuple"),
    ],
)
def test_bad_handler_options_name_the_parameter_and_value(
        options: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        IdempotencyHandler(InMemoryIdempotencyStore(), **options)


def test_bad_keys_are_refused_by_the_handler() -> None:
    handler, _, _ = make_handler()
    with pytest.raises(ValueError, match="key must be a non-empty string, got ''"):
        handler.handle("r", lambda _: 1, key="")
    with pytest.raises(TypeError, match="key must be a str, got 7"):
        handler.handle("r", lambda _: 1, key=7)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="store must be an IdempotencyStore"):
        IdempotencyHandler({})  # type: ignore[arg-type]


# =========================================================================== reliability


def _hammer(handler: IdempotencyHandler, effect_runs: list[int], threads: int = 24
            ) -> list[Any]:
    barrier = threading.Barrier(threads)
    lock = threading.Lock()
    answers: list[Any] = []

    def effect(request: dict[str, Any]) -> dict[str, Any]:
        with lock:
            effect_runs.append(1)
        time.sleep(0.02)  # long enough for every duplicate to arrive meanwhile
        return {"charge_id": uuid.uuid4().hex, "amount": request["amount"]}

    def caller() -> None:
        barrier.wait()
        answer = handler.handle({"amount": 100}, effect, key="pay-1")
        with lock:
            answers.append(answer)

    workers = [threading.Thread(target=caller) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return answers


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_concurrent_duplicates_from_many_threads_run_the_effect_once(
        backend: str, tmp_path: Path) -> None:
    store: Any
    if backend == "memory":
        store = InMemoryIdempotencyStore()
    else:
        store = SQLiteIdempotencyStore(SQLiteDatabase(tmp_path / "i.sqlite"))
    runs: list[int] = []
    answers = _hammer(IdempotencyHandler(store, poll_interval=0.002), runs)
    assert len(runs) == 1
    assert len(answers) == 24
    assert all(answer == answers[0] for answer in answers)


def test_concurrent_duplicates_on_redis_run_the_effect_once(redis_server: int) -> None:
    redis = pytest.importorskip("redis")
    from patterns.consistency.idempotency.redis_store import RedisIdempotencyStore

    client = redis.Redis(host="127.0.0.1", port=redis_server)
    client.flushall()
    runs: list[int] = []
    answers = _hammer(IdempotencyHandler(RedisIdempotencyStore(client),
                                         poll_interval=0.002), runs)
    client.close()
    assert len(runs) == 1
    assert len(answers) == 24
    assert all(answer == answers[0] for answer in answers)


WORKER = textwrap.dedent("""
    import json, sys, threading, time, uuid
    from patterns.consistency.idempotency import IdempotencyHandler, SQLiteIdempotencyStore
    from patterns.storage.sqlite import SQLiteDatabase

    db = SQLiteDatabase(sys.argv[1])
    handler = IdempotencyHandler(SQLiteIdempotencyStore(db), poll_interval=0.005)
    start = float(sys.argv[2])

    def effect(request):
        with db.transaction() as connection:
            connection.execute("INSERT INTO effects VALUES (?)", (request["order"],))
        time.sleep(0.05)
        return {"charge_id": uuid.uuid4().hex}

    answers = []
    def caller():
        answers.append(handler.handle({"order": 7}, effect, key="order-7"))
    threads = [threading.Thread(target=caller) for _ in range(4)]
    time.sleep(max(0.0, start - time.time()))
    for t in threads: t.start()
    for t in threads: t.join()
    print(json.dumps(answers))
""")


def test_concurrent_duplicates_from_several_processes_run_the_effect_once(
        tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    with SQLiteDatabase(path) as db:
        db.executescript("CREATE TABLE effects (order_id INTEGER)")
        SQLiteIdempotencyStore(db)  # creates the table before the race
    start = time.time() + 0.8  # the processes start together, after importing
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = [subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(start)],
                                  stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
                 for _ in range(4)]
    outputs = [process.communicate(timeout=30)[0] for process in processes]
    assert all(process.returncode == 0 for process in processes)
    answers = [answer for output in outputs for answer in json.loads(output)]
    assert len(answers) == 16
    assert all(answer == answers[0] for answer in answers)
    with SQLiteDatabase(path) as db:
        assert db.connection().execute("SELECT COUNT(*) FROM effects").fetchone() == (1,)


def test_execute_once_commits_the_effect_and_the_response_together(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "bank.sqlite")
    db.executescript("CREATE TABLE ledger (amount INTEGER)")
    store = SQLiteIdempotencyStore(db)

    def debit(connection: Any) -> str:
        connection.execute("INSERT INTO ledger VALUES (-100)")
        return json.dumps({"balance_change": -100})

    def crash_after_the_effect(connection: Any) -> str:
        connection.execute("INSERT INTO ledger VALUES (-100)")
        raise SystemExit("process dies between the effect and the record")

    with pytest.raises(SystemExit):
        store.execute_once("k", "fp", crash_after_the_effect, ttl=60)
    assert db.connection().execute("SELECT COUNT(*) FROM ledger").fetchone() == (0,)
    assert store.get("k") is None  # nothing half-done: the retry runs it cleanly

    results: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def caller() -> None:
        result = store.execute_once("k", "fp", debit, ttl=60)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=caller) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(executed for _, executed in results) == [False] * 11 + [True]
    assert {response for response, _ in results} == {'{"balance_change": -100}'}
    assert db.connection().execute("SELECT COUNT(*) FROM ledger").fetchone() == (1,)
    record = store.get("k")
    assert record is not None
    assert record.state is RecordState.COMPLETED
    with pytest.raises(IdempotencyKeyReusedError):
        store.execute_once("k", "other", debit, ttl=60)
    db.close()


def test_an_effect_that_outlives_its_lease_is_run_again_and_its_record_refused() -> None:
    # The documented residual window: the lease must exceed the effect's duration.
    handler, clock, events = make_handler(lease=1.0)
    runs: list[str] = []

    def slow(request: str) -> str:
        runs.append("outer")
        clock.advance(2.0)  # past the lease: a duplicate now takes the key over
        assert handler.handle(request, lambda _: runs.append("heir") or "heir", key="k") \
            == "heir"
        return "outer"

    from patterns.consistency.idempotency import LeaseLostError

    with pytest.raises(LeaseLostError, match="'k'"):
        handler.handle("r", slow, key="k")
    assert runs == ["outer", "heir"]
    assert handler.handle("r", lambda _: "never", key="k") == "heir"
    assert sum(isinstance(e, EffectStarted) and e.taken_over for e in events) == 1


# =========================================================================== issue 11:
# an effect that ran never runs again, whatever happens to its response


def _stores(tmp_path: Path, clock: ManualClock) -> dict[str, Any]:
    return {"memory": InMemoryIdempotencyStore(clock=clock),
            "sqlite": SQLiteIdempotencyStore(SQLiteDatabase(tmp_path / "u.sqlite"),
                                             clock=clock)}


class _Unencodable:
    pass


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
@pytest.mark.parametrize(
    ("response", "options"),
    [
        (_Unencodable(), {}),  # not JSON
        ({"name": "caf\udce9"}, {}),  # a lone surrogate (bytes decoded with surrogateescape)
        (float("nan"), {"decode": lambda text: json.loads(text, parse_constant=int)}),
        ("ok", {"encode": lambda value: b"ok"}),  # encode returns bytes
    ],
    ids=["not-json", "lone-surrogate", "does-not-decode", "encode-not-str"],
)
def test_an_unrecordable_response_never_runs_the_effect_twice(
        backend: str, response: Any, options: dict[str, Any], tmp_path: Path) -> None:
    from patterns.consistency.idempotency import ResponseNotRecorded, ResponseNotRecordedError

    clock = ManualClock()
    store = _stores(tmp_path, clock)[backend]
    handler = IdempotencyHandler(store, lease=10.0, clock=clock, sleep=clock.sleep, **options)
    events: list[IdempotencyEvent] = []
    handler.listeners.add(events.append)
    runs: list[int] = []

    def charge(_: object) -> Any:
        runs.append(1)
        return response

    with pytest.raises(ResponseNotRecordedError, match="'pay-1'") as first:
        handler.handle("r", charge, key="pay-1")
    assert first.value.response is response  # the first caller still has its result
    assert first.value.key == "pay-1"
    assert any(isinstance(e, ResponseNotRecorded) for e in events)
    record = store.get("pay-1")
    assert record is not None
    assert record.state is RecordState.COMPLETED_UNRECORDED
    clock.advance(60.0)  # well past the lease: a crashed owner's key would be taken over
    for _ in range(3):
        with pytest.raises(ResponseNotRecordedError, match=r"'pay-1'.*ran"):
            handler.handle("r", charge, key="pay-1")
    assert runs == [1]


def test_a_store_that_refuses_the_response_still_never_runs_the_effect_twice() -> None:
    from patterns.consistency.idempotency import ResponseNotRecordedError

    class TooBig(InMemoryIdempotencyStore):
        def complete(self, key: str, token: str, response: str, *, ttl: float) -> None:
            raise RuntimeError("string or blob too big")

    clock = ManualClock()
    handler = IdempotencyHandler(TooBig(clock=clock), lease=5.0, clock=clock,
                                 sleep=clock.sleep)
    runs: list[int] = []
    with pytest.raises(ResponseNotRecordedError, match="too big"):
        handler.handle("r", lambda _: runs.append(1) or "x" * 100, key="k")
    clock.advance(10.0)
    with pytest.raises(ResponseNotRecordedError):
        handler.handle("r", lambda _: runs.append(1) or "x", key="k")
    assert runs == [1]


def test_a_recorded_error_whose_text_cannot_be_stored_is_still_recorded(
        tmp_path: Path) -> None:
    class DeclinedError(Exception):
        pass

    class UnprintableError(DeclinedError):
        def __str__(self) -> str:
            raise RuntimeError("no str")

    clock = ManualClock()
    store = SQLiteIdempotencyStore(SQLiteDatabase(tmp_path / "f.sqlite"), clock=clock)
    handler = IdempotencyHandler(store, lease=5.0, record_errors=(DeclinedError,),
                                 clock=clock, sleep=clock.sleep)
    runs: list[str] = []

    def decline(request: str) -> None:
        runs.append(request)
        if request == "surrogate":
            raise DeclinedError("card holder caf\udce9")
        raise UnprintableError()

    for request in ("surrogate", "unprintable"):
        with pytest.raises(DeclinedError):
            handler.handle(request, decline, key=request)
        clock.advance(10.0)
        with pytest.raises(RequestFailedError, match=r"DeclinedError|UnprintableError"):
            handler.handle(request, decline, key=request)
    assert runs == ["surrogate", "unprintable"]


def test_out_of_range_ttls_and_leases_are_refused_before_any_effect() -> None:
    for name in ("ttl", "lease", "poll_interval"):
        with pytest.raises(ValueError, match=f"{name} must be at most .*got 10000000000000.0"):
            IdempotencyHandler(InMemoryIdempotencyStore(), **{name: 1e13})
    store = InMemoryIdempotencyStore()
    with pytest.raises(ValueError, match="ttl must be at most"):
        store.complete("k", "t", "r", ttl=1e300)
    with pytest.raises(ValueError, match="lease must be at most"):
        store.reserve("k", "fp", lease=1e300)
    assert store.get("k") is None


def test_the_asyncio_driver_takes_a_plain_function_once() -> None:
    # A sync effect passed to ahandle has already run when its result is awaited: the
    # await must not turn it into a "failed, release the key, run it again".
    handler, _, _ = make_handler()
    runs: list[int] = []

    def charge(request: int) -> int:
        runs.append(request)
        return request * 2

    async def main() -> list[Any]:
        return [await handler.ahandle(21, charge, key="k") for _ in range(3)]  # type: ignore[arg-type]

    assert asyncio.run(main()) == [42, 42, 42]
    assert runs == [21]


def test_the_simpy_driver_takes_a_plain_function_once() -> None:
    env = simpy.Environment()
    handler, _, _ = make_handler()
    runs: list[str] = []
    answers: list[Any] = []

    def charge(request: str) -> str:
        runs.append(request)
        return request.upper()

    def client() -> Generator[Any, Any, None]:
        for _ in range(3):
            answer = yield from handler.simpy_handle(env, "pay", charge, key="k")  # type: ignore[arg-type]
            answers.append(answer)

    env.process(client())
    env.run()
    assert answers == ["PAY"] * 3
    assert runs == ["pay"]


def test_the_blocking_driver_refuses_coroutines_and_generators_and_frees_the_key() -> None:
    handler, _, _ = make_handler()

    async def async_effect(_: object) -> str:
        return "never"

    with pytest.raises(TypeError, match=r"coroutine function.*ahandle"):
        handler.handle("r", async_effect, key="k")
    with pytest.raises(TypeError, match="effect must be callable, got 5"):
        handler.handle("r", 5, key="k")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="returned a coroutine"):
        handler.handle("r", lambda request: async_effect(request), key="k")
    with pytest.raises(TypeError, match="returned a generator"):
        handler.handle("r", lambda request: (x for x in [request]), key="k")
    assert handler.store.get("k") is None  # nothing ran: the key is free
    assert handler.handle("r", lambda _: "ran", key="k") == "ran"


def test_a_waiting_duplicate_never_sleeps_past_its_wait_timeout() -> None:
    handler, clock, _ = make_handler(lease=100.0, poll_interval=10.0, wait_timeout=1.0)
    handler.begin("r", "k")
    with pytest.raises(RequestInProgressError, match="waited 1 s"):
        handler.handle("r", lambda _: "x", key="k")
    assert clock.slept == [1.0]


def test_huge_and_infinite_wait_timeouts_wait_without_overflowing() -> None:
    for wait_timeout in (1e10, float("inf")):
        handler, clock, _ = make_handler(lease=1.0, poll_interval=0.25,
                                         wait_timeout=wait_timeout)
        handler.begin("r", "k")  # a crashed owner: the waiter takes over after the lease
        assert handler.handle("r", lambda _: "mine", key="k") == "mine"
        assert clock.now() == pytest.approx(1.0)


# ----------------------------------------------------------- persistent deadlines


def test_a_sqlite_store_keeps_its_deadlines_on_the_wall_clock_across_a_reboot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Boot 1: up for 11 days; a worker reserves a key and dies with the machine.
    monkeypatch.setattr(time, "monotonic", lambda: 1_000_000.0)
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0)
    path = tmp_path / "keys.sqlite"
    with SQLiteDatabase(path) as db:
        dead = SQLiteIdempotencyStore(db).reserve("k", "fp", lease=30.0)
        assert dead.acquired
    # Boot 2, a minute later: the monotonic clock restarted near 0.
    monkeypatch.setattr(time, "monotonic", lambda: 25.0)
    monkeypatch.setattr(time, "time", lambda: 1_800_000_060.0)
    with SQLiteDatabase(path) as db:
        heir = SQLiteIdempotencyStore(db).reserve("k", "fp", lease=30.0)
    # The dead owner's 30 s lease ran out 30 s ago, not in 11 days.
    assert heir.acquired
    assert heir.taken_over


def test_a_sqlite_store_refuses_the_monotonic_clock(tmp_path: Path) -> None:
    from patterns.clock import MONOTONIC, WALL_CLOCK

    with SQLiteDatabase(tmp_path / "m.sqlite") as db:
        with pytest.raises(ValueError, match=r"clock must .*wall.*got MonotonicClock\(\)"):
            SQLiteIdempotencyStore(db, clock=MONOTONIC)
        assert SQLiteIdempotencyStore(db).clock is WALL_CLOCK


def test_deadlines_written_on_the_monotonic_clock_are_carried_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A file written by the previous version (monotonic deadlines): its completed
    # records must not all expire at once on upgrade, or every retry runs again.
    monkeypatch.setattr(time, "monotonic", lambda: 5_000.0)
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0)
    with SQLiteDatabase(tmp_path / "old.sqlite") as db:
        store = SQLiteIdempotencyStore(db, clock=ManualClock(5_000.0))
        reservation = store.reserve("k", "fp", lease=30.0)
        assert reservation.token is not None
        store.complete("k", reservation.token, '"done"', ttl=3600.0)
        upgraded = SQLiteIdempotencyStore(db)
        record = upgraded.get("k")
        assert record is not None
        assert record.state is RecordState.COMPLETED
        assert record.expires_at == pytest.approx(1_800_000_000.0 + 3600.0)


def test_execute_once_names_ttl_and_replays_a_recorded_failure(tmp_path: Path) -> None:
    with SQLiteDatabase(tmp_path / "e.sqlite") as db:
        store = SQLiteIdempotencyStore(db)
        with pytest.raises(ValueError, match="ttl must be > 0, got -1"):
            store.execute_once("k", "fp", lambda c: "r", ttl=-1)
        reservation = store.reserve("k", "fp", lease=30.0)
        assert reservation.token is not None
        store.fail("k", reservation.token, "DeclinedError: no", ttl=60.0)
        with pytest.raises(RequestFailedError, match="DeclinedError: no"):
            store.execute_once("k", "fp", lambda c: "r", ttl=60.0)
        with pytest.raises(ValueError, match="effect's response must be encodable"):
            store.execute_once("k2", "fp", lambda c: "caf\udce9", ttl=60.0)
        assert store.get("k2") is None


def test_a_table_name_that_is_an_sql_keyword_works(tmp_path: Path) -> None:
    with SQLiteDatabase(tmp_path / "kw.sqlite") as db:
        store = SQLiteIdempotencyStore(db, table="select")
        assert store.reserve("k", "fp", lease=1.0).acquired


def test_a_lone_surrogate_in_a_request_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"lone surrogate at request\.name"):
        canonical_encoding({"name": "caf\udce9"})
    with pytest.raises(ValueError, match="key must be encodable as UTF-8"):
        InMemoryIdempotencyStore().reserve("caf\udce9", "fp", lease=1.0)


class _AsyncCharge:
    """A callable object whose ``__call__`` is ``async``: an async callable that
    ``inspect.iscoroutinefunction`` does not recognise."""

    def __init__(self) -> None:
        self.runs: list[object] = []

    async def __call__(self, amount: object) -> dict[str, object]:
        self.runs.append(amount)
        return {"charged": amount}


def test_idempotent_keeps_an_async_callable_object_async_and_runs_it_once() -> None:
    handler, _, _ = make_handler()
    charge = _AsyncCharge()
    wrapped = idempotent(handler)(charge)
    assert inspect.iscoroutinefunction(wrapped)  # it took the asyncio driver

    async def main() -> list[Any]:
        return [await wrapped(5, idempotency_key="k") for _ in range(2)]

    assert asyncio.run(main()) == [{"charged": 5}] * 2
    assert charge.runs == [5]


def test_handle_refuses_an_async_callable_object_before_reserving_the_key() -> None:
    handler, _, events = make_handler()
    charge = _AsyncCharge()
    with pytest.raises(TypeError, match=r"coroutine function.*ahandle"):
        handler.handle("r", charge, key="k")  # type: ignore[arg-type]
    env = simpy.Environment()
    with pytest.raises(TypeError, match=r"coroutine function.*ahandle"):  # at the call
        handler.simpy_handle(env, "r", charge, key="k")  # type: ignore[arg-type]
    assert events == []  # refused at the boundary: no reservation was made
    assert charge.runs == []
