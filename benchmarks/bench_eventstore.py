"""Event-store append rate on SQLite, and load time with and without snapshots.

Guide section 5.3 (最终一致性与事件溯源). Run from the repository root::

    python benchmarks/bench_eventstore.py            # about 20 s
    python benchmarks/bench_eventstore.py --quick    # a few seconds, noisier

What is measured (each a Markdown table on stdout):

(a) Append rate: events/s appended to ``SQLiteEventStore`` (one event per append, each
    append its own ``BEGIN IMMEDIATE`` transaction with ``synchronous=FULL``, the
    expected version checked) by 1 writer and by 4 writers, as threads of one process
    and as 4 separate processes, each writer on its own stream; and 4 threads on ONE
    stream (every append carries the version it read; a conflict means re-read and
    retry: the table counts the conflicts). The database file lives in ``--dir``
    (default: a temporary directory): the numbers depend on that disk's fsync.
(b) Load time of one bank account of 10,000 events: full replay against snapshot
    (every 100 events) + tail; median of the repeats.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from patterns.consistency.eventsourcing import (
    BankAccount,
    ConcurrencyConflictError,
    EventMetadata,
    EventSourcedRepository,
    NewEvent,
    SQLiteEventStore,
    SQLiteSnapshotStore,
    bank_codec,
)
from patterns.storage.sqlite import SQLiteDatabase

_WORKER = """
import sys, time
from patterns.consistency.eventsourcing import EventMetadata, NewEvent, SQLiteEventStore
from patterns.storage.sqlite import SQLiteDatabase
path, stream, count, start_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
store = SQLiteEventStore(SQLiteDatabase(path))
while time.time() < start_at:
    time.sleep(0.001)
for i in range(count):
    store.append(stream, [NewEvent("T", {"i": i}, EventMetadata(f"{stream}-{i}", 0.0))], i)
print(time.time())
"""


def _event(stream: str, i: int) -> NewEvent:
    return NewEvent("MoneyDeposited", {"amount": 1}, EventMetadata(f"{stream}-{i}", 0.0))


def append_threads(path: Path, writers: int, per_writer: int, *, one_stream: bool) -> tuple[
        float, int]:
    """Events/s with ``writers`` threads; conflicts seen (one_stream only)."""
    database = SQLiteDatabase(path)
    store = SQLiteEventStore(database)
    barrier = threading.Barrier(writers + 1)
    conflicts = [0]
    lock = threading.Lock()

    def writer(w: int) -> None:
        stream = "hot" if one_stream else f"s{w}"
        barrier.wait()
        done = 0
        while done < per_writer:
            version = store.stream_version(stream) if one_stream else done
            try:
                store.append(stream, [_event(f"{stream}-{w}", done)], version)
            except ConcurrencyConflictError:
                with lock:
                    conflicts[0] += 1
                continue
            done += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    total = store.head_position()
    assert total == writers * per_writer, (total, writers * per_writer)
    database.close()
    return total / elapsed, conflicts[0]


def append_processes(path: Path, writers: int, per_writer: int) -> float:
    SQLiteEventStore(SQLiteDatabase(path)).database.close()
    root = Path(__file__).resolve().parents[1]
    start_at = time.time() + 1.5
    children = [subprocess.Popen([sys.executable, "-c", _WORKER, str(path), f"p{w}",
                                  str(per_writer), str(start_at)], cwd=root,
                                 stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "PYTHONPATH": str(root)})
                for w in range(writers)]
    ends = []
    for child in children:
        out, _ = child.communicate(timeout=600)
        assert child.returncode == 0
        ends.append(float(out.strip()))
    elapsed = max(ends) - start_at
    with SQLiteDatabase(path) as database:
        total = SQLiteEventStore(database).head_position()
    assert total == writers * per_writer
    return total / elapsed


def load_times(path: Path, events: int, every: int, repeats: int) -> tuple[float, float]:
    database = SQLiteDatabase(path)
    store = SQLiteEventStore(database)
    snapshots = SQLiteSnapshotStore(database)
    codec = bank_codec()
    writer = EventSourcedRepository(store, BankAccount, codec, snapshots=snapshots,
                                    snapshot_every=every)
    account = BankAccount.open("acct", "Ada")
    while account.version + len(account.pending) < events:
        account.deposit(1)
        if len(account.pending) == every or account.version + len(account.pending) == events:
            writer.save(account)
    full = EventSourcedRepository(store, BankAccount, codec)
    snap = EventSourcedRepository(store, BankAccount, codec, snapshots=snapshots)
    full_times, snap_times = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        assert full.load("acct").balance == events - 1
        full_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert snap.load("acct").balance == events - 1
        snap_times.append(time.perf_counter() - started)
    database.close()
    return statistics.median(full_times), statistics.median(snap_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dir", default=None, help="directory for the database files")
    args = parser.parse_args()
    per_writer = 300 if args.quick else 2000
    repeats = 5 if args.quick else 15
    print(f"Python {platform.python_version()}, SQLite {__import__('sqlite3').sqlite_version},"
          f" {os.cpu_count()} CPUs, {per_writer} appends per writer")
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        base = Path(folder)
        print(f"database directory: {base}\n")
        rows = []
        rate, _ = append_threads(base / "t1.db", 1, per_writer, one_stream=False)
        rows.append(("1 thread, own stream", f"{rate:,.0f}", "-"))
        rate, _ = append_threads(base / "t4.db", 4, per_writer, one_stream=False)
        rows.append(("4 threads, own streams", f"{rate:,.0f}", "-"))
        rate = append_processes(base / "p4.db", 4, per_writer)
        rows.append(("4 processes, own streams", f"{rate:,.0f}", "-"))
        rate, conflicts = append_threads(base / "h4.db", 4, per_writer, one_stream=True)
        rows.append(("4 threads, ONE stream (retry on conflict)", f"{rate:,.0f}",
                     f"{conflicts:,}"))
        print("(a) append rate, SQLite, one event per transaction\n")
        print("| writers | events/s | conflicts |\n|---|---:|---:|")
        for row in rows:
            print(f"| {row[0]} | {row[1]} | {row[2]} |")
        full, snap = load_times(base / "load.db", 10_000, 100, repeats)
        print("\n(b) loading a 10,000-event bank account (median)\n")
        print("| load | ms |\n|---|---:|")
        print(f"| full replay | {full * 1000:.1f} |")
        print(f"| snapshot (every 100) + tail | {snap * 1000:.2f} |")
        print(f"\nratio: {full / snap:.0f}x")


if __name__ == "__main__":
    main()
