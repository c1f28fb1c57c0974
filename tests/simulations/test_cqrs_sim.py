"""Tests for simulations.cqrs: what the 5.4 notebook claims, with M/M/1 theory."""

from __future__ import annotations

import math

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
    staleness_defaults,
    staleness_explorer,
    staleness_spread,
    theory_mean_lag,
    theory_own_read_stale,
    theory_projection_delay,
    theory_read_your_writes_wait,
)

from .sliders import assert_every_slider_changes

# Replication: 30 runs of 1,000 s (seeds 101..130), ``staleness_spread(rate,
# seeds=range(101, 131))`` (with ``read_your_writes=True`` for the waits). The standard
# deviation of ONE run's figure; the means of the 30 runs lie within 1.3 standard errors
# of theory. A test averages the runs of SEEDS and allows 3.5 standard errors of that mean.
SD_ONE_RUN = {
    2.0: {"lag": 0.0088, "delay": 0.0032, "own_stale": 0.0104},
    5.0: {"lag": 0.0445, "delay": 0.0074, "own_stale": 0.0139, "wait": 0.0061,
          "no_wait": 0.0139},
    8.0: {"lag": 0.36, "delay": 0.043, "own_stale": 0.0215, "wait": 0.042, "no_wait": 0.017},
}
SEEDS = (1, 2, 3, 4)


def _tolerance(rate: float, figure: str, runs: int = len(SEEDS)) -> float:
    return 3.5 * SD_ONE_RUN[rate][figure] / math.sqrt(runs)


@pytest.mark.parametrize("write_rate", [2.0, 5.0])
def test_lag_delay_and_stale_own_reads_agree_with_mm1_theory(write_rate: float) -> None:
    spread = staleness_spread(write_rate, seeds=SEEDS)
    theory = {"lag": theory_mean_lag(write_rate, 10.0),
              "delay": theory_projection_delay(write_rate, 10.0),
              "own_stale": theory_own_read_stale(write_rate, 10.0, 0.2)}
    for figure, value in theory.items():
        mean, _ = spread[figure]
        assert mean == pytest.approx(value, abs=_tolerance(write_rate, figure)), figure
    # about +-6 % (rho 0.2) and +-8 % (rho 0.5) on the lag: a projector 10 % too fast or
    # slow, or a lag that leaves out the event being applied, fails


def test_near_saturation_the_mean_lag_still_follows_theory_within_its_spread() -> None:
    # rho = 0.8: one run of 1,000 s has a standard deviation of 9 % on the lag
    result = run_staleness(8.0, 10.0, duration=1000.0, seed=3)
    assert result.mean_lag == pytest.approx(4.0, abs=_tolerance(8.0, "lag", runs=1))
    assert result.own_stale_fraction == pytest.approx(
        theory_own_read_stale(8.0, 10.0, 0.2), abs=_tolerance(8.0, "own_stale", runs=1))


def test_batch_means_estimate_the_spread_of_one_run() -> None:
    errors = [run_staleness(5.0, 10.0, duration=1000.0, seed=s).lag_standard_error()
              for s in (1, 2)]
    # each estimate, from 10 batches, is itself uncertain by about 24 %
    assert float(np.mean(errors)) == pytest.approx(SD_ONE_RUN[5.0]["lag"], rel=0.4)
    with pytest.raises(ValueError, match="batches"):
        run_staleness(5.0, 10.0, duration=10.0).lag_standard_error(batches=1)


def test_a_faster_projector_means_fresher_reads() -> None:
    slow = run_staleness(8.0, 10.0, duration=300.0, seed=1)
    fast = run_staleness(8.0, 30.0, duration=300.0, seed=1)
    assert fast.mean_lag < slow.mean_lag / 4
    assert float(fast.staleness.mean()) < float(slow.staleness.mean()) / 4
    assert fast.stale_read_fraction < slow.stale_read_fraction


def test_read_your_writes_never_stale_and_costs_the_wait() -> None:
    plain = run_staleness(8.0, 10.0, duration=300.0, seed=2)
    ryw = run_staleness(8.0, 10.0, duration=300.0, seed=2, read_your_writes=True)
    assert plain.own_stale_fraction > 0.5
    assert ryw.own_reads == plain.own_reads
    assert ryw.own_reads_stale == 0
    assert len(plain.own_read_waits) == 0


def test_the_wait_for_your_writes_agrees_with_mm1_theory() -> None:
    spread = staleness_spread(5.0, seeds=SEEDS, read_your_writes=True)
    assert spread["own_stale"] == (0.0, 0.0)
    wait = theory_read_your_writes_wait(5.0, 10.0, 0.2, poll_interval=0.01)
    assert spread["wait"][0] == pytest.approx(wait, abs=_tolerance(5.0, "wait"))
    # the wait is only paid when the projection is behind: many reads wait nothing
    no_wait = 1 - theory_own_read_stale(5.0, 10.0, 0.2)
    assert spread["no_wait"][0] == pytest.approx(no_wait, abs=_tolerance(5.0, "no_wait"))
    with pytest.raises(ValueError, match="at least 2 seeds"):
        staleness_spread(5.0, seeds=(1,))


def test_the_waits_drawn_from_one_run_are_those_of_read_your_writes() -> None:
    # Same seed, same writes and projections: waiting does not change the queue, so the
    # waits a run's own reads would have had are the waits of read-your-writes, up to the
    # 10 ms polling interval.
    plain = run_staleness(8.0, 10.0, duration=120.0, seed=4)
    ryw = run_staleness(8.0, 10.0, duration=120.0, seed=4, read_your_writes=True)
    assert np.array_equal(plain.projection_delays, ryw.projection_delays)
    derived = np.sort(plain.waits_if_waiting)
    waited = np.sort(ryw.own_read_waits)[-len(derived):]
    assert np.all(waited - derived >= -1e-9)
    assert np.all(waited - derived <= 0.01 + 1e-9)


def test_defaults_and_a_wall_clock_command_bus() -> None:
    text = staleness_defaults()
    for line in ("write_rate     8", "projector_rate 10", "accounts       200",
                 "read_delay     0.2"):
        assert line in text
    from patterns.consistency.eventsourcing import InMemoryEventStore
    from simulations.cqrs import Deposit, OpenAccount, bank_command_bus

    bus = bank_command_bus(InMemoryEventStore())
    bus.dispatch(OpenAccount("a", "Ada"))
    assert bus.dispatch(Deposit("a", 5)).version == 2


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


def _simulated(fig: Figure) -> list[tuple[float, ...]]:
    """What a figure shows of the simulation: data lines, bars and histograms."""
    data: list[tuple[float, ...]] = []
    for ax in fig.axes:
        for line in ax.get_lines():
            if "theory" not in str(line.get_label()):
                data.append(tuple(map(float, line.get_ydata())))
        data.append(tuple(float(p.get_height()) for p in ax.patches))
    return data


def test_every_slider_changes_the_simulated_picture_over_its_range() -> None:
    explorer = staleness_explorer()
    assert_every_slider_changes(explorer, _simulated)


def test_figures_tables_and_explorer() -> None:
    assert isinstance(draw_staleness(8.0, 10.0), Figure)
    assert isinstance(draw_guide_pitfall(), Figure)
    assert "wait for position" in read_your_writes_table(duration=100.0)
    staleness_explorer()
