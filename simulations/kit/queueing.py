"""Queueing theory the models are checked against: M/M/c/K and Erlang's formulas.

One place for the closed forms that several sections need: the bulkhead (4.3) is an
M/M/c/K queue with ``c`` permits and ``K - c`` queue places; a bounded backpressure
buffer with drop-newest (1.2) is an M/M/1/K queue; Erlang B and C are its limits without
a queue and with an unbounded one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from patterns._validation import require_int_at_least, require_non_negative, require_positive

__all__ = ["MMcKTheory", "erlang_b", "erlang_c", "mmck"]


@dataclass(frozen=True, slots=True)
class MMcKTheory:
    """The M/M/c/K queue in steady state (Kleinrock 1975, Gross & Harris ch. 2)."""

    arrival_rate: float
    service_rate: float
    servers: int
    queue_size: int
    blocking: float
    """Probability that an arrival finds all ``K = c + queue_size`` places taken
    (Poisson arrivals see time averages), i.e. the share of calls rejected."""
    mean_queue_length: float
    """Lq: callers waiting, on average over time."""
    mean_wait: float
    """Wq = Lq / (λ (1 - blocking)): mean wait in queue of an *admitted* call (seconds)."""
    wait_probability: float
    """Probability that an admitted call has to wait at all."""
    utilisation: float
    """Share of the permits in use: λ (1 - blocking) / (c μ)."""

    @property
    def mean_in_system(self) -> float:
        """L = Lq + λ (1 - blocking) / μ: callers waiting or in service, on average."""
        served = self.arrival_rate * (1.0 - self.blocking)
        return self.mean_queue_length + served / self.service_rate

    @property
    def mean_sojourn(self) -> float:
        """W = L / λ_eff (Little's law): mean time in the system of an admitted call."""
        admitted = self.arrival_rate * (1.0 - self.blocking)
        return self.mean_in_system / admitted if admitted else 0.0

    @property
    def offered_load(self) -> float:
        """a = λ / μ, in Erlangs."""
        return self.arrival_rate / self.service_rate


def mmck(arrival_rate: float, service_rate: float, servers: int, queue_size: int) -> MMcKTheory:
    """Steady state of M/M/c/K with ``c = servers`` and ``K = servers + queue_size``.

    With ``a = λ/μ``, the probability of ``n`` calls present is proportional to
    ``a**n / n!`` for ``n <= c`` and to ``a**n / (c! c**(n-c))`` for ``c <= n <= K``
    (computed in logarithms, so large systems do not overflow).
    """
    require_non_negative("arrival_rate", arrival_rate)
    require_positive("service_rate", service_rate)
    require_int_at_least("servers", servers, 1)
    require_int_at_least("queue_size", queue_size, 0)
    capacity = servers + queue_size
    if arrival_rate == 0:
        return MMcKTheory(0.0, service_rate, servers, queue_size, 0.0, 0.0, 0.0, 0.0, 0.0)
    log_a = math.log(arrival_rate / service_rate)
    n = np.arange(capacity + 1)
    steps = log_a - np.log(np.minimum(np.maximum(n[1:], 1), servers))
    log_terms = np.concatenate([[0.0], np.cumsum(steps)])
    weights = np.exp(log_terms - log_terms.max())
    p = weights / weights.sum()
    blocking = float(p[capacity])
    waiting = np.maximum(n - servers, 0)
    lq = float(np.dot(waiting, p))
    admitted = arrival_rate * (1.0 - blocking)
    wait_probability = float(p[servers:capacity].sum() / (1.0 - blocking))
    return MMcKTheory(arrival_rate, service_rate, servers, queue_size, blocking, lq,
                      lq / admitted, wait_probability, admitted / (servers * service_rate))


def erlang_b(servers: int, offered_load: float) -> float:
    """Erlang's B formula: blocking probability of M/M/c/c (no queue), by recursion."""
    require_int_at_least("servers", servers, 1)
    require_non_negative("offered_load", offered_load)
    b = 1.0
    for k in range(1, servers + 1):
        b = offered_load * b / (k + offered_load * b)
    return b


def erlang_c(servers: int, offered_load: float) -> float:
    """Erlang's C formula: probability of waiting in M/M/c (unbounded queue), a < c."""
    if not offered_load < servers:
        raise ValueError(f"offered_load must be < servers ({servers}) for a stable M/M/c, "
                         f"got {offered_load!r}")
    b = erlang_b(servers, offered_load)
    return servers * b / (servers - offered_load * (1.0 - b))
