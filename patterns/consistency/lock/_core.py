"""Lease locks with fencing tokens (guide section 5.1, 分布式锁): the shared core.

A :class:`LockStore` grants *leases*: a lock held by one owner until ``ttl`` seconds have
passed, unless the owner extends it first. Every grant carries a **fencing token**, an
integer that grows with every grant of a lock name and is never reused, not even after a
lease expires. A resource that remembers the highest token it has seen
(:class:`FencedResource`) can then reject a write from a holder whose lease has already
expired, which a lease alone cannot prevent: a process paused (GC, swap, a stopped VM)
longer than its lease wakes up still *believing* it holds the lock.

The store only decides (``try_acquire``, ``extend``, ``release``: no waiting, no sleeping);
the drivers :func:`acquire`, :func:`aacquire` and :func:`simpy_acquire` wait and retry,
and :func:`locked` / :func:`alocked` hold a lease for the length of a ``with`` block.

What the guide's sketch gets wrong, and this module does instead:

* No fencing token: its ``LockGuard`` has only a key and a random value. Here every
  :class:`Lease` carries :attr:`Lease.fencing_token`.
* Its ``AutoRenewGuard`` logs a failed renewal and stops renewing, while the holder carries
  on as if it still held the lock. Here :class:`LeaseRenewer` sets :attr:`LeaseRenewer.lost`,
  calls ``on_lost`` and makes :meth:`LeaseRenewer.check` raise :class:`LockLostError`.
* It releases from ``Drop`` (a destructor, building a new runtime inside one): in Python a
  destructor runs late or never. Here release is explicit, or done by a context manager.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol, runtime_checkable

from patterns._errors import Rebuildable
from patterns._validation import (
    require_clock,
    require_finite,
    require_finite_positive,
    require_non_negative,
)
from patterns.clock import MONOTONIC, WALL_CLOCK, Clock, MonotonicClock, WallClock
from patterns.events import Listeners

__all__ = [
    "MAX_TTL",
    "WALL",
    "FencedResource",
    "InMemoryLockStore",
    "Lease",
    "LeaseRenewer",
    "LockAcquired",
    "LockError",
    "LockEvent",
    "LockExtended",
    "LockLost",
    "LockLostError",
    "LockRefused",
    "LockReleased",
    "LockStore",
    "LockTimeoutError",
    "StaleTokenError",
    "WallClock",
    "aacquire",
    "acquire",
    "alocked",
    "locked",
    "simpy_acquire",
]


WALL: Final[WallClock] = WALL_CLOCK
"""The host's wall clock, shared by every process of one machine: the default of
:class:`~patterns.consistency.lock.sqlite.SQLiteLockStore`, whose expiry times are compared
by different processes. A step of the wall clock shortens or lengthens leases by the step;
fencing tokens keep writes safe regardless."""


# --------------------------------------------------------------------------- errors


class LockError(Rebuildable, Exception):
    """Base class of the lock errors."""


class LockLostError(LockError):
    """The lease is no longer held by its owner (expired, or taken by another owner)."""

    def __init__(self, name: str, owner: str, reason: str = "the lease is not held") -> None:
        super().__init__(f"lock {name!r} lost by owner {owner!r}: {reason}")
        self.name = name
        self.owner = owner
        self.reason = reason


class LockTimeoutError(LockError):
    """A waiting acquire gave up after ``timeout`` seconds."""

    def __init__(self, name: str, timeout: float, attempts: int) -> None:
        super().__init__(
            f"lock {name!r} not acquired within {timeout!r} s ({attempts} attempts)")
        self.name = name
        self.timeout = timeout
        self.attempts = attempts


class StaleTokenError(LockError):
    """A write carried a fencing token older than one the resource has already seen."""

    def __init__(self, resource: str, token: int, highest: int) -> None:
        super().__init__(
            f"stale fencing token {token} for resource {resource!r}: "
            f"token {highest} has already been seen (the writer's lease expired)")
        self.resource = resource
        self.token = token
        self.highest = highest


# --------------------------------------------------------------------------- lease + events


@dataclass(frozen=True, slots=True)
class Lease:
    """One grant of a lock: who holds it, until when, and its fencing token.

    ``expires_at`` is a reading of the store's clock (for Redis: the client's clock when
    the request was sent, plus the TTL, an estimate that is never later than the server's
    expiry). ``owner`` is the secret that extend and release must present.
    """

    name: str
    owner: str
    fencing_token: int
    expires_at: float
    ttl: float

    def __post_init__(self) -> None:
        ttl, expires = self.ttl, self.expires_at
        if (type(self.name) is str and self.name and type(self.owner) is str and self.owner
                and type(self.fencing_token) is int and self.fencing_token >= 0
                and type(expires) is float and -_INF < expires < _INF
                and type(ttl) is float and 0.0 < ttl <= MAX_TTL):
            return  # the stores' leases: checked in a few comparisons
        check_name(self.name)
        if not isinstance(self.owner, str) or not self.owner:
            raise ValueError(f"owner must be a non-empty string, got {self.owner!r}")
        if isinstance(self.fencing_token, bool) or not isinstance(self.fencing_token, int):
            raise TypeError(f"fencing_token must be an int, got {self.fencing_token!r}")
        if self.fencing_token < 0:
            raise ValueError(f"fencing_token must be >= 0, got {self.fencing_token!r}")
        require_finite("expires_at", self.expires_at)
        check_ttl(self.ttl)

    def remaining(self, now: float) -> float:
        """Seconds left at time ``now`` (negative once expired)."""
        return self.expires_at - require_finite("now", now)


@dataclass(frozen=True, slots=True)
class LockEvent:
    """Something a lock store did, at time ``at`` of its clock."""

    at: float
    name: str


@dataclass(frozen=True, slots=True)
class LockAcquired(LockEvent):
    owner: str
    fencing_token: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class LockRefused(LockEvent):
    """A ``try_acquire`` found the lock held by someone else."""


@dataclass(frozen=True, slots=True)
class LockExtended(LockEvent):
    owner: str
    fencing_token: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class LockReleased(LockEvent):
    owner: str
    fencing_token: int


@dataclass(frozen=True, slots=True)
class LockLost(LockEvent):
    """An extend or release found the lease no longer held by ``owner``."""

    owner: str
    fencing_token: int


# --------------------------------------------------------------------------- validation


def check_name(name: object) -> str:
    """``name`` is a non-empty string."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {name!r} ({type(name).__name__})")
    if not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    return name


