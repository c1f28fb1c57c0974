"""Tests for :mod:`patterns.consistency.lock` (guide section 5.1).

One contract suite runs against every :class:`LockStore`: in-memory, SQLite and Redis
(a real ``redis-server`` from the ``redis_server`` fixture; skipped without one except in
CI). The in-memory and SQLite stores read a :class:`ManualClock`; Redis judges expiry on
its own clock, so its "expire" step really waits.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import simpy
from hypothesis import example, given, settings
from hypothesis import strategies as st

from patterns.clock import ManualClock
from patterns.consistency.lock import (
    WALL,
    FencedResource,
    InMemoryLockStore,
    Lease,
    LeaseRenewer,
    LockAcquired,
    LockEvent,
    LockLost,
    LockLostError,
    LockRefused,
    LockReleased,
    LockStore,
    LockTimeoutError,
    RedisLockStore,
    SQLiteLockStore,
    StaleTokenError,
    aacquire,
    acquire,
    alocked,
    locked,
    simpy_acquire,
)
from patterns.storage.sqlite import SQLiteDatabase
from simulations.kit.clock import SimClock

TTL = 0.3
_prefixes = itertools.count()


@dataclass
class Backend:
    store: LockStore
    expire: Callable[[], object]  # let every lease of TTL seconds run out
    half: Callable[[], object]  # let TTL/2 seconds pass


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "redis":
        redis = pytest.importorskip("redis") if not os.environ.get("CI") else __import__("redis")
        port = request.getfixturevalue("redis_server")
        client = redis.Redis(host="127.0.0.1", port=port)
        store = RedisLockStore(client, prefix=f"locktest{next(_prefixes)}:")
        yield Backend(store, lambda: time.sleep(TTL + 0.05), lambda: time.sleep(TTL / 2))
        client.close()
        return
    clock = ManualClock(1000.0)
    if request.param == "memory":
        yield Backend(InMemoryLockStore(clock=clock), lambda: clock.advance(TTL),
                      lambda: clock.advance(TTL / 2))
        return
    with SQLiteDatabase(tmp_path / "locks.db") as db:
        yield Backend(SQLiteLockStore(db, clock=clock), lambda: clock.advance(TTL),
                      lambda: clock.advance(TTL / 2))


# =========================================================================== contract


def test_a_granted_lock_excludes_every_other_acquire(backend: Backend) -> None:
    store = backend.store
    lease = store.try_acquire("orders", TTL)
    assert lease is not None
    assert lease.name == "orders"
    assert lease.fencing_token == 1
    assert lease.ttl == TTL
    assert store.try_acquire("orders", TTL) is None
    assert store.try_acquire("orders", TTL) is None
    holder = store.holder("orders")
    assert holder is not None
    assert holder.owner == lease.owner
    assert holder.fencing_token == 1
    other = store.try_acquire("payments", TTL)  # names are independent
    assert other is not None
    assert other.fencing_token == 1


def test_release_by_the_holder_frees_the_lock(backend: Backend) -> None:
    store = backend.store
    lease = store.try_acquire("a", TTL)
    assert lease is not None
    assert store.release(lease) is True
    assert store.holder("a") is None
    second = store.try_acquire("a", TTL)
    assert second is not None
    assert second.fencing_token == 2
    assert second.owner != lease.owner
    assert store.release(lease) is False  # a second release of the old lease: no effect
    assert store.holder("a") is not None


def test_only_the_holder_can_release_or_extend(backend: Backend) -> None:
    store = backend.store
    lease = store.try_acquire("a", TTL)
    assert lease is not None
    forged = replace(lease, owner="someone-else")
    assert store.release(forged) is False
    with pytest.raises(LockLostError, match="someone-else"):
        store.extend(forged)
    holder = store.holder("a")
    assert holder is not None
    assert holder.owner == lease.owner
    assert store.try_acquire("a", TTL) is None


def test_extend_keeps_the_lease_alive_past_its_first_expiry(backend: Backend) -> None:
    store = backend.store
    lease = store.try_acquire("a", TTL)
    assert lease is not None
    backend.half()
    lease = store.extend(lease)
    backend.half()
    lease = store.extend(lease, TTL)
    backend.half()
    assert store.try_acquire("a", TTL) is None  # 1.5 TTL after the grant: still held
    assert store.holder("a") is not None
    assert lease.fencing_token == 1  # extending is not a new grant
    assert store.release(lease) is True


def test_expiry_lets_another_acquire_and_the_old_holder_cannot_touch_it(
        backend: Backend) -> None:
    store = backend.store
    old = store.try_acquire("a", TTL)
    assert old is not None
    backend.expire()
    assert store.holder("a") is None
    with pytest.raises(LockLostError):
        store.extend(old)  # expired, nobody else yet: still lost
    new = store.try_acquire("a", TTL)
    assert new is not None
    assert new.fencing_token == 2
    with pytest.raises(LockLostError):
        store.extend(old)
    assert store.release(old) is False  # never releases the new holder's lock
    holder = store.holder("a")
    assert holder is not None
    assert holder.owner == new.owner


def test_fencing_tokens_strictly_increase_across_release_and_expiry(backend: Backend) -> None:
    store = backend.store
    tokens = []
    for round_ in range(6):
        lease = store.try_acquire("a", TTL)
        assert lease is not None
        tokens.append(lease.fencing_token)
        if round_ % 2:
            assert store.release(lease)
        else:
            backend.expire()  # a lapsed lease never hands its token out again
    assert tokens == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("ttl", [0, -1, -0.5, float("nan"), float("inf")])
def test_bad_ttl_is_refused_naming_it(backend: Backend, ttl: float) -> None:
    with pytest.raises(ValueError, match=r"ttl must .*" + ("nan" if ttl != ttl else "")):
        backend.store.try_acquire("a", ttl)
    lease = backend.store.try_acquire("a", TTL)
    assert lease is not None
    with pytest.raises(ValueError, match="ttl"):
        backend.store.extend(lease, ttl)


def test_bad_ttl_message_names_the_value(backend: Backend) -> None:
    with pytest.raises(ValueError, match=r"ttl must be > 0, got -2"):
        backend.store.try_acquire("a", -2)
    with pytest.raises(TypeError, match=r"ttl must be a number, got '5'"):
        backend.store.try_acquire("a", "5")  # type: ignore[arg-type]


def test_bad_name_is_refused_naming_it(backend: Backend) -> None:
    with pytest.raises(ValueError, match=r"name must be a non-empty string, got ''"):
        backend.store.try_acquire("", TTL)
    with pytest.raises(TypeError, match=r"name must be a str, got 7"):
        backend.store.try_acquire(7, TTL)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        backend.store.holder("")
    with pytest.raises(TypeError, match="lease must be a Lease"):
        backend.store.release("a")  # type: ignore[arg-type]


def test_events_tell_what_the_store_did(backend: Backend) -> None:
    events: list[LockEvent] = []
    backend.store.listeners.add(events.append)
    lease = backend.store.try_acquire("a", TTL)
    assert lease is not None
    assert backend.store.try_acquire("a", TTL) is None
    backend.store.release(lease)
    backend.store.release(lease)
    kinds = [type(event) for event in events]
    assert kinds == [LockAcquired, LockRefused, LockReleased, LockLost]
    assert isinstance(events[0], LockAcquired)
    assert events[0].fencing_token == 1


# =========================================================================== concurrency


def _real_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> LockStore:
    if kind == "memory":
        return InMemoryLockStore()
    if kind == "sqlite":
        return SQLiteLockStore(SQLiteDatabase(tmp_path / "c.db"))
    redis = pytest.importorskip("redis") if not os.environ.get("CI") else __import__("redis")
    port = request.getfixturevalue("redis_server")
    return RedisLockStore(redis.Redis(host="127.0.0.1", port=port),
                          prefix=f"locktest{next(_prefixes)}:")


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
def test_many_threads_one_holder_at_a_time(kind: str, tmp_path: Path,
                                           request: pytest.FixtureRequest) -> None:
    store = _real_store(kind, tmp_path, request)
    inside = 0
    max_inside = 0
    tokens: list[int] = []
    guard = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        nonlocal inside, max_inside
        try:
            for _ in range(5):
                with locked(store, "shared", 10.0, timeout=20.0, retry_interval=0.001) as lease:
                    with guard:
                        inside += 1
                        max_inside = max(max_inside, inside)
                        assert inside == 1, "two holders inside the critical section"
                        tokens.append(lease.fencing_token)
                    time.sleep(0.0005)
                    with guard:
                        inside -= 1
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert max_inside == 1
    assert tokens == list(range(1, 41))  # granted in order, each once


_CHILD = textwrap.dedent("""
    import os, sys, time
    from patterns.consistency.lock import SQLiteLockStore, locked
    from patterns.storage.sqlite import SQLiteDatabase
    db_path, log_path, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = SQLiteLockStore(SQLiteDatabase(db_path))
    for _ in range(rounds):
        with locked(store, "job", 10.0, timeout=30.0, retry_interval=0.002) as lease:
            with open(log_path, "a") as log:
                log.write(f"enter {os.getpid()} {lease.fencing_token}\\n")
            time.sleep(0.002)
            with open(log_path, "a") as log:
                log.write(f"exit {os.getpid()} {lease.fencing_token}\\n")
