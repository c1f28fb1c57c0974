"""Retry with back-off (guide section 4.1, 重试与回退策略).

A :class:`RetryPolicy` decides; drivers wait. The policy holds *what* to do -- when to
stop (:class:`StopCondition`), how long to wait (:class:`~patterns.resilience.backoff.Backoff`),
which failures are worth another try, an optional shared
:class:`~patterns.resilience.budget.RetryBudget`, listeners and a fallback -- and three
thin drivers run it:

* :meth:`RetryPolicy.call` (and the policy used as a decorator) blocks with ``sleep``;
* :meth:`RetryPolicy.acall` awaits :func:`asyncio.sleep` (or the policy's ``asleep``);
* :meth:`RetryPolicy.simpy_call` yields ``env.timeout(delay)`` inside a SimPy process.

All three share the decision logic of one private class, so the object a simulation
trusts is the object a service ships.

What the guide's sketch gets wrong, and this module does differently:

* its first exponential delay is ``initial * factor``; here it is ``initial``;
* its jitter shaves 0-30 % off each delay, which keeps clients in lock-step; here the
  jitter kinds of Brooker (2015) spread them out;
* it retries every error; here a predicate chooses (by default any :class:`Exception`,
  never ``KeyboardInterrupt``, ``asyncio.CancelledError`` or a SimPy ``Interrupt``);
* it has no budget, so layered retries multiply load; here a shared budget caps them.
"""

from __future__ import annotations

import math
import random
import sys
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from enum import StrEnum
from types import CoroutineType
from typing import Any, ParamSpec, Protocol, TypeVar

from patterns import _timers
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
    require_int_at_least,
    require_non_negative,
    require_rng,
)
from patterns.clock import MONOTONIC, Clock
from patterns.events import Listeners
from patterns.resilience.backoff import Backoff, ExponentialBackoff
from patterns.resilience.budget import RetryBudget

__all__ = [
    "AttemptStarted",
    "AttemptSucceeded",
    "GiveUpReason",
    "RetryEvent",
    "RetryExhaustedError",
    "RetryGaveUp",
    "RetryPolicy",
    "RetryScheduled",
    "StopAfterAttempts",
    "StopAfterElapsed",
    "StopCondition",
    "StopNever",
]

P = ParamSpec("P")
R = TypeVar("R")


# --------------------------------------------------------------------------- stopping


class StopCondition(ABC):
    """When to stop retrying. Combine with ``|`` (either stops) and ``&`` (both stop)."""

    __slots__ = ()

    @abstractmethod
    def should_stop(self, attempts: int, elapsed: float, next_delay: float) -> bool:
        """Decide after a failed attempt.

        ``attempts`` is the number of attempts made so far, ``elapsed`` the seconds since
        the first attempt started, ``next_delay`` the wait the back-off proposes before
        the next attempt.
        """

    def __or__(self, other: StopCondition) -> StopCondition:
        return _CombinedStop("|", self, other)

    def __and__(self, other: StopCondition) -> StopCondition:
        return _CombinedStop("&", self, other)


class StopNever(StopCondition):
    """Never stop on its own (a predicate or a budget may still end the retries)."""

    __slots__ = ()

    def should_stop(self, attempts: int, elapsed: float, next_delay: float) -> bool:
        return False

    def __repr__(self) -> str:
        return "StopNever()"


class StopAfterAttempts(StopCondition):
    """Stop once ``max_attempts`` attempts (the first one included) have been made."""

    __slots__ = ("max_attempts",)

    def __init__(self, max_attempts: int) -> None:
        self.max_attempts = require_int_at_least("max_attempts", max_attempts, 1)

    def should_stop(self, attempts: int, elapsed: float, next_delay: float) -> bool:
        return attempts >= self.max_attempts

    def __repr__(self) -> str:
        return f"StopAfterAttempts({self.max_attempts!r})"


class StopAfterElapsed(StopCondition):
    """Stop rather than start an attempt later than ``max_elapsed`` seconds after the first.

    The check looks ahead: if waiting ``next_delay`` would cross the deadline, the
    policy gives up now instead of sleeping in vain.
    """

    __slots__ = ("max_elapsed",)

    def __init__(self, max_elapsed: float) -> None:
        self.max_elapsed = require_non_negative("max_elapsed", max_elapsed)

    def should_stop(self, attempts: int, elapsed: float, next_delay: float) -> bool:
        return elapsed + next_delay > self.max_elapsed

    def __repr__(self) -> str:
        return f"StopAfterElapsed({self.max_elapsed!r})"


