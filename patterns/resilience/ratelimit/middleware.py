"""Apply a limiter to a function (guide section 4.5, ``RateLimitMiddleware``).

The guide wraps a ``Service`` so that each call first asks the limiter and fails with
``RateLimitError::RateLimited`` when refused. :class:`RateLimitMiddleware` wraps any
callable, plain or ``async``, the same way; :func:`rate_limited` is its decorator form.
A refused call raises :class:`~patterns.resilience.ratelimit.RateLimitExceededError`,
which carries ``retry_after`` (what an HTTP service puts in its ``Retry-After``
header), or, with ``wait=True``, waits for its turn (up to ``timeout``).

``@rate_limited(...)`` keeps an ``async def`` a coroutine function
(``inspect.iscoroutinefunction`` is true of the result), so that other decorators
stacked over it (``@breaker``, ``@retry``) take their asyncio path and await it. The
blocking path never runs an ``async`` function: it refuses one with :class:`TypeError`
before taking a permit, and refuses an awaitable *returned* by a plain function
(closing a coroutine, and giving the permit back, since the work never ran).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Generic, ParamSpec, TypeVar, cast, overload

from patterns._decorate import (
    is_async_callable,
    reject_awaitable_result,
    reject_coroutine_function,
)
from patterns._timers import sleep as sleep_blocking
from patterns._validation import require_int_at_least, require_non_negative
from patterns.resilience.ratelimit._base import (
    RateLimiter,
    RateLimitExceededError,
    check_sleep,
)

__all__ = ["RateLimitMiddleware", "rate_limited"]

P = ParamSpec("P")
R = TypeVar("R")

_ASYNC_ADVICE = ("Await it through the asyncio driver instead (`await middleware.acall(...)`), "
                 "or decorate it with @rate_limited (the decorator keeps it async).")


def _check_options(limiter: RateLimiter, wait: bool, timeout: float | None, cost: int,
                   sleep: Callable[[float], object] | None) -> None:
    if not isinstance(limiter, RateLimiter):
        raise TypeError(f"limiter must be a RateLimiter, got {limiter!r}")
    if not isinstance(wait, bool):
        raise TypeError(f"wait must be a bool, got {wait!r}")
    if timeout is not None:
        require_non_negative("timeout", timeout)
    require_int_at_least("cost", cost, 1)
    if cost > limiter.max_permits:
        raise ValueError(f"cost must be <= {limiter.max_permits} (the most {limiter!r} "
                         f"can grant at once), got {cost!r}")
    check_sleep(sleep)


class RateLimitMiddleware(Generic[P, R]):
    """``inner`` behind ``limiter`` (guide section 4.5, ``RateLimitMiddleware``).

    Each call takes ``cost`` permits first.

    With ``wait=False`` (the default) a call that does not fit raises
    :class:`RateLimitExceededError` at once and ``inner`` is not called. With
    ``wait=True`` the call waits for its permits (blocking, or with ``await`` for an
    ``async`` function) and raises only if they would not come within ``timeout``
    seconds. ``sleep`` is the blocking wait (default :func:`time.sleep`, in steps of at
    most an hour).

    :meth:`call` is the blocking driver and :meth:`acall` the asyncio one; calling the
    object picks :meth:`acall` for an ``async`` ``inner`` (the call returns a coroutine)
    and :meth:`call` otherwise. The object itself is not a coroutine function: to stack
    other decorators over an ``async`` function, use :func:`rate_limited`, which returns
    a real ``async def``.
    """

    def __init__(
        self,
        inner: Callable[P, R],
        limiter: RateLimiter,
        *,
        wait: bool = False,
        timeout: float | None = None,
        cost: int = 1,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        if not callable(inner):
            raise TypeError(f"inner must be callable, got {inner!r}")
        _check_options(limiter, wait, timeout, cost, sleep)
        self.inner = inner
        self.limiter = limiter
        self.wait = wait
        self.timeout = timeout
        self.cost = cost
        self.sleep = sleep if sleep is not None else sleep_blocking
        self.is_async = is_async_callable(inner)
        functools.update_wrapper(self, inner)

    def _refused(self) -> RateLimitExceededError:
        return RateLimitExceededError(self.limiter.time_until(self.cost), self.cost)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.is_async:
            return cast(R, self.acall(*args, **kwargs))
        return self.call(*args, **kwargs)

    def call(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Take the permits (or wait for them, blocking), then call ``inner``.

        Refuses an ``async`` ``inner`` with :class:`TypeError` before taking anything,
        and an awaitable returned by a plain ``inner`` after giving the permits back.
        """
        if self.is_async:
            reject_coroutine_function(self.inner, "RateLimitMiddleware.call", _ASYNC_ADVICE)
        limiter, cost = self.limiter, self.cost
        if self.wait:
            if not limiter.acquire(cost, timeout=self.timeout, sleep=self.sleep):
                raise self._refused()
        else:
            retry_after = limiter.attempt(cost)
            if retry_after:
                raise RateLimitExceededError(retry_after, cost)
        result = self.inner(*args, **kwargs)
        try:
            reject_awaitable_result(result, "RateLimitMiddleware.call", self.inner)
        except TypeError:
            limiter.refund(cost)  # the work never ran: its permits go back
            raise
        return result

    async def acall(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Take the permits (or wait for them with ``await``), then await ``inner``.

        A plain ``inner`` is called, and its result awaited if it is awaitable.
        """
        limiter, cost = self.limiter, self.cost
        if self.wait:
            if not await limiter.aacquire(cost, timeout=self.timeout):
                raise self._refused()
        else:
            retry_after = limiter.attempt(cost)
            if retry_after:
                raise RateLimitExceededError(retry_after, cost)
        result: Any = self.inner(*args, **kwargs)
        if inspect.isawaitable(result):
            return await result
        return result

    def __repr__(self) -> str:
        return (f"RateLimitMiddleware({getattr(self.inner, '__qualname__', self.inner)!r}, "
                f"{self.limiter!r}, wait={self.wait!r}, cost={self.cost!r})")


class _Decorate:
    """What :func:`rate_limited` returns: applies the middleware to a function."""

    __slots__ = ("cost", "limiter", "sleep", "timeout", "wait")

    def __init__(self, limiter: RateLimiter, wait: bool, timeout: float | None, cost: int,
                 sleep: Callable[[float], object] | None) -> None:
        self.limiter, self.wait, self.timeout, self.cost, self.sleep = (
            limiter, wait, timeout, cost, sleep)

    @overload
    def __call__(  # type: ignore[overload-overlap]  # async first: it wins
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> RateLimitMiddleware[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        middleware: RateLimitMiddleware[P, Any] = RateLimitMiddleware(
            fn, self.limiter, wait=self.wait, timeout=self.timeout, cost=self.cost,
            sleep=self.sleep)
        if not middleware.is_async:
            return middleware

        @functools.wraps(fn)
        async def rate_limited_call(*args: P.args, **kwargs: P.kwargs) -> Any:
            return await middleware.acall(*args, **kwargs)

        rate_limited_call.middleware = middleware  # type: ignore[attr-defined]
        return rate_limited_call


def rate_limited(
    limiter: RateLimiter,
    *,
    wait: bool = False,
    timeout: float | None = None,
    cost: int = 1,
    sleep: Callable[[float], object] | None = None,
) -> _Decorate:
    """Decorate a function (plain or ``async``) so that each call passes ``limiter``
    (guide section 4.5, ``RateLimitMiddleware``).

    A plain function becomes a :class:`RateLimitMiddleware`; an ``async`` one (any
    callable whose call gives a coroutine) becomes an ``async def`` that awaits
    :meth:`RateLimitMiddleware.acall` (the middleware is its ``middleware`` attribute),
    so it stays a coroutine function for the decorators stacked over it. The options are
    checked here, before any function is decorated; see :class:`RateLimitMiddleware`.
    """
    _check_options(limiter, wait, timeout, cost, sleep)
    return _Decorate(limiter, wait, timeout, cost, sleep)