""")


def test_sqlite_processes_exclude_each_other_with_increasing_tokens(tmp_path: Path) -> None:
    db_path, log_path = tmp_path / "locks.db", tmp_path / "log.txt"
    SQLiteLockStore(SQLiteDatabase(db_path)).database.close()  # schema before the race
    rounds, processes = 8, 4
    children = [subprocess.Popen([sys.executable, "-c", _CHILD, str(db_path), str(log_path),
                                  str(rounds)], cwd=Path(__file__).parents[2])
                for _ in range(processes)]
    for child in children:
        assert child.wait(timeout=60) == 0
    lines = [line.split() for line in log_path.read_text().splitlines()]
    assert len(lines) == 2 * rounds * processes
    tokens = []
    for enter, leave in zip(lines[::2], lines[1::2], strict=True):
        assert enter[0] == "enter"
        assert leave[0] == "exit"
        assert enter[1:] == leave[1:]
        tokens.append(int(enter[2]))
    assert tokens == list(range(1, rounds * processes + 1))
    assert len({line[1] for line in lines}) == processes


# =========================================================================== drivers


def test_acquire_waits_for_expiry_then_gets_the_next_token() -> None:
    clock = ManualClock()
    store = InMemoryLockStore(clock=clock)
    first = store.try_acquire("a", 1.0)
    assert first is not None
    lease = acquire(store, "a", 1.0, timeout=5.0, retry_interval=0.3, sleep=clock.sleep)
    assert lease.fencing_token == 2
    assert clock.now() == pytest.approx(1.2)
    assert clock.slept == [0.3, 0.3, 0.3, 0.3]


def test_acquire_times_out_with_a_clear_error() -> None:
    clock = ManualClock()
    store = InMemoryLockStore(clock=clock)
    assert store.try_acquire("a", 10.0) is not None
    with pytest.raises(LockTimeoutError, match=r"'a' not acquired within 1.0 s \(4 attempts\)"):
        acquire(store, "a", 1.0, timeout=1.0, retry_interval=0.4, sleep=clock.sleep)
    assert sum(clock.slept) == pytest.approx(1.0)  # never waits past the timeout
    with pytest.raises(LockTimeoutError, match="1 attempts"):
        acquire(store, "a", 1.0, timeout=0, sleep=clock.sleep)
    with pytest.raises(ValueError, match=r"timeout must be >= 0, got -1"):
        acquire(store, "a", 1.0, timeout=-1)
    with pytest.raises(ValueError, match=r"retry_interval must be > 0, got 0"):
        acquire(store, "a", 1.0, retry_interval=0)


def test_async_acquire_and_locked() -> None:
    store = InMemoryLockStore()

    async def main() -> list[int]:
        held = await aacquire(store, "a", 0.05)
        async with alocked(store, "a", 1.0, timeout=1.0, retry_interval=0.01) as lease:
            assert lease.fencing_token == 2  # got it once the first lease expired
        assert store.try_acquire("b", 5.0) is not None
        with pytest.raises(LockTimeoutError):
            await aacquire(store, "b", 1.0, timeout=0.05, retry_interval=0.01)
        return [held.fencing_token, lease.fencing_token]

    assert asyncio.run(main()) == [1, 2]
    assert store.holder("a") is None


def test_simpy_acquire_waits_in_simulated_time() -> None:
    env = simpy.Environment()
    store = InMemoryLockStore(clock=SimClock(env))
    got: list[tuple[float, int]] = []

    def client(delay: float) -> simpy.events.ProcessGenerator:
        yield env.timeout(delay)
        lease = yield from simpy_acquire(env, store, "a", 2.0, retry_interval=0.5)
        got.append((env.now, lease.fencing_token))
        yield env.timeout(1.0)
        store.release(lease)

    env.process(client(0.0))
    env.process(client(0.1))
    env.run()
    assert got == [(0.0, 1), (1.1, 2)]


def test_locked_releases_on_error_and_reports_a_lease_lost_inside_the_block() -> None:
    clock = ManualClock()
    store = InMemoryLockStore(clock=clock)
    with pytest.raises(KeyError), locked(store, "a", 1.0):
        raise KeyError("boom")
    assert store.holder("a") is None
    with pytest.raises(LockLostError, match="expired inside the with block"), \
            locked(store, "a", 1.0):
        clock.advance(2.0)


# =========================================================================== renewal


def test_renewer_extends_and_reports_loss_once() -> None:
    clock = ManualClock()
    store = InMemoryLockStore(clock=clock)
    lease = store.try_acquire("a", 3.0)
    assert lease is not None
    calls: list[tuple[int, str]] = []
    renewer = LeaseRenewer(store, lease, interval=1.0,
                           on_lost=lambda lost, why: calls.append((lost.fencing_token, why)))
    for _ in range(5):
        clock.advance(1.0)
        assert renewer.renew()
    assert renewer.renewals == 5
    assert renewer.held()
    assert renewer.check().expires_at == 8.0
    clock.advance(4.0)  # a pause longer than the lease: no renewal ran
    other = store.try_acquire("a", 3.0)
    assert other is not None
    assert other.fencing_token == 2
    assert not renewer.renew()
    assert renewer.lost.is_set()
    assert not renewer.held()
    with pytest.raises(LockLostError):
        renewer.check()
    assert not renewer.renew()
    assert calls == [(1, "the lease expired before it was renewed")]


def test_renewer_reports_a_lease_taken_away_by_the_store() -> None:
    clock = ManualClock()
    store = InMemoryLockStore(clock=clock)
    lease = store.try_acquire("a", 3.0)
    assert lease is not None
    renewer = LeaseRenewer(store, replace(lease, owner="forged"), interval=1.0)
    assert not renewer.renew()
    assert renewer.lost_reason == "the lease expired before extend"


def test_renewer_keeps_trying_through_backend_errors_until_expiry() -> None:
    clock = ManualClock()
    inner = InMemoryLockStore(clock=clock)

    class Flaky:
        def __init__(self) -> None:
            self.clock, self.listeners = inner.clock, inner.listeners

        def extend(self, lease: Lease, ttl: float | None = None) -> Lease:
            raise ConnectionError("store unreachable")

    lease = inner.try_acquire("a", 3.0)
    assert lease is not None
    renewer = LeaseRenewer(Flaky(), lease, interval=1.0)  # type: ignore[arg-type]
    clock.advance(1.0)
    assert renewer.renew()
    assert isinstance(renewer.last_error, ConnectionError)
    clock.advance(2.0)
    assert not renewer.renew()
    assert renewer.lost.is_set()


def test_renewer_thread_keeps_the_lock_and_flags_loss() -> None:
    store = InMemoryLockStore()
    lease = store.try_acquire("a", 0.2)
    assert lease is not None
    lost = threading.Event()
    with LeaseRenewer(store, lease, interval=0.04, on_lost=lambda *_: lost.set()) as renewer:
        time.sleep(0.5)  # 2.5 TTLs
        assert renewer.held()
        assert store.try_acquire("a", 0.2) is None
        assert renewer.renewals >= 5
        assert store.release(renewer.lease)
        assert lost.wait(2.0)  # the next extend finds the lease gone
    assert not renewer.held()


class _HangingExtendStore(InMemoryLockStore):
    """A store whose extend hangs, like a call to an unreachable server without a timeout."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.unblock = threading.Event()

    def extend(self, lease: Lease, ttl: float | None = None) -> Lease:
        self.entered.set()
        self.unblock.wait(30.0)
        return super().extend(lease, ttl)


