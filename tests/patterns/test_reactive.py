"""Tests for :mod:`patterns.dataflow.reactive` (guide section 1.2): observables, the
observer contract, operators and schedulers."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patterns.clock import ManualClock
from patterns.dataflow.reactive import (
    AsyncioScheduler,
    Observable,
    Sink,
    Subject,
    ThreadScheduler,
    VirtualTimeScheduler,
    merge,
)
from patterns.dataflow.reactive._observable import _SerialSink


class Recorder:
    """An observer that records every call, and checks the contract as it goes."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.errors: list[BaseException] = []
        self.completed = 0
        self.after_terminal = 0
        self.lock = threading.Lock()

    @property
    def terminated(self) -> bool:
        return bool(self.errors) or self.completed > 0

    def on_next(self, value: Any) -> None:
        with self.lock:
            if self.terminated:
                self.after_terminal += 1
            self.values.append(value)

    def on_error(self, error: BaseException) -> None:
        with self.lock:
            if self.terminated:
                self.after_terminal += 1
            self.errors.append(error)

    def on_complete(self) -> None:
        with self.lock:
            if self.terminated:
                self.after_terminal += 1
            self.completed += 1


def collect(observable: Observable[Any]) -> Recorder:
    recorder = Recorder()
    observable.subscribe(recorder)
    return recorder


# --------------------------------------------------------------------------- operators


def test_map_filter_scan_take_compose() -> None:
    r = collect(Observable.from_iterable(range(10)).map(lambda x: x * 3)
                .filter(lambda x: x % 2 == 0).scan(lambda acc, x: acc + x, 0).take(3))
    assert r.values == [0, 6, 18]  # 0, 0+6, 6+12
    assert r.completed == 1
    assert not r.errors


def test_scan_without_seed_starts_with_the_first_value() -> None:
    assert collect(Observable.of(5, 1, 2).scan(lambda a, b: a * b)).values == [5, 5, 10]


def test_take_stops_an_endless_source() -> None:
    produced = []

    def counting() -> Any:
        for n in itertools.count():
            produced.append(n)
            yield n

    r = collect(Observable.from_iterable(counting()).map(lambda x: x + 1).take(3))
    assert r.values == [1, 2, 3]
    assert r.completed == 1
    assert len(produced) == 3  # the producer stopped at once


def test_take_zero_completes_without_subscribing() -> None:
    subscribed = []
    source: Observable[int] = Observable(lambda sink: subscribed.append(1))
    r = collect(source.take(0))
    assert r.completed == 1
    assert subscribed == []


@pytest.mark.parametrize(("count", "skip", "expected"), [
    (2, None, [[0, 1], [2, 3], [4]]),
    (3, 1, [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4], [4]]),
    (2, 3, [[0, 1], [3, 4]]),
])
def test_buffer_with_count(count: int, skip: int | None, expected: list[list[int]]) -> None:
    r = collect(Observable.from_iterable(range(5)).buffer_with_count(count, skip))
    assert r.values == expected
    assert r.completed == 1


def test_merge_interleaves_and_completes_after_all() -> None:
    a: Subject[str] = Subject()
    b: Subject[str] = Subject()
    r = collect(merge(a, b))
    a.on_next("a1")
    b.on_next("b1")
    a.on_complete()
    assert r.completed == 0
    b.on_next("b2")
    b.on_complete()
    assert r.values == ["a1", "b1", "b2"]
    assert r.completed == 1


def test_merge_fails_fast_and_disposes_the_others() -> None:
    a: Subject[int] = Subject()
    b: Subject[int] = Subject()
    r = collect(a.merge(b))
    assert a.observer_count == b.observer_count == 1
    a.on_error(RuntimeError("boom"))
    assert [str(e) for e in r.errors] == ["boom"]
    assert b.observer_count == 0  # disposed
    b.on_next(1)
    assert r.values == []


def test_merge_of_nothing_completes() -> None:
    assert collect(merge()).completed == 1


