"""Simulations of guide section 4.2 assert what the notebook shows."""

from __future__ import annotations

import pytest

from patterns.resilience.backoff import ExponentialBackoff
from simulations.breaker import (
    BreakerSettings,
    compare_breakers,
    describe_scenario,
    draw_breaker,
    draw_threshold_sweep,
    late_failures,
    probe_race,
    run_alternating,
    run_breaker,
    sweep_failure_rate,
)
from simulations.kit.faults import FailureSchedule, Outage


def test_the_breaker_cuts_calls_to_a_dead_dependency_by_at_least_90_percent() -> None:
    for seed in (1, 2, 3):
        runs = compare_breakers(seed=seed)
        unprotected = runs["none"].dependency_calls_between(25, 40)
        protected = runs["window"].dependency_calls_between(25, 40)
        assert protected <= 0.1 * unprotected


def test_rejections_answer_fast_and_the_breaker_closes_after_recovery() -> None:
    runs = compare_breakers()
    window = runs["window"]
    assert window.count("rejected") > 0
    rejected = window.latencies[window.outcomes == "rejected"]
    assert rejected.max() == 0.0
    assert window.states[-1][1] == "closed"
    assert window.states[-1][0] < 46  # back within one wait after the recovery at 40 s
    assert window.count("rejected", 50, 60) == 0


def test_a_healthy_dependency_never_trips_the_breaker() -> None:
    run = run_breaker("window", failure=FailureSchedule(0.02), horizon=60)
    assert run.time_open() == 0.0
    assert run.count("rejected") == 0


def test_consecutive_counter_never_trips_on_alternating_failures() -> None:
    assert run_alternating("guide").time_open() == 0.0
    assert run_alternating("window").time_open() > 0.5


def test_a_larger_window_gives_a_sharper_threshold() -> None:
    sweep = sweep_failure_rate([0.3, 0.7], horizon=40.0, seeds=(1, 2))
    small = sweep["rate >= 50 % of the last 20 calls"]
    large = sweep["rate >= 50 % of the last 100 calls"]
    assert large[0] < small[0]  # fewer false trips below the threshold
    assert large[0] < 0.05
    assert large[1] > 0.6  # and it does open well above it


def test_half_open_admits_only_the_configured_trials_the_guide_admits_a_crowd() -> None:
    assert probe_race("window", half_open_calls=3).peak_trials_in_flight <= 3
    assert probe_race("guide", half_open_calls=3).peak_trials_in_flight > 30


def test_late_failures_stretch_the_guides_open_time_only() -> None:
    guide = late_failures("guide").open_periods()[0][1]
    window = late_failures("window").open_periods()[0][1]
    assert window == pytest.approx(2.0, abs=0.1)  # half-open begins at the next request
    assert guide > window + 2.0


def test_growing_waits_in_open_spare_the_dead_dependency_but_close_later() -> None:
    # wait_in_open as a Backoff: 1 s, 2 s, 4 s, ... on successive trips without a close.
    growing = BreakerSettings(wait_in_open=ExponentialBackoff(1.0, cap=30.0))
    for seed in (1, 2, 3):
        fixed = run_breaker(seed=seed)
        grown = run_breaker(settings=growing, seed=seed)
        waits = [length for _, length in grown.open_periods()]
        # half-open begins at the first request after the wait: a little later than it
        assert min(waits) == pytest.approx(1.0, abs=0.2)
        assert max(waits) > 7.9  # 1, 2, 4, 8, ... while the dependency stays down
        assert grown.dependency_calls_between(25, 40) < fixed.dependency_calls_between(25, 40)
        assert grown.states[-1][1] == "closed"
        assert grown.states[-1][0] > fixed.states[-1][0]  # but the door opens later


def test_the_guides_breaker_needs_a_fixed_wait() -> None:
    with pytest.raises(ValueError, match="kind 'guide' needs a number for wait_in_open"):
        run_breaker("guide", settings=BreakerSettings(wait_in_open=ExponentialBackoff(1.0)))


def test_the_scenario_is_described_from_the_models_defaults() -> None:
    text = describe_scenario()
    settings = BreakerSettings()
    for fragment in ("20 requests/s", "50 ms", "15-25 s: fails 50%", "25-40 s: down", "500 ms",
                     f"last {settings.window_size} calls", f"wait {settings.wait_in_open:g} s",
                     f"{settings.half_open_calls} trial calls"):
        assert fragment in text


def test_bad_kind_is_named() -> None:
    with pytest.raises(ValueError, match="kind must be 'window', 'guide' or 'none', got 'x'"):
        run_breaker("x")


def test_figures_are_labelled() -> None:
    for fig in (draw_breaker(), draw_threshold_sweep()):
        for ax in fig.axes:
            assert ax.get_ylabel()
        assert any(ax.get_xlabel() for ax in fig.axes)


def test_runs_are_deterministic_for_a_seed() -> None:
    settings = BreakerSettings(window_size=10)
    failure = FailureSchedule(0.1, [Outage(5.0, 10.0)])
    a = run_breaker(settings=settings, failure=failure, horizon=20, seed=4)
    b = run_breaker(settings=settings, failure=failure, horizon=20, seed=4)
    assert a.states == b.states
    assert (a.outcomes == b.outcomes).all()
