"""Demand-driven flow, as in Reactive Streams (guide section 1.2, 背压机制).

Instead of the producer deciding what to do with items nobody can take, the consumer
says how many it can take: a :class:`Subscriber` receives a :class:`DemandSubscription`
in ``on_subscribe`` and calls ``request(n)``; the publisher never delivers more than was
requested in total. The rules followed (numbers from the Reactive Streams 1.0 spec):

* signals reach a subscriber one at a time, ``on_subscribe`` first, then ``on_next``
  (at most as many as requested), then at most one of ``on_error`` / ``on_complete``
  (1.1, 1.3, 1.7) -- through the same safe observer as :class:`Observable`;
* ``request`` may be called from inside ``on_next``: it only adds demand, and the
  delivery loop already running picks it up (no unbounded recursion, 3.3);
* ``request(n)`` with ``n <= 0`` signals ``on_error`` with a :class:`ValueError` and
  cancels (3.9); a total demand of ``2**63 - 1`` or more means "unbounded" (3.17);
* after ``cancel()`` returns nothing more is delivered (3.5, 3.7; from another thread
  ``cancel`` waits for a call in progress, see :meth:`Sink.dispose`).

Two publishers: :class:`IterablePublisher` (cold: each subscriber pulls its own pass
over an iterable) and :class:`DemandPublisher` (a producer pushes into it and waits for
demand: ``try_emit`` decides at once, ``emit`` blocks, ``aemit`` awaits, ``simpy_emit``
waits in simulated time). :func:`iterate` and :func:`aiterate` turn any publisher into
an iterator that requests a window of items at a time.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from typing import Any, Final, Generic, Protocol, TypeVar, runtime_checkable

from patterns._decorate import is_async_callable
from patterns._validation import require_int_at_least, require_non_negative
from patterns.clock import MONOTONIC
from patterns.dataflow.reactive._backpressure import _asyncio_waker
from patterns.dataflow.reactive._observable import Sink

__all__ = [
    "UNBOUNDED",
    "DemandPublisher",
    "DemandSubscription",
    "IterablePublisher",
    "Publisher",
    "Subscriber",
    "aiterate",
    "iterate",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)

UNBOUNDED: Final = 2**63 - 1
"""A demand this large (or larger, in total) means "send everything" (rule 3.17)."""

_log = logging.getLogger("patterns.dataflow.reactive")


@runtime_checkable
class Subscriber(Protocol[T_contra]):
    """Receives ``on_subscribe`` first, then up to the requested number of ``on_next``."""

    def on_subscribe(self, subscription: DemandSubscription) -> None: ...

    def on_next(self, item: T_contra) -> None: ...

    def on_error(self, error: BaseException) -> None: ...

    def on_complete(self) -> None: ...


class Publisher(Protocol[T_co]):
    """Delivers items to subscribers as they request them."""

    def subscribe(self, subscriber: Subscriber[T_co]) -> None: ...


class DemandSubscription:
    """The link between one publisher and one subscriber: ``request(n)`` and ``cancel()``.

    Thread-safe. Counts what was requested and delivered; ``outstanding`` is the demand
    not yet served.
    """

    __slots__ = ("_cancelled", "_delivered", "_demand", "_lock", "_on_demand", "_requested",
                 "_sink", "_started", "_terminated", "_waiters")

    def __init__(self, sink: Sink[Any], on_demand: Callable[[], object] | None) -> None:
        self._sink = sink
        self._on_demand = on_demand
        self._lock = threading.Lock()
        self._demand = 0
        self._requested = 0
        self._delivered = 0
        self._started = False  # demand is usable once on_subscribe has returned
        self._cancelled = False
        self._terminated = False
        self._waiters: list[Callable[[], object]] = []

    # ----------------------------------------------------------------- subscriber side

    def request(self, n: int) -> None:
        """Ask for ``n`` more items (``n >= 1``). ``n <= 0`` ends the stream with a
        :class:`ValueError` (rule 3.9). After cancellation, does nothing."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, got {n!r} ({type(n).__name__})")
        if n <= 0:
            if not self._cancelled:
                self._sink.on_error(ValueError(
                    f"request(n) needs n > 0 (Reactive Streams rule 3.9), got {n!r}"))
                self.cancel()
            return
        with self._lock:
            if self._cancelled or self._terminated:
                return
            self._demand = min(UNBOUNDED, self._demand + n)
            self._requested = min(UNBOUNDED, self._requested + n)
            ready = self._started
            wake, self._waiters = (self._waiters, []) if ready else ([], self._waiters)
        if ready:
            self._notify(wake)

    def cancel(self) -> None:
        """Stop delivery (idempotent); nothing is delivered after it returns."""
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            wake, self._waiters = self._waiters, []
        self._sink.dispose()
        for callback in wake:
            callback()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def requested(self) -> int:
        """Items requested in total (saturates at :data:`UNBOUNDED`)."""
        return self._requested

    @property
    def delivered(self) -> int:
        """Items delivered (or being delivered) in total."""
        return self._delivered

    @property
    def outstanding(self) -> int:
        """Demand not yet served."""
        return self._demand if self._started else 0

    # ----------------------------------------------------------------- publisher side

    def _start(self, subscriber: Subscriber[Any]) -> None:
        try:
            subscriber.on_subscribe(self)
        except Exception as error:  # rule 2.13: a failing subscriber is cancelled
            _log.exception("subscriber %r failed in on_subscribe", subscriber)
            self._sink.on_error(error)
            self.cancel()
            return
        with self._lock:
            self._started = True
            ready = self._demand > 0
            wake, self._waiters = (self._waiters, []) if ready else ([], self._waiters)
        if ready:
            self._notify(wake)

    def _notify(self, wake: list[Callable[[], object]]) -> None:
        if self._on_demand is not None:
            self._on_demand()
        for callback in wake:
            callback()

    def _take(self) -> bool:
        """Consume one unit of demand; False if there is none (or it is over)."""
        with self._lock:
            if not self._started or self._cancelled or self._terminated or not self._demand:
                return False
            if self._demand < UNBOUNDED:
                self._demand -= 1
            self._delivered += 1
            return True

    def _wait_for_demand(self, callback: Callable[[], object]) -> bool:
        """Register ``callback`` for when demand appears; False if there is no need
        to wait (there is demand, or the subscription is over)."""
        with self._lock:
            if (self._started and self._demand) or self._cancelled or self._terminated:
                return False
            self._waiters.append(callback)
            return True

    def _forget(self, callback: Callable[[], object]) -> None:
        with self._lock:
            self._waiters = [w for w in self._waiters if w is not callback]

    def _finish(self, error: BaseException | None) -> bool:
        with self._lock:
            if self._terminated or self._cancelled:
                return False
            self._terminated = True
            wake, self._waiters = self._waiters, []
        if error is None:
            self._sink.on_complete()
        else:
            self._sink.on_error(error)
        for callback in wake:
            callback()
        return True

    @property
    def _over(self) -> bool:
        return self._cancelled or self._terminated

    def __repr__(self) -> str:
        return (f"DemandSubscription(requested={self._requested}, delivered={self._delivered}, "
                f"cancelled={self._cancelled})")


