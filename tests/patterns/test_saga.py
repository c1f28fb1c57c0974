"""Tests for patterns.consistency.saga: log contract, orchestration, recovery, process kills."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patterns.clock import WALL_CLOCK, ManualClock
from patterns.consistency.saga import (
    CompensationFailedError,
    InMemorySagaLog,
    LogKind,
    SagaBusyError,
    SagaCompensated,
    SagaEvent,
    SagaExistsError,
    SagaFinishedError,
    SagaLog,
    SagaOrchestrator,
    SagaOutcome,
    SagaOwnershipLostError,
    SagaRecoveryError,
    SagaResult,
    SagaStep,
    SQLiteSagaLog,
    StepCompensated,
    StepContext,
    StepStarted,
    UnknownSagaError,
)
from patterns.resilience.backoff import ConstantBackoff
from patterns.resilience.retry import RetryPolicy, StopAfterAttempts
from patterns.storage.sqlite import SQLiteDatabase

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["memory", "sqlite"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SagaLog]:
    if request.param == "memory":
        yield InMemorySagaLog()
    else:
        database = SQLiteDatabase(tmp_path / "saga.db")
        yield SQLiteSagaLog(database)
        database.close()


# --------------------------------------------------------------------------- log contract


def test_log_records_in_order_and_reports_unfinished(log: SagaLog) -> None:
    log.begin("a", "order", {"qty": 2})
    log.begin("b", "order", {})
    log.append("a", LogKind.STEP_STARTED, 0)
    log.append("a", LogKind.STEP_COMPLETED, 0)
    log.append("b", LogKind.SAGA_COMPLETED)
    history = log.history("a")
    assert history.data == {"qty": 2}
    assert history.name == "order"
    assert [(r.kind, r.step) for r in history.records] == [
        (LogKind.STEP_STARTED, 0), (LogKind.STEP_COMPLETED, 0)]
    assert log.unfinished() == ["a"]
    log.append("a", LogKind.SAGA_COMPENSATED)
    assert log.unfinished() == []
    assert log.history("a").finished


def test_log_rejects_bad_input(log: SagaLog) -> None:
    log.begin("a", "order", {})
    with pytest.raises(SagaExistsError, match="'a'"):
        log.begin("a", "order", {})
    with pytest.raises(UnknownSagaError, match="'nope'"):
        log.append("nope", LogKind.ABORTING)
    with pytest.raises(UnknownSagaError, match="'nope'"):
        log.history("nope")
    with pytest.raises(ValueError, match="saga_id"):
        log.begin("", "order", {})
    with pytest.raises(ValueError, match=r"step must be an int >= 0.*-1"):
        log.append("a", LogKind.STEP_STARTED, -1)
    with pytest.raises(ValueError, match="step must be None"):
        log.append("a", LogKind.ABORTING, 3)
    with pytest.raises(ValueError, match="JSON"):
        log.begin("c", "order", {"x": object()})
    with pytest.raises(TypeError, match="kind"):
        log.append("a", "step_started", 0)  # type: ignore[arg-type]


def test_sqlite_log_survives_reopening(tmp_path: Path) -> None:
    with SQLiteDatabase(tmp_path / "s.db") as database:
        first = SQLiteSagaLog(database)
        first.begin("a", "order", {"k": 1})
        first.append("a", LogKind.STEP_STARTED, 0)
    with SQLiteDatabase(tmp_path / "s.db") as database:
        again = SQLiteSagaLog(database)
        assert again.unfinished() == ["a"]
        assert again.history("a").records[0].kind is LogKind.STEP_STARTED


# --------------------------------------------------------------------------- orchestration


class Participant:
    """Records effects; deduplicates on the execution id; can be told to fail."""

    def __init__(self) -> None:
        self.effects: list[tuple[str, str]] = []
        self.done: set[str] = set()
        self.undone: set[str] = set()
        self.fail_actions: set[str] = set()
        self.compensation_failures = 0

    def step(self, name: str) -> SagaStep:
        def action(ctx: StepContext) -> None:
            if name in self.fail_actions:
                raise RuntimeError(f"{name} failed")
            if ctx.execution_id not in self.done and ctx.execution_id not in self.undone:
                self.done.add(ctx.execution_id)
                self.effects.append(("do", name))

        def compensation(ctx: StepContext) -> None:
            if self.compensation_failures > 0:
                self.compensation_failures -= 1
                raise ConnectionError("flaky")
            if ctx.execution_id not in self.undone:
                self.undone.add(ctx.execution_id)
                if ctx.execution_id in self.done:  # nothing to undo if it never ran
                    self.effects.append(("undo", name))

        return SagaStep(name, action, compensation)


def fast_retry(attempts: int = 5) -> RetryPolicy:
    return RetryPolicy(stop=StopAfterAttempts(attempts), backoff=ConstantBackoff(0.0),
                       sleep=lambda _s: None)


def orchestrator(log: SagaLog, p: Participant, names: str = "abcd") -> SagaOrchestrator:
    return SagaOrchestrator("order", [p.step(n) for n in names], log,
                            compensation_retry=fast_retry())


def test_all_steps_succeed(log: SagaLog) -> None:
    p = Participant()
    result = orchestrator(log, p).run("s1", {"order": 7})
    assert result.outcome is SagaOutcome.COMPLETED
    assert p.effects == [("do", n) for n in "abcd"]
    assert log.unfinished() == []


def test_failure_compensates_started_steps_in_reverse(log: SagaLog) -> None:
    p = Participant()
    p.fail_actions.add("c")
    events: list[SagaEvent] = []
    orch = orchestrator(log, p)
    orch.listeners.add(events.append)
    result = orch.run("s1")
    assert result.outcome is SagaOutcome.COMPENSATED
    assert result.failed_step == 2
    assert isinstance(result.error, RuntimeError)
    # c failed (its effect never happened), compensation of c tolerates that
    assert p.effects == [("do", "a"), ("do", "b"), ("undo", "b"), ("undo", "a")]
    compensated = [e.step for e in events if isinstance(e, StepCompensated)]
    assert compensated == [2, 1, 0]
    assert isinstance(events[-1], SagaCompensated)
    assert log.unfinished() == []


def test_compensations_are_retried(log: SagaLog) -> None:
    p = Participant()
    p.fail_actions.add("b")
    p.compensation_failures = 3
    result = orchestrator(log, p).run("s1")
    assert result.outcome is SagaOutcome.COMPENSATED
    assert ("undo", "a") in p.effects


def test_compensation_that_keeps_failing_leaves_saga_for_recovery(log: SagaLog) -> None:
    p = Participant()
    p.fail_actions.add("b")
    p.compensation_failures = 100
    orch = orchestrator(log, p)
    with pytest.raises(CompensationFailedError, match="s1"):
        orch.run("s1")
    assert log.unfinished() == ["s1"]
    p.compensation_failures = 0
    results = orch.recover_all()
    assert [r.outcome for r in results] == [SagaOutcome.COMPENSATED]
    assert p.effects == [("do", "a"), ("undo", "a")]


def test_one_saga_that_cannot_be_recovered_does_not_stop_the_others(log: SagaLog) -> None:
    # recover_all() used to stop at the first saga whose compensation kept failing,
    # leaving every saga after it unrecovered (issue 11).
    poison, healthy = Participant(), Participant()
    poison.fail_actions.add("b")
    poison.compensation_failures = 10**6
    healthy.fail_actions.add("b")
    healthy.compensation_failures = 10
    stuck = SagaOrchestrator("order", [poison.step(n) for n in "ab"], log,
                             compensation_retry=fast_retry(), lease=0.0001)
    other = SagaOrchestrator("order", [healthy.step(n) for n in "ab"], log,
                             compensation_retry=fast_retry(), lease=0.0001)
    with pytest.raises(CompensationFailedError):
        stuck.run("s1")
    with pytest.raises(CompensationFailedError):
        other.run("s2")
    assert log.unfinished() == ["s1", "s2"]
    healthy.compensation_failures = 0
    mixed = SagaOrchestrator("order", [_Either(poison, healthy).step(n) for n in "ab"], log,
                             compensation_retry=fast_retry())
    with pytest.raises(SagaRecoveryError) as caught:
        mixed.recover_all()
    assert [r.saga_id for r in caught.value.results] == ["s2"]
    (error,) = caught.value.exceptions
    assert isinstance(error, CompensationFailedError)
    assert error.saga_id == "s1"
    assert log.unfinished() == ["s1"]


class _Either:
    """Steps that act on ``first`` for saga s1 and on ``second`` for the others."""

    def __init__(self, first: Participant, second: Participant) -> None:
        self.first, self.second = first, second

    def step(self, name: str) -> SagaStep:
        steps = {"s1": self.first.step(name)}
        default = self.second.step(name)

        def action(ctx: StepContext) -> None:
            steps.get(ctx.saga_id, default).action(ctx)

        def compensation(ctx: StepContext) -> None:
            steps.get(ctx.saga_id, default).compensation(ctx)

        return SagaStep(name, action, compensation)


@settings(max_examples=60, deadline=None)
@given(crash_after=st.integers(min_value=0, max_value=40), fail_at=st.sampled_from("abcdX"))
def test_crash_at_any_record_then_recovery_is_complete_or_compensated(
        crash_after: int, fail_at: str) -> None:
    """Crash after N log writes (simulated), recover: completed, or every effect undone."""

    class Crash(BaseException):
        pass

    class CrashingLog(InMemorySagaLog):
        writes = 0

        def append(self, saga_id: str, kind: LogKind, step: int | None = None,
                   **ownership: Any) -> None:
            if CrashingLog.writes >= crash_after:
                raise Crash
            CrashingLog.writes += 1
            super().append(saga_id, kind, step, **ownership)

    log = CrashingLog()
    p = Participant()
    p.fail_actions.add(fail_at)
    with contextlib.suppress(Crash):
        orchestrator(log, p).run("s1")
    CrashingLog.writes = -10_000  # the log works again after the restart
    p.fail_actions.clear()
    result = orchestrator(log, p).recover("s1")
    done = {n for kind, n in p.effects if kind == "do"}
    undone = {n for kind, n in p.effects if kind == "undo"}
    if result.outcome is SagaOutcome.COMPLETED:
        assert done == set("abcd")
        assert not undone
    else:
        assert undone == done
    assert len(p.effects) == len(set(p.effects))
    assert log.unfinished() == []


def test_recover_of_finished_saga_runs_nothing(log: SagaLog) -> None:
    p = Participant()
    orch = orchestrator(log, p)
    orch.run("s1")
    before = list(p.effects)
    assert orch.recover("s1").outcome is SagaOutcome.COMPLETED
    assert p.effects == before


def test_bad_input_names_parameter_and_value(log: SagaLog) -> None:
    p = Participant()
    with pytest.raises(ValueError, match="steps must not be empty"):
        SagaOrchestrator("order", [], log)
    with pytest.raises(ValueError, match=r"distinct names.*'a', 'a'"):
        SagaOrchestrator("order", [p.step("a"), p.step("a")], log)
    with pytest.raises(TypeError, match="action must be callable, got 3"):
        SagaStep("x", 3, lambda c: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        SagaStep(" ", lambda c: None, lambda c: None)
    with pytest.raises(TypeError, match="log must be a SagaLog"):
        SagaOrchestrator("order", [p.step("a")], {})  # type: ignore[arg-type]
    orch = orchestrator(log, p)
    orch.run("s1")
    with pytest.raises(SagaExistsError, match="'s1'"):
        orch.run("s1")
    other = SagaOrchestrator("refund", [p.step("a")], log)
    with pytest.raises(ValueError, match="belongs to saga 'order'"):
        other.recover("s1")


def test_events_report_each_step(log: SagaLog) -> None:
    events: list[SagaEvent] = []
    orch = orchestrator(log, Participant())
    orch.listeners.add(events.append)
    orch.run("s1")
    assert [e.step for e in events if isinstance(e, StepStarted)] == [0, 1, 2, 3]


# --------------------------------------------------------------------------- real process kills

WORKER = textwrap.dedent("""
    import sys, time
    from patterns.consistency.saga import SagaOrchestrator, SagaStep, SQLiteSagaLog
    from patterns.storage.sqlite import SQLiteDatabase

    path, mode = sys.argv[1], sys.argv[2]
    db = SQLiteDatabase(path)
    db.executescript(
        "CREATE TABLE IF NOT EXISTS effect (execution_id TEXT, kind TEXT, "
        "PRIMARY KEY (execution_id, kind));"
        "CREATE TABLE IF NOT EXISTS attempt (n INTEGER PRIMARY KEY AUTOINCREMENT, "
        "execution_id TEXT, kind TEXT);")

    def effect(kind, ctx):
        with db.transaction() as c:
            c.execute("INSERT INTO attempt (execution_id, kind) VALUES (?, ?)",
                      (ctx.execution_id, kind))
            if kind == "undo":
                done = c.execute("SELECT 1 FROM effect WHERE execution_id = ? AND kind = 'do'",
                                 (ctx.execution_id,)).fetchone()
                if done is None:   # the action never ran: block it, nothing to undo
                    c.execute("INSERT OR IGNORE INTO effect VALUES (?, 'tombstone')",
                              (ctx.execution_id,))
                    return
            elif c.execute("SELECT 1 FROM effect WHERE execution_id = ? AND kind = 'tombstone'",
                           (ctx.execution_id,)).fetchone():
                raise RuntimeError("already compensated")
            c.execute("INSERT OR IGNORE INTO effect VALUES (?, ?)", (ctx.execution_id, kind))
        time.sleep(0.004)

    def step(name, fails=False):
        def action(ctx):
            if fails and ctx.data["fail"]:
                raise RuntimeError("declined")
            effect("do", ctx)
        return SagaStep(name, action, lambda ctx: effect("undo", ctx))

    steps = [step("reserve"), step("charge"), step("ship", fails=True), step("notify")]
    log = SQLiteSagaLog(db)
    # a short lease (only recovery, after the kill, claims): taken over 0.02 s after it
    orch = SagaOrchestrator("order", steps, log, lease=0.02)
    if mode == "run":
        for i in range(1000):
            orch.run(f"s{i}", {"fail": i % 3 == 0})
            print(i, flush=True)
    else:
        deadline = time.monotonic() + 20
        while log.unfinished() and time.monotonic() < deadline:
            orch.recover_all()   # skips the saga whose lease has not expired yet
            time.sleep(0.01)
        print("recovered", flush=True)
