"""Shared checks for the bad-input sweep of the library's public API (issue 11).

Every public constructor and method must turn a bad value into a ``ValueError`` or
``TypeError`` whose message names the parameter (and, for values with a short ``repr``,
the value), at the boundary, before any state changes. The strategies below are the
values that slipped through before: NaN, infinities, huge finite numbers that overflow
later (``1e10`` seconds, ``1e308``), negatives, zero, bools posing as numbers, and values of
the wrong type.

Use::

    @given(value=NOT_A_NUMBER | NON_FINITE | NEGATIVE)
    def test_rate(value):
        assert_rejected(lambda: TokenBucket(rate=value, capacity=1), "rate", value)
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from patterns.clock import MONOTONIC, ManualClock

__all__ = [
    "HUGE",
    "INF",
    "NAN",
    "NEGATIVE",
    "NON_FINITE",
    "NOT_AN_INT",
    "NOT_AN_RNG",
    "NOT_A_CLOCK",
    "NOT_A_NUMBER",
    "NOT_A_STR",
    "NOT_CALLABLE",
    "SWEEP",
    "ZERO",
    "assert_rejected",
]

#: The settings of every sweep: a few examples each (the strategies are small sets), no
#: deadline (a first call may import a backend), and fixtures such as ``tmp_path`` allowed.
SWEEP = settings(max_examples=15, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])

NAN = float("nan")
INF = float("inf")

#: NaN and both infinities.
NON_FINITE: st.SearchStrategy[float] = st.sampled_from([NAN, INF, -INF])
#: Finite but far beyond anything a timer, ``time.sleep`` or a ``Condition.wait`` accepts.
HUGE: st.SearchStrategy[float] = st.sampled_from([1e10, 1e15, 1e300, 1.7e308])
#: Negative numbers, tiny and large.
NEGATIVE: st.SearchStrategy[float] = st.one_of(
    st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
    st.integers(max_value=-1),
)
#: Values that are not numbers at all (bools included: ``True`` is not a rate).
NOT_A_NUMBER: st.SearchStrategy[Any] = st.sampled_from(
    ["1", None, True, False, [1], {"a": 1}, object(), b"1", 1j])
#: Values that are not ints (for counts and sizes).
NOT_AN_INT: st.SearchStrategy[Any] = st.sampled_from(
    [1.5, 2.0, "2", None, True, [2], NAN, INF])
#: Values that are not callables (for functions, clocks' now, listeners).
NOT_CALLABLE: st.SearchStrategy[Any] = st.sampled_from([1, "f", None, [len], 2.5])
#: Zero, int and float (for values that must be > 0).
ZERO: st.SearchStrategy[float] = st.sampled_from([0, 0.0])
#: Values that are not strings (names, keys, ids).
NOT_A_STR: st.SearchStrategy[Any] = st.sampled_from(
    [None, 1, 1.5, True, b"s", ["s"], {"s": 1}])
#: Values that are not clocks: no ``now()``, a ``now`` that is not callable, a bare
#: ``now`` function, and the class ``ManualClock`` itself (its ``now`` is callable, but
#: calling it fails later, far from the mistake). ``None`` is not among them (it is the
#: default of many ``clock`` parameters): add ``st.none()`` where it is refused.
NOT_A_CLOCK: st.SearchStrategy[Any] = st.sampled_from(
    [1, 2.5, True, "clock", b"clock", [1.0], object(), len, MONOTONIC.now,
     ManualClock])
#: Values that are not ``random.Random`` instances (falsy ones too: ``rng or Random()``
#: would replace them silently), the ``random`` module included.
NOT_AN_RNG: st.SearchStrategy[Any] = st.sampled_from(
    [0, 1, "", "seed", [], [0.5], None.__class__, random, object()])


def _short_repr(value: Any) -> str | None:
    text = repr(value)
    if len(text) > 40 or text.startswith("<"):
        return None
    return text


def assert_rejected(call: Callable[[], object], parameter: str, value: Any = ...,
                    errors: tuple[type[BaseException], ...] = (ValueError, TypeError)) -> None:
    """``call()`` raises one of ``errors`` naming ``parameter`` (and ``value`` if given).

    A NaN is named as ``nan``; values whose ``repr`` is long or an address are not
    looked for in the message.
    """
    with pytest.raises(errors) as caught:
        call()
    message = str(caught.value)
    assert parameter in message, (
        f"the error does not name the parameter {parameter!r}: {message!r}")
    if value is ...:
        return
    if isinstance(value, float) and math.isnan(value):
        assert "nan" in message.lower(), f"the error does not show the NaN: {message!r}"
        return
    text = _short_repr(value)
    if text is not None:
        assert text in message, f"the error does not show the value {text}: {message!r}"
