"""Timeouts and cancellation (guide section 4.4, 超时与取消模式).

Two pieces, used together:

* :class:`CancellationToken` says "stop": it is cancelled once, with a reason; work checks
  it (:meth:`~CancellationToken.raise_if_cancelled`), waits for it without polling
  (:meth:`~CancellationToken.wait`, :meth:`~CancellationToken.wait_async`,
  :meth:`~CancellationToken.simpy_event`) or registers callbacks that run when it is
  cancelled (:meth:`~CancellationToken.on_cancel`: close a socket, interrupt a process).
  Tokens form a tree: cancelling one cancels all its descendants, never its parent. A
  token may carry a *deadline* on a :class:`~patterns.clock.Clock`; whether it has passed
  is a pure comparison, and thin drivers (:func:`arm_deadline`, :func:`arm_deadline_async`,
  :func:`arm_deadline_simpy`) turn it into a timer that cancels the token on time.
* :class:`TimeoutPolicy` runs an operation with a child token whose deadline is
  ``timeout`` seconds away, and when the deadline passes it *cancels the token* as well as
  stopping the wait: :meth:`~TimeoutPolicy.call` (threads),
  :meth:`~TimeoutPolicy.acall` (asyncio) and :meth:`~TimeoutPolicy.simpy_call` (SimPy).

Cancellation is cooperative. Python cannot kill a thread: a callable that never looks at
its token runs to its end, whatever the timeout says. What a timeout can do is stop
*waiting* for it (the caller gets :class:`DeadlineExceededError` on time when the work runs in
an executor) and *tell* it to stop (the token is cancelled, its callbacks run, and every
``raise_if_cancelled()`` from then on raises). In asyncio the task running the operation
is cancelled; in SimPy the work process is interrupted.

What the guide's sketch gets wrong, and this module does differently:

* its ``when_cancelled`` spawns a blocking thread that polls the flag every 10 ms, and
  the thread outlives the call when the token is never cancelled; here waiting is a
  registration on the token (an event, a future, a SimPy event), removed when done;
* its ``with_timeout`` only stops waiting, so the abandoned work keeps running; here a
  timeout cancels the token the work was given;
* its ``CascadingCancellation`` is a flat list that the tokens themselves know nothing
  about, and ``clone()`` shares one flag both ways; here a child is linked to its parent,
  cancelling the parent reaches every descendant, and a child can be cancelled (or
  disposed) without touching its parent.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from concurrent.futures import Executor
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol, TypeVar

from patterns._decorate import reject_awaitable_result, reject_coroutine_function
from patterns._errors import Rebuildable
from patterns._timers import TimerHandle, TimerThread, shared_timer_thread, wait_event
from patterns._validation import (
    require_at_least,
    require_clock,
    require_finite,
    require_non_negative,
    require_positive,
)
from patterns.clock import MONOTONIC, Clock
from patterns.events import Listeners

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "CANCELLED",
    "CallCancelled",
    "CallFinished",
    "CallTimedOut",
    "CancellationToken",
    "DeadlineExceededError",
    "DeadlineTimer",
    "OperationCancelled",
    "Registration",
    "TimeoutEvent",
    "TimeoutPolicy",
    "arm_deadline",
    "arm_deadline_async",
    "arm_deadline_simpy",
    "with_timeout",
]

R = TypeVar("R")

_log = logging.getLogger(__name__)

CANCELLED: Final = "cancelled"
"""The reason a token gets when :meth:`CancellationToken.cancel` is given none."""

_Callback = Callable[[], object]
_LIVE: Final = object()  # the stored "reason" of a token that is not cancelled
_KEYS = itertools.count()  # registration keys; next() on a count is atomic in CPython


# --------------------------------------------------------------------------- exceptions


class OperationCancelled(Rebuildable, BaseException):
    """The operation was cancelled: raised by :meth:`CancellationToken.raise_if_cancelled`.

    ``reason`` is what the token was cancelled with (:data:`CANCELLED` by default, a
    :class:`DeadlineExceededError` when its deadline passed); ``token`` is the token that
    raised, when known (``None`` once the error is pickled: a token belongs to its process).

    Why :class:`BaseException` and not :class:`Exception`: cancellation is a request to
    stop, not a failure, and it must get through the ``except Exception:`` handlers that
    code puts around work in order to log, count, wrap or *retry* failures. A retry loop
    that caught it would retry the very work that was told to stop (this library's
    :class:`~patterns.resilience.retry.RetryPolicy` catches only :class:`Exception`, so
    cancellation passes through it untouched). Python made the same choice for
    :class:`asyncio.CancelledError` in 3.8, as Trio does for ``Cancelled``. Catch it
    explicitly where stopping needs cleanup, and let it propagate.

    Why not a subclass of :class:`asyncio.CancelledError`: inside a task asyncio treats
    that as *its own* cancellation (the task reports ``cancelled()``, the reason is lost,
    and ``asyncio.timeout`` and ``TaskGroup`` count cancellations they never requested).
    A token's cancellation is the application's; the asyncio driver translates between the
    two.
    """

    # A token is a lock, callbacks and a clock of this process: pickling sends None.
    _process_local = ("token",)

    def __init__(self, reason: object = CANCELLED, token: CancellationToken | None = None):
        if token is not None:
            _check_token("token", token)
        super().__init__()
        self.reason = reason
        self.token = token

    def __str__(self) -> str:
        return f"operation cancelled: {self.reason}"


class DeadlineExceededError(Rebuildable, TimeoutError):
    """A deadline passed: what a timed-out call raises, and the reason of an expired token.

    ``deadline`` is the clock reading at which it passed; ``timeout`` the duration that
    set it, when it was this call's own (``None`` when it came from a parent token).
    A :class:`TimeoutError` (an :class:`Exception`): for the *caller* a timeout is a
    failure like any other, which it may retry or report.
    """

    def __init__(self, deadline: float, timeout: float | None = None) -> None:
        require_finite("deadline", deadline)
        if timeout is not None:
            require_positive("timeout", timeout)
        super().__init__()
        self.deadline = deadline
        self.timeout = timeout

    def __str__(self) -> str:
        if self.timeout is not None:
            return f"timed out after {self.timeout:g} s (deadline {self.deadline:g})"
        return f"deadline {self.deadline:g} passed"


# --------------------------------------------------------------------------- the token


class Registration:
    """A callback registered with :meth:`CancellationToken.on_cancel`.

    :meth:`unregister` removes it; as a context manager it unregisters on exit.
    """

    __slots__ = ("_key", "_token")

    def __init__(self, token: CancellationToken | None, key: int) -> None:
        if token is not None:
            _check_token("token", token)
        if key.__class__ is not int:
            raise TypeError(f"key must be an int, got {key!r}")
        self._token = token
        self._key = key

    @property
    def active(self) -> bool:
        """Whether the callback is still registered (not run, not unregistered)."""
        token = self._token
        return token is not None and token._is_registered(self._key)

    def unregister(self) -> bool:
        """Remove the callback; return whether it was removed before it ran.

        ``False`` means the callback already ran (or started running: this does not wait
        for it), or was unregistered before. Safe to call from any thread, and more than
        once.
        """
        token, self._token = self._token, None
        return token is not None and token._unregister(self._key)

    def __enter__(self) -> Registration:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unregister()

    def __repr__(self) -> str:
        return f"Registration(active={self.active})"


class _SimEnvironment(Protocol):
    """The part of a ``simpy.Environment`` that the SimPy drivers use."""

    @property
    def now(self) -> float: ...

    @property
    def active_process(self) -> Any: ...

    def timeout(self, delay: float, value: Any = None) -> Any: ...

    def event(self) -> Any: ...

    def process(self, generator: Generator[Any, Any, Any]) -> Any: ...

    def any_of(self, events: list[Any]) -> Any: ...


class _EnvClock:
    """A clock that reads a SimPy environment's ``env.now``."""

    __slots__ = ("env",)

    def __init__(self, env: _SimEnvironment) -> None:
        self.env = env

    def now(self) -> float:
        return float(self.env.now)


