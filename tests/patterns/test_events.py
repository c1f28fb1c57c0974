"""Tests for :mod:`patterns.events`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest

from patterns.events import Listeners


class Recorder:
    """A listener that records what it receives, under a name."""

    def __init__(self, name: str, log: list[tuple[str, object]]) -> None:
        self.name = name
        self.log = log

    def __call__(self, event: object) -> None:
        self.log.append((self.name, event))


# --------------------------------------------------------------------------- add / remove


def test_a_new_registry_is_empty() -> None:
    listeners: Listeners[int] = Listeners()
    assert len(listeners) == 0
    assert not listeners
    assert repr(listeners) == "Listeners(0 subscribed)"


def test_add_subscribes_and_emit_delivers_the_event() -> None:
    received: list[int] = []
    listeners: Listeners[int] = Listeners()
    listeners.add(received.append)
    assert listeners
    assert len(listeners) == 1
    listeners.emit(7)
    listeners.emit(8)
    assert received == [7, 8]


def test_add_refuses_a_non_callable() -> None:
    listeners: Listeners[int] = Listeners()
    with pytest.raises(TypeError, match=r"listener must be callable, got 42"):
        listeners.add(42)  # type: ignore[arg-type]
    assert len(listeners) == 0


def test_remove_unsubscribes_and_reports_whether_it_was_there() -> None:
    received: list[int] = []
    listeners: Listeners[int] = Listeners()
    listener = received.append
    listeners.add(listener)
    assert listeners.remove(listener) is True
    assert listeners.remove(listener) is False
    listeners.emit(1)
    assert received == []
    assert len(listeners) == 0


def test_remove_of_an_unknown_listener_returns_false_and_keeps_the_others() -> None:
    log: list[tuple[str, object]] = []
    listeners: Listeners[int] = Listeners()
    listeners.add(Recorder("a", log))
    assert listeners.remove(Recorder("b", log)) is False
    listeners.emit(1)
    assert log == [("a", 1)]


def test_remove_matches_an_equal_bound_method() -> None:
    received: list[int] = []
    listeners: Listeners[int] = Listeners()
    listeners.add(received.append)
    # A fresh bound method object, equal but not identical to the registered one.
    assert listeners.remove(received.append) is True
    listeners.emit(1)
    assert received == []


def test_unsubscribe_callback_removes_the_listener_and_is_idempotent() -> None:
    received: list[int] = []
    listeners: Listeners[int] = Listeners()
    unsubscribe = listeners.add(received.append)
    listeners.emit(1)
    unsubscribe()
    listeners.emit(2)
    unsubscribe()  # a second call is harmless
    assert received == [1]
    assert len(listeners) == 0


def test_remove_takes_away_only_one_registration() -> None:
    received: list[int] = []
    listeners: Listeners[int] = Listeners()
    listeners.add(received.append)
    listeners.add(received.append)
    listeners.emit(1)
    assert received == [1, 1]
    assert listeners.remove(received.append) is True
    listeners.emit(2)
    assert received == [1, 1, 2]
    assert len(listeners) == 1


def test_unsubscribe_keeps_other_listeners() -> None:
    log: list[tuple[str, object]] = []
    listeners: Listeners[str] = Listeners()
    listeners.add(Recorder("a", log))
    unsubscribe_b = listeners.add(Recorder("b", log))
    listeners.add(Recorder("c", log))
    unsubscribe_b()
    listeners.emit("x")
    assert log == [("a", "x"), ("c", "x")]


# --------------------------------------------------------------------------- emit


def test_emit_calls_listeners_in_subscription_order() -> None:
    log: list[tuple[str, object]] = []
    listeners: Listeners[int] = Listeners()
    for name in "abcde":
        listeners.add(Recorder(name, log))
    listeners.emit(1)
    listeners.emit(2)
    assert log == [(n, 1) for n in "abcde"] + [(n, 2) for n in "abcde"]


def test_emit_with_no_listeners_does_nothing() -> None:
    Listeners[int]().emit(1)  # no error


def test_a_failing_listener_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[tuple[str, object]] = []
    listeners: Listeners[str] = Listeners()

    def boom(event: str) -> None:
        raise RuntimeError(f"boom on {event}")

    listeners.add(Recorder("before", log))
    listeners.add(boom)
    listeners.add(Recorder("after", log))
    with caplog.at_level(logging.ERROR, logger="patterns.events"):
        listeners.emit("evt")  # does not raise

    assert log == [("before", "evt"), ("after", "evt")]
    records = [r for r in caplog.records if r.name == "patterns.events"]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    assert "failed on event 'evt'" in record.getMessage()
    assert "boom" in record.getMessage()  # names the listener
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert str(record.exc_info[1]) == "boom on evt"


def test_a_listener_raising_base_exception_is_not_swallowed() -> None:
    # Only Exception is logged; KeyboardInterrupt and friends must get through.
    listeners: Listeners[int] = Listeners()

    def interrupt(event: int) -> None:
        raise KeyboardInterrupt

    listeners.add(interrupt)
    with pytest.raises(KeyboardInterrupt):
        listeners.emit(1)


def test_a_listener_that_unsubscribes_itself_during_emit() -> None:
    log: list[tuple[str, object]] = []
    listeners: Listeners[int] = Listeners()
    listeners.add(Recorder("a", log))
    holder: dict[str, Callable[[], None]] = {}

    def once(event: int) -> None:
        log.append(("once", event))
        holder["unsubscribe"]()

    holder["unsubscribe"] = listeners.add(once)
    listeners.add(Recorder("c", log))

    listeners.emit(1)
    # The emit in progress still reaches everyone, the one after no longer reaches `once`.
    assert log == [("a", 1), ("once", 1), ("c", 1)]
    assert len(listeners) == 2
    listeners.emit(2)
    assert log[3:] == [("a", 2), ("c", 2)]


def test_a_listener_that_removes_a_later_listener_during_emit() -> None:
    # Emit iterates a snapshot: a listener removed mid-emit still gets the current event.
    log: list[tuple[str, object]] = []
    listeners: Listeners[int] = Listeners()
    late = Recorder("late", log)

    def remover(event: int) -> None:
        log.append(("remover", event))
        listeners.remove(late)

    listeners.add(remover)
    listeners.add(late)
    listeners.emit(1)
    assert log == [("remover", 1), ("late", 1)]
    listeners.emit(2)
    assert log[2:] == [("remover", 2)]


def test_a_listener_added_during_emit_receives_only_later_events() -> None:
    log: list[tuple[str, object]] = []
    listeners: Listeners[int] = Listeners()
    newcomer = Recorder("new", log)

    def adder(event: int) -> None:
        log.append(("adder", event))
        if event == 1:
            listeners.add(newcomer)

    listeners.add(adder)
    listeners.emit(1)
    assert log == [("adder", 1)]
    listeners.emit(2)
    assert log[1:] == [("adder", 2), ("new", 2)]


# --------------------------------------------------------------------------- threads


def test_emit_from_many_threads_delivers_every_event_exactly_once() -> None:
    threads_count, per_thread = 8, 500
    lock = threading.Lock()
    seen: list[tuple[int, int]] = []
    counts = [0, 0]

    def first(event: tuple[int, int]) -> None:
        with lock:
            seen.append(event)
            counts[0] += 1

    def second(event: tuple[int, int]) -> None:
        with lock:
            counts[1] += 1

    listeners: Listeners[tuple[int, int]] = Listeners()
    listeners.add(first)
    listeners.add(second)
    barrier = threading.Barrier(threads_count)

    def worker(index: int) -> None:
        barrier.wait()
        for n in range(per_thread):
            listeners.emit((index, n))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    total = threads_count * per_thread
    assert counts == [total, total]
    assert sorted(seen) == [(i, n) for i in range(threads_count) for n in range(per_thread)]
    # Each thread's own events arrive in the order it emitted them.
    for i in range(threads_count):
        assert [n for (t, n) in seen if t == i] == list(range(per_thread))


def test_concurrent_add_and_remove_while_emitting_loses_nothing() -> None:
    listeners: Listeners[int] = Listeners()
    stable_count = [0]
    lock = threading.Lock()

    def stable(event: int) -> None:
        with lock:
            stable_count[0] += 1

    listeners.add(stable)
    churners, rounds, emits = 6, 300, 2000
    barrier = threading.Barrier(churners + 1)

    def churn() -> None:
        barrier.wait()
        for _ in range(rounds):
            # A distinct listener object per registration.
            def transient(event: int) -> None:
                return None

            unsubscribe = listeners.add(transient)
            unsubscribe()

    def emitter() -> None:
        barrier.wait()
        for n in range(emits):
            listeners.emit(n)

    threads = [threading.Thread(target=churn) for _ in range(churners)]
    threads.append(threading.Thread(target=emitter))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert stable_count[0] == emits  # the stable listener never missed an event
    assert len(listeners) == 1  # every transient registration was removed again
