"""Distributed locks in simulated time (guide section 5.1, 分布式锁).

The model: two clients share one lock (an :class:`~patterns.consistency.lock.InMemoryLockStore`
on the simulation's clock) and one resource. Client A takes the lock, writes, and is then
frozen by a process pause (a GC pause, a stopped VM) of ``pause`` seconds, in the middle of
a write: the write leaves when A wakes up. Client B asks for the lock from t = 0.2 s on and
gets it as soon as A's lease runs out. Both *believe* they hold the lock; the store says
only one does. Without fencing, A's late write lands over B's (the data is corrupted);
with fencing, the resource rejects it.

Everything here is deterministic (there is no randomness in the model), so no seed.

* :func:`run_pause` -- the pause scenario, with or without fencing, with the fixed renewer
  (:class:`~patterns.consistency.lock.LeaseRenewer`) or the guide's (:class:`GuideSketchAutoRenew`,
  which only logs a failed renewal, so A carries on writing).
* :func:`run_release` -- release by a context manager beside release from a destructor
  (:class:`GuideSketchLockGuard`): how long the next client waits.
* :func:`destructor_demo` -- the destructor flaw in real Python (a reference cycle).
* ``draw_*`` figures, ``*_table`` evidence, ``*_explorer`` sliders.
"""

from __future__ import annotations

import gc
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import simpy
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from patterns.consistency.lock import (
    FencedResource,
    InMemoryLockStore,
    Lease,
    LeaseRenewer,
    LockAcquired,
    LockEvent,
    LockExtended,
    LockLostError,
    LockReleased,
    LockStore,
    StaleTokenError,
    simpy_acquire,
)
from simulations.kit.clock import SimClock
from simulations.kit.plotting import color, label, subplots
from simulations.kit.tables import format_table
from simulations.kit.widgets import Explorer, choice, float_slider

__all__ = [
    "GuideSketchAutoRenew",
    "GuideSketchLockGuard",
    "PauseResult",
    "ReleaseResult",
    "Write",
    "destructor_demo",
    "draw_pause",
    "draw_pause_comparison",
    "draw_release",
    "pause_explorer",
    "pause_table",
    "release_table",
    "renewal_table",
    "run_pause",
    "run_release",
]

PAUSE_AT = 1.1
"""When A's pause starts (s); A's first write is at 0.4 s."""
B_ARRIVES = 0.2
WRITE_GAP = 0.5
"""A writes every 0.5 s after waking, up to three more times, while it believes it holds."""


# =========================================================================== guide sketches


class GuideSketchAutoRenew:
    """The guide's ``AutoRenewGuard`` renewal task, transcribed (section 5.1).

    ``match lock.extend(&guard, ttl) { Err(e) => { log::error!(...); break; } }``: a failed
    renewal is logged and the task stops. Nothing tells the holder, which carries on as if
    it still held the lock. (It has no ``held()``: the holder has nothing to ask.)
    """

    def __init__(self, store: LockStore, lease: Lease, ttl: float) -> None:
        self.store = store
        self.lease = lease
        self.ttl = ttl
        self.stopped = False
        self.log: list[str] = []

    def renew(self) -> None:
        if self.stopped:
            return
        try:
            self.lease = self.store.extend(self.lease, self.ttl)
        except LockLostError as error:
            self.log.append(f"Failed to extend lock: {error}")  # log::error! and break
            self.stopped = True


class GuideSketchLockGuard:
    """The guide's ``LockGuard`` with ``impl Drop``, transcribed: release in the destructor.

    Python runs ``__del__`` when the last reference goes, which may be late (a reference
    cycle waits for the cyclic garbage collector) or never (a reference kept in a cache,
    a traceback, a global). Until then the lock stays held.
    """

    def __init__(self, store: LockStore, lease: Lease) -> None:
        self.store = store
        self.lease = lease
        self.released = False

    def __del__(self) -> None:
        if not self.released:
            self.released = True
            self.store.release(self.lease)