def test_a_failing_map_function_ends_the_stream_and_disposes_the_source() -> None:
    subject: Subject[int] = Subject()
    r = collect(subject.map(lambda x: 10 // x))
    subject.on_next(5)
    subject.on_next(0)
    subject.on_next(1)
    assert r.values == [2]
    assert len(r.errors) == 1
    assert isinstance(r.errors[0], ZeroDivisionError)
    assert subject.observer_count == 0


def test_a_failing_subscribe_function_is_an_error() -> None:
    def broken(sink: Sink[int]) -> None:
        raise OSError("cannot open")

    r = collect(Observable(broken))
    assert isinstance(r.errors[0], OSError)


def test_sources_empty_never_throw() -> None:
    assert collect(Observable.empty()).completed == 1
    never = collect(Observable.never())
    assert not never.terminated
    err = collect(Observable.throw(KeyError("k")))
    assert isinstance(err.errors[0], KeyError)


@pytest.mark.parametrize("bad", [
    lambda: Observable.of(1).map(3),  # type: ignore[arg-type]
    lambda: Observable.of(1).take(-1),
    lambda: Observable.of(1).buffer_with_count(0),
    lambda: Observable.of(1).buffer_with_count(2, 0),
    lambda: Observable.of(1).buffer_with_time(0, VirtualTimeScheduler()),
    lambda: Observable.interval(float("inf"), VirtualTimeScheduler()),
    lambda: Observable.from_iterable(5),  # type: ignore[arg-type]
    lambda: Observable(None),  # type: ignore[arg-type]
    lambda: merge(Observable.of(1), [2]),  # type: ignore[arg-type]
])
def test_bad_arguments_raise(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        bad()


def test_take_names_the_parameter() -> None:
    with pytest.raises(ValueError, match=r"count must be >= 0, got -1"):
        Observable.of(1).take(-1)


# --------------------------------------------------------------------------- the contract


def test_nothing_after_completion_or_error() -> None:
    def unruly(sink: Sink[int]) -> None:
        sink.on_next(1)
        sink.on_complete()
        sink.on_next(2)
        sink.on_error(RuntimeError("late"))
        sink.on_complete()

    r = collect(Observable(unruly))
    assert r.values == [1]
    assert r.completed == 1
    assert not r.errors
    assert r.after_terminal == 0

    def failing(sink: Sink[int]) -> None:
        sink.on_error(RuntimeError("first"))
        sink.on_next(1)
        sink.on_error(RuntimeError("second"))
        sink.on_complete()

    r = collect(Observable(failing))
    assert r.values == []
    assert [str(e) for e in r.errors] == ["first"]
    assert r.completed == 0


@given(st.lists(st.sampled_from(["next", "error", "complete", "dispose"]), max_size=30))
def test_contract_holds_for_any_sequence_of_signals(signals: list[str]) -> None:
    sinks: list[Sink[int]] = []
    r = Recorder()
    subscription = Observable(sinks.append).subscribe(r)
    sink = sinks[0]
    expected: list[int] = []
    over = False
    for index, signal in enumerate(signals):
        if signal == "next":
            sink.on_next(index)
            if not over:
                expected.append(index)
        elif signal == "error":
            sink.on_error(RuntimeError(str(index)))
            over = True
        elif signal == "complete":
            sink.on_complete()
            over = True
        else:
            subscription.dispose()
            over = True
    assert r.values == expected
    assert len(r.errors) + r.completed <= 1
    assert r.after_terminal == 0


def test_an_exception_in_on_next_goes_to_on_error_and_disposes() -> None:
    subject: Subject[int] = Subject()
    errors: list[BaseException] = []
    seen: list[int] = []

    def on_next(value: int) -> None:
        seen.append(value)
        if value == 2:
            raise ValueError("bad value")

    subscription = subject.subscribe(on_next, on_error=errors.append)
    for value in (1, 2, 3):
        subject.on_next(value)
    assert seen == [1, 2]
    assert [str(e) for e in errors] == ["bad value"]
    assert subscription.disposed
    assert subject.observer_count == 0


def test_an_error_without_on_error_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="patterns.dataflow.reactive"):
        Observable.throw(RuntimeError("unheard")).subscribe(lambda v: None)
    assert any("unheard" in str(rec.exc_info) for rec in caplog.records)


def test_subscribe_accepts_keyword_callables_and_rejects_mixtures() -> None:
    seen: list[int] = []
    done: list[bool] = []
    Observable.of(1, 2).subscribe(on_next=seen.append, on_complete=lambda: done.append(True))
    assert seen == [1, 2]
    assert done == [True]
    with pytest.raises(TypeError):
        Observable.of(1).subscribe(Recorder(), on_complete=lambda: None)
    with pytest.raises(TypeError):
        Observable.of(1).subscribe(seen.append, on_next=seen.append)
    with pytest.raises(TypeError):
        Observable.of(1).subscribe(42)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- disposal


def test_dispose_is_idempotent_and_runs_the_teardown_once() -> None:
    teardowns: list[int] = []
    subscription = Observable(lambda sink: (lambda: teardowns.append(1))).subscribe(Recorder())
    subscription.dispose()
    subscription.dispose()
    assert teardowns == [1]
    assert subscription.disposed
    with Observable(lambda sink: (lambda: teardowns.append(2))).subscribe(Recorder()):
        pass
    assert teardowns == [1, 2]


def test_dispose_from_inside_on_next_stops_at_once() -> None:
    subject: Subject[int] = Subject()
    seen: list[int] = []
    holder: dict[str, Any] = {}

    def on_next(value: int) -> None:
        seen.append(value)
        if value == 2:
            holder["subscription"].dispose()

    holder["subscription"] = subject.map(lambda x: x).subscribe(on_next)
    for value in range(5):
        subject.on_next(value)
    assert seen == [0, 1, 2]
    assert subject.observer_count == 0


def test_completion_disposes_the_upstream() -> None:
    teardowns: list[int] = []

    def source(sink: Sink[int]) -> Any:
        sink.on_next(1)
        return lambda: teardowns.append(1)

    subject: Subject[int] = Subject()
    collect(Observable(source).merge(subject).take(1))
    assert teardowns == [1]
    assert subject.observer_count == 0


def flood_then_dispose(chain: Callable[[Subject[int]], Observable[int]]) -> dict[str, int]:
    """Three producer threads flood a Subject; the subscriber sits behind ``chain(subject)``;
    once it has 50 values, this thread disposes. Returns what the subscriber saw:
    ``running`` (calls still running when ``dispose()`` returned), ``after`` (calls that
    started after it returned), ``overlaps`` (calls that ran at once), ``observers`` (the
    subject's observers left)."""
    subject: Subject[int] = Subject()
    state = {"after": 0, "running": 0, "disposed": False, "count": 0, "overlaps": 0}
    lock = threading.Lock()

    def on_next(value: int) -> None:
        with lock:
            state["running"] += 1
            if state["running"] > 1:
                state["overlaps"] += 1
            if state["disposed"]:
                state["after"] += 1
            state["count"] += 1
        time.sleep(0)  # let the disposing thread in
        with lock:
            state["running"] -= 1

    subscription = chain(subject).subscribe(on_next)
    stop = threading.Event()

    def produce() -> None:
        n = 0
        while not stop.is_set():
            subject.on_next(n)
            n += 1

    producers = [threading.Thread(target=produce) for _ in range(3)]
    for thread in producers:
        thread.start()
    deadline = time.monotonic() + 5
    while state["count"] < 50 and time.monotonic() < deadline:
        time.sleep(0.0005)
    subscription.dispose()
    with lock:
        state["disposed"] = True
        running = state["running"]
    time.sleep(0.002)
    stop.set()
    for thread in producers:
        thread.join(5)
    assert state["count"] >= 50, "the producers never got going"
    return {"running": running, "after": state["after"], "overlaps": state["overlaps"],
            "observers": subject.observer_count}


def test_dispose_from_another_thread_no_delivery_after_it_returns() -> None:
    """A producer floods an observer; another thread disposes: after ``dispose()``
    returns, not one more value arrives, and no call is still running."""
    for _ in range(20):
        assert flood_then_dispose(lambda subject: subject) == {
            "running": 0, "after": 0, "overlaps": 0, "observers": 0}


def test_calls_are_serialized_across_threads() -> None:
    subject: Subject[int] = Subject()
    state = {"inside": 0, "overlaps": 0, "count": 0}
    lock = threading.Lock()

    def on_next(value: int) -> None:
        with lock:
            state["inside"] += 1
            if state["inside"] > 1:
                state["overlaps"] += 1
        time.sleep(0)
        with lock:
            state["inside"] -= 1
            state["count"] += 1

    subject.subscribe(on_next)
    threads = [threading.Thread(target=lambda: [subject.on_next(i) for i in range(300)])
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert state["overlaps"] == 0
    assert state["count"] == 8 * 300  # nothing lost by serialization


# --------------------------------------------------------------------------- re-entrance


def test_subscribing_from_inside_on_next_does_not_deadlock() -> None:
    """The guide's MapOperator holds its lock while calling observers: a re-entrant
    subscribe deadlocks there. Here it works, also through ``map``."""
    subject: Subject[int] = Subject()
    mapped = subject.map(lambda x: x * 10)
    late: list[int] = []

    def on_next(value: int) -> None:
        if value == 10:
            mapped.subscribe(late.append)

    done = threading.Event()

    def scenario() -> None:
        mapped.subscribe(on_next)
        for value in (1, 2, 3):
            subject.on_next(value)
        done.set()

    thread = threading.Thread(target=scenario, daemon=True)
    thread.start()
    thread.join(5)
    assert done.is_set(), "re-entrant subscribe deadlocked"
    assert late == [20, 30]


def test_emitting_from_inside_on_next_is_queued_not_recursive() -> None:
    subject: Subject[int] = Subject()
    order: list[str] = []

    def on_next(value: int) -> None:
        order.append(f"start {value}")
        if value < 3:
            subject.on_next(value + 1)
        order.append(f"end {value}")

    subject.subscribe(on_next)
    subject.on_next(1)
    assert order == ["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]


# --------------------------------------------------------------------------- subject


def test_subject_multicasts_and_replays_the_terminal_to_late_subscribers() -> None:
    subject: Subject[int] = Subject()
    first, second = collect(subject), Recorder()
    subject.on_next(1)
    subject.subscribe(second)
    subject.on_next(2)
    subject.on_complete()
    subject.on_next(3)
    late = collect(subject)
    assert first.values == [1, 2]
    assert second.values == [2]
    assert first.completed == second.completed == late.completed == 1
    failed: Subject[int] = Subject()
    failed.on_error(KeyError("x"))
    failed.on_complete()
    assert isinstance(collect(failed).errors[0], KeyError)


def test_subject_disposal_removes_the_observer() -> None:
    subject: Subject[int] = Subject()
    subscription = subject.subscribe(Recorder())
    assert subject.observer_count == 1
    subscription.dispose()
    assert subject.observer_count == 0


# --------------------------------------------------------------------------- time


def test_buffer_with_time_on_virtual_time() -> None:
    scheduler = VirtualTimeScheduler()
    subject: Subject[int] = Subject()
    stamped: list[tuple[float, list[int]]] = []
    done: list[float] = []
    subject.buffer_with_time(1.0, scheduler).subscribe(
        lambda items: stamped.append((scheduler.now(), items)),
        on_complete=lambda: done.append(scheduler.now()))
    subject.on_next(1)
    scheduler.advance(0.5)
    subject.on_next(2)
    scheduler.advance(1.0)  # t = 1.5: the first window closed at 1.0
    subject.on_next(3)
    scheduler.advance(1.0)  # t = 2.5
    scheduler.advance(0.9)  # t = 3.4: an empty window closed at 3.0
    subject.on_next(4)
    subject.on_complete()
    assert stamped == [(1.0, [1, 2]), (2.0, [3]), (3.0, []), (3.4, [4])]
    assert done == [3.4]
    assert scheduler.pending == 0  # the timer was cancelled


def test_buffer_with_time_disposal_cancels_the_timer() -> None:
    scheduler = VirtualTimeScheduler()
    subject: Subject[int] = Subject()
    seen: list[list[int]] = []
    subscription = subject.buffer_with_time(1.0, scheduler).subscribe(seen.append)
    subject.on_next(1)
    subscription.dispose()
    assert scheduler.pending == 0
    assert subject.observer_count == 0
    scheduler.advance(5)
    assert seen == []


def test_buffer_with_time_error_drops_the_window() -> None:
    scheduler = VirtualTimeScheduler()
    subject: Subject[int] = Subject()
    r = collect(subject.buffer_with_time(1.0, scheduler))
    subject.on_next(1)
    subject.on_error(RuntimeError("x"))
    assert r.values == []
    assert len(r.errors) == 1
    assert scheduler.pending == 0


def test_interval_on_virtual_time_without_drift() -> None:
    scheduler = VirtualTimeScheduler(ManualClock(100.0))
    stamps: list[tuple[float, int]] = []
    subscription = Observable.interval(0.25, scheduler).take(5).subscribe(
        lambda n: stamps.append((scheduler.now(), n)))
    scheduler.advance(10)
    assert stamps == [(100.25, 0), (100.5, 1), (100.75, 2), (101.0, 3), (101.25, 4)]
    assert subscription.disposed
    assert scheduler.pending == 0


def test_virtual_scheduler_runs_in_time_order_and_cancels() -> None:
    scheduler = VirtualTimeScheduler()
    ran: list[tuple[float, str]] = []
    scheduler.schedule(2.0, lambda: ran.append((scheduler.now(), "b")))
    scheduler.schedule(1.0, lambda: ran.append((scheduler.now(), "a")))
    scheduler.schedule(1.0, lambda: ran.append((scheduler.now(), "a2")))
    cancelled = scheduler.schedule(1.5, lambda: ran.append((scheduler.now(), "x")))
    assert cancelled.cancel() is True
    assert cancelled.cancel() is False
    assert scheduler.advance(3.0) == 3
    assert ran == [(1.0, "a"), (1.0, "a2"), (2.0, "b")]
    assert scheduler.now() == 3.0
    with pytest.raises(ValueError, match="delay"):
        scheduler.schedule(-1, lambda: None)
    with pytest.raises(ValueError, match="when"):
        scheduler.advance_to(1.0)


def test_thread_scheduler_buffers_by_real_time() -> None:
    with ThreadScheduler() as scheduler:
        subject: Subject[int] = Subject()
        batches: list[list[int]] = []
        got = threading.Event()

        def on_batch(items: list[int]) -> None:
            batches.append(items)
            if sum(len(b) for b in batches) == 3:
                got.set()

        subscription = subject.buffer_with_time(0.02, scheduler).subscribe(on_batch)
        for value in (1, 2, 3):
            subject.on_next(value)
        assert got.wait(5)
        subscription.dispose()
        assert [v for b in batches for v in b] == [1, 2, 3]
        fired = threading.Event()
        scheduler.schedule(0.0, fired.set).cancel()
        late = threading.Event()
        scheduler.schedule(0.0, late.set)
        assert late.wait(5)
        assert not fired.is_set()
    with pytest.raises(RuntimeError, match="shut down"):
        scheduler.schedule(0, lambda: None)


def test_asyncio_scheduler_buffers_on_the_loop() -> None:
    async def main() -> list[list[int]]:
        scheduler = AsyncioScheduler()
        subject: Subject[int] = Subject()
        batches: list[list[int]] = []
        subject.buffer_with_time(0.01, scheduler).subscribe(batches.append)
        subject.on_next(1)
        subject.on_next(2)
        await asyncio.sleep(0.015)
        subject.on_next(3)
        subject.on_complete()
        return batches

    assert asyncio.run(main()) == [[1, 2], [3]]


# --------------------------------------------------------------------------- the fast path


def count_safe_observers(monkeypatch: pytest.MonkeyPatch,
                         sinks: list[Any] | None = None) -> list[object]:
    """Record the observer of every safe observer created from now on (a :class:`Sink`,
    or the subscriber's lighter one behind a built-in producer), and the safe observers
    themselves in ``sinks``."""
    created: list[object] = []
    for cls in (Sink, _SerialSink):
        def counting(self: Any, observer: Any, original: Any = cls.__init__) -> None:
            created.append(observer)
            if sinks is not None:
                sinks.append(self)
            original(self, observer)

        monkeypatch.setattr(cls, "__init__", counting)
    return created


def test_a_chain_of_built_in_operators_pays_one_safe_observer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11: a lock per stage made map/filter 3.6x slower than reactivex. Over a
    built-in source, built-in operators pass values on without a safe observer of their
    own: the only one is the subscriber's."""
    created = count_safe_observers(monkeypatch)
    r = collect(Observable.from_iterable(range(10)).map(lambda x: x * 3)
                .filter(lambda x: x % 2 == 0).scan(lambda a, x: a + x, 0)
                .buffer_with_count(2).take(2))
    assert r.values == [[0, 6], [18, 36]]
    assert r.completed == 1
    assert len(created) == 1
    assert created[0] is r


def test_untrusted_sources_and_merge_still_get_a_safe_observer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    created = count_safe_observers(monkeypatch)
    subject: Subject[int] = Subject()
    collect(subject.map(lambda x: x).filter(bool))
    assert len(created) == 2  # the subscriber's, and the one the subject calls
    created.clear()
    collect(Observable(lambda sink: None).map(lambda x: x))
    assert len(created) == 2  # a user's subscribe function gets a safe observer
    created.clear()
    collect(merge(Observable.of(1), Observable.of(2)).map(lambda x: x))
    assert len(created) == 2  # merge's output is serialized before map


def test_the_contract_holds_on_the_fast_path() -> None:
    """Nothing after a terminal event, errors of operator functions reach on_error and
    stop the source, dispose from inside on_next stops the producer at once."""
    produced: list[int] = []

    def counting() -> Any:
        for n in itertools.count():
            produced.append(n)
            yield n

    r = collect(Observable.from_iterable(counting()).map(lambda x: 10 // (3 - x))
                .filter(lambda x: x >= 0).scan(lambda a, x: a + x, 0))
    assert r.values == [3, 8, 18]
    assert [type(e) for e in r.errors] == [ZeroDivisionError]
    assert r.after_terminal == 0
    assert len(produced) == 4  # the source stopped at the failing value
    produced.clear()
    seen: list[int] = []
    holder: dict[str, Any] = {}

    def on_next(value: int) -> None:
        seen.append(value)
        if value == 4:
            holder["subscription"].dispose()

    holder["subscription"] = Observable.from_iterable(counting()).map(lambda x: x * 2) \
        .subscribe(on_next)
    assert seen == [0, 2, 4]
    assert len(produced) == 3
    assert holder["subscription"].disposed


def test_a_failing_subscriber_stops_a_cold_chain() -> None:
    produced: list[int] = []
    errors: list[BaseException] = []

    def counting() -> Any:
        for n in itertools.count():
            produced.append(n)
            yield n

    def on_next(value: int) -> None:
        if value == 2:
            raise ValueError("no")

    Observable.from_iterable(counting()).map(lambda x: x).take(100).subscribe(
        on_next, on_error=errors.append)
    assert [str(e) for e in errors] == ["no"]
    assert len(produced) == 3


def test_dispose_from_another_thread_stops_a_cold_chain(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An endless cold chain on a producer thread; another thread disposes: after
    ``dispose()`` returns, the subscriber receives nothing more and the producer ends."""
    state = {"after": 0, "count": 0, "disposed": False, "running": 0}
    lock = threading.Lock()
    started = threading.Event()

    def on_next(value: int) -> None:
        with lock:
            state["running"] += 1
            if state["disposed"]:
                state["after"] += 1
            state["count"] += 1
            if state["count"] >= 50:
                started.set()
        time.sleep(0)  # let the disposing thread in
        with lock:
            state["running"] -= 1

    sinks: list[Any] = []
    count_safe_observers(monkeypatch, sinks)
    chain = Observable.from_iterable(itertools.count()).map(lambda x: x + 1) \
        .filter(lambda x: x % 2 == 0)
    thread = threading.Thread(target=lambda: chain.subscribe(on_next), daemon=True)
    thread.start()
    assert started.wait(5)
    sinks[0].dispose()  # the subscriber's safe observer, created first
    with lock:
        state["disposed"] = True
        running = state["running"]
    thread.join(5)
    assert not thread.is_alive()
    assert running == 0
    assert state["after"] == 0


def test_concurrent_producers_are_serialized_before_the_fast_path() -> None:
    """A user's subscribe function emitting from several threads at once, through map:
    map's function and the subscriber never run on two threads at once."""
    state = {"inside": 0, "overlaps": 0, "count": 0}
    lock = threading.Lock()

    def enter() -> None:
        with lock:
            state["inside"] += 1
            if state["inside"] > 1:
                state["overlaps"] += 1

    def leave() -> None:
        with lock:
            state["inside"] -= 1

    def fn(x: int) -> int:
        enter()
        time.sleep(0)
        leave()
        return x

    def source(sink: Sink[int]) -> None:
        threads = [threading.Thread(target=lambda: [sink.on_next(i) for i in range(200)])
                   for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        sink.on_complete()

    r = collect(Observable(source).map(fn).filter(lambda x: True))
    assert state["overlaps"] == 0
    assert len(r.values) == 800
    assert r.completed == 1
    a: Subject[int] = Subject()
    b: Subject[int] = Subject()
    r2 = collect(merge(a, b).map(fn))
    threads = [threading.Thread(target=lambda s=s: [s.on_next(i) for i in range(200)])
               for s in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert state["overlaps"] == 0
    assert len(r2.values) == 400


def test_dispose_from_another_thread_through_an_operator_chain() -> None:
    """Producers on three threads push into a Subject; the subscriber sits behind
    ``map`` and ``filter`` (the fast path). After ``dispose()`` returns from another
    thread, no call of the subscriber is running and none starts."""
    for _ in range(10):
        assert flood_then_dispose(
            lambda subject: subject.map(lambda x: x + 1).filter(lambda x: x > 0)) == {
            "running": 0, "after": 0, "overlaps": 0, "observers": 0}