""")


def test_saga_process_killed_at_random_points_recovers(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(52)
    for round_ in range(10):
        path = tmp_path / f"round{round_}.db"
        worker = subprocess.Popen([sys.executable, str(script), str(path), "run"],
                                  stdout=subprocess.PIPE, env=env, text=True)
        assert worker.stdout is not None
        worker.stdout.readline()  # the first saga finished: the worker is warm
        time.sleep(rng.uniform(0.0, 0.08))
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        assert worker.returncode == -signal.SIGKILL
        recovery = subprocess.run([sys.executable, str(script), str(path), "recover"],
                                  capture_output=True, env=env, text=True, timeout=30)
        assert recovery.returncode == 0, recovery.stderr
        with SQLiteDatabase(path) as database:
            log = SQLiteSagaLog(database)
            assert log.unfinished() == []
            c = database.connection()
            effects: dict[str, set[str]] = {}
            for execution_id, kind in c.execute("SELECT execution_id, kind FROM effect"):
                effects.setdefault(execution_id, set()).add(kind)
            by_saga: dict[str, dict[str, set[str]]] = {}
            for execution_id, kinds in effects.items():
                saga_id, _, name = execution_id.split("/")
                by_saga.setdefault(saga_id, {})[name] = kinds
            for saga_id in [row[0] for row in c.execute("SELECT saga_id FROM saga")]:
                outcome = log.history(saga_id).records[-1].kind
                steps = by_saga.get(saga_id, {})
                done = {n for n, k in steps.items() if "do" in k}
                undone = {n for n, k in steps.items() if "undo" in k}
                if outcome is LogKind.SAGA_COMPLETED:
                    assert done == {"reserve", "charge", "ship", "notify"}, saga_id
                    assert not undone
                else:
                    assert outcome is LogKind.SAGA_COMPENSATED, saga_id
                    assert undone == done, saga_id
            # a compensation is attempted at most once per step when it succeeds at once
            # (no retries needed here), and after the kill at most once more by recovery
            counts: dict[str, int] = {}
            for (execution_id,) in c.execute(
                    "SELECT execution_id FROM attempt WHERE kind = 'undo'"):
                counts[execution_id] = counts.get(execution_id, 0) + 1
            assert all(n <= 2 for n in counts.values()), counts
            assert sum(n == 2 for n in counts.values()) <= 1, counts



def test_many_threads_run_sagas_on_one_log(log: SagaLog) -> None:
    import threading

    p = Participant()
    p.fail_actions.add("c")
    orch = orchestrator(log, p, names="abc")
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(20):
                orch.run(f"t{t}-{i}")
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert log.unfinished() == []
    for t in range(8):
        for i in range(20):
            kinds = [r.kind for r in log.history(f"t{t}-{i}").records]
            assert kinds[-1] is LogKind.SAGA_COMPENSATED
            assert kinds.count(LogKind.STEP_COMPENSATED) == 3


# --------------------------------------------------------------------------- one owner per saga


def _blocking_participant(gate: threading.Event, entered: threading.Event,
                          ran: list[str]) -> list[SagaStep]:
    def action(name: str) -> Callable[[StepContext], None]:
        def run(_ctx: StepContext) -> None:
            ran.append(name)
            if name == "b":
                entered.set()
                assert gate.wait(10), "the test never opened the gate"
        return run

    def undo(name: str) -> Callable[[StepContext], None]:
        return lambda _ctx: ran.append(f"undo {name}")

    return [SagaStep(n, action(n), undo(n)) for n in "abc"]


def _finals(log: SagaLog, saga_id: str) -> list[LogKind]:
    return [r.kind for r in log.history(saga_id).records
            if r.kind in (LogKind.SAGA_COMPLETED, LogKind.SAGA_COMPENSATED)]


@pytest.fixture(params=["memory", "sqlite"])
def clocked_log(request: pytest.FixtureRequest, tmp_path: Path
                ) -> Iterator[tuple[SagaLog, ManualClock]]:
    clock = ManualClock(1_000.0)
    if request.param == "memory":
        yield InMemorySagaLog(clock=clock), clock
    else:
        database = SQLiteDatabase(tmp_path / "owned.db")
        yield SQLiteSagaLog(database, clock=clock), clock
        database.close()


def _start_worker(orch: SagaOrchestrator, saga_id: str
                  ) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def work() -> None:
        try:
            outcome.append(orch.run(saga_id))
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread, outcome


def test_recovery_leaves_a_running_saga_to_its_owner(
        clocked_log: tuple[SagaLog, ManualClock]) -> None:
    """Two real workers: recover_all() while the first still runs the saga takes nothing."""
    log, _clock = clocked_log
    gate, entered, ran = threading.Event(), threading.Event(), []
    steps = _blocking_participant(gate, entered, ran)
    first = SagaOrchestrator("order", steps, log, compensation_retry=fast_retry(), lease=30)
    second = SagaOrchestrator("order", steps, log, compensation_retry=fast_retry(), lease=30)
    thread, outcome = _start_worker(first, "s1")
    assert entered.wait(10)
    assert second.recover_all() == []          # the lease is live: not interrupted
    with pytest.raises(SagaBusyError, match="'s1'"):
        second.recover("s1")
    gate.set()
    thread.join(10)
    assert not thread.is_alive()
    (result,) = outcome
    assert isinstance(result, SagaResult)
    assert result.outcome is SagaOutcome.COMPLETED
    assert ran == ["a", "b", "c"]
    assert _finals(log, "s1") == [LogKind.SAGA_COMPLETED]


def test_recovery_takes_over_an_expired_lease_and_the_old_owner_stops(
        clocked_log: tuple[SagaLog, ManualClock]) -> None:
    """The first worker stalls past its lease; recovery compensates; the first worker's
    next record is refused and it runs no further step: one final record, compensated."""
    log, clock = clocked_log
    gate, entered, ran = threading.Event(), threading.Event(), []
    steps = _blocking_participant(gate, entered, ran)
    first = SagaOrchestrator("order", steps, log, compensation_retry=fast_retry(), lease=30)
    second = SagaOrchestrator("order", steps, log, compensation_retry=fast_retry(), lease=30)
    thread, outcome = _start_worker(first, "s1")
    assert entered.wait(10)
    clock.advance(31)                           # the first worker's lease runs out
    (recovered,) = second.recover_all()
    assert recovered.outcome is SagaOutcome.COMPENSATED
    gate.set()                                  # the stalled worker wakes up
    thread.join(10)
    assert not thread.is_alive()
    (error,) = outcome
    assert isinstance(error, SagaOwnershipLostError)
    assert "c" not in ran                       # no step after losing the saga
    assert ran == ["a", "b", "undo b", "undo a"]
    assert _finals(log, "s1") == [LogKind.SAGA_COMPENSATED]
    assert log.history("s1").records[-1].kind is LogKind.SAGA_COMPENSATED
    assert log.unfinished() == []


def test_log_refuses_any_record_after_a_final_one(log: SagaLog) -> None:
    for final in (LogKind.SAGA_COMPLETED, LogKind.SAGA_COMPENSATED):
        saga_id = f"s-{final.value}"
        log.begin(saga_id, "order", {})
        log.append(saga_id, final)
        for kind, step in ((LogKind.STEP_STARTED, 0), (LogKind.ABORTING, None),
                           (LogKind.SAGA_COMPLETED, None), (LogKind.SAGA_COMPENSATED, None)):
            with pytest.raises(SagaFinishedError, match=saga_id):
                log.append(saga_id, kind, step)
        with pytest.raises(SagaFinishedError):
            log.claim(saga_id, "someone", 10)
        assert _finals(log, saga_id) == [final]


def test_log_fences_owners(clocked_log: tuple[SagaLog, ManualClock]) -> None:
    log, clock = clocked_log
    log.begin("s", "order", {}, owner="A", lease=10)
    assert log.history("s").owner == "A"
    assert log.history("s").lease_expires_at == clock.now() + 10
    log.append("s", LogKind.STEP_STARTED, 0, owner="A", lease=10)
    with pytest.raises(SagaOwnershipLostError, match="'B'"):
        log.append("s", LogKind.STEP_COMPLETED, 0, owner="B")
    with pytest.raises(SagaOwnershipLostError):
        log.append("s", LogKind.STEP_COMPLETED, 0)          # no owner: refused too
    assert not log.claim("s", "B", 10)                      # A's lease is live
    clock.advance(5)
    log.append("s", LogKind.STEP_COMPLETED, 0, owner="A", lease=10)   # renews to +10
    clock.advance(6)
    assert not log.claim("s", "B", 10)                      # renewed: still A's
    clock.advance(5)
    assert log.claim("s", "B", 10)                          # expired: B takes over
    with pytest.raises(SagaOwnershipLostError, match="'A'"):
        log.append("s", LogKind.STEP_STARTED, 1, owner="A", lease=10)
    assert not log.release("s", "A")
    assert log.release("s", "B")
    assert log.history("s").owner is None
    assert [r.kind for r in log.history("s").records] == [
        LogKind.STEP_STARTED, LogKind.STEP_COMPLETED]


def test_a_worker_that_fails_releases_its_saga_for_recovery(log: SagaLog) -> None:
    p = Participant()
    p.fail_actions.add("b")
    p.compensation_failures = 100
    orch = orchestrator(log, p)
    with pytest.raises(CompensationFailedError):
        orch.run("s1")
    assert log.history("s1").owner is None      # no need to wait for the lease
    p.compensation_failures = 0
    assert [r.outcome for r in orch.recover_all()] == [SagaOutcome.COMPENSATED]


def test_sqlite_saga_lease_is_on_the_wall_clock(tmp_path: Path) -> None:
    """A lease in a file is read by other processes, after reboots: wall time."""
    with SQLiteDatabase(tmp_path / "wall.db") as database:
        log = SQLiteSagaLog(database)
        assert log.clock is WALL_CLOCK
        log.begin("s", "order", {}, owner="A", lease=30)
        expires = log.history("s").lease_expires_at
        assert expires is not None
        assert time.time() + 20 < expires <= time.time() + 30


def test_sqlite_log_made_before_ownership_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as old:
        old.executescript(
            "CREATE TABLE saga (seq INTEGER PRIMARY KEY AUTOINCREMENT, saga_id TEXT NOT NULL "
            "UNIQUE, name TEXT NOT NULL, data TEXT NOT NULL, finished INTEGER NOT NULL "
            "DEFAULT 0); INSERT INTO saga (saga_id, name, data) VALUES ('old', 'order', '{}');")
    with SQLiteDatabase(path) as database:
        log = SQLiteSagaLog(database)
        assert log.unfinished() == ["old"]
        assert log.history("old").owner is None
        assert [r.outcome for r in orchestrator(log, Participant()).recover_all()] == [
            SagaOutcome.COMPENSATED]


OWNER_WORKER = textwrap.dedent("""
    import os, sys, time
    from patterns.consistency.saga import (SagaOrchestrator, SagaOwnershipLostError,
                                           SagaStep, SQLiteSagaLog)
    from patterns.storage.sqlite import SQLiteDatabase

    path, gate, ran = sys.argv[1], sys.argv[2], sys.argv[3]

    def action(name):
        def run(ctx):
            with open(ran, "a") as f:
                f.write(name + "\\n")
            if name == "b":
                deadline = time.monotonic() + 20
                while not os.path.exists(gate) and time.monotonic() < deadline:
                    time.sleep(0.01)
        return run

    steps = [SagaStep(n, action(n), action("undo " + n)) for n in "abc"]
    orch = SagaOrchestrator("order", steps, SQLiteSagaLog(SQLiteDatabase(path)), lease=0.3)
    try:
        orch.run("s1")
    except SagaOwnershipLostError:
        sys.exit(3)
