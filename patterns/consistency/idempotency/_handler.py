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
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from patterns._validation import require_positive
from patterns.clock import MONOTONIC, Clock
from patterns.consistency.idempotency._keys import ContentKeyGenerator, fingerprint
from patterns.consistency.idempotency._store import (
    IdempotencyError,
    IdempotencyStore,
    RecordState,
    check_duration,
    check_key,
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


class RequestFailedError(IdempotencyError):
    """The first request with this key failed, and the failure was recorded as final."""

    def __init__(self, key: str, error: str) -> None:
        super().__init__(f"the request with idempotency key {key!r} failed: {error}")
        self.key = key
        self.error = error


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


class IdempotencyHandler:
    """Run an effect at most once per key; replay its response (guide section 5.5).

    Parameters
    ----------
    store:
        Where keys are reserved (in memory, SQLite or Redis).
    ttl:
        How long a completed (or failed) record is kept, in seconds: duplicates after
        that run the effect again. Cover the clients' whole retry horizon.
    lease:
        How long a reservation stays valid while the effect runs; after it a duplicate
        takes the key over (the owner crashed). Make it well above the effect's
        worst-case duration.
    on_in_progress:
        ``"wait"`` (poll until the first caller's response is recorded, up to
        ``wait_timeout``) or ``"raise"`` (:class:`RequestInProgressError` at once).
    poll_interval, wait_timeout:
        How often a waiting duplicate asks again, and how long it waits in all.
    key_generator:
        Makes a key from the request when the caller gives none.
    record_errors:
        Exception types that are a *final* answer (a declined card): recorded, and
        replayed to duplicates as :class:`RequestFailedError`. Other exceptions release
        the key so that a retry runs the effect again.
    encode, decode:
        Turn the response into text for the store and back (default JSON). Every caller,
        the first included, gets ``decode(encode(response))``: the same value.
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
        self.wait_timeout = require_positive("wait_timeout", wait_timeout)
        self.key_generator = key_generator or ContentKeyGenerator("request")
        if not isinstance(record_errors, tuple) or not all(
                isinstance(t, type) and issubclass(t, BaseException) for t in record_errors):
            raise TypeError(f"record_errors must be a tuple of exception types, got "
                            f"{record_errors!r}")
        self.record_errors = record_errors
        for name, fn in (("encode", encode), ("decode", decode), ("sleep", sleep)):
            if not callable(fn):
                raise TypeError(f"{name} must be callable, got {fn!r}")
        if not callable(getattr(clock, "now", None)):
            raise TypeError(f"clock must have a now() method, got {clock!r}")
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
        self._emit(DuplicateInProgress(now, key))
        if self.on_in_progress is OnInProgress.RAISE:
            raise RequestInProgressError(key)
        return Wait(key, self.poll_interval)

    def finish(self, step: Execute, response: Any) -> Any:
        """Record the effect's response; return it as every duplicate will see it."""
        text = self.encode(response)
        if not isinstance(text, str):
            raise TypeError(f"encode must return a str, got {text!r}")
        self.store.complete(step.key, step.token, text, ttl=self.ttl)
        self._emit(EffectCompleted(self.clock.now(), step.key))
        return self.decode(text)

    def abort(self, step: Execute, error: BaseException) -> None:
        """The effect raised: record a final failure, or release the key for a retry."""
        recorded = isinstance(error, self.record_errors)
        text = f"{type(error).__name__}: {error}"
        if recorded:
            self.store.fail(step.key, step.token, text, ttl=self.ttl)
        else:
            self.store.release(step.key, step.token)
        self._emit(EffectFailed(self.clock.now(), step.key, text, recorded))

    def _emit(self, event: IdempotencyEvent) -> None:
        if self.listeners.snapshot:
            self.listeners.emit(event)

    def _check_wait(self, key: str, start: float, now: float) -> None:
        if now - start >= self.wait_timeout:
            raise RequestInProgressError(key, now - start)

    # ------------------------------------------------------------- drivers

    def handle(self, request: T, effect: Callable[[T], Any], *, key: str | None = None) -> Any:
        """Blocking driver: run ``effect(request)`` at most once per key."""
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
                return self.finish(step, response)
            self._check_wait(step.key, start, self.clock.now())
            self.sleep(step.delay)

    async def ahandle(
        self, request: T, effect: Callable[[T], Awaitable[Any]], *, key: str | None = None
    ) -> Any:
        """asyncio driver: ``await effect(request)`` at most once per key."""
        import asyncio

        start = self.clock.now()
        while True:
            step = self.begin(request, key)
            if isinstance(step, Replay):
                return step.response
            if isinstance(step, Execute):
                try:
                    response = await effect(request)
                except BaseException as error:
                    self.abort(step, error)
                    raise
                return self.finish(step, response)
            self._check_wait(step.key, start, self.clock.now())
            await asyncio.sleep(step.delay)

    def simpy_handle(
        self,
        env: _SimEnvironment,
        request: T,
        effect: Callable[[T], Generator[Any, Any, Any]],
        *,
        key: str | None = None,
    ) -> Generator[Any, Any, Any]:
        """SimPy driver: ``response = yield from handler.simpy_handle(env, req, effect)``.

        ``effect(request)`` is a SimPy process body. Pass the store a clock that reads
        ``env.now`` (``simulations.kit.clock.SimClock``).
        """
        start = env.now
        while True:
            step = self.begin(request, key)
            if isinstance(step, Replay):
                return step.response
            if isinstance(step, Execute):
                try:
                    response = yield from effect(request)
                except BaseException as error:
                    self.abort(step, error)
                    raise
                return self.finish(step, response)
            self._check_wait(step.key, start, env.now)
            yield env.timeout(step.delay)

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
        name = getattr(fn, "__qualname__", repr(fn))
        if inspect.iscoroutinefunction(fn):
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
