"""Apply a limiter to a function (guide section 4.5, ``RateLimitMiddleware``).

The guide wraps a ``Service`` so that each call first asks the limiter and fails with
``RateLimitError::RateLimited`` when refused. :class:`RateLimitMiddleware` wraps any
callable, plain or ``async``, the same way; :func:`rate_limited` is its decorator form.
A refused call raises :class:`~patterns.resilience.ratelimit.RateLimitExceededError`,
which carries ``retry_after`` (what an HTTP service puts in its ``Retry-After``
header), or, with ``wait=True``, waits for its turn (up to ``timeout``).
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, ParamSpec, TypeVar, cast

from patterns._validation import require_int_at_least, require_non_negative
from patterns.resilience.ratelimit._base import RateLimiter, RateLimitExceededError

__all__ = ["RateLimitMiddleware", "rate_limited"]

P = ParamSpec("P")
R = TypeVar("R")


class RateLimitMiddleware(Generic[P, R]):
    """``inner`` behind ``limiter`` (guide section 4.5, ``RateLimitMiddleware``).

    Each call takes ``cost`` permits first.

    With ``wait=False`` (the default) a call that does not fit raises
    :class:`RateLimitExceededError` at once and ``inner`` is not called. With
    ``wait=True`` the call waits for its permits (blocking, or with ``await`` for an
    ``async`` function) and raises only if they would not come within ``timeout``
    seconds. ``sleep`` is the blocking wait (default :func:`time.sleep`).
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
        if not isinstance(limiter, RateLimiter):
            raise TypeError(f"limiter must be a RateLimiter, got {limiter!r}")
        if not isinstance(wait, bool):
            raise TypeError(f"wait must be a bool, got {wait!r}")
        if timeout is not None:
            require_non_negative("timeout", timeout)
        self.cost = require_int_at_least("cost", cost, 1)
        if cost > limiter.max_permits:
            raise ValueError(f"cost must be <= {limiter.max_permits} (the most {limiter!r} "
                             f"can grant at once), got {cost!r}")
        if sleep is not None and not callable(sleep):
            raise TypeError(f"sleep must be callable, got {sleep!r}")
        self.inner = inner
        self.limiter = limiter
        self.wait = wait
        self.timeout = timeout
        self.sleep = sleep if sleep is not None else time.sleep
        self.is_async = inspect.iscoroutinefunction(inner)
        functools.update_wrapper(self, inner)

    def _refused(self) -> RateLimitExceededError:
        return RateLimitExceededError(self.limiter.time_until(self.cost), self.cost)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.is_async:
            return cast(R, self._acall(*args, **kwargs))
        limiter, cost = self.limiter, self.cost
        if self.wait:
            if not limiter.acquire(cost, timeout=self.timeout, sleep=self.sleep):
                raise self._refused()
        else:
            retry_after = limiter.attempt(cost)
            if retry_after:
                raise RateLimitExceededError(retry_after, cost)
        return self.inner(*args, **kwargs)

    async def _acall(self, *args: Any, **kwargs: Any) -> Any:
        limiter, cost = self.limiter, self.cost
        if self.wait:
            if not await limiter.aacquire(cost, timeout=self.timeout):
                raise self._refused()
        else:
            retry_after = limiter.attempt(cost)
            if retry_after:
                raise RateLimitExceededError(retry_after, cost)
        inner = cast(Callable[..., Awaitable[Any]], self.inner)
        return await inner(*args, **kwargs)

    def __repr__(self) -> str:
        return (f"RateLimitMiddleware({getattr(self.inner, '__qualname__', self.inner)!r}, "
                f"{self.limiter!r}, wait={self.wait!r}, cost={self.cost!r})")


def rate_limited(
    limiter: RateLimiter,
    *,
    wait: bool = False,
    timeout: float | None = None,
    cost: int = 1,
    sleep: Callable[[float], object] | None = None,
) -> Callable[[Callable[P, R]], RateLimitMiddleware[P, R]]:
    """Decorate a function (plain or ``async``) so that each call passes ``limiter``.

    See :class:`RateLimitMiddleware` for the options.
    """

    def decorate(fn: Callable[P, R]) -> RateLimitMiddleware[P, R]:
        return RateLimitMiddleware(fn, limiter, wait=wait, timeout=timeout, cost=cost,
                                   sleep=sleep)

    return decorate
