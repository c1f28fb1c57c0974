"""What a duplicate idempotency check costs, per store (guide section 5.5).

Run from the repository root::

    python benchmarks/bench_idempotency.py            # about 15 s
    python benchmarks/bench_idempotency.py --quick    # a few seconds, noisier

A *duplicate check* is what a retry costs when the first request is done: reserve the
key, find it completed, replay the response. Measured, in one run, per call (median
of the repeats):

(a) ``store.reserve`` on a completed key: in memory, SQLite (a file in ``--dir``,
    default a temporary directory; WAL, ``BEGIN IMMEDIATE``), and Redis (a throw-away
    ``redis-server`` on loopback, started by the benchmark). For Redis, the store's
    one Lua script (one round trip) is shown beside the previous two-step check
    (``SET NX PX``, then ``GET``: two round trips) and beside a bare ``GET`` (the
    floor: one round trip doing nothing).
(b) ``IdempotencyHandler.handle`` of a duplicate (reserve, decode, replay) on each store.

No peer library is pinned for idempotency keys: the references are the previous
implementation and a bare round trip.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import per_call_us

from patterns.consistency.idempotency import (
    IdempotencyHandler,
    IdempotencyStore,
    InMemoryIdempotencyStore,
    SQLiteIdempotencyStore,
)
from patterns.storage.sqlite import SQLiteDatabase
from simulations.kit.servers import redis_server


def completed(store: IdempotencyStore, key: str) -> None:
    reservation = store.reserve(key, "fp", lease=30.0)
    assert reservation.token is not None
    store.complete(key, reservation.token, json.dumps({"charge": "ch_1"}), ttl=3600.0)


class TwoStepRedisCheck:
    """The previous reservation: ``SET NX PX``, and on a duplicate a ``GET``."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def reserve(self, key: str) -> Any:
        if self.client.set(self.prefix + key, "{}", nx=True, px=30_000):
            return None
        return json.loads(self.client.get(self.prefix + key))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the SQLite file lives (default: a temporary directory)")
    args = parser.parse_args()
    repeats, target = (5, 0.05) if args.quick else (9, 0.3)
    rows: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        db = SQLiteDatabase(folder / "bench_idempotency.sqlite")
        stores: dict[str, IdempotencyStore] = {
            "in memory": InMemoryIdempotencyStore(),
            "SQLite": SQLiteIdempotencyStore(db),
        }
        with redis_server() as port:
            client: Any = None
            try:
                import redis
            except ImportError:  # the redis package is optional
                port = None
            if port is not None:
                from patterns.consistency.idempotency.redis_store import (
                    RedisIdempotencyStore,
                )

                client = redis.Redis(host="127.0.0.1", port=port)
                stores["Redis"] = RedisIdempotencyStore(client, prefix="bench:")
            for name, store in stores.items():
                completed(store, "dup")
                rows.append(("(a) reserve, duplicate", name, per_call_us(
                    lambda s=store: s.reserve("dup", "fp", lease=30.0), repeats, target)))
            if client is not None:
                old = TwoStepRedisCheck(client, "old:")
                old.reserve("dup")
                rows.append(("(a) reserve, duplicate", "Redis, previous SET NX + GET",
                             per_call_us(lambda: old.reserve("dup"), repeats, target)))
                rows.append(("(a) reserve, duplicate", "Redis, bare GET (one round trip)",
                             per_call_us(lambda: client.get("bench:dup"), repeats, target)))
            for name, store in stores.items():
                handler = IdempotencyHandler(store)
                handler.handle("r", lambda _: {"charge": "ch_1"}, key="h")
                rows.append(("(b) handle, duplicate", name, per_call_us(
                    lambda h=handler: h.handle("r", lambda _: None, key="h"),
                    repeats, target)))
            if client is not None:
                client.close()
        db.close()
    print(f"Python {platform.python_version()}, SQLite "
          f"{__import__('sqlite3').sqlite_version}, {platform.machine()}; median of "
          f"{repeats} repeats\n")
    print("| measure | store | us per call |\n|---|---|---:|")
    for measure, name, us in rows:
        print(f"| {measure} | {name} | {us:.1f} |")
    by = {(m, n): us for m, n, us in rows}
    new = by.get(("(a) reserve, duplicate", "Redis"))
    previous = by.get(("(a) reserve, duplicate", "Redis, previous SET NX + GET"))
    floor = by.get(("(a) reserve, duplicate", "Redis, bare GET (one round trip)"))
    if new and previous and floor:
        print(f"\nRedis duplicate check: previous / now = {previous / new:.2f}x; "
              f"now / bare GET = {new / floor:.2f}x")


if __name__ == "__main__":
    main()
