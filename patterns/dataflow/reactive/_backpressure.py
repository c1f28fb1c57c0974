"""A bounded buffer between a fast producer and a slow consumer (guide section 1.2, 背压机制).

When a producer emits faster than its consumer can take, something has to give. The
guide's ``BackpressureAction`` names the choices; :class:`OverflowStrategy` implements
each of them for a :class:`BackpressureBuffer` that never holds more than its bound:

=============  ==============================================================
``BUFFER``     keep up to ``capacity`` items; when full, the *producer waits*
``DROP_NEWEST`` when full, drop the item being offered (the guide's ``Drop``)
``DROP_OLDEST`` when full, drop the oldest buffered item to make room
``LATEST``     hold only the newest item (a bound of one); a new one replaces it
``ERROR``      when full, signal overflow: the buffer fails, the consumer gets the error
=============  ==============================================================

The decision is sans-I/O: :meth:`BackpressureBuffer.offer` and
:meth:`BackpressureBuffer.poll` only decide and return at once (``offer`` on a full
``BUFFER`` returns :attr:`Offer.FULL` and may register a callback for when room appears).
Thin drivers do the waiting: blocking (:meth:`~BackpressureBuffer.put`,
:meth:`~BackpressureBuffer.get`, iteration), :mod:`asyncio`
(:meth:`~BackpressureBuffer.aput`, :meth:`~BackpressureBuffer.aget`, ``async for``) and
SimPy (:meth:`~BackpressureBuffer.simpy_put`, :meth:`~BackpressureBuffer.simpy_get`).

What the guide's sketch gets wrong, and this module does differently: its
``DropOldestStrategy`` copies every value into a deque (dropping the oldest copy when
full) and then returns ``Emit(value)`` *always*: nothing is ever held back or dropped, so
the consumer still receives everything and its own queue grows without bound. Here the
buffer *is* the queue between the two sides, and the bound holds.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from patterns._decorate import is_async_callable
from patterns._errors import Rebuildable
from patterns._validation import (
    require_clock,
    require_finite,
    require_int_at_least,
    require_non_negative,
)
from patterns.clock import MONOTONIC, Clock
from patterns.events import Listeners

__all__ = [
    "BackpressureBuffer",
    "BufferClosedError",
    "BufferEvent",
    "BufferMetrics",
    "BufferOverflowError",
    "Entry",
    "ItemDropped",
    "Offer",
    "OverflowStrategy",
]

T = TypeVar("T")

Callback = Callable[[], object]


class OverflowStrategy(StrEnum):
    """What a full :class:`BackpressureBuffer` does with one more item."""

    BUFFER = "buffer"
    """Hold up to the bound; the producer waits for room (nothing is lost)."""
    DROP_NEWEST = "drop_newest"
    """Drop the item being offered (the guide's ``Drop``)."""
    DROP_OLDEST = "drop_oldest"
    """Drop the oldest buffered item to make room for the new one."""
    LATEST = "latest"
    """Hold only the newest item: each new one replaces the one held (bound 1)."""
    ERROR = "error"
    """Reject the item and fail the buffer: the consumer receives the overflow error."""


class Offer(StrEnum):
    """What :meth:`BackpressureBuffer.offer` did with an item."""

    ACCEPTED = "accepted"
    """The item is in the buffer."""
    DROPPED = "dropped"
    """The buffer was full (``DROP_NEWEST``): this item was dropped."""
    EVICTED = "evicted"
    """The item is in the buffer; the oldest one was dropped to make room."""
    FULL = "full"
    """``BUFFER`` strategy and no room: the item was *not* taken; wait and offer again."""
    OVERFLOW = "overflow"
    """``ERROR`` strategy and no room: the item was rejected and the buffer has failed."""
    CLOSED = "closed"
    """The buffer is closed (or has failed): the item was dropped."""


class BufferOverflowError(Rebuildable, Exception):
    """A buffer with the ``ERROR`` strategy overflowed; it names the bound."""

    def __init__(self, capacity: int, time: float) -> None:
        super().__init__(f"backpressure buffer overflowed: an item arrived while all "
                         f"{capacity} places were taken (strategy 'error', t={time:g})")
        self.capacity = capacity
        self.time = time


class BufferClosedError(Exception):
    """The buffer is closed: no more items go in, and (once drained) none come out."""


@dataclass(frozen=True, slots=True)
class Entry(Generic[T]):
    """A buffered item and the time it entered the buffer (seconds, buffer's clock)."""

    item: T
    enqueued_at: float


@dataclass(frozen=True, slots=True)
class BufferEvent:
    """Something a buffer did, at ``time`` (seconds)."""

    time: float


@dataclass(frozen=True, slots=True)
class ItemDropped(BufferEvent):
    """An item was lost: ``outcome`` says how (dropped, evicted, overflow, closed)."""

    outcome: Offer
    item: object
    buffered: int
    """Items in the buffer after the decision."""


@dataclass(frozen=True, slots=True)
class BufferMetrics:
    """A consistent snapshot of a buffer's state and counts.

    Always ``delivered + dropped + buffered == offered``.
    """

    strategy: OverflowStrategy
    capacity: int
    offered: int
    """Items handed to the buffer (an offer answered ``FULL`` was not handed over)."""
    delivered: int
    """Items taken out by the consumer."""
    dropped: int
    """Items lost (dropped, evicted, rejected by overflow or closure)."""
    buffered: int
    high_water: int
    """The most items ever held at once (never above ``capacity``)."""
    closed: bool
    failed: bool


class _SimEnvironment(Protocol):
    """The part of a ``simpy.Environment`` that the SimPy drivers use."""

    @property
    def now(self) -> float: ...

    def event(self) -> Any: ...


class BackpressureBuffer(Generic[T]):
    """A bounded, thread-safe FIFO between a producer and a consumer (guide section 1.2).

    Parameters
    ----------
    strategy:
        What to do when full: an :class:`OverflowStrategy` (or its name).
    capacity:
        The bound (an int >= 1). Required for every strategy except ``LATEST``, whose
        bound is always 1 (give ``None`` or 1).
    clock:
        Stamps each item's entry time and event times (the SimPy drivers pass
        ``env.now``).
    listeners:
        Receive :class:`ItemDropped` events.

    The bound is never exceeded, whatever the number of producer threads: every
    decision is taken under one lock, and no lock is held while listeners or wake-up
    callbacks run. Counters: see :meth:`metrics`.
    """

    __slots__ = ("_closed", "_error", "_high_water", "_item_waiters", "_items", "_lock",
                 "_room_waiters", "_stats", "capacity", "clock", "listeners", "strategy")

    def __init__(
        self,
        strategy: OverflowStrategy | str,
        capacity: int | None = None,
        *,
        clock: Clock = MONOTONIC,
        listeners: Listeners[BufferEvent] | None = None,
    ) -> None:
        try:
            self.strategy = OverflowStrategy(strategy)
        except ValueError:
            choices = ", ".join(s.value for s in OverflowStrategy)
            raise ValueError(f"strategy must be one of {choices}, got {strategy!r}") from None
        if self.strategy is OverflowStrategy.LATEST:
            if capacity is not None and require_int_at_least("capacity", capacity, 1) != 1:
                raise ValueError(f"capacity must be None or 1 for the 'latest' strategy "
                                 f"(it holds only the newest item), got {capacity!r}")
            capacity = 1
        elif capacity is None:
            raise ValueError(f"capacity is required for the {self.strategy.value!r} "
                             f"strategy, got None")
        self.capacity = require_int_at_least("capacity", capacity, 1)
        require_clock("clock", clock)
        self.clock = clock
        if listeners is not None and not isinstance(listeners, Listeners):
            raise TypeError(f"listeners must be a Listeners registry, got {listeners!r}")
        self.listeners: Listeners[BufferEvent] = (
            listeners if listeners is not None else Listeners())
        self._lock = threading.Lock()
        self._items: deque[Entry[T]] = deque()
        self._stats = [0, 0, 0]  # offered, delivered, dropped
        self._high_water = 0
        self._closed = False
        self._error: BufferOverflowError | None = None
        self._room_waiters: list[Callback] = []
        self._item_waiters: list[Callback] = []

    # ----------------------------------------------------------------- the core

    def offer(self, item: T, *, now: float | None = None,
              on_room: Callback | None = None) -> Offer:
        """Decide for one item from the producer; never waits.

        Returns what happened (:class:`Offer`). Only a full ``BUFFER`` answers
        :attr:`Offer.FULL` (the item was not taken); then ``on_room()``, if given, is
        called once when an item leaves the buffer or it closes, so the producer can
        offer again.
        """
        if on_room is not None:
            _check_callback("on_room", on_room)
        when = self.clock.now() if now is None else require_finite("now", now)
        stats = self._stats
        items = self._items
        dropped: ItemDropped | None = None
        wake: list[Callback] = []
        with self._lock:
            if self._closed:
                stats[0] += 1
                stats[2] += 1
                outcome = Offer.CLOSED
                dropped = ItemDropped(when, outcome, item, len(items))
            elif len(items) < self.capacity:
                stats[0] += 1
                items.append(Entry(item, when))
                if len(items) > self._high_water:
                    self._high_water = len(items)
                outcome = Offer.ACCEPTED
                wake, self._item_waiters = self._item_waiters, []
            else:
                strategy = self.strategy
                if strategy is OverflowStrategy.BUFFER:
                    if on_room is not None:
                        self._room_waiters.append(on_room)
                    return Offer.FULL
                stats[0] += 1
                stats[2] += 1
                if strategy is OverflowStrategy.DROP_NEWEST:
                    outcome = Offer.DROPPED
                    lost: object = item
                elif strategy is OverflowStrategy.ERROR:
                    outcome = Offer.OVERFLOW
                    lost = item
                    self._closed = True
                    self._error = BufferOverflowError(self.capacity, when)
                    wake = self._item_waiters + self._room_waiters
                    self._item_waiters, self._room_waiters = [], []
                else:  # DROP_OLDEST and LATEST: make room by evicting the oldest
                    outcome = Offer.EVICTED
                    lost = items.popleft().item
                    items.append(Entry(item, when))
                dropped = ItemDropped(when, outcome, lost, len(items))
        if dropped is not None and self.listeners.snapshot:
            self.listeners.emit(dropped)
        for callback in wake:
            callback()
        return outcome

    def poll(self, *, on_item: Callback | None = None) -> Entry[T] | None:
        """Take the oldest item for the consumer, or ``None`` if there is none now.

        When ``None`` is returned and the buffer is not :attr:`drained`, ``on_item()``
        (if given) is called once when an item arrives or the buffer closes or fails.
        """
        if on_item is not None:
            _check_callback("on_item", on_item)
        wake: list[Callback] = []
        with self._lock:
            if self._items:
                entry: Entry[T] | None = self._items.popleft()
                self._stats[1] += 1
                wake, self._room_waiters = self._room_waiters, []
            else:
                entry = None
                if on_item is not None and not self._closed:
                    self._item_waiters.append(on_item)
        for callback in wake:
            callback()
        return entry

    def close(self) -> None:
        """No more items go in (offers answer :attr:`Offer.CLOSED`); the consumer may
        still take what is buffered. Idempotent."""
        with self._lock:
            self._closed = True
            wake = self._item_waiters + self._room_waiters
            self._item_waiters, self._room_waiters = [], []
        for callback in wake:
            callback()

    def forget(self, callback: Callback) -> bool:
        """Withdraw a wake-up callback registered by :meth:`offer` or :meth:`poll`."""
        with self._lock:
            for waiters in (self._room_waiters, self._item_waiters):
                for index, registered in enumerate(waiters):
                    if registered is callback:
                        del waiters[index]
                        return True
        return False

    @property
    def closed(self) -> bool:
        """True once closed (or failed): no item goes in any more."""
        return self._closed

    @property
    def error(self) -> BufferOverflowError | None:
        """The overflow that failed the buffer (``ERROR`` strategy), if any."""
        return self._error

    @property
    def drained(self) -> bool:
        """True once closed and empty: the consumer has had everything."""
        with self._lock:
            return self._closed and not self._items

    def metrics(self) -> BufferMetrics:
        """A consistent snapshot of the state and the counts."""
        with self._lock:
            offered, delivered, dropped = self._stats
            return BufferMetrics(
                strategy=self.strategy, capacity=self.capacity, offered=offered,
                delivered=delivered, dropped=dropped, buffered=len(self._items),
                high_water=self._high_water, closed=self._closed,
                failed=self._error is not None)

    def __len__(self) -> int:
        return len(self._items)

    def _end_of_stream(self) -> BaseException:
        return self._error if self._error is not None else BufferClosedError(
            "the buffer is closed and drained")

    def _refused(self, outcome: Offer) -> BaseException:
        if outcome is Offer.OVERFLOW:
            assert self._error is not None
            return self._error
        return BufferClosedError("the buffer is closed: the item was dropped")

    # ----------------------------------------------------------------- blocking driver

    def put(self, item: T, *, timeout: float | None = None) -> Offer:
        """Offer ``item``, blocking while a ``BUFFER`` is full.

        Returns the outcome (accepted, dropped or evicted). Raises
        :class:`BufferOverflowError` on overflow (``ERROR``), :class:`BufferClosedError`
        if closed, :class:`TimeoutError` if no room came within ``timeout`` seconds.
        """
        deadline = self._deadline(timeout)
        while True:
            room = threading.Event()
            outcome = self.offer(item, on_room=room.set)
            if outcome is Offer.FULL:
                if not room.wait(self._remaining(deadline)):
                    self.forget(room.set)
                    raise TimeoutError(f"no room in the buffer within {timeout} s "
                                       f"(all {self.capacity} places taken)")
                continue
            if outcome in (Offer.OVERFLOW, Offer.CLOSED):
                raise self._refused(outcome)
            return outcome

    def get(self, *, timeout: float | None = None) -> T:
        """Take the oldest item, blocking while empty.

        Raises :class:`BufferClosedError` once closed and drained (or the overflow error
        of a failed ``ERROR`` buffer), :class:`TimeoutError` after ``timeout`` seconds.
        """
        deadline = self._deadline(timeout)
        while True:
            arrived = threading.Event()
            entry = self.poll(on_item=arrived.set)
            if entry is not None:
                return entry.item
            if self.drained:
                raise self._end_of_stream()
            if not arrived.wait(self._remaining(deadline)):
                self.forget(arrived.set)
                raise TimeoutError(f"no item in the buffer within {timeout} s")

    def __iter__(self) -> Iterator[T]:
        """Blocking iteration until closed and drained (a failed buffer raises at the end)."""
        while True:
            try:
                yield self.get()
            except BufferClosedError:
                return

    def _deadline(self, timeout: float | None) -> float:
        if timeout is None:
            return math.inf
        return self.clock.now() + require_non_negative("timeout", timeout)

    def _remaining(self, deadline: float) -> float | None:
        if math.isinf(deadline):
            return None
        return max(0.0, min(deadline - self.clock.now(), threading.TIMEOUT_MAX))

    # ----------------------------------------------------------------- asyncio driver

    async def aput(self, item: T) -> Offer:
        """Offer ``item``, awaiting while a ``BUFFER`` is full (see :meth:`put`)."""
        while True:
            wake, woken = _asyncio_waker()
            outcome = self.offer(item, on_room=wake)
            if outcome is Offer.FULL:
                try:
                    await woken
                except BaseException:
                    self.forget(wake)
                    raise
                continue
            if outcome in (Offer.OVERFLOW, Offer.CLOSED):
                raise self._refused(outcome)
            return outcome

    async def aget(self) -> T:
        """Take the oldest item, awaiting while empty (see :meth:`get`)."""
        while True:
            wake, woken = _asyncio_waker()
            entry = self.poll(on_item=wake)
            if entry is not None:
                return entry.item
            if self.drained:
                raise self._end_of_stream()
            try:
                await woken
            except BaseException:
                self.forget(wake)
                raise

    async def __aiter__(self) -> AsyncIterator[T]:
        """``async for item in buffer``: until closed and drained."""
        while True:
            try:
                yield await self.aget()
            except BufferClosedError:
                return

    # ----------------------------------------------------------------- SimPy driver

    def simpy_put(self, env: _SimEnvironment, item: T) -> Generator[Any, Any, Offer]:
        """Offer ``item`` inside a SimPy process, waiting in simulated time while a
        ``BUFFER`` is full: ``outcome = yield from buffer.simpy_put(env, item)``."""
        while True:
            room = env.event()
            outcome = self.offer(item, now=env.now, on_room=_succeed(room))
            if outcome is Offer.FULL:
                yield room
                continue
            if outcome in (Offer.OVERFLOW, Offer.CLOSED):
                raise self._refused(outcome)
            return outcome

    def simpy_get(self, env: _SimEnvironment) -> Generator[Any, Any, Entry[T]]:
        """Take the oldest entry inside a SimPy process, waiting while empty:
        ``entry = yield from buffer.simpy_get(env)``. Raises like :meth:`get`."""
        while True:
            arrived = env.event()
            entry = self.poll(on_item=_succeed(arrived))
            if entry is not None:
                return entry
            if self.drained:
                raise self._end_of_stream()
            yield arrived

    def __repr__(self) -> str:
        return (f"BackpressureBuffer({self.strategy.value!r}, capacity={self.capacity}, "
                f"buffered={len(self._items)})")


def _check_callback(name: str, callback: object) -> None:
    if not callable(callback):
        raise TypeError(f"{name} must be callable, got {callback!r}")
    if is_async_callable(callback):
        raise TypeError(f"{name} must be a plain function, got the coroutine function "
                        f"{callback!r}: the buffer calls it and would drop the coroutine "
                        f"un-awaited")


def _succeed(event: Any) -> Callback:
    def wake() -> None:
        if not event.triggered:
            event.succeed()

    return wake


def _asyncio_waker() -> tuple[Callback, Any]:
    """A callback safe to call from any thread, and the future it completes."""
    import asyncio  # imported here: blocking and SimPy users do not pay for asyncio

    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def resolve() -> None:
        if not future.done():
            future.set_result(None)

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(resolve)

    return wake, future