def _check_clock(name: str, clock: object) -> Clock:
    return require_clock(name, clock)  # type: ignore[no-any-return]


def _check_env(env: object) -> _SimEnvironment:
    if isinstance(env, type) or not all(
            callable(getattr(env, method, None)) for method in ("timeout", "event", "process")):
        raise TypeError(f"env must be a simpy.Environment, got {env!r}")
    return env  # type: ignore[return-value]


def _check_token(name: str, token: object) -> CancellationToken:
    if not isinstance(token, CancellationToken):
        raise TypeError(f"{name} must be a CancellationToken, got {token!r}")
    return token


class CancellationToken:
    """A request to stop, shared by the code that asks and the work that obeys
    (guide section 4.4, ``CancellationToken`` and ``CascadingCancellation``).

    Parameters
    ----------
    deadline:
        A reading of ``clock`` at which the token cancels itself with a
        :class:`DeadlineExceededError` reason. ``None`` (default): no deadline.
    timeout:
        Instead of ``deadline``: seconds from now (``math.inf``: no deadline).
    clock:
        Where the deadline is read. Default the monotonic clock; tests pass a
        :class:`~patterns.clock.ManualClock`, simulations a clock reading ``env.now``.
    name:
        For ``repr`` and logs.

    **Cancelling.** :meth:`cancel` is idempotent: the first call wins and fixes the
    :attr:`reason`. It cancels every descendant (:meth:`child`) with the same reason,
    then runs the callbacks of the whole subtree, outside any lock, each exactly once
    (a callback that raises is logged; the others still run). Callbacks registered after
    cancellation run at once, in the registering thread.

    **Deadlines.** Whether the deadline has passed is decided by comparing
    ``clock.now()`` with it, nothing more (:meth:`deadline_passed`). Every query
    (:attr:`is_cancelled`, :attr:`reason`, :meth:`raise_if_cancelled`) makes that check, so
    work that looks at its token sees the deadline even if no timer runs. To have the
    *callbacks* run on time, arm a driver: :func:`arm_deadline` (a thread timer),
    :func:`arm_deadline_async` (``loop.call_later``) or :func:`arm_deadline_simpy`
    (``env.timeout``); :meth:`wait`, :meth:`wait_async` and :class:`TimeoutPolicy` do so
    for you. A child's deadline is the earlier of its own and its parent's.

    **Lifetime.** A child is linked into its parent until it is cancelled or
    :meth:`dispose` is called (also on leaving ``with token:``); dispose children that
    finish normally, or a long-lived parent keeps them all. Thread-safe.
    """

    __slots__ = ("_callbacks", "_children", "_lock", "_parent", "_reason", "clock", "deadline",
                 "name")

    def __init__(
        self,
        *,
        deadline: float | None = None,
        timeout: float | None = None,
        clock: Clock = MONOTONIC,
        name: str = "",
    ) -> None:
        self.clock: Clock = _check_clock("clock", clock)
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        self.name = name
        self.deadline: float | None = _deadline(self.clock, deadline, timeout)
        """When the token cancels itself (a reading of :attr:`clock`), or ``None``."""
        self._lock = threading.Lock()
        self._reason: object = _LIVE
        self._callbacks: dict[int, Callable[[], object]] = {}
        self._children: dict[CancellationToken, None] = {}
        self._parent: CancellationToken | None = None

    # ----------------------------------------------------------------- state

    @property
    def is_cancelled(self) -> bool:
        """Whether the token is cancelled (a passed deadline cancels it now)."""
        if self._reason is not _LIVE:
            return True
        deadline = self.deadline
        if deadline is not None and self.clock.now() >= deadline:
            self.cancel(DeadlineExceededError(deadline))
            return True
        return False

    @property
    def reason(self) -> object | None:
        """Why the token was cancelled (first reason wins), or ``None`` if it is not."""
        return self._reason if self.is_cancelled else None

    def raise_if_cancelled(self) -> None:
        """Raise :class:`OperationCancelled` (carrying the reason) if the token is cancelled."""
        if self.is_cancelled:
            raise OperationCancelled(self._reason, self)

    def deadline_passed(self, now: float) -> bool:
        """Whether the deadline has passed at clock reading ``now`` (pure: changes nothing)."""
        require_at_least("now", now, -math.inf)  # a real number, not NaN
        return self.deadline is not None and now >= self.deadline

    def remaining(self, now: float | None = None) -> float:
        """Seconds left until the deadline (>= 0), ``math.inf`` without one."""
        if now is not None:
            require_at_least("now", now, -math.inf)  # a real number, not NaN
        if self.deadline is None:
            return math.inf
        return max(0.0, self.deadline - (self.clock.now() if now is None else now))

    def check_deadline(self) -> bool:
        """Cancel the token if its deadline has passed; return whether it is cancelled.

        What the deadline drivers call when their timer fires.
        """
        return self.is_cancelled

    # ----------------------------------------------------------------- cancelling

    def cancel(self, reason: object = None) -> bool:
        """Cancel this token and all its descendants; return whether this call did it.

        ``reason`` (default :data:`CANCELLED`) is kept only by the first call. Callbacks
        run in this thread, after every token of the subtree is marked cancelled.
        """
        if reason is None:
            reason = CANCELLED
        marked = self._mark(reason)
        if marked is None:
            return False
        callbacks, children, parent = marked
        if parent is not None:
            parent._unlink(self)
        pending = deque(children)
        while pending:
            child_marked = pending.popleft()._mark(reason)
            if child_marked is not None:
                callbacks.extend(child_marked[0])
                pending.extend(child_marked[1])
        _run_callbacks(callbacks)
        return True

    def _mark(
        self, reason: object
    ) -> tuple[list[_Callback], list[CancellationToken], CancellationToken | None] | None:
        """Set the reason, detach callbacks and children; ``None`` if already cancelled."""
        with self._lock:
            if self._reason is not _LIVE:
                return None
            self._reason = reason
            callbacks = list(self._callbacks.values())
            children = list(self._children)
            parent = self._parent
            self._callbacks = {}
            self._children = {}
            self._parent = None
        return callbacks, children, parent

    def on_cancel(self, callback: Callable[[], object]) -> Registration:
        """Run ``callback()`` when the token is cancelled (at once if it already is).

        Returns a :class:`Registration`; unregister it when the work is done, so that a
        long-lived token does not keep the callback alive. Callbacks run outside any lock:
        they may cancel tokens, register or unregister callbacks.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        key = next(_KEYS)
        if self._reason is _LIVE and not self.is_cancelled:
            with self._lock:
                if self._reason is _LIVE:
                    self._callbacks[key] = callback
                    return Registration(self, key)
        _run_callbacks([callback])
        return Registration(None, key)

    def _unregister(self, key: int) -> bool:
        with self._lock:
            return self._callbacks.pop(key, None) is not None

    def _is_registered(self, key: int) -> bool:
        with self._lock:
            return key in self._callbacks

    # ----------------------------------------------------------------- the tree

    def child(
        self,
        *,
        deadline: float | None = None,
        timeout: float | None = None,
        clock: Clock | None = None,
        name: str = "",
    ) -> CancellationToken:
        """A new token cancelled whenever this one is (never the other way round).

        Its deadline is the earlier of ``deadline`` (or now + ``timeout``) and this
        token's; it reads time on ``clock`` (default: this token's clock). A child of a
        cancelled token is born cancelled, with the parent's reason.
        """
        chosen = self.clock if clock is None else _check_clock("clock", clock)
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        own = _deadline(chosen, deadline, timeout)
        inherited = self.deadline
        if own is None or (inherited is not None and inherited < own):
            own = inherited
        token = CancellationToken(deadline=own, clock=chosen, name=name)
        self.check_deadline()  # a passed deadline cancels this token before linking
        with self._lock:
            reason = self._reason
            if reason is _LIVE:
                self._children[token] = None
                token._parent = self
        if reason is not _LIVE:
            token.cancel(reason)
        return token

    def _unlink(self, child: CancellationToken) -> None:
        with self._lock:
            self._children.pop(child, None)

    def dispose(self) -> None:
        """Unlink from the parent: the parent no longer reaches (or keeps) this token.

        For a child whose work is over. The token itself stays usable: it can still be
        cancelled directly, and its callbacks stay registered. Idempotent.
        """
        with self._lock:
            parent, self._parent = self._parent, None
        if parent is not None:
            parent._unlink(self)

    @property
    def linked_children(self) -> int:
        """How many children are linked to this token now (not cancelled, not disposed)."""
        with self._lock:
            return len(self._children)

    def __enter__(self) -> CancellationToken:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.dispose()

    # ----------------------------------------------------------------- waiting

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the token is cancelled or ``timeout`` seconds pass; return whether
        it is cancelled.

        No polling: the thread sleeps on a :class:`threading.Event` that a callback sets.
        The wait also ends at the token's deadline (and cancels the token then), provided
        its clock runs in real time. ``timeout`` is seconds >= 0; ``None`` or ``math.inf``
        waits until the token is cancelled, and a huge finite one (``1e10``) is fine too.
        """
        if timeout is not None:
            require_non_negative("timeout", timeout)
        if self.is_cancelled:
            return True
        woken = threading.Event()
        registration = self.on_cancel(woken.set)
        try:
            give_up = math.inf if timeout is None else time.monotonic() + timeout
            while True:
                limit = min(self.remaining(), give_up - time.monotonic())
                if wait_event(woken, max(0.0, limit)):
                    return True
                if self.check_deadline():
                    return True
                if time.monotonic() >= give_up:
                    return False
        finally:
            registration.unregister()

    async def wait_async(self, timeout: float | None = None) -> bool:
        """Await cancellation, or ``timeout`` seconds; return whether the token is cancelled.

        No polling and no thread: a callback resolves a future on the running loop
        (from whichever thread cancels). The wait also ends at the token's deadline.
        ``timeout`` as for :meth:`wait`.
        """
        import asyncio

        if timeout is not None:
            require_non_negative("timeout", timeout)
        if self.is_cancelled:
            return True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_resolve, future)

        registration = self.on_cancel(wake)
        try:
            give_up = math.inf if timeout is None else loop.time() + timeout
            while True:
                limit = min(self.remaining(), give_up - loop.time())
                done, _ = await asyncio.wait(
                    {future}, timeout=None if math.isinf(limit) else max(0.0, limit))
                if done or self.check_deadline():
                    return True
                if loop.time() >= give_up:
                    return False
        finally:
            registration.unregister()

    def simpy_event(self, env: _SimEnvironment) -> Any:
        """A SimPy event that succeeds (with the reason) when the token is cancelled.

        Yield it, alone or raced against other events: ``yield request | token.simpy_event(env)``.
        If the token has a deadline, a timer process is armed for it
        (:func:`arm_deadline_simpy`; the token's clock must read ``env.now``). The
        registration lasts until the token is cancelled: for a token that lives much
        longer than the wait, use :meth:`on_cancel` and unregister instead.
        """
        event = _check_env(env).event()

        def fire() -> None:
            if not event.triggered:
                event.succeed(self._reason)

        self.on_cancel(fire)
        if not event.triggered:
            arm_deadline_simpy(env, self)
        return event

    def __repr__(self) -> str:
        state = "live" if self._reason is _LIVE else f"cancelled: {self._reason!r}"
        name = f"{self.name!r}, " if self.name else ""
        deadline = "" if self.deadline is None else f", deadline={self.deadline!r}"
        return f"CancellationToken({name}{state}{deadline})"


