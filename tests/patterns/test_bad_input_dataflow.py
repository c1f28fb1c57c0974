"""Bad-input sweep (issue 11) of the data-flow package (guide sections 1.1-1.3): pipelines,
batchers, reactive streams, backpressure, demand, schedulers, CRDTs and gossip. Every
public constructor and method refuses a bad value with a ValueError or TypeError naming
the parameter and the value, before any state changes; waits that accept ``inf`` (for
ever) or a huge finite timeout work instead of overflowing; sync drivers refuse
coroutine functions.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import queue
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from bad_input import (
    HUGE,
    NEGATIVE,
    NON_FINITE,
    NOT_A_CLOCK,
    NOT_A_NUMBER,
    NOT_A_STR,
    NOT_AN_INT,
    NOT_AN_RNG,
    NOT_CALLABLE,
    SWEEP,
    ZERO,
    assert_rejected,
)
from hypothesis import given
from hypothesis import strategies as st

from patterns.clock import ManualClock
from patterns.dataflow.crdt import GCounter, GSet, LWWRegister, ORSet, PNCounter, VersionVector
from patterns.dataflow.gossip import (
    AsyncGossipDriver,
    GossipConfig,
    GossipNode,
    LocalAsyncNetwork,
    PeerList,
    RumourMongering,
    StatePush,
)
from patterns.dataflow.pipeline import (
    END,
    Batcher,
    BatchStage,
    Branch,
    Pipeline,
    Stage,
    StageError,
    StageTimer,
    abatches,
    for_each,
    iter_batches,
    logged,
)
from patterns.dataflow.reactive import (
    AsyncioScheduler,
    BackpressureBuffer,
    DemandPublisher,
    IterablePublisher,
    Observable,
    Subject,
    ThreadScheduler,
    VirtualTimeScheduler,
    aiterate,
    iterate,
    merge,
)

UNHASHABLE = st.sampled_from([[1], {"a": 1}, {1}])


async def _nothing(*args: Any) -> None:
    return None


def _coroutine_functions() -> list[Callable[..., Any]]:
    class AsyncCall:
        async def __call__(self, *args: Any) -> None:
            return None

    return [_nothing, AsyncCall()]


# =========================================================================== pipeline


@SWEEP
@given(size=NOT_AN_INT | ZERO | NEGATIVE)
def test_batcher_size(size: Any) -> None:
    assert_rejected(lambda: Batcher(size), "size", size)


@SWEEP
@given(max_wait=NOT_A_NUMBER | NEGATIVE | st.just(math.nan) | st.just(-math.inf))
def test_batcher_max_wait(max_wait: Any) -> None:
    assert_rejected(lambda: Batcher(4, max_wait), "max_wait", max_wait)


@SWEEP
@given(clock=NOT_A_CLOCK)
def test_batcher_clock(clock: Any) -> None:
    assert_rejected(lambda: Batcher(4, clock=clock), "clock")


@SWEEP
@given(listeners=st.sampled_from([1, "x", [], print]))
def test_batcher_and_timer_listeners(listeners: Any) -> None:
    assert_rejected(lambda: Batcher(4, listeners=listeners), "listeners")
    assert_rejected(lambda: StageTimer(listeners=listeners), "listeners")


@pytest.mark.parametrize("max_wait", [1e10, 1e300, math.inf])
def test_iter_batches_waits_a_huge_max_wait_without_overflow(max_wait: float) -> None:
    """A huge finite ``max_wait`` used to reach ``queue.get(timeout=1e10)``, whose
    Condition.wait raised OverflowError; the wait is now taken in chunks."""
    source: queue.Queue[Any] = queue.Queue()
    batcher: Batcher[int] = Batcher(3, max_wait)
    got: list[list[int]] = []
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            got.extend(iter_batches(source, batcher))
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    source.put(1)  # a batch is pending now: the driver waits until it is due
    thread.join(0.05)
    source.put(2)
    source.put(END)
    thread.join(5)
    assert not thread.is_alive()
    assert errors == []
    assert got == [[1, 2]]


@SWEEP
@given(source=st.sampled_from([1, "abc", [1, 2], None]))
def test_iter_batches_source_and_batcher(source: Any) -> None:
    assert_rejected(lambda: next(iter_batches(source, Batcher(2))), "source")
    assert_rejected(lambda: next(iter_batches(queue.Queue(), source)), "batcher")


@SWEEP
@given(source=st.sampled_from([1, "abc", [1, 2], None]))
def test_abatches_source_and_batcher(source: Any) -> None:
    async def first(src: Any, batcher: Any) -> Any:
        return await abatches(src, batcher).__anext__()

    async def items() -> Any:
        yield 1

    assert_rejected(lambda: asyncio.run(first(source, Batcher(2))), "source")
    assert_rejected(lambda: asyncio.run(first(items(), source)), "batcher")


@SWEEP
@given(stage=NOT_A_STR | st.just(""))
def test_stage_timer_record_stage(stage: Any) -> None:
    timer = StageTimer()
    assert_rejected(lambda: timer.record(stage, 0.1, True), "stage", stage)
    assert timer.stats() == {}


@SWEEP
@given(duration=NOT_A_NUMBER | NON_FINITE | NEGATIVE)
def test_stage_timer_record_duration(duration: Any) -> None:
    timer = StageTimer()
    assert_rejected(lambda: timer.record("parse", duration, True), "duration", duration)
    assert timer.stats() == {}


@SWEEP
@given(ok=st.sampled_from([0, 1, "yes", None, 1.0]))
def test_stage_timer_record_ok(ok: Any) -> None:
    timer = StageTimer()
    assert_rejected(lambda: timer.record("parse", 0.1, ok), "ok", ok)
    assert timer.stats() == {}


@SWEEP
@given(when=NOT_A_NUMBER.filter(lambda v: v is not None) | NON_FINITE)
def test_stage_timer_record_time(when: Any) -> None:
    timer = StageTimer()
    assert_rejected(lambda: timer.record("parse", 0.1, True, time=when), "time", when)
    assert timer.stats() == {}


@SWEEP
@given(clock=NOT_A_CLOCK)
def test_stage_timer_clock(clock: Any) -> None:
    assert_rejected(lambda: StageTimer(clock=clock), "clock")


@SWEEP
@given(bad=NOT_CALLABLE)
def test_pipeline_constructors(bad: Any) -> None:
    assert_rejected(lambda: Stage(bad), "fn")
    assert_rejected(lambda: Branch(bad, Stage(str), Stage(str)), "condition")
    assert_rejected(lambda: Branch(bool, bad, Stage(str)), "left")
    assert_rejected(lambda: Branch(bool, Stage(str), bad), "right")
    assert_rejected(lambda: for_each(bad), "step")
    assert_rejected(lambda: BatchStage(bad, 2), "inner")
    assert_rejected(lambda: logged(bad), "step")
    assert_rejected(lambda: StageTimer()(bad), "step")
    assert_rejected(lambda: Pipeline([bad]), "stages[0]")


@SWEEP
@given(size=NOT_AN_INT | ZERO | NEGATIVE)
def test_batch_stage_size(size: Any) -> None:
    assert_rejected(lambda: BatchStage(Stage(list), size), "size", size)


@SWEEP
@given(name=NOT_A_STR.filter(lambda v: v is not None) | st.sampled_from(["", "  "]))
def test_stage_names(name: Any) -> None:
    assert_rejected(lambda: Stage(str, name=name), "name")
    assert_rejected(lambda: Pipeline([Stage(str)], name=name), "name")
    assert_rejected(lambda: BatchStage(Stage(list), 2, name=name), "name")
    assert_rejected(lambda: for_each(Stage(str), name=name), "name")


@SWEEP
@given(level=st.sampled_from([None, "DEBUG", 1.5, True]))
def test_logged_levels(level: Any) -> None:
    assert_rejected(lambda: logged(Stage(str), level=level), "level", level)
    assert_rejected(lambda: logged(Stage(str), error_level=level), "error_level", level)
    if level is not None:  # no logger: the default one
        assert_rejected(lambda: logged(Stage(str), logger=level), "logger")


def test_decorators_keep_coroutine_functions_async_and_sync_runs_refuse_them() -> None:
    """``logged``, a StageTimer and ``stage`` over an ``async def`` stay async (only
    ``aprocess`` runs them); the sync run refuses them with a TypeError up front."""
    for fn in _coroutine_functions():
        for step in (Stage(fn, name="s"), logged(fn), StageTimer()(fn),
                     logged(StageTimer()(Stage(fn, name="s")))):
            assert step.is_async
            with pytest.raises(TypeError, match="aprocess"):
                step.process(1)
            assert asyncio.run(step.aprocess(1)) is None
    assert inspect.iscoroutinefunction(Stage.aprocess)


# =========================================================================== reactive


@SWEEP
@given(bad=NOT_CALLABLE)
def test_operator_functions(bad: Any) -> None:
    source = Observable.of(1)
    assert_rejected(lambda: source.map(bad), "fn")
    assert_rejected(lambda: source.filter(bad), "predicate")
    assert_rejected(lambda: source.scan(bad), "fn")
    assert_rejected(lambda: source.scan(bad, 0), "fn")
    assert_rejected(lambda: Observable(bad), "subscribe")


@pytest.mark.parametrize("fn", _coroutine_functions(), ids=["coroutine function", "async __call__"])
def test_reactive_refuses_coroutine_functions(fn: Callable[..., Any]) -> None:
    """A stream calls its functions synchronously: an ``async def`` would hand on
    un-awaited coroutines (a filter would let everything through). Refused up front."""
    source = Observable.of(1)
    assert_rejected(lambda: source.map(fn), "fn")
    assert_rejected(lambda: source.filter(fn), "predicate")
    assert_rejected(lambda: source.scan(fn, 0), "fn")
    assert_rejected(lambda: source.subscribe(fn), "on_next")
    assert_rejected(lambda: source.subscribe(on_next=fn), "on_next")
    assert_rejected(lambda: source.subscribe(on_error=fn), "on_error")
    assert_rejected(lambda: source.subscribe(on_complete=fn), "on_complete")
    assert_rejected(lambda: Observable(fn), "subscribe")
    assert_rejected(lambda: VirtualTimeScheduler().schedule(1.0, fn), "action")

    class AsyncObserver:
        async def on_next(self, value: Any) -> None: ...

        def on_error(self, error: BaseException) -> None: ...

        def on_complete(self) -> None: ...

    assert_rejected(lambda: source.subscribe(AsyncObserver()), "on_next")


@SWEEP
@given(count=NOT_AN_INT | NEGATIVE)
def test_take_and_buffer_counts(count: Any) -> None:
    source = Observable.of(1)
    assert_rejected(lambda: source.take(count), "count", count)
    assert_rejected(lambda: source.buffer_with_count(count), "count", count)
    if count is not None:  # no skip: back-to-back lists
        assert_rejected(lambda: source.buffer_with_count(2, count), "skip", count)


@SWEEP
@given(span=NOT_A_NUMBER | NON_FINITE | NEGATIVE | ZERO)
def test_time_operators(span: Any) -> None:
    scheduler = VirtualTimeScheduler()
    assert_rejected(lambda: Observable.of(1).buffer_with_time(span, scheduler), "timespan",
                    span)
    assert_rejected(lambda: Observable.interval(span, scheduler), "period", span)


@SWEEP
@given(scheduler=st.sampled_from([None, 1, "now", object(), ManualClock()]))
def test_time_operators_need_a_scheduler(scheduler: Any) -> None:
    assert_rejected(lambda: Observable.of(1).buffer_with_time(1.0, scheduler), "scheduler")
    assert_rejected(lambda: Observable.interval(1.0, scheduler), "scheduler")


@SWEEP
@given(values=st.sampled_from([1, None, 2.5, object()]))
def test_sources(values: Any) -> None:
    assert_rejected(lambda: Observable.from_iterable(values), "values")
    assert_rejected(lambda: Observable.throw(values), "error")
    assert_rejected(lambda: merge(Observable.of(1), values), "sources[1]")
    subject: Subject[int] = Subject()
    assert_rejected(lambda: subject.on_error(values), "error")


@SWEEP
@given(delay=NOT_A_NUMBER | NON_FINITE | NEGATIVE)
def test_scheduler_delays(delay: Any) -> None:
    virtual = VirtualTimeScheduler()
    assert_rejected(lambda: virtual.schedule(delay, print), "delay", delay)
    assert virtual.pending == 0
    assert_rejected(lambda: virtual.advance(delay), "seconds", delay)
    with ThreadScheduler() as threaded:
        assert_rejected(lambda: threaded.schedule(delay, print), "delay", delay)


@SWEEP
@given(when=NOT_A_NUMBER | NON_FINITE)
def test_virtual_scheduler_advance_to(when: Any) -> None:
    """``advance_to(nan)`` used to run every pending action and then fail in the clock."""
    scheduler = VirtualTimeScheduler()
    ran: list[int] = []
    scheduler.schedule(5.0, lambda: ran.append(1))
    assert_rejected(lambda: scheduler.advance_to(when), "when", when)
    assert ran == []
    assert scheduler.pending == 1
    assert scheduler.now() == 0.0


@SWEEP
@given(clock=NOT_A_CLOCK)
def test_scheduler_clocks(clock: Any) -> None:
    assert_rejected(lambda: VirtualTimeScheduler(clock), "clock")
    assert_rejected(lambda: ThreadScheduler(clock=clock), "clock")


@SWEEP
@given(name=NOT_A_STR | st.just(""))
def test_thread_scheduler_name(name: Any) -> None:
    assert_rejected(lambda: ThreadScheduler(name=name), "name")


@SWEEP
@given(timeout=NOT_A_NUMBER.filter(lambda v: v is not None) | NEGATIVE | st.just(math.nan))
def test_thread_scheduler_shutdown_timeout(timeout: Any) -> None:
    scheduler = ThreadScheduler()
    assert_rejected(lambda: scheduler.shutdown(timeout=timeout), "timeout", timeout)
    scheduler.shutdown()


@pytest.mark.parametrize("timeout", [math.inf, 1e10, 1e300])
def test_thread_scheduler_shutdown_waits_with_inf_or_huge_timeout(timeout: float) -> None:
    """``shutdown(timeout=inf)`` used to raise OverflowError from Thread.join."""
    scheduler = ThreadScheduler()
    ran = threading.Event()
    scheduler.schedule(0.0, ran.set)
    assert ran.wait(5)
    scheduler.shutdown(timeout=timeout)
    assert scheduler._thread is not None
    assert not scheduler._thread.is_alive()


@SWEEP
@given(loop=st.sampled_from([1, "loop", object(), ManualClock()]))
def test_asyncio_scheduler_loop(loop: Any) -> None:
    assert_rejected(lambda: AsyncioScheduler(loop), "loop")


# ------------------------------------------------------------------- backpressure


@SWEEP
@given(capacity=NOT_AN_INT | ZERO | NEGATIVE)
def test_buffer_capacity(capacity: Any) -> None:
    assert_rejected(lambda: BackpressureBuffer("drop_oldest", capacity), "capacity",
                    capacity)


@SWEEP
@given(capacity=st.sampled_from([True, 1.0, "1", 2, 0]))
def test_latest_buffer_capacity(capacity: Any) -> None:
    """``capacity=True`` (or 1.0) passed for LATEST because ``True == 1``."""
    assert_rejected(lambda: BackpressureBuffer("latest", capacity), "capacity", capacity)


@SWEEP
@given(strategy=st.sampled_from(["fast", 1, None, [1]]))
def test_buffer_strategy(strategy: Any) -> None:
    assert_rejected(lambda: BackpressureBuffer(strategy, 2), "strategy")


@SWEEP
@given(clock=NOT_A_CLOCK)
def test_buffer_clock_and_listeners(clock: Any) -> None:
    assert_rejected(lambda: BackpressureBuffer("buffer", 2, clock=clock), "clock")
    assert_rejected(lambda: BackpressureBuffer("buffer", 2, listeners=clock), "listeners")


@SWEEP
@given(now=NOT_A_NUMBER.filter(lambda v: v is not None) | NON_FINITE)
def test_buffer_offer_now(now: Any) -> None:
    """A NaN or infinite entry time used to be stored with the item."""
    buffer: BackpressureBuffer[int] = BackpressureBuffer("buffer", 2)
    assert_rejected(lambda: buffer.offer(1, now=now), "now", now)
    assert len(buffer) == 0
    assert buffer.metrics().offered == 0


@SWEEP
@given(callback=NOT_CALLABLE.filter(lambda v: v is not None))
def test_buffer_callbacks(callback: Any) -> None:
    buffer: BackpressureBuffer[int] = BackpressureBuffer("buffer", 1)
    buffer.offer(1)
    assert_rejected(lambda: buffer.offer(2, on_room=callback), "on_room", callback)
    buffer.poll()
    assert_rejected(lambda: buffer.poll(on_item=callback), "on_item", callback)


@SWEEP
@given(timeout=NOT_A_NUMBER.filter(lambda v: v is not None) | NEGATIVE | st.just(math.nan))
def test_buffer_blocking_timeouts(timeout: Any) -> None:
    buffer: BackpressureBuffer[int] = BackpressureBuffer("buffer", 1)
    assert_rejected(lambda: buffer.get(timeout=timeout), "timeout", timeout)
    buffer.put(1)
    assert_rejected(lambda: buffer.put(2, timeout=timeout), "timeout", timeout)
    assert len(buffer) == 1


@pytest.mark.parametrize("timeout", [math.inf, 1e10, 1e300])
def test_buffer_waits_with_inf_or_huge_timeout(timeout: float) -> None:
    buffer: BackpressureBuffer[int] = BackpressureBuffer("buffer", 1)
    threading.Timer(0.02, lambda: buffer.put(7)).start()
    assert buffer.get(timeout=timeout) == 7
    buffer.put(1)
    threading.Timer(0.02, buffer.poll).start()
    assert buffer.put(2, timeout=timeout).value == "accepted"


# ------------------------------------------------------------------------ demand


@SWEEP
@given(timeout=NOT_A_NUMBER.filter(lambda v: v is not None) | NEGATIVE | st.just(math.nan))
def test_demand_emit_timeout(timeout: Any) -> None:
    publisher: DemandPublisher[int] = DemandPublisher()
    assert_rejected(lambda: publisher.emit(1, timeout=timeout), "timeout", timeout)


@pytest.mark.parametrize("timeout", [math.inf, 1e10, 1e300])
def test_demand_emit_waits_with_inf_or_huge_timeout(timeout: float) -> None:
    publisher: DemandPublisher[int] = DemandPublisher()
    got: list[int] = []

    def consume() -> None:
        got.extend(iterate(publisher, window=1))

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    assert publisher.emit(1, timeout=timeout)
    assert publisher.emit(2, timeout=timeout)
    publisher.complete()
    thread.join(5)
    assert got == [1, 2]


@SWEEP
@given(n=NOT_AN_INT)
def test_demand_request(n: Any) -> None:
    publisher: IterablePublisher[int] = IterablePublisher([1, 2])
    subscriptions: list[Any] = []

    class Probe:
        def on_subscribe(self, subscription: Any) -> None:
            subscriptions.append(subscription)

        def on_next(self, item: int) -> None: ...

        def on_error(self, error: BaseException) -> None: ...

        def on_complete(self) -> None: ...

    publisher.subscribe(Probe())
    assert_rejected(lambda: subscriptions[0].request(n), "n", n)
    assert subscriptions[0].requested == 0


@SWEEP
@given(window=NOT_AN_INT | ZERO | NEGATIVE)
def test_iterate_window(window: Any) -> None:
    publisher: IterablePublisher[int] = IterablePublisher([1])
    assert_rejected(lambda: next(iterate(publisher, window=window)), "window", window)

    async def first() -> Any:
        return await aiterate(publisher, window=window).__anext__()

    assert_rejected(lambda: asyncio.run(first()), "window", window)


@SWEEP
@given(publisher=st.sampled_from([1, "p", [1, 2], None, object()]))
def test_iterate_publisher(publisher: Any) -> None:
    assert_rejected(lambda: next(iterate(publisher)), "publisher")

    async def first() -> Any:
        return await aiterate(publisher).__anext__()

    assert_rejected(lambda: asyncio.run(first()), "publisher")


@SWEEP
@given(subscriber=st.sampled_from([1, print, object(), None]))
def test_publishers_subscriber(subscriber: Any) -> None:
    assert_rejected(lambda: IterablePublisher([1]).subscribe(subscriber), "subscriber")
    assert_rejected(lambda: DemandPublisher().subscribe(subscriber), "subscriber")
    assert_rejected(lambda: IterablePublisher(subscriber), "values")


# =========================================================================== crdt


@SWEEP
@given(replica=NOT_A_STR | st.just(""))
def test_crdt_replicas(replica: Any) -> None:
    for make in (GCounter, PNCounter, GSet, ORSet, LWWRegister):
        assert_rejected(lambda make=make: make(replica), "replica")
    if replica is not None:  # no replica: the same one
        assert_rejected(lambda: GCounter("a").copy(replica=replica), "replica")
    assert_rejected(lambda: VersionVector().increment(replica), "replica")


@SWEEP
@given(n=NOT_AN_INT | ZERO | NEGATIVE)
def test_counter_steps(n: Any) -> None:
    counter, pn = GCounter("a"), PNCounter("a")
    assert_rejected(lambda: counter.increment(n), "n", n)
    assert_rejected(lambda: pn.increment(n), "n", n)
    assert_rejected(lambda: pn.decrement(n), "n", n)
    assert counter.value == pn.value == 0


@SWEEP
@given(entries=st.sampled_from([5, None, [("a",)], [("a", 1, 2)], ["ab"], [(1, 1)],
                                {"a": -1}, {"a": 1.5}, {"a": True}, {"": 1}]))
def test_version_vector_entries(entries: Any) -> None:
    assert_rejected(lambda: VersionVector(entries), "entries")


@SWEEP
@given(element=UNHASHABLE)
def test_set_elements(element: Any) -> None:
    gset: GSet[Any] = GSet("a")
    orset: ORSet[Any] = ORSet("a")
    assert_rejected(lambda: gset.add(element), "element")
    assert_rejected(lambda: orset.add(element), "element")
    assert_rejected(lambda: orset.remove(element), "element")
    assert_rejected(lambda: GSet("a", [element]), "elements")
    assert_rejected(lambda: GSet("a", 5), "elements")  # type: ignore[arg-type]
    assert gset.value == orset.value == frozenset()


@SWEEP
@given(reading=NON_FINITE | st.sampled_from(["1", None, True]))
def test_lww_register_refuses_a_clock_reading_that_is_not_a_finite_time(reading: Any) -> None:
    """A NaN stamp compares false with everything: two replicas holding different values
    would never converge. The write is refused and the register keeps its state."""

    class Broken:
        def now(self) -> Any:
            return reading

    register: LWWRegister[str] = LWWRegister("a", clock=ManualClock(1.0))
    register.set("kept")
    register._clock = Broken()
    assert_rejected(lambda: register.set("lost"), "clock", reading)
    assert register.value == "kept"
    assert register.timestamp == (1.0, 0, "a")
    assert_rejected(lambda: LWWRegister("b", clock=Broken()).set("x"), "clock", reading)


@SWEEP
@given(clock=NOT_A_CLOCK)
def test_lww_register_clock(clock: Any) -> None:
    assert_rejected(lambda: LWWRegister("a", clock=clock), "clock")


@SWEEP
@given(other=st.sampled_from([1, None, "a", VersionVector()]))
def test_crdt_merge_other(other: Any) -> None:
    for state in (GCounter("a"), PNCounter("a"), GSet("a"), ORSet("a"), LWWRegister("a")):
        assert_rejected(lambda state=state: state.merge(other), "other")


# =========================================================================== gossip


def _node(**kwargs: Any) -> GossipNode[GCounter]:
    return GossipNode("a", GCounter("a"), ["b", "c"], **kwargs)


@SWEEP
@given(rng=NOT_AN_RNG)
def test_gossip_rng(rng: Any) -> None:
    """``rng or random.Random()`` replaced a falsy rng silently and kept any other
    object until the first round."""
    assert_rejected(lambda: _node(rng=rng), "rng")
    assert_rejected(lambda: LocalAsyncNetwork(rng=rng), "rng")
    assert_rejected(lambda: PeerList(["b"]).sample(1, rng), "rng")


@SWEEP
@given(fanout=NOT_AN_INT | ZERO | NEGATIVE | NON_FINITE | HUGE)
def test_gossip_fanout(fanout: Any) -> None:
    assert_rejected(lambda: GossipConfig(fanout=fanout), "fanout", fanout)


@SWEEP
@given(count=NOT_AN_INT | NEGATIVE | NON_FINITE)
def test_peer_list_sample_count(count: Any) -> None:
    assert_rejected(lambda: PeerList(["b", "c"]).sample(count, random.Random(1)), "count",
                    count)


@SWEEP
@given(peers=st.sampled_from([5, None, 2.5]))
def test_peer_list_peers(peers: Any) -> None:
    assert_rejected(lambda: PeerList(peers), "peers", peers)


@SWEEP
@given(k=NOT_AN_INT | ZERO | NEGATIVE)
def test_rumour_mongering(k: Any) -> None:
    assert_rejected(lambda: RumourMongering(k=k), "k", k)
    assert_rejected(lambda: RumourMongering(anti_entropy_every=k if k != 0 else -1),
                    "anti_entropy_every")


@SWEEP
@given(node_id=UNHASHABLE)
def test_gossip_node_id(node_id: Any) -> None:
    assert_rejected(lambda: GossipNode(node_id, GCounter("a"), ["b"]), "node_id")


@SWEEP
@given(delta=st.sampled_from([1, None, GSet("x"), PNCounter("a")]))
def test_gossip_publish(delta: Any) -> None:
    """A delta of the wrong type used to advance the rumour sequence and then fail in
    the CRDT's merge, with an error naming ``other``."""
    node = _node(config=GossipConfig(rumour_mongering=RumourMongering()))
    assert_rejected(lambda: node.publish(delta), "delta")
    assert node.hot_rumours == 0
    assert node.publish(GCounter("a").increment()) == ("a", 1)


