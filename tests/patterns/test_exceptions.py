"""Every exception of the library can be rebuilt: by SimPy, by pickle, by copy.

SimPy gives each process waiting on a failed event its own copy of the exception,
``type(e)(*e.args)``; pickle (process pools) and copy rebuild it the same way. An
exception whose ``args`` are only its formatted message cannot be rebuilt, and a SimPy
simulation that raises it crashes with a ``TypeError`` (see ``patterns._errors``).

The classes are discovered: every exception class defined in a module of ``patterns``.
One whose constructor the library defines (an ``__init__`` or ``__new__`` of its own or
inherited from a library class) must have an entry in :data:`ARGUMENTS`, representative
arguments to build it with; the others are built with a message.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import pickle
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import simpy

import patterns
from patterns._errors import Rebuildable
from patterns.consistency.lock import (
    InMemoryLockStore,
    LockLostError,
    LockTimeoutError,
    simpy_acquire,
)
from patterns.consistency.saga import (
    SagaBusyError,
    SagaOutcome,
    SagaResult,
    UnknownSagaError,
)
from patterns.resilience.breaker import CircuitState
from patterns.resilience.bulkhead import RejectReason
from patterns.resilience.retry import GiveUpReason
from patterns.resilience.timeout import CancellationToken, DeadlineExceededError
from simulations.kit.clock import SimClock

Call = tuple[tuple[Any, ...], dict[str, Any]]


def _call(*args: Any, **kwargs: Any) -> Call:
    return args, kwargs


# Representative arguments, by class name; built afresh for each test. Keyword arguments
# are used where callers use them, so that binding them to ``args`` is tested too.
ARGUMENTS: dict[str, Callable[[], Call]] = {
    "NotAwaitableError": lambda: _call([1, 2, 3]),
    "ProjectionTimeoutError": lambda: _call(7, 5, 0.5),
    "ConcurrencyConflictError": lambda: _call("order-1", 3, 4),
    "AggregateNotFoundError": lambda: _call("order-1"),
    "InsufficientFundsError": lambda: _call("acc-1", 150, 100),
    "RequestInProgressError": lambda: _call("key-1", waited=0.25),
    "IdempotencyKeyReusedError": lambda: _call("key-1", "a" * 64, "b" * 64),
    "LeaseLostError": lambda: _call("key-1", "0123456789abcdef"),
    "RequestFailedError": lambda: _call("key-1", "ValueError: card declined"),
    "ResponseNotRecordedError": lambda: _call("key-1", "not encodable",
                                              response={"id": 7}),
    "LockLostError": lambda: _call("orders", "worker-1", reason="the lease expired"),
    "LockTimeoutError": lambda: _call("orders", 2.5, 4),
    "StaleTokenError": lambda: _call("ledger", 3, 5),
    "SagaExistsError": lambda: _call("saga-1"),
    "UnknownSagaError": lambda: _call("saga-1"),
    "SagaFinishedError": lambda: _call("saga-1", kind="compensated"),
    "SagaOwnershipLostError": lambda: _call("saga-1", "worker-1", "worker-2"),
    "SagaBusyError": lambda: _call("saga-1", "worker-2", 12.5),
    "CompensationFailedError": lambda: _call("saga-1", 2, "refund",
                                             ConnectionError("refund service down")),
    "SagaRecoveryError": lambda: _call(
        "2 sagas stay unfinished",
        [UnknownSagaError("saga-1"), SagaBusyError("saga-2", "worker-2", 12.5)],
        results=[SagaResult("saga-3", SagaOutcome.COMPENSATED, 1, recovered=True)]),
    "StageError": lambda: _call("parse", "parse (2 of 3)", {"price": "n/a"},
                                ValueError("price is not a number"), completed=[1, 2]),
    "BufferOverflowError": lambda: _call(8, 12.5),
    "CircuitOpenError": lambda: _call("payments", CircuitState.OPEN, 4.5),
    "BulkheadFullError": lambda: _call(
        "db", RejectReason.WAIT_TIMEOUT, in_flight=2, queued=3, max_concurrent_calls=2,
        max_queue_size=5, waited=0.5, max_wait=0.5),
    "RateLimitExceededError": lambda: _call(0.25, n=3),
    "RetryExhaustedError": lambda: _call(3, GiveUpReason.STOPPED, {"status": 503}),
    "OperationCancelled": lambda: _call(DeadlineExceededError(10.0, 2.0),
                                        CancellationToken()),
    "DeadlineExceededError": lambda: _call(10.0, timeout=2.0),
}


# --------------------------------------------------------------------------- discovery


def _exception_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(patterns.__path__, prefix="patterns."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (inspect.isclass(value) and issubclass(value, BaseException)
                    and value.__module__ == module.__name__):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[name] for name in sorted(found)]


def _has_library_constructor(cls: type[BaseException]) -> bool:
    """Does the library define how this class is constructed (so it needs arguments)?"""
    return any(
        ("__init__" in vars(base) or "__new__" in vars(base))
        for base in cls.__mro__
        if base.__module__.startswith("patterns.") and base is not Rebuildable)


CLASSES = _exception_classes()
NEEDING_ARGUMENTS = [cls for cls in CLASSES if _has_library_constructor(cls)]


def _build(cls: type[BaseException]) -> BaseException:
    if cls.__name__ in ARGUMENTS:
        args, kwargs = ARGUMENTS[cls.__name__]()
        return cls(*args, **kwargs)
    assert not _has_library_constructor(cls), f"no ARGUMENTS entry for {cls.__name__}"
    return cls("something went wrong")


def _process_local(cls: type[BaseException]) -> tuple[str, ...]:
    return getattr(cls, "_process_local", ())


def test_discovery_finds_the_library_exceptions() -> None:
    names = {cls.__name__ for cls in NEEDING_ARGUMENTS}
    assert {"LeaseLostError", "StageError", "SagaRecoveryError", "OperationCancelled",
            "BulkheadFullError", "DeadlineExceededError"} <= names
    assert len(names) == len(NEEDING_ARGUMENTS), "two exception classes share a name"


def test_every_exception_with_arguments_has_an_entry() -> None:
    missing = sorted(cls.__name__ for cls in NEEDING_ARGUMENTS
                     if cls.__name__ not in ARGUMENTS)
    assert not missing, f"add representative arguments to ARGUMENTS for {missing}"
    stale = sorted(set(ARGUMENTS) - {cls.__name__ for cls in NEEDING_ARGUMENTS})
    assert not stale, f"ARGUMENTS names classes that are not found: {stale}"


# --------------------------------------------------------------------------- comparison


def _same(a: object, b: object) -> bool:
    """Equal, comparing exceptions (which compare by identity) by type, args and str."""
    if isinstance(a, BaseException) or isinstance(b, BaseException):
        return (type(a) is type(b) and str(a) == str(b)
                and _same(getattr(a, "args", None), getattr(b, "args", None))
                and _same(_attributes(a), _attributes(b)))
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return (type(a) is type(b) and len(a) == len(b)
                and all(_same(x, y) for x, y in zip(a, b, strict=True)))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a is b or a == b


def _attributes(e: object) -> dict[str, Any]:
    return dict(vars(e))


def _assert_same_exception(copy_: BaseException, original: BaseException,
                           *, dropped: tuple[str, ...] = ()) -> None:
    """``copy_`` is ``original`` rebuilt: type, str, repr, args and attributes; the
    attributes in ``dropped`` hold ``None`` instead (process-local, not pickled)."""
    assert type(copy_) is type(original)
    assert str(copy_) == str(original)
    expected = _attributes(original)
    for name in dropped:
        expected[name] = None
    assert _same(_attributes(copy_), expected), (_attributes(copy_), expected)
    if not dropped:
        assert repr(copy_) == repr(original)
        assert _same(copy_.args, original.args)
    assert _same(copy_.__cause__, original.__cause__)  # StageError rebuilds its cause


def _ids(cls: type[BaseException]) -> str:
    return cls.__name__


# --------------------------------------------------------------------------- rebuilding


@pytest.mark.parametrize("cls", CLASSES, ids=_ids)
def test_type_of_e_of_e_args_rebuilds_it(cls: type[BaseException]) -> None:
    # What SimPy does for every process that waits on a failed event.
    original = _build(cls)
    rebuilt = type(original)(*original.args)
    _assert_same_exception(rebuilt, original)
    # args hold every constructor argument, keyword ones and defaults included.
    if cls.__name__ in ARGUMENTS:
        args, kwargs = ARGUMENTS[cls.__name__]()
        assert len(original.args) >= len(args) + len(kwargs)


@pytest.mark.parametrize("cls", CLASSES, ids=_ids)
def test_repr_names_the_class_and_its_arguments(cls: type[BaseException]) -> None:
    original = _build(cls)
    args = original.args
    shown = f"({args[0]!r})" if len(args) == 1 else repr(args)
    assert repr(original) == f"{cls.__name__}{shown}"


# Protocols 0 to 2 are left out: for Python 2 they save a ConnectionError (the cause of
# CompensationFailedError here) as an OSError, with or without this library.
@pytest.mark.parametrize("protocol", range(3, pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("cls", CLASSES, ids=_ids)
def test_pickle_round_trip(cls: type[BaseException], protocol: int) -> None:
    original = _build(cls)
    original.add_note("a note travels with the error")
    restored = pickle.loads(pickle.dumps(original, protocol=protocol))
    _assert_same_exception(restored, original, dropped=_process_local(cls))
    assert restored.__notes__ == ["a note travels with the error"]


@pytest.mark.parametrize("cls", CLASSES, ids=_ids)
def test_copy_and_deepcopy(cls: type[BaseException]) -> None:
    original = _build(cls)
    original.add_note("noted")
    shallow = copy.copy(original)
    assert shallow is not original
    _assert_same_exception(shallow, original)
    for name, value in vars(original).items():  # a shallow copy shares the values
        assert vars(shallow)[name] is value
    deep = copy.deepcopy(original)
    _assert_same_exception(deep, original)
    for name in _process_local(cls):  # the very token, not a token nobody can cancel
        assert vars(deep)[name] is vars(original)[name]


def test_a_process_local_token_is_kept_by_copies_and_dropped_by_pickle() -> None:
    from patterns.resilience.timeout import OperationCancelled

    token = CancellationToken()
    token.cancel("shutdown")
    error = OperationCancelled("shutdown", token)
    assert type(error)(*error.args).token is token
    assert copy.copy(error).token is token
    assert copy.deepcopy(error).token is token
    restored = pickle.loads(pickle.dumps(error))
    assert (restored.reason, restored.token, str(restored)) == (
        "shutdown", None, "operation cancelled: shutdown")


def test_keyword_callers_still_work() -> None:
    from patterns.dataflow.pipeline import StageError
    from patterns.resilience.bulkhead import BulkheadFullError

    error = BulkheadFullError("db", RejectReason.QUEUE_FULL, in_flight=1, queued=0,
                              max_concurrent_calls=1, max_queue_size=0)
    assert error.args == ("db", RejectReason.QUEUE_FULL, 1, 0, 1, 0, 0.0, float("inf"))
    assert (error.in_flight, error.queued, error.waited) == (1, 0, 0.0)
    cause = ValueError("bad")
    stage = StageError("s", "s (1 of 1)", 5, cause, completed=[4])
    assert stage.args == ("s", "s (1 of 1)", 5, cause, [4])
    assert (stage.completed, stage.__cause__) == ((4,), cause)


# --------------------------------------------------------------------------- the base


def test_rebuildable_refuses_a_keyword_only_parameter() -> None:
    with pytest.raises(TypeError, match="keyword-only"):
        class KeywordOnlyError(Rebuildable, Exception):
            def __init__(self, name: str, *, size: int = 0) -> None:
                super().__init__(f"{name} {size}")


def test_rebuildable_refuses_a_process_local_parameter_without_a_default() -> None:
    with pytest.raises(TypeError, match="no default"):
        class NoDefaultError(Rebuildable, Exception):
            _process_local = ("token",)

            def __init__(self, token: object) -> None:
                super().__init__("lost")


class ShardLockLostError(LockLostError):
    """A subclass outside the library, with a constructor of its own."""

    def __init__(self, shard: int) -> None:
        super().__init__(f"shard-{shard}", "worker-1")
        self.shard = shard


def test_a_subclass_with_its_own_init_is_rebuilt_with_its_own_arguments() -> None:
    error = ShardLockLostError(3)
    assert error.args == (3,)
    rebuilt = pickle.loads(pickle.dumps(copy.copy(type(error)(*error.args))))
    assert (rebuilt.shard, rebuilt.name, str(rebuilt)) == (3, "shard-3", str(error))


def test_a_call_that_does_not_fit_the_signature_raises_the_usual_type_error() -> None:
    with pytest.raises(TypeError, match="owner"):
        LockLostError("orders")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword"):
        LockLostError("orders", "w", colour="red")  # type: ignore[call-arg]


# --------------------------------------------------------------------------- SimPy


def _raise_in_a_process_and_catch_in_two(error: BaseException) -> list[BaseException]:
    env = simpy.Environment()
    caught: list[BaseException] = []

    def failing() -> Iterator[simpy.Event]:
        yield env.timeout(1.0)
        raise error

    def waiting(process: simpy.Process) -> Iterator[simpy.Event]:
        try:
            yield process
        except BaseException as exc:  # OperationCancelled is a BaseException
            caught.append(exc)

    process = env.process(failing())
    env.process(waiting(process))
    env.process(waiting(process))
    env.run()
    return caught


@pytest.mark.parametrize("cls", CLASSES, ids=_ids)
def test_simpy_gives_every_waiting_process_an_equal_copy(cls: type[BaseException]) -> None:
    original = _build(cls)
    caught = _raise_in_a_process_and_catch_in_two(original)
    assert len(caught) == 2
    assert caught[0] is not caught[1]
    for exc in caught:
        assert type(exc) is cls
        assert str(exc) == str(original)
        assert _same(_attributes(exc), _attributes(original))
        assert exc.__cause__ is original  # SimPy chains its copy to the original


def test_a_lock_timeout_in_a_simpy_process_reaches_the_process_that_waits_on_it() -> None:
    # End to end: the library raises inside a simulated worker, and a supervisor that
    # waits on the worker catches the error with its fields (before the fix SimPy's
    # copy crashed the simulation with "missing 2 required positional arguments").
    env = simpy.Environment()
    store = InMemoryLockStore(clock=SimClock(env))
    holder = store.try_acquire("orders", 10.0)
    assert holder is not None
    seen: list[tuple[float, str, float, int]] = []

    def worker() -> Iterator[Any]:
        lease = yield from simpy_acquire(env, store, "orders", 1.0, timeout=1.0,
                                         retry_interval=0.25)
        return lease

    def supervisor(process: simpy.Process) -> Iterator[simpy.Event]:
        try:
            yield process
        except LockTimeoutError as error:
            seen.append((env.now, error.name, error.timeout, error.attempts))

    process = env.process(worker())
    env.process(supervisor(process))
    env.process(supervisor(process))
    env.run()
    assert seen == [(1.0, "orders", 1.0, 5)] * 2
