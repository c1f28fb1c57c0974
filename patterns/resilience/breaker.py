"""The circuit breaker (guide section 4.2, 断路器模式).

A breaker sits between a caller and a dependency. While the dependency is healthy it is
*closed* and every call goes through. When too many recent calls failed (or were too
slow) it *opens*: calls are rejected at once, without touching the dependency, which gets
room to recover and callers get a fast answer. After a wait it turns *half-open* and lets
a few trial calls through; their outcome closes it again or opens it for another wait.

What the guide's sketch gets wrong, and this module does differently:

* It counts *consecutive* failures and any success resets the count, so a dependency
  failing half of its calls never trips it. Here the breaker judges the **failure rate**
  over a sliding window (the last ``window_size`` calls, or the last ``window_size``
  seconds), once at least ``minimum_calls`` calls are in it; slow calls can trip it too.
* Its half-open state counts only *finished* calls, so any number of concurrent callers
  pass while the first trials are still running. Here half-open hands out at most
  ``half_open_calls`` permits; callers beyond them are rejected at once.
* Failures of calls that were let through earlier but finish while the breaker is open
  push its open time further and further. Here each call belongs to the state period
  that let it through, and outcomes from an earlier period never move the state.

The breaker never holds its lock while the protected call runs. Its decision logic reads
time only through its :class:`~patterns.clock.Clock`, so the same object works in
threads (:meth:`CircuitBreaker.call`), in asyncio (:meth:`CircuitBreaker.acall`) and in
a SimPy model (:meth:`CircuitBreaker.simpy_call`, with a clock reading ``env.now``).
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from enum import StrEnum
from types import CoroutineType
from typing import Any, ParamSpec, TypeVar

from patterns._decorate import (
    PLAIN_RESULTS,
    CallDecorator,
    NotAwaitableError,
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
    require_positive,
    require_rng,
)
from patterns._window import CountWindow, TimeWindow
from patterns.clock import MONOTONIC, Clock
from patterns.events import Listeners
from patterns.resilience.backoff import Backoff

__all__ = [
    "BreakerEvent",
    "BreakerMetrics",
    "CallFailed",
    "CallIgnored",
    "CallNotPermitted",
    "CallSucceeded",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "Permit",
    "StateTransition",
    "WindowType",
]

P = ParamSpec("P")
R = TypeVar("R")


class CircuitState(StrEnum):
    """The states of a breaker. The last two are set by operators, never by traffic."""

    CLOSED = "closed"
    """Calls pass; outcomes are recorded in the sliding window."""
    OPEN = "open"
    """Calls are rejected until the wait in open is over."""
    HALF_OPEN = "half_open"
    """A limited number of trial calls pass; their outcome decides."""
    FORCED_OPEN = "forced_open"
    """Every call is rejected until an operator says otherwise."""
    DISABLED = "disabled"
    """Every call passes and nothing is recorded."""


class WindowType(StrEnum):
    """What the sliding window holds: the last N calls, or the calls of the last N seconds."""

    COUNT = "count"
    TIME = "time"


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    """Something breaker ``name`` did at ``time`` (the breaker's clock)."""

    time: float
    name: str


@dataclass(frozen=True, slots=True)
class StateTransition(BreakerEvent):
    """The breaker moved from ``from_state`` to ``to_state``, for ``reason``."""

    from_state: CircuitState
    to_state: CircuitState
    reason: str


@dataclass(frozen=True, slots=True)
class CallNotPermitted(BreakerEvent):
    """A call was rejected without reaching the dependency."""

    state: CircuitState


@dataclass(frozen=True, slots=True)
class CallSucceeded(BreakerEvent):
    """A permitted call succeeded after ``duration`` seconds (``slow`` if over the limit)."""

    duration: float
    slow: bool


@dataclass(frozen=True, slots=True)
class CallFailed(BreakerEvent):
    """A permitted call failed after ``duration`` seconds."""

    duration: float
    slow: bool
    error: BaseException | None


@dataclass(frozen=True, slots=True)
class CallIgnored(BreakerEvent):
    """A permitted call ended in a way that counts neither as success nor failure."""

    error: BaseException | None


# Events are built on every call while someone listens; setting the slots directly costs
# half of the frozen dataclass's __init__ (which goes through object.__setattr__).
_new = object.__new__


def _slot_setter(cls: type, name: str) -> Callable[[Any, Any], None]:
    setter: Callable[[Any, Any], None] = vars(cls)[name].__set__
    return setter


_set_time = _slot_setter(BreakerEvent, "time")
_set_name = _slot_setter(BreakerEvent, "name")
_set_duration = _slot_setter(CallSucceeded, "duration")
_set_slow = _slot_setter(CallSucceeded, "slow")
_set_failed_duration = _slot_setter(CallFailed, "duration")
_set_failed_slow = _slot_setter(CallFailed, "slow")
_set_error = _slot_setter(CallFailed, "error")


def _succeeded(now: float, name: str, duration: float, slow: bool) -> CallSucceeded:
    """``CallSucceeded(now, name, duration, slow)``, built fast."""
    event: CallSucceeded = _new(CallSucceeded)
    _set_time(event, now)
    _set_name(event, name)
    _set_duration(event, duration)
    _set_slow(event, slow)
    return event


def _failed(now: float, name: str, duration: float, slow: bool,
            error: BaseException | None) -> CallFailed:
    """``CallFailed(now, name, duration, slow, error)``, built fast."""
    event: CallFailed = _new(CallFailed)
    _set_time(event, now)
    _set_name(event, name)
    _set_failed_duration(event, duration)
    _set_failed_slow(event, slow)
    _set_error(event, error)
    return event


class CircuitOpenError(Rebuildable, Exception):
    """The breaker rejected the call; ``retry_after`` says when it may let calls through."""

    def __init__(self, name: str, state: CircuitState, retry_after: float) -> None:
        when = "" if math.isinf(retry_after) else f"; retry after {retry_after:.3g} s"
        super().__init__(f"circuit breaker {name!r} is {state.value}{when}")
        self.name = name
        self.state = state
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class BreakerMetrics:
    """A snapshot of a breaker: its state and what its sliding window holds."""

    state: CircuitState
    calls: int
    """Calls in the sliding window (or trial calls finished, in half-open)."""
    failures: int
    slow_calls: int
    not_permitted: int
    """Calls rejected since the breaker was created."""

    @property
    def failure_rate(self) -> float:
        """Failures over calls in the window (``nan`` with no calls)."""
        return self.failures / self.calls if self.calls else math.nan

    @property
    def slow_call_rate(self) -> float:
        """Slow calls over calls in the window (``nan`` with no calls)."""
        return self.slow_calls / self.calls if self.calls else math.nan


ExceptionFilter = type[BaseException] | tuple[type[BaseException], ...] | Callable[
    [BaseException], bool
]

_CLOSED = CircuitState.CLOSED


def _exception_filter(name: str, value: ExceptionFilter) -> Callable[[BaseException], bool]:
    if isinstance(value, type):
        if not issubclass(value, BaseException):
            raise TypeError(f"{name} must be exception types or a predicate, got {value!r}")
        value = (value,)
    if isinstance(value, tuple):
        for kind in value:
            if not (isinstance(kind, type) and issubclass(kind, BaseException)):
                raise TypeError(f"{name} must hold exception types, got {kind!r}")
        kinds = value
        return lambda error: isinstance(error, kinds)
    if callable(value):
        return value
    raise TypeError(f"{name} must be exception types or a predicate, got {value!r}")


class Permit:
    """Permission for one call, handed out by :meth:`CircuitBreaker.try_acquire`.

    Report the outcome exactly once: :meth:`succeeded`, :meth:`failed` or
    :meth:`ignored`. Later reports are ignored.
    """

    __slots__ = ("_breaker", "_done", "epoch", "started", "trial")

    def __init__(self, breaker: CircuitBreaker, epoch: int, started: float, trial: bool):
        self._breaker = breaker
        self.epoch = epoch
        self.started = started
        self.trial = trial
        self._done = False

    def succeeded(self) -> None:
        """The call succeeded."""
        if not self._done:
            self._done = True
            self._breaker._outcome(self.epoch, self.trial, self.started, False, None)

    def failed(self, error: BaseException | None = None) -> None:
        """The call failed (with ``error``, if there was one)."""
        if not self._done:
            self._done = True
            self._breaker._outcome(self.epoch, self.trial, self.started, True, error)

    def ignored(self, error: BaseException | None = None) -> None:
        """The call ended without an outcome worth counting (e.g. it was cancelled)."""
        if not self._done:
            self._done = True
            self._breaker._ignored(self.epoch, self.trial, error)


class CircuitBreaker(CallDecorator):
    """A circuit breaker judged on the failure rate of a sliding window (guide 4.2).

    Parameters
    ----------
    name:
        Names the breaker in errors and events.
    failure_rate_threshold:
        Open when at least this fraction of the calls in the window failed (0 < x <= 1).
    slow_call_rate_threshold, slow_call_duration:
        Open when at least this fraction of the calls took ``slow_call_duration`` seconds
        or more (default: slowness is not judged).
    window_type, window_size:
        ``"count"``: the last ``window_size`` calls; ``"time"``: the calls of the last
        ``window_size`` seconds (in ``window_buckets`` slices).
    minimum_calls:
        No judgement before the window holds this many calls (default 10, or
        ``window_size`` if a count window is smaller). A count window can never hold more
        than ``window_size`` calls, so a larger ``minimum_calls`` is refused: that breaker
        could never open.
    wait_in_open:
        Seconds to stay open before half-open; or a
        :class:`~patterns.resilience.backoff.Backoff` whose successive delays are used on
        successive trips without a close in between (growing waits).
    half_open_calls:
        Trial calls permitted in half-open. At most this many are let through per
        half-open period (so never more in flight); once all have finished, their failure
        and slow rates decide between closed and open (a clear failure opens earlier).
    record_exceptions:
        Which exceptions count as failures (types or a predicate; default any
        :class:`Exception`). Other exceptions count as successes, since the dependency
        answered.
    ignore_exceptions:
        Exceptions that count as nothing at all (say, a validation error of the caller).
        ``BaseException`` that is not an ``Exception`` (``KeyboardInterrupt``, task
        cancellation) is always ignored.
    record_result:
        A predicate on results: ``True`` means the call failed (say, an HTTP 503).
    clock, rng:
        Time source for windows and waits; randomness for a jittered wait back-off.

    Listeners on :attr:`listeners` receive :class:`StateTransition`,
    :class:`CallNotPermitted`, :class:`CallSucceeded`, :class:`CallFailed` and
    :class:`CallIgnored` events.
    """

    def __init__(
        self,
        name: str = "breaker",
        *,
        failure_rate_threshold: float = 0.5,
        slow_call_rate_threshold: float = 1.0,
        slow_call_duration: float = math.inf,
        window_type: WindowType | str = WindowType.COUNT,
        window_size: float = 100,
        window_buckets: int = 10,
        minimum_calls: int | None = None,
        wait_in_open: float | Backoff = 60.0,
        half_open_calls: int = 10,
        record_exceptions: ExceptionFilter = Exception,
        ignore_exceptions: ExceptionFilter = (),
        record_result: Callable[[Any], bool] | None = None,
        clock: Clock = MONOTONIC,
        rng: random.Random | None = None,
        listeners: Listeners[BreakerEvent] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.name = name
        self.failure_rate_threshold = _rate("failure_rate_threshold", failure_rate_threshold)
        self.slow_call_rate_threshold = _rate("slow_call_rate_threshold",
                                              slow_call_rate_threshold)
        self.slow_call_duration = require_positive("slow_call_duration", slow_call_duration)
        try:
            self.window_type = WindowType(window_type)
        except ValueError:
            raise ValueError(
                f"window_type must be 'count' or 'time', got {window_type!r}") from None
        if self.window_type is WindowType.COUNT:
            self.window_size: float = require_int_at_least(
                "window_size", window_size, 1)  # type: ignore[arg-type]
        else:
            self.window_size = require_positive("window_size", require_finite(
                "window_size", window_size))
        self.window_buckets = require_int_at_least("window_buckets", window_buckets, 1)
        if minimum_calls is None:
            minimum_calls = 10
            if self.window_type is WindowType.COUNT:
                minimum_calls = min(minimum_calls, int(self.window_size))
        self.minimum_calls = require_int_at_least("minimum_calls", minimum_calls, 1)
        if self.window_type is WindowType.COUNT and minimum_calls > self.window_size:
            raise ValueError(
                f"minimum_calls must be <= window_size ({int(self.window_size)}) for a count "
                f"window, which never holds more calls (the breaker could never open), got "
                f"{minimum_calls!r}")
        if isinstance(wait_in_open, Backoff):
            self.wait_in_open: float | Backoff = wait_in_open
        else:
            self.wait_in_open = require_non_negative("wait_in_open", require_finite(
                "wait_in_open", wait_in_open))
        self.half_open_calls = require_int_at_least("half_open_calls", half_open_calls, 1)
        self._is_recorded = _exception_filter("record_exceptions", record_exceptions)
        self._is_ignored = _exception_filter("ignore_exceptions", ignore_exceptions)
        if record_result is not None and not callable(record_result):
            raise TypeError(f"record_result must be callable, got {record_result!r}")
        self.record_result = record_result
        require_clock("clock", clock)
        self.clock = clock
        self.rng = require_rng("rng", rng) if rng is not None else random.Random()
        if listeners is not None and not isinstance(listeners, Listeners):
            raise TypeError(f"listeners must be a Listeners registry, got {listeners!r}")
        self.listeners: Listeners[BreakerEvent] = (
            listeners if listeners is not None else Listeners())

        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._epoch = 0  # one per state period; outcomes from an older one are not judged
        self._open_until = math.inf
        self._waits: Iterator[float] | None = None
        self._not_permitted = 0
        self._trial_permits = 0
        self._trial_counts = [0, 0, 0]  # finished trial calls, failures, slow
        # One of the two windows, each with running counts: O(1) per call, and a
        # success in the closed state takes no lock.
        self._window: CountWindow | TimeWindow
        if self.window_type is WindowType.TIME:
            try:
                self._window = TimeWindow(self.window_size, self.window_buckets, clock.now())
            except ValueError as error:
                raise ValueError(f"window_size / window_buckets: {error}") from None
        else:
            self._window = CountWindow(int(self.window_size))
        self._timed = not math.isinf(self.slow_call_duration)
        # Closed, count window, nothing timed: the drivers read no clock (unless someone
        # listens).
        self._untimed_count_window = (self.window_type is WindowType.COUNT
                                      and not self._timed)

    # ----------------------------------------------------------------- state

    @property
    def state(self) -> CircuitState:
        """The current state (an open breaker whose wait is over turns half-open)."""
        with self._lock:
            event = self._maybe_half_open(self.clock.now())
            state = self._state
        self._emit(event)
        return state

    def metrics(self) -> BreakerMetrics:
        """A snapshot of the state and the sliding window."""
        with self._lock:
            now = self.clock.now()
            event = self._maybe_half_open(now)
            if self._state is CircuitState.HALF_OPEN:
                calls, failures, slow = self._trial_counts
            else:
                calls, failures, slow = self._window_totals(now)
            snapshot = BreakerMetrics(self._state, calls, failures, slow, self._not_permitted)
        self._emit(event)
        return snapshot

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a trial call through (0 if it would now)."""
        with self._lock:
            return self._retry_after(self.clock.now())

    def force_open(self) -> None:
        """Reject every call until :meth:`reset` or :meth:`disable` (for operators)."""
        with self._lock:
            event = self._transition(CircuitState.FORCED_OPEN, self.clock.now(), "forced open")
        self._emit(event)

    def disable(self) -> None:
        """Let every call through and record nothing, until :meth:`reset`."""
        with self._lock:
            event = self._transition(CircuitState.DISABLED, self.clock.now(), "disabled")
        self._emit(event)

    def reset(self) -> None:
        """Close the breaker and forget its history."""
        with self._lock:
            self._waits = None
            event = self._transition(CircuitState.CLOSED, self.clock.now(), "reset")
        self._emit(event)

    def _emit(self, event: BreakerEvent | None) -> None:
        if event is not None and self.listeners.snapshot:
            self.listeners.emit(event)

    # ----------------------------------------------------------------- sans-I/O core

    def try_acquire(self) -> Permit | None:
        """Ask to make one call: a :class:`Permit` to report its outcome on, or ``None``.

        This is the whole protocol; the drivers below only wrap it around a call.
        """
        now = self.clock.now()
        transition: StateTransition | None = None
        with self._lock:
            state = self._state
            if state is CircuitState.CLOSED or state is CircuitState.DISABLED:
                return Permit(self, self._epoch, now, False)
            if state is CircuitState.OPEN:
                transition = self._maybe_half_open(now)
                state = self._state
            if state is CircuitState.HALF_OPEN and self._trial_permits < self.half_open_calls:
                self._trial_permits += 1
                permit: Permit | None = Permit(self, self._epoch, now, True)
            else:
                self._not_permitted += 1
                permit = None
        if self.listeners.snapshot:
            self._emit(transition)
            if permit is None:
                self.listeners.emit(CallNotPermitted(now, self.name, state))
        return permit

    def reject_error(self) -> CircuitOpenError:
        """The error to raise for a call that got no permit."""
        with self._lock:
            now = self.clock.now()
            return CircuitOpenError(self.name, self._state, self._retry_after(now))

    def _outcome(self, epoch: int, trial: bool, started: float, failed: bool,
                 error: BaseException | None) -> None:
        """Record the outcome of a call let through in state period ``epoch``."""
        now = self.clock.now()
        duration = now - started
        slow = duration >= self.slow_call_duration
        events: list[BreakerEvent] | None = None
        if failed or slow or trial or epoch != self._epoch or self._state is not _CLOSED:
            events = []
            with self._lock:
                if epoch == self._epoch:
                    state = self._state
                    if state is _CLOSED:
                        self._judge_closed(now, events, self._add_to_window(now, failed, slow))
                    elif state is CircuitState.HALF_OPEN and trial:
                        counts = self._trial_counts
                        counts[0] += 1
                        counts[1] += failed
                        counts[2] += slow
                        self._judge_half_open(now, events)
        else:
            # A fast success: one lock-free count. A success cannot raise a rate, so no
            # judgement is due, except when the window first holds minimum_calls. In a
            # new bucket of a time window counts may have left it: count and judge
            # under the lock.
            calls = self._window.success(now)
            if calls == self.minimum_calls:
                events = []
                self._judge_after_success(epoch, events)
            elif calls < 0:
                events = []
                with self._lock:
                    if epoch == self._epoch and self._state is _CLOSED:
                        self._judge_closed(now, events, self._window.add(now, False, False))
        if self.listeners.snapshot:
            self.listeners.emit(
                _failed(now, self.name, duration, slow, error) if failed
                else _succeeded(now, self.name, duration, slow))
            if events:
                for event in events:
                    self.listeners.emit(event)

    def _error_outcome(self, epoch: int, trial: bool, started: float,
                       error: BaseException) -> None:
        verdict = self._classify(error)
        if verdict is None:
            self._ignored(epoch, trial, error)
        elif verdict:
            self._outcome(epoch, trial, started, True, error)
        else:
            self._outcome(epoch, trial, started, False, None)

    def _ignored(self, epoch: int, trial: bool, error: BaseException | None) -> None:
        if trial:
            with self._lock:
                if epoch == self._epoch and self._state is CircuitState.HALF_OPEN:
                    self._trial_permits -= 1  # give the trial slot back
        if self.listeners.snapshot:
            self.listeners.emit(CallIgnored(self.clock.now(), self.name, error))

    def _classify(self, error: BaseException) -> bool | None:
        """``True`` failure, ``False`` success, ``None`` ignore."""
        if not isinstance(error, Exception) or self._is_ignored(error):
            return None
        return bool(self._is_recorded(error))

    # ----------------------------------------------------------------- drivers

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn`` through the breaker; raise :class:`CircuitOpenError` if rejected.

        The blocking driver: ``fn`` must be a plain function. A coroutine function, or
        a result that is an awaitable, raises :class:`TypeError` (use :meth:`acall`) and
        counts as neither a success nor a failure.
        """
        if self._state is _CLOSED:
            # Closed: no permit object, at most two clock readings, and with a count
            # window a success takes no lock. Calling a coroutine function runs none of
            # its code, so the result check below refuses it before anything is counted.
            epoch = self._epoch
            if self._untimed_count_window and not self.listeners.snapshot:
                try:
                    result = fn(*args, **kwargs)
                except BaseException as error:
                    # Not callable, or async and called wrongly: a misuse, not an
                    # outage (a TypeError that counts nothing). A plain failure passes.
                    reject_coroutine_function(fn, "CircuitBreaker.call")
                    self._error_outcome(epoch, False, 0.0, error)
                    raise
                if type(result) not in PLAIN_RESULTS and is_awaitable_result(result):
                    self._refuse_result(epoch, False, result, fn)
                if self.record_result is not None and self.record_result(result):
                    self._outcome(epoch, False, 0.0, True, None)
                # CountWindow.success inlined: the one lock-free count of a success.
                elif epoch == self._epoch and next(self._window._seq) + 1 == self.minimum_calls:
                    self._judge_after_success(epoch, None)
                return result
            # The start is read only if a duration is judged or reported.
            started = self.clock.now() if self._timed or self.listeners.snapshot else 0.0
            try:
                result = fn(*args, **kwargs)
            except BaseException as error:
                reject_coroutine_function(fn, "CircuitBreaker.call")  # see above
                self._error_outcome(epoch, False, started, error)
                raise
            if type(result) not in PLAIN_RESULTS and is_awaitable_result(result):
                self._refuse_result(epoch, False, result, fn)
            self._outcome(epoch, False, started, self.record_result is not None
                          and bool(self.record_result(result)), None)
            return result
        reject_coroutine_function(fn, "CircuitBreaker.call")
        permit = self.try_acquire()
        if permit is None:
            raise self.reject_error()
        try:
            result = fn(*args, **kwargs)
        except BaseException as error:
            self.report_error(permit, error)
            raise
        if type(result) not in PLAIN_RESULTS and is_awaitable_result(result):
            permit._done = True
            self._refuse_result(permit.epoch, permit.trial, result, fn)
        self.report_result(permit, result)
        return result

    async def acall(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await ``fn`` through the breaker; raise :class:`CircuitOpenError` if rejected.

        ``fn`` must return an awaitable (an ``async`` function does); anything else
        raises :class:`TypeError` (use :meth:`call`) and counts as neither a success
        nor a failure.
        """
        if not callable(fn):
            raise TypeError(f"CircuitBreaker.acall: fn must be callable, got {fn!r}")
        if self._state is _CLOSED:
            epoch = self._epoch
            observed = self.listeners.snapshot
            fast = self._untimed_count_window and not observed
            started = self.clock.now() if self._timed or observed else 0.0
            try:
                awaitable = fn(*args, **kwargs)
                if type(awaitable) is not CoroutineType and not is_awaitable_result(awaitable):
                    raise NotAwaitableError(awaitable)
                result = await awaitable
            except NotAwaitableError as refused:
                self._ignored(epoch, False, None)
                raise not_awaitable_error("CircuitBreaker.acall", fn, refused.value) from None
            except BaseException as error:
                self._error_outcome(epoch, False, started, error)
                raise
            if self.record_result is not None and self.record_result(result):
                self._outcome(epoch, False, started, True, None)
            elif fast:
                if epoch == self._epoch and self._window.success(0.0) == self.minimum_calls:
                    self._judge_after_success(epoch, None)
            else:
                self._outcome(epoch, False, started, False, None)
            return result
        permit = self.try_acquire()
        if permit is None:
            raise self.reject_error()
        try:
            awaitable = fn(*args, **kwargs)
            if type(awaitable) is not CoroutineType and not is_awaitable_result(awaitable):
                raise NotAwaitableError(awaitable)
            result = await awaitable
        except NotAwaitableError as refused:
            permit.ignored(None)
            raise not_awaitable_error("CircuitBreaker.acall", fn, refused.value) from None
        except BaseException as error:
            self.report_error(permit, error)
            raise
        self.report_result(permit, result)
        return result

    def simpy_call(
        self, env: object, attempt_fn: Callable[[], Generator[Any, Any, R]]
    ) -> Generator[Any, Any, R]:
        """Run ``attempt_fn()`` (a SimPy process body) through the breaker.

        ``value = yield from breaker.simpy_call(env, attempt)``. The breaker must have
        been built with a clock that reads ``env.now`` (``simulations.kit.SimClock``).
        """
        permit = self.try_acquire()
        if permit is None:
            raise self.reject_error()
        try:
            result = yield from attempt_fn()
        except BaseException as error:
            self.report_error(permit, error)
            raise
        self.report_result(permit, result)
        return result


    def _refuse_result(self, epoch: int, trial: bool, result: object, fn: object) -> None:
        """``fn`` gave the blocking driver an awaitable: count nothing, raise TypeError."""
        self._ignored(epoch, trial, None)
        reject_awaitable_result(result, "CircuitBreaker.call", fn)

    def report_error(self, permit: Permit, error: BaseException) -> None:
        """Report that the call of ``permit`` raised ``error``, classified as the drivers
        do: a failure (``record_exceptions``), nothing (``ignore_exceptions``, or not an
        :class:`Exception`), or else a success (the dependency answered)."""
        verdict = self._classify(error)
        if verdict is None:
            permit.ignored(error)
        elif verdict:
            permit.failed(error)
        else:
            permit.succeeded()

    def report_result(self, permit: Permit, result: object) -> None:
        """Report that the call of ``permit`` returned ``result``: a failure if
        ``record_result`` says so, else a success."""
        if self.record_result is not None and self.record_result(result):
            permit.failed(None)
        else:
            permit.succeeded()

    # ----------------------------------------------------------------- internals (locked)

    def _judge_after_success(self, epoch: int, events: list[BreakerEvent] | None) -> None:
        """The count window first holds minimum_calls: the first judgement is due."""
        with self._lock:
            if epoch == self._epoch and self._state is _CLOSED:
                now = self.clock.now()
                self._judge_closed(now, [] if events is None else events,
                                   self._window_totals(now))

    def _add_to_window(self, now: float, failed: bool, slow: bool) -> tuple[int, int, int]:
        """Count one outcome; return the window's ``(calls, failures, slow)`` after it."""
        return self._window.add(now, failed, slow)

    def _window_totals(self, now: float) -> tuple[int, int, int]:
        return self._window.totals(now)

    def _judge_closed(self, now: float, events: list[BreakerEvent],
                      totals: tuple[int, int, int]) -> None:
        calls, failures, slow = totals
        if calls < self.minimum_calls:
            return
        if failures >= self.failure_rate_threshold * calls:
            reason = f"failure rate {failures / calls:.0%} >= {self.failure_rate_threshold:.0%}"
        elif self._timed and slow >= self.slow_call_rate_threshold * calls:
            reason = f"slow-call rate {slow / calls:.0%} >= {self.slow_call_rate_threshold:.0%}"
        else:
            return
        events.append(self._transition(CircuitState.OPEN, now, reason))

    def _judge_half_open(self, now: float, events: list[BreakerEvent]) -> None:
        done, failures, slow = self._trial_counts
        n = self.half_open_calls
        if failures >= self.failure_rate_threshold * n:
            events.append(self._transition(
                CircuitState.OPEN, now, f"{failures} of {n} trial calls failed"))
        elif self._timed and slow >= self.slow_call_rate_threshold * n:
            events.append(self._transition(
                CircuitState.OPEN, now, f"{slow} of {n} trial calls were slow"))
        elif done >= n:
            self._waits = None
            events.append(self._transition(
                CircuitState.CLOSED, now, f"{n - failures} of {n} trial calls succeeded"))

    def _maybe_half_open(self, now: float) -> StateTransition | None:
        """Turn an open breaker whose wait is over half-open (lazily: there is no timer)."""
        if self._state is CircuitState.OPEN and now >= self._open_until:
            return self._transition(CircuitState.HALF_OPEN, now, "wait in open is over")
        return None

    def _retry_after(self, now: float) -> float:
        if self._state is CircuitState.OPEN:
            return max(0.0, self._open_until - now)
        if self._state is CircuitState.FORCED_OPEN:
            return math.inf
        return 0.0

    def _next_wait(self) -> float:
        wait = self.wait_in_open
        if isinstance(wait, Backoff):
            if self._waits is None:
                self._waits = wait.delays(self.rng)
            return next(self._waits)
        return wait

    def _transition(self, to_state: CircuitState, now: float, reason: str) -> StateTransition:
        from_state = self._state
        self._state = to_state
        self._epoch += 1
        self._trial_permits = 0
        self._trial_counts = [0, 0, 0]
        if to_state is CircuitState.OPEN:
            self._open_until = now + self._next_wait()
        else:
            self._open_until = math.inf
        if to_state is CircuitState.CLOSED:
            self._window.clear(now)
        return StateTransition(now, self.name, from_state, to_state, reason)

    def __repr__(self) -> str:
        return (f"CircuitBreaker({self.name!r}, state={self._state.value}, "
                f"failure_rate_threshold={self.failure_rate_threshold!r}, "
                f"window={self.window_type.value}:{self.window_size!r})")


def _rate(name: str, value: float) -> float:
    require_finite(name, value)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be within (0, 1], got {value!r}")
    return value