def test_stop_does_not_hang_on_a_renewal_that_hangs() -> None:
    # stop() used to join the renewal thread without a limit (issue 11).
    store = _HangingExtendStore()
    lease = store.try_acquire("a", 0.6)
    assert lease is not None
    renewer = LeaseRenewer(store, lease, interval=0.05).start()
    try:
        assert store.entered.wait(5.0)
        started = time.monotonic()
        assert renewer.stop(timeout=0.1) is False  # still in the hung call
        assert time.monotonic() - started < 5.0
        started = time.monotonic()
        assert renewer.stop() is False  # default: no longer than the lease's life
        assert time.monotonic() - started < 5.0
    finally:
        store.unblock.set()
    assert renewer.stop(timeout=5.0) is True  # the call returned; the thread ends


def test_renewer_asyncio_and_simpy_drivers() -> None:
    store = InMemoryLockStore()
    lease = store.try_acquire("a", 0.15)
    assert lease is not None
    renewer = LeaseRenewer(store, lease, interval=0.03)

    async def main() -> None:
        task = asyncio.create_task(renewer.arun())
        await asyncio.sleep(0.4)
        assert renewer.held()
        assert renewer.renewals >= 5
        renewer.stop()
        await task

    asyncio.run(main())

    env = simpy.Environment()
    sim_store = InMemoryLockStore(clock=SimClock(env))
    sim_lease = sim_store.try_acquire("a", 3.0)
    assert sim_lease is not None
    sim_renewer = LeaseRenewer(sim_store, sim_lease, interval=1.0)
    env.process(sim_renewer.simpy_run(env))
    env.run(until=10.5)
    assert sim_renewer.renewals == 10
    assert sim_renewer.lease.expires_at == 13.0


