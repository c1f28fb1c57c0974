"""The theory primer: formulas against known values, simulations against the formulas.

Tolerances come from replication: a simulated figure is averaged over several seeds and
must lie within four standard errors of the formula (the standard error measured over
those seeds, and checked to be small, so a wrong model cannot hide behind a wide spread).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from matplotlib.figure import Figure

from simulations.primer import (
    EPIDEMIC_MODES,
    QueueRun,
    draw_epidemics,
    draw_erlang_b,
    draw_hockey_stick,
    draw_mm1_run,
    draw_poisson,
    draw_pooling,
    epidemic_explorer,
    epidemic_table,
    erlang_b,
    erlang_b_explorer,
    erlang_b_table,
    erlang_c,
    little_table,
    mean_field,
    mean_field_rounds,
    mm1,
    mm1_explorer,
    mmc,
    poisson_explorer,
    poisson_pmf,
    poisson_stream,
    poisson_table,
    poisson_tail,
    pooling_explorer,
    pooling_table,
    push_rounds_estimate,
    queue_table,
    separate_queues,
    simulate_epidemic,
    simulate_queue,
)

SEEDS = range(1, 9)


def agrees(values: Sequence[float], expected: float, *, max_relative_error: float) -> None:
    """Mean of ``values`` within 4 standard errors of ``expected``; the error itself small."""
    array = np.asarray(values, dtype=float)
    mean = float(array.mean())
    error = float(array.std(ddof=1) / math.sqrt(len(array)))
    assert error <= max_relative_error * abs(expected), (
        f"too noisy to test: standard error {error:.4g} for {expected:.4g}")
    assert abs(mean - expected) <= 4 * error, (
        f"mean {mean:.4g} ± {error:.2g} (standard error over {len(array)} seeds) "
        f"against {expected:.4g}")


# ============================================================================ formulas


def test_poisson_pmf_known_values() -> None:
    assert poisson_pmf(0, 5.0) == pytest.approx(math.exp(-5.0))
    assert poisson_pmf(3, 2.0) == pytest.approx(math.exp(-2.0) * 8 / 6)
    assert sum(poisson_pmf(k, 5.0) for k in range(60)) == pytest.approx(1.0)
    assert sum(k * poisson_pmf(k, 5.0) for k in range(60)) == pytest.approx(5.0)
    assert poisson_pmf(0, 0.0) == 1.0
    assert poisson_pmf(2, 0.0) == 0.0
    assert poisson_tail(10, 5.0) == pytest.approx(0.031828, abs=1e-6)
    assert poisson_tail(0, 5.0) == 1.0


def test_mm1_formulas() -> None:
    q = mm1(0.5, 1.0)
    assert q.utilisation == pytest.approx(0.5)
    assert q.wait_probability == pytest.approx(0.5)
    assert q.mean_in_system == pytest.approx(1.0)  # ρ / (1 - ρ)
    assert q.mean_in_queue == pytest.approx(0.5)  # ρ² / (1 - ρ)
    assert q.mean_sojourn == pytest.approx(2.0)  # 1 / (μ - λ)
    assert q.mean_wait == pytest.approx(1.0)  # ρ / (μ - λ)
    # the hockey stick: W doubles from ρ = 0.8 to 0.9 and again to 0.95
    w = [mm1(rho * 10, 10).mean_sojourn for rho in (0.8, 0.9, 0.95)]
    assert w == pytest.approx([0.5, 1.0, 2.0])


def test_erlang_c_known_values() -> None:
    assert mmc(1.0, 1.0, 2).wait_probability == pytest.approx(1 / 3)
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert mmc(1.0, 1.0, 2).mean_wait == pytest.approx(1 / 3)  # C / (cμ - λ)
    # against the textbook closed form for c = 4, a = 3.2
    a, c = 3.2, 4
    top = a**c / math.factorial(c) * c / (c - a)
    expected = top / (sum(a**k / math.factorial(k) for k in range(c)) + top)
    assert erlang_c(c, a) == pytest.approx(expected)
    assert mmc(a, 1.0, c).mean_wait == pytest.approx(expected / (c - a))
    # M/M/1 is M/M/c with one server
    assert mmc(0.8, 1.0, 1).mean_wait == pytest.approx(mm1(0.8, 1.0).mean_wait)


def test_erlang_b_known_values() -> None:
    assert erlang_b(1, 1.0) == pytest.approx(0.5)
    assert erlang_b(2, 1.0) == pytest.approx(0.2)
    assert erlang_b(4, 3.0) == pytest.approx((81 / 24) / (1 + 3 + 4.5 + 4.5 + 81 / 24))
    # scale helps: twice the permits for twice the load rejects less
    assert erlang_b(8, 6.0) < erlang_b(4, 3.0)


def test_pooling_beats_separate_queues() -> None:
    pooled, apart = mmc(3.2, 1.0, 4), separate_queues(3.2, 1.0, 4)
    assert apart.mean_wait == pytest.approx(4.0)  # M/M/1 at ρ = 0.8, μ = 1
    assert apart.wait_probability == pytest.approx(0.8)
    assert pooled.utilisation == apart.utilisation == pytest.approx(0.8)
    assert apart.mean_wait / pooled.mean_wait > 5
    # with one server there is nothing to pool
    assert separate_queues(0.5, 1.0, 1).mean_wait == pytest.approx(mm1(0.5, 1.0).mean_wait)


def test_unstable_queues_are_refused() -> None:
    with pytest.raises(ValueError, match="arrival_rate"):
        mm1(1.0, 1.0)
    with pytest.raises(ValueError, match="arrival_rate"):
        mmc(4.0, 1.0, 4)
    with pytest.raises(ValueError, match="servers"):
        mmc(1.0, 1.0, 0)


def test_mean_field_recurrences() -> None:
    n = 1000
    s0 = 1 - 1 / n
    push, pull, both = (mean_field(mode, n, 3) for mode in EPIDEMIC_MODES)
    assert push[0] == pull[0] == both[0] == pytest.approx(s0)
    assert push[1] == pytest.approx(s0 * math.exp(-(1 - s0)))
    assert push[2] == pytest.approx(push[1] * math.exp(-(1 - push[1])))
    assert pull[1] == pytest.approx(s0**2)
    assert pull[2] == pytest.approx(s0**4)
    assert both[1] == pytest.approx(s0**2 * math.exp(-(1 - s0)))
    # losing a share of the exchanges slows every mode down
    for mode in EPIDEMIC_MODES:
        assert mean_field_rounds(mode, n, loss=0.5) > mean_field_rounds(mode, n)


def test_rounds_grow_like_log_n() -> None:
    assert push_rounds_estimate(1024) == pytest.approx(10 + math.log(1024))
    for n in (1000, 100_000):
        assert abs(mean_field_rounds("push", n) - push_rounds_estimate(n)) <= 1.5
    # push-pull is fastest, then pull, then push
    rounds = [mean_field_rounds(mode, 10_000) for mode in ("push-pull", "pull", "push")]
    assert rounds == sorted(rounds)
    assert rounds[0] < rounds[2] - 5


def test_bad_input_names_the_parameter() -> None:
    with pytest.raises(ValueError, match="mode"):
        mean_field("gossip", 10)
    with pytest.raises(ValueError, match="loss"):
        simulate_epidemic("push", 10, loss=1.5)
    with pytest.raises(ValueError, match="layout"):
        simulate_queue(1.0, 2.0, layout="pooled")
    with pytest.raises(ValueError, match="service"):
        simulate_queue(1.0, 2.0, service="lognormal")
    with pytest.raises(ValueError, match="warmup"):
        simulate_queue(1.0, 2.0, horizon=10.0, warmup=10.0)
    with pytest.raises(ValueError, match="window"):
        poisson_stream(1.0, 10.0).counts(20.0)


# ============================================================================ Poisson stream


def test_poisson_stream_has_exponential_gaps_and_poisson_counts() -> None:
    streams = [poisson_stream(5.0, 1000.0, seed=seed) for seed in SEEDS]
    agrees([s.gaps.mean() for s in streams], 0.2, max_relative_error=0.01)
    agrees([np.mean(s.gaps > 0.4) for s in streams], math.exp(-2), max_relative_error=0.03)
    agrees([s.counts(1.0).mean() for s in streams], 5.0, max_relative_error=0.01)
    agrees([s.counts(1.0).var() for s in streams], 5.0, max_relative_error=0.03)
    agrees([np.mean(s.counts(1.0) >= 10) for s in streams], poisson_tail(10, 5.0),
           max_relative_error=0.1)


# ============================================================================ queues


def test_mm1_simulation_matches_the_formulas() -> None:
    theory = mm1(8.0, 10.0)
    runs = [simulate_queue(8.0, 10.0, horizon=1000.0, seed=seed) for seed in SEEDS]
    agrees([r.mean_sojourn for r in runs], theory.mean_sojourn, max_relative_error=0.05)
    agrees([r.mean_wait for r in runs], theory.mean_wait, max_relative_error=0.06)
    agrees([r.time_average_in_system() for r in runs], theory.mean_in_system,
           max_relative_error=0.05)
    agrees([r.wait_probability for r in runs], theory.wait_probability,
           max_relative_error=0.01)
    agrees([r.utilisation for r in runs], theory.utilisation, max_relative_error=0.01)


def test_constant_service_halves_the_wait() -> None:
    """M/D/1 (Pollaczek-Khinchine): Wq = ρ / (2μ(1-ρ)), half the M/M/1 wait."""
    runs = [simulate_queue(8.0, 10.0, horizon=1000.0, service="constant", seed=seed)
            for seed in SEEDS]
    agrees([r.mean_wait for r in runs], mm1(8.0, 10.0).mean_wait / 2, max_relative_error=0.05)


def little_gap(run: QueueRun) -> float:
    admitted = run.throughput * (1.0 - run.blocking)
    return run.time_average_in_system() / (admitted * run.mean_sojourn) - 1.0


@pytest.mark.parametrize(("servers", "service", "places"), [
    (1, "exponential", None), (1, "constant", None), (4, "exponential", 2)])
def test_littles_law_holds_in_every_run(servers: int, service: str,
                                        places: int | None) -> None:
    # only edge effects (callers present at the window's ends) separate L from λW:
    # a spread of about 0.1 % per run over seeds, so 1 % is a failing bound
    for seed in (1, 2, 3):
        run = simulate_queue(8.0 * servers, 10.0, servers, horizon=500.0, service=service,
                             queue_places=places, seed=seed)
        assert abs(little_gap(run)) < 0.01


def test_shared_and_separate_queues_match_their_formulas() -> None:
    shared = [simulate_queue(3.2, 1.0, 4, horizon=2000.0, seed=s) for s in SEEDS]
    apart = [simulate_queue(3.2, 1.0, 4, horizon=2000.0, layout="separate", seed=s)
             for s in SEEDS]
    pooled_theory, apart_theory = mmc(3.2, 1.0, 4), separate_queues(3.2, 1.0, 4)
    agrees([r.wait_probability for r in shared], pooled_theory.wait_probability,
           max_relative_error=0.03)
    agrees([r.mean_wait for r in shared], pooled_theory.mean_wait, max_relative_error=0.08)
    agrees([r.wait_probability for r in apart], apart_theory.wait_probability,
           max_relative_error=0.02)
    agrees([r.mean_wait for r in apart], apart_theory.mean_wait, max_relative_error=0.08)
    assert np.mean([r.mean_wait for r in apart]) > 3 * np.mean([r.mean_wait for r in shared])


def test_a_bulkhead_without_a_queue_rejects_as_erlang_b_says() -> None:
    runs = [simulate_queue(3.0, 1.0, 4, horizon=2000.0, queue_places=0, seed=s) for s in SEEDS]
    agrees([r.blocking for r in runs], erlang_b(4, 3.0), max_relative_error=0.02)
    assert all(np.nanmax(r.waits) == 0 for r in runs)  # nobody ever waits
    assert all(r.in_system.max() <= 4 for r in runs)


# ============================================================================ epidemics


@pytest.mark.parametrize("mode", EPIDEMIC_MODES)
def test_one_round_follows_the_mean_field_map(mode: str) -> None:
    """Averaged over rounds and runs, s' / f(s) is 1 where f is Demers et al.'s map."""
    ratios = []
    for seed in range(1, 21):
        run = simulate_epidemic(mode, 10_000, seed=seed)
        s = run.uninformed
        for before, after in itertools.pairwise(s):
            if 0.05 < before < 0.95:  # enough nodes on both sides for the mean to settle
                push = math.exp(-(1 - before)) if mode != "pull" else 1.0
                pull = before if mode != "push" else 1.0
                ratios.append(after / (before * push * pull))
    agrees(ratios, 1.0, max_relative_error=0.01)


@pytest.mark.parametrize("mode", EPIDEMIC_MODES)
def test_rounds_to_inform_everyone_match_the_mean_field(mode: str) -> None:
    rounds = [simulate_epidemic(mode, 1000, seed=seed).rounds for seed in range(1, 41)]
    # the mean field gives a whole number of rounds: allow the rounding and 4 standard errors
    error = float(np.std(rounds, ddof=1) / math.sqrt(len(rounds)))
    assert abs(np.mean(rounds) - mean_field_rounds(mode, 1000)) <= 0.5 + 4 * error


def test_losing_exchanges_slows_the_simulation_as_the_mean_field_says() -> None:
    rounds = [simulate_epidemic("push-pull", 1000, loss=0.5, seed=s).rounds
              for s in range(1, 41)]
    error = float(np.std(rounds, ddof=1) / math.sqrt(len(rounds)))
    assert abs(np.mean(rounds) - mean_field_rounds("push-pull", 1000, loss=0.5)) <= (
        0.5 + 4 * error)


# ============================================================================ figures and tables


def axis_labels(fig: Figure) -> list[str]:
    return [text for ax in fig.axes for text in (ax.get_xlabel(), ax.get_ylabel())]


@pytest.mark.parametrize("draw", [
    draw_poisson, draw_mm1_run, draw_pooling, draw_erlang_b,
    lambda: draw_hockey_stick((0.5, 0.8), seeds=(1, 2), horizon=100.0),
    lambda: draw_epidemics(seeds=(1, 2)),
])
def test_figures_label_their_axes(draw: Callable[[], Figure]) -> None:
    fig = draw()
    assert isinstance(fig, Figure)
    for text in axis_labels(fig):
        assert text, "every axis says what it measures"


def test_tables_print_formula_and_simulation() -> None:
    assert "Wq simulated" in queue_table((0.5,), horizon=200.0)
    assert "λ × W" in little_table(horizon=200.0)
    assert "P(wait) simulated" in pooling_table(horizon=500.0)
    assert "blocking simulated" in erlang_b_table(horizon=500.0)
    assert "mean field" in epidemic_table(100, seeds=(1, 2))
    assert "variance" in poisson_table(horizon=100.0)


@pytest.mark.parametrize(("make", "moves"), [
    (poisson_explorer, {"rate": 20.0, "window": 0.2}),
    (mm1_explorer, {"utilisation": 0.95, "seed": 20}),
    (pooling_explorer, {"servers": 16, "utilisation": 0.1}),
    (erlang_b_explorer, {"servers": 20, "offered_load": 20.0}),
    (epidemic_explorer, {"nodes": "10000", "loss": 0.8}),
])
def test_every_slider_redraws_a_different_picture(make: Callable[..., object],
                                                  moves: dict[str, object]) -> None:
    explorer = make()
    before = explorer.image.value  # type: ignore[attr-defined]  # the picture shown
    for name, value in moves.items():
        explorer.controls[name].value = value  # type: ignore[attr-defined]
        after = explorer.image.value  # type: ignore[attr-defined]
        assert after != before, f"{name} = {value!r} changed nothing"
        before = after
