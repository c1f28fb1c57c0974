"""One decorator for every pattern that has a blocking and an asyncio driver.

A pattern object with ``call(fn, *args, **kwargs)`` and ``await acall(fn, *args,
**kwargs)`` inherits :class:`CallDecorator` and can then be used as ``@pattern`` on a
plain or an ``async`` function: the decorated function calls through the right driver,
and a coroutine function stays one (``inspect.iscoroutinefunction`` is true of the
result), so decorators stack in any order without an ``async`` function falling onto a
blocking driver.

The checks that keep coroutines off the blocking drivers live here too, for every
pattern to share:

* :func:`is_async_callable` -- does calling ``fn`` give an awaitable? (coroutine
  functions, ``functools.partial`` of them, bound methods, objects whose ``__call__``
  is ``async``, and functions marked as coroutine functions);
* :func:`reject_coroutine_function` -- a blocking driver refuses such an ``fn`` up front,
  before it changes any state, with a :class:`TypeError` that names the driver and
  points to its ``acall``;
* :func:`reject_awaitable_result` -- a blocking driver refuses a result that is an
  awaitable (a plain function that returned a coroutine, a future, a task): a coroutine
  is closed first, so Python does not warn that it was never awaited, and the driver
  counts the call as neither a success nor a failure.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Coroutine
from types import CoroutineType, FunctionType, GeneratorType, MethodType
from typing import Any, Final, ParamSpec, Protocol, TypeVar, cast, overload

from patterns._errors import Rebuildable

__all__ = [
    "PLAIN_RESULTS",
    "CallDecorator",
    "NotAwaitableError",
    "is_async_callable",
    "is_awaitable_result",
    "not_awaitable_error",
    "reject_awaitable_result",
    "reject_coroutine_function",
]

P = ParamSpec("P")
R = TypeVar("R")

_CO_COROUTINE: Final = inspect.CO_COROUTINE
_CO_ITERABLE_COROUTINE: Final = inspect.CO_ITERABLE_COROUTINE

#: Result types that are never awaitable: the check of a blocking driver's result
#: costs one set lookup for them.
PLAIN_RESULTS: Final[frozenset[type]] = frozenset({
    type(None), bool, int, float, complex, str, bytes, bytearray, tuple, list, dict, set,
    frozenset, range, memoryview,
})


def _marked(fn: object) -> bool:
    """``fn`` carries a "this is a coroutine function" marker (asyncio's or inspect's)."""
    if getattr(fn, "_is_coroutine_marker", None) is not None:  # inspect.markcoroutinefunction
        return True
    coroutines = sys.modules.get("asyncio.coroutines")  # not loaded: nobody marked anything
    marker = getattr(coroutines, "_is_coroutine", None) if coroutines is not None else None
    return marker is not None and getattr(fn, "_is_coroutine", None) is marker


def is_async_callable(fn: object) -> bool:
    """Whether calling ``fn`` gives a coroutine: a coroutine function, a bound method of
    one, a ``functools.partial`` of one, an object whose ``__call__`` is ``async``, or a
    callable marked as a coroutine function (asyncio's marker, or
    ``inspect.markcoroutinefunction``).

    A plain function that merely *returns* a coroutine cannot be told apart before it is
    called; :func:`reject_awaitable_result` catches it afterwards. Cheap for plain
    functions (a flag test), since blocking drivers ask it on every call.
    """
    if type(fn) is FunctionType:
        # A marker lives in the function's __dict__: most functions have none.
        return bool(fn.__code__.co_flags & _CO_COROUTINE) or (bool(fn.__dict__) and _marked(fn))
    while isinstance(fn, functools.partial):
        fn = fn.func
    if isinstance(fn, MethodType):
        fn = fn.__func__
    if inspect.iscoroutinefunction(fn) or _marked(fn):
        return True
    if isinstance(fn, FunctionType | type) or not callable(fn):
        return False
    call = getattr(type(fn), "__call__", None)  # noqa: B004 (the method, not callable())
    return call is not None and (inspect.iscoroutinefunction(call) or _marked(call))


def reject_coroutine_function(fn: object, driver: str, advice: str | None = None) -> None:
    """Refuse ``fn`` for the blocking ``driver`` (e.g. ``"CircuitBreaker.call"``) if it is
    not callable or if calling it gives a coroutine (see :func:`is_async_callable`).

    The :class:`TypeError` names the driver and points to its ``acall`` (or says
    ``advice``, for a driver without one).
    """
    if type(fn) is FunctionType:
        if not (fn.__code__.co_flags & _CO_COROUTINE or (fn.__dict__ and _marked(fn))):
            return
    elif not callable(fn):
        raise TypeError(f"{driver}: fn must be callable, got {fn!r}")
    elif not is_async_callable(fn):
        return
    raise TypeError(f"{driver} cannot run {_name(fn)}: it is a coroutine function. "
                    + (advice or _advice(driver)))


_AWAITABLE_TYPES: dict[type, bool] = {}  # type -> has __await__ (a cache, kept small)


def _awaitable_type(kind: type) -> bool:
    known = _AWAITABLE_TYPES.get(kind)
    if known is None:
        if len(_AWAITABLE_TYPES) > 1024:  # classes made on the fly: do not grow forever
            _AWAITABLE_TYPES.clear()
        known = _AWAITABLE_TYPES[kind] = callable(getattr(kind, "__await__", None))
    return known


def is_awaitable_result(result: object) -> bool:
    """Whether ``result`` can be awaited (a coroutine, a future, a task, a generator-based
    coroutine, any object with ``__await__``). One set lookup for plain values."""
    kind = type(result)
    if kind in PLAIN_RESULTS:
        return False
    if kind is CoroutineType or _awaitable_type(kind):
        return True
    return kind is GeneratorType and bool(
        result.gi_code.co_flags & _CO_ITERABLE_COROUTINE)  # type: ignore[attr-defined]


def reject_awaitable_result(result: object, driver: str, fn: object = None,
                            advice: str | None = None) -> None:
    """Raise :class:`TypeError` if ``result`` (returned to the blocking ``driver`` by
    ``fn``) is an awaitable: the blocking driver cannot await it, and passing it on as
    if the call had happened would hide the mistake. A coroutine is closed first, so
    that Python does not warn that it was never awaited. The caller counts the call as
    neither a success nor a failure.
    """
    if not is_awaitable_result(result):
        return
    close = getattr(result, "close", None)
    if (type(result) is CoroutineType or type(result) is GeneratorType) and close is not None:
        close()
    if type(result) is CoroutineType and fn is not None and is_async_callable(fn):
        raise TypeError(f"{driver} cannot run {_name(fn)}: it is a coroutine function (the "
                        "call is counted neither as a success nor as a failure). "
                        + (advice or _advice(driver)))
    what = "a coroutine" if type(result) is CoroutineType else (
        f"an awaitable ({type(result).__name__})")
    raise TypeError(f"{driver} got {what} from {_name(fn)}, which a blocking driver cannot "
                    "await (the call is counted neither as a success nor as a failure). "
                    + (advice or _advice(driver)))


class NotAwaitableError(Rebuildable, Exception):
    """Internal signal of an asyncio driver: ``fn`` returned ``value``, which cannot be
    awaited. Raised inside the driver's ``try`` so the driver can tell it from a failure
    of the call, caught there, and turned into :func:`not_awaitable_error`."""

    def __init__(self, value: object) -> None:
        super().__init__()
        self.value = value


def not_awaitable_error(driver: str, fn: object, value: object) -> TypeError:
    """The error of an asyncio ``driver`` (e.g. ``"CircuitBreaker.acall"``) whose ``fn``
    returned ``value``, which cannot be awaited: ``fn`` is a plain function, and the
    blocking driver ``call`` is the one to use. The driver counts the call as neither a
    success nor a failure (and does not retry it)."""
    owner = driver.rpartition(".")[0] or "the pattern"
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return TypeError(
        f"{driver} awaits what fn returns, and {_name(fn)} returned {shown} "
        f"({type(value).__name__}), which is not awaitable: call a plain function through "
        f"the blocking driver, `{owner}.call(fn, ...)`")


def _advice(driver: str) -> str:
    owner = driver.rpartition(".")[0] or "the pattern"
    return (f"Await it through the asyncio driver instead (`await {owner}.acall(fn, ...)` "
            "on the same object), or decorate the async function with the pattern (the "
            "decorator keeps it async).")


def _name(fn: object) -> str:
    if fn is None:
        return "the function"
    name = getattr(fn, "__qualname__", None)
    return repr(name) if isinstance(name, str) else repr(fn)


class _Drivers(Protocol):
    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any: ...

    async def acall(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any: ...


class CallDecorator:
    """Use the pattern as a decorator, on plain and on ``async`` functions.

    An ``async`` callable (see :func:`is_async_callable`) gets an ``async def`` wrapper
    that awaits the pattern's ``acall``; anything else gets a plain wrapper around its
    ``call``.
    """

    __slots__ = ()

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        drivers = cast(_Drivers, self)
        if is_async_callable(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await drivers.acall(fn, *args, **kwargs)

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return drivers.call(fn, *args, **kwargs)

        return wrapper
