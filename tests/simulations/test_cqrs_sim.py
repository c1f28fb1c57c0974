"""Tests for simulations.cqrs: what the 5.4 notebook claims, with M/M/1 theory."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from simulations.cqrs import (
    draw_guide_pitfall,
    draw_staleness,
    pitfall_table,
    read_your_writes_table,
    run_guide_pitfall,
    run_staleness,
    staleness_explorer,
    theory_mean_lag,
    theory_own_read_stale,
    theory_projection_delay,
    theory_read_your_writes_wait,
)


@pytest.mark.parametrize("write_rate", [2.0, 5.0, 8.0])
def test_lag_and_delay_agree_with_mm1_theory(write_rate: float) -> None:
    r = run_staleness(write_rate, 10.0, duration=1000.0, seed=3)
    assert r.mean_lag == pytest.approx(theory_mean_lag(write_rate, 10.0), rel=0.15)
    assert float(r.projection_delays.mean()) == pytest.approx(
        theory_projection_delay(write_rate, 10.0), rel=0.12)
    assert r.own_stale_fraction == pytest.approx(
        theory_own_read_stale(write_rate, 10.0, 0.2), abs=0.04)


def test_a_faster_projector_means_fresher_reads() -> None:
    slow = run_staleness(8.0, 10.0, duration=300.0, seed=1)
    fast = run_staleness(8.0, 30.0, duration=300.0, seed=1)
    assert fast.mean_lag < slow.mean_lag / 4
    assert float(fast.staleness.mean()) < float(slow.staleness.mean()) / 4
    assert fast.stale_read_fraction < slow.stale_read_fraction


def test_read_your_writes_never_stale_and_costs_the_wait() -> None:
    plain = run_staleness(8.0, 10.0, duration=1000.0, seed=2)
    ryw = run_staleness(8.0, 10.0, duration=1000.0, seed=2, read_your_writes=True)
    assert plain.own_stale_fraction > 0.5
    assert ryw.own_reads == plain.own_reads
    assert ryw.own_reads_stale == 0
    assert len(plain.own_read_waits) == 0
    assert ryw.mean_wait == pytest.approx(theory_read_your_writes_wait(8.0, 10.0, 0.2),
                                          rel=0.2)
    # the wait is only paid when the projection is behind: many reads wait nothing
    assert float((ryw.own_read_waits == 0).mean()) == pytest.approx(
        1 - plain.own_stale_fraction, abs=0.05)


def test_runs_are_deterministic() -> None:
    a = run_staleness(5.0, 10.0, duration=100.0, seed=7)
    b = run_staleness(5.0, 10.0, duration=100.0, seed=7)
    assert np.array_equal(a.lag, b.lag)
    assert np.array_equal(a.staleness, b.staleness)
    assert a.own_reads_stale == b.own_reads_stale


def test_the_guides_service_never_updates_the_read_model() -> None:
    result = run_guide_pitfall(seed=1)
    assert result.truth[-1] > 1000
    assert not result.seen["guide"].any()
    lag = result.truth - result.seen["fixed"]
    assert lag.min() >= 0
    assert lag[-1] <= 50  # the fix trails by a few deposits at most
    assert float(np.mean(lag == 0)) > 0.5
    table = pitfall_table(result)
    assert "guide" in table
    assert "fixed" in table


def test_bad_parameters_are_named() -> None:
    with pytest.raises(ValueError, match="write_rate"):
        run_staleness(0.0, 10.0)
    with pytest.raises(ValueError, match="projector_rate"):
        run_staleness(1.0, -1.0)
    with pytest.raises(ValueError, match="accounts"):
        run_staleness(1.0, 2.0, accounts=0)
    with pytest.raises(ValueError, match="read_delay"):
        run_staleness(1.0, 2.0, read_delay=-1.0)
    with pytest.raises(ValueError, match="duration"):
        run_guide_pitfall(duration=0.0)


def test_figures_tables_and_explorer() -> None:
    assert isinstance(draw_staleness(8.0, 10.0), Figure)
    assert isinstance(draw_guide_pitfall(), Figure)
    assert "wait for position" in read_your_writes_table(duration=100.0)
    staleness_explorer()
