"""Faults: failure probabilities that change over time, outages, and latency distributions."""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Outage:
    """A window ``[start, end)`` (seconds) during which calls fail with ``probability``."""

    start: float
    end: float
    probability: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(f"outage needs 0 <= start < end, got start={self.start!r}, "
                             f"end={self.end!r}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be within [0, 1], got {self.probability!r}")


class FailureSchedule:
    """The probability that a call fails, as a function of time.

    A ``baseline`` probability everywhere, overridden inside each :class:`Outage`
    (the last outage listed wins where they overlap).
    """

    def __init__(self, baseline: float = 0.0, outages: Sequence[Outage] = ()) -> None:
        if not 0.0 <= baseline <= 1.0:
            raise ValueError(f"baseline must be within [0, 1], got {baseline!r}")
        self.baseline = baseline
        self.outages = tuple(outages)

    def probability(self, time: float) -> float:
        """The failure probability at ``time``."""
        result = self.baseline
        for outage in self.outages:
            if outage.start <= time < outage.end:
                result = outage.probability
        return result

    def fails(self, time: float, rng: random.Random) -> bool:
        """Draw whether a call at ``time`` fails."""
        p = self.probability(time)
        return p >= 1.0 or (p > 0.0 and rng.random() < p)

    def __repr__(self) -> str:
        return f"FailureSchedule(baseline={self.baseline!r}, outages={list(self.outages)!r})"


class LatencyDistribution(ABC):
    """How long a call takes, in seconds."""

    @abstractmethod
    def sample(self, rng: random.Random) -> float:
        """Draw one latency."""

    @property
    @abstractmethod
    def mean(self) -> float:
        """The mean latency."""


@dataclass(frozen=True, slots=True)
class Constant(LatencyDistribution):
    """Always ``value`` seconds."""

    value: float

    def __post_init__(self) -> None:
        if not self.value >= 0:
            raise ValueError(f"value must be >= 0, got {self.value!r}")

    def sample(self, rng: random.Random) -> float:
        return self.value

    @property
    def mean(self) -> float:
        return self.value


@dataclass(frozen=True, slots=True)
class Exponential(LatencyDistribution):
    """Exponentially distributed with mean ``mean_value`` seconds (memoryless service)."""

    mean_value: float

    def __post_init__(self) -> None:
        if not self.mean_value > 0:
            raise ValueError(f"mean_value must be > 0, got {self.mean_value!r}")

    def sample(self, rng: random.Random) -> float:
        return rng.expovariate(1.0 / self.mean_value)

    @property
    def mean(self) -> float:
        return self.mean_value


@dataclass(frozen=True, slots=True)
class LogNormal(LatencyDistribution):
    """Log-normal latency given by its median and 99th percentile (seconds): a long tail."""

    median: float
    p99: float

    def __post_init__(self) -> None:
        if not 0 < self.median <= self.p99:
            raise ValueError(f"need 0 < median <= p99, got median={self.median!r}, "
                             f"p99={self.p99!r}")

    @property
    def sigma(self) -> float:
        return math.log(self.p99 / self.median) / 2.3263478740408408  # z of 0.99

    def sample(self, rng: random.Random) -> float:
        return rng.lognormvariate(math.log(self.median), self.sigma)

    @property
    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)
