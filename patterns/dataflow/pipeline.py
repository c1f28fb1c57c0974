"""Pipelines of typed stages (guide section 1.1, 数据管道与变换模式).

A :class:`Stage` is one named step, built from a plain or an ``async`` function. Stages
compose with ``>>`` (or :meth:`Step.then`) into a :class:`Pipeline` that keeps the *flat*
list of its stages, however the expression was nested, so ``(a >> b) >> c`` and
``a >> (b >> c)`` are the same pipeline with the same stage names.

One pipeline, two runtimes: :meth:`Step.process` runs it synchronously and
:meth:`Step.aprocess` under asyncio (async stages are awaited, plain ones run inline).
Simulations run the same pipeline objects on a :class:`~patterns.clock.Clock` that reads
simulated time.

Building blocks beside the plain stage:

* :class:`BatchStage` applies a *chunk* stage (``list[I] -> list[O]``: one call per
  chunk, which is what amortises a per-call cost) to a list, ``size`` items at a time;
  :func:`for_each` lifts a per-item stage to a chunk stage. What happens when an item
  fails is a choice (``on_error``): ``"fail"`` raises a :class:`StageError` that still
  carries the outputs of the chunks already done (:attr:`StageError.completed`), and
  ``"collect"`` retries the failing chunk item by item and returns a
  :class:`BatchResult` with the outputs of every good item and one :class:`ItemFailure`
  per bad one.
* :class:`Batcher`, the sans-I/O form for streams: it decides when a batch is ready
  (``size`` items collected, or ``max_wait`` seconds since its first item) and never
  waits itself; :func:`iter_batches` (a blocking :class:`queue.Queue` driver) and
  :func:`abatches` (asyncio) do the waiting, and a SimPy model polls it at its deadline.
* :class:`Branch` routes each input into one of two sub-pipelines and tags the result
  :class:`Left` or :class:`Right`.
* :func:`logged` and :class:`StageTimer` wrap stages with logging and timing
  (count / total / max per stage, thread-safe, events to :class:`~patterns.events.Listeners`).

Errors say where they happened: a :class:`StageError` names the stage, its position path
(``"enrich (3 of 5)"``, or ``"route (2 of 3)/right/parse (1 of 2)"`` inside a branch), a
truncated repr of the stage's input, and chains the original exception as ``__cause__``.

What the guide's sketch does differently: ``SequentialPipeline`` labels its two halves
``"first"`` and ``"second"``, so in a nested pipeline an error cannot tell which stage
failed nor on what input; ``BatchStage`` chunks the list but still calls the inner stage
item by item (nothing is amortised), and one failing item throws away the results of
every chunk already processed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import queue
import reprlib
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, Protocol, TypeVar, cast, overload

from patterns._decorate import is_async_callable, is_awaitable_result
from patterns._errors import Rebuildable
from patterns._timers import MAX_WAIT
from patterns._validation import (
    require_clock,
    require_finite,
    require_finite_non_negative,
    require_int_at_least,
    require_non_negative,
)
from patterns.clock import MONOTONIC, Clock
from patterns.events import Listeners

__all__ = [
    "END",
    "BatchEmitted",
    "BatchResult",
    "BatchStage",
    "Batcher",
    "Branch",
    "ItemFailure",
    "Left",
    "Pipeline",
    "Right",
    "Stage",
    "StageError",
    "StageStats",
    "StageTimed",
    "StageTimer",
    "Step",
    "abatches",
    "for_each",
    "iter_batches",
    "logged",
    "stage",
]

I = TypeVar("I")  # noqa: E741 - the guide's own name for a stage's input type
O = TypeVar("O")  # noqa: E741
T = TypeVar("T")
L = TypeVar("L")
R = TypeVar("R")
IC = TypeVar("IC", contravariant=True)
OC = TypeVar("OC", covariant=True)
LC = TypeVar("LC", covariant=True)
RC = TypeVar("RC", covariant=True)

_REPR = reprlib.Repr()
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlist = 8
_REPR.maxtuple = 8
_REPR.maxdict = 6
_REPR.maxlevel = 3


def short_repr(value: object) -> str:
    """A repr of ``value`` cut to a readable length (for error messages and logs)."""
    try:
        return _REPR.repr(value)
    except Exception:  # a broken __repr__ must not hide the real error
        return f"<{type(value).__name__} object (repr failed)>"


# =========================================================================== errors


class StageError(Rebuildable, Exception):
    """A stage raised: which one, where in the pipeline, and on what input.

    Attributes
    ----------
    stage:
        The failing stage's name.
    path:
        Its position: ``"enrich (3 of 5)"`` at the top level; sub-pipelines add segments,
        ``"route (2 of 3)/right/parse (1 of 2)"``, and batches say which item,
        ``"lookup (2 of 3)/item 7 of 20"``.
    input:
        The value the stage was given (the object itself; :attr:`input_repr` is the
        truncated repr used in the message).
    completed:
        For a batch that failed with ``on_error="fail"``: the outputs of the items
        processed before the failure (in input order), so nothing done is silently lost.
        Empty otherwise.

    The original exception is chained as ``__cause__``.
    """

    def __init__(
        self,
        stage: str,
        path: str,
        input: object,
        cause: BaseException,
        completed: Sequence[object] = (),
    ) -> None:
        self.stage = stage
        self.path = path
        self.input = input
        self.input_repr = short_repr(input)
        self.completed: tuple[object, ...] = tuple(completed)
        super().__init__(
            f"stage {stage!r} failed at {path} on input {self.input_repr}: "
            f"{type(cause).__name__}: {cause}"
        )
        self.__cause__ = cause


# =========================================================================== steps


class Step(ABC, Generic[IC, OC]):
    """Anything that can sit in a pipeline: a stage, a batch, a branch, a pipeline.

    Compose with ``>>`` or :meth:`then`; run with :meth:`process` or :meth:`aprocess`.
    """

    __slots__ = ()

    name: str

    # ---- composition

    def then(self, other: Step[OC, T]) -> Pipeline[IC, T]:
        """``self >> other``: a pipeline that feeds this step's output to ``other``."""
        if not isinstance(other, Step):
            raise TypeError(
                f"other must be a Stage, a Pipeline or another Step, got {other!r}; "
                "wrap a function with Stage(fn) or @stage first"
            )
        return Pipeline((*_flatten(self), *_flatten(other)))

    def __rshift__(self, other: Step[OC, T]) -> Pipeline[IC, T]:
        return self.then(other)

    # ---- running

    @property
    @abstractmethod
    def is_async(self) -> bool:
        """Whether some stage inside is ``async`` (then only :meth:`aprocess` runs it)."""

    def process(self, value: IC) -> OC:
        """Run synchronously; a failure raises :class:`StageError`."""
        if self.is_async:
            raise TypeError(
                f"{self.name!r} contains async stage(s) "
                f"({', '.join(_async_names(self))}); await its aprocess() instead"
            )
        return cast(OC, _run_steps(_flatten(self), value, ""))

    async def aprocess(self, value: IC) -> OC:
        """Run under asyncio: async stages are awaited, plain ones run inline."""
        return cast(OC, await _arun_steps(_flatten(self), value, ""))

    @abstractmethod
    def _call(self, value: Any, where: str) -> Any:
        """Run this step on ``value``; ``where`` is its position path (for errors)."""

    @abstractmethod
    async def _acall(self, value: Any, where: str) -> Any:
        """The asyncio form of :meth:`_call`."""

    def _children(self) -> tuple[Step[Any, Any], ...]:
        return ()