""")


def test_two_processes_race_on_one_sqlite_saga(tmp_path: Path) -> None:
    """A worker process stalls past its lease; this process recovers the saga; the worker
    wakes, is refused, and runs no further step."""
    script = tmp_path / "owner.py"
    script.write_text(OWNER_WORKER)
    path, gate, ran = tmp_path / "race.db", tmp_path / "gate", tmp_path / "ran.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen([sys.executable, str(script), str(path), str(gate), str(ran)],
                              env=env)
    try:
        deadline = time.monotonic() + 20
        while not (ran.exists() and "b" in ran.read_text().split()):
            assert time.monotonic() < deadline
            assert worker.poll() is None
            time.sleep(0.01)
        with SQLiteDatabase(path) as database:
            log = SQLiteSagaLog(database)
            steps = [SagaStep(n, lambda c: None,
                              lambda c, n=n: ran.open("a").write(f"undo {n}\n"))  # type: ignore[misc]
                     for n in "abc"]
            recovery = SagaOrchestrator("order", steps, log, lease=0.3)
            results = recovery.recover_all()
            assert results == []                    # the worker's lease is live
            while not results:                      # until the stalled worker's lease expires
                assert time.monotonic() < deadline
                time.sleep(0.05)
                results = recovery.recover_all()
            assert [r.outcome for r in results] == [SagaOutcome.COMPENSATED]
            gate.touch()
            assert worker.wait(timeout=20) == 3     # SagaOwnershipLostError
            assert _finals(log, "s1") == [LogKind.SAGA_COMPENSATED]
            assert log.history("s1").records[-1].kind is LogKind.SAGA_COMPENSATED
        assert ran.read_text().split("\n")[:-1] == ["a", "b", "undo b", "undo a"]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
