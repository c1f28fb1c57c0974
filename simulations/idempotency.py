"""Duplicate requests and idempotency keys in SimPy (guide section 5.5).

Clients pay for orders over a lossy network. A lost request or a lost response looks the
same to the client: a timeout, after which it retries (``RetryPolicy``); the network may
also deliver a request twice on its own. Every delivery reaching a server that is not
idempotent charges the customer again. The model counts how often the side effect (the
charge) runs per order:

* ``"none"``: no idempotency: each delivery runs the effect.
* ``"guide"``: the guide's handler (:class:`GuideSketchIdempotencyHandler`): check the
  store, run, then record: duplicates that arrive while the first is running run too.
* ``"reserve"``: :class:`patterns.consistency.idempotency.IdempotencyHandler`: the key is
  reserved first; duplicates wait for the recorded response.
* ``"atomic"``: as ``"reserve"``, and the effect and the recorded response commit in one
  transaction (``SQLiteIdempotencyStore.execute_once``): a crash between them is
  impossible.

``crash`` injects a server crash right after the effect and before the response is
recorded: with two separate writes, the reservation's lease runs out and a retry runs
the effect a second time. A ``lease`` shorter than the effect has the same result: the
reservation passes to a duplicate while the first run is still busy, and the first run's
late ``finish`` is refused (:class:`~patterns.consistency.idempotency.LeaseLostError`).

``on_in_progress`` is the handler's answer to a duplicate that arrives while the first
delivery is still running: ``"wait"`` (it holds its worker and polls until the response
is recorded) or ``"raise"`` (an immediate "in progress" answer, HTTP 409 style, on which
the client backs off and retries like after a timeout).
"""

from __future__ import annotations

import functools
import inspect
import os
import subprocess
import sys
import textwrap
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import simpy
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from patterns._validation import require_int_at_least, require_positive, require_unit_interval
from patterns.consistency.idempotency import (
    ContentKeyGenerator,
    Execute,
    IdempotencyHandler,
    InMemoryIdempotencyStore,
    LeaseLostError,
    Replay,
    RequestInProgressError,
)
from patterns.resilience.backoff import ExponentialBackoff
from patterns.resilience.retry import RetryPolicy, StopAfterAttempts
from simulations.kit.clock import SimClock
from simulations.kit.plotting import label, subplots
from simulations.kit.rng import RandomStreams
from simulations.kit.tables import format_table
from simulations.kit.widgets import Explorer, float_slider, int_slider

__all__ = [
    "MODES",
    "GuideSketchIdempotencyHandler",
    "GuideSketchStore",
    "PaymentResult",
    "check_then_act_table",
    "crash_explorer",
    "crash_table",
    "draw_crash_run",
    "draw_crash_window",
    "draw_loss_sweep",
    "expected_charges",
    "idempotency_explorer",
    "keys_across_processes",
    "lease_table",
    "loss_sweep",
    "loss_table",
    "payment_defaults",
    "run_payments",
]

MODES = ("none", "guide", "reserve", "atomic")
ROOT = Path(__file__).resolve().parents[1]
_COLORS = {"none": "#d62728", "guide": "#ff7f0e", "reserve": "#2ca02c", "atomic": "#1f77b4"}
_NAMES = {"none": "no idempotency", "guide": "guide's check-then-act",
          "reserve": "reserve the key first", "atomic": "reserve + atomic record"}


class NetworkTimeoutError(ConnectionError):
    """The client heard nothing back: the request or its response was lost."""


POLL_INTERVAL = 0.05
"""How often a waiting duplicate asks the store again (the handler's default), in s."""

IN_PROGRESS: dict[str, Any] = {"status": 409, "error": "request in progress"}
"""The server's answer to a duplicate while the first is running (``on_in_progress``)."""


# ================================================================ the guide's sketch


class GuideSketchStore:
    """A transcription of the guide's store: ``get_response``, then ``record_request``
    with ``SET NX`` *after* the work (nothing is reserved before it)."""

    def __init__(self) -> None:
        self.responses: dict[str, Any] = {}

    def get_response(self, key: str) -> Any | None:
        return self.responses.get(key)

    def record_request(self, key: str, response: Any) -> bool:  # SET key value NX
        if key in self.responses:
            return False
        self.responses[key] = response
        return True


