"""Stacking the guards of chapter 4 in the right order (guide sections 4.1-4.5).

Retry (4.1), circuit breaker (4.2), bulkhead (4.3), timeout (4.4) and rate limiter (4.5)
each protect a call on their own; real calls need several, and the order in which they
wrap each other changes what they do. :class:`Guard` takes any of them and applies them
in one documented order, with a blocking driver (:meth:`Guard.call`), an asyncio driver
(:meth:`Guard.acall`) and decorator use on plain and ``async`` functions::

    guard = Guard(
        retry=RetryPolicy.from_attempts(3),
        breaker=CircuitBreaker("inventory"),
        limiter=TokenBucket(rate=100, capacity=20),
        bulkhead=Bulkhead("inventory", max_concurrent_calls=10),
        timeout=TimeoutPolicy(2.0),
    )

    @guard
    async def reserve(item: str) -> Reservation: ...

The order, outermost first, is resilience4j's default aspect order,
``Retry(CircuitBreaker(RateLimiter(TimeLimiter(Bulkhead(fn)))))``, with the timeout
moved inside the bulkhead::

    retry -> breaker -> limiter -> bulkhead -> timeout -> fn

Why, layer by layer:

* **retry outermost**: every attempt passes every other guard again (an open breaker,
  the rate, a free slot), and the back-off between attempts is spent outside all of
  them, so a waiting retry holds no bulkhead slot and no rate permit.
* **breaker next**: an open breaker fails an attempt at once, before it consumes a rate
  permit or queues for a slot; and the breaker sees the attempt's real outcome,
  timeouts included (a :class:`~patterns.resilience.timeout.DeadlineExceededError` is a
  failure of the dependency). The guard's *own* refusals (rate limiter, bulkhead) are
  local decisions, not answers of the dependency: the breaker counts them as nothing
  (the permit is reported "ignored").
* **rate limiter**: each attempt, retries included, counts against the dependency's
  rate; a refused attempt never occupies a slot.
* **bulkhead**: bounds the attempts in flight; placed inside the limiter, only admitted
  attempts queue for a slot.
* **timeout innermost**, around the function itself: each attempt gets its own
  deadline (a per-attempt timeout; the retry's ``StopAfterElapsed`` bounds the whole
  call), the bulkhead slot is held at most about that long, and the breaker sees the
  timeout as the attempt's failure.

Which refusals are retried (``retry_rejections``, default ``("rate_limited",)``):

* ``"rate_limited"`` (:class:`~patterns.resilience.ratelimit.RateLimitExceededError`):
  retried, but never before its ``retry_after``: the next attempt first waits out what
  is left of it (outside the bulkhead), so a retry never hammers the limiter. Not
  retried if ``retry_after`` is infinite (the request can never fit).
* ``"circuit_open"`` (:class:`~patterns.resilience.breaker.CircuitOpenError`): not
  retried by default. The breaker opened because the dependency is failing; a retry a
  few hundred milliseconds later meets the same open breaker (its wait is typically
  seconds), and failing fast is the breaker's purpose.
* ``"bulkhead_full"`` (:class:`~patterns.resilience.bulkhead.BulkheadFullError`): not
  retried by default. A full bulkhead is load shedding: retrying turns rejected work
  into more waiting work. To wait for a slot, give the bulkhead a queue and a
  ``max_wait`` instead.

Every other exception is retried as the :class:`~patterns.resilience.retry.RetryPolicy`
says. These rules apply to the refusals of this guard's own layers only: a
``CircuitOpenError`` raised by the function (from a guard around *another* dependency)
is an ordinary exception here.

The order can be changed, explicitly, with ``order=``: a permutation of the names
``"retry"``, ``"breaker"``, ``"limiter"``, ``"bulkhead"``, ``"timeout"`` (those not
configured are skipped). The timeout passes no token to the function: a blocking call
runs to its end and is then reported as timed out (Python cannot stop a thread), an
``async`` one is cancelled at the deadline; for cooperative cancellation of blocking
work, use :class:`~patterns.resilience.timeout.TimeoutPolicy` itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, ParamSpec, TypeVar

from patterns._decorate import (
    CallDecorator,
    is_awaitable_result,
    not_awaitable_error,
    reject_awaitable_result,
    reject_coroutine_function,
)
from patterns._validation import require_int_at_least, require_non_negative
from patterns.resilience.breaker import CircuitBreaker
from patterns.resilience.bulkhead import Bulkhead, BulkheadFullError
from patterns.resilience.ratelimit import RateLimiter, RateLimitExceededError
from patterns.resilience.retry import RetryPolicy
from patterns.resilience.timeout import CancellationToken, TimeoutPolicy

__all__ = ["DEFAULT_ORDER", "REJECTIONS", "Guard"]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_ORDER: Final[tuple[str, ...]] = ("retry", "breaker", "limiter", "bulkhead", "timeout")
"""The layers, outermost first (see the module's documentation for why)."""

REJECTIONS: Final[frozenset[str]] = frozenset({"rate_limited", "circuit_open", "bulkhead_full"})
"""The names of the guard's own refusals, for ``retry_rejections``."""

_MARK: Final = "_patterns_guard_rejection"  # set on a refusal raised by a guard's layer
_LOCAL: Final = ("rate_limited", "bulkhead_full", "misuse")  # never a dependency failure


class _Attempts:
    """The state one call shares across its attempts."""

    __slots__ = ("args", "fn", "kwargs", "not_before")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.not_before = -math.inf  # on the limiter's clock: no attempt before this


_Step = Callable[[int, _Attempts], Any]


class Guard(CallDecorator):
    """Retry, breaker, rate limiter, bulkhead and timeout, stacked in the right order
    (guide chapter 4, sections 4.1-4.5; the module's documentation says why this order).

    Parameters (all optional, keyword-only)
    ----------
    retry:
        A :class:`~patterns.resilience.retry.RetryPolicy`, outermost: it re-runs every
        inner layer on each attempt. The guard uses a copy (``retry.evolve``, sharing
        its budget and listeners) whose ``retry_on`` also applies ``retry_rejections``.
    breaker:
        A :class:`~patterns.resilience.breaker.CircuitBreaker`; it never counts the
        guard's own limiter or bulkhead refusals.
    limiter:
        A :class:`~patterns.resilience.ratelimit.RateLimiter`; each attempt takes
        ``cost`` permits. With ``limiter_timeout=None`` (default) a refused attempt
        raises :class:`~patterns.resilience.ratelimit.RateLimitExceededError` at once;
        with a number of seconds it waits up to that long for its permits.
    bulkhead:
        A :class:`~patterns.resilience.bulkhead.Bulkhead` (its queue and ``max_wait``
        decide whether an attempt waits for a slot).
    timeout:
        A :class:`~patterns.resilience.timeout.TimeoutPolicy`: the deadline of each
        attempt.
    retry_rejections:
        Which of the guard's own refusals the retry retries: any of ``"rate_limited"``
        (default), ``"circuit_open"``, ``"bulkhead_full"``.
    order:
        The layers, outermost first; default :data:`DEFAULT_ORDER`. Only for a reason:
        the default is the one that is right in general.
    """

    __slots__ = ("_async_steps", "_retry", "_sleep", "_steps", "breaker", "bulkhead", "cost",
                 "limiter", "limiter_timeout", "order", "retry", "retry_rejections", "timeout")

    def __init__(
        self,
        *,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        limiter: RateLimiter | None = None,
        bulkhead: Bulkhead | None = None,
        timeout: TimeoutPolicy | None = None,
        limiter_timeout: float | None = None,
        cost: int = 1,
        retry_rejections: tuple[str, ...] | frozenset[str] | set[str] = ("rate_limited",),
        order: tuple[str, ...] | list[str] = DEFAULT_ORDER,
    ) -> None:
        for name, value, kind in (("retry", retry, RetryPolicy),
                                  ("breaker", breaker, CircuitBreaker),
                                  ("limiter", limiter, RateLimiter),
                                  ("bulkhead", bulkhead, Bulkhead),
                                  ("timeout", timeout, TimeoutPolicy)):
            if value is not None and not isinstance(value, kind):
                raise TypeError(f"{name} must be a {kind.__name__} or None, got {value!r}")
        if limiter_timeout is not None:
            require_non_negative("limiter_timeout", limiter_timeout)
        self.cost = require_int_at_least("cost", cost, 1)
        if limiter is not None and cost > limiter.max_permits:
            raise ValueError(f"cost must be <= {limiter.max_permits} (the most the limiter "
                             f"can grant at once), got {cost!r}")
        given: object = retry_rejections
        if isinstance(given, str) or not isinstance(given, tuple | frozenset | set | list):
            raise TypeError("retry_rejections must be a collection of names among "
                            f"{sorted(REJECTIONS)}, got {retry_rejections!r}")
        unknown = [name for name in retry_rejections if name not in REJECTIONS]
        if unknown:
            raise ValueError(f"retry_rejections must name refusals among {sorted(REJECTIONS)}, "
                             f"got {retry_rejections!r}")
        self.order = _check_order(order)
        self.retry = retry
        self.breaker = breaker
        self.limiter = limiter
        self.bulkhead = bulkhead
        self.timeout = timeout
        self.limiter_timeout = limiter_timeout
        self.retry_rejections = frozenset(retry_rejections)
        self._retry = (retry.evolve(retry_on=self._retryable(retry))
                       if retry is not None else None)
        self._sleep: Callable[[float], object] = (
            retry.sleep if retry is not None else time.sleep)
        present = {"retry": retry, "breaker": breaker, "limiter": limiter,
                   "bulkhead": bulkhead, "timeout": timeout}
        layers = [name for name in self.order if present[name] is not None]
        self._steps: tuple[_Step, ...] = (
            *(getattr(self, f"_{name}_step") for name in layers), self._fn_step)
        self._async_steps: tuple[_Step, ...] = (
            *(getattr(self, f"_{name}_astep") for name in layers), self._fn_astep)

    # ----------------------------------------------------------------- drivers

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)`` through every layer (blocking while waiting).

        A coroutine function (or a result that is an awaitable) raises
        :class:`TypeError`: use :meth:`acall`.
        """
        reject_coroutine_function(fn, "Guard.call")
        result: R = self._steps[0](0, _Attempts(fn, args, kwargs))
        return result

    async def acall(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await ``fn(*args, **kwargs)`` through every layer (waiting with asyncio)."""
        if not callable(fn):
            raise TypeError(f"Guard.acall: fn must be callable, got {fn!r}")
        result: R = await self._async_steps[0](0, _Attempts(fn, args, kwargs))
        return result

    # ----------------------------------------------------------------- refusals

    def _refusal(self, error: BaseException, kind: str) -> BaseException:
        setattr(error, _MARK, (self, kind))
        return error

    def _own_refusal(self, error: BaseException) -> str | None:
        mark = getattr(error, _MARK, None)
        return mark[1] if isinstance(mark, tuple) and mark[0] is self else None

    def _retryable(self, retry: RetryPolicy) -> Callable[[BaseException], bool]:
        def retryable(error: BaseException) -> bool:
            kind = self._own_refusal(error)
            if kind is None:
                return retry.is_retryable(error)
            if kind not in self.retry_rejections:
                return False
            return not (isinstance(error, RateLimitExceededError)
                        and math.isinf(error.retry_after))

        return retryable

    def _limited(self, attempts: _Attempts, wait: float) -> BaseException:
        assert self.limiter is not None
        if not math.isinf(wait):
            attempts.not_before = self.limiter.clock.now() + wait
        return self._refusal(RateLimitExceededError(wait, self.cost), "rate_limited")

    # ----------------------------------------------------------------- blocking layers

    def _retry_step(self, depth: int, attempts: _Attempts) -> Any:
        assert self._retry is not None
        step = self._steps[depth + 1]
        return self._retry.call(lambda: step(depth + 1, attempts))

    def _breaker_step(self, depth: int, attempts: _Attempts) -> Any:
        breaker = self.breaker
        assert breaker is not None
        permit = breaker.try_acquire()
        if permit is None:
            raise self._refusal(breaker.reject_error(), "circuit_open")
        try:
            result = self._steps[depth + 1](depth + 1, attempts)
        except BaseException as error:
            if self._own_refusal(error) in _LOCAL:
                permit.ignored(error)  # a local decision, not an answer of the dependency
            else:
                breaker.report_error(permit, error)
            raise
        breaker.report_result(permit, result)
        return result

    def _limiter_step(self, depth: int, attempts: _Attempts) -> Any:
        limiter = self.limiter
        assert limiter is not None
        pause = attempts.not_before - limiter.clock.now()
        if pause > 0:  # a retry after a refusal: not before its retry_after
            self._sleep(pause)
        if self.limiter_timeout is None:
            wait = limiter.attempt(self.cost)
            if wait:
                raise self._limited(attempts, wait)
        elif not limiter.acquire(self.cost, timeout=self.limiter_timeout, sleep=self._sleep):
            raise self._limited(attempts, limiter.time_until(self.cost))
        return self._steps[depth + 1](depth + 1, attempts)

    def _bulkhead_step(self, depth: int, attempts: _Attempts) -> Any:
        assert self.bulkhead is not None
        try:
            permit = self.bulkhead.acquire()
        except BulkheadFullError as error:
            raise self._refusal(error, "bulkhead_full") from None
        with permit:
            return self._steps[depth + 1](depth + 1, attempts)

    def _timeout_step(self, depth: int, attempts: _Attempts) -> Any:
        assert self.timeout is not None
        step = self._steps[depth + 1]

        def run(token: CancellationToken) -> Any:
            return step(depth + 1, attempts)

        return self.timeout.call(run)

    def _fn_step(self, depth: int, attempts: _Attempts) -> Any:
        result = attempts.fn(*attempts.args, **attempts.kwargs)
        if is_awaitable_result(result):
            try:
                reject_awaitable_result(result, "Guard.call", attempts.fn)
            except TypeError as error:  # a misuse: neither counted nor retried
                raise self._refusal(error, "misuse") from None
        return result

    # ----------------------------------------------------------------- asyncio layers

    async def _retry_astep(self, depth: int, attempts: _Attempts) -> Any:
        assert self._retry is not None
        step = self._async_steps[depth + 1]

        async def attempt() -> Any:
            return await step(depth + 1, attempts)

        return await self._retry.acall(attempt)

    async def _breaker_astep(self, depth: int, attempts: _Attempts) -> Any:
        breaker = self.breaker
        assert breaker is not None
        permit = breaker.try_acquire()
        if permit is None:
            raise self._refusal(breaker.reject_error(), "circuit_open")
        try:
            result = await self._async_steps[depth + 1](depth + 1, attempts)
        except BaseException as error:
            if self._own_refusal(error) in _LOCAL:
                permit.ignored(error)
            else:
                breaker.report_error(permit, error)
            raise
        breaker.report_result(permit, result)
        return result

    async def _limiter_astep(self, depth: int, attempts: _Attempts) -> Any:
        limiter = self.limiter
        assert limiter is not None
        pause = attempts.not_before - limiter.clock.now()
        if pause > 0:
            await self._asleep(pause)
        if self.limiter_timeout is None:
            wait = limiter.attempt(self.cost)
            if wait:
                raise self._limited(attempts, wait)
        elif not await limiter.aacquire(self.cost, timeout=self.limiter_timeout):
            raise self._limited(attempts, limiter.time_until(self.cost))
        return await self._async_steps[depth + 1](depth + 1, attempts)

    async def _asleep(self, delay: float) -> None:
        if self.retry is not None:
            await self.retry.asleep(delay)
        else:
            import asyncio

            await asyncio.sleep(delay)

    async def _bulkhead_astep(self, depth: int, attempts: _Attempts) -> Any:
        assert self.bulkhead is not None
        try:
            permit = await self.bulkhead.aacquire()
        except BulkheadFullError as error:
            raise self._refusal(error, "bulkhead_full") from None
        with permit:
            return await self._async_steps[depth + 1](depth + 1, attempts)

    async def _timeout_astep(self, depth: int, attempts: _Attempts) -> Any:
        assert self.timeout is not None
        step = self._async_steps[depth + 1]

        async def run(token: CancellationToken) -> Any:
            return await step(depth + 1, attempts)

        return await self.timeout.acall(run)

    async def _fn_astep(self, depth: int, attempts: _Attempts) -> Any:
        awaitable = attempts.fn(*attempts.args, **attempts.kwargs)
        if not is_awaitable_result(awaitable):
            raise self._refusal(not_awaitable_error("Guard.acall", attempts.fn, awaitable),
                                "misuse")
        return await awaitable

    def __repr__(self) -> str:
        layers = [f"{name}={getattr(self, name)!r}" for name in self.order
                  if getattr(self, name) is not None]
        return f"Guard({', '.join(layers)})"


def _check_order(order: object) -> tuple[str, ...]:
    if isinstance(order, str) or not isinstance(order, tuple | list):
        raise TypeError(f"order must be a tuple of layer names, got {order!r}")
    names = tuple(order)
    if sorted(names) != sorted(DEFAULT_ORDER):
        raise ValueError(f"order must name each of {DEFAULT_ORDER} exactly once (outermost "
                         f"first), got {order!r}")
    return names
