"""Bad-input sweep (issue 11) of the idempotency package (guide section 5.5) and of the
shared SQLite helper: every public constructor and method refuses a bad value with a
ValueError or TypeError naming the parameter and the value, before any state changes.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import tempfile
from collections.abc import Iterator
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
    NOT_CALLABLE,
    SWEEP,
    ZERO,
    assert_rejected,
)
from hypothesis import given
from hypothesis import strategies as st

from patterns.clock import MONOTONIC, ManualClock
from patterns.consistency.idempotency import (
    ContentKeyGenerator,
    Execute,
    IdempotencyHandler,
    IdempotencyStore,
    InMemoryIdempotencyStore,
    RecordState,
    SQLiteIdempotencyStore,
    canonical_encoding,
    fingerprint,
    idempotent,
)
from patterns.storage.sqlite import MAX_BUSY_TIMEOUT, SQLiteDatabase

#: Durations (leases, TTLs, poll intervals) must be finite, > 0 and bounded.
BAD_DURATION = NOT_A_NUMBER | NON_FINITE | NEGATIVE | ZERO | HUGE
#: Values that are not strings (keys, tokens, responses, texts).
#: Strings no store can keep: lone surrogates (SQLite and Redis refuse them).
UNENCODABLE = st.sampled_from(["caf\udce9", "\ud83d", "a\udfffb"])
BAD_KEY = NOT_A_STR | UNENCODABLE | st.sampled_from(["", "   ", "k" * 513])
_folder = Path(tempfile.mkdtemp(prefix="bad-input-idem-"))
_files = itertools.count()
_prefixes = itertools.count()


def _database() -> SQLiteDatabase:
    return SQLiteDatabase(_folder / f"db{next(_files)}.sqlite")


# ===================================================================== SQLiteDatabase


@SWEEP
@given(path=st.sampled_from([None, 1, 2.5, b"x.sqlite", ["x"], True]))
def test_database_path_of_the_wrong_type(path: Any) -> None:
    assert_rejected(lambda: SQLiteDatabase(path), "path", path)


@pytest.mark.parametrize("path", ["", ":memory:", "a\0b.sqlite", "caf\udce9.sqlite"])
def test_database_path_that_names_no_file(path: str) -> None:
    assert_rejected(lambda: SQLiteDatabase(path), "path")


def test_database_path_that_is_a_directory() -> None:
    assert_rejected(lambda: SQLiteDatabase(_folder), "path")
    assert_rejected(lambda: SQLiteDatabase(Path()), "path")  # Path("") is "."


@SWEEP
@given(value=NOT_A_NUMBER | NON_FINITE | NEGATIVE | ZERO | HUGE)
def test_database_busy_timeout(value: Any) -> None:
    assert_rejected(lambda: SQLiteDatabase(_folder / "t.sqlite", busy_timeout=value),
                    "busy_timeout", value)


def test_database_busy_timeout_up_to_what_sqlite_holds_works() -> None:
    with SQLiteDatabase(_folder / "max.sqlite", busy_timeout=MAX_BUSY_TIMEOUT) as db:
        assert db.connection().execute("PRAGMA busy_timeout").fetchone() == (2**31 - 1,)
    assert_rejected(lambda: SQLiteDatabase(_folder / "t.sqlite",
                                           busy_timeout=MAX_BUSY_TIMEOUT + 0.001),
                    "busy_timeout")


@SWEEP
@given(script=NOT_A_STR)
def test_database_executescript(script: Any) -> None:
    with _database() as db:
        assert_rejected(lambda: db.executescript(script), "script", script)


# ===================================================================== stores


def _redis_store(port: int) -> Iterator[IdempotencyStore]:
    if os.environ.get("CI", "").strip().lower() in ("", "0", "false", "no"):
        redis = pytest.importorskip("redis")
    else:
        import redis
    from patterns.consistency.idempotency.redis_store import RedisIdempotencyStore

    client = redis.Redis(host="127.0.0.1", port=port)
    yield RedisIdempotencyStore(client, prefix=f"bad{next(_prefixes)}:")
    client.close()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[IdempotencyStore]:
    if request.param == "redis":
        yield from _redis_store(request.getfixturevalue("redis_server"))
    elif request.param == "memory":
        yield InMemoryIdempotencyStore(clock=ManualClock())
    else:
        with _database() as db:
            yield SQLiteIdempotencyStore(db, clock=ManualClock())


def _unchanged(store: IdempotencyStore) -> None:
    assert store.get("k") is None


@SWEEP
@given(key=BAD_KEY)
def test_store_key(store: IdempotencyStore, key: Any) -> None:
    assert_rejected(lambda: store.reserve(key, "fp", lease=1.0), "key", key)
    assert_rejected(lambda: store.get(key), "key", key)
    assert_rejected(lambda: store.release(key, "t"), "key", key)
    assert_rejected(lambda: store.complete(key, "t", "r", ttl=1.0), "key", key)
    assert_rejected(lambda: store.fail(key, "t", "e", ttl=1.0), "key", key)
    assert_rejected(lambda: store.complete_unrecorded(key, "t", "why", ttl=1.0), "key", key)


@SWEEP
@given(value=NOT_A_STR | UNENCODABLE)
def test_store_texts(store: IdempotencyStore, value: Any) -> None:
    assert_rejected(lambda: store.reserve("k", value, lease=1.0), "fingerprint", value)
    _unchanged(store)
    assert_rejected(lambda: store.complete("k", value, "r", ttl=1.0), "token", value)
    assert_rejected(lambda: store.release("k", value), "token", value)
    assert_rejected(lambda: store.complete("k", "t", value, ttl=1.0), "response", value)
    assert_rejected(lambda: store.fail("k", "t", value, ttl=1.0), "error", value)
    assert_rejected(lambda: store.complete_unrecorded("k", "t", value, ttl=1.0),
                    "reason", value)


@SWEEP
@given(value=BAD_DURATION)
def test_store_durations(store: IdempotencyStore, value: Any) -> None:
    assert_rejected(lambda: store.reserve("k", "fp", lease=value), "lease", value)
    _unchanged(store)
    assert_rejected(lambda: store.complete("k", "t", "r", ttl=value), "ttl", value)
    assert_rejected(lambda: store.fail("k", "t", "e", ttl=value), "ttl", value)
    assert_rejected(lambda: store.complete_unrecorded("k", "t", "why", ttl=value),
                    "ttl", value)


def test_a_rejected_finish_changes_nothing(store: IdempotencyStore) -> None:
    reservation = store.reserve("k", "fp", lease=30.0)
    assert reservation.token is not None
    token = reservation.token
    assert_rejected(lambda: store.complete("k", token, "caf\udce9", ttl=30.0), "response")
    assert_rejected(lambda: store.complete("k", token, "r", ttl=1e10), "ttl", 1e10)
    record = store.get("k")
    assert record is not None
    assert record.state is RecordState.IN_PROGRESS
    store.complete("k", token, "r", ttl=30.0)


@SWEEP
@given(clock=NOT_CALLABLE | st.sampled_from([MONOTONIC.now, object()]))
def test_store_clocks(clock: Any) -> None:
    assert_rejected(lambda: InMemoryIdempotencyStore(clock=clock), "clock")
    with _database() as db:
        assert_rejected(lambda: SQLiteIdempotencyStore(db, clock=clock), "clock")


def test_a_persistent_store_refuses_the_monotonic_clock() -> None:
    with _database() as db:
        assert_rejected(lambda: SQLiteIdempotencyStore(db, clock=MONOTONIC), "clock",
                        MONOTONIC)


@SWEEP
@given(db=st.sampled_from([None, "x.sqlite", Path("x.sqlite"), 1]))
def test_sqlite_store_db(db: Any) -> None:
    assert_rejected(lambda: SQLiteIdempotencyStore(db), "db", db)


@SWEEP
@given(table=st.sampled_from(["", "1abc", "a b", 'x"; DROP TABLE t; --', "caf\u00e9",
                              None, 7, "a-b"]))
def test_sqlite_store_table(table: Any) -> None:
    with _database() as db:
        assert_rejected(lambda: SQLiteIdempotencyStore(db, table=table), "table", table)


@SWEEP
@given(value=BAD_DURATION)
def test_sqlite_execute_once_ttl(value: Any) -> None:
    with _database() as db:
        store = SQLiteIdempotencyStore(db, clock=ManualClock())
        assert_rejected(lambda: store.execute_once("k", "fp", lambda c: "r", ttl=value),
                        "ttl", value)
        assert store.get("k") is None


@SWEEP
@given(effect=NOT_CALLABLE)
def test_sqlite_execute_once_effect(effect: Any) -> None:
    with _database() as db:
        store = SQLiteIdempotencyStore(db, clock=ManualClock())
        assert_rejected(lambda: store.execute_once("k", "fp", effect, ttl=1.0), "effect",
                        effect)
        if not isinstance(effect, str):
            assert_rejected(lambda: store.execute_once("k", "fp", lambda c: effect, ttl=1.0),
                            "effect's response")
        assert store.get("k") is None


def test_redis_store_constructor(redis_server: int) -> None:
    redis = pytest.importorskip("redis")
    from patterns.consistency.idempotency.redis_store import RedisIdempotencyStore

    for client in (None, object(), "redis://localhost"):
        assert_rejected(lambda c=client: RedisIdempotencyStore(c), "client")
    real = redis.Redis(host="127.0.0.1", port=redis_server)
    for prefix in (None, 1, b"p:", "caf\udce9"):
        assert_rejected(lambda p=prefix: RedisIdempotencyStore(real, prefix=p), "prefix",
                        prefix)
    real.close()


# ===================================================================== handler


def _handler(**options: Any) -> IdempotencyHandler:
    clock = ManualClock()
    return IdempotencyHandler(InMemoryIdempotencyStore(clock=clock), clock=clock,
                              sleep=clock.sleep, **options)


@SWEEP
@given(name=st.sampled_from(["ttl", "lease", "poll_interval"]), value=BAD_DURATION)
def test_handler_durations(name: str, value: Any) -> None:
    assert_rejected(lambda: _handler(**{name: value}), name, value)


@SWEEP
@given(value=NOT_A_NUMBER | NEGATIVE | ZERO | st.sampled_from([math.nan, -math.inf]))
def test_handler_wait_timeout(value: Any) -> None:
    assert_rejected(lambda: _handler(wait_timeout=value), "wait_timeout", value)


@pytest.mark.parametrize("wait_timeout", [math.inf, 1e10, 1e300])
def test_handler_wait_timeout_inf_and_huge_mean_wait_until_the_lease(
        wait_timeout: float) -> None:
    handler = _handler(lease=2.0, poll_interval=0.5, wait_timeout=wait_timeout)
    handler.begin("r", "k")  # an owner that crashed
    assert handler.handle("r", lambda _: "taken over", key="k") == "taken over"


@SWEEP
@given(name=st.sampled_from(["encode", "decode", "sleep"]), value=NOT_CALLABLE)
def test_handler_callables(name: str, value: Any) -> None:
    assert_rejected(lambda: IdempotencyHandler(InMemoryIdempotencyStore(), **{name: value}),
                    name, value)


@SWEEP
@given(clock=NOT_CALLABLE | st.sampled_from([MONOTONIC.now, object()]))
def test_handler_clock(clock: Any) -> None:
    assert_rejected(lambda: IdempotencyHandler(InMemoryIdempotencyStore(), clock=clock),
                    "clock")


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        ({"on_in_progress": "queue"}, "on_in_progress"),
        ({"on_in_progress": None}, "on_in_progress"),
        ({"record_errors": [ValueError]}, "record_errors"),
        ({"record_errors": (ValueError, 1)}, "record_errors"),
        ({"record_errors": (int,)}, "record_errors"),
        ({"key_generator": "payments"}, "key_generator"),
        ({"key_generator": object()}, "key_generator"),
        ({"listeners": [print]}, "listeners"),
    ],
)
def test_handler_options(options: dict[str, Any], parameter: str) -> None:
    assert_rejected(lambda: _handler(**options), parameter)


@SWEEP
@given(store=st.sampled_from([None, {}, "sqlite", InMemoryIdempotencyStore]))
def test_handler_store(store: Any) -> None:
    assert_rejected(lambda: IdempotencyHandler(store), "store")


@SWEEP
@given(key=BAD_KEY.filter(lambda key: key is not None))  # None: a key from the content
def test_handler_keys(key: Any) -> None:
    handler = _handler()
    assert_rejected(lambda: handler.key_for("r", key), "key", key)
    assert_rejected(lambda: handler.begin("r", key), "key", key)
    assert_rejected(lambda: handler.handle("r", lambda _: 1, key=key), "key", key)
    assert_rejected(lambda: asyncio.run(handler.ahandle("r", _async_effect, key=key)),
                    "key", key)


@pytest.mark.parametrize("request_", [object(), {1: "a"}, math.nan, {"s": "caf\udce9"}])
def test_handler_requests_without_a_stable_encoding(request_: Any) -> None:
    handler = _handler()
    assert_rejected(lambda: handler.handle(request_, lambda _: 1), "request")
    assert len(handler.store) == 0  # type: ignore[arg-type]


async def _async_effect(request: Any) -> str:
    return "done"


@SWEEP
@given(effect=NOT_CALLABLE)
def test_handler_effects(effect: Any) -> None:
    handler = _handler()
    assert_rejected(lambda: handler.handle("r", effect, key="k"), "effect", effect)
    assert_rejected(lambda: asyncio.run(handler.ahandle("r", effect, key="k")), "effect",
                    effect)
    env = simpy.Environment()

    def process() -> Any:
        yield from handler.simpy_handle(env, "r", effect, key="k")

    assert_rejected(lambda: env.run(env.process(process())), "effect", effect)
    assert handler.store.get("k") is None


def test_handler_sync_drivers_refuse_coroutine_functions() -> None:
    handler = _handler()
    assert_rejected(lambda: handler.handle("r", _async_effect, key="k"), "effect")
    env = simpy.Environment()

    def process() -> Any:
        yield from handler.simpy_handle(env, "r", _async_effect, key="k")

    assert_rejected(lambda: env.run(env.process(process())), "effect")
    assert handler.store.get("k") is None


@pytest.mark.parametrize("env", [None, object(), "env"])
def test_handler_simpy_env(env: Any) -> None:
    handler = _handler()
    assert_rejected(lambda: next(handler.simpy_handle(env, "r", lambda _: 1, key="k")),
                    "env")
    assert handler.store.get("k") is None


@pytest.mark.parametrize("step", [None, "k", Execute])
def test_handler_finish_and_abort_steps(step: Any) -> None:
    handler = _handler()
    assert_rejected(lambda: handler.finish(step, "r"), "step")
    assert_rejected(lambda: handler.abort(step, ValueError("x")), "step")


@pytest.mark.parametrize("error", [None, "boom", ValueError])
def test_handler_abort_error(error: Any) -> None:
    handler = _handler()
    step = handler.begin("r", "k")
    assert isinstance(step, Execute)
    assert_rejected(lambda: handler.abort(step, error), "error")
    record = handler.store.get("k")
    assert record is not None
    assert record.state is RecordState.IN_PROGRESS  # nothing changed


# ===================================================================== decorator, keys


@pytest.mark.parametrize("handler", [None, "h", InMemoryIdempotencyStore()])
def test_idempotent_handler(handler: Any) -> None:
    assert_rejected(lambda: idempotent(handler), "handler")


@pytest.mark.parametrize("key_param", ["", "1x", "a-b", None, 3])
def test_idempotent_key_param(key_param: Any) -> None:
    assert_rejected(lambda: idempotent(_handler(), key_param=key_param), "key_param")


@SWEEP
@given(fn=NOT_CALLABLE)
def test_idempotent_fn(fn: Any) -> None:
    assert_rejected(lambda: idempotent(_handler())(fn), "fn", fn)


@pytest.mark.parametrize("namespace",
                         [None, 1, b"ns", "", " ", "a:b", "caf\udce9", "n" * 448])
def test_key_generator_namespace(namespace: Any) -> None:
    assert_rejected(lambda: ContentKeyGenerator(namespace), "namespace")


def test_a_long_namespace_still_makes_valid_keys() -> None:
    generator = ContentKeyGenerator("n" * 447)
    key = generator.generate_key({"a": 1})
    assert _handler().key_for("r", key) == key


@pytest.mark.parametrize(
    "value",
    [object(), {1: 2}, math.nan, math.inf, {"x": "caf\udce9"}, {"caf\udce9": 1}, {1j}],
)
def test_canonical_encoding_refuses_what_has_no_stable_encoding(value: Any) -> None:
    for encode in (canonical_encoding, fingerprint):
        assert_rejected(lambda e=encode: e(value), "request")