class IterablePublisher(Generic[T]):
    """A cold publisher: each subscriber pulls its own pass over ``values``.

    Items are produced only when requested (the iterable is advanced on demand, at most
    one item ahead so that the end is signalled right after the last item), on the
    thread that calls ``request``; an exception from the iterable ends that subscriber's
    stream with ``on_error``.
    """

    __slots__ = ("values",)

    def __init__(self, values: Iterable[T]) -> None:
        if not isinstance(values, Iterable):
            raise TypeError(f"values must be iterable, got {values!r}")
        self.values = values

    def subscribe(self, subscriber: Subscriber[T]) -> None:
        _check_subscriber(subscriber)
        iterator = iter(self.values)
        lock = threading.Lock()
        state = {"draining": False, "missed": False}
        lookahead: list[T] = []  # an item fetched ahead while there was no demand left
        sink: Sink[T] = Sink(subscriber)

        def drain() -> None:
            with lock:  # one drain loop at a time; others leave a note (rule 3.3)
                if state["draining"]:
                    state["missed"] = True
                    return
                state["draining"] = True
            pending: list[T] = lookahead[:]  # the next item, fetched ahead
            lookahead.clear()
            while True:
                while not subscription._over:
                    # look one item ahead, so that the end is signalled right after the
                    # last item rather than at the next request
                    if not pending:
                        try:
                            pending.append(next(iterator))
                        except StopIteration:
                            subscription._finish(None)
                            break
                        except Exception as error:
                            subscription._finish(error)
                            break
                    if not subscription._take():
                        break
                    sink.on_next(pending.pop())
                with lock:
                    if not state["missed"]:
                        state["draining"] = False
                        lookahead.extend(pending)
                        return
                    state["missed"] = False

        subscription = DemandSubscription(sink, drain)
        subscription._start(subscriber)
        drain()  # an empty iterable completes without waiting for demand (rule 1.4)

    def __repr__(self) -> str:
        return f"IterablePublisher({self.values!r})"


