"""The shared simulation kit: write once, use in every topic model."""

from simulations.kit.clock import SimClock
from simulations.kit.faults import (
    Constant,
    Exponential,
    FailureSchedule,
    LatencyDistribution,
    LogNormal,
    Outage,
)
from simulations.kit.recorder import Recorder
from simulations.kit.rng import RandomStreams
from simulations.kit.workloads import bursty_arrivals, poisson_arrivals, start_at

__all__ = [
    "Constant",
    "Exponential",
    "FailureSchedule",
    "LatencyDistribution",
    "LogNormal",
    "Outage",
    "RandomStreams",
    "Recorder",
    "SimClock",
    "bursty_arrivals",
    "poisson_arrivals",
    "start_at",
]