@SWEEP
@given(message=st.sampled_from([1, None, "push", StatePush]))
def test_gossip_receive(message: Any) -> None:
    node = _node()
    assert_rejected(lambda: node.receive(message), "message")
    assert node.metrics().received == 0


@SWEEP
@given(interval=NOT_A_NUMBER | NON_FINITE | NEGATIVE | ZERO)
def test_gossip_driver_interval(interval: Any) -> None:
    assert_rejected(lambda: AsyncGossipDriver(_node(), _nothing, interval), "interval",
                    interval)
    assert_rejected(lambda: LocalAsyncNetwork().add(_node(), interval), "interval", interval)


@SWEEP
@given(bad=NOT_CALLABLE)
def test_gossip_driver_node_and_send(bad: Any) -> None:
    assert_rejected(lambda: AsyncGossipDriver(bad, _nothing, 1.0), "node")
    assert_rejected(lambda: AsyncGossipDriver(_node(), bad, 1.0), "send")
    assert_rejected(lambda: LocalAsyncNetwork().add(bad, 1.0), "node")


def test_gossip_driver_refuses_a_send_that_is_not_awaitable() -> None:
    """A plain ``send`` function used to fail inside the driver on every message, logged
    as an ordinary lost message: nothing was ever sent, silently."""
    sent: list[Any] = []

    def send(to: Any, message: Any) -> None:
        sent.append(to)

    driver = AsyncGossipDriver(_node(), send, 1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="send"):
        asyncio.run(driver.round())