def destructor_demo() -> list[str]:
    """Release from a destructor in real Python: a guard in a reference cycle.

    Returns what happened, line by line: after ``del guard`` the lock is still held, and
    only a run of the cyclic garbage collector releases it.
    """
    store = InMemoryLockStore()
    lease = store.try_acquire("report", 30.0)
    assert lease is not None
    lines = [f"acquired 'report', fencing token {lease.fencing_token}"]
    was_enabled = gc.isenabled()
    gc.disable()  # make the demo deterministic: no collection at a random moment
    try:
        guard = GuideSketchLockGuard(store, lease)
        guard.self_ref = guard  # type: ignore[attr-defined]  # a cycle (a callback, a parent link)
        del guard
        lines.append(f"after `del guard`: lock held = {store.holder('report') is not None}")
        gc.collect()
        lines.append(f"after gc.collect(): lock held = {store.holder('report') is not None}")
    finally:
        if was_enabled:
            gc.enable()
    return lines


# =========================================================================== pause model


class _PlainResource:
    """A resource without fencing: every write lands."""

    def __init__(self) -> None:
        self.value: object = None

    def write(self, resource: str, value: object, token: int) -> None:
        self.value = value


@dataclass(frozen=True, slots=True)
class Write:
    """One write as the resource saw it."""

    time: float
    client: str
    token: int
    accepted: bool
    holder_per_store: bool
    """Whether the writer held the lock, per the store, when the write arrived."""
    overwrote_newer: bool
    """Whether it landed over data written with a newer fencing token (corruption)."""


