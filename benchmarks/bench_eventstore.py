"""Event-store append rate on SQLite, and load time with and without snapshots.

Guide section 5.3 (最终一致性与事件溯源). Run from the repository root::

    python benchmarks/bench_eventstore.py            # about 30 s
    python benchmarks/bench_eventstore.py --quick    # a few seconds, noisier
    python benchmarks/bench_eventstore.py --profile  # (c) only, with a cProfile summary

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
(c) Batched appends: events/s of ``EventSourcedRepository.save`` of a new account with
    100 pending events (encode, one transaction), and of ``SQLiteEventStore.append`` of
    100 ready-made events, with the library's encoding and with the encoding it had
    before issue 11 (``dataclasses.asdict`` for the metadata, ``dataclasses.fields`` and
    a fresh ``json.dumps`` encoder per call; patched in for the comparison, see
    ``legacy_encoding``), interleaved, median of the repeats. ``--profile`` adds the
    share of each path's time spent in ``dataclasses.asdict`` and its top functions.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from patterns.consistency import eventsourcing
from patterns.consistency.eventsourcing import (
    BankAccount,
    ConcurrencyConflictError,
    EventCodec,
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


def _legacy_encode(codec: EventCodec, event: object) -> tuple[str, dict[str, Any]]:
    """``EventCodec.encode`` before issue 11, verbatim."""
    name = codec.type_name(event)
    data = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}  # type: ignore[arg-type]
    try:
        json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"event {event!r} is not JSON-serialisable: {error}") from None
    return name, data


@contextlib.contextmanager
def legacy_encoding() -> Iterator[None]:
    """Run the library with the event encoding it had before issue 11: the metadata
    through ``dataclasses.asdict``, the codec through ``dataclasses.fields`` and a JSON
    check, and every ``json.dumps(..., allow_nan=False)`` building its own encoder."""
    saved = (EventMetadata.to_json, EventCodec.encode, eventsourcing._ENCODE_JSON)
    EventMetadata.to_json = dataclasses.asdict  # type: ignore[assignment]
    EventCodec.encode = _legacy_encode  # type: ignore[method-assign,assignment]
    eventsourcing._ENCODE_JSON = lambda o: json.dumps(o, allow_nan=False)
    try:
        yield
    finally:
        (EventMetadata.to_json, EventCodec.encode,  # type: ignore[method-assign]
         eventsourcing._ENCODE_JSON) = saved


class _Batches:
    """New streams of ``size`` events, saved through a repository or appended raw."""

    def __init__(self, path: Path, size: int) -> None:
        self.database = SQLiteDatabase(path)
        self.store = SQLiteEventStore(self.database)
        self.repository = EventSourcedRepository(self.store, BankAccount, bank_codec())
        self.size = size
        self.streams = iter(range(10**9))
        self.ready = [NewEvent("MoneyDeposited", {"amount": 1},
                               EventMetadata(f"e{i}", 1.0, "corr", None))
                      for i in range(size)]

    def save(self, batches: int) -> float:
        accounts = []
        for _ in range(batches):
            account = BankAccount.open(f"s{next(self.streams)}", "Ada")
            for _ in range(self.size - 1):
                account.deposit(1)
            accounts.append(account)
        started = time.perf_counter()
        for account in accounts:
            self.repository.save(account, correlation_id="corr")
        return batches * self.size / (time.perf_counter() - started)

    def append(self, batches: int) -> float:
        started = time.perf_counter()
        for _ in range(batches):
            self.store.append(f"s{next(self.streams)}", self.ready, 0)
        return batches * self.size / (time.perf_counter() - started)


def batched_appends(path: Path, batches: int, repeats: int) -> dict[str, list[float]]:
    bench = _Batches(path, 100)
    bench.save(2)  # warm up
    rates: dict[str, list[float]] = {}
    for _ in range(repeats):
        for how in ("save", "append"):
            for label, context in (("now", contextlib.nullcontext()),
                                   ("before", legacy_encoding())):
                with context:
                    rate = getattr(bench, how)(batches)
                rates.setdefault(f"{how}, {label}", []).append(rate)
    bench.database.close()
    return rates


def profile_appends(path: Path, batches: int) -> None:
    bench = _Batches(path, 100)
    for label, context in (("now", contextlib.nullcontext()),
                           ("before issue 11", legacy_encoding())):
        profiler = cProfile.Profile()
        with context:
            profiler.runcall(bench.save, batches)
        stats = pstats.Stats(profiler)
        total = stats.total_tt  # type: ignore[attr-defined]
        asdict = sum(v[3] for k, v in stats.stats.items()  # type: ignore[attr-defined]
                     if k[2] == "asdict")
        print(f"\nprofile of repository.save, encoding {label}: {total * 1000:.0f} ms, "
              f"{asdict / total:.0%} in dataclasses.asdict; top functions by own time:")
        rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2],  # type: ignore[attr-defined]
                      reverse=True)[:5]
        for (file, line, function), (_, calls, own, cumulative, _) in rows:
            print(f"  {own / total:5.1%} own, {cumulative / total:5.1%} cum  {calls:>7} x "
                  f"{function} ({Path(file).name}:{line})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dir", default=None, help="directory for the database files")
    parser.add_argument("--profile", action="store_true",
                        help="only (c), with a cProfile summary of both encodings")
    args = parser.parse_args()
    if args.profile:
        with tempfile.TemporaryDirectory(dir=args.dir) as folder:
            profile_appends(Path(folder) / "profile.db", 50)
        return
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
        rates = batched_appends(base / "batch.db", 10 if args.quick else 30, repeats)
        print("\n(c) batched appends, 100 events per transaction (median events/s)\n")
        print("| path | encoding now | encoding before issue 11 | ratio |\n|---|---:|---:|---:|")
        for how, label in (("save", "repository.save (encode + append)"),
                           ("append", "store.append (ready-made events)")):
            now = statistics.median(rates[f"{how}, now"])
            before = statistics.median(rates[f"{how}, before"])
            print(f"| {label} | {now:,.0f} | {before:,.0f} | {now / before:.2f}x |")


if __name__ == "__main__":
    main()