def test_renewer_bad_input() -> None:
    store = InMemoryLockStore(clock=ManualClock())
    lease = store.try_acquire("a", 3.0)
    assert lease is not None
    with pytest.raises(ValueError, match=r"interval must be shorter than ttl \(3.0 s\), got 3.0"):
        LeaseRenewer(store, lease, interval=3.0)
    with pytest.raises(ValueError, match=r"interval must be > 0, got -1"):
        LeaseRenewer(store, lease, interval=-1)
    with pytest.raises(TypeError, match="on_lost must be callable"):
        LeaseRenewer(store, lease, on_lost=5)  # type: ignore[arg-type]


# =========================================================================== fencing


def test_fenced_resource_rejects_an_older_token() -> None:
    resource = FencedResource()
    resource.write("balance", 10, token=1)
    resource.write("balance", 11, token=1)  # the same holder writes twice
    resource.write("balance", 20, token=3)
    with pytest.raises(StaleTokenError, match=r"stale fencing token 2 .*'balance'.*token 3"):
        resource.write("balance", 99, token=2)
    assert resource.read("balance") == 20
    assert resource.highest_token("balance") == 3
    resource.write("other", 1, token=1)  # per resource
    with pytest.raises(TypeError, match="token must be an int"):
        resource.write("balance", 1, token=True)
    with pytest.raises(ValueError, match="resource must be a non-empty string, got ''"):
        resource.write("", 1, token=5)