@dataclass(frozen=True, slots=True)
class PauseResult:
    """What :func:`run_pause` observed."""

    pause: float
    ttl: float
    renew_interval: float
    fencing: bool
    renewer: str
    holds: tuple[tuple[str, float, float], ...]
    """(client, start, end): who held the lock per the store."""
    beliefs: tuple[tuple[str, float, float], ...]
    """(client, start, end): who believed it held the lock."""
    writes: tuple[Write, ...]
    final_value: str
    horizon: float
    renewals: tuple[tuple[str, float], ...] = ()
    """(client, time) of every successful renewal (extend) of a lease."""
    lease_end_at_pause: float = 0.0
    """When A's lease would expire, as it stood when the pause began (its last renewal
    before the pause + TTL)."""

    @property
    def stale_accepted(self) -> int:
        """Stale writes that landed over data written by a newer holder (corruption)."""
        return sum(1 for w in self.writes if w.overwrote_newer)

    @property
    def stale_rejected(self) -> int:
        return sum(1 for w in self.writes if not w.accepted)

    @property
    def corrupted(self) -> bool:
        """A newer holder's data was overwritten by a stale write."""
        return self.stale_accepted > 0

    @property
    def both_believe(self) -> float:
        """Seconds during which A and B both believed they held the lock."""
        a = [(s, e) for c, s, e in self.beliefs if c == "A"]
        b = [(s, e) for c, s, e in self.beliefs if c == "B"]
        return sum(max(0.0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in b)


def _holds(events: list[LockEvent], owners: dict[str, str],
           horizon: float) -> tuple[tuple[str, float, float], ...]:
    spans: list[tuple[str, float, float]] = []
    current: dict[str, Any] | None = None
    for event in events:
        if current is not None and event.at >= current["expires"]:
            spans.append((current["client"], current["start"], current["expires"]))
            current = None
        if isinstance(event, LockAcquired):
            current = {"client": owners.get(event.owner, "?"), "start": event.at,
                       "expires": event.expires_at, "owner": event.owner}
        elif isinstance(event, LockExtended) and current and current["owner"] == event.owner:
            current["expires"] = event.expires_at
        elif isinstance(event, LockReleased) and current and current["owner"] == event.owner:
            spans.append((current["client"], current["start"], event.at))
            current = None
    if current is not None:
        spans.append((current["client"], current["start"], min(current["expires"], horizon)))
    return tuple(spans)


def run_pause(pause: float = 3.0, ttl: float = 2.0, renew_interval: float = 0.5, *,
              fencing: bool = True, renewer: str = "fixed", horizon: float = 10.0) -> PauseResult:
    """Two clients, A paused for ``pause`` s at t = 1 s while a write is in flight.

    ``renewer`` is ``"fixed"`` (:class:`LeaseRenewer`: A stops once it learns the lease is
    lost) or ``"guide"`` (:class:`GuideSketchAutoRenew`: A never learns and carries on).
    ``renew_interval`` is clamped below ``ttl``.
    """
    if renewer not in ("fixed", "guide"):
        raise ValueError(f"renewer must be 'fixed' or 'guide', got {renewer!r}")
    if pause < 0:
        raise ValueError(f"pause must be >= 0, got {pause!r}")
    renew_interval = min(renew_interval, 0.9 * ttl)
    env = simpy.Environment()
    store = InMemoryLockStore(clock=SimClock(env))
    events: list[LockEvent] = []
    store.listeners.add(events.append)
    resource: FencedResource | _PlainResource = FencedResource() if fencing else _PlainResource()
    writes: list[Write] = []
    beliefs: list[tuple[str, float, float]] = []
    owners: dict[str, str] = {}
    last_value = {"value": ""}
    a_paused_until = {"t": 0.0}

    def write(client: str, lease: Lease, value: str) -> None:
        holder = store.holder("account")
        held = holder is not None and holder.owner == lease.owner
        newest = max((w.token for w in writes if w.accepted), default=0)
        try:
            resource.write("account", value, lease.fencing_token)
        except StaleTokenError:
            writes.append(Write(env.now, client, lease.fencing_token, False, held, False))
            return
        writes.append(Write(env.now, client, lease.fencing_token, True, held,
                            lease.fencing_token < newest))
        last_value["value"] = value

    def renew_a(renewal: LeaseRenewer | GuideSketchAutoRenew) -> Generator[Any, Any, None]:
        while True:
            yield env.timeout(renew_interval)
            if env.now < a_paused_until["t"]:  # the whole process is frozen, renewer too
                yield env.timeout(a_paused_until["t"] - env.now)
            if isinstance(renewal, LeaseRenewer):
                if renewal.stopped or not renewal.renew():
                    return
            else:
                renewal.renew()
                if renewal.stopped:
                    return

    def client_a() -> Generator[Any, Any, None]:
        lease = store.try_acquire("account", ttl)
        assert lease is not None
        owners[lease.owner] = "A"
        start = env.now
        learned: dict[str, float] = {}
        renewal: LeaseRenewer | GuideSketchAutoRenew
        if renewer == "fixed":
            renewal = LeaseRenewer(store, lease, interval=renew_interval, ttl=ttl,
                                   on_lost=lambda *_: learned.setdefault("t", env.now))
        else:
            renewal = GuideSketchAutoRenew(store, lease, ttl)
        env.process(renew_a(renewal))
        yield env.timeout(0.4)
        write("A", lease, "A1")
        yield env.timeout(PAUSE_AT - 0.4)
        # A checked it still held the lock, started a write ... and the pause struck.
        a_paused_until["t"] = env.now + pause
        yield env.timeout(pause)
        write("A", lease, "A2")  # the write that was in flight leaves now
        for n in range(3, 6):
            yield env.timeout(WRITE_GAP)
            if isinstance(renewal, LeaseRenewer) and not renewal.held():
                break  # the fixed renewer told A: stop
            write("A", lease, f"A{n}")
        end = learned.get("t", env.now)
        if isinstance(renewal, LeaseRenewer):
            renewal.stop()
        beliefs.append(("A", start, end))
        store.release(lease)

    def client_b() -> Generator[Any, Any, None]:
        yield env.timeout(B_ARRIVES)
        lease = yield from simpy_acquire(env, store, "account", ttl, retry_interval=0.05)
        owners[lease.owner] = "B"
        start = env.now
        renewal = LeaseRenewer(store, lease, interval=renew_interval, ttl=ttl)
        env.process(_renew_plain(env, renewal, renew_interval))
        yield env.timeout(0.1)
        write("B", lease, "B1")
        yield env.timeout(1.0)
        write("B", lease, "B2")
        yield env.timeout(0.4)
        renewal.stop()
        beliefs.append(("B", start, env.now))
        store.release(lease)

    env.process(client_a())
    env.process(client_b())
    env.run(until=horizon)
    renewals = tuple((owners.get(e.owner, "?"), e.at) for e in events
                     if isinstance(e, LockExtended))
    lease_end = max((e.expires_at for e in events if isinstance(e, LockAcquired | LockExtended)
                     and owners.get(e.owner) == "A" and e.at <= PAUSE_AT), default=0.0)
    return PauseResult(pause, ttl, renew_interval, fencing, renewer,
                       _holds(events, owners, horizon), tuple(sorted(beliefs)),
                       tuple(writes), last_value["value"], horizon, renewals, lease_end)


def _renew_plain(env: simpy.Environment, renewal: LeaseRenewer,
                 interval: float) -> Generator[Any, Any, None]:
    while True:
        yield env.timeout(interval)
        if renewal.stopped or not renewal.renew():
            return


# =========================================================================== release model


@dataclass(frozen=True, slots=True)
class ReleaseResult:
    mode: str
    ttl: float
    done_at: float
    released_at: float | None
    b_acquired_at: float

    @property
    def b_waited(self) -> float:
        """Seconds B waited after A had finished its work."""
        return self.b_acquired_at - self.done_at


def run_release(mode: str = "context", ttl: float = 5.0, gc_after: float = 3.0) -> ReleaseResult:
    """A finishes at t = 1 s; when does B (asking from t = 0.5 s) get the lock?

    ``mode``: ``"context"`` releases on leaving the ``with`` block; ``"destructor-cycle"``
    releases when the cyclic collector runs, ``gc_after`` s later; ``"destructor-kept"``
    never releases (the guard is still referenced), so B waits for the TTL.
    """
    modes = ("context", "destructor-cycle", "destructor-kept")
    if mode not in modes:
        raise ValueError(f"mode must be one of {modes}, got {mode!r}")
    env = simpy.Environment()
    store = InMemoryLockStore(clock=SimClock(env))
    released: dict[str, float] = {}
    got: dict[str, float] = {}
    done_at = 1.0

    def a() -> Generator[Any, Any, None]:
        lease = store.try_acquire("report", ttl)
        assert lease is not None
        yield env.timeout(done_at)
        if mode == "context":
            store.release(lease)
            released["t"] = env.now
        elif mode == "destructor-cycle":
            yield env.timeout(gc_after)
            if store.release(lease):
                released["t"] = env.now

    def b() -> Generator[Any, Any, None]:
        yield env.timeout(0.5)
        lease = yield from simpy_acquire(env, store, "report", ttl, retry_interval=0.05)
        got["t"] = env.now
        store.release(lease)

    env.process(a())
    env.process(b())
    env.run(until=ttl + gc_after + 5)
    return ReleaseResult(mode, ttl, done_at, released.get("t"), got["t"])


def release_table(ttl: float = 5.0, gc_after: float = 3.0) -> str:
    rows = []
    for mode in ("context", "destructor-cycle", "destructor-kept"):
        r = run_release(mode, ttl, gc_after)
        rows.append([mode, "never (lease expired)" if r.released_at is None
                     else f"{r.released_at:.2f}", round(r.b_acquired_at, 2), round(r.b_waited, 2)])
    return format_table(["release", "released at (s)", "B acquired at (s)",
                         "B waited after A finished (s)"], rows)


def draw_release(ttl: float = 5.0, gc_after: float = 3.0) -> Figure:
    fig, ax = subplots(width=9.0, height=2.8)
    modes = ("context", "destructor-cycle", "destructor-kept")
    for y, mode in enumerate(modes):
        r = run_release(mode, ttl, gc_after)
        ax.broken_barh([(0, r.b_acquired_at)], (y - 0.3, 0.25), color=color("guide"))
        ax.broken_barh([(0, r.done_at)], (y - 0.3, 0.25), color=color("success"))
        ax.broken_barh([(0.5, r.b_acquired_at - 0.5)], (y + 0.05, 0.25), color=color("rejected"))
        ax.plot([r.b_acquired_at], [y + 0.175], "o", color=color("success"))
    ax.set_yticks(range(len(modes)), modes)
    ax.legend(handles=[Patch(color=color("success"), label="A working"),
                       Patch(color=color("guide"), label="A still holds the lock (idle)"),
                       Patch(color=color("rejected"), label="B waiting"),
                       Line2D([], [], marker="o", ls="", color=color("success"),
                              label="B acquires")], loc="lower right", ncols=2)
    label(ax, title=f"When is the lock released? (TTL {ttl:g} s, GC after {gc_after:g} s)",
          xlabel="time (s)", ylabel="")
    return fig


# =========================================================================== figures


_LANES = ("store: A holds", "A believes", "store: B holds", "B believes")
_CLIENT_COLOR = {"A": "#1f77b4", "B": "#9467bd"}


def draw_pause_on(ax: Any, result: PauseResult) -> None:
    lane = {name: i for i, name in enumerate(_LANES)}
    for client, start, end in result.holds:
        ax.broken_barh([(start, end - start)], (lane[f"store: {client} holds"] - 0.35, 0.7),
                       color=_CLIENT_COLOR[client])
    for client, start, end in result.beliefs:
        ax.broken_barh([(start, end - start)], (lane[f"{client} believes"] - 0.35, 0.7),
                       color=_CLIENT_COLOR[client], alpha=0.35)
    for client, at in result.renewals:
        y = lane[f"store: {client} holds"]
        ax.plot([at, at], [y - 0.35, y + 0.35], color="white", linewidth=1.5)
    y = lane["store: A holds"]
    ax.plot([result.lease_end_at_pause] * 2, [y - 0.5, y + 0.5], color="#d62728",
            linestyle=(0, (2, 1)), linewidth=2)
    if result.pause > 0:
        ax.axvspan(PAUSE_AT, PAUSE_AT + result.pause, color="#d62728", alpha=0.08)
        ax.text(PAUSE_AT + result.pause / 2, len(_LANES) - 0.45, "A paused (GC)",
                ha="center", va="bottom", fontsize=8, color="#d62728")
    for w in result.writes:
        y = lane[f"{w.client} believes"]
        if not w.accepted:
            ax.plot(w.time, y, "x", color="#7f7f7f", ms=11, mew=2.5)
        elif w.overwrote_newer:
            ax.plot(w.time, y, "v", color="#d62728", ms=11)
        else:
            ax.plot(w.time, y, "o", color="#2ca02c", ms=8)
    ax.set_yticks(range(len(_LANES)), _LANES)
    ax.set_ylim(-0.6, len(_LANES) + 0.2)
    ax.set_xlim(0, result.horizon)
    ax.invert_yaxis()


def _legend(ax: Any) -> None:
    ax.legend(handles=[
        Line2D([], [], color="#7f7f7f", marker="|", ls="", ms=10, mew=1.5,
               label="lease renewed (white tick)"),
        Line2D([], [], color="#d62728", ls=(0, (2, 1)), lw=2,
               label="A's lease ends, as it stood when the pause began"),
        Line2D([], [], marker="o", ls="", color="#2ca02c", label="write by the holder"),
        Line2D([], [], marker="v", ls="", color="#d62728",
               label="stale write LANDED over newer data"),
        Line2D([], [], marker="x", ls="", color="#7f7f7f", mew=2.5,
               label="stale write rejected (fencing)"),
    ], loc="upper left", bbox_to_anchor=(0.0, -0.2), ncols=3, fontsize=8)


def _title(result: PauseResult) -> str:
    fence = "with fencing" if result.fencing else "no fencing"
    return (f"{fence}, {result.renewer} renewer (TTL {result.ttl:g} s, renew every "
            f"{result.renew_interval:.2g} s): final value {result.final_value}, "
            f"{result.stale_accepted} stale write(s) landed")


def draw_pause(pause: float = 3.0, ttl: float = 2.0, renew_interval: float = 0.5,
               fencing: str = "on", renewer: str = "fixed") -> Figure:
    """The timeline of one run: who holds (per the store), who believes, who writes."""
    result = run_pause(pause, ttl, renew_interval, fencing=fencing == "on", renewer=renewer)
    fig, ax = subplots(width=10.0, height=3.8)
    draw_pause_on(ax, result)
    _legend(ax)
    label(ax, title=_title(result), xlabel="simulated time (s)", ylabel="")
    return fig


def draw_pause_comparison(pause: float = 3.0, ttl: float = 2.0,
                          renew_interval: float = 0.5, renewer: str = "fixed") -> Figure:
    """The same run without and with fencing, one above the other."""
    fig, axes = subplots(2, 1, width=9.5, height=6.2, sharex=True)
    for ax, fencing in zip(axes, (False, True), strict=True):
        result = run_pause(pause, ttl, renew_interval, fencing=fencing, renewer=renewer)
        draw_pause_on(ax, result)
        label(ax, title=_title(result), xlabel="simulated time (s)" if fencing else "",
              ylabel="")
    _legend(axes[1])
    return fig


def pause_table(pauses: tuple[float, ...] = (0.5, 1.5, 3.0, 5.0), ttl: float = 2.0,
                renew_interval: float = 0.5) -> str:
    """Per pause length: overlap of beliefs, stale writes landed without / with fencing."""
    rows = []
    for pause in pauses:
        plain = run_pause(pause, ttl, renew_interval, fencing=False)
        fenced = run_pause(pause, ttl, renew_interval, fencing=True)
        rows.append([pause, plain.both_believe, plain.stale_accepted,
                     "yes" if plain.corrupted else "no", fenced.stale_accepted,
                     fenced.stale_rejected, fenced.final_value])
    return format_table(["pause (s)", "both believe (s)", "stale landed, no fencing",
                         "B's data overwritten", "stale landed, fencing", "rejected, fencing",
                         "final value, fencing"], rows)


def renewal_table(pause: float = 3.0, ttl: float = 2.0, renew_interval: float = 0.5) -> str:
    """The guide's renewer beside the fixed one, without fencing: how many stale writes."""
    rows = []
    for renewer in ("guide", "fixed"):
        r = run_pause(pause, ttl, renew_interval, fencing=False, renewer=renewer)
        a_writes = sum(1 for w in r.writes if w.client == "A")
        rows.append([renewer, a_writes, r.stale_accepted, r.both_believe, r.final_value])
    return format_table(["renewer", "writes by A", "stale writes landed", "both believe (s)",
                         "final value"], rows)


def pause_explorer() -> Explorer:
    """Sliders: pause length, lease TTL, renewal interval; fencing and renewer buttons."""
    return Explorer(draw_pause, {
        "pause": float_slider("pause (s)", 3.0, 0.0, 6.0, 0.25),
        "ttl": float_slider("lease TTL (s)", 2.0, 0.5, 5.0, 0.25),
        "renew_interval": float_slider("renew every (s)", 0.5, 0.1, 1.0, 0.1),
        "fencing": choice("fencing", ["on", "off"], "on"),
        "renewer": choice("renewer", ["fixed", "guide"], "fixed"),
    })
