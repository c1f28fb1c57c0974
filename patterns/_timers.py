"""One timer thread for many deadlines (used by the blocking drivers).

:class:`threading.Timer` starts a thread per timer: about 100 µs and a thread stack for
every call that carries a deadline, which is fine for a few slow calls and wasteful for
thousands per second. :class:`TimerThread` keeps every pending timer in one heap and
runs them from a single daemon thread, as Java's ``ScheduledExecutorService`` and
resilience4j's ``TimeLimiter`` do. Scheduling is a heap push under a lock; cancelling
marks the entry (it is skipped when due, and the heap is compacted when most of it is
cancelled, so cancelled timers do not pile up).

Callbacks run *on the timer thread*, one after another: keep them short (set an event,
cancel a token, wake a waiter). A callback that raises, even a :class:`BaseException`
such as ``OperationCancelled`` or ``SystemExit``, is logged and the thread goes on: one
bad entry must never stop every deadline of the process.

Any finite delay is accepted, however large (``1e10`` s, ``1.7e308`` s): the thread never
asks the operating system for more than :data:`MAX_WAIT` seconds at a time
(``threading.Condition.wait`` raises :class:`OverflowError` beyond
``threading.TIMEOUT_MAX``, about 292 years), and wakes to look again. The shared instance
(:func:`shared_timer_thread`) starts on first use and is re-created in a child after
``fork``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Final

from patterns._validation import require_finite_non_negative

__all__ = ["MAX_WAIT", "TimerHandle", "TimerThread", "shared_timer_thread", "sleep",
           "wait_event"]

_log = logging.getLogger(__name__)

MAX_WAIT: Final = min(threading.TIMEOUT_MAX, 3600.0)
"""The longest single wait the timer thread asks of the OS, in seconds (an hour).

Longer delays are waited in steps of this length. Every blocking wait of the library
(``Condition.wait``, ``Event.wait``, ``time.sleep``, ``Lock.acquire(timeout=)``) is capped
the same way, since all of them raise :class:`OverflowError` above
``threading.TIMEOUT_MAX``.
"""


def sleep(delay: float) -> None:
    """:func:`time.sleep` for any ``delay`` >= 0, however long (``inf`` sleeps for ever),
    in steps of :data:`MAX_WAIT`."""
    while delay > MAX_WAIT:  # counts the steps, not the clock: a replaced time.sleep works
        time.sleep(MAX_WAIT)
        delay -= MAX_WAIT
    time.sleep(delay)


def wait_event(event: threading.Event, timeout: float) -> bool:
    """``event.wait(timeout)`` for any ``timeout`` >= 0 (``1e10``, ``1.7e308`` and ``inf``
    all simply mean "a very long time"), in steps of :data:`MAX_WAIT`."""
    if timeout <= MAX_WAIT:
        return event.wait(timeout)
    give_up = time.monotonic() + timeout
    while True:
        left = give_up - time.monotonic()
        if left <= 0.0:
            return event.is_set()
        if event.wait(left if left < MAX_WAIT else MAX_WAIT):
            return True


class TimerHandle:
    """A scheduled callback; :meth:`cancel` stops it if it has not run yet."""

    __slots__ = ("_owner", "callback", "cancelled", "due")

    def __init__(self, due: float, callback: Callable[[], object], owner: TimerThread) -> None:
        self.due = due
        self.callback = callback
        self.cancelled = False
        self._owner = owner

    def cancel(self) -> None:
        """Stop the callback from running (a no-op once it has run). Idempotent."""
        self._owner._cancel(self)


class TimerThread:
    """Runs callbacks at their due times (``time.monotonic``) from one daemon thread."""

    def __init__(self, name: str = "patterns-timers") -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r} ({type(name).__name__})")
        self.name = name
        self._condition = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._sequence = itertools.count()
        self._cancelled = 0
        self._thread: threading.Thread | None = None

    def schedule(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback()`` on the timer thread ``delay`` seconds from now.

        ``delay`` is any finite number of seconds >= 0 (a huge one simply never comes).
        """
        require_finite_non_negative("delay", delay)
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        handle = TimerHandle(time.monotonic() + delay, callback, self)
        with self._condition:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            earliest = not self._heap or handle.due < self._heap[0][0]
            heapq.heappush(self._heap, (handle.due, next(self._sequence), handle))
            if earliest:
                self._condition.notify()
        return handle

    @property
    def pending(self) -> int:
        """Timers scheduled and neither run nor cancelled."""
        with self._condition:
            return len(self._heap) - self._cancelled

    def _cancel(self, handle: TimerHandle) -> None:
        with self._condition:
            if handle.cancelled or handle.callback is _ran:
                return
            handle.cancelled = True
            self._cancelled += 1
            if self._cancelled > 64 and self._cancelled * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _run(self) -> None:
        condition, heap = self._condition, self._heap
        while True:
            with condition:
                heap = self._heap
                while True:
                    if not heap:
                        condition.wait()
                        heap = self._heap
                        continue
                    due, _, handle = heap[0]
                    if handle.cancelled:
                        heapq.heappop(heap)
                        self._cancelled -= 1
                        continue
                    wait = due - time.monotonic()
                    if wait > 0:
                        condition.wait(wait if wait < MAX_WAIT else MAX_WAIT)
                        heap = self._heap
                        continue
                    heapq.heappop(heap)
                    callback, handle.callback = handle.callback, _ran
                    break
            try:
                callback()
            except BaseException:  # this thread serves every deadline: it must go on
                _log.exception("timer callback %r failed", callback)
            callback = _ran  # drop the reference while waiting for the next one


def _ran() -> None:  # marks a handle whose callback has run
    return None


_shared: TimerThread | None = None
_shared_lock = threading.Lock()


def shared_timer_thread() -> TimerThread:
    """The process-wide timer thread (started on first use)."""
    global _shared
    timers = _shared
    if timers is None:
        with _shared_lock:
            if _shared is None:
                _shared = TimerThread()
            timers = _shared
    return timers


def _forget_after_fork() -> None:  # the thread does not survive fork; start a fresh one
    global _shared, _shared_lock
    _shared = None
    _shared_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
