"""The claims of the 5.2 notebook about sagas and 2PC contending for rows
(:mod:`simulations.twophase`)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from matplotlib.figure import Figure

from simulations import twophase as sim


@pytest.fixture(scope="module")
def mixed() -> sim.ContentionResult:
    return sim.run_contention(120, saga_share=0.5, crash_rate=0.05, downtime=20.0, seed=1)


def test_deterministic_and_leaves_no_thread_behind(mixed: sim.ContentionResult) -> None:
    before = threading.active_count()
    again = sim.run_contention(120, saga_share=0.5, crash_rate=0.05, downtime=20.0, seed=1)
    assert again == mixed
    assert threading.active_count() == before
    assert sim.run_contention(120, saga_share=0.5, seed=2) != mixed


def test_every_order_ends_and_stock_adds_up(mixed: sim.ContentionResult) -> None:
    assert len(mixed.orders) == 120
    assert {o.kind for o in mixed.orders} == {"2pc", "saga"}
    sold = dict.fromkeys(mixed.items, 0)
    for order in mixed.orders:
        assert order.ended >= order.arrived
        if order.succeeded:
            for item in order.items:
                sold[item] += 1
    # no lost update: committed 2PC orders and completed sagas, nothing else, left the shelf
    assert mixed.stock == tuple(sim.INITIAL_STOCK - sold[item] for item in mixed.items)


def test_crash_count_follows_the_rate_exactly() -> None:
    result = sim.run_contention(120, saga_share=0.0, crash_rate=0.05, downtime=10.0)
    assert result.crashes == 6
    for rate in np.round(np.arange(0.01, 0.2001, 0.01), 2):  # the explorer's slider steps
        assert round(rate * 120) > round((rate - 0.01) * 120)


def test_a_crashed_coordinator_blocks_its_participants_for_the_downtime() -> None:
    result = sim.run_contention(120, saga_share=0.0, crash_rate=0.1, downtime=7.0)
    crashed = [o for o in result.orders if o.crashed]
    assert len(crashed) == 12
    for order in crashed:
        assert order.blocked is not None
        assert order.blocked[1] - order.blocked[0] == pytest.approx(7.0)
        assert order.prepared_participants == (2 if order.succeeded else 1)  # a "no" vote
        assert order.lock_hold is not None
        assert order.lock_hold >= 7.0 + sim.WORK - 1e-9
    assert all(o.blocked is None for o in result.orders if not o.crashed)


def test_without_contention_lock_hold_is_work_plus_crashes_times_downtime() -> None:
    # a thousand items, one per order, arriving 20 s apart: nobody waits, so the
    # estimate is exact
    result = sim.run_contention(200, saga_share=0.0, crash_rate=0.1, downtime=15.0,
                                items=1000, two_items=0.0, arrival_rate=0.05)
    assert result.mean_lock_wait() == 0.0
    assert result.lock_holds().mean() == pytest.approx(sim.WORK + 0.1 * 15.0, rel=1e-9)


def test_with_hot_rows_blocking_spreads_beyond_the_estimate() -> None:
    result = sim.run_contention(120, saga_share=0.0, crash_rate=0.05, downtime=20.0)
    estimate = sim.WORK + result.crashes / 120 * 20.0
    assert result.lock_holds().mean() > 2 * estimate  # rows held while waiting for others
    assert result.mean_lock_wait() > 10.0
    calm = sim.run_contention(120, saga_share=0.0, crash_rate=0.0, downtime=20.0)
    assert calm.mean_lock_wait() < 0.1
    assert calm.end < result.end


def test_sagas_never_make_anyone_wait() -> None:
    sagas = sim.run_contention(120, saga_share=1.0, crash_rate=0.05, downtime=20.0)
    assert len(sagas.of("saga")) == 120
    assert sagas.mean_lock_wait() == 0.0
    assert sagas.crashes == 0


def _covered(start: float, end: float, spans: list[tuple[float, float]]) -> bool:
    reached = start
    for s, e in sorted(spans):
        if s <= reached + 1e-9:
            reached = max(reached, e)
    return reached >= end - 1e-9


def test_every_wait_is_behind_a_two_phase_lock(mixed: sim.ContentionResult) -> None:
    locks = [(o.order, item, start, o.ended) for o in mixed.of("2pc")
             for item, start in o.row_locks]
    waits = [(o, s, e) for o in mixed.orders for s, e in o.waits]
    assert any(o.kind == "saga" for o, _, _ in waits), "sagas wait behind 2PC locks too"
    for order, start, end in waits:  # each instant of a wait, a 2PC order held one of its rows
        assert _covered(start, end, [(s, e) for owner, item, s, e in locks
                                     if item in order.items and owner != order.order])


def test_compensated_sagas_showed_a_reservation_they_gave_back(
        mixed: sim.ContentionResult) -> None:
    phantoms = mixed.phantom_reservations()
    failed = [o for o in mixed.of("saga") if not o.succeeded]
    assert phantoms == tuple(failed)
    assert len(failed) > 3
    for order in phantoms:
        assert order.reserved is not None
        assert order.reserved[1] - order.reserved[0] >= 0.2 - 1e-9  # a compensation's step
    aborted = [o for o in mixed.of("2pc") if not o.succeeded]
    assert aborted
    assert all(o.reserved is None for o in aborted)


def test_time_series_and_table(mixed: sim.ContentionResult) -> None:
    times, blocked = mixed.blocked_participants()
    assert blocked.max() >= 1
    assert blocked[-1] == 0
    assert np.all(np.diff(times) >= 0)
    _, waiting = mixed.waiting_orders()
    assert waiting.min() == 0
    assert waiting[-1] == 0
    _starts, rate = mixed.commits_per_second(5.0)
    assert rate.sum() * 5.0 == sum(o.succeeded for o in mixed.orders)
    table = sim.contention_table((0.0, 1.0), orders=40)
    assert "reservations undone" in table
    assert "100%" in table


def test_figures() -> None:
    assert isinstance(sim.draw_twophase(0.05, 10.0, orders=40), Figure)
    assert isinstance(sim.draw_contention(orders=40), Figure)


def test_explorer_sliders_change_the_picture_at_both_ends() -> None:
    explorer = sim.twophase_explorer()
    crash, downtime = explorer.controls["crash_rate"], explorer.controls["downtime"]
    low = sim.run_contention(120, saga_share=0.0, crash_rate=crash.min, downtime=20.0)
    assert low.crashes == 1  # even the lowest rate crashes one coordinator
    for rate in (crash.min, crash.min + crash.step, crash.max - crash.step, crash.max):
        assert sim.run_contention(120, saga_share=0.0, crash_rate=rate,
                                  downtime=downtime.value).crashes == round(rate * 120)
    short = sim.run_contention(120, saga_share=0.0, crash_rate=crash.value,
                               downtime=downtime.min)
    longer = sim.run_contention(120, saga_share=0.0, crash_rate=crash.value,
                                downtime=downtime.min + downtime.step)
    assert short.blocked_participants()[0].tolist() != longer.blocked_participants()[0].tolist()
    assert explorer.redraws == 1
    downtime.value = downtime.max
    assert explorer.redraws == 2


def test_bad_input_names_the_parameter() -> None:
    with pytest.raises(ValueError, match="orders must be >= 1, got 0"):
        sim.run_contention(0)
    with pytest.raises(ValueError, match=r"saga_share must be within \[0, 1\], got 2"):
        sim.run_contention(10, saga_share=2)
    with pytest.raises(ValueError, match="downtime must be >= 0, got -1"):
        sim.run_contention(10, downtime=-1)
    with pytest.raises(ValueError, match="arrival_rate must be > 0, got 0"):
        sim.run_contention(10, arrival_rate=0)
