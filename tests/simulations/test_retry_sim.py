"""Simulations of guide section 4.1 assert the behaviour they are meant to show."""

from __future__ import annotations

import math

import pytest

from patterns.resilience.backoff import ExponentialBackoff
from simulations.kit.faults import FailureSchedule, Outage
from simulations.retry import (
    BROOKER_CALLS,
    CONTENTION_KINDS,
    NO_BACKOFF,
    GuideSketchBackoff,
    brooker_backoff,
    compare_jitter,
    draw_amplification,
    draw_contention,
    draw_jitter_comparison,
    expected_amplification,
    replicate_brooker,
    run_amplification,
    run_contention,
    run_permanent_errors,
    run_retry_wave,
)

# Brooker's simulator, 100 clients: the spread (standard deviation) of total calls over 100
# seeds of this model, measured once (python -c "from simulations.retry import
# replicate_brooker as r; print({k: v.std(ddof=1) for k, v in r(range(1, 101)).items()})"):
# no back-off 34.6, exponential without jitter 59.9, full jitter 7.0.
CALLS_SD = {NO_BACKOFF: 34.6, "none": 59.9, "full": 7.0}
SEEDS = range(1, 21)


@pytest.mark.parametrize("kind", list(BROOKER_CALLS))
def test_contention_reproduces_brookers_published_calls(kind: str) -> None:
    # His figures are means of 100 runs, ours of 20 seeds: the difference of the two means
    # has a standard error of sd * sqrt(1/20 + 1/100); allow three of them (about 1 % for
    # no back-off, 2.4 % without jitter, 0.7 % with full jitter). A first delay of `base`
    # instead of his `2 * base` (874 calls with full jitter) or a network without variance
    # (5,050 calls without jitter) fails this.
    calls = replicate_brooker(SEEDS, kinds=[kind])[kind]
    tolerance = 3 * CALLS_SD[kind] * math.sqrt(1 / len(SEEDS) + 1 / 100)
    assert abs(calls.mean() - BROOKER_CALLS[kind]) <= tolerance


def test_back_off_without_jitter_helps_a_little_jitter_helps_a_lot() -> None:
    # Brooker (2015): "backoff helps a small amount"; jitter cuts the work by more than half.
    for seed in (1, 2, 3):
        results = compare_jitter(100, seed=seed)
        at_once, none = results[NO_BACKOFF].calls, results["none"].calls
        assert 0.6 * at_once < none < 0.9 * at_once
        for kind in ("full", "equal"):
            assert results[kind].calls < 0.5 * none
        assert results["decorrelated"].calls < 0.6 * none
        assert results["full"].completion_time < 0.2 * results["none"].completion_time


def test_brooker_backoff_starts_at_twice_the_base_and_decorrelated_at_the_base() -> None:
    import random

    assert brooker_backoff("none").first(4) == pytest.approx([0.010, 0.020, 0.040, 0.080])
    assert brooker_backoff(NO_BACKOFF).first(3) == [0.0, 0.0, 0.0]
    assert brooker_backoff("none", cap=0.03).first(4) == pytest.approx([0.01, 0.02, 0.03, 0.03])
    rng = random.Random(1)
    firsts = [brooker_backoff("decorrelated").first(1, rng)[0] for _ in range(200)]
    assert min(firsts) >= 0.005
    assert max(firsts) <= 0.015
    with pytest.raises(ValueError, match="cap must be >= base"):
        brooker_backoff("full", base=0.1, cap=0.05)


def test_without_latency_variance_clients_without_jitter_move_in_lock_step() -> None:
    # A network with no latency variance: every round exactly one client wins, so
    # n + (n-1) + ... + 1 calls, with exponential back-off as without any.
    for kind in (NO_BACKOFF, "none"):
        result = run_contention(30, jitter=kind, latency_sd=0.0)
        assert result.calls == 30 * 31 // 2
        assert len(result.success_times) == 30
    assert run_contention(30, jitter="full", latency_sd=0.0).calls < 30 * 31 // 4


def test_network_variance_acts_as_a_jitter_nobody_chose() -> None:
    calls = [run_contention(100, jitter="none", latency_sd=sd).calls
             for sd in (0.0, 0.002, 0.005)]
    assert calls[0] == 5050
    assert calls[0] > calls[1] > calls[2]


def test_contention_is_deterministic_for_a_seed() -> None:
    a = run_contention(40, jitter="full", seed=5)
    b = run_contention(40, jitter="full", seed=5)
    c = run_contention(40, jitter="full", seed=6)
    assert (a.calls, a.completion_time) == (b.calls, b.completion_time)
    assert (a.calls, a.completion_time) != (c.calls, c.completion_time)


def test_every_client_eventually_writes_once() -> None:
    for kind in CONTENTION_KINDS:
        result = run_contention(25, jitter=kind)
        assert len(result.success_times) == 25
        assert result.calls >= 25
        assert result.completion_time == result.success_times.max()


def test_a_small_cap_crowds_full_jitter_into_collisions() -> None:
    per_client = {cap: run_contention(100, jitter="full", cap=cap).calls_per_client
                  for cap in (0.2, 0.5, 2.0)}
    assert per_client[0.2] > 10 > per_client[0.5] > per_client[2.0]


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


def test_a_budget_on_one_layer_caps_only_that_layers_factor() -> None:
    # Top layer only: at most 1.1 attempts per request there, each multiplied by 3 * 3
    # below: about 1.1 * 9 = 9.9 calls per request during the outage, not 27 nor 1.33.
    top_only = run_amplification(layers=3, attempts=3, budget_ratio=0.1, budget_layers=[2])
    assert 9.0 < top_only.amplification_during(10.5, 19.5) < 1.1 * 9 + 0.1
    everywhere = run_amplification(layers=3, attempts=3, budget_ratio=0.1)
    assert everywhere.amplification_during(10.5, 19.5) < 1.1**3 + 0.1


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
    with pytest.raises(ValueError, match=r"latency_sd must be >= 0 seconds, got -0\.001"):
        run_contention(5, latency_sd=-0.001)
    with pytest.raises(ValueError, match="latency must be a positive number of seconds"):
        run_contention(5, latency=0.0)
    with pytest.raises(ValueError, match=r"budget_layers must hold layer numbers 0..2, got \[3\]"):
        run_amplification(layers=3, budget_ratio=0.1, budget_layers=[3])


def test_figures_are_labelled() -> None:
    for fig in (draw_jitter_comparison(20), draw_contention(20, jitter="equal"),
                draw_amplification(layers=2, attempts=2)):
        for ax in fig.axes:
            assert ax.get_xlabel()
            assert ax.get_ylabel()
            assert ax.get_title()