@SWEEP
@given(value=NOT_A_NUMBER | NEGATIVE | ZERO | st.just(math.nan))
def test_run_until_timeout_and_check_every(value: Any) -> None:
    network: LocalAsyncNetwork[GCounter] = LocalAsyncNetwork()
    assert_rejected(lambda: asyncio.run(network.run_until(bool, timeout=value)), "timeout",
                    value)
    assert_rejected(lambda: asyncio.run(network.run_until(bool, timeout=1.0,
                                                          check_every=value)),
                    "check_every", value)


def test_run_until_check_every_must_be_finite_and_done_callable() -> None:
    """``check_every=inf`` used to sleep for ever (past ``timeout``)."""
    network: LocalAsyncNetwork[GCounter] = LocalAsyncNetwork()

    def run(done: Any, **kwargs: Any) -> Any:
        return asyncio.run(asyncio.wait_for(network.run_until(done, **kwargs), 2.0))

    assert_rejected(lambda: run(bool, timeout=0.1, check_every=math.inf), "check_every",
                    math.inf)
    assert_rejected(lambda: run(5, timeout=0.1), "done", 5)


@SWEEP
@given(value=NOT_A_NUMBER | NEGATIVE | NON_FINITE | st.just(1.5))
def test_local_network_latency_and_loss(value: Any) -> None:
    if value != 1.5:  # a latency of 1.5 s is fine
        assert_rejected(lambda: LocalAsyncNetwork(latency=value), "latency", value)
    assert_rejected(lambda: LocalAsyncNetwork(loss=value), "loss", value)