def _deadline(clock: Clock, deadline: float | None, timeout: float | None) -> float | None:
    if deadline is not None and timeout is not None:
        raise TypeError(f"give a deadline or a timeout, not both (got deadline={deadline!r}, "
                        f"timeout={timeout!r})")
    if timeout is not None:
        require_non_negative("timeout", timeout)
        if math.isinf(timeout):
            return None
        due = clock.now() + timeout
        return None if math.isinf(due) else due  # beyond the largest float: never
    if deadline is not None:
        return require_finite("deadline", deadline)
    return None


def _run_callbacks(callbacks: list[Callable[[], object]]) -> None:
    """Run every callback once. One that raises is logged and the others still run; a
    :class:`BaseException` other than :class:`OperationCancelled` (``KeyboardInterrupt``,
    ``SystemExit``) is re-raised once all have run."""
    escaping: BaseException | None = None
    for callback in callbacks:
        try:
            callback()
        except (Exception, OperationCancelled):
            _log.exception("cancellation callback %r failed", callback)
        except BaseException as error:
            if escaping is None:
                escaping = error
    if escaping is not None:
        try:
            raise escaping
        finally:
            escaping = None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# --------------------------------------------------------------------------- deadline drivers


class DeadlineTimer:
    """The blocking deadline driver: cancels a token at its deadline, from a timer thread.

    When it fires it asks the token (:meth:`CancellationToken.check_deadline`); if the
    token's clock says "not yet" (a clock that does not run in real time) it re-arms for
    the time remaining. It stops by itself when the token is cancelled in any other way,
    and :meth:`cancel` stops it early. All timers share one daemon thread
    (:func:`patterns._timers.shared_timer_thread`): arming one is a heap push, not a new
    thread, so a deadline on every call of a busy service costs microseconds. The token's
    cancel callbacks run on that thread: keep them short.
    """

    __slots__ = ("_handle", "_lock", "_registration", "_stopped", "_timers", "token")

    def __init__(self, token: CancellationToken, *, timers: TimerThread | None = None) -> None:
        if not isinstance(token, CancellationToken):
            raise TypeError(f"token must be a CancellationToken, got {token!r}")
        if timers is not None and not isinstance(timers, TimerThread):
            raise TypeError(f"timers must be a TimerThread, got {timers!r}")
        self.token = token
        self._timers = timers
        self._lock = threading.Lock()
        self._handle: TimerHandle | None = None
        self._stopped = False
        self._registration: Registration | None = None

    def start(self) -> DeadlineTimer:
        """Arm the timer (a no-op without a deadline); return ``self``."""
        if self.token.deadline is not None:
            self._registration = self.token.on_cancel(self.cancel)
            self._arm()
        return self

    def _arm(self) -> None:
        timers = self._timers or shared_timer_thread()
        with self._lock:
            if self._stopped:
                return
            self._handle = timers.schedule(max(0.0, self.token.remaining()), self._fire)

    def _fire(self) -> None:
        if not self.token.check_deadline():
            self._arm()

    def cancel(self) -> None:
        """Stop the timer; the token is left as it is."""
        with self._lock:
            self._stopped = True
            handle, self._handle = self._handle, None
            registration, self._registration = self._registration, None
        if handle is not None:
            handle.cancel()
        if registration is not None:
            registration.unregister()

    @property
    def running(self) -> bool:
        """Whether the timer is armed."""
        with self._lock:
            return not self._stopped and self._handle is not None