class _CombinedStop(StopCondition):
    """Stops when any part does (``|``) or when all parts do (``&``)."""

    __slots__ = ("combine", "parts", "symbol")

    def __init__(self, symbol: str, *parts: StopCondition) -> None:
        for part in parts:
            if not isinstance(part, StopCondition):
                raise TypeError(f"can only combine StopConditions, got {part!r}")
        self.symbol = symbol
        self.combine = any if symbol == "|" else all
        self.parts = parts

    def should_stop(self, attempts: int, elapsed: float, next_delay: float) -> bool:
        return self.combine(part.should_stop(attempts, elapsed, next_delay)
                            for part in self.parts)

    def __repr__(self) -> str:
        return "(" + f" {self.symbol} ".join(map(repr, self.parts)) + ")"


# --------------------------------------------------------------------------- events


class GiveUpReason(StrEnum):
    """Why a policy stopped retrying."""

    NOT_RETRYABLE = "not_retryable"
    """The failure is of a kind that another attempt would not fix."""
    STOPPED = "stopped"
    """The stop condition ended the retries (attempts or time used up)."""
    BUDGET_EXHAUSTED = "budget_exhausted"
    """The shared retry budget had no retry left."""


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """Something a retry policy did, at ``time`` (the driver's clock), on ``attempt``."""

    time: float
    attempt: int


@dataclass(frozen=True, slots=True)
class AttemptStarted(RetryEvent):
    """An attempt (the first or a retry) is about to run."""


@dataclass(frozen=True, slots=True)
class AttemptSucceeded(RetryEvent):
    """The attempt succeeded; the call returns its result."""


@dataclass(frozen=True, slots=True)
class RetryScheduled(RetryEvent):
    """The attempt failed and the next one starts after ``delay`` seconds."""

    delay: float
    error: BaseException | None
    result: object


@dataclass(frozen=True, slots=True)
class RetryGaveUp(RetryEvent):
    """The attempt failed and no other follows, for ``reason``."""

    reason: GiveUpReason
    error: BaseException | None
    result: object


class RetryExhaustedError(Rebuildable, Exception):
    """Raised when the last attempt returned a result that the policy deems a failure.

    (When the last attempt raised, that exception itself is re-raised, with a note
    saying how many attempts were made and why the policy gave up.)
    """

    def __init__(self, attempts: int, reason: GiveUpReason, last_result: object) -> None:
        super().__init__(
            f"gave up after {attempts} attempt(s) ({reason.value}); "
            f"last result {last_result!r}"
        )
        self.attempts = attempts
        self.reason = reason
        self.last_result = last_result


# --------------------------------------------------------------------------- the policy


class _SimEnvironment(Protocol):
    """The part of a ``simpy.Environment`` that the SimPy driver uses."""

    @property
    def now(self) -> float: ...

    def timeout(self, delay: float) -> Any: ...


ErrorPredicate = Callable[[BaseException], bool]
ResultPredicate = Callable[[Any], bool]


def _never_retried() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "stop" rather than "failed": SimPy's Interrupt, if loaded."""
    simpy = sys.modules.get("simpy")
    interrupt = getattr(simpy, "Interrupt", None) if simpy is not None else None
    return (interrupt,) if isinstance(interrupt, type) else ()


def _error_predicate(
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | ErrorPredicate,
) -> ErrorPredicate:
    if isinstance(retry_on, type):
        if not issubclass(retry_on, BaseException):
            raise TypeError(
                f"retry_on must be an exception type, a tuple of them or a predicate, "
                f"got the class {retry_on!r}"
            )
        retry_on = (retry_on,)
    if isinstance(retry_on, tuple):
        for kind in retry_on:
            if not (isinstance(kind, type) and issubclass(kind, BaseException)):
                raise TypeError(f"retry_on must hold exception types, got {kind!r}")
        kinds = retry_on
        return lambda error: isinstance(error, kinds)
    if callable(retry_on):
        return retry_on
    raise TypeError(
        "retry_on must be an exception type, a tuple of them or a predicate, "
        f"got {retry_on!r}"
    )


