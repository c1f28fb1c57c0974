"""Back-off schedules with jitter (guide section 4.1, 重试与回退策略).

A :class:`Backoff` is an immutable description of how long to wait before each retry.
``backoff.delays(rng)`` returns a fresh, endless iterator of delays in seconds, one per
retry, so a single back-off object serves any number of concurrent calls.

Jitter follows Marc Brooker, "Exponential Backoff and Jitter" (AWS Architecture Blog,
2015). With ``d`` the nominal delay of retry ``n`` (already capped):

* ``none``: ``d``;
* ``full``: uniform in ``[0, d]``;
* ``equal``: ``d/2`` plus uniform in ``[0, d/2]``;
* ``decorrelated`` (exponential only): ``min(cap, uniform(initial, 3 * previous))``, with
  ``previous`` starting at ``initial``.

Unlike the guide's sketch, the first exponential delay is ``initial`` (not
``initial * factor``), and jitter spreads delays over the whole range instead of
shaving 0-30 % off them (which keeps clients synchronised).

An uncapped schedule (``cap=inf``, the default) grows until it saturates at
:data:`LARGEST_DELAY` (about 4.5e307 s): every delay is a finite number that a driver can
wait on, never ``inf`` (``0.1 * 2**1030`` overflows) and never NaN (``0 * inf`` with
full jitter, ``3 * inf - inf`` with decorrelated jitter).
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Iterator
from enum import StrEnum
from sys import float_info
from typing import Final

from patterns._validation import (
    require_at_least,
    require_finite,
    require_finite_non_negative,
    require_int_at_least,
    require_rng,
)

__all__ = [
    "LARGEST_DELAY",
    "Backoff",
    "ConstantBackoff",
    "ExponentialBackoff",
    "Jitter",
    "LinearBackoff",
]


class Jitter(StrEnum):
    """How randomness spreads the delays of many clients apart."""

    NONE = "none"
    FULL = "full"
    EQUAL = "equal"
    DECORRELATED = "decorrelated"

    @classmethod
    def parse(cls, value: Jitter | str) -> Jitter:
        """Accept a :class:`Jitter` or its name; reject anything else, naming it."""
        if isinstance(value, Jitter):
            return value
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(repr(kind.value) for kind in cls)
            raise ValueError(f"jitter must be one of {allowed}, got {value!r}") from None


LARGEST_DELAY: Final[float] = float_info.max / 4
"""The largest delay a schedule yields: growth saturates here, so that ``3 * previous``
(decorrelated jitter) and ``nominal * multiplier`` never overflow to ``inf``."""


def _apply(jitter: Jitter, nominal: float, rng: random.Random) -> float:
    if jitter is Jitter.FULL:
        return rng.random() * nominal
    if jitter is Jitter.EQUAL:
        half = nominal / 2.0
        return half + rng.random() * half
    return nominal


class Backoff(ABC):
    """How long to wait before each retry."""

    __slots__ = ()

    @abstractmethod
    def delays(self, rng: random.Random) -> Iterator[float]:
        """An endless iterator of delays in seconds: before retry 1, retry 2, ...

        ``rng`` supplies the randomness of jitter, so that seeded runs repeat exactly.
        """

    def first(self, count: int, rng: random.Random | None = None) -> list[float]:
        """The first ``count`` delays, for inspection and plotting."""
        require_int_at_least("count", count, 0)
        delays = self.delays(require_rng("rng", rng) if rng is not None else random.Random(0))
        return [next(delays) for _ in range(count)]


class ConstantBackoff(Backoff):
    """The same nominal delay before every retry (the guide's ``FixedIntervalRetry``)."""

    __slots__ = ("delay", "jitter")

    def __init__(self, delay: float, *, jitter: Jitter | str = Jitter.NONE) -> None:
        self.delay = require_finite_non_negative("delay", delay)
        self.jitter = Jitter.parse(jitter)
        if self.jitter is Jitter.DECORRELATED:
            raise ValueError("jitter 'decorrelated' needs a growing back-off; "
                             "use ExponentialBackoff, got ConstantBackoff")

    def delays(self, rng: random.Random) -> Iterator[float]:
        return self._delays(require_rng("rng", rng))

    def _delays(self, rng: random.Random) -> Iterator[float]:
        delay, jitter = self.delay, self.jitter
        while True:
            yield _apply(jitter, delay, rng)

    def __repr__(self) -> str:
        return f"ConstantBackoff(delay={self.delay!r}, jitter={self.jitter.value!r})"


class LinearBackoff(Backoff):
    """Delays ``initial, initial + increment, initial + 2*increment, ...`` up to ``cap``."""

    __slots__ = ("cap", "increment", "initial", "jitter")

    def __init__(
        self,
        initial: float,
        increment: float,
        *,
        cap: float = math.inf,
        jitter: Jitter | str = Jitter.NONE,
    ) -> None:
        self.initial = require_finite_non_negative("initial", initial)
        self.increment = require_finite_non_negative("increment", increment)
        self.cap = require_at_least("cap", cap, initial)
        self.jitter = Jitter.parse(jitter)
        if self.jitter is Jitter.DECORRELATED:
            raise ValueError("jitter 'decorrelated' needs a growing back-off; "
                             "use ExponentialBackoff, got LinearBackoff")

    def delays(self, rng: random.Random) -> Iterator[float]:
        return self._delays(require_rng("rng", rng))

    def _delays(self, rng: random.Random) -> Iterator[float]:
        nominal, step, jitter = self.initial, self.increment, self.jitter
        cap = min(self.cap, LARGEST_DELAY)
        while True:
            yield _apply(jitter, min(nominal, cap), rng)
            if nominal < cap:
                nominal += step

    def __repr__(self) -> str:
        return (f"LinearBackoff(initial={self.initial!r}, increment={self.increment!r}, "
                f"cap={self.cap!r}, jitter={self.jitter.value!r})")


class ExponentialBackoff(Backoff):
    """Delays ``initial, initial*multiplier, initial*multiplier**2, ...`` up to ``cap``.

    The first retry waits ``initial``. With ``jitter="decorrelated"`` each delay is drawn
    uniformly from ``[initial, 3 * previous delay]`` and capped, as in Brooker (2015);
    ``multiplier`` then plays no part.
    """

    __slots__ = ("cap", "initial", "jitter", "multiplier")

    def __init__(
        self,
        initial: float,
        *,
        multiplier: float = 2.0,
        cap: float = math.inf,
        jitter: Jitter | str = Jitter.NONE,
    ) -> None:
        self.initial = require_finite_non_negative("initial", initial)
        self.multiplier = require_at_least("multiplier", require_finite("multiplier", multiplier),
                                           1.0)
        self.cap = require_at_least("cap", cap, initial)
        self.jitter = Jitter.parse(jitter)

    def delays(self, rng: random.Random) -> Iterator[float]:
        return self._delays(require_rng("rng", rng))

    def _delays(self, rng: random.Random) -> Iterator[float]:
        jitter = self.jitter
        cap = min(self.cap, LARGEST_DELAY)
        initial = min(self.initial, cap)
        if jitter is Jitter.DECORRELATED:
            previous = initial
            while True:
                previous = min(cap, initial + rng.random() * (3.0 * previous - initial))
                yield previous
        nominal, multiplier = min(initial, cap), self.multiplier
        while True:
            yield _apply(jitter, nominal, rng)
            if nominal < cap:
                nominal = min(cap, nominal * multiplier)

    def __repr__(self) -> str:
        return (f"ExponentialBackoff(initial={self.initial!r}, multiplier={self.multiplier!r}, "
                f"cap={self.cap!r}, jitter={self.jitter.value!r})")