def arm_deadline(token: CancellationToken) -> DeadlineTimer:
    """Cancel ``token`` at its deadline from a timer thread; return the (started) timer."""
    return DeadlineTimer(token).start()


class _AsyncDeadline:
    __slots__ = ("handle", "loop", "registration", "token")

    def __init__(self, token: CancellationToken, loop: asyncio.AbstractEventLoop) -> None:
        self.token = token
        self.loop = loop
        self.handle: asyncio.TimerHandle | None = None
        self.registration: Registration | None = None

    def arm(self) -> None:
        self.handle = self.loop.call_later(self.token.remaining(), self.fire)

    def fire(self) -> None:
        if not self.token.check_deadline():
            self.arm()

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        if self.registration is not None:
            self.registration.unregister()
            self.registration = None


def arm_deadline_async(
    token: CancellationToken, loop: asyncio.AbstractEventLoop | None = None
) -> _AsyncDeadline | None:
    """Cancel ``token`` at its deadline from the event loop (``loop.call_later``).

    Returns a handle with ``cancel()``, or ``None`` when the token has no deadline or is
    already cancelled. Call it from the loop's thread (default: the running loop).
    """
    import asyncio

    _check_token("token", token)
    if loop is not None and not isinstance(loop, asyncio.AbstractEventLoop):
        raise TypeError(f"loop must be an asyncio event loop, got {loop!r}")
    if token.deadline is None or token.is_cancelled:
        return None
    timer = _AsyncDeadline(token, loop or asyncio.get_running_loop())
    timer.arm()
    def stop() -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: its timers are gone anyway
            timer.loop.call_soon_threadsafe(timer.cancel)

    timer.registration = token.on_cancel(stop)
    return timer


