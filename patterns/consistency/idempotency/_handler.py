"""The idempotency handler and decorator (guide section 5.5, ``IdempotencyHandler``).

Same key, same request: the effect runs once and every caller gets the same response.
The handler *reserves* the key before running the effect (the guide checks, runs, then
records, so two concurrent duplicates both run). A duplicate that arrives while the first
caller is still working either waits for the response (``on_in_progress="wait"``) or is
told at once (``"raise"``, :class:`RequestInProgressError`, the HTTP 409 of Stripe-style
APIs).

The decision logic (:meth:`IdempotencyHandler.begin`, :meth:`~IdempotencyHandler.finish`,
:meth:`~IdempotencyHandler.abort`) never waits; three thin drivers do: :meth:`handle`
(blocking), :meth:`ahandle` (asyncio) and :meth:`simpy_handle` (SimPy).

The residual window. The effect and the recorded response are two writes unless the
store can make them one (:meth:`SQLiteIdempotencyStore.execute_once` when the effect
writes to the same SQLite database). If the process dies after the effect but before
``complete``, the reservation's lease runs out and the next duplicate runs the effect
again. Shrink the window (record right after the effect), make the effect itself
idempotent downstream (pass the key on to the payment provider), or put both writes in
one transaction. A lease shorter than the effect has the same result: choose leases
well above the effect's worst-case duration.

An effect that ran never runs again for its key, even when its response cannot be
recorded (it is not encodable, it does not decode back, it has a lone surrogate, the
store refuses it): the handler then records "completed, response not recorded"
(:meth:`IdempotencyStore.complete_unrecorded`), and the first caller and every duplicate
get :class:`ResponseNotRecordedError` (the first caller's carries the effect's return
value in ``response``). Only a store that is unreachable at that moment leaves the
key reserved (the residual window above).
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NoReturn, Protocol, TypeVar

from patterns._decorate import is_async_callable, reject_coroutine_function
from patterns._validation import require_positive
from patterns.clock import MONOTONIC, Clock
from patterns.consistency.idempotency._keys import ContentKeyGenerator, fingerprint
from patterns.consistency.idempotency._store import (
    IdempotencyError,
    IdempotencyStore,
    LeaseLostError,
    RecordState,
    RequestFailedError,
    ResponseNotRecordedError,
    _check_text,
    check_clock,
    check_duration,
    check_key,
    storable_text,
)
from patterns.events import Listeners

__all__ = [
    "DuplicateInProgress",
    "EffectCompleted",
    "EffectFailed",
    "EffectStarted",
    "Execute",
    "IdempotencyEvent",
    "IdempotencyHandler",
    "OnInProgress",
    "Replay",
    "RequestFailedError",
    "RequestInProgressError",
    "ResponseNotRecorded",
    "ResponseNotRecordedError",
    "ResponseReplayed",
    "Wait",
    "idempotent",
]

T = TypeVar("T")


class RequestInProgressError(IdempotencyError):
    """A request with this key is being processed by another caller right now."""

    def __init__(self, key: str, waited: float = 0.0) -> None:
        extra = f" (waited {waited:g} s)" if waited > 0 else ""
        super().__init__(f"a request with idempotency key {key!r} is still in progress"
                         f"{extra}; retry later")
        self.key = key


class OnInProgress(StrEnum):
    WAIT = "wait"
    RAISE = "raise"


# ----------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class IdempotencyEvent:
    time: float
    key: str


@dataclass(frozen=True, slots=True)
class EffectStarted(IdempotencyEvent):
    """This caller reserved the key and runs the effect."""

    taken_over: bool


@dataclass(frozen=True, slots=True)
class EffectCompleted(IdempotencyEvent):
    """The effect ran and its response is recorded."""


@dataclass(frozen=True, slots=True)
class EffectFailed(IdempotencyEvent):
    """The effect raised; ``recorded`` says whether the failure is final (else released)."""

    error: str
    recorded: bool


@dataclass(frozen=True, slots=True)
class ResponseNotRecorded(IdempotencyEvent):
    """The effect ran but its response could not be recorded; recorded as such instead
    (duplicates get :class:`ResponseNotRecordedError`, never a second run)."""

    error: str


@dataclass(frozen=True, slots=True)
class ResponseReplayed(IdempotencyEvent):
    """A duplicate got the recorded response; the effect did not run again."""


@dataclass(frozen=True, slots=True)
class DuplicateInProgress(IdempotencyEvent):
    """A duplicate found the key in progress."""


# ----------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class Execute:
    """Run the effect now, then :meth:`IdempotencyHandler.finish` or ``abort``."""

    key: str
    token: str


@dataclass(frozen=True, slots=True)
class Replay:
    """Return ``response`` (already decoded); do not run the effect."""

    key: str
    response: Any


@dataclass(frozen=True, slots=True)
class Wait:
    """Another caller holds the key: ask again after ``delay`` seconds."""

    key: str
    delay: float


Step = Execute | Replay | Wait


class _SimEnvironment(Protocol):
    @property
    def now(self) -> float: ...

    def timeout(self, delay: float) -> Any: ...


def _default_encode(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _describe(error: BaseException) -> str:
    """``"Type: message"`` that every store can keep, even for an unprintable error."""
    try:
        message = str(error)
    except Exception:
        message = "<unprintable>"
    return storable_text(f"{type(error).__name__}: {message}")


MAX_POLL_INTERVAL = min(1e9, threading.TIMEOUT_MAX)


class IdempotencyHandler:
    """Run an effect at most once per key; replay its response (guide section 5.5).

    Parameters
    ----------
    store:
        Where keys are reserved (in memory, SQLite or Redis).
    ttl:
        How long a completed (or failed) record is kept, in seconds (finite, > 0, at
        most ``MAX_DURATION``, about 31 years): duplicates after that run the effect
        again. Cover the clients' whole retry horizon.
    lease:
        How long a reservation stays valid while the effect runs (same bounds as
        ``ttl``); after it a duplicate takes the key over (the owner crashed). Make it
        well above the effect's worst-case duration.
    on_in_progress:
        ``"wait"`` (poll until the first caller's response is recorded, up to
        ``wait_timeout``) or ``"raise"`` (:class:`RequestInProgressError` at once).
    poll_interval, wait_timeout:
        How often a waiting duplicate asks again (finite, > 0, bounded like ``ttl``),
        and how long it waits in all (> 0; ``inf``, the default, waits until the key
        is completed or its lease runs out). A waiting duplicate never sleeps past its
        ``wait_timeout``.
    key_generator:
        Makes a key from the request when the caller gives none.
    record_errors:
        Exception types that are a *final* answer (a declined card): recorded, and
        replayed to duplicates as :class:`RequestFailedError`. Other exceptions release
        the key so that a retry runs the effect again.
    encode, decode:
        Turn the response into text for the store and back (default JSON). Every caller,
        the first included, gets ``decode(encode(response))``: the same value. When that
        fails (``encode`` raises or returns no str, the text has a lone surrogate,
        ``decode`` raises) or the store refuses the text, the effect has still run
        once: the key is recorded as "completed, response not recorded" and every
        caller, the first included, gets :class:`ResponseNotRecordedError` (the first
        one's ``response`` attribute holds the effect's return value). The effect
        never runs again for the key while the record lives (``ttl``).
    clock, sleep, listeners:
        The time source (a :class:`~patterns.clock.Clock`), the blocking driver's
        sleep, and the event listeners.
    """

    def __init__(
        self,
        store: IdempotencyStore,
        *,
        ttl: float = 24 * 3600.0,
        lease: float = 30.0,
        on_in_progress: OnInProgress | str = OnInProgress.WAIT,
        poll_interval: float = 0.05,
        wait_timeout: float = math.inf,
        key_generator: ContentKeyGenerator | None = None,
        record_errors: tuple[type[BaseException], ...] = (),
        encode: Callable[[Any], str] = _default_encode,
        decode: Callable[[str], Any] = json.loads,
        clock: Clock = MONOTONIC,
        sleep: Callable[[float], object] = time.sleep,
        listeners: Listeners[IdempotencyEvent] | None = None,
    ) -> None:
        if not isinstance(store, IdempotencyStore):
            raise TypeError(f"store must be an IdempotencyStore, got {store!r}")
        self.store = store
        self.ttl = check_duration("ttl", ttl)
        self.lease = check_duration("lease", lease)
        try:
            self.on_in_progress = OnInProgress(on_in_progress)
        except ValueError:
            raise ValueError(f"on_in_progress must be 'wait' or 'raise', got "
                             f"{on_in_progress!r}") from None
        self.poll_interval = check_duration("poll_interval", poll_interval)
        if self.poll_interval > MAX_POLL_INTERVAL:
            raise ValueError(f"poll_interval must be at most {MAX_POLL_INTERVAL:g} s, got "
                             f"{poll_interval!r}")
        self.wait_timeout = require_positive("wait_timeout", wait_timeout)
        if key_generator is not None and not callable(
                getattr(key_generator, "generate_key", None)):
            raise TypeError(f"key_generator must have a generate_key() method, got "
                            f"{key_generator!r}")
        self.key_generator = key_generator or ContentKeyGenerator("request")
        if not isinstance(record_errors, tuple) or not all(
                isinstance(t, type) and issubclass(t, BaseException) for t in record_errors):
            raise TypeError(f"record_errors must be a tuple of exception types, got "
                            f"{record_errors!r}")
        self.record_errors = record_errors
        for name, fn in (("encode", encode), ("decode", decode), ("sleep", sleep)):
            if not callable(fn):
                raise TypeError(f"{name} must be callable, got {fn!r}")
        check_clock(clock)
        if listeners is not None and not isinstance(listeners, Listeners):
            raise TypeError(f"listeners must be a Listeners, got {listeners!r}")
        self.encode = encode
        self.decode = decode
        self.clock = clock
        self.sleep = sleep
        self.listeners: Listeners[IdempotencyEvent] = (
            listeners if listeners is not None else Listeners())

    # ------------------------------------------------------------- decision logic

    def key_for(self, request: Any, key: str | None = None) -> str:
        """The given key (validated), or one made from the request's content."""
        return self.key_generator.generate_key(request) if key is None else check_key(key)

    def begin(self, request: Any, key: str | None = None) -> Step:
        """Reserve the key, or say what to do instead. Never waits."""
        key = self.key_for(request, key)
        reservation = self.store.reserve(key, fingerprint(request), lease=self.lease)
        now = self.clock.now()
        if reservation.acquired:
            assert reservation.token is not None
            self._emit(EffectStarted(now, key, reservation.taken_over))
            return Execute(key, reservation.token)
        record = reservation.record
        assert record is not None
        if record.state is RecordState.COMPLETED:
            assert record.response is not None
            self._emit(ResponseReplayed(now, key))
            return Replay(key, self.decode(record.response))
        if record.state is RecordState.FAILED:
            self._emit(ResponseReplayed(now, key))
            raise RequestFailedError(key, record.response or "")
        if record.state is RecordState.COMPLETED_UNRECORDED:
            self._emit(ResponseReplayed(now, key))
            raise ResponseNotRecordedError(key, record.response or "")
        self._emit(DuplicateInProgress(now, key))
        if self.on_in_progress is OnInProgress.RAISE:
            raise RequestInProgressError(key)
        return Wait(key, self.poll_interval)

    def finish(self, step: Execute, response: Any) -> Any:
        """Record the effect's response; return it as every duplicate will see it.

        If the response cannot be recorded (see ``encode, decode`` in the class
        docstring), records that instead and raises :class:`ResponseNotRecordedError`
        carrying ``response``: the effect ran and will not run again for this key.
        Raises :class:`LeaseLostError` if the reservation passed to another caller.
        """
        if not isinstance(step, Execute):
            raise TypeError(f"step must be an Execute, got {step!r}")
        try:
            text = self.encode(response)
            if not isinstance(text, str):
                raise TypeError(f"encode must return a str, got {text!r} "
                                f"({type(text).__name__})")
            _check_text("the encoded response", text)
            replayed = self.decode(text)
        except Exception as error:
            self._not_recorded(step, response, error)
        try:
            self.store.complete(step.key, step.token, text, ttl=self.ttl)
        except LeaseLostError:
            raise
        except Exception as error:  # refused by the store (too big, ...)
            self._not_recorded(step, response, error)
        self._emit(EffectCompleted(self.clock.now(), step.key))
        return replayed

    def _not_recorded(self, step: Execute, response: Any, error: Exception) -> NoReturn:
        reason = _describe(error)
        self.store.complete_unrecorded(step.key, step.token, reason, ttl=self.ttl)
        self._emit(ResponseNotRecorded(self.clock.now(), step.key, reason))
        raise ResponseNotRecordedError(step.key, reason, response) from error

    def abort(self, step: Execute, error: BaseException) -> None:
        """The effect raised: record a final failure, or release the key for a retry.

        The recorded text is ``"Type: message"``, made storable (lone surrogates
        escaped, cut to a few thousand characters; an unprintable error still records
        its type).
        """
        if not isinstance(step, Execute):
            raise TypeError(f"step must be an Execute, got {step!r}")
        if not isinstance(error, BaseException):
            raise TypeError(f"error must be an exception, got {error!r}")
        recorded = isinstance(error, self.record_errors)
        text = _describe(error)
        if recorded:
            self.store.fail(step.key, step.token, text, ttl=self.ttl)
        else:
            self.store.release(step.key, step.token)
        self._emit(EffectFailed(self.clock.now(), step.key, text, recorded))

    def _emit(self, event: IdempotencyEvent) -> None:
        if self.listeners.snapshot:
            self.listeners.emit(event)

    def _wait_delay(self, step: Wait, start: float, now: float) -> float:
        """How long to sleep before asking again: never past ``wait_timeout``."""
        waited = now - start
        if waited >= self.wait_timeout:
            raise RequestInProgressError(step.key, waited)
        return min(step.delay, self.wait_timeout - waited)

    def _not_run(self, step: Execute, result: Any, driver: str) -> NoReturn:
        """The effect returned a coroutine or generator: its body never ran."""
        kind = "coroutine" if inspect.iscoroutine(result) else (
            "generator" if inspect.isgenerator(result) else "awaitable")
        close = getattr(result, "close", None)
        if inspect.iscoroutine(result) or inspect.isgenerator(result):
            assert close is not None
            close()
        self.store.release(step.key, step.token)
        raise TypeError(f"effect returned a {kind} ({result!r}), so it did not run: {driver}")

    @staticmethod
    def _check_effect(effect: object, driver: str) -> None:
        if not callable(effect):
            raise TypeError(f"effect must be callable, got {effect!r}")
        if driver != "ahandle":  # any async callable, not only an ``async def``
            reject_coroutine_function(effect, f"IdempotencyHandler.{driver}",
                                      "Use ahandle() (or @idempotent, which keeps it async).")

    # ------------------------------------------------------------- drivers

    def handle(self, request: T, effect: Callable[[T], Any], *, key: str | None = None) -> Any:
        """Blocking driver: run ``effect(request)`` at most once per key.

        ``effect`` is a plain function; a coroutine function is refused with a
        :class:`TypeError` (use :meth:`ahandle`), and so is an effect that returns a
        coroutine or a generator (whose body never ran: the key is released).
        """
        self._check_effect(effect, "handle")
        start = self.clock.now()
        while True:
            step = self.begin(request, key)
            if isinstance(step, Replay):
                return step.response
            if isinstance(step, Execute):
                try:
                    response = effect(request)
                except BaseException as error:
                    self.abort(step, error)
                    raise
                if inspect.isawaitable(response) or inspect.isgenerator(response):
                    self._not_run(step, response, "handle() needs a plain function; "
                                  "use ahandle() or simpy_handle()")
                return self.finish(step, response)
            self.sleep(self._wait_delay(step, start, self.clock.now()))

    async def ahandle(
        self, request: T, effect: Callable[[T], Awaitable[Any]], *, key: str | None = None
    ) -> Any:
        """asyncio driver: ``await effect(request)`` at most once per key.

        ``effect`` returns an awaitable (an ``async def`` function); a plain function's
        return value is taken as the response (it has run, synchronously, once).
        """
        import asyncio

        self._check_effect(effect, "ahandle")
        start = self.clock.now()
        while True:
            step = self.begin(request, key)
            if isinstance(step, Replay):
                return step.response
            if isinstance(step, Execute):
                try:
                    result: Any = effect(request)
                except BaseException as error:
                    self.abort(step, error)
                    raise
                if inspect.isgenerator(result):
                    self._not_run(step, result, "use simpy_handle()")
                try:
                    response = await result if inspect.isawaitable(result) else result
                except BaseException as error:
                    self.abort(step, error)
                    raise
                return self.finish(step, response)
            await asyncio.sleep(self._wait_delay(step, start, self.clock.now()))

    def simpy_handle(
        self,
        env: _SimEnvironment,
        request: T,
        effect: Callable[[T], Generator[Any, Any, Any]],
        *,
        key: str | None = None,
    ) -> Generator[Any, Any, Any]:
        """SimPy driver: ``response = yield from handler.simpy_handle(env, req, effect)``.

        ``effect(request)`` is a SimPy process body (a generator); a plain function's
        return value is taken as the response (it ran in zero simulated time). Pass
        the store a clock that reads ``env.now`` (``simulations.kit.clock.SimClock``).
        Arguments are checked at the call, before the generator runs.
        """
        if not callable(getattr(env, "timeout", None)) or not hasattr(env, "now"):
            raise TypeError(f"env must be a SimPy environment, got {env!r}")
        self._check_effect(effect, "simpy_handle")
        return self._simpy_handle(env, request, effect, key)

    def _simpy_handle(self, env: _SimEnvironment, request: T,
                      effect: Callable[[T], Generator[Any, Any, Any]],
                      key: str | None) -> Generator[Any, Any, Any]:
        start = env.now
        while True:
            step = self.begin(request, key)
            if isinstance(step, Replay):
                return step.response
            if isinstance(step, Execute):
                try:
                    result: Any = effect(request)
                except BaseException as error:
                    self.abort(step, error)
                    raise
                if inspect.isawaitable(result):
                    self._not_run(step, result, "use ahandle()")
                try:
                    response = (yield from result) if isinstance(result, Generator) \
                        else result
                except BaseException as error:
                    self.abort(step, error)
                    raise
                return self.finish(step, response)
            yield env.timeout(self._wait_delay(step, start, env.now))

    def __repr__(self) -> str:
        return (f"IdempotencyHandler({self.store!r}, ttl={self.ttl!r}, lease={self.lease!r}, "
                f"on_in_progress={self.on_in_progress.value!r})")