_RNG = random.Random()


async def _asyncio_sleep(delay: float) -> None:
    import asyncio  # imported here: sync and SimPy users do not pay for asyncio

    await asyncio.sleep(delay)


class RetryPolicy(CallDecorator):
    """Retry a failing operation with back-off (guide section 4.1, 重试与回退策略).

    Parameters
    ----------
    stop:
        When to give up; default three attempts in all.
    backoff:
        The waits between attempts; default exponential from 0.1 s, capped at 10 s,
        with full jitter.
    retry_on:
        Which exceptions are worth another attempt: an exception type, a tuple of them,
        or a predicate. Default: any :class:`Exception`. Others propagate at once.
    retry_on_result:
        A predicate on the returned value; ``True`` means "failed, retry". Default none.
    budget:
        A :class:`~patterns.resilience.budget.RetryBudget` shared with other callers.
        Every call is recorded in it and every retry must be granted by it.
    fallback:
        Called with the final exception when the policy gives up (for a failing result,
        with a :class:`RetryExhaustedError`); its return value becomes the call's.
    clock:
        Where elapsed time is read for the blocking and asyncio drivers (the SimPy
        driver reads ``env.now``).
    sleep:
        How the blocking driver waits, called once per delay with the whole delay
        (default :func:`time.sleep`, in steps for delays beyond
        ``threading.TIMEOUT_MAX``; tests pass :meth:`patterns.clock.ManualClock.sleep`).
    asleep:
        How the asyncio driver waits: an async function of the delay (default
        :func:`asyncio.sleep`; tests pass one that advances a manual clock, so that a
        retried coroutine runs in virtual time).
    rng:
        Randomness for jitter; pass a seeded :class:`random.Random` for repeatable runs.

    Listeners subscribed to :attr:`listeners` receive :class:`AttemptStarted`,
    :class:`RetryScheduled`, :class:`RetryGaveUp` and :class:`AttemptSucceeded` events.
    """

    __slots__ = (
        "_is_retryable",
        "asleep",
        "backoff",
        "budget",
        "clock",
        "fallback",
        "listeners",
        "retry_on",
        "retry_on_result",
        "rng",
        "sleep",
        "stop",
    )

    def __init__(
        self,
        *,
        stop: StopCondition | None = None,
        backoff: Backoff | None = None,
        retry_on: type[BaseException]
        | tuple[type[BaseException], ...]
        | ErrorPredicate = Exception,
        retry_on_result: ResultPredicate | None = None,
        budget: RetryBudget | None = None,
        fallback: Callable[[BaseException], Any] | None = None,
        clock: Clock = MONOTONIC,
        sleep: Callable[[float], object] = _timers.sleep,
        asleep: Callable[[float], Awaitable[object]] = _asyncio_sleep,
        rng: random.Random | None = None,
        listeners: Listeners[RetryEvent] | None = None,
    ) -> None:
        if stop is not None and not isinstance(stop, StopCondition):
            raise TypeError(f"stop must be a StopCondition, got {stop!r}")
        if backoff is not None and not isinstance(backoff, Backoff):
            raise TypeError(f"backoff must be a Backoff, got {backoff!r}")
        if budget is not None and not isinstance(budget, RetryBudget):
            raise TypeError(f"budget must be a RetryBudget, got {budget!r}")
        if retry_on_result is not None and not callable(retry_on_result):
            raise TypeError(f"retry_on_result must be callable, got {retry_on_result!r}")
        if fallback is not None and not callable(fallback):
            raise TypeError(f"fallback must be callable, got {fallback!r}")
        if not callable(sleep):
            raise TypeError(f"sleep must be callable, got {sleep!r}")
        require_clock("clock", clock)
        self.stop: StopCondition = stop if stop is not None else StopAfterAttempts(3)
        self.backoff: Backoff = (
            backoff if backoff is not None
            else ExponentialBackoff(0.1, cap=10.0, jitter="full")
        )
        self.retry_on = retry_on
        self._is_retryable = _error_predicate(retry_on)
        self.retry_on_result = retry_on_result
        self.budget = budget
        self.fallback = fallback
        self.clock = clock
        if not callable(sleep):
            raise TypeError(f"sleep must be callable, got {sleep!r}")
        if not callable(asleep):
            raise TypeError(f"asleep must be an async function of the delay, got {asleep!r}")
        self.sleep = sleep
        self.asleep = asleep
        self.rng = require_rng("rng", rng) if rng is not None else _RNG
        if listeners is not None and not isinstance(listeners, Listeners):
            raise TypeError(f"listeners must be a Listeners registry, got {listeners!r}")
        self.listeners: Listeners[RetryEvent] = (
            listeners if listeners is not None else Listeners()
        )

    @classmethod
    def from_attempts(
        cls,
        max_attempts: int,
        *,
        initial: float = 0.1,
        cap: float = 10.0,
        jitter: str = "full",
        **options: Any,
    ) -> RetryPolicy:
        """The common case in one line: ``max_attempts`` with capped exponential back-off."""
        return cls(
            stop=StopAfterAttempts(max_attempts),
            backoff=ExponentialBackoff(initial, cap=cap, jitter=jitter),
            **options,
        )

    def evolve(self, **changes: Any) -> RetryPolicy:
        """A copy with some parameters changed; it shares budget and listeners."""
        current: dict[str, Any] = {
            "stop": self.stop, "backoff": self.backoff, "retry_on": self.retry_on,
            "retry_on_result": self.retry_on_result, "budget": self.budget,
            "fallback": self.fallback, "clock": self.clock, "sleep": self.sleep,
            "asleep": self.asleep, "rng": self.rng, "listeners": self.listeners,
        }
        unknown = set(changes) - set(current)
        if unknown:
            raise TypeError(f"evolve() got unknown parameter(s): {', '.join(sorted(unknown))}")
        current.update(changes)
        return RetryPolicy(**current)

    def is_retryable(self, error: BaseException) -> bool:
        """Whether the policy would try again after ``error`` (ignoring stop and budget)."""
        return not isinstance(error, _never_retried()) and self._is_retryable(error)

    # ----------------------------------------------------------------- the drivers

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)``, retrying as the policy says; block while waiting.

        The blocking driver: a coroutine function (or a result that is an awaitable)
        raises :class:`TypeError` before anything is counted or retried; use
        :meth:`acall`.
        """
        reject_coroutine_function(fn, "RetryPolicy.call")
        if self.budget is not None:
            self.budget.record_call()
        now = self.clock.now
        start = now()
        run: _Run | None = None
        attempt = 1
        while True:
            if self.listeners.snapshot:
                self.listeners.emit(AttemptStarted(now(), attempt))
            try:
                result = fn(*args, **kwargs)
            except Exception as error:
                run = run or _Run(self, start)
                delay = run.after_failure(now(), error, None)
                if delay is None:
                    return run.give_up(error, None)  # type: ignore[no-any-return]
            else:
                if type(result) not in PLAIN_RESULTS and is_awaitable_result(result):
                    reject_awaitable_result(result, "RetryPolicy.call", fn)
                if self.retry_on_result is None or not self.retry_on_result(result):
                    if self.listeners.snapshot:
                        self.listeners.emit(AttemptSucceeded(now(), attempt))
                    return result
                run = run or _Run(self, start)
                delay = run.after_failure(now(), None, result)
                if delay is None:
                    return run.give_up(None, result)  # type: ignore[no-any-return]
            self.sleep(delay)
            attempt += 1

    async def acall(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await ``fn(*args, **kwargs)``, retrying as the policy says; wait with asyncio.

        ``fn`` must return an awaitable; a plain value raises :class:`TypeError` at once
        (never retried: use :meth:`call`).
        """
        if not callable(fn):
            raise TypeError(f"RetryPolicy.acall: fn must be callable, got {fn!r}")
        if self.budget is not None:
            self.budget.record_call()
        now = self.clock.now
        start = now()
        run: _Run | None = None
        attempt = 1
        while True:
            if self.listeners.snapshot:
                self.listeners.emit(AttemptStarted(now(), attempt))
            try:
                awaitable = fn(*args, **kwargs)
                if type(awaitable) is not CoroutineType and not is_awaitable_result(awaitable):
                    raise NotAwaitableError(awaitable)
                result = await awaitable
            except NotAwaitableError as refused:  # a misuse, not a failure: never retried
                raise not_awaitable_error("RetryPolicy.acall", fn, refused.value) from None
            except Exception as error:
                run = run or _Run(self, start)
                delay = run.after_failure(now(), error, None)
                if delay is None:
                    return run.give_up(error, None)  # type: ignore[no-any-return]
            else:
                if self.retry_on_result is None or not self.retry_on_result(result):
                    if self.listeners.snapshot:
                        self.listeners.emit(AttemptSucceeded(now(), attempt))
                    return result
                run = run or _Run(self, start)
                delay = run.after_failure(now(), None, result)
                if delay is None:
                    return run.give_up(None, result)  # type: ignore[no-any-return]
            await self.asleep(delay)
            attempt += 1

    def simpy_call(
        self,
        env: _SimEnvironment,
        attempt_fn: Callable[[], Generator[Any, Any, R]],
    ) -> Generator[Any, Any, R]:
        """Run ``attempt_fn()`` (a SimPy process body) with retries, in simulated time.

        Use it inside a process: ``value = yield from policy.simpy_call(env, attempt)``.
        Elapsed time is read from ``env.now`` and waiting is ``yield env.timeout(delay)``.
        """
        if self.budget is not None:
            self.budget.record_call()
        start = env.now
        run: _Run | None = None
        attempt = 1
        while True:
            if self.listeners.snapshot:
                self.listeners.emit(AttemptStarted(env.now, attempt))
            try:
                result = yield from attempt_fn()
            except Exception as error:
                run = run or _Run(self, start)
                delay = run.after_failure(env.now, error, None)
                if delay is None:
                    return run.give_up(error, None)  # type: ignore[no-any-return]
            else:
                if self.retry_on_result is None or not self.retry_on_result(result):
                    if self.listeners.snapshot:
                        self.listeners.emit(AttemptSucceeded(env.now, attempt))
                    return result
                run = run or _Run(self, start)
                delay = run.after_failure(env.now, None, result)
                if delay is None:
                    return run.give_up(None, result)  # type: ignore[no-any-return]
            yield env.timeout(delay)
            attempt += 1


    def __repr__(self) -> str:
        return (f"RetryPolicy(stop={self.stop!r}, backoff={self.backoff!r}, "
                f"retry_on={self.retry_on!r}, budget={self.budget!r})")


