"""Tests for demand-driven flow (Reactive Streams) in :mod:`patterns.dataflow.reactive`."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Generator, Iterator
from typing import Any

import pytest
import simpy
from hypothesis import given
from hypothesis import strategies as st

from patterns.dataflow.reactive import (
    UNBOUNDED,
    DemandPublisher,
    DemandSubscription,
    IterablePublisher,
    aiterate,
    iterate,
)


class Probe:
    """A subscriber that requests ``initial`` at subscription and records everything."""

    def __init__(self, initial: int = 0) -> None:
        self.initial = initial
        self.subscription: DemandSubscription | None = None
        self.items: list[Any] = []
        self.errors: list[BaseException] = []
        self.completed = 0
        self.signals: list[str] = []

    def on_subscribe(self, subscription: DemandSubscription) -> None:
        self.signals.append("subscribe")
        self.subscription = subscription
        if self.initial:
            subscription.request(self.initial)

    def on_next(self, item: Any) -> None:
        self.signals.append("next")
        self.items.append(item)

    def on_error(self, error: BaseException) -> None:
        self.signals.append("error")
        self.errors.append(error)

    def on_complete(self) -> None:
        self.signals.append("complete")
        self.completed += 1

    def request(self, n: int) -> None:
        assert self.subscription is not None
        self.subscription.request(n)


def test_iterable_publisher_delivers_only_what_was_requested() -> None:
    probe = Probe(2)
    IterablePublisher(range(10)).subscribe(probe)
    assert probe.items == [0, 1]
    probe.request(3)
    assert probe.items == [0, 1, 2, 3, 4]
    probe.request(100)
    assert probe.items == list(range(10))
    assert probe.completed == 1
    assert probe.signals[0] == "subscribe"
    assert probe.signals[-1] == "complete"


def test_completion_follows_the_last_item_without_extra_demand() -> None:
    probe = Probe(3)
    IterablePublisher([1, 2, 3]).subscribe(probe)
    assert probe.items == [1, 2, 3]
    assert probe.completed == 1


def test_the_source_is_advanced_only_on_demand() -> None:
    pulled: list[int] = []

    def source() -> Iterator[int]:
        for n in itertools.count():
            pulled.append(n)
            yield n

    probe = Probe(3)
    IterablePublisher(source()).subscribe(probe)
    assert probe.items == [0, 1, 2]
    assert len(pulled) <= 4  # at most one item fetched ahead
    probe.subscription.cancel()  # type: ignore[union-attr]
    probe.request(5)
    assert probe.items == [0, 1, 2]


def test_request_from_inside_on_next_does_not_recurse() -> None:
    """Rule 3.3: a subscriber requesting one more from each on_next must not blow the
    stack, however long the stream."""

    class OneByOne(Probe):
        depth = 0
        deepest = 0

        def on_next(self, item: Any) -> None:
            super().on_next(item)
            OneByOne.depth += 1
            OneByOne.deepest = max(OneByOne.deepest, OneByOne.depth)
            self.request(1)
            OneByOne.depth -= 1

    probe = OneByOne(1)
    IterablePublisher(range(5000)).subscribe(probe)
    assert len(probe.items) == 5000
    assert probe.completed == 1
    assert OneByOne.deepest == 1


@pytest.mark.parametrize("n", [0, -3])
def test_request_of_zero_or_less_signals_an_error_and_cancels(n: int) -> None:
    probe = Probe(1)
    IterablePublisher(range(10)).subscribe(probe)
    probe.request(n)
    assert len(probe.errors) == 1
    assert isinstance(probe.errors[0], ValueError)
    assert "rule 3.9" in str(probe.errors[0])
    assert probe.subscription is not None
    assert probe.subscription.cancelled
    probe.request(5)
    assert probe.items == [0]


def test_request_must_be_an_int() -> None:
    probe = Probe()
    IterablePublisher(range(3)).subscribe(probe)
    with pytest.raises(TypeError, match="n must be an int"):
        probe.request(1.5)  # type: ignore[arg-type]


def test_an_iterable_that_fails_ends_with_on_error() -> None:
    def broken() -> Iterator[int]:
        yield 1
        raise OSError("disk gone")

    probe = Probe(10)
    IterablePublisher(broken()).subscribe(probe)
    assert probe.items == [1]
    assert isinstance(probe.errors[0], OSError)


def test_huge_demand_means_unbounded() -> None:
    probe = Probe(UNBOUNDED)
    IterablePublisher(range(100)).subscribe(probe)
    probe.request(UNBOUNDED)
    assert len(probe.items) == 100
    assert probe.subscription is not None
    assert probe.subscription.requested == UNBOUNDED


@given(st.lists(st.one_of(st.tuples(st.just("request"), st.integers(1, 5)),
                          st.tuples(st.just("emit"), st.integers(1, 8))), max_size=40))
def test_never_more_delivered_than_requested(ops: list[tuple[str, int]]) -> None:
    publisher: DemandPublisher[int] = DemandPublisher()
    probe = Probe()
    publisher.subscribe(probe)
    requested = 0
    serial = 0
    for op, n in ops:
        if op == "request":
            probe.request(n)
            requested += n
        else:
            for _ in range(n):
                publisher.try_emit(serial)
                serial += 1
        assert len(probe.items) <= requested
        assert publisher.demand == requested - len(probe.items)
    assert probe.items == sorted(probe.items)


@given(st.lists(st.integers(1, 4), max_size=20), st.integers(0, 30))
def test_iterable_publisher_never_exceeds_demand(requests: list[int], size: int) -> None:
    probe = Probe()
    IterablePublisher(range(size)).subscribe(probe)
    total = 0
    for n in requests:
        probe.request(n)
        total += n
        assert len(probe.items) == min(total, size)
    assert probe.completed == (1 if total >= size else 0)


def test_demand_bound_holds_under_many_producer_threads() -> None:
    publisher: DemandPublisher[int] = DemandPublisher()
    probe = Probe()
    publisher.subscribe(probe)
    barrier = threading.Barrier(9)

    def produce(base: int) -> None:
        barrier.wait()
        for i in range(2000):
            publisher.try_emit(base + i)

    threads = [threading.Thread(target=produce, args=(k * 10_000,)) for k in range(8)]
    for thread in threads:
        thread.start()
    barrier.wait()
    for _ in range(50):
        probe.request(7)
    for thread in threads:
        thread.join(30)
    assert len(probe.items) <= 350
    assert probe.subscription is not None
    assert probe.subscription.delivered == len(probe.items)


def test_blocking_emit_waits_for_demand_and_stops_on_cancel() -> None:
    publisher: DemandPublisher[int] = DemandPublisher()
    probe = Probe(1)
    publisher.subscribe(probe)
    assert publisher.emit(1) is True
    with pytest.raises(TimeoutError, match="no demand"):
        publisher.emit(2, timeout=0.01)
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(publisher.emit(2)))
    thread.start()
    probe.request(1)
    thread.join(5)
    assert results == [True]
    assert probe.items == [1, 2]
    thread = threading.Thread(target=lambda: results.append(publisher.emit(3)))
    thread.start()
    probe.subscription.cancel()  # type: ignore[union-attr]
    thread.join(5)
    assert results == [True, False]
    assert probe.items == [1, 2]
    assert publisher.cancelled


def test_a_second_subscriber_is_refused() -> None:
    publisher: DemandPublisher[int] = DemandPublisher()
    first, second = Probe(1), Probe(1)
    publisher.subscribe(first)
    publisher.subscribe(second)
    assert second.signals == ["subscribe", "error"]
    assert publisher.try_emit(5)
    assert first.items == [5]


def test_demand_requested_inside_on_subscribe_is_usable_after_it_returns() -> None:
    publisher: DemandPublisher[int] = DemandPublisher()

    class Eager(Probe):
        def on_subscribe(self, subscription: DemandSubscription) -> None:
            super().on_subscribe(subscription)
            subscription.request(2)
            self.emitted_inside = publisher.try_emit(0)

    probe = Eager()
    publisher.subscribe(probe)
    assert probe.emitted_inside is False  # nothing before on_subscribe returns (rule 1.3)
    assert publisher.try_emit(1)
    assert probe.items == [1]


def test_complete_and_error_end_the_stream_once() -> None:
    publisher: DemandPublisher[int] = DemandPublisher()
    probe = Probe(5)
    publisher.subscribe(probe)
    publisher.complete()
    publisher.error(RuntimeError("late"))
    assert probe.signals == ["subscribe", "complete"]
    assert not publisher.try_emit(1)


def test_iterate_requests_a_window_at_a_time() -> None:
    pulled: list[int] = []

    def source() -> Iterator[int]:
        for n in range(20):
            pulled.append(n)
            yield n

    iterator = iterate(IterablePublisher(source()), window=4)
    assert next(iterator) == 0
    assert len(pulled) <= 6  # the window, plus one taken and one fetched ahead
    assert list(iterator) == list(range(1, 20))


def test_iterate_raises_the_stream_error_and_cancels_when_closed() -> None:
    def broken() -> Iterator[int]:
        yield 1
        raise KeyError("gone")

    with pytest.raises(KeyError):
        list(iterate(IterablePublisher(broken())))
    publisher: DemandPublisher[int] = DemandPublisher()
    got = []

    def consume() -> None:
        for item in iterate(publisher, window=2):
            got.append(item)
            if item == 1:
                break

    thread = threading.Thread(target=consume)
    thread.start()
    assert publisher.emit(0, timeout=5)
    assert publisher.emit(1, timeout=5)
    thread.join(5)
    assert got == [0, 1]
    assert publisher.cancelled


def test_aiterate_with_a_producer_on_another_thread() -> None:
    async def main() -> list[int]:
        publisher: DemandPublisher[int] = DemandPublisher()

        def produce() -> None:
            for i in range(50):
                publisher.emit(i, timeout=5)
            publisher.complete()

        thread = threading.Thread(target=produce)
        got = []
        iterator = aiterate(publisher, window=3)
        thread.start()
        async for item in iterator:
            got.append(item)
            assert publisher.demand <= 3
        thread.join(5)
        return got

    assert asyncio.run(main()) == list(range(50))


def test_aemit_awaits_demand() -> None:
    async def main() -> list[int]:
        publisher: DemandPublisher[int] = DemandPublisher()
        probe = Probe()
        publisher.subscribe(probe)
        task = asyncio.ensure_future(publisher.aemit(7))
        await asyncio.sleep(0.005)
        assert not task.done()
        probe.request(1)
        assert await task is True
        return probe.items

    assert asyncio.run(main()) == [7]


def test_simpy_emit_waits_for_demand_in_simulated_time() -> None:
    env = simpy.Environment()
    publisher: DemandPublisher[int] = DemandPublisher()
    probe = Probe(2)
    publisher.subscribe(probe)
    emitted_at: list[float] = []

    def producer() -> Generator[Any, Any, None]:
        for i in range(4):
            yield from publisher.simpy_emit(env, i)
            emitted_at.append(env.now)

    def consumer() -> Generator[Any, Any, None]:
        for _ in range(2):
            yield env.timeout(1.0)
            probe.request(1)

    env.process(producer())
    env.process(consumer())
    env.run()
    assert emitted_at == [0.0, 0.0, 1.0, 2.0]
    assert probe.items == [0, 1, 2, 3]
