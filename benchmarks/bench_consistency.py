"""What a lease lock, a saga and a two-phase commit cost per call (guide 5.1 and 5.2).

Run from the repository root::

    python benchmarks/bench_consistency.py            # about 20 s
    python benchmarks/bench_consistency.py --quick    # a few seconds, noisier

Measured in one run, per call (median of the repeats, microseconds):

(a) a lock taken and released (``try_acquire`` + ``release``): in memory, SQLite (a
    file in a temporary directory; WAL, ``BEGIN IMMEDIATE``) and Redis (a throw-away
    ``redis-server`` on loopback). Beside Redis, the peer: redis-py's own
    ``Redis.lock(...)`` (``SET NX PX`` + Lua release, no fencing token), non-blocking.
(b) a three-step saga that completes (``SagaOrchestrator.run``: five log records, each
    checking and renewing the saga's owner lease) on the in-memory and the SQLite log.
(c) a two-phase commit over three in-memory participants (``TwoPhaseCoordinator.execute``:
    three prepares in daemon threads, the decision logged, three commits).

No saga or 2PC peer library is pinned: the numbers are for the record and for
comparing two versions of this code (run this file from each checkout).
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import per_call_us

from patterns.consistency.lock import InMemoryLockStore, LockStore, RedisLockStore, SQLiteLockStore
from patterns.consistency.saga import (
    InMemorySagaLog,
    SagaLog,
    SagaOrchestrator,
    SagaStep,
    SQLiteSagaLog,
)
from patterns.consistency.twophase import (
    InMemoryDecisionLog,
    LockingParticipant,
    TwoPhaseCoordinator,
)
from patterns.storage.sqlite import SQLiteDatabase
from simulations.kit.servers import redis_server


def lock_cycle(store: LockStore) -> Callable[[], None]:
    def cycle() -> None:
        lease = store.try_acquire("bench", 10.0)
        assert lease is not None
        store.release(lease)
    return cycle


def redis_py_cycle(client: object) -> Callable[[], None]:
    def cycle() -> None:
        lock = client.lock("peer:bench", timeout=10.0)  # type: ignore[attr-defined]
        assert lock.acquire(blocking=False)
        lock.release()
    return cycle


def saga_run(log: SagaLog) -> Callable[[], None]:
    steps = [SagaStep(name, lambda _ctx: None, lambda _ctx: None)
             for name in ("reserve", "charge", "ship")]
    orchestrator = SagaOrchestrator("order", steps, log)
    ids = itertools.count()

    def run() -> None:
        orchestrator.run(f"s{next(ids)}")
    return run


def two_phase() -> Callable[[], None]:
    participants = {name: LockingParticipant(name) for name in ("stock", "payments", "ship")}
    coordinator = TwoPhaseCoordinator(participants, InMemoryDecisionLog())
    ids = itertools.count()

    def run() -> None:
        txid = f"t{next(ids)}"
        for participant in participants.values():
            participant.stage(txid, txid, 1)
        assert coordinator.execute(txid).finished
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats, target = (5, 0.05) if args.quick else (15, 0.2)
    print(f"Python {platform.python_version()} on {platform.platform()}; "
          f"{repeats} repeats, median per call")
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp, redis_server() as port:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        with SQLiteDatabase(Path(tmp) / "locks.db") as locks_db, \
                SQLiteDatabase(Path(tmp) / "saga.db") as saga_db:
            cases: list[tuple[str, Callable[[], None]]] = [
                ("(a) lock acquire+release, in memory", lock_cycle(InMemoryLockStore())),
                ("(a) lock acquire+release, SQLite", lock_cycle(SQLiteLockStore(locks_db))),
                ("(a) lock acquire+release, Redis (ours, fencing token)",
                 lock_cycle(RedisLockStore(client, prefix="bench:"))),
                ("(a) lock acquire+release, Redis (redis-py Lock, peer)", redis_py_cycle(client)),
                ("(b) saga run, 3 steps, in-memory log", saga_run(InMemorySagaLog())),
                ("(b) saga run, 3 steps, SQLite log", saga_run(SQLiteSagaLog(saga_db))),
                ("(c) 2PC execute, 3 participants", two_phase()),
            ]
            for label, fn in cases:
                rows.append((label, per_call_us(fn, repeats, target)))
        client.close()
    width = max(len(label) for label, _ in rows)
    for label, us in rows:
        print(f"{label:<{width}}  {us:10.1f} us")
    ours = dict(rows)
    ratio = (ours["(a) lock acquire+release, Redis (ours, fencing token)"]
             / ours["(a) lock acquire+release, Redis (redis-py Lock, peer)"])
    print(f"Redis lock, ours / redis-py: {ratio:.2f}x")


if __name__ == "__main__":
    main()
