"""Tests for patterns.consistency.twophase: decision log contract, phases, crash recovery."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from patterns.clock import WALL_CLOCK, ManualClock
from patterns.consistency.twophase import (
    Decision,
    DecisionLog,
    DecisionLogged,
    DecisionSent,
    InMemoryDecisionLog,
    LockingParticipant,
    SQLiteDecisionLog,
    TransactionResult,
    TwoPhaseCoordinator,
    TwoPhaseEvent,
)
from patterns.resilience.backoff import ConstantBackoff
from patterns.resilience.retry import RetryPolicy, StopAfterAttempts
from patterns.storage.sqlite import SQLiteDatabase


@pytest.fixture(params=["memory", "sqlite"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DecisionLog]:
    if request.param == "memory":
        yield InMemoryDecisionLog()
    else:
        database = SQLiteDatabase(tmp_path / "2pc.db")
        yield SQLiteDecisionLog(database)
        database.close()


def fast(attempts: int = 5) -> RetryPolicy:
    return RetryPolicy(stop=StopAfterAttempts(attempts), backoff=ConstantBackoff(0.0),
                       sleep=lambda _s: None)


# --------------------------------------------------------------------------- log contract


def test_log_contract(log: DecisionLog) -> None:
    log.begin("t1", ("a", "b"))
    log.begin("t2", ("a",))
    assert log.decision("t1") is None
    log.decide("t1", Decision.COMMIT)
    log.decide("t1", Decision.COMMIT)  # idempotent
    assert log.decision("t1") is Decision.COMMIT
    pending = log.pending()
    assert [(p.txid, p.participants, p.decision) for p in pending] == [
        ("t1", ("a", "b"), Decision.COMMIT), ("t2", ("a",), None)]
    log.finish("t1")
    assert [p.txid for p in log.pending()] == ["t2"]


def test_log_bad_input(log: DecisionLog) -> None:
    log.begin("t1", ("a",))
    log.decide("t1", Decision.ABORT)
    with pytest.raises(ValueError, match="already decided abort"):
        log.decide("t1", Decision.COMMIT)
    with pytest.raises(ValueError, match="'t1' already exists"):
        log.begin("t1", ("a",))
    with pytest.raises(LookupError, match="'zz'"):
        log.decision("zz")
    with pytest.raises(LookupError, match="'zz'"):
        log.finish("zz")
    with pytest.raises(ValueError, match="txid must be a non-empty string"):
        log.begin("", ("a",))
    with pytest.raises(TypeError, match="decision must be a Decision"):
        log.decide("t1", "commit")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- protocol


def setup(log: DecisionLog, votes: tuple[bool, ...] = (True, True, True),
          **kw: object) -> tuple[TwoPhaseCoordinator, list[LockingParticipant]]:
    parts = [LockingParticipant(f"p{i}", vote=v) for i, v in enumerate(votes)]
    for p in parts:
        p.stage("t1", "k", p.name)
    coordinator = TwoPhaseCoordinator({p.name: p for p in parts}, log,
                                      decision_retry=fast(), **kw)  # type: ignore[arg-type]
    return coordinator, parts


def test_all_yes_commits(log: DecisionLog) -> None:
    coordinator, parts = setup(log)
    result = coordinator.execute("t1")
    assert result.decision is Decision.COMMIT
    assert result.finished
    assert all(p.data == {"k": p.name} for p in parts)
    assert all(not p.locked_keys() for p in parts)
    assert log.pending() == []


def test_any_no_aborts(log: DecisionLog) -> None:
    coordinator, parts = setup(log, (True, False, True))
    result = coordinator.execute("t1")
    assert result.decision is Decision.ABORT
    assert result.votes == {"p0": True, "p1": False, "p2": True}
    assert all(p.data == {} and not p.locked_keys() for p in parts)


def test_prepare_timeout_aborts(log: DecisionLog) -> None:
    release = threading.Event()

    class Slow(LockingParticipant):
        def prepare(self, txid: str) -> bool:
            release.wait(5)
            return super().prepare(txid)

    slow = Slow("slow")
    slow.stage("t1", "k", 1)
    fast_one = LockingParticipant("fast")
    fast_one.stage("t1", "k", 2)
    coordinator = TwoPhaseCoordinator({"slow": slow, "fast": fast_one}, log,
                                      prepare_timeout=0.1, decision_retry=fast())
    started = time.monotonic()
    result = coordinator.execute("t1")
    assert time.monotonic() - started < 1.0
    release.set()
    assert result.decision is Decision.ABORT
    assert result.votes["slow"] is None
    assert fast_one.decided("t1") is Decision.ABORT


def test_prepare_error_counts_as_no(log: DecisionLog) -> None:
    class Broken(LockingParticipant):
        def prepare(self, txid: str) -> bool:
            raise OSError("disk full")

    broken = Broken("b")
    ok = LockingParticipant("ok")
    ok.stage("t1", "k", 1)
    result = TwoPhaseCoordinator({"b": broken, "ok": ok}, log,
                                 decision_retry=fast()).execute("t1")
    assert result.decision is Decision.ABORT
    assert result.votes["b"] is None


@pytest.mark.parametrize("votes", [(True, True, True), (True, False, True)])
def test_prepares_in_the_callers_thread_decide_alike(log: DecisionLog,
                                                     votes: tuple[bool, ...]) -> None:
    seen: list[str] = []

    class Watched(LockingParticipant):
        def prepare(self, txid: str) -> bool:
            seen.append(threading.current_thread().name)
            return super().prepare(txid)

    parts = [Watched(f"p{i}") for i in range(len(votes))]
    for part, vote in zip(parts, votes, strict=True):
        if vote:
            part.stage("t1", "k", part.name)
    coordinator = TwoPhaseCoordinator({p.name: p for p in parts}, log, decision_retry=fast(),
                                      prepare_in_threads=False)
    result = coordinator.execute("t1")
    assert seen == [threading.current_thread().name] * len(parts)  # no thread per vote
    assert result.decision is (Decision.COMMIT if all(votes) else Decision.ABORT)
    assert result.votes == {p.name: v for p, v in zip(parts, votes, strict=True)}
    assert result.finished


def test_an_inline_prepare_that_raises_counts_as_no(log: DecisionLog) -> None:
    class Broken(LockingParticipant):
        def prepare(self, txid: str) -> bool:
            raise OSError("disk full")

    ok = LockingParticipant("ok")
    ok.stage("t1", "k", 1)
    result = TwoPhaseCoordinator({"b": Broken("b"), "ok": ok}, log, decision_retry=fast(),
                                 prepare_in_threads=False).execute("t1")
    assert result.decision is Decision.ABORT
    assert result.votes["b"] is None
    assert ok.decided("t1") is Decision.ABORT


def test_commit_failure_is_retried(log: DecisionLog) -> None:
    class Flaky(LockingParticipant):
        failures = 3

        def commit(self, txid: str) -> None:
            if Flaky.failures:
                Flaky.failures -= 1
                raise ConnectionError("lost")
            super().commit(txid)

    flaky = Flaky("flaky")
    flaky.stage("t1", "k", 1)
    result = TwoPhaseCoordinator({"flaky": flaky}, log, decision_retry=fast()).execute("t1")
    assert result.finished
    assert flaky.data == {"k": 1}


def test_commit_failure_past_retries_stays_pending_and_recovery_finishes(
        log: DecisionLog) -> None:
    class Down(LockingParticipant):
        up = False

        def commit(self, txid: str) -> None:
            if not Down.up:
                raise ConnectionError("down")
            super().commit(txid)

    down = Down("down")
    down.stage("t1", "k", 1)
    coordinator = TwoPhaseCoordinator({"down": down}, log, decision_retry=fast(3))
    events: list[TwoPhaseEvent] = []
    coordinator.listeners.add(events.append)
    result = coordinator.execute("t1")
    assert result.unacknowledged == ("down",)
    assert [p.txid for p in log.pending()] == ["t1"]
    assert down.is_prepared("t1")
    assert any(isinstance(e, DecisionSent) and not e.acknowledged for e in events)
    Down.up = True
    (again,) = coordinator.recover()
    assert again.finished
    assert down.data == {"k": 1}
    assert log.pending() == []


def test_coordinator_crash_after_logging_commit(log: DecisionLog) -> None:
    """Participants stay prepared, locks held, until a recovering coordinator re-sends."""

    class Crash(BaseException):
        pass

    class CrashAfterDecide(DecisionLog):
        def __init__(self, inner: DecisionLog) -> None:
            self.inner = inner

        def begin(self, txid: str, participants: tuple[str, ...]) -> None:
            self.inner.begin(txid, participants)

        def decide(self, txid: str, decision: Decision) -> None:
            self.inner.decide(txid, decision)
            raise Crash

        def decision(self, txid: str) -> Decision | None:
            return self.inner.decision(txid)

        def finish(self, txid: str) -> None:
            self.inner.finish(txid)

        def pending(self):  # type: ignore[no-untyped-def]
            return self.inner.pending()

    parts = [LockingParticipant(f"p{i}") for i in range(3)]
    for p in parts:
        p.stage("t1", "k", p.name)
    named = {p.name: p for p in parts}
    with pytest.raises(Crash):
        TwoPhaseCoordinator(named, CrashAfterDecide(log), decision_retry=fast()).execute("t1")
    assert log.decision("t1") is Decision.COMMIT
    # blocked: prepared, holding the lock, another transaction cannot touch the key
    for p in parts:
        assert p.is_prepared("t1")
        assert p.locked_keys() == {"k": "t1"}
        assert p.wait_decided("t1", timeout=0.05) is None
        with pytest.raises(RuntimeError, match="locked by transaction 't1'"):
            p.stage("t2", "k", "other")
    events: list[TwoPhaseEvent] = []
    recovering = TwoPhaseCoordinator(named, log, decision_retry=fast())
    recovering.listeners.add(events.append)
    (result,) = recovering.recover()
    assert result.decision is Decision.COMMIT
    assert result.finished
    assert not any(isinstance(e, DecisionLogged) for e in events)  # re-sent, not re-decided
    for p in parts:
        assert p.data == {"k": p.name}
        assert not p.locked_keys()


def test_crash_before_decision_recovers_as_abort(log: DecisionLog) -> None:
    p = LockingParticipant("p")
    p.stage("t1", "k", 1)
    log.begin("t1", ("p",))
    p.prepare("t1")  # the coordinator died during the prepare phase
    (result,) = TwoPhaseCoordinator({"p": p}, log, decision_retry=fast()).recover(min_age=0)
    assert result.decision is Decision.ABORT
    assert p.decided("t1") is Decision.ABORT
    assert p.data == {}


def test_waiting_participant_wakes_on_decision(log: DecisionLog) -> None:
    p = LockingParticipant("p")
    p.stage("t1", "k", 1)
    assert p.prepare("t1")
    seen: list[Decision | None] = []
    waiter = threading.Thread(target=lambda: seen.append(p.wait_decided("t1", 5.0)))
    waiter.start()
    time.sleep(0.02)
    assert waiter.is_alive()
    p.commit("t1")
    waiter.join(2)
    assert seen == [Decision.COMMIT]


def test_bad_input_names_parameter_and_value(log: DecisionLog) -> None:
    p = LockingParticipant("p")
    with pytest.raises(ValueError, match="participants must be a non-empty mapping"):
        TwoPhaseCoordinator({}, log)
    with pytest.raises(ValueError, match="prepare_timeout must be > 0, got -1"):
        TwoPhaseCoordinator({"p": p}, log, prepare_timeout=-1)
    with pytest.raises(TypeError, match="participant 'x' has no prepare"):
        TwoPhaseCoordinator({"x": object()}, log)  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="log must be a DecisionLog"):
        TwoPhaseCoordinator({"p": p}, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="prepare_in_threads must be a bool, got 'no'"):
        TwoPhaseCoordinator({"p": p}, log, prepare_in_threads="no")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key must be a non-empty string"):
        p.stage("t", "", 1)
    p.stage("t", "k", 1)
    with pytest.raises(RuntimeError, match="never prepared"):
        p.commit("t")


# --------------------------------------------------------------------------- issue 11


def test_a_prepare_that_never_returns_does_not_keep_the_process_alive() -> None:
    code = (
        "import threading\n"
        "from patterns.consistency.twophase import InMemoryDecisionLog, TwoPhaseCoordinator\n"
        "class Hang:\n"
        "    def prepare(self, txid): threading.Event().wait()\n"
        "    def commit(self, txid): pass\n"
        "    def abort(self, txid): pass\n"
        "coordinator = TwoPhaseCoordinator({'h': Hang()}, InMemoryDecisionLog(),\n"
        "                                  prepare_timeout=0.2)\n"
        "print(coordinator.execute('t').decision.value)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=20)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "abort"


def test_prepare_threads_are_daemons(log: DecisionLog) -> None:
    gate = threading.Event()
    seen: list[bool] = []

    class Watcher(LockingParticipant):
        def prepare(self, txid: str) -> bool:
            seen.append(threading.current_thread().daemon)
            gate.wait(5)
            return super().prepare(txid)

    p = Watcher("p")
    p.stage("t1", "k", 1)
    result = TwoPhaseCoordinator({"p": p}, log, prepare_timeout=0.05,
                                 decision_retry=fast()).execute("t1")
    gate.set()
    assert result.decision is Decision.ABORT
    assert seen == [True]


def _blocked_coordinator(log: DecisionLog) -> tuple[
        threading.Thread, list[object], threading.Event, threading.Event,
        dict[str, LockingParticipant]]:
    gate, entered = threading.Event(), threading.Event()

    class Slow(LockingParticipant):
        def prepare(self, txid: str) -> bool:
            entered.set()
            gate.wait(10)
            return super().prepare(txid)

    parts: dict[str, LockingParticipant] = {"slow": Slow("slow"),
                                            "quick": LockingParticipant("quick")}
    for part in parts.values():
        part.stage("t1", "k", 1)
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(TwoPhaseCoordinator(parts, log, prepare_timeout=20,
                                               decision_retry=fast()).execute("t1"))
        except Exception as error:
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert entered.wait(10)
    return thread, outcome, gate, entered, parts


def test_recovery_leaves_a_live_coordinator_alone(log: DecisionLog) -> None:
    """A second coordinator's recover() while the first collects votes presumes nothing."""
    thread, outcome, gate, _entered, parts = _blocked_coordinator(log)
    assert TwoPhaseCoordinator(parts, log, decision_retry=fast()).recover() == []
    gate.set()
    thread.join(10)
    assert not thread.is_alive()
    (result,) = outcome
    assert isinstance(result, TransactionResult)
    assert result.decision is Decision.COMMIT
    assert all(p.data == {"k": 1} for p in parts.values())
    assert log.pending() == []


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_recovery_of_an_old_undecided_transaction_wins_over_its_slow_coordinator(
        kind: str, tmp_path: Path) -> None:
    clock = ManualClock(1_000.0)
    log: DecisionLog = (InMemoryDecisionLog(clock=clock) if kind == "memory"
                        else SQLiteDecisionLog(tmp_path / "old.db", clock=clock))
    thread, outcome, gate, _entered, parts = _blocked_coordinator(log)
    clock.advance(60)  # older than prepare_timeout + grace: its coordinator is presumed dead
    (recovered,) = TwoPhaseCoordinator(parts, log, decision_retry=fast()).recover()
    assert recovered.decision is Decision.ABORT
    gate.set()
    thread.join(10)
    assert not thread.is_alive()
    (late,) = outcome   # the slow coordinator learns the abort: no commit reaches anyone
    assert isinstance(late, TransactionResult)
    assert late.decision is Decision.ABORT
    assert log.decision("t1") is Decision.ABORT
    assert all(p.data == {} and p.decided("t1") is Decision.ABORT for p in parts.values())