@given(st.lists(st.integers(min_value=1, max_value=20), max_size=40))
def test_fenced_writes_never_go_backwards(tokens: list[int]) -> None:
    resource = FencedResource()
    highest = 0
    for token in tokens:
        try:
            resource.write("r", token, token)
        except StaleTokenError:
            assert token < highest
        else:
            assert token >= highest
            highest = token
    accepted = [write.token for write in resource.history]
    assert accepted == sorted(accepted)


@settings(max_examples=60, deadline=None)
@given(pause=st.floats(min_value=0.0, max_value=10.0), ttl=st.floats(min_value=0.5, max_value=5),
       b_start=st.floats(min_value=0.0, max_value=10.0))
def test_a_holder_paused_past_its_lease_never_writes_stale(pause: float, ttl: float,
                                                           b_start: float) -> None:
    """A holds the lock and pauses; B takes it whenever it can and writes; A then writes."""
    clock = ManualClock()
    store = InMemoryLockStore(clock=clock)
    resource = FencedResource()
    a = store.try_acquire("r", ttl)
    assert a is not None
    clock.advance(b_start)
    b = store.try_acquire("r", ttl)
    if b is not None:
        resource.write("r", "B", b.fencing_token)
    clock.advance(max(0.0, pause - b_start))
    try:
        resource.write("r", "A", a.fencing_token)  # A wakes up, believing it holds the lock
    except StaleTokenError:
        assert b is not None  # rejected only because a newer holder wrote
    if b is not None:
        assert resource.read("r") == "B"  # the newer holder's write is never overwritten
    assert [w.token for w in resource.history] == sorted(w.token for w in resource.history)


def test_wall_clock_is_the_sqlite_default(tmp_path: Path) -> None:
    with SQLiteDatabase(tmp_path / "x.db") as db:
        store = SQLiteLockStore(db)
        assert store.clock is WALL
        lease = store.try_acquire("a", 5.0)
        assert lease is not None
        assert abs(lease.expires_at - (time.time() + 5.0)) < 1.0
        with pytest.raises(TypeError, match="database must be a SQLiteDatabase"):
            SQLiteLockStore("x.db")  # type: ignore[arg-type]