class _SimEnvironment(Protocol):
    def event(self) -> Any: ...


class DemandPublisher(Generic[T]):
    """A hot, unicast publisher that a producer pushes into, within the demand.

    One subscriber at a time (a second one receives ``on_subscribe`` and then an
    ``on_error``). The producer calls :meth:`try_emit` (decides at once: delivered or
    not), or waits for demand with :meth:`emit` (blocking), :meth:`aemit` (asyncio) or
    :meth:`simpy_emit` (SimPy); then :meth:`complete` or :meth:`error`. Thread-safe:
    several producer threads never deliver more than was requested in total.
    """

    __slots__ = ("_lock", "_subscribed", "_subscription")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscription: DemandSubscription | None = None
        self._subscribed = threading.Event()

    def subscribe(self, subscriber: Subscriber[T]) -> None:
        _check_subscriber(subscriber)
        sink: Sink[T] = Sink(subscriber)
        subscription = DemandSubscription(sink, None)
        with self._lock:
            taken = self._subscription is not None
            if not taken:
                self._subscription = subscription
        if taken:
            subscription._start(subscriber)
            subscription._finish(RuntimeError("this DemandPublisher already has a subscriber"))
            return
        self._subscribed.set()
        subscription._start(subscriber)

    @property
    def subscription(self) -> DemandSubscription | None:
        """The current subscription, once somebody subscribed."""
        return self._subscription

    @property
    def demand(self) -> int:
        """How many items may be emitted now."""
        subscription = self._subscription
        return 0 if subscription is None else subscription.outstanding

    @property
    def cancelled(self) -> bool:
        """True once the subscriber cancelled (or the stream ended): stop producing."""
        subscription = self._subscription
        return subscription is not None and subscription._over

    def try_emit(self, item: T) -> bool:
        """Deliver ``item`` if there is demand now; ``False`` if not (it is not kept)."""
        subscription = self._subscription
        if subscription is None or not subscription._take():
            return False
        subscription._sink.on_next(item)
        return True

    def complete(self) -> None:
        """End the stream normally."""
        if self._subscription is not None:
            self._subscription._finish(None)

    def error(self, error: BaseException) -> None:
        """End the stream with ``error``."""
        if not isinstance(error, BaseException):
            raise TypeError(f"error must be an exception, got {error!r}")
        if self._subscription is not None:
            self._subscription._finish(error)

    def emit(self, item: T, *, timeout: float | None = None) -> bool:
        """Deliver ``item``, blocking until there is demand; ``False`` if the stream is
        over (cancelled or ended). Raises :class:`TimeoutError` after ``timeout`` s."""
        if timeout is not None:
            require_non_negative("timeout", timeout)
        deadline = math.inf if timeout is None else MONOTONIC.now() + timeout

        def remaining() -> float | None:
            if math.isinf(deadline):
                return None
            return max(0.0, min(deadline - MONOTONIC.now(), threading.TIMEOUT_MAX))

        if self._subscription is None and not self._subscribed.wait(remaining()):
            raise TimeoutError(f"nobody subscribed within {timeout} s")
        subscription = self._subscription
        assert subscription is not None
        while True:
            if self.try_emit(item):
                return True
            if subscription._over:
                return False
            ready = threading.Event()
            if subscription._wait_for_demand(ready.set) and not ready.wait(remaining()):
                subscription._forget(ready.set)
                raise TimeoutError(f"no demand within {timeout} s")

    async def aemit(self, item: T) -> bool:
        """Deliver ``item``, awaiting demand (see :meth:`emit`)."""
        import asyncio

        while True:
            subscription = self._subscription
            if subscription is not None:
                if self.try_emit(item):
                    return True
                if subscription._over:
                    return False
                wake, woken = _asyncio_waker()
                if subscription._wait_for_demand(wake):
                    try:
                        await woken
                    except BaseException:
                        subscription._forget(wake)
                        raise
            else:
                await asyncio.sleep(0)  # nobody subscribed yet: let the loop run

    def simpy_emit(self, env: _SimEnvironment, item: T) -> Generator[Any, Any, bool]:
        """Deliver ``item`` inside a SimPy process, waiting for demand in simulated time:
        ``delivered = yield from publisher.simpy_emit(env, item)``. A subscriber must be
        subscribed already."""
        subscription = self._subscription
        if subscription is None:
            raise RuntimeError("simpy_emit needs a subscriber: subscribe before emitting")
        while True:
            if self.try_emit(item):
                return True
            if subscription._over:
                return False
            ready = env.event()

            def wake(event: Any = ready) -> None:
                if not event.triggered:
                    event.succeed()

            if subscription._wait_for_demand(wake):
                yield ready

    def __repr__(self) -> str:
        return f"DemandPublisher(demand={self.demand}, cancelled={self.cancelled})"