def idempotent(
    handler: IdempotencyHandler, *, key_param: str = "idempotency_key"
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a function (plain or ``async``) so that it runs once per idempotency key
    (guide section 5.5, ``IdempotentService``).

    The caller passes the key as the keyword ``key_param``; without it (or with
    ``None``) the key is made from the arguments' content. The arguments are the
    request: the same key with other arguments raises
    :class:`~patterns.consistency.idempotency.IdempotencyKeyReusedError`.
    """
    if not isinstance(handler, IdempotencyHandler):
        raise TypeError(f"handler must be an IdempotencyHandler, got {handler!r}")
    if not isinstance(key_param, str) or not key_param.isidentifier():
        raise ValueError(f"key_param must be an identifier, got {key_param!r}")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        name = getattr(fn, "__qualname__", repr(fn))
        if is_async_callable(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                key = kwargs.pop(key_param, None)
                request = {"fn": name, "args": list(args), "kwargs": kwargs}

                async def effect(_: Any) -> Any:
                    return await fn(*args, **kwargs)

                return await handler.ahandle(request, effect, key=key)

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = kwargs.pop(key_param, None)
            request = {"fn": name, "args": list(args), "kwargs": kwargs}
            return handler.handle(request, lambda _: fn(*args, **kwargs), key=key)

        return wrapper

    return decorate
