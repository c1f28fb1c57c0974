"""Tests for :mod:`patterns.resilience.backoff` (guide section 4.1)."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patterns.resilience.backoff import (
    Backoff,
    ConstantBackoff,
    ExponentialBackoff,
    Jitter,
    LinearBackoff,
)

REL = 1e-9


def take(backoff: Backoff, count: int, seed: int = 0) -> list[float]:
    delays = backoff.delays(random.Random(seed))
    return [next(delays) for _ in range(count)]


# --------------------------------------------------------------------------- exact sequences


def test_constant_delays_are_all_the_same() -> None:
    assert take(ConstantBackoff(0.5), 6) == [0.5] * 6


def test_constant_zero_delay_is_allowed() -> None:
    assert take(ConstantBackoff(0.0), 3) == [0.0, 0.0, 0.0]


def test_linear_delays_grow_by_the_increment_up_to_the_cap() -> None:
    assert take(LinearBackoff(1.0, 2.0, cap=6.0), 6) == [1.0, 3.0, 5.0, 6.0, 6.0, 6.0]


def test_linear_without_cap_grows_forever() -> None:
    assert take(LinearBackoff(0.5, 0.25), 5) == [0.5, 0.75, 1.0, 1.25, 1.5]


def test_linear_with_zero_increment_is_constant() -> None:
    assert take(LinearBackoff(2.0, 0.0), 4) == [2.0] * 4


def test_exponential_first_delay_is_initial_not_initial_times_multiplier() -> None:
    delays = take(ExponentialBackoff(0.1, multiplier=3.0), 1)
    assert delays == [0.1]


def test_exponential_delays_multiply() -> None:
    assert take(ExponentialBackoff(1.0), 6) == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    assert take(ExponentialBackoff(0.5, multiplier=3.0), 4) == [0.5, 1.5, 4.5, 13.5]


def test_exponential_delays_stop_growing_at_the_cap() -> None:
    assert take(ExponentialBackoff(1.0, cap=5.0), 7) == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0]


def test_exponential_with_cap_equal_to_initial_is_constant() -> None:
    assert take(ExponentialBackoff(3.0, cap=3.0), 4) == [3.0] * 4


def test_exponential_with_multiplier_one_is_constant() -> None:
    assert take(ExponentialBackoff(0.25, multiplier=1.0), 4) == [0.25] * 4


def test_delays_returns_a_fresh_iterator_each_time() -> None:
    backoff = ExponentialBackoff(1.0, cap=8.0)
    first = backoff.delays(random.Random(0))
    assert [next(first) for _ in range(3)] == [1.0, 2.0, 4.0]
    second = backoff.delays(random.Random(0))
    assert next(second) == 1.0  # not affected by the first iterator
    assert next(first) == 8.0


def test_first_lists_the_first_delays() -> None:
    assert ExponentialBackoff(1.0, cap=4.0).first(4) == [1.0, 2.0, 4.0, 4.0]
    assert LinearBackoff(1.0, 1.0).first(0) == []


def test_first_is_repeatable_without_an_rng_and_uses_the_given_one() -> None:
    backoff = ExponentialBackoff(1.0, cap=30.0, jitter="full")
    assert backoff.first(8) == backoff.first(8)
    assert backoff.first(8) == take(backoff, 8, seed=0)
    assert backoff.first(8, random.Random(5)) == take(backoff, 8, seed=5)


# --------------------------------------------------------------------------- jitter kinds


def test_jitter_parse_accepts_members_and_names() -> None:
    assert Jitter.parse(Jitter.FULL) is Jitter.FULL
    assert Jitter.parse("equal") is Jitter.EQUAL
    assert ExponentialBackoff(1.0, jitter="decorrelated").jitter is Jitter.DECORRELATED
    assert ConstantBackoff(1.0).jitter is Jitter.NONE


def test_full_jitter_with_a_seeded_rng() -> None:
    # Full jitter: uniform in [0, d], one draw per delay.
    expected_rng = random.Random(42)
    nominal = [1.0, 2.0, 4.0, 8.0, 8.0]
    expected = [expected_rng.random() * d for d in nominal]
    backoff = ExponentialBackoff(1.0, cap=8.0, jitter="full")
    assert take(backoff, 5, seed=42) == pytest.approx(expected, rel=REL)


def test_equal_jitter_with_a_seeded_rng() -> None:
    # Equal jitter: d/2 plus uniform in [0, d/2].
    expected_rng = random.Random(7)
    nominal = [1.0, 3.0, 5.0, 5.0]
    expected = [d / 2 + expected_rng.random() * d / 2 for d in nominal]
    backoff = LinearBackoff(1.0, 2.0, cap=5.0, jitter="equal")
    assert take(backoff, 4, seed=7) == pytest.approx(expected, rel=REL)


def test_decorrelated_jitter_with_a_seeded_rng() -> None:
    # Brooker: sleep = min(cap, uniform(initial, 3 * previous)), previous starts at initial.
    expected_rng = random.Random(3)
    initial, cap = 0.5, 6.0
    previous, expected = initial, []
    for _ in range(10):
        previous = min(cap, initial + expected_rng.random() * (3 * previous - initial))
        expected.append(previous)
    backoff = ExponentialBackoff(initial, cap=cap, jitter="decorrelated")
    assert take(backoff, 10, seed=3) == pytest.approx(expected, rel=REL)


def test_decorrelated_jitter_ignores_the_multiplier() -> None:
    a = ExponentialBackoff(0.5, multiplier=1.0, cap=6.0, jitter="decorrelated")
    b = ExponentialBackoff(0.5, multiplier=10.0, cap=6.0, jitter="decorrelated")
    assert take(a, 10, seed=1) == take(b, 10, seed=1)


def test_constant_with_full_jitter_spreads_over_the_whole_range() -> None:
    # Brooker's full jitter, not the guide's "shave off 0-30 %": delays use all of [0, d].
    delays = take(ConstantBackoff(10.0, jitter="full"), 2000, seed=11)
    assert min(delays) < 1.0
    assert max(delays) > 9.0
    assert statistics.fmean(delays) == pytest.approx(5.0, abs=0.5)


def test_equal_jitter_spreads_over_the_upper_half() -> None:
    delays = take(ConstantBackoff(10.0, jitter="equal"), 2000, seed=11)
    assert min(delays) >= 5.0
    assert min(delays) < 5.5
    assert max(delays) > 9.5
    assert statistics.fmean(delays) == pytest.approx(7.5, abs=0.5)


def test_jittered_delays_differ_between_seeds() -> None:
    backoff = ExponentialBackoff(1.0, cap=60.0, jitter="full")
    assert take(backoff, 5, seed=1) != take(backoff, 5, seed=2)


# --------------------------------------------------------------------------- properties

initials = st.floats(min_value=0.0, max_value=100.0, allow_nan=False, allow_infinity=False)
multipliers = st.floats(min_value=1.0, max_value=10.0, allow_nan=False, allow_infinity=False)
extras = st.one_of(
    st.just(math.inf),
    st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False),
)
retries = st.integers(min_value=1, max_value=40)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def nominal_delay(initial: float, multiplier: float, cap: float, n: int) -> float:
    """The nominal delay before retry ``n`` (1-based), capped."""
    return min(cap, initial * multiplier ** (n - 1))


def within(value: float, low: float, high: float) -> bool:
    slack = REL * max(1.0, abs(high), abs(low))
    return low - slack <= value <= high + slack


@settings(deadline=None)
@given(initial=initials, multiplier=multipliers, extra=extras, count=retries, seed=seeds)
def test_no_jitter_gives_exactly_the_nominal_delay(
    initial: float, multiplier: float, extra: float, count: int, seed: int
) -> None:
    cap = initial + extra
    backoff = ExponentialBackoff(initial, multiplier=multiplier, cap=cap, jitter="none")
    for n, delay in enumerate(take(backoff, count, seed), start=1):
        assert delay == pytest.approx(nominal_delay(initial, multiplier, cap, n), rel=REL)
        assert delay <= cap


@settings(deadline=None)
@given(initial=initials, multiplier=multipliers, extra=extras, count=retries, seed=seeds)
def test_full_jitter_stays_within_zero_and_nominal(
    initial: float, multiplier: float, extra: float, count: int, seed: int
) -> None:
    cap = initial + extra
    backoff = ExponentialBackoff(initial, multiplier=multiplier, cap=cap, jitter="full")
    for n, delay in enumerate(take(backoff, count, seed), start=1):
        nominal = nominal_delay(initial, multiplier, cap, n)
        assert within(delay, 0.0, nominal), (n, delay, nominal)
        assert delay >= 0.0


@settings(deadline=None)
@given(initial=initials, multiplier=multipliers, extra=extras, count=retries, seed=seeds)
def test_equal_jitter_stays_within_half_nominal_and_nominal(
    initial: float, multiplier: float, extra: float, count: int, seed: int
) -> None:
    cap = initial + extra
    backoff = ExponentialBackoff(initial, multiplier=multiplier, cap=cap, jitter="equal")
    for n, delay in enumerate(take(backoff, count, seed), start=1):
        nominal = nominal_delay(initial, multiplier, cap, n)
        assert within(delay, nominal / 2, nominal), (n, delay, nominal)


@settings(deadline=None)
@given(initial=initials, extra=extras, count=retries, seed=seeds)
def test_decorrelated_jitter_stays_within_initial_and_cap_and_three_times_previous(
    initial: float, extra: float, count: int, seed: int
) -> None:
    cap = initial + extra
    backoff = ExponentialBackoff(initial, cap=cap, jitter="decorrelated")
    previous = initial
    for delay in take(backoff, count, seed):
        assert initial <= delay <= cap
        assert within(delay, initial, 3 * previous), (delay, previous)
        previous = delay


@settings(deadline=None)
@given(
    initial=initials,
    increment=st.floats(min_value=0.0, max_value=100.0, allow_nan=False, allow_infinity=False),
    extra=extras,
    count=retries,
    seed=seeds,
    jitter=st.sampled_from(["none", "full", "equal"]),
)
def test_linear_jitter_bounds(
    initial: float, increment: float, extra: float, count: int, seed: int, jitter: str
) -> None:
    cap = initial + extra
    backoff = LinearBackoff(initial, increment, cap=cap, jitter=jitter)
    for n, delay in enumerate(take(backoff, count, seed), start=1):
        nominal = min(cap, initial + (n - 1) * increment)
        low = {"none": nominal, "full": 0.0, "equal": nominal / 2}[jitter]
        assert within(delay, low, nominal), (n, delay, nominal)


@settings(deadline=None)
@given(
    kind=st.sampled_from(["exponential", "linear", "constant"]),
    jitter=st.sampled_from(list(Jitter)),
    initial=initials,
    extra=extras,
    count=retries,
    seed=seeds,
)
def test_same_seed_gives_the_same_delays(
    kind: str, jitter: Jitter, initial: float, extra: float, count: int, seed: int
) -> None:
    if kind != "exponential" and jitter is Jitter.DECORRELATED:
        return
    backoff: Backoff
    if kind == "exponential":
        backoff = ExponentialBackoff(initial, cap=initial + extra, jitter=jitter)
    elif kind == "linear":
        backoff = LinearBackoff(initial, 1.0, cap=initial + extra, jitter=jitter)
    else:
        backoff = ConstantBackoff(initial, jitter=jitter)
    assert take(backoff, count, seed) == take(backoff, count, seed)
    assert backoff.first(count, random.Random(seed)) == take(backoff, count, seed)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: ConstantBackoff(-1.0), ValueError, r"delay must be >= 0, got -1\.0"),
        (lambda: ConstantBackoff(math.nan), ValueError, r"delay must be a number, got nan"),
        (lambda: ConstantBackoff(math.inf), ValueError, r"delay must be finite, got inf"),
        (lambda: ConstantBackoff(True), TypeError, r"delay must be a number, got True \(bool\)"),
        (lambda: ConstantBackoff("1"), TypeError, r"delay must be a number, got '1' \(str\)"),
        (lambda: LinearBackoff(-0.5, 1.0), ValueError, r"initial must be >= 0, got -0\.5"),
        (lambda: LinearBackoff(1.0, -2.0), ValueError, r"increment must be >= 0, got -2\.0"),
        (lambda: LinearBackoff(math.nan, 1.0), ValueError, r"initial must be a number, got nan"),
        (lambda: LinearBackoff(1.0, math.nan), ValueError,
         r"increment must be a number, got nan"),
        (lambda: LinearBackoff(1.0, False), TypeError,
         r"increment must be a number, got False \(bool\)"),
        (lambda: LinearBackoff(2.0, 1.0, cap=1.0), ValueError, r"cap must be >= 2\.0, got 1\.0"),
        (lambda: LinearBackoff(1.0, 1.0, cap=math.nan), ValueError,
         r"cap must be a number, got nan"),
        (lambda: ExponentialBackoff(-0.1), ValueError, r"initial must be >= 0, got -0\.1"),
        (lambda: ExponentialBackoff(math.nan), ValueError, r"initial must be a number, got nan"),
        (lambda: ExponentialBackoff(math.inf), ValueError, r"initial must be finite, got inf"),
        (lambda: ExponentialBackoff(True), TypeError,
         r"initial must be a number, got True \(bool\)"),
        (lambda: ExponentialBackoff(2.0, cap=1.0), ValueError, r"cap must be >= 2\.0, got 1\.0"),
        (lambda: ExponentialBackoff(1.0, cap=True), TypeError,
         r"cap must be a number, got True \(bool\)"),
        (lambda: ExponentialBackoff(1.0, multiplier=0.5), ValueError,
         r"multiplier must be >= 1\.0, got 0\.5"),
        (lambda: ExponentialBackoff(1.0, multiplier=math.nan), ValueError,
         r"multiplier must be a number, got nan"),
        (lambda: ExponentialBackoff(1.0, multiplier=True), TypeError,
         r"multiplier must be a number, got True \(bool\)"),
    ],
)
def test_bad_parameters_are_refused_naming_parameter_and_value(
    make: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make()  # type: ignore[operator]


@pytest.mark.parametrize(
    "make",
    [
        lambda j: ConstantBackoff(1.0, jitter=j),
        lambda j: LinearBackoff(1.0, 1.0, jitter=j),
        lambda j: ExponentialBackoff(1.0, jitter=j),
    ],
    ids=["constant", "linear", "exponential"],
)
@pytest.mark.parametrize("value", ["gaussian", "FULL", "", 3, None])
def test_unknown_jitter_is_refused_naming_the_value(make: object, value: object) -> None:
    with pytest.raises(
        ValueError,
        match=rf"jitter must be one of 'none', 'full', 'equal', 'decorrelated', got {value!r}",
    ):
        make(value)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: ConstantBackoff(1.0, jitter="decorrelated"), "ConstantBackoff"),
        (lambda: LinearBackoff(1.0, 1.0, jitter=Jitter.DECORRELATED), "LinearBackoff"),
    ],
)
def test_decorrelated_jitter_needs_an_exponential_backoff(make: object, name: str) -> None:
    with pytest.raises(ValueError, match=rf"jitter 'decorrelated' .*got {name}"):
        make()  # type: ignore[operator]


def test_linear_refuses_an_infinite_initial_delay() -> None:
    # ConstantBackoff(inf) and ExponentialBackoff(inf) are refused; LinearBackoff must be too,
    # or a retry would wait forever.
    with pytest.raises(ValueError, match=r"initial.*inf"):
        LinearBackoff(math.inf, 1.0)


def test_backoff_is_abstract() -> None:
    with pytest.raises(TypeError):
        Backoff()  # type: ignore[abstract]


@pytest.mark.parametrize(
    ("backoff", "text"),
    [
        (ConstantBackoff(0.5), "ConstantBackoff(delay=0.5, jitter='none')"),
        (LinearBackoff(1.0, 2.0, cap=9.0, jitter="full"),
         "LinearBackoff(initial=1.0, increment=2.0, cap=9.0, jitter='full')"),
        (ExponentialBackoff(0.1, cap=10.0, jitter="equal"),
         "ExponentialBackoff(initial=0.1, multiplier=2.0, cap=10.0, jitter='equal')"),
    ],
)
def test_repr(backoff: Backoff, text: str) -> None:
    assert repr(backoff) == text


# An uncapped schedule saturates instead of overflowing (issue 11: after about a
# thousand retries 0.1 * 2**n became inf, and full or decorrelated jitter then gave NaN).
@pytest.mark.parametrize("jitter", ["none", "full", "equal", "decorrelated"])
@pytest.mark.parametrize("initial", [0.1, 1e300, 1.7e308])
def test_an_uncapped_exponential_schedule_stays_finite(jitter: str, initial: float) -> None:
    from patterns.resilience.backoff import LARGEST_DELAY

    delays = ExponentialBackoff(initial, jitter=jitter).first(1200, random.Random(1))
    assert all(math.isfinite(d) and 0.0 <= d <= LARGEST_DELAY for d in delays)
    if jitter == "none":
        assert delays[-1] == LARGEST_DELAY


def test_a_zero_draw_of_full_jitter_on_a_saturated_schedule_is_zero_not_nan() -> None:
    class ZeroRandom(random.Random):
        def random(self) -> float:
            return 0.0

    delays = ExponentialBackoff(1.0, jitter="full").first(1100, ZeroRandom())
    assert delays[-1] == 0.0