class _Run:
    """The decision state of one call: shared by every driver, created at the first failure."""

    __slots__ = ("attempts", "delays", "policy", "reason", "start")

    def __init__(self, policy: RetryPolicy, start: float) -> None:
        self.policy = policy
        self.start = start
        self.attempts = 0
        self.delays: Iterator[float] = policy.backoff.delays(policy.rng)
        self.reason = GiveUpReason.STOPPED

    def after_failure(
        self, now: float, error: BaseException | None, result: object
    ) -> float | None:
        """The delay before the next attempt, or ``None`` to give up (event emitted)."""
        policy = self.policy
        self.attempts += 1
        reason: GiveUpReason | None = None
        delay = math.nan
        if error is not None and not policy.is_retryable(error):
            reason = GiveUpReason.NOT_RETRYABLE
        else:
            delay = next(self.delays)
            if policy.stop.should_stop(self.attempts, now - self.start, delay):
                reason = GiveUpReason.STOPPED
            elif policy.budget is not None and not policy.budget.try_acquire_retry():
                reason = GiveUpReason.BUDGET_EXHAUSTED
        if reason is not None:
            self.reason = reason
            if policy.listeners.snapshot:
                policy.listeners.emit(RetryGaveUp(now, self.attempts, reason, error, result))
            return None
        if policy.listeners.snapshot:
            policy.listeners.emit(RetryScheduled(now, self.attempts, delay, error, result))
        return delay

    def give_up(self, error: BaseException | None, result: object) -> Any:
        """End the call: the fallback's value, or the error (re-raised with a note)."""
        policy = self.policy
        if error is not None and isinstance(error, _never_retried()):
            raise error  # control flow (a SimPy Interrupt), not a failure: no fallback
        if error is None:
            final: BaseException = RetryExhaustedError(self.attempts, self.reason, result)
        else:
            error.add_note(
                f"retry: gave up after {self.attempts} attempt(s) ({self.reason.value})"
            )
            final = error
        if policy.fallback is not None:
            return policy.fallback(final)
        raise final
