"""The base of the library's exceptions that take arguments: they can be rebuilt.

Three things rebuild an exception from ``e.args``, and each drives this library:

* SimPy gives every process waiting on a failed event its own copy of the exception,
  made with ``type(e)(*e.args)`` (``simpy.events.Process._resume``);
* :mod:`pickle` (:mod:`multiprocessing`, :class:`concurrent.futures.ProcessPoolExecutor`)
  rebuilds it with ``type(e)(*e.args)`` and then restores ``e.__dict__``;
* :func:`copy.copy` and :func:`copy.deepcopy` do the same through ``__reduce_ex__``.

An exception whose ``__init__`` takes arguments but passes only a formatted message to
``super().__init__`` has ``e.args == (message,)``, so all three call its ``__init__``
with the message alone and fail with ``TypeError: ... missing 1 required positional
argument``: inside a SimPy process, the simulation crashes.

:class:`Rebuildable` is the one fix for all of them. Put it *first* among the bases
(``class CircuitOpenError(Rebuildable, Exception)``), or inherit it from a base class
that does (``LockError``, ``IdempotencyError``), and write ``__init__`` as usual, passing
the formatted message to ``super().__init__``:

* ``e.args`` is the constructor's arguments, all of them, by position and with the
  defaults filled in (a call with keywords is bound to the signature), so
  ``type(e)(*e.args)`` rebuilds an equal exception. The parameters of ``__init__`` must
  therefore be positional (no ``*args``, ``**kwargs`` or keyword-only parameters):
  defining one is a :class:`TypeError` when the class is created;
* ``str(e)`` is the message given to ``super().__init__`` (unless the class defines its
  own ``__str__``), and ``repr(e)`` is the usual ``Name(*args)``, which rebuilds it;
* pickling sends ``e.args`` and ``e.__dict__`` (the attributes, ``__notes__``), as for
  any exception; like any pickled exception it loses ``__traceback__``, ``__cause__``
  and ``__context__`` (a cause that ``__init__`` sets from an argument, as
  ``StageError`` does, is rebuilt with it);
* a parameter named in ``_process_local`` holds an object that only means something in
  the process that made it (a cancellation token: a lock, callbacks, a clock). Pickling
  sends its default instead (and drops the attribute of the same name), so the error
  still crosses a process boundary; :func:`copy.copy` and :func:`copy.deepcopy` keep the
  very same object (a deep copy of a token would be a token nobody can cancel).

Any other argument is pickled as it is: one that cannot be pickled makes pickling the
error fail, as it would for any object holding it.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, ClassVar, Self

__all__ = ["Rebuildable"]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_NO_DEFAULT = inspect.Parameter.empty


class Rebuildable(BaseException):
    """Base of an exception whose ``args`` are its constructor's arguments (see the module).

    It derives from :class:`BaseException` only to type ``args``; list it first among
    the bases, before the built-in exception the error really is.
    """

    _process_local: ClassVar[tuple[str, ...]] = ()
    """Parameters holding objects of this process only: pickled as their default."""

    # Set for each class by __init_subclass__, from the signature of its __init__:
    # (name, default) of every parameter after ``self``; None while __init__ is this
    # class's own (then the arguments are kept as they are given, like BaseException's).
    _parameters: ClassVar[tuple[tuple[str, Any], ...] | None] = None
    _local_defaults: ClassVar[tuple[tuple[int, str, Any], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__init__ is Rebuildable.__init__:
            cls._parameters = None
        else:
            parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
            for parameter in parameters:
                if parameter.kind not in _POSITIONAL:
                    raise TypeError(
                        f"{cls.__qualname__}.__init__: parameter {parameter} is "
                        f"{parameter.kind.description}, but type(e)(*e.args) passes "
                        "arguments by position only (make it positional-or-keyword, "
                        "with a default)")
            cls._parameters = tuple((p.name, p.default) for p in parameters)
        names = [name for name, _ in cls._parameters or ()]
        local = []
        for name in cls._process_local:
            if name not in names:
                raise TypeError(f"{cls.__qualname__}._process_local names {name!r}, "
                                "which is not a parameter of its __init__")
            index = names.index(name)
            default = (cls._parameters or ())[index][1]
            if default is _NO_DEFAULT:
                raise TypeError(f"{cls.__qualname__}._process_local names {name!r}, "
                                "which has no default to pickle in its place")
            local.append((index, name, default))
        cls._local_defaults = tuple(local)

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # No arguments for the built-in __new__: OSError's (TimeoutError's) would read
        # them as errno, strerror and filename.
        self = super().__new__(cls)
        self.args = cls._bind(args, kwargs)
        return self

    @classmethod
    def _bind(cls, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """All the arguments by position, defaults filled in; a call that does not fit
        the signature is returned as it is (its __init__ raises the TypeError)."""
        parameters = cls._parameters
        if parameters is None or (not kwargs and len(args) == len(parameters)):
            return args
        if len(args) > len(parameters):
            return args
        values = list(args)
        unused = dict(kwargs)
        for name, default in parameters[len(args):]:
            if name in unused:
                values.append(unused.pop(name))
            elif default is not _NO_DEFAULT:
                values.append(default)
            else:
                return args
        return args if unused else tuple(values)

    def __init__(self, *message: object) -> None:
        args = self.args
        super().__init__(*message)
        # BaseException.__init__ set args to the message: put the arguments back, and
        # keep the message for __str__ (as BaseException.__str__ would show it).
        self.args = args
        self._message = "" if not message else str(message[0]) if len(message) == 1 \
            else str(message)

    def __str__(self) -> str:
        message = self.__dict__.get("_message")
        return super().__str__() if message is None else str(message)

    def __reduce__(self) -> tuple[Any, ...]:
        args = self.args
        state = dict(vars(self))
        if self._local_defaults:
            values = list(args)
            for index, name, default in self._local_defaults:
                if index < len(values):
                    values[index] = default
                state.pop(name, None)
            args = tuple(values)
        return (type(self), args, state or None)

    def __copy__(self) -> Self:
        clone = type(self)(*self.args)
        clone.__dict__.update(vars(self))
        return clone

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        local = {index for index, _, _ in self._local_defaults}
        clone = type(self)(*(value if index in local else copy.deepcopy(value, memo)
                             for index, value in enumerate(self.args)))
        memo[id(self)] = clone
        for name, value in vars(self).items():
            clone.__dict__[name] = (value if name in self._process_local
                                    else copy.deepcopy(value, memo))
        return clone
