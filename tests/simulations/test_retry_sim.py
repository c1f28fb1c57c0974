"""Simulations of guide section 4.1 assert the behaviour they are meant to show."""

from __future__ import annotations

import math

import pytest

from patterns.resilience.backoff import ExponentialBackoff
from simulations.kit.faults import FailureSchedule, Outage
from simulations.retry import (
    JITTER_KINDS,
    GuideSketchBackoff,
    compare_jitter,
    draw_amplification,
    draw_contention,
    draw_jitter_comparison,
    expected_amplification,
    run_amplification,
    run_contention,
    run_permanent_errors,
    run_retry_wave,
)


@pytest.mark.parametrize("clients", [50, 100])
def test_full_and_decorrelated_jitter_need_far_fewer_calls_than_none(clients: int) -> None:
    # Brooker (2015): with many contending clients, jitter cuts the work dramatically.
    for seed in (1, 2, 3):
        results = compare_jitter(clients, seed=seed)
        none = results["none"].calls
        assert results["full"].calls < 0.4 * none
        assert results["decorrelated"].calls < 0.4 * none
        assert results["full"].completion_time < 0.2 * results["none"].completion_time


def test_without_jitter_one_client_wins_per_round() -> None:
    # In lock-step every round has exactly one winner: n + (n-1) + ... + 1 calls.
    result = run_contention(30, jitter="none")
    assert result.calls == 30 * 31 // 2
    assert len(result.success_times) == 30


def test_contention_is_deterministic_for_a_seed() -> None:
    a = run_contention(40, jitter="full", seed=5)
    b = run_contention(40, jitter="full", seed=5)
    c = run_contention(40, jitter="full", seed=6)
    assert (a.calls, a.completion_time) == (b.calls, b.completion_time)
    assert (a.calls, a.completion_time) != (c.calls, c.completion_time)


def test_every_client_eventually_writes_once() -> None:
    for kind in JITTER_KINDS:
        result = run_contention(25, jitter=kind)
        assert len(result.success_times) == 25
        assert result.calls >= 25


def test_guide_sketch_delays_start_late_and_jitter_only_shrinks_them() -> None:
    import random

    exact = GuideSketchBackoff(0.1, 10.0, jitter=False).first(3)
    assert exact == [0.2, 0.4, 0.8]  # initial * factor: twice the configured first delay
    assert ExponentialBackoff(0.1).first(3) == [0.1, 0.2, 0.4]
    jittered = GuideSketchBackoff(0.1, 10.0).first(200, random.Random(3))
    nominal = [min(0.1 * 2 ** (i + 1), 10.0) for i in range(200)]
    assert all(0.7 * n - 0.001 <= d <= n for d, n in zip(jittered, nominal, strict=True))


def test_guide_jitter_keeps_retries_in_waves() -> None:
    # After a shared failure, the guide's 0-30 % jitter sends retries in bunched waves
    # separated by silence; full jitter spreads them. Measure the share of 20 ms slots
    # during the 2 s outage that see no retry at all.
    guide = run_retry_wave(200, backoff=GuideSketchBackoff(0.05, 1.0), outage=2.0,
                           max_attempts=10)
    full = run_retry_wave(200, backoff=ExponentialBackoff(0.05, cap=1.0, jitter="full"),
                          outage=2.0, max_attempts=10)
    assert guide.idle_share() > 0.3
    assert full.idle_share() < 0.1


def test_expected_amplification_formula() -> None:
    assert expected_amplification(1.0, 3, 3) == 27
    assert expected_amplification(0.0, 3, 3) == 1
    # one layer: 1 + p + p^2 for three attempts
    assert math.isclose(expected_amplification(0.5, 1, 3), 1.75)
    with pytest.raises(ValueError, match="p must be within"):
        expected_amplification(1.5, 1, 1)


@pytest.mark.parametrize(("p", "layers", "attempts"), [(0.3, 2, 3), (0.5, 3, 2), (1.0, 2, 3)])
def test_amplification_simulation_agrees_with_theory(p: float, layers: int, attempts: int) -> None:
    result = run_amplification(layers=layers, attempts=attempts, rate=40.0, horizon=30.0,
                               failure=FailureSchedule(p), seed=2)
    theory = expected_amplification(p, layers, attempts)
    assert result.amplification == pytest.approx(theory, rel=0.08)


def test_retry_budget_caps_amplification_during_an_outage() -> None:
    failure = FailureSchedule(0.0, [Outage(10.0, 20.0)])
    unbudgeted = run_amplification(layers=3, attempts=3, failure=failure)
    budgeted = run_amplification(layers=3, attempts=3, failure=failure, budget_ratio=0.1)
    assert unbudgeted.amplification_during(10.5, 19.5) > 20  # close to 27 = 3**3
    # with a 10 % budget per layer: at most 1.1**3 = 1.33 calls per request
    assert budgeted.amplification_during(10.5, 19.5) < 1.1**3 + 0.1
    # the budget costs nothing when the dependency is healthy
    assert budgeted.amplification_during(0.0, 9.5) == pytest.approx(1.0)
    assert budgeted.succeeded == pytest.approx(unbudgeted.succeeded, rel=0.05)


def test_retrying_permanent_errors_wastes_calls_and_time() -> None:
    everything = run_permanent_errors(retry_everything=True, attempts=5)
    selective = run_permanent_errors(retry_everything=False, attempts=5)
    assert everything.wasted_calls_per_invalid == pytest.approx(4.0)
    assert selective.wasted_calls_per_invalid == pytest.approx(0.0)
    assert everything.mean_time_to_reject > 10 * selective.mean_time_to_reject
    assert everything.dependency_calls > 1.5 * selective.dependency_calls


def test_bad_parameters_are_named() -> None:
    with pytest.raises(ValueError, match="clients must be an int >= 1, got 0"):
        run_contention(0)
    with pytest.raises(ValueError, match=r"jitter must be one of .* got 'some'"):
        run_contention(5, jitter="some")
    with pytest.raises(ValueError, match="layers must be an int >= 1, got 0"):
        run_amplification(layers=0)


def test_figures_are_labelled() -> None:
    for fig in (draw_jitter_comparison(20), draw_contention(20, jitter="equal"),
                draw_amplification(layers=2, attempts=2)):
        for ax in fig.axes:
            assert ax.get_xlabel()
            assert ax.get_ylabel()
            assert ax.get_title()