_INF: Final = float("inf")

MAX_TTL: Final = 365 * 86_400.0
"""The longest lease (and renewal or retry interval) accepted, in seconds: one year.
Longer values would overflow timers and waits (``threading`` stops at about 9.2e9 s)."""


def check_ttl(ttl: float, param: str = "ttl") -> float:
    """``ttl`` is a finite number of seconds > 0, at most :data:`MAX_TTL`."""
    require_finite_positive(param, ttl)
    if ttl > MAX_TTL:
        raise ValueError(f"{param} must be at most {MAX_TTL!r} s, got {ttl!r}")
    return float(ttl)


def check_lease(lease: object) -> Lease:
    if not isinstance(lease, Lease):
        raise TypeError(f"lease must be a Lease, got {lease!r} ({type(lease).__name__})")
    return lease


def check_extend(lease: object, ttl: float | None) -> tuple[Lease, float]:
    """The lease and the ttl an ``extend`` uses (the lease's own if ``ttl`` is None)."""
    checked = check_lease(lease)
    if ttl is None:
        return checked, check_ttl(checked.ttl, "lease.ttl")
    return checked, check_ttl(ttl)


def check_clock(clock: object) -> Clock:
    return require_clock("clock", clock)  # type: ignore[no-any-return]


def check_persistent_clock(clock: object) -> Clock:
    """A clock whose readings mean the same in every process and after a reboot.

    A monotonic clock's origin is arbitrary (seconds since boot on Linux): a deadline
    stored with it by one process means nothing to another process or after a reboot.
    """
    check_clock(clock)
    if isinstance(clock, MonotonicClock):
        raise ValueError(f"clock must mean the same across processes and reboots "
                         f"(WALL_CLOCK), got {clock!r}: deadlines are stored")
    return clock  # type: ignore[return-value]


def new_owner() -> str:
    """A fresh, unguessable owner secret for one grant."""
    return secrets.token_hex(16)


# --------------------------------------------------------------------------- store protocol


