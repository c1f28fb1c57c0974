"""CQRS projection throughput on SQLite: one commit per event against one per batch.

Guide section 5.4 (CQRS 模式). Run from the repository root::

    python benchmarks/bench_cqrs.py            # about 30 s
    python benchmarks/bench_cqrs.py --quick    # a few seconds, noisier

What is measured (a Markdown table on stdout): events/s projected into the bank read
model, from a SQLite event store of ``--events`` events (100 accounts opened, then
deposits), into a fresh SQLite read model file per run (``synchronous=FULL``, WAL):

* **per-event commit**: each event applied as its own transaction, update and
  checkpoint together (``SQLiteBankReadModel.apply`` for every event read: what
  ``Projector.poll`` did before issue 11);
* **Projector, batch of N**: ``Projector(batch_size=N).catch_up()``: read N events,
  decode them, apply them and move the checkpoint in one transaction;
* **raw SQL ceiling**: the same UPDATE/INSERT statements and one checkpoint per batch
  of 500, prepared as parameter tuples beforehand and sent with ``executemany``: no
  reading, decoding or Python per event; what SQLite itself costs.
* **in-memory read model** (reference): ``InMemoryBankReadModel`` through the same
  Projector (no disk at all).

Each case runs ``--repeats`` times, interleaved; the table gives the median events/s,
and the ratio to the per-event commit. Every run checks the read model it built (the
balances and the checkpoint), so no case can skip work.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from patterns.consistency.cqrs import InMemoryBankReadModel, Projector, SQLiteBankReadModel
from patterns.consistency.eventsourcing import (
    AccountOpened,
    BankAccount,
    EventSourcedRepository,
    MoneyDeposited,
    SQLiteEventStore,
    bank_codec,
)
from patterns.storage.sqlite import SQLiteDatabase

ACCOUNTS = 100


def populate(path: Path, events: int) -> int:
    """An event store of ``events`` events over ACCOUNTS accounts; the total deposited."""
    database = SQLiteDatabase(path)
    store = SQLiteEventStore(database)
    repository = EventSourcedRepository(store, BankAccount, bank_codec())
    accounts = [BankAccount.open(f"acct-{i}", f"owner-{i % 10}") for i in range(ACCOUNTS)]
    deposits = events - ACCOUNTS
    for n in range(deposits):
        accounts[n % ACCOUNTS].deposit(1 + n % 7)
    for account in accounts:
        repository.save(account)
    assert store.head_position() == events
    database.close()
    return sum(1 + n % 7 for n in range(deposits))


def check(model: SQLiteBankReadModel | InMemoryBankReadModel, events: int, total: int) -> None:
    assert model.checkpoint() == events, (model.checkpoint(), events)
    balances = 0
    for i in range(ACCOUNTS):
        view = model.account(f"acct-{i}")
        assert view is not None
        balances += view.balance
    assert balances == total, (balances, total)


def per_event(store: SQLiteEventStore, folder: Path, events: int, total: int) -> float:
    model = SQLiteBankReadModel(SQLiteDatabase(folder / f"pe{time.perf_counter_ns()}.db"))
    codec = bank_codec()
    started = time.perf_counter()
    while True:
        records = store.read_all(model.checkpoint(), 500)
        if not records:
            break
        for record in records:  # Projector.poll before issue 11: a commit per event
            model.apply(record, codec.decode(record.event_type, record.data))
    elapsed = time.perf_counter() - started
    check(model, events, total)
    model.database.close()
    return events / elapsed


def batched(batch_size: int) -> Callable[[SQLiteEventStore, Path, int, int], float]:
    def run(store: SQLiteEventStore, folder: Path, events: int, total: int) -> float:
        model = SQLiteBankReadModel(SQLiteDatabase(folder / f"b{time.perf_counter_ns()}.db"))
        projector = Projector(store, model, bank_codec(), batch_size=batch_size)
        started = time.perf_counter()
        projector.catch_up()
        elapsed = time.perf_counter() - started
        check(model, events, total)
        model.database.close()
        return events / elapsed
    return run


def in_memory(store: SQLiteEventStore, folder: Path, events: int, total: int) -> float:
    model = InMemoryBankReadModel()
    projector = Projector(store, model, bank_codec())
    started = time.perf_counter()
    projector.catch_up()
    elapsed = time.perf_counter() - started
    check(model, events, total)
    return events / elapsed


def raw_sql(store: SQLiteEventStore, folder: Path, events: int, total: int) -> float:
    """The write side alone: statements prepared beforehand, executemany per batch."""
    codec = bank_codec()
    opens: list[tuple[object, ...]] = []
    deposits: list[tuple[object, ...]] = []
    batches: list[tuple[list[tuple[object, ...]], list[tuple[object, ...]], int]] = []
    for record in store.read_all():
        event = codec.decode(record.event_type, record.data)
        if isinstance(event, AccountOpened):
            opens.append(("bank", record.stream, event.owner, record.version))
        elif isinstance(event, MoneyDeposited):
            deposits.append((event.amount, record.version, "bank", record.stream))
        if record.position % 500 == 0 or record.position == events:
            batches.append((opens, deposits, record.position))
            opens, deposits = [], []
    model = SQLiteBankReadModel(SQLiteDatabase(folder / f"r{time.perf_counter_ns()}.db"))
    connection: sqlite3.Connection = model.database.connection()
    started = time.perf_counter()
    for opened, deposited, position in batches:
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            "INSERT OR REPLACE INTO cqrs_accounts (name, account_id, owner, balance, closed,"
            " version) VALUES (?, ?, ?, 0, 0, ?)", opened)
        connection.executemany(
            "UPDATE cqrs_accounts SET balance = balance + ?, version = ?"
            " WHERE name = ? AND account_id = ?", deposited)
        connection.execute(
            "INSERT INTO cqrs_checkpoints (name, position) VALUES ('bank', ?)"
            " ON CONFLICT (name) DO UPDATE SET position = excluded.position", (position,))
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    check(model, events, total)
    model.database.close()
    return events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--dir", default=None, help="directory for the database files")
    args = parser.parse_args()
    events = args.events or (3_000 if args.quick else 10_000)
    repeats = args.repeats or (3 if args.quick else 7)
    print(f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
          f"{os.cpu_count()} CPUs, {events:,} events, {repeats} repeats (median)")
    cases: list[tuple[str, Callable[[SQLiteEventStore, Path, int, int], float]]] = [
        ("per-event commit (before issue 11)", per_event),
        ("Projector, batch of 50", batched(50)),
        ("Projector, batch of 500 (default)", batched(500)),
        ("raw SQL ceiling (executemany, batch of 500)", raw_sql),
        ("in-memory read model (reference)", in_memory),
    ]
    with tempfile.TemporaryDirectory(dir=args.dir) as name:
        folder = Path(name)
        print(f"database directory: {folder}\n")
        total = populate(folder / "events.db", events)
        database = SQLiteDatabase(folder / "events.db")
        store = SQLiteEventStore(database)
        rates: dict[str, list[float]] = {label: [] for label, _ in cases}
        for _ in range(repeats):
            for label, case in cases:
                rates[label].append(case(store, folder, events, total))
        database.close()
    base = statistics.median(rates[cases[0][0]])
    print("| projection into SQLite | events/s | vs per-event commit |\n|---|---:|---:|")
    for label, _ in cases:
        rate = statistics.median(rates[label])
        print(f"| {label} | {rate:,.0f} | {rate / base:.1f}x |")


if __name__ == "__main__":
    main()