class GuideSketchIdempotencyHandler:
    """The guide's ``IdempotencyHandler.handle``: check, run, record (flawed on purpose).

    Check-then-act: two duplicates that both arrive before the first response is
    recorded both find nothing and both run the effect.
    """

    def __init__(self, store: GuideSketchStore) -> None:
        self.store = store

    def simpy_handle(self, key: str, effect: Generator[Any, Any, Any]
                     ) -> Generator[Any, Any, Any]:
        cached = self.store.get_response(key)  # 检查是否已处理过请求 (was it handled already?)
        if cached is not None:
            return cached
        response = yield from effect  # 处理请求 (handle the request)
        self.store.record_request(key, response)  # 记录响应 (record the response)
        return response


# ================================================================ the model


@dataclass(frozen=True)
class PaymentResult:
    mode: str
    orders: int
    loss: float
    redelivery: float
    attempts: int
    crash: float
    charges: tuple[int, ...]
    """How many times each order was charged."""
    answered: int
    """Orders whose client got a response (the others gave up)."""
    latencies: tuple[float, ...] = ()
    """For each answered order, seconds from its first attempt to the answer."""
    in_progress_answers: int = 0
    """Deliveries answered "in progress" (``on_in_progress="raise"``)."""
    double_times: tuple[float, ...] = ()
    """When each order charged twice or more got its second charge (simulated s)."""
    gave_up_times: tuple[float, ...] = ()
    """When each unanswered order's client gave up (simulated s)."""

    @property
    def effects(self) -> int:
        return sum(self.charges)

    @property
    def effects_per_order(self) -> float:
        return self.effects / self.orders

    @property
    def double_charged(self) -> int:
        return sum(1 for c in self.charges if c >= 2)

    @property
    def never_charged(self) -> int:
        return sum(1 for c in self.charges if c == 0)

    @property
    def unanswered(self) -> int:
        """Orders whose client gave up without a response."""
        return self.orders - self.answered

    @property
    def mean_latency(self) -> float:
        """Mean seconds from an order's first attempt to its answer (answered orders)."""
        return float(np.mean(self.latencies)) if self.latencies else 0.0