# ======================================================= coroutine functions elsewhere


def test_a_branch_with_an_async_condition_is_async() -> None:
    """An ``async`` condition used to be called and not awaited: the coroutine is truthy,
    so every value went left, in process() and in aprocess() alike."""
    async def is_big(value: int) -> bool:
        return value > 10

    branch = Branch(is_big, Stage(lambda v: "big"), Stage(lambda v: "small"), name="route")
    assert branch.is_async
    with pytest.raises(TypeError, match="route"):
        branch.process(1)
    assert asyncio.run(branch.aprocess(1)).value == "small"
    assert asyncio.run(branch.aprocess(11)).value == "big"

    def returns_a_coroutine(value: int) -> Any:
        return is_big(value)

    plain = Branch(returns_a_coroutine, Stage(str), Stage(str), name="route")
    with pytest.raises(StageError, match="awaitable") as caught:  # like a Stage's result
        plain.process(1)
    assert isinstance(caught.value.__cause__, TypeError)


def test_stage_recognises_every_kind_of_coroutine_function() -> None:
    import functools

    async def double(value: int) -> int:
        return value * 2

    class Holder:
        async def method(self, value: int) -> int:
            return value * 2

    for fn in (double, functools.partial(double), Holder().method, *_coroutine_functions()):
        step = Stage(fn, name="s")
        assert step.is_async
        with pytest.raises(TypeError, match="aprocess"):
            step.process(1)


@pytest.mark.parametrize("fn", _coroutine_functions(), ids=["coroutine function", "async __call__"])
def test_buffer_and_publisher_callbacks_refuse_coroutine_functions(
        fn: Callable[..., Any]) -> None:
    buffer: BackpressureBuffer[int] = BackpressureBuffer("buffer", 1)
    buffer.offer(1)
    assert_rejected(lambda: buffer.offer(2, on_room=fn), "on_room")
    buffer.poll()
    assert_rejected(lambda: buffer.poll(on_item=fn), "on_item")

    class AsyncSubscriber:
        def on_subscribe(self, subscription: Any) -> None: ...

        async def on_next(self, item: int) -> None: ...

        def on_error(self, error: BaseException) -> None: ...

        def on_complete(self) -> None: ...

    assert_rejected(lambda: IterablePublisher([1]).subscribe(AsyncSubscriber()), "on_next")
    assert_rejected(lambda: DemandPublisher().subscribe(AsyncSubscriber()), "on_next")