def arm_deadline_simpy(env: _SimEnvironment, token: CancellationToken) -> Any:
    """Cancel ``token`` at its deadline in simulated time; return the timer process.

    Returns ``None`` when the token has no deadline or is already cancelled. The token's
    clock must read ``env.now`` (``simulations.kit.SimClock(env)``); a token on another
    clock is refused with :class:`ValueError`.
    """
    _check_env(env)
    _check_token("token", token)
    if token.deadline is None or token.is_cancelled:
        return None
    _require_env_clock(env, "token", token)

    def timer() -> Generator[Any, Any, None]:
        while not token.check_deadline():
            yield env.timeout(token.remaining())

    return env.process(timer())


def _require_env_clock(env: _SimEnvironment, name: str, token: CancellationToken) -> None:
    if token.deadline is not None and token.clock.now() != env.now:
        raise ValueError(
            f"{name}'s clock must read env.now ({env.now!r}) for its deadline to mean "
            f"simulated time, but it reads {token.clock.now()!r}: create the token with "
            f"clock=SimClock(env)"
        )


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class TimeoutEvent:
    """Something a :class:`TimeoutPolicy` call did, at ``time``, ``elapsed`` seconds in."""

    time: float
    elapsed: float


@dataclass(frozen=True, slots=True)
class CallFinished(TimeoutEvent):
    """The operation ended before its deadline: returned, or raised ``error``."""

    error: BaseException | None