def _flatten(step: Step[Any, Any]) -> tuple[Step[Any, Any], ...]:
    return step.stages if isinstance(step, Pipeline) else (step,)


def _async_names(step: Step[Any, Any]) -> list[str]:
    if isinstance(step, Stage):
        return [step.name] if step.is_coroutine else []
    own = [f"{step.name} (condition)"] if isinstance(step, Branch) and step.async_condition \
        else []
    return own + [name for child in step._children() for name in _async_names(child)]


def _run_steps(steps: Sequence[Step[Any, Any]], value: Any, prefix: str) -> Any:
    count = len(steps)
    for index, step in enumerate(steps, 1):
        where = f"{prefix}{step.name} ({index} of {count})"
        try:
            value = step._call(value, where)
        except StageError:
            raise
        except Exception as error:
            raise StageError(step.name, where, value, error) from error
    return value


async def _arun_steps(steps: Sequence[Step[Any, Any]], value: Any, prefix: str) -> Any:
    count = len(steps)
    for index, step in enumerate(steps, 1):
        where = f"{prefix}{step.name} ({index} of {count})"
        try:
            value = await step._acall(value, where)
        except StageError:
            raise
        except Exception as error:
            raise StageError(step.name, where, value, error) from error
    return value


def _refuse_awaitable(result: object, what: str, declare: str) -> None:
    """A sync run got ``result`` from ``what`` (a plain function that returned a
    coroutine, say): refuse it, closing a coroutine so Python does not warn that it was
    never awaited."""
    if is_awaitable_result(result):
        if inspect.iscoroutine(result):
            result.close()
        raise TypeError(f"{what} returned an awaitable in a sync run; use aprocess() or "
                        f"declare {declare} `async def`")


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {name!r} ({type(name).__name__})")
    if not name.strip():
        raise ValueError(f"name must not be blank, got {name!r}")
    return name


class Stage(Step[I, O]):
    """One named step built from a function (guide section 1.1, ``Stage<I, O>``).

    ``fn`` takes one input and returns one output; it may be ``async``. The name defaults
    to the function's ``__name__``. Use as ``Stage(fn, name="parse")`` or through the
    :func:`stage` decorator.
    """

    __slots__ = ("fn", "is_coroutine", "name")

    @overload
    def __init__(self, fn: Callable[[I], Awaitable[O]], *, name: str | None = None) -> None: ...

    @overload
    def __init__(self, fn: Callable[[I], O], *, name: str | None = None) -> None: ...

    def __init__(self, fn: Callable[[I], Any], *, name: str | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r} ({type(fn).__name__})")
        if name is None:
            name = getattr(fn, "__name__", None) or type(fn).__name__
            if name == "<lambda>":
                name = "lambda"
        self.name = _check_name(name)
        self.fn: Callable[[I], Any] = fn
        # coroutine functions, partials and bound methods of them, async __call__ objects
        self.is_coroutine = is_async_callable(fn)

    @property
    def is_async(self) -> bool:
        return self.is_coroutine

    def __call__(self, value: I) -> O:
        """Run the stage alone (sync), with the same error wrapping as in a pipeline."""
        return self.process(value)

    def _call(self, value: Any, where: str) -> Any:
        result = self.fn(value)
        _refuse_awaitable(result, f"stage {self.name!r}", "the function")
        return result

    async def _acall(self, value: Any, where: str) -> Any:
        result = self.fn(value)
        if inspect.isawaitable(result):
            result = await result
        return result

    def __repr__(self) -> str:
        kind = "async " if self.is_coroutine else ""
        return f"Stage({kind}{self.name!r})"