def run_payments(
    *,
    mode: str = "reserve",
    orders: int = 400,
    loss: float = 0.2,
    redelivery: float = 0.05,
    attempts: int = 4,
    workers: int = 8,
    crash: float = 0.0,
    rate: float = 20.0,
    service: float = 0.1,
    timeout: float = 0.5,
    lease: float = 1.0,
    on_in_progress: str = "wait",
    seed: int = 1,
) -> PaymentResult:
    """``orders`` payments (Poisson, ``rate`` per second), each retried up to ``attempts``
    times by a client that waits ``timeout`` s for an answer.

    Each request and each response is lost with probability ``loss``; a delivered
    request is delivered a second time with probability ``redelivery``. ``workers``
    servers (the concurrency) take ``service`` s (exponential) per request. With
    probability ``crash`` a server dies right after the effect, before recording it.
    ``lease`` is how long a reservation holds; ``on_in_progress`` (``"wait"`` or
    ``"raise"``) what a duplicate gets while the first delivery runs (modes
    ``"reserve"`` and ``"atomic"``).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if on_in_progress not in ("wait", "raise"):
        raise ValueError(f"on_in_progress must be 'wait' or 'raise', got {on_in_progress!r}")
    for name, value in (("rate", rate), ("service", service), ("timeout", timeout),
                        ("lease", lease)):
        require_positive(name, value)
    for name, value in (("loss", loss), ("redelivery", redelivery), ("crash", crash)):
        require_unit_interval(name, value)
    for name, count in (("orders", orders), ("attempts", attempts), ("workers", workers)):
        require_int_at_least(name, count, 1)
    env = simpy.Environment()
    clock = SimClock(env)
    streams = RandomStreams(seed)
    net = streams.stream("network")
    work = streams.stream("service")
    crashes = streams.stream("crashes")
    pool = simpy.Resource(env, capacity=workers)
    charges = [0] * orders
    answered = [0]
    latencies: list[float] = []
    double_times: list[float] = []
    gave_up_times: list[float] = []
    in_progress = [0]

    def charged(order: int) -> int:
        charges[order] += 1
        if charges[order] == 2:
            double_times.append(env.now)
        return charges[order]
    keys = ContentKeyGenerator("order")
    requests = [f"order={order};amount=100" for order in range(orders)]
    order_keys = [keys.generate_key(request) for request in requests]
    handler = IdempotencyHandler(InMemoryIdempotencyStore(clock=clock), clock=clock,
                                 lease=lease, ttl=3600.0, poll_interval=POLL_INTERVAL,
                                 on_in_progress=on_in_progress)
    guide = GuideSketchIdempotencyHandler(GuideSketchStore())

    def charge(order: int) -> Generator[Any, Any, dict[str, Any]]:
        yield env.timeout(work.expovariate(1.0 / service))
        return {"order": order, "charge": charged(order)}

    def serve(order: int) -> Generator[Any, Any, dict[str, Any] | None]:
        """One delivery at the server; None means no answer (a crash, a lost lease)."""
        request = requests[order]
        key = order_keys[order]
        with pool.request() as slot:
            yield slot
            if mode == "none":
                return (yield from charge(order))
            if mode == "guide":
                answer: dict[str, Any] = yield from guide.simpy_handle(key, charge(order))
                return answer
            while True:
                try:
                    step = handler.begin(request, key)
                except RequestInProgressError:
                    in_progress[0] += 1
                    return IN_PROGRESS
                if isinstance(step, Replay):
                    return dict(step.response)
                if isinstance(step, Execute):
                    break
                yield env.timeout(step.delay)
            yield env.timeout(work.expovariate(1.0 / service))
            dies = crashes.random() < crash
            try:
                if mode == "atomic":
                    if dies:  # the transaction rolls back: no charge, the key is free again
                        handler.store.release(step.key, step.token)
                        return None
                    # effect and record commit together, or neither (a lost lease)
                    response = dict(handler.finish(step, {"order": order,
                                                          "charge": charges[order] + 1}))
                    charged(order)
                    return response
                count = charged(order)  # first write: the effect
                if dies:
                    return None  # crash before the second write: the lease must run out
                return dict(handler.finish(step, {"order": order, "charge": count}))
            except LeaseLostError:
                return None  # the lease ran out mid-effect: a duplicate owns the key now

    def deliver(order: int, reply: simpy.Event) -> Generator[Any, Any, None]:
        response = yield from serve(order)
        if response is not None and net.random() >= loss and not reply.triggered:
            reply.succeed(response)

    def attempt(order: int) -> Generator[Any, Any, Any]:
        reply = env.event()
        if net.random() >= loss:
            env.process(deliver(order, reply))
            if net.random() < redelivery:
                env.process(deliver(order, env.event()))  # a copy nobody waits for
        outcome = yield reply | env.timeout(timeout)
        if reply not in outcome:
            raise NetworkTimeoutError(f"order {order}: no answer after {timeout} s")
        if reply.value is IN_PROGRESS:
            raise RequestInProgressError(f"order-{order}")
        return reply.value

    policy = RetryPolicy(stop=StopAfterAttempts(attempts),
                         backoff=ExponentialBackoff(0.1, cap=1.0, jitter="full"),
                         retry_on=(NetworkTimeoutError, RequestInProgressError), clock=clock,
                         rng=streams.stream("jitter"))

    def client(order: int, start: float) -> Generator[Any, Any, None]:
        yield env.timeout(start)
        try:
            yield from policy.simpy_call(env, lambda: attempt(order))
        except (NetworkTimeoutError, RequestInProgressError):
            gave_up_times.append(env.now)
            return
        answered[0] += 1
        latencies.append(env.now - start)

    starts = np.cumsum(streams.numpy("arrivals").exponential(1.0 / rate, orders))
    for order, start in enumerate(starts):
        env.process(client(order, float(start)))
    env.run()
    return PaymentResult(mode, orders, loss, redelivery, attempts, crash, tuple(charges),
                         answered[0], tuple(latencies), in_progress[0], tuple(double_times),
                         tuple(gave_up_times))


def payment_defaults() -> str:
    """The model's default parameters, one per line (what the notebook's prose quotes)."""
    units = {"rate": "orders/s", "service": "s (mean, exponential)", "timeout": "s",
             "lease": "s", "loss": "per message", "redelivery": "per delivered request"}
    lines = []
    for name, parameter in inspect.signature(run_payments).parameters.items():
        if name in ("mode", "seed", "crash", "on_in_progress"):
            continue
        lines.append(f"{name:<11}{parameter.default:<6g}{units.get(name, '')}".rstrip())
    return "\n".join(lines)


def expected_charges(loss: float, attempts: int, *, idempotent: bool,
                     redelivery: float = 0.0) -> float:
    """Charges per order in theory, when the service is much faster than the timeout.

    An attempt reaches the server with probability ``1 - loss`` and comes back with
    ``(1 - loss)**2``; the client stops at the first answer or after ``attempts``.
    Without idempotency each delivery charges, ``(1 + redelivery)`` per delivered
    attempt; with it, an order is charged once if any attempt got through.
    """
    if idempotent:
        return 1.0 - loss ** attempts
    q = 1.0 - (1.0 - loss) ** 2  # an attempt gets no answer
    sent = sum(q ** k for k in range(attempts))
    return sent * (1.0 - loss) * (1.0 + redelivery)


# ================================================================ tables and figures


_cached_payments = functools.lru_cache(maxsize=256)(run_payments)
"""``run_payments`` remembered by its arguments (it is deterministic): an explorer that
moves only the loss rate redraws from runs it already has."""


def loss_sweep(losses: Sequence[float], modes: Sequence[str] = ("none", "guide", "reserve"),
               **options: Any) -> dict[str, list[PaymentResult]]:
    """One run per mode and loss rate (runs already made with the same arguments are
    reused)."""
    return {mode: [_cached_payments(mode=mode, loss=p, **options) for p in losses]
            for mode in modes}


def loss_table(losses: Sequence[float] = (0.0, 0.1, 0.2, 0.3), **options: Any) -> str:
    """Double-charged orders and charges per order, by loss rate, with theory."""
    sweep = loss_sweep(losses, **options)
    attempts = options.get("attempts", 4)
    rows = []
    for i, p in enumerate(losses):
        none, guide, reserve = (sweep[m][i] for m in ("none", "guide", "reserve"))
        rows.append([p, none.double_charged, guide.double_charged, reserve.double_charged,
                     round(none.effects_per_order, 3),
                     round(expected_charges(p, attempts, idempotent=False,
                                            redelivery=options.get("redelivery", 0.05)), 3),
                     round(reserve.effects_per_order, 3),
                     round(expected_charges(p, attempts, idempotent=True), 3)])
    return format_table(["loss", "double: none", "double: guide", "double: reserve",
                         "charges/order none", "theory", "charges/order reserve", "theory"],
                        rows)


def draw_loss_sweep(loss: float = 0.2, attempts: int = 4, service_ms: float = 100.0,
                    redelivery: float = 0.05, orders: int = 120, workers: int = 8,
                    seed: int = 1) -> Figure:
    """Left: charges per order against loss rate, per mode, with theory.
    Right: orders charged twice or more at the chosen loss rate.

    ``service_ms`` is the server's mean time per request: the slower the server, the more
    retries (client timeout 0.5 s) arrive while the first delivery is still running."""
    losses = sorted({0.0, 0.1, 0.2, 0.3, 0.4, round(loss, 4)})
    options: dict[str, Any] = {"attempts": attempts, "workers": workers,
                               "redelivery": redelivery, "service": service_ms / 1000,
                               "orders": orders, "seed": seed}
    fig, (left, right) = subplots(1, 2, width=10, height=4)
    sweep = loss_sweep(losses, **options)
    for mode, results in sweep.items():
        left.plot(losses, [r.effects_per_order for r in results], "o-", color=_COLORS[mode],
                  label=_NAMES[mode])
    grid = np.linspace(0, 0.4, 41)
    left.plot(grid, [expected_charges(p, attempts, idempotent=False, redelivery=redelivery)
                     for p in grid], "--", color="black", linewidth=1,
              label="theory, no idempotency")
    left.plot(grid, [expected_charges(p, attempts, idempotent=True) for p in grid], ":",
              color="black", linewidth=1, label="theory, idempotent")
    left.axvline(loss, color="#999999", linewidth=0.8)
    left.legend(loc="best", fontsize=8)
    label(left, title=f"Side effects per order (server {service_ms:.0f} ms)",
          xlabel="loss rate (per message)", ylabel="charges per order")
    at = {mode: results[losses.index(round(loss, 4))] for mode, results in sweep.items()}
    names = [_NAMES[m].replace(" ", "\n", 1) for m in at]
    bars = right.bar(names, [r.double_charged for r in at.values()],
                     color=[_COLORS[m] for m in at])
    right.bar_label(bars)
    right.margins(y=0.15)
    label(right, title=f"Charged twice or more (loss {loss:.0%}, {orders} orders)",
          xlabel="", ylabel="orders")
    return fig


def check_then_act_table(redeliveries: Sequence[float] = (0.0, 0.1, 0.3),
                         **options: Any) -> str:
    """Orders charged twice with no loss, only redelivered duplicates: the guide's
    check-then-act handler beside reserving the key first."""
    rows = []
    for r in redeliveries:
        runs = [run_payments(mode=m, loss=0.0, redelivery=r, **options)
                for m in ("none", "guide", "reserve")]
        rows.append([r, *(run.double_charged for run in runs)])
    return format_table(["redelivery", "double: none", "double: guide (check, run, record)",
                         "double: reserve first"], rows)


def crash_table(crashes: Sequence[float] = (0.0, 0.05, 0.1, 0.2), **options: Any) -> str:
    """Double-charged and never-answered orders with crash injection, two writes vs one."""
    rows = []
    for c in crashes:
        two = run_payments(mode="reserve", crash=c, **options)
        one = run_payments(mode="atomic", crash=c, **options)
        rows.append([c, two.double_charged, one.double_charged, two.orders - two.answered,
                     one.orders - one.answered])
    return format_table(["crash prob.", "double: two writes", "double: one transaction",
                         "unanswered: two writes", "unanswered: one transaction"], rows)


def lease_table(leases: Sequence[float] = (0.2, 0.6, 1.0, 1.4, 2.0), *, crash: float = 0.1,
                loss: float = 0.1, attempts: int = 6, orders: int = 150, seed: int = 1) -> str:
    """The lease trade-off at one crash probability: orders charged twice and orders left
    without an answer, with the effect and its record as two writes and as one."""
    rows = []
    for lease in leases:
        two, one = (run_payments(mode=mode, crash=crash, lease=lease, loss=loss,
                                 attempts=attempts, orders=orders, seed=seed)
                    for mode in ("reserve", "atomic"))
        rows.append([lease, two.double_charged, one.double_charged, two.unanswered,
                     one.unanswered])
    return format_table(["lease (s)", "double: two writes", "double: one transaction",
                         "unanswered: two writes", "unanswered: one transaction"], rows)


def draw_crash_window(crash: float = 0.1, lease: float = 1.0, loss: float = 0.1,
                      attempts: int = 6, orders: int = 150, seed: int = 1) -> Figure:
    """Against the crash probability, effect and record as two writes and as one
    transaction: orders charged twice (left) and orders whose client got no answer
    (right). ``lease`` is how long a crashed server's reservation blocks its key."""
    crashes = sorted({0.0, 0.1, 0.2, 0.3, round(crash, 4)})
    fig, (doubles, unanswered) = subplots(1, 2, width=10, height=3.8)
    for mode in ("reserve", "atomic"):
        runs = [run_payments(mode=mode, crash=c, loss=loss, attempts=attempts, lease=lease,
                             orders=orders, seed=seed) for c in crashes]
        name = ("two writes (effect, then record)" if mode == "reserve"
                else "one transaction (execute_once)")
        doubles.plot(crashes, [r.double_charged for r in runs], "o-", color=_COLORS[mode],
                     label=name)
        unanswered.plot(crashes, [r.unanswered for r in runs], "o-", color=_COLORS[mode],
                        label=name)
    for ax in (doubles, unanswered):
        ax.axvline(crash, color="#999999", linewidth=0.8)
        ax.set_ylim(0, max(5.0, ax.get_ylim()[1]))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    doubles.legend(loc="upper left", fontsize=8)
    label(doubles, title=f"Charged twice or more (lease {lease:g} s)",
          xlabel="crash probability after the effect", ylabel=f"orders (of {orders})")
    label(unanswered, title="Given up without an answer",
          xlabel="crash probability after the effect", ylabel=f"orders (of {orders})")
    return fig


