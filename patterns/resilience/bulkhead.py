"""Bulkheads: bound the concurrency spent on one dependency (guide section 4.3, 舱壁与隔离模式).

A ship's bulkheads keep one flooded compartment from sinking the whole ship. In a service,
a bulkhead caps how many calls may be in progress towards one dependency at a time, so
that a dependency that turns slow can tie up only its own share of threads, connections
or memory, and every other dependency keeps being served.

Two kinds, as in the guide and in resilience4j:

* :class:`Bulkhead` (the semaphore bulkhead): at most ``max_concurrent_calls`` calls run
  at once; up to ``max_queue_size`` callers wait, first come first served, for at most
  ``max_wait`` seconds each; everybody else is refused at once with a
  :class:`BulkheadFullError` saying which bulkhead refused and why.
* :class:`ThreadPoolBulkhead` (thread isolation): a bounded executor per dependency,
  ``max_threads`` workers and a bounded queue of tasks waiting for one.

The decision logic is sans-I/O. :meth:`Bulkhead.enter` decides *admit*, *queue* or
*reject* and hands out a :class:`Ticket`; a granted ticket carries a :class:`Permit`,
which is released exactly once (it is a context manager, and a second release does
nothing). When a permit is released the core hands it straight to the oldest waiter and
wakes that waiter through the callback it registered. Thin drivers do the waiting:

* :meth:`Bulkhead.acquire` / :meth:`Bulkhead.call` block the calling thread (a
  :class:`threading.Event`, i.e. a condition variable, waited on with a timeout measured
  by the bulkhead's clock);
* :meth:`Bulkhead.aacquire` / :meth:`Bulkhead.acall` await an :mod:`asyncio` future;
* :meth:`Bulkhead.simpy_call` yields a SimPy event that the core triggers when the
  permit is handed over (``yield from bulkhead.simpy_call(env, attempt_fn)``). The core
  imports nothing from SimPy.

Listeners subscribed to :attr:`Bulkhead.listeners` receive :class:`CallPermitted`,
:class:`CallQueued`, :class:`CallRejected` and :class:`CallFinished` events.

What the guide's sketch gets wrong, and this module does differently:

* it creates its queue channel as ``let (queue_tx, _) = mpsc::channel(n)``: the receiver
  is dropped at once, the channel is closed, and ``try_send`` fails on every call, so
  the sketch rejects every request; here the queue is a real FIFO of waiters;
* its permit's ``Drop`` *sends* into the queue again instead of leaving it, so the queue
  only ever fills; here a finished call frees its permit, and a waiter that times out or
  is cancelled leaves the queue;
* a caller that got into its queue waits for a permit without any limit; here a waiter
  gives up after ``max_wait``;
* its ``ThreadIsolation`` checks the queue length and then submits (two steps, so
  concurrent callers can all pass the check); here admission is one atomic decision.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from types import CoroutineType
from typing import Any, ParamSpec, Protocol, TypeVar

from patterns._decorate import (
    PLAIN_RESULTS,
    CallDecorator,
    is_awaitable_result,
    not_awaitable_error,
    reject_awaitable_result,
    reject_coroutine_function,
)
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
    "Bulkhead",
    "BulkheadEvent",
    "BulkheadFullError",
    "BulkheadMetrics",
    "CallFinished",
    "CallPermitted",
    "CallQueued",
    "CallRejected",
    "Permit",
    "RejectReason",
    "ThreadPoolBulkhead",
    "Ticket",
    "TicketState",
]

P = ParamSpec("P")
R = TypeVar("R")


# --------------------------------------------------------------------------- events


class RejectReason(StrEnum):
    """Why a bulkhead refused a call."""

    QUEUE_FULL = "queue_full"
    """Every permit was in use and the wait queue was full (or there is no queue)."""
    WAIT_TIMEOUT = "wait_timeout"
    """The caller waited ``max_wait`` seconds in the queue without getting a permit."""


@dataclass(frozen=True, slots=True)
class BulkheadEvent:
    """Something a bulkhead did, at ``time`` (seconds on the driver's clock)."""

    time: float
    bulkhead: str
    """The bulkhead's name."""


@dataclass(frozen=True, slots=True)
class CallPermitted(BulkheadEvent):
    """A call got a permit and may run, after waiting ``waited`` seconds in the queue."""

    waited: float


@dataclass(frozen=True, slots=True)
class CallQueued(BulkheadEvent):
    """Every permit was in use: the call joined the queue, now ``queued`` long."""

    queued: int


@dataclass(frozen=True, slots=True)
class CallRejected(BulkheadEvent):
    """The call was refused for ``reason`` after waiting ``waited`` seconds."""

    reason: RejectReason
    waited: float


@dataclass(frozen=True, slots=True)
class CallFinished(BulkheadEvent):
    """A permit was released after being held for ``duration`` seconds."""

    duration: float


class BulkheadFullError(Rebuildable, Exception):
    """A bulkhead refused a call: it names the bulkhead and the reason.

    Attributes: ``bulkhead`` (the name), ``reason`` (a :class:`RejectReason`),
    ``in_flight`` and ``queued`` (the bulkhead's state at the refusal), and ``waited``
    (seconds spent in the queue before the refusal).
    """

    def __init__(
        self,
        bulkhead: str,
        reason: RejectReason,
        in_flight: int,
        queued: int,
        max_concurrent_calls: int,
        max_queue_size: int,
        waited: float = 0.0,
        max_wait: float = math.inf,
    ) -> None:
        if reason is RejectReason.WAIT_TIMEOUT:
            why = (f"no permit within max_wait={max_wait:g} s "
                   f"(waited {waited:g} s, {in_flight} of {max_concurrent_calls} permits "
                   f"in use, {queued} waiting)")
        else:
            why = (f"all {max_concurrent_calls} permits in use and the queue is full "
                   f"({queued} of {max_queue_size} places taken)")
        super().__init__(f"bulkhead {bulkhead!r} rejected the call ({reason.value}): {why}")
        self.bulkhead = bulkhead
        self.reason = reason
        self.in_flight = in_flight
        self.queued = queued
        self.waited = waited


@dataclass(frozen=True, slots=True)
class BulkheadMetrics:
    """A consistent snapshot of a bulkhead: current state and counts since creation."""

    in_flight: int
    """Calls holding a permit now."""
    queued: int
    """Callers waiting for a permit now."""
    max_concurrent_calls: int
    max_queue_size: int
    permitted: int
    """Calls that got a permit (at once or after waiting)."""
    rejected_queue_full: int
    rejected_wait_timeout: int
    finished: int
    """Permits released."""
    abandoned: int
    """Waiters that left the queue because their caller cancelled (not a rejection)."""

    @property
    def available_permits(self) -> int:
        """Permits free now."""
        return self.max_concurrent_calls - self.in_flight

    @property
    def rejected(self) -> int:
        """Calls refused, for either reason."""
        return self.rejected_queue_full + self.rejected_wait_timeout


# --------------------------------------------------------------------------- tickets


class TicketState(StrEnum):
    """Where a caller stands with the bulkhead."""

    WAITING = "waiting"
    GRANTED = "granted"
    TIMED_OUT = "timed_out"
    """It waited ``max_wait`` without a permit and left the queue (a rejection)."""
    ABANDONED = "abandoned"
    """Its caller gave up waiting for another reason (cancelled) and it left the queue."""


WakeCallback = Callable[["Ticket"], object]


class Ticket:
    """One caller's place: granted a :class:`Permit` at once, or waiting in the queue.

    A waiting ticket ends in one of three ways: the core grants it a permit, the core
    times it out (after ``deadline``, see :meth:`Bulkhead.expire`), or its caller gives
    up (:meth:`Bulkhead.give_up`). Either of the first two calls the ``on_wake``
    callback given to :meth:`Bulkhead.enter`, once, outside the bulkhead's lock.
    """

    __slots__ = ("_on_wake", "deadline", "enqueued_at", "permit", "state")

    def __init__(self, enqueued_at: float, deadline: float, on_wake: WakeCallback | None):
        self.enqueued_at = enqueued_at
        """When the caller arrived (seconds)."""
        self.deadline = deadline
        """The latest time at which the ticket may still be granted a permit."""
        self.state = TicketState.WAITING
        self.permit: Permit | None = None
        """The permit, once granted."""
        self._on_wake = on_wake

    @property
    def waiting(self) -> bool:
        return self.state is TicketState.WAITING

    def __repr__(self) -> str:
        return (f"Ticket(state={self.state.value}, enqueued_at={self.enqueued_at!r}, "
                f"deadline={self.deadline!r})")


class Permit:
    """The right to run one call inside a bulkhead; release it exactly once.

    Use it as a context manager (``with permit: ...``) so that it is released even when
    the call raises. :meth:`release` is idempotent: only the first call frees the permit.
    """

    __slots__ = ("_bulkhead", "granted_at", "released", "waited")

    def __init__(self, bulkhead: Bulkhead, granted_at: float, waited: float) -> None:
        self._bulkhead = bulkhead
        self.granted_at = granted_at
        """When the permit was granted (seconds)."""
        self.waited = waited
        """How long its caller waited in the queue for it (seconds)."""
        self.released = False

    def release(self, now: float | None = None) -> bool:
        """Give the permit back (to the oldest waiter, if any); ``False`` if already done.

        ``now`` defaults to the bulkhead's clock; the SimPy driver passes ``env.now``.
        """
        return self._bulkhead._release(self, now)

    def __enter__(self) -> Permit:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"Permit({self._bulkhead.name!r}, {state}, granted_at={self.granted_at!r})"


# --------------------------------------------------------------------------- the bulkhead


class _SimEnvironment(Protocol):
    """The part of a ``simpy.Environment`` that the SimPy driver uses."""

    @property
    def now(self) -> float: ...

    def timeout(self, delay: float) -> Any: ...

    def event(self) -> Any: ...


_Wake = tuple[WakeCallback, Ticket]


class Bulkhead(CallDecorator):
    """A semaphore bulkhead with a bounded FIFO queue (guide section 4.3, 舱壁与隔离模式).

    Parameters
    ----------
    name:
        Names the bulkhead in errors and events (say, the dependency it protects).
    max_concurrent_calls:
        How many calls may hold a permit at once (>= 1).
    max_queue_size:
        How many callers may wait for a permit (>= 0; 0 means "no queue": a caller who
        finds every permit in use is rejected at once).
    max_wait:
        How long (seconds, >= 0, ``math.inf`` for no limit) a caller waits in the queue
        before it is rejected with :attr:`RejectReason.WAIT_TIMEOUT`. With 0, a caller
        who finds every permit in use is rejected at once, whatever the queue size.
        The default is no limit, which is only bounded if the queue is; give a finite
        value in production.
    clock:
        Where time is read (deadlines, event times) by the blocking and asyncio drivers
        and wherever no ``now`` is passed explicitly.
    listeners:
        Receive :class:`BulkheadEvent`\\ s; a new registry by default.

    Waiters are served first come, first served: a caller never overtakes one who is
    already waiting (:meth:`enter` does not grant a free permit while anybody waits,
    and a released permit goes straight to the oldest waiter). Thread-safe: one lock
    guards the counters and the queue, and it is never held while listeners, wake-up
    callbacks or protected calls run.
    """

    __slots__ = (
        "_finished",
        "_in_flight",
        "_lock",
        "_queue",
        "_queued",
        "_stats",
        "clock",
        "listeners",
        "max_concurrent_calls",
        "max_queue_size",
        "max_wait",
        "name",
    )

    def __init__(
        self,
        name: str,
        max_concurrent_calls: int,
        max_queue_size: int = 0,
        *,
        max_wait: float = math.inf,
        clock: Clock = MONOTONIC,
        listeners: Listeners[BulkheadEvent] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.name = name
        self.max_concurrent_calls = require_int_at_least(
            "max_concurrent_calls", max_concurrent_calls, 1)
        self.max_queue_size = require_int_at_least("max_queue_size", max_queue_size, 0)
        self.max_wait = float(require_non_negative("max_wait", max_wait))
        self.clock = require_clock("clock", clock)
        if listeners is not None and not isinstance(listeners, Listeners):
            raise TypeError(f"listeners must be a Listeners registry, got {listeners!r}")
        self.listeners: Listeners[BulkheadEvent] = (
            listeners if listeners is not None else Listeners()
        )
        self._lock = threading.Lock()
        self._in_flight = 0
        self._queued = 0
        # Waiting tickets in arrival order. A ticket that leaves early stays in the deque
        # (marked) and is skipped when it reaches the head: O(1) removal.
        self._queue: deque[Ticket] = deque()
        # permitted, rejected (queue full), rejected (timeout), abandoned
        self._stats = [0, 0, 0, 0]
        self._finished = 0

    # ----------------------------------------------------------------- the core

    def enter(
        self, *, now: float | None = None, on_wake: WakeCallback | None = None
    ) -> Ticket:
        """Decide for one arriving call: admit, queue, or reject.

        Returns a :class:`Ticket`: granted (``ticket.permit`` is set) if a permit is free
        and nobody is waiting, else waiting in the queue; ``on_wake(ticket)`` will be
        called when it stops waiting. Raises :class:`BulkheadFullError` (and emits
        :class:`CallRejected`) if it can neither run nor wait.
        """
        if on_wake is not None and not callable(on_wake):
            raise TypeError(f"on_wake must be callable, got {on_wake!r}")
        when = self.clock.now() if now is None else require_finite("now", now)
        events: list[BulkheadEvent] = []
        wakes: list[_Wake] = []
        error: BulkheadFullError | None = None
        with self._lock:
            self._expire_locked(when, events, wakes)
            ticket = Ticket(when, when + self.max_wait, on_wake)
            if self._in_flight < self.max_concurrent_calls and not self._queued:
                self._grant_locked(ticket, when, events)
            elif self._queued < self.max_queue_size and self.max_wait > 0:
                self._queue.append(ticket)
                self._queued += 1
                events.append(CallQueued(when, self.name, self._queued))
            else:
                if self.max_wait > 0 or not self.max_queue_size:
                    reason = RejectReason.QUEUE_FULL
                    self._stats[1] += 1
                else:  # a queue with place in it, but nobody may wait
                    reason = RejectReason.WAIT_TIMEOUT
                    self._stats[2] += 1
                error = self._error_locked(reason, 0.0)
                events.append(CallRejected(when, self.name, reason, 0.0))
        self._publish(events, wakes)
        if error is not None:
            raise error
        return ticket

    def give_up(self, ticket: Ticket, *, now: float | None = None, timed_out: bool = True) -> bool:
        """The caller stops waiting: take ``ticket`` out of the queue.

        ``timed_out`` says why: its wait is over (a rejection, :class:`CallRejected` with
        :attr:`RejectReason.WAIT_TIMEOUT`) or it was cancelled (counted as abandoned,
        no event). Returns ``True`` if the ticket left the queue now; ``False`` if it was
        no longer waiting (it has been granted a permit meanwhile, which the caller now
        holds and must use or release, or it had already timed out). No wake-up
        callback is called for a ticket that gives up.
        """
        if not isinstance(ticket, Ticket):
            raise TypeError(f"ticket must be a Ticket, got {ticket!r}")
        when = self.clock.now() if now is None else require_finite("now", now)
        events: list[BulkheadEvent] = []
        wakes: list[_Wake] = []
        with self._lock:
            if ticket.state is not TicketState.WAITING:
                return False
            self._leave_locked(ticket)
            if timed_out:
                ticket.state = TicketState.TIMED_OUT
                self._stats[2] += 1
                events.append(CallRejected(when, self.name, RejectReason.WAIT_TIMEOUT,
                                           when - ticket.enqueued_at))
            else:
                ticket.state = TicketState.ABANDONED
                self._stats[3] += 1
            self._compact_locked()
        self._publish(events, wakes)
        return True

    def expire(self, now: float | None = None) -> int:
        """Time out every waiter whose deadline has passed; return how many.

        Each one leaves the queue, is rejected (:class:`CallRejected`) and woken. The
        core also does this whenever a call arrives or a permit is released, so an
        overdue waiter never gets a permit; drivers and tests call it to wake overdue
        waiters without waiting for traffic.
        """
        when = self.clock.now() if now is None else require_finite("now", now)
        events: list[BulkheadEvent] = []
        wakes: list[_Wake] = []
        with self._lock:
            count = self._expire_locked(when, events, wakes)
        self._publish(events, wakes)
        return count

    def metrics(self) -> BulkheadMetrics:
        """A consistent snapshot of the state and the counts."""
        with self._lock:
            permitted, full, timeout, abandoned = self._stats
            return BulkheadMetrics(
                in_flight=self._in_flight,
                queued=self._queued,
                max_concurrent_calls=self.max_concurrent_calls,
                max_queue_size=self.max_queue_size,
                permitted=permitted,
                rejected_queue_full=full,
                rejected_wait_timeout=timeout,
                finished=self._finished,
                abandoned=abandoned,
            )

    def _release(self, permit: Permit, now: float | None) -> bool:
        when = self.clock.now() if now is None else require_finite("now", now)
        events: list[BulkheadEvent] = []
        wakes: list[_Wake] = []
        with self._lock:
            if permit.released:
                return False
            permit.released = True
            self._finished += 1
            self._in_flight -= 1
            events.append(CallFinished(when, self.name, when - permit.granted_at))
            self._expire_locked(when, events, wakes)
            ticket = self._pop_waiter_locked()
            if ticket is not None:  # hand the permit straight to the oldest waiter
                self._queued -= 1
                self._grant_locked(ticket, when, events)
                if ticket._on_wake is not None:
                    wakes.append((ticket._on_wake, ticket))
        self._publish(events, wakes)
        return True

    # ----------------------------------------------------------------- under the lock

    def _grant_locked(self, ticket: Ticket, when: float, events: list[BulkheadEvent]) -> None:
        waited = when - ticket.enqueued_at
        ticket.permit = Permit(self, when, waited)
        ticket.state = TicketState.GRANTED
        self._in_flight += 1
        self._stats[0] += 1
        events.append(CallPermitted(when, self.name, waited))

    def _pop_waiter_locked(self) -> Ticket | None:
        queue = self._queue
        while queue:
            ticket = queue.popleft()
            if ticket.state is TicketState.WAITING:
                return ticket
        return None

    def _expire_locked(
        self, when: float, events: list[BulkheadEvent], wakes: list[_Wake]
    ) -> int:
        # Every waiter has the same max_wait, so deadlines grow along the queue and only
        # the head needs looking at. A waiter may still be granted at its deadline.
        count = 0
        queue = self._queue
        while queue:
            ticket = queue[0]
            if ticket.state is not TicketState.WAITING:
                queue.popleft()
                continue
            if not ticket.deadline < when:
                break
            queue.popleft()
            self._queued -= 1
            ticket.state = TicketState.TIMED_OUT
            self._stats[2] += 1
            count += 1
            events.append(CallRejected(when, self.name, RejectReason.WAIT_TIMEOUT,
                                       when - ticket.enqueued_at))
            if ticket._on_wake is not None:
                wakes.append((ticket._on_wake, ticket))
        return count

    def _leave_locked(self, ticket: Ticket) -> None:
        self._queued -= 1
        if self._queue and self._queue[0] is ticket:
            self._queue.popleft()

    def _compact_locked(self) -> None:
        # Tickets that left early are skipped lazily; drop them when they pile up.
        if len(self._queue) > 2 * self._queued + 32:
            self._queue = deque(t for t in self._queue if t.state is TicketState.WAITING)

    def _error_locked(self, reason: RejectReason, waited: float) -> BulkheadFullError:
        return BulkheadFullError(
            self.name, reason, in_flight=self._in_flight, queued=self._queued,
            max_concurrent_calls=self.max_concurrent_calls,
            max_queue_size=self.max_queue_size, waited=waited, max_wait=self.max_wait)

    def _publish(self, events: list[BulkheadEvent], wakes: list[_Wake]) -> None:
        """Emit events and wake waiters, outside the lock."""
        if events and self.listeners.snapshot:
            for event in events:
                self.listeners.emit(event)
        for wake, ticket in wakes:
            wake(ticket)

    def _timeout_error(self, ticket: Ticket, now: float) -> BulkheadFullError:
        with self._lock:
            return self._error_locked(RejectReason.WAIT_TIMEOUT, now - ticket.enqueued_at)

    # ----------------------------------------------------------------- blocking driver

    def acquire(self) -> Permit:
        """Get a permit, blocking while waiting in the queue; use it with ``with``.

        Raises :class:`BulkheadFullError` when the queue is full or the wait exceeds
        ``max_wait`` (measured on the bulkhead's clock).
        """
        woken = threading.Event()
        ticket = self.enter(on_wake=lambda _: woken.set())
        if ticket.permit is not None:
            return ticket.permit
        now = self.clock.now
        try:
            while not woken.is_set():
                remaining = ticket.deadline - now()
                if remaining <= 0:
                    break
                woken.wait(None if math.isinf(remaining) else min(remaining, threading.TIMEOUT_MAX))
        except BaseException:
            self._abandon(ticket)
            raise
        return self._outcome(ticket, now())

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` holding a permit (blocking while queued).

        The blocking driver: a coroutine function is refused with :class:`TypeError`
        before it queues (use :meth:`acall`), and so is a result that is an awaitable.
        """
        reject_coroutine_function(fn, "Bulkhead.call")
        with self.acquire():
            result = fn(*args, **kwargs)
        if type(result) not in PLAIN_RESULTS and is_awaitable_result(result):
            reject_awaitable_result(result, "Bulkhead.call", fn)
        return result

    # ----------------------------------------------------------------- asyncio driver

    async def aacquire(self) -> Permit:
        """Get a permit, awaiting while queued (``max_wait`` measured on the clock)."""
        import asyncio  # imported here: sync and SimPy users do not pay for asyncio

        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()

        def set_woken() -> None:
            if not woken.done():
                woken.set_result(None)

        def on_wake(_: Ticket) -> None:
            # The releasing thread may be another thread or this loop itself.
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(set_woken)

        ticket = self.enter(on_wake=on_wake)
        if ticket.permit is not None:
            return ticket.permit
        now = self.clock.now
        try:
            while not woken.done() and ticket.waiting:
                remaining = ticket.deadline - now()
                if remaining <= 0:
                    break
                await asyncio.wait({woken}, timeout=None if math.isinf(remaining) else remaining)
        except BaseException:
            self._abandon(ticket)
            raise
        return self._outcome(ticket, now())

    async def acall(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await ``fn(*args, **kwargs)`` holding a permit (awaiting while queued)."""
        if not callable(fn):
            raise TypeError(f"Bulkhead.acall: fn must be callable, got {fn!r}")
        permit = await self.aacquire()
        with permit:
            awaitable = fn(*args, **kwargs)
            if type(awaitable) is not CoroutineType and not is_awaitable_result(awaitable):
                raise not_awaitable_error("Bulkhead.acall", fn, awaitable)
            return await awaitable

    # ----------------------------------------------------------------- SimPy driver

    def simpy_call(
        self,
        env: _SimEnvironment,
        attempt_fn: Callable[[], Generator[Any, Any, R]],
    ) -> Generator[Any, Any, R]:
        """Run ``attempt_fn()`` (a SimPy process body) holding a permit, in simulated time.

        Use it inside a process: ``value = yield from bulkhead.simpy_call(env, attempt)``.
        Times are ``env.now``; a queued caller waits on a SimPy event that the core
        triggers when it hands over a permit, or until ``env.timeout`` of its remaining
        ``max_wait``. Raises :class:`BulkheadFullError` when refused. The permit is
        released when ``attempt_fn`` returns or raises (also on a SimPy ``Interrupt``).
        """
        woken = env.event()

        def on_wake(_: Ticket) -> None:
            if not woken.triggered:
                woken.succeed()

        ticket = self.enter(now=env.now, on_wake=on_wake)
        if ticket.permit is None:
            try:
                if math.isinf(ticket.deadline):
                    yield woken
                else:
                    yield woken | env.timeout(max(0.0, ticket.deadline - env.now))
            except BaseException:
                self._abandon(ticket, env.now)
                raise
            permit = self._outcome(ticket, env.now)
        else:
            permit = ticket.permit
        try:
            result = yield from attempt_fn()
        finally:
            permit.release(env.now)
        return result

    # ----------------------------------------------------------------- driver helpers

    def _outcome(self, ticket: Ticket, now: float) -> Permit:
        """After a waiter stopped waiting: its permit, or the rejection to raise."""
        if ticket.waiting:
            self.give_up(ticket, now=now)  # False if granted just now: then use it
        if ticket.permit is not None:
            return ticket.permit
        raise self._timeout_error(ticket, now)

    def _abandon(self, ticket: Ticket, now: float | None = None) -> None:
        """The waiting caller is cancelled: leave the queue, or free a permit just granted."""
        if not self.give_up(ticket, now=now, timed_out=False) and ticket.permit is not None:
            ticket.permit.release(now)

    def __repr__(self) -> str:
        return (f"Bulkhead({self.name!r}, max_concurrent_calls={self.max_concurrent_calls}, "
                f"max_queue_size={self.max_queue_size}, max_wait={self.max_wait!r})")


# --------------------------------------------------------------------------- thread isolation


_POOL_ADVICE = ("A worker thread has no event loop to run it on: bound async calls with a "
                "Bulkhead instead (`await bulkhead.acall(fn, ...)`).")


class ThreadPoolBulkhead:
    """Thread isolation: a bounded executor per dependency (guide section 4.3, ``ThreadIsolation``).

    Calls to the dependency run on ``max_threads`` worker threads of their own; up to
    ``max_queue_size`` tasks wait for a worker, in order; :meth:`submit` refuses any
    further task at once with :class:`BulkheadFullError`. A task that waited longer than
    ``max_wait`` is never started: its future fails with :class:`BulkheadFullError`
    (checked when a worker frees up, so no timer thread is needed).

    Admission is the :class:`Bulkhead` core (:attr:`bulkhead`): its metrics and
    listeners describe this pool. Unlike the guide's ``execute``, which reads the queue
    length and then submits, admission is one atomic decision, so concurrent callers can
    never push the queue past its bound. Cancelling a queued future removes it from the
    queue. Thread-safe.
    """

    __slots__ = ("_closed", "_executor", "_idle", "_lock", "_pending", "_queued", "bulkhead")

    def __init__(
        self,
        name: str,
        max_threads: int,
        max_queue_size: int = 0,
        *,
        max_wait: float = math.inf,
        clock: Clock = MONOTONIC,
        listeners: Listeners[BulkheadEvent] | None = None,
    ) -> None:
        require_int_at_least("max_threads", max_threads, 1)
        self.bulkhead = Bulkhead(name, max_threads, max_queue_size, max_wait=max_wait,
                                 clock=clock, listeners=listeners)
        self._executor = ThreadPoolExecutor(max_workers=max_threads,
                                            thread_name_prefix=f"bulkhead-{name}")
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0  # accepted tasks whose future is not settled yet
        self._queued: set[Future[Any]] = set()  # futures of tasks waiting for a worker
        self._closed = False

    @property
    def name(self) -> str:
        return self.bulkhead.name

    @property
    def listeners(self) -> Listeners[BulkheadEvent]:
        return self.bulkhead.listeners

    def metrics(self) -> BulkheadMetrics:
        """The admission core's snapshot: tasks running (``in_flight``) and queued."""
        return self.bulkhead.metrics()

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Run ``fn(*args, **kwargs)`` on the pool; a :class:`~concurrent.futures.Future`.

        Raises :class:`BulkheadFullError` at once if every worker is busy and the queue
        is full, and :class:`RuntimeError` after :meth:`shutdown`.
        """
        reject_coroutine_function(fn, "ThreadPoolBulkhead.submit", _POOL_ADVICE)
        future: Future[R] = Future()
        task = functools.partial(fn, *args, **kwargs)
        with self._lock:
            if self._closed:
                raise RuntimeError(f"thread pool bulkhead {self.name!r} is shut down")
            self._pending += 1

        def on_wake(ticket: Ticket) -> None:
            with self._lock:
                self._queued.discard(future)
            if ticket.permit is not None:
                self._start(ticket.permit, future, task)
            else:  # it waited longer than max_wait
                now = self.bulkhead.clock.now()
                self._settle(future, self.bulkhead._timeout_error(ticket, now))

        try:
            ticket = self.bulkhead.enter(on_wake=on_wake)
        except BaseException:
            self._finish()
            raise
        if ticket.permit is not None:
            self._start(ticket.permit, future, task)
            return future
        with self._lock:
            if ticket.waiting:
                self._queued.add(future)

        def on_done(done: Future[R]) -> None:
            # Cancelling a queued future takes it out of the queue.
            if done.cancelled() and self.bulkhead.give_up(ticket, timed_out=False):
                with self._lock:
                    self._queued.discard(future)
                self._finish()

        future.add_done_callback(on_done)
        return future

    def _start(self, permit: Permit, future: Future[R], task: Callable[[], R]) -> None:
        try:
            self._executor.submit(self._run, permit, future, task)
        except BaseException as error:  # the executor refused: shut down without waiting
            permit.release()
            self._settle(future, error)

    def _run(self, permit: Permit, future: Future[R], task: Callable[[], R]) -> None:
        try:
            if not future.set_running_or_notify_cancel():  # cancelled just before it ran
                permit.release()
                return
            try:
                try:
                    result = task()
                    if type(result) not in PLAIN_RESULTS and is_awaitable_result(result):
                        reject_awaitable_result(result, "ThreadPoolBulkhead.submit",
                                                getattr(task, "func", task), _POOL_ADVICE)
                finally:
                    # Free the permit before the caller learns the outcome, so that a
                    # caller who submits again on completion finds the worker free.
                    permit.release()
            except BaseException as error:
                future.set_exception(error)
            else:
                future.set_result(result)
        finally:
            self._finish()

    def _settle(self, future: Future[R], error: BaseException) -> None:
        """Fail a task that will never run (unless its caller cancelled it already)."""
        if future.set_running_or_notify_cancel():
            future.set_exception(error)
        self._finish()

    def _finish(self) -> None:
        with self._lock:
            self._pending -= 1
            if not self._pending:
                self._idle.notify_all()

    def shutdown(self, wait: bool = True, *, cancel_queued: bool = False) -> None:
        """Refuse new tasks; with ``cancel_queued`` cancel those still queued; with
        ``wait`` block until every accepted task has finished. Then stop the workers."""
        with self._lock:
            self._closed = True
            queued = list(self._queued)
        if cancel_queued:
            for future in queued:
                future.cancel()
        if wait:
            with self._lock:
                while self._pending:
                    self._idle.wait()
        self._executor.shutdown(wait=wait)

    def __enter__(self) -> ThreadPoolBulkhead:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown(wait=True)

    def __repr__(self) -> str:
        core = self.bulkhead
        return (f"ThreadPoolBulkhead({core.name!r}, max_threads={core.max_concurrent_calls}, "
                f"max_queue_size={core.max_queue_size}, max_wait={core.max_wait!r})")