# =========================================================================== issue 11


def _redis_client(request: pytest.FixtureRequest) -> object:
    redis = pytest.importorskip("redis") if not os.environ.get("CI") else __import__("redis")
    port = request.getfixturevalue("redis_server")
    return redis.Redis(host="127.0.0.1", port=port)


def test_redis_lock_names_cannot_reach_a_fence_counter(request: pytest.FixtureRequest) -> None:
    """Lock "X:fence" and lock "X" (whose counter was once the key "X:fence") are two
    independent locks, whichever is taken first."""
    client = _redis_client(request)
    prefix = f"locktest{next(_prefixes)}:"
    store = RedisLockStore(client, prefix=prefix)
    x = store.try_acquire("X", 10)
    assert x is not None
    assert x.fencing_token == 1
    x_fence = store.try_acquire("X:fence", 10)  # was refused for ever: its key was a counter
    assert x_fence is not None
    assert x_fence.fencing_token == 1
    assert store.release(x)
    again = store.try_acquire("X", 10)
    assert again is not None
    assert again.fencing_token == 2                # X's counter untouched by the other lock
    y_fence = store.try_acquire("Y:fence", 10)
    assert y_fence is not None
    y = store.try_acquire("Y", 10)                  # was an error: INCR of an owner string
    assert y is not None
    assert y.fencing_token == 1
    holder = store.holder("Y:fence")
    assert holder is not None
    assert holder.owner == y_fence.owner
    keys = {k.decode() for k in client.keys(f"{prefix}*")}  # type: ignore[attr-defined]
    assert keys == {f"{prefix}{space}:{{{name}}}" for space in ("lock", "fence")
                    for name in ("X", "X:fence", "Y", "Y:fence")}
    client.close()  # type: ignore[attr-defined]


class _ScriptsOnly:
    """A client that only registers scripts: enough to build keys without Redis."""

    def register_script(self, script: str) -> Callable[..., object]:
        return lambda **_kwargs: 0


@given(st.text(min_size=1, max_size=12), st.text(min_size=1, max_size=12))
@example("X", "X:fence")
@example("X:fence", "X")
@example("a}", "a")
def test_redis_keys_of_two_names_never_meet(a: str, b: str) -> None:
    store = RedisLockStore(_ScriptsOnly(), prefix="p:")
    keys_a, keys_b = store._keys(a), store._keys(b)
    assert keys_a[0] != keys_a[1]
    if a != b:
        assert not set(keys_a) & set(keys_b)


def test_sqlite_lock_store_measures_leases_on_the_wall_clock(tmp_path: Path) -> None:
    """Expiry times in the file are compared by other processes, after reboots."""
    from patterns.clock import MONOTONIC, WALL_CLOCK

    with SQLiteDatabase(tmp_path / "wall.db") as db:
        store = SQLiteLockStore(db)
        assert store.clock is WALL_CLOCK
        assert WALL is WALL_CLOCK
        lease = store.try_acquire("a", 30)
        assert lease is not None
        assert time.time() + 20 < lease.expires_at <= time.time() + 30
        with pytest.raises(ValueError, match="clock must mean the same across processes"):
            SQLiteLockStore(db, clock=MONOTONIC)


@pytest.mark.parametrize("timeout", [float("inf"), 1e10])
def test_acquire_waits_for_ever_with_an_infinite_timeout(timeout: float) -> None:
    clock = ManualClock()
    store = InMemoryLockStore(clock=clock)
    first = store.try_acquire("a", 5.0)
    assert first is not None
    lease = acquire(store, "a", 1.0, timeout=timeout, retry_interval=1.0, sleep=clock.sleep)
    assert lease.fencing_token == 2
    assert clock.slept == [1.0] * 5


@pytest.mark.parametrize("value", [1e10, 1.7e308])
def test_a_huge_ttl_or_interval_is_refused_before_it_reaches_a_timer(value: float) -> None:
    store = InMemoryLockStore()
    with pytest.raises(ValueError, match="ttl must be at most"):
        store.try_acquire("a", value)
    lease = store.try_acquire("a", 10)
    assert lease is not None
    with pytest.raises(ValueError, match="ttl must be at most"):
        LeaseRenewer(store, lease, ttl=value)
    with pytest.raises(ValueError, match="retry_interval must be at most"):
        acquire(store, "b", 1.0, retry_interval=value)