def idempotency_explorer() -> Explorer:
    """Sliders: loss rate, retries, server time, redelivery."""
    return Explorer(draw_loss_sweep, {
        "loss": float_slider("loss rate", 0.2, 0.0, 0.4, 0.05),
        "attempts": int_slider("attempts", 4, 1, 8),
        "service_ms": float_slider("server time (ms)", 100, 20, 200, 20, ".0f"),
        "redelivery": float_slider("redelivery", 0.05, 0.0, 0.3, 0.05),
    })


def draw_crash_run(crash: float = 0.1, lease: float = 1.0, loss: float = 0.1,
                   attempts: int = 6, orders: int = 150, seed: int = 1) -> Figure:
    """One run per design at the chosen crash probability and lease: orders charged
    twice (left) and orders given up without an answer (right), as they accumulate."""
    fig, (doubles, gave_up) = subplots(1, 2, width=10, height=3.6)
    end = 0.0
    for mode in ("reserve", "atomic"):
        run = run_payments(mode=mode, crash=crash, loss=loss, attempts=attempts, lease=lease,
                           orders=orders, seed=seed)
        name = ("two writes (effect, then record)" if mode == "reserve"
                else "one transaction (execute_once)")
        for ax, times in ((doubles, run.double_times), (gave_up, run.gave_up_times)):
            ax.step([0.0, *sorted(times)], range(len(times) + 1), where="post",
                    color=_COLORS[mode], label=f"{name}: {len(times)}")
            end = max(end, *times, 0.0)
    for ax, title in ((doubles, f"Charged twice (crash {crash:.0%}, lease {lease:g} s)"),
                      (gave_up, "Given up without an answer")):
        ax.set_xlim(0, max(end, orders / 20.0) * 1.02)
        ax.set_ylim(0, max(5.0, ax.get_ylim()[1]))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="upper left", fontsize=8)
        label(ax, title=title, xlabel="simulated time (s)", ylabel=f"orders (of {orders})")
    return fig