def _check_publisher(publisher: object) -> None:
    if not callable(getattr(publisher, "subscribe", None)):
        raise TypeError(f"publisher must be a Publisher (with subscribe()), got {publisher!r}")


def _check_subscriber(subscriber: object) -> None:
    if not isinstance(subscriber, Subscriber):
        raise TypeError(f"subscriber must have on_subscribe, on_next, on_error and "
                        f"on_complete, got {subscriber!r}")
    for name in ("on_subscribe", "on_next", "on_error", "on_complete"):
        if is_async_callable(getattr(subscriber, name)):
            raise TypeError(f"subscriber's {name} must be a plain method, got a coroutine "
                            f"function: a publisher calls it and would drop the coroutine "
                            f"un-awaited")


# --------------------------------------------------------------------------- iterators


class _Inbox(Generic[T]):
    """A subscriber that keeps what arrives for an iterator to take."""

    def __init__(self, window: int, wake: Callable[[], object]) -> None:
        self.window = window
        self.items: collections.deque[T] = collections.deque()
        self.done = False
        self.error: BaseException | None = None
        self.subscription: DemandSubscription | None = None
        self.wake = wake

    def on_subscribe(self, subscription: DemandSubscription) -> None:
        self.subscription = subscription
        subscription.request(self.window)

    def on_next(self, item: T) -> None:
        self.items.append(item)
        self.wake()

    def on_error(self, error: BaseException) -> None:
        self.error = error
        self.done = True
        self.wake()

    def on_complete(self) -> None:
        self.done = True
        self.wake()


def iterate(publisher: Publisher[T], *, window: int = 16) -> Iterator[T]:
    """Iterate over ``publisher``'s items, blocking while none is there.

    Requests ``window`` items at first and one more for each item taken, so at most
    ``window`` items wait in memory. Raises the stream's error, if it ends with one.
    Closing the iterator (or leaving a ``for`` loop early) cancels the subscription.
    """
    require_int_at_least("window", window, 1)
    _check_publisher(publisher)
    condition = threading.Condition()

    def wake() -> None:
        with condition:
            condition.notify_all()

    inbox: _Inbox[T] = _Inbox(window, wake)
    publisher.subscribe(inbox)
    try:
        while True:
            with condition:
                while not inbox.items and not inbox.done:
                    condition.wait()
                has_item = bool(inbox.items)
                item = inbox.items.popleft() if has_item else None
            if not has_item:
                if inbox.error is not None:
                    raise inbox.error
                return
            yield item  # type: ignore[misc]
            if inbox.subscription is not None:
                inbox.subscription.request(1)
    finally:
        if inbox.subscription is not None:
            inbox.subscription.cancel()


async def aiterate(publisher: Publisher[T], *, window: int = 16) -> AsyncIterator[T]:
    """``async for item in aiterate(publisher)``: like :func:`iterate`, awaiting items.

    The publisher may deliver from any thread.
    """
    import asyncio

    require_int_at_least("window", window, 1)
    _check_publisher(publisher)
    loop = asyncio.get_running_loop()
    arrived = asyncio.Event()

    def wake() -> None:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(arrived.set)

    inbox: _Inbox[T] = _Inbox(window, wake)
    publisher.subscribe(inbox)
    try:
        while True:
            while not inbox.items and not inbox.done:
                arrived.clear()
                if inbox.items or inbox.done:
                    break
                await arrived.wait()
            if inbox.items:
                item = inbox.items.popleft()
                yield item
                if inbox.subscription is not None:
                    inbox.subscription.request(1)
                continue
            if inbox.error is not None:
                raise inbox.error
            return
    finally:
        if inbox.subscription is not None:
            inbox.subscription.cancel()
