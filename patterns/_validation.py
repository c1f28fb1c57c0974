"""Argument checks shared by every pattern.

Each check raises :class:`ValueError` (or :class:`TypeError` for a value of the wrong
type) whose message names the parameter and the value it was given, and returns the
value so that checks can be used inline.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "require_at_least",
    "require_clock",
    "require_finite",
    "require_finite_non_negative",
    "require_finite_positive",
    "require_int_at_least",
    "require_non_negative",
    "require_positive",
    "require_rng",
    "require_single_wait",
    "require_unit_interval",
]


def _require_real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return value


def require_finite(name: str, value: float) -> float:
    """``value`` is a finite real number."""
    _require_real(name, value)
    if math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def require_non_negative(name: str, value: float) -> float:
    """``value`` is a real number >= 0 (infinity allowed)."""
    if _require_real(name, value) < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def require_finite_non_negative(name: str, value: float) -> float:
    """``value`` is a finite real number >= 0."""
    return require_non_negative(name, require_finite(name, value))


def require_positive(name: str, value: float) -> float:
    """``value`` is a real number > 0 (infinity allowed)."""
    if _require_real(name, value) <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def require_finite_positive(name: str, value: float) -> float:
    """``value`` is a finite real number > 0."""
    return require_positive(name, require_finite(name, value))


def require_at_least(name: str, value: float, minimum: float) -> float:
    """``value`` is a real number >= ``minimum``."""
    if _require_real(name, value) < minimum:
        raise ValueError(f"{name} must be >= {minimum!r}, got {value!r}")
    return value


def require_unit_interval(name: str, value: float) -> float:
    """``value`` lies in the closed interval [0, 1]."""
    if not 0.0 <= _require_real(name, value) <= 1.0:
        raise ValueError(f"{name} must be within [0, 1], got {value!r}")
    return value


def require_int_at_least(name: str, value: int, minimum: int) -> int:
    """``value`` is an int (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def require_clock(name: str, value: Any) -> Any:
    """``value`` is a clock: it has a callable ``now()`` (:class:`patterns.clock.Clock`).

    A clock *class* (``ManualClock`` rather than ``ManualClock()``) is refused: its
    ``now`` is callable, but calling it fails later, far from the mistake."""
    if isinstance(value, type) or not callable(getattr(value, "now", None)):
        raise TypeError(f"{name} must be a Clock (an object with a now() method), "
                        f"got {value!r} ({type(value).__name__})")
    return value


def require_rng(name: str, value: Any) -> Any:
    """``value`` is a :class:`random.Random` (a seeded one makes runs repeatable)."""
    import random

    if not isinstance(value, random.Random):
        raise TypeError(f"{name} must be a random.Random, got {value!r} "
                        f"({type(value).__name__})")
    return value


def require_single_wait(name: str, value: float) -> float:
    """``value`` is one wait in seconds (a poll interval): finite, > 0, and no longer
    than one ``threading`` wait can be (:data:`threading.TIMEOUT_MAX`)."""
    import threading

    require_finite_positive(name, value)
    if value > threading.TIMEOUT_MAX:
        raise ValueError(f"{name} must be at most {threading.TIMEOUT_MAX} s (the longest "
                         f"single wait threading allows), got {value!r}")
    return value