@runtime_checkable
class LockStore(Protocol):
    """Where leases live. Every method decides at once; none waits.

    * :meth:`try_acquire` grants a new lease (fresh owner, next fencing token) if the lock
      is free or its lease has expired, else returns ``None``.
    * :meth:`extend` pushes the expiry of a lease still held by its owner to ``now + ttl``
      and returns the updated lease; otherwise raises :class:`LockLostError`.
    * :meth:`release` frees a lease still held by its owner and returns ``True``; returns
      ``False`` (and touches nothing) if the lease expired or another owner holds the lock.
    * :meth:`holder` is the lease held now, if any (for observation, not for decisions).
    """

    clock: Clock
    listeners: Listeners[LockEvent]

    def try_acquire(self, name: str, ttl: float) -> Lease | None: ...

    def extend(self, lease: Lease, ttl: float | None = None) -> Lease: ...

    def release(self, lease: Lease) -> bool: ...

    def holder(self, name: str) -> Lease | None: ...


class InMemoryLockStore:
    """Leases in a dict, for one process: simulations and fast tests. Thread-safe.

    Fencing tokens count per name from 1 and survive expiry and release.
    """

    __slots__ = ("_held", "_lock", "_tokens", "clock", "listeners")

    def __init__(self, *, clock: Clock = MONOTONIC) -> None:
        self.clock = check_clock(clock)
        self.listeners: Listeners[LockEvent] = Listeners()
        self._lock = threading.Lock()
        self._held: dict[str, Lease] = {}
        self._tokens: dict[str, int] = {}

    def try_acquire(self, name: str, ttl: float) -> Lease | None:
        check_name(name)
        ttl = check_ttl(ttl)
        with self._lock:
            now = self.clock.now()
            current = self._held.get(name)
            if current is not None and now < current.expires_at:
                lease = None
            else:
                token = self._tokens.get(name, 0) + 1
                self._tokens[name] = token
                lease = Lease(name, new_owner(), token, now + ttl, ttl)
                self._held[name] = lease
        if self.listeners.snapshot:
            if lease is None:
                self.listeners.emit(LockRefused(now, name))
            else:
                self.listeners.emit(
                    LockAcquired(now, name, lease.owner, lease.fencing_token, lease.expires_at))
        return lease

    def _is_held(self, lease: Lease, now: float) -> bool:
        current = self._held.get(lease.name)
        return current is not None and current.owner == lease.owner and now < current.expires_at

    def extend(self, lease: Lease, ttl: float | None = None) -> Lease:
        lease, ttl = check_extend(lease, ttl)
        with self._lock:
            now = self.clock.now()
            held = self._is_held(lease, now)
            if held:
                lease = replace(lease, expires_at=now + ttl, ttl=ttl)
                self._held[lease.name] = lease
        if not held:
            self.listeners.emit(LockLost(now, lease.name, lease.owner, lease.fencing_token))
            raise LockLostError(lease.name, lease.owner, "the lease expired before extend")
        if self.listeners.snapshot:
            self.listeners.emit(LockExtended(now, lease.name, lease.owner,
                                             lease.fencing_token, lease.expires_at))
        return lease

    def release(self, lease: Lease) -> bool:
        check_lease(lease)
        with self._lock:
            now = self.clock.now()
            held = self._is_held(lease, now)
            if held:
                del self._held[lease.name]
        if self.listeners.snapshot:
            event: LockEvent = (LockReleased if held else LockLost)(
                now, lease.name, lease.owner, lease.fencing_token)
            self.listeners.emit(event)
        return held

    def holder(self, name: str) -> Lease | None:
        check_name(name)
        with self._lock:
            current = self._held.get(name)
            if current is None or self.clock.now() >= current.expires_at:
                return None
            return current

    def __repr__(self) -> str:
        return f"InMemoryLockStore({len(self._held)} leases, clock={self.clock!r})"


# --------------------------------------------------------------------------- drivers


def _check_store(store: object, method: str) -> None:
    """``store`` has what a driver uses: ``method`` and a ``clock``."""
    if not callable(getattr(store, method, None)) or not isinstance(
            getattr(store, "clock", None), Clock):
        raise TypeError(f"store must be a LockStore ({method}() and a clock), got {store!r}")


