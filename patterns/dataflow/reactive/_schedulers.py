"""Schedulers: where time-based operators (``buffer_with_time``, ``interval``) get time.

A scheduler tells the time and runs an action after a delay; it returns a handle whose
``cancel()`` stops the action if it has not started. Three come with the library:

* :class:`VirtualTimeScheduler` runs on a :class:`~patterns.clock.ManualClock`: nothing
  happens until a test calls :meth:`~VirtualTimeScheduler.advance`, which runs the due
  actions in time order (deterministic tests, no sleeping);
* :class:`ThreadScheduler` runs actions on one background thread, in real time;
* :class:`AsyncioScheduler` runs them on an :mod:`asyncio` event loop.

The SimPy scheduler lives with the simulations (``simulations.reactive.SimPyScheduler``):
``patterns`` imports nothing from SimPy.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from patterns._decorate import is_async_callable
from patterns._timers import MAX_WAIT
from patterns._validation import (
    require_clock,
    require_finite,
    require_finite_non_negative,
    require_non_negative,
)
from patterns.clock import MONOTONIC, Clock, ManualClock

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "AsyncioScheduler",
    "Cancellable",
    "Scheduler",
    "ThreadScheduler",
    "VirtualTimeScheduler",
]

_log = logging.getLogger("patterns.dataflow.reactive")


@runtime_checkable
class Cancellable(Protocol):
    """A scheduled action that can be called off."""

    def cancel(self) -> object: ...


@runtime_checkable
class Scheduler(Protocol):
    """Tells the time (seconds) and runs ``action`` after ``delay`` seconds."""

    def now(self) -> float: ...

    def schedule(self, delay: float, action: Callable[[], object]) -> Cancellable: ...


class _Timer:
    """One scheduled action; ``cancel`` is idempotent and thread-safe (a flag)."""

    __slots__ = ("action", "cancelled", "due")

    def __init__(self, due: float, action: Callable[[], object]) -> None:
        self.due = due
        self.action = action
        self.cancelled = False

    def cancel(self) -> bool:
        """Call the action off; ``False`` if it was already called off."""
        was, self.cancelled = self.cancelled, True
        return not was

    def __repr__(self) -> str:
        return f"_Timer(due={self.due!r}, cancelled={self.cancelled})"


def _run(action: Callable[[], object]) -> None:
    try:
        action()
    except Exception:
        _log.exception("scheduled action %r failed", action)


def _check(delay: float, action: Callable[[], object]) -> float:
    require_finite_non_negative("delay", delay)
    if not callable(action):
        raise TypeError(f"action must be callable, got {action!r}")
    if is_async_callable(action):
        raise TypeError(f"action must be a plain function, got the coroutine function "
                        f"{action!r}: a scheduler calls it and would drop the coroutine "
                        f"un-awaited")
    return float(delay)




class VirtualTimeScheduler:
    """A scheduler on a :class:`~patterns.clock.ManualClock`, for tests and notebooks.

    :meth:`advance` moves the clock forward and runs every action that falls due on the
    way, in time order (ties in the order scheduled), each at its own due time. Actions
    may schedule further actions. Thread-safe (actions run on the advancing thread).
    """

    __slots__ = ("_heap", "_lock", "_order", "clock")

    def __init__(self, clock: ManualClock | None = None) -> None:
        if clock is not None and not isinstance(clock, ManualClock):
            raise TypeError(f"clock must be a ManualClock, got {clock!r}")
        self.clock = clock if clock is not None else ManualClock()
        self._heap: list[tuple[float, int, _Timer]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()

    def now(self) -> float:
        return self.clock.now()

    def schedule(self, delay: float, action: Callable[[], object]) -> _Timer:
        delay = _check(delay, action)
        timer = _Timer(self.clock.now() + delay, action)
        with self._lock:
            heapq.heappush(self._heap, (timer.due, next(self._order), timer))
        return timer

    @property
    def pending(self) -> int:
        """Actions scheduled and neither run nor cancelled."""
        with self._lock:
            return sum(1 for _, _, timer in self._heap if not timer.cancelled)

    def advance(self, seconds: float) -> int:
        """Move time forward by ``seconds``, running what falls due; return how many ran."""
        require_finite_non_negative("seconds", seconds)
        return self.advance_to(self.clock.now() + seconds)

    def advance_to(self, when: float) -> int:
        """Move time to ``when`` (not earlier than now), running what falls due."""
        require_finite("when", when)
        if when < self.clock.now():
            raise ValueError(f"when must not be earlier than now ({self.clock.now()!r}), "
                             f"got {when!r}")
        ran = 0
        while True:
            with self._lock:
                if not self._heap or self._heap[0][0] > when:
                    break
                _, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            timer.cancelled = True  # it runs once
            if timer.due > self.clock.now():
                self.clock.set(timer.due)
            _run(timer.action)
            ran += 1
        self.clock.set(when)
        return ran

    def __repr__(self) -> str:
        return f"VirtualTimeScheduler(now={self.clock.now()!r}, pending={self.pending})"


class ThreadScheduler:
    """Runs actions on one background (daemon) thread, in real time.

    Due times are read on ``clock`` (monotonic by default); the worker waits on a
    condition variable until the next one. Actions run one at a time, outside any lock;
    an action that raises is logged. Thread-safe. :meth:`shutdown` stops the worker.
    """

    __slots__ = ("_condition", "_heap", "_order", "_stopped", "_thread", "clock", "name")

    def __init__(self, *, clock: Clock = MONOTONIC, name: str = "reactive-scheduler") -> None:
        require_clock("clock", clock)
        if not isinstance(name, str) or not name:
            raise (ValueError if isinstance(name, str) else TypeError)(
                f"name must be a non-empty str, got {name!r}")
        self.clock = clock
        self.name = name
        self._heap: list[tuple[float, int, _Timer]] = []
        self._order = itertools.count()
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def now(self) -> float:
        return self.clock.now()

    def schedule(self, delay: float, action: Callable[[], object]) -> _Timer:
        delay = _check(delay, action)
        timer = _Timer(self.clock.now() + delay, action)
        with self._condition:
            if self._stopped:
                raise RuntimeError(f"scheduler {self.name!r} was shut down")
            heapq.heappush(self._heap, (timer.due, next(self._order), timer))
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()
            self._condition.notify()
        return timer

    def _work(self) -> None:
        while True:
            with self._condition:
                while True:
                    if self._stopped:
                        return
                    if self._heap:
                        wait = self._heap[0][0] - self.clock.now()
                        if wait <= 0:
                            _, _, timer = heapq.heappop(self._heap)
                            break
                        self._condition.wait(min(wait, threading.TIMEOUT_MAX))
                    else:
                        self._condition.wait()
            if not timer.cancelled:
                timer.cancelled = True
                _run(timer.action)

    def shutdown(self, *, wait: bool = True, timeout: float | None = 5.0) -> None:
        """Stop the worker; pending actions never run. With ``wait``, wait up to
        ``timeout`` seconds (``None`` or ``inf``: for as long as it takes) for an action
        in progress to return."""
        if timeout is not None:
            require_non_negative("timeout", timeout)
        with self._condition:
            self._stopped = True
            self._heap.clear()
            self._condition.notify_all()
            thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread():
            _join(thread, timeout)

    def __enter__(self) -> ThreadScheduler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"ThreadScheduler({self.name!r}, stopped={self._stopped})"


class AsyncioScheduler:
    """Runs actions on an :mod:`asyncio` loop (``loop.call_later``); time is ``loop.time()``.

    :meth:`schedule` may be called from any thread; the action always runs on the loop.
    """

    __slots__ = ("loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        import asyncio  # imported here: threading and SimPy users do not pay for asyncio

        if loop is not None and not isinstance(loop, asyncio.AbstractEventLoop):
            raise TypeError(f"loop must be an asyncio event loop, got {loop!r}")
        self.loop = loop if loop is not None else asyncio.get_running_loop()

    def now(self) -> float:
        return self.loop.time()

    def schedule(self, delay: float, action: Callable[[], object]) -> _Timer:
        delay = _check(delay, action)
        timer = _Timer(self.loop.time() + delay, action)

        def fire() -> None:
            if not timer.cancelled:
                timer.cancelled = True
                _run(timer.action)

        def arm() -> None:
            self.loop.call_at(timer.due, fire)

        if _on_loop_thread(self.loop):
            arm()
        else:
            self.loop.call_soon_threadsafe(arm)
        return timer

    def __repr__(self) -> str:
        return f"AsyncioScheduler({self.loop!r})"


def _join(thread: threading.Thread, timeout: float | None) -> None:
    """``thread.join(timeout)`` for any timeout: ``join`` overflows above TIMEOUT_MAX."""
    if timeout is None or math.isinf(timeout):
        thread.join()
        return
    deadline = time.monotonic() + timeout
    while thread.is_alive():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        thread.join(min(left, MAX_WAIT))


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    import asyncio

    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False