class _StageDecorator(Protocol):
    """What ``stage(name=...)`` returns: turns a plain or an async function into a Stage."""

    @overload
    def __call__(self, fn: Callable[[I], Awaitable[O]], /) -> Stage[I, O]: ...

    @overload
    def __call__(self, fn: Callable[[I], O], /) -> Stage[I, O]: ...


@overload
def stage(fn: Callable[[I], Awaitable[O]], /) -> Stage[I, O]: ...


@overload
def stage(fn: Callable[[I], O], /) -> Stage[I, O]: ...


@overload
def stage(*, name: str) -> _StageDecorator: ...


def stage(fn: Callable[[Any], Any] | None = None, /, *, name: str | None = None) -> Any:
    """Decorator: turn a function into a :class:`Stage` (``@stage`` or ``@stage(name=...)``)."""
    if fn is None:
        def decorate(inner: Callable[[Any], Any]) -> Stage[Any, Any]:
            return Stage(inner, name=name)

        return decorate
    return Stage(fn, name=name)


class Pipeline(Step[I, O]):
    """Steps run one after the other (guide section 1.1, ``Pipeline`` / ``SequentialPipeline``).

    Built with ``>>``; :attr:`stages` is flat (nested pipelines are spliced in), so stage
    names and positions do not depend on how the expression was bracketed.
    """

    __slots__ = ("name", "stages")

    def __init__(self, stages: Sequence[Step[Any, Any]], *, name: str | None = None) -> None:
        flat: list[Step[Any, Any]] = []
        for index, step in enumerate(stages):
            if not isinstance(step, Step):
                raise TypeError(f"stages[{index}] must be a Step (a Stage, a Pipeline, ...), "
                                f"got {step!r}")
            flat.extend(_flatten(step))
        if not flat:
            raise ValueError("stages must not be empty, got []")
        self.stages: tuple[Step[Any, Any], ...] = tuple(flat)
        self.name = _check_name(name) if name is not None else " >> ".join(self.names)

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the top-level stages, in order."""
        return tuple(step.name for step in self.stages)

    @property
    def is_async(self) -> bool:
        return any(step.is_async for step in self.stages)

    def _children(self) -> tuple[Step[Any, Any], ...]:
        return self.stages

    def _call(self, value: Any, where: str) -> Any:
        return _run_steps(self.stages, value, f"{where}/")

    async def _acall(self, value: Any, where: str) -> Any:
        return await _arun_steps(self.stages, value, f"{where}/")

    def describe(self) -> str:
        """The pipeline as an indented tree of stage names (branches and batches nested)."""
        return "\n".join(_describe(self, 0))

    def __len__(self) -> int:
        return len(self.stages)

    def __iter__(self) -> Iterator[Step[Any, Any]]:
        return iter(self.stages)

    def __repr__(self) -> str:
        return f"Pipeline({' >> '.join(map(repr, self.stages))})"


def _describe(step: Step[Any, Any], depth: int) -> Iterator[str]:
    pad = "  " * depth
    if isinstance(step, Pipeline):
        for index, child in enumerate(step.stages, 1):
            yield f"{pad}{index}. {child.name}" + _kind(child)
            if not isinstance(child, Stage):
                yield from _describe_inside(child, depth + 1)
        return
    yield f"{pad}{step.name}{_kind(step)}"


def _describe_inside(step: Step[Any, Any], depth: int) -> Iterator[str]:
    pad = "  " * depth
    if isinstance(step, Branch):
        for label, sub in (("left", step.left), ("right", step.right)):
            yield f"{pad}{label}:"
            yield from _describe(sub, depth + 1)
    elif isinstance(step, BatchStage | _ForEach):
        yield from _describe(step.inner, depth)
    elif isinstance(step, _Wrapped):
        yield from _describe_inside(step.inner, depth)


def _kind(step: Step[Any, Any]) -> str:
    if isinstance(step, _Wrapped):
        return _kind(step.inner) + f" [{step.label}]"
    if isinstance(step, Branch):
        return " [branch]"
    if isinstance(step, BatchStage):
        return f" [batches of {step.size}, on_error={step.on_error}]"
    if isinstance(step, Stage) and step.is_coroutine:
        return " [async]"
    return ""


def _as_pipeline(name: str, step: object) -> Pipeline[Any, Any]:
    if not isinstance(step, Step):
        raise TypeError(f"{name} must be a Stage or a Pipeline, got {step!r}")
    return step if isinstance(step, Pipeline) else Pipeline((step,))


# =========================================================================== branches


@dataclass(frozen=True, slots=True)
class Left(Generic[LC]):
    """The result of a :class:`Branch` whose condition held: the left pipeline ran."""

    value: LC


@dataclass(frozen=True, slots=True)
class Right(Generic[RC]):
    """The result of a :class:`Branch` whose condition did not hold: the right one ran."""

    value: RC


class Branch(Step[I, Left[L] | Right[R]]):
    """Route each input to one of two sub-pipelines (guide section 1.1, ``ConditionalPipeline``).

    ``condition(value)`` true runs ``left`` and returns ``Left(output)``, false runs
    ``right`` and returns ``Right(output)``. Errors inside name the branch:
    ``"route (2 of 3)/right/parse (1 of 2)"``; an error in the condition itself is the
    branch stage's own. An ``async`` condition makes the branch async: :meth:`aprocess`
    awaits it, :meth:`process` refuses it (a coroutine is always true).
    """

    __slots__ = ("async_condition", "condition", "left", "name", "right")

    def __init__(
        self,
        condition: Callable[[I], bool] | Callable[[I], Awaitable[bool]],
        left: Step[I, L],
        right: Step[I, R],
        *,
        name: str = "branch",
    ) -> None:
        if not callable(condition):
            raise TypeError(f"condition must be callable, got {condition!r}")
        self.condition = condition
        #: an ``async`` condition is awaited by :meth:`aprocess`; :meth:`process` refuses it
        self.async_condition = is_async_callable(condition)
        self.left: Pipeline[I, L] = _as_pipeline("left", left)
        self.right: Pipeline[I, R] = _as_pipeline("right", right)
        self.name = _check_name(name)

    @property
    def is_async(self) -> bool:
        return self.async_condition or self.left.is_async or self.right.is_async

    def _children(self) -> tuple[Step[Any, Any], ...]:
        return (self.left, self.right)

    def _call(self, value: Any, where: str) -> Any:
        decision: Any = self.condition(value)
        _refuse_awaitable(decision, f"the condition of branch {self.name!r}", "it")
        if decision:
            return Left(_run_steps(self.left.stages, value, f"{where}/left/"))
        return Right(_run_steps(self.right.stages, value, f"{where}/right/"))

    async def _acall(self, value: Any, where: str) -> Any:
        decision: Any = self.condition(value)
        if inspect.isawaitable(decision):
            decision = await decision
        if decision:
            return Left(await _arun_steps(self.left.stages, value, f"{where}/left/"))
        return Right(await _arun_steps(self.right.stages, value, f"{where}/right/"))

    def __repr__(self) -> str:
        return f"Branch({self.name!r}, left={self.left!r}, right={self.right!r})"


# =========================================================================== batches


@dataclass(frozen=True, slots=True)
class ItemFailure(Generic[T]):
    """One item of a batch that failed: its position in the input, the item, the error."""

    index: int
    item: T
    error: StageError


@dataclass(frozen=True, slots=True)
class BatchResult(Generic[I, O]):
    """What a ``BatchStage(..., on_error="collect")`` returns.

    ``outputs`` holds ``(index, output)`` for every item that succeeded, in input order;
    ``failures`` one :class:`ItemFailure` per item that failed.
    """

    outputs: tuple[tuple[int, O], ...]
    failures: tuple[ItemFailure[I], ...]

    @property
    def values(self) -> list[O]:
        """The outputs of the good items, in input order."""
        return [output for _, output in self.outputs]

    @property
    def ok(self) -> bool:
        """Whether every item succeeded."""
        return not self.failures


OnError = Literal["fail", "collect"]


def for_each(step: Step[I, O], *, name: str | None = None) -> Step[list[I], list[O]]:
    """Lift a per-item step to a chunk step that runs it on each item of a list in turn.

    (This is what the guide's ``BatchStage`` does inside every chunk: correct, but it
    amortises nothing; prefer a chunk function that handles the whole list in one call.)
    Errors name the item: ``".../each parse (1 of 1)/item 2 of 8/parse (1 of 1)"``.
    """
    if not isinstance(step, Step):
        raise TypeError(f"step must be a Stage or a Pipeline, got {step!r}")
    return _ForEach(step, name)


class _ForEach(Step[list[I], list[O]]):
    __slots__ = ("inner", "name")

    def __init__(self, inner: Step[I, O], name: str | None) -> None:
        self.inner: Pipeline[I, O] = _as_pipeline("step", inner)
        self.name = _check_name(name) if name is not None else f"each {self.inner.name}"

    @property
    def is_async(self) -> bool:
        return self.inner.is_async

    def _children(self) -> tuple[Step[Any, Any], ...]:
        return (self.inner,)

    def _call(self, value: Any, where: str) -> Any:
        total = len(value)
        return [_run_steps(self.inner.stages, item, f"{where}/item {index} of {total}/")
                for index, item in enumerate(value)]

    async def _acall(self, value: Any, where: str) -> Any:
        total = len(value)
        return [await _arun_steps(self.inner.stages, item, f"{where}/item {index} of {total}/")
                for index, item in enumerate(value)]

    def __repr__(self) -> str:
        return f"for_each({self.inner!r})"


class BatchStage(Step[Sequence[I], T]):
    """Apply a chunk step to a list, ``size`` items per call (guide section 1.1, ``BatchStage``).

    ``inner`` takes a list of up to ``size`` items and returns one output per item, in
    order: one call per chunk, so a per-call cost (a round trip, a model load, a
    transaction) is paid once per chunk instead of once per item. An inner step that
    returns the wrong number of outputs is an error.

    ``on_error`` decides what a failure does to the batch:

    * ``"fail"`` (default): the whole call raises a :class:`StageError` whose path names
      the failing chunk (``"lookup (2 of 3)/chunk 2 of 5 (items 8-15)"``) and whose
      :attr:`~StageError.completed` holds the outputs of the chunks done before it; the
      output type is ``list[O]``.
    * ``"collect"``: a failing chunk is retried one item at a time, so that only the bad
      items fail; the result is a :class:`BatchResult` with every good output and one
      :class:`ItemFailure` per bad item. Only use it when re-running the items of a failed
      chunk is safe (the inner step is idempotent).
    """

    __slots__ = ("inner", "name", "on_error", "size")

    @overload
    def __init__(self: BatchStage[I, list[O]], inner: Step[list[I], list[O]], size: int, *,
                 on_error: Literal["fail"] = "fail", name: str | None = None) -> None: ...

    @overload
    def __init__(self: BatchStage[I, BatchResult[I, O]], inner: Step[list[I], list[O]],
                 size: int, *, on_error: Literal["collect"], name: str | None = None) -> None: ...

    def __init__(self, inner: Step[list[I], list[O]], size: int, *,
                 on_error: OnError = "fail", name: str | None = None) -> None:
        if not isinstance(inner, Step):
            raise TypeError(f"inner must be a Stage or a Pipeline, got {inner!r}; "
                            "wrap a function with Stage(fn) first")
        self.inner: Pipeline[list[I], list[O]] = _as_pipeline("inner", inner)
        self.size = require_int_at_least("size", size, 1)
        if on_error not in ("fail", "collect"):
            raise ValueError(f"on_error must be 'fail' or 'collect', got {on_error!r}")
        self.on_error: OnError = on_error
        self.name = _check_name(name) if name is not None else f"batch {self.inner.name}"

    @property
    def is_async(self) -> bool:
        return self.inner.is_async

    def _children(self) -> tuple[Step[Any, Any], ...]:
        return (self.inner,)

    def _chunks(self, items: Sequence[I]) -> Iterator[tuple[int, list[I], str]]:
        if isinstance(items, str | bytes) or not isinstance(items, Sequence):
            raise TypeError(f"a batch stage needs a list of items, got {short_repr(items)}")
        total = len(items)
        chunks = max(1, math.ceil(total / self.size))
        for number, start in enumerate(range(0, total, self.size), 1):
            chunk = list(items[start:start + self.size])
            yield start, chunk, (f"chunk {number} of {chunks} "
                                 f"(items {start}-{start + len(chunk) - 1})")

    def _checked(self, outputs: object, chunk: list[Any]) -> list[Any]:
        if not isinstance(outputs, Sequence) or len(outputs) != len(chunk):
            size = len(outputs) if isinstance(outputs, Sequence) else "no list"
            raise ValueError(f"the inner step must return one output per item: "
                             f"{len(chunk)} item(s) in, {size} out")
        return list(outputs)

    def _call(self, value: Any, where: str) -> Any:
        done: list[Any] = []
        kept: list[tuple[int, Any]] = []
        failures: list[ItemFailure[Any]] = []
        for start, chunk, label in self._chunks(value):
            prefix = f"{where}/{label}/"
            try:
                outputs = self._checked(_run_steps(self.inner.stages, chunk, prefix), chunk)
            except Exception as error:
                if self.on_error == "fail":
                    failure = self._failed(where, label, chunk, error, done)
                    raise failure from failure.__cause__
                for offset, item in enumerate(chunk):
                    index = start + offset
                    try:
                        one = self._checked(
                            _run_steps(self.inner.stages, [item], f"{where}/item {index}/"),
                            [item])
                    except Exception as item_error:
                        failures.append(ItemFailure(index, item, self._item_error(
                            where, index, item, item_error)))
                    else:
                        kept.append((index, one[0]))
                continue
            done.extend(outputs)
            kept.extend(enumerate(outputs, start))
        if self.on_error == "fail":
            return done
        return BatchResult(tuple(kept), tuple(failures))

    async def _acall(self, value: Any, where: str) -> Any:
        done: list[Any] = []
        kept: list[tuple[int, Any]] = []
        failures: list[ItemFailure[Any]] = []
        for start, chunk, label in self._chunks(value):
            prefix = f"{where}/{label}/"
            try:
                outputs = self._checked(
                    await _arun_steps(self.inner.stages, chunk, prefix), chunk)
            except Exception as error:
                if self.on_error == "fail":
                    failure = self._failed(where, label, chunk, error, done)
                    raise failure from failure.__cause__
                for offset, item in enumerate(chunk):
                    index = start + offset
                    try:
                        one = self._checked(await _arun_steps(
                            self.inner.stages, [item], f"{where}/item {index}/"), [item])
                    except Exception as item_error:
                        failures.append(ItemFailure(index, item, self._item_error(
                            where, index, item, item_error)))
                    else:
                        kept.append((index, one[0]))
                continue
            done.extend(outputs)
            kept.extend(enumerate(outputs, start))
        if self.on_error == "fail":
            return done
        return BatchResult(tuple(kept), tuple(failures))

    def _failed(self, where: str, label: str, chunk: list[Any], error: Exception,
                done: list[Any]) -> StageError:
        if isinstance(error, StageError):
            cause = error.__cause__ if isinstance(error.__cause__, Exception) else error
            return StageError(error.stage, error.path, error.input, cause, completed=done)
        return StageError(self.name, f"{where}/{label}", chunk, error, completed=done)

    def _item_error(self, where: str, index: int, item: I, error: Exception) -> StageError:
        if isinstance(error, StageError):
            return error
        return StageError(self.name, f"{where}/item {index}", [item], error)

    def __repr__(self) -> str:
        return (f"BatchStage({self.inner!r}, size={self.size}, "
                f"on_error={self.on_error!r}, name={self.name!r})")


# =========================================================================== Batcher


@dataclass(frozen=True, slots=True)
class BatchEmitted:
    """A :class:`Batcher` released a batch at ``time``.

    ``reason`` is ``"full"`` (``size`` items), ``"timeout"`` (``max_wait`` passed since
    its first item) or ``"flush"`` (the stream ended); ``oldest_wait`` is how long its
    first item waited, in seconds.
    """

    time: float
    size: int
    reason: str
    oldest_wait: float


class Batcher(Generic[T]):
    """Group a stream of items into batches: the decision only, no waiting (sans-I/O).

    Guide section 1.1: the streaming counterpart of ``BatchStage``, which only chunks a
    list that is already complete.

    A batch is released when ``size`` items are collected (by :meth:`add`), or when
    ``max_wait`` seconds have passed since its first item (by :meth:`poll`, or by the
    next :meth:`add` if nobody polled in time). :meth:`deadline` says when to poll next;
    drivers wait until then (:func:`iter_batches`, :func:`abatches`, a SimPy process).
    :meth:`flush` releases what is left at the end of a stream.

    ``max_wait=math.inf`` batches by size only; ``max_wait=0`` releases every item at
    once. Thread-safe; events (:class:`BatchEmitted`) go to :attr:`listeners`, outside
    the lock.
    """

    __slots__ = ("_first_at", "_lock", "_pending", "clock", "listeners", "max_wait", "size")

    def __init__(self, size: int, max_wait: float = math.inf, *, clock: Clock = MONOTONIC,
                 listeners: Listeners[BatchEmitted] | None = None) -> None:
        self.size = require_int_at_least("size", size, 1)
        self.max_wait = require_non_negative("max_wait", max_wait)
        require_clock("clock", clock)
        self.clock = clock
        self.listeners: Listeners[BatchEmitted] = _check_listeners(listeners)
        self._lock = threading.Lock()
        self._pending: list[T] = []
        self._first_at = math.nan

    def add(self, item: T) -> list[T] | None:
        """Add ``item``; return the batch it completes (full or overdue), else ``None``."""
        now = self.clock.now()
        with self._lock:
            if not self._pending:
                self._first_at = now
            self._pending.append(item)
            if len(self._pending) >= self.size:
                batch, event = self._release(now, "full")
            elif now >= self._first_at + self.max_wait:
                batch, event = self._release(now, "timeout")
            else:
                return None
        self._emit(event)
        return batch

    def poll(self) -> list[T] | None:
        """Return the pending batch if ``max_wait`` has passed since its first item."""
        now = self.clock.now()
        with self._lock:
            if not self._pending or now < self._first_at + self.max_wait:
                return None
            batch, event = self._release(now, "timeout")
        self._emit(event)
        return batch

    def flush(self) -> list[T] | None:
        """Release whatever is pending now (end of stream); ``None`` if nothing is."""
        now = self.clock.now()
        with self._lock:
            if not self._pending:
                return None
            batch, event = self._release(now, "flush")
        self._emit(event)
        return batch

    def deadline(self) -> float | None:
        """When the pending batch is due (clock time), or ``None`` if nothing is pending."""
        with self._lock:
            return self._first_at + self.max_wait if self._pending else None

    def time_until_due(self) -> float | None:
        """Seconds until :meth:`poll` will release the pending batch (>= 0), or ``None``."""
        due = self.deadline()
        return None if due is None else max(0.0, due - self.clock.now())

    def __len__(self) -> int:
        """How many items are pending."""
        return len(self._pending)

    def _release(self, now: float, reason: str) -> tuple[list[T], BatchEmitted]:
        batch, self._pending = self._pending, []
        return batch, BatchEmitted(now, len(batch), reason, now - self._first_at)

    def _emit(self, event: BatchEmitted) -> None:
        if self.listeners.snapshot:
            self.listeners.emit(event)

    def __repr__(self) -> str:
        return (f"Batcher(size={self.size}, max_wait={self.max_wait!r}, "
                f"pending={len(self._pending)})")


def _check_listeners(listeners: Listeners[Any] | None) -> Listeners[Any]:
    if listeners is None:
        return Listeners()
    if not isinstance(listeners, Listeners):
        raise TypeError(f"listeners must be a Listeners registry, got {listeners!r}")
    return listeners


class _End:
    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END: Final[Any] = _End()
"""Put this on the queue given to :func:`iter_batches` to end the stream."""




def iter_batches(source: queue.Queue[Any], batcher: Batcher[T]) -> Iterator[list[T]]:
    """Blocking driver: read items from ``source`` and yield batches as ``batcher`` decides.

    Blocks on ``source.get`` at most until the pending batch is due (a wait longer than
    ``threading.TIMEOUT_MAX``, e.g. ``max_wait=1e10``, is taken in chunks). Put
    :data:`END` on the queue to flush the last batch and stop.
    """
    if not callable(getattr(source, "get", None)):
        raise TypeError(f"source must be a queue (with a get() method), got {source!r}")
    if not isinstance(batcher, Batcher):
        raise TypeError(f"batcher must be a Batcher, got {batcher!r}")
    return _iter_batches(source, batcher)


def _iter_batches(source: queue.Queue[Any], batcher: Batcher[T]) -> Iterator[list[T]]:
    while True:
        wait = batcher.time_until_due()
        try:
            # Queue.get(timeout=) overflows above TIMEOUT_MAX: wait in chunks, then poll
            item = source.get() if wait is None else source.get(
                timeout=min(wait, MAX_WAIT))
        except queue.Empty:
            batch = batcher.poll()
        else:
            if item is END:
                last = batcher.flush()
                if last is not None:
                    yield last
                return
            batch = batcher.add(item)
        if batch is not None:
            yield batch


def abatches(source: AsyncIterable[T], batcher: Batcher[T]) -> AsyncIterator[list[T]]:
    """Asyncio driver: an async iterator of the batches of ``source``.

    Waits for the next item at most until the pending batch is due (the pending read
    is kept, not cancelled, so no item is lost); flushes at the end of ``source``.
    """
    if not isinstance(source, AsyncIterable):
        raise TypeError(f"source must be an async iterable, got {source!r}")
    if not isinstance(batcher, Batcher):
        raise TypeError(f"batcher must be a Batcher, got {batcher!r}")
    return _abatches(source, batcher)


async def _abatches(source: AsyncIterable[T], batcher: Batcher[T]) -> AsyncIterator[list[T]]:
    iterator = source.__aiter__()
    next_item: asyncio.Future[T] | None = None
    try:
        while True:
            if next_item is None:
                next_item = asyncio.ensure_future(iterator.__anext__())
            wait = batcher.time_until_due()
            done, _ = await asyncio.wait({next_item}, timeout=wait)
            if not done:
                batch = batcher.poll()
            else:
                try:
                    item = next_item.result()
                except StopAsyncIteration:
                    next_item = None
                    last = batcher.flush()
                    if last is not None:
                        yield last
                    return
                next_item = None
                batch = batcher.add(item)
            if batch is not None:
                yield batch
    finally:
        if next_item is not None and not next_item.done():
            next_item.cancel()


# =========================================================================== decorators


class _Wrapped(Step[I, O]):
    """A step with hooks around it; keeps the inner step's name and position."""

    __slots__ = ("inner", "label", "name")

    def __init__(self, inner: Step[I, O], label: str) -> None:
        self.inner = inner
        self.label = label
        self.name = inner.name

    @property
    def is_async(self) -> bool:
        return self.inner.is_async

    def _children(self) -> tuple[Step[Any, Any], ...]:
        return (self.inner,)

    def _before(self, value: Any) -> Any:
        return None

    def _after(self, token: Any, value: Any, output: Any, error: Exception | None) -> None:
        return None

    def _call(self, value: Any, where: str) -> Any:
        token = self._before(value)
        try:
            output = self.inner._call(value, where)
        except Exception as error:
            self._after(token, value, None, error)
            raise
        self._after(token, value, output, None)
        return output

    async def _acall(self, value: Any, where: str) -> Any:
        token = self._before(value)
        try:
            output = await self.inner._acall(value, where)
        except Exception as error:
            self._after(token, value, None, error)
            raise
        self._after(token, value, output, None)
        return output

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