def _check_wait(store: object, name: str, ttl: float, timeout: float | None,
                retry_interval: float) -> float | None:
    """Check a driver's arguments before its first attempt; ``inf`` timeout -> ``None``."""
    _check_store(store, "try_acquire")
    check_name(name)
    check_ttl(ttl)
    if timeout is not None:
        require_non_negative("timeout", timeout)
        if timeout == float("inf"):
            timeout = None
    check_ttl(retry_interval, "retry_interval")
    return timeout


def _next_wait(start: float, now: float, timeout: float | None,
               retry_interval: float) -> float | None:
    """How long to wait before the next attempt, or ``None`` to give up."""
    if timeout is None:
        return retry_interval
    left = start + timeout - now
    if left <= 0:
        return None
    return min(retry_interval, left)


def acquire(store: LockStore, name: str, ttl: float, *, timeout: float | None = None,
            retry_interval: float = 0.05,
            sleep: Callable[[float], object] = time.sleep) -> Lease:
    """Try until the lock is granted; raise :class:`LockTimeoutError` after ``timeout`` s.

    ``timeout=None`` (or ``math.inf``) waits forever; ``timeout=0`` tries once. Blocks
    with ``sleep``, at most ``retry_interval`` (<= :data:`MAX_TTL`) at a time.
    """
    timeout = _check_wait(store, name, ttl, timeout, retry_interval)
    if not callable(sleep):
        raise TypeError(f"sleep must be callable, got {sleep!r}")
    start = store.clock.now()
    attempts = 0
    while True:
        attempts += 1
        lease = store.try_acquire(name, ttl)
        if lease is not None:
            return lease
        wait = _next_wait(start, store.clock.now(), timeout, retry_interval)
        if wait is None:
            raise LockTimeoutError(name, timeout or 0.0, attempts)
        sleep(wait)


async def aacquire(store: LockStore, name: str, ttl: float, *, timeout: float | None = None,
                   retry_interval: float = 0.05) -> Lease:
    """:func:`acquire` for asyncio: waits with :func:`asyncio.sleep`.

    The store call itself is synchronous (in-memory and SQLite stores answer in
    microseconds to milliseconds).
    """
    import asyncio

    timeout = _check_wait(store, name, ttl, timeout, retry_interval)
    start = store.clock.now()
    attempts = 0
    while True:
        attempts += 1
        lease = store.try_acquire(name, ttl)
        if lease is not None:
            return lease
        wait = _next_wait(start, store.clock.now(), timeout, retry_interval)
        if wait is None:
            raise LockTimeoutError(name, timeout or 0.0, attempts)
        await asyncio.sleep(wait)


class _SimEnvironment(Protocol):
    @property
    def now(self) -> float: ...

    def timeout(self, delay: float) -> Any: ...


def simpy_acquire(env: _SimEnvironment, store: LockStore, name: str, ttl: float, *,
                  timeout: float | None = None,
                  retry_interval: float = 0.05) -> Generator[Any, Any, Lease]:
    """:func:`acquire` in simulated time: ``lease = yield from simpy_acquire(env, ...)``.

    The store should read the simulation's clock (``SimClock(env)``). Arguments are
    checked at the call, before the generator runs.
    """
    _check_env(env)
    timeout = _check_wait(store, name, ttl, timeout, retry_interval)
    return _simpy_acquire(env, store, name, ttl, timeout, retry_interval)


def _check_env(env: object) -> None:
    if not (hasattr(env, "now") and callable(getattr(env, "timeout", None))):
        raise TypeError(f"env must be a SimPy environment (now, timeout()), got {env!r}")


def _simpy_acquire(env: _SimEnvironment, store: LockStore, name: str, ttl: float,
                   timeout: float | None, retry_interval: float
                   ) -> Generator[Any, Any, Lease]:
    start = env.now
    attempts = 0
    while True:
        attempts += 1
        lease = store.try_acquire(name, ttl)
        if lease is not None:
            return lease
        wait = _next_wait(start, env.now, timeout, retry_interval)
        if wait is None:
            raise LockTimeoutError(name, timeout or 0.0, attempts)
        yield env.timeout(wait)