def crash_explorer() -> Explorer:
    """Sliders: crash probability and the reservation's lease."""
    return Explorer(draw_crash_run, {
        "crash": float_slider("crash probability", 0.1, 0.0, 0.3, 0.05),
        "lease": float_slider("lease (s)", 1.0, 0.2, 2.0, 0.2, ".1f"),
    })


# ================================================================ the salted hash


_KEY_SCRIPT = textwrap.dedent("""
    from patterns.consistency.idempotency import ContentKeyGenerator
    request = ("pay", "alice", "100.00")
    print("order:%016x" % (hash(request) & 0xffffffffffffffff))
    print(ContentKeyGenerator("order").generate_key(list(request))[:22] + "...")
""")


def keys_across_processes(seeds: Sequence[str] = ("1", "2", "3")) -> str:
    """Run one process per ``PYTHONHASHSEED``; each computes a key for the same request
    with the built-in ``hash()`` and with SHA-256 of the canonical encoding."""
    rows = []
    for seed in seeds:
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        salted, stable = subprocess.run(
            [sys.executable, "-c", _KEY_SCRIPT], env=env, capture_output=True, text=True,
            check=True, cwd=ROOT).stdout.split()
        rows.append([seed, salted, stable])
    return format_table(["PYTHONHASHSEED", "key from hash()", "key from sha256"], rows)
