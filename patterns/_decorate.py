"""One decorator for every pattern that has a blocking and an asyncio driver.

A pattern object with ``call(fn, *args, **kwargs)`` and ``await acall(fn, *args,
**kwargs)`` inherits :class:`CallDecorator` and can then be used as ``@pattern`` on a
plain or an ``async`` function: the decorated function calls through the right driver.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

__all__ = ["CallDecorator"]

P = ParamSpec("P")
R = TypeVar("R")


class _Drivers(Protocol):
    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any: ...

    async def acall(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any: ...


class CallDecorator:
    """Use the pattern as a decorator, on plain and on ``async`` functions."""

    __slots__ = ()

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        drivers = cast(_Drivers, self)
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await drivers.acall(fn, *args, **kwargs)

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return drivers.call(fn, *args, **kwargs)

        return wrapper