@contextmanager
def locked(store: LockStore, name: str, ttl: float, *, timeout: float | None = None,
           retry_interval: float = 0.05,
           sleep: Callable[[float], object] = time.sleep) -> Iterator[Lease]:
    """Hold a lease for the ``with`` block, released on the way out (never by a destructor).

    If the block ends normally but the lease was no longer held at release (it expired
    during the block), :class:`LockLostError` is raised: the block ran without mutual
    exclusion, and the caller must know. Pass :attr:`Lease.fencing_token` to every
    resource written inside the block.
    """
    lease = acquire(store, name, ttl, timeout=timeout, retry_interval=retry_interval,
                    sleep=sleep)
    failed = False
    try:
        yield lease
    except BaseException:
        failed = True
        raise
    finally:
        released = store.release(lease)
        if not released and not failed:
            raise LockLostError(name, lease.owner, "the lease expired inside the with block")


@asynccontextmanager
async def alocked(store: LockStore, name: str, ttl: float, *, timeout: float | None = None,
                  retry_interval: float = 0.05) -> AsyncIterator[Lease]:
    """:func:`locked` for ``async with``."""
    lease = await aacquire(store, name, ttl, timeout=timeout, retry_interval=retry_interval)
    failed = False
    try:
        yield lease
    except BaseException:
        failed = True
        raise
    finally:
        released = store.release(lease)
        if not released and not failed:
            raise LockLostError(name, lease.owner, "the lease expired inside the with block")


# --------------------------------------------------------------------------- renewal