def _as_step(name: str, step: object) -> Step[Any, Any]:
    if isinstance(step, Step):
        return step
    if callable(step):
        return Stage(step)
    raise TypeError(f"{name} must be a Stage, a Pipeline or a function, got {step!r}")


class _Logged(_Wrapped[I, O]):
    __slots__ = ("error_level", "level", "logger")

    def __init__(self, inner: Step[I, O], logger: logging.Logger, level: int,
                 error_level: int) -> None:
        super().__init__(inner, "logged")
        self.logger, self.level, self.error_level = logger, level, error_level

    def _before(self, value: Any) -> Any:
        if self.logger.isEnabledFor(self.level):
            self.logger.log(self.level, "stage %s input: %s", self.name, short_repr(value))

    def _after(self, token: Any, value: Any, output: Any, error: Exception | None) -> None:
        if error is None:
            if self.logger.isEnabledFor(self.level):
                self.logger.log(self.level, "stage %s output: %s", self.name, short_repr(output))
        elif not isinstance(error, StageError):  # a nested stage already logged it
            self.logger.log(self.error_level, "stage %s failed on %s: %s: %s", self.name,
                            short_repr(value), type(error).__name__, error)


def logged(step: Step[I, O] | Callable[[I], O], *, logger: logging.Logger | None = None,
           level: int = logging.DEBUG, error_level: int = logging.ERROR) -> Step[I, O]:
    """Log a step's input and output at ``level`` and its failures at ``error_level``
    (guide section 1.1, ``LoggingStage``). Reprs are truncated. The logger defaults to
    ``patterns.dataflow.pipeline``."""
    inner = _as_step("step", step)
    if logger is None:
        logger = logging.getLogger(__name__)
    elif not isinstance(logger, logging.Logger):
        raise TypeError(f"logger must be a logging.Logger, got {logger!r}")
    for name, value in (("level", level), ("error_level", error_level)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be a logging level (an int), got {value!r}")
    return _Logged(inner, logger, level, error_level)


@dataclass(frozen=True, slots=True)
class StageTimed:
    """A timed stage finished at ``time`` after ``duration`` seconds (``ok``: no error)."""

    time: float
    stage: str
    duration: float
    ok: bool


@dataclass(frozen=True, slots=True)
class StageStats:
    """Per-stage timings so far: runs, failures, total and longest duration (seconds)."""

    count: int
    failures: int
    total: float
    max: float

    @property
    def mean(self) -> float:
        """Mean duration per run (NaN before the first run)."""
        return self.total / self.count if self.count else math.nan


class StageTimer:
    """Time stages on a clock: count, failures, total and max duration per stage name.

    Guide section 1.1: a cross-cutting decorator like the guide's ``LoggingStage``.

    ``timer(step)`` (or ``@timer`` over a function or a stage) returns the step timed;
    :meth:`instrument` times every top-level stage of a pipeline. :meth:`stats` reads the
    figures; :attr:`listeners` receive a :class:`StageTimed` per run. Thread-safe: one
    timer may time stages running in many threads at once (the lock is held only to
    update the figures, never while a stage runs).
    """

    __slots__ = ("_lock", "_stats", "clock", "listeners")

    def __init__(self, *, clock: Clock = MONOTONIC,
                 listeners: Listeners[StageTimed] | None = None) -> None:
        require_clock("clock", clock)
        self.clock = clock
        self.listeners: Listeners[StageTimed] = _check_listeners(listeners)
        self._lock = threading.Lock()
        self._stats: dict[str, list[float]] = {}

    def __call__(self, step: Step[I, O] | Callable[[I], O]) -> Step[I, O]:
        return _Timed(_as_step("step", step), self)

    def instrument(self, pipeline: Step[I, O]) -> Pipeline[I, O]:
        """The same pipeline with each of its top-level stages timed."""
        if not isinstance(pipeline, Step):
            raise TypeError(f"pipeline must be a Pipeline or a Stage, got {pipeline!r}")
        return Pipeline([_Timed(step, self) for step in _flatten(pipeline)])

    def record(self, stage: str, duration: float, ok: bool, *, time: float | None = None) -> None:
        """Add one run of ``stage`` (used by the timed steps; public for other drivers).

        ``duration`` is a finite number of seconds >= 0, ``ok`` a bool, ``time`` (the
        event's clock time, default now) a finite number.
        """
        if not isinstance(stage, str) or not stage:
            raise (ValueError if isinstance(stage, str) else TypeError)(
                f"stage must be a non-empty str, got {stage!r}")
        require_finite_non_negative("duration", duration)
        if not isinstance(ok, bool):
            raise TypeError(f"ok must be a bool, got {ok!r} ({type(ok).__name__})")
        if time is not None:
            require_finite("time", time)
        with self._lock:
            figures = self._stats.get(stage)
            if figures is None:
                figures = self._stats[stage] = [0, 0, 0.0, 0.0]
            figures[0] += 1
            figures[1] += 0 if ok else 1
            figures[2] += duration
            figures[3] = max(figures[3], duration)
        if self.listeners.snapshot:
            when = self.clock.now() if time is None else time
            self.listeners.emit(StageTimed(when, stage, duration, ok))

    def stats(self) -> dict[str, StageStats]:
        """A snapshot of the figures, by stage name (in order of first run)."""
        with self._lock:
            return {name: StageStats(int(c), int(f), t, m)
                    for name, (c, f, t, m) in self._stats.items()}

    def reset(self) -> None:
        """Forget every figure."""
        with self._lock:
            self._stats.clear()

    def __repr__(self) -> str:
        return f"StageTimer({len(self._stats)} stage(s))"


class _Timed(_Wrapped[I, O]):
    __slots__ = ("timer",)

    def __init__(self, inner: Step[I, O], timer: StageTimer) -> None:
        super().__init__(inner, "timed")
        self.timer = timer

    def _before(self, value: Any) -> Any:
        return self.timer.clock.now()

    def _after(self, token: Any, value: Any, output: Any, error: Exception | None) -> None:
        now = self.timer.clock.now()
        self.timer.record(self.name, now - token, error is None, time=now)