@dataclass(frozen=True, slots=True)
class CallTimedOut(TimeoutEvent):
    """The deadline passed first; the operation's token was cancelled."""

    deadline: float


@dataclass(frozen=True, slots=True)
class CallCancelled(TimeoutEvent):
    """A parent token (or the caller) cancelled the operation for ``reason``."""

    reason: object


# --------------------------------------------------------------------------- the policy


def _reraise(error: BaseException) -> NoReturn:
    """Raise ``error`` without leaving it in a local of the caller (no reference cycle)."""
    try:
        raise error
    finally:
        del error


def _defuse(event: Any) -> None:
    """SimPy callback: a work process that fails after we stopped waiting is not a crash."""
    if not event.ok:
        event.defused = True


class TimeoutPolicy:
    """Run an operation with a deadline that also cancels it (guide section 4.4,
    ``with_timeout`` and ``with_timeout_cancellation``).

    Parameters
    ----------
    timeout:
        Seconds each call may take (> 0). ``math.inf``: no deadline of its own, only
        cancellation linked to a ``parent`` (the guide's ``with_cancellation``).
    clock:
        Where the blocking and asyncio drivers read time (the SimPy driver reads
        ``env.now``).
    listeners:
        Receive :class:`CallFinished`, :class:`CallTimedOut` and :class:`CallCancelled`.

    Each call creates a token for the operation (a child of ``parent`` if given, with
    deadline ``now + timeout``, or the parent's if that is earlier) and passes it to the
    operation, which should check it or register cleanup on it. The call

    * returns the operation's result if it finished before the deadline;
    * raises :class:`DeadlineExceededError` (a :class:`TimeoutError`) if the deadline passed
      first, after cancelling the token, whatever the operation did after that (a late
      result is discarded: as with any timeout, the work may still have happened);
    * raises :class:`OperationCancelled` if ``parent`` was cancelled first;
    * re-raises the operation's own exception otherwise.

    The drivers differ in how the operation is stopped:

    * :meth:`call` runs it in the calling thread (a timer thread cancels the token on time,
      so its callbacks can unblock I/O), or in an ``executor``: then the caller stops
      waiting at the deadline and a queued operation never starts. Threads cannot be
      killed: work that ignores its token runs on.
    * :meth:`acall` cancels the asyncio task running the operation.
    * :meth:`simpy_call` interrupts the SimPy process running the operation.
    """

    __slots__ = ("clock", "listeners", "timeout")

    def __init__(
        self,
        timeout: float,
        *,
        clock: Clock = MONOTONIC,
        listeners: Listeners[TimeoutEvent] | None = None,
    ) -> None:
        self.timeout = require_positive("timeout", timeout)
        self.clock: Clock = _check_clock("clock", clock)
        if listeners is not None and not isinstance(listeners, Listeners):
            raise TypeError(f"listeners must be a Listeners, got {listeners!r}")
        self.listeners: Listeners[TimeoutEvent] = (
            listeners if listeners is not None else Listeners()
        )

    def token(
        self, parent: CancellationToken | None = None, *, clock: Clock | None = None
    ) -> CancellationToken:
        """The token for one call: deadline ``timeout`` from now, linked to ``parent``."""
        chosen = self.clock if clock is None else clock
        if parent is None:
            return CancellationToken(timeout=self.timeout, clock=chosen)
        if not isinstance(parent, CancellationToken):
            raise TypeError(f"parent must be a CancellationToken, got {parent!r}")
        return parent.child(timeout=self.timeout, clock=chosen)

    # ----------------------------------------------------------------- blocking

    def call(
        self,
        fn: Callable[[CancellationToken], R],
        *,
        parent: CancellationToken | None = None,
        executor: Executor | None = None,
    ) -> R:
        """Call ``fn(token)`` with a deadline; see the class for what is returned or raised.

        Without ``executor``, ``fn`` runs in this thread and the call returns when it
        does. With one, ``fn`` is submitted to it and this thread waits (no polling) until
        it finishes, the deadline passes or ``parent`` is cancelled, whichever is first.

        A blocking driver cannot await: a coroutine function (``async def``, or an object
        whose ``__call__`` is one) is refused up front with :class:`TypeError`, and so is
        an awaitable returned by a plain ``fn`` (a coroutine is closed first); use
        :meth:`acall`.
        """
        reject_coroutine_function(fn, "TimeoutPolicy.call")
        if executor is not None and not isinstance(executor, Executor):
            raise TypeError(f"executor must be a concurrent.futures.Executor, got {executor!r}")
        run = _Call(self, parent, self.clock)
        token = run.token
        try:
            run.raise_if_stopped(None)
            if executor is None:
                return self._call_here(run, fn)
            return self._call_in(run, fn, executor)
        finally:
            token.dispose()

    @staticmethod
    def _call_here(run: _Call, fn: Callable[[CancellationToken], R]) -> R:
        timer = arm_deadline(run.token)
        try:
            result = fn(run.token)
        except (Exception, OperationCancelled) as error:
            run.raise_if_stopped(error)
            run.finished(error)
            raise
        finally:
            timer.cancel()
        reject_awaitable_result(result, "TimeoutPolicy.call", fn)
        return run.result(result)

    @staticmethod
    def _call_in(run: _Call, fn: Callable[[CancellationToken], R], executor: Executor) -> R:
        token = run.token
        future = executor.submit(fn, token)
        woken = threading.Event()
        future.add_done_callback(lambda _: woken.set())
        registration = token.on_cancel(woken.set)
        try:
            while not future.done() and not token.is_cancelled:
                wait_event(woken, token.remaining())
        finally:
            registration.unregister()
        if not future.done():
            future.cancel()  # not started yet: it never will be
            run.raise_stopped(None)
        try:
            result = future.result()
        except (Exception, OperationCancelled) as error:
            run.raise_if_stopped(error)
            run.finished(error)
            raise
        reject_awaitable_result(result, "TimeoutPolicy.call", fn)
        return run.result(result)

    # ----------------------------------------------------------------- asyncio

    async def acall(
        self,
        fn: Callable[[CancellationToken], Awaitable[R]],
        *,
        parent: CancellationToken | None = None,
    ) -> R:
        """Await ``fn(token)`` with a deadline; see the class for what is returned or raised.

        When the token is cancelled (its deadline, ``parent``, from any thread) the task
        awaiting ``fn`` is cancelled, so ``fn`` sees :class:`asyncio.CancelledError` at its
        current ``await``; the call then raises :class:`DeadlineExceededError` or
        :class:`OperationCancelled` instead. If the task is cancelled from outside, the
        token is cancelled too (so work linked to it stops) and the ``CancelledError``
        propagates as asyncio expects.
        """
        import asyncio

        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        if parent is not None:
            _check_token("parent", parent)
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("TimeoutPolicy.acall() must run inside an asyncio task")
        run = _Call(self, parent, self.clock)
        token = run.token
        if token.is_cancelled:
            token.dispose()
            run.raise_stopped(None)
        canceller = _TaskCanceller(loop, task, token)
        registration = token.on_cancel(canceller.request)
        timer = arm_deadline_async(token, loop)
        try:
            try:
                result = await fn(token)
            except asyncio.CancelledError as error:
                canceller.running = False
                if canceller.delivered and task.uncancel() == 0:
                    run.raise_stopped(error)  # ours alone: the token says why
                token.cancel("the calling task was cancelled")
                raise
            except (Exception, OperationCancelled) as error:
                canceller.running = False
                if canceller.delivered:
                    task.uncancel()
                run.raise_if_stopped(error)
                run.finished(error)
                raise
            canceller.running = False
            if canceller.delivered:
                task.uncancel()
            return run.result(result)
        finally:
            canceller.running = False
            if timer is not None:
                timer.cancel()
            registration.unregister()
            token.dispose()

    # ----------------------------------------------------------------- SimPy

    def simpy_call(
        self,
        env: _SimEnvironment,
        fn: Callable[[CancellationToken], Generator[Any, Any, R]],
        *,
        parent: CancellationToken | None = None,
    ) -> Generator[Any, Any, R]:
        """Run ``fn(token)`` (a SimPy process body) with a deadline in simulated time.

        Use it inside a process: ``value = yield from policy.simpy_call(env, work)``. The
        work runs as its own process, raced against ``env.timeout`` and the token. When the
        token is cancelled the work process is interrupted with a ``simpy.Interrupt``
        whose ``cause`` is an :class:`OperationCancelled`, and the caller gets
        :class:`DeadlineExceededError` or :class:`OperationCancelled` at once (it does not wait
        for the work to unwind; a failure of the abandoned process is defused). A
        ``parent`` token with a deadline must read ``env.now``. The arguments are checked
        when this is called, before the process runs.
        """
        _check_env(env)
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        if parent is not None:
            _check_token("parent", parent)
            _require_env_clock(env, "parent", parent)
        return self._simpy_call(env, fn, parent)

    def _simpy_call(
        self,
        env: _SimEnvironment,
        fn: Callable[[CancellationToken], Generator[Any, Any, R]],
        parent: CancellationToken | None,
    ) -> Generator[Any, Any, R]:
        run = _Call(self, parent, _EnvClock(env))
        token = run.token
        try:
            run.raise_if_stopped(None)
            process = env.process(fn(token))
            woken = env.event()

            def on_cancel() -> None:
                if not woken.triggered:
                    woken.succeed()
                if process.is_alive:
                    if env.active_process is not process:  # (a process cannot interrupt itself)
                        process.interrupt(OperationCancelled(token._reason, token))
                    process.callbacks.append(_defuse)  # nobody waits for it any more

            registration = token.on_cancel(on_cancel)
            waits = [process, woken]
            if token.deadline is not None:
                waits.append(env.timeout(token.remaining()))
            try:
                while not process.triggered and not token.is_cancelled:
                    try:
                        yield env.any_of(waits)
                    except BaseException as error:
                        if process.triggered and not process.ok:
                            break  # the work failed: handled below
                        # the caller's own process was interrupted: stop the work too
                        token.cancel(error)
                        raise
                    if token.deadline is not None and not token.is_cancelled:
                        waits[2] = env.timeout(token.remaining())
            finally:
                registration.unregister()
            if not process.triggered:
                run.raise_stopped(None)
            if not process.ok:
                run.raise_if_stopped(process.value)
                run.finished(process.value)
                _reraise(process.value)
            value: R = process.value
            return run.result(value)
        finally:
            token.dispose()

    def __repr__(self) -> str:
        return f"TimeoutPolicy(timeout={self.timeout!r})"