def test_log_refuses_to_finish_an_undecided_transaction(log: DecisionLog) -> None:
    log.begin("t1", ("a",))
    with pytest.raises(ValueError, match="'t1' cannot finish"):
        log.finish("t1")
    assert [p.txid for p in log.pending()] == ["t1"]
    log.decide("t1", Decision.COMMIT)
    log.finish("t1")
    with pytest.raises(ValueError, match="already decided commit"):
        log.decide("t1", Decision.ABORT)
    assert log.decision("t1") is Decision.COMMIT


def test_sqlite_decision_log_stamps_transactions_on_the_wall_clock(tmp_path: Path) -> None:
    log = SQLiteDecisionLog(tmp_path / "wall.db")
    assert log.clock is WALL_CLOCK
    before = time.time()
    log.begin("t1", ("a",))
    (pending,) = log.pending()
    assert pending.began_at is not None
    assert before - 1 <= pending.began_at <= time.time() + 1


@pytest.mark.parametrize("timeout", [math.inf, 1e10, 1.7e308])
def test_wait_decided_accepts_forever(timeout: float) -> None:
    p = LockingParticipant("p")
    p.stage("t1", "k", 1)
    assert p.prepare("t1")
    seen: list[object] = []

    def wait() -> None:
        try:
            seen.append(p.wait_decided("t1", timeout))
        except BaseException as error:
            seen.append(error)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    time.sleep(0.02)
    p.commit("t1")
    waiter.join(5)
    assert seen == [Decision.COMMIT]