class LeaseRenewer:
    """Keeps a lease alive by extending it every ``interval`` s, and says when it is lost.

    Implements the guide's ``AutoRenewLock`` / ``AutoRenewGuard`` (section 5.1), fixed:
    a failed renewal is not just logged. When an extend finds the lease gone, or no
    extend has succeeded before the lease's expiry (the store unreachable, the process
    paused), the renewer

    * sets :attr:`lost` (a :class:`threading.Event`), so :meth:`held` turns false and
      :meth:`check` raises :class:`LockLostError`;
    * calls ``on_lost(lease, reason)`` once, outside any lock.

    The holder must still pass the fencing token to the resource: a renewer cannot
    renew while its whole process is paused, and it learns of the loss only afterwards.

    :meth:`renew` is one step (decides, never waits). Drivers: :meth:`start` / ``with``
    (a daemon thread), :meth:`arun` (an asyncio task body), :meth:`simpy_run` (a SimPy
    process body).
    """

    def __init__(self, store: LockStore, lease: Lease, *, interval: float | None = None,
                 ttl: float | None = None,
                 on_lost: Callable[[Lease, str], object] | None = None) -> None:
        _check_store(store, "extend")
        self.store = store
        self._lease, self.ttl = check_extend(lease, ttl)
        self.interval = self.ttl / 3 if interval is None else check_ttl(interval, "interval")
        if self.interval >= self.ttl:
            raise ValueError(
                f"interval must be shorter than ttl ({self.ttl!r} s), got {self.interval!r}")
        if on_lost is not None and not callable(on_lost):
            raise TypeError(f"on_lost must be callable, got {on_lost!r}")
        self.on_lost = on_lost
        self.lost = threading.Event()
        self.lost_reason: str | None = None
        self.renewals = 0
        self.last_error: BaseException | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def lease(self) -> Lease:
        """The lease as last extended."""
        return self._lease

    def held(self) -> bool:
        """Whether the holder may still act: not lost, and not past the lease's expiry."""
        if self.lost.is_set():
            return False
        if self.store.clock.now() >= self._lease.expires_at:
            self._mark_lost("the lease expired before it was renewed")
            return False
        return True

    def check(self) -> Lease:
        """Return the lease if still held, else raise :class:`LockLostError`."""
        if not self.held():
            raise LockLostError(self._lease.name, self._lease.owner,
                                self.lost_reason or "the lease is not held")
        return self._lease

    def renew(self) -> bool:
        """One renewal step; return whether the lease is still held afterwards."""
        if not self.held():
            return False
        try:
            lease = self.store.extend(self._lease, self.ttl)
        except LockLostError as error:
            self._mark_lost(error.reason)
            return False
        except Exception as error:  # backend unreachable: keep trying until expiry
            self.last_error = error
            return self.held()
        with self._lock:
            self._lease = lease
            self.renewals += 1
        return True

    def _mark_lost(self, reason: str) -> None:
        with self._lock:
            if self.lost.is_set():
                return
            self.lost_reason = reason
            self.lost.set()
        if self.on_lost is not None:
            self.on_lost(self._lease, reason)

    # drivers ---------------------------------------------------------------

    def _run_thread(self) -> None:
        while not self._stop.wait(self.interval):
            if not self.renew():
                return

    def start(self) -> LeaseRenewer:
        """Renew in a daemon thread until :meth:`stop` or the lease is lost."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("the renewer is already running")
            self._thread = threading.Thread(
                target=self._run_thread, name=f"renew-{self._lease.name}", daemon=True)
        self._thread.start()
        return self

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` has been called."""
        return self._stop.is_set()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop renewing (the lease is left to the holder to release).

        Waits for a renewal in flight to finish, at most ``timeout`` seconds (default:
        until the lease would expire, after which it is gone anyway), so that a store
        call that hangs (an unreachable server without a socket timeout) cannot hang the
        holder too. Returns whether the renewal thread has ended; if not, it is a daemon
        thread that ends when its call returns, and it renews nothing after that.
        """
        if timeout is None:
            remaining = self._lease.expires_at - self.store.clock.now()
            wait = min(max(remaining, 0.0), self.ttl)
        else:
            wait = min(require_non_negative("timeout", timeout), threading.TIMEOUT_MAX)
        self._stop.set()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(wait)
        return not thread.is_alive()

    def __enter__(self) -> LeaseRenewer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def arun(self) -> None:
        """Renew until cancelled, :meth:`stop`, or the lease is lost (an asyncio task body)."""
        import asyncio

        while not self._stop.is_set():
            await asyncio.sleep(self.interval)
            if self._stop.is_set() or not self.renew():
                return

    def simpy_run(self, env: _SimEnvironment) -> Generator[Any, Any, None]:
        """Renew in simulated time until :meth:`stop` or the lease is lost."""
        _check_env(env)
        return self._simpy_run(env)

    def _simpy_run(self, env: _SimEnvironment) -> Generator[Any, Any, None]:
        while not self._stop.is_set():
            yield env.timeout(self.interval)
            if self._stop.is_set() or not self.renew():
                return

    def __repr__(self) -> str:
        state = "lost" if self.lost.is_set() else "held"
        return (f"LeaseRenewer({self._lease.name!r}, token={self._lease.fencing_token}, "
                f"{state}, renewals={self.renewals})")


# --------------------------------------------------------------------------- fencing


@dataclass(frozen=True, slots=True)
class FencedWrite:
    """One write the fenced resource accepted."""

    resource: str
    token: int
    value: object


def _check_resource(resource: object) -> str:
    if not isinstance(resource, str):
        raise TypeError(f"resource must be a str, got {resource!r} ({type(resource).__name__})")
    if not resource:
        raise ValueError(f"resource must be a non-empty string, got {resource!r}")
    return resource


class FencedResource:
    """A store that rejects writes carrying an older fencing token (guide 5.1, added).

    It remembers, per resource, the highest token any write has carried, and rejects a
    write whose token is lower with :class:`StaleTokenError`. An equal token is accepted
    (the same holder writing twice). Thread-safe; the check and the write are atomic.
    """

    __slots__ = ("_highest", "_lock", "_values", "history")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._highest: dict[str, int] = {}
        self._values: dict[str, object] = {}
        self.history: list[FencedWrite] = []
        """Every accepted write, in order."""

    def write(self, resource: str, value: object, token: int) -> None:
        """Store ``value`` under ``resource`` if ``token`` is not older than any seen."""
        _check_resource(resource)
        if isinstance(token, bool) or not isinstance(token, int):
            raise TypeError(f"token must be an int, got {token!r} ({type(token).__name__})")
        if token < 0:
            raise ValueError(f"token must be >= 0, got {token!r}")
        with self._lock:
            highest = self._highest.get(resource, 0)
            if token < highest:
                raise StaleTokenError(resource, token, highest)
            self._highest[resource] = token
            self._values[resource] = value
            self.history.append(FencedWrite(resource, token, value))

    def read(self, resource: str, default: object = None) -> object:
        _check_resource(resource)
        with self._lock:
            return self._values.get(resource, default)

    def highest_token(self, resource: str) -> int:
        """The highest token seen for ``resource`` (0 if none)."""
        _check_resource(resource)
        with self._lock:
            return self._highest.get(resource, 0)

    def __repr__(self) -> str:
        return f"FencedResource({len(self._values)} resources)"