class _TaskCanceller:
    """Turns a token's cancellation into ``task.cancel()``, only while the operation runs."""

    __slots__ = ("delivered", "loop", "running", "task", "token")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any], token: CancellationToken
    ) -> None:
        self.loop = loop
        self.task = task
        self.token = token
        self.running = True
        self.delivered = False

    def request(self) -> None:  # a token callback: any thread
        with contextlib.suppress(RuntimeError):  # a closed loop: nothing left to cancel
            self.loop.call_soon_threadsafe(self.deliver)

    def deliver(self) -> None:  # in the loop's thread
        if self.running and not self.delivered:
            self.delivered = True
            self.task.cancel(f"token cancelled: {self.token._reason}")


class _Call:
    """One call of a :class:`TimeoutPolicy`: its token, and the outcome rules of every driver."""

    __slots__ = ("clock", "own_deadline", "policy", "start", "token")

    def __init__(
        self, policy: TimeoutPolicy, parent: CancellationToken | None, clock: Clock
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.start = clock.now()
        self.own_deadline = self.start + policy.timeout
        self.token = policy.token(parent, clock=clock)

    def raise_if_stopped(self, cause: BaseException | None) -> None:
        """If the token is cancelled, raise what the caller gets (from ``cause``)."""
        if self.token.is_cancelled:
            self.raise_stopped(cause)

    def raise_stopped(self, cause: BaseException | None) -> NoReturn:
        """Raise :class:`DeadlineExceededError` or :class:`OperationCancelled` (event emitted).

        The token must be cancelled. No local variable holds the new exception, so no
        frame of the traceback forms a reference cycle with it.
        """
        try:
            raise self._stopped_error() from cause
        finally:
            cause = None

    def _stopped_error(self) -> BaseException:
        now = self.clock.now()
        token = self.token
        reason = token._reason
        listeners = self.policy.listeners
        if isinstance(reason, DeadlineExceededError):
            own = reason.deadline >= self.own_deadline
            if listeners.snapshot:
                listeners.emit(CallTimedOut(now, now - self.start, reason.deadline))
            return DeadlineExceededError(reason.deadline, self.policy.timeout if own else None)
        if listeners.snapshot:
            listeners.emit(CallCancelled(now, now - self.start, reason))
        return OperationCancelled(reason, token)

    def finished(self, error: BaseException | None) -> None:
        if self.policy.listeners.snapshot:
            now = self.clock.now()
            self.policy.listeners.emit(CallFinished(now, now - self.start, error))

    def result(self, value: R) -> R:
        """The operation returned ``value``: return it, unless the token is cancelled."""
        self.raise_if_stopped(None)
        self.finished(None)
        return value


def with_timeout(
    fn: Callable[[CancellationToken], R],
    timeout: float,
    *,
    parent: CancellationToken | None = None,
    executor: Executor | None = None,
    clock: Clock = MONOTONIC,
) -> R:
    """The guide's ``with_timeout_cancellation``: ``TimeoutPolicy(timeout).call(fn, ...)``."""
    return TimeoutPolicy(timeout, clock=clock).call(fn, parent=parent, executor=executor)
