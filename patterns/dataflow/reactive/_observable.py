"""Observables, observers, subjects and operators (guide section 1.2, 反应式数据流).

The observer contract, as in ReactiveX: a stream delivers ``on_next`` any number of
times, then at most one of ``on_error`` / ``on_complete``, and nothing after that. The
library enforces it where it can be broken: every subscriber's observer, and everything
a producer not of the library's own emits into (a user's subscribe function, a
:class:`Subject`, :func:`merge` of concurrent sources, the scheduler-driven operators),
is wrapped in a *safe observer* (:class:`Sink`) that

* serializes the calls (a producer on several threads never calls one observer from
  two threads at once): a thread that finds another one delivering queues its signal,
  and the delivering thread drains the queue before it lets go (the "emitter loop" of
  RxJava's serialized observer). **No lock is held while an observer runs**, so an
  observer may subscribe, dispose or emit from inside its own callback;
* drops everything after the first ``on_error`` / ``on_complete``, and after disposal;
* turns an exception raised by an observer's ``on_next`` into the end of the stream:
  the subscription upstream is disposed and the same observer's ``on_error`` receives
  the exception. (An exception raised by ``on_error`` or ``on_complete``, or an error
  reaching an observer that has no ``on_error``, is logged on the
  ``patterns.dataflow.reactive`` logger; the producer never sees it.)

:meth:`Subscription.dispose` is idempotent and stops delivery at once: from inside a
callback the current call is the last one; from another thread, ``dispose()`` waits for
a call in progress to return, so that **no call starts or runs after it returns**.
(So do not dispose a subscription from a thread that the observer itself is waiting
for.)

Between the library's own sources and operators (``from_iterable``, ``of``, ``map``,
``filter``, ``scan``, ``take``, ``buffer_with_count``, ...) values pass without a lock per
stage: those obey the contract by construction given a conforming upstream, so each
stage is a plain relay that only keeps "an exception in the operator's function ends the
stream", "nothing after a terminal signal or disposal" and "disposal goes upstream". The
subscriber of such a chain gets a lighter safe observer (its calls already come one at
a time) that still waits, in ``dispose()`` from another thread, for a call in progress.
An operator's *function* (``map``'s ``fn``) may still finish a call that started before
the disposal; its result is dropped.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final, Generic, Protocol, TypeVar, cast, overload, runtime_checkable

from patterns._decorate import is_async_callable
from patterns._validation import (
    require_finite_non_negative,
    require_int_at_least,
    require_positive,
)
from patterns.dataflow.reactive._schedulers import Cancellable, Scheduler

__all__ = [
    "Disposable",
    "Observable",
    "Observer",
    "Sink",
    "Subject",
    "Subscription",
    "merge",
]

T = TypeVar("T")
U = TypeVar("U")
A = TypeVar("A")
T_contra = TypeVar("T_contra", contravariant=True)

_log = logging.getLogger("patterns.dataflow.reactive")
_get_ident: Final = threading.get_ident

_NEXT: Final = 0
_ERROR: Final = 1
_COMPLETE: Final = 2


@runtime_checkable
class Observer(Protocol[T_contra]):
    """Receives a stream: ``on_next`` for each value, then ``on_error`` or ``on_complete``.

    The guide's ``Observer<T>`` trait (``on_next``, ``on_error``, ``on_complete``).
    """

    def on_next(self, value: T_contra) -> None: ...

    def on_error(self, error: BaseException) -> None: ...

    def on_complete(self) -> None: ...


@runtime_checkable
class Disposable(Protocol):
    """Something that releases a resource (stops a producer, cancels a timer)."""

    def dispose(self) -> None: ...


class _Downstream(Protocol[T_contra]):
    """What a built-in operator emits into: a :class:`Sink` or a :class:`_Relay`."""

    _stopped: bool  # what ``closed`` tells, read without a property call in hot loops

    @property
    def closed(self) -> bool: ...

    def on_next(self, value: T_contra) -> None: ...

    def on_error(self, error: BaseException) -> None: ...

    def on_complete(self) -> None: ...

    def dispose(self) -> None: ...

    def _set_upstream(self, upstream: Disposable | None) -> None: ...


def _ignore(value: object) -> None:
    pass


def _report(error: BaseException) -> None:
    _log.error("error with nobody to receive it", exc_info=error)


class _Callbacks(Generic[T_contra]):
    """An observer made of up to three callables."""

    __slots__ = ("_complete", "_error", "_next")

    def __init__(
        self,
        on_next: Callable[[T_contra], object] | None = None,
        on_error: Callable[[BaseException], object] | None = None,
        on_complete: Callable[[], object] | None = None,
    ) -> None:
        for name, fn in (("on_next", on_next), ("on_error", on_error),
                         ("on_complete", on_complete)):
            if fn is not None:
                _check_callable(name, fn)
        self._next = on_next
        self._error = on_error
        self._complete = on_complete

    def on_next(self, value: T_contra) -> None:
        if self._next is not None:
            self._next(value)

    def on_error(self, error: BaseException) -> None:
        if self._error is None:
            _report(error)
        else:
            self._error(error)

    def on_complete(self) -> None:
        if self._complete is not None:
            self._complete()


class _Disposed:
    __slots__ = ()

    def dispose(self) -> None:
        pass


_DISPOSED: Final = _Disposed()


class _Action:
    """A disposable that runs a callable once."""

    __slots__ = ("_action", "_lock")

    def __init__(self, action: Callable[[], object]) -> None:
        self._action: Callable[[], object] | None = action
        self._lock = threading.Lock()

    def dispose(self) -> None:
        with self._lock:
            action, self._action = self._action, None
        if action is not None:
            action()


class _Composite:
    """Disposes every part, once; a part added after disposal is disposed at once."""

    __slots__ = ("_disposed", "_lock", "_parts")

    def __init__(self, *parts: Disposable) -> None:
        self._parts: list[Disposable] = list(parts)
        self._lock = threading.Lock()
        self._disposed = False

    def add(self, part: Disposable) -> None:
        with self._lock:
            if not self._disposed:
                self._parts.append(part)
                return
        part.dispose()

    def dispose(self) -> None:
        with self._lock:
            if self._disposed:
                return
            self._disposed = True
            parts, self._parts = self._parts, []
        for part in parts:
            part.dispose()


def _as_disposable(teardown: object) -> Disposable | None:
    if teardown is None:
        return None
    if isinstance(teardown, Disposable):
        return teardown
    if callable(teardown):
        return _Action(teardown)
    raise TypeError(f"a subscribe function must return None, a Disposable or a callable, "
                    f"got {teardown!r}")


class _Stage:
    """What every safe observer and every relay stage has: the stop flag and the
    handle of the subscription upstream."""

    __slots__ = ("_lock", "_stopped", "_upstream")

    _lock: threading.Lock
    _stopped: bool  # accepts no more signals (terminal accepted, or disposed)
    _upstream: Disposable | None

    @property
    def closed(self) -> bool:
        """True once the stage accepts no more signals: a producer should stop."""
        return self._stopped

    def _set_upstream(self, upstream: Disposable | None) -> None:
        """Attach what to dispose upstream; disposed at once if the stage already is."""
        if upstream is None:
            return
        with self._lock:
            if self._upstream is None:
                self._upstream = upstream
                return
        upstream.dispose()  # the stage was disposed or terminated meanwhile

    def _take_upstream(self) -> Disposable | None:
        """Detach the upstream handle, for the caller to dispose (outside the lock)."""
        with self._lock:
            upstream, self._upstream = self._upstream, _DISPOSED
        return upstream


class _SafeObserver(_Stage, Generic[T]):
    """What :class:`Sink` and :class:`_SerialSink` share: the wrapped observer, and a
    :meth:`dispose` that waits for a call in progress on another thread.

    ``_emitter`` is the id of the thread delivering now (0: none); a deliverer that
    clears it wakes the disposers counted in ``_waiters``. :meth:`dispose` sets the
    stop flags, *then* counts itself a waiter, *then* reads ``_emitter``: so a deliverer
    that clears ``_emitter`` without the lock (:class:`_SerialSink`) either is seen idle
    or sees the waiter and wakes it.
    """

    __slots__ = ("_disposed", "_emitter", "_idle", "_next", "_observer", "_waiters")

    def __init__(self, observer: Observer[T]) -> None:
        self._observer = observer
        # the observer's on_next, without the wrapper's extra call for plain callables
        on_next = observer._next if isinstance(observer, _Callbacks) else observer.on_next
        self._next: Callable[[T], object] = on_next if on_next is not None else _ignore
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._waiters = 0  # threads waiting in dispose() for a call to return
        self._emitter = 0  # the id of the thread delivering now, 0 if none
        self._stopped = False
        self._disposed = False  # delivers nothing more
        self._upstream = None

    @property
    def disposed(self) -> bool:
        """True once nothing more will be delivered (disposed, or terminated)."""
        return self._disposed

    def dispose(self) -> None:
        """Stop delivery at once and dispose the subscription upstream (idempotent).

        Called from another thread while the observer is running, it waits for that
        call to return; called from inside a callback, it returns at once and the
        current call is the last.
        """
        me = _get_ident()
        with self._lock:
            self._stopped = self._disposed = True  # first stop, then look
            self._drop_queued()
            self._waiters += 1
            try:
                while self._emitter not in (0, me):
                    self._idle.wait()
            finally:
                self._waiters -= 1
            upstream, self._upstream = self._upstream, _DISPOSED
        if upstream is not None:
            upstream.dispose()

    def _drop_queued(self) -> None:
        """Forget the signals queued for delivery (called under the lock)."""


class Sink(_SafeObserver[T]):
    """The safe observer: what an :class:`Observable`'s subscribe function emits into.

    Calls ``on_next`` / ``on_error`` / ``on_complete`` of the wrapped observer under the
    observer contract (see the module's docstring). Thread-safe: any thread may signal.
    Producers should stop once :attr:`closed` is true.
    """

    __slots__ = ("_queue",)

    def __init__(self, observer: Observer[T]) -> None:
        super().__init__(observer)
        self._queue: deque[tuple[int, Any]] = deque()

    def on_next(self, value: T) -> None:
        lock = self._lock
        with lock:
            if self._stopped:
                return
            if self._emitter:  # another call is running: queue behind it
                self._queue.append((_NEXT, value))
                return
            self._emitter = _get_ident()
        # the fast path: nobody else is delivering, so deliver at once, lock released
        try:
            self._next(value)
        except Exception as error:  # the observer failed: end the stream
            self._fail(error)
            return
        except BaseException:
            self._release()
            raise
        with lock:
            if self._disposed or not self._queue:
                self._emitter = 0
                if self._waiters:
                    self._idle.notify_all()
                return
        self._drain()  # others queued values meanwhile: deliver them too

    def on_error(self, error: BaseException) -> None:
        if not isinstance(error, BaseException):
            raise TypeError(f"error must be an exception, got {error!r}")
        if self._enqueue(_ERROR, error):
            self._drain()

    def on_complete(self) -> None:
        if self._enqueue(_COMPLETE, None):
            self._drain()

    # ----------------------------------------------------------------- internals

    def _drop_queued(self) -> None:
        self._queue.clear()

    def _enqueue(self, kind: int, value: Any) -> bool:
        """Queue a signal; True if the caller must now :meth:`_drain` (it is the emitter)."""
        with self._lock:
            if self._stopped:
                return False
            if kind != _NEXT:
                self._stopped = True
            self._queue.append((kind, value))
            if self._emitter:
                return False
            self._emitter = _get_ident()
            return True

    def _drain(self) -> None:
        """Deliver queued signals, one at a time, with no lock held while delivering."""
        lock = self._lock
        try:
            while True:
                with lock:
                    if self._disposed or not self._queue:
                        self._emitter = 0
                        if self._waiters:
                            self._idle.notify_all()
                        return
                    kind, value = self._queue.popleft()
                if kind == _NEXT:
                    try:
                        self._next(value)
                    except Exception as error:  # the observer failed: end the stream
                        self._fail(error)
                        return
                else:
                    self._terminate(kind, value)
                    return
        except BaseException:
            self._release()  # KeyboardInterrupt and friends: leave the sink usable
            raise

    def _release(self) -> None:
        with self._lock:
            self._emitter = 0
            self._idle.notify_all()

    def _fail(self, error: Exception) -> None:
        with self._lock:
            self._stopped = True
            self._queue.clear()
        self._terminate(_ERROR, error)

    def _terminate(self, kind: int, error: BaseException | None) -> None:
        self._disposed = True
        upstream = self._take_upstream()
        try:
            if upstream is not None:
                upstream.dispose()
            if kind == _ERROR:
                assert error is not None
                self._observer.on_error(error)
            else:
                self._observer.on_complete()
        except Exception:
            _log.exception("observer %r failed in its terminal callback", self._observer)
        finally:
            with self._lock:
                self._queue.clear()
                self._emitter = 0
                self._idle.notify_all()

    def __repr__(self) -> str:
        state = "disposed" if self._disposed else "closed" if self._stopped else "open"
        return f"Sink({self._observer!r}, {state})"



class _SerialSink(_SafeObserver[T]):
    """The subscriber's safe observer behind a trusted producer (no lock per value).

    :meth:`Observable.subscribe` uses it when the observable is one of the library's own
    sources or operators (see :meth:`Observable._feed`): calls then already come one at
    a time, so this needs no emitter queue. It keeps the rest of :class:`Sink`'s
    contract: nothing is delivered after a terminal signal or after :meth:`dispose`; an
    exception raised by the observer's ``on_next`` becomes the end of the stream; and
    ``dispose()`` from another thread waits for a call in progress to return.

    The wait is a handshake on two fields, without a lock per value: the delivering
    thread writes its id to ``_emitter`` *before* it reads ``_stopped``; ``dispose``
    writes ``_stopped`` *before* it reads ``_emitter`` (both under the GIL, in program
    order). So either the deliverer sees the disposal and delivers nothing, or the
    disposer sees the call and waits on ``_idle`` until the deliverer, which checks
    ``_waiters`` after every call, wakes it.
    """

    __slots__ = ()

    def on_next(self, value: T) -> None:
        self._emitter = _get_ident()  # first announce the call, then look
        if self._stopped:
            self._idle_again()
            return
        try:
            self._next(value)
        except Exception as error:  # the observer failed: end the stream
            self._terminate(_ERROR, error, failed=True)
            return
        except BaseException:
            self._idle_again()
            raise
        self._emitter = 0
        if self._waiters:
            self._wake()

    def on_error(self, error: BaseException) -> None:
        if not isinstance(error, BaseException):
            raise TypeError(f"error must be an exception, got {error!r}")
        self._emitter = _get_ident()
        self._terminate(_ERROR, error)

    def on_complete(self) -> None:
        self._emitter = _get_ident()
        self._terminate(_COMPLETE, None)

    def _idle_again(self) -> None:
        self._emitter = 0
        if self._waiters:
            self._wake()

    def _wake(self) -> None:
        with self._lock:
            self._idle.notify_all()

    def _terminate(self, kind: int, error: BaseException | None, *,
                   failed: bool = False) -> None:
        """Deliver a terminal signal (``_emitter`` is set by the caller)."""
        try:
            with self._lock:
                stopped = self._stopped
                self._stopped = self._disposed = True
                upstream, self._upstream = self._upstream, _DISPOSED
            if upstream is not None:
                upstream.dispose()
            if stopped:
                if failed:  # disposed from inside the call that then raised
                    _log.error("observer %r failed after disposal", self._observer,
                               exc_info=error)
                return
            if kind == _ERROR:
                assert error is not None
                self._observer.on_error(error)
            else:
                self._observer.on_complete()
        except Exception:
            _log.exception("observer %r failed in its terminal callback", self._observer)
        finally:
            self._idle_again()


class _Relay(_Stage, Generic[T]):
    """A stage of a built-in operator on the trusted fast path: no lock per value.

    It stands where a :class:`Sink` would stand between two of the library's own
    operators (or between a built-in source and an operator), and relies on what the
    contract already guarantees upstream: calls come one at a time and nothing comes
    after a terminal signal (the upstream is a built-in source or operator, or a
    :class:`Sink` at the boundary with anything else; see :meth:`Observable._feed`).
    It keeps the rest of the contract: an exception raised by the operator's function
    ends the stream (upstream disposed, ``on_error`` downstream), nothing passes after a
    terminal signal or after :meth:`dispose`, and disposal propagates upstream. The
    subscriber at the end of the chain always has its own :class:`Sink`, which
    serializes, waits for a running call on dispose, and shields the producer from the
    subscriber's exceptions.

    The base class passes values on unchanged (merge's inputs); subclasses are the
    operators.
    """

    __slots__ = ("_down", "_emit")

    def __init__(self, downstream: _Downstream[Any]) -> None:
        self._down = downstream
        self._emit: Callable[[Any], None] = downstream.on_next
        self._lock = threading.Lock()  # guards the upstream handle, not the values
        self._stopped = False
        self._upstream = None

    def on_next(self, value: T) -> None:
        if not self._stopped:
            self._emit(value)

    def on_error(self, error: BaseException) -> None:
        if self._stop():
            self._down.on_error(error)

    def on_complete(self) -> None:
        if self._stop():
            try:
                self._finish()
            except Exception as error:  # an operator's own completion failed
                self._down.on_error(error)

    def _finish(self) -> None:
        self._down.on_complete()

    def dispose(self) -> None:
        self._stop()

    def _stop(self) -> bool:
        """Stop and dispose upstream; True for the call that stopped the stage."""
        with self._lock:
            was = self._stopped
            self._stopped = True
        self._release()
        return not was

    def _release(self) -> None:
        upstream = self._take_upstream()
        if upstream is not None:
            upstream.dispose()

    def _fail(self, error: Exception) -> None:
        """The operator's function raised: end the stream with that error."""
        if self._stop():
            self._down.on_error(error)


class _Map(_Relay[T]):
    __slots__ = ("_fn",)

    def __init__(self, downstream: _Downstream[Any], fn: Callable[[T], Any]) -> None:
        super().__init__(downstream)
        self._fn = fn

    def on_next(self, value: T) -> None:
        if self._stopped:
            return
        try:
            result = self._fn(value)
        except Exception as error:
            self._fail(error)
            return
        self._emit(result)


class _Filter(_Relay[T]):
    __slots__ = ("_predicate",)

    def __init__(self, downstream: _Downstream[Any], predicate: Callable[[T], object]) -> None:
        super().__init__(downstream)
        self._predicate = predicate

    def on_next(self, value: T) -> None:
        if self._stopped:
            return
        try:
            keep = self._predicate(value)
        except Exception as error:
            self._fail(error)
            return
        if keep:
            self._emit(value)


class _Scan(_Relay[T]):
    __slots__ = ("_acc", "_fn")

    def __init__(self, downstream: _Downstream[Any], fn: Callable[[Any, T], Any],
                 seed: Any) -> None:
        super().__init__(downstream)
        self._fn = fn
        self._acc = seed

    def on_next(self, value: T) -> None:
        if self._stopped:
            return
        if self._acc is _NO_SEED:
            acc: Any = value
        else:
            try:
                acc = self._fn(self._acc, value)
            except Exception as error:
                self._fail(error)
                return
        self._acc = acc
        self._emit(acc)


class _Take(_Relay[T]):
    __slots__ = ("_remaining",)

    def __init__(self, downstream: _Downstream[Any], count: int) -> None:
        super().__init__(downstream)
        self._remaining = count

    def on_next(self, value: T) -> None:
        if self._stopped:
            return
        self._remaining -= 1
        if self._remaining > 0:
            self._emit(value)
            return
        self._stopped = True  # the last value: nothing more passes, even re-entrantly
        self._emit(value)
        self._release()
        self._down.on_complete()


class _BufferWithCount(_Relay[T]):
    __slots__ = ("_count", "_open", "_seen", "_step")

    def __init__(self, downstream: _Downstream[Any], count: int, step: int) -> None:
        super().__init__(downstream)
        self._count = count
        self._step = step
        self._open: deque[list[T]] = deque()
        self._seen = 0

    def on_next(self, value: T) -> None:
        if self._stopped:
            return
        open_lists = self._open
        if self._seen % self._step == 0:
            open_lists.append([])
        self._seen += 1
        for items in open_lists:
            items.append(value)
        while open_lists and len(open_lists[0]) == self._count:
            self._emit(open_lists.popleft())

    def on_error(self, error: BaseException) -> None:
        self._open.clear()
        super().on_error(error)

    def _finish(self) -> None:
        open_lists = self._open
        while open_lists:
            items = open_lists.popleft()
            if items:
                self._emit(items)
        self._down.on_complete()


class _MergeInput(_Relay[T]):
    """One of merge's sources: values and errors go on, completion is counted."""

    __slots__ = ("_completed",)

    def __init__(self, downstream: _Downstream[Any], completed: Callable[[], None]) -> None:
        super().__init__(downstream)
        self._completed = completed

    def _finish(self) -> None:
        self._completed()


class Subscription:
    """What :meth:`Observable.subscribe` returns: :meth:`dispose` it to stop delivery.

    The guide's ``Subscription`` and ``unsubscribe`` in one handle. A context manager:
    leaving the ``with`` block disposes it.
    """

    __slots__ = ("_sink",)

    def __init__(self, sink: Sink[Any] | _SerialSink[Any]) -> None:
        self._sink = sink

    def dispose(self) -> None:
        """Stop delivery (idempotent); see :meth:`Sink.dispose`."""
        self._sink.dispose()

    @property
    def disposed(self) -> bool:
        """True once the observer will receive nothing more (disposed or terminated)."""
        return self._sink.disposed

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.dispose()

    def __repr__(self) -> str:
        return f"Subscription(disposed={self.disposed})"


SubscribeFunction = Callable[[Sink[T]], "Disposable | Callable[[], object] | None"]

_NO_SEED: Final = object()


def _check_callable(name: str, fn: object) -> None:
    """``fn`` is callable, and a plain one: streams call their functions synchronously."""
    if not callable(fn):
        raise TypeError(f"{name} must be callable, got {fn!r}")
    if is_async_callable(fn):
        raise TypeError(
            f"{name} must be a plain function, got the coroutine function {fn!r}: a "
            f"reactive stream calls it synchronously and would pass on an un-awaited "
            f"coroutine (await inside a plain function's task, or use a Publisher with "
            f"aiterate())")


def _check_observer(observer: Observer[Any]) -> None:
    for name in ("on_next", "on_error", "on_complete"):
        _check_callable(name, getattr(observer, name))


def _check_scheduler(scheduler: object) -> None:
    if not isinstance(scheduler, Scheduler):
        raise TypeError(f"scheduler must be a Scheduler (now() and schedule()), "
                        f"got {scheduler!r}")


class Observable(Generic[T]):
    """A stream of values of type ``T`` (guide section 1.2: ``DataFlow<T>``).

    Made from a subscribe function that receives a :class:`Sink` and emits into it,
    returning what stops the producer (a :class:`Disposable`, a callable, or ``None``).
    The function runs once per subscription: observables are cold unless they are a
    :class:`Subject`. Operators (:meth:`map`, :meth:`filter`, :meth:`scan`, :meth:`take`,
    :meth:`merge`, :meth:`buffer_with_count`, :meth:`buffer_with_time`) return new
    observables; nothing runs until somebody subscribes.
    """

    __slots__ = ("_subscribe_fn", "_trusted")

    def __init__(self, subscribe: SubscribeFunction[T]) -> None:
        _check_callable("subscribe", subscribe)
        # called with a Sink, or with a relay when trusted (see _feed)
        self._subscribe_fn: Callable[[Any], object] = subscribe
        # True only for the library's own sources and operators, which obey the
        # contract by construction: a consumer may feed them a relay instead of a Sink
        self._trusted = False

    @classmethod
    def _built_in(cls, subscribe: Callable[[Any], object]) -> Observable[Any]:
        """An observable of the library's own (a trusted producer, see :meth:`_feed`)."""
        observable: Observable[Any] = cls(cast(SubscribeFunction[Any], subscribe))
        observable._trusted = True
        return observable

    # ----------------------------------------------------------------- subscribing

    def subscribe(
        self,
        observer: Observer[T] | Callable[[T], object] | None = None,
        /,
        *,
        on_next: Callable[[T], object] | None = None,
        on_error: Callable[[BaseException], object] | None = None,
        on_complete: Callable[[], object] | None = None,
    ) -> Subscription:
        """Start the stream for one observer (or callables); return its :class:`Subscription`.

        Pass an :class:`Observer`, or up to three callables (``on_next`` positionally or
        by name). Without ``on_error``, an error is logged rather than lost silently.
        """
        if observer is not None and not callable(observer) and isinstance(observer, Observer):
            if on_next is not None or on_error is not None or on_complete is not None:
                raise TypeError("pass either an observer or callables, not both")
            _check_observer(observer)
            target: Observer[T] = observer
        else:
            if observer is not None:
                if on_next is not None:
                    raise TypeError("on_next given twice (positionally and by name)")
                if not callable(observer):
                    raise TypeError(f"observer must be an Observer or a callable, "
                                    f"got {observer!r}")
                on_next = observer
            target = _Callbacks(on_next, on_error, on_complete)
        # a trusted producer calls one at a time: the lighter safe observer suffices
        sink: Sink[T] | _SerialSink[T] = _SerialSink(target) if self._trusted else Sink(target)
        self._run(sink)
        return Subscription(sink)

    def _run(self, sink: _Downstream[T]) -> None:
        try:
            teardown = self._subscribe_fn(sink)
        except Exception as error:
            sink.on_error(error)
            return
        sink._set_upstream(_as_disposable(teardown))

    def _feed(self, stage: _Relay[T]) -> None:
        """Subscribe an operator's ``stage`` to this observable.

        The library's own sources and operators obey the contract by construction, so
        they emit into ``stage`` directly: no lock per value. Anything else (a user's
        subscribe function, a :class:`Subject`, :func:`merge` of concurrent sources, a
        scheduler-driven operator) emits into a :class:`Sink` in front of ``stage``,
        which serializes the calls and drops what comes after a terminal signal. The
        caller attaches ``stage`` downstream *before* this call, so that disposing
        downstream stops even a source that emits during subscribe.
        """
        if self._trusted:
            self._run(stage)
        else:
            sink: Sink[T] = Sink(stage)
            stage._set_upstream(sink)
            self._run(sink)

    # ----------------------------------------------------------------- sources

    @staticmethod
    def from_iterable(values: Iterable[T]) -> Observable[T]:
        """Emit the values of ``values`` (iterated afresh per subscription), then complete.

        The producer checks the subscription before each value, so disposing it (or a
        ``take`` downstream) stops an endless iterable.
        """
        if not isinstance(values, Iterable):
            raise TypeError(f"values must be iterable, got {values!r}")

        def subscribe(sink: _Downstream[T]) -> None:
            if sink.closed:
                return
            on_next = sink.on_next
            for value in values:
                on_next(value)
                if sink._stopped:  # checked before pulling the next value
                    return
            sink.on_complete()

        return Observable._built_in(subscribe)

    @staticmethod
    def of(*values: T) -> Observable[T]:
        """Emit ``values``, then complete."""
        return Observable.from_iterable(values)

    @staticmethod
    def empty() -> Observable[Any]:
        """Complete at once."""
        return Observable._built_in(lambda sink: sink.on_complete())

    @staticmethod
    def never() -> Observable[Any]:
        """Emit nothing, ever."""
        return Observable._built_in(lambda sink: None)

    @staticmethod
    def throw(error: BaseException) -> Observable[Any]:
        """Fail at once with ``error``."""
        if not isinstance(error, BaseException):
            raise TypeError(f"error must be an exception, got {error!r}")
        return Observable._built_in(lambda sink: sink.on_error(error))

    @staticmethod
    def interval(period: float, scheduler: Scheduler) -> Observable[int]:
        """Emit 0, 1, 2, ... every ``period`` seconds of ``scheduler`` time."""
        require_positive("period", period)
        require_finite_non_negative("period", period)
        _check_scheduler(scheduler)

        def subscribe(sink: Sink[int]) -> Callable[[], None]:
            lock = threading.Lock()
            start = scheduler.now()
            state: dict[str, Any] = {"count": 0, "handle": None, "done": False}

            def tick() -> None:
                with lock:
                    if state["done"]:
                        return
                    count = state["count"]
                    state["count"] = count + 1
                    due = start + (count + 2) * period
                    state["handle"] = scheduler.schedule(max(0.0, due - scheduler.now()), tick)
                sink.on_next(count)

            def stop() -> None:
                with lock:
                    state["done"] = True
                    handle: Cancellable | None = state["handle"]
                if handle is not None:
                    handle.cancel()

            with lock:
                state["handle"] = scheduler.schedule(period, tick)
            return stop

        return Observable(subscribe)

    # ----------------------------------------------------------------- operators

    def map(self, fn: Callable[[T], U]) -> Observable[U]:
        """Each value transformed by ``fn`` (the guide's ``MapOperator``).

        If ``fn`` raises, the stream ends with that error and the source is disposed.
        """
        _check_callable("fn", fn)
        source = self

        def subscribe(sink: _Downstream[U]) -> None:
            stage: _Map[T] = _Map(sink, fn)
            sink._set_upstream(stage)
            source._feed(stage)

        return Observable._built_in(subscribe)

    def filter(self, predicate: Callable[[T], bool]) -> Observable[T]:
        """Only the values for which ``predicate`` is true."""
        _check_callable("predicate", predicate)
        source = self

        def subscribe(sink: _Downstream[T]) -> None:
            stage: _Filter[T] = _Filter(sink, predicate)
            sink._set_upstream(stage)
            source._feed(stage)

        return Observable._built_in(subscribe)

    @overload
    def scan(self, fn: Callable[[T, T], T]) -> Observable[T]: ...

    @overload
    def scan(self, fn: Callable[[A, T], A], seed: A) -> Observable[A]: ...

    def scan(self, fn: Callable[[Any, T], Any], seed: Any = _NO_SEED) -> Observable[Any]:
        """Running accumulation: emits ``acc = fn(acc, value)`` for each value.

        Without ``seed`` the first value is the first accumulator (and is emitted as is).
        """
        _check_callable("fn", fn)
        source = self

        def subscribe(sink: _Downstream[Any]) -> None:
            stage: _Scan[T] = _Scan(sink, fn, seed)
            sink._set_upstream(stage)
            source._feed(stage)

        return Observable._built_in(subscribe)

    def take(self, count: int) -> Observable[T]:
        """The first ``count`` values, then complete (and dispose the source)."""
        require_int_at_least("count", count, 0)
        source = self

        def subscribe(sink: _Downstream[T]) -> None:
            if count == 0:
                sink.on_complete()
                return
            stage: _Take[T] = _Take(sink, count)
            sink._set_upstream(stage)
            source._feed(stage)

        return Observable._built_in(subscribe)

    def merge(self, *others: Observable[T]) -> Observable[T]:
        """This stream and ``others`` interleaved; see :func:`merge`."""
        return merge(self, *others)

    def buffer_with_count(self, count: int, skip: int | None = None) -> Observable[list[T]]:
        """Lists of ``count`` values; a new list starts every ``skip`` values (default
        ``count``: back-to-back lists). On completion the unfinished lists are emitted."""
        require_int_at_least("count", count, 1)
        step = count if skip is None else require_int_at_least("skip", skip, 1)
        source = self

        def subscribe(sink: _Downstream[list[T]]) -> None:
            stage: _BufferWithCount[T] = _BufferWithCount(sink, count, step)
            sink._set_upstream(stage)
            source._feed(stage)

        return Observable._built_in(subscribe)

    def buffer_with_time(self, timespan: float, scheduler: Scheduler) -> Observable[list[T]]:
        """A list of the values received in each ``timespan`` seconds of ``scheduler`` time.

        A list is emitted at the end of every window, empty if nothing arrived; on
        completion the values of the unfinished window are emitted if there are any.
        Values and window ends may come from different threads: lists stay in order.
        """
        require_positive("timespan", timespan)
        require_finite_non_negative("timespan", timespan)
        _check_scheduler(scheduler)
        source = self

        def subscribe(sink: Sink[list[T]]) -> None:
            lock = threading.Lock()
            start = scheduler.now()
            state: dict[str, Any] = {"items": [], "windows": 0, "handle": None, "done": False}

            def close_window() -> None:
                with lock:
                    if state["done"]:
                        return
                    items, state["items"] = state["items"], []
                    state["windows"] += 1
                    due = start + (state["windows"] + 1) * timespan
                    state["handle"] = scheduler.schedule(max(0.0, due - scheduler.now()),
                                                         close_window)
                    emit = sink._enqueue(_NEXT, items)  # in order, under the lock
                if emit:
                    sink._drain()  # deliver with no lock held

            def on_next(value: T) -> None:
                with lock:
                    if not state["done"]:
                        state["items"].append(value)

            def finish(error: BaseException | None) -> None:
                with lock:
                    if state["done"]:
                        return
                    state["done"] = True
                    handle: Cancellable | None = state["handle"]
                    items, state["items"] = state["items"], []
                    emit = False
                    if error is None and items:
                        emit = sink._enqueue(_NEXT, items)
                    if error is None:
                        emit = sink._enqueue(_COMPLETE, None) or emit
                    else:
                        emit = sink._enqueue(_ERROR, error) or emit
                if handle is not None:
                    handle.cancel()
                if emit:
                    sink._drain()

            def stop() -> None:
                with lock:
                    state["done"] = True
                    handle: Cancellable | None = state["handle"]
                if handle is not None:
                    handle.cancel()
                upstream.dispose()

            with lock:
                state["handle"] = scheduler.schedule(timespan, close_window)
            upstream: Sink[T] = Sink(_Callbacks(on_next, finish, lambda: finish(None)))
            sink._set_upstream(_Action(stop))
            source._run(upstream)

        return Observable(subscribe)

    def __repr__(self) -> str:
        return f"Observable({self._subscribe_fn!r})"


def merge(*sources: Observable[T]) -> Observable[T]:
    """Values of all ``sources`` as they come; completes when all have completed, fails
    (and disposes the others) as soon as one fails."""
    for index, source in enumerate(sources):
        if not isinstance(source, Observable):
            raise TypeError(f"sources[{index}] must be an Observable, got {source!r}")

    def subscribe(sink: Sink[T]) -> None:
        if not sources:
            sink.on_complete()
            return None
        lock = threading.Lock()
        remaining = [len(sources)]

        def on_complete() -> None:
            with lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                sink.on_complete()

        parts = _Composite()
        sink._set_upstream(parts)
        for source in sources:
            if sink.closed:
                break
            stage: _MergeInput[T] = _MergeInput(sink, on_complete)
            parts.add(stage)
            source._feed(stage)

    return Observable(subscribe)


class Subject(Observable[T]):
    """Both an :class:`Observer` and an :class:`Observable`: it multicasts what it receives.

    Every observer subscribed at the moment of a call receives it (each through its own
    safe observer). After ``on_complete`` / ``on_error`` the subject ignores further
    values, and a late subscriber receives the terminal signal at once. Thread-safe;
    the list of observers is copy-on-write, so no lock is held while observers run and an
    observer may subscribe or dispose from inside its callback (a new subscriber
    receives the values that come after its subscription).
    """

    __slots__ = ("_lock", "_sinks", "_terminal")

    def __init__(self) -> None:
        super().__init__(self._subscribe_core)
        self._lock = threading.Lock()
        self._sinks: tuple[Sink[T], ...] = ()
        self._terminal: BaseException | bool | None = False  # False: still open

    def _subscribe_core(self, sink: Sink[T]) -> Callable[[], None] | None:
        with self._lock:
            terminal = self._terminal
            if terminal is False:
                self._sinks = (*self._sinks, sink)
                return lambda: self._remove(sink)
        if isinstance(terminal, BaseException):
            sink.on_error(terminal)
        else:
            sink.on_complete()
        return None

    def _remove(self, sink: Sink[T]) -> None:
        with self._lock:
            self._sinks = tuple(s for s in self._sinks if s is not sink)

    @property
    def observer_count(self) -> int:
        """How many observers are subscribed now."""
        return len(self._sinks)

    def on_next(self, value: T) -> None:
        for sink in self._sinks:
            sink.on_next(value)

    def on_error(self, error: BaseException) -> None:
        if not isinstance(error, BaseException):
            raise TypeError(f"error must be an exception, got {error!r}")
        with self._lock:
            if self._terminal is not False:
                return
            self._terminal = error
            sinks, self._sinks = self._sinks, ()
        for sink in sinks:
            sink.on_error(error)

    def on_complete(self) -> None:
        with self._lock:
            if self._terminal is not False:
                return
            self._terminal = None
            sinks, self._sinks = self._sinks, ()
        for sink in sinks:
            sink.on_complete()

    def __repr__(self) -> str:
        return f"Subject({len(self._sinks)} observers)"
